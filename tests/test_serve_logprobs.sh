#!/bin/sh
# SPDX-License-Identifier: MIT
# test_serve_logprobs.sh - `moetier serve`'s logprobs (chat: logprobs + top_logprobs; completion:
# logprobs N) against the model itself: each answer token's log-probability and the most likely
# ones beside it equal the log-softmax of the logits `moetier run --dump-logits` writes at that
# position (also when sampling at another temperature: they are the model's, not the sampler's);
# a stream's chunks carry the same entries as the whole reply; reasoning tokens have none; bad
# values are refused.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
. "$MT_SRCDIR/tests/serve/lib_serve.sh"
need curl "the HTTP client of this test; apt-get install curl"
need jq "JSON in shell tests; apt-get install jq"

make_tmp serve-logprobs
make_model
# The server's answer comes from decode steps, run's rows from one prefill over the same ids.
# With the default bf16 latent cache the two can round a cached latent apart (on the GPU engine
# measured 5.5e-4 in a log-probability); with an fp32 cache both paths agree to 5e-6 there, and
# 2e-4 is left for them (a wrong row or temperature moves a log-probability by far more).
start_server "$tmp/a.log" --kv-dtype f32

# model_logprobs IDS N: the log-softmax rows of the last N positions of `moetier run` over IDS
# (the distributions the next N tokens were drawn from), one JSON array of rows
model_logprobs() {
    "$bin" run -m "$model" --kv-dtype f32 --threads 1 --prompt-ids "$1" -n 0 \
        --dump-logits "$tmp/l.bin" >/dev/null 2>&1 || return 1
    vocab=$(od -An -td4 -j 12 -N 4 "$tmp/l.bin" | tr -d ' ')
    od -An -tf4 -v -j 16 "$tmp/l.bin" | tr -s ' ' '\n' | sed '/^$/d' |
        jq -s -c --argjson v "$vocab" --argjson n "$2" '[range(length / $v - $n; length / $v)
            as $r | .[$r * $v:($r + 1) * $v] | max as $m |
            ($m + (map(. - $m | exp) | add | log)) as $l | map(. - $l)]'
}
# check_against FILE: FILE's logprobs (chat entries, top_logprobs kept) against the model's rows
# for its prompt_token_ids and token_ids: each token's own log-probability, and the top ones as
# the largest of the row, within 2e-4
check_against() {
    pids=$(jq -r '.prompt_token_ids | join(",")' "$1")
    ids=$(jq -r '.choices[0].token_ids | join(",")' "$1")
    cnt=$(jq ".choices[0].token_ids | length" "$1")
    all=$(jq -r '(.prompt_token_ids + .choices[0].token_ids[:-1]) | join(",")' "$1")
    model_logprobs "$all" "$cnt" >"$tmp/rows" || return 1
    jq -e -n --slurpfile rows "$tmp/rows" --slurpfile r "$1" '
        $r[0] as $r | $rows[0] as $rows | $r.choices[0].token_ids as $ids |
        [$r.choices[0].logprobs.content | to_entries[] | .key as $k | .value as $e |
         ($rows[$k] | sort | reverse) as $sorted |
         (($e.logprob - $rows[$k][$ids[$k]]) | fabs) < 2e-4 and
         ([$e.top_logprobs | to_entries[] |
           ((.value.logprob - $sorted[.key]) | fabs) < 2e-4] | all)] |
        length == ($ids | length) and all' >/dev/null
}

echo "1..17"

post /v1/chat/completions '{"messages": [{"role": "user", "content": "Hello there"}],
    "max_tokens": 6, "temperature": 0, "logprobs": true, "top_logprobs": 5,
    "return_token_ids": true}'
cp "$tmp/body" "$tmp/greedy"
[ "$code" = 200 ] && jq -e '.choices[0].logprobs.content | length == 6 and
    all(.top_logprobs | length == 5) and .[0].bytes != null' "$tmp/greedy" >/dev/null
ok $? "chat, logprobs with top_logprobs 5: an entry for each of the 6 tokens, 5 beside each"
check_against "$tmp/greedy"
ok $? "greedy: each token's log-probability and its top 5 = the log-softmax of moetier run's logits"
jq -e '[.choices[0].logprobs.content[] | .top_logprobs[0].logprob == .logprob and
        .top_logprobs[0].bytes == .bytes] | all' "$tmp/greedy" >/dev/null
ok $? "greedy: each token is the first of its top_logprobs"
# logprobs without top_logprobs (OpenAI's default of 0 beside each): the same log-probabilities
post /v1/chat/completions '{"messages": [{"role": "user", "content": "Hello there"}],
    "max_tokens": 6, "temperature": 0, "logprobs": true}'
[ "$code" = 200 ] && jq -e -n --slurpfile g "$tmp/greedy" --slurpfile r "$tmp/body" '
    $g[0].choices[0].logprobs.content as $g | $r[0].choices[0].logprobs.content as $c |
    ($c | length) == ($g | length) and
    ([range($c | length) as $k | $c[$k].token == $g[$k].token and $c[$k].top_logprobs == [] and
      ($c[$k].logprob | type) == "number" and (($c[$k].logprob - $g[$k].logprob) | fabs) < 2e-4]
     | all)' >/dev/null
ok $? "logprobs without top_logprobs: each token's log-probability as with top_logprobs 5, none \
beside it ($(jq -c '[.choices[0].logprobs.content[] | .logprob]' "$tmp/body"))"

post /v1/chat/completions '{"messages": [{"role": "user", "content": "Hello there"}],
    "max_tokens": 6, "temperature": 0.6, "seed": 11, "logprobs": true, "top_logprobs": 2,
    "return_token_ids": true}'
cp "$tmp/body" "$tmp/sampled"
[ "$code" = 200 ] && check_against "$tmp/sampled"
ok $? "sampled at temperature 0.6: the log-probabilities are still the model's (temperature 1)"

# streamed: the chunks' entries, in order, are the whole reply's. The whole reply is asked for
# after the stream, so that both find the same cached prefix and take the same path (the greedy
# reply above read its prompt in one prefill: its last bits can differ, see the top)
req='{"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 6,
     "temperature": 0, "logprobs": true, "top_logprobs": 5'
curl -sN --max-time 60 "$url/v1/chat/completions" -H "Content-Type: application/json" \
    -d "$req, \"stream\": true}" >"$tmp/sse"
post /v1/chat/completions "$req}"
sed -n 's/^data: //p' "$tmp/sse" | grep -v '^\[DONE\]$' >"$tmp/events"
jq -s -c '[.[].choices[0].logprobs.content // [] | .[]]' "$tmp/events" >"$tmp/streamed"
jq -c '.choices[0].logprobs.content' "$tmp/body" >"$tmp/whole"
cmp -s "$tmp/streamed" "$tmp/whole"
ok $? "stream: the chunks' logprobs, joined, equal the unstreamed reply's"
# ... and each chunk carries the entries of the tokens whose text it holds (OpenAI's chunks do):
# token 65 ("_", forced by logit_bias) four times is four chunks of one entry each (logprobs
# without top_logprobs: each with its log-probability, the model's), and the last chunk
# (finish_reason) none
curl -sN --max-time 60 "$url/v1/chat/completions" -H "Content-Type: application/json" \
    -d '{"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 4,
         "temperature": 0, "ignore_eos": true, "logit_bias": {"65": 100}, "logprobs": true,
         "stream": true}' >"$tmp/sse"
sed -n 's/^data: //p' "$tmp/sse" | grep -v '^\[DONE\]$' >"$tmp/events"
jq -s -e '[.[].choices[0] | select((.delta.content // "") != "")] as $text |
    ($text | length) == 4 and
    ($text | all((.logprobs.content | map(.token) | add) == .delta.content)) and
    all($text[].logprobs.content[]; (.logprob | type) == "number" and .logprob <= 0) and
    ([.[].choices[0] | select(.finish_reason != null) | .logprobs.content // [] | length] ==
     [0])' "$tmp/events" >/dev/null
ok $? "stream: each chunk's logprobs are those of its text's tokens ($(jq -s -c \
    '[.[].choices[0] | [.delta.content, (.logprobs.content // [] | map(.token))]]' \
    "$tmp/events"))"

# completions: logprobs is a count
post /v1/completions '{"prompt": "The capital of France", "max_tokens": 5, "temperature": 0,
    "logprobs": 2, "return_token_ids": true}'
cp "$tmp/body" "$tmp/compl"
pids=$(jq -r '(.prompt_token_ids + .choices[0].token_ids[:-1]) | join(",")' "$tmp/compl")
model_logprobs "$pids" 5 >"$tmp/rows" &&
    [ "$code" = 200 ] && jq -e -n --slurpfile rows "$tmp/rows" --slurpfile r "$tmp/compl" '
    $r[0].choices[0] as $c | $c.logprobs as $l |
    ($l.tokens | length) == 5 and ($l.top_logprobs | all(length <= 2)) and
    $l.text_offset[0] == 0 and ($l.text_offset | . == sort) and
    ([range(5) as $k | (($l.token_logprobs[$k] - $rows[0][$k][$c.token_ids[$k]]) | fabs) < 2e-4]
     | all)' >/dev/null
ok $? "completion, logprobs 2: tokens, token_logprobs (= the model's), top 2 each, text_offset"

# echo: the prompt (token ids here, 300 of them: three pieces of the prompt's logits) begins the
# text, and its tokens' log-probabilities begin the lists: the first null, each next from the
# row of the position before it
pids=$(seq 300 | awk '{ printf "%s%d", (NR > 1 ? "," : ""), 3 + $1 % 90 }') # ASCII text
post /v1/completions "{\"prompt\": [$pids], \"max_tokens\": 0, \"logprobs\": 1, \"echo\": true}"
cp "$tmp/body" "$tmp/echo"
model_logprobs "$pids" 300 >"$tmp/rows" &&
    [ "$code" = 200 ] && jq -e -n --slurpfile rows "$tmp/rows" --slurpfile r "$tmp/echo" \
    --argjson p "[$pids]" '$r[0].choices[0].logprobs as $l |
    ($l.tokens | length) == 300 and $l.token_logprobs[0] == null and $l.top_logprobs[0] == null
    and ([range(1; 300) as $k |
          (($l.token_logprobs[$k] - $rows[0][$k - 1][$p[$k]]) | fabs) < 2e-4] | all) and
    $r[0].usage.completion_tokens == 0 and $r[0].choices[0].finish_reason == "length"' \
    >/dev/null &&
    [ "$(jq -j '.choices[0].text' "$tmp/echo")" = \
      "$(echo "$pids" | "$bin" tokenize -m "$model" --decode)" ]
ok $? "echo, 300 prompt ids, max_tokens 0: the prompt's text and its 299 log-probabilities = \
the model's"

# echo streamed, with 3 tokens generated: the same text and lists as unstreamed
body='{"prompt": "The capital of France", "max_tokens": 3, "temperature": 0, "logprobs": 2,
       "echo": true'
post /v1/completions "$body}"
cp "$tmp/body" "$tmp/echo2"
curl -sN --max-time 60 "$url/v1/completions" -H "Content-Type: application/json" \
    -d "$body, \"stream\": true}" >"$tmp/sse"
sed -n 's/^data: //p' "$tmp/sse" | grep -v '^\[DONE\]$' >"$tmp/events"
[ "$(jq -j '.choices[0].text' "$tmp/events")" = "$(jq -j '.choices[0].text' "$tmp/echo2")" ] &&
    [ "$(jq -s -c '[.[].choices[0].logprobs // empty | .token_logprobs[]]' "$tmp/events")" = \
      "$(jq -c '.choices[0].logprobs.token_logprobs' "$tmp/echo2")" ] &&
    jq -e '(.choices[0].logprobs.tokens | length) == .usage.prompt_tokens + 3 and
           (.choices[0].text | startswith("<｜begin▁of▁sentence｜>The capital of France"))' \
        "$tmp/echo2" >/dev/null
ok $? "echo streamed: the same text and log-probabilities; a text prompt's BOS is in the echo"

post /v1/completions '{"prompt": [5, 6, 70000], "max_tokens": 2}'
[ "$code" = 400 ] && jq -e '.error.param == "prompt"' "$tmp/body" >/dev/null
ok $? "prompt ids outside the vocabulary: 400 ($(jq -r .error.message "$tmp/body"))"
post /v1/completions '{"prompt": [5, -6], "max_tokens": 2}'
[ "$code" = 400 ] && jq -e '.error.param == "prompt"' "$tmp/body" >/dev/null
ok $? "a negative prompt id: 400 ($(jq -r .error.message "$tmp/body"))"
post /v1/completions '{"prompt": [[]], "max_tokens": 2}'
[ "$code" = 400 ] && jq -e '.error.param == "prompt"' "$tmp/body" >/dev/null
ok $? "an empty array of prompt ids: 400 ($(jq -r .error.message "$tmp/body"))"

# thinking mode: the reasoning's tokens have no entry (a random model writes no </think>)
post /v1/chat/completions '{"messages": [{"role": "user", "content": "think"}],
    "max_tokens": 4, "temperature": 0, "logprobs": true,
    "chat_template_kwargs": {"thinking": true}}'
[ "$code" = 200 ] && jq -e '(.choices[0].message.reasoning_content | length) > 0 and
    .choices[0].logprobs.content == []' "$tmp/body" >/dev/null
ok $? "thinking: reasoning only, so logprobs.content is empty"

post /v1/chat/completions '{"messages": [{"role": "user", "content": "q"}], "top_logprobs": 3}'
[ "$code" = 400 ] && jq -e '.error.param == "top_logprobs"' "$tmp/body" >/dev/null
ok $? "top_logprobs without logprobs: 400 ($(jq -r .error.message "$tmp/body"))"
post /v1/chat/completions '{"messages": [{"role": "user", "content": "q"}], "logprobs": true,
    "top_logprobs": 21}'
[ "$code" = 400 ] && jq -e '.error.param == "top_logprobs"' "$tmp/body" >/dev/null
ok $? "top_logprobs 21: 400 ($(jq -r .error.message "$tmp/body"))"
post /v1/completions '{"prompt": "q", "logprobs": 6}'
[ "$code" = 400 ] && jq -e '.error.param == "logprobs"' "$tmp/body" >/dev/null
ok $? "a completion's logprobs 6: 400 ($(jq -r .error.message "$tmp/body"))"
tap_exit
