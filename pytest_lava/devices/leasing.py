"""What every board pool backend shares: matching jobs to boards, the wait for a free board, the
lease object, and the interface a backend implements (:class:`PoolBackend`).

Two backends implement it: the local one (:class:`.pool.BoardPool`: ``flock`` on files, the
default, nothing to set up) and the PostgreSQL one (:class:`.pgpool.PostgresPool`: session-level
advisory locks, for dispatchers on several hosts). Both keep the same promise — a lease dies with
the process (or connection) holding it, and a board is never held twice — and the same rules:

Matching: a job's ``target`` names one board; a ``device_type`` (plus job ``tags``) takes any
free board of that type carrying all the tags. Quarantined boards (see :mod:`.health`) are
skipped, except by health-check jobs. A job waits for a free board, polling, until its deadline;
then it fails with :class:`NoBoardAvailable`, naming what it asked for and who held what.
"""

from __future__ import annotations

import random
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from ..core.errors import ConfigurationError, InfrastructureError
from .device import Device

if TYPE_CHECKING:
    from ..core.deadline import Deadline
    from .health import HealthRules


class NoBoardAvailable(InfrastructureError):
    """No board could be leased for a job before its deadline (or none can ever be)."""


class NoMatchingBoard(NoBoardAvailable):
    """No board in the device directory matches the job's target / device type / tags at all."""


def this_host() -> str:
    """This host's name, as a device's ``dispatcher_host`` names it (lower case)."""
    return socket.gethostname().lower()


def runs_here(device: Device, host: str | None = None) -> bool:
    """Whether ``device`` may be run from this host (its ``dispatcher_host`` is unset or this host)."""
    want = device.dispatcher_host
    return not want or want.lower() == (host or this_host())


def describe_request(target: str | None, device_type: str | None, tags: Sequence[str]) -> str:
    what = f"board {target!r}" if target else f"a board of type {device_type!r}"
    if tags:
        what += f" with tags {', '.join(tags)}"
    return what


@dataclass(frozen=True)
class Holder:
    """Who holds a board, as its holder recorded it (best effort: for messages only)."""

    pid: int
    host: str
    job: str
    since: float  # time.time()

    def __str__(self) -> str:
        age = max(0.0, time.time() - self.since)
        job = f" job {self.job!r}" if self.job else ""
        return f"pid {self.pid} on {self.host}{job}, for {age:.0f} s"


class Lease(ABC):
    """An exclusive hold on one board, released by :meth:`release`, by leaving the ``with`` block,
    or by the death of the process that holds it. Backends subclass it and implement :meth:`_drop`."""

    def __init__(self, device: Device, waited: float = 0.0) -> None:
        self.device = device
        self.waited = waited  # seconds spent waiting for a free board
        self._held = True

    @property
    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        """Give the board back (idempotent)."""
        if not self._held:
            return
        self._held = False
        self._drop()

    @abstractmethod
    def _drop(self) -> None:
        """Give the board back in the backend (called once)."""

    def __del__(self) -> None:  # a lease dropped without release() must not hold the board forever
        self.release()

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.device.name} {'held' if self.held else 'released'}>"


class PoolBackend(ABC):
    """A board pool: the boards of a device directory, leased to jobs across processes.

    A backend implements :meth:`try_lease` (lease one board now, or None) and :meth:`holder` (who
    holds a board); it may override :meth:`try_any` to try several boards in one round trip.
    ``health`` is the backend's quarantine store (:class:`.health.HealthRules`).
    """

    devices: dict[str, Device]
    health: HealthRules
    poll_interval: float = 0.1

    #: where the pool keeps its state, for messages (a directory, or a database URL sans password)
    location: str = ""

    @abstractmethod
    def try_lease(self, device: Device, *, job: str = "") -> Lease | None:
        """Lease ``device`` now if it is free (ignores quarantine); None if it is held."""

    @abstractmethod
    def holder(self, board: str) -> Holder | None:
        """Who holds ``board`` right now, if anyone (best effort)."""

    def try_any(self, devices: Sequence[Device], *, job: str = "") -> Lease | None:
        """Lease the first free board of ``devices`` (in that order); None if all are held."""
        for device in devices:
            lease = self.try_lease(device, job=job)
            if lease is not None:
                return lease
        return None

    def holders(self) -> dict[str, Holder]:
        """Every held board's holder (a backend may answer this in one query)."""
        out = {}
        for name in sorted(self.devices):
            holder = self.holder(name)
            if holder is not None:
                out[name] = holder
        return out

    def close(self) -> None:
        """Release what the backend keeps open (not the leases: they end with their holder)."""
        return None

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
        request = describe_request(target, device_type, tags)
        here = [d for d in candidates if runs_here(d)]
        if not here:
            hosts = sorted({str(d.dispatcher_host) for d in candidates})
            raise NoMatchingBoard(
                f"{request}: its board{'s' if len(candidates) > 1 else ''} must be run from "
                f"{' or '.join(hosts)} (dispatcher_host); this is {this_host()}")
        candidates = here
        started = time.monotonic()
        announced = False
        skipped: set[str] = set()
        rng = random.Random()
        while True:
            if health_check:
                usable = candidates
            else:
                quarantined = self.health.quarantined([d.name for d in candidates])
                usable = [d for d in candidates if d.name not in quarantined]
                newly = quarantined - skipped
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
            lease = self.try_any(usable[start:] + usable[:start], job=job)
            if lease is not None:
                lease.waited = time.monotonic() - started
                if log is not None and announced:
                    log(f"leased board {lease.device.name} after waiting {lease.waited:.1f} s")
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
        holders = self.holders()
        quarantined = self.health.quarantined(sorted(self.devices))
        out: dict[str, dict[str, object]] = {}
        for name in sorted(self.devices):
            device = self.devices[name]
            holder = holders.get(name)
            out[name] = {
                "device_type": device.device_type,
                "tags": list(device.tags),
                "busy": holder is not None,
                "holder": str(holder) if holder else None,
                "quarantined": name in quarantined,
            }
        return out

