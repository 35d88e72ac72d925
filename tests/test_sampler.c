/* SPDX-License-Identifier: MIT */
/*
 * test_sampler.c - greedy, temperature, top-k, top-p and seeding of runtime/sampler.
 *
 * The sampler sorts only the head of the candidates and argmax runs lane-wise; both are checked
 * against the plain code they replaced (a scalar loop, a full sort), copied here as references,
 * on random logits with NaN, +-inf, signed zeros and ties.
 */
#include <config.h>

#include "runtime/text/sampler.h"
#include "runtime/base/rng.h"
#include "tests/sampler_ref.h"
#include "tests/tap.h"

#include <math.h>
#include <stdlib.h>

/* ---- random logits ------------------------------------------------------------------------ */

enum shape {
    SHAPE_PEAKED,   /* ~300 tokens carry most of the mass: top-p 0.95 may need more than 256 */
    SHAPE_WIDE,     /* spread: the nucleus is a sixth of the vocabulary, found in rounds */
    SHAPE_FLAT,     /* near-flat: the nucleus is most of the vocabulary */
    SHAPE_TIED,     /* a few distinct values, signed zeros among them: ties everywhere */
    SHAPE_SPECIAL,  /* peaked, with NaN, -inf and sometimes a few +inf */
    SHAPE_MANY_INF, /* a fifth of the logits +inf: more than the first head holds */
    SHAPE_COUNT
};

static const char *const shape_name[SHAPE_COUNT] = {"peaked", "wide",    "near-flat",
                                                    "tied",   "NaN/inf", "many +inf"};

static float
rnd(struct mt_rng *g)
{
    return (float)mt_rng_uniform(g);
}

static void
fill_logits(struct mt_rng *g, float *x, int n, enum shape shape)
{
    double boost = n > 300 ? 300.0 / n : 0.3;
    bool with_inf = mt_rng_below(g, 4) == 0;

    for (int i = 0; i < n; i++) {
        float peaked = 2.0f * (rnd(g) + rnd(g) + rnd(g) - 1.5f);
        if (mt_rng_uniform(g) < boost) {
            peaked += 10.0f + 4.0f * rnd(g);
        }
        switch (shape) {
        case SHAPE_PEAKED:
            x[i] = peaked;
            break;
        case SHAPE_WIDE:
            x[i] = 6.0f * (rnd(g) + rnd(g) + rnd(g) - 1.5f); /* sd 3 */
            break;
        case SHAPE_FLAT:
            x[i] = 0.01f * rnd(g);
            break;
        case SHAPE_TIED:
            x[i] = 0.5f * (float)mt_rng_below(g, 6) - 1.0f;
            if (x[i] == 0.0f && mt_rng_below(g, 2) == 0) {
                x[i] = -0.0f;
            }
            break;
        case SHAPE_SPECIAL: {
            uint64_t r = mt_rng_below(g, 100);
            x[i] = r < 3 ? NAN : r < 6 ? -INFINITY : peaked;
            if (with_inf && mt_rng_below(g, (uint64_t)n) < 3) {
                x[i] = INFINITY;
            }
            break;
        }
        case SHAPE_MANY_INF:
            x[i] = mt_rng_below(g, 5) == 0 ? INFINITY : mt_rng_below(g, 20) == 0 ? NAN : peaked;
            break;
        default:
            x[i] = 0.0f;
        }
    }
}

/*
 * Random vectors for argmax: repeated values (few levels) or spread ones, all below zero or not,
 * with a random subset of NaN, +inf, -inf, -0.0 and +0.0 at a random density, so that the
 * maximum is often a zero of either sign, or a value whose lane also holds NaN; a few are all NaN.
 */
static void
fill_argmax(struct mt_rng *g, float *x, int n)
{
    static const float special[] = {NAN, INFINITY, -INFINITY, -0.0f, 0.0f};
    uint64_t pick = mt_rng_below(g, 32);    /* bit s: special[s] may appear */
    uint64_t density = mt_rng_below(g, 65); /* in 64ths */
    uint64_t levels = 1 + mt_rng_below(g, 4096);
    bool negative = mt_rng_below(g, 2) == 0;

    for (int i = 0; i < n; i++) {
        uint64_t k = mt_rng_below(g, 5);
        double v = 0.25 * (double)mt_rng_below(g, levels);
        if (mt_rng_below(g, 64) < density && (pick >> k & 1) != 0) {
            x[i] = special[k];
        } else {
            x[i] = negative ? (float)(-0.25 - v) : (float)(v - 0.125 * (double)levels);
        }
    }
    if (mt_rng_below(g, 16) == 0) {
        for (int i = 0; i < n; i++) {
            x[i] = NAN;
        }
    }
}

/* argmax equals the scalar loop on `count` random vectors of length up to max_n. */
static void
check_argmax(struct mt_rng *g, float *x, int max_n, int fixed_n, int count, const char *what)
{
    int bad = 0;

    for (int t = 0; t < count; t++) {
        int n = fixed_n > 0 ? fixed_n : (int)mt_rng_below(g, (uint64_t)max_n + 1);
        fill_argmax(g, x, n);
        int32_t got = mt_sampler_argmax(x, n);
        int32_t want = ref_argmax(x, n);
        if (got != want && bad++ == 0) {
            tap_diag("vector %d of length %d: argmax %d, reference %d", t, n, got, want);
        }
    }
    tap_ok(bad == 0, "argmax matches the scalar loop on %d random %s vectors (%d differ)", count,
           what, bad);
}

/*
 * `count` samplers with random options, each drawing `draws` tokens from fresh random logits of
 * `shape`, against the full-sort reference with the same seed: the same token every time.
 */
static void
check_sample(struct mt_rng *g, float *x, struct ref_cand *c, double *p, int vocab, int count,
             int draws, enum shape shape)
{
    static const int top_ks[] = {0, 0, 0, 1, 40, 256, 257, 300, 1000};
    static const float top_ps[] = {1.0f, 0.95f, 0.95f, 0.5f, 0.999f, 1e-6f};
    static const float temps[] = {1.0f, 1.0f, 0.6f, 1.7f, 0.0f};
    int bad = 0;
    int compared = 0;

    for (int t = 0; t < count; t++) {
        int v = vocab > 0 ? vocab : 1 + (int)mt_rng_below(g, 4000);
        struct mt_sampler_opts o;
        mt_sampler_opts_default(&o);
        o.seed = mt_rng_next(g);
        o.top_k = top_ks[mt_rng_below(g, sizeof(top_ks) / sizeof(top_ks[0]))];
        o.top_p = top_ps[mt_rng_below(g, sizeof(top_ps) / sizeof(top_ps[0]))];
        o.temperature = temps[mt_rng_below(g, sizeof(temps) / sizeof(temps[0]))];
        if (mt_rng_below(g, 8) == 0) {
            o.top_k = v - 1 + (int)mt_rng_below(g, 3); /* around the vocabulary's size */
        }
        struct mt_sampler *s = NULL;
        struct mt_rng ref_rng;
        if (mt_sampler_create(&o, v, &s) != MT_OK) {
            bad++;
            tap_diag("cannot create a sampler of vocabulary %d", v);
            continue;
        }
        mt_rng_init(&ref_rng, o.seed);
        for (int d = 0; d < draws; d++) {
            fill_logits(g, x, v, shape);
            int kept;
            int32_t want = ref_sample(&o, &ref_rng, x, v, c, p, &kept);
            int32_t got = -1;
            mt_status_t st = mt_sampler_sample(s, x, &got);
            bool same = want < 0 ? st == MT_ERR_INVAL : st == MT_OK && got == want;
            compared++;
            if (!same && bad++ == 0) {
                tap_diag("vocabulary %d, T %g, top-k %d, top-p %g, draw %d: token %d, reference %d",
                         v, (double)o.temperature, o.top_k, (double)o.top_p, d, got, want);
            }
        }
        mt_sampler_destroy(s);
    }
    tap_ok(bad == 0, "%s logits, vocabulary %s: %d draws equal the full sort's (%d differ)",
           shape_name[shape], vocab > 0 ? "129280" : "1..4000", compared, bad);
}

int
main(void)
{
    struct mt_sampler_opts o;
    struct mt_sampler *s = NULL;
    float logits[6] = {0.5f, 3.0f, 1.0f, 3.0f, NAN, -2.0f};
    int32_t t = -1;

    tap_plan(0);

    mt_sampler_opts_default(&o);
    bool made = mt_sampler_create(&o, 6, &s) == MT_OK && mt_sampler_sample(s, logits, &t) == MT_OK;
    tap_ok(made && t == 1, "greedy picks the argmax, smaller id on ties, NaN ignored (got %d)", t);
    mt_sampler_destroy(s);

    /* the documented defaults; is_greedy exactly at temperature 0 (1e-30 samples) */
    struct mt_sampler_opts d = {.temperature = 2.0f, .top_p = 0.5f, .top_k = 9, .seed = 99};
    mt_sampler_opts_default(&d);
    tap_ok(d.temperature == 0.0f && d.top_p == 1.0f && d.top_k == 0 && d.seed == 0,
           "defaults: temperature 0, top-p 1, top-k 0, seed 0");
    struct mt_sampler *g0 = NULL, *g1 = NULL;
    made = mt_sampler_create(&d, 6, &g0) == MT_OK;
    d.temperature = 1e-30f;
    made = made && mt_sampler_create(&d, 6, &g1) == MT_OK;
    tap_ok(made && mt_sampler_is_greedy(g0) && !mt_sampler_is_greedy(g1),
           "is_greedy: temperature 0 yes, 1e-30 no");
    mt_sampler_destroy(g0);
    mt_sampler_destroy(g1);

    /* top-k 1 and tiny top-p are greedy at any temperature */
    o.temperature = 5.0f;
    o.top_k = 1;
    bool ok = mt_sampler_create(&o, 6, &s) == MT_OK;
    for (int i = 0; i < 50 && ok; i++) {
        ok = mt_sampler_sample(s, logits, &t) == MT_OK && t == 1;
    }
    mt_sampler_destroy(s);
    tap_ok(ok, "top-k 1 is greedy at temperature 5");
    o.top_k = 0;
    o.top_p = 1e-6f;
    ok = mt_sampler_create(&o, 6, &s) == MT_OK;
    for (int i = 0; i < 50 && ok; i++) {
        ok = mt_sampler_sample(s, logits, &t) == MT_OK && t == 1;
    }
    mt_sampler_destroy(s);
    tap_ok(ok, "top-p 1e-6 is greedy");

    /* frequencies follow softmax(logits / T) (fixed seed: deterministic) */
    float lg[3] = {0.0f, 1.0f, 2.0f};
    int cnt[3] = {0, 0, 0};
    int n = 20000;
    o.temperature = 1.0f;
    o.top_p = 1.0f;
    o.seed = 42;
    ok = mt_sampler_create(&o, 3, &s) == MT_OK;
    for (int i = 0; i < n && ok; i++) {
        ok = mt_sampler_sample(s, lg, &t) == MT_OK;
        cnt[t]++;
    }
    mt_sampler_destroy(s);
    double z = 1 + exp(1) + exp(2);
    double worst = 0;
    for (int i = 0; i < 3; i++) {
        worst = fmax(worst, fabs(cnt[i] / (double)n - exp(i) / z));
    }
    tap_ok(ok && worst < 0.015, "temperature 1 frequencies match softmax (max dev %.4f)", worst);

    /* top-p 0.7 over p = {.09, .245, .665}: keeps tokens 2 and 1 only */
    cnt[0] = cnt[1] = cnt[2] = 0;
    o.top_p = 0.7f;
    ok = mt_sampler_create(&o, 3, &s) == MT_OK;
    for (int i = 0; i < 5000 && ok; i++) {
        ok = mt_sampler_sample(s, lg, &t) == MT_OK;
        cnt[t]++;
    }
    mt_sampler_destroy(s);
    tap_ok(ok && cnt[0] == 0 && cnt[1] > 0 && cnt[2] > cnt[1],
           "top-p 0.7 drops the tail (counts %d %d %d)", cnt[0], cnt[1], cnt[2]);

    /* the cut's edge: four equal logits at top-p 0.5 are 0.25 each, so the mass reaches p
     * exactly after two (acc >= p, not >) and ties rank by id: ids 0 and 1 only, both drawn */
    float even[4] = {1.5f, 1.5f, 1.5f, 1.5f};
    int cnt_even[4] = {0, 0, 0, 0};
    o.top_p = 0.5f;
    ok = mt_sampler_create(&o, 4, &s) == MT_OK;
    for (int i = 0; i < 400 && ok; i++) {
        ok = mt_sampler_sample(s, even, &t) == MT_OK && t >= 0 && t < 4;
        cnt_even[ok ? t : 0]++;
    }
    mt_sampler_destroy(s);
    tap_ok(ok && cnt_even[0] > 100 && cnt_even[1] > 100 && cnt_even[2] == 0 && cnt_even[3] == 0,
           "top-p 0.5 over 4 tied logits keeps exactly ids 0 and 1 (counts %d %d %d %d)",
           cnt_even[0], cnt_even[1], cnt_even[2], cnt_even[3]);

    /*
     * The radix sort (a head past 4,096) ties -0.0 with +0.0 by id too: 8,192 zeros of
     * alternating sign at top-p 0.75 keep exactly ids 0..6143. Ranked by raw bits, every +0.0
     * would come first and odd ids up to 8191 would be drawn.
     */
    enum { ZEROS = 8192 };
    float *zs = malloc(ZEROS * sizeof(*zs));
    int low = 0, high = 0, past = 0;
    for (int i = 0; zs != NULL && i < ZEROS; i++) {
        zs[i] = i % 2 == 0 ? -0.0f : 0.0f;
    }
    o.top_p = 0.75f;
    ok = zs != NULL && mt_sampler_create(&o, ZEROS, &s) == MT_OK;
    for (int i = 0; i < 200 && ok; i++) {
        ok = mt_sampler_sample(s, zs, &t) == MT_OK && t >= 0 && t < ZEROS;
        past += ok && t >= 6144;
        low += ok && t < 3072;
        high += ok && t >= 3072 && t < 6144;
    }
    mt_sampler_destroy(s);
    free(zs);
    tap_ok(ok && past == 0 && low > 50 && high > 50,
           "radix sort: signed zeros tie by id, top-p 0.75 keeps ids 0..6143 (%d below 3072, "
           "%d above, %d past 6143)",
           low, high, past);

    /* same seed, same sequence; other seed, other sequence */
    int32_t a[64], b[64], c[64];
    float flat[50];
    for (int i = 0; i < 50; i++) {
        flat[i] = 0.0f;
    }
    o.top_p = 1.0f;
    o.seed = 7;
    struct mt_sampler *s1, *s2, *s3;
    mt_sampler_create(&o, 50, &s1);
    mt_sampler_create(&o, 50, &s2);
    o.seed = 8;
    mt_sampler_create(&o, 50, &s3);
    bool same = true, differ = false;
    for (int i = 0; i < 64; i++) {
        mt_sampler_sample(s1, flat, &a[i]);
        mt_sampler_sample(s2, flat, &b[i]);
        mt_sampler_sample(s3, flat, &c[i]);
        same = same && a[i] == b[i];
        differ = differ || a[i] != c[i];
    }
    mt_sampler_destroy(s1);
    mt_sampler_destroy(s2);
    mt_sampler_destroy(s3);
    tap_ok(same && differ, "a seed reproduces its sequence; another seed differs");

    /*
     * +inf logits take all the probability, shared among them: softmax would compute
     * inf - inf = NaN and used to fall through to the least likely candidate (id 0 here).
     */
    float inf_lg[4] = {-1.0f, INFINITY, 2.0f, INFINITY};
    cnt[0] = cnt[1] = cnt[2] = 0;
    int cnt3 = 0;
    o.temperature = 1.0f;
    o.top_p = 1.0f;
    ok = mt_sampler_create(&o, 4, &s) == MT_OK;
    for (int i = 0; i < 2000 && ok; i++) {
        t = -1;
        ok = mt_sampler_sample(s, inf_lg, &t) == MT_OK && t >= 0 && t < 4;
        if (ok) {
            cnt3 += t == 3;
            cnt[t < 3 ? t : 0] += t < 3;
        }
    }
    mt_sampler_destroy(s);
    tap_ok(ok && cnt[0] == 0 && cnt[2] == 0 && cnt[1] > 800 && cnt3 > 800,
           "+inf logits share all the probability (counts %d %d %d %d)", cnt[0], cnt[1], cnt[2],
           cnt3);

    /* NaN logits are never drawn; one finite logit among NaNs is always drawn */
    float nan_lg[3] = {NAN, -5.0f, NAN};
    ok = mt_sampler_create(&o, 3, &s) == MT_OK;
    for (int i = 0; i < 100 && ok; i++) {
        ok = mt_sampler_sample(s, nan_lg, &t) == MT_OK && t == 1;
    }
    mt_sampler_destroy(s);
    tap_ok(ok, "a finite logit among NaNs is the one drawn");

    /* tiny and huge temperatures: greedy-like and uniform-like, never out of range */
    o.temperature = 1e-30f;
    ok = mt_sampler_create(&o, 3, &s) == MT_OK;
    for (int i = 0; i < 100 && ok; i++) {
        ok = mt_sampler_sample(s, lg, &t) == MT_OK && t == 2;
    }
    mt_sampler_destroy(s);
    tap_ok(ok, "temperature 1e-30 always takes the argmax");
    o.temperature = 1e30f;
    cnt[0] = cnt[1] = cnt[2] = 0;
    ok = mt_sampler_create(&o, 3, &s) == MT_OK;
    for (int i = 0; i < 3000 && ok; i++) {
        t = -1;
        ok = mt_sampler_sample(s, lg, &t) == MT_OK && t >= 0 && t < 3;
        cnt[ok ? t : 0]++;
    }
    mt_sampler_destroy(s);
    tap_ok(ok && cnt[0] > 800 && cnt[1] > 800 && cnt[2] > 800,
           "temperature 1e30 is close to uniform (counts %d %d %d)", cnt[0], cnt[1], cnt[2]);

    mt_log_set_quiet(true);
    o.temperature = 1.0f;
    o.top_p = 1.0f;
    float no_lg[2] = {NAN, -INFINITY};
    ok = mt_sampler_create(&o, 2, &s) == MT_OK;
    tap_ok(ok && mt_sampler_sample(s, no_lg, &t) == MT_ERR_INVAL,
           "sampling with no finite logit is an error");
    mt_sampler_destroy(s);
    o.temperature = -1.0f;
    tap_ok(mt_sampler_create(&o, 50, &s) == MT_ERR_INVAL, "negative temperature is rejected");
    o.temperature = 1.0f;
    o.top_p = 1.5f;
    tap_ok(mt_sampler_create(&o, 50, &s) == MT_ERR_INVAL, "top-p > 1 is rejected");
    o.top_p = 0.0f;
    tap_ok(mt_sampler_create(&o, 50, &s) == MT_ERR_INVAL, "top-p 0 is rejected");
    o.top_p = 1.0f;
    o.temperature = NAN;
    tap_ok(mt_sampler_create(&o, 50, &s) == MT_ERR_INVAL, "a NaN temperature is rejected");
    o.temperature = 1.0f;
    tap_ok(mt_sampler_create(&o, 0, &s) == MT_ERR_INVAL, "a vocabulary of 0 tokens is rejected");
    /* greedy with every logit NaN has no token to give: an error, not id -1 */
    o.temperature = 0.0f;
    float all_nan_lg[3] = {NAN, NAN, NAN};
    t = 7;
    ok = mt_sampler_create(&o, 3, &s) == MT_OK;
    tap_ok(ok && mt_sampler_sample(s, all_nan_lg, &t) == MT_ERR_INVAL && t == 7,
           "greedy over all-NaN logits is MT_ERR_INVAL and leaves the token alone");
    mt_sampler_destroy(s);
    mt_log_set_quiet(false);

    /* the fast paths against the references */
    enum { BIG = 129280 };
    float *x = malloc(BIG * sizeof(*x));
    struct ref_cand *rc = malloc(BIG * sizeof(*rc));
    double *rp = malloc(BIG * sizeof(*rp));
    if (x == NULL || rc == NULL || rp == NULL) {
        tap_bail_out("cannot allocate the random logits");
    }
    struct mt_rng g;
    mt_rng_init(&g, 2026);

    float zeros[4] = {-0.0f, 0.0f, 0.0f, -0.0f};
    tap_ok(mt_sampler_argmax(zeros, 4) == 0 && mt_sampler_argmax(zeros + 1, 3) == 0,
           "argmax: -0.0 and +0.0 tie, the first wins");
    float ends[3] = {NAN, -INFINITY, NAN};
    float all_nan[17] = {NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN,
                         NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    tap_ok(mt_sampler_argmax(ends, 3) == 1 && mt_sampler_argmax(all_nan, 17) == -1 &&
               mt_sampler_argmax(all_nan, 0) == -1,
           "argmax: -inf beats NaN; all NaN (or nothing) is -1");
    check_argmax(&g, x, 100, 0, 20000, "short");
    check_argmax(&g, x, 5000, 0, 2000, "medium");
    check_argmax(&g, x, BIG, BIG, 40, "129280-long");

    for (int shape = 0; shape < SHAPE_COUNT; shape++) {
        check_sample(&g, x, rc, rp, 0, 300, 3, (enum shape)shape);
    }
    for (int shape = 0; shape < SHAPE_COUNT; shape++) {
        check_sample(&g, x, rc, rp, BIG, 8, 3, (enum shape)shape);
    }
    free(x);
    free(rc);
    free(rp);
    return tap_done();
}
