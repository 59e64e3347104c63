"""Hardware packs: their ``HWPACK`` metadata, and the ``kernel_matrix`` step (a hwpack with another kernel)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..core.errors import ArtifactError
from . import limits
from .deb import deb_files
from .extract import Log, safe_extract
from .limits import _size
from .tarballs import make_tar


def read_hwpack_meta(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _plain_name(name: str) -> bool:
    """A single file name: no ``/``, not ``.``/``..``, no control characters."""
    return bool(name) and name not in (".", "..") and "/" not in name and not any(ord(c) < 32 for c in name)


def replace_kernel(hwpack: Path, deb: Path, prefix: str, out: Path, log: Log | None = None,
                   deb_name: str | None = None) -> str:
    """Write to ``out`` (uncompressed tar) ``hwpack`` with the kernel package matching ``prefix``
    replaced by ``deb``. Returns the new kernel version.

    Two hwpack layouts are understood: Linaro's (``pkgs/*.deb``: packages named with the prefix
    are removed, the new .deb added, like linaro-hwpack-replace) and the lab's (an ``HWPACK``
    file naming ``KERNEL=`` and ``KERNEL_PACKAGE=``: the kernel image file is replaced by the
    package's ``boot/vmlinuz-<version>``; the lab's initrd already carries every lab kernel's
    modules). ``deb_name`` is the package's file name as published (the cache stores it under
    another name)."""
    deb_name = deb_name or deb.name
    if not _plain_name(deb_name):
        raise ArtifactError(f"kernel_matrix: {deb_name!r} is not a usable package file name")
    with tempfile.TemporaryDirectory(prefix="lava-hwpack-", dir=out.parent) as tmp:
        tree = Path(tmp) / "hwpack"
        safe_extract(hwpack, tree, log)
        pkgs, meta_file = tree / "pkgs", tree / "HWPACK"
        if pkgs.is_dir() and not pkgs.is_symlink():
            old = [p for p in pkgs.glob("*.deb") if p.name.startswith(prefix)]
            if not old:
                raise ArtifactError(f"kernel_matrix: the hwpack has no package named {prefix}* in pkgs/")
            for p in old:
                p.unlink()
            new = pkgs / deb_name
            if new.is_dir() and not new.is_symlink():
                raise ArtifactError(f"kernel_matrix: the hwpack has a directory pkgs/{deb_name}")
            new.unlink(missing_ok=True)  # a symlink of that name is replaced, never written through
            shutil.copy2(deb, new)
            version = deb_name.split("_")[0].removeprefix("linux-image-")
        elif meta_file.is_file() and not meta_file.is_symlink():
            if meta_file.stat().st_size > limits.MAX_HWPACK_META:
                raise ArtifactError("kernel_matrix: the hwpack's HWPACK file is larger than "
                                    f"{_size(limits.MAX_HWPACK_META)}")
            meta = read_hwpack_meta(meta_file.read_text(errors="replace"))
            package = meta.get("KERNEL_PACKAGE", "")
            if not package.startswith(prefix):
                raise ArtifactError(f"kernel_matrix: the hwpack's kernel package {package!r} does not match "
                                    f"the prefix {prefix!r}")
            kernel_name = meta.get("KERNEL", "Image")
            kernel = tree / kernel_name
            if not _plain_name(kernel_name) or kernel.is_dir():
                raise ArtifactError(f"kernel_matrix: bad KERNEL= in the hwpack: {meta.get('KERNEL')!r}")
            files = deb_files(deb, lambda n: n.startswith("boot/vmlinuz-"), Path(tmp) / "deb")
            if len(files) != 1:
                raise ArtifactError(f"kernel_matrix: {deb_name} holds {len(files)} boot/vmlinuz-* files, not one")
            version = files[0].removeprefix("boot/vmlinuz-")
            if not _plain_name(version):
                raise ArtifactError(f"kernel_matrix: {deb_name} has a kernel with a bad version: {version!r}")
            os.replace(Path(tmp) / "deb" / files[0], kernel)  # replaces a symlink itself, never its target
            meta.update(KERNEL_VERSION=version, KERNEL_PACKAGE=deb_name.split("_")[0], KERNEL_MATRIX=deb_name)
            meta_file.write_text("".join(f"{k}={v}\n" for k, v in meta.items()))
        else:
            raise ArtifactError("kernel_matrix: unknown hwpack layout (neither pkgs/ nor an HWPACK file)")
        make_tar(tree, out)
    if log is not None:
        log(f"kernel_matrix: hwpack {hwpack.name} now carries kernel {version} from {deb_name}")
    return version
