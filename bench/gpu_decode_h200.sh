#!/bin/bash
# gpu_decode_h200.sh - one decode step of a v32-shape model against its bytes-moved floor (issue
# 10; bench/results/gpu-engine-h200.md): build, the GPU engine's tests, a 2-layer v32-shape model
# (1 dense + 1 MoE layer, 15.8 GB, everything on the GPU), the HBM read ceiling measured in the
# same run, then 63 decoded tokens after a 64-token prompt under each configuration of the decode
# step, each as decode tok/s (the CLI's wall time) and as the engine's forward time of the decode
# phase (the run report), both divided by the floor (HBM read / bytes read per decoded token).
#
# Configurations (environment switches of runtime/engine/engine_gpu*.c):
#   before    MT_GPU_DEVICE_MOE=0 MT_GPU_GRAPH=0 MT_GPU_FUSE=0: routing through the host, one
#             launch per kernel, no fused norms (main's behaviour but the faster RMSNorm kernel)
#   devmoe    MT_GPU_GRAPH=0 MT_GPU_FUSE=0: the MoE layer routes on the device, no graph
#   nograph   MT_GPU_GRAPH=0: device routing and fused residual + norm, no graph
#   nofuse    MT_GPU_FUSE=0: device routing and CUDA graphs, unfused norms
#   graph     defaults: all of them
#   nopdl     MT_GPU_PDL=0: the defaults with plain launches instead of programmatic dependent
#             launch (kernels/pdl.cuh; sm_90+ only, so the same as graph elsewhere)
#   kernels   MT_GPU_GRAPH=0 MT_GPU_PDL=0 MT_GPU_KERNEL_TIMES=1: plain launches, the decode phase's
#             GPU time per kernel name at the end of kernels.txt (kernels/launch_times.h; its
#             total against graph's forward time says what launches and gaps cost)
#   nowave    MT_MOE_WAVE=0: the defaults with one token's routed experts on the older expert
#             core (gemv_core.cuh) instead of the one-wave kernel (gemv_wave.cuh)
#   gemv16    MT_GEMV_TWO_BLOCKS=0: the defaults with every FP8 GEMV of 1-4 tokens in one 16-warp
#             block an SM instead of two 8-warp blocks where they fit (kernels/gemv.cu)
#   tma0      MT_GEMV_TMA=0: the defaults with every FP8 GEMV's weights copied by cp.async
#             instead of the TMA ring that sm_90+ takes (kernels/gemv.cu); long-tma0: the same
#             on the 2,100-token prompt
#   hint0     MT_GEMV_TMA_HINT=0: the defaults with the TMA ring's weights cached in L2 like
#             everything else, instead of evict-first (kernels/gemv.cu)
#   long-mlasmall  MT_MLA_TC_SMALL=1 on the 2,100-token prompt: sparse MLA on the small
#             tensor-core kernel of sm_80/86/89/120 (kernels/mla.cu) instead of the large one
#   mlalarge  MT_MLA_TC_SMALL=0: the defaults with the short rows' MLA on the large tensor-core
#             kernel (sm_90/sm_100) instead of the small one
#   copy      MT_GPU_LOGITS_DIRECT=0: the defaults with lm_head writing a graph step's logits to
#             device memory and a copy to pinned host memory after it (instead of lm_head storing
#             them there itself)
#   long-fp32keys  MT_IDX_SPLIT_KEYS=0 on the 2,100-token prompt: the exact index keys as fp32
#             (mma.sync) instead of the split key cache (H100/H200, kernels/index_keys_split.cuh)
#   long-fp8  the 2,100-token prompt with the FP8 indexer (--indexer fp8; long-fp8nograph: and
#             no graphs, the tokens compared with long-fp8's)
#   noahead   MT_GPU_AHEAD=0: the defaults with each greedy step launched by its own call, after
#             the host has the previous id (not behind the previous step, fed on the device);
#             long-noahead: the same on the 2,100-token prompt
#   hostpick  MT_GPU_ARGMAX=0: the defaults with a greedy step's logits copied to the host and
#             its id picked there, instead of by the argmax kernel on the device
#   onechunk0 MT_MLA_TS_ONE_CHUNK=0: the defaults with short rows' sparse MLA on two chunks of
#             positions a block at least, instead of one (kernels/mla.cu)
#   long-stackq0  MT_GPU_STACK_Q=0 on the 2,100-token prompt: q_b and the indexer's wq_b in two
#             GEMVs instead of one of their stacked weight (engine_gpu_attn.c)
#   long-kernels  the `kernels` table on the 2,100-token prompt (long-kernels-stackq0: and
#             MT_GPU_STACK_Q=0)
#   absorb0   MT_GPU_ABSORB=0: the defaults with MLA's kv_b absorptions on engine_ops.cu's
#             any-shape kernels instead of its streaming FP8 ones
#   base      the defaults on another build's moetier (BASE_BIN=path; e.g. main's, for a
#             branch's before/after in the same minute); basenograph: its nograph; long-base:
#             its long-graph
# Greedy tokens of every configuration are compared with `before` (same model, same prompt), and a
# 2,100-token prompt (the indexer selecting top-k inside recorded steps) is decoded with and
# without graphs, 63 tokens like the short runs (until 2026-12-01 15, whose forward time carried
# the two graph captures: 0.980 ms a token against 0.962 over 63 in the same call). The runs
# go most important first, each leaving $OUT/results.tgz updated.
#
# Run from the tree root on the GPU machine with $OUT set: bash bench/gpu_decode_h200.sh
# (MODEL_DIR=/dev/shm: the model there instead of /tmp; SKIP_BUILD=1: the tree is built
# already; BUILD_TARGETS=moetier: only those; SKIP_TESTS=1: no
# tests; RUNS="before graph": only those configurations).
# Everything lands in $OUT/results.tgz.
T0=$(date +%s)
R=$OUT/r
mkdir -p "$R"
t() { echo "[t+$(($(date +%s) - T0))s] $*"; tar -C "$OUT" -czf "$OUT/results.tgz" r 2>/dev/null; }
date -u > "$R/date.txt"
# MODEL_DIR: where the model goes (a warm machine may have /tmp full of other runs' models)
MD=${MODEL_DIR:-/tmp}
df -h "$MD" > "$R/df.txt" 2>&1
if [ "$(df -k --output=avail "$MD" | tail -1)" -lt 17000000 ]; then # the model: 15.8 GB
    cat "$R/df.txt"
    t "not enough room in $MD for the model"
    exit 1
fi
# the carried Debian packages (liburing's library path): the runs need them too, built here or not
[ -f .gpu/deps/deps.sh ] && . .gpu/deps/deps.sh > /dev/null 2>&1
if [ -z "$SKIP_BUILD" ]; then
    t build
    D=/opt/moetier-deps/usr
    (./autogen.sh && ./configure -q --with-cuda-arch=sm_90 MHD_CFLAGS="-I$D/include" \
        MHD_LIBS="-L$D/lib/x86_64-linux-gnu -lmicrohttpd" && make -j16 ${BUILD_TARGETS:-}) \
        > "$R/build.log" 2>&1 ||
        { tail -40 "$R/build.log"; t failed; exit 1; }
fi
M=./moetier
t "synth (background) and tests"
# a directory of its own: a warm machine keeps /tmp, and other benchmarks write models there
V=$MD/v32-decode-step
rm -rf "$V"
(s=$(date +%s); timeout 120 $M synth --preset v32-shape --layers 2 --dense-layers 1 -o "$V" -q \
    > "$R/synth.txt" 2>&1; echo "synth rc $? in $(($(date +%s) - s)) s" >> "$R/synth.txt") &
SYNTH=$!
if [ -z "$SKIP_TESTS" ]; then
    TL="tests/test_gpu_step tests/test_gpu_ops tests/test_gpu_moe tests/test_gpu_engine"
    TL="$TL tests/test_gpu_hetero tests/test_gpu_run.sh"
    timeout 100 make -j16 check TESTS="$TL" > "$R/check.log" 2>&1
    grep -E '^# (TOTAL|PASS|SKIP|FAIL|ERROR)|^FAIL|^ERROR' "$R/check.log"
    for f in $TL; do cp "$f.log" "$R/" 2>/dev/null; done
fi
wait $SYNTH
cat "$R/synth.txt"
t "ceiling and bytes"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv \
    > "$R/gpu.txt" 2>&1
$M inspect -m "$V" > "$R/inspect.txt" 2>&1
# the ceiling: the full measurement (a 4 GiB read); --quick's 256 MiB read is a smoke test that
# pays a launch's ramp and tail per 66 us and read ~11% less (4,087 against 4,633 GB/s on
# 2026-12-01): ratios of earlier sessions were against it
timeout 120 $M bench --only gpu > "$R/bench.txt" 2>&1
HBM=$(sed -n 's/.*HBM read \([0-9.]*\) GB\/s.*/\1/p' "$R/bench.txt" | head -1)
BYTES=$(sed -n 's/^read per decoded token *\([0-9,]*\) B.*/\1/p' "$R/inspect.txt" | tr -d ,)
echo "HBM read $HBM GB/s; bytes per decoded token $BYTES" | tee "$R/ceiling.txt"
P64=$(seq 1 64 | paste -sd,)
RUN="$M run -m $V --device gpu --gpu-mem 24G --no-plan" # everything fits: nothing to plan
run() { # name, env..., then the prompt / length arguments after --
    local name=$1
    shift
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" timeout 40 $RUN "$@" --print-ids > "$R/$name.txt" 2>&1
    echo "rc $?" >> "$R/$name.txt"
}
ratio() { # name: decode tok/s and the decode phase's forward time against the floor
    local f=$R/$1.txt
    awk -v hbm="$HBM" -v bytes="$BYTES" -v name="$1" '
        /decode [0-9]+ tokens in/ { # the CLI: "decode N tokens in S s (R tok/s)"
            for (i = 1; i <= NF; i++) if ($i == "decode") { n = $(i+1); wall = substr($(i+6), 2) }
        }
        /MoE wait .* s forward/ { for (i = 1; i <= NF; i++) if ($i ~ /^forward;?$/) fw = $(i-2) }
        /forwards as CUDA graphs, GPU/ { for (i = 1; i <= NF; i++) if ($i == "GPU") gms = $(i+1) }
        END {
            floor = hbm * 1e9 / bytes
            fwd = fw > 0 ? n / fw : 0 # the report prints 0.1 ms: +-0.05 ms of the phase
            printf "%-12s decode %d tokens: %.1f tok/s (wall, ratio %.3f), forward %.4f s = ", name,
                n, wall, wall / floor, fw
            printf "%.1f tok/s (ratio %.3f, %.3f ms/token); floor %.1f tok/s", fwd, fwd / floor,
                (fw > 0 ? 1e3 * fw / n : 0), floor
            if (gms > 0) printf "; graph GPU %.3f ms a step (ratio %.3f)", gms, 1e3 / gms / floor
            printf "\n"
        }' "$f" | tee -a "$R/ratios.txt"
}
ids() { grep -E '^[0-9]+( [0-9]+)+$' "$R/$1.txt" | tail -1; }
same() { # name, reference: greedy tokens equal?
    if [ ! -f "$R/$2.txt" ] || [ ! -f "$R/$1.txt" ]; then
        echo "greedy tokens $1 not compared: no $2 run" | tee -a "$R/ratios.txt"
    elif [ -n "$(ids "$1")" ] && [ "$(ids "$1")" = "$(ids "$2")" ]; then
        echo "greedy tokens $1 = $2" | tee -a "$R/ratios.txt"
    else
        echo "greedy tokens $1 DIFFER from $2" | tee -a "$R/ratios.txt"
    fi
}
# most important first: the machine's time may run out (each stage leaves results.tgz behind)
P2K=$(seq 1 2100 | paste -sd,)
OFF="MT_GPU_DEVICE_MOE=0 MT_GPU_GRAPH=0 MT_GPU_FUSE=0"
RUNS=${RUNS:-before graph nograph nofuse long-graph long-nograph devmoe graph2 before2}
for c in $RUNS; do
    case $c in
        before | before2) run $c $OFF -- --prompt-ids "$P64" -n 64 ;;
        devmoe) run $c MT_GPU_GRAPH=0 MT_GPU_FUSE=0 -- --prompt-ids "$P64" -n 64 ;;
        nograph | nograph2) run $c MT_GPU_GRAPH=0 -- --prompt-ids "$P64" -n 64 ;;
        nofuse) run $c MT_GPU_FUSE=0 -- --prompt-ids "$P64" -n 64 ;;
        graph | graph2 | graph3 | graph4) run $c MT_X=1 -- --prompt-ids "$P64" -n 64 ;;
        base | base2 | base3 | basenograph | basenograph2)
            RUN0=$RUN
            RUN="${BASE_BIN:?set BASE_BIN to another build of moetier} ${RUN#"$M" }"
            case $c in base*nograph*) run $c MT_GPU_GRAPH=0 -- --prompt-ids "$P64" -n 64 ;;
                *) run $c MT_X=1 -- --prompt-ids "$P64" -n 64 ;; esac
            RUN=$RUN0 ;;
        nopdl | nopdl2) run $c MT_GPU_PDL=0 -- --prompt-ids "$P64" -n 64 ;;
        nowave | nowave2) run $c MT_MOE_WAVE=0 -- --prompt-ids "$P64" -n 64 ;;
        absorb0) run $c MT_GPU_ABSORB=0 -- --prompt-ids "$P64" -n 64 ;;
        long-stackq0 | long-stackq0b) run $c MT_GPU_STACK_Q=0 -- --prompt-ids "$P2K" -n 64 ;;
        long-kernels | long-kernels-stackq0)
            run $c MT_GPU_GRAPH=0 MT_GPU_PDL=0 MT_GPU_KERNEL_TIMES=1 \
                $([ $c = long-kernels ] || echo MT_GPU_STACK_Q=0) -- --prompt-ids "$P2K" -n 64 ;;
        copy | copy2 | copy3) run $c MT_GPU_LOGITS_DIRECT=0 -- --prompt-ids "$P64" -n 64 ;;
        hostpick | hostpick2) run $c MT_GPU_ARGMAX=0 -- --prompt-ids "$P64" -n 64 ;;
        noahead | noahead2) run $c MT_GPU_AHEAD=0 -- --prompt-ids "$P64" -n 64 ;;
        long-noahead) run $c MT_GPU_AHEAD=0 -- --prompt-ids "$P2K" -n 64 ;;
        onechunk0 | onechunk02) run $c MT_MLA_TS_ONE_CHUNK=0 -- --prompt-ids "$P64" -n 64 ;;
        gemv16 | gemv16b | gemv16c) run $c MT_GEMV_TWO_BLOCKS=0 -- --prompt-ids "$P64" -n 64 ;;
        long-gemv16) run $c MT_GEMV_TWO_BLOCKS=0 -- --prompt-ids "$P2K" -n 64 ;;
        tma0 | tma0b) run $c MT_GEMV_TMA=0 -- --prompt-ids "$P64" -n 64 ;;
        long-tma0) run $c MT_GEMV_TMA=0 -- --prompt-ids "$P2K" -n 64 ;;
        hint0 | hint0b) run $c MT_GEMV_TMA_HINT=0 -- --prompt-ids "$P64" -n 64 ;;
        long-mlasmall | long-mlasmall2) run $c MT_MLA_TC_SMALL=1 -- --prompt-ids "$P2K" -n 64 ;;
        mlalarge | mlalarge2 | mlalarge3 | mlalarge4) run $c MT_MLA_TC_SMALL=0 -- --prompt-ids "$P64" -n 64 ;;
        kernels-mlalarge) run $c MT_MLA_TC_SMALL=0 MT_GPU_GRAPH=0 MT_GPU_PDL=0 MT_GPU_KERNEL_TIMES=1 -- --prompt-ids "$P64" -n 64 ;;
        kernels) run $c MT_GPU_GRAPH=0 MT_GPU_PDL=0 MT_GPU_KERNEL_TIMES=1 -- --prompt-ids "$P64" -n 64 ;;
        long-graph | long-graph2) run $c MT_X=1 -- --prompt-ids "$P2K" -n 64 ;;
        long-base | long-base2)
            RUN0=$RUN
            RUN="${BASE_BIN:?set BASE_BIN to another build of moetier} ${RUN#"$M" }"
            run $c MT_X=1 -- --prompt-ids "$P2K" -n 64
            RUN=$RUN0 ;;
        long-nograph) run $c MT_GPU_GRAPH=0 MT_GPU_DEVICE_MOE=0 -- --prompt-ids "$P2K" -n 64 ;;
        long-fp32keys) run $c MT_IDX_SPLIT_KEYS=0 -- --prompt-ids "$P2K" -n 64 ;;
        long-fp8 | long-fp8b) run $c MT_X=1 -- --prompt-ids "$P2K" -n 64 --indexer fp8 ;;
        long-fp8nograph) run $c MT_GPU_GRAPH=0 -- --prompt-ids "$P2K" -n 64 --indexer fp8 ;;
    esac
    ratio $c
    t "$c"
done
for c in $RUNS; do # greedy tokens against the run before the changes
    case $c in
        long-nograph | long-graph2 | long-base | long-base2 | long-gemv16 | long-mlasmall* | long-tma0) same $c long-graph ;;
        long-fp8b | long-fp8nograph) same $c long-fp8 ;;
        long-noahead | long-stackq0* | long-kernels* | long-fp32keys) same $c long-graph ;;
        long-graph | long-fp8 | before) ;;
        *) same $c before ;;
    esac
done
t done
