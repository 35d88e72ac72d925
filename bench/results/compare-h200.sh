#!/bin/bash
# SPDX-License-Identifier: MIT
# compare-h200.sh - the second comparison on the H200 machine: `moetier bench` against plain tools
# for the two tiers that were noisy in run-h200.sh (DRAM read, O_DIRECT disk read), with many
# alternating passes so the medians, not single passes, are compared.
# Usage, from the repository root on the GPU machine, after a build (./moetier exists):
#   bash bench/results/compare-h200.sh OUTDIR [PASSES]
set -u
out=${1:?usage: compare-h200.sh OUTDIR [PASSES]}
n=${2:-7}
cd "$(dirname "$0")/../.." || exit 1
cores=$(lscpu -p=core | grep -v '^#' | sort -u | wc -l)
gcc -O2 -fopenmp -o /tmp/plain_stream bench/plain_stream.c || exit 1
d=/var/tmp/mtcmp
mkdir -p "$d"
dd if=/dev/urandom of="$d/f.bin" bs=4M count=512 2>/dev/null
sync
{
    echo "# date $(date -u +%FT%TZ) cores $cores passes $n"
    for i in $(seq "$n"); do
        # disk: 2 GiB, 4 MiB blocks, queue depth 1, O_DIRECT, the same file for both tools
        dd if="$d/f.bin" of=/dev/null bs=4M iflag=direct 2>&1 | tail -1 |
            awk '{print "dd_direct_4M", $(NF-1), $NF}'
        ./moetier bench --only disk --disk "$d/f.bin" --disk-qd 1 --disk-block 4M \
            --disk-pass 2G 2>/dev/null | awk '/odirect_read/ {print "moetier_qd1_4M", $(NF-2), "GB/s"}'
        # DRAM read, 2 GiB arrays, all cores
        OMP_NUM_THREADS=$cores OMP_PROC_BIND=close OMP_PLACES=cores /tmp/plain_stream 2048 10 |
            awk '$2 ~ /_gbps$/ {print "plain_" $2, $3, "GB/s"}'
        ./moetier bench --only dram --dram-size 2G 2>/dev/null |
            awk '$1 == "dram" {print "moetier_" $2, $(NF-2), "GB/s"}'
    done
} | tee "$out/compare.txt"
rm -rf "$d"
