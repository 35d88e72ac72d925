/* SPDX-License-Identifier: MIT */
/*
 * gemv_core.cuh - the inner loop of every GEMV (gemv.cu, moe.cu): a group of T threads computes
 * R output rows for up to NT tokens, reading each weight byte once, 16 bytes per load.
 *
 * The one idea: a decode GEMV is a stream of weight bytes; it runs at memory bandwidth when
 * enough 16-byte loads are in flight (each thread issues UNROLL x R of them before using any) and
 * the dequantization should hide under them: half of each 16 bytes is decoded e4m3 -> half2 ->
 * float (conversion instructions), the other half by integer moves straight to
 * fp32 (common.cuh); one fp32 FMA per weight and token, and the 128x128 block scale applied once
 * per 16 weights. Measured on the H200 (bench/results/kernels-h200.md): BF16 streams at 94% of
 * HBM read, FP8 at 34-57% for matrices of 16 MB or more (all-half2 decoding: 32-55%), so FP8 is
 * still bound by the work per byte, not by memory. A one-token tensor-core version (mma.sync,
 * x as f16 hi + lo columns) measured slower still (32-53%); see the results file.
 * Tokens share the weights in registers, so 8 tokens cost the bytes of one.
 */
#ifndef MT_KERNELS_GEMV_CORE_CUH
#define MT_KERNELS_GEMV_CORE_CUH

#include "kernels/common.cuh"

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
static inline int
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

#endif /* MT_KERNELS_GEMV_CORE_CUH */
