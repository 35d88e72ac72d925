/* SPDX-License-Identifier: MIT */
/* logprob.c - log-probabilities of one step's logits (logprob.h). */
#include <config.h>

#include "runtime/text/logprob.h"

#include <math.h>

/* Whether logit a (of id ia) ranks before logit b (of id ib): larger first, then smaller id. */
static int
ranks_before(float a, int32_t ia, float b, int32_t ib)
{
    return a > b || (a == b && ia < ib);
}

mt_status_t
mt_logprob_step(const float *logits, int vocab, int32_t id, int n_top, struct mt_logprob *out)
{
    double max = -INFINITY, sum = 0.0, lse;
    int n_inf = 0;

    if (vocab <= 0 || id < 0 || id >= vocab || n_top < 0 || n_top > MT_LOGPROB_MAX_TOP) {
        return mt_fail(MT_ERR_INVAL, 0, "logprobs: id %d of a vocabulary of %d, %d top tokens",
                       (int)id, vocab, n_top);
    }
    for (int i = 0; i < vocab; i++) {
        if (logits[i] > max) { /* false for NaN */
            max = logits[i];
        }
        n_inf += logits[i] == INFINITY;
    }
    if (max == -INFINITY) {
        return mt_fail(MT_ERR_INVAL, 0, "logprobs: every logit is NaN or -inf");
    }
    if (n_inf > 0) {
        lse = INFINITY; /* only the +inf logits count: each gets log(1 / n_inf) below */
    } else {
        for (int i = 0; i < vocab; i++) {
            if (logits[i] == logits[i]) {
                sum += exp((double)logits[i] - max);
            }
        }
        lse = max + log(sum);
    }

    /* the top n_top by insertion: few, and one pass over the vocabulary */
    out->id = id;
    out->n_top = 0;
    for (int32_t i = 0; i < vocab && n_top > 0; i++) {
        float l = logits[i];
        int k = out->n_top;
        if (l != l || (k == n_top && !ranks_before(l, i, out->top_logprob[k - 1],
                                                   out->top_id[k - 1]))) {
            continue;
        }
        if (k < n_top) {
            out->n_top++;
        } else {
            k--;
        }
        while (k > 0 && ranks_before(l, i, out->top_logprob[k - 1], out->top_id[k - 1])) {
            out->top_logprob[k] = out->top_logprob[k - 1];
            out->top_id[k] = out->top_id[k - 1];
            k--;
        }
        out->top_logprob[k] = l; /* the logit for now: ranked by it, turned below */
        out->top_id[k] = i;
    }

    for (int k = -1; k < out->n_top; k++) {
        float l = k < 0 ? logits[id] : out->top_logprob[k];
        double lp = n_inf > 0 ? (l == INFINITY ? -log((double)n_inf) : -INFINITY)
                              : (double)l - lse;
        if (l != l) {
            lp = -INFINITY; /* a NaN logit: never drawn */
        }
        if (k < 0) {
            out->logprob = (float)lp;
        } else {
            out->top_logprob[k] = (float)lp;
        }
    }
    return MT_OK;
}
