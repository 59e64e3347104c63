"""Hooks a lab's ``conftest.py`` (or any plugin) can implement to extend pytest-lava.

Registered by the plugin with ``pytest_addhooks``; implement them like any pytest hook, by name,
in a ``conftest.py`` or a plugin module. The entry-point group ``pytest_lava.board_types`` keeps
working: the plugin's own implementation of :func:`pytest_lava_board_type` (tried last) reads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..actions.spec import ActionSpec
    from ..boards import BoardDriver
    from ..jobs.job import Job


@pytest.hookspec(firstresult=True)
def pytest_lava_board_type(name: str, config: pytest.Config) -> BoardDriver | type[BoardDriver] | None:
    """The board type (driver) a device's ``board_type: <name>`` means, or ``None`` if not yours.

    Return a :class:`pytest_lava.boards.BoardDriver` subclass (the plugin makes one instance per job
    run, so the instance may hold that board's state) or an instance. Example, in a lab's
    ``conftest.py``::

        from pytest_lava.boards.master import MasterBoard

        class SdMuxBoard(MasterBoard):
            name = "sdmux"

        def pytest_lava_board_type(name):
            return SdMuxBoard if name == "sdmux" else None
    """


def pytest_lava_bundle(bundle: dict[str, Any], job: Job, config: pytest.Config) -> None:
    """Amend a job's result bundle (in place) before it is masked, validated, written and submitted:
    add attributes to its test runs, attach a file, ... The result must still be a valid bundle."""


def pytest_lava_actions(config: pytest.Config) -> list[ActionSpec] | None:
    """Actions to add to the job language (each an :class:`pytest_lava.actions.spec.ActionSpec` with
    its ``run(ctx, parameters)``), e.g. a lab's own flashing step. Asked once, before jobs are
    validated; an action of the same name replaces the built-in one."""
