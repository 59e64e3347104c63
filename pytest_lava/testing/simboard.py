"""A SIMULATED board — a FAKE, not hardware and not an emulator — for tests and benchmarks.

One small process serves a scripted serial console over TCP on 127.0.0.1, the way ser2net serves
a real board's UART: after power-on it prints a U-Boot banner with an autoboot countdown (any key
stops it at a ``=> `` prompt), a kernel boot log of about 50 lines over ``--boot-time`` seconds
(2 s by default), then a root shell prompt (``root@master:~# ``). The shell is
:class:`~pytest_lava.testing.simshell.SimShell`: builtins only, nothing runs on the host, and
every command line takes ``--latency`` (20 ms) before it answers. Input is echoed like a tty's;
output lines end in CRLF.

Power is controlled like a lab PDU, from another process::

    python -m pytest_lava.testing.simboard serve --port 7001 --name sim-01 --state-dir /tmp/sim-01
    python -m pytest_lava.testing.simboard power reset --state-dir /tmp/sim-01  # also: on, off, status, stop

``serve`` writes ``simboard.json`` (pid, name, console port, control port) into the state dir;
``power`` reads it and sends the command to the board's control port. With ``--on-reset keep``
(the default, like ser2net in front of a UART) a console connection survives a power cycle and
sees the new boot log; with ``--on-reset drop`` (like QEMU's chardev going away) power-off closes
every connection and the listening socket, and power-on listens again on the same port.

``--image linaro`` in U-Boot (``setenv sim_image linaro``, or ``bootargs`` naming ``testrootfs``)
boots the "test image" with the ``root@linaro`` prompt instead of the master image.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import simpower
from .simpower import STATE_FILE, send_power
from .simshell import Logout, PowerOff, Reboot, SimShell
from .simtexts import UBOOT_BANNER, boot_log

__all__ = ["STATE_FILE", "SimBoard", "send_power"]


class PowerCut(Exception):  # noqa: N818 - control flow: the power state changed under the board
    pass


class SimBoard:
    def __init__(self, name: str, port: int, state_dir: Path, *, boot_time: float = 2.0,
                 latency: float = 0.02, on_reset: str = "keep", powered: bool = True,
                 address: str = "127.0.0.1") -> None:
        self.name, self.port, self.state_dir = name, port, Path(state_dir)
        self.address = address  # where the console and the control port listen
        self.boot_time, self.latency, self.on_reset = boot_time, latency, on_reset
        self.root = self.state_dir / "rootfs"
        self._cond = threading.Condition()
        self._powered, self._gen, self._stop = powered, 0, False
        self._input: queue.Queue[bytes] = queue.Queue()
        self._pending = b""
        self._skip_lf = False
        self._clients: list[socket.socket] = []
        self._clients_lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.env: dict[str, str] = {}

    # -- network -----------------------------------------------------------------------------

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.address, self.port))
        sock.listen(8)
        sock.settimeout(0.2)
        self.port = sock.getsockname()[1]
        self._listener = sock

    def _accept_loop(self) -> None:
        while not self._stop:
            sock = self._listener
            if sock is None:
                time.sleep(0.05)
                continue
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(5.0)  # a stuck client must not stall the board
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._clients_lock:
                self._clients.append(conn)
            threading.Thread(target=self._read_client, args=(conn,), daemon=True).start()

    def _read_client(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                break
            if self._powered:
                self._input.put(data)
        self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        with self._clients_lock:
            if conn in self._clients:
                self._clients.remove(conn)
        try:
            conn.close()
        except OSError:
            pass

    def emit(self, text: str) -> None:
        data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode()
        with self._clients_lock:
            clients = list(self._clients)
        for conn in clients:
            try:
                conn.sendall(data)
            except OSError:
                self._drop(conn)

    # -- power -------------------------------------------------------------------------------

    def power(self, command: str) -> str:
        with self._cond:
            if command in ("off", "reset") and self._powered:
                self._powered = False
                self._gen += 1
                if self.on_reset == "drop":
                    self._close_console()
            if command in ("on", "reset") and not self._powered:
                if self.on_reset == "drop" and self._listener is None:
                    self._listen()
                self._input = queue.Queue()
                self._powered = True
                self._gen += 1
            if command == "stop":
                self._stop = True
                self._gen += 1
            self._cond.notify_all()
            return "on" if self._powered else "off"

    def _close_console(self) -> None:
        if self._listener is not None:
            try:  # shutdown stops listening at once, even while the accept thread polls it
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for conn in clients:
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass

    def _control_loop(self, sock: socket.socket) -> None:
        sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(5.0)
                try:
                    command = conn.recv(64).decode(errors="replace").strip()
                    if command in ("on", "off", "reset", "status", "stop"):
                        state = self.power(command)
                        print(f"simboard {self.name}: power {command} -> {state}", flush=True)
                        conn.sendall(f"ok {state}\n".encode())
                    else:
                        conn.sendall(f"error unknown command {command!r}\n".encode())
                except OSError:
                    pass

    # -- the machine -------------------------------------------------------------------------

    def _check(self, gen: int) -> None:
        if self._gen != gen:
            raise PowerCut()

    def _sleep(self, gen: int, seconds: float) -> None:
        end = time.monotonic() + seconds
        with self._cond:
            while self._gen == gen and (left := end - time.monotonic()) > 0:
                self._cond.wait(left)
        self._check(gen)

    def _read_byte(self, gen: int, timeout: float | None) -> int | None:
        """One input byte, or None after ``timeout`` (None = wait forever)."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self._pending:
            self._check(gen)
            wait = 0.1 if end is None else min(0.1, end - time.monotonic())
            if wait <= 0:
                return None
            try:
                self._pending = self._input.get(timeout=wait)
            except queue.Empty:
                continue
        byte, self._pending = self._pending[0], self._pending[1:]
        return byte

    def _readline(self, gen: int) -> str | None:
        """A line typed on the console, echoed as a tty does; None on Ctrl-C."""
        line = bytearray()
        while True:
            b = self._read_byte(gen, None)
            assert b is not None
            if b == 10 and self._skip_lf:
                self._skip_lf = False
                continue
            self._skip_lf = b == 13
            if b in (10, 13):
                self.emit("\n")
                return line.decode(errors="replace")
            if b == 3:
                self.emit("^C\n")
                return None
            if b in (8, 127):
                if line:
                    line.pop()
                    self.emit("\b \b")
                continue
            line.append(b)
            self.emit(chr(b) if b < 128 else "?")

    def _machine(self) -> None:
        while not self._stop:
            with self._cond:
                while not self._powered and not self._stop:
                    self._cond.wait()
                gen = self._gen
            if self._stop:
                return
            try:
                self._life(gen)
            except PowerCut:
                continue
            except PowerOff:
                self.emit("reboot: Power down\n")
                with self._cond:
                    if self._gen == gen:
                        self._powered = False
                        self._gen += 1

    def _life(self, gen: int) -> None:
        """One boot and the shell sessions that follow it; returns on a soft reboot."""
        self._pending = b""
        step = self.boot_time / 60
        for line in UBOOT_BANNER:
            self.emit(line + "\n")
            self._sleep(gen, step)
        env = {"bootargs": "console=ttyS0,115200 root=/dev/vda2 rw", "sim_image": "master"}
        for left in (2, 1):  # a real countdown ticks seconds; this one ticks 5 % of the boot time
            self.emit(f"\rHit any key to stop autoboot: {left:2d} ")
            if self._read_byte(gen, self.boot_time * 0.05) is not None:
                self.emit("\n")
                if not self._bootloader(gen, env):
                    return  # "reset" from the U-Boot prompt
                break
        else:
            self.emit("\rHit any key to stop autoboot:  0 \n")
        linaro = env.get("sim_image") == "linaro" or "testrootfs" in env.get("bootargs", "")
        hostname = "linaro" if linaro else "master"
        self.emit("Starting kernel ...\n\n")
        log = boot_log(hostname, env["bootargs"])
        for line in log:
            self.emit(line + "\n")
            self._sleep(gen, step * 0.75 * 60 / len(log))
        dmesg = [line for line in log if line.startswith("[")]
        self._pending = b""
        self._input = queue.Queue()  # typing during boot is lost, as on a real board
        while True:
            try:
                self._shell(gen, hostname, dmesg)
            except Logout:
                self.emit("logout\n")
                self._sleep(gen, 0.3)
                self.emit(f"\nDebian GNU/Linux 12 {hostname} ttyS0\n\n{hostname} login: root (automatic login)\n\n")
            except Reboot:
                self.emit("[  OK  ] Reached target System Reboot.\nreboot: Restarting system\n")
                self._sleep(gen, 0.2)
                return

    def _bootloader(self, gen: int, env: dict[str, str]) -> bool:
        """The U-Boot prompt; True to go on booting, False on ``reset``."""
        while True:
            self.emit("=> ")
            line = self._readline(gen)
            if line is None:
                continue
            self._sleep(gen, self.latency)
            words = line.split()
            if not words:
                continue
            cmd = words[0]
            if cmd in ("boot", "bootm", "bootz", "booti") or words[:2] == ["run", "bootcmd"]:
                return True
            if cmd == "reset":
                self.emit("resetting ...\n")
                return False
            if cmd == "setenv" and len(words) >= 2:
                value = line.split(None, 2)[2] if len(words) > 2 else ""
                env[words[1]] = value.strip("'\"")
            elif cmd == "printenv":
                self.emit("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
            elif cmd == "echo":
                self.emit(" ".join(words[1:]) + "\n")
            elif cmd == "version":
                self.emit(UBOOT_BANNER[1] + "\n")
            else:
                self.emit(f"Unknown command '{cmd}' - try 'help'\n")

    def _shell(self, gen: int, hostname: str, dmesg: list[str]) -> None:
        shell = SimShell(self.root, hostname, self.emit, lambda s: self._sleep(gen, s), dmesg=dmesg)
        while True:
            self.emit(shell.prompt)
            line = self._readline(gen)
            if line is None:
                shell.env["?"] = "130"
                continue
            self._sleep(gen, self.latency)
            if line.strip():
                shell.run_line(line)

    # -- serving -----------------------------------------------------------------------------

    def serve(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(exist_ok=True)
        control = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        control.bind((self.address, 0))
        control.listen(8)
        self._listen()
        info = {"pid": os.getpid(), "name": self.name, "port": self.port, "address": self.address,
                "control_port": control.getsockname()[1], "on_reset": self.on_reset}
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        os.replace(tmp, self.state_dir / STATE_FILE)
        print(f"simboard {self.name}: console {self.address}:{self.port} (a simulated board)", flush=True)
        for target in (self._accept_loop, lambda: self._control_loop(control)):
            threading.Thread(target=target, daemon=True).start()
        try:
            self._machine()
        finally:
            self._stop = True
            control.close()
            self._close_console()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_lava.testing.simboard",
                                     description="A simulated board (a fake) serving a console on TCP.")
    sub = parser.add_subparsers(dest="what", required=True)
    serve = sub.add_parser("serve", help="run the board (console on 127.0.0.1:PORT)")
    serve.add_argument("--port", type=int, default=0, help="console port (0: pick one, see simboard.json)")
    serve.add_argument("--name", default="sim")
    serve.add_argument("--state-dir", type=Path, required=True)
    serve.add_argument("--boot-time", type=float, default=2.0)
    serve.add_argument("--latency", type=float, default=0.02, help="seconds per command line")
    serve.add_argument("--on-reset", choices=("keep", "drop"), default="keep")
    serve.add_argument("--off", action="store_true", help="start powered off")
    serve.add_argument("--address", default="127.0.0.1", help="the local address to listen on")
    simpower.add_arguments(sub.add_parser("power", help="power the board serving --state-dir on/off/reset"))
    args = parser.parse_args(argv)
    if args.what == "power":
        return simpower.run(args)
    board = SimBoard(args.name, args.port, args.state_dir, boot_time=args.boot_time, latency=args.latency,
                     on_reset=args.on_reset, powered=not args.off, address=args.address)
    board.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
