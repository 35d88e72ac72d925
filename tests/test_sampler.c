/* SPDX-License-Identifier: MIT */
/*
 * test_sampler.c - greedy, temperature, top-k, top-p and seeding of runtime/sampler.
 */
#include <config.h>

#include "runtime/text/sampler.h"
#include "tests/tap.h"

#include <math.h>
#include <stdlib.h>

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
    mt_log_set_quiet(false);
    return tap_done();
}
