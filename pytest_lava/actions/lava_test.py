"""``lava_test_install``, ``lava_test_run`` and ``lava_test_shell``.

Job-scoped state, in ``ctx.state`` (documented in docs/testdefs.md):

* ``ctx.state["lava_test"]`` — a :class:`LavaTestState` owned by this module: registered and
  installed definitions, and the installs still to do on the booted test image;
* read: ``ctx.state["booted"]`` — ``"master"`` when the master image is up (then installs go into
  the test root filesystem from the master), anything else truthy when the test image is up;
  ``ctx.state["testrootfs_mount"]`` — where the master board type has already mounted
  ``testrootfs`` (otherwise this module mounts ``ctx.device.partitions["testrootfs"]`` itself);
* written: ``ctx.state["booted"] = None`` when a hung test could not be interrupted, so that the
  next ``ctx.test_shell()`` reboots into the test image.

Each test case becomes its own :class:`CaseResult` in ``ctx.cases`` (its own pytest report) and
each definition run a :class:`TestRun` of the bundle, as the device-side tools used to write.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..console import ConsoleInactivity, ConsoleTimeout
from ..deadline import Deadline
from ..errors import InfrastructureError, JobError, TestFailure
from ..results import Attachment, CaseResult, TestRun
from ..testdefs.classic import resolve_test
from ..testdefs.device import DEFAULT_LAVA_DIR, DeviceRunner, test_dirname
from ..testdefs.load import load_git, load_inline, load_url
from ..testdefs.model import LAVA_TEST, TestDefinition
from ..testdefs.parse import CaseCollector, unique_ids
from .implementations import implements

if TYPE_CHECKING:
    from ..runner import ActionContext
    from ..shell import ShellSession

STATE_KEY = "lava_test"
RECOVER_TIMEOUT = 60.0
RECOVER_ATTEMPT = 10.0  # seconds for each "Ctrl-C, then true" try
MAX_RUN_LOG = 1024 * 1024
NO_APT = 3  # install.sh's exit status when deps are needed but the image has no apt-get


@dataclass
class LavaTestState:
    registered: dict[str, TestDefinition] = field(default_factory=dict)
    installed: dict[str, TestDefinition] = field(default_factory=dict)
    pending_tests: list[TestDefinition] = field(default_factory=list)
    pending_python: list[str] = field(default_factory=list)
    pending_deb: list[str] = field(default_factory=list)


def state(ctx: ActionContext) -> LavaTestState:
    return ctx.state.setdefault(STATE_KEY, LavaTestState())


def lava_dir(ctx: ActionContext) -> str:
    return str(ctx.device.extra.get("lava_test_dir", DEFAULT_LAVA_DIR))


class TestRunFailed(TestFailure):
    """A test action failed; ``cases`` holds the test cases it produced before failing."""

    def __init__(self, message: str, *, details: str = "", cases: list[CaseResult] | None = None) -> None:
        super().__init__(message, details=details)
        self.cases = list(cases or [])


def _has_install_work(definition: TestDefinition) -> bool:
    return bool(definition.deps or definition.install_steps or definition.git_repos)


def _runner(ctx: ActionContext, shell: ShellSession, lava: str | None = None) -> DeviceRunner:
    return DeviceRunner(shell, lava or lava_dir(ctx), log=ctx.log)


def _tail(output: str, headline: str) -> str:
    tail = "\n".join(output.strip().splitlines()[-15:])
    return f"{headline}\n{tail}" if tail else headline


def _prepare(ctx: ActionContext, runner: DeviceRunner) -> None:
    """Helpers on the image, and what lava_test_install left to do before the first run."""
    st = state(ctx)
    if st.pending_tests or st.pending_python or st.pending_deb:
        tests, python, debs = st.pending_tests, st.pending_python, st.pending_deb
        st.pending_tests, st.pending_python, st.pending_deb = [], [], []
        from .lava_test_install import install_on_image

        install_on_image(ctx, runner, tests, python, debs)
    else:
        runner.install_helpers(ctx.deadline)


# --- running a definition --------------------------------------------------------------------

def _run_definition(ctx: ActionContext, runner: DeviceRunner, definition: TestDefinition, dirname: str,
                    options: str | None) -> tuple[list[CaseResult], int | None, TestRunFailed | None]:
    """Run one definition live. Returns its cases, the exit status, and the failure of a hang."""
    runner.install_definition(definition, dirname, ctx.deadline, options=options)
    collector = CaseCollector(definition)
    started = datetime.now(UTC)
    log: list[str] = []
    size = 0

    def on_line(line: str) -> None:
        nonlocal size
        if size < MAX_RUN_LOG:
            log.append(line.rstrip("\r"))
            size += len(line) + 1
        for case in collector.feed(line):
            ctx.log(f"  {definition.name}: {case.test_case_id} {case.result}"
                    + (f" {case.measurement:g} {case.units or ''}" if case.measurement is not None else ""))

    status: int | None = None
    failure: TestRunFailed | None = None
    try:
        # the inactivity watchdog: a run step silent longer than the device allows fails early
        silent = ctx.device.timeouts.get("test_inactivity")
        status = runner.run_test(dirname, ctx.deadline, on_line, inactivity=silent)
        collector.finish()
    except ConsoleTimeout as exc:
        silent_too_long = isinstance(exc, ConsoleInactivity)
        why = (f"silent for longer than timeouts.test_inactivity ({silent:g} s)" if silent_too_long
               else f"no end within the action timeout of {ctx.deadline.timeout or 0:g} s")
        collector.finish(interrupted=why)
        tail = runner.shell.console.tail(25)
        recovered = runner.recover(Deadline(RECOVER_TIMEOUT, "recover after a hung test", ctx.run.deadline),
                                   attempt=RECOVER_ATTEMPT)
        if not recovered:
            ctx.state["booted"] = None  # the next test_shell() reboots into the test image
        ctx.log(f"{definition.name} hung; board {'recovered with Ctrl-C' if recovered else 'to be rebooted'}")
        failure = TestRunFailed(f"{definition.name}: the run was stopped: {why} ({exc.message})"
                                if silent_too_long else f"{definition.name}: the run did not finish before the "
                                f"action timeout ({exc.message})", details=f"last console lines:\n{tail}")
    attachments = [Attachment("testdef.yaml", definition.text.encode()), Attachment("stdout.log",
                                                                                    "\n".join(log).encode())]
    if failure is None:
        attachments += _fetch_attachments(ctx, runner, collector)
    ctx.results.add_test_run(TestRun(test_id=definition.name, cases=list(collector.cases), started=started,
                                     attributes=definition.attributes(), attachments=attachments))
    return collector.cases, status, failure


def _fetch_attachments(ctx: ActionContext, runner: DeviceRunner, collector: CaseCollector) -> list[Attachment]:
    out = []
    for ref in collector.attachments:
        try:
            data = runner.transfer.pull(ref.stored, ctx.deadline)
        except InfrastructureError as exc:
            ctx.results.gather_failed(f"attachment {ref.name} of {collector.definition.name}: {exc.message}")
            continue
        where = ref.test_case_id or "run"
        out.append(Attachment(f"attachments/{where}/{ref.name}", data, ref.mime_type or "text/plain"))
        for case in collector.cases:
            if case.test_case_id == ref.test_case_id:
                case.attributes.setdefault("attachments", "")
                case.attributes["attachments"] = ",".join(
                    x for x in (case.attributes["attachments"], out[-1].pathname) if x)
    return out


def _report(ctx: ActionContext, cases: list[CaseResult], prefix: str = "") -> list[CaseResult]:
    """Copies for pytest (the bundle keeps the originals): prefixed when one action runs several
    definitions, and unique within the action."""
    taken = {c.test_case_id for c in ctx.cases}
    out = [dataclasses.replace(c, test_case_id=f"{prefix}{c.test_case_id}", attributes=dict(c.attributes))
           for c in cases]
    unique_ids(out, taken)
    ctx.cases.extend(out)
    return out


def _fail(ctx: ActionContext, failure: TestRunFailed) -> None:
    failure.cases = list(ctx.cases)
    raise failure


@implements("lava_test_run")
def lava_test_run(ctx: ActionContext, params: dict[str, Any]) -> None:
    st = state(ctx)
    name = params["test_name"]
    definition = st.installed.get(name) or next((d for d in st.pending_tests if d.name == name), None)
    if definition is None:
        definition = resolve_test(name, registered=st.registered, base=ctx.job.file.parent)
        ctx.log(f"lava_test_run: {name} was not installed by lava_test_install; using {definition.source}")
    runner = _runner(ctx, ctx.test_shell())
    _prepare(ctx, runner)
    cases, status, failure = _run_definition(ctx, runner, definition, test_dirname(definition),
                                             params.get("test_options"))
    _report(ctx, cases)
    if failure is not None:
        _fail(ctx, failure)
    if definition.dialect == LAVA_TEST and status:
        _fail(ctx, TestRunFailed(f"Lava failed on test: {name}: test case failed with return value: {status}",
                                 details="a run step exited non-zero (see the <LAVA_SIGNAL_STEPFAIL> lines)"))


def _shell_definitions(ctx: ActionContext, params: dict[str, Any]) -> list[TestDefinition]:
    st = state(ctx)
    where = f"{ctx.job.file}: {ctx.action.path}.parameters"
    out: list[TestDefinition] = []
    for url in params.get("testdef_urls") or []:
        out.append(load_url(url, timeout=min(60.0, ctx.deadline.remaining())))
    for i, repo in enumerate(params.get("testdef_repos") or []):
        url = repo.get("git-repo") or repo.get("git_repo")
        if not url:
            raise JobError.single(str(ctx.job.file), f"{ctx.action.path}.parameters.testdef_repos[{i}]",
                                  "only git repositories are supported ('git-repo'); bzr-repo is not")
        out.append(load_git(url, revision=repo.get("revision"), testdef=repo.get("testdef", "lavatest.yaml"),
                            timeout=min(300.0, ctx.deadline.remaining())))
    for i, item in enumerate(params.get("testdefs") or []):
        if isinstance(item, str):
            out.append(resolve_test(item, registered=st.registered, base=Path(ctx.job.file).parent))
        else:
            out.append(load_inline(item, f"{where}.testdefs[{i}]"))
    if not out:
        raise JobError.single(str(ctx.job.file), f"{ctx.action.path}.parameters",
                              "lava_test_shell needs testdef_urls, testdef_repos or testdefs")
    return out


@implements("lava_test_shell")
def lava_test_shell(ctx: ActionContext, params: dict[str, Any]) -> None:
    definitions = _shell_definitions(ctx, params)  # all loaded and valid before the board is touched
    runner = _runner(ctx, ctx.test_shell())
    _prepare(ctx, runner)
    several = len(definitions) > 1
    for index, definition in enumerate(definitions):
        dirname = test_dirname(definition, index)
        prefix = f"{definition.name}." if several else ""
        if _has_install_work(definition):
            runner.install_definition(definition, dirname, ctx.deadline)
            lines: list[str] = []
            rc = runner.run_test(dirname, ctx.deadline, lines.append, script="install.sh")
            if rc != 0:
                why = "no apt-get on the image for its deps" if rc == NO_APT else f"install.sh exited {rc}"
                _report(ctx, [CaseResult("install", "fail", f"{definition.name}: {why}",
                                         log_excerpt="\n".join(lines[-40:]))], prefix)
                continue
        cases, _status, failure = _run_definition(ctx, runner, definition, dirname, None)
        _report(ctx, cases, prefix)
        if failure is not None:
            _fail(ctx, failure)
