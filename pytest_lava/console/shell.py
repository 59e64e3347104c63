"""Shell sessions over a console: login, prompt detection, commands with exit status.

``run(cmd)`` sends ``echo <start>; cmd; echo <end> $?`` where the markers are unique per call and
written with an empty quote pair inside (``LAVA_ST''ART_…``), so the echo of the typed command line
never matches: only the shell's output does. Output is whatever came between the two markers;
the exit status is read back from the end marker.

The prompt regex must not be anchored at the end of the line (busybox ash prints a cursor query
after its prompt); kernel messages printed in the middle of a prompt are handled by sending a
newline and waiting again.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from ..core.deadline import Deadline
from ..core.errors import InfrastructureError
from .engine import Console, ConsoleTimeout, clean_text

_counter = itertools.count(1)


@dataclass
class CommandResult:
    output: str
    status: int
    command: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == 0


class CommandFailed(InfrastructureError):
    """``run(..., check=True)`` and the command's exit status was not 0."""

    def __init__(self, result: CommandResult, *, where: str = "") -> None:
        tail = "\n".join(result.output.splitlines()[-20:])
        super().__init__(
            f"{where + ': ' if where else ''}command {result.command!r} failed with exit status {result.status}",
            details=f"output (last lines):\n{tail}" if tail else "no output",
        )
        self.result = result


MAX_LINE = 1000  # characters a board shell reliably takes on one line (busybox ash: 1022)


class CommandTooLong(InfrastructureError):
    """A command line longer than a board shell accepts."""


class LoginFailed(InfrastructureError):
    """The board refused the login, or asked for a password we do not have."""


class ShellSession:
    """An interactive shell on a board console."""

    def __init__(
        self,
        console: Console,
        prompt: str,
        *,
        login_prompt: str | None = None,
        username: str | None = None,
        password: str | None = None,
        password_prompt: str = r"[Pp]assword:",
        probe_interval: float = 3.0,
    ) -> None:
        self.console = console
        self.prompt = prompt
        self.login_prompt = login_prompt
        self.username = username
        self.password = password
        self.password_prompt = password_prompt
        self.probe_interval = probe_interval
        self._prompt_re = re.compile(prompt)

    def wait_for_prompt(self, deadline: Deadline | float, *, send_newline: bool = False) -> None:
        """Reach the prompt: wait for it, nudging with a newline every ``probe_interval`` seconds of
        silence-without-prompt; log in on a login prompt."""
        node = Deadline.coerce(deadline, f"wait for prompt {self.prompt!r}")
        patterns = [self.prompt]
        if self.login_prompt:
            patterns += [self.login_prompt, self.password_prompt]
        logged_in = False
        if send_newline:
            self.console.sendline("", node)
        while True:
            step = node.child(min(self.probe_interval, node.remaining()), "probe")
            try:
                m = self.console.expect(patterns, step)
            except ConsoleTimeout:
                if node.expired:
                    raise self._timeout(node) from None
                self.console.sendline("", node)  # prompt garbled by a kernel line, or never printed
                continue
            if m.index == 0:
                return
            if m.index == 1:
                if self.username is None:
                    raise LoginFailed(f"{node.path}: board asks for a login but the device has no username")
                self.console.sendline(self.username, node)
                logged_in = True
            else:
                if self.password is None:
                    raise LoginFailed(f"{node.path}: board asks for a password but the device has none")
                if not logged_in and self.username is None:
                    raise LoginFailed(f"{node.path}: password prompt before any login")
                self.console.sendline(self.password, node)

    def _timeout(self, node: Deadline) -> ConsoleTimeout:
        base = node.exceeded(f"no prompt {self.prompt!r} on {self.console.name}")
        return ConsoleTimeout(
            base.message,
            path=node.path,
            details=f"last console lines:\n{self.console.tail()}\nconsole log: {self.console.log.path}",
        )

    def run(
        self,
        cmd: str,
        deadline: Deadline | float,
        *,
        check: bool = False,
        inactivity: float | None = None,
        death_strings: tuple[str, ...] | None = None,
        interrupt_on_timeout: bool = True,
        body: Callable[[Deadline], object] | None = None,
    ) -> CommandResult:
        """Run ``cmd`` (one shell line) and return its output and exit status. ``body`` sends
        what the line reads before it runs (a here-document's lines) right after the line.

        On a timeout the command is interrupted with Ctrl-C (best effort) and ConsoleTimeout raised.
        """
        node = Deadline.coerce(deadline, f"run {cmd!r}")
        try:
            end_re = self._send_framed(cmd, node, death_strings, body)
            m = self.console.expect(end_re, node, inactivity=inactivity, death_strings=death_strings)
        except ConsoleTimeout:
            if interrupt_on_timeout and not self.console.closed:
                try:
                    self.console.sendcontrol("c", 2.0)
                except InfrastructureError:
                    pass
            raise
        status = int(m.group(1))
        output = clean_text(m.before)
        if output.endswith("\n"):
            output = output[:-1]
        # the prompt after the end marker, so the next command starts clean
        self.console.expect(self.prompt, node, death_strings=death_strings)
        result = CommandResult(output=output, status=status, command=cmd, duration=node.elapsed)
        if check and status != 0:
            raise CommandFailed(result, where=node.path)
        return result

    def stream(self, cmd: str, deadline: Deadline, on_line: Callable[[str], object], *,
               inactivity: float | None = None) -> int:
        """Run ``cmd`` (one shell line), handing every output line to ``on_line`` as it arrives
        (a test definition's live parsing); returns the exit status. A timeout raises
        ConsoleTimeout and leaves the command running: the caller decides how to recover."""
        end_re = self._send_framed(cmd, deadline, None)
        while True:
            m = self.console.expect([end_re, "\n"], deadline, inactivity=inactivity)
            if m.index == 0:
                if m.before.strip("\r\n"):
                    on_line(m.before)
                self.console.expect(self.prompt, deadline)
                return int(m.group(1))
            on_line(m.before)

    def _send_framed(self, cmd: str, node: Deadline, death_strings: tuple[str, ...] | None,
                     body: Callable[[Deadline], object] | None = None) -> re.Pattern[str]:
        """The one command framing: send ``echo START; cmd; echo END $?`` (the markers split by
        quotes, so the echoed command line never matches them), wait for the start marker and
        return the end marker's pattern (its group 1 is the exit status)."""
        tag = f"{os.getpid():x}{next(_counter):x}"
        line = f"echo LAVA_ST''ART_{tag}; {cmd}; echo LAVA_E''ND_{tag} $?"
        if len(line.encode()) > MAX_LINE:
            # busybox's line editor keeps 1022 characters and drops the rest silently: the end
            # marker would never come and the step would wait for its whole deadline
            raise CommandTooLong(f"{node.path}: command line of {len(line)} characters is longer than a board shell "
                                 f"accepts ({MAX_LINE}); split it or put it in a script: {cmd[:80]!r}...")
        self.console.sendline(line, node)
        if body is not None:  # the shell runs the line only once it has read its here-documents
            body(node)
        # \r* not \r?: a console behind a pty that maps LF to CRLF again shows "\r\r\n"
        self.console.expect(re.compile(rf"LAVA_START_{tag}\r*\n"), node, death_strings=death_strings)
        return re.compile(rf"LAVA_END_{tag} (\d+)")

    def check_output(self, cmd: str, deadline: Deadline | float) -> str:
        return self.run(cmd, deadline, check=True).output
