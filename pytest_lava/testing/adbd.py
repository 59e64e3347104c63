"""The lab's device-side ADB daemon (``lab/adbd/adbd.c``) run natively on the host, for fast tests.

The same C file the lab cross-compiles into its Android image is compiled here with the host ``cc``
(cached by source hash) and started on ``127.0.0.1:<free port>`` with a sandbox: a root directory
(``sync:`` paths, i.e. ``adb push``/``pull``/``ls``, are resolved under it; shells start in it) and a
property directory (one file per property) that ``getprop``/``setprop`` in ``adb shell`` and the
daemon's device banner use. The real ``adb`` client then talks to it like to the board::

    from pytest_lava.testing.adbd import running_adbd

    with running_adbd(tmp_path / "device", props={"ro.product.model": "x"}) as dev:
        subprocess.run(["adb", "-P", str(server_port), "connect", dev.serial], ...)
        dev.path("/data/local/tmp/f")     # where a push to /data/local/tmp/f lands on the host
        dev.getprop("sys.boot_completed")  # "1"

Differences from the board: by default shells run on the host (``/bin/sh``), so an absolute path
in an ``adb shell`` command means the host's file, not the sandbox's; ``$ANDROID_DATA``,
``$ANDROID_ROOT`` and ``$ADBD_SANDBOX`` point into the sandbox. With ``chroot=True`` (needs root
and Debian's ``busybox-static``) the sandbox is a small root of its own — busybox applets in
``/bin``, a static adbd as ``/sbin/adbd`` with ``getprop``/``setprop`` links, properties in
``/dev/__properties__``, ``/dev/null``, the image's ``/system/build.prop`` and ``/system/bin``
stand-ins (``pm``, ``logcat``) — and shells run chrooted in it, so ``adb push f
/data/local/tmp/f`` then ``adb shell cat /data/local/tmp/f`` works as on the board (no ``/proc``).
``reboot:`` only runs ``reboot_cmd`` on the host (default: record the target in ``<root>/.reboots``).

``adbd_fixture()`` makes a pytest fixture of it. Everything started is stopped by PID.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pytest_lava.android.adb import free_port  # outside the ports the adb server uses or probes
from pytest_lava.core.deadline import Deadline

DEVICE = Path(__file__).resolve().parents[2] / "lab" / "adbd"  # the lab image's device side
SOURCE = DEVICE / "adbd.c"
TOOLS = ("getprop", "setprop", "start", "stop")


def read_props(path: Path) -> dict[str, str]:
    """A build.prop-style file: ``name=value`` lines, ``#`` comments."""
    props = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            props[name] = value
    return props


def default_props() -> dict[str, str]:
    """The lab image's properties after boot: default.prop, /system/build.prop, init's own."""
    return {**read_props(DEVICE / "default.prop"), **read_props(DEVICE / "system/build.prop"),
            "init.svc.adbd": "running", "sys.boot_completed": "1"}


class AdbdUnavailable(RuntimeError):
    """The native adbd cannot be built or started here (no ``cc``, no source, port trouble)."""


def cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"pytest-lava-adbd-{os.getuid()}"


def build(deadline: Deadline | float | None = 120.0, *, source: Path = SOURCE, out_dir: Path | None = None,
          static: bool = False) -> Path:
    """Compile ``source`` with the host ``cc`` (once per source content); return the binary.

    Next to it, ``bin/getprop``/``setprop``/``start``/``stop`` are links to it (it is their
    multi-call binary). ``static``: linked statically (``adbd-static``, for a chroot).
    """
    dl = Deadline.coerce(deadline, "adbd-build")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise AdbdUnavailable("no C compiler (cc) on this host: apt-get install gcc")
    if not source.is_file():
        raise AdbdUnavailable(f"adbd source not found: {source}")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    d = (out_dir or cache_dir()) / digest
    binary = d / ("adbd-static" if static else "adbd")
    if not binary.exists():
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".adbd.{os.getpid()}"
        argv = [cc, "-O2", "-Wall", *(["-static"] if static else []), "-o", str(tmp), str(source)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=dl.remaining_or(120),
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired as e:
            raise dl.exceeded("cc adbd.c") from e
        if done.returncode != 0:
            raise AdbdUnavailable(f"cc {source} failed:\n{done.stderr.strip()}")
        tmp.replace(binary)
    if not static:
        _links(d / "bin", binary)
    return binary


def _links(bindir: Path, binary: Path | str, names: tuple[str, ...] = TOOLS) -> None:
    bindir.mkdir(parents=True, exist_ok=True)
    for tool in names:
        link = bindir / tool
        if not link.is_symlink():
            try:
                link.symlink_to(binary)
            except FileExistsError:
                pass


def make_jail(root: Path, deadline: Deadline | float | None = 60.0) -> None:
    """A minimal Android-like root in ``root`` for ``--chroot``: busybox, static adbd, /dev nodes."""
    dl = Deadline.coerce(deadline, "adbd-jail")
    if os.geteuid() != 0:
        raise AdbdUnavailable("chroot=True needs root (chroot, mknod)")
    busybox = shutil.which("busybox")
    if busybox is None:
        raise AdbdUnavailable("chroot=True needs busybox (Debian: apt-get install busybox-static)")
    for d in ("bin", "sbin", "dev", "etc", "tmp", "system/bin", "data/local/tmp", "cache", "sdcard"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    shutil.copy2(busybox, root / "bin/busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=dl.remaining_or(30),
                             check=False).stdout.split()
    _links(root / "bin", "busybox", tuple(a for a in applets if a != "busybox" and "/" not in a))
    shutil.copy2(build(dl, static=True), root / "sbin/adbd")
    _links(root / "sbin", "adbd")
    for name, minor in (("null", 3), ("zero", 5), ("random", 8), ("urandom", 9)):
        node = root / "dev" / name
        if not node.exists():
            os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
            node.chmod(0o666)
    (root / "etc/passwd").write_text("root:x:0:0:root:/data:/bin/sh\n")
    for f in ("default.prop", "system/build.prop", "system/bin/logcat", "system/bin/pm"):  # as on the image
        shutil.copy2(DEVICE / f, root / f)
    check = subprocess.run(["chroot", str(root), "/bin/sh", "-c", "getprop >/dev/null && echo ok"],
                           capture_output=True, text=True, timeout=dl.remaining_or(30), check=False)
    if check.stdout.strip() != "ok":
        raise AdbdUnavailable(f"the chroot in {root} does not work (is {busybox} static? busybox-static is): "
                              f"{check.stderr.strip()}")


@dataclass
class Adbd:
    """A running native adbd: its address, sandbox and process."""

    root: Path
    props_dir: Path
    port: int
    binary: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log: Path | None = None

    @property
    def serial(self) -> str:
        """What ``adb connect`` / ``adb -s`` take."""
        return f"127.0.0.1:{self.port}"

    def path(self, device_path: str) -> Path:
        """Where a device path (as given to ``adb push``/``pull``) is on the host."""
        return self.root / device_path.lstrip("/")

    def getprop(self, name: str) -> str | None:
        p = self.props_dir / name
        return p.read_text() if p.is_file() else None

    def setprop(self, name: str, value: str) -> None:
        """Set (or overwrite, even ro.*) a property, as the device's init would."""
        if "/" in name or name.startswith("."):
            raise ValueError(f"bad property name {name!r}")
        tmp = self.props_dir / f".{name}.tmp"
        tmp.write_text(value)
        tmp.replace(self.props_dir / name)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL, the daemon (by PID); its connection processes exit with their clients."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], dl: Deadline, log: Path) -> None:
    while True:
        if proc.poll() is not None:
            raise AdbdUnavailable(f"adbd exited with {proc.returncode}: {log.read_text(errors='replace').strip()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=dl.remaining_or(1.0)):
                return
        except OSError:
            if dl.expired:
                raise dl.exceeded(f"adbd listening on 127.0.0.1:{port}") from None
            time.sleep(0.02)


@contextmanager
def running_adbd(workdir: Path, *, props: dict[str, str] | None = None, port: int | None = None,
                 reboot_cmd: str | None = None, deadline: Deadline | float | None = 60.0,
                 chroot: bool = False, verbose: bool = False) -> Iterator[Adbd]:
    """Build and start the native adbd with a sandbox under ``workdir``; stop it on exit.

    ``props`` are laid over :func:`default_props` (the lab image's, with ``sys.boot_completed=1``).
    ``chroot``: shells run chrooted in the sandbox (see the module's docstring).
    """
    dl = Deadline.coerce(deadline, "adbd")
    binary = build(dl)
    workdir = Path(workdir).resolve()
    root = workdir / "root"
    props_dir = root / "dev/__properties__" if chroot else workdir / "properties"
    for d in (root / "data/local/tmp", root / "system/bin", root / "sdcard", props_dir):
        d.mkdir(parents=True, exist_ok=True)
    if chroot:
        make_jail(root, dl)
    adbd = Adbd(root=root, props_dir=props_dir, port=port or free_port(), binary=binary, log=workdir / "adbd.log")
    for k, v in {**default_props(), **(props or {})}.items():
        adbd.setprop(k, v)
    inside = Path("/") if chroot else root  # the sandbox root as shells see it
    path = "/sbin:/bin:/system/bin" if chroot else f"{binary.parent / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "ANDROID_DATA": str(inside / "data"), "ANDROID_ROOT": str(inside / "system"),
           "EXTERNAL_STORAGE": str(inside / "sdcard"), "ADBD_SANDBOX": str(inside)}
    argv = [str(binary), "--port", str(adbd.port), "--listen", "127.0.0.1", "--root", str(root),
            "--props", str(props_dir),
            "--reboot-cmd", reboot_cmd or f'echo "reboot:$1" >> {shlex.quote(str(root / ".reboots"))}']
    if chroot:
        argv.append("--chroot")
    if verbose:
        argv.append("--verbose")
    assert adbd.log is not None
    with open(adbd.log, "wb") as log:
        adbd.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                        cwd=root)
    try:
        _wait_listening(adbd.port, adbd.process, dl.child(10.0, "listen"), adbd.log)
        yield adbd
    finally:
        adbd.stop()


def adbd_fixture(scope: str = "function", **kwargs: object) -> Callable[..., Iterator[Adbd]]:
    """A pytest fixture (define it in a test module or conftest) yielding a running :class:`Adbd`::

        native_adbd = adbd_fixture()
    """
    import pytest

    @pytest.fixture(scope=scope)  # type: ignore[call-overload]
    def _fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Adbd]:
        with running_adbd(tmp_path_factory.mktemp("adbd"), **kwargs) as dev:  # type: ignore[arg-type]
            yield dev

    return _fixture
