#!/bin/sh
# SPDX-License-Identifier: MIT
# test_serve_sampling.sh - how `moetier serve` samples a request beyond temperature, top-p and
# top-k. n > 1: the choices run one after another on the one engine, choice i sampling with
# seed + i (so each equals a request of n = 1 with that seed), each reusing the prompt's cache;
# the usage adds up their tokens; a stream sends each choice's chunks with its index and one
# usage at the end; logprobs and echo go with every choice. logit_bias forces or bans tokens;
# presence and frequency penalties change a greedy reply; an id outside the vocabulary is a 400.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
. "$MT_SRCDIR/tests/serve/lib_serve.sh"
need curl "the HTTP client of this test; apt-get install curl"
need jq "JSON in shell tests; apt-get install jq"

make_tmp serve-sampling
make_model
start_server "$tmp/a.log"

echo "1..19"

post /v1/completions '{"prompt": "Once upon", "n": 3, "max_tokens": 6, "temperature": 1,
    "seed": 7, "ignore_eos": true, "return_token_ids": true}'
cp "$tmp/body" "$tmp/three"
[ "$code" = 200 ] && jq -e '(.choices | length) == 3 and ([.choices[].index] == [0, 1, 2]) and
    .usage.completion_tokens == 18 and all(.choices[]; (.token_ids | length) == 6)' \
    "$tmp/three" >/dev/null
ok $? "n = 3: three choices with indexes 0, 1, 2 and 6 tokens each; usage 18"
same=0
for i in 0 1 2; do
    post /v1/completions "{\"prompt\": \"Once upon\", \"max_tokens\": 6, \"temperature\": 1,
        \"seed\": $((7 + i)), \"ignore_eos\": true, \"return_token_ids\": true}"
    [ "$(jq -c '.choices[0].token_ids' "$tmp/body")" = \
      "$(jq -c ".choices[$i].token_ids" "$tmp/three")" ] || same=1
done
ok $same "choice i = a request of n = 1 with seed 7 + i"
[ "$(jq -c '[.choices[].token_ids] | unique | length' "$tmp/three")" -gt 1 ]
ok $? "the sampled choices differ"
grep -q "(choice 2 of 3): [0-9]* prompt tokens ([1-9][0-9]* cached)" "$tmp/a.log" &&
    jq -e '.usage.prompt_tokens == (.prompt_token_ids | length) and
        .usage.prompt_tokens_details.cached_tokens == 0' "$tmp/three" >/dev/null
ok $? "the second choice reuses the prompt's cache: $(grep 'choice 2 of 3' "$tmp/a.log"); the \
usage counts the prompt once, with what its first run found cached on this fresh server: none \
($(jq -c .usage "$tmp/three"))"

post /v1/chat/completions '{"messages": [{"role": "user", "content": "Hello there"}], "n": 2,
    "max_tokens": 5, "temperature": 0, "logprobs": true, "top_logprobs": 1}'
cp "$tmp/body" "$tmp/greedy"
[ "$code" = 200 ] && jq -e '(.choices | length) == 2 and
    .choices[0].message.content == .choices[1].message.content and
    (.choices[0].logprobs.content | length) > 0 and
    .choices[0].logprobs == .choices[1].logprobs' "$tmp/greedy" >/dev/null
ok $? "greedy n = 2 with logprobs: two equal choices, each with its log-probabilities"

curl -sN --max-time 60 "$url/v1/chat/completions" -H "Content-Type: application/json" \
    -d '{"messages": [{"role": "user", "content": "Hello there"}], "n": 2, "max_tokens": 5,
         "temperature": 0, "stream": true, "stream_options": {"include_usage": true},
         "return_token_ids": true}' >"$tmp/sse"
sed -n 's/^data: //p' "$tmp/sse" | grep -v '^\[DONE\]$' >"$tmp/events"
c0=$(jq -j 'select(.choices[0].index == 0) | .choices[0].delta.content // ""' "$tmp/events")
c1=$(jq -j 'select(.choices[0].index == 1) | .choices[0].delta.content // ""' "$tmp/events")
[ "$c0" = "$(jq -j '.choices[0].message.content' "$tmp/greedy")" ] && [ "$c0" = "$c1" ] &&
    [ "$(jq -s '[.[] | select(.choices[0].delta.role == "assistant")] | length' \
        "$tmp/events")" = 2 ] &&
    [ "$(jq -s '[.[] | select(.choices[0].finish_reason != null)] | length' "$tmp/events")" = 2 ] &&
    tail -n 1 "$tmp/events" | jq -e '.choices == [] and .usage.completion_tokens == 10 and
        .token_ids == null and .prompt_token_ids == null' >/dev/null &&
    [ "$(grep -c '^data: \[DONE\]' "$tmp/sse")" = 1 ]
ok $? "streamed n = 2: each choice's role, text and finish under its index, one usage (10) with \
no token ids (whose would they be), one [DONE]"

post /v1/completions '{"prompt": "The capital", "n": 2, "max_tokens": 3, "temperature": 0,
    "echo": true, "logprobs": 1}'
[ "$code" = 200 ] && jq -e 'all(.choices[]; (.text | startswith("<｜begin▁of▁sentence｜>The capital"))
    and .logprobs.token_logprobs[0] == null) and
    .choices[0].logprobs == .choices[1].logprobs' "$tmp/body" >/dev/null
ok $? "echo with n = 2: each choice's text and log-probabilities begin with the prompt"
id=$(jq -r .id "$tmp/body")
grep -q "$id completion (choice 2 of 2): [0-9]* prompt tokens ([1-9][0-9]* cached)" "$tmp/a.log"
ok $? "... the second choice copies the prompt's log-probabilities and reuses its cache: \
$(grep "$id completion (choice 2" "$tmp/a.log")"

# logit_bias: +100 on a token makes a greedy reply nothing but it; -100 on the first token of
# the plain reply takes that token out
post /v1/completions '{"prompt": "Once upon", "max_tokens": 5, "temperature": 0,
    "ignore_eos": true, "return_token_ids": true}'
plain=$(jq -c '.choices[0].token_ids' "$tmp/body")
first=$(jq '.choices[0].token_ids[0]' "$tmp/body")
post /v1/completions '{"prompt": "Once upon", "max_tokens": 5, "temperature": 0,
    "ignore_eos": true, "return_token_ids": true, "logit_bias": {"65": 100}}'
[ "$code" = 200 ] && [ "$(jq -c '.choices[0].token_ids' "$tmp/body")" = "[65,65,65,65,65]" ]
ok $? "logit_bias {\"65\": 100}: five times 65 ($(jq -c '.choices[0].token_ids' "$tmp/body"))"
post /v1/completions "{\"prompt\": \"Once upon\", \"max_tokens\": 5, \"temperature\": 0,
    \"ignore_eos\": true, \"return_token_ids\": true, \"logit_bias\": {\"$first\": -100}}"
[ "$code" = 200 ] && jq -e --argjson f "$first" 'all(.choices[0].token_ids[]; . != $f)' \
    "$tmp/body" >/dev/null
ok $? "logit_bias {\"$first\": -100}: the plain reply's first token ($plain) never comes"
# presence and frequency penalties of 2: a greedy reply of 60 tokens changes, and holds at
# least as many distinct tokens (the exact rule is test_engine's)
post /v1/completions '{"prompt": "Once upon", "max_tokens": 60, "temperature": 0,
    "ignore_eos": true, "return_token_ids": true}'
plain60=$(jq -c '.choices[0].token_ids' "$tmp/body")
post /v1/completions '{"prompt": "Once upon", "max_tokens": 60, "temperature": 0,
    "ignore_eos": true, "return_token_ids": true, "presence_penalty": 2,
    "frequency_penalty": 2}'
[ "$code" = 200 ] && [ "$(jq -c '.choices[0].token_ids' "$tmp/body")" != "$plain60" ] &&
    [ "$(jq '.choices[0].token_ids | unique | length' "$tmp/body")" -ge \
      "$(echo "$plain60" | jq 'unique | length')" ]
ok $? "penalties of 2: the greedy reply changes, with at least as many distinct tokens \
($(jq '.choices[0].token_ids | unique | length' "$tmp/body") vs \
$(echo "$plain60" | jq 'unique | length') of 60)"
post /v1/completions '{"prompt": "q", "logit_bias": {"5000": 1}}'
[ "$code" = 400 ] && jq -e '.error.param == "logit_bias"' "$tmp/body" >/dev/null
ok $? "logit_bias on an id outside the vocabulary: 400 ($(jq -r .error.message "$tmp/body"))"
vocab=$(jq .vocab_size "$model/config.json")
post /v1/completions "{\"prompt\": \"q\", \"max_tokens\": 1, \"logit_bias\": {\"$vocab\": 1}}"
c1=$code
last=$((vocab - 1))
post /v1/completions "{\"prompt\": \"q\", \"max_tokens\": 1, \"logit_bias\": {\"$last\": 1}}"
[ "$c1" = 400 ] && [ "$code" = 200 ]
ok $? "logit_bias on id $vocab, the first past the vocabulary of $vocab: 400 ($c1); on the last, \
$last: 200 ($code)"
# the end-of-text token forced: the reply ends at once, by the model (finish_reason stop)
eos=$(printf '<｜end▁of▁sentence｜>' | "$bin" tokenize -m "$model" --special)
post /v1/completions "{\"prompt\": \"q\", \"max_tokens\": 5, \"logit_bias\": {\"$eos\": 100}}"
[ "$code" = 200 ] && jq -e '.choices[0].finish_reason == "stop" and
    .usage.completion_tokens == 0' "$tmp/body" >/dev/null
ok $? "logit_bias forcing the end-of-text token ($eos): finish_reason stop, no tokens \
($(jq -c '[.choices[0].finish_reason, .usage.completion_tokens]' "$tmp/body"))"

# several prompts in one completion request: prompt p's choice i is choice p * n + i, and equals
# a request of that prompt alone with seed + i; the usage adds up the prompts
post /v1/completions '{"prompt": ["Once upon", "The capital of"], "n": 2, "max_tokens": 4,
    "temperature": 1, "seed": 7, "ignore_eos": true, "return_token_ids": true}'
cp "$tmp/body" "$tmp/two"
same=0
ptok=0
for p in 0 1; do
    if [ $p = 0 ]; then text="Once upon"; else text="The capital of"; fi
    for i in 0 1; do
        post /v1/completions "{\"prompt\": \"$text\", \"max_tokens\": 4, \"temperature\": 1,
            \"seed\": $((7 + i)), \"ignore_eos\": true, \"return_token_ids\": true}"
        c=$((p * 2 + i))
        [ "$(jq -c '[.choices[0].token_ids, .prompt_token_ids]' "$tmp/body")" = \
          "$(jq -c ".choices[$c] | [.token_ids, .prompt_token_ids]" "$tmp/two")" ] || same=1
    done
    ptok=$((ptok + $(jq .usage.prompt_tokens "$tmp/body")))
done
[ "$same" = 0 ] && jq -e --argjson pt "$ptok" '([.choices[].index] == [0, 1, 2, 3]) and
    .usage.prompt_tokens == $pt and .usage.completion_tokens == 16 and
    (has("prompt_token_ids") | not)' "$tmp/two" >/dev/null
ok $? "two prompts, n = 2: choices 0-3, prompt p's choice i = a request of it alone with seed \
7 + i (ids and prompt ids); usage $ptok prompt tokens"
grep -q "(prompt 2 of 2, choice 1 of 2)" "$tmp/a.log"
ok $? "the log names each prompt's choices: $(grep -c '(prompt [0-9] of 2' "$tmp/a.log") lines"
curl -sN --max-time 60 "$url/v1/completions" -H "Content-Type: application/json" \
    -d '{"prompt": ["Once upon", "The capital of"], "n": 2, "max_tokens": 4, "temperature": 1,
         "seed": 7, "ignore_eos": true, "stream": true}' >"$tmp/sse"
sed -n 's/^data: //p' "$tmp/sse" | grep -v '^\[DONE\]$' >"$tmp/events"
streamed=0
for c in 0 1 2 3; do
    [ "$(jq -j "select(.choices[0].index == $c) | .choices[0].text" "$tmp/events")" = \
      "$(jq -j ".choices[$c].text" "$tmp/two")" ] || streamed=1
done
ok $streamed "streamed: each of the 4 choices' text under its index"
post /v1/completions '{"prompt": [[3, 9], [3, 999999]], "max_tokens": 2}'
[ "$code" = 400 ] && jq -e '.error.param == "prompt" and (.error.message |
    startswith("prompt[1]: "))' "$tmp/body" >/dev/null
ok $? "a bad second prompt: 400 before anything runs ($(jq -r .error.message "$tmp/body"))"

post /v1/chat/completions '{"messages": [{"role": "user", "content": "q"}], "n": 17}'
[ "$code" = 400 ] && jq -e '.error.param == "n"' "$tmp/body" >/dev/null
ok $? "n = 17: 400 ($(jq -r .error.message "$tmp/body"))"
tap_exit
