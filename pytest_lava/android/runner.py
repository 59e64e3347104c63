"""Install and run an :class:`~.model.AndroidTest` over adb, parsing its output live.

* install: ``mkdir -p`` the test's directory, ``adb push`` each file, ``chmod 755``;
* run: each run step is one ``adb shell`` (shell v2: its exit status is the command's); every
  output line goes to the :class:`~pytest_lava.testdefs.parse.CaseCollector` at once, so a case
  is reported the moment its line arrives; a step exiting non-zero is a failing case
  ``run-step-<n>`` (nothing fails silently);
* a step that does not end before the deadline: the adb client is killed and the outcome says so
  (:attr:`RunOutcome.timed_out`); what to do with the board (Ctrl-C, reboot) is the caller's.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..core.deadline import Deadline, DeadlineExceeded
from ..results.model import CaseResult
from ..testdefs.parse import CaseCollector
from .adb import AdbDevice, AdbError, AdbTimeout
from .model import RESULTS, AndroidTest

MAX_LOG = 1024 * 1024


@dataclass
class RunOutcome:
    cases: list[CaseResult]
    log: list[str] = field(default_factory=list)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    timed_out: AdbTimeout | DeadlineExceeded | None = None
    lost: AdbError | None = None  # adb lost the device mid-run (the cases so far are kept)
    failed_steps: list[str] = field(default_factory=list)


def install(test: AndroidTest, device: AdbDevice, deadline: Deadline, workdir: Path) -> None:
    """Push the test's files into its directory on the device."""
    q = shlex.quote
    device.check(f"mkdir -p {q(test.install_dir)}", deadline)
    workdir.mkdir(parents=True, exist_ok=True)
    for name, content in test.files.items():
        local = workdir / name
        local.write_text(content)
        device.push(local, f"{test.install_dir}/{name}", deadline)
    for name, path in test.host_files.items():
        device.push(Path(path), f"{test.install_dir}/{name}", deadline)
    if test.files or test.host_files:
        names = " ".join(q(f"{test.install_dir}/{n}") for n in [*test.files, *test.host_files])
        device.check(f"chmod 755 {names}", deadline)


def run(test: AndroidTest, device: AdbDevice, deadline: Deadline, options: str | None,
        on_cases: Callable[[list[CaseResult]], None]) -> RunOutcome:
    """Run the test's steps; ``on_cases`` gets each case as it is parsed."""
    collector = CaseCollector(test.definition())
    outcome = RunOutcome(collector.cases)
    result_dir = f"{RESULTS}/{test.install_dir.rsplit('/', 1)[-1]}{int(time.time())}"
    size = 0

    def on_line(line: str) -> None:
        nonlocal size
        if size < MAX_LOG:
            outcome.log.append(line)
            size += len(line) + 1
        new = collector.feed(line)
        if new:
            on_cases(new)

    steps = test.steps(options, result_dir)
    for n, step in enumerate(steps, 1):
        try:
            if n == 1 and any("$(RESULTDIR)" in s for s in test.run_steps):
                device.check(f"mkdir -p {shlex.quote(result_dir)}", deadline)
            status = device.stream(step, deadline, on_line)
        except (AdbTimeout, DeadlineExceeded) as exc:
            outcome.timed_out = exc
            collector.finish(interrupted="the action's timeout")
            return outcome
        except AdbError as exc:
            outcome.lost = exc
            collector.finish(interrupted=f"adb: {exc.message}")
            return outcome
        if status != 0:
            shown = step if len(step) <= 200 else step[:200] + "..."
            case = CaseResult(f"run-step-{n}", "fail", f"run step {n} exited with status {status}: {shown}",
                              timestamp=datetime.now(UTC), log_excerpt="\n".join(outcome.log[-40:]),
                              attributes={"exit_status": str(status), "step": shown})
            collector.cases.append(case)
            outcome.failed_steps.append(f"step {n} exited {status}")
            on_cases([case])
    collector.finish()
    return outcome
