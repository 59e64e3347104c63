"""What `lab/build/www/` serves beyond the images: kernels under stable names, and the index.

Jobs must not depend on how the lab was built (which Debian kernel ABI apt resolved, where the
cache keeps its .debs), so every file a job names has a name that survives a rebuild with other
Debian kernels:

    kernels/kernel-a.deb                  the hwpack's own arm64 kernel package (a hard link)
    kernels/kernel-b.deb                  the other arm64 kernel (the kernel-matrix kernel)
    kernels/linux-image-<abi>-arm64.deb   the same two, named like their Debian package (no revision)
    x86_64/vmlinuz, x86_64/initramfs.cpio.gz   the x86_64 board's kernel and initramfs
    linux-image-<abi>-arm64_<rev>_arm64.deb    the kernel-matrix .deb as apt named it (kept for old jobs)

`artifacts.json` maps every role to its file (and the kernel versions behind the stable names);
`SHA256SUMS` lists every file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote

from . import images
from .paths import WWW

KERNEL_PREFIX = "linux-image-"  # the package prefix a kernel_matrix entry names
INDEX_FILES = ("SHA256SUMS", "artifacts.json")


def link(src: Path, dst: Path) -> None:
    """dst becomes a hard link to src (a copy across filesystems); replaced atomically."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    if dst.exists() and dst.samefile(src):  # rename() of two links to one inode would do nothing
        return
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    tmp.replace(dst)


def deb_facts(deb: Path) -> dict[str, str]:
    """Package name and Debian version from an apt-get download'ed file name (name_version_arch.deb)."""
    package, version, _ = deb.name.removesuffix(".deb").split("_")
    return {"package": package, "debian_version": unquote(version)}


def kernel_files(debs: dict[str, Path], kvers: dict[str, str]) -> dict[str, dict[str, str]]:
    """The published names of the arm64 kernels: role -> facts. ``debs``/``kvers`` are keyed
    "kernel-a" (the hwpack's kernel) and "kernel-b" (the kernel-matrix kernel)."""
    out = {}
    for role, deb in debs.items():
        facts = deb_facts(deb)
        out[role] = {"file": f"kernels/{role}.deb", "alias": f"kernels/{facts['package']}.deb",
                     "debian_file": deb.name, "kernel_version": kvers[role], **facts}
    return out


def publish_kernels(debs: dict[str, Path], kernels: dict[str, dict[str, str]]) -> list[Path]:
    """Hard-link the kernel .debs under their stable names; nothing stale is left in kernels/."""
    wanted: dict[Path, Path] = {}
    for role, facts in kernels.items():
        for key in ("file", "alias"):
            wanted[WWW / facts[key]] = debs[role]
    wanted[WWW / kernels["kernel-b"]["debian_file"]] = debs["kernel-b"]
    for old in [*WWW.glob("linux-image-*.deb"), *WWW.glob(".*.tmp"), *(WWW / "kernels").glob("*")]:
        if old not in wanted:
            old.unlink()
    for dst, src in wanted.items():
        link(src, dst)
    return list(wanted)


def publish_x86(vmlinuz: Path, initramfs: Path) -> list[Path]:
    out = [WWW / "x86_64/vmlinuz", WWW / "x86_64/initramfs.cpio.gz"]
    for src, dst in zip((vmlinuz, initramfs), out, strict=True):
        link(src, dst)
    return out


WHEEL_NAME = "lab_hello-1.0-py3-none-any.whl"  # what install_python can install on the Debian image


def python_wheel(out: Path) -> Path:
    """A tiny pure-Python wheel (module ``lab_hello``) for ``lava_test_install: install_python``:
    the board has no network but the lab's, so the lab serves what pip installs."""
    import base64
    import zipfile

    files = {
        "lab_hello/__init__.py": 'GREETING = "hello from the lab"\n',
        "lab_hello-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: lab-hello\nVersion: 1.0\n"
                                            "Summary: the lab's pip-installable test package\n",
        "lab_hello-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: lab\nRoot-Is-Purelib: true\n"
                                         "Tag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files["lab_hello-1.0.dist-info/RECORD"] = "\n".join([*record, "lab_hello-1.0.dist-info/RECORD,,"]) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / WHEEL_NAME
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), text)
    return wheel


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_index(artifacts: dict[str, object]) -> None:
    """SHA256SUMS of every served file (hard links hashed once) and artifacts.json."""
    files = sorted(p for p in WWW.rglob("*") if p.is_file() and p.name not in INDEX_FILES
                   and not p.name.startswith("."))
    by_inode: dict[tuple[int, int], str] = {}
    sums = []
    for p in files:
        st = p.stat()
        key = (st.st_dev, st.st_ino)
        if key not in by_inode:
            by_inode[key] = sha256(p)
        sums.append(f"{by_inode[key]}  {p.relative_to(WWW)}")
    images.write(WWW / "SHA256SUMS", "\n".join(sums) + "\n")
    images.write(WWW / "artifacts.json", json.dumps(artifacts, indent=2) + "\n")
