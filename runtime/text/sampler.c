/* SPDX-License-Identifier: MIT */
/*
 * sampler.c - greedy / temperature / top-k / top-p sampling with a seeded xoshiro256**.
 *
 * Candidates are sorted by logit (ties: smaller id first), so the same logits and seed always
 * give the same token. The one idea: a draw only ever reads the head of that order, so only the
 * head is sorted. On a 129,280-token vocabulary a full sort cost 10+ ms per token; now a heap
 * picks the best 256 (or the best top-k), the normaliser is summed over every candidate, and the
 * head grows only when the top-p cut or the draw falls beyond it; a head that must pass 4,096
 * becomes a radix sort of every candidate (a few ms where heap rounds took 15-25). Greedy is a
 * vectorized scan.
 */
#include <config.h>

#include "runtime/text/sampler.h"

#include "runtime/base/rng.h"

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* How many of the best candidates a draw sorts first; more while they are not enough. */
#define SAMPLER_HEAD 256
/*
 * A head that must grow past this many is not selected by the heap again: every candidate is
 * sorted at once by a radix sort (sort_all), a few passes over the vocabulary whatever its
 * shape, where heap rounds of growing heads cost 15-23 ms a token on a wide distribution.
 */
#define SAMPLER_RADIX_MIN 4096

/* Lanes of the argmax scan: independent running maxima, which the compiler keeps in vectors. */
#define ARGMAX_LANES 64

struct cand {
    float logit;
    int32_t id;
};

struct mt_sampler {
    struct mt_sampler_opts opts;
    int vocab;
    struct mt_rng rng;
    struct cand *c;  /* owned, [vocab] */
    struct cand *c2; /* owned, [vocab]: sort_all's other buffer */
    double *p;       /* owned, [vocab] */
};

void
mt_sampler_opts_default(struct mt_sampler_opts *opts)
{
    opts->temperature = 0.0f;
    opts->top_p = 1.0f;
    opts->top_k = 0;
    opts->seed = 0;
}

bool
mt_sampler_is_greedy(const struct mt_sampler *r)
{
    return r->opts.temperature <= 0.0f;
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
    r->c2 = malloc((size_t)vocab * sizeof(*r->c2));
    r->p = malloc((size_t)vocab * sizeof(*r->p));
    if (r->c == NULL || r->c2 == NULL || r->p == NULL) {
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
    free(r->c2);
    free(r->p);
    free(r);
}

/*
 * Two passes that the compiler vectorizes at -O2 without -ffast-math, branch-free inside each
 * block of lanes: the largest value, then the first index holding it. `x > m ? x : m` keeps m
 * for a NaN x, so NaN is ignored, and it is exactly what maxps computes (no integer keys
 * needed); == treats -0.0 and +0.0 as equal, as the > of a plain loop does, so the first of
 * them wins. Lanes keep the running maxima independent: no reassociation, which -O2 forbids.
 */
int32_t
mt_sampler_argmax(const float *logits, int vocab)
{
    float lane[ARGMAX_LANES];
    float max = -INFINITY;
    int i;

    for (int j = 0; j < ARGMAX_LANES; j++) {
        lane[j] = -INFINITY;
    }
    for (i = 0; i + ARGMAX_LANES <= vocab; i += ARGMAX_LANES) {
        for (int j = 0; j < ARGMAX_LANES; j++) {
            lane[j] = logits[i + j] > lane[j] ? logits[i + j] : lane[j];
        }
    }
    for (; i < vocab; i++) {
        max = logits[i] > max ? logits[i] : max;
    }
    for (int j = 0; j < ARGMAX_LANES; j++) {
        max = lane[j] > max ? lane[j] : max;
    }
    for (i = 0; i + ARGMAX_LANES <= vocab; i += ARGMAX_LANES) {
        int hit = 0;
        for (int j = 0; j < ARGMAX_LANES; j++) {
            hit |= logits[i + j] == max;
        }
        if (hit) {
            break;
        }
    }
    for (; i < vocab; i++) {
        if (logits[i] == max) {
            return i;
        }
    }
    return -1; /* every logit is NaN (max stayed -inf and no logit equals it) */
}

/* a ranks after b in the draw's order: smaller logit, or the same logit and a larger id */
static bool
cand_after(struct cand a, struct cand b)
{
    return a.logit < b.logit || (a.logit == b.logit && a.id > b.id);
}

/* Restore the heap c[0..n), whose root ranks last, below position i. */
static void
heap_sift_down(struct cand *c, int n, int i)
{
    struct cand x = c[i];

    for (int j = 2 * i + 1; j < n; j = 2 * i + 1) {
        if (j + 1 < n && cand_after(c[j + 1], c[j])) {
            j++;
        }
        if (!cand_after(c[j], x)) {
            break;
        }
        c[i] = c[j];
        i = j;
    }
    c[i] = x;
}

/*
 * The best min(k, candidates) candidates (NaN and -inf are none) into c, sorted best first;
 * returns how many. A heap holds the best seen so far with the last-ranked at its root; logits
 * come in id order, so a newcomer that only ties the root ranks after it, and one float compare
 * rejects nearly every logit once the heap is full.
 */
static int
select_best(const float *logits, int vocab, int k, struct cand *c)
{
    float bar = -INFINITY; /* a newcomer must beat it: the root's logit once the heap is full */
    int n = 0;

    for (int i = 0; i < vocab; i++) {
        if (!(logits[i] > bar)) {
            continue; /* also every NaN and -inf */
        }
        struct cand x = {logits[i], i};
        if (n < k) {
            int j = n++;
            while (j > 0 && cand_after(x, c[(j - 1) / 2])) {
                c[j] = c[(j - 1) / 2];
                j = (j - 1) / 2;
            }
            c[j] = x;
        } else {
            c[0] = x;
            heap_sift_down(c, n, 0);
        }
        if (n == k) {
            bar = c[0].logit;
        }
    }
    /* heapsort: the last-ranked goes to the back each time, so c ends best first */
    for (int m = n - 1; m > 0; m--) {
        struct cand t = c[0];
        c[0] = c[m];
        c[m] = t;
        heap_sift_down(c, m, 0);
    }
    return n;
}

/*
 * Draw order as an unsigned key, smallest first: larger logit first, and -0.0 as +0.0 (the
 * comparator's < ties them). The float's bits made monotone (negatives inverted, positives with
 * the sign bit set), then inverted for descending order.
 */
static inline uint32_t
rank_key(float f)
{
    uint32_t u;

    f = f == 0.0f ? 0.0f : f;
    memcpy(&u, &f, sizeof(u));
    u = (u & 0x80000000u) != 0 ? ~u : (u | 0x80000000u);
    return ~u;
}

/*
 * Every candidate (NaN and -inf are none) into c, sorted best first with ties by smaller id:
 * select_best's order for k = vocab. An LSD radix sort, 8 bits a pass: each pass is stable and
 * the candidates start in id order, so equal logits keep their ids ascending. tmp: [vocab].
 */
static int
sort_all(const float *logits, int vocab, struct cand *c, struct cand *tmp)
{
    int n = 0;

    for (int i = 0; i < vocab; i++) {
        if (logits[i] > -INFINITY) { /* neither NaN nor -inf */
            c[n].logit = logits[i];
            c[n++].id = i;
        }
    }
    struct cand *src = c, *dst = tmp;
    for (int shift = 0; shift < 32; shift += 8) {
        int start[257] = {0};
        for (int i = 0; i < n; i++) {
            start[((rank_key(src[i].logit) >> shift) & 255u) + 1]++;
        }
        for (int d = 0; d < 256; d++) {
            start[d + 1] += start[d];
        }
        for (int i = 0; i < n; i++) {
            dst[start[(rank_key(src[i].logit) >> shift) & 255u]++] = src[i];
        }
        struct cand *t = src;
        src = dst;
        dst = t;
    }
    return n; /* four passes: the result is back in c */
}

/*
 * The softmax normaliser over every candidate, in id order. A full sort summed it in rank order,
 * so the two may differ in the last bits of a double; only a top-p cut or a draw that lands
 * within those bits of a boundary can then pick another token.
 */
static double
softmax_norm(const float *logits, int vocab, double m, float temperature)
{
    double sum = 0.0;

    for (int i = 0; i < vocab; i++) {
        if (logits[i] > -INFINITY) { /* neither NaN nor -inf */
            sum += exp(((double)logits[i] - m) / temperature);
        }
    }
    return sum;
}

/*
 * The head length a retry needs at least when `missing` weight (unnormalised) lies beyond the
 * head: no later candidate weighs more than the head's last, `last`. Jumping there rather than
 * only doubling spares a near-flat distribution a dozen rounds of selection.
 */
static int
head_needed(int n, double missing, double last)
{
    double more = missing / last; /* inf (or NaN) when last underflowed to 0: sort everything */

    return more < (double)(INT_MAX - n - 1) ? n + 1 + (int)more : INT_MAX;
}

/*
 * One draw from the sorted head c[0..n): the full-sort algorithm, step for step. `all` says the
 * head holds every candidate left after top-k, so the result is the full sort's exactly.
 * Otherwise the normaliser comes from softmax_norm (*norm caches it), and a top-p cut or a draw
 * that falls beyond c[n - 1] returns -1 with *want_out a longer head to sort before calling
 * again. *draw caches the one uniform number of this token, so that a retry reuses it.
 */
static int32_t
sample_head(struct mt_sampler *r, const float *logits, int n, bool all, double *norm, double *draw,
            int *want_out)
{
    const struct cand *c = r->c;
    double *p = r->p;
    double sum = 0.0;

    if (c[0].logit == INFINITY) {
        /* +inf logits (sorted first) take all the probability, in equal shares; the softmax
         * below would compute inf - inf = NaN for them */
        if (!all && c[n - 1].logit == INFINITY) {
            return -1; /* more +inf may follow c[n - 1]: a doubled head, *want_out untouched */
        }
        while (c[n - 1].logit != INFINITY) {
            n--;
        }
        for (int i = 0; i < n; i++) {
            p[i] = 1.0;
        }
        sum = n;
        all = true;
    } else {
        double m = c[0].logit;
        for (int i = 0; i < n; i++) {
            p[i] = exp(((double)c[i].logit - m) / r->opts.temperature);
            sum += p[i];
        }
        if (!all) {
            if (isnan(*norm)) {
                *norm = softmax_norm(logits, r->vocab, m, r->opts.temperature);
            }
            sum = *norm;
        }
    }
    if (r->opts.top_p < 1.0f) {
        double acc = 0.0;
        int keep = -1;
        for (int i = 0; i < n; i++) {
            acc += p[i] / sum;
            if (acc >= r->opts.top_p) {
                keep = i + 1;
                break;
            }
        }
        if (keep < 0) {
            if (!all) {
                *want_out = head_needed(n, (r->opts.top_p - acc) * sum, p[n - 1]);
                return -1;
            }
            keep = n;
        }
        n = keep;
        sum = 0.0;
        for (int i = 0; i < n; i++) {
            sum += p[i];
        }
        all = true;
    }
    if (isnan(*draw)) {
        *draw = mt_sampler_uniform(r);
    }
    double u = *draw * sum;
    double acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += p[i];
        if (u < acc) {
            return c[i].id;
        }
    }
    if (!all) {
        *want_out = head_needed(n, u - acc, p[n - 1]);
        return -1;
    }
    return c[n - 1].id;
}

mt_status_t
mt_sampler_sample(struct mt_sampler *r, const float *logits, int32_t *token_out)
{
    if (r->opts.temperature <= 0.0f) {
        int32_t t = mt_sampler_argmax(logits, r->vocab);
        if (t < 0) {
            return mt_fail(MT_ERR_INVAL, 0, "cannot sample: every logit is NaN");
        }
        *token_out = t;
        return MT_OK;
    }
    /* top-k normalises over exactly its k best, so those are the head; else start small */
    bool top_k = r->opts.top_k > 0 && r->opts.top_k < r->vocab;
    int k = top_k ? r->opts.top_k : SAMPLER_HEAD;
    double norm = NAN;
    double draw = NAN;
    for (;;) {
        if (k > r->vocab) {
            k = r->vocab;
        }
        bool all_sorted = !top_k && k > SAMPLER_RADIX_MIN; /* a long head: sort them all */
        int n = all_sorted ? sort_all(logits, r->vocab, r->c, r->c2)
                           : select_best(logits, r->vocab, k, r->c);
        if (n == 0) {
            return mt_fail(MT_ERR_INVAL, 0, "cannot sample: no finite logit");
        }
        int want = 0;
        int32_t t = sample_head(r, logits, n, all_sorted || top_k || n < k || k == r->vocab,
                                &norm, &draw, &want);
        if (t >= 0) {
            *token_out = t;
            return MT_OK;
        }
        /* at least double; jump to what the missing weight needs; past half the vocabulary
         * take all of it, which costs little more than a heap of half */
        int next = k > r->vocab / 2 ? r->vocab : 2 * k;
        if (want > next) {
            next = want;
        }
        k = next > r->vocab / 2 ? r->vocab : next;
    }
}
