/* SPDX-License-Identifier: MIT */
/*
 * test_logprob.c - runtime/text/logprob.c against a plain reference: the log-softmax in long
 * double summed over the whole vocabulary, and the most likely tokens by a full sort (larger
 * logit first, then smaller id), on random logits, exact ties, NaN, -inf and +inf.
 */
#include <config.h>

#include "runtime/text/logprob.h"
#include "runtime/base/rng.h"
#include "tests/tap.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const float *sort_logits;

/* qsort order of ids: larger logit first, then smaller id; NaN last */
static int
by_rank(const void *a, const void *b)
{
    int32_t ia = *(const int32_t *)a, ib = *(const int32_t *)b;
    float la = sort_logits[ia], lb = sort_logits[ib];
    bool na = la != la, nb = lb != lb;
    if (na != nb) {
        return na ? 1 : -1;
    }
    if (na) {
        return (ia > ib) - (ia < ib);
    }
    if (la != lb) {
        return la > lb ? -1 : 1;
    }
    return (ia > ib) - (ia < ib);
}

/* The reference log-probability of every token (into lp[vocab]). */
static void
reference(const float *logits, int vocab, double *lp)
{
    long double max = -INFINITY, sum = 0;
    int n_inf = 0;
    for (int i = 0; i < vocab; i++) {
        if (logits[i] > max) {
            max = logits[i];
        }
        n_inf += logits[i] == INFINITY;
    }
    for (int i = 0; i < vocab && n_inf == 0; i++) {
        if (logits[i] == logits[i]) {
            sum += expl((long double)logits[i] - max);
        }
    }
    for (int i = 0; i < vocab; i++) {
        if (logits[i] != logits[i]) {
            lp[i] = -INFINITY;
        } else if (n_inf > 0) {
            lp[i] = logits[i] == INFINITY ? -log((double)n_inf) : -INFINITY;
        } else {
            lp[i] = (double)((long double)logits[i] - max - logl(sum));
        }
    }
}

/* Within 2e-6 relative; an infinity only matches itself (the relative bound of -inf would let
 * any finite value through). */
static bool
close_to(double got, double want)
{
    if (isinf(got) || isinf(want)) {
        return got == want;
    }
    return fabs(got - want) <= 2e-6 * (1 + fabs(want));
}

/* One case: every id's logprob, and the top n against the sorted reference. */
static bool
check(const float *logits, int vocab, int n_top, const char *what)
{
    double *lp = malloc((size_t)vocab * sizeof(*lp));
    int32_t *order = malloc((size_t)vocab * sizeof(*order));
    bool ok = lp != NULL && order != NULL;
    double mass = 0;
    struct mt_logprob out;

    reference(logits, vocab, lp);
    for (int i = 0; ok && i < vocab; i++) {
        order[i] = i;
    }
    sort_logits = logits;
    qsort(order, (size_t)vocab, sizeof(*order), by_rank);
    for (int32_t id = 0; ok && id < vocab; id++) {
        ok = mt_logprob_step(logits, vocab, id, n_top, &out) == MT_OK && out.id == id &&
             close_to(out.logprob, lp[id]);
        if (!ok) {
            tap_diag("%s: id %d: %g, want %g", what, (int)id, out.logprob, lp[id]);
        }
        mass += isinf(out.logprob) ? 0 : exp((double)out.logprob);
    }
    int want_top = n_top;
    for (int k = 0; k < n_top && k < vocab; k++) {
        if (logits[order[k]] != logits[order[k]]) {
            want_top = k; /* NaN is never listed */
            break;
        }
    }
    ok = ok && out.n_top == (want_top < vocab ? want_top : vocab);
    for (int k = 0; ok && k < out.n_top; k++) {
        ok = out.top_id[k] == order[k] && close_to(out.top_logprob[k], lp[order[k]]);
        if (!ok) {
            tap_diag("%s: top %d: id %d (%g), want id %d (%g)", what, k, (int)out.top_id[k],
                     out.top_logprob[k], (int)order[k], lp[order[k]]);
        }
    }
    tap_ok(ok && fabs(mass - 1) < 1e-4, "%s: every token's log-probability, the top %d in order, "
           "probabilities sum to %.6f", what, n_top, mass);
    free(lp);
    free(order);
    return ok;
}

int
main(void)
{
    struct mt_rng g;
    enum { V = 5003 };
    float *x = malloc(V * sizeof(*x));
    struct mt_logprob out;

    tap_plan(0);
    mt_rng_init(&g, 20261204);
    for (int i = 0; i < V; i++) {
        x[i] = (float)(mt_rng_uniform(&g) * 30 - 15);
    }
    check(x, V, 20, "random logits in [-15, 15)");
    check(x, V, 0, "the same, no top tokens");
    for (int i = 0; i < V; i++) {
        x[i] = (float)(int)(mt_rng_uniform(&g) * 4); /* 0..3: ties everywhere */
    }
    check(x, V, 20, "four values: ties go to the smaller id");
    for (int i = 0; i < V; i++) {
        double u = mt_rng_uniform(&g);
        x[i] = u < 0.1 ? NAN : u < 0.2 ? -INFINITY : (float)(u * 2000 - 1000);
    }
    check(x, V, 20, "NaN, -inf and logits of +-1000 (exp overflows without the max out)");
    x[17] = INFINITY;
    x[4000] = INFINITY;
    check(x, V, 5, "two +inf logits share the probability");
    x[4000] = 3.0f;
    check(x, V, 5, "one +inf logit takes all the probability");
    for (int i = 0; i < 7; i++) {
        x[i] = i == 3 ? 1.0f : NAN;
    }
    check(x, 7, 20, "a vocabulary of 7, one of them a number: fewer top tokens than asked");
    /* the first logit is looked at like any other: the only number, then the only +inf */
    x[0] = 5.0f;
    x[1] = -INFINITY;
    x[2] = NAN;
    check(x, 3, 3, "the only number first, then -inf and NaN");
    x[0] = INFINITY;
    x[1] = 1.0f;
    x[2] = 2.0f;
    check(x, 3, 3, "+inf first, two numbers after it");
    for (int i = 0; i < 7; i++) {
        x[i] = i < 5 ? NAN : -INFINITY;
    }
    tap_ok(mt_logprob_step(x, 7, 5, 3, &out) == MT_ERR_INVAL,
           "every logit NaN or -inf: MT_ERR_INVAL");
    /* no top tokens asked: none listed, whatever the struct held before */
    memset(&out, 0, sizeof(out));
    x[6] = 2.0f;
    tap_ok(mt_logprob_step(x, 7, 6, 0, &out) == MT_OK && out.n_top == 0 && out.logprob == 0.0f,
           "top 0 on a zeroed struct: no top tokens, the only number has log-probability 0");
    x[0] = 0;
    tap_ok(mt_logprob_step(x, 7, 7, 3, &out) == MT_ERR_INVAL &&
               mt_logprob_step(x, 7, -1, 3, &out) == MT_ERR_INVAL &&
               mt_logprob_step(x, 7, 0, MT_LOGPROB_MAX_TOP + 1, &out) == MT_ERR_INVAL &&
               mt_logprob_step(x, 7, 0, -1, &out) == MT_ERR_INVAL,
           "an id outside the vocabulary or a top count outside 0..20: MT_ERR_INVAL");
    free(x);
    return tap_done();
}
