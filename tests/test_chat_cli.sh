#!/bin/sh
# SPDX-License-Identifier: MIT
# test_chat_cli.sh - `moetier chat` end to end on a tiny random checkpoint (moetier synth): lines
# piped in are user messages, /reset forgets the conversation and the KV cache, and a greedy reply
# after /reset equals the reply to the same message in a fresh run. The tiny model's text is
# random gibberish, so replies are compared with each other, never with fixed text. Also: the
# cache is reused across turns, a last line without newline, a NUL byte in a line, --think and
# --system, a too-long message, and bad flags (exit 2) or a missing model (exit 1) with one message.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"

# from the -v line "mt: turn T: P prompt tokens, R reused from the cache; ... decode D tokens ...":
# turn_field T prompt|reused|decode FILE
turn_field() {
    case $2 in
    prompt) sed -n "s/^mt: turn $1: \([0-9]*\) prompt tokens.*/\1/p" "$3" ;;
    reused) sed -n "s/^mt: turn $1: [0-9]* prompt tokens, \([0-9]*\) reused.*/\1/p" "$3" ;;
    decode) sed -n "s/^mt: turn $1: .* decode \([0-9]*\) tokens.*/\1/p" "$3" ;;
    esac
}

make_tmp chat
model="$tmp/tiny"

echo "1..50"
"$bin" synth --preset tiny --layers 2 -q -o "$model" >/dev/null 2>"$tmp/synth.err"
ok $? "synth --preset tiny writes a model"

# two turns, /reset, the first message again; then the first message alone in a fresh run
printf 'hello there\nhow are you\n/reset\nhello there\n' |
    "$bin" chat -m "$model" --temperature 0 -n 8 -v >"$tmp/a.out" 2>"$tmp/a.err"
rc=$?
[ "$rc" -eq 0 ]
ok $? "three turns with /reset exit 0 (rc $rc)"
[ "$(grep -c '^mt: turn [123]: ' "$tmp/a.err")" -eq 3 ] && [ "$(wc -l < "$tmp/a.out")" -ge 3 ]
ok $? "every turn gives a reply line and its speeds (-v)"
printf 'hello there\n' | "$bin" chat -m "$model" --temperature 0 -n 8 >"$tmp/b.out" 2>"$tmp/b.err"
rc=$?
nb=$(wc -c < "$tmp/b.out")
[ "$rc" -eq 0 ] && [ "$nb" -gt 1 ]
ok $? "a fresh run with one message exits 0 and prints a reply (rc $rc, $nb bytes)"
head -c "$nb" "$tmp/a.out" | cmp -s - "$tmp/b.out"
ok $? "greedy: the first reply equals the fresh run's"
tail -c "$nb" "$tmp/a.out" | cmp -s - "$tmp/b.out"
ok $? "greedy: the reply after /reset equals the fresh run's"

p1=$(turn_field 1 prompt "$tmp/a.err")
r3=$(turn_field 3 reused "$tmp/a.err")
[ "$r3" = 0 ]
ok $? "the turn after /reset starts from an empty cache (reused $r3)"

# KV reuse: with -n 1 the cache holds exactly the last prompt, always a prefix of the next one
# (a longer reply is reused only when its text re-tokenizes to the same ids, which random text
# from the tiny model often does not)
printf 'hello there\nhow are you\nbye\n' |
    "$bin" chat -m "$model" --temperature 0 -n 1 -v >/dev/null 2>"$tmp/r.err"
rc=$?
q1=$(turn_field 1 prompt "$tmp/r.err")
q2=$(turn_field 2 prompt "$tmp/r.err")
r2=$(turn_field 2 reused "$tmp/r.err")
r3=$(turn_field 3 reused "$tmp/r.err")
[ "$rc" -eq 0 ] && [ -n "$q1" ] && [ "$r2" = "$q1" ] && [ -n "$q2" ] && [ "$r3" = "$q2" ]
ok $? "each turn reuses the cache of the turn before (reused $r2 = $q1, $r3 = $q2; rc $rc)"

printf 'hello there\n' | "$bin" chat -m "$model" --temperature 0 -n 8 -v --system "be brief" \
    >/dev/null 2>"$tmp/s.err"
rc=$?
ps=$(turn_field 1 prompt "$tmp/s.err")
[ "$rc" -eq 0 ] && [ -n "$ps" ] && [ "$ps" -gt "$p1" ]
ok $? "--system adds to the prompt ($ps > $p1 tokens, rc $rc)"

printf 'hello there\nhow are you\n' | "$bin" chat -m "$model" --think --temperature 0 -n 8 \
    >"$tmp/t.out" 2>"$tmp/t.err"
rc=$?
[ "$rc" -eq 0 ] && [ "$(grep -c "^<think>" "$tmp/t.out")" -ge 2 ] && grep -q '</think>' "$tmp/t.out"
ok $? "--think shows the reasoning between <think> and </think> for each turn (rc $rc)"
# greedy, the tiny model reasons past 8 tokens in both turns: each reply ends in </think>, and
# stderr says, once a turn, that the reasoning took all of -n (not an answer cut short)
nr=$(grep -c 'the reasoning used all 8 tokens of the reply (-n)' "$tmp/t.err")
[ "$nr" -eq 2 ] && [ "$(grep -c '</think>$' "$tmp/t.out")" -eq 2 ]
ok $? "--think: a reply cut by -n inside the reasoning says so, once a turn ($nr times)"
# --think asks the model to reason: the prompt ends in <think> (not </think>), so the greedy
# reasoning is run -p's reply to that prompt
printf 'hello there\n' | "$bin" chat -m "$model" --think --temperature 0 -n 8 >"$tmp/tp.out" \
    2>/dev/null &&
    "$bin" run -m "$model" --device cpu --temperature 0 -n 8 \
        -p '<｜User｜>hello there<｜Assistant｜><think>' >"$tmp/tp.run" 2>/dev/null
rc=$?
{ printf '<think>'; head -c -1 "$tmp/tp.run"; printf '</think>\n'; } >"$tmp/tp.want"
[ "$rc" -eq 0 ] && [ -s "$tmp/tp.run" ] && cmp -s "$tmp/tp.out" "$tmp/tp.want"
ok $? "--think: the reasoning is the reply to a prompt that ends in <think> (rc $rc)"
# sampled --think replies (temperature 1, -n 512): find a seed whose reasoning ends (the model
# samples </think>) and the reply runs to -n, and one whose reply the EOS stops
end_seed=""
eos_seed=""
for s in 0 1 2 3 4 5 6 7; do
    printf 'hello there\n' | "$bin" chat -m "$model" --think --seed "$s" -v >"$tmp/th$s.out" \
        2>"$tmp/th$s.err" || continue
    d=$(turn_field 1 decode "$tmp/th$s.err")
    # bytes after the line of the first </think>: the answer and its newline
    after=$(sed -n '/<\/think>/,$p' "$tmp/th$s.out" | tail -n +2 | wc -c)
    [ -z "$end_seed" ] && [ "$d" = 511 ] && [ "$after" -gt 1 ] && end_seed=$s
    [ -z "$eos_seed" ] && [ "${d:-511}" -lt 511 ] && eos_seed=$s
    [ -n "$end_seed" ] && [ -n "$eos_seed" ] && break
done
# the </think> the model sampled ends the reasoning: printed once (not again at the end), and a
# reply cut by -n in the answer is no reasoning cut short
[ -n "$end_seed" ] && [ "$(grep -o '</think>' "$tmp/th$end_seed.out" | wc -l)" -eq 1 ] &&
    ! grep -q 'reasoning used' "$tmp/th$end_seed.err"
ok $? "--think: a sampled </think> ends the reasoning, shown once; a reply cut by -n after it \
is not called reasoning (seed '$end_seed': $(grep -c . "$tmp/th${end_seed:-0}.err") lines)"
# the reply stops at the tokenizer's EOS too where config.json names another id: a model whose
# config says 1000 gives the reply that the EOS (id 1) stopped
mkdir "$tmp/eos" && for f in "$model"/*; do ln -s "$f" "$tmp/eos/"; done &&
    rm "$tmp/eos/config.json" &&
    sed 's/"eos_token_id": *1,/"eos_token_id": 1000,/' "$model/config.json" >"$tmp/eos/config.json"
printf 'hello there\n' | "$bin" chat -m "$tmp/eos" --think --seed "${eos_seed:-0}" \
    >"$tmp/eos.out" 2>/dev/null
rc=$?
[ "$rc" -eq 0 ] && [ -n "$eos_seed" ] && grep -q '"eos_token_id": 1000' "$tmp/eos/config.json" &&
    cmp -s "$tmp/eos.out" "$tmp/th$eos_seed.out"
ok $? "the tokenizer's EOS stops a reply where config.json names another id (seed '$eos_seed', \
rc $rc)"

# a message longer than the tiny model's 4096 positions: a message, the next turn still runs
awk 'BEGIN { for (i = 0; i < 5000; i++) printf "a "; printf "\nhello there\n" }' |
    "$bin" chat -m "$model" --temperature 0 -n 8 -v >"$tmp/l.out" 2>"$tmp/l.err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "positions must also hold the reply" "$tmp/l.err" &&
    grep -q '^mt: turn 1: ' "$tmp/l.err"
ok $? "a too-long message gives one message, the chat goes on, exit 1 at the end (rc $rc)"
# the same past --ctx: the limit named is --ctx's, with the model's beside it, not "the model's 3"
printf 'hello there\n' | "$bin" chat -m "$model" --temperature 0 -n 8 --ctx 3 >/dev/null \
    2>"$tmp/c.err"
rc=$?
[ "$rc" -eq 1 ] && grep -q -- "--ctx's 3 positions (the model's are 4096).*raise --ctx" \
    "$tmp/c.err" && ! grep -q "the model's 3 positions" "$tmp/c.err"
ok $? "a message past --ctx 3 names --ctx (rc $rc: $(grep -- 'positions' "$tmp/c.err"))"

# a message of exactly --ctx tokens leaves no room for the reply: refused as too long
printf 'hello there\n' | "$bin" chat -m "$model" --temperature 0 -n 8 --ctx "$p1" >"$tmp/ce.out" \
    2>"$tmp/ce.err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "the message is $p1 tokens .* --ctx's $p1 positions" "$tmp/ce.err" &&
    ! grep -q 'context is full' "$tmp/ce.err"
ok $? "a message of $p1 tokens with --ctx $p1 is refused (rc $rc: $(cat "$tmp/ce.err"))"
# a --system longer than the context: refused at the start, not blamed on every message
sys=$(awk 'BEGIN { for (i = 0; i < 5000; i++) printf "a " }')
printf 'hello there\n' | "$bin" chat -m "$model" --temperature 0 -n 8 --system "$sys" \
    >"$tmp/ls.out" 2>"$tmp/ls.err"
rc=$?
[ "$rc" -eq 1 ] && grep -q -- "--system is .* tokens" "$tmp/ls.err" &&
    [ "$(grep -c . "$tmp/ls.err")" -eq 1 ] && [ ! -s "$tmp/ls.out" ]
ok $? "a --system longer than the context: one message at the start, exit 1 (rc $rc)"
# ... found before the weights load: a model without its safetensors fails on --system alone
mkdir "$tmp/noweights" && cp "$model/config.json" "$model"/tokenizer*.json "$tmp/noweights/"
printf 'hello there\n' | "$bin" chat -m "$tmp/noweights" --system "$sys" >/dev/null \
    2>"$tmp/nw.err"
rc=$?
[ "$rc" -eq 1 ] && [ "$(grep -c . "$tmp/nw.err")" -eq 1 ] &&
    grep -q -- "--system is .* tokens" "$tmp/nw.err"
ok $? "a --system longer than the model's positions is refused before the weights are read \
(rc $rc: $(head -c 300 "$tmp/nw.err"))"

# a NUL byte is part of the line (the history keeps message lengths, as for a reply holding one)
printf 'hello\000 there\n' | "$bin" chat -m "$model" --temperature 0 -n 1 -v >/dev/null \
    2>"$tmp/z.err"
rc=$?
pz=$(turn_field 1 prompt "$tmp/z.err")
printf 'hello\n' | "$bin" chat -m "$model" --temperature 0 -n 1 -v >/dev/null 2>"$tmp/y.err"
py=$(turn_field 1 prompt "$tmp/y.err")
[ "$rc" -eq 0 ] && [ -n "$pz" ] && [ -n "$py" ] && [ "$pz" -gt "$py" ]
ok $? "a line with a NUL byte is kept whole in the prompt ($pz > $py tokens, rc $rc)"

# a turn that reuses the cache and decodes nothing (-n 1): the report line's prefill tok/s is the
# turn line's, over the tokens the turn ran (not those it reused)
printf 'hello there\nhow are you\n' | "$bin" chat -m "$model" --temperature 0 -n 1 -v \
    >/dev/null 2>"$tmp/v1.err"
rc=$?
t2=$(grep '^mt: turn 2:' "$tmp/v1.err")
used=$(printf '%s\n' "$t2" | sed -n 's/.*, \([0-9]*\) reused from the cache; .*/\1/p')
want=$(printf '%s\n' "$t2" | sed -n 's/.* s (\([0-9.]*\) tok\/s); decode 0 tokens.*/\1/p')
got=$(grep '^mt: prefill [0-9.]* tok/s; ms/token' "$tmp/v1.err" |
    sed -n '2s/^mt: prefill \([0-9.]*\) tok\/s.*/\1/p')
[ "$rc" -eq 0 ] && [ "${used:-0}" -gt 0 ] && [ -n "$want" ] && [ "$got" = "$want" ]
ok $? "chat -v: a reusing turn's report line gives its prefill's tok/s ($got, turn: $want)"
busy=$(sed -n 's/^mt: prefill .*; CPU busy \([-0-9.]*\).*/\1/p' "$tmp/v1.err" | head -n 1)
awk -v b="${busy:--1}" 'BEGIN { exit !(b > 0 && b <= 1) }'
ok $? "chat -v: the CPU engine's busy fraction is in (0, 1] ($busy)"

printf '/help\n/nonsense\n' | "$bin" chat -m "$model" >"$tmp/h.out" 2>"$tmp/h.err"
rc=$?
[ "$rc" -eq 0 ] && grep -q '/reset' "$tmp/h.err" && grep -q '^any other line.* //' "$tmp/h.err" &&
    grep -q "unknown command '/nonsense'" \
    "$tmp/h.err" && [ ! -s "$tmp/h.out" ]
ok $? "/help lists the commands, an unknown command is named, stdout stays empty (rc $rc)"

# a command may end in blanks; a line starting with // is a message, one slash removed (the same
# reply as run -p of that message in chat's format)
printf '/quit \nhello there\n' | "$bin" chat -m "$model" -n 4 >"$tmp/q.out" 2>"$tmp/q.err"
rc=$?
[ "$rc" -eq 0 ] && [ ! -s "$tmp/q.out" ] && [ ! -s "$tmp/q.err" ]
ok $? "'/quit ' (a trailing blank) is /quit (rc $rc)"
# a tab is a blank too: after a command, and as a line of blanks alone (no message)
printf ' \t \n\t\n/quit\t\nhello there\n' | "$bin" chat -m "$model" -n 4 >"$tmp/q.out" \
    2>"$tmp/q.err"
rc=$?
[ "$rc" -eq 0 ] && [ ! -s "$tmp/q.out" ] && [ ! -s "$tmp/q.err" ]
ok $? "lines of blanks and tabs are no message, '/quit<TAB>' is /quit (rc $rc)"
# /exit is /quit's other name (what other chat programs take), and both help texts say so
printf '/exit \nhello there\n' | "$bin" chat -m "$model" -n 4 >"$tmp/q.out" 2>"$tmp/q.err"
rc=$?
printf '/help\n' | "$bin" chat -m "$model" 2>"$tmp/h2.err" >/dev/null &&
    "$bin" chat --help >"$tmp/help.out" 2>&1
[ "$rc" -eq 0 ] && [ ! -s "$tmp/q.out" ] && [ ! -s "$tmp/q.err" ] &&
    grep -q '^  /quit .*/exit' "$tmp/h2.err" && grep -q '/quit or /exit' "$tmp/help.out"
ok $? "'/exit' leaves as /quit does, and /help and --help name it (rc $rc)"
printf '//usr/bin/env: what is it?\n' | "$bin" chat -m "$model" --temperature 0 -n 8 \
    >"$tmp/sl.out" 2>"$tmp/sl.err" &&
    "$bin" run -m "$model" --device cpu --temperature 0 -n 8 \
        -p '<｜User｜>/usr/bin/env: what is it?<｜Assistant｜></think>' >"$tmp/sl.run" 2>/dev/null
rc=$?
[ "$rc" -eq 0 ] && [ -s "$tmp/sl.out" ] && cmp -s "$tmp/sl.out" "$tmp/sl.run" &&
    ! grep -q 'unknown command' "$tmp/sl.err"
ok $? "//usr/bin/env: ... is the message /usr/bin/env: ... (rc $rc)"
printf '/usr/bin/env: what is it?\n' | "$bin" chat -m "$model" -n 4 >"$tmp/u.out" 2>"$tmp/u.err"
rc=$?
[ "$rc" -eq 0 ] && [ ! -s "$tmp/u.out" ] &&
    grep -q "unknown command '/usr/bin/env: what is it?' .*starts with // is sent" "$tmp/u.err"
ok $? "an unknown command says how to send a line starting with / (rc $rc)"

# a line ended by CR LF (a file from Windows) is the message without the CR
printf 'hello there\r\n' | "$bin" chat -m "$model" --temperature 0 -n 8 >"$tmp/cr.out" 2>&1
rc=$?
[ "$rc" -eq 0 ] && cmp -s "$tmp/cr.out" "$tmp/b.out"
ok $? "a line ended by CR LF gets the reply of the line without CR (rc $rc)"
# a last line without its newline is still a message
printf 'hello there' | "$bin" chat -m "$model" --temperature 0 -n 8 >"$tmp/c.out" 2>"$tmp/c.err"
rc=$?
[ "$rc" -eq 0 ] && cmp -s "$tmp/c.out" "$tmp/b.out"
ok $? "a last line without newline gets the same reply as with one (rc $rc)"

"$bin" chat -m "$model" </dev/null >"$tmp/e.out" 2>&1
rc=$?
[ "$rc" -eq 0 ] && [ ! -s "$tmp/e.out" ]
ok $? "end of input at once: exit 0, no output (rc $rc)"

"$bin" chat -m "$model" </ >"$tmp/d.out" 2>"$tmp/d.err"
rc=$?
[ "$rc" -eq 1 ] && [ ! -s "$tmp/d.out" ] && grep -q 'cannot read stdin' "$tmp/d.err"
ok $? "stdin that cannot be read (a directory) exits 1 with a message, not as end of input (rc $rc)"

if [ -w /dev/full ]; then
    printf 'hello there\nhow are you\n' | "$bin" chat -m "$model" -n 4 -v >/dev/full \
        2>"$tmp/w.err"
    rc=$?
    [ "$rc" -eq 1 ] && grep -q 'cannot write to stdout: No space left on device' "$tmp/w.err" &&
        [ "$(grep -c '^mt: turn ' "$tmp/w.err")" -eq 1 ]
    ok $? "stdout that cannot be written stops the chat after one turn, exit 1, saying why \
(rc $rc)"
else
    ok 0 "# SKIP no /dev/full"
fi

"$bin" chat -m "$model" --temperature hot </dev/null >/dev/null 2>"$tmp/f.err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "bad --temperature 'hot'" "$tmp/f.err"
ok $? "a bad flag value exits 2 with a message (rc $rc)"
# each sampling flag's message names the flag as typed, with its range where there is one
bad=""
for a in "--top-p 1.5|--top-p must be in (0, 1]" "--top-k x|bad --top-k 'x'" \
    "--seed -1|bad --seed '-1'" "--temperature -1|--temperature must be >= 0"; do
    "$bin" chat -m "$model" ${a%%|*} </dev/null >/dev/null 2>"$tmp/f.err"
    rc=$?
    [ "$rc" -eq 2 ] && grep -qF -- "${a#*|}" "$tmp/f.err" ||
        bad="$bad [${a%%|*}: $rc $(cat "$tmp/f.err")]"
done
[ -z "$bad" ]
ok $? "sampling flags out of range or malformed: exit 2 naming the flag$bad"
"$bin" chat -m "$model" --bogus </dev/null >/dev/null 2>&1
rc1=$?
"$bin" chat -m "$model" -n 0 </dev/null >/dev/null 2>&1
rc2=$?
"$bin" chat </dev/null >/dev/null 2>&1
rc3=$?
[ "$rc1" -eq 2 ] && [ "$rc2" -eq 2 ] && [ "$rc3" -eq 2 ]
ok $? "an unknown flag, -n 0 and a missing -m exit 2 (rc $rc1 $rc2 $rc3)"
"$bin" chat -m "$tmp/nowhere" </dev/null >/dev/null 2>"$tmp/m.err"
rc=$?
[ "$rc" -eq 1 ] && [ "$(wc -l < "$tmp/m.err")" -eq 1 ] && grep -q "$tmp/nowhere" "$tmp/m.err"
ok $? "a missing model directory exits 1 with one message naming it (rc $rc)"
# a model directory without tokenizer.json: chat says it needs one
mkdir "$tmp/notok" && for f in "$model"/*; do ln -s "$f" "$tmp/notok/"; done &&
    rm "$tmp/notok/tokenizer.json"
"$bin" chat -m "$tmp/notok" </dev/null >/dev/null 2>"$tmp/nt.err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "the model directory needs its tokenizer.json" "$tmp/nt.err"
ok $? "a model without tokenizer.json exits 1 saying chat needs it (rc $rc: \
$(tail -n 1 "$tmp/nt.err"))"
# BOS, one rule for run -p and chat: tokenizer_config.json's bos_token, else config.json's
# bos_token_id (a token of the vocabulary), else the id of <｜begin▁of▁sentence｜>; none: a warning
bos_model() { # bos_model NAME: the model without tokenizer_config.json, in $tmp/NAME
    mkdir "$tmp/$1" && for f in "$model"/*; do ln -s "$f" "$tmp/$1/"; done &&
        rm "$tmp/$1/tokenizer_config.json"
}
logits_t() { od -A n -t d4 -j 8 -N 4 "$1" | tr -d ' '; } # the positions of a --dump-logits file
bos_model nocfg
hello=$(printf hello | "$bin" tokenize -m "$model" | tr ' ' ,)
"$bin" run -m "$model" --device cpu -p hello -n 0 --dump-logits "$tmp/bos1.bin" 2>/dev/null &&
    "$bin" run -m "$tmp/nocfg" --device cpu -p hello -n 0 --dump-logits "$tmp/bos2.bin" \
        2>"$tmp/bos2.err"
rc=$?
[ "$rc" -eq 0 ] && cmp -s "$tmp/bos1.bin" "$tmp/bos2.bin" && ! grep -q BOS "$tmp/bos2.err"
ok $? "no tokenizer_config.json: run -p still prepends BOS \
($(logits_t "$tmp/bos2.bin") positions for $hello, rc $rc)"
printf 'hello there\n' | "$bin" chat -m "$tmp/nocfg" --temperature 0 -n 8 >"$tmp/bos.out" \
    2>/dev/null &&
    "$bin" run -m "$tmp/nocfg" --device cpu --temperature 0 -n 8 \
        -p '<｜User｜>hello there<｜Assistant｜></think>' >"$tmp/bos.run" 2>/dev/null
rc=$?
[ "$rc" -eq 0 ] && cmp -s "$tmp/bos.out" "$tmp/b.out" && cmp -s "$tmp/bos.run" "$tmp/b.out"
ok $? "no tokenizer_config.json: chat and run -p of chat's prompt reply as with it (rc $rc)"
# config.json's bos_token_id comes before the text's id
bos_model cfgbos
rm "$tmp/cfgbos/config.json" &&
    sed 's/"bos_token_id": *0/"bos_token_id": 5/' "$model/config.json" >"$tmp/cfgbos/config.json"
"$bin" run -m "$tmp/cfgbos" --device cpu -p hello -n 0 --dump-logits "$tmp/bos3.bin" \
    2>/dev/null &&
    "$bin" run -m "$tmp/cfgbos" --device cpu --prompt-ids "5,$hello" -n 0 \
        --dump-logits "$tmp/bos4.bin" 2>/dev/null
rc=$?
[ "$rc" -eq 0 ] && grep -q '"bos_token_id": 5' "$tmp/cfgbos/config.json" &&
    cmp -s "$tmp/bos3.bin" "$tmp/bos4.bin"
ok $? "no tokenizer_config.json: config.json's bos_token_id 5 is the BOS (rc $rc)"
# no BOS anywhere: its text renamed in tokenizer.json, config.json's id 1000 within the model's
# 1024 but no token of the tokenizer's 607
bos_model nobos
rm "$tmp/nobos/config.json" "$tmp/nobos/tokenizer.json" &&
    sed 's/"bos_token_id": *0/"bos_token_id": 1000/' "$model/config.json" \
        >"$tmp/nobos/config.json" &&
    sed 's/<｜begin▁of▁sentence｜>/<｜no▁bos｜>/g' "$model/tokenizer.json" \
        >"$tmp/nobos/tokenizer.json"
"$bin" run -m "$tmp/nobos" --device cpu -p hello -n 0 --dump-logits "$tmp/bos5.bin" \
    2>"$tmp/bos5.err"
rc=$?
[ "$rc" -eq 0 ] && [ "$(grep -c 'no BOS is prepended' "$tmp/bos5.err")" -eq 1 ] &&
    [ "$(logits_t "$tmp/bos5.bin")" -eq "$(echo "$hello" | tr , '\n' | grep -c .)" ]
ok $? "no BOS token at all: one warning, the prompt is the text's ids alone (rc $rc)"
# the defaults --help names: -n 512, --temperature 1, --top-p 0.95, --top-k 0, --seed 0 (the
# reply runs to its 512 tokens, -v says 511 decoded after the prefill's first)
printf 'hello there\n' | "$bin" chat -m "$model" -v >"$tmp/df.out" 2>"$tmp/df.err" &&
    printf 'hello there\n' | "$bin" chat -m "$model" -n 512 --temperature 1 --top-p 0.95 \
        --top-k 0 --seed 0 >"$tmp/dx.out" 2>/dev/null
rc=$?
dd=$(turn_field 1 decode "$tmp/df.err")
[ "$rc" -eq 0 ] && [ -s "$tmp/df.out" ] && cmp -s "$tmp/df.out" "$tmp/dx.out" && [ "$dd" = 511 ]
ok $? "no sampling flags: the reply of -n 512 --temperature 1 --top-p 0.95 --top-k 0 --seed 0 \
(decode $dd, rc $rc)"
# a --system is kept across /reset: the turn after it has the first turn's prompt
printf 'hello there\n/reset\nhello there\n' | "$bin" chat -m "$model" --temperature 0 -n 1 \
    --system "be brief" -v >/dev/null 2>"$tmp/sr.err"
rc=$?
s1=$(turn_field 1 prompt "$tmp/sr.err")
s2=$(turn_field 2 prompt "$tmp/sr.err")
[ "$rc" -eq 0 ] && [ -n "$s1" ] && [ "$s1" = "$ps" ] && [ "$s2" = "$s1" ]
ok $? "--system is kept across /reset (prompt $s1, then $s2 tokens; with it $ps; rc $rc)"
# --system against --ctx: BOS + its text is n tokens; the context must hold more than those
ns=$(printf '<｜begin▁of▁sentence｜>be brief' | "$bin" tokenize -m "$model" --special | wc -w)
printf 'hello there\n' | "$bin" chat -m "$model" --system "be brief" --ctx "$ns" >"$tmp/sc.out" \
    2>"$tmp/sc.err"
rc=$?
[ "$rc" -eq 1 ] && [ ! -s "$tmp/sc.out" ] && [ "$(grep -c . "$tmp/sc.err")" -eq 1 ] &&
    grep -q -- "--system is $ns tokens .* holds $ns positions" "$tmp/sc.err"
ok $? "--system of $ns tokens with --ctx $ns: refused at the start (rc $rc: $(cat "$tmp/sc.err"))"
# one more position holds it; then a message that does not fit is the message's fault, not the
# conversation's (the system prompt is no earlier turn)
printf 'hello there\n' | "$bin" chat -m "$model" --system "be brief" --ctx $((ns + 1)) \
    >/dev/null 2>"$tmp/sd.err"
rc=$?
[ "$rc" -eq 1 ] && ! grep -q -- '--system' "$tmp/sd.err" &&
    grep -q "the message is $ps tokens in the prompt format, and --ctx's $((ns + 1)) positions" \
        "$tmp/sd.err"
ok $? "--system with --ctx $((ns + 1)): accepted; a message of $ps tokens is named as the message \
(rc $rc: $(cat "$tmp/sd.err"))"
# a reply that reaches --ctx says the context is full; a reply cut by -n says nothing; the next
# message past --ctx names the conversation
printf 'hello there\nhow are you\n' | "$bin" chat -m "$model" --temperature 0 -n 8 --ctx 12 \
    >/dev/null 2>"$tmp/cf.err"
rc=$?
[ "$rc" -eq 1 ] && [ "$(grep -c 'the context is full (12 tokens)' "$tmp/cf.err")" -eq 1 ] &&
    grep -q "the conversation is [0-9]* tokens with this message, and --ctx's 12 pos" \
        "$tmp/cf.err" && [ ! -s "$tmp/b.err" ]
ok $? "a reply that fills --ctx 12 says so, the next message names the conversation, a reply \
cut by -n says nothing (rc $rc: $(cat "$tmp/cf.err" "$tmp/b.err" | tr '\n' ' '))"
"$bin" chat -m "$model" extra </dev/null >/dev/null 2>"$tmp/x.err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "unexpected argument 'extra'" "$tmp/x.err"
ok $? "an argument after the flags is a usage error, messages come on stdin (rc $rc)"
printf 'hello there\n' | "$bin" chat -m "$tmp/nobos" --temperature 0 -n 1 >/dev/null \
    2>"$tmp/bos6.err"
rc=$?
[ "$rc" -eq 0 ] && [ "$(grep -c 'no BOS is prepended' "$tmp/bos6.err")" -eq 1 ]
ok $? "no BOS token at all: chat warns once too (rc $rc: $(cat "$tmp/bos6.err"))"
"$bin" chat --help | grep -q -- '--think'
ok $? "--help lists the flags"
tap_exit
