#!/bin/sh
# SPDX-License-Identifier: MIT
# test_serve_tools.sh - `moetier serve` with tool_choice "required" or a named function: the
# server writes the start of the calls block for the model (after its reasoning in thinking
# mode) and the model goes on from there. A tiny random model never finishes a block in V3.2's
# format, so each reply comes back as text that begins with the forced start; that is what is
# checked, with the ids fed: greedy replies equal `moetier run` on exactly those ids. The server
# runs with MT_SERVE_THINK_AFTER=3 (a test hook: the third reasoning id counts as </think>, which
# a random model would not write), and with --stream-keepalive 0.02: a stream whose block is
# held back for 400 tokens carries keep-alive comments, and reads the same without them.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
. "$MT_SRCDIR/tests/serve/lib_serve.sh"
need curl "the HTTP client of this test; apt-get install curl"
need jq "JSON in shell tests; apt-get install jq"

make_tmp serve-tools
make_model
MT_SERVE_THINK_AFTER=3 start_server "$tmp/a.log" --stream-keepalive 0.02

chat() { post /v1/chat/completions "$1"; }
tools='"tools": [{"type": "function", "function": {"name": "get_weather", "parameters":
       {"type": "object"}}}, {"type": "function", "function": {"name": "add"}}]'
# the forced starts, as text (JSON strings) and as ids
block='\n\n<｜DSML｜function_calls>\n'
named="$block"'<｜DSML｜invoke name=\"get_weather\">\n'
ids_of() { printf '%b' "$(printf '%s' "$1" | sed 's/\\"/"/g')" | "$bin" tokenize -m "$model"; }
block_ids=$(ids_of "$block" | tr ' ' ',')
named_ids=$(ids_of "$named" | tr ' ' ',')
[ -n "$block_ids" ] && [ -n "$named_ids" ] || bail_out "cannot tokenize the forced starts"
# greedy PROMPT-IDS N: what `moetier run` generates after exactly those ids
greedy() {
    "$bin" run -m "$model" --threads 1 --prompt-ids "$1" -n "$2" --print-ids 2>/dev/null |
        tr ' ' ','
}

echo "1..11"

# "required", chat mode: the block's start ends the prompt
chat '{"messages": [{"role": "user", "content": "weather in Paris?"}], '"$tools"',
       "tool_choice": "required", "max_tokens": 8, "temperature": 0, "return_token_ids": true}'
cp "$tmp/body" "$tmp/req"
pids=$(jq -r '.prompt_token_ids | join(",")' "$tmp/req")
got=$(jq -r '.choices[0].token_ids | join(",")' "$tmp/req")
[ "$code" = 200 ] && case "$pids" in *",$block_ids") true ;; *) false ;; esac &&
    [ "$got" = "$(greedy "$pids" 8)" ]
ok $? "required: the prompt ends with the block's start ($block_ids), the reply is moetier run's"
jq -e --arg b "$(printf '%b' "$block")" '.choices[0].message.content | startswith($b)' \
    "$tmp/req" >/dev/null &&
    jq -e '.choices[0].finish_reason == "length" and .usage.completion_tokens == 8 and
           .usage.prompt_tokens == (.prompt_token_ids | length)' "$tmp/req" >/dev/null
ok $? "required: the answer is the block's start and the model's 8 tokens (not a whole call: text)"

# a named function: its call is opened too
chat '{"messages": [{"role": "user", "content": "weather in Paris?"}], '"$tools"',
       "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
       "max_tokens": 8, "temperature": 0, "return_token_ids": true}'
pids=$(jq -r '.prompt_token_ids | join(",")' "$tmp/body")
got=$(jq -r '.choices[0].token_ids | join(",")' "$tmp/body")
[ "$code" = 200 ] && case "$pids" in *",$named_ids") true ;; *) false ;; esac &&
    [ "$got" = "$(greedy "$pids" 8)" ] &&
    jq -e --arg b "$(printf '%b' "$named" | sed 's/\\"/"/g')" \
        '.choices[0].message.content | startswith($b)' "$tmp/body" >/dev/null
ok $? "named get_weather: the prompt ends with its invoke opened, the answer begins with it"

# streamed: nothing of the block goes out before the end, then the same text as unstreamed
curl -sN --max-time 60 "$url/v1/chat/completions" -H "Content-Type: application/json" \
    -d '{"messages": [{"role": "user", "content": "weather in Paris?"}], '"$tools"',
        "tool_choice": "required", "max_tokens": 8, "temperature": 0, "stream": true}' \
    >"$tmp/sse"
sed -n 's/^data: //p' "$tmp/sse" | grep -v '^\[DONE\]$' >"$tmp/events"
texts=$(jq -c 'select(.choices[0].delta.content != null and .choices[0].delta.content != "")' \
    "$tmp/events" | wc -l)
[ "$(jq -j '.choices[0].delta.content // ""' "$tmp/events")" = \
    "$(jq -j '.choices[0].message.content' "$tmp/req")" ] && [ "$texts" -eq 1 ] &&
    tail -n 1 "$tmp/events" | jq -e '.choices[0].finish_reason == "length"' >/dev/null
ok $? "required, streamed: the answer in one chunk at the end ($texts), equal to the unstreamed"

# a block held back for 400 tokens: the silent stream gets keep-alive comments (SSE comment
# lines, ": keep-alive"), between whole events only, and its events carry the unstreamed answer
held='{"messages": [{"role": "user", "content": "weather in Paris?"}], '"$tools"',
      "tool_choice": "required", "max_tokens": 400, "ignore_eos": true, "temperature": 0'
chat "$held}"
cp "$tmp/body" "$tmp/held"
curl -sN --max-time 60 "$url/v1/chat/completions" -H "Content-Type: application/json" \
    -d "$held"', "stream": true}' >"$tmp/sse"
sed -n 's/^data: //p' "$tmp/sse" | grep -v '^\[DONE\]$' >"$tmp/events"
nka=$(grep -c '^: keep-alive$' "$tmp/sse")
# every line is an event, a keep-alive or the blank line that ends one; every event parses
others=$(grep -v -e '^data: ' -e '^: keep-alive$' -e '^$' "$tmp/sse" | wc -l)
[ "$code" = 200 ] && [ "$nka" -ge 1 ] && [ "$others" -eq 0 ] && jq -e . "$tmp/events" >/dev/null &&
    [ "$(jq -j '.choices[0].delta.content // ""' "$tmp/events")" = \
        "$(jq -j '.choices[0].message.content' "$tmp/held")" ] &&
    tail -n 1 "$tmp/events" | jq -e '.choices[0].finish_reason == "length"' >/dev/null
ok $? "a block held for 400 tokens, streamed: $nka keep-alive comments between whole events \
($others other lines), the unstreamed answer"

# thinking mode: the model reasons first; the block's start comes after </think>
chat '{"messages": [{"role": "user", "content": "weather in Paris?"}], '"$tools"',
       "tool_choice": "required", "max_tokens": 8, "temperature": 0, "return_token_ids": true,
       "chat_template_kwargs": {"thinking": true}}'
cp "$tmp/body" "$tmp/think"
pids=$(jq -r '.prompt_token_ids | join(",")' "$tmp/think")
got=$(jq -r '.choices[0].token_ids | join(",")' "$tmp/think")
think_end=$(printf '</think>' | "$bin" tokenize -m "$model" --special)
r2=$(greedy "$pids" 2)
rest=$(greedy "$pids,$r2,$think_end,$block_ids" 5)
[ "$code" = 200 ] && [ -n "$r2" ] && [ "$got" = "$r2,$think_end,$block_ids,$rest" ]
ok $? "thinking: reasoning, </think>, the block's start, then moetier run's 5 tokens after \
them ($got)"
# the reasoning's text: run's for those 2 tokens, less the <id> it prints for an id past the
# tokenizer's vocabulary (a padding row, which the server's text leaves out; a random model may
# pick one), and less the newline run ends its output with (the "." keeps the text's own)
reasoning=$("$bin" run -m "$model" --threads 1 --prompt-ids "$pids" -n 2 2>/dev/null |
    sed 's/<[0-9]*>//g'; echo .)
reasoning=${reasoning%?.}
jq -e --arg b "$(printf '%b' "$block")" --arg r "$reasoning" '
       .choices[0].message.reasoning_content == $r and
       (.choices[0].message.content | startswith($b)) and .usage.completion_tokens == 8 and
       .choices[0].finish_reason == "length"' "$tmp/think" >/dev/null
ok $? "thinking: reasoning_content (run's text of the 2 tokens), the answer from the block's \
start, 8 tokens generated"

# thinking with all of max_tokens spent on reasoning: no block is forced after it
chat '{"messages": [{"role": "user", "content": "weather in Paris?"}], '"$tools"',
       "tool_choice": "required", "max_tokens": 2, "temperature": 0,
       "chat_template_kwargs": {"thinking": true}}'
[ "$code" = 200 ] && jq -e '.choices[0].message.content == null or
    .choices[0].message.content == ""' "$tmp/body" >/dev/null &&
    jq -e '.choices[0].finish_reason == "length"' "$tmp/body" >/dev/null
ok $? "thinking cut by max_tokens before </think>: no answer, finish length"

# n = 2: each choice reasons, then its call is opened
chat '{"messages": [{"role": "user", "content": "weather in Paris?"}], '"$tools"',
       "tool_choice": "required", "max_tokens": 8, "temperature": 0, "n": 2,
       "chat_template_kwargs": {"thinking": true}}'
[ "$code" = 200 ] && jq -e --arg b "$(printf '%b' "$block")" --arg r "$reasoning" '
    (.choices | length) == 2 and
    all(.choices[]; (.message.content | startswith($b)) and .message.reasoning_content == $r) and
    .choices[0].message == .choices[1].message and .usage.completion_tokens == 16' \
    "$tmp/body" >/dev/null
ok $? "n = 2 in thinking mode: each choice reasons, then begins with the block's start"

chat '{"messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"}'
[ "$code" = 400 ] && jq -e '.error.param == "tool_choice"' "$tmp/body" >/dev/null
ok $? "required without tools: 400 ($(jq -r .error.message "$tmp/body"))"
chat '{"messages": [{"role": "user", "content": "hi"}], '"$tools"',
       "tool_choice": {"type": "function", "function": {"name": "mul"}}}'
[ "$code" = 400 ] && jq -e '.error.param == "tool_choice"' "$tmp/body" >/dev/null
ok $? "a named function not in tools: 400 ($(jq -r .error.message "$tmp/body"))"
tap_exit
