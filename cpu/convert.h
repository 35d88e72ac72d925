/* SPDX-License-Identifier: MIT */
/*
 * convert.h - scalar number formats of DeepSeek-V3.2 checkpoints: FP8 e4m3fn, BF16, F16.
 *
 * e4m3fn (the "fn" matters): 1 sign, 4 exponent bits (bias 7), 3 mantissa bits, no infinities,
 * 0x7F/0xFF are NaN, largest finite 448. Encoding rounds to nearest even and saturates at +-448,
 * which is what torch's `.to(torch.float8_e4m3fn)` gives after DeepSeek's clamp to [-448, 448].
 */
#ifndef MT_CPU_CONVERT_H
#define MT_CPU_CONVERT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "runtime/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t mt_bf16_t;
typedef uint16_t mt_f16_t;
typedef uint8_t mt_fp8_t; /* e4m3fn */

#define MT_FP8_E4M3_MAX 448.0f

/* The 256 e4m3fn values as float, filled by a constructor before main (then read-only). */
extern float mt_fp8_table_[256];

static inline float
mt_bf16_to_f32(mt_bf16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/* Round to nearest even; NaN stays NaN. */
static inline mt_bf16_t
mt_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (mt_bf16_t)((u >> 16) | 0x40);
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return (mt_bf16_t)(u >> 16);
}

float mt_f16_to_f32(mt_f16_t h);
mt_f16_t mt_f32_to_f16(float f);

static inline float
mt_fp8_to_f32(mt_fp8_t v)
{
    return mt_fp8_table_[v];
}

/* Round to nearest even, saturating to +-448; NaN maps to 0x7F. */
mt_fp8_t mt_f32_to_fp8(float f);

/* Bulk conversions to fp32 (n elements). */
void mt_bf16_to_f32_n(const mt_bf16_t *src, float *dst, size_t n);
void mt_f16_to_f32_n(const mt_f16_t *src, float *dst, size_t n);
void mt_fp8_to_f32_n(const mt_fp8_t *src, float *dst, size_t n);

/*
 * Dequantize a block-scaled FP8 weight W[rows, cols] (row-major) with scales
 * S[ceil(rows/128), ceil(cols/128)] (row-major, fp32 multipliers: DeepSeek's weight_scale_inv):
 * out[i, j] = W[i, j] * S[i / 128, j / 128].
 */
void mt_fp8_dequant_block(const mt_fp8_t *w, const float *scale, size_t rows, size_t cols,
                          float *out);

/*
 * Check n FP8 block scales (weight_scale_inv) of tensor `name`: each must be finite, not negative,
 * and small enough that 448 times it stays finite in fp32. A NaN or huge scale would otherwise
 * flow through every product of its block. MT_ERR_FORMAT naming the tensor and the block.
 */
mt_status_t mt_fp8_scales_check(const float *scale, int64_t n, const char *name);

#ifdef __cplusplus
}
#endif

#endif /* MT_CPU_CONVERT_H */
