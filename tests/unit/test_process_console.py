"""ProcessConnection on a socket pair: the console of a process we start (QEMU's -chardev fd=)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_lava.console.connections import ConnectionLost
from pytest_lava.console.log import ConsoleLog
from pytest_lava.console.pty import ProcessConnection, console_pair
from pytest_lava.core.deadline import Deadline

# a stand-in for QEMU: talks on the inherited descriptor, answers one line, closes it, lives on
BOARD = """
import os, sys, time
fd = int(sys.argv[1])
os.write(fd, b"board ready\\n")
line = b""
while not line.endswith(b"\\n"):
    line += os.read(fd, 100)
os.write(fd, b"got " + line)
os.close(fd)
time.sleep(60)
"""


def read_until(conn: ProcessConnection, needle: bytes, limit: float = 10.0) -> bytes:
    got, end = b"", time.monotonic() + limit
    while needle not in got:
        assert time.monotonic() < end, got
        got += conn.read(4096, 0.5)
    return got


def test_the_process_talks_on_its_end_of_the_pair(tmp_path: Path) -> None:
    pair = console_pair()
    log = ConsoleLog(tmp_path / "console.log", board="b1")
    conn = ProcessConnection([sys.executable, "-c", BOARD, str(pair[1].fileno())], socket_pair=pair,
                             name="b1 board", output=tmp_path / "out.log", log=log)
    try:
        conn.connect(Deadline(10, "connect"))
        assert pair[1].fileno() == -1  # our copy of the process's end is closed: its exit ends the console
        assert b"board ready" in read_until(conn, b"board ready\n")
        conn.write(b"hello\n", 5)
        assert b"got hello" in read_until(conn, b"got hello\n")
        with pytest.raises(ConnectionLost):  # the process closed its end
            read_until(conn, b"never")
        with pytest.raises(ConnectionLost, match="closed its console socket; not restarting it; its output: .*out.log"):
            conn.reconnect(Deadline(5, "reconnect"))
        assert conn.proc is not None and conn.proc.poll() is None
    finally:
        conn.close()
    assert conn.proc.poll() is not None  # killed by PID on close
    assert "started " in (tmp_path / "console.log").read_text()


def test_a_process_that_cannot_start_closes_both_ends(tmp_path: Path) -> None:
    pair = console_pair()
    conn = ProcessConnection([str(tmp_path / "no-such-qemu"), "x"], socket_pair=pair, name="b2")
    with pytest.raises(Exception, match="cannot start"):
        conn.connect(Deadline(5, "connect"))
    assert pair[0].fileno() == -1 and pair[1].fileno() == -1


def test_the_pair_stays_above_the_standard_descriptors_when_they_are_closed() -> None:
    """Started with 0-2 closed, socketpair() hands those out; the child's stdio set-up would
    replace QEMU's end before QEMU opened it."""
    code = ("import os, sys\n"
            "for fd in (0, 1, 2):\n    os.close(fd)\n"
            "from pytest_lava.console.pty import console_pair\n"
            "ours, theirs = console_pair()\n"
            "theirs.sendall(b'ok')\n"
            "got = ours.recv(2)\n"
            "os._exit(0 if ours.fileno() > 2 and theirs.fileno() > 2 and got == b'ok' else 3)\n")
    done = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert done.returncode == 0
