"""pytest collection of jobs: one module per job (per kernel_matrix variant), one item per test action.

A job's setup actions are module-scoped fixtures (:class:`JobModule`); each test action is an item
(:class:`JobItem`, a ``pytest.Function``) whose own action runs in its setup (the ``lava_action``
fixture), so a broken lab is an *error*; failing test cases and a failing test action are
*failures*. Each test case an action produces is reported on its own (see reporting.py).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..actions.spec import SETUP, TEST
from ..core.errors import InputError, LavaError, TestFailure
from ..jobs.job import ActionDef, Job
from .keys import SESSION_KEY
from .reporting import case_reports, log_live

if TYPE_CHECKING:
    from ..jobs.runner import JobRun
    from ..results.model import CaseResult
    from .session import LavaSession

TIMEOUT_GRACE = 60.0  # pytest-timeout backstop beyond the job timeout


class JobCollectError(Exception):
    """Raised at collection when a job is invalid; shown without a traceback."""


def collector_for(parent: pytest.Collector, path: Path, **kwargs: Any) -> pytest.Collector:
    """A job file's collector: a :class:`JobModule` for a job, a :class:`JobFile` holding one
    module per kernel_matrix variant, or a :class:`JobFile` that reports why the file is invalid."""
    lava: LavaSession = parent.config.stash[SESSION_KEY]
    try:
        jobs = lava.load(path)
    except InputError as exc:
        return JobFile.from_parent(parent, path=path, error=str(exc), **kwargs)
    if len(jobs) == 1:
        return JobModule.from_parent(parent, path=path, job=jobs[0], **kwargs)
    return JobFile.from_parent(parent, path=path, jobs=jobs, **kwargs)


class JobFile(pytest.File):
    """A job file with several kernel_matrix variants (one module each), or an invalid one."""

    def __init__(self, *, jobs: list[Job] | None = None, error: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.jobs = jobs or []
        self.error = error

    def collect(self) -> Iterator[pytest.Collector]:
        if self.error:
            raise JobCollectError(self.error)
        for job in self.jobs:
            yield JobModule.from_parent(self, path=self.path, name=job.variant, nodeid=f"{self.nodeid}::{job.variant}",
                                        job=job)

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


def item_paths(jobs: list[Job]) -> dict[str, Job]:
    """Every item's node id below its file (``name``, or ``variant::name`` for a kernel matrix)."""
    prefix = len(jobs) > 1
    return {(f"{job.variant}::{name}" if prefix else name): job for job in jobs for _action, name in item_names(job)}


class JobModule(pytest.Module):
    """One job (one kernel_matrix variant) as a pytest module: its setup actions are module-scoped
    fixtures, each asking for the one before (``lava_job``, the leased board, comes first), so
    they run once, in job order, before the first item that needs them; a failed one makes every
    later item an *error* (pytest's fixture cache); ``lava_job``'s teardown finishes the job
    (submit, results, power off, lease). ``--setup-show`` shows them. The module's object is made
    here, not imported (``obj``): it holds those fixtures."""

    def __init__(self, *, job: Job, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job = job
        self.pending_steps: list[tuple[str, bool, str]] = []  # the submit steps' (name, ok, message)
        self.chain = _setup_chain(job)
        self.obj = _job_namespace(self)

    def collect(self) -> Iterator[pytest.Item]:  # type: ignore[override]
        for _ in super().collect():  # registers the fixtures of self.obj; there is nothing else
            pass
        for action, name in item_names(self.job):
            item = JobItem.from_parent(self, name=name, callobj=_item_function(self.chain.before(action.index)),
                                       job=self.job, action=action)
            item.add_marker(pytest.mark.timeout(self.job.timeout + TIMEOUT_GRACE, method="thread"))
            yield item

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, self.name

    def finish(self) -> None:
        """The job's end (``lava_job`` teardown): results, submit, board off, lease released."""
        self.pending_steps += self.config.stash[SESSION_KEY].finish_job(self.job)


class _Chain:
    """The fixture names of a job's setup actions that come before its last test action."""

    def __init__(self, fixtures: list[tuple[ActionDef, str]]) -> None:
        self.fixtures = fixtures

    def before(self, index: int) -> str:
        names = [name for action, name in self.fixtures if action.index < index]
        return names[-1] if names else ROOT_FIXTURE


def _setup_chain(job: Job) -> _Chain:
    last_test = max((a.index for a in job.actions if a.kind == TEST), default=-1)
    seen: dict[str, int] = {}
    fixtures = []
    for action in job.actions:
        if action.kind == SETUP and action.index < last_test:
            seen[action.command] = seen.get(action.command, 0) + 1
            count = seen[action.command]
            fixtures.append((action, action.command if count == 1 else f"{action.command}_{count}"))
    return _Chain(fixtures)


ROOT_FIXTURE = "lava_job"
ACTION_FIXTURE = "lava_action"


def _signed(function: Any, *names: str) -> Any:
    """``function(**kwargs)`` as if it had the parameters ``names`` (pytest reads the signature)."""
    function.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
    return function


def _job_namespace(module: JobModule) -> types.ModuleType:
    """The fixtures of one job: ``lava_job`` (the leased board's run), one per setup action, and
    ``lava_action`` (runs an item's own action in its setup, so a broken lab is an error)."""
    job = module.job
    namespace = types.ModuleType(f"lava_job_{job.id}")
    lava: LavaSession = module.config.stash[SESSION_KEY]

    def lava_job(**_: Any) -> Iterator[JobRun]:
        run = lava.run_for(job)
        background = lava.background.get(job.id)  # the job runs on a thread of its own (claims.py)
        try:
            if background is not None:
                background.wait_started()
                if background.start_error is not None:
                    raise background.start_error
            else:
                run.start()
                if run.fatal is not None:
                    raise run.fatal
            yield run
        finally:
            module.finish()

    lava_job.__doc__ = f"the job {job.name!r} on a leased board; finishing the job at its end"
    setattr(namespace, ROOT_FIXTURE, pytest.fixture(scope="module", name=ROOT_FIXTURE)(_signed(lava_job)))
    previous = ROOT_FIXTURE
    for action, name in module.chain.fixtures:
        def setup_action(action: ActionDef = action, previous: str = previous, **kwargs: Any) -> JobRun:
            run: JobRun = kwargs[previous]
            background = lava.background.get(job.id)
            if background is not None:
                background.wait(action)
            else:
                run.execute(action)
            return run

        setup_action.__doc__ = f"{action.command} (action {action.index + 1} of {job.name!r})"
        setattr(namespace, name, pytest.fixture(scope="module", name=name)(_signed(setup_action, previous)))
        previous = name

    def lava_action(request: pytest.FixtureRequest) -> None:
        item = request.node
        run: JobRun = request.getfixturevalue(module.chain.before(item.action.index))
        background = lava.background.get(job.id)
        if background is None and run.fatal is not None:  # a setup action after the last test action failed
            raise run.fatal
        try:
            if background is not None:  # the same outcome, from the job's own thread
                item.cases = background.wait(item.action, on_cases=item.report_live)
            else:
                item.cases = run.execute(item.action, on_cases=item.report_live)
        except TestFailure as exc:  # a failing test action is a failure, not an error
            item.failure = exc
            item.cases = list(getattr(exc, "cases", []))  # the cases it got before failing

    lava_action.__doc__ = "runs the item's own action (its setup: a broken lab is an error)"
    setattr(namespace, ACTION_FIXTURE, pytest.fixture(name=ACTION_FIXTURE)(lava_action))
    return namespace


def _item_function(chain_fixture: str) -> Any:
    def lava_item(**_: Any) -> None:
        """The item's call: its action ran as its setup (``lava_action``); a test failure is raised here."""
    return _signed(lava_item, chain_fixture, ACTION_FIXTURE)


class JobItem(pytest.Function):
    """One test action (or trailing setup action) of a job."""

    def __init__(self, *, job: Job, action: ActionDef, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job = job
        self.action = action
        self.cases: list[CaseResult] = []
        self.reported = 0  # how many of ``cases`` were reported live, while the action ran
        self.failure: LavaError | None = None

    @property
    def lava(self) -> LavaSession:
        return self.config.stash[SESSION_KEY]

    def runtest(self) -> None:
        if self.failure is not None:
            raise self.failure

    def reportinfo(self) -> tuple[Any, int | None, str]:
        # the domain is the item's own name: pytest turns dots before a '[' into '::' in -v lines
        return self.path, None, self.name

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:  # type: ignore[override]
        exc = excinfo.value
        if isinstance(exc, LavaError):
            text = f"[{exc.kind}] {exc}"
            run = self.lava.runs.get(self.job.id)
            board = run.connected_board() if run else None
            if board is not None and "last console lines" not in text:
                try:
                    tail = board.console.tail(15)
                except Exception:
                    tail = ""
                if tail:
                    text += f"\n--- last console lines ({board.log_path}) ---\n{tail}"
            kept = getattr(exc, "console_tail", "")  # taken when it failed, on the job's own thread
            if kept and "last console lines" not in text:
                text += f"\n{kept}"
            return text
        return super().repr_failure(excinfo)  # type: ignore[return-value]

    def report_live(self, cases: list[CaseResult]) -> None:
        """Report test cases as the action finishes them (a long run shows its cases as they come)."""
        self.reported += len(cases)
        for report in case_reports(self, cases):
            log_live(self, report)

    def case_reports(self) -> list[pytest.TestReport]:
        """The test cases of this action not reported live yet, each a report of its own
        (see reporting.py)."""
        return case_reports(self, self.cases[self.reported:])

