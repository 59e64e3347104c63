"""The local board pool (the default backend): a lease is an ``flock`` on a file.

A **lease** is an exclusive ``flock`` on ``<state_dir>/leases/<board>.lock``. The kernel drops
the lock when the file is closed, and closes it when the process ends for whatever reason —
``kill -9``, an OOM kill, a cancelled CI job — so a board is never left locked by a dead holder,
and two processes (or two leases in one process) can never hold one board. There are no TTLs
or heartbeats to tune: a lease lasts exactly as long as its holder.

The lock files are never deleted (deleting one while another process waits on it would let two
processes lock two different files for one board). The holder writes ``pid``, host, job and
start time into its lock file, for the "board is busy" message.

Lock descriptors are close-on-exec, so child processes the job spawns (QEMU, ser2net) do not
inherit the lease; a child made with a bare ``fork()`` would, and keeps the board until it ends.

It works for every process of ONE host sharing the state directory; dispatchers on several hosts
share a PostgreSQL pool instead (:mod:`.pgpool`, ``--lava-pool postgresql://…``). Matching, the
wait for a free board and the messages are the same for both (:mod:`.leasing`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path

from .device import Device
from .health import BoardHealth, HealthRules, board_file_stem
from .leasing import Holder, Lease, NoBoardAvailable, NoMatchingBoard, PoolBackend

__all__ = ["BoardPool", "FileLease", "Holder", "Lease", "NoBoardAvailable", "NoMatchingBoard", "PoolBackend"]


class FileLease(Lease):
    """A lease held as an ``flock`` on an open descriptor of the board's lock file."""

    def __init__(self, device: Device, fd: int, path: Path, waited: float = 0.0) -> None:
        self.path = path
        self._fd: int | None = fd
        super().__init__(device, waited)

    def _drop(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # clear the holder record
        except OSError:
            pass
        os.close(fd)  # closing the descriptor drops the flock


class BoardPool(PoolBackend):
    """The boards of a device directory, leased to jobs across the processes of one host.

    ``state_dir`` must be shared by every process that may use the same boards (all xdist workers
    of a run, and other runs on the same lab): e.g. ``~/.cache/pytest-lava``.
    """

    def __init__(
        self,
        devices: Mapping[str, Device],
        state_dir: Path,
        *,
        health: HealthRules | None = None,
        poll_interval: float = 0.1,
    ) -> None:
        self.devices = dict(devices)
        self.state_dir = Path(state_dir)
        self.lease_dir = self.state_dir / "leases"
        self.lease_dir.mkdir(parents=True, exist_ok=True)
        self.health = health if health is not None else BoardHealth(self.state_dir)
        self.poll_interval = poll_interval
        self.location = str(self.state_dir)

    def _lock_path(self, board: str) -> Path:
        return self.lease_dir / f"{board_file_stem(board)}.lock"

    def try_lease(self, device: Device, *, job: str = "") -> Lease | None:
        path = self._lock_path(device.name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        record = {"pid": os.getpid(), "host": socket.gethostname(), "job": job, "since": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        except OSError:
            pass  # the record is only for messages
        return FileLease(device, fd, path)

    def holder(self, board: str) -> Holder | None:
        lease = self.try_lease(self.devices[board]) if board in self.devices else None
        if lease is not None:
            lease.release()
            return None
        try:
            data = json.loads(self._lock_path(board).read_text() or "{}")
            return Holder(int(data["pid"]), str(data["host"]), str(data.get("job", "")), float(data["since"]))
        except (OSError, ValueError, KeyError, TypeError):
            return Holder(0, "?", "", time.time())
