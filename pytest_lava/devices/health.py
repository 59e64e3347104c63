"""Board health: count infrastructure failures per board and quarantine bad boards.

The rules live in :class:`HealthRules`; a store implements reading a board's state and a locked
read-modify-write of it. The local store (:class:`BoardHealth`) keeps each board's state in one small
JSON file, ``<state_dir>/health/<board>.json``. Writes go
through a temporary file and ``os.replace`` (readers never see half a file), and every
read-modify-write holds an ``flock`` on ``<board>.json.lock``, so concurrent pytest-xdist workers
and separate pytest runs sharing a state directory never lose an update. The PostgreSQL pool keeps
the same state in a table, updated in transactions (:class:`.pgpool.PgHealth`).

The rules (LAVA's device health, made local):

* a job that ends in an **infrastructure failure** (power, console, boot) adds one to the
  board's count of consecutive infrastructure failures; at ``threshold`` the board is
  **quarantined** (``threshold < 1`` disables quarantine);
* a job that ends without one (passed, or a test failure: the board worked) resets the count;
* a job that ends in a **job error** (the job's own mistake: an action the board type cannot run,
  a bad artifact URL or checksum, a refused boot option) and no infrastructure failure says
  nothing about the board: the count is left as it is, and a health check that ends so neither
  quarantines nor releases the board (a job file cannot quarantine a healthy board);
* a **health-check** job that passes releases the board from quarantine; one that fails
  (for any reason) quarantines the board at once, as a failed health check does in LAVA;
* the pool skips quarantined boards, except for health-check jobs.

Each state change returns a one-line human message for the terminal and the job log.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

HISTORY_LENGTH = 20


def board_file_stem(board: str) -> str:
    """A file name for a board name (board names are hostnames, but be safe)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", board) or "_"


@dataclass
class BoardState:
    board: str
    consecutive_infra_failures: int = 0
    quarantined: bool = False
    quarantined_since: float | None = None  # time.time()
    reason: str = ""
    history: list[dict[str, object]] = field(default_factory=list)  # most recent last

    @classmethod
    def from_json(cls, board: str, data: dict[str, object]) -> BoardState:
        state = cls(board)
        count = data.get("consecutive_infra_failures", 0)
        state.consecutive_infra_failures = int(count) if isinstance(count, int | float) else 0
        state.quarantined = bool(data.get("quarantined", False))
        since = data.get("quarantined_since")
        state.quarantined_since = float(since) if isinstance(since, int | float) else None
        state.reason = str(data.get("reason", ""))
        history = data.get("history", [])
        state.history = [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []
        return state

    def summary(self) -> dict[str, object]:
        """What ``pool status`` shows of a board's health (either backend)."""
        return {"quarantined": self.quarantined, "consecutive_infra_failures": self.consecutive_infra_failures,
                "quarantined_since": self.quarantined_since, "reason": self.reason}


class HealthRules(ABC):
    """The health rules (module docstring) over a store of :class:`BoardState` per board."""

    @abstractmethod
    def load(self, board: str) -> BoardState:
        """The board's current state (a fresh healthy state if it has none or it is unreadable)."""

    @abstractmethod
    def _locked(self, board: str) -> AbstractContextManager[BoardState]:
        """Read-modify-write one board's state, exclusively: the state yielded is saved on exit."""

    @abstractmethod
    def status(self) -> dict[str, dict[str, object]]:
        """Every board with a state: ``{board: {quarantined, consecutive_infra_failures, ...}}``."""

    def is_quarantined(self, board: str) -> bool:
        return self.load(board).quarantined

    def quarantined(self, boards: Iterable[str]) -> set[str]:
        """Which of ``boards`` are quarantined (a store may answer in one query)."""
        return {b for b in boards if self.is_quarantined(b)}

    def record(
        self,
        board: str,
        *,
        infrastructure_failure: bool,
        health_check: bool,
        passed: bool,
        threshold: int,
        reason: str = "",
        job: str = "",
        job_error: bool = False,
    ) -> str | None:
        """Record the outcome of one job on ``board``; a message when the board's health changed.

        ``passed`` is whether the job as a whole passed; ``reason`` (the infrastructure error's
        message, say) is kept in the state and shown in the quarantine message. ``job_error``: the
        job ended in a job error (its own mistake); without an infrastructure failure too, the
        board's health is left as it is (only the history records the job).
        """
        blameless = job_error and not infrastructure_failure
        with self._locked(board) as state:
            was = state.quarantined
            if infrastructure_failure:
                state.consecutive_infra_failures += 1
            elif not blameless:
                state.consecutive_infra_failures = 0
            event: dict[str, object] = {
                "time": round(time.time(), 3),
                "job": job,
                "infrastructure_failure": infrastructure_failure,
                "health_check": health_check,
                "passed": passed,
            }
            if job_error:
                event["job_error"] = True
            if reason:
                event["reason"] = reason
            state.history = (state.history + [event])[-HISTORY_LENGTH:]
            if blameless:
                return None

            message: str | None = None
            n = state.consecutive_infra_failures
            if health_check and passed and not infrastructure_failure:
                if was:
                    state.quarantined = False
                    state.quarantined_since = None
                    what = f"health check {job}" if job else "a health check"
                    message = f"board {board} released from quarantine: {what} passed"
                    state.reason = ""
            elif health_check and not was:
                why = "infrastructure failure" if infrastructure_failure else "failure"
                state.reason = f"health check failed ({why})" + (f": {reason}" if reason else "")
                message = self._quarantine(state)
            elif infrastructure_failure and not was and threshold >= 1 and n >= threshold:
                plural = "s" if n != 1 else ""
                last = f", last: {reason}" if reason else ""
                state.reason = f"{n} consecutive infrastructure failure{plural}{last}"
                message = self._quarantine(state)
            return message

    @staticmethod
    def _quarantine(state: BoardState) -> str:
        state.quarantined = True
        state.quarantined_since = time.time()
        return (
            f"board {state.board} quarantined after {state.reason}; "
            "a passing health-check job (health_check: true) releases it"
        )

    def release(self, board: str, why: str = "released by hand") -> str | None:
        """Lift a quarantine by hand (an operator's decision); a message if the board was quarantined."""
        with self._locked(board) as state:
            if not state.quarantined:
                return None
            state.quarantined = False
            state.quarantined_since = None
            state.consecutive_infra_failures = 0
            state.reason = ""
            return f"board {board} released from quarantine: {why}"


class BoardHealth(HealthRules):
    """Per-board health state on disk, safe under concurrent processes."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir) / "health"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, board: str) -> Path:
        return self.dir / f"{board_file_stem(board)}.json"

    def load(self, board: str) -> BoardState:
        """The board's current state (a fresh healthy state if it has none or it is unreadable)."""
        try:
            data = json.loads(self._path(board).read_text())
        except (OSError, ValueError):
            return BoardState(board)
        return BoardState.from_json(board, data) if isinstance(data, dict) else BoardState(board)

    def _save(self, state: BoardState) -> None:
        path = self._path(state.board)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(asdict(state), f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    @contextmanager
    def _locked(self, board: str) -> Iterator[BoardState]:
        """Read-modify-write one board's state under an exclusive flock."""
        lock_path = self._path(board).with_suffix(".json.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for microseconds by other writers
            state = self.load(board)
            yield state
            self._save(state)
        finally:
            os.close(fd)  # closing releases the lock

    def status(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for path in sorted(self.dir.glob("*.json")):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(data, dict):
                continue
            board = str(data.get("board", path.stem))
            state = BoardState.from_json(board, data)
            out[board] = state.summary()
        return out
