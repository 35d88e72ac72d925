/* SPDX-License-Identifier: MIT */
/*
 * experts_dot.c - the decode expert kernels on AVX512-BF16 dot products (VDPBF16PS), with FP8
 * e4m3 weights widened to bf16 by a 128-entry table (AVX512-VBMI VPERMI2B), compiled for those
 * units only here; cpu/experts.c calls them at the avx512 and amx levels where cpuid reports
 * both and mt_cpu_experts_decode (3 or 2) asks for them (the default is the FMA tiles of
 * experts_tile.h).
 *
 * Measured: on the GPU test machine (Sapphire Rapids) these kernels were SLOWER than the FMA
 * tiles (FP8, 1 token x 8 experts: 60-62 GB/s with 3 terms, 70-82 with 2, 84-90 for the FMA
 * tiles in the same runs; one core alone 3.7 GB/s against 5-9): the dot products cost more
 * there than the uop count below suggests. They stay as a tested alternative for CPUs with faster
 * VDPBF16PS, chosen only by measurement (bench/bench_cpu_experts (f)).
 *
 * The one idea: decoding 1-2 tokens is bound by how many weight lines a core keeps in flight,
 * and every uop spent per weight byte shrinks the window the core looks ahead in. The FMA tiles
 * spend about 11 uops per 32 FP8 weights of a row (VPMOVZXBW, 3 bit moves, 2 VCVTPH2PS of 2 uops,
 * VEXTRACT, 2 FMAs); here 64 weights cost 5 (2 VPERMI2B table lookups for the high and low
 * bytes of their bf16, a VPTERNLOG for the sign, 2 VPUNPCK) plus the dot products.
 *
 * Exactness: every e4m3 value (subnormals included) and every bf16 weight is exact in bf16. The
 * activations are not, so each x is carried as a sum of `terms` bf16 values (x = t0 + t1 + t2,
 * each the bf16 rounding of what the ones before left; 3 terms hold 24 significant bits, all of
 * fp32's), and a weight is multiplied by each term: the products of two bf16 are exact in fp32
 * and summed in fp32, as on the FMA path. With 2 terms (16 bits, a knob for the benchmark) each
 * product is off by at most 2^-16 of itself. VDPBF16PS and VCVTNE2PS2BF16 flush denormals:
 * an activation below 2^-126 counts as zero, 1e-38 of a typical one.
 *
 * Layout: VPUNPCKLBW/HBW interleave bytes within 128-bit lanes, so the 64 weights of a step
 * come out as two vectors in the order A = (0-7, 16-23, 32-39, 48-55), B = (8-15, 24-31, ...);
 * x is packed once per input in that order (BF16 weights: natural order, 32 and 32), `terms`
 * pairs of vectors per 64 columns, and cached per thread like experts_amx.c's.
 */
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512bf16,fma")
#include <config.h>

#include "cpu/experts_impl.h"

#include "cpu/convert.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

/* The bf16 of e4m3 magnitude v (0..127) split in bytes: tables of 2 x 64 for VPERMI2B. */
static uint8_t lut_hi[128] __attribute__((aligned(64)));
static uint8_t lut_lo[128] __attribute__((aligned(64)));
static pthread_once_t lut_once = PTHREAD_ONCE_INIT;

static void
lut_init(void)
{
    for (int v = 0; v < 128; v++) {
        /* 0x7f is NaN in e4m3; checkpoints hold none (see experts_avx2.c): read it as 480 */
        float f = v == 0x7f ? 480.0f : mt_fp8_to_f32((mt_fp8_t)v);
        uint16_t h = mt_f32_to_bf16(f);

        lut_hi[v] = (uint8_t)(h >> 8);
        lut_lo[v] = (uint8_t)h;
    }
}

void
mt_cpu_e4m3_bf16_lut(const uint8_t **hi, const uint8_t **lo)
{
    pthread_once(&lut_once, lut_init);
    *hi = lut_hi;
    *lo = lut_lo;
}

/* ---- x packed as bf16 terms ----------------------------------------------------------------- */

struct dot_ws {
    uint16_t *xp; /* [m][cols / 64][terms][2][32] bf16 */
    size_t cap;
    const float *key_x;
    int64_t key_ldx;
    int64_t key_cols;
    int key_m;
    int key_fp8;
    int key_terms;
    uint64_t key_gen;
};

static __thread struct dot_ws ws;

void
mt_cpu_dot_ws_free(void)
{
    free(ws.xp);
    memset(&ws, 0, sizeof(ws));
}

/*
 * Store lo (16 floats) and hi (16 floats) as `terms` bf16 vectors of 32, terms apart by 32. An
 * inf or NaN goes whole into the first term and leaves 0 (inf - inf would leave NaN, and turn an
 * inf activation's product into NaN where the reference has inf).
 */
static inline void
split_store(__m512 lo, __m512 hi, uint16_t *dst, int terms)
{
    for (int k = 0; k < terms; k++) {
        __m512i b = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);

        _mm512_storeu_si512(dst + (size_t)k * 64, b);
        /* what this term left: exact, since the term is x rounded to 8 significant bits */
        lo = _mm512_sub_ps(lo, _mm512_castsi512_ps(_mm512_slli_epi32(
                                   _mm512_cvtepu16_epi32(_mm512_castsi512_si256(b)), 16)));
        hi = _mm512_sub_ps(hi, _mm512_castsi512_ps(_mm512_slli_epi32(
                                   _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(b, 1)), 16)));
        lo = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(lo, lo, _CMP_ORD_Q), lo);
        hi = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(hi, hi, _CMP_ORD_Q), hi);
    }
}

/* Pack x[m, cols] (row stride ldx) into ws.xp in the order of fp8 or bf16 weights. */
static void
pack_x(const float *x, int64_t ldx, int m, int64_t cols, int fp8, int terms)
{
    int64_t ng = cols / 64;

    for (int t = 0; t < m; t++) {
        const float *xt = x + (int64_t)t * ldx;

        for (int64_t g = 0; g < ng; g++) {
            const float *p = xt + g * 64;
            uint16_t *d = ws.xp + ((size_t)t * (size_t)ng + (size_t)g) * (size_t)terms * 64;
            __m512 x0 = _mm512_loadu_ps(p);
            __m512 x1 = _mm512_loadu_ps(p + 16);
            __m512 x2 = _mm512_loadu_ps(p + 32);
            __m512 x3 = _mm512_loadu_ps(p + 48);

            if (fp8) {
                /* A = (0-7, 16-23 | 32-39, 48-55), B = (8-15, 24-31 | 40-47, 56-63) */
                split_store(_mm512_shuffle_f32x4(x0, x1, 0x44), _mm512_shuffle_f32x4(x2, x3, 0x44),
                            d, terms);
                split_store(_mm512_shuffle_f32x4(x0, x1, 0xee), _mm512_shuffle_f32x4(x2, x3, 0xee),
                            d + 32, terms);
            } else {
                split_store(x0, x1, d, terms);
                split_store(x2, x3, d + 32, terms);
            }
        }
    }
}

/*
 * ws.xp holds x packed for these weights (packed now unless this thread just did); false when
 * its workspace cannot be allocated.
 */
static bool
pack_cached(const float *x, int64_t ldx, int m, int64_t cols, int fp8, int terms)
{
    uint64_t gen = atomic_load(&mt_cpu_experts_gen);
    size_t bytes = (size_t)m * (size_t)cols * (size_t)terms * 2;

    if (ws.key_x == x && ws.key_ldx == ldx && ws.key_m == m && ws.key_cols == cols &&
        ws.key_fp8 == fp8 && ws.key_terms == terms && ws.key_gen == gen) {
        return true;
    }
    ws.key_x = NULL;
    if (bytes > ws.cap) {
        void *q = mt_cpu_ws_alloc(bytes); /* m <= 32 tokens of one row: at most a few MiB */

        if (q == NULL) {
            return false;
        }
        free(ws.xp);
        ws.xp = q;
        ws.cap = bytes;
    }
    pack_x(x, ldx, m, cols, fp8, terms);
    ws.key_x = x;
    ws.key_ldx = ldx;
    ws.key_m = m;
    ws.key_cols = cols;
    ws.key_fp8 = fp8;
    ws.key_terms = terms;
    ws.key_gen = gen;
    return true;
}

/* ---- the register tile ---------------------------------------------------------------------- */

/*
 * y[t * ldy + i] = W[i, :] . x[t, :] for i < R rows at w (row stride ldw elements), t < T tokens
 * of the packed x at xp (token stride ldxp elements). One accumulator per row and token, two
 * when T = 1 (so 4 rows keep 8 chains of VDPBF16PS in flight); FP8 sums of one 128-column block
 * are added to the row total times the block scale.
 */
static inline __attribute__((always_inline)) void
dot_tile(const void *w, int64_t ldw, int fp8, const float *srow, const uint16_t *xp, int64_t ldxp,
         int64_t cols, int terms, int R, int T, float *y, int64_t ldy, __m512i th0, __m512i th1,
         __m512i tl0, __m512i tl1)
{
    const int na = T == 1 ? 2 : 1;
    int64_t pf = mt_cpu_experts_prefetch;
    __m512 tot[4][2];
    __m512 acc[4][2][2];
    const __m512i sign = _mm512_set1_epi8((char)0x80);

    for (int r = 0; r < R; r++) {
        for (int t = 0; t < T; t++) {
            tot[r][t] = _mm512_setzero_ps();
        }
    }
    for (int64_t c0 = 0; c0 < cols; c0 += 128) {
        int64_t c1 = c0 + 128 < cols ? c0 + 128 : cols;

        for (int r = 0; r < R; r++) {
            for (int t = 0; t < T; t++) {
                acc[r][t][0] = _mm512_setzero_ps();
                acc[r][t][1] = _mm512_setzero_ps();
            }
        }
        for (int64_t c = c0; c < c1; c += 64) {
            const uint16_t *xg = xp + (c / 64) * terms * 64;

            for (int r = 0; r < R; r++) {
                __m512i wa;
                __m512i wb;

                if (fp8) {
                    const uint8_t *p = (const uint8_t *)w + r * ldw + c;
                    __m512i b = _mm512_loadu_si512(p);
                    __m512i hi = _mm512_permutex2var_epi8(th0, b, th1);
                    __m512i lo = _mm512_permutex2var_epi8(tl0, b, tl1);

                    if (pf > 0) {
                        _mm_prefetch((const char *)p + pf, _MM_HINT_T0);
                    }
                    hi = _mm512_ternarylogic_epi32(hi, b, sign, 0xf8); /* hi | (b & 0x80) */
                    wa = _mm512_unpacklo_epi8(lo, hi);
                    wb = _mm512_unpackhi_epi8(lo, hi);
                } else {
                    const uint16_t *p = (const uint16_t *)w + r * ldw + c;

                    if (pf > 0) {
                        _mm_prefetch((const char *)p + pf, _MM_HINT_T0);
                        _mm_prefetch((const char *)p + pf + 64, _MM_HINT_T0);
                    }
                    wa = _mm512_loadu_si512(p);
                    wb = _mm512_loadu_si512(p + 32);
                }
                for (int t = 0; t < T; t++) {
                    for (int k = 0; k < terms; k++) {
                        const uint16_t *q = xg + t * ldxp + k * 64;
                        __m512bh xa = (__m512bh)_mm512_loadu_si512(q);
                        __m512bh xb = (__m512bh)_mm512_loadu_si512(q + 32);

                        acc[r][t][0] = _mm512_dpbf16_ps(acc[r][t][0], (__m512bh)wa, xa);
                        acc[r][t][na - 1] = _mm512_dpbf16_ps(acc[r][t][na - 1], (__m512bh)wb, xb);
                    }
                }
            }
        }
        __m512 s = _mm512_set1_ps(fp8 ? srow[c0 / 128] : 1.0f);

        for (int r = 0; r < R; r++) {
            for (int t = 0; t < T; t++) {
                __m512 a = na == 2 ? _mm512_add_ps(acc[r][t][0], acc[r][t][1]) : acc[r][t][0];

                tot[r][t] = _mm512_fmadd_ps(a, s, tot[r][t]);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        for (int t = 0; t < T; t++) {
            y[t * ldy + r] = _mm512_reduce_add_ps(tot[r][t]);
        }
    }
}

/* Rows [r0, r1) of w (FP8: inside one 128-row block) for m tokens, x in `terms` bf16 terms. */
static inline __attribute__((always_inline)) void
dot_rows(const struct mt_cpu_weight *w, int fp8, int terms, int64_t r0, int64_t r1, const float *x,
         int64_t ldx, int m, float *y, int64_t ldy)
{
    int64_t cols = w->cols;
    const float *srow = fp8 ? w->scale + (r0 / 128) * MT_CEIL_DIV(cols, 128) : NULL;
    size_t esz = fp8 ? 1 : 2;
    int64_t ldxp = cols * terms; /* packed x per token, in bf16 elements */
    __m512i th0;
    __m512i th1;
    __m512i tl0;
    __m512i tl1;
    int64_t r = r0;

    pthread_once(&lut_once, lut_init);
    th0 = _mm512_load_si512(lut_hi);
    th1 = _mm512_load_si512(lut_hi + 64);
    tl0 = _mm512_load_si512(lut_lo);
    tl1 = _mm512_load_si512(lut_lo + 64);
    if (!pack_cached(x, ldx, m, cols, fp8, terms)) {
        return;
    }
    for (; r < r1; r += 4) {
        const void *wr = (const uint8_t *)w->data + (size_t)r * (size_t)cols * esz;
        int t = 0;

        if (r + 4 > r1) {
            break;
        }
        for (; t + 2 <= m; t += 2) {
            dot_tile(wr, cols, fp8, srow, ws.xp + t * ldxp, ldxp, cols, terms, 4, 2,
                     y + t * ldy + (r - r0), ldy, th0, th1, tl0, tl1);
        }
        if (t < m) {
            dot_tile(wr, cols, fp8, srow, ws.xp + t * ldxp, ldxp, cols, terms, 4, 1,
                     y + t * ldy + (r - r0), ldy, th0, th1, tl0, tl1);
        }
    }
    for (; r < r1; r++) {
        const void *wr = (const uint8_t *)w->data + (size_t)r * (size_t)cols * esz;

        for (int t = 0; t < m; t++) {
            dot_tile(wr, cols, fp8, srow, ws.xp + t * ldxp, ldxp, cols, terms, 1, 1,
                     y + t * ldy + (r - r0), ldy, th0, th1, tl0, tl1);
        }
    }
}

static void
dot_rows_fp8(const struct mt_cpu_weight *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
             int m, float *y, int64_t ldy)
{
    if (mt_cpu_experts_decode == 2) {
        dot_rows(w, 1, 2, r0, r1, x, ldx, m, y, ldy);
    } else {
        dot_rows(w, 1, 3, r0, r1, x, ldx, m, y, ldy);
    }
}

static void
dot_rows_bf16(const struct mt_cpu_weight *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
              int m, float *y, int64_t ldy)
{
    if (mt_cpu_experts_decode == 2) {
        dot_rows(w, 0, 2, r0, r1, x, ldx, m, y, ldy);
    } else {
        dot_rows(w, 0, 3, r0, r1, x, ldx, m, y, ldy);
    }
}

const struct mt_cpu_kernels mt_cpu_kernels_dot = {
    .name = "avx512-bf16dot",
    .rows_fp8 = dot_rows_fp8,
    .rows_bf16 = dot_rows_bf16,
};
