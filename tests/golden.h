/* SPDX-License-Identifier: MIT */
/*
 * golden.h - helpers of the tests against HF transformers' golden sets (tests/data/golden; the
 * layout is in tests/reference/README.md).
 */
#ifndef MT_TESTS_GOLDEN_H
#define MT_TESTS_GOLDEN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/engine/engine.h"

/*
 * Worst over rows of max_j |got - want| / max_j |want| (a NaN counts as infinite); the worst
 * row in *row_out (may be NULL).
 */
double golden_worst_row_rel(const float *got, const float *want, int rows, int cols, int *row_out);

/* Greedy: reset, prefill prompt[0..np), then n tokens one at a time into out[n]. */
bool golden_greedy(struct mt_engine *e, const int32_t *prompt, int np, int n, int32_t *out);

/* n little-endian floats from path (malloc'ed), NULL when the file is short or missing. */
float *golden_read_f32(const char *path, size_t n);

/* A JSON array of ids as int32 (malloc'ed); *n_out its length. */
int32_t *golden_json_ids(json_t *a, int *n_out);

/* Every *.safetensors file that golden.json's source_files_sha256 lists hashes as recorded. */
bool golden_synth_matches(const char *dir, json_t *record, char *why, size_t why_len);

/*
 * Run "moetier synth -o DIR --preset P [--dtype fp8|bf16] [--seed N] [--layers L]" through the API
 * into a fresh temp dir (*dir_out; only the flags that change the weights are read).
 */
mt_status_t golden_synth(const char *cmd, const char **dir_out);

/* `moetier synth --preset tiny --seed SEED -o DIR` (FP8) through the API, into dir. */
mt_status_t golden_synth_tiny(const char *dir, uint64_t seed);

#endif /* MT_TESTS_GOLDEN_H */
