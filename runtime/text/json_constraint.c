/* SPDX-License-Identifier: MIT */
/*
 * json_constraint.c - the JSON grammar applied to a vocabulary's tokens (see json_constraint.h).
 */
#include <config.h>

#include "runtime/text/json_constraint.h"

#include "runtime/text/tokenizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum token_kind {
    KIND_NONE,  /* never allowed: no token, or an added one */
    KIND_PLAIN, /* text that may sit inside a JSON string as it is */
    KIND_OTHER, /* anything else: its bytes are tried */
};

struct mt_json_constraint {
    int vocab;
    const char **bytes;    /* [vocab]: each token's bytes (the tokenizer's), or NULL */
    uint32_t *len;         /* [vocab] */
    uint8_t *kind;         /* [vocab]: enum token_kind */
    int32_t *stop_ids;     /* [n_stop] */
    int n_stop;
    bool active;           /* the grammar applies (the answer has begun) */
    struct mt_json_prefix text; /* the answer so far */
};

/* Read inside a string, the token leaves the reader inside it with no escape or character
 * open: then it may follow any such place in a string, whatever the containers around. */
static bool
is_plain(const char *b, size_t len)
{
    struct mt_json_prefix p;

    mt_json_prefix_init(&p, false);
    return mt_json_prefix_feed(&p, "\"", 1) == MT_JSON_OK &&
           mt_json_prefix_feed(&p, b, len) == MT_JSON_OK && mt_json_prefix_in_string(&p);
}

mt_status_t
mt_json_constraint_create(const struct mt_tokenizer *tok, int vocab, const int32_t *stop_ids,
                          int n_stop, struct mt_json_constraint **out)
{
    struct mt_json_constraint *c;

    if (vocab < 1 || n_stop < 0) {
        return mt_fail(MT_ERR_INVAL, 0, "a JSON constraint over %d ids", vocab);
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->bytes = calloc((size_t)vocab, sizeof(*c->bytes))) == NULL ||
        (c->len = calloc((size_t)vocab, sizeof(*c->len))) == NULL ||
        (c->kind = calloc((size_t)vocab, 1)) == NULL ||
        (c->stop_ids = malloc((size_t)(n_stop > 0 ? n_stop : 1) * sizeof(int32_t))) == NULL) {
        mt_json_constraint_destroy(c);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the JSON constraint's token table");
    }
    c->vocab = vocab;
    for (int32_t id = 0; id < vocab; id++) {
        size_t len = 0;
        const char *b = mt_tokenizer_token_bytes(tok, id, &len);
        if (b == NULL || len == 0 || len > UINT32_MAX || mt_tokenizer_is_added(tok, id)) {
            continue; /* KIND_NONE */
        }
        c->bytes[id] = b;
        c->len[id] = (uint32_t)len;
        c->kind[id] = is_plain(b, len) ? KIND_PLAIN : KIND_OTHER;
    }
    memcpy(c->stop_ids, stop_ids, (size_t)n_stop * sizeof(int32_t));
    c->n_stop = n_stop;
    mt_json_constraint_reset(c, true);
    *out = c;
    return MT_OK;
}

void
mt_json_constraint_destroy(struct mt_json_constraint *c)
{
    if (c == NULL) {
        return;
    }
    free(c->bytes);
    free(c->len);
    free(c->kind);
    free(c->stop_ids);
    free(c);
}

void
mt_json_constraint_reset(struct mt_json_constraint *c, bool active)
{
    mt_json_prefix_init(&c->text, true);
    c->active = active;
}

void
mt_json_constraint_begin(struct mt_json_constraint *c)
{
    c->active = true;
}

static bool
is_stop(const struct mt_json_constraint *c, int32_t id)
{
    for (int i = 0; i < c->n_stop; i++) {
        if (c->stop_ids[i] == id) {
            return true;
        }
    }
    return false;
}

/* Count the stop ids inside the vocabulary (each once) and let them through or not. */
static size_t
mask_stops(const struct mt_json_constraint *c, float *logits, bool allow)
{
    size_t n = 0;

    for (int i = 0; i < c->n_stop; i++) {
        int32_t id = c->stop_ids[i];
        if (id < 0 || id >= c->vocab) {
            continue;
        }
        if (!allow) {
            logits[id] = -INFINITY;
        } else if (logits[id] != -INFINITY) {
            n++;
        }
    }
    return n;
}

size_t
mt_json_constraint_mask(struct mt_json_constraint *c, float *logits)
{
    size_t n = 0;

    if (!c->active) {
        mask_stops(c, logits, false); /* the reasoning may not end the reply */
        for (int id = 0; id < c->vocab; id++) {
            n += logits[id] != -INFINITY;
        }
        return n;
    }
    if (mt_json_prefix_complete(&c->text)) { /* the object is closed: only a stop id */
        for (int id = 0; id < c->vocab; id++) {
            if (!is_stop(c, id)) {
                logits[id] = -INFINITY;
            }
        }
        return mask_stops(c, logits, true);
    }
    bool in_string = mt_json_prefix_in_string(&c->text);
    mask_stops(c, logits, false); /* the object is still open */
    for (int id = 0; id < c->vocab; id++) {
        bool ok = false;
        if (c->kind[id] == KIND_PLAIN && in_string) {
            ok = true; /* the grammar would read the same bytes and stay in the string */
        } else if (c->kind[id] != KIND_NONE) {
            struct mt_json_prefix t = c->text;
            ok = mt_json_prefix_feed(&t, c->bytes[id], c->len[id]) == MT_JSON_OK;
        }
        if (!ok) {
            logits[id] = -INFINITY;
        } else {
            n += logits[id] != -INFINITY;
        }
    }
    return n;
}

void
mt_json_constraint_accept(struct mt_json_constraint *c, int32_t id)
{
    if (c->active && id >= 0 && id < c->vocab && c->kind[id] != KIND_NONE) {
        mt_json_prefix_feed(&c->text, c->bytes[id], c->len[id]);
    }
}

bool
mt_json_constraint_complete(const struct mt_json_constraint *c)
{
    return c->active && mt_json_prefix_complete(&c->text);
}
