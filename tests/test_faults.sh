#!/bin/sh
# SPDX-License-Identifier: MIT
# test_faults.sh - faults while experts stream (issue 13): a read error (injected with
# MT_IO_FAULT, io/expert_source.h) or a CRC mismatch in a pack store is read again twice, each
# retry a warning, then fails the run with one message naming the layer, the expert and the
# file, exit 1 and no token printed; a fault that clears on a retry changes no token (and the run
# report counts the retry); a server answers the request that hit a lasting fault with an error
# and the next request normally.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
. "$MT_SRCDIR/tests/serve/lib_serve.sh"
need jq "JSON in shell tests; apt-get install jq"
need curl "the HTTP client of the serve checks; apt-get install curl"
make_tmp faults
trap 'stop_server; rm -rf "$tmp"' EXIT
m="$tmp/small"

echo "1..9"
"$bin" synth --preset small --seed 3 -o "$m" >/dev/null 2>"$tmp/err" ||
    bail_out "synth --preset small failed: $(cat "$tmp/err")"
"$bin" plan -m "$m" --hw "$MT_SRCDIR/bench/profiles/rtx3090-ddr4.json" --gpu-mem 2G \
    --cpu-mem 4.1G --gpu-reserve 1.6G --ctx 1024 -o "$tmp/plan.json" >/dev/null 2>&1 ||
    bail_out "plan failed"
# every routed expert streamed from the shards
sed -E "s/\"(tiers|prefill)\": *\"[A-Z]+\"/\"\1\": \"$(printf 'N%.0s' $(seq 64))\"/g" \
    "$tmp/plan.json" >"$tmp/nvme.json"
ids="5,17,900,33,4242,7,12,99,1000,65000,3,8,21,400,77,2,19,4096,123,88,6,31,250,11,9"
run() { "$bin" run -m "$m" --prompt-ids "$ids" -n 4 --print-ids "$@" 2>"$tmp/err"; }
plain=$(run)
[ -n "$plain" ] || bail_out "the plain run failed: $(cat "$tmp/err")"

# a lasting read error on the first expert of layer 1 that is read
got=$(MT_IO_FAULT='1:*' run --plan "$tmp/nvme.json")
rc=$?
[ $rc -eq 1 ] && [ -z "$got" ]
ok $? "a lasting read error: exit 1 (rc $rc), no token printed ('$got')"
[ "$(grep -c 'reading it again (retry 1 of 2)' "$tmp/err")" -eq 1 ] &&
    [ "$(grep -c 'reading it again (retry 2 of 2)' "$tmp/err")" -eq 1 ] &&
    ! grep -q 'retry 3' "$tmp/err"
ok $? "... read again twice, each retry logged once"
final=$(grep -v 'warning' "$tmp/err" | grep 'read 3 times')
[ "$(printf '%s\n' "$final" | grep -c .)" -eq 1 ] &&
    printf '%s\n' "$final" | grep -q "layer 1 expert [0-9]*: read of '.*small/model-[0-9]*-of-\
[0-9]*\.safetensors' at offset [0-9]* ([1-9][0-9]* bytes) failed"
ok $? "... then one message naming layer, expert and file: $final"

# a fault that clears on the first retry: the same tokens, one retry in the report
got=$(MT_IO_FAULT='1:*:1' run --plan "$tmp/nvme.json" --json "$tmp/r.json")
rc=$?
[ $rc -eq 0 ] && [ "$got" = "$plain" ] && [ "$(grep -c 'retry 1 of 2' "$tmp/err")" -eq 1 ] &&
    ! grep -q 'retry 2 of 2' "$tmp/err" &&
    jq -e '.prefill.stream.retries + .decode.stream.retries == 1' "$tmp/r.json" >/dev/null
ok $? "a transient read error: one retry (counted in the report), the same tokens ('$got')"

# a CRC mismatch in a pack store (checked on every read, no flag needed)
"$bin" pack -q -m "$m" -o "$tmp/s0" 2>"$tmp/perr" || bail_out "pack failed: $(cat "$tmp/perr")"
size=$(wc -c <"$tmp/s0")
cp "$tmp/s0" "$tmp/bad0"
# one byte changed in every 64 KiB after the header and index: every expert extent is hit
off=65536
while [ $off -lt "$size" ]; do
    printf '\377' | dd of="$tmp/bad0" bs=1 seek=$off conv=notrunc 2>/dev/null
    off=$((off + 65536))
done
got=$(run --store "$tmp/bad0")
rc=$?
[ $rc -eq 1 ] && [ -z "$got" ] &&
    [ "$(grep -c 'CRC32C mismatch.*reading it again (retry [12] of 2)' "$tmp/err")" -eq 2 ]
ok $? "a CRC mismatch: exit 1 (rc $rc), no token, retried twice"
final=$(grep -v 'warning' "$tmp/err" | grep 'read 3 times')
printf '%s\n' "$final" | grep -q "layer [0-9]* expert [0-9]*: CRC32C mismatch in store '.*bad0'"
ok $? "... one message naming layer, expert and store file: $final"

# a server: the request that hits a lasting fault fails, the next is answered
model="$m"
MT_IO_FAULT='1:*:3' start_server "$tmp/serve.log" --plan "$tmp/nvme.json"
body='{"model": "small", "max_tokens": 4, "temperature": 0,
       "messages": [{"role": "user", "content": "hello there"}]}'
post() {
    code=$(curl -s --max-time 60 -o "$tmp/body" -w '%{http_code}' -X POST \
        -H "Content-Type: application/json" -d "$body" "$url/v1/chat/completions")
}
post
[ "$code" = 500 ] &&
    jq -e '.error.message | test("layer 1 expert [0-9]+: read of .*read 3 times")' "$tmp/body" \
        >/dev/null
rc=$?
msg=$(jq -c .error.message "$tmp/body" 2>/dev/null)
ok $rc "serve: the request that hit the fault gets 500 with the message: $msg"
post
[ "$code" = 200 ] && jq -e '.choices[0].message.content != null' "$tmp/body" >/dev/null
ok $? "serve: the next request is answered (HTTP $code)"
post
[ "$code" = 200 ] && kill -0 "$server_pid" 2>/dev/null
ok $? "serve: and the server keeps serving (HTTP $code)"
tap_exit
