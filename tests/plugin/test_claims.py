"""Under xdist, a worker that is up claims the jobs of workers still starting and runs them side by
side, each on a thread of its own (plugin/claims.py, jobs/background.py): the jobs really overlap,
every item gets exactly the outcome it gets without xdist, and only the actions of selected items
run. The boards here are host-only (a conftest board type the actions never touch): the actions
record when they ran."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.plugin.test_live_cases import HOST_ONLY_BOARD

CONFTEST = """
import json
import os
import time

from pytest_lava.core.errors import InfrastructureError, TestFailure
from pytest_lava.results.model import CaseResult

OUTCOMES = {}


def _record(ctx, params):
    start = time.time()
    time.sleep(params.get("sleep", 0))
    with open(os.path.join(os.environ["RAN_DIR"], "ran.log"), "a") as f:
        f.write(json.dumps({"job": ctx.job.name, "action": params.get("name", ""), "start": start,
                            "end": time.time(), "pid": os.getpid()}) + "\\n")


def host_setup(ctx, params):
    _record(ctx, params)
    if params.get("fail"):
        raise InfrastructureError("the setup broke")


def host_test(ctx, params):
    _record(ctx, params)
    ctx.report([CaseResult("case-" + params.get("name", ""), params.get("case", "pass"))])
    if params.get("fail") == "test":
        raise TestFailure("the test failed")
    if params.get("fail") == "lab":
        raise InfrastructureError("the lab broke")


""" + HOST_ONLY_BOARD + """

def pytest_lava_actions():
    from pytest_lava.actions.spec import SETUP, TEST, ActionSpec, Param

    params = {"name": Param(str), "sleep": Param((int, float)), "fail": Param((bool, str)), "case": Param(str)}
    return [ActionSpec("host_setup", SETUP, params=params, run=host_setup),
            ActionSpec("host_test", TEST, params=params, run=host_test, item_label=lambda p: p["name"])]


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        OUTCOMES.setdefault(report.nodeid, []).append((report.when, report.outcome))


def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        with open("outcomes.json", "w") as f:
            json.dump(OUTCOMES, f, sort_keys=True)
"""

SLEEPY = """
job_name: {name}
device_type: host
timeout: 120
actions:
  - command: host_setup
    parameters: {{name: boot, sleep: 1.5}}
  - command: host_test
    parameters: {{name: t1}}
"""

MIXED = """
job_name: mixed
device_type: host
timeout: 120
actions:
  - command: host_setup
    parameters: {name: deploy}
  - command: host_test
    parameters: {name: passes}
  - command: host_test
    parameters: {name: fails, fail: test, case: fail}
  - command: host_test
    parameters: {name: lab-breaks, fail: lab}
  - command: host_setup
    parameters: {name: reboot, fail: true}
  - command: host_test
    parameters: {name: after-the-broken-setup}
  - command: host_setup
    parameters: {name: trailing}
"""


@pytest.fixture
def lab(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    (pytester.path / "lab" / "device-types").mkdir(parents=True)
    (pytester.path / "lab" / "device-types" / "host.yaml").write_text("board_type: host-only\n")
    for n in (1, 2, 3):
        (pytester.path / "lab" / f"host0{n}.yaml").write_text(
            "device_type: host\nboard_type: host-only\nconnection: socket://127.0.0.1:9\n")
    pytester.makeconftest(CONFTEST)
    monkeypatch.setenv("RAN_DIR", str(pytester.path))
    return pytester.path


def sleepy_jobs(lab: Path, n: int) -> list[str]:
    """``n`` jobs of one 1.5 s setup action and one test action: job0.yaml, job1.yaml, ..."""
    for i in range(n):
        (lab / f"job{i}.yaml").write_text(SLEEPY.format(name=f"job{i}"))
    return [f"job{i}.yaml" for i in range(n)]


def run(pytester: pytest.Pytester, jobs: list[str], *args: str) -> tuple[pytest.RunResult, dict, list[dict]]:
    argv = ["-p", "no:cacheprovider", "--lava-devices", "lab", "--lava-results", "results", *args]
    for job in jobs:
        argv += ["--lava-job", job]
    log = pytester.path / "ran.log"
    log.unlink(missing_ok=True)
    result = pytester.runpytest_subprocess(*argv, timeout=300)
    outcomes = json.loads((pytester.path / "outcomes.json").read_text())
    ran = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, outcomes, ran


def test_a_worker_that_is_up_runs_the_jobs_of_starting_workers_side_by_side(
        pytester: pytest.Pytester, lab: Path) -> None:
    jobs = sleepy_jobs(lab, 3)
    result, outcomes, ran = run(pytester, jobs, "-n", "3", "-v")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=6)  # three test actions, each with one case
    boots = sorted((r for r in ran if r["action"] == "boot"), key=lambda r: r["start"])
    assert len(boots) == 3
    assert boots[-1]["start"] < boots[0]["end"], boots  # all three boots overlapped in time
    assert len({r["pid"] for r in ran}) == 1  # by the first worker up: it claimed all three
    bundles = sorted(p.parent.name for p in (lab / "results").glob("*/bundle.json"))
    assert bundles == ["job0", "job1", "job2"]


def test_every_item_gets_the_outcome_it_gets_without_xdist(pytester: pytest.Pytester, lab: Path) -> None:
    (lab / "mixed.yaml").write_text(MIXED)
    serial, serial_outcomes, serial_ran = run(pytester, ["mixed.yaml"])
    claimed, outcomes, ran = run(pytester, ["mixed.yaml"], "-n", "2")
    assert serial.ret == claimed.ret == 1
    assert outcomes == serial_outcomes
    short = {nodeid.split("::", 1)[1]: [tuple(x) for x in seen] for nodeid, seen in outcomes.items()}
    assert short["host_test[passes]"] == [("call", "passed")]
    assert short["host_test[fails]"] == [("call", "failed")]
    assert short["host_test[lab-breaks]"] == [("setup", "failed")]  # a broken lab is an error
    assert short["host_test[after-the-broken-setup]"] == [("setup", "failed")]  # its setup broke
    assert short["host_setup"] == [("setup", "failed")]  # the trailing setup: after the broken one
    assert [r["action"] for r in ran] == [r["action"] for r in serial_ran] == [
        "deploy", "passes", "fails", "lab-breaks", "reboot"]


def test_only_the_actions_of_selected_items_run(pytester: pytest.Pytester, lab: Path) -> None:
    (lab / "mixed.yaml").write_text(MIXED)
    result, outcomes, ran = run(pytester, ["mixed.yaml"], "-n", "2", "-k", "passes")
    assert result.ret == 0, result.stdout.str()
    assert [r["action"] for r in ran] == ["deploy", "passes"]


def test_jobs_whose_board_type_hook_answers_an_instance_never_share_a_process(
        pytester: pytest.Pytester, lab: Path) -> None:
    """One driver object would serve jobs running side by side: such jobs are not claimed."""
    pytester.makeconftest(CONFTEST.replace("return HostOnly if name", "return HostOnly() if name"))
    jobs = sleepy_jobs(lab, 2)
    result, outcomes, ran = run(pytester, jobs, "-n", "2")
    assert result.ret == 0, result.stdout.str()
    boots = sorted((r for r in ran if r["action"] == "boot"), key=lambda r: r["start"])
    assert len(boots) == 2
    side_by_side = boots[1]["start"] < boots[0]["end"]
    assert not (side_by_side and boots[0]["pid"] == boots[1]["pid"]), boots


ORDER = """

def _note(config, what):
    with open(os.path.join(os.environ["RAN_DIR"], "workers.log"), "a") as f:
        f.write(json.dumps({"worker": config.workerinput["workerid"], what: time.time()}) + "\\n")


def pytest_configure(config):
    if hasattr(config, "workerinput"):
        _note(config, "configured")


import pytest


@pytest.hookimpl(tryfirst=True)  # before the plugin's own: the claims are made after this moment
def pytest_collection_finish(session):
    if hasattr(session.config, "workerinput"):
        _note(session.config, "collected")
"""


def test_the_other_workers_start_once_the_first_has_claimed(pytester: pytest.Pytester, lab: Path) -> None:
    """The controller holds the other workers back until the first one up has claimed the jobs, so
    that it does not share the host's CPUs with them while it starts (claims.Gate)."""
    pytester.makeconftest(CONFTEST + ORDER)
    jobs = sleepy_jobs(lab, 2)
    result, outcomes, ran = run(pytester, jobs, "-n", "3")
    assert result.ret == 0, result.stdout.str()
    notes = [json.loads(line) for line in (lab / "workers.log").read_text().splitlines()]
    collected = {n["worker"]: n["collected"] for n in notes if "collected" in n}
    configured = {n["worker"]: n["configured"] for n in notes if "configured" in n}
    assert sorted(configured) == ["gw0", "gw1", "gw2"]
    assert configured["gw1"] > collected["gw0"] and configured["gw2"] > collected["gw0"], notes
    assert {r["pid"] for r in ran if r["action"] == "boot"} and len({r["pid"] for r in ran}) == 1
