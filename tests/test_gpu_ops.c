/* SPDX-License-Identifier: MIT */
/*
 * test_gpu_ops.c - the small per-token kernels against cpu/ref_*.c: RMSNorm, the indexer's
 * LayerNorm, both RoPE layouts (with the V3.2 YaRN table), SwiGLU, residual add, embedding rows
 * and the router (identical expert ids, ties and NaN included); MLA's kv epilogue (one kernel)
 * bit for bit against the six it replaces; the FP8 indexer's Hadamard + quantization bit for bit;
 * the FP8 latent cache's quantization bit for bit and its rows widened to BF16 exactly;
 * greedy sampling's argmax against the host sampler's (ties, non-finite logits); the per-kernel
 * launch times (MT_GPU_KERNEL_TIMES) on a run of them.
 */
#include <config.h>

#include "cpu/convert.h"
#include "cpu/ref_ops.h"
#include "runtime/text/sampler.h"
#include "tests/gpu_test.h"
#ifdef MT_HAVE_CUDA /* launch_times.h and engine_ops.h have no stubs in builds without CUDA */
#include "kernels/engine_ops.h"
#include "kernels/launch_times.h"
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void
test_norms(int n_tok, int n)
{
    float *x = gt_malloc((size_t)n_tok * n * sizeof(float));
    float *w = gt_malloc((size_t)n * sizeof(float));
    float *b = gt_malloc((size_t)n * sizeof(float));
    float *want = gt_malloc((size_t)n_tok * n * sizeof(float));
    float *got = gt_malloc((size_t)n_tok * n * sizeof(float));
    char name[96];

    gt_fill(x, (size_t)n_tok * n, -3.0f, 3.0f);
    gt_fill(w, n, 0.5f, 1.5f);
    gt_fill(b, n, -0.5f, 0.5f);
    mt_gpu_arena_reset(gt_arena);
    float *d_x = gt_put(x, (size_t)n_tok * n * sizeof(float));
    float *d_w = gt_put(w, (size_t)n * sizeof(float));
    float *d_b = gt_put(b, (size_t)n * sizeof(float));
    float *d_o = gt_alloc((size_t)n_tok * n * sizeof(float));

    for (int t = 0; t < n_tok; t++) {
        mt_cpu_rmsnorm(x + (size_t)t * n, w, n, 1e-6f, want + (size_t)t * n);
    }
    tap_ok(mt_gpu_rmsnorm(d_x, d_w, n_tok, n, 1e-6f, d_o, NULL) == MT_OK, "rmsnorm launch");
    gt_get(got, d_o, (size_t)n_tok * n * sizeof(float));
    snprintf(name, sizeof(name), "rmsnorm %d x %d", n_tok, n);
    mt_test_allclose(name, got, want, (size_t)n_tok * n, 1e-6f, 1e-6f);

    for (int t = 0; t < n_tok; t++) {
        mt_cpu_layernorm(x + (size_t)t * n, w, b, n, 1e-6f, want + (size_t)t * n);
    }
    tap_ok(mt_gpu_layernorm(d_x, d_w, d_b, n_tok, n, 1e-6f, d_o, NULL) == MT_OK,
           "layernorm launch");
    gt_get(got, d_o, (size_t)n_tok * n * sizeof(float));
    snprintf(name, sizeof(name), "layernorm %d x %d", n_tok, n);
    mt_test_allclose(name, got, want, (size_t)n_tok * n, 1e-6f, 1e-6f);

    /* in place (out aliases x), as the engine calls it */
    for (int t = 0; t < n_tok; t++) {
        mt_cpu_rmsnorm(x + (size_t)t * n, w, n, 1e-6f, want + (size_t)t * n);
    }
    tap_ok(mt_gpu_rmsnorm(d_x, d_w, n_tok, n, 1e-6f, d_x, NULL) == MT_OK, "rmsnorm in place");
    gt_get(got, d_x, (size_t)n_tok * n * sizeof(float));
    snprintf(name, sizeof(name), "rmsnorm in place %d x %d", n_tok, n);
    mt_test_allclose(name, got, want, (size_t)n_tok * n, 1e-6f, 1e-6f);
    free(got);
    free(want);
    free(b);
    free(w);
    free(x);
}

static void
test_rope(bool interleaved, int n_tok, int n_heads, int stride, int offset, int64_t pos0)
{
    struct mt_cpu_rope_params rp = {64, 10000.0, true, 40.0, 4096, 32.0, 1.0};
    float freqs[32];
    float c[32];
    float s[32];
    size_t n = (size_t)n_tok * n_heads * stride;
    float *x = gt_malloc(n * sizeof(float));
    float *want = gt_malloc(n * sizeof(float));
    float *got = gt_malloc(n * sizeof(float));
    char name[128];

    mt_cpu_rope_freqs(&rp, freqs);
    gt_fill(x, n, -2.0f, 2.0f);
    memcpy(want, x, n * sizeof(float));
    for (int t = 0; t < n_tok; t++) {
        mt_cpu_rope_cossin(freqs, 32, pos0 + t, c, s);
        for (int h = 0; h < n_heads; h++) {
            float *v = want + ((size_t)t * n_heads + h) * stride + offset;
            if (interleaved) {
                mt_cpu_rope_interleaved(v, c, s, 32);
            } else {
                mt_cpu_rope_half(v, c, s, 32);
            }
        }
    }
    mt_gpu_arena_reset(gt_arena);
    float *d_x = gt_put(x, n * sizeof(float));
    float *d_f = gt_put(freqs, sizeof(freqs));
    mt_status_t st = interleaved
                         ? mt_gpu_rope_interleaved(d_x, n_tok, n_heads, stride, offset, d_f, 32,
                                                   pos0, NULL)
                         : mt_gpu_rope_half(d_x, n_tok, n_heads, stride, offset, d_f, 32, pos0,
                                            NULL);
    tap_ok(st == MT_OK, "rope launch");
    gt_get(got, d_x, n * sizeof(float));
    snprintf(name, sizeof(name), "rope %s, %d tokens x %d heads, dims %d..%d of %d, pos %lld",
             interleaved ? "interleaved" : "rotate-half", n_tok, n_heads, offset, offset + 64,
             stride, (long long)pos0);
    mt_test_allclose(name, got, want, n, 1e-6f, 1e-6f);
    free(got);
    free(want);
    free(x);
}

static void
test_elementwise(void)
{
    enum { N = 18432 * 2 + 7, VOCAB = 1000, DIM = 7168, NT = 5 };
    float *g = gt_malloc(N * sizeof(float));
    float *u = gt_malloc(N * sizeof(float));
    float *want = gt_malloc((size_t)NT * DIM * sizeof(float) + N * sizeof(float));
    float *got = gt_malloc((size_t)NT * DIM * sizeof(float) + N * sizeof(float));
    uint16_t *tb = gt_malloc((size_t)VOCAB * DIM * sizeof(uint16_t));
    float *tf = gt_malloc((size_t)VOCAB * DIM * sizeof(float));
    int32_t ids[NT] = {0, 999, 17, 17, 500};

    gt_fill(g, N, -8.0f, 8.0f);
    gt_fill(u, N, -2.0f, 2.0f);
    mt_gpu_arena_reset(gt_arena);
    float *d_g = gt_put(g, N * sizeof(float));
    float *d_u = gt_put(u, N * sizeof(float));
    float *d_o = gt_alloc(N * sizeof(float));
    for (int i = 0; i < N; i++) {
        want[i] = mt_cpu_silu(g[i]) * u[i];
    }
    tap_ok(mt_gpu_swiglu(d_g, d_u, N, d_o, NULL) == MT_OK, "swiglu launch");
    gt_get(got, d_o, N * sizeof(float));
    mt_test_allclose("swiglu 36871 values", got, want, N, 1e-6f, 2e-6f);
    for (int i = 0; i < N; i++) {
        want[i] = u[i] + g[i];
    }
    tap_ok(mt_gpu_add(d_u, d_g, N, NULL) == MT_OK, "add launch");
    gt_get(got, d_u, N * sizeof(float));
    mt_test_allclose("residual add 36871 values", got, want, N, 0.0f, 0.0f);

    gt_fill_bf16(tb, (size_t)VOCAB * DIM, -1.0f, 1.0f);
    gt_fill(tf, (size_t)VOCAB * DIM, -1.0f, 1.0f);
    int32_t *d_ids = gt_put(ids, sizeof(ids));
    float *d_e = gt_alloc((size_t)NT * DIM * sizeof(float));
    void *d_tb = gt_put(tb, (size_t)VOCAB * DIM * sizeof(uint16_t));
    void *d_tf = gt_put(tf, (size_t)VOCAB * DIM * sizeof(float));
    for (int t = 0; t < NT; t++) {
        for (int i = 0; i < DIM; i++) {
            uint32_t bits = (uint32_t)tb[(size_t)ids[t] * DIM + i] << 16;
            memcpy(&want[(size_t)t * DIM + i], &bits, 4);
        }
    }
    tap_ok(mt_gpu_embed(d_tb, MT_DTYPE_BF16, VOCAB, DIM, d_ids, NT, d_e, NULL) == MT_OK,
           "embed bf16 launch");
    gt_get(got, d_e, (size_t)NT * DIM * sizeof(float));
    mt_test_allclose("embedding rows (bf16 table)", got, want, (size_t)NT * DIM, 0.0f, 0.0f);
    for (int t = 0; t < NT; t++) {
        memcpy(want + (size_t)t * DIM, tf + (size_t)ids[t] * DIM, DIM * sizeof(float));
    }
    tap_ok(mt_gpu_embed(d_tf, MT_DTYPE_F32, VOCAB, DIM, d_ids, NT, d_e, NULL) == MT_OK,
           "embed f32 launch");
    gt_get(got, d_e, (size_t)NT * DIM * sizeof(float));
    mt_test_allclose("embedding rows (f32 table)", got, want, (size_t)NT * DIM, 0.0f, 0.0f);
    /* rows that are not whole 16-byte pieces: the value-by-value loop */
    for (int dim = 7; dim <= 12; dim += 5) {
        char name[64];
        for (int t = 0; t < NT; t++) {
            for (int i = 0; i < dim; i++) {
                uint32_t bits = (uint32_t)tb[(size_t)ids[t] * dim + i] << 16;
                memcpy(&want[(size_t)t * dim + i], &bits, 4);
            }
        }
        tap_ok(mt_gpu_embed(d_tb, MT_DTYPE_BF16, VOCAB, dim, d_ids, NT, d_e, NULL) == MT_OK,
               "embed bf16 launch, rows of %d", dim);
        gt_get(got, d_e, (size_t)NT * dim * sizeof(float));
        snprintf(name, sizeof(name), "embedding rows of %d (bf16 table)", dim);
        mt_test_allclose(name, got, want, (size_t)NT * dim, 0.0f, 0.0f);
    }
    free(tf);
    free(tb);
    free(got);
    free(want);
    free(u);
    free(g);
}

/*
 * kind 0: random; 1: every logit equal and no bias (ties everywhere); 2: some NaN logits; 3: one
 * score a group left; 4: every group's score NaN (an infinite bias beside NaN logits), so no
 * group is kept and the picks are the CPU's last resort
 */
static void
test_router(const struct mt_cpu_router_params *cp, int n_tok, int kind)
{
    int E = cp->n_experts;
    int K = cp->k;
    float *lg = gt_malloc((size_t)n_tok * E * sizeof(float));
    float *bias = gt_malloc((size_t)E * sizeof(float));
    int32_t *want_ids = gt_malloc((size_t)n_tok * K * sizeof(int32_t));
    int32_t *got_ids = gt_malloc((size_t)n_tok * K * sizeof(int32_t));
    float *want_w = gt_malloc((size_t)n_tok * K * sizeof(float));
    float *got_w = gt_malloc((size_t)n_tok * K * sizeof(float));
    struct mt_gpu_router_params gp = {cp->n_experts, cp->n_group, cp->topk_group, cp->k,
                                      cp->norm_topk_prob, cp->routed_scaling_factor};
    int id_mismatch = 0;
    char name[128];

    gt_fill(lg, (size_t)n_tok * E, -4.0f, 4.0f);
    gt_fill(bias, E, -0.1f, 0.1f);
    if (kind == 1) {
        for (size_t i = 0; i < (size_t)n_tok * E; i++) {
            lg[i] = 0.25f;
        }
    }
    if (kind == 2) {
        for (size_t i = 0; i < (size_t)n_tok * E; i += 3) {
            lg[i] = NAN;
        }
    }
    if (kind >= 3) { /* one score a group of 32 left: the kept groups run out before k picks */
        for (size_t i = 0; i < (size_t)n_tok * E; i++) {
            lg[i] = i % 32 == 5 ? lg[i] : NAN;
        }
    }
    if (kind == 4) { /* +inf + -inf = NaN group scores */
        for (int t = 0; t < n_tok; t++) {
            for (int e = 0; e < E; e++) {
                lg[(size_t)t * E + e] = e % 32 == 0 ? lg[(size_t)t * E + e] : NAN;
            }
        }
        for (int e = 0; e < E; e += 32) {
            bias[e] = INFINITY;
        }
    }
    void *work = gt_malloc(mt_cpu_router_work_bytes(cp));
    for (int t = 0; t < n_tok; t++) {
        mt_cpu_router(lg + (size_t)t * E, kind == 1 ? NULL : bias, cp, work,
                      want_ids + (size_t)t * K, want_w + (size_t)t * K);
    }
    free(work);
    mt_gpu_arena_reset(gt_arena);
    float *d_lg = gt_put(lg, (size_t)n_tok * E * sizeof(float));
    float *d_b = gt_put(bias, (size_t)E * sizeof(float));
    int32_t *d_ids = gt_alloc((size_t)n_tok * K * sizeof(int32_t));
    float *d_w = gt_alloc((size_t)n_tok * K * sizeof(float));
    tap_ok(mt_gpu_router(d_lg, kind == 1 ? NULL : d_b, &gp, n_tok, d_ids, d_w, NULL) == MT_OK,
           "router launch");
    gt_get(got_ids, d_ids, (size_t)n_tok * K * sizeof(int32_t));
    gt_get(got_w, d_w, (size_t)n_tok * K * sizeof(float));
    for (int i = 0; i < n_tok * K; i++) {
        id_mismatch += got_ids[i] != want_ids[i];
    }
    snprintf(name, sizeof(name), "router %d experts / %d groups (%d kept), top-%d, %d tokens, %s",
             E, cp->n_group, cp->topk_group, K, n_tok,
             kind == 0   ? "random"
             : kind == 1 ? "all tied"
             : kind == 2 ? "NaN logits"
             : kind == 3 ? "mostly NaN (fewer scores than k)"
                         : "NaN group scores (no group kept)");
    tap_ok(id_mismatch == 0, "%s: expert ids identical to the CPU (%d differ)", name,
           id_mismatch);
    if (kind >= 3) {
        /* the picks past the scores are NaN experts: their (and, normalized, every) weight is
         * NaN on the CPU too; the same NaN places and the same finite values */
        int w_mismatch = 0;
        for (int i = 0; i < n_tok * K; i++) {
            bool gn = isnan(got_w[i]);
            w_mismatch += gn != (bool)isnan(want_w[i]) ||
                          (!gn && fabsf(got_w[i] - want_w[i]) > 1e-6f + 1e-5f * fabsf(want_w[i]));
        }
        tap_ok(w_mismatch == 0, "%s: weights as the CPU's, NaN where it has NaN (%d differ)",
               name, w_mismatch);
    } else {
        mt_test_allclose(name, got_w, want_w, (size_t)n_tok * K, 1e-6f, 1e-5f);
    }
    free(got_w);
    free(want_w);
    free(got_ids);
    free(want_ids);
    free(bias);
    free(lg);
}

#ifdef MT_HAVE_CUDA
/*
 * Kernel times: 10 RMSNorms then 5 adds on one stream, flushed after the sixth norm (the anchor
 * times the seventh): every launch counted, every one but the stream's first timed, each name's
 * time positive; after a reset nothing is left, and while off nothing is recorded.
 */
static void
test_launch_times(void)
{
    enum { N = 7168 };
    float *x = gt_malloc(N * sizeof(float));
    struct mt_gpu_launch_time t[8];
    const struct mt_gpu_launch_time *norm = NULL;
    const struct mt_gpu_launch_time *add = NULL;
    bool ok = true;
    int n;

    gt_fill(x, N, -1.0f, 1.0f);
    mt_gpu_arena_reset(gt_arena);
    float *d_x = gt_put(x, N * sizeof(float));
    float *d_w = gt_put(x, N * sizeof(float));
    float *d_o = gt_alloc(N * sizeof(float));

    mt_gpu_launch_times_reset();
    mt_gpu_launch_times_enable(true);
    for (int i = 0; i < 10; i++) {
        ok = ok && mt_gpu_rmsnorm(d_x, d_w, 1, N, 1e-6f, d_o, NULL) == MT_OK;
        if (i == 5) {
            ok = ok && mt_gpu_launch_times_flush() == MT_OK;
        }
    }
    for (int i = 0; i < 5; i++) {
        ok = ok && mt_gpu_add(d_o, d_x, N, NULL) == MT_OK;
    }
    ok = ok && mt_gpu_launch_times_flush() == MT_OK;
    n = mt_gpu_launch_times_get(t, 8);
    for (int i = 0; i < n && i < 8; i++) {
        if (strcmp(t[i].name, "rmsnorm") == 0) {
            norm = &t[i];
        } else if (strcmp(t[i].name, "add") == 0) {
            add = &t[i];
        }
    }
    tap_ok(ok && n == 2 && norm != NULL && add != NULL && norm->launches == 10 &&
               norm->timed == 9 && add->launches == 5 && add->timed == 5 && norm->ms > 0 &&
               add->ms > 0,
           "kernel times: %d names; rmsnorm %ld launches, %ld timed, %.4f ms; add %ld, %ld, "
           "%.4f ms",
           n, norm != NULL ? norm->launches : -1, norm != NULL ? norm->timed : -1,
           norm != NULL ? norm->ms : 0.0, add != NULL ? add->launches : -1,
           add != NULL ? add->timed : -1, add != NULL ? add->ms : 0.0);
    mt_gpu_launch_times_reset();
    mt_gpu_launch_times_enable(false);
    ok = mt_gpu_rmsnorm(d_x, d_w, 1, N, 1e-6f, d_o, NULL) == MT_OK &&
         mt_gpu_launch_times_flush() == MT_OK;
    tap_ok(ok && mt_gpu_launch_times_get(t, 8) == 0, "kernel times off: nothing recorded");
    free(x);
}
#endif

#ifdef MT_HAVE_CUDA
/*
 * mt_gpu_mla_kv_epilogue against the engine's unfused sequence (split, norm, cache write; split,
 * rope, factor, cache write): the same bits in lat_t, kpe_t and both caches, and the cache rows
 * around pos0 .. pos0 + n_tok - 1 untouched. q_rank > 0: q_a [n, q_rank] normed by the same
 * launch, the same bits as mt_gpu_rmsnorm.
 */
static void
test_kv_epilogue(int n, int kvl, int rope, enum mt_dtype lat_dt, enum mt_dtype kpe_dt,
                 float rope_att, int64_t pos0, int q_rank)
{
    int half = rope / 2;
    int64_t rows = pos0 + n + 1;
    size_t lsz = mt_dtype_size(lat_dt), ksz = mt_dtype_size(kpe_dt);
    size_t kvb = (size_t)n * (kvl + rope) * 4, lcb = (size_t)rows * kvl * lsz;
    size_t kcb = (size_t)rows * rope * ksz;
    float *kv = gt_malloc(kvb), *w = gt_malloc((size_t)kvl * 4), *fr = gt_malloc((size_t)half * 4);
    unsigned char *pat = gt_malloc(lcb > kcb ? lcb : kcb);
    float *dkv, *dw, *dfr, *lat[2], *kpe[2];
    void *lc[2], *kc[2];
    size_t qb = (size_t)n * (q_rank > 0 ? q_rank : 1) * 4;
    float *q = gt_malloc(qb), *qw = gt_malloc(qb), *qa[2], *dqw;
    mt_status_t st;

    gt_fill(q, qb / 4, -3.0f, 3.0f);
    gt_fill(qw, qb / 4, 0.5f, 1.5f);
    dqw = gt_put(qw, qb);
    qa[0] = gt_put(q, qb);
    qa[1] = gt_put(q, qb);
    gt_fill(kv, kvb / 4, -2.0f, 2.0f);
    gt_fill(w, (size_t)kvl, 0.5f, 1.5f);
    for (int f = 0; f < half; f++) {
        fr[f] = (float)pow(10000.0, -2.0 * f / rope);
    }
    for (size_t i = 0; i < (lcb > kcb ? lcb : kcb); i++) {
        pat[i] = (unsigned char)(i * 37 + 11);
    }
    dkv = gt_put(kv, kvb);
    dw = gt_put(w, (size_t)kvl * 4);
    dfr = gt_put(fr, (size_t)half * 4);
    for (int v = 0; v < 2; v++) {
        lat[v] = gt_alloc((size_t)n * kvl * 4);
        kpe[v] = gt_alloc((size_t)n * rope * 4);
        lc[v] = gt_put(pat, lcb);
        kc[v] = gt_put(pat, kcb);
    }
    char *l0 = (char *)lc[0] + (size_t)pos0 * kvl * lsz, *k0 = (char *)kc[0] + pos0 * rope * ksz;
    /* the engine's unfused sequence (engine_gpu.c, MT_GPU_FUSE=0), then the fused kernel, in
       this order (each call only when all before it were launched) */
    st = mt_gpu_rows_convert(lat[0], MT_DTYPE_F32, kvl, dkv, kvl + rope, n, kvl, NULL);
    if (st == MT_OK) {
        st = mt_gpu_rmsnorm(lat[0], dw, n, kvl, 1e-6f, lat[0], NULL);
    }
    if (st == MT_OK) {
        st = mt_gpu_rows_convert(l0, lat_dt, kvl, lat[0], kvl, n, kvl, NULL);
    }
    if (st == MT_OK) {
        st = mt_gpu_rows_convert(kpe[0], MT_DTYPE_F32, rope, dkv + kvl, kvl + rope, n, rope, NULL);
    }
    if (st == MT_OK) {
        st = mt_gpu_rope_interleaved(kpe[0], n, 1, rope, 0, dfr, half, pos0, NULL);
    }
    if (st == MT_OK && rope_att != 1.0f) {
        st = mt_gpu_scale_cols(kpe[0], n, rope, 0, rope, rope_att, NULL);
    }
    if (st == MT_OK) {
        st = mt_gpu_rows_convert(k0, kpe_dt, rope, kpe[0], rope, n, rope, NULL);
    }
    if (st == MT_OK && q_rank > 0) {
        st = mt_gpu_rmsnorm(qa[0], dqw, n, q_rank, 1e-6f, qa[0], NULL);
    }
    if (st == MT_OK) {
        st = mt_gpu_mla_kv_epilogue(dkv, dw, n, kvl, rope, 1e-6f, dfr, pos0, rope_att, lat[1],
                                    (char *)lc[1] + (size_t)pos0 * kvl * lsz, lat_dt, kpe[1],
                                    (char *)kc[1] + pos0 * rope * ksz, kpe_dt,
                                    q_rank > 0 ? qa[1] : NULL, dqw, q_rank, NULL);
    }
    bool same = st == MT_OK;
    size_t sizes[5] = {(size_t)n * kvl * 4, (size_t)n * rope * 4, lcb, kcb, qb};
    void *dev[5][2] = {{lat[0], lat[1]}, {kpe[0], kpe[1]}, {lc[0], lc[1]}, {kc[0], kc[1]},
                       {qa[0], qa[1]}};
    for (int b = 0; same && b < 5; b++) {
        unsigned char *x = gt_malloc(sizes[b]), *y = gt_malloc(sizes[b]);
        gt_get(x, dev[b][0], sizes[b]);
        gt_get(y, dev[b][1], sizes[b]);
        same = memcmp(x, y, sizes[b]) == 0;
        if (same && b == 2) { /* the row after the written ones kept its bytes */
            size_t off = (size_t)(pos0 + n) * kvl * lsz;
            same = memcmp(y + off, pat + off, (size_t)kvl * lsz) == 0;
        }
        if (same && b == 4 && q_rank == 0) { /* no q_a: left alone */
            same = memcmp(y, q, sizes[b]) == 0;
        }
        free(x);
        free(y);
    }
    tap_ok(same, "kv epilogue, %d tokens, latent %d (%s cache), rope %d (%s cache), factor %g, "
           "position %lld, q_a norm %d wide: the same bits as the separate kernels%s%s", n, kvl,
           mt_dtype_name(lat_dt), rope, mt_dtype_name(kpe_dt), (double)rope_att,
           (long long)pos0, q_rank, st == MT_OK ? "" : ": ", st == MT_OK ? "" : mt_last_error());
    free(q);
    free(qw);
    free(kv);
    free(w);
    free(fr);
    free(pat);
}

/*
 * mt_gpu_attn_prologue against the engine's unfused sequence (q rope + factor; the index key's
 * LayerNorm, rope, factor, cache copy; the index queries' rope + factor; the head weights'
 * scale): the same bits in q, ki, the key cache, qi and wts. indexer false: q only; queries
 * false: the indexer's key only (qi and wts NULL, as the engine passes them where no token scores
 * keys), qi and wts left as they were.
 */
static void
test_attn_prologue(int n, int H, int qk, int nope, int half, int id, int ih, float rope_att,
                   int64_t pos0, bool indexer, bool queries)
{
    size_t qb = (size_t)n * H * qk * 4, kb = (size_t)n * id * 4, qib = (size_t)n * ih * id * 4;
    size_t wb = (size_t)n * ih * 4;
    float *q = gt_malloc(qb), *k = gt_malloc(kb), *qi = gt_malloc(qib), *wt = gt_malloc(wb);
    float *lw = gt_malloc((size_t)id * 4), *lb = gt_malloc((size_t)id * 4);
    float *fr = gt_malloc((size_t)half * 4);
    float *dq[2], *dk[2], *dqi[2], *dwt[2], *dc[2];
    float ws = 0.125f;
    mt_status_t st = MT_OK;

    gt_fill(q, qb / 4, -2.0f, 2.0f);
    gt_fill(k, kb / 4, -3.0f, 3.0f);
    gt_fill(qi, qib / 4, -2.0f, 2.0f);
    gt_fill(wt, wb / 4, -1.0f, 1.0f);
    gt_fill(lw, (size_t)id, 0.5f, 1.5f);
    gt_fill(lb, (size_t)id, -0.2f, 0.2f);
    for (int f = 0; f < half; f++) {
        fr[f] = (float)pow(10000.0, -1.0 * f / half);
    }
    float *dlw = gt_put(lw, (size_t)id * 4), *dlb = gt_put(lb, (size_t)id * 4);
    float *dfr = gt_put(fr, (size_t)half * 4);
    for (int v = 0; v < 2; v++) {
        dq[v] = gt_put(q, qb);
        dk[v] = gt_put(k, kb);
        dqi[v] = gt_put(qi, qib);
        dwt[v] = gt_put(wt, wb);
        dc[v] = gt_put(k, kb); /* the cache's rows, overwritten */
    }
    /* the engine's unfused sequence (engine_gpu.c, MT_GPU_FUSE=0) */
    st = mt_gpu_rope_interleaved(dq[0], n, H, qk, nope, dfr, half, pos0, NULL);
    if (st == MT_OK && rope_att != 1.0f) {
        st = mt_gpu_scale_cols(dq[0], n * H, qk, nope, 2 * half, rope_att, NULL);
    }
    if (st == MT_OK && indexer) {
        st = mt_gpu_layernorm(dk[0], dlw, dlb, n, id, 1e-6f, dk[0], NULL);
        if (st == MT_OK) {
            st = mt_gpu_rope_half(dk[0], n, 1, id, 0, dfr, half, pos0, NULL);
        }
        if (st == MT_OK && rope_att != 1.0f) {
            st = mt_gpu_scale_cols(dk[0], n, id, 0, 2 * half, rope_att, NULL);
        }
        if (st == MT_OK && queries) {
            st = mt_gpu_rope_half(dqi[0], n, ih, id, 0, dfr, half, pos0, NULL);
        }
        if (st == MT_OK && queries && rope_att != 1.0f) {
            st = mt_gpu_scale_cols(dqi[0], n * ih, id, 0, 2 * half, rope_att, NULL);
        }
        if (st == MT_OK && queries) {
            st = mt_gpu_scale_cols(dwt[0], n, ih, 0, ih, ws, NULL);
        }
        if (st == MT_OK) {
            st = mt_gpu_rows_convert(dc[0], MT_DTYPE_F32, id, dk[0], id, n, id, NULL);
        }
    }
    if (st == MT_OK) {
        struct mt_gpu_attn_prologue a = {
            .n_tok = n, .pos0 = pos0, .freqs = dfr, .half = half, .rope_att = rope_att,
            .q = dq[1], .n_heads = H, .qk = qk, .nope = nope, .ki = indexer ? dk[1] : NULL,
            .k_w = dlw, .k_b = dlb, .id = id, .eps = 1e-6f, .key_cache = dc[1],
            .qi = queries ? dqi[1] : NULL, .ih = ih, .wts = queries ? dwt[1] : NULL,
            .wts_scale = ws};
        st = mt_gpu_attn_prologue(&a, NULL);
    }
    bool same = st == MT_OK;
    size_t sizes[5] = {qb, kb, kb, qib, wb};
    float *dev[5][2] = {{dq[0], dq[1]}, {dk[0], dk[1]}, {dc[0], dc[1]}, {dqi[0], dqi[1]},
                        {dwt[0], dwt[1]}};
    for (int b = 0; same && b < 5; b++) {
        unsigned char *x = gt_malloc(sizes[b]), *y = gt_malloc(sizes[b]);
        gt_get(x, dev[b][0], sizes[b]);
        gt_get(y, dev[b][1], sizes[b]);
        same = memcmp(x, y, sizes[b]) == 0;
        if (same && ((b >= 1 && !indexer) || (b >= 3 && !queries))) { /* left alone */
            const float *orig = b == 3 ? qi : b == 4 ? wt : k;
            same = memcmp(y, orig, sizes[b]) == 0;
        }
        free(x);
        free(y);
    }
    tap_ok(same, "attention prologue, %d tokens, q %d heads of %d (rope from %d), %s, factor %g, "
           "position %lld: the same bits as the unfused kernels%s%s", n, H, qk, nope,
           !indexer ? "no indexer" : queries ? "indexer" : "indexer key only", (double)rope_att,
           (long long)pos0,
           st == MT_OK ? "" : ": ", st == MT_OK ? "" : mt_last_error());
    free(q);
    free(k);
    free(qi);
    free(wt);
    free(lw);
    free(lb);
    free(fr);
}
#endif

#ifdef MT_HAVE_CUDA
/*
 * mt_gpu_argmax on n values against mt_sampler_argmax. kind 0: uniform values; 1: ten levels, so
 * the maximum repeats at many ids (the smallest must win); 2: kind 1 with non-finite values
 * (NaN, +inf, -inf) from a random id on: the first one is reported; 3: all equal. The row
 * starts off floats past a 256-byte boundary (the kernel loads 16 bytes where it may). Two
 * launches on the same work space (each leaves its counter for the next).
 */
static void
test_argmax(int n, int kind, int off)
{
    float *x = gt_malloc((size_t)n * sizeof(float));
    struct mt_gpu_argmax_out got;

    mt_gpu_arena_reset(gt_arena);
    void *work = gt_alloc(mt_gpu_argmax_work_bytes());
    struct mt_gpu_argmax_out *d_out = gt_alloc(sizeof(got));
    float *d_x = (float *)gt_alloc((size_t)(n + 3) * sizeof(float)) + off;
    tap_ok(mt_gpu_argmax_work_init(work, NULL) == MT_OK, "argmax work init");
    for (int rep = 0; rep < 2; rep++) {
        gt_fill(x, (size_t)n, -20.0f, 20.0f);
        for (int i = 0; i < n && kind >= 1; i++) {
            x[i] = kind == 3 ? 1.5f : floorf(x[i] / 4.0f);
        }
        int bad = -1;
        if (kind == 2) {
            static const float odd[3] = {NAN, INFINITY, -INFINITY};
            bad = (int)(gt_uniform(0.0f, 1.0f) * (float)n) % n;
            for (int j = 0; j < 4 && bad + 37 * j < n; j++) {
                x[bad + 37 * j] = odd[(rep + j) % 3];
            }
        }
        if (mt_gpu_copy_to_device(d_x, x, (size_t)n * sizeof(float)) != MT_OK) {
            gt_bail("copy to device");
        }
        tap_ok(mt_gpu_argmax(d_x, n, work, d_out, NULL) == MT_OK, "argmax launch");
        gt_get(&got, d_out, sizeof(got));
        int want = mt_sampler_argmax(x, n);
        if (kind == 2) {
            tap_ok(got.bad == bad && (isnan(x[bad]) ? isnan(got.bad_value)
                                                    : got.bad_value == x[bad]),
                   "argmax of %d values at +%d (kind %d, rep %d): first non-finite at %d (%g): got "
                   "%d (%g)", n, off, kind, rep, bad, (double)x[bad], got.bad,
                   (double)got.bad_value);
            continue;
        }
        tap_ok(got.bad == -1 && got.id == want && got.value == x[want],
               "argmax of %d values at +%d (kind %d, rep %d): %d (%g), got %d (%g), bad %d", n,
               off, kind, rep, want, (double)x[want], got.id, (double)got.value, got.bad);
    }
    tap_ok(mt_gpu_argmax(d_x, 0, work, d_out, NULL) == MT_ERR_INVAL,
           "argmax of no values is refused: %s", mt_last_error());
    free(x);
}
#endif

#ifdef MT_HAVE_CUDA
/*
 * mt_gpu_scatter_add_rows against y[tok[p]] += w[p] ys[p] over all pairs in order (what the
 * engine computed before: moe.c's order): every bit, pairs grouped by expert as the engine lists
 * them, so a token's pairs are scattered over the list; a token without pairs is left alone.
 */
static void
test_scatter_add(int n_tok, int k, int dim)
{
    int np = 0;
    int32_t *tok = gt_malloc((size_t)n_tok * k * sizeof(int32_t));
    int32_t *lists = gt_malloc((size_t)n_tok * k * sizeof(int32_t));
    float *w = gt_malloc((size_t)n_tok * k * sizeof(float));
    float *y = gt_malloc((size_t)n_tok * dim * sizeof(float));
    float *want = gt_malloc((size_t)n_tok * dim * sizeof(float));
    float *got = gt_malloc((size_t)n_tok * dim * sizeof(float));

    for (int i = 0; i < n_tok * k; i++) {
        lists[i] = -1;
    }
    /* "experts" e = 0..k + 2: token t takes expert e when (t + e) % 3 != 0, at most k of them
       (token n_tok - 1 none); pairs listed expert by expert */
    for (int e = 0; e < k + 3; e++) {
        for (int t = 0; t + 1 < n_tok; t++) {
            int j = 0;
            while (j < k && lists[t * k + j] >= 0) {
                j++;
            }
            if ((t + e) % 3 != 0 && j < k) {
                lists[t * k + j] = np;
                tok[np++] = t;
            }
        }
    }
    gt_fill(w, (size_t)np, -1.0f, 1.0f);
    gt_fill(y, (size_t)n_tok * dim, -2.0f, 2.0f);
    float *ys = gt_malloc((size_t)np * dim * sizeof(float));
    gt_fill(ys, (size_t)np * dim, -3.0f, 3.0f);
    memcpy(want, y, (size_t)n_tok * dim * sizeof(float));
    for (int p = 0; p < np; p++) {
        for (int d = 0; d < dim; d++) {
            float *o = &want[(size_t)tok[p] * dim + d];
            *o = fmaf(w[p], ys[(size_t)p * dim + d], *o);
        }
    }
    mt_gpu_arena_reset(gt_arena);
    float *d_y = gt_put(y, (size_t)n_tok * dim * sizeof(float));
    float *d_ys = gt_put(ys, (size_t)np * dim * sizeof(float));
    int32_t *d_l = gt_put(lists, (size_t)n_tok * k * sizeof(int32_t));
    float *d_w = gt_put(w, (size_t)np * sizeof(float));
    bool ok = mt_gpu_scatter_add_rows(d_y, d_ys, d_l, k, d_w, n_tok, dim, NULL) == MT_OK;
    if (ok) {
        gt_get(got, d_y, (size_t)n_tok * dim * sizeof(float));
    }
    tap_ok(ok && memcmp(got, want, (size_t)n_tok * dim * sizeof(float)) == 0,
           "scatter add of %d pairs into %d tokens x %d: the bits of the in-order walk", np,
           n_tok, dim);
    tap_ok(mt_gpu_scatter_add_rows(d_y, d_ys, d_l, 0, d_w, n_tok, dim, NULL) != MT_OK,
           "scatter add: k = 0 is refused");
    free(ys);
    free(got);
    free(want);
    free(y);
    free(w);
    free(lists);
    free(tok);
}

/*
 * The FP8 indexer's Hadamard + act_quant (mt_gpu_hadamard_quant) against mt_cpu_hadamard and
 * mt_cpu_act_quant (ue8m0): every e4m3 byte and every scale equal, with the head weights folded
 * in (w_in) as the engine does for the query. With nonfinite, vector 0 holds a NaN and vector 1
 * an inf: the CPU's bytes are NaN (0x7f) where the values are, and so must the GPU's be (it
 * wrote -448 once, a finite value that hid them).
 */
static void
test_hadamard_quant(int n_vec, int dim, bool with_w, bool nonfinite)
{
    float *x = gt_malloc((size_t)n_vec * dim * sizeof(float));
    float *h = gt_malloc((size_t)dim * sizeof(float));
    float *w = gt_malloc((size_t)n_vec * sizeof(float));
    uint8_t *want = gt_malloc((size_t)n_vec * dim);
    uint8_t *got = gt_malloc((size_t)n_vec * dim);
    float *ws = gt_malloc((size_t)n_vec * sizeof(float));
    float *gs = gt_malloc((size_t)n_vec * sizeof(float));
    float wm = 0.0883883f;
    int bad_q = 0;
    int bad_s = 0;

    gt_fill(x, (size_t)n_vec * dim, -3.0f, 3.0f);
    gt_fill(w, (size_t)n_vec, -1.0f, 1.0f);
    if (nonfinite) {
        x[dim / 2] = NAN;
        x[(size_t)MT_MIN(1, n_vec - 1) * dim + 3] = INFINITY;
    }
    for (int v = 0; v < n_vec; v++) {
        memcpy(h, x + (size_t)v * dim, (size_t)dim * sizeof(float));
        mt_cpu_hadamard(h, dim);
        float qs = mt_cpu_act_quant(h, dim, true, want + (size_t)v * dim);
        ws[v] = with_w ? w[v] * qs * wm : qs;
    }
    mt_gpu_arena_reset(gt_arena);
    float *d_x = gt_put(x, (size_t)n_vec * dim * sizeof(float));
    float *d_w = gt_put(w, (size_t)n_vec * sizeof(float));
    uint8_t *d_q = gt_alloc((size_t)n_vec * dim);
    float *d_s = gt_alloc((size_t)n_vec * sizeof(float));
    tap_ok(mt_gpu_hadamard_quant(d_x, n_vec, dim, d_q, d_s, with_w ? d_w : NULL, wm, NULL) ==
               MT_OK,
           "hadamard quant launch");
    gt_get(got, d_q, (size_t)n_vec * dim);
    gt_get(gs, d_s, (size_t)n_vec * sizeof(float));
    for (int i = 0; i < n_vec * dim; i++) {
        bad_q += got[i] != want[i];
    }
    for (int v = 0; v < n_vec; v++) {
        bad_s += gs[v] != ws[v] && !(isnan(gs[v]) && isnan(ws[v]));
    }
    tap_ok(bad_q == 0 && bad_s == 0, "hadamard quant %d x %d%s%s: every e4m3 byte and scale the "
           "CPU's (%d bytes, %d scales differ)", n_vec, dim, with_w ? ", head weights" : "",
           nonfinite ? ", a NaN and an inf" : "", bad_q, bad_s);
    free(gs);
    free(ws);
    free(got);
    free(want);
    free(w);
    free(h);
    free(x);
}

/*
 * MLA's FP8 latent cache (latent_fp8.cu): each row's e4m3 bytes and scales equal to
 * mt_cpu_act_quant (ue8m0) per 128 values, a zero group, a group of huge values and groups with
 * a NaN and an inf included (NaN bytes where the CPU writes them),
 * then rows widened into BF16 at their own positions (all of them, or those a list names; the
 * others untouched), each value exactly e4m3 x scale as the CPU's FP8 cache holds it.
 */
static void
test_latent_fp8(int n_tok, int kvl)
{
    int groups = (kvl + 127) / 128;
    int64_t rb = mt_gpu_latent_fp8_row_bytes(kvl);
    float *x = gt_malloc((size_t)n_tok * kvl * sizeof(float));
    uint8_t *want = gt_malloc((size_t)n_tok * rb);
    uint8_t *got = gt_malloc((size_t)n_tok * rb);
    uint16_t *wide = gt_malloc((size_t)n_tok * kvl * sizeof(uint16_t));
    int32_t sel[3] = {n_tok - 1, 0, n_tok / 2};
    int bad = 0, bad_wide = 0, bad_sel = 0;

    gt_fill(x, (size_t)n_tok * kvl, -3.0f, 3.0f);
    memset(x, 0, (size_t)MT_MIN(kvl, 128) * sizeof(float)); /* row 0's first group: all zero */
    for (int i = 0; i < MT_MIN(kvl, 128) && n_tok > 1; i++) {
        x[(size_t)kvl + i] *= 1e30f; /* row 1's first group: near fp32's range */
    }
    if (n_tok > 2) { /* row 2: a NaN in its first group, an inf in its second (NaN bytes) */
        x[(size_t)2 * kvl + 5] = NAN;
        x[(size_t)2 * kvl + MT_MIN(kvl - 1, 130)] = INFINITY;
    }
    for (int t = 0; t < n_tok; t++) {
        for (int g = 0; g < groups; g++) {
            int n = MT_MIN(128, kvl - g * 128);
            float sc =
                mt_cpu_act_quant(x + (size_t)t * kvl + g * 128, n, true, want + t * rb + g * 128);
            memcpy(want + t * rb + kvl + 4 * g, &sc, 4);
        }
    }
    mt_gpu_arena_reset(gt_arena);
    float *d_x = gt_put(x, (size_t)n_tok * kvl * sizeof(float));
    uint8_t *d_q = gt_alloc((size_t)n_tok * rb);
    uint16_t *d_w = gt_alloc((size_t)n_tok * kvl * sizeof(uint16_t));
    int32_t *d_sel = gt_put(sel, sizeof(sel));
    tap_ok(mt_gpu_latent_fp8_store(d_x, n_tok, kvl, d_q, NULL) == MT_OK &&
               mt_gpu_latent_fp8_expand(d_q, kvl, NULL, n_tok, d_w, NULL) == MT_OK,
           "fp8 latent store and expand launch");
    gt_get(got, d_q, (size_t)n_tok * rb);
    gt_get(wide, d_w, (size_t)n_tok * kvl * sizeof(uint16_t));
    bad = memcmp(got, want, (size_t)n_tok * rb) != 0;
    for (int t = 0; t < n_tok; t++) {
        for (int i = 0; i < kvl; i++) {
            float sc;
            memcpy(&sc, want + t * rb + kvl + 4 * (i / 128), 4);
            float v = mt_fp8_to_f32((mt_fp8_t)want[t * rb + i]) * sc;
            float gw = mt_bf16_to_f32(wide[(size_t)t * kvl + i]);
            bad_wide += gw != v && !(isnan(gw) && isnan(v));
        }
    }
    /* only the listed rows: the others keep what was there (0xffff, a NaN pattern) */
    memset(wide, 0xff, (size_t)n_tok * kvl * sizeof(uint16_t));
    tap_ok(mt_gpu_copy_to_device(d_w, wide, (size_t)n_tok * kvl * sizeof(uint16_t)) == MT_OK &&
               mt_gpu_latent_fp8_expand(d_q, kvl, d_sel, 3, d_w, NULL) == MT_OK,
           "fp8 latent expand of listed rows launches");
    uint16_t *wide2 = gt_malloc((size_t)n_tok * kvl * sizeof(uint16_t));
    gt_get(wide2, d_w, (size_t)n_tok * kvl * sizeof(uint16_t));
    for (int t = 0; t < n_tok; t++) {
        bool listed = t == sel[0] || t == sel[1] || t == sel[2];
        for (int i = 0; i < kvl; i++) {
            float sc;
            memcpy(&sc, want + t * rb + kvl + 4 * (i / 128), 4);
            float v = mt_fp8_to_f32((mt_fp8_t)want[t * rb + i]) * sc;
            uint16_t b = wide2[(size_t)t * kvl + i];
            float gw = mt_bf16_to_f32(b);
            bad_sel += listed ? gw != v && !(isnan(gw) && isnan(v)) : b != 0xffff;
        }
    }
    tap_ok(bad == 0 && bad_wide == 0 && bad_sel == 0,
           "fp8 latent %d x %d: bytes and scales the CPU's (%s), widened rows e4m3 x scale "
           "exactly (%d differ), listed rows only (%d wrong)",
           n_tok, kvl, bad ? "differ" : "equal", bad_wide, bad_sel);
    free(wide2);
    free(wide);
    free(got);
    free(want);
    free(x);
}
#endif

int
main(void)
{
    struct mt_cpu_router_params v32 = {256, 8, 4, 8, true, 2.5f};
    struct mt_cpu_router_params v32_raw = {256, 8, 4, 8, false, 2.5f}; /* weights not normalized */
    struct mt_cpu_router_params small = {64, 4, 2, 6, false, 1.0f};
    struct mt_cpu_router_params single = {16, 16, 16, 4, true, 1.5f}; /* groups of one */
    struct mt_cpu_router_params single_kept = {16, 16, 4, 4, true, 1.5f}; /* 4 of them kept */
    struct mt_cpu_router_params half = {128, 4, 2, 6, true, 1.0f};
    struct mt_cpu_router_params wide_k = {256, 8, 1, 16, true, 2.5f};

    if (!gt_init(512, 3)) {
        return tap_done();
    }
    test_norms(1, 7168);
    test_norms(3, 1536);
    test_norms(2, 512);
    test_norms(5, 1001);
    test_norms(4, 128);
    test_rope(true, 1, 128, 192, 128, 163839);  /* q_pe of 128 heads at the longest position */
    test_rope(true, 3, 1, 576, 512, 4095);      /* k_pe after the latent */
    test_rope(false, 2, 64, 128, 0, 70000);     /* indexer q: first 64 dims */
    test_rope(false, 1, 1, 128, 0, 7);          /* indexer k */
    test_elementwise();
    test_router(&v32, 64, 0);
    test_router(&v32, 3, 1);
    test_router(&v32, 8, 2);
    test_router(&v32_raw, 5, 3);
    test_router(&v32, 4, 4);
    test_router(&v32_raw, 2, 4);
    test_router(&half, 7, 0);  /* 4 groups of 32: the rank kernel with fewer threads */
    test_router(&half, 6, 2);
    test_router(&wide_k, 3, 0); /* k = 16 from one kept group */
    test_router(&wide_k, 5, 1);
    test_router(&small, 17, 0);
    test_router(&small, 5, 1); /* ties on the general kernel (groups of 16) */
    test_router(&single, 9, 0);
    test_router(&single_kept, 9, 0); /* a group's score is its one expert's */
#ifdef MT_HAVE_CUDA
    test_scatter_add(512, 8, 7168); /* a prompt chunk of V3.2 */
    test_scatter_add(3, 8, 7168);   /* a decode batch */
    test_scatter_add(17, 2, 300);   /* a width off the block size */
    test_kv_epilogue(1, 512, 64, MT_DTYPE_BF16, MT_DTYPE_BF16, 1.0f, 4095, 1536); /* V3.2 */
    test_kv_epilogue(3, 512, 64, MT_DTYPE_F32, MT_DTYPE_F32, 1.3f, 0, 1536);
    test_kv_epilogue(2, 40, 8, MT_DTYPE_BF16, MT_DTYPE_F32, 1.0f, 17, 48);     /* tiny models */
    test_kv_epilogue(1, 9000, 64, MT_DTYPE_F32, MT_DTYPE_BF16, 1.0f, 5, 9001); /* past registers */
    test_kv_epilogue(2, 512, 64, MT_DTYPE_BF16, MT_DTYPE_BF16, 1.0f, 70, 0);   /* no q_a */
    tap_ok(mt_gpu_mla_kv_epilogue(NULL, NULL, 1, 512, 63, 1e-6f, NULL, 0, 1.0f, NULL, NULL,
                                  MT_DTYPE_F32, NULL, NULL, MT_DTYPE_F32, NULL, NULL, 0,
                                  NULL) == MT_ERR_INVAL,
           "kv epilogue: an odd rope width and missing buffers are refused: %s", mt_last_error());
    test_attn_prologue(1, 128, 192, 128, 32, 128, 64, 1.0f, 4095, true, true); /* V3.2 decode */
    test_attn_prologue(3, 128, 192, 128, 32, 128, 64, 1.3f, 0, true, true);
    test_attn_prologue(2, 4, 24, 16, 4, 32, 4, 1.0f, 17, true, true);          /* tiny models */
    test_attn_prologue(1, 128, 192, 128, 32, 128, 64, 1.0f, 9, false, false);  /* dense */
    test_attn_prologue(1, 128, 192, 128, 32, 128, 64, 1.0f, 99, true, false);  /* <= top-k keys */
    test_attn_prologue(3, 4, 24, 16, 4, 32, 4, 1.3f, 2, true, false);
    {
        struct mt_gpu_attn_prologue bad = {.n_tok = 1, .half = 32, .n_heads = 128, .qk = 192,
                                           .nope = 160};
        tap_ok(mt_gpu_attn_prologue(&bad, NULL) == MT_ERR_INVAL,
               "attention prologue: rope past the head and missing buffers are refused: %s",
               mt_last_error());
    }
    test_latent_fp8(37, 512);           /* V3.2's latent */
    test_latent_fp8(5, 200);            /* a last group of 72 */
    test_latent_fp8(2, 32);             /* tiny models */
    test_hadamard_quant(64, 128, true, false); /* V3.2's indexer query */
    test_hadamard_quant(1, 128, false, false); /* one key */
    test_hadamard_quant(5, 128, false, false);
    test_hadamard_quant(9, 64, true, false); /* tiny models */
    test_hadamard_quant(3, 16, false, false);
    test_hadamard_quant(4, 128, true, true);
    test_hadamard_quant(2, 128, false, true);
    test_hadamard_quant(2, 2, false, false);
    test_hadamard_quant(1, 1, true, false);
    test_argmax(129280, 0, 0); /* V3.2's vocabulary */
    test_argmax(129280, 1, 0);
    test_argmax(129280, 2, 0);
    test_argmax(129280, 1, 3); /* three values before the first 16-byte boundary */
    test_argmax(1000, 3, 1);
    test_argmax(1, 0, 2);
    test_argmax(7, 1, 1);
    test_argmax(4099, 2, 3);
    test_argmax(2, 2, 3);
    test_launch_times();
#endif
    mt_gpu_arena_destroy(gt_arena);
    return tap_done();
}
