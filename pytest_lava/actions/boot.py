"""boot_master_image and boot_linaro_image: thin wrappers over the board type's boot logic
(``boards/master.py``, ``boards/qemu.py``).

``boot_linaro_image`` records ``boot_image`` (pass or fail) in the ``lava`` run before its own
result, like the old dispatcher; a failure aborts the job (it is a setup action).
"""

from __future__ import annotations

from typing import Any

from ..core.errors import LavaError
from .implementations import implements


@implements("boot_master_image")
def boot_master_image(ctx, params: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    ctx.driver.boot_master(ctx)


@implements("boot_linaro_image")
def boot_linaro_image(ctx, params: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    try:
        ctx.driver.boot_test(ctx, list(params.get("options") or []))
    except LavaError as exc:
        ctx.record("boot_image", "fail", f"Failed to boot test image: {exc.message}")
        raise
    except Exception as exc:
        ctx.record("boot_image", "fail", f"Failed to boot test image: {type(exc).__name__}: {exc}")
        raise
    ctx.record("boot_image", "pass")
