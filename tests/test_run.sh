#!/bin/sh
# SPDX-License-Identifier: MIT
# test_run.sh - `moetier run` end to end on the golden checkpoint v32-tiny-a (tests/data/golden):
# --print-ids gives HF's 20 greedy tokens on one line, --dump-logits writes "MTLOGIT1", T, vocab
# and T x vocab floats, and bad input gives exit 1 (prompt) or 2 (flags) with one message; the
# prompt read from a file or stdin (--prompt-ids @FILE, -f FILE) gives what the argument gives;
# usage errors are worded as cli_common.h says, and the CPU's default latent cache is f32.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
dir="$MT_TEST_DATA/golden/v32-tiny-a"

if [ ! -f "$dir/golden.json" ]; then
    bail_out "no golden data in $dir (tests/reference/README.md)"
fi
make_tmp run

flat=$(tr -d ' \n' < "$dir/golden.json")
prompt=$(printf '%s' "$flat" | sed -n 's/.*"prompts":\[\[\([0-9,]*\)\].*/\1/p')
want=$(printf '%s' "$flat" | sed -n 's/.*"greedy":\[\[\([0-9,]*\)\].*/\1/p' | tr ',' ' ')
ntok=$(printf '%s\n' "$prompt" | tr ',' '\n' | wc -l)

echo "1..62"
got=$("$bin" run -m "$dir" --device cpu --prompt-ids "$prompt" -n 20 --print-ids \
      --dump-logits "$tmp/l.bin" 2>"$tmp/err")
ok $? "run --print-ids --dump-logits exits 0"
[ -n "$want" ] && [ "$got" = "$want" ]
ok $? "greedy ids equal HF's (got '$got')"
[ "$(printf '%s\n' "$got" | wc -l)" -eq 1 ]
ok $? "--print-ids prints one line"
grep -q 'prefill .* tok/s.*decode .* tok/s' "$tmp/err"
ok $? "prefill and decode tok/s reported on stderr"
# the counts beside the speeds: the prompt's tokens, and 19 decoded (the first of the 20 comes
# from the prefill)
grep -q "^mt: prefill $ntok tokens in .* s (.* tok/s); decode 19 tokens in " "$tmp/err"
ok $? "prefill $ntok tokens, decode 19 tokens (got: $(grep '^mt: prefill' "$tmp/err"))"
# then the memory line and the run report (cli_report.h), its per-tier table of the decode
grep -q '^mt: memory: peak resident [0-9.]* MiB; routed experts held' "$tmp/err" &&
    grep -q '^mt: report: decode  *experts/tok  *MB/tok  *ms/tok$' "$tmp/err" &&
    grep -q '^mt: report: dram-cpu  *[0-9.]*  *[0-9.]*  *[0-9.]*$' "$tmp/err"
ok $? "the memory line and the run report follow on stderr ($(grep -c '^mt: report' "$tmp/err") \
report lines)"
size=$(wc -c < "$tmp/l.bin")
[ "$(head -c 8 "$tmp/l.bin")" = "MTLOGIT1" ] && [ "$size" -eq $((16 + ntok * 512 * 4)) ]
ok $? "--dump-logits: magic and size 16 + $ntok x 512 x 4 (got $size)"
"$bin" run -m "$dir" --prompt-ids 1,2,512 -n 1 --print-ids >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q 'outside the vocabulary' "$tmp/err" && ! grep -q 'loaded' "$tmp/err"
ok $? "token id out of range exits 1 with a message, before the weights load (rc $rc)"
"$bin" run -m "$dir" --prompt-ids "" -n 1 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q 'empty prompt' "$tmp/err"
ok $? "an empty --prompt-ids is a usage error (2), as a malformed one is, with a message (rc $rc)"
long=$(seq -s, 3 259)
"$bin" run -m "$dir" --prompt-ids "$long" -n 1 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q 'longer than the model' "$tmp/err" && ! grep -q 'loaded' "$tmp/err"
ok $? "a 257-token prompt (max_position_embeddings 256) exits 1 with a message, before the \
weights load (rc $rc)"
mkdir "$tmp/badtok"
for f in "$dir"/*; do ln -s "$f" "$tmp/badtok/"; done
rm "$tmp/badtok/tokenizer.json"
echo '{"model": garbage' >"$tmp/badtok/tokenizer.json"
"$bin" run -m "$tmp/badtok" --prompt-ids 1,2 -n 1 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && grep -q "warning: tokenizer .* not valid JSON.*ids are printed" "$tmp/err"
ok $? "--prompt-ids with a malformed tokenizer.json: ids, with a warning (rc $rc)"
"$bin" run -m "$dir" -p hi -n 1 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "needs its tokenizer.json .*--prompt-ids runs without one" "$tmp/err"
ok $? "-p on a model without tokenizer.json: exit 1, --prompt-ids named as the way (rc $rc)"
# a model directory that is not there at all is named as such, not as one lacking its tokenizer
"$bin" run -m "$tmp/no-model" -p hi -n 1 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q "$tmp/no-model" "$tmp/err" &&
    ! grep -q 'needs its tokenizer.json' "$tmp/err"
ok $? "-p on a missing model directory: exit 1, one message naming it (rc $rc: $(cat "$tmp/err"))"
spaced=$(printf '%s' "$prompt" | tr ',' ' ')
got2=$("$bin" run -m "$dir" --prompt-ids " $spaced " -n 20 --print-ids 2>/dev/null)
[ -n "$want" ] && [ "$got2" = "$want" ]
ok $? "--prompt-ids separated by spaces (as tokenize prints them) gives the same ids"
printf '%s\n' "$spaced" > "$tmp/ids.txt"
got3=$("$bin" run -m "$dir" --prompt-ids @"$tmp/ids.txt" -n 20 --print-ids 2>/dev/null)
got4=$("$bin" run -m "$dir" --prompt-ids @- -n 20 --print-ids < "$tmp/ids.txt" 2>/dev/null)
[ -n "$want" ] && [ "$got3" = "$want" ] && [ "$got4" = "$want" ]
ok $? "--prompt-ids @FILE and @- (stdin) give the same ids (got '$got3', '$got4')"
# an empty ids file is refused before the model loads (here: a model that does not exist)
: > "$tmp/none.txt"
"$bin" run -m "$tmp/no-model" --prompt-ids @"$tmp/none.txt" -n 1 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "empty prompt: @$tmp/none.txt holds no token id" "$tmp/err" &&
    ! grep -q 'no-model' "$tmp/err"
ok $? "an empty --prompt-ids @FILE exits 1 before the model is read (rc $rc: $(cat "$tmp/err"))"
"$bin" run -m "$dir" --prompt-ids @"$tmp/missing.txt" -n 1 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "cannot open prompt ids '$tmp/missing.txt'" "$tmp/err"
ok $? "a missing --prompt-ids @FILE exits 1 naming it (rc $rc: $(cat "$tmp/err"))"
"$bin" run -m "$dir" --prompt-ids 1,5-3 -n 1 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "bad token id '5-3' in --prompt-ids" "$tmp/err"
ok $? "a malformed id in --prompt-ids exits 2 naming it (rc $rc)"
# a trailing comma after many ids: the message shows the end, where the comma is, not the start
"$bin" run -m "$dir" --prompt-ids "$(seq -s ' ' 1 30) 31," -n 1 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "empty item 32 in --prompt-ids: a comma at offset 83 ends it ('\.\.\..* 30 31,'" \
    "$tmp/err"
ok $? "a trailing comma in --prompt-ids exits 2 quoting the end of the ids (rc $rc: \
$(head -n 1 "$tmp/err"))"
if [ -w /dev/full ]; then
    "$bin" run -m "$dir" --prompt-ids 1,2 -n 2 --print-ids >/dev/full 2>"$tmp/err"
    rc=$?
    [ "$rc" -eq 1 ] && grep -q 'cannot write to stdout' "$tmp/err"
    ok $? "output that cannot be written exits 1 with a message (rc $rc)"
else
    ok 0 "# SKIP no /dev/full"
fi
"$bin" run -m "$dir" --prompt-ids 1,2 --attention sideways >/dev/null 2>&1
rc=$?
[ "$rc" -eq 2 ]
ok $? "a bad flag value exits 2 (rc $rc)"
# --indexer's bad value is a usage error too, with the modes it takes
"$bin" run -m "$dir" --prompt-ids 1,2 --indexer fp4 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "unknown indexer mode 'fp4' (exact or fp8)" "$tmp/err"
ok $? "a bad --indexer exits 2 naming the modes (rc $rc: $(head -n 1 "$tmp/err"))"
# no prompt at all is a usage error, as two are (not a crash on the missing text)
"$bin" run -m "$dir" -n 1 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q 'exactly one of --prompt-ids, -p or -f' "$tmp/err"
ok $? "-m without a prompt is a usage error (rc $rc: $(head -n 1 "$tmp/err"))"
"$bin" run --prompt-ids 1,2 -n 1 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q 'need -m DIR' "$tmp/err"
ok $? "a prompt without -m is a usage error (rc $rc: $(head -n 1 "$tmp/err"))"
# A GPU asked for where none answers: exit 1 with one message naming who asked (a flag, or
# $MOETIER_DEVICE: not a flag the user did not give), before anything is planned or loaded. With
# a GPU the run succeeds, which test_gpu_run.sh checks. Usage: gpu_refused WHO NAME COMMAND...
gpu_refused() {
    who=$1 name=$2
    shift 2
    "$@" >/dev/null 2>"$tmp/err"
    rc=$?
    if [ "$rc" -eq 0 ]; then
        ok 0 "# SKIP a GPU answers here"
        return
    fi
    [ "$rc" -eq 1 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] &&
        grep -q "^mt: $who: no CUDA device (.*); use --device cpu\$" "$tmp/err"
    ok $? "$name (rc $rc: $(cat "$tmp/err"))"
}
gpu_refused '--device gpu' "--device gpu without a GPU: exit 1 with one message" \
    "$bin" run -m "$dir" --device gpu --prompt-ids 1,2 -n 1 --print-ids
gpu_refused 'MOETIER_DEVICE=gpu' "MOETIER_DEVICE=gpu without a GPU: the message names it" \
    env MOETIER_DEVICE=gpu "$bin" run -m "$dir" --prompt-ids 1,2 -n 1 --print-ids
# -p TEXT is BOS, then TEXT with special tokens recognized: the same logits as those ids
# (a synth checkpoint has a tokenizer; the golden one has none)
tiny="$tmp/tiny"
"$bin" synth --preset tiny --layers 1 -q -o "$tiny" >/dev/null 2>&1
text='hello <｜User｜>'
bos=$(printf '<｜begin▁of▁sentence｜>' | "$bin" tokenize -m "$tiny" --special)
ids=$(printf '%s' "$text" | "$bin" tokenize -m "$tiny" --special)
user=$(printf '<｜User｜>' | "$bin" tokenize -m "$tiny" --special)
"$bin" run -m "$tiny" -p "$text" -n 0 --dump-logits "$tmp/p.bin" 2>/dev/null &&
    "$bin" run -m "$tiny" --prompt-ids "$bos $ids" -n 0 --dump-logits "$tmp/i.bin" 2>/dev/null
rc=$?
[ "$rc" -eq 0 ] && [ "$(printf '%s\n' "$bos $user" | wc -w)" -eq 2 ] &&
    [ "${ids##* }" = "$user" ] && cmp -s "$tmp/p.bin" "$tmp/i.bin"
ok $? "-p TEXT gives the logits of BOS + TEXT's ids, <｜User｜> one token (ids '$bos $ids')"
printf '%s' "$text" > "$tmp/prompt.txt"
"$bin" run -m "$tiny" -f "$tmp/prompt.txt" -n 0 --dump-logits "$tmp/f.bin" 2>/dev/null &&
    "$bin" run -m "$tiny" -f - -n 0 --dump-logits "$tmp/s.bin" < "$tmp/prompt.txt" 2>/dev/null
rc=$?
[ "$rc" -eq 0 ] && cmp -s "$tmp/p.bin" "$tmp/f.bin" && cmp -s "$tmp/p.bin" "$tmp/s.bin"
ok $? "-f FILE and -f - (stdin) give the logits of -p with the same text (rc $rc)"
"$bin" run -m "$tiny" -f "$tmp/nothing.txt" -n 0 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "cannot open prompt text '$tmp/nothing.txt'" "$tmp/err"
ok $? "a missing -f FILE exits 1 naming it (rc $rc: $(cat "$tmp/err"))"
mkfifo "$tmp/fifo" &&
    "$bin" run -m "$tiny" -f "$tmp/fifo" -n 0 >/dev/null 2>"$tmp/err" </dev/null
rc=$?
[ "$rc" -eq 1 ] && grep -q "'$tmp/fifo' is a FIFO.*pass '-' to read stdin" "$tmp/err"
ok $? "-f FIFO exits 1 saying that '-' reads stdin (rc $rc: $(cat "$tmp/err"))"
"$bin" run -m "$tiny" -f "$tmp/prompt.txt" -n 0 --json "$tmp/prompt.txt" >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "is the prompt input; refusing to overwrite" "$tmp/err" &&
    [ "$(cat "$tmp/prompt.txt")" = "$text" ]
ok $? "--json onto the -f prompt file is refused, the file kept (rc $rc)"
"$bin" run -m "$tiny" -f "$tmp/prompt.txt" -p x -n 0 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q 'exactly one of --prompt-ids, -p or -f' "$tmp/err"
ok $? "-f with -p is a usage error (rc $rc)"
"$bin" run -m "$tiny" -p "" -n 0 --dump-logits "$tmp/e.bin" 2>/dev/null
rc=$?
[ "$rc" -eq 0 ] && [ "$(head -c 12 "$tmp/e.bin" | tail -c 4 | od -An -tu4 | tr -d ' ')" = 1 ]
ok $? "-p '' is a prompt of BOS alone (rc $rc)"
"$bin" run -m "$tiny" --device cpu --gpu-mem 4G --debug-sync --prompt-ids 1,2 -n 1 \
    --print-ids >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] &&
    grep -q -- '--gpu-mem (and --debug-sync) applies to the GPU engine.*on the CPU: ignored' \
        "$tmp/err"
ok $? "GPU flags on a CPU run: one warning says they are ignored (rc $rc: $(head -c 300 "$tmp/err"))"
"$bin" run -m "$tiny" --device cpu --threads 4096 --prompt-ids 1,2 -n 1 --print-ids \
    >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && grep -q -- '--threads 4096 is more than the [0-9]* cores' "$tmp/err" &&
    grep -q -- "--threads 4096 is more than the $(getconf _NPROCESSORS_ONLN) CPUs online: OpenMP's parts run $(getconf _NPROCESSORS_ONLN) threads" "$tmp/err"
ok $? "--threads past the cores: warnings say what the experts' team and OpenMP run (rc $rc: $(head -c 300 "$tmp/err"))"
# the report splits prefill from decode at the first generated token: with -n 3 the prefill is
# one forward of the 4 prompt tokens, the decode two forwards of one token each
"$bin" run -m "$tiny" --device cpu --prompt-ids 1,2,3,4 -n 3 --print-ids --json "$tmp/r.json" \
    >/dev/null 2>&1
rc=$?
split=$(grep -e '"forwards"' -e '"engine_tokens"' "$tmp/r.json" | tr -d ' ,\n')
[ "$rc" -eq 0 ] && [ "$split" = '"forwards":1"engine_tokens":4"forwards":2"engine_tokens":2' ]
ok $? "--json: prefill is the prompt's forward, decode the rest (rc $rc: $split)"
# a --cpu-mem too small for all experts gives an automatic plan (from the --hw profile; nothing
# measured or cached): the report sets the run beside the plan's prediction, and --json names
# the plan "(automatic)"
MOETIER_CACHE_DIR="$tmp/nocache" "$bin" run -m "$dir" --device cpu --prompt-ids 5,17 -n 2 \
    --print-ids --cpu-mem 1M --cpu-reserve 0 --hw "$MT_SRCDIR/bench/profiles/rtx3090-ddr4.json" \
    --json "$tmp/auto.json" >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && grep -q '"plan": "(automatic)"' "$tmp/auto.json" &&
    grep -q '^mt: report: decode .*plan: experts/tok .*ratio$' "$tmp/err"
ok $? "an automatic plan: the report compares with its prediction (rc $rc: \
$(grep -e 'experts:' -e '"plan"' "$tmp/err" "$tmp/auto.json" | head -c 300))"
"$bin" run --help | grep -q -- '--dump-logits'
ok $? "--help lists the flags"
# --threads sizes the expert team too, which OMP_NUM_THREADS does not: the help says both, and a
# bad value is named by its flag with the range
"$bin" run --help | grep -A1 -- '--threads N' | grep -q 'routed-expert'
ok $? "--help: --threads sizes the routed-expert team as well as OpenMP"
"$bin" run -m "$tiny" --device cpu --threads 0 --prompt-ids 1,2 -n 1 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q -- "bad --threads '0' (must be in 1\.\.4096)" "$tmp/err"
ok $? "--threads 0: exit 2 naming --threads and its range (rc $rc: $(head -n 1 "$tmp/err"))"
# MOETIER_ISA is checked before the model is read: with no model at all (-m names nothing) the
# message is about the variable, and says what to do
MOETIER_ISA=sse9 "$bin" run -m "$tmp/no-model" --device cpu --prompt-ids 1,2 -n 1 >/dev/null \
    2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "environment variable MOETIER_ISA='sse9'.*unset it.*scalar" \
    "$tmp/err" && ! grep -q "no-model" "$tmp/err"
ok $? "MOETIER_ISA=sse9: refused before loading, with a hint (rc $rc: $(tail -n 1 "$tmp/err"))"
if grep -q '^flags.*amx_bf16' /proc/cpuinfo 2>/dev/null; then
    ok 0 "MOETIER_ISA=amx on a CPU without AMX # SKIP this CPU has AMX"
else
    MOETIER_ISA=amx "$bin" run -m "$tmp/no-model" --device cpu --prompt-ids 1,2 -n 1 \
        >/dev/null 2>"$tmp/err"
    rc=$?
    [ "$rc" -eq 1 ] && grep -q "MOETIER_ISA=amx asks for kernels this CPU cannot run.*unset" \
        "$tmp/err" && ! grep -q "no-model" "$tmp/err"
    ok $? "MOETIER_ISA=amx on a CPU without AMX: refused before loading (rc $rc: \
$(tail -n 1 "$tmp/err"))"
fi
# --ctx holds on the CPU too (its cache grows up to it; the placement budgets that many): a run
# past it stops there with a warning, as on the GPU, and the tokens before it are the same
want=$("$bin" run -m "$dir" --device cpu --prompt-ids 1,2,3,4,5,6,7,8 -n 8 --print-ids 2>/dev/null)
got=$("$bin" run -m "$dir" --device cpu --prompt-ids 1,2,3,4,5,6,7,8 -n 30 --ctx 16 \
    --print-ids 2>"$tmp/err")
[ $? -eq 0 ] && [ -n "$want" ] && [ "$got" = "$want $(echo "$got" | awk '{print $NF}')" ] &&
    grep -q "generation stopped after 9 of 30 tokens: the sequence reached the 16 positions" \
        "$tmp/err"
ok $? "--ctx 16 on the CPU: 9 tokens then a stop ('$got'; the first 8 as -n 8: '$want')"
# what cli_common.h promises of a bad command line: a missing value and a value given to a flag
# that takes none are named as typed, and a number out of range says the range it must be in
"$bin" run --prompt-ids 1,2 -m >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "^moetier run: option '-m' needs a value$" "$tmp/err"
ok $? "-m without its value: exit 2, 'needs a value' (rc $rc: $(head -n 1 "$tmp/err"))"
"$bin" run -m "$tiny" --prompt-ids 1,2 --verbose=1 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "^moetier run: unknown option '--verbose=1'$" "$tmp/err"
ok $? "--verbose=1 (a value to a flag that takes none): named whole (rc $rc: \
$(head -n 1 "$tmp/err"))"
"$bin" run -m "$tiny" --prompt-ids 1,2 --ctx 0 >/dev/null 2>"$tmp/err" && rc=0 || rc=$?
"$bin" run -m "$tiny" --prompt-ids 1,2 --ctx 3000000000 >/dev/null 2>"$tmp/err2" && rc2=0 || rc2=$?
[ "$rc" -eq 2 ] && grep -q "bad --ctx '0' (must be >= 1)$" "$tmp/err" && [ "$rc2" -eq 2 ] &&
    grep -q "bad --ctx '3000000000' (must be in 1\.\.2147483647)$" "$tmp/err2"
ok $? "--ctx 0 and 3000000000: exit 2, each with the bound it breaks ($(head -n 1 "$tmp/err") / \
$(head -n 1 "$tmp/err2"))"
# a CPU run without --threads or GPU flags warns of neither; --debug-sync alone is named
"$bin" run -m "$tiny" --device cpu --prompt-ids 1,2 -n 1 --print-ids >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && ! grep -q -- '--threads\|applies to the GPU' "$tmp/err"
ok $? "no --threads, no GPU flag: no warning of either (rc $rc: $(grep warning "$tmp/err"))"
"$bin" run -m "$tiny" --device cpu --debug-sync --prompt-ids 1,2 -n 1 --print-ids >/dev/null \
    2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && grep -q -- 'warning: --debug-sync applies to the GPU engine.*ignored' "$tmp/err"
ok $? "--debug-sync alone on a CPU run: the warning names it (rc $rc)"
# the CPU's latent cache is f32 by default (README: "default f32 on cpu, the reference"): the
# same logits as --kv-dtype f32, not those of bf16
for kv in default f32 bf16; do
    flag=""
    [ "$kv" = default ] || flag="--kv-dtype $kv"
    # shellcheck disable=SC2086
    "$bin" run -m "$tiny" --device cpu -p "$text" -n 0 $flag --dump-logits "$tmp/kv-$kv.bin" \
        2>/dev/null || rm -f "$tmp/kv-$kv.bin"
done
[ -s "$tmp/kv-default.bin" ] && cmp -s "$tmp/kv-default.bin" "$tmp/kv-f32.bin" &&
    [ -s "$tmp/kv-bf16.bin" ] && ! cmp -s "$tmp/kv-default.bin" "$tmp/kv-bf16.bin"
ok $? "the CPU's default --kv-dtype is f32: its logits, not bf16's"
# -n defaults to 32 tokens (this prompt's greedy run meets no EOS before them)
got=$("$bin" run -m "$dir" --device cpu --prompt-ids 1,2,3 --print-ids 2>/dev/null)
[ "$(printf '%s\n' "$got" | wc -w)" -eq 32 ]
ok $? "no -n: 32 tokens ($(printf '%s\n' "$got" | wc -w))"
# logits_per_value FLAG PROMPT_IDS VALUE...: the prompt's logits with the flag left out (as
# $tmp/FLAG-default.bin) and with each value (as $tmp/FLAG-VALUE.bin); a file missing on failure
logits_per_value() {
    name=$1
    ids=$2
    shift 2
    for v in default "$@"; do
        flag=""
        [ "$v" = default ] || flag="--$name $v"
        # shellcheck disable=SC2086
        "$bin" run -m "$dir" --device cpu --prompt-ids "$ids" -n 0 $flag \
            --dump-logits "$tmp/$name-$v.bin" 2>/dev/null || rm -f "$tmp/$name-$v.bin"
    done
}
# --attention: sparse (DSA top-k) by default, dense on request; a prompt longer than the
# model's index_topk (8) tells them apart
logits_per_value attention "$(seq -s, 3 22)" sparse dense
[ -s "$tmp/attention-default.bin" ] &&
    cmp -s "$tmp/attention-default.bin" "$tmp/attention-sparse.bin" &&
    [ -s "$tmp/attention-dense.bin" ] &&
    ! cmp -s "$tmp/attention-default.bin" "$tmp/attention-dense.bin"
ok $? "--attention: sparse by default, dense gives other logits past index_topk"
# a stray argument is a usage error; an output that cannot be written fails before the weights
# load, not after the generation
"$bin" run -m "$dir" --prompt-ids 1,2 -n 1 stray >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "unexpected argument 'stray'" "$tmp/err"
ok $? "a stray argument: exit 2 naming it (rc $rc: $(head -n 1 "$tmp/err"))"
"$bin" run -m "$dir" --device cpu --prompt-ids 1,2 -n 1 --dump-logits "$tmp/no/such/l.bin" \
    >/dev/null 2>"$tmp/err"
rc=$?
"$bin" run -m "$dir" --device cpu --prompt-ids 1,2 -n 1 --trace "$tmp/no/such/t.json" \
    >/dev/null 2>"$tmp/err2"
rc2=$?
[ "$rc" -eq 1 ] && grep -q "cannot write --dump-logits '$tmp/no/such/l.bin'" "$tmp/err" &&
    ! grep -q 'loaded' "$tmp/err" && [ "$rc2" -eq 1 ] &&
    grep -q "cannot write --trace '$tmp/no/such/t.json'" "$tmp/err2" &&
    ! grep -q 'loaded' "$tmp/err2"
ok $? "--dump-logits, --trace in a missing directory: exit 1 before loading (rc $rc $rc2: \
$(tail -n 1 "$tmp/err"))"
# --trace writes the routed experts' trace once the generation is done
"$bin" run -m "$dir" --device cpu --prompt-ids 1,2 -n 2 --print-ids --trace "$tmp/t.json" \
    >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && grep -q '"format": *"moetier-trace"' "$tmp/t.json"
ok $? "--trace FILE writes a moetier-trace (rc $rc: $(head -c 100 "$tmp/t.json" 2>&1))"
# --dump-logits is an output like the others: not on --json's or --trace's file, nor on an input
"$bin" run -m "$dir" --prompt-ids 1,2 -n 1 --dump-logits "$tmp/o.bin" --json "$tmp/o.bin" \
    >/dev/null 2>"$tmp/err"
rc=$?
"$bin" run -m "$dir" --prompt-ids 1,2 -n 1 --dump-logits "$tmp/o.bin" --trace "$tmp/./o.bin" \
    >/dev/null 2>"$tmp/err2"
rc2=$?
[ "$rc" -eq 2 ] && grep -q "name the same file" "$tmp/err" && [ "$rc2" -eq 2 ] &&
    grep -q "name the same file" "$tmp/err2" && [ ! -e "$tmp/o.bin" ]
ok $? "--dump-logits with --json or --trace on one file: exit 2 ($rc $rc2)"
echo '{}' >"$tmp/in.json"
"$bin" run -m "$dir" --prompt-ids 1,2 -n 1 --plan "$tmp/in.json" --dump-logits "$tmp/in.json" \
    >/dev/null 2>"$tmp/err"
rc=$?
"$bin" run -m "$dir" --prompt-ids 1,2 -n 1 --hw "$tmp/in.json" --json "$tmp/in.json" \
    >/dev/null 2>"$tmp/err2"
rc2=$?
[ "$rc" -eq 2 ] && grep -q "is the --plan input" "$tmp/err" && [ "$rc2" -eq 2 ] &&
    grep -q "is the --hw input" "$tmp/err2" && [ "$(cat "$tmp/in.json")" = '{}' ]
ok $? "an output onto the --plan or --hw file: exit 2, the file kept ($rc $rc2)"
# --print-ids prints ids even where the tokenizer is loaded (a text prompt), and its one line
# also for -n 0
got=$("$bin" run -m "$tiny" --device cpu -p "$text" -n 3 --print-ids 2>/dev/null)
"$bin" run -m "$tiny" --device cpu --prompt-ids 1,2 -n 0 --print-ids >"$tmp/out" 2>/dev/null
printf '%s\n' "$got" | grep -Eq '^[0-9]+ [0-9]+ [0-9]+$' &&
    [ "$(od -An -c "$tmp/out" | tr -d ' ')" = '\n' ]
ok $? "--print-ids with a text prompt: ids ('$got'); -n 0: one empty line"
# without --print-ids, -n 0 prints nothing: no reply, so not even its newline
"$bin" run -m "$tiny" --device cpu --prompt-ids 1,2 -n 0 >"$tmp/out" 2>/dev/null
rc=$?
[ "$rc" -eq 0 ] && [ ! -s "$tmp/out" ]
ok $? "-n 0 without --print-ids: stdout stays empty (rc $rc, $(wc -c < "$tmp/out") bytes)"
# a text that starts with BOS gets no second one
"$bin" run -m "$tiny" -p "<｜begin▁of▁sentence｜>$text" -n 0 --dump-logits "$tmp/b.bin" \
    2>/dev/null
cmp -s "$tmp/p.bin" "$tmp/b.bin"
ok $? "-p starting with BOS: the logits of -p without it (no BOS twice)"
# --indexer: exact by default, fp8 on request; on a prompt of 198 tokens the FP8 scores pick
# other keys somewhere, so its logits differ
logits_per_value indexer "$(seq -s, 3 200)" exact fp8
[ -s "$tmp/indexer-default.bin" ] && cmp -s "$tmp/indexer-default.bin" "$tmp/indexer-exact.bin" &&
    [ -s "$tmp/indexer-fp8.bin" ] && ! cmp -s "$tmp/indexer-default.bin" "$tmp/indexer-fp8.bin"
ok $? "--indexer: exact by default, fp8 gives other logits on a 198-token prompt"
# ids past the tokenizer's vocabulary (padding rows of the embedding, 607..1023 in the tiny
# model) print as <id> among the text: greedy after 0,5,6 the tiny model picks some; the <id>s
# in the text are exactly the ids `tokenize --decode` refuses, in order
pids=$("$bin" run -m "$tiny" --device cpu --prompt-ids 0,5,6 -n 12 --print-ids 2>/dev/null)
ptext=$("$bin" run -m "$tiny" --device cpu --prompt-ids 0,5,6 -n 12 2>/dev/null)
want=""
for i in $pids; do
    printf '%s' "$i" | "$bin" tokenize -m "$tiny" --decode >/dev/null 2>&1 || want="$want<$i>"
done
got=$(printf '%s' "$ptext" | grep -o '<[0-9]*>' | tr -d '\n')
[ "$(printf '%s\n' "$pids" | wc -w)" -eq 12 ] && [ -n "$want" ] && [ "$got" = "$want" ] &&
    [ -n "$(printf '%s' "$ptext" | sed 's/<[0-9]*>//g')" ]
ok $? "ids past the tokenizer print as <id> among the text (ids '$pids': '$got', want '$want')"
# without --ctx the caches hold the prompt and -n when that is more than 8,192 positions
# (cli_common.h, mt_cli_ctx): the tiny model given 10,000 positions runs a prompt of 8,192 ids
# with -n 2 to its end, where a context of 8,192 would stop it after one token (a CPU prefill of
# some 30 CPU seconds; test_gpu_run.sh runs the same past 8,192 on the GPU)
mkdir "$tmp/long" && for f in "$tiny"/*; do ln -s "$f" "$tmp/long/"; done &&
    rm "$tmp/long/config.json" &&
    sed 's/"max_position_embeddings": *4096/"max_position_embeddings": 10000/' \
        "$tiny/config.json" >"$tmp/long/config.json" &&
    grep -q '"max_position_embeddings": *10000' "$tmp/long/config.json" ||
    bail_out "cannot write a config of 10,000 positions for the tiny model"
seq 1 8192 | awk '{ printf "%d ", ($1 * 7919) % 509 + 1 }' >"$tmp/long.txt"
got=$("$bin" run -m "$tmp/long" --device cpu --prompt-ids @"$tmp/long.txt" -n 2 --print-ids \
    2>"$tmp/err")
rc=$?
[ "$rc" -eq 0 ] && [ "$(printf '%s\n' "$got" | wc -w)" -eq 2 ] &&
    ! grep -q 'generation stopped' "$tmp/err"
ok $? "8,192 prompt ids and -n 2 without --ctx: 2 ids, the context sized for both \
(rc $rc, '$got': $(grep -e 'stopped' -e 'positions' "$tmp/err" | head -c 300))"
tap_exit
