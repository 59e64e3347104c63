"""The adb layer (pytest_lava/android/adb.py) against a FAKE adb client+server (tests/unit/fake_adb.py):
one server per job on its own port, parsing adb's answers, every call within its deadline, and
the faults: adb missing, adbd refusing, boot never completing, a failing push, a hanging command,
the server gone. The real client against the lab's adbd is tested in test_android_real.py."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from pytest_lava.android.adb import (
    RESERVED_PORTS,
    AdbError,
    AdbMissing,
    AdbServer,
    AdbTimeout,
    BootNotCompleted,
    client_error,
    find_adb,
    free_port,
    parse_connect,
)
from pytest_lava.core.deadline import Deadline

FAKE = Path(__file__).with_name("fake_adb.py")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.fixture
def fake_adb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``adb`` executable running fake_adb.py, its state under tmp_path/adb."""
    home = tmp_path / "adb"
    monkeypatch.setenv("FAKE_ADB", str(home))
    exe = tmp_path / "bin" / "adb"
    exe.parent.mkdir()
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE} \"$@\"\n")
    exe.chmod(0o755)
    return exe


def set_state(exe: Path, **state: object) -> None:
    home = Path(os.environ["FAKE_ADB"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "state.json").write_text(json.dumps(state))


@pytest.fixture
def server(fake_adb: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    notes: list[str] = []
    srv = AdbServer(str(fake_adb), log=notes.append, log_path=tmp_path / "adb-server.log")
    srv.start(Deadline(20, "test"))
    yield srv
    srv.stop()


def test_connect_answers_are_parsed() -> None:
    assert parse_connect("connected to 127.0.0.1:7301\n", "127.0.0.1:7301") == "127.0.0.1:7301"
    assert parse_connect("already connected to 127.0.0.1:7301", "x") == "127.0.0.1:7301"
    for bad in ("failed to connect to '127.0.0.1:7301': Connection refused", "unable to connect to 1.2.3.4:5555",
                ""):
        with pytest.raises(AdbError, match="adb connect 127.0.0.1:7301 failed"):
            parse_connect(bad, "127.0.0.1:7301")
    assert client_error("error: device '127.0.0.1:7301' not found") == "error: device '127.0.0.1:7301' not found"
    assert client_error("adb: error: failed to get feature set: device offline") is not None
    assert client_error("error: failed to open /data/x: No such file") is None  # a test's own output
    assert client_error("my test printed: error: 42 is odd") is None


def test_free_port_avoids_adb_ports() -> None:
    for _ in range(20):
        port = free_port()
        assert port not in RESERVED_PORTS and port > 0


def test_missing_adb_is_a_clear_infrastructure_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AdbMissing, match="apt-get install adb"):
        find_adb()
    with pytest.raises(AdbMissing):
        AdbServer()


def test_one_server_per_job_on_its_own_port_stopped_by_pid(fake_adb: Path, tmp_path: Path) -> None:
    a = AdbServer(str(fake_adb)).start(Deadline(20, "a"))
    b = AdbServer(str(fake_adb)).start(Deadline(20, "b"))
    try:
        assert a.port != b.port and a.proc and b.proc and a.proc.pid != b.proc.pid
        assert a.env["ADB_SERVER_SOCKET"] == f"tcp:127.0.0.1:{a.port}"
        assert a.argv("devices")[1:3] == ["-P", str(a.port)]
    finally:
        pids = [s.proc.pid for s in (a, b) if s.proc]
        a.stop()
        b.stop()
    assert not any(pid_alive(p) for p in pids)
    a.stop()  # idempotent


def test_shell_push_pull_getprop_and_boot_completed(server: AdbServer, tmp_path: Path) -> None:
    dev = server.connect("127.0.0.1:7301", Deadline(20, "connect"))
    assert dev.serial == "127.0.0.1:7301"
    node = Deadline(20, "calls")
    assert dev.shell("echo hi; exit 3", node).status == 3  # shell v2: the remote exit status
    assert dev.shell("echo hi", node).output.strip() == "hi"
    with pytest.raises(AdbError, match="exit status 1"):
        dev.check("false", node)
    local = tmp_path / "five.bin"
    local.write_bytes(os.urandom(5 * 1024 * 1024))
    dev.push(local, "/data/local/tmp/five.bin", node)
    back = tmp_path / "back.bin"
    dev.pull("/data/local/tmp/five.bin", back, node)
    assert back.read_bytes() == local.read_bytes()
    assert dev.getprop("ro.build.version.release", node) == "lab-fake"
    dev.wait_boot_completed(node)  # sys.boot_completed is 1: returns, BootNotCompleted otherwise
    lines: list[str] = []
    assert dev.stream("echo one; echo two; exit 4", node, lines.append) == 4
    assert lines == ["one", "two"]


def test_adbd_not_answering(server: AdbServer, fake_adb: Path) -> None:
    set_state(fake_adb, connect="refuse")
    with pytest.raises(AdbError, match="Connection refused"):
        server.connect("127.0.0.1:7301", Deadline(10, "connect"))


def test_boot_never_completing_ends_within_its_deadline(server: AdbServer, fake_adb: Path) -> None:
    dev = server.connect("127.0.0.1:7301", Deadline(10, "connect"))
    set_state(fake_adb, boot_completed="0")
    start = time.monotonic()
    with pytest.raises(BootNotCompleted, match=r"did not complete its boot .*\(last: ") as info:
        dev.wait_boot_completed(Deadline(2.5, "boot"), interval=0.3)
    # the last poll's answer, or (on a loaded machine) that poll cut short by the deadline
    assert "sys.boot_completed='0'" in info.value.message or "did not end within" in info.value.message
    assert time.monotonic() - start < 20  # the deadline, not the 300 s default; no speed assumed


def test_failing_push_names_both_paths(server: AdbServer, fake_adb: Path, tmp_path: Path) -> None:
    dev = server.connect("127.0.0.1:7301", Deadline(10, "connect"))
    set_state(fake_adb, push="fail")
    (tmp_path / "x.sh").write_text("true\n")
    with pytest.raises(AdbError, match=r"push x.sh -> /data/x.sh on 127.0.0.1:7301 failed") as info:
        dev.push(tmp_path / "x.sh", "/data/x.sh", Deadline(10, "push"))
    assert "No space left" in info.value.details


def test_hanging_command_is_killed_at_its_deadline(server: AdbServer) -> None:
    dev = server.connect("127.0.0.1:7301", Deadline(10, "connect"))
    start = time.monotonic()
    lines: list[str] = []
    with pytest.raises(AdbTimeout, match="did not end before the deadline"):
        dev.stream("echo started; sleep 30", Deadline(1.5, "hang"), lines.append)
    assert time.monotonic() - start < 25 and lines == ["started"]  # not the 30 s sleep
    with pytest.raises(AdbTimeout, match="did not end within"):
        dev.shell("sleep 30", Deadline(1.0, "hang"))


def test_server_gone_is_a_clear_error(server: AdbServer) -> None:
    dev = server.connect("127.0.0.1:7301", Deadline(10, "connect"))
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait()
    with pytest.raises(AdbError, match=r"adb server \(port \d+, pid \d+\) is gone"):
        dev.shell("true", Deadline(5, "after"))
    with pytest.raises(AdbError, match="is gone"):
        dev.wait_boot_completed(Deadline(5, "boot"))
