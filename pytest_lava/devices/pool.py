"""The board pool: which board a job runs on, held as a lease that dies with its process.

A **lease** is an exclusive ``flock`` on ``<state_dir>/leases/<board>.lock``. The kernel drops
the lock when the file is closed, and closes it when the process ends for whatever reason —
``kill -9``, an OOM kill, a cancelled CI job — so a board is never left locked by a dead holder,
and two processes (or two leases in one process) can never hold one board. There are no TTLs
or heartbeats to tune: a lease lasts exactly as long as its holder.

The lock files are never deleted (deleting one while another process waits on it would let two
processes lock two different files for one board). The holder writes ``pid``, host, job and
start time into its lock file, for the "board is busy" message.

Lock descriptors are close-on-exec, so child processes the job spawns (QEMU, ser2net) do not
inherit the lease; a child made with a bare ``fork()`` would, and keeps the board until it ends.

Matching: a job's ``target`` names one board; a ``device_type`` (plus job ``tags``) takes any
free board of that type carrying all the tags. Quarantined boards (see :mod:`.health`) are
skipped, except by health-check jobs. A job waits for a free board, polling, until its deadline;
then it fails with :class:`NoBoardAvailable`, naming what it asked for and who held what.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from ..core.errors import ConfigurationError, InfrastructureError
from .device import Device
from .health import BoardHealth, board_file_stem

if TYPE_CHECKING:
    from ..core.deadline import Deadline


class NoBoardAvailable(InfrastructureError):
    """No board could be leased for a job before its deadline (or none can ever be)."""


class NoMatchingBoard(NoBoardAvailable):
    """No board in the device directory matches the job's target / device type / tags at all."""


def _describe_request(target: str | None, device_type: str | None, tags: Sequence[str]) -> str:
    what = f"board {target!r}" if target else f"a board of type {device_type!r}"
    if tags:
        what += f" with tags {', '.join(tags)}"
    return what


@dataclass(frozen=True)
class Holder:
    """Who holds a board, as written into its lock file (best effort: for messages only)."""

    pid: int
    host: str
    job: str
    since: float  # time.time()

    def __str__(self) -> str:
        age = max(0.0, time.time() - self.since)
        job = f" job {self.job!r}" if self.job else ""
        return f"pid {self.pid} on {self.host}{job}, for {age:.0f} s"


class Lease:
    """An exclusive hold on one board, released by :meth:`release`, by leaving the ``with`` block,
    or by the death of the process that holds it."""

    def __init__(self, device: Device, fd: int, path: Path, waited: float = 0.0) -> None:
        self.device = device
        self.path = path
        self.waited = waited  # seconds spent waiting for a free board
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the board back (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # clear the holder record
        except OSError:
            pass
        os.close(fd)  # closing the descriptor drops the flock

    def __del__(self) -> None:  # a lease dropped without release() must not hold the board forever
        self.release()

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Lease {self.device.name} {'held' if self.held else 'released'}>"


class BoardPool:
    """The boards of a device directory, leased to jobs across processes.

    ``state_dir`` must be shared by every process that may use the same boards (all xdist workers
    of a run, and other runs on the same lab): e.g. ``~/.cache/pytest-lava``.
    """

    def __init__(
        self,
        devices: Mapping[str, Device],
        state_dir: Path,
        *,
        health: BoardHealth | None = None,
        poll_interval: float = 0.1,
    ) -> None:
        self.devices = dict(devices)
        self.state_dir = Path(state_dir)
        self.lease_dir = self.state_dir / "leases"
        self.lease_dir.mkdir(parents=True, exist_ok=True)
        self.health = health if health is not None else BoardHealth(self.state_dir)
        self.poll_interval = poll_interval

    # -- matching ----------------------------------------------------------------------------

    def match(
        self, *, target: str | None, device_type: str | None, tags: Sequence[str] = ()
    ) -> list[Device]:
        """The boards a job may run on, by name; raises :class:`NoMatchingBoard` if none.

        Cheap and side-effect free: the plugin can call it at collection time to reject a job
        whose target or type the lab does not have (see :meth:`check_request`).
        """
        if target:
            device = self.devices.get(target)
            if device is None:
                raise NoMatchingBoard(
                    f"no board named {target!r} in the device directory; "
                    f"boards: {self._names(self.devices.values())}"
                )
            missing = [t for t in tags if t not in device.tags]
            if missing:
                raise NoMatchingBoard(
                    f"board {target!r} lacks the job's tags {', '.join(missing)} "
                    f"(its tags: {', '.join(device.tags) or 'none'})"
                )
            return [device]
        if not device_type:
            raise NoMatchingBoard("the job names neither a target nor a device_type")
        of_type = [d for d in self.devices.values() if d.device_type == device_type]
        if not of_type:
            types = sorted({d.device_type for d in self.devices.values()})
            raise NoMatchingBoard(
                f"no board of type {device_type!r} in the device directory; "
                f"types there: {', '.join(types) or 'none'}"
            )
        tagged = [d for d in of_type if all(t in d.tags for t in tags)]
        if not tagged:
            raise NoMatchingBoard(
                f"no board of type {device_type!r} has all the tags {', '.join(tags)}; boards of "
                "that type: " + "; ".join(f"{d.name} [{', '.join(d.tags) or 'no tags'}]" for d in of_type)
            )
        return sorted(tagged, key=lambda d: d.name)

    def check_request(
        self, *, target: str | None, device_type: str | None, tags: Sequence[str] = (), source: str = ""
    ) -> None:
        """Like :meth:`match`, but raises a :class:`ConfigurationError` (a usage error)."""
        try:
            self.match(target=target, device_type=device_type, tags=tags)
        except NoMatchingBoard as exc:
            raise ConfigurationError.single(source or "job", "target/device_type", exc.message)

    @staticmethod
    def _names(devices: Iterable[Device]) -> str:
        names = sorted(d.name for d in devices)
        return ", ".join(names) or "none"

    # -- leasing -----------------------------------------------------------------------------

    def _lock_path(self, board: str) -> Path:
        return self.lease_dir / f"{board_file_stem(board)}.lock"

    def try_lease(self, device: Device, *, job: str = "") -> Lease | None:
        """Lease ``device`` now if it is free (ignores quarantine); None if it is held."""
        path = self._lock_path(device.name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        record = {"pid": os.getpid(), "host": socket.gethostname(), "job": job, "since": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        except OSError:
            pass  # the record is only for messages
        return Lease(device, fd, path)

    def holder(self, board: str) -> Holder | None:
        """Who holds ``board`` right now, if anyone (best effort)."""
        lease = self.try_lease(self.devices[board]) if board in self.devices else None
        if lease is not None:
            lease.release()
            return None
        try:
            data = json.loads(self._lock_path(board).read_text() or "{}")
            return Holder(int(data["pid"]), str(data["host"]), str(data.get("job", "")), float(data["since"]))
        except (OSError, ValueError, KeyError, TypeError):
            return Holder(0, "?", "", time.time())

    def acquire(
        self,
        *,
        target: str | None,
        device_type: str | None,
        tags: Sequence[str] = (),
        deadline: Deadline,
        health_check: bool = False,
        log: Callable[[str], None] | None = None,
        job: str = "",
    ) -> Lease:
        """Lease a matching board, waiting for one to be free until ``deadline``.

        Raises :class:`NoMatchingBoard` at once if no board matches, :class:`NoBoardAvailable` at
        once if every matching board is quarantined (and this is not a health check), and
        :class:`NoBoardAvailable` when the deadline passes with every usable board busy.
        """
        candidates = self.match(target=target, device_type=device_type, tags=tags)
        request = _describe_request(target, device_type, tags)
        started = time.monotonic()
        announced = False
        skipped: set[str] = set()
        rng = random.Random()
        while True:
            if health_check:
                usable = candidates
            else:
                usable = [d for d in candidates if not self.health.is_quarantined(d.name)]
                newly = {d.name for d in candidates if d not in usable} - skipped
                if newly and usable and log is not None:
                    log(f"skipping quarantined board{'s' if len(newly) > 1 else ''} {', '.join(sorted(newly))}")
                skipped |= newly
                if not usable:
                    raise NoBoardAvailable(
                        f"no usable board for {request}: "
                        + self._explain(candidates, quarantined={d.name for d in candidates})
                        + "; a passing health-check job (health_check: true) releases a board"
                    )
            # start at a random board so concurrent jobs spread over the pool
            start = rng.randrange(len(usable))
            for device in usable[start:] + usable[:start]:
                lease = self.try_lease(device, job=job)
                if lease is not None:
                    lease.waited = time.monotonic() - started
                    if log is not None and announced:
                        log(f"leased board {device.name} after waiting {lease.waited:.1f} s")
                    return lease
            remaining = deadline.remaining()
            if remaining <= 0:
                quarantined = {d.name for d in candidates if d not in usable}
                raise NoBoardAvailable(
                    f"no board free for {request} after waiting {time.monotonic() - started:.1f} s "
                    f"(deadline of {deadline.path}): "
                    + self._explain(candidates, quarantined=quarantined)
                )
            if log is not None and not announced:
                busy = ", ".join(d.name for d in usable)
                log(f"waiting for {request}: all busy ({busy})")
                announced = True
            # jittered poll so waiters do not move in lockstep
            time.sleep(min(remaining, self.poll_interval * rng.uniform(0.5, 1.5)))

    def _explain(self, candidates: Sequence[Device], *, quarantined: set[str]) -> str:
        parts = []
        for device in candidates:
            if device.name in quarantined:
                reason = self.health.load(device.name).reason
                parts.append(f"{device.name} quarantined" + (f" ({reason})" if reason else ""))
                continue
            holder = self.holder(device.name)
            parts.append(f"{device.name} busy ({holder})" if holder else f"{device.name} free")
        return "; ".join(parts)

    def status(self) -> dict[str, dict[str, object]]:
        """Every board: ``{name: {device_type, tags, busy, holder, quarantined}}``."""
        out: dict[str, dict[str, object]] = {}
        for name in sorted(self.devices):
            device = self.devices[name]
            holder = self.holder(name)
            out[name] = {
                "device_type": device.device_type,
                "tags": list(device.tags),
                "busy": holder is not None,
                "holder": str(holder) if holder else None,
                "quarantined": self.health.is_quarantined(name),
            }
        return out
