/* SPDX-License-Identifier: MIT */
/*
 * engine_ops.cu - the glue kernels of the GPU engine (runtime/engine/engine_gpu.c): the pieces
 * of a forward pass that ops.h has no kernel for, or has one only at V3.2's exact shapes.
 *
 * The one idea: these are correctness-first kernels for ANY model shape (the tiny golden models
 * have 3 heads, a 32-wide latent, 16 indexer heads), each a direct transcription of the CPU
 * engine's loop it replaces (attention.c, moe.c, cpu/ref_*.c): fp32 GEMV for F32 weights, the
 * two absorption products of MLA through kv_b, a one-block-per-head MLA for shapes the fast
 * kernel of mla.cu does not take, row copies into the caches with the CPU's bf16 rounding,
 * DeepSeek's Hadamard + act_quant of the FP8 indexer, its scores at any head count and width,
 * and the gather / weighted scatter of routed experts that are not FP8. The engine uses the
 * tuned kernels of ops.h wherever their shape rules hold. One exception to "any shape": the
 * absorption through an FP8 kv_b in whole 128-column blocks (V3.2's) has streaming kernels of its
 * own, because it runs twice a layer in every decode step.
 */
#include <config.h>

#include "kernels/engine_ops.h"
#include "kernels/common.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/pdl.cuh" /* every kernel: mt_pdl_enter() first (the FP8 absorptions load
                              * weights before it, nothing an earlier kernel writes) */

#include <cuda_fp8.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EO_THREADS 256
#define ABS_THREADS 256 /* absorb_q: 8 warps split the nope rows of a 128-column tile */

/* ---- F32 GEMV: one warp per output row ------------------------------------------------------ */

static __global__ void
linear_f32_kernel(const float *__restrict__ w, int64_t rows, int64_t cols,
                  const float *__restrict__ x, int n_tok, float *__restrict__ y)
{
    mt_pdl_enter();
    int64_t r = (int64_t)blockIdx.x * (EO_THREADS / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;

    if (r >= rows) {
        return;
    }
    const float *wr = w + r * cols;
    for (int t = 0; t < n_tok; t++) {
        const float *xt = x + (int64_t)t * cols;
        float a = 0.0f;
        for (int64_t c = lane; c < cols; c += 32) {
            a += wr[c] * xt[c];
        }
        a = mt_warp_sum(a);
        if (lane == 0) {
            y[(int64_t)t * rows + r] = a;
        }
    }
}

extern "C" mt_status_t
mt_gpu_linear_f32(const float *w, int64_t rows, int64_t cols, const float *x, int n_tok, float *y,
                  struct CUstream_st *stream)
{
    if (w == NULL || x == NULL || y == NULL || rows < 1 || cols < 1 || n_tok < 1) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu linear f32: %lld x %lld, %d tokens", (long long)rows,
                       (long long)cols, n_tok);
    }
    unsigned blocks = (unsigned)MT_CEIL_DIV(rows, (int64_t)(EO_THREADS / 32));
    mt_pdl_launch(linear_f32_kernel, dim3(blocks), dim3(EO_THREADS), 0, stream, w, rows, cols, x,
                  n_tok, y);
    return mt_cuda_launched("linear_f32", stream);
}

/* ---- MLA absorption through kv_b [H * (nope + vd), kvl], any checkpoint dtype -------------- */

/* kv_b[r][c] as fp32: fp8 * its 128x128 block scale (the CPU's mt_cpu_weight_row), bf16, f32. */
static __device__ __forceinline__ float
kvb_at(const struct mt_gpu_weight w, int64_t r, int64_t c)
{
    if (w.dtype == MT_DTYPE_F8_E4M3) {
        uint8_t b = ((const uint8_t *)w.data)[r * w.cols + c];
        __half_raw h = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)b, __NV_E4M3);
        return __half2float(__half(h)) * w.scale[(r / 128) * ((w.cols + 127) / 128) + c / 128];
    }
    if (w.dtype == MT_DTYPE_BF16) {
        return __uint_as_float((uint32_t)((const uint16_t *)w.data)[r * w.cols + c] << 16);
    }
    return ((const float *)w.data)[r * w.cols + c];
}

/*
 * kv_b[r][c .. c+3] as fp32 into v (zeros past the end). vec: cols % 4 == 0 and c % 4 == 0, so
 * the four are one aligned 4-, 8- or 16-byte load and share one FP8 scale block.
 */
static __device__ __forceinline__ void
kvb_at4(const struct mt_gpu_weight w, int64_t r, int64_t c, bool vec, float v[4])
{
    if (!vec) {
        for (int k = 0; k < 4; k++) {
            v[k] = c + k < w.cols ? kvb_at(w, r, c + k) : 0.0f;
        }
        return;
    }
    int64_t i = r * w.cols + c;
    if (w.dtype == MT_DTYPE_F8_E4M3) {
        uint32_t b = *(const uint32_t *)((const uint8_t *)w.data + i);
        float s = w.scale[(r / 128) * ((w.cols + 127) / 128) + c / 128];
        for (int k = 0; k < 4; k++) {
            __half_raw h = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)(b >> (8 * k)), __NV_E4M3);
            v[k] = __half2float(__half(h)) * s;
        }
    } else if (w.dtype == MT_DTYPE_BF16) {
        uint2 b = *(const uint2 *)((const uint16_t *)w.data + i);
        float2 lo = mt_bf16x2_decode(b.x), hi = mt_bf16x2_decode(b.y);
        v[0] = lo.x, v[1] = lo.y, v[2] = hi.x, v[3] = hi.y;
    } else {
        float4 f = *(const float4 *)((const float *)w.data + i);
        v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
    }
}

/*
 * FP8 kv_b in whole 128-column scale blocks (V3.2's): the two products as streaming reads. The
 * any-shape kernels below are latency-bound (4-byte loads, 16 a thread): inside a decode step on
 * the H200 they took 25-30 us for each 8 MB half of V3.2's kv_b (2026-11-30, session 6), which
 * takes ~2 us to read. With kvl % 128 == 0 a row is whole 16-byte chunks, each inside one scale
 * block, so every thread loads 8 rows x 16 bytes at once, before the PDL wait (weights depend on
 * no kernel): one wave of blocks has all of kv_b in flight. NT: tokens a block computes (1, 2 or
 * 4); more tokens take more blocks along z, which read the same weights again (streaming loads
 * mark them evict-first, so they may come from HBM again: batches of 5-8 tokens are rare in
 * decode).
 */
#define ABF_THREADS 128 /* 4 warps */
#define ABF_ROWS 8      /* rows a thread has in flight */
#define ABF_MAX_NOPE 512

static __device__ __forceinline__ void
abf_decode16(uint4 w, float s, float (&f)[16])
{
    const uint32_t *v = reinterpret_cast<const uint32_t *>(&w);

#pragma unroll
    for (int j = 0; j < 4; j++) {
        mt_fp8x4_to_f32(v[j], &f[4 * j]);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            f[4 * j + k] *= s;
        }
    }
}

/*
 * Block (h, 128-column tile, token chunk): lane l of warp w takes the 16 columns (l % 8) of the
 * tile and the nope rows d = 4 w + l / 8 + 16 i; its partial sums over its rows meet across lanes
 * (xor 8, 16) and warps (shared memory) in a fixed order.
 */
template <int NT>
static __global__ void __launch_bounds__(ABF_THREADS)
absorb_q_fp8_kernel(const float *__restrict__ q, const struct mt_gpu_weight kvb, int n, int H,
                    int nope, int vd, int rope, float *__restrict__ q_lat,
                    float *__restrict__ q_pe)
{
    __shared__ float qs[NT][ABF_MAX_NOPE];
    __shared__ float red[ABF_THREADS / 32][NT][128];
    int h = blockIdx.x, tile = blockIdx.y, t0 = blockIdx.z * NT;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int kvl = (int)kvb.cols, cb = kvl / 128, qk = nope + rope, nt = min(NT, n - t0);
    int col = tile * 128 + (lane % 8) * 16, slot = warp * 4 + lane / 8;
    const uint8_t *wb = (const uint8_t *)kvb.data;
    int64_t r0 = (int64_t)h * (nope + vd);
    float acc[NT][16];

#pragma unroll
    for (int t = 0; t < NT; t++) {
#pragma unroll
        for (int k = 0; k < 16; k++) {
            acc[t][k] = 0.0f;
        }
    }
    for (int d0 = 0; d0 < nope; d0 += 16 * ABF_ROWS) {
        uint4 w[ABF_ROWS];
        float s[ABF_ROWS];
#pragma unroll
        for (int i = 0; i < ABF_ROWS; i++) {
            int d = d0 + slot + 16 * i;
            int64_t r = r0 + d;
            w[i] = d < nope ? __ldcs((const uint4 *)(wb + r * kvl + col)) : make_uint4(0, 0, 0, 0);
            s[i] = d < nope ? __ldg(kvb.scale + (r / 128) * cb + tile) * MT_FP8_DECODE_SCALE
                            : 0.0f;
        }
        if (d0 == 0) { /* the weights are on their way: now the query, from the kernel before */
            mt_pdl_enter();
            for (int i = threadIdx.x; i < nt * nope; i += ABF_THREADS) {
                int t = i / nope;
                qs[t][i % nope] = q[((int64_t)(t0 + t) * H + h) * qk + i % nope];
            }
            __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < ABF_ROWS; i++) {
            int d = d0 + slot + 16 * i;
            float f[16];
            abf_decode16(w[i], s[i], f);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                float x = t < nt && d < nope ? qs[t][d] : 0.0f;
#pragma unroll
                for (int k = 0; k < 16; k++) {
                    acc[t][k] = fmaf(x, f[k], acc[t][k]);
                }
            }
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
#pragma unroll
        for (int k = 0; k < 16; k++) {
            float v = acc[t][k];
            v += __shfl_xor_sync(0xffffffffu, v, 8);
            v += __shfl_xor_sync(0xffffffffu, v, 16);
            if (lane < 8) {
                red[warp][t][lane * 16 + k] = v;
            }
        }
    }
    __syncthreads();
    for (int t = 0; t < nt; t++) {
        float a = 0.0f;
#pragma unroll
        for (int w = 0; w < ABF_THREADS / 32; w++) {
            a += red[w][t][threadIdx.x];
        }
        q_lat[((int64_t)(t0 + t) * H + h) * kvl + tile * 128 + threadIdx.x] = a;
    }
    if (tile == 0) {
        for (int i = threadIdx.x; i < nt * rope; i += ABF_THREADS) {
            int t = i / rope;
            q_pe[((int64_t)(t0 + t) * H + h) * rope + i % rope] =
                q[((int64_t)(t0 + t) * H + h) * qk + nope + i % rope];
        }
    }
}

/*
 * Block (h, 32 value rows, token chunk): warp w takes rows j = 32 y + 8 w + i (i < 8), lane l the
 * 16-byte chunks l, l + 32, ... of each; a row's sum is the warp's sum.
 */
template <int NT>
static __global__ void __launch_bounds__(ABF_THREADS)
absorb_v_fp8_kernel(const float *__restrict__ o_lat, const struct mt_gpu_weight kvb, int n,
                    int H, int nope, int vd, float *__restrict__ out)
{
    int h = blockIdx.x, t0 = blockIdx.z * NT;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int kvl = (int)kvb.cols, cb = kvl / 128, chunks = kvl / 16, nt = min(NT, n - t0);
    int j0 = blockIdx.y * 32 + warp * ABF_ROWS;
    const uint8_t *wb = (const uint8_t *)kvb.data;
    int64_t r0 = (int64_t)h * (nope + vd) + nope;
    float acc[NT][ABF_ROWS];
    uint4 w[ABF_ROWS];
    float s[ABF_ROWS];

#pragma unroll
    for (int t = 0; t < NT; t++) {
#pragma unroll
        for (int i = 0; i < ABF_ROWS; i++) {
            acc[t][i] = 0.0f;
        }
    }
    for (int c = lane; c - lane < chunks; c += 32) { /* every lane the same trips */
#pragma unroll
        for (int i = 0; i < ABF_ROWS; i++) {
            bool ok = c < chunks && j0 + i < vd;
            int64_t r = r0 + j0 + i;
            w[i] = ok ? __ldcs((const uint4 *)(wb + r * kvl + c * 16)) : make_uint4(0, 0, 0, 0);
            s[i] = ok ? __ldg(kvb.scale + (r / 128) * cb + c / 8) * MT_FP8_DECODE_SCALE : 0.0f;
        }
        if (c == lane) {
            mt_pdl_enter(); /* o_lat comes from the kernel before */
        }
        if (c >= chunks) {
            continue;
        }
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (t >= nt) {
                break;
            }
            const float4 *o = (const float4 *)(o_lat + ((int64_t)(t0 + t) * H + h) * kvl + c * 16);
            float x[16];
#pragma unroll
            for (int k = 0; k < 4; k++) {
                float4 v = __ldg(o + k);
                x[4 * k] = v.x, x[4 * k + 1] = v.y, x[4 * k + 2] = v.z, x[4 * k + 3] = v.w;
            }
#pragma unroll
            for (int i = 0; i < ABF_ROWS; i++) {
                float f[16];
                abf_decode16(w[i], s[i], f);
                float a = 0.0f;
#pragma unroll
                for (int k = 0; k < 16; k++) {
                    a = fmaf(f[k], x[k], a);
                }
                acc[t][i] += a;
            }
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
#pragma unroll
        for (int i = 0; i < ABF_ROWS; i++) {
            float a = mt_warp_sum(acc[t][i]);
            if (lane == i && t < nt && j0 + i < vd) {
                out[(int64_t)(t0 + t) * H * vd + (int64_t)h * vd + j0 + i] = a;
            }
        }
    }
}

/* MT_GPU_ABSORB=0: the any-shape kernels for FP8 too (for measurements); read once. A plain
 * static: set by tests and benchmarks from one thread, a race only reads the environment twice. */
static int absorb_fast = -1;

extern "C" void
mt_gpu_absorb_fast_set(bool on)
{
    absorb_fast = on ? 1 : 0;
}

extern "C" bool
mt_gpu_absorb_fast(void)
{
    if (absorb_fast < 0) {
        const char *e = getenv("MT_GPU_ABSORB");
        absorb_fast = e != NULL && strcmp(e, "0") == 0 ? 0 : 1;
    }
    return absorb_fast == 1;
}

static bool
absorb_fast_fits(const struct mt_gpu_weight *kvb, int nope)
{
    return mt_gpu_absorb_fast() && kvb->dtype == MT_DTYPE_F8_E4M3 && kvb->cols % 128 == 0 &&
           nope <= ABF_MAX_NOPE;
}

/* The token chunk of the FP8 kernels: 1, 2 or 4 tokens a block. */
static int
absorb_chunk(int n_tok)
{
    return n_tok == 1 ? 1 : n_tok == 2 ? 2 : 4;
}

/*
 * Block (h, 128-column tile), 8 warps: warp w sums its share of the nope rows d for 4 columns a
 * lane (one 4-byte FP8 load), for every token at once; the 8 partial sums meet in shared memory.
 * Each weight is read once for all n tokens, with 16 independent loads in flight a thread (a
 * thread-per-column loop over d was latency-bound: 60 us for 8 MB on an H200).
 */
#define ABS_WARPS (ABS_THREADS / 32)
#define ABS_TILE 128

static __global__ void
absorb_q_kernel(const float *__restrict__ q, const struct mt_gpu_weight kvb, int n, int H,
                int nope, int vd, int rope, bool vec, float *__restrict__ q_lat,
                float *__restrict__ q_pe)
{
    mt_pdl_enter();
    __shared__ float part[ABS_WARPS][MT_GPU_GEMV_MAX_TOK][ABS_TILE];
    int h = blockIdx.x;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int kvl = (int)kvb.cols, qk = nope + rope;
    int c0 = blockIdx.y * ABS_TILE + lane * 4;
    int per = (nope + ABS_WARPS - 1) / ABS_WARPS;
    int d0 = warp * per, d1 = min(nope, d0 + per);
    float acc[MT_GPU_GEMV_MAX_TOK][4];

#pragma unroll
    for (int t = 0; t < MT_GPU_GEMV_MAX_TOK; t++) {
        for (int k = 0; k < 4; k++) {
            acc[t][k] = 0.0f;
        }
    }
    if (c0 < kvl) {
#pragma unroll 4
        for (int d = d0; d < d1; d++) {
            float w[4];
            kvb_at4(kvb, (int64_t)h * (nope + vd) + d, c0, vec, w);
#pragma unroll
            for (int t = 0; t < MT_GPU_GEMV_MAX_TOK; t++) {
                if (t < n) {
                    float x = q[((int64_t)t * H + h) * qk + d];
                    for (int k = 0; k < 4; k++) {
                        acc[t][k] += x * w[k];
                    }
                }
            }
        }
    }
    for (int t = 0; t < n; t++) {
        for (int k = 0; k < 4; k++) {
            part[warp][t][lane * 4 + k] = acc[t][k];
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < n * ABS_TILE; i += ABS_THREADS) {
        int t = i / ABS_TILE, cc = i % ABS_TILE, c = blockIdx.y * ABS_TILE + cc;
        if (c < kvl) {
            float a = 0.0f;
            for (int w = 0; w < ABS_WARPS; w++) {
                a += part[w][t][cc];
            }
            q_lat[((int64_t)t * H + h) * kvl + c] = a;
        }
    }
    if (blockIdx.y == 0) {
        for (int i = threadIdx.x; i < n * rope; i += ABS_THREADS) {
            int t = i / rope;
            q_pe[((int64_t)t * H + h) * rope + i % rope] = q[((int64_t)t * H + h) * qk + nope +
                                                             i % rope];
        }
    }
}

extern "C" mt_status_t
mt_gpu_mla_absorb_q(const float *q, const struct mt_gpu_weight *kvb, int n_tok, int n_heads,
                    int nope, int vd, int rope, float *q_lat, float *q_pe,
                    struct CUstream_st *stream)
{
    if (q == NULL || kvb == NULL || kvb->data == NULL || q_lat == NULL || q_pe == NULL ||
        n_tok < 1 || n_tok > MT_GPU_GEMV_MAX_TOK || n_heads < 1 || nope < 1 || vd < 1 ||
        kvb->cols < 1 || rope < 0 || kvb->rows != (int64_t)n_heads * (nope + vd) ||
        (kvb->dtype == MT_DTYPE_F8_E4M3 && kvb->scale == NULL)) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu absorb q: %d tokens, %d heads, nope %d, v %d, kv_b "
                       "%lld x %lld", n_tok, n_heads, nope, vd,
                       kvb != NULL ? (long long)kvb->rows : 0LL,
                       kvb != NULL ? (long long)kvb->cols : 0LL);
    }
    if (absorb_fast_fits(kvb, nope)) {
        int nt = absorb_chunk(n_tok);
        dim3 g((unsigned)n_heads, (unsigned)(kvb->cols / 128), (unsigned)MT_CEIL_DIV(n_tok, nt));
        if (nt == 1) {
            mt_pdl_launch(absorb_q_fp8_kernel<1>, g, dim3(ABF_THREADS), 0, stream, q, *kvb, n_tok,
                          n_heads, nope, vd, rope, q_lat, q_pe);
        } else if (nt == 2) {
            mt_pdl_launch(absorb_q_fp8_kernel<2>, g, dim3(ABF_THREADS), 0, stream, q, *kvb, n_tok,
                          n_heads, nope, vd, rope, q_lat, q_pe);
        } else {
            mt_pdl_launch(absorb_q_fp8_kernel<4>, g, dim3(ABF_THREADS), 0, stream, q, *kvb, n_tok,
                          n_heads, nope, vd, rope, q_lat, q_pe);
        }
        return mt_cuda_launched("mla_absorb_q", stream);
    }
    dim3 grid((unsigned)n_heads, (unsigned)MT_CEIL_DIV(kvb->cols, (int64_t)ABS_TILE));
    mt_pdl_launch(absorb_q_kernel, dim3(grid), dim3(ABS_THREADS), 0, stream, q, *kvb, n_tok,
                  n_heads, nope, vd, rope, kvb->cols % 4 == 0, q_lat, q_pe);
    return mt_cuda_launched("mla_absorb_q", stream);
}

/*
 * One warp per (h, j): out[t][h*vd + j] = kv_b[h*(nope+vd)+nope+j] . o_lat[t][h], all t; a lane
 * takes 4 columns at a time (one 4-byte FP8 load, one float4 of each token's o_lat).
 */
static __global__ void
absorb_v_kernel(const float *__restrict__ o_lat, const struct mt_gpu_weight kvb, int n, int H,
                int nope, int vd, bool vec, float *__restrict__ out)
{
    mt_pdl_enter();
    int row = blockIdx.x * (EO_THREADS / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    int kvl = (int)kvb.cols;
    float acc[MT_GPU_GEMV_MAX_TOK];

    if (row >= H * vd) {
        return;
    }
    int h = row / vd;
    int j = row % vd;
    int64_t wr = (int64_t)h * (nope + vd) + nope + j;
    for (int t = 0; t < MT_GPU_GEMV_MAX_TOK; t++) {
        acc[t] = 0.0f;
    }
#pragma unroll 4
    for (int c = lane * 4; c < kvl; c += 128) {
        float w[4];
        kvb_at4(kvb, wr, c, vec, w);
#pragma unroll
        for (int t = 0; t < MT_GPU_GEMV_MAX_TOK; t++) {
            if (t < n) {
                const float *o = o_lat + ((int64_t)t * H + h) * kvl + c;
                if (vec) {
                    float4 x = *(const float4 *)o;
                    acc[t] += w[0] * x.x + w[1] * x.y + w[2] * x.z + w[3] * x.w;
                } else {
                    for (int k = 0; k < 4 && c + k < kvl; k++) {
                        acc[t] += w[k] * o[k];
                    }
                }
            }
        }
    }
    for (int t = 0; t < n; t++) {
        float a = mt_warp_sum(acc[t]);
        if (lane == 0) {
            out[(int64_t)t * H * vd + row] = a;
        }
    }
}

extern "C" mt_status_t
mt_gpu_mla_absorb_v(const float *o_lat, const struct mt_gpu_weight *kvb, int n_tok, int n_heads,
                    int nope, int vd, float *out, struct CUstream_st *stream)
{
    if (o_lat == NULL || kvb == NULL || kvb->data == NULL || out == NULL || n_tok < 1 ||
        n_tok > MT_GPU_GEMV_MAX_TOK || n_heads < 1 || vd < 1 || kvb->cols < 1 ||
        kvb->rows != (int64_t)n_heads * (nope + vd) ||
        (kvb->dtype == MT_DTYPE_F8_E4M3 && kvb->scale == NULL)) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu absorb v: %d tokens, %d heads, v %d", n_tok, n_heads,
                       vd);
    }
    if (absorb_fast_fits(kvb, nope)) {
        int nt = absorb_chunk(n_tok);
        dim3 g((unsigned)n_heads, (unsigned)MT_CEIL_DIV(vd, 32), (unsigned)MT_CEIL_DIV(n_tok, nt));
        if (nt == 1) {
            mt_pdl_launch(absorb_v_fp8_kernel<1>, g, dim3(ABF_THREADS), 0, stream, o_lat, *kvb,
                          n_tok, n_heads, nope, vd, out);
        } else if (nt == 2) {
            mt_pdl_launch(absorb_v_fp8_kernel<2>, g, dim3(ABF_THREADS), 0, stream, o_lat, *kvb,
                          n_tok, n_heads, nope, vd, out);
        } else {
            mt_pdl_launch(absorb_v_fp8_kernel<4>, g, dim3(ABF_THREADS), 0, stream, o_lat, *kvb,
                          n_tok, n_heads, nope, vd, out);
        }
        return mt_cuda_launched("mla_absorb_v", stream);
    }
    unsigned blocks = (unsigned)MT_CEIL_DIV(n_heads * vd, EO_THREADS / 32);
    mt_pdl_launch(absorb_v_kernel, dim3(blocks), dim3(EO_THREADS), 0, stream, o_lat, *kvb, n_tok,
                  n_heads, nope, vd, kvb->cols % 4 == 0, out);
    return mt_cuda_launched("mla_absorb_v", stream);
}

/* ---- MLA decode at any shape: one block per head --------------------------------------------- */

static __device__ __forceinline__ float
cache_at(const void *p, bool bf16, int64_t i)
{
    if (bf16) {
        return __uint_as_float((uint32_t)((const uint16_t *)p)[i] << 16);
    }
    return ((const float *)p)[i];
}

static __device__ float
block_reduce(float v, bool is_max, float *red)
{
    int lane = threadIdx.x % 32;
    int warp = threadIdx.x / 32;

    v = is_max ? mt_warp_max(v) : mt_warp_sum(v);
    __syncthreads();
    if (lane == 0) {
        red[warp] = v;
    }
    __syncthreads();
    v = red[0];
    for (int i = 1; i < EO_THREADS / 32; i++) {
        v = is_max ? fmaxf(v, red[i]) : v + red[i];
    }
    return v;
}

static __global__ void
mla_any_kernel(const float *__restrict__ q_lat, const float *__restrict__ q_pe, int kvl, int rope,
               bool bf16, const void *lat, const float *__restrict__ kpe,
               const int32_t *__restrict__ idx, int n_idx, float scale, float *__restrict__ work,
               float *__restrict__ o_lat)
{
    mt_pdl_enter();
    __shared__ float red[EO_THREADS / 32];
    int h = blockIdx.x;
    const float *ql = q_lat + (int64_t)h * kvl;
    const float *qp = q_pe + (int64_t)h * rope;
    float *p = work + (int64_t)h * n_idx;
    float m = -INFINITY;

    for (int j = threadIdx.x; j < n_idx; j += EO_THREADS) {
        int64_t s = idx != NULL ? idx[j] : j;
        float v = -INFINITY;
        if (s >= 0) {
            double d = 0.0;
            for (int i = 0; i < kvl; i++) {
                d += (double)ql[i] * cache_at(lat, bf16, s * kvl + i);
            }
            for (int i = 0; i < rope; i++) {
                d += (double)qp[i] * kpe[s * rope + i];
            }
            v = (float)d * scale;
        }
        p[j] = v;
        m = fmaxf(m, v);
    }
    m = block_reduce(m, true, red);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < n_idx; j += EO_THREADS) {
        float e = p[j] == -INFINITY ? 0.0f : expf(p[j] - m);
        p[j] = e;
        sum += e;
    }
    sum = block_reduce(sum, false, red);
    __syncthreads();
    float inv = 1.0f / sum;
    for (int c = threadIdx.x; c < kvl; c += EO_THREADS) {
        float a = 0.0f;
        for (int j = 0; j < n_idx; j++) {
            int64_t s = idx != NULL ? idx[j] : j;
            if (s >= 0) {
                a += p[j] * inv * cache_at(lat, bf16, s * kvl + c);
            }
        }
        o_lat[(int64_t)h * kvl + c] = a;
    }
}

extern "C" mt_status_t
mt_gpu_mla_decode_any(const float *q_lat, const float *q_pe, int n_heads, int kv_rank, int rope,
                      enum mt_dtype lat_dtype, const void *lat, const float *kpe,
                      const int32_t *idx, int n_idx, float scale, float *work, float *o_lat,
                      struct CUstream_st *stream)
{
    if ((lat_dtype != MT_DTYPE_F32 && lat_dtype != MT_DTYPE_BF16) || n_heads < 1 ||
        kv_rank < 1 || rope < 0 || n_idx < 1 || q_lat == NULL || lat == NULL || kpe == NULL ||
        work == NULL || o_lat == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu mla any: %d heads, rank %d, rope %d, %d positions",
                       n_heads, kv_rank, rope, n_idx);
    }
    mt_pdl_launch(mla_any_kernel, dim3(n_heads), dim3(EO_THREADS), 0, stream, q_lat, q_pe, kv_rank,
                  rope, lat_dtype == MT_DTYPE_BF16, lat, kpe, idx, n_idx, scale, work, o_lat);
    return mt_cuda_launched("mla_decode_any", stream);
}

/* ---- row copies, scaling, gather and scatter ------------------------------------------------- */

static __global__ void
rows_convert_kernel(void *dst, bool bf16, int64_t dst_ld, const float *src, int64_t src_ld,
                    int n_rows, int dim)
{
    mt_pdl_enter();
    int64_t i = (int64_t)blockIdx.x * EO_THREADS + threadIdx.x;

    if (i >= (int64_t)n_rows * dim) {
        return;
    }
    int64_t r = i / dim;
    int64_t c = i % dim;
    float v = src[r * src_ld + c];
    if (bf16) {
        ((uint16_t *)dst)[r * dst_ld + c] = mt_f32_to_bf16_bits(v);
    } else {
        ((float *)dst)[r * dst_ld + c] = v;
    }
}

extern "C" mt_status_t
mt_gpu_rows_convert(void *dst, enum mt_dtype dst_dtype, int64_t dst_ld, const float *src,
                    int64_t src_ld, int n_rows, int dim, struct CUstream_st *stream)
{
    if ((dst_dtype != MT_DTYPE_F32 && dst_dtype != MT_DTYPE_BF16) || dst == NULL || src == NULL ||
        n_rows < 1 || dim < 1) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu rows convert: %d rows of %d", n_rows, dim);
    }
    int64_t n = (int64_t)n_rows * dim;
    mt_pdl_launch(rows_convert_kernel, dim3((unsigned)MT_CEIL_DIV(n, (int64_t)EO_THREADS)),
                  dim3(EO_THREADS), 0, stream, dst, dst_dtype == MT_DTYPE_BF16, dst_ld, src, src_ld,
                  n_rows, dim);
    return mt_cuda_launched("rows_convert", stream);
}

static __global__ void
scale_cols_kernel(float *x, int n_rows, int64_t ld, int offset, int len, float s)
{
    mt_pdl_enter();
    int64_t i = (int64_t)blockIdx.x * EO_THREADS + threadIdx.x;

    if (i < (int64_t)n_rows * len) {
        x[(i / len) * ld + offset + i % len] *= s;
    }
}

extern "C" mt_status_t
mt_gpu_scale_cols(float *x, int n_rows, int64_t ld, int offset, int len, float s,
                  struct CUstream_st *stream)
{
    if (x == NULL || n_rows < 1 || len < 1) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu scale cols: %d rows of %d", n_rows, len);
    }
    int64_t n = (int64_t)n_rows * len;
    mt_pdl_launch(scale_cols_kernel, dim3((unsigned)MT_CEIL_DIV(n, (int64_t)EO_THREADS)),
                  dim3(EO_THREADS), 0, stream, x, n_rows, ld, offset, len, s);
    return mt_cuda_launched("scale_cols", stream);
}

static __global__ void
gather_rows_kernel(const float *src, const int32_t *rows, int n, int dim, float *dst)
{
    mt_pdl_enter();
    int64_t i = (int64_t)blockIdx.x * EO_THREADS + threadIdx.x;

    if (i < (int64_t)n * dim) {
        dst[i] = src[(int64_t)rows[i / dim] * dim + i % dim];
    }
}

extern "C" mt_status_t
mt_gpu_gather_rows(const float *src, const int32_t *rows, int n, int dim, float *dst,
                   struct CUstream_st *stream)
{
    if (src == NULL || rows == NULL || dst == NULL || n < 1 || dim < 1) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu gather rows: %d rows of %d", n, dim);
    }
    int64_t m = (int64_t)n * dim;
    mt_pdl_launch(gather_rows_kernel, dim3((unsigned)MT_CEIL_DIV(m, (int64_t)EO_THREADS)),
                  dim3(EO_THREADS), 0, stream, src, rows, n, dim, dst);
    return mt_cuda_launched("gather_rows", stream);
}

/* Thread (t, d): y[t][d] += w[p] * ys[p][d] for token t's pairs p in list order, the sum kept
 * in a register (the same fused multiply-adds, in the same order, as adding into y). */
static __global__ void
scatter_add_kernel(float *y, const float *ys, const int32_t *lists, int k, const float *w,
                   int dim)
{
    mt_pdl_enter();
    int d = blockIdx.x * EO_THREADS + threadIdx.x;
    int64_t t = blockIdx.y;

    if (d >= dim) {
        return;
    }
    const int32_t *list = lists + t * k;
    float r = y[t * dim + d];
    for (int j = 0; j < k; j++) {
        int p = list[j];
        if (p < 0) {
            break;
        }
        r += w[p] * ys[(int64_t)p * dim + d];
    }
    y[t * dim + d] = r;
}

extern "C" mt_status_t
mt_gpu_scatter_add_rows(float *y, const float *ys, const int32_t *lists, int k, const float *w,
                        int n_tok, int dim, struct CUstream_st *stream)
{
    if (y == NULL || ys == NULL || lists == NULL || w == NULL || k < 1 || n_tok < 1 ||
        n_tok > 65535 || dim < 1) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu scatter add: %d tokens of %d pairs at most, %d "
                       "wide", n_tok, k, dim);
    }
    mt_pdl_launch(scatter_add_kernel, dim3((unsigned)MT_CEIL_DIV(dim, EO_THREADS), (unsigned)n_tok),
                  dim3(EO_THREADS), 0, stream, y, ys, lists, k, w, dim);
    return mt_cuda_launched("scatter_add_rows", stream);
}

/* ---- the FP8 indexer: Hadamard + act_quant, scores at any shape ----------------------------- */

/*
 * One warp per vector, the CPU's exact arithmetic (mt_cpu_hadamard, mt_cpu_act_quant with
 * ue8m0): the vector (at most 128 wide) sits in the lanes' registers, HQ_EPL consecutive values a
 * lane; each butterfly stage computes every pair (a + b, a - b) from the same two operands as the
 * CPU's loop, inside a lane for the two shortest distances and between lanes by a shuffle for the
 * others, so every value is the CPU's bit for bit; the maximum for the scale is exact in any
 * order. Then the same clamp and e4m3 round to nearest even. (One thread a vector, walking 896
 * butterflies through local memory, took ~30 us of a decode step's layer for the 64 query heads.)
 */
#define HQ_EPL (MT_GPU_HADAMARD_MAX / 32) /* values a lane */

static __global__ void
hadamard_quant_kernel(const float *x, int n_vec, int dim, uint8_t *q8, float *scale_out,
                      const float *w_in, float w_mul)
{
    mt_pdl_enter();
    int lane = threadIdx.x & 31;
    int v = blockIdx.x * (EO_THREADS / 32) + threadIdx.x / 32;
    float h[HQ_EPL];

    if (v >= n_vec) {
        return; /* the whole warp */
    }
#pragma unroll
    for (int k = 0; k < HQ_EPL; k++) {
        int i = lane * HQ_EPL + k;
        h[k] = i < dim ? x[(int64_t)v * dim + i] : 0.0f;
    }
    for (int len = 1; len < dim; len <<= 1) {
        if (len < HQ_EPL) { /* partners in this lane: k and k + len where bit len of k is 0 */
#pragma unroll
            for (int k = 0; k < HQ_EPL; k++) {
                if ((k & len) == 0) {
                    float a = h[k];
                    float b = h[k + len];
                    h[k] = __fadd_rn(a, b);
                    h[k + len] = __fsub_rn(a, b);
                }
            }
        } else { /* the partner holds the same slot in lane ^ (len / HQ_EPL) */
            int m = len / HQ_EPL;
            bool lower = (lane & m) == 0;
#pragma unroll
            for (int k = 0; k < HQ_EPL; k++) {
                float o = __shfl_xor_sync(0xffffffffu, h[k], m);
                h[k] = lower ? __fadd_rn(h[k], o) : __fsub_rn(o, h[k]);
            }
        }
    }
    float s = (float)(1.0 / sqrt((double)dim));
    float amax = 0.0f;
#pragma unroll
    for (int k = 0; k < HQ_EPL; k++) {
        h[k] = __fmul_rn(h[k], s);
        if (lane * HQ_EPL + k < dim) {
            amax = fmaxf(amax, fabsf(h[k]));
        }
    }
    float qs = mt_ue8m0_scale(mt_warp_max(amax));
#pragma unroll
    for (int k = 0; k < HQ_EPL; k++) {
        int i = lane * HQ_EPL + k;
        if (i < dim) {
            q8[(int64_t)v * dim + i] = mt_e4m3_of(h[k], qs);
        }
    }
    if (lane == 0) {
        scale_out[v] = w_in != NULL ? w_in[v] * qs * w_mul : qs;
    }
}

extern "C" mt_status_t
mt_gpu_hadamard_quant(const float *x, int n_vec, int dim, uint8_t *q8, float *scale_out,
                      const float *w_in, float w_mul, struct CUstream_st *stream)
{
    if (x == NULL || q8 == NULL || scale_out == NULL || n_vec < 1 || dim < 1 ||
        dim > MT_GPU_HADAMARD_MAX || (dim & (dim - 1)) != 0) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu hadamard quant: %d vectors of %d", n_vec, dim);
    }
    mt_pdl_launch(hadamard_quant_kernel, dim3((unsigned)MT_CEIL_DIV(n_vec, EO_THREADS / 32)),
                  dim3(EO_THREADS), 0, stream, x, n_vec, dim, q8, scale_out, w_in, w_mul);
    return mt_cuda_launched("hadamard_quant", stream);
}

static __device__ __forceinline__ float
e4m3_to_f32(uint8_t b)
{
    __half_raw r = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)b, __NV_E4M3);
    return __half2float(__half(r));
}

/* One thread per key: out[s] = k_scale[s] * sum_h ReLU(q8[h] . k8[s]) * w[h]. */
static __global__ void
index_fp8_any_kernel(const uint8_t *q8, const float *w, int n_heads, int dim, const uint8_t *k8,
                     const float *k_scale, int64_t n_keys, float *out)
{
    mt_pdl_enter();
    int64_t s = (int64_t)blockIdx.x * EO_THREADS + threadIdx.x;

    if (s >= n_keys) {
        return;
    }
    const uint8_t *ks = k8 + s * dim;
    float acc = 0.0f;
    for (int h = 0; h < n_heads; h++) {
        const uint8_t *qh = q8 + (int64_t)h * dim;
        float d = 0.0f;
        for (int j = 0; j < dim; j++) {
            d += e4m3_to_f32(qh[j]) * e4m3_to_f32(ks[j]);
        }
        acc += (d > 0.0f ? d : 0.0f) * w[h];
    }
    out[s] = acc * k_scale[s];
}

extern "C" mt_status_t
mt_gpu_index_scores_fp8_any(const uint8_t *q8, const float *w, int n_heads, int dim,
                            const uint8_t *k8, const float *k_scale, int64_t n_keys, float *out,
                            struct CUstream_st *stream)
{
    if (q8 == NULL || w == NULL || k8 == NULL || k_scale == NULL || out == NULL || n_heads < 1 ||
        dim < 1 || n_keys < 1) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu fp8 index scores: %d heads x %d, %lld keys", n_heads,
                       dim, (long long)n_keys);
    }
    mt_pdl_launch(index_fp8_any_kernel, dim3((unsigned)MT_CEIL_DIV(n_keys, (int64_t)EO_THREADS)),
                  dim3(EO_THREADS), 0, stream, q8, w, n_heads, dim, k8, k_scale, n_keys, out);
    return mt_cuda_launched("index_scores_fp8_any", stream);
}

/* ---- async copies for the engine ------------------------------------------------------------ */

extern "C" mt_status_t
mt_gpu_copy_async(void *dst, const void *src, size_t bytes, int to_device,
                  struct CUstream_st *stream)
{
    return MT_CUDA(cudaMemcpyAsync(dst, src, bytes,
                                   to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost,
                                   stream));
}

extern "C" mt_status_t
mt_gpu_stream_create(struct CUstream_st **stream_out)
{
    cudaStream_t s;
    mt_status_t st = MT_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

    if (st == MT_OK) {
        *stream_out = s;
    }
    return st;
}

extern "C" void
mt_gpu_stream_destroy(struct CUstream_st *stream)
{
    if (stream != NULL) {
        cudaStreamDestroy(stream);
    }
}

extern "C" mt_status_t
mt_gpu_mem_free(int dev, size_t *free_out, size_t *total_out)
{
    mt_status_t st = MT_CUDA(cudaSetDevice(dev));

    if (st == MT_OK) {
        st = MT_CUDA(cudaMemGetInfo(free_out, total_out));
    }
    return st;
}
