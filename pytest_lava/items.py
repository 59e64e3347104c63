"""pytest collection of jobs: one collector per job file, one item per test action.

Each test case an action produces is reported on its own (own node id ``<item>::<case>``, own
JUnit ``<testcase>``, measurement and units as properties, console excerpt on failure). The action
itself runs in the item's *setup* phase, so a broken lab is an *error*; failing test cases and a
failing test action are *failures*.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.reports import TestReport

from .actions.spec import SETUP, TEST
from .errors import InputError, LavaError, TestFailure
from .job import ActionDef, Job

if TYPE_CHECKING:
    from .results import CaseResult
    from .session import LavaSession

TIMEOUT_GRACE = 60.0  # pytest-timeout backstop beyond the job timeout


class JobCollectError(Exception):
    """Raised at collection when a job is invalid; shown without a traceback."""


class JobFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        lava: LavaSession = self.config.stash[SESSION_KEY]
        try:
            jobs = lava.load(self.path)
        except InputError as exc:
            raise JobCollectError(str(exc)) from None
        for job in jobs:
            yield from _items_for(self, job)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        if excinfo.errisinstance(JobCollectError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)  # type: ignore[return-value]


def _items_for(parent: JobFile, job: Job) -> Iterator[JobItem]:
    last_test = max((a.index for a in job.actions if a.kind == TEST), default=-1)
    seen: dict[str, int] = {}
    for action in job.actions:
        # test actions are items; setup actions after the last test action become items too,
        # so a job without tests (deploy + boot) still runs and reports
        if action.kind == TEST or (action.kind == SETUP and action.index > last_test):
            label = "-".join(x for x in (action.label, job.variant) if x)
            name = f"{action.command}[{label}]" if label else action.command
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f"{name[:-1]}-{seen[name]}]" if name.endswith("]") else f"{name}[{seen[name]}]"
            item = JobItem.from_parent(parent, name=name, job=job, action=action)
            item.add_marker(pytest.mark.xdist_group(name=f"lava-{job.id}"))
            item.add_marker(pytest.mark.timeout(job.timeout + TIMEOUT_GRACE, method="thread"))
            yield item


class JobItem(pytest.Item):
    def __init__(self, *, job: Job, action: ActionDef, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job = job
        self.action = action
        self.cases: list[CaseResult] = []
        self._failure: LavaError | None = None
        self.is_last = False  # set after deselection: the job finishes in this item's teardown

    @property
    def lava(self) -> LavaSession:
        return self.config.stash[SESSION_KEY]

    def setup(self) -> None:
        run = self.lava.run_for(self.job)
        try:
            self.cases = run.run_action(self.action)
        except TestFailure as exc:  # a failing test action is a failure, not an error
            self._failure = exc
            self.cases = list(getattr(exc, "cases", []))  # the cases it got before failing

    def runtest(self) -> None:
        if self._failure is not None:
            raise self._failure

    def teardown(self) -> None:
        if self.is_last:
            self.lava.finish_job(self.job, self)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        # the domain is the item's own name: pytest turns dots before a '[' into '::' in -v lines
        return self.path, None, self.name

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:  # type: ignore[override]
        exc = excinfo.value
        if isinstance(exc, LavaError):
            text = f"[{exc.kind}] {exc}"
            run = self.lava.runs.get(self.job.id)
            board = getattr(run, "_board", None) if run else None
            if board is not None and board.connected and "last console lines" not in text:
                try:
                    tail = board.console.tail(15)
                except Exception:
                    tail = ""
                if tail:
                    text += f"\n--- last console lines ({board.log_path}) ---\n{tail}"
            return text
        return super().repr_failure(excinfo)  # type: ignore[return-value]

    def case_reports(self) -> list[TestReport]:
        reports = []
        for case in self.cases:
            base = self.nodeid.split("@lava-", 1)[0]  # xdist's loadgroup suffix belongs to the item only
            nodeid = f"{base}::{case_node_name(case.test_case_id)}"
            props: list[tuple[str, object]] = [("test_case_id", case.test_case_id)]
            if case.measurement is not None:
                props.append(("measurement", case.measurement))
            if case.units:
                props.append(("units", case.units))
            result = case.result
            longrepr: Any = None
            outcome = "passed"
            if result == "fail":
                outcome = "failed"
                longrepr = case.message or f"test case {case.test_case_id!r} failed"
                if case.log_excerpt:
                    longrepr += f"\n--- console of {case.test_case_id} ---\n{case.log_excerpt}"
            elif result in ("skip", "unknown"):
                outcome = "skipped"
                longrepr = (str(self.path), 0, f"{result}: {case.message or case.test_case_id}")
            sections = [("console", case.log_excerpt)] if case.log_excerpt and outcome != "failed" else []
            duration = float(case.duration or 0.0)
            domain = f"{self.name}::{case_node_name(case.test_case_id)}"
            common = dict(nodeid=nodeid, location=(self.location[0], None, domain),
                          keywords={self.name: 1, case.test_case_id: 1, "lava": 1, "lava-case": 1},
                          user_properties=props)
            reports.append(TestReport(outcome=outcome, longrepr=longrepr, when="call", sections=sections,
                                      duration=duration, **common))
            reports.append(TestReport(outcome="passed", longrepr=None, when="teardown", sections=[], duration=0.0,
                                      **common))
        return reports


def case_node_name(test_case_id: str) -> str:
    """A test case id made safe for a node id (no '::', no brackets, no spaces)."""
    return re.sub(r"[^A-Za-z0-9_.+=,@%-]+", "_", test_case_id).strip("_") or "case"


SESSION_KEY = pytest.StashKey["LavaSession"]()
