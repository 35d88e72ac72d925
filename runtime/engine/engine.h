/* SPDX-License-Identifier: MIT */
/*
 * engine.h - the forward pass of DeepSeek-V3.2 (CPU reference path) with its KV cache.
 *
 * The one idea: an engine holds one sequence. mt_engine_forward() appends tokens at the current
 * position (a whole prompt, a piece of one, or one decoded token) and returns their logits; the KV
 * cache (MLA latent + roped k_pe, indexer keys) makes every split of a sequence into calls compute
 * the same function. The layer loop calls one function per operation, and every routed expert runs
 * through one installable function (layer, expert id, tokens -> outputs; mt_engine_set_expert_fn),
 * the single place a placement plan routes to a GPU, a CPU team or an NVMe stream.
 *
 * Weights are read once at creation and kept in their stored dtype (FP8 + scales, BF16, ...);
 * ops dequantize on the fly. This is for test-sized models; the 671B model needs the offload path.
 *
 * Not thread-safe: one thread drives an engine (ops parallelize inside with OpenMP).
 */
#ifndef MT_ENGINE_H
#define MT_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/model/model.h"
#include "runtime/base/status.h"

struct mt_trace;

enum mt_indexer_mode {
    MT_INDEXER_EXACT, /* fp32 scores, no Hadamard (orthonormal: same scores); what HF computes */
    MT_INDEXER_FP8,   /* DeepSeek's code: Hadamard, act_quant e4m3 with ue8m0 scales (one per
                         head for q, per token for k: group = index_head_dim), fp8 scores */
};

enum mt_attn_mode {
    MT_ATTN_SPARSE, /* DSA: attend to the indexer's top-min(index_topk, pos+1) positions */
    MT_ATTN_DENSE,  /* attend to every position <= t (no indexer); for testing */
};

struct mt_engine_opts {
    enum mt_indexer_mode indexer;
    enum mt_attn_mode attention;
    /*
     * FP8 mode only: also compute the exact top-k at every step and accumulate how much the two
     * sets overlap (mt_engine_indexer_overlap). The FP8 set still drives attention.
     */
    bool compare_indexer;
    struct mt_trace *trace; /* borrowed, may be NULL: record routed expert ids per MoE layer */
};

/* Defaults: exact indexer, sparse attention, no comparison, no trace. */
void mt_engine_opts_default(struct mt_engine_opts *opts);

struct mt_engine;

/*
 * Build an engine for an opened model (borrowed: must outlive the engine): reads every tensor the
 * forward pass needs into memory. MT_ERR_UNSUPPORTED for a tensor dtype the CPU path cannot
 * compute with, MT_ERR_IO, MT_ERR_NOMEM.
 */
mt_status_t mt_engine_create(const struct mt_model *model, const struct mt_engine_opts *opts,
                             struct mt_engine **engine_out);
void mt_engine_destroy(struct mt_engine *engine);

/* Forget the sequence (position back to 0); weights stay loaded. */
void mt_engine_reset(struct mt_engine *engine);

/*
 * Forget positions >= pos (no-op when pos is not below the current position). The cache is
 * causal: entries before pos depend only on the tokens before pos, so the sequence continues as if
 * only those had been fed. Used to reuse the shared prefix of two prompts (chat turns).
 */
void mt_engine_truncate(struct mt_engine *engine, int64_t pos);

/*
 * Append tokens[0..n) at the current position and run the model on them. logits_out receives
 * [n, vocab] floats when all_logits, else [vocab] for the last token only. On error nothing is
 * appended. MT_ERR_INVAL (with a clear message) for n == 0, a token id outside [0, vocab), or a
 * sequence that would pass max_position_embeddings; MT_ERR_NOMEM.
 */
mt_status_t mt_engine_forward(struct mt_engine *engine, const int32_t *tokens, int n,
                              bool all_logits, float *logits_out);

/* Check a prompt before running it: the same checks as mt_engine_forward (from position 0). */
mt_status_t mt_engine_check_prompt(const struct mt_engine *engine, const int32_t *tokens, int n);

int64_t mt_engine_pos(const struct mt_engine *engine);
int mt_engine_vocab(const struct mt_engine *engine);
int64_t mt_engine_max_pos(const struct mt_engine *engine);

/*
 * Indexer diagnostics (compare_indexer in FP8 mode): over every (layer, query) where the top-k
 * really selects (k < positions so far), *overlap_out = sum |fp8 set & exact set| / sum k, and
 * *n_out the number of such selections. 1.0 and 0 when none.
 */
void mt_engine_indexer_overlap(const struct mt_engine *engine, double *overlap_out,
                               int64_t *n_out);

/*
 * Optional hook for tests and tools: called after each layer's indexer selection with the
 * positions chosen for query position pos (k of them). NULL to remove.
 */
typedef void (*mt_engine_topk_hook)(void *ctx, int layer, int64_t pos, const int32_t *idx, int k);
void mt_engine_set_topk_hook(struct mt_engine *engine, mt_engine_topk_hook hook, void *ctx);

/*
 * Routed experts: every routed expert computation of the forward pass is one call
 * fn(ctx, layer, expert, x, m, y): x [m, hidden] are the m tokens routed to `expert` of `layer`,
 * y [m, hidden] receives the SwiGLU output (before the router weight). The default is
 * mt_engine_expert_cpu; a placement plan installs its own (GPU, CPU team, NVMe stream) and may call
 * the default for experts it leaves on the reference path. NULL restores the default.
 */
typedef mt_status_t (*mt_engine_expert_fn)(void *ctx, int layer, int expert, const float *x,
                                           int m, float *y);
void mt_engine_set_expert_fn(struct mt_engine *engine, mt_engine_expert_fn fn, void *ctx);

/* The reference expert (fp32, weights as loaded); ctx is the engine. */
mt_status_t mt_engine_expert_cpu(void *engine, int layer, int expert, const float *x, int m,
                                 float *y);

#endif /* MT_ENGINE_H */
