"""Files carried into a test image at boot, so that nothing has to travel over the console.

A board type that builds what it boots can put the device-side files in it: QEMU's direct kernel
boot appends one more archive to the initramfs (:func:`initrd_with`: the kernel unpacks every
``newc`` cpio archive of a concatenation, compressed or not, over the one before). What is carried
(:func:`carry_files`): the helpers of ``$LAVA_DIR/bin`` with their ``.version``, the files of the
definitions the next ``lava_test_shell`` will run, and a stamp ``$LAVA_DIR/.carried-<id>`` named
by the boot's random id (and holding it).

The board reports what it carried as a :class:`Carried`. The device runner sends none of those
files and checks, in the first command it runs (a guard around it, in the same line: no extra
round trip), that the stamp is on the booted image: an image that switched to another root
filesystem, or an initramfs the kernel could not unpack, prints a marker instead of running the
command, and the runner sends the files over the console and runs the command then, as before. A
file is skipped only when the bytes it would send are the ones carried, and only once (a second
run of the same path sends it again).
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import posixpath
import secrets
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .helpers import HELPERS, RUNNER_VERSION

STAMP = ".carried"
CPIO_MAGIC = b"070701"
_FileSpec = tuple[str, bytes, str]  # (absolute path on the image, content, octal mode)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Carried:
    """What one boot carried into the image: its stamp's id and each file's digest by path."""

    ident: str
    lava_dir: str
    files: dict[str, str] = field(default_factory=dict)
    verified: bool | None = None  # the stamp was found on the booted image (None: not looked yet)

    @property
    def stamp_path(self) -> str:
        """Named by the boot's id, so the guard is a shell builtin (``[ -e ]``, no ``$(cat)`` fork:
        ~10 ms under TCG) and a stamp of an earlier boot never matches."""
        return f"{self.lava_dir}/{STAMP}-{self.ident}"

    @property
    def stamp_line(self) -> str:
        return f"carried-{self.ident}"


def helper_files(lava_dir: str) -> list[_FileSpec]:
    """``$LAVA_DIR/bin``: the helpers and their ``.version`` (what DeviceRunner.install_helpers sends)."""
    bindir = f"{lava_dir}/bin"
    return [*((f"{bindir}/{name}", text.encode(), "0755") for name, text in HELPERS.items()),
            (f"{bindir}/.version", f"{RUNNER_VERSION}\n".encode(), "0644")]


def carry_files(lava_dir: str, extra: Sequence[_FileSpec] = ()) -> tuple[list[_FileSpec], Carried]:
    """The helpers, ``extra`` (definition files) and the stamp, with the :class:`Carried` that
    describes them."""
    carried = Carried(secrets.token_hex(8), lava_dir)
    files = [*helper_files(lava_dir), *extra]
    for path, data, _mode in files:
        carried.files[path] = digest(data)
    files.append((carried.stamp_path, f"{carried.stamp_line}\n".encode(), "0644"))
    return files, carried


def cpio_newc(files: Sequence[_FileSpec]) -> bytes:
    """An uncompressed ``newc`` cpio archive of ``files`` (absolute paths) owned by root, every
    parent directory first (the kernel's unpacker makes no missing directories)."""
    out = bytearray()
    ino = 1

    def entry(name: str, mode: int, data: bytes = b"") -> None:
        nonlocal ino
        raw = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0)
        out.extend(CPIO_MAGIC + b"".join(b"%08X" % f for f in fields) + raw)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))
        ino += 1

    dirs: list[str] = []
    for path, _data, _mode in files:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.append(d)
    for d in dirs:
        entry(d, 0o040755)
    for path, data, mode in files:
        entry(posixpath.normpath(path).lstrip("/"), 0o100000 | int(mode, 8), data)
    entry("TRAILER!!!", 0)
    out.extend(b"\0" * (-len(out) % 512))
    return bytes(out)


def is_cpio_initrd(path: Path) -> bool:
    """``path`` is a cpio archive, plain or gzip/xz-compressed (an initramfs the kernel extends
    with one more archive), not an old-style ramdisk image or a compression we cannot look into."""
    try:
        with open(path, "rb") as f:
            head = f.read(64 * 1024)
    except OSError:
        return False
    if head.startswith(CPIO_MAGIC[:5]):
        return True
    try:
        if head.startswith(b"\x1f\x8b"):
            return zlib.decompressobj(wbits=31).decompress(head, 6).startswith(CPIO_MAGIC[:5])
        if head.startswith(b"\xfd7zXZ\x00"):
            return lzma.LZMADecompressor().decompress(head, 6).startswith(CPIO_MAGIC[:5])
    except (zlib.error, lzma.LZMAError, EOFError):
        return False
    return False


def initrd_with(original: Path, files: Sequence[_FileSpec], out: Path) -> None:
    """``out``: ``original`` (4-byte aligned) followed by a gzip-compressed archive of ``files``."""
    with open(original, "rb") as src, open(out, "wb") as dst:
        size = 0
        while chunk := src.read(1 << 20):
            dst.write(chunk)
            size += len(chunk)
        dst.write(b"\0" * (-size % 4))
        dst.write(gzip.compress(cpio_newc(files), compresslevel=6, mtime=0))
