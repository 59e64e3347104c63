"""The job model: the old dispatcher's job files (JSON, unchanged) and the same model in YAML.

``load_job(path)`` returns a validated :class:`Job` or raises :class:`JobError` carrying *every*
problem found, each with the file, the line (where the format gives one), the field path and the
reason.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..actions import registry, suggest
from ..actions.spec import SUBMIT, TEST, ActionSpec
from ..core.errors import JobError, Problem, ProblemList, describe_value
from .loader import Document, read_document

LOGGING_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
PRIORITIES = ("low", "medium", "high")
ACTION_KEYS = ("command", "parameters", "metadata")
HIDDEN = "<HIDDEN>"


@dataclass
class ActionDef:
    """One entry of a job's ``actions`` list."""

    index: int
    command: str
    parameters: dict[str, Any]
    metadata: dict[str, str]
    spec: ActionSpec

    @property
    def path(self) -> str:
        return f"actions[{self.index}]"

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def test_case_id(self) -> str:
        return self.spec.test_case_id(self.parameters)

    @property
    def label(self) -> str:
        return self.spec.label(self.parameters)

    def masked_parameters(self) -> dict[str, Any]:
        return {k: (HIDDEN if self.spec.params.get(k) and self.spec.params[k].secret else v)
                for k, v in self.parameters.items()}


@dataclass
class Job:
    file: Path
    timeout: float
    actions: list[ActionDef]
    job_name: str = ""
    target: str | None = None
    device_type: str | None = None
    health_check: bool = False
    logging_level: str = "INFO"
    tags: list[str] = field(default_factory=list)
    priority: str | None = None
    variant: str = ""  # kernel_matrix variant id ("" when the job has one kernel)
    data: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.job_name or self.file.stem

    @property
    def id(self) -> str:
        """Unique per job file and variant; used for xdist groups and result directories, so
        always one safe path component (:func:`safe_component`): a job named ``...json`` must not
        write beside the results directory."""
        return safe_component(f"{self.file.stem}-{self.variant}" if self.variant else self.file.stem)

    def test_actions(self) -> list[ActionDef]:
        return [a for a in self.actions if a.kind == TEST]

    def submit_actions(self) -> list[ActionDef]:
        return [a for a in self.actions if a.kind == SUBMIT]

    def action_timeout(self, action: ActionDef) -> float:
        return min(action.spec.timeout(action.parameters), self.timeout)

    def variants(self) -> list[Job]:
        """One job per kernel of a multi-kernel ``kernel_matrix`` (the form that never worked in
        the old dispatcher), else ``[self]``."""
        for action in self.actions:
            km = action.parameters.get("kernel_matrix")
            if action.command == "deploy_linaro_image" and km and all(isinstance(e, list) for e in km):
                out = []
                ids = _variant_ids([entry for entry in km])
                for vid, entry in zip(ids, km, strict=True):
                    job = copy.deepcopy(self)
                    job.variant = vid
                    job.actions[action.index].parameters["kernel_matrix"] = list(entry)
                    out.append(job)
                return out
        return [self]


RESERVED_IDS = frozenset({"spool"})  # entries of the results directory that are not jobs


def safe_component(name: str) -> str:
    """``name`` as one path component that stays inside its directory: letters, digits and
    ``._+-`` only, no leading dot (so never ``.``, ``..`` or a hidden entry such as ``.state``),
    at most 100 characters, not a reserved name. A name that had to change gets a short hash of
    the original, so two different names do not meet in one directory."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", name)[:100].lstrip(".")
    if safe != name or safe in RESERVED_IDS:
        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        safe = f"{safe or 'job'}-{digest}"
    return safe


def _variant_ids(entries: list[list[str]]) -> list[str]:
    ids = []
    for i, (url, prefix) in enumerate(entries, 1):
        base = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".deb").split("_", 1)[0]
        vid = base[len(prefix):].lstrip("-") if base.startswith(prefix) else base
        vid = re.sub(r"[^A-Za-z0-9._+-]", "-", vid) or f"kernel-{i}"
        ids.append(vid)
    if len(set(ids)) != len(ids):
        ids = [f"kernel-{i}" for i in range(1, len(entries) + 1)]
    return ids


def load_job(path: str | Path) -> Job:
    path = Path(path)
    doc = read_document(path)
    if doc.problem:
        raise JobError([doc.problem])
    return job_from_document(doc, path)


def job_from_document(doc: Document, path: Path) -> Job:
    problems = ProblemList(doc.file)
    data = doc.data
    if not isinstance(data, dict):
        problems.add("", f"a job must be a mapping with 'timeout' and 'actions', not {describe_value(data)}", 1)
        raise JobError(problems.problems)

    timeout = data.get("timeout")
    if "timeout" not in data:
        problems.add("timeout", "is required (the job timeout in seconds)")
    elif isinstance(timeout, bool) or not isinstance(timeout, int | float):
        problems.add("timeout", f"must be a number of seconds, not {describe_value(timeout)}")
    elif not math.isfinite(timeout) or timeout <= 0:  # YAML .inf/.nan, JSON 1e400
        problems.add("timeout", f"must be a positive number of seconds, not {timeout}")

    for key in ("job_name", "target", "device_type"):
        if key in data and not isinstance(data[key], str):
            problems.add(key, f"must be a string, not {describe_value(data[key])}")
        elif key in data and not data[key].strip():
            problems.add(key, "must not be empty")
    if "logging_level" in data and data["logging_level"] not in LOGGING_LEVELS:
        problems.add("logging_level", f"must be one of {', '.join(LOGGING_LEVELS)}, not {data['logging_level']!r}")
    if "priority" in data and data["priority"] not in PRIORITIES:
        problems.add("priority", f"must be one of {', '.join(PRIORITIES)}, not {data['priority']!r}")
    if "health_check" in data and not isinstance(data["health_check"], bool):
        problems.add("health_check", f"must be true or false, not {describe_value(data['health_check'])}")
    device_tags = data.get("device_tags", [])
    if not isinstance(device_tags, list) or not all(isinstance(t, str) for t in device_tags):
        problems.add("device_tags", "must be a list of strings (tags every chosen board must carry)")
    tags = data.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems.add("tags", "must be a list of strings")
        tags = []
    elif len(set(tags)) != len(tags):
        problems.add("tags", "must not repeat a tag")

    actions = _check_actions(data, problems)
    for p in problems.problems:  # attach line numbers the format gives
        if p.line is None:
            problems.problems[problems.problems.index(p)] = Problem(p.file, p.path, p.reason, doc.line(p.path))
    if problems:
        raise JobError(problems.problems)

    job = Job(
        file=path, timeout=float(timeout), actions=actions, job_name=data.get("job_name", ""),
        target=data.get("target"), device_type=data.get("device_type"),
        health_check=bool(data.get("health_check", False)), logging_level=data.get("logging_level", "INFO"),
        tags=list(tags), priority=data.get("priority"), data=data,
    )
    for action in actions:
        own = action.spec.timeout(action.parameters)
        if own > job.timeout and "timeout" in action.parameters:
            job.warnings.append(f"{doc.file}: {action.path}.parameters.timeout ({own:g} s) exceeds the job "
                                f"timeout ({job.timeout:g} s); the job timeout wins")
    return job


def _check_actions(data: dict[str, Any], problems: ProblemList) -> list[ActionDef]:
    raw = data.get("actions")
    if "actions" not in data:
        problems.add("actions", "is required (the ordered list of steps)")
        return []
    if not isinstance(raw, list):
        problems.add("actions", f"must be a list of actions, not {describe_value(raw)}")
        return []
    if not raw:
        problems.add("actions", "must contain at least one action")
    known = registry()
    actions: list[ActionDef] = []
    for i, entry in enumerate(raw):
        path = f"actions[{i}]"
        if not isinstance(entry, dict):
            problems.add(path, f"must be a mapping with 'command', not {describe_value(entry)}")
            continue
        for key in entry:
            if key not in ACTION_KEYS:
                problems.add(f"{path}.{key}", "is not allowed in an action (only command, parameters, metadata)")
        command = entry.get("command")
        if "command" not in entry:
            problems.add(f"{path}.command", "is required")
            continue
        if not isinstance(command, str):
            problems.add(f"{path}.command", f"must be a string, not {describe_value(command)}")
            continue
        spec = known.get(command)
        if spec is None:
            problems.add(f"{path}.command", f"unknown action {command!r}{suggest(command)}")
            continue
        params = entry.get("parameters")
        spec.check(params, problems, f"{path}.parameters")
        metadata = entry.get("metadata", {})
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            problems.add(f"{path}.metadata", f"must be a mapping, not {describe_value(metadata)}")
            metadata = {}
        elif any(isinstance(v, dict | list) for v in metadata.values()):
            problems.add(f"{path}.metadata", "values must be strings or numbers (they become bundle attributes)")
        actions.append(ActionDef(i, command, dict(params or {}) if isinstance(params, dict) else {},
                                 {str(k): str(v) for k, v in metadata.items()}, spec))
    if not problems:
        whole = [(a.command, a.parameters) for a in actions]
        for a in actions:
            for job_rule in a.spec.job_rules:
                job_rule(a.parameters, problems, f"{a.path}.parameters", whole)
    return actions


