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

const struct mt_cpu_kernels mt_cpu_kernels_avx512 = {
    .name = "avx512",
    .rows_fp8 = avx512_rows_fp8,
    .rows_bf16 = avx512_rows_bf16,
};
