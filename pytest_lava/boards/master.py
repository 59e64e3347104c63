"""Master-image boards: a known-good master system on the board's storage writes test images
into spare partitions (``testboot``, ``testrootfs``) and U-Boot is told which one to boot.

Booting the master: power-cycle by command (or a soft ``reboot`` when the board is known to be
up), wait for the kernel (``image_boot_msg``), then the master prompt (``master_str``); the
bootloader is left alone, its default boot is the master. Booting the test image: reboot,
interrupt U-Boot at ``interrupt_boot_prompt``, send ``boot_cmds`` one line per
``bootloader_prompt``, wait for ``tester_str``. Both try ``boot_retries`` times within the
action's deadline. A board without ``boot_cmds`` (the lab's x86_64 boards) has no test image
apart from its master: its test shell is the master shell.

The driver's ``state`` says what is up (:class:`~pytest_lava.boards.driver.BoardState`); ``UNKNOWN``
means power-cycle first.
"""

from __future__ import annotations

import re
import shlex
import time
from typing import TYPE_CHECKING

from ..console.text import ConsoleClosed, ConsoleTimeout
from ..core.deadline import Deadline
from ..core.errors import ConfigurationError, InfrastructureError, JobError, ProblemList
from .driver import BoardDriver, BoardState, ImageFormat, job_error
from .master_android import AndroidMaster

if TYPE_CHECKING:
    from ..console.shell import ShellSession

REBOOT_MESSAGES = ["Restarting system", "The system is going down", "Will now restart", "U-Boot",
                   "Requesting system reboot", "reboot: Restarting"]
PROBE = 15.0  # seconds to find an already running shell's prompt
MOUNT = "/mnt/lava"


class BootFailed(InfrastructureError):
    """Every boot attempt failed."""


# what a boot option's value may contain: printable ASCII but the characters U-Boot's parsers
# treat specially even inside single quotes (' ends the quoting, \ escapes the closing quote in
# the simple parser, ; separates commands where quotes are not honoured)
_VALUE_OK = re.compile(r"[\x20-\x7e]*")
_VALUE_REFUSED = "'\\;"
_NAME_OK = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
MAX_OPTION = 1000  # characters of a value (a bootloader's command line buffer is limited)
# variables U-Boot itself runs as commands (``boot`` runs bootcmd, distro boot runs bootcmd_*)
_RUN_VARIABLES = re.compile(r"(bootcmd|altbootcmd|preboot|bootcmd_.*|distro_bootcmd)")


def boot_option_problem(option: str, boot_cmds: list[str] | tuple[str, ...] = ()) -> str | None:
    """Why the job's boot option ``option`` cannot be given to U-Boot, or ``None`` if it can.

    An option is ``name=value`` and becomes ``setenv name 'value'``; a value that could end the
    quoting or start another command (``'``, ``\\``, ``;``, a newline or any other control
    character) is refused rather than escaped, and so is a variable U-Boot (or one of the device's
    ``boot_cmds``) runs as commands: a job sets values, never bootloader commands."""
    name, sep, value = option.partition("=")
    name = name.strip()
    if not sep or not _NAME_OK.fullmatch(name):
        return f"{option!r} is not name=value with a U-Boot variable name (letters, digits, _ and .)"
    bad = sorted({c for c in value if c in _VALUE_REFUSED or not _VALUE_OK.fullmatch(c)})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return (f"the value of {name!r} contains {shown}: a U-Boot option value may hold printable ASCII "
                "except ' \\ ; (it is sent as setenv name 'value')")
    if len(value) > MAX_OPTION:
        return f"the value of {name!r} is longer than {MAX_OPTION} characters"
    runs = {w for line in boot_cmds for w in re.findall(r"(?:^|[;\s])run\s+([^;]+)", line)}
    run_names = {n.strip("'\"") for group in runs for n in group.split()}
    if _RUN_VARIABLES.fullmatch(name) or name in run_names:
        return f"{name!r} is run by the bootloader as commands: a job may set values, not bootloader commands"
    return None


def apply_boot_options(cmds: list[str], options: list[str]) -> list[str]:
    """Job ``options`` (``name=value``) over the device's ``boot_cmds``: a ``setenv <name> ...``
    line is replaced by ``setenv <name> '<value>'``; any other name is added as such a line just
    before the last command (the one that boots). An option :func:`boot_option_problem` refuses
    is a job error (validation refuses it before the job runs)."""
    out = list(cmds)
    for opt in options:
        problem = boot_option_problem(opt, cmds)
        if problem:
            raise JobError.single("job", "boot_linaro_image.options", problem)
        name, _, value = opt.partition("=")
        name = name.strip()
        line = f"setenv {name} '{value}'"
        hits = [i for i, c in enumerate(out) if re.match(rf"\s*setenv\s+{re.escape(name)}(\s|$)", c)]
        if hits:
            for i in hits:
                out[i] = line
        else:
            out.insert(max(0, len(out) - 1), line)
    return out


def render_prompt(ps1: str, hostname: str) -> str:
    """What a shell prints for ``ps1`` (the escapes a deploy writes: \\h \\u \\w \\$)."""
    return ps1.replace(r"\h", hostname).replace(r"\u", "root").replace(r"\w", "/").replace(r"\$", "#")


# the actions a master-image board runs: the old dispatcher's master client, Android included
# (boards/master_android.py); a direct kernel boot is not
MASTER_ACTIONS = frozenset({
    "deploy_linaro_image", "boot_master_image", "boot_linaro_image", "add_apt_repository",
    "lava_test_install", "lava_test_run", "lava_test_shell",
    "deploy_linaro_android_image", "boot_linaro_android_image", "android_install_binaries",
    "lava_android_test_install", "lava_android_test_run", "lava_android_test_run_custom",
})
ROOTFS_TYPE = re.compile(r"[a-z0-9]+")


class MasterBoard(AndroidMaster, BoardDriver):
    name = "master"
    supported = MASTER_ACTIONS
    ROOTFS_TYPE = ROOTFS_TYPE
    image_format = ImageFormat.TARBALLS
    hints = {"deploy_linaro_kernel": "a direct kernel boot needs a board the harness starts itself: board type 'qemu'"}

    def check_parameters(self, action, device, problems: ProblemList, path: str) -> None:  # type: ignore[no-untyped-def]
        params = action.parameters
        if action.command in ("boot_linaro_image", "boot_linaro_android_image"):
            for i, option in enumerate(params.get("options") or []):
                cmds = device.boot_cmds_android if action.command == "boot_linaro_android_image" else device.boot_cmds
                problem = boot_option_problem(option, cmds) if isinstance(option, str) else None
                if problem:
                    problems.add(f"{path}.options[{i}]", f"{problem} (board type 'master')")
        if action.command == "boot_linaro_android_image":
            from ..android.adb import INSTALL_HINT, AdbMissing, find_adb

            try:  # the host's client, found before any board is touched
                find_adb()
            except AdbMissing:
                problems.add(path, f"the adb client is not on this host's PATH: {INSTALL_HINT}")
        if action.command in ("deploy_linaro_image", "deploy_linaro_android_image"):
            fs = params.get("rootfstype", "ext4")
            if isinstance(fs, str) and not ROOTFS_TYPE.fullmatch(fs):
                problems.add(f"{path}.rootfstype", f"{fs!r} is not a filesystem name (lower-case letters and digits)")

    # -- shells ------------------------------------------------------------------------------
    def master_shell(self, ctx) -> ShellSession:  # type: ignore[no-untyped-def]
        if self.state is BoardState.MASTER and self._probe(ctx, ctx.board.master_shell()):
            return ctx.board.master_shell()
        self.boot_master(ctx)
        return ctx.board.master_shell()

    def test_shell(self, ctx) -> ShellSession:  # type: ignore[no-untyped-def]
        if not ctx.device.boot_cmds:
            return self.master_shell(ctx)
        if self.state is BoardState.TEST and self._probe(ctx, ctx.board.tester_shell()):
            return ctx.board.tester_shell()
        self.boot_test(ctx, self.boot_options)
        return ctx.board.tester_shell()

    def _probe(self, ctx, sh: ShellSession) -> bool:  # type: ignore[no-untyped-def]
        try:
            sh.wait_for_prompt(ctx.deadline.child(min(PROBE, ctx.deadline.remaining()), "probe prompt"),
                               send_newline=True)
            return True
        except InfrastructureError:
            return False

    # -- booting -------------------------------------------------------------------------------
    def boot_master(self, ctx) -> None:  # type: ignore[no-untyped-def]
        dev = ctx.device

        def attempt(node: Deadline, soft: bool) -> None:
            self._restart(ctx, node, soft)
            ctx.board.console.expect(dev.image_boot_msg, node.child(dev.timeout("bootloader", 120), "kernel start"))
            ctx.board.master_shell().wait_for_prompt(node)

        self._retry(ctx, "master image", attempt, dev.timeout("power_on_to_prompt", 300))
        self.state = BoardState.MASTER

    def boot_test(self, ctx, options: list[str]) -> None:  # type: ignore[no-untyped-def]
        self.boot_through_uboot(ctx, "test image", "boot_cmds", ctx.device.boot_cmds, options,
                                ctx.board.tester_shell, BoardState.TEST)

    def boot_through_uboot(self, ctx, what: str, key: str, boot_cmds: list[str], options: list[str],  # type: ignore[no-untyped-def]
                           shell, state: BoardState) -> None:
        """Reboot, interrupt U-Boot, send ``boot_cmds`` (the device's ``key``) with the job's
        ``options``, wait for the kernel and then the prompt of ``shell()`` (made after each restart:
        the console may be a new connection); retried; the driver's state becomes ``state``."""
        dev = ctx.device
        if not boot_cmds:
            raise ConfigurationError.single(dev.source or dev.name, key,
                                            f"board {dev.name} has no {key}: it cannot boot the {what}")
        try:
            cmds = apply_boot_options(boot_cmds, options)
        except JobError as exc:
            raise job_error(ctx, exc.problems[0].reason, "parameters.options") from None

        def attempt(node: Deadline, soft: bool) -> None:
            self._restart(ctx, node, soft)
            self.send_boot_commands(ctx, cmds, node)
            ctx.board.console.expect(dev.image_boot_msg, node.child(dev.timeout("bootloader", 120), "kernel start"))
            shell().wait_for_prompt(node.child(dev.boot_linaro_timeout, f"{what} prompt"))

        if state is BoardState.ANDROID:  # each image keeps its own options for its reboots
            self.android_boot_options = list(options)
        else:
            self.boot_options = list(options)
        self._retry(ctx, what, attempt, dev.boot_linaro_timeout + dev.timeout("bootloader", 120) * 2)
        self.state = state

    def send_boot_commands(self, ctx, cmds: list[str], node: Deadline) -> None:  # type: ignore[no-untyped-def]
        """Interrupt U-Boot and send ``cmds`` one line per bootloader prompt.

        Like the old dispatcher, the interrupt is a line too (``sendline``, with the device's
        ``line_ending``): a console command in line mode (``telnet`` to a raw port) holds back
        everything until a line ends. A line may then reach the bootloader as CR LF, which it
        reads as one more (empty) line and answers with one more prompt: before each command the
        console must have been quiet for a moment, and what came until then is skipped, so a
        command never answers an earlier prompt."""
        dev, console = ctx.device, ctx.board.console
        step = dev.timeout("bootloader", 120)

        def settle(quiet: float = 0.3, most: float = 3.0) -> None:
            end = node.child(most, "bootloader quiet")  # a chatty console: send anyway after `most`
            while console.silent_for < quiet and not end.expired:
                time.sleep(min(0.05, end.remaining()))
            console.mark()

        console.expect(dev.interrupt_boot_prompt, node.child(step, "autoboot countdown"))
        console.sendline(dev.interrupt_boot_command, node)
        for i, line in enumerate(cmds):
            console.expect(dev.bootloader_prompt, node.child(step, f"bootloader prompt before command {i + 1}"))
            settle()
            console.sendline(line, node)

    def _restart(self, ctx, node: Deadline, soft: bool) -> None:  # type: ignore[no-untyped-def]
        """Soft reboot from a running shell when asked (falling back to power), else power-cycle."""
        board, dev = ctx.board, ctx.device
        if soft and self.reboot_over_adb(ctx, node):  # Android restarts itself through adb
            return
        if soft:  # only a running board has a console to talk to: an off board is powered first
            console = board.console
            console.mark()
            console.sendcontrol("c", node)
            console.sendline("", node)
            console.sendline(dev.soft_boot_cmd, node)
            try:
                console.expect(REBOOT_MESSAGES, node.child(min(120.0, node.remaining()), "soft reboot"))
                return
            except ConsoleTimeout:
                ctx.log(f"{dev.name}: soft reboot ({dev.soft_boot_cmd!r}) did not restart the board; power-cycling")
        self.state = BoardState.UNKNOWN
        board.power.reset(node.child(None, "power reset"))
        # a fresh console connection: a console server may keep the old one open but dead when
        # the board behind it restarts (seen with ser2net when the reset follows the connect closely)
        board.close_console("power-cycled: reconnecting")
        board.connect(node.child(min(60.0, node.remaining()), "reconnect console"))

    def _retry(self, ctx, what: str, attempt, per_attempt: float) -> None:  # type: ignore[no-untyped-def]
        dev = ctx.device
        tries = max(1, dev.boot_retries)
        errors: list[str] = []
        for n in range(1, tries + 1):
            soft = n == 1 and self.state in (BoardState.MASTER, BoardState.TEST, BoardState.ANDROID)
            node = ctx.deadline.child(per_attempt, f"boot {what} ({n}/{tries})")
            try:
                attempt(node, soft)
                if n > 1:
                    ctx.log(f"{dev.name}: {what} booted at attempt {n}/{tries}")
                return
            except InfrastructureError as exc:
                self.state = BoardState.UNKNOWN
                errors.append(f"attempt {n}: {exc.message}")
                ctx.log(f"{dev.name}: booting the {what} failed (attempt {n}/{tries}): {exc.message}")
                if isinstance(exc, ConsoleClosed):
                    ctx.board.close_console("reopening after a console failure")
                if ctx.deadline.expired:
                    break
        raise BootFailed(f"could not boot the {what} of {dev.name} ({len(errors)} attempt(s))",
                         details="\n".join(errors))

    # -- deploying (from the running master) -----------------------------------------------------------
    def partition(self, ctx, label: str) -> str:  # type: ignore[no-untyped-def]
        return ctx.device.partitions.get(label) or f"/dev/disk/by-label/{label}"

    def deploy_tarballs(self, ctx, boot_url: str, root_url: str, rootfstype: str,  # type: ignore[no-untyped-def]
                        probe_url: str) -> None:
        """Format the test partitions and unpack the served tarballs into them."""
        dev = ctx.device
        if not ROOTFS_TYPE.fullmatch(rootfstype):
            raise job_error(ctx, f"{rootfstype!r} is not a filesystem name", "parameters.rootfstype")
        ps1 = str(dev.extra.get("tester_ps1", r"root@\h:\w# "))
        shown = render_prompt(ps1, dev.tester_hostname)
        if not re.search(dev.tester_str, shown):
            raise ConfigurationError.single(dev.source or dev.name, "tester_str",
                                            f"{dev.tester_str!r} does not match the prompt the deploy sets "
                                            f"({shown!r}, from extra.tester_ps1 {ps1!r})")
        q = shlex.quote
        boot, root = q(self.partition(ctx, "testboot")), q(self.partition(ctx, "testrootfs"))
        boot_fs = str(dev.extra.get("testboot_fstype", "vfat"))
        mkboot = f"mkfs.vfat -n testboot {boot}" if boot_fs == "vfat" else f"mkfs -t {q(boot_fs)} -L testboot {boot}"
        cmd_t = dev.timeout("command", 60)
        sh = self.master_shell(ctx)
        rb, rr = f"{MOUNT}/boot", f"{MOUNT}/rootfs"
        self.step(ctx, sh, "prepare", f"udevadm trigger 2>/dev/null; mkdir -p {rb} {rr}; "
                  f"umount {rb} 2>/dev/null; umount {rr} 2>/dev/null; umount {boot} 2>/dev/null; "
                  f"umount {root} 2>/dev/null; true", cmd_t)
        self.step(ctx, sh, "format testboot", mkboot, 600)
        self.step(ctx, sh, "format testrootfs", f"mkfs -t {rootfstype} -q -L testrootfs {root}", 1800)
        self.step(ctx, sh, "mount test partitions", f"mount {boot} {rb} && mount {root} {rr}", cmd_t)
        self.reach_image_server(ctx, sh, probe_url)
        for name, url, target in (("rootfs", root_url, rr), ("boot", boot_url, rb)):
            self.fetch_tarball(ctx, sh, name, url, target)
        line = f"export PS1={q(ps1)}"
        self.step(ctx, sh, "set hostname and prompt",
                  f"mkdir -p {rr}/etc && echo {q(dev.tester_hostname)} > {rr}/etc/hostname && "
                  f"printf '%s\\n' {q(line)} >> {rr}/etc/profile && "
                  f"{{ [ ! -f {rr}/root/.bashrc ] || printf '%s\\n' {q(line)} >> {rr}/root/.bashrc; }}", cmd_t)
        self.step(ctx, sh, "sync and unmount", f"sync; umount {rb} && umount {rr}", 300)
        ctx.log(f"{dev.name}: test image written to testboot and testrootfs")

    def reach_image_server(self, ctx, sh: ShellSession, probe_url: str) -> None:  # type: ignore[no-untyped-def]
        """Wait until the board fetches the probe file from the harness's image server."""
        self.step(ctx, sh, "reach the image server",
                  f"i=0; until wget -q -O /dev/null {shlex.quote(probe_url)}; do i=$((i+1)); "
                  f"[ $i -ge 30 ] && exit 1; sleep 2; done", 120, f" ({probe_url})")

    def fetch_tarball(self, ctx, sh: ShellSession, name: str, url: str, target: str) -> None:  # type: ignore[no-untyped-def]
        """``wget -O - <url> | tar -x -C <target>`` on the master; both exit statuses checked."""
        self.step(ctx, sh, f"fetch and unpack {name}",
                  f"rm -f /tmp/lava-wget.rc; {{ wget -q -O - {shlex.quote(url)}; echo $? >/tmp/lava-wget.rc; }} "
                  f"| tar -x -f - -C {target}; t=$?; w=$(cat /tmp/lava-wget.rc); "
                  f"echo \"wget status $w, tar status $t\"; [ \"$w\" = 0 ] && [ $t = 0 ]",
                  ctx.device.timeout("deploy", 1800), f" ({url})")

    def mount_testrootfs(self, ctx, sh: ShellSession) -> str:  # type: ignore[no-untyped-def]
        root = shlex.quote(self.partition(ctx, "testrootfs"))
        rr = f"{MOUNT}/rootfs"
        self.step(ctx, sh, "mount testrootfs", f"udevadm trigger 2>/dev/null; mkdir -p {rr}; "
                  f"umount {rr} 2>/dev/null; mount {root} {rr}", ctx.device.timeout("command", 60))
        self.testrootfs_mount = rr  # lava_test installs into it while it is mounted
        return rr

    def unmount(self, ctx, sh: ShellSession, path: str) -> None:  # type: ignore[no-untyped-def]
        if self.testrootfs_mount == path:
            self.testrootfs_mount = None
        self.step(ctx, sh, "sync and unmount", f"sync; umount {shlex.quote(path)}", 300)

    def power_off(self, ctx) -> None:  # type: ignore[no-untyped-def]
        """Leave the board off after a failed deploy (best effort: the error that led here wins)."""
        self.state = BoardState.UNKNOWN
        if not ctx.board.power.available("off"):
            ctx.log(f"{ctx.device.name}: no power_off_command; the board stays on")
            return
        try:
            ctx.board.power.off(Deadline(ctx.device.power_timeout * 2 + 5, f"{ctx.device.name}/power off"))
            ctx.log(f"{ctx.device.name}: powered off after the failed deploy")
        except InfrastructureError as exc:
            ctx.log(f"{ctx.device.name}: powering off after the failed deploy failed too: {exc.message}")
        ctx.board.close_console("board powered off")

    def finish(self, run) -> None:  # type: ignore[no-untyped-def]
        """The end of the job, whatever happened: the device's ``end_of_job`` — ``power-off`` (as
        LAVA v2 does; the default) or ``leave-on`` (as the old dispatcher did). Best effort: a
        failure is noted, never raised (the results still get written and submitted)."""
        dev = run.device
        self.stop_adb(run.note)  # this job's adb server, whatever happened
        if dev.end_of_job == "leave-on":
            run.note(f"{dev.name}: left on at the end of the job (end_of_job: leave-on)")
            return
        board = run.board
        if not board.power.available("off"):
            run.note(f"{dev.name}: end_of_job is power-off but there is no power_off_command; the board stays on")
            return
        board.close_console("job finished: powering the board off")
        self.state = BoardState.OFF
        try:
            board.power.off(Deadline(dev.power_timeout * 2 + 5, f"{dev.name}/power off at the end of the job"))
            run.note(f"{dev.name}: powered off at the end of the job (end_of_job: power-off)")
        except InfrastructureError as exc:
            run.note(f"{dev.name}: powering off at the end of the job failed: {exc.message}")
