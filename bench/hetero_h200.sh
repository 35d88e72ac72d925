#!/bin/bash
# The acceptance run of issue 13 on the GPU test machine (bench/results/hetero-h200.md): build,
# the heterogeneous GPU test, a v32-shape model (1 dense + 4 MoE layers, 47 GB), a quick profile,
# three plans (mixed GPU/DRAM/NVMe at --gpu-mem 24G, DRAM, GPU) run before and after
# `plan --learn`, then again on another prompt. Run from the tree root on
# the GPU machine with $OUT set (bash bench/hetero_h200.sh); PB: the prefill chunk of plans with
# experts off the GPU; N: tokens generated per run.
#
# What each round uses (the prediction of a run never comes from that run):
#   round 1: the quick profile; every run records its routing (run --trace).
#   learn:   plan --learn on round 1's reports (efficiencies, then the host wait per layer: each
#            round 1 plan predicted again at the learned rates with round 1's routing).
#   round 2: the learned profile and round 1's routing (plan --trace): the same prompt, so the
#            routing is round 1's again (a replay; the planner places the experts it chose).
#   round 3: round 2's plans (the mixed one with the disk of that minute) on another prompt:
#            routing the trace has not seen.
# The mixed plans read the disk measured just before them (plan --disk-from): the drive reads
# 1.3-2.2 GB/s from minute to minute. ROUND1=DIR reuses an earlier call's round 1 and learning
# (DIR/prof-learned.json, DIR/trace-dram-1.json) and runs rounds 2 and 3 only: one call of the
# device budget does not hold the synth (1 min) and all nine runs. PLANS="dram gpu": only those
# plans (learning uses the reports there are); ROUNDS="1 2": only those; SKIP_TESTS=1: no test.
PB=${PB:-8}
PLANS=${PLANS:-mix dram gpu}
N=${N:-32}
T0=$(date +%s)
t() { echo "[t+$(( $(date +%s) - T0 ))s] $*"; tar -C $OUT -czf $OUT/results.tgz r 2>/dev/null; }
R=$OUT/r; mkdir -p $R
. .gpu/deps/deps.sh >/dev/null 2>&1; D=/opt/moetier-deps/usr
t build
(./autogen.sh && ./configure -q --with-cuda-arch=sm_90 MHD_CFLAGS="-I$D/include" MHD_LIBS="-L$D/lib/x86_64-linux-gnu -lmicrohttpd" && make -j16) > $R/build.log 2>&1 || { tail -40 $R/build.log; exit 1; }
if [ -z "$SKIP_TESTS" ]; then
  t tests
  timeout 60 make -j16 check TESTS="tests/test_gpu_hetero" > $R/check.log 2>&1
  grep -E '^# (TOTAL|PASS|SKIP|FAIL)|^FAIL|^ERROR' $R/check.log
  cp tests/test_gpu_hetero.log $R/ 2>/dev/null
fi
t synth
./moetier synth --preset v32-shape -o /tmp/v32 -q 2>&1 | tail -1
t bench
./moetier bench --quick --disk /tmp --json $R/prof.json > $R/bench.txt 2>&1
grep -E 'hbm_read|read_ceiling|h2d_pinned +16|odirect_read.*qd16' $R/bench.txt
cp $R/prof.json $R/prof-learned.json
rounds=${ROUNDS:-1 2 3}
if [ -n "$ROUND1" ]; then
  cp $ROUND1/prof-learned.json $ROUND1/trace-dram-1.json $R/ && rounds="2 3"
fi
P=$(seq -s, 11 74)
P3=$(seq -s, 301 7 749)
TR=$R/trace-dram-1.json
disk() { # the disk now: 1 GiB read at the quick profile's point
  ./moetier bench --only disk --disk /tmp --disk-size 1G --disk-pass 1G --disk-qd 16 \
    --disk-block 4M --json $R/disk-$1.json > $R/disk-$1.txt 2>&1
  grep -oE '[0-9.]+ GB/s' $R/disk-$1.txt | tail -1; }
for round in $rounds; do
  prof=$R/prof.json; tr=; [ $round != 1 ] && prof=$R/prof-learned.json && tr="--trace $TR"
  cfgs=("mix 24G 24G 24G" "dram 7G 100G 24G" "gpu 70G 8G 70G")
  for cfg in "${cfgs[@]}"; do
    set -- $cfg
    case " $PLANS " in *" $1 "*) ;; *) continue ;; esac
    n=$1-$round; ids=$P; [ $round = 3 ] && ids=$P3
    dk=; [ $1 = mix ] && { echo "disk before $n: $(disk $n)"; dk="--disk-from $R/disk-$n.json"; }
    rec=; [ $round = 1 ] && rec="--trace $R/trace-$n.json"
    ./moetier plan -m /tmp/v32 --hw $prof $tr $dk --gpu-mem $2 --cpu-mem $3 \
      --prefill-batch $PB -o $R/plan-$n.json > $R/plan-$n.txt 2>&1
    grep -E '^(decode|prefill|host wait)' $R/plan-$n.txt
    t "run $n"
    timeout 60 ./moetier run -m /tmp/v32 --device gpu --gpu-mem $4 --plan $R/plan-$n.json \
      --prompt-ids $ids -n $N $rec --json $R/report-$n.json > $R/run-$n.txt 2>&1
    echo "rc $?"; grep -E 'report: (prefill|decode|gpu|dram|nvme|busy|stream)' $R/run-$n.txt
  done
  if [ $round = 1 ]; then
    t learn
    L=; for f in $R/report-*-1.json; do [ -f "$f" ] && L="$L --learn $f"; done
    [ -f $TR ] || TR=$(ls $R/trace-*-1.json | head -1)
    ./moetier plan -m /tmp/v32 --hw $R/prof-learned.json --trace $TR $L \
      > $R/learn.txt 2>&1; grep learned $R/learn.txt
  fi
done
t done
rm -rf $R
