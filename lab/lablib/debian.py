"""The Debian bookworm arm64 test image and the lab's own apt repository, built without binfmt.

* **Resolving**: apt's own solver on the host's arm64 index, with an EMPTY dpkg status (so the host's
  installed packages do not count) and no recommends: ``apt-get install -s`` lists every package
  a set needs. The result is pinned in ``build/debian-packages.json`` (``labctl build --refresh``
  resolves again).
* **Root tree**: every .deb of the base set is unpacked with ``dpkg-deb -X`` (its file list becomes
  ``/var/lib/dpkg/info/<pkg>.list``), its control area with ``dpkg-deb -e`` (md5sums, conffiles,
  maintainer scripts go to ``info/``), its control fields + ``Status: install ok installed`` to
  ``/var/lib/dpkg/status``, so ``dpkg -l`` and ``apt-get`` see an installed system. Maintainer
  scripts never ran (foreign architecture): the few things they would have done are done here
  (passwd/group from base-passwd, the awk alternative, /bin/sh, ld.so.cache on first boot).
* **Repository**: ``www/debian/`` = ``pool/*.deb`` (hard links to the cache) + ``dists/lab/Release``
  + ``dists/lab/main/binary-arm64/Packages{,.gz}``, unsigned; the image's sources.list names it
  ``[trusted=yes]`` and carries its lists already, so apt works on the board with no network but
  the lab's HTTP server (guests: http://10.0.2.2:7080/debian).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import images
from .host import LabError, run, say
from .paths import BUILD, CACHE, FILES, WWW

ARCH = "arm64"
SUITE = "lab"
REPO_URL = "http://10.0.2.2:7080/debian"  # as guests see the lab's HTTP server
# Debian's Essential set, apt, and python3 (smem, pip; byte-compiled here: python3.11's postinst
# would take ~45 s of TCG on every board); busybox adds init and what the base lacks
BASE = [
    "base-files", "base-passwd", "bash", "bsdutils", "coreutils", "dash", "debianutils", "diffutils", "dpkg",
    "findutils", "grep", "gzip", "hostname", "init-system-helpers", "libc-bin", "login", "ncurses-base",
    "ncurses-bin", "perl-base", "sed", "sysvinit-utils", "tar", "util-linux", "mawk", "apt", "procps",
    "python3", "busybox-static", "usr-is-merged",
]
MERGED = ("bin", "sbin", "lib")  # merged /usr, as debootstrap makes bookworm systems
EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
# what the repository has beyond the base: the classic lava-test library's dependencies
EXTRA = ["stress-ng", "smem", "rt-tests", "linux-perf", "libjpeg-turbo-progs", "device-tree-compiler",
         "python3-pip"]
_INST = re.compile(r"^Inst (\S+) \((\S+) .*\[(\w+)\]\)")


def _apt_opts(status: Path) -> list[str]:
    return ["-o", f"Dir::State::status={status}", "-o", f"APT::Architecture={ARCH}",
            "-o", f"APT::Architectures::={ARCH}", "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
            "-o", "APT::Install-Recommends=false", "-o", "Debug::NoLocking=1"]


def solve(packages: list[str]) -> list[dict[str, str]]:
    """Every package (name, version, arch) an empty arm64 system needs to install ``packages``."""
    with tempfile.TemporaryDirectory(prefix="lab-apt-") as tmp:
        status = Path(tmp) / "status"
        status.write_text("")
        out = run(["apt-get", *_apt_opts(status), "install", "-s", *packages], timeout=300)
    found = [{"name": m[1], "version": m[2], "arch": m[3]} for m in map(_INST.match, out.splitlines()) if m]
    if not found:
        raise LabError(f"apt found nothing to install for {' '.join(packages)}")
    return sorted(found, key=lambda p: p["name"])


def resolve(refresh: bool) -> dict[str, list[dict[str, str]]]:
    """{"base": [...], "repo": [...]}: pinned in build/debian-packages.json."""
    pinned = BUILD / "debian-packages.json"
    want = {"base_request": BASE, "extra_request": EXTRA}
    if pinned.exists() and not refresh:
        data = json.loads(pinned.read_text())
        if {k: data.get(k) for k in want} == want:
            return data
    say("resolving the Debian arm64 test image and repository packages with apt")
    data = {**want, "base": solve(BASE), "repo": solve(BASE + EXTRA)}
    BUILD.mkdir(parents=True, exist_ok=True)
    pinned.write_text(json.dumps(data, indent=1) + "\n")
    return data


def deb_name(p: dict[str, str]) -> str:
    return f"{p['name']}_{p['version'].replace(':', '%3a')}_{p['arch']}.deb"


def download_all(pkgs: list[dict[str, str]]) -> list[Path]:
    """apt-get download what the cache lacks (one apt run); the paths of all."""
    dest = CACHE / "debs" / "debian"
    dest.mkdir(parents=True, exist_ok=True)
    missing = [p for p in pkgs if not (dest / deb_name(p)).exists()]
    if missing:
        say(f"downloading {len(missing)} Debian arm64 packages")
        with tempfile.TemporaryDirectory(prefix="lab-apt-") as tmp:
            status = Path(tmp) / "status"
            status.write_text("")
            specs = [f"{p['name']}:{p['arch']}={p['version']}" if p["arch"] != "all"
                     else f"{p['name']}={p['version']}" for p in missing]
            try:
                run(["apt-get", *_apt_opts(status), "download", *specs], cwd=dest, timeout=1800)
            except LabError as e:
                raise LabError(f"cannot download the Debian packages of the test image:\n{e}")
    paths = [dest / deb_name(p) for p in pkgs]
    lost = [p.name for p in paths if not p.exists()]
    if lost:
        raise LabError(f"apt-get download left no {', '.join(lost[:5])} in {dest}")
    return paths


def _control(text: str) -> dict[str, str]:
    """One control stanza -> ordered fields (continuation lines kept)."""
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _stanza(fields: dict[str, str]) -> str:
    return "".join(f"{k}:{v}\n" if v.startswith("\n") else f"{k}: {v}\n" for k, v in fields.items())


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else "newconffile"


def unpack(deb: Path, root: Path, info: Path) -> str:
    """Unpack one .deb into root like dpkg would (files, info/, status stanza); returns the stanza."""
    listing = run(["dpkg-deb", "-X", str(deb), str(root)], timeout=300)
    with tempfile.TemporaryDirectory(prefix="lab-ctrl-") as tmp:
        run(["dpkg-deb", "-e", str(deb), tmp])
        fields = _control((Path(tmp) / "control").read_text())
        name = fields["Package"]
        stem = f"{name}:{ARCH}" if fields.get("Multi-Arch") == "same" else name
        files = ["/." if f.strip() in ("./", ".") else "/" + f.strip().removeprefix("./").rstrip("/")
                 for f in listing.splitlines() if f.strip()]
        images.write(info / f"{stem}.list", "\n".join(files) + "\n")
        conffiles: list[str] = []
        for part in sorted(Path(tmp).iterdir()):
            if part.name == "control":
                continue
            shutil.copy2(part, info / f"{stem}.{part.name}")
            if part.name == "conffiles":
                conffiles = [c.strip() for c in part.read_text().splitlines() if c.strip().startswith("/")]
    status = {"Package": name, "Status": "install ok installed"}
    status.update({k: v for k, v in fields.items() if k != "Package"})
    if conffiles:
        status["Conffiles"] = "".join(f"\n {c} {_md5(root / c.lstrip('/'))}" for c in conffiles)
    return _stanza(status)


def root_tree(root: Path, debs: list[Path], busybox: Path) -> None:
    """The Debian system: unpacked packages, a dpkg database, and the lab's boot glue."""
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        stanzas = list(pool.map(lambda d: unpack(d, root, info), debs))
    images.write(root / "var/lib/dpkg/status", "\n".join(stanzas))
    merge_usr(root)
    for pattern in EXCLUDES:  # like Debian's container images: docs stay out (also of later installs)
        for path in root.glob(pattern.lstrip("/")):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    images.write(root / "etc/dpkg/dpkg.cfg.d/excludes", "".join(f"path-exclude={p}\n" for p in EXCLUDES)
                 + "path-include=/usr/share/doc/*/copyright\n")
    for name, text in (("available", ""), ("arch", f"{ARCH}\n"), ("diversions", ""), ("statoverride", "")):
        images.write(root / "var/lib/dpkg" / name, text)
    for d in ("var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/lib/dpkg/alternatives", "var/log/apt",
              "var/cache/apt/archives/partial", "var/lib/apt/lists/partial", "tmp", "root", "proc", "sys",
              "dev", "run", "mnt", "usr/local/bin", "usr/local/sbin", "usr/local/lib", "usr/local/share",
              "usr/local/include", "usr/local/src", "srv", "opt", "home", "media"):  # base-files' postinst
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    # what maintainer scripts would have done
    share = root / "usr/share/base-passwd"
    shutil.copy2(share / "passwd.master", root / "etc/passwd")
    shutil.copy2(share / "group.master", root / "etc/group")
    users = [line.split(":")[0] for line in (root / "etc/passwd").read_text().splitlines() if line]
    images.write(root / "etc/shadow", "".join(f"{u}:*:19000:0:99999:7:::\n" for u in users), 0o640)
    _link(root, "usr/bin/awk", "/etc/alternatives/awk")
    _link(root, "etc/alternatives/awk", "/usr/bin/mawk")
    if not (root / "bin/sh").is_symlink() and not (root / "bin/sh").exists():
        _link(root, "bin/sh", "dash")
    byte_compile(root)
    # busybox: init, the console shell (ash, which expands \h \w in PS1 like the other lab systems)
    # and whatever Debian's base lacks (wget, ifconfig, ...); Debian's own tools win
    images.add_busybox_applets(root, busybox)
    _link(root, "sbin/init", "/bin/busybox")


def byte_compile(root: Path) -> None:
    """What py3compile in python3.11's postinst does, with the host's Python when it is the same
    3.x (the .pyc format depends on the version only, not the architecture)."""
    import compileall
    import sys

    stdlib = root / "usr/lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if stdlib.is_dir():
        compileall.compile_dir(stdlib, ddir=f"/{stdlib.relative_to(root)}", quiet=2, workers=0)


def merge_usr(root: Path) -> None:
    """/bin, /sbin, /lib become links into /usr (the files move; /usr's copy wins a clash)."""
    for top in MERGED:
        src, dst = root / top, root / "usr" / top
        if src.is_symlink() or not src.exists():
            continue
        dst.mkdir(parents=True, exist_ok=True)
        for item in sorted(src.rglob("*"), key=lambda p: len(p.parts)):
            rel = item.relative_to(src)
            target = dst / rel
            if item.is_dir() and not item.is_symlink():
                target.mkdir(parents=True, exist_ok=True)
            elif not (target.exists() or target.is_symlink()):
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(item, target)
        shutil.rmtree(src)
        src.symlink_to(f"usr/{top}")


def _link(root: Path, rel: str, target: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


def apt_config(root: Path, packages_text: str, release_text: str) -> None:
    """sources.list for the lab repository, its lists already in place, apt settings for a board."""
    images.write(root / "etc/apt/sources.list", f"deb [trusted=yes] {REPO_URL} {SUITE} main\n")
    images.write(root / "etc/apt/apt.conf.d/99lab",
                 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\nAcquire::Languages "none";\n'
                 'APT::Sandbox::User "root";\nAcquire::Check-Valid-Until "false";\nAcquire::http::Timeout "30";\n'
                 'Dpkg::Use-Pty "false";\nDpkg::Options { "--force-unsafe-io"; };\n'
                 'APT::Keep-Downloaded-Packages "false";\n')
    lists = root / "var/lib/apt/lists"
    prefix = re.sub(r"^https?://", "", REPO_URL).replace("/", "_")
    images.write(lists / f"{prefix}_dists_{SUITE}_Release", release_text)
    images.write(lists / f"{prefix}_dists_{SUITE}_main_binary-{ARCH}_Packages", packages_text)


def _sums(path: Path) -> tuple[str, str, int]:
    data = path.read_bytes()
    return hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest(), len(data)


def write_repo(repo: Path, debs: list[Path]) -> tuple[str, str]:
    """pool/ + Packages + Release for ``debs``; returns (Packages text, Release text)."""
    from . import publish

    pool = repo / "pool"
    if repo.exists():
        shutil.rmtree(repo)
    pool.mkdir(parents=True)
    stanzas = []
    for deb in sorted(debs, key=lambda d: d.name):
        publish.link(deb, pool / deb.name)
        fields = _control(run(["dpkg-deb", "-f", str(deb)]))
        md5, sha256, size = _sums(deb)
        fields.update({"Filename": f"pool/{deb.name}", "Size": str(size), "MD5sum": md5, "SHA256": sha256})
        stanzas.append(_stanza(fields))
    packages = "\n".join(stanzas)
    bindir = repo / "dists" / SUITE / "main" / f"binary-{ARCH}"
    images.write(bindir / "Packages", packages)
    with gzip.open(bindir / "Packages.gz", "wb", 9) as f:
        f.write(packages.encode())
    lines = {"md5": [], "sha256": []}
    for f in sorted(bindir.iterdir()):
        md5, sha256, size = _sums(f)
        rel = f.relative_to(repo / "dists" / SUITE)
        lines["md5"].append(f" {md5} {size} {rel}")
        lines["sha256"].append(f" {sha256} {size} {rel}")
    release = (f"Origin: lab\nLabel: lab\nSuite: {SUITE}\nCodename: {SUITE}\nArchitectures: {ARCH}\n"
               "Components: main\nDescription: the emulated lab's apt repository (Debian bookworm arm64 "
               "packages and the lab's own)\nMD5Sum:\n" + "\n".join(lines["md5"]) + "\nSHA256:\n"
               + "\n".join(lines["sha256"]) + "\n")
    images.write(repo / "dists" / SUITE / "Release", release)
    return packages, release


def lab_files(root: Path, hostname: str, ps1: str, label: str) -> None:
    """The lab's boot glue on the Debian tree (busybox init runs the lab's rcS)."""
    shutil.copy2(FILES / "rcS", root / "etc/init.d/rcS")
    if not (root / "sbin/udevadm").exists():  # the lab's stand-in (no udev): /dev/disk/by-label links
        shutil.copy2(FILES / "udevadm", root / "sbin/udevadm")
    images.write(root / "etc/inittab", images.INITTAB.format(tty="ttyAMA0").replace("-/bin/sh", "-/bin/ash"))
    images.write(root / "etc/profile", images.PROFILE.format(ps1=ps1))
    images.write(root / "etc/hostname", hostname + "\n")
    images.write(root / "etc/hosts", f"127.0.0.1 localhost {hostname}\n")
    images.write(root / "etc/lab-system", label + "\n")


__all__ = ["BASE", "EXTRA", "REPO_URL", "WWW", "apt_config", "download_all", "lab_files", "resolve",
           "root_tree", "write_repo"]
