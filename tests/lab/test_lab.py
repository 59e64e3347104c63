"""The emulated lab end to end: boards boot real kernels, consoles over TCP, power by command."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
LabBoard = Any


@pytest.fixture(autouse=True)
def _tools(lab_tools: Any) -> None:
    global labctl, device, run_command, RawConsole
    labctl, device, run_command, RawConsole = (lab_tools.labctl, lab_tools.device, lab_tools.run_command,
                                               lab_tools.RawConsole)

BOOT = 240  # generous: TCG on 2 cores shared with other engineers' QEMUs (measured ~5-10 s)


def test_device_files_match_the_lab_ports() -> None:
    """Every lab board has a device file whose console is the port labctl gives ser2net."""
    p = labctl("boards", "--json", timeout=30)
    assert p.returncode == 0, p.stderr
    table = json.loads(p.stdout)
    for row in table["boards"]:
        dev = device(row["name"])
        assert dev["connection"] == row["connection"]
        assert dev["hard_reset_command"] == f"lab/labctl power reset {row['name']}"
        assert dev["device_type"] == ("lab-x86_64" if row["arch"] == "x86_64" else "lab-arm64-master")
        assert dev.get("adb_address") == row["adb_address"]  # arm64: QEMU's forward to the guest's adbd
        if row["adb_address"]:
            port = int(row["adb_address"].rsplit(":", 1)[1])
            assert not 5554 <= port <= 5585, "the adb server would probe it as an emulator"
    assert str(table["http_port"]) in device("arm64-01")["extra"]["image_server"]


def test_devices_load_with_the_harness_loader() -> None:
    from pytest_lava.devices.directory import load_devices

    names = set(load_devices(REPO / "devices").devices)
    assert {"x86-01", "arm64-01", "arm64-02", "qemu-x86_64-01"} <= names
    assert "panda01" not in names  # examples/ is not scanned
    assert set(load_devices(REPO / "devices" / "examples").devices) == {"panda01"}


@pytest.mark.lab
def test_build_is_cached(lab_built: Path) -> None:
    t0 = time.monotonic()
    p = labctl("build", timeout=600)
    assert p.returncode == 0, p.stderr
    assert "up to date" in p.stdout
    print(f"second build: {time.monotonic() - t0:.2f}s")
    art = json.loads((lab_built / "www/artifacts.json").read_text())
    for key in ("hwpack", "rootfs", "image", "image_gz", "android_boot", "android_system", "android_userdata",
                "kernel_matrix_deb"):
        assert (lab_built / "www" / art[key]).is_file(), key
    assert art["kernel_matrix_deb"].endswith(".deb") and art["kernel_matrix_deb"].startswith("linux-image-")
    assert art["kernel_matrix_distinct"], "only one arm64 kernel version could be downloaded"
    sums = (lab_built / "www/SHA256SUMS").read_text()
    assert art["hwpack"] in sums and art["kernel_matrix_deb"] in sums


@pytest.mark.lab
def test_x86_board_boots_and_power_cycles(x86_board: LabBoard) -> None:
    dev = x86_board.device
    con = x86_board.console()
    t0 = time.monotonic()
    con.expect_prompt(dev["master_str"], BOOT)  # the board may be booted already: poke it
    print(f"{x86_board.name}: prompt {time.monotonic() - t0:.1f}s after connecting")
    rc, out = con.run("hostname; uname -m", dev["master_str"])
    assert rc == 0 and out.split() == ["lab-x86_64", "x86_64"]
    rc, out = con.run("wget -q -O - http://10.0.2.2:7080/artifacts.json | grep -c hwpack", dev["master_str"])
    assert rc == 0 and int(out.strip()) >= 1, out  # the guest reaches the artifact server
    rc, _ = con.run("touch /tmp/before-reset", dev["master_str"])
    assert rc == 0

    p = run_command(dev["hard_reset_command"])
    assert p.returncode == 0, p.stderr
    t0 = time.monotonic()
    con.expect(dev["master_str"], BOOT)  # the old connection is dropped; expect() reconnects
    print(f"{x86_board.name}: prompt {time.monotonic() - t0:.1f}s after hard reset")
    rc, out = con.run("ls /tmp/before-reset", dev["master_str"])
    assert rc != 0, "a hard reset must start a fresh boot"
    con.close()


def boot_master(con: Any, dev: dict, interrupt: bool) -> float:
    t0 = time.monotonic()
    con.expect(dev["interrupt_boot_prompt"], BOOT)
    if interrupt:
        con.send(dev["interrupt_boot_command"])
        con.expect(dev["bootloader_prompt"], 30)
        con.sendline(dev["extra"]["uboot_master_cmd"])
    con.expect(dev["master_str"], BOOT)
    return time.monotonic() - t0


@pytest.mark.lab
def test_arm64_master_then_test_image(arm64_board: LabBoard) -> None:
    dev = arm64_board.device
    master, tester = dev["master_str"], dev["tester_str"]
    parts = dev["partitions"]
    art = json.loads((REPO / "lab/build/www/artifacts.json").read_text())
    www = dev["extra"]["image_server"]
    con = arm64_board.console()
    p = run_command(dev["hard_reset_command"])  # a known state: from power on, whatever ran before
    assert p.returncode == 0, p.stderr
    print(f"{arm64_board.name}: master prompt {boot_master(con, dev, interrupt=True):.1f}s (U-Boot interrupted)")
    rc, out = con.run("cat /etc/hostname; ls /etc/lava-test-image", master)
    assert out.splitlines()[0] == "master" and rc != 0

    # deploy the Linaro test image into the test partitions, from the master, like the old dispatcher
    t0 = time.monotonic()
    steps = [
        f"mkfs.vfat -n testboot {parts['testboot']}",
        f"mkfs.ext4 -q -L testrootfs {parts['testrootfs']}",
        "mkdir -p /mnt/boot /mnt/root",
        f"mount {parts['testboot']} /mnt/boot",
        f"mount {parts['testrootfs']} /mnt/root",
        f"wget -q -O - {www}/{art['hwpack_tar']} | tar -x -C /mnt/boot",
        f"wget -q -O - {www}/{art['rootfs_busybox_tar']} | tar -x -C /mnt/root",
        "echo linaro > /mnt/root/etc/hostname",
        "sync; umount /mnt/boot; umount /mnt/root",
    ]
    con.run_all(steps, master)
    print(f"{arm64_board.name}: test image deployed in {time.monotonic() - t0:.1f}s")

    # reboot into U-Boot, interrupt it, boot the test partitions with the device's boot_cmds
    t0 = time.monotonic()
    con.boot_with(dev, dev["boot_cmds"], BOOT)
    con.expect(tester, BOOT)
    print(f"{arm64_board.name}: test image prompt {time.monotonic() - t0:.1f}s after reboot")
    rc, out = con.run("hostname; cat /etc/hostname; grep -c . /etc/lava-test-image; uname -r", tester)
    lines = out.split()
    assert rc == 0 and lines[:3] == ["linaro", "linaro", "1"], out
    rc, out = con.run("grep ' / ' /proc/mounts", tester)
    assert parts["testrootfs"] in out  # running from the test rootfs, not the master

    # power cycle: the default boot (nobody interrupts) is the master again, on the SAME disk
    p = run_command(dev["hard_reset_command"])
    assert p.returncode == 0, p.stderr
    print(f"{arm64_board.name}: master prompt {boot_master(con, dev, interrupt=False):.1f}s (autoboot)")
    rc, out = con.run(f"mount {parts['testrootfs']} /mnt && cat /mnt/etc/hostname; umount /mnt", master)
    assert rc == 0 and "linaro" in out, "the disk must survive a power cycle"
    con.close()


@pytest.mark.lab
def test_start_twice_and_port_in_use(x86_board: LabBoard) -> None:
    p = labctl("start", x86_board.name)
    assert p.returncode == 0 and "already running" in p.stdout
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", 7108))  # x86-08's QEMU serial port
    blocker.listen(1)
    try:
        p = labctl("power", "on", "x86-08")
        assert p.returncode != 0 and "7108" in p.stderr, p.stderr
    finally:
        blocker.close()
    p = labctl("power", "on", "no-such-board")
    assert p.returncode != 0 and "unknown board" in p.stderr


def pids() -> dict[str, int]:
    p = labctl("status", "--json", timeout=30)
    assert p.returncode == 0, p.stderr
    return {k: v["pid"] for k, v in json.loads(p.stdout)["processes"].items() if v["running"]}


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


@pytest.mark.lab
def test_stop_leaves_no_process_running(lab_built: Path) -> None:
    """Runs last in this file: stops the whole lab, checks every PID, restarts what ran before."""
    before = pids()
    p = labctl("start", "--boards", "2", "--arm64-boards", "0")
    assert p.returncode == 0, p.stderr
    started = pids()
    assert {"x86-01", "x86-02", "ser2net", "ttybridge", "http"} <= set(started)
    p = labctl("stop", "x86-02")
    assert p.returncode == 0 and gone(started["x86-02"])
    assert not gone(started["x86-01"]) and not gone(started["ser2net"])
    p = labctl("stop")
    assert p.returncode == 0, p.stderr
    for name, pid in started.items():
        assert gone(pid), f"{name} (pid {pid}) still runs after `labctl stop`"
    assert pids() == {}
    assert not any(f.suffix == ".pid" for f in (REPO / "lab/run").iterdir())
    again = [name for name in before if name not in ("ser2net", "ttybridge", "http")]
    if again:  # give session fixtures their boards back (they reboot, like after a power cut)
        assert labctl("start", *again).returncode == 0
    assert os.path.exists(REPO / "lab/run")


def test_arm64_qemu_forwards_the_adb_port() -> None:
    import sys

    sys.path.insert(0, str(REPO / "lab"))
    try:
        from lablib import runner  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(REPO / "lab"))
    argv = runner.qemu_argv(runner.board("arm64-02"))
    nic = argv[argv.index("-nic") + 1]
    assert nic.endswith(",hostfwd=tcp:127.0.0.1:7302-:5555"), nic
    x86 = runner.qemu_argv(runner.board("x86-01"))
    assert "hostfwd" not in x86[x86.index("-nic") + 1]
