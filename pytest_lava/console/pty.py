"""Connections to processes we start: a command on a pty, a board type's own process.

* :class:`PtyConnection` — a ``connection_command`` (``telnet localhost 7001``) spawned on a raw
  pty, argv via shlex, killed by PID (its process group) on close; ``reconnect()`` restarts it.
* :func:`kill_process` — stop a child we started (SIGTERM to its group, then SIGKILL), by PID.
* :class:`ProcessConnection` — a process a board type starts itself (QEMU, a simulator), console on
  its stdio pty, on a TCP port it opens, or on a socket pair it inherits; killed by PID on close.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pty
import shlex
import signal
import socket
import subprocess
import threading
import tty
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TypeVar

from ..core.deadline import Deadline
from ..core.errors import ConfigurationError, InfrastructureError
from .connections import ConnectionLost, TcpConnection, _wait_fd, _write_all
from .log import ConsoleLog

_T = TypeVar("_T")


def kill_process(proc: subprocess.Popen[bytes], grace: float = 2.0) -> int | None:
    """Stop a child we started: SIGTERM to its process group (it is a session leader, so the group id
    is its PID), then SIGKILL after ``grace`` seconds. Returns the exit status."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                _wait_exit(proc, wait)
                break
            except subprocess.TimeoutExpired:
                continue
    return proc.returncode


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """``proc.wait(timeout)``, woken the moment the process exits (a pidfd): Popen.wait with a
    timeout polls with growing sleeps, which added ~5-15 ms to every QEMU stop."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd (old kernel), or the process is already reaped
        proc.wait(timeout=timeout)
        return
    try:
        exited = _wait_fd(pidfd, timeout)
    finally:
        os.close(pidfd)
    if not exited:
        raise subprocess.TimeoutExpired(proc.args, timeout)
    proc.wait(timeout=1.0)  # reaps at once: the process has exited


_kill_process = kill_process  # the old private name (boards/qemu.py imports it)


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
        self._io = threading.Lock()  # a read or write on _fd, or its close: see _on_fd
        self._closed = False  # close() was called: a reconnect in flight must not leave a process

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
        with self._io:
            closed = self._closed
            if not closed:
                self._fd = master
        if closed:  # closed by another thread while this (re)connect started the command
            os.close(master)
            proc, self.proc = self.proc, None  # None if the close's _stop() took it already
            if proc is not None:
                kill_process(proc)
            raise ConnectionLost(f"{self.name}: console closed")
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

    def _on_fd(self, fd: int, op: Callable[[], _T]) -> _T:
        """``op`` (an ``os.read``/``os.write`` on ``fd``) if ``fd`` is still this console's: a
        close from another thread frees the number and the next console opened may reuse it."""
        with self._io:
            if self._fd != fd:
                raise OSError(errno.EBADF, "the console was closed")
            return op()

    def _read_nonempty(self, fd: int, max_bytes: int, timeout: float) -> bytes:
        try:
            data = self._on_fd(fd, lambda: os.read(fd, max_bytes))
        except BlockingIOError:
            if not _wait_fd(fd, timeout):
                return b""
            try:
                data = self._on_fd(fd, lambda: os.read(fd, max_bytes))
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
        fd = self._fd
        if fd < 0:
            raise ConnectionLost(f"{self.name}: not connected")
        _write_all(fd, lambda view: self._on_fd(fd, lambda: os.write(fd, view)), data, timeout, self.name)

    def _stop(self) -> None:
        with self._io:
            fd, self._fd = self._fd, -1
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        proc, self.proc = self.proc, None
        if proc is not None:
            kill_process(proc)

    def reconnect(self, deadline: Deadline) -> None:
        self._stop()
        self.connect(deadline)

    def close(self) -> None:
        self._closed = True
        self._stop()


def console_pair() -> tuple[socket.socket, socket.socket]:
    """A console socket pair for a process we start (ours, the process's): a UNIX stream pair, not
    TCP, because QEMU writes the guest's console one byte per call from the CPU thread, and a byte
    over loopback TCP costs ~3x a byte over a UNIX socket (12 vs 4 us measured here: ~25 KB of boot
    messages). The process's end is inherited only by the process it is passed to (``pass_fds``).
    Both ends are above the standard descriptors: started with 0-2 closed, a pair could get one of
    them, and the child's stdio set-up would replace it before QEMU opens it."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        ours = _above_stdio(ours)
        theirs = _above_stdio(theirs)
    except BaseException:
        ours.close()  # closing a socket twice is harmless
        theirs.close()
        raise
    return ours, theirs


def _above_stdio(sock: socket.socket) -> socket.socket:
    """``sock`` itself, or (closed) a copy of it on a descriptor above 0-2."""
    if sock.fileno() > 2:
        return sock
    try:
        fd = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, 3)
        try:
            return socket.socket(fileno=fd)
        except BaseException:
            os.close(fd)
            raise
    finally:
        sock.close()


class ProcessConnection:
    """A process the board type starts itself (QEMU, a simulator).

    With ``port=None`` the console is the process's stdio (a pty); with a ``port`` the process
    opens a TCP console on ``host:port``; with a ``socket_pair`` (ours, the process's: see
    :func:`console_pair`) the process inherits its end (``argv`` names its file descriptor) and the
    console is ours at once, with no port to race for and nothing to wait for. Without a pty the
    process's own output goes to ``output`` (a file) or nowhere. ``close()`` kills the process by
    PID; ``reconnect()`` reconnects a TCP console while the process lives (it never restarts a
    process: that is a power action of the board type).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        port: int | None = None,
        socket_pair: tuple[socket.socket, socket.socket] | None = None,
        host: str = "127.0.0.1",
        name: str = "",
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        output: Path | None = None,
        log: ConsoleLog | None = None,
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.socket_pair = socket_pair
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
        if self.port is None and self.socket_pair is None:
            self._pty = PtyConnection(self.argv, name=self.name, cwd=self.cwd, env=self.env, log=self.log)
            self._pty.connect(deadline)
            self.proc = self._pty.proc
            return
        ours, theirs = self.socket_pair or (None, None)
        out: int | IO[bytes] = subprocess.DEVNULL
        try:
            if self.output:
                out = open(self.output, "ab")  # noqa: SIM115
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
                close_fds=True,
                pass_fds=(theirs.fileno(),) if theirs is not None else (),
            )
        except BaseException as exc:
            if ours is not None:
                ours.close()
            if isinstance(exc, OSError):
                raise InfrastructureError(f"{self.name}: cannot start {self.argv[0]}: {exc}") from exc
            raise
        finally:
            if not isinstance(out, int):
                out.close()
            if theirs is not None:
                theirs.close()  # the process's end: the console ends when the process does
        if self.log is not None:
            self.log.event(f"started {shlex.join(self.argv)} (pid {self.proc.pid})")
        if ours is not None:
            self._tcp = TcpConnection.over(ours, name=self.name, log=self.log)
            return
        assert self.port is not None
        self._tcp = TcpConnection(self.host, self.port, name=self.name, log=self.log)
        self._connect_tcp(deadline)

    def _connect_tcp(self, deadline: Deadline) -> None:
        assert self._tcp is not None and self.proc is not None
        while True:
            if self.proc.poll() is not None:
                raise ConnectionLost(f"{self.name}: process exited with status {self.proc.returncode}")
            try:
                self._tcp.connect(deadline.child(min(1.0, deadline.remaining()), "connect"), retry_interval=0.002)
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
        if self.socket_pair is not None and self.proc is not None:
            # the process's end closes when it exits: give it a moment to be reaped, for its status
            with contextlib.suppress(subprocess.TimeoutExpired):
                _wait_exit(self.proc, min(1.0, max(0.0, deadline.remaining())))
        where = f"; its output: {self.output}" if self.output else ""
        if self._pty is not None or self.proc is None or self.proc.poll() is not None:
            status = self.proc.returncode if self.proc is not None else None
            raise ConnectionLost(f"{self.name}: process exited (status {status}); not restarting it{where}")
        assert self._tcp is not None
        if self.socket_pair is not None:
            raise ConnectionLost(f"{self.name}: the process closed its console socket; not restarting it{where}")
        self._tcp._drop()
        self._connect_tcp(deadline)

    def close(self) -> None:
        if self._pty is not None:
            self._pty.close()
        if self._tcp is not None:
            self._tcp.close()
        for end in self.socket_pair or ():
            end.close()  # a pair never handed to a process (closing twice is harmless)
        if self.proc is not None:
            kill_process(self.proc)
