/* SPDX-License-Identifier: MIT */
/*
 * gemv_timeline.cu - where a chain of FP8 GEMV launches loses time against the HBM read: every
 * block of every launch stamps the global timer when it starts, when it has passed its wait for
 * the previous launch (griddepcontrol.wait, pdl.cuh) and begins staging x, when x is staged,
 * and when it ends. Built by hand on a GPU machine, from the tree root:
 *
 *   nvcc -O3 -std=c++17 -arch=sm_90 -DMT_HAVE_CUDA -I. -Iruntime bench/gemv_timeline.cu \
 *       -o gemv_timeline && ./gemv_timeline
 *
 * For each V3.2 shape (one token) and each kernel shape below: 12 launches over copies of the
 * matrix (> 256 MB together, so nothing comes from the 60 MB L2), captured as a CUDA graph, with
 * and without programmatic dependent launch, time a launch (median of 7 replays) against a 4 GiB
 * read measured first; then the same graph with the stamps on, and per launch: first and last
 * block start, first and last wait passed, last x staged, first, median and last block end (us
 * from launch 0's first start), and the gap between the previous launch's last block end and
 * this launch's first wait passed. The weights are random bytes, x and the scales zero (the
 * time of a product does not depend on its values). Results: bench/results/kernels-h200.md.
 */
#include "kernels/gemv_wave.cuh"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "gemv_timeline: %s: %s\n", #x, cudaGetErrorString(e_));                \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define LAUNCHES 12
#define MAX_BLOCKS 1024
__device__ unsigned long long stamps[LAUNCHES][MAX_BLOCKS][4];

static __device__ __forceinline__ unsigned long long
now(void)
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

/* The dense policy, stamping around its x staging (mv_wave calls stage() right after its wait). */
struct timed : mv_dense {
    int launch;
    int on;
    __device__ void stage(uint4 *xs, int nkb) const
    {
        if (on && threadIdx.x == 0) {
            stamps[launch][blockIdx.x][1] = now();
        }
        mv_dense::stage(xs, nkb);
        if (on && threadIdx.x == 0) {
            stamps[launch][blockIdx.x][2] = now();
        }
    }
};

/* A: ring stages; W: warps a block; MINB: blocks an SM the registers must allow */
template <int A, int W, int MINB>
static __global__ void __launch_bounds__(W * 32, MINB)
timed_gemv(const timed m)
{
    extern __shared__ uint4 xs[];

    if (m.on && threadIdx.x == 0) {
        stamps[m.launch][blockIdx.x][0] = now();
    }
    mv_wave<1, MV_P, true, 1, A, timed, W>(m, xs, 0);
    __syncthreads();
    if (m.on && threadIdx.x == 0) {
        stamps[m.launch][blockIdx.x][3] = now();
    }
}

static __global__ void
fill_bytes(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 13;
        h *= 0x5bd1e995u;
        h ^= h >> 15;
        p[i] = (uint8_t)(h & 0xbe); /* never 0x7f / 0xff (NaN) */
    }
}

static __global__ void
read_all(const uint4 *__restrict__ p, size_t n16, unsigned long long *out)
{
    unsigned long long s = 0;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

    for (; i + 3 * stride < n16; i += 4 * stride) {
        uint4 a = __ldcs(p + i);
        uint4 b = __ldcs(p + i + stride);
        uint4 c = __ldcs(p + i + 2 * stride);
        uint4 d = __ldcs(p + i + 3 * stride);
        s += a.x ^ b.y ^ c.z ^ d.w;
    }
    for (; i < n16; i += stride) {
        s += __ldcs(p + i).x;
    }
    if (s == 0x123456789ull) {
        *out = s; /* never: keeps the loads */
    }
}

typedef void (*kernel_fn)(const timed);

struct variant {
    const char *name;
    kernel_fn f;
    int ring;
    int warps;
    int per_sm; /* blocks launched an SM */
    int need;   /* blocks an SM that must fit */
};

static const struct variant variants[] = {
    {"16 warps, 1 block/SM (before)", (kernel_fn)timed_gemv<4, 16, 1>, 4, 16, 1, 1},
    {"8 warps, 2 blocks/SM (now)", (kernel_fn)timed_gemv<4, 8, 2>, 4, 8, 2, 2},
    /* one block an SM where two fit: the next launch's blocks are placed beside this one's and
     * fill their rings while it runs */
    {"16 warps ring 2, 1/SM, room for 2", (kernel_fn)timed_gemv<2, 16, 2>, 2, 16, 1, 2},
    {"8 warps, 1/SM, room for 2", (kernel_fn)timed_gemv<4, 8, 2>, 4, 8, 1, 2},
};

static void
launch(kernel_fn f, int grid, int threads, size_t smem, cudaStream_t s, timed m, bool pdl)
{
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute at[1];

    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.gridDim = dim3(grid);
    cfg.blockDim = dim3(threads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = at;
    cfg.numAttrs = pdl ? 1 : 0;
    CHECK(cudaLaunchKernelEx(&cfg, f, m));
}

static void
print_stamps(int grid)
{
    static unsigned long long h[LAUNCHES][MAX_BLOCKS][4];
    unsigned long long t0 = ~0ull;
    unsigned long long prev_end = 0;

    CHECK(cudaMemcpyFromSymbol(h, stamps, sizeof(h)));
    for (int b = 0; b < grid; b++) {
        t0 = std::min(t0, h[0][b][0]);
    }
    auto us = [&](unsigned long long v) { return (double)(v - t0) / 1e3; };
    printf("    launch: start first..last | wait passed first..last | x staged last | "
           "end first..median..last | first wait - previous last end\n");
    for (int l = 0; l < LAUNCHES; l++) {
        unsigned long long lo[4];
        unsigned long long hi[4] = {0, 0, 0, 0};
        std::vector<unsigned long long> ends;
        for (int k = 0; k < 4; k++) {
            lo[k] = ~0ull;
        }
        for (int b = 0; b < grid; b++) {
            for (int k = 0; k < 4; k++) {
                lo[k] = std::min(lo[k], h[l][b][k]);
                hi[k] = std::max(hi[k], h[l][b][k]);
            }
            ends.push_back(h[l][b][3]);
        }
        std::sort(ends.begin(), ends.end());
        printf("    %2d: %7.2f..%7.2f | %7.2f..%7.2f | %7.2f | %7.2f..%7.2f..%7.2f | %+.2f\n", l,
               us(lo[0]), us(hi[0]), us(lo[1]), us(hi[1]), us(hi[2]), us(lo[3]),
               us(ends[grid / 2]), us(hi[3]), prev_end != 0 ? us(lo[1]) - us(prev_end) : 0.0);
        prev_end = hi[3];
    }
}

int
main(void)
{
    static const int shapes[][2] = {
        {18432, 7168}, {24576, 1536}, {32768, 512}, {7168, 16384}, {7168, 18432}};
    int sms = 0;
    cudaStream_t s;
    cudaEvent_t e0, e1;

    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CHECK(cudaEventCreate(&e0));
    CHECK(cudaEventCreate(&e1));

    /* the ceiling: 4 GiB read by 4 blocks of 512 threads an SM, best of 5 */
    size_t big_bytes = 4ull << 30;
    uint4 *big;
    unsigned long long *sink;
    CHECK(cudaMalloc(&big, big_bytes));
    CHECK(cudaMalloc(&sink, 8));
    fill_bytes<<<4 * sms, 512>>>((uint8_t *)big, big_bytes, 7);
    float best = 1e9f;
    for (int r = 0; r < 5; r++) {
        float ms;
        CHECK(cudaEventRecord(e0, s));
        read_all<<<4 * sms, 512, 0, s>>>(big, big_bytes / 16, sink);
        CHECK(cudaEventRecord(e1, s));
        CHECK(cudaEventSynchronize(e1));
        CHECK(cudaEventElapsedTime(&ms, e0, e1));
        best = std::min(best, ms);
    }
    CHECK(cudaFree(big));
    double ceiling = big_bytes / (best * 1e-3) / 1e9;
    printf("HBM read: %.1f GB/s (4 GiB, best of 5)\n", ceiling);

    for (auto &sh : shapes) {
        int rows = sh[0];
        int cols = sh[1];
        size_t w_bytes = (size_t)rows * cols;
        size_t s_bytes = (size_t)((rows + 127) / 128) * ((cols + 127) / 128) * 4;
        int copies = (int)((256ull << 20) / w_bytes) + 2;
        std::vector<uint8_t *> W(copies);
        std::vector<float *> S(copies);
        float *x;
        float *y;
        for (int c = 0; c < copies; c++) {
            CHECK(cudaMalloc(&W[c], w_bytes));
            CHECK(cudaMalloc(&S[c], s_bytes));
            fill_bytes<<<4 * sms, 256>>>(W[c], w_bytes, c);
            CHECK(cudaMemset(S[c], 0, s_bytes));
        }
        CHECK(cudaMalloc(&x, cols * sizeof(float)));
        CHECK(cudaMemset(x, 0, cols * sizeof(float)));
        CHECK(cudaMalloc(&y, (size_t)LAUNCHES * rows * sizeof(float)));
        CHECK(cudaDeviceSynchronize());
        double ideal = (w_bytes + s_bytes) / ceiling / 1e3;
        printf("\n%d x %d (%.1f MB), %d copies: %.2f us a launch at the HBM read\n", rows, cols,
               (w_bytes + s_bytes) / 1e6, copies, ideal);
        for (const struct variant &v : variants) {
            size_t smem = MV_XS_BYTES(1, cols) + MV_RING_BYTES_W(v.ring, v.warps);
            int fit = 0;
            if (cudaFuncSetAttribute(v.f, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)smem) != cudaSuccess) {
                (void)cudaGetLastError();
            } else {
                CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, v.f, v.warps * 32,
                                                                    smem));
            }
            if (fit < v.need) {
                printf("  %-36s does not fit (%zu bytes of shared memory a block)\n", v.name,
                       smem);
                continue;
            }
            int grid = sms * v.per_sm;
            for (int on = 0; on < 2; on++) {
                for (int pdl = 1; pdl >= on; pdl--) {
                    cudaGraph_t g;
                    cudaGraphExec_t ge;
                    std::vector<float> t;
                    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
                    for (int l = 0; l < LAUNCHES; l++) {
                        timed m;
                        m.W = W[l % copies];
                        m.Sc = S[l % copies];
                        m.rows = rows;
                        m.cols = cols;
                        m.x = x;
                        m.nt = 1;
                        m.y = y + (size_t)l * rows;
                        m.up = nullptr;
                        m.launch = l;
                        m.on = on;
                        launch(v.f, grid, v.warps * 32, smem, s, m, pdl);
                    }
                    CHECK(cudaStreamEndCapture(s, &g));
                    CHECK(cudaGraphInstantiate(&ge, g, 0));
                    for (int r = 0; r < 7; r++) {
                        float ms;
                        CHECK(cudaEventRecord(e0, s));
                        CHECK(cudaGraphLaunch(ge, s));
                        CHECK(cudaEventRecord(e1, s));
                        CHECK(cudaEventSynchronize(e1));
                        CHECK(cudaEventElapsedTime(&ms, e0, e1));
                        t.push_back(ms * 1e3f / LAUNCHES);
                    }
                    std::sort(t.begin(), t.end());
                    printf("  %-36s %s%s: %6.2f us a launch, %5.1f%% of the HBM read\n", v.name,
                           pdl ? "graph + PDL" : "graph", on ? ", stamped" : "", t[3],
                           100.0 * ideal / t[3]);
                    if (on) {
                        print_stamps(grid);
                    }
                    CHECK(cudaGraphExecDestroy(ge));
                    CHECK(cudaGraphDestroy(g));
                }
            }
        }
        for (int c = 0; c < copies; c++) {
            CHECK(cudaFree(W[c]));
            CHECK(cudaFree(S[c]));
        }
        CHECK(cudaFree(x));
        CHECK(cudaFree(y));
    }
    return 0;
}
