/* SPDX-License-Identifier: MIT */
/*
 * bench_kernels.c - times the decode kernels of kernels/ops.h against the HBM read bandwidth
 * measured by the same program in the same run.
 *
 * The one idea: a decode kernel is judged by bytes it must move / time, as a fraction of what
 * the memory can deliver, so each kernel runs over enough copies of its operands (together more
 * than 4x the L2) that nothing is served from cache: one repetition is one launch per copy, back
 * to back, between two CUDA events; the time per launch is reported (median and p90 of the
 * repetitions). Correctness is tests/test_gpu_*.c's job (same entry points); here outputs are
 * only checked to be finite.
 *
 * GEMVs and experts are timed four ways on a stream of their own: "isolated", plain launches
 * (each starts after the previous one has finished: the kernel's fixed cost is paid on every
 * launch); "+pdl", launched with programmatic dependent launch where the device has it (kernels/
 * pdl.cuh: each launch waits inside for the one before, so its weight loads start while the
 * previous one finishes); "+graph" and "+graph+pdl", the same launches recorded once as a CUDA
 * graph and replayed, the way the engine runs a decode step.
 *
 * Usage: bench_kernels [--reps N] [--quick] [--dsa | --topk | --idx-sweep | --gemv | --read |
 * --shape RxC]   (--quick skips the 1.85 GB lm_head; --dsa runs only the indexer, top-k, MLA and
 * kv_b absorption rows, --topk only the FP8 indexer and top-k, --idx-sweep the FP8 indexer at
 * 32K..512K keys, --gemv only the GEMV and expert rows, --read only the read kernel at the FP8
 * matrices' sizes of 16 MB and more, then in a GEMV's order of bytes, --mla-prompt only the
 * sparse MLA of a prompt's rows, --shape only the one-token FP8 GEMV of that shape: for a
 * profiler)
 */
#include <config.h>

#include "kernels/engine_ops.h"
#include "kernels/graph.h"
#include "kernels/kernels.h"
#include "kernels/ops.h"
#include "runtime/base/rng.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_COPIES 512

static struct mt_gpu_arena *arena;
static struct mt_rng rng;
static size_t l2_bytes;
static double hbm_gbps;
static int reps = 30;
static struct CUstream_st *stream; /* where time_kernel launches: NULL, or the GEMV stream */
static struct CUstream_st *gemv_stream;
static bool as_graph; /* time_kernel: the copies' launches recorded once as a CUDA graph */

static void
die(const char *what)
{
    fprintf(stderr, "bench_kernels: %s: %s\n", what, mt_last_error());
    exit(1);
}

static void *
dalloc(size_t bytes)
{
    void *p = NULL;

    if (mt_gpu_arena_alloc(arena, bytes, "benchmark operand", &p) != MT_OK) {
        die("device memory");
    }
    return p;
}

/* Fill device bytes with a repeated random host pattern (fp8: no NaN bytes; f32: [-1, 1)). */
enum fill_kind { FILL_FP8, FILL_BF16, FILL_F32, FILL_SCALE };

static void
dfill(void *d, size_t bytes, enum fill_kind kind)
{
    static unsigned char *pat[4];
    const size_t PAT = 16u << 20;

    if (pat[kind] == NULL) {
        pat[kind] = malloc(PAT);
        if (pat[kind] == NULL) {
            fprintf(stderr, "bench_kernels: out of host memory\n");
            exit(1);
        }
        for (size_t i = 0; i < PAT / 4; i++) {
            uint32_t r = (uint32_t)mt_rng_next(&rng);
            float f = (float)(r >> 8) * (2.0f / 16777216.0f) - 1.0f;
            uint32_t u;
            switch (kind) {
            case FILL_FP8:
                for (int j = 0; j < 4; j++) {
                    unsigned char b = (unsigned char)(r >> (8 * j));
                    pat[kind][4 * i + j] = (b & 0x7f) == 0x7f ? b ^ 1 : b;
                }
                break;
            case FILL_BF16:
                memcpy(&u, &f, 4);
                ((uint16_t *)pat[kind])[2 * i] = (uint16_t)(u >> 16);
                ((uint16_t *)pat[kind])[2 * i + 1] = (uint16_t)((u >> 16) ^ 0x8000);
                break;
            case FILL_F32:
                ((float *)pat[kind])[i] = f;
                break;
            case FILL_SCALE:
                ((float *)pat[kind])[i] = (1.5f + 0.5f * f) / 448.0f;
                break;
            }
        }
    }
    for (size_t off = 0; off < bytes; off += PAT) {
        size_t n = bytes - off < PAT ? bytes - off : PAT;
        if (mt_gpu_copy_to_device((char *)d + off, pat[kind], n) != MT_OK) {
            die("fill");
        }
    }
}

/* How many copies of `bytes` make more than 4x the L2 (at least 1). */
static int
n_copies(size_t bytes)
{
    size_t want = 4 * l2_bytes + 1;
    size_t n = (want + bytes - 1) / bytes;

    return (int)(n < 1 ? 1 : n > MAX_COPIES ? MAX_COPIES : n);
}

static int
cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a;
    float y = *(const float *)b;

    return (x > y) - (x < y);
}

typedef mt_status_t (*launch_fn)(void *ctx, int copy);

/* Median and p90 ms per launch over `reps` repetitions of one launch per copy. */
static void
time_kernel(launch_fn fn, void *ctx, int copies, double *med, double *p90)
{
    cudaEvent_t e0;
    cudaEvent_t e1;
    float ms[256];
    int n = reps > 256 ? 256 : reps;

    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    for (int c = 0; c < copies; c++) { /* warm-up, and the first launch of each copy */
        if (fn(ctx, c) != MT_OK) {
            die("launch");
        }
    }
    if (mt_gpu_stream_sync(stream) != MT_OK) {
        die("warm-up");
    }
    struct CUgraphExec_st *exec = NULL;
    bool rebuilt = false;
    if (as_graph) { /* the way the engine runs a decode step */
        bool ok = mt_gpu_graph_begin(stream) == MT_OK;
        for (int c = 0; ok && c < copies; c++) {
            ok = fn(ctx, c) == MT_OK;
        }
        if (mt_gpu_graph_end(stream, ok, &exec, &rebuilt) != MT_OK || !ok ||
            mt_gpu_graph_launch(exec, stream) != MT_OK || mt_gpu_stream_sync(stream) != MT_OK) {
            die("graph");
        }
    }
    for (int r = 0; r < n; r++) {
        cudaEventRecord(e0, stream);
        if (as_graph) {
            mt_gpu_graph_launch(exec, stream);
        }
        for (int c = 0; !as_graph && c < copies; c++) {
            fn(ctx, c);
        }
        cudaEventRecord(e1, stream);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms[r], e0, e1);
        ms[r] /= (float)copies;
    }
    if (mt_gpu_stream_sync(stream) != MT_OK) {
        die("timed runs");
    }
    mt_gpu_graph_destroy(exec);
    qsort(ms, (size_t)n, sizeof(float), cmp_f);
    *med = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
    *p90 = ms[(int)(0.9 * (n - 1) + 0.5)];
    cudaEventDestroy(e1);
    cudaEventDestroy(e0);
}

static void
report(const char *kernel, const char *shape, double med, double p90, double bytes, double flops,
       const char *note)
{
    double gbps = bytes / (med * 1e-3) * 1e-9;

    printf("%-22s %-26s %9.4f %9.4f %8.1f %6.1f%% %8.2f  %s\n", kernel, shape, med, p90, gbps,
           100.0 * gbps / hbm_gbps, flops / (med * 1e-3) * 1e-12, note);
    fflush(stdout);
}

static bool
finite_out(const float *d, size_t n)
{
    float *h = malloc(n * sizeof(float));
    bool ok = h != NULL;

    if (ok && mt_gpu_copy_to_host(h, d, n * sizeof(float)) != MT_OK) {
        die("copy back");
    }
    for (size_t i = 0; ok && i < n; i++) {
        ok = isfinite(h[i]);
    }
    free(h);
    return ok;
}

/* time_kernel four ways on the GEMV stream: plain launches, with PDL, recorded as a graph
 * without and with PDL (MODE_*); pdl_ok false where the device runs plain launches either way. */
enum { MODE_ISOLATED, MODE_PDL, MODE_GRAPH, MODE_GRAPH_PDL, MODES };
static const char *const mode_suffix[MODES] = {"", "+pdl", "+graph", "+graph+pdl"};
static const char *const mode_note[MODES] = {"isolated", "chain, PDL", "graph", "graph, PDL"};

static void
time_modes(launch_fn fn, void *ctx, int copies, double (*med)[MODES], double (*p90)[MODES],
           bool *pdl_ok)
{
    stream = gemv_stream;
    for (int p = 0; p < MODES; p++) {
        mt_gpu_pdl_set(p == MODE_PDL || p == MODE_GRAPH_PDL);
        as_graph = p >= MODE_GRAPH;
        *pdl_ok = *pdl_ok || mt_gpu_pdl_active();
        time_kernel(fn, ctx, copies, &(*med)[p], &(*p90)[p]);
    }
    mt_gpu_pdl_set(true);
    as_graph = false;
    stream = NULL;
}

static void
report_modes(const char *kernel, const char *shape, const double (*med)[MODES],
             const double (*p90)[MODES], bool pdl, double bytes, double flops, const char *note)
{
    for (int p = 0; p < MODES; p++) {
        char name[64];
        char full[96];
        snprintf(name, sizeof(name), "%s%s", kernel, mode_suffix[p]);
        snprintf(full, sizeof(full), "%s, %s%s", note, mode_note[p],
                 !pdl && (p == MODE_PDL || p == MODE_GRAPH_PDL) ? " (no PDL on this device)" : "");
        report(name, shape, (*med)[p], (*p90)[p], bytes, flops, full);
    }
}

/* ---- GEMV ---------------------------------------------------------------------------------- */

struct gemv_ctx {
    struct mt_gpu_weight w[MAX_COPIES];
    float *x;
    float *y;
    int n_tok;
};

static mt_status_t
gemv_run(void *ctx, int c)
{
    struct gemv_ctx *g = ctx;

    return mt_gpu_linear(&g->w[c], g->x, g->n_tok, g->y, stream);
}

static void
bench_gemv(enum mt_dtype dt, int64_t rows, int64_t cols, int n_tok)
{
    static struct gemv_ctx g;
    bool fp8 = dt == MT_DTYPE_F8_E4M3;
    size_t wb = (size_t)rows * cols * (fp8 ? 1 : 2);
    size_t sb = fp8 ? (size_t)MT_CEIL_DIV(rows, 128) * MT_CEIL_DIV(cols, 128) * 4 : 0;
    int copies = n_copies(wb + sb);
    double med[MODES];
    double p90[MODES];
    bool pdl = false;
    char shape[64];

    mt_gpu_arena_reset(arena);
    for (int c = 0; c < copies; c++) {
        g.w[c] = (struct mt_gpu_weight){dt, dalloc(wb), fp8 ? dalloc(sb) : NULL, rows, cols,
                                          false};
        dfill((void *)g.w[c].data, wb, fp8 ? FILL_FP8 : FILL_BF16);
        if (fp8) {
            dfill((void *)g.w[c].scale, sb, FILL_SCALE);
        }
    }
    g.x = dalloc((size_t)n_tok * cols * 4);
    g.y = dalloc((size_t)n_tok * rows * 4);
    g.n_tok = n_tok;
    dfill(g.x, (size_t)n_tok * cols * 4, FILL_F32);
    time_modes(gemv_run, &g, copies, &med, &p90, &pdl);
    snprintf(shape, sizeof(shape), "%lldx%lld t%d", (long long)rows, (long long)cols, n_tok);
    report_modes(fp8 ? "gemv_fp8" : "gemv_bf16", shape, &med, &p90, pdl,
                 (double)wb + sb + 4.0 * n_tok * (cols + rows), 2.0 * rows * cols * n_tok,
                 finite_out(g.y, (size_t)n_tok * rows) ? (wb >= (16u << 20) ? ">=16MB" : "<16MB")
                                                       : "NON-FINITE OUTPUT");
}

/* ---- the read kernel at the matrices' sizes ------------------------------------------------ */

/* What streaming alone costs at a GEMV's size: the HBM read kernel (hbm_read's, the ceiling of
 * every ratio) timed exactly as a GEMV is, one launch per copy of `bytes`, isolated and in a
 * graph, with 4 blocks an SM (the ceiling's occupancy) and with 1 (a GEMV's one wave). Where
 * this falls short of the 4 GiB ceiling, no kernel of that size can reach it in this harness. */
struct read_ctx {
    const void *p[MAX_COPIES];
    size_t bytes;
    int per_sm;
    int64_t rows; /* > 0: in a GEMV's order, rb rows of a 2 KB unit (mt_gpu_read_rows_launch) */
    int rb;
    unsigned long long *sum;
};

static mt_status_t
read_run(void *ctx, int c)
{
    struct read_ctx *r = ctx;

    if (r->rows > 0) {
        return mt_gpu_read_rows_launch(r->p[c], r->rows, (int64_t)r->bytes / r->rows, r->rb,
                                       r->sum, stream);
    }
    return mt_gpu_read_launch(r->p[c], r->bytes, r->per_sm, r->sum, stream);
}

/* rows 0: the plain read with per_sm blocks an SM; rows > 0: the read in a GEMV's order of
 * bytes over a [rows, bytes / rows] matrix, rb rows of a 2 KB unit (does touching 16 DRAM rows a
 * step, the GEMV's 128 bytes of 16 rows, cost against 4 or 1?) */
static void
bench_read(size_t bytes, int per_sm, int64_t rows, int rb)
{
    static struct read_ctx r;
    int copies = n_copies(bytes);
    double med[MODES];
    double p90[MODES];
    bool pdl = false;
    char shape[64];

    mt_gpu_arena_reset(arena);
    for (int c = 0; c < copies; c++) {
        void *d = dalloc(bytes);
        dfill(d, bytes, FILL_F32);
        r.p[c] = d;
    }
    r.sum = dalloc(sizeof(*r.sum));
    r.bytes = bytes;
    r.per_sm = per_sm;
    r.rows = rows;
    r.rb = rb;
    time_modes(read_run, &r, copies, &med, &p90, &pdl);
    if (rows > 0) {
        snprintf(shape, sizeof(shape), "%lldx%lld, %d row%s a 2 KB unit", (long long)rows,
                 (long long)(bytes / (size_t)rows), rb, rb > 1 ? "s" : "");
    } else {
        snprintf(shape, sizeof(shape), "%.1f MB, %d block%s/SM", bytes * 1e-6, per_sm,
                 per_sm > 1 ? "s" : "");
    }
    report_modes(rows > 0 ? "read_rows" : "read", shape, &med, &p90, pdl, (double)bytes, 0.0,
                 "no PDL in this kernel");
}

/* ---- routed experts ------------------------------------------------------------------------ */

struct moe_ctx {
    struct mt_gpu_moe_args a[MAX_COPIES];
};

static mt_status_t
moe_run(void *ctx, int c)
{
    struct moe_ctx *m = ctx;

    return mt_gpu_moe_experts(&m->a[c], stream);
}

static void
bench_moe(int n_exp, int n_tok)
{
    static struct moe_ctx m;
    const int H = 7168;
    const int I = 2048;
    size_t wb = (size_t)H * I;
    size_t sb = (size_t)16 * 56 * 4;
    size_t per = (size_t)n_exp * 3 * (wb + sb);
    int copies = n_copies(per);
    int32_t gs[33];
    int32_t tok[256];
    float pw[256];
    double med[MODES];
    double p90[MODES];
    bool pdl = false;
    char shape[64];

    mt_gpu_arena_reset(arena);
    /* every token routes to all n_exp experts (decode: 1 token, 8 experts) */
    for (int e = 0; e <= n_exp; e++) {
        gs[e] = e * n_tok;
    }
    for (int p = 0; p < n_exp * n_tok; p++) {
        tok[p] = p % n_tok;
        pw[p] = 0.125f;
    }
    int32_t *d_gs = dalloc(sizeof(gs));
    int32_t *d_tok = dalloc(sizeof(tok));
    float *d_pw = dalloc(sizeof(pw));
    float *x = dalloc((size_t)n_tok * H * 4);
    float *y = dalloc((size_t)n_tok * H * 4);
    void *work = dalloc(mt_gpu_moe_work_bytes(n_exp * n_tok, I, H));
    if (mt_gpu_copy_to_device(d_gs, gs, sizeof(gs)) != MT_OK ||
        mt_gpu_copy_to_device(d_tok, tok, sizeof(tok)) != MT_OK ||
        mt_gpu_copy_to_device(d_pw, pw, sizeof(pw)) != MT_OK) {
        die("copy");
    }
    dfill(x, (size_t)n_tok * H * 4, FILL_F32);
    dfill(y, (size_t)n_tok * H * 4, FILL_F32);
    for (int c = 0; c < copies; c++) {
        struct mt_gpu_expert ex[32];
        for (int e = 0; e < n_exp; e++) {
            void *w3[3];
            float *s3[3];
            for (int k = 0; k < 3; k++) {
                w3[k] = dalloc(wb);
                s3[k] = dalloc(sb);
                dfill(w3[k], wb, FILL_FP8);
                dfill(s3[k], sb, FILL_SCALE);
            }
            ex[e] = (struct mt_gpu_expert){w3[0], w3[1], w3[2], s3[0], s3[1], s3[2]};
        }
        struct mt_gpu_expert *d_ex = dalloc((size_t)n_exp * sizeof(ex[0]));
        if (mt_gpu_copy_to_device(d_ex, ex, (size_t)n_exp * sizeof(ex[0])) != MT_OK) {
            die("copy");
        }
        m.a[c] = (struct mt_gpu_moe_args){H, I, n_exp, n_exp * n_tok, n_tok, n_tok, d_ex, d_gs,
                                          d_tok, d_pw, x, y, work, NULL};
    }
    time_modes(moe_run, &m, copies, &med, &p90, &pdl);
    snprintf(shape, sizeof(shape), "%d exp 2048x7168 t%d", n_exp, n_tok);
    report_modes("moe", shape, &med, &p90, pdl, (double)per, 6.0 * H * I * n_exp * n_tok,
                 finite_out(y, (size_t)n_tok * H) ? "gate+up, down, sum" : "NON-FINITE OUTPUT");
}

/* ---- indexer and top-k ---------------------------------------------------------------------- */

struct idx_ctx {
    const uint8_t *q8;
    const float *w;
    const void *k[MAX_COPIES];
    const float *ks[MAX_COPIES];
    float *out[MAX_COPIES];
    const float *q;
    int64_t n;
    bool fp8;
    bool split; /* exact keys in the split cache (mt_gpu_index_keys_split) */
};

static mt_status_t
idx_run(void *ctx, int c)
{
    struct idx_ctx *x = ctx;

    if (x->split) {
        /* the keys are a cache no kernel here writes: all ready before the wait */
        return mt_gpu_index_scores_split(x->q, x->w, x->k[c], x->n, 1, x->n, 0.0884f, x->out[c],
                                         x->n, stream);
    }
    if (x->fp8) {
        /* the keys are a cache no kernel here writes: all ready before the wait */
        return mt_gpu_index_scores_fp8(x->q8, x->w, 64, 128, x->k[c], x->ks[c], x->n, x->n,
                                       x->out[c], stream);
    }
    return mt_gpu_index_scores(x->q, x->w, 64, 128, x->k[c], x->n, 0.0884f, x->out[c], stream);
}

struct topk_ctx {
    float *s[MAX_COPIES];
    int32_t *idx;
    void *work;
    int64_t n;
    int k;
};

static mt_status_t
topk_run(void *ctx, int c)
{
    struct topk_ctx *t = ctx;

    return mt_gpu_topk(t->s[c], t->n, 1, t->n, NULL, t->k, t->idx, NULL, t->work, NULL);
}

/* The exact scores on CUDA cores (mt_gpu_index_exact_tc_set(false)) rather than tensor cores. */
static bool idx_cuda_cores;
/* The exact tensor-core kernel's way of bringing keys in, where not the default (a ring in
 * shared memory where it fits; mt_gpu_index_exact_ring_set). */
static const char *idx_ring_note;

/* Exact keys in the split cache (mt_gpu_index_keys_split) rather than fp32, and its kernel. */
static bool idx_split;
static const char *idx_split_note = "";

static void
bench_indexer(int64_t n, bool fp8, bool with_topk)
{
    static struct idx_ctx x;
    static struct topk_ctx tk;
    bool split = !fp8 && idx_split;
    size_t kb = split ? mt_gpu_index_keys_split_bytes(n) : (size_t)n * (fp8 ? 128 + 4 : 128 * 4);
    int copies = n_copies(kb);
    double med;
    double p90;
    char shape[64];

    mt_gpu_arena_reset(arena);
    x.n = n;
    x.fp8 = fp8;
    x.q8 = dalloc(64 * 128);
    x.q = dalloc(64 * 128 * 4);
    x.w = dalloc(64 * 4);
    dfill((void *)x.q8, 64 * 128, FILL_FP8);
    dfill((void *)x.q, 64 * 128 * 4, FILL_F32);
    dfill((void *)x.w, 64 * 4, FILL_SCALE);
    for (int c = 0; c < copies; c++) {
        x.k[c] = dalloc(fp8 ? (size_t)n * 128 : (size_t)n * 512);
        dfill((void *)x.k[c], fp8 ? (size_t)n * 128 : (size_t)n * 512, fp8 ? FILL_FP8 : FILL_F32);
        x.ks[c] = dalloc((size_t)n * 4);
        dfill((void *)x.ks[c], (size_t)n * 4, FILL_SCALE);
        x.out[c] = dalloc((size_t)n * 4);
    }
    x.split = split;
    for (int c = 0; split && c < copies; c++) { /* the same keys, split into their cache */
        void *cache = dalloc(kb);
        if (mt_gpu_index_keys_split_store(cache, 0, x.k[c], n, stream) != MT_OK) {
            die("split keys");
        }
        x.k[c] = cache;
    }
    double mm[MODES];
    double mp[MODES];
    bool pdl = false;
    time_modes(idx_run, &x, copies, &mm, &mp, &pdl);
    snprintf(shape, sizeof(shape), "64x128 vs %lld keys", (long long)n);
    report_modes(fp8 ? "index_scores_fp8" : "index_scores_exact", shape, &mm, &mp, pdl,
                 (double)kb + 4.0 * n, 2.0 * 64 * 128 * n,
                 !finite_out(x.out[0], (size_t)n) ? "NON-FINITE OUTPUT"
                 : fp8                            ? "target >=70% hbm"
                 : split                          ? idx_split_note
                 : idx_cuda_cores                 ? "fp32 CUDA cores"
                 : idx_ring_note != NULL          ? idx_ring_note
                                                  : "tensor cores, f16 x 3, fp32 keys ring");
    if (!fp8 || !with_topk) {
        return;
    }
    /* top-2048 over copies of these (realistic) scores */
    int tc = n_copies((size_t)n * 4);
    tk.n = n;
    tk.k = 2048;
    tk.idx = dalloc(2048 * 4);
    tk.work = dalloc(mt_gpu_topk_scratch_bytes());
    for (int c = 0; c < tc; c++) {
        tk.s[c] = dalloc((size_t)n * 4);
        if (cudaMemcpy(tk.s[c], x.out[c % copies], (size_t)n * 4, cudaMemcpyDeviceToDevice) !=
            cudaSuccess) {
            die("copy scores");
        }
    }
    time_kernel(topk_run, &tk, tc, &med, &p90);
    snprintf(shape, sizeof(shape), "top-2048 of %lld fp8 scores", (long long)n);
    report("topk", shape, med, p90, 4.0 * n + 2048 * 4, 0.0,
           med * 1e3 <= 20.0 ? "target <=20us: met" : "target <=20us: MISSED");
    /* the same over uniform random scores in [-1, 1) */
    for (int c = 0; c < tc; c++) {
        dfill(tk.s[c], (size_t)n * 4, FILL_F32);
    }
    time_kernel(topk_run, &tk, tc, &med, &p90);
    snprintf(shape, sizeof(shape), "top-2048 of %lld uniform", (long long)n);
    report("topk", shape, med, p90, 4.0 * n + 2048 * 4, 0.0,
           med * 1e3 <= 20.0 ? "target <=20us: met" : "target <=20us: MISSED");
}

/* ---- sparse MLA decode ---------------------------------------------------------------------- */

struct mla_ctx {
    const void *lat[MAX_COPIES];
    const void *kpe[MAX_COPIES];
    const float *ql;
    const float *qp;
    const int32_t *idx;
    void *work;
    float *o;
    int n_idx;
    enum mt_dtype dt;
};

static mt_status_t
mla_run(void *ctx, int c)
{
    struct mla_ctx *m = ctx;

    return mt_gpu_mla_decode(m->ql, m->qp, 128, 512, 64, m->dt, m->lat[c], m->kpe[c], m->idx,
                             m->n_idx, 0.1352338f, m->work, m->o, stream);
}

/* The small MLA kernel's blocks (heads x warps a head tile): NULL, the one mla.cu picks, then
 * each forced by MT_MLA_PROMPT_BLOCK or MT_MLA_DECODE_BLOCK. */
static const char *const mla_blocks[] = {NULL, "16x4", "16x8", "32x8"};
#define MLA_N_BLOCKS (sizeof(mla_blocks) / sizeof(mla_blocks[0]))

/* Block k of mla_blocks into the environment variable env (k = 0: unset), and the rows' name:
 * base, then _16x4 etc. where forced. */
static void
mla_block_select(size_t k, const char *env, const char *base, char *name, size_t name_size)
{
    snprintf(name, name_size, "%s%s%s", base, mla_blocks[k] ? "_" : "",
             mla_blocks[k] ? mla_blocks[k] : "");
    if (mla_blocks[k] != NULL) {
        setenv(env, mla_blocks[k], 1);
    } else {
        unsetenv(env);
    }
}

/* kernel: the row's name (which MLA kernel the environment selects, mla.cu's mla_choose) */
static void
bench_mla(enum mt_dtype dt, int n_idx, int n_cache, const char *kernel)
{
    static struct mla_ctx m;
    size_t es = dt == MT_DTYPE_BF16 ? 2 : 4;
    size_t cache = (size_t)n_cache * 576 * es;
    int copies = n_copies(cache);
    int32_t *idx = malloc((size_t)n_idx * 4);
    char shape[64];

    mt_gpu_arena_reset(arena);
    m.dt = dt;
    m.n_idx = n_idx;
    for (int c = 0; c < copies; c++) {
        m.lat[c] = dalloc((size_t)n_cache * 512 * es);
        m.kpe[c] = dalloc((size_t)n_cache * 64 * es);
        dfill((void *)m.lat[c], (size_t)n_cache * 512 * es, es == 2 ? FILL_BF16 : FILL_F32);
        dfill((void *)m.kpe[c], (size_t)n_cache * 64 * es, es == 2 ? FILL_BF16 : FILL_F32);
    }
    for (int j = 0; j < n_idx; j++) {
        idx[j] = (int32_t)(((int64_t)j * n_cache) / n_idx + mt_rng_below(&rng, n_cache / n_idx));
    }
    m.idx = dalloc((size_t)n_idx * 4);
    if (mt_gpu_copy_to_device((void *)m.idx, idx, (size_t)n_idx * 4) != MT_OK) {
        die("copy");
    }
    m.ql = dalloc(128 * 512 * 4);
    m.qp = dalloc(128 * 64 * 4);
    dfill((void *)m.ql, 128 * 512 * 4, FILL_F32);
    dfill((void *)m.qp, 128 * 64 * 4, FILL_F32);
    m.work = dalloc(mt_gpu_mla_work_bytes(128, n_idx));
    m.o = dalloc(128 * 512 * 4);
    /* isolated launches measure the host's two launch calls as much as the kernels: the graph
     * rows are the GPU's time, as a decode step runs it */
    double med[MODES];
    double p90[MODES];
    bool pdl = false;
    time_modes(mla_run, &m, copies, &med, &p90, &pdl);
    double bytes = (double)n_idx * 576 * es + 128.0 * 576 * 4 + 128.0 * 512 * 4 + n_idx * 4.0;
    double flops = 2.0 * 128 * n_idx * (576 + 512);
    char note[96];
    snprintf(note, sizeof(note), "byte floor %.4f ms", bytes / (hbm_gbps * 1e9) * 1e3);
    snprintf(shape, sizeof(shape), "%s 128h x %d of %d", es == 2 ? "bf16" : "fp32", n_idx,
             n_cache);
    report_modes(kernel, shape, &med, &p90, pdl, bytes, flops,
                 finite_out(m.o, 128 * 512) ? note : "NON-FINITE OUTPUT");
    free(idx);
}

/* ---- sparse MLA of a prompt's rows (mt_gpu_mla_prompt) -------------------------------------- */

struct mla_prompt_ctx {
    const float *ql;
    const float *qp;
    const void *lat;
    const void *kpe;
    const int32_t *idx;
    float *o;
    int n_rows;
};

static mt_status_t
mla_prompt_run(void *ctx, int c)
{
    struct mla_prompt_ctx *m = ctx;

    (void)c;
    return mt_gpu_mla_prompt(m->ql, m->qp, 128, 512, 64, MT_DTYPE_BF16, m->lat, m->kpe, m->idx,
                             2048, 2048, 0, m->n_rows, 0.1352338f, m->o, stream);
}

/*
 * A prompt chunk's rows, 128 heads, each attending to 2,048 selected of n_cache BF16 positions:
 * shared, every row the same selection (neighbouring rows of a real prompt share most of theirs);
 * else each its own (every 32 positions one, at random): the two ends of what L2 can keep. One
 * launch of n_rows rows a repetition (its operands are read many times over by design: the row's
 * selected cache rows by each block of heads); TFLOP/s of the products as the CPU does them (2 x
 * 128 x 2,048 x (576 + 512) a row), so kernels that do them differently compare.
 */
static void
bench_mla_prompt(int n_rows, int n_cache, bool shared, const char *kernel)
{
    static struct mla_prompt_ctx m;
    int32_t *idx = malloc((size_t)n_rows * 2048 * 4);
    double med;
    double p90;
    char shape[64];

    if (idx == NULL) {
        die("host memory");
    }
    mt_gpu_arena_reset(arena);
    m.n_rows = n_rows;
    m.lat = dalloc((size_t)n_cache * 512 * 2);
    m.kpe = dalloc((size_t)n_cache * 64 * 2);
    dfill((void *)m.lat, (size_t)n_cache * 512 * 2, FILL_BF16);
    dfill((void *)m.kpe, (size_t)n_cache * 64 * 2, FILL_BF16);
    for (int r = 0; r < n_rows; r++) {
        for (int j = 0; j < 2048; j++) {
            idx[(size_t)r * 2048 + j] =
                shared && r > 0 ? idx[j]
                                : (int32_t)(((int64_t)j * n_cache) / 2048 +
                                            mt_rng_below(&rng, (uint64_t)n_cache / 2048));
        }
    }
    m.idx = dalloc((size_t)n_rows * 2048 * 4);
    if (mt_gpu_copy_to_device((void *)m.idx, idx, (size_t)n_rows * 2048 * 4) != MT_OK) {
        die("copy");
    }
    m.ql = dalloc((size_t)n_rows * 128 * 512 * 4);
    m.qp = dalloc((size_t)n_rows * 128 * 64 * 4);
    dfill((void *)m.ql, (size_t)n_rows * 128 * 512 * 4, FILL_F32);
    dfill((void *)m.qp, (size_t)n_rows * 128 * 64 * 4, FILL_F32);
    m.o = dalloc((size_t)n_rows * 128 * 512 * 4);
    time_kernel(mla_prompt_run, &m, 1, &med, &p90);
    double bytes = (double)n_cache * 1152 + n_rows * (128.0 * 576 * 4 + 128.0 * 512 * 4);
    double flops = 2.0 * n_rows * 128 * 2048 * (576 + 512);
    snprintf(shape, sizeof(shape), "%d rows x 2048 of %d, %s", n_rows, n_cache,
             shared ? "shared" : "own");
    report(kernel, shape, med, p90, bytes, flops,
           finite_out(m.o, (size_t)n_rows * 128 * 512) ? "bytes: cache once + q + o"
                                                        : "NON-FINITE OUTPUT");
    free(idx);
}

/* ---- MLA absorption through kv_b (decode, one token) ---------------------------------------- */

struct absorb_ctx {
    struct mt_gpu_weight kvb[MAX_COPIES];
    float *q;
    float *q_lat;
    float *q_pe;
    float *o_lat;
    float *out;
    bool value; /* the value half (absorb_v) instead of the key half (absorb_q) */
};

static mt_status_t
absorb_run(void *ctx, int c)
{
    struct absorb_ctx *a = ctx;

    return a->value ? mt_gpu_mla_absorb_v(a->o_lat, &a->kvb[c], 1, 128, 128, 128, a->out, stream)
                    : mt_gpu_mla_absorb_q(a->q, &a->kvb[c], 1, 128, 128, 128, 64, a->q_lat,
                                          a->q_pe, stream);
}

/* V3.2's kv_b (32768 x 512 FP8): each half is read once a token; both kernels of each half,
 * engine_ops.cu's streaming ones (fast) and its any-shape ones. */
static void
bench_absorb(void)
{
    static struct absorb_ctx a;
    size_t wb = (size_t)32768 * 512;
    size_t sb = (size_t)256 * 4 * 4;
    int copies = n_copies(wb / 2);
    double med[MODES];
    double p90[MODES];
    bool pdl = false;

    mt_gpu_arena_reset(arena);
    for (int c = 0; c < copies; c++) {
        a.kvb[c] = (struct mt_gpu_weight){MT_DTYPE_F8_E4M3, dalloc(wb), dalloc(sb), 32768, 512,
                                            false};
        dfill((void *)a.kvb[c].data, wb, FILL_FP8);
        dfill((void *)a.kvb[c].scale, sb, FILL_SCALE);
    }
    a.q = dalloc(128 * 192 * 4);
    a.q_lat = dalloc(128 * 512 * 4);
    a.q_pe = dalloc(128 * 64 * 4);
    a.o_lat = dalloc(128 * 512 * 4);
    a.out = dalloc(128 * 128 * 4);
    dfill(a.q, 128 * 192 * 4, FILL_F32);
    dfill(a.o_lat, 128 * 512 * 4, FILL_F32);
    bool was = mt_gpu_absorb_fast();
    for (int fast = 1; fast >= 0; fast--) {
        mt_gpu_absorb_fast_set(fast == 1);
        for (int v = 0; v < 2; v++) {
            a.value = v == 1;
            time_modes(absorb_run, &a, copies, &med, &p90, &pdl);
            bool ok = v ? finite_out(a.out, 128 * 128) : finite_out(a.q_lat, 128 * 512);
            char note[64];
            snprintf(note, sizeof(note), "%s", !ok ? "NON-FINITE OUTPUT"
                                               : fast ? "streaming (FP8, kvl % 128 == 0)"
                                                      : "any-shape kernel");
            report_modes(v ? "mla_absorb_v" : "mla_absorb_q", "128h x 128 of kv_b 512", &med,
                         &p90, pdl, wb / 2 + sb / 2 + 4.0 * 128 * (v ? 512 + 128 : 192 + 512),
                         2.0 * 128 * 128 * 512, note);
        }
    }
    mt_gpu_absorb_fast_set(was);
}

int
main(int argc, char **argv)
{
    /* V3.2's matrices, then the engine's stacks of them for a decode token (q_a + indexer wk +
     * kv_a: 1536 + 128 + 576 rows; the indexer's wq_b) */
    static const int64_t shapes[][2] = {
        {1536, 7168},  {24576, 1536}, {576, 7168}, {32768, 512}, {7168, 16384}, {18432, 7168},
        {7168, 18432}, {2048, 7168},  {7168, 2048}, {2240, 7168}, {8192, 1536}};
    struct mt_gpu_info info;
    struct mt_gpu_bench_timing hbm;
    bool quick = false;
    bool dsa_only = false;
    bool topk_only = false;
    bool idx_sweep = false;
    bool gemv_only = false;
    bool read_only = false;
    bool mla_prompt = false;
    long long shape_r = 0;
    long long shape_c = 0;
    int n = 0;
    char date[64];
    time_t now = time(NULL);

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (strcmp(argv[i], "--dsa") == 0) {
            dsa_only = true;
        } else if (strcmp(argv[i], "--topk") == 0) {
            dsa_only = topk_only = true;
        } else if (strcmp(argv[i], "--idx-sweep") == 0) {
            dsa_only = idx_sweep = true;
        } else if (strcmp(argv[i], "--gemv") == 0) {
            gemv_only = true;
        } else if (strcmp(argv[i], "--read") == 0) {
            read_only = true;
        } else if (strcmp(argv[i], "--mla-prompt") == 0) {
            mla_prompt = true;
        } else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc &&
                   sscanf(argv[i + 1], "%lldx%lld", &shape_r, &shape_c) == 2 && shape_r > 0 &&
                   shape_c > 0) {
            i++;
        } else {
            fprintf(stderr, "usage: bench_kernels [--reps N] [--quick] "
                            "[--dsa | --topk | --idx-sweep | --gemv | --read | --mla-prompt | "
                            "--shape RxC]\n");
            return 2;
        }
    }
    if (reps < 3) {
        reps = 3;
    }
    mt_rng_init(&rng, 42);
    if (mt_gpu_device_count(&n) != MT_OK || n == 0) {
        fprintf(stderr, "bench_kernels: no CUDA device (%s)\n", mt_gpu_device_none_reason());
        return 77;
    }
    if (mt_gpu_device_info(0, &info) != MT_OK || mt_gpu_bench_selftest(0) != MT_OK) {
        die("device check");
    }
    l2_bytes = info.l2_bytes > 0 ? info.l2_bytes : 60u << 20;
    if (mt_gpu_bench_hbm_read(0, (size_t)4 << 30, 20, &hbm) != MT_OK) {
        die("hbm read");
    }
    hbm_gbps = hbm.gbps;
    if (mt_gpu_arena_create(0, (size_t)6 << 30, 0, &arena) != MT_OK ||
        mt_gpu_stream_create(&gemv_stream) != MT_OK) {
        die("arena and stream");
    }
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&now));
    printf("# bench_kernels %s: %s, sm_%d%d, %d SMs, L2 %zu MiB, driver %d, runtime %d\n", date,
           info.name, info.sm_major, info.sm_minor, info.multiprocessors, l2_bytes >> 20,
           info.driver_version, info.runtime_version);
    printf("# HBM read (same run, 4 GiB, 20 reps): %.1f GB/s median (p90 %.3f ms)\n", hbm.gbps,
           hbm.p90_ms);
    printf("# each kernel: %d reps of one launch per copy, copies > 4x L2; times per launch\n",
           reps);
    printf("%-22s %-26s %9s %9s %8s %7s %8s  %s\n", "kernel", "shape", "median_ms", "p90_ms",
           "GB/s", "%hbm", "TFLOP/s", "note");
    if (mla_prompt) { /* the block mla.cu picks, then each forced (MT_MLA_PROMPT_BLOCK) */
        for (size_t k = 0; k < MLA_N_BLOCKS; k++) {
            char name[32];
            mla_block_select(k, "MT_MLA_PROMPT_BLOCK", "mla_prompt", name, sizeof(name));
            bench_mla_prompt(128, 65536, true, name);
            bench_mla_prompt(128, 65536, false, name);
            bench_mla_prompt(512, 8192, true, name);
        }
        unsetenv("MT_MLA_PROMPT_BLOCK");
        mt_gpu_arena_destroy(arena);
        return 0;
    }
    if (shape_r > 0 || read_only) {
        if (shape_r > 0) {
            bench_gemv(MT_DTYPE_F8_E4M3, shape_r, shape_c, 1);
        }
        for (size_t i = 0; read_only && i < sizeof(shapes) / sizeof(shapes[0]); i++) {
            size_t bytes = (size_t)shapes[i][0] * shapes[i][1];
            for (int per_sm = 4; bytes >= (16u << 20) && per_sm >= 1; per_sm -= 3) {
                bench_read(bytes, per_sm, 0, 0);
            }
        }
        /* the GEMV's order of bytes at the large shapes: 16, 4 and 1 rows a 2 KB unit */
        static const int64_t order_shapes[][2] = {{7168, 16384}, {16384, 8192}, {24576, 2048}};
        for (size_t i = 0; read_only && i < sizeof(order_shapes) / sizeof(order_shapes[0]); i++) {
            for (int rb = 16; rb >= 1; rb /= 4) {
                bench_read((size_t)(order_shapes[i][0] * order_shapes[i][1]), 1,
                           order_shapes[i][0], rb);
            }
        }
        mt_gpu_stream_destroy(gemv_stream);
        mt_gpu_arena_destroy(arena);
        return 0;
    }
    for (size_t i = 0; !dsa_only && i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        bench_gemv(MT_DTYPE_F8_E4M3, shapes[i][0], shapes[i][1], 1);
    }
    if (dsa_only) {
        goto dsa;
    }
    bench_gemv(MT_DTYPE_F8_E4M3, 18432, 7168, 2);
    bench_gemv(MT_DTYPE_F8_E4M3, 18432, 7168, 4);
    bench_gemv(MT_DTYPE_F8_E4M3, 18432, 7168, 8);
    bench_gemv(MT_DTYPE_F8_E4M3, 7168, 18432, 8);
    bench_gemv(MT_DTYPE_F8_E4M3, 32768, 512, 8);
    if (!quick) {
        bench_gemv(MT_DTYPE_BF16, 129280, 7168, 1);
    }
    bench_moe(8, 1);
    bench_moe(8, 4);
    bench_moe(8, 8);
    if (gemv_only) {
        mt_gpu_stream_destroy(gemv_stream);
        mt_gpu_arena_destroy(arena);
        return 0;
    }
dsa:
    if (idx_sweep) {
        /* time = fixed + bytes / rate: the slope is the kernel's streaming rate, the intercept
         * what a launch costs whatever its size (fit printed for the write-up) */
        static const int64_t sweep[] = {32768, 65536, 131072, 262144, 524288};
        for (size_t i = 0; i < sizeof(sweep) / sizeof(sweep[0]); i++) {
            bench_indexer(sweep[i], true, false);
        }
        mt_gpu_arena_destroy(arena);
        return 0;
    }
    bench_indexer(131072, true, true);
    if (topk_only) {
        mt_gpu_arena_destroy(arena);
        return 0;
    }
    if (mt_gpu_index_keys_split(64, 128)) { /* the engine's exact cache */
        idx_split = true;
        idx_split_note = mt_gpu_index_exact_wgmma_active() ? "split key cache, wgmma"
                                                            : "split key cache, mma.sync";
        bench_indexer(131072, false, false);
        bench_indexer(2100, false, false); /* the exact mode just past index_topk */
        bench_indexer(8192, false, false);
        if (mt_gpu_index_exact_wgmma_active()) { /* H100/H200: the A100's kernel too */
            mt_gpu_index_exact_wgmma_set(false);
            idx_split_note = "split key cache, mma.sync";
            bench_indexer(131072, false, false);
            bench_indexer(2100, false, false);
            mt_gpu_index_exact_wgmma_set(true);
        }
        idx_split = false;
    }
    bench_indexer(131072, false, false); /* fp32 keys on mma.sync: the RTX cards' path */
    bench_indexer(2100, false, false);
    bench_indexer(8192, false, false);
    mt_gpu_index_exact_ring_set(false);
    idx_ring_note = "tensor cores, keys in registers";
    bench_indexer(131072, false, false);
    bench_indexer(2100, false, false);
    mt_gpu_index_exact_ring_set(true);
    idx_ring_note = NULL;
    idx_cuda_cores = true; /* the CUDA-core kernel at the same shapes */
    mt_gpu_index_exact_tc_set(false);
    bench_indexer(131072, false, false);
    bench_indexer(2100, false, false);
    mt_gpu_index_exact_tc_set(true);
    idx_cuda_cores = false;
    bench_indexer(2100, true, true); /* top-2048 of rows just past index_topk */
    bench_indexer(4096, true, true);
    bench_indexer(8192, true, true);
    bench_indexer(6144, true, true); /* the longest row topk_short_kernel takes */
    /* index_topk positions (every sparse row), then dense rows of shorter contexts; the default
     * kernel choice, then each tensor-core kernel forced */
    static const int mla_rows[] = {2048, 1536, 1024, 512, 128};
    for (size_t i = 0; i < sizeof(mla_rows) / sizeof(mla_rows[0]); i++) {
        bench_mla(MT_DTYPE_BF16, mla_rows[i], 65536, "mla_decode");
    }
    /* the BF16 cache on the kernels of GPUs with less shared memory a block (sm_80/86/89/120):
     * the small tensor-core kernel on the block mla.cu picks, then on each block forced, then
     * CUDA cores (environment switches of mla.cu) */
    setenv("MT_MLA_TC_SMALL", "1", 1);
    for (size_t k = 0; k < MLA_N_BLOCKS; k++) {
        char name[32];
        mla_block_select(k, "MT_MLA_DECODE_BLOCK", "mla_small", name, sizeof(name));
        for (size_t i = 0; i < sizeof(mla_rows) / sizeof(mla_rows[0]); i++) {
            bench_mla(MT_DTYPE_BF16, mla_rows[i], 65536, name);
        }
    }
    unsetenv("MT_MLA_DECODE_BLOCK");
    /* and the large one wherever it fits (sm_90, sm_100), also at the rows that default to the
     * small one */
    setenv("MT_MLA_TC_SMALL", "0", 1);
    for (size_t i = 0; i < sizeof(mla_rows) / sizeof(mla_rows[0]); i++) {
        bench_mla(MT_DTYPE_BF16, mla_rows[i], 65536, "mla_large");
    }
    unsetenv("MT_MLA_TC_SMALL");
    setenv("MT_MLA_CUDA_CORES", "1", 1);
    bench_mla(MT_DTYPE_BF16, 2048, 65536, "mla_cudacore");
    unsetenv("MT_MLA_CUDA_CORES");
    bench_mla(MT_DTYPE_F32, 2048, 65536, "mla_decode");
    bench_absorb();
    mt_gpu_arena_destroy(arena);
    return 0;
}
