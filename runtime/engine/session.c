/* SPDX-License-Identifier: MIT */
/*
 * session.c - prompt -> prefix reuse -> prefill -> sample / callback / feed back, with the stop
 * rules in one place (see session.h).
 */
#include <config.h>

#include "runtime/engine/session.h"

#include "runtime/base/clock.h"
#include "runtime/engine/engine.h"

#include <stdlib.h>
#include <string.h>

struct mt_session {
    struct mt_engine *engine;   /* borrowed */
    struct mt_sampler *sampler; /* owned */
    int vocab;
    int32_t eos;
    int32_t *hist;              /* owned: the ids in the engine's cache, [n_hist] */
    size_t n_hist;
    size_t cap_hist;
    float *logits;              /* owned, [vocab]: the next token's logits */
    bool logits_fresh;          /* ... hold the step's (not stale behind a greedy pick) */
    /* penalties and logit_bias (allocated at their first use) */
    float *adjusted;            /* [vocab]: the logits the sampler sees */
    int32_t *counts;            /* [vocab]: times each id was generated in this reply */
    int32_t *seen;              /* the ids with a count, [n_seen] (at most max_new) */
    size_t n_seen;
};

const char *
mt_stop_reason_name(enum mt_stop_reason r)
{
    switch (r) {
    case MT_STOP_LENGTH:
        return "length";
    case MT_STOP_EOS:
        return "eos";
    case MT_STOP_CONTEXT:
        return "context";
    case MT_STOP_CALLER:
        return "caller";
    }
    return "?";
}

void
mt_gen_opts_default(struct mt_gen_opts *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->max_new = 32;
}

mt_status_t
mt_session_create(struct mt_engine *engine, const struct mt_sampler_opts *opts,
                  struct mt_session **session_out)
{
    struct mt_session *s = calloc(1, sizeof(*s));
    mt_status_t st;

    if (s == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the session");
    }
    s->engine = engine;
    s->vocab = mt_engine_vocab(engine);
    s->eos = mt_engine_eos(engine);
    s->logits = malloc((size_t)s->vocab * sizeof(float));
    if (s->logits == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the session's logits");
        goto out_free;
    }
    st = mt_sampler_create(opts, s->vocab, &s->sampler);
    if (st != MT_OK) {
        goto out_free;
    }
    mt_engine_reset(engine);
    *session_out = s;
    return MT_OK;

out_free:
    free(s->logits);
    free(s);
    return st;
}

void
mt_session_destroy(struct mt_session *s)
{
    if (s == NULL) {
        return;
    }
    mt_sampler_destroy(s->sampler);
    free(s->adjusted);
    free(s->counts);
    free(s->seen);
    free(s->hist);
    free(s->logits);
    free(s);
}

void
mt_session_reset(struct mt_session *s)
{
    s->n_hist = 0;
    mt_engine_reset(s->engine);
}

mt_status_t
mt_session_set_sampler(struct mt_session *s, const struct mt_sampler_opts *opts)
{
    struct mt_sampler *sm;
    mt_status_t st = mt_sampler_create(opts, s->vocab, &sm);

    if (st != MT_OK) {
        return st;
    }
    mt_sampler_destroy(s->sampler);
    s->sampler = sm;
    return MT_OK;
}

const int32_t *
mt_session_history(const struct mt_session *s, size_t *n_out)
{
    *n_out = s->n_hist;
    return s->hist;
}

static mt_status_t
hist_push(struct mt_session *s, const int32_t *ids, size_t n)
{
    if (s->n_hist + n > s->cap_hist) {
        size_t cap = s->cap_hist ? s->cap_hist : 256;
        while (cap < s->n_hist + n) {
            cap *= 2;
        }
        int32_t *h = realloc(s->hist, cap * sizeof(*h));
        if (h == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot grow the session history to %zu ids", cap);
        }
        s->hist = h;
        s->cap_hist = cap;
    }
    memcpy(s->hist + s->n_hist, ids, n * sizeof(*ids));
    s->n_hist += n;
    return MT_OK;
}

/*
 * The whole prompt[0..n) in pieces, each piece's logits to the caller's on_prompt_logits
 * (*stopped when it says stop); the last row is the next token's.
 */
static mt_status_t
prefill_pieces(struct mt_session *s, const int32_t *prompt, size_t n,
               const struct mt_gen_opts *opts, void *ctx, bool *stopped)
{
    size_t piece = n < MT_SESSION_PROMPT_PIECE ? n : MT_SESSION_PROMPT_PIECE;
    float *rows = malloc(piece * (size_t)s->vocab * sizeof(*rows));
    mt_status_t st = MT_OK;

    if (rows == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the logits of %zu prompt positions",
                       piece);
    }
    for (size_t from = 0; from < n && st == MT_OK && !*stopped; from += piece) {
        size_t m = n - from < piece ? n - from : piece;
        st = mt_engine_forward(s->engine, prompt + from, (int)m, true, rows);
        if (st == MT_OK) {
            *stopped = !opts->on_prompt_logits(ctx, from, m, rows);
            if (from + m == n) {
                memcpy(s->logits, rows + (m - 1) * (size_t)s->vocab,
                       (size_t)s->vocab * sizeof(float));
            }
        }
    }
    free(rows);
    return st;
}

/*
 * prompt[0..n), after what the cache holds: with opts->cancelled in pieces, asking it before each
 * (*stopped when it says so), else in one forward pass. s->logits: the next token's.
 */
static mt_status_t
prefill_cancellable(struct mt_session *s, const int32_t *prompt, size_t n,
                    const struct mt_gen_opts *opts, void *ctx, bool *stopped)
{
    size_t piece = n;
    mt_status_t st = MT_OK;

    if (opts->cancelled != NULL) {
        int chunk = 0;
        (void)mt_engine_device_work_bytes(s->engine, &chunk); /* 0 on the CPU engine */
        piece = MT_MAX((size_t)MT_SESSION_CANCEL_PIECE, (size_t)MT_MAX(chunk, 0));
    }
    for (size_t from = 0; from < n && st == MT_OK; from += piece) {
        if (opts->cancelled != NULL && opts->cancelled(ctx)) {
            *stopped = true;
            break;
        }
        size_t m = MT_MIN(piece, n - from);
        st = mt_engine_forward(s->engine, prompt + from, (int)m, false, s->logits);
    }
    return st;
}

/*
 * Run prompt[0..n) keeping the longest cached prefix; at least the last id runs, for the logits
 * of the next token. With prompt_logits_out or on_prompt_logits the whole prompt runs.
 */
static mt_status_t
prefill(struct mt_session *s, const int32_t *prompt, size_t n, const struct mt_gen_opts *opts,
        void *ctx, size_t *reused_out, bool *stopped)
{
    float *all_logits = opts->prompt_logits_out;
    bool whole = all_logits != NULL || opts->on_prompt_logits != NULL;
    size_t common = 0;
    mt_status_t st;

    if ((st = mt_engine_check_prompt(s->engine, prompt, (int)n)) != MT_OK) {
        return st;
    }
    if (!whole) {
        while (common < s->n_hist && common < n && s->hist[common] == prompt[common]) {
            common++;
        }
        if (common == n) {
            common = n - 1;
        }
    }
    mt_engine_truncate(s->engine, (int64_t)common);
    s->n_hist = common;
    if (opts->on_prompt_logits != NULL) {
        st = prefill_pieces(s, prompt, n, opts, ctx, stopped);
    } else if (all_logits != NULL) {
        st = mt_engine_forward(s->engine, prompt, (int)n, true, all_logits);
        if (st == MT_OK) {
            memcpy(s->logits, all_logits + (n - 1) * (size_t)s->vocab,
                   (size_t)s->vocab * sizeof(float));
        }
    } else {
        st = prefill_cancellable(s, prompt + common, n - common, opts, ctx, stopped);
    }
    if (st == MT_OK) {
        st = hist_push(s, prompt + common, n - common);
    }
    *reused_out = common;
    return st;
}

static bool
is_stop(const struct mt_session *s, const struct mt_gen_opts *o, int32_t id)
{
    if (id == s->eos && !o->ignore_eos) {
        return true;
    }
    for (int i = 0; i < o->n_stop_ids; i++) {
        if (o->stop_ids[i] == id) {
            return true;
        }
    }
    return false;
}

static bool
adjusts(const struct mt_gen_opts *o)
{
    return o->presence_penalty != 0.0f || o->frequency_penalty != 0.0f || o->n_bias > 0 ||
           o->constraint != NULL;
}

/* Ready the penalties' buffers for a reply of at most max_new ids: counts all zero. */
static mt_status_t
penalties_start(struct mt_session *s, const struct mt_gen_opts *o)
{
    size_t v = (size_t)s->vocab;

    for (int i = 0; i < o->n_bias; i++) {
        if (o->bias[i].id < 0 || o->bias[i].id >= s->vocab) {
            return mt_fail(MT_ERR_INVAL, 0, "logit_bias: token id %d is outside the vocabulary "
                           "[0, %d)", (int)o->bias[i].id, s->vocab);
        }
    }
    if (s->adjusted == NULL && (s->adjusted = malloc(v * sizeof(float))) == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the penalized logits");
    }
    if (s->counts == NULL && (s->counts = calloc(v, sizeof(int32_t))) == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the penalties' counts");
    }
    for (size_t i = 0; i < s->n_seen; i++) {
        s->counts[s->seen[i]] = 0;
    }
    s->n_seen = 0;
    free(s->seen);
    s->seen = malloc((size_t)(o->max_new > 0 ? o->max_new : 1) * sizeof(int32_t));
    return s->seen != NULL ? MT_OK : mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the penalties");
}

/*
 * What the sampler sees this step: the logits, or a copy with the penalties, biases and the
 * constraint's mask. NULL when the constraint left no id (mt_fail says so).
 */
static const float *
adjusted_logits(struct mt_session *s, const struct mt_gen_opts *o)
{
    if (!adjusts(o)) {
        return s->logits;
    }
    memcpy(s->adjusted, s->logits, (size_t)s->vocab * sizeof(float));
    for (size_t i = 0; i < s->n_seen; i++) {
        int32_t id = s->seen[i];
        s->adjusted[id] -= o->presence_penalty + o->frequency_penalty * (float)s->counts[id];
    }
    for (int i = 0; i < o->n_bias; i++) {
        s->adjusted[o->bias[i].id] += o->bias[i].bias;
    }
    if (o->constraint != NULL && o->constraint->mask(o->constraint->ctx, s->adjusted) == 0) {
        mt_fail(MT_ERR_INVAL, 0, "the reply's grammar (response_format) allows no token here: "
                "the vocabulary cannot spell what it needs");
        return NULL;
    }
    return s->adjusted;
}

/* One more generated id, for the penalties. */
static void
penalties_count(struct mt_session *s, const struct mt_gen_opts *o, int32_t id)
{
    if (adjusts(o) && s->counts[id]++ == 0) {
        s->seen[s->n_seen++] = id;
    }
}

const float *
mt_session_logits(const struct mt_session *s)
{
    return s->logits_fresh ? s->logits : NULL;
}

mt_status_t
mt_session_generate(struct mt_session *s, const int32_t *prompt, size_t n_prompt,
                    const struct mt_gen_opts *opts, mt_session_token_fn on_token, void *ctx,
                    struct mt_gen_result *res)
{
    struct mt_gen_opts def;
    int64_t max_pos = mt_engine_max_pos(s->engine);
    double t0;
    mt_status_t st;

    if (opts == NULL) {
        mt_gen_opts_default(&def);
        opts = &def;
    }
    memset(res, 0, sizeof(*res));
    res->n_prompt = n_prompt;
    res->stop = MT_STOP_LENGTH;
    if (n_prompt > (size_t)INT32_MAX) {
        return mt_fail(MT_ERR_INVAL, 0, "a prompt of %zu tokens is too long", n_prompt);
    }
    if (adjusts(opts) && (st = penalties_start(s, opts)) != MT_OK) {
        return st;
    }
    t0 = mt_clock_now();
    bool stopped = false;
    st = prefill(s, prompt, n_prompt, opts, ctx, &res->n_reused, &stopped);
    res->prefill_s = mt_clock_now() - t0;
    if (st != MT_OK) {
        mt_session_reset(s); /* no decode: decode_s stays 0 */
        return st;
    }
    if (stopped) { /* maybe part of the prompt ran: the next one runs whole */
        mt_session_reset(s);
        res->stop = MT_STOP_CALLER;
        return MT_OK;
    }
    t0 = mt_clock_now();
    /*
     * A greedy sampler takes the argmax: after the prompt each step asks the engine for that id
     * instead of the logits (the GPU engine finds it on the device), the same id either way.
     */
    bool greedy = mt_sampler_is_greedy(s->sampler) && !opts->want_logits && !adjusts(opts);
    bool have_next = false; /* next holds the engine's greedy pick */
    int32_t next = 0;
    while (res->n_generated < opts->max_new) {
        if (!have_next) {
            const float *logits = adjusted_logits(s, opts);
            if (logits == NULL) {
                st = MT_ERR_INVAL;
                goto out_reset;
            }
            if ((st = mt_sampler_sample(s->sampler, logits, &next)) != MT_OK) {
                goto out_reset;
            }
        }
        if (is_stop(s, opts, next)) {
            res->stop = MT_STOP_EOS;
            break;
        }
        res->n_generated++;
        penalties_count(s, opts, next);
        if (opts->constraint != NULL) {
            opts->constraint->accept(opts->constraint->ctx, next);
        }
        s->logits_fresh = !have_next;
        bool go_on = on_token == NULL || on_token(ctx, next);
        if (!go_on) {
            res->stop = MT_STOP_CALLER;
        } else if (res->n_generated < opts->max_new &&
                   mt_engine_pos(s->engine) >= max_pos) {
            res->stop = MT_STOP_CONTEXT;
        }
        /*
         * The id joins the history only once it is fed: an id that was sampled but not run has
         * no cache entry, and the next prompt (which holds it) runs it then.
         */
        if (!go_on || res->n_generated == opts->max_new || res->stop == MT_STOP_CONTEXT) {
            break;
        }
        int32_t fed = next;
        st = greedy ? mt_engine_forward_greedy(s->engine, &fed, 1, &next)
                    : mt_engine_forward(s->engine, &fed, 1, false, s->logits);
        if (st != MT_OK || (st = hist_push(s, &fed, 1)) != MT_OK) {
            goto out_reset;
        }
        have_next = greedy;
        res->n_decoded++;
    }
    res->decode_s = mt_clock_now() - t0;
    return MT_OK;

out_reset:
    res->decode_s = mt_clock_now() - t0;
    mt_session_reset(s);
    return st;
}
