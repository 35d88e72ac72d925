#!/bin/sh
# SPDX-License-Identifier: MIT
# test_gpu_plan.sh - `moetier run` placing experts on a real GPU (runtime/cli/cli_autoplan.c's
# GPU branches, which no machine without one reaches): the automatic device and its one line,
# everything on the GPU when it fits the default budget, a plan file with experts in all four
# tiers run on the GPU engine with --device cpu's ids, the GPU memory such a plan needs to the
# byte (routed experts on the GPU + always-on weights less the embedding table + the GPU's KV),
# the refusal of a --gpu-mem too small before any expert, and an automatic plan that splits the
# experts between the GPU and DRAM; the loading bar's total on the GPU engine. Skips without a
# CUDA device.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
prof="$MT_SRCDIR/bench/profiles/rtx3090-ddr4.json"
make_tmp gpuplan
m="$tmp/small"
unset MOETIER_DEVICE
export MOETIER_CACHE_DIR="$tmp/nocache"
ids="5,17,900,33,4242,7,12,99,1000,65000,3,8"

"$bin" synth --preset small --seed 3 -o "$m" >/dev/null 2>"$tmp/err" ||
    bail_out "synth --preset small failed: $(cat "$tmp/err")"
run() { # run FLAGS... : ids on stdout, stderr in $tmp/err
    "$bin" run -m "$m" --prompt-ids "$ids" -n 6 --print-ids "$@" 2>"$tmp/err"
}
gpu=$(run --device gpu --no-plan)
rc=$?
skip_without_gpu $rc "$tmp/err"
echo "1..9"
cpu=$(run --device cpu --no-plan)
[ "$rc" -eq 0 ] && [ -n "$cpu" ] && [ "$gpu" = "$cpu" ]
ok $? "run --device gpu --no-plan gives --device cpu's ids (gpu '$gpu', cpu '$cpu'; rc $rc)"

# no --device, no plan: the GPU is taken and said, and the whole model fits its default budget
# (the free memory less a margin)
got=$(run -v)
[ $? -eq 0 ] && [ "$got" = "$cpu" ] &&
    grep -q "^mt: device: GPU 0, .*, [0-9.]* GiB free (auto; --device cpu for the CPU)$" \
        "$tmp/err" &&
    grep -q "experts: 192 on GPU, 0 in DRAM (CPU), 0 on NVMe (all fit in the GPU budget, " \
        "$tmp/err"
ok $? "no --device: the GPU, said, with every expert on it: $(grep 'device:\|experts:' "$tmp/err" |
    tr '\n' ' ' | cut -c1-240)"

# a plan file with experts of each MoE layer in every tier (16 on the GPU, 20 in DRAM for the
# CPU, 12 in DRAM copied over PCIe, 16 streamed from NVMe: no two counts alike, so a count
# printed from another tier shows), made for an RTX 3090 and edited
"$bin" plan -m "$m" --hw "$prof" --gpu-mem 2G --cpu-mem 4.2G --gpu-reserve 1.6G --ctx 1024 \
    -o "$tmp/plan.json" >/dev/null 2>"$tmp/err" || bail_out "plan failed: $(cat "$tmp/err")"
q=GGGGGGGGGGGGGGGGCCCCCCCCCCCCCCCCCCCCPPPPPPPPPPPPNNNNNNNNNNNNNNNN
sed -E "s/\"(tiers|prefill)\": *\"[A-Z]+\"/\"\\1\": \"$q\"/g" "$tmp/plan.json" >"$tmp/mixed.json"
got=$(run --device gpu --plan "$tmp/mixed.json" --ctx 1024 -v)
[ $? -eq 0 ] && [ "$got" = "$cpu" ] &&
    grep -q "experts: 48 on GPU, 60 in DRAM (CPU), 36 in DRAM (to the GPU over PCIe), 48 on \
NVMe; no decode prediction (plan '$tmp/mixed.json')" "$tmp/err"
ok $? "a plan with experts in all four tiers runs on the GPU with --device cpu's ids: \
$(grep 'experts:' "$tmp/err" | cut -c1-160) ('$got')"

# what it needs on the GPU, to the byte: 48 routed experts, the always-on weights but the
# embedding table (inspect), and the GPU's KV of 1,024 positions (bf16 latent and rope key, the
# exact fp32 index key: (2 x (kv_lora + rope) + 4 x index_head_dim) bytes a layer)
"$bin" inspect -m "$m" >"$tmp/inspect" 2>&1
other=$(sed -n 's/^everything else (main) *\([0-9,]*\) B.*/\1/p' "$tmp/inspect" | tr -d ,)
emb=$(sed -n 's/^embedding  *[0-9,]*  *\([0-9,]*\) .*/\1/p' "$tmp/inspect" | tr -d ,)
one=$(sed -n 's/^one routed expert *\([0-9,]*\) B.*/\1/p' "$tmp/inspect" | tr -d ,)
kvtok=$(jq '.num_hidden_layers * (2 * (.kv_lora_rank + .qk_rope_head_dim) + 4 * .index_head_dim)' \
    "$m/config.json")
need=$((48 * one + other - emb + 1024 * kvtok))
out=$(run --device gpu --plan "$tmp/mixed.json" --ctx 1024 --gpu-mem $((need - 1)))
rc=$?
[ "$rc" -eq 1 ] && [ -z "$out" ] && ! grep -q "the model needs" "$tmp/err" &&
    tail -1 "$tmp/err" | grep -q "mixed.json needs 150.0 MiB on the GPU, more than --gpu-mem \
150.0 MiB (make a plan for this budget, or raise --gpu-mem)"
a=$?
refused=$(tail -1 "$tmp/err")
# that much passes the plan's check; the engine then wants its work space too (the plan's
# check cannot know it), moves the plan's GPU experts to DRAM, and says what it needs in all
out=$(run --device gpu --plan "$tmp/mixed.json" --ctx 1024 --gpu-mem $need)
rc=$?
[ $a -eq 0 ] && [ "$rc" -eq 1 ] && [ -z "$out" ] && [ -n "$one" ] && [ -n "$emb" ] &&
    [ -n "$kvtok" ] && ! grep -q "more than --gpu-mem" "$tmp/err" &&
    grep -q "the model needs [0-9.]* MiB on the GPU (weights 137.5 MiB, KV cache 4.0 MiB for \
1024 positions, work [0-9.]* MiB) but --gpu-mem allows 150.0 MiB" "$tmp/err"
ok $? "it needs $need B on the GPU: 1 B less is refused at once ($refused); that much goes \
on to the engine, which needs its work space too (rc $rc: $(tail -1 "$tmp/err" | cut -c1-150))"

# ... and in DRAM: its experts there (60 for the CPU, 36 copied over PCIe) and the embedding
# table, which the GPU engine keeps in host memory
dram=$((96 * one + emb))
out=$(run --device gpu --plan "$tmp/mixed.json" --ctx 1024 --cpu-mem $((dram - 1)))
[ $? -eq 1 ] && [ -z "$out" ] && grep -q "mixed.json needs [0-9.]* MiB of DRAM for its experts and \
the embedding table, more than --cpu-mem [0-9.]* MiB (make a plan for this budget" "$tmp/err"
a=$?
refused=$(tail -1 "$tmp/err" | cut -c1-120)
got=$(run --device gpu --plan "$tmp/mixed.json" --ctx 1024 --cpu-mem $dram)
[ $? -eq 0 ] && [ $a -eq 0 ] && [ "$got" = "$cpu" ]
ok $? "it needs $dram B of DRAM: 1 B less is refused ($refused), that much runs"

# On a terminal the GPU engine's loading bar counts what it reads now: the always-on weights
# and, without a plan, every expert (the GPU engine uploads them all); with the plan, its 48 GPU
# and 96 DRAM experts (DRAM ones are preloaded), not the 48 it streams. The bar's last "of N GB"
# must be that sum and the summary's N: the engine's second reads of the indexer's weights and
# the router bias, to check their values, are not more loaded (mt_st_set_reread). (script makes
# the terminal; skipped without it.)
bar_totals() { # bar_totals FLAGS: "bar N, loaded N" from a run on a terminal
    MOETIER_DEVICE=gpu script -qec "'$bin' run -m '$m' --prompt-ids $ids -n 1 -v $1" \
        /dev/null </dev/null | tr '\r' '\n' >"$tmp/tty"
    echo "bar $(sed -n 's/^loading weights .* of \([0-9.]*\) GB .*/\1/p' "$tmp/tty" |
        tail -1), loaded $(sed -n 's/.*mt: loaded \([0-9.]*\) GB of weights.*/\1/p' "$tmp/tty")"
}
gb() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1e9 }'; }
if command -v script >/dev/null 2>&1 && script -qec true /dev/null </dev/null >/dev/null 2>&1
then
    all=$(bar_totals "--no-plan")
    want_all="bar $(gb $((other + 192 * one))), loaded $(gb $((other + 192 * one)))"
    mixed=$(bar_totals "--plan '$tmp/mixed.json' --ctx 1024")
    want_mixed="bar $(gb $((other + 144 * one))), loaded $(gb $((other + 144 * one)))"
    [ "$all" = "$want_all" ] && [ "$mixed" = "$want_mixed" ]
    ok $? "the loading bar counts what the GPU engine reads: no plan '$all' (want '$want_all'), \
the plan '$mixed' (want '$want_mixed')"
else
    n=$((n + 1))
    echo "ok $n # SKIP no script (util-linux) or no pseudo-terminal: no terminal for the bar"
fi

# a --gpu-mem short of the workspace (1.5 GiB by default), the always-on weights and the KV of
# the default 8,192 positions is refused before any plan; that much plans every expert off it
floor=$((1610612736 + other - emb + 8192 * kvtok))
out=$(run --device gpu --hw "$prof" --gpu-mem $((floor - 1)))
[ $? -eq 1 ] && [ -z "$out" ] && grep -q "small' needs [0-9.]* GiB on the GPU before any expert \
(workspace 1.50 GiB + always-on weights 137.5 MiB + KV for 8192 tokens 28.0 MiB), more than \
--gpu-mem [0-9.]* GiB (raise --gpu-mem, lower --ctx, or run with --device cpu)" "$tmp/err"
a=$?
refused=$(tail -1 "$tmp/err" | cut -c1-200)
got=$(run --device gpu --hw "$prof" --gpu-mem $floor -v)
[ $? -eq 0 ] && [ $a -eq 0 ] && [ "$got" = "$cpu" ] && grep -q "experts: 0 on GPU, " "$tmp/err"
ok $? "a --gpu-mem 1 B short of the GPU's floor ($floor B) is refused before planning \
($refused); that much plans no expert on the GPU and runs: $(grep 'experts:' "$tmp/err" |
    cut -c1-100)"

# an automatic plan from a profile with a GPU: a --gpu-mem of the default workspace (1.5 GiB)
# and the need above holds the same 48 experts on the GPU, the rest in DRAM; a byte less, 47
g=$((need + 1610612736))
got=$(run --device gpu --hw "$prof" --gpu-mem $g --cpu-mem 4.2G --ctx 1024 -v)
[ $? -eq 0 ] && [ "$got" = "$cpu" ] &&
    grep -q "experts: 48 on GPU, 144 in DRAM (CPU), 0 on NVMe; predicted" "$tmp/err"
a=$?
at=$(grep 'experts:' "$tmp/err" | cut -c1-120)
sed 's/^/# auto plan: /' "$tmp/err" | grep -v "^# auto plan: $" | head -40
got=$(run --device gpu --hw "$prof" --gpu-mem $((g - 1)) --cpu-mem 4.2G --ctx 1024 -v)
[ $? -eq 0 ] && [ "$got" = "$cpu" ] && [ $a -eq 0 ] &&
    grep -q "experts: 47 on GPU, 145 in DRAM (CPU), 0 on NVMe; predicted" "$tmp/err"
ok $? "an automatic plan splits the experts between the GPU and DRAM and runs: at $g B $at; \
1 B less: $(grep 'experts:' "$tmp/err" | cut -c1-60)"

# the profile of a machine without a GPU cannot plan for this GPU run
cat >"$tmp/cpu-only.json" <<'JSON'
{"version": 1, "source": "what-if: 16 GiB, no GPU", "dram_bytes": 17179869184,
 "cpu": {"cores": 2, "read_gbps": 20, "fma_gflops": 200},
 "disks": [{"path": "/tmp", "best_gbps": 2}]}
JSON
out=$(run --device gpu --hw "$tmp/cpu-only.json" --gpu-mem 1696M --cpu-mem 4G --ctx 1024)
[ $? -eq 1 ] && [ -z "$out" ] && grep -q "the hardware profile '$tmp/cpu-only.json' has no GPU \
but this run uses one (give a profile with a GPU, or --device cpu)" "$tmp/err"
ok $? "a profile without a GPU for a GPU run: $(tail -1 "$tmp/err" | cut -c1-160)"
