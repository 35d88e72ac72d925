#!/bin/sh
# SPDX-License-Identifier: MIT
# test_inputs.sh - every file moetier reads is opened without blocking and must be a regular file:
# a FIFO given as config.json, tokenizer.json, tokenizer_config.json or to --config, --hw, --trace,
# --check, and a device (/dev/zero) given to --trace, each exit 1 within seconds with one message
# naming the file and saying what it is (--store too); standard streams closed from the start;
# `help COMMAND`.
# Every command runs under `timeout`, so a regression fails (exit 124) instead of hanging the
# test suite.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
cfg="$MT_SRCDIR/tests/data/deepseek-v3.2/config.json"
prof="$MT_SRCDIR/bench/profiles/rtx3090-ddr4.json"
tokdir="$MT_TEST_DATA/tokenizer"
[ -f "$cfg" ] && [ -f "$prof" ] || bail_out "missing $cfg or $prof"
[ -f "$tokdir/tokenizer.json" ] || bail_out "missing $tokdir/tokenizer.json"
command -v timeout >/dev/null 2>&1 || bail_out "timeout(1) not found (coreutils)"
make_tmp inputs
mkfifo "$tmp/fifo" || bail_out "cannot create a FIFO in $tmp"

# expect_refused DESCRIPTION PATTERN COMMAND...: exit 1 (not 124: a hang), one message matching
# PATTERN on stderr.
expect_refused() {
    desc=$1
    pat=$2
    shift 2
    timeout 10 "$@" </dev/null >/dev/null 2>"$tmp/err"
    rc=$?
    [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q -- "$pat" "$tmp/err"
    ok $? "$desc: exit $rc: $(head -c 300 "$tmp/err")"
}

echo "1..19"
# A checkpoint directory whose config.json is a FIFO.
mkdir "$tmp/m" && mkfifo "$tmp/m/config.json"
expect_refused "config.json a FIFO (inspect)" "'$tmp/m/config.json' is a FIFO" \
    "$bin" inspect --config-only -m "$tmp/m"
expect_refused "--config FIFO (inspect)" "'$tmp/fifo' is a FIFO" \
    "$bin" inspect --config "$tmp/fifo"
expect_refused "--config FIFO (plan)" "'$tmp/fifo' is a FIFO" \
    "$bin" plan --config "$tmp/fifo" --hw "$prof" --gpu-mem 24G --cpu-mem 480G
expect_refused "--hw FIFO" "hardware profile '$tmp/fifo' is a FIFO" \
    "$bin" plan --config "$cfg" --hw "$tmp/fifo" --gpu-mem 24G --cpu-mem 480G
expect_refused "--trace FIFO" "trace '$tmp/fifo' is a FIFO" \
    "$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 24G --cpu-mem 480G --trace "$tmp/fifo"
expect_refused "--trace /dev/zero (no 16 GB read)" "trace '/dev/zero' is a device" \
    "$bin" plan --config "$cfg" --hw "$prof" --gpu-mem 24G --cpu-mem 480G --trace /dev/zero
expect_refused "--check FIFO" "plan '$tmp/fifo' is a FIFO" \
    "$bin" plan --config "$cfg" --check "$tmp/fifo"

# tokenizer.json and tokenizer_config.json as FIFOs.
mkdir "$tmp/t1" && mkfifo "$tmp/t1/tokenizer.json"
cp "$tokdir/tokenizer_config.json" "$tmp/t1/" 2>/dev/null
expect_refused "tokenizer.json a FIFO" "'$tmp/t1/tokenizer.json' is a FIFO" \
    "$bin" tokenize -m "$tmp/t1"
mkdir "$tmp/t2" && cp "$tokdir/tokenizer.json" "$tmp/t2/" && mkfifo "$tmp/t2/tokenizer_config.json"
expect_refused "tokenizer_config.json a FIFO" "'$tmp/t2/tokenizer_config.json' is a FIFO" \
    "$bin" tokenize -m "$tmp/t2"
# A directory where tokenizer_config.json belongs is refused too; a missing one is fine.
rm "$tmp/t2/tokenizer_config.json" && mkdir "$tmp/t2/tokenizer_config.json"
expect_refused "tokenizer_config.json a directory" "tokenizer_config.json' is a directory" \
    "$bin" tokenize -m "$tmp/t2"
rmdir "$tmp/t2/tokenizer_config.json"
out=$(printf 'hi' | timeout 10 "$bin" tokenize -m "$tmp/t2" 2>&1)
ok $? "no tokenizer_config.json at all is fine: $out"

expect_refused "-m naming a file, not the checkpoint directory" "is a file, not a directory" \
    "$bin" inspect -m "$cfg"
"$bin" synth -q --preset tiny -o "$tmp/tiny" >/dev/null 2>&1 || bail_out "synth failed"
for s in fifo tiny; do # run logs its device first: the refusal is its last line
    timeout 10 "$bin" run -m "$tmp/tiny" --store "$tmp/$s" --prompt-ids 1 -n 1 </dev/null \
        >/dev/null 2>"$tmp/err"
    rc=$?
    [ "$rc" -eq 1 ] && tail -1 "$tmp/err" | grep -q "store '$tmp/$s' is a .*, not a regular file"
    ok $? "--store naming a FIFO, then a directory ($s): exit $rc: $(tail -1 "$tmp/err")"
done

# standard streams closed from the start: stdout is refused (the output would be lost); a closed
# stdin reads as empty
timeout 10 "$bin" inspect --config-only --config "$cfg" >&- 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "stdout is closed" "$tmp/err"
ok $? "stdout closed (>&-): exit 1, one message (rc $rc: $(cat "$tmp/err"))"
out=$(timeout 10 "$bin" tokenize -m "$tokdir" <&- 2>"$tmp/err")
rc=$?
[ "$rc" -eq 0 ] && [ -z "$out" ]
ok $? "stdin closed (<&-): read as empty, exit 0 (rc $rc)"
"$bin" help tokenize | grep -q -- "usage: moetier tokenize"
ok $? "moetier help tokenize: tokenize's help"
timeout 10 "$bin" help nosuch >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "no command 'nosuch'" "$tmp/err"
ok $? "moetier help of an unknown command: exit 2 naming it (rc $rc)"
timeout 10 "$bin" "$(printf 'no\033[2Jsuch')" >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "unknown command 'no\\\\x1b\[2Jsuch'" "$tmp/err" &&
    ! grep -q "$(printf '\033')" "$tmp/err"
ok $? "an unknown command with an escape sequence in it: named with \\x1b, no raw ESC (rc $rc)"
tap_exit
