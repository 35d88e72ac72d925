/* SPDX-License-Identifier: MIT */
/*
 * test_gpu_gemv.c - mt_gpu_linear (FP8 with 128x128 block scales, BF16; 1 to 8 tokens) against
 * mt_cpu_linear, at odd sizes and at every V3.2 shape the decode path uses, and the same call
 * twice giving the same bits (the FP8 kernel splits rows over several warps and adds their sums).
 * MT_TEST_LONG=1 adds the BF16 lm_head (129280 x 7168, 1.85 GB). Then a chain of dependent
 * kernels (norm, GEMVs on both FP8 kernels, add) run with programmatic dependent launch, plain
 * and as a recorded, updated and replayed CUDA graph, against the same chain synchronized after
 * every kernel: equal bits, or a kernel read an input before its predecessor had written it.
 */
#include <config.h>

#include "cpu/ref_ops.h"
#include "tests/gpu_test.h"
#ifdef MT_HAVE_CUDA /* engine_ops.h and graph.h have no stubs in builds without CUDA */
#include "kernels/engine_ops.h"
#include "kernels/graph.h"
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Appended to the names of the checks below: which FP8 kernel shape they ran on. */
static const char *gemv_variant = "";
/* In the TMA section on a device that takes the TMA ring: each FP8 call of 1-4 tokens that goes
 * to a ring (2-4 tokens, or one of 14 MiB and more) must have taken it once, no other call. */
static bool tma_each;

/* x_span > 0: activations of magnitude 2^-x_span .. 2^x_span with random signs instead of
 * uniform in [-1, 1] (the f16 hi + lo split of x must keep small and large values alike). */
static void
check_linear_x(enum mt_dtype dt, int64_t rows, int64_t cols, int n_tok, float x_span)
{
    bool fp8 = dt == MT_DTYPE_F8_E4M3;
    size_t n_w = (size_t)rows * cols;
    size_t n_s = (size_t)MT_CEIL_DIV(rows, 128) * MT_CEIL_DIV(cols, 128);
    void *w = gt_malloc(n_w * (fp8 ? 1 : 2));
    float *s = gt_malloc(n_s * sizeof(float));
    float *x = gt_malloc((size_t)n_tok * cols * sizeof(float));
    float *want = gt_malloc((size_t)n_tok * rows * sizeof(float));
    float *got = gt_malloc((size_t)n_tok * rows * sizeof(float));
    char name[128];

    if (fp8) {
        gt_fill_fp8(w, n_w);
        /* weight_scale_inv: small multipliers, bringing e4m3's +-448 to about +-1 */
        for (size_t i = 0; i < n_s; i++) {
            s[i] = gt_uniform(0.5f, 1.5f) / 448.0f;
        }
    } else {
        gt_fill_bf16(w, n_w, -1.0f, 1.0f);
    }
    gt_fill(x, (size_t)n_tok * cols, -1.0f, 1.0f);
    for (size_t i = 0; x_span > 0.0f && i < (size_t)n_tok * cols; i++) {
        x[i] = (x[i] < 0.0f ? -1.0f : 1.0f) * exp2f(gt_uniform(-x_span, x_span));
    }
    struct mt_cpu_weight cw = {dt, w, s, rows, cols};
    if (mt_cpu_linear(&cw, x, n_tok, want) != MT_OK) {
        gt_bail("cpu linear");
    }
    mt_gpu_arena_reset(gt_arena);
    struct mt_gpu_weight gw = {dt, gt_put(w, n_w * (fp8 ? 1 : 2)),
                               fp8 ? gt_put(s, n_s * sizeof(float)) : NULL, rows, cols, false};
    float *d_x = gt_put(x, (size_t)n_tok * cols * sizeof(float));
    for (size_t i = 0; i < (size_t)n_tok * rows; i++) {
        got[i] = NAN; /* a row the kernel does not write fails the comparison */
    }
    float *d_y = gt_put_guarded(got, (size_t)n_tok * rows * sizeof(float));
    unsigned long long tma0 = mt_gpu_gemv_tma_launches();
    mt_status_t st = mt_gpu_linear(&gw, d_x, n_tok, d_y, NULL);
    unsigned long long tma_ran = mt_gpu_gemv_tma_launches() - tma0;
    bool ring = fp8 && n_tok <= 4 && (n_tok > 1 || n_w >= (14u << 20));
    char span[48] = "";
    if (x_span > 0.0f) {
        snprintf(span, sizeof(span), ", x of magnitude 2^-%g..2^%g", x_span, x_span);
    }
    snprintf(name, sizeof(name), "%s linear %lld x %lld, %d token%s%s%s", fp8 ? "FP8" : "BF16",
             (long long)rows, (long long)cols, n_tok, n_tok > 1 ? "s" : "", span, gemv_variant);
    if (st != MT_OK) {
        tap_ok(false, "%s: launch failed: %s", name, mt_last_error());
    } else if (tma_each && tma_ran != (ring ? 1u : 0u)) {
        tap_ok(false, "%s: the TMA ring ran %llu times, expected %d", name, tma_ran, ring);
    } else {
        gt_get(got, d_y, (size_t)n_tok * rows * sizeof(float));
        int past = gt_guard_hits(d_y, (size_t)n_tok * rows * sizeof(float));
        if (past > 0) { /* a token past n_tok, a row past rows */
            tap_ok(false, "%s: %d floats written past y", name, past);
            goto out;
        }
        /* sums of `cols` products of magnitude <= 1: fp32 order differences grow with sqrt(cols) */
        /* x_span: terms up to 2^x_span, a root mean square near 2^(x_span - 3): the absolute
         * tolerance scales with that (dropping x's f16 lo half misses it by about 8x) */
        mt_test_allclose(name, got, want, (size_t)n_tok * rows,
                         2e-5f * sqrtf((float)cols) * (x_span > 0.0f ? exp2f(x_span - 3) : 1.0f),
                         1e-4f);
    }
out:
    free(got);
    free(want);
    free(x);
    free(s);
    free(w);
}

static void
check_linear(enum mt_dtype dt, int64_t rows, int64_t cols, int n_tok)
{
    check_linear_x(dt, rows, cols, n_tok, 0.0f);
}

/* The same FP8 call twice (fresh random operands) must give identical bits: the warps that
 * share a row add their sums in a fixed order. */
static void
check_repeat(int64_t rows, int64_t cols, int n_tok)
{
    size_t n_w = (size_t)rows * cols;
    size_t n_s = (size_t)MT_CEIL_DIV(rows, 128) * MT_CEIL_DIV(cols, 128);
    size_t n_y = (size_t)n_tok * rows;
    uint8_t *w = gt_malloc(n_w);
    float *s = gt_malloc(n_s * sizeof(float));
    float *x = gt_malloc((size_t)n_tok * cols * sizeof(float));
    float *y0 = gt_malloc(n_y * sizeof(float));
    float *y1 = gt_malloc(n_y * sizeof(float));

    gt_fill_fp8(w, n_w);
    gt_fill(s, n_s, 0.001f, 0.003f);
    gt_fill(x, (size_t)n_tok * cols, -1.0f, 1.0f);
    mt_gpu_arena_reset(gt_arena);
    struct mt_gpu_weight gw = {MT_DTYPE_F8_E4M3, gt_put(w, n_w), gt_put(s, n_s * sizeof(float)),
                               rows, cols, false};
    float *d_x = gt_put(x, (size_t)n_tok * cols * sizeof(float));
    float *d_y = gt_alloc(n_y * sizeof(float));
    bool ok = mt_gpu_linear(&gw, d_x, n_tok, d_y, NULL) == MT_OK;
    if (ok) {
        gt_get(y0, d_y, n_y * sizeof(float));
        ok = mt_gpu_linear(&gw, d_x, n_tok, d_y, NULL) == MT_OK;
    }
    if (ok) {
        gt_get(y1, d_y, n_y * sizeof(float));
        ok = memcmp(y0, y1, n_y * sizeof(float)) == 0;
    }
    tap_ok(ok, "FP8 linear %lld x %lld, %d token%s: two runs give the same bits%s",
           (long long)rows, (long long)cols, n_tok, n_tok > 1 ? "s" : "", gemv_variant);
    free(y1);
    free(y0);
    free(x);
    free(s);
    free(w);
}

/* mt_gpu_linear_swiglu against mt_gpu_swiglu then mt_gpu_linear: the same bits where it runs
 * (its SwiGLU is the elementwise kernel's expression, its GEMV the same kernel); where it does
 * not apply it must say so and write nothing (y stays NaN). gate and up are one buffer, as the
 * engine's stacked gate + up output is, up at up_off. */
static void
check_swiglu(int64_t rows, int64_t cols, bool fused)
{
    size_t n_w = (size_t)rows * cols;
    size_t n_s = (size_t)MT_CEIL_DIV(rows, 128) * MT_CEIL_DIV(cols, 128);
    int64_t up_off = MT_CEIL_DIV(cols, 128) * 128;
    uint8_t *w = gt_malloc(n_w);
    float *s = gt_malloc(n_s * sizeof(float));
    float *gu = gt_malloc((size_t)(up_off + cols) * sizeof(float));
    float *y0 = gt_malloc((size_t)rows * sizeof(float));
    float *y1 = gt_malloc((size_t)rows * sizeof(float));

    gt_fill_fp8(w, n_w);
    gt_fill(s, n_s, 0.5f / 448.0f, 1.5f / 448.0f);
    gt_fill(gu, (size_t)(up_off + cols), -6.0f, 6.0f);
    for (size_t i = 0; i < (size_t)rows; i++) {
        y1[i] = NAN;
    }
    mt_gpu_arena_reset(gt_arena);
    struct mt_gpu_weight gw = {MT_DTYPE_F8_E4M3, gt_put(w, n_w), gt_put(s, n_s * sizeof(float)),
                               rows, cols, false};
    float *d_gu = gt_put(gu, (size_t)(up_off + cols) * sizeof(float));
    float *d_h = gt_alloc((size_t)cols * sizeof(float));
    float *d_y = gt_put(y1, (size_t)rows * sizeof(float));
    bool ok = mt_gpu_swiglu(d_gu, d_gu + up_off, (size_t)cols, d_h, NULL) == MT_OK &&
              mt_gpu_linear(&gw, d_h, 1, d_y, NULL) == MT_OK;
    if (ok) {
        gt_get(y0, d_y, (size_t)rows * sizeof(float));
        d_y = gt_put(y1, (size_t)rows * sizeof(float)); /* NaN again */
    }
    mt_status_t st = ok ? mt_gpu_linear_swiglu(&gw, d_gu, d_gu + up_off, d_y, NULL) : MT_ERR_INVAL;
    if (ok) {
        gt_get(y1, d_y, (size_t)rows * sizeof(float));
    }
    if (fused) {
        tap_ok(st == MT_OK && memcmp(y0, y1, (size_t)rows * sizeof(float)) == 0,
               "FP8 linear %lld x %lld of SwiGLU(gate, up), fused: the bits of swiglu + linear%s",
               (long long)rows, (long long)cols, gemv_variant);
    } else {
        tap_ok(st == MT_ERR_UNSUPPORTED && isnan(y1[0]) && isnan(y1[rows - 1]),
               "FP8 linear %lld x %lld of SwiGLU: not fused here, nothing written",
               (long long)rows, (long long)cols);
    }
    free(y1);
    free(y0);
    free(gu);
    free(s);
    free(w);
}

/* ---- programmatic dependent launch: a chain of kernels, each reading its predecessor ---- */
#ifdef MT_HAVE_CUDA

#define CH_H 7168     /* the model's width */
#define CH_BIG 8192   /* rows of the >= 16 MB pair (tensor-core kernel at any token count) */
#define CH_SMALL 2048 /* rows of the < 16 MB pair (CUDA-core loop at one token) */
#define CH_ITERS 4

struct chain {
    struct mt_gpu_weight w[4]; /* big up, big down, small up, small down */
    float *norm_w;
    float *a; /* [t, H] the residual: input, and the chain's result */
    float *n; /* [t, H] its norm */
    float *b; /* [t, BIG] */
    float *c; /* [t, SMALL] */
    float *e; /* [t, H] */
    int t;
};

static struct mt_gpu_weight
chain_weight(int64_t rows, int64_t cols)
{
    size_t n_w = (size_t)rows * cols;
    size_t n_s = (size_t)MT_CEIL_DIV(rows, 128) * MT_CEIL_DIV(cols, 128);
    uint8_t *w = gt_malloc(n_w);
    float *s = gt_malloc(n_s * sizeof(float));

    gt_fill_fp8(w, n_w);
    gt_fill(s, n_s, 0.5f / 448.0f, 1.5f / 448.0f);
    struct mt_gpu_weight gw = {MT_DTYPE_F8_E4M3, gt_put(w, n_w), gt_put(s, n_s * sizeof(float)),
                               rows, cols, false};
    free(s);
    free(w);
    return gw;
}

/* Every buffer NaN but a = x0: a kernel that reads before its input is written sees NaN or the
 * previous iteration's values, never the right ones. */
static void
chain_reset(struct chain *ch, const float *x0)
{
    size_t big = (size_t)ch->t * CH_BIG;
    float *nan = gt_malloc(big * sizeof(float));

    for (size_t i = 0; i < big; i++) {
        nan[i] = NAN;
    }
    if (mt_gpu_copy_to_device(ch->a, x0, (size_t)ch->t * CH_H * sizeof(float)) != MT_OK ||
        mt_gpu_copy_to_device(ch->n, nan, (size_t)ch->t * CH_H * sizeof(float)) != MT_OK ||
        mt_gpu_copy_to_device(ch->b, nan, big * sizeof(float)) != MT_OK ||
        mt_gpu_copy_to_device(ch->c, nan, (size_t)ch->t * CH_SMALL * sizeof(float)) != MT_OK ||
        mt_gpu_copy_to_device(ch->e, nan, (size_t)ch->t * CH_H * sizeof(float)) != MT_OK) {
        gt_bail("chain reset");
    }
    free(nan);
}

/* CH_ITERS x (a -> norm n -> b = big_up n -> a = big_down b (a is read two kernels earlier) ->
 * c = small_up n -> e = small_down c -> a += e); sync: wait for each kernel before the next. */
static bool
chain_run(struct chain *ch, struct CUstream_st *s, bool sync)
{
    bool ok = true;

    for (int it = 0; ok && it < CH_ITERS; it++) {
        ok = mt_gpu_rmsnorm(ch->a, ch->norm_w, ch->t, CH_H, 1e-6f, ch->n, s) == MT_OK &&
             (!sync || mt_gpu_stream_sync(s) == MT_OK);
        for (int k = 0; ok && k < 4; k++) {
            const float *in[4] = {ch->n, ch->b, ch->n, ch->c};
            float *out[4] = {ch->b, ch->a, ch->c, ch->e};
            ok = mt_gpu_linear(&ch->w[k], in[k], ch->t, out[k], s) == MT_OK &&
                 (!sync || mt_gpu_stream_sync(s) == MT_OK);
        }
        ok = ok && mt_gpu_add(ch->a, ch->e, (size_t)ch->t * CH_H, s) == MT_OK;
    }
    return ok;
}

static bool
chain_same(const char *what, struct chain *ch, const float *want, float *got)
{
    size_t n = (size_t)ch->t * CH_H;
    bool finite = true;

    gt_get(got, ch->a, n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        finite = finite && isfinite(want[i]);
    }
    bool ok = finite && memcmp(got, want, n * sizeof(float)) == 0;
    tap_ok(ok, "chain of %d kernels, %d token%s, %s: the bits of the synchronized chain",
           6 * CH_ITERS, ch->t, ch->t > 1 ? "s" : "", what);
    return ok;
}

static void
check_pdl_chain(int n_tok)
{
    struct chain ch;
    struct CUstream_st *s = NULL;
    size_t n = (size_t)n_tok * CH_H;
    float *x0 = gt_malloc(n * sizeof(float));
    float *want = gt_malloc(n * sizeof(float));
    float *got = gt_malloc(n * sizeof(float));
    float *nw = gt_malloc(CH_H * sizeof(float));
    struct CUgraphExec_st *exec = NULL;
    bool rebuilt = false;

    mt_gpu_arena_reset(gt_arena);
    ch.t = n_tok;
    ch.w[0] = chain_weight(CH_BIG, CH_H);
    ch.w[1] = chain_weight(CH_H, CH_BIG);
    ch.w[2] = chain_weight(CH_SMALL, CH_H);
    ch.w[3] = chain_weight(CH_H, CH_SMALL);
    gt_fill(nw, CH_H, 0.5f, 1.5f);
    gt_fill(x0, n, -1.0f, 1.0f);
    ch.norm_w = gt_put(nw, CH_H * sizeof(float));
    ch.a = gt_alloc(n * sizeof(float));
    ch.n = gt_alloc(n * sizeof(float));
    ch.b = gt_alloc((size_t)n_tok * CH_BIG * sizeof(float));
    ch.c = gt_alloc((size_t)n_tok * CH_SMALL * sizeof(float));
    ch.e = gt_alloc(n * sizeof(float));
    if (mt_gpu_stream_create(&s) != MT_OK) {
        gt_bail("stream");
    }
    /* the reference: plain launches, each kernel finished before the next starts */
    mt_gpu_pdl_set(false);
    chain_reset(&ch, x0);
    if (!chain_run(&ch, s, true) || mt_gpu_stream_sync(s) != MT_OK) {
        gt_bail("synchronized chain");
    }
    gt_get(want, ch.a, n * sizeof(float));
    mt_gpu_pdl_set(true);
    chain_reset(&ch, x0);
    bool ok = chain_run(&ch, s, false) && mt_gpu_stream_sync(s) == MT_OK;
    if (!ok) {
        tap_ok(false, "chain with PDL: %s", mt_last_error());
    } else {
        chain_same(mt_gpu_pdl_active() ? "PDL launches" : "plain launches (no PDL here)", &ch, want,
                   got);
    }
    /* recorded (PDL edges in the graph), replayed, then recorded again and updated in place */
    for (int r = 0; r < 2; r++) {
        chain_reset(&ch, x0);
        ok = mt_gpu_graph_begin(s) == MT_OK;
        bool ran = ok && chain_run(&ch, s, false); /* no synchronization while recording */
        ok = mt_gpu_graph_end(s, ran, &exec, &rebuilt) == MT_OK && ran && exec != NULL &&
             mt_gpu_graph_launch(exec, s) == MT_OK && mt_gpu_stream_sync(s) == MT_OK;
        if (!ok) {
            tap_ok(false, "chain recorded as a graph (%d): %s", r, mt_last_error());
            continue;
        }
        chain_same(r == 0 ? "graph replay" : "graph updated and replayed", &ch, want, got);
        if (r == 1) {
            tap_ok(!rebuilt, "chain, %d token%s: a second recording updates the graph in place",
                   n_tok, n_tok > 1 ? "s" : "");
        }
    }
    mt_gpu_graph_destroy(exec);
    mt_gpu_stream_destroy(s);
    free(nw);
    free(got);
    free(want);
    free(x0);
}
#endif /* MT_HAVE_CUDA */

int
main(void)
{
    static const int64_t fp8_shapes[][2] = {
        {1536, 7168}, {24576, 1536}, {576, 7168}, {32768, 512}, {7168, 16384},
        {18432, 7168}, {7168, 18432}, {2048, 7168}, {7168, 2048}, {8192, 1536}, {128, 7168},
    };
    const char *long_env = getenv("MT_TEST_LONG");

    if (!gt_init(4096, 2)) {
        return tap_done();
    }
    /* the portable paths first (every sm_80+ GPU); the TMA ring, which sm_90+ devices take by
     * default, has its own sections below */
    mt_gpu_gemv_tma_set(0);
    /* odd sizes: partial scale blocks in both directions, a single row, rows not even */
    check_linear(MT_DTYPE_F8_E4M3, 1, 16, 1);
    check_linear(MT_DTYPE_F8_E4M3, 37, 144, 3);
    check_linear(MT_DTYPE_F8_E4M3, 129, 272, 8);
    check_linear(MT_DTYPE_F8_E4M3, 301, 1040, 5);
    /* one token over whole 128-column blocks, odd row counts */
    check_linear(MT_DTYPE_F8_E4M3, 1, 128, 1);
    check_linear(MT_DTYPE_F8_E4M3, 37, 256, 1);
    check_linear(MT_DTYPE_F8_E4M3, 130, 640, 1);
    check_linear(MT_DTYPE_F8_E4M3, 301, 1152, 2);
    /* 8 tokens (the mma's n) and odd counts at odd sizes: a column step cut short (1040 and 1552
     * columns are 65 and 97 16-column units), one unit only, rows past the last 16-row tile */
    check_linear(MT_DTYPE_F8_E4M3, 1, 16, 8);
    check_linear(MT_DTYPE_F8_E4M3, 45, 1040, 7);
    check_linear(MT_DTYPE_F8_E4M3, 300, 1552, 8);
    check_linear(MT_DTYPE_F8_E4M3, 77, 48, 6);
    /* activations across 24 binades; across 34, up to 2^17, past f16's 65,504: 1-4 tokens
     * stage x rescaled, 5-8 (x split in registers) compute the blocks whose results came out
     * inf or NaN again in fp32 (gemv_wave.cuh, mv_redo_f32) */
    check_linear_x(MT_DTYPE_F8_E4M3, 301, 7168, 1, 12.0f);
    check_linear_x(MT_DTYPE_F8_E4M3, 301, 7168, 3, 12.0f);
    check_linear_x(MT_DTYPE_F8_E4M3, 2048, 2048, 8, 12.0f);
    check_linear_x(MT_DTYPE_F8_E4M3, 301, 7168, 1, 17.0f);
    check_linear_x(MT_DTYPE_F8_E4M3, 7168, 2048, 4, 17.0f);
    check_linear_x(MT_DTYPE_F8_E4M3, 18432, 7168, 1, 17.0f);
    check_linear_x(MT_DTYPE_F8_E4M3, 2048, 2048, 8, 17.0f);
    check_linear_x(MT_DTYPE_F8_E4M3, 45, 1040, 5, 17.0f);
    check_linear_x(MT_DTYPE_F8_E4M3, 18432, 7168, 6, 17.0f);
    check_linear(MT_DTYPE_BF16, 1, 8, 1);
    check_linear(MT_DTYPE_BF16, 77, 200, 2);
    check_linear(MT_DTYPE_BF16, 1001, 1032, 7);
    /* the V3.2 shapes, one token, then batches of 2..8 on some */
    for (size_t i = 0; i < sizeof(fp8_shapes) / sizeof(fp8_shapes[0]); i++) {
        check_linear(MT_DTYPE_F8_E4M3, fp8_shapes[i][0], fp8_shapes[i][1], 1);
    }
    for (int t = 2; t <= 8; t++) {
        check_linear(MT_DTYPE_F8_E4M3, 2048, 7168, t);
    }
    check_linear(MT_DTYPE_F8_E4M3, 7168, 2048, 8);
    check_linear(MT_DTYPE_F8_E4M3, 18432, 7168, 8);
    check_linear(MT_DTYPE_F8_E4M3, 7168, 18432, 5);
    check_linear(MT_DTYPE_F8_E4M3, 24576, 1536, 8);
    check_linear(MT_DTYPE_F8_E4M3, 32768, 512, 4);
    check_linear(MT_DTYPE_F8_E4M3, 32768, 512, 3);
    check_linear(MT_DTYPE_F8_E4M3, 24576, 1536, 2);
    check_repeat(576, 7168, 1);
    check_repeat(7168, 18432, 1);
    check_repeat(18432, 7168, 1);
    check_repeat(32768, 512, 3);
    /* the same on one 16-warp block an SM where the default takes two 8-warp blocks (gemv.cu;
     * on GPUs without the shared memory for two, both runs take the 16-warp kernel) */
    mt_gpu_gemv_two_blocks_set(false);
    gemv_variant = ", one 16-warp block an SM";
    for (size_t i = 0; i < sizeof(fp8_shapes) / sizeof(fp8_shapes[0]); i++) {
        check_linear(MT_DTYPE_F8_E4M3, fp8_shapes[i][0], fp8_shapes[i][1], 1);
    }
    check_linear(MT_DTYPE_F8_E4M3, 37, 144, 3);
    check_linear(MT_DTYPE_F8_E4M3, 301, 1152, 2);
    check_linear(MT_DTYPE_F8_E4M3, 32768, 512, 4);
    check_linear(MT_DTYPE_F8_E4M3, 24576, 1536, 2);
    check_repeat(18432, 7168, 1);
    mt_gpu_gemv_two_blocks_set(true);
    /* the TMA ring at every size it takes (sm_90+; elsewhere these run the cp.async ring):
     * partial boxes at odd row counts, columns past the end, 2-4 tokens */
    unsigned long long tma_before = mt_gpu_gemv_tma_launches();
    struct mt_gpu_info gi;
    bool hopper = mt_gpu_device_info(0, &gi) == MT_OK && gi.sm_major == 9;
    tap_ok(!hopper || !mt_gpu_pdl_active() || mt_gpu_gemv_tma_usable(),
           "a cc 9.x device running sm_90 code can take the TMA ring (usable: %d)",
           mt_gpu_gemv_tma_usable());
    mt_gpu_gemv_tma_set(2);
    tma_each = mt_gpu_gemv_tma_usable(); /* every call below fits an H100/H200's shared memory */
    gemv_variant = ", TMA ring at every size";
    check_linear(MT_DTYPE_F8_E4M3, 1, 16, 2);
    check_linear(MT_DTYPE_F8_E4M3, 37, 144, 3);
    check_linear(MT_DTYPE_F8_E4M3, 129, 272, 4);
    check_linear(MT_DTYPE_F8_E4M3, 301, 1040, 2);
    check_linear(MT_DTYPE_F8_E4M3, 300, 1552, 3);
    check_linear(MT_DTYPE_F8_E4M3, 77, 48, 4);
    check_linear(MT_DTYPE_F8_E4M3, 7201, 2064, 3);
    check_linear_x(MT_DTYPE_F8_E4M3, 301, 7168, 3, 12.0f);
    check_linear_x(MT_DTYPE_F8_E4M3, 301, 7168, 2, 17.0f);
    check_linear_x(MT_DTYPE_F8_E4M3, 18432, 7168, 1, 17.0f);
    for (size_t i = 0; i < sizeof(fp8_shapes) / sizeof(fp8_shapes[0]); i++) {
        check_linear(MT_DTYPE_F8_E4M3, fp8_shapes[i][0], fp8_shapes[i][1], 1);
    }
    check_linear(MT_DTYPE_F8_E4M3, 2240, 7168, 1);
    check_linear(MT_DTYPE_F8_E4M3, 2048, 7168, 3);
    /* x staged beside the ring filling an H100/H200's shared memory to the byte: 1 token of
     * 25,216 columns, 4 of 6,272 (the ring's alignment padding included) */
    check_linear(MT_DTYPE_F8_E4M3, 600, 25216, 1);
    check_linear(MT_DTYPE_F8_E4M3, 301, 6272, 4);
    tma_each = false;
    check_swiglu(7168, 2048, true);
    check_swiglu(7200, 2064, true);
    check_repeat(32768, 512, 3);
    unsigned long long tma_runs = mt_gpu_gemv_tma_launches() - tma_before;
    tap_ok(tma_runs > 0 || !mt_gpu_gemv_tma_usable(), "the TMA ring ran %llu times", tma_runs);
    /* the cp.async ring at the largest shapes, in two 8-warp blocks and in one 16-warp block an
     * SM */
    mt_gpu_gemv_tma_set(0);
    tma_before = mt_gpu_gemv_tma_launches();
    for (int blocks = 2; blocks >= 1; blocks--) {
        mt_gpu_gemv_two_blocks_set(blocks == 2);
        gemv_variant = blocks == 2 ? ", cp.async ring" : ", cp.async ring, one 16-warp block";
        check_linear(MT_DTYPE_F8_E4M3, 7168, 16384, 1);
        check_linear(MT_DTYPE_F8_E4M3, 18432, 7168, 1);
        check_linear(MT_DTYPE_F8_E4M3, 7168, 18432, 1);
        check_swiglu(7168, 18432, true);
        check_repeat(18432, 7168, 1);
    }
    tap_ok(mt_gpu_gemv_tma_launches() == tma_before, "with the TMA ring off, it never ran");
    mt_gpu_gemv_two_blocks_set(true);
    mt_gpu_gemv_tma_set(1); /* the default from here on (the TMA ring where it fits on sm_90+) */
    gemv_variant = "";
    /* the engine's stacked q_a + wk + kv_a (17 rows a block on 132 SMs: a 1-row tile each);
     * odd widths and heights on the register paths */
    check_linear(MT_DTYPE_F8_E4M3, 2240, 7168, 1);
    check_linear(MT_DTYPE_F8_E4M3, 7201, 2064, 3);
    check_linear(MT_DTYPE_F8_E4M3, 4099, 640, 7);
    /* SwiGLU inside the down projection: V3.2's dense and shared-expert down, an odd width;
     * a matrix for the CUDA-core loop is not fused */
    check_swiglu(7168, 18432, true);
    check_swiglu(7168, 2048, true);
    check_swiglu(7200, 2064, true);
    check_swiglu(301, 1040, false);
    check_repeat(7168, 2048, 6);
    check_linear(MT_DTYPE_BF16, 4096, 7168, 1);
    check_linear(MT_DTYPE_BF16, 4096, 7168, 8);
    if (long_env != NULL && strcmp(long_env, "0") != 0) {
        check_linear(MT_DTYPE_BF16, 129280, 7168, 1);
    } else {
        tap_diag("MT_TEST_LONG unset: BF16 129280 x 7168 (lm_head) not checked");
    }
#ifdef MT_HAVE_CUDA
    /* the chain on the default (the TMA ring on sm_90+: its copies issued before the PDL wait,
     * its tensor maps through graph capture and in-place update), then on the cp.async ring */
    check_pdl_chain(1);
    check_pdl_chain(3);
    check_pdl_chain(8);
    tap_diag("the chain again with the cp.async ring (MT_GEMV_TMA=0)");
    mt_gpu_gemv_tma_set(0);
    check_pdl_chain(1);
    check_pdl_chain(3);
    mt_gpu_gemv_tma_set(1);
#endif
    mt_gpu_arena_destroy(gt_arena);
    return tap_done();
}
