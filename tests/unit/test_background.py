"""A job on a thread of its own (jobs/background.py): the items get the outcomes in order, live
cases reach the waiting item, a failed setup action stops the job, the session's end stops it
after the action running, and the job is finished exactly once, by its thread."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

from pytest_lava.actions.spec import SETUP, TEST
from pytest_lava.core.deadline import Deadline
from pytest_lava.core.errors import InfrastructureError, TestFailure
from pytest_lava.jobs.background import BackgroundRun
from pytest_lava.results.model import CaseResult


@dataclass
class Action:
    index: int
    command: str
    kind: str


@dataclass
class Job:
    id: str = "job"


@dataclass
class FakeRun:
    """What BackgroundRun uses of a JobRun; ``script`` says what each action does."""

    script: dict[int, object]
    job: Job = field(default_factory=Job)
    deadline: Deadline = field(default_factory=lambda: Deadline(30, "job"))
    fatal: object = None
    aborting: bool = False
    finished: int = 0
    ran: list[int] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def execute(self, action: Action, on_cases=None) -> list[CaseResult]:
        self.ran.append(action.index)
        what = self.script.get(action.index)
        if what == "wait":
            self.gate.wait(120)  # the tests open it; a stalled machine must not
        if isinstance(what, list):
            for case in what:
                on_cases([case])
            return list(what)
        if isinstance(what, BaseException):
            if action.kind == SETUP:
                self.fatal = what
            raise what
        return []

    def abort(self) -> None:
        self.aborting = True
        self.gate.set()

    def connected_board(self) -> None:
        return None

    board_reached: bool = False

    def at_board(self) -> bool:
        return self.board_reached

    def finish(self, *, interrupted: bool = False) -> None:
        self.finished += 1


def steps(*kinds: str) -> list[Action]:
    return [Action(i, f"action{i}", kind) for i, kind in enumerate(kinds)]


def running_the_first_of_two() -> tuple[FakeRun, list[Action], BackgroundRun]:
    """A job of two test actions whose first is running (it waits for ``run.gate``)."""
    run = FakeRun({0: "wait"})
    plan = steps(TEST, TEST)
    background = BackgroundRun(run, plan)  # type: ignore[arg-type]
    background.start()
    while not run.ran:
        time.sleep(0.01)
    return run, plan, background


def test_outcomes_in_order_with_live_cases() -> None:
    cases = [CaseResult("a", "pass"), CaseResult("b", "fail")]
    run = FakeRun({1: cases, 2: TestFailure("red")})
    plan = steps(SETUP, TEST, TEST, TEST)
    background = BackgroundRun(run, plan)  # type: ignore[arg-type]
    background.start()
    background.wait_started()
    assert background.wait(plan[0]) == []
    seen: list[str] = []
    assert background.wait(plan[1], on_cases=lambda got: seen.extend(c.test_case_id for c in got)) == cases
    assert seen == ["a", "b"]
    with pytest.raises(TestFailure):
        background.wait(plan[2])
    assert background.wait(plan[3]) == []  # a failing test action does not stop the job
    background.join()
    assert run.ran == [0, 1, 2, 3] and run.finished == 1


def test_a_failed_setup_action_stops_the_job() -> None:
    broken = InfrastructureError("no network")
    run = FakeRun({1: broken})
    plan = steps(SETUP, SETUP, TEST)
    background = BackgroundRun(run, plan)  # type: ignore[arg-type]
    background.start()
    background.join()
    assert run.ran == [0, 1] and run.finished == 1
    with pytest.raises(InfrastructureError) as got:
        background.wait(plan[2])  # never run: the items after it get the setup's reason
    assert got.value is broken


def test_the_sessions_end_stops_it_after_the_action_running() -> None:
    run, plan, background = running_the_first_of_two()
    background.cancel()
    run.gate.set()
    background.join()
    assert run.ran == [0] and run.finished == 1
    assert background.wait(plan[0]) == []
    with pytest.raises(InfrastructureError, match="not run"):
        background.wait(plan[1])


def test_an_action_that_skips_skips_its_item_and_a_finish_error_reaches_the_jobs_end() -> None:
    skipped = pytest.skip.Exception("not on this board")
    run = FakeRun({0: skipped})
    plan = steps(TEST, TEST)
    background = BackgroundRun(run, plan)  # type: ignore[arg-type]

    def broken_finish(*, interrupted: bool = False) -> None:
        raise ValueError("the bundle does not validate")

    run.finish = broken_finish  # type: ignore[method-assign]
    background.start()
    with pytest.raises(pytest.skip.Exception):
        background.wait(plan[0])
    assert background.wait(plan[1]) == []
    assert background.wait(plan[1]) == []  # asked again: answered at once
    with pytest.raises(ValueError, match="does not validate"):
        background.join()


def test_the_session_ending_under_a_running_action_aborts_it() -> None:
    run, plan, background = running_the_first_of_two()
    background.join()  # the items are over (-x): the running action is aborted, nothing more runs
    assert run.aborting and run.ran == [0] and run.finished == 1


def test_a_job_is_under_way_once_it_has_reached_its_board_or_its_first_action_is_done() -> None:
    """What the first xdist worker waits for before the others may start (claims.py)."""
    run, plan, background = running_the_first_of_two()
    assert not background.under_way()  # leasing, deploying: not at the board yet
    run.board_reached = True  # e.g. the power command ran
    assert background.under_way()
    run.board_reached = False
    run.gate.set()
    background.join()
    assert background.under_way()  # over


def test_the_first_worker_says_ready_once_its_jobs_are_under_way(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pytest_lava.plugin.claims import Claims, _ready_once_under_way

    claims = Claims(tmp_path)
    run, plan, background = running_the_first_of_two()
    telling = threading.Thread(target=_ready_once_under_way, args=(claims, [background], 600.0), daemon=True)
    telling.start()
    telling.join(0.2)
    assert not claims.ready()  # its job has not reached its board
    run.board_reached = True
    telling.join(60)
    assert claims.ready()
    run.gate.set()
    background.join()
