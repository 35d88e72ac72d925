/* SPDX-License-Identifier: MIT */
/*
 * test_trace.c - expert-activation traces: counts, transitions (decode and batched), probabilities,
 * file round trip, and clear errors for bad input and bad files.
 */
#include <config.h>

#include "runtime/base/status.h"
#include "runtime/plan/trace.h"
#include "tests/tap.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

/* A small trace: 5 layers (0 dense), 8 experts, k 2. */
static struct mt_trace *
small_trace(void)
{
    struct mt_trace *t = NULL;
    const int a1[2] = {0, 1};
    const int b1[2] = {2, 3};
    const int c1[2] = {1, 2};
    const int a2[2] = {0, 5};
    const int b2[2] = {2, 7};

    if (mt_trace_create(5, 8, 2, &t) != MT_OK) {
        return NULL;
    }
    /* token 1 */
    mt_trace_record(t, 1, a1, 2);
    mt_trace_record(t, 2, b1, 2);
    mt_trace_record(t, 3, c1, 2);
    /* token 2 (layer 1 again: a new token) */
    mt_trace_record(t, 1, a2, 2);
    mt_trace_record(t, 2, b2, 2);
    return t;
}

static bool
traces_equal(const struct mt_trace *a, const struct mt_trace *b)
{
    if (mt_trace_n_layers(a) != mt_trace_n_layers(b) ||
        mt_trace_n_experts(a) != mt_trace_n_experts(b) || mt_trace_k(a) != mt_trace_k(b) ||
        mt_trace_tokens(a) != mt_trace_tokens(b)) {
        return false;
    }
    for (int l = 0; l < mt_trace_n_layers(a); l++) {
        if (mt_trace_layer_tokens(a, l) != mt_trace_layer_tokens(b, l) ||
            mt_trace_from_layer(a, l) != mt_trace_from_layer(b, l)) {
            return false;
        }
        for (int i = 0; i < mt_trace_n_experts(a); i++) {
            if (mt_trace_count(a, l, i) != mt_trace_count(b, l, i)) {
                return false;
            }
            for (int j = 0; j < mt_trace_n_experts(a); j++) {
                if (mt_trace_transition(a, l, i, j) != mt_trace_transition(b, l, i, j)) {
                    return false;
                }
            }
        }
    }
    return true;
}

int
main(void)
{
    struct mt_trace *t;
    struct mt_trace *u = NULL;
    struct mt_trace *bad = NULL;
    const char *dir;
    char path[512];
    double sum;
    mt_status_t st;

    tap_plan(0);
    mt_log_set_quiet(true);

    t = small_trace();
    tap_ok(t != NULL, "create and record a small trace");
    if (t == NULL) {
        return tap_done();
    }
    tap_ok(mt_trace_tokens(t) == 2 && mt_trace_layer_tokens(t, 1) == 2 &&
               mt_trace_layer_tokens(t, 3) == 1 && mt_trace_layer_tokens(t, 0) == 0,
           "tokens counted per layer (2, 2, 1) and in total (2)");
    tap_ok(mt_trace_count(t, 1, 0) == 2 && mt_trace_count(t, 1, 1) == 1 &&
               mt_trace_count(t, 1, 5) == 1 && mt_trace_count(t, 2, 2) == 2 &&
               mt_trace_count(t, 2, 4) == 0,
           "expert counts per layer");
    tap_ok(mt_trace_transition(t, 2, 0, 2) == 2 && mt_trace_transition(t, 2, 1, 3) == 1 &&
               mt_trace_transition(t, 2, 5, 7) == 1 && mt_trace_transition(t, 2, 1, 7) == 0 &&
               mt_trace_transition(t, 3, 3, 1) == 1 && mt_trace_from_layer(t, 2) == 1,
           "transitions pair each token's ids at consecutive layers");
    tap_ok(mt_trace_transition(t, 1, 2, 0) == 0 && mt_trace_transition(t, 1, 1, 0) == 0 &&
               mt_trace_from_layer(t, 1) == -1,
           "a new token (earlier layer) starts without a transition from the old one");
    sum = 0;
    for (int e = 0; e < 8; e++) {
        sum += mt_trace_probability(t, 2, e);
    }
    tap_ok(sum > 1.999999 && sum < 2.000001 && mt_trace_probability(t, 2, 2) == 1.0,
           "probabilities of a layer sum to k (%g) and count / tokens", sum);
    tap_ok(mt_trace_probability(t, 4, 3) == 2.0 / 8.0, "a layer without tokens is uniform k/E");
    tap_ok(mt_trace_probability(t, 3, 1) == 1.0 && mt_trace_probability(t, 3, 0) == 0.0,
           "a layer of one token is that token's choice, not uniform");

    /* batched prefill: slot t pairs with slot t */
    {
        struct mt_trace *b = NULL;
        const int l1[4] = {0, 1, 6, 7};
        const int l2[4] = {2, 3, 4, 5};
        st = mt_trace_create(3, 8, 2, &b);
        st = st == MT_OK ? mt_trace_record_batch(b, 1, l1, 2, 2) : st;
        st = st == MT_OK ? mt_trace_record_batch(b, 2, l2, 2, 2) : st;
        tap_ok(st == MT_OK && mt_trace_transition(b, 2, 0, 2) == 1 &&
                   mt_trace_transition(b, 2, 6, 4) == 1 && mt_trace_transition(b, 2, 0, 4) == 0 &&
                   mt_trace_layer_tokens(b, 2) == 2,
               "batched records pair each token with itself across layers");
        mt_trace_destroy(b);
    }

    /* bad input */
    {
        const int bad_id[2] = {0, 8};
        const int ok_id[3] = {0, 1, 2};
        tap_ok(mt_trace_record(t, 2, bad_id, 2) == MT_ERR_INVAL &&
                   strstr(mt_last_error(), "out of range") != NULL &&
                   mt_trace_count(t, 2, 2) == 2 && mt_trace_count(t, 2, 0) == 0,
               "expert id out of range is rejected and records nothing: %s", mt_last_error());
        tap_ok(mt_trace_record(t, 2, ok_id, 3) == MT_ERR_INVAL, "wrong k is rejected: %s",
               mt_last_error());
        tap_ok(mt_trace_record(t, 5, ok_id, 2) == MT_ERR_INVAL, "layer out of range is rejected");
        tap_ok(mt_trace_create(4, 8, 9, &bad) == MT_ERR_INVAL && bad == NULL,
               "k > n_experts is rejected");
        tap_ok(mt_trace_create(0, 8, 2, &bad) == MT_ERR_INVAL && bad == NULL &&
                   mt_trace_create(4, 0, 1, &bad) == MT_ERR_INVAL && bad == NULL &&
                   mt_trace_create(4, 8, 0, &bad) == MT_ERR_INVAL && bad == NULL,
               "0 layers, 0 experts or k 0 are rejected: %s", mt_last_error());
        /* -1 would index the previous layer's counts (or before the arrays) */
        const int neg_id[2] = {-1, 0};
        tap_ok(mt_trace_record(t, 2, neg_id, 2) == MT_ERR_INVAL && mt_trace_count(t, 1, 7) == 0 &&
                   mt_trace_count(t, 2, 0) == 0,
               "a negative expert id is rejected and records nothing: %s", mt_last_error());
        tap_ok(mt_trace_record(t, -1, ok_id, 2) == MT_ERR_INVAL &&
                   strstr(mt_last_error(), "layer -1") != NULL,
               "layer -1 is rejected: %s", mt_last_error());
        /* every token of a batch is checked before any is recorded, not only the first */
        const int batch_bad[4] = {0, 1, 2, 8};
        tap_ok(mt_trace_record_batch(t, 3, batch_bad, 2, 2) == MT_ERR_INVAL &&
                   mt_trace_layer_tokens(t, 3) == 1 && mt_trace_count(t, 3, 0) == 0,
               "a batch whose second token has an id out of range records nothing: %s",
               mt_last_error());
        tap_ok(mt_trace_record_batch(t, 3, ok_id, 0, 2) == MT_OK &&
                   mt_trace_layer_tokens(t, 3) == 1 && mt_trace_tokens(t) == 2,
               "a batch of no tokens is fine and records nothing");
    }

    /* slots (trace.h): a later layer continues a slot's token, the same or an earlier one
       starts a new token, and only transitions from a layer's first previous layer count */
    {
        struct mt_trace *s = NULL;
        struct mt_trace *s2 = NULL;
        struct mt_trace *s3 = NULL;
        struct mt_trace *e = NULL;
        const int a[2] = {0, 1}, b[4] = {2, 3, 4, 5}, c[2] = {6, 7}, d[2] = {1, 2};
        st = mt_trace_create(4, 8, 2, &s);
        st = st == MT_OK ? mt_trace_record(s, 0, a, 2) : st;
        st = st == MT_OK ? mt_trace_record_batch(s, 1, b, 2, 2) : st;
        tap_ok(st == MT_OK && mt_trace_from_layer(s, 1) == 0 &&
                   mt_trace_transition(s, 1, 0, 2) == 1 && mt_trace_transition(s, 1, 1, 3) == 1 &&
                   mt_trace_transition(s, 1, 0, 4) == 0,
               "a batch larger than the last keeps slot 0's token, which continues from layer 0");
        st = mt_trace_create(4, 8, 2, &s2);
        st = st == MT_OK ? mt_trace_record(s2, 3, a, 2) : st;
        st = st == MT_OK ? mt_trace_record(s2, 3, c, 2) : st;
        tap_ok(st == MT_OK && mt_trace_from_layer(s2, 3) == -1 &&
                   mt_trace_transition(s2, 3, 0, 6) == 0 && mt_trace_layer_tokens(s2, 3) == 2,
               "a second record at the same layer is a new token, not a transition");
        /* token A: layer 0 -> 2; token B: layer 1 -> 2, whose pairs are not from layer 0 */
        st = mt_trace_create(4, 8, 2, &s3);
        st = st == MT_OK ? mt_trace_record(s3, 0, a, 2) : st;
        st = st == MT_OK ? mt_trace_record(s3, 2, d, 2) : st;
        st = st == MT_OK ? mt_trace_record(s3, 1, c, 2) : st;
        st = st == MT_OK ? mt_trace_record(s3, 2, a, 2) : st;
        tap_ok(st == MT_OK && mt_trace_from_layer(s3, 2) == 0 &&
                   mt_trace_transition(s3, 2, 0, 1) == 1 && mt_trace_transition(s3, 2, 6, 0) == 0 &&
                   mt_trace_count(s3, 2, 0) == 1,
               "layer 2 keeps its transitions from layer 0; a token from layer 1 adds none there");
        /* merging into an empty trace takes the transitions too */
        st = mt_trace_create(5, 8, 2, &e);
        tap_ok(st == MT_OK && mt_trace_merge(e, t, "t") == MT_OK && traces_equal(e, t),
               "merging into an empty trace gives the same counts, tokens and transitions");
        mt_trace_destroy(e);
        mt_trace_destroy(s3);
        mt_trace_destroy(s2);
        mt_trace_destroy(s);
        const int one[1] = {0};
        tap_ok(mt_trace_record(t, 2, one, 1) == MT_ERR_INVAL && mt_trace_count(t, 2, 0) == 0,
               "fewer experts per token than the trace's k are rejected: %s", mt_last_error());
        tap_ok(mt_trace_count(t, 0, 8) == 0 && mt_trace_count(t, 1, 0) == 2,
               "a count past the last expert is 0, not the next layer's");
        /* one past the last layer, expert or transition reads nothing past the arrays
           (the heap's next bytes are rarely all zero, so an off-by-one shows) */
        bool past = mt_trace_layer_tokens(t, 5) == 0 && mt_trace_from_layer(t, 5) == -1 &&
                    mt_trace_probability(t, 4, 8) == 0.0 && mt_trace_probability(t, 2, -1) == 0.0;
        for (int i = 0; i < 8; i++) {
            past = past && mt_trace_count(t, 5, i) == 0 && mt_trace_transition(t, 5, i, i) == 0 &&
                   mt_trace_transition(t, 2, 8, i) == 0 && mt_trace_transition(t, 2, i, 8) == 0;
        }
        tap_ok(past, "queries one past the last layer or expert are 0 (from_layer -1)");
    }

    /* round trip */
    dir = tap_tmpdir();
    snprintf(path, sizeof(path), "%s/trace.json", dir);
    st = mt_trace_save(t, path);
    tap_ok(st == MT_OK, "save trace");
    /* trace.h: "tokens" is the max over layers, and layers without a record are left out */
    {
        json_t *root = json_load_file(path, 0, NULL);
        json_t *layers = json_object_get(root, "layers");
        bool only_recorded = json_array_size(layers) == 3;
        for (size_t i = 0; i < json_array_size(layers); i++) {
            json_t *tok = json_object_get(json_array_get(layers, i), "tokens");
            only_recorded = only_recorded && json_integer_value(tok) > 0;
        }
        tap_ok(json_integer_value(json_object_get(root, "tokens")) == 2 && only_recorded,
               "the file says tokens 2 and lists only the 3 layers with records");
        json_decref(root);
    }
    st = mt_trace_load(path, &u);
    tap_ok(st == MT_OK && u != NULL && traces_equal(t, u),
           "load gives the same counts, tokens and transitions");
    tap_ok(u != NULL && mt_trace_check_dims(u, path, 5, 8, 2) == MT_OK,
           "check_dims accepts the model it was recorded on");
    tap_ok(u != NULL && mt_trace_check_dims(u, path, 61, 8, 2) == MT_ERR_FORMAT &&
               strstr(mt_last_error(), "61") != NULL,
           "check_dims names a layer-count mismatch: %s", mt_last_error());
    tap_ok(u != NULL && mt_trace_check_dims(u, path, 5, 256, 2) == MT_ERR_FORMAT,
           "check_dims rejects another expert count: %s", mt_last_error());
    tap_ok(u != NULL && mt_trace_check_dims(u, path, 5, 8, 3) == MT_ERR_FORMAT &&
               strstr(mt_last_error(), "experts per token") != NULL,
           "check_dims rejects another k: %s", mt_last_error());
    mt_trace_destroy(u);
    u = NULL;
    /* transitions into layer 1 (from layer 0) round trip too, and the last layer, here the
       one with the most tokens, is saved and counted like the others */
    {
        struct mt_trace *r = NULL;
        const int a[2] = {0, 1}, b[2] = {2, 3};
        snprintf(path, sizeof(path), "%s/l1.json", dir);
        st = mt_trace_create(2, 8, 2, &r);
        st = st == MT_OK ? mt_trace_record(r, 0, a, 2) : st;
        st = st == MT_OK ? mt_trace_record(r, 1, b, 2) : st;
        st = st == MT_OK ? mt_trace_record(r, 1, a, 2) : st; /* a second token, layer 1 only */
        st = st == MT_OK ? mt_trace_save(r, path) : st;
        st = st == MT_OK ? mt_trace_load(path, &u) : st;
        tap_ok(st == MT_OK && traces_equal(r, u) && mt_trace_from_layer(u, 1) == 0 &&
                   mt_trace_transition(u, 1, 0, 2) == 1 && mt_trace_count(u, 1, 0) == 1 &&
                   mt_trace_tokens(u) == 2,
               "transitions from layer 0 into the last layer 1, and its 2 tokens, round trip");
        mt_trace_destroy(u);
        u = NULL;
        mt_trace_destroy(r);
    }

    /* bad files */
    snprintf(path, sizeof(path), "%s/missing.json", dir);
    tap_ok(mt_trace_load(path, &u) == MT_ERR_IO && u == NULL &&
               strstr(mt_last_error(), "missing.json") != NULL,
           "missing file: %s", mt_last_error());
    snprintf(path, sizeof(path), "%s/bad.json", dir);
    write_file(path, "{ not json");
    tap_ok(mt_trace_load(path, &u) == MT_ERR_FORMAT && strstr(mt_last_error(), "JSON") != NULL,
           "not JSON: %s", mt_last_error());
    write_file(path, "{\"format\": \"moetier-plan\", \"version\": 1}");
    tap_ok(mt_trace_load(path, &u) == MT_ERR_FORMAT, "not a trace: %s", mt_last_error());
    write_file(path, "{\"format\": \"moetier-trace\", \"version\": 1, \"n_layers\": 5, "
                     "\"n_experts\": 8, \"n_experts\": 16, \"k\": 2, \"layers\": []}");
    tap_ok(mt_trace_load(path, &u) == MT_ERR_FORMAT && u == NULL &&
               strstr(mt_last_error(), "duplicate object key") != NULL,
           "a key given twice is refused: %s", mt_last_error());
    write_file(path, "{\"format\": \"moetier-trace\", \"version\": 2, \"n_layers\": 5, "
                     "\"n_experts\": 8, \"k\": 2, \"layers\": []}");
    tap_ok(mt_trace_load(path, &u) == MT_ERR_FORMAT && strstr(mt_last_error(), "version") != NULL,
           "wrong version: %s", mt_last_error());
    write_file(path, "{\"format\": \"moetier-trace\", \"version\": 1, \"n_layers\": 5, "
                     "\"n_experts\": 4, \"k\": 2, \"layers\": [{\"layer\": 1, \"tokens\": 1, "
                     "\"counts\": [1, 1, 1, 0]}]}");
    tap_ok(mt_trace_load(path, &u) == MT_ERR_FORMAT && strstr(mt_last_error(), "sum") != NULL,
           "counts that do not sum to tokens x k: %s", mt_last_error());
    write_file(path, "{\"format\": \"moetier-trace\", \"version\": 1, \"n_layers\": 5, "
                     "\"n_experts\": 4, \"k\": 2, \"layers\": [{\"layer\": 1, \"tokens\": 2, "
                     "\"counts\": [2, 1, 0, 0]}]}");
    tap_ok(mt_trace_load(path, &u) == MT_ERR_FORMAT &&
               strstr(mt_last_error(), "sum to 3, expected tokens x k = 4") != NULL,
           "counts that sum to no multiple of tokens: %s", mt_last_error());
    /* transitions: from an earlier layer, experts in range, counts in [1, 2^32 - 1] */
    {
        static const struct {
            const char *layer; /* the layer object, after "counts": [1, 1, 0, 0], */
            const char *err;   /* in the refusal; NULL: loads */
        } tr[] = {
            {"\"from_layer\": 2, \"transitions\": [0, 1, 1]", "from_layer"},
            {"\"from_layer\": 1, \"transitions\": [0, 1, 0]", "triple"},
            {"\"from_layer\": 1, \"transitions\": [4, 0, 1]", "triple"},
            {"\"from_layer\": 1, \"transitions\": [0, 4, 1]", "triple"},
            {"\"from_layer\": 1, \"transitions\": [-1, 0, 1]", "triple"},
            {"\"from_layer\": 1, \"transitions\": [0, -1, 1]", "triple"},
            {"\"from_layer\": 1, \"transitions\": [0, 1]", "flat array of triples"},
            {"\"from_layer\": 1, \"transitions\": {\"a\": 0}", "flat array of triples"},
            {"\"from_layer\": 1, \"transitions\": [3, 3, 4294967295]", NULL},
        };
        for (size_t i = 0; i < sizeof(tr) / sizeof(tr[0]); i++) {
            char text[512];
            snprintf(text, sizeof(text),
                     "{\"format\": \"moetier-trace\", \"version\": 1, \"n_layers\": 5, "
                     "\"n_experts\": 4, \"k\": 2, \"layers\": [{\"layer\": 2, \"tokens\": 1, "
                     "\"counts\": [1, 1, 0, 0], %s}]}",
                     tr[i].layer);
            write_file(path, text);
            st = mt_trace_load(path, &u);
            if (tr[i].err == NULL) {
                tap_ok(st == MT_OK && mt_trace_transition(u, 2, 3, 3) == 4294967295u,
                       "layer 2 with %s loads", tr[i].layer);
            } else {
                tap_ok(st == MT_ERR_FORMAT && u == NULL &&
                           strstr(mt_last_error(), tr[i].err) != NULL,
                       "layer 2 with %s is refused: %s", tr[i].layer, mt_last_error());
            }
            mt_trace_destroy(u);
            u = NULL;
        }
    }
    write_file(path, "{\"format\": \"moetier-trace\", \"version\": 1, \"n_layers\": 5, "
                     "\"n_experts\": 4, \"k\": 2, \"layers\": [{\"layer\": 2, \"tokens\": 1, "
                     "\"counts\": [1, 1, 0, 0], \"from_layer\": 1, \"transitions\": [0, 9, 1]}]}");
    tap_ok(mt_trace_load(path, &u) == MT_ERR_FORMAT && strstr(mt_last_error(), "triple") != NULL,
           "transition with an expert out of range: %s", mt_last_error());
    write_file(path, "{\"format\": \"moetier-trace\", \"version\": 1, \"n_layers\": 5, "
                     "\"n_experts\": 4, \"k\": 2, \"layers\": [{\"layer\": 7, \"tokens\": 1, "
                     "\"counts\": [1, 1, 0, 0]}]}");
    tap_ok(mt_trace_load(path, &u) == MT_ERR_FORMAT && strstr(mt_last_error(), "layer") != NULL,
           "layer index beyond n_layers: %s", mt_last_error());
    /* 2^62 tokens x k 4 wraps to 0 in 64 bits, as do the counts' sum of 0. */
    write_file(path, "{\"format\": \"moetier-trace\", \"version\": 1, \"n_layers\": 5, "
                     "\"n_experts\": 4, \"k\": 4, \"layers\": [{\"layer\": 1, "
                     "\"tokens\": 4611686018427387904, \"counts\": [0, 0, 0, 0]}]}");
    tap_ok(mt_trace_load(path, &u) == MT_ERR_FORMAT && strstr(mt_last_error(), "tokens") != NULL,
           "a token count whose tokens x k overflows is refused: %s", mt_last_error());
    write_file(path, "{\"format\": \"moetier-trace\", \"version\": 1, \"n_layers\": 5, "
                     "\"n_experts\": 4, \"k\": 2, \"layers\": [{\"layer\": 1, \"tokens\": 0, "
                     "\"counts\": [0, 0, 0, 0]}, {\"layer\": 1, \"tokens\": 1, "
                     "\"counts\": [1, 1, 0, 0]}]}");
    tap_ok(mt_trace_load(path, &u) == MT_ERR_FORMAT && strstr(mt_last_error(), "twice") != NULL,
           "a layer listed twice (the first time with 0 tokens) is refused: %s", mt_last_error());
    tap_ok(u == NULL, "failed loads leave the output untouched");
    write_file(path, "{\"format\": \"moetier-trace\", \"version\": 1, \"n_layers\": 5, "
                     "\"n_experts\": 4, \"k\": 2, \"tokens\": 0}");
    tap_ok(mt_trace_load(path, &u) == MT_ERR_FORMAT && u == NULL &&
               strstr(mt_last_error(), "missing array 'layers'") != NULL,
           "a trace without 'layers' is refused: %s", mt_last_error());

    /* each limit on a trace's numbers (trace.h): at it the file loads, one past it not */
    {
        static const struct {
            const char *dims;  /* n_layers, n_experts and k */
            const char *layer; /* the one entry of "layers", or "" */
            const char *err;   /* in the refusal; NULL: loads */
        } lim[] = {
            {"\"n_layers\": 4096, \"n_experts\": 1, \"k\": 1", "", NULL},
            {"\"n_layers\": 4097, \"n_experts\": 1, \"k\": 1", "",
             "field 'n_layers' must be an integer in [1, 4096]"},
            {"\"n_layers\": 0, \"n_experts\": 1, \"k\": 1", "",
             "field 'n_layers' must be an integer in [1, 4096]"},
            {"\"n_layers\": 1, \"n_experts\": 65536, \"k\": 8", "", NULL},
            {"\"n_layers\": 1, \"n_experts\": 65537, \"k\": 8", "",
             "field 'n_experts' must be an integer in [1, 65536]"},
            {"\"n_layers\": 1, \"n_experts\": 0, \"k\": 1", "",
             "field 'n_experts' must be an integer in [1, 65536]"},
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 4", "", NULL},
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 5", "",
             "field 'k' must be an integer in [1, 4]"},
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 0", "",
             "field 'k' must be an integer in [1, 4]"},
            /* the last layer, and one past it */
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 2",
             "{\"layer\": 4, \"tokens\": 1, \"counts\": [1, 1, 0, 0]}", NULL},
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 2",
             "{\"layer\": 5, \"tokens\": 1, \"counts\": [1, 1, 0, 0]}",
             "field 'layer' must be an integer in [0, 4]"},
            /* 2^40 tokens at a layer, each count at most the layer's tokens */
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 2",
             "{\"layer\": 1, \"tokens\": 1099511627776, "
             "\"counts\": [1099511627776, 1099511627776, 0, 0]}",
             NULL},
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 2",
             "{\"layer\": 1, \"tokens\": 1099511627777, "
             "\"counts\": [1099511627777, 1099511627777, 0, 0]}",
             "field 'tokens' must be an integer in [0, 1099511627776]"},
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 2",
             "{\"layer\": 1, \"tokens\": 1, \"counts\": [2, 0, 0, 0]}",
             "count of expert 0 must be an integer in [0, 1] (the layer's tokens)"},
            /* a negative count, even where the sum is right */
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 2",
             "{\"layer\": 1, \"tokens\": 2, \"counts\": [-1, 2, 2, 1]}",
             "count of expert 0 must be an integer in [0, 2]"},
            /* the top-level "tokens" may be left out (above), but must be a count */
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 2, \"tokens\": 0", "", NULL},
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 2, \"tokens\": \"many\"", "",
             "field 'tokens' must be an integer in [0, 1099511627776]"},
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 2, \"tokens\": -1", "",
             "field 'tokens' must be an integer in [0, 1099511627776]"},
            /* a missing field, a layer that is no object */
            {"\"n_layers\": 5, \"n_experts\": 4", "", "missing field 'k'"},
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 2", "5",
             "each entry of 'layers' must be an object"},
            /* counts for more experts than n_experts, or none */
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 2",
             "{\"layer\": 1, \"tokens\": 1, \"counts\": [1, 1, 0, 0, 0]}",
             "layer 1 has counts for 5 experts, but the trace says n_experts 4"},
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 2", "{\"layer\": 1, \"tokens\": 1}",
             "layer 1 'counts' must be an array of 4 integers"},
            /* a transition count past 2^32 - 1 (2^32 - 1 loads, above) */
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 2",
             "{\"layer\": 2, \"tokens\": 1, \"counts\": [1, 1, 0, 0], \"from_layer\": 1, "
             "\"transitions\": [3, 3, 4294967296]}",
             "transition triple 0 is not (expert, expert, count > 0)"},
            /* from_layer is before the layer: layer 0 has none */
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 2",
             "{\"layer\": 0, \"tokens\": 1, \"counts\": [1, 1, 0, 0], \"from_layer\": 0, "
             "\"transitions\": [0, 1, 1]}",
             "layer 0 has 'transitions', but no earlier layer to come from"},
            /* counts of another k: named as such */
            {"\"n_layers\": 5, \"n_experts\": 4, \"k\": 2",
             "{\"layer\": 1, \"tokens\": 1, \"counts\": [1, 1, 1, 0]}",
             "layer 1 counts sum to tokens x 3, but the trace says k 2"},
        };
        for (size_t i = 0; i < sizeof(lim) / sizeof(lim[0]); i++) {
            char text[512];
            snprintf(text, sizeof(text),
                     "{\"format\": \"moetier-trace\", \"version\": 1, %s, \"layers\": [%s]}",
                     lim[i].dims, lim[i].layer);
            write_file(path, text);
            st = mt_trace_load(path, &u);
            if (lim[i].err == NULL) {
                tap_ok(st == MT_OK && u != NULL, "%s%s%s loads%s%s", lim[i].dims,
                       lim[i].layer[0] != '\0' ? ", layer " : "", lim[i].layer,
                       st == MT_OK ? "" : ": ", st == MT_OK ? "" : mt_last_error());
            } else {
                tap_ok(st == MT_ERR_FORMAT && u == NULL &&
                           strstr(mt_last_error(), lim[i].err) != NULL,
                       "%s%s%s is refused: %s", lim[i].dims,
                       lim[i].layer[0] != '\0' ? ", layer " : "", lim[i].layer,
                       st == MT_OK ? "it loaded" : mt_last_error());
            }
            if (lim[i].err == NULL && strstr(lim[i].layer, "1099511627776,") != NULL) {
                tap_ok(u != NULL && mt_trace_layer_tokens(u, 1) == (uint64_t)1 << 40 &&
                           mt_trace_tokens(u) == (uint64_t)1 << 40 &&
                           mt_trace_count(u, 1, 1) == (uint64_t)1 << 40,
                       "a layer of 2^40 tokens reads back");
            }
            mt_trace_destroy(u);
            u = NULL;
        }
    }
    /* mt_trace_create takes the same dims */
    {
        struct mt_trace *c = NULL;
        bool ok = mt_trace_create(4096, 1, 1, &c) == MT_OK;
        mt_trace_destroy(c);
        c = NULL;
        ok = ok && mt_trace_create(1, 65536, 65536, &c) == MT_OK;
        mt_trace_destroy(c);
        c = NULL;
        tap_ok(ok, "create takes 4096 layers, and 65536 experts with k 65536");
        tap_ok(mt_trace_create(4097, 1, 1, &c) == MT_ERR_INVAL && c == NULL &&
                   mt_trace_create(1, 65537, 1, &c) == MT_ERR_INVAL && c == NULL,
               "create refuses 4097 layers, and 65537 experts: %s", mt_last_error());
    }

    /* merge: two runs' traces sum to the trace of one run that recorded both in turn */
    {
        struct mt_trace *m = small_trace();
        struct mt_trace *twice = small_trace();
        struct mt_trace *other = NULL;
        const int a1[2] = {0, 1}, b1[2] = {2, 3}, c1[2] = {1, 2}, a2[2] = {0, 5}, b2[2] = {2, 7};
        if (m != NULL && twice != NULL) {
            mt_trace_record(twice, 1, a1, 2);
            mt_trace_record(twice, 2, b1, 2);
            mt_trace_record(twice, 3, c1, 2);
            mt_trace_record(twice, 1, a2, 2);
            mt_trace_record(twice, 2, b2, 2);
        }
        tap_ok(m != NULL && twice != NULL && mt_trace_merge(m, t, "t") == MT_OK &&
                   traces_equal(m, twice) && mt_trace_count(m, 1, 0) == 4 &&
                   mt_trace_transition(m, 2, 0, 2) == 4,
               "merge adds counts, tokens and transitions: as if one run recorded both");
        tap_ok(mt_trace_create(5, 4, 2, &other) == MT_OK &&
                   mt_trace_merge(m, other, "b.json") == MT_ERR_FORMAT &&
                   strstr(mt_last_error(), "b.json") != NULL,
               "merge refuses a trace of other dims, naming it: %s", mt_last_error());
        mt_trace_destroy(other);
        mt_trace_destroy(twice);
        mt_trace_destroy(m);
    }
    /* merge: a layer whose transitions come from another layer in src keeps dst's (trace.c) */
    {
        struct mt_trace *d = NULL;
        struct mt_trace *s = NULL;
        const int a[2] = {0, 1}, c[2] = {6, 7}, e[2] = {2, 3};
        st = mt_trace_create(3, 8, 2, &d); /* layer 2 is the last: merged like the others */
        st = st == MT_OK ? mt_trace_create(3, 8, 2, &s) : st;
        st = st == MT_OK ? mt_trace_record(d, 1, a, 2) : st; /* dst: layer 1 -> 2 */
        st = st == MT_OK ? mt_trace_record(d, 2, e, 2) : st;
        st = st == MT_OK ? mt_trace_record(s, 0, c, 2) : st; /* src: layer 0 -> 2 */
        st = st == MT_OK ? mt_trace_record(s, 2, e, 2) : st;
        st = st == MT_OK ? mt_trace_merge(d, s, "s") : st;
        tap_ok(st == MT_OK && mt_trace_from_layer(d, 2) == 1 &&
                   mt_trace_transition(d, 2, 0, 2) == 1 && mt_trace_transition(d, 2, 6, 2) == 0 &&
                   mt_trace_count(d, 2, 2) == 2 && mt_trace_layer_tokens(d, 2) == 2,
               "merge adds the counts but not transitions from another previous layer");
        mt_trace_destroy(s);
        mt_trace_destroy(d);
    }
    /* merge: a transition count stops at 2^32 - 1 rather than wrapping */
    {
        struct mt_trace *m1 = NULL;
        struct mt_trace *m2 = NULL;
        snprintf(path, sizeof(path), "%s/max.json", dir);
        write_file(path, "{\"format\": \"moetier-trace\", \"version\": 1, \"n_layers\": 5, "
                         "\"n_experts\": 4, \"k\": 2, \"layers\": [{\"layer\": 2, \"tokens\": 1, "
                         "\"counts\": [1, 0, 0, 1], \"from_layer\": 1, "
                         "\"transitions\": [3, 3, 4294967295, 0, 3, 7, 1, 0, 5]}]}");
        st = mt_trace_load(path, &m1);
        st = st == MT_OK ? mt_trace_load(path, &m2) : st;
        st = st == MT_OK ? mt_trace_merge(m1, m2, "max.json") : st;
        tap_ok(st == MT_OK && mt_trace_transition(m1, 2, 3, 3) == 4294967295u &&
                   mt_trace_transition(m1, 2, 0, 3) == 14 && mt_trace_transition(m1, 2, 1, 0) == 10,
               "merged transition counts saturate at 2^32 - 1 (got %llu), others add",
               st == MT_OK ? (unsigned long long)mt_trace_transition(m1, 2, 3, 3) : 0ull);
        /* "to" one past the last expert would read the next row's first count (1 -> 0) */
        tap_ok(st == MT_OK && mt_trace_transition(m1, 2, 0, 4) == 0,
               "a transition to expert n_experts is 0, not the next row's");
        mt_trace_destroy(m2);
        mt_trace_destroy(m1);
    }
    mt_trace_destroy(t);
    mt_trace_destroy(NULL);
    tap_rmtree(dir);
    return tap_done();
}
