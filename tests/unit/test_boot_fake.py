"""Master-image board logic on a scripted fake board: U-Boot countdown, boot_cmds, master and
test prompts, retries, soft vs hard reboot, deploy steps, apt entries, the qemu command line."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from fakes import ScriptedConnection

from pytest_lava.actions import apt as apt_action
from pytest_lava.actions import boot as boot_action
from pytest_lava.actions import deploy as deploy_action
from pytest_lava.boards.board import Board
from pytest_lava.boards.driver import BoardState, DeployStepFailed
from pytest_lava.boards.master import BootFailed, MasterBoard, apply_boot_options, render_prompt
from pytest_lava.boards.qemu import qemu_argv
from pytest_lava.core.deadline import Deadline
from pytest_lava.core.errors import ConfigurationError, InfrastructureError, JobError
from pytest_lava.devices.device import Device

PROMPTS = {"master": b"root@master:~# \x1b[6n", "test": b"root@linaro:/# \x1b[6n"}
BOOT_CMDS = ["setenv bootargs 'console=ttyAMA0 root=/dev/vda5 rootwait'", "load virtio 0:3 ${kernel_addr_r} /Image",
             "booti ${kernel_addr_r} - ${fdtcontroladdr}"]
_CMD = re.compile(r"echo LAVA_ST''ART_(\w+); (.*); echo LAVA_E''ND_\1 \$\?$")


class FakeBoard:
    """U-Boot with an autoboot countdown, a master and a test image, a shell answering the
    harness's marker commands (status 0 unless a ``fail`` regex matches)."""

    def __init__(self, *, broken_boots: int = 0, fail: str | None = None) -> None:
        self.conn = ScriptedConnection(on_write=self)
        self.state = "off"
        self.broken = broken_boots
        self.fail = re.compile(fail) if fail else None
        self.bootargs = ""
        self.uboot_lines: list[str] = []
        self.commands: list[str] = []
        self.power_cycles = self.soft_reboots = self.power_offs = 0
        self._partial = b""
        self._gen = 0
        self._lock = threading.Lock()

    # power (what Board.power is replaced with)
    def reset(self, deadline: object = None) -> None:
        self.power_cycles += 1
        self._uboot()

    def off(self, deadline: object = None) -> None:
        self.power_offs += 1
        self.state = "off"

    def available(self, what: str) -> bool:
        return True

    def _uboot(self) -> None:
        with self._lock:
            self.state = "countdown"
            self._gen += 1
            gen = self._gen
        self.conn.feed(b"\r\nU-Boot 2023.01 (fake)\r\nHit any key to stop autoboot:  1 ", 0.02)
        threading.Timer(0.4, self._autoboot, args=(gen,)).start()

    def _autoboot(self, gen: int) -> None:
        with self._lock:
            if self.state != "countdown" or gen != self._gen:
                return
        self._kernel("master")

    def _kernel(self, image: str) -> None:
        self.conn.feed(b"Starting kernel ...\r\n[    0.000000] Linux version 6.1.0-fake\r\n", 0.02)
        if self.broken > 0:
            self.broken -= 1
            self.state = "dead"
            return
        self.state = image
        self.conn.feed(PROMPTS[image], 0.02)

    def __call__(self, data: bytes, conn: ScriptedConnection) -> None:
        if self.state == "countdown":
            self.state = "uboot"
            conn.feed(b"\r\n=> ")
            return
        text = self._partial + data
        *lines, self._partial = text.split(b"\n")
        for raw in lines:
            line = raw.decode().replace("\x03", "").strip("\r")
            if self.state == "uboot":
                self.uboot_lines.append(line)
                conn.feed(raw + b"\r\n")
                if line.startswith("setenv bootargs"):
                    self.bootargs = line
                if line.startswith("booti"):
                    self._kernel("test" if "vda5" in self.bootargs else "master")
                else:
                    conn.feed(b"=> ")
            elif self.state in PROMPTS:
                conn.feed(raw + b"\r\n")
                if line.strip() == "reboot":
                    self.soft_reboots += 1
                    conn.feed(b"The system is going down NOW!\r\n")
                    self._uboot()
                    continue
                m = _CMD.match(line)
                if m:
                    cmd = m.group(2)
                    self.commands.append(cmd)
                    status = 1 if self.fail and self.fail.search(cmd) else 0
                    conn.feed(f"LAVA_START_{m.group(1)}\r\nLAVA_END_{m.group(1)} {status}\r\n".encode())
                conn.feed(PROMPTS[self.state])


def device(**kw: object) -> Device:
    base = dict(name="fake01", device_type="fake", master_str=r"root@master:[^\r\n]*# ",
                tester_str=r"root@linaro:[^\r\n]*# ", boot_cmds=list(BOOT_CMDS), boot_retries=2,
                boot_linaro_timeout=10.0, partitions={"testboot": "/dev/vda3", "testrootfs": "/dev/vda5"},
                timeouts={"bootloader": 5.0, "power_on_to_prompt": 10.0, "command": 10.0, "deploy": 10.0})
    base.update(kw)
    return Device(**base)  # type: ignore[arg-type]


def make_ctx(tmp_path: Path, fb: FakeBoard, **kw: object) -> SimpleNamespace:
    dev = device(**kw)
    board = Board(dev, log_dir=tmp_path)
    board.attach(fb.conn)  # type: ignore[arg-type]
    board.power = fb  # type: ignore[assignment]
    # the fake's connection survives power cycles: "reconnecting" keeps the same console
    board.close_console = lambda reason="": None  # type: ignore[method-assign]
    driver = MasterBoard()
    ctx = SimpleNamespace(board=board, device=dev, deadline=Deadline(60, "job/action"), logs=[],
                          records=[], driver=driver, board_type=driver, action=None,
                          job=SimpleNamespace(file=tmp_path / "job.yaml"),
                          run=SimpleNamespace(results_dir=tmp_path, options=SimpleNamespace(rootdir=tmp_path),
                                              deployed=None, apt_sources=[]))
    ctx.log = ctx.logs.append
    ctx.record = lambda case, result, message="": ctx.records.append((case, result, message))
    return ctx


@pytest.fixture
def fb() -> FakeBoard:
    return FakeBoard()


def test_boot_master_power_cycles_when_the_state_is_unknown(tmp_path: Path, fb: FakeBoard) -> None:
    ctx = make_ctx(tmp_path, fb)
    with ctx.board:
        boot_action.boot_master_image(ctx, {})
    assert ctx.driver.state is BoardState.MASTER and fb.power_cycles == 1 and fb.soft_reboots == 0
    assert fb.uboot_lines == []  # the master is U-Boot's default: nothing sent to U-Boot


def test_boot_master_soft_reboots_a_running_board(tmp_path: Path, fb: FakeBoard) -> None:
    ctx = make_ctx(tmp_path, fb)
    with ctx.board:
        ctx.board_type.boot_master(ctx)
        ctx.board_type.boot_master(ctx)
    assert fb.power_cycles == 1 and fb.soft_reboots == 1 and ctx.driver.state is BoardState.MASTER


def test_boot_linaro_image_sends_boot_cmds_and_records_boot_image(tmp_path: Path, fb: FakeBoard) -> None:
    ctx = make_ctx(tmp_path, fb)
    with ctx.board:
        ctx.board_type.boot_master(ctx)
        boot_action.boot_linaro_image(ctx, {"options": ["bootargs=console=ttyAMA0 root=/dev/vda5 quiet", "x=1"]})
    assert ctx.driver.state is BoardState.TEST and fb.state == "test"
    assert fb.uboot_lines == ["setenv bootargs 'console=ttyAMA0 root=/dev/vda5 quiet'", BOOT_CMDS[1],
                              "setenv x '1'", BOOT_CMDS[2]]
    assert ctx.records == [("boot_image", "pass", "")]
    assert fb.soft_reboots == 1  # the master was up: reboot, not power


def test_test_shell_boots_the_test_image_once(tmp_path: Path, fb: FakeBoard) -> None:
    ctx = make_ctx(tmp_path, fb)
    with ctx.board:
        sh = ctx.board_type.test_shell(ctx)
        assert sh.run("true", 10).status == 0
        ctx.board_type.test_shell(ctx)
        assert fb.power_cycles == 1 and fb.soft_reboots == 0
        ctx.board_type.master_shell(ctx)  # back to the master: a soft reboot, U-Boot's default
    assert fb.soft_reboots == 1 and ctx.driver.state is BoardState.MASTER


def test_a_failed_boot_is_retried(tmp_path: Path) -> None:
    fb = FakeBoard(broken_boots=1)
    ctx = make_ctx(tmp_path, fb, timeouts={"bootloader": 5.0, "power_on_to_prompt": 3.0})
    with ctx.board:
        ctx.board_type.boot_master(ctx)
    assert fb.power_cycles == 2 and ctx.driver.state is BoardState.MASTER
    assert any("attempt 1/2" in line for line in ctx.logs)


def test_boot_gives_up_after_boot_retries_and_records_the_failure(tmp_path: Path) -> None:
    fb = FakeBoard(broken_boots=10)
    ctx = make_ctx(tmp_path, fb, boot_linaro_timeout=2.0, timeouts={"bootloader": 2.0})
    ctx.driver.state = BoardState.MASTER
    fb.state = "master"
    with ctx.board, pytest.raises(BootFailed) as info:
        boot_action.boot_linaro_image(ctx, {})
    assert "2 attempt(s)" in str(info.value) and ctx.driver.state is BoardState.UNKNOWN
    assert fb.soft_reboots == 1 and fb.power_cycles == 1
    assert ctx.records[0][:2] == ("boot_image", "fail") and "Failed to boot test image" in ctx.records[0][2]


def test_a_board_without_boot_cmds_uses_the_master_as_test_image(tmp_path: Path, fb: FakeBoard) -> None:
    ctx = make_ctx(tmp_path, fb, boot_cmds=[], tester_str=r"root@master:[^\r\n]*# ")
    with ctx.board:
        ctx.board_type.test_shell(ctx)
        assert ctx.driver.state is BoardState.MASTER
        with pytest.raises(ConfigurationError, match="no boot_cmds"):
            ctx.board_type.boot_test(ctx, [])


def test_apply_boot_options() -> None:
    assert apply_boot_options(BOOT_CMDS, []) == BOOT_CMDS
    out = apply_boot_options(BOOT_CMDS, ["bootargs=a b", "fdtfile=x.dtb"])
    assert out[0] == "setenv bootargs 'a b'" and out[-2] == "setenv fdtfile 'x.dtb'" and out[-1] == BOOT_CMDS[-1]
    with pytest.raises(JobError):  # the job's mistake, not the lab's
        apply_boot_options(BOOT_CMDS, ["no-equals-sign"])


def test_render_prompt() -> None:
    assert render_prompt(r"root@\h:\w# ", "linaro") == "root@linaro:/# "


# --- deploy and apt from the master, on the fake ------------------------------------------------

def test_deploy_tarballs_formats_fetches_and_names_the_test_image(tmp_path: Path, fb: FakeBoard) -> None:
    ctx = make_ctx(tmp_path, fb)
    with ctx.board:
        ctx.board_type.deploy_tarballs(ctx, "http://10.0.2.2:1/b/boot.tar", "http://10.0.2.2:1/r/rootfs.tar", "ext4",
                                       "http://10.0.2.2:1/p/probe")
    joined = "\n".join(fb.commands)
    assert "mkfs.vfat -n testboot /dev/vda3" in joined and "mkfs -t ext4 -q -L testrootfs /dev/vda5" in joined
    assert "wget -q -O - http://10.0.2.2:1/r/rootfs.tar" in joined and "tar -x -f - -C /mnt/lava/rootfs" in joined
    assert "echo linaro > /mnt/lava/rootfs/etc/hostname" in joined
    assert "nc " not in joined and "netcat" not in joined
    assert fb.commands[-1].startswith("sync; umount")


def test_deploy_step_failure_names_the_step_and_url(tmp_path: Path) -> None:
    fb = FakeBoard(fail=r"wget -q -O - http://10.0.2.2:1/r/")
    ctx = make_ctx(tmp_path, fb)
    with ctx.board, pytest.raises(DeployStepFailed) as info:
        ctx.board_type.deploy_tarballs(ctx, "http://10.0.2.2:1/b/boot.tar", "http://10.0.2.2:1/r/rootfs.tar", "ext4",
                                       "http://10.0.2.2:1/p/probe")
    assert "'fetch and unpack rootfs'" in str(info.value) and "http://10.0.2.2:1/r/rootfs.tar" in str(info.value)


def test_tester_str_must_match_the_prompt_the_deploy_sets(tmp_path: Path, fb: FakeBoard) -> None:
    ctx = make_ctx(tmp_path, fb, tester_str="linaro-test")
    with ctx.board, pytest.raises(ConfigurationError, match="does not match the prompt"):
        ctx.board_type.deploy_tarballs(ctx, "http://h/b", "http://h/r", "ext4", "http://h/p")


def test_failed_deploy_leaves_the_board_powered_off(tmp_path: Path, fb: FakeBoard) -> None:
    ctx = make_ctx(tmp_path, fb)
    ctx.driver.state = BoardState.MASTER
    (tmp_path / "hw.tar").write_bytes(b"")
    # a missing file: artifact of the job is a job error (download.py); either way the board goes off
    with ctx.board, pytest.raises((InfrastructureError, JobError), match="missing-rootfs.tar.gz"):
        deploy_action.deploy_linaro_image(ctx, {"hwpack": "file:hw.tar", "rootfs": "file:missing-rootfs.tar.gz",
                                                "use_cache": False})
    assert fb.power_offs == 1 and ctx.driver.state is BoardState.UNKNOWN


def test_apt_entries_like_add_apt_repository() -> None:
    name, lines = apt_action.apt_entry("ppa:linaro-maintainers/tools", "precise")
    assert name == "linaro-maintainers-tools-precise.list"
    assert lines[0] == "deb http://ppa.launchpad.net/linaro-maintainers/tools/ubuntu precise main"
    assert apt_action.apt_entry("ppa:bob", "x")[1][0].startswith("deb http://ppa.launchpad.net/bob/ppa/ubuntu x")
    name, lines = apt_action.apt_entry("deb http://ports.ubuntu.com/ubuntu-ports precise universe", "precise")
    assert name == "archive_uri-ports_ubuntu_com_ubuntu_ports-precise.list"
    assert lines == ["deb http://ports.ubuntu.com/ubuntu-ports precise universe"]
    for bad in ("ppa:../x", "deb nope", "rm -rf /"):
        with pytest.raises(JobError):
            apt_action.apt_entry(bad, "x")


def test_add_apt_repository_writes_into_testrootfs(tmp_path: Path, fb: FakeBoard) -> None:
    ctx = make_ctx(tmp_path, fb)
    with ctx.board:
        apt_action.add_apt_repository(ctx, {"arg": ["ppa:linaro-maintainers/tools"]})
    joined = "\n".join(fb.commands)
    assert "mount /dev/vda5 /mnt/lava/rootfs" in joined
    assert "/mnt/lava/rootfs/etc/apt/sources.list.d/linaro-maintainers-tools-stable.list" in joined
    assert ctx.run.apt_sources == ["/etc/apt/sources.list.d/linaro-maintainers-tools-stable.list"]
    assert "no apt" in ctx.logs[-1] or "apt-get update" in ctx.logs[-1]
    assert fb.commands[-1].startswith("sync; umount")


# --- qemu -----------------------------------------------------------------------------------------

def test_qemu_argv_deploy_overrides_and_options_append() -> None:
    dev = Device(name="q1", device_type="qemu", board_type="qemu", qemu_binary="qemu-system-x86_64",
                 qemu_machine_type="pc", qemu_memory="512",
                 qemu_options=["-accel", "tcg", "-nographic", "-kernel", "dev/vmlinuz", "-initrd", "dev/initrd",
                               "-append", "console=ttyS0 panic=10"])
    argv = qemu_argv(dev, {"kernel": "/c/k", "initrd": "/c/i", "rootfs": "/c/r.img"}, ["quiet"], 7)
    assert argv[:5] == ["qemu-system-x86_64", "-M", "pc", "-m", "512"]
    assert "dev/vmlinuz" not in argv and argv[argv.index("-kernel") + 1] == "/c/k"
    assert argv[argv.index("-initrd") + 1] == "/c/i"
    assert argv[argv.index("-append") + 1] == "console=ttyS0 panic=10 quiet"
    assert "file=/c/r.img,format=raw,if=virtio,snapshot=on" in argv
    plain = qemu_argv(dev, {}, [], 7)
    assert plain[plain.index("-kernel") + 1] == "dev/vmlinuz" and plain.count("-append") == 1
    bare = Device(name="q2", device_type="qemu", board_type="qemu", qemu_options=[])
    argv = qemu_argv(bare, {"image": "/x.img"}, [], 7)
    assert argv[-6:] == ["-chardev", "socket,id=lava-console,fd=7", "-serial", "chardev:lava-console",
                         "-monitor", "none"]


def test_a_qemu_device_with_its_own_serial_is_refused_at_validation(tmp_path: Path) -> None:
    from pytest_lava.jobs.job import load_job
    from pytest_lava.jobs.plan import board_problems

    (tmp_path / "j.yaml").write_text("job_name: j\ndevice_type: qemu\ntimeout: 60\n"
                                     "actions:\n  - command: boot_linaro_image\n")
    job = load_job(tmp_path / "j.yaml")
    own = Device(name="q3", device_type="qemu", board_type="qemu", source="devices/q3.yaml",
                 qemu_options=["-kernel", "k", "-serial", "stdio"])
    problems = [str(p) for p in board_problems(job, [own])]
    wanted = "remove -serial from qemu_options (devices/q3.yaml: q3)"
    assert any("actions[0]" in p and wanted in p for p in problems), problems
    fine = Device(name="q4", device_type="qemu", board_type="qemu", qemu_options=["-kernel", "k"])
    assert not board_problems(job, [fine])
