"""The built-in lava-android-test library: tests that run on any Android-like image over adb
(the lab's busybox-based one included).

==========  ==========================================================================================
busybox     the shell applets an Android test needs (toolbox/busybox), each its own case, plus a pipe
props       the property service and the partitions: ``ro.build.*``, ``sys.boot_completed``,
            ``setprop``/``getprop`` round trip, /system and /data mounted, /data writable
storage     dd write and read throughput on /data (``option``: MiB to write, default 8), measured
            in MB/s, and the file's size checked
==========  ==========================================================================================

Each prints ``<case>: PASS|FAIL|SKIP [<measurement> <units>]`` lines, parsed by :data:`PATTERN`.
"""

from __future__ import annotations

import re

from ..testdefs.model import ParseSpec
from .model import ANDROID_FIXUP, AndroidTest

PATTERN = re.compile(r"^(?P<test_case_id>[A-Za-z0-9_.-]+): (?P<result>PASS|FAIL|SKIP)"
                     r"(?: (?P<measurement>[0-9.]+) (?P<units>\S+))?\s*$")
PARSE = ParseSpec(PATTERN, dict(ANDROID_FIXUP))

_CHECK = """t() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name: PASS"; else echo "$name: FAIL"; fi; }
"""

BUSYBOX = _CHECK + """for a in sh ls cat cp mv rm mkdir chmod ln mount umount ps kill grep sed awk dd df id \\
         uname date sleep sync wc cut head tail getprop; do
    t "applet-$a" command -v "$a"
done
t pipe sh -c 'echo lava-android | grep -q lava-android'
t exit-status sh -c '! sh -c "exit 3"'
"""

PROPS = _CHECK + """t build-version-release test -n "$(getprop ro.build.version.release)"
t product-model test -n "$(getprop ro.product.model)"
t boot-completed test "$(getprop sys.boot_completed)" = 1
t system-mounted grep -q " /system " /proc/mounts
t data-mounted grep -q " /data " /proc/mounts
t data-writable sh -c 'mkdir -p /data/local/tmp && echo x > /data/local/tmp/lava-w && rm /data/local/tmp/lava-w'
if command -v setprop >/dev/null 2>&1; then
    t setprop-getprop sh -c 'setprop lava.test.prop 42 && [ "$(getprop lava.test.prop)" = 42 ]'
else
    echo "setprop-getprop: SKIP"
fi
"""

STORAGE = """mb=${1:-8}
dir=/data/local/tmp/lava-storage; f=$dir/dd.bin
mkdir -p $dir
now() { cut -d' ' -f1 /proc/uptime; }
t0=$(now); dd if=/dev/zero of=$f bs=1048576 count=$mb 2>/dev/null; sync; t1=$(now)
echo 3 > /proc/sys/vm/drop_caches 2>/dev/null
dd if=$f of=/dev/null bs=1048576 2>/dev/null; t2=$(now)
size=$(wc -c < $f)
rm -rf $dir
awk -v mb=$mb -v a=$t0 -v b=$t1 -v c=$t2 -v size=$size 'BEGIN {
    w = b - a; r = c - b; if (w < 0.01) w = 0.01; if (r < 0.01) r = 0.01
    printf "file-size: %s\\n", (size == mb * 1048576) ? "PASS" : "FAIL"
    printf "write-throughput: %s %.2f MB/s\\n", (size == mb * 1048576) ? "PASS" : "FAIL", mb / w
    printf "read-throughput: PASS %.2f MB/s\\n", mb / r
}'
"""


def _test(test_id: str, description: str, script: str, options: str = "") -> AndroidTest:
    return AndroidTest(test_id, description, [f"sh $(INSTALL_DIR)/{test_id}.sh $(OPTIONS)"], PARSE,
                       files={f"{test_id}.sh": script}, default_options=options, source=f"library:{test_id}")


LIBRARY: dict[str, AndroidTest] = {t.test_id: t for t in (
    _test("busybox", "shell applets (toolbox/busybox) and shell basics", BUSYBOX),
    _test("props", "property service and Android partitions", PROPS),
    _test("storage", "dd write/read throughput on /data", STORAGE, options="8"),
)}


def known_tests() -> list[str]:
    return sorted(LIBRARY)


def library_test(name: str) -> AndroidTest | None:
    """A fresh copy of the library's test ``name`` (``None`` if there is none)."""
    found = LIBRARY.get(name)
    if found is None:
        return None
    return AndroidTest(found.test_id, found.description, list(found.run_steps), found.parse, dict(found.files),
                       dict(found.host_files), found.default_options, found.source)
