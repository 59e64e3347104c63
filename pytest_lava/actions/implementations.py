"""Which built-in actions have an implementation. Implementation modules register here, so the
catalogue (the job vocabulary) never depends on board code."""

from __future__ import annotations

from .spec import ActionRun

RUNNERS: dict[str, ActionRun] = {}


def implements(name: str):
    """Decorator: ``@implements("boot_master_image") def run(ctx, params): ...``."""

    def register(fn: ActionRun) -> ActionRun:
        RUNNERS[name] = fn
        return fn

    return register


from . import deploy as _boards  # noqa: E402,F401  (deploy, boot, apt: master-image and qemu boards)
from . import lava_test, lava_test_install  # noqa: E402,F401,I001  (after `implements` exists: no import cycle)
