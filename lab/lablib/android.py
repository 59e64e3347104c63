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

The device-side files are in ``lab/adbd/`` (``adbd.c``, ``default.prop``, ``system/build.prop``,
``system/bin/*``), where ``pytest_lava/testing/adbd.py`` finds them too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import images
from .host import run
from .paths import FILES, LAB

DEVICE = LAB / "adbd"  # the device side, shared with the native adbd of pytest_lava/testing/adbd.py
ADBD_SOURCE = DEVICE / "adbd.c"
CC = "aarch64-linux-gnu-gcc"
PROP_TOOLS = ("getprop", "setprop", "start", "stop")
# /system/build.prop (ro.build.*, ro.product.*: what `adb devices -l`, getprop and
# lava-android-test's attributes read), /default.prop of the ramdisk, /system/bin stand-ins
BUILD_PROP = DEVICE / "system/build.prop"
DEFAULT_PROP = DEVICE / "default.prop"
STAND_INS = [DEVICE / "system/bin/logcat", DEVICE / "system/bin/pm"]


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
    shutil.copy2(DEFAULT_PROP, root / "default.prop")


def tarballs(work: Path, kernel: Path, ramdisk: Path, out: dict[str, Path]) -> None:
    """``out``: boot, system, userdata -> .tar.bz2 paths."""
    a = images.fresh(work)
    (a / "boot").mkdir()
    shutil.copy2(kernel, a / "boot/Image")
    shutil.copy2(ramdisk, a / "boot/initrd.gz")
    images.write(a / "system/etc/mkshrc", "PS1='root@linaro: '\n")
    shutil.copy2(BUILD_PROP, a / "system/build.prop")
    (a / "system/bin").mkdir()
    for tool in STAND_INS:
        shutil.copy2(tool, a / "system/bin" / tool.name)
        (a / "system/bin" / tool.name).chmod(0o755)
    images.write(a / "data/local/tmp/.keep", "")
    images.write(a / "data/lab-userdata", "lab android userdata\n")
    out["boot"].parent.mkdir(parents=True, exist_ok=True)
    for name, top in (("boot", "boot"), ("system", "system"), ("userdata", "data")):
        images.tarball(a / top, out[name], arcname=top, mode="w:bz2")


CODE = [Path(__file__), ADBD_SOURCE, BUILD_PROP, DEFAULT_PROP, *STAND_INS, FILES / "android-init.sh"]
