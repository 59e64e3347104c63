"""The real Debian ``adb`` client, with one adb server per job.

Every job (each ``-n`` worker's job too) starts its **own** server, ``adb -L tcp:<port> server
nodaemon``, as a child process whose PID this module keeps: the port is a free one chosen by
binding 127.0.0.1:0 (never 5037, the default server, nor 5554–5585, the ports an adb server probes
for emulators). Every client call names that server (``-P <port>``, and ``ADB_SERVER_SOCKET`` in
its environment), so two jobs never share a server or see each other's devices. :meth:`AdbServer.stop`
(``kill-server``, then the PID) runs at the end of the job, also when it failed.

Every call is an argv list (never a host shell) with a timeout from the caller's
:class:`~pytest_lava.core.deadline.Deadline`; an answer is read as adb 29 prints it:

* ``connect``: ``connected to H:P`` / ``already connected to H:P`` (the serial), ``failed to
  connect ...`` / ``unable to connect ...`` (an :class:`AdbError`);
* ``shell``: the lab's adbd speaks shell v2, so the client's exit status is the remote command's;
  an error of the client itself (``error: device ... not found``, ``error: closed``) is an
  :class:`AdbError`, never a command's status;
* ``push``/``pull``: exit status 0, else an error naming both paths.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..core.deadline import Deadline
from ..core.errors import InfrastructureError

RESERVED_PORTS = frozenset({5037, *range(5554, 5586)})
CALL_CAP = 120.0  # seconds for one short adb call (connect, get-state, getprop) at most
SERVER_START = 15.0
# the adb client's own complaints (exact forms: a test's output such as "error: failed to open x"
# must not read as adb losing the device)
_CLIENT_ERROR = re.compile(r"^(adb: )?error: (device .*not found|no devices|device offline|device unauthorized|"
                           r"closed$|protocol fault|cannot connect to daemon|more than one device|"
                           r"failed to get feature set)", re.M)
INSTALL_HINT = "install the Debian package 'adb' on the host (apt-get install adb)"


class AdbError(InfrastructureError):
    """adb could not do what was asked (the device or the server did not answer)."""


class AdbMissing(AdbError):
    """No ``adb`` client on the host."""


class AdbTimeout(AdbError):
    """An adb call did not end within its deadline (it was killed)."""


class BootNotCompleted(AdbError):
    """``sys.boot_completed`` never became 1 within the deadline."""


def find_adb(name: str = "adb") -> str:
    """The adb client's path; :class:`AdbMissing` (with how to install it) when there is none."""
    found = shutil.which(name)
    if not found:
        raise AdbMissing(f"the adb client ({name!r}) is not on the host's PATH: {INSTALL_HINT}")
    return found


def free_port(attempts: int = 20) -> int:
    """A free TCP port on 127.0.0.1 outside the ports adb reserves or probes."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in RESERVED_PORTS:
            return port
    raise AdbError("no free port for the job's adb server outside 5037 and 5554-5585")


def parse_connect(output: str, address: str) -> str:
    """The serial ``adb connect`` names, or an :class:`AdbError` with adb's own words."""
    text = output.strip()
    m = re.search(r"(?:already )?connected to (\S+)", text)
    if m and not re.search(r"(unable|failed) to connect", text):
        return m.group(1)
    raise AdbError(f"adb connect {address} failed: {text or 'no answer'}")


def client_error(output: str) -> str | None:
    """adb's own error line in ``output`` (not the remote command's), or ``None``."""
    m = _CLIENT_ERROR.search(output)
    return output[m.start():].splitlines()[0] if m else None


@dataclass
class ShellResult:
    status: int
    output: str

    @property
    def ok(self) -> bool:
        return self.status == 0


@dataclass
class AdbServer:
    """This job's adb server (a child process) and the calls made through it."""

    adb: str = ""
    log: Callable[[str], None] = field(default=lambda message: None)
    log_path: Path | None = None  # the server's own output (kept with the job's results)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.adb = self.adb or find_adb()

    # -- the server --------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("ANDROID_SERIAL", "ADB_SERVER_SOCKET")}
        env["ADB_SERVER_SOCKET"] = f"tcp:127.0.0.1:{self.port}"
        env["ANDROID_ADB_SERVER_PORT"] = str(self.port)
        return env

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, deadline: Deadline) -> AdbServer:
        """Start the server on a free port and wait until it listens."""
        if self.running:
            return self
        self.port = free_port()
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen([self.adb, "-L", f"tcp:{self.port}", "server", "nodaemon"],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=self.env, start_new_session=True)
        except OSError as exc:
            raise AdbError(f"cannot start the adb server ({self.adb}): {exc}") from None
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        node = deadline.child(SERVER_START, "start adb server")
        while True:
            if self.proc.poll() is not None:
                raise AdbError(f"the adb server on port {self.port} exited at once (status {self.proc.returncode})",
                               details=self._log_tail())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if node.expired:
                    self.stop()
                    raise AdbTimeout(f"{node.path}: the adb server on port {self.port} did not listen "
                                     f"within {SERVER_START:g} s", details=self._log_tail()) from None
                time.sleep(0.05)
        self.log(f"adb server started on 127.0.0.1:{self.port} (pid {self.proc.pid})")
        return self

    def stop(self) -> None:
        """``kill-server``, then the server's PID (terminate, kill). Idempotent, never raises."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                subprocess.run(self.argv("kill-server"), env=self.env, capture_output=True, timeout=5)
            except (OSError, subprocess.SubprocessError):
                pass
            for stop in (proc.terminate, proc.kill):
                try:
                    proc.wait(timeout=3)
                    break
                except subprocess.TimeoutExpired:
                    stop()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
        self.log(f"adb server on port {self.port} (pid {proc.pid}) stopped")

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return "adb server log:\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-10:])

    # -- calls ---------------------------------------------------------------------------------
    def argv(self, *args: str) -> list[str]:
        return [self.adb, "-P", str(self.port), *args]

    def _check_alive(self) -> None:
        if self.proc is None:
            raise AdbError("the job's adb server is not running")
        if self.proc.poll() is not None:
            raise AdbError(f"the job's adb server (port {self.port}, pid {self.proc.pid}) is gone "
                           f"(exit status {self.proc.returncode})", details=self._log_tail())

    def call(self, args: list[str], deadline: Deadline, *, cap: float = CALL_CAP) -> subprocess.CompletedProcess[str]:
        """Run ``adb -P <port> <args>`` within ``deadline`` (at most ``cap`` seconds)."""
        self._check_alive()
        timeout = deadline.remaining_or(cap)
        if timeout <= 0:
            raise deadline.exceeded(f"adb {' '.join(args[:2])}")
        try:
            return subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True,
                                  errors="replace", timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise AdbTimeout(f"{deadline.path}: 'adb {' '.join(args)}' did not end within {timeout:.0f} s") from None

    def connect(self, address: str, deadline: Deadline) -> AdbDevice:
        """``adb connect <address>``; the device once ``get-state`` says ``device``."""
        p = self.call(["connect", address], deadline, cap=30)
        serial = parse_connect(p.stdout + p.stderr, address)
        device = AdbDevice(self, serial)
        device.wait_online(deadline)
        self.log(f"adb: connected to {serial} through the job's server (port {self.port})")
        return device

    def disconnect(self, serial: str, deadline: Deadline) -> None:
        try:
            self.call(["disconnect", serial], deadline, cap=10)
        except AdbError:
            pass


@dataclass
class AdbDevice:
    """One connected device (``-s <serial>``) through the job's server."""

    server: AdbServer
    serial: str

    def _args(self, *args: str) -> list[str]:
        return ["-s", self.serial, *args]

    def _failed(self, what: str, p: subprocess.CompletedProcess[str]) -> AdbError:
        text = (p.stdout + p.stderr).strip()
        return AdbError(f"adb {what} on {self.serial} failed (exit status {p.returncode})",
                        details="\n".join(text.splitlines()[-10:]))

    def get_state(self, deadline: Deadline) -> str:
        p = self.server.call(self._args("get-state"), deadline, cap=15)
        return p.stdout.strip() if p.returncode == 0 else (p.stderr.strip() or "unknown")

    def wait_online(self, deadline: Deadline, interval: float = 0.5) -> None:
        state = ""
        while True:
            state = self.get_state(deadline)
            if state == "device":
                return
            if deadline.remaining() <= interval:
                raise AdbError(f"{deadline.path}: {self.serial} is not online (adb get-state: {state})")
            time.sleep(interval)

    def shell(self, command: str, deadline: Deadline, *, cap: float = CALL_CAP) -> ShellResult:
        """``adb shell <command>``: the remote exit status (shell v2) and its output."""
        p = self.server.call(self._args("shell", command), deadline, cap=cap)
        output = p.stdout + p.stderr
        if p.returncode != 0 and client_error(p.stderr):
            raise AdbError(f"adb shell on {self.serial}: {client_error(p.stderr)}", details=f"command: {command}")
        return ShellResult(p.returncode, output)

    def check(self, command: str, deadline: Deadline, *, cap: float = CALL_CAP) -> str:
        """``shell`` that must succeed: its output."""
        result = self.shell(command, deadline, cap=cap)
        if not result.ok:
            tail = "\n".join(result.output.strip().splitlines()[-10:])
            raise AdbError(f"'{command}' failed on {self.serial} (exit status {result.status})", details=tail)
        return result.output

    def stream(self, command: str, deadline: Deadline, on_line: Callable[[str], None]) -> int:
        """``adb shell <command>`` with each output line given to ``on_line`` as it arrives; the
        exit status. At the deadline the client is killed and :class:`AdbTimeout` raised."""
        self.server._check_alive()
        if deadline.expired:
            raise deadline.exceeded("adb shell")
        proc = subprocess.Popen(self.server.argv(*self._args("shell", command)), env=self.server.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        lines: queue.Queue[bytes | None] = queue.Queue()

        def read() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                lines.put(raw)
            lines.put(None)

        reader = threading.Thread(target=read, name=f"adb shell {self.serial}", daemon=True)
        reader.start()
        tail: list[str] = []
        try:
            while True:
                try:
                    raw = lines.get(timeout=max(0.0, deadline.remaining_or(3600.0)))
                except queue.Empty:
                    raise AdbTimeout(f"{deadline.path}: 'adb shell {command}' on {self.serial} did not end "
                                     f"before the deadline", details="last output:\n" + "\n".join(tail)) from None
                if raw is None:
                    break
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                tail = [*tail[-19:], line]
                on_line(line)
            try:
                status = proc.wait(timeout=max(1.0, deadline.remaining_or(10.0)))
            except subprocess.TimeoutExpired:  # output closed, the client still there: killed below
                raise AdbTimeout(f"{deadline.path}: 'adb shell {command}' on {self.serial} did not exit "
                                 "after its output ended", details="last output:\n" + "\n".join(tail)) from None
        finally:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the client and anything it started
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
            reader.join(timeout=2)
            if proc.stdout is not None and not reader.is_alive():
                proc.stdout.close()
        error = client_error("\n".join(tail[-3:]))
        if status != 0 and error:
            raise AdbError(f"adb shell on {self.serial}: {error}", details=f"command: {command}")
        return status

    def push(self, local: Path, remote: str, deadline: Deadline) -> None:
        p = self.server.call(self._args("push", str(local), remote), deadline, cap=max(CALL_CAP, 600.0))
        if p.returncode != 0:
            raise self._failed(f"push {local.name} -> {remote}", p)

    def pull(self, remote: str, local: Path, deadline: Deadline) -> None:
        p = self.server.call(self._args("pull", remote, str(local)), deadline, cap=max(CALL_CAP, 600.0))
        if p.returncode != 0:
            raise self._failed(f"pull {remote} -> {local}", p)

    def getprop(self, name: str, deadline: Deadline) -> str:
        return self.check(f"getprop {name}", deadline, cap=30).strip()

    def wait_boot_completed(self, deadline: Deadline, interval: float = 1.0) -> float:
        """Poll ``getprop sys.boot_completed`` until it is ``1``; the seconds it took."""
        start = time.monotonic()
        last = ""
        while True:
            try:
                value = self.getprop("sys.boot_completed", deadline)
                if value == "1":
                    return time.monotonic() - start
                last = f"sys.boot_completed={value!r}"
            except AdbTimeout as exc:
                last = exc.message
            except AdbError as exc:
                last = exc.message
                if "is gone" in exc.message:
                    raise
            if deadline.remaining() <= interval:
                raise BootNotCompleted(f"{deadline.path}: Android on {self.serial} did not complete its boot "
                                       f"within {time.monotonic() - start:.0f} s (last: {last})")
            time.sleep(interval)
