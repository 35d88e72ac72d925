#!/bin/sh
# SPDX-License-Identifier: MIT
# test_bench.sh - a smoke run of `moetier bench --only dram,cpu --quick` (about a second): it
# exits 0, prints the table, writes a version-1 profile and an SVG; bad options exit 2.
# No timing is checked: on a shared CI machine the numbers mean nothing.
moetier="${MT_BUILDDIR:-.}/moetier"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mt-bench-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
n=0
failed=0
check() { # check COND-EXIT-STATUS DESCRIPTION
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then
        echo "ok $n - $2"
    else
        echo "not ok $n - $2"
        failed=1
    fi
}
echo "1..6"
"$moetier" bench --only dram,cpu --quick --json "$tmp/p.json" --svg "$tmp/p.svg" \
    >"$tmp/out" 2>"$tmp/err"
rc=$?
check $rc "bench --only dram,cpu --quick exits 0"
[ $rc -eq 0 ] || sed 's/^/# /' "$tmp/err"
grep -q '^dram  *triad' "$tmp/out"
check $? "the table has a dram triad row"
grep -q '^cpu  *fma' "$tmp/out"
check $? "the table has a cpu fma row"
grep -q '"version": 1' "$tmp/p.json" && grep -q '"triad_gbps"' "$tmp/p.json"
check $? "the profile is written with its version"
grep -q '<svg' "$tmp/p.svg" && grep -q 'DRAM triad' "$tmp/p.svg"
check $? "the chart is written"
"$moetier" bench --only bogus >/dev/null 2>"$tmp/err2"
[ $? -eq 2 ] && grep -q "unknown part 'bogus'" "$tmp/err2"
check $? "an unknown part is a usage error (exit 2)"
exit $failed
