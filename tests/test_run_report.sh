#!/bin/sh
# SPDX-License-Identifier: MIT
# test_run_report.sh - the run report (runtime/cli/cli_report.h) and learning from it: a plan for
# a CPU-only machine that keeps half of a `synth --preset small` model's experts in DRAM and
# streams the rest; `run --plan --json` writes a report whose fields are all there and agree
# (per phase the (token, expert) pairs of all tiers are k x MoE layers x tokens, bytes are runs x
# expert bytes), whose predicted numbers are the plan file's, with measured / predicted ratios;
# `--json -` puts it on stdout after the tokens. `plan --learn` writes what a report measured into
# the profile's "learned" section, and the next plan predicts with it: a measured CPU efficiency
# of 0.3 gives the plan of --cpu-eff 0.3, a slower one than the assumed 0.6; one of 1.5 is kept;
# a GPU run slower than its plan at the learned rates teaches the host wait per layer.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
. "$MT_SRCDIR/tests/serve/lib_serve.sh" # need
need jq "JSON in shell tests; apt-get install jq"
make_tmp run-report
m="$tmp/small"

echo "1..61"
"$bin" synth --preset small --seed 3 -o "$m" >/dev/null 2>"$tmp/err" ||
    bail_out "synth --preset small failed: $(cat "$tmp/err")"
cat >"$tmp/cpu.json" <<'JSON'
{"version": 1, "source": "what-if: CPU only", "dram_bytes": 17179869184,
 "cpu": {"cores": 2, "read_gbps": 20, "fma_gflops": 200},
 "disks": [{"path": "/tmp", "best_gbps": 2}]}
JSON
plan() { "$bin" plan -m "$m" --gpu-mem 1G --cpu-reserve 3.9G --ctx 1024 "$@"; }
plan --hw "$tmp/cpu.json" --cpu-mem 8G -o "$tmp/all.json" >/dev/null 2>"$tmp/err" ||
    bail_out "plan failed: $(cat "$tmp/err")"
# DRAM for half of the 192 experts: 96 in DRAM, 96 on NVMe
mem=$(jq '.budgets.always_on_bytes + .budgets.kv_bytes + .budgets.cpu_reserve_bytes +
    96 * .model.expert_bytes' "$tmp/all.json")
plan --hw "$tmp/cpu.json" --cpu-mem "$mem" -o "$tmp/mix.json" >"$tmp/plan.out" 2>"$tmp/err" ||
    bail_out "plan failed: $(cat "$tmp/err")"
jq -e '.prediction.tiers["dram-cpu"].experts == 96 and .prediction.tiers.nvme.experts == 96' \
    "$tmp/mix.json" >/dev/null ||
    bail_out "the plan is not half DRAM, half NVMe: $(cat "$tmp/plan.out")"

ids="5,17,900,33,4242,7,12,99,1000,65000,3,8,21,400,77,2,19,4096,123,88,6,31,250,11,9"
run() { "$bin" run -m "$m" --prompt-ids "$ids" -n 6 --print-ids "$@" 2>"$tmp/err"; }
got=$(run --plan "$tmp/mix.json" --json "$tmp/r.json")
[ $? -eq 0 ] && [ -n "$got" ] &&
    jq -e '.format == "moetier-report" and .version == 1 and .device == "cpu"' "$tmp/r.json" \
        >/dev/null
ok $? "run --plan --json writes a moetier-report ('$got')"
jq -e '[.prefill, .decode][] | (.tokens, .seconds, .tok_s, .forward_s, .moe_s, .moe_wait_s,
        .prompt_flops,
        .cpu_busy, .prefetch.guessed, .stream.hits, .stream.hit_rate, .stream.read_gbps,
        .stream.retries) | numbers' "$tmp/r.json" >/dev/null &&
    jq -e '[.prefill, .decode][] | .tiers | (.gpu, ."dram-cpu", ."dram-pcie", .nvme) |
        (.runs, .pairs, .bytes, .seconds, .experts_per_token, .bytes_per_token, .ms_per_token) |
        numbers' "$tmp/r.json" >/dev/null &&
    jq -e '.prefill.tokens == 25 and .decode.tokens == 5 and .decode.gpu_busy == null and
           .prefill.prompt_flops > 0' "$tmp/r.json" >/dev/null
ok $? "every field is there: tok/s, busy, per tier runs/pairs/bytes/time, stream hits and GB/s"
jq -e '. as $r | [.prefill, .decode] | all(
        ([.tiers[].pairs] | add) == $r.k * $r.moe_layers * .engine_tokens)' "$tmp/r.json" >/dev/null
ok $? "per phase the pairs of all tiers are k x MoE layers x tokens"
jq -e '. as $r | [[.prefill, .decode][] | .tiers[] | .bytes == .runs * $r.expert_bytes] | all' \
    "$tmp/r.json" >/dev/null
ok $? "per tier bytes = runs x expert bytes"
# per token: a tier's (token, expert) pairs, bytes and milliseconds over the tokens the engine ran
jq -e 'def near(a; b): ((a - b) | fabs) <= 1e-6 * ([a, b, 1e-12] | map(fabs) | max);
    [.prefill, .decode] | all(.engine_tokens as $n | $n > 0 and (.tiers | all(
        near(.experts_per_token; .pairs / $n) and near(.bytes_per_token; .bytes / $n) and
        near(.ms_per_token; 1e3 * .seconds / $n))))' "$tmp/r.json" >/dev/null
ok $? "per tier experts, bytes and ms per token are pairs, bytes and 1000 x seconds over tokens"
# the CPU engine computes every tier's experts on its one team, inside the MoE step: the CPU's
# busy fraction is all the tiers' seconds over the forward time, and at most the MoE's share
cpu_busy_ok() {
    jq -e '.device == "cpu" and ([.prefill, .decode] | all(([.tiers[].seconds] | add) as $s |
        $s > 0 and ((.cpu_busy * .forward_s - $s) | fabs) <= 1e-6 * $s and
        .cpu_busy <= (1 + 1e-6) * .moe_s / .forward_s))' "$1" >/dev/null
}
cpu_busy_ok "$tmp/r.json"
ok $? "per phase CPU busy = the tiers' expert seconds / forward seconds: \
$(jq -c '[.prefill.cpu_busy, .decode.cpu_busy]' "$tmp/r.json")"
# the weights a decoded token reads outside routed experts, from the shards' own headers: every
# main-layer and global tensor but the routed experts', with one row of the embedding table
# (model.h token_bytes_always; the MTP layer, after the main ones, is not read)
st_headers() {
    for f in "$1"/*.safetensors; do
        n=$(od -An -tu8 -N8 "$f" | tr -d ' ')
        tail -c +9 "$f" | head -c "$n"
        echo
    done
}
always=$(st_headers "$m" | jq -s --slurpfile c "$m/config.json" '
    [.[] | to_entries[] | select(.key != "__metadata__") |
     {k: .key, b: (.value.data_offsets[1] - .value.data_offsets[0]),
      l: ((.key | capture("^model\\.layers\\.(?<l>[0-9]+)\\.") | .l | tonumber) // -1)} |
     select(.l < $c[0].num_hidden_layers and (.k | test("\\.mlp\\.experts\\.") | not))] as $o |
    ($o | map(select(.k == "model.embed_tokens.weight")) | .[0].b) as $emb |
    ($o | map(.b) | add) - $emb + ($emb / $c[0].vocab_size | floor)')
[ -n "$always" ] && jq -e --argjson w "$always" '.always_on_bytes_per_token == $w' "$tmp/r.json" \
    >/dev/null
ok $? "always-on bytes per token are the shards' non-expert bytes with one embedding row \
($always)"
# each run of a streamed expert acquires it once, counted in the phase it ran in: per phase the
# stream's hits + late hits + misses are the NVMe tier's runs, and its hit rate is the hits and
# late hits (ready or loading when asked for) over those
jq -e '[.prefill, .decode] | all(.stream as $s | .tiers.nvme.runs as $n |
        $n > 0 and $s.hits + $s.late_hits + $s.misses == $n and
        (($s.hit_rate - ($s.hits + $s.late_hits) / $n) | fabs) < 1e-6)' "$tmp/r.json" >/dev/null
ok $? "per phase stream hits + late hits + misses = NVMe runs, hit rate = (hits + late) / runs"
jq -e '.decode.tiers["dram-cpu"].runs > 0 and .decode.tiers.nvme.runs > 0 and
       .decode.tiers.gpu.runs == 0 and .decode.tiers["dram-pcie"].runs == 0 and
       .decode.tiers["dram-cpu"].seconds > 0 and .decode.tiers.nvme.seconds > 0' \
    "$tmp/r.json" >/dev/null
ok $? "decode ran experts from DRAM and from NVMe, and only there"
jq -e --slurpfile p "$tmp/mix.json" '
    def near(a; b): (a - b | fabs) <= 1e-6 * ([a, b, 1e-12] | map(fabs) | max);
    $p[0].prediction as $q | .predicted as $m |
    near($m.decode_tok_s; $q.decode_tok_s) and near($m.prefill_tok_s; $q.prefill_tok_s) and
    $m.bottleneck == $q.bottleneck and
    ([$q.tiers | to_entries[] | .key as $k | .value as $t | $m.tiers[$k] as $u |
      $u.experts == $t.experts and near($u.bytes_per_token; $t.bytes_per_token) and
      near($u.ms_per_token; $t.ms_per_token)] | all) and
    near($m.hardware.dram_gbps; $p[0].hardware.dram_gbps) and
    near($m.hardware.cpu_eff; $p[0].budgets.cpu_eff)' "$tmp/r.json" >/dev/null
ok $? "the predicted numbers are the plan file's"
# and the rest of what the plan file gives: its prefill batch, its hardware (the source and every
# number of it), and per tier the experts a token runs, the bytes over one expert's
jq -e --slurpfile p "$tmp/mix.json" '
    def near(a; b): (a - b | fabs) <= 1e-6 * ([a, b, 1e-12] | map(fabs) | max);
    $p[0] as $q | .predicted as $m |
    $m.prefill_batch == $q.budgets.prefill_batch and
    ([$q.hardware | to_entries[] | .key as $k | select($m.hardware | has($k)) |
      if $k == "source" then $m.hardware.source == .value
      else near($m.hardware[$k]; .value) end] | length > 10 and all) and
    ([$q.prediction.tiers | to_entries[] | $m.tiers[.key].experts_per_token as $e |
      near($e; .value.bytes_per_token / $q.model.expert_bytes)] | all) and
    $m.tiers.nvme.experts_per_token > 0' "$tmp/r.json" >/dev/null
ok $? "the predicted prefill batch, hardware and experts per token are the plan file's: \
$(jq -c '[.predicted.prefill_batch, .predicted.hardware.disk_gbps,
          .predicted.tiers.nvme.experts_per_token]' "$tmp/r.json")"
jq -e 'def near(a; b): (a - b | fabs) <= 1e-6 * ([a, b] | map(fabs) | max);
    near(.ratio.decode_tok_s; .decode.tok_s / .predicted.decode_tok_s) and
    .predicted.prompt_tok_s > 0 and
    near(.ratio.prefill_tok_s; .prefill.tok_s / .predicted.prompt_tok_s) and
    near(.ratio.tiers.nvme.ms_per_token;
         .decode.tiers.nvme.ms_per_token / .predicted.tiers.nvme.ms_per_token) and
    .ratio.tiers.gpu.ms_per_token == null' "$tmp/r.json" >/dev/null
ok $? "ratios are measured over predicted (prefill over the prediction for this prompt)"
grep -q '^mt: report: prefill 25 tokens, .* tok/s (plan .*, ratio .*); decode 5 tokens' \
    "$tmp/err" &&
    grep -q '^mt: report: decode .* plan: experts/tok' "$tmp/err" &&
    grep -q '^mt: report: nvme  *[0-9.]*  *[0-9.]*  *[0-9.]*  *12.00 ' "$tmp/err" &&
    grep -q '^mt: report: streamed experts: cache hits' "$tmp/err"
ok $? "the text report is on stderr: $(grep 'report: prefill' "$tmp/err")"
# the text shows the JSON's numbers, rounded: the first line's tok/s and ratios to the plan, and
# each decode tier row's experts/tok, MB/tok (10^6 bytes), ms/tok and ratio to the plan
top=$(grep '^mt: report: prefill [0-9]* tokens' "$tmp/err" | sed 's/[^0-9. ]//g' |
    awk '{ printf "[%s,%s,%s,%s]", $2, $4, $6, $8 }')
row() { grep "^mt: report: $1 " "$tmp/err" | awk '{ printf "[%s,%s,%s,%s]", $4, $5, $6, $10 }'; }
jq -e --argjson top "${top:-null}" --argjson dram "$(row dram-cpu)" --argjson nvme "$(row nvme)" '
    def near(a; b; d): ((a - b) | fabs) <= d;
    def tier(t; p): near(p[0]; t.experts_per_token; 0.0051) and
        near(p[1]; t.bytes_per_token / 1e6; 0.0051) and near(p[2]; t.ms_per_token; 0.00051);
    near($top[0]; .prefill.tok_s; 0.0051) and near($top[1]; .ratio.prefill_tok_s; 0.0051) and
    near($top[2]; .decode.tok_s; 0.0051) and near($top[3]; .ratio.decode_tok_s; 0.0051) and
    tier(.decode.tiers["dram-cpu"]; $dram) and tier(.decode.tiers.nvme; $nvme) and
    near($dram[3]; .ratio.tiers["dram-cpu"].ms_per_token; 0.0051) and
    near($nvme[3]; .ratio.tiers.nvme.ms_per_token; 0.0051)' "$tmp/r.json" >/dev/null
ok $? "the text report's tok/s, ratios and tier rows are the JSON's: $top $(row nvme)"
# and the phases' seconds are the ones run's own summary line gives (its clock, not the report's)
sum=$(grep '^mt: prefill [0-9]* tokens in ' "$tmp/err" | sed 's/[^0-9. ]//g' |
    awk '{ printf "[%s,%s,%s,%s]", $2, $3, $5, $6 }')
jq -e --argjson s "${sum:-null}" 'def near(a; b; d): ((a - b) | fabs) <= d;
    near($s[0]; .prefill.seconds; 0.00051) and near($s[1]; .prefill.tok_s; 0.0051) and
    near($s[2]; .decode.seconds; 0.00051) and near($s[3]; .decode.tok_s; 0.0051)' \
    "$tmp/r.json" >/dev/null
ok $? "the phases' seconds and tok/s are run's summary line's: $sum"
# the busy line and the streamed experts' line show the main phase's (the decode's) JSON numbers:
# CPU busy, MoE wait, copies and sums, forward seconds; hit rate, acquires, GB/s, MB (10^6
# bytes), stall seconds and retries
nums() { grep "^mt: report: $1" "$tmp/err" | sed 's/[^0-9. ]//g' | awk '{ $1 = $1; print }' |
    tr ' ' ','; }
busy="[$(nums 'busy (of forward time)')]"
strm="[$(nums 'streamed experts')]"
jq -e --argjson b "${busy:-null}" --argjson s "${strm:-null}" '
    def near(a; b; d): ((a - b) | fabs) <= d;
    .decode as $d | $d.stream as $t |
    near($b[0]; $d.cpu_busy; 0.0051) and near($b[1]; $d.moe_wait_s; 0.000051) and
    near($b[2]; $d.moe_host_s; 0.000051) and near($b[3]; $d.forward_s; 0.000051) and
    near($s[0]; $t.hit_rate; 0.0051) and $s[1] == $t.hits + $t.late_hits + $t.misses and
    near($s[2]; $t.read_gbps; 0.0051) and near($s[3]; $t.bytes_read / 1e6; 0.051) and
    near($s[4]; $t.stall_s; 0.00051) and $s[5] == $t.retries' "$tmp/r.json" >/dev/null
ok $? "the text report's busy and streamed-experts lines are the decode's JSON: $busy $strm"
# the plan's FLOPs of one token through one routed expert: gate, up and down, 2 x hidden x width
# each (config.json)
jq -e --slurpfile c "$m/config.json" '.predicted.expert_flops ==
    6 * $c[0].hidden_size * $c[0].moe_intermediate_size' "$tmp/r.json" >/dev/null
ok $? "predicted expert FLOPs are 3 products of 2 x hidden x moe_intermediate_size"
# the whole run's line on the streamed experts (cli_common.c) counts from the load on: the MiB
# read and the seconds waiting for reads are the two phases' together; each phase's GB/s is its
# bytes over its read seconds
line=$(grep '^mt: streamed experts:' "$tmp/err")
mib=$(printf '%s\n' "$line" | sed -n 's/.* read (\([0-9.]*\) MiB .*/\1/p')
wait_s=$(printf '%s\n' "$line" | sed -n 's/.*; \([0-9.]*\) s waiting for reads.*/\1/p')
[ -n "$mib" ] && [ -n "$wait_s" ] &&
    jq -e --argjson mib "$mib" --argjson w "$wait_s" '[.prefill.stream, .decode.stream] as $p |
        ((($p | map(.bytes_read) | add) / 1048576 - $mib) | fabs) <= 0.0501 and
        ((($p | map(.stall_s) | add) - $w) | fabs) <= 0.00051 and
        ($p | all(.read_s > 0 and ((.read_gbps - .bytes_read / .read_s / 1e9) | fabs) <=
                  1e-6 * .read_gbps))' "$tmp/r.json" >/dev/null
ok $? "the phases' stream bytes and stall add up to the run's ($mib MiB, $wait_s s); GB/s per phase"
out=$(run --plan "$tmp/mix.json" --json -)
[ $? -eq 0 ] && [ "$(printf '%s\n' "$out" | head -1)" = "$got" ] &&
    printf '%s\n' "$out" | tail -n +2 | jq -e '.format == "moetier-report"' >/dev/null
ok $? "--json - writes the report to stdout after the tokens"
run --json "$tmp/np.json" --trace "$tmp/t.json" >/dev/null &&
    jq -e '.predicted == null and .ratio == null and .plan == null and
           .decode.tiers["dram-cpu"].runs > 0' "$tmp/np.json" >/dev/null
ok $? "without a plan: measured numbers only"
# nothing streamed there (every expert fits in DRAM): each phase's stream is null, not zeros
jq -e '[.prefill, .decode] | all(.stream == null and .tiers.nvme.runs == 0)' "$tmp/np.json" \
    >/dev/null
ok $? "a run that streamed nothing has no stream numbers: \
$(jq -c '[.prefill.stream, .decode.stream]' "$tmp/np.json")"
# the CPU engine makes no prefetch guesses: a hit rate over none is null, not 0 (nor a NaN)
jq -s -e '[.[] | .prefill, .decode] | all(.prefetch | if .guessed > 0 then
        ((.hit_rate - .hits / .guessed) | fabs) < 1e-6 else .hit_rate == null end)' \
    "$tmp/r.json" "$tmp/np.json" >/dev/null
ok $? "prefetch hit rate: hits over guesses, null without guesses"
# -n 1: the one token comes from the prompt's forward, nothing is decoded; the tier table and
# the tier ratios are the prefill's then (the plan's per-token numbers are compared with it).
# The plan is the mixed one made for prefill steps of 25 tokens, this prompt's length; the model
# is the same with its index_topk set to 4 (for the prompt FLOPs below)
k4="$tmp/k4"
mkdir "$k4" && ln -s "$m"/* "$k4/" && rm "$k4/config.json" &&
    jq '.index_topk = 4' "$m/config.json" >"$k4/config.json" &&
    "$bin" plan -m "$k4" --gpu-mem 1G --cpu-reserve 3.9G --ctx 1024 --hw "$tmp/cpu.json" \
        --cpu-mem "$mem" --prefill-batch 25 -o "$tmp/mix25.json" >/dev/null 2>"$tmp/err" ||
    bail_out "the model with index_topk 4, its plan for 25-token steps: $(cat "$tmp/err")"
"$bin" run -m "$k4" --prompt-ids "$ids" -n 1 --plan "$tmp/mix25.json" --json "$tmp/n1.json" \
    >/dev/null 2>"$tmp/err" &&
    jq -e '.decode.tokens == 0 and .prefill.tokens == 25 and .ratio.decode_tok_s == null and
        ((.ratio.tiers.nvme.ms_per_token - .prefill.tiers.nvme.ms_per_token /
          .predicted.tiers.nvme.ms_per_token) | fabs) <= 1e-6 * .ratio.tiers.nvme.ms_per_token' \
        "$tmp/n1.json" >/dev/null &&
    grep -q '^mt: report: prefill  *experts/tok' "$tmp/err" &&
    grep -q '; decode 0 tokens, 0.00 tok/s$' "$tmp/err"
ok $? "a run that decodes nothing reports and compares its prefill's tiers (no decode ratio)"
# the CPU engine runs a prompt in one step from position 0: the prediction for this prompt is the
# plan's prefill rate (one step of its 25 tokens from position 0), and the ratio is over it
jq -e 'def near(a; b): (a - b | fabs) <= 1e-6 * ([a, b] | map(fabs) | max);
    .predicted.prefill_batch == 25 and .predicted.prefill_tok_s > 0 and
    near(.predicted.prompt_tok_s; .predicted.prefill_tok_s) and
    near(.ratio.prefill_tok_s; .prefill.tok_s / .predicted.prompt_tok_s)' "$tmp/n1.json" \
    >/dev/null
ok $? "a prompt of one prefill step is predicted at the plan's prefill rate: \
$(jq -c '.predicted | [.prompt_tok_s, .prefill_tok_s]' "$tmp/n1.json")"
# a read error in the prefill: one token's prompt on the all-DRAM plan with layer 1's experts
# moved to NVMe (a cache for all k it runs: every one prefetched), the first of them read failing
# once (MT_IO_FAULT): its prefetch fails, its acquire is a miss (or a late hit, where it came
# before the failure), read again: one read error and one retry, counted in the prefill and not
# again in the decode (the stream's counters are the run's less the prefill's), whose hit rate
# over no acquires is null. (A hit rate of exactly 0, a number, is test_cli_common's: a CPU
# run's acquires cannot be all misses without a race.)
jq '.layers |= map(if .layer == 1 then (.tiers |= gsub("C"; "N")) | .prefill = .tiers else .
    end)' "$tmp/all.json" >"$tmp/l1.json" &&
    MT_IO_FAULT='1:*:1' "$bin" run -m "$m" --prompt-ids 5 -n 1 --plan "$tmp/l1.json" \
        --cache 4M --json "$tmp/fault.json" >/dev/null 2>"$tmp/err" &&
    jq -e '.k as $k | .prefill.stream | .hits + .late_hits + .misses == $k and
        ((.hit_rate - (.hits + .late_hits) / $k) | fabs) < 1e-6 and .prefetches == $k and
        .read_errors == 1 and .retries == 1' "$tmp/fault.json" >/dev/null &&
    jq -e '.decode.stream | .hits + .late_hits + .misses + .prefetches == 0 and
        .hit_rate == null and .read_errors == 0 and .retries == 0' "$tmp/fault.json" >/dev/null &&
    grep -q '^mt: report: streamed experts: cache hits [0-9.]* of 8 acquires, .* retries 1$' \
        "$tmp/err"
ok $? "a read error is counted in its phase, not again in the next; no acquires: hit rate null: \
$(jq -c '[.prefill.stream, .decode.stream] | map([.misses, .read_errors, .retries, .hit_rate])' \
    "$tmp/fault.json" 2>&1)"
# prompt FLOPs (planner.h mt_plan_gpu_prompt_flops): per row 2 x the non-expert weights, per
# layer and key the attention's 2 x heads x (2 x kv_lora_rank + rope dims) and the indexer's
# 2 x heads x head dim, and lm_head's 2 x vocab x hidden once a forward. A row at position p
# attends to min(p + 1, index_topk) keys and its indexer scores p + 1: with index_topk 4 the two
# sums of the 25-token prompt above differ. The weights are what the one-token prompt's FLOPs
# leave (the same weights); the 25-token prompt's must then be the formula's with them
jq -e --slurpfile c "$k4/config.json" --slurpfile one "$tmp/fault.json" '$c[0] as $c |
    def keys(n): [range(n) | [. + 1, ([. + 1, $c.index_topk] | min)]] |
        {index: (map(.[0]) | add), attn: (map(.[1]) | add)};
    def near(a; b): ((a - b) | fabs) <= 1e-7 * ([a, b] | map(fabs) | max);
    (2 * $c.num_attention_heads * (2 * $c.kv_lora_rank + $c.qk_rope_head_dim)) as $a |
    (2 * $c.index_n_heads * $c.index_head_dim) as $i | $c.num_hidden_layers as $L |
    (2 * $c.vocab_size * $c.hidden_size) as $head |
    def keyflops(k): $L * ($a * k.attn + $i * k.index);
    $one[0].prefill as $o | .prefill.engine_tokens as $n | keys($n) as $pk |
    $pk.attn != $pk.index and .prefill.forwards == 1 and $o.forwards == 1 and
    $o.engine_tokens == 1 and ($o.prompt_flops - keyflops(keys(1)) - $head) as $row |
    $row > 0 and near(.prefill.prompt_flops; $n * $row + keyflops($pk) + $head)' \
    "$tmp/n1.json" >/dev/null
ok $? "prompt FLOPs: weights per row, attention and indexer per key, lm_head per forward: \
$(jq -c '[.prefill.prompt_flops]' "$tmp/n1.json" "$tmp/fault.json" | tr -d '\n')"

# learning: a report that measured the CPU's experts at 0.3 of the DRAM rate in a run that
# streamed nothing, and the mixed run's report (its CPU time includes waits for the disk: it
# teaches the disk's efficiency only)
cp "$tmp/cpu.json" "$tmp/learn.json"
jq '.decode.tiers["dram-cpu"].bytes = 6e9 | .decode.tiers["dram-cpu"].seconds = 1 |
    .prefill.stream.bytes_read = 0 | .decode.stream.bytes_read = 0' \
    "$tmp/r.json" >"$tmp/r3.json"
"$bin" plan -m "$m" --hw "$tmp/learn.json" --learn "$tmp/r3.json" --learn "$tmp/r.json" \
    >"$tmp/learn.out" 2>&1 &&
    jq -e '.learned.reports == 2 and (.learned.cpu_expert_eff - 0.3 | fabs) < 1e-6 and
           .learned.disk_eff > 0 and .learned.gpu_eff == 0' "$tmp/learn.json" >/dev/null
ok $? "plan --learn writes the measured efficiencies into the profile: \
$(grep 'CPU expert' "$tmp/learn.out")"
plan --hw "$tmp/learn.json" --cpu-mem "$mem" -o "$tmp/learned.json" >"$tmp/l.out" 2>&1 &&
    plan --hw "$tmp/cpu.json" --cpu-mem "$mem" --cpu-eff 0.3 -o "$tmp/eff3.json" >/dev/null 2>&1 &&
    grep -q 'CPU eff    : 0.300 (learned: 2 run reports)' "$tmp/l.out" &&
    jq -e --slurpfile a "$tmp/eff3.json" --slurpfile b "$tmp/mix.json" '
        .budgets.cpu_eff == $a[0].budgets.cpu_eff and
        .prediction.tiers["dram-cpu"].ms_per_token as $t |
        $t == $a[0].prediction.tiers["dram-cpu"].ms_per_token and
        $t > $b[0].prediction.tiers["dram-cpu"].ms_per_token and
        .prediction.decode_tok_s < $b[0].prediction.decode_tok_s' "$tmp/learned.json" >/dev/null
ok $? "the next plan uses it: CPU eff 0.3 (learned), slower CPU experts and decode than at 0.6"
# a CPU-only profile needs no --gpu-mem: --cpu-mem (or -o) asks for the plan after learning
cp "$tmp/cpu.json" "$tmp/learn2.json"
"$bin" plan -m "$m" --hw "$tmp/learn2.json" --learn "$tmp/r3.json" --cpu-mem "$mem" \
    --cpu-reserve 3.9G --ctx 1024 -o "$tmp/learned2.json" >"$tmp/l2.out" 2>&1 &&
    jq -e '.learned.cpu_expert_eff == 0.3' "$tmp/learn2.json" >/dev/null &&
    jq -e '.budgets.cpu_eff == 0.3' "$tmp/learned2.json" >/dev/null
ok $? "--learn with --cpu-mem and -o alone learns, then writes the plan: $(tail -1 "$tmp/l2.out")"
# -o alone asks for the plan too (with the profile's default budgets), not only the profile
cp "$tmp/cpu.json" "$tmp/learn2o.json"
"$bin" plan -m "$m" --hw "$tmp/learn2o.json" --learn "$tmp/r3.json" --cpu-reserve 3.9G \
    --ctx 1024 -o "$tmp/learned2o.json" >"$tmp/l2o.out" 2>&1 &&
    jq -e '.budgets.cpu_eff == 0.3' "$tmp/learned2o.json" >/dev/null
ok $? "--learn with -o and no budget writes the plan: $(tail -1 "$tmp/l2o.out")"
# the profile names the last report it learned from (of --learn r3.json --learn r.json)
jq -e --arg r "$tmp/r.json" '.learned.from == $r' "$tmp/learn.json" >/dev/null
ok $? "the learned section is from the last report: $(jq -c '.learned.from' "$tmp/learn.json")"
# an efficiency above 1 (the kernels beat the profile's quick ceiling) is kept, not capped at 1
cp "$tmp/cpu.json" "$tmp/learn3.json"
jq '.decode.tiers["dram-cpu"].bytes = 30e9' "$tmp/r3.json" >"$tmp/r4.json"
"$bin" plan -m "$m" --hw "$tmp/learn3.json" --learn "$tmp/r4.json" >"$tmp/l3.out" 2>&1 &&
    jq -e '(.learned.cpu_expert_eff - 1.5 | fabs) < 1e-6' "$tmp/learn3.json" >/dev/null &&
    plan --hw "$tmp/learn3.json" --cpu-mem "$mem" -o "$tmp/learned3.json" >/dev/null 2>&1 &&
    jq -e '.budgets.cpu_eff == 1.5' "$tmp/learned3.json" >/dev/null
ok $? "a CPU efficiency of 1.5 over the profile's ceiling is learned as 1.5 and planned with"
# numbers each in range whose ratio is not: 1e-300 s for the CPU's bytes was a rate printed in
# 300 digits and learned as the capped 2.0; refused naming the field, the profile unchanged
cp "$tmp/cpu.json" "$tmp/learn6.json"
jq '.decode.tiers["dram-cpu"].seconds = 1e-300' "$tmp/r3.json" >"$tmp/r6.json"
"$bin" plan -m "$m" --hw "$tmp/learn6.json" --learn "$tmp/r6.json" >"$tmp/l6.out" 2>&1
[ $? -eq 1 ] && grep -q "'decode.tiers.dram-cpu.seconds' is 1e-300 s for 6e+09 bytes" \
    "$tmp/l6.out" && cmp -s "$tmp/cpu.json" "$tmp/learn6.json" &&
    [ "$(wc -c <"$tmp/l6.out")" -lt 600 ]
ok $? "a report's read of 6 GB in 1e-300 s is refused: $(tail -1 "$tmp/l6.out")"
# and a report teaching an efficiency the profile could not load again (below 1e-6)
jq '.decode.tiers["dram-cpu"].bytes = 1 | .decode.tiers["dram-cpu"].seconds = 1e6' \
    "$tmp/r3.json" >"$tmp/r7.json"
"$bin" plan -m "$m" --hw "$tmp/learn6.json" --learn "$tmp/r7.json" >"$tmp/l7.out" 2>&1
[ $? -eq 1 ] && grep -q "taught an efficiency of .*, below the 1e-06 a profile holds" \
    "$tmp/l7.out" && cmp -s "$tmp/cpu.json" "$tmp/learn6.json"
ok $? "an efficiency below the profile's floor is refused: $(tail -1 "$tmp/l7.out")"
# the bounds themselves are in range: k 65536, and 6 GB read in 61 us, 0.99e5 GB/s (faster than
# any tier reads, but under the bound: learned, as the capped efficiency 2, not refused)
jq '.k = 65536 | .decode.tiers["dram-cpu"].seconds = 6e9 / 0.99e14' "$tmp/r3.json" >"$tmp/r8.json"
cp "$tmp/cpu.json" "$tmp/learn8.json"
"$bin" plan -m "$m" --hw "$tmp/learn8.json" --learn "$tmp/r8.json" >"$tmp/l8.out" 2>&1 &&
    jq -e '.learned.cpu_expert_eff == 2' "$tmp/learn8.json" >/dev/null
ok $? "a report at the bounds (k 65536, a read at 0.99e5 GB/s) is learned from: \
$(grep 'CPU expert' "$tmp/l8.out")"
# reports of plans made at different DRAM rates (--dram-from: the minute's ceiling): the
# efficiency is their bytes over what their plans' rates read in the same time, 0.3 of one rate
# and 0.1 of twice that: 10 GB over 1 s x r + 1 s x 2r = 1/6 (not a ratio to one report's rate)
cp "$tmp/cpu.json" "$tmp/learn5.json"
jq '.predicted.hardware.dram_gbps as $r | .predicted.hardware.dram_gbps = 2 * $r |
    .decode.tiers["dram-cpu"].bytes = 4e9 * $r / 20' "$tmp/r3.json" >"$tmp/r5.json"
"$bin" plan -m "$m" --hw "$tmp/learn5.json" --learn "$tmp/r3.json" --learn "$tmp/r5.json" \
    >"$tmp/l5.out" 2>&1 &&
    jq -e '(.learned.cpu_expert_eff - 1 / 6 | fabs) < 1e-6' "$tmp/learn5.json" >/dev/null
ok $? "reports of plans at different DRAM rates: one efficiency over both rates: \
$(grep 'CPU, all' "$tmp/l5.out")"
# the CPU's prefill runs: a profile that measured them (cpu.expert_prefill_*) and a report whose
# prefill dram-cpu runs took twice what that model gives them -> cpu_prefill_eff 0.5, and the next
# plan predicts a slower prefill
jq '.cpu.expert_prefill_gbps = 10 | .cpu.expert_prefill_gflops = 100' "$tmp/cpu.json" \
    >"$tmp/pre.json"
jq '.predicted.hardware.cpu_prefill_gbps = 10 | .predicted.hardware.cpu_prefill_gflops = 100 |
    .prefill.stream.bytes_read = 0 | .decode.stream.bytes_read = 0 |
    .predicted.expert_flops as $f | .prefill.tiers["dram-cpu"] as $c |
    .prefill.tiers["dram-cpu"].seconds = 2 * ($c.bytes / 10e9 + $c.pairs * $f / 100e9)' \
    "$tmp/r.json" >"$tmp/rp.json"
cp "$tmp/pre.json" "$tmp/learnp.json"
plan --hw "$tmp/pre.json" --cpu-mem "$mem" -o "$tmp/pre-plan.json" >/dev/null 2>&1 &&
    jq -e '.prefill.tiers["dram-cpu"].pairs > 0 and .predicted.expert_flops > 0' "$tmp/rp.json" \
        >/dev/null &&
    "$bin" plan -m "$m" --hw "$tmp/learnp.json" --learn "$tmp/rp.json" >"$tmp/lp.out" 2>&1 &&
    jq -e '(.learned.cpu_prefill_eff - 0.5 | fabs) < 1e-6' "$tmp/learnp.json" >/dev/null &&
    plan --hw "$tmp/learnp.json" --cpu-mem "$mem" -o "$tmp/pre-learned.json" >"$tmp/lp2.out" 2>&1 &&
    grep -q 'CPU prefill: .* x 0.500 (learned)' "$tmp/lp2.out" &&
    jq -e --slurpfile a "$tmp/pre-plan.json" '.hardware.cpu_prefill_eff == 0.5 and
        .prediction.prefill_tok_s < $a[0].prediction.prefill_tok_s' "$tmp/pre-learned.json" \
        >/dev/null
ok $? "the CPU's prefill runs at half the profile's model are learned as 0.5 and planned with: \
$(grep 'CPU prefill runs, all' "$tmp/lp.out")"
# ... but not from a run that also streamed: the CPU's prefill time then includes its waits
# for the disk, which say nothing of its kernels
jq '.prefill.stream.bytes_read = 1e9 | .prefill.stream.read_s = 1' "$tmp/rp.json" >"$tmp/rps.json"
cp "$tmp/pre.json" "$tmp/learnps.json"
"$bin" plan -m "$m" --hw "$tmp/learnps.json" --learn "$tmp/rps.json" >"$tmp/lps.out" 2>&1 &&
    jq -e '(.learned.cpu_prefill_eff // 0) == 0 and .learned.disk_eff > 0' "$tmp/learnps.json" \
        >/dev/null
ok $? "a run that streamed teaches no CPU prefill efficiency: \
$(grep -c 'CPU prefill' "$tmp/lps.out") lines of it"
# the host wait: a GPU run of a plan with half the experts in DRAM, its decode 2 ms per waiting
# layer slower than the plan predicted at the rates it measured -> host_layer_ms 2, and the next
# plan predicts with it
cat >"$tmp/gpu.json" <<'JSON'
{"version": 1, "source": "what-if: GPU", "dram_bytes": 17179869184,
 "gpu": {"mem_bytes": 8589934592, "hbm_read_gbps": 1000, "bf16_tflops": 100},
 "cpu": {"cores": 2, "read_gbps": 20, "fma_gflops": 200},
 "disks": [{"path": "/tmp", "best_gbps": 2}]}
JSON
gplan() { "$bin" plan -m "$m" --hw "$1" --gpu-mem "$gmem" --gpu-reserve 0 --cpu-mem 8G \
    --cpu-reserve 3.9G --ctx 1024 -o "$2"; }
# a GPU plan's always-on bytes (the embedding table stays in host memory), then room for 96
gmem=$(jq '.budgets.always_on_bytes + .budgets.kv_bytes + 96 * .model.expert_bytes' \
    "$tmp/all.json")
gplan "$tmp/gpu.json" "$tmp/g0.json" >/dev/null 2>"$tmp/err" ||
    bail_out "GPU plan failed: $(cat "$tmp/err")"
gmem=$(jq '.budgets.always_on_bytes + .budgets.kv_bytes + 96 * .model.expert_bytes' \
    "$tmp/g0.json")
gplan "$tmp/gpu.json" "$tmp/g.json" >/dev/null 2>"$tmp/err" ||
    bail_out "GPU plan failed: $(cat "$tmp/err")"
# the CPU engine runs a GPU plan's experts on its team too, GPU-tier ones included (here every
# expert, so the team's time is charged to the GPU tier alone): they count as CPU busy
gmem96=$gmem
gmem=$(jq '.budgets.always_on_bytes + .budgets.kv_bytes + 192 * .model.expert_bytes' \
    "$tmp/g0.json")
gplan "$tmp/gpu.json" "$tmp/gall.json" >/dev/null 2>"$tmp/err" &&
    "$bin" run -m "$m" --device cpu --prompt-ids "$ids" -n 6 --plan "$tmp/gall.json" \
        --json "$tmp/rcg.json" >/dev/null 2>"$tmp/err" &&
    jq -e '.decode.tiers.gpu.seconds > 0 and .decode.tiers["dram-cpu"].runs == 0' "$tmp/rcg.json" \
        >/dev/null && cpu_busy_ok "$tmp/rcg.json"
ok $? "a GPU plan on the CPU engine: CPU busy counts its GPU-tier experts' seconds"
gmem=$gmem96
tok=$(jq '1 / (.prediction.decode_ms / 1e3 + 2e-3 * .prediction.host_layers_per_token)' \
    "$tmp/g.json")
jq --arg p "$tmp/g.json" --argjson tok "$tok" '.device = "gpu" | .plan = $p |
    .decode.tok_s = $tok | .decode.forward_s = 0 | .decode.cpu_busy = 0.1 | .decode.forwards = 64 |
    .decode.tiers["dram-cpu"].bytes = 12e9 |
    .decode.tiers["dram-cpu"].seconds = 1 | .prefill.stream.bytes_read = 0 |
    .decode.stream.bytes_read = 0' "$tmp/r.json" >"$tmp/rg.json"
cp "$tmp/gpu.json" "$tmp/learng.json"
"$bin" plan -m "$m" --hw "$tmp/learng.json" --learn "$tmp/rg.json" >"$tmp/lg.out" 2>&1 &&
    jq -e '(.learned.host_layer_ms - 2 | fabs) < 1e-3' "$tmp/learng.json" >/dev/null &&
    jq -e '.prediction.host_layers_per_token > 0.5' "$tmp/g.json" >/dev/null &&
    gplan "$tmp/learng.json" "$tmp/g2.json" >"$tmp/g2.out" 2>&1 &&
    grep -q 'host wait  : 2.000 ms' "$tmp/g2.out" &&
    jq -e --slurpfile a "$tmp/g.json" '((.hardware.host_layer_ms - 2 | fabs) < 1e-3) and
        .prediction.decode_tok_s < $a[0].prediction.decode_tok_s' "$tmp/g2.json" >/dev/null
ok $? "plan --learn learns the host wait per layer, the next plan charges it: \
$(grep 'host wait, all' "$tmp/lg.out")"
# a GPU run faster than its plan at the learned rates leaves no wait to explain: 0, not below
tokf=$(jq '2 / (.prediction.decode_ms / 1e3)' "$tmp/g.json")
jq --argjson tok "$tokf" '.decode.tok_s = $tok' "$tmp/rg.json" >"$tmp/rgf.json"
cp "$tmp/gpu.json" "$tmp/learngf.json"
"$bin" plan -m "$m" --hw "$tmp/learngf.json" --learn "$tmp/rgf.json" >"$tmp/lgf.out" 2>&1 &&
    grep -q 'host wait, all: 0.000 ms' "$tmp/lgf.out" &&
    jq -e '.learned.host_layer_ms == 0 and .learned.cpu_expert_eff > 0' "$tmp/learngf.json" \
        >/dev/null
ok $? "a GPU run faster than its plan teaches a host wait of 0: \
$(grep 'host wait, all' "$tmp/lgf.out")"
# the host wait is what the plan does not explain at the rates just learned: the same run with
# its CPU experts at 0.3 (not the plan's 0.6) has more of its time explained by them, so less
# than the 2 ms a waiting layer that the plan's rate leaves
jq '.decode.tiers["dram-cpu"].bytes = 6e9' "$tmp/rg.json" >"$tmp/rgs3.json"
cp "$tmp/gpu.json" "$tmp/learngs3.json"
"$bin" plan -m "$m" --hw "$tmp/learngs3.json" --learn "$tmp/rgs3.json" >"$tmp/lgs3.out" 2>&1 &&
    jq -e '(.learned.cpu_expert_eff - 0.3 | fabs) < 1e-6 and .learned.host_layer_ms < 1.99' \
        "$tmp/learngs3.json" >/dev/null
ok $? "a slower learned CPU leaves less host wait than 2 ms: \
$(grep 'host wait, all' "$tmp/lgs3.out")"
# the same run with its CPU experts busy for most of the forward teaches no wait: there the
# residual is the CPU's own rate
jq '.decode.cpu_busy = 0.8' "$tmp/rg.json" >"$tmp/rgb.json"
cp "$tmp/gpu.json" "$tmp/learngb.json"
"$bin" plan -m "$m" --hw "$tmp/learngb.json" --learn "$tmp/rgb.json" >/dev/null 2>&1 &&
    jq -e '.learned.host_layer_ms == 0 and .learned.cpu_expert_eff > 0' "$tmp/learngb.json" \
        >/dev/null
ok $? "a run whose CPU experts were busy most of the forward teaches no host wait"
# the GPU efficiency: its weight bytes over the forward less the host's waits, from a run the GPU
# limited (450 GB in 0.9 s of a 1000 GB/s HBM: 0.5); never from one whose CPU experts were busy
# for most of the forward (their waits partly hide behind the device launches)
jq '.decode.forward_s = 1 | .decode.moe_wait_s = 0.1 | .decode.cpu_busy = 0.1 |
    .decode.tiers.gpu.bytes = 450e9 | .always_on_bytes_per_token = 0 |
    .predicted.hardware.hbm_gbps = 1000' "$tmp/rg.json" >"$tmp/rgg.json"
jq '.decode.cpu_busy = 0.8' "$tmp/rgg.json" >"$tmp/rgc.json"
cp "$tmp/gpu.json" "$tmp/learngg.json"
cp "$tmp/gpu.json" "$tmp/learngc.json"
"$bin" plan -m "$m" --hw "$tmp/learngg.json" --learn "$tmp/rgg.json" >"$tmp/lgg.out" 2>&1 &&
    jq -e '(.learned.gpu_eff - 0.5 | fabs) < 1e-6' "$tmp/learngg.json" >/dev/null &&
    "$bin" plan -m "$m" --hw "$tmp/learngc.json" --learn "$tmp/rgc.json" >/dev/null 2>&1 &&
    jq -e '.learned.gpu_eff == 0' "$tmp/learngc.json" >/dev/null
ok $? "the GPU efficiency is learned from a GPU-limited run only: \
$(grep 'GPU weight' "$tmp/lgg.out")"
# nor from a decode of a few tokens (the GPU engine's first steps record CUDA graphs): neither the
# efficiency nor the host wait
jq '.decode.forwards = 5' "$tmp/rgg.json" >"$tmp/rgs.json"
cp "$tmp/gpu.json" "$tmp/learngs.json"
"$bin" plan -m "$m" --hw "$tmp/learngs.json" --learn "$tmp/rgs.json" >"$tmp/lgs.out" 2>&1 &&
    jq -e '.learned.gpu_eff == 0 and .learned.host_layer_ms == 0' "$tmp/learngs.json" >/dev/null &&
    grep -q "nothing of the GPU from .*rgs.json: 5 decoded tokens, fewer than 16" "$tmp/lgs.out"
ok $? "nor from a decode of 5 tokens: $(grep 'nothing of the GPU' "$tmp/lgs.out" | cut -c1-60)"
# at the bounds: 15 decoded tokens teach nothing of the GPU and 16 do; so does a forward the
# host waited 0.25 of (450 GB in the 0.75 s left: 0.6) and one whose CPU experts were busy 0.25
# of it, but not 0.3 of waits or of CPU busy
rc=0
for edit in '.decode.forwards = 15|0' '.decode.forwards = 16|0.5' \
    '.decode.moe_wait_s = 0.25|0.6' '.decode.moe_wait_s = 0.3|0' \
    '.decode.cpu_busy = 0.25|0.5' '.decode.cpu_busy = 0.3|0'; do
    jq "${edit%|*}" "$tmp/rgg.json" >"$tmp/rgb2.json"
    cp "$tmp/gpu.json" "$tmp/learngb2.json"
    "$bin" plan -m "$m" --hw "$tmp/learngb2.json" --learn "$tmp/rgb2.json" >/dev/null 2>&1 &&
        jq -e --argjson e "${edit#*|}" '(.learned.gpu_eff - $e | fabs) < 1e-6' \
            "$tmp/learngb2.json" >/dev/null || {
        echo "# $edit: gpu_eff $(jq '.learned.gpu_eff' "$tmp/learngb2.json")"
        rc=1
    }
done
[ $rc -eq 0 ]
ok $? "a GPU-limited decode at the bounds (16 tokens, 0.25 waited, 0.25 CPU busy) teaches HBM"
# the GPU's prompt efficiency: a prompt with every expert on the GPU whose 1e13 FLOPs outside
# routed experts (3 products each at the profile's 100 TFLOPS: 0.3 s at efficiency 1) took 1.2 s
# teaches 0.25, and the next plan predicts prefill with it; a prompt with experts in DRAM does not
jq '.prefill.prompt_flops = 1e13 | .prefill.forward_s = 1.2 | .prefill.forwards = 1 |
    .prefill.tiers.gpu.pairs = 0 | .prefill.tiers.gpu.bytes = 0 |
    .prefill.tiers["dram-cpu"].bytes = 0 | .prefill.tiers["dram-pcie"].bytes = 0 |
    .prefill.tiers.nvme.bytes = 0 | .always_on_bytes_per_token = 1e6 |
    .predicted.hardware.gpu_tflops = 100 | .predicted.hardware.gpu_prefill_eff = 0.5 |
    .predicted.hardware.hbm_gbps = 1000' "$tmp/rg.json" >"$tmp/rgpre.json"
jq '.prefill.tiers["dram-cpu"].bytes = 1e9' "$tmp/rgpre.json" >"$tmp/rgpre2.json"
cp "$tmp/gpu.json" "$tmp/learngpre.json"
cp "$tmp/gpu.json" "$tmp/learngpre2.json"
"$bin" plan -m "$m" --hw "$tmp/learngpre.json" --learn "$tmp/rgpre.json" >"$tmp/lgpre.out" 2>&1 &&
    jq -e '(.learned.gpu_prefill_eff - 0.25 | fabs) < 1e-6' "$tmp/learngpre.json" >/dev/null &&
    "$bin" plan -m "$m" --hw "$tmp/learngpre2.json" --learn "$tmp/rgpre2.json" >/dev/null 2>&1 &&
    jq -e '(.learned.gpu_prefill_eff // 0) == 0' "$tmp/learngpre2.json" >/dev/null &&
    gplan "$tmp/learngpre.json" "$tmp/gpre.json" >"$tmp/gpre.out" 2>&1 &&
    grep -q 'GPU prefill: .* x 0.250 (learned)' "$tmp/gpre.out" &&
    jq -e --slurpfile a "$tmp/g.json" '.hardware.gpu_prefill_eff == 0.25 and
        $a[0].hardware.gpu_prefill_eff == 0.5 and
        .prediction.prefill_tok_s < $a[0].prediction.prefill_tok_s' "$tmp/gpre.json" >/dev/null
ok $? "a prompt with every expert on the GPU teaches the GPU's prompt efficiency, one with DRAM \
experts does not: $(grep 'GPU prefill' "$tmp/lgpre.out" | head -1)"
# nor does the same prompt run by the CPU engine: its time is the CPU's, not the GPU's products
jq '.device = "cpu"' "$tmp/rgpre.json" >"$tmp/rgpre3.json"
cp "$tmp/gpu.json" "$tmp/learngpre3.json"
"$bin" plan -m "$m" --hw "$tmp/learngpre3.json" --learn "$tmp/rgpre3.json" \
    >"$tmp/lgpre3.out" 2>&1 &&
    jq -e '(.learned.gpu_prefill_eff // 0) == 0' "$tmp/learngpre3.json" >/dev/null
ok $? "a CPU run's prompt teaches no GPU prompt efficiency: \
$(grep -c 'GPU prefill' "$tmp/lgpre3.out") lines of it"
# nor from one whose DRAM experts were copied into GPU slots: its time is the PCIe's (neither the
# GPU efficiency nor the host wait)
jq '.decode.tiers["dram-pcie"].bytes = 30e9' "$tmp/rgg.json" >"$tmp/rgp.json"
cp "$tmp/gpu.json" "$tmp/learngp.json"
# the CPU's is learned as it ran: the planner charges the copies to the DRAM bus, not to the
# CPU's kernels (6 GB in 1 s of a 60 GB/s profile: 0.1)
jq '.decode.tiers["dram-cpu"].bytes = 6e9 | .decode.tiers["dram-cpu"].seconds = 1 |
    .predicted.hardware.dram_gbps = 60' "$tmp/rgp.json" >"$tmp/rgp2.json"
"$bin" plan -m "$m" --hw "$tmp/learngp.json" --learn "$tmp/rgp2.json" >"$tmp/lgp.out" 2>&1 &&
    jq -e '.learned.gpu_eff == 0 and .learned.host_layer_ms == 0 and
           (.learned.cpu_expert_eff - 0.1 | fabs) < 1e-6' "$tmp/learngp.json" >/dev/null &&
    ! grep -q "underrate" "$tmp/lgp.out"
ok $? "a run with slot copies over PCIe teaches the CPU efficiency, neither the GPU's nor the \
host wait: $(grep 'CPU, all' "$tmp/lgp.out")"
# where the CPU's and the copies' bytes came faster than the profile's DRAM rate (36 GB in 1 s
# against 20 GB/s), the profile underrates the host: learned, with a warning
jq '.predicted.hardware.dram_gbps = 20' "$tmp/rgp2.json" >"$tmp/rgp3.json"
cp "$tmp/gpu.json" "$tmp/learngp3.json"
"$bin" plan -m "$m" --hw "$tmp/learngp3.json" --learn "$tmp/rgp3.json" >/dev/null 2>"$tmp/err" &&
    grep -q "copies into GPU slots beside them read 36.0 GB/s of DRAM, more than the profile's 20.0" \
        "$tmp/err" &&
    jq -e '(.learned.cpu_expert_eff - 0.3 | fabs) < 1e-6' "$tmp/learngp3.json" >/dev/null
ok $? "a profile slower than the bus a run measured is named: $(head -c 150 "$tmp/err")"
jq '.plan = "'"$tmp"'/moved.json"' "$tmp/rg.json" >"$tmp/rg2.json"
cp "$tmp/gpu.json" "$tmp/learng2.json"
"$bin" plan -m "$m" --hw "$tmp/learng2.json" --learn "$tmp/rg2.json" >/dev/null 2>"$tmp/err" &&
    grep -q "host wait is not learned from it" "$tmp/err" &&
    jq -e '.learned.host_layer_ms == 0 and .learned.cpu_expert_eff > 0' "$tmp/learng2.json" \
        >/dev/null
ok $? "a report whose plan file is gone still teaches the efficiencies, not the wait: \
$(grep -m1 'host wait is not learned' "$tmp/err" | head -c 120)"
plan --hw "$tmp/learn.json" --cpu-mem "$mem" --cpu-eff 0.5 >"$tmp/l.out" 2>&1 &&
    grep -q 'CPU eff    : 0.500 (--cpu-eff)' "$tmp/l.out"
ok $? "--cpu-eff still wins over what was learned"
"$bin" plan -m "$m" --hw "$tmp/learn.json" --learn "$tmp/np.json" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "without --plan" "$tmp/err"
ok $? "a report of a run without a plan cannot teach: $(head -1 "$tmp/err")"
# a report that streamed no bytes measured no disk, even with read time (and here nothing else
# the planner models): refused, the profile unchanged, not a disk efficiency of 0 saved
jq '.prefill.stream.bytes_read = 0 | .decode.stream.bytes_read = 0 | .decode.stream.read_s = 1 |
    .prefill.tiers["dram-cpu"].bytes = 0 | .decode.tiers["dram-cpu"].bytes = 0' "$tmp/r.json" \
    >"$tmp/rnd.json"
cp "$tmp/cpu.json" "$tmp/learnnd.json"
"$bin" plan -m "$m" --hw "$tmp/learnnd.json" --learn "$tmp/rnd.json" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "measured no tier the planner models" "$tmp/err" &&
    cmp -s "$tmp/cpu.json" "$tmp/learnnd.json"
ok $? "a report with read time but no streamed bytes teaches no disk: $(head -n 1 "$tmp/err")"
# a malformed report (a field of the wrong type, out of range, or an unknown device) is refused
# whole: exit 1, one message naming the field and the file, nothing learned, the profile's bytes
# unchanged (each of these was learned from and saved, 2026-12 audit)
cp "$tmp/cpu.json" "$tmp/learnbad.json"
rc=0
n_bad=0
while IFS='|' read -r edit field; do
    n_bad=$((n_bad + 1))
    jq "$edit" "$tmp/r3.json" >"$tmp/bad$n_bad.json" || rc=1
    "$bin" plan -m "$m" --hw "$tmp/learnbad.json" --learn "$tmp/bad$n_bad.json" \
        >"$tmp/bad.out" 2>"$tmp/err"
    if [ $? -ne 1 ] || ! grep -q "run report '$tmp/bad$n_bad.json': field '$field'" "$tmp/err" ||
        grep -q "^learned" "$tmp/bad.out" || ! cmp -s "$tmp/cpu.json" "$tmp/learnbad.json"; then
        echo "# $edit: $(cat "$tmp/err")"
        rc=1
    fi
done <<'EDITS'
.decode.tiers = "x"|decode.tiers
.decode.tiers = null|decode.tiers
.decode.cpu_busy = "x"|decode.cpu_busy
.decode.tiers["dram-cpu"].bytes = -100|decode.tiers.dram-cpu.bytes
.decode.tiers["dram-cpu"].bytes = 1e18|decode.tiers.dram-cpu.bytes
.decode.tiers["dram-cpu"].seconds = -1|decode.tiers.dram-cpu.seconds
.device = "tpu"|device
.expert_bytes = 0|expert_bytes
.moe_layers = 0|moe_layers
.decode.forward_s = -1|decode.forward_s
.decode.tokens = 4611686018427387904|decode.tokens
.decode.forwards = 2.5|decode.forwards
.plan = 5|plan
.predicted.hardware.dram_gbps = "fast"|predicted.hardware.dram_gbps
.prefill.stream = 3|prefill.stream
del(.decode)|decode
EDITS
[ $rc -eq 0 ] && [ $n_bad -eq 16 ]
ok $? "$n_bad malformed reports are refused, naming the field, the profile untouched: \
$(cat "$tmp/err")"
# a bad report among good ones refuses them all before any is learned from
"$bin" plan -m "$m" --hw "$tmp/learnbad.json" --learn "$tmp/r3.json" --learn "$tmp/bad1.json" \
    >"$tmp/bad.out" 2>"$tmp/err"
[ $? -eq 1 ] && ! grep -q "^learned" "$tmp/bad.out" && cmp -s "$tmp/cpu.json" "$tmp/learnbad.json"
ok $? "a bad report after a good one: nothing learned, nothing written: $(cat "$tmp/err")"
# --disk-from: the disk of the minute plans this plan only; --learn saves the profile without it
cat >"$tmp/disk.json" <<'JSON'
{"version": 1, "source": "bench --only disk", "disks": [{"path": "/tmp", "best_gbps": 0.5}]}
JSON
cp "$tmp/cpu.json" "$tmp/learnd.json"
"$bin" plan -m "$m" --hw "$tmp/learnd.json" --learn "$tmp/r3.json" --disk-from "$tmp/disk.json" \
    --cpu-mem "$mem" --cpu-reserve 3.9G --ctx 1024 -o "$tmp/d.json" >"$tmp/d.out" 2>&1 &&
    jq -e '.disks[0].best_gbps == 2 and .learned.reports == 1' "$tmp/learnd.json" >/dev/null &&
    jq -e --slurpfile a "$tmp/learned2.json" '.prediction.decode_tok_s <
        $a[0].prediction.decode_tok_s' "$tmp/d.json" >/dev/null
ok $? "--disk-from plans with that disk (slower) and --learn does not save it into --hw: \
$(jq -c '.disks' "$tmp/learnd.json")"
# --dram-from: the DRAM ceiling of the minute plans this plan only (half the rate: the CPU
# experts take twice as long); --learn saves the profile without it
cat >"$tmp/dram.json" <<'JSON'
{"version": 1, "source": "bench --only dram", "cpu": {"cores": 2, "read_gbps": 10,
 "read_ceiling_gbps": 10}}
JSON
cp "$tmp/cpu.json" "$tmp/learnm.json"
"$bin" plan -m "$m" --hw "$tmp/learnm.json" --learn "$tmp/r3.json" --dram-from "$tmp/dram.json" \
    --cpu-mem "$mem" --cpu-reserve 3.9G --ctx 1024 -o "$tmp/m.json" >"$tmp/m.out" 2>&1 &&
    jq -e '.cpu.read_gbps == 20 and .learned.reports == 1' "$tmp/learnm.json" >/dev/null &&
    jq -e --slurpfile a "$tmp/learned2.json" '.hardware.dram_gbps == 10 and
        (.prediction.tiers["dram-cpu"].ms_per_token -
         2 * $a[0].prediction.tiers["dram-cpu"].ms_per_token | fabs) < 1e-6 *
         .prediction.tiers["dram-cpu"].ms_per_token' "$tmp/m.json" >/dev/null
ok $? "--dram-from plans with that DRAM ceiling (CPU experts twice as slow at half of it), \
--learn does not save it: $(grep '^rates' "$tmp/m.out" | cut -c1-80)"
# --trace twice: a plan for the routing of both runs; -o over either trace is refused
plan --hw "$tmp/cpu.json" --cpu-mem "$mem" --trace "$tmp/t.json" --trace "$tmp/t.json" \
    -o "$tmp/t2.json" >"$tmp/t2.out" 2>&1 &&
    jq -e '.activation.source | test("t.json and 1 more")' "$tmp/t2.json" >/dev/null &&
    ! plan --hw "$tmp/cpu.json" --cpu-mem "$mem" --trace "$tmp/t2.json" --trace "$tmp/t.json" \
        -o "$tmp/t.json" >/dev/null 2>&1 && jq -e '.format == "moetier-trace"' "$tmp/t.json" \
        >/dev/null
ok $? "--trace given twice plans for both runs' routing: $(grep -i '^activation' "$tmp/t2.out")"
# the traces are summed, not the first one taken: t.json and the same with each layer's counts
# reversed plan as the one trace of both summed, and not as t.json alone
jq 'del(.layers[].from_layer, .layers[].transitions)' "$tmp/t.json" >"$tmp/ta.json"
jq '.layers[].counts |= reverse' "$tmp/ta.json" >"$tmp/tb.json"
jq '.tokens *= 2 | .layers[] |= (.tokens *= 2 | (.counts | reverse) as $r |
    .counts = [range(.counts | length) as $i | .counts[$i] + $r[$i]])' "$tmp/ta.json" \
    >"$tmp/tsum.json"
tok() { jq '.prediction.decode_tok_s' "$1"; }
plan --hw "$tmp/cpu.json" --cpu-mem "$mem" --trace "$tmp/ta.json" --trace "$tmp/tb.json" \
    -o "$tmp/pab.json" >/dev/null 2>&1 &&
    plan --hw "$tmp/cpu.json" --cpu-mem "$mem" --trace "$tmp/tsum.json" -o "$tmp/psum.json" \
        >/dev/null 2>&1 &&
    plan --hw "$tmp/cpu.json" --cpu-mem "$mem" --trace "$tmp/ta.json" -o "$tmp/pa.json" \
        >/dev/null 2>&1 &&
    jq -e --slurpfile s "$tmp/psum.json" --slurpfile a "$tmp/pa.json" '
        .prediction.decode_tok_s as $t |
        ($t - $s[0].prediction.decode_tok_s | fabs) < 1e-9 * $t and
        ($t - $a[0].prediction.decode_tok_s | fabs) > 1e-6 * $t' "$tmp/pab.json" >/dev/null
ok $? "two traces plan as their sum: $(tok "$tmp/pab.json") tok/s, the sum's \
$(tok "$tmp/psum.json"), the first alone $(tok "$tmp/pa.json")"
# a model and a plan under paths that are not UTF-8 (any bytes on Linux): the report is written,
# those bytes as '?' (JSON has only UTF-8), instead of "cannot build the run report" at the end
odd="$tmp/sm$(printf '\377')"
ln -s "$m" "$odd" && cp "$tmp/mix.json" "$odd.json" &&
    "$bin" run -m "$odd" --prompt-ids "$ids" -n 2 --plan "$odd.json" --json "$tmp/odd.json" \
        >/dev/null 2>"$tmp/err" &&
    jq -e '(.model | endswith("/sm?")) and (.plan | endswith("/sm?.json"))' "$tmp/odd.json" \
        >/dev/null
ok $? "a model and plan under non-UTF-8 paths: the report names them with '?': \
$(jq -c '[.model, .plan]' "$tmp/odd.json" 2>&1 | tail -c 60) $(tail -1 "$tmp/err")"
tap_exit
