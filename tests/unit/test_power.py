"""Power commands: argv (no shell), deadline, retries, output in the board log."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pytest_lava.console.log import ConsoleLog
from pytest_lava.core.deadline import Deadline
from pytest_lava.core.errors import InfrastructureError
from pytest_lava.devices.device import Device
from pytest_lava.devices.power import PowerControl, PowerError


def dev(**kw: object) -> Device:
    kw.setdefault("power_retries", 0)
    return Device(name="b1", device_type="fake", **kw)  # type: ignore[arg-type]


def read_log(log: ConsoleLog) -> str:
    log.close()
    assert log.path is not None
    return log.path.read_text()


def test_on_runs_argv_and_logs_output(tmp_path: Path) -> None:
    log = ConsoleLog(tmp_path / "c.log")
    PowerControl(dev(power_on_command="echo 'powered on port 3'"), log).on(Deadline(10, "job"))
    text = read_log(log)
    assert "power on (1/1): echo 'powered on port 3' -> exit status 0" in text
    assert "[lava] powered on port 3" in text


def test_no_shell_is_involved(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    log = ConsoleLog(tmp_path / "c.log")
    PowerControl(dev(power_on_command=f"echo x; touch {marker}"), log).on(10)
    assert not marker.exists()
    assert f"x; touch {marker}" in read_log(log)


def test_failure_is_retried_then_raises(tmp_path: Path) -> None:
    log = ConsoleLog(tmp_path / "c.log")
    pc = PowerControl(dev(power_off_command="false", power_retries=2), log, retry_pause=0.05)
    with pytest.raises(PowerError) as info:
        pc.off(10)
    assert isinstance(info.value, InfrastructureError)
    assert [h[2] for h in pc.history] == [1, 1, 1]
    assert "power_off_command of b1 failed: false" in str(info.value)
    assert "attempt 3: exit status 1" in str(info.value)
    assert read_log(log).count("power off (") == 3


def test_retry_succeeds(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    # fails the first time (creates the flag), succeeds the second
    cmd = f"python3 -c \"import os,sys; p='{flag}'; e=os.path.exists(p); open(p,'w'); sys.exit(0 if e else 1)\""
    pc = PowerControl(dev(hard_reset_command=cmd, power_retries=1), ConsoleLog(None), retry_pause=0.05)
    pc.reset(10)
    assert [h[2] for h in pc.history] == [1, 0]


def test_hanging_command_is_killed_at_power_timeout() -> None:
    pc = PowerControl(dev(power_on_command="sleep 30", power_timeout=0.3, power_retries=1), retry_pause=0.05)
    t0 = time.monotonic()
    with pytest.raises(PowerError, match="timed out"):
        pc.on(10)
    assert time.monotonic() - t0 < 3
    assert [h[2] for h in pc.history] == [None, None]


def test_parent_deadline_bounds_the_attempts() -> None:
    pc = PowerControl(dev(power_on_command="sleep 30", power_timeout=30, power_retries=5))
    t0 = time.monotonic()
    with pytest.raises(PowerError) as info:
        pc.on(Deadline(0.4, "job").child(None, "boot_linaro_image"))
    assert time.monotonic() - t0 < 3
    assert "job/boot_linaro_image/power on" in str(info.value)


def test_missing_command_and_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(PowerError, match="has no power_off_command"):
        PowerControl(dev()).off(5)
    with pytest.raises(PowerError, match="exit status 127"):
        PowerControl(dev(power_on_command="/nonexistent/pdu on 3")).on(5)


def test_reset_falls_back_to_off_and_on(tmp_path: Path) -> None:
    pc = PowerControl(dev(power_off_command="true", power_on_command="true"), ConsoleLog(None))
    assert pc.available("reset")
    pc.reset(5)
    assert [h[0] for h in pc.history] == ["off", "on"]


def test_cwd_is_used(tmp_path: Path) -> None:
    (tmp_path / "pdu.sh").write_text("#!/bin/sh\necho from-cwd\n")
    (tmp_path / "pdu.sh").chmod(0o755)
    log = ConsoleLog(tmp_path / "c.log")
    PowerControl(dev(power_on_command="./pdu.sh"), log, cwd=tmp_path).on(5)
    assert "from-cwd" in read_log(log)
