"""The bundle validator (old draft-03 semantics) against the shipped samples, and evolution to 1.3."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from pytest_lava.results import bundle as B

DOCS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "bundle-format" / "test_documents"
if not DOCS.is_dir():  # CI clones main with shared/ beside it; a developer's tree too
    DOCS = Path("/work/shared/reference/bundle-format/test_documents")
pytestmark = pytest.mark.skipif(not DOCS.is_dir(), reason=f"bundle samples not found at {DOCS}")


def load(name: str) -> dict:
    return json.loads((DOCS / name).read_text())


WHOLE = sorted(
    p.name for p in DOCS.glob("*.json") if p.name.startswith(("everything", "evolution", "smallest", "dummy"))
) if DOCS.is_dir() else []


@pytest.mark.parametrize("name", WHOLE)
def test_every_sample_is_valid_under_its_own_schema(name: str) -> None:
    assert B.validate_bundle(load(name)) == []


def test_samples_cover_every_version() -> None:
    assert {B.version_of(load(n)) for n in WHOLE} == set(B.VERSIONS)


def test_smallest_bundle_is_just_a_format() -> None:
    assert B.validate_bundle({"format": B.FORMAT}) == []


def run13() -> dict:
    return load("everything_in_one_bundle_1.3.json")


def result13(doc: dict) -> dict:
    return doc["test_runs"][0]["test_results"][0]


MUTATIONS = {
    "missing test_id": (lambda d: d["test_runs"][0].pop("test_id"), "missing required property 'test_id'"),
    "missing uuid": (lambda d: d["test_runs"][0].pop("analyzer_assigned_uuid"), "analyzer_assigned_uuid"),
    "missing result": (lambda d: result13(d).pop("result"), "missing required property 'result'"),
    "units without measurement": (lambda d: result13(d).pop("measurement"), "requires"),
    "lineno without filename": (lambda d: result13(d).pop("log_filename"), "requires"),
    "measurement without case id": (lambda d: result13(d).pop("test_case_id"), "requires"),
    "extra key in run": (lambda d: d["test_runs"][0].update(test_duration="0d 1s 0us"), "unknown property"),
    "extra key at top": (lambda d: d.update(extra=1), "unknown property 'extra'"),
    "extra key in result": (lambda d: result13(d).update(attachments=[]), "unknown property"),
    "bad date": (lambda d: d["test_runs"][0].update(analyzer_assigned_date="2010-11-14 13:42:31"), "date-time"),
    "date with offset": (lambda d: d["test_runs"][0].update(analyzer_assigned_date="2010-11-14T13:42:31+01:00"),
                         "date-time"),
    "bad result enum": (lambda d: result13(d).update(result="PASS"), "is not one of"),
    "bad vcs enum": (lambda d: d["test_runs"][0]["software_context"]["sources"][0].update(branch_vcs="tar"),
                     "is not one of"),
    "bad format": (lambda d: d.update(format="Dashboard Bundle Format 1.3 "), "unknown bundle format"),
    "string measurement": (lambda d: result13(d).update(measurement="3.5"), "expected number"),
    "bool measurement": (lambda d: result13(d).update(measurement=True), "expected number"),
    "non-string attribute": (lambda d: d["test_runs"][0]["attributes"].update(n=1), "expected string"),
    "time check not bool": (lambda d: d["test_runs"][0].update(time_check_performed="false"), "boolean"),
    "duplicate uuid": (lambda d: d["test_runs"].append(copy.deepcopy(d["test_runs"][0])), "not unique"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_mutated_bundle_is_rejected(name: str) -> None:
    doc = run13()
    mutate, expected = MUTATIONS[name]
    mutate(doc)
    errors = B.validate_bundle(doc)
    assert errors, name
    assert any(expected in e for e in errors), errors


def test_all_errors_are_reported_with_paths() -> None:
    doc = run13()
    doc["test_runs"][0].pop("test_id")
    result13(doc)["result"] = "bogus"
    errors = B.validate_bundle(doc)
    assert len(errors) == 2
    assert any(e.startswith("$.test_runs[0].test_results[0].result:") for e in errors)


@pytest.mark.parametrize("version", [v for v in B.VERSIONS])
def test_evolution_sample_converts_to_the_1_3_sample(version: str) -> None:
    converted = B.to_current(load(f"evolution_{version}.json"))
    assert converted == load("evolution_1.3.json")


@pytest.mark.parametrize("version", [v for v in B.VERSIONS])
def test_everything_sample_converts_to_valid_1_3(version: str) -> None:
    converted = B.to_current(load(f"everything_in_one_bundle_{version}.json"))
    assert converted["format"] == B.FORMAT
    assert B.validate_bundle(converted, "1.3") == []


def test_up_to_1_3_the_everything_samples_agree_once_converted() -> None:
    reference = load("everything_in_one_bundle_1.3.json")
    for version in ("1.1", "1.2"):
        converted = B.to_current(load(f"everything_in_one_bundle_{version}.json"))
        run = converted["test_runs"][0]
        assert run["test_results"] == reference["test_runs"][0]["test_results"]
        assert run["software_context"]["image"] == {"name": "example os image"}


def test_downgrade_keeps_newer_fields_as_attributes() -> None:
    run = B.to_current(load("everything_in_one_bundle_1.7.1.json"))["test_runs"][0]
    assert run["attributes"]["test_duration"] == "0d 1s 134us"
    assert run["attributes"]["testdef_metadata.version"] == "5"
    result = run["test_results"][0]
    assert result["measurement"] == 3.5  # 1.7.1 string -> number
    assert "example test case id/attachment1.txt" in [a["pathname"] for a in run["attachments"]]
    assert result["attributes"]["attachments"] == "example test case id/attachment1.txt"


def test_1_0_attachments_become_base64_array() -> None:
    run = B.to_current(load("everything_in_one_bundle_1.0.json"))["test_runs"][0]
    assert run["attachments"][0] == {"pathname": "attachment1.txt", "mime_type": "text/plain",
                                     "content": "bGluZTEKbGluZTIKbGluZTMK"}


def test_unparseable_string_measurement_moves_to_attributes() -> None:
    doc = load("everything_in_one_bundle_1.7.1.json")
    result = doc["test_runs"][0]["test_results"][0]
    result["measurement"] = "fast"
    converted = B.to_current(doc)["test_runs"][0]["test_results"][0]
    assert "measurement" not in converted and "units" not in converted
    assert converted["attributes"]["measurement"] == "fast"
    assert converted["attributes"]["units"] == "s"


def test_repairs_iso_dates_and_non_string_attributes() -> None:
    doc = load("everything_in_one_bundle_1.3.json")
    doc["test_runs"][0]["analyzer_assigned_date"] = "2010-11-14T14:42:31.5+01:00"
    doc["test_runs"][0]["attributes"]["build"] = 61
    run = B.to_current(doc)["test_runs"][0]
    assert run["analyzer_assigned_date"] == "2010-11-14T13:42:31Z"
    assert run["attributes"]["build"] == "61"


def test_invalid_device_bundle_is_refused_with_reasons() -> None:
    doc = load("everything_in_one_bundle_1.2.json")
    del doc["test_runs"][0]["test_results"][0]["result"]
    with pytest.raises(B.BundleError) as info:
        B.to_current(doc, "dev.bundle")
    assert "dev.bundle" in str(info.value) and "result" in str(info.value)


def test_merge_uses_one_format_and_fresh_uuids_for_collisions() -> None:
    a = B.to_current(load("evolution_1.0.json"))
    b = B.to_current(load("evolution_1.7.json"))  # same UUID as a's run
    merged = B.merge([a, b], [], {"target.hostname": "qemu01"})
    assert merged["format"] == B.FORMAT
    uuids = [r["analyzer_assigned_uuid"] for r in merged["test_runs"]]
    assert len(set(uuids)) == 2
    assert merged["test_runs"][1]["attributes"]["original_analyzer_assigned_uuid"] == uuids[0]
    assert all(r["attributes"]["target.hostname"] == "qemu01" for r in merged["test_runs"])
    assert B.validate_bundle(merged) == []


def test_merge_refuses_unconverted_bundles() -> None:
    with pytest.raises(B.BundleError):
        B.merge([load("evolution_1.2.json")])


def test_date_and_duration_formats() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    moment = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert B.format_date(moment) == "2024-01-02T01:04:05Z"
    assert B.format_date(datetime(2024, 1, 2, tzinfo=UTC)) == "2024-01-02T00:00:00Z"
    assert B.format_duration(90061.5) == "1d 3661s 500000us"
    assert B.format_duration(0) == "0d 0s 0us"
