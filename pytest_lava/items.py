"""pytest collection of jobs: one collector per job file, one item per test action.

Each test case an action produces is reported on its own (own node id ``<item>::<case>``, own
JUnit ``<testcase>``, measurement and units as properties, console excerpt on failure). The action
itself runs in the item's *setup* phase, so a broken lab is an *error*; failing test cases and a
failing test action are *failures*.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .actions.spec import SETUP, TEST
from .errors import InputError, LavaError, TestFailure
from .job import ActionDef, Job
from .reporting import case_reports

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


def item_names(job: Job) -> list[tuple[ActionDef, str]]:
    """The items of a job, in order, with their names (``<action>[<label>]``).

    Test actions are items; setup actions after the last test action become items too, so a job
    without tests (deploy + boot) still runs and reports. A pure function of the job: the xdist
    scheduler on the controller, which collects nothing, uses it to tell which job a node id is of."""
    last_test = max((a.index for a in job.actions if a.kind == TEST), default=-1)
    seen: dict[str, int] = {}
    names = []
    for action in job.actions:
        if action.kind == TEST or (action.kind == SETUP and action.index > last_test):
            label = "-".join(x for x in (action.label, job.variant) if x)
            name = f"{action.command}[{label}]" if label else action.command
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f"{name[:-1]}-{seen[name]}]" if name.endswith("]") else f"{name}[{seen[name]}]"
            names.append((action, name))
    return names


def _items_for(parent: JobFile, job: Job) -> Iterator[JobItem]:
    for action, name in item_names(job):
        item = JobItem.from_parent(parent, name=name, job=job, action=action)
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
        self.teardown_reports: list[pytest.TestReport] = []  # the submit step's, made at the job's end

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

    def case_reports(self) -> list[pytest.TestReport]:
        """Each test case of this action as a report of its own (see reporting.py)."""
        return case_reports(self, self.cases)


SESSION_KEY = pytest.StashKey["LavaSession"]()
