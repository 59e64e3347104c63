"""Parallel jobs across boards with ``pytest -n``, on SIMULATED boards (pytest_lava/testing/simboard.py,
a fake console process per board): the plugin keeps each job on one worker, each running job holds
its own board, jobs of a type queue for busy boards, and a board that keeps failing is quarantined
until a health check passes on it. The same on QEMU boards is in tests/lab/test_parallel_e2e.py."""

from __future__ import annotations

import json
import re
import shlex
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from pytest_lava.testing import SimLab

JOB = """\
job_name: {name}
device_type: sim
timeout: 120
{extra}
actions:
  - command: boot_master_image
  - command: boot_linaro_image
"""


@pytest.fixture
def simlab(tmp_path: Path):
    with SimLab(2, tmp_path / "boards", boot_time=0.5) as lab:
        lab.write_devices(tmp_path / "devices")
        yield lab


def write_jobs(path: Path, n: int, extra: str = "") -> list[str]:
    names = []
    for i in range(n):
        (path / f"job{i}.yaml").write_text(JOB.format(name=f"job{i}", extra=extra))
        names.append(f"job{i}.yaml")
    return names


def run(pytester: pytest.Pytester, jobs: list[str], *args: str) -> pytest.RunResult:
    argv: list[str] = ["-p", "no:cacheprovider", "--lava-devices", "devices", "--lava-results", "results", *args]
    for job in jobs:
        argv += ["--lava-job", job]
    return pytester.runpytest_subprocess(*argv, timeout=300)


def hostnames(results: Path) -> dict[str, str]:
    out = {}
    for bundle in results.glob("*/bundle.json"):
        data = json.loads(bundle.read_text())
        lava = next(r for r in data["test_runs"] if r["test_id"] == "lava")
        out[bundle.parent.name] = lava["attributes"]["target.hostname"]
    return out


def workers_of(result: pytest.RunResult, job_pattern: str) -> dict[str, set[str]]:
    """{job: the xdist workers that passed its items}, from ``-v`` lines (``job_pattern`` groups the job)."""
    workers: dict[str, set[str]] = defaultdict(set)
    for line in result.stdout.lines:
        m = re.match(r"\[(gw\d+)\] .*PASSED " + job_pattern, line)
        if m:
            workers[m.group(2)].add(m.group(1))
    return workers


def test_two_jobs_on_two_boards_with_n2(pytester: pytest.Pytester, simlab: SimLab, tmp_path: Path) -> None:
    pytester.chdir()
    (pytester.path / "devices").symlink_to(tmp_path / "devices")
    jobs = write_jobs(pytester.path, 2)
    result = run(pytester, jobs, "-n", "2", "-v")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=4)
    workers = workers_of(result, r"(job\d)\.yaml::")
    assert set(workers) == {"job0", "job1"}
    assert all(len(w) == 1 for w in workers.values()), workers  # a job's items stay on one worker
    boards = hostnames(pytester.path / "results")
    assert sorted(boards.values()) == ["sim-01", "sim-02"]  # each job on its own board


def test_jobs_outside_the_rootdir_stay_apart(pytester: pytest.Pytester, simlab: SimLab, tmp_path: Path) -> None:
    """Job files outside the rootdir with the same item names: pytest would give them all the node
    id ``::boot_master_image``; each gets its own path, and stays on its own worker."""
    pytester.chdir()
    (pytester.path / "devices").symlink_to(tmp_path / "devices")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    jobs = [str(elsewhere / name) for name in write_jobs(elsewhere, 2)]
    result = run(pytester, jobs, "-n", "2", "-v")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=4)
    workers = workers_of(result, r"\S*/elsewhere/(job\d)\.yaml::")
    assert set(workers) == {"job0", "job1"}, result.stdout.str()
    assert all(len(w) == 1 for w in workers.values()), workers
    assert sorted(hostnames(pytester.path / "results").values()) == ["sim-01", "sim-02"]


def test_jobs_queue_for_busy_boards(pytester: pytest.Pytester, simlab: SimLab, tmp_path: Path) -> None:
    pytester.chdir()
    (pytester.path / "devices").symlink_to(tmp_path / "devices")
    jobs = write_jobs(pytester.path, 3)
    result = run(pytester, jobs, "-n", "3")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=6)
    boards = hostnames(pytester.path / "results")
    assert len(boards) == 3 and set(boards.values()) <= {"sim-01", "sim-02"}


def test_quarantine_and_release_by_health_check(pytester: pytest.Pytester, simlab: SimLab, tmp_path: Path) -> None:
    pytester.chdir()
    devices = pytester.path / "devices"
    (devices / "device-types").mkdir(parents=True)
    (devices / "device-types" / "sim.yaml").write_text((tmp_path / "devices" / "device-types" / "sim.yaml").read_text())
    board = yaml.safe_load((tmp_path / "devices" / "sim-01.yaml").read_text())
    broken = pytester.path / "pdu-broken"
    # a PDU that fails while the flag file exists (argv, no shell built from job data)
    board["hard_reset_command"] = shlex.join(["sh", "-c", f"test ! -e {broken} && {board['hard_reset_command']}"])
    board["health_failure_threshold"] = 2
    board["power_retries"] = 0
    (devices / "sim-01.yaml").write_text(yaml.safe_dump(board))
    broken.touch()
    jobs = write_jobs(pytester.path, 1)

    first = run(pytester, jobs)
    assert first.ret != 0 and "quarantined" not in first.stdout.str() + first.stderr.str()
    second = run(pytester, jobs)
    text = second.stdout.str() + second.stderr.str()
    assert "quarantined" in text and "sim-01" in text
    third = run(pytester, jobs)  # a normal job is refused at once: the only board is quarantined
    assert third.ret != 0
    assert "quarantined" in third.stdout.str()

    broken.unlink()  # the lab engineer fixed the PDU; a health check job may use the board
    (pytester.path / "health.yaml").write_text(JOB.format(name="health", extra="health_check: true"))
    fourth = run(pytester, ["health.yaml"])
    assert fourth.ret == 0, fourth.stdout.str()
    assert "released" in fourth.stdout.str() + fourth.stderr.str()
    assert run(pytester, jobs).ret == 0
