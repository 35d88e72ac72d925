#!/bin/sh
# SPDX-License-Identifier: MIT
# test_chat_sigint.sh - Ctrl-C in `moetier chat` (issue 13): a SIGINT during a reply (sent by the
# process itself after 3 tokens: MT_CHAT_SIGINT_AFTER, through the real handler) stops it, says
# so, keeps the partial reply in the conversation, and the next turns reuse the cache and give
# exactly the replies of a run that reuses nothing (MT_CHAT_COLD=1); chat -v prints the one-line
# run report after each turn; a SIGINT while chat waits for input on a pipe ends it with exit 0.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
make_tmp chat-sigint
m="$tmp/tiny"

echo "1..7"
"$bin" synth --preset tiny --seed 1 -o "$m" >/dev/null 2>"$tmp/err" ||
    bail_out "synth --preset tiny failed: $(cat "$tmp/err")"
lines='hello there
how are you
and then'
chat() { printf '%s\n' "$lines" | "$bin" chat -m "$m" -n 12 --temperature 0 -v "$@"; }

MT_CHAT_SIGINT_AFTER=3 chat >"$tmp/a.out" 2>"$tmp/a.err"
rc=$?
[ $rc -eq 0 ] && [ "$(grep -c '^\[stopped\]$' "$tmp/a.err")" -eq 1 ] &&
    grep -q '^mt: turn 1: .* decode 2 tokens' "$tmp/a.err"
ok $? "SIGINT after 3 tokens stops the first reply (exit $rc): $(grep 'turn 1' "$tmp/a.err")"
grep -q '^mt: turn 3: ' "$tmp/a.err" && ! grep -q '^mt: turn 2: .* decode 2 tokens' "$tmp/a.err"
ok $? "the session stays usable: the next turns run to their length"
reused=$(sed -n 's/^mt: turn 2: [0-9]* prompt tokens, \([0-9]*\) reused.*/\1/p' "$tmp/a.err")
[ "${reused:-0}" -gt 0 ]
ok $? "turn 2 reuses the cache after the stop ($reused tokens)"
MT_CHAT_COLD=1 MT_CHAT_SIGINT_AFTER=3 chat >"$tmp/c.out" 2>"$tmp/c.err"
[ $? -eq 0 ] && cmp -s "$tmp/a.out" "$tmp/c.out" &&
    grep -q '^mt: turn 2: [0-9]* prompt tokens, 0 reused' "$tmp/c.err"
ok $? "the replies equal those of a run without cache reuse (partial reply kept in both)"
line='^mt: decode [0-9.]* tok/s; ms/token gpu [0-9.]* dram-cpu [0-9.]*'
[ "$(grep -c "$line" "$tmp/a.err")" -eq 3 ]
ok $? "chat -v: one report line per turn: $(grep -m1 '^mt: decode' "$tmp/a.err")"
chat >"$tmp/b.out" 2>"$tmp/b.err"
[ $? -eq 0 ] && ! grep -q stopped "$tmp/b.err" && ! cmp -s "$tmp/a.out" "$tmp/b.out"
ok $? "without the signal no reply is stopped (and the transcript differs)"

# a SIGINT while chat waits for the next line on a pipe
mkfifo "$tmp/in"
"$bin" chat -m "$m" -n 4 --temperature 0 -v <"$tmp/in" >"$tmp/d.out" 2>"$tmp/d.err" &
pid=$!
exec 3>"$tmp/in"
echo "hello there" >&3
i=0
while [ $i -lt 300 ] && ! grep -q '^mt: turn 1:' "$tmp/d.err"; do
    sleep 0.1
    i=$((i + 1))
done
sleep 0.2
kill -INT $pid
i=0
while [ $i -lt 100 ] && kill -0 $pid 2>/dev/null; do
    sleep 0.1
    i=$((i + 1))
done
if kill -0 $pid 2>/dev/null; then
    kill $pid
    rc=99
else
    wait $pid
    rc=$?
fi
exec 3>&-
[ $rc -eq 0 ] && grep -q '^mt: turn 1:' "$tmp/d.err"
ok $? "SIGINT while waiting for input on a pipe: chat ends with exit 0 (rc $rc)"
tap_exit
