/* SPDX-License-Identifier: MIT */
/*
 * experts_amx_small.c - AMX prefill of an FP8 expert for the few tokens it gets in a prompt
 * chunk (m <= mt_cpu_experts_amx_small, 64 by default): rows as the A operand, widened by a
 * table, the block scale moved onto the tokens.
 *
 * Why: at 16-32 tokens an expert the tiles kernel (experts_amx_tiles.c) reads FP8 weights at
 * ~25 GB/s on 16 cores (a third of the read ceiling), and ablations put ~3/4 of its time in
 * the weight conversion (e4m3 -> fp16 -> fp32, times the block scale, -> bf16, then a 16 x 16
 * transpose into the VNNI layout of the B operand): about 0.8 cycles a weight, which a few
 * tokens cannot amortize (bench/results/cpu-experts.md, session 27).
 *
 * The one idea: every e4m3 value is exact in bf16, so without the scale a weight's bf16 is a
 * table lookup (VPERMI2B on the 7 magnitude bits for each of its two bytes, the sign OR-ed in),
 * and with weight rows as the A operand a tile row is 32 k of one row in plain order: no
 * transpose. The scale of a 128 x 128 block is one number for all rows of a call (one row
 * block) and 128 k, so it multiplies the tokens' x instead: per call, x is turned into B tiles
 * (pairs of k x 16 tokens) scaled by the call's scales. Per 64 weights of a row: one load, two
 * lookups, one VPTERNLOG, two unpacks, two stores.
 *
 * Layout: VPUNPCKLBW / HBW interleave within 128-bit lanes, so a row's 64 bytes of k 64q ..
 * 64q + 63 come out as two A-tile rows holding k (0-7, 16-23, 32-39, 48-55) and (8-15, 24-31,
 * 40-47, 56-63) of the 64; the B tiles of each pair of steps hold x's pairs of k in that order.
 * C (rows x tokens) is transposed on the way to y (tokens x rows), once per call and block.
 * Up to 32 tokens the 4 C tiles are 32 rows x 32 tokens over all of K; 33-64 tokens take 16
 * rows x all their token tiles (rows_by_16), so each row is widened once for every token.
 *
 * Measured on the GPU test machine (8 experts x m tokens, bench_cpu_experts (k)): 35.9 / 40.1 /
 * 41.3 GB/s of FP8 weights at 16 / 24 / 32 tokens against 25.5 / 26.2 / 23.9 for the tiles
 * kernel in the same rounds (session 27); 36.2 / 36.4 / 26.9 at 40 / 48 / 64 tokens against
 * 28.0 / 26.0 / 24.8 in blocks of 32 x 32 and 25.3 / 23.1 / 22.6 for the tiles kernel (session
 * 28); slower than the tiles kernel at 128. Since the prefetch runs on into the next block
 * (widen_row, session 39): 52.6 / 56.9 / 40.1 GB/s at 16 / 32 / 48 tokens, 1.1-1.2x.
 *
 * Numerics: e4m3 exact, x x s rounded to bf16 once (x itself arrives rounded to bf16 in the
 * packed input: two roundings, as the tiles kernel's x and w x s), products and sums in fp32.
 * Not the tiles kernel's bits; tests/test_cpu_experts.c holds both to the AMX tolerance of the
 * scalar path.
 *
 * Memory: per team thread the scaled B tiles of one call (m rounded up to 32, x K x 2 bytes:
 * 448 KB for 32 tokens at K = 7,168) and 8 KB of A tiles; kept for the thread's life.
 */
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512bf16,amx-tile,amx-bf16")
#include <config.h>

#include "cpu/experts_impl.h"
#include "cpu/transpose16.h"

#include <immintrin.h>
#include <stdatomic.h>
#include <stdlib.h>

#define TILE 512    /* bf16 elements of one tile (16 x 64 bytes) */
#define ROW_PF 1024 /* bytes ahead on each weight row, prefetched into L2 */

struct small_ws {
    uint16_t *b; /* [token tile][step][TILE]: x x s as B tiles, steps in the permuted k order */
    size_t b_cap;
    uint16_t a[2][4 * TILE] __attribute__((aligned(64))); /* [set][step A, B][row tile 0, 1] */
    float c[4][256] __attribute__((aligned(64)));
};

static __thread struct small_ws sws;
static _Atomic uint64_t calls; /* mt_cpu_experts_amx_small_calls */

uint64_t
mt_cpu_experts_amx_small_calls(void)
{
    return atomic_load_explicit(&calls, memory_order_relaxed);
}

void
mt_cpu_amx_small_ws_free(void)
{
    free(sws.b);
    sws.b = NULL;
    sws.b_cap = 0;
}

bool
mt_cpu_amx_small_fits(const struct mt_cpu_weight *w)
{
    return w->dtype == MT_DTYPE_F8_E4M3 && w->cols % 64 == 0 && mt_cpu_experts_decode_usable(1);
}

/* 16 tokens' bf16 pairs (k, k + 1) times s, rounded to bf16 again (RNE), the same layout. */
static inline __m512i
scale_pairs(__m512i v, __m512 s, __m512i pick)
{
    __m512 even = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    __m512 odd = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xffff0000u)));
    /* low half: the 16 even ones, high half: the 16 odd ones; pick interleaves them back */
    __m512i both = (__m512i)_mm512_cvtne2ps_pbh(_mm512_mul_ps(odd, s), _mm512_mul_ps(even, s));

    return _mm512_permutexvar_epi16(pick, both);
}

/*
 * x (mt_cpu_amx_tiles_pack's A tiles: tile (i, s) = tokens 16 i .. + 15 x k 32 s .. + 31) into
 * sws.b as B tiles scaled by srow (the call's block scales): for each pair of steps (64 k) the
 * step-A tile's row p holds the pair of k of A-row elements 2p, 2p + 1 (k 0-7, 16-23, 32-39,
 * 48-55 of the 64), the step-B tile the other half.
 */
static void
scale_x(const uint16_t *xp, int ntt, int64_t nks, const float *srow)
{
    /* pair p of the two steps' transposed tiles (0-15: step 2q, 16-31: step 2q + 1) that goes
       to row p of the step-A and step-B tiles */
    static const int from[2][16] = {{0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27},
                                    {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31}};
    __m512i pick = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                    23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    __m512i r[32];

    for (int i = 0; i < ntt; i++) {
        for (int64_t q = 0; q < nks / 2; q++) {
            const uint16_t *src = xp + ((size_t)i * (size_t)nks + (size_t)(2 * q)) * TILE;
            uint16_t *dst = sws.b + ((size_t)i * (size_t)nks + (size_t)(2 * q)) * TILE;
            __m512 s = _mm512_set1_ps(srow[q / 2]);

            for (int h = 0; h < 2; h++) {
                for (int n = 0; n < 16; n++) {
                    r[16 * h + n] = _mm512_load_si512(src + h * TILE + n * 32);
                }
                mt_transpose16(r + 16 * h); /* r[16 h + p]: pair p of the step, 16 tokens */
            }
            for (int h = 0; h < 2; h++) {
                for (int p = 0; p < 16; p++) {
                    _mm512_store_si512(dst + h * TILE + p * 32,
                                       scale_pairs(r[from[h][p]], s, pick));
                }
            }
        }
    }
}

/* Tiles 0-3 (C of rows a0 .. + 31 x tokens t0 .. + 31) into y[t * ldy + r], transposed. */
static void
store_c(int t0, int a0, int m, int nrows, float *y, int64_t ldy)
{
    __m512i r[16];

    _tile_stored(0, sws.c[0], 64);
    _tile_stored(1, sws.c[1], 64);
    _tile_stored(2, sws.c[2], 64);
    _tile_stored(3, sws.c[3], 64);
    for (int q = 0; q < 4; q++) {
        int rq = a0 + (q >> 1) * 16; /* tile q = row tile q >> 1 x token tile q & 1 */
        int tq = t0 + (q & 1) * 16;
        int nr = MT_MIN(16, nrows - rq);

        if (nr <= 0) {
            continue;
        }
        for (int i = 0; i < 16; i++) {
            r[i] = _mm512_load_si512(sws.c[q] + i * 16);
        }
        mt_transpose16(r); /* r[n]: token tq + n, rows rq .. + 15 */
        for (int n = 0; n < 16 && tq + n < m; n++) {
            _mm512_mask_storeu_ps(y + (int64_t)(tq + n) * ldy + rq, (__mmask16)((1u << nr) - 1),
                                  _mm512_castsi512_ps(r[n]));
        }
    }
}

/*
 * Tiles 0 .. ntok - 1 (C of rows a0 .. + 15 x token tile j) into y[t * ldy + r], transposed. The
 * tile numbers of _tile_stored are immediates, hence the unrolled stores.
 */
static void
store_c16(int ntok, int a0, int m, int nrows, float *y, int64_t ldy)
{
    int nr = MT_MIN(16, nrows - a0);
    __m512i r[16];

    _tile_stored(0, sws.c[0], 64);
    _tile_stored(1, sws.c[1], 64);
    if (ntok > 2) {
        _tile_stored(2, sws.c[2], 64);
    }
    if (ntok > 3) {
        _tile_stored(3, sws.c[3], 64);
    }
    for (int j = 0; j < ntok; j++) {
        for (int i = 0; i < 16; i++) {
            r[i] = _mm512_load_si512(sws.c[j] + i * 16);
        }
        mt_transpose16(r); /* r[n]: token 16 j + n, rows a0 .. + 15 */
        for (int n = 0; n < 16 && 16 * j + n < m; n++) {
            _mm512_mask_storeu_ps(y + (int64_t)(16 * j + n) * ldy + a0,
                                  (__mmask16)((1u << nr) - 1), _mm512_castsi512_ps(r[n]));
        }
    }
}

/*
 * 64 k of row r (zero past r1) widened to bf16 by the table: the two A-tile rows of the step pair
 * (k 0-7, 16-23, ... and 8-15, 24-31, ...; the file comment) at dst and dst + 2 TILE.
 *
 * The prefetch follows the order in which the steps consume the weights: ROW_PF bytes ahead on
 * the same row, and past the row's end the same row of the next block (`block` rows on), where
 * the steps go next. Without that wrap (mt_cpu_experts_amx_small_wrap 0) the first ROW_PF bytes
 * of every row came in as demand misses when its block began: 1/7 of the gate and up rows, half
 * of the down projection's 2 KB ones; with it the kernel read 15-20% faster at 16-32 tokens and
 * ~10% at 48 (bench/results/cpu-experts.md, session 39).
 */
static inline void
widen_row(const struct mt_cpu_weight *w, int64_t r, int64_t r1, int64_t q, int block,
          uint16_t *dst, __m512i th0, __m512i th1, __m512i tl0, __m512i tl1)
{
    __m512i v = _mm512_setzero_si512();

    if (r < r1) {
        const uint8_t *src = (const uint8_t *)w->data + r * w->cols + 64 * q;
        int64_t ahead = 64 * q + ROW_PF - w->cols; /* < 0: still on this row */

        if (ahead < 0) {
            _mm_prefetch((const char *)src + ROW_PF, _MM_HINT_T1);
        } else if (mt_cpu_experts_amx_small_wrap && r + block < r1 && ahead < w->cols) {
            _mm_prefetch((const char *)w->data + (r + block) * w->cols + ahead, _MM_HINT_T1);
        }
        v = _mm512_loadu_si512(src);
    }
    __m512i hi = _mm512_permutex2var_epi8(th0, v, th1);
    __m512i lo = _mm512_permutex2var_epi8(tl0, v, tl1);

    hi = _mm512_ternarylogic_epi32(hi, v, _mm512_set1_epi8((char)0x80), 0xf8); /* | v's sign */
    _mm512_store_si512(dst, _mm512_unpacklo_epi8(lo, hi));
    _mm512_store_si512(dst + 2 * TILE, _mm512_unpackhi_epi8(lo, hi));
}

/*
 * 33-64 tokens: 16 rows x all the tokens' tiles (3 or 4) at once, so each row is widened once
 * for every token. One A tile and one B tile a product (1.25 tile loads a product at 4 token
 * tiles against 1 for the 2 x 2 block), but the rows' conversion, most of the time at these
 * token counts, is not repeated for a second block of 32 tokens.
 */
static void
rows_by_16(const struct mt_cpu_weight *w, int64_t r0, int64_t r1, int m, float *y, int64_t ldy,
           __m512i th0, __m512i th1, __m512i tl0, __m512i tl1)
{
    int64_t nks = w->cols / 32;
    int nrows = (int)(r1 - r0);
    int ntok = (m + 15) / 16;

    for (int a0 = 0; a0 < nrows; a0 += 16) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int64_t q = 0; q < nks / 2; q++) {
            uint16_t *a = sws.a[q & 1]; /* step A's tile at 0, step B's at 2 TILE */

            for (int i = 0; i < 16; i++) {
                widen_row(w, r0 + a0 + i, r1, q, 16, a + i * 32, th0, th1, tl0, tl1);
            }
            for (int h = 0; h < 2; h++) {
                const uint16_t *b = sws.b + (size_t)(2 * q + h) * TILE; /* token tile 0 */
                size_t bt = (size_t)nks * TILE;                         /* to the next */

                _tile_loadd(4, a + 2 * h * TILE, 64);
                _tile_loadd(5, b, 64);
                _tile_dpbf16ps(0, 4, 5);
                _tile_loadd(6, b + bt, 64);
                _tile_dpbf16ps(1, 4, 6);
                if (ntok > 2) {
                    _tile_loadd(7, b + 2 * bt, 64);
                    _tile_dpbf16ps(2, 4, 7);
                }
                if (ntok > 3) {
                    _tile_loadd(5, b + 3 * bt, 64);
                    _tile_dpbf16ps(3, 4, 5);
                }
            }
        }
        store_c16(ntok, a0, m, nrows, y, ldy);
    }
}

void
mt_cpu_amx_small_rows(const struct mt_cpu_weight *w, int64_t r0, int64_t r1, const uint16_t *xp,
                      int m, float *y, int64_t ldy)
{
    const uint8_t *lut_hi, *lut_lo;
    int64_t cols = w->cols;
    int64_t nks = cols / 32;
    int nrows = (int)(r1 - r0);
    int ntt = (m + 31) / 32 * 2;
    size_t bbytes = (size_t)ntt * (size_t)nks * TILE * 2;
    const float *srow = w->scale + (r0 / 128) * ((cols + 127) / 128);

    if (!mt_cpu_ws_grow((void **)&sws.b, &sws.b_cap, bbytes)) {
        return;
    }
    mt_cpu_e4m3_bf16_lut(&lut_hi, &lut_lo);
    __m512i th0 = _mm512_load_si512(lut_hi), th1 = _mm512_load_si512(lut_hi + 64);
    __m512i tl0 = _mm512_load_si512(lut_lo), tl1 = _mm512_load_si512(lut_lo + 64);

    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    scale_x(xp, ntt, nks, srow);
    if (m > 32 && m <= 64 && mt_cpu_experts_amx_small_wide) {
        rows_by_16(w, r0, r1, m, y, ldy, th0, th1, tl0, tl1);
        return;
    }
    for (int t0 = 0; t0 < m; t0 += 32) {
        const uint16_t *b0 = sws.b + (size_t)(t0 / 16) * (size_t)nks * TILE;
        const uint16_t *b1 = b0 + (size_t)nks * TILE;

        for (int a0 = 0; a0 < nrows; a0 += 32) {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int64_t q = 0; q < nks / 2; q++) {
                uint16_t *a = sws.a[q & 1]; /* two sets: a step's stores never wait for loads */

                for (int i = 0; i < 32; i++) { /* step A: rows of tile i / 16 at 0, B at 2 TILE */
                    widen_row(w, r0 + a0 + i, r1, q, 32, a + (i / 16) * TILE + (i % 16) * 32,
                              th0, th1, tl0, tl1);
                }
                for (int h = 0; h < 2; h++) {
                    _tile_loadd(4, a + 2 * h * TILE, 64);
                    _tile_loadd(5, a + 2 * h * TILE + TILE, 64);
                    _tile_loadd(6, b0 + (size_t)(2 * q + h) * TILE, 64);
                    _tile_loadd(7, b1 + (size_t)(2 * q + h) * TILE, 64);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(1, 4, 7);
                    _tile_dpbf16ps(2, 5, 6);
                    _tile_dpbf16ps(3, 5, 7);
                }
            }
            store_c(t0, a0, m, nrows, y, ldy);
        }
    }
}
