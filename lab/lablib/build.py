"""`labctl build`: every lab artifact, each step cached by a signature of its inputs."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from . import android as android_image
from . import debian, host, images, posix, publish
from .host import LabError, say
from .images import Part
from .paths import BUILD, CACHE, FILES, WWW

BOOTDELAY = 5  # seconds of U-Boot countdown in the lab's copy of u-boot.bin (Debian's is 2)
UBOOT = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
HOST_BUSYBOX = Path("/bin/busybox")
# what every step depends on (android-init.sh only the Android steps: android_image.CODE)
CODE = [Path(__file__), Path(images.__file__), Path(host.__file__),
        *sorted(p for p in FILES.iterdir() if p.name != "android-init.sh")]

# the master-image disk: old LAVA's "2part" layout (p1 boot, p2 root, p3 testboot, p4 extended,
# p5 testrootfs, p6 sdcard) plus Android's boot/system/data/cache as further logical partitions.
MASTER_PARTS = [
    ("master-boot", 1, 64, "ext4", True), ("master-root", 2, 64, "ext4", False),
    ("testboot", 3, 96, "vfat", False), ("testrootfs", 5, 768, "ext4", False),
    ("sdcard", 6, 64, "vfat", False), ("boot", 7, 64, "vfat", False), ("system", 8, 128, "ext4", False),
    ("data", 9, 128, "ext4", False), ("cache", 10, 32, "ext4", False),
]
TEST_PS1 = r"root@\h:\w# "


def signature(inputs: list[object]) -> str:
    h = hashlib.sha256()
    for item in inputs:
        if isinstance(item, Path):
            st = item.stat()
            h.update(f"{item}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        else:
            h.update(f"{item!r}\n".encode())
    return h.hexdigest()


class Steps:
    def __init__(self, force: bool = False) -> None:
        self.force = force
        self.done: list[str] = []
        (BUILD / "stamps").mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str, outputs: list[Path], inputs: list[object], fn: Callable[[], None],
                 code: list[Path] | None = None) -> None:
        stamp = BUILD / "stamps" / f"{name}.sig"
        sig = signature([*(CODE if code is None else code), *inputs])
        if not self.force and all(o.exists() for o in outputs) and stamp.exists() and stamp.read_text() == sig:
            return
        t0 = time.monotonic()
        say(f"{name}: building")
        fn()
        stamp.write_text(sig)
        self.done.append(name)
        say(f"{name}: done in {time.monotonic() - t0:.1f}s")


def resolve_packages(refresh: bool) -> dict[str, str | None]:
    """Pin the Debian packages the lab is built from (lab/build/packages.json)."""
    pinned = BUILD / "packages.json"
    if pinned.exists() and not refresh:
        return json.loads(pinned.read_text())
    host.ensure_arm64_index()
    say("resolving kernel packages with apt-cache")
    arm64 = host.kernel_package("linux-image-arm64:arm64")
    matrix = None
    for version in host.apt_versions("linux-image-arm64:arm64"):
        candidate = host.kernel_package("linux-image-arm64:arm64", version)
        if candidate != arm64:
            matrix = candidate
            break
    if matrix is None:
        say("WARNING: apt knows only one arm64 kernel ABI; the kernel-matrix .deb is the same kernel")
    pkgs = {
        "x86_64_kernel": host.kernel_package("linux-image-amd64"),
        "arm64_kernel": arm64,
        "arm64_matrix_kernel": matrix,
        "arm64_busybox": "busybox-static:arm64",
    }
    BUILD.mkdir(parents=True, exist_ok=True)
    pinned.write_text(json.dumps(pkgs, indent=2) + "\n")
    say(f"packages: {pkgs}")
    return pkgs


def kver_of(tree: Path) -> str:
    kvers = [d.name for d in (tree / "lib/modules").iterdir()]
    if len(kvers) != 1:
        raise LabError(f"expected one kernel in {tree}, found {kvers}")
    return kvers[0]


def build(force: bool = False, refresh: bool = False) -> list[str]:
    t0 = time.monotonic()
    host.ensure_host_packages()
    pkgs = resolve_packages(refresh)
    debs = {k: host.download(v) for k, v in pkgs.items() if v}
    if pkgs["arm64_matrix_kernel"] is None:
        debs["arm64_matrix_kernel"] = debs["arm64_kernel"]
    trees = {k: host.extract(d) for k, d in debs.items()}
    kx86 = kver_of(trees["x86_64_kernel"])
    karm = kver_of(trees["arm64_kernel"])
    kmat = kver_of(trees["arm64_matrix_kernel"])
    arm_bb = trees["arm64_busybox"] / "bin/busybox"
    step = Steps(force)
    work = CACHE / "work"
    x86, arm = BUILD / "x86_64", BUILD / "arm64"

    def x86_images() -> None:
        root = images.fresh(work / "x86-initramfs")
        images.system_tree(root, HOST_BUSYBOX, tty="ttyS0", hostname="lab-x86_64", ps1=r"lab-x86_64:\w# ",
                           label="lab x86_64 board")
        images.add_modules(root, trees["x86_64_kernel"], kx86)
        (root / "init").symlink_to("bin/busybox")  # busybox init as PID 1, straight from the initramfs
        x86.mkdir(parents=True, exist_ok=True)
        shutil.copy2(trees["x86_64_kernel"] / f"boot/vmlinuz-{kx86}", x86 / "vmlinuz")
        images.vmlinux_of(x86 / "vmlinuz", x86 / "vmlinux")  # what the qemu device boots (PVH)
        images.cpio_gz(root, x86 / "initramfs.cpio.gz", plain=x86 / "initramfs.cpio")

    step("x86_64-kernel+initramfs",
         [x86 / "vmlinuz", x86 / "initramfs.cpio.gz", x86 / "vmlinux", x86 / "initramfs.cpio"],
         [debs["x86_64_kernel"]], x86_images)

    def arm_initrd() -> None:
        arm.mkdir(parents=True, exist_ok=True)
        shutil.copy2(trees["arm64_kernel"] / f"boot/vmlinuz-{karm}", arm / "Image")
        initrd(work / "initrd.gz", "initrd-init.sh", arm / "initrd.gz")

    def initrd(tree: Path, init: str, out: Path) -> Path:
        root = images.fresh(tree)
        images.busybox_tree(root, arm_bb)
        for ktree, kver in {(trees["arm64_kernel"], karm), (trees["arm64_matrix_kernel"], kmat)}:
            images.add_modules(root, ktree, kver)
        for d in ("newroot", "system", "data"):
            (root / d).mkdir(exist_ok=True)
        shutil.copy2(FILES / init, root / "init")
        if out.name == "android-ramdisk.gz":
            android_image.add_to_ramdisk(root, arm / "adbd")
        images.cpio_gz(root, out)
        return out

    kernel_debs = [debs["arm64_kernel"], debs["arm64_matrix_kernel"], debs["arm64_busybox"]]
    step("arm64-kernel+initrd", [arm / "Image", arm / "initrd.gz"], kernel_debs, arm_initrd)
    step("arm64-adbd", [arm / "adbd"], [], lambda: android_image.build_adbd(arm / "adbd"), code=android_image.CODE)
    step("android-ramdisk", [arm / "android-ramdisk.gz"], [*kernel_debs, arm / "adbd"],
         lambda: initrd(work / "android-ramdisk", "android-init.sh", arm / "android-ramdisk.gz"),
         code=[*CODE, *android_image.CODE])

    def system(name: str, hostname: str, label: str) -> Path:
        root = images.fresh(work / name)
        images.system_tree(root, arm_bb, tty="ttyAMA0", hostname=hostname, ps1=TEST_PS1, label=label)
        return root

    def master_disk() -> None:
        boot = images.fresh(work / "master-boot")
        shutil.copy2(arm / "Image", boot / "Image")
        shutil.copy2(arm / "initrd.gz", boot / "initrd.gz")
        shutil.copy2(FILES / "boot.cmd", boot / "boot.cmd")
        host.run(["mkimage", "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n", "lab master",
                  "-d", str(boot / "boot.cmd"), str(boot / "boot.scr")])
        root = system("master-root", "master", "lab master image")
        content = {"master-boot": boot, "master-root": root}
        parts = [Part(n, label, size, fs, content.get(label), bootable)
                 for label, n, size, fs, bootable in MASTER_PARTS]
        layout = images.disk(arm / "master.img", parts, work)
        images.write(arm / "master-layout.json", json.dumps(layout, indent=2) + "\n")

    step("arm64-master-disk", [arm / "master.img", arm / "master-layout.json"],
         [arm / "Image", arm / "initrd.gz", MASTER_PARTS], master_disk)

    def uboot() -> None:
        data = UBOOT.read_bytes()
        old, new = b"\0bootdelay=2\0", f"\0bootdelay={BOOTDELAY}\0".encode()
        if data.count(old) != 1 or len(old) != len(new):
            raise LabError(f"{UBOOT}: default environment has no unique 'bootdelay=2' to patch")
        (BUILD / "u-boot").mkdir(parents=True, exist_ok=True)
        (BUILD / "u-boot/u-boot.bin").write_bytes(data.replace(old, new))

    step("u-boot-bootdelay", [BUILD / "u-boot/u-boot.bin"], [UBOOT, BOOTDELAY], uboot)

    # the Debian test image's packages, the lab's own packages, and the two apt repositories
    deb_sets = debian.resolve(refresh)
    base_debs = debian.download_all(deb_sets["base"])
    repo_debs = debian.download_all(deb_sets["repo"])
    lab_debs_dir = CACHE / "lab-debs"
    posix_deb = lab_debs_dir / f"{posix.PACKAGE}_{posix.VERSION}_arm64.deb"
    step("lab-posixtestsuite", [posix_deb], [posix.VERSION, posix.CFLAGS, posix.RUNNER],
         lambda: posix.build_deb(work, lab_debs_dir), code=[Path(posix.__file__)])
    repos = {"debian": WWW / "debian", "lab-apt": WWW / "lab-apt"}
    release = {k: v / "dists" / debian.SUITE / "Release" for k, v in repos.items()}
    step("apt-repositories", list(release.values()), [*repo_debs, posix_deb, Path(debian.__file__)],
         lambda: (debian.write_repo(repos["debian"], repo_debs), debian.write_repo(repos["lab-apt"], [posix_deb])))

    wheel = WWW / "python" / publish.WHEEL_NAME
    step("python-wheel", [wheel], [Path(publish.__file__)], lambda: publish.python_wheel(wheel.parent))

    linaro = {
        "hwpack": WWW / "hwpack_lab-arm64.tar.gz",
        "rootfs": WWW / "rootfs_lab-linaro-arm64.tar.gz",
        "hwpack_tar": WWW / "hwpack_lab-arm64.tar",
        "rootfs_tar": WWW / "rootfs_lab-linaro-arm64.tar",
        "image": WWW / "lab-linaro-arm64.img",
        "image_gz": WWW / "lab-linaro-arm64.img.gz",
    }
    busybox_rootfs = {"rootfs_busybox": WWW / "rootfs_lab-busybox-arm64.tar.gz",
                      "rootfs_busybox_tar": WWW / "rootfs_lab-busybox-arm64.tar"}

    def hwpack_tree() -> Path:
        hw = images.fresh(work / "hwpack")
        shutil.copy2(arm / "Image", hw / "Image")
        shutil.copy2(arm / "initrd.gz", hw / "initrd.gz")
        images.write(hw / "HWPACK", "\n".join([
            "FORMAT=lab-hwpack-1", "NAME=lab-arm64-virt", "ARCHITECTURE=arm64",
            f"KERNEL_PACKAGE={pkgs['arm64_kernel'].split(':')[0]}", f"KERNEL_VERSION={karm}",
            "KERNEL=Image", "INITRD=initrd.gz", ""]))
        return hw

    def linaro_image() -> None:
        WWW.mkdir(parents=True, exist_ok=True)
        hw = hwpack_tree()
        root = images.fresh(work / "linaro-root")
        debian.root_tree(root, base_debs, arm_bb)
        debian.lab_files(root, "linaro", TEST_PS1, "Linaro test image (lab, Debian bookworm arm64)")
        bindir = repos["debian"] / "dists" / debian.SUITE / "main/binary-arm64"
        debian.apt_config(root, (bindir / "Packages").read_text(), release["debian"].read_text())
        images.write(root / "etc/lava-test-image", f"lab linaro test image (Debian bookworm), kernel {karm}\n")
        images.tarball(hw, linaro["hwpack_tar"])
        images.tarball(hw, linaro["hwpack"], mode="w:gz")
        images.tarball(root, linaro["rootfs_tar"])
        images.tarball(root, linaro["rootfs"], mode="w:gz")
        imgboot = images.fresh(work / "img-boot")  # the .img also autoboots on its own (qemu boards)
        for f in ("Image", "initrd.gz", "HWPACK"):
            shutil.copy2(hw / f, imgboot / f)
        images.write(imgboot / "boot.cmd", (FILES / "boot.cmd").read_text()
                     .replace("the master image", "the Linaro test image"))
        host.run(["mkimage", "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n", "lab linaro",
                  "-d", str(imgboot / "boot.cmd"), str(imgboot / "boot.scr")])
        used = int(host.run(["du", "-s", "-m", "--apparent-size", str(root)]).split()[0])
        img_parts = [Part(1, "boot", 48, "ext4", imgboot, True), Part(2, "rootfs", used * 3 // 2 + 64, "ext4", root)]
        images.disk(linaro["image"], img_parts, work)
        with open(linaro["image"], "rb") as src, images.gzip.open(linaro["image_gz"], "wb", 6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)

    step("linaro-test-image", list(linaro.values()),
         [arm / "Image", arm / "initrd.gz", *base_debs, release["debian"], Path(debian.__file__)], linaro_image)

    def busybox_image() -> None:
        root = system("busybox-root", "linaro", "Linaro test image (lab, busybox)")
        images.write(root / "etc/lava-test-image", f"lab linaro test image (busybox), kernel {karm}\n")
        images.tarball(root, busybox_rootfs["rootfs_busybox_tar"])
        images.tarball(root, busybox_rootfs["rootfs_busybox"], mode="w:gz")

    step("busybox-test-rootfs", list(busybox_rootfs.values()), [debs["arm64_busybox"]], busybox_image)

    android = {n: WWW / "android" / f"{n}.tar.bz2" for n in ("boot", "system", "userdata")}

    step("android-tarballs", list(android.values()), [arm / "Image", arm / "android-ramdisk.gz"],
         lambda: android_image.tarballs(work / "android", arm / "Image", arm / "android-ramdisk.gz", android),
         code=[*CODE, *android_image.CODE])

    role_debs = {"kernel-a": debs["arm64_kernel"], "kernel-b": debs["arm64_matrix_kernel"]}
    kernels = publish.kernel_files(role_debs, {"kernel-a": karm, "kernel-b": kmat})
    kernel_outputs = [WWW / k[key] for k in kernels.values() for key in ("file", "alias")]
    matrix_deb = WWW / kernels["kernel-b"]["debian_file"]
    step("kernels", [*kernel_outputs, matrix_deb], [*role_debs.values(), Path(publish.__file__)],
         lambda: publish.publish_kernels(role_debs, kernels))

    x86_www = [WWW / "x86_64/vmlinuz", WWW / "x86_64/initramfs.cpio.gz"]
    step("x86_64-www", x86_www, [x86 / "vmlinuz", x86 / "initramfs.cpio.gz", Path(publish.__file__)],
         lambda: publish.publish_x86(x86 / "vmlinuz", x86 / "initramfs.cpio.gz"))

    def index() -> None:
        art: dict[str, object] = {k: v.name for k, v in {**linaro, **busybox_rootfs}.items()}
        art["apt_repositories"] = {k: {"url": f"{debian.REPO_URL.rsplit('/', 1)[0]}/{k}", "suite": debian.SUITE,
                                       "component": "main"} for k in repos}
        art["lab_packages"] = [posix_deb.name]
        art["python_wheel"] = f"python/{wheel.name}"
        art.update({f"android_{k}": f"android/{v.name}" for k, v in android.items()})
        art.update({
            "kernels": kernels,
            "kernel_matrix_deb": matrix_deb.name,
            "kernel_matrix_prefix": publish.KERNEL_PREFIX,
            "kernel_matrix_version": kmat,
            "hwpack_kernel_version": karm,
            "kernel_matrix_distinct": kmat != karm,
            "x86_64_kernel": "x86_64/vmlinuz",
            "x86_64_initramfs": "x86_64/initramfs.cpio.gz",
            "x86_64_kernel_version": kx86,
            "packages": pkgs,
        })
        publish.write_index(art)

    www_inputs = [linaro["image_gz"], linaro["rootfs"], busybox_rootfs["rootfs_busybox"], *release.values(), wheel,
                  android["boot"], *kernel_outputs, matrix_deb, *x86_www,
                  Path(publish.__file__)]
    step("www-index", [WWW / "SHA256SUMS", WWW / "artifacts.json"], www_inputs, index)
    if step.done:
        say(f"built {', '.join(step.done)} in {time.monotonic() - t0:.1f}s")
    else:
        say(f"up to date ({time.monotonic() - t0:.1f}s)")
    return step.done
