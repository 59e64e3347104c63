"""testdef_repos as LAVA runs them, on the fake busybox image: a test-built repository cloned on
the host, delivered by wget from the harness's image server (or the console), run from its root."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_lava.actions.lava_test import TestRunFailed
from pytest_lava.core.deadline import Deadline
from pytest_lava.core.errors import InfrastructureError, JobError, ProblemList
from pytest_lava.testdefs.delivery import deliver_tree
from pytest_lava.testdefs.device import DeviceRunner
from pytest_lava.testdefs.repos import RepoSpec, check_entry, checkout, payload
from tests.testdef_repo import ALPHA_CASES, BETA_CASES, BROKEN_CASES, git, make_repo
from tests.unit.fake_busybox import BUSYBOX
from tests.unit.test_lava_test_actions import FakeCtx, run

pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PYTEST_LAVA_CACHE", str(tmp_path / "cache" / "downloads"))
    return make_repo(tmp_path / "upstream")


@pytest.fixture
def ctx(tmp_path: Path):  # type: ignore[no-untyped-def]
    made = FakeCtx(tmp_path, timeout=120.0)
    yield made
    made.close()


def _ids(ctx: FakeCtx) -> dict[str, str]:
    return {c.test_case_id: c.result for c in ctx.cases}


def test_three_definitions_of_one_repository_old_and_v2_spelling(ctx: FakeCtx, repo: str) -> None:
    repos = [
        {"git-repo": repo, "testdef": "automated/linux/alpha/alpha.yaml", "parameters": {"LOOPS": 7}},
        {"repository": repo, "from": "git", "path": "automated/linux/beta/beta.yaml", "name": "beta-v2"},
        {"git-repo": repo, "revision": "main", "testdef": "automated/linux/broken/broken.yaml"},
    ]
    with pytest.raises(TestRunFailed, match=r"broken: no test case, and run step 1 exited"):
        run("lava_test_shell", ctx, {"testdef_repos": repos})
    got = _ids(ctx)
    assert {k for k in got if k.startswith("alpha.")} == {f"alpha.{c}" for c in ALPHA_CASES} | {"alpha.install-deps"}
    assert {k for k in got if k.startswith("beta-v2.")} == {f"beta-v2.{c}" for c in BETA_CASES}
    assert {k for k in got if k.startswith("broken.")} == {f"broken.{c}" for c in BROKEN_CASES}
    assert got["alpha.install-deps"] == "skip"  # no apt-get on the image: a clear skip, not a failure
    assert all(got[f"broken.{c}"] == "fail" for c in BROKEN_CASES)
    others = {k: r for k, r in got.items() if k.startswith(("alpha.", "beta-v2.")) and k != "alpha.install-deps"}
    assert set(others.values()) == {"pass"}, others
    by_id = {c.test_case_id: c for c in ctx.cases}
    assert (by_id["alpha.loops"].measurement, by_id["alpha.loops"].units) == (7.0, "count")  # parameters won
    assert (by_id["alpha.blob-size"].measurement, by_id["alpha.blob-size"].units) == (64 * 1024, "bytes")
    assert (by_id["beta-v2.speed"].measurement, by_id["beta-v2.speed"].units) == (12.5, "MB/s")
    assert by_id["beta-v2.ref"].attributes["reference"] == "http://example.com/build/1"
    assert "bracketed output" in by_id["beta-v2.bracketed"].log_excerpt
    step = by_id["broken.run-step-2"]
    assert step.attributes["exit_status"] == "127" and "./not-there.sh" in step.message
    assert "not found" in step.log_excerpt
    # one delivery per repository and revision, by the network: the second definition found it there
    notes = [m for m in ctx.logs if " by " in m and " MB " in m]
    assert [n.split(" by ")[1].split()[0] for n in notes] == ["network", "present", "network"], notes
    bundle = ctx.results.build(job_complete=True)
    ticker = next(r for r in bundle["test_runs"] if r["test_id"] == "beta-v2")
    log = next(a for a in ticker["attachments"] if a["pathname"].endswith("ticker.log"))
    assert log  # the background process's output came back as an attachment


def test_a_definition_whose_steps_all_fail_is_a_failure_inline(ctx: FakeCtx) -> None:
    inline = {"metadata": {"format": "Lava-Test Test Definition 1.0", "name": "bad"},
              "run": {"steps": ["false", "exit 3", "echo never"]}}  # a step's exit ends the run: still seen
    with pytest.raises(TestRunFailed, match="bad: no test case"):
        run("lava_test_shell", ctx, {"testdefs": [inline]})
    assert _ids(ctx) == {"run-step-1": "fail", "run-step-2": "fail"}


def test_lava_test_raise_ends_the_run_and_fails_the_action(ctx: FakeCtx) -> None:
    inline = {"metadata": {"format": "Lava-Test Test Definition 1.0", "name": "raising"},
              "run": {"steps": ["lava-test-case before --result pass", "lava-test-raise 'setup <went> wrong'",
                                "lava-test-case after --result pass"]}}
    with pytest.raises(TestRunFailed, match=r"raising: lava-test-raise: setup \(went\) wrong"):
        run("lava_test_shell", ctx, {"testdefs": [inline]})
    assert _ids(ctx) == {"before": "pass"}


def test_console_fallback_for_a_small_payload_and_refusal_for_a_large_one(ctx: FakeCtx, repo: str,
                                                                         tmp_path: Path) -> None:
    shell = ctx.test_shell()
    runner = DeviceRunner(shell, str(ctx.device.extra["lava_test_dir"]))
    node = Deadline(120, "test")
    tarball = payload(checkout(RepoSpec(repo), node), node)
    ctx.device.host_address = "127.0.0.9"  # nothing listens there: wget fails
    ctx.device.extra["image_server_port"] = 1  # (and not on this port)
    dest = f"{ctx.device.extra['lava_test_dir']}/repos/x"
    got = deliver_tree(runner, tarball, dest, ctx.device, node)
    assert got.method == "console"
    assert (Path(dest) / "automated/lib/sh-test-lib").is_file() and not (Path(dest) / ".git").exists()
    assert (Path(dest) / "data/blob.bin").stat().st_size == 64 * 1024
    ctx.device.extra["lava_console_payload_limit"] = 1000
    (tmp_path / "upstream/new-file").write_text("changed\n")
    git(tmp_path / "upstream", "add", "-A")
    git(tmp_path / "upstream", "commit", "-q", "-m", "more")
    sha = git(tmp_path / "upstream", "rev-parse", "HEAD")
    bigger = payload(checkout(RepoSpec(repo, sha), node), node)
    with pytest.raises(InfrastructureError, match=r"cannot reach fake01: the network path failed .* up to 0.0 MB"):
        deliver_tree(runner, bigger, dest, ctx.device, node)


def test_repository_entries_are_checked_with_field_names() -> None:
    problems = ProblemList("job.yaml")
    base = "actions[2].parameters.testdef_repos"
    check_entry({"repository": "-oops", "from": "bzr", "path": "/etc/passwd", "parameters": {"1X": "a"}},
                problems, f"{base}[0]")
    check_entry({"git-repo": "https://example.com/r.git", "testdef": "../x.yaml", "colour": 1}, problems, f"{base}[1]")
    check_entry("https://example.com/r.git", problems, f"{base}[2]")
    text = "\n".join(str(p) for p in problems.problems)
    for expected in (f"{base}[0].repository: a repository URL must not start with '-'",
                     f"{base}[0].from: only 'git' repositories are supported",
                     f"{base}[0].path: must be a relative path inside the repository",
                     f"{base}[0].parameters.1X: must be a shell variable name",
                     f"{base}[1].testdef: must be a relative path inside the repository",
                     f"{base}[1].colour: unknown key", f"{base}[2]: must be a mapping"):
        assert expected in text, text


def test_a_missing_definition_file_in_the_repository_is_a_job_error(ctx: FakeCtx, repo: str) -> None:
    with pytest.raises(JobError, match="'nope.yaml' is not a file in the repository"):
        run("lava_test_shell", ctx, {"testdef_repos": [{"git-repo": repo, "testdef": "nope.yaml"}]})


def test_signals_in_kernel_lines_test_sets_and_references_are_parsed() -> None:
    from pytest_lava.testdefs.model import definition_from_data
    from pytest_lava.testdefs.parse import CaseCollector

    d = definition_from_data({"metadata": {"format": "Lava-Test Test Definition 1.0", "name": "k"},
                              "run": {"steps": ["true", "false"]}}, "k.yaml")
    c = CaseCollector(d)
    for line in ["[   46.225197] <LAVA_SIGNAL_TESTSET START kms_setmode>",
                 "<8>[   46.3] <LAVA_SIGNAL_STARTTC basic>", "Testing: basic", "[   46.4] <LAVA_SIGNAL_ENDTC basic>",
                 "[   46.5] <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=basic RESULT=fail>",
                 "[   46.6] <LAVA_SIGNAL_TESTSET STOP>",
                 "<0><LAVA_SIGNAL_REFERENCE TEST_CASE_ID=log RESULT=pass REFERENCE=http://x/y?z=1>",
                 "<LAVA_SIGNAL_STEPFAIL PHASE=run STEP=2 EXIT=1>"]:
        c.feed(line)
    got = {x.test_case_id: x for x in c.cases}
    assert {k: v.result for k, v in got.items()} == {"kms_setmode.basic": "fail", "log": "pass", "run-step-2": "fail"}
    assert "Testing: basic" in got["kms_setmode.basic"].log_excerpt
    assert got["log"].attributes["reference"] == "http://x/y?z=1"
    assert got["run-step-2"].message == "run step 2 exited with status 1: false"
    old = definition_from_data({"test_id": "old", "run": {"steps": ["false"]}}, "old.yaml")
    c = CaseCollector(old)
    assert c.feed("<LAVA_SIGNAL_STEPFAIL PHASE=run STEP=1 EXIT=1>") == [] and c.failed_steps == [("run", 1, 1)]


def test_a_job_with_both_spellings_validates_and_a_bad_entry_is_named(tmp_path: Path) -> None:
    from pytest_lava.jobs.job import load_job

    good = tmp_path / "good.yaml"
    good.write_text("timeout: 60\nactions:\n- command: lava_test_shell\n  parameters:\n    testdef_repos:\n"
                    "    - {git-repo: 'https://example.com/t.git', testdef: a/a.yaml, parameters: {N: 3}}\n"
                    "    - {repository: 'https://example.com/t.git', from: git, path: b/b.yaml, name: bee}\n")
    load_job(good)
    bad = tmp_path / "bad.yaml"
    bad.write_text("timeout: 60\nactions:\n- command: lava_test_shell\n  parameters:\n    testdef_repos:\n"
                   "    - {repository: 'https://example.com/t.git', from: url, path: ../b.yaml}\n")
    with pytest.raises(JobError) as info:
        load_job(bad)
    text = str(info.value)
    assert "actions[0].parameters.testdef_repos[0].from: only 'git'" in text
    assert "actions[0].parameters.testdef_repos[0].path: must be a relative path" in text


def test_a_truncated_payload_is_never_taken_for_a_complete_tree(ctx: FakeCtx, repo: str, tmp_path: Path) -> None:
    from pytest_lava.testdefs.delivery import Payload

    shell = ctx.test_shell()
    runner = DeviceRunner(shell, str(ctx.device.extra["lava_test_dir"]))
    node = Deadline(120, "test")
    whole = payload(checkout(RepoSpec(repo), node), node)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.path.read_bytes()[: whole.size // 2])
    dest = f"{ctx.device.extra['lava_test_dir']}/repos/cut"
    with pytest.raises(InfrastructureError, match="unpacking the payload on the board failed: LAVA_PAYLOAD_BAD"):
        deliver_tree(runner, Payload(cut, whole.ident), dest, ctx.device, node, log=ctx.logs.append)
    assert any("on the board failed" in m for m in ctx.logs), ctx.logs  # the network path saw it first
    assert not Path(dest).exists() and not Path(dest + ".new").exists()
    assert deliver_tree(runner, whole, dest, ctx.device, node).method == "network"
    assert (Path(dest) / "data/blob.bin").stat().st_size == 64 * 1024
