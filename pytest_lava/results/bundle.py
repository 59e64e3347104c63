"""Dashboard bundles: the schemas, a validator with their own (draft-03) rules, upgrade/downgrade of
every format 1.0 - 1.7.1 to the one format we write, and merging.

The single format of every bundle this project writes or sends is **Dashboard Bundle Format 1.3**
(`FORMAT`). Older bundles are evolved up the way the old ``evolution.py`` did; newer ones
(1.4 - 1.7.1, e.g. from lava-test-shell) are brought *down* to 1.3 so the merged bundle is valid
under one schema. Nothing is thrown away on the way down: every field 1.3 lacks is folded into
what 1.3 has (string ``attributes``, the run's ``attachments``), see `downgrade_run`.

The validator follows the semantics of PyPI ``json-schema-validator`` 2.4.1, the one LAVA used:
a property is required unless ``"optional": true``; ``"requires"`` names a sibling property that
must be present; ``additionalProperties: false`` forbids unknown keys; ``enum``; ``format:
date-time`` is exactly ``YYYY-MM-DDThh:mm:ssZ``. Unlike that validator it reports *every* error,
and a JSON boolean is not a number.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import re
import uuid
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from ..core.errors import LavaError

FORMAT_PREFIX = "Dashboard Bundle Format "
VERSION = "1.3"
FORMAT = FORMAT_PREFIX + VERSION
VERSIONS = ("1.0", "1.0.1", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7", "1.7.1")
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
RESULTS = ("pass", "fail", "skip", "unknown")

Json = Any


class BundleError(LavaError):
    """A bundle is malformed or cannot be brought to the project's format."""

    kind = "test"

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        self.errors = list(errors or [])
        details = "\n".join(f"  {e}" for e in self.errors[:20])
        if len(self.errors) > 20:
            details += f"\n  ... and {len(self.errors) - 20} more"
        super().__init__(message, details=details)


# ---------------------------------------------------------------------------------------------
# schemas and the validator


@cache
def schema(version: str = VERSION) -> dict:
    """The JSON schema of a format version, shipped as package data in ``pytest_lava/schemas``."""
    if version not in VERSIONS:
        raise BundleError(f"unknown bundle format version {version!r}")
    path = resources.files("pytest_lava") / "schemas" / f"dashboard_bundle_format_{version}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def version_of(bundle: Json) -> str:
    if not isinstance(bundle, dict) or not isinstance(bundle.get("format"), str):
        raise BundleError("not a bundle: no 'format' string at the top level")
    fmt = bundle["format"]
    version = fmt[len(FORMAT_PREFIX) :] if fmt.startswith(FORMAT_PREFIX) else ""
    if version not in VERSIONS:
        raise BundleError(f"unknown bundle format {fmt!r} (known: {', '.join(VERSIONS)})")
    return version


_JSON_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
    "any": lambda v: True,
}


def is_date_time(value: str) -> bool:
    try:
        datetime.strptime(value, DATE_FORMAT)
    except (TypeError, ValueError):
        return False
    return bool(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value))


def validate(instance: Json, schema_: dict) -> list[str]:
    """Every violation of ``schema_`` (draft-03, old-validator semantics) as ``path: reason``."""
    errors: list[str] = []
    _check(instance, schema_, "$", None, errors)
    return errors


def _type_ok(value: Json, types: Any, path: str) -> bool:
    for t in types if isinstance(types, list) else [types]:
        if isinstance(t, dict):
            if not validate(value, t):
                return True
        elif t in _JSON_TYPES:
            if _JSON_TYPES[t](value):
                return True
        else:
            raise BundleError(f"schema error at {path}: unknown type {t!r}")
    return False


def _check(value: Json, sch: dict, path: str, parent: dict | None, errors: list[str]) -> None:
    types = sch.get("type", "any")
    if not _type_ok(value, types, path):
        errors.append(f"{path}: expected {types}, got {type(value).__name__}")
        return
    requires = sch.get("requires")
    if isinstance(requires, str) and (parent is None or requires not in parent):
        errors.append(f"{path}: present without {requires!r}, which it requires")
    elif isinstance(requires, dict) and parent is not None:
        errors.extend(f"{path} (requires): {e}" for e in validate(parent, requires))
    if "enum" in sch and value not in sch["enum"]:
        errors.append(f"{path}: {value!r} is not one of {sch['enum']}")
    if isinstance(value, str):
        fmt = sch.get("format")
        if fmt == "date-time" and not is_date_time(value):
            errors.append(f"{path}: {value!r} is not a date-time YYYY-MM-DDThh:mm:ssZ")
        if "pattern" in sch and not re.match(sch["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {sch['pattern']!r}")
    if isinstance(value, dict):
        props = sch.get("properties", {})
        for name, sub in props.items():
            if name in value:
                _check(value[name], sub, f"{path}.{name}", value, errors)
            elif not sub.get("optional", False):
                errors.append(f"{path}: missing required property {name!r}")
        extra = sch.get("additionalProperties", {})
        for name in value:
            if name in props:
                continue
            if extra is False:
                errors.append(f"{path}: unknown property {name!r} (additionalProperties is false)")
            elif isinstance(extra, dict):
                _check(value[name], extra, f"{path}.{name}", value, errors)
    elif isinstance(value, list):
        items = sch.get("items", {})
        if isinstance(items, dict):
            for i, item in enumerate(value):
                _check(item, items, f"{path}[{i}]", None, errors)
        else:
            for i, (item, sub) in enumerate(zip(value, items, strict=False)):
                _check(item, sub, f"{path}[{i}]", None, errors)


def validate_bundle(bundle: Json, version: str | None = None) -> list[str]:
    """Errors of a bundle against the schema of its own format (or of ``version``)."""
    try:
        version = version or version_of(bundle)
    except BundleError as exc:
        return [exc.message]
    errors = validate(bundle, schema(version))
    seen: set[str] = set()
    for i, run in enumerate(bundle.get("test_runs") or [] if isinstance(bundle, dict) else []):
        uid = run.get("analyzer_assigned_uuid") if isinstance(run, dict) else None
        if isinstance(uid, str):
            if uid in seen:
                errors.append(f"$.test_runs[{i}].analyzer_assigned_uuid: {uid!r} is not unique")
            seen.add(uid)
    return errors


def check_bundle(bundle: Json, version: str | None = None, what: str = "bundle") -> None:
    errors = validate_bundle(bundle, version)
    if errors:
        raise BundleError(f"{what} is not a valid {FORMAT_PREFIX}{version or '?'} document", errors)


# ---------------------------------------------------------------------------------------------
# small builders


def format_date(moment: datetime) -> str:
    """UTC ``YYYY-MM-DDThh:mm:ssZ``. A naive datetime is taken as local time (Python's rule)."""
    return moment.astimezone(UTC).strftime(DATE_FORMAT)


def format_duration(seconds: float) -> str:
    """The bundle duration string ``'[DAYS]d [SECONDS]s [MICROSECONDS]us'``."""
    micro = max(0, round(seconds * 1_000_000))
    days, rest = divmod(micro, 86_400 * 1_000_000)
    secs, micro = divmod(rest, 1_000_000)
    return f"{days}d {secs}s {micro}us"


def encode(content: bytes) -> str:
    return base64.standard_b64encode(content).decode("ascii")


def normalize_date(value: Any) -> str | None:
    """A date string in the bundle form, repairing ISO 8601 variants; None if hopeless."""
    if isinstance(value, str):
        if is_date_time(value):
            return value
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return format_date(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    return None


def new_uuid() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------------------------------------
# evolution to 1.3


def _upgrade_to_1_0_1(run: dict) -> None:
    for old, new in (("hw_context", "hardware_context"), ("sw_context", "software_context")):
        if old in run:
            run[new] = run.pop(old)


def _upgrade_to_1_1(run: dict) -> None:
    attachments = run.get("attachments")
    if isinstance(attachments, dict):
        run["attachments"] = [
            {"pathname": name, "mime_type": "text/plain", "content": encode("".join(lines).encode())}
            for name, lines in sorted(attachments.items())
        ]
    software = run.get("software_context")
    if isinstance(software, dict) and "sw_image" in software:
        image = software.pop("sw_image")
        software["image"] = {"name": image.get("desc", "")} if isinstance(image, dict) else image


def _fold_attributes(run: dict, prefix: str, values: dict) -> None:
    attrs = run.setdefault("attributes", {})
    for key, value in values.items():
        if value is not None:
            attrs.setdefault(f"{prefix}{key}", value if isinstance(value, str) else json.dumps(value))


def downgrade_run(run: dict) -> None:
    """Fold the 1.4 - 1.7.1 fields of a test run into what 1.3 has, in place:

    * ``test_duration`` -> attribute ``test_duration``;
    * ``testdef_metadata`` -> attributes ``testdef_metadata.<key>``;
    * per-result ``attachments`` -> run attachments ``<test_case_id>/<pathname>``, named in the
      result's attribute ``attachments``;
    * a string ``measurement`` (1.7.1) -> a number; if it is not one, attribute ``measurement``
      (and ``units``);
    * a source's ``default_params``/``test_params`` -> attributes ``source.<project>.<key>``;
      a source whose VCS 1.3 does not know (``tar``, ``url``) -> attribute ``source.<project>``.
    """
    if "test_duration" in run:
        _fold_attributes(run, "", {"test_duration": run.pop("test_duration")})
    if "testdef_metadata" in run:
        meta = run.pop("testdef_metadata")
        if isinstance(meta, dict):
            _fold_attributes(run, "testdef_metadata.", meta)
    for i, result in enumerate(run.get("test_results") or []):
        if not isinstance(result, dict):
            continue
        case = result.get("test_case_id") or f"result-{i}"
        moved = result.pop("attachments", None) or []
        names = []
        for att in moved:
            if isinstance(att, dict) and "pathname" in att:
                att = dict(att, pathname=f"{case}/{att['pathname']}")
                run.setdefault("attachments", []).append(att)
                names.append(att["pathname"])
        if names:
            result.setdefault("attributes", {})["attachments"] = ", ".join(names)
        measurement = result.get("measurement")
        if isinstance(measurement, str):
            try:
                number = float(measurement)
                if not math.isfinite(number):
                    raise ValueError
                result["measurement"] = int(number) if number.is_integer() and "." not in measurement \
                    else number
            except ValueError:
                extra = {"measurement": result.pop("measurement")}
                if "units" in result:
                    extra["units"] = result.pop("units")
                result.setdefault("attributes", {}).update(extra)
    software = run.get("software_context")
    if isinstance(software, dict) and isinstance(software.get("sources"), list):
        kept = []
        for source in software["sources"]:
            if not isinstance(source, dict):
                continue
            project = source.get("project_name", "?")
            for key in ("default_params", "test_params"):
                if key in source:
                    _fold_attributes(run, f"source.{project}.", {key: source.pop(key)})
            if source.get("branch_vcs") in ("bzr", "git", "svn"):
                kept.append(source)
            else:
                keys = ("branch_vcs", "branch_url", "branch_revision")
                desc = " ".join(str(source.get(k, "")) for k in keys)
                _fold_attributes(run, "source.", {project: desc})
        software["sources"] = kept


def _stringify_attributes(run: dict) -> None:
    for holder in [run, *[r for r in run.get("test_results") or [] if isinstance(r, dict)]]:
        attrs = holder.get("attributes")
        if isinstance(attrs, dict):
            holder["attributes"] = {
                str(k): v if isinstance(v, str) else json.dumps(v) for k, v in attrs.items()
            }


def to_current(bundle: Json, source: str = "bundle") -> dict:
    """A deep copy of any 1.0 - 1.7.1 bundle converted to `FORMAT`, repaired where that is safe
    (ISO dates -> ``Z`` form, non-string attribute values -> strings). Raises `BundleError` if
    the input is not valid under its own schema *after* those repairs, or the result is not
    valid 1.3."""
    version = version_of(bundle)
    out = copy.deepcopy(bundle)
    for run in out.get("test_runs") or []:
        if not isinstance(run, dict):
            continue
        if "analyzer_assigned_date" in run:
            run["analyzer_assigned_date"] = normalize_date(run["analyzer_assigned_date"]) or \
                run["analyzer_assigned_date"]
        _stringify_attributes(run)
    errors = validate_bundle(out, version)
    if errors:
        raise BundleError(f"{source}: invalid {FORMAT_PREFIX}{version} bundle", errors)
    index = VERSIONS.index(version)
    for run in out.get("test_runs") or []:
        if index < VERSIONS.index("1.0.1"):
            _upgrade_to_1_0_1(run)
        if index < VERSIONS.index("1.1"):
            _upgrade_to_1_1(run)
        if index > VERSIONS.index(VERSION):
            downgrade_run(run)
    out["format"] = FORMAT
    check_bundle(out, VERSION, f"{source} (converted from {version})")
    return out


def merge(bundles: list[dict], runs: list[dict] = (), attributes: dict[str, str] | None = None) -> dict:
    """One `FORMAT` bundle with the runs of ``bundles`` (each already converted with `to_current`),
    then ``runs``; ``attributes`` overwrite the attributes of every run (the old dispatcher's
    metadata merge). Duplicate UUIDs are replaced (the original is kept as an attribute)."""
    merged_runs: list[dict] = []
    for bundle in bundles:
        if bundle.get("format") != FORMAT:
            raise BundleError(f"cannot merge a {bundle.get('format')!r} bundle; convert it first")
        merged_runs.extend(copy.deepcopy(bundle.get("test_runs") or []))
    merged_runs.extend(copy.deepcopy(list(runs)))
    seen: set[str] = set()
    for run in merged_runs:
        if attributes:
            run.setdefault("attributes", {}).update(attributes)
        uid = run.get("analyzer_assigned_uuid")
        if uid in seen:
            run.setdefault("attributes", {})["original_analyzer_assigned_uuid"] = uid
            run["analyzer_assigned_uuid"] = uid = new_uuid()
        seen.add(uid)
    return {"format": FORMAT, "test_runs": merged_runs}
