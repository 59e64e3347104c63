"""Big writes to a console command on a pty (one of the suspects of the case-report hang, ruled out):
while the console's reader drains the pty, a write much larger than the pty's buffers completes;
with nobody reading, a write gives up at its timeout instead of blocking for ever."""

from __future__ import annotations

import shutil

import pytest
from fakes import make_console

from pytest_lava.console.pty import PtyConnection
from pytest_lava.core.deadline import Deadline
from pytest_lava.core.errors import InfrastructureError

pytestmark = pytest.mark.skipif(shutil.which("cat") is None, reason="needs cat")
BIG = (b"0123456789abcdef" * 4 + b"\n") * 16384  # ~1 MiB, far over the pty's 4 KiB buffers


def test_a_big_write_completes_while_the_board_echoes_it() -> None:
    conn = PtyConnection(["cat"])  # raw pty: cat echoes every byte back, as a board echoes input
    conn.connect(Deadline(5, "connect"))
    with make_console(conn) as con:  # type: ignore[arg-type]
        con.send(BIG + b"THE-END\n", 60.0)
        con.expect("THE-END", 60.0)
        assert con.received >= len(BIG)


def test_a_write_nobody_reads_times_out() -> None:
    conn = PtyConnection(["sleep", "30"])  # never reads its terminal
    conn.connect(Deadline(5, "connect"))
    try:
        with pytest.raises(InfrastructureError, match="console write timed out"):
            conn.write(BIG, 1.0)
    finally:
        conn.close()
