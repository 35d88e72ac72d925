#!/bin/sh
# SPDX-License-Identifier: MIT
# test_synth_cli.sh - `moetier synth` never loses a user's files (issue 9, findings 1 and 2).
# A --force run whose tokenizer directory is missing, or whose writes fail halfway, leaves the
# checkpoint it would replace byte for byte; a successful --force run leaves exactly the new
# checkpoint (no stale shard of the old one, no staging directory). A directory that another
# process holds locked is refused before anything is written into it, and two synth runs racing
# into one new directory end with one winner, one clear failure and the winner's checkpoint intact.
# SIGINT or SIGTERM mid-write removes the staging directory (hundreds of MB for small, tens of GB
# for v32-shape) and exits 128 + the signal; --force removes the staging directories a killed
# synth left, and nothing else.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
make_tmp synth

# sums DIR: the sha256 of every entry (dot files included), sorted by name
sums() {
    (cd "$1" && ls -A | LC_ALL=C sort | while read -r f; do
        if [ -f "$f" ]; then sha256sum "$f"; else echo "not a file: $f"; fi
    done)
}

echo "1..41"
"$bin" synth -q -o "$tmp/x" --preset tiny --layers 2 --seed 1 >/dev/null 2>&1 ||
    bail_out "synth --preset tiny failed"
"$bin" synth -q -o "$tmp/ref" --preset tiny --layers 2 --seed 1 >/dev/null 2>&1 ||
    bail_out "synth --preset tiny failed"
sums "$tmp/x" >"$tmp/x.sum"

# 1. --force with a missing tokenizer directory: refused before anything is touched.
err=$("$bin" synth -q -o "$tmp/x" --preset small --force --tokenizer-dir "$tmp/nonexistent" \
      2>&1 >/dev/null)
rc=$?
[ "$rc" -eq 1 ]
ok $? "synth --force with a missing --tokenizer-dir exits 1 (got $rc)"
printf '%s\n' "$err" | grep -q "cannot open tokenizer file '$tmp/nonexistent/tokenizer.json'"
ok $? "... naming the tokenizer file: $err"
sums "$tmp/x" | cmp -s - "$tmp/x.sum"
ok $? "... and the old checkpoint is left byte for byte (config, shards, index, tokenizer)"

# A --force run that fails halfway (a 1 MB file size limit stands in for a full disk).
(ulimit -f 1024 && trap '' XFSZ && "$bin" synth -q -o "$tmp/x" --preset tiny --seed 9 --force) \
    >/dev/null 2>&1
rc=$?
[ "$rc" -ne 0 ] && sums "$tmp/x" | cmp -s - "$tmp/x.sum"
ok $? "synth --force failing halfway (EFBIG) keeps the old checkpoint intact (rc $rc)"
# ... and into an empty directory the user made: the directory stays, empty
mkdir "$tmp/empty"
(ulimit -f 1024 && trap '' XFSZ && "$bin" synth -q -o "$tmp/empty" --preset tiny --seed 9) \
    >/dev/null 2>&1
rc=$?
[ "$rc" -ne 0 ] && [ -d "$tmp/empty" ] && [ -z "$(ls -A "$tmp/empty")" ]
ok $? "synth failing halfway into an existing empty directory leaves it, empty (rc $rc)"

# A successful --force with another shard count: exactly the new files, nothing of the old.
"$bin" synth -q -o "$tmp/x" --preset tiny --seed 3 --force >/dev/null 2>&1 &&
    "$bin" synth -q -o "$tmp/y" --preset tiny --seed 3 >/dev/null 2>&1
ok $? "synth --force over an existing checkpoint succeeds"
sums "$tmp/y" >"$tmp/y.sum"
sums "$tmp/x" | cmp -s - "$tmp/y.sum"
ok $? "... and leaves exactly the new checkpoint (no old file, no staging directory)"

# 2. A directory another process holds locked.
mkdir "$tmp/held"
flock "$tmp/held" sleep 5 &
holder=$!
sleep 0.5
err=$("$bin" synth -q -o "$tmp/held" --preset tiny --layers 2 2>&1 >/dev/null)
rc=$?
[ "$rc" -eq 1 ] && printf '%s\n' "$err" | grep -q "is in use by another moetier synth"
ok $? "synth into a directory another synth holds fails clearly (rc $rc): $err"
[ -z "$(ls -A "$tmp/held")" ]
ok $? "... without writing into it"
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null

# Two runs racing into one new directory, a few times: one winner, one clear failure, and the
# winner's checkpoint intact.
sums "$tmp/ref" >"$tmp/ref.sum"
races_ok=0
msgs_ok=0
trials=4
i=0
while [ $i -lt $trials ]; do
    d="$tmp/race$i"
    "$bin" synth -q -o "$d" --preset tiny --layers 2 --seed 1 >/dev/null 2>"$tmp/a.err" &
    a=$!
    "$bin" synth -q -o "$d" --preset tiny --layers 2 --seed 1 >/dev/null 2>"$tmp/b.err" &
    b=$!
    wait $a
    ra=$?
    wait $b
    rb=$?
    if [ $((ra + rb)) -eq 1 ] && sums "$d" | cmp -s - "$tmp/ref.sum"; then
        races_ok=$((races_ok + 1))
    else
        echo "# trial $i: exit codes $ra and $rb"
    fi
    if grep -q "in use by another moetier synth\|is not empty" "$tmp/a.err" "$tmp/b.err"; then
        msgs_ok=$((msgs_ok + 1))
    fi
    i=$((i + 1))
done
[ $races_ok -eq $trials ]
ok $? "two racing synth runs: one wins, one fails, the winner's checkpoint intact ($races_ok/$trials)"
[ $msgs_ok -eq $trials ]
ok $? "... and the loser says why (in use, or not empty) ($msgs_ok/$trials)"

# 6. stdout write errors: the summary line to a full device is an error, not exit 0.
if [ -w /dev/full ]; then
    "$bin" synth -q -o "$tmp/full" --preset tiny --layers 2 >/dev/full 2>"$tmp/full.err"
    rc=$?
    [ "$rc" -eq 1 ] && grep -q 'cannot write to stdout' "$tmp/full.err"
    ok $? "synth >/dev/full exits 1 with a message (rc $rc)"
    "$bin" synth -n -o "$tmp/full2" --preset tiny >/dev/full 2>/dev/null
    rc=$?
    [ "$rc" -eq 1 ]
    ok $? "synth --dry-run >/dev/full exits 1 (rc $rc)"
else
    bail_out "/dev/full is not writable"
fi
# signal SIG DIR ARGS...: start synth into DIR, send it SIG once its staging directory exists,
# and set rc to its exit status (--preset small writes ~300 MB after that: seconds, not a race)
signal() {
    sig=$1
    dir=$2
    shift 2
    "$bin" synth -q -o "$dir" "$@" >/dev/null 2>"$tmp/sig.err" &
    pid=$!
    i=0
    while [ $i -lt 600 ] && ! ls -d "$dir"/.synth-* >/dev/null 2>&1; do
        sleep 0.05
        i=$((i + 1))
    done
    kill -s "$sig" "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
}

# 7. SIGINT into a new directory: nothing is left, not even the directory.
signal INT "$tmp/int" --preset small
[ "$rc" -eq 130 ]
ok $? "synth interrupted by SIGINT exits 130 (rc $rc)"
grep -q "interrupted: its partial output is removed" "$tmp/sig.err"
ok $? "... saying so: $(head -n 1 "$tmp/sig.err")"
! ls -d "$tmp/int"/.synth-* >/dev/null 2>&1 && [ ! -e "$tmp/int" ]
ok $? "... and removes its staging directory and the directory it created"

# ... and ends by that signal, not by an exit status of 130: a shell loop running synth stops at
# the Ctrl-C only then (only waitpid tells the two apart, so perl is the parent here)
if command -v perl >/dev/null 2>&1; then
    how=$(perl -e '
        my ($dir, @cmd) = @ARGV;
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) { open(STDOUT, ">", "/dev/null"); exec(@cmd) or exit 127 }
        for (1 .. 600) { last if glob("$dir/.synth-*"); select(undef, undef, undef, 0.05) }
        kill("INT", $pid);
        waitpid($pid, 0);
        print(($? & 127) ? "signal " . ($? & 127) : "exit " . ($? >> 8));
    ' "$tmp/int2" "$bin" synth -q -o "$tmp/int2" --preset small 2>/dev/null)
    [ "$how" = "signal 2" ]
    ok $? "... killed by SIGINT itself, as waitpid sees it ($how)"
else
    n=$((n + 1))
    echo "ok $n # SKIP perl is missing: waitpid's view of the SIGINT is not checked"
fi

# SIGTERM during --force over a checkpoint: the old one stays byte for byte, no staging directory.
sums "$tmp/x" >"$tmp/x.sum"
signal TERM "$tmp/x" --preset small --force
[ "$rc" -eq 143 ]
ok $? "synth --force terminated by SIGTERM exits 143 (rc $rc)"
sums "$tmp/x" | cmp -s - "$tmp/x.sum"
ok $? "... leaving the old checkpoint byte for byte, no staging directory in it"

# A staging directory a killed synth left (SIGKILL cannot be caught): refused without --force...
mkdir "$tmp/stale" "$tmp/stale/.synth-Ab3xY9" "$tmp/stale/.synth-mine" \
      "$tmp/stale/.synth-Ab3xY9Z" "$tmp/stale/.synth-Ab3_Y9" &&
    echo partial >"$tmp/stale/.synth-Ab3xY9/model-00001-of-000002.safetensors.partial" &&
    ln -s "$tmp/ref" "$tmp/stale/.synth-LnK456" || bail_out "cannot make a stale staging directory"
"$bin" synth -q -o "$tmp/stale" --preset tiny --layers 2 --seed 1 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "is not empty" "$tmp/err" && [ -d "$tmp/stale/.synth-Ab3xY9" ]
ok $? "synth into a directory holding a stale staging directory, without --force: exit 1 (rc $rc), \
the directory untouched"
# ... and removed with --force: only a directory named as synth names them, nothing else
"$bin" synth -q -o "$tmp/stale" --preset tiny --layers 2 --seed 1 --force >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ]
ok $? "synth --force into it succeeds (rc $rc) $(head -n 1 "$tmp/err")"
[ ! -e "$tmp/stale/.synth-Ab3xY9" ]
ok $? "... removing the stale staging directory"
[ -d "$tmp/stale/.synth-mine" ] && [ -L "$tmp/stale/.synth-LnK456" ] &&
    [ -d "$tmp/stale/.synth-Ab3xY9Z" ] && [ -d "$tmp/stale/.synth-Ab3_Y9" ] &&
    [ "$(ls "$tmp/ref" | wc -l)" -eq 6 ]
ok $? "... but not a directory of another name (7 letters, or an underscore), nor a link (nor \
what it points to)"
rm -r "$tmp/stale/.synth-mine" "$tmp/stale/.synth-LnK456" "$tmp/stale/.synth-Ab3xY9Z" \
    "$tmp/stale/.synth-Ab3_Y9"
sums "$tmp/stale" | cmp -s - "$tmp/ref.sum"
ok $? "... and writes the checkpoint it was asked for"
# 9. The flags (usage text): each does what it says, and a bad value is a usage error (exit 2).
# usage ARGS...: ok when synth exits 2 and creates nothing
usage() {
    "$bin" synth -q "$@" >/dev/null 2>&1
    rc=$?
    [ "$rc" -eq 2 ] && [ ! -e "$tmp/u" ]
    ok $? "synth $* is a usage error (rc $rc)"
}
usage -o "$tmp/u" --preset tiny extra
usage -o "" --preset tiny
usage -o "$tmp/u" --preset tiny --layers 0
usage -o "$tmp/u" --preset tiny --layers 2 --dense-layers 3
usage -o "$tmp/u" --preset tiny --dtype int8
usage -o "$tmp/u" --preset tiny --shard-size 4095
# --layers out of range from either side: one message naming the range (1..255), not the
# preset's check of a config with no layers
for lay in 0 256; do
    "$bin" synth -q -o "$tmp/u" --preset tiny --layers "$lay" >/dev/null 2>"$tmp/l$lay.err"
done
grep -q "bad --layers '0' (must be in 1..255)" "$tmp/l0.err" &&
    grep -q "bad --layers '256' (must be in 1..255)" "$tmp/l256.err"
ok $? "--layers 0 and 256 name the range 1..255: $(cat "$tmp/l0.err")"
# --dry-run: the same numbers as the real run, and nothing written
dry=$("$bin" synth -n -o "$tmp/dry" --preset tiny --seed 3 2>/dev/null)
real=$("$bin" synth -q -o "$tmp/real" --preset tiny --seed 3 2>/dev/null)
total=$(sed -n 's/.*"total_size": \([0-9]*\).*/\1/p' "$tmp/real/model.safetensors.index.json")
# "N tensors, B bytes" and the shard count, from "synth: [would write|wrote] N tensors, B bytes
# (G GiB) in S shards to 'DIR'"
counts() {
    printf '%s\n' "$1" | sed -n \
        's/^synth: [a-z ]* \([0-9]* tensors, [0-9]* bytes\) (.*) in \([0-9]*\) shard.*/\1 \2/p'
}
[ -n "$(counts "$dry")" ] && [ "$(counts "$dry")" = "$(counts "$real")" ] &&
    printf '%s\n' "$dry" | grep -q ", $total bytes (.*) in 2 shards to '$tmp/dry'" &&
    [ ! -e "$tmp/dry" ]
ok $? "synth --dry-run: $dry (the index says $total), nothing written"
# the sizes in GiB are bytes over 2^30 (v32-shape's ~50 GB tell GiB from GB), and the write rate
# is at least the tensor bytes over the seconds shown (rounded to 0.1 s) in MB/s
v32=$("$bin" synth -n -o "$tmp/u" --preset v32-shape 2>/dev/null)
printf '%s\n' "$v32" | awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "bytes") b = $i }
    { g = $0; sub(/.*bytes \(/, "", g); sub(/ GiB.*/, "", g) }
    END { exit !(b > 4e10 && g == sprintf("%.2f", b / 1073741824)) }'
ok $? "synth --dry-run --preset v32-shape gives GiB as bytes / 2^30: $v32"
printf '%s\n' "$real" | awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "bytes") b = $i }
    { s = $0; sub(/.* in /, "", s); r = s; sub(/ s .*/, "", s); sub(/.*\(/, "", r)
      sub(/ MB\/s.*/, "", r) }
    END { exit !(b > 0 && r + 0.5 >= b / (s + 0.05) / 1e6) }'
ok $? "synth prints its write rate in MB/s: $real"
# -q: nothing on stderr; without it, the plan and the progress
"$bin" synth -o "$tmp/loud" --preset tiny --layers 1 >/dev/null 2>"$tmp/loud.err" &&
    grep -q "synth: preset tiny" "$tmp/loud.err" &&
    "$bin" synth -q -o "$tmp/quiet" --preset tiny --layers 1 >/dev/null 2>"$tmp/quiet.err" &&
    [ ! -s "$tmp/quiet.err" ]
ok $? "synth without -q reports its plan on stderr, with -q says nothing"
# --dtype: fp8 (the default) has a quantization_config and block scales, bf16 neither
"$bin" synth -q -o "$tmp/bf16" --preset tiny --layers 1 --dtype bf16 >/dev/null 2>&1 &&
    "$bin" synth -q -o "$tmp/fp8" --preset tiny --layers 1 --dtype fp8 >/dev/null 2>&1 &&
    ! grep -q quantization_config "$tmp/bf16/config.json" &&
    ! grep -q weight_scale_inv "$tmp/bf16/model.safetensors.index.json" &&
    grep -q quantization_config "$tmp/fp8/config.json" &&
    grep -q weight_scale_inv "$tmp/fp8/model.safetensors.index.json"
ok $? "synth --dtype bf16 writes no scales, --dtype fp8 does"
# --mtp and --no-mtp override the preset (the MTP layer follows the main ones: layer 1 of 1)
"$bin" synth -q -o "$tmp/nomtp" --preset tiny --layers 1 --no-mtp >/dev/null 2>&1 &&
    ! grep -q '"model.layers.1.eh_proj.weight"' "$tmp/nomtp/model.safetensors.index.json" &&
    grep -q '"model.layers.1.eh_proj.weight"' "$tmp/fp8/model.safetensors.index.json"
ok $? "synth --preset tiny --no-mtp leaves the MTP layer out"
"$bin" synth -q -o "$tmp/mtp" --preset tiny-mla --layers 1 --mtp >/dev/null 2>&1 &&
    grep -q '"model.layers.1.eh_proj.weight"' "$tmp/mtp/model.safetensors.index.json"
ok $? "synth --preset tiny-mla --mtp writes the MTP layer"
# tiny-mla keeps tiny's vocabulary, so it carries tiny's tokenizer: every id below 1024
max_id=$(grep -o '"id": [0-9]*' "$tmp/mtp/tokenizer.json" | cut -d' ' -f2 | sort -n | tail -n 1)
grep -q '"vocab_size": 1024' "$tmp/mtp/config.json" && [ -n "$max_id" ] && [ "$max_id" -lt 1024 ]
ok $? "synth --preset tiny-mla writes tiny's tokenizer (ids up to $max_id < vocab_size 1024)"
# the extremes of --layers, --dense-layers and --shard-size are accepted
"$bin" synth -n -o "$tmp/u" --preset tiny --layers 255 --dense-layers 0 >/dev/null 2>&1 &&
    out=$("$bin" synth -n -o "$tmp/u" --preset tiny --layers 1 --shard-size 4K 2>/dev/null) &&
    printf '%s\n' "$out" | grep -q "in [0-9]* shards" && [ ! -e "$tmp/u" ]
ok $? "synth --layers 255 --dense-layers 0, and --shard-size 4K, are accepted ($out)"
# --force over another layout's checkpoint: its shards and index go (none may outlive the new
# checkpoint, which a loader would mix in), files of other names stay
mkdir "$tmp/old" && for f in model.safetensors model-00007-of-000009.safetensors \
    model.safetensors.index.json model-notes.safetensors notes.txt; do
    echo old >"$tmp/old/$f"
done
"$bin" synth -q -o "$tmp/old" --preset tiny --layers 1 --force >/dev/null 2>&1 &&
    [ ! -e "$tmp/old/model.safetensors" ] &&
    [ ! -e "$tmp/old/model-00007-of-000009.safetensors" ] &&
    [ -f "$tmp/old/model-00001-of-000002.safetensors" ] &&
    ! grep -q '^old$' "$tmp/old/model.safetensors.index.json" &&
    [ "$(cat "$tmp/old/model-notes.safetensors" "$tmp/old/notes.txt")" = "old
old" ]
ok $? "synth --force removes an earlier model.safetensors and shards, keeps other files"
tap_exit
