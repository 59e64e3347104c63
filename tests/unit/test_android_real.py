"""The adb layer with the REAL Debian ``adb`` client and the lab's own adbd (lab/adbd/adbd.c) run
natively on 127.0.0.1 (pytest_lava/testing/adbd.py): the protocol as the board speaks it, in
seconds. Skipped when the host has no adb client or no C compiler."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from pytest_lava.android.adb import AdbDevice, AdbError, AdbServer, BootNotCompleted
from pytest_lava.core.deadline import Deadline

adbd_mod = pytest.importorskip("pytest_lava.testing.adbd")
pytestmark = pytest.mark.skipif(not shutil.which("adb") or not (shutil.which("cc") or shutil.which("gcc")),
                                reason="needs the adb client and a C compiler")


@pytest.fixture
def adbd(tmp_path: Path):  # type: ignore[no-untyped-def]
    with adbd_mod.running_adbd(tmp_path / "device", props={"ro.build.version.release": "4.0.4"}) as dev:
        yield dev


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    srv = AdbServer(log_path=tmp_path / "adb-server.log").start(Deadline(30, "start"))
    yield srv
    srv.stop()


def connected(server: AdbServer, adbd) -> AdbDevice:  # type: ignore[no-untyped-def]
    return server.connect(adbd.serial, Deadline(30, "connect"))


def test_shell_status_props_and_a_5mb_push_pull(server: AdbServer, adbd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dev = connected(server, adbd)
    node = Deadline(60, "calls")
    assert dev.getprop("ro.build.version.release", node) == "4.0.4"
    dev.wait_boot_completed(node)  # sys.boot_completed is 1: returns, BootNotCompleted otherwise
    assert dev.shell("echo out; echo err >&2; exit 3", node).status == 3  # shell v2
    lines: list[str] = []
    assert dev.stream("echo a; sleep 0.2; echo b", node, lines.append) == 0 and lines == ["a", "b"]
    data = os.urandom(5 * 1024 * 1024)
    (tmp_path / "five.bin").write_bytes(data)
    dev.push(tmp_path / "five.bin", "/data/local/tmp/five.bin", node)
    assert adbd.path("/data/local/tmp/five.bin").read_bytes() == data
    dev.pull("/data/local/tmp/five.bin", tmp_path / "back.bin", node)
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).digest() == hashlib.sha256(data).digest()


def test_boot_never_completing(server: AdbServer, adbd) -> None:  # type: ignore[no-untyped-def]
    dev = connected(server, adbd)
    adbd.setprop("sys.boot_completed", "0")
    start = time.monotonic()
    with pytest.raises(BootNotCompleted, match="did not complete its boot"):
        dev.wait_boot_completed(Deadline(3, "boot"), interval=0.5)
    assert time.monotonic() - start < 30  # the 3 s deadline, not the 300 s default


def test_adbd_not_answering(server: AdbServer) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(AdbError, match=f"adb connect 127.0.0.1:{port} failed"):
        server.connect(f"127.0.0.1:{port}", Deadline(20, "connect"))


def test_failing_push_and_a_lost_device(server: AdbServer, adbd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dev = connected(server, adbd)
    with pytest.raises(AdbError, match="push missing.bin"):
        dev.push(tmp_path / "missing.bin", "/data/local/tmp/x", Deadline(20, "push"))
    server.disconnect(dev.serial, Deadline(20, "disconnect"))
    with pytest.raises(AdbError, match=r"error: device '127.0.0.1:\d+' not found"):
        dev.shell("true", Deadline(20, "after"))
    assert dev.get_state(Deadline(20, "state")) != "device"


def test_adbd_gone_mid_job(server: AdbServer, adbd) -> None:  # type: ignore[no-untyped-def]
    dev = connected(server, adbd)
    adbd.stop()
    start = time.monotonic()
    with pytest.raises(AdbError, match="error: device offline|not found|closed"):
        for _ in range(20):  # the server notices within a moment
            dev.shell("true", Deadline(20, "after"))
            time.sleep(0.2)
    assert time.monotonic() - start < 15


def test_the_library_over_the_real_protocol(server: AdbServer, tmp_path: Path) -> None:
    """lava_android_test_install + run of every built-in test and run_custom, with the real client
    and the lab's adbd running its shells chrooted in an Android-like root (busybox, getprop)."""
    from test_android_actions import FakeAndroidDriver, action_ctx

    from pytest_lava.actions import android_test

    try:
        context = adbd_mod.running_adbd(tmp_path / "chroot", chroot=True)
        adbd = context.__enter__()
    except adbd_mod.AdbdUnavailable as exc:
        pytest.skip(f"no chroot adbd here: {exc}")
    try:
        dev = connected(server, adbd)
        ctx = action_ctx(tmp_path, FakeAndroidDriver(dev), timeout=120)
        android_test.lava_android_test_install(ctx, {"tests": ["busybox", "props", "storage"]})  # type: ignore[arg-type]
        for name in ("busybox", "props", "storage"):
            android_test.lava_android_test_run(ctx, {"test_name": name, "option": "1"}  # type: ignore[arg-type]
                                               if name == "storage" else {"test_name": name})
        android_test.lava_android_test_run_custom(ctx, {  # type: ignore[arg-type]
            "commands": ["echo \"release: $(getprop ro.build.version.release)\""],
            "parser": r"^(?P<test_case_id>release): (?P<message>\S+)"})
    finally:
        context.__exit__(None, None, None)
    results = {c.test_case_id: c.result for c in ctx.cases}
    assert {"applet-ls", "pipe", "exit-status", "boot-completed", "data-writable", "write-throughput",
            "release"} <= set(results), results
    failed = {k for k, v in results.items() if v != "pass"}
    assert failed == {"system-mounted", "data-mounted"}, results  # a chroot, not a booted board: nothing mounted
    assert [r.test_id for r in ctx.results.runs][:3] == ["busybox", "props", "storage"]
