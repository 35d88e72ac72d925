/* SPDX-License-Identifier: MIT */
/*
 * gpu_work.c - the GPU engine's work space for prompt chunks of T tokens, from the model's
 * dimensions alone, so that a plan predicts prefill at the chunk the engine will really run.
 *
 * Where routed experts live off the GPU the engine takes the longest chunk of 4,096, 2,048 or
 * 1,024 tokens whose work space fits beside what the plan placed (engine_gpu.c host_chunk,
 * mt_plan_host_chunk below); at V3.2's shapes that is ~1.4 MB a token, so a plan that fills
 * --gpu-mem up to the default 1.5 GiB --gpu-reserve leaves room for 512-token chunks only, and a
 * plan that assumed a longer one predicted a prefill the engine never ran.
 *
 * The engine counts its arena exactly from the loaded weights (engine_gpu.c place_all, work
 * part; engine_gpu_moe.c eng_gpu_moe_alloc; the sizes of the kernels' own scratch in kernels/).
 * This mirrors the same buffers term by term in the same order; test_gpu_hetero compares the
 * two on real engines at several chunks, to the byte (only the kernels' small scratch is rounded
 * up, by an amount the test computes from the kernels), so a buffer added or resized there and
 * not here fails a test instead of shifting plans unseen.
 */
#include <config.h>

#include "runtime/plan/planner.h"

#include "runtime/base/status.h"

/* Constants of the engine and kernels this mirrors (the files named beside each). */
#define DECODE_TOK 8                        /* kernels/ops.h MT_GPU_GEMV_MAX_TOK */
#define SCORES_MAX ((uint64_t)32 << 20)     /* engine_gpu.c: a chunk's index scores at most */
#define MLA_SPLIT 64                        /* kernels/mla.cu: positions per split */
#define MLA_TS_CHUNK 32                     /* kernels/mla.cu TS_CHUNK */
#define MLA_TS_ONE_MAX 16                   /* kernels/mla.cu TS_ONE_CHUNK_MAX */
#define GEMM_CUBLAS_WS ((uint64_t)32 << 20) /* kernels/gemm.cu CUBLAS_WS */
#define GEMM_SLAB_MIN ((uint64_t)64 << 20)  /* kernels/gemm.cu SLAB_MIN */
#define EXPERT_PTRS 48                      /* sizeof(struct mt_gpu_expert): six pointers */

/* One buffer of the arena: rounded up to 256 bytes as eng_gpu_alloc counts it. */
static void
add(uint64_t *sum, uint64_t bytes)
{
    *sum += (bytes + 255) & ~(uint64_t)255;
}

static uint64_t
max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

uint64_t
mt_plan_gpu_work_bytes(const struct mt_model_config *c, int chunk, int64_t ctx, bool host_experts,
                       uint64_t slot_bytes, bool f32_cache)
{
    const uint64_t f = sizeof(float);
    uint64_t T = (uint64_t)(chunk > 0 ? chunk : 1), N = (uint64_t)(ctx > 0 ? ctx : 1);
    uint64_t D = (uint64_t)c->hidden_size, H = (uint64_t)c->num_attention_heads;
    uint64_t kvl = (uint64_t)c->kv_lora_rank, rope = (uint64_t)c->qk_rope_head_dim;
    uint64_t qk = (uint64_t)(c->qk_nope_head_dim + c->qk_rope_head_dim);
    uint64_t v = (uint64_t)c->v_head_dim, ql = (uint64_t)c->q_lora_rank;
    uint64_t IH = (uint64_t)c->index_n_heads, ID = (uint64_t)c->index_head_dim;
    uint64_t E = (uint64_t)c->n_routed_experts, K = (uint64_t)c->num_experts_per_tok;
    uint64_t mi = (uint64_t)c->moe_intermediate_size;
    uint64_t shared = (uint64_t)(c->n_shared_experts > 0 ? c->n_shared_experts : 0) * mi;
    uint64_t TK = max_u64(T, DECODE_TOK * K), sum = 0;
    int n_moe = 0;
    bool dense = false;

    for (int l = 0; l < c->num_hidden_layers; l++) {
        bool moe = mt_config_layer_is_moe(c, l);
        n_moe += moe;
        dense = dense || !moe;
    }
    /* the widest MLP (its gate rows) and the widest input of any linear the GEMM dequantizes */
    uint64_t inter = max_u64(dense ? (uint64_t)c->intermediate_size : 0, shared);
    uint64_t max_cols = max_u64(max_u64(D, ql), max_u64(kvl, H * v));
    max_cols = max_u64(max_cols, inter);
    /* the stacked projections' rows: q_a + wk + kv_a, and q_b + the indexer's wq_b */
    uint64_t max_stack = max_u64(ql + ID + kvl + rope, H * qk + IH * ID);

    inter = inter > 0 ? inter : 1;
    add(&sum, T * D * f); /* h, x, y */
    add(&sum, T * D * f);
    add(&sum, T * D * f);
    add(&sum, T * ql * f);
    add(&sum, max_u64(T * H * qk, H * qk + IH * ID) * f);
    add(&sum, T * (kvl + rope) * f);
    add(&sum, T * kvl * f);
    add(&sum, T * rope * f);
    add(&sum, T * H * v * f);
    add(&sum, T * IH * ID * f);
    add(&sum, T * ID * f);
    add(&sum, T * IH * f);
    add(&sum, T * H * kvl * f); /* q_lat, q_pe, o_lat */
    add(&sum, T * H * rope * f);
    add(&sum, T * H * kvl * f);
    uint64_t score_rows = SCORES_MAX / (N * f);
    score_rows = score_rows < 1 ? 1 : score_rows > T ? T : score_rows;
    uint64_t topk = (uint64_t)(c->index_topk > 0 ? c->index_topk : 1);
    add(&sum, score_rows * N * f);
    add(&sum, max_u64(N, score_rows * topk) * sizeof(int32_t));
    add(&sum, MT_PLAN_GPU_SMALL_SCRATCH);
    uint64_t mw = H * N * f;
    if (kvl == 512 && rope == 64 && H % 16 == 0) { /* the tensor-core MLA's splits */
        uint64_t splits = max_u64((N + MLA_SPLIT - 1) / MLA_SPLIT, 1);
        uint64_t ts = (N + MLA_TS_CHUNK - 1) / MLA_TS_CHUNK;
        splits = max_u64(splits, ts < MLA_TS_ONE_MAX ? ts : MLA_TS_ONE_MAX);
        mw = max_u64(mw, splits * H * (kvl + 2) * f);
    }
    add(&sum, mw);
    add(&sum, IH * ID);
    add(&sum, IH * f);
    add(&sum, DECODE_TOK * (uint64_t)c->vocab_size * f);
    add(&sum, max_stack * f);
    add(&sum, TK * inter * f); /* gs, us */
    add(&sum, TK * inter * f);
    add(&sum, T * D * f);     /* xs */
    add(&sum, T * K * D * f); /* ys */
    add(&sum, T * E * f);
    add(&sum, T * K * f);
    add(&sum, T * K * sizeof(int32_t));
    uint64_t GX = max_u64(max_u64(E, DECODE_TOK * K), E + (T * K + DECODE_TOK - 1) / DECODE_TOK);
    add(&sum, (GX + 1) * sizeof(int32_t));
    add(&sum, T * K * sizeof(int32_t));
    add(&sum, T * K * f);
    add(&sum, T * K * sizeof(int32_t));
    add(&sum, GX * EXPERT_PTRS);
    uint64_t xw = DECODE_TOK * K * (inter + D) * f + 256; /* mt_gpu_moe_work_bytes */
    if (T > DECODE_TOK) {
        xw = max_u64(xw, T * K * (mi > 0 ? mi : 1) * f);
    }
    add(&sum, xw + 1);
    /* eng_gpu_moe_alloc: expert tables, the host experts' sum, the router's copies, slots */
    sum += (uint64_t)n_moe * ((E * EXPERT_PTRS + 255) & ~(uint64_t)255);
    add(&sum, T * D * f);
    add(&sum, T * E * f);
    add(&sum, T * K * sizeof(int32_t));
    add(&sum, T * K * f);
    if (host_experts) { /* two expert slots (engine_gpu_moe.c slot_layout) */
        sum += 2 * ((slot_bytes + 255) & ~(uint64_t)255);
    }
    if (T > DECODE_TOK) { /* the GEMM: bf16 planes of x (3 for BF16X3, 1 for fp32), a slab */
        uint64_t planes = f32_cache ? 1 : 3;
        uint64_t slab =
            max_u64(H * (uint64_t)(c->qk_nope_head_dim + c->v_head_dim) * kvl * f, GEMM_SLAB_MIN);
        add(&sum, GEMM_CUBLAS_WS + ((T * max_cols * 2 * planes + 255) & ~(uint64_t)255) +
                      ((slab + 255) & ~(uint64_t)255));
    }
    return sum;
}

uint64_t
mt_plan_host_work_bytes(int k, int64_t hidden, int64_t ctx)
{
    /* engine_gpu_moe.c eng_gpu_moe_init: per (token, expert) pair its input and output row in
       fp32 (xs, ys) and three 4-byte entries (row_tok, pair_row, row_w) */
    int64_t chunk = ctx < MT_PLAN_CHUNK_HOST_MAX ? ctx : MT_PLAN_CHUNK_HOST_MAX;
    uint64_t pairs = (uint64_t)(chunk > 0 ? chunk : 0) * (uint64_t)(k > 0 ? k : 0);

    return pairs * (2 * (uint64_t)(hidden > 0 ? hidden : 0) * sizeof(float) + 3 * 4);
}

int
mt_plan_host_chunk(const struct mt_model_config *c, int64_t ctx, uint64_t slot_bytes,
                   bool f32_cache, uint64_t room, uint64_t *work)
{
    int64_t last = 0;

    for (int64_t chunk = MT_PLAN_CHUNK_HOST_MAX; chunk >= MT_PLAN_CHUNK_HOST; chunk /= 2) {
        int64_t t = chunk < ctx ? chunk : ctx; /* the engine's chunk never passes its context */

        if (t == last) {
            continue;
        }
        last = t;
        *work = mt_plan_gpu_work_bytes(c, (int)t, ctx, true, slot_bytes, f32_cache) +
                MT_PLAN_WORK_SLACK;
        if (*work <= room) {
            return (int)t;
        }
    }
    return 0; /* *work: the shortest host chunk's */
}
