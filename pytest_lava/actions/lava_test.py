"""``lava_test_install`` and ``lava_test_run``, and what ``lava_test_shell`` (:mod:`.test_shell`) shares.

Job-scoped state (documented in docs/testdefs.md):

* ``ctx.run.slot(LavaTestState)`` — owned by this module: registered and installed definitions,
  and the installs still to do on the booted test image;
* read: the board driver's ``state`` — ``MASTER`` when the master image is up (then installs go
  into the test root filesystem from the master), ``TEST``/``ANDROID`` when a test image is up;
  its ``testrootfs_mount`` — where the driver has already mounted ``testrootfs`` (otherwise this
  module mounts ``ctx.device.partitions["testrootfs"]`` itself);
* written: the driver's ``state = UNKNOWN`` when a hung test could not be interrupted, so that
  the next ``ctx.test_shell()`` reboots into the test image.

Each test case becomes its own :class:`CaseResult` in ``ctx.cases`` (its own pytest report) and
each definition run a :class:`TestRun` of the bundle, as the device-side tools used to write.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..boards.driver import BoardState
from ..console.text import ConsoleInactivity, ConsoleTimeout
from ..core.deadline import Deadline
from ..core.errors import InfrastructureError, TestFailure
from ..results.model import Attachment, CaseResult, TestRun
from ..testdefs.classic import resolve_test
from ..testdefs.device import DeviceRunner, ScriptEnv, test_dirname
from ..testdefs.model import LAVA_TEST, TestDefinition
from ..testdefs.parse import CaseCollector, unique_ids
from .implementations import implements
from .lava_test_state import lava_dir, state

if TYPE_CHECKING:
    from ..console.shell import ShellSession
    from ..jobs.runner import ActionContext

RECOVER_TIMEOUT = 60.0
RECOVER_ATTEMPT = 10.0  # seconds for each "Ctrl-C, then true" try
MAX_RUN_LOG = 1024 * 1024
NO_APT = 3  # install.sh's exit status when deps are needed but the image has no apt-get


class TestRunFailed(TestFailure):
    """A test action failed; ``cases`` holds the test cases it produced before failing."""

    def __init__(self, message: str, *, details: str = "", cases: list[CaseResult] | None = None) -> None:
        super().__init__(message, details=details)
        self.cases = list(cases or [])


def _has_install_work(definition: TestDefinition) -> bool:
    return bool(definition.deps or definition.install_steps or definition.git_repos)


def _runner(ctx: ActionContext, shell: ShellSession, lava: str | None = None) -> DeviceRunner:
    return DeviceRunner(shell, lava or lava_dir(ctx), log=ctx.log, carried=getattr(ctx.driver, "carried", None))


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
                    options: str | None, env: ScriptEnv | None = None,
                    collector: CaseCollector | None = None, prefix: str = "") -> tuple[list[CaseResult], int | None,
                                                                                        TestRunFailed | None]:
    """Run one definition live: each case is reported (as ``prefix`` + its id) the moment its line
    arrives. Returns its cases, the exit status, and the failure of a hang (or of
    ``lava-test-raise``)."""
    runner.install_definition(definition, dirname, ctx.deadline, options=options, env=env or ScriptEnv())
    collector = collector or CaseCollector(definition)
    started = datetime.now(UTC)
    log: list[str] = []
    size = 0
    reported: list[CaseResult] = []

    def on_line(line: str) -> None:
        nonlocal size
        if size < MAX_RUN_LOG:
            log.append(line.rstrip("\r"))
            size += len(line) + 1
        new = collector.feed(line)
        for case in new:
            ctx.log(f"  {definition.name}: {case.test_case_id} {case.result}"
                    + (f" {case.measurement:g} {case.units or ''}" if case.measurement is not None else ""))
        if new:
            reported.extend(new)
            _report(ctx, new, prefix)

    status: int | None = None
    failure: TestRunFailed | None = None
    try:
        # the inactivity watchdog: a run step silent longer than the device allows fails early
        silent = ctx.device.timeouts.get("test_inactivity")
        status = runner.run_test(dirname, ctx.deadline, on_line, inactivity=silent)
        collector.finish(interrupted=f"lava-test-raise: {collector.raised}" if collector.raised else "")
        if collector.raised:
            failure = TestRunFailed(f"{definition.name}: lava-test-raise: {collector.raised}",
                                    details="the definition aborted the test run (as LAVA's TestError)")
    except ConsoleTimeout as exc:
        silent_too_long = isinstance(exc, ConsoleInactivity)
        why = (f"silent for longer than timeouts.test_inactivity ({silent:g} s)" if silent_too_long
               else f"no end within the action timeout of {ctx.deadline.timeout or 0:g} s")
        collector.finish(interrupted=why)
        tail = runner.shell.console.tail(25)
        recovered = runner.recover(Deadline(RECOVER_TIMEOUT, "recover after a hung test", ctx.run.deadline),
                                   attempt=RECOVER_ATTEMPT)
        if not recovered:
            ctx.driver.state = BoardState.UNKNOWN  # the next test_shell() reboots into the test image
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
    live = {id(c) for c in reported}
    _report(ctx, [c for c in collector.cases if id(c) not in live], prefix)  # what the end of the run added
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
    ctx.report(out)
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
    if failure is not None:
        _fail(ctx, failure)
    if definition.dialect == LAVA_TEST and status:
        _fail(ctx, TestRunFailed(f"Lava failed on test: {name}: test case failed with return value: {status}",
                                 details="a run step exited non-zero (see the <LAVA_SIGNAL_STEPFAIL> lines)"))
