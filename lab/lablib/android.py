"""The lab's Android-like image for the arm64 board: adbd, the ramdisk, the boot/system/userdata tarballs.

Not Android: a busybox system with Android's partition roles and the parts a harness talks to.

* ``/sbin/adbd`` in the ramdisk: ``lab/adbd/adbd.c`` cross-compiled with ``aarch64-linux-gnu-gcc
  -static`` (Debian's ``gcc-aarch64-linux-gnu`` + ``libc6-dev-arm64-cross``); the same binary is
  ``getprop``/``setprop``/``start``/``stop`` (links in ``/sbin``), the property service's tools over
  ``/dev/__properties__`` (one file per property).
* ``/init`` (``lab/files/android-init.sh``): mounts system/data/cache from ``androidboot.*``, loads
  ``/default.prop`` and ``/system/build.prop``, starts adbd on 5555, sets ``sys.boot_completed=1``.
* ``system``: ``/system/build.prop`` (``ro.build.*``, ``ro.product.*``), ``/system/bin`` stand-ins
  (``logcat`` over the kernel log, ``pm``), ``/system/etc/mkshrc``; ``userdata``: ``/data/local/tmp``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import images
from .host import run
from .paths import FILES, LAB

ADBD_SOURCE = LAB / "adbd" / "adbd.c"
CC = "aarch64-linux-gnu-gcc"
PROP_TOOLS = ("getprop", "setprop", "start", "stop")
# /default.prop in the ramdisk (Android: the boot image's properties)
DEFAULT_PROP = {
    "ro.secure": "0",
    "ro.debuggable": "1",
    "ro.adb.secure": "0",
    "persist.sys.usb.config": "adb",
}
# /system/build.prop: what `adb devices -l`, getprop and lava-android-test's attributes read
BUILD_PROP = {
    "ro.build.id": "LAB1",
    "ro.build.display.id": "lab-android-busybox",
    "ro.build.version.release": "4.0.4",
    "ro.build.version.sdk": "15",
    "ro.build.version.incremental": "1",
    "ro.build.type": "eng",
    "ro.build.tags": "test-keys",
    "ro.build.fingerprint": "pytest-lava/lab_arm64/lab_arm64:4.0.4/LAB1/1:eng/test-keys",
    "ro.product.name": "lab_arm64",
    "ro.product.model": "lab-arm64-virt",
    "ro.product.device": "lab_arm64",
    "ro.product.brand": "pytest-lava",
    "ro.product.manufacturer": "pytest-lava",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.hardware": "qemu-virt",
    "ro.serialno": "lab-arm64",
}
LOGCAT = """#!/bin/sh
# logcat STAND-IN (lab): the kernel log in logcat's "brief" look; -c clears it, -d dumps and exits.
case "$1" in
    -c) dmesg -c >/dev/null; exit 0 ;;
    -d) dmesg | sed 's/^/I\\/kernel  (    0): /'; exit 0 ;;
esac
dmesg | sed 's/^/I\\/kernel  (    0): /'
exec sed 's/^<[0-9]*>/I\\/kernel  (    0): /' /proc/kmsg
"""
PM = """#!/bin/sh
# pm STAND-IN (lab): records "installed" packages in /data/system/packages.list; no APKs run here.
list=/data/system/packages.list
mkdir -p /data/system; touch $list
case "$1" in
    install) shift; while [ "${1#-}" != "$1" ]; do shift; done
             [ -f "$1" ] || { echo "Failure [INSTALL_FAILED_INVALID_URI]"; exit 1; }
             name=$(basename "$1" .apk); grep -qx "$name" $list || echo "$name" >> $list; echo Success ;;
    uninstall) name=$2; grep -vx "$name" $list > $list.new; mv $list.new $list; echo Success ;;
    list) sed 's/^/package:/' $list ;;
    path) grep -qx "$2" $list && echo "package:/data/app/$2.apk" ;;
    *) echo "usage: pm install FILE | uninstall NAME | list packages | path NAME (lab stand-in)" >&2; exit 1 ;;
esac
"""


def props_text(props: dict[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in props.items())


def build_adbd(out: Path) -> None:
    """Cross-compile adbd for arm64, static and stripped."""
    out.parent.mkdir(parents=True, exist_ok=True)
    run([CC, "-static", "-O2", "-s", "-Wall", "-o", str(out), str(ADBD_SOURCE)], timeout=300)


def add_to_ramdisk(root: Path, adbd: Path) -> None:
    """adbd and the property tools into a ramdisk tree, and /default.prop."""
    shutil.copy2(adbd, root / "sbin/adbd")
    (root / "sbin/adbd").chmod(0o755)
    for tool in PROP_TOOLS:
        link = root / "sbin" / tool
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to("adbd")
    for d in ("system", "data", "cache"):
        (root / d).mkdir(exist_ok=True)
    images.write(root / "default.prop", props_text(DEFAULT_PROP))


def tarballs(work: Path, kernel: Path, ramdisk: Path, out: dict[str, Path]) -> None:
    """``out``: boot, system, userdata -> .tar.bz2 paths."""
    a = images.fresh(work)
    (a / "boot").mkdir()
    shutil.copy2(kernel, a / "boot/Image")
    shutil.copy2(ramdisk, a / "boot/initrd.gz")
    images.write(a / "system/build.prop", "# lab Android-like image (pytest-lava lab/lablib/android.py)\n"
                 + props_text(BUILD_PROP))
    images.write(a / "system/etc/mkshrc", "PS1='root@linaro: '\n")
    images.write(a / "system/bin/logcat", LOGCAT, 0o755)
    images.write(a / "system/bin/pm", PM, 0o755)
    images.write(a / "data/local/tmp/.keep", "")
    images.write(a / "data/lab-userdata", "lab android userdata\n")
    out["boot"].parent.mkdir(parents=True, exist_ok=True)
    for name, top in (("boot", "boot"), ("system", "system"), ("userdata", "data")):
        images.tarball(a / top, out[name], arcname=top, mode="w:bz2")


CODE = [Path(__file__), ADBD_SOURCE, FILES / "android-init.sh"]
