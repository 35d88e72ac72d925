/* SPDX-License-Identifier: MIT */
/*
 * json_constraint.c - the JSON grammar applied to a vocabulary's tokens (see json_constraint.h).
 */
#include <config.h>

#include "runtime/text/json_constraint.h"

#include "runtime/text/json_schema.h"
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
    const struct mt_json_schema *schema; /* borrowed, or NULL: any object */
    struct mt_json_prefix text;          /* the answer so far, without a schema */
    struct mt_json_schema_state held;    /* ... with one */
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
    /* each id once, so that mask counts it once */
    c->n_stop = 0;
    for (int i = 0; i < n_stop; i++) {
        bool seen = false;
        for (int j = 0; j < c->n_stop && !seen; j++) {
            seen = c->stop_ids[j] == stop_ids[i];
        }
        if (!seen) {
            c->stop_ids[c->n_stop++] = stop_ids[i];
        }
    }
    mt_json_constraint_reset(c, true, NULL);
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
mt_json_constraint_reset(struct mt_json_constraint *c, bool active,
                         const struct mt_json_schema *schema)
{
    mt_json_prefix_init(&c->text, true);
    mt_json_schema_start(&c->held);
    c->schema = schema;
    c->active = active;
}

/* The answer would still hold after these bytes. */
static bool
would_hold(const struct mt_json_constraint *c, const char *b, size_t len)
{
    if (c->schema == NULL) {
        struct mt_json_prefix t = c->text;
        return mt_json_prefix_feed(&t, b, len) == MT_JSON_OK;
    }
    struct mt_json_schema_state t;
    return mt_json_schema_try(c->schema, &c->held, b, len, &t) == MT_JSON_OK;
}

static bool
answer_complete(const struct mt_json_constraint *c)
{
    return c->schema != NULL ? mt_json_schema_complete(&c->held)
                             : mt_json_prefix_complete(&c->text);
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
    if (answer_complete(c)) { /* the object is closed: only a stop id */
        for (int id = 0; id < c->vocab; id++) {
            if (!is_stop(c, id)) {
                logits[id] = -INFINITY;
            }
        }
        return mask_stops(c, logits, true);
    }
    /* which first bytes can follow at all: most tokens fail there, without a copy of the state */
    bool first_ok[256];
    for (int b = 0; b < 256; b++) {
        char one = (char)b;
        first_ok[b] = would_hold(c, &one, 1);
    }
    bool in_string = c->schema != NULL ? mt_json_schema_in_free_string(&c->held)
                                       : mt_json_prefix_in_string(&c->text);
    mask_stops(c, logits, false); /* the object is still open */
    for (int id = 0; id < c->vocab; id++) {
        bool ok = false;
        if (c->kind[id] == KIND_PLAIN && in_string) {
            ok = true; /* the grammar would read the same bytes and stay in the string */
        } else if (c->kind[id] != KIND_NONE && first_ok[(unsigned char)c->bytes[id][0]]) {
            ok = c->len[id] == 1 || would_hold(c, c->bytes[id], c->len[id]);
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
    if (!c->active || id < 0 || id >= c->vocab || c->kind[id] == KIND_NONE) {
        return;
    }
    if (c->schema != NULL) {
        mt_json_schema_feed(c->schema, &c->held, c->bytes[id], c->len[id]);
    } else {
        mt_json_prefix_feed(&c->text, c->bytes[id], c->len[id]);
    }
}

bool
mt_json_constraint_complete(const struct mt_json_constraint *c)
{
    return c->active && answer_complete(c);
}
