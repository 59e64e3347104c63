"""Device directories: the YAML layout and the old dispatcher's INI layout (§8)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_lava.core.errors import ConfigurationError, JobError
from pytest_lava.devices.directory import load_devices, split_old_list

DATA = Path(__file__).resolve().parent.parent / "data"

# the panda device type of D09, verbatim (§8.3)
PANDA_CONF = """\
boot_cmds = mmc init,
    mmc part 0,
    setenv bootcmd "'fatload mmc 0:3 0x80200000 uImage; fatload mmc 0:3 0x81600000 uInitrd; bootm 0x80200000 0x81600000'",
    setenv bootargs "' console=tty0 console=ttyO2,115200n8 root=LABEL=testrootfs rootwait ro earlyprintk fixrtc nocompcache vram=48M omapfb.vram=0:24M mem=456M@0x80000000 mem=512M@0xA0000000'",
    boot
"""  # noqa: E501 - a verbatim line of the old configuration
PANDA_BOOT_CMDS = [
    "mmc init",
    "mmc part 0",
    "setenv bootcmd 'fatload mmc 0:3 0x80200000 uImage; fatload mmc 0:3 0x81600000 uInitrd; "
    "bootm 0x80200000 0x81600000'",
    "setenv bootargs ' console=tty0 console=ttyO2,115200n8 root=LABEL=testrootfs rootwait ro earlyprintk fixrtc "
    "nocompcache vram=48M omapfb.vram=0:24M mem=456M@0x80000000 mem=512M@0xA0000000'",
    "boot",
]


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# --- old INI layout -----------------------------------------------------------------------------

def test_ini_example_lab() -> None:
    devices = load_devices(DATA / "old-lab")
    assert devices.layout == "ini"
    panda = devices.devices["panda01"]
    assert panda.device_type == "panda"
    assert panda.board_type == "master"  # client_type
    assert panda.hard_reset_command == "/usr/local/bin/pdu-reset panda01"  # %(hostname)s
    assert panda.connection_command == "telnet localhost 7001"
    assert panda.bootloader_prompt == "Panda #"
    assert panda.extra["lmc_dev_arg"] == "panda"  # kept, not modelled
    assert len(panda.boot_cmds) == 5
    assert panda.source.split(",") == [str(DATA / "old-lab" / f) for f in
                                       ("device-defaults.conf", "device-types/panda.conf", "devices/panda01.conf")]


def test_ini_panda_boot_cmds_as_the_old_dispatcher_split_them(tmp_path: Path) -> None:
    write(tmp_path, {"device-types/panda.conf": PANDA_CONF, "devices/panda01.conf": "device_type = panda\n"})
    device = load_devices(tmp_path).devices["panda01"]
    assert device.boot_cmds == PANDA_BOOT_CMDS


@pytest.mark.parametrize(("value", "expected"), [
    ("mmc init,boot", ["mmc init", "boot"]),
    ("  a ,\n    b,\n  c  ", ["a", "b", "c"]),
    ("a,,b,", ["a", "b"]),
    ("""setenv x "'1,2'" """, ["setenv x '1,2'"]),  # one layer of quotes off, the comma kept
    ("""setenv x '"y"'""", ['setenv x "y"']),
    ("2", ["2"]),  # vexpress: a UEFI boot-menu entry
])
def test_split_old_list(value: str, expected: list[str]) -> None:
    assert split_old_list(value) == expected


def test_ini_later_files_win(tmp_path: Path) -> None:
    write(tmp_path, {
        "device-defaults.conf": "bootloader_prompt = #\nboot_retries = 1\nMASTER_STR = root@defaults\n"
                                "soft_boot_cmd = reboot -f\n",
        "device-types/beagle.conf": "bootloader_prompt = OMAP3 beagleboard.org #\nboot_retries = 2\n",
        "devices/beagle01.conf": "device_type = beagle\nboot_retries = 4\n",
        "devices/beagle02.conf": "device_type = beagle\n",
    })
    devices = load_devices(tmp_path).devices
    assert devices["beagle01"].boot_retries == 4
    assert devices["beagle02"].boot_retries == 2
    assert devices["beagle01"].bootloader_prompt == "OMAP3 beagleboard.org #"
    assert devices["beagle01"].master_str == "root@defaults"  # keys are case-insensitive
    assert devices["beagle01"].soft_boot_cmd == "reboot -f"


def test_ini_interpolation(tmp_path: Path) -> None:
    write(tmp_path, {
        "device-defaults.conf": "connection_command = conmux-console %(hostname)s\n"
                                "lmc_dev_arg = %(device_type)s\nqemu_machine_type = %(DEVICE_TYPE)s\n",
        "device-types/mx53loco.conf": "boot_cmds = setenv x 100%,\n  boot\n",  # a lone % as Python 2 kept it
        "devices/mx53-01.conf": "device_type = mx53loco\n",
    })
    device = load_devices(tmp_path).devices["mx53-01"]
    assert device.connection_command == "conmux-console mx53-01"
    assert device.extra["lmc_dev_arg"] == "mx53loco"
    assert device.qemu_machine_type == "mx53loco"
    assert device.boot_cmds == ["setenv x 100%", "boot"]


def test_ini_repeated_key_last_wins(tmp_path: Path) -> None:
    write(tmp_path, {"device-types/panda.conf": "boot_cmds = boot\nboot_cmds = reset\n",
                     "devices/p.conf": "device_type = panda\n"})
    assert load_devices(tmp_path).devices["p"].boot_cmds == ["reset"]


def test_ini_key_aliases_and_types(tmp_path: Path) -> None:
    write(tmp_path, {
        "device-types/sdmux.conf": "client_type = qemu\npower_on_cmd = pdu on 3\npower_off_cmd = pdu off 3\n"
                                   "LAVA_SERVER_IP = 192.168.1.10\nboot_linaro_timeout = 600\n"
                                   "death_strings = Kernel panic, Oops\n",
        "devices/s1.conf": "device_type = sdmux\nhard_reset_command =\n",
    })
    device = load_devices(tmp_path).devices["s1"]
    assert device.board_type == "qemu"
    assert device.power_on_command == "pdu on 3"
    assert device.power_off_command == "pdu off 3"
    assert device.host_address == "192.168.1.10"
    assert device.boot_linaro_timeout == 600.0
    assert device.death_strings == ["Kernel panic", "Oops"]
    assert device.hard_reset_command is None  # empty: no power control, as in the old files


def test_ini_problems_collected(tmp_path: Path) -> None:
    write(tmp_path, {"device-types/panda.conf": "boot_retries = many\n",
                     "devices/a.conf": "device_type = panda\n", "devices/b.conf": "device_type = pnda\n",
                     "devices/c.conf": "no equals sign here\n"})
    with pytest.raises(ConfigurationError) as info:
        load_devices(tmp_path)
    text = [str(p) for p in info.value.problems]
    assert len(text) == 3, text
    assert any("panda.conf: boot_retries: must be a number, not 'many'" in t for t in text)
    assert any("b.conf: device_type: unknown device type 'pnda'" in t and "did you mean 'panda'" in t for t in text)
    assert any("c.conf:1: INI syntax error" in t for t in text)


# --- YAML layout --------------------------------------------------------------------------------

def test_yaml_example_lab() -> None:
    devices = load_devices(DATA / "lab")
    assert devices.layout == "yaml"
    assert sorted(devices.devices) == ["panda01", "panda02", "qemu01"]
    assert devices.types() == ["panda", "qemu-arm"]
    assert [d.name for d in devices.by_type("panda")] == ["panda01", "panda02"]
    p1, p2 = devices.devices["panda01"], devices.devices["panda02"]
    assert p1.connection == "socket://127.0.0.1:7001" and p1.connection_command is None
    assert p2.connection_command == "telnet 127.0.0.1 7002" and p2.connection is None
    assert p1.boot_retries == 3 and p2.boot_retries == 5  # the device overrides its type
    assert p1.boot_cmds == p2.boot_cmds and len(p1.boot_cmds) == 4  # from the type
    assert p1.partitions == {"testboot": "/dev/mmcblk0p3", "testrootfs": "/dev/mmcblk0p5"}
    assert p1.power_timeout == 30.0 and p1.host_address == "10.0.2.2"  # device-defaults.yaml
    assert p1.tags == ["hdmi"]
    qemu = devices.devices["qemu01"]
    assert (qemu.board_type, qemu.qemu_binary, qemu.qemu_memory) == ("qemu", "qemu-system-arm", "256")
    assert p1.source.split(",") == [str(DATA / "lab" / f) for f in
                                    ("device-defaults.yaml", "device-types/panda.yaml", "panda01.yaml")]


def test_yaml_override_order(tmp_path: Path) -> None:
    write(tmp_path, {
        "device-defaults.yaml": "boot_retries: 1\npower_retries: 1\nsoft_boot_cmd: reboot -f\n",
        "device-types/arndale.yml": "boot_retries: 2\npower_retries: 2\ntimeouts: {boot: 60}\n",
        "arndale01.yaml": "device_type: arndale\nboot_retries: 3\nextra: {pdu_port: 4}\n",
    })
    device = load_devices(tmp_path).devices["arndale01"]
    assert (device.boot_retries, device.power_retries, device.soft_boot_cmd) == (3, 2, "reboot -f")
    assert device.timeouts == {"boot": 60.0}
    assert device.timeout("boot", 1) == 60.0 and device.timeout("other", 7) == 7
    assert device.extra == {"pdu_port": 4}
    assert device.source.endswith("device-types/arndale.yml," + str(tmp_path / "arndale01.yaml"))


def test_yaml_problem_names_the_file_the_value_came_from(tmp_path: Path) -> None:
    write(tmp_path, {"device-types/x.yaml": "boot_retries: lots\n", "x1.yaml": "device_type: x\n"})
    with pytest.raises(ConfigurationError) as info:
        load_devices(tmp_path)
    (problem,) = info.value.problems
    assert problem.file == str(tmp_path / "device-types" / "x.yaml")
    assert problem.path == "boot_retries"


def test_hostname_and_duplicates(tmp_path: Path) -> None:
    write(tmp_path, {"device-types/x.yaml": "{}\n", "a.yaml": "device_type: x\nhostname: board\n",
                     "b.yaml": "device_type: x\nhostname: board\n"})
    with pytest.raises(ConfigurationError, match="board 'board' is defined twice"):
        load_devices(tmp_path)


def test_empty_directory_and_missing_directory(tmp_path: Path) -> None:
    assert load_devices(tmp_path).devices == {}
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_devices(tmp_path / "nope")


# --- choosing boards ----------------------------------------------------------------------------

def test_select(tmp_path: Path) -> None:
    shutil.copytree(DATA / "lab", tmp_path / "lab")
    devices = load_devices(tmp_path / "lab")
    assert [d.name for d in devices.select(target="qemu01", device_type="panda", job_file="j")] == ["qemu01"]
    assert [d.name for d in devices.select(target=None, device_type="panda", job_file="j")] == ["panda01", "panda02"]
    with pytest.raises(JobError) as info:
        devices.select(target="panda3", device_type=None, job_file="j.json")
    (problem,) = info.value.problems
    assert (problem.file, problem.path) == ("j.json", "target")
    assert "unknown board 'panda3'" in problem.reason and "did you mean" in problem.reason
    with pytest.raises(JobError, match="no board of type 'beagle'.*known types: panda, qemu-arm"):
        devices.select(target=None, device_type="beagle", job_file="j.json")
    with pytest.raises(JobError, match="neither 'target' nor 'device_type'"):
        devices.select(target=None, device_type=None, job_file="j.json")
