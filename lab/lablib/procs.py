"""Processes the lab starts: spawn detached, record by PID file, find, stop by PID (never by name)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from .host import LabError
from .paths import RUN


def pidfile(name: str) -> Path:
    return RUN / f"{name}.pid"


def alive(pid: int) -> bool:
    """True if pid runs (a zombie counts as dead; our own zombie children are reaped)."""
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def running(name: str) -> int | None:
    """PID of the process recorded under name, if it still runs and is still the one we started."""
    pf = pidfile(name)
    try:
        rec = json.loads(pf.read_text())
    except (OSError, ValueError):
        return None
    pid, marker = int(rec["pid"]), rec["marker"]
    if alive(pid) and marker in cmdline(pid):
        return pid
    pf.unlink(missing_ok=True)  # stale: the process is gone (or the PID was reused)
    return None


def spawn(name: str, argv: list[str], marker: str, log: Path) -> int:
    """Start argv detached (own session, stdin closed, output to log); record its PID."""
    if marker not in argv:
        raise ValueError(f"marker {marker!r} must be one of the arguments")
    RUN.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n==== {time.strftime('%F %T')} {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    pidfile(name).write_text(json.dumps({"pid": proc.pid, "marker": marker, "argv": argv}) + "\n")
    return proc.pid


def kill(name: str, timeout: float = 10.0) -> int | None:
    """Stop the process recorded under name by its PID: SIGTERM, then SIGKILL. Returns the PID."""
    pid = running(name)
    if pid is None:
        return None
    for sig, wait in ((signal.SIGTERM, timeout / 2), (signal.SIGKILL, timeout / 2)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(pid):
                pidfile(name).unlink(missing_ok=True)
                return pid
            time.sleep(0.02)
    raise LabError(f"{name} (pid {pid}) did not die after SIGKILL")


def port_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            return False
        raise
    finally:
        s.close()


def require_free(port: int, what: str, wait: float = 5.0) -> None:
    """Fail naming the port if it stays in use for `wait` seconds (a process just killed may
    still be closing it)."""
    deadline = time.monotonic() + wait
    while not port_free(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not port_free(port):
        raise LabError(f"port {port} on 127.0.0.1 ({what}) is in use by another process; "
                       f"stop it or change the lab's ports in lab/lablib/boards.py")


def listening(port: int) -> bool:
    """Is something LISTENing on 127.0.0.1:port (read from /proc, without connecting)."""
    want = f"0100007F:{port:04X}"
    any_ = f"00000000:{port:04X}"
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            f = line.split()
            if f[1] in (want, any_) and f[3] == "0A":
                return True
    return False


def wait_listening(ports: list[int], pid: int, what: str, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(listening(p) for p in ports):
            return
        if not alive(pid):
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise LabError(f"{what} (pid {pid}) exited at start; {log}:\n{tail}")
        time.sleep(0.05)
    raise LabError(f"{what} (pid {pid}) is not listening on {ports} after {timeout:.0f}s; see {log}")


@contextlib.contextmanager
def locked(timeout: float = 120.0) -> Iterator[None]:
    """One labctl at a time changes what runs (xdist workers may power boards concurrently)."""
    RUN.mkdir(parents=True, exist_ok=True)
    with open(RUN / "labctl.lock", "w") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(f"another labctl holds {RUN / 'labctl.lock'} for {timeout:.0f}s")
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
