"""The qemu board type end to end: the harness starts QEMU from the job's deploy, boots the
kernel it deployed, and kills the process when the job ends, whatever happened."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.lab


def run_job(tmp_path: Path, job: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "qemu-job.json"
    path.write_text(json.dumps(job))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--lava-job", str(path),
                           "--lava-devices", str(REPO / "devices"), "--lava-results", str(tmp_path / "results"),
                           "--lava-console", "-rA", *extra], cwd=REPO, capture_output=True, text=True, timeout=900)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def kernel_job(kernel: str, *, test: bool = True) -> dict[str, Any]:
    build = REPO / "lab/build/x86_64"
    actions: list[dict[str, Any]] = [
        {"command": "deploy_linaro_kernel",
         "parameters": {"kernel": kernel, "ramdisk": f"file://{build / 'initramfs.cpio.gz'}"}},
        {"command": "boot_linaro_image", "parameters": {"options": ["quiet"]}}]
    if test:
        actions.append({"command": "lava_test_shell", "parameters": {"testdefs": [{
            "metadata": {"format": "Lava-Test Test Definition 1.0", "name": "qemu-e2e", "description": "e2e"},
            "run": {"steps": ["lava-test-case kernel --shell uname -r",
                              "lava-test-case cmdline --shell grep -q quiet /proc/cmdline"]}}]}})
    return {"job_name": "qemu-e2e", "device_type": "qemu", "timeout": 600, "actions": actions}


def test_qemu_boots_the_deployed_kernel_and_is_killed_at_the_end(tmp_path: Path, lab_built: Path) -> None:
    p = run_job(tmp_path, kernel_job(f"file://{lab_built / 'x86_64/vmlinuz'}"))
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    pids = [int(x) for x in re.findall(r"started qemu, pid (\d+)", out)]
    assert len(pids) == 1
    assert gone(pids[0]), f"qemu pid {pids[0]} still running after the job"
    kver = json.loads((lab_built / "www/artifacts.json").read_text())["packages"]["x86_64_kernel"]
    assert kver.removeprefix("linux-image-") in out  # uname -r of the deployed kernel, in the case's console
    assert "PASSED" in out and "::cmdline" in out  # the job's boot option reached the kernel command line
    # the helpers and the inline definition came in the initramfs: nothing travelled over the console
    assert "carried in the initramfs" in out
    log = next((tmp_path / "results").glob("*/console.log")).read_text()
    assert "LAVA_XFER" not in log and "carried-" in log
    assert not [line for line in log.splitlines() if line.rstrip().endswith(" LAVA_CARRY_MISSING")]  # the guard's


def test_qemu_is_killed_when_the_test_image_never_answers(tmp_path: Path, lab_built: Path) -> None:
    job = kernel_job(f"file://{lab_built / 'x86_64/vmlinuz'}", test=False)
    job["actions"][1]["parameters"]["timeout"] = 30  # too short for... nothing: the prompt never matches
    job["actions"][1]["parameters"]["options"] = ["init=/bin/false-does-not-exist", "panic=0"]
    p = run_job(tmp_path, job)
    out = p.stdout + p.stderr
    pids = [int(x) for x in re.findall(r"started qemu, pid (\d+)", out)]
    assert pids and all(gone(pid) for pid in pids), out[-3000:]


def test_deploy_of_a_missing_kernel_names_it_and_starts_nothing(tmp_path: Path, lab_built: Path) -> None:
    missing = f"file://{tmp_path / 'no-such-vmlinuz'}"
    p = run_job(tmp_path, kernel_job(missing, test=False))
    out = p.stdout + p.stderr
    assert p.returncode != 0 and str(tmp_path / "no-such-vmlinuz") in out
    assert "started qemu" not in out


def test_the_device_boots_its_own_uncompressed_kernel_with_the_drivers_only(tmp_path: Path, lab_built: Path) -> None:
    """No deploy: qemu-x86_64-01's own kernel and initramfs (lab/README.md, "Boot time"): the ELF
    vmlinux entered through PVH (no real-mode setup, no decompressor), the plain cpio, and an rcS
    that loads no filesystem module without a disk."""
    job = {"job_name": "qemu-own", "device_type": "qemu", "timeout": 300, "actions": [
        {"command": "boot_linaro_image"},
        {"command": "lava_test_shell", "parameters": {"testdefs": [{
            "metadata": {"format": "Lava-Test Test Definition 1.0", "name": "own", "description": "own kernel"},
            "run": {"steps": ["lava-test-case net-driver --shell 'lsmod | grep -q ^virtio_net'",
                              "lava-test-case no-fs-modules --shell '! lsmod | grep -q ^ext4'",
                              "lava-test-case eth0-up --shell 'ip addr show eth0 | grep -q 10.0.2.15'",
                              "lava-test-case no-crypto-tests --shell 'grep -q cryptomgr.notests /proc/cmdline'"]}}]}}]}
    p = run_job(tmp_path, job)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    for case in ("net-driver", "no-fs-modules", "eth0-up", "no-crypto-tests"):
        assert re.search(rf"PASSED .*::{case}\b", out), (case, out[-3000:])
    log = next((tmp_path / "results").glob("*/console.log")).read_text()
    started = next(line for line in log.splitlines() if "started qemu-system-x86_64" in line)
    assert "lab/build/x86_64/vmlinux " in started  # (the -initrd is the carried copy of initramfs.cpio)
    assert "Linux version" in log
    assert "Probing EDD" not in log  # the bzImage's real-mode setup: not run on a PVH entry
