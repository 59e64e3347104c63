"""A console closed by another thread while a write waits must not write to whatever file the
freed descriptor number names next (another board's console): the write fails instead."""

from __future__ import annotations

import errno
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


def test_a_socket_console_closed_during_a_write_writes_nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = socket.socketpair()
    conn = TcpConnection.over(ours, name="board-a")
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
        theirs.close()
        for s in got[0] if got else ():
            s.close()


def test_a_pty_console_closed_during_a_write_writes_nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = PtyConnection([sys.executable, "-c", "import time; time.sleep(30)"], name="board-a")
    conn.connect(Deadline(10, "connect"))
    got: list = []
    _close_during_wait(monkeypatch, conn.close, got)
    try:
        with pytest.raises(ConnectionLost, match="board-a"):
            conn.write(b"reboot\n", 1.0)
        other = got[0]
        other[1].setblocking(False)
        with pytest.raises(BlockingIOError):
            other[1].recv(100)
        assert conn.proc is None  # the command was killed by PID at the close
    finally:
        conn.close()
        for s in got[0] if got else ():
            s.close()


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
