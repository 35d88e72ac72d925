#!/bin/bash
# gpu_verify_h200.sh - one call that checks a tree on the GPU test machine: build, every GPU test
# (tests/test_gpu_*; the engine's again on the cp.async ring and without CUDA graphs), the serve
# tests whose paths differ on the GPU engine, the kernel benchmark's quick table and its DSA
# rows, and the AMX expert test on that machine's CPU. Meant
# as a session's first call after changes that no GPU has run (a merge, review fixes): about 4
# minutes warm, less than the decode and plan scripts.
#
# Run from the tree root on the GPU machine with $OUT set, the Debian packages of
# ../shared/device carried as .gpu/deps (deps.sh) and libmicrohttpd's in /opt/moetier-deps:
#   bash bench/gpu_verify_h200.sh      (SKIP_BENCH=1: tests only; ARCH=sm_90 by default)
# Everything lands in $OUT/results.tgz (the machine sends back only a few files): timeline.txt,
# build.log, check.log with each test's log, check-summary.txt, bench-*.txt.
T0=$(date +%s)
R=$OUT/r
mkdir -p "$R"
t() { echo "[t+$(($(date +%s) - T0))s] $*" | tee -a "$R/timeline.txt"; tar -C "$OUT" -czf "$OUT/results.tgz" r 2>/dev/null; }
date -u > "$R/date.txt"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$R/gpu.txt" 2>&1
jq --version >> "$R/gpu.txt" 2>&1 # the shell tests' checks run on that machine's jq

if [ -f .gpu/deps/deps.sh ]; then
    . .gpu/deps/deps.sh > /dev/null 2>&1
fi
D=/opt/moetier-deps/usr
t build
(./autogen.sh && ./configure -q --with-cuda-arch="${ARCH:-sm_90}" MHD_CFLAGS="-I$D/include" \
    MHD_LIBS="-L$D/lib/x86_64-linux-gnu -lmicrohttpd" && make -j16) > "$R/build.log" 2>&1 ||
    { tail -30 "$R/build.log"; t "build failed"; exit 1; }
TESTS_GPU=$(cd tests && ls test_gpu_*.c test_gpu_*.sh 2>/dev/null | sed 's/\.c$//; s|^|tests/|' | tr '\n' ' ')
TESTS_GPU="$TESTS_GPU tests/test_cublas_lazy"
make -j16 $TESTS_GPU tests/test_cpu_experts bench/bench_kernels >> "$R/build.log" 2>&1
t "built; GPU tests: $TESTS_GPU"

timeout 300 make -j4 check TESTS="$TESTS_GPU" > "$R/check.log" 2>&1
grep -E '^# (TOTAL|PASS|SKIP|FAIL|ERROR)|^FAIL|^ERROR' "$R/check.log" | tee "$R/check-summary.txt"
for f in $TESTS_GPU; do cp "$f.log" "$R/" 2>/dev/null; done
t "GPU tests done"

# the portable ring (cp.async, every sm_80+ GPU) under the engine: sm_90+ takes the TMA ring by
# default, so otherwise only test_gpu_gemv would run it here
for f in tests/test_gpu_engine tests/test_gpu_step tests/test_gpu_moe; do
    MT_GEMV_TMA=0 timeout 200 "./$f" > "$R/${f#tests/}-tma0.log" 2>&1
    echo "MT_GEMV_TMA=0 $f: rc $?, $(grep -c '^ok' "$R/${f#tests/}-tma0.log") ok," \
        "$(grep -c '^not ok' "$R/${f#tests/}-tma0.log") not ok" | tee -a "$R/check-summary.txt"
done
t "the cp.async ring under the engine done"

# the engine without CUDA graphs (every decode step launched kernel by kernel: the path of a
# model whose experts are not all on the GPU)
L=$R/test_gpu_engine-nograph.log
MT_GPU_GRAPH=0 timeout 200 ./tests/test_gpu_engine > "$L" 2>&1
echo "MT_GPU_GRAPH=0 tests/test_gpu_engine: rc $?, $(grep -c '^ok' "$L") ok," \
    "$(grep -c '^not ok' "$L") not ok" | tee -a "$R/check-summary.txt"
t "the engine without graphs done"

# the server on the GPU engine: the paths that take each step's logits to the host instead of
# the GPU's greedy pick (logprobs, penalties and biases, JSON mode, forced tool calls, several
# choices and prompts); each test compares against `moetier run` on the same device
MOETIER_DEVICE=gpu timeout 300 make check TESTS="tests/test_serve_tools.sh \
    tests/test_serve_logprobs.sh tests/test_serve_sampling.sh tests/test_serve_json.sh" \
    > "$R/serve-gpu.log" 2>&1
grep -E '^# (TOTAL|PASS|SKIP|FAIL|ERROR)|^FAIL|^ERROR' "$R/serve-gpu.log" |
    sed 's/^/serve on the GPU: /' | tee -a "$R/check-summary.txt"
for f in tools logprobs sampling json; do cp "tests/test_serve_$f.sh.log" "$R/" 2>/dev/null; done
t "serve tests on the GPU engine done"

# a CPU-only start of a CUDA build (cuBLAS is opened on first use: kernels/cublas_lazy.c), and
# every allocation site failed once on this build, the server's sweep included
/usr/bin/time -f "moetier --help on the CUDA build: %e s, %M KB resident" ./moetier --help \
    2>&1 >/dev/null | tee -a "$R/check-summary.txt"
timeout 400 make check TESTS=tests/test_alloc_faults.sh \
    > "$R/alloc-faults.log" 2>&1
grep -E '^# (TOTAL|PASS|SKIP|FAIL|ERROR)|^FAIL|^ERROR' "$R/alloc-faults.log" |
    sed 's/^/alloc faults: /' | tee -a "$R/check-summary.txt"
cp tests/test_alloc_faults.sh.log "$R/" 2>/dev/null
t "allocation faults done"

# the AMX kernels run only on a CPU that has them (this machine's Xeon; the test takes the
# best family the CPU has, and every AMX setting there)
timeout 240 ./tests/test_cpu_experts > "$R/cpu-experts-amx.log" 2>&1
echo "rc=$?" >> "$R/cpu-experts-amx.log"
grep -c '^ok' "$R/cpu-experts-amx.log" | sed 's/^/ok lines: /' >> "$R/check-summary.txt"
grep '^not ok' "$R/cpu-experts-amx.log" >> "$R/check-summary.txt"
t "AMX expert test done"

if [ "${SKIP_BENCH:-0}" != 1 ]; then
    timeout 120 ./bench/bench_kernels --quick > "$R/bench-quick.txt" 2>&1
    timeout 120 ./bench/bench_kernels --dsa > "$R/bench-dsa.txt" 2>&1
    t "benchmarks done"
fi
t end
