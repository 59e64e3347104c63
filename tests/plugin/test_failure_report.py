"""A failing step shows what a lab engineer needs: the error kind, the last console lines and
the console log's path — not a Python traceback. On a SIMULATED board (pytest_lava/testing/simboard.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pytest_lava.testing import SimLab

JOB = """\
job_name: broken-boot
device_type: sim
timeout: 120
actions:
  - command: boot_master_image
  - command: boot_linaro_image
  - command: lava_test_shell
    parameters:
      testdefs: [smoke]
"""


def test_boot_failure_is_an_error_with_console_tail_and_log_path(pytester: pytest.Pytester, tmp_path: Path) -> None:
    with SimLab(1, tmp_path / "boards", boot_time=0.3) as lab:
        devices = pytester.path / "devices"
        lab.write_devices(devices)
        sim_type = devices / "device-types" / "sim.yaml"
        data = yaml.safe_load(sim_type.read_text())
        data.update(tester_str="root@nowhere# ", boot_linaro_timeout=3, boot_retries=1)
        sim_type.write_text(yaml.safe_dump(data))
        (pytester.path / "job.yaml").write_text(JOB)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lava-job", "job.yaml", "--lava-devices",
                                               "devices", "--lava-results", "results", timeout=180)
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=1)  # a broken boot is an error, not a test failure
    assert "[infrastructure]" in out
    assert "root@nowhere" in out  # what was awaited
    assert "root@linaro:~#" in out  # the console tail shows what the board printed instead
    assert str(pytester.path / "results" / "job" / "console.log") in out
    assert "Traceback" not in out
    summary = (pytester.path / "results" / "job" / "summary.txt").read_text()
    assert "FAIL boot_linaro_image" in summary
