"""Console transfer to and from long paths on a real busybox shell (regression: a hang).

busybox ash's line editor keeps 1022 characters of a typed line and silently drops the rest (the
Enter still runs what was kept). The transfer's checksum line used to name the destination path
six times: with a ~120-character ``lava_test_dir`` (pytester's temporary directory of a test with a
long name) that line was cut inside its ``case … esac`` or before its end marker, and the job waited
for the marker until its deadline (tests/plugin/test_case_reports.py hung for 240 s).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from pytest_lava.testdefs.transfer import MAX_LINE, ConsoleTransfer, TransferError
from tests.unit.fake_busybox import BUSYBOX

pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")
EDITOR_KEEPS = 1022  # busybox CONFIG_FEATURE_EDITING_MAX_LEN (1024) less the end of line


def _long_dir(tmp_path: Path, total: int) -> Path:
    """A directory under ``tmp_path`` whose path is about ``total`` characters long."""
    where = tmp_path / "rootfs"
    while len(str(where)) < total - 40:
        where = where / "a_rather_long_directory_name"
    return where


def _record_lines(shell) -> list[str]:  # type: ignore[no-untyped-def]
    """Every line typed into ``shell`` from now on."""
    sent: list[str] = []
    original = shell.console.send

    def send(text, deadline=None):  # type: ignore[no-untyped-def]
        data = text.decode() if isinstance(text, bytes) else text
        sent.extend(data.split("\n"))
        original(text, deadline)

    shell.console.send = send
    return sent


def test_the_shell_really_cuts_long_lines(shell) -> None:  # type: ignore[no-untyped-def]
    """The fact the transfer must live with: what lies beyond 1022 characters never runs."""
    console = shell.console
    console.mark()
    console.sendline(f"echo kept; : {'x' * EDITOR_KEEPS}; echo dropped", 10.0)
    console.expect(re.compile(r"kept\r*\n"), 10.0)
    console.expect(shell.prompt, 10.0)
    assert shell.run("echo alive", 10.0).output == "alive"  # the shell itself is fine
    assert "dropped" not in console.text_since(0)


@pytest.mark.parametrize("base64_tool", [True, False], ids=["base64", "printf-od"])
def test_push_and_pull_with_a_long_path_do_not_hang(shell, tmp_path: Path, base64_tool: bool) -> None:  # type: ignore[no-untyped-def]
    target = _long_dir(tmp_path, 260) / "bin" / "lava-test-case"
    assert len(str(target)) > 200  # 6 x 200 + digests: far over the editor's 1022 before the fix
    data = b"#!/bin/sh\necho 'a helper' \"$@\"\n" * 40
    xfer = ConsoleTransfer(shell)
    xfer._has_base64 = base64_tool
    sent = _record_lines(shell)
    started = time.monotonic()
    xfer.push(str(target), data, 20.0, mode="0755")  # before the fix: TransferError/timeout after 20 s
    assert target.read_bytes() == data and target.stat().st_mode & 0o777 == 0o755
    assert not Path(str(target) + ".xfer").exists()
    assert xfer.pull(str(target), 20.0) == data
    assert max(len(line) for line in sent) <= MAX_LINE < EDITOR_KEEPS
    print(f"push+pull of {len(data)} bytes to a {len(str(target))}-character path: "
          f"{time.monotonic() - started:.2f} s, longest line {max(len(x) for x in sent)}")


def test_push_to_a_bare_name_and_to_the_root_parent(shell, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    xfer = ConsoleTransfer(shell)
    shell.run(f"cd {tmp_path}", 10.0, check=True)
    xfer.push("bare.txt", b"bare\n", 20.0)
    assert (tmp_path / "bare.txt").read_bytes() == b"bare\n"
    assert not (tmp_path / "bare.txt").is_dir()


def test_a_path_too_long_for_any_line_fails_at_once(shell, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = _long_dir(tmp_path, MAX_LINE + 100) / "file"
    xfer = ConsoleTransfer(shell)
    sent = _record_lines(shell)
    with pytest.raises(TransferError, match="too long for a console command line"):
        xfer.push(str(target), b"data", 20.0)
    with pytest.raises(TransferError, match="too long"):
        xfer.pull(str(target), 20.0)
    assert all(str(target) not in line for line in sent)
    assert shell.run("echo alive", 10.0).output == "alive"


@pytest.mark.parametrize("tools", ["tar+gzip", "tar", "none"])
def test_push_many_sends_one_archive_in_one_round_trip(shell, tmp_path: Path, tools: str) -> None:  # type: ignore[no-untyped-def]
    """A test run's files (helpers, scripts, definition) as one archive, checked then unpacked by
    the same command line; file by file where the image has no tar."""
    from pytest_lava.testdefs.transfer import BoardTools

    root = _long_dir(tmp_path, 200)
    files = [(str(root / "bin" / f"helper-{i}"), f"#!/bin/sh\necho helper {i}\n".encode() * 30, "0755")
             for i in range(4)]
    files.append((str(root / "tests" / "0_x" / "testdef.yaml"), b"metadata: {name: x}\n", "0644"))
    xfer = ConsoleTransfer(shell)
    xfer.tools(10.0)
    xfer._tools = BoardTools(base64=True, tar=tools != "none", gzip=tools == "tar+gzip")
    sent = _record_lines(shell)
    xfer.push_many(files, 30.0)
    for path, data, mode in files:
        assert Path(path).read_bytes() == data and Path(path).stat().st_mode & 0o777 == int(mode, 8)
    commands = [line for line in sent if line.startswith("echo LAVA_ST''ART_")]
    assert len(commands) == (1 if tools != "none" else 10)  # none: 2 round trips per file
    assert max(len(line) for line in sent) <= MAX_LINE
    assert not list(Path("/tmp").glob(".lava-xfer.*"))


def test_push_many_refuses_parent_references(shell) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TransferError, match="'..'"):
        ConsoleTransfer(shell).push_many([("/lava/../etc/passwd", b"x", "0644")], 10.0)
