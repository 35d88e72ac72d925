/* SPDX-License-Identifier: MIT */
/*
 * experts_amx.c - prefill (many tokens per expert) on AMX-BF16 tiles: Y[rows, tokens] =
 * W[rows, K] . X[tokens, K]^T with TDPBF16PS, fp32 accumulation, compiled for AMX only here;
 * cpu/experts.c calls it only at level amx, where the kernel granted the tile state.
 *
 * By default (mt_cpu_experts_amx_tiles = 1) the rows go to the tiles kernel of
 * cpu/experts_amx_tiles.c (tokens as the A operand, C stored straight into y), which measured
 * 6.1-6.3 TFLOP/s against 4.9-5.0 for the kernels below on the GPU test machine, same rounds
 * (bench/results/cpu-experts.md); this file keeps the tile configuration, the per-thread packed
 * input of lone expert runs, and the kernels with rows as the A operand (knob 0), described
 * next.
 *
 * The one idea: a tile product needs both operands in bf16, so each is converted once and reused
 * many times. X is packed into the tile layout B wants (pairs of k per token, 16 tokens per
 * 64-byte row) once per input: by the whole team before a layer's phase (cpu/experts.c), so
 * all threads on one expert share one copy that stays in the L3, or, for a lone expert run,
 * per thread (a cache keyed by pointer, shape and mt_cpu_experts_gen, which every run bumps). A
 * weight panel of 64 (or 128) rows is dequantized to bf16 with its block scale folded in (w x s
 * rounded once), then held in L2 while every token block of 32 streams past; tiles 0-3 hold a 32 x
 * 32 block of C, 4-5 two row tiles of W, 6-7 two token tiles of X.
 *
 * Numerics: X and w x s are rounded to bf16 (relative error <= 2^-9 each); products and sums are
 * fp32. tests/test_cpu_experts.c bounds the error at 2e-2 x max |want| (measured up to 6.9e-3
 * on random FP8 bytes).
 *
 * Memory: per team thread a 64- or 128-row panel, and where it ran lone experts a packed copy of
 * the largest input it saw (m rounded up to 32, x K x 2 bytes: 29 MB for 2048 tokens at
 * K = 7168); kept for the thread's life.
 */
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,f16c,fma,amx-tile,amx-bf16")
#include <config.h>

#include "cpu/amx_config.h"
#include "cpu/experts_impl.h"

#include <immintrin.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define PANEL_MAX 128 /* weight rows dequantized at once: mt_cpu_experts_amx_panel */
#define TOKB 32       /* tokens per block of C (two token tiles) */

struct amx_ws {
    uint16_t *xp; /* [m_pad / 16][K / 32][16 pairs][16 tokens][2] bf16 */
    size_t xp_cap;
    const float *key_x;
    int64_t key_ldx;
    int64_t key_cols;
    int key_m;
    uint64_t key_gen;
    int key_tiles; /* mt_cpu_experts_amx_tiles of the packed layout */
    uint16_t *a;   /* [panel][K] bf16, or [K / kc][rows][kc] */
    size_t a_cap;
    float *c; /* [rows / 32][SUPER / 32][4 tiles][16][16] fp32: C of a super block */
    size_t c_cap;
};

static __thread struct amx_ws ws;

void
mt_cpu_amx_ws_free(void)
{
    free(ws.xp);
    free(ws.a);
    free(ws.c);
    memset(&ws, 0, sizeof(ws));
}

/* Pack tokens [n0, n1) of x[m, cols] into xp (tokens from m on zero); n0, n1 multiples of 16. */
static void
pack_x(const float *x, int64_t ldx, int m, int64_t cols, int n0, int n1, uint16_t *xp)
{
    int64_t nks = cols / 32;
    __m512i idx =
        _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                           _mm512_set1_epi32(16));

    for (int n = n0; n < n1; n++) {
        uint32_t *base = (uint32_t *)xp + (size_t)(n / 16) * (size_t)nks * 256 + (n % 16);

        for (int64_t s = 0; s < nks; s++) {
            __m512i v = _mm512_setzero_si512();

            if (n < m) {
                const float *p = x + (int64_t)n * ldx + s * 32;

                v = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(p + 16), _mm512_loadu_ps(p));
            }
            _mm512_i32scatter_epi32(base + s * 256, idx, v, 4);
        }
    }
}

/* Rows [p0, p0 + panel) of w (rows >= r1 zero) into ws.a as bf16, block scale folded in. */
static void
load_panel(const struct mt_cpu_weight *w, int64_t p0, int64_t r1, int panel)
{
    int64_t cols = w->cols;
    int64_t nkb = (cols + 127) / 128;

    for (int i = 0; i < panel; i++) {
        int64_t r = p0 + i;
        uint16_t *dst = ws.a + (size_t)i * (size_t)cols;

        if (r >= r1) {
            memset(dst, 0, (size_t)cols * 2);
            continue;
        }
        if (w->dtype == MT_DTYPE_BF16) {
            memcpy(dst, (const uint16_t *)w->data + r * cols, (size_t)cols * 2);
            continue;
        }
        const uint8_t *src = (const uint8_t *)w->data + r * cols;
        const float *srow = w->scale + (r / 128) * nkb;

        for (int64_t c = 0; c < cols; c += 32) {
            /* e4m3 -> fp16 of value / 256 by bit moves (see experts_avx2.c), then x 256 s */
            __m512i u = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(src + c)));
            __m512 s = _mm512_set1_ps(srow[c / 128] * 256.0f);

            u = _mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(u, 8), 1),
                                 _mm512_set1_epi16((short)0xbfff));
            __m512 lo = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(u)), s);
            __m512 hi = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(u, 1)), s);

            _mm512_storeu_si512(dst + c, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
    }
}

/* C tiles 0-3 = 32 rows of ws.a at row a0 x tokens [t0, t0 + 32) of xp, over all of K. */
static void
block(const uint16_t *xp, int64_t cols, int a0, int t0)
{
    int64_t nks = cols / 32;
    const uint16_t *a = ws.a + (size_t)a0 * (size_t)cols;
    const uint16_t *b0 = xp + (size_t)(t0 / 16) * (size_t)nks * 512;
    const uint16_t *b1 = b0 + (size_t)nks * 512;
    size_t lda = (size_t)cols * 2;

    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t s = 0; s < nks; s++) {
        _tile_loadd(4, a + s * 32, lda);
        _tile_loadd(5, a + 16 * cols + s * 32, lda);
        _tile_loadd(6, b0 + s * 512, 64);
        _tile_loadd(7, b1 + s * 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
}

/* Write C tile (row half i, token half j) to y for rows < nr and tokens < nt of the block. */
static void
store(float *c, int i, int j, int64_t row0, int t0, int nr, int nt, float *y, int64_t ldy)
{
    for (int n = 0; n < 16 && j * 16 + n < nt; n++) {
        for (int r = 0; r < 16 && i * 16 + r < nr; r++) {
            y[(int64_t)(t0 + j * 16 + n) * ldy + row0 + i * 16 + r] = c[r * 16 + n];
        }
    }
}

/* Bytes of m tokens of cols packed (m rounded up to TOKB). */
static size_t
amx_pack_bytes(int m, int64_t cols)
{
    return (size_t)((m + TOKB - 1) / TOKB * TOKB) * (size_t)cols * 2;
}

/* Token blocks [b0, b1) (of MT_CPU_PACK_TOKENS) of x[m, cols] into xp of amx_pack_bytes. */
static void
amx_pack(const float *x, int64_t ldx, int m, int64_t cols, int b0, int b1, void *xp)
{
    if (mt_cpu_experts_amx_tiles != 0) {
        mt_cpu_amx_tiles_pack(x, ldx, m, cols, b0 * MT_CPU_PACK_TOKENS, b1 * MT_CPU_PACK_TOKENS,
                              xp);
    } else {
        pack_x(x, ldx, m, cols, b0 * MT_CPU_PACK_TOKENS, b1 * MT_CPU_PACK_TOKENS, xp);
    }
}

/* mt_cpu_experts_amx_kc = 0: panels of 64 or 128 rows, each C block over all of K at once. */
static void
rows_panels(const struct mt_cpu_weight *w, int64_t r0, int64_t r1, const uint16_t *xp, int m,
            float *y, int64_t ldy)
{
    int64_t cols = w->cols;
    int m_pad = (m + TOKB - 1) / TOKB * TOKB;
    float c[4][256] __attribute__((aligned(64)));
    int panel = mt_cpu_experts_amx_panel == 128 ? 128 : 64;

    for (int64_t p0 = r0; p0 < r1; p0 += panel) {
        load_panel(w, p0, r1, panel);
        for (int t0 = 0; t0 < m_pad; t0 += TOKB) {
            for (int a0 = 0; a0 < panel && p0 + a0 < r1; a0 += 32) {
                int nr = (int)MT_MIN(32, r1 - (p0 + a0));
                int nt = MT_MIN(TOKB, m - t0);

                block(xp, cols, a0, t0);
                _tile_stored(0, c[0], 64);
                _tile_stored(1, c[1], 64);
                _tile_stored(2, c[2], 64);
                _tile_stored(3, c[3], 64);
                store(c[0], 0, 0, p0 + a0 - r0, t0, nr, nt, y, ldy);
                store(c[1], 0, 1, p0 + a0 - r0, t0, nr, nt, y, ldy);
                store(c[2], 1, 0, p0 + a0 - r0, t0, nr, nt, y, ldy);
                store(c[3], 1, 1, p0 + a0 - r0, t0, nr, nt, y, ldy);
            }
        }
    }
}

/*
 * Rows [p0, p0 + rows_pad) of w (rows >= r1 zero) into ws.a as bf16 with the block scale folded
 * in, cut in K chunks of kc columns stored one after the other ([chunk][row][kc]), so that the
 * rows of one chunk are one compact stretch that a tile load walks with stride kc.
 */
static void
load_chunked(const struct mt_cpu_weight *w, int64_t p0, int64_t r1, int rows_pad, int64_t kc)
{
    int64_t cols = w->cols;

    for (int64_t k0 = 0; k0 < cols; k0 += kc) {
        int64_t kn = MT_MIN(kc, cols - k0);

        for (int i = 0; i < rows_pad; i++) {
            uint16_t *dst = ws.a + (size_t)k0 * (size_t)rows_pad + (size_t)i * (size_t)kn;
            int64_t r = p0 + i;

            if (r >= r1) {
                memset(dst, 0, (size_t)kn * 2);
            } else if (w->dtype == MT_DTYPE_BF16) {
                memcpy(dst, (const uint16_t *)w->data + r * cols + k0, (size_t)kn * 2);
            } else {
                const uint8_t *src = (const uint8_t *)w->data + r * cols;
                const float *srow = w->scale + (r / 128) * ((cols + 127) / 128);

                for (int64_t c = k0; c < k0 + kn; c += 32) {
                    __m512i u =
                        _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(src + c)));
                    __m512 sc = _mm512_set1_ps(srow[c / 128] * 256.0f);

                    u = _mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(u, 8), 1),
                                         _mm512_set1_epi16((short)0xbfff));
                    __m512 lo = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(u)), sc);
                    __m512 hi = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(u, 1)), sc);

                    _mm512_storeu_si512(dst + (c - k0), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
                }
            }
        }
    }
}

#define SUPER 256 /* tokens per super block: its C and its B chunks stay in L2 */

/*
 * mt_cpu_experts_amx_kc = kc > 0: the rows of the call (<= 128) dequantized once; then per super
 * block of 256 tokens and per K chunk of kc columns, every 32 x 32 block of C is loaded from a
 * buffer (256 tokens x 128 rows fp32 = 128 KB), advanced by the chunk's kc / 32 steps and
 * stored back. A tile product needs one tile load (1 KB): where the 2 x 2 register block runs
 * over all of K at once, its A and B tiles come from the whole panel and token block (beyond
 * L1, B from L3); here a chunk's A (128 rows x kc) and B (32 tokens x kc) tiles are reused
 * from L2 and L1, and each B byte is read from L3 once per call, not once per 64-row panel.
 */
static void
rows_blocked(const struct mt_cpu_weight *w, int64_t r0, int64_t r1, const uint16_t *xp, int m,
             float *y, int64_t ldy, int64_t kc)
{
    int64_t cols = w->cols;
    int64_t nks = cols / 32;
    int rows_pad = (int)((r1 - r0 + 31) / 32 * 32);
    int m_pad = (m + TOKB - 1) / TOKB * TOKB;

    MT_ASSERT(rows_pad <= PANEL_MAX);
    if (!mt_cpu_ws_grow((void **)&ws.c, &ws.c_cap, (size_t)PANEL_MAX * SUPER * sizeof(float))) {
        return;
    }
    load_chunked(w, r0, r1, rows_pad, kc);
    for (int ts = 0; ts < m_pad; ts += SUPER) {
        int te = MT_MIN(m_pad, ts + SUPER);

        for (int64_t k0 = 0; k0 < cols; k0 += kc) {
            int64_t kn = MT_MIN(kc, cols - k0);
            const uint16_t *a = ws.a + (size_t)k0 * (size_t)rows_pad;

            for (int t0 = ts; t0 < te; t0 += TOKB) {
                const uint16_t *b0 =
                    xp + ((size_t)(t0 / 16) * (size_t)nks + (size_t)(k0 / 32)) * 512;
                const uint16_t *b1 = b0 + (size_t)nks * 512;

                for (int a0 = 0; a0 < rows_pad; a0 += 32) {
                    float *cb =
                        ws.c +
                        ((size_t)(a0 / 32) * (SUPER / TOKB) + (size_t)(t0 - ts) / TOKB) * 4 * 256;
                    const uint16_t *a4 = a + (size_t)a0 * (size_t)kn;
                    const uint16_t *a5 = a4 + 16 * (size_t)kn;

                    if (k0 == 0) {
                        _tile_zero(0);
                        _tile_zero(1);
                        _tile_zero(2);
                        _tile_zero(3);
                    } else {
                        _tile_loadd(0, cb, 64);
                        _tile_loadd(1, cb + 256, 64);
                        _tile_loadd(2, cb + 512, 64);
                        _tile_loadd(3, cb + 768, 64);
                    }
                    for (int64_t s = 0; s < kn / 32; s++) {
                        _tile_loadd(4, a4 + s * 32, kn * 2);
                        _tile_loadd(5, a5 + s * 32, kn * 2);
                        _tile_loadd(6, b0 + s * 512, 64);
                        _tile_loadd(7, b1 + s * 512, 64);
                        _tile_dpbf16ps(0, 4, 6);
                        _tile_dpbf16ps(1, 4, 7);
                        _tile_dpbf16ps(2, 5, 6);
                        _tile_dpbf16ps(3, 5, 7);
                    }
                    _tile_stored(0, cb, 64);
                    _tile_stored(1, cb + 256, 64);
                    _tile_stored(2, cb + 512, 64);
                    _tile_stored(3, cb + 768, 64);
                }
            }
        }
        for (int t0 = ts; t0 < te; t0 += TOKB) {
            for (int a0 = 0; a0 < rows_pad; a0 += 32) {
                float *cb = ws.c + ((size_t)(a0 / 32) * (SUPER / TOKB) + (size_t)(t0 - ts) / TOKB) *
                                       4 * 256;
                int nr = (int)MT_MIN(32, (r1 - r0) - a0);
                int nt = MT_MIN(TOKB, m - t0);

                store(cb, 0, 0, a0, t0, nr, nt, y, ldy);
                store(cb + 256, 0, 1, a0, t0, nr, nt, y, ldy);
                store(cb + 512, 1, 0, a0, t0, nr, nt, y, ldy);
                store(cb + 768, 1, 1, a0, t0, nr, nt, y, ldy);
            }
        }
    }
}

static void
amx_rows_packed(const struct mt_cpu_weight *w, int64_t r0, int64_t r1, const void *xpv, int m,
                float *y, int64_t ldy)
{
    int64_t kc = mt_cpu_experts_amx_kc > 0 ? (mt_cpu_experts_amx_kc + 31) / 32 * 32 : 0;

    if (!mt_cpu_ws_grow((void **)&ws.a, &ws.a_cap, (size_t)PANEL_MAX * (size_t)w->cols * 2)) {
        return;
    }
    mt_amx_load_tiles_16x64();
    if (mt_cpu_experts_amx_tiles != 0) {
        mt_cpu_amx_tiles_rows(w, r0, r1, xpv, m, y, ldy, kc > 0 ? kc : w->cols);
    } else if (kc > 0 && r1 - r0 <= PANEL_MAX) {
        rows_blocked(w, r0, r1, xpv, m, y, ldy, kc);
    } else {
        rows_panels(w, r0, r1, xpv, m, y, ldy);
    }
    _tile_release();
}

/* The same, x packed by this thread (kept while x, its shape and the layer run stay). */
static void
amx_rows(const struct mt_cpu_weight *w, int64_t r0, int64_t r1, const float *x, int64_t ldx, int m,
         float *y, int64_t ldy)
{
    int64_t cols = w->cols;
    uint64_t gen = atomic_load(&mt_cpu_experts_gen);

    if (ws.key_x != x || ws.key_ldx != ldx || ws.key_m != m || ws.key_cols != cols ||
        ws.key_gen != gen || ws.key_tiles != mt_cpu_experts_amx_tiles) {
        ws.key_x = NULL;
        if (!mt_cpu_ws_grow((void **)&ws.xp, &ws.xp_cap, amx_pack_bytes(m, cols))) {
            return;
        }
        amx_pack(x, ldx, m, cols, 0, MT_CPU_PACK_BLOCKS(m), ws.xp);
        ws.key_tiles = mt_cpu_experts_amx_tiles;
        ws.key_x = x;
        ws.key_ldx = ldx;
        ws.key_m = m;
        ws.key_cols = cols;
        ws.key_gen = gen;
    }
    amx_rows_packed(w, r0, r1, ws.xp, m, y, ldy);
}

const struct mt_cpu_kernels mt_cpu_kernels_amx = {
    .name = "amx",
    .rows_fp8 = NULL, /* decode: the AVX-512 kernels (cpu/experts.c) */
    .rows_bf16 = NULL,
    .rows_many = amx_rows,
    .pack_bytes = amx_pack_bytes,
    .pack = amx_pack,
    .rows_packed = amx_rows_packed,
    .swiglu = mt_cpu_swiglu_avx512,
};
