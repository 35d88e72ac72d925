/* SPDX-License-Identifier: MIT */
/*
 * session.h - a generation session: prompt ids in, generated ids out, over one engine.
 *
 * The one idea: the session remembers the ids whose keys and values the engine's cache holds, so
 * a prompt that extends the previous one (the next chat turn, the next API request of the same
 * conversation) only runs its new part: the longest common prefix is kept (mt_engine_truncate)
 * and the rest is fed. run, chat and serve all generate through mt_session_generate(); they
 * differ only in what they do with each token (print it, stream it as an event, ...), which is
 * the callback's job. The session is token-level; text is the caller's (text/tokenizer.h).
 *
 * Not thread-safe: one thread drives a session (the engine parallelizes inside).
 */
#ifndef MT_SESSION_H
#define MT_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/base/status.h"
#include "runtime/text/sampler.h"

struct mt_engine;

enum mt_stop_reason {
    MT_STOP_LENGTH,   /* max_new tokens generated */
    MT_STOP_EOS,      /* the model's EOS or another stop id was sampled (not fed, not counted) */
    MT_STOP_CONTEXT,  /* the cache reached max_position_embeddings */
    MT_STOP_CALLER,   /* the token callback asked to stop (client gone, Ctrl-C, stop string) */
};

/* "length", "eos", "context", "caller". */
const char *mt_stop_reason_name(enum mt_stop_reason r);

/*
 * The logits of prompt positions [from, from + n), rows of vocab floats (row i predicts the id
 * after prompt[from + i]), valid during the call. Return false to stop: the generation then
 * ends before its first sample, as MT_STOP_CALLER.
 */
typedef bool (*mt_session_prompt_fn)(void *ctx, size_t from, size_t n, const float *rows);

#define MT_SESSION_PROMPT_PIECE 128 /* positions a prompt runs at a time for on_prompt_logits */

/*
 * Asked between pieces of a prompt (with on_token's ctx): true stops the generation before its
 * first sample, as MT_STOP_CALLER (a server's client that left during a long prompt).
 */
typedef bool (*mt_session_cancel_fn)(void *ctx);

/* positions a prompt runs at a time with a cancel check: the GPU engine's prompt chunk where that
 * is longer, so that no chunk is split */
#define MT_SESSION_CANCEL_PIECE 512

/*
 * A grammar the reply must follow (text/json_constraint.h is one). Before each sample, mask sets
 * the logit of every id that may not come next to -INFINITY, stop ids included (so the reply
 * ends only where the grammar lets it), and returns how many ids it left; accept is told each
 * id sampled that is not a stop id.
 */
struct mt_gen_constraint {
    void *ctx;
    size_t (*mask)(void *ctx, float *logits);
    void (*accept)(void *ctx, int32_t id);
};

struct mt_gen_opts {
    long max_new;             /* tokens to generate at most; 0 = prefill only */
    const int32_t *stop_ids;  /* borrowed: ids that end the reply besides the model's EOS */
    int n_stop_ids;
    bool ignore_eos;          /* keep going past the model's EOS (benchmarks) */
    /*
     * When not NULL: the logits of every prompt position, [n_prompt, vocab], for --dump-logits.
     * The whole prompt is then run (no prefix reuse).
     */
    float *prompt_logits_out;
    /* Logits at every step, for mt_session_logits (a greedy session otherwise takes the
     * engine's pick and skips them). */
    bool want_logits;
    /*
     * When not NULL: called (with on_token's ctx) with the logits of every prompt position as
     * the prompt runs, MT_SESSION_PROMPT_PIECE positions at a time, so that a long prompt never
     * holds them all (a server's echo with logprobs). The whole prompt then runs.
     */
    mt_session_prompt_fn on_prompt_logits;
    /* When not NULL: asked before each MT_SESSION_CANCEL_PIECE positions of the prompt's part
     * that runs; the prompt otherwise runs in one forward pass. */
    mt_session_cancel_fn cancelled;
    /*
     * OpenAI's penalties, on a copy of each step's logits before the sampler (mt_session_logits
     * stays the model's): presence_penalty is taken once from the logit of every id this reply
     * has generated so far, frequency_penalty once for each time it was; bias[0..n_bias) adds
     * to its ids' logits. Any of them turns the greedy shortcut off (the logits are needed).
     */
    float presence_penalty;
    float frequency_penalty;
    const struct mt_logit_bias *bias; /* borrowed */
    int n_bias;
    /* When not NULL (borrowed): applied after the penalties and biases, on the same copy.
     * Also turns the greedy shortcut off. */
    const struct mt_gen_constraint *constraint;
};

/* Defaults: max_new 32, no extra stop ids, stop at EOS, no prompt logits, no penalties, no
 * constraint. */
void mt_gen_opts_default(struct mt_gen_opts *opts);

/*
 * Called with each generated id, after it is sampled and before it is fed back. Return false to
 * stop (reason MT_STOP_CALLER; the id counts as generated but is not fed, so it is not in the
 * history: the next prompt that holds it runs it).
 */
typedef bool (*mt_session_token_fn)(void *ctx, int32_t id);

struct mt_gen_result {
    size_t n_prompt;      /* prompt ids given */
    size_t n_reused;      /* of them, already in the cache (not run again) */
    long n_generated;     /* ids sampled and passed to the callback (a stop id is not counted) */
    long n_decoded;       /* of them, fed back through the model */
    enum mt_stop_reason stop;
    double prefill_s;     /* seconds in the prompt's forward pass */
    double decode_s;      /* seconds from the first sample to the end */
};

struct mt_session;

/*
 * A session over engine (borrowed; must outlive the session, and nothing else may feed it
 * meanwhile), sampling with opts (copied). MT_ERR_INVAL for bad sampler options, MT_ERR_NOMEM.
 */
mt_status_t mt_session_create(struct mt_engine *engine, const struct mt_sampler_opts *opts,
                              struct mt_session **session_out);
void mt_session_destroy(struct mt_session *session);

/* Forget the cached sequence (the next prompt runs whole). */
void mt_session_reset(struct mt_session *session);

/* Replace the sampling options (and reseed). MT_ERR_INVAL as mt_sampler_create. */
mt_status_t mt_session_set_sampler(struct mt_session *session, const struct mt_sampler_opts *opts);

/*
 * Generate a reply to prompt[0..n_prompt): reuse the cached prefix, run the rest, then sample,
 * call on_token (may be NULL) and feed back until a stop rule holds. The ids that were fed join
 * the cached history (the last sampled id is not fed: it runs with the next prompt that holds
 * it), so the next prompt may extend the reply. On failure the cache is reset (the next prompt
 * runs whole) and *result_out holds what was done so far.
 * MT_ERR_INVAL (with the engine's message) for an empty prompt, a bad id or a prompt longer than
 * the context; the engine's errors otherwise.
 */
mt_status_t mt_session_generate(struct mt_session *session, const int32_t *prompt,
                                size_t n_prompt, const struct mt_gen_opts *opts,
                                mt_session_token_fn on_token, void *ctx,
                                struct mt_gen_result *result_out);

/*
 * Inside the token callback: the logits[vocab] the id was picked from (the model's, before the
 * sampler's temperature and filters). NULL where a greedy step took the engine's pick instead
 * (always available with want_logits).
 */
const float *mt_session_logits(const struct mt_session *session);

/* The ids the engine's cache holds now, in order (valid until the next call). */
const int32_t *mt_session_history(const struct mt_session *session, size_t *n_out);

#endif /* MT_SESSION_H */
