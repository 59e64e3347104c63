"""The plan: a validated job resolved against the lab — every action in order, its effective
timeout, the boards it may run on. ``describe()`` is what ``--lava-validate`` prints."""

from __future__ import annotations

from dataclasses import dataclass

from .actions.spec import SETUP, SUBMIT, TEST
from .device import Device
from .devices import DeviceSet
from .job import ActionDef, Job


@dataclass
class Plan:
    job: Job
    boards: list[Device]
    target: str | None = None  # the one board asked for by name (job target or --lava-device)

    @classmethod
    def build(cls, job: Job, devices: DeviceSet, *, device_override: str | None = None) -> Plan:
        target = device_override or job.target
        boards = devices.select(target=target, device_type=None if target else job.device_type,
                                job_file=str(job.file))
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
