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

Differences from the board: shells run on the host (``/bin/sh``), so an absolute path in an
``adb shell`` command means the host's file, not the sandbox's; ``$ANDROID_DATA``,
``$ANDROID_ROOT`` and ``$ADBD_SANDBOX`` point into the sandbox. ``reboot:`` only runs
``reboot_cmd`` (default: record the target in ``<root>/.reboots``).

``adbd_fixture()`` makes a pytest fixture of it. Everything started is stopped by PID.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pytest_lava.core.deadline import Deadline

SOURCE = Path(__file__).resolve().parents[2] / "lab" / "adbd" / "adbd.c"
TOOLS = ("getprop", "setprop", "start", "stop")
EMULATOR_PORTS = range(5554, 5586)  # the adb server probes these as emulators: never use them
DEFAULT_PROPS = {
    "ro.product.name": "lab_arm64",
    "ro.product.model": "lab-arm64-virt",
    "ro.product.device": "lab_arm64",
    "ro.product.manufacturer": "pytest-lava",
    "ro.build.version.release": "4.0.4",
    "ro.build.version.sdk": "15",
    "ro.build.display.id": "lab-android-native",
    "ro.serialno": "native0001",
    "init.svc.adbd": "running",
    "sys.boot_completed": "1",
}


class AdbdUnavailable(RuntimeError):
    """The native adbd cannot be built or started here (no ``cc``, no source, port trouble)."""


def cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"pytest-lava-adbd-{os.getuid()}"


def build(deadline: Deadline | float | None = 120.0, *, source: Path = SOURCE, out_dir: Path | None = None) -> Path:
    """Compile ``source`` with the host ``cc`` (once per source content); return the binary.

    Next to it, ``getprop``/``setprop``/``start``/``stop`` are links to it (it is their multi-call
    binary).
    """
    dl = Deadline.coerce(deadline, "adbd-build")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise AdbdUnavailable("no C compiler (cc) on this host: apt-get install gcc")
    if not source.is_file():
        raise AdbdUnavailable(f"adbd source not found: {source}")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    d = (out_dir or cache_dir()) / digest
    binary = d / "adbd"
    if not binary.exists():
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".adbd.{os.getpid()}"
        argv = [cc, "-O2", "-Wall", "-o", str(tmp), str(source)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=dl.remaining_or(120),
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired as e:
            raise dl.exceeded("cc adbd.c") from e
        if done.returncode != 0:
            raise AdbdUnavailable(f"cc {source} failed:\n{done.stderr.strip()}")
        tmp.replace(binary)
    bindir = d / "bin"
    bindir.mkdir(exist_ok=True)
    for tool in TOOLS:
        link = bindir / tool
        if not link.is_symlink():
            try:
                link.symlink_to(binary)
            except FileExistsError:
                pass
    return binary


def free_port() -> int:
    """A free TCP port on 127.0.0.1 outside the adb server's emulator range."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in EMULATOR_PORTS:
            return port
    raise AdbdUnavailable("no free port outside 5554-5585")


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
                 verbose: bool = False) -> Iterator[Adbd]:
    """Build and start the native adbd with a sandbox under ``workdir``; stop it on exit.

    ``props`` are laid over :data:`DEFAULT_PROPS` (which include ``sys.boot_completed=1``).
    """
    dl = Deadline.coerce(deadline, "adbd")
    binary = build(dl)
    workdir = Path(workdir)
    root, props_dir = workdir / "root", workdir / "properties"
    for d in (root / "data/local/tmp", root / "system/bin", root / "sdcard", props_dir):
        d.mkdir(parents=True, exist_ok=True)
    adbd = Adbd(root=root, props_dir=props_dir, port=port or free_port(), binary=binary, log=workdir / "adbd.log")
    for k, v in {**DEFAULT_PROPS, **(props or {})}.items():
        adbd.setprop(k, v)
    env = {**os.environ, "PATH": f"{binary.parent / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
           "ANDROID_DATA": str(root / "data"), "ANDROID_ROOT": str(root / "system"),
           "EXTERNAL_STORAGE": str(root / "sdcard"), "ADBD_SANDBOX": str(root)}
    argv = [str(binary), "--port", str(adbd.port), "--listen", "127.0.0.1", "--root", str(root),
            "--props", str(props_dir),
            "--reboot-cmd", reboot_cmd or f'echo "reboot:$1" >> {shlex.quote(str(root / ".reboots"))}']
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
