"""The SQUAD sink: ``POST /api/submit/<group>/<project>/<build>/<environment>`` with ``Auth-Token``.

URL form (the ``server`` of a submit action or of ``--lava-submit``)::

    squad+http://host[:port]/<group>/<project>[/<build>[/<environment>]]

* ``build`` — from the URL, else `SubmitTarget.build`, else the job name; made a SQUAD slug
  (``[A-Za-z0-9][A-Za-z0-9_.-]*``: other characters become ``-``);
* ``environment`` — from the URL, else `SubmitTarget.environment`, else the device type recorded in
  the ``lava`` run (``target.device_type``, then ``target.hostname``).

The 1.3 bundle becomes: ``tests`` ``{"<test_id>/<test_case_id>": {"result", "log"}}`` for every
result of every run (``unknown`` is sent as ``skip``); ``metrics`` ``{"<test_id>/<case>":
{"value", "unit"}}`` for every result with a measurement; ``metadata`` = the ``lava`` run's
attributes + ``job_name``, ``job_id`` (the ``lava`` run's UUID, so a resubmission is recognised
as a duplicate), ``job_status``; ``log`` = ``serial.log``; ``attachment`` files = every other
attachment and the whole ``bundle.json``.

A redirect is never followed (`http_post`): ``requests`` would keep the ``Auth-Token`` header on
the way to another host, and a 302 answered by a GET elsewhere looked like a stored result.
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import unquote, urlsplit

from . import SubmitError, SubmitTarget, http_post, server_text

SLUG_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def slug(text: str, default: str = "unknown") -> str:
    out = SLUG_BAD.sub("-", text).strip("-_.")
    return out or default


def parse_url(target: SubmitTarget) -> tuple[str, str, str, str | None, str | None]:
    """``(base URL, group, project, build | None, environment | None)``."""
    parts = urlsplit(target.server)
    scheme = parts.scheme.removeprefix("squad+")
    if scheme not in ("http", "https"):
        raise SubmitError(f"SQUAD server {target.server!r} must be squad+http(s)://host/group/project",
                          status="rejected")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if not 2 <= len(segments) <= 4:
        raise SubmitError(
            f"SQUAD server {target.server!r}: the path must be /<group>/<project>[/<build>[/<environment>]]",
            status="rejected")
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    segments += [None] * (4 - len(segments))
    return f"{scheme}://{netloc}", segments[0], segments[1], segments[2], segments[3]


def _decode(attachment: dict) -> bytes:
    try:
        return base64.standard_b64decode(attachment.get("content", ""))
    except ValueError:
        return b""


def payload(bundle: dict, job_name: str) -> tuple[dict, list, dict]:
    """``(form fields, attachment files, lava run attributes)`` for a 1.3 bundle."""
    tests: dict = {}
    metrics: dict = {}
    files: list = []
    log = ""
    lava: dict = {}
    for run in bundle.get("test_runs", []):
        suite = run["test_id"]
        if suite == "lava":
            lava = run
        for i, res in enumerate(run.get("test_results", [])):
            name = f"{suite}/{res.get('test_case_id') or f'result-{i}'}"
            result = res["result"] if res["result"] in ("pass", "fail", "skip") else "skip"
            tests[name] = {"result": result, "log": res.get("message", "")}
            if "measurement" in res:
                metrics[name] = {"value": res["measurement"], "unit": res.get("units", "")}
        for att in run.get("attachments", []):
            if suite == "lava" and att["pathname"] == "serial.log":
                log = _decode(att).decode("utf-8", "replace")
            else:
                files.append(("attachment", (slug(f"{suite}-{att['pathname']}"), _decode(att),
                                             att.get("mime_type", "application/octet-stream"))))
    attributes = dict(lava.get("attributes", {}))
    complete = any(r.get("test_case_id") == "job_complete" and r["result"] == "pass"
                   for r in lava.get("test_results", []))
    metadata = dict(attributes, job_name=job_name, job_status="Complete" if complete else "Incomplete")
    if lava.get("analyzer_assigned_uuid"):
        metadata["job_id"] = lava["analyzer_assigned_uuid"].replace("/", "-")
    files.append(("attachment", ("bundle.json", json.dumps(bundle).encode(), "application/json")))
    fields = {"tests": json.dumps(tests), "metrics": json.dumps(metrics), "metadata": json.dumps(metadata),
              "log": log}
    return fields, files, attributes


def send(content: bytes, target: SubmitTarget, job_name: str, timeout: float) -> str:
    base, group, project, build, environment = parse_url(target)
    bundle = json.loads(content)
    fields, files, attributes = payload(bundle, job_name)
    build = slug(target.build or build or job_name or "build")
    environment = slug(target.environment or environment or attributes.get("target.device_type")
                       or attributes.get("target.hostname") or "unknown")
    url = f"{base}/api/submit/{group}/{project}/{build}/{environment}"
    headers = {"Auth-Token": target.token} if target.token else {}
    code, body = http_post(url, data=fields, files=files, headers=headers, timeout=timeout, where=base)
    text = server_text(body)
    if code in (200, 201):
        return f"{base}/{group}/{project}/build/{build}/ (test run {text})"
    if code in (401, 403):
        raise SubmitError(f"HTTP {code}: the token was rejected or may not submit to {group}/{project}"
                          + (" (no token given)" if not target.token else ""), status="forbidden")
    if code == 404:
        raise SubmitError(f"HTTP 404: SQUAD has no group/project {group}/{project}", status="not-found")
    if code == 400 and "already a test run with job_id" in text:
        raise SubmitError(f"HTTP 400: duplicate ({text})", status="duplicate")
    if code >= 500:
        raise SubmitError(f"HTTP {code} from SQUAD", status="server-error", retryable=True, maybe_stored=True)
    raise SubmitError(f"HTTP {code}: {text}", status="rejected")
