/* SPDX-License-Identifier: MIT */
/*
 * gemv.cu - y = W x for 1 to 8 tokens, W in FP8 e4m3 with 128x128 fp32 block scales or in BF16.
 *
 * The one idea: decode reads every weight once per token batch, so the kernel is a streaming
 * read at HBM bandwidth with the arithmetic hidden under it. FP8 runs on tensor cores through
 * gemv_core.cuh (shared with moe.cu), whose cost per weight byte does not grow with the tokens,
 * for 2 to 8 tokens. One FP8 token and BF16 (the lm_head) use a CUDA-core loop: a block of 256
 * threads is split into groups of T threads, each group owns 2 adjacent rows (x is reused from
 * registers), T chosen per shape so that every SM has work. BF16 streams at 93-94% of HBM read
 * that way; for one FP8 token it measured 55-57% on the large matrices against 47-48% for the
 * tensor-core core (bench/results/kernels-h200.md), so one token stays on it until the core
 * beats it.
 */
#include <config.h>

#include "kernels/ops.h"
#include "kernels/cuda_check.cuh"
#include "kernels/gemv_core.cuh"

/* ---- FP8 ------------------------------------------------------------------------------------ */

/* Block: FP8G_WARPS / ks row groups of 32 rows, ks warps each splitting the columns. */
template <int S>
static __global__ void __launch_bounds__(FP8G_THREADS, 2)
gemv_fp8_kernel(const uint8_t *__restrict__ W, const float *__restrict__ Sc, int64_t rows,
                int64_t cols, const float *__restrict__ x, int nt, float *__restrict__ y, int ks)
{
    extern __shared__ uint4 ring[];
    int w = threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int c = lane & 3;
    int64_t r0 = ((int64_t)blockIdx.x * (FP8G_WARPS / ks) + w / ks) * (16 * FP8G_TILES);
    struct fp8g_tile t[FP8G_TILES];
    float acc[FP8G_TILES][4];

#pragma unroll
    for (int i = 0; i < FP8G_TILES; i++) {
        t[i] = fp8g_tile_at(W, Sc, rows, cols, r0 + 16 * i);
    }
    const float *xrow = g < nt ? x + (int64_t)g * cols : NULL;
    fp8g_warp<S>(ring, t, cols, (int)(cols / 16), xrow, w % ks, ks, acc);
    if (!fp8g_block_reduce(ring, ks, acc)) {
        return;
    }
#pragma unroll
    for (int i = 0; i < FP8G_TILES; i++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int64_t row = r0 + 16 * i + g + 8 * (e >> 1);
            int tok = 2 * c + (e & 1);
            if (row < rows && tok < nt) {
                y[(int64_t)tok * rows + row] = acc[i][e] * MT_FP8_DECODE_SCALE;
            }
        }
    }
}

template <int S>
static mt_status_t
gemv_fp8_launch(const struct mt_gpu_weight *w, const float *x, int n_tok, float *y,
                cudaStream_t s)
{
    int ks = fp8g_split(w->cols / 16);
    long long rows_per_block = (long long)(FP8G_WARPS / ks) * 16 * FP8G_TILES;
    unsigned blocks = (unsigned)MT_CEIL_DIV(w->rows, rows_per_block);

    static unsigned long long prepared;

    fp8g_prepare(gemv_fp8_kernel<S>, FP8G_SMEM(S), &prepared);
    gemv_fp8_kernel<S><<<blocks, FP8G_THREADS, FP8G_SMEM(S), s>>>(
        (const uint8_t *)w->data, w->scale, w->rows, w->cols, x, n_tok, y, ks);
    return mt_cuda_launched("gemv_fp8", s);
}

/* ---- CUDA cores: BF16, and FP8 for one token ------------------------------------------------ */

#define GEMV_THREADS 256
#define GEMV_ROWS 2   /* R: rows per thread group (x is reused across them) */
/* 16-byte loads per row in flight per thread (4 for FP8 measured 48-50% of HBM read on the H200
 * against 55% with 2: more registers, fewer resident warps) */
#define GEMV_UNROLL 2

/*
 * Accumulate acc[i][t] += W[row i, :] . x[t, :] over this thread's units (16 weights for FP8, 8 for
 * BF16) lane, lane + T, ... of `units`. wrow[i] NULL means row i does not exist. srow[i]: the
 * FP8 scale row of row i's block row (unused for BF16). x[t] rows are 16-byte aligned fp32.
 */
template <bool FP8, int NT, int R>
static __device__ __forceinline__ void
gemv_group_dot(const uint4 *const (&wrow)[R], const float *const (&srow)[R], int units,
               const float4 *const (&x)[NT], int nt, int lane, int T, float (&acc)[R][NT])
{
    for (int u0 = lane; u0 < units; u0 += T * GEMV_UNROLL) {
        uint4 w[GEMV_UNROLL][R];

#pragma unroll
        for (int k = 0; k < GEMV_UNROLL; k++) {
            int u = u0 + k * T;
#pragma unroll
            for (int i = 0; i < R; i++) {
                w[k][i] = (u < units && wrow[i] != NULL) ? __ldcs(wrow[i] + u)
                                                         : make_uint4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int k = 0; k < GEMV_UNROLL; k++) {
            int u = u0 + k * T;
            if (u >= units) {
                break;
            }
            if (FP8) {
                /* words 0-1 through half2 (conversion pipe), words 2-3 through integer moves
                 * (mt_fp8_to_f32_scaled): the two decoders share the work between pipes */
                float wh[R][8];
                float wi[R][8];
                float sc[R];
#pragma unroll
                for (int i = 0; i < R; i++) {
                    const uint32_t *v = reinterpret_cast<const uint32_t *>(&w[k][i]);
                    sc[i] = wrow[i] != NULL ? __ldg(srow[i] + (u >> 3)) : 0.0f;
#pragma unroll
                    for (int j = 0; j < 2; j++) {
                        __half2 lo;
                        __half2 hi;
                        mt_fp8x4_decode(v[j], &lo, &hi);
                        float2 a = __half22float2(lo);
                        float2 b = __half22float2(hi);
                        wh[i][4 * j + 0] = a.x;
                        wh[i][4 * j + 1] = b.x;
                        wh[i][4 * j + 2] = a.y;
                        wh[i][4 * j + 3] = b.y;
                        wi[i][4 * j + 0] = mt_fp8_to_f32_scaled<0>(v[2 + j]);
                        wi[i][4 * j + 1] = mt_fp8_to_f32_scaled<1>(v[2 + j]);
                        wi[i][4 * j + 2] = mt_fp8_to_f32_scaled<2>(v[2 + j]);
                        wi[i][4 * j + 3] = mt_fp8_to_f32_scaled<3>(v[2 + j]);
                    }
                }
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    if (t >= nt) {
                        break;
                    }
                    float xf[16];
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        float4 q = __ldg(x[t] + 4 * u + j);
                        xf[4 * j + 0] = q.x;
                        xf[4 * j + 1] = q.y;
                        xf[4 * j + 2] = q.z;
                        xf[4 * j + 3] = q.w;
                    }
#pragma unroll
                    for (int i = 0; i < R; i++) {
                        float ph = 0.0f;
                        float pi = 0.0f;
#pragma unroll
                        for (int j = 0; j < 8; j++) {
                            ph = fmaf(wh[i][j], xf[j], ph);
                            pi = fmaf(wi[i][j], xf[8 + j], pi);
                        }
                        float p = fmaf(ph, MT_FP8_DECODE_SCALE, pi * MT_FP8_F32_SCALE);
                        acc[i][t] = fmaf(p, sc[i], acc[i][t]);
                    }
                }
            } else {
                float wf[R][8];
#pragma unroll
                for (int i = 0; i < R; i++) {
                    const uint32_t *v = reinterpret_cast<const uint32_t *>(&w[k][i]);
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        float2 f = mt_bf16x2_decode(v[j]);
                        wf[i][2 * j] = f.x;
                        wf[i][2 * j + 1] = f.y;
                    }
                }
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    if (t >= nt) {
                        break;
                    }
                    float4 q0 = __ldg(x[t] + 2 * u);
                    float4 q1 = __ldg(x[t] + 2 * u + 1);
                    float xf[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
#pragma unroll
                    for (int i = 0; i < R; i++) {
#pragma unroll
                        for (int j = 0; j < 8; j++) {
                            acc[i][t] = fmaf(wf[i][j], xf[j], acc[i][t]);
                        }
                    }
                }
            }
        }
    }
}

/*
 * Sum acc over the T threads of each group of the block (GEMV_THREADS threads, groups of T
 * consecutive threads, T a power of two >= 32). Every thread of the block must call it. On
 * return, thread `lane == 0` of each group holds the group's totals in acc.
 */
template <int NT, int R>
static __device__ __forceinline__ void
gemv_group_reduce(float (&acc)[R][NT], int lane, int T)
{
    __shared__ float red[GEMV_THREADS / 32][R * NT];
    int warp = threadIdx.x / 32;

#pragma unroll
    for (int i = 0; i < R; i++) {
#pragma unroll
        for (int t = 0; t < NT; t++) {
            acc[i][t] = mt_warp_sum(acc[i][t]);
        }
    }
    if (T == 32) {
        return;
    }
    if ((threadIdx.x & 31) == 0) {
#pragma unroll
        for (int i = 0; i < R; i++) {
#pragma unroll
            for (int t = 0; t < NT; t++) {
                red[warp][i * NT + t] = acc[i][t];
            }
        }
    }
    __syncthreads();
    if (lane == 0) {
#pragma unroll
        for (int i = 0; i < R; i++) {
#pragma unroll
            for (int t = 0; t < NT; t++) {
                float s = 0.0f;
                for (int wi = 0; wi < T / 32; wi++) {
                    s += red[warp + wi][i * NT + t];
                }
                acc[i][t] = s;
            }
        }
    }
}

/* Threads per row group for rows of `units` 16-byte units: enough units per thread to keep
 * loads in flight, but more threads per row when there are too few rows to fill the GPU. */
static int
gemv_group_threads(long long units, long long rows_total, int n_sm)
{
    int T = 32;

    while (T < GEMV_THREADS && (long long)T * 4 <= units) {
        T *= 2;
    }
    while (T < GEMV_THREADS && (long long)T * 2 <= units &&
           MT_CEIL_DIV(rows_total, (long long)(GEMV_THREADS / T) * GEMV_ROWS) < 2LL * n_sm) {
        T *= 2;
    }
    return T;
}


template <bool FP8, int NT>
static __global__ void
gemv_kernel(const uint8_t *__restrict__ W, const float *__restrict__ S, int64_t rows, int64_t cols,
            const float *__restrict__ x, float *__restrict__ y, int T)
{
    const int R = GEMV_ROWS;
    int groups = GEMV_THREADS / T;
    int lane = threadIdx.x % T;
    int64_t r0 = ((int64_t)blockIdx.x * groups + threadIdx.x / T) * R;
    int64_t row_bytes = cols * (FP8 ? 1 : 2);
    int64_t n_cb = (cols + 127) / 128;
    int units = (int)(cols / (FP8 ? 16 : 8));
    const uint4 *wrow[R];
    const float *srow[R];
    const float4 *xr[NT];
    float acc[R][NT];

#pragma unroll
    for (int i = 0; i < R; i++) {
        int64_t r = r0 + i;
        wrow[i] = r < rows ? reinterpret_cast<const uint4 *>(W + r * row_bytes) : NULL;
        srow[i] = FP8 ? S + (r / 128) * n_cb : NULL;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            acc[i][t] = 0.0f;
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        xr[t] = reinterpret_cast<const float4 *>(x + t * cols);
    }
    gemv_group_dot<FP8, NT, R>(wrow, srow, units, xr, NT, lane, T, acc);
    gemv_group_reduce<NT, R>(acc, lane, T);
    if (lane != 0) {
        return;
    }
#pragma unroll
    for (int i = 0; i < R; i++) {
        if (r0 + i < rows) {
#pragma unroll
            for (int t = 0; t < NT; t++) {
                y[t * rows + r0 + i] = acc[i][t];
            }
        }
    }
}

static int
sm_count(void)
{
    int dev = 0;
    int n = 0;

    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    return n > 0 ? n : 1;
}

template <bool FP8, int NT>
static mt_status_t
gemv_launch(const struct mt_gpu_weight *w, const float *x, float *y, cudaStream_t s)
{
    long long units = w->cols / (FP8 ? 16 : 8);
    int T = gemv_group_threads(units, w->rows, sm_count());
    long long rows_per_block = (long long)(GEMV_THREADS / T) * GEMV_ROWS;
    unsigned blocks = (unsigned)MT_CEIL_DIV(w->rows, rows_per_block);

    gemv_kernel<FP8, NT><<<blocks, GEMV_THREADS, 0, s>>>(
        (const uint8_t *)w->data, w->scale, w->rows, w->cols, x, y, T);
    return mt_cuda_launched(FP8 ? "gemv_fp8" : "gemv_bf16", s);
}

template <bool FP8>
static mt_status_t
gemv_dispatch(const struct mt_gpu_weight *w, const float *x, int n_tok, float *y, cudaStream_t s)
{
    switch (n_tok) {
    case 1: return gemv_launch<FP8, 1>(w, x, y, s);
    case 2: return gemv_launch<FP8, 2>(w, x, y, s);
    case 3: return gemv_launch<FP8, 3>(w, x, y, s);
    case 4: return gemv_launch<FP8, 4>(w, x, y, s);
    case 5: return gemv_launch<FP8, 5>(w, x, y, s);
    case 6: return gemv_launch<FP8, 6>(w, x, y, s);
    case 7: return gemv_launch<FP8, 7>(w, x, y, s);
    default: return gemv_launch<FP8, 8>(w, x, y, s);
    }
}

extern "C" mt_status_t
mt_gpu_linear(const struct mt_gpu_weight *w, const float *x, int n_tok, float *y,
              struct CUstream_st *stream)
{
    bool fp8 = w->dtype == MT_DTYPE_F8_E4M3;

    if (!fp8 && w->dtype != MT_DTYPE_BF16) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu linear: weight dtype %s is not F8_E4M3 or BF16",
                       mt_dtype_name(w->dtype));
    }
    if (n_tok < 1 || n_tok > MT_GPU_GEMV_MAX_TOK || w->rows < 1 || w->cols < 1 ||
        w->cols % (fp8 ? 16 : 8) != 0 || w->rows > INT32_MAX * 2LL ||
        w->cols / 16 > INT32_MAX) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu linear: %lld x %lld %s weight with %d tokens",
                       (long long)w->rows, (long long)w->cols, mt_dtype_name(w->dtype), n_tok);
    }
    if (w->data == NULL || x == NULL || y == NULL || (fp8 && w->scale == NULL) ||
        ((uintptr_t)w->data | (uintptr_t)x) % 16 != 0) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu linear: NULL or not 16-byte aligned operand");
    }
    if (!fp8) {
        return gemv_dispatch<false>(w, x, n_tok, y, stream);
    }
    if (n_tok == 1) {
        return gemv_launch<true, 1>(w, x, y, stream);
    }
    return fp8g_stages() == 3 ? gemv_fp8_launch<3>(w, x, n_tok, y, stream)
                              : gemv_fp8_launch<2>(w, x, n_tok, y, stream);
}
