"""QEMU boards: the harness starts QEMU itself for each job (the old dispatcher's QEMU client).

The deploy action says what to boot (the driver's ``boot_spec``): a disk ``image``
(``deploy_linaro_image``), or ``kernel``/``ramdisk``/``dtb``/``rootfs`` for a direct kernel boot
(``deploy_linaro_kernel``). ``boot_linaro_image`` starts
``<qemu_binary> -M <qemu_machine_type> -m <qemu_memory> <qemu_options...> <what the deploy gave>``
with the console on a UNIX socket pair QEMU inherits (:class:`~pytest_lava.console.pty.ProcessConnection`;
not stdio: QEMU maps LF to CR LF on a terminal; not a TCP port: no port to race for, and each console
byte costs QEMU's CPU thread a third of what it costs over loopback TCP)
and waits for ``tester_str``. An option the deploy gives (``-kernel``, ``-initrd``, ``-dtb``)
replaces the device's own; the device's ``-append`` is kept and job ``options`` are added to it.
Disk images are attached with ``snapshot=on``: the cached artifact is never written to.

The process is killed by PID when the job ends, whatever happened (:meth:`QemuBoard.finish`),
and by the job watchdog if the job deadline passes (closing the console kills it).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from subprocess import Popen
from typing import TYPE_CHECKING

from ..core.errors import InfrastructureError
from .driver import BoardDriver, BoardState, ImageFormat, job_error

if TYPE_CHECKING:
    from ..console.shell import ShellSession


# options that take one argument and that a deploy may supply (the deploy's value wins)
_REPLACEABLE = ("-kernel", "-initrd", "-dtb")


def qemu_argv(device, spec: dict, options: list[str], console_fd: int) -> list[str]:  # type: ignore[no-untyped-def]
    """The QEMU command line for ``device`` booting what the deploy put in ``spec``, its serial
    console the socket QEMU inherits as file descriptor ``console_fd`` (one end of the harness's
    socket pair: :func:`~pytest_lava.console.pty.console_pair`)."""
    own = list(device.qemu_options)
    given = {opt for opt in _REPLACEABLE if spec.get(opt.lstrip("-"))}
    opts: list[str] = []
    append = ""
    i = 0
    while i < len(own):
        opt = own[i]
        if opt in given or opt == "-append":
            if opt == "-append" and i + 1 < len(own):
                append = own[i + 1]
            i += 2
            continue
        opts.append(opt)
        i += 1
    for key in ("kernel", "initrd", "dtb"):
        if spec.get(key):
            opts += [f"-{key}", str(spec[key])]
    interface = str(device.extra.get("qemu_drive_interface", "virtio"))
    for key in ("image", "rootfs"):
        if spec.get(key):
            opts += ["-drive", f"file={spec[key]},format=raw,if={interface},snapshot=on"]
    words = [w for w in (append, str(spec.get("append") or ""), *options) if w]
    if words and (spec.get("kernel") or "-kernel" in opts):
        opts += ["-append", " ".join(words)]
    console = [] if "-nographic" in opts or "-display" in opts else ["-display", "none"]
    # a socket: a pty/stdio console would get QEMU's own CR/LF mapping (a device's own -serial is
    # refused at validation: check_parameters)
    console += ["-chardev", f"socket,id=lava-console,fd={console_fd}", "-serial", "chardev:lava-console"]
    if "-monitor" not in opts:
        console += ["-monitor", "none"]
    return [device.qemu_binary, "-M", device.qemu_machine_type, "-m", str(device.qemu_memory),
            "-name", f"lava-{device.name}", *opts, *console]


class QemuBoard(BoardDriver):
    name = "qemu"
    image_format = ImageFormat.DISK_IMAGE
    supported = frozenset({"deploy_linaro_image", "deploy_linaro_kernel", "boot_linaro_image",
                           "lava_test_install", "lava_test_run", "lava_test_shell"})
    hints = {"boot_master_image": "a qemu board has no master image",
             "add_apt_repository": "it edits the test root filesystem from a master image"}

    def check_parameters(self, action, device, problems, path: str) -> None:  # type: ignore[no-untyped-def]
        if action.command == "boot_linaro_image" and "-serial" in device.qemu_options:
            problems.add(path, f"the qemu board type owns QEMU's serial console (a socket pair it reads): "
                               f"remove -serial from qemu_options ({device.source or 'device'}: {device.name})")

    def __init__(self) -> None:
        super().__init__()
        self.boot_spec: dict[str, str] | None = None  # what the deploy said to boot
        self.process: Popen[bytes] | None = None  # this job's QEMU
        self._carry_dir: Path | None = None  # the initramfs with the carried files (removed at stop)

    # -- deploy --------------------------------------------------------------------------------
    def deploy_image(self, ctx, spec: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
        """Remember what to boot; a running QEMU of this job is stopped (the next boot starts anew)."""
        self.stop(ctx)
        self.boot_spec = dict(spec)
        ctx.log(f"{ctx.device.name}: qemu will boot " + ", ".join(f"{k}={v}" for k, v in spec.items() if v))

    # -- boot ----------------------------------------------------------------------------------
    def boot_test(self, ctx, options: list[str]) -> None:  # type: ignore[no-untyped-def]
        dev = ctx.device
        spec = self.boot_spec
        if spec is None and not any(o in dev.qemu_options for o in ("-kernel", "-drive", "-hda", "-bios")):
            raise job_error(ctx, f"{dev.name}: nothing to boot: run deploy_linaro_image (image) or "
                                 "deploy_linaro_kernel first")
        tries = max(1, dev.boot_retries)
        errors: list[str] = []
        for n in range(1, tries + 1):
            limit = max(dev.boot_linaro_timeout, dev.timeout("power_on_to_prompt", 300))
            node = ctx.deadline.child(limit, f"boot qemu ({n}/{tries})")
            try:
                self.stop(ctx)
                from ..console.pty import ProcessConnection, console_pair

                pair = console_pair()
                try:
                    argv = self._carry(ctx, qemu_argv(dev, spec or {}, list(options), pair[1].fileno()))
                except BaseException:
                    for end in pair:
                        end.close()
                    raise
                conn = ProcessConnection(argv, socket_pair=pair, name=f"{dev.name} qemu",
                                         cwd=ctx.run.options.rootdir,
                                         output=ctx.board.log_dir / "qemu-output.log", log=ctx.board.log)
                conn.connect(node)
                self.process = conn.proc
                ctx.log(f"{dev.name}: started qemu, pid {conn.pid}")
                ctx.board.attach(conn)
                ctx.board.tester_shell().wait_for_prompt(node)
                self.state = BoardState.TEST
                self.boot_options = list(options)
                return
            except InfrastructureError as exc:
                errors.append(f"attempt {n}: {exc.message}")
                ctx.log(f"{dev.name}: qemu boot failed (attempt {n}/{tries}): {exc.message}")
                if ctx.deadline.expired:
                    break
        self.stop(ctx)
        raise InfrastructureError(f"could not boot the test image of {dev.name} in qemu ({len(errors)} "
                                  "attempt(s))", details="\n".join(errors))

    def _carry(self, ctx, argv: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
        """``argv`` booting an initramfs extended with the device-side files of the job's next test
        shell (testdefs/carry.py: the helpers, the definitions, a stamp), so that none of them travels
        over the console. Unchanged without a cpio ``-initrd`` or with ``qemu_carry_files: false``."""
        self.carried = None
        if "-initrd" not in argv[:-1] or not ctx.device.extra.get("qemu_carry_files", True):
            return argv
        at = argv.index("-initrd") + 1
        original = Path(ctx.run.options.rootdir, argv[at])
        from ..testdefs.carry import carry_files, initrd_with, is_cpio_initrd

        if not is_cpio_initrd(original):
            return argv
        from ..actions.lava_test_state import files_to_carry, lava_dir

        files, carried = carry_files(lava_dir(ctx), files_to_carry(ctx))
        self._carry_dir = Path(tempfile.mkdtemp(prefix="lava-carry-"))
        out = self._carry_dir / "initrd"
        try:
            initrd_with(original, files, out)
        except OSError as exc:
            ctx.log(f"{ctx.device.name}: not carrying the test files in the initramfs: {exc}")
            return argv
        self.carried = carried
        ctx.log(f"{ctx.device.name}: {len(files)} test file(s) carried in the initramfs ({out})")
        return [*argv[:at], str(out), *argv[at + 1:]]

    def _drop_carry(self) -> None:
        path, self._carry_dir = self._carry_dir, None
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)

    def test_shell(self, ctx) -> ShellSession:  # type: ignore[no-untyped-def]
        proc = self.process
        if self.state is BoardState.TEST and proc is not None and proc.poll() is None:
            return ctx.board.tester_shell()
        self.boot_test(ctx, self.boot_options)
        return ctx.board.tester_shell()

    # -- the end --------------------------------------------------------------------------------
    def stop(self, ctx) -> None:  # type: ignore[no-untyped-def]
        self.state = BoardState.OFF
        ctx.board.close_console("qemu stopped")  # a ProcessConnection kills its process
        proc, self.process = self.process, None
        if proc is not None:
            from ..console.pty import kill_process

            kill_process(proc)
        self._drop_carry()

    def power_off(self, ctx) -> None:  # type: ignore[no-untyped-def]
        """What a failed deploy calls: QEMU stops."""
        self.stop(ctx)

    def finish(self, run) -> None:  # type: ignore[no-untyped-def]
        """Kill QEMU by PID, whatever happened in the job."""
        proc, self.process = self.process, None
        self.state = BoardState.OFF
        board = run.connected_board()
        if board is not None:
            board.close_console("job finished")
        if proc is not None:
            from ..console.pty import kill_process

            status = kill_process(proc)
            run.note(f"{run.device.name}: qemu (pid {proc.pid}) stopped, status {status}")
        self._drop_carry()

