"""The simulated board (a fake): its console over a raw socket, its shell, its power control."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_lava.testing import SimLab
from pytest_lava.testing.simboard import STATE_FILE, send_power
from pytest_lava.testing.simshell import Logout, Reboot, SimShell

REPO = Path(__file__).resolve().parents[2]
PROMPT = b"root@master:~# "


class Board:
    def __init__(self, state_dir: Path, *extra: str) -> None:
        self.state_dir = state_dir
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest_lava.testing.simboard", "serve", "--port", "0", "--name", "sim-t",
             "--state-dir", str(state_dir), "--boot-time", "0.3", *extra],
            stdout=subprocess.DEVNULL, env=env,
        )
        end = time.monotonic() + 20
        while not (state_dir / STATE_FILE).exists():
            assert time.monotonic() < end and self.proc.poll() is None, "simboard did not start"
            time.sleep(0.02)
        self.port = json.loads((state_dir / STATE_FILE).read_text())["port"]

    def connect(self) -> Console:
        return Console(socket.create_connection(("127.0.0.1", self.port), timeout=5))

    def power(self, command: str) -> str:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        out = subprocess.run(
            [sys.executable, "-m", "pytest_lava.testing.simboard", "power", command,
             "--state-dir", str(self.state_dir)],
            capture_output=True, text=True, timeout=30, env=env, check=True,
        )
        return out.stdout.strip()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


class Console:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(0.1)
        self.closed = False

    def read_until(self, pattern: bytes, timeout: float = 15.0) -> bytes:
        buf = b""
        end = time.monotonic() + timeout
        while pattern not in buf:
            assert time.monotonic() < end, f"no {pattern!r} in {buf[-500:]!r}"
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            if not data:
                self.closed = True
                raise ConnectionError(f"console closed; got {buf[-300:]!r}")
            buf += data
        return buf

    def quiet_for(self, seconds: float) -> bytes:
        buf, end = b"", time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                buf += self.sock.recv(4096)
            except TimeoutError:
                pass
        return buf

    def run(self, command: str) -> tuple[str, int]:
        """What a harness does: bracket the command with unique markers, read back ``$?``."""
        tag = f"{time.monotonic_ns()}"
        self.sock.sendall(f'echo "ST""ART-{tag}"; {command}; echo "EN""D-{tag} $?"\n'.encode())
        out = self.read_until(PROMPT).decode().replace("\r\n", "\n")
        body = out.split(f"START-{tag}\n", 1)[1]
        text, _, rest = body.partition(f"END-{tag} ")
        return text, int(rest.split()[0])

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def board(tmp_path: Path) -> Iterator[Board]:
    b = Board(tmp_path / "sim")
    yield b
    b.stop()


def test_console_boots_to_a_prompt_and_runs_commands(board: Board) -> None:
    con = board.connect()
    con.read_until(PROMPT)
    con.sock.sendall(b"\n")
    con.read_until(PROMPT)
    assert con.run("echo hello world") == ("hello world\n", 0)
    assert con.run("false") == ("", 1)
    assert con.run("nosuchcommand") == ("sh: 1: nosuchcommand: not found\n", 127)
    assert con.run("false; echo $?") == ("1\n", 0)
    assert con.run("echo data > /tmp/f && cat /tmp/f") == ("data\n", 0)
    assert con.run("uname -n") == ("master\n", 0)
    # the input is echoed as a tty does
    con.sock.sendall(b"echo one\r\n")
    assert con.read_until(PROMPT) == b"echo one\r\none\r\n" + PROMPT
    con.close()


def test_power_reset_keeps_the_connection_and_shows_a_new_boot(board: Board) -> None:
    con = board.connect()
    con.read_until(PROMPT)
    assert board.power("status") == "on"
    assert board.power("reset") == "on"
    log = con.read_until(PROMPT)
    assert b"U-Boot" in log and b"Linux version" in log and log.count(b"\n") > 40
    assert board.power("off") == "off"
    con.sock.sendall(b"echo anyone\n")
    assert con.quiet_for(0.5) == b""  # an unpowered board says nothing
    assert board.power("on") == "on"
    con.read_until(PROMPT)
    assert con.run("echo back") == ("back\n", 0)


def test_drop_mode_power_reset_drops_and_restores_the_console_at_the_same_port(tmp_path: Path) -> None:
    board = Board(tmp_path / "sim", "--on-reset", "drop")
    try:
        con = board.connect()
        con.read_until(PROMPT)
        board.power("off")
        with pytest.raises(ConnectionError):
            con.read_until(PROMPT, timeout=5)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", board.port), timeout=5)
        board.power("on")
        con = board.connect()  # same port
        con.read_until(PROMPT)
        assert con.run("echo again") == ("again\n", 0)
        board.power("reset")
        with pytest.raises(ConnectionError):
            con.read_until(PROMPT, timeout=5)
        con = board.connect()
        con.read_until(PROMPT)
    finally:
        board.stop()


def test_interrupting_autoboot_gives_u_boot_and_can_boot_the_test_image(tmp_path: Path) -> None:
    # the countdown ticks 5 % of the boot time: 0.3 s each here, so a loaded machine still has
    # time to send its key (with the suite's 0.3 s boots the window was 30 ms: flaky under load)
    board = Board(tmp_path / "sim", "--off", "--boot-time", "6")
    try:
        con = board.connect()
        board.power("on")
        con.read_until(b"Hit any key to stop autoboot")
        con.sock.sendall(b" ")
        con.read_until(b"=> ")
        con.sock.sendall(b"setenv sim_image linaro\n")
        con.read_until(b"=> ")
        con.sock.sendall(b"frobnicate\n")
        assert b"Unknown command 'frobnicate'" in con.read_until(b"=> ")
        con.sock.sendall(b"boot\n")
        log = con.read_until(b"root@linaro:~# ")
        assert b"Starting kernel" in log
    finally:
        board.stop()


def test_reboot_from_the_shell_boots_again(board: Board) -> None:
    con = board.connect()
    con.read_until(PROMPT)
    con.sock.sendall(b"reboot\n")
    log = con.read_until(PROMPT)
    assert b"reboot: Restarting system" in log and b"Linux version" in log


def test_power_cli_without_a_board_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        send_power(tmp_path, "reset")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "pytest_lava.testing.simboard", "power", "reset", "--state-dir",
                          str(tmp_path)], capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 1 and "simboard power reset" in out.stderr


# -- the shell alone (no server) -----------------------------------------------------------


@pytest.fixture
def shell(tmp_path: Path) -> tuple[SimShell, list[str]]:
    out: list[str] = []
    return SimShell(tmp_path / "root", "master", out.append, lambda s: None), out


def run(shell: tuple[SimShell, list[str]], line: str) -> tuple[str, int]:
    sh, out = shell
    out.clear()
    rc = sh.run_line(line)
    return "".join(out), rc


def test_shell_words_quotes_and_variables(shell: tuple[SimShell, list[str]]) -> None:
    assert run(shell, "X=1; export Y='a b'; echo \"$X-${Y}\" '$X' \\$X") == ("1-a b $X $X\n", 0)
    assert run(shell, "echo 'a;b' && false || echo c # comment; echo d") == ("a;b\nc\n", 0)
    assert run(shell, "true && echo yes; false && echo no; echo $?") == ("yes\n1\n", 0)
    assert run(shell, "echo 'open")[1] == 2
    assert run(shell, "echo a | cat")[1] == 2
    assert run(shell, "printf '%s:%d\\n' x 3 y 4") == ("x:3\ny:4\n", 0)
    assert run(shell, "[ 3 -gt 2 ] && test -n x && [ ! a = b ]")[1] == 0


def test_shell_files_stay_in_the_sandbox(shell: tuple[SimShell, list[str]], tmp_path: Path) -> None:
    assert run(shell, "echo secret > ../../../../../../escape.txt")[1] == 0
    assert (tmp_path / "root" / "escape.txt").read_text() == "secret\n"
    assert run(shell, "cat /etc/hostname") == ("master\n", 0)
    assert run(shell, "cat /etc/passwd")[1] == 1
    assert run(shell, "mkdir -p /opt/x && cd /opt/x && pwd && echo a >> f && echo b >> f && cat f") == (
        "/opt/x\na\nb\n", 0)
    assert run(shell, "printf 'echo from script\\nfalse\\n' > /s.sh; sh /s.sh") == ("from script\n", 1)


def test_shell_control_commands(shell: tuple[SimShell, list[str]]) -> None:
    with pytest.raises(Reboot):
        run(shell, "sync; reboot")
    with pytest.raises(Logout):
        run(shell, "exit")
    assert run(shell, "dmesg -n1; stty -echo") == ("", 0)


# -- with the harness's own plumbing -------------------------------------------------------


def test_simlab_devices_drive_the_harness_console_shell_and_power(tmp_path: Path) -> None:
    from pytest_lava.console.connections import open_connection
    from pytest_lava.console.engine import Console as HarnessConsole
    from pytest_lava.console.shell import ShellSession
    from pytest_lava.core.deadline import Deadline
    from pytest_lava.devices.directory import load_devices
    from pytest_lava.devices.power import PowerControl

    with SimLab(2, tmp_path, boot_time=0.3) as lab:
        lab.write_devices(tmp_path / "devices", tags=["fake"])
        devices = load_devices(tmp_path / "devices").devices
        assert sorted(devices) == ["sim-01", "sim-02"]
        for name, device in devices.items():
            assert device.device_type == "sim" and device.tags == ["fake"] and device.board_type == "master"
            job = Deadline(60, f"job-{name}")
            console = HarnessConsole(open_connection(device, job), name=name)
            try:
                PowerControl(device).reset(job.child(20, "power"))
                # as MasterBoard does: the kernel of *this* boot first, so a prompt the board printed
                # before the reset is not taken for the new one (typing into the next autoboot
                # countdown would stop U-Boot and lose the command's first byte)
                console.expect(device.image_boot_msg, job.child(30, "kernel start"))
                shell = ShellSession(console, device.master_str)
                shell.wait_for_prompt(job.child(30, "boot"))
                result = shell.run("uname -n; false", job.child(10, "run"))
                assert (result.output, result.status) == ("master", 1)
            finally:
                console.close()
    assert all(board.proc.poll() is not None for board in lab.boards)
