"""Build a partitioned disk image on the host from directory trees: no root, no loop mounts.

Each partition is an ext4 filesystem made by e2fsprogs straight from a directory
(``mke2fs -d``), the dos partition table is written by ``sfdisk`` into a sparse file, and each
filesystem is copied to its offset (zero blocks skipped, so the image stays sparse). This is
what a simulator board boots (the old dispatcher ran ``sudo linaro-media-create --dev fastmodel``
with loop mounts instead). :mod:`.disks` reads such an image back.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..core.deadline import Deadline
from ..core.errors import InfrastructureError

MIB = 1 << 20
CHUNK = MIB


@dataclass(frozen=True)
class PartSpec:
    label: str
    tree: Path  # the files of the filesystem
    min_mib: int = 16


def tree_size(tree: Path) -> tuple[int, int]:
    """(bytes allocated, number of inodes) of a directory tree, symlinks not followed."""
    total, count = 0, 0
    for root, dirs, files in os.walk(tree):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            total += max(st.st_size, st.st_blocks * 512)
            count += 1
    return total, count + 1


def _run(argv: list[str], deadline: Deadline, what: str, stdin: str | None = None) -> str:
    try:
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                           timeout=max(1.0, deadline.remaining_or(600)))
    except FileNotFoundError:
        raise InfrastructureError(f"{argv[0]} not found (apt-get install e2fsprogs fdisk)") from None
    except subprocess.TimeoutExpired:
        raise InfrastructureError(f"{what}: {argv[0]} timed out ({deadline.path})") from None
    if p.returncode != 0:
        raise InfrastructureError(f"{what}: {argv[0]} failed (exit status {p.returncode})",
                                  details=(p.stderr or p.stdout)[-2000:])
    return p.stdout


def make_ext4(tree: Path, out: Path, label: str, deadline: Deadline, min_mib: int = 16) -> int:
    """An ext4 filesystem image of ``tree`` at ``out``, sized to fit with room to spare; its size
    in MiB. Files keep the owners and modes they have on the host."""
    used, inodes = tree_size(tree)
    size_mib = max(min_mib, (used * 3 // 2 + inodes * 512) // MIB + 16)
    out.unlink(missing_ok=True)
    with open(out, "wb") as f:
        f.truncate(size_mib * MIB)
    _run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", label[:16], "-N", str(inodes * 2 + 1024),
          "-O", "^metadata_csum,^64bit", "-E", "lazy_itable_init=1,lazy_journal_init=1", "-d", str(tree), str(out)],
         deadline, f"filesystem {label!r}")
    return size_mib


def _place(fs: Path, disk: Path, offset: int, deadline: Deadline) -> None:
    """Copy ``fs`` into ``disk`` at ``offset``, skipping zero chunks (sparse)."""
    zero = bytes(CHUNK)
    with open(fs, "rb") as src, open(disk, "r+b") as dst:
        pos = 0
        while True:
            chunk = src.read(CHUNK)
            if not chunk:
                break
            if chunk != zero[:len(chunk)]:
                dst.seek(offset + pos)
                dst.write(chunk)
            pos += len(chunk)
            if deadline.expired:
                raise deadline.exceeded(f"writing {disk.name}")


def make_disk(out: Path, parts: list[PartSpec], deadline: Deadline, work: Path) -> dict[str, dict[str, int]]:
    """A sparse dos-labelled disk image at ``out`` with one ext4 primary partition per
    ``parts`` entry (1, 2, …; at most 4), the first one bootable. Returns
    ``{label: {number, start, size}}`` (bytes) as read back from the table."""
    if not 1 <= len(parts) <= 4:
        raise ValueError("make_disk: 1 to 4 partitions")
    images = []
    for i, part in enumerate(parts, 1):
        fs = work / f"part{i}.ext4"
        images.append((fs, make_ext4(part.tree, fs, part.label, deadline, part.min_mib)))
    total_mib = 1 + sum(size for _, size in images) + 1
    tmp = out.with_name(out.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as f:
        f.truncate(total_mib * MIB)
    lines = ["label: dos", "unit: sectors", ""]
    for i, (_, size) in enumerate(images):
        lines.append(("start=2048, " if i == 0 else "") + f"size={size}MiB, type=83" + (", bootable" if i == 0 else ""))
    _run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(tmp)], deadline, f"partition table of {out.name}",
         stdin="\n".join(lines) + "\n")
    table = json.loads(_run(["sfdisk", "-J", str(tmp)], deadline, f"partition table of {out.name}"))["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    layout: dict[str, dict[str, int]] = {}
    for i, (entry, part, (fs, _)) in enumerate(zip(table["partitions"], parts, images, strict=True), 1):
        start = int(entry["start"]) * sector
        _place(fs, tmp, start, deadline)
        fs.unlink()
        layout[part.label] = {"number": i, "start": start, "size": int(entry["size"]) * sector}
    os.replace(tmp, out)
    return layout


def sparse_copy(src: Path, dst: Path, deadline: Deadline) -> None:
    """Copy a (sparse) disk image without filling its holes."""
    dst.unlink(missing_ok=True)
    with open(dst, "wb") as f:
        f.truncate(src.stat().st_size)
    _place(src, dst, 0, deadline)
