"""The deadline tree: job -> action -> call, enforced without ``signal.alarm``.

Every node's deadline is ``min(own timeout, parent's deadline)``; every blocking call takes the
remaining time of its node. A :class:`Watchdog` thread watches one node (the job) from outside the
action code and, when it expires, calls registered closers (close the console, kill a child
process) so that even a call blocked somewhere without a timeout ends.

Deadlines are also context managers that record their duration::

    job = Deadline(600, "job")
    with job.child(120, "boot_linaro_image") as step:
        console.expect("login:", step)
    step.duration  # seconds the step took
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from types import TracebackType

from .errors import InfrastructureError


class DeadlineExceeded(InfrastructureError):
    """A node of the deadline tree ran out of time; the message names the node's path."""

    def __init__(self, message: str, *, path: str = "", details: str = "") -> None:
        super().__init__(message, details=details)
        self.path = path


class Deadline:
    """One node of the deadline tree.

    ``timeout=None`` means "no limit of my own": the node inherits its parent's deadline (or none).
    Times are monotonic; ``started`` is ``time.monotonic()`` at creation.
    """

    def __init__(self, timeout: float | None, name: str, parent: Deadline | None = None) -> None:
        if timeout is not None and timeout < 0:
            raise ValueError(f"negative timeout {timeout} for {name!r}")
        self.name = name
        self.parent = parent
        self.timeout = timeout
        self.started = time.monotonic()
        self.ended: float | None = None
        own = self.started + timeout if timeout is not None else math.inf
        self.at = min(own, parent.at) if parent is not None else own
        # which node sets the limit: ours, or an ancestor's (for messages)
        self.limited_by: Deadline = self if parent is None or own <= parent.at else parent.limited_by

    @classmethod
    def coerce(cls, value: Deadline | float | None, name: str) -> Deadline:
        """A child of ``value`` named ``name`` when it is a Deadline, else a root with that timeout."""
        if isinstance(value, Deadline):
            return value.child(None, name)
        return cls(value, name)

    def child(self, timeout: float | None, name: str) -> Deadline:
        return Deadline(timeout, name, self)

    def remaining(self) -> float:
        """Seconds left (>= 0); ``math.inf`` if no node up the tree has a limit."""
        if self.at == math.inf:
            return math.inf
        return max(0.0, self.at - time.monotonic())

    def remaining_or(self, cap: float) -> float:
        """``min(remaining, cap)``: a finite wait for APIs that need one."""
        return min(self.remaining(), cap)

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def check(self) -> None:
        if self.expired:
            raise self.exceeded()

    def exceeded(self, what: str = "") -> DeadlineExceeded:
        """The error to raise for this node (not raised here)."""
        lim = self.limited_by
        limit = f"{lim.timeout:g} s" if lim.timeout is not None else "its limit"
        why = f"timed out after {self.elapsed:.1f} s"
        if lim is not self:
            why += f" (limit {limit} of '{lim.path}')"
        else:
            why += f" (limit {limit})"
        msg = f"{self.path}: {what + ': ' if what else ''}{why}"
        return DeadlineExceeded(msg, path=self.path)

    @property
    def path(self) -> str:
        names = []
        node: Deadline | None = self
        while node is not None:
            names.append(node.name)
            node = node.parent
        return "/".join(reversed(names))

    @property
    def elapsed(self) -> float:
        end = self.ended if self.ended is not None else time.monotonic()
        return end - self.started

    @property
    def duration(self) -> float | None:
        """Seconds from start to :meth:`finish`, or None while running."""
        return None if self.ended is None else self.ended - self.started

    def finish(self) -> float:
        if self.ended is None:
            self.ended = time.monotonic()
        return self.ended - self.started

    def sleep(self, seconds: float) -> None:
        """Sleep at most ``seconds``, never past the deadline; raises if the deadline passed."""
        time.sleep(max(0.0, self.remaining_or(seconds)))
        self.check()

    def __enter__(self) -> Deadline:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish()

    def __repr__(self) -> str:
        rem = self.remaining()
        return f"<Deadline {self.path} remaining={rem:.3g}s>"


class Watchdog:
    """Enforces a deadline from outside the code that runs under it.

    When ``deadline`` expires, each registered closer is called once (in registration order,
    errors are swallowed and kept in ``errors``) and ``fired`` becomes True. Closers typically close
    a console connection or kill a child process by PID, which makes a blocked call return.
    """

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        self.fired = False
        self.errors: list[BaseException] = []
        self._closers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add_closer(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if self.fired:  # too late to wait: close at once
                run_now = True
            else:
                self._closers.append(fn)
                run_now = False
        if run_now:
            self._call(fn)

    def remove_closer(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if fn in self._closers:
                self._closers.remove(fn)

    def start(self) -> Watchdog:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"watchdog:{self.deadline.path}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            remaining = self.deadline.remaining()
            if remaining <= 0:
                self._fire()
                return
            # wake at least every minute even for a far deadline (cheap), stop at once when asked
            self._stop.wait(min(remaining, 60.0))

    def abort(self) -> None:
        """Fire now, before the deadline: what runs under it is to stop (the session is ending)."""
        self._fire()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            closers = list(self._closers)
        for fn in closers:
            self._call(fn)

    def _call(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # a closer must not kill the watchdog
            self.errors.append(exc)

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
