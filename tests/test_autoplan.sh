#!/bin/sh
# SPDX-License-Identifier: MIT
# test_autoplan.sh - a new user's `moetier run -m DIR` (cli_autoplan.h): --device auto picks the
# CPU where no GPU is visible; everything fitting the DRAM budget means no plan and no profile;
# a --cpu-mem too small for all experts plans from a --hw what-if profile (or the one cached in
# MOETIER_CACHE_DIR or XDG_CACHE_HOME), streams some experts from disk and gives the greedy
# tokens of all-DRAM; bad profiles, plans that no longer fit and too small budgets are refused
# with the reason; `moetier plan` with no -m plans the built-in DeepSeek-V3.2. Only four checks
# run the quick bench (a cache that cannot be used, no HOME, a tiny first shard, a disk that
# cannot be timed): about a minute each on a 2-core machine, most of this test's time; the
# others check that nothing was measured.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
prof="$MT_SRCDIR/bench/profiles/rtx3090-ddr4.json"
make_tmp autoplan
m="$tmp/small"
host=$(uname -n)
# every run below: the device left to auto with no GPU visible, and a cache that must stay empty
unset MOETIER_DEVICE
export CUDA_VISIBLE_DEVICES=
export MOETIER_CACHE_DIR="$tmp/nocache"
ids="5,17,900,33,4242,7,12,99,1000,65000,3,8"

echo "1..42"
"$bin" synth --preset small --seed 3 -o "$m" >/dev/null 2>"$tmp/err" ||
    bail_out "synth --preset small failed: $(cat "$tmp/err")"

run() { # run FLAGS... : ids on stdout, stderr in $tmp/err
    "$bin" run -m "$m" --prompt-ids "$ids" -n 6 --print-ids "$@" 2>"$tmp/err"
}
measured() { grep -q "measuring" "$tmp/err" || [ -e "$MOETIER_CACHE_DIR" ]; }

plain=$(run --no-plan)
[ $? -eq 0 ] && [ -n "$plain" ]
ok $? "run --no-plan: the old behaviour ('$plain')"
# not even read: a --hw file that does not exist is no error there
got=$(run --no-plan --hw "$tmp/missing.json" --cpu-reserve 1G)
[ $? -eq 0 ] && [ "$got" = "$plain" ] &&
    grep -q "warning: --hw and --cpu-reserve are not used with --no-plan" "$tmp/err"
ok $? "--hw and --cpu-reserve beside --no-plan are said to do nothing: $(grep warn "$tmp/err")"
# a --ctx past the model's positions (the small model's 163840) is held to them, and says so;
# the model's own maximum is no such case; --device cpu is the CPU as asked, and said so (not
# the auto guess and its reason)
got=$(run --no-plan --ctx 200000)
[ $? -eq 0 ] && [ "$got" = "$plain" ] &&
    grep -q "warning: --ctx 200000 is more than the model's 163840 positions: 163840 are held" \
        "$tmp/err"
capped=$?
warned=$(grep warning "$tmp/err")
run --no-plan --ctx 163840 --device cpu -n 1 >/dev/null && ! grep -q "warning" "$tmp/err" &&
    grep -q "^mt: device: CPU (--device)$" "$tmp/err" && [ $capped -eq 0 ] &&
    MOETIER_DEVICE=cpu run --no-plan -n 1 >/dev/null &&
    grep -q "^mt: device: CPU (MOETIER_DEVICE)$" "$tmp/err"
ok $? "a --ctx past the model's positions is said to be capped, the model's own is not: \
$warned; --device cpu: $(grep 'device:' "$tmp/err") (from the variable)"

auto=$(run)
rc=$?
[ $rc -eq 0 ] && [ "$auto" = "$plain" ] && grep -q "^mt: device: CPU (auto" "$tmp/err"
ok $? "--device auto without a visible GPU takes the CPU: $(grep 'device:' "$tmp/err")"
grep -q "0 on GPU, 192 in DRAM (CPU), 0 on NVMe (all fit in the DRAM budget" "$tmp/err" &&
    ! measured
ok $? "everything fits the DRAM budget: no plan, no profile: $(grep 'experts:' "$tmp/err")"
grep -q "^mt: loaded 0\.[0-9]* GB of weights in" "$tmp/err"
ok $? "the weights' loading ends with one summary line: $(grep 'loaded' "$tmp/err")"
# On a terminal the loading bar counts to what is loaded: its last "of N GB" is the summary's N.
# $1: more run flags (quoted for the shell script runs), $2: the check's message. (script makes
# the terminal: skipped where it is missing or cannot open a pseudo-terminal)
check_bar_total() {
    if command -v script >/dev/null 2>&1 &&
        script -qec true /dev/null </dev/null >/dev/null 2>&1; then
        MOETIER_DEVICE=cpu script -qec "'$bin' run -m '$m' --prompt-ids $ids -n 1 -v $1" \
            /dev/null </dev/null | tr '\r' '\n' >"$tmp/tty"
        total=$(sed -n 's/^loading weights .* of \([0-9.]*\) GB .*/\1/p' "$tmp/tty" | tail -1)
        [ -n "$total" ] && grep -q "mt: loaded $total GB of weights" "$tmp/tty"
        ok $? "$2: $total GB"
    else
        n=$((n + 1))
        echo "ok $n # SKIP no script (util-linux) or no pseudo-terminal: no terminal for the bar"
    fi
}
# without a plan the CPU engine reads only the always-on weights now (its experts on first use)
check_bar_total "" "the loading bar's total is what is loaded"

# 300 MiB holds the always-on weights (0.26 GiB), the KV of 8192 tokens and part of the experts
small="--cpu-mem 300M --cpu-reserve 4M"
got=$(run $small --hw "$prof" -v)
rc=$?
nvme=$(sed -n 's/.*in DRAM (CPU), \([0-9]*\) on NVMe; predicted [0-9.]* tok\/s.*/\1/p' "$tmp/err")
[ $rc -eq 0 ] && [ -n "$nvme" ] && [ "$nvme" -gt 0 ] && [ "$nvme" -lt 192 ] && ! measured
ok $? "a small --cpu-mem plans from --hw: $(grep 'experts:' "$tmp/err")"
# the stream cache: what the plan leaves of the experts' DRAM (here less than an expert), at
# least 2 x k = 16 experts taken from the 4 MiB reserve; the source fits 16 or 17 in that (a
# budgeted slot has room for each part's 4 KiB alignment)
[ "$got" = "$plain" ] && grep -q "^mt: streamed experts: [1-9].* cache 1[67] slots" "$tmp/err"
ok $? "... streams experts from disk and gives the all-DRAM tokens ('$got'): \
$(grep -o 'cache [0-9]* slots\?' "$tmp/err")"
# the experts that stream did not fit: DRAM has no room for one more, and says so
grep -q "^bottleneck :" "$tmp/err" &&
    grep -q "^why  *: DRAM holds [0-9]* in the .* leaves for experts (full)" "$tmp/err" &&
    grep -q "did not fit the DRAM budget" "$tmp/err"
ok $? "-v prints the plan and why: $(grep -A1 '^why' "$tmp/err" | tr '\n' ' ')"
# the plan is the one made from --hw (its "source" names it) for this model (FP8 experts)
grep -q "^hardware   : what-if: RTX 3090" "$tmp/err" &&
    grep -q "^model      : 4 layers (3 MoE x 64 experts, k 8), expert 0.19 MiB (FP8)" "$tmp/err"
ok $? "-v names the profile and the model planned for: $(grep -e '^hardware' -e '^model' \
"$tmp/err" | cut -c1-60 | tr '\n' ' ')"
# the plan goes by the tensors, as the engine does: FP8 experts even where config.json has no
# quantization_config (the same checkpoint, its config without one)
mkdir "$tmp/noq" && ln -s "$m"/*.safetensors "$m"/*.index.json "$m"/tokenizer*.json "$tmp/noq/" &&
    sed '/"quantization_config"/,/^  }/d' "$m/config.json" >"$tmp/noq/config.json"
"$bin" run -m "$tmp/noq" --prompt-ids "$ids" -n 1 $small --hw "$prof" -v >/dev/null 2>"$tmp/err"
[ $? -eq 0 ] && ! grep -q quantization_config "$tmp/noq/config.json" &&
    grep -q "no quantization_config but the linears are F8_E4M3" "$tmp/err" &&
    grep -q "^model      : .* expert 0.19 MiB (FP8)" "$tmp/err"
ok $? "a plan for FP8 tensors under a config without quantization_config: $(grep '^model' \
"$tmp/err" | cut -c1-80)"
# the 2 x k experts come out of the reserve: a 1 MiB one holds at most 5 of the small model's
# (3 x 128 x 512 FP8 bytes = 192 KiB each)
got=$(run --cpu-mem 300M --cpu-reserve 1M --hw "$prof" -v)
slots=$(sed -n 's/^mt: streamed experts: .* cache \([0-9]*\) slots\?,.*/\1/p' "$tmp/err")
[ "$got" = "$plain" ] && [ -n "$slots" ] && [ "$slots" -ge 1 ] && [ "$slots" -le 5 ]
ok $? "--cpu-reserve 1M: a stream cache of at most 5 experts ($slots slots)"
# no reserve and less than an expert left: never less than the one slot the source needs
got=$(run --cpu-mem 300M --cpu-reserve 0 --hw "$prof" -v)
[ $? -eq 0 ] && [ "$got" = "$plain" ] &&
    grep -q "^mt: streamed experts: [1-9].* cache 1 slot," "$tmp/err"
ok $? "--cpu-reserve 0: a stream cache of one expert: $(grep -o 'cache [0-9]* slots\?' "$tmp/err")"

# the cache: MOETIER_CACHE_DIR first, then XDG_CACHE_HOME/moetier
mkdir -p "$tmp/cache" "$tmp/xdg/moetier"
cp "$prof" "$tmp/cache/profile-$host.json"
cp "$prof" "$tmp/xdg/moetier/profile-$host.json"
got=$(MOETIER_CACHE_DIR="$tmp/cache" run $small)
[ $? -eq 0 ] && [ "$got" = "$plain" ] && ! grep -q measuring "$tmp/err" &&
    grep -q "hardware profile: $tmp/cache/profile-$host.json (cached" "$tmp/err"
ok $? "MOETIER_CACHE_DIR's profile is used: $(grep 'hardware profile' "$tmp/err")"
got=$(env -u MOETIER_CACHE_DIR XDG_CACHE_HOME="$tmp/xdg" "$bin" run -m "$m" --prompt-ids "$ids" \
    -n 6 --print-ids $small 2>"$tmp/err")
[ $? -eq 0 ] && [ "$got" = "$plain" ] &&
    grep -q "hardware profile: $tmp/xdg/moetier/profile-$host.json (cached" "$tmp/err"
ok $? "... else XDG_CACHE_HOME/moetier's: $(grep 'hardware profile' "$tmp/err")"
# a cached profile that cannot be read is not measured over (it may hold learned rates): exit 1,
# naming it, the reason and what to do
mkdir -p "$tmp/bcache"
printf '{"version": 1, "gpu": {"hbm_gbps": 900}}\n' >"$tmp/bcache/profile-$host.json"
out=$(MOETIER_CACHE_DIR="$tmp/bcache" run $small)
[ $? -eq 1 ] && [ -z "$out" ] && ! grep -q measuring "$tmp/err" &&
    grep -q "^mt: the cached hardware profile cannot be used: .*bcache/profile-$host.json.*\
hbm_gbps.* (move it away to measure again, or give --hw)" "$tmp/err"
ok $? "a broken cached profile: exit 1, naming it: $(tail -1 "$tmp/err" | cut -c1-120)"

# no cache to keep a profile in: the quick bench runs, the run goes on, one warning says why
touch "$tmp/afile"
got=$(MOETIER_CACHE_DIR="$tmp/afile/moetier" run $small)
[ $? -eq 0 ] && [ "$got" = "$plain" ] && [ "$(grep -c 'cannot create' "$tmp/err")" -eq 1 ] &&
    grep -q "^mt: warning: the profile is not cached: cannot create .*afile/moetier" "$tmp/err"
ok $? "an unwritable cache: measured, one warning: $(grep 'cannot create' "$tmp/err")"
got=$(env -u MOETIER_CACHE_DIR -u XDG_CACHE_HOME -u HOME "$bin" run -m "$m" --prompt-ids "$ids" \
    -n 6 --print-ids $small 2>"$tmp/err")
[ $? -eq 0 ] && [ "$got" = "$plain" ] && [ "$(grep -c warning "$tmp/err")" -eq 1 ] &&
    grep -q "^mt: warning: no cache directory .* the profile measured now is not cached" "$tmp/err"
ok $? "no HOME: measured, not cached: $(grep 'warning' "$tmp/err")"
# a model whose first shard is too small to time a disk on (tiny: 3.7 MB, ~4 reads that gave
# 0.2-2.3 GB/s, cached for every later plan): the quick profile measures a test file in the
# cache's directory instead
"$bin" synth --preset tiny --seed 3 -o "$tmp/tiny" >/dev/null 2>"$tmp/err" ||
    bail_out "synth --preset tiny failed: $(cat "$tmp/err")"
MOETIER_CACHE_DIR="$tmp/tcache" "$bin" plan -m "$tmp/tiny" >/dev/null 2>"$tmp/err"
[ $? -eq 0 ] && grep -q "too small to time the disk .*measuring a test file in '$tmp/tcache'" \
    "$tmp/err" && grep -q "\"path\": \"$tmp/tcache\"" "$tmp/tcache/profile-$host.json"
ok $? "a tiny first shard: the disk is timed in the cache directory: \
$(grep 'too small' "$tmp/err")"
# a disk that cannot be timed (here: its read buffers are more than MT_MEM_AVAILABLE says is
# free; a full cache directory likewise) costs the profile its disk rate, not the plan; such a
# profile is not cached, or every later plan would keep off the disk
MT_MEM_AVAILABLE=1048576 MOETIER_CACHE_DIR="$tmp/dcache" "$bin" plan -m "$tmp/tiny" \
    --cpu-mem 8G >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] && grep -q "warning: the disk could not be timed: .*plans stream no experts" \
    "$tmp/err" && grep -q "not cached, as its disk rate is missing" "$tmp/err" &&
    grep -q "disk 0.0 GB/s" "$tmp/out" && [ ! -e "$tmp/dcache/profile-$host.json" ]
ok $? "a disk that cannot be timed: planned without it, not cached: \
$(grep 'could not be timed' "$tmp/err" | cut -c1-160)"

# refusals, each with its reason and nothing run
printf '{"version": 1, "gpu": {"hbm_gbps": 900}}\n' >"$tmp/bad-hw.json"
out=$(run $small --hw "$tmp/bad-hw.json")
[ $? -eq 1 ] && [ -z "$out" ] && grep -q "bad-hw.json.*hbm_gbps" "$tmp/err"
ok $? "a bad --hw file: exit 1 naming file and key: $(tail -1 "$tmp/err")"
out=$(run --hw "$tmp/missing.json")
[ $? -eq 1 ] && grep -q "missing.json" "$tmp/err"
ok $? "a missing --hw file, even with nothing to plan: $(tail -1 "$tmp/err")"
out=$(run --cpu-mem 100M)
[ $? -eq 1 ] && grep -q -- "--cpu-mem 100.0 MiB is too small for .*always-on weights" "$tmp/err" &&
    ! measured
ok $? "a too small --cpu-mem: $(tail -1 "$tmp/err")"
# room for the reserve and the always-on weights but not the KV of 8192 tokens (8192 x 2,064 B
# = 16.1 MiB, see below): refused the same way, before any plan
out=$(run --cpu-mem 275M --cpu-reserve 4M --hw "$prof")
[ $? -eq 1 ] && [ -z "$out" ] && grep -q -- "--cpu-mem 275.0 MiB is too small for .* \
always-on weights [0-9.]* MiB + KV for 8192 tokens 16.1 MiB = " "$tmp/err"
ok $? "a --cpu-mem short of the KV alone: $(tail -1 "$tmp/err" | cut -c1-160)"
# the budgets' edges, to the byte (inspect gives the sizes; the default 8192 tokens of KV):
# --cpu-mem of exactly reserve + always-on + KV streams every expert, a byte less is refused;
# that + all the experts fits them all (nothing to plan), a byte less plans one onto NVMe
other=$("$bin" inspect -m "$m" | sed -n 's/^everything else (main) *\([0-9,]*\) B.*/\1/p' | tr -d ,)
routed=$("$bin" inspect -m "$m" | sed -n 's/^routed experts (main) *\([0-9,]*\) B.*/\1/p' | tr -d ,)
floor=$((4194304 + other + 8192 * 2064))
all=$((floor + routed))
got=$(run --cpu-mem $floor --cpu-reserve 4M --hw "$prof")
[ $? -eq 0 ] && [ "$got" = "$plain" ] && grep -q "0 in DRAM (CPU), 192 on NVMe" "$tmp/err" &&
    ! run --cpu-mem $((floor - 1)) --cpu-reserve 4M --hw "$prof" >/dev/null &&
    grep -q "is too small for" "$tmp/err"
a=$?
run --cpu-mem $all --cpu-reserve 4M --hw "$prof" -n 1 >/dev/null && [ $a -eq 0 ] &&
    [ -n "$other" ] && [ -n "$routed" ] &&
    grep -q "192 in DRAM (CPU), 0 on NVMe (all fit in the DRAM budget" "$tmp/err" &&
    run --cpu-mem $((all - 1)) --cpu-reserve 4M --hw "$prof" -n 1 >/dev/null &&
    grep -q "191 in DRAM (CPU), 1 on NVMe; predicted" "$tmp/err"
ok $? "--cpu-mem at its edges: $floor B streams all, 1 less refused; $all B fits all, 1 less \
streams one"
"$bin" plan -m "$m" --hw "$prof" --gpu-mem 2G --cpu-mem 4.2G --gpu-reserve 1.6G --ctx 1024 \
    -o "$tmp/plan.json" >/dev/null 2>"$tmp/err" || bail_out "plan failed: $(cat "$tmp/err")"
c64=CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC
sed -E "s/\"(tiers|prefill)\": *\"[A-Z]+\"/\"\\1\": \"$c64\"/g" "$tmp/plan.json" >"$tmp/dram.json"
out=$(run --plan "$tmp/dram.json" --cpu-mem 280M)
[ $? -eq 1 ] && [ -z "$out" ] && grep -q \
    "dram.json needs [0-9.]* MiB of DRAM for its experts, always-on weights and KV cache, \
more than --cpu-mem 280.0 MiB" "$tmp/err"
ok $? "a plan that does not fit --cpu-mem is refused: $(tail -1 "$tmp/err")"
# what it needs holds the CPU engine's KV of the context: 2,064 B a token (4 layers x (a BF16
# latent of 128 + 64 and an FP8 index key of 128 + a 4 B scale)), so 7168 tokens fewer than
# the default 8192 need 14.11 MiB less
need8k=$(sed -n 's/.*dram.json needs \([0-9.]*\) MiB of DRAM.*/\1/p' "$tmp/err")
out=$(run --plan "$tmp/dram.json" --cpu-mem 280M --ctx 1024)
need1k=$(sed -n 's/.*dram.json needs \([0-9.]*\) MiB of DRAM.*/\1/p' "$tmp/err")
[ -n "$need8k" ] && [ -n "$need1k" ] &&
    awk -v a="$need8k" -v b="$need1k" 'BEGIN { d = a - b - 7168 * 2064 / 1048576;
        exit !(d < 0.11 && d > -0.11) }'
ok $? "... its need holds the KV of --ctx: $need8k MiB at 8192 tokens, $need1k MiB at 1024"
# the CPU engine computes a GPU plan's GPU-tier experts from DRAM: plan.json (no NVMe experts)
# needs as much DRAM there as its all-DRAM copy
out=$(run --plan "$tmp/plan.json" --cpu-mem 280M)
[ $? -eq 1 ] && ! grep -q '"tiers": "[A-Z]*N' "$tmp/plan.json" &&
    grep -q "plan.json needs $need8k MiB of DRAM" "$tmp/err"
ok $? "... a GPU plan on the CPU engine counts its GPU experts in DRAM: $(tail -1 "$tmp/err" |
    cut -c1-120)"
# ... and with the DRAM for them it runs, saying that the CPU computes the GPU's experts
run --plan "$tmp/plan.json" --cpu-mem 400M -n 1 >/dev/null &&
    grep -q "^mt: this CPU engine computes the plan's [1-9][0-9]* GPU-tier and 0 PCIe-tier \
experts from DRAM" "$tmp/err"
ok $? "... runs where its DRAM suffices, and says the CPU computes the GPU's experts: \
$(grep 'GPU-tier' "$tmp/err" | cut -c1-100)"
# its loading bar counts the always-on weights and the plan's DRAM experts (preloaded), not its
# GPU-tier experts, which this CPU engine reads on first use
check_bar_total "--plan '$tmp/plan.json' --cpu-mem 400M" \
    "... its loading bar's total is what is loaded"
# without --cpu-mem, a plan that needs more DRAM than is free now (MT_MEM_AVAILABLE stands in for
# /proc/meminfo) is refused before loading anything
out=$(MT_MEM_AVAILABLE=200000000 run --plan "$tmp/dram.json")
[ $? -eq 1 ] && [ -z "$out" ] && grep -q "dram.json needs $need8k MiB of DRAM, but only \
190.7 MiB are available now (MemAvailable): it no longer fits" "$tmp/err"
ok $? "a plan past the memory free now is refused: $(tail -1 "$tmp/err" | cut -c1-120)"
# with no plan, everything fits a 306 MiB budget only without the KV of 7168 more tokens: at
# --ctx 1024 nothing is planned, at the default 8192 some experts stream
b306="--cpu-mem 310M --cpu-reserve 4M"
got=$(run $b306 --hw "$prof" --ctx 1024)
grep -q "0 on NVMe (all fit in the DRAM budget, 306.0 MiB" "$tmp/err"
fit=$?
got=$(run $b306 --hw "$prof")
[ $fit -eq 0 ] && [ "$got" = "$plain" ] &&
    grep -q "in DRAM (CPU), [1-9][0-9]* on NVMe" "$tmp/err" &&
    awk -v a="$need8k" -v b="$need1k" 'BEGIN { exit !(a > 306 && b < 306) }'
ok $? "all fit only where the KV does too: $(grep 'experts:' "$tmp/err" | cut -c1-100)"
# (--cpu-reserve alone beside --plan is said to do nothing, as both are beside --no-plan; so
# is a --hw that does not exist); -v's why: nothing streams from disk; a --cpu-mem of exactly
# its need (its experts, always-on weights and KV) is enough
out=$(run --plan "$tmp/dram.json" --cpu-reserve 1G -v --cpu-mem $((routed + other + 8192 * 2064)))
[ $? -eq 0 ] && [ "$out" = "$plain" ] && [ -n "$routed" ] &&
    grep -q "experts: 0 on GPU, 192 in DRAM (CPU), 0 on NVMe; no decode prediction (plan" \
        "$tmp/err" &&
    grep -q "warning: --cpu-reserve is not used with --plan: only the automatic placement" \
        "$tmp/err" &&
    grep -q "DRAM holds 192 in the" "$tmp/err" && ! grep -q "stream from disk" "$tmp/err"
ok $? "... and runs where it fits, an edited plan predicting nothing: \
$(grep 'experts:' "$tmp/err" | cut -c1-120)"
out=$(run --plan "$tmp/dram.json" --hw "$tmp/missing.json")
[ $? -eq 0 ] && [ "$out" = "$plain" ] &&
    grep -q "warning: --hw is not used with --plan: only the automatic placement" "$tmp/err"
ok $? "... beside a --hw it does not read: $(grep "not used" "$tmp/err")"

# moetier plan with no -m: the built-in DeepSeek-V3.2, from --hw or the cached profile
"$bin" plan --hw "$prof" --gpu-mem 24G --cpu-mem 500G >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] && grep -q "built-in config" "$tmp/err" &&
    grep -q "^model      : 61 layers (58 MoE x 256 experts, k 8)" "$tmp/out" &&
    grep -q "^decode     : [0-9.]* tok/s" "$tmp/out"
ok $? "moetier plan with no -m plans the built-in V3.2: $(grep '^decode' "$tmp/out")"
cat >"$tmp/cpu-only.json" <<'JSON'
{"version": 1, "source": "what-if: 16 GiB, no GPU", "dram_bytes": 17179869184,
 "cpu": {"cores": 2, "read_gbps": 20, "fma_gflops": 200},
 "disks": [{"path": "/tmp", "best_gbps": 2}]}
JSON
"$bin" plan --hw "$tmp/cpu-only.json" --cpu-mem 16G >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] && grep -q "^DRAM budget: 16.0 GiB = .* experts 0.00 GiB" "$tmp/out" &&
    grep -q "short by [0-9.]* [KMG]iB: the reserve, the always-on weights and the KV" "$tmp/out"
ok $? "a CPU-only plan whose DRAM cannot hold the always-on weights says so: \
$(grep -A1 '^DRAM budget' "$tmp/out" | tail -1)"
# without --cpu-mem, a profile of this host (its "host" is this hostname) plans with the memory
# free now (MT_MEM_AVAILABLE stands in for MemAvailable: 8 GiB), another machine's with 90% of
# its DRAM (14.4 GiB of 16)
sed "s/\"source\": /\"host\": \"$host\", \"source\": /" "$tmp/cpu-only.json" >"$tmp/here.json"
MT_MEM_AVAILABLE=8589934592 "$bin" plan --hw "$tmp/here.json" >"$tmp/out" 2>"$tmp/err" &&
    grep -q "^DRAM budget: 8.0 GiB = " "$tmp/out" &&
    MT_MEM_AVAILABLE=8589934592 "$bin" plan --hw "$tmp/cpu-only.json" >"$tmp/out2" 2>"$tmp/err" &&
    grep -q "^DRAM budget: 14.4 GiB = " "$tmp/out2"
ok $? "default DRAM budgets: this host's free memory, a what-if's 90%: \
$(grep -h '^DRAM budget' "$tmp/out" "$tmp/out2" | cut -d= -f1 | tr '\n' ' ')"
MOETIER_CACHE_DIR="$tmp/cache" "$bin" plan -m deepseek-v3.2 >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] && grep -q "^decode     : [0-9.]* tok/s" "$tmp/out" &&
    ! grep -q measuring "$tmp/err" && grep -q "^hardware   : what-if: RTX 3090" "$tmp/out"
ok $? "... -m deepseek-v3.2, the cached profile, default budgets: $(grep '^decode' "$tmp/out")"

# a plan file run with --cpu-mem: its streamed experts get a cache as the automatic plan's does
# (2 x k = 16 experts from its 4 MiB reserve), not the source's default of 4
"$bin" plan -m "$m" --hw "$tmp/cpu-only.json" --cpu-mem 300M --cpu-reserve 4M --ctx 8192 \
    -o "$tmp/nvme.json" >/dev/null 2>"$tmp/err" || bail_out "plan failed: $(cat "$tmp/err")"
out=$(run --plan "$tmp/nvme.json" --cpu-mem 300M -v)
[ $? -eq 0 ] && [ "$out" = "$plain" ] &&
    grep -q "in DRAM (CPU), [1-9][0-9]* on NVMe" "$tmp/err" &&
    grep -q "^mt: streamed experts: [1-9].* cache 1[67] slots" "$tmp/err"
ok $? "a CPU plan file's streamed experts with --cpu-mem: \
$(grep -o 'cache [0-9]* slots\?' "$tmp/err")"
# a plan file's DRAM budget may be another machine's: made for 1 GiB more DRAM than this run's
# --cpu-mem, its cache is still what --cpu-mem leaves beside its DRAM experts (about the 4 MiB
# reserve: 20 slots), not the 1 GiB it left unused, which would cache all its streamed experts
deb=$(sed -n 's/.*"dram_expert_bytes": *\([0-9]*\).*/\1/p' "$tmp/nvme.json")
cmb=$(sed -n 's/.*"cpu_mem_bytes": *\([0-9]*\).*/\1/p' "$tmp/nvme.json")
sed -E "s/(\"dram_expert_bytes\": *)[0-9]+/\\1$((deb + 1073741824))/;
    s/(\"cpu_mem_bytes\": *)[0-9]+/\\1$((cmb + 1073741824))/" "$tmp/nvme.json" \
    >"$tmp/nvme-big.json"
out=$(run --plan "$tmp/nvme-big.json" --cpu-mem 300M -v)
rc=$?
slots=$(sed -n 's/^mt: streamed experts: .* cache \([0-9]*\) slots\?,.*/\1/p' "$tmp/err")
[ $rc -eq 0 ] && [ "$out" = "$plain" ] && [ -n "$deb" ] && [ -n "$slots" ] &&
    [ "$slots" -ge 16 ] && [ "$slots" -le 24 ]
ok $? "... and one made for more DRAM gets only what --cpu-mem leaves: $slots slots"
# every --help names the new flags
for c in run chat serve; do
    "$bin" $c --help >"$tmp/help.$c" || echo "help $c failed"
done
grep -q -- "--device auto|cpu|gpu" "$tmp/help.run" &&
    grep -q -- "--cpu-mem SIZE" "$tmp/help.chat" &&
    grep -q -- "--no-plan  *no planning: every routed expert on the engine's own" \
        "$tmp/help.serve" && grep -q -- "--hw PROFILE" "$tmp/help.run" &&
    "$bin" plan --help | grep -q "built-in DeepSeek-V3.2"
ok $? "run, chat, serve and plan --help describe the placement flags"
tap_exit
