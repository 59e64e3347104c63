"""Where test definitions come from: the built-in library, a local path, an http(s) URL, a git repo.

Every loader returns a validated :class:`~.model.TestDefinition` or raises :class:`JobError`
(the definition is wrong: file, field, reason) or :class:`InfrastructureError` (it could not be
fetched). Downloads and clones have timeouts; ``git`` runs as an argv, never through a shell.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..core.errors import InfrastructureError, JobError
from ..jobs.loader import parse_text, read_document
from .model import TestDefinition, definition_from_data, definition_from_document

LIBRARY_PACKAGE = "pytest_lava.testdefs"
LIBRARY_DIR = "library"
DEFAULT_REPO_TESTDEF = "lavatest.yaml"
MAX_DEFINITION_BYTES = 1024 * 1024
_SHA_RE = re.compile(r"^[0-9a-fA-F]{7,40}$")


def library_names() -> list[str]:
    """Names of the built-in definitions (``smoke``, ``stream``, ...)."""
    folder = resources.files(LIBRARY_PACKAGE).joinpath(LIBRARY_DIR)
    return sorted(p.name.rsplit(".", 1)[0] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_builtin(name: str) -> TestDefinition:
    folder = resources.files(LIBRARY_PACKAGE).joinpath(LIBRARY_DIR)
    entry = folder.joinpath(f"{name.replace('_', '-')}.yaml")
    if not entry.is_file():
        entry = folder.joinpath(f"{name}.yaml")
    if not entry.is_file():
        known = ", ".join(library_names())
        raise JobError.single(f"library:{name}", "", f"no built-in test definition {name!r} (built-in: {known})")
    text = entry.read_text(encoding="utf-8")
    return _from_text(text, f"library:{name}", name_hint=name)


def load_path(path: str | Path) -> TestDefinition:
    path = Path(path)
    doc = read_document(path)
    definition = definition_from_document(doc, name_hint=path.stem)
    definition.text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return definition


def load_url(url: str, *, timeout: float = 60.0) -> TestDefinition:
    """An ``http(s)://`` or ``file://`` URL (or a plain path)."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return load_path(unquote(parts.path) if parts.scheme else url)
    if parts.scheme not in ("http", "https"):
        raise JobError.single(url, "", "a test definition URL must be http, https or file")
    import requests

    try:
        with requests.get(url, timeout=(min(timeout, 30.0), timeout), stream=True) as resp:
            if resp.status_code != 200:
                raise InfrastructureError(f"downloading test definition {url}: HTTP {resp.status_code}")
            data = resp.raw.read(MAX_DEFINITION_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise InfrastructureError(f"downloading test definition {url} failed: {exc}") from exc
    if len(data) > MAX_DEFINITION_BYTES:
        raise JobError.single(url, "", f"is larger than {MAX_DEFINITION_BYTES} bytes; not a test definition")
    name = Path(parts.path).name.rsplit(".", 1)[0]
    return _from_text(data.decode("utf-8", "replace"), url, name_hint=name,
                      json_syntax=parts.path.lower().endswith(".json"))


def load_git(repo: str, *, revision: str | None = None, testdef: str = DEFAULT_REPO_TESTDEF,
             timeout: float = 300.0) -> TestDefinition:
    """Clone ``repo`` (shallow unless ``revision`` is a commit id) and load ``testdef`` from it."""
    work = Path(tempfile.mkdtemp(prefix="lava-testdef-"))
    try:
        dest = work / "repo"
        clone(repo, revision, dest, timeout=timeout)
        return load_tree(dest, testdef, repo=repo, revision=revision)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def clone(repo: str, revision: str | None, dest: Path, *, timeout: float = 300.0) -> None:
    """``git clone`` of a job's repository into ``dest`` (a new directory): shallow for a branch or
    tag, full + checkout for a commit id. argv only, allowed protocols only, with a timeout."""
    if repo.startswith("-") or (revision or "").startswith("-"):
        raise JobError.single(repo, "", "a repository URL or revision must not start with '-'")
    git = shutil.which("git")
    if git is None:
        raise InfrastructureError("testdef_repos needs 'git' on the host (apt-get install git)")
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true")
    if revision and _SHA_RE.match(revision):
        _git([git, "clone", "--quiet", "--", repo, str(dest)], timeout, env, repo)
        _git([git, "-C", str(dest), "checkout", "--quiet", revision], timeout, env, repo)
    else:
        argv = [git, "clone", "--quiet", "--depth", "1"]
        if revision:
            argv += ["--branch", revision]
        _git([*argv, "--", repo, str(dest)], timeout, env, repo)


def load_tree(tree: Path, testdef: str, *, repo: str, revision: str | None = None) -> TestDefinition:
    """The definition ``testdef`` of a checked-out repository (it must stay inside the tree)."""
    target = (tree / testdef).resolve()
    if not target.is_relative_to(tree.resolve()):
        raise JobError.single(repo, "testdef", f"{testdef!r} points outside the repository")
    if not target.is_file():
        raise JobError.single(repo, "testdef", f"{testdef!r} is not a file in the repository")
    definition = _from_text(target.read_text(encoding="utf-8", errors="replace"),
                            f"{repo}#{testdef}", name_hint=Path(testdef).stem)
    definition.metadata.setdefault("repo", repo)
    if revision:
        definition.metadata.setdefault("revision", revision)
    return definition


# a job names the repository: no ssh (the harness user's keys), no ext:: (runs a command)
_GIT_PROTOCOLS = ["-c", "protocol.allow=never", *(x for proto in ("https", "http", "git", "file")
                                                 for x in ("-c", f"protocol.{proto}.allow=always"))]


def _git(argv: list[str], timeout: float, env: dict[str, str], repo: str) -> None:
    """Run git for a job's repository; a failure is the job's (its URL or revision), not the board's."""
    argv = [argv[0], *_GIT_PROTOCOLS, *argv[1:]]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise JobError.single(repo, "", f"git clone did not finish within {timeout:g} s") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        verb = "checkout" if "checkout" in argv else "clone"
        raise JobError.single(repo, "", f"git {verb} failed (exit {proc.returncode}): " + " / ".join(err))


def load_inline(data: object, where: str) -> TestDefinition:
    """An inline definition from a job (``testdefs: [{metadata: ..., run: ...}]``)."""
    import yaml

    definition = definition_from_data(data, where)
    definition.text = yaml.safe_dump(data, sort_keys=False)
    return definition


def resolve(ref: str, *, registered: dict[str, TestDefinition] | None = None,
            base: Path | None = None, timeout: float = 60.0) -> TestDefinition:
    """A definition by name (registered, then built-in), path (relative to ``base``) or URL."""
    if registered and ref in registered:
        return registered[ref]
    if "://" in ref:
        return load_url(ref, timeout=timeout)
    if ref.endswith((".yaml", ".yml", ".json")) or "/" in ref:
        path = Path(ref)
        if not path.is_absolute() and base is not None:
            path = base / path
        return load_path(path)
    return load_builtin(ref)


def _from_text(text: str, source: str, *, name_hint: str, json_syntax: bool = False) -> TestDefinition:
    doc = parse_text(text, source, json_syntax=json_syntax)
    definition = definition_from_document(doc, name_hint=name_hint)
    definition.text = text
    return definition
