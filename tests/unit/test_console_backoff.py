"""A console that answers and drops at once (ser2net "Device open failure"): reconnects back off,
the log gets a line per burst, not per drop, and the bytes read just before a drop are kept."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from fakes import DROP, ScriptedConnection, make_console

from pytest_lava.console.backoff import ReconnectBackoff
from pytest_lava.console.connections import TcpConnection
from pytest_lava.console.engine import ConsoleClosed
from pytest_lava.console.log import ConsoleLog
from pytest_lava.console.pty import PtyConnection, _kill_process, kill_process
from pytest_lava.core.deadline import Deadline

FAILURE = b"\r\nDevice open failure: Device or resource busy\r\n"


class DroppingServer:
    """A console server on 127.0.0.1 that answers each connection with FAILURE and hangs up, until
    ``working`` is set; then it serves ``b"board up => "`` and keeps the connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.working = threading.Event()
        self.stop = threading.Event()
        self.kept: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        end = time.monotonic() + 60.0  # bounded whatever happens
        while not self.stop.is_set() and time.monotonic() < end:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            if self.working.is_set():
                conn.sendall(b"board up => ")
                self.kept.append(conn)
            else:
                conn.sendall(FAILURE)
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5.0)
        for c in self.kept:
            c.close()
        self.sock.close()


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    srv = DroppingServer()
    yield srv
    srv.close()


def _events(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if "console connection" in line or "reconnected" in line]


def test_backoff_delays_double_up_to_a_cap_and_a_steady_connection_resets_them() -> None:
    b = ReconnectBackoff(first=0.05, maximum=2.0, stable=5.0)
    t = 100.0
    delays = []
    for _ in range(9):
        delay, _note, give_up = b.lost("gone", t, 600.0)
        assert not give_up
        delays.append(delay)
        t += delay + 0.01
        b.connected(t)
    assert delays == [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert b.settled(t + 1.0) == ""  # still in the burst
    note = b.settled(t + 5.0)
    assert note.startswith("console connection steady again after 9 losses")
    assert b.lost("gone again", t + 6.0, 600.0)[0] == 0.0  # a new burst starts at once


def test_a_console_server_that_drops_at_once_is_paced_and_logged_per_burst(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    conn = TcpConnection("127.0.0.1", server.port)
    conn.connect(Deadline(5, "connect"))
    log = ConsoleLog(tmp_path / "console.log")
    with make_console(conn, log=log, reconnect_timeout=60.0) as con:  # type: ignore[arg-type]
        con.backoff.stable = 0.5
        time.sleep(1.5)  # unpaced, this was thousands of reconnects (and two log lines each)
        drops = server.accepted
        server.working.set()
        con.expect("board up => ", 10.0)  # it comes back by itself, within the 2 s cap
        assert con.stats.reconnects >= 3
        time.sleep(1.0)  # the connection stays: the burst ends
    log.close()
    events = _events(tmp_path / "console.log")
    print(f"{drops} connections in 1.5 s; {len(events)} log events: {events}")
    assert drops <= 12  # 0 + 0.05 + 0.1 + 0.2 + 0.4 + 0.8 s: about 6
    assert len(events) <= 4, events
    assert any("steady again after" in e for e in events), events
    assert "Device open failure" in (tmp_path / "console.log").read_text()


def test_a_console_that_never_stays_up_gives_up_after_the_reconnect_timeout(server) -> None:  # type: ignore[no-untyped-def]
    conn = TcpConnection("127.0.0.1", server.port)
    conn.connect(Deadline(5, "connect"))
    with make_console(conn, reconnect_timeout=1.0) as con, \
            pytest.raises(ConsoleClosed, match="keeps dropping: .* losses in"):  # type: ignore[arg-type]
        con.expect("board up => ", 30.0)


def test_a_pty_console_command_that_exits_at_once_is_paced(tmp_path: Path) -> None:
    """``telnet localhost 7001`` to a port whose device cannot be opened: prints and exits."""
    marker = tmp_path / "starts"
    conn = PtyConnection(["sh", "-c", f"echo start >> {marker}; echo 'Device open failure'"])
    conn.connect(Deadline(5, "connect"))
    with make_console(conn, reconnect_timeout=60.0) as con:  # type: ignore[arg-type]
        con.expect("Device open failure", 5.0)
        time.sleep(1.5)
    starts = len(marker.read_text().splitlines())
    print(f"console command started {starts} times in ~1.5 s")
    assert 2 <= starts <= 12


def test_bytes_read_just_before_a_drop_are_kept() -> None:
    conn = ScriptedConnection([(0.05, b"Device open failure\r\n"), (0.0, DROP), (0.05, b"=> ")])
    with make_console(conn) as con:
        assert "Device open failure" in con.expect("=> ", 5.0).before


def test_kill_process_is_public_and_the_old_name_still_works() -> None:
    assert _kill_process is kill_process


def test_kill_process_waits_for_a_process_that_takes_time_to_exit() -> None:
    """The wait (a pidfd) lasts until the process has exited and returns its status."""
    import subprocess

    proc = subprocess.Popen(["sh", "-c", "trap 'sleep 0.2; exit 3' TERM; while :; do sleep 0.01; done"],
                            start_new_session=True)
    time.sleep(0.2)  # the trap is set
    start = time.monotonic()
    status = kill_process(proc, grace=5.0)
    took = time.monotonic() - start
    assert status in (3, -15)  # the shell's trap, or SIGTERM if it came before the trap was set
    assert took < 1.0 and proc.returncode == status


def test_kill_process_escalates_to_sigkill_after_the_grace() -> None:
    import subprocess

    proc = subprocess.Popen(["sh", "-c", "trap '' TERM; while :; do sleep 0.01; done"], start_new_session=True)
    time.sleep(0.2)
    start = time.monotonic()
    assert kill_process(proc, grace=0.3) == -9
    assert 0.3 <= time.monotonic() - start < 2.0
