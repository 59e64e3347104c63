"""A password written into an artifact URL (``http://user:password@host/...``) never leaves the
process: not in the terminal, --lava-validate, JUnit, the bundle, the summary, the console log,
the spool or the lab's state (health records). End to end on a SIMULATED board."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from pytest_lava.testing import SimLab

PASSWORD = "pw-9x8y7z-secret"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def job(port: int) -> str:
    base = f"http://alice:{PASSWORD}@127.0.0.1:{port}"
    return json.dumps({
        "job_name": "url-password", "device_type": "sim", "timeout": 120,
        "actions": [
            {"command": "boot_master_image"},
            {"command": "deploy_linaro_image",
             "parameters": {"hwpack": f"{base}/hwpack.tar.gz", "rootfs": f"{base}/rootfs.tar.gz"}},
            {"command": "boot_linaro_image"},
            {"command": "submit_results", "parameters": {"server": f"{base}/RPC2/", "stream": "/anonymous/lab/"}},
        ]})


def test_url_password_is_never_printed_or_stored(pytester: pytest.Pytester, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("PYTEST_LAVA_STATE", str(state))
    with SimLab(1, tmp_path / "boards", boot_time=0.3) as lab:
        lab.write_devices(pytester.path / "devices")
        (pytester.path / "job.json").write_text(job(closed_port()))
        common = ["-p", "no:cacheprovider", "--lava-job", "job.json", "--lava-devices", "devices"]
        validate = pytester.runpytest_subprocess(*common, "--lava-validate", timeout=120)
        result = pytester.runpytest_subprocess(*common, "--lava-results", "results", "-rA", "-v",
                                               "--lava-console", "--junitxml=j.xml", timeout=180)
    out = result.stdout.str() + result.stderr.str()
    assert validate.ret == 0, validate.stdout.str()
    assert "alice" in validate.stdout.str() and PASSWORD not in validate.stdout.str() + validate.stderr.str()
    assert result.ret != 0, out
    assert "[job]" in out and "127.0.0.1" in out, out  # a clear job error naming the host
    assert PASSWORD not in out
    scanned = 0
    for root in (pytester.path / "results", state, pytester.path / "j.xml"):
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file():
                scanned += 1
                assert PASSWORD.encode() not in path.read_bytes(), path
    assert scanned >= 4  # bundle, summary, console log, spool or health record, JUnit
    health = [json.loads(p.read_text()) for p in state.rglob("health/*.json")]
    assert health and all(h.get("consecutive_infra_failures", 0) == 0 for h in health), health  # the job's fault
