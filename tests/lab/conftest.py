"""Fixtures for tests that boot the emulated lab (lab/labctl), reusable by other test files.

    lab_built      session: `lab/labctl build` ran and succeeded (cached: seconds when up to date)
    x86_board      session: x86-01 started; yields LabBoard(name, device dict); stopped at the end
    arm64_board    session: arm64-01 likewise
    RawConsole     a small raw-socket console client (reconnects after a power cycle)
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.labdevices import devices_left_on

REPO = Path(__file__).resolve().parents[2]
LABCTL = REPO / "lab" / "labctl"
DEVICES = REPO / "devices"
BUILD_TIMEOUT = 1800


def labctl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run lab/labctl with cwd = repository root (as device power commands are run)."""
    return subprocess.run([sys.executable, str(LABCTL), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def device(name: str) -> dict[str, Any]:
    """A lab board's device file merged over its device type (flat keys, as devices.py reads them)."""
    own = yaml.safe_load((DEVICES / f"{name}.yaml").read_text())
    merged = dict(yaml.safe_load((DEVICES / "device-types" / f"{own['device_type']}.yaml").read_text()))
    merged.update(own)
    merged["name"] = name
    return merged


def run_command(command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A device power command: plain argv (never a shell), cwd = repository root."""
    import shlex

    return subprocess.run(shlex.split(command), cwd=REPO, capture_output=True, text=True, timeout=timeout)


class ConsoleTimeout(AssertionError):
    pass


@dataclass
class RawConsole:
    """Raw TCP console (socket://host:port). expect() reconnects when the far end closes
    (ser2net drops clients when the board's QEMU is restarted or not yet listening)."""

    url: str
    log: list[bytes] = field(default_factory=list)
    sock: socket.socket | None = None
    buf: bytes = b""
    before: str = ""

    @property
    def address(self) -> tuple[str, int]:
        m = re.fullmatch(r"socket://([^:]+):(\d+)", self.url)
        assert m, f"not a socket:// URL: {self.url}"
        return m.group(1), int(m.group(2))

    def connect(self, timeout: float = 30) -> None:
        self.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(self.address, timeout=5)
                self.sock.settimeout(0.2)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        if self.sock:
            self.sock.close()
            self.sock = None

    def send(self, data: str) -> None:
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        self.sock.sendall(data.encode())

    def sendline(self, line: str = "") -> None:
        self.send(line + "\n")

    def expect(self, pattern: str, timeout: float) -> re.Match[bytes]:
        """Wait for pattern in output received since the last match; returns the match."""
        rx = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                self.before = self.buf[:m.start()].decode(errors="replace")
                self.buf = self.buf[m.end():]
                return m
            if time.monotonic() > deadline:
                tail = self.buf[-1500:].decode(errors="replace")
                raise ConsoleTimeout(f"{pattern!r} not seen within {timeout:.0f}s on {self.url}; last output:\n{tail}")
            if self.sock is None:
                self.connect(timeout=max(1.0, deadline - time.monotonic()))
            assert self.sock is not None
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:  # dropped: the board's QEMU was restarted or is not listening yet
                self.close()
                time.sleep(0.2)
                continue
            self.log.append(data)
            self.buf += data

    def expect_prompt(self, pattern: str, timeout: float, poke: float = 10.0) -> re.Match[bytes]:
        """Reach a shell prompt on a board that may already be booted: send a newline every
        `poke` seconds of silence-without-a-match until the prompt shows."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.expect(pattern, min(poke, max(0.1, deadline - time.monotonic())))
            except ConsoleTimeout:
                if time.monotonic() > deadline:
                    raise
                self.sendline("")

    def run(self, command: str, prompt: str, timeout: float = 60) -> tuple[int, str]:
        """Run a shell command; return (exit status, output). The prompt is matched afterwards."""
        self.buf = b""
        # the quotes keep the echoed command line from matching the markers
        self.sendline(f'echo "@@B""EGIN@@"; {command}; echo "@@R""C=$?@@"')
        self.expect(r"@@BEGIN@@\r?\n", timeout)
        m = self.expect(r"@@RC=(\d+)@@", timeout)
        out = self.before
        self.expect(prompt, 30)
        return int(m.group(1)), out.replace("\r", "")

    def run_all(self, steps: list[str], prompt: str, timeout: float = 300) -> None:
        """Run shell commands one by one; each must succeed."""
        for step in steps:
            rc, out = self.run(step, prompt, timeout=timeout)
            assert rc == 0, f"{step!r} failed: {out}"

    def boot_with(self, dev: dict[str, Any], boot_cmds: list[str], timeout: float, reboot: bool = True) -> None:
        """(``reboot`` from a shell, then) interrupt U-Boot and type ``boot_cmds``, one per prompt."""
        if reboot:
            self.sendline("reboot")
        self.expect(dev["interrupt_boot_prompt"], timeout)
        self.send(dev["interrupt_boot_command"])
        for line in boot_cmds:
            self.expect(dev["bootloader_prompt"], 60)
            self.sendline(line)

    def transcript(self) -> str:
        return b"".join(self.log).decode(errors="replace")


@dataclass
class LabBoard:
    name: str
    device: dict[str, Any]

    def console(self) -> RawConsole:
        """A console on the board, powered on first: a job run by an earlier test powers its board
        off at the end (the device's ``end_of_job``, default ``power-off``)."""
        p = labctl("power", "on", self.name)
        assert p.returncode == 0, f"lab/labctl power on {self.name} failed:\n{p.stdout}\n{p.stderr}"
        return RawConsole(self.device["connection"])


@pytest.fixture(scope="session", autouse=True)
def lab_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Leases and board health for this test session only (inherited by the pytest runs the tests
    start): a test that fails a board on purpose must not quarantine it for a later session."""
    state = tmp_path_factory.mktemp("lab-state")
    old = os.environ.get("PYTEST_LAVA_STATE")
    os.environ["PYTEST_LAVA_STATE"] = str(state)
    yield state
    if old is None:
        os.environ.pop("PYTEST_LAVA_STATE", None)
    else:
        os.environ["PYTEST_LAVA_STATE"] = old


@pytest.fixture(scope="session", autouse=True)
def no_board_left_running() -> Iterator[None]:
    """The suite leaves no board running that it started: whatever a test or a job left on is
    stopped at the end of the session (by PID file, through labctl), and said so."""
    before = running_boards()
    yield
    left = sorted(running_boards() - before - SERVICES)
    if left:
        print(f"\nlab: boards left running by this session, stopping them: {', '.join(left)}")
        labctl("stop", *left, timeout=120)
    if not before and running_boards():
        labctl("stop", timeout=120)


@pytest.fixture(scope="session")
def lab_built() -> Path:
    """The lab is built (runs `lab/labctl build`, which is cached and prints 'up to date')."""
    p = labctl("build", timeout=BUILD_TIMEOUT)
    assert p.returncode == 0, f"lab/labctl build failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return REPO / "lab" / "build"


SERVICES = {"ser2net", "ttybridge", "http"}


def _board(name: str) -> Any:
    """Start ``name`` for the session; at the end stop it, and ser2net and the image server too
    when this session started them and no other board still uses them."""
    services_before = SERVICES & running_boards()
    p = labctl("start", name)
    assert p.returncode == 0, f"lab/labctl start {name} failed:\n{p.stdout}\n{p.stderr}"
    try:
        yield LabBoard(name, device(name))
    finally:
        labctl("stop", name)
        if not services_before and not running_boards() - SERVICES:
            labctl("stop", timeout=120)


@pytest.fixture(scope="session")
def x86_board(lab_built: Path) -> Any:
    yield from _board("x86-01")


@pytest.fixture(scope="session")
def arm64_board(lab_built: Path) -> Any:
    yield from _board("arm64-01")


class LabTools:
    """The helpers above, as a fixture (test modules cannot import a conftest by name)."""

    repo = REPO
    labctl = staticmethod(labctl)
    devices_left_on = staticmethod(devices_left_on)
    device = staticmethod(device)
    run_command = staticmethod(run_command)
    RawConsole = RawConsole


@pytest.fixture(scope="session")
def lab_tools() -> LabTools:
    return LabTools()


def running_boards() -> set[str]:
    out = labctl("status", "--json", timeout=60)
    return {name for name, p in json.loads(out.stdout)["processes"].items() if p.get("running")}


@pytest.fixture
def stop_new_boards() -> Iterator[None]:
    """Boards a test's pytest run powered on (device power commands) are stopped at its end, by PID
    through labctl; so are ser2net and the image server if the run started them."""
    before = running_boards()
    yield
    started = sorted(running_boards() - before - SERVICES)
    if started:
        labctl("stop", *started, timeout=120)
    if not before:
        labctl("stop", timeout=120)
