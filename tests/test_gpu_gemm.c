/* SPDX-License-Identifier: MIT */
/*
 * test_gpu_gemm.c - the prefill GEMM (kernels/gemm.cu) against the CPU reference.
 *
 * y = x W^T for FP8 (128x128 block scales), BF16 and F32 weights at odd sizes (rows not a
 * multiple of 128, widths that are and are not multiples of 8), 9 to 130 tokens, in the three
 * arithmetic modes; a weight taller than the dequantization slab (several slabs); MLA's
 * absorption through kv_b by the batched GEMMs and by the n-token kernels of engine_ops.cu.
 * Bounds, per output, against sum_k |w_k x_k| (the scale of the rounding any order of summation
 * makes): fp32 mode 1e-5; BF16X3 mode 1e-4 (x and w each hi + lo: ~2^-16 relative a product);
 * BF16 mode 8e-3 (x and w each rounded to bf16: 2^-8 relative per product at worst, plus fp32
 * accumulation); the BF16X3 bound is also checked to be missed by the BF16 mode on the same
 * inputs, so a BF16X3 that lost its lo terms fails. A transposed, shifted or mis-scaled product
 * misses these by orders of magnitude. Then, as diagnostics only (tests never assert timings), the
 * BF16 tensor-core peak on a 4096 x 8192 x 8192 GEMM, the fp32 and BF16X3 modes', and an FP8
 * weight of V3.2's dense down projection (7168 x 18432) at 512 tokens including its
 * dequantization in the BF16 and BF16X3 modes.
 * The FP8 mode (gemm_fp8.cu): the activations' quantization bit for bit against the host's (the
 * same rule: amax / 448, x / s rounded to nearest even e4m3); its GEMM against x quantized that
 * way (only the GEMM's sums differ: 1e-3 of sum|wx|, where a wrong scale layout is off by O(1))
 * at V3.2's shapes, rows in half a scale block, 1 to 512 tokens, and it must miss the BF16X3
 * bound against the unquantized x (so a silent fall back to BF16X3 fails); weights it does not
 * take, and GPUs without the block-scaled GEMM, fall back to BF16X3 and are held to its bound
 * (on an sm_90 GPU no product its path takes may fall back).
 * Without a CUDA device: 1..0 # SKIP.
 */
#include <config.h>

#include "cpu/convert.h"
#include "cpu/ref_ops.h"
#include "kernels/engine_ops.h"
#include "kernels/gemm.h"
#include "kernels/gemm_fp8.h"
#include "runtime/base/clock.h"
#include "tests/gpu_test.h"

#include <math.h>

#ifdef MT_HAVE_CUDA /* the GEMM and engine_ops entry points exist only in CUDA builds */

#define TOL_F32 1e-5
#define TOL_X3 1e-4
#define TOL_BF16 8e-3
#define TOL_FP8 1e-3 /* the FP8 GEMM against x quantized as it quantizes it */

/* FP8 weights made from now on get power-of-two block scales, marked scale_pow2. */
static bool pow2_scales;

/* A random weight in dtype dt, on the host (cw) and the device (gw). */
struct tw {
    struct mt_cpu_weight cw;
    struct mt_gpu_weight gw;
    void *data;
    float *scale;
};

static void
tw_make(struct tw *t, enum mt_dtype dt, int64_t rows, int64_t cols)
{
    size_t n = (size_t)(rows * cols);
    size_t ns = (size_t)(MT_CEIL_DIV(rows, 128) * MT_CEIL_DIV(cols, 128));

    memset(t, 0, sizeof(*t));
    t->data = gt_malloc(n * mt_dtype_size(dt));
    if (dt == MT_DTYPE_F8_E4M3) {
        gt_fill_fp8(t->data, n);
        t->scale = gt_malloc(ns * sizeof(float));
        gt_fill(t->scale, ns, 1e-3f, 4e-3f);
        for (size_t i = 0; pow2_scales && i < ns; i++) {
            t->scale[i] = ldexpf(1.0f, -8 - (int)(t->scale[i] * 1000.0f)); /* 2^-9 .. 2^-12 */
        }
    } else if (dt == MT_DTYPE_BF16) {
        gt_fill_bf16(t->data, n, -1.0f, 1.0f);
    } else {
        gt_fill(t->data, n, -1.0f, 1.0f);
    }
    t->cw = (struct mt_cpu_weight){.dtype = dt, .data = t->data, .scale = t->scale, .rows = rows,
                                   .cols = cols};
    t->gw = (struct mt_gpu_weight){.dtype = dt, .data = gt_put(t->data, n * mt_dtype_size(dt)),
                                   .scale = t->scale ? gt_put(t->scale, ns * sizeof(float)) : NULL,
                                   .rows = rows, .cols = cols,
                                   .scale_pow2 = dt == MT_DTYPE_F8_E4M3 && pow2_scales};
}

static void
tw_free(struct tw *t)
{
    free(t->data);
    free(t->scale);
}

/* Worst |got - ref| / sum|w x| over the checked rows (every `step`-th, and the last). */
static double
check_rows(const struct mt_cpu_weight *w, const float *x, int n, const float *y, int64_t step)
{
    float *row = gt_malloc((size_t)w->cols * sizeof(float));
    double worst = 0.0;

    for (int64_t r = 0; r < w->rows; r = (r + step < w->rows || r == w->rows - 1) ? r + step
                                                                                  : w->rows - 1) {
        mt_cpu_weight_row(w, r, row);
        for (int t = 0; t < n; t++) {
            double ref = 0.0, mag = 0.0;
            for (int64_t c = 0; c < w->cols; c++) {
                ref += (double)row[c] * x[(size_t)t * w->cols + c];
                mag += fabs((double)row[c] * x[(size_t)t * w->cols + c]);
            }
            double d = fabs(y[(size_t)t * w->rows + r] - ref) / (mag > 0 ? mag : 1.0);
            worst = d > worst ? d : worst;
        }
        if (r == w->rows - 1) {
            break;
        }
    }
    free(row);
    return worst;
}

/* y = x W^T of a fresh random W and x; returns the worst error of sum|wx| (INFINITY on failure). */
static double
linear_worst(struct mt_gpu_gemm *gm, enum mt_dtype dt, int64_t rows, int64_t cols, int n,
             int64_t step, mt_status_t *st_out)
{
    struct tw w;
    float *x = gt_malloc((size_t)n * cols * sizeof(float));
    float *y = gt_malloc((size_t)n * rows * sizeof(float));

    tw_make(&w, dt, rows, cols);
    gt_fill(x, (size_t)n * cols, -1.0f, 1.0f);
    float *dx = gt_put(x, (size_t)n * cols * sizeof(float));
    float *dy = gt_alloc((size_t)n * rows * sizeof(float));
    mt_status_t st = mt_gpu_gemm_linear(gm, &w.gw, dx, n, dy, NULL);
    if (st == MT_OK) {
        gt_get(y, dy, (size_t)n * rows * sizeof(float));
    }
    double worst = st == MT_OK ? check_rows(&w.cw, x, n, y, step) : INFINITY;
    *st_out = st;
    tw_free(&w);
    free(x);
    free(y);
    return worst;
}

static void
linear_case(struct mt_gpu_gemm *gm, enum mt_dtype dt, int64_t rows, int64_t cols, int n,
            int64_t step)
{
    enum mt_gpu_gemm_math m = mt_gpu_gemm_math(gm);
    mt_status_t st;
    double worst = linear_worst(gm, dt, rows, cols, n, step, &st);
    /* the FP8 mode runs BF16X3 for weights its FP8 path does not take (fp8_case: those it does) */
    m = m == MT_GPU_GEMM_FP8 ? MT_GPU_GEMM_BF16X3 : m;
    /* an F32 weight is multiplied in fp32 in every mode; so is an odd width in BF16X3 */
    bool f32 = m == MT_GPU_GEMM_F32 || dt == MT_DTYPE_F32 ||
               (m == MT_GPU_GEMM_BF16X3 && cols % 8 != 0);
    double tol = f32 ? TOL_F32 : m == MT_GPU_GEMM_BF16X3 ? TOL_X3 : TOL_BF16;
    tap_ok(st == MT_OK && worst <= tol, "%s GEMM, %s weight %lld x %lld%s, %d tokens: worst "
           "%.2e of sum|wx| (bound %.0e)%s%s", mt_gpu_gemm_math_name(m), mt_dtype_name(dt),
           (long long)rows, (long long)cols,
           pow2_scales && dt == MT_DTYPE_F8_E4M3 ? " (power-of-two scales)" : "", n, worst, tol,
           st == MT_OK ? "" : ": ", st == MT_OK ? "" : mt_last_error());
}

/*
 * x [n, cols] quantized as gemm_fp8.h says, on the host: q [n_pad, cols], s [cols / 128][n_pad]
 * (tokens n .. n_pad - 1 zeros of scale 1).
 */
static void
quant_ref(const float *x, int n, int n_pad, int64_t cols, uint8_t *q, float *s)
{
    for (int t = 0; t < n_pad; t++) {
        for (int64_t kb = 0; kb < cols / 128; kb++) {
            const float *v = x + (size_t)t * cols + kb * 128;
            float amax = 0.0f;
            for (int i = 0; t < n && i < 128; i++) {
                amax = fmaxf(amax, fabsf(v[i]));
            }
            float sc = amax > 0.0f ? amax / 448.0f : 1.0f;
            s[kb * n_pad + t] = sc;
            for (int i = 0; i < 128; i++) {
                q[(size_t)t * cols + kb * 128 + i] = t < n ? mt_f32_to_fp8(v[i] / sc) : 0;
            }
        }
    }
}

/*
 * The activations' quantization against quant_ref, bit for bit: blocks of magnitudes 2^-20 to
 * 2^20, a block of zeros, a block whose values tie e4m3's rounding (odd multiples of half a
 * step, below the amax of 448 steps' worth).
 */
static void
quant_case(int n, int n_pad, int64_t cols)
{
    size_t nx = (size_t)n_pad * cols, ns = (size_t)n_pad * (cols / 128);
    float *x = gt_malloc(nx * 4), *s = gt_malloc(ns * 4), *rs = gt_malloc(ns * 4);
    uint8_t *q = gt_malloc(nx), *rq = gt_malloc(nx);

    for (size_t b = 0; b < ns; b++) {
        float mag = ldexpf(1.0f, (int)(gt_uniform(0.0f, 41.0f)) - 20);
        for (int i = 0; i < 128; i++) {
            x[b * 128 + i] = gt_uniform(-1.0f, 1.0f) * mag;
        }
    }
    memset(x, 0, 128 * sizeof(float)); /* token 0's first block */
    if (ns > 1) {
        /* token 0's second block: amax 448 (scale 1), and halfway between two e4m3 values
           (odd numbers in [16, 32), where they are 2 apart, times 2^-k) */
        float *v = x + 128;
        for (int i = 0; i < 128; i++) {
            v[i] = i == 0 ? 448.0f : ldexpf(17.0f + 2.0f * (float)(i % 4), -(i % 8));
            v[i] = i % 2 ? -v[i] : v[i];
        }
    }
    for (size_t i = (size_t)n * cols; i < nx; i++) {
        x[i] = NAN; /* past the tokens: the padding must not read them */
    }
    float *dx = gt_put(x, nx * 4);
    uint8_t *dq = gt_alloc(mt_gpu_quant_1x128_bytes(n_pad, cols));
    float *ds = mt_gpu_quant_1x128_scales(dq, n_pad, cols);
    mt_status_t st = mt_gpu_quant_1x128(dx, n, n_pad, cols, dq, ds, NULL);
    if (st == MT_OK) {
        gt_get(q, dq, nx);
        gt_get(s, ds, ns * 4);
    }
    quant_ref(x, n, n_pad, cols, rq, rs);
    size_t bad_q = 0, bad_s = 0;
    for (size_t i = 0; st == MT_OK && i < nx; i++) {
        bad_q += q[i] != rq[i];
    }
    for (size_t i = 0; st == MT_OK && i < ns; i++) {
        bad_s += memcmp(&s[i], &rs[i], 4) != 0;
    }
    tap_ok(st == MT_OK && bad_q == 0 && bad_s == 0, "FP8 activations, %d tokens (padded to %d) x "
           "%lld: %zu of %zu values and %zu of %zu scales differ from the host's%s%s", n, n_pad,
           (long long)cols, bad_q, nx, bad_s, ns, st == MT_OK ? "" : ": ",
           st == MT_OK ? "" : mt_last_error());
    free(x);
    free(s);
    free(rs);
    free(q);
    free(rq);
}

/*
 * y = x W^T in the FP8 mode for a fresh FP8 W: where its path takes W, against x quantized as
 * it does (TOL_FP8) and missing the BF16X3 bound against x itself (it did quantize); else the
 * BF16X3 bound against x.
 */
static void
fp8_case(struct mt_gpu_gemm *g8, int64_t rows, int64_t cols, int n, int64_t step)
{
    struct tw w;
    size_t nx = (size_t)n * cols;
    float *x = gt_malloc(nx * 4), *xq = gt_malloc(nx * 4), *y = gt_malloc((size_t)n * rows * 4);

    tw_make(&w, MT_DTYPE_F8_E4M3, rows, cols);
    gt_fill(x, nx, -1.0f, 1.0f);
    float *dx = gt_put(x, nx * 4);
    float *dy = gt_alloc_guarded((size_t)n * rows * 4); /* tokens are padded to 16 inside */
    long fell = mt_gpu_gemm_fp8_fallbacks(g8);
    mt_status_t st = mt_gpu_gemm_linear(g8, &w.gw, dx, n, dy, NULL);
    int past = 0;
    if (st == MT_OK) {
        gt_get(y, dy, (size_t)n * rows * 4);
        past = gt_guard_hits(dy, (size_t)n * rows * 4);
    }
    bool fp8 = mt_gpu_gemm_fp8_fits(&w.gw) && mt_gpu_gemm_fp8_fallbacks(g8) == fell;
    double wq = INFINITY;
    if (cols % 128 == 0) {
        uint8_t *q = gt_malloc(nx);
        float *s = gt_malloc((size_t)n * (cols / 128) * 4);
        quant_ref(x, n, n, cols, q, s);
        for (size_t i = 0; i < nx; i++) {
            xq[i] = mt_fp8_to_f32(q[i]) * s[(i % cols) / 128 * n + i / cols];
        }
        wq = st == MT_OK ? check_rows(&w.cw, xq, n, y, step) : INFINITY;
        free(q);
        free(s);
    }
    double wx = st == MT_OK ? check_rows(&w.cw, x, n, y, step) : INFINITY;
    bool ok = st == MT_OK && past == 0 &&
              (fp8 ? wq <= TOL_FP8 && wx > TOL_X3 : wx <= TOL_X3);
    tap_ok(ok, "fp8 GEMM, FP8 weight %lld x %lld, %d tokens (%s): worst %.2e of sum|wx| against "
           "x as quantized, %.2e against x (bound %.0e %s), %d floats written past y%s%s",
           (long long)rows, (long long)cols, n, fp8 ? "block-scaled FP8" : "falls back to bf16x3",
           wq, wx, fp8 ? TOL_FP8 : TOL_X3, fp8 ? "against x as quantized; must miss the bf16x3 "
           "bound against x" : "against x", past, st == MT_OK ? "" : ": ",
           st == MT_OK ? "" : mt_last_error());
    tw_free(&w);
    free(x);
    free(xq);
    free(y);
}

/* The CPU's absorption (attention.c's loops) in double. */
static void
absorb_ref(const struct mt_cpu_weight *kvb, const float *q, const float *o_lat, int n, int H,
           int nope, int vd, int rope, double *q_lat, double *out)
{
    int kvl = (int)kvb->cols, qk = nope + rope;
    float *row = gt_malloc((size_t)kvl * sizeof(float));

    memset(q_lat, 0, (size_t)n * H * kvl * sizeof(double));
    memset(out, 0, (size_t)n * H * vd * sizeof(double));
    for (int h = 0; h < H; h++) {
        for (int d = 0; d < nope + vd; d++) {
            mt_cpu_weight_row(kvb, (int64_t)h * (nope + vd) + d, row);
            for (int t = 0; t < n; t++) {
                for (int c = 0; c < kvl; c++) {
                    if (d < nope) {
                        q_lat[((size_t)t * H + h) * kvl + c] +=
                            (double)q[((size_t)t * H + h) * qk + d] * row[c];
                    } else {
                        out[((size_t)t * H + h) * vd + d - nope] +=
                            (double)row[c] * o_lat[((size_t)t * H + h) * kvl + c];
                    }
                }
            }
        }
    }
    free(row);
}

static double
worst_rel(const float *got, const double *want, size_t n)
{
    double w = 0.0, mx = 0.0;

    for (size_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs(want[i]));
    }
    for (size_t i = 0; i < n; i++) {
        w = fmax(w, fabs(got[i] - want[i]) / (mx > 0 ? mx : 1.0));
    }
    return w;
}

/* One absorption case: heads H, nope / value / rope widths, latent width kvl. */
struct absorb_shape {
    int H, nope, vd, rope, kvl;
};

static void
absorb_case_at(struct mt_gpu_gemm *gm, enum mt_dtype dt, int n, bool kernel,
               struct absorb_shape sh, const char *what)
{
    int H = sh.H, nope = sh.nope, vd = sh.vd, rope = sh.rope, kvl = sh.kvl, qk = nope + rope;
    struct tw w;
    size_t nq = (size_t)n * H * qk, nl = (size_t)n * H * kvl, nv = (size_t)n * H * vd;
    float *q = gt_malloc(nq * 4), *ol = gt_malloc(nl * 4);
    float *ql = gt_malloc(nl * 4), *qpe = gt_malloc((size_t)n * H * rope * 4);
    float *out = gt_malloc(nv * 4);
    double *rql = gt_malloc(nl * sizeof(double)), *rout = gt_malloc(nv * sizeof(double));

    tw_make(&w, dt, (int64_t)H * (nope + vd), kvl);
    gt_fill(q, nq, -1.0f, 1.0f);
    gt_fill(ol, nl, -1.0f, 1.0f);
    float *dq = gt_put(q, nq * 4), *dol = gt_put(ol, nl * 4);
    float *dql = gt_alloc(nl * 4), *dqpe = gt_alloc((size_t)n * H * rope * 4);
    float *dout = gt_alloc(nv * 4);
    mt_status_t st;
    if (kernel) {
        st = mt_gpu_mla_absorb_q(dq, &w.gw, n, H, nope, vd, rope, dql, dqpe, NULL);
        st = st == MT_OK ? mt_gpu_mla_absorb_v(dol, &w.gw, n, H, nope, vd, dout, NULL) : st;
    } else {
        st = mt_gpu_gemm_absorb_q(gm, &w.gw, dq, n, H, nope, vd, rope, dql, dqpe, NULL);
        st = st == MT_OK ? mt_gpu_gemm_absorb_v(gm, &w.gw, dol, n, H, nope, vd, dout, NULL) : st;
    }
    if (st == MT_OK) {
        gt_get(ql, dql, nl * 4);
        gt_get(qpe, dqpe, (size_t)n * H * rope * 4);
        gt_get(out, dout, nv * 4);
    }
    absorb_ref(&w.cw, q, ol, n, H, nope, vd, rope, rql, rout);
    bool pe = true;
    for (int t = 0; t < n; t++) {
        for (int h = 0; h < H; h++) {
            for (int i = 0; i < rope; i++) {
                pe = pe && qpe[((size_t)t * H + h) * rope + i] ==
                               q[((size_t)t * H + h) * qk + nope + i];
            }
        }
    }
    double a = st == MT_OK ? worst_rel(ql, rql, nl) : INFINITY;
    double b = st == MT_OK ? worst_rel(out, rout, nv) : INFINITY;
    /* the BF16X3 (and FP8) context's absorptions split kv_b and x into bf16 hi + lo */
    enum mt_gpu_gemm_math m = mt_gpu_gemm_math(gm);
    double tol = !kernel && (m == MT_GPU_GEMM_BF16X3 || m == MT_GPU_GEMM_FP8) ? TOL_X3 : 1e-5;
    tap_ok(st == MT_OK && a <= tol && b <= tol && pe, "absorption by the %s, %s kv_b, %d "
           "tokens, %d heads x (%d + %d) x %d%s: q_lat worst %.2e, out worst %.2e (bound %.0e "
           "of max), q_pe copied: %s", kernel ? "n-token kernels" : "batched GEMMs",
           mt_dtype_name(dt), n, H, nope, vd, kvl, what, a, b, tol, pe ? "yes" : "no");
    tw_free(&w);
    free(q);
    free(ol);
    free(ql);
    free(qpe);
    free(out);
    free(rql);
    free(rout);
}

static void
absorb_case(struct mt_gpu_gemm *gm, enum mt_dtype dt, int n, bool kernel)
{
    absorb_case_at(gm, dt, n, kernel, (struct absorb_shape){3, 16, 12, 8, 40}, "");
}

/*
 * The streaming kernels read weights before the PDL wait and their inputs after it: the same
 * bits with programmatic dependent launch off and on, each launch right after a kernel that
 * writes its input (a copy of the input to the buffer it reads), so a read before the wait would
 * see the old contents (the buffers start NaN).
 */
static void
absorb_pdl_bits(struct absorb_shape sh, int n)
{
    int H = sh.H, qk = sh.nope + sh.rope, kvl = sh.kvl;
    size_t nq = (size_t)n * H * qk, nl = (size_t)n * H * kvl, nv = (size_t)n * H * sh.vd;
    struct tw w;
    size_t nmax = nq > nl ? nq : nl;
    float *q = gt_malloc(nq * 4), *ol = gt_malloc(nl * 4), *nan = gt_malloc(nmax * 4);
    float *got[2][2];
    bool ok = true;

    tw_make(&w, MT_DTYPE_F8_E4M3, (int64_t)H * (sh.nope + sh.vd), kvl);
    gt_fill(q, nq, -1.0f, 1.0f);
    gt_fill(ol, nl, -1.0f, 1.0f);
    for (size_t i = 0; i < nmax; i++) {
        nan[i] = NAN;
    }
    float *dq_src = gt_put(q, nq * 4), *dol_src = gt_put(ol, nl * 4);
    float *dq = gt_alloc(nq * 4), *dol = gt_alloc(nl * 4);
    float *dql = gt_alloc(nl * 4), *dqpe = gt_alloc((size_t)n * H * sh.rope * 4);
    float *dout = gt_alloc(nv * 4);
    for (int p = 0; p < 2; p++) {
        got[p][0] = gt_malloc(nl * 4);
        got[p][1] = gt_malloc(nv * 4);
        mt_gpu_pdl_set(p == 1);
        ok = ok && mt_gpu_copy_to_device(dq, nan, nq * 4) == MT_OK &&
             mt_gpu_copy_to_device(dol, nan, nl * 4) == MT_OK &&
             mt_gpu_rows_convert(dq, MT_DTYPE_F32, qk, dq_src, qk, n * H, qk, NULL) == MT_OK &&
             mt_gpu_mla_absorb_q(dq, &w.gw, n, H, sh.nope, sh.vd, sh.rope, dql, dqpe, NULL) ==
                 MT_OK &&
             mt_gpu_rows_convert(dol, MT_DTYPE_F32, kvl, dol_src, kvl, n * H, kvl, NULL) ==
                 MT_OK &&
             mt_gpu_mla_absorb_v(dol, &w.gw, n, H, sh.nope, sh.vd, dout, NULL) == MT_OK;
        if (ok) {
            gt_get(got[p][0], dql, nl * 4);
            gt_get(got[p][1], dout, nv * 4);
        }
    }
    mt_gpu_pdl_set(true);
    ok = ok && memcmp(got[0][0], got[1][0], nl * 4) == 0 &&
         memcmp(got[0][1], got[1][1], nv * 4) == 0;
    bool finite = true;
    for (size_t i = 0; ok && i < nl; i++) {
        finite = finite && isfinite(got[1][0][i]);
    }
    tap_ok(ok && finite, "streaming absorption after a kernel that writes its input: the same "
           "bits with PDL off and on%s%s", finite ? "" : " (NaN: an input read before the wait)",
           mt_gpu_pdl_active() ? "" : " (no PDL on this device)");
    for (int p = 0; p < 2; p++) {
        free(got[p][0]);
        free(got[p][1]);
    }
    tw_free(&w);
    free(q);
    free(ol);
    free(nan);
}

/*
 * FP8 kv_b in whole 128-column blocks takes engine_ops.cu's streaming kernels: V3.2's shape at
 * every token chunk (1, 2, 3 of a 4-token chunk, 5 = 4 + 1 along z, 8), value rows not a
 * multiple of a block's 32 and heads whose rows cross 128-row scale blocks, nope rows over two
 * of a thread's 128-row rounds; then V3.2's shape once more on the any-shape kernels.
 */
static void
absorb_fast_cases(struct mt_gpu_gemm *gm)
{
    struct absorb_shape v32 = {128, 128, 128, 64, 512};
    int toks[] = {1, 2, 3, 5, 8};
    bool was = mt_gpu_absorb_fast();

    mt_gpu_absorb_fast_set(true); /* whatever MT_GPU_ABSORB says */
    for (size_t i = 0; i < sizeof(toks) / sizeof(toks[0]); i++) {
        absorb_case_at(gm, MT_DTYPE_F8_E4M3, toks[i], true, v32, " (V3.2)");
    }
    absorb_case_at(gm, MT_DTYPE_F8_E4M3, 1, true, (struct absorb_shape){5, 48, 40, 8, 256},
                   " (rows across scale blocks)");
    absorb_case_at(gm, MT_DTYPE_F8_E4M3, 3, true, (struct absorb_shape){5, 48, 40, 8, 256},
                   " (rows across scale blocks)");
    absorb_case_at(gm, MT_DTYPE_F8_E4M3, 2, true, (struct absorb_shape){2, 200, 24, 4, 128},
                   " (nope over 128 rows)");
    absorb_case_at(gm, MT_DTYPE_F8_E4M3, 3, true, (struct absorb_shape){2, 48, 40, 8, 640},
                   " (value rows over two 512-byte rounds of a lane)");
    absorb_pdl_bits(v32, 2);
    mt_gpu_absorb_fast_set(false);
    absorb_case_at(gm, MT_DTYPE_F8_E4M3, 1, true, v32, " (V3.2, any-shape kernels)");
    mt_gpu_absorb_fast_set(was);
}

/* The FP8 mode: quantization, the block-scaled GEMM at V3.2's shapes, its fall backs. */
static void
fp8_cases(struct mt_gpu_gemm *g8)
{
    quant_case(1, 1, 128);
    quant_case(5, 16, 384);
    quant_case(37, 37, 384);
    quant_case(512, 512, 7168);
    tap_ok(mt_gpu_quant_1x128((const float *)g8, 3, 3, 200, (uint8_t *)g8, (float *)g8, NULL) ==
               MT_ERR_INVAL,
           "FP8 activations of 200 columns (not whole 128-column blocks) are refused: %s",
           mt_last_error());
    struct mt_gpu_weight w8 = {.dtype = MT_DTYPE_F8_E4M3, .data = g8, .scale = (float *)g8,
                               .rows = 256, .cols = 512};
    tap_ok(mt_gpu_gemm_fp8_linear((struct mt_gpu_gemm_fp8 *)g8, &w8, (uint8_t *)g8, (float *)g8,
                                  37, (float *)g8, g8, 1, NULL) == MT_ERR_INVAL,
           "the block-scaled FP8 GEMM of 37 tokens (not a multiple of 16) is refused: %s",
           mt_last_error());
    /* the shapes gemm_fp8.h says it takes: rows a multiple of 4, whole groups of 4 blocks */
    struct mt_gpu_weight r300 = w8, r302 = w8, c384 = w8, c1536 = w8;
    r300.rows = 300;
    r302.rows = 302;
    c384.cols = 384;
    c1536.cols = 1536;
    tap_ok(mt_gpu_gemm_fp8_fits(&w8) && mt_gpu_gemm_fp8_fits(&r300) &&
               mt_gpu_gemm_fp8_fits(&c1536) && !mt_gpu_gemm_fp8_fits(&r302) &&
               !mt_gpu_gemm_fp8_fits(&c384),
           "the block-scaled FP8 GEMM takes 256 x 512, 300 x 512 and 256 x 1536 weights, not "
           "302 x 512 (rows not a multiple of 4) nor 256 x 384 (3 blocks a row)");
    /* tokens: 16s and a rest (37), a rest alone (9), 16s alone (512) */
    fp8_case(g8, 576, 7168, 37, 7);    /* kv_a: the last 64 rows half a scale block */
    fp8_case(g8, 1536, 7168, 130, 11); /* q_a */
    fp8_case(g8, 2048, 512, 9, 1);     /* four 128-column blocks: one group of scales */
    fp8_case(g8, 2048, 512, 16, 1);
    fp8_case(g8, 2048, 1024, 16, 1); /* the same rows and tokens, twice the width: its own plan */
    fp8_case(g8, 7168, 2048, 300, 61); /* a routed expert's down projection */
    fp8_case(g8, 300, 1536, 65, 1);
    fp8_case(g8, 256, 18432, 512, 5); /* the dense down projection's width, the engine's chunk */
    fp8_case(g8, 300, 384, 12, 1);    /* 3 blocks a row: cuBLASLt's groups of 4 do not fit */
    fp8_case(g8, 77, 512, 12, 1);     /* rows not a multiple of 4 */
    /* Hopper has the block-scaled GEMM (cuBLASLt 12.9+): there no product may fall back */
    struct mt_gpu_info info;
    if (mt_gpu_device_info(0, &info) == MT_OK && info.sm_major == 9) {
        tap_ok(mt_gpu_gemm_fp8_fallbacks(g8) == 0, "on this sm_90 GPU every product the FP8 "
               "path takes ran block-scaled FP8: %ld fell back to bf16x3",
               mt_gpu_gemm_fp8_fallbacks(g8));
    } else {
        tap_diag("not a Hopper GPU: %ld FP8-mode products ran bf16x3 (held to its bound)",
                 mt_gpu_gemm_fp8_fallbacks(g8));
    }
    linear_case(g8, MT_DTYPE_BF16, 77, 136, 130, 1);
    linear_case(g8, MT_DTYPE_F32, 45, 37, 17, 1);
    absorb_case_at(g8, MT_DTYPE_F8_E4M3, 11, false, (struct absorb_shape){16, 16, 16, 8, 40},
                   " (fp8 mode: bf16x3)");
}

/* Seconds per call of y = x W^T (best of 3 after a warm-up), as a diagnostic. */
static double
time_gemm(struct mt_gpu_gemm *gm, const struct mt_gpu_weight *w, const float *x, int n, float *y)
{
    double best = INFINITY;

    for (int i = 0; i < 4; i++) {
        double t0 = mt_clock_now();
        if (mt_gpu_gemm_linear(gm, w, x, n, y, NULL) != MT_OK ||
            mt_gpu_stream_sync(NULL) != MT_OK) {
            return NAN;
        }
        double dt = mt_clock_now() - t0;
        best = i > 0 && dt < best ? dt : best;
    }
    return best;
}

/* The decode absorption kernels at V3.2's shape, one token, FP8 and F32 kv_b (diagnostic). */
static void
absorb_times(void)
{
    int H = 128, nope = 128, vd = 128, kvl = 512, rope = 64;
    int64_t rows = (int64_t)H * (nope + vd);
    void *w = gt_alloc((size_t)(rows * kvl) * 4);
    float *sc = gt_alloc((size_t)(MT_CEIL_DIV(rows, 128) * MT_CEIL_DIV(kvl, 128)) * 4);
    float *q = gt_alloc((size_t)H * (nope + rope) * 4), *ql = gt_alloc((size_t)H * kvl * 4);
    float *qp = gt_alloc((size_t)H * rope * 4), *out = gt_alloc((size_t)H * vd * 4);
    enum mt_dtype dts[3] = {MT_DTYPE_F8_E4M3, MT_DTYPE_BF16, MT_DTYPE_F32};

    for (int i = 0; i < 3; i++) {
        struct mt_gpu_weight kvb = {.dtype = dts[i], .data = w, .scale = sc, .rows = rows,
                                    .cols = kvl};
        double tq = INFINITY, tv = INFINITY;
        for (int r = 0; r < 5; r++) {
            double t0 = mt_clock_now();
            mt_status_t st = mt_gpu_mla_absorb_q(q, &kvb, 1, H, nope, vd, rope, ql, qp, NULL);
            st = st == MT_OK ? mt_gpu_stream_sync(NULL) : st;
            double t1 = mt_clock_now();
            st = st == MT_OK ? mt_gpu_mla_absorb_v(ql, &kvb, 1, H, nope, vd, out, NULL) : st;
            st = st == MT_OK ? mt_gpu_stream_sync(NULL) : st;
            if (st != MT_OK) {
                return;
            }
            tq = r > 0 && t1 - t0 < tq ? t1 - t0 : tq;
            tv = r > 0 && mt_clock_now() - t1 < tv ? mt_clock_now() - t1 : tv;
        }
        double half = (double)(rows / 2 * kvl) * mt_dtype_size(dts[i]);
        tap_diag("decode absorption, V3.2 shape, 1 token, %s kv_b: q %.1f us (%.0f GB/s), v %.1f "
                 "us (%.0f GB/s), launch + sync included", mt_dtype_name(dts[i]), tq * 1e6,
                 half / tq * 1e-9, tv * 1e6, half / tv * 1e-9);
    }
}

static void
peaks(struct mt_gpu_gemm *bf, struct mt_gpu_gemm *f32, struct mt_gpu_gemm *x3,
      struct mt_gpu_gemm *g8_ctx)
{
    int n = 4096;
    int64_t R = 8192, C = 8192;
    void *w = gt_alloc((size_t)(R * C) * 2); /* also holds 7168 x 18432 fp8 bytes */
    float *x = gt_alloc((size_t)n * C * 4), *y = gt_alloc((size_t)n * R * 4);
    void *dq = gt_alloc((size_t)4096 * 18432 * 2);
    struct mt_gpu_weight gw = {.dtype = MT_DTYPE_BF16, .data = w, .rows = R, .cols = C};

    /* contents do not matter for the time: zeros */
    double flop = 2.0 * n * (double)R * C;
    double tb = time_gemm(bf, &gw, x, n, y);
    tap_diag("peak: BF16 GEMM %d x %lld x %lld (bf16 weight, x converted from fp32 in the call): "
             "%.3f ms = %.1f TFLOP/s", n, (long long)R, (long long)C, tb * 1e3, flop / tb * 1e-12);
    double tf = time_gemm(f32, &gw, x, n, y);
    tap_diag("peak: fp32-mode GEMM, same shape (dequantized to fp32 slab by slab): %.3f ms = %.1f "
             "TFLOP/s", tf * 1e3, flop / tf * 1e-12);
    double tx = time_gemm(x3, &gw, x, n, y);
    tap_diag("BF16X3-mode GEMM, same shape (bf16 weight: x_hi W + x_lo W): %.3f ms = %.1f "
             "TFLOP/s of the product asked for", tx * 1e3, flop / tx * 1e-12);
    /* V3.2's dense down projection, FP8, 512 tokens: dequantization included */
    struct mt_gpu_weight g8 = {.dtype = MT_DTYPE_F8_E4M3, .data = w, .rows = 7168, .cols = 18432,
                               .scale = gt_alloc(56 * 144 * 4)};
    double t8 = time_gemm(bf, &g8, x, 512, y);
    tap_diag("FP8 7168 x 18432 at 512 tokens, BF16 mode (dequantize + GEMM): %.3f ms = %.1f "
             "TFLOP/s", t8 * 1e3, 2.0 * 512 * 7168 * 18432 / t8 * 1e-12);
    double t83 = time_gemm(x3, &g8, x, 512, y);
    tap_diag("FP8 7168 x 18432 at 512 tokens, BF16X3 mode (dequantize to hi + lo, two GEMMs): "
             "%.3f ms = %.1f TFLOP/s of the product asked for", t83 * 1e3,
             2.0 * 512 * 7168 * 18432 / t83 * 1e-12);
    g8.scale_pow2 = true;
    double t8p = time_gemm(x3, &g8, x, 512, y);
    tap_diag("FP8 7168 x 18432 at 512 tokens, BF16X3 mode, power-of-two scales (dequantize, "
             "x_hi W + x_lo W): %.3f ms = %.1f TFLOP/s of the product asked for", t8p * 1e3,
             2.0 * 512 * 7168 * 18432 / t8p * 1e-12);
    g8.scale_pow2 = false;
    double tq = time_gemm(g8_ctx, &g8, x, 512, y);
    tap_diag("FP8 7168 x 18432 at 512 tokens, FP8 mode (%s): %.3f ms = %.1f TFLOP/s",
             mt_gpu_gemm_fp8_fallbacks(g8_ctx) > 0 ? "where it falls back: bf16x3"
                                                   : "x quantized, block-scaled FP8 GEMM",
             tq * 1e3, 2.0 * 512 * 7168 * 18432 / tq * 1e-12);
    double t8f = time_gemm(f32, &g8, x, 512, y);
    tap_diag("FP8 7168 x 18432 at 512 tokens, fp32 mode: %.3f ms = %.1f TFLOP/s", t8f * 1e3,
             2.0 * 512 * 7168 * 18432 / t8f * 1e-12);
    /* narrow products of a prompt chunk: the indexer's BF16 weights_proj, kv_a (FP8) */
    struct mt_gpu_weight wp = {.dtype = MT_DTYPE_BF16, .data = w, .rows = 64, .cols = 7168};
    struct mt_gpu_weight ka = {.dtype = MT_DTYPE_F8_E4M3, .data = w, .rows = 576, .cols = 7168,
                               .scale = g8.scale};
    tap_diag("BF16 64 x 7168 (the indexer's weights_proj) at 512 tokens: bf16x3 mode %.1f us, "
             "bf16 mode %.1f us", time_gemm(x3, &wp, x, 512, y) * 1e6,
             time_gemm(bf, &wp, x, 512, y) * 1e6);
    tap_diag("FP8 576 x 7168 (kv_a) at 512 tokens: bf16x3 mode %.1f us, fp8 mode %.1f us",
             time_gemm(x3, &ka, x, 512, y) * 1e6, time_gemm(g8_ctx, &ka, x, 512, y) * 1e6);
    double t0 = mt_clock_now();
    mt_status_t st = MT_OK;
    for (int i = 0; i < 4 && st == MT_OK; i++) {
        st = mt_gpu_dequant_rows(&g8, 0, 4096, MT_DTYPE_BF16, dq, NULL);
    }
    st = st == MT_OK ? mt_gpu_stream_sync(NULL) : st;
    double td = st == MT_OK ? (mt_clock_now() - t0) / 4 : NAN;
    tap_diag("FP8 -> BF16 dequantization, 4096 x 18432: %.3f ms = %.0f GB/s (1 byte read, 2 "
             "written)", td * 1e3, 3.0 * 4096 * 18432 / td * 1e-9);
}

int
main(void)
{
    struct mt_gpu_gemm *bf = NULL, *f32 = NULL, *x3 = NULL, *g8 = NULL;

    if (!gt_init(2400, 20261130)) {
        return 0;
    }
    tap_plan(0);
    int max_tok = 4096;
    int64_t max_cols = 18432;
    size_t wb = mt_gpu_gemm_work_bytes(MT_GPU_GEMM_BF16, max_tok, max_cols, 0);
    size_t wb3 = mt_gpu_gemm_work_bytes(MT_GPU_GEMM_BF16X3, max_tok, max_cols, 0);
    size_t wb8 = mt_gpu_gemm_work_bytes(MT_GPU_GEMM_FP8, 512, max_cols, 0); /* the engine's chunk */
    if (!tap_ok(mt_gpu_gemm_create(MT_GPU_GEMM_BF16, &bf) == MT_OK &&
                    mt_gpu_gemm_create(MT_GPU_GEMM_F32, &f32) == MT_OK &&
                    mt_gpu_gemm_create(MT_GPU_GEMM_BF16X3, &x3) == MT_OK &&
                    mt_gpu_gemm_create(MT_GPU_GEMM_FP8, &g8) == MT_OK &&
                    mt_gpu_gemm_set_work(bf, gt_alloc(wb), wb, max_tok, max_cols) == MT_OK &&
                    mt_gpu_gemm_set_work(f32, gt_alloc(wb), wb, max_tok, max_cols) == MT_OK &&
                    mt_gpu_gemm_set_work(x3, gt_alloc(wb3), wb3, max_tok, max_cols) == MT_OK &&
                    mt_gpu_gemm_set_work(g8, gt_alloc(wb8), wb8, 512, max_cols) == MT_OK,
                "GEMM contexts with their work areas: %s", mt_last_error())) {
        return tap_done();
    }
    /* FP8 with power-of-two scales (DeepSeek's ue8m0): BF16X3 without W's lo half */
    pow2_scales = true;
    linear_case(x3, MT_DTYPE_F8_E4M3, 300, 272, 9, 1);
    linear_case(x3, MT_DTYPE_F8_E4M3, 9000, 4096, 11, 127);
    linear_case(f32, MT_DTYPE_F8_E4M3, 129, 200, 33, 1);
    pow2_scales = false;
    tap_ok(mt_gpu_gemm_create((enum mt_gpu_gemm_math)7, &(struct mt_gpu_gemm *){NULL}) ==
               MT_ERR_INVAL,
           "an unknown arithmetic mode is refused: %s", mt_last_error());
    tap_ok(wb3 > wb, "the BF16X3 work area holds three planes of x: %zu > %zu bytes", wb3, wb);
    struct mt_gpu_gemm *modes[3] = {f32, bf, x3};
    for (int m = 0; m < 3; m++) {
        linear_case(modes[m], MT_DTYPE_F8_E4M3, 300, 272, 9, 1);
        linear_case(modes[m], MT_DTYPE_F8_E4M3, 129, 200, 33, 1);
        linear_case(modes[m], MT_DTYPE_BF16, 77, 136, 130, 1);
        linear_case(modes[m], MT_DTYPE_F32, 45, 37, 17, 1);
        /* widths not a multiple of 8 take the one-weight dequantizer; 300 columns end in a
           partial 128-block, so the second block row's scales start at 3, not 2 */
        linear_case(modes[m], MT_DTYPE_F8_E4M3, 130, 300, 9, 1);
        linear_case(modes[m], MT_DTYPE_BF16, 33, 203, 5, 1);
        /* taller than the slab: 64 MiB holds 8192 bf16 (4096 bf16x3) or 4096 fp32 rows of 4096 */
        linear_case(modes[m], MT_DTYPE_F8_E4M3, 9000, 4096, 11, 127);
    }
    /* the BF16X3 bound means something: plain BF16 misses it on the same kind of inputs */
    mt_status_t st;
    double wbf = linear_worst(bf, MT_DTYPE_F8_E4M3, 256, 1024, 16, 1, &st);
    tap_ok(st == MT_OK && wbf > TOL_X3, "plain BF16 misses the BF16X3 bound: worst %.2e > %.0e",
           wbf, TOL_X3);
    /* V3.2's widths: the attention output (16384) and a dense down projection (18432) */
    linear_case(x3, MT_DTYPE_F8_E4M3, 384, 16384, 7, 1);
    linear_case(x3, MT_DTYPE_F8_E4M3, 256, 18432, 12, 3);
    for (int m = 0; m < 2; m++) {
        absorb_case(f32, m == 0 ? MT_DTYPE_F8_E4M3 : MT_DTYPE_BF16, 11, false);
        absorb_case(f32, m == 0 ? MT_DTYPE_F8_E4M3 : MT_DTYPE_BF16, 5, true);
    }
    absorb_case(f32, MT_DTYPE_F32, 8, true);
    /* the BF16X3 context's batched GEMMs on bf16 hi + lo (widths multiples of 8): FP8 kv_b
       with and without power-of-two scales, BF16; V3.2's shape; and heads in groups, where a
       context's x planes hold only a few heads (16 tokens x 64 columns: 3 or 8 heads a group) */
    struct absorb_shape s8 = {16, 16, 16, 8, 40};
    absorb_case_at(x3, MT_DTYPE_F8_E4M3, 11, false, s8, " (bf16x3)");
    absorb_case_at(x3, MT_DTYPE_BF16, 5, false, s8, " (bf16x3)");
    pow2_scales = true;
    absorb_case_at(x3, MT_DTYPE_F8_E4M3, 11, false, s8, " (bf16x3, power-of-two scales)");
    absorb_case_at(x3, MT_DTYPE_F8_E4M3, 20, false, (struct absorb_shape){128, 128, 128, 64, 512},
                   " (bf16x3, V3.2, power-of-two scales)");
    pow2_scales = false;
    {
        struct mt_gpu_gemm *small = NULL;
        size_t sb = mt_gpu_gemm_work_bytes(MT_GPU_GEMM_BF16X3, 16, 64, 0);
        bool made = mt_gpu_gemm_create(MT_GPU_GEMM_BF16X3, &small) == MT_OK &&
                    mt_gpu_gemm_set_work(small, gt_alloc(sb), sb, 16, 64) == MT_OK;
        if (tap_ok(made, "a BF16X3 context with room for 16 tokens of 64%s%s", made ? "" : ": ",
                   made ? "" : mt_last_error())) {
            absorb_case_at(small, MT_DTYPE_F8_E4M3, 11, false, s8, " (bf16x3, heads in groups)");
        }
        mt_gpu_gemm_destroy(small);
    }
    absorb_fast_cases(f32);
    fp8_cases(g8);
    /* bad arguments: refused before any launch */
    struct mt_gpu_weight none = {.dtype = MT_DTYPE_BF16, .rows = 4, .cols = 8};
    tap_ok(mt_gpu_gemm_linear(bf, &none, NULL, 9, NULL, NULL) == MT_ERR_INVAL,
           "a GEMM without data is refused: %s", mt_last_error());
    peaks(bf, f32, x3, g8);
    absorb_times();
    mt_gpu_gemm_destroy(bf);
    mt_gpu_gemm_destroy(f32);
    mt_gpu_gemm_destroy(x3);
    mt_gpu_gemm_destroy(g8);
    return tap_done();
}

#else /* !MT_HAVE_CUDA */

int
main(void)
{
    tap_skip_all("no CUDA device (built without CUDA)");
    return 0;
}

#endif /* MT_HAVE_CUDA */
