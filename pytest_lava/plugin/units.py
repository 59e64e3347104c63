"""xdist work units: which unit a node id belongs to, and which hosts a unit must run from.

A LAVA job (one kernel_matrix variant) is one unit: all its items go to one worker, in order
(:mod:`.scheduling`). Other items are grouped as the user's ``--dist`` asks. A device may name the
host it must be run from (``dispatcher_host``); a worker's host is its ``--tx ssh=`` host, else
this host.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .claims import job_unit
from .items import item_paths

UnitKey = tuple[str, str]
Hosts = frozenset[str] | None  # the hosts a unit must run from; None: any


def worker_hosts(node: Any) -> frozenset[str]:
    """The names of the host an xdist worker runs on: its ``--tx ssh=`` host, else this host's."""
    spec = getattr(node.gateway, "spec", None)
    ssh = getattr(spec, "ssh", None)
    if ssh:
        return frozenset({str(ssh).split()[-1].rpartition("@")[2].lower()})
    return frozenset({socket.gethostname().lower()})


class JobUnits:
    """Maps a node id to its work unit: ("job", <file>#<variant>) for a job's items, else by --dist."""

    def __init__(self, jobs: dict[Path, list[Any]], rootpath: Path, dist: str,
                 hosts_of_job: Callable[[Any], Hosts] | None = None) -> None:
        self.rootpath = rootpath
        self.dist = dist
        self._by_path: dict[Path, dict[str, str]] = {}
        self._by_basename: dict[str, dict[str, str]] = {}
        self._hosts: dict[str, Hosts] = {}
        for path, variants in jobs.items():
            names = {name: job_unit(job) for name, job in item_paths(variants).items()}
            if hosts_of_job is not None:
                for job in variants:
                    self._hosts[job_unit(job)] = hosts_of_job(job)
            self._by_path[path.resolve()] = names
            self._by_basename.setdefault(path.name, {}).update(names)

    def job_of(self, nodeid: str) -> str | None:
        fspart, sep, name = nodeid.partition("::")
        if not sep:
            return None
        names = self._by_path.get((self.rootpath / fspart).resolve())
        if names is None:  # a job file outside the rootdir: pytest names it relative to something else
            names = self._by_basename.get(Path(fspart).name, {})
        return names.get(name)

    def hosts(self, key: UnitKey) -> Hosts:
        """The hosts the unit must run from (None: any)."""
        return self._hosts.get(key[1]) if key[0] == "job" else None

    def key(self, nodeid: str) -> UnitKey:
        job = self.job_of(nodeid)
        if job is not None:
            return ("job", job)
        if self.dist == "loadfile":
            return ("file", nodeid.split("::", 1)[0])
        if self.dist == "loadscope":
            return ("scope", nodeid.rsplit("::", 1)[0])
        if self.dist == "loadgroup" and "@" in nodeid:
            return ("group", nodeid.rsplit("@", 1)[1])
        return ("test", nodeid)


def job_hosts(boards: Sequence[Any]) -> Hosts:
    """The hosts a job on one of ``boards`` must run from: None if any board can be run from anywhere."""
    hosts = [getattr(b, "dispatcher_host", None) for b in boards]
    if not hosts or any(not h for h in hosts):
        return None
    return frozenset(str(h).lower() for h in hosts)
