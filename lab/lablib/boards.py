"""The lab's boards and their fixed ports: the one place ports are decided.

Every board has two stable console ports, both ser2net accepters in front of the same QEMU serial
port: a raw TCP port (``socket://127.0.0.1:<console_port>``) and a telnet port with RFC 2217
(``telnet 127.0.0.1 <telnet_port>``, ``rfc2217://127.0.0.1:<telnet_port>``), like a lab's console
server; and a private backend port (QEMU's serial TCP server, which only ser2net connects to).
The console ports do not change across power cycles; the QEMU process behind them does.
arm64 boards also have an adb port: QEMU forwards ``127.0.0.1:<adb_port>`` to the guest's TCP 5555,
where the Android image's adbd listens (7301, 7302: outside 5555-5585, which the adb server probes
as emulators).
"""

from __future__ import annotations

from dataclasses import dataclass

HTTP_PORT = 7080  # artifact server on 127.0.0.1 (the guest sees it as http://10.0.2.2:7080)
TELNET_OFFSET = 200  # telnet/RFC 2217 console = raw console port + 200: 7201..7208, 7221, 7222
ADB_BASE = 7300  # arm64-0N: adb on 127.0.0.1:7300+N, forwarded to the guest's adbd on 5555
GUEST_ADB_PORT = 5555
MAX_X86 = 8
MAX_ARM64 = 2


@dataclass(frozen=True)
class Board:
    name: str
    arch: str  # x86_64 | arm64
    console_port: int  # ser2net raw TCP, stable: socket://127.0.0.1:<console_port>
    backend_port: int  # QEMU -serial tcp server, only ser2net connects here
    adb_port: int | None = None  # arm64: QEMU hostfwd 127.0.0.1:<adb_port> -> guest :5555 (adbd)

    @property
    def telnet_port(self) -> int:
        """ser2net telnet accepter with RFC 2217 (70xx -> 72xx), stable like the raw port."""
        return self.console_port + TELNET_OFFSET

    @property
    def telnet(self) -> str:
        return f"telnet 127.0.0.1 {self.telnet_port}"

    @property
    def rfc2217(self) -> str:
        return f"rfc2217://127.0.0.1:{self.telnet_port}"

    @property
    def adb_address(self) -> str | None:
        """What ``adb connect`` takes (the device file's ``adb_address``), or None without adb."""
        return f"127.0.0.1:{self.adb_port}" if self.adb_port else None

    @property
    def connection(self) -> str:
        return f"socket://127.0.0.1:{self.console_port}"


def _all() -> dict[str, Board]:
    boards = {}
    for i in range(1, MAX_X86 + 1):
        boards[f"x86-{i:02d}"] = Board(f"x86-{i:02d}", "x86_64", 7000 + i, 7100 + i)
    for i in range(1, MAX_ARM64 + 1):
        boards[f"arm64-{i:02d}"] = Board(f"arm64-{i:02d}", "arm64", 7020 + i, 7120 + i, ADB_BASE + i)
    return boards


BOARDS: dict[str, Board] = _all()


def default_set(x86: int = 1, arm64: int = 1) -> list[Board]:
    """x86-01..x86-0N plus arm64-01..arm64-0M."""
    if not 0 <= x86 <= MAX_X86:
        raise ValueError(f"--boards must be 0..{MAX_X86}, not {x86}")
    if not 0 <= arm64 <= MAX_ARM64:
        raise ValueError(f"--arm64-boards must be 0..{MAX_ARM64}, not {arm64}")
    return [BOARDS[f"x86-{i:02d}"] for i in range(1, x86 + 1)] + [
        BOARDS[f"arm64-{i:02d}"] for i in range(1, arm64 + 1)
    ]
