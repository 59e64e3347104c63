"""The shell of the SIMULATED board (:mod:`.simboard`) — a FAKE, for tests and benchmarks.

A tiny POSIX-shell look-alike that executes nothing on the host: every command is a Python
builtin working on a sandbox directory that stands for the board's root file system. It knows
just enough for a harness's shell session: words with quotes and ``$VAR``/``${VAR}``/``$?``/``$$``
expansion, ``;`` ``&&`` ``||``, ``>``/``>>`` redirection into the sandbox, and the commands a
harness and simple test scripts use (``echo``, ``printf``, ``test``, ``cat``, ``sleep``,
``uname``, ``dmesg``, ``reboot`` …). An unknown command answers ``not found`` with status 127,
as ``sh`` does. No pipes, no command substitution, no here-documents.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .simsyntax import ShellSyntaxError, split_commands, split_words

KERNEL = "6.1.0-sim"


class Reboot(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The shell asked the board to reboot (``reboot``)."""


class PowerOff(Exception):  # noqa: N818
    """The shell asked the board to power off (``poweroff``/``halt``)."""


class Logout(Exception):  # noqa: N818
    """``exit``: the console session ends and a new one starts (auto-login)."""


@dataclass
class SimShell:
    """One shell on the simulated board; ``root`` is the sandbox holding its file system."""

    root: Path
    hostname: str
    write: Callable[[str], None]  # console output ("\n" line ends; the board adds "\r")
    sleep: Callable[[float], None]  # interruptible by power loss
    dmesg: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "/root"

    def __post_init__(self) -> None:
        self.env.update({"?": "0", "$": str(os.getpid()), "#": "0", "HOME": "/root", "USER": "root",
                         "HOSTNAME": self.hostname, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        self.env.setdefault("PS1", f"root@{self.hostname}:~# ")
        for sub in ("root", "tmp", "etc", "proc"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "etc/hostname").write_text(self.hostname + "\n")
        (self.root / "proc/version").write_text(f"Linux version {KERNEL} (simulated board)\n")

    @property
    def prompt(self) -> str:
        return self.env.get("PS1", "# ")

    # -- running lines -------------------------------------------------------------------------

    def run_line(self, line: str) -> int:
        """Run one command line; its exit status (also in ``$?``)."""
        try:
            commands = split_commands(line)
        except ShellSyntaxError as exc:
            return self._status(self._err(f"sh: 1: {exc}", 2))
        status = int(self.env["?"])
        skip = False
        for text, op in commands:
            if op in ("|", "&"):
                self.write(f"sh: 1: '{op}' is not supported by the simulated board\n")
                return self._status(2)
            if not skip:
                try:  # expand now: $? is the status of the command before
                    argv = [w for kind, w in split_words(text, self.env) if kind == "word"]
                except ShellSyntaxError as exc:
                    argv, status = [], self._status(self._err(f"sh: 1: {exc}", 2))
                if argv:
                    status = self._status(self._run(argv))
            skip = (op == "&&" and status != 0) or (op == "||" and status == 0)
        return status

    def _status(self, rc: int) -> int:
        self.env["?"] = str(rc)
        return rc

    def _err(self, text: str, rc: int = 1) -> int:
        self.write(text + "\n")
        return rc

    def _run(self, argv: list[str]) -> int:
        while argv and re.fullmatch(r"[A-Za-z_]\w*=.*", argv[0]):
            name, _, value = argv.pop(0).partition("=")
            self.env[name] = value
        if not argv:
            return 0
        argv, target, append = self._redirection(argv)
        if target is None:
            return self._call(argv)
        out: list[str] = []
        real_write, self.write = self.write, out.append
        try:
            rc = self._call(argv)
        finally:
            self.write = real_write
        if target != "/dev/null":
            with open(self.path(target), "a" if append else "w") as f:
                f.write("".join(out))
        return rc

    @staticmethod
    def _redirection(argv: list[str]) -> tuple[list[str], str | None, bool]:
        words: list[str] = []
        target, append = None, False
        it = iter(argv)
        for word in it:
            m = re.fullmatch(r"([12]?)(>>?)(.*)", word)
            if m and word not in ("2>&1", ">&2"):
                path = m.group(3) or next(it, "/dev/null")
                if m.group(1) != "2":
                    target, append = path, m.group(2) == ">>"
            elif word not in ("2>&1", ">&2"):
                words.append(word)
        return words, target, append

    def path(self, name: str) -> Path:
        """The sandbox path of a board path (never outside the sandbox)."""
        board_path = posixpath.normpath(posixpath.join(self.cwd, name))
        return self.root / board_path.lstrip("/")

    def _call(self, argv: list[str]) -> int:
        name, args = argv[0], argv[1:]
        alias = {"[": "test", ".": "source"}.get(name, name)
        handler = getattr(self, "cmd_" + alias, None)
        if name in ("reboot", "poweroff", "halt", "exit"):
            raise {"reboot": Reboot, "exit": Logout}.get(name, PowerOff)()
        if handler is None:
            return self._err(f"sh: 1: {name}: not found", 127)
        try:
            return int(handler(args))
        except (OSError, ValueError, IndexError) as exc:
            return self._err(f"{name}: {exc}", 1)

    # -- builtins ------------------------------------------------------------------------------

    def cmd_echo(self, args: list[str]) -> int:
        newline = "\n"
        if args[:1] == ["-n"]:
            args, newline = args[1:], ""
        self.write(" ".join(args) + newline)
        return 0

    def cmd_printf(self, args: list[str]) -> int:
        fmt, values = args[0], args[1:]
        fmt = fmt.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")
        specs = re.findall(r"%[-\d.]*[sdiu]", fmt)
        while True:
            chunk, values = values[: len(specs)], values[len(specs) :]
            chunk += [""] * (len(specs) - len(chunk))

            def conv(spec: str, value: str) -> str | int:
                return int(value or 0) if spec[-1] in "diu" else value

            pyfmt = re.sub(r"%([-\d.]*)[iu]", r"%\1d", fmt)
            self.write(pyfmt % tuple(conv(s, v) for s, v in zip(specs, chunk, strict=True)))
            if not values or not specs:
                return 0

    def cmd_true(self, args: list[str]) -> int:
        return 0

    cmd_stty = cmd_set = cmd_trap = cmd_ulimit = cmd_alias = cmd_sync = cmd_true

    def cmd_false(self, args: list[str]) -> int:
        return 1

    def cmd_export(self, args: list[str]) -> int:
        for arg in args:
            if "=" in arg:
                name, _, value = arg.partition("=")
                self.env[name] = value
        return 0

    def cmd_unset(self, args: list[str]) -> int:
        for arg in args:
            self.env.pop(arg, None)
        return 0

    def cmd_cd(self, args: list[str]) -> int:
        target = posixpath.normpath(posixpath.join(self.cwd, args[0] if args else "/root"))
        if not self.path(target).is_dir():
            return self._err(f"sh: 1: cd: can't cd to {args[0]}", 2)
        self.cwd = target
        return 0

    def cmd_pwd(self, args: list[str]) -> int:
        self.write(self.cwd + "\n")
        return 0

    def cmd_sleep(self, args: list[str]) -> int:
        self.sleep(float(args[0]))
        return 0

    def cmd_cat(self, args: list[str]) -> int:
        rc = 0
        for name in args:
            p = self.path(name)
            if p.is_file():
                self.write(p.read_text(errors="replace"))
            else:
                rc = self._err(f"cat: {name}: No such file or directory")
        return rc

    def cmd_ls(self, args: list[str]) -> int:
        names = [a for a in args if not a.startswith("-")] or ["."]
        for name in names:
            p = self.path(name)
            if not p.exists():
                return self._err(f"ls: cannot access '{name}': No such file or directory", 2)
            self.write("\n".join(sorted(x.name for x in p.iterdir())) + "\n" if p.is_dir() else name + "\n")
        return 0

    def cmd_mkdir(self, args: list[str]) -> int:
        for name in (a for a in args if not a.startswith("-")):
            self.path(name).mkdir(parents="-p" in args, exist_ok="-p" in args)
        return 0

    def cmd_touch(self, args: list[str]) -> int:
        for name in args:
            self.path(name).touch()
        return 0

    def cmd_rm(self, args: list[str]) -> int:
        for name in (a for a in args if not a.startswith("-")):
            p = self.path(name)
            if p.is_dir() and "r" in "".join(a for a in args if a.startswith("-")):
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
            elif "f" not in "".join(a for a in args if a.startswith("-")):
                return self._err(f"rm: cannot remove '{name}': No such file or directory")
        return 0

    def cmd_uname(self, args: list[str]) -> int:
        parts = {"-s": "Linux", "-n": self.hostname, "-r": KERNEL, "-m": "x86_64"}
        if "-a" in args:
            self.write(f"Linux {self.hostname} {KERNEL} #1 SMP PREEMPT_DYNAMIC (simulated) x86_64 GNU/Linux\n")
        else:
            self.write(" ".join(parts[a] for a in (args or ["-s"]) if a in parts) + "\n")
        return 0

    def cmd_hostname(self, args: list[str]) -> int:
        self.write(self.hostname + "\n")
        return 0

    def cmd_whoami(self, args: list[str]) -> int:
        self.write("root\n")
        return 0

    def cmd_id(self, args: list[str]) -> int:
        self.write("uid=0(root) gid=0(root) groups=0(root)\n")
        return 0

    def cmd_date(self, args: list[str]) -> int:
        self.write(time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime()) + "\n")
        return 0

    def cmd_dmesg(self, args: list[str]) -> int:
        if "-n" not in args and not any(a.startswith("-n") for a in args):
            self.write("".join(line + "\n" for line in self.dmesg))
        return 0

    def cmd_seq(self, args: list[str]) -> int:
        lo, hi = (1, int(args[0])) if len(args) == 1 else (int(args[0]), int(args[1]))
        self.write("".join(f"{i}\n" for i in range(lo, hi + 1)))
        return 0

    def cmd_test(self, args: list[str]) -> int:
        if args[-1:] == ["]"]:
            args = args[:-1]
        negate = args[:1] == ["!"]
        args = args[1:] if negate else args
        result = self._test(args)
        return 0 if result != negate else 1

    def _test(self, a: list[str]) -> bool:
        if len(a) == 1:
            return a[0] != ""
        if len(a) == 2:
            tests: dict[str, Callable[[str], bool]] = {
                "-n": lambda s: s != "", "-z": lambda s: s == "",
                "-e": lambda s: self.path(s).exists(), "-f": lambda s: self.path(s).is_file(),
                "-d": lambda s: self.path(s).is_dir(),
            }
            return tests[a[0]](a[1])
        if len(a) == 3:
            x, op, y = a
            if op in ("=", "=="):
                return x == y
            if op == "!=":
                return x != y
            ints = {"-eq": int.__eq__, "-ne": int.__ne__, "-lt": int.__lt__, "-le": int.__le__,
                    "-gt": int.__gt__, "-ge": int.__ge__}
            return bool(ints[op](int(x), int(y)))
        return False

    def cmd_sh(self, args: list[str]) -> int:
        """``sh FILE`` / ``. FILE``: run a script from the sandbox, line by line (in this shell)."""
        if not args:
            return 0
        if args[0] == "-c":
            return self.run_line(" ".join(args[1:2]))
        rc = 0
        for line in self.path(args[0]).read_text().splitlines():
            rc = self.run_line(line)
        return rc

    def cmd_source(self, args: list[str]) -> int:
        return self.cmd_sh(args[:1])
