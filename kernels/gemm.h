/* SPDX-License-Identifier: MIT */
/*
 * gemm.h - the prefill GEMM of the GPU engine (gemm.cu): y[n, rows] = x[n, cols] W^T for n
 * tokens at once, W in its checkpoint dtype (FP8 e4m3 with 128x128 block scales, BF16, or F32),
 * x and y fp32 on the device; and MLA's two absorption products through kv_b for n tokens.
 *
 * A context holds the cuBLAS handle and a work area the caller gives it (from the engine's
 * arena, so all device memory stays under --gpu-mem): cuBLAS's workspace, the activations in
 * BF16, and a slab for dequantized weight rows. Same conventions as ops.h: device pointers,
 * enqueued on `stream`, MT_ERR_INVAL before any launch for bad arguments, MT_ERR_CUDA for a
 * failed launch or cuBLAS call. Only for CUDA builds.
 */
#ifndef MT_KERNELS_GEMM_H
#define MT_KERNELS_GEMM_H

#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

struct mt_gpu_gemm;

/*
 * What the products are computed in:
 *   MT_GPU_GEMM_F32    fp32 FMA on CUDA cores on the exact dequantized weights (the accuracy
 *                      mode: the CPU reference's products up to summation order; slowest);
 *   MT_GPU_GEMM_BF16   x and W rounded to bf16, tensor cores, fp32 sums (fastest; 2^-8 relative
 *                      a product, enough to flip a routing or top-k choice of the test models);
 *   MT_GPU_GEMM_BF16X3 x and W each split into bf16 hi + lo (x - hi), hi.hi + lo.hi + hi.lo on
 *                      tensor cores with fp32 sums: three BF16 products' time for about 2^-16
 *                      relative a product (a bf16 W is exact, so its lo is never formed);
 *   MT_GPU_GEMM_FP8    DeepSeek's arithmetic (gemm_fp8.h): x quantized to e4m3 per token and
 *                      128 columns (2^-4 relative a value), an FP8 W multiplied where it lies
 *                      with its block scales on FP8 tensor cores (Hopper, cuBLASLt 12.9+);
 *                      other weights and GPUs, and MLA's absorptions, run the BF16X3 arithmetic.
 * Widths that are not a multiple of 8 run the F32 arithmetic in the BF16X3 mode.
 */
enum mt_gpu_gemm_math { MT_GPU_GEMM_F32, MT_GPU_GEMM_BF16, MT_GPU_GEMM_BF16X3, MT_GPU_GEMM_FP8 };

const char *mt_gpu_gemm_math_name(enum mt_gpu_gemm_math m);

mt_status_t mt_gpu_gemm_create(enum mt_gpu_gemm_math math, struct mt_gpu_gemm **out);
void mt_gpu_gemm_destroy(struct mt_gpu_gemm *g);
enum mt_gpu_gemm_math mt_gpu_gemm_math(const struct mt_gpu_gemm *g);
/*
 * The FP8 mode's products of weights its path takes that ran BF16X3 instead, cuBLASLt having no
 * block-scaled FP8 GEMM for them on this GPU (every one before Hopper): 0 where all ran FP8.
 */
long mt_gpu_gemm_fp8_fallbacks(const struct mt_gpu_gemm *g);

/*
 * Bytes of work area for up to max_tok tokens of up to max_cols inputs in arithmetic `math`,
 * and kv_b's absorption of n_heads heads (kvb_elems = kv_b's rows * cols; 0 if none): cuBLAS's
 * workspace, x in bf16 (three planes in the BF16X3 and FP8 modes), and a weight slab that holds
 * kv_b in fp32 and at least 64 MiB.
 */
size_t mt_gpu_gemm_work_bytes(enum mt_gpu_gemm_math math, int max_tok, int64_t max_cols,
                              int64_t kvb_elems);
/* Hand the context its work area (device, `bytes` from mt_gpu_gemm_work_bytes). */
mt_status_t mt_gpu_gemm_set_work(struct mt_gpu_gemm *g, void *work, size_t bytes, int max_tok,
                                 int64_t max_cols);

/*
 * y[n, rows] = x[n, cols] W^T, n >= 1 (any; the engine uses it above MT_GPU_GEMV_MAX_TOK).
 * An FP8 (or, in the F32 mode, BF16) W is dequantized slab by slab into the work area and
 * multiplied there; a BF16 W in the BF16 and BF16X3 modes, an F32 W, and in the FP8 mode an FP8
 * W that gemm_fp8.h's path takes are multiplied where they lie.
 */
mt_status_t mt_gpu_gemm_linear(struct mt_gpu_gemm *g, const struct mt_gpu_weight *w,
                               const float *x, int n, float *y, struct CUstream_st *stream);

/*
 * MLA's absorption for n tokens, kv_b [H * (nope + vd), kvl] in any dtype of mt_gpu_weight or
 * F32: in the BF16X3 mode (widths multiples of 8, FP8 or BF16 kv_b) as hi + lo splits on tensor
 * cores, heads in groups that fit the x planes; otherwise in fp32 (kv_b dequantized once into
 * the slab):
 *   absorb_q: q [n, H, nope + rope] -> q_lat [n, H, kvl] (the nope part through the key half)
 *             and q_pe [n, H, rope] (copied);
 *   absorb_v: o_lat [n, H, kvl] -> out [n, H, vd] (through the value half).
 */
mt_status_t mt_gpu_gemm_absorb_q(struct mt_gpu_gemm *g, const struct mt_gpu_weight *kvb,
                                 const float *q, int n, int n_heads, int nope, int vd, int rope,
                                 float *q_lat, float *q_pe, struct CUstream_st *stream);
mt_status_t mt_gpu_gemm_absorb_v(struct mt_gpu_gemm *g, const struct mt_gpu_weight *kvb,
                                 const float *o_lat, int n, int n_heads, int nope, int vd,
                                 float *out, struct CUstream_st *stream);

/*
 * W (FP8 with block scales, BF16 or F32) rows r0 .. r0 + n_rows - 1 dequantized into dst
 * [n_rows, cols] as BF16 or F32 (the fp32 value fp8 * scale, then rounded to nearest even).
 */
mt_status_t mt_gpu_dequant_rows(const struct mt_gpu_weight *w, int64_t r0, int64_t n_rows,
                                enum mt_dtype dst_dtype, void *dst, struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif

#endif /* MT_KERNELS_GEMM_H */
