/* SPDX-License-Identifier: MIT */
/*
 * elementwise.cu - RMSNorm, the indexer's LayerNorm, both RoPE layouts, SwiGLU, residual add and
 * embedding rows: the small per-token operations between the GEMVs.
 *
 * The one idea: these move kilobytes, so their cost is the launch and the memory latency, not
 * the bandwidth; they are written for exactness against cpu/ref_norm.c and cpu/ref_rope.c (sums
 * of squares in double, RoPE angles as fp32 products with cos/sin in double). What a decode step
 * runs many times is shaped for latency: a norm keeps its row in registers, and a residual add
 * runs in one kernel with the norm that follows it (mt_gpu_add_rmsnorm).
 */
#include <config.h>

#include "kernels/engine_ops.h"
#include "kernels/common.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/index_keys_split.cuh"
#include "kernels/pdl.cuh" /* every kernel here: mt_pdl_enter() first */

#include <math.h>

#define NORM_THREADS 1024 /* a norm is one row a block: as many loads in flight as can be */
#define EW_THREADS 256

/* Sum of v over the block (NORM_THREADS threads), in double; every thread gets the total. */
static __device__ double
block_sum_d(double v)
{
    __shared__ double part[NORM_THREADS / 32];
    __shared__ double total;

    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, o);
    }
    if ((threadIdx.x & 31) == 0) {
        part[threadIdx.x / 32] = v;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double s = 0.0;
        for (int i = 0; i < NORM_THREADS / 32; i++) {
            s += part[i];
        }
        total = s;
    }
    __syncthreads();
    v = total;
    __syncthreads(); /* part and total are reused by the next call */
    return v;
}

/*
 * One block per token row. A row of up to NORM_THREADS * NORM_VALS floats (V3.2's 7168) is held
 * in registers: every load is issued at once, so the kernel waits for memory once instead of once
 * per strided iteration (measured at ~8 us a norm on the H200 with 256 threads and two passes,
 * most of it latency). Longer rows go through the strided loops. Both orders of a thread's sum
 * are the same (i ascending), so the result does not depend on the path.
 */
#define NORM_VALS 8

/* A norm's output row: o = x * r * w, x held in v (regs: NORM_VALS a thread) or read from xr
 * (o may be xr: each thread reads its own elements before writing them). */
static __device__ __forceinline__ void
norm_store(const float (&v)[NORM_VALS], bool regs, const float *xr, float r,
           const float *__restrict__ w, int n, float *o)
{
    if (regs) {
#pragma unroll
        for (int k = 0; k < NORM_VALS; k++) {
            int i = threadIdx.x + k * NORM_THREADS;
            if (i < n) {
                o[i] = v[k] * r * w[i];
            }
        }
    } else {
        for (int i = threadIdx.x; i < n; i += NORM_THREADS) {
            o[i] = xr[i] * r * w[i];
        }
    }
}

/* o = RMSNorm(xr) * w over one row of n, by the whole block (o may be xr). */
static __device__ __forceinline__ void
rmsnorm_row(const float *xr, const float *__restrict__ w, int n, float eps, float *o)
{
    bool regs = n <= NORM_THREADS * NORM_VALS;
    float v[NORM_VALS];
    double ss = 0.0;

    if (regs) {
#pragma unroll
        for (int k = 0; k < NORM_VALS; k++) {
            int i = threadIdx.x + k * NORM_THREADS;
            v[k] = i < n ? xr[i] : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < NORM_VALS; k++) {
            ss += (double)v[k] * v[k];
        }
    } else {
        for (int i = threadIdx.x; i < n; i += NORM_THREADS) {
            ss += (double)xr[i] * xr[i];
        }
    }
    ss = block_sum_d(ss); /* (in place: every read above is done before any write below) */
    float r = (float)(1.0 / sqrt(ss / n + eps));
    norm_store(v, regs, xr, r, w, n, o);
}

static __global__ void __launch_bounds__(NORM_THREADS)
rmsnorm_kernel(const float *x, const float *__restrict__ w, int n, float eps, float *out)
{
    mt_pdl_enter();
    rmsnorm_row(x + (int64_t)blockIdx.x * n, w, n, eps, out + (int64_t)blockIdx.x * n);
}

/*
 * h += y, then out = RMSNorm(h) * w, one block per token row: the residual add and the next norm
 * in one launch (the same fp32 add and the same double sums as mt_gpu_add + mt_gpu_rmsnorm, so
 * the result is bit for bit theirs).
 */
static __global__ void __launch_bounds__(NORM_THREADS)
add_rmsnorm_kernel(float *h, const float *y, const float *__restrict__ w, int n, float eps,
                   float *out)
{
    mt_pdl_enter();
    float *hr = h + (int64_t)blockIdx.x * n;
    const float *yr = y + (int64_t)blockIdx.x * n;
    float *o = out + (int64_t)blockIdx.x * n;
    bool regs = n <= NORM_THREADS * NORM_VALS;
    float v[NORM_VALS];
    double ss = 0.0;

    if (regs) {
#pragma unroll
        for (int k = 0; k < NORM_VALS; k++) {
            int i = threadIdx.x + k * NORM_THREADS;
            v[k] = i < n ? hr[i] + yr[i] : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < NORM_VALS; k++) {
            int i = threadIdx.x + k * NORM_THREADS;
            if (i < n) {
                hr[i] = v[k];
            }
            ss += (double)v[k] * v[k];
        }
    } else {
        for (int i = threadIdx.x; i < n; i += NORM_THREADS) {
            float a = hr[i] + yr[i];
            hr[i] = a;
            ss += (double)a * a;
        }
    }
    ss = block_sum_d(ss);
    float r = (float)(1.0 / sqrt(ss / n + eps));
    norm_store(v, regs, hr, r, w, n, o);
}

/* o = LayerNorm(xr) * w + b over one row of n, by the whole block (o may be xr). */
static __device__ __forceinline__ void
layernorm_row(const float *xr, const float *__restrict__ w, const float *__restrict__ b, int n,
              float eps, float *o)
{
    double s = 0.0;
    double var = 0.0;

    for (int i = threadIdx.x; i < n; i += NORM_THREADS) {
        s += xr[i];
    }
    double mean = block_sum_d(s) / n;
    for (int i = threadIdx.x; i < n; i += NORM_THREADS) {
        double d = xr[i] - mean;
        var += d * d;
    }
    var = block_sum_d(var) / n;
    float r = (float)(1.0 / sqrt(var + eps));
    /* rounded after each operation (no fused multiply-add, which the compiler forms or not
     * depending on the kernel this is inlined into): the fused attention prologue must give
     * layernorm_kernel's bits */
    for (int i = threadIdx.x; i < n; i += NORM_THREADS) {
        float y = __fmul_rn(__fmul_rn((float)(xr[i] - mean), r), w[i]);
        o[i] = __fadd_rn(y, b != NULL ? b[i] : 0.0f);
    }
}

static __global__ void
layernorm_kernel(const float *x, const float *__restrict__ w, const float *__restrict__ b, int n,
                 float eps, float *out)
{
    mt_pdl_enter();
    layernorm_row(x + (int64_t)blockIdx.x * n, w, b, n, eps, out + (int64_t)blockIdx.x * n);
}

extern "C" mt_status_t
mt_gpu_rmsnorm(const float *x, const float *w, int n_tok, int n, float eps, float *out,
               struct CUstream_st *stream)
{
    if (n_tok < 1 || n < 1 || x == NULL || w == NULL || out == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu rmsnorm: %d rows of %d", n_tok, n);
    }
    mt_pdl_launch(rmsnorm_kernel, dim3(n_tok), dim3(NORM_THREADS), 0, stream, x, w, n, eps, out);
    return mt_cuda_launched("rmsnorm", stream);
}

extern "C" mt_status_t
mt_gpu_add_rmsnorm(float *h, const float *y, const float *w, int n_tok, int n, float eps,
                   float *out, struct CUstream_st *stream)
{
    if (n_tok < 1 || n < 1 || h == NULL || y == NULL || w == NULL || out == NULL || out == h) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu add + rmsnorm: %d rows of %d", n_tok, n);
    }
    mt_pdl_launch(add_rmsnorm_kernel, dim3(n_tok), dim3(NORM_THREADS), 0, stream, h, y, w, n, eps,
                  out);
    return mt_cuda_launched("add_rmsnorm", stream);
}

extern "C" mt_status_t
mt_gpu_layernorm(const float *x, const float *w, const float *b, int n_tok, int n, float eps,
                 float *out, struct CUstream_st *stream)
{
    if (n_tok < 1 || n < 1 || x == NULL || w == NULL || out == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu layernorm: %d rows of %d", n_tok, n);
    }
    mt_pdl_launch(layernorm_kernel, dim3(n_tok), dim3(NORM_THREADS), 0, stream, x, w, b, n, eps,
                  out);
    return mt_cuda_launched("layernorm", stream);
}

/* The pair (a, b) rotated by position pos at frequency freq, into *oa, *ob. */
static __device__ __forceinline__ void
rope_pair(float a, float b, int64_t pos, float freq, float *oa, float *ob)
{
    float angle = (float)pos * freq;
    float c = (float)cos((double)angle);
    float s = (float)sin((double)angle);

    /* no fused multiply-add: the compiler would fuse one product or the other depending on
     * the kernel it inlines this into, and the fused attention prologue must give the bits of
     * rope_kernel (and the CPU's, which does not fuse) */
    *oa = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    *ob = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
}

/* One thread per (token, head, frequency i). */
template <bool INTERLEAVED>
static __global__ void
rope_kernel(float *x, int n_tok, int n_heads, int head_stride, int offset,
            const float *__restrict__ freqs, int half, int64_t pos0)
{
    mt_pdl_enter();
    int64_t i = (int64_t)blockIdx.x * EW_THREADS + threadIdx.x;
    int64_t n = (int64_t)n_tok * n_heads * half;

    if (i >= n) {
        return;
    }
    int f = (int)(i % half);
    int64_t th = i / half; /* token * n_heads + head */
    int64_t t = th / n_heads;
    float *v = x + th * head_stride + offset;
    int ia = INTERLEAVED ? 2 * f : f;
    int ib = INTERLEAVED ? 2 * f + 1 : f + half;

    rope_pair(v[ia], v[ib], pos0 + t, freqs[f], &v[ia], &v[ib]);
}

template <bool INTERLEAVED>
static mt_status_t
rope_launch(float *x, int n_tok, int n_heads, int head_stride, int offset, const float *freqs,
            int half, int64_t pos0, cudaStream_t s)
{
    int64_t n = (int64_t)n_tok * n_heads * half;

    if (n_tok < 1 || n_heads < 1 || half < 1 || offset < 0 || offset + 2 * half > head_stride ||
        pos0 < 0 || x == NULL || freqs == NULL) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "gpu rope: %d tokens x %d heads, dims %d..%d of %d, position %lld", n_tok,
                       n_heads, offset, offset + 2 * half, head_stride, (long long)pos0);
    }
    mt_pdl_launch(rope_kernel<INTERLEAVED>, dim3((unsigned)MT_CEIL_DIV(n, EW_THREADS)),
                  dim3(EW_THREADS), 0, s, x, n_tok, n_heads, head_stride, offset, freqs, half,
                  pos0);
    return mt_cuda_launched(INTERLEAVED ? "rope_interleaved" : "rope_half", s);
}

extern "C" mt_status_t
mt_gpu_rope_interleaved(float *x, int n_tok, int n_heads, int head_stride, int offset,
                        const float *freqs, int half, int64_t pos0, struct CUstream_st *stream)
{
    return rope_launch<true>(x, n_tok, n_heads, head_stride, offset, freqs, half, pos0, stream);
}

extern "C" mt_status_t
mt_gpu_rope_half(float *x, int n_tok, int n_heads, int head_stride, int offset,
                 const float *freqs, int half, int64_t pos0, struct CUstream_st *stream)
{
    return rope_launch<false>(x, n_tok, n_heads, head_stride, offset, freqs, half, pos0, stream);
}

static __global__ void
swiglu_kernel(const float *gate, const float *up, size_t n, float *out)
{
    mt_pdl_enter();
    size_t i = (size_t)blockIdx.x * EW_THREADS + threadIdx.x;

    if (i >= n) {
        return;
    }
    float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
}

extern "C" mt_status_t
mt_gpu_swiglu(const float *gate, const float *up, size_t n, float *out, struct CUstream_st *stream)
{
    if (n == 0 || gate == NULL || up == NULL || out == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu swiglu: %zu values", n);
    }
    mt_pdl_launch(swiglu_kernel, dim3((unsigned)MT_CEIL_DIV(n, (size_t)EW_THREADS)),
                  dim3(EW_THREADS), 0, stream, gate, up, n, out);
    return mt_cuda_launched("swiglu", stream);
}

static __global__ void
add_kernel(float *y, const float *x, size_t n)
{
    mt_pdl_enter();
    size_t i = (size_t)blockIdx.x * EW_THREADS + threadIdx.x;

    if (i >= n) {
        return;
    }
    y[i] += x[i];
}

extern "C" mt_status_t
mt_gpu_add(float *y, const float *x, size_t n, struct CUstream_st *stream)
{
    if (n == 0 || y == NULL || x == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu add: %zu values", n);
    }
    mt_pdl_launch(add_kernel, dim3((unsigned)MT_CEIL_DIV(n, (size_t)EW_THREADS)), dim3(EW_THREADS),
                  0, stream, y, x, n);
    return mt_cuda_launched("add", stream);
}

#define EMBED_LOADS 4 /* 16-byte loads a thread issues before it uses any */

/*
 * One block per token. Rows of whole 16-byte pieces are read EMBED_LOADS pieces a thread at a
 * time, all requested before any is used: the table may be host memory the GPU reads over the
 * bus (the GPU engine's greedy steps, engine_gpu.c), where each round trip costs ~1-2 us, so a
 * V3.2 row (14 KB of BF16) is one round of loads instead of 28 in a row.
 */
template <bool BF16>
static __global__ void
embed_kernel(const void *table, int64_t vocab, int dim, const int32_t *ids, float *out)
{
    mt_pdl_enter();
    int32_t id = ids[blockIdx.x];
    float *o = out + (int64_t)blockIdx.x * dim;
    constexpr int PER = BF16 ? 8 : 4; /* values a piece */
    size_t row_bytes = (size_t)dim * (BF16 ? 2 : 4);
    const char *row = (const char *)table + (int64_t)id * (int64_t)row_bytes;

    if (id >= 0 && id < vocab && dim % PER == 0 && (uintptr_t)row % 16 == 0) {
        const uint4 *src = reinterpret_cast<const uint4 *>(row);
        int n16 = dim / PER;
        for (int c0 = threadIdx.x; c0 < n16; c0 += EW_THREADS * EMBED_LOADS) {
            uint4 v[EMBED_LOADS];
#pragma unroll
            for (int u = 0; u < EMBED_LOADS; u++) {
                int c = c0 + u * EW_THREADS;
                v[u] = c < n16 ? src[c] : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
            for (int u = 0; u < EMBED_LOADS; u++) {
                int c = c0 + u * EW_THREADS;
                if (c >= n16) {
                    break;
                }
                const uint32_t w[4] = {v[u].x, v[u].y, v[u].z, v[u].w};
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    if (BF16) {
                        o[c * 8 + 2 * j] = __uint_as_float(w[j] << 16);
                        o[c * 8 + 2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
                    } else {
                        o[c * 4 + j] = __uint_as_float(w[j]);
                    }
                }
            }
        }
        return;
    }
    for (int i = threadIdx.x; i < dim; i += EW_THREADS) {
        if (id < 0 || id >= vocab) {
            o[i] = __int_as_float(0x7fc00000); /* NaN: an id the caller did not check */
        } else if (BF16) {
            uint16_t h = ((const uint16_t *)table)[(int64_t)id * dim + i];
            o[i] = __uint_as_float((uint32_t)h << 16);
        } else {
            o[i] = ((const float *)table)[(int64_t)id * dim + i];
        }
    }
}

extern "C" mt_status_t
mt_gpu_embed(const void *table, enum mt_dtype dtype, int64_t vocab, int dim, const int32_t *ids,
             int n_tok, float *out, struct CUstream_st *stream)
{
    if ((dtype != MT_DTYPE_BF16 && dtype != MT_DTYPE_F32) || vocab < 1 || dim < 1 || n_tok < 1 ||
        table == NULL || ids == NULL || out == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu embed: %s table %lld x %d, %d tokens",
                       mt_dtype_name(dtype), (long long)vocab, dim, n_tok);
    }
    if (dtype == MT_DTYPE_BF16) {
        mt_pdl_launch(embed_kernel<true>, dim3(n_tok), dim3(EW_THREADS), 0, stream, table, vocab,
                      dim, ids, out);
    } else {
        mt_pdl_launch(embed_kernel<false>, dim3(n_tok), dim3(EW_THREADS), 0, stream, table, vocab,
                      dim, ids, out);
    }
    return mt_cuda_launched("embed", stream);
}

/*
 * MLA's kv_a output into its caches, one block per token (the file comment of engine_gpu.c's
 * gpu_attention): the latent part RMS-normed (rmsnorm_row, the same sums as mt_gpu_rmsnorm) into
 * lat_t and the latent cache, the k_pe part rotated (interleaved pairs, the same arithmetic as
 * mt_gpu_rope_interleaved, then times rope_att as mt_gpu_scale_cols does) into kpe_t and the
 * k_pe cache. One launch instead of six or seven (split, norm, cache write, split, rope, factor,
 * cache write) in every layer of every decode step. Blocks (token, 1), where q_a is given: q_a's
 * RMSNorm in place (rmsnorm_kernel's row), which needs the same projection's output and nothing
 * else, so the query's norm costs no launch of its own.
 */
static __global__ void __launch_bounds__(NORM_THREADS)
mla_kv_epilogue_kernel(const float *kv, const float *__restrict__ w, int kvl, int rope, float eps,
                       const float *__restrict__ freqs, int64_t pos0, float rope_att,
                       float *lat_t, void *lat_cache, bool lat_bf16, float *kpe_t,
                       void *kpe_cache, bool kpe_bf16, float *q_a,
                       const float *__restrict__ q_a_w, int q_rank)
{
    mt_pdl_enter();
    int64_t t = blockIdx.x;
    if (blockIdx.y == 1) {
        rmsnorm_row(q_a + t * q_rank, q_a_w, q_rank, eps, q_a + t * q_rank);
        return;
    }
    const float *row = kv + t * (kvl + rope);
    float *lat = lat_t + t * kvl;

    rmsnorm_row(row, w, kvl, eps, lat);
    /* each thread stores the elements it normed (norm_store's ownership): no barrier */
    for (int i = threadIdx.x; i < kvl; i += NORM_THREADS) {
        if (lat_bf16) {
            ((uint16_t *)lat_cache)[t * kvl + i] = mt_f32_to_bf16_bits(lat[i]);
        } else {
            ((float *)lat_cache)[t * kvl + i] = lat[i];
        }
    }
    for (int f = threadIdx.x; f < rope / 2; f += NORM_THREADS) {
        float a;
        float b;
        rope_pair(row[kvl + 2 * f], row[kvl + 2 * f + 1], pos0 + t, freqs[f], &a, &b);
        if (rope_att != 1.0f) {
            a *= rope_att;
            b *= rope_att;
        }
        kpe_t[t * rope + 2 * f] = a;
        kpe_t[t * rope + 2 * f + 1] = b;
        if (kpe_bf16) {
            ((uint16_t *)kpe_cache)[t * rope + 2 * f] = mt_f32_to_bf16_bits(a);
            ((uint16_t *)kpe_cache)[t * rope + 2 * f + 1] = mt_f32_to_bf16_bits(b);
        } else {
            ((float *)kpe_cache)[t * rope + 2 * f] = a;
            ((float *)kpe_cache)[t * rope + 2 * f + 1] = b;
        }
    }
}

extern "C" mt_status_t
mt_gpu_mla_kv_epilogue(const float *kv, const float *norm_w, int n_tok, int kvl, int rope,
                       float eps, const float *freqs, int64_t pos0, float rope_att, float *lat_t,
                       void *lat_cache, enum mt_dtype lat_dtype, float *kpe_t, void *kpe_cache,
                       enum mt_dtype kpe_dtype, float *q_a, const float *q_a_norm_w, int q_rank,
                       struct CUstream_st *stream)
{
    bool dt_ok = (lat_dtype == MT_DTYPE_F32 || lat_dtype == MT_DTYPE_BF16) &&
                 (kpe_dtype == MT_DTYPE_F32 || kpe_dtype == MT_DTYPE_BF16);

    if (kv == NULL || norm_w == NULL || freqs == NULL || lat_t == NULL || lat_cache == NULL ||
        kpe_t == NULL || kpe_cache == NULL || n_tok < 1 || kvl < 1 || rope < 2 || rope % 2 != 0 ||
        pos0 < 0 || !dt_ok || (q_a != NULL && (q_a_norm_w == NULL || q_rank < 1))) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu kv epilogue: %d tokens, latent %d, rope %d, position "
                       "%lld, q_a %d wide", n_tok, kvl, rope, (long long)pos0,
                       q_a != NULL ? q_rank : 0);
    }
    mt_pdl_launch(mla_kv_epilogue_kernel, dim3((unsigned)n_tok, q_a != NULL ? 2 : 1),
                  dim3(NORM_THREADS), 0, stream, kv, norm_w, kvl, rope, eps, freqs, pos0, rope_att,
                  lat_t, lat_cache, lat_dtype == MT_DTYPE_BF16, kpe_t, kpe_cache,
                  kpe_dtype == MT_DTYPE_BF16, q_a, q_a_norm_w, q_rank);
    return mt_cuda_launched("mla_kv_epilogue", stream);
}

/* Rotate head h's pairs (ia(f), ib(f)) of v for f < half at pos, times rope_att after it (what
 * mt_gpu_scale_cols does after rope_kernel), by the block's threads i = h * half + f. */
template <bool INTERLEAVED>
static __device__ __forceinline__ void
rope_heads(float *v, int n_heads, int stride, int half, const float *__restrict__ freqs,
           int64_t pos, float rope_att)
{
    for (int i = threadIdx.x; i < n_heads * half; i += NORM_THREADS) {
        float *h = v + (int64_t)(i / half) * stride;
        int f = i % half;
        int ia = INTERLEAVED ? 2 * f : f;
        int ib = INTERLEAVED ? 2 * f + 1 : f + half;
        rope_pair(h[ia], h[ib], pos, freqs[f], &h[ia], &h[ib]);
        if (rope_att != 1.0f) {
            h[ia] *= rope_att;
            h[ib] *= rope_att;
        }
    }
}

/*
 * mt_gpu_attn_prologue (engine_ops.h), blocks (token, part): part 1 (the only one without an
 * indexer) rotates q's rope dims, part 0 does the indexer's key (norm, rotation, cache copy), its
 * queries and its head weights (where they were computed). Part 0's
 * LayerNorm is layernorm_row on NORM_THREADS threads, as layernorm_kernel: the same sums.
 */
static __global__ void __launch_bounds__(NORM_THREADS)
attn_prologue_kernel(const struct mt_gpu_attn_prologue a)
{
    mt_pdl_enter();
    int64_t t = blockIdx.x;
    int64_t pos = a.pos0 + t;

    if (blockIdx.y == 1 || a.ki == NULL) {
        rope_heads<true>(a.q + t * a.n_heads * a.qk + a.nope, a.n_heads, a.qk, a.half, a.freqs,
                         pos, a.rope_att);
        return;
    }
    float *k = a.ki + t * a.id;
    layernorm_row(k, a.k_w, a.k_b, a.id, a.eps, k);
    __syncthreads(); /* the rotation pairs elements other threads normed */
    rope_heads<false>(k, 1, a.id, a.half, a.freqs, pos, a.rope_att);
    if (a.qi != NULL) {
        rope_heads<false>(a.qi + t * a.ih * a.id, a.ih, a.id, a.half, a.freqs, pos, a.rope_att);
        for (int i = threadIdx.x; i < a.ih; i += NORM_THREADS) {
            a.wts[t * a.ih + i] *= a.wts_scale;
        }
    }
    if (a.key_cache != NULL || a.key_split != NULL) {
        __syncthreads(); /* the key's rotated pairs, written by other threads */
    }
    if (a.key_cache != NULL) {
        for (int i = threadIdx.x; i < a.id; i += NORM_THREADS) {
            a.key_cache[t * a.id + i] = k[i];
        }
    }
    if (a.key_split != NULL && threadIdx.x < 32) {
        xsp_store_key((uint8_t *)a.key_split, pos, k);
    }
}

extern "C" mt_status_t
mt_gpu_attn_prologue(const struct mt_gpu_attn_prologue *a, struct CUstream_st *stream)
{
    bool idx = a != NULL && a->ki != NULL;

    if (a == NULL || a->n_tok < 1 || a->pos0 < 0 || a->freqs == NULL || a->half < 1 ||
        a->q == NULL || a->n_heads < 1 || a->nope < 0 || a->nope + 2 * a->half > a->qk ||
        (idx && (a->k_w == NULL || (a->qi == NULL) != (a->wts == NULL) ||
                 (a->qi != NULL && a->ih < 1) || 2 * a->half > a->id ||
                 (a->key_split != NULL && (a->id != XSP_DIM || a->key_cache != NULL))))) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu attention prologue: %d tokens, q %d heads of %d "
                       "(rope from %d, %d pairs), index dims %d", a != NULL ? a->n_tok : 0,
                       a != NULL ? a->n_heads : 0, a != NULL ? a->qk : 0,
                       a != NULL ? a->nope : 0, a != NULL ? a->half : 0,
                       a != NULL ? a->id : 0);
    }
    mt_pdl_launch(attn_prologue_kernel, dim3((unsigned)a->n_tok, idx ? 2 : 1),
                  dim3(NORM_THREADS), 0, stream, *a);
    return mt_cuda_launched("attn_prologue", stream);
}
