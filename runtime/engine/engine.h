/* SPDX-License-Identifier: MIT */
/*
 * engine.h - the forward pass of DeepSeek-V3.2 (CPU reference path) with its KV cache.
 *
 * The one idea: an engine holds one sequence. mt_engine_forward() appends tokens at the current
 * position (a whole prompt, a piece of one, or one decoded token) and returns their logits; the KV
 * cache (kv_cache.h) makes every split of a sequence into calls compute the same function.
 *
 * What it owns and what it asks for: the always-on weights (attention, indexer, norms, dense and
 * shared MLPs, router, embedding, head) are read at creation and kept in their stored dtype. Routed
 * experts are not: each MoE step routes tokens, groups them per expert, and submits each group to
 * the executor of its expert's tier (executor.h), which asks the expert provider
 * (expert_provider.h) for the weights. By default every tier runs on the reference executor over
 * the checkpoint provider; a plan's tiers decide which experts that provider keeps in DRAM.
 *
 * Not thread-safe: one thread drives an engine (ops parallelize inside with OpenMP).
 */
#ifndef MT_ENGINE_H
#define MT_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/base/status.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/model/model.h"
#include "runtime/plan/planner.h"

struct mt_trace;
struct mt_executor;
struct mt_expert_provider;

enum mt_indexer_mode {
    MT_INDEXER_EXACT, /* fp32 scores, no Hadamard (orthonormal: same scores); what HF computes */
    MT_INDEXER_FP8,   /* DeepSeek's code: Hadamard, act_quant e4m3 with ue8m0 scales (one per
                         head for q, per token for k: group = index_head_dim), fp8 scores */
};

enum mt_attn_mode {
    MT_ATTN_SPARSE, /* DSA: attend to the indexer's top-min(index_topk, pos+1) positions */
    MT_ATTN_DENSE,  /* attend to every position <= t (no indexer); for testing */
};

/* Where the forward pass runs. */
enum mt_device {
    MT_DEVICE_CPU, /* the reference ops (the oracle) */
    MT_DEVICE_GPU, /* engine_gpu.c: every weight, routed experts included, in one device arena */
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
    /*
     * Where each routed expert lives: [num_hidden_layers * n_routed_experts] enum mt_tier values
     * (a plan's tiers; entries of dense layers are ignored), read during create. NULL: all on the
     * engine's device (DRAM for the CPU engine, the GPU for the GPU engine). The checkpoint
     * provider keeps DRAM experts in memory after their first use and reads NVMe experts from
     * the shards on every use. The CPU engine computes GPU-tier experts on the host too.
     */
    const uint8_t *expert_tiers;
    /* Where routed experts come from (borrowed, outlives the engine); NULL: the checkpoint. */
    struct mt_expert_provider *provider;
    /*
     * Where experts on MT_TIER_NVME come from when provider is NULL (borrowed, outlives the
     * engine; e.g. the streaming provider): the others still come from the checkpoint provider.
     * NULL: the checkpoint provider reads them on every use.
     */
    struct mt_expert_provider *nvme_provider;
    /* The KV cache's latent dtype: F32 (default on the CPU, the reference) or BF16. */
    enum mt_dtype kv_dtype;
    /*
     * MT_DEVICE_GPU: CUDA device 0 (MT_ERR_UNSUPPORTED without one) runs attention, the indexer
     * and every always-on weight, and the routed experts of tier MT_TIER_GPU; the other tiers'
     * experts run on their executors (mt_engine_set_executor) on the host, concurrently. GPU
     * experts that do not fit gpu_mem move to DRAM with a warning. Not supported: compare_indexer.
     */
    enum mt_device device;
    uint64_t gpu_mem;  /* GPU: the device arena's budget in bytes; 0: free memory minus a margin */
    int64_t ctx;       /* positions a session may reach: the GPU's caches hold them (0:
                          min(max_position, 8192)); the CPU's cache grows up to them (0:
                          max_position) */
    bool debug_sync;   /* GPU: synchronize after every kernel (also MT_DEBUG_SYNC=1) */
    /*
     * GPU: do not guess layer l+1's experts from layer l's hidden state (its router applied
     * early) to start their NVMe reads sooner. The guess is on by default where a layer has
     * experts on NVMe; mt_engine_stats counts its hits.
     */
    bool no_prefetch;
    /*
     * GPU: a DRAM expert (tier DRAM_CPU) with at least this many tokens in one step is copied
     * to a GPU slot and computed there instead of on the CPU (long prefills), where its memory
     * could be page-locked; experts of tier DRAM_PCIE always are. 0: $MT_GPU_SLOT_MIN_TOKENS,
     * else as many as balance the CPU team by the costs measured in earlier steps
     * (engine_gpu_moe.c, mark_device).
     */
    int gpu_slot_min_tokens;
};

/* Defaults: exact indexer, sparse attention, no comparison, no trace, all experts in DRAM. */
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
 * Forget positions >= pos (no-op when pos is not below the current position, or negative: 0
 * forgets all). The cache is causal: entries before pos depend only on the tokens before pos,
 * so the sequence continues as if only those had been fed. Used to reuse the shared prefix of
 * two prompts (chat turns).
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

/*
 * Greedy decoding without the logits: mt_engine_forward of tokens[0..n) (the last position's
 * logits), then *next_out = the id the greedy sampler takes from them (mt_sampler_argmax: the
 * largest logit, the smallest id among equal ones). The GPU engine picks it on the device and
 * copies 16 bytes back instead of the vocabulary's logits (517 KB for V3.2) for the host to copy,
 * check and scan. Same errors as mt_engine_forward, MT_ERR_FORMAT for a logit that is not finite.
 */
mt_status_t mt_engine_forward_greedy(struct mt_engine *engine, const int32_t *tokens, int n,
                                     int32_t *next_out);

/* Check a prompt before running it: the same checks as mt_engine_forward (from position 0). */
mt_status_t mt_engine_check_prompt(const struct mt_engine *engine, const int32_t *tokens, int n);
/* The checks of mt_engine_check_prompt that need only the config (ids in the vocabulary, the
 * model's positions), for a command to run before it spends minutes loading the weights. */
mt_status_t mt_engine_check_prompt_config(const struct mt_model_config *cfg,
                                          const int32_t *tokens, int n);

int64_t mt_engine_pos(const struct mt_engine *engine);
int mt_engine_vocab(const struct mt_engine *engine);
/* Positions a session can hold: the model's limit, or fewer where opts.ctx (--ctx) says so. */
int64_t mt_engine_max_pos(const struct mt_engine *engine);
/* The model's EOS id (config eos_token_id). */
int32_t mt_engine_eos(const struct mt_engine *engine);

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
 * The provider the engine's routed experts come from (opts.provider, or the checkpoint provider
 * it made): executors for other tiers are built on it. Borrowed, valid until destroy.
 */
struct mt_expert_provider *mt_engine_provider(struct mt_engine *engine);

/*
 * Run the experts of `tier` on ex (borrowed: must stay valid while the engine uses it); NULL
 * restores the reference executor. Several tiers may share one executor.
 */
void mt_engine_set_executor(struct mt_engine *engine, enum mt_tier tier, struct mt_executor *ex);

/*
 * A thread team (borrowed, NULL: none) the engine may wake for its own host work of a MoE layer
 * of many tokens, between its executors' jobs: the copies of the tokens into the experts' groups
 * and the weighted sum of their outputs. It may be the team of the CPU executor (never both at
 * once: the copies end before the submit, the sum starts after the wait).
 */
struct mt_cpu_team;
void mt_engine_set_host_team(struct mt_engine *engine, struct mt_cpu_team *team);

/*
 * Read every routed expert the engine keeps in DRAM (tiers DRAM_CPU and DRAM_PCIE) now, on
 * several threads, instead of at its first use: a run's first tokens then cost what the later
 * ones do. *bytes_out (may be NULL): bytes read. Errors of the provider (MT_ERR_IO naming the
 * tensor, MT_ERR_NOMEM); what was read stays.
 */
mt_status_t mt_engine_preload_experts(struct mt_engine *engine, uint64_t *bytes_out);

/* Bytes of the GPU engine's device arena (weights, caches, work); 0 on the CPU engine. */
uint64_t mt_engine_device_bytes(const struct mt_engine *engine);

/*
 * The work part of the GPU engine's arena (activations, scratch, the GEMM's area, expert slots)
 * and the prompt chunk (*chunk tokens) it is sized for; 0 and 0 on the CPU engine. The planner's
 * estimate of it (mt_plan_gpu_work_bytes) is tested against this.
 */
uint64_t mt_engine_device_work_bytes(const struct mt_engine *engine, int *chunk);

/*
 * Where the engine placed each routed expert: [num_hidden_layers * n_routed_experts] enum mt_tier
 * (opts.expert_tiers, after the GPU engine moved what did not fit to DRAM). Borrowed.
 */
const uint8_t *mt_engine_tiers(const struct mt_engine *engine);

/* Bytes of routed-expert weights the engine's checkpoint provider holds now (0 for another). */
uint64_t mt_engine_expert_bytes_held(const struct mt_engine *engine);

/*
 * What the engine's layers did since it was created or since mt_engine_stats_reset: the measured
 * side of the run report (moetier run prints it beside the plan's prediction). Counted per MoE
 * layer step; tier indices are enum mt_tier. Wall times are host clock seconds.
 */
struct mt_engine_stats {
    uint64_t forwards;                     /* mt_engine_forward calls */
    uint64_t tokens;                       /* positions they appended */
    double forward_s;                      /* wall time inside mt_engine_forward */
    /* keys the rows appended attend to (min(position + 1, index_topk) each) and the indexer
       scores (position + 1 each), summed: what their attention costs (planner.h) */
    double attn_keys, index_keys;
    uint64_t expert_runs[MT_TIER_COUNT];   /* (layer step, expert) computations, by tier */
    uint64_t expert_pairs[MT_TIER_COUNT];  /* (token, expert) pairs, by tier */
    uint64_t expert_bytes[MT_TIER_COUNT];  /* weight bytes those computations read */
    double tier_s[MT_TIER_COUNT];          /* per tier: submit to the end of its wait, summed */
    double moe_s; /* host wall time of the MoE layers (router to sum); 0 in recorded decode steps */
    double moe_wait_s;                     /* of it, the engine thread blocked on executors */
    double moe_host_s; /* of it, the host's copies into the experts' groups and weighted sums */
    uint64_t prefetch_guessed;             /* layer l+1 experts guessed early (GPU engine) */
    uint64_t prefetch_hits;                /* of them, really chosen by the router */
    uint64_t slot_copies;                  /* DRAM experts copied to a GPU slot (GPU engine) */
    uint64_t graph_steps;                  /* forwards replayed as a CUDA graph (GPU engine) */
    double graph_gpu_s; /* of their forward time, the GPU's (events around each launch): the rest
                           is the host's (embeddings in, logits out, launch) */
};

/* Copy the counters into *out. */
void mt_engine_stats_get(struct mt_engine *engine, struct mt_engine_stats *out);
/* Zero the counters (e.g. between prefill and decode, to report them apart). */
void mt_engine_stats_reset(struct mt_engine *engine);

#endif /* MT_ENGINE_H */
