#!/bin/sh
# SPDX-License-Identifier: MIT
# test_outputs.sh - what moetier writes is checked before any work, on a tiny synth model: no
# output over a file of the model (run --dump-logits/--trace/--json, pack -o, plan -o and the --hw
# that plan --learn rewrites; nor over run's --store files), however reached (links either way, a
# Hugging Face cache's blobs), two outputs never on one file however spelled, a directory or an
# empty name refused, bench's --json checked before it measures; a standard stream started closed is
# /dev/null (chat must not read a weight file as its input); and a few values once taken silently (a
# long bench --only list, --ctx past the model's positions, --cpu-reserve 0, plan --ctx 0; synth's
# usage errors exit 2). pack -o names only a regular file (or a link to one, written through): a
# FIFO, a directory or an empty name is refused before any expert is copied and left as it was, and
# so is a symbolic link at its FILE.partial (a stale regular file there is removed, not written
# into). Every command runs under `timeout`.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
command -v timeout >/dev/null 2>&1 || bail_out "timeout(1) not found (coreutils)"
make_tmp outputs
m="$tmp/m"
"$bin" synth --preset tiny -q -o "$m" >/dev/null 2>"$tmp/err" ||
    bail_out "moetier synth failed: $(cat "$tmp/err")"
cp -r "$m" "$tmp/orig"
shard=$(cd "$m" && ls | grep 'safetensors$' | head -n 1)

# expect RC DESCRIPTION PATTERN COMMAND...: that exit code and a message matching PATTERN
expect() {
    want=$1
    desc=$2
    pat=$3
    shift 3
    timeout 30 "$@" </dev/null >/dev/null 2>"$tmp/err"
    rc=$?
    [ "$rc" -eq "$want" ] && grep -q -- "$pat" "$tmp/err"
    ok $? "$desc: exit $rc: $(head -n 1 "$tmp/err" | head -c 300)"
}

echo "1..49"
expect 2 "run --dump-logits over the model's config.json" "is a file of the model" \
    "$bin" run -m "$m" --device cpu --prompt-ids 1,2 -n 1 --dump-logits "$m/config.json"
expect 2 "run --json over a weight shard" "is a file of the model" \
    "$bin" run -m "$m" --device cpu --prompt-ids 1,2 -n 1 --json "$m/$shard"
expect 2 "run --trace over the model's tokenizer_config.json" "is a file of the model" \
    "$bin" run -m "$m" --device cpu --prompt-ids 1,2 -n 1 --trace "$m/tokenizer_config.json"
expect 2 "run --json and --trace on one file, spelled two ways" "name the same file" \
    "$bin" run -m "$m" --device cpu --prompt-ids 1,2 -n 1 --json "$tmp/x.json" \
    --trace "$tmp/./x.json"
expect 1 "run --json a directory, before generating" "is a directory" \
    "$bin" run -m "$m" --device cpu --prompt-ids 1,2 -n 1 --json "$tmp"
expect 1 "run --json ''" "needs a file name" \
    "$bin" run -m "$m" --device cpu --prompt-ids 1,2 -n 1 --json ""
expect 2 "pack -o over a shard of its own checkpoint" "is a file of the model" \
    "$bin" pack -q -m "$m" -o "$m/$shard"
# the same file however reached: a link to a shard, a hard link, and a Hugging Face cache, where
# snapshots/REV/* are links to ../../blobs/* (-o blobs/X is a shard though no name says so)
ln -s "$m/$shard" "$tmp/shard.link"
expect 2 "pack -o a symbolic link to a shard of its own checkpoint" "is a file of the model" \
    "$bin" pack -q -m "$m" -o "$tmp/shard.link"
ln "$m/config.json" "$tmp/config.hard" || bail_out "ln failed"
expect 2 "run --trace over a hard link to the model's config.json" "is a file of the model" \
    "$bin" run -m "$m" --device cpu --prompt-ids 1,2 -n 1 --trace "$tmp/config.hard"
mkdir -p "$tmp/hf/blobs" "$tmp/hf/snap"
for f in "$m"/*; do
    cp "$f" "$tmp/hf/blobs/blob-$(basename "$f")"
    ln -s "../blobs/blob-$(basename "$f")" "$tmp/hf/snap/$(basename "$f")"
done
expect 2 "pack -o a blob of a Hugging Face cache, -m its snapshot of links" \
    "is a file of the model" "$bin" pack -q -m "$tmp/hf/snap" -o "$tmp/hf/blobs/blob-$shard"
cmp -s "$tmp/hf/blobs/blob-$shard" "$m/$shard" && [ ! -e "$tmp/hf/blobs/blob-$shard.partial" ]
ok $? "... the blob is left as it was, and no .partial is made"
timeout 60 "$bin" pack -q -m "$tmp/hf/snap" -o "$tmp/hf/snap/experts" </dev/null >/dev/null \
    2>"$tmp/err" &&
    timeout 60 "$bin" pack -q -m "$tmp/hf/snap" -o "$tmp/hf/snap/experts" </dev/null >/dev/null \
        2>"$tmp/err"
ok $? "pack -o into the model's directory, twice (no file of the model): $(head -c 200 "$tmp/err")"
expect 2 "pack -o twice, spelled two ways" "given twice" \
    "$bin" pack -q -m "$m" -o "$tmp/s0" -o "$tmp/./s0"
# each store file is written as <name>.partial first: one file named so would be replaced
expect 1 "pack -o X.partial -o X" "written under" \
    "$bin" pack -q -m "$m" -o "$tmp/p.partial" -o "$tmp/p"
[ ! -e "$tmp/p" ] && [ ! -e "$tmp/p.partial" ] && [ ! -e "$tmp/p.partial.partial" ]
ok $? "pack -o X.partial -o X leaves no file"
# rename(2) replaces whatever holds the name: a FIFO or a device (-o /dev/null as root) must be
# refused up front, never swapped for a store file
mkfifo "$tmp/fifo" || bail_out "mkfifo failed"
expect 1 "pack -o a FIFO" "is a FIFO (named pipe), not a regular file" \
    "$bin" pack -q -m "$m" -o "$tmp/fifo"
[ -p "$tmp/fifo" ] && [ ! -e "$tmp/fifo.partial" ]
ok $? "... the FIFO is left a FIFO, and no .partial is made"
ln -s "$tmp/fifo" "$tmp/fifo.link"
expect 1 "pack -o a symbolic link to a FIFO" "symbolic link to a FIFO" \
    "$bin" pack -q -m "$m" -o "$tmp/fifo.link"
[ -L "$tmp/fifo.link" ] && [ -p "$tmp/fifo" ] && [ ! -e "$tmp/fifo.link.partial" ]
ok $? "... the link and the FIFO are left as they were"
# FILE.partial is pack's own name while it writes: a stale regular file there (a killed pack's,
# here a hard link to another file) is removed, never written into; a symbolic link is refused
echo precious >"$tmp/precious"
ln -s precious "$tmp/pl.partial"
expect 1 "pack -o X with X.partial a symbolic link" "is a symbolic link: not replacing it" \
    "$bin" pack -q -m "$m" -o "$tmp/pl"
[ -L "$tmp/pl.partial" ] && [ "$(cat "$tmp/precious")" = precious ] && [ ! -e "$tmp/pl" ]
ok $? "... the link and the file it names are left as they were"
ln "$tmp/precious" "$tmp/ph.partial"
timeout 60 "$bin" pack -q -m "$m" -o "$tmp/ph" </dev/null >/dev/null 2>"$tmp/err" &&
    [ -s "$tmp/ph" ] && [ ! -e "$tmp/ph.partial" ] && [ "$(cat "$tmp/precious")" = precious ]
ok $? "pack -o X over a stale X.partial (a hard link): packs, the other name left as it was \
$(head -c 200 "$tmp/err")"
# no room for a store of a few MiB (a file size limit, as a full disk): said in MiB, not as
# "0.00 GiB", and the .partial removed (SIGXFSZ ignored: the write fails with EFBIG instead)
expect 1 "pack beyond the file size limit says the size in MiB" "cannot reserve [0-9.]* MiB (" \
    sh -c 'trap "" XFSZ; ulimit -f 64 && exec "$1" pack -q -m "$2" -o "$3"' sh "$bin" "$m" \
    "$tmp/big"
[ ! -e "$tmp/big" ] && [ ! -e "$tmp/big.partial" ]
ok $? "... leaving no store file and no .partial"
mkdir "$tmp/dir"
expect 1 "pack -o a directory, before copying" "is a directory" \
    "$bin" pack -q -m "$m" -o "$tmp/dir"
[ -d "$tmp/dir" ] && [ -z "$(ls -A "$tmp/dir")" ] && [ ! -e "$tmp/dir.partial" ]
ok $? "... the directory is left empty, and no .partial is made"
mkdir "$tmp/cwd"
expect 2 "pack -o '' is a usage error" "needs a file name" \
    sh -c 'cd "$1" && exec "$2" pack -q -m "$3" -o ""' sh "$tmp/cwd" "$bin" "$m"
[ -z "$(ls -A "$tmp/cwd")" ]
ok $? "... writing nothing (no '.partial' in the working directory)"
: >"$tmp/store"
ln -s store "$tmp/store.link"
timeout 60 "$bin" pack -q -m "$m" -o "$tmp/store.link" </dev/null >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && [ -L "$tmp/store.link" ] && [ -s "$tmp/store" ] && [ ! -e "$tmp/store.partial" ]
ok $? "pack -o a link to a file writes through it: the link stays, the file is the store (rc $rc)"
# plan -o (and --hw, which --learn rewrites) against every file of the model, not only its
# config.json: a shard or the index overwritten by a plan loses the model
expect 2 "plan -o over a weight shard" "is a file of the model" \
    "$bin" plan -m "$m" -o "$m/$shard"
expect 2 "plan -o over the model's index" "is a file of the model" \
    "$bin" plan -m "$m" -o "$m/model.safetensors.index.json"
: >"$tmp/learn.jsonl"
expect 2 "plan --learn with --hw the model's tokenizer.json" "is a file of the model" \
    "$bin" plan -m "$m" --hw "$m/tokenizer.json" --learn "$tmp/learn.jsonl"
# a --store file is an input of run: no output of it may be written over one
timeout 60 "$bin" pack -q -m "$m" -o "$tmp/st0" -o "$tmp/st1" </dev/null >/dev/null 2>"$tmp/err" ||
    bail_out "moetier pack failed: $(cat "$tmp/err")"
cp "$tmp/st1" "$tmp/st1.orig"
expect 2 "run --json over its second --store file" "is the --store input" \
    "$bin" run -m "$m" --device cpu --prompt-ids 1,2 -n 1 --store "$tmp/st0" --store "$tmp/st1" \
    --json "$tmp/st1"
expect 2 "run --dump-logits over its --store file, spelled another way" "is the --store input" \
    "$bin" run -m "$m" --device cpu --prompt-ids 1,2 -n 1 --store "$tmp/st0" --store "$tmp/st1" \
    --dump-logits "$tmp/./st0"
cmp -s "$tmp/st1" "$tmp/st1.orig"
ok $? "... the store files are left as they were"
diff -r "$m" "$tmp/orig" >/dev/null
ok $? "the model's files are unchanged"
timeout 20 "$bin" chat -m "$m" --device cpu <&- >"$tmp/chat" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && ! grep -q 'assistant\|>' "$tmp/chat"
ok $? "chat with stdin closed: no input, exit 0 (rc $rc)"
long=$(printf 'dram,%.0s' $(seq 1 24))cpu,cpu,zzz
expect 2 "bench --only longer than any list of its parts" "too long" "$bin" bench --only "$long"
expect 1 "bench --json into a missing directory, before measuring" "No such file" \
    "$bin" bench --only dram --quick --dram-size 8M --json "$tmp/nodir/p.json"
expect 0 "run --ctx past the model's positions: held at them, with a warning" "positions" \
    "$bin" run -m "$m" --device cpu --prompt-ids 1,2 -n 1 --ctx 99999999
timeout 30 "$bin" run -m "$m" --device cpu --prompt-ids 1,2 -n 1 --cpu-mem 100M --cpu-reserve 0 \
    </dev/null >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && ! grep -q 'cpu-reserve' "$tmp/err"
ok $? "--cpu-reserve 0 is 0 (it was 4 GiB): runs within --cpu-mem 100M (rc $rc)"
expect 2 "plan --ctx 0" "bad --ctx" "$bin" plan -m "$m" --ctx 0
# a flag's value is quoted in its message: a terminal's escape sequence in it is written as text
esc=$(printf 'x\033[2J\033]0;owned\007')
timeout 30 "$bin" plan -m "$m" --ctx "$esc" </dev/null >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && grep -q 'x\\x1b\[2J\\x1b\]0;owned\\x07' "$tmp/err" && ! grep -q "$(printf '\033')" "$tmp/err"
ok $? "a bad flag's value with escape sequences: exit $rc, quoted as \\xNN: $(head -c 200 "$tmp/err")"
expect 2 "inspect --gpu-mem x: one message" "bad --gpu-mem 'x'" "$bin" inspect -m "$m" --gpu-mem x
expect 2 "--plan with --no-plan" "contradict" \
    "$bin" run -m "$m" --device cpu --prompt-ids 1,2 -n 1 --plan "$tmp/p.json" --no-plan
expect 2 "synth --preset huge is a usage error" "unknown synth preset" \
    "$bin" synth -n --preset huge -o "$tmp/s"
# both ends of --layers name the same range: the format's 256 layers, one of them MTP
expect 2 "synth --layers past the format's 255 is a usage error" "must be in 1\\.\\.255" \
    "$bin" synth -n --preset tiny --layers 100000 -o "$tmp/s"
expect 2 "synth --layers 0 is a usage error naming the same range" "must be in 1\\.\\.255" \
    "$bin" synth -n --preset tiny --layers 0 -o "$tmp/s"
# a config.json whose num_hidden_layers counts the MTP layer: refused, not run as a decoder layer
cp -r "$m" "$tmp/mtp"
nl=$(sed -n 's/.*"num_hidden_layers": *\([0-9]*\).*/\1/p' "$m/config.json")
sed -E "s/\"num_hidden_layers\": *[0-9]+/\"num_hidden_layers\": $((nl + 1))/" "$m/config.json" \
    >"$tmp/mtp/config.json"
expect 1 "num_hidden_layers counting the MTP layer" "count the MTP layers" \
    "$bin" run -m "$tmp/mtp" --device cpu --prompt-ids 1,2 -n 1
tap_exit
