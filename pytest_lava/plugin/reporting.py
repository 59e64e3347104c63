"""Reports that are not an item's own: each test case of a test action, and each submit step.

A test action is one pytest item, but every test case it produces is reported on its own: its own
node id ``<file>::<action>[<label>::<case>]`` (pytest keeps parameters last in a node id, so the case
goes inside the brackets), its own JUnit ``<testcase>`` named ``<action>[<label>::<case>]``, the
measurement and units as properties, the console excerpt on failure.

They travel only through public pytest APIs. A test case is logged with
``pytest_runtest_logreport`` as soon as the action finishes it (while the item's action runs, so a
two-hour run shows its cases as they come); under xdist the worker's logging forwards it to the
controller like any report. What is known only at the end (cases an action produced at its end,
the submit steps) is carried by the item's own report, serialised with the
``pytest_report_to_serializable`` hook as the attribute ``lava_extra_reports``, and logged by the
process that shows results (the only process without xdist, the controller with it) right after the
item's report. They are counted and summarised like any report, but are not collected
items: they add no progress step (``pytest_report_teststatus`` gives them no letter; they are shown
here instead), so the progress percentage never passes 100 %.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any

import pytest

from .shipping import RESULTS_ATTR, unpack

if TYPE_CHECKING:
    from ..results.model import CaseResult

EXTRA_ATTR = "lava_extra_reports"
NODEID_ATTR = "lava_nodeid"  # a live report's own node id while it travels from an xdist worker
EXTRA_KEYWORD = "lava-extra"
_SHOW = {"passed": ("PASSED", ".", {"green": True}), "failed": ("FAILED", "F", {"red": True}),
         "skipped": ("SKIPPED", "s", {"yellow": True})}


def case_node_name(test_case_id: str) -> str:
    """A test case id made safe for a node id (no '::', no brackets, no spaces)."""
    return re.sub(r"[^A-Za-z0-9_.+=,@%-]+", "_", test_case_id).strip("_") or "case"


def child_nodeid(nodeid: str, name: str) -> str:
    """The node id of a report inside an item: ``f::a[l]`` → ``f::a[l::name]``, ``f::a`` → ``f::a[name]``."""
    if nodeid.endswith("]") and "[" in nodeid:
        return f"{nodeid[:-1]}::{name}]"
    return f"{nodeid}[{name}]"


def case_reports(item: pytest.Item, cases: Iterable[CaseResult]) -> list[pytest.TestReport]:
    """A call and a teardown report for each test case (JUnit writes a testcase at teardown)."""
    reports = []
    for case in cases:
        name = case_node_name(case.test_case_id)
        props: list[tuple[str, object]] = [("test_case_id", case.test_case_id)]
        if case.measurement is not None:
            props.append(("measurement", case.measurement))
        if case.units:
            props.append(("units", case.units))
        longrepr: Any = None
        outcome = "passed"
        if case.result == "fail":
            outcome = "failed"
            longrepr = case.message or f"test case {case.test_case_id!r} failed"
            if case.log_excerpt:
                longrepr += f"\n--- console of {case.test_case_id} ---\n{case.log_excerpt}"
        elif case.result in ("skip", "unknown"):
            outcome = "skipped"
            longrepr = (str(item.path), 0, f"{case.result}: {case.message or case.test_case_id}")
        sections = [("console", case.log_excerpt)] if case.log_excerpt and outcome != "failed" else []
        keywords = {item.name: 1, case.test_case_id: 1, "lava": 1, "lava-case": 1, EXTRA_KEYWORD: 1}
        reports += _pair(item, name, outcome, longrepr, keywords, props, sections, float(case.duration or 0.0))
    return reports


def step_report(item: pytest.Item, name: str, ok: bool, message: str | None) -> list[pytest.TestReport]:
    """A job-level step shown as a result of its own (the submit step), next to the job's items."""
    parent = item.nodeid.rpartition("::")[0]
    nodeid = f"{parent}::{name}"
    return [pytest.TestReport(nodeid=nodeid, location=(item.location[0], None, name), when=when,
                              keywords={"lava": 1, EXTRA_KEYWORD: 1}, user_properties=[], sections=[],
                              outcome="passed" if ok or when == "teardown" else "failed",
                              longrepr=None if ok or when == "teardown" else message, duration=0.0)
            for when in ("call", "teardown")]


def _pair(item: pytest.Item, name: str, outcome: str, longrepr: Any, keywords: dict[str, int],
          props: list[tuple[str, object]], sections: list[tuple[str, str]],
          duration: float) -> list[pytest.TestReport]:
    common: dict[str, Any] = dict(nodeid=child_nodeid(item.nodeid, name), keywords=keywords,
                                  location=(item.location[0], None, child_nodeid(item.name, name)),
                                  user_properties=props)
    return [pytest.TestReport(outcome=outcome, longrepr=longrepr, when="call", sections=sections,  # type: ignore[arg-type]
                              duration=duration, **common),
            pytest.TestReport(outcome="passed", longrepr=None, when="teardown", sections=[], duration=0.0,
                              **common)]


def log_live(item: pytest.Item, report: pytest.TestReport) -> None:
    """Log ``report`` (a test case of ``item``) now, while ``item`` runs. An xdist worker forwards
    only reports of its current item, so there the report travels under the item's node id and the
    controller gives it back its own (``pytest_report_from_serializable``)."""
    if hasattr(item.config, "workerinput"):
        setattr(report, NODEID_ATTR, report.nodeid)
        report.nodeid = item.nodeid
    item.ihook.pytest_runtest_logreport(report=report)


def attach(config: pytest.Config, report: pytest.TestReport, extra: list[pytest.TestReport]) -> None:
    """Carry ``extra`` inside ``report`` (as plain data, so it crosses to the xdist controller)."""
    if extra:
        data = [config.hook.pytest_report_to_serializable(config=config, report=r) for r in extra]
        setattr(report, EXTRA_ATTR, getattr(report, EXTRA_ATTR, []) + data)


def is_extra(report: object) -> bool:
    return EXTRA_KEYWORD in getattr(report, "keywords", {})


class ExtraReports:
    """The plugin object that carries, logs and shows the extra reports (one per pytest config)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.shows_results = not hasattr(config, "workerinput")  # an xdist worker only forwards
        self.summarising = False

    @pytest.hookimpl(wrapper=True)
    def pytest_report_to_serializable(self, config: pytest.Config, report: Any) -> Generator[None, Any, Any]:
        data = yield
        if isinstance(data, dict):
            for attr in (EXTRA_ATTR, NODEID_ATTR, RESULTS_ATTR):
                if hasattr(report, attr):
                    data[attr] = getattr(report, attr)
        return data

    @pytest.hookimpl(wrapper=True)
    def pytest_report_from_serializable(self, config: pytest.Config, data: dict[str, Any]) -> Generator[None, Any, Any]:
        report = yield
        if report is not None and EXTRA_ATTR in data:
            setattr(report, EXTRA_ATTR, data[EXTRA_ATTR])
        if report is not None and isinstance(data.get(NODEID_ATTR), str):
            report.nodeid = data[NODEID_ATTR]
        if report is not None and isinstance(data.get(RESULTS_ATTR), dict):
            setattr(report, RESULTS_ATTR, data[RESULTS_ATTR])
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: Any, config: pytest.Config) -> tuple[str, str, str] | None:
        if not is_extra(report):
            return None
        if report.when != "call":
            return ("", "", "")
        if not self.summarising:  # while running: shown by _show, no progress step
            return (report.outcome, "", "")
        word, letter, _ = _SHOW.get(report.outcome, _SHOW["passed"])
        return (report.outcome, letter, word)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self) -> None:
        self.summarising = True  # the terminal summary (-rA, short summary) follows

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> Generator[None, None, None]:
        result = yield
        if not self.shows_results:
            return result
        if is_extra(report):
            self._show(report)
        shipped = getattr(report, RESULTS_ATTR, None)
        if shipped:  # a job's results from a worker on another host (plugin/shipping.py)
            delattr(report, RESULTS_ATTR)
            from .keys import SESSION_KEY

            lava = self.config.stash.get(SESSION_KEY, None)
            if lava is not None:
                for problem in unpack(shipped, lava.options.results_dir):
                    lava._announce(f"pytest-lava: {problem}")
        extra = getattr(report, EXTRA_ATTR, None)
        if extra:
            delattr(report, EXTRA_ATTR)  # logged once, whoever logs this report again
            for data in extra:
                rep = self.config.hook.pytest_report_from_serializable(config=self.config, data=data)
                self.config.hook.pytest_runtest_logreport(report=rep)
        return result

    def _show(self, report: pytest.TestReport) -> None:
        reporter: Any = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or report.when != "call":
            return
        word, letter, markup = _SHOW.get(report.outcome, _SHOW["passed"])
        if self.config.get_verbosity() > 0:
            reporter.write_line(f"{report.nodeid} {word}", **markup)
        else:
            reporter.write(letter, **markup)
