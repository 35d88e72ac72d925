#!/bin/sh
# SPDX-License-Identifier: MIT
# test_stream_run.sh - routed experts streamed at run time: `moetier pack` writes a two-file store
# of a `synth --preset small` checkpoint; `run --store` (every expert streamed from it, with and
# without --verify) and `run --plan` with every expert on NVMe (streamed from the shards) give the
# tokens of a run from DRAM; a flipped bit in the store fails the run under --verify naming the
# expert, never yielding tokens; a store of another model and bad pack flags are refused; a store
# of 17 files (pack writes up to 1,024) is read by as many --store; SIGINT or SIGTERM during pack
# removes its .partial files (full-size, preallocated) and exits 128 + the signal.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
make_tmp stream-run
m="$tmp/small"

echo "1..31"
"$bin" synth --preset small --seed 3 -o "$m" >/dev/null 2>"$tmp/err" ||
    bail_out "synth --preset small failed: $(cat "$tmp/err")"
ids="5,17,900,33,4242,7,12,99,1000,65000,3,8,21,400,77,2,19,4096,123,88,6,31,250,11,9"
run() { "$bin" run -m "$m" --prompt-ids "$ids" -n 6 --print-ids "$@" 2>"$tmp/err"; }

plain=$(run)
"$bin" pack -q -m "$m" -o "$tmp/s0" -o "$tmp/s1" 2>"$tmp/perr" && [ ! -s "$tmp/perr" ]
ok $? "pack -q into two store files exits 0, nothing on stderr $(head -1 "$tmp/perr")"
got=$(run --store "$tmp/s0" --store "$tmp/s1")
[ $? -eq 0 ] && [ -n "$plain" ] && [ "$got" = "$plain" ] &&
    grep -q "streamed experts:" "$tmp/err" &&
    grep -q "experts: 0 on GPU, 0 in DRAM (CPU), 192 on NVMe (--store)" "$tmp/err"
ok $? "run --store: every expert streamed from the store, same tokens ('$got'), and said so"
got=$(run --store "$tmp/s0" --store "$tmp/s1" --verify --cache 1M)
[ $? -eq 0 ] && [ "$got" = "$plain" ]
ok $? "... with --verify (CRC of every extent) and a 1 MiB cache"
# --store places every expert itself: a --cpu-reserve beside it is said to shape nothing
got=$(run --store "$tmp/s0" --store "$tmp/s1" --cpu-reserve 1G)
[ $? -eq 0 ] && [ "$got" = "$plain" ] && grep -q "warning: --cpu-reserve is not used with --store: \
only the automatic placement plans with it" "$tmp/err"
ok $? "... beside --cpu-reserve, which it says it does not use: $(grep warning "$tmp/err")"
"$bin" plan -m "$m" --hw "$MT_SRCDIR/bench/profiles/rtx3090-ddr4.json" --gpu-mem 2G \
    --cpu-mem 4.1G --gpu-reserve 1.6G --ctx 1024 -o "$tmp/plan.json" >/dev/null 2>&1 ||
    bail_out "plan failed"
sed -E "s/\"(tiers|prefill)\": *\"[A-Z]+\"/\"\1\": \"$(printf 'N%.0s' $(seq 64))\"/g" \
    "$tmp/plan.json" >"$tmp/nvme.json"
got=$(run --plan "$tmp/nvme.json" --verify)
[ $? -eq 0 ] && [ "$got" = "$plain" ] && grep -q "192 on NVMe" "$tmp/err"
ok $? "run --plan with every expert on NVMe streams them from the shards (--verify): same tokens"
got=$(MT_MEM_AVAILABLE=$((1 << 40)) run --store "$tmp/s0" --store "$tmp/s1" --cache 100G -v)
[ $? -eq 0 ] && [ "$got" = "$plain" ] && grep -q "cache 192 slots" "$tmp/err"
ok $? "--cache beyond the model's experts maps one slot per routed expert (3 x 64, not the dense \
layer's keys): $(grep -o 'cache [0-9]* slots\?' "$tmp/err")"
# a plan that streams 8 experts a layer (24; the rest in DRAM) maps no more than 24 slots,
# however large --cache is, so only those count against the free memory: 1 GiB holds them
# beside the DRAM experts and always-on weights (under 0.4 GiB), not the 100 GiB asked
sed -E "s/\"(tiers|prefill)\": *\"[A-Z]+\"/\"\1\": \"NNNNNNNN$(printf 'C%.0s' $(seq 56))\"/g" \
    "$tmp/plan.json" | sed -E 's/"dram_expert_bytes": *[0-9]+/"dram_expert_bytes": 100000000/' \
    >"$tmp/n8.json"
got=$(MT_MEM_AVAILABLE=$((1 << 30)) run --plan "$tmp/n8.json" --cache 100G -v)
[ $? -eq 0 ] && [ "$got" = "$plain" ] && grep -q "cache 24 slots" "$tmp/err"
ok $? "a plan streaming 24 experts maps 24 slots under --cache 100G: \
$(grep -o 'cache [0-9]* slots\?' "$tmp/err")"
got=$(MT_MEM_AVAILABLE=100000000 run --store "$tmp/s0" --store "$tmp/s1" --cache 100G)
[ $? -eq 1 ] && [ -z "$got" ] && grep -q "cache 100.00 GiB does not fit.*95.4 MiB" "$tmp/err"
ok $? "a --cache past the free memory is refused before mapping it: $(tail -1 "$tmp/err")"
got=$(run --verify --cache 1M)
[ $? -eq 0 ] && [ "$got" = "$plain" ] && grep -q "verify applies to streamed experts" "$tmp/err"
ok $? "--verify without anything streamed says it checks nothing: $(grep verify "$tmp/err")"
got=$(run --store "$tmp/s0" --store "$tmp/s1" --cache 1K)
[ $? -eq 1 ] && [ -z "$got" ] &&
    grep -q -- "--cache 1024 (bytes, 1.0 KiB) cannot hold one streamed expert.*--cache at least" \
        "$tmp/err"
ok $? "--cache below one expert: the message names --cache and what to give: $(tail -1 "$tmp/err")"

# one flipped bit in the middle of the first store file
size=$(wc -c <"$tmp/s0")
cp "$tmp/s0" "$tmp/bad0"
printf '\377' | dd of="$tmp/bad0" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
got=$(run --store "$tmp/bad0" --store "$tmp/s1")
rc=$?
[ $rc -eq 1 ] && [ -z "$got" ] && grep -qi "crc" "$tmp/err" && grep -q "expert" "$tmp/err"
ok $? "a flipped bit (store CRCs are always checked): exit 1 (rc $rc), no tokens, the expert \
named: $(grep -i crc "$tmp/err" | head -1)"

"$bin" synth --preset tiny --seed 3 -o "$tmp/tiny" >/dev/null 2>&1 &&
    "$bin" pack -q -m "$tmp/tiny" -o "$tmp/t0" 2>/dev/null ||
    bail_out "synth and pack of another model failed"
got=$(run --store "$tmp/t0")
[ $? -eq 1 ] && [ -z "$got" ] && grep -q "another model" "$tmp/err"
ok $? "a store of another model is refused: $(head -1 "$tmp/err")"
# --store beside a plan that streams nothing (every expert in DRAM): the store is still checked
# (another model's refused) and gets one slot, not the source's default of 4
sed -E "s/\"(tiers|prefill)\": *\"[A-Z]+\"/\"\1\": \"$(printf 'C%.0s' $(seq 64))\"/g" \
    "$tmp/plan.json" | sed -E 's/"dram_expert_bytes": *[0-9]+/"dram_expert_bytes": 100000000/' \
    >"$tmp/dram.json"
got=$(run --plan "$tmp/dram.json" --store "$tmp/t0")
[ $? -eq 1 ] && [ -z "$got" ] && grep -q "another model" "$tmp/err"
ok $? "... beside a plan streaming no expert too: $(head -1 "$tmp/err")"
got=$(run --plan "$tmp/dram.json" --store "$tmp/s0" --store "$tmp/s1" -v)
[ $? -eq 0 ] && [ "$got" = "$plain" ] && grep -q "192 in DRAM (CPU), 0 on NVMe" "$tmp/err" &&
    grep -q "^mt: streamed experts: 0 read.* cache 1 slot," "$tmp/err"
ok $? "a store beside a plan streaming no expert maps one slot: \
$(grep -o 'cache [0-9]* slots\?' "$tmp/err")"
# pack writes up to 1,024 files (MT_IO_MAX_FILES): run takes as many --store (it took 16)
outs=
stores=
for i in $(seq 0 16); do
    outs="$outs -o $tmp/t17.$i"
    stores="$stores --store $tmp/t17.$i"
done
tplain=$("$bin" run -m "$tmp/tiny" --prompt-ids 1,2,3 -n 4 --print-ids 2>/dev/null)
# shellcheck disable=SC2086 # $outs and $stores are lists of flags; $tmp has no spaces
"$bin" pack -q -m "$tmp/tiny" $outs 2>"$tmp/perr" &&
    got=$("$bin" run -m "$tmp/tiny" --prompt-ids 1,2,3 -n 4 --print-ids $stores 2>"$tmp/err")
[ $? -eq 0 ] && [ -n "$tplain" ] && [ "$got" = "$tplain" ]
ok $? "a store of 17 files: pack writes it, run --store x17 reads it, same tokens ('$got') \
$(head -1 "$tmp/perr") $(grep -v '^mt:' "$tmp/err" | head -1)"
# shellcheck disable=SC2086
"$bin" run -m "$tmp/tiny" --prompt-ids 1 -n 1 $(for i in $(seq 0 1024); do echo "--store x"; done) \
    >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "at most 1024 --store files" "$tmp/err"
ok $? "1,025 --store files: a usage error: $(head -1 "$tmp/err")"
# await_partial: wait (up to 30 s) until the pack started in the background has created its
# .partial files in $tmp/sig, so that a signal sent next comes while it writes them
await_partial() {
    i=0
    while [ $i -lt 600 ] && ! ls "$tmp/sig"/*.partial >/dev/null 2>&1; do
        sleep 0.05
        i=$((i + 1))
    done
}
# signal SIG: start a pack of the model into $tmp/sig (one old store file there), slowed by its
# test hook to ~4 s, send SIG once its .partial files exist, and set rc to its exit status
signal() {
    rm -rf "$tmp/sig"
    mkdir "$tmp/sig" && echo old >"$tmp/sig/b"
    MT_PACK_THROTTLE_MS=20 "$bin" pack -m "$m" -o "$tmp/sig/a" -o "$tmp/sig/b" >/dev/null \
        2>"$tmp/sig.err" &
    pid=$!
    await_partial
    kill -s "$1" "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
}
signal INT
# said once: the store is not finished (the writer would refuse it, adding an error of its own)
[ "$rc" -eq 130 ] && grep -q "interrupted: the partial store files are removed" "$tmp/sig.err" &&
    ! grep -q '^mt: ' "$tmp/sig.err"
ok $? "pack interrupted by SIGINT exits 130 (rc $rc), saying so, and only that: \
$(grep -v '^pack: ' "$tmp/sig.err" | head -n 2 | tr '\n' ' ')"
[ "$(ls "$tmp/sig")" = b ] && [ "$(cat "$tmp/sig/b")" = old ]
ok $? "... removing its preallocated .partial files, the old store file left as it was: \
$(ls "$tmp/sig" | tr '\n' ' ')"
signal TERM
[ "$rc" -eq 143 ] && [ "$(ls "$tmp/sig")" = b ]
ok $? "pack terminated by SIGTERM exits 143 (rc $rc), leaving no .partial file"
# the flag is read between experts: a pack slowed to 200 ms an expert (192 experts, some 40 s)
# ends within seconds of SIGINT, not after copying the rest
rm -rf "$tmp/sig" && mkdir "$tmp/sig"
MT_PACK_THROTTLE_MS=200 "$bin" pack -q -m "$m" -o "$tmp/sig/a" >/dev/null 2>"$tmp/sig.err" &
pid=$!
await_partial
t0=$(date +%s)
kill -s INT "$pid" 2>/dev/null
wait "$pid"
rc=$?
dt=$(($(date +%s) - t0))
[ "$rc" -eq 130 ] && [ "$dt" -le 10 ] && [ -z "$(ls "$tmp/sig")" ]
ok $? "SIGINT stops a pack of 200 ms an expert within $dt s (at most 10), rc $rc, nothing left"
"$bin" pack -m "$m" 2>"$tmp/err" >/dev/null
[ $? -eq 2 ]
ok $? "pack without -o is a usage error (exit 2)"
"$bin" pack -m "$m" -o "$tmp/no/such/dir/s" 2>"$tmp/err" >/dev/null
[ $? -eq 1 ] && grep -q "no/such/dir" "$tmp/err"
ok $? "pack into a missing directory: exit 1 naming it: $(head -1 "$tmp/err")"
"$bin" pack -m "$m" -o "$tmp/x" --bogus 2>/dev/null >/dev/null
[ $? -eq 2 ] && [ ! -e "$tmp/x" ]
ok $? "an unknown flag: exit 2, nothing written"
# usage errors exit 2 before anything is read or written: no -m, --threads 0, --queue-depth 0,
# an argument after the flags, one name given twice (in a missing directory, where no stat can
# tell that they are the same file: the names alone do)
"$bin" pack -o "$tmp/u" >/dev/null 2>"$tmp/e1"
rc1=$?
"$bin" pack -m "$tmp/tiny" -o "$tmp/u" --threads 0 >/dev/null 2>"$tmp/e2"
rc2=$?
"$bin" pack -m "$tmp/tiny" -o "$tmp/u" --queue-depth 0 >/dev/null 2>"$tmp/e3"
rc3=$?
"$bin" pack -m "$tmp/tiny" -o "$tmp/u" extra >/dev/null 2>"$tmp/e4"
rc4=$?
"$bin" pack -m "$tmp/tiny" -o "$tmp/no/d/u" -o "$tmp/no/d/u" >/dev/null 2>"$tmp/e5"
rc5=$?
[ "$rc1 $rc2 $rc3 $rc4 $rc5" = "2 2 2 2 2" ] && [ ! -e "$tmp/u" ] &&
    grep -q -- '-m DIR and at least one -o FILE are required' "$tmp/e1" &&
    grep -q "bad --threads '0'" "$tmp/e2" && grep -q "bad --queue-depth '0'" "$tmp/e3" &&
    grep -q "unexpected argument 'extra'" "$tmp/e4" && grep -q 'given twice' "$tmp/e5"
ok $? "no -m, --threads 0, --queue-depth 0, an extra argument, -o X -o X: usage errors, nothing \
written (rc $rc1 $rc2 $rc3 $rc4 $rc5)"
# the outputs are checked before the model is opened: a missing model and a missing directory
# name the directory
"$bin" pack -q -m "$tmp/no-model" -o "$tmp/no/such/dir/s" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "no/such/dir" "$tmp/err" && ! grep -q "no-model" "$tmp/err"
ok $? "pack of a missing model into a missing directory names the directory: $(head -1 "$tmp/err")"
# a read of the checkpoint that keeps failing (MT_IO_FAULT, io/expert_source.h) fails the pack
# naming the expert, and leaves no store file, whole or partial
mkdir "$tmp/fault"
MT_IO_FAULT='1:*' "$bin" pack -q -m "$tmp/tiny" -o "$tmp/fault/s" >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q '^mt: layer 1 expert [0-9]*: read of .* (read 3 times)' "$tmp/err" &&
    [ -z "$(ls "$tmp/fault")" ]
ok $? "a lasting read error while packing: exit 1 (rc $rc), the expert named, nothing left: \
$(grep -v warning "$tmp/err" | head -1)"
# --verify reads the finished store itself back: a fault injected once per source on layer 1
# expert 0 is met (and read again) in the checkpoint and then in the store file
MT_IO_FAULT='1:0:1' "$bin" pack -q --verify -m "$tmp/tiny" -o "$tmp/fault/v" >/dev/null \
    2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && grep -q "layer 1 expert 0: read of '$tmp/tiny/.*retry 1 of 2" "$tmp/err" &&
    grep -q "layer 1 expert 0: read of '$tmp/fault/v' .*retry 1 of 2" "$tmp/err"
ok $? "pack --verify reads layer 1 expert 0 back from the store file (rc $rc)"
# a model without MoE layers: said of the model (the reader alone would name its first shard)
"$bin" synth --preset tiny --layers 2 --dense-layers 2 -q -o "$tmp/dense" >/dev/null 2>&1 ||
    bail_out "synth of a dense model failed"
"$bin" pack -q -m "$tmp/dense" -o "$tmp/d" 2>"$tmp/err" >/dev/null
[ $? -eq 1 ] && grep -q "model '$tmp/dense' has no MoE layer" "$tmp/err" &&
    ! grep -q "safetensors" "$tmp/err" && [ ! -e "$tmp/d" ]
ok $? "pack of a model with no MoE layer says so, nothing written: $(head -1 "$tmp/err")"
# A checkpoint of more than 256 shards (a BF16 V3.2 in save_pretrained's 5 GB shards has ~270):
# streamed from its shards by a plan of all-NVMe experts, and packed into a store, it gives the
# tokens of the in-memory run
many="$tmp/many"
"$bin" synth -q --preset tiny --shard-size 4K -o "$many" >/dev/null 2>&1 ||
    bail_out "synth --shard-size 4K failed"
n_shards=$(ls "$many" | grep -c '\.safetensors$')
"$bin" plan -m "$many" --hw "$MT_SRCDIR/bench/profiles/rtx3090-ddr4.json" --gpu-mem 2G \
    --cpu-mem 4.1G --gpu-reserve 1.6G --ctx 256 -o "$tmp/many.json" >/dev/null 2>&1 ||
    bail_out "plan of the many-shard model failed"
sed -E 's/"(tiers|prefill)": *"[A-Z]+"/"\1": "NNNNNNNNNNNNNNNN"/g' "$tmp/many.json" \
    >"$tmp/manyN.json"
want=$("$bin" run -m "$many" --prompt-ids 5,17,33,900 -n 6 --print-ids 2>/dev/null)
got=$("$bin" run -m "$many" --prompt-ids 5,17,33,900 -n 6 --print-ids --plan "$tmp/manyN.json" \
    2>"$tmp/err")
rc=$?
"$bin" pack -q -m "$many" -o "$tmp/ms0" -o "$tmp/ms1" >/dev/null 2>&1 &&
    got2=$("$bin" run -m "$many" --prompt-ids 5,17,33,900 -n 6 --print-ids --store "$tmp/ms0" \
        --store "$tmp/ms1" 2>/dev/null)
[ "$n_shards" -gt 256 ] && [ $rc -eq 0 ] && [ -n "$want" ] && [ "$got" = "$want" ] &&
    [ "$got2" = "$want" ]
ok $? "a checkpoint of $n_shards shards streams and packs: '$got' / '$got2' (want '$want') \
$(grep -m1 'files' "$tmp/err")"
# pack takes up to 1,024 -o (its --help says so): 1,024 get past the flags to the check of the
# directory (missing here: exit 1), 1,025 are a usage error naming the limit
outs=$(for i in $(seq 1 1024); do echo "-o $tmp/no/such/dir/s$i"; done)
"$bin" pack -q -m "$tmp/tiny" $outs >/dev/null 2>"$tmp/err"
rc1=$?
head -1 "$tmp/err" >"$tmp/err1"
"$bin" pack -q -m "$tmp/tiny" $outs -o "$tmp/no/such/dir/s1025" >/dev/null 2>"$tmp/err"
rc2=$?
[ "$rc1" -eq 1 ] && grep -q "no/such/dir" "$tmp/err1" && [ "$rc2" -eq 2 ] &&
    grep -q "at most 1024 output files" "$tmp/err"
ok $? "pack with 1,024 -o: past the flags (rc $rc1); 1,025: usage error (rc $rc2: \
$(head -1 "$tmp/err"))"
# pack --verify reads the finished store back (and says so), without it pack does not
"$bin" pack -m "$tmp/tiny" -o "$tmp/v0" --verify >/dev/null 2>"$tmp/v0.err" &&
    "$bin" pack -m "$tmp/tiny" -o "$tmp/v1" >/dev/null 2>"$tmp/v1.err"
rc=$?
[ "$rc" -eq 0 ] && grep -q 'reading the store back, checking every CRC32C' "$tmp/v0.err" &&
    ! grep -q 'reading the store back' "$tmp/v1.err"
ok $? "pack --verify reads the store back, pack alone does not (rc $rc)"
tap_exit
