"""The runtime of one job (one kernel_matrix variant): board lease, deadlines, results.

The plugin creates a :class:`JobRun` when the job's ``lava_job`` fixture is set up; the job's
setup actions are fixtures that call :meth:`JobRun.execute` once each, in job order (plugin/items.py).
``finish()`` runs the submit actions and writes the results directory, whatever happened before
(it is idempotent).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..actions.spec import SETUP, SUBMIT
from ..core.deadline import Deadline, Watchdog
from ..core.errors import InfrastructureError, JobError, LavaBug, LavaError, kind_of
from ..core.secrets import Masker
from ..results.model import job_results_dir
from .job import ActionDef, Job
from .plan import Plan

if TYPE_CHECKING:
    from ..boards import BoardDriver, BoardTypeLookup
    from ..boards.board import Board
    from ..console.shell import ShellSession
    from ..devices.leasing import Lease, PoolBackend
    from ..results.model import CaseResult, JobResults

log = logging.getLogger("pytest_lava")
T = TypeVar("T")


class NotImplementedYet(LavaError):
    kind = "bug"


@dataclass
class RunOptions:
    results_dir: Path
    state_dir: Path
    rootdir: Path
    live: Callable[[str, str], None] | None = None  # (board, line)
    submit_override: str | None = None
    token: str | None = None
    masker: Masker = field(default_factory=Masker)
    echo: Callable[[str], None] = print  # progress notes (shown with --lava-console)
    announce: Callable[[str], None] = print  # what a lab engineer must always see (quarantine, ...)
    board_types: BoardTypeLookup | None = None  # the pytest_lava_board_type hook (None: built-ins)
    amend_bundle: Callable[[dict[str, Any], Job], None] | None = None  # the pytest_lava_bundle hook


@dataclass
class ActionContext:
    """What an action implementation (or a board driver) gets: the job run, its own action and
    deadline. ``action`` is ``None`` when a plain test, not a job action, asked (plugin/fixtures.py)."""

    run: JobRun
    action: ActionDef | None
    deadline: Deadline
    cases: list[CaseResult] = field(default_factory=list)
    message: str = ""  # the result message of a passing action (the `lava` run shows it)
    on_cases: Callable[[list[CaseResult]], None] | None = None  # reports cases as they finish (the plugin)

    def report(self, cases: list[CaseResult]) -> None:
        """Test cases this action finished: kept for its result, and reported at once (live)."""
        self.cases.extend(cases)
        if self.on_cases is not None and cases:
            self.on_cases(cases)

    def connected_board(self) -> Board | None:
        """The board, if this run has opened its console and it is still connected."""
        return self.run.connected_board()

    @property
    def board(self) -> Board:
        return self.run.board

    @property
    def device(self):
        return self.run.device

    @property
    def job(self) -> Job:
        return self.run.job

    @property
    def results(self) -> JobResults:
        return self.run.results

    @property
    def driver(self) -> BoardDriver:
        """The leased board's driver: its capabilities and its typed state."""
        return self.run.driver

    board_type = driver  # the name used before the driver contract

    def test_shell(self) -> ShellSession:
        """A shell on the booted test image (booted first if needed)."""
        return self.driver.test_shell(self)

    def master_shell(self) -> ShellSession:
        """A shell on the master image (booted first if needed)."""
        return self.driver.master_shell(self)

    def log(self, message: str) -> None:
        self.run.note(message)

    def record(self, test_case_id: str, result: str, message: str = "") -> None:
        """An extra entry of the ``lava`` run, such as ``boot_image``."""
        self.run.results.add_action(test_case_id, result, message)


class JobRun:
    def __init__(self, plan: Plan, pool: PoolBackend, options: RunOptions) -> None:
        self.plan = plan
        self.job = plan.job
        self.pool = pool
        self.options = options
        self.deployed: dict[str, Any] | None = None  # what the last deploy put on the board (its facts)
        self.apt_sources: list[str] = []  # sources.list.d entries add_apt_repository wrote
        self._slots: dict[type, object] = {}
        self.deadline = Deadline(self.job.timeout, f"job {self.job.id}")
        self.results_dir = job_results_dir(options.results_dir, self.job.id)  # one entry, inside it
        self.lease: Lease | None = None
        self._board: Board | None = None
        self._driver: BoardDriver | None = None
        self.results: JobResults | None = None
        self.watchdog: Watchdog | None = None
        self.fatal: LavaError | None = None  # a failed setup action: later items are errors
        self.infrastructure_failed = False  # only an InfrastructureError counts against the board
        self.infrastructure_reason = ""
        self.job_error = False  # a JobError: the job's own mistake, never the board's
        self.job_error_reason = ""
        self.failed_cases = 0
        self.finished = False
        self.bundle_path: Path | None = None
        self.submit_ok = True
        self._started = False
        self._finishing = threading.Lock()  # a job's own thread and the session's end may both finish it
        self.aborting = False  # the session is ending under a running action (abort())

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def device(self):
        if self.lease is None:
            raise LavaBug("no board leased yet")
        return self.lease.device

    @property
    def driver(self) -> BoardDriver:
        """This run's own driver instance for its board (made on first use)."""
        if self._driver is None:
            from ..boards import make_board_type

            self._driver = make_board_type(self.device.board_type, self.options.board_types)
        return self._driver

    board_type = driver  # the name used before the driver contract

    def slot(self, cls: type[T]) -> T:
        """Job-scoped state an action module owns, by its type (made on first use): e.g.
        ``ctx.run.slot(LavaTestState)``. Typed, unlike a shared dictionary of string keys."""
        found = self._slots.get(cls)
        if found is None:
            found = self._slots[cls] = cls()
        return found  # type: ignore[return-value]

    def connected_board(self) -> Board | None:
        """The board, if this run has opened its console and it is still connected."""
        board = self._board
        return board if board is not None and board.connected else None

    def at_board(self) -> bool:
        """The run has reached its board: the board's log has a first entry (a power command, a
        process started, console output)."""
        board = self._board
        return board is not None and (board.log.events_logged > 0 or board.log.bytes_logged > 0)

    @property
    def board(self) -> Board:
        if self._board is None:
            from ..boards.board import Board

            self._board = Board(self.device, log_dir=self.results_dir, cwd=self.options.rootdir,
                                live=self._live_for(self.device.name), deadline=self.deadline)
            if self.watchdog is not None:
                self._board.guard(self.watchdog)
            assert self.results is not None
            self.results.set_serial_log(self._board.log_path)
        return self._board

    def _live_for(self, name: str) -> Callable[[str], None] | None:
        live = self.options.live
        return (lambda line: live(name, line)) if live else None

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        from ..results.model import JobResults

        self.results_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.lease = self.pool.acquire(target=self.plan.target,
                                           device_type=None if self.plan.target else self.plan.boards[0].device_type,
                                           tags=_device_tags(self.job), job=self.job.name,
                                           deadline=self.deadline.child(None, "acquire board"),
                                           health_check=self.job.health_check, log=self.note)
        except LavaError as exc:
            self.fatal = exc
            self.results = JobResults(job_name=self.job.name, job_file=str(self.job.file),
                                      results_dir=self.results_dir, hostname="(none)",
                                      device_type=self.plan.boards[0].device_type, tags=self.job.tags,
                                      secrets=self.options.masker)
            self.results.add_action("acquire_board", "fail", str(exc))
            return
        device = self.lease.device
        self.results = JobResults(job_name=self.job.name, job_file=str(self.job.file), results_dir=self.results_dir,
                                  hostname=device.name, device_type=device.device_type, tags=self.job.tags,
                                  secrets=self.options.masker)
        if self.options.amend_bundle is not None:
            amend, job = self.options.amend_bundle, self.job
            self.results.amend = lambda bundle: amend(bundle, job)
        self.note(f"job {self.job.id}: running on board {device.name} ({device.device_type})")
        self.watchdog = Watchdog(self.deadline)
        self.watchdog.start()

    def note(self, message: str) -> None:
        self.options.echo(self.options.masker.mask(message))
        if self.results is not None:
            self.results.note(message)

    # -- actions ----------------------------------------------------------------------------

    def run_action(self, action: ActionDef) -> list[CaseResult]:
        """Lease the board if not yet done, then run ``action`` alone (its setup is the caller's)."""
        self.start()
        if self.fatal is not None:
            raise self.fatal
        return self.execute(action)

    def execute(self, action: ActionDef, on_cases: Callable[[list[CaseResult]], None] | None = None
                ) -> list[CaseResult]:
        """Run one action on the leased board; a failed setup action becomes ``fatal``.
        ``on_cases`` gets the test cases the action reports, as they finish."""
        deadline = self.deadline.child(self.job.action_timeout(action), action.command)
        ctx = ActionContext(self, action, deadline, on_cases=on_cases)
        assert self.results is not None
        shown = self.options.masker.mask(repr(action.masked_parameters()))
        self.note(f"[ACTION-B] {action.command} is started with {shown}")
        start = time.monotonic()
        try:
            if action.spec.run is None:
                raise NotImplementedYet(f"action {action.command!r} is not implemented yet in pytest-lava "
                                        f"(it is part of the job format, but no board code runs it)")
            if self.lease is None:
                raise self.fatal or LavaBug("no board")
            action.spec.run(ctx, action.parameters)
        except BaseException as exc:
            duration = time.monotonic() - start
            message = self.options.masker.mask(_message(exc, action))
            self.results.add_action(action.test_case_id, "fail", message, duration=duration,
                                    metadata=action.metadata)
            self.note(f"[ACTION-E] {action.command} is finished with error ({_first_line(message)})")
            wrapped = exc if isinstance(exc, LavaError) else LavaBug(
                f"{action.command} crashed: {type(exc).__name__}: {exc}", details=traceback.format_exc())
            if self.aborting:  # stopped from outside (-x, Ctrl-C): neither the board's fault nor the job's
                pass
            elif isinstance(exc, InfrastructureError):
                self.infrastructure_failed = True
                self.infrastructure_reason = _first_line(str(exc))
            elif isinstance(exc, JobError):
                self.job_error = True
                self.job_error_reason = _first_line(str(exc))
            if action.kind == SETUP:  # the items after a failed setup action are errors with its reason
                self.fatal = wrapped
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and friends
            raise wrapped from exc
        duration = time.monotonic() - start
        failed = [c for c in ctx.cases if c.result == "fail"]
        self.failed_cases += len(failed)
        self.results.add_action(action.test_case_id, "pass", self.options.masker.mask(ctx.message), duration=duration,
                                metadata=action.metadata)
        self.note(f"[ACTION-E] {action.command} is finished successfully ({duration:.1f} s"
                  + (f", {len(ctx.cases)} test cases, {len(failed)} failed)" if ctx.cases else ")"))
        return ctx.cases

    # -- the end ----------------------------------------------------------------------------

    def abort(self) -> None:
        """Stop the action running on another thread (the session is ending): its console and
        child processes are closed by the watchdog's closers, and what it raises then counts
        against neither the board's health nor the job."""
        self.aborting = True
        if self.watchdog is not None:
            self.watchdog.abort()

    def finish(self, *, interrupted: bool = False) -> Path | None:
        """Run the submit actions and write the results, whatever happened. Idempotent."""
        with self._finishing:
            return self._finish(interrupted)

    def _finish(self, interrupted: bool) -> Path | None:
        if self.finished:
            return self.bundle_path
        self.finished = True
        if self.results is None:
            return None
        complete = self.fatal is None and not interrupted
        message = "" if complete else (str(self.fatal) if self.fatal else "interrupted")
        try:
            if self.lease is not None:
                self.driver.finish(self)
        except Exception as exc:  # powering off must never hide the results
            self.note(f"finishing the board failed: {exc}")
        try:
            if self._board is not None:
                self._board.close()
        except Exception as exc:  # closing must never hide the results
            self.note(f"closing the board failed: {exc}")
        self.bundle_path = self.results.finish(job_complete=complete, message=self.options.masker.mask(message))
        self._submit()
        self._record_health()
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.lease is not None:
            self.lease.release()
        return self.bundle_path

    def _submit(self) -> None:
        from ..submit import SubmitTarget, resolve_token, submit_bundle

        targets = [a for a in self.job.actions if a.kind == SUBMIT]
        if self.options.submit_override:
            targets = targets[:1] or [None]  # type: ignore[list-item]
        for action in targets:
            params = action.parameters if action is not None else {}
            server = self.options.submit_override or params["server"]
            if self.options.submit_override:  # the operator's server gets the operator's token, never the job's
                token = resolve_token(None, self.options.token)
            else:  # a server a job names gets the job's own token only: the job file is not trusted
                token = (params.get("token") or "").strip() or None
            if token:
                self.options.masker.add(token)
            target = SubmitTarget(server, stream=params.get("stream"), token=token,
                                  environment=self.lease.device.device_type if self.lease else None)
            timeout = self.job.action_timeout(action) if action is not None else 600.0
            outcome = submit_bundle(self.bundle_path, target, job_name=self.job.name, timeout=timeout,
                                    spool_dir=self.options.results_dir / "spool", log=self.note,
                                    masker=self.options.masker)
            if not outcome.ok:  # submit_bundle has logged the outcome (once) through self.note
                self.submit_ok = False

    def _record_health(self) -> None:
        if self.lease is None:
            return
        device = self.lease.device
        # a health check passes only when every action and every test case passed
        passed = self.fatal is None and (self.failed_cases == 0 or not self.job.health_check)
        # only InfrastructureError counts against the board; a job error (the job's mistake) leaves
        # its health as it is, so job files can never quarantine a healthy board
        reason = self.infrastructure_reason if self.infrastructure_failed else self.job_error_reason
        message = self.pool.health.record(
            device.name, infrastructure_failure=self.infrastructure_failed, health_check=self.job.health_check,
            passed=passed, threshold=device.health_failure_threshold, reason=self.options.masker.mask(reason),
            job=self.job.name, job_error=self.job_error)
        if message:
            self.note(message)
            self.options.announce(f"pytest-lava: {message}")


def _device_tags(job: Job) -> list[str]:
    """The scheduler's ``device_tags`` (a job's ``tags`` label its results, not the board)."""
    tags = job.data.get("device_tags", [])
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _message(exc: BaseException, action: ActionDef) -> str:
    kind = kind_of(exc)
    text = str(exc) if isinstance(exc, LavaError) else f"{type(exc).__name__}: {exc}"
    return f"Lava failed at action {action.command} with error ({kind}): {text}"
