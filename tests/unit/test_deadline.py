"""The deadline tree and the job watchdog."""

from __future__ import annotations

import math
import subprocess
import threading
import time

import pytest

from pytest_lava.core.deadline import Deadline, DeadlineExceeded, Watchdog
from pytest_lava.core.errors import InfrastructureError, kind_of


def test_child_takes_the_earlier_deadline() -> None:
    job = Deadline(10, "job")
    action = job.child(100, "boot_linaro_image")  # longer than the job: the job limits it
    call = action.child(1, "expect '=> '")
    assert action.at == job.at
    assert call.at < job.at
    assert 0.9 < call.remaining() <= 1.0
    assert 9.9 < action.remaining() <= 10.0
    assert action.limited_by is job
    assert call.limited_by is call


def test_no_timeout_anywhere_is_infinite() -> None:
    d = Deadline(None, "job").child(None, "x")
    assert d.remaining() == math.inf
    assert not d.expired
    d.check()


def test_expired_check_names_the_path() -> None:
    job = Deadline(0.05, "job")
    call = job.child(None, "boot_linaro_image").child(5, "expect '=> '")
    time.sleep(0.08)
    assert call.expired and call.remaining() == 0
    with pytest.raises(DeadlineExceeded) as info:
        call.check()
    msg = str(info.value)
    assert "job/boot_linaro_image/expect '=> '" in msg
    assert "limit 0.05 s of 'job'" in msg
    assert isinstance(info.value, InfrastructureError)
    assert kind_of(info.value) == "infrastructure"


def test_duration_is_recorded() -> None:
    with Deadline(5, "job").child(1, "step") as step:
        time.sleep(0.05)
    assert step.duration is not None and 0.04 < step.duration < 1
    assert step.elapsed == step.duration


def test_coerce() -> None:
    parent = Deadline(3, "job")
    assert Deadline.coerce(parent, "expect x").path == "job/expect x"
    lone = Deadline.coerce(2.0, "expect y")
    assert lone.path == "expect y" and 1.9 < lone.remaining() <= 2
    assert Deadline.coerce(None, "z").remaining() == math.inf


def test_negative_timeout_rejected() -> None:
    with pytest.raises(ValueError):
        Deadline(-1, "x")


def test_sleep_never_passes_the_deadline() -> None:
    d = Deadline(0.1, "job")
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        d.sleep(5)
    assert time.monotonic() - t0 < 1


def test_watchdog_closes_a_blocked_read() -> None:
    """A read with no timeout of its own ends when the job deadline passes."""
    import socket

    a, b = socket.socketpair()
    dog = Watchdog(Deadline(0.3, "job"))
    dog.add_closer(lambda: a.shutdown(socket.SHUT_RDWR))
    result: list[bytes] = []
    with dog:
        t0 = time.monotonic()
        result.append(a.recv(10))  # blocks forever without the watchdog
        elapsed = time.monotonic() - t0
    a.close()
    b.close()
    assert result == [b""]
    assert dog.fired
    assert 0.2 < elapsed < 2


def test_watchdog_kills_a_child_process() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    dog = Watchdog(Deadline(0.2, "job")).start()
    dog.add_closer(proc.kill)
    try:
        assert proc.wait(timeout=5) != 0
        assert dog.fired
    finally:
        dog.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_watchdog_stopped_in_time_does_not_fire() -> None:
    called = threading.Event()
    dog = Watchdog(Deadline(0.3, "job"))
    dog.add_closer(called.set)
    dog.start()
    dog.stop()
    time.sleep(0.4)
    assert not dog.fired and not called.is_set()


def test_watchdog_closer_errors_are_kept_and_others_still_run() -> None:
    called = threading.Event()

    def broken() -> None:
        raise RuntimeError("boom")

    dog = Watchdog(Deadline(0.05, "job"))
    dog.add_closer(broken)
    dog.add_closer(called.set)
    with dog:
        assert called.wait(2)
    assert dog.fired and len(dog.errors) == 1
    late = threading.Event()
    dog.add_closer(late.set)  # added after firing: runs at once
    assert late.is_set()
