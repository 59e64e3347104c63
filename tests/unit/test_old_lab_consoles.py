"""What an old lab brings along, on fakes: a telnet console in line mode (nothing is sent before a
line ends, then the line with CR LF, which U-Boot reads as two lines), the device's line ending,
an RFC 2217 console (pyserial's own RFC 2217 server on a loopback port), the end-of-job power
setting, and the INI spellings of the new device settings."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import serial
import serial.rfc2217
from test_boot_fake import BOOT_CMDS, FakeBoard, make_ctx

from pytest_lava.boards.board import Board
from pytest_lava.boards.driver import BoardState
from pytest_lava.boards.master import MasterBoard
from pytest_lava.console.connections import SerialConnection
from pytest_lava.core.deadline import Deadline
from pytest_lava.core.errors import ConfigurationError
from pytest_lava.devices.device import Device
from pytest_lava.devices.directory import load_devices

BUSY = 0.25  # seconds a `load` keeps the fake U-Boot busy; a line typed meanwhile is lost (UART)


class LineModeUBoot(FakeBoard):
    """The fake U-Boot behind ``telnet`` in line mode: input is held back until a line ends and then
    arrives with CR LF; U-Boot answers the CR and the LF each with a prompt; a line that arrives
    while a command runs is lost."""

    def __init__(self) -> None:
        super().__init__()
        self.held = b""
        self.dropped: list[bytes] = []
        self.busy_until = 0.0

    def __call__(self, data: bytes, conn) -> None:  # type: ignore[no-untyped-def]
        if self.state not in ("countdown", "uboot"):
            return super().__call__(data, conn)
        self.held += data
        while b"\n" in self.held:
            line, _, self.held = self.held.partition(b"\n")
            self._line(line.rstrip(b"\r"), conn)

    def _line(self, line: bytes, conn) -> None:  # type: ignore[no-untyped-def]
        if self.state == "countdown":
            self.state = "uboot"  # the first byte stopped it; CR and LF: two empty lines
            conn.feed(b"\r\n=> ")
            conn.feed(b"\r\n=> ", 0.05)
            return
        if time.monotonic() < self.busy_until:
            self.dropped.append(line)
            return
        self.uboot_lines.append(line.decode())
        conn.feed(line + b"\r\n")
        if line.startswith(b"setenv bootargs"):
            self.bootargs = line.decode()
        if line.startswith(b"booti"):
            self._kernel("test" if "vda5" in self.bootargs else "master")
            return
        busy = BUSY if line.startswith(b"load") else 0.0
        self.busy_until = time.monotonic() + busy
        conn.feed(b"=> ", busy)
        conn.feed(b"\r\n=> ", 0.05)  # the LF after the CR: an empty line, one more prompt


def test_boot_cmds_through_a_line_mode_telnet_console(tmp_path: Path) -> None:
    fb = LineModeUBoot()
    ctx = make_ctx(tmp_path, fb)
    with ctx.board:
        ctx.board_type.boot_master(ctx)
        ctx.board_type.boot_test(ctx, [])
    assert ctx.driver.state is BoardState.TEST and fb.state == "test"
    assert fb.uboot_lines == BOOT_CMDS and fb.dropped == []  # no command answered a stale prompt


def test_the_interrupt_is_a_line(tmp_path: Path) -> None:
    fb = FakeBoard()
    ctx = make_ctx(tmp_path, fb, interrupt_boot_command="")  # the old dispatcher's default
    with ctx.board:
        ctx.board_type.boot_master(ctx)
        ctx.board_type.boot_test(ctx, [])
    sent = b"".join(fb.conn.writes)
    assert b"reboot\n\n" + BOOT_CMDS[0].encode() + b"\n" in sent
    assert fb.uboot_lines == BOOT_CMDS


@pytest.mark.parametrize(("ending", "chars"), [("lf", "\n"), ("crlf", "\r\n"), ("cr", "\r")])
def test_line_ending_is_what_every_line_ends_with(tmp_path: Path, ending: str, chars: str) -> None:
    fb = FakeBoard()
    dev = Device(name="b", device_type="t", line_ending=ending)
    with Board(dev, log_dir=tmp_path) as board:
        console = board.attach(fb.conn)  # type: ignore[arg-type]
        console.sendline("version", 5)
    assert fb.conn.writes == [b"version" + chars.encode()]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_ini_line_ending_and_end_of_job(tmp_path: Path) -> None:
    _write(tmp_path / "device-types" / "t.conf", "client_type = master\nline_ending = crlf\n")
    _write(tmp_path / "devices" / "a.conf", "device_type = t\nend_of_job = leave-on\n")
    dev = load_devices(tmp_path).devices["a"]
    assert (dev.line_ending, dev.newline, dev.end_of_job) == ("crlf", "\r\n", "leave-on")
    _write(tmp_path / "devices" / "a.conf", "device_type = t\nend_of_job = off\nline_ending = \\r\\n\n")
    with pytest.raises(ConfigurationError) as err:
        load_devices(tmp_path)
    text = str(err.value)
    assert "a.conf" in text and "end_of_job" in text and "'off' is not one of: power-off, leave-on" in text
    assert "line_ending" in text and "lf, crlf, cr" in text


def test_old_lab_device_directory_loads() -> None:
    devices = load_devices(Path(__file__).resolve().parents[2] / "devices" / "old-lab").devices
    assert set(devices) == {"arm64-01", "arm64-01-telnet", "arm64-01-rfc2217", "arm64-01-telnet-raw"}
    for dev in devices.values():
        assert dev.boot_cmds[0] == "setenv bootargs 'console=ttyAMA0 root=/dev/vda5 rootwait panic=10'"
        assert dev.interrupt_boot_command == "" and dev.bootloader_prompt == "=>"
        assert dev.power_off_command == "../lab/labctl power off arm64-01" and dev.end_of_job == "power-off"


# -- end of job ----------------------------------------------------------------------------------

class Power:
    def __init__(self, has_off: bool = True, fails: bool = False) -> None:
        self.has_off, self.fails, self.offs = has_off, fails, 0

    def available(self, what: str) -> bool:
        return self.has_off

    def off(self, deadline: object = None) -> None:
        from pytest_lava.devices.power import PowerError

        self.offs += 1
        if self.fails:
            raise PowerError("pdu says no")


def _run(tmp_path: Path, power: Power, **kw: object) -> SimpleNamespace:
    dev = Device(name="b", device_type="t", power_off_command="pdu off b", **kw)  # type: ignore[arg-type]
    board = Board(dev, log_dir=tmp_path)
    board.power = power  # type: ignore[assignment]
    notes: list[str] = []
    return SimpleNamespace(device=dev, board=board, note=notes.append, notes=notes)


@pytest.mark.parametrize(("setting", "power", "offs", "note"), [
    ({}, Power(), 1, "powered off at the end of the job"),
    ({"end_of_job": "leave-on"}, Power(), 0, "left on at the end of the job"),
    ({}, Power(has_off=False), 0, "there is no power_off_command; the board stays on"),
    ({}, Power(fails=True), 1, "powering off at the end of the job failed: pdu says no"),
])
def test_end_of_job(tmp_path: Path, setting: dict[str, str], power: Power, offs: int, note: str) -> None:
    run = _run(tmp_path, power, **setting)
    driver = MasterBoard()
    driver.state = BoardState.TEST
    driver.finish(run)
    assert power.offs == offs and any(note in n for n in run.notes), run.notes
    assert (driver.state is BoardState.TEST) == (offs == 0)


# -- RFC 2217 ------------------------------------------------------------------------------------

class Rfc2217Server:
    """pyserial's RFC 2217 server (PortManager) for one client, over ``loop://``: what is written
    comes back, like a console that echoes."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(0.05)
        port = serial.serial_for_url("loop://", timeout=0.05)
        manager = serial.rfc2217.PortManager(port, SimpleNamespace(write=conn.sendall))
        while not self.stop.is_set():
            try:
                data = conn.recv(4096)
                if not data:
                    break
                port.write(b"".join(manager.filter(data)))
            except TimeoutError:
                pass
            back = port.read(port.in_waiting or 1)
            if back:
                conn.sendall(b"".join(manager.escape(back)))
        conn.close()
        port.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


def test_rfc2217_console_reads_and_writes() -> None:
    server = Rfc2217Server()
    conn = SerialConnection(f"rfc2217://127.0.0.1:{server.port}", name="b console")
    try:
        conn.connect(Deadline(10, "connect"))  # write_timeout is not set: pyserial refuses it here
        conn.write(b"setenv x 1\n", 5)
        got, end = b"", time.monotonic() + 5
        while b"\n" not in got and time.monotonic() < end:
            got += conn.read(4096, 0.5)
        assert got == b"setenv x 1\n"
        t0 = time.monotonic()
        assert conn.read(4096, 0.3) == b""  # nothing there: back after the timeout, not before
        assert 0.25 <= time.monotonic() - t0 < 2
    finally:
        conn.close()
        server.close()
