/* SPDX-License-Identifier: MIT */
/*
 * transpose16.h - the 16 x 16 transpose of 32-bit elements in AVX-512 registers that the AMX
 * kernels use to build VNNI tiles and to turn C around (cpu/experts_amx_tiles.c,
 * cpu/experts_amx_small.c). Include it after the file's AVX-512 target pragma.
 */
#ifndef MT_CPU_TRANSPOSE16_H
#define MT_CPU_TRANSPOSE16_H

#include <immintrin.h>

/*
 * Transpose the 16 x 16 matrix of 32-bit elements r[row][col] in place (r[i] = column i after),
 * in three stages: pairs within 128-bit lanes, quads within lanes, then the 4 x 4 lanes.
 */
static inline void
mt_transpose16(__m512i r[16])
{
    __m512i t[16];

    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    /* u[4i + j], lane L: column 4L + j of rows 4i .. 4i + 3 */
    for (int i = 0; i < 4; i++) {
        r[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    /* column 4L + j = lane L of u[j], u[4 + j], u[8 + j], u[12 + j] */
    for (int j = 0; j < 4; j++) {
        __m512i p = _mm512_shuffle_i32x4(r[j], r[4 + j], _MM_SHUFFLE(2, 0, 2, 0));
        __m512i q = _mm512_shuffle_i32x4(r[j], r[4 + j], _MM_SHUFFLE(3, 1, 3, 1));
        __m512i p2 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], _MM_SHUFFLE(2, 0, 2, 0));
        __m512i q2 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], _MM_SHUFFLE(3, 1, 3, 1));

        t[j] = _mm512_shuffle_i32x4(p, p2, _MM_SHUFFLE(2, 0, 2, 0));
        t[4 + j] = _mm512_shuffle_i32x4(q, q2, _MM_SHUFFLE(2, 0, 2, 0));
        t[8 + j] = _mm512_shuffle_i32x4(p, p2, _MM_SHUFFLE(3, 1, 3, 1));
        t[12 + j] = _mm512_shuffle_i32x4(q, q2, _MM_SHUFFLE(3, 1, 3, 1));
    }
    for (int i = 0; i < 16; i++) {
        r[i] = t[i];
    }
}

#endif /* MT_CPU_TRANSPOSE16_H */
