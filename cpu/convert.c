/* SPDX-License-Identifier: MIT */
/*
 * convert.c - FP8 e4m3fn and F16 conversions (BF16 is inline in convert.h).
 */
#include <config.h>

#include "cpu/convert.h"

#include <math.h>

float mt_fp8_table_[256];

/* e4m3fn decode: exponent 0 is subnormal (m/8 * 2^-6); S.1111.111 is NaN; no infinities. */
static float
fp8_decode(uint8_t v)
{
    int sign = v >> 7;
    int e = (v >> 3) & 0xf;
    int m = v & 0x7;
    float x;

    if (e == 0xf && m == 0x7) {
        return NAN;
    }
    if (e == 0) {
        x = ldexpf((float)m / 8.0f, -6);
    } else {
        x = ldexpf(1.0f + (float)m / 8.0f, e - 7);
    }
    return sign ? -x : x;
}

/* Runs before main: the table is then read-only and safe to share between threads. */
__attribute__((constructor)) static void
fp8_table_init(void)
{
    for (int i = 0; i < 256; i++) {
        mt_fp8_table_[i] = fp8_decode((uint8_t)i);
    }
}

mt_fp8_t
mt_f32_to_fp8(float f)
{
    uint8_t sign = signbit(f) ? 0x80 : 0x00;
    float a = fabsf(f);
    int k;
    int e;
    float q;

    if (isnan(f)) {
        return 0x7f;
    }
    if (a >= MT_FP8_E4M3_MAX) {
        return sign | 0x7e;
    }
    if (a < 0x1p-6f) {
        /* Subnormal range: spacing 2^-9; q == 8 rounds up into the first normal (code 0x08). */
        q = rintf(a * 512.0f);
        return sign | (uint8_t)q;
    }
    frexpf(a, &k); /* a = f * 2^k, f in [0.5, 1) */
    e = k - 1;     /* a in [2^e, 2^(e+1)) */
    q = rintf(ldexpf(a, 3 - e)); /* 8..16 */
    if (q >= 16.0f) {
        q = 8.0f;
        e++;
    }
    if (e + 7 > 15 || (e + 7 == 15 && q - 8.0f > 6.0f)) {
        return sign | 0x7e;
    }
    return sign | (uint8_t)(((e + 7) << 3) | ((int)q - 8));
}

float
mt_f16_to_f32(mt_f16_t h)
{
    int sign = h >> 15;
    int e = (h >> 10) & 0x1f;
    int m = h & 0x3ff;
    float x;

    if (e == 0) {
        x = ldexpf((float)m, -24);
    } else if (e == 31) {
        x = m ? NAN : INFINITY;
    } else {
        x = ldexpf(1.0f + (float)m / 1024.0f, e - 15);
    }
    return sign ? -x : x;
}

mt_f16_t
mt_f32_to_f16(float f)
{
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    float a = fabsf(f);
    int k;
    int e;
    float q;

    if (isnan(f)) {
        return 0x7e00;
    }
    if (a >= 65520.0f) {
        return sign | 0x7c00;
    }
    if (a < 0x1p-14f) {
        q = rintf(a * 16777216.0f); /* spacing 2^-24; 1024 rounds into the first normal */
        return sign | (uint16_t)q;
    }
    frexpf(a, &k);
    e = k - 1;
    q = rintf(ldexpf(a, 10 - e));
    if (q >= 2048.0f) {
        q = 1024.0f;
        e++;
    }
    return sign | (uint16_t)(((e + 15) << 10) | ((int)q - 1024));
}

void
mt_bf16_to_f32_n(const mt_bf16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dst[i] = mt_bf16_to_f32(src[i]);
    }
}

void
mt_f16_to_f32_n(const mt_f16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dst[i] = mt_f16_to_f32(src[i]);
    }
}

void
mt_fp8_to_f32_n(const mt_fp8_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dst[i] = mt_fp8_table_[src[i]];
    }
}

void
mt_fp8_dequant_block(const mt_fp8_t *w, const float *scale, size_t rows, size_t cols, float *out)
{
    size_t scols = (cols + 127) / 128;

    for (size_t i = 0; i < rows; i++) {
        const float *srow = scale + (i / 128) * scols;
        for (size_t j = 0; j < cols; j++) {
            out[i * cols + j] = mt_fp8_table_[w[i * cols + j]] * srow[j / 128];
        }
    }
}

mt_status_t
mt_fp8_scales_check(const float *scale, int64_t n, const char *name)
{
    const float limit = 3.0e38f / 448.0f;

    for (int64_t i = 0; i < n; i++) {
        if (!(scale[i] >= 0.0f && scale[i] <= limit)) {
            return mt_fail(MT_ERR_FORMAT, 0, "tensor '%s': block scale %lld is %g, not a value "
                           "in [0, %g]; the checkpoint is corrupt", name,
                           (long long)i, (double)scale[i], (double)limit);
        }
    }
    return MT_OK;
}
