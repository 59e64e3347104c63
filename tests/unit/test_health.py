"""Board health: consecutive infrastructure failures, quarantine, release by a health check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from pytest_lava.devices.health import BoardHealth

REPO = Path(__file__).resolve().parents[2]


def infra(health: BoardHealth, board: str = "x86-01", threshold: int = 3, reason: str = "") -> str | None:
    return health.record(board, infrastructure_failure=True, health_check=False, passed=False,
                         threshold=threshold, reason=reason)


def test_quarantine_after_k_consecutive_infrastructure_failures(tmp_path: Path) -> None:
    health = BoardHealth(tmp_path)
    assert infra(health) is None
    assert infra(health) is None
    assert not health.is_quarantined("x86-01")
    msg = infra(health, reason="power: hard_reset_command exited 1")
    assert msg == (
        "board x86-01 quarantined after 3 consecutive infrastructure failures, "
        "last: power: hard_reset_command exited 1; "
        "a passing health-check job (health_check: true) releases it"
    )
    assert health.is_quarantined("x86-01")
    assert infra(health) is None  # already quarantined: no new message
    status = health.status()["x86-01"]
    assert status["quarantined"] is True and status["consecutive_infra_failures"] == 4


def test_a_job_without_infrastructure_failure_resets_the_count(tmp_path: Path) -> None:
    health = BoardHealth(tmp_path)
    infra(health)
    infra(health)
    # a test failure means the board worked
    assert health.record("x86-01", infrastructure_failure=False, health_check=False, passed=False,
                         threshold=3) is None
    infra(health)
    infra(health)
    assert not health.is_quarantined("x86-01")
    assert infra(health) is not None


def test_threshold_comes_from_the_caller_and_zero_disables(tmp_path: Path) -> None:
    health = BoardHealth(tmp_path)
    assert infra(health, "a", threshold=1) is not None
    for _ in range(10):
        assert infra(health, "b", threshold=0) is None
    assert not health.is_quarantined("b")


def test_passing_health_check_releases_and_failing_one_quarantines(tmp_path: Path) -> None:
    health = BoardHealth(tmp_path)
    for _ in range(3):
        infra(health)
    # a failing health check keeps it quarantined (no change, no message)
    assert health.record("x86-01", infrastructure_failure=False, health_check=True, passed=False,
                         threshold=3) is None
    assert health.is_quarantined("x86-01")
    msg = health.record("x86-01", infrastructure_failure=False, health_check=True, passed=True, threshold=3,
                        job="health-x86")
    assert msg == "board x86-01 released from quarantine: health check health-x86 passed"
    assert not health.is_quarantined("x86-01")
    assert health.status()["x86-01"]["consecutive_infra_failures"] == 0
    # a passing health check on a healthy board changes nothing
    assert health.record("x86-01", infrastructure_failure=False, health_check=True, passed=True,
                         threshold=3) is None
    # a failed health check quarantines at once, like LAVA's health "Bad"
    msg = health.record("x86-01", infrastructure_failure=True, health_check=True, passed=False, threshold=3,
                        reason="no U-Boot prompt")
    assert msg is not None
    assert "quarantined after health check failed (infrastructure failure): no U-Boot prompt" in msg


def test_release_by_hand(tmp_path: Path) -> None:
    health = BoardHealth(tmp_path)
    assert health.release("x86-01") is None
    infra(health, threshold=1)
    msg = health.release("x86-01", "fixed the cable")
    assert msg == "board x86-01 released from quarantine: fixed the cable"
    assert not health.is_quarantined("x86-01")


def test_state_is_json_on_disk_and_survives_a_new_instance(tmp_path: Path) -> None:
    infra(BoardHealth(tmp_path), "odd/name", threshold=1)
    files = list((tmp_path / "health").glob("*.json"))
    assert [f.name for f in files] == ["odd_name.json"]
    data = json.loads(files[0].read_text())
    assert data["board"] == "odd/name" and data["quarantined"] is True
    assert BoardHealth(tmp_path).is_quarantined("odd/name")
    assert list(BoardHealth(tmp_path).status()) == ["odd/name"]


def test_unreadable_state_counts_as_healthy(tmp_path: Path) -> None:
    health = BoardHealth(tmp_path)
    (tmp_path / "health" / "x86-01.json").write_text("{not json")
    assert not health.is_quarantined("x86-01")
    assert infra(health) is None  # and it is rewritten cleanly
    assert health.status()["x86-01"]["consecutive_infra_failures"] == 1


def test_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from pytest_lava.devices.health import BoardHealth
        h = BoardHealth(Path(sys.argv[1]))
        for _ in range(50):
            h.record("b", infrastructure_failure=True, health_check=False, passed=False, threshold=0)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env) for _ in range(4)]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    assert BoardHealth(tmp_path).status()["b"]["consecutive_infra_failures"] == 200
