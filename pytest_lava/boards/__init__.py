"""Board types: how a kind of board is driven ("which dispatcher for which device").

A board type is a driver class (:class:`~pytest_lava.boards.driver.BoardDriver`, the contract);
the device's ``board_type`` picks it. Built-in: ``master``
(master-image boards), ``qemu`` (the harness starts QEMU per job), ``fastmodel`` (a simulator
started per job, its console port read from its output). A lab adds its own with the
``pytest_lava_board_type`` hook in a ``conftest.py`` (see ``hookspecs.py``), or installs one with an
entry point in the group ``pytest_lava.board_types``::

    [project.entry-points."pytest_lava.board_types"]
    sdmux = "my_lab.sdmux:SdMuxBoard"

Each job run gets its own instance of its board's type.

A board type declares which actions it runs (``supported``, a set of action commands) and may
check an accepted action's parameters against a board (``check_parameters``). Plan validation
(``--lava-validate`` and the pre-flight check) uses both, so an action a board cannot run is a
clear job error before anything touches a board; at run time the same mistake is a
:class:`~pytest_lava.core.errors.JobError` (:func:`job_error`), which never counts against a board's
health.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import import_module
from importlib.metadata import entry_points

from ..core.errors import ConfigurationError
from .driver import BoardDriver, BoardState, ImageFormat, job_error

BoardType = BoardDriver  # the name used before the driver contract; kept for labs' conftest.py files

ENTRY_POINT_GROUP = "pytest_lava.board_types"
BUILTIN = {
    "master": "pytest_lava.boards.master:MasterBoard",
    "qemu": "pytest_lava.boards.qemu:QemuBoard",
    "fastmodel": "pytest_lava.boards.fastmodel:FastModelBoard",
}


def known_board_type(name: str) -> type[BoardDriver] | None:
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


BoardTypeLookup = Callable[[str], "BoardDriver | type[BoardDriver] | None"]


def make_board_type(name: str, lookup: BoardTypeLookup | None = None) -> BoardDriver:
    """A new instance of the board type ``name``: asked of ``lookup`` (the plugin passes the
    ``pytest_lava_board_type`` hook, so a conftest.py can add board types), else the built-in
    and installed ones."""
    found = lookup(name) if lookup is not None else known_board_type(name)
    if found is None:
        known = sorted(set(BUILTIN) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})
        raise ConfigurationError.single("device", "board_type",
                                        f"unknown board type {name!r} (known: {', '.join(known)}; a "
                                        "conftest.py can add one with the pytest_lava_board_type hook)")
    driver = found() if isinstance(found, type) else found
    if not isinstance(driver, BoardDriver):
        raise ConfigurationError.single("device", "board_type",
                                        f"board type {name!r} is {type(driver).__name__}, not a BoardDriver "
                                        "(subclass pytest_lava.boards.BoardDriver)")
    return driver


@cache
def board_type(name: str) -> BoardDriver:
    """A shared instance of a built-in or installed board type (for code without a plugin session)."""
    return make_board_type(name)


__all__ = ["BoardDriver", "BoardState", "BoardType", "ImageFormat", "board_type", "job_error", "known_board_type",
           "make_board_type"]
