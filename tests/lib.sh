# SPDX-License-Identifier: MIT
# lib.sh - what every shell test shares, sourced as `. "${MT_SRCDIR:-.}/tests/lib.sh"`:
# the moetier binary, the data directory, a TAP `ok STATUS DESCRIPTION`, `bail_out REASON` for
# data that must be there (a missing input is an error, never a silent pass), a scratch directory
# removed on exit, and `tap_exit`, which fails the program when any check failed.
: "${MT_BUILDDIR:=.}"
: "${MT_SRCDIR:=.}"
: "${MT_TEST_DATA:=$MT_SRCDIR/tests/data}"
bin="$MT_BUILDDIR/moetier"
n=0
fail=0

ok() { # ok STATUS DESCRIPTION: pass when STATUS is 0
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then
        echo "ok $n - $2"
    else
        echo "not ok $n - $2"
        fail=1
    fi
}

bail_out() {
    echo "Bail out! $1"
    exit 1
}

# make_tmp NAME: a fresh directory in $tmp, removed when the test exits.
make_tmp() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/mt-$1-XXXXXX") || bail_out "cannot create a scratch directory"
    trap 'rm -rf "$tmp"' EXIT
}

# skip_without_gpu RC ERRFILE: where a run with --device gpu exited RC with ERRFILE on stderr
# because no CUDA device answers (or the build has no CUDA, or the runtime is newer than the
# driver), print the TAP plan that skips the whole test and exit 0.
skip_without_gpu() {
    _none='no CUDA device\|no CUDA-capable device\|built without CUDA'
    if [ "$1" -ne 0 ] && grep -q "$_none\|driver version is insufficient" "$2"; then
        echo "1..0 # SKIP no CUDA device"
        exit 0
    fi
}

tap_exit() {
    exit $fail
}
