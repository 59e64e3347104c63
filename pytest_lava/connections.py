"""Console connections: byte pipes with a timeout on every call.

Kinds:

* :class:`TcpConnection` — ``socket://host:port`` (and ``telnet://`` without negotiation); a dropped
  connection is reconnected within a deadline.
* :class:`SerialConnection` — any other pyserial URL (``/dev/ttyUSB0``, ``rfc2217://…``).
* :class:`PtyConnection` — a ``connection_command`` (``telnet localhost 7001``) spawned on a pty,
  argv via shlex, killed by PID on close.
* :class:`ProcessConnection` — a process a board type starts itself (QEMU, a simulator), console on
  its stdio pty or on a TCP port it opens.

``read()`` returns what is available (at most ``max_bytes``), ``b""`` when nothing came within
``timeout``, and raises :class:`ConnectionLost` when the other end went away.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pty
import select
import shlex
import signal
import socket
import subprocess
import time
import tty
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from .consolelog import ConsoleLog
from .deadline import Deadline
from .device import Device
from .errors import ConfigurationError, InfrastructureError


class ConnectionLost(InfrastructureError):
    """The console connection was closed by the other end (or its process exited)."""


@runtime_checkable
class Connection(Protocol):
    name: str

    def read(self, max_bytes: int, timeout: float) -> bytes: ...

    def write(self, data: bytes, timeout: float) -> None: ...

    def close(self) -> None: ...

    def reconnect(self, deadline: Deadline) -> None: ...


def _wait_fd(fd: int, timeout: float, write: bool = False) -> bool:
    """Wait until ``fd`` is readable (or writable); False on timeout."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT if write else select.POLLIN | select.POLLPRI)
    ms = -1 if timeout == float("inf") else max(0, int(timeout * 1000))
    try:
        return bool(poller.poll(ms))
    except InterruptedError:
        return False


def _write_fd(fd: int, data: bytes, timeout: float, name: str) -> None:
    deadline = time.monotonic() + timeout
    view = memoryview(data)
    while view:
        left = deadline - time.monotonic()
        if left <= 0 or not _wait_fd(fd, left, write=True):
            raise InfrastructureError(f"{name}: console write timed out after {timeout:.1f} s")
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            continue
        except OSError as exc:
            raise ConnectionLost(f"{name}: console write failed: {exc}") from exc
        view = view[n:]


class TcpConnection:
    """A raw TCP console (QEMU ``-serial tcp``, ser2net raw port). Reconnects on demand."""

    def __init__(self, host: str, port: int, *, name: str = "", log: ConsoleLog | None = None) -> None:
        self.host = host
        self.port = port
        self.name = name or f"socket://{host}:{port}"
        self.log = log
        self._sock: socket.socket | None = None
        self._closed = False

    def connect(self, deadline: Deadline, *, retry_interval: float = 0.1) -> None:
        """Connect, retrying refused connections until ``deadline`` (the server may be starting)."""
        last: OSError | None = None
        while not self._closed:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=deadline.remaining_or(5.0))
            except OSError as exc:
                last = exc
                if deadline.remaining() <= retry_interval:
                    raise InfrastructureError(
                        f"{self.name}: cannot connect to console {self.host}:{self.port}: {last}"
                        f" (tried for {deadline.elapsed:.1f} s, deadline {deadline.path})"
                    ) from exc
                time.sleep(retry_interval)
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self._sock = sock
            return
        raise ConnectionLost(f"{self.name}: connection closed")

    def read(self, max_bytes: int, timeout: float) -> bytes:
        sock = self._sock
        if sock is None:
            raise ConnectionLost(f"{self.name}: not connected")
        try:
            data = sock.recv(max_bytes)
        except BlockingIOError:
            if not _wait_fd(sock.fileno(), timeout):
                return b""
            try:
                data = sock.recv(max_bytes)
            except BlockingIOError:
                return b""
            except OSError as exc:
                raise ConnectionLost(f"{self.name}: console connection lost: {exc}") from exc
        except (OSError, ValueError) as exc:  # ValueError: fileno -1 after close
            raise ConnectionLost(f"{self.name}: console connection lost: {exc}") from exc
        if not data:
            raise ConnectionLost(f"{self.name}: console connection closed by the other end")
        return data

    def write(self, data: bytes, timeout: float) -> None:
        sock = self._sock
        if sock is None:
            raise ConnectionLost(f"{self.name}: not connected")
        _write_fd(sock.fileno(), data, timeout, self.name)

    def fileno(self) -> int:
        return self._sock.fileno() if self._sock is not None else -1

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def reconnect(self, deadline: Deadline) -> None:
        self._drop()
        self.connect(deadline)

    def close(self) -> None:
        self._closed = True
        self._drop()


class SerialConnection:
    """A pyserial URL: ``/dev/tty*``, ``rfc2217://host:port`` (…``?ign_set_control`` for ser2net)."""

    def __init__(self, url: str, *, baudrate: int = 115200, name: str = "") -> None:
        self.url = url
        self.baudrate = baudrate
        self.name = name or url
        self._ser = None

    def connect(self, deadline: Deadline) -> None:
        import serial  # pyserial; imported lazily, most boards here use TCP

        try:
            self._ser = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0, do_not_open=True)
            self._ser.write_timeout = deadline.remaining_or(10.0)
            self._ser.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise InfrastructureError(f"{self.name}: cannot open console {self.url}: {exc}") from exc

    def read(self, max_bytes: int, timeout: float) -> bytes:
        import serial

        ser = self._ser
        if ser is None:
            raise ConnectionLost(f"{self.name}: not open")
        try:
            fileno = ser.fileno() if hasattr(ser, "fileno") and self.url.startswith("/") else None
            if fileno is not None:
                if not _wait_fd(fileno, timeout):
                    return b""
                return ser.read(min(max_bytes, max(1, ser.in_waiting)))
            waiting = ser.in_waiting
            if waiting:
                ser.timeout = 0
                return ser.read(min(max_bytes, waiting))
            ser.timeout = min(timeout, 1.0)
            first = ser.read(1)
            if not first:
                return b""
            ser.timeout = 0
            return first + ser.read(min(max_bytes - 1, ser.in_waiting))
        except (serial.SerialException, OSError, AttributeError, TypeError) as exc:
            raise ConnectionLost(f"{self.name}: console read failed: {exc}") from exc

    def write(self, data: bytes, timeout: float) -> None:
        import serial

        if self._ser is None:
            raise ConnectionLost(f"{self.name}: not open")
        try:
            self._ser.write_timeout = timeout
            self._ser.write(data)
        except serial.SerialTimeoutException as exc:
            raise InfrastructureError(f"{self.name}: console write timed out after {timeout:.1f} s") from exc
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"{self.name}: console write failed: {exc}") from exc

    def reconnect(self, deadline: Deadline) -> None:
        self.close()
        while True:
            try:
                self.connect(deadline)
                return
            except InfrastructureError:
                if deadline.remaining() < 0.5:
                    raise
                time.sleep(0.5)

    def close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()


def _kill_process(proc: subprocess.Popen[bytes], grace: float = 2.0) -> int | None:
    """Stop a child we started: SIGTERM to its process group (it is a session leader, so the group id
    is its PID), then SIGKILL after ``grace`` seconds. Returns the exit status."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    return proc.returncode


class PtyConnection:
    """A command whose terminal is the console (``telnet localhost 7001``, ``conmux-console x``).

    The command runs in its own session on a raw pty; ``close()`` kills it by PID (process group).
    ``reconnect()`` starts it again.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str = "",
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        log: ConsoleLog | None = None,
    ) -> None:
        if not argv:
            raise ConfigurationError.single(name or "connection_command", "connection_command", "empty")
        self.argv = list(argv)
        self.name = name or shlex.join(self.argv)
        self.cwd = cwd
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._fd = -1

    def connect(self, deadline: Deadline) -> None:
        deadline.check()
        master, slave = pty.openpty()
        tty.setraw(slave)  # no echo, no line editing: the board echoes, not our pty
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            os.close(master)
            raise InfrastructureError(f"{self.name}: cannot start console command {self.argv}: {exc}") from exc
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._fd = master
        if self.log is not None:
            self.log.event(f"console command started: {shlex.join(self.argv)} (pid {self.proc.pid})")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def read(self, max_bytes: int, timeout: float) -> bytes:
        fd = self._fd
        if fd < 0:
            raise ConnectionLost(f"{self.name}: not connected")
        try:
            return self._read_nonempty(fd, max_bytes, timeout)
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EBADF):  # EIO: the child closed the pty (exited)
                raise ConnectionLost(f"{self.name}: console process ended{self._status()}") from exc
            raise ConnectionLost(f"{self.name}: console read failed: {exc}") from exc

    def _read_nonempty(self, fd: int, max_bytes: int, timeout: float) -> bytes:
        try:
            data = os.read(fd, max_bytes)
        except BlockingIOError:
            if not _wait_fd(fd, timeout):
                return b""
            try:
                data = os.read(fd, max_bytes)
            except BlockingIOError:
                return b""
        if not data:
            raise ConnectionLost(f"{self.name}: console process ended{self._status()}")
        return data

    def _status(self) -> str:
        if self.proc is None:
            return ""
        try:
            rc = self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return ""
        return f" (exit status {rc})"

    def write(self, data: bytes, timeout: float) -> None:
        if self._fd < 0:
            raise ConnectionLost(f"{self.name}: not connected")
        _write_fd(self._fd, data, timeout, self.name)

    def _stop(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
        proc, self.proc = self.proc, None
        if proc is not None:
            _kill_process(proc)

    def reconnect(self, deadline: Deadline) -> None:
        self._stop()
        self.connect(deadline)

    def close(self) -> None:
        self._stop()


class ProcessConnection:
    """A process the board type starts itself (QEMU, a simulator).

    With ``port=None`` the console is the process's stdio (a pty); with a ``port`` the process
    opens a TCP console on ``host:port`` and its own output goes to ``output`` (a file) or nowhere.
    ``close()`` kills the process by PID; ``reconnect()`` reconnects the TCP console while the
    process lives (it never restarts a process: that is a power action of the board type).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        name: str = "",
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        output: Path | None = None,
        log: ConsoleLog | None = None,
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.host = host
        self.name = name or Path(self.argv[0]).name
        self.cwd = cwd
        self.env = env
        self.output = output
        self.log = log
        self._pty: PtyConnection | None = None
        self._tcp: TcpConnection | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def connect(self, deadline: Deadline) -> None:
        if self.port is None:
            self._pty = PtyConnection(self.argv, name=self.name, cwd=self.cwd, env=self.env, log=self.log)
            self._pty.connect(deadline)
            self.proc = self._pty.proc
            return
        out = open(self.output, "ab") if self.output else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise InfrastructureError(f"{self.name}: cannot start {self.argv[0]}: {exc}") from exc
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        if self.log is not None:
            self.log.event(f"started {shlex.join(self.argv)} (pid {self.proc.pid})")
        self._tcp = TcpConnection(self.host, self.port, name=self.name, log=self.log)
        self._connect_tcp(deadline)

    def _connect_tcp(self, deadline: Deadline) -> None:
        assert self._tcp is not None and self.proc is not None
        while True:
            if self.proc.poll() is not None:
                raise ConnectionLost(f"{self.name}: process exited with status {self.proc.returncode}")
            try:
                self._tcp.connect(deadline.child(min(1.0, deadline.remaining()), "connect"))
                return
            except ConnectionLost:
                raise
            except InfrastructureError:
                if deadline.expired:
                    raise

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def _conn(self) -> PtyConnection | TcpConnection:
        conn = self._pty or self._tcp
        if conn is None:
            raise ConnectionLost(f"{self.name}: not started")
        return conn

    def read(self, max_bytes: int, timeout: float) -> bytes:
        return self._conn.read(max_bytes, timeout)

    def write(self, data: bytes, timeout: float) -> None:
        self._conn.write(data, timeout)

    def reconnect(self, deadline: Deadline) -> None:
        if self._pty is not None or self.proc is None or self.proc.poll() is not None:
            status = self.proc.returncode if self.proc is not None else None
            raise ConnectionLost(f"{self.name}: process exited (status {status}); not restarting it")
        assert self._tcp is not None
        self._tcp._drop()
        self._connect_tcp(deadline)

    def close(self) -> None:
        if self._pty is not None:
            self._pty.close()
        if self._tcp is not None:
            self._tcp.close()
        if self.proc is not None:
            _kill_process(self.proc)


AnyConnection = TcpConnection | SerialConnection | PtyConnection | ProcessConnection


def connection_for(device: Device, log: ConsoleLog | None = None) -> AnyConnection:
    """The (unconnected) connection a device file describes."""
    if device.connection and device.connection_command:
        raise ConfigurationError.single(
            device.source or device.name, "connection", "give connection or connection_command, not both"
        )
    if device.connection_command:
        argv = device.argv(device.connection_command) or []
        return PtyConnection(argv, name=f"{device.name} console", log=log)
    url = device.connection
    if not url:
        raise ConfigurationError.single(
            device.source or device.name,
            "connection",
            f"board {device.name} has no console: set connection (a pyserial URL) or connection_command",
        )
    parts = urlsplit(url)
    if parts.scheme in ("socket", "tcp"):
        if not parts.hostname or not parts.port:
            raise ConfigurationError.single(device.source or device.name, "connection", f"bad URL {url!r}")
        return TcpConnection(parts.hostname, parts.port, name=f"{device.name} console", log=log)
    return SerialConnection(url, baudrate=int(device.extra.get("baudrate", 115200)), name=f"{device.name} console")


def open_connection(device: Device, deadline: Deadline, log: ConsoleLog | None = None) -> AnyConnection:
    """Open the console connection of ``device`` within ``deadline``."""
    conn = connection_for(device, log)
    conn.connect(deadline)
    if log is not None:
        log.event(f"console connected: {conn.name} ({device.connection or device.connection_command})")
    return conn
