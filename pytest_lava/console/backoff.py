"""How a console that keeps dropping is reconnected, and what is logged of it (the console
engine's reader thread asks :class:`ReconnectBackoff` at each loss)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReconnectBackoff:
    """Pacing of a console that keeps dropping (a console server that answers and hangs up at once,
    ser2net's "Device open failure"): the first loss after a working connection is reconnected at
    once; each further loss within a burst waits ``first`` seconds, doubling up to ``maximum``.
    A connection that lived ``stable`` seconds ends the burst. It also says what to log: the first
    loss, a summary every ``remind`` seconds, the end of the burst; never a line per drop."""

    first: float = 0.05
    maximum: float = 2.0
    stable: float = 5.0
    remind: float = 30.0
    started: float = 0.0  # monotonic start of the current burst; 0: no burst
    drops: int = 0  # losses in this burst after its first
    connected_at: float = 0.0
    last_error: str = ""
    _noted: float = 0.0

    def lost(self, error: str, now: float, give_up_after: float) -> tuple[float, str, bool]:
        """A connection was lost at ``now``: (seconds to wait before reconnecting, a line to log or
        "", give up: the connection has not stayed up for ``give_up_after`` seconds)."""
        self.last_error = error
        if not self.started or now - self.connected_at >= self.stable:
            self.started, self.drops, self._noted = now, 0, now
            return 0.0, f"console connection lost: {error}; reconnecting (up to {give_up_after:g} s)", False
        self.drops += 1
        if now - self.started > give_up_after:
            return 0.0, f"console connection keeps dropping: {self.summary(now)}; giving up", True
        note = ""
        if now - self._noted >= self.remind:
            note, self._noted = f"console connection still dropping: {self.summary(now)}", now
        return min(self.maximum, self.first * 2 ** (self.drops - 1)), note, False

    def connected(self, now: float) -> None:
        self.connected_at = now

    def settled(self, now: float) -> str:
        """Once the connection of a burst has lived ``stable`` seconds the burst ends: a line to log
        if it had repeated drops, else ""."""
        if not self.started or now - self.connected_at < self.stable:
            return ""
        note = f"console connection steady again after {self.summary(self.connected_at)}" if self.drops else ""
        self.started = 0.0
        return note

    def summary(self, now: float) -> str:
        return f"{self.drops + 1} losses in {now - self.started:.1f} s (last: {self.last_error})"
