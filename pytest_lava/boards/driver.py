"""The board-driver contract: what a kind of board can do, and the state of one leased board.

A driver class describes a kind of board (``name``, the actions it runs, how it takes a Linaro
image); an *instance* drives one leased board for one job and holds that board's state as typed
attributes (:attr:`BoardDriver.state`, the boot options, where the test root filesystem is
mounted). Actions call the driver's methods directly; a capability a driver does not have is
refused by :meth:`BoardDriver.accepts` when the job is validated, so the base class's refusals
below are reached only by code that skipped validation (a plain test calling ``master_shell`` on a
QEMU board, say) and are job errors, never infrastructure failures.

State transitions (``state``)::

    UNKNOWN/OFF --boot_master--> MASTER --boot_test--> TEST
         ^                         |  (deploy writes the test image from the master)
         +------ power_off --------+--- a hung test that cannot be interrupted -> UNKNOWN

A driver that boots Android sets ``ANDROID`` the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import Enum
from typing import TYPE_CHECKING, ClassVar

from ..actions.spec import SUBMIT
from ..console.text import ConsoleTimeout
from ..core.errors import InfrastructureError, JobError, ProblemList

if TYPE_CHECKING:
    from ..android.adb import AdbDevice
    from ..console.shell import ShellSession
    from ..devices.device import Device
    from ..jobs.job import ActionDef
    from ..jobs.runner import ActionContext, JobRun
    from ..testdefs.carry import Carried


class BoardState(Enum):
    """What a board is running, as far as its driver knows."""

    UNKNOWN = "unknown"  # not known (never booted by this job, or a boot failed): power-cycle first
    OFF = "off"
    MASTER = "master"  # the master image's shell is up
    TEST = "test"  # the test image's shell is up
    ANDROID = "android"  # an Android test image is up


class ImageFormat(Enum):
    """How a driver takes ``deploy_linaro_image``: hwpack+rootfs tarballs written from a master
    image, one disk image the board boots itself, or a disk image the host builds from
    hwpack+rootfs plus the boot files found in it (a simulator)."""

    TARBALLS = "tarballs"
    DISK_IMAGE = "disk image"
    HOST_BUILT_IMAGE = "disk image built on the host"  # from hwpack+rootfs (or a prebuilt image) + boot files


class DeployStepFailed(InfrastructureError):
    """A board-side deploy step failed; the message names the step."""


def job_error(ctx: ActionContext, reason: str, field: str = "command") -> JobError:
    """A job mistake found at run time (the job asked for something this board cannot do): a job
    error naming the job file and the action, never an infrastructure failure."""
    action = ctx.action
    where = f"{action.path}.{field}" if action is not None else field
    return JobError.single(str(ctx.job.file), where, reason)


class BoardDriver(ABC):
    """Base class of board drivers. Subclasses say what their boards run and override the
    capabilities they have; each job run gets its own instance."""

    name: ClassVar[str] = "base"
    #: the action commands this driver runs. Empty: not declared — every action, unless the
    #: action's own ``board_types`` (its :class:`~pytest_lava.actions.spec.ActionSpec`) names others
    supported: ClassVar[frozenset[str]] = frozenset()
    #: command -> what to use instead, appended to a refusal
    hints: ClassVar[dict[str, str]] = {}
    #: how ``deploy_linaro_image`` reaches this kind of board (``None``: it cannot)
    image_format: ClassVar[ImageFormat | None] = None

    def __init__(self) -> None:
        self.state = BoardState.UNKNOWN
        self.boot_options: list[str] = []  # the options of the last test-image boot (a reboot reuses them)
        self.testrootfs_mount: str | None = None  # where the test rootfs is mounted on the master, if it is
        #: device-side files the last boot put into the test image itself (QEMU: in its initramfs),
        #: so the test actions need not send them over the console (testdefs/carry.py); None: none
        self.carried: Carried | None = None

    # -- what this kind of board can do (validation) ----------------------------------------------
    def accepts(self, action: ActionDef, device: Device | None = None) -> str | None:
        """``None`` if ``action`` can run on this kind of board, else the reason it cannot (naming
        the board type and what it runs). Submit actions run on the host: always accepted."""
        if action.kind == SUBMIT:
            return None
        if self.supported:
            if action.command in self.supported:
                return None
            hint = self.hints.get(action.command)
            return (f"board type {self.name!r} cannot run {action.command!r}" + (f" ({hint})" if hint else "")
                    + f"; board type {self.name!r} runs: {', '.join(sorted(self.supported))}")
        wanted = action.spec.board_types
        if wanted and self.name not in wanted:
            return (f"{action.command!r} runs only on board type(s) {', '.join(repr(w) for w in wanted)}, "
                    f"not on board type {self.name!r}")
        return None

    def check_parameters(self, action: ActionDef, device: Device, problems: ProblemList, path: str) -> None:
        """Board-specific checks of an accepted action's parameters (``path`` is the action's
        ``parameters`` field), at validation time. Add a problem per mistake."""
        return None

    # -- shells ------------------------------------------------------------------------------------
    @abstractmethod
    def test_shell(self, ctx: ActionContext) -> ShellSession:
        """A shell on the booted test image, booting it first if it is not up (self-healing,
        like the old dispatcher's tester_session)."""

    def master_shell(self, ctx: ActionContext) -> ShellSession:
        """A shell on the master image, booting it first if it is not up."""
        raise self.refuse(ctx, "has no master image")

    # -- state transitions -------------------------------------------------------------------------
    def boot_master(self, ctx: ActionContext) -> None:
        """Boot the master image (state becomes ``MASTER``)."""
        raise self.refuse(ctx, "has no master image")

    def boot_test(self, ctx: ActionContext, options: list[str]) -> None:
        """Boot the deployed test image with the job's boot ``options`` (state becomes ``TEST``)."""
        raise self.refuse(ctx, "cannot boot a test image")

    @abstractmethod
    def power_off(self, ctx: ActionContext) -> None:
        """Leave the board off (best effort; after a failed deploy, say). State becomes ``OFF``."""

    # -- deploying ---------------------------------------------------------------------------------
    def deploy_tarballs(self, ctx: ActionContext, boot_url: str, root_url: str, rootfstype: str,
                        probe_url: str) -> None:
        """Write the served boot and root tarballs to the board's test partitions
        (``image_format = TARBALLS``)."""
        raise self.refuse(ctx, "cannot write a test image from a master image")

    def deploy_image(self, ctx: ActionContext, spec: dict[str, str]) -> None:
        """Remember what to boot: a disk ``image``, or ``kernel``/``initrd``/``dtb``/``rootfs``
        files on the host (``image_format = DISK_IMAGE``, ``deploy_linaro_kernel``)."""
        raise self.refuse(ctx, "cannot boot a kernel or disk image from the host (board types that can: 'qemu')")

    def mount_testrootfs(self, ctx: ActionContext, sh: ShellSession) -> str:
        """Mount the test root filesystem on the running master; returns the mount point."""
        raise self.refuse(ctx, "cannot edit the test root filesystem")

    def unmount(self, ctx: ActionContext, sh: ShellSession, path: str) -> None:
        """Undo :meth:`mount_testrootfs`."""
        raise self.refuse(ctx, "cannot edit the test root filesystem")

    # -- Android (boards/master_android.py) ---------------------------------------------------------
    def deploy_android(self, ctx: ActionContext, urls: dict[str, str], rootfstype: str, probe_url: str) -> None:
        """Fill the Android partitions from the served boot/system/data (and pkg) tarballs."""
        raise self.refuse(ctx, "cannot deploy Android")

    def install_android_binaries(self, ctx: ActionContext, url: str, probe_url: str) -> None:
        """Unpack the served binary-drivers tarball into Android's /system."""
        raise self.refuse(ctx, "cannot install Android binaries")

    def boot_android(self, ctx: ActionContext, options: list[str]) -> AdbDevice:
        """Boot the deployed Android image and connect adb (state becomes ``ANDROID``)."""
        raise self.refuse(ctx, "cannot boot Android")

    def android(self, ctx: ActionContext) -> AdbDevice:
        """The adb device of the booted Android image, booting it first if it is not up."""
        raise self.refuse(ctx, "cannot boot Android")

    def interrupt_android(self, ctx: ActionContext) -> None:
        """Interrupt what runs on Android's console (Ctrl-C)."""
        return None

    # -- the end -------------------------------------------------------------------------------------
    def finish(self, run: JobRun) -> None:
        """Called once at the end of the job, whatever happened (e.g. power the board off)."""
        return None

    # -- helpers -------------------------------------------------------------------------------------
    def step(self, ctx: ActionContext, sh: ShellSession, name: str, cmd: str, timeout: float,
             detail: str = "") -> str:
        """Run one board-side step of a deploy on ``sh`` within ``timeout``; its output. A timeout
        or a non-zero exit status is a :class:`DeployStepFailed` naming the step."""
        node = ctx.deadline.child(timeout, name)
        try:
            result = sh.run(cmd, node)
        except ConsoleTimeout as exc:
            raise DeployStepFailed(f"deploy step '{name}'{detail} timed out on {ctx.device.name}: {exc.message}",
                                   details=exc.details) from None
        if result.status != 0:
            tail = "\n".join(result.output.splitlines()[-15:])
            raise DeployStepFailed(f"deploy step '{name}'{detail} failed on {ctx.device.name} "
                                   f"(exit status {result.status})", details=f"output:\n{tail}")
        return result.output

    def refuse(self, ctx: ActionContext, what: str) -> JobError:
        return job_error(ctx, f"board type {self.name!r} {what}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} state={self.state.value}>"
