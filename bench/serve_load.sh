#!/bin/sh
# SPDX-License-Identifier: MIT
# serve_load.sh [MODEL_DIR] - load test of `moetier serve` on this machine (127.0.0.1 only,
# bounded in count and time; never run by make check). Without MODEL_DIR it makes a tiny synth
# model. Prints two tables:
#   1. GET /health requests/s (curl with keep-alive, URL globbing, 1 and 8 connections), idle and
#      while a long generation runs: the HTTP side stays responsive while the engine works.
#   2. decode tok/s of `moetier run` against the same prompt through the server: the engine's own
#      decode speed inside the server (/metrics) and end to end at the client (streamed and not),
#      median of RUNS runs each. The difference is the server's overhead.
# Environment: MOETIER (binary, default ./moetier), N_TOK (default 256), RUNS (default 3),
# N_HEALTH (requests per /health measurement, default 2000), THREADS (default 1).
set -eu
bin=${MOETIER:-./moetier}
n_tok=${N_TOK:-256}
runs=${RUNS:-3}
n_health=${N_HEALTH:-2000}
threads=${THREADS:-1}
prompt="The quick brown fox jumps over the lazy dog and keeps running"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mt-serve-bench-XXXXXX")
pid=
cleanup() {
    [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
    [ -z "$pid" ] || wait "$pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
model=${1:-}
if [ -z "$model" ]; then
    model="$tmp/tiny"
    "$bin" synth --preset tiny -q -o "$model" >/dev/null
fi

now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

"$bin" serve -m "$model" --port 0 --threads "$threads" -q --max-tokens 100000 2>"$tmp/log" &
pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's|^moetier serve: listening on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$tmp/log")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { cat "$tmp/log"; exit 1; }
url="http://127.0.0.1:$port"

# health_rate CONNECTIONS: requests/s of n_health GET /health
health_rate() {
    t0=$(now)
    curl -s --no-progress-meter --max-time 120 --parallel --parallel-max "$1" "$url/health?[1-$n_health]" \
        >"$tmp/h.out"
    t1=$(now)
    ok=$(grep -o '"status":"ok"' "$tmp/h.out" | wc -l)
    [ "$ok" -eq "$n_health" ] || echo "warning: $ok of $n_health health answers were ok" >&2
    echo "$n_health $t0 $t1" | awk '{ printf "%.0f", $1 / ($3 - $2) }'
}

echo "# moetier serve load test: $(uname -m), $(nproc) cores, model $(basename "$model"), $threads engine thread(s)"
echo "# /health: $n_health requests per measurement (curl, keep-alive)"
printf '%-34s %12s %12s\n' "GET /health" "1 conn r/s" "8 conn r/s"
printf '%-34s %12s %12s\n' "engine idle" "$(health_rate 1)" "$(health_rate 8)"
curl -sN --max-time 300 "$url/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"prompt\": \"x\", \"max_tokens\": 20000, \"temperature\": 0, \"stream\": true}" \
    >/dev/null 2>&1 &
gen=$!
sleep 1
busy=$(curl -s --max-time 5 "$url/health" | grep -c '"busy":true' || true)
r1=$(health_rate 1)
r8=$(health_rate 8)
printf '%-34s %12s %12s\n' "while a generation runs (busy $busy)" "$r1" "$r8"
kill "$gen" 2>/dev/null || true
wait "$gen" 2>/dev/null || true
sleep 0.5

echo
echo "# decode: prompt \"$prompt\", $n_tok tokens, greedy, median of $runs runs"
: >"$tmp/run"
: >"$tmp/eng"
: >"$tmp/e2e"
: >"$tmp/sse"
body="{\"prompt\": \"$prompt\", \"max_tokens\": $n_tok, \"temperature\": 0}"
sbody="{\"prompt\": \"$prompt\", \"max_tokens\": $n_tok, \"temperature\": 0, \"stream\": true}"
for _ in $(seq "$runs"); do
    "$bin" run -m "$model" --threads "$threads" -p "$prompt" -n "$n_tok" 2>&1 >/dev/null |
        sed -n 's/.*decode [0-9]* tokens in .* s (\([0-9.]*\) tok\/s).*/\1/p' >>"$tmp/run"
    # the server reuses the cached prompt on a repeat: every run differs in its first token
    t0=$(now)
    curl -s --max-time 300 "$url/v1/completions" -H 'Content-Type: application/json' \
        -d "$body" >"$tmp/c.json"
    t1=$(now)
    gen_n=$(sed -n 's/.*"completion_tokens":\([0-9]*\).*/\1/p' "$tmp/c.json")
    echo "$gen_n $t0 $t1" | awk '{ printf "%.2f\n", $1 / ($3 - $2) }' >>"$tmp/e2e"
    curl -s --max-time 10 "$url/metrics" |
        sed -n 's/^moetier_decode_tokens_per_second //p' >>"$tmp/eng"
    t0=$(now)
    curl -sN --max-time 300 "$url/v1/completions" -H 'Content-Type: application/json' \
        -d "$sbody" >"$tmp/s.out"
    t1=$(now)
    chunks=$(grep -c '"text"' "$tmp/s.out" || true)
    echo "$n_tok $t0 $t1" | awk '{ printf "%.2f\n", $1 / ($3 - $2) }' >>"$tmp/sse"
done
run=$(median <"$tmp/run")
printf '%-44s %10s %10s\n' "path" "tok/s" "vs run"
row() { printf '%-44s %10.2f %9.1f%%\n' "$1" "$2" "$(echo "$2 $run" | awk '{ print 100 * $1 / $2 }')"; }
row "moetier run (decode)" "$run"
row "serve: engine decode (/metrics)" "$(median <"$tmp/eng")"
row "serve: client, not streamed (incl. prefill)" "$(median <"$tmp/e2e")"
row "serve: client, streamed (incl. prefill)" "$(median <"$tmp/sse")"
