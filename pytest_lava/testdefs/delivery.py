"""A directory tree to the board, by the fastest path it offers: one entry point, :func:`deliver_tree`.

The tree travels as one ``.tar.gz`` (made on the host, :func:`.repos.payload`):

1. **already there** — the board's copy carries the payload's checksum (``.lava-payload``): nothing moves
   (three definitions of one repository cost one delivery);
2. **network** — the harness's own image server (:mod:`..imageserver`, 127.0.0.1 only) publishes the
   tarball under an unguessable token; the board fetches it with ``wget`` from
   ``http://<device.host_address>:<port>/...`` (QEMU user networking: 10.0.2.2 is the host's
   loopback), checks its SHA-256 (or MD5), unpacks it with ``tar``. Tens of MB take seconds;
3. **console** — the fallback for small payloads only (``extra.lava_console_payload_limit`` bytes,
   default 2 MB), through :class:`.transfer.ConsoleTransfer` (an emulated UART moves 0.16-0.35 MB/s).

A payload the board cannot get (no network and too large for the console) is an
:class:`InfrastructureError` that says so, with the reason the network failed. The board's tree is
replaced atomically: unpacked beside it (``<dest>.new``), then moved into place.
"""

from __future__ import annotations

import hashlib
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..deadline import Deadline
from ..errors import InfrastructureError
from ..imageserver import image_server

if TYPE_CHECKING:
    from ..device import Device
    from .device import DeviceRunner

CONSOLE_LIMIT = 2 * 1024 * 1024
STAMP = ".lava-payload"
ARCHIVE = ".lava-payload.tgz"
NETWORK_TIMEOUT = 600.0


@dataclass(frozen=True)
class Delivered:
    method: str  # "present" | "network" | "console"
    size: int  # bytes of the tarball
    seconds: float

    def describe(self, what: str) -> str:
        rate = f", {self.size / self.seconds / 1e6:.1f} MB/s" if self.seconds > 0 and self.method != "present" else ""
        return f"{what}: {self.size / 1e6:.1f} MB by {self.method} in {self.seconds:.1f} s{rate}"


def _digests(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5()  # noqa: S324 - integrity, not security
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


# shell variables on the board: the destination, the directory unpacked beside it, the archive
# (each command line names a path once: a line editor keeps only ~1000 characters of a line)
_VARS = 'lpd={dest}; lpn="$lpd.new"; lpa="$lpn/' + ARCHIVE + '"'
_FRESH = 'rm -rf "$lpn" && mkdir -p "$lpn"'


def _unpack_line(sha: str, md5: str) -> str:
    """Check ``$lpa``, unpack it in ``$lpn``, stamp it, move ``$lpn`` to ``$lpd`` (in a subshell:
    ``exit`` ends it, not the board's shell)."""
    return (f'( h=$( ( sha256sum "$lpa" 2>/dev/null || md5sum "$lpa" ) | cut -d" " -f1 ); '
            f'case "$h" in {sha}|{md5}) ;; *) echo "LAVA_PAYLOAD_BAD checksum $h"; exit 1 ;; esac; '
            'tar xzf "$lpa" -C "$lpn" || { echo "LAVA_PAYLOAD_BAD tar"; exit 1; }; '
            f'rm -f "$lpa"; echo {sha} > "$lpn/{STAMP}"; rm -rf "$lpd" && mv "$lpn" "$lpd" && echo LAVA_PAYLOAD_OK )')


def deliver_tree(runner: DeviceRunner, tarball: Path, dest: str, device: Device, deadline: Deadline, *,
                 log: Callable[[str], None] = lambda _m: None) -> Delivered:
    """Make ``dest`` on the board hold the content of ``tarball`` (a ``.tar.gz``); see the module."""
    started = time.monotonic()
    size = tarball.stat().st_size
    sha, md5 = _digests(tarball)
    shell = runner.shell
    q = shlex.quote(dest)
    have = shell.run(f"cat {q}/{STAMP} 2>/dev/null", deadline).output.strip()
    if have == sha:
        return Delivered("present", size, time.monotonic() - started)
    shell.run(_VARS.format(dest=q), deadline, check=True)
    problem = _by_network(runner, tarball, _unpack_line(sha, md5), device, deadline, log)
    if problem is None:
        return Delivered("network", size, time.monotonic() - started)
    limit = int(device.extra.get("lava_console_payload_limit", CONSOLE_LIMIT))  # type: ignore[call-overload]
    if size > limit:
        raise InfrastructureError(
            f"{dest}: the payload ({size / 1e6:.1f} MB) cannot reach {device.name}: the network path failed "
            f"({problem}) and the console takes only payloads up to {limit / 1e6:.1f} MB "
            "(extra.lava_console_payload_limit)")
    log(f"{dest}: over the console ({size} bytes): the network path failed: {problem}")
    shell.run(_FRESH, deadline, check=True)
    runner.transfer.push(f"{dest}.new/{ARCHIVE}", tarball.read_bytes(), deadline)
    shell.run(_VARS.format(dest=q), deadline, check=True)  # the transfer used variables of its own
    out = shell.run(_unpack_line(sha, md5), deadline).output
    if "LAVA_PAYLOAD_OK" not in out:
        raise InfrastructureError(f"{dest}: unpacking the payload on the board failed: {_last(out)}")
    return Delivered("console", size, time.monotonic() - started)


def _by_network(runner: DeviceRunner, tarball: Path, unpack: str, device: Device,
                deadline: Deadline, log: Callable[[str], None]) -> str | None:
    """``None`` when the board fetched and unpacked the payload, else why not."""
    shell = runner.shell
    if not shell.run("command -v wget >/dev/null 2>&1 && echo yes || echo no", deadline).output.strip().endswith("yes"):
        return "the image has no wget"
    extra = device.extra
    server = image_server(str(extra.get("image_server_bind", "127.0.0.1")),
                          int(extra.get("image_server_port", 0)))  # type: ignore[call-overload]
    item = server.publish(tarball, "payload.tar.gz")
    url = server.url(item, device.host_address)
    node = deadline.child(min(NETWORK_TIMEOUT, deadline.remaining()), "payload over the network")
    try:
        fetched = shell.run(f'{_FRESH} && wget -q -O "$lpa" {shlex.quote(url)}', node)
        out = shell.run(unpack, node).output if fetched.ok else f"wget exited {fetched.status}: {fetched.output}"
    finally:
        server.unpublish(item)
    if "LAVA_PAYLOAD_OK" in out:
        return None
    log(f"fetching {url} on the board failed: {_last(out)}")
    return f"wget from {url}: {_last(out)}"


def _last(out: str) -> str:
    lines = [ln.strip() for ln in out.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"
