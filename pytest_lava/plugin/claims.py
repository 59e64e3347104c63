"""Who runs which job under xdist: claims, so a worker that is up starts the jobs of workers still
starting, each on a thread of its own, at once.

Eight xdist workers take seconds to start on a small host (each imports pytest and collects every
job); with one job per worker, the last job's board would be powered on only when the last worker
is up. Instead, a worker that has collected *claims* jobs while other workers are still starting and
runs them side by side (:class:`pytest_lava.jobs.background.BackgroundRun`), as many as ``-n`` allows
in flight: with ``-n 8`` and eight jobs, the first worker up starts all eight at once and the other
workers, finding nothing left, shut down.

A claim is a file per job in a directory the controller makes for the session (``workerinput``
carries its path to workers on this host; workers on other hosts, ``--tx ssh=``, never claim and run
their jobs one at a time). Whoever creates a job's file first (``O_EXCL``) owns the job: a worker at
the end of its collection, before its controller hears of it; the controller when it gives a worker
a job. The controller sends a worker the jobs it claimed, and releases a claim when the job's items
are done (or its worker is gone): the claims not marked over are the jobs in flight.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..jobs.background import BackgroundRun
    from ..jobs.job import ActionDef, Job
    from .session import LavaSession

WORKERINPUT_KEY = "lava_claims"  # the claims directory, for workers on this host
_LOCK = ".lock"
_DONE = ".done"
_READY = ".ready"  # the first worker has claimed what it could
_OVER = ".over"  # the job's items are done: out of flight, and never claimed again
GATE_TIMEOUT = 15.0  # seconds the controller holds back the other workers at most
UNDER_WAY_LIMIT = 3.0  # seconds the first worker's jobs may take to reach their boards before it says ready


def job_unit(job: Job) -> str:
    """A job's (one kernel_matrix variant's) work unit, as the scheduler names it: ``<file>#<variant>``."""
    return f"{Path(job.file).resolve()}#{job.variant}"


def claim_name(unit: str) -> str:
    """The file name of a unit's claim."""
    return hashlib.sha256(unit.encode()).hexdigest()[:24]


class Claims:
    """The claims directory: one file per job in flight, holding the id of the worker that runs it
    (written before it appears: a claim is never seen empty), and ``<claim>.done`` once the job
    was finished on a claimer's thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @classmethod
    def create(cls) -> Claims:
        return cls(Path(tempfile.mkdtemp(prefix="pytest-lava-claims-")))

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def claim(self, unit: str, worker: str) -> str | None:
        """Claim ``unit`` for ``worker``: the worker that holds it now (None: the directory is gone,
        the session is over)."""
        tmp = self.directory / f"{unit}.{worker}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            tmp.write_text(worker)
        except OSError:
            return None
        try:
            os.link(tmp, self.directory / unit)  # atomic, and fails if the claim exists
            return worker
        except FileExistsError:
            return self.owner(unit)
        except OSError:
            return None
        finally:
            tmp.unlink(missing_ok=True)

    def owner(self, unit: str) -> str | None:
        try:
            return (self.directory / unit).read_text() or None
        except OSError:
            return None

    def owned_by(self, worker: str) -> list[str]:
        """The jobs ``worker`` holds that are not over."""
        return [unit for unit in self._units() if not self.is_over(unit) and self.owner(unit) == worker]

    def release(self, unit: str) -> None:
        """Give a job that did not run to its end back: another worker may claim it."""
        for path in (self.directory / unit, self.directory / f"{unit}{_DONE}"):
            path.unlink(missing_ok=True)

    def end(self, unit: str) -> bool:
        """The job is over (its items done, or reported lost): no longer in flight, and its claim
        stays, so a worker that comes up late never claims (and runs) it a second time. False if
        the mark could not be written (the scheduler counts the job as over all the same)."""
        return self._mark(f"{unit}{_OVER}")

    def is_over(self, unit: str) -> bool:
        return self._marked(f"{unit}{_OVER}")

    def mark_done(self, unit: str) -> None:
        self._mark(f"{unit}{_DONE}")

    def is_done(self, unit: str) -> bool:
        return self._marked(f"{unit}{_DONE}")

    def mark_ready(self) -> None:
        """A worker has claimed what it could (:class:`Gate`)."""
        self._mark(_READY)

    def ready(self) -> bool:
        return self._marked(_READY)

    def _mark(self, name: str) -> bool:
        """An empty file ``name`` in the directory; False if it could not be written."""
        try:
            (self.directory / name).touch()
            return True
        except OSError:
            return False

    def _marked(self, name: str) -> bool:
        return (self.directory / name).exists()

    def in_flight(self, over: Iterable[str] = ()) -> int:
        """The claims of jobs not over (``over``: more units known to be over)."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return 0
        over = {*over, *(name[: -len(_OVER)] for name in names if name.endswith(_OVER))}
        return sum(1 for name in names if "." not in name and name not in over)

    def _units(self) -> list[str]:
        try:
            return [name for name in os.listdir(self.directory) if "." not in name]
        except OSError:
            return []

    @contextmanager
    def locked(self, timeout: float = 10.0) -> Iterator[bool]:
        """Held while a worker claims several jobs, so two workers never overfill ``-n`` (a few
        milliseconds); False if it could not be had in ``timeout`` seconds (then claim nothing)."""
        from ..artifacts.download import DownloadError, locked
        from ..core.deadline import Deadline

        held = ExitStack()
        try:  # the flock the download cache waits on, with a deadline
            held.enter_context(locked(self.directory / _LOCK, Deadline(timeout, "claims"), "the claims"))
        except DownloadError:
            yield False
            return
        with held:
            yield True


# -- the controller ---------------------------------------------------------------------------


def for_node(node: Any, claims: Claims | None) -> bool:
    """``pytest_configure_node``: a worker on this host learns where the claims are. True if it
    may claim."""
    if claims is not None and getattr(node.gateway.spec, "popen", False):
        node.workerinput[WORKERINPUT_KEY] = str(claims.directory)
        return True
    return False


@dataclass
class Gate:
    """The controller's hold on every worker after the first that may claim: in
    ``pytest_configure_node``, before a worker is sent its session, :meth:`hold` waits until the
    first has claimed and its jobs have got to their boards (:func:`_ready_once_under_way`), its
    process is gone, or the session's one ``deadline`` (monotonic) has passed; then the gate is open
    for good. xdist sets the workers up one after another, so the first one, which will start the
    jobs, has the host's CPUs to itself while it imports pytest, collects and starts them, instead
    of sharing them with -n others doing the same: on two cores with -n 8 its jobs were powered on
    1.35-2.0 s into the run. The others start once the jobs run; they find the jobs claimed and
    have the boards' boot time to start up and shut down."""

    first: Any
    claims: Claims
    deadline: float

    @classmethod
    def for_first(cls, first: Any, claims: Claims, timeout: float = GATE_TIMEOUT) -> Gate:
        return cls(first, claims, time.monotonic() + timeout)

    def hold(self, node: Any) -> None:
        if node is self.first:
            return
        while not self.claims.ready():
            if time.monotonic() >= self.deadline or self._first_gone():
                self.claims.mark_ready()  # open for good: no later worker waits either
                return
            time.sleep(0.005)

    def _first_gone(self) -> bool:
        """Its process ended (xdist saw its channel end: ``shutting_down``) or was never set up."""
        channel = getattr(self.first, "channel", None)
        return bool(getattr(self.first, "shutting_down", False)) or channel is None or channel.isclosed()


# -- a worker ---------------------------------------------------------------------------------


def claim_and_start(session: pytest.Session, lava: LavaSession) -> list[str]:
    """At the end of a worker's collection (before its controller hears of it): claim jobs while
    there is room in ``-n``, and start each claimed one on a thread of its own. The claimed jobs'
    ids."""
    config = session.config
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    directory = workerinput.get(WORKERINPUT_KEY)
    if not directory:
        return []
    claims, worker = Claims(Path(directory)), str(workerinput.get("workerid", "?"))
    runs: list[BackgroundRun] = []
    try:
        runs = _claim_and_start(session, lava, claims, worker)
    finally:  # whatever happened: the controller holds the other workers back until then
        if runs:
            threading.Thread(target=_ready_once_under_way, args=(claims, runs), name="lava-claims-ready",
                             daemon=True).start()
        else:
            claims.mark_ready()
    return [run.run.job.id for run in runs]


def _ready_once_under_way(claims: Claims, runs: list[BackgroundRun], limit: float = UNDER_WAY_LIMIT) -> None:
    """Tell the controller to start the other workers once every job started here has got to its
    board (``BackgroundRun.under_way``), or after ``limit`` seconds. Eight jobs starting at once
    cost CPU too (leases, consoles, eight power commands); with seven pytest processes starting
    beside them on two cores, their boards were powered on ~0.45 s later."""
    end = time.monotonic() + limit
    try:
        while time.monotonic() < end and not all(run.under_way() for run in runs):
            time.sleep(0.01)
    finally:
        claims.mark_ready()


def _claim_and_start(session: pytest.Session, lava: LavaSession, claims: Claims, worker: str
                     ) -> list[BackgroundRun]:
    config = session.config
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    if _not_running(config):
        return []
    wanted = [(job, steps) for job, steps in job_steps(session.items) if not _unclaimable(lava, job)]
    mine: list[tuple[Job, list[ActionDef], str]] = []
    with claims.locked() as locked:
        room = int(workerinput.get("workercount", 1)) - claims.in_flight() if locked else 0
        for job, steps in wanted:
            if len(mine) >= room:
                break
            name = claim_name(job_unit(job))
            if claims.claim(name, worker) == worker:
                mine.append((job, steps, name))
    started: list[BackgroundRun] = []
    for job, steps, name in mine:
        try:
            started.append(lava.start_background(job, steps, on_finished=lambda name=name: claims.mark_done(name)))
        except Exception as exc:  # the job runs the usual way, when the controller sends it
            claims.release(name)
            lava.note(f"pytest-lava: {job.id}: not started ahead of its items: {exc}")
    return started


def _unclaimable(lava: LavaSession, job: Job) -> bool:
    """A job the controller must route itself, or that must not share this process with another:
    its boards must be run from given hosts (``dispatcher_host``), or a ``pytest_lava_board_type``
    hook answers with a driver *instance* (one object, which jobs running side by side would share)."""
    from .units import job_hosts

    try:
        boards = lava.plan(job).boards
        return job_hosts(boards) is not None or any(
            not isinstance(lava.board_type_hook(name), type) for name in {b.board_type for b in boards})
    except Exception:  # an invalid job, an unknown board type, a broken hook: its items report it
        return True


def _not_running(config: pytest.Config) -> bool:
    return any(config.getoption(name, False) for name in ("collectonly", "setuponly", "setupplan"))


def job_steps(items: list[pytest.Item]) -> list[tuple[Job, list[ActionDef]]]:
    """Each job of ``items`` (in order) with the actions its selected items would run, in order:
    each item's chain of setup actions (its module's fixtures) and then its own action."""
    from .items import JobItem

    jobs: dict[str, tuple[Job, list[ActionDef]]] = {}
    for item in items:
        if not isinstance(item, JobItem):
            continue
        job, steps = jobs.setdefault(item.job.id, (item.job, []))
        done = {a.index for a in steps}
        for action, _name in item.parent.chain.fixtures:  # type: ignore[union-attr]
            if action.index < item.action.index and action.index not in done:
                steps.append(action)
        steps.append(item.action)
    return list(jobs.values())
