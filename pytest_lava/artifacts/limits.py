"""Limits on what a hostile artifact can make the host do, how a refusal shows a size, and
the size of one read.

The caps are module constants, read from this module each time they are used: a lab with bigger
images raises them here (``pytest_lava.artifacts.limits.MAX_DECOMPRESSED = 128 << 30``), a test
lowers them (``monkeypatch.setattr(limits, "MAX_DECOMPRESSED", 1 << 20)``).
"""

from __future__ import annotations

CHUNK = 1 << 20  # bytes read from a stream at a time

MAX_DECOMPRESSED = 64 << 30  # bytes a compressed image or tarball may expand to
MAX_EXTRACTED = 64 << 30  # bytes written on the host when unpacking one tarball (hwpack, .deb)
MAX_TAR_MEMBERS = 2_000_000  # members of one tarball
MAX_FS_ENTRIES = 5_000_000  # directory entries of one partition's filesystem
MAX_FS_DEPTH = 256  # directory nesting in a partition's filesystem
MAX_GPT_ENTRIES = 4096  # GPT partition entries (the usual table has 128)
MAX_LOGICAL_PARTITIONS = 128
MAX_FAT_TABLE = 256 << 20  # bytes of one FAT read into memory
MAX_HWPACK_META = 1 << 20  # bytes of a hwpack's HWPACK file
MAX_TAR_HEADER = 1 << 20  # bytes of one long-name or pax header (tarfile reads them into memory)


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:g} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
