/* SPDX-License-Identifier: MIT */
/*
 * experts_avx512.c - the expert kernels with AVX-512 F + BW (16 floats per vector, tiles of
 * 4 rows x 4 tokens), compiled for those units only here. The FP8 conversion is the one of
 * experts_avx2.c on 32 bytes at a time (VPMOVZXBW to 32 halfwords, two VCVTPH2PS).
 */
#pragma GCC target("avx512f,avx512bw,avx512vl,f16c,fma")
#include <config.h>

#include "cpu/experts_impl.h"

#include <immintrin.h>

#define VEC __m512
#define VL 16
#define TT 4
#define ZERO() _mm512_setzero_ps()
#define SET1(f) _mm512_set1_ps(f)
#define LOADX(p) _mm512_loadu_ps(p)
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define HSUM(v) _mm512_reduce_add_ps(v)
#define KNAME(n) avx512_##n

#define CVT_FP8(p, lo, hi)                                                                        \
    do {                                                                                          \
        __m512i u_ = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(p)));              \
        u_ = _mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(u_, 8), 1),                     \
                              _mm512_set1_epi16((short)0xbfff));                                  \
        (lo) = _mm512_cvtph_ps(_mm512_castsi512_si256(u_));                                       \
        (hi) = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(u_, 1));                                 \
    } while (0)

#define CVT_BF16(p, lo, hi)                                                                       \
    do {                                                                                          \
        (lo) = _mm512_castsi512_ps(_mm512_slli_epi32(                                             \
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16));                \
        (hi) = _mm512_castsi512_ps(_mm512_slli_epi32(                                             \
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p) + 1)), 16));            \
    } while (0)

#include "cpu/experts_tile.h"

/* h = SiLU(g) x u, 16 at a time: the e^t of experts_avx2.c's avx2_swiglu, which says how. */
static inline __m512
avx512_exp(__m512 t)
{
    t = _mm512_min_ps(_mm512_max_ps(t, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(t, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), t);

    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);

    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i e =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);

    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

void
mt_cpu_swiglu_avx512(const float *g, const float *u, float *h, int64_t n)
{
    int64_t i = 0;

    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(g + i);
        __m512 d =
            _mm512_add_ps(_mm512_set1_ps(1.0f), avx512_exp(_mm512_sub_ps(_mm512_setzero_ps(), x)));

        _mm512_storeu_ps(h + i, _mm512_mul_ps(_mm512_div_ps(x, d), _mm512_loadu_ps(u + i)));
    }
    for (; i < n; i++) {
        h[i] = mt_cpu_silu(g[i]) * u[i];
    }
}

const struct mt_cpu_kernels mt_cpu_kernels_avx512 = {
    .name = "avx512",
    .rows_fp8 = avx512_rows_fp8,
    .rows_bf16 = avx512_rows_bf16,
    .swiglu = mt_cpu_swiglu_avx512,
};
