#!/bin/sh
# SPDX-License-Identifier: MIT
# test_tokenize_cli.sh - `moetier tokenize` end to end with the DeepSeek tokenizer
# (tests/data/tokenizer): any bytes (all 256, NUL and invalid UTF-8 included) encode and --decode
# back to themselves, --special turns "<｜User｜>" into one id, ids separated by commas decode
# like ids separated by spaces, and bad input (an id that is not a number, out of the
# vocabulary, a NUL byte among ids, stdin that cannot be read or is past 256 MiB) exits 1 with
# one message; usage errors exit 2.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
tokdir="$MT_TEST_DATA/tokenizer"

make_tmp tokenize

echo "1..19"

# every byte value once, then text with an overlong '/', a lone surrogate and a cut-off character
i=0
while [ "$i" -lt 256 ]; do
    # shellcheck disable=SC2059
    printf "\\$(printf '%03o' "$i")"
    i=$((i + 1))
done >"$tmp/in.bin"
printf 'héllo wörld \300\257 \355\240\200 \342\202' >>"$tmp/in.bin"
"$bin" tokenize -m "$tokdir" <"$tmp/in.bin" >"$tmp/ids" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && [ "$(wc -l <"$tmp/ids")" -eq 1 ]
ok $? "all 256 bytes and invalid UTF-8 encode to one line of ids (rc $rc)"
"$bin" tokenize -m "$tokdir" --decode <"$tmp/ids" | cmp -s - "$tmp/in.bin"
ok $? "--decode gives the exact bytes back"
tr ' ' ',' <"$tmp/ids" | "$bin" tokenize -m "$tokdir" --decode | cmp -s - "$tmp/in.bin"
ok $? "ids separated by commas decode the same"

plain=$(printf '<｜User｜>' | "$bin" tokenize -m "$tokdir" | wc -w)
special=$(printf '<｜User｜>' | "$bin" tokenize -m "$tokdir" --special | wc -w)
[ "$plain" -gt 1 ] && [ "$special" -eq 1 ]
ok $? "<｜User｜> is one id with --special, plain text without ($special, $plain ids)"

printf '' | "$bin" tokenize -m "$tokdir" >"$tmp/empty" && [ "$(cat "$tmp/empty")" = "" ]
ok $? "empty input gives an empty line"

for bad in '5-3' '0x10' '+5' '12a' '2147483648'; do
    printf '1 %s 2' "$bad" | "$bin" tokenize -m "$tokdir" --decode >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ "$rc" -ne 1 ] || [ -s "$tmp/out" ] || ! grep -q "bad token id '$bad'" "$tmp/err"; then
        echo "# '$bad': rc $rc, $(cat "$tmp/err")"
        rc=9
    fi
    [ "$rc" -eq 1 ]
    ok $? "--decode refuses '$bad' with a message naming it, prints nothing"
done

printf '1 2\0003' | "$bin" tokenize -m "$tokdir" --decode >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && [ ! -s "$tmp/out" ] && grep -q 'NUL byte' "$tmp/err"
ok $? "a NUL byte among ids exits 1 with a message (rc $rc)"
printf '1 \377\376' | "$bin" tokenize -m "$tokdir" --decode >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "bad token id '.xff.xfe'" "$tmp/err" &&
    ! LC_ALL=C grep -q "$(printf '\377')" "$tmp/err"
ok $? "bytes that are not text among ids are named as \\xNN, never written raw (rc $rc)"
printf '1 128815 -1' | "$bin" tokenize -m "$tokdir" --decode >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q 'id 128815 .* is not a token' "$tmp/err"
ok $? "an id past the vocabulary exits 1 with a message (rc $rc)"
"$bin" tokenize -m "$tokdir" </ >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && [ ! -s "$tmp/out" ] && grep -q 'cannot read stdin' "$tmp/err"
ok $? "stdin that cannot be read (a directory) exits 1, not an empty text (rc $rc)"
# stdin past MT_FILE_MAX_DEFAULT (256 MiB, as for a file) is refused as it streams: `yes |` must
# not fill memory, and the message says the limit
head -c $((256 * 1024 * 1024 + 1)) /dev/zero |
    timeout 60 "$bin" tokenize -m "$tokdir" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && [ ! -s "$tmp/out" ] &&
    grep -q 'cannot read stdin (text): more than 256 MiB' "$tmp/err"
ok $? "stdin of 256 MiB + 1 byte exits 1 naming the limit (rc $rc: $(head -c 200 "$tmp/err"))"

if [ -w /dev/full ]; then
    printf 'hello' | "$bin" tokenize -m "$tokdir" >/dev/full 2>"$tmp/err"
    rc=$?
    [ "$rc" -eq 1 ] && grep -q 'cannot write to stdout' "$tmp/err" &&
        [ "$(wc -l <"$tmp/err")" -eq 1 ]
    ok $? "output that cannot be written exits 1 with one message (rc $rc: $(cat "$tmp/err"))"
    printf '1 2' | "$bin" tokenize -m "$tokdir" --decode >/dev/full 2>"$tmp/err"
    rc=$?
    [ "$rc" -eq 1 ] && grep -q 'cannot write to stdout' "$tmp/err" &&
        [ "$(wc -l <"$tmp/err")" -eq 1 ]
    ok $? "--decode output that cannot be written exits 1 with one message (rc $rc: \
$(cat "$tmp/err"))"
else
    ok 0 "# SKIP no /dev/full"
    ok 0 "# SKIP no /dev/full"
fi

"$bin" tokenize </dev/null >/dev/null 2>&1
rc1=$?
"$bin" tokenize -m "$tokdir" --bogus </dev/null >/dev/null 2>&1
rc2=$?
"$bin" tokenize -m "$tmp/nowhere" </dev/null >/dev/null 2>"$tmp/err"
rc3=$?
[ "$rc1" -eq 2 ] && [ "$rc2" -eq 2 ] && [ "$rc3" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ]
ok $? "no -m and an unknown flag exit 2, a missing tokenizer 1 with one message ($rc1 $rc2 $rc3)"
printf 'hello' | "$bin" tokenize -m "$tokdir" extra >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && [ ! -s "$tmp/out" ] && grep -q "unexpected argument 'extra'" "$tmp/err"
ok $? "an argument after the flags is a usage error, the text comes on stdin (rc $rc)"
tap_exit
