/* SPDX-License-Identifier: MIT */
/*
 * gemm_fp8.h - the prefill GEMM in DeepSeek's own FP8 arithmetic (gemm_fp8.cu): the activations
 * quantized to e4m3 with one fp32 scale per token and 128 columns, the checkpoint's FP8 weight
 * multiplied where it lies with its 128x128 block scales, on cuBLASLt's block-scaled FP8 GEMM
 * (CUDA 12.9+, Hopper). gemm.cu's MT_GPU_GEMM_FP8 mode calls it and falls back to its BF16X3
 * arithmetic where this path cannot run. Same conventions as gemm.h. Only for CUDA builds.
 */
#ifndef MT_KERNELS_GEMM_FP8_H
#define MT_KERNELS_GEMM_FP8_H

#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

struct mt_gpu_gemm_fp8;

mt_status_t mt_gpu_gemm_fp8_create(struct mt_gpu_gemm_fp8 **out);
void mt_gpu_gemm_fp8_destroy(struct mt_gpu_gemm_fp8 *f);

/*
 * Whether w has the shape this path takes: FP8 with block scales, a width of whole 128-column
 * blocks in a multiple of 4 blocks (cuBLASLt reads a 128-row block's scales in groups of 4: the
 * checkpoint's row of scales is then its layout as it lies) and rows a multiple of 4 (16-byte
 * rows of fp32 output). Every FP8 projection of V3.2 has it.
 */
bool mt_gpu_gemm_fp8_fits(const struct mt_gpu_weight *w);

/*
 * Bytes the quantized activations of n_pad tokens x cols take: the e4m3 values, then (from the
 * next 256-byte boundary) the scales.
 */
size_t mt_gpu_quant_1x128_bytes(int n_pad, int64_t cols);
/* Where the scales start in such an area that begins at q. */
float *mt_gpu_quant_1x128_scales(uint8_t *q, int n_pad, int64_t cols);

/*
 * x [n, cols] fp32 (cols a multiple of 128) -> q [n_pad, cols] e4m3 and s [cols / 128][n_pad]
 * fp32, token-contiguous per block (cuBLASLt's layout): s = amax of the token's 128 values / 448
 * (1 for a block of zeros), q = e4m3(x / s) rounded to nearest even, saturated at +-448, so x =
 * q * s within e4m3's 2^-4 relative rounding; tokens n .. n_pad - 1 (padding) zeros, scale 1.
 */
mt_status_t mt_gpu_quant_1x128(const float *x, int n, int n_pad, int64_t cols, uint8_t *q,
                               float *s, struct CUstream_st *stream);

/*
 * y[n, rows] = (q * s)[n, cols] W^T with W's block scales, fp32 out, on cuBLASLt (ws: its
 * workspace, ws_bytes); n a multiple of 16 (on the H200, cuBLASLt 13.1 had no algorithm for
 * 9 or 37 tokens: the caller pads). MT_ERR_UNSUPPORTED, with nothing enqueued, where cuBLASLt
 * has no algorithm for it on this GPU (before Hopper, or a cuBLASLt before 12.9): the caller
 * multiplies another way.
 */
mt_status_t mt_gpu_gemm_fp8_linear(struct mt_gpu_gemm_fp8 *f, const struct mt_gpu_weight *w,
                                   const uint8_t *q, const float *s, int n, float *y, void *ws,
                                   size_t ws_bytes, struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif

#endif /* MT_KERNELS_GEMM_FP8_H */
