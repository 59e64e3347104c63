"""Hostile artifacts: nothing a job points at can write outside the harness's directories.

Every artifact here is crafted in the test: ext4 and FAT partitions whose directory entries name
``../..`` paths, duplicates and loops; tarballs whose symlinks are spelled ``.//x``, chained,
absolute, or hard-linked out; malformed GPT/MBR tables; .deb files with impossible ar sizes;
decompression bombs against a lowered cap. Each test checks the error is a clear
:class:`ArtifactError` (kind ``job``: the job's fault, never the board's) naming the entry or
field, and that the would-be target outside the output directory does not exist.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest
from tarballs import info, tar_of

from pytest_lava.artifacts import (
    ArtifactError,
    check_tar,
    deb_data,
    deb_files,
    decompress,
    limits,
    lookup,
    partition_tar,
    read_partitions,
    replace_kernel,
    safe_extract,
)
from pytest_lava.core.deadline import Deadline
from pytest_lava.core.errors import InfrastructureError, JobError, kind_of

needs_e2fs = pytest.mark.skipif(not (shutil.which("mkfs.ext4") and shutil.which("debugfs")),
                                reason="needs e2fsprogs (mkfs.ext4, debugfs)")
needs_mkfs_vfat = pytest.mark.skipif(shutil.which("mkfs.vfat") is None, reason="needs dosfstools (mkfs.vfat)")


def test_artifact_errors_are_the_jobs_fault() -> None:
    exc = ArtifactError("bad image")
    assert isinstance(exc, JobError) and not isinstance(exc, InfrastructureError)
    assert kind_of(exc) == "job" and str(exc) == "bad image" and exc.problems[0].reason == "bad image"


# --- disk images: helpers -----------------------------------------------------------------------

def disk_with(fs: Path, out: Path, ptype: int = 0x83) -> Path:
    """A raw disk image: an MBR with one partition (at 1 MiB) holding the filesystem ``fs``."""
    data = fs.read_bytes()
    mbr = bytearray(512)
    mbr[446:462] = struct.pack("<B3xB3xII", 0, ptype, 2048, (len(data) + 511) // 512)
    mbr[510:512] = b"\x55\xaa"
    out.write_bytes(bytes(mbr) + bytes(2048 * 512 - 512) + data)
    return out


def ext4(tmp_path: Path, tree: Path, name: str = "p.fs") -> Path:
    fs = tmp_path / name
    with open(fs, "wb") as f:
        f.truncate(8 << 20)
    # no metadata checksums: the raw edits below stay valid (an attacker recomputes them anyway)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^metadata_csum", "-d", str(tree), str(fs)], check=True,
                   timeout=60)
    return fs


def dirent_at(image: bytearray, name: bytes) -> int:
    """Offset of the (only) directory entry named ``name``: its inode field."""
    offsets = []
    start = 0
    while (i := image.find(name, start)) >= 0:
        if i >= 8 and image[i - 2] == len(name):
            offsets.append(i - 8)
        start = i + 1
    assert len(offsets) == 1, f"{name!r}: {len(offsets)} directory entries"
    return offsets[0]


def rename_entry(fs: Path, old: bytes, new: bytes) -> None:
    """Give a directory entry another name of the same length, in the raw image bytes."""
    assert len(old) == len(new)
    img = bytearray(fs.read_bytes())
    at = dirent_at(img, old)
    img[at + 8:at + 8 + len(old)] = new
    fs.write_bytes(bytes(img))


def escaping_name(target: Path) -> bytes:
    """A name that, joined to any directory, is ``target`` (enough ``../`` to reach ``/``)."""
    name = b"../" * 40 + str(target).lstrip("/").encode()
    assert len(name) <= 255
    return name


def take(image: Path, tmp_path: Path, number: int = 1) -> Path:
    out_dir = tmp_path / "harness" / "cache" / "entry"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "part.tar"
    partition_tar(image, number, out, Deadline(120, "t"))
    return out


# --- 1. ext4 partitions: names are checked before anything is written ---------------------------

@needs_e2fs
def test_ext4_entry_with_a_slash_writes_nothing_outside(tmp_path: Path) -> None:
    target = tmp_path / "outside" / "pwned"
    target.parent.mkdir()
    hostile = escaping_name(target)
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/hostname").write_text("linaro\n")
    (tree / "etc" / ("A" * len(hostile))).write_text("evil\n")
    fs = ext4(tmp_path, tree)
    rename_entry(fs, b"A" * len(hostile), hostile)
    img = disk_with(fs, tmp_path / "disk.img")
    with pytest.raises(ArtifactError) as info:
        take(img, tmp_path)
    msg = str(info.value)
    assert "unsafe entry '../../../" in msg and "pwned" in msg and "name contains '/'" in msg
    assert "directory /etc" in msg and "disk.img partition 1" in msg
    assert not target.exists() and not list(target.parent.iterdir())
    assert not (tmp_path / "harness/cache/entry/part.tar").exists()
    assert [p.name for p in (tmp_path / "harness/cache/entry").iterdir()] == []  # no temporary left


@needs_e2fs
@pytest.mark.parametrize("old,new,why", [
    (b"AB", b"..", "a second '..' entry"),
    (b"C", b".", "a second '.' entry"),
    (b"NULNAME", b"NUL\0AME", "name contains NUL"),
    (b"EOLNAME", b"EOL\nAME", "name contains a newline"),
])
def test_ext4_dot_nul_and_newline_names_are_refused(tmp_path: Path, old: bytes, new: bytes, why: str) -> None:
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / old.decode()).write_text("x")
    fs = ext4(tmp_path, tree)
    rename_entry(fs, old, new)
    with pytest.raises(ArtifactError, match=why) as info:
        take(disk_with(fs, tmp_path / "disk.img"), tmp_path)
    assert "directory /d" in str(info.value)


@needs_e2fs
def test_ext4_duplicate_name_cannot_write_through_a_symlink(tmp_path: Path) -> None:
    """A symlink ``etc`` -> outside, then a directory also named ``etc``: debugfs would create the
    link, then write the directory's files through it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    tree = tmp_path / "tree"
    (tree / "etd").mkdir(parents=True)
    (tree / "etd/passwd").write_text("root::0:0\n")
    (tree / "etc").symlink_to(outside)
    fs = ext4(tmp_path, tree)
    rename_entry(fs, b"etd", b"etc")
    with pytest.raises(ArtifactError, match="unsafe entry 'etc'.*a second entry of the same name"):
        take(disk_with(fs, tmp_path / "disk.img"), tmp_path)
    assert list(outside.iterdir()) == []


@needs_e2fs
def test_ext4_directory_loop_is_refused(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "a/loop").mkdir(parents=True)
    fs = ext4(tmp_path, tree)
    img = bytearray(fs.read_bytes())
    at = dirent_at(img, b"loop")
    img[at:at + 4] = struct.pack("<I", 2)  # a/loop is the root directory again
    fs.write_bytes(bytes(img))
    with pytest.raises(ArtifactError, match=r"directory /a/loop is linked twice"):
        take(disk_with(fs, tmp_path / "disk.img"), tmp_path)


@needs_e2fs
def test_ext4_clean_partition_still_unpacks(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/hostname").write_text("linaro\n")
    (tree / "bin").mkdir()
    (tree / "bin/sh").symlink_to("busybox")
    (tree / "lib").symlink_to("/usr/lib")  # absolute links are normal in a root filesystem
    (tree / "odd name \xe9").write_text("x")
    out = take(disk_with(ext4(tmp_path, tree), tmp_path / "disk.img"), tmp_path)
    with tarfile.open(out) as tf:
        assert tf.extractfile("./etc/hostname").read() == b"linaro\n"  # type: ignore[union-attr]
        assert tf.getmember("./lib").linkname == "/usr/lib"
        assert "./odd name \xe9" in tf.getnames() and "./lost+found" not in tf.getnames()
    assert check_tar(out) > 0


# --- 1b. FAT partitions: our own reader, names checked, clusters bounded ------------------------

def fat16(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    fs = tmp_path / "fat.fs"
    with open(fs, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.vfat", "-F", "16", str(fs)], check=True, capture_output=True, timeout=60)
    bs = fs.read_bytes()[:512]
    bps, spc, reserved, nfats, root_entries = struct.unpack_from("<HBHBH", bs, 11)
    fat_sectors = struct.unpack_from("<H", bs, 22)[0]
    root = (reserved + nfats * fat_sectors) * bps
    geo = {"bps": bps, "cluster": bps * spc, "fat": reserved * bps, "fat_size": fat_sectors * bps, "nfats": nfats,
           "root": root, "data": root + root_entries * 32}
    return fs, geo


def lfn_entries(name: str, short: bytes) -> bytes:
    """The long-name slots for ``name`` (last slot first, as stored) for the 8.3 entry ``short``."""
    s = 0
    for b in short:
        s = (((s & 1) << 7) + (s >> 1) + b) & 0xFF
    units = name.encode("utf-16-le") + b"\0\0"
    units += b"\xff" * (-len(units) % 26)
    slots = [units[i:i + 26] for i in range(0, len(units), 26)]
    out = b""
    for n in range(len(slots), 0, -1):
        u = slots[n - 1]
        seq = n | (0x40 if n == len(slots) else 0)
        out += bytes([seq]) + u[:10] + b"\x0f\x00" + bytes([s]) + u[10:22] + b"\0\0" + u[22:26]
    return out


def fat_add_file(fs: Path, geo: dict[str, int], slot: int, name: str, short: bytes, data: bytes,
                 cluster: int, *, next_cluster: int = 0xFFFF) -> None:
    """Put a file in the root directory (entry ``slot``) of a FAT16 image, one cluster of data."""
    img = bytearray(fs.read_bytes())
    entry = bytearray(32)
    entry[:11] = short
    entry[11] = 0x20
    struct.pack_into("<HI", entry, 26, cluster, len(data))
    raw = lfn_entries(name, short) + bytes(entry)
    at = geo["root"] + 32 * slot
    img[at:at + len(raw)] = raw
    for i in range(geo["nfats"]):
        struct.pack_into("<H", img, geo["fat"] + i * geo["fat_size"] + 2 * cluster, next_cluster)
    off = geo["data"] + (cluster - 2) * geo["cluster"]
    img[off:off + len(data)] = data
    fs.write_bytes(bytes(img))


@needs_mkfs_vfat
def test_fat_long_name_with_a_slash_writes_nothing_outside(tmp_path: Path) -> None:
    target = tmp_path / "outside" / "pwned"
    target.parent.mkdir()
    fs, geo = fat16(tmp_path)
    fat_add_file(fs, geo, 0, "Hello World.txt", b"HELLOW~1TXT", b"hello\n", 2)
    fat_add_file(fs, geo, 3, escaping_name(target).decode(), b"EVIL    TXT", b"evil\n", 3)  # after 3 slots
    with pytest.raises(ArtifactError) as info:
        take(disk_with(fs, tmp_path / "disk.img", 0x0E), tmp_path)
    assert "unsafe entry '../../" in str(info.value) and "name contains '/'" in str(info.value)
    assert not target.exists() and not list(target.parent.iterdir())


@needs_mkfs_vfat
@pytest.mark.parametrize("name,why", [("..", "a second '..' entry"), (".", "a second '.' entry")])
def test_fat_dot_names_are_refused(tmp_path: Path, name: str, why: str) -> None:
    fs, geo = fat16(tmp_path)
    fat_add_file(fs, geo, 0, name, b"DOTS    TXT", b"x", 2)
    with pytest.raises(ArtifactError, match=why):
        take(disk_with(fs, tmp_path / "disk.img", 0x0E), tmp_path)


@needs_mkfs_vfat
@pytest.mark.parametrize("next_cluster,why", [(2, "used twice"), (0x7FFF, "outside the filesystem")])
def test_fat_cluster_loops_and_wild_clusters_are_refused(tmp_path: Path, next_cluster: int, why: str) -> None:
    fs, geo = fat16(tmp_path)
    fat_add_file(fs, geo, 0, "big.bin", b"BIG     BIN", b"x" * 10, 2, next_cluster=next_cluster)
    data = fs.read_bytes()
    short_at = data.index(b"BIG     BIN", geo["root"])
    img = bytearray(data)
    struct.pack_into("<I", img, short_at + 28, 100 * geo["cluster"])  # size needs 100 clusters
    fs.write_bytes(bytes(img))
    with pytest.raises(ArtifactError, match=f"file /big.bin.*{why}"):
        take(disk_with(fs, tmp_path / "disk.img", 0x0E), tmp_path)


@needs_mkfs_vfat
def test_fat_clean_partition_unpacks_without_mtools(tmp_path: Path) -> None:
    fs, geo = fat16(tmp_path)
    fat_add_file(fs, geo, 0, "Hello World.txt", b"HELLOW~1TXT", b"hello\n", 2)
    out = take(disk_with(fs, tmp_path / "disk.img", 0x0E), tmp_path)
    with tarfile.open(out) as tf:
        assert tf.getnames() == [".", "./Hello World.txt"]
        assert tf.extractfile("./Hello World.txt").read() == b"hello\n"  # type: ignore[union-attr]


@pytest.mark.skipif(not (shutil.which("mkfs.vfat") and shutil.which("mcopy")), reason="needs dosfstools and mtools")
@pytest.mark.parametrize("bits,size", [("12", 4), ("16", 32), ("32", 300)])
def test_fat_reader_agrees_with_mtools(tmp_path: Path, bits: str, size: int) -> None:
    src = tmp_path / "src"
    (src / "Sub/Deeper Dir").mkdir(parents=True)
    (src / "README.TXT").write_text("hi\n")
    (src / "A Long File Name.dat").write_bytes(os.urandom(5000))
    (src / "Sub/big.bin").write_bytes(os.urandom(300_000))
    (src / "Sub/zero").write_bytes(b"")
    for i in range(40):
        (src / f"Sub/Deeper Dir/f{i}.txt").write_text(str(i))
    fs = tmp_path / "fat.fs"
    with open(fs, "wb") as f:
        f.truncate(size << 20)
    subprocess.run(["mkfs.vfat", "-F", bits, str(fs)], check=True, capture_output=True, timeout=60)
    subprocess.run(["mcopy", "-s", "-i", str(fs), *map(str, src.iterdir()), "::/"], check=True, timeout=60)
    out = take(disk_with(fs, tmp_path / "disk.img", 0x0C), tmp_path)
    with tarfile.open(out) as tf:
        got = {m.name[2:]: (tf.extractfile(m).read() if m.isfile() else None)  # type: ignore[union-attr]
               for m in tf if m.name != "."}
    want = {str(p.relative_to(src)): (p.read_bytes() if p.is_file() else None) for p in src.rglob("*")}
    assert got == want


# --- 2. tarballs: one path-safety check of our own ----------------------------------------------

@pytest.fixture(params=["with data_filter", "without data_filter"])
def interpreter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both kinds of interpreter: with the tarfile ``data`` filter, and like Debian 12's Python
    3.11.2, which has none (our own checks must hold alone)."""
    if request.param == "without data_filter" and hasattr(tarfile, "data_filter"):
        monkeypatch.delattr(tarfile, "data_filter")
    return str(request.param)


def escapes(outside: Path) -> list[tuple[str, list[tuple[tarfile.TarInfo, bytes | None]], str]]:
    o = str(outside)
    return [
        ("dot-slash-slash symlink out then a file below it",
         [(info(".//x", tarfile.SYMTYPE, o), None), (info("./x/pwned"), b"evil")],
         "absolute symbolic link|below the symbolic link 'x'"),
        ("dot-slash-slash symlink inside then a file below it (a link used as a directory)",
         [(info("./d", tarfile.DIRTYPE), None), (info(".//x", tarfile.SYMTYPE, "d"), None),
          (info("./x/pwned"), b"evil")], "below the symbolic link 'x'"),
        ("symlink spelled x/. then a file below it",
         [(info("./d/", tarfile.DIRTYPE), None), (info("d/./x", tarfile.SYMTYPE, "../" * 30 + o.lstrip("/")), None),
          (info("./d//x/pwned"), b"evil")], "symbolic link|below the symbolic link"),
        ("a symlink replaced by a file of the same name",
         [(info("./x", tarfile.SYMTYPE, f"{o}/pwned"), None), (info("x"), b"evil")],
         "absolute symbolic link|replaces a symbolic link"),
        ("hard link out with ..", [(info("./h", tarfile.LNKTYPE, "../../../../../../../../" + o.lstrip("/")), None)],
         "hard link"),
        ("absolute hard link", [(info("./h", tarfile.LNKTYPE, f"{o}/pwned"), None)], "hard link"),
        ("hard link through a symlink",
         [(info("./s", tarfile.SYMTYPE, "."), None), (info("./h", tarfile.LNKTYPE, "./s/../x"), None)],
         "'..'|hard link"),
        ("hard link through a symlink member",
         [(info("./s", tarfile.SYMTYPE, "d"), None), (info("./d", tarfile.DIRTYPE), None), (info("./d/f"), b"x"),
          (info("./h", tarfile.LNKTYPE, "s/f"), None)], "through the symbolic link 's'"),
        ("hard link to a symlink",
         [(info("./s", tarfile.SYMTYPE, "."), None), (info("./h", tarfile.LNKTYPE, "s"), None)],
         "hard link to 's', a symbolic link"),
        ("absolute name", [(info(f"{o}/pwned"), b"evil")], "absolute path"),
        ("dot-dot name", [(info("./a/../../pwned"), b"evil")], "'..'"),
    ]


@pytest.mark.parametrize("case", range(11))
def test_safe_extract_refuses_every_escape(tmp_path: Path, interpreter: str, case: int) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    label, members, why = escapes(outside)[case]
    t = tar_of(tmp_path / "bad.tar", members)
    with pytest.raises(ArtifactError, match=why) as exc_info:
        safe_extract(t, tmp_path / "work" / "out")
    assert "unsafe member" in str(exc_info.value), label
    assert list(outside.iterdir()) == [], label
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("case", range(11))
def test_check_tar_refuses_the_same_escapes_for_the_board(tmp_path: Path, case: int) -> None:
    label, members, why = escapes(tmp_path / "outside")[case]
    with pytest.raises(ArtifactError, match="unsafe member"):
        check_tar(tar_of(tmp_path / "bad.tar", members))


def test_link_chain_that_resolves_outside_is_refused(tmp_path: Path, interpreter: str) -> None:
    """Each link stays inside on its own (lexically); together they lead out: p/q/r/s is the
    root, so t = p/q/r/s/../.. is above it. Then a file below t."""
    members = [(info("./p/q/r", tarfile.DIRTYPE), None), (info("./p/q/r/s", tarfile.SYMTYPE, "../../.."), None),
               (info("./t", tarfile.SYMTYPE, "p/q/r/s/../.."), None), (info("./t/pwned"), b"evil")]
    t = tar_of(tmp_path / "chain.tar", members)
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(ArtifactError, match="'./t'|'t'"):
        safe_extract(t, out)
    assert not (tmp_path / "a" / "pwned").exists() and not (tmp_path / "a/b/pwned").exists()
    assert not (out / "t").is_symlink()  # the link that leads out is not left behind
    # just the chain, nothing written through it: still refused
    with pytest.raises(ArtifactError, match="resolves outside|outside"):
        safe_extract(tar_of(tmp_path / "chain2.tar", members[:3]), tmp_path / "a" / "b" / "out2")
    assert not (tmp_path / "a/b/out2/t").is_symlink()


def test_symlink_on_disk_is_never_followed(tmp_path: Path, interpreter: str) -> None:
    """Even when the destination already has a symlink (not from the archive), nothing is written
    through it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "etc").symlink_to(outside)
    with pytest.raises(ArtifactError, match="not a directory on disk|outside|symlink"):
        safe_extract(tar_of(tmp_path / "t.tar", [(info("./etc/passwd"), b"evil")]), out)
    assert list(outside.iterdir()) == []


def test_host_refuses_absolute_symlinks_and_skips_devices_board_accepts_them(tmp_path: Path,
                                                                             interpreter: str) -> None:
    dev = info("./dev/console", tarfile.CHRTYPE)
    dev.devmajor, dev.devminor = 5, 1
    fifo = info("./run/fifo", tarfile.FIFOTYPE)
    rootfs = tar_of(tmp_path / "rootfs.tar", [(info("./lib", tarfile.SYMTYPE, "/usr/lib"), None), (dev, None),
                                              (fifo, None), (info("./ok"), b"fine")])
    assert check_tar(rootfs) == 4  # on the board: a normal root filesystem
    with pytest.raises(ArtifactError, match="absolute symbolic link to '/usr/lib'"):
        safe_extract(rootfs, tmp_path / "out")
    notes: list[str] = []
    safe_extract(tar_of(tmp_path / "devs.tar", [(dev, None), (fifo, None), (info("./ok"), b"fine")]),
                 tmp_path / "out2", notes.append)
    assert (tmp_path / "out2/ok").read_text() == "fine"
    assert not (tmp_path / "out2/dev/console").exists() and not (tmp_path / "out2/run/fifo").exists()
    assert "skipped 2 device node(s)/FIFO(s)" in notes[0]


def test_an_image_tree_keeps_links_to_anywhere_but_the_host_never_follows_them(tmp_path: Path,
                                                                             interpreter: str) -> None:
    """A Debian root filesystem for a host-built disk image: /etc/alternatives links and a
    boot -> /boot link unpack as links; nothing is written or read through them."""
    host_boot = tmp_path / "host-boot"
    host_boot.mkdir()
    (host_boot / "vmlinuz").write_text("the host's kernel")
    rootfs = tar_of(tmp_path / "rootfs.tar", [
        (info("./etc/alternatives/awk", tarfile.SYMTYPE, "/usr/bin/mawk"), None),
        (info("./boot", tarfile.SYMTYPE, str(host_boot)), None),
        (info("./up", tarfile.SYMTYPE, "../../.."), None), (info("./usr/bin/mawk"), b"elf")])
    out = tmp_path / "root"
    safe_extract(rootfs, out, image_tree=True)
    assert os.readlink(out / "etc/alternatives/awk") == "/usr/bin/mawk" and os.readlink(out / "up") == "../../.."
    assert lookup(out, "usr/bin/mawk") == out / "usr/bin/mawk"
    assert lookup(out, "boot/vmlinuz") is None and lookup(out, "etc/alternatives/awk") is None
    assert lookup(out, "../host-boot/vmlinuz") is None and lookup(out, "usr/bin") is None
    through = tar_of(tmp_path / "through.tar", [(info("./boot", tarfile.SYMTYPE, str(host_boot)), None),
                                                (info("./boot/vmlinuz"), b"evil")])
    with pytest.raises(ArtifactError, match="below the symbolic link 'boot'"):
        safe_extract(through, tmp_path / "root2", image_tree=True)
    assert (host_boot / "vmlinuz").read_text() == "the host's kernel"
    with pytest.raises(ArtifactError, match="absolute symbolic link"):
        safe_extract(rootfs, tmp_path / "root3")  # without image_tree: refused as before


def test_safe_extract_keeps_good_content(tmp_path: Path, interpreter: str) -> None:
    suid = info("./bin/busybox")
    suid.mode = 0o4755
    t = tar_of(tmp_path / "ok.tar", [
        (info("./", tarfile.DIRTYPE), None), (info("./bin", tarfile.DIRTYPE), None), (suid, b"elf"),
        (info("./bin/sh", tarfile.SYMTYPE, "busybox"), None), (info("./bin/ash", tarfile.LNKTYPE, "bin/busybox"), None),
        (info("./usr/lib/x", tarfile.SYMTYPE, "../../bin/busybox"), None), (info("./bin/busybox"), b"elf2")])
    out = tmp_path / "out"
    safe_extract(t, out)
    assert (out / "bin/busybox").read_bytes() == b"elf2" and os.readlink(out / "bin/sh") == "busybox"
    assert (out / "bin/ash").read_bytes() == b"elf"  # the hard link kept the first file
    assert not (out / "bin/busybox").stat().st_mode & 0o7000  # no set-id bits on the host
    assert (out / "usr/lib/x").resolve() == (out / "bin/busybox").resolve()


def test_extraction_never_uses_the_filter_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian 12's Python 3.11.2: no ``filter=`` argument, no ``data_filter``."""
    monkeypatch.delattr(tarfile, "data_filter", raising=False)

    def old_extract(*a: object, **kw: object) -> None:
        raise TypeError("extract() got an unexpected keyword argument 'filter'")

    monkeypatch.setattr(tarfile.TarFile, "extract", old_extract)
    monkeypatch.setattr(tarfile.TarFile, "extractall", old_extract)
    safe_extract(tar_of(tmp_path / "t.tar", [(info("./a"), b"1")]), tmp_path / "out")
    deb = kernel_deb(tmp_path / "k.deb", "9.9.9-test")
    assert deb_files(deb, lambda n: n.startswith("boot/"), tmp_path / "deb") == ["boot/vmlinuz-9.9.9-test"]


def kernel_deb(path: Path, kver: str) -> Path:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tf:
        content = f"kernel {kver}".encode()
        ti = info(f"./boot/vmlinuz-{kver}")
        ti.size = len(content)
        tf.addfile(ti, io.BytesIO(content))
    path.write_bytes(ar([("debian-binary", b"2.0\n", None), ("control.tar.xz", lzma.compress(b""), None),
                         ("data.tar.xz", data.getvalue(), None)]))
    return path


def test_kernel_matrix_package_name_cannot_inject(tmp_path: Path) -> None:
    meta = b"FORMAT=lab-hwpack-1\nKERNEL_PACKAGE=linux-image-1\nKERNEL_VERSION=1\nKERNEL=Image\n"
    hw = tar_of(tmp_path / "hw.tar", [(info("./HWPACK"), meta), (info("./Image"), b"old kernel")])
    deb = kernel_deb(tmp_path / "k.deb", "9.9.9-test")
    for bad in ("..", "a/b.deb", "linux-image-x\nKERNEL=../../etc/passwd"):
        with pytest.raises(ArtifactError, match="not a usable package file name"):
            replace_kernel(hw, deb, "linux-image-", tmp_path / "x.tar", deb_name=bad)


# --- 3. malformed partition tables, .deb files, decompression bombs -----------------------------

def mbr(entries: list[tuple[int, int, int]], size: int = 1 << 20) -> bytearray:
    img = bytearray(size)
    for i, (ptype, lba, count) in enumerate(entries):
        img[446 + 16 * i:462 + 16 * i] = struct.pack("<B3xB3xII", 0, ptype, lba, count)
    img[510:512] = b"\x55\xaa"
    return img


def gpt(entries_lba: int = 2, count: int = 128, size: int = 128, image: int = 1 << 20) -> bytearray:
    img = mbr([(0xEE, 1, 0xFFFFFFFF)], image)
    img[512:520] = b"EFI PART"
    struct.pack_into("<QII", img, 512 + 72, entries_lba, count, size)
    return img


@pytest.mark.parametrize("image,why", [
    (gpt(count=0xFFFFFFFF, size=0xFFFFFFF8), "entry size"),
    (gpt(count=0xFFFFFFFF), "4294967295 partition entries"),
    (gpt(size=0), "partition entry size 0"),
    (gpt(size=7), "partition entry size 7"),
    (gpt(entries_lba=1 << 40), "outside the image"),
    (gpt(count=4096, image=64 * 1024), "outside the image"),
    (gpt()[:600], "no GPT header"),
    (mbr([(0x05, 100, 10)], 40 * 512), "outside the image"),
    (mbr([(0x05, 100, 10), (0x0F, 200, 10)]), "more than one extended partition"),
])
def test_malformed_partition_tables_are_clear_errors(tmp_path: Path, image: bytearray, why: str) -> None:
    path = tmp_path / "bad.img"
    path.write_bytes(bytes(image))
    with pytest.raises(ArtifactError, match=why):
        read_partitions(path)


def test_gpt_entry_ending_before_it_starts(tmp_path: Path) -> None:
    img = gpt()
    struct.pack_into("<16s16sQQ", img, 1024 + 128 * 2, b"\x01" * 16, b"\x02" * 16, 100, 50)
    (tmp_path / "g.img").write_bytes(bytes(img))
    with pytest.raises(ArtifactError, match="partition 3 ends at LBA 50, before its start 100"):
        read_partitions(tmp_path / "g.img")


def test_logical_partition_chain_that_loops(tmp_path: Path) -> None:
    img = mbr([(0x83, 2048, 10), (0x05, 100, 1000)])
    e = 100 * 512
    img[e + 446:e + 478] = struct.pack("<B3xB3xII", 0, 0x83, 1, 5) + struct.pack("<B3xB3xII", 0, 0x05, 0, 10)
    img[e + 510:e + 512] = b"\x55\xaa"  # the next EBR is itself
    (tmp_path / "l.img").write_bytes(bytes(img))
    with pytest.raises(ArtifactError, match="chain loops at sector 100"):
        read_partitions(tmp_path / "l.img")


def test_partition_outside_the_image(tmp_path: Path) -> None:
    (tmp_path / "o.img").write_bytes(bytes(mbr([(0x83, 1 << 30, 10)])))
    with pytest.raises(ArtifactError, match="partition 1 starts at byte .* outside the image"):
        partition_tar(tmp_path / "o.img", 1, tmp_path / "o.tar", Deadline(10, "t"))


def ar(members: list[tuple[str, bytes, str | None]]) -> bytes:
    out = b"!<arch>\n"
    for name, blob, size in members:
        field = size if size is not None else str(len(blob))
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{field:<10}`\n".encode() + blob
        if len(blob) % 2:
            out += b"\n"
    return out


@pytest.mark.timeout(20)
@pytest.mark.parametrize("size,why", [
    ("-60", "malformed ar member header at byte 8 .*'debian-binary'"),
    ("-1", "malformed ar member header"),
    ("0x10", "malformed ar member header"),
    ("9999999999", "claims 9999999999 bytes, past the end of the file"),
])
def test_deb_with_impossible_ar_sizes(tmp_path: Path, size: str, why: str) -> None:
    deb = tmp_path / "k.deb"
    deb.write_bytes(ar([("debian-binary", b"2.0\n", size), ("data.tar.xz", b"x" * 100, None)]))
    with pytest.raises(ArtifactError, match=why):
        deb_data(deb)


def test_deb_data_still_found(tmp_path: Path) -> None:
    deb = tmp_path / "k.deb"
    deb.write_bytes(ar([("debian-binary", b"2.0\n", None), ("control.tar.xz", b"c" * 7, None),
                        ("data.tar.xz", b"x" * 100, None)]))
    name, offset, size = deb_data(deb)
    assert (name, size) == ("data.tar.xz", 100) and deb.read_bytes()[offset:offset + size] == b"x" * 100


def test_decompression_bomb_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_DECOMPRESSED", 1 << 20)
    src = tmp_path / "image.img.gz"
    with gzip.open(src, "wb") as f:
        f.write(bytes(5 << 20))
    out = tmp_path / "image.img"
    with pytest.raises(ArtifactError, match=r"decompresses to more than 1.0 MiB.*MAX_DECOMPRESSED"):
        decompress(src, out)
    assert not out.exists()
    decompress(src, out, limit=6 << 20)  # an explicit limit
    assert out.stat().st_size == 5 << 20


def test_compressed_tarball_bomb_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_DECOMPRESSED", 1 << 20)
    t = tmp_path / "t.tar.xz"
    with tarfile.open(t, "w:xz") as tf:
        ti = info("./zeros")
        ti.size = 4 << 20
        tf.addfile(ti, io.BytesIO(bytes(ti.size)))
    with pytest.raises(ArtifactError, match="decompresses to more than"):
        check_tar(t)
    with pytest.raises(ArtifactError, match="decompresses to more than"):
        safe_extract(t, tmp_path / "out")


def test_deb_bomb_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_DECOMPRESSED", 1 << 20)
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tf:
        ti = info("./boot/vmlinuz-1")
        ti.size = 4 << 20
        tf.addfile(ti, io.BytesIO(bytes(ti.size)))
    deb = tmp_path / "k.deb"
    deb.write_bytes(ar([("debian-binary", b"2.0\n", None), ("control.tar.xz", lzma.compress(b""), None),
                        ("data.tar.xz", data.getvalue(), None)]))
    with pytest.raises(ArtifactError, match="decompresses to more than"):
        deb_files(deb, lambda n: True, tmp_path / "out")


def test_extraction_is_capped(tmp_path: Path) -> None:
    t = tar_of(tmp_path / "t.tar", [(info("./a"), b"x" * 1000), (info("./b"), b"y" * 1000)])
    with pytest.raises(ArtifactError, match="more than 1.5 KiB.*MAX_EXTRACTED"):
        safe_extract(t, tmp_path / "out", limit=1500)


def test_giant_long_name_header_is_refused_before_it_is_read(tmp_path: Path) -> None:
    ti = tarfile.TarInfo("././@LongLink")
    ti.type = tarfile.GNUTYPE_LONGNAME
    ti.size = 10 << 30  # tarfile would read it whole into memory
    t = tmp_path / "t.tar"
    t.write_bytes(ti.tobuf(format=tarfile.GNU_FORMAT) + bytes(4096))
    with pytest.raises(ArtifactError, match="tar header of 10737418240 bytes"):
        check_tar(t)
    with pytest.raises(ArtifactError, match="tar header of 10737418240 bytes"):
        safe_extract(t, tmp_path / "out")


def test_messages_name_the_artifact_by_its_label(tmp_path: Path) -> None:
    """The deploy passes the (password-free) URL: cache file names mean nothing to a user."""
    t = tar_of(tmp_path / "derived-123.tar", [(info("/etc/passwd"), b"x")])
    with pytest.raises(ArtifactError, match=r"^http://h/rootfs.tar.gz: unsafe member '/etc/passwd'"):
        check_tar(t, label="http://h/rootfs.tar.gz")
    (tmp_path / "x.img").write_bytes(bytes(4096))
    with pytest.raises(ArtifactError, match=r"^http://h/x.img: no partition table"):
        partition_tar(tmp_path / "x.img", 1, tmp_path / "x.tar", Deadline(10, "t"), label="http://h/x.img")
