/* SPDX-License-Identifier: MIT */
/*
 * gemm_fp8.cu - the prefill GEMM in DeepSeek's FP8 arithmetic, on cuBLASLt's block-scaled FP8
 * GEMM (Hopper: CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F for the weight,
 * _VEC128_32F for the activations; CUDA 12.9 and newer).
 *
 * The one idea: a prefill chunk's products are compute-bound, and FP8 tensor cores run at twice
 * the BF16 rate, six times the rate of gemm.cu's BF16X3 arithmetic (three BF16 products). The
 * weight is already e4m3 with 128x128 block scales, so it is multiplied where it lies (no
 * dequantized slab: that pass went too); only the activations are quantized, one fp32 scale per
 * token and 128 columns, as DeepSeek's own inference code does for every linear layer. The price
 * is precision: a quantized activation is off by up to 2^-4 of itself (e4m3's 3 mantissa bits),
 * where BF16X3 is off by ~2^-16, so this is an option (MT_GPU_GEMM=fp8), not the default, and
 * the engine's tests against the reference keep the default.
 *
 * Layouts, in cuBLASLt's column-major terms (y row-major [n][rows] is y' column-major rows x n):
 * y' = op(A) B with A = W (row-major [rows][cols] is column-major cols x rows, op = transpose:
 * the "TN" form Hopper's FP8 GEMM requires) and B = q (column-major cols x n). A's scales are
 * one per 128x128 block, a 128-row block's blocks contiguous: the checkpoint's scale rows when a
 * row has a multiple of 4 blocks (cuBLASLt pads a row of scales to 4). B's scales are one per
 * token and 128 columns, the tokens of one column block contiguous ([cols / 128][n]).
 * Accumulation: FAST_ACCUM off, so cuBLASLt promotes the tensor cores' partial sums to fp32
 * every block (Hopper's FP8 adders keep fewer bits; DeepSeek-V3's report, section 3.3.2).
 */
#include <config.h>

#include "kernels/gemm_fp8.h"
#include "kernels/cublas_check.cuh"
#include "kernels/cuda_check.cuh"

#include <cublasLt.h>
#include <cuda_fp8.h>
#include <stdlib.h>
#include <string.h>

#define QUANT_THREADS 256
#define QUANT_ALIGN 256
#define PLANS 64 /* (rows, tokens, cols) shapes a context remembers: a model's dozen x chunk sizes */
#define E4M3_MAX 448.0f

/* What cuBLASLt needs for one shape, made once: descriptors and the algorithm it chose. */
struct plan {
    int64_t rows, cols;
    int n; /* 0: an empty slot */
    bool ok; /* false: cuBLASLt has no algorithm for it */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
};

struct mt_gpu_gemm_fp8 {
    cublasLtHandle_t lt;
    struct plan plans[PLANS];
    int next; /* the slot the next new shape takes (round robin) */
};

static mt_status_t
lt_status(cublasStatus_t s, const char *what)
{
    return mt_cublas_status(s, "cuBLASLt", what);
}

extern "C" mt_status_t
mt_gpu_gemm_fp8_create(struct mt_gpu_gemm_fp8 **out)
{
    struct mt_gpu_gemm_fp8 *f = (struct mt_gpu_gemm_fp8 *)calloc(1, sizeof(*f));
    mt_status_t st;

    if (f == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the FP8 GEMM context");
    }
    if ((st = lt_status(cublasLtCreate(&f->lt), "handle creation")) != MT_OK) {
        free(f);
        return st;
    }
    *out = f;
    return MT_OK;
}

static void
plan_clear(struct plan *p)
{
    cublasLtMatrixLayout_t l[3] = {p->a, p->b, p->d};

    for (int i = 0; i < 3; i++) {
        if (l[i] != NULL) {
            cublasLtMatrixLayoutDestroy(l[i]);
        }
    }
    if (p->desc != NULL) {
        cublasLtMatmulDescDestroy(p->desc);
    }
    memset(p, 0, sizeof(*p));
}

extern "C" void
mt_gpu_gemm_fp8_destroy(struct mt_gpu_gemm_fp8 *f)
{
    if (f != NULL) {
        for (int i = 0; i < PLANS; i++) {
            plan_clear(&f->plans[i]);
        }
        cublasLtDestroy(f->lt);
        free(f);
    }
}

extern "C" bool
mt_gpu_gemm_fp8_fits(const struct mt_gpu_weight *w)
{
    return w != NULL && w->dtype == MT_DTYPE_F8_E4M3 && w->scale != NULL && w->rows >= 1 &&
           w->rows % 4 == 0 && w->cols % 512 == 0 && w->rows <= INT32_MAX &&
           w->cols <= INT32_MAX;
}

static size_t
up(size_t b)
{
    return (b + QUANT_ALIGN - 1) & ~(size_t)(QUANT_ALIGN - 1);
}

extern "C" size_t
mt_gpu_quant_1x128_bytes(int n_pad, int64_t cols)
{
    return up((size_t)n_pad * (size_t)cols) + (size_t)n_pad * (size_t)(cols / 128) * sizeof(float);
}

extern "C" float *
mt_gpu_quant_1x128_scales(uint8_t *q, int n_pad, int64_t cols)
{
    return (float *)(q + up((size_t)n_pad * (size_t)cols));
}

/* ---- the activations' quantization ---------------------------------------------------------- */

/* One warp a (token, 128-column block): 4 values a lane, the block's amax by shuffles. */
static __global__ void
quant_1x128_kernel(const float *__restrict__ x, int n, int n_pad, int64_t cols,
                   uint8_t *__restrict__ q, float *__restrict__ s)
{
    int64_t warp = ((int64_t)blockIdx.x * QUANT_THREADS + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    int64_t nb = cols / 128;

    if (warp >= (int64_t)n_pad * nb) {
        return;
    }
    int64_t t = warp / nb, kb = warp % nb;
    int64_t at = t * cols + kb * 128 + lane * 4;
    float4 v = t < n ? *(const float4 *)(x + at) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
#pragma unroll
    for (int o = 16; o > 0; o /= 2) {
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    }
    float sc = amax > 0.0f ? amax / E4M3_MAX : 1.0f;
    /* x / sc, not x * (1 / sc): the host's reference rounds the same quotient */
    uint32_t b0 = __nv_cvt_float_to_fp8(v.x / sc, __NV_SATFINITE, __NV_E4M3);
    uint32_t b1 = __nv_cvt_float_to_fp8(v.y / sc, __NV_SATFINITE, __NV_E4M3);
    uint32_t b2 = __nv_cvt_float_to_fp8(v.z / sc, __NV_SATFINITE, __NV_E4M3);
    uint32_t b3 = __nv_cvt_float_to_fp8(v.w / sc, __NV_SATFINITE, __NV_E4M3);
    *(uint32_t *)(q + at) = b0 | b1 << 8 | b2 << 16 | b3 << 24;
    if (lane == 0) {
        s[kb * n_pad + t] = sc;
    }
}

extern "C" mt_status_t
mt_gpu_quant_1x128(const float *x, int n, int n_pad, int64_t cols, uint8_t *q, float *s,
                   struct CUstream_st *stream)
{
    if (x == NULL || q == NULL || s == NULL || n < 1 || n_pad < n || cols < 128 ||
        cols % 128 != 0) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu fp8 quantization: %d tokens (padded to %d) x %lld "
                       "(want whole 128-column blocks)", n, n_pad, (long long)cols);
    }
    int64_t warps = (int64_t)n_pad * (cols / 128);
    unsigned blocks = (unsigned)MT_CEIL_DIV(warps * 32, (int64_t)QUANT_THREADS);
    quant_1x128_kernel<<<blocks, QUANT_THREADS, 0, stream>>>(x, n, n_pad, cols, q, s);
    return mt_cuda_launched("quant_1x128", stream);
}

/* ---- the product ---------------------------------------------------------------------------- */

#if CUBLAS_VERSION >= 120900 /* the block-scaled modes came in cuBLAS 12.9 */
/* The scale pointers of a call (cuBLASLt's heuristic, too, must see them: without, it answers
   that block scales are not supported). */
static cublasStatus_t
set_scales(struct plan *p, const float *sa, const float *sb)
{
    cublasStatus_t cs = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                       &sa, sizeof(sa));
    return cs == CUBLAS_STATUS_SUCCESS
               ? cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sb,
                                                sizeof(sb))
               : cs;
}

/*
 * Descriptors and cuBLASLt's algorithm for p's shape, with a call's scales sa and sb (p->ok
 * false: no algorithm; MT_OK either way).
 */
static mt_status_t
plan_build(struct mt_gpu_gemm_fp8 *f, struct plan *p, const float *sa, const float *sb,
           size_t ws_bytes)
{
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    const int32_t mode_a = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
    const int32_t mode_b = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    const int8_t fast = 0;
    uint64_t rows = (uint64_t)p->rows, cols = (uint64_t)p->cols, n = (uint64_t)p->n;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    mt_status_t st;

    st = lt_status(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
    if (st != MT_OK) {
        return st;
    }
#define SET(attr, v) cublasLtMatmulDescSetAttribute(p->desc, attr, &(v), sizeof(v))
    cublasStatus_t cs = SET(CUBLASLT_MATMUL_DESC_TRANSA, ta);
    cs = cs == CUBLAS_STATUS_SUCCESS ? SET(CUBLASLT_MATMUL_DESC_TRANSB, tb) : cs;
    cs = cs == CUBLAS_STATUS_SUCCESS ? SET(CUBLASLT_MATMUL_DESC_A_SCALE_MODE, mode_a) : cs;
    cs = cs == CUBLAS_STATUS_SUCCESS ? SET(CUBLASLT_MATMUL_DESC_B_SCALE_MODE, mode_b) : cs;
    cs = cs == CUBLAS_STATUS_SUCCESS ? SET(CUBLASLT_MATMUL_DESC_FAST_ACCUM, fast) : cs;
#undef SET
    cs = cs == CUBLAS_STATUS_SUCCESS ? set_scales(p, sa, sb) : cs;
    /* A = W: column-major cols x rows; B = q: cols x n; D = y': rows x n */
    cs = cs == CUBLAS_STATUS_SUCCESS
             ? cublasLtMatrixLayoutCreate(&p->a, CUDA_R_8F_E4M3, cols, rows, (int64_t)cols)
             : cs;
    cs = cs == CUBLAS_STATUS_SUCCESS
             ? cublasLtMatrixLayoutCreate(&p->b, CUDA_R_8F_E4M3, cols, n, (int64_t)cols)
             : cs;
    cs = cs == CUBLAS_STATUS_SUCCESS
             ? cublasLtMatrixLayoutCreate(&p->d, CUDA_R_32F, rows, n, (int64_t)rows)
             : cs;
    cs = cs == CUBLAS_STATUS_SUCCESS ? cublasLtMatmulPreferenceCreate(&pref) : cs;
    cs = cs == CUBLAS_STATUS_SUCCESS
             ? cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &ws_bytes, sizeof(ws_bytes))
             : cs;
    if ((st = lt_status(cs, "descriptors")) != MT_OK) {
        cublasLtMatmulPreferenceDestroy(pref);
        return st;
    }
    /* no algorithm (a GPU before Hopper) is an answer, not an error */
    cs = cublasLtMatmulAlgoGetHeuristic(f->lt, p->desc, p->a, p->b, p->d, p->d, pref, 1, &res,
                                        &found);
    cublasLtMatmulPreferenceDestroy(pref);
    p->ok = cs == CUBLAS_STATUS_SUCCESS && found > 0;
    if (p->ok) {
        p->algo = res.algo;
    }
    return MT_OK;
}
#endif

/* A plan for this shape in slot p (p->ok false where cuBLASLt has none). */
static mt_status_t
plan_make(struct mt_gpu_gemm_fp8 *f, struct plan *p, int64_t rows, int64_t cols, int n,
          const float *sa, const float *sb, size_t ws_bytes)
{
    mt_status_t st = MT_OK;

    plan_clear(p);
    p->rows = rows;
    p->cols = cols;
    p->n = n;
#if CUBLAS_VERSION >= 120900
    st = plan_build(f, p, sa, sb, ws_bytes);
#else
    (void)f, (void)sa, (void)sb, (void)ws_bytes;
#endif
    if (st != MT_OK) {
        plan_clear(p); /* whatever was made; the slot is empty again */
    }
    return st;
}

extern "C" mt_status_t
mt_gpu_gemm_fp8_linear(struct mt_gpu_gemm_fp8 *f, const struct mt_gpu_weight *w,
                       const uint8_t *q, const float *s, int n, float *y, void *ws,
                       size_t ws_bytes, struct CUstream_st *stream)
{
    if (f == NULL || !mt_gpu_gemm_fp8_fits(w) || w->data == NULL || q == NULL || s == NULL ||
        y == NULL || n < 16 || n % 16 != 0) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu fp8 gemm: %d tokens x %s weight %lld x %lld (want "
                       "tokens a multiple of 16, FP8 with block scales, rows a multiple of 4, "
                       "columns of 512)", n,
                       w != NULL ? mt_dtype_name(w->dtype) : "(null)",
                       w != NULL ? (long long)w->rows : 0LL, w != NULL ? (long long)w->cols : 0LL);
    }
    struct plan *p = NULL;
    for (int i = 0; i < PLANS && p == NULL; i++) {
        struct plan *c = &f->plans[i];
        p = c->n == n && c->rows == w->rows && c->cols == w->cols ? c : NULL;
    }
    if (p == NULL) {
        mt_status_t st;
        p = &f->plans[f->next];
        f->next = (f->next + 1) % PLANS;
        if ((st = plan_make(f, p, w->rows, w->cols, n, w->scale, s, ws_bytes)) != MT_OK) {
            return st;
        }
    }
    if (!p->ok) {
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "cuBLASLt has no block-scaled FP8 GEMM for %d "
                       "tokens x %lld x %lld on this GPU", n, (long long)w->rows,
                       (long long)w->cols);
    }
    /* the heuristic assumed matrices on 256-byte boundaries (cuBLASLt's default); scales on 16 */
    if (((uintptr_t)w->data | (uintptr_t)q | (uintptr_t)y) % 256 != 0 ||
        ((uintptr_t)w->scale | (uintptr_t)s) % 16 != 0) {
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "the block-scaled FP8 GEMM of %lld x %lld: an "
                       "operand off a 256-byte boundary", (long long)w->rows, (long long)w->cols);
    }
    const float one = 1.0f, zero = 0.0f;
#if CUBLAS_VERSION >= 120900
    cublasStatus_t cs = set_scales(p, w->scale, s);
#else
    cublasStatus_t cs = CUBLAS_STATUS_NOT_SUPPORTED; /* never reached: p->ok is false */
#endif
    cs = cs == CUBLAS_STATUS_SUCCESS
             ? cublasLtMatmul(f->lt, p->desc, &one, w->data, p->a, q, p->b, &zero, y, p->d, y,
                              p->d, &p->algo, ws, ws_bytes, stream)
             : cs;
    mt_status_t st = lt_status(cs, "block-scaled FP8 GEMM");
    /* named for --debug-sync and the kernel-time table like our own launches */
    return st == MT_OK ? mt_cuda_launched("cublaslt fp8 gemm", stream) : st;
}
