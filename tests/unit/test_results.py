"""The result model: the `lava` run, the merged bundle, the results directory, masking."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pytest_lava.core.secrets import HIDDEN, Masker
from pytest_lava.results import bundle as B
from pytest_lava.results.model import Attachment, CaseResult, JobResults, TestRun, scrub_dir

TOKEN = "tok-3f9a0c1d2e"


def make(tmp_path: Path, **kw) -> JobResults:
    args = dict(job_name="smoke", job_file="jobs/smoke.yaml", results_dir=tmp_path / "results",
                hostname="qemu01", device_type="qemu", tags=["smoke", "x86"], secrets=Masker([TOKEN]))
    args.update(kw)
    return JobResults(**args)


def lava_run(bundle: dict) -> dict:
    (run,) = [r for r in bundle["test_runs"] if r["test_id"] == "lava"]
    return run


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_lava_run_has_one_result_per_action_and_the_closing_entries(tmp_path: Path) -> None:
    res = make(tmp_path)
    res.add_action("deploy_linaro_image", "pass", duration=12.25, metadata={"rootfs.type": "ubuntu"})
    res.add_action("boot_image", "pass")
    res.add_action("boot_linaro_image", "pass", duration=40.0)
    res.add_action("lava_test_run (stream)", "fail", "Lava failed on test: stream")
    log = tmp_path / "console.log"
    log.write_bytes(b"U-Boot 2023.01\nlogin: root\n")
    res.set_serial_log(log)
    res.set_attribute("target.device_version", "qemu 7.2")
    bundle = read(res.finish(job_complete=True))

    assert B.validate_bundle(bundle, "1.3") == []
    run = lava_run(bundle)
    ids = [r["test_case_id"] for r in run["test_results"]]
    assert ids == ["deploy_linaro_image", "boot_image", "boot_linaro_image", "lava_test_run (stream)",
                   "gather_results", "job_complete"]
    results = {r["test_case_id"]: r for r in run["test_results"]}
    assert results["deploy_linaro_image"]["duration"] == "0d 12s 250000us"
    assert results["lava_test_run (stream)"]["result"] == "fail"
    assert results["lava_test_run (stream)"]["message"] == "Lava failed on test: stream"
    assert results["job_complete"]["result"] == "pass"
    assert run["tags"] == ["smoke", "x86"]
    assert run["attributes"] == {"target.hostname": "qemu01", "target.device_type": "qemu",
                                 "rootfs.type": "ubuntu", "target.device_version": "qemu 7.2"}
    (att,) = run["attachments"]
    assert att["pathname"] == "serial.log" and att["mime_type"] == "text/plain"
    assert base64.b64decode(att["content"]) == b"U-Boot 2023.01\nlogin: root\n"
    assert (res.results_dir / "serial.log").read_bytes() == b"U-Boot 2023.01\nlogin: root\n"


def test_lava_run_is_emitted_when_the_job_aborted_early(tmp_path: Path) -> None:
    res = make(tmp_path, device_type=None)
    res.add_action("deploy_linaro_image", "fail", "Deployment failed")
    bundle = read(res.finish(job_complete=False, message="aborted at deploy_linaro_image"))
    run = lava_run(bundle)
    assert [(r["test_case_id"], r["result"]) for r in run["test_results"]] == [
        ("deploy_linaro_image", "fail"), ("gather_results", "pass"), ("job_complete", "fail")]
    assert run["test_results"][-1]["message"] == "aborted at deploy_linaro_image"
    assert "target.device_type" not in run["attributes"]
    summary = (res.results_dir / "summary.txt").read_text()
    assert "FAIL deploy_linaro_image: Deployment failed" in summary


def test_metadata_goes_into_every_run_and_test_runs_are_kept(tmp_path: Path) -> None:
    res = make(tmp_path)
    started = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    res.add_test_run(TestRun("stream", [
        CaseResult("copy", "pass", measurement=1234.5, units="MB/s", duration=0.5, timestamp=started,
                   log_excerpt="Copy: 1234.5 MB/s\n", attributes={"iteration": "1"}),
        CaseResult("scale", "FAILED", message="too slow"),
        CaseResult("odd", "weird"),
    ], {"test.attr": "v"}, started, [Attachment("stdout.log", b"out\n")], testdef_metadata={"version": "2"}))
    res.add_action("lava_test_run (stream)", "pass", metadata={"rootfs.build": 61})
    bundle = read(res.finish(job_complete=True))
    assert B.validate_bundle(bundle, "1.3") == []
    (stream,) = [r for r in bundle["test_runs"] if r["test_id"] == "stream"]
    assert stream["analyzer_assigned_date"] == "2024-05-01T12:00:00Z"
    assert stream["attributes"]["rootfs.build"] == "61"
    assert stream["attributes"]["target.hostname"] == "qemu01"
    assert stream["attributes"]["testdef_metadata.version"] == "2"
    copy, scale, odd = stream["test_results"]
    assert copy["measurement"] == 1234.5 and copy["units"] == "MB/s"
    assert copy["log_filename"] == "logs/copy.log"
    assert copy["attributes"] == {"iteration": "1"}
    assert scale["result"] == "fail"
    assert odd["result"] == "unknown" and odd["attributes"]["original_result"] == "weird"
    names = [a["pathname"] for a in stream["attachments"]]
    assert names == ["stdout.log", "logs/copy.log"]
    uuids = [r["analyzer_assigned_uuid"] for r in bundle["test_runs"]]
    assert len(set(uuids)) == len(uuids)


def test_device_bundles_of_any_format_are_merged_into_1_3(tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parents[3] / "shared/reference/bundle-format/test_documents"
    if not docs.is_dir():
        pytest.skip("bundle samples not available")
    res = make(tmp_path)
    for name in ("everything_in_one_bundle_1.0.json", "everything_in_one_bundle_1.2.json",
                 "everything_in_one_bundle_1.7.1.json"):
        res.add_device_bundle(json.loads((docs / name).read_text()), f"/lava/results/{name}")
        assert (res.results_dir / "device-bundles").is_dir()
    bundle = read(res.finish(job_complete=True))
    assert bundle["format"] == "Dashboard Bundle Format 1.3"
    assert B.validate_bundle(bundle, "1.3") == []
    assert [r["test_id"] for r in bundle["test_runs"]] == ["example test id"] * 3 + ["lava"]
    assert len(list((res.results_dir / "device-bundles").iterdir())) == 3
    assert {r["result"] for r in lava_run(bundle)["test_results"]} == {"pass"}


def test_a_broken_device_bundle_fails_gather_results_but_is_kept(tmp_path: Path) -> None:
    res = make(tmp_path)
    res.add_device_bundle({"format": "Dashboard Bundle Format 1.3", "test_runs": [{"test_id": "x"}]},
                          "/lava/results/bad.bundle")
    res.gather_failed("could not reach the master image")
    bundle = read(res.finish(job_complete=True))
    gather = {r["test_case_id"]: r for r in lava_run(bundle)["test_results"]}["gather_results"]
    assert gather["result"] == "fail"
    assert "bad.bundle" in gather["message"] and "could not reach" in gather["message"]
    (kept,) = (res.results_dir / "device-bundles").iterdir()
    assert json.loads(kept.read_text())["test_runs"][0]["test_id"] == "x"


def test_finish_is_idempotent_first_call_wins(tmp_path: Path) -> None:
    res = make(tmp_path)
    res.add_action("boot_image", "pass")
    path = res.finish(job_complete=False, message="interrupted by SIGTERM")
    first = path.read_bytes()
    res.add_action("late", "pass")
    assert res.finish(job_complete=True) == path
    assert path.read_bytes() == first
    assert not list(res.results_dir.glob(".*.tmp"))


def test_finish_can_be_reentered_from_a_signal_path(tmp_path: Path) -> None:
    """A signal handler calling finish() while finish() runs must still leave a valid bundle."""
    res = make(tmp_path)
    res.add_action("boot_image", "pass")
    log = tmp_path / "console.log"
    log.write_text("x")
    res.set_serial_log(log)
    original = res._serial_attachment
    inner: list[Path] = []
    entered: list[bool] = []

    def interrupting():
        if not entered:
            entered.append(True)
            inner.append(res.finish(job_complete=False, message="SIGINT"))
        return original()

    res._serial_attachment = interrupting  # type: ignore[method-assign]
    outer = res.finish(job_complete=True)
    assert inner == [outer]
    assert B.validate_bundle(read(outer)) == []


def test_token_is_masked_everywhere_in_the_results_dir(tmp_path: Path) -> None:
    res = make(tmp_path)
    res.add_action("submit_results", "fail", f"server said: bad token {TOKEN}",
                   metadata={"note": f"token={TOKEN}"})
    res.add_test_run(TestRun("t", [CaseResult("c", "pass", log_excerpt=f"echo {TOKEN}")], {}))
    log = res.results_dir / "console.log"  # a console log written there by another module
    log.write_text(f"export LAVA_TOKEN={TOKEN}\n")
    res.set_serial_log(log)
    res.add_device_bundle({"format": "Dashboard Bundle Format 1.3", "test_runs": [{
        "test_id": "dev", "analyzer_assigned_uuid": "u1", "analyzer_assigned_date": "2024-01-01T00:00:00Z",
        "time_check_performed": False, "test_results": [],
        "attachments": [{"pathname": "env", "mime_type": "text/plain",
                         "content": base64.b64encode(TOKEN.encode()).decode()}]}]}, "dev.bundle")
    res.finish(job_complete=True)
    res.note(f"submit failed with {TOKEN}")
    for path in res.results_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert TOKEN.encode() not in data, path
            assert TOKEN.encode() not in base64.b64decode(base64.b64encode(data)), path
    bundle = read(res.bundle_path)
    dev = [r for r in bundle["test_runs"] if r["test_id"] == "dev"][0]
    assert base64.b64decode(dev["attachments"][0]["content"]).decode() == HIDDEN
    assert HIDDEN in (res.results_dir / "summary.txt").read_text()


def test_masker_and_logging_filter(caplog: pytest.LogCaptureFixture) -> None:
    masker = Masker([TOKEN, None, "", "ab"])
    assert masker.mask(f"a {TOKEN} b {TOKEN}") == f"a {HIDDEN} b {HIDDEN}"
    assert masker.mask("ab stays") == "ab stays"  # too short to be a secret
    assert masker.mask_obj({TOKEN: [TOKEN, 1]}) == {HIDDEN: [HIDDEN, 1]}
    logger = logging.getLogger("test.masking")
    handler = caplog.handler
    handler.addFilter(masker.filter())
    try:
        logger.warning("token is %s", TOKEN)
        try:
            raise RuntimeError(TOKEN)
        except RuntimeError:
            logger.exception("failed")
    finally:
        handler.removeFilter(handler.filters[-1])
    assert TOKEN not in caplog.text
    assert f"token is {HIDDEN}" in caplog.text


def test_scrub_dir_rewrites_only_files_with_secrets(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(f"x {TOKEN} y")
    (tmp_path / "b.txt").write_text("clean")
    changed = scrub_dir(tmp_path, Masker([TOKEN]))
    assert changed == [tmp_path / "a.txt"]
    assert (tmp_path / "a.txt").read_text() == f"x {HIDDEN} y"
