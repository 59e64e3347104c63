"""Project-wide test configuration for pytest-lava's own suite.

Tests under ``tests/lab/`` boot emulated boards: they are marked ``lab`` automatically. Whole-job
runs on simulated boards and real third-party servers are marked ``slow``. So
``pytest -m "not lab and not slow"`` is the quick loop, ``-m "not lab"`` adds the slow ones, and
``-m lab`` runs the end-to-end tests on the QEMU lab. CI runs all of them.

It is also this repository's *lab* conftest, the place where a lab wires itself into pytest-lava:
``pytest --lava-job jobs/...`` from here stamps every bundle with the lab build it ran on (the
``pytest_lava_bundle`` hook). The emulated lab's boards need no board type of their own (they are
``master`` and ``qemu`` boards); a lab with its own kind of board adds it here with
``pytest_lava_board_type`` (docs/writing-board-fixtures.md), and the lab's board fixtures for the
suite live in ``tests/lab/conftest.py``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

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


LAB_MANIFEST = Path(__file__).parent / "lab" / "build" / "www" / "artifacts.json"


def pytest_lava_bundle(bundle: dict[str, Any], job: Any) -> None:
    """Each bundle says which build of the emulated lab produced it (the digest of the lab's
    artifact manifest), so results of two lab builds are never compared unknowingly."""
    if not LAB_MANIFEST.is_file():
        return
    build = hashlib.sha256(LAB_MANIFEST.read_bytes()).hexdigest()[:12]
    for run in bundle.get("test_runs", []):
        run.setdefault("attributes", {})["lab.build"] = build
