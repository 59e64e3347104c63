"""A plain pytest module on a QEMU lab board through the public fixtures (``test_shell``,
``lava_deadline``, ``lava_target``): the board is leased and booted once for the module, its tests
run commands on the real Debian kernel, and each test is in JUnit **and** in the board's bundle.
Boards the run powered on are stopped (by PID) at the end."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

MODULE = """
import pytest

pytestmark = pytest.mark.lava_board(device_type="lab-x86_64", timeout=600)


def test_kernel_is_linux(test_shell, lava_deadline):
    assert test_shell.check_output("uname -s", lava_deadline).strip() == "Linux"


def test_proc_is_mounted(test_shell, lava_deadline):
    assert "proc" in test_shell.check_output("cat /proc/mounts", lava_deadline)


def test_board_name(lava_target):
    assert lava_target.name.startswith("x86-")
"""


def test_plain_module_on_a_lab_board(tmp_path: Path, stop_new_boards: None) -> None:
    (tmp_path / "test_on_lab.py").write_text(MODULE)
    results, junit = tmp_path / "results", tmp_path / "j.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "--setup-show", "-rfE",
         "--lava-devices", str(REPO / "devices"), "--lava-results", str(results), f"--junitxml={junit}",
         str(tmp_path / "test_on_lab.py")],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert out.count("SETUP    M lava_target") == 1, out[-4000:]
    names = {tc.get("name") for tc in ET.parse(junit).getroot().iter("testcase")}
    assert {"test_kernel_is_linux", "test_proc_is_mounted", "test_board_name"} <= names
    bundle = json.loads((results / "test_on_lab" / "bundle.json").read_text())
    runs = {r["test_id"]: r for r in bundle["test_runs"]}
    assert {c["test_case_id"]: c["result"] for c in runs["test_on_lab"]["test_results"]} == {
        "test_kernel_is_linux": "pass", "test_proc_is_mounted": "pass", "test_board_name": "pass"}
    assert runs["lava"]["attributes"]["target.device_type"] == "lab-x86_64"
    console = (results / "test_on_lab" / "console.log").read_text(errors="replace")
    assert console.count("Linux version") == 1  # one boot for the module
