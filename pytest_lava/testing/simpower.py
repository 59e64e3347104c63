"""The simulated boards' PDU client (a FAKE, see :mod:`.simboard`): power a board on, off or reset.

Standard library only and runnable by path, so a lab's power command starts in milliseconds
(``python -I -S simpower.py reset --state-dir DIR``, which is what :mod:`.simlab` writes into the
device files), like the small PDU scripts of a real lab: eight jobs powering their boards at
once must not spend a CPU-second importing the package first. The same command is also
``python -m pytest_lava.testing.simboard power reset --state-dir DIR``.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path

STATE_FILE = "simboard.json"  # written by ``simboard serve``: pid, name, console and control ports
COMMANDS = ("on", "off", "reset", "status", "stop")


def send_power(state_dir: Path, command: str, timeout: float = 10.0) -> str:
    """Send a power command to the board serving ``state_dir``; its new state ("on"/"off")."""
    info = json.loads((Path(state_dir) / STATE_FILE).read_text())
    address = str(info.get("address", "127.0.0.1"))
    with socket.create_connection((address, int(info["control_port"])), timeout=timeout) as conn:
        conn.settimeout(timeout)
        conn.sendall(command.encode() + b"\n")
        reply = conn.recv(256).decode().strip()
    if not reply.startswith("ok "):
        raise RuntimeError(f"simboard {info['name']}: {reply or 'no reply'}")
    return reply[3:]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=10.0)


def run(args: argparse.Namespace) -> int:
    try:
        print(send_power(args.state_dir, args.command, args.timeout))
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"simboard power {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simpower.py", description="Power a simulated board on/off/reset.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
