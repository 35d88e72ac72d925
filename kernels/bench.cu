/* SPDX-License-Identifier: MIT */
/*
 * bench.cu - the GPU and PCIe tiers of `moetier bench`: HBM read, device-to-device copy,
 * pinned host<->device copies at several sizes, both directions at once, and a BF16 GEMM rate.
 *
 * The one idea: time only what the runtime will do, on its own stream, with CUDA events, and
 * check the bytes before trusting the clock. Each measurement takes one warm-up, then `reps`
 * timed repetitions (each a batch of back-to-back operations; the time per operation is
 * reported), with the median and p90 (STYLE.md). Buffers are far larger than the
 * 50 MB L2, so no flush is needed between runs. HBM read is a plain kernel summing 16-byte loads
 * (what a memory-bound GEMV does), not cudaMemcpy, because a copy both reads and writes.
 */
#include <config.h>

#include "kernels/kernels.h"
#include "kernels/cuda_check.cuh"

#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#define READ_THREADS 512
#define READ_BLOCKS_PER_SM 4
#define FILL_THREADS 256
/* Device-memory operations timed per repetition, back to back: one operation alone between two
 * events runs measurably slower (the GPU idles while the host waits, and each start ramps up),
 * and the runtime's reads come back to back too. */
#define DEVICE_BATCH 4

/* out[0] += sum of the n 32-bit words of p (as 64-bit), read as n/4 16-byte loads. */
static __global__ void
hbm_read_kernel(const uint4 *__restrict__ p, size_t n16, unsigned long long *out)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned long long acc = 0;

    /* Four independent loads in flight per thread hide the memory latency. */
    for (; i + 3 * stride < n16; i += 4 * stride) {
        uint4 a = __ldcs(p + i);
        uint4 b = __ldcs(p + i + stride);
        uint4 c = __ldcs(p + i + 2 * stride);
        uint4 d = __ldcs(p + i + 3 * stride);

        acc += (unsigned long long)a.x + a.y + a.z + a.w;
        acc += (unsigned long long)b.x + b.y + b.z + b.w;
        acc += (unsigned long long)c.x + c.y + c.z + c.w;
        acc += (unsigned long long)d.x + d.y + d.z + d.w;
    }
    for (; i < n16; i += stride) {
        uint4 a = __ldcs(p + i);

        acc += (unsigned long long)a.x + a.y + a.z + a.w;
    }
    for (int o = 16; o > 0; o >>= 1) {
        acc += __shfl_down_sync(0xffffffffu, acc, o);
    }
    if ((threadIdx.x & 31) == 0) {
        atomicAdd(out, acc);
    }
}

/* p[i] = pattern word i (the host reproduces it to check reads and copies). */
static __host__ __device__ uint32_t
pattern_word(size_t i, uint32_t seed)
{
    uint32_t x = (uint32_t)i * 2654435761u + seed;

    x ^= x >> 15;
    return x * 2246822519u;
}

static __global__ void
fill_kernel(uint32_t *p, size_t n, uint32_t seed)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

    if (i >= n) {
        return;
    }
    p[i] = pattern_word(i, seed);
}

/* Random-ish bf16 in [-1, 1): GEMM rates on zeros are higher than on real data. */
static __global__ void
fill_bf16_kernel(__nv_bfloat16 *p, size_t n, uint32_t seed)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

    if (i >= n) {
        return;
    }
    p[i] = __float2bfloat16((float)(pattern_word(i, seed) >> 8) * (2.0f / 16777216.0f) - 1.0f);
}

static mt_status_t
fill(uint32_t *p, size_t n_words, uint32_t seed, cudaStream_t s)
{
    fill_kernel<<<(unsigned)MT_CEIL_DIV(n_words, FILL_THREADS), FILL_THREADS, 0, s>>>(p, n_words,
                                                                                      seed);
    return mt_cuda_launched("fill", s);
}

static int
read_blocks(int dev)
{
    int sms = 0;

    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    return MT_MAX(sms, 1) * READ_BLOCKS_PER_SM;
}

/* Launch the read kernel over n_bytes (a multiple of 16) of p, adding into *d_sum. */
static mt_status_t
hbm_read(const void *p, size_t n_bytes, unsigned long long *d_sum, int blocks, cudaStream_t s)
{
    hbm_read_kernel<<<blocks, READ_THREADS, 0, s>>>((const uint4 *)p, n_bytes / 16, d_sum);
    return mt_cuda_launched("hbm_read", s);
}

extern "C" mt_status_t
mt_gpu_read_launch(const void *p, size_t bytes, int blocks_per_sm, unsigned long long *sum,
                   struct CUstream_st *s)
{
    int dev = 0;

    if (bytes % 16 != 0 || blocks_per_sm < 1) {
        return mt_fail(MT_ERR_INVAL, 0, "read launch: %zu bytes, %d blocks an SM", bytes,
                       blocks_per_sm);
    }
    cudaGetDevice(&dev);
    return hbm_read(p, bytes, sum, read_blocks(dev) / READ_BLOCKS_PER_SM * blocks_per_sm, s);
}

/*
 * The read kernel with a GEMV's order of bytes (kernels/gemv_wave.cuh): one block of 512 threads
 * a SM takes rows [b rows / blocks, (b + 1) rows / blocks) of a row-major matrix; a unit is 2 KB
 * of rb rows x 2048 / rb bytes (rb 16: the GEMV's step, 128 bytes of 16 rows; 4: 512 bytes of 4
 * rows; 1: 2 KB of one row), numbered row group by row group, and each warp takes an equal
 * contiguous range of the block's units, 4 units (256 bytes a thread) in flight. Same bytes,
 * same shares as the GEMV: what differs between the rb values is only how many DRAM rows a
 * 2 KB step touches.
 */
template <int RB>
static __global__ void __launch_bounds__(512, 1)
read_rows_kernel(const uint8_t *__restrict__ p, int64_t rows, int64_t row_bytes,
                 unsigned long long *out)
{
    constexpr int W = 2048 / RB;  /* bytes of a row in a unit */
    constexpr int TPR = 32 / RB;  /* threads a row, 64 bytes each */
    int64_t rb0 = (int64_t)blockIdx.x * rows / gridDim.x;
    int64_t rb1 = (int64_t)(blockIdx.x + 1) * rows / gridDim.x;
    int64_t nst = row_bytes / W;
    int64_t units = (rb1 - rb0 + RB - 1) / RB * nst;
    int w = threadIdx.x >> 5;
    int lane = threadIdx.x & 31;
    int64_t a = w * units / 16;
    int64_t e = (w + 1) * units / 16;
    unsigned long long acc = 0;

    for (int64_t u0 = a; u0 < e; u0 += 4) {
        uint4 v[4][4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int64_t u = u0 + j;
            int64_t row = rb0 + u / nst * RB + lane / TPR;
            const uint4 *q = reinterpret_cast<const uint4 *>(p + row * row_bytes +
                                                             (u % nst) * W + (lane % TPR) * 64);
            bool ok = u < e && row < rb1;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                v[j][k] = ok ? __ldcs(q + k) : make_uint4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int j = 0; j < 4; j++) {
#pragma unroll
            for (int k = 0; k < 4; k++) {
                acc += (unsigned long long)v[j][k].x + v[j][k].y + v[j][k].z + v[j][k].w;
            }
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        acc += __shfl_down_sync(0xffffffffu, acc, o);
    }
    if (lane == 0) {
        atomicAdd(out, acc);
    }
}

extern "C" mt_status_t
mt_gpu_read_rows_launch(const void *p, int64_t rows, int64_t row_bytes, int rb,
                        unsigned long long *sum, struct CUstream_st *s)
{
    int dev = 0;

    if ((rb != 16 && rb != 4 && rb != 1) || rows < 1 || row_bytes % 2048 != 0 ||
        (uintptr_t)p % 16 != 0) {
        return mt_fail(MT_ERR_INVAL, 0, "read rows launch: %lld rows of %lld bytes, %d rows a "
                       "unit (16, 4 or 1; rows of whole 2 KiB)", (long long)rows,
                       (long long)row_bytes, rb);
    }
    cudaGetDevice(&dev);
    unsigned blocks = (unsigned)(read_blocks(dev) / READ_BLOCKS_PER_SM);
    const uint8_t *b = (const uint8_t *)p;
    if (rb == 16) {
        read_rows_kernel<16><<<blocks, 512, 0, s>>>(b, rows, row_bytes, sum);
    } else if (rb == 4) {
        read_rows_kernel<4><<<blocks, 512, 0, s>>>(b, rows, row_bytes, sum);
    } else {
        read_rows_kernel<1><<<blocks, 512, 0, s>>>(b, rows, row_bytes, sum);
    }
    return mt_cuda_launched("read_rows", s);
}

/* Median and p90 of the times (ms), and GB/s for `bytes` moved per repetition. */
static void
summarize(std::vector<float> &ms, double bytes, struct mt_gpu_bench_timing *out)
{
    size_t n = ms.size();

    std::sort(ms.begin(), ms.end());
    out->median_ms = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
    out->p90_ms = ms[std::min(n - 1, (size_t)(0.9 * n + 0.5))];
    out->gbps = bytes / (out->median_ms * 1e-3) * 1e-9;
    out->tflops = 0.0;
}

/* Events, a stream, and the unwinding of both; every benchmark below starts with one. */
struct timer {
    cudaStream_t s;
    cudaEvent_t e0;
    cudaEvent_t e1;
};

static mt_status_t
timer_init(struct timer *t, int dev)
{
    mt_status_t st;

    memset(t, 0, sizeof(*t));
    st = MT_CUDA(cudaSetDevice(dev));
    if (st == MT_OK) {
        st = MT_CUDA(cudaStreamCreateWithFlags(&t->s, cudaStreamNonBlocking));
    }
    if (st == MT_OK) {
        st = MT_CUDA(cudaEventCreate(&t->e0));
    }
    if (st == MT_OK) {
        st = MT_CUDA(cudaEventCreate(&t->e1));
    }
    return st;
}

static void
timer_fini(struct timer *t)
{
    if (t->e1 != NULL) {
        cudaEventDestroy(t->e1);
    }
    if (t->e0 != NULL) {
        cudaEventDestroy(t->e0);
    }
    if (t->s != NULL) {
        cudaStreamDestroy(t->s);
    }
}

static mt_status_t
timer_elapsed(struct timer *t, float *ms_out)
{
    mt_status_t st = MT_CUDA(cudaEventSynchronize(t->e1));

    if (st == MT_OK) {
        st = MT_CUDA(cudaEventElapsedTime(ms_out, t->e0, t->e1));
    }
    return st;
}

/* ---- correctness ------------------------------------------------------------------------- */

extern "C" mt_status_t
mt_gpu_bench_selftest(int dev)
{
    const size_t n_words = (1u << 20) + 12;        /* not a multiple of the grid */
    const size_t sizes[2] = {64u << 10, 4u << 20}; /* small and large pinned copies */
    struct timer t;
    uint32_t *d_a = NULL;
    uint32_t *d_b = NULL;
    uint32_t *h = NULL;
    unsigned long long *d_sum = NULL;
    unsigned long long got = 0;
    unsigned long long want = 0;
    mt_status_t st;

    st = timer_init(&t, dev);
    if (st != MT_OK) {
        goto out_timer;
    }
    if ((st = MT_CUDA(cudaMalloc(&d_a, n_words * 4))) != MT_OK ||
        (st = MT_CUDA(cudaMalloc(&d_b, n_words * 4))) != MT_OK ||
        (st = MT_CUDA(cudaMalloc(&d_sum, sizeof(*d_sum)))) != MT_OK ||
        (st = MT_CUDA(cudaHostAlloc(&h, n_words * 4, cudaHostAllocDefault))) != MT_OK) {
        goto out_free;
    }
    /* 1. the read kernel sums exactly what the host computes */
    for (size_t i = 0; i < n_words; i++) {
        want += pattern_word(i, 7);
    }
    if ((st = fill(d_a, n_words, 7, t.s)) != MT_OK ||
        (st = MT_CUDA(cudaMemsetAsync(d_sum, 0, sizeof(*d_sum), t.s))) != MT_OK ||
        (st = hbm_read(d_a, (n_words * 4) & ~(size_t)15, d_sum, read_blocks(dev), t.s)) != MT_OK ||
        (st = MT_CUDA(cudaMemcpyAsync(&got, d_sum, sizeof(got), cudaMemcpyDeviceToHost, t.s))) !=
            MT_OK ||
        (st = MT_CUDA(cudaStreamSynchronize(t.s))) != MT_OK) {
        goto out_free;
    }
    for (size_t i = ((n_words * 4) & ~(size_t)15) / 4; i < n_words; i++) {
        got += pattern_word(i, 7); /* the tail the 16-byte kernel does not see */
    }
    if (got != want) {
        st = mt_fail(MT_ERR_INTERNAL, 0, "gpu self-check: read kernel sum %llu, expected %llu", got,
                     want);
        goto out_free;
    }
    /* 2. device-to-device, then device-to-host at each size, byte for byte */
    if ((st = MT_CUDA(cudaMemcpyAsync(d_b, d_a, n_words * 4, cudaMemcpyDeviceToDevice, t.s))) !=
            MT_OK ||
        (st = MT_CUDA(cudaMemcpyAsync(h, d_b, n_words * 4, cudaMemcpyDeviceToHost, t.s))) !=
            MT_OK ||
        (st = MT_CUDA(cudaStreamSynchronize(t.s))) != MT_OK) {
        goto out_free;
    }
    for (size_t i = 0; i < n_words; i++) {
        if (h[i] != pattern_word(i, 7)) {
            st = mt_fail(MT_ERR_INTERNAL, 0, "gpu self-check: copied word %zu is %u, expected %u",
                         i, h[i], pattern_word(i, 7));
            goto out_free;
        }
    }
    /* 3. host-to-device at a small and a large size, read back through the kernel sum */
    for (int k = 0; k < 2; k++) {
        size_t words = sizes[k] / 4;

        want = 0;
        for (size_t i = 0; i < words; i++) {
            h[i] = pattern_word(i, 99 + k);
            want += h[i];
        }
        if ((st = MT_CUDA(cudaMemcpyAsync(d_b, h, sizes[k], cudaMemcpyHostToDevice, t.s))) !=
                MT_OK ||
            (st = MT_CUDA(cudaMemsetAsync(d_sum, 0, sizeof(*d_sum), t.s))) != MT_OK ||
            (st = hbm_read(d_b, sizes[k], d_sum, read_blocks(dev), t.s)) != MT_OK ||
            (st = MT_CUDA(cudaMemcpyAsync(&got, d_sum, sizeof(got), cudaMemcpyDeviceToHost,
                                          t.s))) != MT_OK ||
            (st = MT_CUDA(cudaStreamSynchronize(t.s))) != MT_OK) {
            goto out_free;
        }
        if (got != want) {
            st = mt_fail(MT_ERR_INTERNAL, 0,
                         "gpu self-check: %zu-byte host-to-device copy sums "
                         "to %llu, expected %llu",
                         sizes[k], got, want);
            goto out_free;
        }
    }
    st = MT_OK;

out_free:
    cudaFreeHost(h);
    cudaFree(d_sum);
    cudaFree(d_b);
    cudaFree(d_a);
out_timer:
    timer_fini(&t);
    return st;
}

/* ---- device memory ------------------------------------------------------------------------ */

extern "C" mt_status_t
mt_gpu_bench_hbm_read(int dev, size_t bytes, int reps, struct mt_gpu_bench_timing *out)
{
    struct timer t;
    void *d = NULL;
    unsigned long long *d_sum = NULL;
    std::vector<float> ms;
    mt_status_t st;

    if (bytes < (1u << 20) || bytes % 16 != 0 || reps < 1) {
        return mt_fail(MT_ERR_INVAL, 0, "hbm read: %zu bytes x %d reps is not a valid size", bytes,
                       reps);
    }
    st = timer_init(&t, dev);
    if (st != MT_OK) {
        goto out_timer;
    }
    if ((st = MT_CUDA(cudaMalloc(&d, bytes))) != MT_OK ||
        (st = MT_CUDA(cudaMalloc(&d_sum, sizeof(*d_sum)))) != MT_OK ||
        (st = fill((uint32_t *)d, bytes / 4, 1, t.s)) != MT_OK ||
        (st = MT_CUDA(cudaMemsetAsync(d_sum, 0, sizeof(*d_sum), t.s))) != MT_OK) {
        goto out_free;
    }
    for (int r = -1; r < reps; r++) {
        float el;

        if ((st = MT_CUDA(cudaEventRecord(t.e0, t.s))) != MT_OK) {
            goto out_free;
        }
        for (int i = 0; i < DEVICE_BATCH; i++) {
            if ((st = hbm_read(d, bytes, d_sum, read_blocks(dev), t.s)) != MT_OK) {
                goto out_free;
            }
        }
        if ((st = MT_CUDA(cudaEventRecord(t.e1, t.s))) != MT_OK ||
            (st = timer_elapsed(&t, &el)) != MT_OK) {
            goto out_free;
        }
        if (r >= 0) {
            ms.push_back(el / DEVICE_BATCH);
        }
    }
    summarize(ms, (double)bytes, out);

out_free:
    cudaFree(d_sum);
    cudaFree(d);
out_timer:
    timer_fini(&t);
    return st;
}

extern "C" mt_status_t
mt_gpu_bench_d2d_copy(int dev, size_t bytes, int reps, struct mt_gpu_bench_timing *out)
{
    struct timer t;
    void *a = NULL;
    void *b = NULL;
    std::vector<float> ms;
    mt_status_t st;

    if (bytes == 0 || reps < 1) {
        return mt_fail(MT_ERR_INVAL, 0, "d2d copy: %zu bytes x %d reps", bytes, reps);
    }
    st = timer_init(&t, dev);
    if (st != MT_OK) {
        goto out_timer;
    }
    if ((st = MT_CUDA(cudaMalloc(&a, bytes))) != MT_OK ||
        (st = MT_CUDA(cudaMalloc(&b, bytes))) != MT_OK ||
        (st = MT_CUDA(cudaMemsetAsync(a, 1, bytes, t.s))) != MT_OK) {
        goto out_free;
    }
    for (int r = -1; r < reps; r++) {
        float el;

        if ((st = MT_CUDA(cudaEventRecord(t.e0, t.s))) != MT_OK) {
            goto out_free;
        }
        for (int i = 0; i < DEVICE_BATCH; i++) {
            st = MT_CUDA(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, t.s));
            if (st != MT_OK) {
                goto out_free;
            }
        }
        if ((st = MT_CUDA(cudaEventRecord(t.e1, t.s))) != MT_OK ||
            (st = timer_elapsed(&t, &el)) != MT_OK) {
            goto out_free;
        }
        if (r >= 0) {
            ms.push_back(el / DEVICE_BATCH);
        }
    }
    summarize(ms, 2.0 * (double)bytes, out); /* read + write */

out_free:
    cudaFree(b);
    cudaFree(a);
out_timer:
    timer_fini(&t);
    return st;
}

/* ---- host <-> device ---------------------------------------------------------------------- */

/* How many back-to-back copies of `bytes` one timed repetition holds: small copies are batched
 * so the event resolution (~0.5 us) and launch cost do not dominate. */
static int
batch_of(size_t bytes)
{
    return (int)MT_MIN(MT_MAX((size_t)1, ((size_t)64 << 20) / bytes), (size_t)256);
}

extern "C" mt_status_t
mt_gpu_bench_pcie(int dev, enum mt_gpu_copy_dir dir, const size_t *sizes, int n_sizes, int reps,
                  struct mt_gpu_bench_timing *out)
{
    struct timer t;
    size_t max_bytes = 0;
    void *h = NULL;
    void *d = NULL;
    mt_status_t st;

    for (int k = 0; k < n_sizes; k++) {
        max_bytes = MT_MAX(max_bytes, sizes[k]);
    }
    if (n_sizes < 1 || max_bytes == 0 || reps < 1) {
        return mt_fail(MT_ERR_INVAL, 0, "pcie copy: no sizes or no repetitions");
    }
    st = timer_init(&t, dev);
    if (st != MT_OK) {
        goto out_timer;
    }
    if ((st = MT_CUDA(cudaHostAlloc(&h, max_bytes, cudaHostAllocDefault))) != MT_OK ||
        (st = MT_CUDA(cudaMalloc(&d, max_bytes))) != MT_OK) {
        goto out_free;
    }
    memset(h, 3, max_bytes); /* touch every pinned page before timing */
    for (int k = 0; k < n_sizes; k++) {
        int batch = batch_of(sizes[k]);
        std::vector<float> ms;

        for (int r = -1; r < reps; r++) {
            float el;

            if ((st = MT_CUDA(cudaEventRecord(t.e0, t.s))) != MT_OK) {
                goto out_free;
            }
            for (int i = 0; i < batch; i++) {
                st = dir == MT_GPU_COPY_H2D
                         ? MT_CUDA(cudaMemcpyAsync(d, h, sizes[k], cudaMemcpyHostToDevice, t.s))
                         : MT_CUDA(cudaMemcpyAsync(h, d, sizes[k], cudaMemcpyDeviceToHost, t.s));
                if (st != MT_OK) {
                    goto out_free;
                }
            }
            if ((st = MT_CUDA(cudaEventRecord(t.e1, t.s))) != MT_OK ||
                (st = timer_elapsed(&t, &el)) != MT_OK) {
                goto out_free;
            }
            if (r >= 0) {
                ms.push_back(el / (float)batch);
            }
        }
        summarize(ms, (double)sizes[k], &out[k]);
    }

out_free:
    cudaFree(d);
    cudaFreeHost(h);
out_timer:
    timer_fini(&t);
    return st;
}

extern "C" mt_status_t
mt_gpu_bench_pcie_bidir(int dev, size_t bytes, int reps, struct mt_gpu_bench_timing *out)
{
    struct timer t;
    cudaStream_t s2 = NULL;
    cudaEvent_t e2 = NULL;
    void *h_in = NULL;
    void *h_out = NULL;
    void *d_in = NULL;
    void *d_out = NULL;
    int batch = MT_MAX(batch_of(bytes), 4);
    std::vector<float> ms;
    mt_status_t st;

    if (bytes == 0 || reps < 1) {
        return mt_fail(MT_ERR_INVAL, 0, "bidirectional copy: %zu bytes x %d reps", bytes, reps);
    }
    st = timer_init(&t, dev);
    if (st != MT_OK) {
        goto out_timer;
    }
    if ((st = MT_CUDA(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking))) != MT_OK ||
        (st = MT_CUDA(cudaEventCreate(&e2))) != MT_OK ||
        (st = MT_CUDA(cudaHostAlloc(&h_in, bytes, cudaHostAllocDefault))) != MT_OK ||
        (st = MT_CUDA(cudaHostAlloc(&h_out, bytes, cudaHostAllocDefault))) != MT_OK ||
        (st = MT_CUDA(cudaMalloc(&d_in, bytes))) != MT_OK ||
        (st = MT_CUDA(cudaMalloc(&d_out, bytes))) != MT_OK) {
        goto out_free;
    }
    memset(h_in, 5, bytes);
    memset(h_out, 6, bytes);
    for (int r = -1; r < reps; r++) {
        float el;

        /* Both streams start at e0 (on stream 1); stream 1 ends after stream 2's e2. */
        if ((st = MT_CUDA(cudaEventRecord(t.e0, t.s))) != MT_OK ||
            (st = MT_CUDA(cudaStreamWaitEvent(s2, t.e0, 0))) != MT_OK) {
            goto out_free;
        }
        for (int i = 0; i < batch; i++) {
            if ((st = MT_CUDA(cudaMemcpyAsync(d_in, h_in, bytes, cudaMemcpyHostToDevice, t.s))) !=
                    MT_OK ||
                (st = MT_CUDA(cudaMemcpyAsync(h_out, d_out, bytes, cudaMemcpyDeviceToHost, s2))) !=
                    MT_OK) {
                goto out_free;
            }
        }
        if ((st = MT_CUDA(cudaEventRecord(e2, s2))) != MT_OK ||
            (st = MT_CUDA(cudaStreamWaitEvent(t.s, e2, 0))) != MT_OK ||
            (st = MT_CUDA(cudaEventRecord(t.e1, t.s))) != MT_OK ||
            (st = timer_elapsed(&t, &el)) != MT_OK) {
            goto out_free;
        }
        if (r >= 0) {
            ms.push_back(el / (float)batch);
        }
    }
    summarize(ms, 2.0 * (double)bytes, out); /* both directions' bytes */

out_free:
    cudaFree(d_out);
    cudaFree(d_in);
    cudaFreeHost(h_out);
    cudaFreeHost(h_in);
    if (e2 != NULL) {
        cudaEventDestroy(e2);
    }
    if (s2 != NULL) {
        cudaStreamDestroy(s2);
    }
out_timer:
    timer_fini(&t);
    return st;
}

/* ---- tensor cores ------------------------------------------------------------------------- */

extern "C" mt_status_t
mt_gpu_bench_bf16_gemm(int dev, int n, int reps, struct mt_gpu_bench_timing *out)
{
    struct timer t;
    cublasHandle_t h = NULL;
    __nv_bfloat16 *a = NULL;
    __nv_bfloat16 *b = NULL;
    __nv_bfloat16 *c = NULL;
    size_t elems = (size_t)n * n;
    const float one = 1.0f;
    const float zero = 0.0f;
    std::vector<float> ms;
    cublasStatus_t cst;
    mt_status_t st;

    if (n < 256 || n % 64 != 0 || reps < 1) {
        return mt_fail(MT_ERR_INVAL, 0, "bf16 gemm: n %d must be a multiple of 64, >= 256", n);
    }
    st = timer_init(&t, dev);
    if (st != MT_OK) {
        goto out_timer;
    }
    if ((st = MT_CUDA(cudaMalloc(&a, elems * 2))) != MT_OK ||
        (st = MT_CUDA(cudaMalloc(&b, elems * 2))) != MT_OK ||
        (st = MT_CUDA(cudaMalloc(&c, elems * 2))) != MT_OK) {
        goto out_free;
    }
    fill_bf16_kernel<<<(unsigned)MT_CEIL_DIV(elems, FILL_THREADS), FILL_THREADS, 0, t.s>>>(a, elems,
                                                                                           11);
    fill_bf16_kernel<<<(unsigned)MT_CEIL_DIV(elems, FILL_THREADS), FILL_THREADS, 0, t.s>>>(b, elems,
                                                                                           12);
    if ((st = mt_cuda_launched("fill_bf16", t.s)) != MT_OK) {
        goto out_free;
    }
    cst = cublasCreate(&h);
    if (cst == CUBLAS_STATUS_SUCCESS) {
        cst = cublasSetStream(h, t.s);
    }
    if (cst != CUBLAS_STATUS_SUCCESS) {
        st = mt_fail(MT_ERR_CUDA, 0, "cuBLAS setup failed: %s", cublasGetStatusString(cst));
        goto out_free;
    }
    for (int r = -3; r < reps; r++) { /* three warm-ups: cuBLAS picks and loads its kernel */
        float el;

        if ((st = MT_CUDA(cudaEventRecord(t.e0, t.s))) != MT_OK) {
            goto out_free;
        }
        cst = cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16BF, n, b,
                           CUDA_R_16BF, n, &zero, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                           CUBLAS_GEMM_DEFAULT);
        if (cst != CUBLAS_STATUS_SUCCESS) {
            st = mt_fail(MT_ERR_CUDA, 0, "cublasGemmEx (bf16, n %d) failed: %s", n,
                         cublasGetStatusString(cst));
            goto out_free;
        }
        if ((st = MT_CUDA(cudaEventRecord(t.e1, t.s))) != MT_OK ||
            (st = timer_elapsed(&t, &el)) != MT_OK) {
            goto out_free;
        }
        if (r >= 0) {
            ms.push_back(el);
        }
    }
    summarize(ms, 3.0 * (double)elems * 2, out);
    out->tflops = 2.0 * n * (double)n * n / (out->median_ms * 1e-3) * 1e-12;

out_free:
    if (h != NULL) {
        cublasDestroy(h);
    }
    cudaFree(c);
    cudaFree(b);
    cudaFree(a);
out_timer:
    timer_fini(&t);
    return st;
}
