"""Submitting from a job, end to end on a SIMULATED board (pytest_lava/testing/simboard.py) and the
stand-in dashboard (tests/dashboard_stub.py): a dashboard that is down fails the job's submit
item and keeps the bundle in the spool; ``resubmit`` delivers it once the server is up; the token
appears nowhere in the output or the results directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_lava.testing import SimLab
from tests.dashboard_stub import DashboardStub

REPO = Path(__file__).resolve().parents[2]

TOKEN = "tok-5ecret-9f8e7d"


def job(url: str) -> str:
    return json.dumps({
        "job_name": "submit-e2e", "device_type": "sim", "timeout": 120, "tags": ["e2e"],
        "actions": [
            {"command": "boot_master_image", "metadata": {"rootfs.type": "sim"}},
            {"command": "submit_results",
             "parameters": {"server": url, "stream": "/anonymous/lab/", "token": TOKEN}},
        ]})


def test_dashboard_down_then_resubmit(pytester: pytest.Pytester, tmp_path: Path) -> None:
    stub = DashboardStub()
    stub.add_user("alice", TOKEN)
    stub.add_stream("/anonymous/lab/")
    stub.start()
    url = stub.url("alice")
    stub.stop()  # the dashboard is down while the job runs
    with SimLab(1, tmp_path / "boards", boot_time=0.3) as lab:
        lab.write_devices(pytester.path / "devices")
        (pytester.path / "job.json").write_text(job(url))
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lava-job", "job.json", "--lava-devices",
                                               "devices", "--lava-results", "results", "-rA", timeout=180)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # an upload failure fails the run, as it did in LAVA
    result.assert_outcomes(passed=1, failed=1)
    assert "FAILED job.json::submit_results" in out and "spool" in out
    results = pytester.path / "results"
    bundle = json.loads((results / "submit-e2e" / "bundle.json").read_text()
                        if (results / "submit-e2e").exists() else (results / "job" / "bundle.json").read_text())
    lava = next(r for r in bundle["test_runs"] if r["test_id"] == "lava")
    assert [r["test_case_id"] for r in lava["test_results"]][:1] == ["boot_master_image"]
    assert lava["attributes"]["rootfs.type"] == "sim" and lava["tags"] == ["e2e"]
    assert any(a["pathname"] == "serial.log" for a in lava["attachments"])
    spooled = list((results / "spool").rglob("*.json"))
    assert spooled, "the bundle must be kept in the spool"
    summary = next(results.rglob("summary.txt")).read_text()
    outcome = [line for line in summary.splitlines() if line.startswith("submit to ")]
    assert len(outcome) == 1 and "kept in" in outcome[0], summary  # the failed submit, written once

    stub.start()  # the server is back: resubmit delivers the spooled bundle
    try:
        sent = subprocess.run([sys.executable, "-m", "pytest_lava", "resubmit", str(results / "spool"),
                               "--token", TOKEN], capture_output=True, text=True, timeout=120, cwd=pytester.path)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert len(stub.bundles) == 1
        stored = json.loads(next(iter(stub.bundles.values()))["content"])
        assert any(r["test_id"] == "lava" for r in stored["test_runs"])
    finally:
        stub.stop()
    everything = out + sent.stdout + sent.stderr
    assert TOKEN not in everything
    for path in results.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
