"""The simulator board type's parts without a lab: the command template, boot options, the telnet
filter, the simulator process against the FAKE FVP (port line, licence failure, no port, a crash),
and the disk image built on the host without root (read back with the harness's own readers)."""

from __future__ import annotations

import os
import sys
import tarfile
import time
from pathlib import Path

import pytest

from pytest_lava.artifacts import partition_tar, read_partitions
from pytest_lava.artifacts.mkdisk import PartSpec, make_disk
from pytest_lava.boards.fastmodel import file_candidates
from pytest_lava.boards.simulator import (
    Simulator,
    SimulatorConnection,
    SimulatorFailed,
    option_problem,
    simulator_argv,
    template_fields,
)
from pytest_lava.console.connections import ConnectionLost
from pytest_lava.console.telnet import TelnetFilter
from pytest_lava.core.deadline import Deadline
from pytest_lava.core.errors import ConfigurationError, InfrastructureError, JobError
from pytest_lava.devices.device import Device

FAKE = [sys.executable, "-m", "pytest_lava.testing.fake_fvp"]
FVP_PORT = r"terminal_0: Listening for serial connection on port (\d+)"
FAILED = [r"ERROR: License check failed!"]


def test_unknown_placeholder_is_a_configuration_error_naming_the_device() -> None:
    assert template_fields("FVP -a {AXF} -C mmc={IMG}", where="device fm1") == ["AXF", "IMG"]
    with pytest.raises(ConfigurationError, match=r"device fm1.*simulator_command.*unknown placeholder \{KERNAL\}"):
        template_fields("FVP --kernel {KERNAL}", where="device fm1")
    with pytest.raises(ConfigurationError, match="malformed"):
        template_fields("FVP 'unclosed", where="device fm1")


def test_argv_fills_each_word_and_renders_options() -> None:
    argv = simulator_argv("model -a 'cluster0.*={AXF}' -C mmc.p_mmc_file={IMG}",
                          {"AXF": "/w/img axf", "IMG": "/w/sd.img; rm -rf /"},
                          {"cache_state_modelled": "1"}, ["-C", "{name}={value}"], where="device fm1")
    assert argv == ["model", "-a", "cluster0.*=/w/img axf", "-C", "mmc.p_mmc_file=/w/sd.img; rm -rf /",
                    "-C", "cache_state_modelled=1"]
    with pytest.raises(JobError, match=r"needs \{KERNEL\}"):
        simulator_argv("model {KERNEL}", {}, {}, [], where="device fm1")


def test_only_allowed_options_may_be_set_by_a_job() -> None:
    assert option_problem("m=768", ["m"]) is None
    assert "not allowed" in (option_problem("smp=8", ["m"]) or "")
    assert "name=value" in (option_problem("verbose", ["m"]) or "")


def test_device_files_override_the_default_candidates() -> None:
    dev = Device(name="fm1", device_type="fm", board_type="fastmodel", simulator_files={"axf": "x.axf, y.axf"})
    files = file_candidates(dev)
    assert files["AXF"] == ["x.axf", "y.axf"] and files["KERNEL"][0] == "Image" and files["DTB"] == []


def test_telnet_filter_drops_negotiation_across_chunks() -> None:
    f = TelnetFilter()
    out = f.feed(b"\xff\xfb\x01\xff") + f.feed(b"\xfb\x03login\r\0ok\xff\xff") + f.feed(b"\xff\xfa\x18\x01\xff\xf0!")
    assert out == b"login\rok\xff!"


def start(tmp_path: Path, *args: str) -> Simulator:
    sim = Simulator([*FAKE, *args], name="fm1 simulator", log_path=tmp_path / "rtsm.log",
                    env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    sim.start()
    return sim


def test_licence_failure_fails_at_once_with_that_line(tmp_path: Path) -> None:
    sim = start(tmp_path, "--mode", "licence-fail")
    t0 = time.monotonic()
    try:
        with pytest.raises(SimulatorFailed) as info:
            sim.wait_ready(Deadline(60, "boot"), FVP_PORT, "Simulation is started", FAILED)
    finally:
        sim.stop()
    assert time.monotonic() - t0 < 20  # the fake hangs for an hour after the line
    assert "fm1 simulator" in info.value.message and "ERROR: License check failed!" in info.value.message
    assert "FAKE FVP" in info.value.details  # the simulator's output tail is in the report
    assert sim.proc is not None and sim.proc.poll() is not None


def test_no_port_line_within_the_deadline(tmp_path: Path) -> None:
    sim = start(tmp_path, "--mode", "no-port")
    try:
        with pytest.raises(InfrastructureError, match="no console port line from the simulator"):
            sim.wait_ready(Deadline(2, "boot"), FVP_PORT, "Simulation is started", FAILED)
    finally:
        sim.stop()
    assert sim.proc is not None and sim.proc.poll() is not None


def test_console_on_the_printed_port_and_the_simulator_stopped_with_it(tmp_path: Path) -> None:
    sim = start(tmp_path, "-C", "cache_state_modelled=1")
    conn = None
    try:
        port = sim.wait_ready(Deadline(30, "boot"), FVP_PORT, "Simulation is started", FAILED)
        conn = SimulatorConnection(sim, "127.0.0.1", port)
        conn.connect(Deadline(10, "connect"))
        seen = read_until(conn, b"root@linaro:~# ")
        assert b"\xff" not in seen and b"Linux version" in seen
        conn.write(b"echo hello-$((40+2))\n", 5)
        assert b"hello-42" in read_until(conn, b"hello-42")
    finally:
        if conn is not None:
            conn.close()
        sim.stop()
    assert sim.proc is not None and sim.proc.poll() is not None
    log = (tmp_path / "rtsm.log").read_text()
    assert "fake FVP: option cache_state_modelled=1" in log and f"port {port}" in log


def test_a_simulator_dying_mid_test_is_an_error_with_its_output(tmp_path: Path) -> None:
    sim = start(tmp_path, "--mode", "crash", "--crash-after", "0.5")
    try:
        port = sim.wait_ready(Deadline(30, "boot"), FVP_PORT, "Simulation is started", FAILED)
        conn = SimulatorConnection(sim, "127.0.0.1", port)
        conn.connect(Deadline(10, "connect"))
        with pytest.raises(ConnectionLost) as info:
            read_until(conn, b"never printed", 20)
    finally:
        sim.stop()
    assert "simulator died (status 3)" in info.value.message
    assert "simulated crash" in info.value.details


def read_until(conn: SimulatorConnection, marker: bytes, timeout: float = 20) -> bytes:
    buf, end = b"", time.monotonic() + timeout
    while marker not in buf:
        assert time.monotonic() < end, f"no {marker!r} in {buf[-500:]!r}"
        buf += conn.read(4096, 0.2)
    return buf


def test_disk_image_built_without_root_reads_back(tmp_path: Path) -> None:
    boot, root = tmp_path / "boot", tmp_path / "root"
    (boot).mkdir()
    (boot / "Image").write_bytes(os.urandom(300_000))
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("linaro\n")
    (root / "bin").mkdir()
    (root / "bin/sh").symlink_to("busybox")
    layout = make_disk(tmp_path / "sd.img", [PartSpec("boot", boot), PartSpec("rootfs", root, 32)],
                       Deadline(120, "mkdisk"), tmp_path)
    parts = read_partitions(tmp_path / "sd.img")
    assert [p.number for p in parts] == [1, 2] and layout["rootfs"]["start"] == parts[1].start
    assert (tmp_path / "sd.img").stat().st_blocks * 512 < (tmp_path / "sd.img").stat().st_size  # sparse
    partition_tar(tmp_path / "sd.img", 2, tmp_path / "root.tar", Deadline(60, "read"))
    with tarfile.open(tmp_path / "root.tar") as tf:
        names = {m.name.lstrip("./"): m for m in tf.getmembers()}
        assert tf.extractfile(names["etc/hostname"]).read() == b"linaro\n"  # type: ignore[union-attr]
        assert names["bin/sh"].issym() and names["bin/sh"].linkname == "busybox"
    partition_tar(tmp_path / "sd.img", 1, tmp_path / "boot.tar", Deadline(60, "read"))
    with tarfile.open(tmp_path / "boot.tar") as tf:
        image = next(m for m in tf.getmembers() if m.name.lstrip("./") == "Image")
        assert tf.extractfile(image).read() == (boot / "Image").read_bytes()  # type: ignore[union-attr]


def test_device_mistakes_are_found_before_anything_starts() -> None:
    from pytest_lava.boards.simulator import device_problems

    good = Device(name="fm1", device_type="fm", board_type="fastmodel", simulator_command="FVP -a {AXF}")
    assert device_problems(good) == []
    bad = Device(name="fm1", device_type="fm", board_type="fastmodel", simulator_command="FVP -a {AFX}",
                 simulator_files={"DTS": "x.dtb"}, simulator_option_format=["-C", "{nam}={value}"],
                 simulator_port_pattern="port \\d+", simulator_failed_patterns=["(unclosed"])
    keys = {key: reason for key, reason in device_problems(bad)}
    assert set(keys) == {"simulator_command", "simulator_files", "simulator_option_format",
                         "simulator_port_pattern", "simulator_failed_patterns"}
    assert all(reason.startswith("device fm1") for reason in keys.values())
    assert "unknown placeholder {AFX}" in keys["simulator_command"]
    assert "first group" in keys["simulator_port_pattern"]
    missing = Device(name="fm2", device_type="fm", board_type="fastmodel")
    assert device_problems(missing) == [("simulator_command",
                                         "device fm2 has board_type 'fastmodel' but no simulator_command")]


def test_the_job_watchdog_stops_the_simulator(tmp_path: Path) -> None:
    from pytest_lava.boards.board import Board
    from pytest_lava.core.deadline import Watchdog

    sim = start(tmp_path)
    dev = Device(name="fm1", device_type="fm", board_type="fastmodel", simulator_command="FVP")
    job = Deadline(3, "job")
    board = Board(dev, log_dir=tmp_path, deadline=job)
    try:
        port = sim.wait_ready(job.child(None, "boot"), FVP_PORT, "Simulation is started", FAILED)
        conn = SimulatorConnection(sim, "127.0.0.1", port)
        conn.connect(job.child(None, "connect"))
        board.attach(conn)
        with Watchdog(job) as watchdog:
            board.guard(watchdog)
            end = time.monotonic() + 20
            while sim.alive() and time.monotonic() < end:
                time.sleep(0.1)
        assert watchdog.fired and not sim.alive()
    finally:
        board.close()
        sim.stop()
