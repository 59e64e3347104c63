"""Project-wide test configuration for pytest-lava's own suite.

Tests under ``tests/lab/`` boot emulated boards: they are marked ``lab`` automatically. Whole-job
runs on simulated boards and real third-party servers are marked ``slow``. So
``pytest -m "not lab and not slow"`` is the quick loop, ``-m "not lab"`` adds the slow ones, and
``-m lab`` runs the end-to-end tests on the QEMU lab. CI runs all of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).parent / "tests"
LAB_TESTS = TESTS / "lab"
# whole jobs through a pytest subprocess on simulated boards, or real third-party servers:
# seconds each, so they are `slow`; `pytest -m "not lab and not slow"` is the quick loop
SLOW = {TESTS / "integration"} | {TESTS / "plugin" / f"test_{name}.py" for name in (
    "parallel_sim", "submit_job", "failure_report", "case_reports", "url_password", "state_dir", "fixtures_sim")}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.path))
        if LAB_TESTS in path.parents:
            item.add_marker(pytest.mark.lab)
        elif path in SLOW or SLOW & set(path.parents):
            item.add_marker(pytest.mark.slow)
