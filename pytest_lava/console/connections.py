"""Console connections: byte pipes with a timeout on every call.

Kinds:

* :class:`TcpConnection` — ``socket://host:port`` (and ``telnet://`` without negotiation); a dropped
  connection is reconnected within a deadline. ``TcpConnection.over`` reads a socket pair's end
  (the console of a process we start), which is never reconnected.
* :class:`SerialConnection` — any other pyserial URL (``/dev/ttyUSB0``, ``rfc2217://…``).
* ``PtyConnection`` — a ``connection_command`` (``telnet localhost 7001``) spawned on a pty,
  argv via shlex, killed by PID on close (in :mod:`pytest_lava.console.pty`, re-exported here).
* ``ProcessConnection`` — a process a board type starts itself (QEMU, a simulator), console on
  its stdio pty, on a TCP port it opens, or on a socket pair it inherits (likewise).

``read()`` returns what is available (at most ``max_bytes``), ``b""`` when nothing came within
``timeout``, and raises :class:`ConnectionLost` when the other end went away.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from ..core.deadline import Deadline
from ..core.errors import ConfigurationError, InfrastructureError
from ..devices.device import Device
from .log import ConsoleLog


class ConnectionLost(InfrastructureError):
    """The console connection was closed by the other end (or its process exited)."""


@runtime_checkable
class Connection(Protocol):
    name: str

    def read(self, max_bytes: int, timeout: float) -> bytes: ...

    def write(self, data: bytes, timeout: float) -> None: ...

    def close(self) -> None: ...

    def reconnect(self, deadline: Deadline) -> None: ...


def _wait_fd(fd: int, timeout: float, write: bool = False, wake: int = -1) -> bool:
    """Wait until ``fd`` is readable (or writable), or ``wake`` (an eventfd) is readable; False on
    timeout."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT if write else select.POLLIN | select.POLLPRI)
    if wake >= 0:
        poller.register(wake, select.POLLIN)
    ms = -1 if timeout == float("inf") else max(0, int(timeout * 1000))
    try:
        return bool(poller.poll(ms))
    except InterruptedError:
        return False


def _eventfd() -> int:
    """A non-blocking eventfd for waking a reader, or -1 where there is none (not Linux, no fds
    left): a reader then notices a close() at its next poll timeout, as before."""
    try:
        return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    except (AttributeError, OSError):
        return -1


def _write_all(fd: int, send: Callable[[memoryview], int], data: bytes, timeout: float, name: str) -> None:
    """Write ``data`` through ``send`` (``socket.send``, or an ``os.write`` that checks its fd is
    still ours), waiting on ``fd`` until it is writable. Never ``os.write`` on a bare fd number:
    a connection closed by another thread frees the number, the next console opened reuses it, and
    the bytes would reach another board. ``send`` fails cleanly instead (``ConnectionLost``)."""
    deadline = time.monotonic() + timeout
    view = memoryview(data)
    while view:
        left = deadline - time.monotonic()
        if left <= 0 or not _wait_fd(fd, left, write=True):
            raise InfrastructureError(f"{name}: console write timed out after {timeout:.1f} s")
        try:
            n = send(view)
        except BlockingIOError:
            continue
        except (OSError, ValueError) as exc:  # ValueError: a file descriptor of -1 after a close
            raise ConnectionLost(f"{name}: console write failed: {exc}") from exc
        view = view[n:]


class TcpConnection:
    """A raw TCP console (QEMU ``-serial tcp``, ser2net raw port). Reconnects on demand.

    :meth:`over` reads and writes a socket that is already connected instead: our end of a socket
    pair whose other end a process we started holds (QEMU's ``-chardev socket,fd=``); it is never
    reconnected (the other end goes away only with the process)."""

    def __init__(self, host: str, port: int, *, name: str = "", log: ConsoleLog | None = None) -> None:
        self.host = host
        self.port = port
        self.name = name or f"socket://{host}:{port}"
        self.log = log
        self._sock: socket.socket | None = None
        self._closed = False
        self._pair = False  # over(): a socket pair's end, nothing to reconnect to
        # close() from another thread (the job's end, the watchdog) wakes a read() waiting in poll
        # through this eventfd: a shutdown() of the socket alone left the reader waiting out its
        # whole timeout in about one job end of four (0.5 s more per job). Closed with the object.
        self._wake = _eventfd()
        if self._wake >= 0:  # not at interpreter exit: a daemon thread may still close() then
            weakref.finalize(self, os.close, self._wake).atexit = False

    @classmethod
    def over(cls, sock: socket.socket, *, name: str, log: ConsoleLog | None = None) -> TcpConnection:
        """A console on ``sock``, a connected socket (our end of a socket pair)."""
        conn = cls("", 0, name=name, log=log)
        conn._pair = True
        sock.setblocking(False)
        conn._sock = sock
        return conn

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
        fd = sock.fileno()  # taken before a close() from another thread can make it -1
        if fd < 0 or self._closed:
            raise ConnectionLost(f"{self.name}: connection closed")
        try:
            data = sock.recv(max_bytes)
        except BlockingIOError:
            if timeout <= 0 or not _wait_fd(fd, timeout, wake=self._wake):  # no wait asked: no poll either
                return b""
            if self._closed:
                raise ConnectionLost(f"{self.name}: connection closed") from None
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
        fd = sock.fileno() if sock is not None else -1  # -1 as well once closed by another thread
        if fd < 0 or self._closed:
            raise ConnectionLost(f"{self.name}: not connected")
        _write_all(fd, sock.send, data, timeout, self.name)  # type: ignore[union-attr]

    def fileno(self) -> int:
        return self._sock.fileno() if self._sock is not None else -1

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def reconnect(self, deadline: Deadline) -> None:
        if self._pair:  # the pair's socket is the only one there is: keep it for the last reads
            raise ConnectionLost(f"{self.name}: the console socket was closed (its process's end of the pair)")
        self._drop()
        self.connect(deadline)

    def close(self) -> None:
        self._closed = True
        if self._wake >= 0:
            with contextlib.suppress(OSError):
                os.eventfd_write(self._wake, 1)
        self._drop()


class SerialConnection:
    """A pyserial URL: ``/dev/tty*``, ``rfc2217://host:port`` (a ser2net ``telnet(rfc2217)`` port;
    ``…?ign_set_control`` when the console server does not answer modem-control requests)."""

    SLICE = 0.05  # seconds one blocking read of a network port (rfc2217://) may wait

    def __init__(self, url: str, *, baudrate: int = 115200, name: str = "") -> None:
        self.url = url
        self.baudrate = baudrate
        self.name = name or url
        self._ser = None
        # a local tty is a bare fd inside pyserial: its reads, writes and close hold this lock, so
        # a close from another thread cannot free the number under a write (see _write_all)
        self._io = threading.Lock()

    def _guard(self) -> contextlib.AbstractContextManager[object]:
        return self._io if self.url.startswith("/") else contextlib.nullcontext()

    def connect(self, deadline: Deadline) -> None:
        import serial  # pyserial; imported lazily, most boards here use TCP

        try:
            self._ser = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=self.SLICE,
                                              do_not_open=True)
            if self._write_timeouts:
                self._ser.write_timeout = deadline.remaining_or(10.0)
            self._ser.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            self._ser = None
            raise InfrastructureError(f"{self.name}: cannot open console {self.url}: {exc}") from exc

    @property
    def _write_timeouts(self) -> bool:
        """pyserial's ``rfc2217://`` handler refuses ``write_timeout`` (NotImplementedError); its
        writes are bounded by its socket's own timeout (5 s without progress) instead."""
        return not self.url.startswith("rfc2217://")

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
                with self._guard():
                    if self._ser is not ser:
                        raise ConnectionLost(f"{self.name}: console closed")
                    return ser.read(min(max_bytes, max(1, ser.in_waiting)))
            # the read timeout stays what connect() set (SLICE): changing it makes pyserial's
            # rfc2217 handler renegotiate the port settings with the server on every call
            end = time.monotonic() + timeout
            while True:
                waiting = ser.in_waiting
                if waiting:
                    return ser.read(min(max_bytes, waiting))
                if time.monotonic() >= end:
                    return b""
                first = ser.read(1)  # waits at most SLICE
                if first:
                    more = min(max_bytes - 1, ser.in_waiting)
                    return first + (ser.read(more) if more > 0 else b"")
        except (serial.SerialException, OSError, AttributeError, TypeError) as exc:
            raise ConnectionLost(f"{self.name}: console read failed: {exc}") from exc

    def write(self, data: bytes, timeout: float) -> None:
        import serial

        ser = self._ser
        if ser is None:
            raise ConnectionLost(f"{self.name}: not open")
        try:
            with self._guard():
                if self._ser is not ser:
                    raise ConnectionLost(f"{self.name}: console closed")
                if self._write_timeouts:
                    ser.write_timeout = timeout
                ser.write(data)
        except serial.SerialTimeoutException as exc:
            raise InfrastructureError(f"{self.name}: console write timed out after {timeout:.1f} s") from exc
        except (serial.SerialException, OSError, AttributeError, TypeError) as exc:
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
            with contextlib.suppress(Exception):  # a local tty's write waiting for room gives way
                ser.cancel_write()
            with self._guard(), contextlib.suppress(Exception):
                ser.close()


AnyConnection = Connection


def __getattr__(name: str) -> object:  # PtyConnection, ProcessConnection live in pty.py
    if name in ("PtyConnection", "ProcessConnection"):
        from . import pty as ptyconn

        return getattr(ptyconn, name)
    raise AttributeError(name)


def connection_for(device: Device, log: ConsoleLog | None = None) -> Any:
    """The (unconnected) connection a device file describes."""
    if device.connection and device.connection_command:
        raise ConfigurationError.single(
            device.source or device.name, "connection", "give connection or connection_command, not both"
        )
    if device.connection_command:
        from .pty import PtyConnection

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


def open_connection(device: Device, deadline: Deadline, log: ConsoleLog | None = None) -> Any:
    """Open the console connection of ``device`` within ``deadline``."""
    conn = connection_for(device, log)
    conn.connect(deadline)
    if log is not None:
        log.event(f"console connected: {conn.name} ({device.connection or device.connection_command})")
    return conn
