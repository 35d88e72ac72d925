/* SPDX-License-Identifier: MIT */
/*
 * experts_tile.h - the register tile of the SIMD expert kernels, written once and included by
 * each ISA's file (experts_avx2.c, experts_avx512.c) after it defines the vector macros:
 *   VEC, ZERO(), SET1(f), LOADX(p) (VL floats), FMA(a, b, c) = a * b + c, HSUM(v) -> float,
 *   CVT_FP8(p, lo, hi): 2*VL e4m3 bytes at p -> two VEC holding value / 256,
 *   CVT_BF16(p, lo, hi): 2*VL bf16 at p -> two VEC, and KNAME(name) for the symbol names;
 *   optionally MT_TILE_LOCALS, declarations the conversions need in each tile (tables).
 *
 * The one idea: weights are converted to fp32 in registers and never written anywhere; one
 * 128-column FP8 block is accumulated unscaled, then added to the row total times its block scale
 * (all R rows of a tile lie in one 128-row block, so they share it). A tile is R rows x T tokens:
 * each converted weight vector feeds T FMAs, each token vector R.
 */

#ifndef MT_TILE_LOCALS
#define MT_TILE_LOCALS
#endif

/*
 * y[t * ldy + i] = W[i, :] . x[t, :] for i < R, t < T; w points at row 0 of the tile. next: the
 * next tile's rows (R x cols, contiguous after these) or NULL; with mt_cpu_experts_prefetch_mode
 * 1 or 2 its lines are prefetched evenly over this tile's steps (one tile of lookahead on one
 * sequential stream), else each row stream is prefetched mt_cpu_experts_prefetch bytes ahead.
 */
static inline __attribute__((always_inline)) void
KNAME(tile)(const void *w, int64_t ldw, int fp8, const float *srow, const float *x, int64_t ldx,
            int64_t cols, int R, int T, float *y, int64_t ldy, const void *next)
{
    MT_TILE_LOCALS
    int mode = mt_cpu_experts_prefetch_mode;
    int64_t pf = mode == 0 ? mt_cpu_experts_prefetch : 0;
    int64_t step_bytes = (int64_t)R * 2 * VL * (fp8 ? 1 : 2); /* of the tile per column step */
    VEC tot[4][4];

    if (next == NULL) {
        mode = 0;
    }

    for (int r = 0; r < R; r++) {
        for (int t = 0; t < T; t++) {
            tot[r][t] = ZERO();
        }
    }
    for (int64_t c0 = 0; c0 < cols; c0 += 128) {
        int64_t c1 = c0 + 128 < cols ? c0 + 128 : cols;
        VEC acc[4][4];

        for (int r = 0; r < R; r++) {
            for (int t = 0; t < T; t++) {
                acc[r][t] = ZERO();
            }
        }
        for (int64_t c = c0; c < c1; c += 2 * VL) {
            VEC xl[4];
            VEC xh[4];

            if (mode != 0) {
                int64_t o0 = c / (2 * VL) * step_bytes;

                for (int64_t o = (o0 + 63) & ~(int64_t)63; o < o0 + step_bytes; o += 64) {
                    if (mode == 1) {
                        _mm_prefetch((const char *)next + o, _MM_HINT_T0);
                    } else {
                        _mm_prefetch((const char *)next + o, _MM_HINT_T1);
                    }
                }
            }

            for (int t = 0; t < T; t++) {
                xl[t] = LOADX(x + t * ldx + c);
                xh[t] = LOADX(x + t * ldx + c + VL);
            }
            for (int r = 0; r < R; r++) {
                VEC lo;
                VEC hi;

                /* a core alone cannot keep enough lines in flight from 4 row streams: ask for
                 * them mt_cpu_experts_prefetch bytes ahead (one prefetch per 64 bytes) */
                if (pf > 0 && ((c * (fp8 ? 1 : 2)) & 63) == 0) {
                    _mm_prefetch((const char *)w + (r * ldw + c) * (fp8 ? 1 : 2) + pf, _MM_HINT_T0);
                }

                if (fp8) {
                    CVT_FP8((const uint8_t *)w + r * ldw + c, lo, hi);
                } else {
                    CVT_BF16((const uint16_t *)w + r * ldw + c, lo, hi);
                }
                for (int t = 0; t < T; t++) {
                    acc[r][t] = FMA(lo, xl[t], acc[r][t]);
                    acc[r][t] = FMA(hi, xh[t], acc[r][t]);
                }
            }
        }
        VEC s = SET1(fp8 ? srow[c0 / 128] * 256.0f : 1.0f);

        for (int r = 0; r < R; r++) {
            for (int t = 0; t < T; t++) {
                tot[r][t] = FMA(acc[r][t], s, tot[r][t]);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        for (int t = 0; t < T; t++) {
            y[t * ldy + r] = HSUM(tot[r][t]);
        }
    }
}

/* Rows [r0, r1) of w (FP8: inside one 128-row block) for m tokens; see experts_impl.h. */
static inline __attribute__((always_inline)) void
KNAME(rows_any)(const struct mt_cpu_weight *w, int fp8, int64_t r0, int64_t r1, const float *x,
                int64_t ldx, int m, float *y, int64_t ldy)
{
    int64_t cols = w->cols;
    const float *srow = fp8 ? w->scale + (r0 / 128) * MT_CEIL_DIV(cols, 128) : NULL;
    size_t esz = fp8 ? 1 : 2;
    int64_t r = r0;

    for (; r + 4 <= r1; r += 4) {
        const void *wr = (const uint8_t *)w->data + (size_t)r * (size_t)cols * esz;
        /* the next 4 rows, prefetched during the first pass over these (not past r1: those
         * rows are another call's, maybe another core's) */
        const void *next = r + 8 <= r1 ? (const uint8_t *)wr + 4 * (size_t)cols * esz : NULL;
        int t = 0;

        for (; t + TT <= m; t += TT) {
            KNAME(tile)
            (wr, cols, fp8, srow, x + t * ldx, ldx, cols, 4, TT, y + t * ldy + (r - r0), ldy,
             t == 0 ? next : NULL);
        }
        for (; t < m; t++) {
            KNAME(tile)
            (wr, cols, fp8, srow, x + t * ldx, ldx, cols, 4, 1, y + t * ldy + (r - r0), ldy,
             t == 0 ? next : NULL);
        }
    }
    for (; r < r1; r++) {
        const void *wr = (const uint8_t *)w->data + (size_t)r * (size_t)cols * esz;

        for (int t = 0; t < m; t++) {
            KNAME(tile)
            (wr, cols, fp8, srow, x + t * ldx, ldx, cols, 1, 1, y + t * ldy + (r - r0), ldy, NULL);
        }
    }
}

static void
KNAME(rows_fp8)(const struct mt_cpu_weight *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                int m, float *y, int64_t ldy)
{
    KNAME(rows_any)(w, 1, r0, r1, x, ldx, m, y, ldy);
}

static void
KNAME(rows_bf16)(const struct mt_cpu_weight *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                 int m, float *y, int64_t ldy)
{
    KNAME(rows_any)(w, 0, r0, r1, x, ldx, m, y, ldy);
}
