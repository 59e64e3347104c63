"""A pytest run without ``--lava-job`` in an environment where the plugin is installed: its plain
tests pass, the plugin's fixtures are there, and none of the job machinery is imported (every
pytest run of such an environment loads the plugin; only runs with jobs should pay for it)."""

from __future__ import annotations

import json

import pytest

CONFTEST = """
import json
import sys


def pytest_unconfigure(config):
    with open("modules.json", "w") as out:
        json.dump(sorted(m for m in sys.modules if m.startswith(("pytest_lava", "yaml"))), out)
"""

TESTS = """
def test_plain(request):
    assert request.config.pluginmanager.has_plugin("lava-fixtures")  # lava_target & co. are there


def test_other():
    assert 1 + 1 == 2
"""


def test_a_run_without_jobs_imports_none_of_the_job_machinery(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_plain=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)
    loaded = set(json.loads((pytester.path / "modules.json").read_text()))
    assert "pytest_lava.plugin.wiring" in loaded  # the plugin was loaded, as an installed plugin is
    heavy = {"yaml", "pytest_lava.jobs.job", "pytest_lava.plugin.items", "pytest_lava.plugin.session",
             "pytest_lava.devices.directory", "pytest_lava.results.model", "pytest_lava.console.engine"}
    assert loaded.isdisjoint(heavy), sorted(loaded & heavy)
