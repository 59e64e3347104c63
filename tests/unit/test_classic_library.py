"""The classic lava-test library (pytest_lava/testdefs/classic): names, definitions, parsing of
each test's real output format, validation of unknown names, and apt on the image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_lava.actions.apt import apt_entry
from pytest_lava.core.errors import JobError, ProblemList
from pytest_lava.jobs.job import load_job
from pytest_lava.testdefs.classic import check_tests, classic_names, load_classic, resolve_test
from pytest_lava.testdefs.model import LAVA_TEST
from pytest_lava.testdefs.parse import CaseCollector
from tests.unit.test_lava_test_actions import make_ctx, run  # noqa: F401  (fixture)

POSIX_OUTPUT = """\
conformance/interfaces/sigaction/1-1 execution: PASSED
    Test FAILED: sigaction did not return 0
conformance/interfaces/sigaction/10-1 execution: FAILED
conformance/interfaces/sigaltstack/9-1 execution: UNSUPPORTED
conformance/interfaces/sem_open/2-2 execution: UNRESOLVED
conformance/interfaces/mq_close/4-1 execution: INTERRUPTED
"""
SMEM_OUTPUT = """\
Area                           Used      Cache   Noncache
firmware/hardware                 0          0          0
kernel image                      0          0          0
kernel dynamic memory         41296      31452       9844
userspace memory              10876       6508       4368
free memory                  944736     944736          0
"""
PERF_OUTPUT = """\
  1: vmlinux symtab matches kallsyms                                 : Skip
  2: Detect openat syscall event                                     : Ok
 10: Parse event definition strings                                  : FAILED!
"""
TJBENCH_LINE = "RGB\tTD\t4:4:4\t95\t256\t256\t2.85\t61.12\t6.07\n"


def collect(name: str, output: str):  # type: ignore[no-untyped-def]
    collector = CaseCollector(load_classic(name))  # type: ignore[arg-type]
    for line in output.splitlines():
        collector.feed(line)
    collector.finish()
    return collector.cases


def test_the_library_has_six_classic_tests_that_load_as_lava_test_definitions() -> None:
    names = classic_names()
    assert len(names) >= 6 and {"posixtestsuite", "stream", "smem", "perf"} <= set(names)
    for name in names:
        definition = load_classic(name)
        assert definition is not None and definition.dialect == LAVA_TEST and definition.name == name
        assert definition.default_options is not None and definition.steps_for(None)
    assert load_classic("device-tree").name == "device_tree"  # "-" and "_" are one, as in lava-test
    assert load_classic("posixtestsuite").deps == ["lab-posixtestsuite"]
    assert load_classic("nosuch") is None


def test_posixtestsuite_cases_have_dotted_ids_and_the_old_fixupdict() -> None:
    cases = collect("posixtestsuite", POSIX_OUTPUT)
    assert [(c.test_case_id, c.result) for c in cases] == [
        ("conformance.interfaces.sigaction.1-1", "pass"), ("conformance.interfaces.sigaction.10-1", "fail"),
        ("conformance.interfaces.sigaltstack.9-1", "skip"), ("conformance.interfaces.sem_open.2-2", "unknown"),
        ("conformance.interfaces.mq_close.4-1", "skip")]
    assert "did not return 0" in cases[1].log_excerpt
    steps = load_classic("posixtestsuite").steps_for("-t 60 sigaction")  # type: ignore[union-attr]
    assert steps == ["/usr/lib/lab-posixtestsuite/run-tests -t 60 sigaction"]


def test_smem_perf_and_tjbench_keep_lava_tests_ids_measurements_and_appendall() -> None:
    smem = collect("smem", "\n".join(SMEM_OUTPUT.splitlines()[-3:]))
    assert [(c.test_case_id, c.measurement, c.units, c.result) for c in smem] == [
        ("kerneldynamicmemory", 41296, "KB", "pass"), ("userspacememory", 10876, "KB", "pass"),
        ("freememory", 944736, "KB", "pass")]
    perf = collect("perf", PERF_OUTPUT)
    assert [(c.test_case_id, c.result, c.message) for c in perf] == [
        ("vmlinuxsymtabmatcheskallsyms", "pass", "Skip"), ("Detectopenatsyscallevent", "pass", "Ok"),
        ("Parseeventdefinitionstrings", "pass", "FAILED")]
    fields = TJBENCH_LINE.split()
    ident = "_".join(fields[:4])
    lines = [f"{ident}-comp_perf: {fields[6]} Mpixels/s", f"{ident}-comp_ratio: {fields[7]} %",
             f"{ident}-dcomp_perf: {fields[8]} Mpixels/s"]
    tj = collect("tjbench", "\n".join(lines))
    assert [(c.test_case_id, c.measurement, c.units) for c in tj] == [
        ("RGB_TD_444_95-comp_perf", 2.85, "Mpixels/s"), ("RGB_TD_444_95-comp_ratio", 61.12, "%"),
        ("RGB_TD_444_95-dcomp_perf", 6.07, "Mpixels/s")]


def test_unknown_names_are_validation_problems_that_say_what_exists_or_where_to_get_it() -> None:
    problems = ProblemList("job.json")
    check_tests({"tests": ["posixtestsuite", "stream", "dmesg", "device-tree", "ltp", "nosuch", "my.yaml"]},
                problems, "actions[1].parameters")
    reasons = {p.path: p.reason for p in problems.problems}
    assert set(reasons) == {"actions[1].parameters.tests[4]", "actions[1].parameters.tests[5]"}
    ltp = reasons["actions[1].parameters.tests[4]"]
    assert "register" in ltp and "ltp" in ltp and "github.com/linux-test-project" in ltp
    assert "posixtestsuite" in reasons["actions[1].parameters.tests[5]"]
    registered = ProblemList("job.json")
    check_tests({"tests": ["ltp"], "register": ["http://x/ltp.json"]}, registered, "a")
    assert not registered.problems
    with pytest.raises(JobError, match="classic library has"):
        resolve_test("nosuch")
    assert resolve_test("smoke").name == "smoke"


def test_an_unknown_lava_test_run_name_is_a_validation_problem_unless_the_job_registers_definitions(
        tmp_path: Path) -> None:
    def job(*actions: dict) -> Path:
        path = tmp_path / "job.json"
        path.write_text(json.dumps({"timeout": 60, "actions": list(actions)}))
        return path

    run_it = {"command": "lava_test_run", "parameters": {"test_name": "nosuch"}}
    with pytest.raises(JobError) as error:
        load_job(job({"command": "lava_test_install", "parameters": {"tests": ["stream"]}}, run_it))
    [problem] = error.value.problems
    assert problem.path == "actions[1].parameters.test_name" and "classic library has" in problem.reason
    registering = {"command": "lava_test_install", "parameters": {"tests": ["stream"], "register": ["http://x/n.json"]}}
    assert load_job(job(registering, run_it)).actions[1].parameters["test_name"] == "nosuch"
    assert load_job(job({"command": "lava_test_run", "parameters": {"test_name": "local/def.yaml"}}))


def test_add_apt_repository_accepts_deb_options() -> None:
    name, lines = apt_entry("deb [trusted=yes] http://10.0.2.2:7080/lab-apt lab main", "bookworm")
    assert name == "archive_uri-10_0_2_2_7080_lab_apt-lab.list"
    assert lines == ["deb [trusted=yes] http://10.0.2.2:7080/lab-apt lab main"]
    with pytest.raises(JobError):
        apt_entry("deb [trusted=yes] lab main", "bookworm")


def test_apt_get_update_runs_before_debs_and_definition_deps_are_installed(make_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    calls = tmp_path / "apt.log"
    # apt-get "installs" python3-pip by copying a pip3 next to itself
    (tmp_path / "pip3.src").write_text(f'#!/bin/sh\necho "pip3 $PIP_BREAK_SYSTEM_PACKAGES $*" >> {calls}\n')
    fake_apt = (f'#!/bin/sh\necho "apt-get $*" >> {calls}\n'
                f'case "$*" in *python3-pip*) cp {tmp_path}/pip3.src "${{0%/*}}/pip3" && '
                'chmod +x "${0%/*}/pip3" ;; esac\n')
    ctx = make_ctx(overrides={"apt-get": fake_apt})
    ctx.test_shell()
    run("lava_test_install", ctx, {"tests": ["smem"], "install_deb": ["stress-ng"],
                                   "install_python": ["http://10.0.2.2:7080/python/x.whl"]})
    assert calls.read_text().splitlines() == [
        "apt-get update", "apt-get -y install python3-pip", "pip3 1 install http://10.0.2.2:7080/python/x.whl",
        "apt-get -y install stress-ng", "apt-get install -y smem"]
    assert [r[:2] for r in ctx.records] == [("lava_test_install apt-get update", "pass"),
                                             ("lava_test_install python (python3-pip)", "pass"),
                                             ("lava_test_install python (http://10.0.2.2:7080/python/x.whl)", "pass"),
                                             ("lava_test_install deb (stress-ng)", "pass"),
                                             ("lava_test_install (smem)", "pass")]
