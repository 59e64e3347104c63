"""testdef_repos on the lab, as a user runs a job: a test-built repository of the shape found in
the wild (tests/testdef_repo.py, with a 40 MB prebuilt binary) cloned on the host and put on a
qemu board and on the arm64 master-image board's test image; each case of each definition is its
own pytest result, a definition whose steps all fail is a failure, and the delivery time is
measured (printed, and kept in the bundle as the test run attribute ``testdef.payload``).

Lab use: the artifact server is ``lab/labctl serve`` (lab_http, stopped if this module started
it); arm64-01 is started by the session's ``arm64_board`` fixture and stopped at the end. The qemu
job's QEMU is started and killed by the harness itself.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.test_jobs_e2e import (  # noqa: F401  (lab_http is a fixture used here)
    JOB_TIMEOUT,
    REPO,
    gone,
    junit_cases,
    lab_http,
    results_of,
    runs_of,
)
from tests.testdef_repo import ALPHA_CASES, BETA_CASES, BROKEN_CASES, make_repo

pytestmark = pytest.mark.lab
BLOB_BYTES = 40 * 1024 * 1024
MAX_DELIVERY_S = 60.0  # "seconds, not minutes": 42 MB measured in 6.7 s on the qemu board (TCG, busy host)


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_repo(tmp_path_factory.mktemp("testdef-repo") / "upstream", blob_bytes=BLOB_BYTES)


def _repos(url: str) -> list[dict[str, Any]]:
    return [{"git-repo": url, "testdef": "automated/linux/alpha/alpha.yaml", "parameters": {"LOOPS": "7"}},
            {"repository": url, "from": "git", "path": "automated/linux/beta/beta.yaml", "name": "beta"},
            {"git-repo": url, "testdef": "automated/linux/broken/broken.yaml"}]


@pytest.fixture(autouse=True)
def own_cache(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads and the repository checkouts go to the test's directory (removed with it)."""
    monkeypatch.setenv("PYTEST_LAVA_CACHE", str(pytester.path / "cache" / "downloads"))


def _run(pytester: pytest.Pytester, job: dict[str, Any], *args: str) -> tuple[pytest.RunResult, list[Any], Path]:
    path = pytester.path / f"{job['job_name']}.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--lava-job", str(path), "--lava-devices", str(REPO / "devices"),
        "--lava-results", "results", "--junitxml", "r.xml", "-rA", *args, timeout=JOB_TIMEOUT)
    xml = pytester.path / "r.xml"
    assert xml.is_file(), "\n".join(result.outlines[-60:])
    return result, junit_cases(xml), pytester.path / "results" / job["job_name"]


def _check_cases(cases: list[Any], output: str) -> dict[str, Any]:
    """Each case of each definition is its own pytest result; returns them by '<def>.<case>'."""
    by_name = {c.case: c for c in cases if "::" in c.name}
    for prefix, expected in (("alpha", ALPHA_CASES), ("beta", BETA_CASES)):
        for case in expected:
            got = by_name.get(f"{prefix}.{case}")
            assert got is not None and got.outcome == "passed", (prefix, case, sorted(by_name), output[-4000:])
    assert by_name["alpha.install-deps"].outcome == "skipped"  # no apt-get on busybox: a clear skip
    assert by_name["alpha.loops"].properties["measurement"].startswith("7")  # parameters override params
    assert by_name["alpha.loops"].properties["units"] == "count"
    assert float(by_name["alpha.blob-size"].properties["measurement"]) == BLOB_BYTES
    assert by_name["beta.speed"].properties == {**by_name["beta.speed"].properties, "units": "MB/s"}
    return by_name


def _delivery_seconds(results: Path) -> float:
    bundle = json.loads((results / "bundle.json").read_text())
    notes = [r["attributes"].get("testdef.payload", "") for r in bundle["test_runs"]]
    network = [n for n in notes if " by network in " in n]
    assert network, notes
    seconds = float(re.search(r" in ([0-9.]+) s", network[0]).group(1))  # type: ignore[union-attr]
    print(f"testdef repository delivery: {network[0]}")
    return seconds


@pytest.mark.usefixtures("lab_http")
def test_qemu_board_runs_three_definitions_of_a_40mb_repository(pytester: pytest.Pytester, big_repo: str) -> None:
    kmsg = {"metadata": {"format": "Lava-Test Test Definition 1.0", "name": "kmsg"},
            "run": {"steps": ['echo "<0><LAVA_SIGNAL_TESTCASE TEST_CASE_ID=raw-kmsg RESULT=pass>" > /dev/kmsg',
                              "LAVA_KMSG=1 lava-test-case helper-kmsg --result pass --measurement 1 --units s",
                              "sleep 1"]}}
    job = {"job_name": "testdef-repos-qemu", "device_type": "qemu", "timeout": 1500, "actions": [
        {"command": "deploy_linaro_kernel", "parameters": {
            "kernel": "http://127.0.0.1:7080/x86_64/vmlinuz",
            "ramdisk": "http://127.0.0.1:7080/x86_64/initramfs.cpio.gz"}},
        {"command": "boot_linaro_image"},
        {"command": "lava_test_shell", "parameters": {"testdef_repos": _repos(big_repo), "timeout": 900}},
        {"command": "lava_test_shell", "parameters": {"testdefs": [kmsg], "timeout": 300}},
    ]}
    result, cases, results = _run(pytester, job)
    output = "\n".join(result.outlines)
    by_name = _check_cases(cases, output)
    for case in BROKEN_CASES:  # every step of "broken" failed: visible, each with its exit status
        assert by_name[f"broken.{case}"].outcome == "failed", output[-4000:]
    broken_action = [c for c in cases if "::" not in c.name and "alpha+beta+broken" in c.name]
    assert broken_action and broken_action[0].outcome == "failed", [c.name for c in cases]
    assert "broken: no test case, and run step 1 exited" in output
    assert {by_name["raw-kmsg"].outcome, by_name["helper-kmsg"].outcome} == {"passed"}, output[-3000:]
    seconds = _delivery_seconds(results)
    assert seconds < MAX_DELIVERY_S, f"the 40 MB repository took {seconds:.1f} s to reach the board"
    console = (results / "console.log").read_text()
    pids = [int(p) for p in re.findall(r"started qemu-system-x86_64 .*\(pid (\d+)\)", console)]
    assert pids and all(gone(p) for p in pids), f"the job's QEMU {pids} is still running"


@pytest.mark.usefixtures("lab_http")
def test_master_image_board_runs_the_repository_on_its_test_image(pytester: pytest.Pytester, arm64_board: Any,
                                                                  big_repo: str) -> None:
    job = {"job_name": "testdef-repos-arm64", "device_type": "lab-arm64-master", "timeout": 2400, "actions": [
        {"command": "boot_master_image"},
        # the busybox root: no package manager, so alpha's install deps are a skip (the Debian image's apt
        # would try to install them from the lab's repository, which does not carry them)
        {"command": "deploy_linaro_image", "parameters": {
            "hwpack": "http://127.0.0.1:7080/hwpack_lab-arm64.tar.gz",
            "rootfs": "http://127.0.0.1:7080/rootfs_lab-busybox-arm64.tar.gz"}},
        {"command": "boot_linaro_image"},
        {"command": "lava_test_shell", "parameters": {"testdef_repos": _repos(big_repo)[:2], "timeout": 900}},
    ]}
    result, cases, results = _run(pytester, job, "--lava-device", str(arm64_board.name))
    output = "\n".join(result.outlines)
    _check_cases(cases, output)
    assert result.ret == 0, output[-4000:]
    runs = runs_of(json.loads((results / "bundle.json").read_text()))
    assert results_of(runs["lava"]).get("boot_linaro_image") == "pass"
    seconds = _delivery_seconds(results)
    assert seconds < MAX_DELIVERY_S, f"the 40 MB repository took {seconds:.1f} s to reach the board"
