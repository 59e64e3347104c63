"""The public fixtures on a SIMULATED board (pytest_lava/testing/simboard.py): a plain pytest module
asks for ``test_shell``; the board is leased once for the module, the tests run commands on it, and each
test is a pytest result (JUnit) **and** a test case of the module's run in the board's bundle."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_lava.testing import SimLab

TESTS = """
import pytest

pytestmark = pytest.mark.lava_board(device_type="sim", timeout=120)


def test_echo(test_shell, lava_deadline):
    assert test_shell.check_output("echo hello", lava_deadline).strip() == "hello"


def test_same_board(lava_target, test_shell, lava_deadline):
    assert lava_target.name.startswith("sim-")
    assert test_shell.run("true", lava_deadline).ok


def test_fails(test_shell, lava_deadline):
    assert test_shell.run("false", lava_deadline).ok, "false failed, as it should"


@pytest.mark.lava_timeout(30)
def test_master(master_shell, lava_deadline):
    assert lava_deadline.remaining() <= 30
    assert master_shell.run("true", lava_deadline).ok
"""


def test_plain_tests_on_a_board_land_in_junit_and_the_bundle(pytester: pytest.Pytester, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_LAVA_STATE", str(tmp_path / "state"))
    with SimLab(1, tmp_path / "boards", boot_time=0.3) as lab:
        lab.write_devices(pytester.path / "devices")
        pytester.makepyfile(test_on_board=TESTS)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lava-devices", "devices",
                                               "--lava-results", "results", "--junitxml=j.xml", "-v",
                                               "--setup-show", timeout=180)
    out = result.stdout.str()
    result.assert_outcomes(passed=3, failed=1)
    assert "SETUP    M lava_target" in out and "TEARDOWN M lava_target" in out  # once for the module
    assert out.count("SETUP    M lava_target") == 1
    names = {tc.get("name"): tc for tc in ET.parse(pytester.path / "j.xml").getroot().iter("testcase")}
    assert names["test_fails"].find("failure") is not None and names["test_echo"].find("failure") is None
    bundle = json.loads((pytester.path / "results" / "test_on_board" / "bundle.json").read_text())
    runs = {r["test_id"]: r for r in bundle["test_runs"]}
    cases = {c["test_case_id"]: c["result"] for c in runs["test_on_board"]["test_results"]}
    assert cases == {"test_echo": "pass", "test_same_board": "pass", "test_fails": "fail", "test_master": "pass"}
    lava = runs["lava"]
    assert lava["attributes"]["target.hostname"] == "sim-01"
    assert any(a["pathname"] == "serial.log" for a in lava["attachments"])


def test_a_module_without_a_board_request_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_x(test_shell):\n    pass\n")
    (pytester.path / "devices").mkdir()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lava-devices", "devices", timeout=60)
    assert "lava_board" in result.stdout.str() + result.stderr.str()
    assert result.ret != 0


def test_a_bad_lava_android_marker_is_a_usage_error_naming_the_keyword(pytester: pytest.Pytester, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The marker's keywords are checked like a job's deploy_linaro_android_image parameters: a typo
    is named before anything is formatted, and a URL's password never shows."""
    monkeypatch.setenv("PYTEST_LAVA_STATE", str(tmp_path / "state"))
    with SimLab(1, tmp_path / "boards", boot_time=0.3) as lab:
        lab.write_devices(pytester.path / "devices")
        pytester.makepyfile(test_android_marker="""
import pytest

pytestmark = [pytest.mark.lava_board(device_type="sim", timeout=60),
              pytest.mark.lava_android(boot="http://u:s3cr3t@h/boot.tar.bz2", sytem="http://h/s", data="http://h/d",
                                       options="a=b")]


def test_release(adb_device):
    pass
""")
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lava-devices", "devices",
                                               "--lava-results", "results", timeout=120)
    out = result.stdout.str() + result.stderr.str()
    assert "lava_android.sytem" in out and "lava_android.system" in out and "lava_android.options" in out, out
    assert "s3cr3t" not in out
