"""The one result model of a job, and the results directory it is written to.

Every action and test item reports here; `JobResults.finish` builds the bundle (with the special
``lava`` test run), validates it, and writes the results directory:

    <results_dir>/bundle.json        the merged Dashboard Bundle Format 1.3 bundle (validated)
    <results_dir>/summary.txt        a short human summary
    <results_dir>/serial.log         the console log (masked), if it was not there already
    <results_dir>/device-bundles/    every bundle collected from the device or host, as received
                                     (masked), written *before* `add_device_bundle` returns, so
                                     the caller may then delete the original on the device

`finish` is idempotent and safe from a ``finally``, an ``atexit`` hook or a signal handler path:
it never mutates the model (``gather_results``/``job_complete`` are added to a copy), writes
every file atomically (temporary file + ``os.replace``), and the first call that completes wins —
later calls return the same path without rewriting it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..core.errors import ConfigurationError, LavaBug
from ..core.secrets import Masker
from . import bundle as B

LAVA_TEST_ID = "lava"
SERIAL_LOG = "serial.log"
MAX_SERIAL_LOG_BYTES = 32 * 1024 * 1024  # larger logs are attached as their last 32 MiB
_RESULT_WORDS = {"passed": "pass", "failed": "fail", "error": "fail", "skipped": "skip", "xfail": "skip"}


@dataclass
class Attachment:
    pathname: str
    content: bytes | None = None
    mime_type: str = "text/plain"
    public_url: str | None = None

    def to_dict(self, masker: Masker) -> dict:
        out: dict = {"pathname": self.pathname, "mime_type": self.mime_type}
        if self.content is not None:
            out["content"] = B.encode(masker.mask_bytes(self.content))
        if self.public_url:
            out["public_url"] = self.public_url
        return out


@dataclass
class CaseResult:
    test_case_id: str
    result: str  # pass | fail | skip | unknown
    message: str = ""
    measurement: float | None = None
    units: str | None = None
    duration: float | None = None  # seconds
    timestamp: datetime | None = None
    log_excerpt: str = ""
    attributes: dict[str, str] = field(default_factory=dict)

    def normalized_result(self) -> str:
        word = str(self.result).strip().lower()
        word = _RESULT_WORDS.get(word, word)
        return word if word in B.RESULTS else "unknown"

    def to_dict(self) -> tuple[dict, Attachment | None]:
        """The TestResult object, and the attachment holding its log excerpt (1.3 has no
        per-result attachments; the excerpt becomes a run attachment named in ``log_filename``)."""
        out: dict = {"test_case_id": self.test_case_id, "result": self.normalized_result()}
        if self.message:
            out["message"] = self.message
        attrs = {str(k): str(v) for k, v in self.attributes.items()}
        if self.normalized_result() != str(self.result).strip().lower():
            attrs.setdefault("original_result", str(self.result))
        if self.measurement is not None:
            out["measurement"] = float(self.measurement)
            if self.units:
                out["units"] = self.units
        if self.timestamp is not None:
            out["timestamp"] = B.format_date(self.timestamp)
        if self.duration is not None:
            out["duration"] = B.format_duration(self.duration)
        attachment = None
        if self.log_excerpt:
            name = re.sub(r"[^A-Za-z0-9._()+-]+", "_", self.test_case_id).strip("_") or "case"
            attachment = Attachment(f"logs/{name}.log", self.log_excerpt.encode("utf-8", "replace"))
            out["log_filename"] = attachment.pathname
        if attrs:
            out["attributes"] = attrs
        return out, attachment


@dataclass
class TestRun:
    __test__ = False  # not a pytest test class

    test_id: str
    cases: list[CaseResult] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    attachments: list[Attachment] = field(default_factory=list)
    testdef_metadata: dict | None = None  # folded into attributes: 1.3 has no such field
    tags: list[str] = field(default_factory=list)
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_dict(self, masker: Masker) -> dict:
        results, attachments = [], list(self.attachments)
        for case in self.cases:
            result, attachment = case.to_dict()
            results.append(result)
            if attachment is not None:
                attachments.append(attachment)
        run: dict = {
            "test_id": self.test_id,
            "analyzer_assigned_uuid": self.uuid,
            "analyzer_assigned_date": B.format_date(self.started),
            "time_check_performed": False,
            "test_results": results,
            "attributes": {str(k): str(v) for k, v in self.attributes.items()},
        }
        if self.tags:
            run["tags"] = [str(t) for t in self.tags]
        if attachments:
            run["attachments"] = [a.to_dict(masker) for a in attachments]
        if self.testdef_metadata:
            run["testdef_metadata"] = dict(self.testdef_metadata)
            B.downgrade_run(run)
        return run


def job_results_dir(results_root: Path, job_id: str) -> Path:
    """``<results_root>/<job_id>``, verified to be a directory entry *of* ``results_root``: one
    plain path component that, resolved (links followed), is still inside it. ``job_id`` comes
    from the job file's name (untrusted); :attr:`~pytest_lava.jobs.job.Job.id` makes it safe, this
    checks it again where the path is made."""
    root = Path(results_root)
    if not job_id or job_id in (".", "..") or any(c in job_id for c in ("/", "\\", "\0", os.sep)):
        raise LavaBug(f"unsafe results directory name {job_id!r}")
    path = root / job_id
    real_root = root.resolve()
    real = path.resolve()
    if real.parent != real_root or real.name in ("", ".", ".."):
        raise ConfigurationError.single(str(root), job_id, f"the job's results directory {path} resolves to {real}, "
                                                           "outside the results directory (a link?)")
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _mask_attachment_contents(bundle: dict, masker: Masker) -> None:
    """Mask secrets inside base64 attachment contents (device bundles arrive encoded)."""
    for run in bundle.get("test_runs", []):
        for att in run.get("attachments", []):
            content = att.get("content")
            if not content:
                continue
            try:
                raw = base64.standard_b64decode(content)
            except ValueError:
                continue
            masked = masker.mask_bytes(raw)
            if masked != raw:
                att["content"] = B.encode(masked)


def scrub_dir(directory: Path, masker: Masker, max_bytes: int = 256 * 1024 * 1024) -> list[Path]:
    """Mask secrets in place in every file under ``directory`` (console logs written by other
    modules included); returns the files that were rewritten."""
    changed: list[Path] = []
    if not masker:
        return changed
    for path in sorted(directory.rglob("*")):
        try:
            if not path.is_file() or path.is_symlink() or path.stat().st_size > max_bytes:
                continue
            data = path.read_bytes()
            masked = masker.mask_bytes(data)
            if masked != data:
                _atomic_write(path, masked)
                changed.append(path)
        except OSError:
            continue
    return changed


class JobResults:
    """Collects the results of one job and writes its results directory."""

    def __init__(
        self,
        *,
        job_name: str,
        job_file: str,
        results_dir: Path,
        hostname: str,
        device_type: str | None,
        tags: list[str],
        secrets: Masker | None = None,
    ) -> None:
        self.job_name = job_name
        self.job_file = job_file
        self.results_dir = Path(results_dir)
        self.masker = secrets if secrets is not None else Masker()
        self.tags = list(tags)
        self.started = datetime.now(UTC)
        self.lava_uuid = str(uuid.uuid4())
        self.bundle_path = self.results_dir / "bundle.json"
        self.amend: Callable[[dict], None] | None = None  # set by the runner: the pytest_lava_bundle hook
        self.summary_path = self.results_dir / "summary.txt"
        self._lock = threading.RLock()
        self._actions: list[CaseResult] = []
        self._runs: list[TestRun] = []
        self._device_bundles: list[dict] = []
        self._gather_errors: list[str] = []
        self._metadata: dict[str, str] = {"target.hostname": hostname}
        if device_type:
            self._metadata["target.device_type"] = device_type
        self._serial_log: Path | None = None
        self._files: dict[str, Path] = {}  # attachments of the lava run read when the bundle is built
        self._finished: Path | None = None
        self.results_dir.mkdir(parents=True, exist_ok=True)

    # -- feeding ----------------------------------------------------------------------------

    def add_action(
        self,
        test_case_id: str,
        result: str,
        message: str = "",
        *,
        duration: float | None = None,
        metadata: dict | None = None,
    ) -> None:
        """One entry of the ``lava`` run, in execution order; ``metadata`` goes into the
        attributes of every run (overwriting, like the old dispatcher)."""
        with self._lock:
            self._actions.append(
                CaseResult(test_case_id, result, message, duration=duration, timestamp=datetime.now(UTC))
            )
            for key, value in (metadata or {}).items():
                self._metadata[str(key)] = value if isinstance(value, str) else json.dumps(value)

    def add_test_run(self, run: TestRun) -> None:
        with self._lock:
            self._runs.append(run)

    def add_device_bundle(self, bundle: dict, source: str) -> None:
        """A bundle from the device or the host result dir, any format 1.0 - 1.7.1. Its raw copy
        is on disk when this returns; if it cannot be converted, ``gather_results`` fails with
        the reasons (it is never dropped silently)."""
        with self._lock:
            keep = self.results_dir / "device-bundles"
            keep.mkdir(exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source).name) or "bundle"
            raw = json.dumps(self.masker.mask_obj(bundle), indent=1).encode()
            _atomic_write(keep / f"{len(list(keep.iterdir())):03d}-{name}", raw)
            try:
                self._device_bundles.append(B.to_current(bundle, source))
            except B.BundleError as exc:
                self._gather_errors.append(str(exc))

    def gather_failed(self, message: str) -> None:
        """Record that collecting results failed (``gather_results`` becomes ``fail``)."""
        with self._lock:
            self._gather_errors.append(message)

    def set_serial_log(self, path: Path) -> None:
        with self._lock:
            self._serial_log = Path(path)

    def attach_file(self, pathname: str, path: Path) -> None:
        """Attach a host file (a simulator's ``rtsm.log``, say) to the ``lava`` run: read (its last
        32 MiB, masked) when the bundle is built, so it holds everything written until then."""
        with self._lock:
            self._files[pathname] = Path(path)

    def set_attribute(self, key: str, value: str) -> None:
        with self._lock:
            self._metadata[str(key)] = str(value)

    # -- building ---------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._finished is not None

    def _read_tail(self, path: Path) -> bytes:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            if size > MAX_SERIAL_LOG_BYTES:
                fh.seek(size - MAX_SERIAL_LOG_BYTES)
            return self.masker.mask_bytes(fh.read())

    def _serial_attachment(self) -> Attachment | None:
        path = self._serial_log
        if path is None or not path.exists():
            return None
        data = self._read_tail(path)
        local = self.results_dir / SERIAL_LOG
        if path.resolve() != local.resolve() or data != local.read_bytes():
            _atomic_write(local, data)  # the results dir gets a masked copy
        return Attachment(SERIAL_LOG, data)

    def lava_run(self, *, job_complete: bool, message: str = "") -> TestRun:
        """The ``lava`` test run as it stands (the model is not changed)."""
        with self._lock:
            cases = list(self._actions)
            gather = "\n".join(self._gather_errors)
            cases.append(CaseResult("gather_results", "fail" if gather else "pass", gather))
            cases.append(CaseResult("job_complete", "pass" if job_complete else "fail", message))
            attachment = self._serial_attachment()
            files = [Attachment(name, self._read_tail(path)) for name, path in self._files.items() if path.is_file()]
            return TestRun(
                LAVA_TEST_ID,
                cases,
                attributes={},
                started=self.started,
                attachments=([attachment] if attachment else []) + files,
                tags=self.tags,
                uuid=self.lava_uuid,
            )

    def build(self, *, job_complete: bool, message: str = "") -> dict:
        """The merged, masked and validated bundle (raises `LavaBug` if it does not validate)."""
        with self._lock:
            lava = self.lava_run(job_complete=job_complete, message=message)
            runs = [r.to_dict(self.masker) for r in [*self._runs, lava]]
            merged = B.merge(self._device_bundles, runs, dict(self._metadata))
            if self.amend is not None:  # the pytest_lava_bundle hook: before masking and validation
                self.amend(merged)
            merged = self.masker.mask_obj(merged)
            if self.masker:
                _mask_attachment_contents(merged, self.masker)
        errors = B.validate_bundle(merged, B.VERSION)
        if errors:
            raise LavaBug("the bundle built for this job does not validate", details="\n".join(errors))
        return merged

    def finish(self, *, job_complete: bool, message: str = "") -> Path:
        """Build, validate and write ``bundle.json`` and ``summary.txt``; return the bundle path."""
        if self._finished is not None:
            return self._finished
        bundle = self.build(job_complete=job_complete, message=message)
        data = json.dumps(bundle, indent=1, allow_nan=False, ensure_ascii=False).encode("utf-8")
        _atomic_write(self.bundle_path, data)
        _atomic_write(self.summary_path, self.masker.mask(self.summary(bundle)).encode("utf-8"))
        scrub_dir(self.results_dir, self.masker)
        with self._lock:
            if self._finished is None:
                self._finished = self.bundle_path
        return self.bundle_path

    def summary(self, bundle: dict) -> str:
        lines = [f"job: {self.job_name} ({self.job_file})", f"bundle: {self.bundle_path} ({B.FORMAT})"]
        for run in bundle.get("test_runs", []):
            counts: dict[str, int] = {}
            for res in run["test_results"]:
                counts[res["result"]] = counts.get(res["result"], 0) + 1
            text = ", ".join(f"{n} {word}" for word, n in sorted(counts.items())) or "no results"
            lines.append(f"run {run['test_id']}: {text}")
            for res in run["test_results"]:
                if res["result"] == "fail":
                    first = (res.get("message") or "").strip().splitlines()[:1]
                    lines.append(f"  FAIL {res.get('test_case_id', '?')}: {first[0] if first else ''}")
        return "\n".join(lines) + "\n"

    def note(self, text: str) -> None:
        """Append a line (e.g. the submit outcome) to ``summary.txt``."""
        with self._lock, open(self.summary_path, "a", encoding="utf-8") as fh:
            fh.write(self.masker.mask(text).rstrip("\n") + "\n")
