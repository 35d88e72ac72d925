#!/bin/sh
# SPDX-License-Identifier: MIT
# test_inspect.sh - `moetier inspect --config-only` on DeepSeek-V3.2's config.json: the JSON carries
# spec 3.5's figures (44,050,944 B per routed expert, 654,068,416,512 B routed, 19,963,965,120 B
# other), the text output has them with thousands separators, and a bad flag or an empty -m is a
# usage error (2).
# `inspect -m` validates a synth checkpoint, and a truncated shard, a FIFO or a directory in place
# of a shard each give exit 1 with one message naming the shard (a FIFO must not hang the open).
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
dir="$MT_TEST_DATA/deepseek-v3.2"

echo "1..41"
json=$("$bin" inspect --config-only -m "$dir" --json)
ok $? "inspect --config-only --json exits 0"
printf '%s\n' "$json" | grep -q '"routed_expert_bytes": 44050944,'
ok $? "JSON: routed_expert_bytes 44050944"
printf '%s\n' "$json" | grep -q '"routed_bytes": 654068416512,'
ok $? "JSON: routed_bytes 654068416512"
printf '%s\n' "$json" | grep -q '"other_bytes": 19963965120,'
ok $? "JSON: other_bytes 19963965120"
# components.mtp is the whole MTP layer (its decoder layer, eh_proj, norms, embedding and head
# copies), as mtp_bytes is; it was 0, the per-role sums holding the main model only
printf '%s\n' "$json" | tr -d ' \n' |
    grep -q '"mtp":{"params":13477385728,"bytes":15438725568}'
ok $? "JSON: components.mtp 13477385728 params, 15438725568 bytes (= mtp_bytes)"
text=$("$bin" inspect --config-only -m "$dir")
ok $? "inspect --config-only (text) exits 0"
printf '%s\n' "$text" | grep -q '654,068,416,512 B (609.15 GiB)'
ok $? "text: routed experts 654,068,416,512 B (609.15 GiB)"
"$bin" inspect --config-only -m "$dir" --no-such-flag >/dev/null 2>&1
rc=$?
[ "$rc" -eq 2 ]
ok $? "a bad flag exits 2 (got $rc)"
"$bin" inspect -m '' >/dev/null 2>&1
rc=$?
[ "$rc" -eq 2 ]
ok $? "an empty -m is a usage error, not '/config.json' (got $rc)"
# -m and --config together: one would be read, the other named in the output
err=$("$bin" inspect -m "$dir/.." --config "$dir/config.json" 2>&1 >/dev/null)
rc=$?
[ "$rc" -eq 2 ] && printf '%s\n' "$err" | grep -q -- "both name the model"
ok $? "-m DIR with --config FILE is a usage error (got $rc: $(printf '%s' "$err" | head -n 1))"
"$bin" inspect --help | grep -q -- '--config-only'
ok $? "--help lists --config-only"
# A checkpoint transformers 5 wrote (tests/reference/make_golden.py), when the tree has it.
[ -f "$MT_TEST_DATA/hf-bf16/model.safetensors" ] || bail_out "no tests/data/hf-bf16"
out=$("$bin" inspect -m "$MT_TEST_DATA/hf-bf16")
ok $? "inspect -m hf-bf16 (a transformers 5 checkpoint) exits 0"
printf '%s\n' "$out" | grep -q '1 shard, 171 tensors; validation passed'
ok $? "... and reports 1 shard, 171 tensors, validation passed"
# A synthetic checkpoint: validated; then damaged, one clear message naming the shard, exit 1.
make_tmp inspect
"$bin" synth -q -o "$tmp/t" --preset tiny --layers 2 >/dev/null 2>&1
out=$("$bin" inspect -m "$tmp/t")
ok $? "inspect -m on a synth tiny checkpoint exits 0"
printf '%s\n' "$out" | grep -q '2 shards, [0-9,]* tensors; validation passed'
ok $? "... and reports 2 shards, validation passed"
# Without the index every *.safetensors file counts, also one that holds no tensor.
cp -R "$tmp/t" "$tmp/g" && rm "$tmp/g/model.safetensors.index.json" &&
    printf '\010\000\000\000\000\000\000\000{}      ' >"$tmp/g/zz-empty.safetensors"
"$bin" inspect -m "$tmp/g" 2>/dev/null | grep -q '3 shards, [0-9,]* tensors; validation passed'
ok $? "without the index: 3 shards counted, one of them without tensors"
shard="$tmp/t/model-00002-of-000002.safetensors"
head -c 100 "$shard" >"$tmp/cut" && mv "$tmp/cut" "$shard"
"$bin" inspect -m "$tmp/t" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && [ ! -s "$tmp/out" ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
    grep -q "^mt: .*'$shard'.*truncated" "$tmp/err"
ok $? "a truncated shard: exit 1 (got $rc), no output, one message naming it: $(cat "$tmp/err")"
rm -f "$shard"
mkfifo "$shard"
timeout 20 "$bin" inspect -m "$tmp/t" >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "'$shard' is a FIFO" "$tmp/err"
ok $? "a FIFO in place of a shard: exit 1 (got $rc), not a hang: $(cat "$tmp/err")"
rm -f "$shard"
mkdir "$shard"
"$bin" inspect -m "$tmp/t" >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "'$shard' is a directory" "$tmp/err"
ok $? "a directory in place of a shard: exit 1 (got $rc): $(cat "$tmp/err")"
# Output cut short is an error (issue 9, finding 6): stdout on a full device exits 1.
"$bin" synth -q -o "$tmp/f" --preset tiny --layers 2 >/dev/null 2>&1
"$bin" inspect -m "$tmp/f" --json >/dev/full 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "cannot write to stdout" "$tmp/err"
ok $? "inspect -m --json >/dev/full exits 1 (got $rc): $(cat "$tmp/err")"
"$bin" inspect --config-only -m "$dir" >/dev/full 2>/dev/null
rc=$?
[ "$rc" -eq 1 ]
ok $? "inspect --config-only >/dev/full exits 1 (got $rc)"
# the longest context on a 24 GiB card: KV room / (bytes per token and layer x 61 layers), with the
# per-layer bytes of spec 2.x: latent 512 + rope 64 in fp32, bf16, or DeepSeek's 656-byte FP8 row
# (plus one bf16 row of 512 for all layers, the GPU engine's widened copy), plus the exact indexer's
# fp32 key (512) or the FP8 key (128) and its scale (4)
j=$("$bin" inspect --config-only -m "$dir" --gpu-mem 24G --json)
room=$(printf '%s' "$j" | sed -n 's/.*"kv_room": \([0-9]*\).*/\1/p')
flat=$(printf '%s' "$j" | tr -d ' \n')
want="$((room / (2816 * 61))) $((room / (1664 * 61))) $((room / (1168 * 61 + 1024)))"
got=$(printf '%s' "$flat" |
    sed -n 's/.*"exact_indexer":{"fp32":\([0-9]*\),"bf16":\([0-9]*\),"fp8":\([0-9]*\)}.*/\1 \2 \3/p')
[ -n "$room" ] && [ "$got" = "$want" ]
ok $? "--gpu-mem 24G, exact indexer: longest context per latent fp32 bf16 fp8 = $got (want $want)"
want="$((room / (2436 * 61))) $((room / (1284 * 61))) $((room / (788 * 61 + 1024)))"
got=$(printf '%s' "$flat" |
    sed -n 's/.*"fp8_indexer":{"fp32":\([0-9]*\),"bf16":\([0-9]*\),"fp8":\([0-9]*\)}.*/\1 \2 \3/p')
[ -n "$room" ] && [ "$got" = "$want" ]
ok $? "--gpu-mem 24G, FP8 indexer: longest context per latent fp32 bf16 fp8 = $got (want $want)"
# a GPU whose cache would hold more than the model's positions reports those positions
got=$("$bin" inspect --config-only -m "$dir" --gpu-mem 1T --json | tr -d ' \n' |
    sed -n 's/.*"fp8_indexer":{"fp32":\([0-9]*\),"bf16":\([0-9]*\),"fp8":\([0-9]*\)}.*/\1 \2 \3/p')
[ "$got" = "163840 163840 163840" ]
ok $? "--gpu-mem 1T: capped at the model's 163,840 positions (got $got)"
# the KV room itself, by hand: 24 GiB less the always-on weights without the embedding
# (other_bytes 19,963,965,120 less 129,280 x 7,168 bf16 = 1,853,358,080 B) less the 1.5 GiB
# workspace = 25,769,803,776 - 18,110,607,040 - 1,610,612,736
[ "$room" = 6048584000 ]
ok $? "--gpu-mem 24G: KV room 6,048,584,000 B (got $room)"
# a GPU smaller than the always-on weights has no room: no context at all, not a wrapped size
fit=$("$bin" inspect --config-only -m "$dir" --gpu-mem 1G --json | tr -d ' \n')
lat='"fp32":\([0-9]*\),"bf16":\([0-9]*\),"fp8":\([0-9]*\)'
got="$(printf '%s' "$fit" | sed -n 's/.*"kv_room":\([0-9]*\),.*/\1/p') $(printf '%s' "$fit" |
    sed -n "s/.*\"exact_indexer\":{$lat}.*/\\1 \\2 \\3/p")"
[ "$got" = "0 0 0 0" ]
ok $? "--gpu-mem 1G (less than the weights): KV room 0, no context (got '$got')"
# the text marks the capped contexts and says why
"$bin" inspect --config-only -m "$dir" --gpu-mem 1T >"$tmp/cap.txt"
[ "$(grep -o '163,840\*' "$tmp/cap.txt" | wc -l)" -eq 6 ] &&
    grep -q "\* the model's 163,840 positions" "$tmp/cap.txt"
ok $? "--gpu-mem 1T (text): each capped context is starred, the footnote names the positions"
# the sums the JSON carries beside the spec's figures: 3 dense + 58 MoE layers; the total is main
# + MTP (654,068,416,512 + 19,963,965,120 + 15,438,725,568); per token 8 experts x 58 layers x
# 44,050,944 B routed; the KV cache 1,284 B x 61 layers a token (bf16 latent 1,024 + k_pe 128 +
# fp8 indexer key 128 + scale 4), 128K tokens 131,072 of those
printf '%s\n' "$json" | tr -d ' \n' > "$tmp/flat.json"
grep -q '"dense_layers":3,"moe_layers":58,"mtp_layers":1,' "$tmp/flat.json" &&
    grep -q '"total_bytes":689471107200,' "$tmp/flat.json" &&
    grep -q '"kv_bytes_per_token":78324,"kv_bytes_128k":10266083328,' "$tmp/flat.json"
ok $? "JSON: 3 dense + 58 MoE layers, total_bytes 689471107200, KV 78324 B a token (128K: x 131072)"
tok='"always_on":\([0-9]*\),"routed":\([0-9]*\),"total":\([0-9]*\)'
tb=$(sed -n "s/.*\"token_bytes\":{$tok}.*/\\1 \\2 \\3/p" "$tmp/flat.json")
set -- $tb
[ "$#" -eq 3 ] && [ "$2" = 20439638016 ] && [ "$3" = $(($1 + $2)) ]
ok $? "JSON: token_bytes routed 8 x 58 x 44050944 = 20439638016, total = always_on + routed ($tb)"
# --config FILE alone is --config-only on that file: the same figures, no model directory
"$bin" inspect --config "$dir/config.json" --json >"$tmp/cfg.json" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && grep -q '"model": null,' "$tmp/cfg.json" &&
    [ "$(grep -v '"model\|"config"' "$tmp/cfg.json")" = \
        "$(printf '%s\n' "$json" | grep -v '"model\|"config"')" ]
ok $? "--config FILE alone: the figures of -m DIR --config-only, model null (rc $rc)"
"$bin" inspect --config '' >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q 'non-empty path' "$tmp/err"
ok $? "an empty --config is a usage error (rc $rc)"
printf '%s\n' "$json" | tr -d ' \n' | grep -q '"mtp_bytes":15438725568,' &&
    "$bin" inspect --config-only -m "$dir" --gpu-mem 1G --json | tr -d ' \n' |
    grep -q '"max_positions":163840,'
ok $? "JSON: mtp_bytes 15438725568 (config.json has 1 MTP layer); context_fits.max_positions 163840"
printf '%s\n' "$text" | head -n 1 | grep -q ' (config only)$' &&
    ! printf '%s\n' "$out" | head -n 1 | grep -q 'config only'
ok $? "text: the first line says (config only) for --config-only, not for a checkpoint"
# a checkpoint without the MTP layer its config.json names (synth --no-mtp): the MTP row is 0,
# the total is the main model's (the same as with the layer, which adds its bytes)
"$bin" synth -q -o "$tmp/nomtp" --preset tiny --layers 2 --no-mtp >/dev/null 2>&1 &&
    "$bin" synth -q -o "$tmp/mtp" --preset tiny --layers 2 >/dev/null 2>&1 &&
    grep -q '"num_nextn_predict_layers": *1' "$tmp/nomtp/config.json" ||
    bail_out "synth --no-mtp failed"
"$bin" inspect -m "$tmp/nomtp" --json | tr -d ' \n' >"$tmp/nomtp.json" &&
    "$bin" inspect -m "$tmp/mtp" --json | tr -d ' \n' >"$tmp/mtp.json" &&
    "$bin" inspect -m "$tmp/nomtp" >"$tmp/nomtp.txt"
rc=$?
num() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$2"; }
mm=$(num main_bytes "$tmp/mtp.json")
mb=$(num mtp_bytes "$tmp/mtp.json")
[ "$rc" -eq 0 ] && grep -q '"mtp":{"params":0,"bytes":0}' "$tmp/nomtp.json" &&
    [ "$(num mtp_bytes "$tmp/nomtp.json")" = 0 ] &&
    [ "$(num main_bytes "$tmp/nomtp.json")" = "$mm" ] &&
    [ "$(num total_bytes "$tmp/nomtp.json")" = "$mm" ] && [ "$mb" -gt 0 ] &&
    [ "$(num total_bytes "$tmp/mtp.json")" = $((mm + mb)) ] &&
    grep -q '1 MTP layer (absent from the checkpoint)' "$tmp/nomtp.txt" &&
    ! grep -q '^MTP layer' "$tmp/nomtp.txt"
ok $? "a checkpoint without its MTP layer: 0 MTP bytes, total = main $mm (with it: + $mb) (rc $rc)"
# the text's architecture lines, from config.json by hand: 61 layers of which the first 3
# (first_k_dense_replace) dense; YaRN factor 40 over 4,096 positions; FP8 with ue8m0 scales
printf '%s\n' "$text" | grep -q '^  layers *61: 3 dense + 58 MoE, + 1 MTP layer$' &&
    printf '%s\n' "$text" | grep -q '^  positions *163,840 (YaRN x40 of 4,096, theta 10000)$' &&
    printf '%s\n' "$text" | grep -q "^  storage *FP8 e4m3 linears with 128x128 F32 block \
scales, ue8m0; other tensors bfloat16\$"
ok $? "text: 3 dense + 58 MoE layers, YaRN x40 of 4,096 positions, FP8 storage with ue8m0 scales"
"$bin" inspect --config-only -m "$dir" --gpu-mem 0 >/dev/null 2>&1
[ $? -eq 2 ]
ok $? "--gpu-mem 0 is a usage error"
# usage errors name what is wrong and exit 2, before any file is read: no model at all, an
# argument after the flags, a --gpu-mem that is not a size
"$bin" inspect >/dev/null 2>"$tmp/e1"
rc1=$?
"$bin" inspect --config-only -m "$dir" extra >"$tmp/out" 2>"$tmp/e2"
rc2=$?
"$bin" inspect --config-only -m "$dir" --gpu-mem 24X >/dev/null 2>"$tmp/e3"
rc3=$?
[ "$rc1" -eq 2 ] && grep -q -- '-m DIR (or --config FILE) is required' "$tmp/e1" &&
    [ "$rc2" -eq 2 ] && [ ! -s "$tmp/out" ] && grep -q "unexpected argument 'extra'" "$tmp/e2" &&
    [ "$rc3" -eq 2 ] && grep -q "bad --gpu-mem '24X'" "$tmp/e3"
ok $? "no -m, an extra argument, --gpu-mem 24X: usage errors (rc $rc1 $rc2 $rc3)"
# a cache that holds exactly the model's positions is not cut, so not starred: room for 163,840
# tokens of the exact indexer's fp32 layout (2,816 B x 61 layers) over the 19,721,219,776 B of
# weights and workspace; the five other layouts hold more and are starred
"$bin" inspect --config-only -m "$dir" --gpu-mem $((19721219776 + 163840 * 2816 * 61)) \
    >"$tmp/edge.txt"
grep -q 'exact indexer (default): 163,840 / 163,840\* / 163,840\* tokens' "$tmp/edge.txt" &&
    [ "$(grep -o '163,840\*' "$tmp/edge.txt" | wc -l)" -eq 5 ]
ok $? "--gpu-mem for exactly 163,840 fp32 tokens: that one is not starred, the 5 others are"
# the main model's row: every role's params (the embedding too), the bytes without the MTP layer
# (654,068,416,512 routed + 19,963,965,120 other)
grep -q '"main_params":671877944064,"main_bytes":674032381632,' "$tmp/flat.json" &&
    printf '%s\n' "$text" | grep -q '^main model  *671,877,944,064  *674,032,381,632  *627\.74$'
ok $? "JSON and text: the main model 671,877,944,064 params, 674,032,381,632 B (no MTP layer)"
# the checkpoint's own figures: the bf16 transformers checkpoint is 1 shard of 171 tensors, no
# FP8 and no MTP layer; the synth one has its MTP layer
"$bin" inspect -m "$MT_TEST_DATA/hf-bf16" --json | tr -d ' \n' >"$tmp/hf.json"
grep -q '"fp8":false,"torch_dtype"' "$tmp/hf.json" &&
    grep -q '"checkpoint":{"shards":1,"tensors":171,"fp8":false,"has_mtp":false,' "$tmp/hf.json" &&
    grep -q '"has_mtp":true,"validated":true}' "$tmp/mtp.json" &&
    grep -q '"has_mtp":false,"validated":true}' "$tmp/nomtp.json"
ok $? "JSON checkpoint: hf-bf16 1 shard, 171 tensors, no FP8, no MTP; has_mtp of synth with/without"
# the JSON names the GPU size it was asked for, in bytes, beside the room it leaves
printf '%s' "$j" | tr -d ' \n' |
    grep -q '"context_fits":{"gpu_mem":25769803776,"kv_room":6048584000,'
ok $? "--gpu-mem 24G (JSON): gpu_mem 25769803776 B, kv_room 6048584000 B"
tap_exit
