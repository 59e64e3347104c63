"""pytest wiring only: options, collection of job files, xdist scheduling, reports, session end.

The logic lives in ``jobs/`` (model, plan, one job's run), ``session.py`` (per-process state),
``items.py`` (collection) and the action modules. Each hook imports what it needs when it has a
job to work on: every pytest run of an environment with the plugin installed loads this module,
and one without ``--lava-job`` should not pay for the job machinery (~70 ms here).
"""

from __future__ import annotations

import atexit
import gc
import os
import signal
import sys
import threading
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .keys import SESSION_KEY

if TYPE_CHECKING:
    from .claims import Claims
    from .session import LavaSession  # noqa: F401 (the type of _CHECKED, named as a string)

_LIVE_FD: int | None = None


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(trylast=True)
def pytest_lava_board_type(name: str) -> object:
    """The built-in board types and those installed with an entry point (conftest.py hooks first)."""
    from ..boards import known_board_type

    return known_board_type(name)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lava", "pytest-lava: run LAVA jobs on boards")
    group.addoption("--lava-job", action="append", default=[], metavar="FILE",
                    help="a LAVA job file (JSON or YAML) to run; repeatable")
    group.addoption("--lava-device", metavar="NAME", default=None,
                    help="run the jobs on this board, whatever their target/device_type")
    group.addoption("--lava-devices", metavar="DIR", default=None,
                    help="device directory (YAML, or the old dispatcher's INI layout); default: ./devices")
    group.addoption("--lava-results", metavar="DIR", default=None,
                    help="results directory (bundles, console logs, spool); default: ./lava-results")
    group.addoption("--lava-validate", action="store_true", default=False,
                    help="validate the jobs, print each plan (actions, timeouts, board) and exit")
    group.addoption("--lava-console", action="store_true", default=False,
                    help="stream the boards' console lines live, prefixed with the board name")
    group.addoption("--lava-submit", metavar="URL", default=None,
                    help="submit every job's bundle to this server instead of the job's own")
    group.addoption("--lava-token", metavar="TOKEN", default=None,
                    help="auth token for submitting (or set LAVA_TOKEN); masked everywhere")
    group.addoption("--lava-state", metavar="DIR", default=None,
                    help="the lab's state: board leases and health (or $PYTEST_LAVA_STATE); shared by every "
                         "run on the same boards; default: per device directory under $XDG_STATE_HOME")
    group.addoption("--lava-pool", metavar="URL", default=None,
                    help="where boards are leased: 'local' (default: flock in the state directory) or "
                         "postgresql://user@host/db, shared by dispatchers on several hosts (or $PYTEST_LAVA_POOL)")
    parser.addini("lava_devices", "default device directory", default="devices")
    parser.addini("lava_pool", "the board pool: 'local' or a PostgreSQL URL", default="")
    parser.addini("lava_state", "the lab's state directory (leases, health)", default="")
    parser.addini("lava_results", "default results directory", default="lava-results")


@pytest.hookimpl(tryfirst=True, wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser,
                                  args: list[str]) -> Generator[None, None, None]:
    # keep the real stderr before output capturing replaces fd 2: --lava-console writes there
    global _LIVE_FD
    if _LIVE_FD is None:
        try:
            _LIVE_FD = os.dup(2)
        except OSError:
            _LIVE_FD = None
    return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """Validate every job before the session starts: all problems at once, exit status 4."""
    if not config.getoption("lava_job") and not config.getoption("lava_validate"):
        return None
    if hasattr(config, "workerinput"):  # an xdist worker: its controller has checked the same jobs
        return None
    from ..core.errors import InputError
    from .session import LavaSession, options_from

    _add_hook_actions(config)
    lava = LavaSession(config, options_from(config))
    try:
        plans, problems = lava.validate_all()
    except InputError as exc:  # the device directory itself is broken
        plans, problems = [], exc.problems
    out = sys.stdout
    config.stash[_CHECKED] = lava  # the session's own: its devices and jobs are loaded already
    if problems:
        out.write(f"pytest-lava: {len(problems)} problem(s) found:\n")
        for problem in problems:
            out.write(f"  {lava.masker.mask(str(problem))}\n")
        out.flush()
        return int(pytest.ExitCode.USAGE_ERROR)
    if config.getoption("lava_validate"):
        for plan in plans:
            out.write(plan + "\n\n")
        out.write(f"pytest-lava: {len(plans)} job(s) valid\n")
        out.flush()
        return int(pytest.ExitCode.OK)
    return None


def _add_hook_actions(config: pytest.Config) -> None:
    """The actions conftest.py files and plugins add (``pytest_lava_actions``), once per config."""
    if config.stash.get(_ACTIONS_ADDED, False):
        return
    config.stash[_ACTIONS_ADDED] = True
    from ..actions import add_actions

    for specs in config.hook.pytest_lava_actions(config=config):
        if specs:
            add_actions(specs, "a pytest_lava_actions hook")


_ACTIONS_ADDED = pytest.StashKey[bool]()
_CHECKED = pytest.StashKey["LavaSession"]()  # the pre-flight check's session, taken over by pytest_configure


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lava: a result of a LAVA job")
    config.addinivalue_line("markers", "lava_board(device_type=None, target=None, tags=(), timeout=3600): the board "
                                       "the module's lava_target fixture leases")
    config.addinivalue_line("markers", "lava_timeout(seconds): the deadline of one test using a LAVA board")
    config.addinivalue_line("markers", "lava_android(boot=, system=, data=, pkg=, rootfstype=, options=): the "
                                       "Android image the module's android_board fixture deploys and boots")
    if not config.pluginmanager.has_plugin("lava-fixtures"):
        from . import fixtures

        config.pluginmanager.register(fixtures, "lava-fixtures")
    _add_hook_actions(config)
    if not config.getoption("lava_job"):
        return
    from .reporting import ExtraReports
    from .session import JOB_SUFFIXES, LavaSession, options_from

    config.pluginmanager.register(ExtraReports(config), "lava-extra-reports")
    lava = config.stash.get(_CHECKED, None) or LavaSession(config, options_from(config))
    lava.live_fd = _LIVE_FD
    options = lava.options
    config.stash[SESSION_KEY] = lava
    job_args = [str(j) for j in options.jobs]
    others = [a for a in config.args if Path(a).suffix not in JOB_SUFFIXES]
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        others = []  # no positional arguments: run the jobs, not the testpaths
    config.args = others + job_args
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a CI cancel, the scheduler) ends the session like Ctrl-C, so results are written
        signal.signal(signal.SIGTERM, _sigterm)
    _quick_exit()


def _quick_exit() -> None:
    """At interpreter exit (atexit: after every hook and thread; never in an inline pytester run),
    freeze the heap: the interpreter's final garbage collection then skips the ~10^5 objects of
    pytest, the plugins and the session, which took ~0.1 s of every run (a job's end to the exit;
    each xdist worker's, which the controller waits for). Objects are still freed as modules are
    cleared; only a cycle alive at exit is left to the operating system."""
    global _EXIT_FREEZE
    if not _EXIT_FREEZE:
        _EXIT_FREEZE = True
        atexit.register(gc.freeze)


_EXIT_FREEZE = False


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt("SIGTERM")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    lava = parent.config.stash.get(SESSION_KEY, None)
    if lava is not None and file_path.resolve() in lava.options.jobs:
        from .items import collector_for

        return collector_for(parent, file_path, **_nodeid_outside_rootdir(parent.config, file_path))
    return None


def _nodeid_outside_rootdir(config: pytest.Config, path: Path) -> dict[str, str]:
    """A job file outside the rootdir gets a node id that names it (``../jobs/x.yaml``): pytest would
    give every such file the same empty one, and jobs must stay apart (xdist, JUnit, -k). Once per
    file: pytest collects a directory again for each file argument in it (N job files, N² calls)."""
    known = config.stash.setdefault(_NODEIDS, {})
    if path not in known:
        resolved, root = path.resolve(), config.rootpath.resolve()
        known[path] = {} if resolved.is_relative_to(root) else {
            "nodeid": Path(os.path.relpath(resolved, root)).as_posix()}
    return known[path]


_NODEIDS = pytest.StashKey[dict[Path, dict[str, str]]]()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: object) -> None:
    """xdist, on the controller: workers on other hosts ship their jobs' results back; workers on
    this host learn where the claims are (claims.py)."""
    from .claims import Gate, for_node
    from .shipping import mark_node

    mark_node(node)
    config: pytest.Config = node.config  # type: ignore[attr-defined]
    claims = _claims(config)
    if claims is not None and for_node(node, claims):
        gate = config.stash.setdefault(_GATE, Gate.for_first(node, claims))
        gate.hold(node)


def _claims(config: pytest.Config) -> Claims | None:
    """The session's claims directory (on the xdist controller of a session with jobs), made once."""
    if config.stash.get(SESSION_KEY, None) is None or hasattr(config, "workerinput"):
        return None
    claims = config.stash.get(_CLAIMS, None)
    if claims is None:
        from .claims import Claims

        claims = config.stash[_CLAIMS] = Claims.create()
    return claims


_CLAIMS = pytest.StashKey["Claims"]()
_GATE = pytest.StashKey["Gate"]()  # holds the workers after the first that may claim (claims.Gate)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """An xdist worker, before its controller hears of its collection: claim and start jobs."""
    lava = session.config.stash.get(SESSION_KEY, None)
    if lava is not None and hasattr(session.config, "workerinput"):
        from .claims import claim_and_start

        claim_and_start(session, lava)


def pytest_unconfigure(config: pytest.Config) -> None:
    claims = config.stash.get(_CLAIMS, None)
    if claims is not None:
        claims.remove()
    if config.stash.get(SESSION_KEY, None) is not None and _process_ends_with(config):
        # freeze the heap before pytest's own last garbage collection, which would walk all of it
        # (~0.05 s in each process: a worker's exit is waited for by its controller, the
        # controller's by the user); see _quick_exit for the rest of the exit
        gc.freeze()


def _process_ends_with(config: pytest.Config) -> bool:
    """This session is the whole process: an xdist worker, or the ``pytest`` command itself (its
    arguments are the command line's, no plugin objects passed in) — never pytest.main() called
    inside a longer-lived program, such as pytester's inline runs."""
    if hasattr(config, "workerinput"):
        return True
    params = config.invocation_params
    return not params.plugins and tuple(params.args) == tuple(sys.argv[1:])


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """Under xdist, all items of one job run on one worker, in order (see plugin/scheduling.py)."""
    lava = config.stash.get(SESSION_KEY, None)
    if lava is None:
        return None
    from ..core.errors import InputError
    from .scheduling import make_scheduler
    from .units import job_hosts

    def hosts_of_job(job: object) -> frozenset[str] | None:
        try:
            return job_hosts(lava.plan(job).boards)  # type: ignore[arg-type]
        except InputError:
            return None  # reported by the workers' collection

    return make_scheduler(config, lava.jobs_by_file(), log, hosts_of_job, claims=_claims(config))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    report = yield
    items = sys.modules.get(f"{__package__}.items")  # no job item exists before it is imported
    if items is not None and isinstance(item, items.JobItem):
        from .reporting import attach, step_report
        from .shipping import RESULTS_ATTR, pack, ships

        if call.excinfo is not None and call.when != "call":
            # setup errors too get the short lab-engineer view (kind, message, console tail, log path)
            report.longrepr = item.repr_failure(call.excinfo)  # type: ignore[attr-defined]
        if call.when == "call":
            attach(item.config, report, item.case_reports())  # type: ignore[arg-type]
        elif call.when == "teardown":
            # the job ended in this item's teardown (its module's last): the submit steps' reports
            module = item.parent
            steps, module.pending_steps = module.pending_steps, []  # type: ignore[union-attr]
            attach(item.config, report, [r for name, ok, message in steps  # type: ignore[arg-type]
                                         for r in step_report(item, name, ok, message)])
            if ships(item.config):  # a worker on another host: the job's results go with the report
                run = item.config.stash[SESSION_KEY].runs.get(item.job.id)  # type: ignore[attr-defined]
                if run is not None and run.finished and run.results_dir.is_dir():
                    setattr(report, RESULTS_ATTR, pack(run.results_dir, run.options.results_dir))
    elif call.when == "call" or (call.when == "setup" and call.excinfo is not None):
        # the reporter: a plain test that used a LAVA board is a test case in that board's bundle
        target = getattr(item, "funcargs", {}).get("lava_target")
        if target is not None:
            target.record(report, item.name)
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    lava = session.config.stash.get(SESSION_KEY, None)
    if lava is not None:
        lava.finish_all(interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)
        if any(not run.submit_ok for run in lava.runs.values()) and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    lava = config.stash.get(SESSION_KEY, None)
    if lava is None:
        return None
    from ..devices.pgdb import mask_url

    return [f"lava: {len(lava.options.jobs)} job(s), devices {lava.options.devices_dir}, "
            f"results {lava.options.results_dir}, state {lava.state_dir}"
            + (f", pool {mask_url(lava.options.pool)}" if lava.options.pool else "")]
