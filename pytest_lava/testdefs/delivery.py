"""A directory tree to the board, by the fastest path it offers: one entry point, :func:`deliver_tree`.

The tree travels as one ``.tar.gz`` made on the host (:func:`pack_tree`) whose LAST member is a
stamp, ``.lava-payload``, holding the payload's random id: a tree on the board with that stamp is
complete (a truncated stream lacks it; gzip's CRC catches a corrupted one).

1. **already there** — the board's copy carries the payload's id: nothing moves (three definitions
   of one repository cost one delivery);
2. **network** — the harness's own image server (:mod:`..imageserver`, 127.0.0.1 only) publishes the
   tarball under an unguessable token; the board streams it with ``wget -O - | tar xzf -`` from
   ``http://<device.host_address>:<port>/...`` (QEMU user networking: 10.0.2.2 is the host's
   loopback) — no copy of the archive on the board, no extra pass over it. Tens of MB take seconds;
3. **console** — the fallback for small payloads only (``extra.lava_console_payload_limit`` bytes,
   default 2 MB), through :class:`.transfer.ConsoleTransfer` (an emulated UART moves 0.16-0.35 MB/s).

A payload the board cannot get (no network and too large for the console) is an
:class:`InfrastructureError` that says so, with the reason the network failed. The board's tree is
replaced atomically: unpacked beside it (``<dest>.new``), then moved into place.

Issue 17's batched console transfer can take the place of :meth:`ConsoleTransfer.push` in
:func:`_by_console` without touching the callers.
"""

from __future__ import annotations

import io
import os
import secrets
import shlex
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.deadline import Deadline
from ..core.errors import InfrastructureError

if TYPE_CHECKING:
    from ..devices.device import Device
    from .device import DeviceRunner

CONSOLE_LIMIT = 2 * 1024 * 1024
STAMP = ".lava-payload"
NETWORK_TIMEOUT = 600.0


@dataclass(frozen=True)
class Payload:
    """A ``.tar.gz`` whose last member ``.lava-payload`` holds ``ident``."""

    path: Path
    ident: str

    @property
    def size(self) -> int:
        return self.path.stat().st_size


@dataclass(frozen=True)
class Delivered:
    method: str  # "present" | "network" | "console"
    size: int  # bytes of the tarball
    seconds: float

    def describe(self, what: str) -> str:
        rate = f", {self.size / self.seconds / 1e6:.1f} MB/s" if self.seconds > 0 and self.method != "present" else ""
        return f"{what}: {self.size / 1e6:.1f} MB by {self.method} in {self.seconds:.1f} s{rate}"


def pack_tree(tree: Path, out: Path, *, exclude: tuple[str, ...] = ()) -> Payload:
    """``out`` (made once: an existing one with its ``.id`` is reused): the tree owned by root,
    without the top-level names in ``exclude``, fast gzip, the stamp last."""
    id_file = out.with_name(out.name + ".id")
    if out.is_file() and id_file.is_file():
        return Payload(out, id_file.read_text().strip())
    ident = secrets.token_hex(16)
    tmp = out.with_name(f"{out.name}.part-{os.getpid()}")
    skip = {f"./{name}" for name in exclude}

    def keep(ti: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if ti.name in skip or any(ti.name.startswith(f"{s}/") for s in skip) or ti.name == f"./{STAMP}":
            return None
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        return ti

    try:
        with tarfile.open(tmp, "w:gz", compresslevel=1, format=tarfile.GNU_FORMAT) as tf:
            tf.add(tree, arcname=".", filter=keep)
            stamp = tarfile.TarInfo(f"./{STAMP}")
            data = f"{ident}\n".encode()
            stamp.size, stamp.mode, stamp.mtime = len(data), 0o644, int(time.time())
            tf.addfile(stamp, io.BytesIO(data))
        os.replace(tmp, out)
        id_file.write_text(ident + "\n")
    except OSError as exc:
        raise InfrastructureError(f"packing {tree} for the board failed: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return Payload(out, ident)


# shell variables on the board: the destination, the directory unpacked beside it, the archive
# (each command line names a path once: a line editor keeps only ~1000 characters of a line)
_VARS = 'lpd={dest}; lpn="$lpd.new"; lpa="$lpd.tgz"'
_FRESH = 'rm -rf "$lpn" "$lpa" && mkdir -p "$lpn"'


def _finish_line(ident: str) -> str:
    """The stamp says the unpacked tree is complete: move ``$lpn`` to ``$lpd`` (a subshell:
    ``exit`` ends it, not the board's shell)."""
    return (f'( [ "$(cat "$lpn/{STAMP}" 2>/dev/null)" = {ident} ] || {{ echo "LAVA_PAYLOAD_BAD incomplete"; '
            'rm -rf "$lpn"; exit 1; }; rm -rf "$lpd" && mv "$lpn" "$lpd" && echo LAVA_PAYLOAD_OK )')


def deliver_tree(runner: DeviceRunner, payload: Payload, dest: str, device: Device, deadline: Deadline, *,
                 log: Callable[[str], None] = lambda _m: None) -> Delivered:
    """Make ``dest`` on the board hold the content of ``payload``; see the module."""
    started = time.monotonic()
    size = payload.size
    shell = runner.shell
    q = shlex.quote(dest)
    have = shell.run(f"cat {q}/{STAMP} 2>/dev/null", deadline).output.strip()
    if have == payload.ident:
        return Delivered("present", size, time.monotonic() - started)
    shell.run(_VARS.format(dest=q), deadline, check=True)
    problem = _by_network(runner, payload, device, deadline, log)
    if problem is None:
        return Delivered("network", size, time.monotonic() - started)
    limit = int(device.extra.get("lava_console_payload_limit", CONSOLE_LIMIT))  # type: ignore[call-overload]
    if size > limit:
        raise InfrastructureError(
            f"{dest}: the payload ({size / 1e6:.1f} MB) cannot reach {device.name}: the network path failed "
            f"({problem}) and the console takes only payloads up to {limit / 1e6:.1f} MB "
            "(extra.lava_console_payload_limit)")
    log(f"{dest}: over the console ({size} bytes): the network path failed: {problem}")
    _by_console(runner, payload, dest, deadline)
    return Delivered("console", size, time.monotonic() - started)


def _by_console(runner: DeviceRunner, payload: Payload, dest: str, deadline: Deadline) -> None:
    shell = runner.shell
    shell.run(_FRESH, deadline, check=True)
    runner.transfer.push(f"{dest}.tgz", payload.path.read_bytes(), deadline)  # checksummed on the board
    shell.run(_VARS.format(dest=shlex.quote(dest)), deadline, check=True)  # the transfer set variables of its own
    shell.run('tar xzf "$lpa" -C "$lpn"; rm -f "$lpa"', deadline)
    out = shell.run(_finish_line(payload.ident), deadline).output
    if "LAVA_PAYLOAD_OK" not in out:
        raise InfrastructureError(f"{dest}: unpacking the payload on the board failed: {_last(out)}")


def _by_network(runner: DeviceRunner, payload: Payload, device: Device, deadline: Deadline,
                log: Callable[[str], None]) -> str | None:
    """``None`` when the board fetched and unpacked the payload, else why not."""
    shell = runner.shell
    if not shell.run("command -v wget >/dev/null 2>&1 && echo yes || echo no", deadline).output.strip().endswith("yes"):
        return "the image has no wget"
    from ..artifacts.imageserver import image_server

    extra = device.extra
    server = image_server(str(extra.get("image_server_bind", "127.0.0.1")),
                          int(extra.get("image_server_port", 0)))  # type: ignore[call-overload]
    item = server.publish(payload.path, "payload.tar.gz")
    url = server.url(item, device.host_address)
    node = deadline.child(min(NETWORK_TIMEOUT, deadline.remaining()), "payload over the network")
    try:
        fetched = shell.run(f'{_FRESH} && wget -q -O - {shlex.quote(url)} | tar xzf - -C "$lpn"', node)
        out = shell.run(_finish_line(payload.ident), node).output
    finally:
        server.unpublish(item)
    if "LAVA_PAYLOAD_OK" in out:
        return None
    log(f"fetching {url} on the board failed (exit {fetched.status}): {_last(fetched.output + chr(10) + out)}")
    return f"wget {url} | tar: {_last(fetched.output)} ({_last(out)})"


def _last(out: str) -> str:
    lines = [ln.strip() for ln in out.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"
