"""The Android capabilities of a master-image board (mixed into :class:`~.master.MasterBoard`).

* **deploy** (from the running master, the old "partition shuffling" without a ramdisk rewrite:
  the lab's init mounts the partitions the bootloader names): format the partitions the device's
  ``partitions:`` map names ``boot`` (vfat), ``system`` and ``data`` (``rootfstype``) and, if
  there is one, ``cache``; mount them under ``/mnt/lava/{boot,system,data}`` and unpack the served
  tarballs into ``/mnt/lava`` (each holds its own top directory: ``boot/``, ``system/``, ``data/``);
  the ``pkg`` tarball is laid over boot. ``/system/etc/mkshrc`` gets the Android prompt.
* **binaries**: the device's ``android_binary_drivers`` tarball unpacked into ``/system``.
* **boot**: reboot, interrupt U-Boot, ``boot_cmds_android`` (+ the job's options), wait for the
  Android prompt (``extra.tester_str_android``, default ``root@linaro: ``); then this job's own adb
  server, ``adb connect <adb_address>`` (retried while adbd comes up) and ``sys.boot_completed=1``
  (``timeouts.android_boot_completed``, default 300 s). State ``ANDROID``.
* the adb server is stopped at the end of the job (``finish``), whatever happened.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from ..android.adb import AdbDevice, AdbError, AdbServer
from ..core.deadline import Deadline
from ..core.errors import ConfigurationError, InfrastructureError
from .driver import BoardState, job_error

if TYPE_CHECKING:
    from ..console.shell import ShellSession

MOUNT = "/mnt/lava"
ANDROID_PROMPT = "root@linaro: "
ANDROID_PARTS = ("boot", "system", "data")


class AndroidMaster:
    """Android on a master-image board; mixed into MasterBoard (which supplies the master shell,
    the boot dance and the deploy steps)."""

    adb_server: AdbServer | None = None
    adb_device: AdbDevice | None = None
    android_boot_options: list[str] = []  # noqa: RUF012 - replaced, never mutated: the last Android boot's options

    # -- deploying ----------------------------------------------------------------------------
    def deploy_android(self, ctx, urls: dict[str, str], rootfstype: str, probe_url: str) -> None:  # type: ignore[no-untyped-def]
        """Format and fill the Android partitions from the served tarballs (``urls``: boot,
        system, data and optionally pkg)."""
        dev, q = ctx.device, shlex.quote
        if not self.ROOTFS_TYPE.fullmatch(rootfstype):
            raise job_error(ctx, f"{rootfstype!r} is not a filesystem name", "parameters.rootfstype")
        missing = [p for p in ANDROID_PARTS if p not in dev.partitions]
        if missing:
            raise ConfigurationError.single(dev.source or dev.name, "partitions",
                                            f"board {dev.name} has no {', '.join(missing)} partition(s) for Android "
                                            "(partitions: {boot: ..., system: ..., data: ...[, cache: ...]})")
        parts = {p: q(dev.partitions[p]) for p in (*ANDROID_PARTS, "cache") if p in dev.partitions}
        cmd_t = dev.timeout("command", 60)
        sh = self.master_shell(ctx)
        mounts = {p: f"{MOUNT}/{p}" for p in ANDROID_PARTS}
        self.step(ctx, sh, "prepare", f"udevadm trigger 2>/dev/null; mkdir -p {' '.join(mounts.values())}; "
                  + "".join(f"umount {m} 2>/dev/null; " for m in mounts.values())
                  + "".join(f"umount {node} 2>/dev/null; " for node in parts.values()) + "true", cmd_t)
        self.step(ctx, sh, "format boot", f"mkfs.vfat -n boot {parts['boot']}", 600)
        for name, label in (("system", "system"), ("data", "userdata"), ("cache", "cache")):
            if name in parts:
                fs = rootfstype if name != "cache" else "ext4"
                self.step(ctx, sh, f"format {name}", f"mkfs -t {fs} -q -L {label} {parts[name]}", 1800)
        self.step(ctx, sh, "mount Android partitions",
                  " && ".join(f"mount {parts[p]} {mounts[p]}" for p in ANDROID_PARTS), cmd_t)
        self.reach_image_server(ctx, sh, probe_url)
        for name in ("boot", "pkg", "system", "data"):
            if urls.get(name):
                self.fetch_tarball(ctx, sh, name, urls[name], MOUNT)
        prompt = q(f"PS1='{self.android_prompt(ctx)}'")
        self.step(ctx, sh, "set the Android prompt",
                  f"mkdir -p {mounts['system']}/etc && printf '%s\\n' {prompt} >> {mounts['system']}/etc/mkshrc", cmd_t)
        self.step(ctx, sh, "sync and unmount", "sync; " + " && ".join(f"umount {m}" for m in mounts.values()), 300)
        self.state = BoardState.MASTER
        ctx.log(f"{dev.name}: Android written to {', '.join(f'{p}={dev.partitions[p]}' for p in parts)}")

    def install_android_binaries(self, ctx, url: str, probe_url: str) -> None:  # type: ignore[no-untyped-def]
        """Unpack the served binary-drivers tarball into the Android system partition."""
        dev = ctx.device
        if "system" not in dev.partitions:
            raise ConfigurationError.single(dev.source or dev.name, "partitions",
                                            f"board {dev.name} has no system partition for Android")
        sh = self.master_shell(ctx)
        target = f"{MOUNT}/system"
        self.step(ctx, sh, "mount system", f"mkdir -p {target}; umount {target} 2>/dev/null; "
                  f"mount {shlex.quote(dev.partitions['system'])} {target}", dev.timeout("command", 60))
        try:
            self.reach_image_server(ctx, sh, probe_url)
            self.fetch_tarball(ctx, sh, "android_binary_drivers", url, target)
        finally:
            self.step(ctx, sh, "sync and unmount", f"sync; umount {target}", 300)

    # -- booting --------------------------------------------------------------------------------
    def android_prompt(self, ctx) -> str:  # type: ignore[no-untyped-def]
        return str(ctx.device.extra.get("tester_str_android", ANDROID_PROMPT))

    def android_shell(self, ctx) -> ShellSession:  # type: ignore[no-untyped-def]
        """The Android shell on the serial console (no exit status there: Android's runner never
        waited for one; use adb for commands)."""
        return ctx.board.shell(self.android_prompt(ctx), login=False)

    def boot_android(self, ctx, options: list[str]) -> AdbDevice:  # type: ignore[no-untyped-def]
        dev = ctx.device
        if not dev.adb_address:
            raise ConfigurationError.single(dev.source or dev.name, "adb_address",
                                            f"board {dev.name} has no adb_address (host:port of its adbd)")
        self.boot_through_uboot(ctx, "Android image", "boot_cmds_android", dev.boot_cmds_android, options,
                                lambda: self.android_shell(ctx), BoardState.ANDROID)
        return self.connect_adb(ctx)

    def reboot_over_adb(self, ctx, node: Deadline) -> bool:  # type: ignore[no-untyped-def]
        """``adb reboot`` of the running Android (its own way to restart: an Android shell's
        ``reboot`` may be ignored by its init), then the reboot seen on the console. ``False``
        (the caller reboots another way) when there is no adb device or it did not restart."""
        from .master import REBOOT_MESSAGES

        device = self.adb_device
        if self.state is not BoardState.ANDROID or device is None:
            return False
        console = ctx.board.console
        console.mark()
        try:
            device.server.call(["-s", device.serial, "reboot"], node, cap=15)
            console.expect(REBOOT_MESSAGES, node.child(min(60.0, node.remaining()), "adb reboot"))
        except InfrastructureError as exc:
            ctx.log(f"{ctx.device.name}: adb reboot did not restart the board ({exc.message})")
            return False
        finally:
            self.stop_adb(ctx.log)  # the connection ends with the reboot
        return True

    def connect_adb(self, ctx) -> AdbDevice:  # type: ignore[no-untyped-def]
        """This job's adb server, ``adb connect`` (retried while adbd comes up), boot completed."""
        dev = ctx.device
        if self.adb_server is None or not self.adb_server.running:
            board_log = ctx.board.log

            def note(message: str) -> None:  # the job's notes and the board's console.log (like QEMU's pid)
                ctx.log(message)
                board_log.event(message)

            self.adb_server = AdbServer(log=note, log_path=ctx.run.results_dir / "adb-server.log")
            self.adb_server.start(ctx.deadline)
        node = ctx.deadline.child(dev.timeout("adb_connect", 120), f"adb connect {dev.adb_address}")
        self.adb_server.disconnect(str(dev.adb_address), node)  # a connection from before a reboot
        while True:
            try:
                device = self.adb_server.connect(str(dev.adb_address), node)
                break
            except AdbError as exc:
                if "is gone" in exc.message or node.remaining() < 2:
                    raise AdbError(f"{node.path}: adbd of {dev.name} at {dev.adb_address} did not answer: "
                                   f"{exc.message}", details=exc.details) from None
                node.sleep(1)
        took = device.wait_boot_completed(ctx.deadline.child(dev.timeout("android_boot_completed", 300),
                                                             "wait for sys.boot_completed=1"))
        release = device.getprop("ro.build.version.release", ctx.deadline)
        ctx.log(f"{dev.name}: Android up over adb as {device.serial} (boot completed after {took:.1f} s more, "
                f"ro.build.version.release={release})")
        self.adb_device = device
        return device

    def android(self, ctx) -> AdbDevice:  # type: ignore[no-untyped-def]
        """The adb device of the booted Android image, booting it (or reconnecting) first if needed."""
        if self.state is BoardState.ANDROID and self.adb_device is not None:
            try:
                if self.adb_device.get_state(ctx.deadline.child(15, "adb get-state")) == "device":
                    return self.adb_device
            except InfrastructureError as exc:
                ctx.log(f"{ctx.device.name}: adb lost its device ({exc.message}); reconnecting")
            self.stop_adb(ctx.log)
            try:
                return self.connect_adb(ctx)
            except InfrastructureError as exc:
                ctx.log(f"{ctx.device.name}: reconnecting adb failed ({exc.message}); rebooting Android")
        return self.boot_android(ctx, self.android_boot_options)

    def interrupt_android(self, ctx) -> None:  # type: ignore[no-untyped-def]
        """Ctrl-C on the serial console (what the old dispatcher sent to a hung Android test)."""
        try:
            ctx.board.console.sendcontrol("c", Deadline(5, "Ctrl-C on the console", ctx.run.deadline))
        except InfrastructureError as exc:
            ctx.log(f"{ctx.device.name}: Ctrl-C on the console failed: {exc.message}")

    def stop_adb(self, note) -> None:  # type: ignore[no-untyped-def]
        """Stop this job's adb server (best effort, never raises)."""
        server, self.adb_server, self.adb_device = self.adb_server, None, None
        if server is not None:
            try:
                server.stop()
            except Exception as exc:  # stopping must never hide the job's own outcome
                note(f"stopping the adb server failed: {exc}")
