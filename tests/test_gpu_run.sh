#!/bin/sh
# SPDX-License-Identifier: MIT
# test_gpu_run.sh - `moetier run --device gpu` on the golden checkpoint v32-tiny-a: --print-ids
# equals --device cpu's (and HF's greedy tokens) with either latent cache, --debug-sync changes
# nothing, and a --gpu-mem far too small exits 1 with one message. Skips without a CUDA device.
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
# no device, or a CUDA runtime newer than the driver (the profile's "no CUDA device" note is
# missing where a cached hardware profile is used)
if [ "$rc" -ne 0 ] &&
    grep -q 'no CUDA device\|no CUDA-capable device\|built without CUDA\|driver version is insufficient' "$tmp/err"; then
    echo "1..0 # SKIP no CUDA device"
    exit 0
fi
echo "1..5"
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
"$bin" run -m "$dir" --device gpu --gpu-mem 4K --prompt-ids "$prompt" -n 2 --print-ids \
    >/dev/null 2>"$tmp/err"
rc=$?
# one error line; besides it only the line that names the device (--device gpu was asked for)
[ "$rc" -eq 1 ] && grep -q 'needs .* on the GPU' "$tmp/err" &&
    [ "$(grep -v -c '^mt: device: ' "$tmp/err")" -eq 1 ]
ok $? "--gpu-mem 4K exits 1 with one message (rc $rc: $(cat "$tmp/err"))"
