"""Android end to end on the lab's arm64 board: ``jobs/lab-arm64-android.json`` through pytest, as a
user runs it, then the real adb client against the board it left booted, then a plain pytest module
using the ``android_board``/``adb_device`` fixtures on the same board.

The job: the master booted, the Android tarballs deployed from it into the Android partitions, binary drivers
(none configured: passes), Android booted with ``boot_cmds_android``, the job's own adb server
connected to the board's adbd (QEMU forwards it to the device's ``adb_address``), the built-in
lava-android-test tests and custom commands run over adb, the bundle submitted to the dashboard
stub. Checked: every Android test case its own JUnit ``<testcase>`` (measurements as properties),
the bundle valid (format 1.3) with the ``lava`` run naming each Android action, the adb server the
job started gone afterwards. The board is kept on (a device copy with ``end_of_job: leave-on``) for
``adb -s <addr> shell getprop`` and a 5 MB push/pull with the real client; ``stop_new_boards`` stops it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pytest_lava.android.adb import AdbServer
from pytest_lava.core.deadline import Deadline
from pytest_lava.results.bundle import validate_bundle
from tests.lab.test_jobs_e2e import gone, junit_cases, results_of, runs_of
from tests.lab.test_old_lab_e2e import dashboard  # noqa: F401 - the dashboard stub (fixture)

REPO = Path(__file__).resolve().parents[2]
JOB = REPO / "jobs" / "lab-arm64-android.json"
BOARD = "arm64-01"
pytestmark = pytest.mark.lab

FIXTURE_MODULE = """
import pytest

pytestmark = pytest.mark.lava_board(target="arm64-01", timeout=600)


def test_release(adb_device, lava_deadline):
    assert adb_device.getprop("ro.build.version.release", lava_deadline)


def test_shell_status(adb_device, lava_deadline):
    assert adb_device.shell("exit 5", lava_deadline).status == 5
    assert "/system" in adb_device.check("cat /proc/mounts", lava_deadline)
"""


def test_android_job_then_adb_then_fixtures(pytester: pytest.Pytester, lab_built: Path, lab_tools: Any,
                                            dashboard: Any, stop_new_boards: None, tmp_path: Path) -> None:  # noqa: F811
    job = json.loads(JOB.read_text())
    submit = job["actions"][-1]
    assert submit["command"] == "submit_results_on_host"
    submit["parameters"]["server"] = dashboard.url()
    (pytester.path / JOB.name).write_text(json.dumps(job))
    devices = lab_tools.devices_left_on(tmp_path)
    served = lab_tools.labctl("serve")
    assert served.returncode == 0, served.stdout + served.stderr

    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--lava-job", str(pytester.path / JOB.name), "--lava-devices", str(devices),
        "--lava-device", BOARD, "--lava-results", "results", "--junitxml", "r.xml", "-rA", timeout=1500)
    out = "\n".join(result.outlines + result.errlines)
    outcomes = result.parseoutcomes()
    assert result.ret == 0 and not outcomes.get("failed") and not outcomes.get("errors"), out[-6000:]

    # every Android test case its own <testcase>, measurements as properties
    cases = {c.name: c for c in junit_cases(pytester.path / "r.xml") if "::" in c.name}
    by_test: dict[str, set[str]] = {}
    for name in cases:
        label, _, case = name[name.index("[") + 1:-1].partition("::")
        by_test.setdefault(label, set()).add(case)
    assert {"applet-ls", "applet-getprop", "pipe", "exit-status"} <= by_test["busybox"], by_test
    assert {"build-version-release", "boot-completed", "system-mounted", "data-writable"} <= by_test["props"]
    assert by_test["storage"] == {"file-size", "write-throughput", "read-throughput"}
    assert by_test["custom"] == {"release", "uptime"}
    assert all(c.outcome == "passed" for c in cases.values()), {n: c.outcome for n, c in cases.items()}
    write = cases["lava_android_test_run[storage::write-throughput]"].properties
    assert write["units"] == "MB/s" and float(write["measurement"]) > 0

    # the bundle: valid 1.3, a run per test, the lava run naming each Android action, delivered
    results = pytester.path / "results" / job["job_name"]
    bundle = json.loads((results / "bundle.json").read_text())
    assert validate_bundle(bundle) == [] and bundle["format"] == "Dashboard Bundle Format 1.3"
    runs = runs_of(bundle)
    assert {"busybox", "props", "storage", "lava"} <= set(runs), set(runs)
    custom = next(r for t, r in runs.items() if t.startswith("custom(command=["))
    assert float(next(r for r in custom["test_results"] if r["test_case_id"] == "uptime")["measurement"]) > 0
    assert set(results_of(runs["busybox"]).values()) == {"pass"}
    lava = results_of(runs["lava"])
    for step in ("boot_master_image", "deploy_linaro_android_image", "android_install_binaries",
                 "boot_linaro_android_image", "lava_android_test_install", "lava_android_test_run (busybox)",
                 "lava_android_test_run (props)", "lava_android_test_run (storage)"):
        assert lava.get(step) == "pass", lava
    assert any(k.startswith("lava_android_test_run_custom (commands=[") and v == "pass" for k, v in lava.items())
    assert any(json.loads(b["content"]) == bundle for b in dashboard.bundles.values())

    # the job's adb server was its own, and is gone
    console = (results / "console.log").read_text(errors="replace")
    started = re.search(r"adb server started on 127\.0\.0\.1:(\d+) \(pid (\d+)\)", console)
    assert started and int(started.group(1)) != 5037, console[-3000:]
    assert f"adb server on port {started.group(1)} (pid {started.group(2)}) stopped" in console
    assert gone(int(started.group(2)))

    # the real client against the board the job left booted
    address = lab_tools.device(BOARD)["adb_address"]
    server = AdbServer().start(Deadline(30, "adb server"))
    try:
        node = Deadline(300, "adb on the board")
        dev = server.connect(address, node)
        p = subprocess.run(server.argv("-s", address, "shell", "getprop", "ro.build.version.release"),
                           env=server.env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stdout.strip(), p
        data = os.urandom(5 * 1024 * 1024)
        (tmp_path / "five.bin").write_bytes(data)
        dev.push(tmp_path / "five.bin", "/data/local/tmp/five.bin", node)
        dev.pull("/data/local/tmp/five.bin", tmp_path / "back.bin", node)
        assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
        dev.check("rm /data/local/tmp/five.bin", node)
    finally:
        server.stop()

    # a plain module on the same board through the fixtures (boots the Android the job deployed)
    module = pytester.path / "test_android_fixture.py"
    module.write_text(FIXTURE_MODULE)
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lava-devices", str(devices),
                                          "--lava-results", "plain-results", "-rA", str(module), timeout=900)
    assert plain.ret == 0, "\n".join(plain.outlines[-60:])
    assert plain.parseoutcomes().get("passed") == 2
