"""``lava_android_test_install``, ``lava_android_test_run`` and ``lava_android_test_run_custom``:
lava-android-test's model on the host (``android/``), driving the booted Android board over adb.

Job-scoped state: ``ctx.run.slot(AndroidTestState)`` (the tests installed on the board by this job).
The board driver gives the adb device (``ctx.driver.android(ctx)``: Android is booted first when it
is not up, like the old ``android_tester_session``).

Each parsed case is its own pytest result as it arrives (``ctx.report``) and each run a test run of
the bundle (``test_id`` the test's, the run's output as ``stdout.log``, the definition as
``testdef.json``, ``getprop`` as ``propoutput.log``). A run that does not end within the action's
timeout: Ctrl-C on the serial console, then Android is rebooted (the 2013 dispatcher's way), and
the action fails with the cases it had.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..android import runner
from ..android.library import library_test
from ..android.model import AndroidTest, custom_test
from ..boards.driver import BoardState, job_error
from ..core.deadline import Deadline
from ..core.errors import InfrastructureError
from ..results.model import Attachment, TestRun
from .deploy import _cache
from .implementations import implements
from .lava_test import TestRunFailed, _fail, _report

if TYPE_CHECKING:
    from ..android.adb import AdbDevice
    from ..jobs.runner import ActionContext

RECOVER_BOOT = 900.0  # seconds for the reboot after a hung test (capped by the job's deadline)


@dataclass
class AndroidTestState:
    installed: dict[str, AndroidTest] = field(default_factory=dict)


def _library(ctx: ActionContext, name: str, field_name: str) -> AndroidTest:
    test = library_test(name)
    if test is None:
        from ..android.library import known_tests

        raise job_error(ctx, f"no lava-android-test test {name!r} (built-in: {', '.join(known_tests())})",
                        field_name)
    return test


def _install(ctx: ActionContext, device: AdbDevice, test: AndroidTest) -> None:
    with tempfile.TemporaryDirectory(prefix="lava-android-", dir=ctx.run.results_dir) as tmp:
        runner.install(test, device, ctx.deadline, Path(tmp))
    ctx.run.slot(AndroidTestState).installed[test.test_id] = test
    ctx.log(f"lava-android-test: {test.test_id} installed in {test.install_dir} on {device.serial}")


@implements("lava_android_test_install")
def lava_android_test_install(ctx: ActionContext, params: dict[str, Any]) -> None:
    tests = [_library(ctx, name, f"parameters.tests[{i}]") for i, name in enumerate(params["tests"])]
    device = ctx.driver.android(ctx)
    for test in tests:
        _install(ctx, device, test)
    ctx.message = f"installed {', '.join(t.test_id for t in tests)}"


@implements("lava_android_test_run")
def lava_android_test_run(ctx: ActionContext, params: dict[str, Any]) -> None:
    name = params["test_name"]
    test = ctx.run.slot(AndroidTestState).installed.get(name)
    device = ctx.driver.android(ctx)
    if test is None:
        test = _library(ctx, name, "parameters.test_name")
        ctx.log(f"lava_android_test_run: {name} was not installed by lava_android_test_install; installing it now")
        _install(ctx, device, test)
    _run(ctx, device, test, params.get("option"))


@implements("lava_android_test_run_custom")
def lava_android_test_run_custom(ctx: ActionContext, params: dict[str, Any]) -> None:
    test = custom_test(params.get("commands"), params.get("command_file"), params.get("parser"))
    if params.get("command_file"):
        node = ctx.deadline.child(None, "download command_file")
        local = _cache(ctx).fetch(params["command_file"], node)
        test.host_files = {name: str(local) for name in test.host_files}
    device = ctx.driver.android(ctx)
    if test.files or test.host_files:
        _install(ctx, device, test)
    _run(ctx, device, test, None)


def _run(ctx: ActionContext, device: AdbDevice, test: AndroidTest, options: str | None) -> None:
    live: set[int] = set()

    def report(cases: list) -> None:  # type: ignore[type-arg]
        live.update(id(c) for c in cases)
        _report(ctx, cases)

    outcome = runner.run(test, device, ctx.deadline, options, report)
    definition = test.definition()
    attachments = [Attachment("testdef.json", definition.text.encode(), "application/json"),
                   Attachment("stdout.log", "\n".join(outcome.log).encode())]
    attributes = {**definition.attributes(), "android.serial": device.serial}
    if outcome.timed_out is None:
        try:
            props = device.shell("getprop", ctx.deadline.child(30, "getprop"))
            attachments.append(Attachment("propoutput.log", props.output.encode()))
        except InfrastructureError as exc:
            ctx.log(f"getprop for the bundle failed: {exc.message}")
    ctx.results.add_test_run(TestRun(test_id=test.test_id, cases=list(outcome.cases), started=outcome.started,
                                     attributes=attributes, attachments=attachments))
    _report(ctx, [c for c in outcome.cases if id(c) not in live])  # what the end of the run added
    if outcome.lost is not None:  # the board or adb failed, not the test: the cases so far are kept
        raise outcome.lost
    if outcome.timed_out is not None:
        _recover(ctx)
        _fail(ctx, TestRunFailed(f"{test.test_id}: the run did not finish before the action timeout "
                                 f"({outcome.timed_out.message}); Android was interrupted and rebooted",
                                 details=outcome.timed_out.details))


def _recover(ctx: ActionContext) -> None:
    """After a hung test: Ctrl-C on the serial console, then reboot Android (best effort: a failed
    reboot leaves the board ``UNKNOWN``, so the next Android action boots it again)."""
    driver = ctx.driver
    driver.interrupt_android(ctx)
    recover = Deadline(RECOVER_BOOT, "reboot Android after a hung test", ctx.run.deadline)
    from ..jobs.runner import ActionContext as Context

    try:
        driver.boot_android(Context(ctx.run, ctx.action, recover), driver.android_boot_options)
        ctx.log(f"{ctx.device.name}: Android rebooted after the hung test")
    except InfrastructureError as exc:
        driver.state = BoardState.UNKNOWN
        ctx.log(f"{ctx.device.name}: rebooting Android after the hung test failed: {exc.message}")
