#!/bin/bash
# gpu_sanitize.sh - run GPU kernel tests under compute-sanitizer: memcheck (out-of-bounds and
# misaligned accesses, bad frees, API errors) and racecheck (shared-memory hazards between the
# threads of a block). The tests check values; these tools check what values cannot show, such as
# a read one byte past a buffer that happens to hold the right number, or a warp that is correct
# only while its lanes run together.
#
# Run from a built tree on the GPU test machine, with $OUT set:
#   bash bench/gpu_sanitize.sh mla indexer     (names of tests/test_gpu_NAME; none: every one)
# TIMEOUT (seconds per tool and test, default 290): the tools slow a test 10-100 times, and
# racecheck over the larger tests may not finish; a timed-out run is reported as such.
# TOOLS (default "memcheck racecheck") picks the tools; PRINT_LIMIT (default 10000) caps the
# reports printed a run: one kernel's hazards come once per block and thread pair, so a low cap
# fills up with the first kernel's and hides the others'.
# Writes $OUT/sanitize-NAME-TOOL.log for each run and a summary in $OUT/sanitize.txt: each run's
# counts, and for racecheck the kernels its hazards were found in (reports per kernel).
OUT=${OUT:-.}
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ ! -x "$SAN" ]; then
    echo "gpu_sanitize.sh: compute-sanitizer not found (it ships with the CUDA toolkit)" >&2
    exit 1
fi
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in tests/test_gpu_*.c; do
        n=${f#tests/test_gpu_}
        names+=("${n%.c}")
    done
fi
status=0
for n in "${names[@]}"; do
    test=tests/test_gpu_$n
    if [ ! -x "$test" ]; then
        echo "$n: $test is not built (make $test)" | tee -a "$OUT/sanitize.txt"
        status=1
        continue
    fi
    for tool in ${TOOLS:-memcheck racecheck}; do
        log=$OUT/sanitize-$n-$tool.log
        extra=(--print-limit "${PRINT_LIMIT:-10000}")
        [ "$tool" = racecheck ] && extra+=(--racecheck-report all)
        timeout "${TIMEOUT:-290}" "$SAN" --tool "$tool" "${extra[@]}" "./$test" > "$log" 2>&1
        rc=$?
        ok=$(grep -c '^ok' "$log")
        notok=$(grep -c '^not ok' "$log")
        # the tool's last line: "ERROR SUMMARY: N errors" or "RACECHECK SUMMARY: ..."
        summary=$(grep -E '(ERROR|RACECHECK) SUMMARY' "$log" | tail -1)
        [ "$rc" = 124 ] && summary="timed out after ${TIMEOUT:-290} s"
        echo "$n $tool: rc $rc, $ok ok, $notok not ok; ${summary:-no summary}" |
            tee -a "$OUT/sanitize.txt"
        # racecheck names a hazard's two accesses "Read Thread (x,y,z) at KERNEL(args)+0xOFF"
        grep -oE '(Read|Write) Thread \([0-9,]+\) at [^(<]+' "$log" |
            sed -E 's/^(Read|Write) Thread \([0-9,]+\) at (void )?//' | sort | uniq -c |
            awk -v r="$n $tool" '{ print "    " r ": " $1 " accesses in " $2 }' |
            tee -a "$OUT/sanitize.txt"
        [ "$rc" = 0 ] || status=1
    done
done
exit $status
