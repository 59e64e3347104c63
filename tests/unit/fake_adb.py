"""A FAKE ``adb`` client + server for fast tests of the adb layer's logic (not the protocol: the
real client against the lab's adbd does that, tests/unit/test_adb_real.py and the lab job).

Server: ``fake_adb -L tcp:PORT server nodaemon`` listens on 127.0.0.1:PORT (accepting nothing
useful) and writes its PID to ``$FAKE_ADB/server.pid``; ``kill-server`` kills that PID.
Client calls act on a sandbox ``$FAKE_ADB/root`` standing for the device's file system: ``shell``
runs ``sh -c`` there with ``/data`` and ``/system`` rewritten into the sandbox, ``push``/``pull``
copy files. ``$FAKE_ADB/state.json`` changes behaviour:

    {"connect": "refuse"}             connect prints adb's "failed to connect" (exit status 0, like adb)
    {"boot_completed": "0"}           getprop sys.boot_completed answers 0 (default 1)
    {"push": "fail"}                  push fails like adb (exit status 1, "adb: error: ...")
    {"state": "offline"}              get-state prints "error: device offline"
    {"props": {"k": "v"}}             extra properties
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

HOME = Path(os.environ["FAKE_ADB"])
ROOT = HOME / "root"
PROPS = {"ro.build.version.release": "lab-fake", "ro.product.model": "fake", "sys.boot_completed": "1"}


def state() -> dict:
    f = HOME / "state.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def host_path(remote: str) -> Path:
    return ROOT / remote.lstrip("/")


def serve(port: int) -> int:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(8)
    (HOME / "server.pid").write_text(str(os.getpid()))
    while True:
        conn, _ = s.accept()
        conn.close()


def shell(cmd: str) -> int:
    st = state()
    props = {**PROPS, **st.get("props", {})}
    if "boot_completed" in st:
        props["sys.boot_completed"] = st["boot_completed"]
    words = cmd.split()
    if words[:1] == ["getprop"]:
        if len(words) == 1:
            print("\n".join(f"[{k}]: [{v}]" for k, v in props.items()))
        else:
            print(props.get(words[1], ""))
        return 0
    for top in ("/data", "/system"):
        cmd = cmd.replace(f" {top}/", f" {ROOT}{top}/").replace(f"={top}/", f"={ROOT}{top}/")
    return subprocess.call(["sh", "-c", cmd], cwd=ROOT)


def main(argv: list[str]) -> int:
    HOME.mkdir(parents=True, exist_ok=True)
    ROOT.mkdir(exist_ok=True)
    if argv[:1] == ["-L"]:
        return serve(int(argv[1].rsplit(":", 1)[1]))
    if argv[:1] == ["-P"]:
        argv = argv[2:]
    if argv[:1] == ["-s"]:
        argv = argv[2:]
    st = state()
    cmd, args = argv[0], argv[1:]
    if cmd == "kill-server":
        pid = HOME / "server.pid"
        if pid.is_file():
            try:
                os.kill(int(pid.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
        return 0
    if cmd == "connect":
        if st.get("connect") == "refuse":
            print(f"failed to connect to '{args[0]}': Connection refused")
        else:
            print(f"connected to {args[0]}")
        return 0
    if cmd == "disconnect":
        print(f"disconnected {args[0]}")
        return 0
    if cmd == "get-state":
        if st.get("state", "device") != "device":
            print(f"error: device {st['state']}", file=sys.stderr)
            return 1
        print("device")
        return 0
    if cmd == "shell":
        sys.stdout.flush()
        return shell(" ".join(args))
    if cmd == "push":
        if st.get("push") == "fail":
            print(f"adb: error: failed to copy '{args[0]}' to '{args[1]}': remote No space left on device",
                  file=sys.stderr)
            return 1
        target = host_path(args[1])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args[0], target)
        print(f"{args[0]}: 1 file pushed.")
        return 0
    if cmd == "pull":
        shutil.copyfile(host_path(args[0]), args[1])
        return 0
    print(f"fake adb: unknown command {cmd}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
