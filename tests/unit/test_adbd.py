"""The lab's adbd (lab/adbd/adbd.c), built and run natively, driven by the real Debian ``adb`` client.

Each test gets its own adb server (``adb -P <port>``), killed in teardown, and its own daemon.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_lava.testing.adbd import Adbd, adbd_fixture, free_port, running_adbd

ADB = shutil.which("adb")
pytestmark = [
    pytest.mark.skipif(ADB is None, reason="the adb client is not installed (Debian: apt-get install adb; make deps)"),
    pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) to build lab/adbd/adbd.c"),
]

device = adbd_fixture()


@dataclass
class Client:
    port: int
    serial: str
    home: Path

    def run(self, *args: str, timeout: float = 30, stdin: bytes | None = None,
            serial: bool = True) -> subprocess.CompletedProcess[bytes]:
        argv = [str(ADB), "-P", str(self.port), *(["-s", self.serial] if serial else []), *args]
        return subprocess.run(argv, capture_output=True, timeout=timeout, input=stdin if stdin is not None else b"",
                              env={**os.environ, "HOME": str(self.home)}, check=False)

    def ok(self, *args: str, timeout: float = 30) -> str:
        done = self.run(*args, timeout=timeout)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout.decode()


@pytest.fixture
def adb(device: Adbd, tmp_path: Path) -> Iterator[Client]:
    (tmp_path / "home").mkdir()
    client = Client(free_port(), device.serial, tmp_path / "home")
    try:
        client.run("start-server", serial=False)
        out = client.run("connect", device.serial, serial=False).stdout.decode()
        assert f"connected to {device.serial}" in out
        yield client
    finally:
        client.run("kill-server", serial=False, timeout=10)


def test_devices_lists_the_banner(adb: Client) -> None:
    out = adb.run("devices", "-l", serial=False).stdout.decode()
    line = next(line for line in out.splitlines() if line.startswith(adb.serial))
    assert line.split()[1] == "device"
    # adb writes a banner's "-" as "_"
    assert "product:lab_arm64" in line and "model:lab_arm64_virt" in line and "device:lab_arm64" in line
    assert "emulator-" not in out  # the daemon is outside the probed 5555-5585 range
    assert adb.ok("get-state").strip() == "device"


def test_getprop_setprop_through_shell(adb: Client, device: Adbd) -> None:
    assert adb.ok("shell", "getprop", "ro.build.version.release").strip() == "4.0.4"
    assert adb.ok("shell", "getprop", "sys.boot_completed").strip() == "1"
    listing = adb.ok("shell", "getprop")
    assert "[ro.product.model]: [lab-arm64-virt]" in listing.splitlines()
    adb.ok("shell", "setprop debug.lab 'hello world'")  # adb joins argv with spaces
    assert device.getprop("debug.lab") == "hello world"
    assert adb.ok("shell", "getprop", "debug.lab").strip() == "hello world"
    ro = adb.run("shell", "setprop", "ro.build.version.release", "99")
    assert ro.returncode == 1 and b"failed to set property" in ro.stderr
    assert adb.ok("shell", "getprop", "no.such.prop", "dflt").strip() == "dflt"


def test_shell_v2_exit_status_and_streams(adb: Client) -> None:
    assert adb.run("shell", "false").returncode == 1
    assert adb.run("shell", "true").returncode == 0
    done = adb.run("shell", "echo out; echo err >&2; exit 7")
    assert (done.returncode, done.stdout, done.stderr) == (7, b"out\n", b"err\n")
    assert adb.run("shell", "kill -9 $$").returncode == 137
    assert adb.run("shell", "cat", stdin=b"via stdin\n").stdout == b"via stdin\n"
    # no command: a shell reading its commands from stdin
    assert adb.run("shell", stdin=b"echo interactive; exit 3\n").returncode == 3


def test_push_pull_5mb_identical(adb: Client, device: Adbd, tmp_path: Path) -> None:
    src = tmp_path / "5mb.bin"
    src.write_bytes(os.urandom(5 * 1024 * 1024))
    adb.ok("push", str(src), "/data/local/tmp/5mb.bin")
    assert device.path("/data/local/tmp/5mb.bin").read_bytes() == src.read_bytes()
    back = tmp_path / "back.bin"
    adb.ok("pull", "/data/local/tmp/5mb.bin", str(back))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert hashlib.sha256(back.read_bytes()).hexdigest() == digest
    sums = adb.ok("shell", "sha256sum", "$ANDROID_DATA/local/tmp/5mb.bin")
    assert sums.split()[0] == digest


def test_sync_ls_stat_and_errors(adb: Client, device: Adbd, tmp_path: Path) -> None:
    (tmp_path / "d/sub").mkdir(parents=True)
    (tmp_path / "d/a.txt").write_text("a\n")
    (tmp_path / "d/sub/b.txt").write_text("b\n")
    adb.ok("push", str(tmp_path / "d"), "/data/local/tmp/")  # a directory: STAT, then SEND with mkdirs
    assert device.path("/data/local/tmp/d/sub/b.txt").read_text() == "b\n"
    names = {line.split()[-1] for line in adb.ok("ls", "/data/local/tmp/d").splitlines()}
    assert {"a.txt", "sub"} <= names
    adb.ok("pull", "/data/local/tmp/d", str(tmp_path / "pulled"))
    assert (tmp_path / "pulled/sub/b.txt").read_text() == "b\n"
    missing = adb.run("pull", "/data/no-such-file", str(tmp_path / "x"))
    assert missing.returncode == 1 and b"does not exist" in missing.stdout + missing.stderr
    device.path("/data/ro").mkdir()
    device.path("/data/ro").chmod(0o500)
    if os.geteuid() != 0:  # root writes anyway
        refused = adb.run("push", str(tmp_path / "d/a.txt"), "/data/ro/a.txt")
        assert refused.returncode == 1


def test_streams_in_parallel_and_client_gone(adb: Client, device: Adbd) -> None:
    env = {**os.environ, "HOME": str(adb.home)}
    procs = [subprocess.Popen([str(ADB), "-P", str(adb.port), "-s", adb.serial, "shell", f"sleep 0.5; echo {i}"],
                              stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
             for i in range(4)]
    assert [p.communicate(timeout=30)[0] for p in procs] == [f"{i}\n".encode() for i in range(4)]
    # the client is killed mid-command: the daemon lives on, a new connection works
    p = subprocess.Popen([str(ADB), "-P", str(adb.port), "-s", adb.serial, "shell", "sleep 30"],
                         stdin=subprocess.DEVNULL, env={**os.environ, "HOME": str(adb.home)})
    p.kill()
    p.wait(10)
    adb.run("disconnect", adb.serial, serial=False)
    assert device.process is not None and device.process.poll() is None
    assert "connected" in adb.run("connect", adb.serial, serial=False).stdout.decode()
    assert adb.ok("shell", "echo", "again").strip() == "again"


def test_reboot_runs_the_reboot_command(adb: Client, device: Adbd) -> None:
    adb.run("reboot", timeout=20)
    reboots = device.path("/.reboots")
    for _ in range(100):
        if reboots.exists():
            break
        subprocess.run(["sleep", "0.05"], check=True)
    assert reboots.read_text().splitlines() == ["reboot:"]


def test_raw_protocol_bad_header_does_not_kill_daemon(tmp_path: Path) -> None:
    import socket

    with running_adbd(tmp_path) as dev:
        with socket.create_connection(("127.0.0.1", dev.port), timeout=5) as s:
            s.sendall(b"garbage-garbage-garbage-garbage")
            assert s.recv(100) == b""  # dropped
        with socket.create_connection(("127.0.0.1", dev.port), timeout=5) as s:
            payload = b"host::\0"
            head = [0x4E584E43, 0x01000000, 4096, len(payload), sum(payload), 0x4E584E43 ^ 0xFFFFFFFF]
            s.sendall(b"".join(v.to_bytes(4, "little") for v in head) + payload)
            reply = s.recv(24)
            assert reply[:4] == b"CNXN" and int.from_bytes(reply[4:8], "little") == 0x01000000
        assert dev.process is not None and dev.process.poll() is None
    assert dev.process is None


def test_stopping_the_daemon_ends_its_connections_and_shells(adb: Client, device: Adbd) -> None:
    env = {**os.environ, "HOME": str(adb.home)}
    client = subprocess.Popen([str(ADB), "-P", str(adb.port), "-s", adb.serial, "shell",
                               'echo $$ > "$ADBD_SANDBOX/shell.pid"; exec sleep 60'],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
    try:
        pidfile = device.path("/shell.pid")
        for _ in range(200):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            time.sleep(0.05)
        shell = int(pidfile.read_text())
        device.stop()
        for _ in range(100):
            if not Path(f"/proc/{shell}").exists():
                break
            time.sleep(0.05)
        assert not Path(f"/proc/{shell}").exists(), "the shell outlived the daemon"
        client.wait(20)  # the device went away under the client (adb 29 still says 0)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(10)


def _busybox_static() -> bool:
    bb = shutil.which("busybox")
    return bb is not None and b"ld-linux" not in Path(bb).read_bytes()[:4096 * 16]


@pytest.mark.skipif(os.geteuid() != 0 or not _busybox_static(),
                    reason="chroot mode needs root and a static busybox (Debian: busybox-static)")
def test_chroot_mode_paths_mean_the_same_to_shell_and_sync(tmp_path: Path) -> None:
    with running_adbd(tmp_path / "dev", chroot=True, props={"ro.product.model": "jailed"}) as dev:
        (tmp_path / "home").mkdir()
        client = Client(free_port(), dev.serial, tmp_path / "home")
        try:
            client.run("start-server", serial=False)
            assert "connected" in client.run("connect", dev.serial, serial=False).stdout.decode()
            src = tmp_path / "f.sh"
            src.write_text("#!/bin/sh\necho from-device $1\n")
            src.chmod(0o755)
            client.ok("push", str(src), "/data/local/tmp/f.sh")
            assert client.ok("shell", "/data/local/tmp/f.sh", "x").strip() == "from-device x"
            assert client.ok("shell", "getprop ro.product.model").strip() == "jailed"
            client.ok("shell", "setprop debug.jail 1; echo made > /sdcard/made.txt")
            assert dev.getprop("debug.jail") == "1"
            assert dev.path("/sdcard/made.txt").read_text() == "made\n"
            assert set(client.ok("shell", "ls /").split()) >= {"data", "system", "sbin", "dev"}
            pty = client.run("shell", "-tt", "echo $((40 + 2))")
            assert pty.stdout.replace(b"\r", b"").strip() == b"42"
            assert client.run("shell", "exit 5").returncode == 5
            # the image's stand-ins: adb 29's install (push + `pm install`, no "cmd" feature), root:
            (tmp_path / "app.apk").write_bytes(b"PK\x03\x04not-really")
            assert "Success" in client.ok("install", str(tmp_path / "app.apk"))
            assert client.ok("shell", "pm list packages").split() == ["package:app"]
            assert "already running as root" in client.ok("root")
            build_prop = client.ok("shell", "grep ro.build.display.id /system/build.prop")
            assert build_prop.strip() == "ro.build.display.id=lab-android-busybox"
        finally:
            client.run("kill-server", serial=False, timeout=10)
