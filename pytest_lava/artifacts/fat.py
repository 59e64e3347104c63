"""FAT12/16/32: a small reader of our own, straight into the tarball (no mtools)."""

from __future__ import annotations

import calendar
import struct
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..core.deadline import Deadline
from ..core.errors import ArtifactError
from . import limits
from .fsnames import _check_entry
from .limits import _size


class _Fat:
    """FAT12/16/32 with long names, read with every field bounded: clusters inside the volume,
    each cluster used once (no loops, no cross-links), directories at most 65536 entries."""

    def __init__(self, f: IO[bytes], start: int, end: int, where: str, deadline: Deadline) -> None:
        self.f, self.start, self.end, self.where, self.deadline = f, start, end, where, deadline
        bs = self._read(start, 512)
        bps, spc, reserved, nfats, root_entries, total16, fat16 = struct.unpack_from("<HBHBHHxH", bs, 11)
        total32, fat32 = struct.unpack_from("<II", bs, 32)
        self.root_cluster = struct.unpack_from("<I", bs, 44)[0]
        total, fat_sectors = total16 or total32, fat16 or fat32
        if (bps not in (512, 1024, 2048, 4096) or spc not in (1, 2, 4, 8, 16, 32, 64, 128) or not reserved
                or not 1 <= nfats <= 4 or not total or not fat_sectors):
            raise ArtifactError(f"{where}: malformed FAT boot sector")
        root_sectors = (root_entries * 32 + bps - 1) // bps
        first_data = reserved + nfats * fat_sectors + root_sectors
        if first_data >= total:
            raise ArtifactError(f"{where}: malformed FAT boot sector (no data area)")
        self.clusters = (total - first_data) // spc
        self.bits = 12 if self.clusters < 4085 else 16 if self.clusters < 65525 else 32
        self.cluster_size = bps * spc
        self.data = start + first_data * bps
        self.root = (start + (reserved + nfats * fat_sectors) * bps, root_entries * 32)
        need = ((self.clusters + 2) * self.bits + 7) // 8
        if need > fat_sectors * bps:
            raise ArtifactError(f"{where}: malformed FAT (the table is too small for {self.clusters} clusters)")
        if need > limits.MAX_FAT_TABLE:
            raise ArtifactError(f"{where}: FAT larger than {_size(limits.MAX_FAT_TABLE)}")
        self.fat = self._read(start + reserved * bps, need)
        self.used = bytearray(self.clusters + 2)

    def _read(self, offset: int, n: int) -> bytes:
        if offset < self.start or offset + n > self.end:
            raise ArtifactError(f"{self.where}: the FAT filesystem points outside its partition (byte {offset})")
        self.f.seek(offset)
        data = self.f.read(n)
        if len(data) < n:
            raise ArtifactError(f"{self.where}: the image is truncated (byte {offset})")
        return data

    def _next(self, c: int) -> int | None:
        if self.bits == 12:
            v = int.from_bytes(self.fat[c + c // 2:c + c // 2 + 2], "little")
            v = v >> 4 if c & 1 else v & 0xFFF
            return None if v >= 0xFF8 else v
        if self.bits == 16:
            v = int.from_bytes(self.fat[2 * c:2 * c + 2], "little")
            return None if v >= 0xFFF8 else v
        v = int.from_bytes(self.fat[4 * c:4 * c + 4], "little") & 0x0FFFFFFF
        return None if v >= 0x0FFFFFF8 else v

    def _chain(self, first: int, what: str, limit: int | None = None) -> Iterator[int]:
        """The clusters of a chain (at most ``limit``), each marked used: a loop or a cluster
        shared with another file is an error."""
        c: int | None = first
        n = 0
        while c is not None and (limit is None or n < limit):
            if not 2 <= c < self.clusters + 2:
                raise ArtifactError(f"{self.where}: {what}: cluster {c} is outside the filesystem")
            if self.used[c]:
                raise ArtifactError(f"{self.where}: {what}: cluster {c} is used twice (loop or cross-link)")
            self.used[c] = 1
            n += 1
            yield c
            c = self._next(c)
        if limit is not None and n < limit:
            raise ArtifactError(f"{self.where}: {what}: the cluster chain is shorter than the file")

    def _cluster(self, c: int) -> bytes:
        return self._read(self.data + (c - 2) * self.cluster_size, self.cluster_size)

    def _dir_data(self, first: int | None, what: str) -> bytes:
        if first is None:  # the FAT12/16 root directory
            return self._read(*self.root)
        out = bytearray()
        for c in self._chain(first, what):
            out += self._cluster(c)
            if len(out) > 65536 * 32:
                raise ArtifactError(f"{self.where}: {what}: directory larger than 65536 entries")
        return bytes(out)

    def _entries(self, data: bytes, path: str) -> list[tuple[str, int, int, int, int]]:
        """(name, attributes, first cluster, size, mtime) of a directory's entries."""
        out: list[tuple[str, int, int, int, int]] = []
        names: set[bytes] = set()
        lfn: dict[int, bytes] = {}
        lfn_sum = lfn_total = -1
        index = 0
        for off in range(0, len(data) - 31, 32):
            e = data[off:off + 32]
            if e[0] == 0:
                break
            if e[0] == 0xE5:
                lfn = {}
                continue
            attr = e[11]
            if attr & 0x3F == 0x0F:  # a long-name slot
                if e[0] & 0x40:
                    lfn, lfn_total, lfn_sum = {}, e[0] & 0x1F, e[13]
                lfn[e[0] & 0x1F] = e[1:11] + e[14:26] + e[28:32]
                continue
            if attr & 0x08:  # volume label
                lfn = {}
                continue
            short = (b"\xe5" + e[1:11]) if e[0] == 0x05 else e[:11]
            index += 1
            if short in (b".          ", b"..         ") and index <= 2 and path:
                lfn = {}
                continue
            name = self._long_name(lfn, lfn_total, lfn_sum, e[:11]) or self._short_name(short, e[12])
            lfn = {}
            shown = f"{path}/{name}" if path else name
            _check_entry(name.encode("utf-8", "surrogatepass"), names, self.where, path, shown)
            cluster = struct.unpack_from("<H", e, 26)[0] | (struct.unpack_from("<H", e, 20)[0] << 16
                                                            if self.bits == 32 else 0)
            out.append((name, attr, cluster, struct.unpack_from("<I", e, 28)[0], _fat_time(e)))
        return out

    @staticmethod
    def _long_name(lfn: dict[int, bytes], total: int, checksum: int, short: bytes) -> str | None:
        if not lfn or sorted(lfn) != list(range(1, total + 1)):
            return None
        s = 0
        for b in short:
            s = (((s & 1) << 7) + (s >> 1) + b) & 0xFF
        if s != checksum:
            return None
        raw = b"".join(lfn[i] for i in range(1, total + 1))
        units = [raw[i:i + 2] for i in range(0, len(raw), 2)]
        if b"\0\0" in units:
            units = units[:units.index(b"\0\0")]
        return b"".join(units).decode("utf-16-le", "surrogatepass")

    @staticmethod
    def _short_name(short: bytes, case: int) -> str:
        base, ext = short[:8].rstrip(b" "), short[8:].rstrip(b" ")
        base = base.lower() if case & 0x08 else base  # ASCII letters only, like mtools
        ext = ext.lower() if case & 0x10 else ext
        name = base + b"." + ext if ext else base
        return name.decode("cp850")  # mtools' default code page

    def write_tar(self, out: Path) -> None:
        with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tf:
            top = tarfile.TarInfo(".")
            top.type, top.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(top)
            root = self.root_cluster if self.bits == 32 else None
            self._walk(tf, root, "", 0)

    def _walk(self, tf: tarfile.TarFile, first: int | None, path: str, depth: int) -> None:
        if depth > limits.MAX_FS_DEPTH:
            raise ArtifactError(f"{self.where}: directories nested deeper than {limits.MAX_FS_DEPTH} levels")
        for name, attr, cluster, size, mtime in self._entries(self._dir_data(first, f"/{path}"), path):
            self.deadline.check()
            rel = f"{path}/{name}" if path else name
            ti = tarfile.TarInfo(f"./{rel}")
            ti.mtime = mtime
            if attr & 0x10:
                if not cluster:
                    raise ArtifactError(f"{self.where}: directory /{rel} has no cluster")
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
                self._walk(tf, cluster, rel, depth + 1)
                continue
            ti.mode, ti.size = 0o644, size
            if size == 0:
                tf.addfile(ti)
                continue
            count = (size + self.cluster_size - 1) // self.cluster_size
            tf.addfile(ti, _FatFile(self, self._chain(cluster, f"file /{rel}", count), size))


class _FatFile:
    """A file object over a FAT cluster chain, ``size`` bytes long."""

    def __init__(self, fat: _Fat, clusters: Iterator[int], size: int) -> None:
        self.fat, self.clusters, self.left, self.buf = fat, clusters, size, b""

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        while len(self.buf) < n:
            self.buf += self.fat._cluster(next(self.clusters))
        data, self.buf = self.buf[:n], self.buf[n:]
        self.left -= len(data)
        return data


def _fat_time(e: bytes) -> int:
    t, d = struct.unpack_from("<HH", e, 22)
    try:
        return calendar.timegm((1980 + (d >> 9), (d >> 5) & 15 or 1, d & 31 or 1, t >> 11, (t >> 5) & 63,
                                min((t & 31) * 2, 59), 0, 0, 0))
    except (ValueError, OverflowError):
        return 0
