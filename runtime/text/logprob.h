/* SPDX-License-Identifier: MIT */
/*
 * logprob.h - how likely the model found a token: log-probabilities of one step's logits, for
 * the serve API's logprobs.
 *
 * The one idea: the log-probability of token i is logits[i] - log(sum_j exp(logits[j])), the
 * log-softmax of the model's own distribution (temperature 1, before any top-k or top-p: what a
 * client compares across requests and samplers), computed in double with the largest logit
 * taken out first so that nothing overflows. The most likely tokens come in order, ties to the
 * smaller id (as the greedy sampler picks). NaN logits are never listed; +inf logits, where
 * there are any, share all the probability (as the sampler gives it); an impossible token's
 * log-probability is -inf.
 */
#ifndef MT_LOGPROB_H
#define MT_LOGPROB_H

#include <stdint.h>

#include "runtime/base/status.h"

#define MT_LOGPROB_MAX_TOP 20 /* OpenAI's limit on top_logprobs */

struct mt_logprob {
    int32_t id;        /* the token picked */
    float logprob;     /* its log-probability */
    int n_top;         /* the most likely tokens at its place, most likely first */
    int32_t top_id[MT_LOGPROB_MAX_TOP];
    float top_logprob[MT_LOGPROB_MAX_TOP];
};

/*
 * The step that picked id from logits[vocab]: its log-probability and the n_top (0 to
 * MT_LOGPROB_MAX_TOP) most likely tokens into *out. MT_ERR_INVAL for a bad id or n_top, or when
 * every logit is NaN or -inf.
 */
mt_status_t mt_logprob_step(const float *logits, int vocab, int32_t id, int n_top,
                            struct mt_logprob *out);

#endif /* MT_LOGPROB_H */
