# SPDX-License-Identifier: MIT
# lib_serve.sh - what the serve tests share, sourced after tests/lib.sh: `need TOOL WHY` (a
# missing client is a SKIP locally and `Bail out!` under MT_REQUIRE_SERVE_CLIENTS=1, which
# .ci/run sets after installing them), a tiny synth model, a server started on a free port of
# 127.0.0.1 that is stopped when the test exits, and `post PATH BODY` to it. Every request goes to 127.0.0.1 only, with
# curl's --max-time, so a test always ends by itself.

# need COMMAND REASON: skip the whole test (or bail out in CI) when COMMAND is missing.
need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        if [ "${MT_REQUIRE_SERVE_CLIENTS:-0}" = 1 ]; then
            bail_out "$1 is missing ($2) and MT_REQUIRE_SERVE_CLIENTS=1"
        fi
        echo "1..0 # SKIP $1 is missing ($2)"
        exit 0
    fi
}

# skip_or_bail REASON: as need, for a missing client that is not a command.
skip_or_bail() {
    if [ "${MT_REQUIRE_SERVE_CLIENTS:-0}" = 1 ]; then
        bail_out "$1 and MT_REQUIRE_SERVE_CLIENTS=1"
    fi
    echo "1..0 # SKIP $1"
    exit 0
}

# The serve tests hold the server to `moetier run` on the same ids. On a CPU with AMX the CPU
# experts' prefill multiplies in bf16 tiles while decode steps stay in fp32, so a prompt read in
# one piece and an answer generated token by token part in the last bits, and on a random model
# a near tie can flip (a log-probability measured 5e-3 off, one of 300 echo rows 0.3). The exact
# kernels the oracle holds are pinned there, as test_gpu_hetero does; test_cpu_experts checks
# the AMX ones.
if [ -z "${MOETIER_ISA:-}" ] && grep -qw amx_bf16 /proc/cpuinfo 2>/dev/null; then
    MOETIER_ISA=avx512
    export MOETIER_ISA
fi

server_pid=
stop_server() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
        server_pid=
    fi
}

# make_model: a tiny random checkpoint in $tmp/tiny (after make_tmp).
make_model() {
    model="$tmp/tiny"
    "$bin" synth --preset tiny -q -o "$model" >/dev/null 2>"$tmp/synth.err" ||
        bail_out "moetier synth failed: $(cat "$tmp/synth.err")"
    trap 'stop_server; rm -rf "$tmp"' EXIT
}

# start_server LOG [FLAGS...]: serve $model on a free port of 127.0.0.1 (or the FLAGS' --host);
# sets $server_pid, $port and $url (always 127.0.0.1).
start_server() {
    log=$1
    shift
    "$bin" serve -m "$model" --host 127.0.0.1 --port 0 --threads 1 "$@" 2>"$log" &
    server_pid=$!
    port=
    i=0
    while [ $i -lt 100 ] && [ -z "$port" ]; do
        port=$(sed -n 's|^moetier serve: listening on http://.*:\([0-9]*\)/ .*|\1|p' "$log" 2>/dev/null)
        [ -n "$port" ] || sleep 0.1
        i=$((i + 1))
    done
    [ -n "$port" ] || bail_out "the server did not start: $(cat "$log")"
    url="http://127.0.0.1:$port"
}

# post PATH BODY: POST the JSON BODY to the server's PATH; the reply in $tmp/body, the status
# in $code.
post() {
    code=$(curl -s --max-time 60 -o "$tmp/body" -w '%{http_code}' "$url$1" \
        -H "Content-Type: application/json" -d "$2")
}
