/* SPDX-License-Identifier: MIT */
/*
 * engine_gpu.c - the engine's GPU backend: the whole forward pass of engine.c, attention.c and
 * moe.c on the CUDA kernels of kernels/ops.h and kernels/engine_ops.h, with the same contract
 * (append tokens -> logits, reset, truncate, pos), so sessions, run, chat and serve use it as is.
 *
 * The one idea: every weight the forward pass reads (routed experts included) is uploaded once,
 * in its checkpoint dtype, into one device arena sized before anything is placed: a first pass
 * over the model only counts bytes (weights, the latent and index-key caches for ctx positions,
 * the work space), so a model that does not fit fails at once with one message that says how
 * much it needs. The embedding table stays in host memory (a token copies one row).
 *
 * Tokens go through the layers in chunks of g->chunk (512, or up to 4,096 with routed experts off
 * the GPU where that fits: GPU_CHUNK, host_chunk; the cache makes every split of a sequence
 * compute the same function). A decode step (up to MT_GPU_GEMV_MAX_TOK tokens) multiplies with the
 * bandwidth-bound GEMV of ops.h; a longer chunk with the GEMM of
 * gemm.h (cuBLAS on dequantized slabs: bf16 hi + lo splits on tensor cores by default, fp32 or
 * plain BF16 as options), and MLA's absorption through kv_b as batched GEMMs. A layer's
 * attention is engine_gpu_attn.c: inside a chunk the exact indexer scores and selects many
 * queries a launch (the FP8 indexer one), and sparse MLA (BF16 cache) runs many rows a launch;
 * the fp32 cache's MLA runs per token as attention.c does. A MoE layer with experts off the GPU,
 * or a chunk longer than a decode batch, copies the router's choices back to the host and groups
 * the (token, expert) pairs there exactly as moe.c does (engine_gpu_moe.c); a chunk's GPU
 * experts run as one grouped launch (kernels/moe_chunk.cu's small GEMMs, groups of up to 32
 * pairs). A decode batch through layers whose experts all live on the GPU groups them on the
 * device instead, so such a step waits for nothing until its logits.
 *
 * Decode steps as CUDA graphs: a step of the all-GPU model is ~100 small launches, and launched
 * one by one the GPU waits between them for the host (measured on the H200: ~0.5 ms of a 1.95 ms
 * step). So the step is recorded (kernels/graph.h) and replayed by one launch. Its positions and
 * lengths are launch arguments, so every step is recorded again, but the recording of step t+1
 * is made while step t runs (the host would only wait for the logits otherwise) and updates an
 * instantiated graph in place; two slots alternate, one running, one being recorded. The graph
 * reads the embeddings from a pinned buffer, and lm_head stores the logits straight into another
 * (a copy after lm_head cost the H200 step 17-20 us of its 0.93 ms); the host copies them to the
 * caller's buffer (whose address changes) and checks them. Not with --debug-sync (every kernel
 * synchronized) or a top-k hook (it reads the selection on the host). On the GPU test machine the
 * host's part of a v32-shape step was ~10% of its forward time: the launch ~20 us, the copy and
 * check of V3.2's 517 KB of logits 82-92 us while the check was a loop gcc left scalar (now
 * eng_any_not_finite's vectorised blocks; bench/results/gpu-engine-h200.md, session 12). A
 * greedy step (mt_engine_forward_greedy, what a greedy session decodes with) needs no logits on
 * the host: lm_head writes device memory and the argmax kernel (kernels/argmax.cu) writes the id
 * and a not-finite flag into a pinned slot of 16 bytes.
 *
 * Greedy steps ahead: even so the GPU idled between steps while the host learned the id and
 * launched the next step (20-40 us a step). So a greedy step launches the next one behind
 * itself, fed on the device: its graph embeds the id the previous step's argmax wrote, reading
 * the row from the embedding table mapped for the device (host memory, registered at create).
 * The next call, asked for exactly that step (the returned id at the next position), only waits
 * for it; any other use of the engine first waits for it and drops it (eng_gpu_settle): its
 * cache entries lie at a position the next real step rewrites before anything reads them.
 * Measured on the H200 (v32-shape, 2 layers): forward 0.898-0.905 ms a token against 0.937-
 * 0.943 without, the GPU's step 0.900 ms either way (bench/results/gpu-engine-h200.md).
 *
 * Environment (for measurements and tests): MT_GPU_CHUNK=n sets the chunk (8 = the GEMV path
 * alone), MT_GPU_GEMM=bf16|bf16x3|f32|fp8 the GEMM's arithmetic (bf16x3 by default, f32 with
 * an fp32 latent cache), MT_GPU_GEMV_LOOP=n the token count up to which FP8 weights take GEMV
 * passes instead of the GEMM (64 by default); MT_GPU_GRAPH=0 (no graphs),
 * MT_GPU_LOGITS_DIRECT=0 (a graph step's lm_head into device memory, then a copy),
 * MT_GPU_ARGMAX=0 (greedy steps take the logits to the host and pick the id there),
 * MT_GPU_AHEAD=0 (each greedy step launched by its own call), MT_GPU_BATCH_INDEX=0 (a prompt
 * chunk's index scores and top-k one query at a time), MT_GPU_PROMPT_MLA=0 (its sparse MLA a
 * token at a time), MT_GPU_CHUNK_MOE=0 (its GPU experts one MLP an expert),
 * MT_GPU_SCALE_POW2=0 (the GEMM's BF16X3 mode splits W into hi + lo even where power-of-two
 * block scales make it exact in bf16),
 * MT_GPU_FUSE=0 (residual adds and norms, the kv epilogue's and the attention
 * prologue's steps as separate kernels, no stacked GEMVs), MT_GPU_STACK_Q=0 (q_b and the
 * indexer's wq_b in two GEMVs past index_topk positions), MT_GPU_DEVICE_MOE=0 (routing always
 * through the host) give the decode step as it was, for before/after runs. Kernel-level
 * switches live with their kernels (kernels/: MT_IDX_EXACT_RING, MT_MOE_CHUNK_GEMM, ...).
 *
 * Errors: every operation goes through GPU_DO, which names the operation and the layer in the
 * one message; with debug_sync (--debug-sync, MT_DEBUG_SYNC=1) the stream is synchronized after
 * every operation, so an asynchronous fault is blamed on the operation that caused it.
 */
#include <config.h>

#include "runtime/engine/engine_impl.h"

#include "runtime/plan/trace.h"

#include <stdlib.h>
#include <string.h>

#ifndef MT_HAVE_CUDA

mt_status_t
eng_gpu_create(struct mt_engine *e)
{
    (void)e;
    return mt_fail(MT_ERR_UNSUPPORTED, 0, "--device gpu: moetier was built without CUDA "
                   "(configure --with-cuda); use --device cpu");
}

void
eng_gpu_destroy(struct eng_gpu *g, int n_layers)
{
    (void)g, (void)n_layers;
}

uint64_t
eng_gpu_device_bytes(const struct eng_gpu *g)
{
    (void)g;
    return 0;
}

uint64_t
eng_gpu_work_bytes(const struct eng_gpu *g, int *chunk)
{
    (void)g;
    *chunk = 0;
    return 0;
}

int64_t
eng_gpu_ctx(const struct eng_gpu *g)
{
    (void)g;
    return INT64_MAX;
}

bool
eng_gpu_device_argmax(const struct eng_gpu *g)
{
    (void)g;
    return false;
}

mt_status_t
eng_gpu_settle(struct eng_gpu *g)
{
    (void)g;
    return MT_OK;
}

mt_status_t
eng_gpu_forward(struct mt_engine *e, const int32_t *tokens, int n, bool all_logits,
                float *logits_out, int32_t *next_out)
{
    (void)e, (void)tokens, (void)n, (void)all_logits, (void)logits_out, (void)next_out;
    return MT_ERR_UNSUPPORTED;
}

#else /* MT_HAVE_CUDA */

#include "cpu/convert.h"
#include "kernels/host_copy.h"
#include "runtime/engine/engine_gpu_impl.h"

#include <math.h>
#include <stdio.h>

#define TOK MT_GPU_GEMV_MAX_TOK

/*
 * Up to this many tokens an FP8 weight goes through the GEMV in passes of TOK tokens instead of
 * the GEMM: a pass reads each weight byte once, the GEMM's dequantization reads it once and
 * writes and re-reads four bytes (BF16X3's hi and lo), so a few passes cost less; a prompt
 * chunk's routed experts see ~16 tokens each. Measured on the H200 (v32-shape, 2 layers, 8,192-
 * token prompt, bench/results/gpu-engine-h200.md): 1.00 s with every n > TOK on the GEMM, 0.815
 * up to 16, 0.72 up to 32, 0.70-0.71 up to 64. MT_GPU_GEMV_LOOP=n sets it (0: the GEMM for every
 * n > TOK). One value for the process.
 */
#define GEMV_LOOP_DEFAULT 64
static int gemv_loop_max = GEMV_LOOP_DEFAULT;

/*
 * Device memory the arena leaves free even when --gpu-mem would allow all of it: cuBLAS's handle
 * and workspace, the graph executables of the decode steps and the runtime's own allocations come
 * after the arena, and a fit to the last byte failed there with cuBLAS's message instead of the
 * "needs" one below. MT_GPU_MEM_REPORT=1 prints what an engine really took outside its arena:
 * 75.5 MiB for the 2-layer v32-shape model with its decode graphs on the H200 (2026-12-02,
 * bench/results/gpu-engine-h200.md); a 61-layer model's graphs have ~30x the nodes.
 */
#define GPU_OUTSIDE_ARENA ((size_t)256 << 20)

/*
 * Prompt chunks: 512 tokens where every routed expert is on the GPU; where some live on host
 * executors (the CPU team, DRAM over PCIe, NVMe), the longest of HOST_CHUNK_MAX, half of it, ...
 * HOST_CHUNK whose work space fits the budget (host_chunk).
 * A chunk runs each host expert once for all its tokens, and the CPU team's prefill kernels
 * convert an expert's FP8 weights once per run: at 512 tokens an expert sees ~16 of them, too
 * few to pay for the conversion. Measured on the H200 host (v32-shape, 2 layers, all 256
 * experts on the CPU team, 2,048-token prompt, two rounds; bench/results/hetero-h200.md session
 * 27): 662 / 712 tok/s at 512, 1,384 / 1,306 at 1,024, 1,377 / 1,143 at 2,048; with every
 * expert on the GPU 512 beat 2,048 (23.0-25.2 against 19.8-20.6 thousand tok/s at 4,096 tokens).
 * Once DRAM experts were also copied into GPU slots (session 31), longer chunks paid: 4-layer
 * model, every expert in DRAM, 8,192-token prompt, 2,169-2,233 / 3,101-3,134 / 3,833-4,188 tok/s
 * at 1,024 / 2,048 / 4,096 (session 36): each chunk copies or reads an expert once for all its
 * tokens.
 */
#define GPU_CHUNK MT_PLAN_CHUNK_GPU /* 512 (planner.h: plans predict prefill at these) */
#define HOST_CHUNK MT_PLAN_CHUNK_HOST /* 1,024 */
#define HOST_CHUNK_MAX MT_PLAN_CHUNK_HOST_MAX /* 4,096 */

/* ---- errors ------------------------------------------------------------------------------ */

mt_status_t
eng_gpu_fail(mt_status_t st, int layer, const char *op)
{
    char why[512];

    snprintf(why, sizeof(why), "%s", mt_last_error());
    mt_log_set_quiet(false);
    if (layer < 0) {
        return mt_fail(st, 0, "GPU engine: %s failed: %s%s", op, why,
                       st == MT_ERR_CUDA ? " (rerun with --debug-sync to find the kernel)" : "");
    }
    return mt_fail(st, 0, "GPU engine, layer %d: %s failed: %s%s", layer, op, why,
                   st == MT_ERR_CUDA ? " (rerun with --debug-sync to find the kernel)" : "");
}

/* ---- the arena: a counting pass, then the real one --------------------------------------- */

mt_status_t
eng_gpu_alloc(struct eng_gpu *g, size_t bytes, const char *what, void **out)
{
    if (g->arena == NULL) {
        g->need[g->cat] += (bytes + 255) & ~(size_t)255;
        *out = NULL;
        return MT_OK;
    }
    return mt_gpu_arena_alloc(g->arena, bytes > 0 ? bytes : 1, what, out);
}

/* A tensor's bytes read into a new host buffer; again: a second read, to check values, which
 * the loading bar does not count (mt_st_set_reread). */
static mt_status_t
read_host_as(const struct mt_engine *e, const struct mt_st_tensor *t, bool again, void **out)
{
    void *p = malloc(t->nbytes > 0 ? t->nbytes : 1);
    mt_status_t st;

    if (p == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %llu bytes for tensor '%s'",
                       (unsigned long long)t->nbytes, t->name);
    }
    st = again ? mt_st_set_reread(e->model->set, t, p, t->nbytes)
               : mt_st_set_read(e->model->set, t, p, t->nbytes);
    if (st != MT_OK) {
        free(p);
        return st;
    }
    *out = p;
    return MT_OK;
}

static mt_status_t
read_host(const struct mt_engine *e, const struct mt_st_tensor *t, void **out)
{
    return read_host_as(e, t, false, out);
}

/* A float tensor of any dtype the checkpoints use, as a new fp32 host array (again: as in
 * read_host_as). */
static mt_status_t
host_f32_as(struct mt_engine *e, const struct mt_st_tensor *t, bool again, float **out)
{
    void *raw;
    float *f;
    mt_status_t st;

    if ((st = read_host_as(e, t, again, &raw)) != MT_OK) {
        return st;
    }
    f = malloc((size_t)t->nelem * sizeof(float) + 1);
    if (f == NULL) {
        free(raw);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot convert tensor '%s'", t->name);
    }
    switch (t->dtype) {
    case MT_DTYPE_F32:
        memcpy(f, raw, (size_t)t->nelem * sizeof(float));
        break;
    case MT_DTYPE_BF16:
        mt_bf16_to_f32_n(raw, f, (size_t)t->nelem);
        break;
    case MT_DTYPE_F16:
        mt_f16_to_f32_n(raw, f, (size_t)t->nelem);
        break;
    case MT_DTYPE_F8_E4M3:
        mt_fp8_to_f32_n(raw, f, (size_t)t->nelem);
        break;
    default:
        free(raw);
        free(f);
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "tensor '%s': dtype %s is not supported by the GPU "
                       "engine", t->name, mt_dtype_name(t->dtype));
    }
    free(raw);
    *out = f;
    return MT_OK;
}

static mt_status_t
host_f32(struct mt_engine *e, const struct mt_st_tensor *t, float **out)
{
    return host_f32_as(e, t, false, out);
}

/* The router's correction bias read once more on the host, to refuse a NaN in it at load
 * (eng_check_tensor_finite says why). */
static mt_status_t
router_bias_finite(struct mt_engine *e, const struct mt_st_tensor *t)
{
    float *f;
    mt_status_t st = host_f32_as(e, t, true, &f);

    if (st == MT_OK) {
        st = eng_check_tensor_finite(t->name, f, (size_t)t->nelem);
        free(f);
    }
    return st;
}

/*
 * The indexer's weights and scales read once more on the host, to refuse a NaN or an infinity in
 * any of them at load. Nothing downstream would fail: its ReLU turns a NaN dot product into 0,
 * top-k sorts a NaN score last and attention over the positions picked stays finite; only the
 * selection would change, silently. The CPU engine checks the indexer's outputs every step
 * (attention.c); on the device that would cost a reduction and a read-back a layer, and a
 * corrupt checkpoint is what it guards against.
 */
static mt_status_t
indexer_finite(struct mt_engine *e, const struct mt_layer_weights *lw)
{
    const struct mt_weight *ws[5] = {&lw->idx_wq_b, &lw->idx_wk, &lw->idx_k_norm,
                                     &lw->idx_k_norm_bias, &lw->idx_weights_proj};
    mt_status_t st = MT_OK;

    for (int i = 0; i < 10 && st == MT_OK; i++) {
        const struct mt_st_tensor *t = i % 2 == 0 ? ws[i / 2]->w : ws[i / 2]->scale;
        float *f;

        if (t != NULL && (st = host_f32_as(e, t, true, &f)) == MT_OK) {
            st = eng_check_tensor_finite(t->name, f, (size_t)t->nelem);
            free(f);
        }
    }
    return st;
}

/*
 * Whether every block scale of f[n] is a power of two, so that an FP8 weight times its scale is
 * exact in bf16 (mt_gpu_weight.scale_pow2; MT_GPU_SCALE_POW2=0 says no, for measurements).
 */
static bool
scales_pow2(const float *f, size_t n)
{
    const char *ev = getenv("MT_GPU_SCALE_POW2");
    bool all = ev == NULL || strcmp(ev, "0") != 0;

    for (size_t i = 0; all && i < n; i++) {
        int ex;
        all = f[i] > 0.0f && isfinite(f[i]) && frexpf(f[i], &ex) == 0.5f;
    }
    return all;
}

/*
 * A 1-D (or any) float tensor as an fp32 device array. pow2 (may be NULL): set to scales_pow2 of
 * its values.
 */
static mt_status_t
up_f32(struct mt_engine *e, struct eng_gpu *g, const struct mt_st_tensor *t, float **out,
       bool *pow2)
{
    float *f;
    mt_status_t st;

    if (t == NULL) {
        return mt_fail(MT_ERR_INTERNAL, 0, "GPU engine: a required tensor is missing");
    }
    if ((st = eng_gpu_alloc(g, (size_t)t->nelem * sizeof(float), t->name, (void **)out)) != MT_OK ||
        g->arena == NULL) {
        return st;
    }
    if ((st = host_f32(e, t, &f)) != MT_OK) {
        return st;
    }
    if (pow2 != NULL) {
        *pow2 = scales_pow2(f, (size_t)t->nelem);
    }
    st = mt_gpu_copy_to_device(*out, f, (size_t)t->nelem * sizeof(float));
    free(f);
    return st;
}

/*
 * A linear weight in its checkpoint dtype when the GEMV of ops.h takes it (FP8 with cols % 16,
 * BF16 with cols % 8), or with any_width at any width (kv_b, read by the absorption kernels,
 * which take FP8 and BF16 at any shape); otherwise (F32, F16, odd widths) dequantized to F32.
 */
static mt_status_t
up_linear(struct mt_engine *e, struct eng_gpu *g, const struct mt_weight *mw, bool any_width,
          struct gw *out)
{
    const struct mt_st_tensor *t = mw->w;
    struct mt_cpu_weight cw = {0};
    float *scale = NULL;
    void *raw = NULL;
    mt_status_t st;

    if (t == NULL || t->ndim != 2) {
        return mt_fail(MT_ERR_FORMAT, 0, "GPU engine: a linear weight is missing or not 2-D");
    }
    memset(out, 0, sizeof(*out));
    out->w.rows = t->shape[0];
    out->w.cols = t->shape[1];
    out->w.dtype = t->dtype;
    out->gemm = g->gemm;
    g->max_cols = MT_MAX(g->max_cols, out->w.cols);
    bool keep = (t->dtype == MT_DTYPE_F8_E4M3 && (any_width || out->w.cols % 16 == 0)) ||
                (t->dtype == MT_DTYPE_BF16 && (any_width || out->w.cols % 8 == 0));
    if (t->dtype == MT_DTYPE_F8_E4M3 && mw->scale == NULL) {
        return mt_fail(MT_ERR_FORMAT, 0, "FP8 tensor '%s' has no weight_scale_inv", t->name);
    }
    if (keep) {
        if ((st = eng_gpu_alloc(g, t->nbytes, t->name, (void **)&out->w.data)) != MT_OK) {
            return st;
        }
        if (t->dtype == MT_DTYPE_F8_E4M3 &&
            (st = up_f32(e, g, mw->scale, (float **)&out->w.scale, &out->w.scale_pow2)) !=
                MT_OK) {
            return st;
        }
        if (g->arena == NULL) {
            return MT_OK;
        }
        if ((st = read_host(e, t, &raw)) != MT_OK) {
            return st;
        }
        st = mt_gpu_copy_to_device((void *)out->w.data, raw, t->nbytes);
        free(raw);
        return st;
    }
    /* dequantize on the host, F32 on the device */
    out->w.dtype = MT_DTYPE_F32;
    size_t bytes = (size_t)(out->w.rows * out->w.cols) * sizeof(float);
    if ((st = eng_gpu_alloc(g, bytes, t->name, (void **)&out->w.data)) != MT_OK || g->arena == NULL) {
        return st;
    }
    if ((st = read_host(e, t, &raw)) != MT_OK) {
        return st;
    }
    if (t->dtype == MT_DTYPE_F8_E4M3) {
        size_t ns = (size_t)mw->scale->nelem;
        void *sraw;
        scale = malloc(ns * sizeof(float) + 1);
        if (scale == NULL || (st = read_host(e, mw->scale, &sraw)) != MT_OK) {
            free(raw);
            free(scale);
            return scale == NULL ? mt_fail(MT_ERR_NOMEM, 0, "cannot allocate scales") : st;
        }
        if (mw->scale->dtype == MT_DTYPE_F32) {
            memcpy(scale, sraw, ns * sizeof(float));
        } else {
            mt_bf16_to_f32_n(sraw, scale, ns);
        }
        free(sraw);
    }
    cw = (struct mt_cpu_weight){.dtype = t->dtype, .data = raw, .scale = scale,
                                .rows = out->w.rows, .cols = out->w.cols};
    float *f = malloc(bytes + 1);
    if (f == NULL) {
        free(raw);
        free(scale);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot dequantize '%s'", t->name);
    }
    for (int64_t r = 0; r < cw.rows; r++) {
        mt_cpu_weight_row(&cw, r, f + r * cw.cols);
    }
    st = mt_gpu_copy_to_device((void *)out->w.data, f, bytes);
    free(f);
    free(raw);
    free(scale);
    return st;
}

/*
 * Linear weights that multiply the same input, stacked row-wise in one allocation (*stack), each
 * part a view of its rows (*outs[i], as up_linear would have made it; no byte is stored twice):
 * one GEMV then computes them all in a decode step, part i's outputs at off[i]. FP8 parts of one
 * width only: each part's rows start on a 128-row scale block, so its scale rows follow the ones
 * before it unchanged (V3.2's q_a, wk and gate are whole blocks; a part of other height but the
 * last gets zero rows up to its block's end, which the GEMV turns into zero outputs nobody
 * reads). Parts that do not stack are uploaded one by one and stack->w.data stays NULL.
 */
static mt_status_t
up_stack(struct mt_engine *e, struct eng_gpu *g, int n, const struct mt_weight *const *parts,
         struct gw *const *outs, struct gw *stack, int64_t *off)
{
    const int64_t B = MT_CPU_FP8_BLOCK;
    int64_t rows = 0, cols = parts[0]->w != NULL && parts[0]->w->ndim == 2 ? parts[0]->w->shape[1]
                                                                           : 0;
    bool stacks = cols > 0 && cols % 16 == 0;
    mt_status_t st;

    memset(stack, 0, sizeof(*stack));
    for (int i = 0; i < n && stacks; i++) {
        const struct mt_st_tensor *t = parts[i]->w, *sc = parts[i]->scale;
        stacks = t != NULL && t->ndim == 2 && t->dtype == MT_DTYPE_F8_E4M3 && sc != NULL &&
                 t->shape[1] == cols &&
                 (int64_t)sc->nelem == MT_CEIL_DIV(t->shape[0], B) * MT_CEIL_DIV(cols, B);
        off[i] = rows;
        rows += !stacks ? 0 : i + 1 < n ? MT_CEIL_DIV(t->shape[0], B) * B : t->shape[0];
    }
    if (!stacks) {
        for (int i = 0; i < n; i++) {
            if ((st = up_linear(e, g, parts[i], false, outs[i])) != MT_OK) {
                return st;
            }
        }
        return MT_OK;
    }
    int64_t scols = MT_CEIL_DIV(cols, B);
    uint8_t *data;
    float *scale;
    size_t sbytes = (size_t)(MT_CEIL_DIV(rows, B) * scols) * sizeof(float);
    if ((st = eng_gpu_alloc(g, (size_t)(rows * cols), parts[0]->w->name, (void **)&data)) !=
            MT_OK ||
        (st = eng_gpu_alloc(g, sbytes, parts[0]->scale->name, (void **)&scale)) != MT_OK) {
        return st;
    }
    stack->w = (struct mt_gpu_weight){.dtype = MT_DTYPE_F8_E4M3, .data = data, .scale = scale,
                                      .rows = rows, .cols = cols};
    stack->gemm = g->gemm;
    g->max_cols = MT_MAX(g->max_cols, cols);
    g->max_stack = MT_MAX(g->max_stack, rows);
    for (int i = 0; i < n; i++) {
        const struct mt_st_tensor *t = parts[i]->w;
        int64_t r = t->shape[0], pad = i + 1 < n ? MT_CEIL_DIV(r, B) * B - r : 0;
        outs[i]->w = (struct mt_gpu_weight){.dtype = MT_DTYPE_F8_E4M3,
                                            .data = g->arena != NULL ? data + off[i] * cols : NULL,
                                            .scale = g->arena != NULL ? scale + off[i] / B * scols
                                                                      : NULL,
                                            .rows = r, .cols = cols};
        outs[i]->gemm = g->gemm;
        if (g->arena == NULL) {
            continue;
        }
        void *raw;
        float *f;
        if ((st = read_host(e, t, &raw)) != MT_OK) {
            return st;
        }
        st = mt_gpu_copy_to_device(data + off[i] * cols, raw, t->nbytes);
        free(raw);
        if (st == MT_OK && pad > 0) {
            void *zero = calloc((size_t)(pad * cols), 1);
            st = zero != NULL ? mt_gpu_copy_to_device(data + (off[i] + r) * cols, zero,
                                                      (size_t)(pad * cols))
                              : mt_fail(MT_ERR_NOMEM, 0, "cannot allocate padding rows");
            free(zero);
        }
        if (st != MT_OK || (st = host_f32(e, parts[i]->scale, &f)) != MT_OK) {
            return st;
        }
        st = mt_gpu_copy_to_device(scale + off[i] / B * scols, f,
                                   (size_t)parts[i]->scale->nelem * sizeof(float));
        outs[i]->w.scale_pow2 = scales_pow2(f, (size_t)parts[i]->scale->nelem);
        free(f);
        if (st != MT_OK) {
            return st;
        }
    }
    return MT_OK;
}

mt_status_t
eng_gpu_up_mlp(struct mt_engine *e, struct eng_gpu *g, const struct mt_expert_weights *w,
               bool stack, struct g_mlp *o)
{
    mt_status_t st;

    const struct mt_weight *gu[2] = {&w->gate, &w->up};
    struct gw *gu_out[2] = {&o->gate, &o->up};
    int64_t off[2];

    if ((st = stack ? up_stack(e, g, 2, gu, gu_out, &o->gate_up, off)
                    : up_linear(e, g, &w->gate, false, &o->gate)) != MT_OK ||
        (!stack && (st = up_linear(e, g, &w->up, false, &o->up)) != MT_OK) ||
        (st = up_linear(e, g, &w->down, false, &o->down)) != MT_OK) {
        return st;
    }
    if (!stack) {
        memset(&o->gate_up, 0, sizeof(o->gate_up));
    }
    o->up_off = stack ? off[1] : 0;
    if (o->gate.w.rows > g->max_inter) {
        g->max_inter = (int)o->gate.w.rows;
    }
    return MT_OK;
}

#define A(ptr, bytes, what)                                                                       \
    do {                                                                                          \
        if ((st = eng_gpu_alloc(g, (bytes), (what), (void **)&(ptr))) != MT_OK) {                        \
            return st;                                                                            \
        }                                                                                         \
    } while (0)

/* Everything on the device: one pass counts (g->arena NULL), the next places and uploads. */
static mt_status_t
place_all(struct mt_engine *e, struct eng_gpu *g)
{
    const struct mt_model_config *c = &e->cfg;
    const struct mt_model *m = e->model;
    size_t f = sizeof(float);
    size_t D = (size_t)c->hidden_size, H = (size_t)c->num_attention_heads;
    size_t kvl = (size_t)c->kv_lora_rank, rope = (size_t)c->qk_rope_head_dim;
    size_t qk = (size_t)(c->qk_nope_head_dim + c->qk_rope_head_dim);
    size_t IH = (size_t)c->index_n_heads, ID = (size_t)c->index_head_dim;
    size_t E = (size_t)c->n_routed_experts, K = (size_t)c->num_experts_per_tok;
    size_t ctx = (size_t)g->ctx;
    bool exact = e->opts.indexer == MT_INDEXER_EXACT;
    bool sparse = e->opts.attention == MT_ATTN_SPARSE;
    mt_status_t st;

    g->cat = CAT_WEIGHTS;
    g->max_inter = 0;
    g->max_cols = 0;
    g->max_stack = 0;
    g->grouped_moe = true;
    if ((st = up_linear(e, g, m->head.w != NULL ? &m->head : &m->embed, false, &g->head)) !=
            MT_OK ||
        (st = up_f32(e, g, m->final_norm.w, &g->final_norm, NULL)) != MT_OK) {
        return st;
    }
    A(g->freqs, (rope / 2 + 1) * f, "rope frequencies");
    if (g->lat_fp8) {
        g->cat = CAT_CACHE;
        A(g->lat16, ctx * kvl * 2, "latent cache (BF16 rows of the FP8 one)");
        g->cat = CAT_WEIGHTS;
    }
    for (int l = 0; l < e->n_layers; l++) {
        const struct mt_layer_weights *lw = &m->layers[l];
        struct g_layer *L = &g->layers[l];
        /* q_a, the indexer's wk and kv_a read the same x: stacked in that order, the scale
           blocks of each start on a block (q_a's 1,536 and wk's 128 rows are whole blocks) */
        const struct mt_weight *xparts[3] = {&lw->q_a, &lw->idx_wk, &lw->kv_a};
        struct gw *xouts[3] = {&L->q_a, &L->idx_wk, &L->kv_a};
        /* q_b and the indexer's wq_b both read q_a's normed output: stacked in that order (q_b's
           24,576 rows are whole blocks), so a decode step past index_topk positions reads both
           in one GEMV (the indexer's 12.6 MB alone take the slower CUDA-core loop) */
        const struct mt_weight *qparts[2] = {&lw->q_b, &lw->idx_wq_b};
        struct gw *qouts[2] = {&L->q_b, &L->idx_wq_b};
        g->cat = CAT_WEIGHTS;
        L->is_moe = lw->is_moe;
        if ((st = up_f32(e, g, lw->input_norm.w, &L->input_norm, NULL)) != MT_OK ||
            (st = up_f32(e, g, lw->post_attn_norm.w, &L->post_attn_norm, NULL)) != MT_OK ||
            (st = up_stack(e, g, 3, xparts, xouts, &L->xproj, L->xproj_off)) != MT_OK ||
            (st = up_f32(e, g, lw->q_a_norm.w, &L->q_a_norm, NULL)) != MT_OK ||
            (st = up_stack(e, g, 2, qparts, qouts, &L->qproj, L->qproj_off)) != MT_OK ||
            (st = up_f32(e, g, lw->kv_a_norm.w, &L->kv_a_norm, NULL)) != MT_OK ||
            (st = up_linear(e, g, &lw->kv_b, true, &L->kvb)) != MT_OK ||
            (st = up_linear(e, g, &lw->o, false, &L->o)) != MT_OK ||
            (st = up_f32(e, g, lw->idx_k_norm.w, &L->idx_norm_w, NULL)) != MT_OK ||
            (st = up_f32(e, g, lw->idx_k_norm_bias.w, &L->idx_norm_b, NULL)) != MT_OK ||
            (st = up_linear(e, g, &lw->idx_weights_proj, false, &L->idx_wproj)) != MT_OK ||
            (e->opts.attention == MT_ATTN_SPARSE && g->arena != NULL &&
             (st = indexer_finite(e, lw)) != MT_OK)) {
            return st;
        }
        if (!lw->is_moe) {
            st = eng_gpu_up_mlp(e, g, &lw->mlp, true, &L->mlp);
        } else {
            if ((st = up_linear(e, g, &lw->router, false, &L->router)) != MT_OK ||
                (st = eng_gpu_up_mlp(e, g, &lw->shared, true, &L->shared)) != MT_OK) {
                return st;
            }
            L->router_bias = NULL;
            if (lw->router_bias.w != NULL) {
                st = up_f32(e, g, lw->router_bias.w, &L->router_bias, NULL);
            }
            if (st == MT_OK && lw->router_bias.w != NULL && g->arena != NULL) {
                st = router_bias_finite(e, lw->router_bias.w);
            }
            if (st == MT_OK) {
                st = eng_gpu_place_experts(e, g, l);
            }
        }
        if (st != MT_OK) {
            return st;
        }
        /* this layer's caches */
        g->cat = CAT_CACHE;
        if (g->lat_fp8) {
            A(L->lat8, ctx * (size_t)mt_gpu_latent_fp8_row_bytes((int)kvl), "latent cache");
            L->lat = g->lat16;
        } else {
            A(L->lat, ctx * kvl * mt_dtype_size(g->lat_dtype), "latent cache");
        }
        A(L->kpe, ctx * rope * mt_dtype_size(g->kpe_dtype), "rope key cache");
        L->ikey = NULL;
        L->ikey8 = NULL;
        L->ikscale = NULL;
        if (sparse && exact) {
            A(L->ikey, g->ikey_split ? mt_gpu_index_keys_split_bytes((int64_t)ctx) : ctx * ID * f,
              "index key cache");
        }
        if (sparse && !exact) {
            A(L->ikey8, ctx * ID, "fp8 index key cache");
            A(L->ikscale, ctx * f, "index key scales");
        }
    }
    /* work space for a chunk of T tokens (the grouped expert GEMV: TOK tokens' pairs) */
    g->cat = CAT_WORK;
    size_t inter = (size_t)(g->max_inter > 0 ? g->max_inter : 1);
    size_t T = (size_t)g->chunk, TK = MT_MAX(T, TOK * K);
    A(g->h, T * D * f, "work");
    A(g->x, T * D * f, "work");
    A(g->y, T * D * f, "work");
    A(g->qa, T * (size_t)c->q_lora_rank * f, "work");
    /* also one token's q_b + wq_b stacked outputs (eng_gpu_attention) */
    A(g->q, MT_MAX(T * H * qk, H * qk + IH * ID) * f, "work");
    A(g->kv, T * (kvl + rope) * f, "work");
    A(g->lat_t, T * kvl * f, "work");
    A(g->kpe_t, T * rope * f, "work");
    A(g->attn, T * H * (size_t)c->v_head_dim * f, "work");
    A(g->qi, T * IH * ID * f, "work");
    A(g->ki, T * ID * f, "work");
    A(g->wts, T * IH * f, "work");
    A(g->q_lat, T * H * kvl * f, "work");
    A(g->q_pe, T * H * rope * f, "work");
    A(g->o_lat, T * H * kvl * f, "work");
    /* a prompt chunk's index scores and top-k in batches of score_rows queries (at most ~32 MB
       of scores: the whole chunk at the default context) */
    g->score_rows = (int)MT_MIN((size_t)g->chunk, MT_MAX((size_t)1, ((size_t)32 << 20) / (ctx * f)));
    size_t topk = (size_t)MT_MAX(c->index_topk, 1);
    A(g->scores, (size_t)g->score_rows * ctx * f, "index scores");
    A(g->idx, MT_MAX(ctx, (size_t)g->score_rows * topk) * sizeof(int32_t), "top-k");
    A(g->topk_work, mt_gpu_topk_scratch_bytes(), "top-k");
    size_t mw = H * ctx * f;
    if (g->fast_mla) {
        size_t fw = mt_gpu_mla_work_bytes((int)H, (int)ctx);
        mw = fw > mw ? fw : mw;
    }
    A(g->mla_work, mw, "attention work");
    /* the FP8 indexer's quantized queries: a batch of prompt rows (score_rows) at once */
    size_t q8_rows = exact ? 1 : (size_t)g->score_rows;
    A(g->q8, q8_rows * IH * ID, "work");
    A(g->wq, q8_rows * IH * f, "work");
    A(g->logits, TOK * (size_t)c->vocab_size * f, "logits");
    A(g->argmax_work, mt_gpu_argmax_work_bytes(), "work");
    A(g->stk, (size_t)MT_MAX(g->max_stack, 1) * f, "work");
    A(g->gs, TK * inter * f, "work");
    A(g->us, TK * inter * f, "work");
    A(g->xs, T * D * f, "work");
    A(g->ys, T * K * D * f, "work");
    A(g->rlog, T * E * f, "work");
    A(g->rw, T * K * f, "work");
    A(g->ids, T * K * sizeof(int32_t), "work");
    /* device grouping: one slot per decode pair; a chunk's groups of up to TOK pairs */
    size_t GX = MT_MAX(MT_MAX(E, (size_t)TOK * K), GROUPS_MAX(E, T, K));
    A(g->group_start, (GX + 1) * sizeof(int32_t), "work");
    A(g->pair_tok, T * K * sizeof(int32_t), "work");
    A(g->pair_w, T * K * f, "work");
    A(g->tok_pairs, T * K * sizeof(int32_t), "work");
    A(g->xgroups, GX * sizeof(struct mt_gpu_expert), "work");
    /* a decode step's grouped experts, or a chunk's (their SwiGLU outputs; results into ys) */
    size_t xw = mt_gpu_moe_work_bytes((int)(TOK * K), (int)inter, (int)D);
    if (g->chunk > TOK && g->grouped_moe) { /* routed experts' width, not the dense MLP's */
        xw = MT_MAX(xw, T * K * (size_t)MT_MAX(c->moe_intermediate_size, 1) * f);
    }
    A(g->moe_work, xw + 1, "work");
    if ((st = eng_gpu_moe_alloc(e, g)) != MT_OK) {
        return st;
    }
    if (g->chunk > TOK) {
        /* the GEMM's work area: bf16 activations, a weight slab that holds kv_b in fp32 */
        int64_t kvb_elems = (int64_t)(H * (size_t)(c->qk_nope_head_dim + c->v_head_dim) * kvl);
        size_t gb = mt_gpu_gemm_work_bytes(g->gemm_math, g->chunk, g->max_cols, kvb_elems);
        void *gw = NULL;
        A(gw, gb, "GEMM work");
        if (g->gemm != NULL && (st = mt_gpu_gemm_set_work(g->gemm, gw, gb, g->chunk,
                                                          g->max_cols)) != MT_OK) {
            return st;
        }
    }
    return MT_OK;
}

#undef A

/*
 * cuBLAS loads a GEMM's kernels and picks them at its first call for a shape: about 0.2 s in all
 * on the first prefill. Pay it at start-up instead: every projection of the first layer of each
 * kind, one routed expert and both absorptions, at a full chunk and at 16 and 32 tokens (a
 * chunk's experts see a few dozen tokens each), on scratch buffers (the results are dropped).
 */
static mt_status_t
gemm_warmup(struct mt_engine *e, struct eng_gpu *g)
{
    const struct mt_model_config *c = &e->cfg;
    size_t cap = (size_t)g->chunk * (size_t)c->num_attention_heads * (size_t)c->kv_lora_rank;
    int ns[3] = {g->chunk, MT_MIN(16, g->chunk), MT_MIN(32, g->chunk)};
    bool seen_dense = false, seen_moe = false;

    for (int l = 0; l < e->n_layers; l++) {
        struct g_layer *L = &g->layers[l];
        if ((L->is_moe && seen_moe) || (!L->is_moe && seen_dense)) {
            continue;
        }
        seen_moe = seen_moe || L->is_moe;
        seen_dense = seen_dense || !L->is_moe;
        const struct gw *ws[16] = {&L->q_a, &L->q_b, &L->kv_a, &L->o, &L->idx_wq_b, &L->idx_wk,
                                   &L->idx_wproj};
        int nw = 7;
        const struct g_mlp *mlps[2] = {&L->mlp, NULL};
        if (L->is_moe) {
            ws[nw++] = &L->router;
            mlps[0] = &L->shared;
            mlps[1] = &L->experts[0];
        }
        for (int i = 0; i < 2 && mlps[i] != NULL; i++) {
            ws[nw++] = &mlps[i]->gate;
            ws[nw++] = &mlps[i]->up;
            ws[nw++] = &mlps[i]->down;
        }
        for (int i = 0; i < nw; i++) {
            for (int k = 0; k < 3; k++) {
                if (ns[k] > TOK && ws[i]->w.data != NULL &&
                    (size_t)ns[k] * (size_t)MT_MAX(ws[i]->w.rows, ws[i]->w.cols) <= cap) {
                    GPU_DO(l, "GEMM warm-up", eng_gpu_lin(ws[i], g->o_lat, ns[k], g->q_lat,
                                                          g->stream));
                }
            }
        }
        GPU_DO(l, "GEMM warm-up",
               mt_gpu_gemm_absorb_q(g->gemm, &L->kvb.w, g->q, g->chunk, c->num_attention_heads,
                                    c->qk_nope_head_dim, c->v_head_dim, c->qk_rope_head_dim,
                                    g->q_lat, g->q_pe, g->stream));
        GPU_DO(l, "GEMM warm-up",
               mt_gpu_gemm_absorb_v(g->gemm, &L->kvb.w, g->o_lat, g->chunk,
                                    c->num_attention_heads, c->qk_nope_head_dim, c->v_head_dim,
                                    g->attn, g->stream));
    }
    GPU_DO(-1, "GEMM warm-up", mt_gpu_stream_sync(g->stream));
    return MT_OK;
}

/*
 * The embedding table mapped for the device (registered host memory; V3.2's 1.85 GB are pinned
 * in ~0.2 s on the GPU test machine), so that a greedy step ahead reads its token's row itself.
 * Where that fails (or the table is F16, which the device embedding does not read), greedy
 * steps stay one at a time, with one note.
 */
static void
map_embed(struct eng_gpu *g)
{
    const struct mt_cpu_weight *t = &g->embed;
    size_t bytes = (size_t)t->rows * (size_t)t->cols * mt_dtype_size(t->dtype);
    mt_status_t st = MT_ERR_UNSUPPORTED;

    if (!g->ahead_on || !g->argmax_on) {
        return;
    }
    mt_log_set_quiet(true);
    if (t->dtype != MT_DTYPE_F16) {
        st = mt_gpu_host_register_mapped(g->embed_raw, bytes, &g->embed_dev);
    }
    mt_log_set_quiet(false);
    if (st != MT_OK) {
        g->embed_dev = NULL;
        mt_log_info("GPU engine: greedy steps run one at a time (the embedding table could not "
                    "be mapped for the GPU: %s)",
                    t->dtype == MT_DTYPE_F16 ? "F16" : mt_last_error());
    }
}

static char *
mib(size_t b, char *buf)
{
    snprintf(buf, 32, "%.1f MiB", (double)b / (1 << 20));
    return buf;
}

/*
 * Where some routed expert lives off the GPU: the longest chunk of HOST_CHUNK_MAX, half of it,
 * ... HOST_CHUNK tokens (each at most the context) whose work space fits cap beside everything
 * counted so far (*need, for GPU_CHUNK), as mt_plan_host_chunk predicts it; else the chunk stays
 * and the log says what HOST_CHUNK would take, and where a longer chunk did not fit, what it
 * would. Counts again either way (*need: the chunk's).
 */
static mt_status_t
host_chunk(struct mt_engine *e, struct eng_gpu *g, size_t cap, size_t *need)
{
    int host = 0, c0 = g->chunk, tried = 0, longest = 0;
    size_t need0 = *need, over = 0;
    char a[32];
    mt_status_t st;

    for (int l = 0; l < e->n_layers; l++) {
        host += g->layers[l].n_host;
    }
    for (int c = HOST_CHUNK_MAX; host > 0 && c >= HOST_CHUNK; c /= 2) {
        int t = (int)MT_MIN((int64_t)c, g->ctx);

        if (t <= c0 || t == tried) {
            continue;
        }
        tried = t;
        g->chunk = t;
        memset(g->need, 0, sizeof(g->need));
        if ((st = place_all(e, g)) != MT_OK) {
            return st;
        }
        *need = g->need[0] + g->need[1] + g->need[2] + ((size_t)1 << 20);
        if (*need <= cap) {
            if (longest > 0) {
                mt_log_info("GPU engine: prompt chunks of %d tokens (%d would need %s more than "
                            "the GPU budget leaves)", t, longest, mib(over, a));
            }
            return MT_OK;
        }
        if (longest == 0) {
            longest = t;
            over = *need - cap;
        }
    }
    if (tried == 0) {
        return MT_OK;
    }
    mt_log_info("GPU engine: prompt chunks of %d tokens: %d (faster with %d routed experts off "
                "the GPU) would need %s more than the GPU budget leaves (a plan made with that "
                "much more --gpu-reserve, or a larger --gpu-mem, gives them)", c0, tried, host,
                mib(*need - cap, a));
    g->chunk = c0;
    memset(g->need, 0, sizeof(g->need));
    if ((st = place_all(e, g)) != MT_OK) {
        return st;
    }
    *need = g->need[0] + g->need[1] + g->need[2] + ((size_t)1 << 20);
    MT_ASSERT(*need == need0);
    return MT_OK;
}

mt_status_t
eng_gpu_create(struct mt_engine *e)
{
    const struct mt_model_config *c = &e->cfg;
    struct eng_gpu *g;
    int n_dev = 0;
    size_t dev_free = 0, dev_total = 0;
    mt_status_t st;

    if (mt_gpu_device_count(&n_dev) != MT_OK || n_dev == 0) {
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "--device gpu: no CUDA device (%s); use --device "
                       "cpu", mt_gpu_device_none_reason());
    }
    if (e->opts.compare_indexer) {
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "--device gpu does not compare indexers yet; "
                       "run --compare-indexer on --device cpu");
    }
    if (e->opts.kv_dtype != MT_DTYPE_F32 && e->opts.kv_dtype != MT_DTYPE_BF16 &&
        e->opts.kv_dtype != MT_DTYPE_F8_E4M3) {
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "--device gpu keeps the latent cache in f32, "
                       "bf16 or fp8");
    }
    if (e->opts.kv_dtype == MT_DTYPE_F8_E4M3 && c->kv_lora_rank % 4 != 0) {
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "--kv-dtype fp8 on the GPU needs kv_lora_rank a "
                       "multiple of 4 (this model's is %d)", c->kv_lora_rank);
    }
    if (c->index_head_dim > MT_GPU_HADAMARD_MAX && e->opts.indexer == MT_INDEXER_FP8) {
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "--device gpu: FP8 indexer with index_head_dim "
                       "%d > %d", c->index_head_dim, MT_GPU_HADAMARD_MAX);
    }
    g = calloc(1, sizeof(*g));
    if (g == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the GPU engine");
    }
    e->gpu = g;
    g->layers = calloc((size_t)e->n_layers, sizeof(*g->layers));
    if (g->layers == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the GPU engine's layers");
    }
    g->debug_sync = e->opts.debug_sync;
    if (!g->debug_sync) {
        const char *ev = getenv("MT_DEBUG_SYNC");
        g->debug_sync = ev != NULL && strcmp(ev, "0") != 0;
    }
    if (g->debug_sync) {
        mt_gpu_debug_sync_set(true); /* the kernels' own launch checks sync too */
    }
    g->ctx = e->opts.ctx > 0 ? e->opts.ctx : MT_MIN(c->max_position_embeddings, 8192);
    g->ctx = MT_MIN(g->ctx, (int64_t)c->max_position_embeddings);
    g->lat_fp8 = e->opts.kv_dtype == MT_DTYPE_F8_E4M3;
    g->lat_dtype = g->lat_fp8 ? MT_DTYPE_BF16 : e->opts.kv_dtype;
    g->fast_mla = c->kv_lora_rank == 512 && c->qk_rope_head_dim == 64 &&
                  c->num_attention_heads % 16 == 0;
    g->kpe_dtype = g->fast_mla ? g->lat_dtype : MT_DTYPE_F32;
    g->ikey_split = e->opts.attention == MT_ATTN_SPARSE && e->opts.indexer == MT_INDEXER_EXACT &&
                    mt_gpu_index_keys_split(c->index_n_heads, c->index_head_dim);
    /*
     * The chunk: 512 tokens keep the GEMM's FLOPs above the cost of dequantizing each FP8 weight
     * once per chunk (gemm.cu); the work space grows with it (about 0.8 MB a token at V3.2's
     * shapes). The GEMM's arithmetic: BF16X3 (x and W split into bf16 hi + lo on tensor cores,
     * ~2^-16 relative a product) by default, fp32 on CUDA cores with an fp32 latent cache (the
     * accuracy mode). Plain BF16 is fastest but moves the tiny test models' logits by up to 0.85
     * relative and changes their greedy tokens (bench/results/gpu-engine-h200.md); FP8
     * (DeepSeek's own arithmetic: activations in e4m3 per 128 columns, FP8 weights where they
     * lie, on Hopper; gemm_fp8.cu) is faster still and an option for the same reason;
     * MT_GPU_GEMM=bf16|bf16x3|f32|fp8 picks one.
     *
     * With experts off the GPU a prompt's chunk reads each of them once for all its tokens (the
     * CPU team, the stream and the slots get groups of many tokens), so there the chunk grows to
     * the longest of 4,096, 2,048 or 1,024 that fits once the placement is known (host_chunk).
     * Steps of 8 tokens (before session 26) read every expert a step touched again each step.
     * With the CPU team's exact kernels the chunk gives HF's logits as the steps do; on a CPU
     * with AMX the team's prefill kernel (groups of 16 tokens and more) rounds activations to
     * bf16 as the CPU engine's prefill does (test_gpu_hetero states both).
     */
    const char *chunk_env = getenv("MT_GPU_CHUNK");
    const char *ev;
    g->chunk = chunk_env != NULL ? atoi(chunk_env) : GPU_CHUNK;
    g->chunk = (int)MT_MIN((int64_t)MT_MAX(g->chunk, TOK), g->ctx);
    g->chunk = MT_MAX(g->chunk, 1);
    ev = getenv("MT_GPU_GEMV_LOOP");
    gemv_loop_max = ev != NULL ? atoi(ev) : GEMV_LOOP_DEFAULT;
    g->gemm_math = g->lat_dtype == MT_DTYPE_F32 ? MT_GPU_GEMM_F32 : MT_GPU_GEMM_BF16X3;
    ev = getenv("MT_GPU_GEMM");
    if (ev != NULL && strcmp(ev, "bf16") != 0 && strcmp(ev, "bf16x3") != 0 &&
        strcmp(ev, "f32") != 0 && strcmp(ev, "fp8") != 0) {
        mt_log_warn("MT_GPU_GEMM=%s is none of bf16, bf16x3, f32, fp8: the GEMM keeps %s", ev,
                    mt_gpu_gemm_math_name(g->gemm_math));
    } else if (ev != NULL) {
        g->gemm_math = strcmp(ev, "bf16") == 0     ? MT_GPU_GEMM_BF16
                       : strcmp(ev, "bf16x3") == 0 ? MT_GPU_GEMM_BF16X3
                       : strcmp(ev, "fp8") == 0    ? MT_GPU_GEMM_FP8
                                                   : MT_GPU_GEMM_F32;
    }

    /* the counting pass, then one arena of exactly that size under the budget */
    if ((st = place_all(e, g)) != MT_OK) {
        return st;
    }
    size_t need = g->need[0] + g->need[1] + g->need[2] + ((size_t)1 << 20);
    size_t budget = e->opts.gpu_mem;
    if ((st = mt_gpu_mem_free(0, &dev_free, &dev_total)) != MT_OK) {
        return st;
    }
    if (budget == 0) {
        size_t margin = MT_MAX((size_t)512 << 20, dev_free / 20);
        budget = dev_free > margin ? dev_free - margin : 0;
    }
    /* what stays outside the arena even under an explicit --gpu-mem: cuBLAS, graphs */
    size_t usable = dev_free > GPU_OUTSIDE_ARENA ? dev_free - GPU_OUTSIDE_ARENA : 0;
    g->dev_free0 = dev_free;
    /* GPU experts that do not fit move to DRAM, counted again until the rest fits */
    size_t cap = MT_MIN(budget, usable), need0 = need;
    int moved = 0, m1 = 0;
    while (need > cap && eng_gpu_fit_experts(e, g, need - cap, &m1) == MT_OK && m1 > 0) {
        moved += m1;
        memset(g->need, 0, sizeof(g->need));
        if ((st = place_all(e, g)) != MT_OK) {
            return st;
        }
        need = g->need[0] + g->need[1] + g->need[2] + ((size_t)1 << 20);
    }
    if (moved > 0 && need <= cap) {
        mt_log_warn("GPU engine: %d routed experts (%.2f GiB) do not fit the GPU budget and run "
                    "from DRAM on the CPU instead (the plan was made for more GPU memory; "
                    "replan with this --gpu-mem to place them well)", moved,
                    (double)(need0 - need) / (1 << 30));
    }
    if (chunk_env == NULL && need <= cap && (st = host_chunk(e, g, cap, &need)) != MT_OK) {
        return st;
    }
    if (need > budget || need > usable) {
        char a[32], b[32], d[32], w[32], x[32], y[32], z[32];
        return mt_fail(MT_ERR_NOMEM, 0, "the model needs %s on the GPU (weights %s, KV cache %s "
                       "for %lld positions, work %s) but %s allows %s (the device has %s free, "
                       "%s of which stays for cuBLAS and CUDA graphs): raise --gpu-mem, free the "
                       "GPU, shorten the context (--ctx), or run it on --device cpu",
                       mib(need, a), mib(g->need[0], b), mib(g->need[1], d), (long long)g->ctx,
                       mib(g->need[2], w),
                       e->opts.gpu_mem ? "--gpu-mem" : "the default budget (free minus a margin)",
                       mib(budget, x), mib(dev_free, y), mib(GPU_OUTSIDE_ARENA, z));
    }
    if ((st = mt_gpu_arena_create(0, need, budget, &g->arena)) != MT_OK ||
        (st = mt_gpu_stream_create(&g->stream)) != MT_OK ||
        (g->chunk > TOK && (st = mt_gpu_gemm_create(g->gemm_math, &g->gemm)) != MT_OK) ||
        (st = place_all(e, g)) != MT_OK) {
        return st;
    }
    if ((st = eng_gpu_moe_init(e, g)) != MT_OK) {
        return st;
    }
    ev = getenv("MT_GPU_GRAPH");
    g->graph_on = ev == NULL || strcmp(ev, "0") != 0;
    ev = getenv("MT_GPU_LOGITS_DIRECT");
    g->logits_direct = ev == NULL || strcmp(ev, "0") != 0;
    ev = getenv("MT_GPU_ARGMAX");
    g->argmax_on = ev == NULL || strcmp(ev, "0") != 0;
    ev = getenv("MT_GPU_AHEAD");
    g->ahead_on = ev == NULL || strcmp(ev, "0") != 0;
    ev = getenv("MT_GPU_BATCH_INDEX");
    g->batch_index = ev == NULL || strcmp(ev, "0") != 0;
    ev = getenv("MT_GPU_CHUNK_MOE");
    g->chunk_moe = ev == NULL || strcmp(ev, "0") != 0;
    ev = getenv("MT_GPU_PROMPT_MLA");
    bool mla_tc = false;
    g->prompt_mla = (ev == NULL || strcmp(ev, "0") != 0) && g->fast_mla &&
                    g->lat_dtype == MT_DTYPE_BF16 && mt_gpu_mla_tensor_cores(&mla_tc) == MT_OK &&
                    mla_tc;
    ev = getenv("MT_GPU_FUSE");
    g->fuse = ev == NULL || strcmp(ev, "0") != 0;
    ev = getenv("MT_GPU_STACK_Q");
    g->stack_q = ev == NULL || strcmp(ev, "0") != 0;
    if ((st = mt_gpu_pinned_alloc((size_t)TOK * (size_t)c->hidden_size * sizeof(float),
                                  "a decode step's embeddings", (void **)&g->h_emb1)) != MT_OK ||
        (st = mt_gpu_pinned_alloc((size_t)TOK * (size_t)c->vocab_size * sizeof(float),
                                  "a decode step's logits", (void **)&g->h_logits)) != MT_OK ||
        (st = mt_gpu_pinned_alloc(2 * sizeof(*g->h_argmax), "a decode step's argmax",
                                  (void **)&g->h_argmax)) != MT_OK ||
        (st = mt_gpu_argmax_work_init(g->argmax_work, g->stream)) != MT_OK ||
        (st = mt_gpu_event_create(&g->ev_g0[0])) != MT_OK ||
        (st = mt_gpu_event_create(&g->ev_g1[0])) != MT_OK ||
        (st = mt_gpu_event_create(&g->ev_g0[1])) != MT_OK ||
        (st = mt_gpu_event_create(&g->ev_g1[1])) != MT_OK) {
        return st;
    }
    if (g->gemm != NULL && (st = gemm_warmup(e, g)) != MT_OK) {
        return st;
    }
    if ((st = mt_gpu_copy_to_device(g->freqs, e->freqs,
                                    (size_t)(c->qk_rope_head_dim / 2) * sizeof(float))) != MT_OK) {
        return st;
    }
    /* the embedding table stays on the host */
    const struct mt_st_tensor *et = e->model->embed.w;
    if (et == NULL || et->ndim != 2 || (et->dtype != MT_DTYPE_BF16 && et->dtype != MT_DTYPE_F32 &&
                                        et->dtype != MT_DTYPE_F16)) {
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "GPU engine: the embedding must be BF16, F16 or "
                       "F32");
    }
    if ((st = read_host(e, et, &g->embed_raw)) != MT_OK) {
        return st;
    }
    g->embed = (struct mt_cpu_weight){.dtype = et->dtype, .data = g->embed_raw,
                                      .rows = et->shape[0], .cols = et->shape[1]};
    if (g->graph_on && g->all_dev_moe && !g->debug_sync) {
        map_embed(g); /* for greedy steps ahead: pinned here, not in the first decode step */
    }
    size_t K = (size_t)c->num_experts_per_tok, E = (size_t)c->n_routed_experts;
    size_t T = (size_t)g->chunk;
    for (int k = 0; k < 2; k++) {
        if ((st = mt_gpu_pinned_alloc(T * (size_t)c->hidden_size * sizeof(float),
                                      "a prompt chunk's embeddings", (void **)&g->h_emb[k])) !=
                MT_OK ||
            (st = mt_gpu_event_create(&g->ev_emb[k])) != MT_OK) {
            return st;
        }
    }
    g->h_rw = malloc(T * K * sizeof(float));
    g->h_pair_w = malloc(T * K * sizeof(float));
    g->h_ids = malloc(T * K * sizeof(int32_t));
    g->h_pair_tok = malloc(T * K * sizeof(int32_t));
    g->h_tok_pairs = malloc(T * K * sizeof(int32_t));
    size_t GX = GROUPS_MAX(E, T, K);
    g->h_group_start = malloc((GX + 1) * sizeof(int32_t));
    g->h_count = malloc((GX + 1) * sizeof(int32_t));
    g->h_idx = malloc((size_t)g->ctx * sizeof(int32_t));
    g->h_xgroups = malloc(GX * sizeof(struct mt_gpu_expert) + 1);
    if (g->h_rw == NULL || g->h_pair_w == NULL || g->h_ids == NULL || g->h_pair_tok == NULL ||
        g->h_tok_pairs == NULL || g->h_group_start == NULL || g->h_count == NULL ||
        g->h_idx == NULL || g->h_xgroups == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the GPU engine's host buffers");
    }
    mt_log_info(
        "GPU engine: %.1f MiB on the device (weights %.1f, KV cache %.1f for %lld "
        "positions, %s latents%s), %s MLA, %s experts%s, %d-token chunks%s%s",
        (double)need / (1 << 20), (double)g->need[0] / (1 << 20), (double)g->need[1] / (1 << 20),
        (long long)g->ctx,
        g->lat_fp8 ? "FP8 (DeepSeek's layout, widened to BF16 where read)"
                   : mt_dtype_name(g->lat_dtype),
        g->ikey_split ? ", exact index keys split for the tensor cores" : "",
        g->fast_mla ? "V3.2-shape" : "generic", g->grouped_moe ? "grouped FP8" : "per-expert",
        g->all_dev_moe && g->graph_on && !g->debug_sync ? " (decode steps as CUDA graphs)" : "",
        g->chunk, g->gemm != NULL ? ", GEMM in " : "",
        g->gemm != NULL ? mt_gpu_gemm_math_name(mt_gpu_gemm_math(g->gemm)) : "");
    return MT_OK;
}

/* With MT_GPU_MEM_REPORT=1: the device memory this engine took beyond its arena (cuBLAS's
 * handle and workspace, graph executables, the runtime's own), against GPU_OUTSIDE_ARENA. */
static void
outside_arena_note(const struct eng_gpu *g)
{
    size_t dev_free = 0, dev_total = 0;
    const char *ev = getenv("MT_GPU_MEM_REPORT");

    if (ev == NULL || strcmp(ev, "1") != 0 || g->arena == NULL ||
        mt_gpu_mem_free(0, &dev_free, &dev_total) != MT_OK) {
        return;
    }
    size_t arena = g->need[0] + g->need[1] + g->need[2] + ((size_t)1 << 20);
    long long outside = (long long)g->dev_free0 - (long long)dev_free - (long long)arena;
    mt_log_info("GPU engine: %.1f MiB of device memory outside the arena (%.1f MiB kept for it)",
                (double)outside / (1 << 20), (double)GPU_OUTSIDE_ARENA / (1 << 20));
}

bool
eng_gpu_device_argmax(const struct eng_gpu *g)
{
    return g->argmax_on;
}

uint64_t
eng_gpu_device_bytes(const struct eng_gpu *g)
{
    return g->need[0] + g->need[1] + g->need[2];
}

uint64_t
eng_gpu_work_bytes(const struct eng_gpu *g, int *chunk)
{
    *chunk = g->chunk;
    return g->need[CAT_WORK];
}

int64_t
eng_gpu_ctx(const struct eng_gpu *g)
{
    return g->ctx;
}

void
eng_gpu_destroy(struct eng_gpu *g, int n_layers)
{
    if (g == NULL) {
        return;
    }
    (void)eng_gpu_settle(g);
    for (int l = 0; g->layers != NULL && l < n_layers; l++) {
        free(g->layers[l].experts);
        free(g->layers[l].xtab);
    }
    if (g->n_graph_steps > 0) {
        mt_log_info("GPU engine: %llu decode steps ran as CUDA graphs (%llu graphs built, the "
                    "other recordings updated one in place)",
                    (unsigned long long)g->n_graph_steps, (unsigned long long)g->n_graph_builds);
    }
    outside_arena_note(g);
    eng_gpu_moe_fini(g);
    mt_gpu_graph_destroy(g->gexec[0]);
    mt_gpu_graph_destroy(g->gexec[1]);
    mt_gpu_pinned_free(g->h_emb1);
    mt_gpu_pinned_free(g->h_logits);
    mt_gpu_pinned_free(g->h_argmax);
    for (int k = 0; k < 2; k++) {
        mt_gpu_event_destroy(g->ev_g0[k]);
        mt_gpu_event_destroy(g->ev_g1[k]);
        mt_gpu_pinned_free(g->h_emb[k]);
        mt_gpu_event_destroy(g->ev_emb[k]);
    }
    if (g->embed_dev != NULL) {
        mt_log_set_quiet(true); /* fails after a device fault, which was named already */
        mt_gpu_host_unregister(g->embed_raw);
        mt_log_set_quiet(false);
    }
    free(g->layers);
    mt_gpu_gemm_destroy(g->gemm);
    mt_gpu_stream_destroy(g->stream);
    mt_gpu_arena_destroy(g->arena);
    free(g->embed_raw);
    free(g->h_rw);
    free(g->h_pair_w);
    free(g->h_ids);
    free(g->h_pair_tok);
    free(g->h_tok_pairs);
    free(g->h_group_start);
    free(g->h_count);
    free(g->h_idx);
    free(g->h_xgroups);
    free(g);
}

/* ---- the forward pass -------------------------------------------------------------------- */


mt_status_t
eng_gpu_lin(const struct gw *w, const float *x, int n, float *y, struct CUstream_st *s)
{
    if (n > TOK && n <= gemv_loop_max && w->w.dtype == MT_DTYPE_F8_E4M3) {
        for (int t = 0; t < n; t += TOK) {
            mt_status_t st = mt_gpu_linear(&w->w, x + (size_t)t * w->w.cols, MT_MIN(TOK, n - t),
                                           y + (size_t)t * w->w.rows, s);
            if (st != MT_OK) {
                return st;
            }
        }
        return MT_OK;
    }
    if (n > TOK) {
        return mt_gpu_gemm_linear(w->gemm, &w->w, x, n, y, s);
    }
    if (w->w.dtype == MT_DTYPE_F32) {
        return mt_gpu_linear_f32(w->w.data, w->w.rows, w->w.cols, x, n, y, s);
    }
    return mt_gpu_linear(&w->w, x, n, y, s);
}

/*
 * The layers on g->h [m, hidden] for m tokens at pos (launches only: nothing waits unless a
 * layer's experts live on the host). With g->fuse each residual add runs in one kernel with the
 * norm after it (the next layer's input norm, the post-attention norm).
 */
static mt_status_t
layers_launch(struct mt_engine *e, struct eng_gpu *g, int m, int64_t pos)
{
    const struct mt_model_config *c = &e->cfg;
    struct CUstream_st *s = g->stream;
    int D = c->hidden_size;
    float eps = (float)c->rms_norm_eps;
    mt_status_t st;

    for (int l = 0; l < e->n_layers; l++) {
        struct g_layer *L = &g->layers[l];
        if (l == 0 || !g->fuse) {
            GPU_DO(l, "input norm", mt_gpu_rmsnorm(g->h, L->input_norm, m, D, eps, g->x, s));
        }
        if ((st = eng_gpu_attention(e, g, l, m, pos)) != MT_OK) {
            return st;
        }
        if (g->fuse) {
            GPU_DO(l, "attention residual + post-attention norm",
                   mt_gpu_add_rmsnorm(g->h, g->y, L->post_attn_norm, m, D, eps, g->x, s));
        } else {
            GPU_DO(l, "attention residual", mt_gpu_add(g->h, g->y, (size_t)m * D, s));
            GPU_DO(l, "post-attention norm",
                   mt_gpu_rmsnorm(g->h, L->post_attn_norm, m, D, eps, g->x, s));
        }
        st = L->is_moe ? eng_gpu_moe(e, g, l, m) : eng_gpu_mlp(g, l, &L->mlp, g->x, m, g->y);
        if (st != MT_OK) {
            return st;
        }
        if (g->fuse && l + 1 < e->n_layers) {
            GPU_DO(l, "FFN residual + the next layer's input norm",
                   mt_gpu_add_rmsnorm(g->h, g->y, g->layers[l + 1].input_norm, m, D, eps, g->x,
                                      s));
        } else {
            GPU_DO(l, "FFN residual", mt_gpu_add(g->h, g->y, (size_t)m * D, s));
        }
    }
    return MT_OK;
}

/* ---- decode steps as CUDA graphs --------------------------------------------------------- */

/*
 * A forward of n tokens is one recorded step when nothing in it needs the host: n fits one GEMV
 * batch and one chunk, every MoE layer routes on the device, no hook reads the top-k, and
 * --debug-sync (which synchronizes after every kernel) is off.
 */
static bool
graph_ok(const struct mt_engine *e, const struct eng_gpu *g, int n)
{
    return g->graph_on && g->all_dev_moe && !g->debug_sync && e->hook == NULL && n >= 1 &&
           n <= TOK && n <= g->chunk;
}

/* The slot holding the recorded step (pos, m, first, greedy, fed), or -1. */
static int
graph_find(const struct eng_gpu *g, int64_t pos, int m, int first, bool greedy, bool fed)
{
    for (int k = 0; k < 2; k++) {
        if (g->gm[k] == m && g->gpos[k] == pos && g->gfirst[k] == first &&
            g->ggreedy[k] == greedy && g->gfed[k] == fed) {
            return k;
        }
    }
    return -1;
}

/*
 * Record into slot k the step of m tokens at pos whose logits rows first..m-1 are wanted: the
 * embeddings' upload from h_emb1, the layers, the final norm and lm_head into h_logits (the
 * copy to the caller's buffer stays outside: its address changes), or with greedy (first m - 1)
 * lm_head into g->logits and the argmax into h_argmax[k]. fed (greedy, one token): the
 * embedding is read on the device, at the id in h_argmax[k ^ 1] (the step before, in the other
 * slot), from the mapped table, instead of from h_emb1. The caller fills h_emb1 before it
 * launches a slot that is not fed. A recording that fails turns graphs off for this engine (one
 * warning); the step then runs as plain launches.
 */
static mt_status_t
graph_record(struct mt_engine *e, struct eng_gpu *g, int k, int m, int64_t pos, int first,
             bool greedy, bool fed)
{
    const struct mt_model_config *c = &e->cfg;
    struct CUstream_st *s = g->stream;
    int D = c->hidden_size;
    float eps = (float)c->rms_norm_eps;
    bool rebuilt = false;
    mt_status_t st, st_end;

    g->gm[k] = 0;
    if ((st = mt_gpu_graph_begin(s)) != MT_OK) {
        goto off;
    }
    g->capturing = true;
    g->bs = k;
    if (fed) {
        st = mt_gpu_embed(g->embed_dev, g->embed.dtype, g->embed.rows, D, &g->h_argmax[k ^ 1].id,
                          1, g->h, s);
    } else {
        st = mt_gpu_copy_async(g->h, g->h_emb1, (size_t)m * D * sizeof(float), 1, s);
    }
    if (st == MT_OK) {
        st = layers_launch(e, g, m, pos);
    }
    if (st == MT_OK) {
        st = mt_gpu_rmsnorm(g->h + (size_t)first * D, g->final_norm, m - first, D, eps, g->x, s);
    }
    bool direct = g->logits_direct && !greedy;
    if (st == MT_OK) {
        st = eng_gpu_lin(&g->head, g->x, m - first, direct ? g->h_logits : g->logits, s);
    }
    if (st == MT_OK && greedy) {
        st = mt_gpu_argmax(g->logits, c->vocab_size, g->argmax_work, &g->h_argmax[k], s);
    }
    if (st == MT_OK && !direct && !greedy) { /* to pinned memory at the GPU's pace, not through
                                             * the driver's staging */
        st = mt_gpu_copy_async(g->h_logits, g->logits,
                               (size_t)(m - first) * (size_t)c->vocab_size * sizeof(float), 0, s);
    }
    g->capturing = false;
    g->bs = 0;
    st_end = mt_gpu_graph_end(s, st == MT_OK, &g->gexec[k], &rebuilt);
    st = st != MT_OK ? st : st_end;
    if (st != MT_OK) {
        goto off;
    }
    g->n_graph_builds += rebuilt;
    g->gm[k] = m;
    g->gpos[k] = pos;
    g->gfirst[k] = first;
    g->ggreedy[k] = greedy;
    g->gfed[k] = fed;
    return MT_OK;
off:
    g->capturing = false;
    g->bs = 0;
    g->graph_on = false;
    g->gm[0] = g->gm[1] = 0;
    mt_log_warn("GPU engine: decode steps cannot be recorded as CUDA graphs (%s); they run as "
                "separate launches from now on", mt_last_error());
    return st;
}

static mt_status_t
logit_not_finite(double v, size_t i)
{
    return mt_fail(MT_ERR_FORMAT, 0, "GPU engine: a logit is not finite (%g at %zu): a corrupt "
                   "weight or an overflow; run --device cpu to find the layer", v, i);
}

static mt_status_t
check_logits(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            return logit_not_finite((double)v[i], i);
        }
    }
    return MT_OK;
}

/* The argmax kernel's answer in buffer set `set` (the stream has passed it) into *next_out. */
static mt_status_t
greedy_result(const struct eng_gpu *g, int set, int32_t *next_out)
{
    const struct mt_gpu_argmax_out *r = &g->h_argmax[set];

    if (r->bad >= 0) {
        return logit_not_finite((double)r->bad_value, (size_t)r->bad);
    }
    *next_out = r->id;
    return MT_OK;
}

/* Whether a greedy step may launch the next one behind it, fed on the device (map_embed
 * mapped the table only where steps ahead are on). */
static bool
ahead_ok(struct mt_engine *e, struct eng_gpu *g, int64_t next_pos)
{
    return g->embed_dev != NULL && graph_ok(e, g, 1) && next_pos < g->ctx;
}

/* Launch slot k's recorded step of n tokens, between its buffer set's events. */
static mt_status_t
launch_slot(struct mt_engine *e, struct eng_gpu *g, int k, int n)
{
    struct CUstream_st *s = g->stream;

    GPU_DO(-1, "decode step (CUDA graph)", mt_gpu_event_record(g->ev_g0[k], s));
    GPU_DO(-1, "decode step (CUDA graph)", mt_gpu_graph_launch(g->gexec[k], s));
    GPU_DO(-1, "decode step (CUDA graph)", mt_gpu_event_record(g->ev_g1[k], s));
    for (int l = 0; l < e->n_layers; l++) {
        g->ids_m[k * e->n_layers + l] = g->layers[l].is_moe ? n : 0;
    }
    g->glast = k;
    return MT_OK;
}

mt_status_t
eng_gpu_settle(struct eng_gpu *g)
{
    if (g == NULL || !g->ahead) {
        return MT_OK;
    }
    g->ahead = false; /* its cache entries lie past the position: the next step there rewrites */
    memset(g->ids_m + (size_t)g->ahead_slot * (size_t)g->n_ev_layers, 0,
           (size_t)g->n_ev_layers * sizeof(int));
    mt_log_set_quiet(true); /* one message for a failure: eng_gpu_fail's */
    mt_status_t st = mt_gpu_stream_sync(g->stream);
    mt_log_set_quiet(false);
    return st == MT_OK ? MT_OK : eng_gpu_fail(st, -1, "decode step ahead (CUDA graph)");
}

/*
 * A forward of n tokens (graph_ok) as one recorded step: found among the two slots (recorded
 * while the previous step ran) or recorded now, then launched. While it runs the next one-token
 * step is prepared in the other slot: a greedy step whose next one can be fed on the device
 * (ahead_ok) records that one and launches it behind itself, so the GPU goes from step to step
 * without waiting for the host, and the next call (fed the id this one returns, at the next
 * position) finds it launched and only waits; otherwise the next step is recorded for the next
 * call to launch. MT_ERR_UNSUPPORTED (no message) when the step could not be recorded: the
 * caller runs it as plain launches.
 */
static mt_status_t
forward_graph(struct mt_engine *e, const int32_t *tokens, int n, bool all_logits,
              float *logits_out, int32_t *next_out)
{
    const struct mt_model_config *c = &e->cfg;
    struct eng_gpu *g = e->gpu;
    size_t V = (size_t)c->vocab_size;
    int64_t pos = e->pos;
    int first = all_logits ? 0 : n - 1;
    bool greedy = next_out != NULL;
    bool fed = g->ahead; /* eng_gpu_forward settled any step ahead that is not this one */
    int k = fed ? g->ahead_slot : graph_find(g, pos, n, first, greedy, false);
    mt_status_t st;

    g->ahead = false;
    if (!fed) {
        if (k < 0) {
            k = g->glast ^ 1;
            if (graph_record(e, g, k, n, pos, first, greedy, false) != MT_OK) {
                return MT_ERR_UNSUPPORTED;
            }
        }
        if ((st = eng_embed(&g->embed, tokens, n, g->h_emb1)) != MT_OK ||
            (st = launch_slot(e, g, k, n)) != MT_OK) {
            return st;
        }
    }
    /* the next token's step in the other slot, while this one runs */
    int64_t next = pos + n;
    if (greedy && ahead_ok(e, g, next)) {
        /* (a recording that fails turns graphs off: this step still ends below) */
        if (graph_find(g, next, 1, 0, true, true) == (k ^ 1) ||
            graph_record(e, g, k ^ 1, 1, next, 0, true, true) == MT_OK) {
            if ((st = launch_slot(e, g, k ^ 1, 1)) != MT_OK) {
                return st;
            }
            g->ahead = true;
            g->ahead_pos = next;
            g->ahead_slot = k ^ 1;
        }
    } else if (next < g->ctx && graph_find(g, next, 1, 0, greedy, false) < 0) {
        (void)graph_record(e, g, k ^ 1, 1, next, 0, greedy, false);
    }
    GPU_DO(-1, "decode step (CUDA graph)", mt_gpu_event_sync(g->ev_g1[k]));
    g->n_graph_steps++;
    e->stats.graph_steps++;
    if ((st = eng_gpu_moe_flush(e, g, k)) != MT_OK) {
        (void)eng_gpu_settle(g);
        return st;
    }
    float ms = 0.0f;
    if (mt_gpu_event_ms(g->ev_g0[k], g->ev_g1[k], &ms) == MT_OK) {
        e->stats.graph_gpu_s += ms * 1e-3;
    }
    if (greedy) {
        if ((st = greedy_result(g, k, next_out)) != MT_OK) {
            (void)eng_gpu_settle(g);
            /* a fed step's token came from the device: a corrupt embedding row shows up as
               non-finite logits; name the row, as a step embedded on the host does */
            if (fed && eng_embed(&g->embed, tokens, 1, g->h_emb1) != MT_OK) {
                st = MT_ERR_FORMAT;
            }
            return st;
        }
        g->ahead_tok = *next_out;
        e->pos = pos + n;
        return MT_OK;
    }
    size_t nl = (size_t)(n - first) * V;
    memcpy(logits_out, g->h_logits, nl * sizeof(float));
    if (eng_any_not_finite(logits_out, nl) && (st = check_logits(logits_out, nl)) != MT_OK) {
        return st;
    }
    e->pos = pos + n;
    return MT_OK;
}

mt_status_t
eng_gpu_forward(struct mt_engine *e, const int32_t *tokens, int n, bool all_logits,
                float *logits_out, int32_t *next_out)
{
    const struct mt_model_config *c = &e->cfg;
    struct eng_gpu *g = e->gpu;
    struct CUstream_st *s = g->stream;
    int D = c->hidden_size;
    size_t V = (size_t)c->vocab_size;
    float eps = (float)c->rms_norm_eps;
    int64_t start = e->pos;
    mt_status_t st;

    if (start + n > g->ctx) {
        return mt_fail(MT_ERR_INVAL, 0, "sequence of %lld tokens is longer than the GPU cache's "
                       "%lld positions (--ctx)", (long long)(start + n), (long long)g->ctx);
    }
    /* a step launched ahead is this call's only if it is the greedy step it was fed for */
    if (g->ahead && !(next_out != NULL && n == 1 && start == g->ahead_pos &&
                      tokens[0] == g->ahead_tok && graph_ok(e, g, 1)) &&
        (st = eng_gpu_settle(g)) != MT_OK) {
        return st;
    }
    if (graph_ok(e, g, n)) {
        st = forward_graph(e, tokens, n, all_logits, logits_out, next_out);
        if (st != MT_ERR_UNSUPPORTED) {
            return st;
        }
    }
    /*
     * Chunk by chunk, the host embeds chunk c + 1 into the other pinned buffer while the GPU
     * runs chunk c: an upload from pinned memory returns at once. (From one pageable buffer the
     * upload waited for the stream and staged the bytes through the driver while the GPU idled:
     * prompts of 4K-16K tokens took 1.12-1.16x as long on the H200 machine,
     * bench/results/gpu-engine-h200.md, session 32.)
     */
    int b = 0; /* the buffer holding this chunk's embeddings */
    if ((st = eng_embed(&g->embed, tokens, MT_MIN(g->chunk, n), g->h_emb[0])) != MT_OK) {
        return st;
    }
    for (int c0 = 0; c0 < n; c0 += g->chunk) {
        int m = MT_MIN(g->chunk, n - c0);
        int64_t pos = start + c0;
        GPU_DO(-1, "embedding upload",
               mt_gpu_copy_async(g->h, g->h_emb[b], (size_t)m * D * sizeof(float), 1, s));
        GPU_DO(-1, "embedding upload", mt_gpu_event_record(g->ev_emb[b], s));
        if ((st = layers_launch(e, g, m, pos)) != MT_OK) {
            return st;
        }
        b ^= 1;
        if (c0 + m < n) { /* the other buffer's upload (chunk c - 1's) is long past */
            GPU_DO(-1, "embedding upload", mt_gpu_event_sync(g->ev_emb[b]));
            if ((st = eng_embed(&g->embed, tokens + c0 + m, MT_MIN(g->chunk, n - c0 - m),
                                g->h_emb[b])) != MT_OK) {
                return st;
            }
        }
        bool last = c0 + m == n;
        if (!all_logits && !last) {
            /* device-routed layers' choices wait in h_ids_all: read before the next chunk's */
            bool pending = false;
            for (int l = 0; l < e->n_layers && !pending; l++) {
                pending = g->ids_m[l] > 0;
            }
            if (pending) {
                GPU_DO(-1, "MoE statistics", mt_gpu_stream_sync(s));
                if ((st = eng_gpu_moe_flush(e, g, 0)) != MT_OK) {
                    return st;
                }
            }
            continue;
        }
        /* the logits buffer holds TOK rows: all_logits (tests) goes TOK rows at a time */
        for (int first = all_logits ? 0 : m - 1; first < m; first += TOK) {
            int cnt = MT_MIN(TOK, m - first);
            bool greedy = next_out != NULL;
            GPU_DO(-1, "final norm", mt_gpu_rmsnorm(g->h + (size_t)first * D, g->final_norm, cnt,
                                                    D, eps, g->x, s));
            GPU_DO(-1, "lm_head", eng_gpu_lin(&g->head, g->x, cnt, g->logits, s));
            if (greedy) {
                GPU_DO(-1, "argmax", mt_gpu_argmax(g->logits, (int)V, g->argmax_work,
                                                   &g->h_argmax[0], s));
            }
            /* after a prompt, the first decode step is recorded while the prompt's end runs */
            if (last && first + cnt == m && graph_ok(e, g, 1) && start + n < g->ctx &&
                graph_find(g, start + n, 1, 0, greedy, false) < 0) {
                (void)graph_record(e, g, g->glast ^ 1, 1, start + n, 0, greedy, false);
            }
            if (greedy) {
                GPU_DO(-1, "argmax", mt_gpu_stream_sync(s));
                if ((st = eng_gpu_moe_flush(e, g, 0)) != MT_OK ||
                    (st = greedy_result(g, 0, next_out)) != MT_OK) {
                    return st;
                }
                continue;
            }
            float *dst = logits_out + (all_logits ? (size_t)(c0 + first) * V : 0);
            GPU_DO(-1, "logits copy",
                   mt_gpu_copy_async(dst, g->logits, (size_t)cnt * V * 4, 0, s));
            GPU_DO(-1, "logits copy", mt_gpu_stream_sync(s));
            if ((st = eng_gpu_moe_flush(e, g, 0)) != MT_OK) {
                return st;
            }
            if (eng_any_not_finite(dst, (size_t)cnt * V) &&
                (st = check_logits(dst, (size_t)cnt * V)) != MT_OK) {
                return st;
            }
        }
    }
    e->pos = start + n;
    return MT_OK;
}

#endif /* MT_HAVE_CUDA */
