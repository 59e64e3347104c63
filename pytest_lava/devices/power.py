"""Power control by device commands (``power_on_command``, ``power_off_command``,
``hard_reset_command``), run as argv (shlex-split, never a shell) with a deadline and retries.

Each attempt gets ``min(device.power_timeout, time left)``; a command that overruns is killed by
PID (its own process group). Every attempt, its exit status and its output go to the board log.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from ..console.log import ConsoleLog
from ..core.deadline import Deadline
from ..core.errors import InfrastructureError
from .device import Device


class PowerError(InfrastructureError):
    """A power command failed (every attempt), timed out, or is not configured."""


_FIELDS = {"on": "power_on_command", "off": "power_off_command", "reset": "hard_reset_command"}


class PowerControl:
    def __init__(
        self, device: Device, log: ConsoleLog | None = None, cwd: Path | None = None, retry_pause: float = 1.0
    ) -> None:
        self.device = device
        self.log = log if log is not None else ConsoleLog(None, board=device.name)
        self.cwd = cwd
        self.retry_pause = retry_pause
        self.history: list[tuple[str, list[str], int | None, float]] = []  # (what, argv, status, seconds)

    def available(self, what: str) -> bool:
        """Whether the device has a command for ``on``/``off``/``reset`` (reset falls back to off+on)."""
        if what == "reset" and not self.device.hard_reset_command:
            return bool(self.device.power_on_command)
        return bool(getattr(self.device, _FIELDS[what]))

    def on(self, deadline: Deadline | float | None = None) -> None:
        self._run("on", deadline)

    def off(self, deadline: Deadline | float | None = None) -> None:
        self._run("off", deadline)

    def reset(self, deadline: Deadline | float | None = None) -> None:
        """``hard_reset_command``; without one, off (if configured) then on."""
        if self.device.hard_reset_command:
            self._run("reset", deadline)
            return
        node = Deadline.coerce(deadline, "power reset")
        if self.device.power_off_command:
            self._run("off", node)
        self._run("on", node)

    def _run(self, what: str, deadline: Deadline | float | None) -> None:
        field = _FIELDS[what]
        command = getattr(self.device, field)
        node = Deadline.coerce(deadline, f"power {what}")
        if not command:
            raise PowerError(f"{node.path}: board {self.device.name} has no {field}")
        argv = self.device.argv(command) or []
        attempts = 1 + max(0, self.device.power_retries)
        failures: list[str] = []
        for attempt in range(1, attempts + 1):
            remaining = node.remaining()
            if remaining <= 0:
                break
            timeout = min(self.device.power_timeout, remaining)
            status, output, elapsed = self._attempt(argv, timeout)
            self.history.append((what, argv, status, elapsed))
            shown = "timed out" if status is None else f"exit status {status}"
            self.log.event(
                f"power {what} ({attempt}/{attempts}): {shlex.join(argv)} -> {shown} in {elapsed:.2f} s"
                + (f"\n{output.rstrip()}" if output.strip() else "")
            )
            if status == 0:
                return
            last = output.strip().splitlines()[-1] if output.strip() else ""
            failures.append(
                f"attempt {attempt}: {shown}"
                + (f" after {timeout:g} s" if status is None else "")
                + (f" ({last})" if last else "")
            )
            if attempt < attempts and node.remaining() > self.retry_pause:
                node.sleep(self.retry_pause)
        if not failures:
            raise PowerError(f"{node.path}: no time left to run {field} {shlex.join(argv)}")
        raise PowerError(  # the last attempt's reason on the first line: it is often the whole story
            f"{node.path}: {field} of {self.device.name} failed: {shlex.join(argv)}: {failures[-1].split(': ', 1)[1]}",
            details="\n".join(failures),
        )

    def _attempt(self, argv: list[str], timeout: float) -> tuple[int | None, str, float]:
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            where = f" (relative to {self.cwd})" if self.cwd and not os.path.isabs(argv[0]) and "/" in argv[0] else ""
            return 127, f"cannot run {argv[0]}{where}: {exc.strerror or exc}", time.monotonic() - t0
        try:
            out, _ = proc.communicate(timeout=timeout)
            status: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # the command's own group: its PID
            try:
                out, _ = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:  # a grandchild holds the pipe open
                proc.kill()
                out = b""
            status = None
        return status, (out or b"").decode("utf-8", "replace"), time.monotonic() - t0
