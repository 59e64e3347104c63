"""An old lab moved over unchanged: the old INI device directory (``devices/old-lab``) and a job as
written in 2011-2012 (``jobs/lab-arm64-old-2012.json``: ``deploy_linaro_image`` first, no
``boot_master_image``, ``lava_test_install`` + ``lava_test_run``, ``submit_results`` to an XML-RPC
server on ``/RPC2/``), on the lab's arm64 board through each kind of console:

* ``arm64-01``             raw TCP (``socket://``) to ser2net's raw port
* ``arm64-01-telnet``      ``connection_command: telnet`` to ser2net's telnet port (character mode)
* ``arm64-01-rfc2217``     pyserial ``rfc2217://`` to the same telnet/RFC 2217 port
* ``arm64-01-telnet-raw``  ``telnet`` to the RAW port: line mode, the interrupt must still land

Each run: all passed, the console kind really used, U-Boot interrupted at the first countdown, the
bundle arrived at the dashboard stub on ``/RPC2/`` (``dashboard.put_ex``) and validates, the
submit outcome is in ``summary.txt`` once, and the board is off afterwards (``end_of_job``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_lava.devices.directory import load_devices
from pytest_lava.results.bundle import validate_bundle

REPO = Path(__file__).resolve().parents[2]
OLD_LAB = REPO / "devices" / "old-lab"
JOB = REPO / "jobs" / "lab-arm64-old-2012.json"
BOARD = "arm64-01"  # the lab board behind every device file in devices/old-lab
STREAM = "/anonymous/lab/"
KINDS = {  # device (file name) -> what its console must show it used
    "arm64-01": "socket://127.0.0.1:7021",
    "arm64-01-telnet": "telnet 127.0.0.1 7221",
    "arm64-01-rfc2217": "rfc2217://127.0.0.1:7221",
    "arm64-01-telnet-raw": "telnet 127.0.0.1 7021",
}


@pytest.fixture(scope="module")
def dashboard() -> Any:
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from dashboard_stub import DashboardStub
    finally:
        sys.path.remove(str(REPO / "tests"))
    stub = DashboardStub()
    stub.add_stream(STREAM)
    with stub:
        yield stub


def test_old_lab_devices_use_the_lab_ports(lab_tools: Any) -> None:
    """Every console in devices/old-lab is one of arm64-01's stable ports (lab/labctl boards)."""
    p = lab_tools.labctl("boards", "--json", timeout=30)
    row = next(r for r in json.loads(p.stdout)["boards"] if r["name"] == BOARD)
    devices = load_devices(OLD_LAB)
    assert devices.layout == "ini" and set(devices.devices) == set(KINDS)
    for name, dev in devices.devices.items():
        assert (dev.connection or dev.connection_command or "").startswith(KINDS[name]), name
        assert dev.hard_reset_command == f"../lab/labctl power reset {BOARD}"
        assert dev.end_of_job == "power-off" and dev.power_off_command
    assert KINDS["arm64-01"] == row["connection"]
    assert KINDS["arm64-01-telnet"] == row["telnet"] and KINDS["arm64-01-rfc2217"] == row["rfc2217"]


@pytest.mark.lab
@pytest.mark.parametrize("device", list(KINDS))
def test_old_job_on_old_devices(device: str, pytester: pytest.Pytester, lab_built: Path, lab_tools: Any,
                                dashboard: Any, stop_new_boards: None) -> None:
    job = json.loads(JOB.read_text())
    submit = job["actions"][-1]
    assert submit["command"] == "submit_results" and job["actions"][0]["command"] == "deploy_linaro_image"
    assert "boot_master_image" not in {a["command"] for a in job["actions"]}
    submit["parameters"]["server"] = dashboard.url()  # http://127.0.0.1:<port>/RPC2/
    (pytester.path / JOB.name).write_text(json.dumps(job))
    stored = set(dashboard.bundles)
    # the artifact server the job downloads from (stop_new_boards stops it again if it started it)
    served = lab_tools.labctl("serve")
    assert served.returncode == 0, served.stdout + served.stderr

    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--lava-job", str(pytester.path / JOB.name), "--lava-devices", str(OLD_LAB),
        "--lava-device", device, "--lava-results", "results", "-rA", timeout=1200)
    out = "\n".join(result.outlines + result.errlines)
    outcomes = result.parseoutcomes()
    assert result.ret == 0 and not outcomes.get("failed") and not outcomes.get("errors"), out[-6000:]
    assert outcomes.get("passed", 0) >= 5, outcomes

    results = pytester.path / "results" / job["job_name"]
    console = (results / "console.log").read_text(errors="replace")
    assert re.search(rf"console connected: .*\({re.escape(KINDS[device])}", console), console[:2000]
    # U-Boot stopped at its first countdown of the test-image boot: every boot command went in
    assert "booted at attempt" not in console and "booting the test image failed" not in console
    assert re.search(r"=> ?setenv bootargs 'console=ttyAMA0 root=/dev/vda5", console), console[-4000:]

    # the bundle reached lava-server's XML-RPC endpoint, as the job file says, and validates
    new = set(dashboard.bundles) - stored
    assert len(new) == 1, dashboard.requests
    sent = dashboard.bundles[new.pop()]
    assert sent["stream"] == STREAM
    assert [(r["path"], r.get("method")) for r in dashboard.requests[-1:]] == [("/RPC2/", "dashboard.put_ex")]
    bundle = json.loads(sent["content"])
    assert validate_bundle(bundle) == []
    assert bundle == json.loads((results / "bundle.json").read_text())
    runs = {r["test_id"]: r for r in bundle["test_runs"]}
    lava = {r["test_case_id"]: r["result"] for r in runs["lava"]["test_results"]}
    for step in ("deploy_linaro_image", "lava_test_install (stream)", "boot_linaro_image", "lava_test_run (stream)"):
        assert lava.get(step) == "pass", lava
    assert runs["lava"]["attributes"]["target.hostname"] == device
    assert {r["result"] for r in runs["stream"]["test_results"]} == {"pass"}

    summary = (results / "summary.txt").read_text()
    assert summary.count("delivered") == 1, summary

    # end_of_job: power-off (devices/old-lab/device-defaults.conf): the job switched the board off
    status = json.loads(lab_tools.labctl("status", "--json", timeout=60).stdout)
    assert status["processes"][BOARD]["running"] is False, status
    assert re.search(rf"power off \(1/\d+\): \.\./lab/labctl power off {BOARD} -> exit status 0", console)
