#!/bin/sh
# SPDX-License-Identifier: MIT
# test_gpu_run.sh - `moetier run --device gpu` on the golden checkpoint v32-tiny-a: --print-ids
# equals --device cpu's (and HF's greedy tokens) with either latent cache, --debug-sync changes
# nothing, --kv-dtype fp8 gives the CPU's ids with the same FP8 cache, and a --gpu-mem far too
# small exits 1 with one message; a prompt longer than the default
# 8,192 positions runs without --ctx (the caches are sized for it) and gives --device cpu's ids.
# Skips without a CUDA device.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
dir="$MT_TEST_DATA/golden/v32-tiny-a"

if [ ! -f "$dir/golden.json" ]; then
    bail_out "no golden data in $dir (tests/reference/README.md)"
fi
make_tmp gpurun

flat=$(tr -d ' \n' < "$dir/golden.json")
prompt=$(printf '%s' "$flat" | sed -n 's/.*"prompts":\[\[\([0-9,]*\)\].*/\1/p')
want=$(printf '%s' "$flat" | sed -n 's/.*"greedy":\[\[\([0-9,]*\)\].*/\1/p' | tr ',' ' ')

gpu=$("$bin" run -m "$dir" --device gpu --prompt-ids "$prompt" -n 20 --print-ids 2>"$tmp/err")
rc=$?
skip_without_gpu $rc "$tmp/err"
echo "1..9"
[ "$rc" -eq 0 ]
ok $? "run --device gpu --print-ids exits 0 (rc $rc: $(head -c 300 "$tmp/err"))"
cpu=$("$bin" run -m "$dir" --device cpu --prompt-ids "$prompt" -n 20 --print-ids 2>/dev/null)
[ -n "$cpu" ] && [ "$gpu" = "$cpu" ] && [ "$gpu" = "$want" ]
ok $? "--device gpu ids equal --device cpu's and HF's (gpu '$gpu', cpu '$cpu')"
g32=$("$bin" run -m "$dir" --device gpu --kv-dtype f32 --prompt-ids "$prompt" -n 20 --print-ids \
      2>/dev/null)
[ -n "$g32" ] && [ "$g32" = "$cpu" ]
ok $? "--device gpu --kv-dtype f32 ids equal --device cpu's (got '$g32')"
gds=$("$bin" run -m "$dir" --device gpu --debug-sync --prompt-ids "$prompt" -n 20 --print-ids \
      2>/dev/null)
[ -n "$gds" ] && [ "$gds" = "$gpu" ]
ok $? "--debug-sync gives the same ids (got '$gds')"
g8=$("$bin" run -m "$dir" --device gpu --kv-dtype fp8 --prompt-ids "$prompt" -n 20 --print-ids \
     2>/dev/null)
c8=$("$bin" run -m "$dir" --device cpu --kv-dtype fp8 --prompt-ids "$prompt" -n 20 --print-ids \
     2>/dev/null)
[ -n "$g8" ] && [ "$g8" = "$c8" ]
ok $? "--kv-dtype fp8: the GPU's ids equal the CPU's with the same FP8 cache (gpu '$g8', cpu '$c8')"
"$bin" run -m "$dir" --device gpu --gpu-mem 4K --prompt-ids "$prompt" -n 2 --print-ids \
    >/dev/null 2>"$tmp/err"
rc=$?
# one error line; besides it only the line that names the device (--device gpu was asked for)
[ "$rc" -eq 1 ] && grep -q 'needs .* on the GPU' "$tmp/err" &&
    [ "$(grep -v -c '^mt: device: ' "$tmp/err")" -eq 1 ]
ok $? "--gpu-mem 4K exits 1 with one message (rc $rc: $(cat "$tmp/err"))"
# an 8,300-token prompt: the same weights with max_position_embeddings 10000 (the golden config
# says 256); the ids come from a file, as a long prompt must (an argument holds 128 KiB at most)
long="$tmp/long"
mkdir "$long" && ln -s "$(cd "$dir" && pwd)/model.safetensors" "$long/model.safetensors" &&
    sed 's/"max_position_embeddings": 256,/"max_position_embeddings": 10000,/' "$dir/config.json" \
        > "$long/config.json"
seq 1 8300 | awk '{ printf "%d ", ($1 * 7919) % 509 + 1 }' > "$tmp/long.txt"
lg=$("$bin" run -m "$long" --device gpu --kv-dtype f32 --prompt-ids @"$tmp/long.txt" -n 8 \
     --print-ids 2>"$tmp/err")
rc=$?
[ "$rc" -eq 0 ] && [ "$(printf '%s\n' "$lg" | wc -w)" -eq 8 ]
ok $? "an 8,300-token prompt runs on the GPU without --ctx (rc $rc: $(tail -c 300 "$tmp/err"))"
lc=$("$bin" run -m "$long" --device cpu --prompt-ids @"$tmp/long.txt" -n 8 --print-ids \
     2>/dev/null)
[ -n "$lc" ] && [ "$lg" = "$lc" ]
ok $? "its ids equal --device cpu's (gpu '$lg', cpu '$lc')"
"$bin" run -m "$long" --device gpu --ctx 8192 --prompt-ids @"$tmp/long.txt" -n 1 --print-ids \
    >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q 'longer than the 8192 positions .* (raise --ctx' "$tmp/err"
ok $? "with --ctx 8192 it exits 1 saying so (rc $rc: $(tail -c 300 "$tmp/err"))"
tap_exit
