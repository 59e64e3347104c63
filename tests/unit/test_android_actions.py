"""The Android actions and the master driver's Android capabilities, with fakes: the scripted
U-Boot board of test_boot_fake.py (booting "Android" with boot_cmds_android) and the fake adb
(fake_adb.py). Parsing as lava-android-test did, each case reported live, a test run in the
bundle, a hung test interrupted and Android rebooted, job mistakes found at validation."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import test_boot_fake as tbf
from test_android_adb import fake_adb, pid_alive, set_state  # noqa: F401 - fake_adb is a fixture

from pytest_lava.actions import android_test
from pytest_lava.actions.lava_test import TestRunFailed
from pytest_lava.android.adb import AdbDevice, AdbError, AdbServer
from pytest_lava.android.library import LIBRARY, PARSE, library_test
from pytest_lava.android.model import ANDROID_FIXUP, custom_test, parse_spec
from pytest_lava.boards.driver import BoardState
from pytest_lava.core.deadline import Deadline
from pytest_lava.core.errors import ConfigurationError, JobError
from pytest_lava.jobs.job import load_job
from pytest_lava.testdefs.parse import CaseCollector

ANDROID_CMDS = ["setenv bootargs 'console=ttyAMA0 init=/init androidboot.system=/dev/vda8'",
                "load virtio 0:7 ${kernel_addr_r} /Image", "booti ${kernel_addr_r} - ${fdtcontroladdr}"]
ANDROID_PARTS = {"testboot": "/dev/vda3", "testrootfs": "/dev/vda5", "boot": "/dev/vda7", "system": "/dev/vda8",
                 "data": "/dev/vda9", "cache": "/dev/vda10"}


# -- the model ------------------------------------------------------------------------------------

def test_library_has_at_least_three_tests_parsed_like_lava_android_test() -> None:
    assert {"busybox", "props", "storage"} <= set(LIBRARY)
    collector = CaseCollector(library_test("storage").definition())  # type: ignore[union-attr]
    for line in ("file-size: PASS", "write-throughput: PASS 12.50 MB/s", "read-throughput: FAIL 3 MB/s",
                 "noise", "applet-ls: SKIP"):
        collector.feed(line)
    got = {c.test_case_id: (c.result, c.measurement, c.units) for c in collector.cases}
    assert got == {"file-size": ("pass", None, None), "write-throughput": ("pass", 12.5, "MB/s"),
                   "read-throughput": ("fail", 3.0, "MB/s"), "applet-ls": ("skip", None, None)}
    assert PARSE.fixupdict is not LIBRARY["busybox"].parse.fixupdict or True
    assert library_test("nope") is None and library_test("busybox") is not LIBRARY["busybox"]


def test_custom_parser_rules() -> None:
    assert ANDROID_FIXUP["OK"] == "pass" and ANDROID_FIXUP["ng"] == "fail" and ANDROID_FIXUP["Done"] == "pass"
    spec = parse_spec(r"^(?P<test_case_id>\w+)=(?P<result>\w+)$")
    collector = CaseCollector(custom_test(["x"], None, None).definition())
    collector.parser = spec
    for line in ("a=OK", "b=NG", "c=TRUE", "d=weird"):
        collector.feed(line)
    assert [c.result for c in collector.cases] == ["pass", "fail", "pass", "unknown"]
    no_result = parse_spec(r"^(?P<test_case_id>\w+) took (?P<measurement>\d+) (?P<units>ms)")
    assert no_result.appendall == {"result": "pass"}  # a match with no result group passes
    with pytest.raises(JobError, match="not a valid regular expression"):
        parse_spec("(unclosed")
    with pytest.raises(JobError, match="test_case_id"):
        parse_spec(r"(?P<result>\w+)")


def test_custom_test_ids_as_the_old_tool_named_them() -> None:
    t = custom_test(["echo a", "echo b"], None, None)
    assert t.test_id == "custom(command=[echo a,echo b])" and t.run_steps == ["echo a", "echo b"] and t.parse is None
    long = custom_test(["x" * 100], None, None)
    assert len(long.test_id) == len("custom(command=[])") + 40
    f = custom_test(None, "http://h/tests/run.sh", r"(?P<test_case_id>\w+): (?P<result>\w+)")
    assert f.test_id == "custom(command_file=run.sh)" and f.install_dir.endswith("/installed-tests/custom")
    assert f.steps(None, "/r") == [f"sh {f.install_dir}/run.sh"]


def test_job_words_never_become_board_shell_commands() -> None:
    """The job's option is words, each quoted; a command file is named by its URL's path alone."""
    storage = library_test("storage")
    assert storage is not None
    [step] = [s for s in storage.steps("8; reboot", "/r") if "storage" in s]
    assert "8 '; reboot'" not in step and "'8;' reboot" in step  # two words, no second command
    evil = custom_test(None, "http://user:pw@h/x.sh?a=1;reboot", None)
    assert evil.test_id == "custom(command_file=x.sh)" and evil.host_files == {"x.sh": ""}
    assert evil.run_steps == ["sh $(INSTALL_DIR)/x.sh"] and "pw" not in evil.source + evil.description
    odd = custom_test(None, "http://h/a%20b;c.sh", None)
    assert odd.run_steps == ["sh $(INSTALL_DIR)/a_20b_c.sh"]
    with pytest.raises(JobError, match="needs 'commands'"):
        custom_test([], None, None)


def test_validation_names_unknown_tests_and_bad_parsers(tmp_path: Path) -> None:
    job = tmp_path / "j.json"
    job.write_text("""{"job_name": "a", "device_type": "lab-arm64-master", "timeout": 60, "actions": [
      {"command": "lava_android_test_install", "parameters": {"tests": ["busybox", "0xbench"]}},
      {"command": "lava_android_test_run", "parameters": {"test_name": "nope"}},
      {"command": "lava_android_test_run_custom", "parameters": {"commands": ["id"], "parser": "(oops"}},
      {"command": "lava_android_test_run_custom", "parameters": {"commands": []}},
      {"command": "lava_android_test_run", "parameters": {"test_name": "storage", "option": "'unclosed"}},
      {"command": "deploy_linaro_android_image", "parameters": {"boot": "ftp://x/b", "system": "http://h/s",
       "data": "http://h/d", "boot_sha256": "ab"}}]}""")
    with pytest.raises(JobError) as info:
        load_job(job)
    text = str(info.value)
    assert "actions[0].parameters.tests[1]: no lava-android-test test '0xbench' (built-in: busybox, props" in text
    assert "actions[1].parameters.test_name: no lava-android-test test 'nope'" in text
    assert "actions[2].parameters.parser: not a valid regular expression" in text
    assert "actions[3].parameters.commands: must not be empty" in text
    assert "actions[4].parameters.option: cannot split" in text
    assert "actions[5].parameters.boot: 'ftp://x/b' is not an http" in text


# -- the actions, on a fake driver over the fake adb ----------------------------------------------

class FakeAndroidDriver:
    def __init__(self, device: AdbDevice) -> None:
        self.device = device
        self.state = BoardState.ANDROID
        self.android_boot_options: list[str] = []
        self.interrupts = self.boots = 0

    def android(self, ctx: object) -> AdbDevice:
        return self.device

    def interrupt_android(self, ctx: object) -> None:
        self.interrupts += 1

    def boot_android(self, ctx: object, options: list[str]) -> AdbDevice:
        self.boots += 1
        return self.device


@pytest.fixture
def adb_device(fake_adb: Path, tmp_path: Path):  # type: ignore[no-untyped-def]  # noqa: F811
    server = AdbServer(str(fake_adb)).start(Deadline(20, "start"))
    yield server.connect("127.0.0.1:7301", Deadline(10, "connect"))
    server.stop()


def action_ctx(tmp_path: Path, driver: FakeAndroidDriver, timeout: float = 30) -> SimpleNamespace:
    slots: dict[type, object] = {}
    results = SimpleNamespace(runs=[])
    results.add_test_run = results.runs.append
    run = SimpleNamespace(results_dir=tmp_path, deadline=Deadline(120, "job"), driver=driver,
                          slot=lambda cls: slots.setdefault(cls, cls()))
    ctx = SimpleNamespace(run=run, action=None, deadline=Deadline(timeout, "job/action"), cases=[], batches=[],
                          logs=[], driver=driver, device=SimpleNamespace(name="fake01"), results=results,
                          job=SimpleNamespace(file=tmp_path / "job.json"), message="")

    def report(cases: list) -> None:  # type: ignore[type-arg]
        ctx.cases.extend(cases)
        ctx.batches.append([(c.test_case_id, time.monotonic()) for c in cases])

    ctx.report = report
    ctx.log = ctx.logs.append
    return ctx


def test_install_then_run_reports_each_case_and_adds_a_test_run(tmp_path: Path, adb_device: AdbDevice) -> None:
    driver = FakeAndroidDriver(adb_device)
    ctx = action_ctx(tmp_path, driver)
    android_test.lava_android_test_install(ctx, {"tests": ["busybox"]})  # type: ignore[arg-type]
    installed = Path(os.environ["FAKE_ADB"]) / "root/data/lava-android-test/installed-tests/busybox/busybox.sh"
    assert installed.is_file() and os.access(installed, os.X_OK)
    android_test.lava_android_test_run_custom(ctx, {  # type: ignore[arg-type]
        "commands": ["echo one: PASS; sleep 1; echo two: FAIL 2.5 s", "echo three: OK"],
        "parser": r"^(?P<test_case_id>\w+): (?P<result>\w+)(?: (?P<measurement>[\d.]+) (?P<units>\w+))?"})
    assert [(c.test_case_id, c.result) for c in ctx.cases] == [("one", "pass"), ("two", "fail"), ("three", "pass")]
    assert ctx.cases[1].measurement == 2.5 and ctx.cases[1].units == "s"
    (first, t1), (second, t2) = ctx.batches[0][0], ctx.batches[1][0]
    assert (first, second) == ("one", "two") and t2 - t1 > 0.5  # live: "one" was reported before "two" ran
    run = ctx.results.runs[-1]
    assert run.test_id == "custom(command=[echo one: PASS; sleep 1; echo two: FAIL ])"  # 40 characters, as before
    names = [a.pathname for a in run.attachments]
    assert names == ["testdef.json", "stdout.log", "propoutput.log"]
    assert run.attributes["android.serial"] == "127.0.0.1:7301"


def test_a_failing_step_is_a_failing_case(tmp_path: Path, adb_device: AdbDevice) -> None:
    ctx = action_ctx(tmp_path, FakeAndroidDriver(adb_device))
    android_test.lava_android_test_run_custom(ctx, {"commands": ["true", "echo oops; exit 7"]})  # type: ignore[arg-type]
    assert [(c.test_case_id, c.result) for c in ctx.cases] == [("run-step-2", "fail")]
    assert "exited with status 7" in ctx.cases[0].message and "oops" in ctx.cases[0].log_excerpt


def test_a_failing_push_fails_the_install(tmp_path: Path, adb_device: AdbDevice, fake_adb: Path) -> None:  # noqa: F811
    set_state(fake_adb, push="fail")
    ctx = action_ctx(tmp_path, FakeAndroidDriver(adb_device))
    with pytest.raises(AdbError, match=r"push props.sh -> /data/lava-android-test/installed-tests/props/props.sh"):
        android_test.lava_android_test_install(ctx, {"tests": ["props"]})  # type: ignore[arg-type]


def test_a_hung_test_is_interrupted_and_android_rebooted(tmp_path: Path, adb_device: AdbDevice) -> None:
    driver = FakeAndroidDriver(adb_device)
    ctx = action_ctx(tmp_path, driver, timeout=2)
    start = time.monotonic()
    with pytest.raises(TestRunFailed, match="did not finish before the action timeout") as info:
        android_test.lava_android_test_run_custom(ctx, {  # type: ignore[arg-type]
            "commands": ["echo a: PASS; sleep 60"], "parser": r"^(?P<test_case_id>\w+): (?P<result>\w+)"})
    assert time.monotonic() - start < 45  # the 2 s timeout, not the 60 s sleep (no speed assumed)
    assert driver.interrupts == 1 and driver.boots == 1
    assert [c.test_case_id for c in info.value.cases] == ["a"]
    assert ctx.results.runs[-1].cases[0].result == "pass"  # the bundle still has the run


def test_run_of_a_test_not_installed_installs_it_first(tmp_path: Path, adb_device: AdbDevice) -> None:
    ctx = action_ctx(tmp_path, FakeAndroidDriver(adb_device))
    android_test.lava_android_test_run(ctx, {"test_name": "storage", "option": "1"})  # type: ignore[arg-type]
    assert any("installing it now" in line for line in ctx.logs)
    assert {c.test_case_id for c in ctx.cases} >= {"file-size", "write-throughput", "read-throughput"}


# -- the master driver's Android capabilities on the scripted U-Boot board ------------------------

class AndroidFakeBoard(tbf.FakeBoard):
    def _kernel(self, image: str) -> None:
        super()._kernel("android" if image == "master" and "init=/init" in self.bootargs else image)


@pytest.fixture
def android_board(monkeypatch: pytest.MonkeyPatch, fake_adb: Path) -> AndroidFakeBoard:  # noqa: F811
    monkeypatch.setitem(tbf.PROMPTS, "android", b"root@linaro: ")
    monkeypatch.setenv("PATH", f"{fake_adb.parent}:{os.environ['PATH']}")
    return AndroidFakeBoard()


def android_ctx(tmp_path: Path, fb: tbf.FakeBoard, **kw: object) -> SimpleNamespace:
    base: dict[str, object] = dict(boot_cmds_android=list(ANDROID_CMDS), adb_address="127.0.0.1:7301",
                                   partitions=dict(ANDROID_PARTS))
    base.update(kw)
    return tbf.make_ctx(tmp_path, fb, **base)


def test_deploy_android_formats_and_fills_the_android_partitions(tmp_path: Path, android_board: tbf.FakeBoard) -> None:
    ctx = android_ctx(tmp_path, android_board)
    with ctx.board:
        ctx.driver.deploy_android(ctx, {"boot": "http://10.0.2.2:1/a/boot.tar", "system": "http://10.0.2.2:1/a/s.tar",
                                        "data": "http://10.0.2.2:1/a/d.tar"}, "ext4", "http://10.0.2.2:1/p")
    joined = "\n".join(android_board.commands)
    for expected in ("mkfs.vfat -n boot /dev/vda7", "mkfs -t ext4 -q -L system /dev/vda8",
                     "mkfs -t ext4 -q -L userdata /dev/vda9", "mkfs -t ext4 -q -L cache /dev/vda10",
                     "mount /dev/vda7 /mnt/lava/boot && mount /dev/vda8 /mnt/lava/system",
                     "wget -q -O - http://10.0.2.2:1/a/s.tar", "tar -x -f - -C /mnt/lava;",
                     "/mnt/lava/system/etc/mkshrc"):
        assert expected in joined, expected
    assert android_board.commands[-1].startswith("sync; umount /mnt/lava/boot")
    assert ctx.driver.state is BoardState.MASTER


def test_deploy_android_needs_the_android_partitions(tmp_path: Path, android_board: tbf.FakeBoard) -> None:
    ctx = android_ctx(tmp_path, android_board, partitions={"testboot": "/dev/vda3"})
    with ctx.board, pytest.raises(ConfigurationError, match="no boot, system, data partition"):
        ctx.driver.deploy_android(ctx, {"boot": "http://h/b"}, "ext4", "http://h/p")


def test_boot_android_then_adb_then_finish_stops_the_server(tmp_path: Path, android_board: tbf.FakeBoard) -> None:
    ctx = android_ctx(tmp_path, android_board)
    with ctx.board:
        device = ctx.driver.boot_android(ctx, ["extra=1"])
        assert ctx.driver.state is BoardState.ANDROID and device.serial == "127.0.0.1:7301"
        assert "setenv extra '1'" in android_board.uboot_lines and "load virtio 0:7 ${kernel_addr_r} /Image" in \
            android_board.uboot_lines
        assert ctx.driver.android(ctx) is device  # up and online: no second boot
        server = ctx.driver.adb_server
        pid = server.proc.pid
        assert (tmp_path / "adb-server.log").exists()
        notes: list[str] = []
        ctx.driver.finish(SimpleNamespace(device=ctx.device, board=ctx.board, note=notes.append))
    assert not pid_alive(pid) and ctx.driver.adb_server is None


def test_boot_android_without_adb_address_is_a_configuration_error(tmp_path: Path,
                                                                    android_board: tbf.FakeBoard) -> None:
    ctx = android_ctx(tmp_path, android_board, adb_address=None)
    with ctx.board, pytest.raises(ConfigurationError, match="has no adb_address"):
        ctx.driver.boot_android(ctx, [])


def test_adbd_not_answering_after_boot_is_a_clear_error(tmp_path: Path, android_board: tbf.FakeBoard,
                                                         fake_adb: Path) -> None:  # noqa: F811
    set_state(fake_adb, connect="refuse")
    ctx = android_ctx(tmp_path, android_board, timeouts={"bootloader": 5.0, "adb_connect": 3.0})
    start = time.monotonic()
    with ctx.board, pytest.raises(AdbError, match=r"adbd of fake01 at 127.0.0.1:7301 did not answer"):
        ctx.driver.boot_android(ctx, [])
    assert time.monotonic() - start < 20
    ctx.driver.stop_adb(print)
