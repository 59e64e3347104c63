"""A serial line per board for ser2net's telnet/RFC 2217 ports (stdlib only, one process).

ser2net answers RFC 2217 (baud rate, data bits, ...) only with a serial-capable connector, like a
lab's ``/dev/ttyUSB*``. For each board this process holds a pty and keeps a stable symlink to its
slave (``run/<board>.tty``, ser2net's ``serialdev`` connector); while something (ser2net, when a
telnet client is connected) has the slave open, the pty is joined to the board's QEMU serial port
(TCP, ``wait=on``), reconnecting when QEMU is power-cycled; nobody on the slave: QEMU's port is
left alone, so a board still waits for its first console client before it runs.

    ttybridge.py RUN_DIR LINK:PORT [LINK:PORT ...]      (started and stopped by labctl, by PID)
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import time
import tty
from dataclasses import dataclass

RETRY = 0.2  # seconds between attempts to reach QEMU / checks whether the slave is open


@dataclass
class Line:
    link: str
    port: int
    master: int = -1
    slave_name: str = ""
    sock: socket.socket | None = None
    next_try: float = 0.0

    def open(self) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.slave_name = os.ttyname(slave)
        os.close(slave)  # the master now sees POLLHUP until someone opens the slave
        os.set_blocking(self.master, False)
        tmp = f"{self.link}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(self.slave_name, tmp)
        os.replace(tmp, self.link)

    def slave_open(self) -> bool:
        p = select.poll()
        p.register(self.master, select.POLLIN)
        return not any(ev & select.POLLHUP for _, ev in p.poll(0))

    def drop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def connect(self, now: float) -> None:
        if now < self.next_try:
            return
        self.next_try = now + RETRY
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=1.0)
        except OSError:
            return
        sock.setblocking(False)
        self.sock = sock


def pump(src_read, dst_write) -> bool:  # type: ignore[no-untyped-def]
    """Copy what is there; False when the source is gone."""
    try:
        data = src_read(65536)
    except BlockingIOError:
        return True
    except OSError:  # EIO on the pty master: the slave was closed
        return False
    if not data:
        return False
    view = memoryview(data)
    end = time.monotonic() + 5.0
    while view and time.monotonic() < end:  # a stalled reader loses bytes after 5 s, never blocks us
        try:
            view = view[dst_write(view):]
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            return False
    return True


def main(argv: list[str]) -> int:
    lines = []
    for spec in argv[1:]:
        link, _, port = spec.rpartition(":")
        lines.append(Line(link, int(port)))
    for line in lines:
        line.open()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print(f"ttybridge: {', '.join(f'{x.link} -> {x.slave_name} <-> :{x.port}' for x in lines)}", flush=True)
    while not stop:
        now = time.monotonic()
        poller = select.poll()
        fds: dict[int, tuple[Line, str]] = {}
        for line in lines:
            if not line.slave_open():
                line.drop()
                continue
            if line.sock is None:
                line.connect(now)
            if line.sock is not None:
                poller.register(line.master, select.POLLIN)
                poller.register(line.sock.fileno(), select.POLLIN)
                fds[line.master] = (line, "pty")
                fds[line.sock.fileno()] = (line, "tcp")
        for fd, _ev in poller.poll(RETRY * 1000):
            line, side = fds[fd]
            if line.sock is None:
                continue
            if side == "tcp":
                ok = pump(line.sock.recv, lambda b, m=line.master: os.write(m, b))
            else:
                ok = pump(lambda n, m=line.master: os.read(m, n), line.sock.send)
            if not ok:  # QEMU went away (power cycle: reconnect later) or the slave was closed
                line.drop()
    for line in lines:
        line.drop()
        with contextlib.suppress(OSError):
            os.unlink(line.link)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
