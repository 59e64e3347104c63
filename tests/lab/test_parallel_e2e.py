"""Three jobs on three QEMU lab boards at once with ``pytest -n 3`` (issues 8 and 11).

The jobs ask for the device type, not a board: the pool leases three different x86_64 boards,
each job power-cycles its board with the device file's command, reaches the shell once and runs
two test definitions. Every item of a job runs on one xdist worker (the plugin's scheduler), so a
job boots one board once; every test case is one JUnit testcase. The first worker up claims all
three jobs (plugin/claims.py) and runs them side by side: the boards boot at the same time. Boards
this test powered on are stopped by labctl (by PID) at the end."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

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
  - command: lava_test_shell
    parameters:
      testdefs:
        - metadata: {{format: Lava-Test Test Definition 1.0, name: check-{i}}}
          run:
            steps:
              - lava-test-case true-{i} --shell true
              - lava-test-case {outcome}-{i} --shell {command}
"""
JOBS = 3


def test_three_jobs_on_three_lab_boards_at_once(tmp_path: Path, stop_new_boards: None) -> None:
    jobs = []
    for i in range(JOBS):
        path = tmp_path / f"job{i}.yaml"
        failing = i == 1
        outcome, command = ("fails", "false") if failing else ("passes", "true")
        path.write_text(JOB.format(i=i, outcome=outcome, command=command))
        jobs += ["--lava-job", str(path)]
    results = tmp_path / "results"
    junit = tmp_path / "j.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", str(JOBS), "-v", "-rfE",
         "--lava-devices", str(REPO / "devices"), "--lava-results", str(results), f"--junitxml={junit}", *jobs],
        cwd=REPO, capture_output=True, text=True, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-4000:]  # the one failing case, nothing else
    failed = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    assert len(failed) == 1 and "lava_test_shell[check-1::fails-1]" in failed[0], out[-4000:]

    names = [tc.get("name", "") for tc in ET.parse(junit).getroot().iter("testcase")]
    cases = [n for n in names if "::" in n]
    assert len(cases) == len(set(cases)) == JOBS * 4, names  # each case exactly once
    for i in range(JOBS):
        last = "fails" if i == 1 else "passes"
        assert {f"lava_test_shell[who-{i}::kernel]", f"lava_test_shell[who-{i}::hostname]",
                f"lava_test_shell[check-{i}::true-{i}]", f"lava_test_shell[check-{i}::{last}-{i}]"} <= set(cases)
    assert not [n for n in names if "@" in n], names  # no xdist group suffix

    hosts = set()
    for i in range(JOBS):
        bundle = json.loads((results / f"job{i}" / "bundle.json").read_text())
        lava = next(r for r in bundle["test_runs"] if r["test_id"] == "lava")
        hosts.add(lava["attributes"]["target.hostname"])
        assert lava["attributes"]["target.device_type"] == "lab-x86_64"
        console = (results / f"job{i}" / "console.log").read_text(errors="replace")
        assert console.count("Linux version") == 1, f"job{i} booted {console.count('Linux version')} times"
        assert {r["test_id"] for r in bundle["test_runs"]} >= {f"who-{i}", f"check-{i}", "lava"}
    assert len(hosts) == JOBS, hosts  # each job on its own board

    workers = {line.split()[0] for line in proc.stdout.splitlines() if line.startswith("[gw")}
    assert len(workers) == 1, workers  # the first worker up claimed every job (-n 3: room for three)
    windows = [console_window(results / f"job{i}" / "console.log") for i in range(JOBS)]
    assert max(start for start, _ in windows) < min(end for _, end in windows), windows  # side by side


def console_window(log: Path) -> tuple[str, str]:
    """The first and last timestamps (HH:MM:SS.mmm) of a console log."""
    stamps = [line.split()[0] for line in log.read_text(errors="replace").splitlines()
              if line[:2].isdigit() and line[2:3] == ":"]
    return stamps[0], stamps[-1]
