"""A job run's lava-test state, and what a boot can carry for the job's next ``lava_test_shell``.

The state (:class:`LavaTestState`, one per job run) holds the definitions ``lava_test_install``
registered or installed and what waits for the next test image. :func:`files_to_carry` is what a
board type that can put files into the image at boot (QEMU's initramfs: testdefs/carry.py) asks
before it starts the board; it loads no console code, so that import overlaps the boot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import LavaError
from ..testdefs.device import DEFAULT_LAVA_DIR, ScriptEnv, definition_files, test_dirname
from ..testdefs.load import load_inline, resolve
from ..testdefs.model import TestDefinition

if TYPE_CHECKING:
    from ..jobs.runner import ActionContext


@dataclass
class LavaTestState:
    registered: dict[str, TestDefinition] = field(default_factory=dict)
    installed: dict[str, TestDefinition] = field(default_factory=dict)
    pending_tests: list[TestDefinition] = field(default_factory=list)
    pending_python: list[str] = field(default_factory=list)
    pending_deb: list[str] = field(default_factory=list)


def state(ctx: ActionContext) -> LavaTestState:
    return ctx.run.slot(LavaTestState)


def lava_dir(ctx: ActionContext) -> str:
    return str(ctx.device.extra.get("lava_test_dir", DEFAULT_LAVA_DIR))


def files_to_carry(ctx: ActionContext) -> list[tuple[str, bytes, str]]:
    """The definition files the job's next ``lava_test_shell`` (this action or a later one) will
    put on the test image, for a boot that can carry them into the image (testdefs/carry.py):
    known only when every definition is inline, built in or a local file (no URL, no repository).
    ``[]`` otherwise, or when a definition does not load (the action itself reports that)."""
    start = ctx.action.index if ctx.action is not None else 0
    shell = next((a for a in ctx.job.actions if a.index >= start and a.command == "lava_test_shell"), None)
    if shell is None or shell.parameters.get("testdef_urls") or shell.parameters.get("testdef_repos"):
        return []
    st = state(ctx)
    env = ScriptEnv(kmsg=bool(ctx.device.extra.get("lava_test_kmsg", False)), skip_missing=True)
    where = f"{ctx.job.file}: {shell.path}.parameters"
    files: list[tuple[str, bytes, str]] = []
    try:
        for i, item in enumerate(shell.parameters.get("testdefs") or []):
            if isinstance(item, str) and "://" in item:
                return []
            definition = (resolve(item, registered=st.registered, base=Path(ctx.job.file).parent)
                          if isinstance(item, str) else load_inline(item, f"{where}.testdefs[{i}]"))
            files += definition_files(definition, lava_dir(ctx), test_dirname(definition, i), env=env)
    except LavaError:
        return []
    return files
