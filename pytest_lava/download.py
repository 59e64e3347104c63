"""The host's download cache: artifacts fetched once per URL, shared safely by concurrent jobs.

``fetch(url, deadline)`` returns a local path for an ``http``, ``https`` or ``file`` URL.
Downloads go into ``<cache>/<sha256(url)[:32]>/data``; an exclusive ``fcntl`` lock on the entry's
``lock`` file makes concurrent processes (xdist workers, parallel jobs) wait for one download
instead of repeating it, and the data appears under its final name only by an atomic rename,
so a reader never sees a half-written file. A cached HTTP entry is revalidated with a ``HEAD``
request (size and ``Last-Modified``/``ETag``); when the server cannot answer, the cache is used.

Expected SHA-256 checksums are checked on every fetch (computed once, stored in ``meta.json``).
Files derived from a download (a decompressed tarball, a rebuilt hwpack) are cached next to it
with :meth:`DownloadCache.derive`, under the same lock and the same atomic rename.

``file:`` URLs are used in place (never copied); a relative ``file:path`` is resolved against
``base`` (the job file's directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .deadline import Deadline
from .errors import InfrastructureError, JobError

CHUNK = 1 << 20
PROGRESS_EVERY = 10.0  # seconds between progress lines of a long download
Log = Callable[[str], None]


class DownloadError(InfrastructureError):
    """A download failed: HTTP error, network error, timeout, missing file. Names the URL."""


class ChecksumMismatch(DownloadError):
    """The artifact's SHA-256 differs from the one the job expects."""


def default_cache_dir() -> Path:
    env = os.environ.get("PYTEST_LAVA_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-lava" / "downloads"


def sha256_of(path: Path, deadline: Deadline | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
            if deadline is not None:
                deadline.check()
    return h.hexdigest()


def local_path(url: str, base: Path | None = None) -> Path | None:
    """The path of a ``file:`` URL (relative ones against ``base``), else None."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    path = Path(unquote(parts.path))
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return path


@contextlib.contextmanager
def locked(lock_path: Path, deadline: Deadline, what: str) -> Iterator[None]:
    """Hold an exclusive flock on ``lock_path``; wait for it within ``deadline`` (polling, so the
    wait obeys the deadline and never blocks forever)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        pause = 0.05
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline.remaining() <= 0:
                    raise DownloadError(f"{deadline.path}: timed out waiting for another process that "
                                        f"is fetching {what} ({lock_path})") from None
                time.sleep(min(pause, deadline.remaining()))
                pause = min(pause * 2, 1.0)
        yield
    finally:
        os.close(fd)  # closing drops the lock


@dataclass
class DownloadCache:
    root: Path
    log: Log | None = None
    base: Path | None = None  # directory relative file: URLs are resolved against
    session: object | None = None  # a requests.Session (tests may inject one)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.downloads = 0  # network downloads done by this object (for tests and logs)

    def entry(self, key: str) -> Path:
        return self.root / hashlib.sha256(key.encode()).hexdigest()[:32]

    # -- fetch --------------------------------------------------------------------------------
    def fetch(self, url: str, deadline: Deadline, *, sha256: str | None = None, use_cache: bool = True,
              workdir: Path | None = None) -> Path:
        """A local file with the content of ``url`` (checked against ``sha256`` when given)."""
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https", "file"):
            raise JobError.single("job", "url", f"{url!r}: only http, https and file URLs are supported")
        path = local_path(url, self.base)
        if path is not None:
            if not path.is_file():
                raise DownloadError(f"download of {url} failed: no such file {path}")
            if sha256:
                self._verify(url, path, sha256, sha256_of(path, deadline))
            return path
        if not use_cache:
            if workdir is None:
                raise ValueError("use_cache=False needs a workdir")
            target = workdir / (Path(urlsplit(url).path).name or "download")
            digest = self._download(url, target, deadline)
            if sha256:
                self._verify(url, target, sha256, digest)
            return target
        entry = self.entry(url)
        data, meta_path = entry / "data", entry / "meta.json"
        with locked(entry / "lock", deadline, url):
            meta = _read_json(meta_path)
            if data.is_file() and meta.get("url") == url and self._fresh(url, meta, deadline):
                self._note(f"using cached {url}")
            else:
                for old in entry.glob("derived-*"):  # a new download invalidates what was made of it
                    _remove(old)
                digest = self._download(url, data, deadline, meta=meta)
                meta["sha256"] = digest
                meta["url"] = url
                _write_json(meta_path, meta)
            if sha256:
                self._verify(url, data, sha256, meta["sha256"], discard=entry)
        return data

    def _verify(self, url: str, path: Path, expected: str, actual: str, discard: Path | None = None) -> None:
        if expected.strip().lower() != actual:
            if discard is not None:  # do not keep a bad artifact for the next job
                _remove(discard / "data")
                _remove(discard / "meta.json")
            raise ChecksumMismatch(f"checksum mismatch for {url}: expected sha256 {expected.strip().lower()}, "
                                   f"got {actual}")

    def _requests(self):  # noqa: ANN202 - requests.Session, imported lazily
        if self.session is None:
            import requests

            self.session = requests.Session()
            self.session.trust_env = False  # lab artifacts are local: never through a proxy by accident
        return self.session

    def _fresh(self, url: str, meta: dict, deadline: Deadline) -> bool:
        """Whether the cached copy still matches the server (HEAD); True when the server is silent."""
        import requests

        try:
            r = self._requests().head(url, timeout=deadline.remaining_or(15.0), allow_redirects=True)
        except requests.RequestException:
            return True
        if r.status_code >= 400:
            return True  # the GET will say what is wrong if we ever need it
        for key, header in (("length", "Content-Length"), ("etag", "ETag"), ("last_modified", "Last-Modified")):
            if header in r.headers and meta.get(key) not in (None, r.headers[header]):
                self._note(f"{url} changed on the server ({header}); downloading it again")
                return False
        return True

    def _download(self, url: str, target: Path, deadline: Deadline, meta: dict | None = None) -> str:
        import requests

        node = deadline.child(None, f"download {url}")
        tmp = target.with_name(f"{target.name}.part-{os.getpid()}")
        target.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        try:
            timeout = (node.remaining_or(30.0), node.remaining_or(60.0))
            with self._requests().get(url, stream=True, timeout=timeout) as r:
                if r.status_code != 200:
                    raise DownloadError(f"download of {url} failed: HTTP {r.status_code} {r.reason}")
                total = int(r.headers.get("Content-Length") or 0)
                done, started, last = 0, time.monotonic(), time.monotonic()
                with open(tmp, "wb") as f:
                    for chunk in r.iter_content(CHUNK):
                        if node.expired:
                            raise DownloadError(f"download of {url} failed: {node.exceeded().message} "
                                                f"after {done / 1e6:.1f} MB")
                        f.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        if time.monotonic() - last >= PROGRESS_EVERY:
                            last = time.monotonic()
                            self._note(_progress(url, done, total, last - started))
                if total and done != total:
                    raise DownloadError(f"download of {url} failed: got {done} of {total} bytes")
            os.replace(tmp, target)
        except requests.RequestException as exc:
            raise DownloadError(f"download of {url} failed: {type(exc).__name__}: {exc}") from None
        finally:
            _remove(tmp)
        self.downloads += 1
        elapsed = node.elapsed
        self._note(f"downloaded {url}: {done / 1e6:.1f} MB in {elapsed:.1f} s")
        if meta is not None:
            meta.update(length=r.headers.get("Content-Length"), etag=r.headers.get("ETag"),
                        last_modified=r.headers.get("Last-Modified"))
        return h.hexdigest()

    # -- derived files --------------------------------------------------------------------------
    def derive(self, source: Path, key: str, build: Callable[[Path], None], deadline: Deadline,
               *, suffix: str = "") -> Path:
        """A file made from ``source`` by ``build(tmp_path)``, cached per (source, key).

        The cache key includes the source's path, size and mtime, so a changed source (a new
        download, an edited local file) is never paired with an old derived file."""
        st = source.stat()
        ident = f"{source.resolve()}:{st.st_size}:{st.st_mtime_ns}:{key}"
        entry = self.entry("derived:" + ident)
        out = entry / f"derived-{hashlib.sha256(key.encode()).hexdigest()[:12]}{suffix}"
        with locked(entry / "lock", deadline, f"{key} of {source.name}"):
            if out.exists():
                return out
            tmp = out.with_name(f"{out.name}.part-{os.getpid()}")
            _remove(tmp)
            try:
                build(tmp)
                os.replace(tmp, out)
            finally:
                _remove(tmp)
        return out

    def _note(self, message: str) -> None:
        if self.log is not None:
            self.log(message)


def _progress(url: str, done: int, total: int, elapsed: float) -> str:
    rate = done / elapsed / 1e6 if elapsed > 0 else 0.0
    of = f" of {total / 1e6:.1f} MB ({100 * done / total:.0f}%)" if total else " MB"
    return f"downloading {url}: {done / 1e6:.1f}{of}, {rate:.1f} MB/s"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
