#!/bin/bash
# SPDX-License-Identifier: MIT
# run-h200.sh - exactly what ran on the H200 machine for bench-h200.md: build, correctness first
# (GPU self-check, the bench tests), `moetier bench` with every part, then the plain tools it is
# compared with (cudaMemcpy loop, a STREAM-like triad, dd with O_DIRECT, fio if present).
# Usage, from the repository root on the GPU machine:
#   . .gpu/deps.sh; bash bench/results/run-h200.sh OUTDIR
set -u
out=${1:?usage: run-h200.sh OUTDIR}
cd "$(dirname "$0")/../.." || exit 1
{
    (autoreconf -fi && ./configure -q --with-cuda-arch=sm_90 && make -j16) 2>&1 | tail -60
    echo "build rc ${PIPESTATUS[0]}"
} >"$out/build.txt"
[ -x ./moetier ] || { tail -30 "$out/build.txt"; exit 1; }
cores=$(lscpu -p=core | grep -v '^#' | sort -u | wc -l)
{
    date -u; uname -a; echo "cores $cores"; lscpu; free -g; df -hT / /tmp /var/tmp "$out"
    nvidia-smi; nvcc --version | tail -2; command -v fio || echo "no fio"
} >"$out/machine.txt" 2>&1
{
    echo "== correctness first: GPU self-check (read sum, D2D/D2H/H2D bytes) + quick gpu,pcie =="
    timeout 120 ./moetier bench --only gpu,pcie --quick 2>&1; echo "rc $?"
    echo "== make check: the bench tests =="
    timeout 200 make -j16 check TESTS="tests/test_hwprofile tests/test_uring_reader tests/test_bench.sh" \
        2>&1 | grep -E '^(PASS|FAIL|ERROR|SKIP|# )'
} >"$out/checks.txt"
d=/var/tmp/mtbench
mkdir -p "$d"
echo "== moetier bench (all parts) ==" >"$out/progress.txt"
time timeout 300 ./moetier bench --disk "$d" --dram-size 2G --json "$out/h200.json" \
    --svg "$out/h200.svg" >"$out/table.txt" 2>>"$out/progress.txt"
echo "rc $?" >>"$out/progress.txt"
{
    echo "== plain_memcpy: cudaMemcpy loop, 256 MiB pinned, 20 reps =="
    nvcc -O2 -o /tmp/plain_memcpy bench/plain_memcpy.cu && /tmp/plain_memcpy 256 20
    echo "== plain_stream: gcc -O2 -fopenmp, $cores threads, OMP_PLACES=cores, 2 GiB arrays =="
    gcc -O2 -fopenmp -o /tmp/plain_stream bench/plain_stream.c &&
        OMP_NUM_THREADS=$cores OMP_PROC_BIND=close OMP_PLACES=cores /tmp/plain_stream 2048 20
    echo "== moetier bench --only dram, right after (paired) =="
    ./moetier bench --only dram --dram-size 2G 2>/dev/null
    echo "== disk: a 2 GiB file; dd O_DIRECT 4 MiB and moetier qd1 4 MiB alternate, 3 times each =="
    dd if=/dev/zero of="$d/dd.bin" bs=4M count=512 oflag=direct 2>&1 | tail -1
    for i in 1 2 3; do
        dd if="$d/dd.bin" of=/dev/null bs=4M iflag=direct 2>&1 | tail -1
        ./moetier bench --only disk --disk "$d/dd.bin" --disk-qd 1 --disk-block 4M \
            --disk-pass 2G 2>/dev/null | grep odirect
    done
    if command -v fio >/dev/null; then
        fio --name=r --filename="$d/dd.bin" --rw=read --bs=4M --iodepth=64 --direct=1 \
            --ioengine=io_uring --size=2G 2>&1 | grep -E 'READ:|bw='
    fi
    echo "== plain_memcpy again =="
    /tmp/plain_memcpy 256 20
} >"$out/plain.txt" 2>&1
rm -rf "$d"
cat "$out/table.txt"
