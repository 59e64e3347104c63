"""Host-side handling of test image artifacts: tarballs, hwpacks, kernel packages, disk images.

Everything here works on files, never on the host's own system: no root loop mounts, no device
nodes created on the host, no path ever escaping its target directory. The artifacts a job
points at are not trusted (the harness may run with more rights than a job should have): every
name inside them is checked by code of our own before anything is written; an unsafe or malformed
artifact is an
:class:`ArtifactError` (the job's fault, kind ``job``: it never counts against a board's health).

* :func:`decompress` — gz, bz2, xz (by magic number) to a plain file, streaming, at most
  :data:`MAX_DECOMPRESSED` bytes; the board gets uncompressed tarballs (guest-side gunzip under
  TCG is far slower than the network).
* :func:`check_tar` — refuse a tarball whose members would land outside the directory it is
  unpacked in on the board (absolute names, ``..``, a member below or replacing a symlink member
  however it is spelled, a hard link out or to a symlink).
* :func:`safe_extract` — unpack on the host, member by member, by our own code: the same checks
  plus symbolic links that point outside (absolute, ``..``, or through a chain of links), no
  device nodes or FIFOs (skipped), never through a symlink on disk (``O_NOFOLLOW`` at every
  step), at most :data:`MAX_EXTRACTED` bytes. The interpreter's ``data`` filter is applied on
  top where it exists (it is absent from Python 3.11.2, and not enough alone: CVE-2025-4517).
* :func:`replace_kernel` — the ``kernel_matrix`` step: a hwpack with its kernel taken from a .deb.
* :func:`read_partitions` / :func:`partition_tar` — MBR (with logical partitions) and GPT parsed
  here with every field bounded; ext2/3/4 contents taken out with e2fsprogs ``debugfs`` on
  ``image?offset=N`` only after every directory entry has been read raw and checked (no ``/``,
  NUL or newline in a name, no ``.``/``..`` besides the first two, no duplicate, no directory
  linked twice); FAT read by a small reader of our own straight into the tarball (no mtools).
"""

from __future__ import annotations

import bz2
import calendar
import contextlib
import errno
import gzip
import lzma
import os
import posixpath
import re
import shutil
import stat
import struct
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .deadline import Deadline
from .errors import ArtifactError, InfrastructureError

__all__ = ["ArtifactError", "MAX_DECOMPRESSED", "MAX_EXTRACTED", "Partition", "check_tar", "compression_of",
           "deb_data", "deb_files", "decompress", "filesystem_of", "make_tar", "partition_tar", "read_hwpack_meta",
           "read_partitions", "replace_kernel", "safe_extract"]

Log = Callable[[str], None]
_MAGIC = ((b"\x1f\x8b", gzip.open, "gz"), (b"BZh", bz2.open, "bz2"), (b"\xfd7zXZ\x00", lzma.open, "xz"))
CHUNK = 1 << 20

# Limits on what a hostile artifact can make the host do (module constants: a lab with bigger
# images raises them, a test lowers them).
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

# errors of the host itself (not of the artifact) while writing what we take out of it
_HOST_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM, errno.EMFILE})


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:g} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _host_or_artifact(exc: OSError, what: str) -> InfrastructureError | ArtifactError:
    """An OSError while writing on the host: the host's fault (disk full...) or the artifact's."""
    text = f"{what}: {exc.strerror or exc}"
    return InfrastructureError(text) if exc.errno in _HOST_ERRNOS else ArtifactError(text)


# --- compression -----------------------------------------------------------------------------

def compression_of(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(6)
    return next((name for magic, _, name in _MAGIC if head.startswith(magic)), None)


def decompress(src: Path, dst: Path, deadline: Deadline | None = None, *, limit: int | None = None,
               label: str | None = None) -> None:
    """Write the decompressed content of ``src`` (gz/bz2/xz, or plain: copied) to ``dst``.

    Streaming (1 MiB at a time); a compressed ``src`` that expands to more than ``limit`` bytes
    (default :data:`MAX_DECOMPRESSED`) is refused and ``dst`` removed. ``label`` names the
    artifact in messages (its URL, say; default: the file name)."""
    limit = MAX_DECOMPRESSED if limit is None else limit
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
                                        "(pytest_lava.artifacts.MAX_DECOMPRESSED); refusing it")
                try:
                    fout.write(chunk)
                except OSError as exc:
                    raise InfrastructureError(f"cannot write {dst}: {exc.strerror or exc}") from None
                if deadline is not None:
                    deadline.check()
    except BaseException:
        dst.unlink(missing_ok=True)
        raise


# --- tarballs: one path-safety policy ------------------------------------------------------------

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

    def __init__(self, archive: str, *, host: bool) -> None:
        self.archive = archive
        self.host = host
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
        if not self.host:  # on the board only writing through a link is dangerous (refused above)
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
        if self.count > MAX_TAR_MEMBERS:
            raise ArtifactError(f"{self.archive}: more than {MAX_TAR_MEMBERS} members "
                                "(pytest_lava.artifacts.MAX_TAR_MEMBERS); refusing it")
        key, why = self.problem(m)
        if why:
            raise ArtifactError(f"{self.archive}: unsafe member {m.name!r} ({why}); refusing to unpack it")
        self.record(m, key)
        return key


_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)
_DECOMPRESSORS: dict[str, Callable[[IO[bytes]], IO[bytes]]] = {
    "gz": lambda f: gzip.GzipFile(fileobj=f, mode="rb"), "bz2": bz2.BZ2File, "xz": lzma.LZMAFile}


class _Capped:
    """A read-only stream over ``f`` that refuses to yield more than ``limit`` bytes."""

    def __init__(self, f: IO[bytes], limit: int, what: str) -> None:
        self.f, self.left, self.limit, self.what = f, limit, limit, what

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(CHUNK if n < 0 else n)
        self.left -= len(data)
        if self.left < 0:
            raise ArtifactError(f"{self.what} decompresses to more than {_size(self.limit)}, the limit "
                                "(pytest_lava.artifacts.MAX_DECOMPRESSED); refusing it")
        return data


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses a GNU long-name or pax header larger than :data:`MAX_TAR_HEADER` before tarfile
    reads it whole into memory."""

    _BIG = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
            tarfile.SOLARIS_XHDTYPE)

    def _proc_member(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in self._BIG and self.size > MAX_TAR_HEADER:
            raise ArtifactError(f"a tar header of {self.size} bytes (type {self.type!r}) before member "
                                f"{self.name!r}: more than {_size(MAX_TAR_HEADER)}; refusing the archive")
        return super()._proc_member(tf)  # type: ignore[misc]


def _open_tar(raw: IO[bytes], comp: str | None, what: str) -> tarfile.TarFile:
    """A tarfile read as a stream from ``raw``, decompressed (gz/bz2/xz) by us, with a cap."""
    if comp:
        raw = _Capped(_DECOMPRESSORS[comp](raw), MAX_DECOMPRESSED, what)  # type: ignore[assignment]
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


class _Extractor:
    """Writes checked tar members under ``dest`` by our own code, never through a symlink."""

    _DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

    def __init__(self, archive: str, dest: Path, limit: int | None) -> None:
        self.archive = archive
        self.dest = dest
        self.policy = _TarPolicy(archive, host=True)
        self.limit = MAX_EXTRACTED if limit is None else limit
        self.written = 0
        self.symlinks: list[tuple[str, str]] = []
        self.skipped: list[str] = []

    def _refuse(self, m: tarfile.TarInfo, why: str) -> ArtifactError:
        return ArtifactError(f"{self.archive}: unsafe member {m.name!r} ({why}); refusing to unpack it")

    def _parent_fd(self, key: str, m: tarfile.TarInfo) -> tuple[int, str]:
        """An fd of the directory that holds ``key`` (created as needed, never through a symlink)."""
        parts = key.split("/")
        fd = os.open(self.dest, self._DIR_FLAGS)
        try:
            for comp in parts[:-1]:
                try:
                    nfd = os.open(comp, self._DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    nfd = os.open(comp, self._DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise self._refuse(m, f"its directory {comp!r} is not a directory on disk") from None
                    raise
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd, parts[-1]

    def extract(self, tf: tarfile.TarFile, m: tarfile.TarInfo, key: str) -> None:
        if hasattr(tarfile, "data_filter"):  # the interpreter's own check, on top of ours
            try:
                tarfile.data_filter(m, str(self.dest))
            except tarfile.FilterError as exc:
                raise self._refuse(m, str(exc)) from None
        if not key:  # the archive root
            return
        try:
            fd, name = self._parent_fd(key, m)
        except OSError as exc:
            raise _host_or_artifact(exc, f"{self.archive}: cannot unpack {m.name!r}") from None
        try:
            self._write(tf, m, key, fd, name)
        except OSError as exc:
            raise _host_or_artifact(exc, f"{self.archive}: cannot unpack {m.name!r}") from None
        finally:
            os.close(fd)

    def _clear(self, fd: int, name: str, m: tarfile.TarInfo) -> None:
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise self._refuse(m, "a directory of that name is already there")
        os.unlink(name, dir_fd=fd)

    def _write(self, tf: tarfile.TarFile, m: tarfile.TarInfo, key: str, fd: int, name: str) -> None:
        if m.isdir():
            try:
                os.mkdir(name, 0o700, dir_fd=fd)
            except FileExistsError:
                pass
            dfd = os.open(name, self._DIR_FLAGS, dir_fd=fd)  # refuses a symlink in its place
            try:
                os.fchmod(dfd, (m.mode & 0o755) | 0o700)
            finally:
                os.close(dfd)
            return
        self._clear(fd, name, m)
        if m.isreg():
            self.written += m.size
            if self.written > self.limit:
                raise ArtifactError(f"{self.archive}: unpacking it would write more than {_size(self.limit)} "
                                    "(pytest_lava.artifacts.MAX_EXTRACTED); refusing it")
            src = tf.extractfile(m)
            if src is None:
                raise self._refuse(m, "no data")
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                          dir_fd=fd)
            with os.fdopen(out, "wb") as f:
                left = m.size
                while left > 0:
                    chunk = src.read(min(CHUNK, left))
                    if not chunk:
                        raise ArtifactError(f"{self.archive}: member {m.name!r} is truncated")
                    f.write(chunk)
                    left -= len(chunk)
                os.fchmod(f.fileno(), (m.mode & 0o755) | 0o600)
        elif m.issym():
            os.symlink(m.linkname, name, dir_fd=fd)
            self.symlinks.append((key, m.linkname))
        elif m.islnk():
            tkey, _ = _clean_path(m.linkname)
            sfd, sname = self._parent_fd(tkey, m)
            try:
                st = os.stat(sname, dir_fd=sfd, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    raise self._refuse(m, f"hard link to {m.linkname!r}, which is not a regular file on disk")
                os.link(sname, name, src_dir_fd=sfd, dst_dir_fd=fd, follow_symlinks=False)
            finally:
                os.close(sfd)
            return
        try:
            os.utime(name, (m.mtime, m.mtime), dir_fd=fd, follow_symlinks=False)
        except (OverflowError, ValueError, OSError):
            pass  # a silly timestamp is not worth failing for

    def escaping_links(self) -> list[tuple[str, str]]:
        """The symbolic links written that resolve outside ``dest`` (through a chain of links,
        each of which stays inside on its own); they are removed from the disk."""
        root = os.path.realpath(self.dest)
        bad = []
        for key, target in self.symlinks:
            path = os.path.join(self.dest, key)
            real = os.path.realpath(path)
            if real != root and not real.startswith(root + os.sep):
                bad.append((key, target))
        for key, _ in bad:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.dest, key))
        return bad

    def finish(self) -> None:
        """Refuse the result when a symbolic link resolves outside (the link is removed)."""
        bad = self.escaping_links()
        if bad:
            key, target = bad[0]
            raise ArtifactError(f"{self.archive}: unsafe member {key!r} (symbolic link to {target!r} resolves "
                                "outside the archive through other links); refusing to unpack it")


def safe_extract(path: Path, dest: Path, log: Log | None = None, *, limit: int | None = None,
                 label: str | None = None) -> None:
    """Unpack a tarball on the host: nothing outside ``dest``, no device nodes, no set-id bits,
    at most ``limit`` bytes (default :data:`MAX_EXTRACTED`)."""
    dest.mkdir(parents=True, exist_ok=True)
    name = label or path.name
    ex = _Extractor(name, dest, limit)
    try:
        with open(path, "rb") as raw, _open_tar(raw, compression_of(path), name) as tf:
            for m in _members(tf):
                key = ex.policy.check(m)
                if _kind(m) == "device":
                    ex.skipped.append(m.name)
                    continue
                ex.extract(tf, m, key)
    except (ArtifactError, InfrastructureError):
        ex.escaping_links()  # never leave a link that leads out behind
        raise
    except _TAR_ERRORS as exc:
        ex.escaping_links()
        raise ArtifactError(f"cannot unpack {name}: {exc}") from None
    ex.finish()
    if ex.skipped and log is not None:
        log(f"{name}: skipped {len(ex.skipped)} device node(s)/FIFO(s) on the host: "
            f"{', '.join(ex.skipped[:5])}")


def make_tar(src: Path, out: Path, *, exclude: tuple[str, ...] = ()) -> None:
    """An uncompressed tarball of the contents of ``src`` (names ``./...``, numeric owners kept)."""
    def keep(ti: tarfile.TarInfo) -> tarfile.TarInfo | None:
        rel = ti.name.removeprefix("./")
        return None if rel in exclude else ti

    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tf:
        tf.add(src, arcname=".", filter=keep)


# --- kernel_matrix: a hwpack with another kernel ------------------------------------------------

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
            if count > MAX_TAR_MEMBERS:
                raise ArtifactError(f"{deb.name}: more than {MAX_TAR_MEMBERS} members in {name}; refusing it")
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
                with _open_tar(_Capped(proc.stdout, MAX_DECOMPRESSED, f"{name} of {deb.name}"), None,  # type: ignore[arg-type]
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


def read_hwpack_meta(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _plain_name(name: str) -> bool:
    """A single file name: no ``/``, not ``.``/``..``, no control characters."""
    return bool(name) and name not in (".", "..") and "/" not in name and not any(ord(c) < 32 for c in name)


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
    if not _plain_name(deb_name):
        raise ArtifactError(f"kernel_matrix: {deb_name!r} is not a usable package file name")
    with tempfile.TemporaryDirectory(prefix="lava-hwpack-", dir=out.parent) as tmp:
        tree = Path(tmp) / "hwpack"
        safe_extract(hwpack, tree, log)
        pkgs, meta_file = tree / "pkgs", tree / "HWPACK"
        if pkgs.is_dir() and not pkgs.is_symlink():
            old = [p for p in pkgs.glob("*.deb") if p.name.startswith(prefix)]
            if not old:
                raise ArtifactError(f"kernel_matrix: the hwpack has no package named {prefix}* in pkgs/")
            for p in old:
                p.unlink()
            new = pkgs / deb_name
            if new.is_dir() and not new.is_symlink():
                raise ArtifactError(f"kernel_matrix: the hwpack has a directory pkgs/{deb_name}")
            new.unlink(missing_ok=True)  # a symlink of that name is replaced, never written through
            shutil.copy2(deb, new)
            version = deb_name.split("_")[0].removeprefix("linux-image-")
        elif meta_file.is_file() and not meta_file.is_symlink():
            if meta_file.stat().st_size > MAX_HWPACK_META:
                raise ArtifactError(f"kernel_matrix: the hwpack's HWPACK file is larger than {_size(MAX_HWPACK_META)}")
            meta = read_hwpack_meta(meta_file.read_text(errors="replace"))
            package = meta.get("KERNEL_PACKAGE", "")
            if not package.startswith(prefix):
                raise ArtifactError(f"kernel_matrix: the hwpack's kernel package {package!r} does not match "
                                    f"the prefix {prefix!r}")
            kernel_name = meta.get("KERNEL", "Image")
            kernel = tree / kernel_name
            if not _plain_name(kernel_name) or kernel.is_dir():
                raise ArtifactError(f"kernel_matrix: bad KERNEL= in the hwpack: {meta.get('KERNEL')!r}")
            files = deb_files(deb, lambda n: n.startswith("boot/vmlinuz-"), Path(tmp) / "deb")
            if len(files) != 1:
                raise ArtifactError(f"kernel_matrix: {deb_name} holds {len(files)} boot/vmlinuz-* files, not one")
            version = files[0].removeprefix("boot/vmlinuz-")
            if not _plain_name(version):
                raise ArtifactError(f"kernel_matrix: {deb_name} has a kernel with a bad version: {version!r}")
            os.replace(Path(tmp) / "deb" / files[0], kernel)  # replaces a symlink itself, never its target
            meta.update(KERNEL_VERSION=version, KERNEL_PACKAGE=deb_name.split("_")[0], KERNEL_MATRIX=deb_name)
            meta_file.write_text("".join(f"{k}={v}\n" for k, v in meta.items()))
        else:
            raise ArtifactError("kernel_matrix: unknown hwpack layout (neither pkgs/ nor an HWPACK file)")
        make_tar(tree, out)
    if log is not None:
        log(f"kernel_matrix: hwpack {hwpack.name} now carries kernel {version} from {deb_name}")
    return version


# --- disk images: partition tables -------------------------------------------------------------

@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes
    size: int  # bytes
    type: str  # MBR type byte as hex ("83") or GPT type GUID


_EXTENDED = (0x05, 0x0F, 0x85)


def read_partitions(image: Path, *, label: str | None = None) -> list[Partition]:
    """The partitions of a raw disk image: MBR primaries and logicals (EBR chain), or GPT.

    Every field read from the image is bounded; a malformed table is an ArtifactError (naming
    ``label``, default: the file name)."""
    name = label or image.name
    total = image.stat().st_size
    with open(image, "rb") as f:
        mbr = f.read(512)
        if len(mbr) < 512 or mbr[510:512] != b"\x55\xaa":
            raise ArtifactError(f"{name}: no partition table (MBR signature missing)")
        entries = [struct.unpack_from("<B3xB3xII", mbr, 446 + 16 * i) for i in range(4)]
        if any(t == 0xEE for _, t, _, _ in entries):
            return _gpt(f, name, total)
        if sum(1 for _, t, _, c in entries if t in _EXTENDED and c) > 1:
            raise ArtifactError(f"{name}: malformed MBR (more than one extended partition)")
        parts: list[Partition] = []
        for i, (_, ptype, lba, count) in enumerate(entries, 1):
            if ptype == 0 or count == 0:
                continue
            if ptype in _EXTENDED:
                parts += _logicals(f, lba, name, total)
            else:
                parts.append(Partition(i, lba * 512, count * 512, f"{ptype:02x}"))
    return sorted(parts, key=lambda p: p.number)


def _logicals(f, ext_lba: int, name: str, total: int) -> list[Partition]:  # noqa: ANN001
    out: list[Partition] = []
    ebr_lba, number = ext_lba, 5
    seen: set[int] = set()
    while True:
        if ebr_lba in seen:
            raise ArtifactError(f"{name}: malformed MBR (the logical partition chain loops at sector {ebr_lba})")
        if len(seen) >= MAX_LOGICAL_PARTITIONS:
            raise ArtifactError(f"{name}: malformed MBR (more than {MAX_LOGICAL_PARTITIONS} logical partitions)")
        seen.add(ebr_lba)
        if ebr_lba == 0 or (ebr_lba + 1) * 512 > total:
            raise ArtifactError(f"{name}: malformed MBR (a logical partition table at sector {ebr_lba} "
                                "is outside the image)")
        f.seek(ebr_lba * 512)
        ebr = f.read(512)
        if len(ebr) < 512 or ebr[510:512] != b"\x55\xaa":
            raise ArtifactError(f"{name}: broken logical partition chain at sector {ebr_lba}")
        _, ptype, rel, count = struct.unpack_from("<B3xB3xII", ebr, 446)
        if ptype and count:
            out.append(Partition(number, (ebr_lba + rel) * 512, count * 512, f"{ptype:02x}"))
            number += 1
        _, ntype, nrel, _ = struct.unpack_from("<B3xB3xII", ebr, 462)
        if not ntype:
            return out
        ebr_lba = ext_lba + nrel


def _gpt(f, name: str, total: int) -> list[Partition]:  # noqa: ANN001
    f.seek(512)
    hdr = f.read(92)
    if len(hdr) < 92 or hdr[:8] != b"EFI PART":
        raise ArtifactError(f"{name}: protective MBR but no GPT header")
    entries_lba, count, size = struct.unpack_from("<QII", hdr, 72)
    if not 128 <= size <= 4096 or size % 8:
        raise ArtifactError(f"{name}: malformed GPT (partition entry size {size}; expected 128)")
    if not 1 <= count <= MAX_GPT_ENTRIES:
        raise ArtifactError(f"{name}: malformed GPT ({count} partition entries; at most {MAX_GPT_ENTRIES})")
    if entries_lba < 2 or entries_lba * 512 + count * size > total:
        raise ArtifactError(f"{name}: malformed GPT (the partition entry array at LBA {entries_lba}, "
                            f"{count} x {size} bytes, is outside the image)")
    f.seek(entries_lba * 512)
    table = f.read(count * size)
    if len(table) < count * size:
        raise ArtifactError(f"{name}: malformed GPT (the partition entry array is truncated)")
    parts = []
    for i in range(count):
        e = table[i * size:(i + 1) * size]
        if e[:16] == b"\0" * 16:
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        if last < first:
            raise ArtifactError(f"{name}: malformed GPT (partition {i + 1} ends at LBA {last}, "
                                f"before its start {first})")
        parts.append(Partition(i + 1, first * 512, (last - first + 1) * 512, e[:16].hex()))
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


def partition_tar(image: Path, number: int, out: Path, deadline: Deadline, log: Log | None = None, *,
                  label: str | None = None) -> None:
    """Write the files of partition ``number`` of ``image`` to ``out`` (an uncompressed tar).

    ``label`` names the image in messages (its URL, say; default: the file name)."""
    name = label or image.name
    parts = {p.number: p for p in read_partitions(image, label=name)}
    if number not in parts:
        raise ArtifactError(f"{name} has no partition {number} (it has {sorted(parts) or 'none'})")
    part = parts[number]
    total = image.stat().st_size
    if part.start < 512 or part.start + 2048 > total:
        raise ArtifactError(f"{name}: partition {number} starts at byte {part.start}, outside the image "
                            f"({total} bytes)")
    fs = filesystem_of(image, part)
    where = f"{name} partition {number}"
    if fs not in ("ext", "vfat"):
        raise ArtifactError(f"{where}: unsupported filesystem (ext2/3/4 and FAT only)")
    try:
        if fs == "ext":
            with tempfile.TemporaryDirectory(prefix="lava-part-", dir=out.parent) as tmp:
                tree = _ext_take(image, part, Path(tmp), deadline, where)
                make_tar(tree, out, exclude=("lost+found",))
        else:
            end = min(part.start + part.size, total)
            with open(image, "rb") as f:
                _Fat(f, part.start, end, where, deadline).write_tar(out)
    except BaseException:
        out.unlink(missing_ok=True)  # never a half-made tarball
        raise
    if log is not None:
        log(f"{name}: partition {number} ({fs}) -> {out.name}")


# --- ext2/3/4: every name checked before debugfs writes anything ------------------------------

_LS_LINE = re.compile(rb"/(\d+)/([0-7]+)/(-?\d+)/(-?\d+)/(.*)/(\d*)/")
_EXT4_INLINE_DATA = 0x8000


def _show(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace")


def _debugfs(spec: str, commands: list[str], cwd: Path, deadline: Deadline, where: str) -> bytes:
    """Run debugfs commands (from a file, in ``cwd``) on ``spec``; returns its stdout."""
    (cwd / "cmds").write_text("".join(c + "\n" for c in commands))
    try:
        p = subprocess.run(["debugfs", "-f", "cmds", spec], cwd=cwd, capture_output=True,
                           timeout=max(1.0, deadline.remaining_or(1800)))
    except FileNotFoundError:
        raise InfrastructureError("debugfs not found (apt-get install e2fsprogs)") from None
    except subprocess.TimeoutExpired:
        raise ArtifactError(f"{deadline.path}: debugfs on {where} timed out") from None
    err = p.stderr.decode("utf-8", "replace")
    bad = [line for line in err.splitlines() if line.strip() and not line.startswith("debugfs ")]
    if p.returncode != 0 or bad:
        raise ArtifactError(f"debugfs could not read {where}: {' / '.join(bad)[-500:] or err.strip()[-500:]}")
    return p.stdout


def _dirents(raw: bytes, block_size: int, where: str) -> list[tuple[int, bytes]]:
    """(inode, name) of the used entries of a directory's blocks, exactly as stored."""
    if not raw or len(raw) % block_size:
        raise ArtifactError(f"{where}: malformed directory ({len(raw)} bytes, not whole {block_size}-byte blocks)")
    out = []
    for block in range(0, len(raw), block_size):
        off, end = block, block + block_size
        while off < end:
            if off + 8 > end:
                raise ArtifactError(f"{where}: malformed directory entry at byte {off}")
            ino, rec_len, name_len = struct.unpack_from("<IHB", raw, off)
            if block_size == 65536 and rec_len in (0, 65535):
                rec_len = 65536
            if rec_len < 8 or rec_len % 4 or off + rec_len > end or (ino and 8 + name_len > rec_len):
                raise ArtifactError(f"{where}: malformed directory entry at byte {off} (record length {rec_len})")
            if ino:
                out.append((ino, raw[off + 8:off + 8 + name_len]))
            off += rec_len
    return out


def _name_problem(name: bytes) -> str | None:
    if not name:
        return "empty name"
    if b"/" in name:
        return "name contains '/'"
    if b"\0" in name:
        return "name contains NUL"
    if b"\n" in name:
        return "name contains a newline"
    if name in (b".", b".."):
        return f"a second {_show(name)!r} entry"
    return None


def _ext_take(image: Path, part: Partition, work: Path, deadline: Deadline, where: str) -> Path:
    """The files of an ext2/3/4 partition in ``work/tree``.

    Each directory is read twice by debugfs, level by level: ``dump`` gives its raw blocks, from
    which the names are taken exactly and checked; ``ls -p`` (read only once the names are known
    to hold no newline, so one line is one entry) gives each entry's inode type. Only when every
    name of the whole filesystem is safe does ``rdump`` write them, into a fresh directory; the
    result is checked again on disk."""
    with open(image, "rb") as f:
        f.seek(part.start + 1024)
        sb = f.read(1024)
    log_block = struct.unpack_from("<I", sb, 24)[0]
    if log_block > 6:
        raise ArtifactError(f"{where}: malformed ext superblock (block size 2^{10 + log_block})")
    if struct.unpack_from("<I", sb, 96)[0] & _EXT4_INLINE_DATA:
        raise ArtifactError(f"{where}: the filesystem uses the ext4 inline_data feature, which pytest-lava "
                            "cannot read safely; make the image without it (mkfs.ext4 -O ^inline_data)")
    block_size = 1024 << log_block
    spec = f"{image}?offset={part.start}"
    dumps = work / "dirs"
    dumps.mkdir()
    level: list[tuple[int, str]] = [(2, "")]  # (directory inode, its path)
    seen_dirs = {2}
    expected: set[str] = set()
    entries = depth = 0
    while level:
        depth += 1
        if depth > MAX_FS_DEPTH:
            raise ArtifactError(f"{where}: directories nested deeper than {MAX_FS_DEPTH} levels")
        commands = []
        for ino, _ in level:
            commands += [f"ls -p <{ino}>", f"dump <{ino}> dirs/{ino}"]
        stdout = _debugfs(spec, commands, work, deadline, where)
        deadline.check()
        raw_entries: dict[int, list[tuple[int, bytes]]] = {}
        for ino, path in level:
            here = f"{where}: directory /{path}"
            try:
                raw = (dumps / str(ino)).read_bytes()
            except FileNotFoundError:
                raise ArtifactError(f"{here}: debugfs could not read it") from None
            (dumps / str(ino)).unlink()
            found = _dirents(raw, block_size, here)
            names: set[bytes] = set()
            for i, (_, name) in enumerate(found):
                why = None if (i, name) in ((0, b"."), (1, b"..")) else _name_problem(name)
                if why is None and name in names:
                    why = "a second entry of the same name"
                if why:
                    raise ArtifactError(f"{where}: unsafe entry {_show(name)!r} in directory /{path} ({why}); "
                                        "refusing to unpack the partition")
                names.add(name)
            entries += len(found)
            if entries > MAX_FS_ENTRIES:
                raise ArtifactError(f"{where}: more than {MAX_FS_ENTRIES} directory entries")
            raw_entries[ino] = found
        # no name holds a newline: every line of the ls output is one entry or a debugfs prompt
        listings = _split_listings(stdout, commands, where)
        next_level: list[tuple[int, str]] = []
        if any(listings[1::2]):
            raise ArtifactError(f"{where}: unexpected debugfs output while dumping directories")
        for (ino, path), listing in zip(level, listings[0::2], strict=True):
            found = raw_entries[ino]
            if [e[0] for e in listing] != [e[0] for e in found]:
                raise ArtifactError(f"{where}: directory /{path} reads differently raw and through debugfs "
                                    "(corrupt filesystem?); refusing it")
            for i, ((child, mode), (_, name)) in enumerate(zip(listing, found, strict=True)):
                is_dir = stat.S_ISDIR(mode)
                if i < 2 and name in (b".", b".."):
                    if not is_dir:
                        raise ArtifactError(f"{where}: unsafe entry {_show(name)!r} in directory /{path} "
                                            "(not a directory); refusing to unpack the partition")
                    continue
                child_path = f"{path}/{os.fsdecode(name)}" if path else os.fsdecode(name)
                expected.add(child_path)
                if is_dir:
                    if child in seen_dirs:
                        raise ArtifactError(f"{where}: directory /{child_path} is linked twice (inode {child}); "
                                            "refusing to unpack the partition")
                    seen_dirs.add(child)
                    next_level.append((child, child_path))
        level = next_level
    tree = work / "tree"
    tree.mkdir()
    _debugfs(spec, ["rdump / tree"], work, deadline, where)
    _check_tree(tree, expected, where)
    return tree


def _split_listings(stdout: bytes, commands: list[str], where: str) -> list[list[tuple[int, int]]]:
    """The output of each command of a debugfs ``-f`` run, as (inode, mode) per ``ls -p`` line."""
    out: list[list[tuple[int, int]]] = []
    expect = iter(commands)
    current: list[tuple[int, int]] | None = None
    for line in stdout.split(b"\n"):
        if line.startswith(b"debugfs: "):
            if line[9:].decode("utf-8", "replace") != next(expect, None):
                raise ArtifactError(f"{where}: unexpected debugfs output {_show(line[:200])!r}")
            current = []
            out.append(current)
            continue
        if not line.strip():
            continue
        m = _LS_LINE.fullmatch(line)
        if current is None or m is None:
            raise ArtifactError(f"{where}: unexpected debugfs output {_show(line[:200])!r}")
        if int(m.group(1)):
            current.append((int(m.group(1)), int(m.group(2), 8)))
    if len(out) != len(commands):
        raise ArtifactError(f"{where}: debugfs stopped early ({len(out)} of {len(commands)} commands)")
    return out


def _check_tree(tree: Path, expected: set[str], where: str) -> None:
    """What rdump wrote is exactly made of the names checked, with no symlink in between."""
    root = os.path.realpath(tree)
    for dirpath, dirnames, filenames in os.walk(tree, followlinks=False):
        real = os.path.realpath(dirpath)
        if real != root and not real.startswith(root + os.sep):
            raise ArtifactError(f"{where}: {dirpath} resolves outside the unpacked tree")
        for name in dirnames + filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), tree)
            if rel not in expected:
                raise ArtifactError(f"{where}: debugfs wrote {rel!r}, which is not an entry of the filesystem")


# --- FAT: a small reader of our own, straight into the tarball ---------------------------------

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
        if need > MAX_FAT_TABLE:
            raise ArtifactError(f"{where}: FAT larger than {_size(MAX_FAT_TABLE)}")
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
        names: set[str] = set()
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
            why = _name_problem(name.encode("utf-8", "surrogatepass"))
            if why is None and name in names:
                why = "a second entry of the same name"
            if why:
                raise ArtifactError(f"{self.where}: unsafe entry {shown!r} in directory /{path} ({why}); "
                                    "refusing to unpack the partition")
            names.add(name)
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
        if depth > MAX_FS_DEPTH:
            raise ArtifactError(f"{self.where}: directories nested deeper than {MAX_FS_DEPTH} levels")
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
