"""Overhead of pytest-lava over bare QEMU on the same job, measured side by side, interleaved.

Bare: the lab's x86_64 kernel and busybox initramfs in QEMU with the device's own flags
(``devices/qemu-x86_64-01.yaml``), the serial console on a pty driven by pexpect: wait for the shell
prompt, two commands, exit (QEMU stopped with SIGTERM and a wait, as the harness stops it; pexpect's
own sleeps before each send and after the close are switched off). pytest-lava: ``pytest
--lava-job`` of the same boot on the same device with a two-case inline Test Definition 1.0 (one
passing, one failing case), from the start of the pytest process to its exit, bundle written.
Both pay QEMU's own start-up and boot.

The order of the two alternates from round to round. Prints each round, the median of each phase
(to QEMU's start, the boot to the first prompt, the commands, the end to the exit: pytest-lava's
from the timestamps of its console log), the medians, the spread of the rounds' paired differences
(pytest-lava's whole-run wall minus the same round's bare wall) and a final line
``overhead_s=<x> bare_s=<y>``: x is the median of the paired differences, y the bare median (goal:
x <= 0.5). Each round also times pytest alone (the plugin off, nothing collected) from the same
directory with the same options: the floor no pytest plugin can go below, printed before the final
line with the overhead beyond it. The pytest processes write and reuse bytecode, as an installed
package does.
Needs the lab's x86_64 kernel and initramfs (``make lab``); no lab services are started.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect
import yaml

REPO = Path(__file__).resolve().parents[1]
DEVICE = REPO / "devices" / "qemu-x86_64-01.yaml"
JOB = """\
job_name: overhead
device_type: qemu
timeout: 300
actions:
  - command: boot_linaro_image
  - command: lava_test_shell
    parameters:
      testdefs:
        - metadata: {format: Lava-Test Test Definition 1.0, name: overhead}
          run:
            steps:
              - lava-test-case kernel-is-linux --shell 'uname -s | grep -q Linux'
              - lava-test-case expected-failure --shell 'false'
"""


def device() -> dict:
    merged = dict(yaml.safe_load((REPO / "devices" / "device-types" / "qemu.yaml").read_text()) or {})
    merged.update(yaml.safe_load(DEVICE.read_text()))
    return merged


def bare_argv(dev: dict) -> list[str]:
    """The QEMU command line the qemu board type would run, with the serial console on stdio."""
    return [dev["qemu_binary"], "-M", dev["qemu_machine_type"], "-m", str(dev["qemu_memory"]),
            *[str(o) for o in dev["qemu_options"]]]


@dataclass
class Run:
    """One side of a round: the wall time and its phases (seconds)."""

    wall: float
    phases: dict[str, float]


def run_bare(dev: dict) -> Run:
    start = time.monotonic()
    child = pexpect.spawn(bare_argv(dev)[0], bare_argv(dev)[1:], cwd=str(REPO), timeout=300, encoding="utf-8",
                          codec_errors="replace")
    child.delaybeforesend = None  # pexpect sleeps 50 ms before every send by default; the harness does not
    try:
        prompt = dev["tester_str"]
        child.expect(prompt)
        at_prompt = time.monotonic()
        for cmd in ("uname -s", "echo done-$((6*7))"):
            child.sendline(cmd)
            child.expect(prompt)
        child.sendline("poweroff -f")  # the guest's exit; QEMU is killed below whatever happens
        done = time.monotonic()
    finally:
        # like the harness's kill_process: SIGTERM, then wait for the exit. pexpect's own close()
        # sleeps 0.1 s after closing the pty (delayafterclose), which the bare side once paid
        child.ptyproc.delayafterclose = child.ptyproc.delayafterterminate = 0.0
        if child.isalive():
            child.kill(signal.SIGTERM)
            with contextlib.suppress(pexpect.ExceptionPexpect):
                child.wait()
        child.close(force=True)
    end = time.monotonic()
    return Run(end - start, {"start": 0.0, "boot": at_prompt - start, "commands": done - at_prompt, "exit": end - done})


_STAMP = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) (.*)$")


def console_phases(log: Path, started: float, wall: float, prompt: str) -> dict[str, float]:
    """The phases of a pytest-lava run, from the timestamps of its console log (``started``: the
    wall-clock time the pytest process was started): to QEMU's start, the boot to the first prompt,
    the commands, and from the job's end to the process's exit."""
    day = datetime.date.fromtimestamp(started)
    marks: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = _STAMP.match(line)
        if not m:
            continue
        clock = datetime.datetime.strptime(m.group(1), "%H:%M:%S.%f").time()
        at = datetime.datetime.combine(day, clock).timestamp() - started
        text = m.group(2)
        if "[lava] started" in text:
            marks.setdefault("qemu", at)
        elif re.search(prompt, text) and "qemu" in marks:
            marks.setdefault("prompt", at)
        if "[lava] console closed" in text:
            marks["closed"] = at
    if not {"qemu", "prompt", "closed"} <= set(marks):
        return {}
    return {"start": marks["qemu"], "boot": marks["prompt"] - marks["qemu"],
            "commands": marks["closed"] - marks["prompt"], "exit": wall - marks["closed"]}


def run_lava(work: Path, dev: dict) -> Run:
    results = work / "results"
    shutil.rmtree(results, ignore_errors=True)  # a results directory keeps appending to console.log
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-q",
            "--lava-job", str(work / "overhead.yaml"), "--lava-devices", str(work / "devices"),
            "--lava-results", str(results), "--lava-state", str(work / "state"), "-rN"]
    # bytecode is written and reused, as for an installed package (pip compiles it at install): with
    # PYTHONDONTWRITEBYTECODE set, every run would compile (and assertion-rewrite) the plugin anew
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.time()
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    wall = time.monotonic() - start
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 1 or "error" in summary or "1 failed" not in summary:  # one case fails on purpose
        sys.stdout.write(proc.stdout[-3000:] + proc.stderr[-2000:])
        raise SystemExit(f"pytest --lava-job exited {proc.returncode}, expected 1 (one failing case)")
    return Run(wall, console_phases(results / "overhead" / "console.log", started, wall, dev["tester_str"]))


def run_pytest_alone(work: Path) -> float:
    """pytest's own floor: the same interpreter, options, working directory and configuration
    (the repository's rootdir and pyproject.toml, as the pytest-lava run has), the plugin switched
    off, nothing to collect (an empty directory: exit status 5), from the process's start to its
    exit. No pytest plugin acts before pytest's start or after its exit, so this bounds the overhead
    from below."""
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-q", "-rN",
            "-p", "no:lava", "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"), str(work / "empty")]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    wall = time.monotonic() - start
    if proc.returncode != 5:  # 5: no tests collected, as asked
        sys.stdout.write(proc.stdout[-3000:] + proc.stderr[-2000:])
        raise SystemExit(f"the empty pytest run exited {proc.returncode}, expected 5 (nothing collected)")
    return wall


def phases_line(name: str, runs: list[Run]) -> str:
    keys = ("start", "boot", "commands", "exit")
    got = [r.phases for r in runs if r.phases]
    if not got:
        return f"{name}: no phases"
    return f"{name:12} " + ", ".join(f"{k} {statistics.median(p[k] for p in got):.2f}" for k in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21,
                        help="interleaved rounds (a boot still varies by +-0.5 s on a shared machine: with 11 "
                             "rounds the final line moved by +-0.45 s from run to run)")
    args = parser.parse_args()
    dev = device()
    for path in (REPO / "lab/build/x86_64/vmlinux", REPO / "lab/build/x86_64/initramfs.cpio"):
        if not path.exists():
            raise SystemExit(f"{path} is missing: run `make lab` first")
    with tempfile.TemporaryDirectory(prefix="lava-overhead-") as tmp:
        work = Path(tmp)
        (work / "devices" / "device-types").mkdir(parents=True)
        (work / "devices" / "device-types" / "qemu.yaml").write_text(
            (REPO / "devices" / "device-types" / "qemu.yaml").read_text())
        own = yaml.safe_load(DEVICE.read_text())  # the lab's paths are relative to the repository root
        own["qemu_options"] = [str(REPO / o) if str(o).startswith("lab/") else o for o in own["qemu_options"]]
        (work / "devices" / "qemu-x86_64-01.yaml").write_text(yaml.safe_dump(own))
        (work / "overhead.yaml").write_text(JOB)
        (work / "empty").mkdir()
        run_lava(work, dev)  # warm-up: page cache, Python bytecode
        run_pytest_alone(work)
        bare: list[Run] = []
        lava: list[Run] = []
        floor: list[float] = []
        for n in range(1, args.rounds + 1):
            if n % 2:  # the order alternates: a load that grows or fades during a round hits both sides
                bare.append(run_bare(dev))
                lava.append(run_lava(work, dev))
            else:
                lava.append(run_lava(work, dev))
                bare.append(run_bare(dev))
            floor.append(run_pytest_alone(work))
            print(f"round {n}: bare {bare[-1].wall:.2f} s, pytest-lava {lava[-1].wall:.2f} s, "
                  f"overhead {lava[-1].wall - bare[-1].wall:+.2f} s, pytest alone {floor[-1]:.2f} s", flush=True)
    print(report(bare, lava, floor))


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free confidence interval of the median: the k-th smallest and k-th largest of
    ``values``, with k the largest for which the interval still covers the median with probability
    ``level`` (each value falls below the median with probability 1/2: binomial order statistics).
    None with fewer than 6 values (no k reaches 95 %). How far a run's ``overhead_s`` can be trusted:
    with 21 rounds, the 6th and 16th of the sorted paired differences."""
    ordered, n = sorted(values), len(values)
    tail, best = 0.0, None
    for k in range(1, n // 2 + 1):  # tail = P(Binomial(n, 1/2) <= k - 1)
        tail += math.comb(n, k - 1) / 2 ** n
        if 1 - 2 * tail < level:
            break
        best = k
    return None if best is None else (ordered[best - 1], ordered[n - best])


def report(bare: list[Run], lava: list[Run], floor: list[float] | None = None) -> str:
    """The phase table, the medians and the final line. ``overhead_s`` is the median of the rounds'
    paired differences (each round's two whole-run walls are adjacent in time, so a load that slows
    the machine for a while hits both of a pair): a median of medians lets two unrelated slow boots
    decide the line."""
    diffs = sorted(lv.wall - b.wall for b, lv in zip(bare, lava, strict=True))
    b, lv = statistics.median(r.wall for r in bare), statistics.median(r.wall for r in lava)
    lines = ["phases (medians, s): start = to QEMU's start, boot = to the first prompt, commands = the test, "
             "exit = the job's end to the exit", phases_line("bare", bare), phases_line("pytest-lava", lava),
             f"median: bare {b:.2f} s, pytest-lava {lv:.2f} s (cpus: {os.cpu_count()})"]
    if all(r.phases for r in bare + lava):  # the part the boot's noise does not reach
        own = sum(statistics.median(r.phases[k] for r in lava) - statistics.median(r.phases[k] for r in bare)
                  for k in ("start", "commands", "exit"))
        lines.append(f"overhead without the boot (start + commands + exit, medians): {own:+.2f} s")
    quart = statistics.quantiles(diffs, n=4) if len(diffs) > 1 else [diffs[0]] * 3
    lines.append(f"paired differences ({len(diffs)} rounds): min {diffs[0]:+.2f}, quartiles {quart[0]:+.2f} "
                 f"{quart[1]:+.2f} {quart[2]:+.2f}, max {diffs[-1]:+.2f} s; median of medians {lv - b:+.2f} s")
    interval = median_interval(diffs)
    if interval is not None:
        lines.append(f"95 % confidence interval of the overhead (the paired differences' median): "
                     f"{interval[0]:+.2f} … {interval[1]:+.2f} s")
    if floor:
        alone = statistics.median(floor)
        lines.append(f"pytest alone (start to exit, plugin off, nothing collected): {alone:.2f} s; the overhead "
                     f"beyond it: {statistics.median(diffs) - alone:+.2f} s")
    lines.append(f"overhead_s={statistics.median(diffs):.2f} bare_s={b:.2f}")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
