"""The board pool: matching, leases across processes, waiting, quarantine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path

import pytest

from pytest_lava.core.deadline import Deadline
from pytest_lava.devices.device import Device
from pytest_lava.devices.health import BoardHealth
from pytest_lava.devices.pool import BoardPool, Lease, NoBoardAvailable, NoMatchingBoard

REPO = Path(__file__).resolve().parents[2]


def lab() -> dict[str, Device]:
    devices = [
        Device(name="x86-01", device_type="x86", tags=["usb"]),
        Device(name="x86-02", device_type="x86", tags=["usb", "wifi"]),
        Device(name="x86-03", device_type="x86"),
        Device(name="arm-01", device_type="arm64"),
    ]
    return {d.name: d for d in devices}


@pytest.fixture
def pool(tmp_path: Path) -> BoardPool:
    return BoardPool(lab(), tmp_path / "pool", poll_interval=0.01)


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


# -- matching ------------------------------------------------------------------------------


def test_target_leases_that_board_only(pool: BoardPool) -> None:
    with pool.acquire(target="x86-02", device_type=None, deadline=Deadline(1, "t")) as lease:
        assert lease.device.name == "x86-02"
        assert lease.held
    assert not lease.held


def test_type_and_tags_select_matching_boards(pool: BoardPool) -> None:
    names = {d.name for d in pool.match(target=None, device_type="x86", tags=["usb"])}
    assert names == {"x86-01", "x86-02"}
    assert [d.name for d in pool.match(target=None, device_type="x86", tags=["usb", "wifi"])] == ["x86-02"]
    leases = [pool.acquire(target=None, device_type="x86", tags=["usb"], deadline=Deadline(1, "t"))
              for _ in range(2)]
    assert {lease.device.name for lease in leases} == {"x86-01", "x86-02"}
    for lease in leases:
        lease.release()


def test_no_matching_board_fails_at_once_with_the_choices(pool: BoardPool) -> None:
    t0 = time.monotonic()
    with pytest.raises(NoMatchingBoard, match=r"no board of type 'riscv'.*types there: arm64, x86"):
        pool.acquire(target=None, device_type="riscv", deadline=Deadline(30, "job"))
    with pytest.raises(NoMatchingBoard, match=r"no board named 'x86-09'.*arm-01, x86-01"):
        pool.acquire(target="x86-09", device_type=None, deadline=Deadline(30, "job"))
    with pytest.raises(NoMatchingBoard, match=r"has all the tags gpu.*x86-02 \[usb, wifi\]"):
        pool.acquire(target=None, device_type="x86", tags=["gpu"], deadline=Deadline(30, "job"))
    with pytest.raises(NoMatchingBoard, match=r"lacks the job's tags wifi"):
        pool.acquire(target="x86-01", device_type=None, tags=["wifi"], deadline=Deadline(30, "job"))
    assert time.monotonic() - t0 < 5


def test_check_request_is_a_configuration_error(pool: BoardPool) -> None:
    from pytest_lava.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="jobs/a.yaml.*no board of type 'riscv'"):
        pool.check_request(target=None, device_type="riscv", source="jobs/a.yaml")
    pool.check_request(target=None, device_type="x86")  # fine


# -- leases --------------------------------------------------------------------------------


def test_two_leases_in_one_process_never_share_a_board(pool: BoardPool) -> None:
    first = pool.acquire(target="arm-01", device_type=None, deadline=Deadline(1, "t"))
    assert pool.try_lease(first.device) is None
    assert pool.status()["arm-01"]["busy"] is True
    first.release()
    first.release()  # idempotent
    again = pool.try_lease(first.device)
    assert isinstance(again, Lease)
    again.release()
    assert pool.status()["arm-01"]["busy"] is False


def test_a_forgotten_lease_is_released_when_collected(pool: BoardPool) -> None:
    pool.acquire(target="arm-01", device_type=None, deadline=Deadline(1, "t"))  # result dropped
    assert pool.status()["arm-01"]["busy"] is False


def test_waiting_for_a_busy_board_times_out_at_the_deadline_naming_the_holders(pool: BoardPool) -> None:
    held = [pool.acquire(target=None, device_type="x86", deadline=Deadline(1, "t"), job="job-a")
            for _ in range(3)]
    logs: list[str] = []
    t0 = time.monotonic()
    with pytest.raises(NoBoardAvailable) as info:
        pool.acquire(target=None, device_type="x86", deadline=Deadline(0.5, "job-b"), log=logs.append)
    waited = time.monotonic() - t0
    assert 0.5 <= waited < 10.0  # generous: the machine may be busy
    message = str(info.value)
    assert "a board of type 'x86'" in message
    for name in ("x86-01", "x86-02", "x86-03"):
        assert f"{name} busy (pid {os.getpid()}" in message
    assert "job 'job-a'" in message
    assert "deadline of job-b" in message
    assert logs and "waiting for a board of type 'x86'" in logs[0]
    for lease in held:
        lease.release()


def test_a_waiter_gets_the_board_when_it_is_released(pool: BoardPool) -> None:
    holder = run_python(
        """
        import sys, time
        from pathlib import Path
        from pytest_lava.devices.device import Device
        from pytest_lava.devices.pool import BoardPool
        from pytest_lava.core.deadline import Deadline
        pool = BoardPool({"b": Device(name="b", device_type="t")}, Path(sys.argv[1]))
        lease = pool.acquire(target="b", device_type=None, deadline=Deadline(5, "h"))
        print("held", flush=True)
        time.sleep(0.5)
        lease.release()
        time.sleep(5)
        """,
        str(pool.state_dir),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        mine = BoardPool({"b": Device(name="b", device_type="t")}, pool.state_dir, poll_interval=0.02)
        logs: list[str] = []
        lease = mine.acquire(target=None, device_type="t", deadline=Deadline(30, "j"), log=logs.append)
        assert lease.device.name == "b"
        assert lease.waited > 0.2
        assert logs[-1].startswith("leased board b after waiting")
        lease.release()
    finally:
        holder.kill()
        holder.wait()


def test_sigkill_of_the_holder_frees_the_board_within_a_second(pool: BoardPool) -> None:
    holder = run_python(
        """
        import sys, time
        from pathlib import Path
        from pytest_lava.devices.device import Device
        from pytest_lava.devices.pool import BoardPool
        from pytest_lava.core.deadline import Deadline
        pool = BoardPool({"arm-01": Device(name="arm-01", device_type="arm64")}, Path(sys.argv[1]))
        lease = pool.acquire(target="arm-01", device_type=None, deadline=Deadline(5, "h"))
        print("held", flush=True)
        time.sleep(60)
        """,
        str(pool.state_dir),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert pool.status()["arm-01"]["busy"] is True
        assert f"pid {holder.pid}" in str(pool.status()["arm-01"]["holder"])
        os.kill(holder.pid, signal.SIGKILL)
        t0 = time.monotonic()
        lease = pool.acquire(target="arm-01", device_type=None, deadline=Deadline(1.0, "after-kill"))
        assert time.monotonic() - t0 < 1.0
        lease.release()
    finally:
        holder.kill()
        holder.wait()


STRESS_WORKER = """
import os, random, sys, time
from pathlib import Path
from pytest_lava.devices.device import Device
from pytest_lava.devices.pools import open_pool
from pytest_lava.core.deadline import Deadline
state, journal, count, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
spec = sys.argv[5] if len(sys.argv) > 5 else ""  # the pool backend: "" (local) or a PostgreSQL URL
devices = {f"b{i}": Device(name=f"b{i}", device_type="sim") for i in range(2)}
pool = open_pool(devices, spec, state)
pool.poll_interval = 0.002
rng = random.Random(seed)
fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
pid = os.getpid()
for _ in range(count):
    with pool.acquire(target=None, device_type="sim", deadline=Deadline(60, "stress")) as lease:
        name = lease.device.name
        os.write(fd, f"B {name} {pid} {time.monotonic_ns()}\\n".encode())
        time.sleep(rng.uniform(0, 0.003))
        os.write(fd, f"E {name} {pid} {time.monotonic_ns()}\\n".encode())
os.close(fd)
"""


def run_stress(tmp_path: Path, processes: int, count: int, spec: str = "") -> None:
    """``processes`` workers lease the 2 boards ``count`` times each through the pool ``spec``;
    their journal shows no board ever held by two at once, and every board used."""
    journal = tmp_path / "journal"
    state = tmp_path / "pool"
    workers = [run_python(STRESS_WORKER, str(state), str(journal), str(count), str(i), spec)
               for i in range(processes)]
    try:
        for proc in workers:
            assert proc.wait(timeout=120) == 0
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    records = [line.split() for line in journal.read_text().splitlines()]
    assert len(records) == 2 * processes * count
    # 1. in append order (a total order of the writes), each board alternates B/E by one holder
    open_by: dict[str, str | None] = defaultdict(lambda: None)
    for kind, board, pid, _ in records:
        if kind == "B":
            assert open_by[board] is None, f"{board} leased by {pid} while held by {open_by[board]}"
            open_by[board] = pid
        else:
            assert open_by[board] == pid
            open_by[board] = None
    # 2. by timestamps, the holding intervals of one board never overlap
    intervals: dict[str, list[tuple[int, int]]] = defaultdict(list)
    begun: dict[tuple[str, str], int] = {}
    for kind, board, pid, ts in records:
        if kind == "B":
            begun[(board, pid)] = int(ts)
        else:
            intervals[board].append((begun.pop((board, pid)), int(ts)))
    assert sum(len(v) for v in intervals.values()) == processes * count
    for board, spans in intervals.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end, f"{board} held twice at once"
    assert len(intervals) == 2  # every board was used


def test_stress_1000_leases_from_4_processes_never_hold_a_board_twice(tmp_path: Path) -> None:
    run_stress(tmp_path, processes=4, count=250)


# -- quarantine ----------------------------------------------------------------------------


def test_quarantined_boards_are_skipped_and_health_checks_may_use_them(pool: BoardPool) -> None:
    health = pool.health
    for _ in range(3):
        msg = health.record("x86-01", infrastructure_failure=True, health_check=False, passed=False,
                            threshold=3, reason="no prompt")
    assert msg is not None and "quarantined" in msg
    logs: list[str] = []
    for _ in range(5):  # x86-01 is never picked while the others are free
        with pool.acquire(target=None, device_type="x86", tags=["usb"], deadline=Deadline(1, "t"),
                          log=logs.append) as lease:
            assert lease.device.name == "x86-02"
    assert logs == ["skipping quarantined board x86-01"] * 5
    with pytest.raises(NoBoardAvailable, match=r"x86-01 quarantined \(3 consecutive .*last: no prompt\)"):
        pool.acquire(target="x86-01", device_type=None, deadline=Deadline(10, "t"))
    check = pool.acquire(target="x86-01", device_type=None, deadline=Deadline(1, "t"), health_check=True)
    with check as lease:
        assert lease.device.name == "x86-01"
    msg = health.record("x86-01", infrastructure_failure=False, health_check=True, passed=True, threshold=3)
    assert msg is not None and "released" in msg
    with pool.acquire(target="x86-01", device_type=None, deadline=Deadline(1, "t")) as lease:
        assert lease.device.name == "x86-01"
    assert pool.status()["x86-01"]["quarantined"] is False


def test_pool_and_health_share_the_state_dir(tmp_path: Path) -> None:
    BoardHealth(tmp_path).record("arm-01", infrastructure_failure=True, health_check=True, passed=False,
                                 threshold=3)
    pool = BoardPool(lab(), tmp_path)
    assert pool.status()["arm-01"]["quarantined"] is True
