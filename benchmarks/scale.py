"""Scale of the PostgreSQL board pool: 100 boards, 4 hosts x 8 workers, a few hundred short jobs.

A private PostgreSQL server is started for the run (Debian's ``postgresql``; ``--url`` uses an
existing one instead) and stopped at the end. Every worker is its own process with its own pool
(its own connection), as each pytest-xdist worker is; the 4 "hosts" are groups of 8 workers on
this machine (the multi-host CI set-up with network namespaces is described in docs/scale-out.md).

The boards are SIMULATED at the pool's level — a board is a device entry, a job leases one, holds
it for a short random time (its "run"), records its health outcome in the database as a real job
does, and gives it back — because what is measured is the pool: a hundred QEMU guests on two cores
would measure the CPU. Jobs ask for a device type (any of 20 boards) or, one in five, for one of
four named "hot" boards, so some jobs wait.

Every lease is logged (worker, board, start and end on the system-wide monotonic clock, wait);
from the log: lease acquisitions per second, the p99 and max wait for a board, jobs that never got
one (starved), and double leases — two intervals of one board overlapping. The final line is
``scale boards=… jobs=… leases_per_s=… p99_wait_s=… double_leases=0``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_lava.core.deadline import Deadline  # noqa: E402
from pytest_lava.core.errors import LavaError  # noqa: E402
from pytest_lava.devices.device import Device  # noqa: E402
from pytest_lava.devices.pgpool import PostgresPool  # noqa: E402
from pytest_lava.testing.postgres import PostgresServer  # noqa: E402

TYPES = ("sim-a", "sim-b", "sim-c", "sim-d", "sim-e")


def boards(n: int) -> dict[str, Device]:
    return {f"sim-{i:03d}": Device(name=f"sim-{i:03d}", device_type=TYPES[i % len(TYPES)]) for i in range(n)}


def make_jobs(n: int, devices: dict[str, Device], seed: int) -> list[tuple[str, str | None, str | None]]:
    """(job name, target, device_type): 4 in 5 ask for a type, 1 in 5 for one of four hot boards."""
    rng = random.Random(seed)
    hot = sorted(devices)[:4]
    jobs = []
    for i in range(n):
        if rng.random() < 0.2:
            jobs.append((f"job{i}", rng.choice(hot), None))
        else:
            jobs.append((f"job{i}", None, rng.choice(TYPES)))
    return jobs


def worker(url: str, host: int, index: int, n_boards: int, queue: mp.Queue, log: Path,
           hold: tuple[float, float], timeout: float) -> None:
    pool = PostgresPool(boards(n_boards), url, poll_interval=0.05)
    rng = random.Random(host * 100 + index)
    me = f"h{host}w{index}"
    with log.open("w") as out:
        while True:
            item = queue.get()
            if item is None:
                break
            name, target, device_type = item
            asked = time.monotonic_ns()
            try:
                lease = pool.acquire(target=target, device_type=device_type, deadline=Deadline(timeout, name),
                                     job=name)
            except LavaError as exc:
                out.write(f"STARVED {name} {me} {str(exc)[:200]!r}\n")
                continue
            start = time.monotonic_ns()  # after the lease is held ...
            time.sleep(rng.uniform(*hold))
            end = time.monotonic_ns()  # ... and before it is given back: inside the true interval
            pool.health.record(lease.device.name, infrastructure_failure=False, health_check=False,
                               passed=True, threshold=3, job=name)
            lease.release()
            out.write(f"LEASE {name} {me} {lease.device.name} {asked} {start} {end}\n")
    pool.close()


def double_leases(intervals: dict[str, list[tuple[int, int]]]) -> int:
    """How many times an interval of a board began before the previous one of that board ended."""
    count = 0
    for spans in intervals.values():
        spans.sort()
        latest_end = None
        for start, end in spans:
            if latest_end is not None and start < latest_end:
                count += 1
            latest_end = end if latest_end is None else max(latest_end, end)
    return count


def run(url: str, args: argparse.Namespace, work: Path) -> int:
    devices = boards(args.boards)
    jobs = make_jobs(args.jobs, devices, args.seed)
    PostgresPool(devices, url).close()  # create the tables and register the boards once, up front
    ctx = mp.get_context("fork")
    queue: mp.Queue = ctx.Queue()
    for job in jobs:
        queue.put(job)
    n_workers = args.hosts * args.workers
    for _ in range(n_workers):
        queue.put(None)
    logs = [work / f"h{h}w{w}.log" for h in range(args.hosts) for w in range(args.workers)]
    procs = [ctx.Process(target=worker, args=(url, h, w, args.boards, queue, work / f"h{h}w{w}.log",
                                              (args.hold_min, args.hold_max), args.timeout))
             for h in range(args.hosts) for w in range(args.workers)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=max(1.0, args.timeout * 4 - (time.monotonic() - t0)))
        if p.is_alive():
            p.kill()
            p.join()
    wall = time.monotonic() - t0
    failed_workers = sum(1 for p in procs if p.exitcode != 0)

    waits: list[float] = []
    intervals: dict[str, list[tuple[int, int]]] = defaultdict(list)
    done: set[str] = set()
    starved: list[str] = []
    first = last = None
    for log in logs:
        if not log.exists():
            continue
        for line in log.read_text().splitlines():
            kind, name, *rest = line.split(" ", 6)
            if kind == "STARVED":
                starved.append(f"{name}: {rest[-1]}")
                continue
            _, board, asked, start, end = rest
            done.add(name)
            waits.append((int(start) - int(asked)) / 1e9)
            intervals[board].append((int(start), int(end)))
            first = int(asked) if first is None else min(first, int(asked))
            last = int(end) if last is None else max(last, int(end))
    missing = len(jobs) - len(done) - len(starved)
    span = (last - first) / 1e9 if first is not None and last is not None else float("nan")
    waits.sort()
    p99 = waits[min(len(waits) - 1, int(0.99 * len(waits)))] if waits else float("nan")
    doubles = double_leases(intervals)
    per_board = [len(v) for v in intervals.values()]
    print(f"{len(jobs)} jobs on {args.boards} boards from {args.hosts} hosts x {args.workers} workers: "
          f"wall {wall:.1f} s (leasing span {span:.1f} s), {len(done)} ran, {len(starved)} starved, "
          f"{missing} lost, {failed_workers} worker(s) failed")
    if waits:
        print(f"wait for a board: median {statistics.median(waits):.3f} s, p99 {p99:.3f} s, max {waits[-1]:.3f} s; "
              f"boards used {len(intervals)}, leases per board {min(per_board)}..{max(per_board)}")
    for line in starved[:5]:
        print(f"  starved {line}")
    print(f"scale boards={args.boards} jobs={len(done)} leases_per_s={len(done) / span:.1f} "
          f"p99_wait_s={p99:.3f} double_leases={doubles}")
    ok = doubles == 0 and not starved and missing == 0 and failed_workers == 0
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=100)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--workers", type=int, default=8, help="workers per host")
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--hold-min", type=float, default=0.02, help="seconds a job holds its board, at least")
    parser.add_argument("--hold-max", type=float, default=0.2, help="... at most")
    parser.add_argument("--timeout", type=float, default=120.0, help="each job's deadline for a board")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--url", help="an existing PostgreSQL database (default: start a private server)")
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pytest-lava-scale-") as tmp:
        if args.url:
            return run(args.url, args, Path(tmp))
        with PostgresServer(max_connections=args.hosts * args.workers + 20) as pg:
            print(f"PostgreSQL server pid {pg.pid} on 127.0.0.1:{pg.port} (started for this run)")
            return run(pg.url, args, Path(tmp))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
