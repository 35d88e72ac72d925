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
        w->cols % (fp8 ? 16 : 8) != 0 || w->rows > INT32_MAX * 2LL) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu linear: %lld x %lld %s weight with %d tokens",
                       (long long)w->rows, (long long)w->cols, mt_dtype_name(w->dtype), n_tok);
    }
    if (w->data == NULL || x == NULL || y == NULL || (fp8 && w->scale == NULL) ||
        ((uintptr_t)w->data | (uintptr_t)x) % 16 != 0) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu linear: NULL or not 16-byte aligned operand");
    }
    return fp8 ? gemv_dispatch<true>(w, x, n_tok, y, stream)
               : gemv_dispatch<false>(w, x, n_tok, y, stream);
}
