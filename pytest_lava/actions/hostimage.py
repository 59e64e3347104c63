"""``deploy_linaro_image`` for boards that boot a disk image the host builds
(``ImageFormat.HOST_BUILT_IMAGE``: simulators).

hwpack+rootfs (``kernel_matrix`` applied, like for a master board) become a two-partition disk
image built without root and without loop mounts (:mod:`pytest_lava.artifacts.mkdisk`): the hwpack's
files are the boot partition, the rootfs the root partition. A prebuilt ``image`` is copied (the
simulator writes to its disk; the cached artifact is never written to), and its boot and root
partitions are read (:mod:`pytest_lava.artifacts.disks`) to find the boot files. The boot files the
simulator needs (boot-wrapper AXF, kernel, initrd, DTB, UEFI: the device's ``simulator_files``) are
looked for in the boot partition, then in ``boot/`` of the root partition, and copied beside the
image. Everything lives in a per-job directory the board driver removes at the end of the job.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..artifacts import decompress, lookup, safe_extract
from ..artifacts.download import DownloadCache
from ..artifacts.mkdisk import PartSpec, make_disk, sparse_copy
from ..boards.fastmodel import file_candidates
from ..boards.simulator import PLACEHOLDERS
from ..core.secrets import redact_url
from .deploy import prepare_tarballs

IMAGE_NAME = "sd.img"


def _find(tree: Path, names: list[str]) -> Path | None:
    """The first of ``names`` that is a regular file in ``tree``, no symbolic link on the way."""
    return next((p for p in (lookup(tree, name) for name in names) if p is not None), None)


def boot_files(device, boot: Path, root: Path, dest: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """spec key -> path of each boot file found (copied into ``dest``)."""
    found: dict[str, str] = {}
    dest.mkdir(exist_ok=True)
    for placeholder, names in file_candidates(device).items():
        if placeholder == "IMG" or not names:
            continue
        path = _find(boot, names) or _find(root, [f"boot/{n}" for n in names])
        if path is not None:
            copy = dest / path.name
            shutil.copyfile(path, copy)
            found[PLACEHOLDERS[placeholder]] = str(copy)
    return found


def deploy_host_image(ctx, params: dict[str, Any], cache: DownloadCache) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Build (or copy) the disk image, find the boot files, hand both to the driver; the facts of
    the deploy (kernel_matrix, kernel version) for the bundle."""
    boot_tar, root_tar, facts = prepare_tarballs(ctx, params, cache)
    work = Path(tempfile.mkdtemp(prefix=f"lava-{ctx.device.name}-"))
    try:
        node = ctx.deadline.child(None, "build the disk image")
        boot, root = work / "boot", work / "root"
        safe_extract(boot_tar, boot, ctx.log)
        safe_extract(root_tar, root, ctx.log, image_tree=True)  # Debian's absolute links are normal
        image = work / IMAGE_NAME
        if "image" in params:
            img, label = cache.fetch(params["image"], node), redact_url(str(params["image"]))
            raw = cache.derive(img, "raw-image", lambda out: decompress(img, out, node, label=label), node,
                               suffix=".img")
            sparse_copy(raw, image, node)
        else:
            layout = make_disk(image, [PartSpec("boot", boot), PartSpec("rootfs", root, 64)], node, work)
            ctx.log(f"{ctx.device.name}: built {IMAGE_NAME} on the host: "
                    + ", ".join(f"p{v['number']} {k} {v['size'] >> 20} MiB" for k, v in layout.items()))
        spec = {"image": str(image), **boot_files(ctx.device, boot, root, work / "files"), "workdir": str(work)}
        shutil.rmtree(boot)
        shutil.rmtree(root)
        ctx.driver.deploy_image(ctx, spec)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return facts
