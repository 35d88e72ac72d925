#!/bin/sh
# SPDX-License-Identifier: MIT
# test_serve_clients.sh - `moetier serve` driven by real clients: the official openai library
# from npm (tests/serve/client.mjs; .ci/run installs it with npm ci) and the chat page in
# Debian's headless Chromium (tests/serve/page.py, selenium + chromedriver). A missing client is
# a SKIP here, and `Bail out!` under MT_REQUIRE_SERVE_CLIENTS=1 (CI), so CI cannot skip them.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
. "$MT_SRCDIR/tests/serve/lib_serve.sh"
need node "Node.js runs the openai client"
[ -f "$MT_SRCDIR/tests/serve/node_modules/openai/package.json" ] ||
    skip_or_bail "no openai package (npm ci --prefix tests/serve)"
need chromium "the chat page's browser; apt-get install chromium"
need chromedriver "drives Chromium; apt-get install chromium-driver"
/usr/bin/python3 -c 'import selenium' 2>/dev/null ||
    skip_or_bail "no python3-selenium (apt-get install python3-selenium)"

make_tmp serve-clients
make_model
key=clientkey
# keep-alive comments after 0.02 s of silence: client.mjs's held tool call stream gets them
start_server "$tmp/server.log" --api-key "$key" -q --stream-keepalive 0.02

# run_checks NAME CMD...: each "PASS what" / "FAIL what: why" line becomes one TAP result
run_checks() {
    name=$1
    shift
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    while IFS= read -r line; do
        case $line in
        PASS\ *) ok 0 "${line#PASS }" ;;
        FAIL\ *) ok 1 "${line#FAIL }" ;;
        esac
    done <"$tmp/out"
    [ "$rc" -eq 0 ] || sed 's/^/# /' "$tmp/err"
    ok "$rc" "$name exits 0 (rc $rc)"
}

run_checks client.mjs timeout 300 node "$MT_SRCDIR/tests/serve/client.mjs" "http://127.0.0.1:$port" "$key" tiny
[ "$n" -eq 12 ] || ok 1 "the openai client ran all 11 checks"
run_checks page.py timeout 90 /usr/bin/python3 "$MT_SRCDIR/tests/serve/page.py" "http://127.0.0.1:$port" "$key"
[ "$n" -ge 12 ] || ok 1 "the page test ran all 4 checks"
echo "1..$n"
tap_exit
