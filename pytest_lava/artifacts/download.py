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

Whose fault a failed fetch is decides whether it counts against the board's health:

* the job's (:class:`ArtifactDownloadError`, an :class:`~pytest_lava.core.errors.ArtifactError`, kind
  ``job``): an unsupported scheme, HTTP 4xx, a missing ``file:`` path, a checksum mismatch, and
  any failure to talk to a host that is not one of the lab's own;
* the lab's (:class:`DownloadError`, an ``InfrastructureError``): the lab's own artifact server
  (a host named in ``lab_hosts``, e.g. the device's ``image_server``) does not answer, times out,
  answers 5xx or cuts the transfer short; another process holds the cache entry too long; the
  host's disk fails while writing the cache.

A URL may carry a password (``http://user:pass@host/...``): every message raised or logged here
shows it as ``<HIDDEN>@host`` (:func:`~pytest_lava.core.secrets.redact_url`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..core.deadline import Deadline
from ..core.errors import ArtifactError, InfrastructureError, JobError, LavaError
from ..core.secrets import Masker, redact_url

CHUNK = 1 << 20
PROGRESS_EVERY = 10.0  # seconds between progress lines of a long download
Log = Callable[[str], None]


class DownloadError(InfrastructureError):
    """The lab failed to deliver an artifact: its own server does not answer (or answers 5xx),
    the cache stays locked, the host's disk fails. Names the URL (password hidden)."""


class ArtifactDownloadError(ArtifactError):
    """The job's artifact cannot be fetched: HTTP 4xx, a missing ``file:`` path, a host that is
    not the lab's own does not answer. Names the URL (password hidden)."""


class ChecksumMismatch(ArtifactDownloadError):
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


def _host_of(entry: str) -> str:
    """The lower-case host name of a ``lab_hosts`` entry: a host name or a URL."""
    try:
        host = urlsplit(entry).hostname if "://" in entry else entry.strip().strip("[]")
    except ValueError:
        return ""
    return (host or "").lower()


def _scrub(text: str, url: str) -> str:
    """``text`` (an exception's message, say) without the credentials embedded in ``url``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return text
    userinfo = parts.netloc.rpartition("@")[0]
    secrets = [userinfo, unquote(userinfo), parts.password, unquote(parts.password or "")]
    if parts.password is None:  # a bare token as the user name
        secrets += [parts.username, unquote(parts.username or "")]
    return Masker(secrets).mask(text.replace(url, redact_url(url)))


@dataclass
class DownloadCache:
    root: Path
    log: Log | None = None
    base: Path | None = None  # directory relative file: URLs are resolved against
    session: object | None = None  # a requests.Session (tests may inject one)
    # the lab's own artifact servers (host names or URLs, e.g. the device's image_server): not
    # reaching one of them is the lab's failure; not reaching any other host is the job's
    lab_hosts: Iterable[str] = ()

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.downloads = 0  # network downloads done by this object (for tests and logs)
        self._lab_hosts = frozenset(h for h in map(_host_of, self.lab_hosts) if h)

    def is_lab_host(self, url: str) -> bool:
        """Whether ``url`` points at one of the lab's own artifact servers."""
        try:
            return (urlsplit(url).hostname or "").lower() in self._lab_hosts
        except ValueError:
            return False

    def _failed(self, url: str, why: str, *, jobs_fault: bool = False) -> LavaError:
        """The error for a failed fetch of ``url``: the lab's when the host is one of its own (and
        the request itself was not wrong), otherwise the job's."""
        message = f"download of {redact_url(url)} failed: {_scrub(why, url)}"
        if jobs_fault or not self.is_lab_host(url):
            return ArtifactDownloadError(message)
        return DownloadError(message)

    def entry(self, key: str) -> Path:
        return self.root / hashlib.sha256(key.encode()).hexdigest()[:32]

    # -- fetch --------------------------------------------------------------------------------
    def fetch(self, url: str, deadline: Deadline, *, sha256: str | None = None, use_cache: bool = True,
              workdir: Path | None = None) -> Path:
        """A local file with the content of ``url`` (checked against ``sha256`` when given)."""
        shown = redact_url(url)
        try:
            scheme = urlsplit(url).scheme
        except ValueError as exc:
            raise JobError.single("job", "url", f"{shown!r} is not a URL: {_scrub(str(exc), url)}") from None
        if scheme not in ("http", "https", "file"):
            raise JobError.single("job", "url", f"{shown!r}: only http, https and file URLs are supported")
        path = local_path(url, self.base)
        if path is not None:
            if not path.is_file():
                raise self._failed(url, f"no such file {path}", jobs_fault=True)
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
        with locked(entry / "lock", deadline, shown):
            meta = _read_json(meta_path)
            if data.is_file() and meta.get("url") == url and self._fresh(url, meta, deadline):
                self._note(f"using cached {shown}")
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
            raise ChecksumMismatch(f"checksum mismatch for {redact_url(url)}: expected sha256 "
                                   f"{expected.strip().lower()}, got {actual}")

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
                self._note(f"{redact_url(url)} changed on the server ({header}); downloading it again")
                return False
        return True

    def _download(self, url: str, target: Path, deadline: Deadline, meta: dict | None = None) -> str:
        import requests

        shown = redact_url(url)
        node = deadline.child(None, f"download {shown}")
        tmp = target.with_name(f"{target.name}.part-{os.getpid()}")
        target.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        done = 0
        try:
            timeout = (node.remaining_or(30.0), node.remaining_or(60.0))
            with self._requests().get(url, stream=True, timeout=timeout) as r:
                if r.status_code != 200:
                    raise self._failed(url, f"HTTP {r.status_code} {r.reason or ''}".rstrip(),
                                       jobs_fault=400 <= r.status_code < 500)
                length = (r.headers.get("Content-Length") or "").strip()
                total = int(length) if length.isdigit() else 0
                started = last = time.monotonic()
                with open(tmp, "wb") as f:
                    for chunk in r.iter_content(CHUNK):
                        if node.expired:
                            raise self._failed(url, f"{node.exceeded().message} after {done / 1e6:.1f} MB")
                        try:
                            f.write(chunk)
                        except OSError as exc:  # the host's disk, not the artifact
                            raise DownloadError(f"download of {shown} failed: cannot write the cache "
                                                f"({tmp}): {exc.strerror or exc}") from None
                        h.update(chunk)
                        done += len(chunk)
                        if time.monotonic() - last >= PROGRESS_EVERY:
                            last = time.monotonic()
                            self._note(_progress(shown, done, total, last - started))
                if total and done != total:
                    raise self._failed(url, f"got {done} of {total} bytes")
            os.replace(tmp, target)
        except requests.RequestException as exc:
            bad_url = isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema |
                                 requests.exceptions.MissingSchema)  # the URL itself is wrong
            raise self._failed(url, f"{type(exc).__name__}: {exc}", jobs_fault=bad_url) from None
        finally:
            _remove(tmp)
        self.downloads += 1
        elapsed = node.elapsed
        self._note(f"downloaded {shown}: {done / 1e6:.1f} MB in {elapsed:.1f} s")
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
