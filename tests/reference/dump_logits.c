/* SPDX-License-Identifier: MIT */
/*
 * dump_logits.c - write every logit the engine computes on the golden sets to one binary file, so
 * that a refactoring can be checked bit for bit (cmp before.bin after.bin).
 *
 * Usage: dump_logits OUT.bin MODEL_DIR GOLDEN_JSON [MODEL_DIR GOLDEN_JSON ...]
 * For every sequence of each golden.json: all-position logits of its ids in three modes (exact
 * indexer, FP8 indexer, dense attention), then the logits of 16 greedy decode steps after its
 * prompt (exact indexer). Floats are written as stored in memory.
 */
#include <config.h>

#include "runtime/engine/engine.h"
#include "runtime/model/model.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static int32_t *
ids_of(json_t *a, int *n)
{
    int32_t *v = malloc((json_array_size(a) + 1) * sizeof(*v));
    size_t i;
    json_t *x;

    json_array_foreach(a, i, x) {
        v[i] = (int32_t)json_integer_value(x);
    }
    *n = (int)json_array_size(a);
    return v;
}

static int
dump_mode(FILE *out, const struct mt_model *m, enum mt_indexer_mode ix, enum mt_attn_mode at,
          const int32_t *ids, int n, const int32_t *prompt, int np)
{
    struct mt_engine_opts o;
    struct mt_engine *e;
    int V;
    float *lg;

    mt_engine_opts_default(&o);
    o.indexer = ix;
    o.attention = at;
    if (mt_engine_create(m, &o, &e) != MT_OK) {
        return 1;
    }
    V = mt_engine_vocab(e);
    lg = malloc((size_t)V * (size_t)(n > 1 ? n : 1) * sizeof(float));
    if (mt_engine_forward(e, ids, n, true, lg) != MT_OK) {
        return 1;
    }
    fwrite(lg, sizeof(float), (size_t)V * n, out);
    if (prompt != NULL) {
        mt_engine_reset(e);
        if (mt_engine_forward(e, prompt, np, false, lg) != MT_OK) {
            return 1;
        }
        for (int i = 0; i < 16; i++) {
            int32_t b = 0;
            fwrite(lg, sizeof(float), (size_t)V, out);
            for (int j = 1; j < V; j++) {
                b = lg[j] > lg[b] ? j : b;
            }
            if (mt_engine_forward(e, &b, 1, false, lg) != MT_OK) {
                return 1;
            }
        }
    }
    free(lg);
    mt_engine_destroy(e);
    return 0;
}

int
main(int argc, char **argv)
{
    FILE *out;

    if (argc < 4 || argc % 2 != 0) {
        fprintf(stderr, "usage: dump_logits OUT.bin MODEL_DIR GOLDEN_JSON [...]\n");
        return 2;
    }
    out = fopen(argv[1], "wb");
    for (int a = 2; a + 1 < argc; a += 2) {
        struct mt_model *m;
        json_error_t jerr;
        json_t *root = json_load_file(argv[a + 1], 0, &jerr);
        json_t *seq;
        size_t si;

        if (root == NULL || mt_model_open(argv[a], &m) != MT_OK) {
            fprintf(stderr, "cannot open %s\n", argv[a]);
            return 1;
        }
        json_array_foreach(json_object_get(root, "sequences"), si, seq) {
            int n, np;
            int32_t *ids = ids_of(json_object_get(seq, "ids"), &n);
            int32_t *prompt = ids_of(json_object_get(seq, "prompt"), &np);
            if (dump_mode(out, m, MT_INDEXER_EXACT, MT_ATTN_SPARSE, ids, n, prompt, np) ||
                dump_mode(out, m, MT_INDEXER_FP8, MT_ATTN_SPARSE, ids, n, NULL, 0) ||
                dump_mode(out, m, MT_INDEXER_EXACT, MT_ATTN_DENSE, ids, n, NULL, 0)) {
                fprintf(stderr, "forward failed on %s\n", argv[a]);
                return 1;
            }
            free(ids);
            free(prompt);
        }
        json_decref(root);
        mt_model_destroy(m);
    }
    return fclose(out) != 0;
}
