#!/bin/sh
# SPDX-License-Identifier: MIT
# test_bench.sh - a smoke run of `moetier bench --only dram,cpu --quick` (a few seconds): it
# exits 0, prints the table, writes a version-1 profile with the CPU expert kernels' rates (the
# automatic plan's profile is a quick one) and an SVG; bad options exit 2. The disk
# part on a directory: it measures, never leaves its test file behind (also when interrupted),
# never removes a file it did not create, and refuses bad paths and sizes with one message.
# No timing is checked: on a shared CI machine the numbers mean nothing; what is derived from
# them is (the profile holds the table's rates, %peak and expert_eff are ratios of its rows).
# Option bounds and defaults are checked on runs that stop before measuring, or on tiny disks.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
make_tmp bench
echo "1..83"
"$bin" bench --only dram,cpu --quick --json "$tmp/p.json" --svg "$tmp/p.svg" \
    >"$tmp/out" 2>"$tmp/err"
rc=$?
ok $rc "bench --only dram,cpu --quick exits 0"
[ $rc -eq 0 ] || sed 's/^/# /' "$tmp/err"
grep -q '^dram  *triad' "$tmp/out"
ok $? "the table has a dram triad row"
grep -q '^cpu  *fma' "$tmp/out"
ok $? "the table has a cpu fma row"
grep -q '"version": 1' "$tmp/p.json" && grep -q '"triad_gbps"' "$tmp/p.json"
ok $? "the profile is written with its version"
grep -q '^cpu  *experts_decode' "$tmp/out" &&
    grep -Eq '"expert_eff": [0-9.e+-]*[1-9]' "$tmp/p.json" &&
    grep -Eq '"expert_prefill_gflops": [0-9.e+-]*[1-9]' "$tmp/p.json"
ok $? "--quick measures the CPU expert kernels: $(grep 'prefill: each run' "$tmp/err" | head -c 120)"
grep -q '<svg' "$tmp/p.svg" && grep -q 'DRAM triad' "$tmp/p.svg"
ok $? "the chart is written"
# a column a row has no value for is "-": the fma row is a rate (TFLOP/s) without a time or GB/s
grep -Eq '^cpu +fma .* - +- +- +[0-9]+\.[0-9]+ +-$' "$tmp/out" &&
    grep -Eq '^dram +triad .* [0-9.]+ +[0-9.]+ +[0-9]+\.[0-9]+ +- +[0-9-]+$' "$tmp/out"
ok $? "rows show a value only in their own columns: $(grep -E '^(cpu +fma|dram +triad)' "$tmp/out" |
    tr -s ' ' | tr '\n' ';')"
cp "$tmp/out" "$tmp/quick.out"
# a row alone in its group has no %peak (the read ceiling's group is its own; 100 would claim a
# comparison), and each timed row's p90 is not below its median (the columns in their order)
timed='$1 == "dram" || $2 == "experts_decode"'
grep -Eq '^dram +read_ceiling .* -$' "$tmp/out" &&
    awk "$timed"' { n++; if ($(NF - 4) + 0 > $(NF - 3) + 0) bad++ }
        END { exit !(n >= 3 && !bad) }' "$tmp/out"
ok $? "the read ceiling alone in its group has no %peak; p90_ms >= median_ms: \
$(awk "$timed"' { printf "%s %s %s %s;", $2, $(NF - 4), $(NF - 3), $NF }' "$tmp/out")"
# the header counts the NUMA nodes the profile has ("1 NUMA node", "2 NUMA nodes")
nn=$(sed -n 's/.*"numa_nodes": \([0-9]*\).*/\1/p' "$tmp/p.json")
want="$nn NUMA node$([ "$nn" = 1 ] || echo s),"
[ -n "$nn" ] && grep -q "^# moetier bench .*, $want" "$tmp/out"
ok $? "the header says $want: $(head -1 "$tmp/out" | cut -d'|' -f4)"
# ... and names the kernels timed another number of times than the bench's 3 (--quick: the
# experts' decode 4 times, their prefill 2), once each
grep -q '^# .*| median of 3 reps, experts_decode: 4, experts_prefill: 2 (--quick: not a' \
    "$tmp/out" && grep -q ' (--quick: not a measurement)$' "$tmp/out"
ok $? "the header names the expert kernels' reps: $(head -1 "$tmp/out" | cut -d'|' -f6)"
# --only cpu: the experts' efficiency is a share of the read ceiling, which it measures too (the
# expert rows used to be skipped without a word)
"$bin" bench --only cpu --quick --json "$tmp/cpu.json" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] && grep -q '^dram  *read_ceiling' "$tmp/out" && grep -q '^cpu  *experts_decode' \
    "$tmp/out" && grep -Eq '"expert_eff": [0-9.e+-]*[1-9]' "$tmp/cpu.json"
ok $? "--only cpu times the experts against a read ceiling it measures"
# ... and the profile has the table's numbers: expert_eff is the experts' GB/s as a share of the
# ceiling's (at most 1), fma_gflops the fma row's TFLOP/s (the table rounds to 2 decimals)
awk -v json="$tmp/cpu.json" '
$1 == "dram" && $2 == "read_ceiling" { c = $(NF - 2) }
$1 == "cpu" && $2 == "fma" { f = $(NF - 1) }
$1 == "cpu" && $2 == "experts_decode" { e = $(NF - 2) }
END {
    while ((getline line < json) > 0) {
        split(line, v, ": *")
        if (line ~ /"expert_eff"/) je = v[2] + 0
        if (line ~ /"read_ceiling_gbps"/) jc = v[2] + 0
        if (line ~ /"fma_gflops"/) jf = v[2] + 0
    }
    want = e / c < 1 ? e / c : 1
    d = je - want
    exit !(c > 0 && e > 0 && (d < 0 ? -d : d) <= 0.01 * want && je <= 1 &&
           jc - c <= 0.006 && c - jc <= 0.006 && jf / 1000 - f <= 0.006 && f - jf / 1000 <= 0.006)
}' "$tmp/out"
ok $? "expert_eff is experts_decode over read_ceiling GB/s, fma_gflops the fma row: \
$(grep -E '"(expert_eff|read_ceiling_gbps|fma_gflops)"' "$tmp/cpu.json" | tr -d ' \n')"
"$bin" bench --only bogus >/dev/null 2>"$tmp/err2"
[ $? -eq 2 ] && grep -q "unknown part 'bogus'" "$tmp/err2"
ok $? "an unknown part is a usage error (exit 2)"

"$bin" bench --only dram --quick --dram-size 8M --json "$tmp/dram.json" --svg "$tmp/dram.svg" \
    >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] && grep -q '^dram  *triad .*3x8 MiB' "$tmp/out"
ok $? "--quick keeps an explicit --dram-size"
# ... for the stream arrays only: the read ceiling (the planner's DRAM rate) keeps a working set
# past the last-level cache (8 MiB arrays used to size it too, and it read the cache)
grep '^dram  *read_ceiling' "$tmp/out" | grep -qv ', 8 MiB'
ok $? "--dram-size does not size the read ceiling: $(grep '^dram  *read_ceiling' "$tmp/out")"
# The profile holds what the table shows (the table rounds to 2 decimals): cpu.read_gbps and
# triad_gbps are the last dram read and triad rows (all nodes at once where there are several
# nodes, else the one node's), nodes[0] the first ones, read_ceiling_gbps the ceiling's row; a
# machine of one node has no "all nodes" rows.
awk -v json="$tmp/dram.json" '
function near(a, b) { return a - b <= 0.006 && b - a <= 0.006 }
$1 == "dram" && $2 == "read" { if (!nr++) r0 = $(NF - 2); rl = $(NF - 2) }
$1 == "dram" && $2 == "triad" { if (!nt++) t0 = $(NF - 2); tl = $(NF - 2) }
$1 == "dram" && $2 == "read_ceiling" { rc = $(NF - 2) }
END {
    FS = ": *"
    while ((getline line < json) > 0) {
        split(line, f, ": *")
        v = f[2] + 0
        if (line ~ /"nodes"/) nodes = 1
        else if (line ~ /"numa_nodes"/) nn = v
        else if (line ~ /"read_ceiling_gbps"/) jc = v
        else if (line ~ /"read_gbps"/ && !nodes) jr = v
        else if (line ~ /"triad_gbps"/ && !nodes) jt = v
        else if (line ~ /"read_gbps"/ && nodes && !seen_r++) jr0 = v
        else if (line ~ /"triad_gbps"/ && nodes && !seen_t++) jt0 = v
    }
    exit !(nn >= 1 && nr == nn + (nn > 1) && nt == nr && near(jr, rl) && near(jt, tl) &&
           near(jr0, r0) && near(jt0, t0) && near(jc, rc) && jr > 0 && jc > 0)
}' "$tmp/out"
ok $? "the profile's DRAM rates are the table's rows: \
$(grep -E '"(numa_nodes|read_gbps|triad_gbps|read_ceiling_gbps)"' "$tmp/dram.json" | tr -d ' \n')"
# a --quick profile says so (it is a smoke test, not a measurement); the table's header names a
# kernel's repetitions only where they differ from the bench's (--quick's 3: the ceiling's 3 are)
grep -q '"source": "moetier bench [^"]* --quick"' "$tmp/dram.json" &&
    grep -q '^# .*| median of 3 reps (--quick: not a measurement)$' "$tmp/out"
ok $? "a --quick profile's source says --quick; the header names no kernel's reps: \
$(grep '^# moetier' "$tmp/out" | cut -d'|' -f6)"
# no flag given here is unused (--disk and --disk-size are warned about only when given)
! grep -q 'not used' "$tmp/err"
ok $? "no flag is said to be unused: $(grep 'not used' "$tmp/err")"
# the chart: a bar for the read ceiling, and "all nodes" bars only where there are several nodes
if grep -q '"numa_nodes": 1,' "$tmp/dram.json"; then
    ! grep -q 'DRAM [a-z]*, all nodes' "$tmp/dram.svg"
else
    grep -q 'DRAM read, all nodes' "$tmp/dram.svg"
fi && grep -q 'DRAM read ceiling' "$tmp/dram.svg"
ok $? "the chart has the read ceiling, and all-nodes bars only for several nodes"
# 8 MiB arrays fit in the L3 (the warning names its size): even --quick's read ceiling works on
# more than the L3 holds, or it would measure the cache
to_bytes() { # "1016 MiB" -> bytes
    awk -v s="$1" 'BEGIN { split(s, f, " "); m["B"] = 1; m["KiB"] = 1024; m["MiB"] = 1048576;
        m["GiB"] = 1073741824; printf "%.0f\n", f[1] * m[f[2]] }'
}
l3=$(sed -n 's/.*fit in the \([0-9]* [KMG]*i*B\) of L3 cache.*/\1/p' "$tmp/err" | head -1)
ceil=$(sed -n 's/^dram  *read_ceiling .*, \([0-9]* [KMG]*i*B\)\( unpinned\)\{0,1\}  .*/\1/p' \
    "$tmp/out")
if [ -z "$l3" ]; then
    ok 0 "# SKIP 8 MiB arrays are not inside this machine's L3 (no L3 size reported)"
else
    [ -n "$ceil" ] && [ "$(to_bytes "$ceil")" -gt "$(to_bytes "$l3")" ]
    ok $? "--quick's read ceiling works on more than the L3: $ceil over $l3"
fi
# --quick without --dram-size: arrays of 2x all L3, 16 MiB at least (usage), in 4 KiB units
arr=$(sed -n 's/^dram  *read  *node [0-9]*, [0-9]* thr, \([0-9]* [KMG]*i*B\).*/\1/p' \
    "$tmp/quick.out" | head -1)
if [ -z "$l3" ]; then
    ok 0 "# SKIP no L3 size reported"
else
    want=$(to_bytes "$l3")
    want=$((2 * want > 16777216 ? 2 * want : 16777216))
    want=$(((want + 4095) / 4096 * 4096))
    [ -n "$arr" ] && [ "$(to_bytes "$arr")" -eq "$want" ]
    ok $? "--quick's stream arrays are 2x the L3 ($l3): $arr"
fi
# Too small for the team: the message names the flag and the minimum (synthetic 2000 cores: it
# stops before any thread starts)
HWLOC_SYNTHETIC="pack:1 core:2000 pu:1" "$bin" bench --only dram --quick --dram-size 64K \
    >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q -- '--dram-size 65536 bytes is too small for 2000 threads.*at least' \
    "$tmp/err"
ok $? "a --dram-size too small for the threads names the flag and the minimum: \
$(head -1 "$tmp/err")"
# ... also just under the minimum (2000 x 512 bytes = 1000K; 996K is 4 KiB short)
HWLOC_SYNTHETIC="pack:1 core:2000 pu:1" "$bin" bench --only dram --quick --dram-size 996K \
    >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q -- '--dram-size 1019904 bytes is too small for 2000 threads.*1024000' \
    "$tmp/err"
ok $? "--dram-size 4 KiB under 512 bytes a thread is refused naming the flag: \
$(head -1 "$tmp/err")"
# ... and the failure stops the bench: the disk part after it does not run, no profile
mkdir "$tmp/d0"
HWLOC_SYNTHETIC="pack:1 core:2000 pu:1" "$bin" bench --only dram,disk --quick --dram-size 64K \
    --disk "$tmp/d0" --disk-size 4M --disk-qd 1 --disk-block 1M --json "$tmp/f.json" \
    >"$tmp/out" 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "stopped by the error above; no profile written" "$tmp/err" &&
    [ ! -e "$tmp/f.json" ] && ! grep -q '^bench: disk' "$tmp/err" && [ ! -s "$tmp/out" ]
ok $? "a failed part stops the parts after it: $(grep -v '^mt: bench' "$tmp/err" | head -1)"
# Half the machine's DRAM per array: three of them would not fit; refused before touching any.
half_k=$(awk '/^MemTotal:/ { print int($2 / 2 / 4) * 4 }' /proc/meminfo)
"$bin" bench --only dram --dram-size "${half_k}K" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q 'of DRAM' "$tmp/err"
ok $? "--dram-size too large for this machine is refused"

# Under taskset the team stays inside the process's CPUs: one core allowed, one thread, and
# the profile counts that core only (the team used to pin a thread to every core of the machine).
if ! command -v taskset >/dev/null 2>&1; then
    ok 0 "# SKIP taskset is missing"
elif [ "$(nproc --all 2>/dev/null || echo 1)" -lt 2 ]; then
    ok 0 "# SKIP one CPU: no mask can leave a core out"
else
    taskset -c 0 "$bin" bench --only dram --quick --dram-size 8M --json "$tmp/ts.json" \
        >"$tmp/out" 2>"$tmp/err"
    [ $? -eq 0 ] && grep -q '^dram  *triad .*, 1 thr,' "$tmp/out" &&
        grep -q '"cores": 1,' "$tmp/ts.json"
    ok $? "taskset -c 0: one thread, one core in the profile: $(grep -m1 'dram  *read ' "$tmp/out")"
fi

# ---- disk ----
mkdir "$tmp/d"
"$bin" bench --only disk --disk "$tmp/d" --disk-size 8M --disk-qd 1,4 --disk-block 1M \
    --json "$tmp/disk.json" >"$tmp/out" 2>"$tmp/err"
rc=$?
ok $rc "bench --only disk on a directory exits 0"
[ $rc -eq 0 ] || sed 's/^/# /' "$tmp/err"
grep -q '^disk  *odirect_read .* qd4 1 MiB' "$tmp/out" && [ -z "$(ls -A "$tmp/d")" ]
ok $? "it has a disk row per point and removed its test file"
# O_DIRECT, or the buffered reads of a file system that refuses it, is said alike by the test
# file's line, each point's line and each row: all direct, or all buffered
w=$(grep -c '^bench: disk: wrote .*(buffered)$' "$tmp/err")
p=$(grep -c 'GB/s (buffered: the filesystem refused O_DIRECT)$' "$tmp/err")
r=$(grep -c '^disk .* 1 MiB buffered ' "$tmp/out")
[ "$(grep -c '^bench: disk: wrote ' "$tmp/err")" -eq 1 ] &&
    [ "$(grep -c '^disk ' "$tmp/out")" -eq 2 ] && { [ "$w$p$r" = 000 ] || [ "$w$p$r" = 122 ]; }
ok $? "direct or buffered is said alike (buffered: test file $w, points $p, rows $r)"
# The profile: the disk's path, a point per (qd, block), and best_* the fastest point's (what
# the planner takes; a profile whose best_gbps is not its best point's is refused on loading).
awk -F': *' -v path="$tmp/d" '
/"disks"/ { d = 1 }
!d { next }
/"path"/ { p = $2 }
/"best_gbps"/ { best = $2 + 0 }
/"best_qd"/ { bqd = $2 + 0 }
/"best_block_bytes"/ { bbb = $2 + 0 }
/"qd"/ { qd = $2 + 0 }
/"block_bytes"/ { bb = $2 + 0 }
/"gbps"/ && !/best/ { np++; if ($2 + 0 > max) { max = $2 + 0; mqd = qd; mbb = bb } }
END { exit !(p == "\"" path "\"," && np == 2 && max > 0 && best == max && bqd == mqd &&
             bbb == mbb && bbb == 1048576) }' "$tmp/disk.json"
ok $? "the profile's disk has both points and the best one's rate, qd and block: \
$(grep '"best_' "$tmp/disk.json" | tr -d ' \n')"
# %peak: the faster point 100, the other its share of it (from the rounded GB/s: +-1); the
# header says once that disk rows are one pass
awk '$1 == "disk" { g[n + 0] = $(NF - 2); pc[n++] = $NF; if ($(NF - 2) > max) max = $(NF - 2) }
END {
    if (n != 2 || max <= 0) exit 1
    for (i = 0; i < n; i++) {
        want = 100 * g[i] / max
        if (pc[i] - want > 1 || want - pc[i] > 1 || (g[i] == max && pc[i] != 100)) exit 1
    }
}' "$tmp/out" && [ "$(grep '^# ' "$tmp/out" | head -1 | grep -o 'one pass' | wc -l)" -eq 1 ]
ok $? "%peak is each point's share of the faster one: $(grep '^disk' "$tmp/out" | tr -s ' ' |
    cut -d' ' -f5- | tr '\n' ';')"

# the chart's disk bar names the best point, as the profile does (4 points; the first, 4 KiB
# reads, is the slowest: a bar that took the first point's block or queue depth would show)
"$bin" bench --only disk --disk "$tmp/d" --disk-size 4M --disk-qd 16,1 --disk-block 4K,1M \
    --json "$tmp/disk4.json" --svg "$tmp/disk4.svg" >"$tmp/out" 2>"$tmp/err"
best=$(awk -F': *' '/"best_qd"/ { q = $2 + 0 } /"best_block_bytes"/ { b = $2 + 0 }
    END { print "qd" q " " (b >= 1048576 ? b / 1048576 " MiB" : b / 1024 " KiB") }' \
    "$tmp/disk4.json")
[ "$(grep -o 'qd[0-9]* [0-9]* [KMG]iB' "$tmp/disk4.svg")" = "$best" ]
ok $? "the chart's disk bar is the best point's ($best): \
$(grep -o 'qd[0-9]* [0-9]* [KMG]iB' "$tmp/disk4.svg")"
# the table names each point's block in its unit: 4 KiB, not 4096 B or 1 KiB
[ "$(grep '^disk ' "$tmp/out" | grep -o 'qd[0-9]* [0-9]* [KMG]iB' | tr '\n' ';')" = \
    "qd16 4 KiB;qd1 4 KiB;qd16 1 MiB;qd1 1 MiB;" ]
ok $? "the disk rows' blocks are 4 KiB and 1 MiB: $(grep '^disk ' "$tmp/out" |
    grep -o 'qd[0-9]* [0-9]* [KMG]*i*B' | tr '\n' ';')"
# --csv: a shape with a quote and a comma (a --disk directory's name) stays one field, its quote
# doubled; the header says disk rows are one pass, not a median of the bench's repetitions
mkdir "$tmp/q\"x,y"
"$bin" bench --only disk --disk "$tmp/q\"x,y" --disk-size 4M --disk-qd 1 --disk-block 1M --csv \
    >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] && grep -qF "disk,odirect_read,\"$tmp/q\"\"x,y qd1 1 MiB\"," "$tmp/out" &&
    grep -q '^# .*odirect_read: one pass a point' "$tmp/out"
ok $? "--csv doubles a quote in a shape; disk rows are said to be one pass: \
$(grep '^disk' "$tmp/out")"
# ... under the header line, the CSV's column names, then its rows and nothing else (the table's
# footnote is not a CSV line)
[ "$(sed -n 2p "$tmp/out")" = "tier,kernel,shape,median_ms,p90_ms,GB/s,TFLOP/s,%peak" ] &&
    [ "$(grep -c '^#' "$tmp/out")" -eq 1 ] && [ "$(wc -l <"$tmp/out")" -eq 3 ]
ok $? "--csv has its column names and no footnote: $(sed -n '2,$p' "$tmp/out" | cut -c1-60 |
    tr '\n' ';')"
# flags that change nothing are said to: --disk without the disk part, --disk-size for a file
# (gpu in --only too: without a GPU it is skipped with a note, and dram still runs)
"$bin" bench --only gpu,dram --quick --dram-size 8M --disk "$tmp/d" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] && grep -q -- "--disk is not used: --only has no disk part" "$tmp/err" &&
    grep -q '^dram  *triad' "$tmp/out" &&
    { grep -q '^bench: note: .*gpu and pcie skipped' "$tmp/err" || grep -q '^gpu ' "$tmp/out"; }
ok $? "--disk under --only gpu,dram is warned about: $(grep 'not used' "$tmp/err")"
# the header says why gpu and pcie were skipped (or, with a GPU, which one it is)
note=$(sed -n 's/^bench: note: //p' "$tmp/err")
if [ -n "$note" ]; then
    head -n 1 "$tmp/out" | grep -qF "| $note |"
else
    ! head -n 1 "$tmp/out" | grep -q "gpu not probed"
fi
ok $? "the header has the GPU note ($note): $(head -n 1 "$tmp/out" | cut -d'|' -f5)"
head -c 1048576 /dev/zero >"$tmp/mib"
"$bin" bench --only disk --disk "$tmp/mib" --disk-size 8M --disk-qd 1 --disk-block 1M \
    >/dev/null 2>"$tmp/err"
[ $? -eq 0 ] && grep -q -- "--disk-size is not used" "$tmp/err"
ok $? "--disk-size with a file --disk is warned about: $(grep 'not used' "$tmp/err")"
"$bin" bench --only disk --disk "$tmp/mib" --disk-qd 1 --disk-block 1M >/dev/null 2>"$tmp/err"
[ $? -eq 0 ] && ! grep -q -- "not used" "$tmp/err"
ok $? "a file --disk without --disk-size is not warned about: $(grep 'not used' "$tmp/err")"
# ... nor with a directory among the --disk paths (its test file takes the size)
"$bin" bench --only disk --disk "$tmp/d" --disk "$tmp/mib" --disk-size 4M --disk-qd 1 \
    --disk-block 1M >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] && ! grep -q -- "not used" "$tmp/err"
ok $? "--disk-size with a directory and a file --disk is not warned about: \
$(grep 'not used' "$tmp/err")"
# %peak compares a disk's points with each other, never two disks: one point each, none has one
awk '$1 == "disk" { n++; if ($NF != "-") bad++ } END { exit !(n == 2 && !bad) }' "$tmp/out"
ok $? "two disks of one point each: no %peak: $(awk '$1 == "disk" { printf "%s %s;", $3, $NF }' \
    "$tmp/out")"
rm -f "$tmp/mib"

# Killed after the test file is written: the file must not stay behind. (SIGTERM: a background
# job of a non-interactive shell ignores SIGINT, so Ctrl-C cannot be sent from here.)
"$bin" bench --only disk --disk "$tmp/d" --disk-size 64M --disk-pass 1G \
    >/dev/null 2>"$tmp/err" &
pid=$!
i=0
while [ $i -lt 600 ] && ! grep -q 'wrote' "$tmp/err" && kill -0 $pid 2>/dev/null; do
    sleep 0.05
    i=$((i + 1))
done
kill -TERM $pid 2>/dev/null
wait $pid
[ -z "$(ls -A "$tmp/d")" ]
ok $? "a kill during the disk part leaves no test file"
rm -f "$tmp/d"/*

# A file of the test file's name that exists already (the name has the pid) is not ours.
sh -c 'echo keep >"$1/moetier-bench-$$.tmp"; exec "$2" bench --only disk --disk "$1" \
    --disk-size 8M' sh "$tmp/d" "$bin" >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] && grep -q 'cannot create disk test file' "$tmp/err" &&
    [ "$(cat "$tmp/d"/moetier-bench-*.tmp)" = keep ]
ok $? "an existing file of the test file's name is refused and left alone"
rm -f "$tmp/d"/*

"$bin" bench --only disk --disk "$tmp/d" --disk-size 4K >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q 'disk-size.*smaller than' "$tmp/err" && [ -z "$(ls -A "$tmp/d")" ]
ok $? "--disk-size below the largest block is a usage error"

mkfifo "$tmp/fifo"
"$bin" bench --only disk --disk "$tmp/fifo" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q 'neither a file nor a directory' "$tmp/err"
ok $? "a FIFO is refused"

# The reads' buffers: a slot per read a pass can have in flight, not qd x block (--disk-qd 4096
# --disk-block 1G wanted 4 TiB whatever the file); more than the memory available is refused
# naming the flags, before a byte is read (a sparse file of twice the available memory)
sparse_g=$(awk '/^MemAvailable:/ { print (int($2 / 1048576) + 1) * 2 }' /proc/meminfo)
truncate -s "${sparse_g}G" "$tmp/sparse" 2>/dev/null || : >"$tmp/sparse"
"$bin" bench --only disk --disk "$tmp/sparse" --disk-qd 4096 --disk-block 1G \
    --disk-pass "${sparse_g}G" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "need $sparse_g.00 GiB of buffers.*lower --disk-qd or --disk-block" \
    "$tmp/err"
ok $? "read buffers beyond the memory available are refused: $(grep buffers "$tmp/err")"
rm -f "$tmp/sparse"
# the same check against what MT_MEM_AVAILABLE says is free (the one MemAvailable reader the
# planner uses too): 16 reads of 8 MiB in flight do not fit in 64 MiB
truncate -s 256M "$tmp/sparse" 2>/dev/null || : >"$tmp/sparse"
MT_MEM_AVAILABLE=$((64 << 20)) "$bin" bench --only disk --disk "$tmp/sparse" --disk-qd 16 \
    --disk-block 8M --disk-pass 256M >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "of buffers.*than the 0.06 GiB of memory available" "$tmp/err"
ok $? "read buffers beyond MT_MEM_AVAILABLE are refused: $(grep buffers "$tmp/err")"
rm -f "$tmp/sparse"
# a --disk that cannot be used is refused before the other parts run for minutes
"$bin" bench --quick --disk "$tmp/nonexistent" --json "$tmp/ne.json" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q -- "cannot use --disk '$tmp/nonexistent'" "$tmp/err" &&
    ! grep -q '^bench: dram' "$tmp/err" && [ ! -e "$tmp/ne.json" ]
ok $? "a missing --disk is refused before anything is measured: $(head -1 "$tmp/err")"
printf x >"$tmp/one"
"$bin" bench --only disk --disk "$tmp/one" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q 'smaller than one' "$tmp/err"
ok $? "a 1-byte file is refused"
# Outputs: stdout on a full device exits 1 (issue 9, finding 6); --json and --svg naming one
# file, or an output naming a --disk input, are refused before anything runs (finding 3).
"$bin" bench --only dram --quick --dram-size 8M >/dev/full 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] && grep -q "cannot write to stdout" "$tmp/err"
ok $? "bench >/dev/full exits 1 (got $rc): $(cat "$tmp/err")"
"$bin" bench --only dram --quick --json "$tmp/same" --svg "$tmp/./same" >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "name the same file" "$tmp/err"
ok $? "--json and --svg naming one file is refused: $(cat "$tmp/err")"
echo keep >"$tmp/one"
"$bin" bench --only disk --disk "$tmp/one" --json "$tmp/one" >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && [ "$(cat "$tmp/one")" = keep ]
ok $? "--json naming the --disk file is refused and the file kept: $(cat "$tmp/err")"
# ... also when it is the second --disk (a MiB of zeros: a file the disk part would read)
head -c 1048576 /dev/zero >"$tmp/mib"
"$bin" bench --only disk --disk "$tmp/d" --disk "$tmp/mib" --disk-size 4M --disk-qd 1 \
    --disk-block 1M --json "$tmp/mib" >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && [ "$(wc -c <"$tmp/mib")" -eq 1048576 ] && [ -z "$(tr -d '\0' <"$tmp/mib")" ]
ok $? "--json naming the second --disk is refused and the file kept: $(head -n 1 "$tmp/err")"
rm -f "$tmp/mib"
# A test file that does not fit, or would eat into the margin kept free, is refused before a
# byte is written (issue 9, finding 5). (A file size limit keeps a regression from filling the
# disk: it would then fail with "cannot write", not "does not fit".)
mkdir -p "$tmp/d"
total_k=$(df -Pk "$tmp/d" | awk 'NR == 2 { print $2 }')
avail_k=$(df -Pk "$tmp/d" | awk 'NR == 2 { print $4 }')
margin_k=$((total_k / 20 < 1048576 ? total_k / 20 : 1048576))
(ulimit -f 65536 && trap '' XFSZ &&
    exec "$bin" bench --only disk --disk "$tmp/d" --disk-size "$(((total_k / 4 + 1) * 4))K") \
    >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] && grep -q "does not fit in '$tmp/d'" "$tmp/err" && [ -z "$(ls -A "$tmp/d")" ]
ok $? "--disk-size above the file system's size is refused up front (rc $rc): $(cat "$tmp/err")"
(ulimit -f 65536 && trap '' XFSZ &&
    exec "$bin" bench --only disk --disk "$tmp/d" \
        --disk-size "$((((avail_k - margin_k / 2) / 4) * 4))K") >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] && grep -q "GiB kept free" "$tmp/err" && [ -z "$(ls -A "$tmp/d")" ]
ok $? "--disk-size that fits only by eating the margin is refused (rc $rc): $(cat "$tmp/err")"
grep -q "try --disk-size [0-9]*M)" "$tmp/err"
ok $? "... with a --disk-size that would fit as the hint"
# ... but only where the disk part runs: a --disk that --only leaves out is warned about, not
# opened (here the run stops at its --json into a missing directory, exit 1)
"$bin" bench --only dram --disk "$tmp/nonexistent" --json "$tmp/nodir/p.json" >/dev/null \
    2>"$tmp/err"
[ $? -eq 1 ] && grep -q -- "cannot write --json" "$tmp/err" && ! grep -q -- "cannot use --disk" \
    "$tmp/err"
ok $? "a --disk outside --only is not opened: $(head -1 "$tmp/err")"
# an --svg that cannot be written is refused before anything is measured, as --json is
"$bin" bench --only dram --quick --dram-size 8M --svg "$tmp/nodir/p.svg" >"$tmp/out" \
    2>"$tmp/err"
[ $? -eq 1 ] && grep -q -- "cannot write --svg" "$tmp/err" && ! grep -q '^bench: dram' "$tmp/err" &&
    [ ! -s "$tmp/out" ]
ok $? "an --svg into a missing directory is refused before measuring: $(head -n 1 "$tmp/err")"
# A profile or chart that cannot be written after the run (a full device) fails the command:
# exit 1, not 0 with the file missing
head -c 1048576 /dev/zero >"$tmp/mib"
for out in --json --svg; do
    "$bin" bench --only disk --disk "$tmp/mib" --disk-qd 1 --disk-block 1M "$out" /dev/full \
        >/dev/null 2>"$tmp/err"
    rc=$?
    [ $rc -eq 1 ] && grep -q "No space left" "$tmp/err"
    ok $? "$out /dev/full exits 1 (rc $rc): $(tail -1 "$tmp/err")"
done
rm -f "$tmp/mib"
# Parts that cannot run are errors, not empty profiles: --only disk without --disk is a usage
# error; --only gpu where there is no GPU exits 1 and writes no profile (a GPU host runs it).
"$bin" bench --only disk --json "$tmp/nodisk.json" >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && [ ! -e "$tmp/nodisk.json" ] &&
    grep -q -- "--only disk needs --disk PATH" "$tmp/err"
ok $? "--only disk without --disk: exit 2: $(head -1 "$tmp/err")"
# (A build without CUDA has no GPU, and says why; a GPU's profile has its rows.)
"$bin" bench --only gpu --quick --json "$tmp/gpu.json" >"$tmp/out" 2>"$tmp/err"
rc=$?
if "$bin" --version 2>&1 | grep -q 'without CUDA' || grep -q "needs a GPU" "$tmp/err"; then
    [ $rc -eq 1 ] && [ ! -e "$tmp/gpu.json" ] &&
        grep -Eq -- "--only gpu needs a GPU: (built without CUDA|no CUDA device 0 )" "$tmp/err"
    ok $? "--only gpu without a GPU: exit 1, no profile: $(head -1 "$tmp/err")"
else
    [ $rc -eq 0 ] && grep -q '"present": true' "$tmp/gpu.json" &&
        grep -q '^gpu  *hbm_read' "$tmp/out"
    ok $? "--only gpu --quick on this GPU writes a profile (rc $rc)"
fi
# Options: bounds, and what each one means (each refusal exits 2 before anything runs)
mkdir -p "$tmp/d"
set --
i=0
while [ $i -lt 17 ]; do set -- "$@" --disk "$tmp/d"; i=$((i + 1)); done
"$bin" bench --only disk "$@" --disk-size 4M --disk-qd 1 --disk-block 1M >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "at most 16 --disk paths" "$tmp/err"
ok $? "a 17th --disk is refused: $(head -1 "$tmp/err")"
"$bin" bench --only disk --disk "$tmp/d" --disk-size 4M --disk-qd 1,2,3,4,5,6,7,8,9 \
    --disk-block 1M >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--disk-qd wants up to 8 depths" "$tmp/err"
ok $? "a 9th --disk-qd is refused: $(head -1 "$tmp/err")"
"$bin" bench --only disk --disk "$tmp/d" --disk-size 4M --disk-qd 1 --disk-block 1000 \
    >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--disk-block wants .*multiples of 4K" "$tmp/err"
ok $? "a --disk-block that is not a multiple of 4 KiB is refused: $(head -1 "$tmp/err")"
# (and past the top of the range the usage gives, depths 1..4096; a stream array not in whole
# 4 KiB units)
for bad in "--disk-qd 0" "--disk-block 0" "--disk-qd 4097" "--dram-size 5000"; do
    # shellcheck disable=SC2086 # the flag and its value, split on purpose
    "$bin" bench --only disk --disk "$tmp/d" --disk-size 4M $bad >/dev/null 2>"$tmp/err"
    [ $? -eq 2 ] && grep -q -- "${bad% *}" "$tmp/err"
    ok $? "$bad is refused: $(head -1 "$tmp/err")"
done
# a block over 1 GiB is refused as such (not found too large for the test file later)
"$bin" bench --only disk --disk "$tmp/d" --disk-size 4M --disk-qd 1 --disk-block 2G \
    >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--disk-block wants .*up to 1G" "$tmp/err"
ok $? "--disk-block 2G is refused: $(head -1 "$tmp/err")"
# every --disk-block must fit in --disk-size, not only the first
"$bin" bench --only disk --disk "$tmp/d" --disk-size 2M --disk-qd 1 --disk-block 1M,4M \
    >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--disk-size 2048 KiB is smaller than the --disk-block 4096 KiB" \
    "$tmp/err" && [ -z "$(ls -A "$tmp/d")" ]
ok $? "--disk-size under the second --disk-block is refused: $(head -1 "$tmp/err")"
"$bin" bench --only disk --disk "$tmp/d" --disk-size 4M --disk-qd 1 --disk-block 1M \
    --dram-size 0 >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--dram-size must be a positive multiple of 4 KiB" "$tmp/err"
ok $? "--dram-size 0 is refused: $(head -1 "$tmp/err")"
"$bin" bench --only gpu --help >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] && grep -q '^usage: moetier bench' "$tmp/out" && [ ! -s "$tmp/err" ]
ok $? "--help prints the usage and runs nothing: $(head -1 "$tmp/err")"
"$bin" bench --only gpu extra >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "unexpected argument 'extra'" "$tmp/err"
ok $? "an argument that is not an option is refused: $(head -1 "$tmp/err")"
"$bin" bench --only , >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--only wants at least one part" "$tmp/err"
ok $? "--only with no part is refused: $(head -1 "$tmp/err")"
"$bin" bench --only gpu --device -1 >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--device" "$tmp/err"
ok $? "--device -1 is refused: $(head -1 "$tmp/err")"
head -c 4096 /dev/zero >"$tmp/one"
"$bin" bench --only disk --disk "$tmp/one" --disk-qd 1 --disk-block 4K --svg "$tmp/one" \
    >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && [ "$(wc -c <"$tmp/one")" -eq 4096 ] && [ -z "$(tr -d '\0' <"$tmp/one")" ]
ok $? "--svg naming the --disk file is refused and the file kept: $(cat "$tmp/err")"
# A whole bench measures the disks given and needs none (only --only disk does): here it stops
# at the --json into a missing directory (exit 1), not at a usage error
"$bin" bench --quick --json "$tmp/nodir/p.json" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "No such file" "$tmp/err" && ! grep -q "needs --disk" "$tmp/err"
ok $? "a whole bench without --disk is not refused for it: $(head -1 "$tmp/err")"
# A file --disk is refused unless it holds one block of each --disk-block (default 1M and 4M),
# before the other parts run
head -c 1048576 /dev/zero >"$tmp/mib"
"$bin" bench --only dram,disk --quick --dram-size 8M --disk "$tmp/mib" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "(1048576 bytes) is smaller than one 4194304-byte block" "$tmp/err" &&
    ! grep -q '^bench: dram' "$tmp/err"
ok $? "a 1 MiB file is refused for the default 4 MiB block up front: $(head -1 "$tmp/err")"
rm -f "$tmp/mib"
# the default grid (usage): queue depths 1,4,16,64 x blocks 1M,4M, on a 4 MiB test file
"$bin" bench --only disk --disk "$tmp/d" --disk-size 4M >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] && [ "$(grep '^disk ' "$tmp/out" | sed 's/.* \(qd[0-9]* [0-9]* MiB\) .*/\1/' |
    tr '\n' ';')" = "qd1 1 MiB;qd4 1 MiB;qd16 1 MiB;qd64 1 MiB;qd1 4 MiB;qd4 4 MiB;qd16 4 MiB;\
qd64 4 MiB;" ]
ok $? "the default disk grid is qd 1,4,16,64 x 1 MiB, 4 MiB: $(grep -c '^disk ' "$tmp/out") rows"
# --quick keeps an explicit --disk-size (8 MiB, not its 64), and a test file of exactly one
# block is enough; without --disk-size, --quick's test file grows to hold the largest block
"$bin" bench --only disk --quick --disk "$tmp/d" --disk-size 8M --disk-qd 1 --disk-block 8M \
    >/dev/null 2>"$tmp/err"
[ $? -eq 0 ] && grep -q "wrote 0.01 GiB test file" "$tmp/err"
ok $? "--quick --disk-size 8M --disk-block 8M writes 8 MiB: $(grep wrote "$tmp/err")"
"$bin" bench --only disk --quick --disk "$tmp/d" --disk-qd 1 --disk-block 128M \
    >/dev/null 2>"$tmp/err"
[ $? -eq 0 ] && grep -q "wrote 0.12 GiB test file" "$tmp/err" && [ -z "$(ls -A "$tmp/d")" ]
ok $? "--quick --disk-block 128M writes a 128 MiB test file: $(grep wrote "$tmp/err")"
"$bin" bench --only disk --quick --disk "$tmp/d" --disk-qd 1 --disk-block 1M \
    >/dev/null 2>"$tmp/err"
[ $? -eq 0 ] && grep -q "wrote 0.06 GiB test file" "$tmp/err" && [ -z "$(ls -A "$tmp/d")" ]
ok $? "--quick without --disk-size writes a 64 MiB test file: $(grep wrote "$tmp/err")"
tap_exit
