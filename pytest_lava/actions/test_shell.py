"""``lava_test_shell``: Test Definition 1.0 files run as LAVA runs them.

Definitions come from ``testdef_urls``, ``testdefs`` (built-in names, paths, inline) and
``testdef_repos`` (:mod:`..testdefs.repos`: old and LAVA v2 spelling). A repository's working tree
is put on the board (:func:`..testdefs.delivery.deliver_tree`) and the run steps start at its
root; its ``parameters`` override the definition's ``params``. ``install`` runs first: what the
image cannot do (deps without apt-get, git-repos without git) is a ``skip`` case; a failing install
step is a failing case and the definition's run is left out.

Nothing passes silently: a failing run step is a failing case ``run-step-<n>`` (exit status, step,
output), and a definition that produced no case of its own but had a failing step fails the action
with those reasons (after the other definitions ran). ``lava-test-raise`` ends the action.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import JobError
from ..results.model import CaseResult
from ..testdefs.device import DeviceRunner, ScriptEnv, test_dirname
from ..testdefs.load import load_inline, load_tree, load_url, resolve
from ..testdefs.model import TestDefinition
from ..testdefs.parse import CaseCollector
from .implementations import implements
from .lava_test import (
    NO_APT,
    TestRunFailed,
    _fail,
    _has_install_work,
    _prepare,
    _report,
    _run_definition,
    _runner,
)
from .lava_test_state import state

if TYPE_CHECKING:
    from ..jobs.runner import ActionContext
    from ..testdefs.repos import RepoSpec

REPOS_DIR = "repos"  # $LAVA_DIR/repos/<key>: one working tree per repository and revision


@dataclass
class ShellItem:
    definition: TestDefinition
    repo: RepoSpec | None = None
    tree: Path | None = None  # the host's checkout of ``repo``


def shell_definitions(ctx: ActionContext, params: dict[str, Any]) -> list[ShellItem]:
    """Every definition of the action, loaded and validated before the board is touched."""
    st = state(ctx)
    job_file = str(ctx.job.file)
    where = f"{job_file}: {ctx.action.path}.parameters"
    out: list[ShellItem] = []
    for url in params.get("testdef_urls") or []:
        out.append(ShellItem(load_url(url, timeout=min(60.0, ctx.deadline.remaining()))))
    for i, entry in enumerate(params.get("testdef_repos") or []):
        from ..testdefs.repos import checkout, parse_entry  # (repositories and their delivery: when used)

        spec = parse_entry(entry, job_file, f"{ctx.action.path}.parameters.testdef_repos[{i}]")
        tree = checkout(spec, ctx.deadline)
        definition = load_tree(tree, spec.testdef, repo=spec.url, revision=spec.revision)
        if spec.name:
            definition.name = spec.name
        definition.params = {**definition.params, **spec.parameters}  # LAVA: parameters override params
        out.append(ShellItem(definition, spec, tree))
    for i, item in enumerate(params.get("testdefs") or []):
        if isinstance(item, str):
            out.append(ShellItem(resolve(item, registered=st.registered, base=Path(ctx.job.file).parent)))
        else:
            out.append(ShellItem(load_inline(item, f"{where}.testdefs[{i}]")))
    if not out:
        raise JobError.single(job_file, f"{ctx.action.path}.parameters",
                              "lava_test_shell needs testdef_urls, testdef_repos or testdefs")
    return out


def _deliver(ctx: ActionContext, runner: DeviceRunner, item: ShellItem) -> str | None:
    """The repository's working tree on the board; returns its path there (``None``: no repository)."""
    if item.repo is None or item.tree is None:
        return None
    from ..testdefs.delivery import deliver_tree
    from ..testdefs.repos import payload

    dest = f"{runner.lava_dir}/{REPOS_DIR}/{item.repo.key}"
    got = deliver_tree(runner, payload(item.tree, ctx.deadline), dest, ctx.device, ctx.deadline, log=ctx.log)
    note = got.describe(f"{item.repo.url}@{item.repo.revision or 'HEAD'}")
    ctx.log(note)
    item.definition.metadata["payload"] = note
    return dest


def _install(ctx: ActionContext, runner: DeviceRunner, definition: TestDefinition, dirname: str,
             env: ScriptEnv, prefix: str) -> bool:
    """``install.sh``: its cases reported; ``False`` when it failed (the run is left out)."""
    runner.install_definition(definition, dirname, ctx.deadline, env=env)
    collector = CaseCollector(definition)
    lines: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line)
        collector.feed(line)

    rc = runner.run_test(dirname, ctx.deadline, on_line, script="install.sh")
    cases = list(collector.cases)
    if rc != 0 and not any(c.result == "fail" for c in cases):
        why = "no apt-get on the image for its deps" if rc == NO_APT else f"install.sh exited {rc}"
        cases.append(CaseResult("install", "fail", f"{definition.name}: {why}", log_excerpt="\n".join(lines[-40:])))
    _report(ctx, cases, prefix)
    return rc == 0


@implements("lava_test_shell")
def lava_test_shell(ctx: ActionContext, params: dict[str, Any]) -> None:
    items = shell_definitions(ctx, params)
    runner = _runner(ctx, ctx.test_shell())
    _prepare(ctx, runner)
    kmsg = bool(ctx.device.extra.get("lava_test_kmsg", False))
    several = len(items) > 1
    silent_failures: list[str] = []
    for index, item in enumerate(items):
        definition = item.definition
        dirname = test_dirname(definition, index)
        prefix = f"{definition.name}." if several else ""
        env = ScriptEnv(workdir=_deliver(ctx, runner, item), kmsg=kmsg, skip_missing=True)
        if _has_install_work(definition) and not _install(ctx, runner, definition, dirname, env, prefix):
            continue
        collector = CaseCollector(definition)
        cases, status, failure = _run_definition(ctx, runner, definition, dirname, None, env, collector, prefix)
        if failure is not None:
            _fail(ctx, failure)
        steps = [f"run step {n} exited {rc}" for phase, n, rc in collector.failed_steps if phase == "run"]
        if status and not steps and not any(name == "STARTRUN" for name, _ in collector.signals):
            steps = [f"run.sh exited {status} before its first step (see stdout.log)"]
        own = [c for c in cases if not c.test_case_id.startswith("run-step-")]
        if steps and not own:
            silent_failures.append(f"{definition.name}: no test case, and {'; '.join(steps)}")
    if silent_failures:
        _fail(ctx, TestRunFailed("; ".join(silent_failures),
                                 details="a definition that reports no test case passes only if its steps do"))


__all__ = ["ShellItem", "lava_test_shell", "shell_definitions"]
