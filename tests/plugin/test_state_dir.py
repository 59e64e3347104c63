"""Leases and board health live in the lab's state directory, keyed by the device directory (or
--lava-state / $PYTEST_LAVA_STATE / ini lava_state), never by --lava-results: two runs with
different results directories must see each other's leases."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from pytest_lava.devices.pool import BoardPool
from pytest_lava.plugin.session import default_state_dir

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture
def lab(pytester: pytest.Pytester) -> Path:
    for name in ("jobs", "lab"):
        shutil.copytree(DATA / name, pytester.path / name)
    return pytester.path


def state_of(pytester: pytest.Pytester, *args: str) -> str:
    """The state directory a run would use (its report header; --collect-only runs no board)."""
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only",
                                           "--lava-job", "jobs/panda-smoke.yaml", "--lava-devices", "lab", *args)
    found = re.search(r"^lava: .*, state (\S+)$", result.stdout.str(), re.M)
    assert found, result.stdout.str()
    return found.group(1)


def test_runs_with_different_results_share_the_state(pytester: pytest.Pytester, lab: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_LAVA_STATE", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(lab / "xdg"))
    first = state_of(pytester, "--lava-results", "r1")
    second = state_of(pytester, "--lava-results", "r2")
    assert first == second == str(default_state_dir(lab / "lab"))
    assert first.startswith(str(lab / "xdg" / "pytest-lava")) and "r1" not in first


def test_explicit_state_wins(pytester: pytest.Pytester, lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_LAVA_STATE", raising=False)
    assert state_of(pytester, "--lava-state", "shared") == str(lab / "shared")
    monkeypatch.setenv("PYTEST_LAVA_STATE", str(lab / "from-env"))
    assert state_of(pytester) == str(lab / "from-env")
    assert state_of(pytester, "--lava-state", "shared") == str(lab / "shared")


def test_other_device_directories_are_other_labs(tmp_path: Path) -> None:
    assert default_state_dir(tmp_path / "a" / "devices") != default_state_dir(tmp_path / "b" / "devices")


def test_a_lease_taken_by_one_run_is_seen_by_another(tmp_path: Path) -> None:
    """The same state directory means the same flock: a second pool cannot take a held board."""
    from pytest_lava.devices.device import Device

    state = default_state_dir(tmp_path / "devices")
    devices = {"b1": Device(name="b1", device_type="t")}
    holder = BoardPool(devices, state, poll_interval=0.02)
    other = BoardPool(devices, state, poll_interval=0.02)
    with holder.try_lease(devices["b1"], job="first") as lease:
        assert lease is not None
        assert other.try_lease(devices["b1"], job="second") is None
        assert str(other.holder("b1")) and "first" in str(other.holder("b1"))
    again = other.try_lease(devices["b1"], job="second")
    assert again is not None
    again.release()
