#!/bin/sh
# SPDX-License-Identifier: MIT
# test_plan.sh - `moetier plan --config` for the full V3.2 on what-if profiles (well under a second
# each): the printed decode speed is the one in the plan file, the plan passes --check, a profile
# without a GPU puts the always-on weights and the KV cache in DRAM and says so, and bad budgets,
# profiles and traces exit 1 with one message that names what is wrong (the file, the flag).
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
: "${MT_SRCDIR:=$(dirname "$0")/..}"
cfg="$MT_SRCDIR/tests/data/deepseek-v3.2/config.json"
prof="$MT_SRCDIR/bench/profiles/rtx3090-ddr4.json"
make_tmp plan

echo "1..67"
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 480G -o "$tmp/p.json" \
    >"$tmp/out" 2>"$tmp/err"
ok $? "plan on the RTX 3090 what-if profile exits 0"
printed=$(sed -n 's/^decode *: \([0-9.]*\) tok\/s.*/\1/p' "$tmp/out")
saved=$(sed -n 's/.*"decode_tok_s": \([0-9.]*\).*/\1/p' "$tmp/p.json")
[ -n "$printed" ] && [ "$(printf '%.2f' "$saved")" = "$printed" ]
ok $? "printed decode speed $printed tok/s is the plan file's $saved"
"$bin" plan --config "$cfg" --check "$tmp/p.json" >/dev/null 2>&1
ok $? "the written plan passes --check"

# With a GPU the KV cache is the GPU engine's (BF16 latents and exact index keys by default, as
# `run` holds it), --kv-dtype / --indexer as `run` takes them; the prompt chunk follows the room
# that leaves: on this 23G card the FP8 cache frees enough for 2,048-token chunks.
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 480G >"$tmp/out" 2>&1 &&
    grep -q 'KV 32768 tok 3.10 + workspace 1.77 (for 1024-token prompt chunks)' "$tmp/out" &&
    "$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 480G --kv-dtype fp8 \
        --indexer fp8 >"$tmp/out2" 2>&1 &&
    grep -q 'KV 32768 tok 1.50 + workspace 3.16 (for 2048-token prompt chunks)' "$tmp/out2" &&
    grep -q '^prefill    : .* at batch 2048' "$tmp/out2"
ok $? "the GPU engine's cache and chunk: $(grep -o 'KV.*chunks)' "$tmp/out") / $(grep -o 'KV.*chunks)' "$tmp/out2")"
"$bin" plan --config "$cfg" --hw "$prof" --indexer fp16 >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "unknown --indexer 'fp16' (exact or fp8)" "$tmp/err" &&
    "$bin" plan --config "$cfg" --hw "$prof" --kv-dtype int8 >/dev/null 2>"$tmp/err2"
[ $? -eq 2 ] && grep -q "unknown --kv-dtype 'int8' (f32, bf16 or fp8)" "$tmp/err2"
ok $? "a bad --indexer or --kv-dtype exits 2: $(cat "$tmp/err") / $(cat "$tmp/err2")"

# No GPU: a profile with only CPU, DRAM and a disk.
cat >"$tmp/cpu.json" <<'EOF'
{"version": 1, "source": "what-if: CPU only", "cpu": {"read_gbps": 200, "fma_gflops": 3000},
 "disks": [{"path": "/nvme0", "best_gbps": 7}]}
EOF
"$bin" plan --config "$cfg" --hw "$tmp/cpu.json" --gpu-mem 24G --cpu-mem 480G >"$tmp/out" 2>&1
[ $? -eq 0 ] && grep -q '^GPU budget : none' "$tmp/out" &&
    grep -q '^DRAM budget: .* always-on 18.59 + KV 32768 tok 2.39 + experts' "$tmp/out" &&
    grep -q 'always-on (CPU)' "$tmp/out"
ok $? "without a GPU the always-on weights and KV are budgeted in DRAM"

# A profile that records a measured CPU expert efficiency: the plan uses it and says so;
# --cpu-eff still overrides it.
cat >"$tmp/eff.json" <<'EOF'
{"version": 1, "source": "what-if: measured CPU", "cpu": {"read_gbps": 200, "fma_gflops": 3000,
 "read_ceiling_gbps": 300, "expert_eff": 0.7}, "disks": [{"path": "/nvme0", "best_gbps": 7}]}
EOF
"$bin" plan --config "$cfg" --hw "$tmp/eff.json" --gpu-mem 24G --cpu-mem 480G >"$tmp/out" 2>&1
[ $? -eq 0 ] && grep -q 'DRAM 300 GB/s (read ceiling) x 0.70' "$tmp/out" &&
    grep -q '^CPU eff    : 0.700 (measured: profile cpu.expert_eff)' "$tmp/out"
ok $? "a measured cpu.expert_eff is used: $(grep '^CPU eff' "$tmp/out")"
"$bin" plan --config "$cfg" --hw "$tmp/eff.json" --gpu-mem 24G --cpu-mem 480G --cpu-eff 0.5 \
    >"$tmp/out" 2>&1
[ $? -eq 0 ] && grep -q '^CPU eff    : 0.500 (--cpu-eff)' "$tmp/out"
ok $? "--cpu-eff overrides the measured value: $(grep '^CPU eff' "$tmp/out")"
"$bin" plan --config "$cfg" --hw "$tmp/cpu.json" --gpu-mem 24G --cpu-mem 480G >"$tmp/out" 2>&1
[ $? -eq 0 ] && grep -q '^CPU eff    : 0.600 (assumed)' "$tmp/out"
ok $? "a profile without one gets the assumption: $(grep '^CPU eff' "$tmp/out")"

# A profile without a source, no GPU and no DRAM rate: the message names the file.
echo '{"version": 1}' >"$tmp/empty.json"
"$bin" plan --config "$cfg" --hw "$tmp/empty.json" --gpu-mem 24G --cpu-mem 480G >/dev/null \
    2>"$tmp/err"
[ $? -eq 1 ] && grep -q "empty.json" "$tmp/err"
ok $? "an empty profile is refused naming its file: $(cat "$tmp/err")"

"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 24G --cpu-mem 1K >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q -- "--cpu-mem .* --cpu-reserve" "$tmp/err"
ok $? "--cpu-mem below --cpu-reserve: $(cat "$tmp/err")"

"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 0 --cpu-mem 480G >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q -- "--gpu-mem 0.0 KiB is too small" "$tmp/err"
ok $? "--gpu-mem 0: $(cat "$tmp/err")"

# A budget above int64 (the plan file's integers) was written negative into the plan, which
# --check then refused: refuse it when planning instead.
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 9000000T -o "$tmp/huge.json" \
    >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q -- "--cpu-mem .* is more than a plan can hold" "$tmp/err" &&
    [ ! -e "$tmp/huge.json" ]
ok $? "a --cpu-mem beyond 8 EiB: $(cat "$tmp/err")"

"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 24G --cpu-mem 480G --cpu-eff 1e-300 \
    >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--cpu-eff must be in" "$tmp/err"
ok $? "a vanishing --cpu-eff is a usage error: $(cat "$tmp/err")"

cat >"$tmp/t.json" <<'EOF'
{"format": "moetier-trace", "version": 1, "n_layers": 4, "n_experts": 8, "k": 2, "tokens": 0,
 "layers": []}
EOF
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 24G --cpu-mem 480G --trace "$tmp/t.json" \
    >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "t.json' has 4 layers, the model has 61" "$tmp/err"
ok $? "a trace of another model: $(cat "$tmp/err")"
sed 's/"k": 2/"k": 2, "bogus": 1/' "$tmp/t.json" >"$tmp/tb.json"
printf '%s' '{"format": "moetier-trace", "version": 1, "n_layers": 4, "n_experts": 8, "k": 2,
 "tokens": 1, "layers": [{"layer": 1, "tokens": 1, "counts": [1,1,0,0,0,0,0,0], "extra": 5}]}' \
    >"$tmp/tl.json"
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 24G --cpu-mem 480G --trace "$tmp/tb.json" \
    >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "tb.json': unknown key 'bogus'" "$tmp/err" &&
    ! "$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 24G --cpu-mem 480G \
        --trace "$tmp/tl.json" >/dev/null 2>"$tmp/err2" &&
    grep -q "tl.json': unknown key 'extra' in a layer" "$tmp/err2"
ok $? "unknown keys in a trace are refused: $(cat "$tmp/err") / $(cat "$tmp/err2")"
# Outputs never destroy inputs (issue 9, finding 3): -o naming the --hw, --config or --trace file
# (however spelled) is refused before anything is read or written, and a plan whose write fails
# leaves the old file whole, with no temporary left beside it.
cp "$prof" "$tmp/hw.json"
cp "$cfg" "$tmp/config.json"
sums_before=$(cat "$tmp/hw.json" "$tmp/config.json" | sha256sum)
"$bin" plan --config "$cfg" --hw "$tmp/hw.json" --gpu-mem 23G --cpu-mem 480G -o "$tmp/hw.json" \
    >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "is the --hw input; refusing to overwrite" "$tmp/err"
ok $? "-o naming the --hw profile is refused: $(cat "$tmp/err")"
ln -s config.json "$tmp/link.json"
"$bin" plan --config "$tmp/config.json" --hw "$prof" --gpu-mem 23G --cpu-mem 480G \
    -o "$tmp/./link.json" >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "is the --config input" "$tmp/err"
ok $? "-o naming the --config file through a link is refused: $(cat "$tmp/err")"
"$bin" plan -m "$tmp" --config-only --hw "$prof" --gpu-mem 23G --cpu-mem 480G \
    -o "$tmp/config.json" >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "is the -m input" "$tmp/err"
ok $? "-o naming DIR/config.json of -m is refused: $(cat "$tmp/err")"
[ "$(cat "$tmp/hw.json" "$tmp/config.json" | sha256sum)" = "$sums_before" ]
ok $? "... and the inputs are unchanged"
# -o naming a --disk-from, --dram-from or --learn input: refused too, the profile and the
# report kept (the plan was written over them).
cp "$prof" "$tmp/minute.json"
printf '{"format": "moetier-report", "version": 1}\n' >"$tmp/report.json"
sums_before=$(cat "$tmp/minute.json" "$tmp/report.json" | sha256sum)
rc=0
for flag in --disk-from --dram-from; do
    "$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 480G "$flag" \
        "$tmp/minute.json" -o "$tmp/minute.json" >/dev/null 2>"$tmp/err"
    [ $? -eq 2 ] && grep -q "is the $flag input; refusing to overwrite" "$tmp/err" || rc=1
done
"$bin" plan --config "$cfg" --hw "$tmp/hw.json" --learn "$tmp/report.json" --gpu-mem 23G \
    --cpu-mem 480G -o "$tmp/report.json" >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "is the --learn input; refusing to overwrite" "$tmp/err" || rc=1
[ $rc -eq 0 ] && [ "$(cat "$tmp/minute.json" "$tmp/report.json" | sha256sum)" = "$sums_before" ]
ok $? "-o naming a --disk-from, --dram-from or --learn input is refused: $(cat "$tmp/err")"
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 40G --cpu-mem 480G -o "$tmp/p.json" \
    >/dev/null 2>&1 &&
    (ulimit -f 4 && trap '' XFSZ && "$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G \
        --cpu-mem 480G -o "$tmp/p.json") >/dev/null 2>"$tmp/err"
rc=$?
cp "$tmp/p.json" "$tmp/p.after" 2>/dev/null
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 40G --cpu-mem 480G -o "$tmp/p.ref" \
    >/dev/null 2>&1
[ $rc -eq 1 ] && cmp -s "$tmp/p.after" "$tmp/p.ref" && grep -q "cannot write plan" "$tmp/err" &&
    [ -z "$(ls -A "$tmp" | grep '^\.p\.json')" ]
ok $? "a plan write that fails (file size limit) leaves the old plan whole, no temporary (rc $rc)"
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 480G >/dev/full 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "cannot write to stdout" "$tmp/err"
ok $? "plan >/dev/full exits 1: $(cat "$tmp/err")"
"$bin" plan --config "$cfg" --check "$tmp/p.ref" >/dev/full 2>/dev/null
[ $? -eq 1 ]
ok $? "plan --check >/dev/full exits 1"
# Issue 9, finding 13: no CPU FLOP rate and no GPU: prefill is "not modelled", not free.
cat >"$tmp/noflops.json" <<'EOF'
{"version": 1, "source": "what-if: CPU without FLOPs", "cpu": {"read_gbps": 200},
 "disks": [{"path": "/nvme0", "best_gbps": 7}]}
EOF
"$bin" plan --config "$cfg" --hw "$tmp/noflops.json" --gpu-mem 24G --cpu-mem 480G \
    -o "$tmp/nf.json" >"$tmp/out" 2>&1
[ $? -eq 0 ] && grep -q '^prefill    : not modelled: the profile has no CPU FLOP rate' "$tmp/out"
ok $? "no CPU FLOP rate, no GPU: the text says prefill is not modelled"
grep -q '"prefill_tok_s": null' "$tmp/nf.json" && grep -q '"prefill_not_modelled": "the profile' \
    "$tmp/nf.json" && "$bin" plan --config "$cfg" --check "$tmp/nf.json" >/dev/null 2>&1
ok $? "... and the plan file has null and the reason, and passes --check"

# A trace whose path is not UTF-8 (any bytes on Linux) labels the plan's activation: the plan is
# still written (the bad byte as '?'), where jansson refused the label and the whole plan with
# "cannot build plan JSON".
bad=$(printf 'tr-\377.json')
printf '%s' '{"format": "moetier-trace", "version": 1, "n_layers": 61, "n_experts": 256, "k": 8,
 "tokens": 0, "layers": []}' >"$tmp/$bad"
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 480G --trace "$tmp/$bad" \
    -o "$tmp/utf.json" >/dev/null 2>"$tmp/err"
[ $? -eq 0 ] && grep -q '"source": "trace: .*/tr-?.json"' "$tmp/utf.json" &&
    "$bin" plan --config "$cfg" --check "$tmp/utf.json" >/dev/null 2>&1
ok $? "a plan from a trace whose path is not UTF-8 is written and loads: $(cat "$tmp/err")"

# Issue 9, finding 14: messages that say what is wrong.
printf '%s' '{"format": "moetier-trace", "version": 1, "n_layers": 4, "n_experts": 8, "k": 2,
 "layers": [{"layer": 1, "tokens": 1, "counts": [1, 1, 0, 0]}]}' >"$tmp/dims.json"
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 24G --cpu-mem 480G --trace "$tmp/dims.json" \
    >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "layer 1 has counts for 4 experts, but the trace says n_experts 8" \
    "$tmp/err"
ok $? "a trace whose counts have other dimensions says so: $(cat "$tmp/err")"
printf '%s' '{"format": "moetier-trace", "version": 1, "n_layers": 4, "n_experts": 4, "k": 2,
 "layers": [{"layer": 0, "tokens": 1, "counts": [1, 1, 0, 0], "from_layer": 0,
 "transitions": [0, 1, 1]}]}' >"$tmp/l0.json"
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 24G --cpu-mem 480G --trace "$tmp/l0.json" \
    >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "layer 0 has 'transitions', but no earlier layer" "$tmp/err" &&
    ! grep -q -- '-1\]' "$tmp/err"
ok $? "a layer-0 transition: $(cat "$tmp/err")"
printf '%s' '{"format": "moetier-trace", "version": 1, "n_layers": 4.0, "n_experts": 4, "k": 2,
 "layers": [{"layer": 1, "tokens": 1.0, "counts": [1.0, 1, 0, 0]}]}' >"$tmp/real.json"
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 24G --cpu-mem 480G --trace "$tmp/real.json" \
    >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "has 4 layers, the model has 61" "$tmp/err"
ok $? "a trace with integral reals (4.0, 1.0) loads: $(cat "$tmp/err")"
sed 's/"version": 1,/"version": 1.0,/; s/"mem_bytes": \([0-9]*\)/"mem_bytes": \1.0/' "$prof" \
    >"$tmp/realprof.json"
"$bin" plan --config "$cfg" --hw "$tmp/realprof.json" --gpu-mem 23G --cpu-mem 480G >/dev/null \
    2>"$tmp/err"
ok $? "a profile with integral reals (version 1.0, mem_bytes N.0) loads: $(cat "$tmp/err")"
printf '%s' '{"version": 1, "source": "what-if: a GPU without numbers", "gpu": {"present": true},
 "cpu": {"read_gbps": 100}}' >"$tmp/gpu0.json"
"$bin" plan --config "$cfg" --hw "$tmp/gpu0.json" --gpu-mem 24G --cpu-mem 480G >/dev/null \
    2>"$tmp/err"
[ $? -eq 1 ] && grep -q "hardware profile '$tmp/gpu0.json' has a GPU without hbm_read_gbps" \
    "$tmp/err"
ok $? "profile errors name the file, not its source text: $(cat "$tmp/err")"
sed 's/"hidden_size": 7168/"hidden_size": 7169/' "$tmp/p.ref" >"$tmp/edited.json"
"$bin" plan --config "$cfg" --check "$tmp/edited.json" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "dims_hash .* does not match its model fields" "$tmp/err"
ok $? "a plan whose model fields were edited fails its dims_hash: $(cat "$tmp/err")"
sed 's/"dims_hash": "[0-9a-f]*"/"dims_hash": "zz"/' "$tmp/p.ref" >"$tmp/edited.json"
"$bin" plan --config "$cfg" --check "$tmp/edited.json" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "dims_hash' must be 16 lowercase hex digits" "$tmp/err"
ok $? "a malformed dims_hash is refused: $(cat "$tmp/err")"

# -o that cannot be written is refused before the model is read and the plan printed (the plan
# went to stdout whole, then the write failed), as `run` checks its outputs.
touch "$tmp/afile"
rc=0
for out in "$tmp/no/such/dir/p.json" "$tmp/afile/p.json" "$tmp"; do
    "$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 480G -o "$out" \
        >"$tmp/out" 2>"$tmp/err"
    [ $? -eq 1 ] && [ ! -s "$tmp/out" ] && grep -q "cannot write -o '$out'" "$tmp/err" || rc=1
done
[ $rc -eq 0 ]
ok $? "an -o in a missing directory, under a file or naming a directory exits 1 before planning: \
$(cat "$tmp/err")"
# A profile's cpu.expert_eff is a fraction of its read ceiling (bench writes at most 1): 5 was
# planned as 1.0 and still labelled "measured"; now refused, naming the file and the key.
sed 's/"expert_eff": 0.7/"expert_eff": 5/' "$tmp/eff.json" >"$tmp/eff5.json"
"$bin" plan --config "$cfg" --hw "$tmp/eff5.json" --gpu-mem 24G --cpu-mem 480G >/dev/null \
    2>"$tmp/err"
[ $? -eq 1 ] && grep -q "'$tmp/eff5.json': 'cpu.expert_eff' is 5; it must be in \[0, 1\]" \
    "$tmp/err"
ok $? "a cpu.expert_eff of 5 is refused: $(cat "$tmp/err")"
# A plan whose hardware section lost the rate its placement needs (a CPU plan's dram_gbps 0),
# or with no KV cache (ctx 0), is refused by --check (and by run --plan), naming the field.
"$bin" plan --config "$cfg" --hw "$tmp/cpu.json" --gpu-mem 24G --cpu-mem 480G \
    -o "$tmp/cpuplan.json" >/dev/null 2>&1 &&
    sed 's/"dram_gbps": [0-9.e+]*/"dram_gbps": 0/' "$tmp/cpuplan.json" >"$tmp/dram0.json" &&
    sed 's/"ctx": [0-9]*/"ctx": 0/' "$tmp/cpuplan.json" >"$tmp/ctx0.json" &&
    ! "$bin" plan --config "$cfg" --check "$tmp/dram0.json" >/dev/null 2>"$tmp/err" &&
    grep -q "puts expert 0 on 'C' in 'tiers', but field 'hardware.dram_gbps' is 0" "$tmp/err" &&
    ! "$bin" plan --config "$cfg" --check "$tmp/ctx0.json" >/dev/null 2>"$tmp/err2" &&
    grep -q "field 'budgets.ctx' must be an integer in \[1, " "$tmp/err2"
ok $? "a plan with dram_gbps 0 under CPU experts, or ctx 0, is refused: $(cat "$tmp/err") / \
$(cat "$tmp/err2")"
# a plan's cpu_eff has --cpu-eff's floor (0.01) and a learned efficiency's ceiling (2)
sed 's/"cpu_eff": [0-9.e+-]*/"cpu_eff": 0.001/' "$tmp/cpuplan.json" >"$tmp/eff001.json"
sed 's/"cpu_eff": [0-9.e+-]*/"cpu_eff": 1.5/' "$tmp/cpuplan.json" >"$tmp/eff15.json"
! "$bin" plan --config "$cfg" --check "$tmp/eff001.json" >/dev/null 2>"$tmp/err" &&
    grep -q "field 'budgets.cpu_eff' must be an efficiency in \[0.01, 2\] (got 0.001" "$tmp/err" &&
    "$bin" plan --config "$cfg" --check "$tmp/eff15.json" >/dev/null 2>&1
ok $? "a plan's cpu_eff of 0.001 is refused, 1.5 (learned) loads: $(cat "$tmp/err")"
# GPU memory hints: where the always-on weights alone exceed --gpu-mem a smaller --ctx cannot
# help, so the message says what they need; and without --gpu-mem a profile GPU without
# gpu.mem_bytes is named, not a "--gpu-mem 0.0 GiB" nobody typed.
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 8G --cpu-mem 480G >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q -- "--gpu-mem 8.00 GiB is too small: the always-on weights alone need" \
    "$tmp/err" && ! grep -q "smaller --ctx" "$tmp/err"
ok $? "--gpu-mem below the always-on weights: $(cat "$tmp/err")"
printf '%s' '{"version": 1, "source": "what-if: a GPU without memory", "gpu": {"present": true,
 "hbm_read_gbps": 900}, "cpu": {"read_gbps": 100}}' >"$tmp/gpunomem.json"
"$bin" plan --config "$cfg" --hw "$tmp/gpunomem.json" --cpu-mem 480G >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "'$tmp/gpunomem.json' has a GPU without gpu.mem_bytes" "$tmp/err" &&
    ! grep -q -- "--gpu-mem 0.0" "$tmp/err"
ok $? "no --gpu-mem and a profile GPU without gpu.mem_bytes: $(cat "$tmp/err")"
# A prompt step never holds more than the context: the default batch (the CPU path's 512) and an
# explicit --prefill-batch are both cut to --ctx, the second with a warning.
"$bin" plan --config "$cfg" --hw "$tmp/cpu.json" --cpu-mem 900G --ctx 100 >"$tmp/out" 2>&1
grep -q '^prefill    : .* at batch 100 ' "$tmp/out"
ok $? "--ctx 100: the prefill is predicted at batch 100: $(grep '^prefill' "$tmp/out")"
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 480G --ctx 2048 \
    --prefill-batch 4096 >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] && grep -q '^prefill    : .* at batch 2048 ' "$tmp/out" &&
    grep -q -- "--prefill-batch 4096 is more than the context (2048 tokens)" "$tmp/err"
ok $? "--prefill-batch 4096 at --ctx 2048: predicted at 2048 with a warning: $(cat "$tmp/err")"
# Loaders refuse keys they do not know, as the README says: a misspelt optional field would
# otherwise load as its default ("gpu_eff" 1).
sed 's/"gpu_eff"/"gpu_ef"/' "$tmp/p.json" >"$tmp/typo.json"
sed 's/"ctx":/"extra": 1, "ctx":/' "$tmp/p.json" >"$tmp/extra.json"
! "$bin" plan --config "$cfg" --check "$tmp/typo.json" >/dev/null 2>"$tmp/err" &&
    grep -q "typo.json': unknown key 'hardware.gpu_ef'" "$tmp/err" &&
    ! "$bin" plan --config "$cfg" --check "$tmp/extra.json" >/dev/null 2>"$tmp/err2" &&
    grep -q "extra.json': unknown key 'budgets.extra'" "$tmp/err2"
ok $? "unknown keys in a plan are refused: $(cat "$tmp/err") / $(cat "$tmp/err2")"
# an edited prediction: a warning, and the tiers' counts from the layers
sed -E 's/"decode_tok_s": *[0-9.e+-]+/"decode_tok_s": 123456789/' "$tmp/p.json" >"$tmp/fast.json"
"$bin" plan --config "$cfg" --check "$tmp/fast.json" >"$tmp/out" 2>"$tmp/err" &&
    grep -q "its prediction is not that of its layers" "$tmp/err" &&
    grep -q "it has no decode prediction" "$tmp/out"
ok $? "an edited decode_tok_s is dropped with a warning: $(cat "$tmp/err")"
# --check plans nothing: a planning flag beside it would be ignored (--learn's profile not
# rewritten, -o not written), so it is a usage error
"$bin" plan --config "$cfg" --check "$tmp/p.json" -o "$tmp/never.json" >/dev/null 2>"$tmp/err"
rc=$?
"$bin" plan --config "$cfg" --check "$tmp/p.json" --gpu-mem 5G >/dev/null 2>"$tmp/err2"
rc2=$?
[ $rc -eq 2 ] && [ $rc2 -eq 2 ] && [ ! -e "$tmp/never.json" ] &&
    grep -q -- "--check reads a plan and the model only: it takes no -o" "$tmp/err" &&
    grep -q -- "it takes no --gpu-mem" "$tmp/err2"
ok $? "--check with -o or --gpu-mem: exit 2: $(cat "$tmp/err")"
# --kv-dtype takes what run takes, fp32 for f32 too: the same f32 cache in the budget
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 80G --cpu-mem 480G --kv-dtype f32 \
    >"$tmp/out" 2>/dev/null &&
    "$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 80G --cpu-mem 480G --kv-dtype fp32 \
        >"$tmp/out2" 2>/dev/null &&
    grep -q '^GPU budget : .* KV 32768 tok 5.24 ' "$tmp/out" &&
    [ "$(grep '^GPU budget' "$tmp/out")" = "$(grep '^GPU budget' "$tmp/out2")" ]
ok $? "--kv-dtype fp32 is f32's cache: $(grep '^GPU budget' "$tmp/out2")"
# a --gpu-reserve given is kept as given: only the default grows to the prompt chunks' work space
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 480G --gpu-reserve 1.5G \
    >"$tmp/out" 2>&1
grep -q '^GPU budget : .* + workspace 1.50 + experts' "$tmp/out"
ok $? "--gpu-reserve 1.5G is not grown: $(grep '^GPU budget' "$tmp/out")"
# --ctx past the model's positions plans for those positions, and says so
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 80G --cpu-mem 480G --ctx 200000 \
    >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] && grep -q '^GPU budget : .* KV 163840 tok ' "$tmp/out" &&
    grep -q -- "--ctx 200000 is more than the model's 163840 positions: planning for 163840" \
        "$tmp/err"
ok $? "--ctx 200000: planned for 163840 positions with a warning: $(head -n 1 "$tmp/err")"
# at most 16 --trace files and 16 --learn reports: one more is a usage error, not an overrun
traces=""
learns=""
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17; do
    traces="$traces --trace $tmp/t$i.json"
    learns="$learns --learn $tmp/r$i.json"
done
# shellcheck disable=SC2086
"$bin" plan --config "$cfg" --hw "$prof" $traces >/dev/null 2>"$tmp/err"
rc=$?
# shellcheck disable=SC2086
"$bin" plan --config "$cfg" --hw "$tmp/hw.json" $learns >/dev/null 2>"$tmp/err2"
rc2=$?
[ $rc -eq 2 ] && grep -q -- "at most 16 --trace files" "$tmp/err" && [ $rc2 -eq 2 ] &&
    grep -q -- "at most 16 --learn reports" "$tmp/err2"
ok $? "17 --trace or --learn: exit 2 ($rc, $rc2): $(cat "$tmp/err") / $(cat "$tmp/err2")"
# --cpu-eff in [0.01, 1], both ends in it; --prefill-batch at least 1; no stray argument
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 480G --cpu-eff 0.01 \
    >"$tmp/out" 2>/dev/null &&
    grep -q '^CPU eff    : 0.010 ' "$tmp/out" &&
    "$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 480G --cpu-eff 1 \
        >"$tmp/out2" 2>/dev/null &&
    grep -q '^CPU eff    : 1.000 ' "$tmp/out2"
ok $? "--cpu-eff 0.01 and 1 are taken: $(grep '^CPU eff' "$tmp/out") / \
$(grep '^CPU eff' "$tmp/out2")"
"$bin" plan --config "$cfg" --hw "$prof" --cpu-eff 1.01 >/dev/null 2>"$tmp/err"
rc=$?
"$bin" plan --config "$cfg" --hw "$prof" --prefill-batch 0 >/dev/null 2>"$tmp/err2"
rc2=$?
"$bin" plan --config "$cfg" --hw "$prof" stray >/dev/null 2>"$tmp/err3"
rc3=$?
[ $rc -eq 2 ] && grep -q -- "--cpu-eff must be in \[0.01, 1\], got '1.01'" "$tmp/err" &&
    [ $rc2 -eq 2 ] && grep -q -- "bad --prefill-batch '0'" "$tmp/err2" &&
    [ $rc3 -eq 2 ] && grep -q "unexpected argument 'stray'" "$tmp/err3"
ok $? "--cpu-eff 1.01, --prefill-batch 0, a stray argument: exit 2 ($rc $rc2 $rc3): \
$(head -n 1 "$tmp/err") / $(head -n 1 "$tmp/err2") / $(head -n 1 "$tmp/err3")"
# --learn rewrites the --hw profile: without one it is a usage error
"$bin" plan --config "$cfg" --learn "$tmp/r1.json" >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 2 ] && grep -q -- "--learn needs --hw PROFILE" "$tmp/err"
ok $? "--learn without --hw: exit 2 (rc $rc: $(head -n 1 "$tmp/err"))"
# -m deepseek-v3.2 is the built-in config only where no such directory exists: here one does
# (config.json alone), so it is opened as a checkpoint, and refused for having no weights
absbin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
absprof=$(cd "$(dirname "$prof")" && pwd)/$(basename "$prof")
(cd "$(dirname "$cfg")/.." && "$absbin" plan -m deepseek-v3.2 --hw "$absprof" --gpu-mem 23G \
    --cpu-mem 480G) >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] && grep -q "in 'deepseek-v3.2'" "$tmp/err" && ! grep -q 'built-in' "$tmp/err"
ok $? "-m deepseek-v3.2 where that directory exists opens it (rc $rc: $(head -n 1 "$tmp/err"))"

# Without --gpu-mem and --cpu-mem a what-if profile (no host: another machine) is planned with
# its GPU memory less max(512 MiB, 5%) and 90% of its DRAM (cli_autoplan.h), never with this
# machine's free memory: 24 GiB less 1.2 GiB and 512 GiB x 0.9; 100 GiB x 0.9; 8 GiB less
# 512 MiB (not 5%, 0.4 GiB), too small for V3.2's always-on weights and refused naming it.
"$bin" plan --config "$cfg" --hw "$prof" >"$tmp/out" 2>&1
[ $? -eq 0 ] && grep -q '^GPU budget : 22\.8 GiB = ' "$tmp/out" &&
    grep -q '^DRAM budget: 460\.8 GiB = ' "$tmp/out"
a=$?
sed 's/"dram_bytes": 549755813888/"dram_bytes": 107374182400/' "$prof" >"$tmp/dram100.json"
sed 's/"mem_bytes": 25769803776/"mem_bytes": 8589934592/' "$prof" >"$tmp/gpu8.json"
"$bin" plan --config "$cfg" --hw "$tmp/dram100.json" >"$tmp/out2" 2>&1
[ $? -eq 0 ] && grep -q '^DRAM budget: 90\.0 GiB = ' "$tmp/out2"
b=$?
"$bin" plan --config "$cfg" --hw "$tmp/gpu8.json" >"$tmp/out3" 2>&1
[ $? -eq 1 ] && [ $a -eq 0 ] && [ $b -eq 0 ] &&
    grep -q 'the default GPU budget 7\.50 GiB (no --gpu-mem' "$tmp/out3"
ok $? "a what-if's default budgets: $(grep -h '^GPU budget\|^DRAM budget' "$tmp/out" "$tmp/out2" |
    cut -d= -f1 | tr '\n' ' ')$(grep -o 'default GPU budget [0-9.]* GiB' "$tmp/out3")"
# a profile that measured the CPU's prefill runs (cpu.expert_prefill_*) but learned nothing:
# the plan prints the measured rates, with no learned factor (1: none, planner.h)
sed 's/"cpu": {/"cpu": {"expert_prefill_gbps": 10, "expert_prefill_gflops": 100,/' "$prof" \
    >"$tmp/pre.json"
"$bin" plan --config "$cfg" --hw "$tmp/pre.json" --gpu-mem 23G --cpu-mem 480G >"$tmp/out" 2>&1
rc=$?
want="^CPU prefill: each expert run 10.0 GB/s of its weights, then 100 GFLOPS of its tokens"
[ $rc -eq 0 ] && grep -q "$want (measured: profile cpu.expert_prefill_\*)\$" "$tmp/out"
ok $? "measured CPU prefill rates, nothing learned: $(grep '^CPU prefill' "$tmp/out")"
# the largest --ctx and --prefill-batch are taken (then cut to the model's positions and the
# context, with warnings); one more is a usage error naming the range
"$bin" plan --config "$cfg" --hw "$tmp/cpu.json" --cpu-mem 900G --ctx 16777216 \
    --prefill-batch 1048576 >"$tmp/out" 2>"$tmp/err"
rc=$?
"$bin" plan --config "$cfg" --hw "$prof" --ctx 16777217 >/dev/null 2>"$tmp/err2"
rc2=$?
"$bin" plan --config "$cfg" --hw "$prof" --prefill-batch 1048577 >/dev/null 2>"$tmp/err3"
rc3=$?
[ $rc -eq 0 ] && grep -q '^DRAM budget: .* KV 163840 tok ' "$tmp/out" &&
    grep -q -- "--prefill-batch 1048576 is more than the context (163840 tokens)" "$tmp/err" &&
    [ $rc2 -eq 2 ] && grep -q -- "bad --ctx '16777217' (must be in 1..16777216)" "$tmp/err2" &&
    [ $rc3 -eq 2 ] &&
    grep -q -- "bad --prefill-batch '1048577' (must be in 1..1048576)" "$tmp/err3"
ok $? "--ctx 16777216 and --prefill-batch 1048576 are taken, one more is not ($rc $rc2 $rc3): \
$(head -n 1 "$tmp/err2") / $(head -n 1 "$tmp/err3")"
# at the limits themselves nothing is cut, so nothing is warned about: --ctx of exactly the
# model's positions, --prefill-batch of exactly --ctx
"$bin" plan --config "$cfg" --hw "$tmp/cpu.json" --cpu-mem 900G --ctx 163840 \
    >"$tmp/out" 2>"$tmp/err" &&
    "$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 480G --ctx 2048 \
        --prefill-batch 2048 >"$tmp/out2" 2>>"$tmp/err" &&
    [ ! -s "$tmp/err" ] && grep -q '^DRAM budget: .* KV 163840 tok ' "$tmp/out" &&
    grep -q '^prefill    : .* at batch 2048 ' "$tmp/out2"
ok $? "--ctx 163840 and --prefill-batch equal to --ctx plan without a warning: $(cat "$tmp/err")"
# --config-only with no -m is the built-in model (not a config.json of an unnamed directory);
# with -m DIR it reads DIR/config.json alone: both plan what --config FILE plans
dec() { sed -n 's/^decode *: \([0-9.]*\) tok\/s.*/\1/p' "$1"; }
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 480G >"$tmp/out" 2>/dev/null
"$bin" plan --config-only --hw "$prof" --gpu-mem 23G --cpu-mem 480G >"$tmp/out2" 2>"$tmp/err"
rc=$?
"$bin" plan -m "$(dirname "$cfg")" --config-only --hw "$prof" --gpu-mem 23G --cpu-mem 480G \
    >"$tmp/out3" 2>"$tmp/err2"
rc2=$?
[ $rc -eq 0 ] && grep -q "no -m given: the full DeepSeek-V3.2 (built-in config)" "$tmp/err" &&
    [ $rc2 -eq 0 ] && [ -n "$(dec "$tmp/out")" ] &&
    [ "$(dec "$tmp/out2")" = "$(dec "$tmp/out")" ] &&
    [ "$(dec "$tmp/out3")" = "$(dec "$tmp/out")" ]
ok $? "--config-only alone and -m DIR --config-only plan as --config does ($rc $rc2): \
$(dec "$tmp/out2") / $(dec "$tmp/out3") tok/s $(head -n 1 "$tmp/err2")"
# a -m whose DIR/config.json does not fit a path buffer is refused, not cut to another file
long=$(printf '%04100d' 0)
"$bin" plan -m "$tmp/$long" --hw "$prof" >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 2 ] && grep -q "^moetier plan: -m '$tmp/0*' is too long" "$tmp/err"
ok $? "a -m of 4,100 characters: exit 2 (rc $rc): $(head -n 1 "$tmp/err" | cut -c 1-60)..."
# the defaults named (--kv-dtype bf16, --indexer exact) are the defaults' cache, not fp8's
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 480G --kv-dtype bf16 \
    --indexer exact >"$tmp/out" 2>&1
[ $? -eq 0 ] && grep -q 'KV 32768 tok 3.10 + workspace 1.77 (for 1024-token prompt chunks)' \
    "$tmp/out"
ok $? "--kv-dtype bf16 --indexer exact: $(grep -o 'KV.*chunks)' "$tmp/out")"
# a profile without a "source" is called by its file, on the screen and in the plan (which
# --check then names)
sed 's/"source": "what-if: CPU only", //' "$tmp/cpu.json" >"$tmp/nosrc.json"
"$bin" plan --config "$cfg" --hw "$tmp/nosrc.json" --cpu-mem 480G -o "$tmp/nosrc-plan.json" \
    >"$tmp/out" 2>&1 &&
    grep -q "^hardware   : $tmp/nosrc.json\$" "$tmp/out" &&
    "$bin" plan --config "$cfg" --check "$tmp/nosrc-plan.json" >"$tmp/out2" 2>&1 &&
    grep -q "tok/s decode on $tmp/nosrc.json\$" "$tmp/out2"
ok $? "a profile without a source is named by its file: $(grep '^hardware' "$tmp/out")"
# --disk-from and --dram-from: the disks (their rates summed) or the DRAM read rates of another
# profile replace --hw's for this plan; a profile without them is refused, naming it
cat >"$tmp/disks2.json" <<'EOF'
{"version": 1, "source": "bench --only disk", "disks": [{"path": "/nvme1", "best_gbps": 3},
 {"path": "/nvme2", "best_gbps": 5}]}
EOF
cat >"$tmp/dram150.json" <<'EOF'
{"version": 1, "source": "bench --only dram", "cpu": {"read_gbps": 100, "read_ceiling_gbps": 150}}
EOF
"$bin" plan --config "$cfg" --hw "$tmp/eff.json" --gpu-mem 24G --cpu-mem 480G \
    --disk-from "$tmp/disks2.json" --dram-from "$tmp/dram150.json" >"$tmp/out" 2>&1
[ $? -eq 0 ] && grep -q '^rates  .* DRAM 150 GB/s (read ceiling) x 0.70, .* disk 8.0 GB/s$' \
    "$tmp/out"
ok $? "--disk-from two disks and --dram-from a ceiling of 150: $(grep '^rates' "$tmp/out")"
"$bin" plan --config "$cfg" --hw "$tmp/eff.json" --disk-from "$tmp/dram150.json" >/dev/null \
    2>"$tmp/err"
rc=$?
"$bin" plan --config "$cfg" --hw "$tmp/eff.json" --dram-from "$tmp/disks2.json" >/dev/null \
    2>"$tmp/err2"
rc2=$?
[ $rc -eq 1 ] && grep -q -- "--disk-from '$tmp/dram150.json' has no disk" "$tmp/err" &&
    [ $rc2 -eq 1 ] && grep -q -- "--dram-from '$tmp/disks2.json' has no DRAM read rate" "$tmp/err2"
ok $? "a --disk-from without disks, a --dram-from without DRAM rates ($rc $rc2): \
$(head -n 1 "$tmp/err") / $(head -n 1 "$tmp/err2")"
# --learn rewrites --hw: one that cannot be written (a directory) is refused before anything
# is read
"$bin" plan --config "$cfg" --hw "$tmp" --learn "$tmp/r1.json" >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] && grep -q -- "cannot write --hw '$tmp': it is a directory" "$tmp/err"
ok $? "--learn with a --hw that is a directory: exit 1 (rc $rc): $(head -n 1 "$tmp/err")"
# -o naming a --trace input (here one that loads, so only the output check can refuse it): exit
# 2 before anything is read, the trace kept
cp "$tmp/$bad" "$tmp/tr.json"
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 480G --trace "$tmp/tr.json" \
    -o "$tmp/tr.json" >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 2 ] && grep -q "is the --trace input; refusing to overwrite" "$tmp/err" &&
    cmp -s "$tmp/$bad" "$tmp/tr.json"
ok $? "-o naming the --trace file is refused (rc $rc): $(head -n 1 "$tmp/err")"
# The plan screen says what the plan file holds: every line of it, computed from the file's
# fields (the embedding table from the config), on a GPU plan that fills the GPU and DRAM and
# streams the rest; one whose CPU has no DRAM rate (the experts go to the GPU over PCIe, DRAM not
# full, nothing streamed); one whose profile learned from run reports; a CPU plan; and a CPU
# plan whose --cpu-mem cannot hold the reserve, the always-on weights and the KV, which says by
# how much. Before, only the decode speed and a few budget figures were compared, so a swapped
# field or unit elsewhere went unseen.
# screen PLAN CONFIG: the lines `plan` prints for the plan file PLAN, computed from its fields
# (and the embedding table from CONFIG), one basic regular expression a line; "@" is any text
screen() {
    awk -v vocab="$(sed -n 's/.*"vocab_size": *\([0-9]*\).*/\1/p' "$2")" '
    function gib(b) { return b / 1073741824 }
    function size(b) { # mt_size_text
        if (b >= 1073741824) return sprintf("%.2f GiB", gib(b))
        return b >= 1048576 ? sprintf("%.1f MiB", b / 1048576) : sprintf("%.1f KiB", b / 1024)
    }
    function out(s) { gsub(/\./, "\\.", s); gsub(/@/, ".*", s); print s }
    { # flatten the pretty-printed JSON: one PATH=VALUE a scalar, arrays and objects as prefixes
        line = $0; sub(/^ */, "", line); sub(/,$/, "", line)
        if (line ~ /^[]}]/) { d--; next }
        key = ""
        if (match(line, /^"[^"]*": /)) {
            key = substr(line, 2, RLENGTH - 4); line = substr(line, RLENGTH + 1)
        }
        if (line == "{" || line == "[") { s[++d] = key; next }
        p = ""; for (i = 1; i <= d; i++) if (s[i] != "") p = p s[i] "."
        gsub(/^"|"$/, "", line); v[p key] = line ~ /^-?[0-9]/ ? line + 0 : line
        if (p key == "layers.tiers") { moe++; t = line; dram += gsub(/[CP]/, "", t) }
        if (p key == "layers.prefill") { t = line; moved += gsub(/P/, "", t) }
    }
    END {
        gpu = v["hardware.hbm_gbps"] > 0; eb = v["model.expert_bytes"]
        b = "budgets."; r = "prediction."; t = "prediction.tiers."
        out(sprintf("model      : %d layers (%d MoE x %d experts, k %d), expert %.2f MiB (%s), " \
            "always-on %.2f GiB", v["model.num_hidden_layers"], moe, v["model.n_routed_experts"],
            v["model.num_experts_per_tok"], eb / 1048576, v["model.fp8"] == "true" ? "FP8" : "BF16",
            gib(v[b "always_on_bytes"])))
        out(sprintf("rates      : HBM %.0f GB/s, GPU %.0f TFLOPS, DRAM %.0f GB/s (@) x %.2f, CPU " \
            "%.0f GFLOPS x %.2f, PCIe H2D %.1f GB/s, disk %.1f GB/s", v["hardware.hbm_gbps"],
            v["hardware.gpu_tflops"], v["hardware.dram_gbps"], v[b "cpu_eff"],
            v["hardware.cpu_gflops"], v[b "cpu_eff"], v["hardware.pcie_gbps"],
            v["hardware.disk_gbps"]))
        if (gpu) {
            out(sprintf("GPU budget : %.1f GiB = always-on %.2f + KV %d tok %.2f + workspace " \
                "%.2f@ + experts %.2f GiB", gib(v[b "gpu_mem_bytes"]), gib(v[b "always_on_bytes"]),
                v[b "ctx"], gib(v[b "kv_bytes"]), gib(v[b "gpu_reserve_bytes"]),
                gib(v[b "gpu_expert_bytes"])))
            emb = vocab * v["model.hidden_size"] * 2 # BF16
            work = v[b "cpu_mem_bytes"] - v[b "cpu_reserve_bytes"] - v[b "dram_expert_bytes"] - emb
            out(sprintf("DRAM budget: %.1f GiB = reserve %.2f + embedding table %.2f + prompt " \
                "buffers %.2f + experts %.2f GiB", gib(v[b "cpu_mem_bytes"]),
                gib(v[b "cpu_reserve_bytes"]), gib(emb), gib(work), gib(v[b "dram_expert_bytes"])))
        } else {
            out("GPU budget : none, the profile has no GPU (--gpu-mem is ignored)")
            out(sprintf("DRAM budget: %.1f GiB = reserve %.2f + always-on %.2f + KV %d tok " \
                "%.2f + experts %.2f GiB", gib(v[b "cpu_mem_bytes"]), gib(v[b "cpu_reserve_bytes"]),
                gib(v[b "always_on_bytes"]), v[b "ctx"], gib(v[b "kv_bytes"]),
                gib(v[b "dram_expert_bytes"])))
            first = v[b "cpu_reserve_bytes"] + v[b "always_on_bytes"] + v[b "kv_bytes"]
            if (first > v[b "cpu_mem_bytes"])
                out(sprintf("             short by %s: @", size(first - v[b "cpu_mem_bytes"])))
        }
        h = "hardware."
        if (v[h "cpu_prefill_gbps"] > 0) {
            learned = ""
            if (v[h "cpu_prefill_eff"] > 0 && v[h "cpu_prefill_eff"] != 1)
                learned = sprintf(" x %.3f (learned)", v[h "cpu_prefill_eff"])
            out(sprintf("CPU prefill: each expert run %.1f GB/s of its weights, then %.0f GFLOPS " \
                "of its tokens (measured: profile cpu.expert_prefill_@)%s", v[h "cpu_prefill_gbps"],
                v[h "cpu_prefill_gflops"], learned))
        }
        if (gpu && v[h "gpu_prefill_eff"] > 0) {
            # learned where it is not the H200 value the planner assumes (MT_PLAN_GPU_PREFILL_EFF)
            out(sprintf("GPU prefill: @ at %.0f TFLOPS x %.3f (%s)", v[h "gpu_tflops"],
                v[h "gpu_prefill_eff"],
                v[h "gpu_prefill_eff"] != 0.5 ? "learned" : "assumed: the H200\047s"))
        }
        if (v[h "gpu_eff"] != 1 || v[h "disk_eff"] != 1)
            out(sprintf("learned    : HBM x %.3f, disk x %.3f (the profile@s learned section)",
                v[h "gpu_eff"], v[h "disk_eff"]))
        if (v[h "host_layer_ms"] > 0)
            out(sprintf("host wait  : %.3f ms per MoE layer that uses an expert off the GPU " \
                "(learned); %.2f such layers per token", v[h "host_layer_ms"],
                v[r "host_layers_per_token"]))
        if (v["activation.tokens"] == 0)
            out(sprintf("activation : uniform, p = k/E = %.4f per expert per token",
                v["model.num_experts_per_tok"] / v["model.n_routed_experts"]))
        split("gpu dram-cpu dram-pcie nvme", tn, " ")
        split("GPU-resident (HBM)|DRAM, CPU computes|DRAM -> GPU over PCIe|NVMe (streamed)", tw,
            "|")
        for (k = 1; k <= 4; k++) {
            n_all += v[t tn[k] ".experts"]
            out(sprintf("%-22s %8d %9.2f %12.3f %12.2f", tw[k], v[t tn[k] ".experts"],
                gib(v[t tn[k] ".bytes"]), v[t tn[k] ".bytes_per_token"] / 1e9,
                v[t tn[k] ".ms_per_token"]))
        }
        out(sprintf("%-22s %8s %9.2f %12s %12.2f", gpu ? "always-on (GPU)" : "always-on (CPU)", "-",
            gib(v[b "always_on_bytes"]), "", v[r "always_on_ms"]))
        out("bottleneck : " v[r "bottleneck"])
        out(sprintf("decode     : %.2f tok/s (%.1f ms/token, of which always-on %.1f ms; " \
            "averaged over sampled", v[r "decode_tok_s"], v[r "decode_ms"], v[r "always_on_ms"]))
        out(sprintf("             expert choices; the expected-load bound is %.1f ms = %.2f tok/s)",
            v[r "decode_ms_mean_load"], 1e3 / v[r "decode_ms_mean_load"]))
        out(sprintf("prefill    : %.1f tok/s at batch %d (%.1f ms per batch of %d tokens)",
            v[r "prefill_tok_s"], v[b "prefill_batch"], v[r "prefill_ms_per_batch"],
            v[b "prefill_batch"]))
        out(sprintf("             in prefill %d of %d DRAM experts are copied to the GPU, NVMe " \
            "experts are computed", moved, dram))
        on = gpu && v["hardware.pcie_gbps"] > 0 && v["hardware.dram_gbps"] <= 0 ? "GPU" : "CPU"
        note = "attention FLOPs beyond 2 x params per token are not modeled"
        if (gpu && v["hardware.gpu_prefill_eff"] > 0) note = "a prompt of one batch from position 0"
        out(sprintf("             on the %s; %s", on, note))
        lead = "why        : "
        if (gpu) {
            full = " (room left: the rest are faster elsewhere)"
            if (v[t "gpu.bytes"] + eb > v[b "gpu_expert_bytes"]) full = " (full)"
            out(sprintf("%sthe GPU holds %d experts in the %s --gpu-mem leaves for them%s;", lead,
                v[t "gpu.experts"], size(v[b "gpu_expert_bytes"]), full))
            lead = "             "
        }
        n = v[t "dram-cpu.experts"] + v[t "dram-pcie.experts"]
        full = n * eb + eb > v[b "dram_expert_bytes"] ? " (full)" : ""
        out(sprintf("%sDRAM holds %d in the %s --cpu-mem leaves for experts%s%s", lead, n,
            size(v[b "dram_expert_bytes"]), full, v[t "nvme.experts"] > 0 ? ";" : ""))
        if (v[t "nvme.experts"] > 0)
            out(sprintf("             %d of %d did not fit %s and stream from disk at %.1f GB/s",
                v[t "nvme.experts"], n_all, gpu ? "the GPU and DRAM budgets" : "the DRAM budget",
                v["hardware.disk_gbps"]))
        out("             the slowest source per layer sets the speed: here " v[r "bottleneck"])
    }' "$1"
}
# screen_check PLAN CONFIG OUT: the first line of screen PLAN CONFIG that OUT lacks; none: 0
screen_check() {
    screen "$1" "$2" >"$1.screen" && [ -s "$1.screen" ] || { echo "no screen of $1"; return 1; }
    while IFS= read -r re; do
        grep -qx -- "$re" "$3" || { echo "no line '$re'"; return 1; }
    done <"$1.screen"
}
sed 's/"read_gbps": 150/"read_gbps": 0/g' "$prof" >"$tmp/pcie.json"
# and one that learned from run reports (every factor other than the others and than 1)
sed 's/"cpu": {/"learned": {"reports": 2, "gpu_eff": 0.8, "disk_eff": 0.9, "gpu_prefill_eff": 0.4,\
 "cpu_prefill_eff": 0.7, "host_layer_ms": 0.25},\
 "cpu": {"expert_prefill_gbps": 10, "expert_prefill_gflops": 100,/' "$prof" >"$tmp/learned.json"
rc=0
for run in "$prof 480G" "$tmp/pcie.json 650G" "$tmp/learned.json 480G" "$tmp/cpu.json 480G" \
    "$tmp/cpu.json 20G"; do
    # shellcheck disable=SC2086
    set -- $run
    "$bin" plan --config "$cfg" --hw "$1" --gpu-mem 23G --cpu-mem "$2" -o "$tmp/s.json" \
        >"$tmp/out" 2>/dev/null || { echo "# plan --hw $1 --cpu-mem $2 failed"; rc=1; }
    why=$(screen_check "$tmp/s.json" "$cfg" "$tmp/out") || { echo "# --hw $1: $why"; rc=1; }
    # (the GPU engine's copies are not in the plan file: the GPU plan with CPU experts has some)
    [ "$1 $2" != "$prof 480G" ] ||
        grep -q '^  *[0-9.]* of the DRAM experts a token uses are copied to the GPU' "$tmp/out" ||
        { echo "# --hw $1: no copies line"; rc=1; }
done
# the last screen (no GPU) has no GPU lines and none of what nothing was learned for
! grep -q -e '^GPU prefill' -e 'copied to the GPU over PCIe while' -e '^learned' -e '^host wait' \
    -e '^CPU prefill' "$tmp/out" && grep -q '^             short by ' "$tmp/out" || rc=1
ok $rc "the plan screen's numbers are the plan file's (GPU full, PCIe, learned, CPU, CPU short)"
# A --gpu-reserve too small for the GPU engine's 1024-token prompt chunks: the screen names a
# --gpu-reserve that gives them, and it does (prefill at batch 1024, nothing short). It named the
# reserve plus the shortfall, which left the same experts on the GPU and so the same room: 1G
# asked for 1786M, which was 5.0 MiB short and asked for 1791M, and so on, never enough.
"$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 480G --gpu-reserve 1G \
    >"$tmp/out" 2>&1
want=$(sed -n 's/.*more GPU memory than this placement leaves: --gpu-reserve \([0-9]*\)M .*/\1/p' \
    "$tmp/out")
short="the GPU engine's 1024-token prompt chunks"
rc=1
if grep -q "^prefill    : .* at batch 512 " "$tmp/out" && grep -q "$short" "$tmp/out" &&
    [ -n "$want" ]; then
    "$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 23G --cpu-mem 480G \
        --gpu-reserve "${want}M" >"$tmp/out2" 2>&1 &&
        grep -q "^prefill    : .* at batch 1024 " "$tmp/out2" && ! grep -q "$short" "$tmp/out2"
    rc=$?
fi
ok $rc "--gpu-reserve 1G: the ${want}M the screen asks for gives 1024-token prompt chunks"
tap_exit
