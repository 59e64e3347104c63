"""A FAKE ARM FVP / Fast Model for tests — not an ARM product, nothing is simulated.

It prints the lines a Fixed Virtual Platform prints (``terminal_0: Listening for serial connection
on port N``, ``Simulation is started``, or ``ERROR: License check failed!``), listens on the port it
printed (127.0.0.1, chosen by the kernel) as a telnet server that announces options like FVP's,
and behind it runs a real ``sh -i`` on a pty of this host with the prompt ``root@linaro:~# ``
(so a board driver's console, prompt and command handling run for real). Modes::

    python -m pytest_lava.testing.fake_fvp [--mode ok|licence-fail|no-port|crash]
           [--crash-after SECONDS] [-a AXF] [-C name=value ...] [other arguments, printed]

``licence-fail`` prints the licence error and then hangs (like a real model waiting for a
licence), ``no-port`` never prints a port, ``crash`` exits with status 3 ``--crash-after``
seconds after the console connected. Each ``-C`` option is echoed as ``fake FVP: option name=value``.
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import shutil
import socket
import subprocess
import sys
import time

PROMPT = "root@linaro:~# "
BANNER = "Fast Models [FAKE FVP stand-in of pytest-lava's tests, not an ARM product]"
TELNET_HELLO = bytes([255, 251, 1, 255, 251, 3, 255, 253, 3])  # IAC WILL ECHO, IAC WILL SGA, IAC DO SGA


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def serve(listener: socket.socket, crash_after: float | None) -> int:
    listener.settimeout(600)
    conn, _ = listener.accept()
    conn.sendall(TELNET_HELLO + b"\r\nLinux version 0.0-fake-fvp (a fake simulator, nothing booted)\r\n")
    shell = shutil.which("busybox")
    argv = [shell, "sh", "-i"] if shell else ["/bin/sh", "-i"]
    master, slave = pty.openpty()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PS1": PROMPT, "HOME": "/tmp", "TERM": "dumb"}
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                            close_fds=True)
    os.close(slave)
    started = time.monotonic()
    try:
        while proc.poll() is None:
            if crash_after is not None and time.monotonic() - started > crash_after:
                say("fake FVP: simulated crash")
                return 3
            ready, _, _ = select.select([conn, master], [], [], 0.2)
            if conn in ready:
                data = conn.recv(4096)
                if not data:
                    return 0
                data = data.replace(b"\xff\xff", b"\xff")
                os.write(master, data)
            if master in ready:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    return 0
                conn.sendall(data.replace(b"\xff", b"\xff\xff"))
        return 0
    finally:
        if proc.poll() is None:
            proc.kill()
        conn.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("ok", "licence-fail", "no-port", "crash"), default="ok")
    ap.add_argument("--crash-after", type=float, default=1.0)
    ap.add_argument("-C", dest="options", action="append", default=[])
    args, rest = ap.parse_known_args(argv)
    say(BANNER)
    for option in args.options:
        say(f"fake FVP: option {option}")
    if rest:
        say(f"fake FVP: arguments {' '.join(rest)}")
    if args.mode == "licence-fail":
        say("ERROR: License check failed!")
        time.sleep(3600)  # a real model may hang here: the harness must not wait for it
        return 1
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    if args.mode == "no-port":
        time.sleep(3600)
        return 1
    say(f"terminal_0: Listening for serial connection on port {port}")
    say(f"terminal_1: Listening for serial connection on port {port + 1}")
    say("Simulation is started")
    return serve(listener, args.crash_after if args.mode == "crash" else None)


if __name__ == "__main__":
    sys.exit(main())
