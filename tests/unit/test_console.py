"""The console engine on a scripted fake connection: nothing lost, death strings, silence, drops."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import DROP, ScriptedConnection, make_console

from pytest_lava.console.connections import ConnectionLost, TcpConnection
from pytest_lava.console.engine import (
    ConsoleClosed,
    ConsoleDeath,
    ConsoleInactivity,
    ConsoleTimeout,
)
from pytest_lava.console.log import ConsoleLog, live_printer
from pytest_lava.console.pty import PtyConnection
from pytest_lava.core.deadline import Deadline, DeadlineExceeded, Watchdog


def test_marker_split_across_chunks() -> None:
    conn = ScriptedConnection([(0, b"boot... Hit any k"), (0.05, b"ey to st"), (0.05, b"op autoboot: 2\r\n")])
    with make_console(conn) as con:
        m = con.expect("Hit any key to stop autoboot", 5)
        assert m.before == "boot... "
        assert m.index == 0


def test_regex_groups_read_as_text() -> None:
    conn = ScriptedConnection([(0, b"Linux version 6.1.0-56-amd64 (deb"), (0.02, b"ian)\r\n")])
    with make_console(conn) as con:
        m = con.expect(r"Linux version (\S+) \((\w+)\)", 5)
        assert m.group(1) == "6.1.0-56-amd64"
        assert m.match.groups() == ("6.1.0-56-amd64", "debian")
        assert m.text.startswith("Linux version")


def test_bytes_between_expects_are_not_lost() -> None:
    conn = ScriptedConnection([(0, b"one\r\ntwo\r\nthree\r\n")])
    with make_console(conn) as con:
        time.sleep(0.2)  # everything arrives while nobody is waiting
        assert con.expect("one", 2).before == ""
        assert con.expect("three", 2).before == "\r\ntwo\r\n"
        with pytest.raises(ConsoleTimeout):
            con.expect("one", 0.2)  # consumed: not matched again


def test_earliest_match_wins_and_ties_go_to_first_pattern() -> None:
    conn = ScriptedConnection([(0, b"aaa login: bbb => ")])
    with make_console(conn) as con:
        m = con.expect(["=> ", "login:"], 2)
        assert m.index == 1
        m = con.expect([re.compile(r"=>"), "=> "], 2)
        assert m.index == 0


def test_mark_discards_earlier_output() -> None:
    conn = ScriptedConnection([(0, b"=> old prompt\r\n")])
    with make_console(conn) as con:
        time.sleep(0.15)
        pos = con.mark()
        assert pos == len(b"=> old prompt\r\n")
        conn.feed(b"fresh => ")
        assert con.expect("=> ", 2).before == "fresh "


def test_timeout_message_has_path_last_lines_and_log(tmp_path: Path) -> None:
    log = ConsoleLog(tmp_path / "console.log", board="b1")
    conn = ScriptedConnection([(0, b"line one\r\nline two\r\n")])
    job = Deadline(30, "job").child(None, "boot_linaro_image")
    with make_console(conn, log=log) as con:
        t0 = time.monotonic()
        with pytest.raises(ConsoleTimeout) as info:
            con.expect("=> ", job.child(0.3, "prompt"))
        assert 0.25 < time.monotonic() - t0 < 1.5
    text = str(info.value)
    assert "job/boot_linaro_image/prompt/expect '=> '" in text
    assert "line two" in text
    assert str(tmp_path / "console.log") in text
    assert isinstance(info.value, DeadlineExceeded)


def test_panic_fails_at_once_with_its_text() -> None:
    conn = ScriptedConnection(
        [
            (0, b"$ run-test\r\n"),
            (0.1, b"[   12.3] sysrq: Trigger a crash\r\n[   12.3] Kernel panic - not syncing: sysrq"),
            (0.01, b" triggered crash\r\n[   12.3] CPU: 0 PID: 1 Comm: sh\r\n"),
        ]
    )
    with make_console(conn) as con:
        t0 = time.monotonic()
        with pytest.raises(ConsoleDeath) as info:
            con.expect("never-printed", 60)
        assert time.monotonic() - t0 < 1.5
    err = info.value
    assert err.death_string == "Kernel panic"
    assert "Kernel panic - not syncing: sysrq triggered crash" in str(err)
    assert "CPU: 0 PID: 1" in str(err)  # lines after it are in the details
    assert "sysrq: Trigger a crash" in str(err)  # and lines before


def test_death_strings_can_be_suspended_per_call() -> None:
    conn = ScriptedConnection([(0, b"grep says: Kernel panic in old log\r\nDONE\r\n")])
    with make_console(conn) as con:
        m = con.expect("DONE", 2, death_strings=())
        assert "Kernel panic" in m.before


def test_match_before_a_later_death_string_is_returned_first() -> None:
    conn = ScriptedConnection([(0, b"=> then Kernel panic\r\n")])
    with make_console(conn) as con:
        assert con.expect("=> ", 2).index == 0
        with pytest.raises(ConsoleDeath):
            con.expect("=> ", 2)


def test_custom_death_strings() -> None:
    conn = ScriptedConnection([(0, b"ramdump mode entered\r\n")])
    with make_console(conn, death_strings=["ramdump"]) as con, pytest.raises(ConsoleDeath, match="ramdump"):
        con.expect("login:", 5)


def test_silence_raises_inactivity() -> None:
    conn = ScriptedConnection([(0, b"working\r\n"), (0.1, b"still working\r\n")])
    with make_console(conn) as con:
        t0 = time.monotonic()
        with pytest.raises(ConsoleInactivity) as info:
            con.expect("done", 30, inactivity=0.5)
        elapsed = time.monotonic() - t0
    assert 0.5 <= elapsed < 1.5
    assert "silent" in str(info.value) and "still working" in str(info.value)


def test_output_keeps_inactivity_watchdog_quiet() -> None:
    script = [(0.1, b"tick\r\n")] * 8 + [(0.1, b"done\r\n")]
    with make_console(ScriptedConnection(script)) as con:
        con.expect("done", 10, inactivity=0.4)


def test_dropped_connection_reconnects_and_is_logged(tmp_path: Path) -> None:
    log = ConsoleLog(tmp_path / "console.log", board="b1")
    conn = ScriptedConnection([(0, b"before drop\r\n"), (0.05, DROP), (0.05, b"after drop => ")])
    with make_console(conn, log=log) as con:
        m = con.expect("=> ", 5)
        assert "after drop" in m.before
        assert conn.reconnects == 1 and con.stats.reconnects == 1
    log.close()
    text = (tmp_path / "console.log").read_text()
    assert "console connection lost" in text and "console reconnected" in text


def test_failed_reconnect_ends_waits_with_a_clear_error() -> None:
    conn = ScriptedConnection([(0.05, DROP)], reconnect_fails=True)
    with make_console(conn) as con, pytest.raises(ConsoleClosed, match="reconnect failed"):
        con.expect("=> ", 5)


def test_watchdog_ends_a_blocked_expect() -> None:
    conn = ScriptedConnection()
    con = make_console(conn)
    dog = Watchdog(Deadline(0.3, "job"))
    dog.add_closer(lambda: con.close("job deadline passed"))
    with dog:
        t0 = time.monotonic()
        with pytest.raises(ConsoleClosed, match="job deadline passed"):
            con.expect("=> ", 60)  # its own deadline knows nothing of the job
        assert time.monotonic() - t0 < 2
    assert dog.fired


def test_send_char_delay_and_control() -> None:
    conn = ScriptedConnection()
    with make_console(conn, char_delay=0.01) as con:
        t0 = time.monotonic()
        con.sendline("abc")
        assert time.monotonic() - t0 >= 0.035
        con.sendcontrol("c")
    assert conn.writes == [b"a", b"b", b"c", b"\n", b"\x03"]


def test_buffer_is_bounded_and_matching_still_works() -> None:
    junk = b"x" * 1000 + b"\r\n"
    conn = ScriptedConnection([(0, junk)] * 3000 + [(0, b"THE END\r\n")])
    with make_console(conn, capacity=256 * 1024, window=256) as con:
        m = con.expect("THE END", 10)
        assert con.stats.trimmed > 0
        assert len(con._buf) <= 256 * 1024
        assert m.end == con.received - 2


def test_log_has_timestamped_lines_and_events(tmp_path: Path) -> None:
    lines: list[str] = []
    log = ConsoleLog(tmp_path / "c.log", board="b1", live=lines.append)
    conn = ScriptedConnection([(0, b"hello wo"), (0.05, b"rld\r\nsecond line\r\npartial")])
    with make_console(conn, log=log) as con:
        con.expect("partial", 2)
        log.event("power on: ['true'] -> 0")
    log.close()
    text = (tmp_path / "c.log").read_text().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} hello world", text[1])
    assert text[2].endswith(" second line")
    assert text[3].endswith(" partial")
    assert text[4].endswith("[lava] power on: ['true'] -> 0")
    assert lines[:2] == ["hello world", "second line"]


def test_live_printer_prefixes_whole_lines() -> None:
    import io

    out = io.StringIO()
    emit = live_printer("x86-01", out)
    threads = [threading.Thread(target=lambda: [emit("a line") for _ in range(200)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out.getvalue().splitlines() == ["[x86-01] a line"] * 800


def test_tcp_connection_reconnects_to_a_restarted_server(tmp_path: Path) -> None:
    """A real TCP console: the server goes away and comes back on the same port (a power cycle)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    srv.listen(1)

    def serve(s: socket.socket, text: bytes) -> None:
        c, _ = s.accept()
        c.sendall(text)
        time.sleep(0.1)
        c.close()
        s.close()

    threading.Thread(target=serve, args=(srv, b"first boot\r\n"), daemon=True).start()
    conn = TcpConnection("127.0.0.1", port)
    conn.connect(Deadline(5, "connect"))
    log = ConsoleLog(tmp_path / "c.log")
    with make_console(conn, log=log) as con:  # type: ignore[arg-type]
        con.expect("first boot", 5)
        time.sleep(0.3)
        srv2 = socket.socket()
        srv2.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv2.bind(("127.0.0.1", port))
        srv2.listen(1)
        threading.Thread(target=serve, args=(srv2, b"second boot => "), daemon=True).start()
        con.expect("second boot", 5)
        assert con.stats.reconnects >= 1


@pytest.fixture
def tcp_console() -> Iterator[tuple[TcpConnection, socket.socket]]:
    """A TcpConnection to a local server that never sends, and its real socket."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    conn = TcpConnection("127.0.0.1", srv.getsockname()[1])
    conn.connect(Deadline(5, "connect"))
    peer, _ = srv.accept()
    assert conn._sock is not None
    yield conn, conn._sock
    peer.close()
    srv.close()


def test_tcp_read_ends_when_the_socket_is_closed_between_recv_and_poll(
        tcp_console: tuple[TcpConnection, socket.socket]) -> None:
    """The job's end closes the console from another thread; a close that lands after the
    reader's recv and before its poll must end the read, not leave it waiting out its timeout
    (a closed socket's fileno() is -1, which poll() ignores)."""
    conn, real = tcp_console

    class ClosedAfterRecv:
        """The real socket, closed by "another thread" right after its recv found nothing."""

        def fileno(self) -> int:
            return real.fileno()

        def recv(self, n: int) -> bytes:
            if real.fileno() >= 0:
                real.close()
                raise BlockingIOError
            return real.recv(n)

    conn._sock = ClosedAfterRecv()  # type: ignore[assignment]
    with pytest.raises(ConnectionLost):
        conn.read(1024, 60.0)  # before the fix: poll(-1), a ValueError out of the reader


def test_tcp_close_from_another_thread_ends_a_waiting_read(
        tcp_console: tuple[TcpConnection, socket.socket], monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's end closes the console while its reader waits in read(): the read ends with
    ConnectionLost at once, woken by the connection's eventfd, even when the socket's shutdown()
    wakes nothing (as seen at the end of real QEMU runs)."""
    from pytest_lava.console import connections

    conn, real = tcp_console

    class NoWakingShutdown:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def shutdown(self, how: int) -> None:
            pass  # the poll is left to the eventfd

    conn._sock = NoWakingShutdown()  # type: ignore[assignment]
    polling = threading.Event()
    wait_fd = connections._wait_fd

    def noted_wait_fd(*args: object, **kwargs: object) -> bool:
        polling.set()
        return wait_fd(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(connections, "_wait_fd", noted_wait_fd)
    outcome: list[object] = []

    def reader() -> None:
        try:
            outcome.append(conn.read(1024, 600.0))
        except ConnectionLost as exc:
            outcome.append(exc)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert polling.wait(60)
    time.sleep(0.05)  # inside poll() by now (were it not, the read still sees the close)
    conn.close()
    thread.join(60)  # a generous bound: without the wake-up the read would last 600 s
    assert not thread.is_alive()
    assert isinstance(outcome[0], ConnectionLost)


def test_pty_command_connection(tmp_path: Path) -> None:
    conn = PtyConnection(["sh", "-c", "echo ready; read line; echo got:$line"])
    conn.connect(Deadline(5, "connect"))
    pid = conn.pid
    assert pid
    con = make_console(conn)  # type: ignore[arg-type]
    con.reconnect_timeout = 0.5
    try:
        con.expect("ready", 5)
        con.sendline("hello")
        con.expect("got:hello", 5)
    finally:
        con.close()
    import os

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
