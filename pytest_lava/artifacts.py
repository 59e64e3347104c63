"""Host-side handling of test image artifacts: tarballs, hwpacks, kernel packages, disk images.

Everything here works on files, never on the host's own system: no root loop mounts, no device
nodes created on the host, no path ever escaping its target directory.

* :func:`decompress` — gz, bz2, xz (by magic number) to a plain file; the board gets uncompressed
  tarballs (guest-side gunzip under TCG is far slower than the network).
* :func:`check_tar` — refuse a tarball whose members would land outside the directory it is
  unpacked in on the board (absolute names, ``..``, a member below a symlink member, a hard link
  pointing outside).
* :func:`safe_extract` — unpack on the host with the ``data`` filter; device nodes and FIFOs are
  skipped.
* :func:`replace_kernel` — the ``kernel_matrix`` step: a hwpack with its kernel taken from a .deb.
* :func:`read_partitions` / :func:`partition_tar` — MBR (with logical partitions) and GPT parsed
  here; ext2/3/4 contents taken out with e2fsprogs ``debugfs -R rdump`` on ``image?offset=N``,
  FAT with mtools ``mcopy`` when installed.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .deadline import Deadline
from .errors import InfrastructureError

Log = Callable[[str], None]
_MAGIC = ((b"\x1f\x8b", gzip.open, "gz"), (b"BZh", bz2.open, "bz2"), (b"\xfd7zXZ\x00", lzma.open, "xz"))


class ArtifactError(InfrastructureError):
    """An artifact is unusable: unsafe tarball, unknown format, missing partition or kernel."""


# --- compression -----------------------------------------------------------------------------

def compression_of(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(6)
    return next((name for magic, _, name in _MAGIC if head.startswith(magic)), None)


def decompress(src: Path, dst: Path, deadline: Deadline | None = None) -> None:
    """Write the decompressed content of ``src`` (gz/bz2/xz, or plain: copied) to ``dst``."""
    with open(src, "rb") as f:
        head = f.read(6)
    opener = next((op for magic, op, _ in _MAGIC if head.startswith(magic)), None)
    try:
        with (opener(src, "rb") if opener else open(src, "rb")) as fin, open(dst, "wb") as fout:
            for chunk in iter(lambda: fin.read(1 << 20), b""):
                fout.write(chunk)
                if deadline is not None:
                    deadline.check()
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise ArtifactError(f"cannot decompress {src.name}: {exc}") from None


# --- tarballs ----------------------------------------------------------------------------------

def _unsafe_name(name: str) -> str | None:
    p = PurePosixPath(name)
    if p.is_absolute():
        return "absolute path"
    if ".." in p.parts:
        return "'..' in the path"
    return None


def check_tar(path: Path) -> int:
    """Validate every member of an (uncompressed or compressed) tarball; returns the member count.

    Raises ArtifactError naming the first member that could escape the target directory."""
    symlinks: set[PurePosixPath] = set()
    count = 0
    try:
        with tarfile.open(path, "r:*") as tf:
            for m in tf:
                count += 1
                why = _unsafe_name(m.name)
                rel = PurePosixPath(m.name.removeprefix("./")) if not why else None
                if rel is not None and any(parent in symlinks for parent in rel.parents):
                    why = "below a symbolic link of the same archive"
                if not why and m.islnk() and _unsafe_name(m.linkname):
                    why = f"hard link to {m.linkname!r}"
                if why:
                    raise ArtifactError(f"{path.name}: unsafe member {m.name!r} ({why}); refusing to unpack it")
                if m.issym() and rel is not None:
                    symlinks.add(rel)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArtifactError(f"{path.name} is not a readable tarball: {exc}") from None
    return count


def _host_filter(skipped: list[str]) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]:
    def f(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        if member.ischr() or member.isblk() or member.isfifo():
            skipped.append(member.name)
            return None
        try:
            return tarfile.data_filter(member, dest)
        except tarfile.FilterError as exc:
            raise ArtifactError(f"unsafe tar member {member.name!r}: {exc}") from None
    return f


def safe_extract(path: Path, dest: Path, log: Log | None = None) -> None:
    """Unpack a tarball on the host: nothing outside ``dest``, no device nodes, no set-id bits."""
    dest.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    try:
        with tarfile.open(path, "r:*") as tf:
            tf.extractall(dest, filter=_host_filter(skipped))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArtifactError(f"cannot unpack {path.name}: {exc}") from None
    if skipped and log is not None:
        log(f"{path.name}: skipped {len(skipped)} device node(s)/FIFO(s) on the host: {', '.join(skipped[:5])}")


def make_tar(src: Path, out: Path, *, exclude: tuple[str, ...] = ()) -> None:
    """An uncompressed tarball of the contents of ``src`` (names ``./...``, numeric owners kept)."""
    def keep(ti: tarfile.TarInfo) -> tarfile.TarInfo | None:
        rel = ti.name.removeprefix("./")
        return None if rel in exclude else ti

    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tf:
        tf.add(src, arcname=".", filter=keep)


# --- kernel_matrix: a hwpack with another kernel ------------------------------------------------

def deb_data(deb: Path) -> tuple[str, int, int]:
    """Locate ``data.tar.*`` in a .deb (an ``ar`` archive): (member name, offset, size)."""
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise ArtifactError(f"{deb.name} is not a Debian package (no ar header)")
        while True:
            header = f.read(60)
            if len(header) < 60:
                raise ArtifactError(f"{deb.name} has no data.tar member")
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
            if name.startswith("data.tar"):
                return name, f.tell(), size
            f.seek(size + (size & 1), os.SEEK_CUR)


def deb_files(deb: Path, wanted: Callable[[str], bool], dest: Path) -> list[str]:
    """Extract the members of a .deb's data archive for which ``wanted(name)`` is true (pure
    Python for gz/xz/bz2/plain; ``dpkg-deb --fsys-tarfile`` for zstd and anything else)."""
    name, offset, size = deb_data(deb)
    dest.mkdir(parents=True, exist_ok=True)
    comp = {"data.tar.gz": "gz", "data.tar.xz": "xz", "data.tar.bz2": "bz2", "data.tar": ""}.get(name)
    got: list[str] = []
    skipped: list[str] = []
    filt = _host_filter(skipped)

    def take(tf: tarfile.TarFile) -> None:
        for m in tf:
            clean = m.name.removeprefix("./")
            if m.isfile() and wanted(clean):
                m2 = filt(m, str(dest))
                if m2 is not None:
                    tf.extract(m2, dest, filter="fully_trusted")
                    got.append(clean)

    if comp is not None:
        with open(deb, "rb") as f:
            f.seek(offset)
            raw = _Slice(f, size)
            with tarfile.open(fileobj=raw, mode=f"r|{comp}" if comp else "r|") as tf:  # type: ignore[call-overload]
                take(tf)
    else:
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
                take(tf)
        finally:
            proc.kill()
            proc.wait(timeout=10)
    return got


class _Slice:
    """A read-only file object over ``size`` bytes of ``f`` from its current position."""

    def __init__(self, f, size: int) -> None:  # noqa: ANN001
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data


def read_hwpack_meta(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def replace_kernel(hwpack: Path, deb: Path, prefix: str, out: Path, log: Log | None = None,
                   deb_name: str | None = None) -> str:
    """Write to ``out`` (uncompressed tar) ``hwpack`` with the kernel package matching ``prefix``
    replaced by ``deb``. Returns the new kernel version.

    Two hwpack layouts are understood: Linaro's (``pkgs/*.deb``: packages named with the prefix
    are removed, the new .deb added, like linaro-hwpack-replace) and the lab's (an ``HWPACK``
    file naming ``KERNEL=`` and ``KERNEL_PACKAGE=``: the kernel image file is replaced by the
    package's ``boot/vmlinuz-<version>``; the lab's initrd already carries every lab kernel's
    modules). ``deb_name`` is the package's file name as published (the cache stores it under
    another name)."""
    deb_name = deb_name or deb.name
    with tempfile.TemporaryDirectory(prefix="lava-hwpack-", dir=out.parent) as tmp:
        tree = Path(tmp) / "hwpack"
        safe_extract(hwpack, tree, log)
        if (tree / "pkgs").is_dir():
            old = [p for p in (tree / "pkgs").glob("*.deb") if p.name.startswith(prefix)]
            if not old:
                raise ArtifactError(f"kernel_matrix: the hwpack has no package named {prefix}* in pkgs/")
            for p in old:
                p.unlink()
            shutil.copy2(deb, tree / "pkgs" / deb_name)
            version = deb_name.split("_")[0].removeprefix("linux-image-")
        elif (tree / "HWPACK").is_file():
            meta = read_hwpack_meta((tree / "HWPACK").read_text())
            package = meta.get("KERNEL_PACKAGE", "")
            if not package.startswith(prefix):
                raise ArtifactError(f"kernel_matrix: the hwpack's kernel package {package!r} does not match "
                                    f"the prefix {prefix!r}")
            files = deb_files(deb, lambda n: n.startswith("boot/vmlinuz-"), Path(tmp) / "deb")
            if len(files) != 1:
                raise ArtifactError(f"kernel_matrix: {deb_name} holds {len(files)} boot/vmlinuz-* files, not one")
            version = files[0].removeprefix("boot/vmlinuz-")
            kernel = tree / meta.get("KERNEL", "Image")
            if kernel.resolve().parent != tree.resolve():
                raise ArtifactError(f"kernel_matrix: bad KERNEL= in the hwpack: {meta.get('KERNEL')!r}")
            shutil.move(Path(tmp) / "deb" / files[0], kernel)
            meta.update(KERNEL_VERSION=version, KERNEL_PACKAGE=deb_name.split("_")[0], KERNEL_MATRIX=deb_name)
            (tree / "HWPACK").write_text("".join(f"{k}={v}\n" for k, v in meta.items()))
        else:
            raise ArtifactError("kernel_matrix: unknown hwpack layout (neither pkgs/ nor an HWPACK file)")
        make_tar(tree, out)
    if log is not None:
        log(f"kernel_matrix: hwpack {hwpack.name} now carries kernel {version} from {deb_name}")
    return version


# --- disk images -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes
    size: int  # bytes
    type: str  # MBR type byte as hex ("83") or GPT type GUID


def read_partitions(image: Path) -> list[Partition]:
    """The partitions of a raw disk image: MBR primaries and logicals (EBR chain), or GPT."""
    with open(image, "rb") as f:
        mbr = f.read(512)
        if len(mbr) < 512 or mbr[510:512] != b"\x55\xaa":
            raise ArtifactError(f"{image.name}: no partition table (MBR signature missing)")
        entries = [struct.unpack_from("<B3xB3xII", mbr, 446 + 16 * i) for i in range(4)]
        if any(t == 0xEE for _, t, _, _ in entries):
            return _gpt(f, image.name)
        parts: list[Partition] = []
        for i, (_, ptype, lba, count) in enumerate(entries, 1):
            if ptype == 0 or count == 0:
                continue
            if ptype in (0x05, 0x0F, 0x85):
                parts += _logicals(f, lba, image.name)
            else:
                parts.append(Partition(i, lba * 512, count * 512, f"{ptype:02x}"))
    return sorted(parts, key=lambda p: p.number)


def _logicals(f, ext_lba: int, name: str) -> list[Partition]:  # noqa: ANN001
    out: list[Partition] = []
    ebr_lba, number = ext_lba, 5
    for _ in range(128):
        f.seek(ebr_lba * 512)
        ebr = f.read(512)
        if ebr[510:512] != b"\x55\xaa":
            raise ArtifactError(f"{name}: broken logical partition chain at sector {ebr_lba}")
        _, ptype, rel, count = struct.unpack_from("<B3xB3xII", ebr, 446)
        if ptype and count:
            out.append(Partition(number, (ebr_lba + rel) * 512, count * 512, f"{ptype:02x}"))
            number += 1
        _, ntype, nrel, _ = struct.unpack_from("<B3xB3xII", ebr, 462)
        if not ntype:
            break
        ebr_lba = ext_lba + nrel
    return out


def _gpt(f, name: str) -> list[Partition]:  # noqa: ANN001
    f.seek(512)
    hdr = f.read(92)
    if hdr[:8] != b"EFI PART":
        raise ArtifactError(f"{name}: protective MBR but no GPT header")
    entries_lba, count, size = struct.unpack_from("<QII", hdr, 72)
    f.seek(entries_lba * 512)
    table = f.read(count * size)
    parts = []
    for i in range(count):
        e = table[i * size:(i + 1) * size]
        if e[:16] == b"\0" * 16:
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        guid = e[:16]
        parts.append(Partition(i + 1, first * 512, (last - first + 1) * 512, guid.hex()))
    return parts


def filesystem_of(image: Path, part: Partition) -> str:
    with open(image, "rb") as f:
        f.seek(part.start)
        boot = f.read(2048)
    if len(boot) >= 1082 and boot[1080:1082] == b"\x53\xef":
        return "ext"
    if boot[54:59] == b"FAT12" or boot[54:59] == b"FAT16" or boot[82:87] == b"FAT32":
        return "vfat"
    return "unknown"


def partition_tar(image: Path, number: int, out: Path, deadline: Deadline, log: Log | None = None) -> None:
    """Write the files of partition ``number`` of ``image`` to ``out`` (an uncompressed tar)."""
    parts = {p.number: p for p in read_partitions(image)}
    if number not in parts:
        raise ArtifactError(f"{image.name} has no partition {number} (it has {sorted(parts) or 'none'})")
    part = parts[number]
    fs = filesystem_of(image, part)
    with tempfile.TemporaryDirectory(prefix="lava-part-", dir=out.parent) as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        if fs == "ext":
            argv = ["debugfs", "-R", f"rdump / {tree}", f"{image}?offset={part.start}"]
        elif fs == "vfat":
            if shutil.which("mcopy") is None:
                raise ArtifactError(f"{image.name} partition {number} is FAT: taking files out of it needs "
                                    "mtools (apt-get install mtools)")
            argv = ["mcopy", "-s", "-p", "-n", "-i", f"{image}@@{part.start}", "::/", str(tree)]
        else:
            raise ArtifactError(f"{image.name} partition {number}: unsupported filesystem (ext2/3/4 and FAT only)")
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=deadline.remaining_or(1800))
        except FileNotFoundError:
            raise ArtifactError(f"{argv[0]} not found (apt-get install e2fsprogs mtools)") from None
        except subprocess.TimeoutExpired:
            raise ArtifactError(f"{deadline.path}: {argv[0]} on {image.name} timed out") from None
        if p.returncode != 0 or (fs == "ext" and "rdump:" in p.stderr):
            raise ArtifactError(f"{argv[0]} could not read partition {number} of {image.name}: "
                                f"{p.stderr.strip()[-500:]}")
        make_tar(tree, out, exclude=("lost+found",))
    if log is not None:
        log(f"{image.name}: partition {number} ({fs}) -> {out.name}")
