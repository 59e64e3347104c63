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

import sys
import threading
import time
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
        buffer_size: int = 256 * 1024,
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
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab", buffering=buffer_size)  # noqa: SIM115 - long-lived
            self._file.write(
                f"# console log of {board}, opened {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n".encode()
            )

    # -- hot path -----------------------------------------------------------------------------
    def _timestamp(self, now: float) -> bytes:
        ms = int(now * 1000)
        if ms != self._stamp_ms:
            self._stamp_ms = ms
            self._stamp = (time.strftime("%H:%M:%S", time.localtime(now)) + f".{ms % 1000:03d} ").encode()
        return self._stamp

    def feed(self, data: bytes, now: float | None = None) -> None:
        """Log a chunk of console bytes (called by the reader thread)."""
        if not data:
            return
        if now is None:
            now = time.time()
        with self._lock:
            self.bytes_logged += len(data)
            if self._file is not None:
                text = self._partial + data
                cut = text.rfind(b"\n") + 1
                if cut:
                    stamp = self._timestamp(now)
                    body = text[:cut]
                    if b"\r" in body:
                        body = body.replace(b"\r\n", b"\n").replace(b"\r", b"")
                    # the first line gets the stamp here, the others through the replace
                    self._file.write(stamp + body[:-1].replace(b"\n", b"\n" + stamp) + b"\n")
                    self._partial = text[cut:]
                else:
                    self._partial = text
                if len(self._partial) > 65536:  # a line that never ends: write it out anyway
                    self._file.write(self._timestamp(now) + self._partial + b"\n")
                    self._partial = b""
                if now - self._last_flush >= self.flush_interval:
                    self._flush_locked()
            if self.live is not None:
                self._feed_live(data)

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
            if self._file is not None:
                if self._partial:  # keep the console's incomplete line readable
                    self._file.write(self._timestamp(now) + self._partial.replace(b"\r", b"") + b"\n")
                    self._partial = b""
                for line in message.splitlines() or [""]:
                    self._file.write(self._timestamp(now) + b"[lava] " + line.encode("utf-8", "replace") + b"\n")
                self._flush_locked()
        if self.live is not None:
            for line in message.splitlines():
                try:
                    self.live(f"[lava] {line}")
                except Exception:
                    self.live = None

    def _flush_locked(self) -> None:
        self._last_flush = time.monotonic()
        if self._file is not None:
            self._file.flush()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                if self._partial:
                    self._file.write(self._timestamp(time.time()) + self._partial + b"\n")
                    self._partial = b""
                self._file.close()
                self._file = None

    def __repr__(self) -> str:
        return f"<ConsoleLog {self.board} {self.path}>"
