"""A console closed by another thread while a write waits must not write to whatever file the
freed descriptor number names next (another board's console): the write fails instead."""

from __future__ import annotations

import errno
import os
import socket
import sys

import pytest

from pytest_lava.console import connections
from pytest_lava.console.connections import ConnectionLost, TcpConnection
from pytest_lava.console.pty import PtyConnection
from pytest_lava.core.deadline import Deadline


def _reuse(fd: int) -> tuple[socket.socket, socket.socket]:
    """A new socket pair whose first end has the descriptor number ``fd`` (just freed)."""
    spare = []
    try:
        while True:
            pair = socket.socketpair()
            if pair[0].fileno() == fd:
                return pair
            spare += pair
            if len(spare) > 64:
                pytest.skip(f"descriptor {fd} was not reused")
    finally:
        for s in spare:
            s.close()


def _close_during_wait(monkeypatch: pytest.MonkeyPatch, close, got: list) -> None:  # type: ignore[no-untyped-def]
    """The write's wait for a writable descriptor: meanwhile another thread closes the console,
    and the next console opened gets the same descriptor number."""
    real = connections._wait_fd

    def wait(fd: int, timeout: float, write: bool = False, wake: int = -1) -> bool:
        if write and not got:
            close()
            got.append(_reuse(fd))
        return real(fd, timeout, write, wake)

    monkeypatch.setattr(connections, "_wait_fd", wait)


def _write_reaches_nobody(monkeypatch: pytest.MonkeyPatch, conn) -> None:  # type: ignore[no-untyped-def]
    """A write whose console another thread closes (and another board's console reopens on the
    same number) fails, and nothing reaches that other console."""
    got: list = []
    _close_during_wait(monkeypatch, conn.close, got)
    try:
        with pytest.raises(ConnectionLost, match="board-a"):
            conn.write(b"reboot\n", 1.0)
        other = got[0]
        other[1].setblocking(False)
        with pytest.raises(BlockingIOError):
            other[1].recv(100)  # nothing reached board B's console
    finally:
        for s in got[0] if got else ():
            s.close()


def test_a_socket_console_closed_during_a_write_writes_nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = socket.socketpair()
    try:
        _write_reaches_nobody(monkeypatch, TcpConnection.over(ours, name="board-a"))
    finally:
        theirs.close()


def test_a_pty_console_closed_during_a_write_writes_nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = PtyConnection([sys.executable, "-c", "import time; time.sleep(30)"], name="board-a")
    conn.connect(Deadline(10, "connect"))
    try:
        _write_reaches_nobody(monkeypatch, conn)
        assert conn.proc is None  # the command was killed by PID at the close
    finally:
        conn.close()


def test_a_pty_console_read_after_a_close_reads_nothing_of_another_console() -> None:
    conn = PtyConnection([sys.executable, "-c", "import time; time.sleep(30)"], name="board-a")
    conn.connect(Deadline(10, "connect"))
    fd = conn._fd
    conn.close()
    other = _reuse(fd)
    try:
        other[1].sendall(b"board B's boot log")
        with pytest.raises(OSError) as raised:  # read() turns it into ConnectionLost
            conn._read_nonempty(fd, 100, 0.1)  # a reader that took the number before the close
        assert raised.value.errno == errno.EBADF
        assert other[0].recv(100) == b"board B's boot log"
    finally:
        for s in other:
            s.close()


def test_a_local_serial_console_closed_during_a_blocked_write_gives_way() -> None:
    """A write waiting for room on a local tty (nobody reads the other side) holds the tty's lock;
    a close from another thread cancels it instead of waiting out the write's timeout, and the
    write ends without touching the freed descriptor."""
    import pty
    import threading
    import time

    from pytest_lava.console.connections import SerialConnection

    master, slave = pty.openpty()
    try:
        conn = SerialConnection(os.ttyname(slave), name="board-a")
        conn.connect(Deadline(10, "open"))
        outcome: list[object] = []

        def write() -> None:
            try:
                conn.write(b"x" * (1 << 20), 60.0)  # far more than a pty buffers
                outcome.append("returned")
            except Exception as exc:  # noqa: BLE001 - whatever it is, the test names it
                outcome.append(exc)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        time.sleep(0.3)
        assert not outcome, outcome  # still waiting for room
        started = time.monotonic()
        conn.close()
        writer.join(10)
        assert time.monotonic() - started < 5, "close() waited for the blocked write"
        assert outcome and (outcome[0] == "returned" or isinstance(outcome[0], ConnectionLost)), outcome
        with pytest.raises(ConnectionLost):
            conn.write(b"more", 1.0)
    finally:
        os.close(master)
        os.close(slave)


def test_a_pty_console_closed_while_it_reconnects_leaves_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader thread's reconnect starts the console command again; the job's end closes the
    console meanwhile: the new command is killed by PID, not left holding the console server."""
    import subprocess

    from pytest_lava.console import pty as pty_module

    conn = PtyConnection([sys.executable, "-c", "import time; time.sleep(30)"], name="board-a")
    started: list[subprocess.Popen[bytes]] = []
    real = subprocess.Popen

    def popen(*args, **kwargs):  # type: ignore[no-untyped-def]
        proc = real(*args, **kwargs)
        started.append(proc)
        conn.close()  # another thread, between the start and the hand-over
        return proc

    monkeypatch.setattr(pty_module.subprocess, "Popen", popen)
    with pytest.raises(ConnectionLost, match="closed"):
        conn.connect(Deadline(10, "reconnect"))
    assert started and started[0].wait(timeout=10) is not None  # killed, reaped
    assert conn.proc is None and conn._fd == -1
