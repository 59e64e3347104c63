"""Inputs that are not trusted, built to hurt: job files (YAML alias bombs, deep nesting), results
servers a job names (redirects, endless answers), a spool holding several servers, a client of the
image server that sends nothing, URLs with passwords, and board lines made for a backtracking regex.

Every server here listens on 127.0.0.1 and is stopped by its test.
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_lava import submit as submit_pkg
from pytest_lava.artifacts.imageserver import ImageServer
from pytest_lava.core.errors import JobError
from pytest_lava.core.secrets import Masker
from pytest_lava.jobs.job import load_job
from pytest_lava.jobs.loader import MAX_DEPTH, parse_text
from pytest_lava.results.model import JobResults
from pytest_lava.submit import SubmitTarget, spool, submit_bundle
from pytest_lava.testdefs.parse import find_signal, signal_fields
from tests.dashboard_stub import DashboardStub

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hostile-tok-5f0e2b7c91"
OTHER_TOKEN = "other-tok-0a9d33e6c4"
STREAM = "/anonymous/smoke/"


# -- 1. job files: alias bombs and deep nesting -------------------------------------------------

def _bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["timeout: 60", "a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    # metadata values are turned into text by the validation: this is where the bomb went off
    lines += ["actions:", "  - command: boot_linaro_image", f"    metadata: {{x: *a{levels - 1}}}"]
    return "\n".join(lines) + "\n"


def _limit_memory() -> None:
    limit = 1_500_000 * 1024  # `ulimit -v 1500000`
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.timeout(120)
def test_alias_bomb_is_a_job_error_within_seconds_and_little_memory(tmp_path: Path) -> None:
    job = tmp_path / "bomb.yaml"
    job.write_text(_bomb())
    assert len(job.read_bytes()) < 700
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--lava-validate", "--lava-job", str(job),
         "--lava-devices", str(ROOT / "devices")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100, preexec_fn=_limit_memory)
    elapsed = time.monotonic() - started
    out = done.stdout + done.stderr
    assert done.returncode == 4, out
    assert re.search(rf"{re.escape(str(job))}:\d+: a\d\[\d+\]: YAML aliases expand", out), out
    assert "alias bomb" in out and "MemoryError" not in out and "Traceback" not in out
    assert elapsed < 30, elapsed  # seconds, not the 40 s (and a MemoryError) it took


def test_alias_bomb_in_load_job_is_a_job_error_with_problem(tmp_path: Path) -> None:
    job = tmp_path / "bomb.yaml"
    job.write_text(_bomb())
    with pytest.raises(JobError) as info:
        load_job(job)
    (problem,) = info.value.problems
    assert problem.file == str(job) and problem.line is not None and problem.path.startswith("a")
    assert "YAML aliases expand the document" in problem.reason


@pytest.mark.parametrize("text, reason", [
    ("timeout: 1\na: &a [1, *a]\n", "contains it"),
    ("timeout: 1\na: &a {b: *a}\n", "contains it"),
    ("s: &s " + "x" * 100_000 + "\nl: [" + ", ".join(["*s"] * 200) + "]\n", "characters of text"),
])
def test_recursive_aliases_and_text_bombs_are_refused(text: str, reason: str) -> None:
    doc = parse_text(text, "j.yaml", json_syntax=False)
    assert doc.data is None and doc.problem is not None and reason in doc.problem.reason


def test_ordinary_aliases_and_merge_keys_still_load() -> None:
    text = "base: &b {x: 1, y: [a, b]}\nc:\n  <<: *b\n  z: 3\nd: [*b, *b, *b]\n"
    doc = parse_text(text, "ok.yaml", json_syntax=False)
    assert doc.problem is None
    assert doc.data["c"] == {"x": 1, "y": ["a", "b"], "z": 3} and doc.data["d"] == [doc.data["base"]] * 3


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 5_000, 200_000])
def test_deep_json_is_a_clear_problem(tmp_path: Path, depth: int) -> None:
    job = tmp_path / "deep.json"
    job.write_text('{"timeout": 60,\n "actions": [{"command": "lava_test_shell", "parameters":\n {"testdef_repos": '
                   + "[" * depth + "]" * depth + "}}]}")
    with pytest.raises(JobError) as info:
        load_job(job)
    (problem,) = info.value.problems
    assert "nested" in problem.reason and str(MAX_DEPTH) in problem.reason
    assert problem.line == 3  # where the nesting passes the limit


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 990])
def test_deep_yaml_is_a_clear_problem(depth: int) -> None:
    text = "timeout: 60\nactions:\n- command: lava_test_shell\n  parameters:\n    testdef_repos: " + \
        "[" * depth + "]" * depth + "\n"
    doc = parse_text(text, "deep.yaml", json_syntax=False)
    assert doc.problem is not None and "nested more than" in doc.problem.reason and doc.problem.line == 5
    assert doc.problem.path.startswith("actions[0].parameters.testdef_repos[0]")


def test_deep_nesting_through_an_alias_is_refused_and_the_limit_itself_loads() -> None:
    half = MAX_DEPTH // 2 + 1
    doc = parse_text(f"a: &a {'[' * half}{']' * half}\nb: {'[' * half}*a{']' * half}\n", "d.yaml", json_syntax=False)
    assert doc.problem is not None and "through an alias" in doc.problem.reason
    ok = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    assert parse_text(f"a: {ok}\n", "ok.yaml", json_syntax=False).problem is None
    assert parse_text(f'{{"a": {ok}}}', "ok.json", json_syntax=True).problem is None


# -- 2. submit sinks: redirects and oversized answers ------------------------------------------

class Recorder:
    """An HTTP server on 127.0.0.1 that records every request and answers with ``answer``."""

    def __init__(self, answer) -> None:  # type: ignore[no-untyped-def]
        self.requests: list[dict] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.requests.append({"method": self.command, "path": self.path,
                                          "headers": dict(self.headers), "body": body})
                try:
                    answer(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = _any  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _ok(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(201)
    handler.end_headers()
    handler.wfile.write(b"1")


def _redirect(code: int, location: str):  # type: ignore[no-untyped-def]
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(code)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return answer


@pytest.fixture
def bundle_path(tmp_path: Path) -> Path:
    res = JobResults(job_name="smoke", job_file="smoke.yaml", results_dir=tmp_path / "results",
                     hostname="qemu01", device_type="qemu-x86_64", tags=[], secrets=Masker([TOKEN]))
    res.add_action("deploy_linaro_image", "pass")
    return res.finish(job_complete=True)


def _target(kind: str, port: int) -> SubmitTarget:
    if kind == "squad":
        return SubmitTarget(f"squad+http://127.0.0.1:{port}/group/project", token=TOKEN)
    return SubmitTarget(f"http://alice@127.0.0.1:{port}/RPC2/", STREAM, TOKEN)


def _submit(bundle_path: Path, target: SubmitTarget, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    log: list[str] = []
    outcome = submit_bundle(bundle_path, target, job_name="smoke", timeout=timeout,
                            spool_dir=bundle_path.parent / "spool", retries=2, log=log.append, backoff=0.05)
    text = "\n".join(log) + outcome.message
    assert TOKEN not in text
    return outcome, text


@pytest.mark.parametrize("kind", ["squad", "xmlrpc"])
@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failed_submit_and_the_token_stays_home(bundle_path: Path, kind: str, code: int) -> None:
    with Recorder(_ok) as elsewhere:
        location = f"http://mallory:pw-in-location@127.0.0.1:{elsewhere.port}/api/submit/g/p/b/e?key=query-secret"
        with Recorder(_redirect(code, location)) as server:
            outcome, text = _submit(bundle_path, _target(kind, server.port))
        assert len(server.requests) == 1  # a redirect is not retried either
        assert elsewhere.requests == []  # neither the bundle nor the token went to the other host
    assert not outcome.ok and outcome.status == "redirected"
    assert f"HTTP {code}" in text and f"127.0.0.1:{elsewhere.port}" in text
    assert "pw-in-location" not in text and "query-secret" not in text and "mallory" not in text
    assert outcome.spooled is not None and (outcome.spooled / "bundle.json").read_bytes() == bundle_path.read_bytes()
    meta = (outcome.spooled / "submit.json").read_text()
    assert TOKEN not in meta and "redirect" in meta


def test_the_token_header_is_never_sent_to_a_redirect_target(bundle_path: Path) -> None:
    """Before the fix requests followed a 307 with the ``Auth-Token`` header to the other host."""
    with Recorder(_ok) as elsewhere, Recorder(_redirect(307, f"http://127.0.0.1:{elsewhere.port}/x")) as server:
        _submit(bundle_path, _target("squad", server.port))
    (request,) = server.requests
    assert request["headers"].get("Auth-Token") == TOKEN  # the server the job named got it: as meant
    assert not any("Auth-Token" in r["headers"] or TOKEN.encode() in r["body"] for r in elsewhere.requests)


def _endless(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/xml")
    handler.end_headers()  # no Content-Length: the answer ends when the connection does
    chunk = b"<" * 65536
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        handler.wfile.write(chunk)


def _declared_huge(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(10 << 30))
    handler.end_headers()
    handler.wfile.write(b"x" * 1000)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["squad", "xmlrpc"])
@pytest.mark.parametrize("answer", [_endless, _declared_huge])
def test_an_oversized_answer_is_capped_and_the_bundle_spooled(bundle_path: Path, kind: str, answer) -> None:  # type: ignore[no-untyped-def]
    with Recorder(answer) as server:
        started = time.monotonic()
        outcome, text = _submit(bundle_path, _target(kind, server.port), timeout=30)
        elapsed = time.monotonic() - started
    assert not outcome.ok and outcome.spooled is not None
    assert f"larger than {submit_pkg.MAX_RESPONSE // 1024} KiB" in text
    assert len(server.requests) == 1 and elapsed < 20  # not read until the server gave up


def test_http_post_reads_at_most_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    def sized(n: int):  # type: ignore[no-untyped-def]
        def answer(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(200)
            handler.end_headers()
            handler.wfile.write(b"y" * n)
        return answer

    monkeypatch.setattr(submit_pkg, "MAX_RESPONSE", 1000)
    with Recorder(sized(1000)) as server:
        assert submit_pkg.http_post(f"http://127.0.0.1:{server.port}/", timeout=10, where="s") == (200, b"y" * 1000)
    with Recorder(sized(1001)) as server, pytest.raises(submit_pkg.SubmitError, match="larger than"):
        submit_pkg.http_post(f"http://127.0.0.1:{server.port}/", timeout=10, where="s")


# -- 3. resubmit: a token goes to one server ---------------------------------------------------

@pytest.fixture
def two_dashboards() -> Iterator[tuple[DashboardStub, DashboardStub]]:
    a, b = DashboardStub(), DashboardStub()
    a.add_user("alice", TOKEN)
    b.add_user("alice", OTHER_TOKEN)
    a.add_stream(STREAM)
    b.add_stream(STREAM)
    a.start()
    b.start()
    yield a, b
    a.stop()
    b.stop()


def _spool_for(spool_dir: Path, bundle_path: Path, *servers: str) -> None:
    content = bundle_path.read_bytes()
    for i, server in enumerate(servers):
        bundle = json.loads(content)
        bundle["test_runs"][0]["test_id"] = f"lava-{i}"  # different content: no duplicate fault
        spool.save(spool_dir, json.dumps(bundle).encode(), SubmitTarget(server, STREAM),
                   job_name=f"job{i}", reason="down")


def _authorizations(stub: DashboardStub) -> list[str]:
    return [r["authorization"] for r in stub.requests]


def test_resubmit_never_sends_one_token_to_several_servers(
        two_dashboards: tuple[DashboardStub, DashboardStub], bundle_path: Path) -> None:
    a, b = two_dashboards
    spool_dir = bundle_path.parent / "spool"
    _spool_for(spool_dir, bundle_path, a.url("alice"), b.url("alice"))
    with pytest.raises(spool.TokenScopeError, match="--only-server"):
        spool.resubmit(spool_dir, token=TOKEN, retries=0, log=lambda _: None)
    assert a.requests == [] and b.requests == []  # refused before anything was sent

    done = spool.resubmit(spool_dir, token=TOKEN, only_server=a.url(), retries=0, log=lambda _: None)
    assert [o.ok for _, o in done] == [True] and len(a.bundles) == 1
    assert b.requests == [] and len(spool.entries(spool_dir)) == 1  # b's bundle waits for b's token
    done = spool.resubmit(spool_dir, token=OTHER_TOKEN, only_server=b.url(), retries=0, log=lambda _: None)
    assert [o.ok for _, o in done] == [True] and len(b.bundles) == 1
    assert all(TOKEN not in json.dumps(r) for r in b.requests)
    assert spool.entries(spool_dir) == []


def test_resubmit_with_server_sends_the_token_there_only(
        two_dashboards: tuple[DashboardStub, DashboardStub], bundle_path: Path) -> None:
    a, b = two_dashboards
    spool_dir = bundle_path.parent / "spool"
    _spool_for(spool_dir, bundle_path, a.url("alice"), b.url("alice"))
    done = spool.resubmit(spool_dir, server=a.url("alice"), token=TOKEN, retries=0, log=lambda _: None)
    assert [o.ok for _, o in done] == [True, True] and len(a.bundles) == 2 and b.requests == []


def test_resubmit_one_server_spool_still_takes_the_token(
        two_dashboards: tuple[DashboardStub, DashboardStub], bundle_path: Path) -> None:
    a, _ = two_dashboards
    spool_dir = bundle_path.parent / "spool"
    _spool_for(spool_dir, bundle_path, a.url("alice"), a.url())  # the user is not part of the server
    done = spool.resubmit(spool_dir, token=TOKEN, retries=0, log=lambda _: None)
    assert [o.ok for _, o in done] == [True, True]


def test_resubmit_cli_refuses_a_mixed_spool_with_a_token(
        two_dashboards: tuple[DashboardStub, DashboardStub], bundle_path: Path) -> None:
    a, b = two_dashboards
    spool_dir = bundle_path.parent / "spool"
    _spool_for(spool_dir, bundle_path, a.url("alice"), b.url("alice"))
    env = dict(os.environ, LAVA_TOKEN=TOKEN)
    cmd = [sys.executable, "-m", "pytest_lava", "resubmit", str(spool_dir), "--retries", "0", "--timeout", "10"]
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--only-server" in refused.stderr and TOKEN not in refused.stderr
    assert a.requests == [] and b.requests == []
    sent = subprocess.run([*cmd, "--only-server", a.url()], env=env, capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert len(a.bundles) == 1 and b.requests == [] and TOKEN not in sent.stdout + sent.stderr
    helptext = subprocess.run([sys.executable, "-m", "pytest_lava", "resubmit", "--help"],
                              capture_output=True, text=True, timeout=60).stdout
    assert "one server only" in helptext


# -- 4. the image server: a silent client is disconnected --------------------------------------

@pytest.mark.timeout(30)
def test_image_server_disconnects_a_silent_client(tmp_path: Path) -> None:
    image = tmp_path / "image.bin"
    image.write_bytes(b"z" * 1000)
    server = ImageServer(client_timeout=0.5)
    try:
        item = server.publish(image)
        silent = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        partial = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        partial.sendall(b"GET /")  # half a request line, then nothing
        started = time.monotonic()
        assert silent.recv(1024) == b""  # the server closed it
        assert partial.recv(1024) == b""
        assert time.monotonic() - started < 10
        silent.close()
        partial.close()
        with urllib.request.urlopen(server.url(item, "127.0.0.1"), timeout=10) as answer:
            assert answer.read() == image.read_bytes()  # the server still serves
    finally:
        server.close()


# -- 5. passwords in URLs ----------------------------------------------------------------------

def test_masker_masks_url_passwords_without_registration(caplog: pytest.LogCaptureFixture) -> None:
    masker = Masker()
    text = "fetch http://alice:pa55word@host:8080/img.gz and squad+https://bob:t%40k@h/g/p, http://carol@h/"
    masked = masker.mask(text)
    assert "pa55word" not in masked and "t%40k" not in masked
    assert "http://<HIDDEN>@host:8080/img.gz" in masked and "squad+https://<HIDDEN>@h/g/p" in masked
    assert "http://carol@h/" in masked  # no password: nothing to hide
    assert masker.mask_bytes(text.encode()) == masked.encode()
    assert masker.mask_obj({"u": [text]}) == {"u": [masked]}
    assert masker.mask(masked) == masked
    assert masker.mask("ftp://u:p@ss@h/x") == "ftp://<HIDDEN>@h/x"  # a password holding '@'
    handler = logging.StreamHandler()
    handler.addFilter(masker.filter())
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "url %s", (text,), None)
    handler.filter(record)
    assert "pa55word" not in record.getMessage()


def test_url_passwords_of_a_job_are_registered_everywhere() -> None:
    masker = Masker()
    job = {"actions": [{"parameters": {"image": "http://alice:s3cr%40t@lab/x.img", "n": 3}}]}
    masker.add_url_passwords(job)
    assert masker and masker.mask("the board printed s3cr@t and s3cr%40t") == "the board printed <HIDDEN> and <HIDDEN>"


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", ["a" * 1_000_000 + "://", "http://" * 200_000, "x://" + "u" * 1_000_000,
                                  "http://u:" + "p" * 1_000_000, "a://b:" * 200_000])
def test_url_masking_is_linear(text: str) -> None:
    assert Masker().mask(text) == text


# -- 6. LAVA signals made for a backtracking regex ---------------------------------------------

OLD_SIGNAL = re.compile(r"<LAVA_SIGNAL_([A-Z]+)(?: ([^>]*))?>")
OLD_KV = re.compile(r"([A-Z_]+)=(.*?)(?=\s+[A-Z_]+=|\s*$)")


@pytest.mark.timeout(5)
def test_signal_with_16000_spaces_parses_right() -> None:
    line = "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a" + " " * 16_000 + "x RESULT=pass>"
    name, arg = find_signal(line)  # type: ignore[misc]
    assert name == "TESTCASE" and signal_fields(arg) == {"TEST_CASE_ID": "a" + " " * 16_000 + "x", "RESULT": "pass"}


@pytest.mark.timeout(5)
@pytest.mark.parametrize("line", [
    "<LAVA_SIGNAL_TESTCASE A=a" + " " * 1_000_000 + "x>",
    "<LAVA_SIGNAL_A " * 100_000,
    "<LAVA_SIGNAL_TESTCASE " + "A" * 1_000_000 + ">",
    "<LAVA_SIGNAL_TESTCASE " + "A " * 500_000 + "B=1>",
    "<LAVA_SIGNAL_" * 100_000 + ">",
])
def test_megabyte_pathological_signal_lines_are_linear(line: str) -> None:
    found = find_signal(line)
    if found is not None:
        signal_fields(found[1])


@given(st.text(alphabet="AB_=x <>\t", max_size=40))
def test_signal_fields_match_the_old_regex(text: str) -> None:
    assert signal_fields(text) == {k: v.strip() for k, v in OLD_KV.findall(text)}


@given(st.lists(st.sampled_from(["A", "B", "c", " ", ">", "<", "<LAVA_SIGNAL_"]), max_size=12).map("".join))
def test_find_signal_matches_the_old_regex(text: str) -> None:
    m = OLD_SIGNAL.search(text)
    assert find_signal(text) == (None if m is None else (m.group(1), m.group(2) or ""))
