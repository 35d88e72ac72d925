#!/bin/sh
# SPDX-License-Identifier: MIT
# test_serve_json.sh - response_format {"type": "json_object"} and "json_schema" on `moetier
# serve`: the answer is held to one JSON object, or to an instance of the schema (which also goes
# into the system prompt). A random test model writes no JSON of itself (checked first), so every
# reply that ends by itself ("stop") being an object that jq parses is the constraint's doing;
# one cut by max_tokens ("length") still begins the object. Checked for chat and completions,
# whole and streamed, and in thinking mode, where the reasoning stays free text and the answer
# after it is the object (MT_SERVE_THINK_AFTER=3: a test hook, the third reasoning id counts as
# </think>).
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
. "$MT_SRCDIR/tests/serve/lib_serve.sh"
need curl "the HTTP client of this test; apt-get install curl"
need jq "JSON in shell tests; apt-get install jq"

make_tmp serve-json
make_model
MT_SERVE_THINK_AFTER=3 start_server "$tmp/a.log"

echo "1..15"

# a bias towards '"' (id 4 of V3.2's vocabulary) makes the random model open and close strings
# often, so that most sampled choices end by themselves within max_tokens
BIAS='"logit_bias": {"4": 5}'
ASK='"messages": [{"role": "system", "content": "Answer in JSON."},
                  {"role": "user", "content": "Name three colours."}]'
JSON='"response_format": {"type": "json_object"}'

# each choice of a reply in $tmp/body: "stop" ones parse as objects, "length" ones begin one
# (jq's ltrimstr has no whitespace class: the leading whitespace is taken off by test)
check_choices() { # FIELD (message.content or text)
    jq -e --arg f "$1" 'def text: getpath($f | split("."));
        all(.choices[]; (text | test("^[ \t\r\n]*[{]")) and
            (if .finish_reason == "stop" then (text | fromjson | type) == "object"
             else .finish_reason == "length" end))' "$tmp/body" >/dev/null
}

post /v1/chat/completions "{$ASK, \"max_tokens\": 80, \"n\": 8, \"temperature\": 1, \"seed\": 3}"
[ "$code" = 200 ] && jq -e '[.choices[] | .message.content | try (fromjson | type) catch "none"]
    | all(. != "object")' "$tmp/body" >/dev/null
ok $? "without response_format the random model writes no JSON object (8 choices)"

post /v1/chat/completions "{$ASK, $JSON, \"max_tokens\": 80, \"n\": 8, \"temperature\": 1,
    \"seed\": 3, $BIAS}"
cp "$tmp/body" "$tmp/eight"
n_stop=$(jq '[.choices[] | select(.finish_reason == "stop")] | length' "$tmp/eight")
[ "$code" = 200 ] && check_choices message.content && [ "$n_stop" -ge 3 ]
ok $? "json_object, 8 sampled choices: $n_stop end by themselves, each a JSON object; the rest \
begin one"

post /v1/chat/completions "{$ASK, $JSON, \"max_tokens\": 80, \"temperature\": 1, \"seed\": 3,
    $BIAS}"
[ "$code" = 200 ] && [ "$(jq -c '.choices[0].message' "$tmp/body")" = \
    "$(jq -c '.choices[0].message' "$tmp/eight")" ]
ok $? "choice 0 of them = a request of n = 1 with that seed"

# streamed: the deltas add up to the same answer
curl -sN --max-time 60 "$url/v1/chat/completions" -H "Content-Type: application/json" \
    -d "{$ASK, $JSON, \"max_tokens\": 80, \"temperature\": 1, \"seed\": 3, \"stream\": true,
         $BIAS}" \
    >"$tmp/sse"
sed -n 's/^data: //p' "$tmp/sse" | grep -v '^\[DONE\]$' >"$tmp/events"
[ "$(jq -j '.choices[0].delta.content // ""' "$tmp/events")" = \
  "$(jq -j '.choices[0].message.content' "$tmp/eight")" ] &&
  [ "$(jq -r 'select(.choices[0].finish_reason != null) | .choices[0].finish_reason' \
        "$tmp/events")" = "$(jq -r '.choices[0].finish_reason' "$tmp/eight")" ]
ok $? "streamed: the deltas and the finish equal the whole reply's"

post /v1/chat/completions "{$ASK, $JSON, \"max_tokens\": 80, \"temperature\": 0}"
[ "$code" = 200 ] && check_choices message.content
ok $? "greedy: $(jq -r '.choices[0].finish_reason' "$tmp/body"), \
$(jq '.choices[0].message.content | length' "$tmp/body") characters that begin an object"

# thinking mode: the reasoning is free, the answer after it is the object
post /v1/chat/completions "{$ASK, $JSON, \"max_tokens\": 80, \"n\": 8, \"temperature\": 1,
    \"seed\": 5, \"chat_template_kwargs\": {\"thinking\": true}, $BIAS}"
n_stop=$(jq '[.choices[] | select(.finish_reason == "stop")] | length' "$tmp/body")
[ "$code" = 200 ] && check_choices message.content && [ "$n_stop" -ge 3 ] &&
    jq -e 'all(.choices[]; (.message.reasoning_content | length) > 0)' "$tmp/body" >/dev/null
ok $? "thinking mode: reasoning first, then the answer held to JSON ($n_stop of 8 end by \
themselves)"

post /v1/completions "{\"prompt\": \"A JSON object:\", $JSON, \"max_tokens\": 80, \"n\": 8,
    \"temperature\": 1, \"seed\": 11, $BIAS}"
n_stop=$(jq '[.choices[] | select(.finish_reason == "stop")] | length' "$tmp/body")
[ "$code" = 200 ] && check_choices text && [ "$n_stop" -ge 3 ]
ok $? "completions: the same ($n_stop of 8 end by themselves)"

post /v1/chat/completions "{$ASK, $JSON, \"max_tokens\": 20, \"temperature\": 0,
    \"logprobs\": true, \"top_logprobs\": 2}"
# (their bytes, joined: a character split over two tokens is U+FFFD in each one's text)
[ "$code" = 200 ] && jq -e 'def utf8: explode | map(
        if . < 128 then [.] elif . < 2048 then [192 + (. / 64 | floor), 128 + . % 64]
        elif . < 65536 then [224 + (. / 4096 | floor), 128 + (. / 64 | floor) % 64, 128 + . % 64]
        else [240 + (. / 262144 | floor), 128 + (. / 4096 | floor) % 64,
              128 + (. / 64 | floor) % 64, 128 + . % 64] end) | add // [];
    ([.choices[0].logprobs.content[].bytes] | add // []) == (.choices[0].message.content | utf8)' \
    "$tmp/body" >/dev/null
ok $? "logprobs: one entry per answer token, their bytes the answer's"

# json_schema: the schema goes into the system prompt as V3.2's template writes a response
# format, and the answer is held to an instance of it (a free-form object where it cannot be)
SCHEMA='{"type": "object", "properties": {"colours": {"type": "array", '\
'"items": {"type": "string"}}}}'
post /v1/chat/completions "{\"messages\": [{\"role\": \"user\",
    \"content\": \"Name three colours.\"}],
    \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"colours\",
    \"schema\": $SCHEMA}}, \"max_tokens\": 80, \"n\": 8, \"temperature\": 1, \"seed\": 3,
    \"return_token_ids\": true, $BIAS}"
n_stop=$(jq '[.choices[] | select(.finish_reason == "stop")] | length' "$tmp/body")
jq -r '.prompt_token_ids | map(tostring) | join(" ")' "$tmp/body" |
    "$bin" tokenize -m "$model" --decode >"$tmp/prompt.txt" 2>&1
[ "$code" = 200 ] && check_choices message.content && [ "$n_stop" -ge 3 ] &&
    jq -e 'all(.choices[] | select(.finish_reason == "stop") | .message.content | fromjson;
        (keys - ["colours"]) == [] and ((.colours // []) | type == "array" and
        all(type == "string")))' "$tmp/body" >/dev/null &&
    { printf '<｜begin▁of▁sentence｜>\n\n## Response Format:\n\n'
      printf 'You MUST strictly adhere to the following schema to reply:\n%s' "$SCHEMA"
      printf '<｜User｜>Name three colours.<｜Assistant｜></think>'; } | cmp -s - "$tmp/prompt.txt"
ok $? "json_schema: the schema in the system prompt; $n_stop of 8 answers end by themselves, \
each an instance"

# strict: an enum, an integer, a nested object, required keys; each answer an instance (the
# random model writes much whitespace between them: 300 tokens)
STRICT='{"type": "object", "properties": {"size": {"enum": ["small", "large"]},
    "count": {"type": "integer"}, "tag": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    "dims": {"type": "object", "properties": {"w": {"type": "number"}}, "required": ["w"],
    "additionalProperties": false}}, "required": ["size", "count", "tag", "dims"],
    "additionalProperties": false}'
post /v1/chat/completions "{\"messages\": [{\"role\": \"user\", \"content\": \"A box.\"}],
    \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"box\",
    \"strict\": true, \"schema\": $STRICT}}, \"max_tokens\": 300, \"n\": 8, \"temperature\": 1,
    \"seed\": 4, $BIAS}"
n_stop=$(jq '[.choices[] | select(.finish_reason == "stop")] | length' "$tmp/body")
[ "$code" = 200 ] && check_choices message.content && [ "$n_stop" -ge 3 ] &&
    jq -e 'all(.choices[] | select(.finish_reason == "stop") | .message.content | fromjson;
        keys == ["count", "dims", "size", "tag"] and (.size == "small" or .size == "large") and
        (.count | type == "number" and floor == .) and (.tag | type == "string" or . == null)
        and (.dims | keys == ["w"] and (.w | type == "number")))' "$tmp/body" >/dev/null
ok $? "json_schema, strict: $n_stop of 8 answers end by themselves, each an instance \
($(jq -c '[.choices[] | select(.finish_reason == "stop") | .message.content | fromjson][0]' \
    "$tmp/body" 2>/dev/null))"

MIN='{"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}'
post /v1/chat/completions "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}],
    \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"s\",
    \"schema\": $MIN, \"strict\": true}}}"
[ "$code" = 400 ] && jq -e '.error.param == "response_format" and
    (.error.message | contains("minimum"))' "$tmp/body" >/dev/null
ok $? "json_schema, strict, with a minimum (not held): 400 ($(jq -r .error.message "$tmp/body"))"
post /v1/chat/completions "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}],
    \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"s\",
    \"schema\": $MIN}}, \"max_tokens\": 4}"
[ "$code" = 200 ]
ok $? "... not strict: accepted, the minimum left to the model"

post /v1/chat/completions '{"messages": [{"role": "user", "content": "hi"}],
    "response_format": {"type": "json_object"}}'
[ "$code" = 400 ] && jq -e '.error.param == "messages"' "$tmp/body" >/dev/null
ok $? "json_object with no message that says json: 400 ($(jq -r .error.message "$tmp/body"))"
# a stop string could end the answer inside the object, and a "stop" answer must parse
post /v1/chat/completions "{$ASK, $JSON, \"stop\": \"}\", \"max_tokens\": 8}"
[ "$code" = 400 ] && jq -e '.error.param == "stop"' "$tmp/body" >/dev/null
ok $? "json_object with a stop string: 400 with param stop ($(jq -r .error.message "$tmp/body"))"
post /v1/completions "{\"prompt\": \"json\", \"stop\": [\"a\"],
    \"response_format\": {\"type\": \"json_object\"}}"
[ "$code" = 400 ] && jq -e '.error.param == "stop"' "$tmp/body" >/dev/null
ok $? "... and for a completion"
