/* SPDX-License-Identifier: MIT */
/*
 * test_ref_ops.c - the CPU reference ops, and the number formats they read (cpu/convert.h),
 * against independent, straightforward formulas.
 *
 * Each check recomputes the expected value the slow obvious way (explicit matrices, double
 * precision, hand-made cases), never by calling another reference op.
 */
#include <config.h>

#include "cpu/convert.h"
#include "cpu/ref_ops.h"
#include "runtime/base/rng.h"
#include "tests/tap.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static struct mt_rng rng; /* seeded in main */

/* Uniform in [-1, 1). */
static float
frand(void)
{
    return (float)mt_rng_uniform(&rng) * 2.0f - 1.0f;
}

static void
test_hadamard(void)
{
    enum { N = 128 };
    static float rows[N][N];
    bool ok_vals = true;
    double worst = 0.0;

    for (int i = 0; i < N; i++) {
        memset(rows[i], 0, sizeof(rows[i]));
        rows[i][i] = 1.0f;
        mt_cpu_hadamard(rows[i], N);
        for (int j = 0; j < N; j++) {
            float want = (__builtin_popcount(i & j) & 1 ? -1.0f : 1.0f) / sqrtf((float)N);
            if (fabsf(rows[i][j] - want) > 1e-7f) {
                ok_vals = false;
            }
        }
    }
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            double d = 0.0;
            for (int k = 0; k < N; k++) {
                d += (double)rows[i][k] * rows[j][k];
            }
            worst = fmax(worst, fabs(d - (i == j ? 1.0 : 0.0)));
        }
    }
    tap_ok(ok_vals, "hadamard 128: e_i maps to row i of H/sqrt(128), H[i][j] = (-1)^popcount(i&j)");
    tap_ok(worst < 1e-6, "hadamard 128 is orthonormal (max |HH^T - I| = %.2e)", worst);

    /* dot products survive rotating both sides */
    float a[N], b[N];
    double d0 = 0.0, d1 = 0.0;
    for (int i = 0; i < N; i++) {
        a[i] = frand();
        b[i] = frand();
        d0 += (double)a[i] * b[i];
    }
    mt_cpu_hadamard(a, N);
    mt_cpu_hadamard(b, N);
    for (int i = 0; i < N; i++) {
        d1 += (double)a[i] * b[i];
    }
    tap_ok(fabs(d0 - d1) < 1e-5, "hadamard on both sides keeps q.k (%.6f vs %.6f)", d0, d1);
}

static void
test_yarn(void)
{
    /* spec 2.11, the real config: dim 64, theta 1e4, factor 40, original 4096, beta 32 / 1 */
    static const double spec[32] = {
        1, .7499, .5623, .4217, .3162, .2371, .1778, .1334, .1, .07499, .05623, .03901, .02688,
        .01838, .01245, .008335, .0055, .003562, .002249, .001371, 7.906e-4, 4.15e-4, 1.778e-4,
        3.334e-5, 2.5e-5, 1.875e-5, 1.406e-5, 1.054e-5, 7.906e-6, 5.928e-6, 4.446e-6, 3.334e-6};
    struct mt_cpu_rope_params p = {.dim = 64, .theta = 10000.0, .yarn = true, .factor = 40.0,
                                   .original_max_pos = 4096, .beta_fast = 32.0, .beta_slow = 1.0};
    float f[32];
    double worst = 0.0;
    int worst_i = 0;
    bool ends = true;

    mt_cpu_rope_freqs(&p, f);
    for (int i = 0; i < 32; i++) {
        double rel = fabs(f[i] - spec[i]) / spec[i];
        if (rel > worst) {
            worst = rel;
            worst_i = i;
        }
        double base = pow(10000.0, -2.0 * i / 64.0);
        if (i <= 10 && fabs(f[i] / base - 1.0) > 1e-6) {
            ends = false;
        }
        if (i >= 23 && fabs(f[i] * 40.0 / base - 1.0) > 1e-6) {
            ends = false;
        }
    }
    tap_ok(worst < 2e-3, "YaRN table matches spec 2.11 (worst rel %.2e at i=%d: %.6g vs %.6g)",
           worst, worst_i, f[worst_i], spec[worst_i]);
    tap_ok(ends, "YaRN: i <= 10 unchanged, i >= 23 divided by 40");
    /* the ramp between: i = 16 is (16-10)/13 of the way */
    double base16 = pow(10000.0, -32.0 / 64.0);
    double r = 6.0 / 13.0;
    tap_ok(fabs(f[16] - (base16 / 40 * r + base16 * (1 - r))) < 1e-9 + 1e-6 * base16,
           "YaRN ramp at i=16");

    p.yarn = false;
    mt_cpu_rope_freqs(&p, f);
    tap_ok(fabsf(f[31] - (float)pow(10000.0, -62.0 / 64.0)) < 1e-9f, "plain RoPE without yarn");
}

static void
test_rope(void)
{
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float y[8];
    float c[4], s[4];
    float freqs[4] = {1.0f, 0.5f, 0.25f, 0.125f};
    bool ok = true;

    mt_cpu_rope_cossin(freqs, 4, 3, c, s);
    for (int i = 0; i < 4; i++) {
        ok = ok && fabsf(c[i] - cosf(3.0f * freqs[i])) < 1e-6f &&
             fabsf(s[i] - sinf(3.0f * freqs[i])) < 1e-6f;
    }
    tap_ok(ok, "rope cos/sin of pos * freq");

    memcpy(y, x, sizeof(x));
    mt_cpu_rope_interleaved(y, c, s, 4);
    ok = true;
    for (int i = 0; i < 4; i++) {
        /* complex multiply (x[2i] + i x[2i+1]) * e^{i theta_i} */
        double re = x[2 * i] * cos(3.0 * freqs[i]) - x[2 * i + 1] * sin(3.0 * freqs[i]);
        double im = x[2 * i] * sin(3.0 * freqs[i]) + x[2 * i + 1] * cos(3.0 * freqs[i]);
        ok = ok && fabs(y[2 * i] - re) < 1e-5 && fabs(y[2 * i + 1] - im) < 1e-5;
    }
    tap_ok(ok, "interleaved rope rotates pairs (2i, 2i+1)");

    memcpy(y, x, sizeof(x));
    mt_cpu_rope_half(y, c, s, 4);
    ok = true;
    for (int i = 0; i < 4; i++) {
        double re = x[i] * cos(3.0 * freqs[i]) - x[i + 4] * sin(3.0 * freqs[i]);
        double im = x[i] * sin(3.0 * freqs[i]) + x[i + 4] * cos(3.0 * freqs[i]);
        ok = ok && fabs(y[i] - re) < 1e-5 && fabs(y[i + 4] - im) < 1e-5;
    }
    tap_ok(ok, "rotate-half rope rotates pairs (i, i+half)");

    /* relative position: q(m).k(n) depends only on m - n */
    float q[8], k[8], q2[8], k2[8];
    for (int i = 0; i < 8; i++) {
        q[i] = frand();
        k[i] = frand();
    }
    memcpy(q2, q, sizeof(q));
    memcpy(k2, k, sizeof(k));
    mt_cpu_rope_cossin(freqs, 4, 7, c, s);
    mt_cpu_rope_interleaved(q, c, s, 4);
    mt_cpu_rope_cossin(freqs, 4, 2, c, s);
    mt_cpu_rope_interleaved(k, c, s, 4);
    mt_cpu_rope_cossin(freqs, 4, 15, c, s);
    mt_cpu_rope_interleaved(q2, c, s, 4);
    mt_cpu_rope_cossin(freqs, 4, 10, c, s);
    mt_cpu_rope_interleaved(k2, c, s, 4);
    double d1 = 0, d2 = 0;
    for (int i = 0; i < 8; i++) {
        d1 += q[i] * k[i];
        d2 += q2[i] * k2[i];
    }
    tap_ok(fabs(d1 - d2) < 1e-5, "rope scores depend only on relative position");
}

static void
test_act_quant(void)
{
    float x[128];
    uint8_t q[128];
    float s;
    double worst = 0.0;

    for (int i = 0; i < 128; i++) {
        x[i] = frand() * 0.9f;
    }
    x[5] = -1.0f; /* amax 1 -> 1/448 -> ue8m0 2^-8 */
    s = mt_cpu_act_quant(x, 128, true, q);
    tap_ok(s == 0x1.0p-8f, "act_quant ue8m0: amax 1 gives scale 2^-8 (got %a)", (double)s);
    tap_ok(mt_fp8_to_f32(q[5]) == -256.0f, "act_quant: -1 / 2^-8 = -256 is exact in e4m3");
    for (int i = 0; i < 128; i++) {
        double back = mt_fp8_to_f32(q[i]) * s;
        double tol = fabs(x[i]) / 16.0 + 1e-9; /* 3 mantissa bits: half-ulp <= 1/16 relative */
        if (fabs(back - x[i]) > tol) {
            worst = fmax(worst, fabs(back - x[i]));
        }
    }
    tap_ok(worst == 0.0, "act_quant: every value within half an e4m3 ulp");

    s = mt_cpu_act_quant(x, 128, false, q);
    tap_ok(fabsf(s - 1.0f / 448.0f) < 1e-9f, "act_quant without ue8m0: scale amax/448");
    tap_ok(mt_fp8_to_f32(q[5]) == -448.0f, "act_quant without ue8m0: amax maps to -448");

    float z[4] = {0, 0, 0, 0};
    s = mt_cpu_act_quant(z, 4, true, q);
    tap_ok(s == mt_cpu_round_scale_ue8m0(1e-4f / 448.0f) && q[0] == 0,
           "act_quant: amax clamped at 1e-4 (scale %a)", (double)s);
    float small[2] = {5e-5f, -2e-5f}; /* amax below 1e-4: clamped to 1e-4 */
    s = mt_cpu_act_quant(small, 2, false, q);
    tap_ok(s == 1e-4f / 448.0f, "act_quant: amax 5e-5 clamped to 1e-4 (scale %a, want %a)",
           (double)s, (double)(1e-4f / 448.0f));
    tap_ok(mt_cpu_round_scale_ue8m0(0.25f) == 0.25f && mt_cpu_round_scale_ue8m0(0.3f) == 0.5f &&
           mt_cpu_round_scale_ue8m0(0x1.000002p-3f) == 0.25f,
           "ue8m0 rounding: powers of two stay, others round up");
}

static void
test_linear(void)
{
    enum { R = 200, C = 300, T = 3 };
    uint8_t *w8 = malloc(R * C);
    uint16_t *wb = malloc(R * C * 2);
    float *wf = malloc(R * C * sizeof(float));
    float scale[2 * 3];
    float x[T * C], y[T * R], want[T * R];
    struct mt_cpu_weight w = {MT_DTYPE_F8_E4M3, w8, scale, R, C};

    for (int i = 0; i < 6; i++) {
        scale[i] = ldexpf(1.0f, -(i + 2));
    }
    for (int i = 0; i < R * C; i++) {
        w8[i] = mt_f32_to_fp8(frand() * 400.0f);
        wb[i] = mt_f32_to_bf16(frand());
    }
    for (int i = 0; i < T * C; i++) {
        x[i] = frand();
    }
    /* expected: explicit dequantization, double dot products */
    for (int t = 0; t < T; t++) {
        for (int r = 0; r < R; r++) {
            double d = 0.0;
            for (int c = 0; c < C; c++) {
                d += (double)mt_fp8_to_f32(w8[r * C + c]) * scale[(r / 128) * 3 + c / 128] *
                     x[t * C + c];
            }
            want[t * R + r] = (float)d;
        }
    }
    tap_ok(mt_cpu_linear(&w, x, T, y) == MT_OK &&
               mt_test_allclose("fp8 linear", y, want, T * R, 1e-4f, 1e-4f),
           "linear: FP8 with 128x128 block scales (partial blocks) equals explicit dequant");

    for (int t = 0; t < T; t++) {
        for (int r = 0; r < R; r++) {
            double d = 0.0;
            for (int c = 0; c < C; c++) {
                d += (double)mt_bf16_to_f32(wb[r * C + c]) * x[t * C + c];
            }
            want[t * R + r] = (float)d;
        }
    }
    w.dtype = MT_DTYPE_BF16;
    w.data = wb;
    tap_ok(mt_cpu_linear(&w, x, T, y) == MT_OK &&
               mt_test_allclose("bf16 linear", y, want, T * R, 1e-5f, 1e-4f),
           "linear: BF16");
    for (int i = 0; i < R * C; i++) {
        wf[i] = mt_bf16_to_f32(wb[i]);
    }
    w.dtype = MT_DTYPE_F32;
    w.data = wf;
    tap_ok(mt_cpu_linear(&w, x, T, y) == MT_OK &&
               mt_test_allclose("f32 linear", y, want, T * R, 1e-5f, 1e-4f),
           "linear: F32");
    free(w8);
    free(wb);
    free(wf);

    /* a product big enough for the OpenMP path (>= 2^24 multiply-adds), FP8 with partial blocks */
    enum { R2 = 520, C2 = 650, T2 = 50 };
    uint8_t *b8 = malloc((size_t)R2 * C2);
    float *bs = malloc(5 * 6 * sizeof(float));
    float *bx = malloc((size_t)T2 * C2 * sizeof(float));
    float *by = malloc((size_t)T2 * R2 * sizeof(float));
    float *bw = malloc((size_t)T2 * R2 * sizeof(float));
    for (int i = 0; i < 30; i++) {
        bs[i] = ldexpf(1.0f, -(i % 7) - 3);
    }
    for (int i = 0; i < R2 * C2; i++) {
        b8[i] = mt_f32_to_fp8(frand() * 448.0f);
    }
    for (int i = 0; i < T2 * C2; i++) {
        bx[i] = frand();
    }
    for (int t = 0; t < T2; t++) {
        for (int r = 0; r < R2; r++) {
            double d = 0.0;
            for (int c = 0; c < C2; c++) {
                d += (double)mt_fp8_to_f32(b8[r * C2 + c]) * bs[(r / 128) * 6 + c / 128] *
                     bx[t * C2 + c];
            }
            bw[t * R2 + r] = (float)d;
        }
    }
    struct mt_cpu_weight big = {MT_DTYPE_F8_E4M3, b8, bs, R2, C2};
    tap_ok(mt_cpu_linear(&big, bx, T2, by) == MT_OK &&
               mt_test_allclose("parallel fp8 linear", by, bw, T2 * R2, 1e-3f, 1e-4f),
           "linear: the OpenMP path (520 x 650, 50 tokens) equals explicit dequant");
    free(b8);
    free(bs);
    free(bx);
    free(by);
    free(bw);
}

static void
test_norms(void)
{
    float x[16], w[16], b[16], y[16], want[16];
    double ss = 0, mean = 0, var = 0;

    for (int i = 0; i < 16; i++) {
        x[i] = frand() * 3 + 0.5f;
        w[i] = frand();
        b[i] = frand();
        ss += (double)x[i] * x[i];
        mean += x[i];
    }
    mean /= 16;
    for (int i = 0; i < 16; i++) {
        var += (x[i] - mean) * (x[i] - mean);
        want[i] = (float)(x[i] / sqrt(ss / 16 + 1e-6) * w[i]);
    }
    var /= 16;
    mt_cpu_rmsnorm(x, w, 16, 1e-6f, y);
    tap_ok(mt_test_allclose("rmsnorm", y, want, 16, 1e-6f, 1e-5f), "rmsnorm");
    for (int i = 0; i < 16; i++) {
        want[i] = (float)((x[i] - mean) / sqrt(var + 1e-6) * w[i] + b[i]);
    }
    mt_cpu_layernorm(x, w, b, 16, 1e-6f, y);
    tap_ok(mt_test_allclose("layernorm", y, want, 16, 1e-6f, 1e-5f),
           "layernorm with bias (biased variance)");

    float p[4] = {1.0f, -INFINITY, 2.0f, 1.0f};
    mt_cpu_softmax(p, 4);
    double e1 = exp(1.0), e2 = exp(2.0);
    tap_ok(p[1] == 0.0f && fabs(p[2] - e2 / (2 * e1 + e2)) < 1e-6, "softmax with -inf entries");
    float masked[3] = {-INFINITY, -INFINITY, -INFINITY};
    float bad[3] = {NAN, NAN, NAN};
    float one_bad[3] = {1.0f, NAN, 2.0f};
    mt_cpu_softmax(masked, 3);
    mt_cpu_softmax(bad, 3);
    mt_cpu_softmax(one_bad, 3);
    tap_ok(masked[0] == 0.0f && masked[2] == 0.0f && isnan(bad[0]) && isnan(bad[2]) &&
               isnan(one_bad[0]) && isnan(one_bad[2]),
           "softmax: an all -inf row is masked (zeros), a row with a NaN is all NaN");
}

static void
test_topk(void)
{
    float s[8] = {0.5f, 2.0f, 0.5f, -1.0f, 2.0f, 0.0f, NAN, 0.5f};
    int32_t idx[5];
    int32_t idx8[8];

    tap_ok(mt_cpu_topk(s, 8, 5, idx) == MT_OK && idx[0] == 1 && idx[1] == 4 && idx[2] == 0 &&
               idx[3] == 2 && idx[4] == 7,
           "top-k: by decreasing score, ties to the smaller index, NaN last");
    tap_ok(mt_cpu_topk(s, 8, 8, idx8) == MT_OK && idx8[0] == 1 && idx8[1] == 4 && idx8[5] == 5 &&
               idx8[6] == 3 && idx8[7] == 6,
           "top-k: k = n orders them all (the smallest, then NaN, last)");
    mt_log_set_quiet(true);
    tap_ok(mt_cpu_topk(s, 8, 9, idx) == MT_ERR_INVAL, "top-k: k > n is an error");
    mt_log_set_quiet(false);
}

static void
test_index_scores(void)
{
    enum { H = 4, D = 64, S = 5 };
    float q[H * D], k[S * D], w[H], out[S];
    uint8_t q8[H * D], k8[S * D];
    float ks[S], wq[H], out8[S];
    bool ok = true;

    for (int i = 0; i < H * D; i++) {
        q[i] = frand();
    }
    for (int i = 0; i < S * D; i++) {
        k[i] = frand();
    }
    for (int h = 0; h < H; h++) {
        w[h] = frand();
    }
    float sc = 1.0f / sqrtf((float)D);
    mt_cpu_index_scores(q, w, H, D, k, S, sc, out);
    for (int s = 0; s < S; s++) {
        double want = 0.0;
        for (int h = 0; h < H; h++) {
            double d = 0.0;
            for (int j = 0; j < D; j++) {
                d += (double)q[h * D + j] * k[s * D + j];
            }
            want += w[h] * fmax(d * sc, 0.0);
        }
        ok = ok && fabs(out[s] - want) < 1e-5;
    }
    tap_ok(ok, "index scores: sum_h w_h ReLU(q_h.k_s) * scale (ReLU before weighting)");

    /* FP8 path: Hadamard both sides, act_quant, fold q scale into the weights */
    float tmp[D];
    for (int h = 0; h < H; h++) {
        memcpy(tmp, q + h * D, sizeof(tmp));
        mt_cpu_hadamard(tmp, D);
        wq[h] = w[h] * mt_cpu_act_quant(tmp, D, true, q8 + h * D) * sc;
    }
    for (int s = 0; s < S; s++) {
        memcpy(tmp, k + s * D, sizeof(tmp));
        mt_cpu_hadamard(tmp, D);
        ks[s] = mt_cpu_act_quant(tmp, D, true, k8 + s * D);
    }
    mt_cpu_index_scores_fp8(q8, wq, H, D, k8, ks, S, out8);
    double worst = 0.0, mag = 0.0;
    for (int s = 0; s < S; s++) {
        worst = fmax(worst, fabs(out8[s] - out[s]));
        mag = fmax(mag, fabs(out[s]));
    }
    tap_ok(worst < 0.08 * mag + 1e-3,
           "FP8 index scores approximate exact ones (max diff %.3g of %.3g)",
           worst, mag);

    /* FP8 scores by hand: q heads all 1.0 and all -1.0 (e4m3 0x38, 0xb8), keys all 2.0 (0x40):
     * head dots 8 and -8, ReLU keeps 8 of head 0 (weight 0.5): 4, times each key's own scale */
    uint8_t hq[2 * 4], hk[3 * 4];
    const float hw[2] = {0.5f, 2.0f};
    const float hks[3] = {1.0f, 0.25f, 3.0f};
    float hout[3];

    memset(hq, 0x38, 4);
    memset(hq + 4, 0xb8, 4);
    memset(hk, 0x40, sizeof(hk));
    mt_cpu_index_scores_fp8(hq, hw, 2, 4, hk, hks, 3, hout);
    tap_ok(hout[0] == 4.0f && hout[1] == 1.0f && hout[2] == 12.0f,
           "FP8 index scores by hand: 4 x each key's scale (got %g %g %g, want 4 1 12)",
           (double)hout[0], (double)hout[1], (double)hout[2]);
}

static void
test_attention(void)
{
    /* absorbed MQA form vs explicit MHA form with expanded keys/values (spec 2.3) */
    enum { H = 3, NOPE = 8, V = 6, KV = 16, R = 4, S = 7 };
    float wkv[H * (NOPE + V) * KV], qn[H * NOPE], qp[H * R], lat[S * KV], kpe[S * R];
    float qlat[H * KV], olat[H * KV];
    int32_t idx[4] = {0, 2, 5, 6};
    float scale = 0.3f;
    bool ok = true;

    for (size_t i = 0; i < sizeof(wkv) / sizeof(float); i++) {
        wkv[i] = frand();
    }
    for (int i = 0; i < H * NOPE; i++) {
        qn[i] = frand();
    }
    for (int i = 0; i < H * R; i++) {
        qp[i] = frand();
    }
    for (int i = 0; i < S * KV; i++) {
        lat[i] = frand();
    }
    for (int i = 0; i < S * R; i++) {
        kpe[i] = frand();
    }
    for (int h = 0; h < H; h++) {
        for (int c = 0; c < KV; c++) {
            double a = 0;
            for (int d = 0; d < NOPE; d++) {
                a += qn[h * NOPE + d] * wkv[(h * (NOPE + V) + d) * KV + c];
            }
            qlat[h * KV + c] = (float)a;
        }
    }
    mt_status_t st = mt_cpu_mla_absorbed(qlat, qp, H, KV, R, lat, kpe, idx, 4, scale, olat);
    for (int h = 0; h < H; h++) {
        double sc[4], m = -1e300, sum = 0;
        for (int j = 0; j < 4; j++) {
            int s = idx[j];
            double d = 0;
            for (int dd = 0; dd < NOPE; dd++) { /* k_nope = W_UK c */
                double kn = 0;
                for (int c = 0; c < KV; c++) {
                    kn += wkv[(h * (NOPE + V) + dd) * KV + c] * lat[s * KV + c];
                }
                d += qn[h * NOPE + dd] * kn;
            }
            for (int r = 0; r < R; r++) {
                d += qp[h * R + r] * kpe[s * R + r];
            }
            sc[j] = d * scale;
            m = fmax(m, sc[j]);
        }
        for (int j = 0; j < 4; j++) {
            sc[j] = exp(sc[j] - m);
            sum += sc[j];
        }
        for (int vv = 0; vv < V; vv++) {
            double want = 0, got = 0;
            for (int j = 0; j < 4; j++) { /* v = W_UV c */
                double val = 0;
                for (int c = 0; c < KV; c++) {
                    val += wkv[(h * (NOPE + V) + NOPE + vv) * KV + c] * lat[idx[j] * KV + c];
                }
                want += sc[j] / sum * val;
            }
            for (int c = 0; c < KV; c++) {
                got += wkv[(h * (NOPE + V) + NOPE + vv) * KV + c] * olat[h * KV + c];
            }
            ok = ok && fabs(got - want) < 1e-4 * (1 + fabs(want));
        }
    }
    tap_ok(st == MT_OK && ok, "absorbed 576/512-style MLA equals MHA with expanded k/v");
}

static void
test_router(void)
{
    /* 8 experts, 4 groups of 2, keep 2 groups, top-2 */
    struct mt_cpu_router_params p = {.n_experts = 8, .n_group = 4, .topk_group = 2, .k = 2,
                                     .norm_topk_prob = true, .routed_scaling_factor = 2.5f};
    /* sigmoid scores chosen through logits = logit(s) */
    float s[8] = {0.9f, 0.15f, 0.5f, 0.5f, 0.2f, 0.2f, 0.6f, 0.55f};
    float bias[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.5f, 0.5f, 0.0f, 0.0f};
    float logits[8];
    int32_t ids[2];
    float w[2];
    float rwork[64]; /* mt_cpu_router_work_bytes(&p) = 80 bytes */

    tap_ok(mt_cpu_router_work_bytes(&p) <= sizeof(rwork), "router: work size %zu bytes",
           mt_cpu_router_work_bytes(&p));
    for (int i = 0; i < 8; i++) {
        logits[i] = logf(s[i] / (1.0f - s[i]));
    }
    /*
     * biased b: {.9,.15,.5,.5,.7,.7,.6,.55}; group sums: g0 1.05, g1 1.0, g2 1.4, g3 1.15
     * -> keep g2, g3 -> experts 4 (.7), 5 (.7) tie -> 4 then 5; expert 0 (.9) is excluded.
     * weights from unbiased s: .2/.4 * 2.5 = 1.25 each.
     */
    mt_cpu_router(logits, bias, &p, rwork, ids, w);
    tap_ok(ids[0] == 4 && ids[1] == 5, "router: group-limited selection on biased scores "
           "(got %d %d)", ids[0], ids[1]);
    tap_ok(fabsf(w[0] - 1.25f) < 1e-5f && fabsf(w[1] - 1.25f) < 1e-5f,
           "router: weights are unbiased sigmoid, normalized, times 2.5 (%g %g)", (double)w[0],
           (double)w[1]);
    p.norm_topk_prob = false; /* the same choice; weights s x 2.5 = 0.2 x 2.5, not renormalized */
    mt_cpu_router(logits, bias, &p, rwork, ids, w);
    tap_ok(ids[0] == 4 && ids[1] == 5 && fabsf(w[0] - 0.5f) < 1e-5f && fabsf(w[1] - 0.5f) < 1e-5f,
           "router without norm_topk_prob: experts %d %d, weights %g %g (want 0.5: s x 2.5)",
           ids[0], ids[1], (double)w[0], (double)w[1]);
    p.norm_topk_prob = true;
    mt_cpu_router(logits, NULL, &p, rwork, ids, w);
    /* no bias: g0 1.05, g1 1.0, g2 .4, g3 1.15 -> keep g3, g0: experts 0, 6 */
    tap_ok(ids[0] == 0 && ids[1] == 6 && fabsf(w[0] - 0.9f / 1.5f * 2.5f) < 1e-5f,
           "router without bias: experts %d %d, w0 %g", ids[0], ids[1], (double)w[0]);
    for (int i = 0; i < 8; i++) {
        logits[i] = NAN;
    }
    ids[0] = ids[1] = -1;
    mt_cpu_router(logits, bias, &p, rwork, ids, w);
    tap_ok(ids[0] >= 0 && ids[0] < 8 && ids[1] >= 0 && ids[1] < 8 && ids[0] != ids[1],
           "router on NaN logits still returns k distinct valid ids (%d %d)", ids[0], ids[1]);
    /* one expert's biased score NaN (a corrupt bias): the finite best ones are chosen */
    struct mt_cpu_router_params p1 = {.n_experts = 4, .n_group = 1, .topk_group = 1, .k = 2,
                                      .norm_topk_prob = false, .routed_scaling_factor = 1.0f};
    float l1[4] = {0.0f, 2.0f, 0.5f, 1.0f}; /* sigmoid increasing with the logit: 1, 3, 2, 0 */
    float b1[4] = {NAN, 0.0f, 0.0f, 0.0f};
    mt_cpu_router(l1, b1, &p1, rwork, ids, w);
    tap_ok(ids[0] == 1 && ids[1] == 3, "router: a NaN biased score is passed over for finite "
           "ones (got %d %d, want 1 3)", ids[0], ids[1]);
}

static void
test_swiglu(void)
{
    enum { Dm = 5, I = 3 };
    float g[I * Dm], u[I * Dm], d[Dm * I], x[Dm], y[Dm];
    struct mt_cpu_weight wg = {MT_DTYPE_F32, g, NULL, I, Dm};
    struct mt_cpu_weight wu = {MT_DTYPE_F32, u, NULL, I, Dm};
    struct mt_cpu_weight wd = {MT_DTYPE_F32, d, NULL, Dm, I};
    double hmid[I];
    bool ok = true;

    for (int i = 0; i < I * Dm; i++) {
        g[i] = frand();
        u[i] = frand();
        d[i] = frand();
    }
    for (int i = 0; i < Dm; i++) {
        x[i] = frand();
    }
    for (int i = 0; i < I; i++) {
        double a = 0, b = 0;
        for (int j = 0; j < Dm; j++) {
            a += g[i * Dm + j] * x[j];
            b += u[i * Dm + j] * x[j];
        }
        hmid[i] = a / (1 + exp(-a)) * b;
    }
    mt_cpu_swiglu(&wg, &wu, &wd, x, 1, y);
    for (int j = 0; j < Dm; j++) {
        double want = 0;
        for (int i = 0; i < I; i++) {
            want += d[j * I + i] * hmid[i];
        }
        ok = ok && fabs(y[j] - want) < 1e-5;
    }
    tap_ok(ok, "SwiGLU: down(silu(gate x) * up x)");
}

/*
 * The number formats of convert.h against their definitions (e4m3fn: bias 7, 3 mantissa bits,
 * subnormals m/8 x 2^-6, 0x7F/0xFF NaN, no inf; IEEE binary16; bf16 = the top half of fp32),
 * not against another conversion: hand-worked values; every finite code one step (the format's
 * spacing in its binade) above the one before; round trips of every code; ties to even at every
 * midpoint between neighbours (the code with an even mantissa), saturation and NaN.
 */
static float
fp8_step(int c) /* e4m3 code c + 1 - code c (0..125): 2^-9 in the subnormals and binade 1 */
{
    return ldexpf(1.0f, (c >> 3 > 1 ? c >> 3 : 1) - 10);
}

static float
f16_step(int h) /* binary16 code h + 1 - code h (0..0x7bfe) */
{
    return ldexpf(1.0f, (h >> 10 > 1 ? h >> 10 : 1) - 25);
}

static bool
same_float(float a, float b) /* equal bits for non-NaN: -0 differs from +0 */
{
    return a == b && signbit(a) == signbit(b);
}

static void
test_convert_fp8(void)
{
    static const struct {
        uint8_t code;
        float value;
    } known[] = {
        {0x00, 0.0f}, {0x80, -0.0f}, {0x01, 0x1p-9f}, {0x81, -0x1p-9f}, {0x07, 7 * 0x1p-9f},
        {0x08, 0x1p-6f}, {0x0f, 1.875f * 0x1p-6f}, {0x30, 0.5f}, {0x38, 1.0f}, {0x39, 1.125f},
        {0x3c, 1.5f}, {0x40, 2.0f}, {0x77, 240.0f}, {0x78, 256.0f}, {0x7e, 448.0f},
        {0xb8, -1.0f}, {0xfe, -448.0f},
    };
    int bad = -1;
    float dec[256];

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]) && bad < 0; i++) {
        bad = same_float(mt_fp8_to_f32(known[i].code), known[i].value) ? -1 : (int)i;
    }
    tap_ok(bad < 0, "e4m3 decode of hand-worked codes (0, -0, subnormals, 1, 1.5, 448, -448)%s",
           bad < 0 ? "" : " FAILED");
    bad = -1;
    for (int c = 1; c < 127 && bad < 0; c++) {
        float v = mt_fp8_to_f32((mt_fp8_t)c);

        if (!(v - mt_fp8_to_f32((mt_fp8_t)(c - 1)) == fp8_step(c - 1)) ||
            !same_float(mt_fp8_to_f32((mt_fp8_t)(c | 0x80)), -v)) {
            bad = c;
        }
    }
    tap_ok(bad < 0 && isnan(mt_fp8_to_f32(0x7f)) && isnan(mt_fp8_to_f32(0xff)),
           "e4m3 decode: each code one e4m3 step above the one before, negatives mirror "
           "positives, 0x7f and 0xff NaN (first bad code %d)", bad);
    mt_fp8_to_f32_n((const mt_fp8_t *)"\x00\x38\xfe\x7f", dec, 4);
    tap_ok(same_float(dec[0], 0.0f) && dec[1] == 1.0f && dec[2] == -448.0f && isnan(dec[3]),
           "e4m3 bulk decode");

    bad = -1;
    for (int c = 0; c < 256 && bad < 0; c++) {
        if ((c & 0x7f) != 0x7f && mt_f32_to_fp8(mt_fp8_to_f32((mt_fp8_t)c)) != c) {
            bad = c;
        }
    }
    tap_ok(bad < 0, "e4m3 encode gives back every finite code, -0 included (first bad %d)", bad);
    /* the midpoint of codes c and c + 1 goes to the one with an even mantissa; a float either
     * side of it to the nearer code */
    bad = -1;
    for (int c = 0; c < 126 && bad < 0; c++) {
        float lo = mt_fp8_to_f32((mt_fp8_t)c);
        float mid = lo + fp8_step(c) / 2;
        int even = c % 2 == 0 ? c : c + 1;

        if (mt_f32_to_fp8(mid) != even || mt_f32_to_fp8(-mid) != (even | 0x80) ||
            mt_f32_to_fp8(nextafterf(mid, 0.0f)) != c ||
            mt_f32_to_fp8(nextafterf(mid, INFINITY)) != c + 1) {
            bad = c;
        }
    }
    tap_ok(bad < 0, "e4m3 encode rounds to nearest, ties to even, subnormals included (first "
           "bad midpoint above code %d)", bad);
    tap_ok(mt_f32_to_fp8(448.0f) == 0x7e && mt_f32_to_fp8(464.0f) == 0x7e &&
               mt_f32_to_fp8(1e30f) == 0x7e && mt_f32_to_fp8(INFINITY) == 0x7e &&
               mt_f32_to_fp8(-500.0f) == 0xfe && mt_f32_to_fp8(-INFINITY) == 0xfe,
           "e4m3 encode saturates to +-448 (0x7e, 0xfe), infinities too");
    tap_ok(mt_f32_to_fp8(NAN) == 0x7f && mt_f32_to_fp8(0x1p-11f) == 0x00 &&
               mt_f32_to_fp8(-1e-30f) == 0x80,
           "e4m3 encode: NaN to 0x7f; below half the smallest subnormal to a signed zero");
}

static void
test_convert_f16(void)
{
    static const struct {
        uint16_t code;
        float value;
    } known[] = {
        {0x0000, 0.0f}, {0x8000, -0.0f}, {0x0001, 0x1p-24f}, {0x03ff, 1023 * 0x1p-24f},
        {0x0400, 0x1p-14f}, {0x3c00, 1.0f}, {0x3e00, 1.5f}, {0xc000, -2.0f},
        {0x7bff, 65504.0f}, {0x7c00, INFINITY}, {0xfc00, -INFINITY},
    };
    int bad = -1;
    float dec[3];

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]) && bad < 0; i++) {
        bad = same_float(mt_f16_to_f32(known[i].code), known[i].value) ? -1 : (int)i;
    }
    tap_ok(bad < 0 && isnan(mt_f16_to_f32(0x7e00)) && isnan(mt_f16_to_f32(0x7c01)) &&
               isnan(mt_f16_to_f32(0xfc01)),
           "binary16 decode of hand-worked codes, infinities and NaNs (first bad %d)", bad);
    bad = -1;
    for (int h = 1; h <= 0x7bff && bad < 0; h++) {
        float v = mt_f16_to_f32((mt_f16_t)h);

        if (!(v - mt_f16_to_f32((mt_f16_t)(h - 1)) == f16_step(h - 1)) ||
            !same_float(mt_f16_to_f32((mt_f16_t)(h | 0x8000)), -v)) {
            bad = h;
        }
    }
    tap_ok(bad < 0, "binary16 decode: each code one step above the one before, negatives mirror "
           "positives (first bad code %d)", bad);
    mt_f16_to_f32_n((const mt_f16_t[]){0x3c00, 0x8001, 0x7c00}, dec, 3);
    tap_ok(dec[0] == 1.0f && dec[1] == -0x1p-24f && dec[2] == INFINITY, "binary16 bulk decode");

    bad = -1;
    for (int h = 0; h < 0x10000 && bad < 0; h++) {
        if ((h & 0x7fff) <= 0x7c00 && mt_f32_to_f16(mt_f16_to_f32((mt_f16_t)h)) != h) {
            bad = h;
        }
    }
    tap_ok(bad < 0, "binary16 encode gives back every non-NaN code (first bad %d)",
           bad);
    bad = -1;
    for (int h = 0; h < 0x7bff && bad < 0; h++) {
        float lo = mt_f16_to_f32((mt_f16_t)h);
        float mid = lo + f16_step(h) / 2;
        int even = h % 2 == 0 ? h : h + 1;

        if (mt_f32_to_f16(mid) != even || mt_f32_to_f16(-mid) != (even | 0x8000) ||
            mt_f32_to_f16(nextafterf(mid, 0.0f)) != h ||
            mt_f32_to_f16(nextafterf(mid, INFINITY)) != h + 1) {
            bad = h;
        }
    }
    tap_ok(bad < 0, "binary16 encode rounds to nearest, ties to even, subnormals included (first "
           "bad midpoint above code %d)", bad);
    /* 65520 is the midpoint of 65504 (odd mantissa) and 2^16: it rounds to inf */
    tap_ok(mt_f32_to_f16(65520.0f) == 0x7c00 && mt_f32_to_f16(nextafterf(65520.0f, 0)) == 0x7bff &&
               mt_f32_to_f16(1e30f) == 0x7c00 && mt_f32_to_f16(-INFINITY) == 0xfc00 &&
               isnan(mt_f16_to_f32(mt_f32_to_f16(NAN))),
           "binary16 encode: overflow to inf from 65520, NaN stays NaN");
}

static void
test_convert_bf16(void)
{
    float dec[2];

    tap_ok(mt_f32_to_bf16(1.0f) == 0x3f80 && mt_f32_to_bf16(-2.0f) == 0xc000 &&
               mt_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80 &&
               mt_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82 &&
               mt_f32_to_bf16(nextafterf(1.0f + 0x1p-8f, 2.0f)) == 0x3f81 &&
               mt_f32_to_bf16(-0.0f) == 0x8000 && mt_f32_to_bf16(INFINITY) == 0x7f80 &&
               mt_f32_to_bf16(0x1.fffffep127f) == 0x7f80 && isnan(mt_bf16_to_f32(
                   mt_f32_to_bf16(NAN))) && mt_bf16_to_f32(0x3fc0) == 1.5f &&
               mt_bf16_to_f32(0x0001) == 0x1p-133f,
           "bf16: round to nearest even, the largest float to inf, NaN stays NaN; decode");
    mt_bf16_to_f32_n((const mt_bf16_t[]){0x3f80, 0xff80}, dec, 2);
    tap_ok(dec[0] == 1.0f && dec[1] == -INFINITY, "bf16 bulk decode");
}

/*
 * A block-scaled FP8 weight of 130 x 260 (scale blocks of 128: 2 x 3, the last ones cut short)
 * dequantized as out[i, j] = W[i, j] x S[i / 128, j / 128], with each block's scale a distinct
 * power of two so that a wrong block shows.
 */
static void
test_fp8_dequant(void)
{
    enum { R = 130, C = 260 };
    static mt_fp8_t w[R * C];
    static float out[R * C];
    float s[2 * 3];
    int bad = -1;

    for (int b = 0; b < 6; b++) {
        s[b] = ldexpf(1.0f, b - 2);
    }
    for (int i = 0; i < R * C; i++) {
        w[i] = (mt_fp8_t)(0x30 + i % 15); /* 0.5 .. 1.75: finite, non-zero */
    }
    mt_fp8_dequant_block(w, s, R, C, out);
    for (int i = 0; i < R && bad < 0; i++) {
        for (int j = 0; j < C && bad < 0; j++) {
            int blk = (i >= 128 ? 3 : 0) + (j >= 256 ? 2 : j >= 128 ? 1 : 0);

            if (out[i * C + j] != mt_fp8_to_f32(w[i * C + j]) * s[blk]) {
                bad = i * C + j;
            }
        }
    }
    tap_ok(bad < 0, "fp8 dequant 130x260: every element times its 128x128 block's scale (first "
           "bad %d)", bad);
}

/* Block scales are checked: finite, not negative, 448 x scale finite; the bad one is named. */
static void
test_fp8_scales_check(void)
{
    const float big_ok = 3.0e38f / 448.0f;
    const float over = nextafterf(FLT_MAX / 448.0f, INFINITY);
    float ok[] = {0.0f, 1.0f, 1e-30f, big_ok};
    static const float bad_vals[] = {-1e-30f, -1.0f, NAN, INFINITY, 0.0f};
    bool all = true;

    mt_log_set_quiet(true);
    all = mt_fp8_scales_check(ok, 4, "w") == MT_OK;
    for (size_t i = 0; i < sizeof(bad_vals) / sizeof(bad_vals[0]); i++) {
        float s[5] = {1.0f, 0.5f, 2.0f, 1.0f, bad_vals[i]};

        s[4] = i == 4 ? over : s[4]; /* 448 x it overflows */
        all = all && mt_fp8_scales_check(s, 5, "blk.w") == MT_ERR_FORMAT &&
              strstr(mt_last_error(), "'blk.w': block scale 4 ") != NULL;
    }
    mt_log_set_quiet(false);
    tap_ok(all, "fp8 block scales: 0 .. 3e38/448 pass; negative, NaN, inf and 448 x s overflow "
           "are MT_ERR_FORMAT naming the tensor and the block, the last one included");
}

int
main(void)
{
    mt_rng_init(&rng, 0x1234567887654321ull);
    tap_plan(0);
    test_hadamard();
    test_yarn();
    test_rope();
    test_act_quant();
    test_linear();
    test_norms();
    test_topk();
    test_index_scores();
    test_attention();
    test_router();
    test_swiglu();
    test_convert_fp8();
    test_convert_f16();
    test_convert_bf16();
    test_fp8_dequant();
    test_fp8_scales_check();
    return tap_done();
}
