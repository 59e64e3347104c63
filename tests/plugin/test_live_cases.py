"""Test cases are reported as the action finishes them, not when the action ends: a long test run
shows its cases as they come, with and without xdist (through public hooks only)."""

from __future__ import annotations

import pytest

HOST_ONLY_BOARD = """
from pytest_lava.boards import BoardDriver


class HostOnly(BoardDriver):  # a board the action never touches
    name = "host-only"

    def test_shell(self, ctx):
        raise AssertionError("not used")

    def power_off(self, ctx):
        pass


def pytest_lava_board_type(name):
    return HostOnly if name == "host-only" else None
"""

CONFTEST = """
import json
import os

from pytest_lava.results.model import CaseResult

EVENTS = []


def _two_cases(ctx, params):  # reports a case, then keeps running, then reports another
    ctx.report([CaseResult("first", "pass")])
    ctx.report([CaseResult("second", "fail", message="boom")])
    ctx.cases.append(CaseResult("at-the-end", "pass"))  # known only when the action ends


""" + HOST_ONLY_BOARD + """

def pytest_lava_actions():
    from pytest_lava.actions.spec import TEST, ActionSpec

    return [ActionSpec("lab_cases", TEST, run=_two_cases, item_label=lambda p: "x")]


def pytest_runtest_logreport(report):  # in the process that shows results, what it logs, in order
    EVENTS.append((report.nodeid, report.when, report.outcome))


def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        with open("events.json", "w") as f:
            json.dump(EVENTS, f)
"""

JOB = """
job_name: live
device_type: host
timeout: 600
actions:
  - command: lab_cases
    parameters: {}
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "1"]], ids=["serial", "xdist"])
def test_cases_are_logged_before_their_item_finishes(pytester: pytest.Pytester, xdist: list[str]) -> None:
    import json

    (pytester.path / "lab" / "device-types").mkdir(parents=True)
    (pytester.path / "lab" / "device-types" / "host.yaml").write_text("board_type: host-only\n")
    (pytester.path / "lab" / "host01.yaml").write_text("device_type: host\nboard_type: host-only\n"
                                                         "connection: socket://127.0.0.1:9\n")
    pytester.makeconftest(CONFTEST)
    (pytester.path / "job.yaml").write_text(JOB)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lava-job", "job.yaml", "--lava-devices", "lab",
                                           "--lava-results", "results", "-rA", "--junitxml=r.xml", *xdist)
    assert result.ret == 1, result.stdout.str()
    events = [tuple(e) for e in json.loads((pytester.path / "events.json").read_text())]
    item = "job.yaml::lab_cases[x]"
    order = [e for e in events if e[1] == "call"]
    assert [e[0] for e in order] == [f"{item[:-1]}::first]", f"{item[:-1]}::second]", item,
                                     f"{item[:-1]}::at-the-end]"]
    # the live cases came before the item's own setup finished (the action runs as its setup)
    setup = events.index((item, "setup", "passed"))
    assert events.index((f"{item[:-1]}::first]", "call", "passed")) < setup
    assert (f"{item[:-1]}::second]", "call", "failed") in events[:setup]
    result.stdout.fnmatch_lines(["*FAILED job.yaml::lab_cases[[]x::second[]]*"])
    xml = (pytester.path / "r.xml").read_text()
    assert xml.count("<testcase") == 4 and 'name="lab_cases[x::second]"' in xml
