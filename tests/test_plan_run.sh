#!/bin/sh
# SPDX-License-Identifier: MIT
# test_plan_run.sh - `moetier run --plan` on a `synth --preset small` checkpoint: a plan that
# streams every routed expert from disk gives the same greedy tokens as one that keeps them in
# DRAM (and as no plan), holds no routed expert after the run, and peaks lower in resident memory
# by most of the routed experts' size; a plan for another model is refused naming the field;
# run -v prints a plan without an expected-load bound without dividing by it.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
prof="$MT_SRCDIR/bench/profiles/rtx3090-ddr4.json"
make_tmp plan-run
m="$tmp/small"

echo "1..12"
"$bin" synth --preset small --seed 3 -o "$m" >/dev/null 2>"$tmp/err" ||
    bail_out "synth --preset small failed: $(cat "$tmp/err")"
"$bin" plan -m "$m" --hw "$prof" --gpu-mem 2G --cpu-mem 4.2G --gpu-reserve 1.6G --ctx 1024 \
    -o "$tmp/plan.json" >/dev/null 2>"$tmp/err" || bail_out "plan failed: $(cat "$tmp/err")"
# the same plan with every expert on NVMe (tiers and prefill codes 'N'), and all in DRAM ('C')
sed -E 's/"(tiers|prefill)": *"[A-Z]+"/"\1": "NNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNN"/g' \
    "$tmp/plan.json" >"$tmp/nvme.json"
sed -E 's/"(tiers|prefill)": *"[A-Z]+"/"\1": "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"/g' \
    "$tmp/plan.json" >"$tmp/dram.json"
ids="5,17,900,33,4242,7,12,99,1000,65000,3,8,21,400,77,2,19,4096,123,88,6,31,250,11,9"

run() { # run PLAN-FLAGS... : ids on stdout, stderr in $tmp/err
    "$bin" run -m "$m" --prompt-ids "$ids" -n 8 --print-ids "$@" 2>"$tmp/err"
}
peak() { sed -n 's/.*peak resident \([0-9.]*\) MiB.*/\1/p' "$tmp/err"; }
held() { sed -n 's/.*routed experts held \([0-9.]*\) MiB of \([0-9.]*\) MiB.*/\1 \2/p' "$tmp/err"; }

plain=$(run)
ok $? "run without a plan exits 0"
# memory: with the reference executor an expert is held only while it computes (the CPU team
# holds a whole layer's experts at once, which would blur a model this small); no GPU is made
# visible, so that the streaming path does not page-lock its slots for one (a CUDA context alone
# costs more host memory than this model's experts)
dram=$(CUDA_VISIBLE_DEVICES= run --plan "$tmp/dram.json" --experts ref)
rc=$?
dram_peak=$(peak)
nvme=$(CUDA_VISIBLE_DEVICES= run --plan "$tmp/nvme.json" --experts ref)
rc2=$?
nvme_peak=$(peak)
stream_peak=$(sed -n 's/.*slots\?, peak \([0-9.]*\) MiB.*/\1/p' "$tmp/err")
set -- $(held)
nvme_held=$1
routed=$2
grep -q "0 on GPU, 0 in DRAM (CPU), 192 on NVMe" "$tmp/err"
ok $? "the plan's placement is reported: $(grep experts: "$tmp/err")"
[ $rc -eq 0 ] && [ $rc2 -eq 0 ] && [ -n "$plain" ] && [ "$dram" = "$plain" ] && [ "$nvme" = "$plain" ]
ok $? "all-DRAM and all-NVMe plans give the tokens of no plan ('$nvme')"
team=$(run --plan "$tmp/nvme.json")
[ $? -eq 0 ] && [ "$team" = "$plain" ]
ok $? "... also with the CPU-team executor on streamed experts"
awk -v s="$stream_peak" -v r="$routed" -v h="$nvme_held" \
    'BEGIN { exit !(s != "" && s < 0.25 * r && h == 0) }'
ok $? "all-NVMe: the streamed experts' slots peaked at $stream_peak MiB of $routed MiB, none held in DRAM ($nvme_held MiB)"
awk -v d="$dram_peak" -v n="$nvme_peak" -v r="$routed" 'BEGIN { exit !(d - n >= 0.75 * r) }'
ok $? "peak resident memory: all-NVMe $nvme_peak MiB, all-DRAM $dram_peak MiB, routed experts $routed MiB"
# a plan made for another model is refused before anything runs
# (a real plan for a model with another hidden size: an edited plan would fail its dims_hash)
sed "s/\"hidden_size\": *[0-9]*/\"hidden_size\": 1024/" "$m/config.json" >"$tmp/other-config.json"
"$bin" plan --config "$tmp/other-config.json" --hw "$prof" --gpu-mem 8G --cpu-mem 16G \
    --ctx 1024 -o "$tmp/other.json" >/dev/null 2>"$tmp/err" ||
    bail_out "plan for another model failed: $(cat "$tmp/err")"
out=$(run --plan "$tmp/other.json")
[ $? -eq 1 ] && [ -z "$out" ] && grep -q "another model" "$tmp/err"
ok $? "a plan for another model: exit 1, one message: $(head -1 "$tmp/err")"
out=$(run --plan "$tmp/missing.json")
[ $? -eq 1 ] && grep -q "missing.json" "$tmp/err"
ok $? "a missing plan: exit 1 naming it: $(head -1 "$tmp/err")"
# a plan file whose DRAM budget is far above this run's --cpu-mem (made on a bigger machine): the
# stream cache stays within --cpu-mem instead of mapping the plan's budget (cpu_mem_bytes is
# the experts' 15 GB plus the 4 GiB reserve: a plan loads only with budgets that add up)
sed -E 's/"dram_expert_bytes": *[0-9]+/"dram_expert_bytes": 15000000000/;
    s/"cpu_mem_bytes": *[0-9]+/"cpu_mem_bytes": 19294967296/' "$tmp/nvme.json" >"$tmp/nvme15g.json"
out=$(CUDA_VISIBLE_DEVICES= run --plan "$tmp/nvme15g.json" --cpu-mem 300M)
rc=$?
big=$(peak)
[ $rc -eq 0 ] && [ "$out" = "$plain" ] && awk -v p="$big" 'BEGIN { exit !(p != "" && p < 1000) }'
ok $? "a plan's 15 GB DRAM budget under --cpu-mem 300M: peak resident $big MiB, the same tokens"
# a plan without an expected-load bound (0: a hand-made plan's "not predicted"; the planner's
# includes the always-on time): run -v prints the plan without dividing by it ("inf tok/s")
sed -E 's/"decode_ms_mean_load": *[0-9.e+-]+/"decode_ms_mean_load": 0/' "$tmp/plan.json" \
    >"$tmp/nobound.json"
out=$(CUDA_VISIBLE_DEVICES= run --plan "$tmp/nobound.json" -v)
[ $? -eq 0 ] && [ "$out" = "$plain" ] && grep -q "the plan records no expected-load bound" \
    "$tmp/err" && ! grep -q "inf tok/s" "$tmp/err"
ok $? "run -v with a plan whose expected-load bound is 0:$(grep -A1 '^decode ' "$tmp/err" | tail -1 |
    sed 's/^ */ /')"
# a BF16 checkpoint whose config.json says float32: `plan -m` sizes the experts from the tensors,
# as `run --plan` checks them, so its plan runs
"$bin" synth --preset small --dtype bf16 --seed 3 -o "$tmp/f32name" >/dev/null 2>"$tmp/err" ||
    bail_out "synth --preset small --dtype bf16 failed: $(cat "$tmp/err")"
sed -E 's/"torch_dtype": *"[a-z0-9]+"/"torch_dtype": "float32"/' "$tmp/f32name/config.json" \
    >"$tmp/f32.cfg" && mv "$tmp/f32.cfg" "$tmp/f32name/config.json"
"$bin" plan -m "$tmp/f32name" --hw "$prof" --gpu-mem 2G --cpu-mem 4.2G --gpu-reserve 1.6G \
    --ctx 1024 -o "$tmp/f32.json" >/dev/null 2>"$tmp/err" &&
    "$bin" run -m "$tmp/f32name" --prompt-ids "$ids" -n 2 --plan "$tmp/f32.json" >/dev/null \
        2>"$tmp/err"
ok $? "a plan of a checkpoint whose torch_dtype differs from its tensors runs: $(grep -m1 'mt:' "$tmp/err")"
# a plan whose layers were edited (dram.json) keeps its placement but predicts nothing: its
# tiers are counted again from the layers, one warning says why, and run -v divides by nothing
out=$(CUDA_VISIBLE_DEVICES= run --plan "$tmp/dram.json" -v)
[ $? -eq 0 ] && [ "$out" = "$plain" ] &&
    grep -q "dram.json': its prediction is not that of its layers (edited?)" "$tmp/err" &&
    grep -q "^decode     : not predicted" "$tmp/err" &&
    grep -q "^DRAM, CPU computes *192 " "$tmp/err" && ! grep -q "inf tok/s" "$tmp/err"
ok $? "an edited plan: the same tokens, no prediction: $(grep -m1 'edited' "$tmp/err")"
tap_exit
