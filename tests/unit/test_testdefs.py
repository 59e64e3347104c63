"""Test definitions: both dialects, validation messages, loaders, live parsing, console transfer."""

from __future__ import annotations

import http.server
import subprocess
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_lava.core.errors import JobError
from pytest_lava.results.model import CaseResult
from pytest_lava.testdefs import (
    CaseCollector,
    library_names,
    load_builtin,
    load_git,
    load_inline,
    load_path,
    load_url,
    resolve,
)
from pytest_lava.testdefs.device import DeviceRunner, ScriptEnv, install_script, run_script
from pytest_lava.testdefs.model import LAVA_TEST, TESTDEF_1_0, definition_from_data
from pytest_lava.testdefs.parse import signal_fields, unique_ids
from pytest_lava.testdefs.transfer import ConsoleTransfer
from tests.unit.fake_busybox import BUSYBOX

needs_busybox = pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")

TD = {"metadata": {"format": "Lava-Test Test Definition 1.0", "name": "demo"},
      "run": {"steps": ["lava-test-case a --result pass"]}}


# --- model and validation --------------------------------------------------------------------

def test_library_has_the_four_definitions_and_all_are_valid() -> None:
    assert {"smoke", "stream", "posix", "dmesg"} <= set(library_names())
    for name in library_names():
        d = load_builtin(name)
        assert d.run_steps and d.name == name
    smoke = load_builtin("smoke")
    assert smoke.dialect == TESTDEF_1_0
    assert sum(step.startswith("lava-test-case") for step in smoke.run_steps) >= 5
    stream = load_builtin("stream")
    assert stream.dialect == LAVA_TEST and stream.parser.appendall == {"units": "MB/s", "result": "pass"}


def test_bad_regex_names_file_field_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("test_id: bad\nrun:\n  steps: [echo hi]\nparse:\n  pattern: '(?P<test_case_id>\\w+'\n")
    with pytest.raises(JobError) as info:
        load_path(f)
    (problem,) = info.value.problems
    assert problem.file == str(f) and problem.path == "parse.pattern" and problem.line == 5
    assert "not a valid regular expression" in problem.reason
    assert str(f) in str(info.value) and "parse.pattern" in str(info.value)


def test_missing_run_names_file_and_field(tmp_path: Path) -> None:
    f = tmp_path / "norun.yaml"
    f.write_text("metadata:\n  format: Lava-Test Test Definition 1.0\n  name: norun\n")
    with pytest.raises(JobError) as info:
        load_path(f)
    assert [(p.file, p.path) for p in info.value.problems] == [(str(f), "run")]
    assert "is required" in info.value.problems[0].reason


def test_every_problem_is_reported_at_once() -> None:
    data = {"metadata": {"format": "Lava-Test Test Definition 1.0", "name": "x y"},
            "run": {"steps": []}, "params": {"1BAD": "v"},
            "parse": {"pattern": "(?P<test_case_id>.+)(?P<colour>.)", "fixupdict": {"OK": "great"}},
            "expected": "a"}
    with pytest.raises(JobError) as info:
        definition_from_data(data, "inline.yaml")
    paths = sorted(p.path for p in info.value.problems)
    assert paths == ["expected", "metadata.name", "params.1BAD", "parse.fixupdict.OK", "parse.pattern",
                     "run.steps"]


def test_dialect_is_required_and_wrong_format_named() -> None:
    with pytest.raises(JobError, match="needs 'test_id'"):
        definition_from_data({"run": {"steps": ["true"]}}, "x.yaml")
    with pytest.raises(JobError, match="metadata.format: must be 'Lava-Test Test Definition 1.0'"):
        definition_from_data({"metadata": {"format": "2.0"}, "run": {"steps": ["true"]}}, "x.yaml")


def test_options_substitution_and_missing_options() -> None:
    d = definition_from_data({"test_id": "t", "run": {"steps": ["./t $(OPTIONS)"]}}, "t.yaml")
    assert d.steps_for("-n 3") == ["./t -n 3"]
    with pytest.raises(JobError, match=r"run.steps\[0\].*test_options"):
        d.steps_for(None)
    d.default_options = "-q"
    assert d.steps_for(None) == ["./t -q"]


def test_run_script_exports_params_quoted_and_signals_step_failures() -> None:
    d = definition_from_data({**TD, "params": {"MSG": "it's $HOME"}}, "x.yaml")
    script = run_script(d, "/lava", "0_demo", None)
    assert "MSG='it'\"'\"'s $HOME'; export MSG" in script
    assert "<LAVA_SIGNAL_STEPFAIL PHASE=run STEP=$lava_step" in script and "lava_step=1\n" in script
    assert 'cd "$LAVA_DIR/tests/0_demo"' in script
    in_repo = run_script(d, "/lava", "0_demo", None, ScriptEnv(workdir="/lava/repos/k y", kmsg=True))
    assert "cd '/lava/repos/k y' || exit 1" in in_repo and "LAVA_KMSG=1; export LAVA_KMSG" in in_repo
    d.deps = ["it's"]
    assert "apt-get install -y 'it'\"'\"'s'" in install_script(d, "/lava", "0_demo")


# --- loaders ---------------------------------------------------------------------------------

def test_resolve_by_name_path_and_registered(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("test_id: mine\nrun: {steps: [echo hi]}\n")
    assert resolve("smoke").source == "library:smoke"
    assert resolve("mine.yaml", base=tmp_path).name == "mine"
    reg = {"special": load_inline(TD, "job.yaml")}
    assert resolve("special", registered=reg) is reg["special"]
    with pytest.raises(JobError, match="no built-in test definition 'nosuch'"):
        resolve("nosuch")


def test_load_url_over_http_and_file(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text("test_id: web\nrun: {steps: [echo hi]}\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):  # type: ignore[no-untyped-def]
            super().__init__(*a, directory=str(tmp_path), **kw)

        def log_message(self, *a) -> None:  # type: ignore[no-untyped-def]
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        d = load_url(f"http://127.0.0.1:{port}/web.yaml", timeout=10)
        assert d.name == "web" and d.source.endswith("/web.yaml") and "test_id: web" in d.text
        from pytest_lava.core.errors import InfrastructureError

        with pytest.raises(InfrastructureError, match="HTTP 404"):
            load_url(f"http://127.0.0.1:{port}/missing.yaml", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert load_url(f"file://{tmp_path}/web.yaml").name == "web"


def test_load_git_shallow_and_by_commit(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "tests").mkdir()
    (repo / "tests" / "git.yaml").write_text(
        "metadata: {format: Lava-Test Test Definition 1.0, name: fromgit}\nrun: {steps: [echo hi]}\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, timeout=30)
    subprocess.run([*git, "add", "."], check=True, timeout=30)
    subprocess.run([*git, "commit", "-qm", "one"], check=True, timeout=30)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True,
                         timeout=30).stdout.strip()
    d = load_git(f"file://{repo}", testdef="tests/git.yaml", timeout=60)
    assert d.name == "fromgit" and d.metadata["repo"] == f"file://{repo}"
    assert load_git(f"file://{repo}", revision=sha, testdef="tests/git.yaml", timeout=60).metadata["revision"] == sha
    with pytest.raises(JobError, match="not a file in the repository"):
        load_git(f"file://{repo}", testdef="nope.yaml", timeout=60)
    with pytest.raises(JobError, match="outside the repository"):
        load_git(f"file://{repo}", testdef="../../etc/passwd", timeout=60)


# --- live parsing ----------------------------------------------------------------------------

def test_signals_give_results_durations_and_excerpts() -> None:
    clock = iter([10.0, 12.5, 13.0, 14.0, 15.0]).__next__
    c = CaseCollector(load_inline(TD, "x"), clock=clock)
    for line in ["noise", "<LAVA_SIGNAL_STARTTC boot-time>\r", "took long", "<LAVA_SIGNAL_ENDTC boot-time>",
                 "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=boot-time RESULT=fail EXIT=2>",
                 "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=bw RESULT=pass MEASUREMENT=12.5 UNITS=MB / s>"]:
        c.feed(line)
    boot, bw = c.cases
    assert (boot.result, boot.duration) == ("fail", 2.5)
    assert "took long" in boot.log_excerpt and "noise" not in boot.log_excerpt
    assert "exited with status 2" in boot.message
    assert (bw.measurement, bw.units, bw.result) == (12.5, "MB / s", "pass")


def test_pattern_fixupdict_appendall_and_lava_test_ids() -> None:
    d = definition_from_data({"test_id": "ltp", "run": {"steps": ["x"]},
                              "parse": {"pattern": r"^(?P<test_case_id>[\w ]+)\s+(?P<result>T\w+)",
                                        "fixupdict": {"TPASS": "pass", "TFAIL": "fail", "TCONF": "skip"}}},
                             "ltp.yaml")
    c = CaseCollector(d)
    for line in ["output before", "open 01 TPASS", "close 02 TFAIL", "stat TCONF", "fork TWEIRD"]:
        c.feed(line)
    got = [(x.test_case_id, x.result) for x in c.cases]
    assert got == [("open01", "pass"), ("close02", "fail"), ("stat", "skip"), ("fork", "unknown")]
    assert c.cases[0].log_excerpt == "output before\nopen 01 TPASS"
    assert c.cases[3].attributes["original_result"] == "TWEIRD"
    stream = CaseCollector(load_builtin("stream"))
    (case,) = stream.feed("Copy: 1234.5 MB/s")
    assert (case.test_case_id, case.result, case.measurement, case.units) == ("Copy", "pass", 1234.5, "MB/s")


def test_default_pattern_expected_and_unfinished_cases() -> None:
    c = CaseCollector(load_inline({**TD, "expected": ["a", "b", "c"]}, "x"))
    c.feed("a : PASS")
    c.feed("<LAVA_SIGNAL_STARTTC b>")
    c.feed("hanging...")
    new = c.finish(interrupted="timeout")
    assert [(x.test_case_id, x.result) for x in c.cases] == [("a", "pass"), ("b", "fail"), ("c", "fail")]
    assert "did not finish: timeout" in new[0].message and "hanging..." in new[0].log_excerpt
    assert "expected test case 'c' did not run" in new[1].message


def test_attach_signal_and_unique_ids() -> None:
    c = CaseCollector(load_inline(TD, "x"))
    c.feed("<LAVA_SIGNAL_ATTACH TEST_CASE_ID= FILE=log.txt STORED=/lava/results/x/attachments/1-log.txt MIME=>")
    (ref,) = c.attachments
    assert (ref.test_case_id, ref.name, ref.mime_type) == ("", "log.txt", "text/plain")
    cases = unique_ids([CaseResult("a", "pass"), CaseResult("a", "fail"), CaseResult("a", "pass")])
    assert [x.test_case_id for x in cases] == ["a", "a.2", "a.3"]


@given(st.dictionaries(st.sampled_from(["TEST_CASE_ID", "RESULT", "UNITS", "MEASUREMENT"]),
                       st.text(st.characters(blacklist_characters="<>=\r\n", blacklist_categories=("Lu", "Cs")),
                               min_size=1, max_size=12).map(str.strip).filter(bool), min_size=1))
def test_signal_fields_round_trip(fields: dict[str, str]) -> None:
    text = " ".join(f"{k}={v}" for k, v in fields.items())
    assert signal_fields(text) == fields


# --- console transfer and the runner on a real busybox shell ---------------------------------

@needs_busybox
@pytest.mark.parametrize("base64_tool", [True, False], ids=["base64", "printf-od"])
def test_push_and_pull_binary_with_checksums(shell, tmp_path: Path, base64_tool: bool) -> None:  # type: ignore[no-untyped-def]
    data = bytes(range(256)) * 12 + b"'%\\ end"
    xfer = ConsoleTransfer(shell)
    xfer._has_base64 = base64_tool
    target = tmp_path / "rootfs" / "blob.bin"
    xfer.push(str(target), data, 30)
    assert target.read_bytes() == data
    assert xfer.pull(str(target), 30) == data


@needs_busybox
def test_runner_runs_a_definition_live_on_busybox(shell, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from pytest_lava.core.deadline import Deadline

    runner = DeviceRunner(shell, str(tmp_path / "rootfs" / "lava"))
    assert runner.install_helpers(30) is True  # staged: sent with the next batch
    runner.flush(30)
    assert runner.install_helpers(30) is False  # same version already there
    d = load_builtin("smoke")
    runner.install_definition(d, "smoke", 30)
    seen: list[str] = []
    c = CaseCollector(d)

    def feed(line: str) -> None:
        seen.append(line)
        c.feed(line)

    assert runner.run_test("smoke", Deadline(60, "run"), feed) == 0
    assert len(c.cases) >= 10 and all(x.result == "pass" for x in c.cases), [(x.test_case_id, x.result, x.log_excerpt)
                                                                          for x in c.cases if x.result != "pass"]
    assert seen[0] == "<LAVA_SIGNAL_STARTRUN smoke>"


def test_load_git_refuses_ssh_and_ext_and_blames_the_job(tmp_path: Path) -> None:
    """A job names the repository: git may not use the harness user's ssh keys or run ext:: commands,
    and a clone that fails is a job error (it never counts against a board's health)."""
    from pytest_lava.core.errors import JobError

    marker = tmp_path / "ran"
    for url in ("ssh://git@127.0.0.1:1/x.git", f"ext::sh -c touch% {marker}"):
        with pytest.raises(JobError, match="git clone failed"):
            load_git(url, timeout=30)
    assert not marker.exists()
    with pytest.raises(JobError, match="must not start with '-'"):
        load_git("file:///x", revision="--upload-pack=touch /tmp/x", timeout=30)
