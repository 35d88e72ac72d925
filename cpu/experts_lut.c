/* SPDX-License-Identifier: MIT */
/*
 * experts_lut.c - the FMA decode tiles of experts_avx512.c with a cheaper FP8 widening: a
 * 128-entry table looked up by VPERMI2B (AVX512-VBMI), compiled for those units only here;
 * cpu/experts.c calls it at the avx512 and amx levels where cpuid reports VBMI and
 * mt_cpu_experts_decode is 1.
 *
 * The one idea: an e4m3 value in fp32 has only its two high bytes set (sign, exponent and the
 * 3 mantissa bits end at bit 20), so two table lookups give every byte there is, and a third
 * permute places them into the dwords: 32 weights cost 5 uops (2 VPERMI2B for the high and low
 * bytes, a VPTERNLOG for the sign, 2 VPERMI2B that spread them) instead of the 9 of the bit
 * moves and VCVTPH2PS of experts_avx512.c, with the same fp32 FMAs after. The tables hold
 * value / 256 (exact; the smallest subnormal becomes 2^-17, a normal fp32), so the register
 * tile of experts_tile.h is used unchanged (it multiplies the block scale by 256).
 *
 * Measured: on the GPU test machine (Sapphire Rapids) this was SLOWER than the bit moves (FP8,
 * 1 token x 8 experts: 77 against 101 GB/s in the same run): VPERMI2B costs more there than
 * its uop count. Kept, tested, for CPUs where table permutes are cheap; not the default.
 */
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vbmi,f16c,fma")
#include <config.h>

#include "cpu/experts_impl.h"

#include "cpu/convert.h"

#include <immintrin.h>
#include <pthread.h>
#include <string.h>

/* Bytes 3 and 2 of the fp32 bits of (e4m3 magnitude v) / 256, v = 0..127: VPERMI2B tables. */
static uint8_t lut_b3[128] __attribute__((aligned(64)));
static uint8_t lut_b2[128] __attribute__((aligned(64)));
/* Spread: byte 4i+3 <- table-3 byte i, 4i+2 <- table-2 byte i (i + 64: the second source),
 * for weights 0-15 and 16-31 of a step. */
static uint8_t spread[2][64] __attribute__((aligned(64)));
static pthread_once_t lut_once = PTHREAD_ONCE_INIT;

static void
lut_init(void)
{
    for (int v = 0; v < 128; v++) {
        /* 0x7f is NaN in e4m3; checkpoints hold none (see experts_avx2.c): read as 480 */
        float f = (v == 0x7f ? 480.0f : mt_fp8_to_f32((mt_fp8_t)v)) / 256.0f;
        uint32_t u;

        memcpy(&u, &f, sizeof(u));
        MT_ASSERT((u & 0xffff) == 0);
        lut_b3[v] = (uint8_t)(u >> 24);
        lut_b2[v] = (uint8_t)(u >> 16);
    }
    for (int h = 0; h < 2; h++) {
        for (int i = 0; i < 16; i++) {
            spread[h][4 * i + 0] = 0; /* zeroed by the mask */
            spread[h][4 * i + 1] = 0;
            spread[h][4 * i + 2] = (uint8_t)(64 + 16 * h + i);
            spread[h][4 * i + 3] = (uint8_t)(16 * h + i);
        }
    }
}

/* The tables, in registers for a whole call: loaded by lut_rows_* before the tiles run. */
struct lut_regs {
    __m512i t3lo, t3hi, t2lo, t2hi, sp0, sp1;
};

#define VEC __m512
#define VL 16
#define TT 4
#define ZERO() _mm512_setzero_ps()
#define SET1(f) _mm512_set1_ps(f)
#define LOADX(p) _mm512_loadu_ps(p)
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define HSUM(v) _mm512_reduce_add_ps(v)
#define KNAME(n) lut_##n

/* 32 e4m3 bytes at p -> two VEC of value / 256 (weights 0-15, 16-31), from the tables in L. */
#define CVT_FP8(p, lo, hi)                                                                         \
    do {                                                                                           \
        __m512i b_ = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p)));             \
        __m512i h_ = _mm512_permutex2var_epi8(L.t3lo, b_, L.t3hi);                                 \
        __m512i l_ = _mm512_permutex2var_epi8(L.t2lo, b_, L.t2hi);                                 \
        h_ = _mm512_ternarylogic_epi32(h_, b_, _mm512_set1_epi8((char)0x80), 0xf8);                \
        (lo) = _mm512_castsi512_ps(                                                                \
            _mm512_maskz_permutex2var_epi8(0xccccccccccccccccull, h_, L.sp0, l_));                 \
        (hi) = _mm512_castsi512_ps(                                                                \
            _mm512_maskz_permutex2var_epi8(0xccccccccccccccccull, h_, L.sp1, l_));                 \
    } while (0)

#define CVT_BF16(p, lo, hi)                                                                        \
    do {                                                                                           \
        (lo) = _mm512_castsi512_ps(_mm512_slli_epi32(                                              \
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16));                 \
        (hi) = _mm512_castsi512_ps(_mm512_slli_epi32(                                              \
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p) + 1)), 16));             \
    } while (0)

/* the tile reads the tables from a local `L`: declared in every function that expands it */
#define MT_TILE_LOCALS const struct lut_regs L = lut_regs_load();

static inline __attribute__((always_inline)) struct lut_regs
lut_regs_load(void)
{
    struct lut_regs r;

    pthread_once(&lut_once, lut_init);
    r.t3lo = _mm512_load_si512(lut_b3);
    r.t3hi = _mm512_load_si512(lut_b3 + 64);
    r.t2lo = _mm512_load_si512(lut_b2);
    r.t2hi = _mm512_load_si512(lut_b2 + 64);
    r.sp0 = _mm512_load_si512(spread[0]);
    r.sp1 = _mm512_load_si512(spread[1]);
    return r;
}

#include "cpu/experts_tile.h"

const struct mt_cpu_kernels mt_cpu_kernels_lut = {
    .name = "avx512-lut",
    .rows_fp8 = lut_rows_fp8,
    .rows_bf16 = lut_rows_bf16,
};
