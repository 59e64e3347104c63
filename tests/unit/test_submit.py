"""Submitting against the stand-in dashboard on 127.0.0.1: every answer of the API table, a server
that is down, hangs, or fails then recovers; the spool and `python -m pytest_lava resubmit`."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pytest_lava.core.secrets import Masker
from pytest_lava.results.model import JobResults
from pytest_lava.submit import SubmitTarget, resolve_token, submit_bundle
from pytest_lava.submit import squad as squad_sink
from tests.dashboard_stub import DashboardStub

TOKEN = "dash-tok-8c1e55aa90"
STREAM = "/private/personal/alice/smoke/"


@pytest.fixture
def stub():
    server = DashboardStub()
    server.add_user("alice", TOKEN)
    server.add_user("bob", "bob-token-1234")
    server.add_stream(STREAM, "alice", private=True)
    server.add_stream("/anonymous/smoke/")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bundle_path(tmp_path: Path) -> Path:
    res = JobResults(job_name="smoke", job_file="smoke.yaml", results_dir=tmp_path / "results",
                     hostname="qemu01", device_type="qemu-x86_64", tags=[], secrets=Masker([TOKEN]))
    res.add_action("deploy_linaro_image", "pass")
    res.add_action("boot_image", "pass")
    return res.finish(job_complete=True)


class Log(list):
    def __call__(self, text: str) -> None:
        self.append(text)

    def text(self) -> str:
        return "\n".join(self)


def submit(bundle_path: Path, target: SubmitTarget, timeout: float = 10.0, retries: int = 3):
    log = Log()
    outcome = submit_bundle(bundle_path, target, job_name="smoke", timeout=timeout,
                            spool_dir=bundle_path.parent / "spool", retries=retries, log=log, backoff=0.05)
    assert TOKEN not in log.text() and TOKEN not in outcome.message
    return outcome, log


def spooled(bundle_path: Path) -> list[Path]:
    return sorted((bundle_path.parent / "spool").glob("*/bundle.json"))


def test_success_stores_the_bundle_with_basic_auth(stub: DashboardStub, bundle_path: Path) -> None:
    outcome, log = submit(bundle_path, SubmitTarget(stub.url("alice"), STREAM, TOKEN))
    assert outcome.ok and outcome.status == "delivered" and outcome.attempts == 1
    (sha1,) = stub.bundles
    assert outcome.url == f"http://127.0.0.1:{stub.port}/dashboard/permalink/bundle/{sha1}/"
    stored = stub.bundles[sha1]
    assert stored["content"] == bundle_path.read_text()
    assert stored["content_filename"] == "smoke" and stored["stream"] == STREAM and stored["user"] == "alice"
    assert stub.requests[0]["authorization"] == "Basic " + base64.b64encode(f"alice:{TOKEN}".encode()).decode()
    assert stub.requests[0]["path"] == "/RPC2/"  # the user name is not left in the URL
    assert spooled(bundle_path) == []


def test_anonymous_stream_needs_no_token(stub: DashboardStub, bundle_path: Path) -> None:
    outcome, _ = submit(bundle_path, SubmitTarget(stub.url(), "/anonymous/smoke/", None))
    assert outcome.ok
    assert stub.requests[0]["authorization"] == ""


def test_bad_token_is_http_401_and_is_spooled_without_retry(stub: DashboardStub, bundle_path: Path) -> None:
    outcome, _ = submit(bundle_path, SubmitTarget(stub.url("alice"), STREAM, "wrong-token-999"))
    assert not outcome.ok and outcome.status == "auth" and outcome.attempts == 1
    assert "HTTP 401" in outcome.message and "rejected the token of user 'alice'" in outcome.message
    assert "wrong-token-999" not in outcome.message
    assert len(spooled(bundle_path)) == 1 and not stub.bundles


def test_unknown_stream_is_fault_404(stub: DashboardStub, bundle_path: Path) -> None:
    outcome, _ = submit(bundle_path, SubmitTarget(stub.url("alice"), "/anonymous/nope/", TOKEN))
    assert not outcome.ok and outcome.status == "not-found"
    assert "fault 404" in outcome.message and "does not exist" in outcome.message


def test_someone_elses_private_stream_is_404_and_public_personal_is_403(
    stub: DashboardStub, bundle_path: Path
) -> None:
    outcome, _ = submit(bundle_path, SubmitTarget(stub.url("bob"), STREAM, "bob-token-1234"))
    assert outcome.status == "not-found"
    stub.add_stream("/public/personal/alice/", "alice")
    outcome, _ = submit(bundle_path, SubmitTarget(stub.url("bob"), "/public/personal/alice/", "bob-token-1234"))
    assert not outcome.ok and outcome.status == "forbidden" and "may not upload" in outcome.message


def test_duplicate_is_fault_409_and_not_spooled(stub: DashboardStub, bundle_path: Path) -> None:
    assert submit(bundle_path, SubmitTarget(stub.url("alice"), STREAM, TOKEN))[0].ok
    outcome, _ = submit(bundle_path, SubmitTarget(stub.url("alice"), STREAM, TOKEN))
    assert not outcome.ok and outcome.status == "duplicate"
    assert "fault 409" in outcome.message and "identical content" in outcome.message
    assert spooled(bundle_path) == [] and outcome.spooled is None


def test_server_down_retries_then_spools(stub: DashboardStub, bundle_path: Path) -> None:
    url = stub.url("alice")
    stub.stop()
    outcome, log = submit(bundle_path, SubmitTarget(url, STREAM, TOKEN), retries=2)
    assert not outcome.ok and outcome.status == "unreachable" and outcome.attempts == 3
    assert "Connection refused" in outcome.message
    assert sum("retrying" in line for line in log) == 2
    (entry,) = spooled(bundle_path)
    assert entry.read_bytes() == bundle_path.read_bytes()
    meta = json.loads((entry.parent / "submit.json").read_text())
    assert meta["server"] == url and meta["stream"] == STREAM and "token" not in meta
    assert outcome.spooled == entry.parent


def test_hanging_server_is_bounded_by_the_timeout(stub: DashboardStub, bundle_path: Path) -> None:
    stub.hang = True
    started = time.monotonic()
    outcome, _ = submit(bundle_path, SubmitTarget(stub.url("alice"), STREAM, TOKEN), timeout=1.5)
    elapsed = time.monotonic() - started
    assert not outcome.ok and outcome.status == "timeout"
    assert elapsed < 1.5 + 2.0, elapsed  # the deadline holds (generous slack: never a speed test)
    assert len(spooled(bundle_path)) == 1


def test_500_then_success(stub: DashboardStub, bundle_path: Path) -> None:
    stub.fail_next = 2
    outcome, log = submit(bundle_path, SubmitTarget(stub.url("alice"), STREAM, TOKEN))
    assert outcome.ok and outcome.attempts == 3
    assert sum("HTTP 500" in line for line in log) == 2
    assert len(stub.bundles) == 1 and spooled(bundle_path) == []


def test_duplicate_after_an_ambiguous_failure_counts_as_delivered(stub: DashboardStub, bundle_path: Path) -> None:
    assert submit(bundle_path, SubmitTarget(stub.url("alice"), STREAM, TOKEN))[0].ok
    stub.fail_next = 1  # as if the first attempt was stored but its answer was lost
    outcome, _ = submit(bundle_path, SubmitTarget(stub.url("alice"), STREAM, TOKEN))
    assert outcome.ok and "already has this bundle" in outcome.message


def test_resubmit_cli_delivers_once_the_server_is_up(stub: DashboardStub, bundle_path: Path) -> None:
    url, port = stub.url("alice"), stub.port
    stub.stop()
    outcome, _ = submit(bundle_path, SubmitTarget(url, STREAM, TOKEN), retries=0)
    assert outcome.spooled is not None
    results_dir = bundle_path.parent
    env = dict(os.environ, LAVA_TOKEN=TOKEN)
    cmd = [sys.executable, "-m", "pytest_lava", "resubmit", str(results_dir), "--timeout", "5", "--retries", "0"]
    still_down = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert still_down.returncode == 1 and "still spooled" in still_down.stderr
    revived = DashboardStub(port)
    revived.add_user("alice", TOKEN)
    revived.add_stream(STREAM, "alice", private=True)
    with revived:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "1 delivered, 0 still" in done.stdout
        (stored,) = revived.bundles.values()
        assert stored["content"] == bundle_path.read_text() and stored["stream"] == STREAM
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "nothing to resubmit" in again.stdout
    for proc in (still_down, done, again):
        assert TOKEN not in proc.stdout + proc.stderr
    assert spooled(bundle_path) == []
    for path in results_dir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_resolve_token_precedence() -> None:
    env = {"LAVA_TOKEN": "from-env"}
    assert resolve_token("from-job", "from-option", environ=env) == "from-option"
    assert resolve_token("from-job", None, environ=env) == "from-job"
    assert resolve_token(None, None, environ=env) == "from-env"
    assert resolve_token(None, None, environ={}) is None


def test_target_kind_and_token_in_url() -> None:
    assert SubmitTarget("http://alice@h/RPC2/", "/anonymous/").kind == "xmlrpc"
    assert SubmitTarget("squad+https://h/g/p").kind == "squad"
    target = SubmitTarget("http://alice:secret-in-url@h:8080/RPC2/", "/anonymous/")
    assert target.token == "secret-in-url" and target.server == "http://alice@h:8080/RPC2/"
    assert "secret-in-url" not in json.dumps(target.public())
    with pytest.raises(ValueError):
        SubmitTarget("http://h/", kind="ftp")


# -- the SQUAD sink against a stub that checks the request shape ------------------------------------


def parse_multipart(content_type: str, body: bytes) -> tuple[dict, dict]:
    """Form fields and uploaded files of a multipart/form-data body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields, files = {}, {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if part.get_filename():
            files[part.get_filename()] = payload
        else:
            fields[name] = payload.decode()
    return fields, files


class SquadShapeStub:
    """Accepts ``POST /api/submit/<group>/<project>/<build>/<env>`` and records what arrived."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.received: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                if self.headers.get("Auth-Token") != stub.token:
                    return self._send(403, b"User needs permission to submit results.")
                parts = self.path.strip("/").split("/")
                if parts[:2] != ["api", "submit"] or len(parts) != 6 or parts[2:4] != ["lab", "smoke"]:
                    return self._send(404, b"not found")
                fields, files = parse_multipart(self.headers["Content-Type"],
                                                self.rfile.read(int(self.headers["Content-Length"])))
                job_id = json.loads(fields["metadata"])["job_id"]
                if any(r["metadata"]["job_id"] == job_id for r in stub.received):
                    return self._send(400, f"There is already a test run with job_id {job_id}".encode())
                stub.received.append({"path": parts[2:], "tests": json.loads(fields["tests"]),
                                      "metrics": json.loads(fields["metrics"]), "log": fields["log"],
                                      "metadata": json.loads(fields["metadata"]), "files": files})
                self._send(201, str(len(stub.received)).encode())

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def squad_stub():
    server = SquadShapeStub("squad-tok-4455")
    yield server
    server.stop()


def full_bundle(tmp_path: Path) -> Path:
    from pytest_lava.results.model import CaseResult, TestRun

    res = JobResults(job_name="smoke job #1", job_file="smoke.yaml", results_dir=tmp_path / "r",
                     hostname="qemu01", device_type="qemu-x86_64", tags=[], secrets=Masker(["squad-tok-4455"]))
    res.add_action("boot_image", "pass")
    res.add_test_run(TestRun("stream", [CaseResult("copy", "pass", measurement=99.5, units="MB/s"),
                                        CaseResult("scale", "fail", "slow"), CaseResult("x", "unknown")], {}))
    log = tmp_path / "console.log"
    log.write_text("Linux version 6.1\n")
    res.set_serial_log(log)
    return res.finish(job_complete=True)


def test_squad_request_shape(squad_stub: SquadShapeStub, tmp_path: Path) -> None:
    path = full_bundle(tmp_path)
    target = SubmitTarget(f"squad+http://127.0.0.1:{squad_stub.port}/lab/smoke", token="squad-tok-4455")
    outcome = submit_bundle(path, target, job_name="smoke job #1", timeout=10, spool_dir=tmp_path / "spool",
                            log=lambda s: None)
    assert outcome.ok, outcome.message
    (got,) = squad_stub.received
    assert got["path"] == ["lab", "smoke", "smoke-job-1", "qemu-x86_64"]
    assert got["tests"]["stream/copy"] == {"result": "pass", "log": ""}
    assert got["tests"]["stream/scale"] == {"result": "fail", "log": "slow"}
    assert got["tests"]["stream/x"]["result"] == "skip"
    assert got["tests"]["lava/job_complete"]["result"] == "pass"
    assert got["metrics"] == {"stream/copy": {"value": 99.5, "unit": "MB/s"}}
    assert got["log"] == "Linux version 6.1\n"
    assert got["metadata"]["target.device_type"] == "qemu-x86_64"
    assert got["metadata"]["job_status"] == "Complete" and got["metadata"]["job_name"] == "smoke job #1"
    assert json.loads(got["files"]["bundle.json"]) == json.loads(path.read_text())
    again = submit_bundle(path, target, job_name="x", timeout=10, spool_dir=tmp_path / "spool", log=lambda s: None)
    assert not again.ok and again.status == "duplicate"


def test_squad_build_and_environment_from_url_and_bad_token(squad_stub: SquadShapeStub, tmp_path: Path) -> None:
    path = full_bundle(tmp_path)
    base = f"squad+http://127.0.0.1:{squad_stub.port}/lab/smoke"
    outcome = submit_bundle(path, SubmitTarget(f"{base}/v1.2/qemu", token="squad-tok-4455"), job_name="j",
                            timeout=10, spool_dir=tmp_path / "spool", log=lambda s: None)
    assert outcome.ok and squad_stub.received[0]["path"][2:] == ["v1.2", "qemu"]
    bad = submit_bundle(path, SubmitTarget(base, token="nope-nope"), job_name="j", timeout=10,
                        spool_dir=tmp_path / "spool", log=lambda s: None)
    assert not bad.ok and bad.status == "forbidden" and bad.spooled is not None
    missing = submit_bundle(path, SubmitTarget(f"squad+http://127.0.0.1:{squad_stub.port}/lab/other",
                                               token="squad-tok-4455"),
                            job_name="j", timeout=10, spool_dir=tmp_path / "spool", log=lambda s: None)
    assert missing.status == "not-found"


def test_squad_slug() -> None:
    assert squad_sink.slug("smoke job #1") == "smoke-job-1"
    assert squad_sink.slug("///") == "unknown"
