/* SPDX-License-Identifier: MIT */
/*
 * sampler_ref.h - the sampler as it was before the partial sort (a scalar argmax; a qsort of
 * every candidate), kept as the reference that tests/test_sampler.c checks the sampler against
 * and that bench/bench_sampler.c times it against. Static functions: include it in one file.
 */
#ifndef MT_TESTS_SAMPLER_REF_H
#define MT_TESTS_SAMPLER_REF_H

#include "runtime/base/rng.h"
#include "runtime/text/sampler.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static int32_t
ref_argmax(const float *logits, int vocab)
{
    int32_t best = -1;

    for (int i = 0; i < vocab; i++) {
        if (isnan(logits[i])) {
            continue;
        }
        if (best < 0 || logits[i] > logits[best]) {
            best = i;
        }
    }
    return best;
}

struct ref_cand {
    float logit;
    int32_t id;
};

static int
ref_cand_cmp(const void *pa, const void *pb)
{
    const struct ref_cand *a = pa;
    const struct ref_cand *b = pb;

    if (a->logit != b->logit) {
        return a->logit > b->logit ? -1 : 1;
    }
    return (a->id > b->id) - (a->id < b->id);
}

/* The old mt_sampler_sample; *kept_out: how many tokens the top-p cut kept. */
static int32_t
ref_sample(const struct mt_sampler_opts *o, struct mt_rng *rng, const float *logits, int vocab,
           struct ref_cand *c, double *p, int *kept_out)
{
    int n = 0;

    if (o->temperature <= 0.0f) {
        *kept_out = 1;
        return ref_argmax(logits, vocab);
    }
    for (int i = 0; i < vocab; i++) {
        if (!isnan(logits[i]) && logits[i] != -INFINITY) {
            c[n].logit = logits[i];
            c[n].id = i;
            n++;
        }
    }
    if (n == 0) {
        return -1;
    }
    qsort(c, (size_t)n, sizeof(*c), ref_cand_cmp);
    if (o->top_k > 0 && o->top_k < n) {
        n = o->top_k;
    }
    double sum = 0.0;
    if (c[0].logit == INFINITY) {
        while (c[n - 1].logit != INFINITY) {
            n--;
        }
        for (int i = 0; i < n; i++) {
            p[i] = 1.0;
        }
        sum = n;
    } else {
        double m = c[0].logit;
        for (int i = 0; i < n; i++) {
            p[i] = exp(((double)c[i].logit - m) / o->temperature);
            sum += p[i];
        }
    }
    if (o->top_p < 1.0f) {
        double acc = 0.0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            acc += p[i] / sum;
            if (acc >= o->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        sum = 0.0;
        for (int i = 0; i < n; i++) {
            sum += p[i];
        }
    }
    *kept_out = n;
    double u = mt_rng_uniform(rng) * sum;
    double acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += p[i];
        if (u < acc) {
            return c[i].id;
        }
    }
    return c[n - 1].id;
}

#endif /* MT_TESTS_SAMPLER_REF_H */
