"""A lab of SIMULATED boards (fakes, see :mod:`.simboard`) for benchmarks and tests.

Each board is its own process (``python -m pytest_lava.testing.simboard serve``), started and
stopped by PID. :func:`write_devices` writes a device directory for them (``<board>.yaml`` per
board plus ``device-types/sim.yaml``) that ``--lava-devices`` loads like any lab::

    with SimLab(4, workdir) as lab:
        lab.write_devices(workdir / "devices")
        ...  # pytest -n 4 --lava-devices workdir/devices ...

Run it by hand to get a lab that stays up until Ctrl-C::

    python -m pytest_lava.testing.simlab --boards 4 --dir /tmp/simlab
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import yaml

# the directory holding pytest_lava/: a board process (``python -m``) imports this very copy
IMPORT_ROOT = Path(__file__).resolve().parents[2]
PROMPT_MASTER = r"root@master:~# "
PROMPT_TESTER = r"root@linaro:~# "


@dataclass
class SimBoardProcess:
    name: str
    state_dir: Path
    proc: subprocess.Popen[bytes]
    port: int = 0
    address: str = "127.0.0.1"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def power_command(self, action: str) -> str:
        # the PDU client by path, without site or the package: it starts in ~40 ms, not ~110 ms
        argv = [sys.executable, "-I", "-S", str(Path(__file__).with_name("simpower.py")), action,
                "--state-dir", str(self.state_dir)]
        return shlex.join(argv)


def start_board(name: str, state_dir: Path, *, boot_time: float = 2.0, latency: float = 0.02,
                on_reset: str = "keep", powered: bool = True, timeout: float = 30.0,
                address: str = "127.0.0.1") -> SimBoardProcess:
    """Start one simulated board; returns once its console port is known."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file = state_dir / "simboard.json"
    state_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "pytest_lava.testing.simboard", "serve", "--port", "0", "--name", name,
            "--state-dir", str(state_dir), "--boot-time", str(boot_time), "--latency", str(latency),
            "--on-reset", on_reset, "--address", address]
    if not powered:
        argv.append("--off")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(IMPORT_ROOT), env.get("PYTHONPATH", "")) if p)
    log = open(state_dir / "simboard.log", "wb")  # noqa: SIM115 - owned by the child from here on
    try:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    finally:
        log.close()
    board = SimBoardProcess(name, state_dir, proc, address=address)
    end = time.monotonic() + timeout
    while True:
        if state_file.exists():
            info = json.loads(state_file.read_text())
            if info.get("pid") == proc.pid:
                board.port = int(info["port"])
                return board
        if proc.poll() is not None or time.monotonic() > end:
            stop_board(board)
            tail = (state_dir / "simboard.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"simulated board {name} did not start:\n{tail}")
        time.sleep(0.02)


def stop_board(board: SimBoardProcess, grace: float = 3.0) -> None:
    """Stop a board by its PID: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if board.proc.poll() is None:
        board.proc.send_signal(signal.SIGTERM)
        try:
            board.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            board.proc.kill()
            board.proc.wait(timeout=grace)


def write_devices(boards: list[SimBoardProcess], directory: Path, *, device_type: str = "sim",
                  tags: list[str] | None = None) -> list[Path]:
    """Write ``<board>.yaml`` for each board and ``device-types/<device_type>.yaml``; the board files."""
    directory.mkdir(parents=True, exist_ok=True)
    types_dir = directory / "device-types"
    types_dir.mkdir(exist_ok=True)
    device_type_data = {
        "board_type": "master",
        "master_str": PROMPT_MASTER,
        "tester_str": PROMPT_TESTER,
        "image_boot_msg": "Linux version",
        "interrupt_boot_prompt": "Hit any key to stop autoboot",
        "bootloader_prompt": "=> ",
        "boot_cmds": ["setenv sim_image linaro", "boot"],
        "soft_boot_cmd": "reboot",
        "power_timeout": 10,
        "boot_linaro_timeout": 60,
        "health_failure_threshold": 3,
    }
    (types_dir / f"{device_type}.yaml").write_text(
        "# a SIMULATED board (pytest_lava/testing/simboard.py): a fake for benchmarks and tests\n"
        + yaml.safe_dump(device_type_data, sort_keys=False))
    written = []
    for board in boards:
        data: dict[str, object] = {
            "device_type": device_type,
            "connection": f"socket://{board.address}:{board.port}",
            "hard_reset_command": board.power_command("reset"),
            "power_on_command": board.power_command("on"),
            "power_off_command": board.power_command("off"),
        }
        if tags:
            data["tags"] = list(tags)
        path = directory / f"{board.name}.yaml"
        path.write_text(f"# simulated board (a fake), pid {board.pid}\n" + yaml.safe_dump(data, sort_keys=False))
        written.append(path)
    return written


class SimLab:
    """``n`` simulated boards named ``<prefix>-01`` …, stopped by PID when the block ends."""

    def __init__(self, n: int, workdir: Path, *, prefix: str = "sim", **board_options: object) -> None:
        self.n, self.workdir, self.prefix = n, Path(workdir), prefix
        self.options = board_options
        self.boards: list[SimBoardProcess] = []

    def start(self) -> SimLab:
        try:
            for i in range(1, self.n + 1):
                name = f"{self.prefix}-{i:02d}"
                self.boards.append(start_board(name, self.workdir / "boards" / name, **self.options))  # type: ignore[arg-type]
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for board in self.boards:
            stop_board(board)

    def write_devices(self, directory: Path, **kwargs: object) -> list[Path]:
        return write_devices(self.boards, directory, **kwargs)  # type: ignore[arg-type]

    def __enter__(self) -> SimLab:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_lava.testing.simlab",
                                     description="Run N simulated boards (fakes) until Ctrl-C or SIGTERM.")
    parser.add_argument("--boards", type=int, default=4)
    parser.add_argument("--dir", type=Path, required=True, help="work dir; devices go to DIR/devices")
    parser.add_argument("--boot-time", type=float, default=2.0)
    args = parser.parse_args()

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # `kill PID` stops the boards too, not only Ctrl-C

    signal.signal(signal.SIGTERM, stop)
    with SimLab(args.boards, args.dir, boot_time=args.boot_time) as lab:
        lab.write_devices(args.dir / "devices")
        for board in lab.boards:
            print(f"{board.name}: pid {board.pid} console 127.0.0.1:{board.port}", flush=True)
        print(f"devices: {args.dir / 'devices'} (Ctrl-C stops the boards)", flush=True)
        try:
            while all(b.proc.poll() is None for b in lab.boards):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
