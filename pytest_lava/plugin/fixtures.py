"""Public fixtures: a leased lab board, and shells on it, for plain pytest tests.

    lava_session   session   the plugin's per-process state (options, devices, pool)
    lava_devices   session   the lab's devices (``--lava-devices``)
    lava_target    module    a board leased for the module (``@pytest.mark.lava_board(...)`` or
                             ``--lava-device``): its device, console, board type, job run and results
    lava_deadline  function  this test's deadline, a child of the target's (``@pytest.mark.lava_timeout``)
    master_shell   function  a shell on the board's master image, booted first if it is not up
    test_shell     function  a shell on the board's test image, booted first if it is not up
    lava_console   function  the board's console (raw ``expect``/``send``, e.g. for U-Boot)
    lava_results   module    the results the module's tests are recorded in
    android_board  module    the board booted into Android (deployed first from
                             ``@pytest.mark.lava_android(boot=, system=, data=)`` when given)
    adb_device     function  an :class:`~pytest_lava.android.adb.AdbDevice` on it (this job's own adb
                             server; Android booted or adb reconnected first if needed)

The board is leased at the first test of the module that asks for it and released (powered off,
results written) after the module's last test, by pytest's own fixture teardown. Every test that
used the board is a test case of the module's test run in the board's bundle
(``<results>/<module>/bundle.json``, with the ``lava`` run and the serial log), as well as an
ordinary pytest result. A lab error reaching the board (power, console, boot) is an *error* of the
tests that need it; a failing assertion is a *failure*.

    import pytest

    pytestmark = pytest.mark.lava_board(device_type="lab-x86_64")

    def test_kernel(test_shell, lava_deadline):
        assert test_shell.run("uname -s", lava_deadline).output.strip() == "Linux"
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..core.deadline import Deadline
from .keys import SESSION_KEY

if TYPE_CHECKING:
    from ..android.adb import AdbDevice
    from ..boards import BoardDriver
    from ..console.engine import Console
    from ..console.shell import ShellSession
    from ..devices.directory import DeviceSet
    from ..jobs.runner import ActionContext, JobRun
    from ..results.model import JobResults
    from .session import LavaSession

DEFAULT_TIMEOUT = 3600.0  # a module's whole time on its board, unless lava_board(timeout=) says


class LavaTarget:
    """A leased board for plain tests: the job run that holds it, and what tests need of it."""

    def __init__(self, run: JobRun, test_id: str) -> None:
        from ..results.model import TestRun

        self.run = run
        self.test_run = TestRun(test_id=test_id)
        self._recorded = False

    @property
    def name(self) -> str:
        return str(self.run.device.name)

    @property
    def device(self) -> Any:
        return self.run.device

    @property
    def driver(self) -> BoardDriver:
        """The board's driver: what it can do and what it runs now (``driver.state``)."""
        return self.run.driver

    board_type = driver  # the name used before the driver contract

    @property
    def console(self) -> Console:
        return self.run.board.console

    @property
    def results(self) -> JobResults:
        assert self.run.results is not None
        return self.run.results

    @property
    def deadline(self) -> Deadline:
        return self.run.deadline

    def context(self, deadline: Deadline) -> ActionContext:
        """What board types get: the run and a deadline (no job action: a plain test asked)."""
        from ..jobs.runner import ActionContext

        return ActionContext(self.run, None, deadline)

    def master_shell(self, deadline: Deadline) -> ShellSession:
        return self.driver.master_shell(self.context(deadline))

    def test_shell(self, deadline: Deadline) -> ShellSession:
        return self.driver.test_shell(self.context(deadline))

    def record(self, report: pytest.TestReport, name: str) -> None:
        """A test that used this board becomes a test case of the module's run in the bundle."""
        from ..results.model import CaseResult

        result = {"passed": "pass", "failed": "fail", "skipped": "skip"}.get(report.outcome, "unknown")
        message = "" if report.passed else str(getattr(report, "longreprtext", "") or "")[-2000:]
        self.test_run.cases.append(CaseResult(name, result, message=message, duration=report.duration))
        if not self._recorded:
            self._recorded = True
            self.results.add_test_run(self.test_run)


def _job_for(request: pytest.FixtureRequest, lava: LavaSession) -> Any:
    """The job a module's plain tests run as: its name, board request and timeout (no actions)."""
    from ..jobs.job import Job

    marker = request.node.get_closest_marker("lava_board")
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker else {}
    target = lava.options.device_override or kwargs.get("target")
    device_type = None if target else kwargs.get("device_type")
    if not target and not device_type:
        raise pytest.UsageError(f"{request.node.nodeid}: lava_target needs a board: "
                                "@pytest.mark.lava_board(device_type=...) or (target=...), or --lava-device")
    path = Path(str(request.node.path))
    return Job(file=path, timeout=float(kwargs.get("timeout", DEFAULT_TIMEOUT)), actions=[],
               job_name=path.stem, target=target, device_type=device_type, tags=list(kwargs.get("tags", [])))


@pytest.fixture(scope="session")
def lava_session(pytestconfig: pytest.Config) -> LavaSession:
    """The plugin's per-process state: options, device directory, board pool, running jobs."""
    from .session import LavaSession, options_from

    lava = pytestconfig.stash.get(SESSION_KEY, None)
    if lava is None:  # plain tests without --lava-job
        lava = LavaSession(pytestconfig, options_from(pytestconfig))
        pytestconfig.stash[SESSION_KEY] = lava
    return lava


@pytest.fixture(scope="session")
def lava_devices(lava_session: LavaSession) -> DeviceSet:
    """The lab's devices (``--lava-devices``, ini ``lava_devices``)."""
    return lava_session.devices


@pytest.fixture(scope="module")
def lava_target(request: pytest.FixtureRequest, lava_session: LavaSession) -> Iterator[LavaTarget]:
    """A board leased for this module's tests (``@pytest.mark.lava_board(device_type=, target=,
    tags=, timeout=)`` or ``--lava-device``); powered off, its results written, released at the
    module's end."""
    from ..jobs.plan import Plan

    job = _job_for(request, lava_session)
    boards = lava_session.devices.select(target=job.target, device_type=job.device_type, job_file=str(job.file))
    run = lava_session.start_run(Plan(job, boards, job.target))
    try:
        if run.fatal is not None:
            raise run.fatal
        yield LavaTarget(run, test_id=job.name)
    finally:
        run.finish()


@pytest.fixture
def lava_deadline(request: pytest.FixtureRequest, lava_target: LavaTarget) -> Deadline:
    """This test's deadline: ``@pytest.mark.lava_timeout(seconds)`` (default: what is left of the
    module's), a child of the board's, so no wait outlives either."""
    marker = request.node.get_closest_marker("lava_timeout")
    seconds = float(marker.args[0]) if marker and marker.args else None
    return lava_target.deadline.child(seconds, request.node.name)


@pytest.fixture
def master_shell(lava_target: LavaTarget, lava_deadline: Deadline) -> ShellSession:
    """A shell on the board's master image (booted first if it is not up)."""
    return lava_target.master_shell(lava_deadline)


@pytest.fixture
def test_shell(lava_target: LavaTarget, lava_deadline: Deadline) -> ShellSession:
    """A shell on the board's test image (booted first if it is not up)."""
    return lava_target.test_shell(lava_deadline)


@pytest.fixture
def lava_console(lava_target: LavaTarget) -> Console:
    """The board's console: ``expect``/``send`` for work below a shell (bootloader, login)."""
    return lava_target.console


@pytest.fixture(scope="module")
def lava_results(lava_target: LavaTarget) -> JobResults:
    """The results the module's tests are recorded in (written as the board's bundle at the end)."""
    return lava_target.results


@pytest.fixture(scope="module")
def android_board(request: pytest.FixtureRequest, lava_session: LavaSession, lava_target: LavaTarget) -> LavaTarget:
    """The module's board booted into Android and connected over adb: deployed first from the
    module's ``@pytest.mark.lava_android(boot=..., system=..., data=...)`` (the parameters of
    ``deploy_linaro_android_image``, plus ``options`` for the boot), else whatever Android the
    board's partitions already hold. The adb server is stopped with the board at the module's end."""
    marker = request.node.get_closest_marker("lava_android")
    params: dict[str, Any] = dict(marker.kwargs) if marker else {}
    options = params.pop("options", None) or []
    _check_android_marker(request, lava_session, params, options)
    ctx = lava_target.context(lava_target.deadline.child(None, "android_board"))
    if params:
        from ..actions.android import deploy_linaro_android_image

        deploy_linaro_android_image(ctx, params)
    lava_target.driver.boot_android(ctx, options)
    return lava_target


def _check_android_marker(request: pytest.FixtureRequest, lava: LavaSession, params: dict[str, Any],
                          options: Any) -> None:
    """The marker's keywords are deploy_linaro_android_image's parameters (checked like a job's,
    its URLs' passwords masked) plus ``options``, a list of boot options."""
    from ..actions import registry
    from ..core.errors import ProblemList

    where = f"{request.node.nodeid}: @pytest.mark.lava_android"
    problems = ProblemList(str(request.node.path))
    if params:
        registry()["deploy_linaro_android_image"].check(params, problems, "lava_android")
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        problems.add("lava_android.options", "must be a list of strings (name=value boot options)")
    if problems:
        lava.masker.add_url_passwords(params)
        reasons = "; ".join(f"{p.path}: {p.reason}" for p in problems.problems)
        pytest.fail(lava.masker.mask(f"{where}: {reasons}"), pytrace=False)  # the message, no traceback
    lava.masker.add_url_passwords(params)


@pytest.fixture
def adb_device(android_board: LavaTarget, lava_deadline: Deadline) -> AdbDevice:
    """The booted Android board's adb device (``shell``, ``push``, ``pull``, ``getprop``, with this
    test's deadline); Android is rebooted or adb reconnected first if it is not answering."""
    return android_board.driver.android(android_board.context(lava_deadline))
