"""A throw-away PostgreSQL server for tests and benchmarks (Debian's ``postgresql`` package).

``initdb`` into a fresh temporary directory, started with ``pg_ctl`` listening on 127.0.0.1 (or
another local address) on a free port (and a unix socket in the same directory), trust
authentication, stopped and removed on exit — by ``pg_ctl stop``, then by the postmaster's PID
if it is still there. PostgreSQL refuses to run as root: as root the server runs as the
``postgres`` user the package creates.

    with PostgresServer() as pg:
        pool = PostgresPool(devices, pg.url)
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this host (Debian: apt-get install postgresql)."""


def find_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` (Debian's layout), else ``pg_ctl`` on PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise PostgresUnavailable("PostgreSQL is not installed (Debian: apt-get install postgresql)")


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One private server; ``url`` is a libpq URL for its ``postgres`` database."""

    def __init__(self, *, max_connections: int = 100, timeout: float = 60.0, address: str = "127.0.0.1") -> None:
        self.bindir = find_bindir()
        self.address = address  # listen here (and on a unix socket in the server's directory)
        self.max_connections = max_connections
        self.timeout = timeout
        self.dir: Path | None = None
        self.port = 0
        self.pid: int | None = None
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.address}:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or self.timeout,
                              stdin=subprocess.DEVNULL, check=False)

    def start(self) -> PostgresServer:
        self.dir = Path(tempfile.mkdtemp(prefix="pytest-lava-pg-"))
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        data = self.dir / "data"
        done = self._run("initdb", "-D", str(data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                         "--no-sync", "--locale=C")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        if self.address != "127.0.0.1":  # clients on the address's own subnets (a test's bridge)
            with open(data / "pg_hba.conf", "a") as hba:
                hba.write("host all all samenet trust\n")
        self.port = free_port(self.address)
        options = (f"-c listen_addresses={self.address} -p {self.port} -k {self.dir} -c fsync=off "
                   f"-c max_connections={self.max_connections} -c shared_buffers=16MB")
        done = self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(self.dir / "server.log"),
                         "-w", "-t", str(int(self.timeout)), "start")
        if done.returncode != 0:
            log_file = self.dir / "server.log"
            log = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
            self.stop()
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()}\n{log}")
        self.pid = int((data / "postmaster.pid").read_text().split()[0])
        return self

    @contextmanager
    def database(self) -> Iterator[str]:
        """A fresh database on this server (its URL), dropped at the end: tests that share a server
        never see each other's boards, leases or health."""
        import psycopg

        name = f"t{os.getpid()}_{time.monotonic_ns()}"
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        try:
            yield self.url.rsplit("/", 1)[0] + f"/{name}"
        finally:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as admin:
                admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')  # type: ignore[arg-type]

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``, then SIGKILL by PID) and remove its files."""
        if self.dir is None:
            return
        data = self.dir / "data"
        if self.pid is not None:
            try:
                self._run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "-t", "20", "stop", timeout=30)
            except subprocess.TimeoutExpired:
                pass
            deadline = time.monotonic() + 10
            while _alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
            self.pid = None
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
