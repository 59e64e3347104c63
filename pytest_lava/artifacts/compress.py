"""Compressed artifacts: gz, bz2, xz recognised by magic number and read as a stream, with a cap."""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..core.deadline import Deadline
from ..core.errors import ArtifactError, InfrastructureError
from . import limits
from .limits import CHUNK, _size

_MAGIC = ((b"\x1f\x8b", gzip.open, "gz"), (b"BZh", bz2.open, "bz2"), (b"\xfd7zXZ\x00", lzma.open, "xz"))
_DECOMPRESSORS: dict[str, Callable[[IO[bytes]], IO[bytes]]] = {
    "gz": lambda f: gzip.GzipFile(fileobj=f, mode="rb"), "bz2": bz2.BZ2File, "xz": lzma.LZMAFile}


def compression_of(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(6)
    return next((name for magic, _, name in _MAGIC if head.startswith(magic)), None)


def decompress(src: Path, dst: Path, deadline: Deadline | None = None, *, limit: int | None = None,
               label: str | None = None) -> None:
    """Write the decompressed content of ``src`` (gz/bz2/xz, or plain: copied) to ``dst``.

    Streaming (1 MiB at a time); a compressed ``src`` that expands to more than ``limit`` bytes
    (default :data:`limits.MAX_DECOMPRESSED`) is refused and ``dst`` removed. ``label`` names the
    artifact in messages (its URL, say; default: the file name)."""
    limit = limits.MAX_DECOMPRESSED if limit is None else limit
    name = label or src.name
    with open(src, "rb") as f:
        head = f.read(6)
    opener = next((op for magic, op, _ in _MAGIC if head.startswith(magic)), None)
    done = 0
    try:
        with (opener(src, "rb") if opener else open(src, "rb")) as fin, open(dst, "wb") as fout:
            while True:
                try:
                    chunk = fin.read(CHUNK)
                except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError) as exc:
                    raise ArtifactError(f"cannot decompress {name}: {exc}") from None
                if not chunk:
                    break
                done += len(chunk)
                if opener is not None and done > limit:
                    raise ArtifactError(f"{name} decompresses to more than {_size(limit)}, the limit "
                                        "(pytest_lava.artifacts.limits.MAX_DECOMPRESSED); refusing it")
                try:
                    fout.write(chunk)
                except OSError as exc:
                    raise InfrastructureError(f"cannot write {dst}: {exc.strerror or exc}") from None
                if deadline is not None:
                    deadline.check()
    except BaseException:
        dst.unlink(missing_ok=True)
        raise


class _Capped:
    """A read-only stream over ``f`` that refuses to yield more than ``limit`` bytes."""

    def __init__(self, f: IO[bytes], limit: int, what: str) -> None:
        self.f, self.left, self.limit, self.what = f, limit, limit, what

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(CHUNK if n < 0 else n)
        self.left -= len(data)
        if self.left < 0:
            raise ArtifactError(f"{self.what} decompresses to more than {_size(self.limit)}, the limit "
                                "(pytest_lava.artifacts.limits.MAX_DECOMPRESSED); refusing it")
        return data
