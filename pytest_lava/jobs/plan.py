"""The plan: a validated job resolved against the lab — every action in order, its effective
timeout, the boards it may run on. ``describe()`` is what ``--lava-validate`` prints.

Building a plan also checks the job against what the chosen boards can do: an action a board
type does not run (``BoardType.supported``), or parameters it refuses (``check_parameters``:
unsafe bootloader options, say), is a :class:`~pytest_lava.core.errors.JobError` naming the field, the
board type and the actions it runs, before anything touches a board."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..actions.spec import SETUP, SUBMIT, TEST
from ..core.errors import ConfigurationError, JobError, Problem, ProblemList
from ..devices.device import Device
from ..devices.directory import DeviceSet
from .job import ActionDef, Job

if TYPE_CHECKING:
    from ..boards import BoardDriver, BoardTypeLookup


@dataclass
class Plan:
    job: Job
    boards: list[Device]
    target: str | None = None  # the one board asked for by name (job target or --lava-device)

    @classmethod
    def build(cls, job: Job, devices: DeviceSet, *, device_override: str | None = None,
              board_types: BoardTypeLookup | None = None) -> Plan:
        target = device_override or job.target
        boards = devices.select(target=target, device_type=None if target else job.device_type,
                                job_file=str(job.file))
        problems = board_problems(job, boards, board_types)
        if problems:
            raise JobError(problems)
        return cls(job, boards, target)

    def steps(self) -> list[tuple[ActionDef, float]]:
        return [(a, self.job.action_timeout(a)) for a in self.job.actions]

    def describe(self) -> str:
        job = self.job
        names = ", ".join(b.name for b in self.boards)
        how = "target" if self.target else f"device_type {job.device_type!r}"
        title = job.name + (f" [{job.variant}]" if job.variant else "")
        lines = [f"job {title!r} ({job.file}) timeout {job.timeout:g} s",
                 f"  board: {names} (by {how}; type {self.boards[0].device_type}, "
                 f"board type {self.boards[0].board_type})"]
        if job.tags:
            lines.append(f"  tags: {', '.join(job.tags)}")
        for action, timeout in self.steps():
            role = {SETUP: "setup ", TEST: "test  ", SUBMIT: "submit"}[action.kind]
            params = action.masked_parameters()
            shown = ", ".join(f"{k}={v!r}" for k, v in params.items() if k != "timeout")
            if len(shown) > 100:
                shown = shown[:97] + "..."
            impl = "" if action.spec.run or action.kind == SUBMIT else "  (not implemented yet)"
            when = "  (at session end, always)" if action.kind == SUBMIT else ""
            lines.append(f"  {action.index + 1:2d}. {role} {action.command:<28} timeout {timeout:>7g} s"
                         f"{when}{impl}")
            if shown:
                lines.append(f"        {shown}")
        for warning in job.warnings:
            lines.append(f"  warning: {warning}")
        return "\n".join(lines)


def board_problems(job: Job, boards: list[Device], lookup: BoardTypeLookup | None = None) -> list[Problem]:
    """What ``job`` asks that cannot run: an action with no implementation, an action one of the
    board types of ``boards`` cannot run (the pool may give the job any of the boards, and each
    driver's ``accepts`` decides), or parameters a driver refuses."""
    from ..boards import make_board_type

    problems = ProblemList(str(job.file))
    for action in job.actions:
        if action.kind != SUBMIT and action.spec.run is None:
            problems.add(f"{action.path}.command", f"{action.command!r} is part of the job format but has no "
                         "implementation in pytest-lava yet (no board type runs it)")
    kinds: dict[str, BoardDriver | None] = {}  # one driver per board type asks for all its boards
    for device in boards:
        if device.board_type not in kinds:
            try:
                kinds[device.board_type] = make_board_type(device.board_type, lookup)
            except ConfigurationError:  # an unknown board type is the device's problem, reported at run time
                kinds[device.board_type] = None
        kind = kinds[device.board_type]
        if kind is None:
            continue
        for action in job.actions:
            reason = kind.accepts(action, device)
            if reason:
                problems.add(f"{action.path}.command", reason)
            else:
                kind.check_parameters(action, device, problems, f"{action.path}.parameters")
    return list(dict.fromkeys(problems.problems))  # boards of one type find the same problems
