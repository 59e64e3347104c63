"""The test definition model, in its two dialects, with validation that names file, field and reason.

* **lava-test** (the old on-board ``lava-test`` tool's declarative tests, §13.1)::

      test_id: stream
      install: {deps: [gcc], steps: ["cc stream.c -o stream"]}
      run: {steps: ["./stream $(OPTIONS)"], default_options: "-n 3"}
      parse: {pattern: '^(?P<test_case_id>\\w+):\\W+(?P<measurement>\\d+\\.\\d+)',
              appendall: {units: MB/s, result: pass}}

* **Lava-Test Test Definition 1.0** (``lava_test_shell``)::

      metadata: {format: "Lava-Test Test Definition 1.0", name: smoke, description: ...}
      install: {deps: [...], steps: [...], git-repos: [...]}
      params: {COUNT: "3"}                    # exported as environment variables
      run: {steps: ["lava-test-case uname --shell uname -a"]}
      parse: {pattern: ..., fixupdict: {...}}  # optional
      expected: [uname]                        # a missing expected case is a failure

Without ``parse`` the default pattern/fixupdict of the old ``lava_test_shell`` apply
(``<id> : PASS|FAIL|SKIP|UNKNOWN`` lines become test cases).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import JobError, ProblemList, describe_value
from ..jobs.loader import Document

FORMAT_1_0 = "Lava-Test Test Definition 1.0"
LAVA_TEST, TESTDEF_1_0 = "lava-test", "testdef-1.0"
RESULTS = ("pass", "fail", "skip", "unknown")
GROUPS = ("test_case_id", "result", "measurement", "units", "message")
DEFAULT_PATTERN = r"(?P<test_case_id>.*-*)\s+:\s+(?P<result>(PASS|pass|FAIL|fail|SKIP|skip|UNKNOWN|unknown))"
DEFAULT_FIXUPDICT = {"PASS": "pass", "FAIL": "fail", "SKIP": "skip", "UNKNOWN": "unknown"}
OPTIONS_TOKEN = "$(OPTIONS)"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ParseSpec:
    """How output lines become test cases: a regex with named groups, result mapping, extras."""

    pattern: re.Pattern[str]
    fixupdict: dict[str, str] = field(default_factory=dict)
    appendall: dict[str, str] = field(default_factory=dict)
    # (old, new) replacements of a matched test_case_id before lava-test's character rule (set by
    # a library whose lava-test parser rewrote ids, e.g. posixtestsuite's "/" -> ".")
    id_replace: tuple[tuple[str, str], ...] = ()


DEFAULT_PARSE = ParseSpec(re.compile(DEFAULT_PATTERN), dict(DEFAULT_FIXUPDICT))


@dataclass
class TestDefinition:
    """One validated test definition, whatever its dialect."""

    __test__ = False  # not a pytest test class

    name: str
    dialect: str  # LAVA_TEST or TESTDEF_1_0
    source: str  # file, URL or "library:<name>", for messages
    run_steps: list[str]
    install_steps: list[str] = field(default_factory=list)
    deps: list[str] = field(default_factory=list)
    git_repos: list[str] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    parse: ParseSpec | None = None
    expected: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    default_options: str | None = None
    text: str = ""  # the definition as loaded (kept as an attachment of its test run)

    @property
    def parser(self) -> ParseSpec:
        return self.parse or DEFAULT_PARSE

    def steps_for(self, options: str | None) -> list[str]:
        """Run steps with ``$(OPTIONS)`` replaced by ``options`` (else ``run.default_options``)."""
        chosen = options if options is not None else self.default_options
        out = []
        for i, step in enumerate(self.run_steps):
            if OPTIONS_TOKEN in step:
                if chosen is None:
                    raise JobError.single(self.source, f"run.steps[{i}]",
                                          f"uses {OPTIONS_TOKEN} but the job gives no test_options and the "
                                          "definition no run.default_options")
                step = step.replace(OPTIONS_TOKEN, chosen)
            out.append(step)
        return out

    def attributes(self) -> dict[str, str]:
        """What goes into the bundle test run's attributes / testdef metadata."""
        out = {f"testdef.{k}": v for k, v in self.metadata.items()}
        out["testdef.source"] = self.source
        out["testdef.dialect"] = self.dialect
        return out


def definition_from_document(doc: Document, *, name_hint: str = "") -> TestDefinition:
    """Validate a parsed YAML/JSON document; raises :class:`JobError` with every problem."""
    if doc.problem:
        raise JobError([doc.problem])
    problems = ProblemList(doc.file)
    definition = _build(doc.data, problems, doc.file, name_hint)
    if problems or definition is None:
        raise JobError([p if p.line is not None else type(p)(p.file, p.path, p.reason, doc.line(p.path))
                        for p in problems.problems])
    return definition


def definition_from_data(data: Any, source: str, *, name_hint: str = "") -> TestDefinition:
    """Validate an already loaded mapping (an inline definition in a job)."""
    return definition_from_document(Document(source, data), name_hint=name_hint)


# --- validation ------------------------------------------------------------------------------

def _build(data: Any, problems: ProblemList, source: str, name_hint: str) -> TestDefinition | None:
    if not isinstance(data, dict):
        problems.add("", f"a test definition must be a mapping with 'run', not {describe_value(data)}")
        return None
    metadata = data.get("metadata")
    if isinstance(metadata, dict) and metadata.get("format") == FORMAT_1_0:
        dialect = TESTDEF_1_0
        name = metadata.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            problems.add("metadata.name", "is required: a name made of letters, digits, '.', '_', '+', '-'"
                         + (f" (not {describe_value(name)})" if name is not None else ""))
            name = name_hint or "testdef"
        meta = {str(k): _text(v) for k, v in metadata.items() if isinstance(v, str | int | float | list)}
    elif "test_id" in data:
        dialect = LAVA_TEST
        name = data.get("test_id")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            problems.add("test_id", "must be a name made of letters, digits, '.', '_', '+', '-', "
                         f"not {describe_value(name)}")
            name = name_hint or "testdef"
        meta = {}
        if metadata is not None:
            problems.add("metadata", f"belongs to '{FORMAT_1_0}' definitions; a lava-test definition has test_id")
    else:
        if isinstance(metadata, dict):
            problems.add("metadata.format", f"must be {FORMAT_1_0!r}, not {describe_value(metadata.get('format'))}")
        else:
            problems.add("", f"needs 'test_id' (a lava-test definition) or 'metadata' with format {FORMAT_1_0!r}")
        return None

    run_steps, default_options = _run(data, problems)
    install = data.get("install", {}) or {}
    deps: list[str] = []
    steps: list[str] = []
    repos: list[str] = []
    if not isinstance(install, dict):
        problems.add("install", f"must be a mapping (deps, steps, git-repos), not {describe_value(install)}")
    else:
        deps = _strings(install, "deps", problems, "install.deps")
        steps = _strings(install, "steps", problems, "install.steps")
        repo_key = "git-repos" if dialect == TESTDEF_1_0 else "git_repos"
        for key in ("git-repos", "git_repos"):
            if key in install and key != repo_key:
                problems.add(f"install.{key}", f"is spelled {repo_key!r} in this dialect")
        repos = _repos(install.get(repo_key), problems, f"install.{repo_key}")
    params = _params(data.get("params"), problems) if dialect == TESTDEF_1_0 else {}
    if dialect == LAVA_TEST and "params" in data:
        problems.add("params", f"belongs to '{FORMAT_1_0}' definitions")
    parse = _parse(data.get("parse"), problems) if "parse" in data else None
    expected = _strings(data, "expected", problems, "expected")
    return TestDefinition(name=str(name), dialect=dialect, source=source, run_steps=run_steps,
                          install_steps=steps, deps=deps, git_repos=repos, params=params, parse=parse,
                          expected=expected, metadata=meta, default_options=default_options)


def _run(data: dict, problems: ProblemList) -> tuple[list[str], str | None]:
    run = data.get("run")
    if "run" not in data or run is None:
        problems.add("run", "is required: a mapping with 'steps' (the shell commands to run)")
        return [], None
    if not isinstance(run, dict):
        problems.add("run", f"must be a mapping with 'steps', not {describe_value(run)}")
        return [], None
    if "steps" not in run:
        problems.add("run.steps", "is required (the shell commands to run)")
        return [], None
    steps = _strings(run, "steps", problems, "run.steps")
    if not steps and isinstance(run.get("steps"), list):
        problems.add("run.steps", "must contain at least one step")
    options = run.get("default_options")
    if options is not None and not isinstance(options, str):
        problems.add("run.default_options", f"must be a string, not {describe_value(options)}")
        options = None
    return steps, options


def _parse(parse: Any, problems: ProblemList) -> ParseSpec | None:
    if not isinstance(parse, dict):
        problems.add("parse", f"must be a mapping (pattern, fixupdict, appendall), not {describe_value(parse)}")
        return None
    pattern = parse.get("pattern")
    compiled = None
    if not isinstance(pattern, str) or not pattern:
        problems.add("parse.pattern", "is required: a regular expression with named groups such as "
                     f"(?P<test_case_id>...) — not {describe_value(pattern)}")
    else:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            where = f" at position {exc.pos}" if exc.pos is not None else ""
            problems.add("parse.pattern", f"is not a valid regular expression: {exc.msg}{where}")
        else:
            unknown = sorted(set(compiled.groupindex) - set(GROUPS))
            if "test_case_id" not in compiled.groupindex:
                problems.add("parse.pattern", "needs a named group (?P<test_case_id>...)")
            if unknown:
                problems.add("parse.pattern", f"has unknown named group(s) {', '.join(unknown)} "
                             f"(known: {', '.join(GROUPS)})")
    fixup = _mapping(parse.get("fixupdict"), problems, "parse.fixupdict")
    for key, value in fixup.items():
        if value not in RESULTS:
            problems.add(f"parse.fixupdict.{key}", f"must map to one of {', '.join(RESULTS)}, not {value!r}")
    appendall = _mapping(parse.get("appendall"), problems, "parse.appendall")
    for key in appendall:
        if key not in GROUPS[1:]:
            problems.add(f"parse.appendall.{key}", f"is not a result field (known: {', '.join(GROUPS[1:])})")
    if "result" in appendall and appendall["result"] not in RESULTS:
        problems.add("parse.appendall.result", f"must be one of {', '.join(RESULTS)}")
    for key in parse:
        if key not in ("pattern", "fixupdict", "appendall"):
            problems.add(f"parse.{key}", "is not allowed (only pattern, fixupdict, appendall)")
    if compiled is None:
        return None
    if "result" not in compiled.groupindex and "result" not in appendall:
        appendall = {**appendall, "result": "pass"}  # a matched line without a result is a pass
    return ParseSpec(compiled, fixup, appendall)


def _params(params: Any, problems: ProblemList) -> dict[str, str]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        problems.add("params", f"must be a mapping of NAME: value, not {describe_value(params)}")
        return {}
    out = {}
    for key, value in params.items():
        if not isinstance(key, str) or not _ENV_RE.match(key):
            problems.add(f"params.{key}", "must be a shell variable name (letters, digits, '_')")
        elif isinstance(value, dict | list):
            problems.add(f"params.{key}", f"must be a string or number, not {describe_value(value)}")
        else:
            out[key] = _text(value)
    return out


def _repos(value: Any, problems: ProblemList, path: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add(path, f"must be a list of git URLs, not {describe_value(value)}")
        return []
    out = []
    for i, repo in enumerate(value):
        url = repo.get("url") if isinstance(repo, dict) else repo
        if not isinstance(url, str) or not url:
            problems.add(f"{path}[{i}]", "must be a git URL (or a mapping with 'url')")
        else:
            out.append(url)
    return out


def _strings(data: dict, key: str, problems: ProblemList, path: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add(path, f"must be a list of strings, not {describe_value(value)}")
        return []
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str | int | float) and not isinstance(item, bool):
            out.append(str(item))
        else:
            problems.add(f"{path}[{i}]", f"must be a string, not {describe_value(item)}")
    return out


def _mapping(value: Any, problems: ProblemList, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(path, f"must be a mapping, not {describe_value(value)}")
        return {}
    return {str(k): _text(v) for k, v in value.items()}


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


