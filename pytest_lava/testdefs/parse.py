"""Turn console lines into test cases, live: LAVA signals and the definition's ``parse`` pattern.

:class:`CaseCollector` is fed one console line at a time while the definition runs on the board.

* ``<LAVA_SIGNAL_STARTTC id>`` / ``<LAVA_SIGNAL_ENDTC id>`` bracket a ``lava-test-case --shell``
  case: the lines between them are its console excerpt, the host-measured time its duration.
* ``<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=id RESULT=pass MEASUREMENT=1.5 UNITS=MB/s>`` is a result.
* ``<LAVA_SIGNAL_ATTACH TEST_CASE_ID=id FILE=... STORED=... MIME=...>`` names a file to fetch
  from the board after the run.
* ``<LAVA_SIGNAL_TESTSET START name>`` ... ``<LAVA_SIGNAL_TESTSET STOP>``: the cases between are
  ``name.<id>`` (LAVA files them under the set).
* ``<LAVA_SIGNAL_REFERENCE TEST_CASE_ID=id RESULT=pass REFERENCE=url>``: a case with a link.
* ``<LAVA_SIGNAL_TESTRAISE message>``: the definition asked to abort (:attr:`CaseCollector.raised`).
* ``<LAVA_SIGNAL_STEPFAIL PHASE=run STEP=n EXIT=s>`` (the generated scripts): in a 1.0 definition a
  failing case ``run-step-<n>`` with the exit status, the step and the output since the last case
  — no failing step passes silently.
* A signal may stand anywhere in a line: a kernel timestamp before it (KMSG mode, written to
  ``/dev/kmsg`` with ``<0>``) or a ``<0>`` printed by a script are ignored.
* Any other line is matched with the ``parse`` pattern (``re.search``): named groups
  ``test_case_id``, ``result`` (through ``fixupdict``), ``measurement``, ``units``, ``message``,
  then ``appendall`` is laid over the result. Its excerpt is the output since the previous case.

Board output is not trusted to be kind: signals are found and split without a regex that could
backtrack (a line of 16,000 spaces, or of many ``<LAVA_SIGNAL_`` without a ``>``, once took
seconds), so reading a line is linear in its length.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..results.model import CaseResult
from .model import LAVA_TEST, RESULTS, TESTDEF_1_0, TestDefinition

SIGNAL_PREFIX = "<LAVA_SIGNAL_"
_SIGNAL_NAME = re.compile(r"[A-Z]+")
_KEY = re.compile(r"(?<![A-Z_])[A-Z_]+=")  # starts only where a run of key characters starts: linear
_LAVA_TEST_ID_DROP = re.compile(r"[^a-zA-Z0-9._-]")
MAX_EXCERPT_LINES = 200


@dataclass
class AttachmentRef:
    """A file the board kept for the host (``lava-test-case-attach`` / ``lava-test-run-attach``)."""

    test_case_id: str  # "" for a run attachment
    name: str  # the file's name as given
    stored: str  # where the runner copied it on the board
    mime_type: str = "text/plain"


def find_signal(line: str) -> tuple[str, str] | None:
    """``(name, argument)`` of the first ``<LAVA_SIGNAL_NAME>`` or ``<LAVA_SIGNAL_NAME argument>``
    in ``line`` (the argument runs to the first ``>``), else None."""
    start = line.find(SIGNAL_PREFIX)
    while start >= 0:
        at = start + len(SIGNAL_PREFIX)
        m = _SIGNAL_NAME.match(line, at)
        if m is not None:
            after = m.end()
            if line.startswith(">", after):
                return m.group(), ""
            if line.startswith(" ", after):
                end = line.find(">", after)
                if end < 0:
                    return None  # no ">" after this one, so none after a later one either
                return m.group(), line[after + 1:end]
        start = line.find(SIGNAL_PREFIX, at)
    return None


def signal_fields(text: str) -> dict[str, str]:
    """``TEST_CASE_ID=x RESULT=pass UNITS=MB / s`` -> a dict (values may hold spaces).

    A key is ``[A-Z_]+`` followed by ``=``: the first one anywhere, the next ones only after
    whitespace; a value runs to the next key (stripped)."""
    text = text or ""
    keys: list[re.Match[str]] = []
    for m in _KEY.finditer(text):
        if not keys or text[m.start() - 1].isspace():
            keys.append(m)
    fields: dict[str, str] = {}
    for i, m in enumerate(keys):
        end = keys[i + 1].start() if i + 1 < len(keys) else len(text)
        fields[m.group()[:-1]] = text[m.end():end].strip()
    return fields


def normalize_result(raw: str | None, fixupdict: dict[str, str]) -> tuple[str, str | None]:
    """``(result, original)``: the fixupdict mapping, else the lower-cased word, else unknown."""
    if raw is None:
        return "unknown", None
    word = raw.strip()
    mapped = fixupdict.get(word, word).strip().lower()
    if mapped in RESULTS:
        return mapped, None if mapped == word else word
    return "unknown", word


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if value == value and value not in (float("inf"), float("-inf")) else None


class CaseCollector:
    """Collects the test cases of one definition run from its console lines."""

    def __init__(self, definition: TestDefinition, *, clock: Callable[[], float] = time.monotonic,
                 excerpt_lines: int = 40) -> None:
        self.definition = definition
        self.parser = definition.parser
        self.clock = clock
        self.cases: list[CaseResult] = []
        self.attachments: list[AttachmentRef] = []
        self.signals: list[tuple[str, str]] = []
        self.lines = 0
        self._recent: deque[str] = deque(maxlen=excerpt_lines)
        self._open: dict[str, tuple[float, list[str]]] = {}  # STARTTC seen, ENDTC not yet
        self._spans: dict[str, tuple[float, list[str]]] = {}  # ENDTC seen, TESTCASE not yet
        self.test_set: str | None = None
        self.raised: str | None = None  # lava-test-raise's message
        self.failed_steps: list[tuple[str, int, int]] = []  # (phase, step number, exit status)

    # -- feeding ----------------------------------------------------------------------------
    def feed(self, line: str) -> list[CaseResult]:
        """One console line (without its newline); returns the cases it completed."""
        line = line.rstrip("\r\n").replace("\r", "")
        self.lines += 1
        for _start, lines in self._open.values():
            if len(lines) < MAX_EXCERPT_LINES:
                lines.append(line)
        new: list[CaseResult] = []
        signal = find_signal(line)
        if signal is not None:
            new += self._signal(signal[0], signal[1].strip(), line)
        else:
            case = self._match(line)
            if case is not None:
                new.append(case)
        if new:
            self._recent.clear()
        elif signal is None:
            self._recent.append(line)
        self.cases += new
        return new

    def _signal(self, name: str, arg: str, line: str) -> list[CaseResult]:
        self.signals.append((name, arg))
        now = self.clock()
        if name == "STARTTC":
            self._open[arg] = (now, [line])
        elif name == "ENDTC":
            start, lines = self._open.pop(arg, (now, [line]))
            self._spans[arg] = (now - start, lines)
        elif name in ("TESTCASE", "REFERENCE"):
            return [self._testcase(signal_fields(arg), line)]
        elif name == "TESTSET":
            word, _, set_name = arg.partition(" ")
            self.test_set = set_name.strip() or None if word == "START" else None
        elif name == "TESTRAISE":
            self.raised = arg or "lava-test-raise"
        elif name == "STEPFAIL":
            return self._stepfail(signal_fields(arg), line)
        elif name == "ATTACH":
            f = signal_fields(arg)
            if f.get("STORED"):
                self.attachments.append(AttachmentRef(f.get("TEST_CASE_ID", ""), f.get("FILE", f["STORED"]),
                                                      f["STORED"], f.get("MIME") or "text/plain"))
        return []

    def _testcase(self, fields: dict[str, str], line: str) -> CaseResult:
        case_id = fields.pop("TEST_CASE_ID", "") or "unnamed"
        result, original = normalize_result(fields.pop("RESULT", None), {})
        measurement = _number(fields.pop("MEASUREMENT", None))
        units = fields.pop("UNITS", None) or None
        duration, lines = self._spans.pop(case_id, (None, None))
        excerpt = [*lines, line] if lines is not None else [*self._recent, line]
        exit_status = fields.pop("EXIT", None)
        message = fields.pop("MESSAGE", "")
        if not message and result == "fail" and exit_status not in (None, "0"):
            message = f"lava-test-case {case_id}: command exited with status {exit_status}"
        attrs = {k.lower(): v for k, v in fields.items()}
        if original:
            attrs["original_result"] = original
        return CaseResult(self._in_set(case_id), result, message, measurement=measurement,
                          units=units if measurement is not None else None, duration=duration,
                          timestamp=datetime.now(UTC), log_excerpt="\n".join(excerpt), attributes=attrs)

    def _match(self, line: str) -> CaseResult | None:
        m = self.parser.pattern.search(line)
        if m is None:
            return None
        groups = {k: v for k, v in m.groupdict().items() if v is not None}
        case_id = groups.get("test_case_id", "").strip()
        for old, new in self.parser.id_replace:
            case_id = case_id.replace(old, new)
        if self.definition.dialect == LAVA_TEST:
            case_id = _LAVA_TEST_ID_DROP.sub("", case_id)  # lava-test deleted these characters
        else:
            case_id = re.sub(r"\s+", "_", case_id)
        if not case_id:
            return None
        result, original = normalize_result(groups.get("result"), self.parser.fixupdict)
        fields = {"measurement": groups.get("measurement"), "units": groups.get("units"),
                  "message": groups.get("message", "")}
        for key, value in self.parser.appendall.items():
            if key == "result":
                result, original = normalize_result(value, {})
            else:
                fields[key] = value
        measurement = _number(fields["measurement"])
        attrs = {"original_result": original} if original else {}
        return CaseResult(self._in_set(case_id), result, (fields["message"] or "").strip(), measurement=measurement,
                          units=(fields["units"] or None) if measurement is not None else None,
                          timestamp=datetime.now(UTC), log_excerpt="\n".join([*self._recent, line]),
                          attributes=attrs)

    def _in_set(self, case_id: str) -> str:
        return f"{self.test_set}.{case_id}" if self.test_set else case_id

    def _stepfail(self, fields: dict[str, str], line: str) -> list[CaseResult]:
        phase = fields.get("PHASE", "run")
        try:
            number, status = int(fields.get("STEP", "0")), int(fields.get("EXIT", "1"))
        except ValueError:
            return []
        self.failed_steps.append((phase, number, status))
        if self.definition.dialect != TESTDEF_1_0:
            return []  # a lava-test definition's failing step fails its action instead
        steps = self.definition.install_steps if phase == "install" else self.definition.run_steps
        step = steps[number - 1] if 0 < number <= len(steps) else "?"
        shown = step if len(step) <= 200 else step[:200] + "..."
        return [CaseResult(f"{phase}-step-{number}", "fail", f"{phase} step {number} exited with status {status}: "
                           f"{shown}", timestamp=datetime.now(UTC), log_excerpt="\n".join([*self._recent, line]),
                           attributes={"exit_status": str(status), "step": shown})]

    # -- the end ----------------------------------------------------------------------------
    def finish(self, *, interrupted: str = "") -> list[CaseResult]:
        """Close the run: cases still open fail, missing ``expected`` cases fail. Returns them."""
        new: list[CaseResult] = []
        now = self.clock()
        for case_id, (start, lines) in list(self._open.items()):
            reason = interrupted or "the run ended"
            new.append(CaseResult(case_id, "fail", f"test case {case_id!r} did not finish: {reason}",
                                  duration=now - start, timestamp=datetime.now(UTC), log_excerpt="\n".join(lines)))
        self._open.clear()
        seen = {c.test_case_id for c in self.cases} | {c.test_case_id for c in new}
        for case_id in self.definition.expected:
            if case_id not in seen:
                why = f" ({interrupted})" if interrupted else ""
                new.append(CaseResult(case_id, "fail", f"expected test case {case_id!r} did not run{why}",
                                      timestamp=datetime.now(UTC)))
        self.cases += new
        return new


def unique_ids(cases: list[CaseResult], taken: set[str] | None = None) -> list[CaseResult]:
    """Rename repeated test case ids ``id``, ``id.2``, ``id.3`` ... (each case is its own report)."""
    seen = taken if taken is not None else set()
    for case in cases:
        base, n = case.test_case_id, 1
        while case.test_case_id in seen:
            n += 1
            case.test_case_id = f"{base}.{n}"
        seen.add(case.test_case_id)
    return cases
