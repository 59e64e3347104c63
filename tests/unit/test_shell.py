"""Shell sessions on a fake board shell: prompt, login, markers, exit status, kernel noise, panic."""

from __future__ import annotations

import time

import pytest
from fakes import ScriptedConnection, ShellResponder, make_console

from pytest_lava.console.engine import ConsoleDeath, ConsoleTimeout
from pytest_lava.console.shell import CommandFailed, LoginFailed, ShellSession
from pytest_lava.core.deadline import Deadline
from pytest_lava.core.errors import InfrastructureError

PROMPT = r"root@fake:\S*# "


def board(script=(), **kw):  # type: ignore[no-untyped-def]
    responder = ShellResponder(**kw)
    conn = ScriptedConnection(script, on_write=responder)
    return conn, responder, make_console(conn)


def test_run_returns_output_and_status() -> None:
    conn, _, con = board([(0, b"root@fake:~# ")])
    with con:
        sh = ShellSession(con, PROMPT)
        sh.wait_for_prompt(5)
        r = sh.run("echo hello; echo world", 10)
        assert r.output == "hello\nworld" and r.status == 0 and r.ok
        r = sh.run("exit_code() { return 3; }; exit_code", 10)
        assert r.status == 3 and r.output == ""
        r = sh.run("printf 'no newline'", 10)
        assert r.output == "no newline"
        r = sh.run("false", 10)
        assert r.status == 1


def test_check_raises_command_failed_with_output_tail() -> None:
    _, _, con = board([(0, b"root@fake:~# ")])
    with con:
        sh = ShellSession(con, PROMPT)
        sh.wait_for_prompt(5)
        with pytest.raises(CommandFailed) as info:
            sh.run("echo oops-output; exit_status() { return 42; }; exit_status", 10, check=True)
    err = info.value
    assert isinstance(err, InfrastructureError)
    assert err.result.status == 42
    assert "exit status 42" in str(err) and "oops-output" in str(err) and "exit_status" in str(err)


def test_echoed_command_line_does_not_fool_the_markers() -> None:
    _, responder, con = board([(0, b"root@fake:~# ")])
    with con:
        sh = ShellSession(con, PROMPT)
        sh.wait_for_prompt(5)
        r = sh.run("echo LAVA_END_fake 0", 10)
        assert r.output == "LAVA_END_fake 0"
    assert any("LAVA_ST''ART" in line for line in responder.lines)


def test_prompt_broken_by_a_kernel_line_is_recovered() -> None:
    """A kernel message lands in the middle of the prompt: a newline brings a clean prompt."""
    script = [(0, b"Run /init\r\nroot@fa"), (0.02, b"[    6.1] random: crng init done\r\nke:~# ")]
    conn, _, con = board(script)
    with con:
        sh = ShellSession(con, PROMPT, probe_interval=0.3)
        t0 = time.monotonic()
        sh.wait_for_prompt(5)
        assert time.monotonic() - t0 < 3
        assert conn.written == b"\n"  # it nudged once
        assert sh.run("echo ok", 5).output == "ok"


def test_kernel_lines_inside_command_output_do_not_break_status() -> None:
    _, responder, con = board([(0, b"root@fake:~# ")])
    with con:
        sh = ShellSession(con, PROMPT)
        sh.wait_for_prompt(5)
        responder.inject = [b"[   20.0] usb 1-1: new device\r\n"]
        r = sh.run("echo payload; false", 5)
        assert r.status == 1
        assert "payload" in r.output


def test_login_user_and_password() -> None:
    conn, _, con = board(
        [(0, b"\r\nfake login: ")],
        canned={"root": b"Password: ", "secret": b""},
    )
    with con:
        sh = ShellSession(con, PROMPT, login_prompt=r"login:", username="root", password="secret")
        sh.wait_for_prompt(5)
    assert conn.written == b"root\nsecret\n"


def test_login_without_username_is_a_clear_error() -> None:
    _, _, con = board([(0, b"fake login: ")])
    with con, pytest.raises(LoginFailed, match="no username"):
        ShellSession(con, PROMPT, login_prompt="login:").wait_for_prompt(5)


def test_panic_mid_command_fails_at_once() -> None:
    _, responder, con = board([(0, b"root@fake:~# ")])
    with con:
        sh = ShellSession(con, PROMPT)
        sh.wait_for_prompt(5)
        responder.hang = True
        responder.inject = [b"[   30.1] Kernel panic - not syncing: Attempted to kill init!\r\n"]
        t0 = time.monotonic()
        with pytest.raises(ConsoleDeath) as info:
            sh.run("sleep 100", 60)
        assert time.monotonic() - t0 < 1.5
    assert "Attempted to kill init" in str(info.value)


def test_hanging_command_times_out_and_is_interrupted() -> None:
    conn, responder, con = board([(0, b"root@fake:~# ")])
    with con:
        sh = ShellSession(con, PROMPT)
        sh.wait_for_prompt(5)
        responder.hang = True
        job = Deadline(60, "job").child(None, "lava_test_shell")
        t0 = time.monotonic()
        with pytest.raises(ConsoleTimeout) as info:
            sh.run("sleep 100", job.child(0.5, "step"))
        assert 0.45 < time.monotonic() - t0 < 1.5
    assert "job/lava_test_shell/step" in str(info.value)
    assert conn.writes[-1] == b"\x03"


def test_prompt_timeout_names_prompt_and_tail() -> None:
    conn = ScriptedConnection([(0, b"U-Boot 2023.01\r\n")])  # nothing answers the newlines
    with make_console(conn) as con, pytest.raises(ConsoleTimeout) as info:
        ShellSession(con, PROMPT, probe_interval=0.2).wait_for_prompt(Deadline(0.5, "boot"))
    assert "U-Boot 2023.01" in str(info.value)
    assert "boot/wait for prompt" in str(info.value)
    assert conn.written.count(b"\n") >= 1


def test_a_command_line_too_long_for_the_board_shell_fails_at_once() -> None:
    from pytest_lava.console.shell import CommandTooLong, ShellSession

    class NoConsole:
        name = "never-used"

    session = ShellSession(NoConsole(), "# ")  # type: ignore[arg-type]
    with pytest.raises(CommandTooLong, match="longer than a board shell accepts"):
        session.run("echo " + "x" * 1200, 5.0)
