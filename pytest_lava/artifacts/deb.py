"""Debian packages: the ``ar`` container parsed with every header checked, files taken from its data archive."""

from __future__ import annotations

import re
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from ..core.errors import ArtifactError, InfrastructureError
from . import limits
from .compress import _Capped
from .extract import _Extractor
from .tarballs import _TAR_ERRORS, _clean_path, _members, _open_tar

_AR_SIZE = re.compile(rb" *([0-9]{1,10}) *")


def deb_data(deb: Path) -> tuple[str, int, int]:
    """Locate ``data.tar.*`` in a .deb (an ``ar`` archive): (member name, offset, size).

    Every header is checked (``\\`\\n`` terminator, a decimal size that fits in the file), so a
    malformed package is an ArtifactError, never a loop."""
    total = deb.stat().st_size
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise ArtifactError(f"{deb.name} is not a Debian package (no ar header)")
        pos = 8
        while True:
            header = f.read(60)
            if len(header) < 60:
                raise ArtifactError(f"{deb.name} has no data.tar member")
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            m = _AR_SIZE.fullmatch(header[48:58])
            if header[58:60] != b"`\n" or m is None:
                raise ArtifactError(f"{deb.name}: malformed ar member header at byte {pos} "
                                    f"(member {name!r}, size field {header[48:58]!r})")
            size = int(m.group(1))
            start = pos + 60
            if start + size > total:
                raise ArtifactError(f"{deb.name}: ar member {name!r} claims {size} bytes, past the end of the file")
            if name.startswith("data.tar"):
                return name, start, size
            pos = start + size + (size & 1)
            f.seek(pos)


def deb_files(deb: Path, wanted: Callable[[str], bool], dest: Path, *, limit: int | None = None) -> list[str]:
    """Extract the members of a .deb's data archive for which ``wanted(name)`` is true (pure
    Python for gz/xz/bz2/plain; ``dpkg-deb --fsys-tarfile`` for zstd and anything else). Only
    regular files are taken, by the same checks as :func:`safe_extract`."""
    name, offset, size = deb_data(deb)
    dest.mkdir(parents=True, exist_ok=True)
    comp = {"data.tar.gz": "gz", "data.tar.xz": "xz", "data.tar.bz2": "bz2", "data.tar": ""}.get(name)
    ex = _Extractor(f"{deb.name}:{name}", dest, limit)
    got: list[str] = []

    def take(tf: tarfile.TarFile) -> None:
        for count, m in enumerate(_members(tf), 1):
            if count > limits.MAX_TAR_MEMBERS:
                raise ArtifactError(f"{deb.name}: more than {limits.MAX_TAR_MEMBERS} members in {name}; refusing it")
            key, why = _clean_path(m.name)
            if m.isreg() and not why and wanted(key):
                ex.extract(tf, m, ex.policy.check(m))
                got.append(key)
            elif not why and ex.policy.problem(m)[1] is None:
                ex.policy.record(m, key)  # not taken, but a later wanted file may not go through it
            elif not why:
                ex.policy.kinds[key] = "other"  # an unsafe member we skip: nothing may go below it

    try:
        if comp is not None:
            with open(deb, "rb") as f:
                f.seek(offset)
                with _open_tar(_Slice(f, size), comp, f"{name} of {deb.name}") as tf:  # type: ignore[arg-type]
                    take(tf)
        else:
            proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL)
            try:
                assert proc.stdout is not None
                with _open_tar(_Capped(proc.stdout, limits.MAX_DECOMPRESSED, f"{name} of {deb.name}"), None,  # type: ignore[arg-type]
                               deb.name) as tf:
                    take(tf)
            finally:
                proc.kill()
                proc.wait(timeout=10)
    except FileNotFoundError as exc:
        if exc.filename == "dpkg-deb":
            raise InfrastructureError(f"{deb.name} has a {name} member: unpacking it needs dpkg-deb "
                                      "(apt-get install dpkg)") from None
        raise ArtifactError(f"cannot unpack {deb.name}: {exc}") from None
    except (ArtifactError, InfrastructureError):
        raise
    except _TAR_ERRORS as exc:
        raise ArtifactError(f"cannot unpack {name} of {deb.name}: {exc}") from None
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
