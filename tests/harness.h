/* SPDX-License-Identifier: MIT */
/*
 * harness.h - the cross-backend harness: any executor (or op) against the fp32 reference, on the
 * same inputs and shapes, with a tolerance per dtype.
 *
 * The one idea: a fast path is only as good as its comparison with the oracle, so every backend
 * is checked the same way. The harness makes random experts in any checkpoint dtype behind an
 * in-memory expert provider, runs one set of tasks (layers, experts, token counts) through the
 * reference executor and through the executor under test, and compares every output row. A new
 * backend plugs in by building its executor on mt_harness_provider and calling
 * mt_harness_executor (tests/test_executors.c).
 */
#ifndef MT_TESTS_HARNESS_H
#define MT_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/base/dtype.h"
#include "runtime/engine/executor.h"
#include "runtime/engine/expert_provider.h"

/*
 * How close a fast path must come to the fp32 reference: |got - want| <= atol + rtol * max|want|
 * per output row. The weights are the same bytes on both sides, so the tolerance covers only the
 * order of summation and the activations' precision (fp32, or bf16/fp8 when a path quantizes them).
 */
struct mt_harness_tol {
    double atol;
    double rtol;
};

/* The tolerance for activations computed in act (F32, BF16 or F8_E4M3). */
struct mt_harness_tol mt_harness_tol_for(enum mt_dtype act);

/*
 * Compare got[rows, cols] with want row by row (see mt_harness_tol); one TAP line named `what`,
 * with the worst row's error. Returns the verdict; quiet: no TAP line (the harness's self-test).
 */
bool mt_harness_check(const char *what, const float *got, const float *want, int rows, int cols,
                      struct mt_harness_tol tol, bool quiet);

/*
 * An in-memory provider of n_layers x n_experts random experts (gate, up [inter, hidden], down
 * [hidden, inter]) stored in dtype: F8_E4M3 with random 128x128 block scales, BF16 or F32.
 * Deterministic in seed. Destroy with mt_expert_provider_destroy. MT_ERR_NOMEM.
 */
mt_status_t mt_harness_provider_create(int n_layers, int n_experts, int hidden, int inter,
                                       enum mt_dtype dtype, uint64_t seed,
                                       struct mt_expert_provider **p_out);

/* How many acquires are outstanding (not released) in a harness provider: must end at 0. */
int mt_harness_provider_outstanding(const struct mt_expert_provider *p);

/*
 * Run tasks for token counts ms[0..n_ms) (task i: layer i % n_layers, expert (7 i + 3) %
 * n_experts, ms[i] random tokens) through ex and through the reference executor on the same
 * provider, all submitted at once; compare each task's output. One TAP line per call (unless
 * quiet). Returns the verdict.
 */
bool mt_harness_executor(const char *name, struct mt_executor *ex, struct mt_expert_provider *p,
                         int n_layers, int n_experts, int hidden, const int *ms, int n_ms,
                         struct mt_harness_tol tol, uint64_t seed, bool quiet);

#endif /* MT_TESTS_HARNESS_H */
