"""Unpacking a tarball on the host, member by member, by our own code, never through a symlink."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

from ..core.errors import ArtifactError, InfrastructureError
from . import limits
from .compress import compression_of
from .limits import CHUNK, _size
from .tarballs import _TAR_ERRORS, _clean_path, _kind, _members, _open_tar, _TarPolicy

Log = Callable[[str], None]

# errors of the host itself (not of the artifact) while writing what we take out of it
_HOST_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM, errno.EMFILE})


def _host_or_artifact(exc: OSError, what: str) -> InfrastructureError | ArtifactError:
    """An OSError while writing on the host: the host's fault (disk full...) or the artifact's."""
    text = f"{what}: {exc.strerror or exc}"
    return InfrastructureError(text) if exc.errno in _HOST_ERRNOS else ArtifactError(text)


class _Extractor:
    """Writes checked tar members under ``dest`` by our own code, never through a symlink."""

    _DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

    def __init__(self, archive: str, dest: Path, limit: int | None, image_tree: bool = False) -> None:
        self.archive = archive
        self.dest = dest
        self.image_tree = image_tree
        self.policy = _TarPolicy(archive, host=True, image_tree=image_tree)
        self.limit = limits.MAX_EXTRACTED if limit is None else limit
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
            # (in an image tree a link may point anywhere: only the name is checked then)
            check = tarfile.tar_filter if self.image_tree and m.issym() else tarfile.data_filter
            try:
                check(m, str(self.dest))
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
                                    "(pytest_lava.artifacts.limits.MAX_EXTRACTED); refusing it")
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
        if self.image_tree:  # links resolve inside the image, never on the host
            return []
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
                 label: str | None = None, image_tree: bool = False) -> None:
    """Unpack a tarball on the host: nothing outside ``dest``, no device nodes, no set-id bits,
    at most ``limit`` bytes (default :data:`limits.MAX_EXTRACTED`).

    ``image_tree``: the tree is a root filesystem for a disk image the host builds, so symbolic
    links to anywhere are kept as they are (``/etc/alternatives/awk`` is normal in Debian); they
    mean something only inside the image, and the host reads such a tree only by :func:`lookup`
    (and ``mke2fs -d``, which copies links as links). Nothing is ever written through a link."""
    dest.mkdir(parents=True, exist_ok=True)
    name = label or path.name
    ex = _Extractor(name, dest, limit, image_tree)
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


def lookup(tree: Path, relative: str) -> Path | None:
    """``tree/relative`` when every component is a real directory and the last a regular file
    (no symbolic link anywhere on the way, so a link in an unpacked image tree never leads the
    host outside it), else ``None``."""
    path = tree
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    for i, part in enumerate(parts):
        path = path / part
        try:
            st = os.lstat(path)
        except OSError:
            return None
        wanted = stat.S_ISREG if i == len(parts) - 1 else stat.S_ISDIR
        if not wanted(st.st_mode):
            return None
    return path
