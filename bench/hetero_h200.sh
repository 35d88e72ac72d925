#!/bin/bash
# The acceptance run of issue 13 on the GPU test machine (bench/results/hetero-h200.md): build,
# GPU tests, the README's first command, a v32-shape model (1 dense + 4 MoE layers, 47 GB), a quick
# profile, three plans (mixed GPU/DRAM/NVMe at --gpu-mem 24G, DRAM, GPU) run before and after
# `plan --learn`, and a new user's `run -m DIR`. Run from the tree root on the GPU machine with
# $OUT set (bash bench/hetero_h200.sh); PB: the prefill chunk of plans with experts off the GPU.
PB=${PB:-8}
T0=$(date +%s)
t() { echo "[t+$(( $(date +%s) - T0 ))s] $*"; tar -C $OUT -czf $OUT/results.tgz r 2>/dev/null; }
R=$OUT/r; mkdir -p $R
. .gpu/deps/deps.sh >/dev/null 2>&1; D=/opt/moetier-deps/usr
t build
(./autogen.sh && ./configure -q --with-cuda-arch=sm_90 MHD_CFLAGS="-I$D/include" MHD_LIBS="-L$D/lib/x86_64-linux-gnu -lmicrohttpd" && make -j16) > $R/build.log 2>&1 || { tail -40 $R/build.log; exit 1; }
t tests
timeout 60 make -j16 check TESTS="tests/test_gpu_hetero tests/test_gpu_engine" > $R/check.log 2>&1
grep -E '^# (TOTAL|PASS|SKIP|FAIL)|^FAIL|^ERROR' $R/check.log
cp tests/test_gpu_hetero.log tests/test_gpu_engine.log $R/ 2>/dev/null
t "readme first command"
./moetier plan > $R/readme-plan.txt 2>&1; echo "rc $?"; grep -E '^decode|^prefill|^hardware|^GPU budget' $R/readme-plan.txt
t synth
./moetier synth --preset v32-shape -o /tmp/v32 -q 2>&1 | tail -1
./moetier inspect -m /tmp/v32 > $R/inspect.txt 2>&1
t bench
./moetier bench --quick --disk /tmp --json $R/prof.json > $R/bench.txt 2>&1
grep -E 'hbm_read|read_ceiling|h2d_pinned +16|odirect_read.*qd16 4' $R/bench.txt
cp $R/prof.json $R/prof-learned.json
P=$(seq -s, 11 74)
for round in 1 2; do
  prof=$R/prof.json; [ $round = 2 ] && prof=$R/prof-learned.json
  for cfg in "mix 24G 24G 24G" "dram 7G 100G 24G" "gpu 70G 8G 70G"; do
    set -- $cfg
    n=$1-$round
    ./moetier plan -m /tmp/v32 --hw $prof --gpu-mem $2 --cpu-mem $3 --prefill-batch $PB -o $R/plan-$n.json > $R/plan-$n.txt 2>&1
    t "run $n"
    timeout 40 ./moetier run -m /tmp/v32 --device gpu --gpu-mem $4 --plan $R/plan-$n.json --prompt-ids $P -n 64 --json $R/report-$n.json > $R/run-$n.txt 2>&1
    echo "rc $?"; grep -E 'report: (prefill|gpu|dram|nvme|busy|stream)' $R/run-$n.txt
  done
  if [ $round = 1 ]; then
    t learn
    ./moetier plan -m /tmp/v32 --hw $R/prof-learned.json --learn $R/report-mix-1.json --learn $R/report-dram-1.json --learn $R/report-gpu-1.json > $R/learn.txt 2>&1; grep learned $R/learn.txt
  fi
done
t "new user: run -m DIR"
timeout 60 ./moetier run -m /tmp/v32 -p "Hello, who are you?" -n 16 > $R/newuser.txt 2>&1; echo "rc $?"; grep -vE '^\s*$' $R/newuser.txt | tail -12
t done
rm -rf $R
