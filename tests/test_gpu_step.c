/* SPDX-License-Identifier: MIT */
/*
 * test_gpu_step.c - the pieces that let a GPU decode step run without the host: the fused
 * residual add + RMSNorm (bit for bit the add and the norm it replaces, on rows held in
 * registers and on longer ones), the device grouping of the router's pairs (moe_group.cu: the
 * same groups, order and weights as moe.c's host grouping, empty trailing slots), and CUDA graphs
 * (graph.cu: a recording replays, a recording of the same shape updates it in place, another
 * shape rebuilds it, a dropped recording keeps the old one).
 * Without a CUDA device: 1..0 # SKIP.
 */
#include <config.h>

#include "tests/gpu_test.h"

#ifdef MT_HAVE_CUDA /* engine_ops.h and graph.h exist only in CUDA builds */

#include "kernels/engine_ops.h"
#include "kernels/events.h"
#include "kernels/graph.h"

#include <math.h>
#include <stdint.h>

static void
test_add_rmsnorm(struct CUstream_st *s)
{
    int widths[3] = {7168, 9000, 100}; /* in registers, the strided loop, a short row */
    int n_tok = 3;

    for (int k = 0; k < 3; k++) {
        int n = widths[k];
        size_t sz = (size_t)n_tok * n;
        float *h = gt_malloc(sz * 4), *y = gt_malloc(sz * 4), *w = gt_malloc((size_t)n * 4);
        float *h1 = gt_malloc(sz * 4), *o1 = gt_malloc(sz * 4);
        float *h2 = gt_malloc(sz * 4), *o2 = gt_malloc(sz * 4);
        gt_fill(h, sz, -2.0f, 2.0f);
        gt_fill(y, sz, -1.0f, 1.0f);
        gt_fill(w, (size_t)n, 0.5f, 1.5f);
        /* the fused kernel's rows guarded: a row that writes past its end shows after the last
         * (inside the buffer it races with the next row's own write) */
        float *dh1 = gt_put(h, sz * 4), *dh2 = gt_put_guarded(h, sz * 4), *dy = gt_put(y, sz * 4);
        float *dw = gt_put(w, (size_t)n * 4), *do1 = gt_alloc(sz * 4), *do2 = gt_alloc(sz * 4);
        bool ok = mt_gpu_add(dh1, dy, sz, s) == MT_OK &&
                  mt_gpu_rmsnorm(dh1, dw, n_tok, n, 1e-6f, do1, s) == MT_OK &&
                  mt_gpu_add_rmsnorm(dh2, dy, dw, n_tok, n, 1e-6f, do2, s) == MT_OK &&
                  mt_gpu_stream_sync(s) == MT_OK;
        gt_get(h1, dh1, sz * 4);
        gt_get(o1, do1, sz * 4);
        gt_get(h2, dh2, sz * 4);
        gt_get(o2, do2, sz * 4);
        tap_ok(ok && memcmp(h1, h2, sz * 4) == 0 && memcmp(o1, o2, sz * 4) == 0,
               "add + rmsnorm in one kernel, %d rows of %d: residual and norm bit for bit the "
               "two kernels' (%s)",
               n_tok, n, ok ? "ran" : mt_last_error());
        int past = gt_guard_hits(dh2, sz * 4);
        tap_ok(past == 0, "add + rmsnorm, rows of %d: %d floats written past the last row", n,
               past);
        /* the norm itself against a host computation (double sums, as cpu/ref_norm.c) */
        double worst = 0.0;
        for (int t = 0; t < n_tok; t++) {
            double ss = 0.0;
            for (int i = 0; i < n; i++) {
                ss += (double)h1[(size_t)t * n + i] * h1[(size_t)t * n + i];
            }
            float r = (float)(1.0 / sqrt(ss / n + 1e-6));
            for (int i = 0; i < n; i++) {
                double d = fabs((double)(h1[(size_t)t * n + i] * r * w[i]) - o1[(size_t)t * n + i]);
                worst = d > worst ? d : worst;
            }
        }
        tap_ok(worst < 1e-5, "rmsnorm of rows of %d against the host: max |diff| %.3g", n, worst);
        free(h), free(y), free(w), free(h1), free(o1), free(h2), free(o2);
    }
}

/* A fake expert table entry: recognisable pointers, never dereferenced here. */
static struct mt_gpu_expert
fake_expert(int x)
{
    uintptr_t b = (uintptr_t)(x + 1) << 8;
    return (struct mt_gpu_expert){.gate = (const void *)b,
                                  .up = (const void *)(b + 1),
                                  .down = (const void *)(b + 2),
                                  .gate_scale = (const float *)(b + 3),
                                  .up_scale = (const float *)(b + 4),
                                  .down_scale = (const float *)(b + 5)};
}

static void
test_moe_group(struct CUstream_st *s)
{
    enum { E = 256, K = 8, TMAX = 8, PMAX = TMAX * K };
    struct mt_gpu_expert table[E], got_x[PMAX];
    int32_t ids[PMAX], got_start[PMAX + 1], got_tok[PMAX], want_start[PMAX + 1];
    int32_t want_tok[PMAX], want_x[PMAX];
    float wts[PMAX], got_w[PMAX], want_w[PMAX];

    for (int x = 0; x < E; x++) {
        table[x] = fake_expert(x);
    }
    struct mt_gpu_expert *d_table = gt_put(table, sizeof(table));
    struct mt_gpu_expert *d_x = gt_alloc(sizeof(got_x));
    int32_t *d_ids = gt_alloc(sizeof(ids)), *d_start = gt_alloc(sizeof(got_start));
    int32_t *d_tok = gt_alloc(sizeof(got_tok));
    float *d_w = gt_alloc(sizeof(wts)), *d_pw = gt_alloc(sizeof(got_w));

    for (int n_tok = 1; n_tok <= TMAX; n_tok++) {
        int np = n_tok * K;
        /* each token K distinct experts out of a small pool, so tokens share some */
        for (int t = 0; t < n_tok; t++) {
            for (int j = 0; j < K; j++) {
                int x;
                bool dup;
                do {
                    x = (int)(mt_rng_next(&gt_rng) % (n_tok == 1 ? E : 20));
                    dup = false;
                    for (int i = 0; i < j; i++) {
                        dup = dup || ids[t * K + i] == x;
                    }
                } while (dup);
                ids[t * K + j] = x;
                wts[t * K + j] = gt_uniform(0.0f, 1.0f);
            }
        }
        /* moe.c's grouping: experts ascending, pairs in (token, slot) order */
        int n_groups = 0, row = 0;
        for (int x = 0; x < E; x++) {
            int start = row;
            for (int i = 0; i < np; i++) {
                if (ids[i] == x) {
                    want_tok[row] = i / K;
                    want_w[row] = wts[i];
                    row++;
                }
            }
            if (row > start) {
                want_start[n_groups] = start;
                want_x[n_groups++] = x;
            }
        }
        for (int g = n_groups; g <= np; g++) {
            want_start[g] = np;
        }
        bool ok = mt_gpu_copy_to_device(d_ids, ids, (size_t)np * 4) == MT_OK &&
                  mt_gpu_copy_to_device(d_w, wts, (size_t)np * 4) == MT_OK &&
                  mt_gpu_moe_group(d_ids, d_w, n_tok, K, d_table, E, d_x, d_start, d_tok, d_pw,
                                   s) == MT_OK &&
                  mt_gpu_stream_sync(s) == MT_OK;
        gt_get(got_x, d_x, (size_t)np * sizeof(got_x[0]));
        gt_get(got_start, d_start, (size_t)(np + 1) * 4);
        gt_get(got_tok, d_tok, (size_t)np * 4);
        gt_get(got_w, d_pw, (size_t)np * 4);
        bool same = ok && memcmp(got_start, want_start, (size_t)(np + 1) * 4) == 0 &&
                    memcmp(got_tok, want_tok, (size_t)np * 4) == 0 &&
                    memcmp(got_w, want_w, (size_t)np * 4) == 0;
        for (int g = 0; g < np && same; g++) {
            struct mt_gpu_expert want = table[g < n_groups ? want_x[g] : 0];
            if (g < n_groups) {
                same = memcmp(&got_x[g], &want, sizeof(want)) == 0;
            } else { /* an empty slot: any real expert (the GEMV reads it, computes nothing) */
                uintptr_t b = (uintptr_t)got_x[g].gate;
                same = b >= 256 && b % 256 == 0 && b / 256 <= E &&
                       memcmp(&got_x[g], &table[b / 256 - 1], sizeof(want)) == 0;
            }
        }
        tap_ok(same,
               "device grouping of %d tokens x top-%d: %d groups in moe.c's order, %d empty "
               "slots (%s)",
               n_tok, K, n_groups, np - n_groups, ok ? "ran" : mt_last_error());
    }
}

static void
test_graph(struct CUstream_st *s)
{
    enum { N = 4096 };
    float *x = gt_malloc(N * 4), *got = gt_malloc(N * 4);
    struct CUgraphExec_st *exec = NULL;
    bool rebuilt = false;

    for (int i = 0; i < N; i++) {
        x[i] = (float)(i % 17);
    }
    float *d = gt_put(x, N * 4);
    /* record x *= 2 on the first half: nothing runs until the launch */
    bool ok = mt_gpu_graph_begin(s) == MT_OK &&
              mt_gpu_scale_cols(d, 1, N, 0, N / 2, 2.0f, s) == MT_OK &&
              mt_gpu_graph_end(s, true, &exec, &rebuilt) == MT_OK && exec != NULL && rebuilt;
    gt_get(got, d, N * 4);
    tap_ok(ok && memcmp(got, x, N * 4) == 0, "a recording runs nothing (%s)",
           ok ? "recorded" : mt_last_error());
    ok = ok && mt_gpu_graph_launch(exec, s) == MT_OK && mt_gpu_graph_launch(exec, s) == MT_OK &&
         mt_gpu_stream_sync(s) == MT_OK;
    gt_get(got, d, N * 4);
    bool right = true;
    for (int i = 0; i < N; i++) {
        right = right && got[i] == (i < N / 2 ? 4.0f : 1.0f) * x[i];
    }
    tap_ok(ok && right, "two launches of the graph ran it twice");
    /* the same shape with other arguments: updated in place */
    struct CUgraphExec_st *before = exec;
    ok = mt_gpu_graph_begin(s) == MT_OK &&
         mt_gpu_scale_cols(d, 1, N, N / 2, N / 2, 3.0f, s) == MT_OK &&
         mt_gpu_graph_end(s, true, &exec, &rebuilt) == MT_OK && !rebuilt && exec == before &&
         mt_gpu_graph_launch(exec, s) == MT_OK && mt_gpu_stream_sync(s) == MT_OK;
    gt_get(got, d, N * 4);
    right = true;
    for (int i = 0; i < N; i++) {
        right = right && got[i] == (i < N / 2 ? 4.0f : 3.0f) * x[i];
    }
    tap_ok(ok && right, "a recording of the same shape updates the graph in place (%s)",
           ok ? "ok" : mt_last_error());
    /* two kernels: another shape, a new graph */
    ok = mt_gpu_graph_begin(s) == MT_OK && mt_gpu_scale_cols(d, 1, N, 0, N, 0.5f, s) == MT_OK &&
         mt_gpu_scale_cols(d, 1, N, 0, N, 0.5f, s) == MT_OK &&
         mt_gpu_graph_end(s, true, &exec, &rebuilt) == MT_OK && rebuilt && exec != NULL &&
         mt_gpu_graph_launch(exec, s) == MT_OK && mt_gpu_stream_sync(s) == MT_OK;
    gt_get(got, d, N * 4);
    right = true;
    for (int i = 0; i < N; i++) {
        right = right && got[i] == (i < N / 2 ? 1.0f : 0.75f) * x[i];
    }
    tap_ok(ok && right, "a recording of another shape builds a new graph (%s)",
           ok ? "ok" : mt_last_error());
    /* a dropped recording keeps the graph */
    before = exec;
    ok = mt_gpu_graph_begin(s) == MT_OK && mt_gpu_scale_cols(d, 1, N, 0, N, 9.0f, s) == MT_OK &&
         mt_gpu_graph_end(s, false, &exec, &rebuilt) == MT_OK && exec == before &&
         mt_gpu_graph_launch(exec, s) == MT_OK && mt_gpu_stream_sync(s) == MT_OK;
    gt_get(got, d, N * 4);
    right = true;
    for (int i = 0; i < N; i++) {
        right = right && got[i] == (i < N / 2 ? 0.25f : 0.1875f) * x[i];
    }
    tap_ok(ok && right, "a dropped recording leaves the graph as it was (%s)",
           ok ? "ok" : mt_last_error());
    /* timing events inside a graph (the engine's GPU tier time of a recorded step) */
    struct CUevent_st *e0 = NULL, *e1 = NULL;
    float ms = -1.0f;
    ok = mt_gpu_event_create(&e0) == MT_OK && mt_gpu_event_create(&e1) == MT_OK &&
         mt_gpu_graph_begin(s) == MT_OK && mt_gpu_event_mark(e0, s) == MT_OK &&
         mt_gpu_scale_cols(d, 1, N, 0, N, 1.0f, s) == MT_OK && mt_gpu_event_mark(e1, s) == MT_OK &&
         mt_gpu_graph_end(s, true, &exec, &rebuilt) == MT_OK &&
         mt_gpu_graph_launch(exec, s) == MT_OK && mt_gpu_stream_sync(s) == MT_OK &&
         mt_gpu_event_ms(e0, e1, &ms) == MT_OK;
    tap_ok(ok && ms >= 0.0f && ms < 1000.0f, "event nodes in a graph time it: %.4f ms (%s)", ms,
           ok ? "ok" : mt_last_error());
    mt_gpu_event_destroy(e0);
    mt_gpu_event_destroy(e1);
    mt_gpu_graph_destroy(exec);
    free(x), free(got);
}

int
main(void)
{
    struct CUstream_st *s = NULL;

    if (!gt_init(64, 20261130)) {
        return 0;
    }
    tap_plan(0);
    if (mt_gpu_stream_create(&s) != MT_OK) {
        gt_bail("stream");
    }
    test_add_rmsnorm(s);
    test_moe_group(s);
    test_graph(s);
    mt_gpu_stream_destroy(s);
    return tap_done();
}

#else /* !MT_HAVE_CUDA */

int
main(void)
{
    tap_skip_all("no CUDA device (built without CUDA)");
    return 0;
}

#endif /* MT_HAVE_CUDA */
