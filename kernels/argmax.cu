/* SPDX-License-Identifier: MIT */
/*
 * argmax.cu - greedy sampling on the device: the id of a row's largest logit, so a greedy decode
 * step hands the host 16 bytes instead of the vocabulary's logits.
 *
 * The one idea: the host's greedy sampler (runtime/text/sampler.c, mt_sampler_argmax) takes the
 * largest value and, among equal ones, the smallest id; comparisons of floats are exact, so the
 * same rule evaluated in any order gives the same id, bit for bit the host's. The row (129,280
 * logits for V3.2, 517 KB, still in L2 after lm_head wrote it) is read by ARGMAX_BLOCKS blocks
 * in 16-byte loads, one or two a thread, each block reducing its values to (value, id); the
 * last block to finish (a counter, reset by that block for the next launch) reduces the blocks'
 * results and writes the answer. A logit
 * that is not finite is never a candidate: the smallest such id and its value are reported
 * instead, for the engine's "a logit is not finite" error (the host's check of the logits).
 */
#include <config.h>

#include "kernels/engine_ops.h"
#include "kernels/cuda_check.cuh"
#include "kernels/pdl.cuh" /* mt_pdl_enter() first: the logits are the previous kernel's */

#include <limits.h>
#include <math.h>

#define ARGMAX_BLOCKS 128 /* ~one a SM: a float4 per thread at V3.2's vocabulary */
#define ARGMAX_THREADS 256

/* One block's result: the best finite (value, id), and the first id that is not finite. */
struct __align__(16) argmax_part {
    float v;
    int32_t id;  /* INT_MAX: no finite value */
    int32_t bad; /* INT_MAX: none */
    float bad_v;
};

/* a beats b: larger value, or equal value and smaller id (no id: never) */
static __device__ __forceinline__ bool
argmax_better(float av, int32_t aid, float bv, int32_t bid)
{
    return aid != INT_MAX && (bid == INT_MAX || av > bv || (av == bv && aid < bid));
}

static __device__ __forceinline__ void
argmax_merge(struct argmax_part &a, const struct argmax_part &b)
{
    if (argmax_better(b.v, b.id, a.v, a.id)) {
        a.v = b.v;
        a.id = b.id;
    }
    if (b.bad < a.bad) {
        a.bad = b.bad;
        a.bad_v = b.bad_v;
    }
}

/* The block's threads' parts merged into thread 0's (every thread must call it). */
static __device__ struct argmax_part
argmax_block_reduce(struct argmax_part p)
{
    __shared__ struct argmax_part sh[ARGMAX_THREADS / 32];
    int lane = threadIdx.x & 31;
    int w = threadIdx.x >> 5;

    for (int o = 16; o > 0; o >>= 1) {
        struct argmax_part q;
        q.v = __shfl_down_sync(0xffffffffu, p.v, o);
        q.id = __shfl_down_sync(0xffffffffu, p.id, o);
        q.bad = __shfl_down_sync(0xffffffffu, p.bad, o);
        q.bad_v = __shfl_down_sync(0xffffffffu, p.bad_v, o);
        argmax_merge(p, q);
    }
    if (lane == 0) {
        sh[w] = p;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int i = 1; i < ARGMAX_THREADS / 32; i++) {
            argmax_merge(p, sh[i]);
        }
    }
    return p;
}

static __global__ void __launch_bounds__(ARGMAX_THREADS)
argmax_kernel(const float *x, int n, struct argmax_part *parts, unsigned *done,
              struct mt_gpu_argmax_out *out)
{
    mt_pdl_enter();
    __shared__ bool last;
    struct argmax_part p = {-INFINITY, INT_MAX, INT_MAX, 0.0f};
    auto take = [&](float v, int i) {
        if (!isfinite(v)) {
            if (i < p.bad) {
                p.bad = i;
                p.bad_v = v;
            }
        } else if (argmax_better(v, i, p.v, p.id)) {
            p.v = v;
            p.id = i;
        }
    };
    /* four values a load where x is 16-byte aligned; a thread's ids rise, blocks interleave */
    int head = (int)(((16 - (uintptr_t)x % 16) % 16) / 4); /* scalar values before alignment */
    head = head < n ? head : n;
    int stride = gridDim.x * ARGMAX_THREADS;
    int t = blockIdx.x * ARGMAX_THREADS + threadIdx.x;
    const float4 *x4 = reinterpret_cast<const float4 *>(x + head);
    int n4 = (n - head) / 4;
    if (t < head) {
        take(x[t], t);
    }
    for (int j = t; j < n4; j += stride) {
        float4 v = __ldcg(x4 + j);
        int i = head + 4 * j;
        take(v.x, i);
        take(v.y, i + 1);
        take(v.z, i + 2);
        take(v.w, i + 3);
    }
    for (int i = head + 4 * n4 + t; i < n; i += stride) {
        take(x[i], i);
    }
    p = argmax_block_reduce(p);
    if (threadIdx.x == 0) {
        parts[blockIdx.x] = p;
        __threadfence(); /* the part is visible before the count says so */
        last = atomicAdd(done, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) {
        return;
    }
    __threadfence();
    struct argmax_part q = {-INFINITY, INT_MAX, INT_MAX, 0.0f};
    for (int i = threadIdx.x; i < (int)gridDim.x; i += ARGMAX_THREADS) {
        int4 r = __ldcg(reinterpret_cast<const int4 *>(parts + i)); /* L2: other blocks' */
        struct argmax_part pi = {__int_as_float(r.x), r.y, r.z, __int_as_float(r.w)};
        argmax_merge(q, pi);
    }
    q = argmax_block_reduce(q);
    if (threadIdx.x == 0) {
        out->id = q.id == INT_MAX ? -1 : q.id;
        out->bad = q.bad == INT_MAX ? -1 : q.bad;
        out->bad_value = q.bad_v;
        out->value = q.v;
        *done = 0; /* for the next launch (stream order) */
    }
}

extern "C" size_t
mt_gpu_argmax_work_bytes(void)
{
    return ARGMAX_BLOCKS * sizeof(struct argmax_part) + 256;
}

extern "C" mt_status_t
mt_gpu_argmax(const float *x, int n, void *work, struct mt_gpu_argmax_out *out,
              struct CUstream_st *stream)
{
    if (x == NULL || n < 1 || work == NULL || out == NULL || (uintptr_t)work % 16 != 0) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu argmax: %d values", n);
    }
    struct argmax_part *parts = (struct argmax_part *)work;
    unsigned *done = (unsigned *)((char *)work + ARGMAX_BLOCKS * sizeof(struct argmax_part));
    int blocks = MT_MIN(ARGMAX_BLOCKS, MT_CEIL_DIV(n, 4 * ARGMAX_THREADS));
    if ((uintptr_t)x % 4 != 0) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu argmax: values not 4-byte aligned");
    }

    mt_pdl_launch(argmax_kernel, dim3(blocks), dim3(ARGMAX_THREADS), 0, stream, x, n, parts, done,
                  out);
    return mt_cuda_launched("argmax", stream);
}

extern "C" mt_status_t
mt_gpu_argmax_work_init(void *work, struct CUstream_st *stream)
{
    return MT_CUDA(cudaMemsetAsync(work, 0, mt_gpu_argmax_work_bytes(), stream));
}
