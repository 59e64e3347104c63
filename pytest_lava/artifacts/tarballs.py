"""Tarballs: the one path-safety policy for their members, read as a bounded stream.

:func:`check_tar` applies the policy as the board will unpack the tarball; :mod:`.extract`
applies it, stricter, when the host unpacks one. :func:`make_tar` writes a tree as a tarball.
"""

from __future__ import annotations

import lzma
import posixpath
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..core.errors import ArtifactError
from . import limits
from .compress import _DECOMPRESSORS, _Capped, compression_of
from .limits import _size


def _clean_path(name: str) -> tuple[str, str | None]:
    """(the normalised relative form of an archive path, why it is unsafe or None).

    ``./a//b/./c`` is ``a/b/c``; the archive root (``.``, ``./``) is the empty string."""
    if "\0" in name:
        return "", "NUL in the name"
    if name.startswith("/"):
        return "", "absolute path"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return "", "'..' in the path"
    return "/".join(parts), None


def _parents(key: str) -> Iterator[str]:
    """``a``, ``a/b`` for ``a/b/c``."""
    parts = key.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def _kind(m: tarfile.TarInfo) -> str:
    if m.issym():
        return "symlink"
    if m.islnk():
        return "hardlink"
    if m.isdir():
        return "dir"
    if m.isreg():
        return "file"
    if m.ischr() or m.isblk() or m.isfifo():
        return "device"
    return "other"


class _TarPolicy:
    """The one path-safety check for tar members, for the board (:func:`check_tar`: device nodes
    and absolute symlinks are normal in a root filesystem) and for the host (``host=True``:
    symlinks must stay inside, device nodes are not created).

    It is fed the members in archive order and remembers what each normalised path is, so
    spelling (``.//x``, ``x/./``) never hides a symlink, and a later member that goes through or
    replaces a symlink member (a link chain used as a directory) is refused."""

    def __init__(self, archive: str, *, host: bool, image_tree: bool = False) -> None:
        self.archive = archive
        self.host = host
        # a host tree that only goes into a disk image: its links mean what they mean inside the
        # image (absolute ones too) and host code never follows them (:func:`.extract.lookup`)
        self.image_tree = image_tree
        self.kinds: dict[str, str] = {}
        self.count = 0

    def problem(self, m: tarfile.TarInfo) -> tuple[str, str | None]:
        """(normalised path, why the member is unsafe or None)."""
        key, why = _clean_path(m.name)
        if why:
            return key, why
        kind = _kind(m)
        if not key and kind != "dir":
            return key, "names the target directory itself"
        for parent in _parents(key):
            pk = self.kinds.get(parent)
            if pk == "symlink":
                return key, f"below the symbolic link {parent!r} of the same archive"
            if pk is not None and pk != "dir":
                return key, f"below {parent!r}, which is not a directory in the same archive"
        prev = self.kinds.get(key)
        if prev == "symlink":
            return key, "replaces a symbolic link of the same archive"
        if prev == "dir" and kind != "dir":
            return key, "replaces a directory of the same archive"
        if kind == "symlink":
            return key, self._symlink_problem(key, m.linkname)
        if kind == "hardlink":
            return key, self._hardlink_problem(m.linkname)
        if kind == "other":
            return key, f"unsupported member type {m.type!r}"
        return key, None

    def _symlink_problem(self, key: str, target: str) -> str | None:
        if not target or "\0" in target:
            return "symbolic link with an empty or NUL target"
        if not self.host or self.image_tree:  # only writing through a link is dangerous (refused above)
            return None
        if target.startswith("/"):
            return f"absolute symbolic link to {target!r}"
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(key), target))
        if resolved == ".." or resolved.startswith("../"):
            return f"symbolic link to {target!r} points outside the archive"
        return None

    def _hardlink_problem(self, linkname: str) -> str | None:
        tkey, twhy = _clean_path(linkname)
        if twhy:
            return f"hard link to {linkname!r} ({twhy})"
        if not tkey:
            return f"hard link to {linkname!r}, the target directory itself"
        for parent in _parents(tkey):
            if self.kinds.get(parent) == "symlink":
                return f"hard link to {linkname!r} through the symbolic link {parent!r}"
        target_kind = self.kinds.get(tkey)
        if target_kind == "symlink":
            return f"hard link to {linkname!r}, a symbolic link"
        if self.host and target_kind not in ("file", "hardlink"):
            return f"hard link to {linkname!r}, not an earlier regular file of the archive"
        return None

    def record(self, m: tarfile.TarInfo, key: str) -> None:
        self.kinds[key] = _kind(m)

    def check(self, m: tarfile.TarInfo) -> str:
        """The normalised path of ``m``; ArtifactError when it is unsafe."""
        self.count += 1
        if self.count > limits.MAX_TAR_MEMBERS:
            raise ArtifactError(f"{self.archive}: more than {limits.MAX_TAR_MEMBERS} members "
                                "(pytest_lava.artifacts.limits.MAX_TAR_MEMBERS); refusing it")
        key, why = self.problem(m)
        if why:
            raise ArtifactError(f"{self.archive}: unsafe member {m.name!r} ({why}); refusing to unpack it")
        self.record(m, key)
        return key


_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses a GNU long-name or pax header larger than :data:`limits.MAX_TAR_HEADER` before tarfile
    reads it whole into memory."""

    _BIG = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
            tarfile.SOLARIS_XHDTYPE)

    def _proc_member(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in self._BIG and self.size > limits.MAX_TAR_HEADER:
            raise ArtifactError(f"a tar header of {self.size} bytes (type {self.type!r}) before member "
                                f"{self.name!r}: more than {_size(limits.MAX_TAR_HEADER)}; refusing the archive")
        return super()._proc_member(tf)  # type: ignore[misc]


def _open_tar(raw: IO[bytes], comp: str | None, what: str) -> tarfile.TarFile:
    """A tarfile read as a stream from ``raw``, decompressed (gz/bz2/xz) by us, with a cap."""
    if comp:
        raw = _Capped(_DECOMPRESSORS[comp](raw), limits.MAX_DECOMPRESSED, what)  # type: ignore[assignment]
    return tarfile.open(fileobj=raw, mode="r|", tarinfo=_BoundedTarInfo)


def _members(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members of a tarball read as a stream, without keeping them all in memory."""
    while True:
        m = tf.next()
        if m is None:
            return
        tf.members.clear()  # only needed for random access, which we never do
        yield m


def check_tar(path: Path, *, label: str | None = None) -> int:
    """Validate every member of an (uncompressed or compressed) tarball; returns the member count.

    Raises ArtifactError naming the first member that could escape the target directory."""
    name = label or path.name
    policy = _TarPolicy(name, host=False)
    try:
        with open(path, "rb") as raw, _open_tar(raw, compression_of(path), name) as tf:
            for m in _members(tf):
                policy.check(m)
    except ArtifactError:
        raise
    except _TAR_ERRORS as exc:
        raise ArtifactError(f"{name} is not a readable tarball: {exc}") from None
    return policy.count


def make_tar(src: Path, out: Path, *, exclude: tuple[str, ...] = ()) -> None:
    """An uncompressed tarball of the contents of ``src`` (names ``./...``, numeric owners kept)."""
    def keep(ti: tarfile.TarInfo) -> tarfile.TarInfo | None:
        rel = ti.name.removeprefix("./")
        return None if rel in exclude else ti

    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tf:
        tf.add(src, arcname=".", filter=keep)
