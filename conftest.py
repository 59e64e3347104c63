"""Project-wide test configuration for pytest-lava's own suite.

Tests under ``tests/lab/`` boot emulated boards: they are marked ``lab`` automatically, so
``pytest -m "not lab"`` runs the fast suite alone in seconds and ``pytest -m lab`` the rest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

LAB_TESTS = Path(__file__).parent / "tests" / "lab"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if LAB_TESTS in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.lab)
