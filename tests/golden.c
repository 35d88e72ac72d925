/* SPDX-License-Identifier: MIT */
/*
 * golden.c - what the tests against HF's golden sets share (test_engine, test_gpu_engine): row
 * errors, greedy decoding, reading a golden set's files, and regenerating a synth checkpoint from
 * the command its golden.json records.
 */
#include <config.h>

#include "tests/golden.h"

#include "runtime/synth/synth.h"
#include "runtime/text/sampler.h"
#include "tests/tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double
golden_worst_row_rel(const float *got, const float *want, int rows, int cols, int *row_out)
{
    double worst = 0.0;
    int worst_row = -1;

    for (int r = 0; r < rows; r++) {
        double md = 0.0;
        double mx = 0.0;
        for (int j = 0; j < cols; j++) {
            double d = fabs((double)got[(size_t)r * cols + j] - want[(size_t)r * cols + j]);
            if (isnan(d)) {
                d = INFINITY;
            }
            md = fmax(md, d);
            mx = fmax(mx, fabs(want[(size_t)r * cols + j]));
        }
        double rel = md / (mx > 0 ? mx : 1.0);
        if (rel > worst || worst_row < 0) {
            worst = fmax(worst, rel);
            worst_row = r;
        }
    }
    if (row_out != NULL) {
        *row_out = worst_row;
    }
    return worst;
}

bool
golden_greedy(struct mt_engine *e, const int32_t *prompt, int np, int n, int32_t *out)
{
    int V = mt_engine_vocab(e);
    float *lg = malloc((size_t)V * sizeof(float));
    bool ok = lg != NULL;

    mt_engine_reset(e);
    ok = ok && mt_engine_forward(e, prompt, np, false, lg) == MT_OK;
    for (int i = 0; i < n && ok; i++) {
        out[i] = mt_sampler_argmax(lg, V);
        if (i + 1 < n) {
            ok = mt_engine_forward(e, &out[i], 1, false, lg) == MT_OK;
        }
    }
    free(lg);
    return ok;
}

float *
golden_read_f32(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    float *p = malloc(n * sizeof(float));
    if (f == NULL || p == NULL || fread(p, sizeof(float), n, f) != n) {
        free(p);
        p = NULL;
    }
    if (f != NULL) {
        fclose(f);
    }
    return p;
}

int32_t *
golden_json_ids(json_t *a, int *n_out)
{
    int n = (int)json_array_size(a);
    int32_t *ids = malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    for (int i = 0; i < n && ids != NULL; i++) {
        ids[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
    }
    *n_out = n;
    return ids;
}

/* Every *.safetensors file listed in golden.json's source_files_sha256 hashes as recorded. */
bool
golden_synth_matches(const char *dir, json_t *record, char *why, size_t why_len)
{
    const char *file;
    json_t *v;
    int checked = 0;

    json_object_foreach(record, file, v) {
        char path[1400];
        char hex[65];
        if (strstr(file, ".safetensors") == NULL) {
            continue; /* config.json formatting may change without changing the model */
        }
        snprintf(path, sizeof(path), "%s/%s", dir, file);
        if (!tap_sha256_file(path, hex) || json_string_value(v) == NULL ||
            strcmp(hex, json_string_value(v)) != 0) {
            snprintf(why, why_len, "%s has sha256 %.12s..., the golden was made from %.12s...",
                     file, hex, json_string_value(v) ? json_string_value(v) : "?");
            return false;
        }
        checked++;
    }
    snprintf(why, why_len, "%d shards match", checked);
    return checked > 0;
}

/*
 * Run "moetier synth -o DIR --preset P [--dtype fp8|bf16] [--seed N] ..." through the API into a
 * fresh temp dir (only the flags that change the weights are read).
 */
mt_status_t
golden_synth(const char *cmd, const char **dir_out)
{
    struct mt_synth_options so;
    char buf[512];
    char *save = NULL;
    char *prev = NULL;
    static char preset[32];

    memset(&so, 0, sizeof(so));
    so.layers = -1;
    so.dense_layers = -1;
    so.mtp = -1;
    so.preset = "tiny";
    snprintf(buf, sizeof(buf), "%s", cmd);
    for (char *tok = strtok_r(buf, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
        if (prev != NULL && strcmp(prev, "--preset") == 0) {
            snprintf(preset, sizeof(preset), "%s", tok);
            so.preset = preset;
        } else if (prev != NULL && strcmp(prev, "--seed") == 0) {
            so.seed = strtoull(tok, NULL, 10);
        } else if (prev != NULL && strcmp(prev, "--dtype") == 0) {
            so.bf16 = strcmp(tok, "bf16") == 0;
        } else if (prev != NULL && strcmp(prev, "--layers") == 0) {
            so.layers = atoi(tok);
        }
        prev = tok;
    }
    so.out_dir = tap_tmpdir();
    so.force = true;
    *dir_out = so.out_dir;
    return mt_synth_write(&so, NULL);
}

mt_status_t
golden_synth_tiny(const char *dir, uint64_t seed)
{
    struct mt_synth_options so;

    memset(&so, 0, sizeof(so));
    so.out_dir = dir;
    so.preset = "tiny";
    so.layers = -1;
    so.dense_layers = -1;
    so.mtp = -1;
    so.seed = seed;
    so.force = true;
    return mt_synth_write(&so, NULL);
}
