/* SPDX-License-Identifier: MIT */
/*
 * sampler.c - greedy / temperature / top-k / top-p sampling with a seeded xoshiro256**.
 *
 * Candidates are sorted by logit (ties: smaller id first), so the same logits and seed always
 * give the same token.
 */
#include <config.h>

#include "runtime/text/sampler.h"

#include "runtime/base/rng.h"

#include <math.h>
#include <stdlib.h>

struct cand {
    float logit;
    int32_t id;
};

struct mt_sampler {
    struct mt_sampler_opts opts;
    int vocab;
    struct mt_rng rng;
    struct cand *c; /* owned, [vocab] */
    double *p;      /* owned, [vocab] */
};

void
mt_sampler_opts_default(struct mt_sampler_opts *opts)
{
    opts->temperature = 0.0f;
    opts->top_p = 1.0f;
    opts->top_k = 0;
    opts->seed = 0;
}

double
mt_sampler_uniform(struct mt_sampler *r)
{
    return mt_rng_uniform(&r->rng);
}

mt_status_t
mt_sampler_create(const struct mt_sampler_opts *opts, int vocab, struct mt_sampler **sampler_out)
{
    struct mt_sampler *r;

    if (isnan(opts->temperature) || opts->temperature < 0.0f) {
        return mt_fail(MT_ERR_INVAL, 0, "temperature %g must be >= 0", (double)opts->temperature);
    }
    if (!(opts->top_p > 0.0f && opts->top_p <= 1.0f)) {
        return mt_fail(MT_ERR_INVAL, 0, "top-p %g must be in (0, 1]", (double)opts->top_p);
    }
    if (vocab <= 0) {
        return mt_fail(MT_ERR_INVAL, 0, "sampler vocabulary of %d tokens", vocab);
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the sampler");
    }
    r->c = malloc((size_t)vocab * sizeof(*r->c));
    r->p = malloc((size_t)vocab * sizeof(*r->p));
    if (r->c == NULL || r->p == NULL) {
        mt_sampler_destroy(r);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate sampler buffers for %d tokens", vocab);
    }
    r->opts = *opts;
    r->vocab = vocab;
    mt_rng_init(&r->rng, opts->seed);
    *sampler_out = r;
    return MT_OK;
}

void
mt_sampler_destroy(struct mt_sampler *r)
{
    if (r == NULL) {
        return;
    }
    free(r->c);
    free(r->p);
    free(r);
}

int32_t
mt_sampler_argmax(const float *logits, int vocab)
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

static int
cand_cmp(const void *pa, const void *pb)
{
    const struct cand *a = pa;
    const struct cand *b = pb;

    if (a->logit != b->logit) {
        return a->logit > b->logit ? -1 : 1;
    }
    return (a->id > b->id) - (a->id < b->id);
}

mt_status_t
mt_sampler_sample(struct mt_sampler *r, const float *logits, int32_t *token_out)
{
    int n = 0;

    if (r->opts.temperature <= 0.0f) {
        int32_t t = mt_sampler_argmax(logits, r->vocab);
        if (t < 0) {
            return mt_fail(MT_ERR_INVAL, 0, "cannot sample: every logit is NaN");
        }
        *token_out = t;
        return MT_OK;
    }
    for (int i = 0; i < r->vocab; i++) {
        if (!isnan(logits[i]) && logits[i] != -INFINITY) {
            r->c[n].logit = logits[i];
            r->c[n].id = i;
            n++;
        }
    }
    if (n == 0) {
        return mt_fail(MT_ERR_INVAL, 0, "cannot sample: no finite logit");
    }
    qsort(r->c, (size_t)n, sizeof(*r->c), cand_cmp);
    if (r->opts.top_k > 0 && r->opts.top_k < n) {
        n = r->opts.top_k;
    }
    double sum = 0.0;
    if (r->c[0].logit == INFINITY) {
        /* +inf logits (sorted first) take all the probability, in equal shares; the softmax
         * below would compute inf - inf = NaN for them */
        while (r->c[n - 1].logit != INFINITY) {
            n--;
        }
        for (int i = 0; i < n; i++) {
            r->p[i] = 1.0;
        }
        sum = n;
    } else {
        double m = r->c[0].logit;
        for (int i = 0; i < n; i++) {
            r->p[i] = exp(((double)r->c[i].logit - m) / r->opts.temperature);
            sum += r->p[i];
        }
    }
    if (r->opts.top_p < 1.0f) {
        double acc = 0.0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            acc += r->p[i] / sum;
            if (acc >= r->opts.top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        sum = 0.0;
        for (int i = 0; i < n; i++) {
            sum += r->p[i];
        }
    }
    double u = mt_sampler_uniform(r) * sum;
    double acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += r->p[i];
        if (u < acc) {
            *token_out = r->c[i].id;
            return MT_OK;
        }
    }
    *token_out = r->c[n - 1].id;
    return MT_OK;
}
