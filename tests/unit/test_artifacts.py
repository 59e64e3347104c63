"""Artifacts on the host: decompression, tarball safety, kernel_matrix, disk image partitions."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
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
    compression_of,
    deb_files,
    decompress,
    partition_tar,
    read_partitions,
    replace_kernel,
    safe_extract,
)
from pytest_lava.core.deadline import Deadline


@pytest.mark.parametrize("opener,name", [(gzip.open, "gz"), (bz2.open, "bz2"), (lzma.open, "xz"), (open, None)])
def test_decompress_by_magic(tmp_path: Path, opener, name) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "f"
    with opener(src, "wb") as f:
        f.write(b"payload" * 1000)
    assert compression_of(src) == name
    decompress(src, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"payload" * 1000


def test_truncated_archive_is_an_artifact_error(tmp_path: Path) -> None:
    src = tmp_path / "f.gz"
    src.write_bytes(gzip.compress(bytes(range(256)) * 400)[:200])
    with pytest.raises(ArtifactError, match="cannot decompress f.gz"):
        decompress(src, tmp_path / "out")


def test_check_tar_accepts_a_rootfs_with_device_nodes(tmp_path: Path) -> None:
    dev = info("./dev/console", tarfile.CHRTYPE)
    dev.devmajor, dev.devminor = 5, 1
    t = tar_of(tmp_path / "ok.tar", [(info("./", tarfile.DIRTYPE), None), (info("./bin", tarfile.DIRTYPE), None),
                                      (info("./bin/busybox"), b"elf"), (info("./bin/sh", tarfile.SYMTYPE, "busybox"),
                                                                        None),
                                      (info("./lib", tarfile.SYMTYPE, "/usr/lib"), None), (dev, None),
                                      (info("./bin/ash", tarfile.LNKTYPE, "./bin/busybox"), None)])
    assert check_tar(t) == 7


@pytest.mark.parametrize("members,why", [
    ([(info("../evil"), b"x")], "'..'"),
    ([(info("/etc/passwd"), b"x")], "absolute"),
    ([(info("./a/../../evil"), b"x")], "'..'"),
    ([(info("./etc", tarfile.SYMTYPE, "/etc"), None), (info("./etc/passwd"), b"x")], "symbolic link"),
    ([(info("./x", tarfile.LNKTYPE, "../../etc/shadow"), None)], "hard link"),
])
def test_check_tar_refuses_escapes(tmp_path: Path, members, why: str) -> None:  # type: ignore[no-untyped-def]
    t = tar_of(tmp_path / "bad.tar", members)
    with pytest.raises(ArtifactError, match=why):
        check_tar(t)


def test_safe_extract_skips_device_nodes_and_refuses_escapes(tmp_path: Path) -> None:
    dev = info("./dev/sda", tarfile.BLKTYPE)
    t = tar_of(tmp_path / "t.tar", [(info("./ok.txt"), b"fine"), (dev, None)])
    notes: list[str] = []
    safe_extract(t, tmp_path / "out", notes.append)
    assert (tmp_path / "out/ok.txt").read_text() == "fine"
    assert not (tmp_path / "out/dev/sda").exists() and "dev/sda" in notes[0]
    bad = tar_of(tmp_path / "bad.tar", [(info("../escape.txt"), b"x")])
    with pytest.raises(ArtifactError):
        safe_extract(bad, tmp_path / "out2")
    assert not (tmp_path / "escape.txt").exists()


# --- kernel_matrix -----------------------------------------------------------------------------

def fake_deb(path: Path, kver: str, compress: str = "xz") -> Path:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode=f"w:{compress}") as tf:
        for name, content in ((f"./boot/vmlinuz-{kver}", f"kernel {kver}".encode()),
                              (f"./lib/modules/{kver}/kernel/x.ko", b"ko")):
            ti = tarfile.TarInfo(name)
            ti.size = len(content)
            tf.addfile(ti, io.BytesIO(content))
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", lzma.compress(b"")),
               (f"data.tar.{compress}", data.getvalue())]
    out = b"!<arch>\n"
    for name, blob in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(blob):<10}`\n".encode() + blob
        if len(blob) % 2:
            out += b"\n"
    path.write_bytes(out)
    return path


def lab_hwpack(path: Path, kver: str = "6.1.0-56-arm64") -> Path:
    meta = f"FORMAT=lab-hwpack-1\nKERNEL_PACKAGE=linux-image-{kver}\nKERNEL_VERSION={kver}\nKERNEL=Image\n"
    return tar_of(path, [(info("./", tarfile.DIRTYPE), None), (info("./HWPACK"), meta.encode()),
                         (info("./Image"), b"old kernel"), (info("./initrd.gz"), b"initrd")])


def test_deb_files_pure_python_gz_and_xz(tmp_path: Path) -> None:
    for comp in ("xz", "gz"):
        deb = fake_deb(tmp_path / f"k-{comp}.deb", "9.9.9-test", comp)
        got = deb_files(deb, lambda n: n.startswith("boot/"), tmp_path / comp)
        assert got == ["boot/vmlinuz-9.9.9-test"]
        assert (tmp_path / comp / "boot/vmlinuz-9.9.9-test").read_bytes() == b"kernel 9.9.9-test"


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed")
def test_fake_deb_is_a_real_deb(tmp_path: Path) -> None:
    deb = fake_deb(tmp_path / "k.deb", "9.9.9-test")
    listing = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, timeout=30).stdout
    assert b"vmlinuz-9.9.9-test" in listing


def test_replace_kernel_lab_layout(tmp_path: Path) -> None:
    hw = lab_hwpack(tmp_path / "hw.tar")
    deb = fake_deb(tmp_path / "linux-image-9.9.9-test_1_arm64.deb", "9.9.9-test")
    out = tmp_path / "new.tar"
    assert replace_kernel(hw, deb, "linux-image-", out) == "9.9.9-test"
    with tarfile.open(out) as tf:
        assert tf.extractfile("./Image").read() == b"kernel 9.9.9-test"  # type: ignore[union-attr]
        meta = tf.extractfile("./HWPACK").read().decode()  # type: ignore[union-attr]
        assert tf.extractfile("./initrd.gz").read() == b"initrd"  # type: ignore[union-attr]
    assert "KERNEL_VERSION=9.9.9-test" in meta and "KERNEL_PACKAGE=linux-image-9.9.9-test" in meta
    with pytest.raises(ArtifactError, match="does not match the prefix"):
        replace_kernel(hw, deb, "linux-image-omap", tmp_path / "x.tar")


def test_replace_kernel_linaro_pkgs_layout(tmp_path: Path) -> None:
    hw = tar_of(tmp_path / "hw.tar", [(info("./pkgs", tarfile.DIRTYPE), None),
                                      (info("./pkgs/linux-image-3.0-1_1_armel.deb"), b"old"),
                                      (info("./pkgs/u-boot_1_armel.deb"), b"uboot"), (info("./metadata"), b"m")])
    deb = fake_deb(tmp_path / "linux-image-3.1-2_2_armel.deb", "3.1-2")
    replace_kernel(hw, deb, "linux-image-", tmp_path / "new.tar")
    with tarfile.open(tmp_path / "new.tar") as tf:
        names = sorted(n for n in tf.getnames() if n.endswith(".deb"))
    assert names == ["./pkgs/linux-image-3.1-2_2_armel.deb", "./pkgs/u-boot_1_armel.deb"]


# --- disk images --------------------------------------------------------------------------------

def mbr_entry(ptype: int, lba: int, count: int, boot: bool = False) -> bytes:
    return struct.pack("<B3xB3xII", 0x80 if boot else 0, ptype, lba, count)


def test_read_partitions_mbr_with_logicals(tmp_path: Path) -> None:
    img = bytearray(6 * 1024 * 1024)
    table = mbr_entry(0x83, 2048, 100, True) + mbr_entry(0x0C, 4096, 200) + mbr_entry(0x05, 8192, 1000)
    img[446:446 + len(table)] = table
    img[510:512] = b"\x55\xaa"
    # EBR chain: logical 5 at 8192+63, next EBR at 8192+300 holding logical 6
    e1 = 8192 * 512
    img[e1 + 446:e1 + 478] = mbr_entry(0x83, 63, 50) + mbr_entry(0x05, 300, 200)
    img[e1 + 510:e1 + 512] = b"\x55\xaa"
    e2 = (8192 + 300) * 512
    img[e2 + 446:e2 + 462] = mbr_entry(0x83, 63, 70)
    img[e2 + 510:e2 + 512] = b"\x55\xaa"
    path = tmp_path / "d.img"
    path.write_bytes(bytes(img))
    parts = {p.number: (p.start // 512, p.size // 512, p.type) for p in read_partitions(path)}
    assert parts == {1: (2048, 100, "83"), 2: (4096, 200, "0c"), 5: (8192 + 63, 50, "83"),
                     6: (8192 + 300 + 63, 70, "83")}


def test_read_partitions_gpt(tmp_path: Path) -> None:
    img = bytearray(64 * 1024)
    img[446:462] = mbr_entry(0xEE, 1, 0xFFFFFFFF)
    img[510:512] = b"\x55\xaa"
    hdr = bytearray(92)
    hdr[:8] = b"EFI PART"
    struct.pack_into("<QII", hdr, 72, 2, 4, 128)
    img[512:604] = hdr
    e = bytearray(128)
    e[:16] = b"\x01" * 16
    struct.pack_into("<QQ", e, 32, 34, 133)
    img[1024 + 128:1024 + 256] = e  # second entry; first is empty
    path = tmp_path / "g.img"
    path.write_bytes(bytes(img))
    (p,) = read_partitions(path)
    assert (p.number, p.start, p.size) == (2, 34 * 512, 100 * 512)


def test_no_partition_table(tmp_path: Path) -> None:
    path = tmp_path / "x.img"
    path.write_bytes(bytes(4096))
    with pytest.raises(ArtifactError, match="no partition table"):
        read_partitions(path)


needs_e2fs = pytest.mark.skipif(not (shutil.which("mkfs.ext4") and shutil.which("debugfs") and shutil.which("sfdisk")),
                                reason="needs e2fsprogs and fdisk")


@needs_e2fs
def test_partition_tar_from_an_ext4_image_without_mounting(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/hostname").write_text("linaro\n")
    (tree / "bin").mkdir()
    (tree / "bin/sh").symlink_to("busybox")
    fs = tmp_path / "p2.fs"
    subprocess.run(["truncate", "-s", "8M", str(fs)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(fs)], check=True, timeout=60)
    img = tmp_path / "disk.img"
    subprocess.run(["truncate", "-s", "12M", str(img)], check=True)
    subprocess.run(["sfdisk", "--quiet", str(img)], input="start=2048, size=2048, type=83\nsize=8MiB, type=83\n",
                   text=True, check=True, timeout=30)
    start = read_partitions(img)[1].start
    subprocess.run(["dd", f"if={fs}", f"of={img}", "bs=1M", f"seek={start}", "oflag=seek_bytes", "conv=notrunc",
                    "status=none"], check=True, timeout=60)
    out = tmp_path / "root.tar"
    partition_tar(img, 2, out, Deadline(60, "t"))
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
        assert tf.extractfile("./etc/hostname").read() == b"linaro\n"  # type: ignore[union-attr]
        assert tf.getmember("./bin/sh").issym()
    assert "./lost+found" not in names
    with pytest.raises(ArtifactError, match="unsupported filesystem"):
        partition_tar(img, 1, tmp_path / "p1.tar", Deadline(60, "t"))
    with pytest.raises(ArtifactError, match="has no partition 3"):
        partition_tar(img, 3, tmp_path / "p3.tar", Deadline(60, "t"))
