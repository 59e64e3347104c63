"""The PostgreSQL board pool against a real server (Debian's ``postgresql``, started and stopped
here): leases across processes, a killed holder's board freed, quarantine shared, deadlines,
``pool status``, and a whole run with ``--lava-pool`` on simulated boards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_lava.core.deadline import Deadline
from pytest_lava.core.errors import InfrastructureError
from pytest_lava.devices.leasing import Lease, NoBoardAvailable
from pytest_lava.devices.pgdb import Timeouts
from pytest_lava.devices.pgpool import PostgresPool, double_leases
from pytest_lava.testing.postgres import PostgresServer, PostgresUnavailable
from tests.unit.test_pool import REPO, lab, run_python, run_stress

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            raise  # CI installs it (make host-tools): never skip there
        pytest.skip(str(exc))
    with server:
        yield server
    assert server.pid is None  # stopped


@pytest.fixture
def url(pg: PostgresServer) -> Iterator[str]:
    """A fresh database per test, so boards, leases and health never leak between tests."""
    with pg.database() as url:
        yield url


@pytest.fixture
def pool(url: str) -> Iterator[PostgresPool]:
    pool = PostgresPool(lab(), url, poll_interval=0.02)
    yield pool
    pool.close()


HOLDER = """
import sys, time
from pytest_lava.core.deadline import Deadline
from pytest_lava.devices.device import Device
from pytest_lava.devices.pgdb import Timeouts
from pytest_lava.devices.pgpool import PostgresPool, double_leases
pool = PostgresPool({"arm-01": Device(name="arm-01", device_type="arm64")}, sys.argv[1])
lease = pool.acquire(target="arm-01", device_type=None, deadline=Deadline(20, "h"), job="holder-job")
print("held", flush=True)
time.sleep(120)
"""


def test_two_processes_leasing_from_one_pool_never_hold_the_same_board(tmp_path: Path, url: str) -> None:
    run_stress(tmp_path, processes=2, count=100, spec=url)
    check = PostgresPool({}, url)  # the server's own lease log agrees with the workers' journal
    assert check.db.query("count", "SELECT count(*), count(released) FROM lava_lease_log")[0] == (200, 200)
    assert double_leases(check) == []
    check.close()


def test_two_leases_in_one_process_never_share_a_board(pool: PostgresPool) -> None:
    first = pool.acquire(target="arm-01", device_type=None, deadline=Deadline(5, "a"))
    # advisory locks are re-entrant in one session: the pool must still refuse the second lease
    assert pool.try_lease(pool.devices["arm-01"]) is None
    with pytest.raises(NoBoardAvailable, match="arm-01 busy"):
        pool.acquire(target="arm-01", device_type=None, deadline=Deadline(0.2, "b"))
    first.release()
    again = pool.acquire(target="arm-01", device_type=None, deadline=Deadline(5, "c"))
    assert again.held and pool.status()["arm-01"]["busy"] is True
    again.release()
    assert pool.status()["arm-01"]["busy"] is False


def test_threads_leasing_side_by_side_in_one_process_never_share_a_board(pool: PostgresPool) -> None:
    """Jobs on threads of one process (xdist claims) share its session: the lock and the pool's
    record of its boards are one step, or two threads both got the same board."""
    import threading

    devices = list(pool.devices.values())
    start = threading.Barrier(8)
    held: list[Lease] = []  # kept: a lease nobody holds is given back

    def lease() -> None:
        start.wait(timeout=10)
        for _ in range(20):
            lease = pool.try_any(devices, job="t")
            if lease is not None:
                held.append(lease)
                return

    threads = [threading.Thread(target=lease) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    got = sorted(lease.device.name for lease in held)
    assert got == sorted(d.name for d in devices), got  # each board once, no more
    for lease in held:
        lease.release()


def test_a_forgotten_lease_is_given_back_by_the_next_pool_call(pool: PostgresPool) -> None:
    pool.acquire(target="arm-01", device_type=None, deadline=Deadline(5, "a"))  # dropped at once
    lease = pool.acquire(target="arm-01", device_type=None, deadline=Deadline(2, "b"))
    assert lease.held
    lease.release()


def test_sigkill_of_the_holder_frees_its_board_within_a_bounded_time(pool: PostgresPool, url: str) -> None:
    holder = run_python(HOLDER, url)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        status = pool.status()["arm-01"]
        assert status["busy"] is True and f"pid {holder.pid}" in str(status["holder"])
        assert "holder-job" in str(status["holder"])
        with pytest.raises(NoBoardAvailable, match=f"arm-01 busy \\(pid {holder.pid} on "):
            pool.acquire(target="arm-01", device_type=None, deadline=Deadline(0.3, "while-held"))
        killed = float(pool.db.query("now", "SELECT extract(epoch FROM clock_timestamp())")[0][0])
        os.kill(holder.pid, signal.SIGKILL)
        t0 = time.monotonic()
        lease = pool.acquire(target="arm-01", device_type=None, deadline=Deadline(5, "after-kill"))
        assert time.monotonic() - t0 < 5
        assert pool.status()["arm-01"]["holder"].startswith(f"pid {os.getpid()} ")  # type: ignore[union-attr]
        lease.release()
        # the dead holder's lease has no end in the log; the next one began after the kill
        assert double_leases(pool) != []
        assert double_leases(pool, died={socket.gethostname(): killed}) == []
    finally:
        holder.kill()
        holder.wait()


RECORD = """
import sys
from pytest_lava.devices.device import Device
from pytest_lava.devices.pgdb import Timeouts
from pytest_lava.devices.pgpool import PostgresPool, double_leases
pool = PostgresPool({"arm-01": Device(name="arm-01", device_type="arm64")}, sys.argv[1])
print(pool.health.record("arm-01", infrastructure_failure=True, health_check=False, passed=False,
                         threshold=1, reason="power failed", job="elsewhere"))
"""


def test_quarantine_is_shared_by_every_process_of_the_pool(pool: PostgresPool, url: str) -> None:
    other = run_python(RECORD, url)
    out, _ = other.communicate(timeout=60)
    assert other.returncode == 0 and "board arm-01 quarantined" in out
    assert pool.health.is_quarantined("arm-01")
    with pytest.raises(NoBoardAvailable, match=r"arm-01 quarantined \(1 consecutive .*power failed\)"):
        pool.acquire(target="arm-01", device_type=None, deadline=Deadline(5, "job"))
    # a health check may use the board, and its pass releases it for everyone
    with pool.acquire(target="arm-01", device_type=None, deadline=Deadline(5, "hc"), health_check=True):
        message = pool.health.record("arm-01", infrastructure_failure=False, health_check=True,
                                     passed=True, threshold=1, job="hc")
    assert message == "board arm-01 released from quarantine: health check hc passed"
    fresh = PostgresPool(lab(), url)
    assert not fresh.health.is_quarantined("arm-01") and fresh.health.load("arm-01").history[-1]["job"] == "hc"
    fresh.close()


def test_concurrent_health_updates_are_not_lost(url: str) -> None:
    pools = [PostgresPool(lab(), url) for _ in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", (
        "import sys\nfrom pytest_lava.devices.pgpool import PostgresPool\n"
        "h = PostgresPool({}, sys.argv[1]).health\n"
        "for _ in range(50): h.record('b', infrastructure_failure=True, health_check=False, passed=False, threshold=0)"
    ), url], env=dict(os.environ, PYTHONPATH=str(REPO))) for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    assert pools[0].health.status()["b"]["consecutive_infra_failures"] == 100
    for p in pools:
        p.close()


def test_pool_status_command_shows_who_holds_what(pool: PostgresPool, url: str) -> None:
    lease = pool.acquire(target="x86-02", device_type=None, deadline=Deadline(5, "a"), job="status-job")
    pool.health.record("arm-01", infrastructure_failure=True, health_check=True, passed=False, threshold=3)
    done = subprocess.run([sys.executable, "-m", "pytest_lava", "pool", "status", "--lava-pool", url],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert done.stdout.splitlines()[0].endswith("4 board(s), 1 leased, 1 quarantined")
    assert f"leased by pid {os.getpid()} " in lines["x86-02"] and "'status-job'" in lines["x86-02"]
    assert "quarantined (health check failed (infrastructure failure))" in lines["arm-01"]
    assert lines["x86-01"].split()[2] == "free"
    lease.release()


def test_every_statement_and_a_vanished_peer_have_a_deadline(url: str) -> None:
    pool = PostgresPool(lab(), url, timeouts=Timeouts(statement=0.5, lock=0.3))
    names = ["statement_timeout", "lock_timeout", "tcp_keepalives_idle", "tcp_keepalives_interval",
             "tcp_keepalives_count", "tcp_user_timeout"]
    settings = pool.db.query("settings", "SELECT " + ", ".join(f"current_setting('{n}')" for n in names))
    # the server's side of the keepalives ends the session (and its leases) of a vanished host
    assert settings[0] == ("500ms", "300ms", "10", "10", "3", "30000")  # tcp_user_timeout in ms
    t0 = time.monotonic()
    with pytest.raises(InfrastructureError, match="statement timeout"):
        pool.db.query("sleeping", "SELECT pg_sleep(5)")
    assert time.monotonic() - t0 < 3
    # a health row locked by another dispatcher: the update waits at most lock_timeout
    other = PostgresPool(lab(), url)
    with other.health._locked("arm-01"), pytest.raises(InfrastructureError, match="arm-01: .*lock timeout"):
        pool.health.record("arm-01", infrastructure_failure=True, health_check=False, passed=False, threshold=3)
    assert pool.health.record("arm-01", infrastructure_failure=False, health_check=True, passed=True,
                              threshold=3) is None  # the connection is still usable
    other.close()
    pool.close()


def test_a_lost_connection_fails_one_call_and_its_leases_stay_lost(pool: PostgresPool, url: str) -> None:
    stale = pool.acquire(target="arm-01", device_type=None, deadline=Deadline(5, "a"))
    other = PostgresPool(lab(), url)
    other.db.query("ending a session", "SELECT pg_terminate_backend(%s)", (pool.db.backend_pid(),))
    with pytest.raises(InfrastructureError, match="board pool postgresql://"):
        pool.status()  # the server ended the session (and its lease): this call learns it
    assert pool.status()["arm-01"]["busy"] is False  # reconnected
    with other.acquire(target="arm-01", device_type=None, deadline=Deadline(5, "b")):
        stale.release()  # taken on the lost connection: must not free the board for someone else
        rows = pool.db.query("who", "SELECT backend_pid FROM lava_leases WHERE board = 'arm-01'")
        assert rows == [(other.db.backend_pid(),)]
    assert pool.acquire(target="arm-01", device_type=None, deadline=Deadline(5, "c")).held
    other.close()


def test_an_unreachable_database_is_an_infrastructure_error_without_the_password() -> None:
    from pytest_lava.testing.postgres import free_port

    pool = PostgresPool(lab(), f"postgresql://lava:s3cret@127.0.0.1:{free_port()}/lab")
    t0 = time.monotonic()
    with pytest.raises(InfrastructureError) as info:
        pool.acquire(target="arm-01", device_type=None, deadline=Deadline(5, "job"))
    assert time.monotonic() - t0 < 15
    assert "postgresql://lava:***@127.0.0.1:" in info.value.message and "cannot connect" in info.value.message
    assert "s3cret" not in info.value.message


def test_jobs_run_through_the_postgresql_pool(pytester: pytest.Pytester, tmp_path: Path, url: str) -> None:
    """A whole run with ``--lava-pool``: three jobs on two simulated boards with ``-n 3`` (so one
    waits for a board), every lease and health record in the database."""
    from pytest_lava.testing import SimLab
    from tests.plugin.test_parallel_sim import hostnames, run, write_jobs

    pytester.chdir()
    with SimLab(2, tmp_path / "boards", boot_time=0.3) as simlab:
        simlab.write_devices(pytester.path / "devices")
        jobs = write_jobs(pytester.path, 3)
        result = run(pytester, jobs, "-n", "3", "--lava-pool", url, "--lava-state", str(tmp_path / "unused"))
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=6)
    assert set(hostnames(pytester.path / "results").values()) <= {"sim-01", "sim-02"}
    assert not (tmp_path / "unused" / "leases").exists()  # the local pool was not used
    check = PostgresPool({}, url)
    history = {board: len(check.health.load(board).history) for board in ("sim-01", "sim-02")}
    assert sum(history.values()) == 3, history
    assert check.holders() == {}  # every lease given back
    check.close()


def test_a_bad_pool_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", job="job_name: j\ndevice_type: sim\nactions:\n  - command: boot_master_image\n")
    result = pytester.runpytest_subprocess("--lava-job", "job.yaml", "--lava-pool", "mysql://u:pw@h/db")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*--lava-pool*'mysql://*@h/db' is not a pool*"])
    assert "pw@" not in result.stdout.str()
