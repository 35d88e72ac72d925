/* SPDX-License-Identifier: MIT */
/*
 * trace.c - expert-activation traces (see trace.h for the file format and the slot idea).
 *
 * Counts live in one n_layers x n_experts array; each layer's transition matrix
 * (n_experts x n_experts, row = previous expert, column = this layer's expert) is allocated on the
 * layer's first transition. Slots (one per token of the largest batch seen) hold the previous
 * layer and ids of their token.
 */
#include <config.h>

#include "runtime/plan/trace.h"

#include "runtime/base/file_util.h"
#include "runtime/base/json_kind.h"
#include "runtime/base/json_num.h"

#include <jansson.h>
#include <stdlib.h>

struct mt_trace {
    int n_layers;
    int n_experts;
    int k;
    uint64_t *counts;       /* owned, (n_layers, n_experts) */
    uint64_t *layer_tokens; /* owned, (n_layers) */
    uint32_t **trans;       /* owned, (n_layers) -> NULL or owned (n_experts, n_experts) */
    int *from_layer;        /* owned, (n_layers), -1 when no transition yet */
    /* recording state, not saved */
    int n_slots;
    int *slot_layer; /* owned, (n_slots), -1 = fresh */
    int *slot_ids;   /* owned, (n_slots, k) */
};

mt_status_t
mt_trace_create(int n_layers, int n_experts, int k, struct mt_trace **trace_out)
{
    struct mt_trace *t;

    if (n_layers <= 0 || n_experts <= 0 || k <= 0 || k > n_experts || n_layers > 4096 ||
        n_experts > 65536) {
        return mt_fail(MT_ERR_INVAL, 0, "cannot create trace: bad dims %d layers, %d experts, k %d",
                       n_layers, n_experts, k);
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate trace");
    }
    t->n_layers = n_layers;
    t->n_experts = n_experts;
    t->k = k;
    t->counts = calloc((size_t)n_layers * (size_t)n_experts, sizeof(*t->counts));
    t->layer_tokens = calloc((size_t)n_layers, sizeof(*t->layer_tokens));
    t->trans = calloc((size_t)n_layers, sizeof(*t->trans));
    t->from_layer = malloc((size_t)n_layers * sizeof(*t->from_layer));
    if (t->counts == NULL || t->layer_tokens == NULL || t->trans == NULL || t->from_layer == NULL) {
        mt_trace_destroy(t);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate trace of %d layers x %d experts", n_layers,
                       n_experts);
    }
    for (int l = 0; l < n_layers; l++) {
        t->from_layer[l] = -1;
    }
    *trace_out = t;
    return MT_OK;
}

void
mt_trace_destroy(struct mt_trace *t)
{
    if (t == NULL) {
        return;
    }
    if (t->trans != NULL) {
        for (int l = 0; l < t->n_layers; l++) {
            free(t->trans[l]);
        }
    }
    free(t->trans);
    free(t->slot_ids);
    free(t->slot_layer);
    free(t->from_layer);
    free(t->layer_tokens);
    free(t->counts);
    free(t);
}

/* Make sure slots 0..n-1 exist (new ones fresh). */
static mt_status_t
ensure_slots(struct mt_trace *t, int n)
{
    int *layers;
    int *ids;

    if (n <= t->n_slots) {
        return MT_OK;
    }
    layers = realloc(t->slot_layer, (size_t)n * sizeof(*layers));
    if (layers == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %d trace slots", n);
    }
    t->slot_layer = layers;
    ids = realloc(t->slot_ids, (size_t)n * (size_t)t->k * sizeof(*ids));
    if (ids == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %d trace slots", n);
    }
    t->slot_ids = ids;
    for (int s = t->n_slots; s < n; s++) {
        t->slot_layer[s] = -1;
    }
    t->n_slots = n;
    return MT_OK;
}

static mt_status_t
check_ids(const struct mt_trace *t, int layer, const int *ids, int n)
{
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_experts) {
            return mt_fail(MT_ERR_INVAL, 0, "trace: expert id %d at layer %d out of range [0, %d)",
                           ids[i], layer, t->n_experts);
        }
    }
    return MT_OK;
}

mt_status_t
mt_trace_record_batch(struct mt_trace *t, int layer, const int *ids, int n_tokens, int k)
{
    mt_status_t st;

    if (t == NULL || ids == NULL || n_tokens < 0) {
        return mt_fail(MT_ERR_INVAL, 0, "trace: record called without trace or ids");
    }
    if (layer < 0 || layer >= t->n_layers) {
        return mt_fail(MT_ERR_INVAL, 0, "trace: layer %d out of range [0, %d)", layer, t->n_layers);
    }
    if (k != t->k) {
        return mt_fail(MT_ERR_INVAL, 0, "trace: %d experts per token recorded, trace expects %d", k,
                       t->k);
    }
    st = check_ids(t, layer, ids, n_tokens * k);
    if (st != MT_OK) {
        return st;
    }
    st = ensure_slots(t, n_tokens);
    if (st != MT_OK) {
        return st;
    }
    for (int s = 0; s < n_tokens; s++) {
        const int *cur = ids + (size_t)s * (size_t)k;
        int *prev = t->slot_ids + (size_t)s * (size_t)k;
        int prev_layer = t->slot_layer[s];

        /* A record at a later layer continues the slot's token; otherwise a new token starts. */
        if (prev_layer >= 0 && prev_layer < layer) {
            if (t->from_layer[layer] < 0) {
                t->from_layer[layer] = prev_layer;
            }
            if (t->from_layer[layer] == prev_layer) {
                if (t->trans[layer] == NULL) {
                    t->trans[layer] =
                        calloc((size_t)t->n_experts * (size_t)t->n_experts, sizeof(uint32_t));
                    if (t->trans[layer] == NULL) {
                        return mt_fail(MT_ERR_NOMEM, 0,
                                       "cannot allocate trace transitions of layer %d", layer);
                    }
                }
                uint32_t *m = t->trans[layer];
                for (int a = 0; a < k; a++) {
                    for (int b = 0; b < k; b++) {
                        m[(size_t)prev[a] * (size_t)t->n_experts + (size_t)cur[b]]++;
                    }
                }
            }
        }
        for (int j = 0; j < k; j++) {
            t->counts[(size_t)layer * (size_t)t->n_experts + (size_t)cur[j]]++;
            prev[j] = cur[j];
        }
        t->slot_layer[s] = layer;
        t->layer_tokens[layer]++;
    }
    return MT_OK;
}

mt_status_t
mt_trace_record(struct mt_trace *t, int layer, const int *expert_ids, int k)
{
    return mt_trace_record_batch(t, layer, expert_ids, 1, k);
}

/* ---- queries ------------------------------------------------------------------------------ */

int
mt_trace_n_layers(const struct mt_trace *t)
{
    return t->n_layers;
}

int
mt_trace_n_experts(const struct mt_trace *t)
{
    return t->n_experts;
}

int
mt_trace_k(const struct mt_trace *t)
{
    return t->k;
}

uint64_t
mt_trace_layer_tokens(const struct mt_trace *t, int layer)
{
    if (layer < 0 || layer >= t->n_layers) {
        return 0;
    }
    return t->layer_tokens[layer];
}

uint64_t
mt_trace_tokens(const struct mt_trace *t)
{
    uint64_t n = 0;

    for (int l = 0; l < t->n_layers; l++) {
        n = MT_MAX(n, t->layer_tokens[l]);
    }
    return n;
}

uint64_t
mt_trace_count(const struct mt_trace *t, int layer, int expert)
{
    if (layer < 0 || layer >= t->n_layers || expert < 0 || expert >= t->n_experts) {
        return 0;
    }
    return t->counts[(size_t)layer * (size_t)t->n_experts + (size_t)expert];
}

uint64_t
mt_trace_transition(const struct mt_trace *t, int layer, int from, int to)
{
    if (layer < 0 || layer >= t->n_layers || from < 0 || from >= t->n_experts || to < 0 ||
        to >= t->n_experts || t->trans[layer] == NULL) {
        return 0;
    }
    return t->trans[layer][(size_t)from * (size_t)t->n_experts + (size_t)to];
}

int
mt_trace_from_layer(const struct mt_trace *t, int layer)
{
    if (layer < 0 || layer >= t->n_layers) {
        return -1;
    }
    return t->from_layer[layer];
}

double
mt_trace_probability(const struct mt_trace *t, int layer, int expert)
{
    uint64_t n = mt_trace_layer_tokens(t, layer);

    if (expert < 0 || expert >= t->n_experts) {
        return 0.0;
    }
    if (n == 0) {
        return (double)t->k / (double)t->n_experts;
    }
    return (double)mt_trace_count(t, layer, expert) / (double)n;
}

/*
 * Add src's counts and transitions to dst (same dims). A plan for a workload needs the routing of
 * several prompts, and each `run --trace` records one; the sum is the trace of all of them, as if
 * one run had recorded them in turn. A layer whose transitions come from another previous layer
 * in src than in dst keeps dst's (both are the same model: it does not happen in practice).
 */
mt_status_t
mt_trace_merge(struct mt_trace *dst, const struct mt_trace *src, const char *what)
{
    mt_status_t st = mt_trace_check_dims(src, what, dst->n_layers, dst->n_experts, dst->k);
    size_t E = (size_t)dst->n_experts;

    if (st != MT_OK) {
        return st;
    }
    for (int l = 0; l < dst->n_layers; l++) {
        for (size_t e = 0; e < E; e++) {
            dst->counts[(size_t)l * E + e] += src->counts[(size_t)l * E + e];
        }
        dst->layer_tokens[l] += src->layer_tokens[l];
        if (src->trans[l] == NULL ||
            (dst->from_layer[l] >= 0 && dst->from_layer[l] != src->from_layer[l])) {
            continue;
        }
        if (dst->trans[l] == NULL && (dst->trans[l] = calloc(E * E, sizeof(uint32_t))) == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate trace transitions of layer %d", l);
        }
        dst->from_layer[l] = src->from_layer[l];
        for (size_t i = 0; i < E * E; i++) {
            uint64_t n = (uint64_t)dst->trans[l][i] + src->trans[l][i];
            dst->trans[l][i] = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
        }
    }
    return MT_OK;
}

mt_status_t
mt_trace_check_dims(const struct mt_trace *t, const char *what, int n_layers, int n_experts, int k)
{
    if (t->n_layers != n_layers) {
        return mt_fail(MT_ERR_FORMAT, 0, "trace '%s' has %d layers, the model has %d", what,
                       t->n_layers, n_layers);
    }
    if (t->n_experts != n_experts) {
        return mt_fail(MT_ERR_FORMAT, 0, "trace '%s' has %d experts per layer, the model has %d",
                       what, t->n_experts, n_experts);
    }
    if (t->k != k) {
        return mt_fail(MT_ERR_FORMAT, 0, "trace '%s' has %d experts per token, the model routes %d",
                       what, t->k, k);
    }
    return MT_OK;
}

/* ---- files -------------------------------------------------------------------------------- */

static json_t *
layer_to_json(const struct mt_trace *t, int l)
{
    json_t *o = json_object();
    json_t *counts = json_array();
    json_t *tr = NULL;
    int bad = 0;

    if (o == NULL || counts == NULL) {
        json_decref(o);
        json_decref(counts);
        return NULL;
    }
    bad |= json_object_set_new(o, "layer", json_integer(l));
    bad |= json_object_set_new(o, "tokens", json_integer((json_int_t)t->layer_tokens[l]));
    for (int e = 0; e < t->n_experts; e++) {
        bad |= json_array_append_new(
            counts, json_integer((json_int_t)t->counts[(size_t)l * (size_t)t->n_experts + e]));
    }
    bad |= json_object_set_new(o, "counts", counts);
    if (t->trans[l] != NULL) {
        bad |= json_object_set_new(o, "from_layer", json_integer(t->from_layer[l]));
        tr = json_array();
        if (tr == NULL) {
            json_decref(o);
            return NULL;
        }
        for (int a = 0; a < t->n_experts; a++) {
            for (int b = 0; b < t->n_experts; b++) {
                uint32_t n = t->trans[l][(size_t)a * (size_t)t->n_experts + (size_t)b];
                if (n != 0) {
                    bad |= json_array_append_new(tr, json_integer(a));
                    bad |= json_array_append_new(tr, json_integer(b));
                    bad |= json_array_append_new(tr, json_integer(n));
                }
            }
        }
        bad |= json_object_set_new(o, "transitions", tr);
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

mt_status_t
mt_trace_save(const struct mt_trace *t, const char *path)
{
    json_t *root;
    json_t *layers;
    mt_status_t st = MT_OK;
    int bad = 0;

    root = json_object();
    layers = json_array();
    if (root == NULL || layers == NULL) {
        json_decref(root);
        json_decref(layers);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot build trace JSON for '%s'", path);
    }
    bad |= json_object_set_new(root, "format", json_string("moetier-trace"));
    bad |= json_object_set_new(root, "version", json_integer(MT_TRACE_VERSION));
    bad |= json_object_set_new(root, "n_layers", json_integer(t->n_layers));
    bad |= json_object_set_new(root, "n_experts", json_integer(t->n_experts));
    bad |= json_object_set_new(root, "k", json_integer(t->k));
    bad |= json_object_set_new(root, "tokens", json_integer((json_int_t)mt_trace_tokens(t)));
    bad |= json_object_set_new(root, "layers", layers);
    for (int l = 0; l < t->n_layers && !bad; l++) {
        if (t->layer_tokens[l] == 0) {
            continue;
        }
        json_t *o = layer_to_json(t, l);
        bad |= o == NULL || json_array_append_new(layers, o);
    }
    if (bad) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot build trace JSON for '%s'", path);
        goto out_decref;
    }
    /* Compact: a real trace holds millions of transition numbers. */
    st = mt_json_save_file(root, path, "trace", JSON_COMPACT);
out_decref:
    json_decref(root);
    return st;
}

/* An integer member in [lo, hi]; MT_ERR_FORMAT naming path and key otherwise. */
static mt_status_t
get_int(json_t *obj, const char *key, const char *path, long long lo, long long hi, long long *out)
{
    json_t *v = json_object_get(obj, key);
    long long x;

    if (v == NULL) {
        return mt_fail(MT_ERR_FORMAT, 0, "trace '%s': missing field '%s'", path, key);
    }
    if (!mt_json_is_int(v, &x) || x < lo || x > hi) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "trace '%s': field '%s' must be an integer in [%lld, %lld]", path, key, lo,
                       hi);
    }
    *out = x;
    return MT_OK;
}

/* The keys mt_trace_save writes; a loader refuses others (a typo would be ignored). */
static const char *const top_keys[] = {"format", "version", "n_layers", "n_experts", "k",
                                       "tokens", "layers", NULL};
static const char *const layer_keys[] = {"layer", "tokens", "counts", "from_layer",
                                         "transitions", NULL};
#define REMAKE_HINT "a typo, or a trace of another moetier: record it again with run --trace"

/*
 * Most tokens a layer may claim: 2^40 (a trillion) keeps tokens x k and the sum of the counts
 * (at most n_experts x tokens, n_experts <= 2^16) far from 64-bit overflow.
 */
#define MAX_LAYER_TOKENS ((long long)1 << 40)

/* One entry of "layers"; seen[layer] marks the layers read so far. */
static mt_status_t
load_layer(struct mt_trace *t, json_t *lo, const char *path, bool *seen)
{
    long long layer;
    long long tokens;
    long long from;
    json_t *counts;
    json_t *tr;
    uint64_t sum = 0;
    const char *key;
    mt_status_t st;

    if (!json_is_object(lo)) {
        return mt_fail(MT_ERR_FORMAT, 0, "trace '%s': each entry of 'layers' must be an object",
                       path);
    }
    if ((key = mt_json_unknown_key(lo, layer_keys)) != NULL) {
        return mt_fail(MT_ERR_FORMAT, 0, "trace '%s': unknown key '%s' in a layer (%s)", path,
                       key, REMAKE_HINT);
    }
    st = get_int(lo, "layer", path, 0, t->n_layers - 1, &layer);
    if (st != MT_OK) {
        return st;
    }
    st = get_int(lo, "tokens", path, 0, MAX_LAYER_TOKENS, &tokens);
    if (st != MT_OK) {
        return st;
    }
    if (seen[layer]) {
        return mt_fail(MT_ERR_FORMAT, 0, "trace '%s': layer %lld listed twice", path, layer);
    }
    seen[layer] = true;
    t->layer_tokens[layer] = (uint64_t)tokens;
    counts = json_object_get(lo, "counts");
    if (json_is_array(counts) && json_array_size(counts) != (size_t)t->n_experts) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "trace '%s': layer %lld has counts for %zu experts, but the trace says "
                       "n_experts %d (a trace of another model, or an edited one)",
                       path, layer, json_array_size(counts), t->n_experts);
    }
    if (!json_is_array(counts)) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "trace '%s': layer %lld 'counts' must be an array of %d integers", path,
                       layer, t->n_experts);
    }
    for (int e = 0; e < t->n_experts; e++) {
        long long c;

        if (!mt_json_is_int(json_array_get(counts, (size_t)e), &c) || c < 0 || c > tokens) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "trace '%s': layer %lld count of expert %d must be an integer in [0, "
                           "%lld] (the layer's tokens)",
                           path, layer, e, tokens);
        }
        t->counts[(size_t)layer * (size_t)t->n_experts + (size_t)e] = (uint64_t)c;
        sum += (uint64_t)c;
    }
    if (tokens > 0 && sum % (uint64_t)tokens == 0 && sum != (uint64_t)tokens * (uint64_t)t->k) {
        return mt_fail(
            MT_ERR_FORMAT, 0,
            "trace '%s': layer %lld counts sum to tokens x %llu, but the trace says k %d "
            "(a trace of another model, or an edited one)",
            path, layer, (unsigned long long)(sum / (uint64_t)tokens), t->k);
    }
    if (sum != (uint64_t)tokens * (uint64_t)t->k) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "trace '%s': layer %lld counts sum to %llu, expected tokens x k = %llu",
                       path, layer, (unsigned long long)sum,
                       (unsigned long long)tokens * (unsigned long long)t->k);
    }
    tr = json_object_get(lo, "transitions");
    if (tr == NULL) {
        return MT_OK;
    }
    if (layer == 0) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "trace '%s': layer 0 has 'transitions', but no earlier layer to come from",
                       path);
    }
    st = get_int(lo, "from_layer", path, 0, layer - 1, &from);
    if (st != MT_OK) {
        return st;
    }
    if (!json_is_array(tr) || json_array_size(tr) % 3 != 0) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "trace '%s': layer %lld 'transitions' must be a flat array of triples", path,
                       layer);
    }
    t->from_layer[layer] = (int)from;
    t->trans[layer] = calloc((size_t)t->n_experts * (size_t)t->n_experts, sizeof(uint32_t));
    if (t->trans[layer] == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate trace transitions of layer %lld", layer);
    }
    for (size_t i = 0; i < json_array_size(tr); i += 3) {
        long long a;
        long long b;
        long long n;

        if (!mt_json_is_int(json_array_get(tr, i), &a) ||
            !mt_json_is_int(json_array_get(tr, i + 1), &b) ||
            !mt_json_is_int(json_array_get(tr, i + 2), &n) || a < 0 || a >= t->n_experts ||
            b < 0 || b >= t->n_experts || n <= 0 || n > UINT32_MAX) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "trace '%s': layer %lld transition triple %zu is not "
                           "(expert, expert, count > 0)",
                           path, layer, i / 3);
        }
        t->trans[layer][(size_t)a * (size_t)t->n_experts + (size_t)b] = (uint32_t)n;
    }
    return MT_OK;
}

mt_status_t
mt_trace_load(const char *path, struct mt_trace **trace_out)
{
    json_t *root;
    json_t *layers;
    long long n_layers;
    long long n_experts;
    long long k;
    long long tokens;
    struct mt_trace *t = NULL;
    bool *seen = NULL;
    const char *key;
    mt_status_t st;

    st = mt_json_load_versioned(path, "trace", "moetier-trace", MT_TRACE_VERSION, &root);
    if (st != MT_OK) {
        return st;
    }
    if ((key = mt_json_unknown_key(root, top_keys)) != NULL) {
        st = mt_fail(MT_ERR_FORMAT, 0, "trace '%s': unknown key '%s' (%s)", path, key,
                     REMAKE_HINT);
        goto out_decref;
    }
    if ((st = get_int(root, "n_layers", path, 1, 4096, &n_layers)) != MT_OK ||
        (st = get_int(root, "n_experts", path, 1, 65536, &n_experts)) != MT_OK ||
        (st = get_int(root, "k", path, 1, n_experts, &k)) != MT_OK) {
        goto out_decref;
    }
    /* "tokens" is the layers' largest count, written for a reader's eye and recomputed from
     * them; it may be left out, but not hold something that is no count */
    if (json_object_get(root, "tokens") != NULL &&
        (st = get_int(root, "tokens", path, 0, MAX_LAYER_TOKENS, &tokens)) != MT_OK) {
        goto out_decref;
    }
    st = mt_trace_create((int)n_layers, (int)n_experts, (int)k, &t);
    if (st != MT_OK) {
        goto out_decref;
    }
    layers = json_object_get(root, "layers");
    if (!json_is_array(layers)) {
        st = mt_fail(MT_ERR_FORMAT, 0, "trace '%s': missing array 'layers'", path);
        goto out_destroy;
    }
    seen = calloc((size_t)n_layers, sizeof(*seen));
    if (seen == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate trace of %lld layers", n_layers);
        goto out_destroy;
    }
    for (size_t i = 0; i < json_array_size(layers); i++) {
        st = load_layer(t, json_array_get(layers, i), path, seen);
        if (st != MT_OK) {
            goto out_destroy;
        }
    }
    free(seen);
    json_decref(root);
    *trace_out = t;
    return MT_OK;

out_destroy:
    free(seen);
    mt_trace_destroy(t);
out_decref:
    json_decref(root);
    return st;
}
