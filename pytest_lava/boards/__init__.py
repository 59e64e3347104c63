"""Board types: how a kind of board is driven ("which dispatcher for which device").

A board type is a small class; the device's ``board_type`` picks it. Built-in: ``master``
(master-image boards), ``qemu`` (the harness starts QEMU per job). A lab adds its own with the
``pytest_lava_board_type`` hook in a ``conftest.py`` (see ``hookspecs.py``), or installs one with an
entry point in the group ``pytest_lava.board_types``::

    [project.entry-points."pytest_lava.board_types"]
    sdmux = "my_lab.sdmux:SdMuxBoard"

Each job run gets its own instance of its board's type.

A board type declares which actions it runs (``supported``, a set of action commands) and may
check an accepted action's parameters against a board (``check_parameters``). Plan validation
(``--lava-validate`` and the pre-flight check) uses both, so an action a board cannot run is a
clear job error before anything touches a board; at run time the same mistake is a
:class:`~pytest_lava.errors.JobError` (:func:`job_error`), which never counts against a board's
health.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from ..actions.spec import SUBMIT
from ..errors import ConfigurationError, JobError, ProblemList

if TYPE_CHECKING:
    from ..device import Device
    from ..job import ActionDef
    from ..runner import ActionContext, JobRun
    from ..shell import ShellSession

ENTRY_POINT_GROUP = "pytest_lava.board_types"
BUILTIN = {
    "master": "pytest_lava.boards.master:MasterBoard",
    "qemu": "pytest_lava.boards.qemu:QemuBoard",
}


def job_error(ctx: ActionContext, reason: str, field: str = "command") -> JobError:
    """A job mistake found at run time (the job asked for something this board cannot do): a job
    error naming the job file and the action, never an infrastructure failure."""
    action = getattr(ctx, "action", None)
    where = f"{action.path}.{field}" if action is not None else field
    return JobError.single(str(ctx.job.file), where, reason)


class BoardType:
    """Base class. Subclasses override what their boards do differently."""

    name = "base"
    #: the action commands this board type runs. Empty: not declared — every action, unless the
    #: action's own ``board_types`` (its :class:`~pytest_lava.actions.spec.ActionSpec`) names others
    supported: frozenset[str] = frozenset()
    #: command -> what to use instead, appended to a refusal
    hints: dict[str, str] = {}

    def accepts(self, action: ActionDef) -> str | None:
        """``None`` if the action can run on this kind of board, else the reason it cannot (naming
        the board type and what it runs). Submit actions run on the host: always accepted."""
        if action.kind == SUBMIT:
            return None
        if self.supported:
            if action.command in self.supported:
                return None
            hint = self.hints.get(action.command)
            return (f"board type {self.name!r} cannot run {action.command!r}" + (f" ({hint})" if hint else "")
                    + f"; board type {self.name!r} runs: {', '.join(sorted(self.supported))}")
        wanted = action.spec.board_types
        if wanted and self.name not in wanted:
            return (f"{action.command!r} runs only on board type(s) {', '.join(repr(w) for w in wanted)}, "
                    f"not on board type {self.name!r}")
        return None

    def check_parameters(self, action: ActionDef, device: Device, problems: ProblemList, path: str) -> None:
        """Board-specific checks of an accepted action's parameters (``path`` is the action's
        ``parameters`` field), at validation time. Add a problem per mistake."""

    def test_shell(self, ctx: ActionContext) -> ShellSession:
        """A shell on the booted test image, booting it first if it is not up (self-healing,
        like the old dispatcher's tester_session)."""
        raise job_error(ctx, f"board type {self.name!r} has no test image shell")

    def master_shell(self, ctx: ActionContext) -> ShellSession:
        raise job_error(ctx, f"board type {self.name!r} has no master image")

    def finish(self, run: JobRun) -> None:
        """Called once at the end of the job, whatever happened (e.g. power the board off)."""


def known_board_type(name: str) -> type[BoardType] | None:
    """A built-in board type, or one installed with an entry point, by name (``None``: unknown).
    The plugin's own ``pytest_lava_board_type`` hook implementation."""
    spec = BUILTIN.get(name)
    if spec is None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                return ep.load()  # type: ignore[no-any-return]
        return None
    module, _, cls = spec.partition(":")
    try:
        return getattr(import_module(module), cls)  # type: ignore[no-any-return]
    except ImportError as exc:
        raise ConfigurationError.single("device", "board_type",
                                        f"board type {name!r} is not available: {exc}") from None


BoardTypeLookup = Callable[[str], "BoardType | type[BoardType] | None"]


def make_board_type(name: str, lookup: BoardTypeLookup | None = None) -> BoardType:
    """A new instance of the board type ``name``: asked of ``lookup`` (the plugin passes the
    ``pytest_lava_board_type`` hook, so a conftest.py can add board types), else the built-in
    and installed ones."""
    found = lookup(name) if lookup is not None else known_board_type(name)
    if found is None:
        known = sorted(set(BUILTIN) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})
        raise ConfigurationError.single("device", "board_type",
                                        f"unknown board type {name!r} (known: {', '.join(known)}; a "
                                        "conftest.py can add one with the pytest_lava_board_type hook)")
    return found() if isinstance(found, type) else found


@cache
def board_type(name: str) -> BoardType:
    """A shared instance of a built-in or installed board type (for code without a plugin session)."""
    return make_board_type(name)
