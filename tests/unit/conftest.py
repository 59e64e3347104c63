"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_lava.console.shell import ShellSession
from tests.unit.fake_busybox import make_applet_dir, start_shell, stop


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[ShellSession]:
    """A fresh fake test-image shell (a real busybox sh on a pty), stopped after the test."""
    home = tmp_path / "home"
    home.mkdir()
    session = start_shell(make_applet_dir(tmp_path / "bin"), home)
    yield session
    stop(session)
