/* SPDX-License-Identifier: MIT */
/*
 * engine_gpu_impl.h - what the GPU backend's files share (CUDA builds only): the device copy of
 * the model (one arena), the work buffers, the error macro, and the helpers both the dense path
 * (engine_gpu.c) and the MoE layer (engine_gpu_moe.c) use.
 */
#ifndef MT_ENGINE_GPU_IMPL_H
#define MT_ENGINE_GPU_IMPL_H

#include "runtime/engine/engine_impl.h"

#include "kernels/engine_ops.h"
#include "kernels/events.h"
#include "kernels/gemm.h"
#include "kernels/graph.h"
#include "kernels/kernels.h"

#define TOK MT_GPU_GEMV_MAX_TOK
/* Expert groups a chunk of T tokens with K experts each can make out of E experts: each expert's
   pairs in groups of at most TOK (the grouped kernel's limit), so at most E + T K / TOK. */
#define GROUPS_MAX(E, T, K) ((size_t)(E) + ((size_t)(T) * (K) + TOK - 1) / TOK)

/*
 * A weight on the device: FP8 + scales or BF16 for the GEMV of ops.h, or F32; and the GEMM
 * context that multiplies it by more tokens than the GEMV takes (NULL in the counting pass).
 */
struct gw {
    struct mt_gpu_weight w;
    struct mt_gpu_gemm *gemm;
};

struct g_mlp {
    struct gw gate, up, down;
    struct gw gate_up; // gate and up stacked (both views of it), data NULL where they do not
    int64_t up_off;    // up's first output in gate_up's
};

struct g_layer {
    float *input_norm, *post_attn_norm, *q_a_norm, *kv_a_norm, *idx_norm_w, *idx_norm_b;
    struct gw q_a, q_b, kv_a, o, idx_wq_b, idx_wk, idx_wproj;
    struct gw xproj;      // q_a, idx_wk, kv_a stacked (views of it), data NULL where they do not
    int64_t xproj_off[3]; // their first outputs in xproj's
    struct gw qproj;      // q_b, idx_wq_b stacked (both read q_a's output), data NULL where not
    int64_t qproj_off[2]; // their first outputs in qproj's
    struct gw kvb; // [H * (nope + v), kvl] in its checkpoint dtype (absorption)
    bool is_moe;
    struct g_mlp mlp; // dense layers
    struct gw router;
    float *router_bias; // [E] or NULL
    struct g_mlp shared;
    struct g_mlp *experts;      // host array [E] of device weights
    struct mt_gpu_expert *xtab; // host [E]: the FP8 grouped GEMV's view of the same
    /* caches, ctx positions */
    void *lat;      // [ctx, kvl] lat dtype; with the FP8 cache g->lat16, shared by the layers
    uint8_t *lat8;  // the FP8 cache (g->lat_fp8): [ctx] rows of mt_gpu_latent_fp8_row_bytes
    void *kpe;      // [ctx, rope] kpe dtype
    void *ikey;     // [ctx, ID] fp32, the split key cache (g->ikey_split), or NULL
    uint8_t *ikey8; // [ctx, ID] or NULL
    float *ikscale; // [ctx] or NULL
    /* where this layer's routed experts live (e->tiers) */
    int n_gpu, n_host, n_nvme; // experts on the device, on host executors, of them on NVMe
    int next_moe;              // the next MoE layer, -1 for the last
    /* decode batches route on the device (engine_gpu_moe.c): every routed expert on the GPU,
       grouped FP8, no guess for the next layer to make on the host */
    bool dev_moe;
    struct mt_gpu_expert *xtab_dev; // device [E]: xtab uploaded (dev_moe layers)
};

struct eng_gpu {
    struct mt_gpu_arena *arena; /* NULL during the counting pass */
    struct CUstream_st *stream;
    bool debug_sync;
    size_t need[3]; /* counting pass: weights, caches, work */
    size_t dev_free0; /* the device's free bytes before the arena (outside_arena_note) */
    int cat;        /* which of need[] allocations go to */
    int64_t ctx;    /* positions the device caches hold */
    enum mt_dtype lat_dtype, kpe_dtype; /* what the attention kernels read (BF16 with FP8) */
    bool lat_fp8;     /* the latent cache in DeepSeek's FP8 layout (L->lat8), widened into lat16
                         for the positions a launch reads (kernels/latent_fp8.cu) */
    void *lat16;      /* [ctx, kvl] BF16: those widened rows, at their positions */
    bool fast_mla;    /* V3.2 shapes: mla.cu's kernel */
    bool grouped_moe; /* FP8 experts at shapes moe.cu takes */
    int max_inter;
    int64_t max_stack; /* rows of the tallest stacked weight (up_stack): g->stk's floats */
    int64_t max_cols; /* the widest linear weight: the GEMM's bf16 activations */
    int chunk;        /* tokens per forward chunk: > MT_GPU_GEMV_MAX_TOK takes the GEMM path */
    struct mt_gpu_gemm *gemm;
    enum mt_gpu_gemm_math gemm_math; /* its arithmetic (set before the counting pass) */
    struct g_layer *layers;
    float *final_norm;
    struct gw head;
    struct mt_cpu_weight embed; /* host */
    void *embed_raw;            /* owned */
    float *freqs;               /* device [rope / 2] */
    /* device work */
    float *h, *x, *y, *qa, *q, *kv, *lat_t, *kpe_t, *attn, *qi, *ki, *wts;
    float *stk; /* one token's outputs of a stacked weight */
    float *q_lat, *q_pe, *o_lat, *scores, *mla_work, *wq, *logits;
    bool ikey_split;               /* the exact index keys in the split cache
                                      (mt_gpu_index_keys_split), not fp32 */
    int score_rows;                /* queries a batch of a prompt's index scores (scores, idx) */
    bool batch_index;              /* a prompt's index scores and top-k batched (MT_GPU_BATCH_INDEX=0:
                                      one query at a time, as decode does) */
    bool chunk_moe;                /* a chunk's GPU experts in one grouped launch (groups of
                                      mt_gpu_moe_chunk_group_max() pairs; MT_GPU_CHUNK_MOE=0:
                                      one MLP an expert) */
    bool prompt_mla;               /* a prompt's sparse MLA in launches of many rows
                                      (mt_gpu_mla_prompt; MT_GPU_PROMPT_MLA=0: a token at a time) */
    void *argmax_work;             /* device: greedy decoding's argmax (mt_gpu_argmax) */
    struct mt_gpu_argmax_out *h_argmax; /* pinned [2 sets]: its answer, written by the kernel */
    bool argmax_on;                /* greedy steps use it (MT_GPU_ARGMAX=0: off) */
    float *gs, *us, *xs, *ys, *rlog, *rw, *pair_w;
    int32_t *idx, *ids, *group_start, *pair_tok;
    void *topk_work; /* mt_gpu_topk's scratch (the decode row over many SMs) */
    uint8_t *q8;
    struct mt_gpu_expert *xgroups;
    void *moe_work;
    /* host work */
    float *h_emb[2];              /* pinned [chunk, hidden] each: a prompt chunk's embeddings,
                                     filled by the host while the other one's chunk runs */
    struct CUevent_st *ev_emb[2]; /* after each one's upload: the host refills it only then */
    float *h_rw, *h_pair_w;
    int32_t *h_ids, *h_idx, *h_group_start, *h_pair_tok, *h_count;
    int32_t *h_tok_pairs, *tok_pairs; /* host and device [TOK or chunk, K]: each token's pairs
                                         to add into y, in pair order, -1 after the last */
    struct mt_gpu_expert *h_xgroups;
    /* host experts (engine_gpu_moe.c): moe.c's grouping and executors on pinned copies */
    struct eng_work hw;            /* MoE fields only: ids, moe_wts, xs, ys, groups, tasks */
    float *h_x, *h_out;            /* pinned [TOK, hidden]: the layer's input, host experts' sum */
    float *d_host_sum;             /* device [TOK, hidden]: h_out uploaded */
    /* layer l+1's experts guessed from layer l's input (prefetch) */
    float *glog;                   /* device [TOK, E] */
    int32_t *gids, *h_gids;        /* device and pinned [TOK, K] */
    float *grw;                    /* device [TOK, K] (unused weights of the guess) */
    uint8_t *guessed;              /* host [E]: 1 for the experts guessed for guess_layer */
    int guess_layer;               /* -1: none pending */
    uint32_t guess_n, guess_hit;   /* recent guessed streamed experts, of them used (decayed) */
    struct CUevent_st *ev_ids;     /* the router's ids (and the input) are on the host */
    struct CUevent_st *ev_x0, *ev_x1; /* around the device's routed experts, for stats */
    bool x_timing;                 /* ev_x0..ev_x1 recorded, not yet added to the stats */
    /* GPU slots: DRAM experts copied over PCIe and computed on the device (tier DRAM_PCIE
       always; page-locked DRAM_CPU ones with at least slot_min_tok tokens, 0: the balance
       below) */
    bool slot_ok;                  /* the experts' dtype and shape suit the device GEMV */
    void *slot[2];                 /* device, slot_bytes each; NULL: no slots */
    /* the copies into the slots run on their own stream, so that one expert's products overlap
       the next one's copy: a copy waits for slot_free[k] (recorded on the compute stream after
       the products that read slot k), the products for slot_filled[k] (recorded after the
       copy); NULL (MT_GPU_SLOT_STREAM=0): copies on the compute stream, in its order */
    struct CUstream_st *copy_stream;
    struct CUevent_st *slot_filled[2], *slot_free[2];
    size_t slot_bytes;
    size_t slot_off[6];            /* gate, up, down data, then their scales, in a slot */
    int slot_min_tok;
    int slot_floor; /* a prompt chunk's fewest tokens a candidate once costs are known */
    /* the slot balance (mark_device, mt_plan_slot_balance): seconds an expert on the device
       (copy and compute), to launch it, on the CPU team, as measured in earlier steps of the
       same kind ([0] decode batches of <= TOK tokens, [1] prompt chunks; 0: not yet); this
       step's kind, candidates, always-copied, CPU and copied experts */
    double bal_dev_s[2], bal_launch_s[2], bal_cpu_s[2];
    int bal_kind, bal_cand, bal_fixed, bal_cpu, bal_k;
    bool bal_trace;                /* MT_GPU_SLOT_TRACE=1: one line a balanced step */
    int64_t *bal_order;            /* host [E]: candidates, most tokens first */
    uint8_t *on_gpu;               /* host [E]: this layer's experts the device computes */
    int32_t *n_rows;               /* host [E]: this layer's tokens per expert */
    int *slot_x;                   /* host [E]: this step's slot experts, in order */
    void **pinned;                 /* host buffers registered for DMA (DRAM experts) */
    int n_pinned;
    /* host [n_layers * E]: 1 where a DRAM expert is page-locked (DRAM_CPU ones go to a slot
       only then: eng_gpu_pin_experts) */
    uint8_t *dram_pinned;
    /* device routing (dev_moe layers): the router's choices reach the host only for the
       statistics and the trace, read after the step's final sync (eng_gpu_moe_flush) */
    bool all_dev_moe;              /* every MoE layer is dev_moe (and the layers use it) */
    int32_t *h_ids_all;            /* pinned [2 sets][n_layers, TOK, K] */
    int *ids_m;                    /* host [2 sets][n_layers]: tokens whose choices wait there */
    struct CUevent_st **ev_dev;    /* host [2 sets][n_layers][2]: around each layer's experts */
    int n_ev_layers;
    /* CUDA graphs of decode steps (engine_gpu.c): two recorded steps, one running while the
       next is recorded; a slot's key is (position, tokens, first logits row, greedy: the
       step ends in the argmax instead of the logits in h_logits, fed: its token is the other
       slot's argmax, embedded on the device). Slot k's step writes buffer set k of the
       per-step host buffers (h_argmax, h_ids_all, ids_m, ev_dev, ev_g0/ev_g1), as the two
       slots' steps may be in flight together; plain launches use set 0. */
    bool graph_on;                 /* MT_GPU_GRAPH=0 turns graphs off */
    bool capturing;                /* recording: no host-side effects */
    bool fuse; /* fused kernels: residual add + RMSNorm, the kv epilogue (with q_a's norm), the
                  attention prologue, stacked GEMVs for one token (MT_GPU_FUSE=0: off) */
    bool stack_q; /* a decode token past index_topk: q_b and the indexer's wq_b in one GEMV
                     (MT_GPU_STACK_Q=0: two, for measurements) */
    struct CUgraphExec_st *gexec[2];
    int64_t gpos[2];
    int gm[2], gfirst[2];          /* gm 0: the slot holds no valid step */
    bool ggreedy[2], gfed[2];
    int glast;                     /* the slot launched last */
    int bs;                        /* the buffer set of the step being recorded or launched */
    /* greedy steps one ahead: while step t runs, step t + 1 (fed the id step t picks) is
       launched behind it; the next call finds it running (engine_gpu.c, forward_graph) */
    bool ahead_on;                 /* MT_GPU_AHEAD=0: off */
    void *embed_dev;               /* embed_raw as the device reads it (registered, mapped at
                                      create where graphs run), or NULL: no steps ahead */
    bool ahead;                    /* a fed step is in flight that no call has taken yet */
    int64_t ahead_pos;             /* its position, slot and the id it was fed (returned by */
    int ahead_slot;                /* the call that launched it) */
    int32_t ahead_tok;
    float *h_emb1;                 /* pinned [TOK, hidden]: a graph step's embeddings */
    float *h_logits;               /* pinned [TOK, vocab]: a graph step's logits */
    struct CUevent_st *ev_g0[2], *ev_g1[2]; /* around each graph launch: its GPU time, its end */
    bool logits_direct; /* lm_head writes a graph step's logits into h_logits itself (pinned
                           memory the GPU reaches over the bus), so no copy follows it;
                           MT_GPU_LOGITS_DIRECT=0: lm_head into g->logits, then a copy */
    uint64_t n_graph_steps, n_graph_builds;
};

/* The arena's categories: where a counting-pass byte is charged. */
enum { CAT_WEIGHTS, CAT_CACHE, CAT_WORK };

/* Replace the kernel's message by one that names the operation and the layer (-1: none). */
mt_status_t eng_gpu_fail(mt_status_t st, int layer, const char *op);

/*
 * Run call; on failure return one message naming op and layer. With debug_sync the stream is
 * synchronized after every operation, so an asynchronous fault is blamed on the right one.
 * Needs a local `g` (struct eng_gpu *).
 */
#define GPU_DO(layer, op, call)                                                                    \
    do {                                                                                           \
        mt_status_t st_;                                                                           \
        mt_log_set_quiet(true);                                                                    \
        st_ = (call);                                                                              \
        if (st_ == MT_OK && g->debug_sync) {                                                       \
            st_ = mt_gpu_stream_sync(g->stream);                                                   \
        }                                                                                          \
        mt_log_set_quiet(false);                                                                   \
        if (st_ != MT_OK) {                                                                        \
            return eng_gpu_fail(st_, (layer), (op));                                               \
        }                                                                                          \
    } while (0)

/* bytes from the arena (counting pass: g->arena NULL, only counted in g->need[g->cat]). */
mt_status_t eng_gpu_alloc(struct eng_gpu *g, size_t bytes, const char *what, void **out);
/* A SwiGLU MLP's three weights uploaded in their checkpoint dtype (or counted); with stack gate
   and up as views of one stacked weight where they stack (one GEMV for a decode token). */
mt_status_t eng_gpu_up_mlp(struct mt_engine *e, struct eng_gpu *g,
                           const struct mt_expert_weights *w, bool stack, struct g_mlp *o);
/*
 * y[n, rows] = x[n, cols] W^T on stream s, any of the device weight dtypes: the GEMV of ops.h
 * up to MT_GPU_GEMV_MAX_TOK tokens, the GEMM of gemm.h above (n <= g->chunk).
 */
mt_status_t eng_gpu_lin(const struct gw *w, const float *x, int n, float *y, struct CUstream_st *s);
/* MLA + DSA of layer l for m tokens at start: g->y [m, hidden] (engine_gpu_attn.c). */
mt_status_t eng_gpu_attention(struct mt_engine *e, struct eng_gpu *g, int l, int m,
                              int64_t start);
/* SwiGLU MLP of x [m, hidden] -> out (g->gs and g->us as scratch). */
mt_status_t eng_gpu_mlp(struct eng_gpu *g, int l, const struct g_mlp *M, const float *x, int m,
                        float *out);

/*
 * engine_gpu_moe.c: layer l's GPU-tier routed experts placed (or counted) on the device; the
 * layer's counts of where its experts live set.
 */
mt_status_t eng_gpu_place_experts(struct mt_engine *e, struct eng_gpu *g, int l);
/*
 * engine_gpu_moe.c: move GPU-tier experts to DRAM (last layers first, highest ids first) until
 * their checkpoint bytes reach `over`; *moved_out how many (MT_ERR_NOMEM when none was left).
 * The caller counts the arena again and calls again while it does not fit.
 */
mt_status_t eng_gpu_fit_experts(struct mt_engine *e, struct eng_gpu *g, size_t over,
                                int *moved_out);
/* engine_gpu_moe.c: the MoE layer's device work buffers (in place_all, both passes). */
mt_status_t eng_gpu_moe_alloc(struct mt_engine *e, struct eng_gpu *g);
/* engine_gpu_moe.c: the MoE layer's host buffers and events (after the arena pass). */
mt_status_t eng_gpu_moe_init(struct mt_engine *e, struct eng_gpu *g);
void eng_gpu_moe_fini(struct eng_gpu *g);
/*
 * engine_gpu_moe.c: the routing statistics (and trace records) of the dev_moe layers whose
 * choices wait in buffer set `set` of h_ids_all; call after the stream has reached them.
 */
mt_status_t eng_gpu_moe_flush(struct mt_engine *e, struct eng_gpu *g, int set);
/* engine_gpu_moe.c: the MoE FFN of layer l on g->x [m, hidden] -> g->y. */
mt_status_t eng_gpu_moe(struct mt_engine *e, struct eng_gpu *g, int l, int m);

#endif /* MT_ENGINE_GPU_IMPL_H */
