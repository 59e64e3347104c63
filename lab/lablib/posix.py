"""``lab-posixtestsuite``: the Open POSIX Test Suite 1.5.2, cross-compiled for arm64 on the host.

Debian's ``posixtestsuite`` binary package holds only the report of the suite's run on the
build daemon, so the lab builds the suite itself from Debian's source package
(``posixtestsuite_1.5.2.orig.tar.gz`` + Debian's patches, fetched from the mirror apt uses and
checked against the ``.dsc``) with ``aarch64-linux-gnu-gcc``, and packages every conformance test
that compiles (of the interfaces none of whose tests sleep or wait on timers: about 930 of
1663, in ~1 min of two cores) plus a runner as ``lab-posixtestsuite_1.5.2-8lab1_arm64.deb`` for the lab's apt
repository. Compiling on the emulated board instead (what lava-test did) would take hours of TCG.

``/usr/lib/lab-posixtestsuite/run-tests [-t SECONDS] [-x AREA/TEST]... [AREA ...]`` runs the tests
(all, or the interface directories named, e.g. ``sigaction pthread_attr_init``, shell globs allowed;
``-x`` leaves tests out, e.g. ``-x sigaction/10-1``), each under ``timeout`` (default 240 s), and prints
one line per test in the format lava-test's posixtestsuite pattern reads::

    conformance/interfaces/sigaction/1-1 execution: PASSED
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import images
from .host import LabError, run, say
from .paths import CACHE

SOURCE = "posixtestsuite"
DEB_VERSION = "1.5.2-8"
FILES = {"orig": "posixtestsuite_1.5.2.orig.tar.gz", "debian": "posixtestsuite_1.5.2-8.debian.tar.xz",
         "dsc": "posixtestsuite_1.5.2-8.dsc"}
PACKAGE = "lab-posixtestsuite"
VERSION = "1.5.2-8lab1"
PREFIX = "usr/lib/lab-posixtestsuite"
CC = "aarch64-linux-gnu-gcc"
CFLAGS = ["-O0", "-w", "-std=gnu99", "-D_POSIX_C_SOURCE=200112L", "-D_GNU_SOURCE", "-Iinclude"]
LIBS = ["-lpthread", "-lrt", "-lm"]
SLEEPS = re.compile(r"sleep\(|alarm\(|nanosleep|timer_settime|sigwait|sigsuspend|pause\(|timedwait|timedlock")
RUNNER = r"""#!/bin/sh
# Run the Open POSIX Test Suite's conformance tests; one "<test> execution: <RESULT>" line each.
# usage: run-tests [-t SECONDS] [-x AREA/TEST]... [AREA ...]
#   AREA: an interface directory or a glob (sig*); -x leaves a test (or glob) out, e.g. sigaction/10-1
cd "$(dirname "$0")" || exit 1
limit=240
skip=
while [ $# -gt 0 ]; do
    case $1 in
        -t) limit=$2; shift 2 ;;
        -x) skip="$skip conformance/interfaces/$2"; shift 2 ;;
        *) break ;;
    esac
done
[ $# -eq 0 ] && set -- '*'
for area in "$@"; do
    for t in conformance/interfaces/$area/*.test; do
        [ -x "$t" ] || continue
        name=${t%.test}
        left_out=
        set -f  # -x patterns are matched against names, never expanded
        for x in $skip; do case $name in $x) left_out=1 ;; esac; done
        set +f
        [ -n "$left_out" ] && continue
        timeout -k 5 "$limit" "./$t" >/tmp/posix-test.log 2>&1
        rc=$?
        case $rc in
            0) r=PASSED ;; 1) r=FAILED ;; 2) r=UNRESOLVED ;; 4) r=UNSUPPORTED ;; 5) r=UNTESTED ;;
            124|137) r=INTERRUPTED ;; *) r=FAILED ;;
        esac
        [ "$r" = PASSED ] || sed 's/^/    /' /tmp/posix-test.log | head -n 5
        echo "$name execution: $r"
    done
done
rm -f /tmp/posix-test.log
"""


def _fetch(url: str, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            shutil.copyfileobj(resp, out)
    except OSError as e:
        raise LabError(f"cannot download {url}: {e}")
    tmp.rename(dest)


def source() -> dict[str, Path]:
    """Debian's source package files in the cache (downloaded once, checked against the .dsc)."""
    dest = CACHE / "src"
    dest.mkdir(parents=True, exist_ok=True)
    paths = {k: dest / v for k, v in FILES.items()}
    if all(p.exists() for p in paths.values()):
        return paths
    uri = run(["apt-get", "--print-uris", "download", f"{SOURCE}:arm64"]).split()
    if not uri:
        raise LabError("apt cannot say where the posixtestsuite package comes from")
    base = uri[0].strip("'").rsplit("/", 1)[0]
    for path in paths.values():
        if not path.exists():
            say(f"downloading {base}/{path.name}")
            _fetch(f"{base}/{path.name}", path)
    dsc = paths["dsc"].read_text()
    for key in ("orig", "debian"):
        digest = hashlib.sha256(paths[key].read_bytes()).hexdigest()
        if f"{digest} {paths[key].stat().st_size} {paths[key].name}" not in dsc:
            paths[key].unlink()
            raise LabError(f"{paths[key].name}: SHA256 does not match {paths['dsc'].name}; removed, run again")
    return paths


def _compile(src: Path, tree: Path, out: Path) -> str | None:
    """Compile one test; its relative name on failure."""
    rel = src.relative_to(tree)
    dst = out / rel.with_suffix(".test")
    dst.parent.mkdir(parents=True, exist_ok=True)
    p = subprocess.run([CC, *CFLAGS, str(rel), "-o", str(dst), *LIBS], cwd=tree, capture_output=True, timeout=300)
    return None if p.returncode == 0 else str(rel.with_suffix(""))


def _area_tests(area: Path) -> list[Path]:
    """The tests of one interface directory, or none when any of them sleeps or waits on a timer
    (those areas take minutes each under TCG; the lab keeps the suite's full run short)."""
    tests = sorted(p for p in area.glob("*.c") if re.fullmatch(r"\d+-\d+\.c", p.name))
    if any(SLEEPS.search(t.read_text(errors="replace")) for t in tests):
        return []
    return tests


def build_deb(work: Path, out_dir: Path) -> Path:
    """Cross-compile the conformance tests and package them; returns the .deb."""
    paths = source()
    tree = images.fresh(work / "posix-src")
    with tarfile.open(paths["orig"]) as tf:
        tf.extractall(tree, filter="data")
    with tarfile.open(paths["debian"]) as tf:
        tf.extractall(tree / SOURCE, filter="data")
    top = tree / SOURCE
    for patch in (top / "debian/patches/series").read_text().split():
        run(["patch", "-p1", "-s", "-i", str(top / "debian/patches" / patch)], cwd=top)
    pkg = images.fresh(work / "posix-pkg")
    out = pkg / PREFIX
    tests = [t for area in sorted((top / "conformance/interfaces").iterdir()) for t in _area_tests(area)]
    say(f"cross-compiling {len(tests)} Open POSIX conformance tests with {CC}")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        failed = sorted(f for f in pool.map(lambda s: _compile(s, top, out), tests) if f)
    images.write(out / "run-tests", RUNNER, 0o755)
    images.write(out / "BUILD-FAILED", "".join(f"{f}\n" for f in failed))
    images.write(pkg / f"usr/share/doc/{PACKAGE}/README",
                 f"Open POSIX Test Suite 1.5.2 (Debian source {DEB_VERSION}), conformance tests cross-compiled "
                 f"for arm64 by the lab: {len(tests) - len(failed)} built, {len(failed)} did not compile "
                 "(listed in BUILD-FAILED).\n")
    shutil.copy2(top / "COPYING", pkg / f"usr/share/doc/{PACKAGE}/copyright")
    images.write(pkg / "DEBIAN/control", "\n".join([
        f"Package: {PACKAGE}", f"Version: {VERSION}", "Architecture: arm64", "Maintainer: lab <lab@localhost>",
        "Depends: libc6, coreutils", "Section: devel", "Priority: optional",
        "Description: Open POSIX Test Suite conformance tests (built by the lab)",
        " The conformance tests of posixtestsuite 1.5.2, cross-compiled, and a runner", ""]))
    deb = out_dir / f"{PACKAGE}_{VERSION}_arm64.deb"
    out_dir.mkdir(parents=True, exist_ok=True)
    run(["dpkg-deb", "--root-owner-group", "-Zxz", "-z1", "--build", str(pkg), str(deb)], timeout=600)
    say(f"{deb.name}: {len(tests) - len(failed)} tests, {len(failed)} did not compile")
    return deb
