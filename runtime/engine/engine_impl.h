/* SPDX-License-Identifier: MIT */
/*
 * engine_impl.h - the engine's private state, shared by its files: engine.c (lifecycle, the
 * forward pass), weights.c (loading the always-on weights), attention.c (MLA + the indexer) and
 * moe.c (router -> token groups -> executors -> weighted sum). Nothing outside runtime/engine
 * includes it.
 */
#ifndef MT_ENGINE_IMPL_H
#define MT_ENGINE_IMPL_H

#include "runtime/engine/engine.h"

#include "cpu/ref_ops.h"
#include "runtime/engine/executor.h"
#include "runtime/engine/expert_provider.h"
#include "runtime/engine/kv_cache.h"

/* One SwiGLU MLP held by the engine (shared expert or dense FFN). */
struct eng_mlp {
    struct mt_cpu_weight gate, up, down;
};

/* A layer's always-on weights (data owned by the engine's buffer list). */
struct eng_layer {
    float *input_norm;      // [hidden]
    float *post_attn_norm;  // [hidden]
    struct mt_cpu_weight q_a, q_b, kv_a, o;
    float *q_a_norm;        // [q_lora]
    float *kv_a_norm;       // [kv_lora]
    float *kv_b;            // [H * (nope + v), kv_lora], dequantized once (absorption)
    struct mt_cpu_weight idx_wq_b, idx_wk, idx_wproj;
    float *idx_norm_w;      // [index_head_dim]
    float *idx_norm_b;      // [index_head_dim]
    bool is_moe;
    struct eng_mlp mlp;     // dense layers
    struct mt_cpu_weight router;
    float *router_bias;     // [n_experts] or NULL
    struct eng_mlp shared;
};

/*
 * The forward pass's work arrays, for n tokens ending at sequence position end. They are carved
 * out of one buffer that the engine keeps and grows (eng_work_layout), so decoding a token
 * allocates nothing.
 */
struct eng_work {
    float *h, *x, *y;               // [n, hidden]: residual stream, normed input, sublayer output
    float *qa, *q, *kv, *attn;      // [n, q_lora], [n, H*qk], [n, kv_lora+rope], [n, H*v]
    float *qi, *ki, *wts;           // [n, IH*ID], [n, ID], [n, IH]
    float *q_lat, *q_pe, *o_lat;    // [H, kv_lora], [H, rope], [H, kv_lora]
    float *scores, *scores2;        // [end]
    int32_t *idx, *idx2;            // [end]
    float *lat_g, *kpe_g;           // [sel, kv_lora], [sel, rope]: a bf16 cache's rows, sel =
                                    // end (dense) or min(end, topk)
    int32_t *iota;                  // [sel]
    uint8_t *q8;                    // [IH*ID]
    float *wq;                      // [IH]
    float *had;                     // [ID]: one key or query head for the Hadamard
    float *cos, *sin;               // [rope/2]
    /* MoE: token groups, all experts of a layer at once so that executors run together */
    float *logits;                  // [n, E] router logits
    int32_t *ids;                   // [n, K] chosen experts
    float *moe_wts;                 // [n, K] their weights
    void *router_work;              // mt_cpu_router_work_bytes()
    float *xs, *ys;                 // [n*K, hidden] inputs grouped by expert, the outputs
    int *row_tok;                   // [n*K] which token each grouped row came from
    int *pair_row;                  // [n*K] the grouped row of pair (token t, choice j)
    float *row_w;                   // [n*K] and its router weight
    int *group_start;               // [E + 1] expert e's rows are group_start[e] .. [e+1]
    int *group_fill;                // [E]
    struct mt_expert_task *tasks;   // [E] one per expert that has rows
    const uint8_t *on_gpu;          // [E] or NULL: GPU engine, experts the device computes
};

struct mt_engine {
    const struct mt_model *model; /* borrowed */
    struct mt_model_config cfg;
    struct mt_engine_opts opts;
    void **bufs;                  /* owned: every always-on weight buffer */
    size_t n_bufs;
    size_t cap_bufs;
    struct mt_cpu_weight embed, head;
    float *final_norm;
    struct eng_layer *layers;     /* owned, [n_layers] */
    int n_layers;
    float *freqs;                 /* owned, [rope / 2] */
    float rope_att;               /* HF attention_factor on cos and sin */
    float softmax_scale;
    struct mt_kv_cache kv;        /* owned */
    int64_t pos;
    double overlap_sum;
    double overlap_k;
    int64_t overlap_n;
    mt_engine_topk_hook hook;
    void *hook_ctx;
    /* routed experts */
    uint8_t *tiers;                         /* owned, [n_layers * E] enum mt_tier */
    struct mt_expert_provider *provider;    /* borrowed (opts) or own_provider */
    struct mt_expert_provider *own_provider; /* owned, may be NULL: the checkpoint provider */
    struct mt_expert_provider *tiered;      /* owned, may be NULL: own + opts.nvme_provider */
    struct mt_executor *ref_exec;           /* owned: the reference executor */
    struct mt_executor *exec[MT_TIER_COUNT]; /* borrowed, or ref_exec */
    struct mt_cpu_team *host_team;          /* borrowed, may be NULL: mt_engine_set_host_team */
    void *work;                   /* owned: the forward pass's work space, grown on demand */
    float *greedy_logits;         /* owned, [vocab]: mt_engine_forward_greedy's (CPU engine) */
    size_t work_bytes;
    struct eng_gpu *gpu;          /* owned: the GPU backend (opts.device GPU), or NULL */
    struct mt_engine_stats stats; /* mt_engine_stats_get */
    uint64_t expert_bytes;        /* weight bytes of one routed expert (0: no MoE layer) */
};

/* engine.c: whether any of v[0..n) is an infinity or a NaN (vectorised). */
bool eng_any_not_finite(const float *v, size_t n);
/* engine.c: MT_ERR_FORMAT naming tensor `name` where any of its values f[0..n) is not finite.
 * For the router's correction bias, read at load: a NaN in most weights reaches a layer's
 * output, whose check names the layer, but one in the bias only changes which experts the
 * router picks, silently (the router orders NaN scores like any others). */
mt_status_t eng_check_tensor_finite(const char *name, const float *f, size_t n);
/* engine.c: MT_OK where v[0..n) is finite; else MT_ERR_FORMAT "layer L: the <what> output is
 * not finite ..." naming the first bad value (layer -1: the head). Every sublayer's output, and
 * the indexer's scores, pass it. */
mt_status_t eng_check_finite(const float *v, size_t n, int layer, const char *what);
/* engine.c: the embedding rows of tokens[0..n) into out[n][hidden]; MT_ERR_FORMAT naming the
 * token when a row is not finite (a corrupt table, caught before it reaches any layer). */
mt_status_t eng_embed(const struct mt_cpu_weight *embed, const int32_t *tokens, int n,
                      float *out);

/* weights.c: read every always-on tensor (MT_ERR_* naming the tensor). */
mt_status_t eng_weights_load(struct mt_engine *e);
void eng_weights_free(struct mt_engine *e);

/* attention.c: MLA + DSA for n tokens at positions start..start+n-1: out[n, hidden]. */
mt_status_t eng_attention(struct mt_engine *e, int l, const float *x, int n, int64_t start,
                          struct eng_work *w, float *out);

/* moe.c: the MoE FFN of layer l for x[n, hidden] -> out[n, hidden]. */
mt_status_t eng_moe(struct mt_engine *e, int l, const float *x, int n, struct eng_work *w,
                    float *out);

/*
 * moe.c's steps, shared with the GPU backend's MoE layer (engine_gpu_moe.c). They leave out the
 * experts w->on_gpu marks (the GPU engine's device computes those; NULL on the CPU engine).
 *   group:  w->ids / w->moe_wts of n tokens -> groups per expert (rows of x copied into w->xs)
 *   count:  the groups into e->stats
 *   prefetch: the streamed experts with tokens announced to the provider (submit does it too)
 *   submit: every group to its tier's executor (NVMe ones announced to the provider first, and
 *           submitted after an executor's other experts, as a wave of their own); used[]
 *           (MT_TIER_COUNT + 1 entries) gets the executors that got work
 *   wait:   for those executors (times into e->stats); the first failure
 *   sum:    out[t] += router weight x output, experts by id, for the n tokens
 * Group and sum run on the host team (mt_engine_set_host_team) where a step copies at least
 * ENG_MOE_TEAM_BYTES of inputs (pairs x hidden x 4); their time goes to e->stats.moe_host_s.
 */
#define ENG_MOE_TEAM_BYTES ((size_t)2 << 20)
void eng_moe_group(struct mt_engine *e, int l, const float *x, int n, struct eng_work *w);
void eng_moe_count(struct mt_engine *e, int l, const struct eng_work *w);
void eng_moe_prefetch(struct mt_engine *e, int l, struct eng_work *w);
mt_status_t eng_moe_submit(struct mt_engine *e, int l, struct eng_work *w,
                           struct mt_executor **used, int *n_used_out);
mt_status_t eng_moe_wait(struct mt_engine *e, struct mt_executor **used, int n_used,
                         double t_submit);
/* out[n x hidden] += the host experts' weighted outputs (zero: out = them), on the host team */
void eng_moe_sum(struct mt_engine *e, int l, const struct eng_work *w, float *out, int n,
                 bool zero);

/*
 * engine_gpu.c: the GPU backend. create uploads everything (e->freqs, rope_att and softmax_scale
 * already set) and sets e->gpu; forward is mt_engine_forward after its checks, or with next_out
 * (logits_out NULL, all_logits false) mt_engine_forward_greedy's.
 */
struct eng_gpu;
mt_status_t eng_gpu_create(struct mt_engine *e);
void eng_gpu_destroy(struct eng_gpu *g, int n_layers);
uint64_t eng_gpu_device_bytes(const struct eng_gpu *g);
uint64_t eng_gpu_work_bytes(const struct eng_gpu *g, int *chunk);
/* Positions the device caches hold (--ctx; the model's own limit may be higher). */
int64_t eng_gpu_ctx(const struct eng_gpu *g);
/*
 * engine_gpu_moe.c: register the host memory of the (preloaded) DRAM_PCIE experts for DMA, so
 * their copies to GPU slots run at PCIe speed beside the CPU's work. Best effort (what cannot be
 * registered is copied through the driver's staging buffer).
 */
mt_status_t eng_gpu_pin_experts(struct mt_engine *e, struct eng_gpu *g);
/* engine_gpu_moe.c: the device's pending expert timing into e->stats. */
void eng_gpu_stats_flush(struct mt_engine *e, struct eng_gpu *g);
mt_status_t eng_gpu_forward(struct mt_engine *e, const int32_t *tokens, int n, bool all_logits,
                            float *logits_out, int32_t *next_out);
/* Whether greedy steps pick their id on the device (default; MT_GPU_ARGMAX=0: from the logits on
 * the host, for before/after measurements). */
bool eng_gpu_device_argmax(const struct eng_gpu *g);
/* Wait for a greedy step launched ahead that no call has taken (forward_graph), and drop it:
 * before anything else uses the engine (truncate, reset, statistics, another forward). */
mt_status_t eng_gpu_settle(struct eng_gpu *g);

#endif /* MT_ENGINE_IMPL_H */
