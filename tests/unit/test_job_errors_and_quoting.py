"""Job mistakes are job errors, not board failures; job values never become commands.

* an action the board type cannot run is refused by validation (a Problem naming the board type
  and what it runs; exit status 4 from ``--lava-validate``);
* a JobError at run time leaves the board's health alone (no count, no quarantine);
* boot options with ``'``, ``;``, a newline... are refused, never sent to U-Boot;
* the test image's os-release is read as data on a real busybox shell, never sourced;
* a job file named ``...json`` keeps its results inside the results directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_busybox import BUSYBOX, make_applet_dir, start_shell, stop

from pytest_lava.actions import apt as apt_action
from pytest_lava.actions.spec import SETUP, ActionSpec
from pytest_lava.boards.master import MasterBoard, apply_boot_options, boot_option_problem
from pytest_lava.core.deadline import Deadline
from pytest_lava.core.errors import ArtifactError, ConfigurationError, InfrastructureError, JobError, LavaBug
from pytest_lava.devices.device import Device
from pytest_lava.devices.directory import DeviceSet
from pytest_lava.devices.health import BoardHealth
from pytest_lava.devices.pool import BoardPool
from pytest_lava.jobs.job import ActionDef, Job, job_from_document, load_job, safe_component
from pytest_lava.jobs.loader import Document
from pytest_lava.jobs.plan import Plan
from pytest_lava.jobs.runner import JobRun, RunOptions
from pytest_lava.results.model import job_results_dir

BOOT_CMDS = ["setenv bootargs 'console=ttyAMA0 root=/dev/vda5'", "run loadkernel", "booti ${kernel_addr_r}"]


def master(name: str = "panda01", **kw: object) -> Device:
    return Device(name=name, device_type="panda", board_type="master", boot_cmds=list(BOOT_CMDS), **kw)  # type: ignore[arg-type]


def job_data(*actions: dict) -> dict:
    return {"job_name": "j", "target": "panda01", "timeout": 600, "actions": list(actions)}


def plan_problems(data: dict, *boards: Device) -> list:
    job = job_from_document(Document("job.json", data), Path("job.json"))
    devices = DeviceSet(Path("lab"), {b.name: b for b in boards or (master(),)})
    with pytest.raises(JobError) as info:
        Plan.build(job, devices)
    return info.value.problems


# --- 1. an action the board type cannot run: refused by validation ------------------------------

KERNEL = {"command": "deploy_linaro_kernel", "parameters": {"kernel": "http://x/zImage"}}


def test_deploy_linaro_kernel_on_a_master_board_is_refused_by_validation() -> None:
    (problem,) = plan_problems(job_data(KERNEL, {"command": "boot_linaro_image"}))
    assert problem.file == "job.json" and problem.path == "actions[0].command"
    assert "board type 'master' cannot run 'deploy_linaro_kernel'" in problem.reason
    assert "board type 'qemu'" in problem.reason  # what to use instead
    assert "runs: " in problem.reason and "deploy_linaro_image" in problem.reason  # what it does run


def test_the_same_job_on_a_qemu_board_is_valid_and_qemu_refuses_boot_master_image() -> None:
    qemu = Device(name="q1", device_type="qemu", board_type="qemu")
    job = job_from_document(Document("job.json", {**job_data(KERNEL), "target": "q1"}), Path("job.json"))
    assert Plan.build(job, DeviceSet(Path("lab"), {"q1": qemu})).boards == [qemu]
    data = {**job_data({"command": "boot_master_image"}), "target": "q1"}
    (problem,) = plan_problems(data, qemu)
    assert problem.path == "actions[0].command" and "board type 'qemu' cannot run 'boot_master_image'" in problem.reason


def test_validate_cli_exits_4_with_the_problem(pytester: pytest.Pytester) -> None:
    lab = pytester.mkdir("lab")
    (lab / "device-types").mkdir()
    (lab / "device-types" / "panda.yaml").write_text("board_type: master\n")
    (lab / "panda01.yaml").write_text("device_type: panda\nconnection_command: 'true'\n")
    pytester.path.joinpath("kernel.json").write_text(json.dumps(job_data(KERNEL)))
    result = pytester.runpytest("-p", "no:cacheprovider", "--lava-validate", "--lava-job", "kernel.json",
                                "--lava-devices", "lab")
    assert result.ret == 4, result.stdout.str()
    result.stdout.fnmatch_lines(["*kernel.json: actions[[]0[]].command: board type 'master' cannot run "
                                 "'deploy_linaro_kernel'*runs: *"])


# --- 2. a JobError at run time never counts against the board ------------------------------------

def _run_job(tmp_path: Path, exc: BaseException, *, health_check: bool = False, threshold: int = 1) -> JobRun:
    """One job on panda01 whose only action raises ``exc``, run through JobRun as the plugin does."""
    def run(ctx: object, params: dict) -> None:
        raise exc

    spec = ActionSpec("broken_action", SETUP, run=run)
    job = Job(file=tmp_path / "j.json", timeout=60, actions=[ActionDef(0, "broken_action", {}, {}, spec)],
              target="panda01", health_check=health_check)
    device = master(health_failure_threshold=threshold)
    pool = BoardPool({"panda01": device}, tmp_path / "state")
    run_ = JobRun(Plan(job, [device], "panda01"), pool,
                  RunOptions(results_dir=tmp_path / "results", state_dir=tmp_path / "state", rootdir=tmp_path,
                             echo=lambda _m: None, announce=lambda _m: None))
    with pytest.raises(type(exc)):
        run_.run_action(job.actions[0])
    run_.finish()
    return run_


@pytest.mark.parametrize("exc", [
    JobError.single("j.json", "actions[0].command", "board type 'master' cannot run 'deploy_linaro_kernel'"),
    ArtifactError("http://x/rootfs.tgz: HTTP 404"),
], ids=["job-error", "artifact-error"])
def test_job_errors_do_not_count_against_the_board(tmp_path: Path, exc: JobError) -> None:
    health = BoardHealth(tmp_path / "state")
    for _ in range(3):  # threshold 1: a single infrastructure failure would quarantine
        run = _run_job(tmp_path, exc)
        assert run.job_error and not run.infrastructure_failed
    state = health.load("panda01")
    assert not state.quarantined and state.consecutive_infra_failures == 0
    assert [e.get("job_error") for e in state.history] == [True, True, True]
    # a health check ending in a job error neither quarantines nor releases
    _run_job(tmp_path, exc, health_check=True)
    assert not health.is_quarantined("panda01")
    # the control: an infrastructure failure does count
    _run_job(tmp_path, InfrastructureError("power: hard_reset_command exited 1"))
    assert health.is_quarantined("panda01")
    _run_job(tmp_path, exc, health_check=True)
    assert health.is_quarantined("panda01")  # and a job error does not release it either


def test_a_job_error_leaves_the_count_as_it_is(tmp_path: Path) -> None:
    health = BoardHealth(tmp_path)
    kw = dict(health_check=False, passed=False, threshold=3)
    health.record("b", infrastructure_failure=True, **kw)  # type: ignore[arg-type]
    health.record("b", infrastructure_failure=True, **kw)  # type: ignore[arg-type]
    assert health.record("b", infrastructure_failure=False, job_error=True, **kw) is None  # type: ignore[arg-type]
    assert health.load("b").consecutive_infra_failures == 2  # neither reset nor counted
    assert health.record("b", infrastructure_failure=True, job_error=True, **kw) is not None  # type: ignore[arg-type]
    assert health.is_quarantined("b")  # an infrastructure failure wins over a job error in the same job


# --- 3. boot options: refused, never injected into U-Boot ------------------------------------------

@pytest.mark.parametrize("option", [
    "bootargs=console=ttyS0'; mmc erase 0 1000; '",  # ' ends the quoting
    "bootargs=a;reset",  # ; separates commands where quotes are not honoured
    "bootargs=a\\",  # \ escapes the closing quote in U-Boot's simple parser
    "bootargs=a\nreset",  # a newline is a second command line
    "bootargs=a\rreset", "bootargs=a\x00b", "bootargs=a\x1b[2J", "bootargs=caf\u00e9",
    "bootcmd=mmc erase 0 1000",  # a variable U-Boot runs as commands
    "loadkernel=mmc erase 0 1000",  # one the device's boot_cmds `run`
    "no-equals-sign", "bad name=x", "=x",
])
def test_unsafe_boot_options_are_refused(option: str) -> None:
    assert boot_option_problem(option, BOOT_CMDS)
    with pytest.raises(JobError):
        apply_boot_options(BOOT_CMDS, [option])


def test_unsafe_boot_options_are_refused_by_validation() -> None:
    options = ["bootargs=x'; reset; '", "fdtfile=a;reset", "console=ttyS0", "loadkernel=reset"]
    problems = plan_problems(job_data({"command": "boot_linaro_image", "parameters": {"options": options}}))
    by_path = {p.path: p.reason for p in problems}
    assert set(by_path) == {"actions[0].parameters.options[0]", "actions[0].parameters.options[1]",
                            "actions[0].parameters.options[3]"}
    assert "\"'\"" in by_path["actions[0].parameters.options[0]"] and "board type 'master'" in by_path[
        "actions[0].parameters.options[0]"]
    assert "';'" in by_path["actions[0].parameters.options[1]"]
    assert "run by the bootloader" in by_path["actions[0].parameters.options[3]"]


def test_control_characters_in_options_are_refused_for_every_board_type() -> None:
    data = job_data({"command": "boot_linaro_image", "parameters": {"options": ["quiet\nreset", "ok"]}})
    with pytest.raises(JobError) as info:
        job_from_document(Document("job.json", data), Path("job.json"))
    (problem,) = info.value.problems
    assert problem.path == "actions[0].parameters.options[0]" and "control characters" in problem.reason


def test_safe_options_are_single_quoted() -> None:
    out = apply_boot_options(BOOT_CMDS, ["bootargs=console=ttyS0,115200 root=/dev/vda5 ip=${ipaddr} rw",
                                         "fdtfile=vexpress.dtb"])
    assert out[0] == "setenv bootargs 'console=ttyS0,115200 root=/dev/vda5 ip=${ipaddr} rw'"
    assert out[-2:] == ["setenv fdtfile 'vexpress.dtb'", BOOT_CMDS[-1]]


# --- 4. the test image's os-release is data, not a script ------------------------------------------

class _MasterOnBusybox(MasterBoard):
    """The master image's root shell is a real busybox shell on the host; testrootfs is a directory."""

    def __init__(self, shell: object, root: Path) -> None:
        super().__init__()
        self._shell, self._root = shell, root

    def master_shell(self, ctx):  # type: ignore[no-untyped-def]
        return self._shell

    def mount_testrootfs(self, ctx, sh):  # type: ignore[no-untyped-def]
        return str(self._root)

    def unmount(self, ctx, sh, path):  # type: ignore[no-untyped-def]
        pass


@pytest.mark.skipif(not BUSYBOX, reason="needs busybox")
def test_os_release_is_never_executed(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    marker = tmp_path / "pwned"
    (root / "etc" / "os-release").write_text(
        'NAME="Evil Linux"\n'
        f"ID=$(touch {marker}-subst)\n"
        f"touch {marker}-line\n"
        f"`touch {marker}-backquote`\n"
        'VERSION_CODENAME="bookworm" # the codename\n')
    (root / "etc" / "lsb-release").write_text(f"DISTRIB_CODENAME=$(touch {marker}-lsb)\n")
    bindir = make_applet_dir(tmp_path / "bin")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".fakerc").write_text("")
    shell = start_shell(bindir, home)
    try:
        ctx = SimpleNamespace(deadline=Deadline(60, "job/add_apt_repository"), logs=[],
                              device=Device(name="fake01", device_type="fake"),
                              job=SimpleNamespace(file=tmp_path / "job.yaml"), run=SimpleNamespace(apt_sources=[]))
        ctx.log = ctx.logs.append
        ctx.driver = _MasterOnBusybox(shell, root)
        apt_action.add_apt_repository(ctx, {"arg": ["ppa:linaro-maintainers/tools"]})
    finally:
        stop(shell)
    assert not list(tmp_path.glob("pwned*")), "the test image's os-release was executed"
    written = root / "etc" / "apt" / "sources.list.d" / "linaro-maintainers-tools-bookworm.list"
    assert written.read_text().startswith("deb http://ppa.launchpad.net/linaro-maintainers/tools/ubuntu bookworm main")


def test_parse_codename_unquotes_without_executing() -> None:
    parse = apt_action.parse_codename
    assert parse('VERSION_CODENAME="jammy"\nDISTRIB_CODENAME=focal\n') == "jammy"
    assert parse("VERSION_CODENAME='$(reboot)'\nDISTRIB_CODENAME=focal\n") == "focal"
    assert parse('VERSION_CODENAME="unterminated\nDISTRIB_CODENAME=x y\n') == ""
    assert parse("VERSION_CODENAME=-rf\n") == ""  # never an option-like word
    cmd = apt_action.read_codename_command("/mnt/lava/rootfs")
    assert ". /mnt" not in cmd and "source" not in cmd and "head -c" in cmd and "[ -f " in cmd


# --- 5. results stay inside the results directory -------------------------------------------------

@pytest.mark.parametrize("stem", ["..", ".", "...", ".state", "spool", "a b/../c", "x" * 300, "\u00e9t\u00e9"])
def test_safe_component(stem: str) -> None:
    safe = safe_component(stem)
    assert safe and safe not in (".", "..", "spool") and not safe.startswith(".")
    assert "/" not in safe and "\\" not in safe and len(safe) <= 120
    assert safe_component("old-panda_1.2+x") == "old-panda_1.2+x"  # an ordinary name is unchanged


def test_a_job_named_dot_dot_dot_json_keeps_its_results_inside(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    path = jobs / "...json"
    path.write_text(json.dumps(job_data({"command": "boot_master_image"})))
    job = load_job(path)
    assert job.file.stem == ".."  # what used to become the results directory's parent
    results = tmp_path / "results"
    results.mkdir()
    device = master()
    run = JobRun(Plan(job, [device], "panda01"), BoardPool({"panda01": device}, tmp_path / "state"),
                 RunOptions(results_dir=results, state_dir=tmp_path / "state", rootdir=tmp_path,
                            echo=lambda _m: None, announce=lambda _m: None))
    assert run.results_dir.parent == results and run.results_dir.resolve().parent == results.resolve()
    run.start()
    run.finish()
    assert (run.results_dir / "bundle.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs", "results", "state"]  # nothing beside it


def test_job_results_dir_refuses_escapes(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    assert job_results_dir(results, "ok") == results / "ok"
    for bad in ("..", ".", "", "a/b", "../x"):
        with pytest.raises(LavaBug):  # Job.id never gives these
            job_results_dir(results, bad)
    os.symlink(tmp_path, results / "link")  # a link out of the results directory
    with pytest.raises(ConfigurationError, match="outside the results directory"):
        job_results_dir(results, "link")
