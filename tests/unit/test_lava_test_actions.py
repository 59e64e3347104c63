"""lava_test_install / lava_test_run / lava_test_shell on the fake busybox test image."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_lava.actions import registry
from pytest_lava.actions.lava_test import TestRunFailed
from pytest_lava.actions.lava_test_state import LavaTestState, state
from pytest_lava.boards import BoardState
from pytest_lava.core.deadline import Deadline
from pytest_lava.results.model import JobResults
from tests.unit.fake_busybox import BUSYBOX, fake_device, start_shell, stop

pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")

FORMAT = "Lava-Test Test Definition 1.0"


class FakeRun:
    """What the actions use of JobRun: the job deadline and typed job-scoped state."""

    def __init__(self) -> None:
        self.deadline = Deadline(600, "job")
        self.slots: dict[type, object] = {}

    def slot(self, cls):  # type: ignore[no-untyped-def]
        return self.slots.setdefault(cls, cls())


class FakeCtx:
    """What the actions use of ActionContext, with the fake busybox image as the test image."""

    def __init__(self, tmp: Path, *, timeout: float = 60.0, isig: bool = True,
                 overrides: dict[str, str] | None = None, functions: str = "") -> None:
        self.tmp = tmp
        self.device = fake_device(tmp, isig=isig, overrides=overrides, functions=functions)
        self.driver = SimpleNamespace(state=BoardState.UNKNOWN, testrootfs_mount=None)
        self.cases: list = []
        self.records: list[tuple[str, str, str]] = []
        self.logs: list[str] = []
        self.run = FakeRun()
        self.deadline = Deadline(timeout, "action", self.run.deadline)
        self.job = SimpleNamespace(file=tmp / "job.yaml")
        self.action = SimpleNamespace(path="actions[1]")
        self.results = JobResults(job_name="t", job_file="job.yaml", results_dir=tmp / "results", hostname="fake01",
                                  device_type="fake", tags=[])
        self.boots = 0
        self.shells: list = []

    def test_shell(self):  # type: ignore[no-untyped-def]
        if self.driver.state is not BoardState.TEST:
            for old in self.shells:
                stop(old)
            home = self.tmp / "home"
            home.mkdir(exist_ok=True)
            self.shells.append(start_shell(self.tmp / "bin", home, isig=bool(self.device.extra["fake_isig"])))
            self.driver.state = BoardState.TEST
            self.boots += 1
        return self.shells[-1]

    master_shell = test_shell

    def report(self, cases: list) -> None:
        self.cases.extend(cases)

    def record(self, test_case_id: str, result: str, message: str = "") -> None:
        self.records.append((test_case_id, result, message))

    def log(self, message: str) -> None:
        self.logs.append(message)

    def close(self) -> None:
        for shell in self.shells:
            stop(shell)


@pytest.fixture
def make_ctx(tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[FakeCtx] = []

    def make(**kw) -> FakeCtx:  # type: ignore[no-untyped-def]
        ctx = FakeCtx(tmp_path, **kw)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()


def run(name: str, ctx: FakeCtx, params: dict) -> None:
    registry()[name].run(ctx, params)  # type: ignore[misc]


def test_the_three_actions_are_registered() -> None:
    for name in ("lava_test_install", "lava_test_run", "lava_test_shell"):
        assert registry()[name].run is not None


def test_lava_test_shell_reports_each_case_and_the_failing_one_with_its_excerpt(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx()
    inline = {"metadata": {"format": FORMAT, "name": "mixed"},
              "params": {"GREETING": "hello"},
              "run": {"steps": ["lava-test-case greet --shell 'echo $GREETING'",
                                "lava-test-case broken --shell 'echo about to fail; ls /nonexistent-dir'",
                                "lava-test-case speed --result pass --measurement 42.5 --units MB/s",
                                "echo 'legacy-line : SKIP'"]},
             "expected": ["greet", "broken", "speed", "never-ran"]}
    run("lava_test_shell", ctx, {"testdefs": [inline]})
    by_id = {c.test_case_id: c for c in ctx.cases}
    assert {k: c.result for k, c in by_id.items()} == {"greet": "pass", "broken": "fail", "speed": "pass",
                                                      "legacy-line": "skip", "never-ran": "fail"}
    broken = by_id["broken"]
    assert "about to fail" in broken.log_excerpt and "nonexistent-dir" in broken.log_excerpt
    assert "hello" not in broken.log_excerpt and "hello" in by_id["greet"].log_excerpt
    assert (by_id["speed"].measurement, by_id["speed"].units) == (42.5, "MB/s")
    assert by_id["greet"].duration is not None
    bundle = ctx.results.build(job_complete=True)
    mixed = next(r for r in bundle["test_runs"] if r["test_id"] == "mixed")
    assert {r["test_case_id"]: r["result"] for r in mixed["test_results"]}["broken"] == "fail"
    assert {a["pathname"] for a in mixed["attachments"]} >= {"testdef.yaml", "stdout.log", "logs/broken.log"}


def test_lava_test_run_stream_has_measurements_and_a_bundle_run(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx()
    run("lava_test_run", ctx, {"test_name": "stream", "test_options": "8"})
    assert [c.test_case_id for c in ctx.cases] == ["Fill", "Write", "Rewrite", "Read", "Copy"]
    assert all(c.units == "MB/s" and c.measurement and c.measurement > 0 for c in ctx.cases)
    runs = ctx.results.build(job_complete=True)["test_runs"]
    assert any(r["test_id"] == "stream" and len(r["test_results"]) == 5 for r in runs)


def test_several_definitions_get_prefixed_ids_and_smoke_passes(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx()
    run("lava_test_shell", ctx, {"testdefs": ["smoke", "posix"]})
    ids = [c.test_case_id for c in ctx.cases]
    assert "smoke.kernel-version" in ids and "posix.arithmetic" in ids
    assert [c.test_case_id for c in ctx.cases if c.result != "pass"] == []
    assert len([i for i in ids if i.startswith("smoke.")]) >= 5


def test_install_is_deferred_to_the_test_image_with_clear_sub_results(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx()
    run("lava_test_install", ctx, {"tests": ["smoke", "nosuch"], "install_python": ["requests"],
                                   "install_deb": ["bzip2", "xz-utils"]})
    assert ctx.boots == 0 and [r[0] for r in ctx.records] == ["lava_test_install (nosuch)"]
    assert state(ctx).pending_tests[0].name == "smoke"
    run("lava_test_run", ctx, {"test_name": "smoke"})
    records = {r[0]: r for r in ctx.records}
    assert records["lava_test_install python (requests)"][1:] == ("fail",
                                                                  "the test image has no pip; cannot install it")
    assert "no apt-get" in records["lava_test_install deb (bzip2 xz-utils)"][2]
    assert records["lava_test_install (smoke)"][1] == "pass"
    assert not state(ctx).pending_tests and "smoke" in state(ctx).installed
    assert len(ctx.cases) >= 10


def test_install_steps_run_and_missing_apt_for_deps_is_a_reason(make_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "needs.yaml").write_text("test_id: needs\ninstall: {deps: [gcc]}\nrun: {steps: [echo x]}\n")
    (tmp_path / "builds.yaml").write_text(
        "test_id: builds\ninstall: {steps: ['echo built > artefact']}\nrun: {steps: ['cat artefact']}\n")
    ctx = make_ctx()
    ctx.test_shell()  # the test image is up: installs happen at once
    run("lava_test_install", ctx, {"tests": ["needs.yaml", "builds.yaml"]})
    records = {r[0]: r for r in ctx.records}
    assert records["lava_test_install (needs)"][1] == "fail"
    assert "no apt-get" in records["lava_test_install (needs)"][2]
    assert records["lava_test_install (builds)"][1] == "pass"
    assert (tmp_path / "rootfs/lava/tests/builds/artefact").read_text() == "built\n"


def test_install_from_the_master_into_testrootfs(make_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    calls = tmp_path / "calls.log"
    ctx = make_ctx(functions=f'mount() {{ echo mount "$@" >> {calls}; }}\n'
                             f'umount() {{ echo umount "$@" >> {calls}; }}\n'
                             'chroot() { shift; "$@"; }\n')
    ctx.device.partitions = {"testrootfs": "/dev/disk/by-label/testrootfs"}
    ctx.device.extra["lava_testrootfs_mount"] = "/"  # the fake's "testrootfs" is the host's / + lava_test_dir
    ctx.driver.state = BoardState.MASTER
    run("lava_test_install", ctx, {"tests": ["posix"], "install_deb": ["bzip2"]})
    assert "mount /dev/disk/by-label/testrootfs /" in calls.read_text()
    assert "umount /" in calls.read_text()
    assert (tmp_path / "rootfs/lava/tests/posix/run.sh").is_file()
    assert (tmp_path / "rootfs/lava/bin/lava-test-case").stat().st_mode & 0o111
    assert dict((r[0], r[1]) for r in ctx.records) == {"lava_test_install deb (bzip2)": "fail",
                                                      "lava_test_install (posix)": "pass"}
    assert "posix" in state(ctx).installed and LavaTestState in ctx.run.slots


@pytest.mark.slow
def test_hung_step_fails_at_the_timeout_and_ctrl_c_recovers(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(timeout=4.0, isig=True)
    hang = {"metadata": {"format": FORMAT, "name": "hang"},
            "run": {"steps": ["lava-test-case before --result pass", "lava-test-case stuck --shell 'sleep 60'"]}}
    with pytest.raises(TestRunFailed) as info:
        run("lava_test_shell", ctx, {"testdefs": [hang]})
    assert "did not finish before the action timeout" in info.value.message
    assert "last console lines" in info.value.details
    assert {c.test_case_id: c.result for c in info.value.cases} == {"before": "pass", "stuck": "fail"}
    assert ctx.driver.state is BoardState.TEST  # Ctrl-C worked: no reboot needed
    assert ctx.shells[-1].run("echo alive", 5).output == "alive"


@pytest.mark.slow
def test_hung_step_that_ignores_ctrl_c_marks_the_board_for_reboot(make_ctx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("pytest_lava.actions.lava_test.RECOVER_ATTEMPT", 1.5)
    ctx = make_ctx(timeout=4.0, isig=False)
    hang = {"metadata": {"format": FORMAT, "name": "hang"}, "run": {"steps": ["sleep 30"]}}
    with pytest.raises(TestRunFailed):
        run("lava_test_shell", ctx, {"testdefs": [hang]})
    assert ctx.driver.state is BoardState.UNKNOWN
    ctx.deadline = Deadline(60, "next action")
    run("lava_test_shell", ctx, {"testdefs": ["posix"]})  # the next item reboots and runs
    assert ctx.boots == 2 and ctx.cases


def test_lava_test_dialect_nonzero_step_fails_the_action_but_keeps_its_cases(make_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "rc.yaml").write_text(
        "test_id: rc\nrun: {steps: ['echo one: PASS', 'false']}\n"
        "parse: {pattern: '^(?P<test_case_id>\\w+): (?P<result>\\w+)', fixupdict: {PASS: pass}}\n")
    ctx = make_ctx()
    with pytest.raises(TestRunFailed, match="test case failed with return value: 1") as info:
        run("lava_test_run", ctx, {"test_name": "rc.yaml"})
    assert [(c.test_case_id, c.result) for c in info.value.cases] == [("one", "pass")]


def test_attachments_come_back_over_the_console_with_a_checksum(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx()
    att = {"metadata": {"format": FORMAT, "name": "att"},
           "run": {"steps": ["printf 'line1\\nline2\\377\\n' > /tmp/lava-att.$$",
                             "lava-test-case made --shell 'test -s /tmp/lava-att.'$$",
                             "lava-test-case-attach made /tmp/lava-att.$$ application/octet-stream",
                             "lava-test-run-attach /tmp/lava-att.$$"]}}
    run("lava_test_shell", ctx, {"testdefs": [att]})
    bundle = ctx.results.build(job_complete=True)
    run_ = next(r for r in bundle["test_runs"] if r["test_id"] == "att")
    import base64

    got = {a["pathname"]: (a["mime_type"], base64.b64decode(a["content"])) for a in run_["attachments"]}
    made = [k for k in got if k.startswith("attachments/made/")]
    assert len(made) == 1 and got[made[0]] == ("application/octet-stream", b"line1\nline2\xff\n")
    assert any(k.startswith("attachments/run/") for k in got)
    case = next(r for r in run_["test_results"] if r["test_case_id"] == "made")
    assert case["attributes"]["attachments"] == made[0]
    json.dumps(bundle)


def test_a_silent_run_step_fails_at_the_inactivity_limit_not_the_action_timeout(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(timeout=60.0, isig=True)
    ctx.device.timeouts["test_inactivity"] = 2.0
    quiet = {"metadata": {"format": FORMAT, "name": "quiet"},
             "run": {"steps": ["lava-test-case talks --result pass", "sleep 50"]}}
    started = time.monotonic()
    with pytest.raises(TestRunFailed) as info:
        run("lava_test_shell", ctx, {"testdefs": [quiet]})
    assert time.monotonic() - started < 30  # far from the 60 s action timeout
    assert "silent for longer than timeouts.test_inactivity (2 s)" in info.value.message
    assert {c.test_case_id: c.result for c in info.value.cases}["talks"] == "pass"
