"""The PostgreSQL board pool on the emulated lab: a QEMU job leases its board through a real
PostgreSQL server (started and stopped by the test), and its outcome lands in the shared health."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_lava.devices.pgpool import PostgresPool
from tests.lab.test_qemu_e2e import kernel_job, run_job
from tests.plugin.test_parallel_sim import hostnames
from tests.unit.test_pgpool import pg, url  # noqa: F401  (the server and a fresh database)

pytestmark = pytest.mark.lab


def test_a_qemu_job_leases_its_board_from_the_postgresql_pool(tmp_path: Path, lab_built: Path, url: str) -> None:  # noqa: F811
    p = run_job(tmp_path, kernel_job(f"file://{lab_built / 'x86_64/vmlinuz'}", test=False),
                "--lava-pool", url, "--lava-state", str(tmp_path / "local-state"))
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert not (tmp_path / "local-state" / "leases").exists()  # not the local pool
    check = PostgresPool({}, url)
    qemu_boards = [d.name for d in check.known_boards() if d.device_type == "qemu"]
    assert qemu_boards, "the run registered the lab's boards in the database"
    ran = {b: check.health.load(b).history for b in qemu_boards}
    used = [b for b, history in ran.items() if history]
    assert len(used) == 1 and ran[used[0]][-1]["job"] == "qemu-e2e" and ran[used[0]][-1]["passed"] is True
    assert list(hostnames(tmp_path / "results").values()) == used  # the bundle names that board
    assert check.holders() == {}  # the lease ended with the job
    check.close()
