"""A partition of a disk image as a tarball: its filesystem recognised, read by :mod:`.extfs` or :mod:`.fat`."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..core.deadline import Deadline
from ..core.errors import ArtifactError
from .extfs import _ext_take
from .extract import Log
from .fat import _Fat
from .partitions import Partition, read_partitions
from .tarballs import make_tar


def filesystem_of(image: Path, part: Partition) -> str:
    with open(image, "rb") as f:
        f.seek(part.start)
        boot = f.read(2048)
    if len(boot) >= 1082 and boot[1080:1082] == b"\x53\xef":
        return "ext"
    if boot[54:59] == b"FAT12" or boot[54:59] == b"FAT16" or boot[82:87] == b"FAT32":
        return "vfat"
    return "unknown"


def partition_tar(image: Path, number: int, out: Path, deadline: Deadline, log: Log | None = None, *,
                  label: str | None = None) -> None:
    """Write the files of partition ``number`` of ``image`` to ``out`` (an uncompressed tar).

    ``label`` names the image in messages (its URL, say; default: the file name)."""
    name = label or image.name
    parts = {p.number: p for p in read_partitions(image, label=name)}
    if number not in parts:
        raise ArtifactError(f"{name} has no partition {number} (it has {sorted(parts) or 'none'})")
    part = parts[number]
    total = image.stat().st_size
    if part.start < 512 or part.start + 2048 > total:
        raise ArtifactError(f"{name}: partition {number} starts at byte {part.start}, outside the image "
                            f"({total} bytes)")
    fs = filesystem_of(image, part)
    where = f"{name} partition {number}"
    if fs not in ("ext", "vfat"):
        raise ArtifactError(f"{where}: unsupported filesystem (ext2/3/4 and FAT only)")
    try:
        if fs == "ext":
            with tempfile.TemporaryDirectory(prefix="lava-part-", dir=out.parent) as tmp:
                tree = _ext_take(image, part, Path(tmp), deadline, where)
                make_tar(tree, out, exclude=("lost+found",))
        else:
            end = min(part.start + part.size, total)
            with open(image, "rb") as f:
                _Fat(f, part.start, end, where, deadline).write_tar(out)
    except BaseException:
        out.unlink(missing_ok=True)  # never a half-made tarball
        raise
    if log is not None:
        log(f"{name}: partition {number} ({fs}) -> {out.name}")
