/* SPDX-License-Identifier: MIT */
/*
 * test_json_constraint.c - runtime/text/json_constraint.c over DeepSeek-V3.2's real vocabulary
 * (tests/data/tokenizer): at states all over the grammar the mask lets through exactly the
 * tokens whose whole text keeps the reply the start of a JSON object (checked against the plain
 * rule: feed every token's bytes, no shortcut), never an added token, and a stop id only once
 * the object is closed; then walks that sample from random logits through the mask end, when
 * they end by the stop id, in text that jansson parses as one object.
 */
#include <config.h>

#include "runtime/text/json_constraint.h"
#include "runtime/base/clock.h"
#include "runtime/base/rng.h"
#include "runtime/text/tokenizer.h"
#include "tests/tap.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define VOCAB 129280 /* the model's rows; the tokenizer has 128,815 ids of them */

static struct mt_tokenizer *tok;
static int32_t eos;

/* The plain rule for one id after the text so far. */
static bool
allowed_by_rule(const struct mt_json_prefix *text, int32_t id)
{
    size_t len;
    const char *b = mt_tokenizer_token_bytes(tok, id, &len);
    struct mt_json_prefix t = *text;

    if (id == eos) {
        return mt_json_prefix_complete(text);
    }
    if (b == NULL || len == 0 || mt_tokenizer_is_added(tok, id) || mt_json_prefix_complete(text)) {
        return false;
    }
    return mt_json_prefix_feed(&t, b, len) == MT_JSON_OK;
}

/* Walk c and a reference prefix along the ids of text, then compare one mask with the rule. */
static void
check_state(struct mt_json_constraint *c, const char *text, float *logits)
{
    struct mt_json_prefix ref;
    int32_t *ids = NULL;
    size_t n = 0;
    int wrong = 0, first_wrong = -1, added_let = 0;
    size_t left, want = 0;

    mt_json_constraint_reset(c, true, NULL);
    mt_json_prefix_init(&ref, true);
    if (mt_tokenizer_encode(tok, text, strlen(text), false, &ids, &n) != MT_OK) {
        tap_bail_out("cannot encode a test text");
    }
    for (size_t i = 0; i < n; i++) {
        mt_json_constraint_accept(c, ids[i]);
    }
    mt_json_prefix_feed(&ref, text, strlen(text));
    free(ids);
    for (int i = 0; i < VOCAB; i++) {
        logits[i] = 0.0f;
    }
    left = mt_json_constraint_mask(c, logits);
    for (int32_t id = 0; id < VOCAB; id++) {
        bool let = logits[id] == 0.0f;
        bool rule = allowed_by_rule(&ref, id);
        want += rule;
        if (let != rule && wrong++ == 0) {
            first_wrong = id;
        }
        added_let += let && id != eos && mt_tokenizer_is_added(tok, id);
    }
    tap_ok(wrong == 0 && left == want && added_let == 0 &&
           mt_json_constraint_complete(c) == mt_json_prefix_complete(&ref),
           "after '%s': %zu ids let through, the rule says %zu (%d differ, first %d; %d added)",
           tap_one_line(text, strlen(text)), left, want, wrong, first_wrong, added_let);
}

/* Sample from random logits through the mask until the stop id or max steps. */
static void
walks(struct mt_json_constraint *c, float *logits)
{
    struct mt_rng r;
    int n_walks = 60, ended = 0, parsed = 0, steps_total = 0, shown = 0;
    double mask_s = 0;
    char *text = malloc(1 << 16);
    float *bonus = calloc(VOCAB, sizeof(float));

    if (text == NULL || bonus == NULL) {
        tap_bail_out("out of memory");
    }
    /* tokens that close or open things get a bonus, so that walks end */
    for (int32_t id = 0; id < VOCAB; id++) {
        size_t len;
        const char *b = mt_tokenizer_token_bytes(tok, id, &len);
        for (size_t i = 0; b != NULL && i < len; i++) {
            if (b[i] == '}' || b[i] == ']' || b[i] == '"' || b[i] == ',') {
                bonus[id] = 2.0f;
            }
        }
    }
    mt_rng_init(&r, 7);
    for (int w = 0; w < n_walks; w++) {
        size_t n = 0;
        bool stop = false;
        mt_json_constraint_reset(c, true, NULL);
        for (int step = 0; step < 200 && !stop; step++) {
            for (int i = 0; i < VOCAB; i++) {
                logits[i] = (float)mt_rng_uniform(&r) * 3.0f + bonus[i];
            }
            logits[eos] = 10.0f;
            double t0 = mt_clock_now();
            size_t left = mt_json_constraint_mask(c, logits);
            mask_s += mt_clock_now() - t0;
            steps_total++;
            if (left == 0) {
                break;
            }
            int32_t best = 0;
            for (int32_t i = 1; i < VOCAB; i++) {
                best = logits[i] > logits[best] ? i : best;
            }
            if (best == eos) {
                stop = true;
                break;
            }
            mt_json_constraint_accept(c, best);
            size_t len;
            const char *b = mt_tokenizer_token_bytes(tok, best, &len);
            if (n + len < (1 << 16)) {
                memcpy(text + n, b, len);
                n += len;
            }
        }
        if (stop) {
            ended++;
            json_error_t err;
            json_t *j = json_loadb(text, n, 0, &err); /* an object or array, as JSON mode */
            if (j != NULL && json_is_object(j)) {
                parsed++;
                if (n > 8 && shown++ < 2) {
                    tap_diag("walk %d: %s", w, tap_one_line(text, n));
                }
            } else {
                tap_diag("walk %d ended in text jansson refuses (%s): %s", w, err.text,
                         tap_one_line(text, n));
            }
            json_decref(j);
        }
    }
    tap_diag("%d walks, %d steps: %.2f ms per mask of %d ids", n_walks, steps_total,
             1e3 * mask_s / steps_total, VOCAB);
    tap_ok(ended >= n_walks / 2, "%d of %d random walks ended by the stop id", ended, n_walks);
    tap_ok(parsed == ended, "each of them is a JSON object to jansson (%d of %d)", parsed, ended);
    free(text);
    free(bonus);
}

/*
 * The count mask returns and the stop ids' rules, with a second constraint whose stop ids are
 * eos, a plain word (not an added token: the grammar alone would let it into a string), one
 * below the vocabulary, its first id past it and one further (ignored). logits has room past
 * VOCAB, so that a write or a read there shows.
 */
static void
check_counts_and_stops(float *logits)
{
    int32_t word = mt_tokenizer_token_id(tok, "Hello");
    int32_t stops[5] = {eos, word, -5, VOCAB, VOCAB + 3};
    struct mt_json_constraint *c = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    bool ok;

    mt_log_set_quiet(true);
    ok = mt_json_constraint_create(tok, 0, stops, 1, &c) == MT_ERR_INVAL;
    mt_log_set_quiet(false);
    tap_ok(ok, "a constraint over 0 ids is MT_ERR_INVAL");

    if (word < 0 || mt_json_constraint_create(tok, VOCAB, stops, 5, &c) != MT_OK) {
        tap_bail_out("cannot make the second constraint");
    }
    /* every other id already -inf: the count is of what is left, whatever the state */
    for (int k = 0; k < 3; k++) {
        mt_json_constraint_reset(c, k > 0, NULL);
        if (k == 2 && mt_tokenizer_encode(tok, "{\"a\": \"x", 8, false, &ids, &n_ids) == MT_OK) {
            for (size_t i = 0; i < n_ids; i++) {
                mt_json_constraint_accept(c, ids[i]);
            }
            free(ids);
        }
        for (int i = 0; i < VOCAB + 8; i++) {
            logits[i] = i % 2 == 0 ? -INFINITY : 1.0f;
        }
        logits[eos] = logits[word] = logits[VOCAB] = logits[VOCAB + 3] = 1.0f;
        size_t left = mt_json_constraint_mask(c, logits), finite = 0;
        for (int i = 0; i < VOCAB; i++) {
            finite += logits[i] != -INFINITY;
        }
        tap_ok(left == finite && logits[eos] == -INFINITY && logits[word] == -INFINITY &&
                   logits[VOCAB] == 1.0f && logits[VOCAB + 3] == 1.0f,
               "%s: mask returns the ids left (%zu, counted %zu); eos and the stop word are out",
               k == 0 ? "inactive" : k == 1 ? "at the start" : "inside a string", left, finite);
    }

    /* a whole object: the stop ids inside the vocabulary are left, and only those not -inf */
    mt_json_constraint_reset(c, true, NULL);
    if (mt_tokenizer_encode(tok, "{}", 2, false, &ids, &n_ids) != MT_OK) {
        tap_bail_out("cannot encode {}");
    }
    for (size_t i = 0; i < n_ids; i++) {
        mt_json_constraint_accept(c, ids[i]);
    }
    free(ids);
    for (int i = 0; i < VOCAB + 8; i++) {
        logits[i] = 1.0f;
    }
    size_t both = mt_json_constraint_mask(c, logits);
    ok = both == 2 && logits[eos] == 1.0f && logits[word] == 1.0f && logits[0] == -INFINITY;
    for (int i = 0; i < VOCAB + 8; i++) {
        logits[i] = 1.0f;
    }
    logits[word] = -INFINITY;
    size_t one = mt_json_constraint_mask(c, logits);
    tap_ok(ok && one == 1 && mt_json_constraint_complete(c),
           "a whole object: the 2 stop ids in the vocabulary are left (%zu), 1 when the other was "
           "already -inf (%zu)", both, one);
    mt_json_constraint_destroy(c);

    /* a stop id given twice is one id left, counted once */
    int32_t twice[2] = {eos, eos};
    if (mt_json_constraint_create(tok, VOCAB, twice, 2, &c) != MT_OK ||
        mt_tokenizer_encode(tok, "{}", 2, false, &ids, &n_ids) != MT_OK) {
        tap_bail_out("cannot make the third constraint");
    }
    for (size_t i = 0; i < n_ids; i++) {
        mt_json_constraint_accept(c, ids[i]);
    }
    free(ids);
    for (int i = 0; i < VOCAB; i++) {
        logits[i] = 1.0f;
    }
    size_t dup = mt_json_constraint_mask(c, logits);
    tap_ok(dup == 1 && logits[eos] == 1.0f, "a stop id listed twice is counted once (%zu)", dup);
    mt_json_constraint_destroy(c);
}

int
main(void)
{
    struct mt_json_constraint *c = NULL;
    float *logits = malloc((VOCAB + 8) * sizeof(float)); /* 8 past: check_counts_and_stops */

    tap_plan(0);
    if (logits == NULL || mt_tokenizer_load(tap_data_path("tokenizer"), &tok) != MT_OK) {
        tap_bail_out("cannot load tests/data/tokenizer");
    }
    eos = mt_tokenizer_eos(tok);
    tap_ok(eos >= 0 && mt_json_constraint_create(tok, VOCAB, &eos, 1, &c) == MT_OK,
           "a constraint over the V3.2 vocabulary, stop id %d", (int)eos);

    static const char *const states[] = {
        "", "\n", "{", "{\"", "{\"na", "{\"name\"", "{\"name\":", "{\"name\": \"Al",
        "{\"name\": \"caf\xc3", "{\"a\": \"\\u00", "{\"a\": \"\\ud83d", "{\"a\": 12",
        "{\"a\": 1.5e", "{\"a\": tr", "{\"a\": [", "{\"a\": [1, {\"b\": null}", "{\"a\": {}",
        "{\"a\": 1}", "{\"a\": 1} ",
    };
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        check_state(c, states[i], logits);
    }

    /* inactive (reasoning first): everything but the stop id, then the grammar */
    mt_json_constraint_reset(c, false, NULL);
    for (int i = 0; i < VOCAB; i++) {
        logits[i] = 1.0f;
    }
    size_t left = mt_json_constraint_mask(c, logits);
    int32_t brace = mt_tokenizer_token_id(tok, "{"), word = mt_tokenizer_token_id(tok, "Hello");
    mt_json_constraint_accept(c, word);
    mt_json_constraint_accept(c, brace); /* the reasoning's, not the answer's */
    mt_json_constraint_begin(c);
    for (int i = 0; i < VOCAB; i++) {
        logits[i] = 1.0f;
    }
    mt_json_constraint_mask(c, logits);
    tap_ok(left == VOCAB - 1 && word >= 0 && brace >= 0 && logits[brace] == 1.0f &&
           logits[word] == -INFINITY && logits[eos] == -INFINITY,
           "inactive: all %zu ids but the stop id; after begin (the reasoning's 'Hello' and '{' "
           "not the answer's): '{' yes, 'Hello' no", left);

    walks(c, logits);
    check_counts_and_stops(logits);

    mt_json_constraint_destroy(c);
    mt_tokenizer_destroy(tok);
    free(logits);
    return tap_done();
}
