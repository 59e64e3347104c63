"""The download cache against a local HTTP server: cache hits, checksums, 404, concurrency, whose
fault a failed fetch is (the job's or the lab's), and passwords in URLs never shown."""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pytest_lava.artifacts.download import ArtifactDownloadError, ChecksumMismatch, DownloadCache, DownloadError
from pytest_lava.core.deadline import Deadline
from pytest_lava.core.errors import InfrastructureError, JobError, kind_of

FILES = {"/a.tar": b"A" * 300_000, "/b.bin": b"B" * 1000}


class Server:
    def __init__(self, delay: float = 0.0) -> None:
        self.files = dict(FILES)
        self.status: dict[str, int] = {}  # path -> HTTP error status to answer
        self.gets: Counter[str] = Counter()
        self.delay = delay
        self.mtime = "Mon, 01 Jan 2024 00:00:00 GMT"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(False)

            def do_GET(self) -> None:  # noqa: N802
                outer.gets[self.path] += 1
                self._answer(True)

            def _answer(self, body: bool) -> None:
                if self.path in outer.status:
                    self.send_error(outer.status[self.path])
                    return
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Last-Modified", outer.mtime)
                self.end_headers()
                if body:
                    time.sleep(outer.delay)
                    self.wfile.write(data)

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    s = Server()
    yield s
    s.close()


def test_fetch_once_then_from_cache(server: Server, tmp_path: Path) -> None:
    logs: list[str] = []
    cache = DownloadCache(tmp_path, log=logs.append)
    p1 = cache.fetch(server.url("/a.tar"), Deadline(30, "t"))
    p2 = DownloadCache(tmp_path).fetch(server.url("/a.tar"), Deadline(30, "t"))
    assert p1 == p2 and p1.read_bytes() == FILES["/a.tar"]
    assert server.gets["/a.tar"] == 1
    assert any("downloaded" in line and "/a.tar" in line for line in logs)


def test_changed_on_server_is_downloaded_again(server: Server, tmp_path: Path) -> None:
    url = server.url("/b.bin")
    DownloadCache(tmp_path).fetch(url, Deadline(30, "t"))
    server.files["/b.bin"] = b"new content"
    server.mtime = "Tue, 02 Jan 2024 00:00:00 GMT"
    assert DownloadCache(tmp_path).fetch(url, Deadline(30, "t")).read_bytes() == b"new content"
    assert server.gets["/b.bin"] == 2


def test_checksum_ok_and_mismatch_names_the_url(server: Server, tmp_path: Path) -> None:
    url = server.url("/b.bin")
    good = hashlib.sha256(FILES["/b.bin"]).hexdigest()
    assert DownloadCache(tmp_path).fetch(url, Deadline(30, "t"), sha256=good.upper()).is_file()
    with pytest.raises(ChecksumMismatch) as info:
        DownloadCache(tmp_path).fetch(url, Deadline(30, "t"), sha256="0" * 64)
    assert url in str(info.value) and good in str(info.value)
    # the bad entry is not kept: the next fetch downloads again
    DownloadCache(tmp_path).fetch(url, Deadline(30, "t"), sha256=good)
    assert server.gets["/b.bin"] == 2


def test_404_names_the_url_and_is_the_jobs_fault(server: Server, tmp_path: Path) -> None:
    url = server.url("/missing.tar.gz")
    for cache in (DownloadCache(tmp_path), DownloadCache(tmp_path, lab_hosts=["127.0.0.1"])):
        with pytest.raises(ArtifactDownloadError) as info:
            cache.fetch(url, Deadline(30, "t"))
        assert url in str(info.value) and "404" in str(info.value)
        assert kind_of(info.value) == "job" and not isinstance(info.value, InfrastructureError)
    assert not list(tmp_path.rglob("data"))


def test_unreachable_artifact_host_is_the_jobs_fault(tmp_path: Path) -> None:
    with pytest.raises(ArtifactDownloadError, match="127.0.0.1:9/x") as info:
        DownloadCache(tmp_path).fetch("http://127.0.0.1:9/x", Deadline(10, "t"))
    assert isinstance(info.value, JobError)


def test_the_labs_own_server_failing_is_an_infrastructure_error(server: Server, tmp_path: Path) -> None:
    """Unreachable or 5xx: the lab's fault when the host is one of its own (lab_hosts: host names
    or URLs such as the device's image_server), the job's otherwise."""
    with pytest.raises(DownloadError, match="127.0.0.1:9/x") as info:
        DownloadCache(tmp_path, lab_hosts=["http://127.0.0.1:7080"]).fetch("http://127.0.0.1:9/x", Deadline(10, "t"))
    assert kind_of(info.value) == "infrastructure"
    server.status["/boom"] = 503
    with pytest.raises(DownloadError, match="HTTP 503"):
        DownloadCache(tmp_path, lab_hosts=["127.0.0.1"]).fetch(server.url("/boom"), Deadline(10, "t"))
    with pytest.raises(ArtifactDownloadError, match="HTTP 503"):
        DownloadCache(tmp_path, lab_hosts=["10.0.2.2"]).fetch(server.url("/boom"), Deadline(10, "t"))


def test_passwords_in_urls_are_never_shown(server: Server, tmp_path: Path) -> None:
    port = server.httpd.server_address[1]
    logs: list[str] = []
    cache = DownloadCache(tmp_path, log=logs.append)
    messages = []
    for url in (f"http://lab:s3cr3t-pw@127.0.0.1:{port}/missing", "http://lab:s3cr3t-pw@127.0.0.1:9/x",
                "ftp://lab:s3cr3t-pw@example.org/x", "http://tok3n-only@127.0.0.1:9/x"):
        with pytest.raises(JobError) as info:
            cache.fetch(url, Deadline(10, "t"))
        messages.append(str(info.value))
    good = f"http://lab:s3cr3t-pw@127.0.0.1:{port}/b.bin"
    assert cache.fetch(good, Deadline(10, "t")).read_bytes() == FILES["/b.bin"]
    with pytest.raises(ChecksumMismatch) as info:
        cache.fetch(good, Deadline(10, "t"), sha256="0" * 64)
    messages.append(str(info.value))
    text = "\n".join(messages + logs)
    assert "s3cr3t-pw" not in text and "tok3n-only" not in text
    assert f"http://<HIDDEN>@127.0.0.1:{port}/missing" in messages[0]
    assert any(f"downloaded http://<HIDDEN>@127.0.0.1:{port}/b.bin" in line for line in logs)


def test_redact_url() -> None:
    from pytest_lava.core.secrets import redact_url

    assert redact_url("https://u:p@h:8/a?b=1#c") == "https://<HIDDEN>@h:8/a?b=1#c"
    assert redact_url("http://token@h/x") == "http://<HIDDEN>@h/x"
    assert redact_url("http://a:b@c@h/x") == "http://<HIDDEN>@h/x"
    assert redact_url("http://h/x@y") == "http://h/x@y"
    assert redact_url("file:///a/b") == "file:///a/b"


def test_credentials_in_query_strings_are_never_shown(server: Server, tmp_path: Path) -> None:
    """A presigned or token URL (S3 ``X-Amz-Signature``, a SAS ``sig``, ``?token=``) is shown with
    those values hidden, in messages, logs and wherever else the masker sees the value."""
    from pytest_lava.core.secrets import Masker, redact_url

    port = server.httpd.server_address[1]
    logs: list[str] = []
    cache = DownloadCache(tmp_path, log=logs.append)
    presigned = "/b.bin?X-Amz-Credential=AKIA-k3y&X-Amz-Signature=s1gnature-9&part=1"
    server.files[presigned] = FILES["/b.bin"]  # the stub serves by path and query
    url = f"http://127.0.0.1:{port}{presigned}"
    assert cache.fetch(url, Deadline(10, "t")).read_bytes() == FILES["/b.bin"]
    with pytest.raises(JobError) as info:
        cache.fetch(f"http://127.0.0.1:{port}/missing?token=t0ken-abc", Deadline(10, "t"))
    text = "\n".join([str(info.value), *logs])
    assert "AKIA-k3y" not in text and "s1gnature-9" not in text and "t0ken-abc" not in text
    assert "X-Amz-Signature=<HIDDEN>&part=1" in text and "missing?token=<HIDDEN>" in text

    assert redact_url("https://h/c/b?sv=2020&sig=AbC%2Bd&se=1") == "https://h/c/b?sv=2020&sig=<HIDDEN>&se=1"
    assert redact_url("http://h/x?design=1&config=2&author=me") == "http://h/x?design=1&config=2&author=me"
    masker = Masker()
    masker.add_url_passwords({"image": "http://h/a.img?private_token=glpat-zz99"})
    assert masker.mask("the board echoed glpat-zz99") == "the board echoed <HIDDEN>"
    assert masker.mask_bytes(b"GET /a?access_token=q1w2e3 HTTP/1.1") == b"GET /a?access_token=<HIDDEN> HTTP/1.1"


def test_file_urls_relative_and_absolute(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    art = tmp_path / "art.bin"
    art.write_bytes(b"local")
    cache = DownloadCache(tmp_path / "cache", base=tmp_path / "jobs")
    assert cache.fetch("file:../art.bin", Deadline(5, "t")).resolve() == art
    assert cache.fetch(f"file://{art}", Deadline(5, "t")) == art
    with pytest.raises(ArtifactDownloadError, match="no such file"):
        cache.fetch("file:../nope.bin", Deadline(5, "t"))
    with pytest.raises(ChecksumMismatch, match="art.bin") as info:
        cache.fetch("file:../art.bin", Deadline(5, "t"), sha256="1" * 64)
    assert kind_of(info.value) == "job"  # a wrong checksum is the job's fault, never the board's


def test_derive_builds_once_and_follows_the_source(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_text("one")
    calls: list[Path] = []

    def build(out: Path) -> None:
        calls.append(out)
        out.write_text(src.read_text().upper())

    cache = DownloadCache(tmp_path / "cache")
    a = cache.derive(src, "upper", build, Deadline(5, "t"))
    b = cache.derive(src, "upper", build, Deadline(5, "t"))
    assert a == b and a.read_text() == "ONE" and len(calls) == 1
    time.sleep(0.01)
    src.write_text("two!")
    assert cache.derive(src, "upper", build, Deadline(5, "t")).read_text() == "TWO!"


def _worker(root: str, url: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    path = DownloadCache(Path(root)).fetch(url, Deadline(60, "w"))
    out.put(path.read_bytes() == FILES["/a.tar"])


def test_concurrent_processes_download_once(tmp_path: Path) -> None:
    s = Server(delay=0.5)
    try:
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(str(tmp_path), s.url("/a.tar"), q)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        assert [q.get(timeout=5) for _ in procs] == [True, True, True]
        assert s.gets["/a.tar"] == 1
        assert not [p for p in tmp_path.rglob("*.part-*")]
    finally:
        s.close()


def test_waiting_for_a_lock_obeys_the_deadline(tmp_path: Path) -> None:
    from pytest_lava.artifacts.download import locked

    lock = tmp_path / "x.lock"
    with locked(lock, Deadline(5, "a"), "x"):
        t0 = time.monotonic()
        with pytest.raises(DownloadError, match="waiting for another process"), locked(lock, Deadline(0.3, "b"), "x"):
            pass
        assert time.monotonic() - t0 < 5


def test_only_http_https_file(tmp_path: Path) -> None:
    from pytest_lava.core.errors import JobError

    with pytest.raises(JobError, match="only http, https and file"):
        DownloadCache(tmp_path).fetch("ftp://example.org/x", Deadline(5, "t"))
