"""The plugin's per-process state: options, the device set, the pool, the running jobs."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import InputError, Problem
from ..core.secrets import Masker
from ..devices.directory import DeviceSet, load_devices
from ..jobs.job import Job, load_job
from ..jobs.plan import Plan
from ..jobs.runner import JobRun, RunOptions

if TYPE_CHECKING:
    import pytest

    from ..devices.leasing import PoolBackend
    from ..jobs.background import BackgroundRun
    from ..jobs.job import ActionDef


@dataclass
class LavaOptions:
    jobs: list[Path]
    devices_dir: Path
    results_dir: Path
    device_override: str | None = None
    validate: bool = False
    console: bool = False
    submit: str | None = None
    token: str | None = None
    state_dir: Path | None = None  # leases and health: default keyed by the device directory
    pool: str = ""  # --lava-pool: '' (local flock pool) or a PostgreSQL URL


@dataclass
class LavaSession:
    config: pytest.Config
    options: LavaOptions
    masker: Masker = field(default_factory=Masker)
    runs: dict[str, JobRun] = field(default_factory=dict)
    background: dict[str, BackgroundRun] = field(default_factory=dict)  # jobs on threads of their own
    live_fd: int | None = None
    _devices: DeviceSet | None = None
    _devices_error: InputError | None = None
    _pool: PoolBackend | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loaded: dict[Path, list[Job]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.masker.add(self.options.token)
        self.masker.add(os.environ.get("LAVA_TOKEN"))  # the submit sinks' last-resort token

    # -- inputs -----------------------------------------------------------------------------

    @property
    def devices(self) -> DeviceSet:
        if self._devices_error is not None:
            raise self._devices_error
        if self._devices is None:
            try:
                self._devices = load_devices(self.options.devices_dir)
            except InputError as exc:  # report a broken device directory once, not per job
                self._devices_error = exc
                raise
        return self._devices

    def load(self, path: Path) -> list[Job]:
        """Load, validate and resolve a job file into its variants (raises InputError); once per
        file (the pre-flight check of :meth:`validate_all` and the collection share it)."""
        loaded = self._loaded.get(path)
        if loaded is None:
            loaded = self._loaded[path] = [plan.job for plan in self.resolve(load_job(path))]
        return loaded

    def resolve(self, job: Job) -> list[Plan]:
        """The plan of every variant: an unknown target/type is a job error before anything runs.
        Secret parameters (the catalogue marks them) are masked from here on."""
        for action in job.actions:
            for name, param in action.spec.params.items():
                value = action.parameters.get(name)
                if param.secret and isinstance(value, str):
                    self.masker.add(value)
        self.masker.add_url_passwords(job.data)  # passwords written into URLs (http://user:pass@host/)
        return [self.plan(variant) for variant in job.variants()]

    def jobs_by_file(self) -> dict[Path, list[Job]]:
        """Every valid job file's variants (the xdist controller, which collects nothing, needs them)."""
        jobs: dict[Path, list[Job]] = {}
        for path in self.options.jobs:
            try:
                jobs[path] = self.load(path)
            except InputError:
                continue  # reported by the workers' collection
        return jobs

    def plan(self, job: Job) -> Plan:
        return Plan.build(job, self.devices, device_override=self.options.device_override,
                          board_types=self.board_type_hook)

    def board_type_hook(self, name: str) -> object:
        """A device's board type, asked of the ``pytest_lava_board_type`` hook (conftest.py, plugins,
        then the built-in and installed ones)."""
        return self.config.hook.pytest_lava_board_type(name=name, config=self.config)

    def bundle_hook(self, bundle: dict, job: Job) -> None:
        self.config.hook.pytest_lava_bundle(bundle=bundle, job=job, config=self.config)

    def validate_all(self) -> tuple[list[str], list[Problem]]:
        """For --lava-validate and the pre-flight check: every plan, or every problem."""
        plans: list[str] = []
        problems: list[Problem] = []
        if not self.options.jobs:
            problems.append(Problem("--lava-job", "", "no job file given"))
        from ..devices.pools import pool_problem

        pool_error = pool_problem(self.options.pool)
        if pool_error:
            problems.append(Problem("--lava-pool", "", pool_error))
        device_problems: list[Problem] = []
        try:
            _ = self.devices
        except InputError as exc:
            device_problems = exc.problems
        for path in self.options.jobs:
            try:
                job = load_job(path)  # job problems are reported even when the devices are broken
                if device_problems:
                    continue
                resolved = self.resolve(job)
                self._loaded[path] = [plan.job for plan in resolved]
                plans.extend(self.masker.mask(plan.describe()) for plan in resolved)
            except InputError as exc:
                problems.extend(exc.problems)
        return plans, device_problems + problems

    # -- running ----------------------------------------------------------------------------

    @property
    def pool(self) -> PoolBackend:
        if self._pool is None:
            from ..devices.pools import open_pool

            self._pool = open_pool(self.devices.devices, self.options.pool, self.state_dir)
        return self._pool

    @property
    def state_dir(self) -> Path:
        return self.options.state_dir or default_state_dir(self.options.devices_dir)

    def run_for(self, job: Job) -> JobRun:
        with self._lock:
            run = self.runs.get(job.id)
            if run is None:
                run = JobRun(self.plan(job), self.pool, self._run_options())
                self.runs[job.id] = run
            return run

    def start_background(self, job: Job, steps: list[ActionDef],
                         on_finished: Callable[[], None] | None = None) -> BackgroundRun:
        """Run ``job``'s ``steps`` on a thread of its own, ahead of its items (plugin/claims.py)."""
        from ..jobs.background import BackgroundRun

        background = BackgroundRun(self.run_for(job), steps, on_finished=on_finished)
        self.background[job.id] = background
        background.start()
        return background

    def start_run(self, plan: Plan) -> JobRun:
        """A started run of a plan made elsewhere (the ``lava_target`` fixture's actionless job):
        its board leased, unless ``run.fatal`` says why not."""
        run = JobRun(plan, self.pool, self._run_options())
        with self._lock:
            self.runs[f"{plan.job.id}@{id(run)}"] = run
        run.start()
        return run

    def _run_options(self) -> RunOptions:
        return RunOptions(
            results_dir=self.options.results_dir, state_dir=self.state_dir,
            rootdir=self.options.devices_dir.resolve().parent, live=self._live if self.options.console
            else None, submit_override=self.options.submit, token=self.options.token,
            masker=self.masker, echo=self._echo, announce=self._announce,
            board_types=self.board_type_hook, amend_bundle=self.bundle_hook)

    def finish_job(self, job: Job) -> list[tuple[str, bool, str]]:
        """Finish the job's run; its submit steps as (name, ok, message) for the reports."""
        run = self.runs.get(job.id)
        if run is None:
            return []
        background = self.background.pop(job.id, None)
        if background is not None:
            background.join()  # its thread finishes the job as soon as its last action is done
        elif run.finished:
            return []
        run.finish()
        message = (f"submitting the results failed; the bundle is kept in {run.options.results_dir}/spool"
                   f" (send it later: python -m pytest_lava resubmit {run.options.results_dir})")
        suffix = f"[{job.variant}]" if job.variant else ""
        return [(f"{action.command if action else 'submit_results'}{suffix}", run.submit_ok, message)
                for action in job.submit_actions() or ([None] if self.options.submit else [])]

    def finish_all(self, *, interrupted: bool) -> None:
        from ..jobs.background import ABORT_WAIT

        cut = set()  # jobs whose thread is still going (-x, a crash): their results are incomplete
        for job_id, background in self.background.items():
            if not background.finished.is_set():
                cut.add(job_id)
                background.stop()  # no further action; the running one aborted
        for job_id in cut:  # the thread finishes the job (interrupted) once its action gives up
            self.background[job_id].finished.wait(timeout=ABORT_WAIT)
        for run in list(self.runs.values()):
            try:
                run.finish(interrupted=interrupted or run.job.id in cut)
            except Exception as exc:  # one job's failure must not lose the others' results
                self._echo(f"pytest-lava: finishing job {run.job.id} failed: {exc}")

    # -- output -----------------------------------------------------------------------------

    def note(self, text: str) -> None:
        """A progress note (shown with --lava-console)."""
        self._echo(text)

    def _echo(self, text: str) -> None:
        if self.options.console:
            self._write(f"[lava] {self.masker.mask(text)}\n")

    def _announce(self, text: str) -> None:
        self._write(f"{self.masker.mask(text)}\n")

    def _live(self, board: str, line: str) -> None:
        self._write(f"[{board}] {self.masker.mask(line)}\n")

    def _write(self, text: str) -> None:
        fd = self.live_fd if self.live_fd is not None else 2
        try:
            os.write(fd, text.encode("utf-8", "replace"))
        except OSError:
            pass



def default_state_dir(devices_dir: Path) -> Path:
    """Where leases and board health live unless --lava-state says: keyed by the lab (its device
    directory), never by the results directory, so every run on the same boards sees the same
    leases whatever --lava-results it uses. ``$XDG_STATE_HOME/pytest-lava/<dir>-<hash>``."""
    import hashlib

    devices_dir = devices_dir.resolve()
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    digest = hashlib.sha256(str(devices_dir).encode()).hexdigest()[:12]
    return base / "pytest-lava" / f"{devices_dir.name or 'devices'}-{digest}"


JOB_SUFFIXES = (".json", ".yaml", ".yml")


def options_from(config: pytest.Config) -> LavaOptions:
    """The plugin's options from pytest's command line and ini file (paths from the invocation dir)."""
    invocation = Path(config.invocation_params.dir)
    jobs = [invocation / j for j in config.getoption("lava_job")]
    if jobs:  # `--lava-job jobs/*.yaml`: the shell turns the glob into positional arguments
        jobs += [invocation / a for a in config.args if Path(a).suffix in JOB_SUFFIXES
                 and (invocation / a) not in jobs]
    devices = config.getoption("lava_devices") or config.getini("lava_devices")
    results = config.getoption("lava_results") or config.getini("lava_results")
    state = config.getoption("lava_state") or os.environ.get("PYTEST_LAVA_STATE") or config.getini("lava_state")
    pool = config.getoption("lava_pool") or os.environ.get("PYTEST_LAVA_POOL") or config.getini("lava_pool")
    return LavaOptions(
        jobs=[j.resolve() for j in jobs], devices_dir=(invocation / devices).resolve(),
        results_dir=(invocation / results).resolve(), device_override=config.getoption("lava_device"),
        validate=config.getoption("lava_validate"), console=config.getoption("lava_console"),
        submit=config.getoption("lava_submit"),
        token=config.getoption("lava_token") or None,
        state_dir=(invocation / state).resolve() if state else None, pool=str(pool or "").strip())
