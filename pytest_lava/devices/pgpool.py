"""The PostgreSQL board pool: leases and board health shared by dispatchers on several hosts.

Selected by ``--lava-pool postgresql://user@host/db`` (ini ``lava_pool``, ``$PYTEST_LAVA_POOL``);
needs ``pip install 'pytest-lava[postgresql]'`` (psycopg 3). The database needs nothing prepared:
the pool creates its tables on first use.

* A **lease** is a session-level advisory lock ``(LOCK_CLASS, board id)`` taken with
  ``pg_try_advisory_lock`` on the process's connection. The server releases it when that session
  ends — the process exits or is killed (its socket closes), or its host vanishes (the session's
  TCP keepalives, see :mod:`.pgdb`) — so, as with the local pool, a lease lasts exactly as long as
  its holder and a board is never held twice. Advisory locks are re-entrant within a session, so
  the pool also keeps the boards its own process holds, and never hands one out twice.
* Waiting is polling ``pg_try_advisory_lock`` within the job's deadline (never a blocking lock).
* The holder records pid, host and job in ``lava_holders`` (for messages; a row counts only while
  its backend still holds the lock); ``lava_leases`` is the view of who holds what
  (``python -m pytest_lava pool status``, or ``SELECT * FROM lava_leases`` in psql).
  ``lava_lease_log`` keeps every lease's interval on the server's clock — ``acquired`` after the
  lock was taken, ``released`` before it was given back (NULL: the holder died) — from which
  any two holds of one board can be checked for overlap (:func:`double_leases`).
* Board **health** (:class:`PgHealth`) is one row per board in ``lava_health``, read-modify-written
  in a transaction under ``SELECT … FOR UPDATE``: the rules are :class:`.health.HealthRules`.

Boards are known by name: every dispatcher sharing a database must mean the same board by a name.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict

from ..core.errors import InfrastructureError
from .device import Device
from .health import BoardState, HealthRules
from .leasing import Holder, Lease, PoolBackend
from .pgdb import Database, Timeouts

LOCK_CLASS = 0x4C415641  # "LAVA": the first key of every advisory lock the pool takes

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS lava_boards (
    id serial PRIMARY KEY,
    name text UNIQUE NOT NULL,
    device_type text NOT NULL DEFAULT '',
    tags text[] NOT NULL DEFAULT '{{}}'
);
CREATE TABLE IF NOT EXISTS lava_holders (
    board_id integer PRIMARY KEY REFERENCES lava_boards (id),
    backend_pid integer NOT NULL,
    pid integer NOT NULL,
    host text NOT NULL,
    job text NOT NULL DEFAULT '',
    since double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS lava_lease_log (
    id bigserial PRIMARY KEY,
    board text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    job text NOT NULL DEFAULT '',
    backend_pid integer NOT NULL,
    acquired timestamptz NOT NULL,
    released timestamptz
);
CREATE TABLE IF NOT EXISTS lava_health (
    board text PRIMARY KEY,
    quarantined boolean NOT NULL DEFAULT false,
    state jsonb NOT NULL DEFAULT '{{}}',
    updated timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE VIEW lava_leases AS
    SELECT b.name AS board, b.device_type, h.pid, h.host, h.job, h.since,
           l.pid AS backend_pid, a.client_addr, a.application_name
    FROM lava_boards b
    JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.classid = {LOCK_CLASS}::oid
                   AND l.objid = b.id::oid AND l.objsubid = 2
    LEFT JOIN lava_holders h ON h.board_id = b.id AND h.backend_pid = l.pid
    LEFT JOIN pg_stat_activity a ON a.pid = l.pid;
-- lease the first free board of a list, in its order: one round trip, and no lock taken that
-- is not returned (a WHERE clause calling pg_try_advisory_lock may lock rows it then discards)
CREATE OR REPLACE FUNCTION lava_try_lease(ids integer[]) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE i integer;
BEGIN
    FOREACH i IN ARRAY ids LOOP
        IF pg_try_advisory_lock({LOCK_CLASS}, i) THEN RETURN i; END IF;
    END LOOP;
    RETURN NULL;
END $$;
"""


SCHEMA_VERSION = "pytest-lava pool schema 1"
SCHEMA += f"COMMENT ON FUNCTION lava_try_lease(integer[]) IS '{SCHEMA_VERSION}';\n"
SCHEMA_CURRENT = (f"SELECT obj_description(to_regprocedure('lava_try_lease(integer[])'), 'pg_proc') "
                  f"IS NOT DISTINCT FROM '{SCHEMA_VERSION}'")
# set-up waits for the other dispatchers starting at the same moment: longer than a lease's
# statements may, still bounded
SETUP_WAIT = "SET LOCAL lock_timeout = '60s'; SET LOCAL statement_timeout = '60s'"


class PgLease(Lease):
    """A lease held as an advisory lock on the pool's connection."""

    def __init__(self, device: Device, pool: PostgresPool, board_id: int, generation: int, log_id: int) -> None:
        self._pool = pool
        self.board_id = board_id
        self.log_id = log_id  # its row in lava_lease_log
        self.generation = generation  # the connection it was taken on
        super().__init__(device)

    def _drop(self) -> None:
        self._pool._unlock(self)

    def __del__(self) -> None:
        # never talk to the database from a garbage collection (it may run in the middle of
        # another statement of this thread): the next pool call gives the board back
        if self.held:
            self._held = False
            self._pool._orphans.append(self)


class PostgresPool(PoolBackend):
    """The boards of a device directory, leased through one PostgreSQL database (see module doc)."""

    def __init__(
        self,
        devices: Mapping[str, Device],
        url: str,
        *,
        poll_interval: float = 0.2,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.devices = dict(devices)
        self.db = Database(url, timeouts=timeouts)
        self.location = self.db.name
        self.poll_interval = poll_interval
        self.health = PgHealth(self.db, setup=self._setup)
        self._ids: dict[str, int] = {}
        self._held: set[str] = set()
        self._orphans: list[PgLease] = []
        # the threads of one process share one session, where advisory locks are re-entrant: the
        # check of _held, the lock and the update of _held are one step, or two jobs running side by
        # side in one process (plugin/claims.py) could both lease the same board
        self._leasing = threading.RLock()
        self._ready = False

    # -- set-up ----------------------------------------------------------------------------------

    def _setup(self) -> None:
        """Create the tables (once per database) and register this pool's boards. Cheap when
        both are done: dispatchers starting together then neither write nor wait."""
        if self._ready:
            return
        if not self._schema_current():
            with self.db.transaction("creating the pool's tables") as cur:
                cur.execute(SETUP_WAIT)
                cur.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_CLASS,))  # one creator at a time
                cur.execute(SCHEMA_CURRENT)
                row = cur.fetchone()
                if not (row and row[0]):
                    cur.execute(SCHEMA)  # type: ignore[arg-type]
        self._register()
        self._ready = True

    def _schema_current(self) -> bool:
        return bool(self.db.query("checking the pool's tables", SCHEMA_CURRENT)[0][0])

    def _register(self) -> None:
        """Learn the boards' ids; add or update (in name order) only the boards that need it."""
        devices = sorted(self.devices.values(), key=lambda d: d.name)
        rows = self.db.query("reading boards", "SELECT name, id, device_type, tags FROM lava_boards "
                             "WHERE name = ANY(%s)", ([d.name for d in devices],))
        known = {name: (int(id_), dtype, list(tags)) for name, id_, dtype, tags in rows}
        for name, (id_, _, _) in known.items():
            self._ids[name] = id_
        stale = [d for d in devices if known.get(d.name, (0, None, None))[1:] != (d.device_type, list(d.tags))]
        if not stale:
            return
        with self.db.transaction("registering boards") as cur:
            cur.execute(SETUP_WAIT)
            for device in stale:
                cur.execute(
                    "INSERT INTO lava_boards (name, device_type, tags) VALUES (%s, %s, %s) "
                    "ON CONFLICT (name) DO UPDATE SET device_type = EXCLUDED.device_type, tags = EXCLUDED.tags "
                    "RETURNING id", (device.name, device.device_type, list(device.tags)))
                row = cur.fetchone()
                assert row is not None
                self._ids[device.name] = int(row[0])

    def known_boards(self) -> list[Device]:
        """Every board the database knows (registered by any dispatcher), for ``pool status``."""
        self._setup()
        rows = self.db.query("listing boards", "SELECT name, device_type, tags FROM lava_boards ORDER BY name")
        return [Device(name=name, device_type=dtype, tags=list(tags)) for name, dtype, tags in rows]

    # -- leasing ---------------------------------------------------------------------------------

    def try_lease(self, device: Device, *, job: str = "") -> Lease | None:
        return self.try_any([device], job=job)

    def try_any(self, devices: Sequence[Device], *, job: str = "") -> Lease | None:
        self._setup()
        with self._one_at_a_time("leasing a board"):
            return self._try_any(devices, job)

    @contextmanager
    def _one_at_a_time(self, what: str) -> Iterator[None]:
        t = self.db.timeouts
        if not self._leasing.acquire(timeout=2 * (t.statement + t.connect) + 5):
            raise InfrastructureError(f"board pool {self.db.name}: {what}: another thread of this process "
                                      "stayed busy leasing")
        try:
            yield
        finally:
            self._leasing.release()

    def _try_any(self, devices: Sequence[Device], job: str) -> Lease | None:
        self._reap()
        ids = [self._ids[d.name] for d in devices if d.name not in self._held]
        if not ids:
            return None
        with self.db.cursor("leasing a board") as cur:
            cur.execute("SELECT lava_try_lease(%s)", (ids,))
            row = cur.fetchone()
            board_id = row[0] if row else None
            if board_id is None:
                return None
            generation = self.db.generation
            try:  # after the lock is held: the logged interval lies inside the true one
                cur.execute(
                    "WITH holder AS (INSERT INTO lava_holders (board_id, backend_pid, pid, host, job, since) "
                    "VALUES (%(id)s, pg_backend_pid(), %(pid)s, %(host)s, %(job)s, %(since)s) "
                    "ON CONFLICT (board_id) DO UPDATE SET backend_pid = EXCLUDED.backend_pid, pid = EXCLUDED.pid, "
                    "host = EXCLUDED.host, job = EXCLUDED.job, since = EXCLUDED.since) "
                    "INSERT INTO lava_lease_log (board, host, pid, job, backend_pid, acquired) "
                    "SELECT name, %(host)s, %(pid)s, %(job)s, pg_backend_pid(), clock_timestamp() "
                    "FROM lava_boards WHERE id = %(id)s RETURNING id",
                    {"id": board_id, "pid": os.getpid(), "host": socket.gethostname(), "job": job,
                     "since": time.time()})
                row = cur.fetchone()
                log_id = int(row[0]) if row else 0
            except Exception:
                cur.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, board_id))
                raise
        device = next(d for d in devices if self._ids[d.name] == board_id)
        self._held.add(device.name)
        return PgLease(device, self, board_id, generation, log_id)

    def _unlock(self, lease: PgLease) -> None:
        with self._one_at_a_time("releasing a board"):
            self._release(lease)

    def _release(self, lease: PgLease) -> None:
        self._held.discard(lease.device.name)
        if lease.generation != self.db.generation:
            return  # taken on a connection since lost: the server released it with that session
        # the end of the logged interval is committed before the lock goes (two statements)
        self.db.query(
            "releasing a board",
            "WITH gone AS (DELETE FROM lava_holders WHERE board_id = %s AND backend_pid = pg_backend_pid()) "
            "UPDATE lava_lease_log SET released = clock_timestamp() WHERE id = %s", (lease.board_id, lease.log_id))
        self.db.query("releasing a board", "SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, lease.board_id))

    def _reap(self) -> None:
        while self._orphans:
            self._unlock(self._orphans.pop())

    def holders(self) -> dict[str, Holder]:
        self._setup()
        rows = self.db.query("listing leases", "SELECT board, pid, host, job, since FROM lava_leases")
        out = {}
        for board, pid, host, job, since in rows:
            if pid is None:  # locked, but the holder's row is not written yet (or was lost)
                out[board] = Holder(0, "?", "", time.time())
            else:
                out[board] = Holder(int(pid), str(host), str(job), float(since))
        return out

    def holder(self, board: str) -> Holder | None:
        return self.holders().get(board)

    def close(self) -> None:
        """Close the connection: every lease this process still holds ends with it."""
        self._held.clear()
        self._orphans.clear()
        self.db.close()


def double_leases(pool: PostgresPool, *, died: dict[str, float] | None = None) -> list[str]:
    """Overlapping holds of one board in ``lava_lease_log``, described (none: the promise held).

    A lease without ``released`` belongs to a holder that died (its lock went with its session):
    ``died`` maps such a holder's host to when (epoch seconds, server clock) it was killed, and
    the board's next lease must start after that; any other open lease must be the last one."""
    pool._setup()
    rows = pool.db.query("reading the lease log",
                         "SELECT board, host, pid, job, extract(epoch FROM acquired), extract(epoch FROM released) "
                         "FROM lava_lease_log ORDER BY board, acquired")
    problems = []
    previous: tuple[object, ...] | None = None
    for row in rows:
        board, host, _pid, job, acquired, _released = row
        if previous is not None and previous[0] == board:
            end = previous[5] if previous[5] is not None else (died or {}).get(str(previous[1]))
            if end is None or float(acquired) < float(end):
                problems.append(f"{board}: {job} on {host} leased it while {previous[3]} on {previous[1]} held it")
        previous = row
    return problems


class PgHealth(HealthRules):
    """Board health in the ``lava_health`` table (the rules are :class:`HealthRules`)."""

    def __init__(self, db: Database, *, setup: Callable[[], None]) -> None:
        self.db = db
        self._setup = setup  # creates the tables on first use

    def load(self, board: str) -> BoardState:
        self._setup()
        rows = self.db.query("reading board health", "SELECT state FROM lava_health WHERE board = %s", (board,))
        return BoardState.from_json(board, rows[0][0]) if rows and isinstance(rows[0][0], dict) else BoardState(board)

    def quarantined(self, boards: Iterable[str]) -> set[str]:
        self._setup()
        rows = self.db.query("reading quarantine", "SELECT board FROM lava_health WHERE quarantined "
                             "AND board = ANY(%s)", (list(boards),))
        return {r[0] for r in rows}

    @contextmanager
    def _locked(self, board: str) -> Iterator[BoardState]:
        Jsonb = self.db.psycopg.types.json.Jsonb  # noqa: N806 - of the psycopg the connection uses

        self._setup()
        with self.db.transaction(f"updating the health of board {board}") as cur:
            cur.execute("INSERT INTO lava_health (board) VALUES (%s) ON CONFLICT (board) DO NOTHING", (board,))
            cur.execute("SELECT state FROM lava_health WHERE board = %s FOR UPDATE", (board,))
            row = cur.fetchone()
            data = row[0] if row and isinstance(row[0], dict) else {}
            state = BoardState.from_json(board, data)
            yield state
            cur.execute("UPDATE lava_health SET state = %s, quarantined = %s, updated = now() WHERE board = %s",
                        (Jsonb(asdict(state)), state.quarantined, board))

    def status(self) -> dict[str, dict[str, object]]:
        self._setup()
        rows = self.db.query("reading board health", "SELECT board, state FROM lava_health ORDER BY board")
        out: dict[str, dict[str, object]] = {}
        for board, data in rows:
            state = BoardState.from_json(board, data if isinstance(data, dict) else {})
            out[board] = state.summary()
        return out
