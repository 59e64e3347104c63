"""A test definition repository of the shape found in the wild (Linaro's test-definitions), made
by the tests themselves: a shell library sourced by relative path, a result-file reporter, run
steps that ``cd`` from the repository root, LAVA's helpers, and a large prebuilt binary.

    automated/lib/sh-test-lib              check_return, add_metric -> ./output/result.txt
    automated/utils/send-to-lava.sh        result file -> lava-test-case --result/--measurement/--units
    automated/linux/alpha/alpha.{sh,yaml}  sources ../../lib/sh-test-lib; params LOOPS (a job overrides it)
    automated/linux/beta/beta.yaml         lava-test-set, -reference, background process, raw signals
    automated/linux/broken/broken.yaml     every run step fails (no test case at all)
    data/blob.bin                          ``blob_bytes`` of random data (incompressible)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SH_TEST_LIB = """\
# sh-test-lib: sourced by the test scripts by relative path
check_return() {
    _rc=$?
    if [ "$_rc" -eq 0 ]; then echo "$1 pass" >> "$RESULT_FILE"; else echo "$1 fail" >> "$RESULT_FILE"; fi
}
add_metric() {
    echo "$1 $2 $3 $4" >> "$RESULT_FILE"
}
"""

SEND_TO_LAVA = """\
#!/bin/sh
# send-to-lava.sh RESULT_FILE: "name result [measurement units]" lines -> lava-test-case
RESULT_FILE="$1"
[ -f "$RESULT_FILE" ] || { echo "WARNING: result file is missing!"; exit 1; }
while read -r name result measurement units; do
    if [ -n "$measurement" ]; then
        lava-test-case "$name" --result "$result" --measurement "$measurement" --units "$units"
    else
        lava-test-case "$name" --result "$result"
    fi
done < "$RESULT_FILE"
"""

ALPHA_SH = """\
#!/bin/sh
. ../../lib/sh-test-lib
OUTPUT="$(pwd)/output"
RESULT_FILE="$OUTPUT/result.txt"
export RESULT_FILE
rm -rf "$OUTPUT" && mkdir -p "$OUTPUT"
test -f ../../../data/blob.bin
check_return blob-present
add_metric blob-size pass "$(wc -c < ../../../data/blob.bin)" bytes
test -f ./output/../alpha.yaml
check_return in-its-directory
add_metric loops pass "$LOOPS" count
"""

ALPHA_YAML = """\
metadata:
  format: Lava-Test Test Definition 1.0
  name: alpha
  description: a Linaro-style test script, its library and its reporter
params:
  LOOPS: "1"
install:
  deps: [gcc]
  steps:
    - test -d automated/lib
run:
  steps:
    - cd ./automated/linux/alpha/
    - ./alpha.sh
    - ../../utils/send-to-lava.sh ./output/result.txt
"""

BETA_YAML = """\
metadata:
  format: Lava-Test Test Definition 1.0
  name: beta
  description: LAVA's helpers and raw signal lines
run:
  steps:
    - lava-test-set start group
    - lava-test-case inner --shell echo inside-the-set
    - lava-test-set stop
    - lava-test-reference ref --result pass --reference http://example.com/build/1
    - lava-background-process-start ticker --cmd "while true; do echo tick; sleep 0.2; done"
    - lava-test-case speed --result pass --measurement 12.5 --units MB/s
    - sleep 1
    - lava-background-process-stop ticker
    - 'echo "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=raw RESULT=pass MEASUREMENT=3 UNITS=s>"'
    - 'echo "<0><LAVA_SIGNAL_TESTCASE TEST_CASE_ID=prefixed RESULT=pass>"'
    - 'echo "<LAVA_SIGNAL_STARTTC bracketed>"; echo "bracketed output"; echo "<LAVA_SIGNAL_ENDTC bracketed>"'
    - 'echo "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=bracketed RESULT=pass>"'
"""

BROKEN_YAML = """\
metadata:
  format: Lava-Test Test Definition 1.0
  name: broken
  description: every step fails, no case is reported
run:
  steps:
    - cd ./automated/linux/not-there/
    - ./not-there.sh
    - ../../utils/send-to-lava.sh ./output/result.txt
"""

ALPHA_CASES = {"blob-present", "in-its-directory", "blob-size", "loops"}
BETA_CASES = {"group.inner", "ref", "speed", "raw", "prefixed", "bracketed"}
BROKEN_CASES = {"run-step-1", "run-step-2", "run-step-3"}


def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com")
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          timeout=120, env=env).stdout.strip()


def make_repo(where: Path, *, blob_bytes: int = 64 * 1024) -> str:
    """Create and commit the repository in ``where``; returns its ``file://`` URL."""
    files = {
        "automated/lib/sh-test-lib": (SH_TEST_LIB, 0o644),
        "automated/utils/send-to-lava.sh": (SEND_TO_LAVA, 0o755),
        "automated/linux/alpha/alpha.sh": (ALPHA_SH, 0o755),
        "automated/linux/alpha/alpha.yaml": (ALPHA_YAML, 0o644),
        "automated/linux/beta/beta.yaml": (BETA_YAML, 0o644),
        "automated/linux/broken/broken.yaml": (BROKEN_YAML, 0o644),
    }
    for rel, (text, mode) in files.items():
        path = where / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    blob = where / "data/blob.bin"
    blob.parent.mkdir(parents=True, exist_ok=True)
    with open(blob, "wb") as f:
        left = blob_bytes
        while left > 0:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n
    git(where, "init", "-q", "-b", "main")
    git(where, "add", "-A")
    git(where, "commit", "-q", "-m", "test definitions")
    return where.resolve().as_uri()
