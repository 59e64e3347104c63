"""deploy_linaro_image and deploy_linaro_kernel.

Host side (here): download each artifact into the shared cache (``download.py``), verify
checksums, decompress, apply ``kernel_matrix``, take partitions out of an ``image``, check
every tarball is safe to unpack. Board side (the board type): a master board formats its test
partitions and fetches the tarballs from the harness's image server (``imageserver.py``); a
qemu board just remembers what to boot; a simulator boots a disk image built on the host
(``hostimage.py``).

A lab failure is an InfrastructureError naming the step (a download names its URL); a job
mistake (an action this board type cannot run, a bad artifact) is a JobError. Either way the
board is left powered off.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..artifacts import check_tar, decompress, partition_tar, read_hwpack_meta, replace_kernel
from ..artifacts.download import DownloadCache, default_cache_dir
from ..artifacts.imageserver import image_server
from ..boards.driver import ImageFormat, job_error
from ..core.errors import JobError
from ..core.secrets import redact_url
from .implementations import implements

HWPACK_META_LIMIT = 1 << 20  # the hwpack's HWPACK file is a few lines of KEY=VALUE


def _cache(ctx, root: Path | None = None) -> DownloadCache:  # type: ignore[no-untyped-def]
    return DownloadCache(root or default_cache_dir(), log=ctx.log, base=ctx.job.file.parent)


def plain_tar(cache: DownloadCache, path: Path, deadline, label: str | None = None) -> Path:  # type: ignore[no-untyped-def]
    """The decompressed, checked tarball of ``path`` (cached); errors name ``label`` (the URL)."""
    def build(out: Path) -> None:
        decompress(path, out, deadline, label=label)
        check_tar(out, label=label)
    return cache.derive(path, "plain-tar", build, deadline, suffix=".tar")


def _kernel_pair(km: Any) -> tuple[str, str] | None:
    if not km:
        return None
    if all(isinstance(e, list) for e in km):  # not expanded by Job.variants(): only one kernel
        if len(km) != 1:
            raise JobError.single("", "kernel_matrix", "several kernels must be run as job variants")
        km = km[0]
    return str(km[0]), str(km[1])


def prepare_tarballs(ctx, params: dict[str, Any], cache: DownloadCache) -> tuple[Path, Path, dict[str, str]]:  # type: ignore[no-untyped-def]
    """(boot tarball, root tarball, facts) for a master-image board."""
    node = ctx.deadline.child(None, "prepare artifacts")
    facts: dict[str, str] = {}

    def get(key: str) -> Path:
        return cache.fetch(params[key], node, sha256=params.get(f"{key}_sha256"))

    if "image" in params:
        img, label = get("image"), redact_url(str(params["image"]))
        raw = cache.derive(img, "raw-image", lambda out: decompress(img, out, node, label=label), node, suffix=".img")
        parts = []
        for key, default in (("boot_part", 1), ("root_part", 2)):
            number = int(ctx.device.extra.get(key, default))  # type: ignore[call-overload]
            parts.append(cache.derive(
                raw, f"partition-{number}",
                lambda out, n=number: partition_tar(raw, n, out, node, ctx.log, label=label), node, suffix=".tar"))
        return parts[0], parts[1], facts
    hwpack, rootfs = get("hwpack"), get("rootfs")
    hw_tar = plain_tar(cache, hwpack, node, redact_url(str(params["hwpack"])))
    root_tar = plain_tar(cache, rootfs, node, redact_url(str(params["rootfs"])))
    pair = _kernel_pair(params.get("kernel_matrix"))
    if pair is not None:
        url, prefix = pair
        deb = cache.fetch(url, node)
        st = deb.stat()
        key = f"kernel-matrix:{deb.resolve()}:{st.st_size}:{st.st_mtime_ns}:{prefix}"
        name = url.rstrip("/").rsplit("/", 1)[-1]
        hw_tar = cache.derive(hw_tar, key, lambda out: replace_kernel(hw_tar, deb, prefix, out, ctx.log, name),
                              node, suffix=".tar")
        facts["kernel_matrix"] = url
    facts.update(_hwpack_facts(hw_tar))
    return hw_tar, root_tar, facts


def _hwpack_facts(hw_tar: Path) -> dict[str, str]:
    import tarfile

    try:
        with tarfile.open(hw_tar) as tf:
            f = tf.extractfile("./HWPACK")
            meta = read_hwpack_meta(f.read(HWPACK_META_LIMIT).decode("utf-8", "replace")) if f else {}
    except (KeyError, tarfile.TarError, OSError):
        return {}
    return {"kernel_version": meta["KERNEL_VERSION"]} if "KERNEL_VERSION" in meta else {}


def _publish(ctx, files: dict[str, Path], probe_dir: Path):  # type: ignore[no-untyped-def]
    extra = ctx.device.extra
    server = image_server(str(extra.get("image_server_bind", "127.0.0.1")), int(extra.get("image_server_port", 0)))
    probe = probe_dir / "lava-probe.txt"
    if not probe.exists():
        probe_dir.mkdir(parents=True, exist_ok=True)
        probe.write_text("pytest-lava image server\n")
    items = {name: server.publish(path, f"{name}.tar" if name != "probe" else probe.name)
             for name, path in {**files, "probe": probe}.items()}
    urls = {name: server.url(item, ctx.device.host_address) for name, item in items.items()}
    return server, items, urls


@contextmanager
def published(ctx, files: dict[str, Path], cache: DownloadCache) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """``files`` served by the harness's image server while the board fetches them: their URLs
    (as the board sees them) by name, plus ``probe``; unpublished afterwards."""
    server, items, urls = _publish(ctx, files, cache.root)
    try:
        yield urls
    finally:
        for item in items.values():
            server.unpublish(item)


@contextmanager
def deploy_cache(ctx, params: dict[str, Any]) -> Iterator[DownloadCache]:  # type: ignore[no-untyped-def]
    """The shared download cache, or (``use_cache: false``) a fresh one removed afterwards."""
    tmp = None if params.get("use_cache", True) else Path(tempfile.mkdtemp(prefix="lava-deploy-",
                                                                          dir=ctx.run.results_dir))
    try:
        yield _cache(ctx, tmp)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


@implements("deploy_linaro_image")
def deploy_linaro_image(ctx, params: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    driver = ctx.driver
    try:
        with deploy_cache(ctx, params) as cache:
            if driver.image_format is ImageFormat.TARBALLS:
                boot, root, facts = prepare_tarballs(ctx, params, cache)
                with published(ctx, {"boot": boot, "rootfs": root}, cache) as urls:
                    driver.deploy_tarballs(ctx, urls["boot"], urls["rootfs"], params.get("rootfstype", "ext4"),
                                           urls["probe"])
            elif driver.image_format is ImageFormat.DISK_IMAGE:
                if "image" not in params:
                    raise job_error(ctx, f"board type {driver.name!r} deploys an 'image' (or use "
                                         "deploy_linaro_kernel); hwpack+rootfs needs a master-image board",
                                    "parameters")
                node = ctx.deadline.child(None, "prepare artifacts")
                img = cache.fetch(params["image"], node, sha256=params.get("image_sha256"))
                raw = cache.derive(img, "raw-image", lambda out: decompress(img, out, node), node, suffix=".img")
                facts = {}
                driver.deploy_image(ctx, {"image": str(raw)})
            elif driver.image_format is ImageFormat.HOST_BUILT_IMAGE:
                from .hostimage import deploy_host_image

                facts = deploy_host_image(ctx, params, cache)
            else:
                raise job_error(ctx, f"board type {driver.name!r} cannot deploy a Linaro image")
        ctx.run.deployed = {"kind": "linaro", **{k: v for k, v in params.items() if k != "timeout"}, **facts}
    except BaseException:
        driver.power_off(ctx)
        raise


@implements("deploy_linaro_kernel")
def deploy_linaro_kernel(ctx, params: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    driver = ctx.driver
    cache = _cache(ctx)
    node = ctx.deadline.child(None, "prepare artifacts")
    try:
        spec: dict[str, str] = {}
        for key, qemu_key in (("kernel", "kernel"), ("ramdisk", "initrd"), ("dtb", "dtb")):
            if params.get(key):
                spec[qemu_key] = str(cache.fetch(params[key], node))
        if params.get("rootfs"):
            path = cache.fetch(params["rootfs"], node)
            spec["rootfs"] = str(cache.derive(path, "raw-image", lambda out: decompress(path, out, node), node,
                                              suffix=".img"))
        driver.deploy_image(ctx, spec)
        ctx.run.deployed = {"kind": "kernel", **spec}
    except BaseException:
        driver.power_off(ctx)
        raise
