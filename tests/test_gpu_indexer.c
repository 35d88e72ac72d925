/* SPDX-License-Identifier: MIT */
/*
 * test_gpu_indexer.c - the lightning indexer on the GPU against cpu/ref_indexer.c: exact fp32
 * scores, FP8 scores (tensor cores), and the exact top-k, which must give the same SET as
 * mt_cpu_topk: on random scores, on rows full of exact ties (all equal, four distinct values,
 * +-0 and NaN), on rows shorter than k, and on several rows of different lengths at once; both
 * its paths (one block a row, the grid over many SMs), the latter also inside a CUDA graph.
 */
#include <config.h>

#include "cpu/ref_ops.h"
#include "tests/gpu_test.h"

#ifdef MT_HAVE_CUDA
#include "kernels/engine_ops.h"
#include "kernels/graph.h"
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int
cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a;
    int32_t y = *(const int32_t *)b;

    return (x > y) - (x < y);
}

/*
 * The GPU's top-k of each row equals mt_cpu_topk's as a set (and the count and -1 padding), and
 * nothing is written past the rows' k entries each (gt_alloc_guarded); with grid, through
 * the scratch buffer (one row: the cooperative grid kernel), else without.
 */
static void
check_topk_path(const char *what, const float *scores, int64_t ld, int n_rows, int64_t n,
                const int32_t *lens, int k, bool grid)
{
    const size_t n_out = (size_t)n_rows * k;
    int32_t *got = gt_malloc(n_out * sizeof(int32_t));
    int32_t *cnt = gt_malloc((size_t)n_rows * sizeof(int32_t));
    int32_t *want = gt_malloc((size_t)k * sizeof(int32_t));
    int bad_rows = 0;
    int first_bad = -1;

    mt_gpu_arena_reset(gt_arena);
    /* guarded: the floats after the last row (12345) beat every score here, so a kernel that
       reads past a row's end takes them */
    float *d_s = gt_put_guarded(scores, (size_t)((n_rows - 1) * ld + n) * sizeof(float));
    int32_t *d_len = lens != NULL ? gt_put(lens, (size_t)n_rows * sizeof(int32_t)) : NULL;
    int32_t *d_idx = gt_alloc_guarded(n_out * sizeof(int32_t));
    int32_t *d_cnt = gt_alloc((size_t)n_rows * sizeof(int32_t));
    void *d_work = grid ? gt_alloc(mt_gpu_topk_scratch_bytes()) : NULL;
    /* the scratch starts dirty: the kernel must not rely on its contents */
    if (grid) {
        size_t wb = mt_gpu_topk_scratch_bytes();
        unsigned char *junk = gt_malloc(wb);
        memset(junk, 0xa5, wb);
        if (mt_gpu_copy_to_device(d_work, junk, wb) != MT_OK) {
            gt_bail("copy to device");
        }
        free(junk);
    }
    mt_status_t st = mt_gpu_topk(d_s, ld, n_rows, n, d_len, k, d_idx, d_cnt, d_work, NULL);
    if (st != MT_OK) {
        tap_ok(false, "top-%d %s%s: launch failed: %s", k, what, grid ? " (scratch)" : "",
               mt_last_error());
        goto out;
    }
    gt_get(got, d_idx, n_out * sizeof(int32_t));
    int past = gt_guard_hits(d_idx, n_out * sizeof(int32_t));
    gt_get(cnt, d_cnt, (size_t)n_rows * sizeof(int32_t));
    for (int r = 0; r < n_rows; r++) {
        int64_t len = lens != NULL ? lens[r] : n;
        int m = (int)MT_MIN(len, (int64_t)k);
        int32_t *g = got + (size_t)r * k;
        bool ok = cnt[r] == m;

        if (mt_cpu_topk(scores + r * ld, len, m, want) != MT_OK) {
            gt_bail("cpu top-k");
        }
        qsort(g, (size_t)m, sizeof(int32_t), cmp_i32);
        qsort(want, (size_t)m, sizeof(int32_t), cmp_i32);
        for (int i = 0; ok && i < m; i++) {
            ok = g[i] == want[i];
        }
        for (int i = m; ok && i < k; i++) {
            ok = g[i] == -1;
        }
        if (!ok) {
            bad_rows++;
            first_bad = first_bad < 0 ? r : first_bad;
        }
    }
    tap_ok(bad_rows == 0 && past == 0,
           "top-%d %s%s: same set as mt_cpu_topk in every row (%d of %d differ), nothing written "
           "past them (%d of %d guard entries changed)",
           k, what, grid ? " (scratch)" : "", bad_rows, n_rows, past, GT_GUARD);
    if (bad_rows > 0) {
        tap_diag("first differing row %d", first_bad);
    }
out:
    free(want);
    free(cnt);
    free(got);
}

/* Both paths: one block a row, and (one row) with scratch: the grid kernel, or the short-row
 * kernel where n <= 6144. */
static void
check_topk(const char *what, const float *scores, int64_t ld, int n_rows, int64_t n,
           const int32_t *lens, int k)
{
    check_topk_path(what, scores, ld, n_rows, n, lens, k, false);
    check_topk_path(what, scores, ld, n_rows, n, lens, k, true);
}

static void
test_topk(void)
{
    const int64_t N = 131072;
    float *s = gt_malloc((size_t)N * 4 * sizeof(float));
    int32_t lens[4] = {3000, 2048, 100, 5000};

    gt_fill(s, N, -1.0f, 1.0f);
    check_topk("of 131072 uniform scores", s, N, 1, N, NULL, 2048);
    gt_fill(s, N, 0.0f, 1.0f);
    check_topk("of 131072 scores in [0,1) (most share a few exponents)", s, N, 1, N, NULL, 2048);
    for (int64_t i = 0; i < N; i++) {
        s[i] = 0.5f;
    }
    check_topk("of 131072 equal scores (smallest indices win)", s, N, 1, N, NULL, 2048);
    for (int64_t i = 0; i < N; i++) {
        s[i] = (float)mt_rng_below(&gt_rng, 4);
    }
    check_topk("of 131072 scores in {0,1,2,3}", s, N, 1, N, NULL, 2048);
    for (int64_t i = 0; i < N; i++) {
        uint64_t r = mt_rng_below(&gt_rng, 8);
        s[i] = r == 0 ? NAN : r == 1 ? -0.0f : r == 2 ? 0.0f : r == 3 ? -INFINITY : -1.0f;
    }
    check_topk("of 131072 scores of NaN, +-0, -inf and -1 (ties across the sign of zero)", s, N,
               1, N, NULL, 2048);
    for (int64_t i = 0; i < 160000; i++) {
        s[i] = gt_uniform(-100.0f, 100.0f);
    }
    check_topk("of 160000 (the longest context)", s, 160000, 1, 160000, NULL, 2048);
    gt_fill(s, 1000, -1.0f, 1.0f);
    check_topk("of a row of 1000 (shorter than k: all of it)", s, 1000, 1, 1000, NULL, 2048);
    check_topk("of a row of exactly k", s, 1000, 1, 1000, NULL, 1000);
    gt_fill(s, 7777, -1.0f, 1.0f);
    check_topk("of 7777 (k = 1)", s, 7777, 1, 7777, NULL, 1);
    check_topk("of 7777 (k = 7)", s, 7777, 1, 7777, NULL, 7);
    for (int i = 0; i < 4 * 5000; i++) {
        s[i] = (float)mt_rng_below(&gt_rng, 50) * 0.125f;
    }
    check_topk("of 4 rows of lengths 3000, 2048, 100, 5000 with ties", s, 5000, 4, 5000, lens,
               2048);
    /* one row of at most 6144 with scratch: held in one block's registers (ties, NaN and +-0,
     * k = n - 1, k = 1, scores of one sign and exponent); 6145: the grid kernel again */
    for (int i = 0; i < 6145; i++) {
        s[i] = (float)mt_rng_below(&gt_rng, 4);
    }
    check_topk("of 2100 in {0,1,2,3}", s, 2100, 1, 2100, NULL, 2048);
    check_topk("of 6144 in {0,1,2,3}", s, 6144, 1, 6144, NULL, 2048);
    check_topk("of 6145 in {0,1,2,3}", s, 6145, 1, 6145, NULL, 2048);
    for (int i = 0; i < 8192; i++) {
        uint64_t r = mt_rng_below(&gt_rng, 8);
        s[i] = r == 0 ? NAN : r == 1 ? -0.0f : r == 2 ? 0.0f : r == 3 ? -INFINITY : -1.0f;
    }
    check_topk("of 5000 of NaN, +-0, -inf and -1", s, 5000, 1, 5000, NULL, 4096);
    check_topk("of 6000 of NaN, +-0, -inf and -1 (k = 7)", s, 6000, 1, 6000, NULL, 7);
    gt_fill(s, 12288, -1.0f, 1.0f);
    check_topk("of 3000 (k = n - 1)", s, 3000, 1, 3000, NULL, 2999);
    check_topk("of 6000 (k = 1)", s, 6000, 1, 6000, NULL, 1);
    gt_fill(s, 12288, 1.0f, 1.0009765625f); /* one sign and exponent: the first digits tie */
    check_topk("of 6100 in [1, 1 + 2^-10)", s, 6100, 1, 6100, NULL, 2048);
    /* odd lengths around the grid kernel's 4096-key blocks, k just below n */
    gt_fill(s, 20000, -1.0f, 1.0f);
    check_topk("of 2049", s, 2049, 1, 2049, NULL, 2048);
    check_topk("of 4097", s, 4097, 1, 4097, NULL, 2048);
    check_topk("of 12289 (k = 4096)", s, 12289, 1, 12289, NULL, 4096);
    check_topk("of 20000 (k = 333)", s, 20000, 1, 20000, NULL, 333);
    for (int64_t i = 0; i < N; i++) {
        s[i] = (float)mt_rng_below(&gt_rng, 3000) * 0.25f; /* ~44 copies of each value */
    }
    check_topk("of 131072 with ~44 copies of each value", s, N, 1, N, NULL, 2048);
    for (int64_t i = 0; i < N; i++) {
        s[i] = i < N - 100 ? -1.0f : 2.0f; /* the 100 largest at the end, the rest tied */
    }
    check_topk("of 131072 tied but the last 100", s, N, 1, N, NULL, 2048);
    free(s);
    /* longer than the grid holds in registers: its blocks re-read slices each pass */
    const int64_t NB = 6000001;
    s = gt_malloc((size_t)NB * sizeof(float));
    for (int64_t i = 0; i < NB; i++) {
        s[i] = (float)mt_rng_below(&gt_rng, 1u << 20) * 0x1p-20f;
    }
    check_topk("of 6000001 with ties", s, NB, 1, NB, NULL, 2048);
    free(s);
}

/* Whether mt_gpu_index_scores_fp8 takes its sm_89+ kernel here (for the test's name only). */
static bool
fp8_mma(void)
{
    struct mt_gpu_info info;

    return getenv("MT_INDEXER_F16") == NULL && mt_gpu_device_info(0, &info) == MT_OK &&
           info.sm_major * 10 + info.sm_minor >= 89;
}

#ifdef MT_HAVE_CUDA /* graph.h and engine_ops.h exist only in CUDA builds */
/*
 * The engine records decode steps as CUDA graphs, so the grid top-k (a cooperative launch) must
 * record and replay too: a recording of 131072, then one of 100000 (updated or rebuilt), each
 * replayed and compared with mt_cpu_topk.
 */
static void
test_topk_graph(void)
{
    const int64_t N = 131072;
    const int K = 2048;
    int64_t sizes[4] = {N, 100000, 5000, 6000}; /* the grid kernel, then the short-row one */
    float *sc = gt_malloc((size_t)N * sizeof(float));
    int32_t *got = gt_malloc((size_t)K * sizeof(int32_t));
    int32_t *want = gt_malloc((size_t)K * sizeof(int32_t));
    struct CUstream_st *s = NULL;
    struct CUgraphExec_st *exec = NULL;

    if (mt_gpu_stream_create(&s) != MT_OK) {
        gt_bail("stream");
    }
    gt_fill(sc, (size_t)N, -1.0f, 1.0f);
    mt_gpu_arena_reset(gt_arena);
    float *d_s = gt_put(sc, (size_t)N * sizeof(float));
    int32_t *d_idx = gt_alloc((size_t)K * sizeof(int32_t));
    void *d_work = gt_alloc(mt_gpu_topk_scratch_bytes());
    for (int r = 0; r < 4; r++) {
        int64_t n = sizes[r];
        bool rebuilt = false;
        bool ok = mt_gpu_graph_begin(s) == MT_OK;
        mt_status_t st = ok ? mt_gpu_topk(d_s, n, 1, n, NULL, K, d_idx, NULL, d_work, s) : MT_OK;
        ok = ok && mt_gpu_graph_end(s, st == MT_OK, &exec, &rebuilt) == MT_OK && st == MT_OK &&
             exec != NULL && mt_gpu_graph_launch(exec, s) == MT_OK &&
             mt_gpu_stream_sync(s) == MT_OK;
        if (!ok) {
            tap_ok(false, "top-%d of %lld recorded in a CUDA graph: %s", K, (long long)n,
                   mt_last_error());
            continue;
        }
        gt_get(got, d_idx, (size_t)K * sizeof(int32_t));
        if (mt_cpu_topk(sc, n, K, want) != MT_OK) {
            gt_bail("cpu top-k");
        }
        qsort(got, (size_t)K, sizeof(int32_t), cmp_i32);
        qsort(want, (size_t)K, sizeof(int32_t), cmp_i32);
        tap_ok(memcmp(got, want, (size_t)K * sizeof(int32_t)) == 0,
               "top-%d of %lld recorded in a CUDA graph and replayed: the same set as mt_cpu_topk "
               "(%s)", K, (long long)n, r == 0 ? "new graph" : rebuilt ? "rebuilt" : "updated");
    }
    mt_gpu_graph_destroy(exec);
    mt_gpu_stream_destroy(s);
    free(want);
    free(got);
    free(sc);
}
#endif

/*
 * With split_keys set, the exact cases below run on the split key cache (mt_gpu_index_keys_split)
 * instead of fp32 keys: the keys are stored into it in two pieces (the first third, then the rest
 * at its position, as the engine stores a chunk at a time) and scored by mt_gpu_index_scores_split
 * with the first piece's keys ready (copied before the wait for the previous kernel).
 */
static bool split_keys;
static const char *split_path = ""; /* the kernel that scores them, for the tests' names */

static mt_status_t
exact_scores(const float *d_q, const float *d_w, int H, int D, const float *d_k, int64_t n0,
             int n_q, float *d_o, int64_t ld)
{
    if (!split_keys) {
        return mt_gpu_index_scores_rows(d_q, d_w, H, D, d_k, n0, n_q, 0.125f, d_o, ld, NULL);
    }
    int64_t n = n0 + n_q - 1;
    int64_t a = n / 3;
    void *cache = gt_alloc(mt_gpu_index_keys_split_bytes(n));
    mt_status_t st = a > 0 ? mt_gpu_index_keys_split_store(cache, 0, d_k, a, NULL) : MT_OK;
    if (st == MT_OK) {
        st = mt_gpu_index_keys_split_store(cache, a, d_k + (size_t)a * D, n - a, NULL);
    }
    /* the first piece was stored two kernels back: ready before the previous one ran */
    return st != MT_OK ? st
                       : mt_gpu_index_scores_split(d_q, d_w, cache, n0, n_q, a, 0.125f, d_o, ld,
                                                   NULL);
}

/* The exact scores at other head counts and widths (the tiny models' 4 x 32; dims that are not
 * a multiple of the kernel's 32-dim chunks; fewer heads than its 64) against the CPU. */
/*
 * Exact scores against the CPU, q in [-qmag, qmag] and k in [-kmag, kmag] (the tensor-core kernel
 * scales every row into f16's range: 1e5 would overflow f16, 1e-6 be subnormal in it), the
 * tolerance scaled with them. Keys n / 2 and n - 1 repeat key 0: equal keys must score the same
 * bits wherever they lie (the top-k breaks ties by position only between equal scores).
 */
static void
test_scores_exact_mag(int H, int D, int64_t n_keys, float qmag, float kmag, const char *kernel)
{
    float *q = gt_malloc((size_t)H * D * sizeof(float));
    float *w = gt_malloc((size_t)H * sizeof(float));
    float *k = gt_malloc((size_t)n_keys * D * sizeof(float));
    float *want = gt_malloc((size_t)n_keys * sizeof(float));
    float *got = gt_malloc((size_t)n_keys * sizeof(float));
    char name[128];

    gt_fill(q, (size_t)H * D, -qmag, qmag);
    gt_fill(w, H, -0.5f, 1.0f);
    gt_fill(k, (size_t)n_keys * D, -kmag, kmag);
    if (n_keys >= 3) {
        memcpy(k + (size_t)(n_keys / 2) * D, k, (size_t)D * sizeof(float));
        memcpy(k + (size_t)(n_keys - 1) * D, k, (size_t)D * sizeof(float));
    }
    mt_cpu_index_scores(q, w, H, D, k, n_keys, 0.125f, want);
    mt_gpu_arena_reset(gt_arena);
    float *d_q = gt_put(q, (size_t)H * D * sizeof(float));
    float *d_w = gt_put(w, (size_t)H * sizeof(float));
    float *d_k = gt_put(k, (size_t)n_keys * D * sizeof(float));
    float *d_o = gt_alloc((size_t)n_keys * sizeof(float));
    snprintf(name, sizeof(name), "exact index scores (%s), %d heads x %d, %lld keys, |q| <= %g, "
             "|k| <= %g", kernel, H, D, (long long)n_keys, qmag, kmag);
    if (exact_scores(d_q, d_w, H, D, d_k, n_keys, 1, d_o, n_keys) != MT_OK) {
        tap_ok(false, "%s: launch: %s", name, mt_last_error());
    } else {
        gt_get(got, d_o, (size_t)n_keys * sizeof(float));
        mt_test_allclose(name, got, want, (size_t)n_keys, 1e-5f, 1e-5f * qmag * kmag);
        if (n_keys >= 3) {
            tap_ok(memcmp(&got[0], &got[n_keys / 2], 4) == 0 &&
                       memcmp(&got[0], &got[n_keys - 1], 4) == 0,
                   "%s: equal keys, equal scores (%.9g %.9g %.9g)", name, got[0],
                   got[n_keys / 2], got[n_keys - 1]);
        }
    }
    free(got);
    free(want);
    free(k);
    free(w);
    free(q);
}

/*
 * The tensor-core kernel's two ways of bringing keys in (indexer.cu): a cp.async ring in shared
 * memory where it fits (the default), registers elsewhere. The arithmetic is the same, so both
 * must give the same bits, and the CPU's scores to 1e-5 (where the ring does not fit, both runs
 * take registers and the check still holds).
 */
static void
test_scores_exact_ring(int64_t n_keys)
{
    enum { H = 64, D = 128 };
    float *q = gt_malloc((size_t)H * D * sizeof(float));
    float *w = gt_malloc((size_t)H * sizeof(float));
    float *k = gt_malloc((size_t)n_keys * D * sizeof(float));
    float *want = gt_malloc((size_t)n_keys * sizeof(float));
    float *ring = gt_malloc((size_t)n_keys * sizeof(float));
    float *regs = gt_malloc((size_t)n_keys * sizeof(float));

    gt_fill(q, (size_t)H * D, -1.0f, 1.0f);
    gt_fill(w, H, -0.5f, 1.0f);
    gt_fill(k, (size_t)n_keys * D, -1.0f, 1.0f);
    mt_cpu_index_scores(q, w, H, D, k, n_keys, 0.125f, want);
    mt_gpu_arena_reset(gt_arena);
    float *d_q = gt_put(q, (size_t)H * D * sizeof(float));
    float *d_w = gt_put(w, (size_t)H * sizeof(float));
    float *d_k = gt_put(k, (size_t)n_keys * D * sizeof(float));
    float *d_o = gt_alloc((size_t)n_keys * sizeof(float));
    bool ok = mt_gpu_index_scores(d_q, d_w, H, D, d_k, n_keys, 0.125f, d_o, NULL) == MT_OK;
    if (ok) {
        gt_get(ring, d_o, (size_t)n_keys * sizeof(float));
    }
    mt_gpu_index_exact_ring_set(false);
    ok = ok && mt_gpu_index_scores(d_q, d_w, H, D, d_k, n_keys, 0.125f, d_o, NULL) == MT_OK;
    mt_gpu_index_exact_ring_set(true);
    if (!tap_ok(ok, "exact index scores, %lld keys, ring and registers: launches%s%s",
                (long long)n_keys, ok ? "" : ": ", ok ? "" : mt_last_error())) {
        goto out;
    }
    gt_get(regs, d_o, (size_t)n_keys * sizeof(float));
    mt_test_allclose("exact index scores through the ring", ring, want, (size_t)n_keys, 1e-5f,
                     1e-5f);
    tap_ok(memcmp(ring, regs, (size_t)n_keys * sizeof(float)) == 0,
           "exact index scores, %lld keys: keys in registers give the ring's bits",
           (long long)n_keys);
out:
    free(regs);
    free(ring);
    free(want);
    free(k);
    free(w);
    free(q);
}

/*
 * A prompt's queries in one launch (mt_gpu_index_scores_rows): query y scores the first
 * n0 + y keys into row y of ld floats, the rest of the row NaN; each row against the CPU's
 * scores of that query alone, and the top-k of every row (mt_gpu_topk over whole rows) the same
 * set as the CPU's over the query's own keys. With nan_keys, three keys in four hold a NaN, so
 * that their scores are NaN and a row has fewer than k numbers: the set is still the CPU's, the
 * query's own keys (with -inf padding the top-k took the padding, positions past the query).
 */
static void
test_scores_rows(int H, int D, int64_t n0, int n_q, int k_top, bool nan_keys)
{
    int64_t n_keys = n0 + n_q - 1;
    int64_t ld = n_keys + 5;
    float *q = gt_malloc((size_t)n_q * H * D * sizeof(float));
    float *w = gt_malloc((size_t)n_q * H * sizeof(float));
    float *k = gt_malloc((size_t)n_keys * D * sizeof(float));
    float *want = gt_malloc((size_t)n_keys * sizeof(float));
    float *got = gt_malloc((size_t)n_q * ld * sizeof(float));
    int32_t *idx = gt_malloc((size_t)n_q * k_top * sizeof(int32_t));
    int32_t *widx = gt_malloc((size_t)k_top * sizeof(int32_t));
    int bad_rows = 0, bad_tail = 0, bad_sets = 0;
    double worst = 0.0;

    gt_fill(q, (size_t)n_q * H * D, -1.0f, 1.0f);
    gt_fill(w, (size_t)n_q * H, -0.5f, 1.0f);
    gt_fill(k, (size_t)n_keys * D, -1.0f, 1.0f);
    for (int64_t i = 0; nan_keys && i < n_keys; i++) {
        k[i * D + D / 3] = i % 4 != 0 ? NAN : k[i * D + D / 3];
    }
    mt_gpu_arena_reset(gt_arena);
    float *d_q = gt_put(q, (size_t)n_q * H * D * sizeof(float));
    float *d_w = gt_put(w, (size_t)n_q * H * sizeof(float));
    float *d_k = gt_put(k, (size_t)n_keys * D * sizeof(float));
    float *d_o = gt_alloc((size_t)n_q * ld * sizeof(float));
    int32_t *d_i = gt_alloc((size_t)n_q * k_top * sizeof(int32_t));
    bool ok = exact_scores(d_q, d_w, H, D, d_k, n0, n_q, d_o, ld) == MT_OK &&
              mt_gpu_topk(d_o, ld, n_q, ld, NULL, k_top, d_i, NULL, NULL, NULL) == MT_OK;
    if (ok) {
        gt_get(got, d_o, (size_t)n_q * ld * sizeof(float));
        gt_get(idx, d_i, (size_t)n_q * k_top * sizeof(int32_t));
    }
    for (int y = 0; ok && y < n_q; y++) {
        int64_t n = n0 + y;
        const float *row = got + (size_t)y * ld;
        mt_cpu_index_scores(q + (size_t)y * H * D, w + (size_t)y * H, H, D, k, n, 0.125f, want);
        for (int64_t i = 0; i < n; i++) {
            double d = fabs((double)row[i] - want[i]);
            worst = d > worst ? d : worst;
            bad_rows += isnan(row[i]) != isnan(want[i]) || d > 1e-5 + 1e-5 * fabs(want[i]);
        }
        for (int64_t i = n; i < ld; i++) {
            bad_tail += !isnan(row[i]);
        }
        /* the set over the query's own keys (CPU, on the GPU's scores: the same rule) */
        int32_t *gi = idx + (size_t)y * k_top;
        mt_cpu_topk(row, n, k_top, widx);
        qsort(widx, (size_t)k_top, sizeof(int32_t), cmp_i32);
        qsort(gi, (size_t)k_top, sizeof(int32_t), cmp_i32);
        bad_sets += memcmp(widx, gi, (size_t)k_top * sizeof(int32_t)) != 0;
    }
    tap_ok(ok && bad_rows == 0 && bad_tail == 0 && bad_sets == 0,
           "exact index scores of %d queries in one launch%s%s (%d heads x %d, %lld.. keys%s, "
           "rows of %lld): every row the CPU's (worst %.2g; %d values off), the tails NaN (%d "
           "not), top-%d of whole rows the query's own set (%d rows differ)%s%s", n_q,
           split_keys ? ", split keys on " : "", split_keys ? split_path : "", H, D,
           (long long)n0, nan_keys ? ", 3 in 4 NaN" : "", (long long)ld, worst, bad_rows,
           bad_tail, k_top, bad_sets,
           ok ? "" : ": ", ok ? "" : mt_last_error());
    free(widx);
    free(idx);
    free(got);
    free(want);
    free(k);
    free(w);
    free(q);
}

/* Which kernel mt_gpu_index_scores runs for these shapes (with the default settings). */
static void
test_scores_exact(int H, int D, int64_t n_keys)
{
    test_scores_exact_mag(H, D, n_keys, 1.0f, 1.0f,
                          H == 64 && D == 128 ? "tensor cores" : "CUDA cores");
}

/*
 * Quantize as the FP8 indexer does (act_quant per head and per key, ue8m0 scales): n_q query heads
 * of q into q8, their scales folded into w with the softmax scale 1 / sqrt(128); n_keys keys of k
 * into k8 and ks.
 */
static void
quantize_fp8(const float *q, float *w, int n_q, int D, const float *k, int64_t n_keys, uint8_t *q8,
             uint8_t *k8, float *ks)
{
    for (int h = 0; h < n_q; h++) {
        float sq = mt_cpu_act_quant(q + (size_t)h * D, D, true, q8 + (size_t)h * D);
        w[h] *= sq * 0.08838835f;
    }
    for (int64_t s = 0; s < n_keys; s++) {
        ks[s] = mt_cpu_act_quant(k + (size_t)s * D, D, true, k8 + (size_t)s * D);
    }
}

static void
test_scores(int64_t n_keys)
{
    const int H = 64;
    const int D = 128;
    float *q = gt_malloc((size_t)H * D * sizeof(float));
    float *w = gt_malloc((size_t)H * sizeof(float));
    float *k = gt_malloc((size_t)n_keys * D * sizeof(float));
    uint8_t *q8 = gt_malloc((size_t)H * D);
    uint8_t *k8 = gt_malloc((size_t)n_keys * D);
    float *ks = gt_malloc((size_t)n_keys * sizeof(float));
    float *want = gt_malloc((size_t)n_keys * sizeof(float));
    float *got = gt_malloc((size_t)n_keys * sizeof(float));
    char name[96];

    test_scores_exact(H, D, n_keys);
    gt_fill(q, (size_t)H * D, -1.0f, 1.0f);
    gt_fill(w, H, -0.5f, 1.0f);
    gt_fill(k, (size_t)n_keys * D, -1.0f, 1.0f);

    quantize_fp8(q, w, H, D, k, n_keys, q8, k8, ks);
    mt_cpu_index_scores_fp8(q8, w, H, D, k8, ks, n_keys, want);
    mt_gpu_arena_reset(gt_arena);
    uint8_t *d_q8 = gt_put(q8, (size_t)H * D);
    float *d_w = gt_put(w, (size_t)H * sizeof(float));
    uint8_t *d_k8 = gt_put(k8, (size_t)n_keys * D);
    float *d_ks = gt_put(ks, (size_t)n_keys * sizeof(float));
    float *d_o = gt_alloc((size_t)n_keys * sizeof(float));
    /* keys read before the previous kernel ends: none, about half, all (the same scores) */
    int64_t readies[3] = {0, n_keys / 2 + 7 < n_keys ? n_keys / 2 + 7 : n_keys, n_keys};
    for (int r = 0; r < 3; r++) {
        int64_t n_ready = readies[r];
        for (int64_t i = 0; i < n_keys; i++) {
            got[i] = NAN; /* a key the kernel skips stays NaN */
        }
        if (mt_gpu_copy_to_device(d_o, got, (size_t)n_keys * sizeof(float)) != MT_OK) {
            gt_bail("copy to device");
        }
        tap_ok(mt_gpu_index_scores_fp8(d_q8, d_w, H, D, d_k8, d_ks, n_keys, n_ready, d_o,
                                       NULL) == MT_OK,
               "fp8 index scores launch");
        gt_get(got, d_o, (size_t)n_keys * sizeof(float));
        snprintf(name, sizeof(name), "FP8 index scores (%s), %lld keys, %lld ready",
                 fp8_mma() ? "sm_89+ kernel" : "portable kernel", (long long)n_keys,
                 (long long)n_ready);
        double max_rel = 0.0;
        for (int64_t i = 0; i < n_keys; i++) {
            double d = fabs((double)got[i] - want[i]) / fmax(fabs((double)want[i]), 1e-3);
            max_rel = d > max_rel ? d : max_rel;
        }
        tap_diag("%s: max |got - want| / max(|want|, 1e-3) = %.3g", name, max_rel);
        /* both kernels: e4m3 -> f16 and each product are exact, only the fp32 order differs */
        mt_test_allclose(name, got, want, (size_t)n_keys, 1e-5f, 1e-5f);
        if (n_keys >= 4096 && r == 2) { /* last: its buffers take the arena's place */
            check_topk("of the FP8 index scores", got, n_keys, 1, n_keys, NULL, 2048);
        }
    }
    free(got);
    free(want);
    free(ks);
    free(k8);
    free(q8);
    free(k);
    free(w);
    free(q);
}

/*
 * FP8 scores of a prompt's queries in one launch (mt_gpu_index_scores_fp8_rows): query y scores
 * the first n_keys0 + y keys into row y of ld; each score must be bit for bit the one-query
 * launch's (the same products in the same order), the first and last rows within 1e-5 of the
 * CPU's, the rest of each row NaN. On the kernel this GPU takes, then on the portable one.
 */
static void
test_scores_fp8_rows(int64_t n_keys0, int n_rows)
{
    const int H = 64;
    const int D = 128;
    int64_t n_keys = n_keys0 + n_rows - 1;
    int64_t ld = n_keys + 5;
    float *q = gt_malloc((size_t)n_rows * H * D * sizeof(float));
    float *w = gt_malloc((size_t)n_rows * H * sizeof(float));
    float *k = gt_malloc((size_t)n_keys * D * sizeof(float));
    uint8_t *q8 = gt_malloc((size_t)n_rows * H * D);
    uint8_t *k8 = gt_malloc((size_t)n_keys * D);
    float *ks = gt_malloc((size_t)n_keys * sizeof(float));
    float *want = gt_malloc((size_t)n_keys * sizeof(float));
    float *got = gt_malloc((size_t)n_rows * ld * sizeof(float));
    float *one = gt_malloc((size_t)n_keys * sizeof(float));

    gt_fill(q, (size_t)n_rows * H * D, -1.0f, 1.0f);
    gt_fill(w, (size_t)n_rows * H, -0.5f, 1.0f);
    gt_fill(k, (size_t)n_keys * D, -1.0f, 1.0f);
    quantize_fp8(q, w, n_rows * H, D, k, n_keys, q8, k8, ks);
    mt_gpu_arena_reset(gt_arena);
    uint8_t *d_q8 = gt_put(q8, (size_t)n_rows * H * D);
    float *d_w = gt_put(w, (size_t)n_rows * H * sizeof(float));
    uint8_t *d_k8 = gt_put(k8, (size_t)n_keys * D);
    float *d_ks = gt_put(ks, (size_t)n_keys * sizeof(float));
    float *d_o = gt_alloc((size_t)n_rows * ld * sizeof(float));
    float *d_one = gt_alloc((size_t)n_keys * sizeof(float));
    for (int path = 0; path < 2; path++) {
        if (path == 1) {
            setenv("MT_INDEXER_F16", "1", 1);
        }
        const char *kn = fp8_mma() ? "sm_89+ kernel" : "portable kernel";
        for (size_t i = 0; i < (size_t)n_rows * ld; i++) {
            got[i] = 1234.5f; /* a score the kernel skips keeps it */
        }
        if (mt_gpu_copy_to_device(d_o, got, (size_t)n_rows * ld * sizeof(float)) != MT_OK) {
            gt_bail("copy to device");
        }
        mt_status_t st = mt_gpu_index_scores_fp8_rows(d_q8, d_w, H, D, d_k8, d_ks, n_keys0, n_rows,
                                                      d_o, ld, NULL);
        if (!tap_ok(st == MT_OK, "FP8 index scores of %d queries in one launch (%s): %s", n_rows,
                    kn, st == MT_OK ? "launched" : mt_last_error())) {
            unsetenv("MT_INDEXER_F16");
            continue;
        }
        gt_get(got, d_o, (size_t)n_rows * ld * sizeof(float));
        int64_t off = 0, tails = 0;
        double worst = 0.0;
        for (int y = 0; y < n_rows; y++) {
            int64_t n = n_keys0 + y;
            const float *row = got + (size_t)y * ld;
            if (mt_gpu_index_scores_fp8(d_q8 + (size_t)y * H * D, d_w + (size_t)y * H, H, D, d_k8,
                                        d_ks, n, 0, d_one, NULL) != MT_OK) {
                gt_bail("one-query fp8 scores");
            }
            gt_get(one, d_one, (size_t)n * sizeof(float));
            off += memcmp(row, one, (size_t)n * sizeof(float)) != 0;
            for (int64_t i = n; i < ld; i++) {
                tails += !isnan(row[i]);
            }
            if (y == 0 || y == n_rows - 1) {
                mt_cpu_index_scores_fp8(q8 + (size_t)y * H * D, w + (size_t)y * H, H, D, k8, ks, n,
                                        want);
                for (int64_t i = 0; i < n; i++) {
                    double d = fabs((double)row[i] - want[i]) - 1e-5 * (1.0 + fabs(want[i]));
                    worst = d > worst ? d : worst;
                }
            }
        }
        tap_ok(off == 0 && tails == 0 && worst <= 0.0,
               "FP8 index scores of %d queries in one launch (%s), %lld.. keys, rows of %lld: "
               "every row the one-query launch's bit for bit (%lld rows differ), the tails NaN "
               "(%lld not), the first and last within 1e-5 of the CPU's",
               n_rows, kn, (long long)n_keys0, (long long)ld, (long long)off, (long long)tails);
        unsetenv("MT_INDEXER_F16");
    }
    /* what it refuses, with one message each: no queries, more than a grid's 65,535 rows, rows
     * shorter than the last query's keys, keys not 16-byte aligned */
    struct {
        int n_rows;
        int64_t ld;
        const uint8_t *k8;
    } bad[] = {{0, ld, d_k8},
               {65536, ld, d_k8},
               {n_rows, n_keys - 1, d_k8},
               {n_rows, ld, d_k8 + 8}};
    int refused = 0;
    for (int i = 0; i < 4; i++) {
        mt_status_t st = mt_gpu_index_scores_fp8_rows(d_q8, d_w, H, D, bad[i].k8, d_ks, n_keys0,
                                                      bad[i].n_rows, d_o, bad[i].ld, NULL);
        refused += st == MT_ERR_INVAL && strstr(mt_last_error(), "fp8 index scores") != NULL;
    }
    tap_ok(refused == 4, "FP8 index scores of many queries refuse 0 or 65,536 queries, short rows "
           "and unaligned keys with one message (%d of 4): %s", refused, mt_last_error());
    free(one);
    free(got);
    free(want);
    free(ks);
    free(k8);
    free(q8);
    free(k);
    free(w);
    free(q);
}

int
main(void)
{
    if (!gt_init(512, 4)) {
        return tap_done();
    }
    test_scores_rows(64, 128, 2049, 37, 2048, false); /* a prompt chunk just past index_topk */
    test_scores_rows(64, 128, 300, 200, 64, false);
    test_scores_rows(8, 32, 20, 45, 8, false); /* tiny models: CUDA cores */
    test_scores_rows(64, 128, 2049, 37, 2048, true); /* NaN scores: fewer numbers than k */
    test_scores_rows(8, 32, 20, 45, 8, true);
    test_scores(1);
    test_scores(1001);
    test_scores(131072);
    test_scores_fp8_rows(2049, 37); /* a prompt chunk just past index_topk */
    test_scores_fp8_rows(1, 70);    /* rows of 1 to 70 keys: partial tiles */
    test_scores_fp8_rows(30000, 128); /* many warps a row */
    test_scores_exact(64, 128, 2100); /* just past V3.2's index_topk */
    test_scores_exact(4, 32, 70);     /* the tiny models */
    test_scores_exact(37, 100, 33);   /* odd heads, a partial dim chunk, a partial key tile */
    test_scores_exact(1, 4, 5);
    /* the tensor-core kernel's row scaling: past f16's range, and deep in its subnormals */
    test_scores_exact_mag(64, 128, 4099, 1e4f, 1e5f, "tensor cores");
    test_scores_exact_mag(64, 128, 1000, 1e-6f, 1e-3f, "tensor cores");
    if (mt_gpu_index_keys_split(64, 128)) { /* the engine's exact cache at V3.2's shape */
        split_keys = true;
        /* both kernels of the split cache where both run: wgmma (H100/H200), mma.sync */
        for (int path = mt_gpu_index_exact_wgmma_active() ? 0 : 1; path < 2; path++) {
            mt_gpu_index_exact_wgmma_set(path == 0);
            split_path = path == 0 ? "wgmma" : "mma.sync";
            char name[64];
            snprintf(name, sizeof(name), "split keys, %s", split_path);
            test_scores_rows(64, 128, 2049, 37, 2048, false);
            test_scores_rows(64, 128, 300, 200, 64, false);
            test_scores_rows(64, 128, 16, 70, 16, false); /* rows of 16 to 85: partial groups */
            test_scores_rows(64, 128, 2049, 37, 2048, true);
            /* one key; a group less one, whole, and one more; 193 keys: the first 64 ready */
            test_scores_exact_mag(64, 128, 1, 1.0f, 1.0f, name);
            test_scores_exact_mag(64, 128, 63, 1.0f, 1.0f, name);
            test_scores_exact_mag(64, 128, 64, 1.0f, 1.0f, name);
            test_scores_exact_mag(64, 128, 65, 1.0f, 1.0f, name);
            test_scores_exact_mag(64, 128, 193, 1.0f, 1.0f, name);
            test_scores_exact_mag(64, 128, 17, 1.0f, 1.0f, name);
            test_scores_exact_mag(64, 128, 2100, 1.0f, 1.0f, name);
            test_scores_exact_mag(64, 128, 50001, 1.0f, 1.0f, name);
            test_scores_exact_mag(64, 128, 131072, 1.0f, 1.0f, name);
            test_scores_exact_mag(64, 128, 4099, 1e4f, 1e5f, name);
            test_scores_exact_mag(64, 128, 1000, 1e-6f, 1e-3f, name);
        }
        mt_gpu_index_exact_wgmma_set(true);
        split_keys = false;
        float *x = gt_alloc(64 * 128 * sizeof(float));
        tap_ok(mt_gpu_index_scores_split(x, x, NULL, 10, 1, 0, 0.125f, x, 10, NULL) ==
                       MT_ERR_INVAL &&
                   mt_gpu_index_scores_split(x, x, x, 10, 2, 0, 0.125f, x, 10, NULL) ==
                       MT_ERR_INVAL &&
                   mt_gpu_index_scores_split(x, x, x, 10, 1, 11, 0.125f, x, 10, NULL) ==
                       MT_ERR_INVAL &&
                   mt_gpu_index_keys_split_store(x, -1, x, 1, NULL) == MT_ERR_INVAL,
               "split keys: no cache, rows shorter than the longest query, more keys ready than "
               "there are, a negative position are refused (%s)", mt_last_error());
    } else {
        tap_diag("no split key cache here (neither wgmma nor the key ring's shared memory)");
    }
    /* the ring against registers: rows of one tile a warp, of several (a partial last tile) */
    test_scores_exact_ring(2100);
    test_scores_exact_ring(50001);
    test_scores_exact_ring(131072);
    test_scores_exact_ring(17); /* one whole tile and one key of the next */
    /* the CUDA-core kernel at V3.2's shape (16- and 32-key blocks) */
    mt_gpu_index_exact_tc_set(false);
    test_scores_exact_mag(64, 128, 2100, 1.0f, 1.0f, "CUDA cores");
    test_scores_exact_mag(64, 128, 9001, 1.0f, 1.0f, "CUDA cores");
    mt_gpu_index_exact_tc_set(true);
    test_topk();
#ifdef MT_HAVE_CUDA
    test_topk_graph();
#endif
    mt_gpu_arena_destroy(gt_arena);
    return tap_done();
}
