/* SPDX-License-Identifier: MIT */
/*
 * gemv.cu - y = W x for 1 to 8 tokens, W in FP8 e4m3 with 128x128 fp32 block scales or in BF16.
 *
 * The one idea: decode reads every weight once per token batch, so the kernel is a streaming
 * read at HBM bandwidth with the arithmetic hidden under it (gemv_core.cuh). A block of 256
 * threads is split into groups of T threads; each group owns 2 adjacent rows (the input is then
 * reused from registers) and T is chosen per shape so that short rows (512 columns) and few rows
 * (576 outputs) still fill every multiprocessor.
 */
#include <config.h>

#include "kernels/ops.h"
#include "kernels/cuda_check.cuh"
#include "kernels/gemv_core.cuh"

#include <cuda_fp16.h>
#include <math.h>

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

/* ---- one token on tensor cores ------------------------------------------------------------- */

/*
 * The SIMT loop above spends too many instructions per FP8 byte to stream at HBM speed (see
 * gemv_core.cuh). Here the tensor cores do the multiply-adds: mma.sync m16n8k16 (f16 x f16 ->
 * f32, sm_80+) with 16 weight rows as A, decoded e4m3 -> f16 exactly by bit moves, and the token
 * as B in two columns: x = hi + lo, both f16 (after a power-of-two scale that keeps |x| below
 * 2^14), so the product keeps about 22 bits of x and every weight is exact. The other six B
 * columns are zero: wasted tensor work, which is cheap. Each block packs x into shared memory
 * once and loops over 16-row tiles; the warps of a tile split its 128-column blocks and sum in a
 * fixed order. k is permuted as in indexer.cu so each lane reads whole 16-byte chunks.
 */
#define MMA_WARPS 8
#define MMA_MAX_COLS 24576 /* x as f16 hi + lo in shared memory: 4 bytes a column */

static __device__ __forceinline__ void
gemv_mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

static __global__ void __launch_bounds__(MMA_WARPS * 32)
gemv_fp8_mma_kernel(const uint8_t *__restrict__ W, const float *__restrict__ S, int64_t rows,
                    int cols, const float *__restrict__ x, float *__restrict__ y, int kw)
{
    extern __shared__ __align__(16) unsigned char smem[];
    __half *xh = (__half *)smem;               /* [cols] hi */
    __half *xl = xh + cols;                    /* [cols] lo */
    __shared__ float red[MMA_WARPS][16];
    __shared__ float amax_w[MMA_WARPS];
    int warp = threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int t = lane & 3;
    int n_cb = cols / 128;
    int64_t n_rt = (rows + 15) / 16;
    int rt_per_block = MMA_WARPS / kw;

    /* x / sx as f16 hi + lo, sx a power of two with max |x / sx| <= 2^14 */
    float am = 0.0f;
    for (int i = threadIdx.x; i < cols; i += MMA_WARPS * 32) {
        am = fmaxf(am, fabsf(x[i]));
    }
    am = mt_warp_max(am);
    if (lane == 0) {
        amax_w[warp] = am;
    }
    __syncthreads();
    am = 0.0f;
    for (int i = 0; i < MMA_WARPS; i++) {
        am = fmaxf(am, amax_w[i]);
    }
    int ex = 0;
    frexpf(am, &ex); /* am < 2^ex */
    float sx = ldexpf(1.0f, ex > 14 ? ex - 14 : 0);
    float inv_sx = 1.0f / sx;
    for (int i = threadIdx.x; i < cols; i += MMA_WARPS * 32) {
        float v = x[i] * inv_sx;
        __half h = __float2half_rn(v);
        xh[i] = h;
        xl[i] = __float2half_rn(v - __half2float(h));
    }
    __syncthreads();

    const __half *xs = g == 0 ? xh : xl; /* B column 0 = hi, 1 = lo, 2..7 = 0 */
    float out_scale = sx * MT_FP8_DECODE_SCALE;
    for (int64_t rt0 = (int64_t)blockIdx.x * rt_per_block; rt0 < n_rt;
         rt0 += (int64_t)gridDim.x * rt_per_block) {
        int64_t rt = rt0 + warp / kw;
        int64_t r_lo = rt * 16 + g;
        int64_t r_hi = r_lo + 8;
        const uint4 *wlo = reinterpret_cast<const uint4 *>(W + r_lo * cols);
        const uint4 *whi = reinterpret_cast<const uint4 *>(W + r_hi * cols);
        const float *srow = S + (rt * 16 / 128) * n_cb;
        bool ok_lo = rt < n_rt && r_lo < rows;
        bool ok_hi = rt < n_rt && r_hi < rows;
        float acc_lo = 0.0f;
        float acc_hi = 0.0f;

        /* two 128-column blocks per step: 8 loads of 16 bytes in flight per lane */
        for (int kb0 = warp % kw; kb0 < n_cb; kb0 += 2 * kw) {
            uint4 a_lo[2][2];
            uint4 a_hi[2][2];
#pragma unroll
            for (int q = 0; q < 2; q++) {
                int kb = kb0 + q * kw;
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    int u = kb * 8 + 4 * h + t; /* 16-byte unit: byte kb*128 + 64h + 16t */
                    bool in = kb < n_cb;
                    a_lo[q][h] = in && ok_lo ? __ldcs(wlo + u) : make_uint4(0, 0, 0, 0);
                    a_hi[q][h] = in && ok_hi ? __ldcs(whi + u) : make_uint4(0, 0, 0, 0);
                }
            }
#pragma unroll
            for (int q = 0; q < 2; q++) {
                int kb = kb0 + q * kw;
                if (kb >= n_cb) {
                    break;
                }
                float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    uint32_t lw[4] = {a_lo[q][h].x, a_lo[q][h].y, a_lo[q][h].z, a_lo[q][h].w};
                    uint32_t hw[4] = {a_hi[q][h].x, a_hi[q][h].y, a_hi[q][h].z, a_hi[q][h].w};
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        int col = kb * 128 + 64 * h + 16 * t + 4 * i;
                        uint32_t b0 = 0;
                        uint32_t b1 = 0;
                        if (g < 2) {
                            uint2 bv = *reinterpret_cast<const uint2 *>(xs + col);
                            b0 = bv.x;
                            b1 = bv.y;
                        }
                        uint32_t a[4];
                        a[0] = mt_fp8x2_to_half2_bits(lw[i]);
                        a[1] = mt_fp8x2_to_half2_bits(hw[i]);
                        a[2] = mt_fp8x2_to_half2_bits(lw[i] >> 16);
                        a[3] = mt_fp8x2_to_half2_bits(hw[i] >> 16);
                        gemv_mma_16816(c, a, b0, b1);
                    }
                }
                /* lane t == 0 holds (row g: hi, lo) in c[0], c[1] and row g + 8 in c[2], c[3] */
                float sc = rt < n_rt ? __ldg(srow + kb) : 0.0f;
                acc_lo = fmaf(c[0] + c[1], sc, acc_lo);
                acc_hi = fmaf(c[2] + c[3], sc, acc_hi);
            }
        }
        if (t == 0) {
            red[warp][g] = acc_lo;
            red[warp][g + 8] = acc_hi;
        }
        __syncthreads();
        if (warp % kw == 0 && lane < 16) {
            int64_t r = rt * 16 + lane;
            float v = 0.0f;
            for (int w2 = 0; w2 < kw; w2++) {
                v += red[warp + w2][lane];
            }
            if (rt < n_rt && r < rows) {
                y[r] = v * out_scale;
            }
        }
        __syncthreads();
    }
}

static mt_status_t
gemv_fp8_mma_launch(const struct mt_gpu_weight *w, const float *x, float *y, cudaStream_t s)
{
    static bool attr_set = false;
    int n_cb = (int)(w->cols / 128);
    int kw = 1;
    size_t smem = (size_t)w->cols * 2 * sizeof(__half);
    int per_sm = 0;
    int dev = 0;
    int sms = 0;

    while (kw < MMA_WARPS && kw * 2 <= n_cb) {
        kw *= 2;
    }
    if (!attr_set) {
        mt_status_t st = MT_CUDA(cudaFuncSetAttribute(
            gemv_fp8_mma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
            (int)(MMA_MAX_COLS * 2 * sizeof(__half))));
        if (st != MT_OK) {
            return st;
        }
        attr_set = true;
    }
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv_fp8_mma_kernel, MMA_WARPS * 32,
                                                  smem);
    int64_t n_rt = MT_CEIL_DIV(w->rows, (int64_t)16);
    int64_t need = MT_CEIL_DIV(n_rt, (int64_t)(MMA_WARPS / kw));
    unsigned blocks = (unsigned)MT_MIN(need, (int64_t)MT_MAX(sms, 1) * MT_MAX(per_sm, 1));

    gemv_fp8_mma_kernel<<<blocks, MMA_WARPS * 32, smem, s>>>(
        (const uint8_t *)w->data, w->scale, w->rows, (int)w->cols, x, y, kw);
    return mt_cuda_launched("gemv_fp8_mma", s);
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
        w->cols % (fp8 ? 16 : 8) != 0 || w->rows > INT32_MAX * 2LL) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu linear: %lld x %lld %s weight with %d tokens",
                       (long long)w->rows, (long long)w->cols, mt_dtype_name(w->dtype), n_tok);
    }
    if (w->data == NULL || x == NULL || y == NULL || (fp8 && w->scale == NULL) ||
        ((uintptr_t)w->data | (uintptr_t)x) % 16 != 0) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu linear: NULL or not 16-byte aligned operand");
    }
    if (fp8 && n_tok == 1 && w->cols % 128 == 0 && w->cols <= MMA_MAX_COLS) {
        return gemv_fp8_mma_launch(w, x, y, stream);
    }
    return fp8 ? gemv_dispatch<true>(w, x, n_tok, y, stream)
               : gemv_dispatch<false>(w, x, n_tok, y, stream);
}
