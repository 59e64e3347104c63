"""Every example job in jobs/ run through pytest on the lab, as a user runs it.

Each job is run in a subprocess (``pytester.runpytest_subprocess``) with the repository's
``devices/`` and a fresh results directory, and the tests look at what a user would: the pass/fail
counts, one JUnit ``<testcase>`` per test case (measurements as properties), the result bundle,
and ``uname -r`` of the kernel each kernel-matrix variant booted.

Lab use: the artifact server is started with ``lab/labctl serve`` (and stopped afterwards by its
PID file, when this module started it); the arm64 jobs are pinned to ``arm64-01`` with
``--lava-device``, which the ``arm64_board`` fixture starts with ``lab/labctl start`` and stops
with ``lab/labctl stop arm64-01`` (by PID file) at the end of the session. The qemu job needs no
lab board: the harness starts and kills its own QEMU.
"""

from __future__ import annotations

import base64
import json
import os
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "jobs"
JOB_TIMEOUT = 2400  # seconds for one job's pytest subprocess (TCG, other engineers' QEMUs running)
pytestmark = pytest.mark.lab


@dataclass
class Case:
    name: str  # the JUnit name: "<action>[<label>::<case>]"
    outcome: str  # passed / failed / error / skipped
    properties: dict[str, str]

    @property
    def definition(self) -> str:
        """The test definition a case came from: 'smoke' for '...::smoke.kernel-version]', else the
        action's label ('stream' for 'lava_test_run[stream::Fill]')."""
        label, _, case = self.name[self.name.index("[") + 1:-1].partition("::")
        if "." in case:
            return case.split(".", 1)[0]
        return re.sub(r"-kernel-[ab]$", "", label)

    @property
    def case(self) -> str:
        """The test case's own name: 'Fill' for 'lava_test_run[stream::Fill]'."""
        return self.name[self.name.index("[") + 1:-1].partition("::")[2]


@dataclass
class JobRun:
    result: pytest.RunResult
    cases: list[Case]  # JUnit testcases of test cases (not of whole actions)
    actions: list[Case]  # JUnit testcases of the test actions themselves
    results: Path

    @property
    def output(self) -> str:
        return "\n".join(self.result.outlines + self.result.errlines)

    def by_definition(self) -> dict[str, list[Case]]:
        out: dict[str, list[Case]] = defaultdict(list)
        for c in self.cases:
            out[c.definition].append(c)
        return out

    def bundle(self, job_id: str) -> dict[str, Any]:
        path = self.results / job_id / "bundle.json"
        assert path.is_file(), f"no result bundle {path}; results: {sorted(p.name for p in self.results.iterdir())}"
        return json.loads(path.read_text())


def junit_cases(xml: Path) -> list[Case]:
    cases = []
    for tc in ET.parse(xml).getroot().iter("testcase"):
        outcome = "passed"
        for child, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            if tc.find(child) is not None:
                outcome = name
        props = {p.get("name", ""): p.get("value", "") for p in tc.iter("property")}
        cases.append(Case(tc.get("name", ""), outcome, props))
    return cases


def run_job(pytester: pytest.Pytester, job: str, *args: str) -> JobRun:
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--lava-job", str(JOBS / job), "--lava-devices", str(REPO / "devices"),
        "--lava-results", "results", "--junitxml", "r.xml", "-rA", *args, timeout=JOB_TIMEOUT)
    xml = pytester.path / "r.xml"
    assert xml.is_file(), "\n".join(result.outlines[-60:])
    all_cases = junit_cases(xml)
    run = JobRun(result, [c for c in all_cases if "::" in c.name], [c for c in all_cases if "::" not in c.name],
                 pytester.path / "results")
    print(f"{job}: {result.parseoutcomes()}")
    return run


def assert_all_passed(run: JobRun) -> None:
    outcomes = run.result.parseoutcomes()
    bad = [c.name for c in run.cases + run.actions if c.outcome != "passed"]
    assert run.result.ret == 0 and not bad and not outcomes.get("failed") and not outcomes.get("errors"), (
        f"not passed: {bad}\n{run.output[-6000:]}")
    assert outcomes.get("passed", 0) == len(run.cases) + len(run.actions)


def runs_of(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["test_id"]: r for r in bundle["test_runs"]}


def results_of(run: dict[str, Any]) -> dict[str, str]:
    return {r["test_case_id"]: r["result"] for r in run["test_results"]}


def attachment(run: dict[str, Any], pathname: str) -> str:
    for a in run.get("attachments", []):
        if a["pathname"] == pathname:
            return base64.b64decode(a["content"]).decode(errors="replace")
    raise AssertionError(f"{run['test_id']}: no attachment {pathname}")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def lab_pid(lab_tools: Any, name: str) -> int | None:
    p = lab_tools.labctl("status", "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["processes"][name]["pid"]


@pytest.fixture(scope="module")
def artifacts(lab_built: Path) -> dict[str, Any]:
    return json.loads((lab_built / "www/artifacts.json").read_text())


@pytest.fixture(scope="module")
def lab_http(lab_built: Path, lab_tools: Any) -> Any:
    """The lab's artifact server (what every job downloads from); stopped at the end only when
    this module started it (other sessions may be using the lab)."""
    before = lab_pid(lab_tools, "http")
    p = lab_tools.labctl("serve")
    assert p.returncode == 0, p.stdout + p.stderr
    yield
    if before is None:
        pid = lab_pid(lab_tools, "http")
        lab_tools.labctl("stop", "http")
        assert pid is None or gone(pid), f"HTTP server pid {pid} still running"


@pytest.fixture
def arm64(arm64_board: Any, lab_http: None) -> str:
    """arm64-01, started by lab/labctl (session fixture, stopped by PID file at the end)."""
    return str(arm64_board.name)


def test_qemu_x86_64_smoke_job(pytester: pytest.Pytester, lab_http: None, artifacts: dict[str, Any]) -> None:
    run = run_job(pytester, "qemu-x86_64-smoke.yaml")
    assert_all_passed(run)
    defs = run.by_definition()
    assert set(defs) == {"smoke", "posix", "stream"}, defs.keys()
    for name, cases in defs.items():
        assert len(cases) >= 5, f"{name}: only {[c.name for c in cases]}"
    stream = {c.case: c.properties for c in defs["stream"]}
    assert set(stream) == {"Fill", "Write", "Rewrite", "Read", "Copy"}
    for case, props in stream.items():
        assert props["units"] == "MB/s" and float(props["measurement"]) > 0, (case, props)
    mem = next(c for c in defs["smoke"] if c.case == "smoke.mem-total")
    assert mem.properties["units"] == "kB" and float(mem.properties["measurement"]) > 100_000

    runs = runs_of(run.bundle("qemu-x86_64-smoke"))
    for name in ("smoke", "posix", "stream"):
        assert set(results_of(runs[name]).values()) == {"pass"}, results_of(runs[name])
    assert attachment(runs["smoke"], "logs/kernel-version.log").count(artifacts["x86_64_kernel_version"]) >= 1
    lava = results_of(runs["lava"])
    for step in ("deploy_linaro_kernel", "boot_linaro_image", "lava_test_install (stream)",
                 "lava_test_run (stream)"):
        assert lava.get(step) == "pass", lava

    console = (run.results / "qemu-x86_64-smoke/console.log").read_text()
    pids = [int(p) for p in re.findall(r"started qemu-system-x86_64 .*\(pid (\d+)\)", console)]
    started = next(line for line in console.splitlines() if "started qemu-system-x86_64" in line)
    assert len(pids) == 1 and "lab/build/x86_64" not in started  # the kernel came over HTTP, not the device's
    assert gone(pids[0]), f"the job's QEMU (pid {pids[0]}) is still running"


def test_arm64_linaro_job(pytester: pytest.Pytester, arm64: str) -> None:
    run = run_job(pytester, "lab-arm64-linaro.json", "--lava-device", arm64)
    assert_all_passed(run)
    defs = run.by_definition()
    assert {n: len(c) >= 5 for n, c in defs.items() if n != "lab-test-image"} == dict.fromkeys(
        ("smoke", "posix", "dmesg", "stream"), True), {n: len(c) for n, c in defs.items()}
    assert {c.case for c in defs["lab-test-image"]} == {
        "hostname-is-linaro", "test-image-marker", "apt-source"}
    runs = runs_of(run.bundle("lab-arm64-linaro"))
    lava = results_of(runs["lava"])
    # stream was installed into the test rootfs from the master, before the test image booted
    for step in ("boot_master_image", "deploy_linaro_image", "add_apt_repository", "lava_test_install (stream)",
                 "boot_image", "boot_linaro_image", "lava_test_run (stream)"):
        assert lava.get(step) == "pass", lava
    assert runs["smoke"]["attributes"]["target.hostname"] == arm64
    assert all(float(c.properties["measurement"]) > 0 for c in defs["stream"])


def test_arm64_kernel_matrix_job(pytester: pytest.Pytester, arm64: str, artifacts: dict[str, Any]) -> None:
    run = run_job(pytester, "lab-arm64-kernel-matrix.json", "--lava-device", arm64, "-v")
    assert_all_passed(run)
    kernels = artifacts["kernels"]
    assert set(kernels) == {"kernel-a", "kernel-b"}
    if artifacts["kernel_matrix_distinct"]:
        assert kernels["kernel-a"]["kernel_version"] != kernels["kernel-b"]["kernel_version"]
    for role, facts in kernels.items():
        # one parametrized run per kernel, its id in every node id, its own cases and bundle
        ids = [c.name for c in run.cases if f"-{role}::" in c.name]
        assert len(ids) >= 5 and any(i.endswith("::smoke.kernel-version]") for i in ids), ids
        assert any(f"[smoke+dmesg-{role}::smoke.kernel-version] PASSED" in line for line in run.result.outlines)
        runs = runs_of(run.bundle(f"lab-arm64-kernel-matrix-{role}"))
        uname = attachment(runs["smoke"], "logs/kernel-version.log")
        assert re.search(rf"^{re.escape(facts['kernel_version'])}\r?$", uname, re.M), (role, facts, uname)
        assert set(results_of(runs["dmesg"]).values()) == {"pass"}, results_of(runs["dmesg"])


def test_arm64_image_job(pytester: pytest.Pytester, arm64: str) -> None:
    run = run_job(pytester, "lab-arm64-image.json", "--lava-device", arm64)
    assert_all_passed(run)
    names = {c.case for c in run.cases}
    assert {"lab-test-image.hostname-is-linaro", "lab-test-image.test-image-marker", "smoke.kernel-version",
            "smoke.loopback-ping"} <= names
    runs = runs_of(run.bundle("lab-arm64-image"))
    assert results_of(runs["lava"]).get("deploy_linaro_image") == "pass"


def test_fastmodel_job(pytester: pytest.Pytester, lab_http: None) -> None:
    """A simulator board (QEMU playing a Fast Model): the disk image built on the host from the
    hwpack+rootfs, the console port read from the simulator's output, the job's boot option
    applied, rtsm.log in the results and the bundle, the simulator gone afterwards."""
    run = run_job(pytester, "lab-fastmodel.json")
    assert_all_passed(run)
    defs = run.by_definition()
    assert {c.case.removeprefix("lab-simulator-image.") for c in defs["lab-simulator-image"]} == {
        "hostname-is-linaro", "test-image-marker", "root-on-built-image", "boot-option-memory"}
    assert len(defs["smoke"]) >= 5 and len(defs["stream"]) == 5
    results = run.results / "lab-fastmodel"
    rtsm = (results / "rtsm.log").read_text()
    port = re.search(r"QEMU waiting for connection on: disconnected:telnet:127\.0\.0\.1:(\d+)", rtsm)
    assert port and int(port.group(1)) > 0, rtsm[-2000:]
    assert " -m 768" in rtsm.splitlines()[0]  # the job's option over the device's default (1024)
    runs = runs_of(run.bundle("lab-fastmodel"))
    assert attachment(runs["lava"], "rtsm.log") == rtsm
    assert runs["lava"]["attributes"]["target.simulator_version"].startswith("QEMU emulator version")
    console = (results / "console.log").read_text()
    pids = [int(p) for p in re.findall(r"started qemu-system-aarch64 .*\(pid (\d+)\)", console)]
    assert len(pids) == 1 and gone(pids[0]), f"simulator pids {pids} still running"
    assert "lab/build" not in rtsm.splitlines()[0]  # the kernel came from the image built on the host


def test_arm64_lava_test_job(pytester: pytest.Pytester, arm64: str) -> None:
    """The classic lava-test library on the Debian test image, its packages from the lab's apt
    repositories (one of them added by the job with add_apt_repository)."""
    run = run_job(pytester, "lab-arm64-lava-test.json", "--lava-device", arm64)
    assert_all_passed(run)
    defs = run.by_definition()
    posix = [c.case for c in run.cases if c.name.startswith("lava_test_run[posixtestsuite::")]
    assert len(posix) >= 500 and all(c.startswith("conformance.interfaces.sigaction.") for c in posix), posix[:5]
    assert {c.case for c in defs["debian-image"]} >= {"dpkg-database", "lab-apt-source", "apt-get-install-stress-ng",
                                                       "stress-ng-cpu", "install-deb-hackbench"}
    assert {c.case for c in defs["stream"]} == {"Fill", "Write", "Rewrite", "Read", "Copy"}
    smem = {c.case: c.properties for c in defs["smem"]}
    assert set(smem) == {"kerneldynamicmemory", "userspacememory", "freememory"}
    assert all(props["units"] == "KB" and float(props["measurement"]) >= 0 for props in smem.values())
    assert {c.case for c in defs["device_tree"]} >= {"dt-present", "dtc-decompile", "compatible", "cpus", "memory"}
    lava = results_of(runs_of(run.bundle("lab-arm64-lava-test"))["lava"])
    for step in ("add_apt_repository", "lava_test_install apt-get update", "lava_test_install deb (rt-tests)",
                 "lava_test_install (posixtestsuite)", "lava_test_install (smem)", "lava_test_install (device_tree)"):
        assert lava.get(step) == "pass", lava


def test_every_job_is_covered() -> None:
    """A job added to jobs/ gets an end-to-end test here too."""
    covered = {"qemu-x86_64-smoke.yaml", "lab-arm64-linaro.json", "lab-arm64-kernel-matrix.json",
               "lab-arm64-image.json", "lab-fastmodel.json", "lab-arm64-lava-test.json",
               "lab-arm64-old-2012.json",  # tests/lab/test_old_lab_e2e.py (old INI devices, each console kind)
               "lab-arm64-android.json"}  # tests/lab/test_android_e2e.py (then the real adb client, the fixtures)
    assert {p.name for p in JOBS.iterdir() if p.suffix in (".json", ".yaml", ".yml")} == covered
