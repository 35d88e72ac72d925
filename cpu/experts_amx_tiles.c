/* SPDX-License-Identifier: MIT */
/*
 * experts_amx_tiles.c - the AMX prefill kernel with tokens as the A operand and both operands
 * stored in the order the tile loads read them (mt_cpu_experts_amx_tiles = 1, the default).
 *
 * The one idea: Y[tokens, rows] = X[tokens, K] . W[rows, K]^T computed as C tiles of 16 tokens x
 * 16 rows. Three things follow from that orientation:
 *  - a C tile row is 16 consecutive outputs of one token, which is the layout of y (token-major),
 *    so the last K chunk stores C with one TILESTORED (no fp32 transpose of every output, which
 *    the rows x tokens kernel of experts_amx.c does one float at a time);
 *  - X is the A operand: a tile row is 32 plain consecutive k of one token, so packing X is a
 *    conversion to bf16 and one 64-byte store per 32 k (no 32-bit scatters);
 *  - W is the B operand and needs the VNNI layout (tile row p = the pair of k (2p, 2p + 1) of 16
 *    rows): the weight conversion, done once per call, converts 16 rows x 32 k to bf16 and
 *    transposes them as a 16 x 16 matrix of 32-bit pairs in registers.
 * Every tile of both operands is one contiguous KiB (16 rows of 64 bytes), laid out in the order
 * the kernel reads them, so each tile load reads whole consecutive lines and the weight tiles of
 * a K chunk are one sequential stream that software prefetch can run ahead of
 * (mt_cpu_experts_amx_pf bytes; off by default: 4 KiB ahead measured the same, 6.3 against 6.1
 * TFLOP/s, within the host's noise).
 *
 * Measured on the GPU test machine (8 experts x 2048 tokens, FP8, 16 threads): 6.1-6.3 TFLOP/s,
 * 38-40% of the AMX rate of the same rounds, against 4.9-5.0 (29-31%) for the rows-as-A kernels
 * of experts_amx.c; on 2 and 4 threads the same 38-39%, so the bound is each core's loop (one
 * 1 KiB tile load per TDPBF16PS, half of them from L2), not what the cores share.
 *
 * Loop order (as experts_amx.c's blocked kernel): per super block of 256 tokens and K chunk of
 * mt_cpu_experts_amx_kc columns (512: 32 KiB of A tiles), per 32 tokens (two A tiles, kept in
 * L1 across the row blocks),
 * per 32 rows (two B tiles, streamed from L2): a 2 x 2 block of C tiles over the chunk, loaded
 * from and stored to a compact buffer between chunks, stored into y after the last one.
 *
 * Numerics: as experts_amx.c (X and w x s rounded to bf16 once, fp32 products and sums).
 *
 * Memory: per team thread the weight tiles of one call (128 rows x K x 2 bytes: 1.8 MB at
 * K = 7168) and a 128 KB C buffer, kept for the thread's life.
 */
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,f16c,fma,amx-tile,amx-bf16")
#include <config.h>

#include "cpu/experts_impl.h"
#include "cpu/transpose16.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define ROWS_MAX 128  /* rows per call: one FP8 scale block */
#define SUPER_MAX 256 /* tokens per super block at most: its C buffer is 128 KB */
#define TILE 512      /* bf16 elements of one tile (16 x 64 bytes) */

struct tiles_ws {
    uint16_t *w; /* weight tiles of the call: [chunk][row block of 32][step][2 tiles] */
    size_t w_cap;
    float *c; /* [ROWS_MAX / 32][super / 32][4 tiles][16 tokens][16 rows] fp32 */
    float part[1024] __attribute__((aligned(64))); /* one chunk's C block (cadd) */
};

static __thread struct tiles_ws tws;

void
mt_cpu_amx_tiles_ws_free(void)
{
    free(tws.w);
    free(tws.c);
    tws.w = NULL;
    tws.c = NULL;
    tws.w_cap = 0;
}

/*
 * Tokens [n0, n1) of x[m, cols] (tokens from m on zero) into xp as A tiles: tile (token tile i,
 * step s) at (i x cols / 32 + s) x TILE, its row n = token 16 i + n, k 32 s .. 32 s + 31.
 */
void
mt_cpu_amx_tiles_pack(const float *x, int64_t ldx, int m, int64_t cols, int n0, int n1,
                      uint16_t *xp)
{
    int64_t nks = cols / 32;

    for (int n = n0; n < n1; n++) {
        uint16_t *dst = xp + (size_t)(n / 16) * (size_t)nks * TILE + (size_t)(n % 16) * 32;

        for (int64_t s = 0; s < nks; s++) {
            __m512i v = _mm512_setzero_si512();

            if (n < m) {
                const float *p = x + (int64_t)n * ldx + s * 32;

                v = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(p + 16), _mm512_loadu_ps(p));
            }
            _mm512_store_si512(dst + s * TILE, v);
        }
    }
}

/*
 * 32 k from column c of row r of w as 32 bf16 (block scale folded in for FP8), or zero. pf > 0:
 * also prefetch (into L2) the line pf columns further on the same row, once per 64 bytes.
 */
static inline __m512i
row_bf16(const struct mt_cpu_weight *w, int64_t r, int64_t r1, int64_t c, int64_t pf)
{
    if (r >= r1) {
        return _mm512_setzero_si512();
    }
    if (w->dtype == MT_DTYPE_BF16) {
        const uint16_t *src = (const uint16_t *)w->data + r * w->cols + c;

        if (pf > 0 && c + pf < w->cols) {
            _mm_prefetch((const char *)(src + pf), _MM_HINT_T1);
        }
        return _mm512_loadu_si512(src);
    }
    /* e4m3 -> fp16 of value / 256 by bit moves (see experts_avx2.c), then x 256 s */
    const uint8_t *src = (const uint8_t *)w->data + r * w->cols + c;

    if (pf > 0 && (c & 63) == 0 && c + pf < w->cols) {
        _mm_prefetch((const char *)src + pf, _MM_HINT_T1);
    }
    float s = w->scale[(r / 128) * ((w->cols + 127) / 128) + c / 128] * 256.0f;
    __m512i u = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)src));
    __m512 sv = _mm512_set1_ps(s);

    u = _mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(u, 8), 1),
                         _mm512_set1_epi16((short)0xbfff));
    __m512 lo = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(u)), sv);
    __m512 hi = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(u, 1)), sv);

    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/*
 * Rows [p0, p0 + rows_pad) of w (rows >= r1 zero) into tws.w as B tiles: per K chunk of kc
 * (kn) columns, per row block b of 32, per step s of the chunk, the tiles of rows 32 b .. + 15
 * and 32 b + 16 .. + 31: tile row p = the bf16 pairs (k 2p, 2p + 1) of its 16 rows, which is the
 * 32-bit column p of the rows' converted 64 bytes.
 *
 * The chunk order reads the call's rows as up to 128 interleaved streams of kc columns each,
 * more than the hardware prefetchers follow, so every line would be a demand miss to DRAM with
 * few in flight; with mt_cpu_experts_amx_cvt_pf each row's next chunk is prefetched into L2
 * while this one converts (a whole chunk of lookahead: 128 rows x kc bytes of FP8).
 */
static void
load_tiles(const struct mt_cpu_weight *w, int64_t p0, int64_t r1, int rows_pad, int64_t kc)
{
    int64_t cols = w->cols;
    int64_t pf = mt_cpu_experts_amx_cvt_pf != 0 ? kc : 0;
    __m512i r[16];

    for (int64_t k0 = 0; k0 < cols; k0 += kc) {
        int64_t ns = MT_MIN(kc, cols - k0) / 32;
        uint16_t *wc = tws.w + (size_t)k0 * (size_t)rows_pad;

        for (int b = 0; b < rows_pad / 32; b++) {
            for (int64_t s = 0; s < ns; s++) {
                uint16_t *dst = wc + ((size_t)b * (size_t)ns + (size_t)s) * 2 * TILE;

                for (int h = 0; h < 2; h++) {
                    for (int i = 0; i < 16; i++) {
                        r[i] = row_bf16(w, p0 + 32 * b + 16 * h + i, r1, k0 + 32 * s, pf);
                    }
                    mt_transpose16(r);
                    for (int p = 0; p < 16; p++) {
                        _mm512_store_si512(dst + h * TILE + p * 32, r[p]);
                    }
                }
            }
        }
    }
}

static inline void
prefetch_kib(const void *p)
{
    for (int i = 0; i < 1024; i += 64) {
        _mm_prefetch((const char *)p + i, _MM_HINT_T0);
    }
}

/* C tiles 0-3 of the block at tokens t0, rows a0 (of the call) into y, from cb where partial. */
static void
store_block(float *cb, int t0, int a0, int m, int nrows, float *y, int64_t ldy)
{
    if (t0 + 32 <= m && a0 + 32 <= nrows) {
        _tile_stored(0, y + (int64_t)t0 * ldy + a0, ldy * 4);
        _tile_stored(1, y + (int64_t)t0 * ldy + a0 + 16, ldy * 4);
        _tile_stored(2, y + (int64_t)(t0 + 16) * ldy + a0, ldy * 4);
        _tile_stored(3, y + (int64_t)(t0 + 16) * ldy + a0 + 16, ldy * 4);
        return;
    }
    _tile_stored(0, cb, 64);
    _tile_stored(1, cb + 256, 64);
    _tile_stored(2, cb + 512, 64);
    _tile_stored(3, cb + 768, 64);
    for (int q = 0; q < 4; q++) {
        int tq = t0 + (q >> 1) * 16;
        int rq = a0 + (q & 1) * 16;
        int nr = MT_MIN(16, nrows - rq);

        if (nr <= 0) {
            continue;
        }
        for (int n = 0; n < 16 && tq + n < m; n++) {
            _mm512_mask_storeu_ps(y + (int64_t)(tq + n) * ldy + rq, (__mmask16)((1u << nr) - 1),
                                  _mm512_load_ps(cb + q * 256 + n * 16));
        }
    }
}

/*
 * The C block's sum so far (cb) plus this chunk's part (the 4 tiles stored at part, same
 * layout): back into cb, or (last) into y, by AVX-512 adds, which run beside the tile unit
 * instead of in its queue.
 */
static void
add_block(float *cb, const float *part, bool last, int t0, int a0, int m, int nrows, float *y,
          int64_t ldy)
{
    for (int q = 0; q < 4; q++) {
        int tq = t0 + (q >> 1) * 16;
        int rq = a0 + (q & 1) * 16;
        int nr = MT_MIN(16, nrows - rq);

        for (int n = 0; n < 16; n++) {
            float *c = cb + q * 256 + n * 16;
            __m512 v = _mm512_add_ps(_mm512_load_ps(c), _mm512_load_ps(part + q * 256 + n * 16));

            if (!last) {
                _mm512_store_ps(c, v);
            } else if (nr > 0 && tq + n < m) {
                _mm512_mask_storeu_ps(y + (int64_t)(tq + n) * ldy + rq, (__mmask16)((1u << nr) - 1),
                                      v);
            }
        }
    }
}

/*
 * One 2 x 2 block of C over ns steps of a K chunk: A tiles at x0 and x1 (step s at s x TILE),
 * B tiles at wb (step s at 2 s x TILE); C from zero (first) or cb, to cb or (last) into y.
 * Prefetched per step where not NULL: 2 KiB of pw (the streamed weight tiles, pw advancing 2 KiB
 * a step), and the A tiles of the next block at px0, px1 (s x TILE).
 *
 * part != NULL (mt_cpu_experts_amx_cadd): every chunk starts from zero tiles and its part is
 * added to cb with vector adds (add_block): 4 tile stores per block and chunk instead of 4
 * loads and 4 stores. Tile loads cost about what a TDPBF16PS costs here ((j) in
 * bench/results/cpu-experts.md: the 2 x 2 block with its loads from L1 runs at half the rate
 * without them), so C's tile traffic is a share of the loop's time, not only of L2's. Measured
 * not faster (33.1% against 33.7% of the AMX rate at K chunk 256), so off by default.
 */
static inline __attribute__((always_inline)) void
block(const uint16_t *x0, const uint16_t *x1, const uint16_t *wb, int64_t ns, float *cb, bool first,
      bool last, const char *pw, const uint16_t *px0, const uint16_t *px1, int t0, int a0, int m,
      int nrows, float *y, int64_t ldy, float *part)
{
    if (first || part != NULL) {
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
    for (int64_t s = 0; s < ns; s++) {
        const uint16_t *ws = wb + s * 2 * TILE;

        if (pw != NULL) {
            prefetch_kib(pw + s * 2048);
            prefetch_kib(pw + s * 2048 + 1024);
        }
        if (px0 != NULL) {
            prefetch_kib(px0 + s * TILE);
            prefetch_kib(px1 + s * TILE);
        }
        _tile_loadd(4, x0 + s * TILE, 64);
        _tile_loadd(5, x1 + s * TILE, 64);
        _tile_loadd(6, ws, 64);
        _tile_loadd(7, ws + TILE, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    if (part != NULL && !first) {
        _tile_stored(0, part, 64);
        _tile_stored(1, part + 256, 64);
        _tile_stored(2, part + 512, 64);
        _tile_stored(3, part + 768, 64);
        add_block(cb, part, last, t0, a0, m, nrows, y, ldy);
    } else if (last) {
        store_block(cb, t0, a0, m, nrows, y, ldy);
    } else {
        _tile_stored(0, cb, 64);
        _tile_stored(1, cb + 256, 64);
        _tile_stored(2, cb + 512, 64);
        _tile_stored(3, cb + 768, 64);
    }
}

/*
 * Rows [r0, r1) (<= 128) of w for m tokens of xp (mt_cpu_amx_tiles_pack's layout) into
 * y[t * ldy + (r - r0)], K chunks of kc columns (a multiple of 32). The tile configuration (8
 * tiles of 16 x 64 bytes) is loaded by the caller.
 *
 * mt_cpu_experts_amx_order 0 (default): per chunk, 32 tokens outer, row blocks inner (the A
 * tiles of 32 tokens x the chunk stay in L1 while the chunk's weight tiles stream past from L2,
 * prefetched pf bytes ahead; the next tokens' A tiles are prefetched during the last row block,
 * as their first use comes from L3); 1: row blocks outer, tokens inner (the B tiles of 32 rows
 * stay in L1, the A tiles stream and the next tokens' ones are prefetched).
 *
 * Super blocks of mt_cpu_experts_amx_super tokens (32, 64, 128; else 256): the C blocks of a
 * super block wait between K chunks in tws.c, 4 KiB per 32 x 32 block. At 256 tokens they are
 * 128 KiB and come from L2 (4 tile loads and 4 stores per 32 products at a chunk of 256); at 32
 * they are 16 KiB and stay in L1 beside the 16 KiB of A tiles of the chunk, and all K chunks of
 * a 32-token block run back to back, so only the weight tiles (1.8 MB for 128 rows, the size of
 * L2) stream from L2.
 */
void
mt_cpu_amx_tiles_rows(const struct mt_cpu_weight *w, int64_t r0, int64_t r1, const uint16_t *xp,
                      int m, float *y, int64_t ldy, int64_t kc)
{
    int64_t cols = w->cols;
    int64_t nks = cols / 32;
    int nrows = (int)(r1 - r0);
    int rows_pad = (nrows + 31) / 32 * 32;
    int m_pad = (m + 31) / 32 * 32;
    int64_t pf = mt_cpu_experts_amx_pf;
    bool rows_outer = mt_cpu_experts_amx_order != 0;
    int super = mt_cpu_experts_amx_super;
    float *part = mt_cpu_experts_amx_cadd != 0 ? tws.part : NULL;
    size_t wbytes = (size_t)rows_pad * (size_t)cols * 2;

    MT_ASSERT(nrows <= ROWS_MAX);
    if (m <= mt_cpu_experts_amx_small && mt_cpu_amx_small_fits(w)) {
        mt_cpu_amx_small_rows(w, r0, r1, xp, m, y, ldy);
        return;
    }
    if (super != 32 && super != 64 && super != 128) {
        super = SUPER_MAX;
    }
    if (!mt_cpu_ws_grow((void **)&tws.w, &tws.w_cap, wbytes)) {
        return;
    }
    if (tws.c == NULL) {
        tws.c = mt_cpu_ws_alloc((size_t)ROWS_MAX * SUPER_MAX * sizeof(float));
        if (tws.c == NULL) {
            return;
        }
    }
    load_tiles(w, r0, r1, rows_pad, kc);
    for (int ts = 0; ts < m_pad; ts += super) {
        int te = MT_MIN(m_pad, ts + super);

        for (int64_t k0 = 0; k0 < cols; k0 += kc) {
            int64_t ns = MT_MIN(kc, cols - k0) / 32;
            bool last = k0 + ns * 32 >= cols;
            const uint16_t *wc = tws.w + (size_t)k0 * (size_t)rows_pad;
            int nt = (te - ts) / 32;
            int nb = rows_pad / 32;

            for (int i = 0; i < nt * nb; i++) {
                int ti = rows_outer ? i % nt : i / nb;
                int bi = rows_outer ? i / nt : i % nb;
                int t0 = ts + 32 * ti;
                int a0 = 32 * bi;
                const uint16_t *x0 =
                    xp + ((size_t)(t0 / 16) * (size_t)nks + (size_t)(k0 / 32)) * TILE;
                const uint16_t *x1 = x0 + (size_t)nks * TILE;
                const uint16_t *wb = wc + (size_t)bi * (size_t)ns * 2 * TILE;
                float *cb = tws.c + ((size_t)bi * (size_t)(super / 32) + (size_t)ti) * 1024;
                const char *pw = NULL;
                const uint16_t *px0 = NULL;

                if (pf > 0 && !rows_outer) {
                    pw = (const char *)wb + pf; /* the weight stream runs on across blocks */
                    if (bi == nb - 1 && ti + 1 < nt) {
                        px0 = x1 + (size_t)nks * TILE;
                    } else if (bi == nb - 1 && !last) {
                        /* the super block's first A tiles of the next chunk (with super
                         * blocks of 32 tokens: this block's own) */
                        px0 =
                            xp + ((size_t)(ts / 16) * (size_t)nks + (size_t)(k0 / 32 + ns)) * TILE;
                    }
                } else if (pf > 0) {
                    if (ti + 1 < nt) {
                        px0 = x1 + (size_t)nks * TILE;
                    } else if (bi + 1 < nb) {
                        pw = (const char *)(wb + (size_t)ns * 2 * TILE);
                    }
                }
                block(x0, x1, wb, ns, cb, k0 == 0, last, pw, px0,
                      px0 != NULL ? px0 + (size_t)nks * TILE : NULL, t0, a0, m, nrows, y, ldy,
                      part);
            }
        }
    }
}
