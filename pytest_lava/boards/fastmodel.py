"""Simulator boards (``board_type: fastmodel``): ARM Fast Models / RTSM / FVP, or anything that
behaves like one — the old dispatcher's ``client_type = fastmodel``.

There is no master image: ``deploy_linaro_image`` builds a disk image on the host from
hwpack+rootfs (or copies a prebuilt ``image``) and finds the boot files in it
(``ImageFormat.HOST_BUILT_IMAGE``, :mod:`pytest_lava.actions.hostimage`). ``boot_linaro_image``
starts ``simulator_command`` with its placeholders filled in and the ``-C name=value`` options
(the device's defaults, the job's ``options`` over the allowed ones), reads the console port from
the simulator's output, waits for "started", connects with telnet and waits for ``tester_str``
(:mod:`.simulator`). A reboot restarts the simulator. Its output is ``rtsm.log`` in the results
directory and an attachment of the ``lava`` run. The process group is killed by PID when the job
ends (:meth:`FastModelBoard.finish`) and by the job watchdog (closing the console stops it).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from ..core.errors import ConfigurationError, InfrastructureError, Problem, ProblemList
from .driver import BoardDriver, BoardState, ImageFormat, job_error
from .simulator import (
    PLACEHOLDERS,
    Simulator,
    SimulatorConnection,
    SimulatorFailed,
    device_problems,
    option_problem,
    simulator_argv,
)

RTSM_LOG = "rtsm.log"
#: where each placeholder's file is looked for in the boot partition (then in ``boot/`` of the root
#: partition), first name found wins; a device's ``simulator_files`` replaces an entry
DEFAULT_FILES = {
    "AXF": "img.axf, img-foundation.axf, linux-system.axf, linux-system-ISW.axf",
    "KERNEL": "Image, zImage, vmlinuz",
    "INITRD": "initrd.gz, initrd.img, uInitrd",
    "DTB": "",
    "UEFI": "",
}


def file_candidates(device) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """Placeholder -> the file names to look for, the device's ``simulator_files`` over the defaults."""
    merged = {**DEFAULT_FILES, **{k.upper(): v for k, v in device.simulator_files.items()}}
    return {k: [n.strip() for n in v.split(",") if n.strip()] for k, v in merged.items() if k in PLACEHOLDERS}


def _where(device) -> str:  # type: ignore[no-untyped-def]
    return f"device {device.name} ({device.source or 'no file'})"


class FastModelBoard(BoardDriver):
    name = "fastmodel"
    image_format = ImageFormat.HOST_BUILT_IMAGE
    supported = frozenset({"deploy_linaro_image", "deploy_linaro_kernel", "boot_linaro_image",
                           "lava_test_install", "lava_test_run", "lava_test_shell"})
    hints = {"boot_master_image": "a simulator has no master image",
             "add_apt_repository": "it edits the test root filesystem from a master image"}

    def __init__(self) -> None:
        super().__init__()
        self.boot_spec: dict[str, str] | None = None  # what the deploy gave: image, axf, kernel, ...
        self.sim: Simulator | None = None  # this job's simulator
        self.workdir: Path | None = None  # the deploy's files (the built disk image), removed at the end
        self._version_noted = False

    # -- validation ----------------------------------------------------------------------------
    def check_parameters(self, action, device, problems: ProblemList, path: str) -> None:  # type: ignore[no-untyped-def]
        for key, reason in device_problems(device):
            problems.add(path, f"{reason} ({device.source or 'device'}: {key})")
        if action.command == "boot_linaro_image":
            for i, option in enumerate(action.parameters.get("options") or []):
                problem = option_problem(option, device.simulator_allowed_options)
                if problem:
                    problems.add(f"{path}.options[{i}]", f"{problem} (device {device.name})")

    # -- deploy --------------------------------------------------------------------------------
    def deploy_image(self, ctx, spec: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
        """Remember what to boot (a running simulator of this job is stopped first)."""
        self.stop(ctx)
        spec = dict(spec)
        workdir = spec.pop("workdir", None)
        if workdir and Path(workdir) != self.workdir:
            self._remove_workdir()
            self.workdir = Path(workdir)
        if "image" not in spec and spec.get("rootfs"):
            spec["image"] = spec["rootfs"]  # deploy_linaro_kernel: the root filesystem image is {IMG}
        self.boot_spec = spec
        ctx.log(f"{ctx.device.name}: the simulator will boot " + ", ".join(f"{k}={v}" for k, v in spec.items() if v))

    # -- boot ----------------------------------------------------------------------------------
    def argv(self, ctx, options: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
        dev = ctx.device
        problems = device_problems(dev)  # an unknown placeholder, a bad pattern: before anything starts
        if problems or not dev.simulator_command:
            raise ConfigurationError([Problem(dev.source or dev.name, key, reason) for key, reason in problems])
        if self.boot_spec is None:
            raise job_error(ctx, f"{dev.name}: nothing to boot: run deploy_linaro_image first")
        merged = dict(dev.simulator_boot_options)
        for i, option in enumerate(options):
            problem = option_problem(option, dev.simulator_allowed_options)
            if problem:
                raise job_error(ctx, f"{problem} (device {dev.name})", f"parameters.options[{i}]")
            name, _, value = option.partition("=")
            merged[name.strip()] = value.strip()
        values = {ph: self.boot_spec[key] for ph, key in PLACEHOLDERS.items() if self.boot_spec.get(key)}
        return simulator_argv(dev.simulator_command, values, merged, dev.simulator_option_format, where=_where(dev))

    def boot_test(self, ctx, options: list[str]) -> None:  # type: ignore[no-untyped-def]
        dev = ctx.device
        argv = self.argv(ctx, list(options))
        self._note_version(ctx)
        log_path = ctx.run.results_dir / RTSM_LOG
        ctx.results.attach_file(RTSM_LOG, log_path)
        tries = max(1, dev.boot_retries)
        errors: list[str] = []
        tail = ""
        for n in range(1, tries + 1):
            limit = max(dev.boot_linaro_timeout, dev.timeout("power_on_to_prompt", 300))
            node = ctx.deadline.child(limit, f"boot simulator ({n}/{tries})")
            try:
                self.stop(ctx)
                sim = self.sim = Simulator(argv, name=f"{dev.name} simulator", log_path=log_path,
                                           cwd=ctx.run.options.rootdir, env=dev.simulator_env,
                                           console_log=ctx.board.log)
                sim.start()
                ctx.log(f"{dev.name}: started the simulator, pid {sim.pid}")
                port = sim.wait_ready(node, dev.simulator_port_pattern, dev.simulator_started_pattern,
                                      dev.simulator_failed_patterns)
                ctx.log(f"{dev.name}: simulator console on {dev.simulator_console_host}:{port}")
                conn = SimulatorConnection(sim, dev.simulator_console_host, port, log=ctx.board.log)
                conn.connect(node)
                ctx.board.attach(conn)
                ctx.board.tester_shell().wait_for_prompt(node)
                self.state = BoardState.TEST
                self.boot_options = list(options)
                return
            except SimulatorFailed:
                self.stop(ctx)
                raise  # a licence failure: at once, no retry
            except InfrastructureError as exc:
                errors.append(f"attempt {n}: {exc.message}")
                tail = self.sim.tail() if self.sim is not None else ""
                ctx.log(f"{dev.name}: simulator boot failed (attempt {n}/{tries}): {exc.message}")
                if ctx.deadline.expired:
                    break
        self.stop(ctx)
        raise InfrastructureError(f"could not boot the test image of {dev.name} in its simulator "
                                  f"({len(errors)} attempt(s))",
                                  details="\n".join(errors) + f"\nsimulator output (last lines of {RTSM_LOG}):\n{tail}")

    def _note_version(self, ctx) -> None:  # type: ignore[no-untyped-def]
        """The device's ``simulator_version_command`` output, once per job, as the bundle
        attribute ``target.simulator_version`` (the old dispatcher's device version)."""
        dev = ctx.device
        if self._version_noted or not dev.simulator_version_command:
            return
        self._version_noted = True
        try:
            p = subprocess.run(shlex.split(dev.simulator_version_command), capture_output=True, text=True,
                               cwd=ctx.run.options.rootdir, env={**os.environ, **dev.simulator_env},
                               timeout=max(1.0, ctx.deadline.remaining_or(30)), start_new_session=True)
            version = (p.stdout or p.stderr).strip().splitlines()[0] if (p.stdout or p.stderr).strip() else ""
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            ctx.log(f"{dev.name}: simulator_version_command failed: {exc}")
            return
        if version:
            ctx.results.set_attribute("target.simulator_version", version)
            ctx.log(f"{dev.name}: simulator version: {version}")

    def test_shell(self, ctx):  # type: ignore[no-untyped-def]
        if self.state is BoardState.TEST and self.sim is not None and self.sim.alive():
            return ctx.board.tester_shell()
        self.boot_test(ctx, self.boot_options)  # a reboot is a new simulator
        return ctx.board.tester_shell()

    # -- the end --------------------------------------------------------------------------------
    def stop(self, ctx) -> None:  # type: ignore[no-untyped-def]
        self.state = BoardState.OFF
        ctx.board.close_console("simulator stopped")  # a SimulatorConnection stops its simulator
        sim, self.sim = self.sim, None
        if sim is not None:
            sim.stop()

    def power_off(self, ctx) -> None:  # type: ignore[no-untyped-def]
        self.stop(ctx)

    def _remove_workdir(self) -> None:
        workdir, self.workdir = self.workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    def finish(self, run) -> None:  # type: ignore[no-untyped-def]
        """Kill the simulator's process group by PID, whatever happened; remove the built image."""
        sim, self.sim = self.sim, None
        self.state = BoardState.OFF
        board = run.connected_board()
        if board is not None:
            board.close_console("job finished")
        if sim is not None:
            status = sim.stop()
            run.note(f"{run.device.name}: simulator (pid {sim.pid}) stopped, status {status}")
        self._remove_workdir()
