"""One PostgreSQL connection for the board pool, with a deadline on everything it does.

* connecting: ``connect_timeout`` (and never past the caller's deadline);
* every statement: ``statement_timeout``; every row or table lock: ``lock_timeout``;
* a dead peer: TCP keepalives on both ends — the client's (libpq ``keepalives*`` and
  ``tcp_user_timeout``) so a dispatcher notices a vanished server, the server's (the
  ``tcp_keepalives_*`` / ``tcp_user_timeout`` settings of this session) so the server notices a
  vanished dispatcher host and ends its session, which releases its advisory locks (its leases);
* threads of one process share the connection one statement at a time, waiting for their turn
  at most ``statement_timeout`` plus a margin.

Errors become :class:`InfrastructureError` naming the database (its URL without the password).
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigurationError, InfrastructureError

if TYPE_CHECKING:
    import psycopg
else:  # imported by the first Database (optional, and 0.2 s to import: only the PostgreSQL pool needs it)
    psycopg = None


def _import_psycopg() -> bool:
    global psycopg
    if psycopg is None:
        try:
            import psycopg as module
        except ImportError:
            return False
        psycopg = module
    return True

SCHEMES = ("postgresql://", "postgres://")


def is_database_url(url: str) -> bool:
    return url.startswith(SCHEMES)


def mask_url(url: str) -> str:
    """The URL without its password (``postgresql://user:***@host/db``)."""
    return re.sub(r"^(\w+://[^:/@]*):[^@]*@", r"\1:***@", url)


@dataclass(frozen=True)
class Timeouts:
    """Seconds. The keepalive settings bound how long a lease outlives a vanished holder host:
    about ``keepalive_idle + keepalive_interval * keepalive_count`` (40 s by default), or
    ``user_timeout`` when the host vanishes with data unacknowledged."""

    connect: float = 10.0
    statement: float = 10.0
    lock: float = 5.0
    keepalive_idle: int = 10
    keepalive_interval: int = 10
    keepalive_count: int = 3
    user_timeout: int = 30

    def server_options(self) -> str:
        ms = lambda s: int(s * 1000)  # noqa: E731
        settings = {
            "statement_timeout": ms(self.statement),
            "lock_timeout": ms(self.lock),
            # the server side of the keepalives: a dead dispatcher's session (and leases) ends
            "tcp_keepalives_idle": self.keepalive_idle,
            "tcp_keepalives_interval": self.keepalive_interval,
            "tcp_keepalives_count": self.keepalive_count,
            "tcp_user_timeout": ms(self.user_timeout),
        }
        return " ".join(f"-c {k}={v}" for k, v in settings.items())


class Database:
    """A lazily opened autocommit connection to ``url`` (a libpq URL), shared by the threads of a
    process. ``generation`` counts the connections made: a lease taken on an earlier one is gone."""

    def __init__(self, url: str, *, timeouts: Timeouts | None = None, application: str = "pytest-lava") -> None:
        if not _import_psycopg():
            raise ConfigurationError.single(
                "--lava-pool", "", "the PostgreSQL pool needs psycopg 3: pip install 'pytest-lava[postgresql]'")
        self.url = url
        self.name = mask_url(url)
        self.timeouts = timeouts or Timeouts()
        self.application = f"{application} {socket.gethostname()} pid {os.getpid()}"[:63]
        self.generation = 0
        # the module the connections come from: a runner that restores sys.modules (pytester) may
        # import a second psycopg later, whose types this connection would not know
        self.psycopg = psycopg
        self._conn: psycopg.Connection[Any] | None = None
        self._mutex = threading.Lock()

    def _connect(self) -> psycopg.Connection[Any]:
        t = self.timeouts
        try:
            conn = psycopg.connect(
                self.url, autocommit=True, connect_timeout=max(2, round(t.connect)),
                keepalives=1, keepalives_idle=t.keepalive_idle, keepalives_interval=t.keepalive_interval,
                keepalives_count=t.keepalive_count, tcp_user_timeout=t.user_timeout * 1000,
                application_name=self.application, options=t.server_options(),
            )
        except psycopg.Error as exc:
            raise InfrastructureError(f"board pool {self.name}: cannot connect: {_first_line(exc)}")
        self.generation += 1
        return conn

    @contextmanager
    def cursor(self, what: str) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor of the shared connection, for one statement or one transaction (``what`` names
        it in errors). A broken connection is dropped, and the next call reconnects."""
        if not self._mutex.acquire(timeout=self.timeouts.statement + self.timeouts.connect + 5):
            raise InfrastructureError(f"board pool {self.name}: {what}: the connection stayed busy")
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            try:
                with self._conn.cursor() as cur:
                    yield cur
            except psycopg.Error as exc:
                if self._conn.closed or self._conn.pgconn.status != psycopg.pq.ConnStatus.OK:  # lost
                    self._conn.close()
                    self._conn = None
                raise InfrastructureError(f"board pool {self.name}: {what}: {_first_line(exc)}")
        finally:
            self._mutex.release()

    @contextmanager
    def transaction(self, what: str) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor inside a transaction, committed when the block ends without an exception."""
        with self.cursor(what) as cur, cur.connection.transaction():
            yield cur

    def query(self, what: str, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (none for a statement without a result)."""
        with self.cursor(what) as cur:
            cur.execute(sql, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description is not None else []

    def backend_pid(self) -> int:
        return int(self.query("backend pid", "SELECT pg_backend_pid()")[0][0])

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
