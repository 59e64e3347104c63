"""deploy_linaro_android_image, android_install_binaries and boot_linaro_android_image.

Host side (here): the tarballs are downloaded into the shared cache with the Linaro deploy's code
(checksums ``<key>_sha256``, ``use_cache``, progress), decompressed and checked (no path leaves its
top directory), and served to the board by the harness's image server. Board side (the board
driver, ``boards/master_android.py``): from the master image, format the Android partitions and
unpack into them; boot with ``boot_cmds_android`` and connect adb through the job's own server.

A failed deploy leaves the board powered off (like the Linaro deploy); a failed boot is a setup
failure that ends the job (the results are still written and submitted).
"""

from __future__ import annotations

from typing import Any

from ..core.secrets import redact_url
from .deploy import deploy_cache, plain_tar, published
from .implementations import implements

ANDROID_TARBALLS = ("boot", "pkg", "system", "data")


@implements("deploy_linaro_android_image")
def deploy_linaro_android_image(ctx, params: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    driver = ctx.driver
    try:
        with deploy_cache(ctx, params) as cache:
            node = ctx.deadline.child(None, "prepare artifacts")
            tars = {}
            for key in ANDROID_TARBALLS:
                if params.get(key):
                    got = cache.fetch(params[key], node, sha256=params.get(f"{key}_sha256"))
                    tars[key] = plain_tar(cache, got, node, redact_url(str(params[key])))
            with published(ctx, tars, cache) as urls:
                driver.deploy_android(ctx, {k: urls[k] for k in tars}, params.get("rootfstype", "ext4"),
                                      urls["probe"])
        ctx.run.deployed = {"kind": "android", **{k: v for k, v in params.items() if k != "timeout"}}
    except BaseException:
        driver.power_off(ctx)
        raise


@implements("android_install_binaries")
def android_install_binaries(ctx, params: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    """The device's ``android_binary_drivers`` into /system; none configured: logged, passes (as
    the old dispatcher did)."""
    url = ctx.device.android_binary_drivers
    if not url:
        ctx.log(f"android_install_binaries: device {ctx.device.name} has no android_binary_drivers; nothing to do")
        ctx.message = "no android_binary_drivers configured for the device"
        return
    with deploy_cache(ctx, params) as cache:
        node = ctx.deadline.child(None, "prepare artifacts")
        tar = plain_tar(cache, cache.fetch(url, node), node, redact_url(url))
        with published(ctx, {"android_binary_drivers": tar}, cache) as urls:
            ctx.driver.install_android_binaries(ctx, urls["android_binary_drivers"], urls["probe"])
    ctx.message = f"installed {redact_url(url)} into /system"


@implements("boot_linaro_android_image")
def boot_linaro_android_image(ctx, params: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    device = ctx.driver.boot_android(ctx, list(params.get("options") or []))
    ctx.message = f"adb device {device.serial}"
