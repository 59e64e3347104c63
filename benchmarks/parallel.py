"""Parallel jobs across boards: 8 jobs on 8 boards with ``pytest -n 8`` against the same jobs
with ``pytest -n 1``, in one run.

The boards are SIMULATED (``pytest_lava/testing/simboard.py``: a small process per board serving a
scripted console over TCP with a realistic boot time and command latency) — a fake, on purpose:
eight QEMU guests on two cores would measure the CPU, not the harness.

Each job power-cycles its board, boots the master image, runs commands in it, then boots the test
image through the (simulated) bootloader. Prints the wall times and a final line
``efficiency=<x>`` where x = (wall with -n 1) / (wall with -n N) / N: 1.0 is perfect scaling.

The ``-n N`` run is short (one job's length plus start-up) and its start-up is CPU-bound (N+1
pytest processes on a small host), so a passing load moves it by a second: each round runs it
``--parallel-runs`` times (3) and takes the median; the ``-n 1`` run (N jobs' length) once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_lava.testing import SimLab

JOB = """\
job_name: parallel-{n}
device_type: sim
timeout: 300
actions:
  - command: boot_master_image
  - command: boot_linaro_image
"""


def run_pytest(jobs: list[Path], devices: Path, results: Path, workers: int) -> float:
    # plugins that have nothing to do with running jobs (installed here for the project's own tests)
    # are left out of both runs: each xdist worker would import them again
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark",
            "-q", "--lava-devices", str(devices),
            "--lava-results", str(results), "-n", str(workers)]
    for job in jobs:
        argv += ["--lava-job", str(job)]
    # bytecode written and reused, as for an installed package (see overhead.py)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=devices.parent, env=env)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout[-4000:] + proc.stderr[-2000:])
        raise SystemExit(f"pytest -n {workers} failed with exit status {proc.returncode}")
    return wall


def boards_used(results: Path) -> set[str]:
    """The boards the jobs of one run were on (each bundle's ``lava`` run names its board)."""
    used = set()
    for bundle in results.glob("*/bundle.json"):
        runs = json.loads(bundle.read_text())["test_runs"]
        used |= {r["attributes"]["target.hostname"] for r in runs if r["test_id"] == "lava"}
    return used


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--boot-time", type=float, default=15.0, help="simulated boot time (s); real boards: 10-60")
    ap.add_argument("--parallel-runs", type=int, default=3, help="-n N runs per round (their median)")
    args = ap.parse_args()
    n = args.jobs
    with tempfile.TemporaryDirectory(prefix="lava-parallel-") as tmp:
        work = Path(tmp)
        jobs = []
        for i in range(n):
            path = work / f"job{i}.yaml"
            path.write_text(JOB.format(n=i))
            jobs.append(path)
        with SimLab(n, work / "boards", boot_time=args.boot_time) as lab:
            lab.write_devices(work / "devices")
            serial, parallel = [], []
            for r in range(args.repeat):
                serial.append(run_pytest(jobs, work / "devices", work / f"results-1-{r}", 1))
                runs = []
                for k in range(args.parallel_runs):
                    results = work / f"results-{n}-{r}-{k}"
                    runs.append(run_pytest(jobs, work / "devices", results, n))
                    if len(boards_used(results)) != n:  # each job on a board of its own, all at once
                        raise SystemExit(f"-n {n}: the jobs used {sorted(boards_used(results))}")
                print(f"round {r + 1}: -n 1 {serial[-1]:.2f} s; -n {n} " + ", ".join(f"{w:.2f}" for w in runs) + " s",
                      flush=True)
                parallel.append(statistics.median(runs))
    s, p = statistics.median(serial), statistics.median(parallel)
    print(f"{n} jobs on {n} simulated boards: -n 1 wall {s:.2f} s, -n {n} wall {p:.2f} s")
    print(f"speed-up {s / p:.2f}x of an ideal {n}x")
    print(f"efficiency={s / p / n:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
