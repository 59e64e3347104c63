"""Partition tables of a raw disk image: MBR (with logical partitions) and GPT, every field bounded."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ArtifactError
from . import limits


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes
    size: int  # bytes
    type: str  # MBR type byte as hex ("83") or GPT type GUID


_EXTENDED = (0x05, 0x0F, 0x85)


def read_partitions(image: Path, *, label: str | None = None) -> list[Partition]:
    """The partitions of a raw disk image: MBR primaries and logicals (EBR chain), or GPT.

    Every field read from the image is bounded; a malformed table is an ArtifactError (naming
    ``label``, default: the file name)."""
    name = label or image.name
    total = image.stat().st_size
    with open(image, "rb") as f:
        mbr = f.read(512)
        if len(mbr) < 512 or mbr[510:512] != b"\x55\xaa":
            raise ArtifactError(f"{name}: no partition table (MBR signature missing)")
        entries = [struct.unpack_from("<B3xB3xII", mbr, 446 + 16 * i) for i in range(4)]
        if any(t == 0xEE for _, t, _, _ in entries):
            return _gpt(f, name, total)
        if sum(1 for _, t, _, c in entries if t in _EXTENDED and c) > 1:
            raise ArtifactError(f"{name}: malformed MBR (more than one extended partition)")
        parts: list[Partition] = []
        for i, (_, ptype, lba, count) in enumerate(entries, 1):
            if ptype == 0 or count == 0:
                continue
            if ptype in _EXTENDED:
                parts += _logicals(f, lba, name, total)
            else:
                parts.append(Partition(i, lba * 512, count * 512, f"{ptype:02x}"))
    return sorted(parts, key=lambda p: p.number)


def _logicals(f, ext_lba: int, name: str, total: int) -> list[Partition]:  # noqa: ANN001
    out: list[Partition] = []
    ebr_lba, number = ext_lba, 5
    seen: set[int] = set()
    while True:
        if ebr_lba in seen:
            raise ArtifactError(f"{name}: malformed MBR (the logical partition chain loops at sector {ebr_lba})")
        if len(seen) >= limits.MAX_LOGICAL_PARTITIONS:
            raise ArtifactError(f"{name}: malformed MBR (more than {limits.MAX_LOGICAL_PARTITIONS} logical partitions)")
        seen.add(ebr_lba)
        if ebr_lba == 0 or (ebr_lba + 1) * 512 > total:
            raise ArtifactError(f"{name}: malformed MBR (a logical partition table at sector {ebr_lba} "
                                "is outside the image)")
        f.seek(ebr_lba * 512)
        ebr = f.read(512)
        if len(ebr) < 512 or ebr[510:512] != b"\x55\xaa":
            raise ArtifactError(f"{name}: broken logical partition chain at sector {ebr_lba}")
        _, ptype, rel, count = struct.unpack_from("<B3xB3xII", ebr, 446)
        if ptype and count:
            out.append(Partition(number, (ebr_lba + rel) * 512, count * 512, f"{ptype:02x}"))
            number += 1
        _, ntype, nrel, _ = struct.unpack_from("<B3xB3xII", ebr, 462)
        if not ntype:
            return out
        ebr_lba = ext_lba + nrel


def _gpt(f, name: str, total: int) -> list[Partition]:  # noqa: ANN001
    f.seek(512)
    hdr = f.read(92)
    if len(hdr) < 92 or hdr[:8] != b"EFI PART":
        raise ArtifactError(f"{name}: protective MBR but no GPT header")
    entries_lba, count, size = struct.unpack_from("<QII", hdr, 72)
    if not 128 <= size <= 4096 or size % 8:
        raise ArtifactError(f"{name}: malformed GPT (partition entry size {size}; expected 128)")
    if not 1 <= count <= limits.MAX_GPT_ENTRIES:
        raise ArtifactError(f"{name}: malformed GPT ({count} partition entries; at most {limits.MAX_GPT_ENTRIES})")
    if entries_lba < 2 or entries_lba * 512 + count * size > total:
        raise ArtifactError(f"{name}: malformed GPT (the partition entry array at LBA {entries_lba}, "
                            f"{count} x {size} bytes, is outside the image)")
    f.seek(entries_lba * 512)
    table = f.read(count * size)
    if len(table) < count * size:
        raise ArtifactError(f"{name}: malformed GPT (the partition entry array is truncated)")
    parts = []
    for i in range(count):
        e = table[i * size:(i + 1) * size]
        if e[:16] == b"\0" * 16:
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        if last < first:
            raise ArtifactError(f"{name}: malformed GPT (partition {i + 1} ends at LBA {last}, "
                                f"before its start {first})")
        parts.append(Partition(i + 1, first * 512, (last - first + 1) * 512, e[:16].hex()))
    return parts
