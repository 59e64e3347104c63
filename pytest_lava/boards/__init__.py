"""Board types: how a kind of board is driven ("which dispatcher for which device").

A board type is a small class; the device's ``board_type`` picks it. Built-in: ``master``
(master-image boards), ``qemu`` (the harness starts QEMU per job). Third-party board types
register with an entry point in the group ``pytest_lava.board_types``::

    [project.entry-points."pytest_lava.board_types"]
    sdmux = "my_lab.sdmux:SdMuxBoard"

A board type says which actions it accepts and explains a refusal, so an unsupported action is
a clear job error at validation time rather than a surprise on the board.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from ..errors import ConfigurationError, InfrastructureError

if TYPE_CHECKING:
    from ..job import ActionDef
    from ..runner import ActionContext, JobRun
    from ..shell import ShellSession

ENTRY_POINT_GROUP = "pytest_lava.board_types"
BUILTIN = {
    "master": "pytest_lava.boards.master:MasterBoard",
    "qemu": "pytest_lava.boards.qemu:QemuBoard",
}


class BoardType:
    """Base class. Subclasses override what their boards do differently."""

    name = "base"
    #: action names this board type can run; empty means "every action"
    supported: frozenset[str] = frozenset()

    def accepts(self, action: ActionDef) -> str | None:
        """``None`` if the action can run on this kind of board, else the reason it cannot."""
        if self.supported and action.command not in self.supported and action.kind != "submit":
            runs = ", ".join(sorted(self.supported))
            return f"board type {self.name!r} cannot run {action.command!r} (it runs: {runs})"
        return None

    def test_shell(self, ctx: ActionContext) -> ShellSession:
        """A shell on the booted test image, booting it first if it is not up (self-healing,
        like the old dispatcher's tester_session)."""
        raise InfrastructureError(f"board type {self.name!r} has no test image shell")

    def master_shell(self, ctx: ActionContext) -> ShellSession:
        raise InfrastructureError(f"board type {self.name!r} has no master image")

    def finish(self, run: JobRun) -> None:
        """Called once at the end of the job, whatever happened (e.g. power the board off)."""


@cache
def board_type(name: str) -> BoardType:
    spec = BUILTIN.get(name)
    if spec is None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                return ep.load()()
        known = sorted(set(BUILTIN) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})
        raise ConfigurationError.single("device", "board_type",
                                        f"unknown board type {name!r} (known: {', '.join(known)})")
    module, _, cls = spec.partition(":")
    try:
        return getattr(import_module(module), cls)()
    except ImportError as exc:
        raise ConfigurationError.single("device", "board_type",
                                        f"board type {name!r} is not available: {exc}") from None
