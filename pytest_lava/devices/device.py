"""The device model: one board, with the defaults of its device type applied.

Loading (YAML and the old dispatcher's INI layout) lives in ``directory.py``; this module only
defines what a loaded device is, so every other module can depend on it cheaply.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DEATH_STRINGS = (
    "Kernel panic",
    "Unable to handle kernel",
    "Internal error: Oops",
    "---[ end trace",
    "BUG: soft lockup",
)

LINE_ENDINGS = {"lf": "\n", "crlf": "\r\n", "cr": "\r"}
END_OF_JOB = ("power-off", "leave-on")


@dataclass
class Device:
    """A board as the harness sees it. Every field has a sensible default so a device file
    can be three lines long; the device type fills in the rest."""

    name: str  # the board's hostname (`target` in a job)
    device_type: str
    source: str = ""  # the file(s) it was read from, for error messages
    board_type: str = "master"  # master | qemu | fastmodel | android (old: client_type)
    tags: list[str] = field(default_factory=list)

    # console: exactly one of connection (pyserial URL) / connection_command (run on a pty);
    # board types that start their own process (qemu) leave both empty.
    connection: str | None = None
    connection_command: str | None = None
    char_delay_ms: float = 0.0  # per-character delay for slow UARTs
    # what ends every line sent to the board (bootloader lines, the interrupt, shell commands):
    # lf (the old dispatcher's sendline), crlf or cr
    line_ending: str = "lf"

    # power: plain commands, split with shlex and run as argv (never through a shell)
    hard_reset_command: str | None = None
    power_off_command: str | None = None
    power_on_command: str | None = None
    soft_boot_cmd: str = "reboot"
    power_timeout: float = 30.0
    power_retries: int = 2
    # the board at the end of a job: power-off (as LAVA v2 does; needs power_off_command) or
    # leave-on (as the old dispatcher did)
    end_of_job: str = "power-off"

    # prompts (regular expressions)
    master_str: str = r"root@master"
    tester_str: str = r"root@linaro"
    login_prompt: str | None = None
    username: str | None = None
    password: str | None = None
    image_boot_msg: str = r"Linux version"

    # bootloader
    interrupt_boot_prompt: str = r"Hit any key to stop autoboot"
    interrupt_boot_command: str = " "
    bootloader_prompt: str = r"=> "
    boot_cmds: list[str] = field(default_factory=list)
    boot_cmds_android: list[str] = field(default_factory=list)

    # storage and network
    partitions: dict[str, str] = field(default_factory=dict)  # label -> device node on the master
    host_address: str = "10.0.2.2"  # the dispatcher host as seen from the board (LAVA_SERVER_IP)
    # the dispatcher host this board must be run from (its hostname), e.g. a USB console; None: any
    dispatcher_host: str | None = None
    tester_hostname: str = "linaro"

    # health and timing
    death_strings: list[str] = field(default_factory=lambda: list(DEFAULT_DEATH_STRINGS))
    boot_retries: int = 3
    boot_linaro_timeout: float = 300.0
    health_failure_threshold: int = 3
    timeouts: dict[str, float] = field(default_factory=dict)  # named step timeouts

    # qemu board type
    qemu_binary: str = "qemu-system-x86_64"
    qemu_machine_type: str = "pc"
    qemu_memory: str = "512"
    qemu_options: list[str] = field(default_factory=list)

    # simulator board type (fastmodel): started per job, console port read from its output
    simulator_command: str | None = None  # argv template: {AXF} {IMG} {KERNEL} {DTB} {INITRD} {UEFI}
    simulator_files: dict[str, str] = field(default_factory=dict)  # placeholder -> file names to look for
    simulator_port_pattern: str = r"terminal_0: Listening for serial connection on port (\d+)"
    simulator_started_pattern: str = r"Simulation is started"  # "": the port line is enough
    simulator_failed_patterns: list[str] = field(default_factory=lambda: [r"ERROR: License check failed!"])
    simulator_boot_options: dict[str, str] = field(default_factory=dict)  # default -C name=value options
    simulator_allowed_options: list[str] = field(default_factory=list)  # names a job's options may set
    simulator_option_format: list[str] = field(default_factory=lambda: ["-C", "{name}={value}"])
    simulator_env: dict[str, str] = field(default_factory=dict)  # e.g. ARMLMD_LICENSE_FILE
    simulator_version_command: str | None = None
    simulator_console_host: str = "127.0.0.1"

    # android
    adb_address: str | None = None
    android_binary_drivers: str | None = None

    # every other key from the files, kept for board types and third-party actions
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def newline(self) -> str:
        """The characters :attr:`line_ending` names."""
        return LINE_ENDINGS.get(self.line_ending, "\n")

    def argv(self, command: str | None) -> list[str] | None:
        """A device command as argv (shlex-split, no shell)."""
        return shlex.split(command) if command else None

    def timeout(self, name: str, default: float) -> float:
        return float(self.timeouts.get(name, default))

    @property
    def source_path(self) -> Path:
        return Path(self.source.split(",")[0]) if self.source else Path(".")
