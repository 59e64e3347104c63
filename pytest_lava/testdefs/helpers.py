"""LAVA's device-side helpers, as POSIX sh scripts for ``$LAVA_DIR/bin`` (busybox is enough).

Every helper prints its signal through ``lava_signal`` (``lava-common-functions``): on stdout, or
— KMSG mode, ``LAVA_KMSG`` set (device ``extra: {lava_test_kmsg: true}``) — into ``/dev/kmsg``
with a ``<0>`` prefix, so the line reaches the console even when the test's stdout does not.

=================================  =====================================================
``lava-test-case ID --shell CMD``  run CMD; pass if it exits 0 (STARTTC/ENDTC around its output)
``lava-test-case ID --result R``   ``[--measurement M] [--units U]``
``lava-test-set start NAME|stop``  following case ids are ``NAME.<id>`` until ``stop``
``lava-test-raise MESSAGE``        end the run now; the action fails with MESSAGE
``lava-test-reference ID``         ``--result R --reference URL``: a case with a link
``lava-test-case-attach ID FILE``  keep FILE of case ID for the host (fetched after the run)
``lava-test-run-attach FILE``      keep FILE of the whole run
``lava-background-process-start``  ``NAME --cmd CMD``: CMD in the background, output kept
``lava-background-process-stop``   ``NAME``: stop it; its output becomes a run attachment
=================================  =====================================================
"""

from __future__ import annotations

import hashlib

COMMON = r"""# sourced by the lava-* helpers
lava_signal() {
    if [ -n "${LAVA_KMSG:-}" ] && [ -w /dev/kmsg ]; then
        echo "<0>$1" > /dev/kmsg
    else
        echo "$1"
    fi
}
lava_bad_id() {
    case $1 in
        *'<'*|*'>'*|*' '*|'') return 0 ;;
    esac
    return 1
}
"""

_SOURCE = '. "${0%/*}/lava-common-functions"\n'

LAVA_TEST_CASE = r"""#!/bin/sh
# lava-test-case ID --shell CMD...            run CMD; pass if it exits 0
# lava-test-case ID --result pass|fail|skip|unknown [--measurement M] [--units U]
""" + _SOURCE + r"""_ltc_usage() {
    echo "usage: lava-test-case ID (--shell CMD... | --result RESULT [--measurement M] [--units U])" >&2
    exit 2
}
[ $# -ge 2 ] || _ltc_usage
_ltc_id=$1
shift
if lava_bad_id "$_ltc_id"; then
    echo "lava-test-case: a test case id must not be empty or hold '<', '>' or spaces" >&2; exit 2
fi
if [ "$1" = "--shell" ]; then
    shift
    [ $# -ge 1 ] || _ltc_usage
    lava_signal "<LAVA_SIGNAL_STARTTC $_ltc_id>"
    if [ $# -eq 1 ]; then eval "$1"; else "$@"; fi
    _ltc_rc=$?
    lava_signal "<LAVA_SIGNAL_ENDTC $_ltc_id>"
    if [ $_ltc_rc -eq 0 ]; then _ltc_r=pass; else _ltc_r=fail; fi
    lava_signal "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=$_ltc_id RESULT=$_ltc_r EXIT=$_ltc_rc>"
    exit 0
fi
_ltc_r= _ltc_m= _ltc_u=
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || _ltc_usage
    case $1 in
        --result) _ltc_r=$2 ;;
        --measurement) _ltc_m=$2 ;;
        --units) _ltc_u=$2 ;;
        *) _ltc_usage ;;
    esac
    shift 2
done
case $_ltc_r in
    pass|fail|skip|unknown) ;;
    *) echo "lava-test-case: --result must be pass, fail, skip or unknown" >&2; exit 2 ;;
esac
_ltc_line="<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=$_ltc_id RESULT=$_ltc_r"
[ -n "$_ltc_m" ] && _ltc_line="$_ltc_line MEASUREMENT=$_ltc_m"
[ -n "$_ltc_u" ] && _ltc_line="$_ltc_line UNITS=$_ltc_u"
lava_signal "$_ltc_line>"
"""

LAVA_TEST_SET = r"""#!/bin/sh
# lava-test-set start NAME | lava-test-set stop
""" + _SOURCE + r"""case $1 in
    start)
        if [ $# -ne 2 ] || lava_bad_id "$2"; then
            echo "usage: lava-test-set start NAME (no spaces, '<' or '>')" >&2; exit 2
        fi
        lava_signal "<LAVA_SIGNAL_TESTSET START $2>" ;;
    stop) lava_signal "<LAVA_SIGNAL_TESTSET STOP>" ;;
    *) echo "usage: lava-test-set start NAME | lava-test-set stop" >&2; exit 2 ;;
esac
"""

LAVA_TEST_RAISE = r"""#!/bin/sh
# lava-test-raise MESSAGE: the run ends after the current step; the action fails with MESSAGE
""" + _SOURCE + r"""_ltr_msg=$(echo "$*" | tr '<>\n' '() ')
lava_signal "<LAVA_SIGNAL_TESTRAISE ${_ltr_msg:-lava-test-raise}>"
[ -n "${LAVA_RESULT_DIR:-}" ] && echo "$_ltr_msg" > "$LAVA_RESULT_DIR/.raised"
exit 0
"""

LAVA_TEST_REFERENCE = r"""#!/bin/sh
# lava-test-reference ID --result pass|fail|skip|unknown --reference URL
""" + _SOURCE + r"""_usage() { echo "usage: lava-test-reference ID --result RESULT --reference URL" >&2; exit 2; }
[ $# -eq 5 ] || _usage
_id=$1; shift
lava_bad_id "$_id" && _usage
_r= _u=
while [ $# -gt 0 ]; do
    case $1 in
        --result) _r=$2 ;;
        --reference) _u=$2 ;;
        *) _usage ;;
    esac
    shift 2
done
case $_r in pass|fail|skip|unknown) ;; *) _usage ;; esac
case $_u in *'>'*|*' '*|'') _usage ;; esac
lava_signal "<LAVA_SIGNAL_REFERENCE TEST_CASE_ID=$_id RESULT=$_r REFERENCE=$_u>"
"""

LAVA_TEST_CASE_ATTACH = r"""#!/bin/sh
# lava-test-case-attach ID FILE [MIME-TYPE]   keep FILE for the host (fetched after the run)
""" + _SOURCE + r"""[ $# -ge 2 ] || { echo "usage: lava-test-case-attach ID FILE [MIME-TYPE]" >&2; exit 2; }
[ -f "$2" ] || { echo "lava-test-case-attach: $2: no such file" >&2; exit 1; }
_lta_dir=${LAVA_RESULT_DIR:-/tmp/lava-results}/attachments
mkdir -p "$_lta_dir" || exit 1
_lta_n=$(ls "$_lta_dir" | wc -l)
_lta_name=$(printf '%s' "$(basename "$2")" | tr -c 'A-Za-z0-9._+-' '_')
_lta_stored="$_lta_dir/$((_lta_n + 1))-$_lta_name"
cp "$2" "$_lta_stored" || exit 1
lava_signal "<LAVA_SIGNAL_ATTACH TEST_CASE_ID=$1 FILE=$_lta_name STORED=$_lta_stored MIME=${3:-text/plain}>"
"""

LAVA_TEST_RUN_ATTACH = r"""#!/bin/sh
# lava-test-run-attach FILE [MIME-TYPE]       keep FILE of the whole run for the host
[ $# -ge 1 ] || { echo "usage: lava-test-run-attach FILE [MIME-TYPE]" >&2; exit 2; }
exec lava-test-case-attach "" "$@"
"""

LAVA_BG_START = r"""#!/bin/sh
# lava-background-process-start NAME --cmd CMD   run CMD in the background (own process group)
""" + _SOURCE + r"""if [ $# -lt 3 ] || [ "$2" != "--cmd" ] || lava_bad_id "$1"; then
    echo "usage: lava-background-process-start NAME --cmd CMD" >&2; exit 2
fi
_bg_name=$1; shift 2
_bg_dir=${LAVA_RESULT_DIR:-/tmp/lava-results}/background
mkdir -p "$_bg_dir" || exit 1
if command -v setsid >/dev/null 2>&1; then _bg_setsid=setsid; else _bg_setsid=; fi
$_bg_setsid sh -c "$*" > "$_bg_dir/$_bg_name.log" 2>&1 < /dev/null &
echo $! > "$_bg_dir/$_bg_name.pid"
echo "lava-background-process-start: $_bg_name is pid $!"
"""

LAVA_BG_STOP = r"""#!/bin/sh
# lava-background-process-stop NAME   stop it (and its children); its output becomes an attachment
""" + _SOURCE + r"""[ $# -eq 1 ] || { echo "usage: lava-background-process-stop NAME" >&2; exit 2; }
_bg_dir=${LAVA_RESULT_DIR:-/tmp/lava-results}/background
[ -f "$_bg_dir/$1.pid" ] || { echo "lava-background-process-stop: no background process $1" >&2; exit 1; }
_bg_pid=$(cat "$_bg_dir/$1.pid")
kill -TERM -- "-$_bg_pid" 2>/dev/null || kill -TERM "$_bg_pid" 2>/dev/null
_bg_n=0
while kill -0 "$_bg_pid" 2>/dev/null && [ $_bg_n -lt 20 ]; do sleep 0.1; _bg_n=$((_bg_n + 1)); done
kill -KILL -- "-$_bg_pid" 2>/dev/null || kill -KILL "$_bg_pid" 2>/dev/null
rm -f "$_bg_dir/$1.pid"
echo "lava-background-process-stop: $1 stopped"
lava-test-run-attach "$_bg_dir/$1.log"
"""

HELPERS = {
    "lava-common-functions": COMMON,
    "lava-test-case": LAVA_TEST_CASE,
    "lava-test-set": LAVA_TEST_SET,
    "lava-test-raise": LAVA_TEST_RAISE,
    "lava-test-reference": LAVA_TEST_REFERENCE,
    "lava-test-case-attach": LAVA_TEST_CASE_ATTACH,
    "lava-test-run-attach": LAVA_TEST_RUN_ATTACH,
    "lava-background-process-start": LAVA_BG_START,
    "lava-background-process-stop": LAVA_BG_STOP,
}
RUNNER_VERSION = hashlib.sha256("".join(HELPERS.values()).encode()).hexdigest()[:16]
RAISED_FILE = ".raised"  # in $LAVA_RESULT_DIR: lava-test-raise ran; run.sh stops after the step
