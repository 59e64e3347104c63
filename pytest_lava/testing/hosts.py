"""Dispatcher "hosts" on one machine, for multi-host tests: network namespaces with an sshd each.

Each host is a network namespace with its own hostname (a UTS namespace for its sshd and what it
starts) and one address on a private bridge; the bridge's own address in this namespace is where
the test's services listen (PostgreSQL, simulated boards), so the hosts reach them and nothing
outside this machine does. Each sshd accepts one key made for the run; ``ssh_config`` names the
hosts, so ``--tx ssh=<host>//ssh_config=<file>//python=…`` starts pytest-xdist workers on them.

Needs root, ``ip`` (iproute2), ``unshare`` and ``sshd`` (Debian: openssh-server). Everything is
removed on exit: the processes in each namespace are killed by PID, the namespaces, links and
bridge deleted.

    with Hosts(["host0", "host1"], workdir) as hosts:
        hosts.bridge_address            # e.g. 10.219.37.1: bind services here
        hosts.tx("host0", python)       # an xdist --tx spec
        hosts.kill("host1")             # SIGKILL everything running on host1
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType


class HostsUnavailable(RuntimeError):
    """This machine cannot make namespace hosts (not root, or a tool missing)."""


def check_tools() -> None:
    if os.geteuid() != 0:
        raise HostsUnavailable("namespace hosts need root")
    for tool in ("ip", "unshare", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise HostsUnavailable(f"{tool} is not installed")
    if not Path("/usr/sbin/sshd").exists():
        raise HostsUnavailable("sshd is not installed (Debian: apt-get install openssh-server)")


def _run(*argv: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done


class Hosts:
    def __init__(self, names: list[str], workdir: Path) -> None:
        check_tools()
        self.names = list(names)
        self.workdir = Path(workdir)
        tag = f"pl{os.getpid() % 10000}"
        self.bridge = f"{tag}br"
        self.subnet = f"10.219.{os.getpid() % 200 + 20}"
        self.bridge_address = f"{self.subnet}.1"
        self.namespaces = {name: f"{tag}-{name}" for name in self.names}
        self.addresses = {name: f"{self.subnet}.{10 + i}" for i, name in enumerate(self.names)}
        self.veths = {name: f"{tag}v{i}" for i, name in enumerate(self.names)}
        self.sshd: dict[str, subprocess.Popen[bytes]] = {}
        self.ssh_config = self.workdir / "ssh_config"
        self.key = self.workdir / "id_ed25519"

    def tx(self, name: str, python: str, chdir: Path | None = None) -> str:
        spec = f"ssh={name}//ssh_config={self.ssh_config}//python={python}"
        return spec + (f"//chdir={chdir}" if chdir else "")

    def ssh(self, name: str, *command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return _run("ssh", "-F", str(self.ssh_config), name, *command, timeout=timeout, check=False)

    # -- set-up ----------------------------------------------------------------------------------

    def start(self) -> Hosts:
        try:
            self._network()
            self._keys()
            for name in self.names:
                self._start_sshd(name)
            for name in self.names:
                self._wait_for_ssh(name)
        except BaseException:
            self.stop()
            raise
        return self

    def _network(self) -> None:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.bridge_address}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for name in self.names:
            ns, veth = self.namespaces[name], self.veths[name]
            _run("ip", "netns", "add", ns)
            _run("ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
            _run("ip", "link", "set", f"{veth}p", "netns", ns)
            _run("ip", "link", "set", veth, "master", self.bridge)
            _run("ip", "link", "set", veth, "up")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{self.addresses[name]}/24", "dev", f"{veth}p")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", f"{veth}p", "up")

    def _keys(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pytest-lava test", "-f", str(self.key))
        (self.workdir / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        config = []
        for name in self.names:
            config += [f"Host {name}", f"  HostName {self.addresses[name]}", "  User root",
                       f"  IdentityFile {self.key}", "  IdentitiesOnly yes", "  StrictHostKeyChecking no",
                       "  UserKnownHostsFile /dev/null", "  LogLevel ERROR", "  BatchMode yes",
                       "  ConnectTimeout 10", "  ServerAliveInterval 5", "  ServerAliveCountMax 3", ""]
        self.ssh_config.write_text("\n".join(config))

    def _start_sshd(self, name: str) -> None:
        home = self.workdir / name
        home.mkdir(parents=True, exist_ok=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / "host_key"))
        (home / "sshd_config").write_text("\n".join([
            "Port 22", f"ListenAddress {self.addresses[name]}", f"HostKey {home / 'host_key'}",
            f"PidFile {home / 'sshd.pid'}", f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "UsePAM no", "StrictModes no", "PrintMotd no", "PermitUserEnvironment no", ""]))
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        log = open(home / "sshd.log", "wb")  # noqa: SIM115 - the child's from here on
        try:
            # ip netns exec and unshare exec: the PID is sshd's; its own hostname for what it starts
            self.sshd[name] = subprocess.Popen(
                ["ip", "netns", "exec", self.namespaces[name], "unshare", "--uts", "--", "sh", "-c",
                 'hostname "$0" && exec /usr/sbin/sshd -D -e -f "$1"', name, str(home / "sshd_config")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()

    def _wait_for_ssh(self, name: str, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while True:
            done = self.ssh(name, "hostname", timeout=15)
            if done.returncode == 0 and done.stdout.strip() == name:
                return
            if time.monotonic() > end or self.sshd[name].poll() is not None:
                log = (self.workdir / name / "sshd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"sshd on {name} did not answer: {done.stderr.strip()}\n{log}")
            time.sleep(0.3)

    # -- tear-down -------------------------------------------------------------------------------

    def pids(self, name: str) -> list[int]:
        done = _run("ip", "netns", "pids", self.namespaces[name], check=False)
        return [int(p) for p in done.stdout.split()]

    def kill(self, name: str) -> list[int]:
        """SIGKILL every process running on ``name`` (its sshd, the workers it started): the host
        is gone. Returns the PIDs killed."""
        killed = []
        for _ in range(5):  # a process may fork while we kill
            pids = self.pids(name)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        proc = self.sshd.get(name)
        if proc is not None:
            proc.wait(timeout=10)
        return killed

    def stop(self) -> None:
        for name in self.names:
            try:
                self.kill(name)
            except (OSError, subprocess.SubprocessError):
                pass
            _run("ip", "netns", "del", self.namespaces[name], check=False)
            _run("ip", "link", "del", self.veths[name], check=False)
        _run("ip", "link", "del", self.bridge, check=False)

    def __enter__(self) -> Hosts:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
