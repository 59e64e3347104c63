#!/usr/bin/env python3
"""Console engine vs pexpect, side by side, on a local TCP source.

A source *process* (so it does not share our GIL) listens on 127.0.0.1, and on connect pushes
boot-log-like text in chunks of 64 B, 1 KiB or 64 KiB, followed by a marker. Consumers, in the same
run: raw ``recv`` (the ceiling), the pytest-lava Console (board log ON, default death strings ON,
regex marker), pexpect ``fdspawn`` with its defaults, and pexpect tuned
(``maxread=65536, searchwindowsize=200``). Then: CPU time of a console waiting 5 s on a silent
board, and RSS growth of a console streaming 1 GiB (in a child process, logging on).

Final line: ``console MB/s=<x> pexpect-tuned MB/s=<y> ratio=<x/y>`` for 1 KiB chunks.
Usage: ``python benchmarks/console.py [--quick]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pexpect  # noqa: E402
import pexpect.fdpexpect  # noqa: E402

from pytest_lava.console.connections import TcpConnection  # noqa: E402
from pytest_lava.console.engine import Console  # noqa: E402
from pytest_lava.console.log import ConsoleLog  # noqa: E402
from pytest_lava.core.deadline import Deadline  # noqa: E402

MARKER = b"BENCH-END-4242\r\n"
MARKER_RE = rb"BENCH-END-(\d+)"
LINE = b"[   12.345678] virtio_blk virtio1: [vda] 524288 512-byte logical blocks (268 MB/256 MiB)\r\n"


def _source(port_q: mp.Queue, chunk: int, total: int, silent: float) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port_q.put(srv.getsockname()[1])
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if silent:
        time.sleep(silent)
    else:
        block = (LINE * (chunk // len(LINE) + 2))[:chunk]
        mv = memoryview(block)
        sent = 0
        while sent + chunk <= total:
            conn.sendall(mv)
            sent += chunk
        conn.sendall(MARKER)
        time.sleep(0.5)  # let the consumer drain before closing
    conn.close()
    srv.close()


C_SOURCE = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
/* argv: chunk total marker-file; prints the port, then pushes total bytes in chunk-sized writes */
int main(int argc, char **argv) {
    long chunk = atol(argv[1]), total = atol(argv[2]);
    const char *line = argv[3], *marker = argv[4];
    int srv = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {0}; socklen_t len = sizeof a;
    a.sin_family = AF_INET; a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(srv, (struct sockaddr *)&a, sizeof a) || listen(srv, 1)) return 1;
    getsockname(srv, (struct sockaddr *)&a, &len);
    printf("%d\n", ntohs(a.sin_port)); fflush(stdout);
    int c = accept(srv, 0, 0);
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char *buf = malloc(chunk + 1); size_t ll = strlen(line);
    for (long i = 0; i < chunk; i++) buf[i] = line[i % ll];
    for (long sent = 0; sent + chunk <= total; sent += chunk)
        for (long off = 0; off < chunk;) {
            ssize_t n = write(c, buf + off, chunk - off); if (n <= 0) return 2; off += n; }
    write(c, marker, strlen(marker));
    sleep(1); close(c); close(srv); return 0;
}
"""
_C_BINARY: Path | None = None


def c_source_binary(workdir: Path) -> Path | None:
    """Compile the C source once (gcc/cc); None if no compiler (the Python source is used)."""
    global _C_BINARY
    if _C_BINARY is None:
        for cc in ("gcc", "cc"):
            src, exe = workdir / "source.c", workdir / "source"
            src.write_text(C_SOURCE)
            try:
                subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True, capture_output=True, timeout=60)
            except (OSError, subprocess.SubprocessError):
                continue
            _C_BINARY = exe
            break
    return _C_BINARY


class Source:
    """The data source, in its own process: the C program if it compiled, else Python."""

    def __init__(self, chunk: int, total: int, silent: float = 0.0, workdir: Path | None = None) -> None:
        exe = c_source_binary(workdir) if workdir is not None and not silent else None
        self.cproc: subprocess.Popen[str] | None = None
        self.proc = None
        if exe is not None:
            self.cproc = subprocess.Popen(
                [str(exe), str(chunk), str(total), LINE.decode(), MARKER.decode()],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self.cproc.stdout is not None
            self.port = int(self.cproc.stdout.readline())
            return
        q: mp.Queue = mp.Queue()
        self.proc = mp.get_context("fork").Process(target=_source, args=(q, chunk, total, silent), daemon=True)
        self.proc.start()
        self.port = q.get(timeout=10)

    def stop(self) -> None:
        if self.cproc is not None:  # our own child, by PID
            try:
                self.cproc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.cproc.kill()
                self.cproc.wait(timeout=5)
            return
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()  # by PID: our own child
            self.proc.join(timeout=5)


def run_raw(port: int, timeout: float) -> None:
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(timeout)
    tail = b""
    while True:
        data = s.recv(262144)
        if not data:
            raise RuntimeError("source closed before the marker")
        if MARKER in tail[-32:] + data:
            break
        tail = data
    s.close()


def run_console(port: int, timeout: float, log_dir: Path) -> None:
    conn = TcpConnection("127.0.0.1", port)
    conn.connect(Deadline(10, "connect"))
    log = ConsoleLog(log_dir / "console.log", board="bench")
    con = Console(conn, name="bench", log=log)
    try:
        con.expect(re.compile(MARKER_RE), timeout)
    finally:
        con.close()
        log.close()
        (log_dir / "console.log").unlink()


def run_pexpect(port: int, timeout: float, tuned: bool) -> None:
    s = socket.create_connection(("127.0.0.1", port))
    kw = {"maxread": 65536, "searchwindowsize": 200} if tuned else {}
    child = pexpect.fdpexpect.fdspawn(s.fileno(), timeout=timeout, **kw)
    child.expect(MARKER_RE)
    s.close()


def measure(
    fn: Callable[[int], None], chunk: int, total: int, repeat: int, workdir: Path
) -> tuple[float, str]:
    """Median MB/s over ``repeat`` runs (time from connect to marker matched)."""
    rates = []
    for _ in range(repeat):
        src = Source(chunk, total, workdir=workdir)
        try:
            t0 = time.perf_counter()
            try:
                fn(src.port)
            except pexpect.TIMEOUT:
                return 0.0, "timeout"
            rates.append(total / (time.perf_counter() - t0) / 1e6)
        finally:
            src.stop()
    return statistics.median(rates), ""


def idle_cpu(seconds: float, log_dir: Path | None) -> float:
    """Percent of one core used by a console (reader thread + expecting thread) on a silent board."""
    src = Source(0, 0, silent=seconds + 2)
    conn = TcpConnection("127.0.0.1", src.port)
    conn.connect(Deadline(10, "connect"))
    with tempfile.TemporaryDirectory(dir=log_dir) as tmp:
        log = ConsoleLog(Path(tmp) / "c.log")
        con = Console(conn, name="idle", log=log)
        c0, t0 = time.process_time(), time.perf_counter()
        try:
            con.expect("never", seconds)
        except Exception:
            pass
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        con.close()
        log.close()
    src.stop()
    return 100.0 * cpu / wall


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_child(total: int, log_dir: Path | None) -> None:
    """Runs in a fresh interpreter: print RSS before, peak after streaming ``total`` bytes."""
    src = Source(65536, total, workdir=Path(tempfile.mkdtemp(prefix="lava-bench-rss-")))
    conn = TcpConnection("127.0.0.1", src.port)
    conn.connect(Deadline(10, "connect"))
    with tempfile.TemporaryDirectory(dir=log_dir) as tmp:
        log = ConsoleLog(Path(tmp) / "c.log")
        con = Console(conn, name="rss", log=log)
        before = _rss_kib("VmRSS")
        t0 = time.perf_counter()
        con.expect(re.compile(MARKER_RE), 600)
        wall = time.perf_counter() - t0
        peak = _rss_kib("VmHWM")
        con.close()
        log.close()
    src.stop()
    if _C_BINARY is not None:
        for f in _C_BINARY.parent.iterdir():
            f.unlink()
        _C_BINARY.parent.rmdir()
    print(f"{before} {peak} {wall:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller streams, one repetition")
    ap.add_argument(
        "--log-dir",
        type=Path,
        default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
        help="where the consoles write their board logs (default /dev/shm: measure the console, not the"
        " disk; give a disk directory to include it)",
    )
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.log_dir)
        return 0

    mib = 1024 * 1024
    repeat = 1 if args.quick else 3
    big = 32 * mib if args.quick else 128 * mib
    print(f"python {sys.version.split()[0]}, pexpect {pexpect.__version__}, {os.cpu_count()} cores")
    print(f"MB/s from connect to marker matched (median of {repeat}); console: board log on, death strings on")
    cases = [(64, 8 * mib), (1024, big), (65536, big)]
    default_sizes = {64: 2 * mib, 1024: 4 * mib, 65536: 4 * mib}  # pexpect defaults are quadratic-ish
    results: dict[tuple[str, int], float] = {}
    tmp = Path(tempfile.mkdtemp(prefix="lava-bench-", dir=args.log_dir))
    print(f"board logs written to {tmp}")
    try:
        for chunk, total in cases:
            consumers: list[tuple[str, Callable[[int], None], int]] = [
                ("raw recv", lambda p: run_raw(p, 60), total),
                ("console", lambda p: run_console(p, 120, tmp), total),
                ("pexpect-tuned", lambda p: run_pexpect(p, 120, True), total),
                ("pexpect-defaults", lambda p: run_pexpect(p, 60, False), default_sizes[chunk]),
            ]
            for name, fn, size in consumers:
                rate, note = measure(fn, chunk, size, repeat, tmp)
                results[(name, chunk)] = rate
                print(
                    f"chunk={chunk:>6} B  {name:<17} {rate:8.1f} MB/s"
                    f"  ({size / mib:.0f} MiB{', ' + note if note else ''})",
                    flush=True,
                )
        source_kind = "C" if _C_BINARY else "Python"
    finally:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    print(f"(source: {source_kind} program writing one chunk per write())")

    cpu = idle_cpu(5.0, args.log_dir)
    print(f"idle: console waiting 5 s on a silent board used {cpu:.2f} % of a core")

    gib = (256 if args.quick else 1024) * mib
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(gib)]
        + (["--log-dir", str(args.log_dir)] if args.log_dir else []), capture_output=True, text=True, timeout=600
    )
    if out.returncode == 0:
        before, peak, wall = out.stdout.split()
        growth = (int(peak) - int(before)) / 1024
        print(
            f"memory: streaming {gib / mib:.0f} MiB through a console (log on) took {float(wall):.1f} s;"
            f" RSS {int(before) / 1024:.1f} MiB -> peak {int(peak) / 1024:.1f} MiB (growth {growth:.1f} MiB)"
        )
    else:
        print(f"memory: child failed: {out.stderr.strip()[-500:]}")

    x, y = results[("console", 1024)], results[("pexpect-tuned", 1024)]
    print(f"console MB/s={x:.1f} pexpect-tuned MB/s={y:.1f} ratio={x / y if y else float('inf'):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
