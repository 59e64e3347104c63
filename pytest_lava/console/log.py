"""The board log: every console byte, a timestamp per line, plus harness events.

One :class:`ConsoleLog` per board per job. The console's reader thread calls :meth:`feed` with raw
chunks; lines completed by one chunk share one timestamp (they arrived together), so the hot path
does a few C-level ``bytes`` operations per chunk and no Python work per line. Writes are buffered
and flushed when the console goes idle (:meth:`flush`) or every ``flush_interval`` seconds.

Harness events (power commands and their output, connection losses, sent commands on request)
are written with :meth:`event` as ``<time> [lava] message`` lines.

``live`` (for ``--lava-console``) receives complete decoded lines; :func:`live_printer` builds a
thread-safe callback that prefixes each line with the board name.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

LiveCallback = Callable[[str], None]

_print_lock = threading.Lock()


def live_printer(board: str, stream: TextIO | None = None) -> LiveCallback:
    """A callback that prints ``[board] line`` to ``stream`` (default stderr), one whole line at a
    time under a process-wide lock, so lines of several boards never mix."""

    def emit(line: str) -> None:
        out = stream if stream is not None else sys.stderr
        with _print_lock:
            out.write(f"[{board}] {line}\n")
            out.flush()

    return emit


class ConsoleLog:
    """Human-readable, timestamped log of one board's console (and harness events)."""

    def __init__(
        self,
        path: Path | str | None,
        *,
        board: str = "board",
        live: LiveCallback | None = None,
        flush_interval: float = 0.5,
        buffer_size: int = 64 * 1024,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.board = board
        self.live = live
        self.flush_interval = flush_interval
        self._lock = threading.Lock()
        self._partial = b""  # bytes of an incomplete line
        self._stamp_ms = -1
        self._stamp = b""
        self._last_flush = time.monotonic()
        self._live_partial = b""
        self.bytes_logged = 0
        self.events_logged = 0  # harness event lines (power, process started, console closed)
        self._writer: _FileWriter | None = None
        self._out = bytearray()  # pending output, handed to the writer in batches of >= buffer_size
        self._raw: list[bytes] = []  # chunks not formatted yet, all from millisecond _raw_ms
        self._raw_len = 0
        self._raw_ms = -1
        self.buffer_size = buffer_size
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = _FileWriter(self.path)
            self._out += f"# console log of {board}, opened {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n".encode()

    # -- hot path -----------------------------------------------------------------------------
    def _timestamp(self, now: float) -> bytes:
        ms = int(now * 1000)
        if ms != self._stamp_ms:
            self._stamp_ms = ms
            self._stamp = (time.strftime("%H:%M:%S", time.localtime(now)) + f".{ms % 1000:03d} ").encode()
        return self._stamp

    def feed(self, data: bytes, now: float | None = None) -> None:
        """Log a chunk of console bytes (called by the reader thread).

        Chunks are only queued here; they are formatted in batches, one batch per millisecond
        of arrival (its lines share that timestamp), so a fast stream costs a few C-level bytes
        operations per batch, not per chunk."""
        if not data:
            return
        if now is None:
            now = time.time()
        ms = int(now * 1000)
        with self._lock:
            self.bytes_logged += len(data)
            if self._writer is not None:
                if ms != self._raw_ms and self._raw:
                    self._format_raw_locked()
                self._raw_ms = ms
                self._raw.append(data)
                self._raw_len += len(data)
                if self._raw_len >= self.buffer_size or time.monotonic() - self._last_flush >= self.flush_interval:
                    self._format_raw_locked()
                    self._flush_locked()
            if self.live is not None:
                self._feed_live(data)

    def _format_raw_locked(self) -> None:
        """Turn the queued chunks into timestamped lines (lock held)."""
        if not self._raw:
            return
        text = self._partial + (self._raw[0] if len(self._raw) == 1 else b"".join(self._raw))
        self._raw.clear()
        self._raw_len = 0
        stamp = self._timestamp(self._raw_ms / 1000.0)
        cut = text.rfind(b"\n") + 1
        if cut:
            # no CRs in the log (bytes.replace: C speed, twice translate's); the first line gets
            # the stamp here, the others through the second replace: no Python work per line
            body = text[: cut - 1].replace(b"\r", b"")
            out = self._out
            out += stamp
            out += body.replace(b"\n", b"\n" + stamp)
            out += b"\n"
            self._partial = text[cut:]
        else:
            self._partial = text
        if len(self._partial) > 65536:  # a line that never ends: write it out anyway
            self._out += stamp + self._partial.replace(b"\r", b"") + b"\n"
            self._partial = b""

    def _feed_live(self, data: bytes) -> None:
        text = self._live_partial + data
        lines = text.split(b"\n")
        self._live_partial = lines.pop()
        if len(self._live_partial) > 4096:
            lines.append(self._live_partial)
            self._live_partial = b""
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            try:
                self.live(line)  # type: ignore[misc]
            except Exception:  # a broken live view must not break the console
                self.live = None
                return

    # -- events and housekeeping ----------------------------------------------------------------
    def event(self, message: str) -> None:
        """A harness event line, e.g. ``power on: ['pdu', 'on', '3'] -> 0``."""
        now = time.time()
        with self._lock:
            self.events_logged += 1
            if self._writer is not None:
                self._format_raw_locked()
                if self._partial:  # keep the console's incomplete line readable
                    self._out += self._timestamp(now) + self._partial.replace(b"\r", b"") + b"\n"
                    self._partial = b""
                for line in message.splitlines() or [""]:
                    self._out += self._timestamp(now) + b"[lava] " + line.encode("utf-8", "replace") + b"\n"
                self._flush_locked()
        if self.live is not None:
            for line in message.splitlines():
                try:
                    self.live(f"[lava] {line}")
                except Exception:
                    self.live = None

    def _flush_locked(self, wait: bool = False) -> None:
        self._last_flush = time.monotonic()
        if self._writer is not None:
            self._format_raw_locked()
            if self._out:
                data, self._out = self._out, bytearray()
                self._writer.put(data)
            if wait:
                self._writer.drain()

    def flush(self) -> None:
        """Hand pending lines to the writer and wait until they are in the file."""
        with self._lock:
            self._flush_locked(wait=True)

    @property
    def write_error(self) -> str:
        return self._writer.error if self._writer is not None else ""

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._format_raw_locked()
                if self._partial:
                    self._out += self._timestamp(time.time()) + self._partial.replace(b"\r", b"") + b"\n"
                    self._partial = b""
                self._flush_locked()
                self._writer.close()
                self._writer = None

    def __repr__(self) -> str:
        return f"<ConsoleLog {self.board} {self.path}>"


class _FileWriter:
    """Writes the log file from its own thread, so disk time overlaps the console's work (the
    write syscall releases the GIL). Bounded: ``put`` waits when ``max_pending`` bytes are queued,
    so a slow disk slows the console down instead of eating memory; nothing is dropped."""

    def __init__(self, path: Path, max_pending: int = 8 * 1024 * 1024) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self.max_pending = max_pending
        self.error = ""
        self._queue: deque[bytes | bytearray] = deque()
        self._pending = 0
        self._busy = False
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"console-log:{path.name}", daemon=True)
        self._thread.start()

    def put(self, data: bytes | bytearray) -> None:
        with self._cond:
            while self._pending > self.max_pending and self._thread.is_alive():
                self._cond.wait(1.0)
            self._queue.append(data)
            self._pending += len(data)
            self._cond.notify_all()

    def drain(self, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        with self._cond:
            while (self._queue or self._busy) and self._thread.is_alive():
                left = end - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                data = self._queue.popleft()
                self._busy = True
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view) :]
            except OSError as exc:  # a full disk must not kill the console; keep the reason
                self.error = self.error or str(exc)
            with self._cond:
                self._busy = False
                self._pending -= len(data)
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=30)
        os.close(self.fd)
