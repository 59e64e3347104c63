"""What the console engine raises, and how console bytes become readable text."""

from __future__ import annotations

import re

from ..core.deadline import DeadlineExceeded
from ..core.errors import InfrastructureError

_ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_])")


class ConsoleTimeout(DeadlineExceeded):
    """Nothing matched before the deadline; the message carries the last console lines and log path."""


class ConsoleInactivity(ConsoleTimeout):
    """The board was silent for longer than the step allows."""


class ConsoleDeath(InfrastructureError):
    """A death string (kernel panic, oops…) appeared on the console."""

    def __init__(self, message: str, *, death_string: str = "", details: str = "") -> None:
        super().__init__(message, details=details)
        self.death_string = death_string


class ConsoleClosed(InfrastructureError):
    """The console was closed (by the job watchdog, or the connection could not be re-established)."""


def clean_text(data: bytes | str) -> str:
    """Console bytes as readable text: UTF-8 with replacement, no CR, no ANSI escapes."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.replace("\r\n", "\n").replace("\r", "")
    return _ANSI.sub("", text)


