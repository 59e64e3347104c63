"""The console engine: one reader thread per connection, a bounded buffer, expect, death strings.

The reader thread appends every byte to a bounded ``bytearray`` that carries absolute stream
offsets, feeds the board log (timestamped, batched) and wakes waiters. ``expect()`` searches only
the data after the last match (or :meth:`Console.mark`), incrementally: each wake-up scans the new
bytes plus an overlap of ``window`` bytes, so a marker split across chunks still matches and the
cost stays linear in the stream. Bytes that arrive between two ``expect()`` calls are never lost.

Death strings (``Kernel panic``…) are searched in the same new data and raise
:class:`ConsoleDeath` at once, whatever is being waited for. ``inactivity=`` fails a wait when the
board has been silent for that long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..core.deadline import Deadline
from ..core.errors import InfrastructureError, LavaBug
from ..devices.device import DEFAULT_DEATH_STRINGS
from .backoff import ReconnectBackoff
from .connections import Connection, ConnectionLost
from .log import ConsoleLog
from .matching import ConsoleMatch, Patterns, TextMatch, Waiter, as_matchers
from .text import ConsoleClosed, ConsoleDeath, ConsoleInactivity, ConsoleTimeout, clean_text

__all__ = [
    "DEFAULT_DEATH_STRINGS",
    "Console",
    "ConsoleClosed",
    "ConsoleDeath",
    "ConsoleInactivity",
    "ConsoleMatch",
    "ConsoleTimeout",
    "TextMatch",
    "clean_text",
]

@dataclass
class _Stats:
    bytes_read: int = 0
    reconnects: int = 0
    chunks: int = 0
    trimmed: int = 0
    errors: list[str] = field(default_factory=list)


class Console:
    """Drives one board console. Starts one background reader thread."""

    def __init__(
        self,
        connection: Connection,
        *,
        name: str = "console",
        log: ConsoleLog | None = None,
        death_strings: Sequence[str] = DEFAULT_DEATH_STRINGS,
        char_delay: float = 0.0,
        window: int = 4096,
        capacity: int = 8 * 1024 * 1024,
        read_size: int = 256 * 1024,
        newline: str = "\n",
        reconnect_timeout: float = 30.0,
        deadline: Deadline | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        self.connection = connection
        self.name = name
        self.log = log if log is not None else ConsoleLog(None, board=name)
        self.death_strings = tuple(death_strings)
        self.char_delay = char_delay
        self.window = max(64, window)
        self.capacity = max(capacity, 4 * self.window)
        self.read_size = read_size
        self.newline = newline
        self.reconnect_timeout = reconnect_timeout
        self.deadline = deadline  # parent of reconnect deadlines (the job), if any
        self.poll_interval = poll_interval
        self.backoff = ReconnectBackoff(connected_at=time.monotonic())
        self.stats = _Stats()
        self._cond = threading.Condition(threading.Lock())
        self._buf = bytearray()
        self._base = 0  # absolute offset of _buf[0]
        self._pos = 0  # absolute offset where the next expect starts
        self._last_rx = time.monotonic()
        self._error: InfrastructureError | None = None
        self._closed = False
        self._close_reason = ""
        self._death_cache: dict[tuple[str, ...], list[bytes]] = {}
        self._waiter: Waiter | None = None
        self._reader = threading.Thread(target=self._read_loop, name=f"console-reader:{name}", daemon=True)
        self._reader.start()

    # -- reader thread ---------------------------------------------------------------------------
    def _read_loop(self) -> None:
        conn, log, cond, buf = self.connection, self.log, self._cond, self._buf
        read_size, poll = self.read_size, self.poll_interval
        while not self._closed:
            lost: ConnectionLost | None = None
            try:
                data = conn.read(read_size, poll)
                if data and len(data) < read_size:
                    data, lost = self._coalesce(data)
            except ConnectionLost as exc:
                data, lost = b"", exc
            except Exception as exc:  # any other failure ends the console, visibly
                self._fail(ConsoleClosed(f"{self.name}: console reader failed: {exc!r}"))
                break
            if lost is None and self.backoff.started and (note := self.backoff.settled(time.monotonic())):
                log.event(note)
            if not data:
                if lost is None:
                    log.flush()
                elif self._closed or not self._reconnect(lost):
                    break
                continue
            log.feed(data)
            with cond:
                buf += data
                self._last_rx = time.monotonic()
                self.stats.bytes_read += len(data)
                self.stats.chunks += 1
                waiter = self._waiter
                # the pending expect() is searched here, in place: its thread sleeps until a hit
                if waiter is None or waiter.scan(buf, self._base, self._pos):
                    cond.notify_all()
                if len(buf) > self.capacity:
                    drop = len(buf) - self.capacity // 2
                    del buf[:drop]
                    self._base += drop
                    self.stats.trimmed += drop
            if lost is not None and (self._closed or not self._reconnect(lost)):
                break
        log.flush()

    def _coalesce(self, data: bytes) -> tuple[bytes, ConnectionLost | None]:
        """``data`` plus what is already waiting (no waiting here): one log/scan pass per batch
        instead of per small chunk when a board streams fast. A loss after some bytes keeps them."""
        parts, total = [data], len(data)
        try:
            while total < self.read_size:
                more = self.connection.read(self.read_size - total, 0.0)
                if not more:
                    break
                parts.append(more)
                total += len(more)
        except ConnectionLost as exc:
            return b"".join(parts), exc
        return (b"".join(parts) if len(parts) > 1 else data), None

    def _reconnect(self, exc: ConnectionLost) -> bool:
        """Reconnect after a loss, paced by :attr:`backoff` (which also decides what is logged: the
        first loss of a burst and a summary now and then, not a line per drop). False: done."""
        delay, note, give_up = self.backoff.lost(str(exc), time.monotonic(), self.reconnect_timeout)
        if note:
            self.log.event(note)
        if give_up:
            self._fail(ConsoleClosed(f"{self.name}: {note}"))
            return False
        if delay > 0:
            with self._cond:
                if self._cond.wait_for(lambda: self._closed, delay):
                    return False
        node = Deadline(self.reconnect_timeout, f"{self.name}/reconnect", self.deadline)
        try:
            self.connection.reconnect(node)
        except Exception as exc2:
            if self._closed:
                return False
            self.log.event(f"console reconnect failed after {node.elapsed:.1f} s: {exc2}")
            self._fail(ConsoleClosed(f"{self.name}: console connection lost ({exc}) and reconnect failed: {exc2}"))
            return False
        self.stats.reconnects += 1
        self.backoff.connected(time.monotonic())
        if not self.backoff.drops:
            self.log.event(f"console reconnected after {node.elapsed:.2f} s (bytes sent meanwhile may be lost)")
        return True

    def _fail(self, error: InfrastructureError) -> None:
        with self._cond:
            self._error = error
            self.stats.errors.append(str(error))
            self._cond.notify_all()

    # -- expect ------------------------------------------------------------------------------------
    def _death_needles(self, strings: tuple[str, ...]) -> list[bytes]:
        needles = self._death_cache.get(strings)
        if needles is None:
            needles = self._death_cache[strings] = [s.encode("utf-8") for s in strings if s]
        return needles

    def expect(
        self,
        patterns: Patterns,
        deadline: Deadline | float | None,
        *,
        inactivity: float | None = None,
        death_strings: Sequence[str] | None = None,
    ) -> ConsoleMatch:
        """Wait for the first of ``patterns`` after the last match/mark.

        ``patterns``: a str regex (a plain string without regex metacharacters is searched as a
        literal), bytes, a compiled pattern, or a list of them; the earliest match wins, ties go to
        the first pattern. A match may span at most ``window`` bytes.
        ``deadline``: a :class:`Deadline` (a child node ``expect …`` is made of it) or seconds.
        Raises :class:`ConsoleTimeout`, :class:`ConsoleInactivity`, :class:`ConsoleDeath`,
        :class:`ConsoleClosed`.
        """
        matchers = as_matchers(patterns)
        if not matchers:
            raise ValueError("expect() needs at least one pattern")
        desc = matchers[0].source if len(matchers) == 1 else "[" + ", ".join(m.source for m in matchers) + "]"
        node = Deadline.coerce(deadline, f"expect {desc}")
        deaths = self._death_needles(tuple(self.death_strings if death_strings is None else death_strings))
        cond = self._cond
        started = time.monotonic()
        with cond:
            if self._waiter is not None:
                raise LavaBug(f"{self.name}: expect() called from two threads at once")
            waiter = Waiter(matchers, deaths, scanned=self._pos, window=self.window)
            waiter.scan(self._buf, self._base, self._pos)  # what already arrived
            self._waiter = waiter
            try:
                while waiter.hit is None:
                    if self._closed:
                        raise ConsoleClosed(
                            f"{node.path}: console {self.name} closed while waiting for {desc}"
                            f"{': ' + self._close_reason if self._close_reason else ''}",
                            details=self._context(locked=True),
                        )
                    if self._error is not None:
                        raise ConsoleClosed(f"{node.path}: {self._error.message}", details=self._context(locked=True))
                    remaining = node.remaining()
                    if remaining <= 0:
                        raise self._timeout(node, desc)
                    wait = remaining
                    if inactivity is not None:
                        silent = time.monotonic() - max(self._last_rx, started)
                        if silent >= inactivity:
                            raise ConsoleInactivity(
                                f"{node.path}: board silent for {silent:.1f} s (inactivity limit {inactivity:g} s)"
                                f" while waiting for {desc} on {self.name}",
                                path=node.path,
                                details=self._context(locked=True),
                            )
                        wait = min(wait, inactivity - silent + 0.001)
                    cond.wait(wait)
            finally:
                self._waiter = None
            hit = waiter.hit
            if hit.index >= 0:
                lo = max(self._pos, self._base)
                before = bytes(self._buf[lo - self._base : max(lo, hit.start) - self._base])
                self._pos = hit.end
                return ConsoleMatch(
                    index=hit.index,
                    match=hit.match,
                    before=before.decode("utf-8", "replace"),
                    start=hit.start,
                    end=hit.end,
                    pattern=matchers[hit.index].source,
                )
            self._die(node, desc, hit.start, hit.end, hit.match.group(0))
            raise LavaBug("unreachable")  # _die raises

    def _die(self, node: Deadline, desc: str, abs_start: int, abs_end: int, death: str) -> None:
        """Raise ConsoleDeath (called with the lock held, no waiter registered)."""
        # give the board a moment to print the rest of the oops/panic, for the message
        gather_until = time.monotonic() + min(0.3, node.remaining())
        while time.monotonic() < gather_until and not self._closed:
            tail = self._buf[abs_end - self._base :] if abs_end >= self._base else b""
            if tail.count(b"\n") >= 12:
                break
            self._cond.wait(gather_until - time.monotonic())
        lo = max(self._base, abs_start - 2048)
        around = bytes(self._buf[lo - self._base : min(len(self._buf), abs_end - self._base + 4096)])
        self._pos = max(self._pos, abs_end)
        lines = clean_text(around).splitlines()
        # the line holding the death string, with a few before and the ones after
        idx = next((i for i, line in enumerate(lines) if death in line), len(lines) - 1)
        excerpt = "\n".join(lines[max(0, idx - 8) : idx + 13])
        first = lines[idx].strip() if lines else death
        raise ConsoleDeath(
            f"{node.path}: {death!r} on console {self.name} while waiting for {desc}: {first}",
            death_string=death,
            details=f"console around it:\n{excerpt}\nconsole log: {self.log.path}",
        )

    def _timeout(self, node: Deadline, desc: str) -> ConsoleTimeout:
        base = node.exceeded(f"waiting for {desc} on {self.name}")
        return ConsoleTimeout(base.message, path=node.path, details=self._context(locked=True))

    def _context(self, lines: int = 20, *, locked: bool = False) -> str:
        tail = self._tail_locked(lines) if locked else self.tail(lines)
        return f"last console lines:\n{tail}\nconsole log: {self.log.path}"

    # -- positions, tail ----------------------------------------------------------------------------
    def mark(self) -> int:
        """Forget everything received so far: the next expect() only sees bytes that come later.
        Returns the absolute stream position."""
        with self._cond:
            self._pos = self._base + len(self._buf)
            return self._pos

    @property
    def position(self) -> int:
        """Where the next expect() starts (absolute stream offset)."""
        return self._pos

    @property
    def received(self) -> int:
        """Total bytes received so far."""
        return self._base + len(self._buf)

    def text_since(self, offset: int) -> str:
        """Console text from absolute ``offset`` (as far as the buffer still holds it)."""
        with self._cond:
            lo = max(offset, self._base)
            data = bytes(self._buf[lo - self._base :])
        return clean_text(data)

    def tail(self, lines: int = 20) -> str:
        """The last ``lines`` console lines as clean text."""
        with self._cond:
            return self._tail_locked(lines)

    def _tail_locked(self, lines: int) -> str:
        data = bytes(self._buf[-max(4096, lines * 200) :])
        return "\n".join(clean_text(data).splitlines()[-lines:])

    @property
    def silent_for(self) -> float:
        return time.monotonic() - self._last_rx

    # -- sending -------------------------------------------------------------------------------------
    def send(self, text: str | bytes, deadline: Deadline | float | None = None) -> None:
        data = text.encode("utf-8") if isinstance(text, str) else text
        node = Deadline.coerce(deadline if deadline is not None else 30.0, "send")
        if self._closed:
            raise ConsoleClosed(f"{self.name}: console closed{': ' + self._close_reason if self._close_reason else ''}")
        if self.char_delay <= 0:
            self._write(data, node)
            return
        for i in range(len(data)):
            self._write(data[i : i + 1], node)
            node.sleep(self.char_delay)

    def _write(self, data: bytes, node: Deadline) -> None:
        remaining = node.remaining()
        if remaining <= 0:
            raise node.exceeded(f"sending to {self.name}")
        try:
            self.connection.write(data, min(remaining, 3600.0))
        except ConnectionLost as exc:
            # the reader reconnects; try once more when it did
            if self._wait_reconnect(node):
                self.connection.write(data, min(node.remaining(), 3600.0))
            else:
                raise ConsoleClosed(f"{node.path}: {exc}") from exc

    def _wait_reconnect(self, node: Deadline) -> bool:
        n = self.stats.reconnects
        end = time.monotonic() + node.remaining_or(self.reconnect_timeout)
        while time.monotonic() < end and not self._closed and self._error is None:
            if self.stats.reconnects > n:
                return True
            time.sleep(0.05)
        return self.stats.reconnects > n

    def sendline(self, text: str = "", deadline: Deadline | float | None = None) -> None:
        self.send(text + self.newline, deadline)

    def sendcontrol(self, char: str, deadline: Deadline | float | None = None) -> None:
        """Send Ctrl-<char>, e.g. ``sendcontrol("c")``."""
        self.send(bytes([ord(char.lower()) & 0x1F]), deadline)

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, reason: str = "") -> None:
        """Close the connection and stop the reader. Safe from any thread (the job watchdog)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._close_reason = reason
            self._cond.notify_all()
        if reason:
            self.log.event(f"console closed: {reason}")
        try:
            self.connection.close()
        finally:
            if self._reader is not threading.current_thread():
                self._reader.join(timeout=self.poll_interval + 2.0)
            self.log.flush()

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Console {self.name} received={self.received} pos={self._pos}>"
