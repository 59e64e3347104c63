"""Image builders: busybox trees, initramfs (cpio), tarballs and partitioned disk images.

Everything is built on the host without loop devices or mounts: trees in staging directories,
`cpio` for initramfs, `mkfs.ext4 -d` / `mkfs.vfat` + `mcopy`-free copies for filesystems,
`sfdisk` for the partition table and `dd conv=notrunc,sparse` to place filesystems in the disk.
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import shutil
import stat
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .host import LabError, busybox_applets, module_order, run
from .paths import FILES

MODULES = [
    "crc32c_generic", "virtio_pci", "virtio_mmio", "virtio_blk", "virtio_net", "ext4", "vfat",
    "nls_cp437", "nls_ascii", "nls_utf8", "nls_iso8859_1",
]
PROFILE = """export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root
export PS1='{ps1}'
"""
INITTAB = """::sysinit:/etc/init.d/rcS
{tty}::respawn:-/bin/sh
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/umount -a -r
"""


def fresh(d: Path) -> Path:
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def busybox_tree(root: Path, busybox: Path) -> None:
    """A minimal root: busybox with every applet linked, the usual directories, root user."""
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "etc/init.d",
              "root", "mnt", "var/log", "lib/modules"):
        (root / d).mkdir(parents=True, exist_ok=True)
    add_busybox_applets(root, busybox)
    for name, mode, dev in (("console", 0o600, (5, 1)), ("null", 0o666, (1, 3))):
        node = root / "dev" / name
        if not node.exists():
            os.mknod(node, mode | stat.S_IFCHR, os.makedev(*dev))
    write(root / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
    write(root / "etc/group", "root:x:0:\n")
    for tool in ("mkfs", "mkfs.ext2", "mkfs.ext3", "mkfs.ext4", "mkfs.vfat"):
        dst = root / "sbin" / tool
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        shutil.copy2(FILES / "lab-mkfs", dst)
    shutil.copy2(FILES / "udevadm", root / "sbin/udevadm")


def add_busybox_applets(root: Path, busybox: Path) -> None:
    """busybox as /bin/busybox, linked as every applet whose name no bin/sbin directory has yet."""
    shutil.copy2(busybox, root / "bin/busybox")
    (root / "bin/busybox").chmod(0o755)
    dirs = ("bin", "sbin", "usr/bin", "usr/sbin")
    for applet in busybox_applets():
        link = root / applet.lstrip("/")
        if any((root / d / link.name).exists() or (root / d / link.name).is_symlink() for d in dirs):
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(root / "bin/busybox", link.parent))


def add_modules(root: Path, ktree: Path, kver: str) -> int:
    """Copy the lab's modules (and their dependencies) of kernel kver; write their load order."""
    src = ktree / "lib/modules" / kver
    order = module_order(src, MODULES)
    dst = root / "lib/modules" / kver
    for rel in order:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dst / rel)
    write(dst / "load-order", "\n".join(order) + "\n")
    return len(order)


def system_tree(root: Path, busybox: Path, *, tty: str, hostname: str, ps1: str, label: str) -> None:
    """A busybox system booted by busybox init: rcS mounts, names and networks it; a shell on tty."""
    busybox_tree(root, busybox)
    shutil.copy2(FILES / "rcS", root / "etc/init.d/rcS")
    write(root / "etc/inittab", INITTAB.format(tty=tty))
    write(root / "etc/profile", PROFILE.format(ps1=ps1))
    write(root / "etc/hostname", hostname + "\n")
    write(root / "etc/hosts", f"127.0.0.1 localhost {hostname}\n")
    write(root / "etc/lab-system", label + "\n")


def cpio_gz(root: Path, out: Path, plain: Path | None = None) -> None:
    """newc cpio of root, owned by root, gzip-compressed (what the kernel unpacks as initramfs);
    ``plain``: also keep the uncompressed archive there (a TCG guest spends ~0.5-1 s gunzipping)."""
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    listing = ("\n".join(names) + "\n").encode()
    raw = out.with_suffix(".tmp")
    with open(raw, "wb") as f:
        p = subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"], cwd=root, input=listing,
                           stdout=f, stderr=subprocess.PIPE, timeout=300)
    if p.returncode != 0:
        raise LabError(f"cpio failed: {p.stderr.decode()[-500:]}")
    with open(raw, "rb") as src, gzip.open(out, "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    if plain is None:
        raw.unlink()
    else:
        raw.replace(plain)


def vmlinux_of(bzimage: Path, out: Path) -> None:
    """The uncompressed ELF kernel inside an x86 bzImage (Debian's is xz-compressed), which QEMU
    boots straight into through its PVH entry point (the kernel's ``CONFIG_PVH``): no SeaBIOS
    linuxboot, no decompressor. Under TCG the decompressor alone takes ~6 s of a ~11 s boot, and
    varies with the host's load as much as the rest of the boot together."""
    data = bzimage.read_bytes()
    at = data.find(b"\xfd7zXZ\x00")
    if at < 0:
        raise LabError(f"{bzimage}: no xz stream in the bzImage (kernel not CONFIG_KERNEL_XZ?)")
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[at:])
    if elf[:4] != b"\x7fELF":
        raise LabError(f"{bzimage}: the xz stream is not an ELF kernel")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(elf)
    tmp.replace(out)


def tarball(root: Path, out: Path, *, arcname: str = ".", mode: str = "w") -> None:
    """Tar root (numeric root ownership); mode w, w:gz or w:bz2 (fast levels: the host builds often)."""
    kw = {"compresslevel": 6} if mode in ("w:gz", "w:bz2") else {}
    tmp = out.with_name(out.name + ".tmp")

    def owner(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        return ti

    with tarfile.open(tmp, mode, format=tarfile.GNU_FORMAT, **kw) as tf:  # type: ignore[call-overload]
        tf.add(root, arcname=arcname, filter=owner)
    tmp.rename(out)


@dataclass(frozen=True)
class Part:
    number: int  # partition number as Linux and U-Boot see it (5+ are logical)
    label: str
    size_mib: int
    fstype: str  # ext4 | vfat
    content: Path | None = None  # directory copied into the filesystem
    bootable: bool = False


def mkfs(part: Part, image: Path) -> None:
    run(["truncate", "-s", f"{part.size_mib}M", str(image)])
    if part.fstype == "ext4":
        argv = ["mkfs.ext4", "-q", "-F", "-L", part.label, "-O", "^metadata_csum,^64bit", "-E",
                "lazy_itable_init=1,lazy_journal_init=1"]
        if part.content:
            argv += ["-d", str(part.content)]
        run([*argv, str(image)])
    elif part.fstype == "vfat":
        run(["mkfs.vfat", "-n", part.label[:11], str(image)])
        if part.content and any(part.content.iterdir()):
            raise LabError(f"vfat partition {part.label}: filling it needs mtools; use ext4")
    else:
        raise LabError(f"unknown filesystem {part.fstype}")


def disk(out: Path, parts: list[Part], work: Path) -> dict[str, dict[str, int]]:
    """A sparse dos-labelled disk image; partitions 1-3 primary, 4 extended holding 5+.

    Returns {label: {number, start (bytes), size (bytes)}} as read back from the table.
    """
    primaries = [p for p in parts if p.number <= 3]
    logicals = [p for p in parts if p.number >= 5]
    total = 1 + sum(p.size_mib for p in primaries) + sum(p.size_mib + 1 for p in logicals) + 2
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        tmp.unlink()
    run(["truncate", "-s", f"{total}M", str(tmp)])
    lines = ["label: dos", "unit: sectors", ""]
    for i, p in enumerate(primaries):
        start = "start=2048, " if i == 0 else ""
        lines.append(f"{start}size={p.size_mib}MiB, type={'c' if p.fstype == 'vfat' else '83'}"
                     + (", bootable" if p.bootable else ""))
    if logicals:
        lines.append("type=5")
        for p in logicals:
            lines.append(f"size={p.size_mib}MiB, type={'c' if p.fstype == 'vfat' else '83'}")
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(tmp)], input="\n".join(lines) + "\n")
    table = json.loads(run(["sfdisk", "-J", str(tmp)]))["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    layout: dict[str, dict[str, int]] = {}
    by_number = {int(e["node"].rsplit(tmp.name, 1)[1]): e for e in table["partitions"]}
    for p in parts:
        e = by_number[p.number]
        fs = work / f"part{p.number}.fs"
        mkfs(p, fs)
        start = int(e["start"]) * sector
        run(["dd", f"if={fs}", f"of={tmp}", "bs=1M", f"seek={start}", "oflag=seek_bytes",
             "conv=notrunc,sparse", "status=none"])
        fs.unlink()
        layout[p.label] = {"number": p.number, "start": start, "size": int(e["size"]) * sector}
    tmp.rename(out)
    return layout
