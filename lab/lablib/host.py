"""Host side of the build: running tools, apt (packages, downloads), kernel trees."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .paths import CACHE

HOST_PACKAGES = [
    "qemu-system-x86", "qemu-system-arm", "u-boot-qemu", "u-boot-tools", "ser2net",
    "inetutils-telnet",  # the telnet client of `connection_command: telnet ...` consoles
    "busybox-static", "e2fsprogs", "fdisk", "dosfstools", "cpio", "kmod", "xz-utils", "bzip2",
    "gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross", "patch",  # lab-posixtestsuite, adbd (posix.py, android.py)
    "adb",  # the real client that talks to the Android image's adbd (forwarded to 127.0.0.1:73xx)
]
START = time.monotonic()


class LabError(Exception):
    """A clear, user-facing failure (missing package, port in use, ...)."""


def say(msg: str) -> None:
    print(f"[lab {time.monotonic() - START:6.1f}s] {msg}", flush=True)


def run(argv: list[str], *, timeout: float = 600, cwd: Path | None = None, **kw) -> str:
    """Run argv (never a shell), return stdout; a failure raises LabError with its stderr."""
    try:
        p = subprocess.run(argv, cwd=cwd, timeout=timeout, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        raise LabError(f"command not found: {argv[0]}")
    except subprocess.TimeoutExpired:
        raise LabError(f"timed out after {timeout:.0f}s: {' '.join(argv)}")
    if p.returncode != 0:
        raise LabError(f"failed ({p.returncode}): {' '.join(argv)}\n{p.stderr.strip()[-2000:]}")
    return p.stdout


def pipe(producer: list[str], consumer: list[str], *, timeout: float = 600) -> None:
    """producer | consumer without a shell."""
    p1 = subprocess.Popen(producer, stdout=subprocess.PIPE)
    try:
        run(consumer, stdin=p1.stdout, timeout=timeout)
    finally:
        assert p1.stdout is not None
        p1.stdout.close()
        p1.wait(timeout=timeout)
    if p1.returncode != 0:
        raise LabError(f"failed ({p1.returncode}): {' '.join(producer)}")


def installed(pkg: str) -> bool:
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return p.returncode == 0 and "install ok installed" in p.stdout


def ensure_host_packages(packages: list[str] = HOST_PACKAGES) -> None:
    missing = [p for p in packages if not installed(p)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise LabError(f"missing host packages {' '.join(missing)} (run as root, or: apt-get install -y ...)")
    say(f"installing host packages: {' '.join(missing)} (apt-get update first)")
    run(["apt-get", "update"], timeout=900)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        run(["apt-get", "install", "-y", "--no-install-recommends", *missing], timeout=1800, env=env)
    except LabError:
        for pkg in missing:  # name the one that cannot be installed
            try:
                run(["apt-get", "install", "-y", "--no-install-recommends", pkg], timeout=1800, env=env)
            except LabError as e:
                raise LabError(f"cannot install Debian package {pkg!r}:\n{e}")


def ensure_arm64_index() -> None:
    """arm64 packages are downloaded (never installed): needs the arm64 apt index."""
    archs = run(["dpkg", "--print-foreign-architectures"]).split()
    if "arm64" not in archs:
        say("adding the arm64 architecture to apt (index only, nothing arm64 is installed)")
        run(["dpkg", "--add-architecture", "arm64"])
        run(["apt-get", "update"], timeout=900)
    elif not apt_versions("busybox-static:arm64"):
        say("apt index has no arm64 packages: apt-get update")
        run(["apt-get", "update"], timeout=900)


def apt_versions(pkg: str) -> list[str]:
    """Versions apt knows for pkg, best first (from `apt-cache policy`)."""
    p = subprocess.run(["apt-cache", "policy", pkg], capture_output=True, text=True, timeout=60)
    versions, in_table = [], False
    for line in p.stdout.splitlines():
        if line.strip() == "Version table:":
            in_table = True
        elif in_table and not line.startswith("        "):
            v = line.replace("***", "").split()
            if v:
                versions.append(v[0])
    return versions


def kernel_package(meta: str, version: str | None = None) -> str:
    """The linux-image-<abi>-<flavour> package a meta package (linux-image-arm64:arm64) depends on."""
    spec = f"{meta}={version}" if version else meta
    out = run(["apt-cache", "depends", spec], timeout=60)
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends: linux-image-"):
            return line.split()[1]
    raise LabError(f"cannot resolve the kernel package behind {spec}")


def download(pkg: str) -> Path:
    """apt-get download pkg (name[:arch][=version]) into the cache; return the .deb path."""
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    name, _, version = pkg.partition("=")
    base, _, arch = name.partition(":")
    arch = arch or run(["dpkg", "--print-architecture"]).strip()
    pattern = f"{base}_{version.replace(':', '%3a') if version else '*'}_{arch}.deb"
    found = sorted(debs.glob(pattern))
    if found:
        return found[-1]
    say(f"downloading {pkg}")
    try:
        run(["apt-get", "download", pkg], cwd=debs, timeout=1800)
    except LabError as e:
        raise LabError(f"cannot download Debian package {pkg!r}:\n{e}")
    found = sorted(debs.glob(pattern))
    if not found:
        raise LabError(f"apt-get download {pkg} left no {pattern} in {debs}")
    return found[-1]


def extract(deb: Path) -> Path:
    """dpkg-deb -x into the cache once; for kernels also run depmod (the .debs ship no modules.dep)."""
    dest = CACHE / "extract" / deb.stem
    stamp = dest / ".extracted"
    if stamp.exists():
        return dest
    say(f"extracting {deb.name}")
    if dest.exists():
        run(["rm", "-rf", "--one-file-system", str(dest)])
    dest.mkdir(parents=True)
    run(["dpkg-deb", "-x", str(deb), str(dest)])
    for kdir in (dest / "lib" / "modules").glob("*"):
        run(["depmod", "-b", str(dest), kdir.name])
    stamp.touch()
    return dest


def module_order(moddir: Path, wanted: list[str]) -> list[str]:
    """Paths (relative to moddir) of the wanted modules and their dependencies, deps first."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
        by_name[Path(mod).name.split(".ko")[0].replace("-", "_")] = mod
    order: list[str] = []

    def visit(mod: str) -> None:
        if mod in order:
            return
        for d in deps.get(mod, []):
            visit(d)
        order.append(mod)

    for name in wanted:
        mod = by_name.get(name.replace("-", "_"))
        if mod:
            visit(mod)
        # else: built in (or absent in this flavour): nothing to load
    return order


def busybox_applets() -> list[str]:
    """Applet paths (bin/ls, sbin/init, ...) from the host's busybox-static (same version as arm64)."""
    out = run(["/bin/busybox", "--list-full"])
    return [line.strip() for line in out.splitlines() if line.strip()]


def log_exc(e: BaseException) -> None:
    print(f"lab: error: {e}", file=sys.stderr)
