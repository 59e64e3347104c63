"""A simulator process (ARM Fast Model / FVP, or QEMU playing one) and its console.

The simulator is started from the device's ``simulator_command`` template; its console port is
not configured but *read from its output* (``simulator_port_pattern``), then the harness waits for
``simulator_started_pattern`` (if the device sets one) and fails at once on any of
``simulator_failed_patterns`` (a licence failure) or when the process exits. A thread drains the
simulator's stdout and stderr into ``rtsm.log`` for the whole life of the process (a simulator
whose pipe fills up stops), so the log holds everything it said.

The process runs in its own session; :meth:`Simulator.stop` kills its process group by PID.
:class:`SimulatorConnection` is the board's console: a telnet connection to the port, and closing
it (the end of the job, the job watchdog) stops the simulator.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import string
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..console.connections import ConnectionLost
from ..console.log import ConsoleLog
from ..console.pty import kill_process
from ..console.telnet import TelnetConnection
from ..core.deadline import Deadline
from ..core.errors import ConfigurationError, InfrastructureError, JobError

#: placeholders of ``simulator_command`` and the deploy spec key each one takes
PLACEHOLDERS = {"AXF": "axf", "IMG": "image", "KERNEL": "kernel", "DTB": "dtb", "INITRD": "initrd", "UEFI": "uefi"}
TAIL_LINES = 25
_KNOWN = ", ".join("{" + p + "}" for p in PLACEHOLDERS)


class SimulatorFailed(InfrastructureError):
    """The simulator printed one of its failure lines (a licence check): not worth a retry."""


def template_fields(command: str, *, where: str, key: str = "simulator_command") -> list[str]:
    """The placeholders ``command`` uses; an unknown one (or a malformed template) is a
    :class:`ConfigurationError` naming ``where`` (the device) and ``key``."""
    names: list[str] = []
    try:
        for word in shlex.split(command):
            for _, name, spec, conv in string.Formatter().parse(word):
                if name is None:
                    continue
                if name not in PLACEHOLDERS or spec or conv:
                    raise ConfigurationError.single(
                        where, key, f"unknown placeholder {{{name}}} in {command!r} (known: {_KNOWN}; "
                                    "a literal brace is {{ or }})")
                names.append(name)
    except ValueError as exc:  # shlex (no closing quotation) or a lone brace
        raise ConfigurationError.single(where, key, f"malformed command template {command!r}: {exc}") from None
    return names


def device_problems(device) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(key, reason) for every mistake in a simulator device's settings, found before anything starts."""
    where = f"device {device.name}"
    out: list[tuple[str, str]] = []
    if not device.simulator_command:
        out.append(("simulator_command", f"{where} has board_type 'fastmodel' but no simulator_command"))
    else:
        try:
            template_fields(device.simulator_command, where=where)
        except ConfigurationError as exc:
            out += [(p.path, f"{where}: {p.reason}") for p in exc.problems]
    for key in device.simulator_files:
        if key.upper() not in PLACEHOLDERS or key.upper() == "IMG":
            out.append(("simulator_files", f"{where}: unknown placeholder {key!r} (known: AXF, KERNEL, DTB, "
                                           "INITRD, UEFI)"))
    try:
        [w.format(name="n", value="v") for w in device.simulator_option_format]
    except (KeyError, IndexError, ValueError) as exc:
        out.append(("simulator_option_format", f"{where}: {device.simulator_option_format!r} may use only "
                                               f"{{name}} and {{value}} ({type(exc).__name__}: {exc})"))
    patterns = [("simulator_port_pattern", device.simulator_port_pattern),
                ("simulator_started_pattern", device.simulator_started_pattern),
                *(("simulator_failed_patterns", p) for p in device.simulator_failed_patterns)]
    for key, pattern in patterns:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            out.append((key, f"{where}: {pattern!r} is not a regular expression: {exc}"))
            continue
        if key == "simulator_port_pattern" and compiled.groups < 1:
            out.append((key, f"{where}: {pattern!r} must capture the port number as its first group"))
    return out


def option_problem(option: object, allowed: Sequence[str]) -> str | None:
    if not isinstance(option, str) or "=" not in option or not option.partition("=")[0].strip():
        return f"boot option {option!r} is not 'name=value'"
    name = option.partition("=")[0].strip()
    if name not in allowed:
        return (f"boot option {name!r} is not allowed on this simulator (allowed: "
                f"{', '.join(allowed) or 'none'}; the device's simulator_allowed_options)")
    return None


def simulator_argv(command: str, values: Mapping[str, str], options: Mapping[str, str],
                   option_format: Sequence[str], *, where: str) -> list[str]:
    """The simulator's argv: the template's words with their placeholders filled in (each word
    stays one argument, whatever the values hold: no shell), then each option rendered with
    ``option_format`` (e.g. ``["-C", "{name}={value}"]``)."""
    needed = template_fields(command, where=where)
    missing = [n for n in needed if not values.get(n)]
    if missing:
        raise JobError.single(where, "simulator_command",
                              f"the simulator command needs {', '.join('{' + m + '}' for m in missing)}, which the "
                              "deploy did not provide (run deploy_linaro_image first; see simulator_files)")
    argv = [word.format_map({n: values.get(n, "") for n in PLACEHOLDERS}) for word in shlex.split(command)]
    for name, value in options.items():
        argv += [w.format(name=name, value=value) for w in option_format]
    return argv


class Simulator:
    """One simulator process: started, its output drained into ``log_path``, stopped by PID."""

    def __init__(self, argv: Sequence[str], *, name: str, log_path: Path, cwd: Path | None = None,
                 env: Mapping[str, str] | None = None, console_log: ConsoleLog | None = None) -> None:
        self.argv = list(argv)
        self.name = name
        self.log_path = log_path
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.console_log = console_log
        self.proc: subprocess.Popen[bytes] | None = None
        self._text = ""  # what it said since it started (decoded), for the patterns
        self._cond = threading.Condition()
        self._eof = False
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")  # noqa: SIM115 - the drain thread owns it
        out.write(f"--- {self.name}: {shlex.join(self.argv)}\n".encode())
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, cwd=self.cwd, env=self.env,
                                         start_new_session=True, close_fds=True)
        except OSError as exc:
            out.close()
            raise InfrastructureError(f"{self.name}: cannot start the simulator {self.argv[0]!r}: {exc}") from exc
        if self.console_log is not None:
            self.console_log.event(f"started {shlex.join(self.argv)} (pid {self.proc.pid})")
        self._thread = threading.Thread(target=self._drain, args=(self.proc, out), daemon=True,
                                        name=f"drain {self.name}")
        self._thread.start()

    def _drain(self, proc: subprocess.Popen[bytes], out) -> None:  # type: ignore[no-untyped-def]
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        try:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                out.write(chunk)
                out.flush()
                with self._cond:
                    if len(self._text) < 1 << 20:  # the patterns are in its first lines
                        self._text += chunk.decode("utf-8", "replace")
                    self._cond.notify_all()
        finally:
            out.close()
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def wait_ready(self, deadline: Deadline, port_pattern: str, started_pattern: str,
                   failed_patterns: Sequence[str]) -> int:
        """The console port, once the simulator printed it (and ``started_pattern``, if not empty).
        A failure pattern or the process ending fails at once; the deadline passing fails too.
        Every failure names the simulator and carries the tail of its output."""
        port_re, started_re = re.compile(port_pattern), re.compile(started_pattern) if started_pattern else None
        failed = [re.compile(p) for p in failed_patterns]
        with self._cond:
            while True:
                text = self._text
                for pattern in failed:
                    m = pattern.search(text)
                    if m:
                        raise self.failure(f"the simulator failed: {_line_of(text, m)}", SimulatorFailed)
                found = port_re.search(text)
                if found and (started_re is None or started_re.search(text, found.end())):
                    try:
                        return int(found.group(1))
                    except (IndexError, ValueError):
                        raise ConfigurationError.single(self.name, "simulator_port_pattern",
                                                        f"{port_pattern!r} must capture the port number "
                                                        "as its first group") from None
                if self._eof:
                    status = self.proc.wait() if self.proc is not None else None
                    raise self.failure(f"the simulator exited (status {status}) before its console was ready")
                if deadline.expired:
                    what = "'started' line" if found else "console port line"
                    raise self.failure(f"no {what} from the simulator within {deadline.elapsed:.0f} s "
                                       f"(pattern {(started_pattern if found else port_pattern)!r})")
                self._cond.wait(min(0.5, max(0.01, deadline.remaining())))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = TAIL_LINES) -> str:
        try:
            data = self.log_path.read_bytes()[-65536:]
        except OSError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def failure(self, message: str, cls: type[InfrastructureError] = InfrastructureError) -> InfrastructureError:
        return cls(f"{self.name}: {message}",
                                   details=f"simulator output (last lines of {self.log_path.name}):\n{self.tail()}")

    def stop(self) -> int | None:
        """Kill the simulator's process group (by PID) and wait for the drain to finish."""
        proc = self.proc
        status = kill_process(proc) if proc is not None else None
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if proc is not None and proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()
        return status


def _line_of(text: str, m: re.Match[str]) -> str:
    start = text.rfind("\n", 0, m.start()) + 1
    end = text.find("\n", m.end())
    return text[start:end if end >= 0 else len(text)].strip()


class SimulatorConnection:
    """The console of a running simulator: telnet to the port it printed. Closing it stops the
    simulator; a lost connection while the simulator lives is reconnected, a dead simulator is
    an error carrying its last output."""

    def __init__(self, sim: Simulator, host: str, port: int, log: ConsoleLog | None = None) -> None:
        self.sim = sim
        self.telnet = TelnetConnection(host, port, name=f"{sim.name} console {host}:{port}", log=log)

    def connect(self, deadline: Deadline) -> None:
        self.telnet.connect(deadline)

    def read(self, max_bytes: int, timeout: float) -> bytes:
        try:
            return self.telnet.read(max_bytes, timeout)
        except ConnectionLost as exc:
            raise self._lost(exc) from None

    def write(self, data: bytes, timeout: float) -> None:
        try:
            self.telnet.write(data, timeout)
        except ConnectionLost as exc:
            raise self._lost(exc) from None

    def _lost(self, exc: ConnectionLost) -> ConnectionLost:
        proc = self.sim.proc
        try:  # a dying simulator closes the console a moment before it exits
            status = proc.wait(timeout=2.0) if proc is not None else None
        except subprocess.TimeoutExpired:
            return exc  # it lives: the console connection alone was lost
        return ConnectionLost(f"{self.sim.name}: the simulator died (status {status}): {exc.message}",
                              details=f"simulator output (last lines of {self.sim.log_path.name}):\n{self.sim.tail()}")

    def reconnect(self, deadline: Deadline) -> None:
        if not self.sim.alive():
            raise self._lost(ConnectionLost("console lost"))
        self.telnet.reconnect(deadline)

    def close(self) -> None:
        self.telnet.close()
        self.sim.stop()
