#!/bin/sh
# SPDX-License-Identifier: MIT
# test_serve.sh - `moetier serve` end to end with curl on a tiny random checkpoint: every
# endpoint, every refusal (key, JSON, types, model, size, limits, routes, queue), greedy replies
# equal to `moetier run` token for token, streaming, stop strings, thinking mode, tool messages,
# KV prefix reuse, a client that hangs up mid-stream, 32 concurrent requests, SIGTERM during
# a request and SIGINT during start-up. All traffic goes to 127.0.0.1 with bounded --max-time.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
. "$MT_SRCDIR/tests/serve/lib_serve.sh"
need curl "the HTTP client of this test; apt-get install curl"
need jq "JSON in shell tests; apt-get install jq"

make_tmp serve
make_model
key=sekrit
start_server "$tmp/a.log" --api-key "$key" --max-body 4K --max-messages 4 --max-tokens 3000

# req METHOD PATH [curl args...]: the body in $tmp/body, the headers in $tmp/head, the status in
# $code
req() {
    m=$1
    p=$2
    shift 2
    code=$(curl -s --max-time 30 -D "$tmp/head" -o "$tmp/body" -w '%{http_code}' -X "$m" "$url$p" \
        "$@")
}
# header_is NAME VALUE: the last response had the header NAME: VALUE (name in any case)
header_is() {
    tr -d '\r' <"$tmp/head" | grep -qix "$1: $2"
}
auth="Authorization: Bearer $key"
json="Content-Type: application/json"
chat() { req POST /v1/chat/completions -H "$auth" -H "$json" -d "$1"; }
# health_until JQ-TEST [TRIES]: poll GET /health every 0.1 s (30 times unless TRIES) until the
# test holds on its body; fails if it never did
health_until() {
    hu_i=0
    while [ $hu_i -lt "${2:-30}" ]; do
        req GET /health
        jq -e "$1" "$tmp/body" >/dev/null && return 0
        sleep 0.1
        hu_i=$((hu_i + 1))
    done
    return 1
}
# file_until FILE PATTERN [TRIES]: look every 0.1 s (50 times unless TRIES) until a line of FILE
# matches the grep PATTERN; fails if none ever did
file_until() {
    fu_i=0
    while [ $fu_i -lt "${3:-50}" ]; do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
        fu_i=$((fu_i + 1))
    done
    return 1
}
# err_is CODE TYPE-OR-CODE: the status and the error object's type or code
err_is() {
    [ "$code" = "$1" ] && jq -e --arg w "$2" '.error.message != null and
        (.error.type == $w or .error.code == $w)' "$tmp/body" >/dev/null
}

echo "1..118"
req GET /health
[ "$code" = 200 ] && jq -e '.status == "ok" and .concurrency == 1 and .model == "tiny"' \
    "$tmp/body" >/dev/null
ok $? "GET /health: ok, one request at a time, the model's name (no key needed)"
# the start line names the address as given and the port it listens on (no brackets: IPv4),
# the queue (default 64) and that a key is required; without -q the log says where the routed
# experts went. A loopback address is not warned about as reachable from other machines.
grep -q "^moetier serve: listening on http://127.0.0.1:$port/ (model tiny; one request at a \
time, up to 64 waiting; API key required)$" "$tmp/a.log" &&
    grep -q 'routed experts:' "$tmp/a.log" && ! grep -q 'other machines' "$tmp/a.log"
ok $? "the start line: $(grep 'listening on\|other machines' "$tmp/a.log")"
code=$(curl -s --max-time 10 -o "$tmp/page" -w '%{http_code} %{content_type}' "$url/")
[ "${code%% *}" = 200 ] && case $code in *text/html*) true ;; *) false ;; esac &&
    grep -q '<title>moetier</title>' "$tmp/page" && grep -q 'id="stop"' "$tmp/page"
ok $? "GET / serves the chat page (text/html, with a stop button)"
req GET /metrics
[ "$code" = 200 ] && grep -q '^moetier_requests_total{path="/health",code="200"} 1$' "$tmp/body" &&
    grep -q '^# TYPE moetier_decode_tokens_per_second gauge$' "$tmp/body"
ok $? "GET /metrics: Prometheus text with request counts and tok/s gauges"
conns=$(curl -s --max-time 10 -o /dev/null -o /dev/null -w '%{num_connects} ' "$url/health" \
    "$url/metrics")
[ "$conns" = "1 0 " ]
ok $? "two GETs on one keep-alive connection (new connections per request: $conns)"

req GET /v1/models
err_is 401 invalid_api_key && header_is WWW-Authenticate Bearer
ok $? "GET /v1/models without a key: 401 invalid_api_key, WWW-Authenticate: Bearer (RFC 9110)"
req GET /v1/models -H "Authorization: Bearer wrong"
err_is 401 invalid_api_key && jq -e '.error.message | test("incorrect")' "$tmp/body" >/dev/null
ok $? "a wrong key: 401 with its own message"
req GET /v1/models -H "Authorization: Bearer ${key}x"
c1=$code
req GET /v1/models -H "Authorization: Bearer ${key%?}"
[ "$c1" = 401 ] && [ "$code" = 401 ]
ok $? "the key with a byte more, or a byte less: 401 ($c1, $code)"
req GET /v1/models -H "$auth"
[ "$code" = 200 ] && jq -e '.object == "list" and .data[0].id == "tiny"' "$tmp/body" >/dev/null
ok $? "GET /v1/models with the key lists the model"
req GET /v1/models/tiny -H "$auth"
[ "$code" = 200 ] && jq -e '.object == "model" and .id == "tiny" and .owned_by == "moetier"' \
    "$tmp/body" >/dev/null
ok $? "GET /v1/models/tiny (OpenAI clients' models.retrieve): the model object ($code)"
req GET /v1/models/gpt-4o -H "$auth"
err_is 404 model_not_found && jq -e '.error.param == "model"' "$tmp/body" >/dev/null
ok $? "GET /v1/models/gpt-4o: 404 model_not_found in OpenAI's error shape"
req GET /v1/models/tin -H "$auth"
c1=$code
req GET /v1/models/tinyx -H "$auth"
[ "$c1" = 404 ] && err_is 404 model_not_found
ok $? "GET /v1/models/tin and /v1/models/tinyx (a prefix, the name and more): 404 ($c1, $code)"
req GET /v1/models/tiny
err_is 401 invalid_api_key
ok $? "GET /v1/models/tiny without the key: 401"
req GET /v1/models -H "Authorization: bearer $key"
[ "$code" = 200 ]
ok $? "the scheme's name in any case (bearer): 200 (got $code)"
req POST /v1/chat/completions -H "$json" -d '{"messages":[{"role":"user","content":"hi"}]}'
err_is 401 invalid_api_key
ok $? "POST /v1/chat/completions without a key: 401"

chat '{"messages": [{"role": "user", "content": "hi"}'
err_is 400 invalid_request_error && jq -e '.error.message | test("not valid JSON")' "$tmp/body" \
    >/dev/null
ok $? "malformed JSON: 400 naming the problem"
chat '{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}'
err_is 400 invalid_request_error && jq -e '.error.param == "temperature"' "$tmp/body" >/dev/null
ok $? "a wrong type (temperature a string): 400 with param temperature"
chat '{"messages": "hi"}'
err_is 400 invalid_request_error && jq -e '.error.param == "messages"' "$tmp/body" >/dev/null
ok $? "messages not an array: 400 with param messages"
chat '{"messages": [{"role": "wizard", "content": "hi"}]}'
err_is 400 invalid_request_error
ok $? "an unknown role: 400"
chat '{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}'
err_is 404 model_not_found
ok $? "an unknown model: 404 model_not_found"
big=$(head -c 5000 /dev/zero | tr '\0' a)
chat "{\"messages\": [{\"role\": \"user\", \"content\": \"$big\"}]}"
err_is 413 request_too_large
ok $? "a body over --max-body 4K: 413"
# pad BYTES: a chat request of 1 token padded with leading blanks to BYTES bytes, in $tmp/pad
pad() {
    pd_req='{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}'
    { head -c $(($1 - ${#pd_req})) /dev/zero | tr '\0' ' '; printf '%s' "$pd_req"; } >"$tmp/pad"
}
pad 4096
req POST /v1/chat/completions -H "$auth" -H "$json" --data-binary @"$tmp/pad"
c1=$code
req POST /v1/chat/completions -H "$auth" -H "$json" -H "Transfer-Encoding: chunked" \
    --data-binary @"$tmp/pad"
[ "$c1" = 200 ] && [ "$code" = 200 ]
ok $? "a body of exactly --max-body (4096 bytes) is taken: 200 with its length given, and chunked \
($c1, $code)"
pad 4097
req POST /v1/chat/completions -H "$auth" -H "$json" -H "Transfer-Encoding: chunked" \
    --data-binary @"$tmp/pad"
err_is 413 request_too_large
ok $? "a chunked body (no length given) of 4097 bytes: 413 once it passes the limit ($code)"
m='{"role": "user", "content": "x"}'
chat "{\"messages\": [$m, $m, $m, $m, $m]}"
err_is 400 invalid_request_error && jq -e '.error.message | test("too many messages")' \
    "$tmp/body" >/dev/null
ok $? "5 messages over --max-messages 4: 400"
chat '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000}'
err_is 400 invalid_request_error && jq -e '.error.param == "max_tokens"' "$tmp/body" >/dev/null
ok $? "max_tokens over --max-tokens: 400"
chat '{"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 0}'
err_is 400 invalid_request_error && jq -e '.error.param == "max_completion_tokens"' "$tmp/body" \
    >/dev/null
ok $? "a chat's max_tokens 0 (here max_completion_tokens): 400, as OpenAI's (a reply of nothing)"
chat '{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "retrieval",
       "function": {"name": "f"}}]}'
err_is 400 invalid_request_error && jq -e '.error.param == "tools"' "$tmp/body" >/dev/null
ok $? "a tool of a type other than function: 400 with param tools"
req GET /v1/nothing -H "$auth"
err_is 404 not_found
ok $? "an unknown route: 404"
req GET /%ff -H "$auth"
err_is 404 not_found && jq -e '.error.message | type == "string"' "$tmp/body" >/dev/null
ok $? "a route that decodes to invalid UTF-8: 404 with a message (not null)"
req GET /v1/models%00junk -H "$auth" --path-as-is
err_is 404 not_found
ok $? "a route with an escaped NUL (%00) matches no route: 404"
role=$(printf '\\u00e9%.0s' $(seq 1 21))
chat "{\"messages\": [{\"role\": \"a$role\", \"content\": \"x\"}]}"
err_is 400 invalid_request_error && jq -e '.error.message | type == "string"' "$tmp/body" \
    >/dev/null
ok $? "an unknown role whose quote cuts a character: 400 with a message (not null)"
chat '{"messages": [{"role": "user", "content": "hi"}], "top_p": 1e-50}'
err_is 400 invalid_request_error && jq -e '.error.param == "top_p"' "$tmp/body" >/dev/null
ok $? "top_p 1e-50 (0 as a float): 400 with param top_p, before the queue"
# a client's 2^63 - 1 for "no limit" samples as -1 does (every token kept), seed for seed
s='{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "seed": 5, "top_k": '
chat "$s-1}"
[ "$code" = 200 ] && cp "$tmp/body" "$tmp/k-1"
chat "${s}9223372036854775807}"
[ "$code" = 200 ] && [ -s "$tmp/k-1" ] &&
    [ "$(jq -c .choices "$tmp/body")" = "$(jq -c .choices "$tmp/k-1")" ]
ok $? "top_k 2^63 - 1: 200, the reply of top_k -1 with the same seed: \
$(jq -c .choices[0].message.content "$tmp/body")"
chat '{"messages": [{"role": "user", "content": "hi"}], "top_k": -2}'
err_is 400 invalid_request_error && jq -e '.error.param == "top_k" and
    (.error.message | test("-1 or 0 \\(no limit\\)"))' "$tmp/body" >/dev/null
ok $? "top_k -2: 400 with param top_k, the message saying what k may be: \
$(jq -r .error.message "$tmp/body")"
req GET /v1/chat/completions -H "$auth"
err_is 405 method_not_allowed && header_is Allow POST
ok $? "GET on a POST route: 405, Allow: POST"
req POST /health -d x
err_is 405 method_not_allowed && header_is Allow "GET, HEAD"
ok $? "POST on a GET route: 405, Allow: GET, HEAD ($code)"
code=$(curl -s --max-time 30 -I -o /dev/null -w '%{http_code}' "$url/health")
[ "$code" = 200 ]
ok $? "HEAD /health: 200 ($code)"
# pages of other sites (cross-site requests, DNS rebinding: runtime/serve/guard.c); the key
# does not make them pass
req POST /v1/chat/completions -H "$auth" -H 'Content-Type: text/plain' \
    -H 'Origin: http://evil.example' -d '{"messages": [{"role": "user", "content": "hi"}]}'
err_is 403 cross_origin
ok $? "a POST from another site's page: 403 cross_origin"
req GET /v1/models -H "$auth" -H "Host: evil.example:$port" \
    -H "Origin: http://evil.example:$port"
err_is 403 host_not_allowed
ok $? "a name pointed at 127.0.0.1 (DNS rebinding): 403 host_not_allowed"
req GET /v1/models -H "$auth" -H "Host: localhost:$port" -H "Origin: http://localhost:$port"
[ "$code" = 200 ]
ok $? "the server's own page at localhost:$port: 200 ($code)"
chat '{"messages": [{"role": "tool", "content": "42"}, {"role": "user", "content": "hi"}]}'
err_is 400 invalid_request_error
ok $? "a tool result with no tool call before it: 400 from the chat encoder"
chat '{"messages": [{"role": "tool", "content": "42"}, {"role": "user", "content": "hi"}],
       "tools": [{"type": "function", "function": {"name": "f"}}]}'
err_is 400 invalid_request_error && jq -e '.error.message | test("message 0 ")' "$tmp/body" \
    >/dev/null
ok $? "the same with tools: the message names the client's index 0 ($(jq -c .error.message \
    "$tmp/body"))"

# greedy replies equal `moetier run` token for token
chat '{"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 12,
       "temperature": 0, "return_token_ids": true}'
cp "$tmp/body" "$tmp/chat1"
pids=$(jq -r '.prompt_token_ids | join(",")' "$tmp/chat1")
got=$(jq -r '.choices[0].token_ids | join(" ")' "$tmp/chat1")
want=$("$bin" run -m "$model" --threads 1 --prompt-ids "$pids" -n 12 --print-ids 2>/dev/null)
[ "$code" = 200 ] && [ -n "$got" ] && [ "$got" = "$want" ]
ok $? "greedy chat reply = moetier run on its prompt ids ('$got' vs '$want')"
jq -e '.object == "chat.completion" and .usage.completion_tokens == 12 and
       .usage.total_tokens == .usage.prompt_tokens + 12 and
       .choices[0].finish_reason == "length" and (.choices[0].message.content | type) == "string"' \
    "$tmp/chat1" >/dev/null
ok $? "the chat reply has OpenAI's shape and usage counts"
# "developer" (OpenAI's newer name for the system prompt) renders as a system message
for r in system developer; do
    chat '{"messages": [{"role": "'$r'", "content": "Be brief"}, {"role": "user", "content": "Hi"}],
           "max_tokens": 1, "return_token_ids": true}'
    jq -c .prompt_token_ids "$tmp/body" >"$tmp/ids_$r"
done
[ "$code" = 200 ] && [ -s "$tmp/ids_system" ] && cmp -s "$tmp/ids_system" "$tmp/ids_developer"
ok $? "a developer message is the system prompt: the same prompt ids ($(cat "$tmp/ids_developer"))"
req POST /v1/completions -H "$auth" -H "$json" \
    -d '{"prompt": "The capital of France", "max_tokens": 10, "temperature": 0,
         "return_token_ids": true}'
got=$(jq -r '.choices[0].token_ids | join(" ")' "$tmp/body")
want=$("$bin" run -m "$model" --threads 1 -p "The capital of France" -n 10 --print-ids 2>/dev/null)
[ "$code" = 200 ] && jq -e '.object == "text_completion"' "$tmp/body" >/dev/null &&
    [ -n "$got" ] && [ "$got" = "$want" ]
ok $? "greedy completion = moetier run -p on the same text ('$got' vs '$want')"

# ignore_eos: the long requests below must not end early on the random model's end-of-text
# (greedy from "a" reaches it after about 200 tokens here; sampled replies anywhere)
req POST /v1/completions -H "$auth" -H "$json" \
    -d '{"prompt": "a", "max_tokens": 400, "temperature": 0, "ignore_eos": true}'
[ "$code" = 200 ] && jq -e '.usage.completion_tokens == 400 and
    .choices[0].finish_reason == "length"' "$tmp/body" >/dev/null
ok $? "ignore_eos: true generates all 400 tokens (finish_reason length)"
req POST /v1/completions -H "$auth" -H "$json" -d '{"prompt": "a", "ignore_eos": 1}'
err_is 400 invalid_request_error && jq -e '.error.param == "ignore_eos"' "$tmp/body" >/dev/null
ok $? "ignore_eos not a boolean: 400 with param ignore_eos"

# streaming: the same greedy reply, as events ending in [DONE]
curl -sN --max-time 30 "$url/v1/chat/completions" -H "$auth" -H "$json" -d '{"messages":
    [{"role": "user", "content": "Hello there"}], "max_tokens": 12, "temperature": 0,
    "stream": true, "stream_options": {"include_usage": true}}' >"$tmp/sse"
sed -n 's/^data: //p' "$tmp/sse" | grep -v '^\[DONE\]$' >"$tmp/events"
content=$(jq -j '.choices[0].delta.content // ""' "$tmp/events")
[ "$(tail -n 2 "$tmp/sse" | head -n 1)" = "data: [DONE]" ] &&
    [ "$content" = "$(jq -j '.choices[0].message.content' "$tmp/chat1")" ] &&
    head -n 1 "$tmp/events" | jq -e '.choices[0].delta == {"role": "assistant", "content": ""}' \
        >/dev/null &&
    tail -n 1 "$tmp/events" | jq -e '.choices == [] and .usage.completion_tokens == 12' >/dev/null
ok $? "stream: role first (with content \"\", as OpenAI sends it: clients add deltas to it), the \
same text as without streaming, usage, then data: [DONE]"

# the next turn of that conversation reuses its KV cache
reply=$(jq '.choices[0].message.content' "$tmp/chat1")
chat "{\"messages\": [{\"role\": \"user\", \"content\": \"Hello there\"},
       {\"role\": \"assistant\", \"content\": $reply}, {\"role\": \"user\", \"content\": \"more\"}],
       \"max_tokens\": 4, \"temperature\": 0}"
cached=$(jq '.usage.prompt_tokens_details.cached_tokens' "$tmp/body")
[ "$code" = 200 ] && [ "$cached" -ge 8 ]
ok $? "a request extending the previous conversation reuses the KV prefix ($cached cached)"

# a stop string cuts the answer before it
stop=$(jq '.choices[0].message.content[3:5]' "$tmp/chat1")
chat "{\"messages\": [{\"role\": \"user\", \"content\": \"Hello there\"}], \"max_tokens\": 12,
       \"temperature\": 0, \"stop\": [$stop]}"
want=$(jq -r --argjson s "$stop" '.choices[0].message.content | split($s)[0]' "$tmp/chat1")
[ "$code" = 200 ] && [ "$(jq -r '.choices[0].message.content' "$tmp/body")" = "$want" ] &&
    jq -e '.choices[0].finish_reason == "stop"' "$tmp/body" >/dev/null
ok $? "stop $stop: the answer ends before it, finish_reason stop"

# thinking mode and tool messages
chat '{"messages": [{"role": "user", "content": "think"}], "max_tokens": 6, "temperature": 0,
       "chat_template_kwargs": {"thinking": true}, "return_token_ids": true}'
[ "$code" = 200 ] &&
    jq -e '(.choices[0].message.reasoning_content | type) == "string"' "$tmp/body" >/dev/null &&
    think=$(printf '<think>' | "$bin" tokenize -m "$model" --special) &&
    [ "$(jq '.prompt_token_ids[-1]' "$tmp/body")" = "$think" ]
ok $? "thinking mode: the prompt ends in <think>, the reply has reasoning_content"
chat '{"messages": [{"role": "user", "content": "weather?"}, {"role": "assistant",
       "content": null, "tool_calls": [{"id": "c1", "type": "function", "function":
       {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}, {"role": "tool",
       "tool_call_id": "c1", "content": "sunny"}], "tools": [{"type": "function", "function":
       {"name": "get_weather", "parameters": {"type": "object"}}}], "max_tokens": 4}'
[ "$code" = 200 ]
ok $? "tools, an assistant tool call and a tool result: 200"

# a client that hangs up mid-stream stops its generation at once
curl -sN --max-time 1 "$url/v1/chat/completions" -H "$auth" -H "$json" -d '{"messages":
    [{"role": "user", "content": "go on"}], "max_tokens": 3000, "temperature": 0,
    "ignore_eos": true, "stream": true}' >"$tmp/cut" 2>/dev/null
health_until '.busy == false'
freed=$?
[ -s "$tmp/cut" ] && [ $freed -eq 0 ] && grep -q 'client gone' "$tmp/a.log"
ok $? "a client gone after 1 s of a 3000-token stream frees the engine within 3 s"
req GET /metrics
grep -q '^moetier_client_disconnects_total 1$' "$tmp/body"
ok $? "/metrics counts the disconnect"
chat '{"messages": [{"role": "user", "content": "still there?"}], "max_tokens": 3}'
[ "$code" = 200 ]
ok $? "the next request is answered"

# 32 concurrent requests: all answered, in the order they came, none lost
cpids=
i=1
while [ $i -le 32 ]; do
    curl -s --max-time 60 -o "$tmp/c$i" -w '%{http_code}' "$url/v1/chat/completions" \
        -H "$auth" -H "$json" -d "{\"messages\": [{\"role\": \"user\", \"content\": \"n $i\"}],
        \"max_tokens\": 3}" >"$tmp/code$i" &
    cpids="$cpids $!"
    sleep 0.03
    i=$((i + 1))
done
wait_fail=0
for p in $cpids; do
    wait "$p" || wait_fail=1
done
n200=0
: >"$tmp/ids"
i=1
while [ $i -le 32 ]; do
    [ "$(cat "$tmp/code$i")" = 200 ] && n200=$((n200 + 1))
    jq -r '.id' "$tmp/c$i" | sed 's/^chatcmpl-//' >>"$tmp/ids"
    i=$((i + 1))
done
# the ids number the requests in the order they reached the queue; the log shows the order run
sed -n 's/^mt: serve: chatcmpl-\([0-9]*\) .*/\1/p' "$tmp/a.log" | tail -n 32 >"$tmp/ran"
sort -n "$tmp/ids" >"$tmp/ids.sorted"
first=$(head -n 1 "$tmp/ids.sorted")
[ "$n200" -eq 32 ] && [ "$wait_fail" -eq 0 ] && [ "$(sort -nu "$tmp/ids" | wc -l)" -eq 32 ] &&
    [ "$(tail -n 1 "$tmp/ids.sorted")" -eq $((first + 31)) ] && cmp -s "$tmp/ran" "$tmp/ids.sorted"
ok $? "32 concurrent requests: $n200 answered 200, 32 distinct ids, run in arrival order"
req GET /metrics
nreq=$(sed -n 's/^moetier_requests_total{path="\/v1\/chat\/completions",code="200"} //p' "$tmp/body")
[ "$nreq" -ge 38 ]
ok $? "/metrics counts every answered chat request ($nreq)"

# A client that half-closes (shutdown(SHUT_WR) after its request: HTTP/1.1 allows it, nc -N and
# some proxies do it) still reads, and gets its whole reply, running or queued; a client that
# closes its socket is still noticed, and its generation stopped.
${MT_CC:-cc} -std=c11 $MT_CFLAGS -o "$tmp/half_close" "$MT_SRCDIR/tests/serve/half_close.c" \
    $MT_LDFLAGS 2>"$tmp/cc" || bail_out "cannot build tests/serve/half_close.c: $(cat "$tmp/cc")"
# last_status FILE: the final status line of a raw reply (after any interim 1xx)
last_status() { grep -a '^HTTP/1' "$1" | tail -n 1 | tr -d '\r'; }
"$tmp/half_close" "$port" /v1/completions '{"prompt": "a", "max_tokens": 400, "temperature": 0,
    "ignore_eos": true}' "Bearer $key" >"$tmp/hc" 2>"$tmp/hc.err"
rc=$?
[ $rc -eq 0 ] && [ "$(last_status "$tmp/hc")" = "HTTP/1.1 200 OK" ] &&
    tail -n 1 "$tmp/hc" | jq -e '.usage.completion_tokens == 400' >/dev/null
ok $? "a half-closed client gets its whole 400-token reply (rc $rc, reply: $(head -c 100 "$tmp/hc" |
    tr -d '\r' | tr '\n' ' '))"
curl -s --max-time 30 -o /dev/null "$url/v1/completions" -H "$auth" -H "$json" \
    -d '{"prompt": "a", "max_tokens": 1000, "ignore_eos": true}' &
busy_pid=$!
health_until '.busy == true' 50
queued_behind=$?
"$tmp/half_close" "$port" /v1/chat/completions '{"messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 20, "ignore_eos": true, "stream": true}' "Bearer $key" >"$tmp/hcs" 2>"$tmp/hc.err"
rc=$?
wait "$busy_pid"
[ $rc -eq 0 ] && [ $queued_behind -eq 0 ] && [ "$(last_status "$tmp/hcs")" = "HTTP/1.1 200 OK" ] &&
    grep -aq '"finish_reason":"length"' "$tmp/hcs" && grep -aq '^data: \[DONE\]' "$tmp/hcs"
ok $? "a half-closed client queued behind a running request gets its whole stream (rc $rc, reply: \
$(head -c 100 "$tmp/hcs" | tr -d '\r' | tr '\n' ' '))"
curl -s --max-time 1 "$url/v1/completions" -H "$auth" -H "$json" \
    -d '{"prompt": "a", "max_tokens": 3000, "ignore_eos": true}' >/dev/null 2>&1
health_until '.busy == false' &&
    grep -q 'generated, client gone$' "$tmp/a.log" && sleep 0.2 &&
    ! grep -q 'internal error' "$tmp/a.log"
ok $? "a client that closes while its 3000-token reply runs (not streamed) frees the engine in 3 s, \
with no 'internal error' in the log"
gone0=$(grep -c 'generated, client gone$' "$tmp/a.log")
"$tmp/half_close" -q "$port" /v1/completions '{"prompt": "a", "max_tokens": 3000,
    "ignore_eos": true}' "Bearer $key" >/dev/null 2>"$tmp/hc.err"
rc=$?
health_until '.busy == false' 40 &&
    [ "$(grep -c 'generated, client gone$' "$tmp/a.log")" -gt "$gone0" ]
ok $? "a client that half-closes, reads the interim 100 and closes (as through a relay) frees the \
engine within 4 s (rc $rc: $(head -c 200 "$tmp/hc.err"))"
# HTTP/1.0 has no half-close: a 1.0 client that shuts its side down has closed its connection,
# and no interim 100 may be sent to it to ask, so its generation is stopped at once
gone0=$(grep -c 'generated, client gone$' "$tmp/a.log")
"$tmp/half_close" -0 "$port" /v1/completions '{"prompt": "a", "max_tokens": 3000,
    "ignore_eos": true}' "Bearer $key" >"$tmp/hc10" 2>"$tmp/hc.err" &
hc_pid=$!
i=0
while [ $i -lt 100 ] && [ "$(grep -c 'generated, client gone$' "$tmp/a.log")" -le "$gone0" ]; do
    sleep 0.1
    i=$((i + 1))
done
[ "$(grep -c 'generated, client gone$' "$tmp/a.log")" -gt "$gone0" ] &&
    ! grep -aq '^HTTP/1.1 1' "$tmp/hc10"
ok $? "an HTTP/1.0 client that half-closes is gone: its 3000-token generation stops within 10 s, \
and it is sent no interim 1xx ($(head -c 100 "$tmp/hc10" | tr -d '\r' | tr '\n' ' ')$(tail -n 1 \
    "$tmp/a.log"))"
kill "$hc_pid" 2>/dev/null
wait "$hc_pid" 2>/dev/null
health_until '.busy == false' 100
req GET /health -d 'x'
err_is 400 body_not_allowed
ok $? "a GET with a body: 400 body_not_allowed (it would be read without a limit)"
req GET /health -H "Transfer-Encoding: chunked" -d x
err_is 400 body_not_allowed
ok $? "... also one sent chunked, with no length: 400 body_not_allowed ($code)"
req GET /health -H "Content-Length: 0"
[ "$code" = 200 ]
ok $? "a GET that says Content-Length: 0 has no body: 200 ($code)"
# two Content-Length headers that differ: MHD goes by the first, a proxy may by the last; a 400
# and a closed connection, so that what follows the shorter body is never read as a request
cl_body='{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}'
chat_cl() {
    req POST /v1/chat/completions -H "$auth" -H "$json" -H "Content-Length: $1" \
        -H "Content-Length: $2" -d "$cl_body"
}
chat_cl ${#cl_body} 5
err_is 400 invalid_request_error && header_is Connection close &&
    jq -e '.error.message | test("conflicting Content-Length")' "$tmp/body" >/dev/null
ok $? "two Content-Length headers, the body's length then 5: 400, connection closed ($code: \
$(jq -r .error.message "$tmp/body"))"
chat_cl 5 ${#cl_body}
err_is 400 invalid_request_error && header_is Connection close &&
    jq -e '.error.message | test("conflicting Content-Length")' "$tmp/body" >/dev/null
ok $? "... 5 then the body's length: 400, connection closed, the rest not read as a request \
($code: $(jq -r .error.message "$tmp/body"))"
chat_cl ${#cl_body} ${#cl_body}
[ "$code" = 200 ]
ok $? "the body's length said twice is one length: 200 ($code)"

# flags: a port in use, bad values
"$bin" serve -m "$model" --port "$port" >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "cannot listen on 127.0.0.1 port $port: .*--port 0" "$tmp/err" &&
    [ "$(grep -ci "listen\|bind" "$tmp/err")" -eq 1 ]
ok $? "a port in use: exit 1 with one message, and a hint (rc $rc: $(grep -i "listen\|bind" \
    "$tmp/err" | tr '\n' ' '))"
# ... said before the model is read (it takes minutes for a full checkpoint): here there is none
"$bin" serve -m "$tmp/no-such-model" --port "$port" >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "cannot listen on 127.0.0.1 port $port" "$tmp/err" &&
    ! grep -q "no-such-model" "$tmp/err"
ok $? "a port in use is found before the model is read (rc $rc: $(head -c 200 "$tmp/err"))"
# --host not of this machine (192.0.2.1 is TEST-NET-1, RFC 5737), or not a name at all (.invalid
# never resolves, RFC 2606): the message names --host and the addresses that work
"$bin" serve -m "$model" --host 192.0.2.1 --port 0 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q -- "--host must be an address of this machine: 127.0.0.1" "$tmp/err"
ok $? "--host 192.0.2.1: exit 1 naming --host, with a hint (rc $rc: $(tail -n 1 "$tmp/err"))"
"$bin" serve -m "$model" --host no-such-host.invalid --port 0 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q -- "cannot resolve --host 'no-such-host.invalid'.*127.0.0.1" "$tmp/err"
ok $? "--host no-such-host.invalid: exit 1 naming --host, with a hint (rc $rc: \
$(tail -n 1 "$tmp/err"))"
"$bin" serve -m "$model" --port 70000 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "bad --port '70000'" "$tmp/err"
ok $? "--port 70000: exit 2 with a message (rc $rc)"
"$bin" serve --port 0 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "need -m DIR" "$tmp/err"
ok $? "no -m: exit 2 (rc $rc)"
# each flag's bounds (serve --help): the edge value is taken (the start goes on to the model,
# missing here: exit 1), one past it is a usage error (exit 2, the flag named) before anything
# is read
flag_rc() {
    "$bin" serve -m "$tmp/no-such-model" --port 0 "$@" >/dev/null 2>"$tmp/err"
    echo $?
}
bad_flags=
for case in "2 --port -1" "1 --port 65535" "2 --max-tokens 0" "1 --max-tokens 1" \
    "2 --max-body 63" "1 --max-body 64" "1 --max-body 1G" "2 --max-body 1073741825" \
    "2 --max-messages 0" "1 --max-messages 1" "1 --max-messages 1048576" \
    "2 --max-messages 1048577" "2 --queue -1" "1 --queue 4096" "2 --queue 4097" \
    "1 --request-deadline 0" "1 --request-deadline 3600" "2 --request-deadline 3601" \
    "1 --stream-keepalive 0" "1 --stream-keepalive 0.01" "2 --stream-keepalive 0.009" \
    "1 --stream-keepalive 3600" "2 --stream-keepalive 3600.5" "2 --stream-keepalive -1"; do
    set -- $case
    want=$1
    shift
    got=$(flag_rc "$@")
    if [ "$got" != "$want" ] || { [ "$want" = 2 ] && ! grep -q -- "$1" "$tmp/err"; }; then
        bad_flags="$bad_flags [$* -> $got, want $want: $(head -c 120 "$tmp/err")]"
    fi
done
[ -z "$bad_flags" ]
ok $? "flag bounds: edges taken, one past refused with exit 2 naming the flag$bad_flags"
bad_flags=
for flag in --host --api-key --model-name; do
    got=$(flag_rc "$flag" "")
    if [ "$got" != 2 ] || ! grep -q -- "bad $flag ''" "$tmp/err"; then
        bad_flags="$bad_flags [$flag '' -> $got: $(head -c 120 "$tmp/err")]"
    fi
done
[ -z "$bad_flags" ]
ok $? "--host, --api-key and --model-name '': exit 2 naming the flag$bad_flags"
o=https://a.example
got8=$(flag_rc --allow-origin $o:1 --allow-origin $o:2 --allow-origin $o:3 --allow-origin $o:4 \
    --allow-origin $o:5 --allow-origin $o:6 --allow-origin $o:7 --allow-origin $o:8)
got9=$(flag_rc --allow-origin $o:1 --allow-origin $o:2 --allow-origin $o:3 --allow-origin $o:4 \
    --allow-origin $o:5 --allow-origin $o:6 --allow-origin $o:7 --allow-origin $o:8 \
    --allow-origin $o:9)
[ "$got8" = 1 ] && [ "$got9" = 2 ] && grep -q "more than 8 --allow-origin" "$tmp/err"
ok $? "8 --allow-origin are taken, a 9th is refused (rc $got8, $got9)"
got=$(flag_rc extra)
[ "$got" = 2 ] && grep -q "unexpected argument 'extra'" "$tmp/err"
ok $? "an argument that is no flag: exit 2 (rc $got)"
# a model directory without its tokenizer.json: exit 1 with the reason, once the weights are in
mkdir "$tmp/notok"
for f in "$model"/*; do
    [ "${f##*/}" = tokenizer.json ] || ln -s "$f" "$tmp/notok/"
done
"$bin" serve -m "$tmp/notok" --port 0 --threads 1 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "the model directory needs its tokenizer.json" "$tmp/err"
ok $? "a model without tokenizer.json: exit 1 naming it (rc $rc: $(tail -n 1 "$tmp/err"))"
stop_server
# SIGTERM is said as such (the stop after the running request), then the stop
grep -q '^moetier serve: terminated: finishing the running request (again to stop it now)$' \
    "$tmp/a.log" && grep -q '^moetier serve: stopped$' "$tmp/a.log"
ok $? "SIGTERM: the log says terminated, then stopped: $(grep 'finishing\|stopped' "$tmp/a.log" |
    tr '\n' ' ')"

# start_long: a 2000-token stream in the background ($long_pid), once its first bytes are out
start_long() {
    curl -sN --max-time 20 "$url/v1/completions" -H "$json" -d '{"prompt": "a",
        "max_tokens": 2000, "ignore_eos": true, "stream": true}' >"$tmp/long" 2>/dev/null &
    long_pid=$!
    file_until "$tmp/long" .
}

# the queue's limit: with --queue 0 nothing may wait behind the running request
start_server "$tmp/b.log" --queue 0
start_long
req POST /v1/completions -H "$json" -d '{"prompt": "b", "max_tokens": 2}'
err_is 429 queue_full
ok $? "a request while one runs and --queue 0: 429 queue_full"
kill "$long_pid" 2>/dev/null
wait "$long_pid" 2>/dev/null
# (--queue 0: the next request needs the engine free again)
health_until '.busy == false' 50

# A crowd of idle keep-alive clients leaves room for generation: with --queue 0 the server takes
# 64 connections; after a GET it keeps one alive only while fewer than half are taken, and for
# 10 s of idleness (tests/serve/idle_gets.c: 64 GET /health, the open ones held for 12 s)
${MT_CC:-cc} -std=c11 $MT_CFLAGS -o "$tmp/idle_gets" "$MT_SRCDIR/tests/serve/idle_gets.c" \
    $MT_LDFLAGS 2>"$tmp/cc" || bail_out "cannot build tests/serve/idle_gets.c: $(cat "$tmp/cc")"
"$tmp/idle_gets" "$port" 64 12 >"$tmp/idle" 2>&1 &
idle_pid=$!
file_until "$tmp/idle" '^kept' 100
kept=$(sed -n 's/^kept \([0-9]*\) closed.*/\1/p' "$tmp/idle")
[ -n "$kept" ] && [ "$kept" -ge 16 ] && [ "$kept" -lt 32 ]
ok $? "64 keep-alive GETs, --queue 0: fewer than half of the 64 slots stay taken ($(head -n 1 "$tmp/idle"))"
req POST /v1/completions -H "$json" -d '{"prompt": "b", "max_tokens": 2}'
[ "$code" = 200 ]
ok $? "... and a generation request meanwhile is answered (HTTP $code)"
wait "$idle_pid"
grep -q '^open 0 after 12 s$' "$tmp/idle"
ok $? "... and the server closes the idle ones after 10 s ($(tail -n 1 "$tmp/idle"))"

# SIGTERM during a request: it finishes, then the server exits 0
curl -sN --max-time 30 "$url/v1/completions" -H "$json" -d '{"prompt": "a", "max_tokens": 200,
    "temperature": 0, "ignore_eos": true, "stream": true}' >"$tmp/term" 2>/dev/null &
term_pid=$!
file_until "$tmp/term" '"text"'
kill -TERM "$server_pid"
wait "$server_pid"
rc=$?
server_pid=
wait "$term_pid"
[ "$rc" -eq 0 ] && grep -q '"finish_reason":"length"' "$tmp/term" &&
    [ "$(tail -n 2 "$tmp/term" | head -n 1)" = "data: [DONE]" ] && grep -q 'stopped$' "$tmp/b.log"
ok $? "SIGTERM mid-request: the stream finishes (200 tokens, [DONE]), exit 0 (rc $rc)"
[ "$(sed -n 's/.*completion: [0-9]* prompt tokens ([0-9]* cached), \([0-9]*\) generated.*/\1/p' \
    "$tmp/b.log" | tail -n 1)" = 200 ]
ok $? "... and it generated all its 200 tokens"

# GET /health while the server shuts down (after the first SIGTERM, the running request still
# going): the listening socket is closed, and a client already connected is told 503
# "stopping", so that a load balancer takes the server out of rotation
${MT_CC:-cc} -std=c11 $MT_CFLAGS -o "$tmp/get_twice" "$MT_SRCDIR/tests/serve/get_twice.c" \
    $MT_LDFLAGS 2>"$tmp/cc" || bail_out "cannot build tests/serve/get_twice.c: $(cat "$tmp/cc")"
start_server "$tmp/e.log"
"$tmp/get_twice" "$port" /health "$tmp/again" >"$tmp/twice" 2>"$tmp/twice.err" &
twice_pid=$!
file_until "$tmp/twice" '"status":"ok"'
start_long
kill -TERM "$server_pid"
file_until "$tmp/e.log" 'finishing the running request' && sleep 0.5
: >"$tmp/again"
wait "$twice_pid"
rc=$?
kill -TERM "$server_pid" # the second signal stops the long request
wait "$server_pid"
server_pid=
wait "$long_pid"
[ $rc -eq 0 ] && [ "$(grep -ac '^HTTP/1.1 ' "$tmp/twice")" -eq 2 ] &&
    grep -a '^HTTP/1.1 ' "$tmp/twice" | tail -n 1 | grep -q '^HTTP/1.1 503' &&
    tail -n 2 "$tmp/twice" | grep -q '"status":"stopping"'
ok $? "GET /health on a connection open before SIGTERM, while the running request finishes: \
503 stopping (rc $rc: $(tr -d '\r' <"$tmp/twice" | tr '\n' ' ' | tail -c 300))"

# --max-tokens below 512 is also the default for a request that gives no max_tokens (the
# model directory given with a trailing slash, and --temperature 0 for requests without one)
start_server "$tmp/f.log" --max-tokens 7 -m "$model/" --temperature 0 -q
req POST /v1/completions -H "$json" -d '{"prompt": "a", "ignore_eos": true,
    "return_token_ids": true}'
[ "$code" = 200 ] && jq -e '.usage.completion_tokens == 7' "$tmp/body" >/dev/null
ok $? "--max-tokens 7: a request without max_tokens generates 7 tokens ($code: \
$(head -c 200 "$tmp/body"))"
# --temperature is the default of requests that give none: here greedy, the same tokens as an
# explicit temperature 0 (at the default 1 a random tiny model's 7 tokens differ)
dflt=$(jq -c '.choices[0].token_ids' "$tmp/body")
req POST /v1/completions -H "$json" -d '{"prompt": "a", "ignore_eos": true, "temperature": 0,
    "return_token_ids": true}'
[ "$code" = 200 ] && [ "$(jq -c '.choices[0].token_ids' "$tmp/body")" = "$dflt" ] &&
    [ "$dflt" != null ]
ok $? "--temperature 0: a request without temperature is greedy ($dflt vs \
$(jq -c '.choices[0].token_ids' "$tmp/body"))"
# the model's name is the directory's last part, trailing slashes dropped ("tiny", not "")
req GET /health
[ "$code" = 200 ] && jq -e '.model == "tiny"' "$tmp/body" >/dev/null
ok $? "-m DIR/: the model is named tiny ($code: $(head -c 200 "$tmp/body"))"
stop_server
# -q: the log has its start and stop lines, and no line per request nor where the experts went
grep -q 'listening on' "$tmp/f.log" && grep -q 'stopped$' "$tmp/f.log" &&
    ! grep -q 'completion:' "$tmp/f.log" && ! grep -q 'routed experts:' "$tmp/f.log"
ok $? "-q: no log line per request nor of the experts: $(grep -c 'completion:\|routed experts:' \
    "$tmp/f.log") lines"

# A client that leaves while its long prompt runs frees the engine then, not once the whole
# prompt has run (the prompt runs in pieces with a check between them). Measured against the
# time the same length takes whole on this machine: the next request is answered within half
# of it. (long_prompt F: a 2048-id completion request, its ids from F, so that none is cached.)
long_prompt() {
    jq -cn --argjson f "$1" '{prompt: [range(0; 2048) | (. * 7 + $f) % 1000 + 2], max_tokens: 1}'
}
now() { date +%s.%N; }
start_server "$tmp/f.log" --model-name my-v32
t0=$(now)
code=$(curl -s --max-time 120 -o /dev/null -w '%{http_code}' "$url/v1/completions" -H "$json" \
    -d "$(long_prompt 1)")
whole=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
curl -s --max-time 0.5 "$url/v1/completions" -H "$json" -d "$(long_prompt 2)" >/dev/null 2>&1
t0=$(now)
req POST /v1/completions -H "$json" -d '{"prompt": "b", "max_tokens": 1}'
next=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
[ "$code" = 200 ] && [ "$(awk -v w="$whole" -v n="$next" 'BEGIN { print n < w / 2 }')" = 1 ] &&
    grep -q 'cmpl-2 completion: 2048 prompt tokens (0 cached), 0 generated, client gone' \
        "$tmp/f.log"
ok $? "a client gone while its 2048-token prompt runs frees the engine: the next request answered \
in $next s (the whole prompt takes $whole s)"
curl -sN --max-time 0.5 "$url/v1/completions" -H "$json" \
    -d "$(long_prompt 3 | jq -c '.stream = true')" >/dev/null 2>&1
t0=$(now)
req POST /v1/completions -H "$json" -d '{"prompt": "b", "max_tokens": 1}'
next=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
[ "$code" = 200 ] && [ "$(awk -v w="$whole" -v n="$next" 'BEGIN { print n < w / 2 }')" = 1 ] &&
    grep -q 'cmpl-4 completion: 2048 prompt tokens (0 cached), 0 generated, client gone, streamed' \
        "$tmp/f.log"
ok $? "... also a stream's client (its 200 went out): the next request answered in $next s"
# token ids past the context: context_length_exceeded as for text, before the ids are checked
req POST /v1/completions -H "$json" \
    -d "$(jq -cn '{prompt: [range(0; 4097) | 7], max_tokens: 1}')"
err_is 400 context_length_exceeded && jq -e '.error.param == "prompt"' "$tmp/body" >/dev/null
ok $? "4097 token ids (context 4096): 400 context_length_exceeded ($(jq -c .error "$tmp/body"))"
req POST /v1/completions -H "$json" \
    -d "$(jq -cn '{prompt: [range(0; 4096) | 7], max_tokens: 1}')"
err_is 400 context_length_exceeded &&
    jq -e '.error.message | test("4096 tokens; it must be shorter than .* 4096 tokens")' \
        "$tmp/body" >/dev/null
ok $? "... 4096 of them too: the prompt must be shorter, to leave room ($(jq -r .error.message \
    "$tmp/body"))"
# (this server was started with --model-name: the API names the model so)
req GET /v1/models/my-v32
[ "$code" = 200 ] && jq -e '.id == "my-v32"' "$tmp/body" >/dev/null &&
    req GET /health && jq -e '.model == "my-v32"' "$tmp/body" >/dev/null
ok $? "--model-name my-v32: the model's id in the API ($code: $(head -c 200 "$tmp/body"))"
# without --temperature a request that gives none samples at 1 (usage): with a seed, not the
# greedy tokens (and the same seed, the same tokens)
for t in '"seed": 5' '"seed": 5' '"temperature": 0'; do
    req POST /v1/completions -H "$json" -d "{\"prompt\": \"a\", \"max_tokens\": 12,
        \"ignore_eos\": true, \"return_token_ids\": true, $t}"
    jq -c '.choices[0].token_ids' "$tmp/body"
done >"$tmp/ids"
[ "$(sed -n 1p "$tmp/ids")" = "$(sed -n 2p "$tmp/ids")" ] &&
    [ "$(sed -n 1p "$tmp/ids")" != "$(sed -n 3p "$tmp/ids")" ] && ! grep -q null "$tmp/ids"
ok $? "the default temperature samples: seed 5 twice, then greedy: $(tr '\n' ' ' <"$tmp/ids")"
stop_server

# A second signal stops the running request: the cut reply must not read as a finished one (a
# 200 with finish_reason "stop"). Not streamed it is a 503 shutting_down; a stream, whose 200
# went out, ends with an error event and never a finish_reason.
# abort_run NAME BODY: a server whose 3000-token completion BODY is stopped by two SIGINTs (the
# second once the server took the first); the reply in $tmp/NAME, the status in $tmp/NAME.code;
# a request queued behind it meanwhile: its reply in $tmp/NAME.q, its status in $tmp/NAME.qcode
abort_run() {
    start_server "$tmp/$1.log"
    curl -sN --max-time 30 -o "$tmp/$1" -w '%{http_code}' "$url/v1/completions" -H "$json" \
        -d "$2" >"$tmp/$1.code" 2>/dev/null &
    ab_pid=$!
    health_until '.busy == true' 50
    curl -s --max-time 30 -o "$tmp/$1.q" -w '%{http_code}' "$url/v1/completions" -H "$json" \
        -d '{"prompt": "b", "max_tokens": 2}' >"$tmp/$1.qcode" 2>/dev/null &
    abq_pid=$!
    health_until '.queued == 1' 50
    sleep 0.2
    kill -INT "$server_pid"
    file_until "$tmp/$1.log" 'finishing the running request'
    kill -INT "$server_pid"
    wait "$server_pid"
    ab_rc=$?
    server_pid=
    wait "$ab_pid"
    wait "$abq_pid"
}
abort_run abort '{"prompt": "a", "max_tokens": 3000, "ignore_eos": true}'
[ "$ab_rc" -eq 0 ] && [ "$(cat "$tmp/abort.code")" = 503 ] &&
    jq -e '.error.code == "shutting_down" and .choices == null' "$tmp/abort" >/dev/null &&
    grep -q 'generated, aborted' "$tmp/abort.log"
ok $? "a second SIGINT mid-request: 503 shutting_down, not a 200 that reads whole (rc $ab_rc, \
$(cat "$tmp/abort.code"): $(head -c 200 "$tmp/abort"))"
[ "$(cat "$tmp/abort.qcode")" = 503 ] &&
    jq -e '.error.code == "shutting_down" and .error.type == "server_error"' "$tmp/abort.q" \
        >/dev/null
ok $? "... and the request queued behind it: 503 shutting_down ($(cat "$tmp/abort.qcode"): \
$(head -c 200 "$tmp/abort.q"))"
abort_run aborts '{"prompt": "a", "max_tokens": 3000, "ignore_eos": true, "stream": true}'
sed -n 's/^data: //p' "$tmp/aborts" | grep -v '^\[DONE\]$' >"$tmp/aborts.ev"
[ "$ab_rc" -eq 0 ] && [ "$(cat "$tmp/aborts.code")" = 200 ] &&
    tail -n 1 "$tmp/aborts.ev" | jq -e '.error.code == "shutting_down"' >/dev/null &&
    ! grep -q '"finish_reason":"' "$tmp/aborts"
ok $? "... streamed: it ends with an error event, no finish_reason (rc $ab_rc: $(tail -c 300 \
"$tmp/aborts" | tr '\n' ' '))"

# A second signal also ends a stream whose client stopped reading (here: curl writes into a FIFO
# nobody reads, so it stops reading once the FIFO is full; events of 20 log-probabilities a token
# fill the sockets' buffers soon): the server exits within the 2 s it gives replies after an
# abort, not after the connection's idle timeout (120 s).
start_server "$tmp/g.log"
mkfifo "$tmp/unread"
exec 8<>"$tmp/unread" # a reader that never reads: curl's writes block once it is full
curl -sN --max-time 60 -o "$tmp/unread" "$url/v1/chat/completions" -H "$json" -d '{"messages":
    [{"role": "user", "content": "a"}], "max_tokens": 4000, "ignore_eos": true,
    "logprobs": true, "top_logprobs": 20, "stream": true}' >/dev/null 2>&1 &
slow_pid=$!
sleep 12
kill -INT "$server_pid"
file_until "$tmp/g.log" 'finishing the running request'
t0=$(date +%s)
kill -INT "$server_pid"
wait "$server_pid"
rc=$?
server_pid=
took=$(($(date +%s) - t0))
kill "$slow_pid" 2>/dev/null
wait "$slow_pid" 2>/dev/null
exec 8>&-
[ "$rc" -eq 0 ] && [ "$took" -le 10 ]
ok $? "a second SIGINT ends a stream whose client stopped reading: exit 0 in $took s (rc $rc)"

# a client that gives up while queued frees its place at once (--queue 1)
start_server "$tmp/c.log" --queue 1
start_long
curl -s --max-time 0.5 "$url/v1/completions" -H "$json" -d '{"prompt": "b", "max_tokens": 2}' \
    >/dev/null 2>&1
health_until '.queued == 0'
jq -e '.queued == 0 and .busy == true' "$tmp/body" >/dev/null
ok $? "a queued client that hangs up leaves the queue while the running request goes on"
kill "$long_pid" 2>/dev/null
wait "$long_pid" 2>/dev/null
# (--queue 1: the two clients below need the engine free again, else one gets 429)
health_until '.busy == false and .queued == 0' 100

# short streams, two clients at a time: each reply whole, also where the worker finishes a
# stream before its connection's thread has woken up (it used to answer nothing)
short_streams() {
    k=0
    while [ $k -lt 100 ]; do
        curl -sN --max-time 30 "$url/v1/completions" -H "$json" -d '{"prompt": "a",
            "max_tokens": 1, "stream": true}' >"$tmp/short_$1" 2>/dev/null
        tail -n 2 "$tmp/short_$1" | head -n 1 | grep -q '^data: \[DONE\]$' ||
            { printf 'reply: '; head -c 200 "$tmp/short_$1"; echo; } >>"$tmp/short_bad"
        k=$((k + 1))
    done
}
: >"$tmp/short_bad"
short_streams a &
short_pid=$!
short_streams b
wait "$short_pid"
[ ! -s "$tmp/short_bad" ]
ok $? "200 one-token streams from two clients at once: each ends with [DONE] (not: $(head -c 300 \
    "$tmp/short_bad" | tr '\n' ' '))"
stop_server

# listening on every address, 127.0.0.1 included: a rebound name is refused on a loopback
# connection all the same; a reverse proxy's page passes once --allow-origin names it
start_server "$tmp/d.log" --host 0.0.0.0 --allow-origin https://chat.example.com
req GET /v1/models -H "Host: evil.example:$port" -H "Origin: http://evil.example:$port"
err_is 403 host_not_allowed
ok $? "--host 0.0.0.0: a rebound name on a loopback connection: 403 host_not_allowed"
req GET /v1/models -H "Origin: https://chat.example.com"
[ "$code" = 200 ]
ok $? "--allow-origin: the proxy's page passes ($code)"
req GET /v1/models -H "Host: chat.example.com" -H "Origin: https://chat.example.com"
[ "$code" = 200 ]
ok $? "--allow-origin: ... also with the proxy's name as Host ($code)"
req GET /v1/models -H "Origin: https://other.example.com"
err_is 403 cross_origin
ok $? "--allow-origin: another site's page is still refused"
stop_server
# every address: the log warns that other machines can reach the model, and, with no --api-key,
# that one would require a key
grep -q "listening on 0.0.0.0, which other machines can reach: anyone who can connect can use \
the model (--api-key requires a key)$" "$tmp/d.log"
ok $? "--host 0.0.0.0 without a key is warned about: $(grep 'other machines' "$tmp/d.log")"
# "--host ::" listens on every address, IPv4 ones too (dual stack), as 0.0.0.0 does for IPv4
if grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6 2>/dev/null; then
    start_server "$tmp/v6.log" --host ::
    v4=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")
    v6=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "http://[::1]:$port/health")
    [ "$v4" = 200 ] && [ "$v6" = 200 ] && grep -q "listening on http://\[::\]:$port/" "$tmp/v6.log"
    ok $? "--host :: takes IPv4 and IPv6 connections (127.0.0.1: $v4, [::1]: $v6), said in \
brackets: $(grep -o 'http://[^ ]*' "$tmp/v6.log")"
    stop_server
else
    ok 0 "--host :: takes IPv4 and IPv6 connections # SKIP no IPv6 loopback here"
fi
"$bin" serve -m "$model" --allow-origin chat.example.com >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "bad --allow-origin 'chat.example.com'" "$tmp/err"
ok $? "--allow-origin without a scheme: exit 2 (rc $rc)"

# a crowd of stalled requests (a "slowloris"): --queue 0 takes 64 connections; clients that send
# half their headers (curl's telnet: raw bytes) or their headers and no body, then nothing, fill
# them, and a new client is turned away. Once half of the slots are open, a connection with no
# whole request after --request-deadline is shut down, so the crowd is gone within the deadline
# (without it, for as long as the clients stall: 60 s). The deadline is long enough for all 64 to
# connect first on a slow (sanitizer, or busy) build, and the refusal counts when it is seen.
start_server "$tmp/e.log" --queue 0 --request-deadline 30
mkfifo "$tmp/stall"
exec 7<>"$tmp/stall" # a writer that never writes: each client waits for more to send
half=0
curl -V | grep -q telnet && half=32
i=0
while [ $i -lt 64 ]; do
    if [ $i -lt $half ]; then
        # (a subshell's exec closes fd 7 for good; `{ ...; } 7>&-` would keep a copy to restore,
        # a writer that keeps the cat waiting after the test ends)
        (
            exec 7>&-
            printf 'POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n'
            cat "$tmp/stall"
        ) | curl -s --max-time 60 "telnet://127.0.0.1:$port" 7>&- >/dev/null 2>&1 &
    else
        curl -s --max-time 60 -o /dev/null -X POST -T - -H "$json" "$url/v1/completions" \
            <"$tmp/stall" 7>&- >/dev/null 2>&1 &
    fi
    i=$((i + 1))
done
# conns: the clients' connections to the server now up (their ends in /proc/net/tcp). /health
# is polled only once all 64 are: a poll before that could take a slot one of them needs, which
# then stays one short of full
conns() {
    awk -v p=":$(printf '%04X' "$port")\$" '$3 ~ p && $4 == "01"' /proc/net/tcp | wc -l
}
k=0
while [ $k -lt 300 ] && [ "$(conns)" -lt 64 ]; do
    sleep 0.1
    k=$((k + 1))
done
# health_code: GET /health's status, 000 where the connection was turned away
health_code() { curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$url/health"; }
t=0
refused=1
while [ $t -lt 120 ]; do
    [ "$(health_code)" != 200 ] && refused=0 && break
    sleep 0.1
    t=$((t + 1))
done
ok $refused "64 stalled clients ($half with half their headers, $(conns) up after $k polls) fill \
the 64 slots: a new one is refused"
t=0
while [ $t -lt 500 ] && [ "$(health_code)" != 200 ]; do
    sleep 0.1
    t=$((t + 1))
done
[ "$(health_code)" = 200 ]
ok $? "--request-deadline 30: the stalled connections are closed, a new client gets in (after \
$((t / 10)) s more)"
# (the first sweep past the deadline may cut only one: "1 connection closed so far")
file_until "$tmp/e.log" "closed so far that sent no whole request within 30 s" &&
    ! grep -q "incomplete request\|when reading request" "$tmp/e.log"
ok $? "the log says so in one line, not one of libmicrohttpd's a connection: $(grep \
    'incomplete request\|when reading request\|closed so far' "$tmp/e.log" | sort | uniq -c |
    tr -s ' \n' ' ;' | head -c 400)"
exec 7>&- # the uploads' stdin ends: any still running finishes
wait_jobs=$(jobs -p)
stop_server
for p in $wait_jobs; do wait "$p" 2>/dev/null; done
# Ctrl-C while the server starts (here the quick hardware benchmark that an automatic plan of a
# machine without a cached profile runs first: several seconds): the process ends by the signal
# at once, as `run` does; SIGINT and SIGTERM used to wait, blocked, until it listened, then exit 0.
MOETIER_CACHE_DIR="$tmp/startcache" "$bin" serve -m "$model" --host 127.0.0.1 --port 0 \
    --cpu-mem 4100M --ctx 64 >/dev/null 2>"$tmp/start.err" &
start_pid=$!
file_until "$tmp/start.err" "measuring" 300
kill -INT "$start_pid"
wait "$start_pid"
rc=$?
[ "$rc" -eq 130 ] && grep -q "^moetier serve: interrupted while starting$" "$tmp/start.err" &&
    ! grep -q "listening" "$tmp/start.err" && ! ls "$tmp/startcache"/*.json >/dev/null 2>&1
ok $? "SIGINT during start-up (the quick benchmark) ends it by the signal, nothing listens, no \
profile cached (rc $rc: $(tail -n 2 "$tmp/start.err" | tr '\n' ' '))"
"$bin" serve -m "$model" --request-deadline 3601 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "bad --request-deadline '3601' (must be in 0..3600)" "$tmp/err"
ok $? "--request-deadline past an hour: exit 2 (rc $rc): $(head -c 200 "$tmp/err")"
"$bin" serve -m "$model" --stream-keepalive 0.001 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "stream-keepalive must be 0 (never) or 0.01 to 3600" "$tmp/err"
ok $? "--stream-keepalive below 0.01 s: exit 2 (rc $rc): $(head -c 200 "$tmp/err")"
# serve takes the shared --experts (cli_common.c): its help says so, as run's and chat's do
"$bin" serve --help | grep -q -- '--experts KIND'
ok $? "serve --help lists --experts"
tap_exit
