"""A board as actions use it: console (connected lazily), power, shell sessions, one log.

Assembled from a :class:`~pytest_lava.devices.device.Device`. Board types that start their own process
(QEMU, a simulator) build a :class:`~pytest_lava.console.connections.ProcessConnection` and hand it to
:meth:`Board.attach`; everything else reads ``device.connection``/``connection_command``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..console.connections import Connection, open_connection
from ..console.log import ConsoleLog
from ..core.deadline import Deadline, Watchdog
from ..devices.device import Device
from ..devices.power import PowerControl

if TYPE_CHECKING:  # imported when first used: a board type that starts its own process (QEMU) starts
    # it before the console engine is loaded, so that import overlaps the boot
    from ..console.engine import Console
    from ..console.shell import ShellSession


class Board:
    def __init__(
        self,
        device: Device,
        *,
        log_dir: Path,
        live: Callable[[str], None] | None = None,
        cwd: Path | None = None,
        deadline: Deadline | None = None,
        log_name: str = "console.log",
    ) -> None:
        self.device = device
        self.name = device.name
        self.log_dir = Path(log_dir)
        self.log_path = self.log_dir / log_name
        self.log = ConsoleLog(self.log_path, board=device.name, live=live)
        self.cwd = cwd
        self.deadline = deadline  # the job's node: parent of connect/reconnect deadlines
        self.power = PowerControl(device, self.log, cwd=cwd)
        self._console: Console | None = None
        self._connection: Connection | None = None

    # -- console ---------------------------------------------------------------------------------
    def connect(self, deadline: Deadline | float | None = None) -> Console:
        """Open the console (if not open yet) within ``deadline`` (default: the ``connect`` step
        timeout of the device, 60 s)."""
        if self._console is not None and not self._console.closed:
            return self._console
        if deadline is None:
            deadline = Deadline(self.device.timeout("connect", 60.0), f"{self.name}/connect", self.deadline)
        node = Deadline.coerce(deadline, "connect console")
        conn = open_connection(self.device, node, self.log)
        return self.attach(conn)

    def attach(self, connection: Connection) -> Console:
        """Use an already open connection (e.g. a ProcessConnection the board type started)."""
        if self._console is not None:
            self._console.close("replaced by a new connection")
        self._connection = connection
        from ..console.engine import Console

        self._console = Console(
            connection,  # type: ignore[arg-type]
            name=self.name,
            log=self.log,
            death_strings=self.device.death_strings,
            char_delay=self.device.char_delay_ms / 1000.0,
            newline=self.device.newline,
            deadline=self.deadline,
        )
        return self._console

    @property
    def console(self) -> Console:
        """The console, connected on first use."""
        return self.connect()

    @property
    def connected(self) -> bool:
        return self._console is not None and not self._console.closed

    # -- shells ----------------------------------------------------------------------------------
    def shell(self, prompt: str | None = None, *, login: bool = True) -> ShellSession:
        """A shell session on the console; ``prompt`` defaults to the master image's prompt."""
        dev = self.device
        from ..console.shell import ShellSession

        return ShellSession(
            self.console,
            prompt or dev.master_str,
            login_prompt=dev.login_prompt if login else None,
            username=dev.username,
            password=dev.password,
        )

    def master_shell(self) -> ShellSession:
        return self.shell(self.device.master_str)

    def tester_shell(self) -> ShellSession:
        return self.shell(self.device.tester_str)

    # -- watchdog, lifecycle ---------------------------------------------------------------------------
    def guard(self, watchdog: Watchdog) -> None:
        """Let the job watchdog close this board's console when the job deadline passes."""
        watchdog.add_closer(lambda: self.close_console("job deadline passed"))

    def close_console(self, reason: str = "") -> None:
        console, self._console = self._console, None
        if console is not None:
            console.close(reason)
        elif self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = None

    def close(self) -> None:
        try:
            self.close_console()
        finally:
            self.log.close()

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Board {self.name} ({self.device.device_type}) log={self.log_path}>"
