"""Choosing a pool backend from ``--lava-pool`` (ini ``lava_pool``, ``$PYTEST_LAVA_POOL``).

Empty (the default) or ``local``: the local ``flock`` pool in the state directory, nothing to set
up. ``postgresql://…`` (or ``postgres://…``): the PostgreSQL pool, shared by dispatcher hosts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..core.errors import ConfigurationError
from .device import Device
from .leasing import PoolBackend
from .pgdb import is_database_url, mask_url

POOL_ENV = "PYTEST_LAVA_POOL"
LOCAL = ("", "local")


def pool_problem(spec: str) -> str | None:
    """Why ``spec`` names no pool backend this host can use (None when it does)."""
    if spec in LOCAL:
        return None
    if not is_database_url(spec):
        return (f"{mask_url(spec)!r} is not a pool: use 'local' (the default) or a PostgreSQL URL "
                "postgresql://user@host/database")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the PostgreSQL pool needs psycopg 3: pip install 'pytest-lava[postgresql]'"
    return None


def open_pool(devices: Mapping[str, Device], spec: str, state_dir: Path) -> PoolBackend:
    """The pool ``spec`` names, over ``devices``; a :class:`ConfigurationError` if it names none."""
    problem = pool_problem(spec)
    if problem:
        raise ConfigurationError.single("--lava-pool", "", problem)
    if spec in LOCAL:
        from .pool import BoardPool

        return BoardPool(devices, state_dir)
    from .pgpool import PostgresPool

    return PostgresPool(devices, spec)


def status_table(pool: PoolBackend) -> list[str]:
    """``pool status`` as text: one line per board (name, type, busy/free, quarantine, holder)."""
    status = pool.status()
    health = pool.health.status()
    width = max([len(n) for n in status] + [5])
    lines = [f"pool {pool.location}: {len(status)} board(s), "
             f"{sum(1 for s in status.values() if s['busy'])} leased, "
             f"{sum(1 for s in status.values() if s['quarantined'])} quarantined"]
    for name, s in status.items():
        state = "leased" if s["busy"] else "free"
        if s["quarantined"]:
            reason = health.get(name, {}).get("reason", "")
            state += ", quarantined" + (f" ({reason})" if reason else "")
        holder = f" by {s['holder']}" if s["holder"] else ""
        lines.append(f"  {name:<{width}}  {s['device_type']:<12} {state}{holder}")
    return lines
