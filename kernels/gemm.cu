/* SPDX-License-Identifier: MIT */
/*
 * gemm.cu - the prefill GEMM: many tokens times one weight on cuBLAS's tensor-core GEMM.
 *
 * The one idea: a decode step reads each weight byte once for a few tokens (the GEMV of gemv.cu
 * is bandwidth-bound); a prefill chunk of hundreds of tokens does hundreds of FLOPs per weight
 * byte, which only tensor cores keep up with. cuBLAS's BF16 GEMM runs on every GPU from sm_80
 * up, so an FP8 weight is dequantized (fp8 * its 128x128 block scale, rounded to bf16) into a
 * slab of the work area and multiplied there, a slab of rows at a time so the slab stays small
 * (64 MiB) whatever the weight. The dequantization reads 1 byte and writes 2 per weight, the
 * GEMM reads the 2 back: at 512 tokens that costs about as much as the GEMM's FLOPs on an H200,
 * which is why the engine's chunks are that long.
 *
 * cuBLASLt's FP8 GEMM with DeepSeek's block scales (CUDA 12.9+, Hopper) is the FP8 mode
 * (gemm_fp8.cu), an option: it wants the activations in FP8 with 1x128 scales too, another
 * quantization error (2^-4 relative a value), and it is a Hopper path beside this portable one.
 *
 * The F32 mode (the engine's accuracy mode, with an fp32 latent cache) dequantizes to fp32 and
 * multiplies on CUDA cores: the same products as the CPU reference up to summation order.
 *
 * The BF16X3 mode (the engine's default) keeps nearly that precision on tensor cores: x and the
 * dequantized W are each split into bf16 hi = bf16(v) and lo = bf16(v - hi) (together 16
 * significant bits), and y = x_hi W_hi + x_lo W_hi + x_hi W_lo (the lo.lo term is below 2^-16
 * of a product) in two GEMMs over the work area's layouts: x as [x_hi | x_lo | x_hi] a token,
 * a slab row as [W_hi | W_lo]; the first multiplies x_hi by W_hi, the second [x_lo | x_hi] by
 * [W_hi | W_lo] (a K of 2 cols) into the same y. A BF16 W is exact in bf16: x_hi W + x_lo W
 * where it lies; so is an FP8 W whose block scales are powers of two (scale_pow2: DeepSeek's
 * ue8m0 checkpoints), dequantized to plain bf16 first: two thirds of the products, half the
 * slab's bytes.
 *
 * MLA's absorption through kv_b for a chunk is two batched GEMMs over the heads (one per head:
 * [n, nope] x [nope, kvl] and [n, kvl] x [kvl, vd]): the absorbed query sets which positions
 * attention weighs, so it keeps about the precision the decode kernels have: in the BF16X3
 * mode kv_b and x split into hi + lo as above (absorb_x3), in the others fp32 on kv_b
 * dequantized once into the slab (cuBLAS's fp32 batched GEMM ran at ~5 TFLOP/s here).
 */
#include <config.h>

#include "kernels/gemm.h"
#include "kernels/cublas_check.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/gemm_fp8.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <stdlib.h>

#define GEMM_THREADS 256
#define CUBLAS_WS ((size_t)32 << 20) /* cuBLAS's workspace: what its docs ask for on Hopper */
#define SLAB_MIN ((size_t)64 << 20)
#define ALIGN 256

struct mt_gpu_gemm {
    cublasHandle_t handle;
    enum mt_gpu_gemm_math math;
    char *ws; /* cuBLAS workspace, CUBLAS_WS bytes */
    __nv_bfloat16 *xb; /* x in bf16: [tokens][cols] or (BF16X3) [tokens][x_hi | x_lo | x_hi] */
    size_t xb_elems;
    void *slab;
    size_t slab_bytes;
    struct mt_gpu_gemm_fp8 *fp8; /* the FP8 mode's block-scaled path */
    long fp8_fallbacks;          /* its products that found no such GEMM and ran BF16X3 */
};

/* bf16 planes of x a token holds in the work area (the FP8 mode's products that are not FP8,
   and its absorptions, run the BF16X3 arithmetic; its quantized x takes less than three) */
static int
x_planes(enum mt_gpu_gemm_math m)
{
    return m == MT_GPU_GEMM_BF16X3 || m == MT_GPU_GEMM_FP8 ? 3 : 1;
}

extern "C" const char *
mt_gpu_gemm_math_name(enum mt_gpu_gemm_math m)
{
    switch (m) {
    case MT_GPU_GEMM_F32:
        return "fp32";
    case MT_GPU_GEMM_BF16:
        return "bf16";
    case MT_GPU_GEMM_BF16X3:
        return "bf16x3";
    case MT_GPU_GEMM_FP8:
        return "fp8";
    }
    return "?";
}

static mt_status_t
cublas_status(cublasStatus_t s, const char *what)
{
    return mt_cublas_status(s, "cuBLAS", what);
}

extern "C" mt_status_t
mt_gpu_gemm_create(enum mt_gpu_gemm_math math, struct mt_gpu_gemm **out)
{
    struct mt_gpu_gemm *g;
    mt_status_t st;

    if (math != MT_GPU_GEMM_F32 && math != MT_GPU_GEMM_BF16 && math != MT_GPU_GEMM_BF16X3 &&
        math != MT_GPU_GEMM_FP8) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu gemm: arithmetic %d (want fp32, bf16, bf16x3 or "
                       "fp8)", (int)math);
    }
    g = (struct mt_gpu_gemm *)calloc(1, sizeof(*g));
    if (g == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the GEMM context");
    }
    g->math = math;
    if ((st = cublas_status(cublasCreate(&g->handle), "handle creation")) != MT_OK) {
        free(g);
        return st;
    }
    if (math == MT_GPU_GEMM_FP8 && (st = mt_gpu_gemm_fp8_create(&g->fp8)) != MT_OK) {
        cublasDestroy(g->handle);
        free(g);
        return st;
    }
    *out = g;
    return MT_OK;
}

extern "C" void
mt_gpu_gemm_destroy(struct mt_gpu_gemm *g)
{
    if (g != NULL) {
        mt_gpu_gemm_fp8_destroy(g->fp8);
        cublasDestroy(g->handle);
        free(g);
    }
}

extern "C" enum mt_gpu_gemm_math
mt_gpu_gemm_math(const struct mt_gpu_gemm *g)
{
    return g->math;
}

extern "C" long
mt_gpu_gemm_fp8_fallbacks(const struct mt_gpu_gemm *g)
{
    return g->fp8_fallbacks;
}

static size_t
up(size_t b)
{
    return (b + ALIGN - 1) & ~(size_t)(ALIGN - 1);
}

extern "C" size_t
mt_gpu_gemm_work_bytes(enum mt_gpu_gemm_math math, int max_tok, int64_t max_cols,
                       int64_t kvb_elems)
{
    size_t slab = (size_t)kvb_elems * sizeof(float);

    slab = slab > SLAB_MIN ? slab : SLAB_MIN;
    return CUBLAS_WS + up((size_t)max_tok * (size_t)max_cols * 2 * (size_t)x_planes(math)) +
           up(slab);
}

extern "C" mt_status_t
mt_gpu_gemm_set_work(struct mt_gpu_gemm *g, void *work, size_t bytes, int max_tok,
                     int64_t max_cols)
{
    size_t xb = g != NULL ? up((size_t)max_tok * (size_t)max_cols * 2 * x_planes(g->math)) : 0;

    if (g == NULL || work == NULL || max_tok < 1 || max_cols < 1 ||
        bytes < CUBLAS_WS + xb + SLAB_MIN) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu gemm: a work area of %zu bytes for %d tokens of %lld "
                       "(want mt_gpu_gemm_work_bytes)", bytes, max_tok, (long long)max_cols);
    }
    g->ws = (char *)work;
    g->xb = (__nv_bfloat16 *)(g->ws + CUBLAS_WS);
    g->xb_elems = (size_t)max_tok * (size_t)max_cols;
    g->slab = (char *)g->xb + xb;
    g->slab_bytes = bytes - CUBLAS_WS - xb;
    return cublas_status(cublasSetWorkspace(g->handle, g->ws, CUBLAS_WS), "workspace");
}

/* ---- dequantization ------------------------------------------------------------------------- */

template <typename T> static __device__ __forceinline__ void store(T *p, float v);
template <> __device__ __forceinline__ void
store<float>(float *p, float v)
{
    *p = v;
}
template <> __device__ __forceinline__ void
store<__nv_bfloat16>(__nv_bfloat16 *p, float v)
{
    *p = __float2bfloat16_rn(v);
}

static __device__ __forceinline__ float
e4m3(uint8_t b)
{
    __half_raw r = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)b, __NV_E4M3);
    return __half2float(__half(r));
}

/* Eight values stored as one 16-byte (bf16) or two 16-byte (fp32) writes. */
static __device__ __forceinline__ void
store8(__nv_bfloat16 *p, const float *v)
{
    uint4 o;
    uint32_t *u = (uint32_t *)&o;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        __nv_bfloat162 b = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
        u[k] = *(uint32_t *)&b;
    }
    *(uint4 *)p = o;
}

static __device__ __forceinline__ void
store8(float *p, const float *v)
{
    *(float4 *)p = make_float4(v[0], v[1], v[2], v[3]);
    *(float4 *)(p + 4) = make_float4(v[4], v[5], v[6], v[7]);
}

/* Weights (r, c .. c + 7) of w at their fp32 values (cols % 8 == 0: one 128-wide scale block). */
static __device__ __forceinline__ void
load8(const uint8_t *__restrict__ w, const float *__restrict__ scale, int src_dtype, int64_t r,
      int64_t c, int64_t cols, float *v)
{
    if (src_dtype == MT_DTYPE_F8_E4M3) {
        uint2 raw = *(const uint2 *)(w + r * cols + c);
        float s = scale[(r / 128) * ((cols + 127) / 128) + c / 128];
        const uint8_t *b = (const uint8_t *)&raw;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            v[k] = e4m3(b[k]) * s;
        }
    } else if (src_dtype == MT_DTYPE_BF16) {
        uint4 raw = *(const uint4 *)(w + (r * cols + c) * 2);
        const uint16_t *h = (const uint16_t *)&raw;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            v[k] = __uint_as_float((uint32_t)h[k] << 16);
        }
    } else {
        const float *f = (const float *)w + r * cols + c;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            v[k] = f[k];
        }
    }
}

/* Eight consecutive weights per thread (cols % 8 == 0). */
template <typename T>
static __global__ void
dequant8_kernel(const uint8_t *__restrict__ w, const float *__restrict__ scale, int src_dtype,
                int64_t r0, int64_t n_rows, int64_t cols, T *__restrict__ dst)
{
    int64_t i = ((int64_t)blockIdx.x * GEMM_THREADS + threadIdx.x) * 8;

    if (i >= n_rows * cols) {
        return;
    }
    float v[8];
    load8(w, scale, src_dtype, r0 + i / cols, i % cols, cols, v);
    store8(dst + i, v);
}

/* The BF16X3 slab: row r - r0 as [hi | lo] of its 2 cols bf16 (cols % 8 == 0). */
static __global__ void
dequant8_split_kernel(const uint8_t *__restrict__ w, const float *__restrict__ scale,
                      int src_dtype, int64_t r0, int64_t n_rows, int64_t cols,
                      __nv_bfloat16 *__restrict__ dst)
{
    int64_t i = ((int64_t)blockIdx.x * GEMM_THREADS + threadIdx.x) * 8;

    if (i >= n_rows * cols) {
        return;
    }
    int64_t r = i / cols, c = i % cols;
    float v[8], lo[8];
    load8(w, scale, src_dtype, r0 + r, c, cols, v);
#pragma unroll
    for (int k = 0; k < 8; k++) {
        float hi = __bfloat162float(__float2bfloat16_rn(v[k]));
        lo[k] = v[k] - hi; /* exact in fp32 */
    }
    store8(dst + r * 2 * cols + c, v); /* rounds v to hi */
    store8(dst + r * 2 * cols + cols + c, lo);
}

/* Any width: one weight per thread. */
template <typename T>
static __global__ void
dequant1_kernel(const uint8_t *__restrict__ w, const float *__restrict__ scale, int src_dtype,
                int64_t r0, int64_t n_rows, int64_t cols, T *__restrict__ dst)
{
    int64_t i = (int64_t)blockIdx.x * GEMM_THREADS + threadIdx.x;

    if (i >= n_rows * cols) {
        return;
    }
    int64_t r = r0 + i / cols;
    int64_t c = i % cols;
    float v;
    if (src_dtype == MT_DTYPE_F8_E4M3) {
        v = e4m3(w[r * cols + c]) * scale[(r / 128) * ((cols + 127) / 128) + c / 128];
    } else if (src_dtype == MT_DTYPE_BF16) {
        v = __uint_as_float((uint32_t)((const uint16_t *)w)[r * cols + c] << 16);
    } else {
        v = ((const float *)w)[r * cols + c];
    }
    store<T>(dst + i, v);
}

extern "C" mt_status_t
mt_gpu_dequant_rows(const struct mt_gpu_weight *w, int64_t r0, int64_t n_rows,
                    enum mt_dtype dst_dtype, void *dst, struct CUstream_st *stream)
{
    if (w == NULL || w->data == NULL || dst == NULL || r0 < 0 || n_rows < 1 ||
        r0 + n_rows > w->rows || w->cols < 1 ||
        (w->dtype != MT_DTYPE_F8_E4M3 && w->dtype != MT_DTYPE_BF16 &&
         w->dtype != MT_DTYPE_F32) ||
        (w->dtype == MT_DTYPE_F8_E4M3 && w->scale == NULL) ||
        (dst_dtype != MT_DTYPE_BF16 && dst_dtype != MT_DTYPE_F32)) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu dequant: rows %lld+%lld of a %s %lld x %lld weight "
                       "to %s", (long long)r0, (long long)n_rows,
                       w != NULL ? mt_dtype_name(w->dtype) : "(null)",
                       w != NULL ? (long long)w->rows : 0LL, w != NULL ? (long long)w->cols : 0LL,
                       mt_dtype_name(dst_dtype));
    }
    const uint8_t *src = (const uint8_t *)w->data;
    int64_t n = n_rows * w->cols;
    bool vec = w->cols % 8 == 0;
    unsigned blocks = (unsigned)MT_CEIL_DIV(vec ? n / 8 : n, (int64_t)GEMM_THREADS);
    if (dst_dtype == MT_DTYPE_BF16 && vec) {
        dequant8_kernel<__nv_bfloat16><<<blocks, GEMM_THREADS, 0, stream>>>(
            src, w->scale, (int)w->dtype, r0, n_rows, w->cols, (__nv_bfloat16 *)dst);
    } else if (dst_dtype == MT_DTYPE_BF16) {
        dequant1_kernel<__nv_bfloat16><<<blocks, GEMM_THREADS, 0, stream>>>(
            src, w->scale, (int)w->dtype, r0, n_rows, w->cols, (__nv_bfloat16 *)dst);
    } else if (vec) {
        dequant8_kernel<float><<<blocks, GEMM_THREADS, 0, stream>>>(
            src, w->scale, (int)w->dtype, r0, n_rows, w->cols, (float *)dst);
    } else {
        dequant1_kernel<float><<<blocks, GEMM_THREADS, 0, stream>>>(
            src, w->scale, (int)w->dtype, r0, n_rows, w->cols, (float *)dst);
    }
    return mt_cuda_launched("dequant_rows", stream);
}

static __global__ void
to_bf16_kernel(const float *__restrict__ x, int64_t n, __nv_bfloat16 *__restrict__ out)
{
    int64_t i = (int64_t)blockIdx.x * GEMM_THREADS + threadIdx.x;

    if (i < n) {
        out[i] = __float2bfloat16_rn(x[i]);
    }
}

/* x [n, cols] as [x_hi | x_lo | x_hi] a token (the BF16X3 mode's B operand). */
static __global__ void
to_bf16x3_kernel(const float *__restrict__ x, int64_t n, int64_t cols,
                 __nv_bfloat16 *__restrict__ out)
{
    int64_t i = (int64_t)blockIdx.x * GEMM_THREADS + threadIdx.x;

    if (i < n * cols) {
        int64_t t = i / cols, c = i % cols;
        __nv_bfloat16 hi = __float2bfloat16_rn(x[i]);
        __nv_bfloat16 *o = out + t * 3 * cols + c;
        o[0] = hi;
        o[cols] = __float2bfloat16_rn(x[i] - __bfloat162float(hi));
        o[2 * cols] = hi;
    }
}

/* ---- the products --------------------------------------------------------------------------- */

/* Rows r0 .. r0 + n_rows - 1 of w into the BF16X3 slab (rows of [hi | lo], cols % 8 == 0). */
static mt_status_t
dequant_split(const struct mt_gpu_weight *w, int64_t r0, int64_t n_rows, __nv_bfloat16 *dst,
              cudaStream_t stream)
{
    unsigned blocks = (unsigned)MT_CEIL_DIV(n_rows * w->cols / 8, (int64_t)GEMM_THREADS);

    dequant8_split_kernel<<<blocks, GEMM_THREADS, 0, stream>>>(
        (const uint8_t *)w->data, w->scale, (int)w->dtype, r0, n_rows, w->cols, dst);
    return mt_cuda_launched("dequant_rows (bf16x3)", stream);
}

/*
 * y'[nr, n] (ld ldy) = A'^T B' + beta y' on cuBLAS: A row-major [nr, k] (ld lda), B [n, k] (ld
 * ldb), both of type ct, fp32 out and sums. Row-major y [n, rows] is column-major y' [rows, n];
 * A [nr, k] row-major is column-major [k, nr], so op(A) = T.
 */
static mt_status_t
gemm_call(struct mt_gpu_gemm *g, cudaDataType_t ct, int nr, int n, int k, const void *a, int lda,
          const void *b, int ldb, float beta, float *y, int ldy, cudaStream_t stream)
{
    const float one = 1.0f;
    mt_status_t st = cublas_status(cublasGemmEx(g->handle, CUBLAS_OP_T, CUBLAS_OP_N, nr, n, k,
                                                &one, a, ct, lda, b, ct, ldb, &beta, y,
                                                CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F,
                                                CUBLAS_GEMM_DEFAULT),
                                   "GEMM");

    /* named for --debug-sync and the kernel-time table like our own launches */
    return st == MT_OK ? mt_cuda_launched("cublas gemm", stream) : st;
}

/*
 * The FP8 mode's product: x quantized into the x planes' room, then gemm_fp8.cu's block-scaled
 * GEMM, which wants the tokens in a multiple of 16: the whole sixteens straight into y, the rest
 * (padded with zeros to 16) into the slab and copied to y. MT_ERR_UNSUPPORTED where cuBLASLt
 * has no such GEMM on this GPU (the caller runs BF16X3).
 */
static mt_status_t
linear_fp8(struct mt_gpu_gemm *g, const struct mt_gpu_weight *w, const float *x, int n, float *y,
           cudaStream_t stream)
{
    int64_t rows = w->rows, cols = w->cols;
    int n16 = n / 16 * 16, rest = n - n16;
    size_t qa = n16 > 0 ? mt_gpu_quant_1x128_bytes(n16, cols) : 0;
    size_t qb = rest > 0 ? mt_gpu_quant_1x128_bytes(16, cols) : 0;
    uint8_t *q = (uint8_t *)g->xb;
    mt_status_t st;

    if (up(qa) + qb > g->xb_elems * 2 * x_planes(g->math) ||
        (size_t)rows * 16 * sizeof(float) > g->slab_bytes) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu gemm: %d tokens x %lld inputs (%lld outputs) exceed "
                       "the work area", n, (long long)cols, (long long)rows);
    }
    if (n16 > 0) {
        float *s = mt_gpu_quant_1x128_scales(q, n16, cols);
        st = mt_gpu_quant_1x128(x, n16, n16, cols, q, s, stream);
        st = st == MT_OK ? mt_gpu_gemm_fp8_linear(g->fp8, w, q, s, n16, y, g->ws, CUBLAS_WS,
                                                  stream)
                         : st;
        if (st != MT_OK) {
            return st;
        }
    }
    if (rest > 0) {
        uint8_t *q2 = q + up(qa);
        float *s2 = mt_gpu_quant_1x128_scales(q2, 16, cols);
        st = mt_gpu_quant_1x128(x + (size_t)n16 * cols, rest, 16, cols, q2, s2, stream);
        st = st == MT_OK ? mt_gpu_gemm_fp8_linear(g->fp8, w, q2, s2, 16, (float *)g->slab,
                                                  g->ws, CUBLAS_WS, stream)
                         : st;
        /* the slab holds y's rows n16 .. n - 1 first, as y does: one contiguous copy */
        st = st == MT_OK ? MT_CUDA(cudaMemcpyAsync(y + (size_t)n16 * rows, g->slab,
                                                   (size_t)rest * rows * sizeof(float),
                                                   cudaMemcpyDeviceToDevice, stream))
                         : st;
        if (st != MT_OK) {
            return st;
        }
    }
    return MT_OK;
}

extern "C" mt_status_t
mt_gpu_gemm_linear(struct mt_gpu_gemm *g, const struct mt_gpu_weight *w, const float *x, int n,
                   float *y, struct CUstream_st *stream)
{
    if (g == NULL || g->slab == NULL || w == NULL || w->data == NULL || x == NULL || y == NULL ||
        n < 1 || w->rows < 1 || w->cols < 1 || w->rows > INT32_MAX || w->cols > INT32_MAX / 3) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu gemm: %d tokens x %lld x %lld%s", n,
                       w != NULL ? (long long)w->rows : 0LL, w != NULL ? (long long)w->cols : 0LL,
                       g != NULL && g->slab == NULL ? " (no work area set)" : "");
    }
    int64_t rows = w->rows, cols = w->cols;
    enum mt_gpu_gemm_math m = g->math;
    mt_status_t st;
    if (m == MT_GPU_GEMM_FP8 && mt_gpu_gemm_fp8_fits(w)) {
        if ((st = linear_fp8(g, w, x, n, y, stream)) != MT_ERR_UNSUPPORTED) {
            return st;
        }
        if (g->fp8_fallbacks++ == 0) { /* no such GEMM (a GPU before Hopper): say so once */
            mt_log_warn("%s; the FP8 GEMM mode multiplies such products in bf16x3", mt_last_error());
        }
    }
    /* the FP8 mode's other weights (BF16, or FP8 of a shape cuBLASLt's path does not take) */
    m = m == MT_GPU_GEMM_FP8 ? MT_GPU_GEMM_BF16X3 : m;
    /* an F32 weight has no bf16 copy: it is multiplied in fp32 in every mode; so is a width
       the split layouts would misalign */
    if (w->dtype == MT_DTYPE_F32 || (m == MT_GPU_GEMM_BF16X3 && cols % 8 != 0)) {
        m = MT_GPU_GEMM_F32;
    }
    cudaDataType_t ct = m == MT_GPU_GEMM_F32 ? CUDA_R_32F : CUDA_R_16BF;
    size_t esz = m == MT_GPU_GEMM_F32 ? 4 : 2;
    bool split = m == MT_GPU_GEMM_BF16X3;
    const void *b = x;
    int ldb = (int)cols;

    if (m != MT_GPU_GEMM_F32) {
        int64_t ne = (int64_t)n * cols;
        if ((size_t)ne > g->xb_elems) {
            return mt_fail(MT_ERR_INVAL, 0, "gpu gemm: %d tokens x %lld inputs exceed the work "
                           "area's %zu", n, (long long)cols, g->xb_elems);
        }
        unsigned blocks = (unsigned)MT_CEIL_DIV(ne, (int64_t)GEMM_THREADS);
        if (split) {
            to_bf16x3_kernel<<<blocks, GEMM_THREADS, 0, stream>>>(x, n, cols, g->xb);
            ldb = 3 * (int)cols;
        } else {
            to_bf16_kernel<<<blocks, GEMM_THREADS, 0, stream>>>(x, ne, g->xb);
        }
        if ((st = mt_cuda_launched("gemm x to bf16", stream)) != MT_OK) {
            return st;
        }
        b = g->xb;
    }
    /* multiplied where it lies: an F32 W in fp32, a BF16 W on tensor cores (exact in bf16) */
    bool direct = w->dtype == (m == MT_GPU_GEMM_F32 ? MT_DTYPE_F32 : MT_DTYPE_BF16);
    /* BF16X3 with a W exact in bf16 (where it lies, or FP8 with power-of-two scales): no lo */
    bool exact = split && (direct || (w->dtype == MT_DTYPE_F8_E4M3 && w->scale_pow2));
    size_t row_bytes = (size_t)cols * esz * (split && !exact ? 2 : 1);
    /* slab rows: a multiple of 128 (whole scale blocks), all of them when the weight is direct */
    int64_t slab = direct ? rows : (int64_t)(g->slab_bytes / row_bytes) / 128 * 128;
    if (slab < 1) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu gemm: a %lld-wide weight does not fit 128 rows in "
                       "the %zu-byte slab", (long long)cols, g->slab_bytes);
    }
    if ((st = cublas_status(cublasSetStream(g->handle, stream), "set stream")) != MT_OK) {
        return st;
    }
    for (int64_t r0 = 0; r0 < rows; r0 += slab) {
        int nr = (int)(rows - r0 < slab ? rows - r0 : slab);
        const void *a = (const char *)w->data + (size_t)r0 * cols * esz;
        int lda = (int)cols;
        st = MT_OK;
        if (!direct && split && !exact) {
            st = dequant_split(w, r0, nr, (__nv_bfloat16 *)g->slab, stream);
            a = g->slab;
            lda = 2 * (int)cols;
        } else if (!direct) {
            st = mt_gpu_dequant_rows(w, r0, nr, m == MT_GPU_GEMM_F32 ? MT_DTYPE_F32 : MT_DTYPE_BF16,
                                     g->slab, stream);
            a = g->slab;
        }
        if (st != MT_OK) {
            return st;
        }
        /* x_hi W_hi (or the one product of the other modes) */
        st = gemm_call(g, ct, nr, n, (int)cols, a, lda, b, ldb, 0.0f, y + r0, (int)rows,
                       stream);
        if (st == MT_OK && split) {
            /* + [x_lo | x_hi] [W_hi | W_lo], or x_lo W for a W exact in bf16 */
            st = gemm_call(g, ct, nr, n, exact ? (int)cols : 2 * (int)cols, a, lda,
                           (const __nv_bfloat16 *)b + cols, ldb, 1.0f, y + r0, (int)rows,
                           stream);
        }
        if (st != MT_OK) {
            return st;
        }
    }
    return MT_OK;
}

/* kv_b in fp32 in the slab (or where it lies when it is F32 already). */
static mt_status_t
kvb_f32(struct mt_gpu_gemm *g, const struct mt_gpu_weight *kvb, struct CUstream_st *stream,
        const float **out)
{
    mt_status_t st;

    if (kvb->dtype == MT_DTYPE_F32) {
        *out = (const float *)kvb->data;
        return MT_OK;
    }
    if ((size_t)(kvb->rows * kvb->cols) * sizeof(float) > g->slab_bytes) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu absorb: kv_b (%lld x %lld) does not fit the %zu-byte "
                       "slab (size the work area with its element count)", (long long)kvb->rows,
                       (long long)kvb->cols, g->slab_bytes);
    }
    if ((st = mt_gpu_dequant_rows(kvb, 0, kvb->rows, MT_DTYPE_F32, g->slab, stream)) != MT_OK) {
        return st;
    }
    *out = (const float *)g->slab;
    return MT_OK;
}

/*
 * Heads h0 .. h0 + hb - 1 of x (token t, head h, element d at x[t ldx + h hs + d], d < kdim) as
 * bf16 planes hi and lo ([n][hb][kdim] each): the BF16X3 absorptions' B operands.
 */
static __global__ void
split_heads_kernel(const float *__restrict__ x, int n, int64_t ldx, int hs, int h0, int hb,
                   int kdim, __nv_bfloat16 *__restrict__ hi, __nv_bfloat16 *__restrict__ lo)
{
    int64_t i = (int64_t)blockIdx.x * GEMM_THREADS + threadIdx.x;

    if (i < (int64_t)n * hb * kdim) {
        int64_t t = i / ((int64_t)hb * kdim);
        int h = (int)(i / kdim % hb), d = (int)(i % kdim);
        float v = x[t * ldx + (int64_t)(h0 + h) * hs + d];
        __nv_bfloat16 b = __float2bfloat16_rn(v);
        hi[i] = b;
        lo[i] = __float2bfloat16_rn(v - __bfloat162float(b));
    }
}

/*
 * One absorption in the BF16X3 mode, heads in groups that fit the work area's x planes: kv_b as
 * bf16 hi (+ lo unless it is exact in bf16: BF16, or FP8 with power-of-two scales) in the slab,
 * x split per group, then W_hi x_hi + W_hi x_lo (+ W_lo x_hi) as batched GEMMs into the same
 * output. value = false: q_lat = K_h q_h (x = q [n, H, nope + rope], out = q_lat [n, H, kvl]);
 * true: out = V_h o_h (x = o_lat [n, H, kvl], out [n, H, vd]). MT_ERR_UNSUPPORTED (nothing
 * launched) where it does not apply: the caller multiplies in fp32.
 */
static mt_status_t
absorb_x3(struct mt_gpu_gemm *g, const struct mt_gpu_weight *kvb, bool value, const float *x,
          int n, int H, int nope, int vd, int rope, float *out, cudaStream_t stream)
{
    int kvl = (int)kvb->cols;
    int kdim = value ? kvl : nope;
    int64_t ldx = value ? (int64_t)H * kvl : (int64_t)H * (nope + rope);
    int hs = value ? kvl : nope + rope;
    size_t per_head = (size_t)n * kdim * 2 * sizeof(__nv_bfloat16);
    int hb = (int)MT_MIN((size_t)H, g->xb_elems * 3 * sizeof(__nv_bfloat16) / per_head);
    bool exact = kvb->dtype == MT_DTYPE_BF16 || (kvb->dtype == MT_DTYPE_F8_E4M3 && kvb->scale_pow2);
    mt_status_t st;

    if ((g->math != MT_GPU_GEMM_BF16X3 && g->math != MT_GPU_GEMM_FP8) || hb < 1 ||
        kvl % 8 != 0 || nope % 8 != 0 || vd % 8 != 0 || (kvb->dtype != MT_DTYPE_BF16 && kvb->dtype != MT_DTYPE_F8_E4M3) ||
        (size_t)(kvb->rows * kvl) * 2 * sizeof(__nv_bfloat16) > g->slab_bytes) {
        return MT_ERR_UNSUPPORTED;
    }
    /* kv_b: hi (and lo) with row stride lda, hi at a, lo at a + kvl */
    const __nv_bfloat16 *a = (const __nv_bfloat16 *)kvb->data;
    int lda = kvl;
    if (kvb->dtype != MT_DTYPE_BF16 && exact) {
        st = mt_gpu_dequant_rows(kvb, 0, kvb->rows, MT_DTYPE_BF16, g->slab, stream);
        a = (const __nv_bfloat16 *)g->slab;
    } else if (!exact) {
        st = dequant_split(kvb, 0, kvb->rows, (__nv_bfloat16 *)g->slab, stream);
        a = (const __nv_bfloat16 *)g->slab;
        lda = 2 * kvl;
    } else {
        st = MT_OK;
    }
    if (st != MT_OK ||
        (st = cublas_status(cublasSetStream(g->handle, stream), "set stream")) != MT_OK) {
        return st;
    }
    const float one = 1.0f, zero = 0.0f;
    long long sa = (long long)(nope + vd) * lda; /* a head's block of kv_b rows */
    const __nv_bfloat16 *a0 = a + (value ? (size_t)nope * lda : 0);
    for (int h0 = 0; h0 < H; h0 += hb) {
        int nh = MT_MIN(hb, H - h0);
        __nv_bfloat16 *xh = g->xb, *xl = g->xb + (size_t)n * nh * kdim;
        int64_t ne = (int64_t)n * nh * kdim;
        split_heads_kernel<<<(unsigned)MT_CEIL_DIV(ne, (int64_t)GEMM_THREADS), GEMM_THREADS, 0,
                             stream>>>(x, n, ldx, hs, h0, nh, kdim, xh, xl);
        if ((st = mt_cuda_launched("absorb x split", stream)) != MT_OK) {
            return st;
        }
        /* (A, B, beta): W_hi x_hi, W_hi x_lo, W_lo x_hi */
        const __nv_bfloat16 *as[3] = {a0, a0, a0 + kvl};
        const __nv_bfloat16 *bs[3] = {xh, xl, xh};
        for (int k = 0; k < (exact ? 2 : 3) && st == MT_OK; k++) {
            const __nv_bfloat16 *ah = as[k] + (size_t)h0 * sa;
            /*
             * q: q_lat' [kvl, n] (ld H kvl) = K_h' q_h', K_h [nope, kvl] row-major (ld lda);
             * v: out' [vd, n] (ld H vd) = V_h'^T o_h', V_h [vd, kvl] row-major (ld lda).
             */
            int rows = value ? vd : kvl;
            st = cublas_status(cublasGemmStridedBatchedEx(
                                   g->handle, value ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N,
                                   rows, n, kdim, &one, ah, CUDA_R_16BF, lda, sa, bs[k],
                                   CUDA_R_16BF, nh * kdim, kdim, k == 0 ? &zero : &one,
                                   out + (size_t)h0 * rows, CUDA_R_32F, H * rows, rows, nh,
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                               "absorption batched GEMM (bf16x3)");
            st = st == MT_OK ? mt_cuda_launched(value ? "cublas absorb v" : "cublas absorb q",
                                                stream)
                             : st;
        }
        if (st != MT_OK) {
            return st;
        }
    }
    return MT_OK;
}

static __global__ void
copy_pe_kernel(const float *__restrict__ q, int64_t rows, int qk, int nope, int rope,
               float *__restrict__ q_pe)
{
    int64_t i = (int64_t)blockIdx.x * GEMM_THREADS + threadIdx.x;

    if (i < rows * rope) {
        q_pe[i] = q[(i / rope) * qk + nope + i % rope];
    }
}

/* The fp32 absorption of q (the F32 and BF16 modes, and where BF16X3's does not apply). */
static mt_status_t
absorb_f32_q(struct mt_gpu_gemm *g, const struct mt_gpu_weight *kvb, const float *q, int n,
             int H, int nope, int vd, int rope, float *q_lat, cudaStream_t stream)
{
    int kvl = (int)kvb->cols, qk = nope + rope;
    const float *wk;
    mt_status_t st;

    if ((st = kvb_f32(g, kvb, stream, &wk)) != MT_OK ||
        (st = cublas_status(cublasSetStream(g->handle, stream), "set stream")) != MT_OK) {
        return st;
    }
    /*
     * Head h: q_lat[t, h, :] = q[t, h, :nope] K_h with K_h = kv_b rows h*(nope+vd) .. +nope,
     * [nope, kvl] row-major = [kvl, nope] column-major; q_lat' [kvl, n] (ld H*kvl) = K_h' q_h'.
     */
    const float one = 1.0f, zero = 0.0f;
    st = cublas_status(cublasGemmStridedBatchedEx(
                           g->handle, CUBLAS_OP_N, CUBLAS_OP_N, kvl, n, nope, &one, wk, CUDA_R_32F,
                           kvl, (long long)(nope + vd) * kvl, q, CUDA_R_32F, H * qk, qk, &zero,
                           q_lat, CUDA_R_32F, H * kvl, kvl, H, CUBLAS_COMPUTE_32F,
                           CUBLAS_GEMM_DEFAULT),
                       "absorb q batched GEMM");
    return st == MT_OK ? mt_cuda_launched("cublas absorb q", stream) : st;
}

extern "C" mt_status_t
mt_gpu_gemm_absorb_q(struct mt_gpu_gemm *g, const struct mt_gpu_weight *kvb, const float *q,
                     int n, int n_heads, int nope, int vd, int rope, float *q_lat, float *q_pe,
                     struct CUstream_st *stream)
{
    int H = n_heads, qk = nope + rope;
    mt_status_t st;

    if (g == NULL || g->slab == NULL || kvb == NULL || q == NULL || q_lat == NULL ||
        q_pe == NULL || n < 1 || H < 1 || nope < 1 || vd < 1 || rope < 0 ||
        kvb->rows != (int64_t)H * (nope + vd)) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu absorb q: %d tokens, %d heads, nope %d, v %d", n, H,
                       nope, vd);
    }
    st = absorb_x3(g, kvb, false, q, n, H, nope, vd, rope, q_lat, stream);
    if (st == MT_ERR_UNSUPPORTED) {
        st = absorb_f32_q(g, kvb, q, n, H, nope, vd, rope, q_lat, stream);
    }
    if (st != MT_OK || rope == 0) {
        return st;
    }
    int64_t ne = (int64_t)n * H * rope;
    copy_pe_kernel<<<(unsigned)MT_CEIL_DIV(ne, (int64_t)GEMM_THREADS), GEMM_THREADS, 0,
                     stream>>>(q, (int64_t)n * H, qk, nope, rope, q_pe);
    return mt_cuda_launched("absorb q_pe copy", stream);
}

extern "C" mt_status_t
mt_gpu_gemm_absorb_v(struct mt_gpu_gemm *g, const struct mt_gpu_weight *kvb, const float *o_lat,
                     int n, int n_heads, int nope, int vd, float *out, struct CUstream_st *stream)
{
    int H = n_heads, kvl = kvb != NULL ? (int)kvb->cols : 0;
    const float *wk;
    mt_status_t st;

    if (g == NULL || g->slab == NULL || kvb == NULL || o_lat == NULL || out == NULL || n < 1 ||
        H < 1 || nope < 1 || vd < 1 || kvb->rows != (int64_t)H * (nope + vd)) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu absorb v: %d tokens, %d heads, nope %d, v %d", n, H,
                       nope, vd);
    }
    st = absorb_x3(g, kvb, true, o_lat, n, H, nope, vd, 0, out, stream);
    if (st != MT_ERR_UNSUPPORTED) {
        return st;
    }
    if ((st = kvb_f32(g, kvb, stream, &wk)) != MT_OK ||
        (st = cublas_status(cublasSetStream(g->handle, stream), "set stream")) != MT_OK) {
        return st;
    }
    /*
     * Head h: out[t, h, :] = V_h o_lat[t, h, :] with V_h = kv_b rows h*(nope+vd)+nope .. +vd,
     * [vd, kvl] row-major = [kvl, vd] column-major; out' [vd, n] (ld H*vd) = V_h'^T o_h'.
     */
    const float one = 1.0f, zero = 0.0f;
    st = cublas_status(cublasGemmStridedBatchedEx(
                           g->handle, CUBLAS_OP_T, CUBLAS_OP_N, vd, n, kvl, &one,
                           wk + (size_t)nope * kvl, CUDA_R_32F, kvl, (long long)(nope + vd) * kvl,
                           o_lat, CUDA_R_32F, H * kvl, kvl, &zero, out, CUDA_R_32F, H * vd, vd, H,
                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                       "absorb v batched GEMM");
    return st == MT_OK ? mt_cuda_launched("cublas absorb v", stream) : st;
}
