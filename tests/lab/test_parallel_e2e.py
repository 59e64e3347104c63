"""Two jobs on two QEMU lab boards at once with ``pytest -n 2`` (issue 8's end-to-end case).

The jobs ask for the device type, not a board: the pool leases two different x86_64 boards,
each job power-cycles its board with the device file's command, reaches the shell and runs a
test definition. Boards this test powered on are stopped by labctl (by PID) at the end."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LABCTL = REPO / "lab" / "labctl"

JOB = """\
job_name: parallel-{i}
device_type: lab-x86_64
timeout: 600
actions:
  - command: boot_master_image
  - command: lava_test_shell
    parameters:
      testdefs:
        - metadata: {{format: Lava-Test Test Definition 1.0, name: who-{i}}}
          run:
            steps:
              - lava-test-case kernel --shell uname -r
              - lava-test-case hostname --shell hostname
"""


def running_boards() -> set[str]:
    out = subprocess.run([str(LABCTL), "status", "--json"], capture_output=True, text=True, timeout=60, check=True)
    return {name for name, p in json.loads(out.stdout)["processes"].items() if p.get("running")}


@pytest.fixture
def stop_new_boards():
    before = running_boards()
    yield
    started = sorted(running_boards() - before - {"ser2net", "http"})
    if started:
        subprocess.run([str(LABCTL), "stop", *started], timeout=120, check=False)
    if not before:  # the power commands started ser2net and the image server for us: stop them too
        subprocess.run([str(LABCTL), "stop"], timeout=120, check=False)


def test_two_jobs_on_two_lab_boards_at_once(tmp_path: Path, stop_new_boards: None) -> None:
    jobs = []
    for i in range(2):
        path = tmp_path / f"job{i}.yaml"
        path.write_text(JOB.format(i=i))
        jobs += ["--lava-job", str(path)]
    results = tmp_path / "results"
    proc = subprocess.run(
        ["python", "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "-v", "--lava-devices", str(REPO / "devices"),
         "--lava-results", str(results), *jobs],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.stdout.count("PASSED") >= 2 + 4  # two test actions and their four test cases
    hosts = set()
    for bundle in results.glob("*/bundle.json"):
        lava = next(r for r in json.loads(bundle.read_text())["test_runs"] if r["test_id"] == "lava")
        hosts.add(lava["attributes"]["target.hostname"])
        assert lava["attributes"]["target.device_type"] == "lab-x86_64"
    assert len(hosts) == 2, hosts  # each job on its own board
