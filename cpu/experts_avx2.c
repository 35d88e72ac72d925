/* SPDX-License-Identifier: MIT */
/*
 * experts_avx2.c - the expert kernels with AVX2 + FMA + F16C (8 floats per vector), compiled for
 * those units only here; cpu/experts.c calls them only where cpuid says they run.
 *
 * FP8 e4m3 -> fp32 in registers: the byte s.eeee.mmm moved to s.0eeee.mmm0000000 is an fp16
 * of value / 256 (bias 15 instead of 7), subnormals included, and VCVTPH2PS converts it exactly
 * (it ignores MXCSR.DAZ); the 256 is folded into the block scale. 0x7f/0xff (NaN) would read as
 * 480: checkpoints hold none (the loaders check scales, not every byte).
 */
#pragma GCC target("avx2,fma,f16c")
#include <config.h>

#include "cpu/experts_impl.h"

#include <immintrin.h>

#define VEC __m256
#define VL 8
#define TT 2
#define ZERO() _mm256_setzero_ps()
#define SET1(f) _mm256_set1_ps(f)
#define LOADX(p) _mm256_loadu_ps(p)
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define KNAME(n) avx2_##n

static inline float
avx2_hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#define HSUM(v) avx2_hsum(v)

#define CVT_FP8(p, lo, hi)                                                                        \
    do {                                                                                          \
        __m256i u_ = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(p)));                 \
        u_ = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(u_, 8), 1),                     \
                              _mm256_set1_epi16((short)0xbfff));                                  \
        (lo) = _mm256_cvtph_ps(_mm256_castsi256_si128(u_));                                       \
        (hi) = _mm256_cvtph_ps(_mm256_extracti128_si256(u_, 1));                                  \
    } while (0)

#define CVT_BF16(p, lo, hi)                                                                       \
    do {                                                                                          \
        __m256i v_ = _mm256_loadu_si256((const __m256i *)(p));                                    \
        (lo) = _mm256_castsi256_ps(                                                               \
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(v_)), 16));            \
        (hi) = _mm256_castsi256_ps(                                                               \
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(v_, 1)), 16));       \
    } while (0)

#include "cpu/experts_tile.h"

/*
 * h = SiLU(g) x u = g / (1 + e^-g) x u, 8 at a time. e^t by t = n ln2 + r (n the nearest
 * integer to t / ln2, ln2 in two parts so r is exact), e^r by Cephes' degree-6 polynomial on
 * |r| <= ln2 / 2 (relative error about 1e-7) and 2^n built in the exponent bits; t is clamped
 * to [-87.3, 88.3], where e^t and 2^n stay normal floats (beyond it SiLU is 0 or g to fp32
 * precision). A NaN g stays NaN (the numerator). Prefill calls it on m x 2048 floats per
 * expert, where the scalar expf was a few percent of the layer.
 */
static inline __m256
avx2_exp(__m256 t)
{
    t = _mm256_min_ps(_mm256_max_ps(t, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(t, _mm256_set1_ps(1.44269504f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), t);

    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);

    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);

    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static void
avx2_swiglu(const float *g, const float *u, float *h, int64_t n)
{
    int64_t i = 0;

    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 d =
            _mm256_add_ps(_mm256_set1_ps(1.0f), avx2_exp(_mm256_sub_ps(_mm256_setzero_ps(), x)));

        _mm256_storeu_ps(h + i, _mm256_mul_ps(_mm256_div_ps(x, d), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) {
        h[i] = mt_cpu_silu(g[i]) * u[i];
    }
}

const struct mt_cpu_kernels mt_cpu_kernels_avx2 = {
    .name = "avx2",
    .rows_fp8 = avx2_rows_fp8,
    .swiglu = avx2_swiglu,
    .rows_bf16 = avx2_rows_bf16,
};
