"""Jobs from two dispatcher hosts at once, through one PostgreSQL pool, on one machine.

The hosts are network namespaces with an sshd each (pytest_lava/testing/hosts.py); pytest-xdist
starts workers on them with ``--tx ssh=…``; the PostgreSQL server (Debian's package) and the
simulated boards listen on the private bridge the hosts share. All started and stopped here.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pytest_lava.devices.pgpool import PostgresPool, double_leases
from pytest_lava.testing import SimLab
from pytest_lava.testing.hosts import Hosts, HostsUnavailable
from pytest_lava.testing.postgres import PostgresServer, PostgresUnavailable

pytestmark = pytest.mark.integration

JOB = """\
job_name: {name}
{board}
timeout: 180
actions:
  - command: boot_master_image
  - command: boot_linaro_image
"""


@dataclass
class Lab:
    hosts: Hosts
    pg: PostgresServer
    boards: SimLab
    devices: Path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("multihost")
    try:
        hosts = Hosts(["host0", "host1"], work / "hosts")
        server = PostgresServer(address=hosts.bridge_address, max_connections=50)
    except (HostsUnavailable, PostgresUnavailable) as exc:
        if os.environ.get("CI"):
            raise  # make host-tools installs what this needs: never skip in CI
        pytest.skip(str(exc))
    with hosts, server, SimLab(3, work / "boards", boot_time=1.0, address=hosts.bridge_address) as boards:
        devices = work / "devices"
        boards.write_devices(devices)
        usb = yaml.safe_load((devices / "sim-03.yaml").read_text())
        usb["dispatcher_host"] = "host0"  # as if its console were a USB serial port on host0
        (devices / "sim-03.yaml").write_text(yaml.safe_dump(usb))
        yield Lab(hosts, server, boards, devices)


@pytest.fixture
def url(lab: Lab) -> Iterator[str]:
    with lab.pg.database() as url:
        yield url


def write_jobs(where: Path, typed: int, usb: int) -> list[str]:
    names = []
    for i in range(typed):
        (where / f"job{i}.yaml").write_text(JOB.format(name=f"job{i}", board="device_type: sim"))
        names.append(f"job{i}.yaml")
    for i in range(usb):
        (where / f"usb{i}.yaml").write_text(JOB.format(name=f"usb{i}", board="target: sim-03"))
        names.append(f"usb{i}.yaml")
    return names


def argv(lab: Lab, where: Path, url: str, jobs: list[str], per_host: int) -> list[str]:
    # --opt=VALUE: xdist rewrites path arguments for ssh workers relative to rsync roots (there are
    # none: the hosts share this file system) unless they are part of an option word. The workers
    # run in a directory of their own, so their relative --lava-results is not the controller's:
    # the results must come back (plugin/shipping.py)
    remote = where / "on-the-host"
    remote.mkdir(exist_ok=True)
    args = ["-p", "no:cacheprovider", "-v", f"--lava-devices={lab.devices}", "--lava-results=results",
            f"--lava-pool={url}", f"--lava-state={where / 'local-state'}", "--dist=load"]
    for host in lab.hosts.names:  # gw0.. on host0, then host1's
        args.append(f"--tx={per_host}*{lab.hosts.tx(host, sys.executable, remote)}")
    return args + [f"--lava-job={where / job}" for job in jobs]


def ran_on(output: str, per_host: int) -> dict[str, set[str]]:
    """{job: hosts whose workers passed its items}, from -v lines; gwN is on host N // per_host."""
    hosts: dict[str, set[str]] = defaultdict(set)
    for m in re.finditer(r"\[gw(\d+)\] .*PASSED \S*?(\w+)\.yaml::", output):
        hosts[m.group(2)].add(f"host{int(m.group(1)) // per_host}")
    return hosts


def lease_log(url: str) -> list[tuple[str, str, str]]:
    pool = PostgresPool({}, url)
    rows = pool.db.query("lease log", "SELECT board, host, job FROM lava_lease_log ORDER BY acquired")
    pool.close()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_jobs_from_two_hosts_share_the_boards_and_a_usb_board_stays_on_its_host(
        pytester: pytest.Pytester, lab: Lab, url: str) -> None:
    pytester.chdir()
    jobs = write_jobs(pytester.path, typed=4, usb=2)
    result = pytester.runpytest_subprocess(*argv(lab, pytester.path, url, jobs, per_host=2), timeout=400)
    out = result.stdout.str()
    assert result.ret == 0, out[-4000:]
    result.assert_outcomes(passed=12)
    hosts = ran_on(out, per_host=2)
    assert hosts["usb0"] == hosts["usb1"] == {"host0"}  # sim-03 is driven from host0 only
    log = lease_log(url)
    assert {host for _, host, _ in log} == {"host0", "host1"}  # both hosts ran jobs (their hostnames)
    assert {host for board, host, _ in log if board == "sim-03"} == {"host0"}
    assert sorted(job for _, _, job in log) == sorted(f"job{i}" for i in range(4)) + ["usb0", "usb1"]
    check = PostgresPool({}, url)
    assert double_leases(check) == [] and check.holders() == {}
    check.close()
    # the results came back to the controller's results directory
    written = pytester.path / "on-the-host" / "results"  # by the workers, on their hosts
    shipped = sorted(p.relative_to(written) for p in written.rglob("*") if p.is_file() and "spool" not in p.parts)
    assert len([p for p in shipped if p.name == "bundle.json"]) == 6
    for rel in shipped:
        assert (pytester.path / "results" / rel).read_bytes() == (written / rel).read_bytes(), rel


def test_killing_one_hosts_workers_mid_job_frees_its_board_at_once(
        pytester: pytest.Pytester, lab: Lab, url: str) -> None:
    pytester.chdir()
    jobs = write_jobs(pytester.path, typed=4, usb=0)
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *argv(lab, pytester.path, url, jobs, per_host=1)],
                            cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pool = PostgresPool({}, url)
    try:
        deadline = time.monotonic() + 120
        while True:  # wait until host1 holds a board
            held = {b: h for b, h in pool.db.query("leases", "SELECT board, host FROM lava_leases")} \
                if pool.db.query("tables", "SELECT to_regclass('lava_leases')")[0][0] else {}
            board = next((b for b, h in held.items() if h == "host1"), None)
            if board is not None or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert board is not None, "host1 never held a board"
        killed_at = float(pool.db.query("now", "SELECT extract(epoch FROM clock_timestamp())")[0][0])
        keep = lab.hosts.sshd["host1"].pid  # the host stays up; its workers (and their ssh sessions) die
        victims = []
        for pid in lab.hosts.pids("host1"):  # one pass: xdist's replacement worker must reach host1
            if pid != keep:
                with contextlib.suppress(ProcessLookupError):  # a short-lived child already gone
                    os.kill(pid, signal.SIGKILL)
                    victims.append(pid)
        t0 = time.monotonic()
        while any(h == "host1" for _, h in pool.db.query("leases", "SELECT board, host FROM lava_leases")):
            assert time.monotonic() - t0 < 10, "host1's board still leased 10 s after its workers died"
            time.sleep(0.05)
        freed_after = time.monotonic() - t0
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"{board} freed {freed_after:.2f} s after host1's workers were killed; run:\n{out[-1500:]}")
    assert victims and freed_after < 10
    assert "crashed" in out, out[-4000:]
    # every other job still ran to the end, and no board was ever held twice
    passed = ran_on(out, per_host=1)
    assert len([job for job in passed if len(passed[job]) >= 1]) >= 3, out[-4000:]
    assert double_leases(pool, died={"host1": killed_at}) == []
    assert pool.holders() == {}
    pool.close()
