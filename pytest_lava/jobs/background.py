"""A job run on a thread of its own, ahead of its pytest items.

An xdist worker that claimed several jobs (plugin/claims.py) runs each of them here, side by side,
while pytest works through the items one job after another: an item's setup (the job's fixtures,
``lava_action``) then *waits* for its action's outcome instead of running the action itself. The
thread runs exactly the actions the items would have run, in the same order and by the same rules —
a failed setup action stops the job (later items are errors with its reason), a failing or broken
test action does not — and then finishes the job (board off, bundle, submit, lease released) as
soon as its last action is done, not when pytest reaches the job's last item.

The test cases an action reports reach the item waiting for it as they come (so the item that is
running shows its cases live); a job further down the queue hands its cases over when pytest gets to
it. An action's failure keeps the console's last lines (the board is closed by the time pytest
shows it). Every wait has a deadline: the job's own, plus :data:`FINISH_GRACE` for finishing it;
when the session ends early (``-x``, Ctrl-C) the running action is aborted (:meth:`stop`).
"""

from __future__ import annotations

import queue
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..actions.spec import SETUP
from ..core.errors import InfrastructureError, LavaBug, LavaError

if TYPE_CHECKING:
    from ..results.model import CaseResult
    from .job import ActionDef
    from .runner import JobRun

FINISH_GRACE = 900.0  # beyond the job's deadline: submitting (its own timeouts) and powering off
ABORT_WAIT = 60.0  # the session is ending: how long an aborted action may take to give up
_DONE = object()


@dataclass
class _Step:
    action: ActionDef
    live: queue.Queue[object] = field(default_factory=queue.Queue)  # case lists, then _DONE
    cases: list[CaseResult] = field(default_factory=list)
    error: BaseException | None = None  # what the action raised (pytest.skip() too), raised again for its item
    ran: bool = False
    over: bool = False  # its outcome was handed to the item (a second wait answers at once)
    skipped: bool = False  # never run: an earlier setup action failed, or the session ended


class BackgroundRun:
    """``run``'s ``steps`` (the actions its items need, in order) on a thread, then ``run.finish()``."""

    def __init__(self, run: JobRun, steps: list[ActionDef], *,
                 on_finished: Callable[[], None] | None = None) -> None:
        self.run = run
        self.on_finished = on_finished  # told once the job is finished (bundle written, submitted)
        self._steps = {action.index: _Step(action) for action in steps}
        self._order = list(steps)
        self._started = threading.Event()  # the board is leased (or start_error says why not)
        self.start_error: LavaError | None = None
        self.finish_error: BaseException | None = None  # raised at the job's end (its last teardown)
        self._cancel = threading.Event()
        self._running: _Step | None = None
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"lava-job-{run.job.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        """Run no further action; the one running goes on to its end."""
        self._cancel.set()

    def stop(self) -> bool:
        """The job's items are over (its last teardown, or the session's end): no further action,
        the running one (no item will wait for it: ``-x``, Ctrl-C) aborted; True if one was."""
        self.cancel()
        if self._running is None or self.finished.is_set():
            return False
        self.run.note(f"stopping {self._running.action.command}: the session is ending")
        self.run.abort()
        return True

    # -- the thread -------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self.run.start()
            self.start_error = self.run.fatal
            self._started.set()
            for action in self._order:
                if self._cancel.is_set() or self.run.fatal is not None:
                    break
                self._run_step(self._steps[action.index])
        except BaseException as exc:  # a bug of ours: the items still get an answer
            self.run.note(f"job thread crashed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            self.run.fatal = self.run.fatal or LavaBug(f"job {self.run.job.id}: its thread crashed: {exc}")
        finally:
            self._started.set()
            for step in self._steps.values():
                if not step.ran:
                    step.skipped = True
                    step.live.put(_DONE)
            try:
                self.run.finish(interrupted=self.run.aborting)
            except BaseException as exc:  # e.g. a bundle that fails its schema: an error at the job's end
                self.finish_error = exc
            finally:
                self.finished.set()
                if self.on_finished is not None:
                    try:
                        self.on_finished()
                    except Exception as exc:
                        self.run.note(f"after finishing the job: {exc}")

    def _run_step(self, step: _Step) -> None:
        self._running = step  # first: under_way() takes a step that ran and is not running as done
        step.ran = True
        try:
            step.cases = self.run.execute(step.action, on_cases=step.live.put)
        except BaseException as exc:  # LavaError; also pytest.skip()/fail() from an action
            step.error = exc
            step.cases = list(getattr(exc, "cases", []))
            if isinstance(exc, LavaError) and not getattr(exc, "console_tail", ""):
                exc.console_tail = self._tail()  # type: ignore[attr-defined]
        finally:
            self._running = None
            step.live.put(_DONE)
        if step.error is not None and step.action.kind == SETUP and self.run.fatal is None:
            # execute() sets fatal for a LavaError; anything else stops the job the same way
            self.run.fatal = step.error if isinstance(step.error, LavaError) else LavaBug(
                f"{step.action.command} raised {type(step.error).__name__}: {step.error}")

    def _tail(self) -> str:
        board = self.run.connected_board()
        if board is None:
            return ""
        try:
            tail = board.console.tail(15)
        except Exception:
            return ""
        return f"--- last console lines ({board.log_path}) ---\n{tail}" if tail else ""

    def under_way(self) -> bool:
        """Past its start-up: at its board (plugin/claims.py waits for this before letting other
        workers start), done with its first action, or over."""
        return (self.finished.is_set() or self.start_error is not None or self.run.at_board()
                or any(step.ran and step is not self._running for step in self._steps.values()))

    # -- the items --------------------------------------------------------------------------

    def wait_started(self) -> None:
        """The ``lava_job`` fixture: until the board is leased (the lease's own deadline bounds it)."""
        if not self._started.wait(timeout=self._limit()):
            raise InfrastructureError(f"job {self.run.job.id}: no board was leased by the job's deadline")

    def wait(self, action: ActionDef, on_cases: Callable[[list[CaseResult]], None] | None = None
             ) -> list[CaseResult]:
        """An item's (or fixture's) action: its test cases as they come, then its outcome."""
        step = self._steps.get(action.index)
        if step is None:
            raise LavaBug(f"job {self.run.job.id}: action {action.command} was not planned on its thread")
        while not step.over:
            try:
                got = step.live.get(timeout=self._limit())
            except queue.Empty:
                raise InfrastructureError(f"job {self.run.job.id}: {action.command} did not end by the job's "
                                          "deadline") from None
            if got is _DONE:
                step.over = True
            elif on_cases is not None:
                on_cases(got)  # type: ignore[arg-type]
        if step.skipped:
            raise self.run.fatal or InfrastructureError(f"job {self.run.job.id}: {action.command} was not run "
                                                        "(the session is ending)")
        if step.error is not None:
            raise step.error
        return step.cases

    def _limit(self) -> float:
        return self.run.deadline.remaining_or(7 * 86400.0) + FINISH_GRACE

    def join(self) -> None:
        """The job's end (its module's teardown): until the thread has finished the job; an error
        of finishing it (the bundle, the submit hook) is raised here, as in the foreground."""
        aborted = self.stop()
        if not self.finished.wait(timeout=ABORT_WAIT if aborted else self._limit()):
            raise InfrastructureError(f"job {self.run.job.id}: finishing the job did not end in time")
        if self.finish_error is not None:
            raise self.finish_error
