"""Each test case of a test action is its own pytest report: terminal, -rA, JUnit, xdist, -k.

The job runs on a FAKE board type (``tests/unit/fake_busybox.py``: a real busybox shell on the
host stands in for the booted test image), through the real plugin, actions and device runner.
"""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.unit.fake_busybox import BUSYBOX, PROMPT_RE, make_applet_dir, shell_argv

pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")
REPO = Path(__file__).resolve().parents[2]

CONFTEST = """
from tests.unit.fake_busybox import FakeBusyboxBoard


def pytest_lava_board_type(name):  # a lab's own board type: no entry point, no monkeypatching
    return FakeBusyboxBoard if name == "fake-busybox" else None


def _say(ctx, params):
    from pytest_lava.results.model import CaseResult

    out = ctx.test_shell().check_output("echo said-" + str(params["word"]), ctx.deadline)
    ctx.cases.append(CaseResult("said", "pass" if "said-" + str(params["word"]) in out else "fail"))


def pytest_lava_actions():  # a lab's own action, from its conftest.py
    from pytest_lava.actions.spec import TEST, ActionSpec, Param

    return [ActionSpec("lab_say", TEST, params={"word": Param(str, required=True)}, run=_say,
                       item_label=lambda p: str(p.get("word", "")))]


def pytest_lava_bundle(bundle, job):  # a lab amends every bundle before it is written
    for run in bundle["test_runs"]:
        run.setdefault("attributes", {})["lab.site"] = "conftest-" + job.name
"""

JOB = """
job_name: fake-cases
device_type: fake
timeout: 300
actions:
  - command: lava_test_install
    parameters: {tests: [smoke]}
  - command: lava_test_run
    parameters: {test_name: smoke}
  - command: lava_test_shell
    parameters:
      testdefs:
        - metadata: {format: Lava-Test Test Definition 1.0, name: mixed}
          run:
            steps:
              - lava-test-case alpha --shell 'echo alpha-output'
              - lava-test-case broken --shell 'echo broken-output; false'
              - lava-test-case speed --result pass --measurement 42.5 --units MB/s
  - command: lava_test_shell
    parameters: {testdefs: [posix]}
"""


@pytest.fixture
def lab(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    root = pytester.path
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the inner pytest imports tests.unit.fake_busybox
    bindir = make_applet_dir(root / "fakebin")
    home = root / "fakehome"
    home.mkdir()
    (home / ".fakerc").write_text("")
    # a long lava_test_dir on purpose, whatever pytester's directory is called: a command line that
    # names a path several times once outgrew busybox's 1022-character line editor and hung the job
    lava_dir = root / "rootfs" / "a-lava-test-dir-long-enough-to-push-a-command-line-past-a-line-editor" / "lava"
    devices = root / "devices"
    devices.mkdir()
    (devices / "device-types").mkdir()
    (devices / "device-types" / "fake.yaml").write_text("board_type: fake-busybox\n")
    (devices / "fake01.yaml").write_text(yaml.safe_dump({
        "device_type": "fake", "board_type": "fake-busybox",
        "connection_command": shlex.join(shell_argv(bindir, home)), "tester_str": PROMPT_RE,
        "master_str": PROMPT_RE, "extra": {"lava_test_dir": str(lava_dir), "fake_isig": True}}))
    pytester.makeconftest(CONFTEST)
    (root / "job.yaml").write_text(JOB)
    return pytester


def run(lab: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The inner pytest; a hang there fails here with its thread stacks (faulthandler, at 200 s) and
    the board's console tail, not with a bare timeout."""
    try:
        return lab.runpytest_subprocess("--lava-job", "job.yaml", "--lava-devices", "devices", "--lava-results",
                                        "results", "-p", "no:cacheprovider", "-o", "faulthandler_timeout=200",
                                        *args, timeout=240)
    except lab.TimeoutExpired:
        stderr = lab.path / "stderr"
        stacks = stderr.read_text(errors="replace")[-6000:] if stderr.exists() else "(no stderr)"
        consoles = sorted((lab.path / "results").rglob("console.log"))
        tail = consoles[-1].read_text(errors="replace")[-2000:] if consoles else "(no console log)"
        pytest.fail(f"inner pytest hung\n--- its stderr (thread stacks) ---\n{stacks}\n"
                    f"--- board console tail ---\n{tail}", pytrace=False)


def _cases(xml: Path) -> dict[str, ET.Element]:
    return {tc.get("name", ""): tc for tc in ET.parse(xml).getroot().iter("testcase")}


def test_each_case_is_its_own_report_in_terminal_and_junit(lab: pytest.Pytester) -> None:
    result = run(lab, "-rA", "--junitxml=r.xml")
    out = result.stdout.str()
    assert "PASSED job.yaml::lava_test_run[smoke::kernel-version]" in out
    assert "PASSED job.yaml::lava_test_shell[mixed::alpha]" in out
    assert "FAILED job.yaml::lava_test_shell[mixed::broken]" in out
    assert "PASSED job.yaml::lava_test_shell[posix::here-document]" in out
    failed_lines = [line for line in out.splitlines() if line.startswith("FAILED ")]
    assert failed_lines == [next(x for x in failed_lines if "::broken" in x)]  # that case alone
    assert "broken-output" in out and "--- console of broken ---" in out
    assert result.ret == pytest.ExitCode.TESTS_FAILED

    cases = _cases(lab.path / "r.xml")
    assert len([n for n in cases if "::" in n]) >= 12 + 3 + 18  # smoke, mixed, posix: one <testcase> each
    broken = cases["lava_test_shell[mixed::broken]"]
    assert broken.find("failure") is not None and "broken-output" in broken.find("failure").text  # type: ignore[union-attr]
    assert cases["lava_test_shell[mixed::alpha]"].find("failure") is None
    assert cases["lava_test_shell[mixed]"].find("failure") is None  # the action itself passed
    props = {p.get("name"): p.get("value") for p in cases["lava_test_shell[mixed::speed]"].iter("property")}
    assert props["measurement"] == "42.5" and props["units"] == "MB/s"
    mem = {p.get("name"): p.get("value") for p in cases["lava_test_run[smoke::mem-total]"].iter("property")}
    assert mem["units"] == "kB" and float(mem["measurement"]) > 0

    bundle = (lab.path / "results" / "job" / "bundle.json").read_text()
    assert '"lava_test_install (smoke)"' in bundle and '"test_id": "mixed"' in bundle
    runs = json.loads(bundle)["test_runs"]
    assert runs and all(r["attributes"]["lab.site"] == "conftest-fake-cases" for r in runs)  # the bundle hook


def test_same_reports_under_xdist(lab: pytest.Pytester) -> None:
    result = run(lab, "-rA", "-n", "2", "--junitxml=r.xml")
    out = result.stdout.str()
    assert "FAILED job.yaml::lava_test_shell[mixed::broken]" in out
    assert "PASSED job.yaml::lava_test_shell[mixed::alpha]" in out
    cases = _cases(lab.path / "r.xml")
    assert cases["lava_test_shell[mixed::broken]"].find("failure") is not None
    assert cases["lava_test_shell[mixed::alpha]"].find("failure") is None
    props = {p.get("name"): p.get("value") for p in cases["lava_test_shell[mixed::speed]"].iter("property")}
    assert props["measurement"] == "42.5"


def test_k_selects_one_test_action_and_its_setup_still_runs(lab: pytest.Pytester) -> None:
    result = run(lab, "-rA", "-k", "posix")
    out = result.stdout.str()
    assert "PASSED job.yaml::lava_test_shell[posix::arithmetic]" in out
    assert "lava_test_run[smoke]" not in out and "::broken]" not in out
    assert result.ret == pytest.ExitCode.OK
    bundle = (lab.path / "results" / "job" / "bundle.json").read_text()
    assert '"lava_test_install (smoke)"' in bundle  # the setup action ran (and installed on first use)
    assert '"test_id": "posix"' in bundle and '"test_id": "mixed"' not in bundle


PLAIN_TESTS = """
def test_plain_one():
    assert 1 + 1 == 2

def test_plain_two():
    assert "lava"
"""


@pytest.mark.parametrize("dist", ["load", "loadfile", "loadgroup"])
def test_xdist_keeps_a_job_on_one_worker_beside_plain_tests(lab: pytest.Pytester, dist: str) -> None:
    lab.makepyfile(test_plain=PLAIN_TESTS)
    result = run(lab, "-v", "-n", "2", "--dist", dist, "--junitxml=r.xml", "job.yaml", "test_plain.py")
    out = result.stdout.str()
    workers = {m.group(2): m.group(1) for m in re.finditer(r"\[(gw\d)\] \[\s*\d+%\] \w+ (\S+)", out)}
    job_workers = {w for nodeid, w in workers.items() if nodeid.startswith("job.yaml")}
    assert len(job_workers) == 1, out  # one worker ran every item of the job
    assert {"test_plain.py::test_plain_one", "test_plain.py::test_plain_two"} <= set(workers), out
    percents = [int(p) for p in re.findall(r"\[\s*(\d+)%\]", out)]
    assert percents and max(percents) == 100, out  # cases add no progress step
    names = list(_cases(lab.path / "r.xml"))
    assert not [n for n in names if "@" in n], names  # no xdist group suffix
    assert "lava_test_shell[mixed::broken]" in names and "test_plain_one" in names
    assert names.count("lava_test_shell[mixed::broken]") == 1
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the broken case, and only it
    assert [line for line in out.splitlines() if line.startswith("FAILED ")] == [
        next(line for line in out.splitlines() if line.startswith("FAILED job.yaml::lava_test_shell[mixed::broken]"))]


def test_setup_actions_are_module_fixtures(lab: pytest.Pytester) -> None:
    """--setup-show: the board and each setup action are set up once for the job (module scope),
    in job order, and torn down once at its end; each item's own action runs in its setup."""
    result = run(lab, "--setup-show", "-q")
    out = result.stdout.str()
    setups = [line.split()[2] for line in out.splitlines() if line.strip().startswith("SETUP    M")]
    assert setups == ["lava_job", "lava_test_install"], out
    assert out.count("TEARDOWN M lava_job") == 1
    assert out.count("SETUP    F lava_action") == 3  # lava_test_run[smoke], lava_test_shell[mixed], [posix]


def test_an_action_from_a_conftest_hook(lab: pytest.Pytester) -> None:
    (lab.path / "say.yaml").write_text(JOB.split("actions:")[0] + """actions:
  - command: lab_say
    parameters: {word: hello}
""")
    result = lab.runpytest_subprocess("--lava-job", "say.yaml", "--lava-devices", "devices", "--lava-results",
                                      "results", "-p", "no:cacheprovider", "-rA", timeout=240)
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "PASSED say.yaml::lab_say[hello::said]" in out
    bad = lab.runpytest_subprocess("--lava-job", "say.yaml", "--lava-devices", "devices", "--lava-validate",
                                   "-p", "no:cacheprovider", timeout=60)
    assert bad.ret == 0, bad.stdout.str()  # the conftest's action validates too
