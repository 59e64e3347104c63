"""The core on a real board: the lab's x86_64 QEMU board (Debian kernel, busybox shell, console on
TCP behind ser2net, power by `lab/labctl power …` commands from its device file).

Power on by command, reach the prompt, run commands with their exit statuses; a hanging command
fails at its timeout (± 1 s); a kernel panic fails within 1 s with the panic text; the job
watchdog ends a step blocked with a far deadline of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_lava.boards.board import Board
from pytest_lava.console.engine import ConsoleClosed, ConsoleDeath, ConsoleTimeout
from pytest_lava.console.shell import CommandFailed, ShellSession
from pytest_lava.core.deadline import Deadline, Watchdog
from pytest_lava.devices.directory import load_devices

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
BOOT_TIMEOUT = 240.0  # TCG on 2 shared cores: ~6 s measured, generous on purpose


def boot(board: Board, job: Deadline) -> ShellSession:
    """Power-cycle by the device's command and reach the shell prompt."""
    board.power.reset(job.child(board.device.power_timeout * 3, "power reset"))
    board.connect(job.child(60, "connect"))
    shell = board.shell()
    shell.wait_for_prompt(job.child(BOOT_TIMEOUT, "wait for prompt"))
    return shell


@pytest.fixture(scope="module")
def lab_board(x86_board: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    device = load_devices(REPO / "devices").devices[x86_board.name]
    board = Board(device, log_dir=tmp_path_factory.mktemp("console-e2e"), cwd=REPO)
    try:
        yield board
    finally:
        board.close()


@pytest.fixture
def shell(lab_board: Board) -> ShellSession:
    """A shell at the prompt; boots the board if it is not answering (first use, after a panic)."""
    if lab_board.connected:
        sh = lab_board.shell()
        try:
            sh.wait_for_prompt(Deadline(10, "prompt check"), send_newline=True)
            return sh
        except (ConsoleTimeout, ConsoleClosed, ConsoleDeath):
            pass
    return boot(lab_board, Deadline(BOOT_TIMEOUT + 120, "job"))


def test_power_on_prompt_and_exit_statuses(lab_board: Board) -> None:
    job = Deadline(BOOT_TIMEOUT + 120, "job")
    sh = boot(lab_board, job)
    assert sh.run("uname -m", 60).output == "x86_64"
    assert sh.run("true", 60).status == 0
    assert sh.run("false", 60).status == 1
    assert sh.run("sh -c 'exit 7'", 60).status == 7
    r = sh.run("echo out; ls /nonexistent-path", 60)
    assert r.status != 0 and r.output.startswith("out\n") and "nonexistent-path" in r.output
    with pytest.raises(CommandFailed, match="exit status 3"):
        sh.run("sh -c 'exit 3'", 60, check=True)
    assert lab_board.power.history[0][0] == "reset" and lab_board.power.history[0][2] == 0
    log = lab_board.log_path.read_text()
    assert "power reset" in log and "Linux version" in log


def test_hanging_command_fails_at_its_timeout(shell: ShellSession) -> None:
    t0 = time.monotonic()
    with pytest.raises(ConsoleTimeout) as info:
        shell.run("sleep 600", Deadline(120, "job").child(5, "lava_test_shell"))
    elapsed = time.monotonic() - t0
    assert 4.0 <= elapsed <= 6.0, elapsed
    assert "job/lava_test_shell" in str(info.value)
    # Ctrl-C was sent: the shell answers again
    shell.wait_for_prompt(20, send_newline=True)
    assert shell.run("echo alive", 30).output == "alive"


def test_job_watchdog_ends_a_blocked_step(lab_board: Board, shell: ShellSession) -> None:
    job = Deadline(4, "job")
    dog = Watchdog(job)
    lab_board.guard(dog)
    t0 = time.monotonic()
    with dog, pytest.raises(ConsoleClosed, match="job deadline passed"):
        # the step's own deadline (unrelated to the job's) would let it wait 10 minutes
        shell.run("sleep 600", Deadline(600, "standalone step"))
    elapsed = time.monotonic() - t0
    assert dog.fired
    assert 3.0 <= elapsed <= 6.0, elapsed
    assert not lab_board.connected


def test_panic_fails_within_one_second(lab_board: Board, shell: ShellSession) -> None:
    job = Deadline(120, "job")
    t0 = time.monotonic()
    with pytest.raises(ConsoleDeath) as info:
        shell.run("echo c > /proc/sysrq-trigger", job.child(60, "lava_test_shell"))
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, elapsed
    text = str(info.value)
    assert "Kernel panic - not syncing: sysrq triggered crash" in text
    assert "job/lava_test_shell" in text
    assert str(lab_board.log_path) in text
    # leave the board usable: power-cycle by command, the console reconnects by itself
    sh = boot(lab_board, Deadline(BOOT_TIMEOUT + 120, "recover"))
    assert sh.run("echo recovered", 60).output == "recovered"
    assert lab_board.console.stats.reconnects >= 1
