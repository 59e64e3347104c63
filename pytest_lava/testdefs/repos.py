"""Test definition repositories: the job's entry (both spellings), the host-side checkout (cached
per URL + revision) and the payload tarball the board receives.

A ``testdef_repos`` entry, in the old dispatcher's words or LAVA v2's::

    {git-repo: URL, revision: REV, testdef: path/in/repo.yaml, parameters: {K: V}}
    {repository: URL, from: git, revision: REV, path: path/in/repo.yaml, name: NAME, parameters: {K: V}}

The repository is cloned on the host (``git`` as an argv with the protocol rules of
:mod:`.load`: no ssh, no ``ext::``), once per URL + revision into the shared cache, and its
working tree (without ``.git``) goes to the board as one ``.tar.gz`` (:mod:`.delivery`), where
the definition's run steps start at its root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifacts.download import default_cache_dir, locked
from ..core.deadline import Deadline
from ..core.errors import JobError, ProblemList, describe_value
from .delivery import Payload, pack_tree
from .load import DEFAULT_REPO_TESTDEF, clone

OLD_KEYS = {"git-repo", "bzr-repo", "revision", "testdef", "parameters"}
V2_KEYS = {"repository", "from", "revision", "path", "name", "parameters", "history", "branch"}


@dataclass(frozen=True)
class RepoSpec:
    """One ``testdef_repos`` entry, whichever spelling."""

    url: str
    revision: str | None = None
    testdef: str = DEFAULT_REPO_TESTDEF
    name: str | None = None  # LAVA v2 ``name``: the test run's name instead of metadata.name
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The cache key: URL and revision."""
        return hashlib.sha256(f"{self.url}\0{self.revision or ''}".encode()).hexdigest()[:24]


def check_entry(entry: Any, problems: ProblemList, where: str) -> RepoSpec | None:
    """Validate one entry; every problem is added with its field. ``None`` when unusable."""
    if not isinstance(entry, dict):
        problems.add(where, "must be a mapping with 'git-repo' (or LAVA v2's 'repository' and 'from: git'), not "
                     + describe_value(entry))
        return None
    v2 = "repository" in entry
    allowed = V2_KEYS if v2 else OLD_KEYS
    for key in entry:
        if key not in allowed:
            spelling = "LAVA v2 ('repository')" if v2 else "old ('git-repo')"
            problems.add(f"{where}.{key}",
                         f"unknown key for the {spelling} spelling (allowed: {', '.join(sorted(allowed))})")
    if v2:
        url, testdef = entry.get("repository"), entry.get("path", DEFAULT_REPO_TESTDEF)
        if entry.get("from", "git") != "git":
            problems.add(f"{where}.from",
                         f"only 'git' repositories are supported, not {describe_value(entry.get('from'))}")
    else:
        if "bzr-repo" in entry and "git-repo" not in entry:
            problems.add(f"{where}.bzr-repo", "only git repositories are supported ('git-repo')")
            return None
        url, testdef = entry.get("git-repo"), entry.get("testdef", DEFAULT_REPO_TESTDEF)
    ok = True
    if not isinstance(url, str) or not url.strip():
        problems.add(where, "needs 'git-repo' (or 'repository'): the URL of a git repository")
        ok = False
    elif url.startswith("-"):
        problems.add(f"{where}.{'repository' if v2 else 'git-repo'}", "a repository URL must not start with '-'")
        ok = False
    revision = entry.get("revision", entry.get("branch"))
    if revision is not None and (not isinstance(revision, str | int) or str(revision).startswith("-")
                                 or not str(revision).strip()):
        problems.add(f"{where}.revision", f"must be a branch, tag or commit id, not {describe_value(revision)}")
        ok = False
    if not isinstance(testdef, str) or not testdef or testdef.startswith("/") or ".." in Path(testdef).parts:
        problems.add(f"{where}.{'path' if v2 else 'testdef'}",
                     f"must be a relative path inside the repository, not {describe_value(testdef)}")
        ok = False
    name = entry.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        problems.add(f"{where}.name", f"must be a name, not {describe_value(name)}")
        ok = False
    params = entry.get("parameters") or {}
    if not isinstance(params, dict):
        problems.add(f"{where}.parameters", f"must be a mapping of NAME: value, not {describe_value(params)}")
        ok = False
        params = {}
    out: dict[str, str] = {}
    for k, v in params.items():
        if not isinstance(k, str) or not k.replace("_", "a").isalnum() or k[0].isdigit():
            problems.add(f"{where}.parameters.{k}", "must be a shell variable name (letters, digits, '_')")
            ok = False
        elif isinstance(v, dict | list):
            problems.add(f"{where}.parameters.{k}", f"must be a string or number, not {describe_value(v)}")
            ok = False
        else:
            out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    if not ok:
        return None
    return RepoSpec(str(url), str(revision) if revision is not None else None, str(testdef),
                    name.strip() if isinstance(name, str) else None, out)


def parse_entry(entry: Any, file: str, where: str) -> RepoSpec:
    """:func:`check_entry`, raising :class:`JobError` with every problem."""
    problems = ProblemList(file)
    spec = check_entry(entry, problems, where)
    if problems or spec is None:
        raise JobError(problems.problems)
    return spec


def repo_cache_dir() -> Path:
    return default_cache_dir().parent / "testdef-repos"


def checkout(spec: RepoSpec, deadline: Deadline, *, root: Path | None = None) -> Path:
    """The working tree of ``spec.url`` at ``spec.revision`` on the host (cloned once, then reused)."""
    base = (root or repo_cache_dir()) / spec.key
    tree = base / "tree"
    with locked(base / "lock", deadline, f"checkout of {spec.url}"):
        if (base / "complete").is_file() and tree.is_dir():
            return tree
        shutil.rmtree(tree, ignore_errors=True)
        tmp = base / f"clone-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            clone(spec.url, spec.revision, tmp, timeout=max(1.0, min(300.0, deadline.remaining())))
            os.replace(tmp, tree)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        (base / "complete").write_text(f"{spec.url}\n{spec.revision or ''}\n")
    return tree


def payload(tree: Path, deadline: Deadline) -> Payload:
    """The tree's payload beside it (``payload.tar.gz``, without ``.git``), made once per checkout."""
    with locked(tree.parent / "lock", deadline, f"payload of {tree}"):
        return pack_tree(tree, tree.parent / "payload.tar.gz", exclude=(".git",))
