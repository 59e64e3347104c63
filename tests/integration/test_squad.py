"""The SQUAD sink against a real SQUAD server (PyPI ``squad``, SQLite) on 127.0.0.1.

Needs ``python tests/integration/squad_server.py install`` first (its own virtualenv, see that
file); skipped with that instruction otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_lava.core.secrets import Masker
from pytest_lava.results.model import CaseResult, JobResults, TestRun
from pytest_lava.submit import SubmitTarget, submit_bundle
from tests.integration import squad_server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not squad_server.installed(),
                       reason=f"SQUAD is not installed in {squad_server.VENV}: run "
                              "'python tests/integration/squad_server.py install'"),
]


@pytest.fixture(scope="module")
def squad(tmp_path_factory: pytest.TempPathFactory):
    server = squad_server.SquadServer(tmp_path_factory.mktemp("squad"))
    server.start()
    yield server
    server.stop()


def make_bundle(tmp_path: Path, token: str, name: str = "smoke") -> Path:
    res = JobResults(job_name=name, job_file="jobs/smoke.yaml", results_dir=tmp_path / name,
                     hostname="qemu01", device_type="qemu-x86_64", tags=["ci"], secrets=Masker([token]))
    res.add_action("deploy_linaro_image", "pass", duration=3.0)
    res.add_action("boot_image", "pass")
    res.add_test_run(TestRun("stream", [CaseResult("copy", "pass", measurement=812.5, units="MB/s"),
                                        CaseResult("scale", "fail", "too slow")], {}))
    log = tmp_path / f"{name}-console.log"
    log.write_text("Linux version 6.1.0\nlogin:\n")
    res.set_serial_log(log)
    return res.finish(job_complete=True)


def target(squad: squad_server.SquadServer, token: str | None = None, project: str | None = None) -> SubmitTarget:
    url = f"squad+{squad.base_url}/{squad.group}/{project or squad.project}"
    return SubmitTarget(url, token=token if token is not None else squad.token)


def submit(path: Path, tgt: SubmitTarget, name: str = "smoke"):
    lines: list[str] = []
    outcome = submit_bundle(path, tgt, job_name=name, timeout=60, spool_dir=path.parent / "spool",
                            log=lines.append, backoff=0.2)
    return outcome, "\n".join(lines)


def test_bundle_lands_in_squad(squad: squad_server.SquadServer, tmp_path: Path) -> None:
    path = make_bundle(tmp_path, squad.token)
    outcome, log = submit(path, target(squad))
    assert outcome.ok, outcome.message
    assert squad.token not in log + outcome.message
    (run,) = [r for r in squad.testruns() if r["build"] == "smoke"]
    assert run["environment"] == "qemu-x86_64"
    assert run["tests"]["stream/copy"] is True and run["tests"]["stream/scale"] is False
    assert run["tests"]["lava/job_complete"] is True
    assert run["metrics"]["stream/copy"] == 812.5
    assert "Linux version 6.1.0" in run["log"]
    assert "bundle.json" in run["attachments"]
    assert run["metadata"]["target.hostname"] == "qemu01"

    again, _ = submit(path, target(squad))
    assert not again.ok and again.status == "duplicate" and again.spooled is None


def test_bad_token_and_unknown_project(squad: squad_server.SquadServer, tmp_path: Path) -> None:
    path = make_bundle(tmp_path, "not-the-token", "other")
    bad, _ = submit(path, target(squad, token="not-the-token"), "other")
    assert not bad.ok and bad.status == "forbidden" and bad.spooled is not None
    missing, _ = submit(path, target(squad, project="nope"), "other")
    assert not missing.ok and missing.status == "not-found"


def test_spooled_bundle_is_resubmitted_to_squad(squad: squad_server.SquadServer, tmp_path: Path) -> None:
    path = make_bundle(tmp_path, squad.token, "late")
    dead = SubmitTarget(f"squad+http://127.0.0.1:{squad_server.free_port()}/lab/smoke", token=squad.token)
    down, _ = submit(path, dead, "late")
    assert not down.ok and down.spooled is not None
    env = dict(os.environ, LAVA_TOKEN=squad.token)
    done = subprocess.run(
        [sys.executable, "-m", "pytest_lava", "resubmit", str(path.parent), "--server",
         f"squad+{squad.base_url}/{squad.group}/{squad.project}", "--timeout", "60"],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert squad.token not in done.stdout + done.stderr
    assert [r for r in squad.testruns() if r["build"] == "late"]
