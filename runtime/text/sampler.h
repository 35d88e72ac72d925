/* SPDX-License-Identifier: MIT */
/*
 * sampler.h - turning logits into the next token: greedy, or temperature with top-k and top-p.
 *
 * The one idea: the sampler is a pure function of (logits, options, RNG state), and the RNG is
 * a small seeded generator owned by the sampler, so a seed reproduces a run exactly on any
 * machine. Temperature 0 means greedy (argmax, smallest id on ties); the filters apply in the
 * order top-k, then softmax at the temperature, then top-p (the smallest set of most likely
 * tokens whose probability reaches p), then one draw.
 */
#ifndef MT_SAMPLER_H
#define MT_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/base/status.h"

struct mt_sampler_opts {
    float temperature; /* <= 0: greedy */
    float top_p;       /* (0, 1]; 1 disables */
    int top_k;         /* <= 0 disables */
    uint64_t seed;
};

/* A fixed amount added to one id's logit before each sample (OpenAI's logit_bias; the session
 * applies it, with the penalties: session.h). */
struct mt_logit_bias {
    int32_t id;
    float bias;
};

/* Greedy defaults: temperature 0, top_p 1, top_k 0, seed 0. */
void mt_sampler_opts_default(struct mt_sampler_opts *opts);

struct mt_sampler;

/* MT_ERR_INVAL for a NaN/negative temperature or top_p outside (0, 1]; MT_ERR_NOMEM. */
mt_status_t mt_sampler_create(const struct mt_sampler_opts *opts, int vocab,
                              struct mt_sampler **sampler_out);
void mt_sampler_destroy(struct mt_sampler *sampler);

/*
 * Pick the next token from logits[vocab]. NaN logits are never drawn; +inf logits, if any, share
 * all the probability. MT_ERR_INVAL when every logit is NaN (or, sampling, NaN or -inf).
 */
mt_status_t mt_sampler_sample(struct mt_sampler *sampler, const float *logits, int32_t *token_out);

/* Whether sample() is the argmax alone (temperature 0): the same id as mt_sampler_argmax, with no
 * draw from the generator (mt_engine_forward_greedy may then pick it where the logits are). */
bool mt_sampler_is_greedy(const struct mt_sampler *sampler);

/* Index of the largest logit (smallest index on ties, NaN ignored); -1 when all are NaN. */
int32_t mt_sampler_argmax(const float *logits, int vocab);

/* The generator itself (xoshiro256** seeded with splitmix64): uniform double in [0, 1). */
double mt_sampler_uniform(struct mt_sampler *sampler);

#endif /* MT_SAMPLER_H */
