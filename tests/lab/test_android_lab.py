"""The lab's Android-like image on arm64-01, reached by the real ``adb`` through QEMU's port forward.

From the master image (over the console, the simplest honest way; the Android actions do this
for jobs), the Android partitions are formatted and filled from the three tarballs; the board then
boots them with the device type's ``boot_cmds_android``, its init starts the property service and
adbd, and a real ``adb`` (own server port) connects to the device's ``adb_address``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_lava.testing.adbd import free_port

REPO = Path(__file__).resolve().parents[2]
BOOT = 240  # TCG on 2 shared cores
ANDROID_PROMPT = "root@linaro: "


def adb_client(port: int, home: Path):  # noqa: ANN201 - a small closure
    def adb(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["adb", "-P", str(port), *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env={**os.environ, "HOME": str(home)}, check=False)

    return adb


@pytest.mark.lab
@pytest.mark.skipif(shutil.which("adb") is None, reason="the adb client is not installed (apt-get install adb)")
def test_android_image_boots_and_adb_works(arm64_board: Any, lab_tools: Any, tmp_path: Path) -> None:
    dev = arm64_board.device
    master, parts = dev["master_str"], dev["partitions"]
    art = json.loads((REPO / "lab/build/www/artifacts.json").read_text())
    www = dev["extra"]["image_server"]
    serial = dev["adb_address"]
    assert serial == "127.0.0.1:7301"
    con = arm64_board.console()
    p = lab_tools.run_command(dev["hard_reset_command"])
    assert p.returncode == 0, p.stderr
    con.boot_with(dev, [dev["extra"]["uboot_master_cmd"]], BOOT, reboot=False)
    con.expect(master, BOOT)

    t0 = time.monotonic()
    steps = [
        f"mkfs.vfat -n boot {parts['boot']}",
        f"mkfs.ext4 -q -L system {parts['system']}",
        f"mkfs.ext4 -q -L userdata {parts['data']}",
        f"mkfs.ext4 -q -L cache {parts['cache']}",
        "mkdir -p /mnt/android/boot /mnt/android/system /mnt/android/data",
        *(f"mount {parts[p]} /mnt/android/{p}" for p in ("boot", "system", "data")),
        *(f"wget -q -O - {www}/{art['android_' + t]} | bzip2 -dc | tar -x -C /mnt/android"
          for t in ("boot", "system", "userdata")),
        "sync; umount /mnt/android/boot /mnt/android/system /mnt/android/data",
    ]
    con.run_all(steps, master)
    print(f"android partitions filled in {time.monotonic() - t0:.1f}s")

    t0 = time.monotonic()
    con.boot_with(dev, dev["boot_cmds_android"], BOOT)
    con.expect("init: lab android booted", BOOT)
    con.expect(ANDROID_PROMPT, 60)
    t_prompt = time.monotonic() - t0

    home = tmp_path / "home"
    home.mkdir()
    adb = adb_client(free_port(), home)  # our own adb server: never the default 5037 one
    try:
        assert adb("start-server").returncode == 0
        while "connected to" not in adb("connect", serial, timeout=20).stdout:
            assert time.monotonic() - t0 < BOOT, "adbd never answered on " + serial
            time.sleep(0.5)
        while adb("-s", serial, "shell", "getprop", "sys.boot_completed").stdout.strip() != "1":
            assert time.monotonic() - t0 < BOOT, "sys.boot_completed never became 1"
            time.sleep(0.5)
        t_booted = time.monotonic() - t0
        print(f"android: prompt {t_prompt:.1f}s, sys.boot_completed=1 over adb {t_booted:.1f}s after reboot")
        devices = adb("devices", "-l").stdout
        assert f"{serial}" in devices and "model:lab_arm64_virt" in devices, devices
        assert adb("-s", serial, "shell", "getprop", "ro.build.version.release").stdout.strip() == "4.0.4"
        assert adb("-s", serial, "shell", "false").returncode == 1
        mounts = adb("-s", serial, "shell", "cat /proc/mounts").stdout
        assert f"{parts['system']} /system" in mounts and f"{parts['data']} /data" in mounts, mounts

        src = tmp_path / "5mb.bin"
        src.write_bytes(os.urandom(5 * 1024 * 1024))
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        t1 = time.monotonic()
        push = adb("-s", serial, "push", str(src), "/data/local/tmp/5mb.bin", timeout=120)
        t_push = time.monotonic() - t1
        assert push.returncode == 0, push.stdout + push.stderr
        on_device = adb("-s", serial, "shell", "sha256sum /data/local/tmp/5mb.bin").stdout.split()
        assert on_device and on_device[0] == digest
        t1 = time.monotonic()
        pull = adb("-s", serial, "pull", "/data/local/tmp/5mb.bin", str(tmp_path / "back.bin"), timeout=120)
        t_pull = time.monotonic() - t1
        assert pull.returncode == 0, pull.stdout + pull.stderr
        assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == digest
        print(f"adb push 5 MB: {5 / t_push:.1f} MB/s, pull: {5 / t_pull:.1f} MB/s")

        # reboot: through U-Boot (nobody interrupts it) back to the master image
        adb("-s", serial, "reboot", timeout=30)
        con.expect(master, BOOT)
    finally:
        adb("kill-server", timeout=20)
        con.close()
