#!/bin/sh
# SPDX-License-Identifier: MIT
# test_alloc_faults.sh - a failed allocation never crashes a command: each command below runs
# once to find its allocation sites (tests/fault_alloc.so, preloaded: every distinct call stack
# of moetier's own code that allocates), then once more for each site that no command before it
# reached, with that site's first allocation failing. Each such run must end in one of two
# ways: exit 1 or 2 with a message on stderr, or (where the allocation was optional, such as
# the config peeked at before a run) exit 0 with the very output of the run without a fault.
# A signal, a hang, a silent failure or a changed output fails the test, and its message names
# the allocation; to see where it is:
#   MT_FAIL_ALLOC=N MT_FAIL_ALLOC_TRACE=1 LD_PRELOAD=tests/fault_alloc.so ./moetier ...
# The server (test 11) must answer each request with its reply or a 500 carrying a JSON error
# (a stream may end cut), answer the next request normally, and stop with exit 0. The GPU
# engine's runs (tests 12, 13) need a CUDA device (they SKIP without one).
# A sanitizer build owns malloc itself: there the test skips.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
shim="$MT_BUILDDIR/tests/fault_alloc.so"
[ -f "$shim" ] || bail_out "$shim is missing (make check builds it)"
if ldd "$bin" 2>/dev/null | grep -q libasan; then
    echo "1..0 # SKIP AddressSanitizer replaces malloc: no allocation can be made to fail"
    exit 0
fi
case "$shim" in /*) ;; *) shim="$PWD/$shim" ;; esac
make_tmp allocfaults
server_pid=
trap '[ -z "$server_pid" ] || kill $server_pid 2>/dev/null; rm -rf "$tmp"' EXIT
m="$tmp/tiny"

echo "1..13"
"$bin" synth --preset tiny --seed 5 -o "$m" >/dev/null 2>"$tmp/err" ||
    bail_out "synth --preset tiny failed: $(cat "$tmp/err")"
"$bin" plan -m "$m" --hw "$MT_SRCDIR/bench/profiles/rtx3090-ddr4.json" --gpu-mem 2G \
    --gpu-reserve 1.6G --cpu-mem 4.1G --ctx 256 -o "$tmp/plan.json" >/dev/null 2>"$tmp/err" ||
    bail_out "plan failed: $(cat "$tmp/err")"
# every routed expert read from the shards at run time (the NVMe tier)
sed -E ':a
s/("(tiers|prefill)": *"N*)[A-MO-Z]/\1N/
ta' "$tmp/plan.json" >"$tmp/nvme.json"
grep -q '"tiers": *"NNNN' "$tmp/nvme.json" || bail_out "the plan has no tier strings to rewrite"
printf 'hello there\n/reset\nwhat is it\n' >"$tmp/chat.in"
printf 'héllo wörld 123 <｜User｜>\n' >"$tmp/text.in"
printf '5 17 100 33\n' >"$tmp/ids.in"

# new_sites: $tmp/new, the allocation numbers of the sites in $tmp/sites that no earlier
# command reached (loading a model is much the same for all of them); $tmp/seen grows by them
: >"$tmp/seen"
new_sites() {
    sort -n "$tmp/sites" | while read -r i h; do
        grep -qx "$h" "$tmp/seen" || echo "$i $h"
    done >"$tmp/new.both"
    cut -d' ' -f2 "$tmp/new.both" >>"$tmp/seen"
    cut -d' ' -f1 "$tmp/new.both" >"$tmp/new"
}

# sweep DESCRIPTION INPUT CLEAN CMD...: every allocation site of CMD failed once. INPUT is its
# stdin; CLEAN a path removed before each run (an output the command must create), or "".
sweep() {
    what=$1 input=$2 clean=$3
    shift 3
    [ -z "$clean" ] || rm -rf "$clean"
    LD_PRELOAD="$shim" MT_FAIL_ALLOC_SITES="$tmp/sites" "$@" <"$input" >"$tmp/ref.out" \
        2>"$tmp/ref.err"
    rc=$?
    if [ $rc -ne 0 ] || [ ! -s "$tmp/sites" ]; then
        ok 1 "$what: the run without a fault failed (exit $rc): $(tail -1 "$tmp/ref.err")"
        return
    fi
    bad="" count=0
    new_sites
    while read -r i; do
        count=$((count + 1))
        [ -z "$clean" ] || rm -rf "$clean"
        LD_PRELOAD="$shim" MT_FAIL_ALLOC=$i timeout 60 "$@" <"$input" >"$tmp/out" 2>"$tmp/err"
        rc=$?
        why=""
        if [ $rc -eq 0 ]; then
            cmp -s "$tmp/out" "$tmp/ref.out" || why="exit 0 with another output"
        elif [ $rc -gt 2 ]; then
            why="exit $rc: $(tail -1 "$tmp/err")"
        elif ! grep -q . "$tmp/err"; then
            why="exit $rc without a message"
        fi
        [ -z "$why" ] || bad="$bad; allocation $i: $why"
    done <"$tmp/new"
    [ -z "$bad" ]
    ok $? "$what: each of its $count new allocation sites failed once gives a message or the \
same output$bad"
}

sweep "inspect" /dev/null "" "$bin" inspect -m "$m"
sweep "run --prompt (tokenizer, engine, sampler)" /dev/null "" \
    "$bin" run -m "$m" --prompt "hello world" -n 3 --temperature 0.7 --seed 3
sweep "run --print-ids, experts read from the shards" /dev/null "" \
    "$bin" run -m "$m" --prompt-ids 5,17,100,33 -n 3 --print-ids --plan "$tmp/nvme.json"
sweep "chat --think, three lines" "$tmp/chat.in" "" "$bin" chat -m "$m" -n 4 --think
sweep "tokenize --special" "$tmp/text.in" "" "$bin" tokenize -m "$m" --special
sweep "tokenize --decode" "$tmp/ids.in" "" "$bin" tokenize -m "$m" --decode
sweep "plan" /dev/null "$tmp/plan2.json" "$bin" plan -m "$m" \
    --hw "$MT_SRCDIR/bench/profiles/rtx3090-ddr4.json" --gpu-mem 2G --gpu-reserve 1.6G \
    --cpu-mem 4.1G --ctx 256 -o "$tmp/plan2.json"
sweep "synth" /dev/null "$tmp/syn" "$bin" synth --preset tiny --seed 1 -o "$tmp/syn"
sweep "pack" /dev/null "$tmp/store" "$bin" pack -m "$m" -o "$tmp/store" -q
"$bin" pack -m "$m" -o "$tmp/store" -q 2>"$tmp/err" || bail_out "pack failed: $(cat "$tmp/err")"
sweep "run --store (experts from a pack store)" /dev/null "" \
    "$bin" run -m "$m" --prompt-ids 5,17,100,33 -n 3 --print-ids --plan "$tmp/nvme.json" \
    --store "$tmp/store"

# serve_up ENV...: start the server with the shim and ENV; false if it exits first ($port set)
serve_up() {
    : >"$tmp/serve.log" # here, not in the child: the loop must not read the last server's log
    env LD_PRELOAD="$shim" "$@" "$bin" serve -m "$m" --host 127.0.0.1 --port 0 --threads 1 \
        2>"$tmp/serve.log" &
    server_pid=$!
    port=
    tries=0
    while [ $tries -lt 200 ]; do
        port=$(sed -n 's|^moetier serve: listening on http://.*:\([0-9]*\)/ .*|\1|p' \
            "$tmp/serve.log")
        [ -z "$port" ] || return 0
        kill -0 $server_pid 2>/dev/null || return 1
        sleep 0.05
        tries=$((tries + 1))
    done
    return 1
}
serve_down() {
    kill -TERM $server_pid 2>/dev/null
    wait $server_pid
    down=$?
    server_pid=
    return $down
}
# chat BODY: POST it; prints curl's exit status and the HTTP status
chat() {
    curl -s --max-time 60 -o "$tmp/body" -w "%{http_code}" \
        "http://127.0.0.1:$port/v1/chat/completions" -H "Content-Type: application/json" -d "$1"
    echo " $?"
}
plain='{"messages":[{"role":"user","content":"hi"}],"max_tokens":4,"logprobs":true}'
streamed='{"messages":[{"role":"user","content":"hi"}],"max_tokens":4,"stream":true}'
if ! command -v curl >/dev/null 2>&1; then
    echo "ok 11 # SKIP curl is missing (apt-get install curl)"
elif ! serve_up MT_FAIL_ALLOC_SITES="$tmp/sites"; then
    ok 1 "serve: the server without a fault did not start: $(tail -1 "$tmp/serve.log")"
else
    ref="$(chat "$plain") $(chat "$streamed")"
    serve_down
    rc=$?
    bad="" count=0
    [ "$ref" = "200 0 200 0" ] && [ $rc -eq 0 ] || bad="; without a fault: $ref, exit $rc"
    new_sites
    while read -r i; do
        count=$((count + 1))
        rm -f "$tmp/fired"
        if ! serve_up MT_FAIL_ALLOC=$i MT_FAIL_ALLOC_FIRED="$tmp/fired"; then
            serve_down
            rc=$?
            if [ $rc -ne 1 ] && [ $rc -ne 2 ] || ! grep -q . "$tmp/serve.log"; then
                bad="$bad; allocation $i: start-up ended with exit $rc: $(tail -1 "$tmp/serve.log")"
            fi
            continue
        fi
        got=$(chat "$plain")
        case "$got" in
        "200 0") ;;
        "500 0") grep -q '"error":{"message":"[^"]' "$tmp/body" ||
            bad="$bad; allocation $i: a 500 without an error message" ;;
        *) bad="$bad; allocation $i: the plain request got $got" ;;
        esac
        got=$(chat "$streamed")
        case "$got" in
        "200 0" | "200 18" | "500 0") ;; # 18: a stream cut where an event could not be built
        *) bad="$bad; allocation $i: the stream got $got" ;;
        esac
        # allocation numbers move a little between runs (the HTTP and OpenMP threads allocate
        # too): the request after the fault must be whole, one before it may take the fault
        if [ -f "$tmp/fired" ]; then
            got=$(chat "$plain")
            [ "$got" = "200 0" ] || bad="$bad; allocation $i: the next request got $got"
        fi
        serve_down
        rc=$?
        [ $rc -eq 0 ] ||
            bad="$bad; allocation $i: the server's exit $rc: $(tail -1 "$tmp/serve.log")"
    done <"$tmp/new"
    [ -z "$bad" ]
    ok $? "serve: each of its $count new allocation sites (start-up, a request, a stream) \
failed once gives a reply or a 500, and the next request its reply$bad"
fi

# the GPU engine's host side (tests 12, 13: a CUDA device only): a run with every expert on the
# GPU, and one that reads the experts from the shards (the NVMe tier)
if ! "$bin" run -m "$m" --device gpu --prompt-ids 5,17 -n 1 --print-ids >/dev/null \
    2>"$tmp/err"; then
    why=$(grep -o 'no CUDA device\|no CUDA-capable device\|built without CUDA' "$tmp/err" |
        head -1)
    if [ -n "$why" ]; then
        echo "ok 12 # SKIP $why"
        echo "ok 13 # SKIP $why"
    else # a device that fails the run without a fault is a failure, not a skip
        ok 1 "run --device gpu without a fault failed: $(tail -1 "$tmp/err")"
        ok 1 "run --device gpu, experts read from the shards: not run (test 12)"
    fi
else
    sweep "run --device gpu" /dev/null "" \
        "$bin" run -m "$m" --device gpu --prompt-ids 5,17,100,33 -n 3 --print-ids
    sweep "run --device gpu, experts read from the shards" /dev/null "" \
        "$bin" run -m "$m" --device gpu --prompt-ids 5,17,100,33 -n 3 --print-ids \
        --plan "$tmp/nvme.json"
fi
tap_exit
