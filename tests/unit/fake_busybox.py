"""A FAKE test image for unit and pytester tests: a real ``busybox sh -i`` on a pty, on the host.

Nothing boots: "booting the test image" starts a fresh busybox shell whose ``PATH`` starts with a
directory of busybox applet links (so ``ps``, ``ip``, ``awk``, ``dd`` are busybox's) and whose
``/lava`` is a temporary directory (``lava_test_dir`` of the device). It runs the real device-side
scripts, so the signals, the console transfer and live parsing are exercised for real.

``FakeBusyboxBoard`` is a board type for the plugin; register it with
a conftest.py hook: ``def pytest_lava_board_type(name): return FakeBusyboxBoard if name == "fake-busybox" else None``.
Device keys (``extra``): ``lava_test_dir``, ``fake_bin`` (applet dir), ``fake_isig`` (true: the tty
turns Ctrl-C into SIGINT, so a hung test can be interrupted; false: it must be "rebooted").
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from pytest_lava.boards import BoardDriver, BoardState
from pytest_lava.console.connections import PtyConnection
from pytest_lava.console.engine import Console
from pytest_lava.console.shell import ShellSession
from pytest_lava.core.deadline import Deadline
from pytest_lava.devices.device import Device

BUSYBOX = shutil.which("busybox")
PROMPT = "root@linaro:~# "
PROMPT_RE = r"root@linaro:~# "
APPLETS = ("sh", "ps", "ip", "ping", "awk", "dd", "grep", "sed", "cut", "wc", "ls", "cat", "cp", "mkdir", "rm",
           "tr", "basename", "head", "sleep", "uname", "base64", "sha256sum", "md5sum", "od", "mv", "chmod",
           "dmesg", "printf", "test", "true", "false", "echo", "env", "stty", "wget", "tar", "gzip", "setsid",
           "dirname", "kill")


def make_applet_dir(where: Path, overrides: dict[str, str] | None = None) -> Path:
    """A bin directory of busybox applet links, plus ``overrides`` (name -> script text)."""
    assert BUSYBOX, "busybox is needed for these tests (apt-get install busybox-static)"
    where.mkdir(parents=True, exist_ok=True)
    for name in APPLETS:
        link = where / name
        if not link.exists():
            link.symlink_to(BUSYBOX)
    for name, text in (overrides or {}).items():
        path = where / name
        if path.is_symlink() or path.exists():
            path.unlink()
        path.write_text(text)
        path.chmod(0o755)
    return where


def shell_argv(bindir: Path, home: Path) -> list[str]:
    """``setsid -c`` makes the pty the shell's controlling terminal (so Ctrl-C can signal); ``ENV``
    names a file of shell functions that stand in for commands (busybox runs its own applets
    before anything on PATH)."""
    bb = BUSYBOX or "busybox"
    return [bb, "env", "-i", f"PS1={PROMPT}", f"PATH={bindir}", f"HOME={home}", f"ENV={home}/.fakerc",
            "TERM=dumb", bb, "setsid", "-c", bb, "sh", "-i"]


def start_shell(bindir: Path, home: Path, *, isig: bool = True, timeout: float = 15.0,
                name: str = "fake") -> ShellSession:
    """Start a fresh fake test image shell and wait for its prompt."""
    conn = PtyConnection(shell_argv(bindir, home), name=name)
    conn.connect(Deadline(timeout, "start fake shell"))
    console = Console(conn, name=name, poll_interval=0.05)  # type: ignore[arg-type]
    shell = ShellSession(console, PROMPT_RE)
    shell.wait_for_prompt(timeout, send_newline=True)
    if isig:
        shell.run("stty isig", timeout)
    return shell


def stop(shell: ShellSession) -> None:
    """End a fake shell quickly: ``exit`` (an interactive sh ignores SIGTERM), then close."""
    try:
        if not shell.console.closed:
            shell.console.sendline("exit", 2.0)
            shell.console.expect(["exit"], 1.0)
    except Exception:  # noqa: S110 - best effort; close() kills it anyway
        pass
    shell.console.close("test over")


def fake_device(tmp: Path, *, name: str = "fake01", isig: bool = True,
                overrides: dict[str, str] | None = None, functions: str = "") -> Device:
    """The fake's device. ``overrides``: scripts put on PATH; ``functions``: shell code read by
    every fake shell at start (e.g. ``mount() { ...; }`` to stand in for an applet)."""
    bindir = make_applet_dir(tmp / "bin", overrides)
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    (home / ".fakerc").write_text(functions)
    return Device(name=name, device_type="fake", board_type="fake-busybox",
                  connection_command=shlex.join(shell_argv(bindir, home)), tester_str=PROMPT_RE,
                  master_str=PROMPT_RE, death_strings=["Kernel panic"], host_address="127.0.0.1",
                  extra={"lava_test_dir": str(tmp / "rootfs" / "lava"), "fake_isig": isig})


class FakeBusyboxBoard(BoardDriver):
    """Board type of the fake: ``test_shell`` 'boots' (starts) a busybox shell when none is up."""

    name = "fake-busybox"

    def __init__(self) -> None:
        super().__init__()
        self.shell: ShellSession | None = None
        self.boots = 0

    def test_shell(self, ctx):  # type: ignore[no-untyped-def]
        board = ctx.board
        shell = self.shell
        if self.state is not BoardState.TEST or shell is None or not board.connected:
            board.close_console("reboot (fake)")
            board.connect(Deadline(15.0, "fake boot", ctx.run.deadline))
            shell = board.shell(ctx.device.tester_str, login=False)
            shell.wait_for_prompt(Deadline(15.0, "fake prompt", ctx.run.deadline), send_newline=True)
            if ctx.device.extra.get("fake_isig", True):
                shell.run("stty isig", 10.0)
            self.state = BoardState.TEST
            self.shell = shell
            self.boots += 1
            ctx.record("boot_image", "pass")
        return shell

    def power_off(self, ctx) -> None:  # type: ignore[no-untyped-def]
        self.state = BoardState.OFF
        ctx.board.close_console("powered off (fake)")

    def finish(self, run) -> None:  # type: ignore[no-untyped-def]
        shell, self.shell = self.shell, None
        if shell is not None:
            stop(shell)
