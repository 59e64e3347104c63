"""Scripted fake connections for unit tests (no QEMU, no network).

``ScriptedConnection`` delivers a script of ``(delay, bytes)`` chunks, each ``delay`` seconds after
the previous one; ``DROP`` in the script makes ``read()`` raise ``ConnectionLost`` once (the
console then calls ``reconnect()``). Every ``write()`` is recorded, and an optional responder
reacts to written data (see ``ShellResponder``, a tiny board shell that runs commands with
``sh -c`` on the host and answers with echo, output and prompt).

Use from other unit tests::

    from tests.unit.fakes import ScriptedConnection, ShellResponder, make_console
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from pytest_lava.console.connections import ConnectionLost
from pytest_lava.console.engine import Console
from pytest_lava.console.log import ConsoleLog
from pytest_lava.core.deadline import Deadline

DROP = object()  # script item: the connection drops here

ScriptItem = tuple[float, bytes | str | object]


class ScriptedConnection:
    """A Connection fed by a script; records writes; can drop and reconnect."""

    def __init__(
        self,
        script: Iterable[ScriptItem] = (),
        *,
        name: str = "fake",
        on_write: Callable[[bytes, ScriptedConnection], None] | None = None,
        reconnect_fails: bool = False,
        reconnect_delay: float = 0.0,
    ) -> None:
        self.name = name
        self.on_write = on_write
        self.reconnect_fails = reconnect_fails
        self.reconnect_delay = reconnect_delay
        self.writes: list[bytes] = []
        self.reconnects = 0
        self.closed = False
        self._queue: deque[tuple[float, object]] = deque()
        self._cond = threading.Condition()
        self._last_due = time.monotonic()
        for delay, item in script:
            self.feed(item, delay)

    # -- test side -------------------------------------------------------------------------------
    def feed(self, item: bytes | str | object, delay: float = 0.0) -> None:
        """Queue a chunk (or DROP) ``delay`` seconds after the previously queued one (or now)."""
        if isinstance(item, str):
            item = item.encode()
        with self._cond:
            due = max(self._last_due, time.monotonic()) + delay
            self._last_due = due
            self._queue.append((due, item))
            self._cond.notify_all()

    @property
    def written(self) -> bytes:
        return b"".join(self.writes)

    # -- Connection protocol -----------------------------------------------------------------------
    def read(self, max_bytes: int, timeout: float) -> bytes:
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                if self.closed:
                    raise ConnectionLost(f"{self.name}: closed")
                now = time.monotonic()
                if self._queue and self._queue[0][0] <= now:
                    due, item = self._queue[0]
                    if item is DROP:
                        self._queue.popleft()
                        raise ConnectionLost(f"{self.name}: dropped (scripted)")
                    assert isinstance(item, bytes)
                    if len(item) > max_bytes:
                        self._queue[0] = (due, item[max_bytes:])
                        return item[:max_bytes]
                    self._queue.popleft()
                    return item
                wake = end if not self._queue else min(end, self._queue[0][0])
                if now >= end:
                    return b""
                self._cond.wait(max(0.0, wake - now))

    def write(self, data: bytes, timeout: float) -> None:
        if self.closed:
            raise ConnectionLost(f"{self.name}: closed")
        self.writes.append(bytes(data))
        if self.on_write is not None:
            self.on_write(bytes(data), self)

    def reconnect(self, deadline: Deadline) -> None:
        if self.reconnect_delay:
            deadline.sleep(self.reconnect_delay)
        if self.reconnect_fails:
            raise ConnectionLost(f"{self.name}: refused (scripted)")
        self.reconnects += 1

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class ShellResponder:
    """Answers written lines like an interactive shell: echo, output (from ``sh -c`` on the host or
    from ``canned``), then the prompt. ``before_output`` chunks are injected after the echo of the
    next command (kernel messages, a panic)."""

    def __init__(self, prompt: str = "root@fake:~# ", *, canned: dict[str, bytes] | None = None) -> None:
        self.prompt = prompt
        self.canned = canned or {}
        self.inject: list[bytes] = []
        self.hang = False  # the next command never returns
        self.lines: list[str] = []
        self._partial = b""

    def __call__(self, data: bytes, conn: ScriptedConnection) -> None:
        text = self._partial + data
        *lines, self._partial = text.split(b"\n")
        for raw in lines:
            line = raw.decode()
            self.lines.append(line)
            conn.feed(raw + b"\r\n")
            for chunk in self.inject:
                conn.feed(chunk)
            self.inject = []
            if self.hang:
                continue
            if line in self.canned:
                out = self.canned[line]
            elif line.strip():
                proc = subprocess.run(["sh", "-c", line], capture_output=True, timeout=10)
                out = proc.stdout + proc.stderr
            else:
                out = b""
            conn.feed(out.replace(b"\n", b"\r\n"))
            conn.feed(self.prompt.encode())


def make_console(conn: ScriptedConnection, log: ConsoleLog | None = None, **kw: object) -> Console:
    kw.setdefault("poll_interval", 0.05)
    return Console(conn, name=conn.name, log=log, **kw)  # type: ignore[arg-type]
