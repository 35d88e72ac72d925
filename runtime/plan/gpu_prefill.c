/* SPDX-License-Identifier: MIT */
/*
 * gpu_prefill.c - the arithmetic of a prompt on the GPU engine outside its routed experts, so
 * that a plan predicts the GPU's share of prefill from what the engine really computes.
 *
 * Three terms, each per prompt row:
 *   - the products with the always-on weights (MLA's projections, the indexer's, the dense
 *     MLPs, the shared experts, the routers): 2 FLOPs a weight;
 *   - MLA in absorbed form over the row's keys (min(position + 1, index_topk): the selected
 *     positions, or all of them where a row has fewer), scores in the latent + rope space and
 *     values in the latent space, for every head of every layer;
 *   - the lightning indexer's scores of the row against every earlier key, for every indexer
 *     head of every layer;
 * and lm_head once a prompt (the engine computes the last row's logits only). The engine's
 * default GEMM arithmetic (BF16X3, kernels/gemm.cu) runs up to MT_PLAN_GPU_PASSES bf16 products
 * a multiply-add, and the attention kernels split their operands into bf16 halves as well, so
 * the model charges every FLOP that many products at the profile's BF16 GEMM rate, and then an
 * efficiency: MT_PLAN_GPU_PREFILL_EFF until a run teaches one (moetier plan --learn).
 *
 * Measured on the H200 (2-layer v32-shape, both layers dense; bench/results/gpu-engine-h200.md,
 * session 35): 46,000-48,800 tok/s at 1,024 tokens, 39,100 at 8,192, 32,200 at 32,768 and
 * 28,800 at 65,536, against 0.50, 0.54, 0.51 and 0.52 of this model at efficiency 1: one
 * efficiency for prompts 64x apart. With one MoE layer's 256 experts on the GPU too
 * (bench/results/hetero-h200.md, session 38) a run taught 0.39 at 8,192 tokens, and the plan
 * made with it predicted 1,024 and 32,768 tokens to 0.81 and 1.02 of what they ran, where the
 * planner's old count (the weights' FLOPs once, lm_head every row, no attention) was 4.6-7x too
 * fast. The model is of one prompt chunk from position 0: a long prompt's later chunks attend
 * to more keys, and run slower than it says.
 */
#include <config.h>

#include "runtime/plan/planner.h"

/* Sum over k = a + 1 .. b of min(k, cap), for 0 <= a <= b. */
static double
sum_capped(double a, double b, double cap)
{
    double lo = a < cap ? a : cap, hi = b < cap ? b : cap;
    /* k = a + 1 .. hi below the cap (when a < cap), then the rest at the cap */
    double below = hi > lo ? (hi * (hi + 1) - lo * (lo + 1)) / 2 : 0.0;

    return below + (b - (hi > a ? hi : a)) * cap;
}

void
mt_plan_prompt_keys(int64_t start, int64_t n, int topk, double *attn_keys, double *index_keys)
{
    double a = (double)start, b = (double)(start + n);

    /* row at position p has p + 1 keys: rows start .. start + n - 1 have start + 1 .. b */
    *index_keys = (b * (b + 1) - a * (a + 1)) / 2;
    *attn_keys = topk > 0 ? sum_capped(a, b, (double)topk) : *index_keys;
}

double
mt_plan_gpu_prompt_flops(const struct mt_model_config *c, const struct mt_model_sizes *s,
                         double rows, double attn_keys, double index_keys, double head_rows)
{
    double weights = (double)s->params[MT_ROLE_ATTN] + (double)s->params[MT_ROLE_INDEXER] +
                     (double)s->params[MT_ROLE_DENSE_MLP] +
                     (double)s->params[MT_ROLE_SHARED_EXPERT] + (double)s->params[MT_ROLE_ROUTER];
    double L = c->num_hidden_layers;
    /* a key: its scores over kv_lora_rank + rope dims, its value over kv_lora_rank, each head */
    double attn = 2.0 * c->num_attention_heads * (2.0 * c->kv_lora_rank + c->qk_rope_head_dim);
    double index = 2.0 * c->index_n_heads * c->index_head_dim;

    return 2.0 * weights * rows + L * (attn * attn_keys + index * index_keys) +
           2.0 * (double)s->params[MT_ROLE_HEAD] * head_rows;
}
