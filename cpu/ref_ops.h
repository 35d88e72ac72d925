/* SPDX-License-Identifier: MIT */
/*
 * ref_ops.h - the fp32 CPU reference of every DeepSeek-V3.2 operation (spec section 2).
 *
 * The one idea: these functions are the oracle, so each one is the plain formula of the spec,
 * written for clarity, in fp32 with weights dequantized as they are read. They know nothing of
 * checkpoints or models: they take raw pointers and shapes (struct mt_cpu_weight for a matrix
 * stored as FP8 with 128x128 block scales, BF16, F16 or F32). Only mt_cpu_linear is parallel
 * (OpenMP over output rows); everything else is called per token by the engine.
 *
 * Files: ref_linear.c (matrices), ref_norm.c (RMSNorm, LayerNorm, SiLU, softmax), ref_rope.c
 * (YaRN table, interleaved and rotate-half RoPE), ref_indexer.c (Hadamard, act_quant, index
 * scores, top-k), ref_attention.c (absorbed MLA over a set of cached positions), ref_moe.c
 * (router, SwiGLU expert).
 */
#ifndef MT_CPU_REF_OPS_H
#define MT_CPU_REF_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/base/dtype.h"
#include "runtime/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- weights ------------------------------------------------------------------------------ */

/*
 * A row-major matrix W[rows, cols] as stored in a checkpoint (borrowed pointers). dtype is one of
 * F32, BF16, F16, or F8_E4M3 with fp32 block scales [ceil(rows/128), ceil(cols/128)].
 */
struct mt_cpu_weight {
    enum mt_dtype dtype;
    const void *data;   /* rows * cols elements of dtype */
    const float *scale; /* FP8 only: block multipliers (DeepSeek's weight_scale_inv) */
    int64_t rows;
    int64_t cols;
};

#define MT_CPU_FP8_BLOCK 128

/* Dequantize row r of w into out[w->cols]. */
void mt_cpu_weight_row(const struct mt_cpu_weight *w, int64_t r, float *out);

/*
 * y[t, :] = W x[t, :] for t < n_tok: x is [n_tok, cols], y is [n_tok, rows], fp32 accumulation.
 * OpenMP over output rows. MT_ERR_NOMEM when a row buffer cannot be allocated.
 */
mt_status_t mt_cpu_linear(const struct mt_cpu_weight *w, const float *x, int n_tok, float *y);

/* ---- norms and small functions (ref_norm.c) ------------------------------------------------ */

/* out = x / sqrt(mean(x^2) + eps) * w over n values (out may alias x). */
void mt_cpu_rmsnorm(const float *x, const float *w, int n, float eps, float *out);

/* out = (x - mean) / sqrt(var + eps) * w + b, biased variance (torch LayerNorm). */
void mt_cpu_layernorm(const float *x, const float *w, const float *b, int n, float eps,
                      float *out);

static inline float
mt_cpu_silu(float x)
{
    return x / (1.0f + __builtin_expf(-x));
}

/*
 * In-place softmax of x[n] (max subtracted, fp32). Entries of -INFINITY get probability 0; a row
 * holding a NaN becomes all NaN (corruption propagates, it is never taken for a masked row).
 */
void mt_cpu_softmax(float *x, int n);

/* ---- rotary embedding (ref_rope.c) --------------------------------------------------------- */

struct mt_cpu_rope_params {
    int dim;                  /* rotary dims (qk_rope_head_dim): dim / 2 frequencies */
    double theta;             /* rope_theta */
    bool yarn;                /* rope_type "yarn" */
    double factor;            /* rope_factor */
    int original_max_pos;     /* original_max_position_embeddings */
    double beta_fast;
    double beta_slow;
};

/*
 * The YaRN frequency table of spec 2.11 (HF _compute_yarn_parameters with truncate=true):
 * f_i = theta^(-2i/dim); low = floor(corr(beta_fast)), high = ceil(corr(beta_slow)) clamped to
 * [0, dim-1], corr(b) = dim*ln(orig/(2*pi*b)) / (2 ln theta);
 * ramp_i = clamp((i-low)/(high-low), 0, 1);
 * f'_i = f_i/factor * ramp_i + f_i * (1 - ramp_i). Without yarn f'_i = f_i. freqs[dim/2].
 */
void mt_cpu_rope_freqs(const struct mt_cpu_rope_params *p, float *freqs);

/* cos and sin of pos * freqs[i] (fp32 product, as HF computes it) for i < half. */
void mt_cpu_rope_cossin(const float *freqs, int half, int64_t pos, float *cos_out,
                        float *sin_out);

/* Interleaved RoPE (MLA): pairs (x[2i], x[2i+1]) rotated by angle i. x[2*half], in place. */
void mt_cpu_rope_interleaved(float *x, const float *cos, const float *sin, int half);

/* Rotate-half (NeoX) RoPE (indexer): pairs (x[i], x[i+half]). x[2*half], in place. */
void mt_cpu_rope_half(float *x, const float *cos, const float *sin, int half);

/* ---- lightning indexer (ref_indexer.c) ----------------------------------------------------- */

/* In place y = x H_n / sqrt(n) with the Sylvester Hadamard matrix; n a power of two. */
void mt_cpu_hadamard(float *x, int n);

/*
 * DeepSeek's act_quant on one group of n values: amax = max(|x|) clamped to >= 1e-4,
 * s = amax / 448, rounded up to a power of two when ue8m0; q = fp8(x / s) (clamped to +-448,
 * round to nearest even). Writes q_out[n] (e4m3fn bytes) and returns s.
 */
float mt_cpu_act_quant(const float *x, int n, bool ue8m0, uint8_t *q_out);

/* The smallest power of two >= s (s > 0, finite): DeepSeek's fast_round_scale. */
float mt_cpu_round_scale_ue8m0(float s);

/*
 * Exact index scores: out[s] = sum_h w[h] * ReLU(q[h, :] . k[s, :]) * scale for s < n_keys.
 * q [n_heads, dim], w [n_heads], k [n_keys, dim] (row stride dim).
 */
void mt_cpu_index_scores(const float *q, const float *w, int n_heads, int dim, const float *k,
                         int64_t n_keys, float scale, float *out);

/*
 * FP8 index scores as DeepGEMM's fp8_mqa_logits: out[s] = k_scale[s] * sum_h ReLU(q8[h] . k8[s])
 * * w[h], the dot products of the decoded e4m3 values in fp32; w already holds the q scales and
 * softmax scale folded in.
 */
void mt_cpu_index_scores_fp8(const uint8_t *q8, const float *w, int n_heads, int dim,
                             const uint8_t *k8, const float *k_scale, int64_t n_keys, float *out);

/*
 * Indices of the k largest of scores[n] into idx_out[k] (k <= n), ordered by decreasing score,
 * ties broken by the smaller index. Deterministic. MT_ERR_NOMEM.
 */
mt_status_t mt_cpu_topk(const float *scores, int64_t n, int64_t k, int32_t *idx_out);

/* ---- absorbed MLA (ref_attention.c) -------------------------------------------------------- */

/*
 * Sparse MLA in absorbed (MQA) form for one query token over the cached positions idx[n_idx]:
 * for each head h, score_s = (q_lat[h] . lat[s] + q_pe[h] . kpe[s]) * scale, p = softmax(score),
 * o_lat[h] = sum_s p_s lat[s]. q_lat [n_heads, kv_rank], q_pe [n_heads, rope], lat [*, kv_rank],
 * kpe [*, rope], o_lat [n_heads, kv_rank]. n_idx == 0 gives zeros. MT_ERR_NOMEM.
 */
mt_status_t mt_cpu_mla_absorbed(const float *q_lat, const float *q_pe, int n_heads, int kv_rank,
                                 int rope, const float *lat, const float *kpe, const int32_t *idx,
                                 int n_idx, float scale, float *o_lat);

/* ---- MoE (ref_moe.c) ----------------------------------------------------------------------- */

struct mt_cpu_router_params {
    int n_experts;
    int n_group;
    int topk_group;
    int k;
    bool norm_topk_prob;
    float routed_scaling_factor;
};

/*
 * The noaux_tc sigmoid router of spec 2.7 for one token: s = sigmoid(logits), b = s + bias,
 * group score = sum of the 2 largest b in each group (the largest alone for groups of one),
 * keep the topk_group best groups, ids = top-k of b among kept experts (ties: smaller id),
 * w = s[ids] (/ sum when norm_topk_prob, + 1e-20 as HF) * routed_scaling_factor.
 * bias may be NULL. ids_out[k], w_out[k] in decreasing order of b. work has room for
 * mt_cpu_router_work_bytes(p) bytes (the caller's workspace: no allocation per token).
 */
void mt_cpu_router(const float *logits, const float *bias, const struct mt_cpu_router_params *p,
                   void *work, int32_t *ids_out, float *w_out);
size_t mt_cpu_router_work_bytes(const struct mt_cpu_router_params *p);

/*
 * SwiGLU MLP for n_tok tokens: y = down(SiLU(gate x) * up x). x [n_tok, hidden],
 * y [n_tok, hidden] (overwritten). MT_ERR_NOMEM.
 */
mt_status_t mt_cpu_swiglu(const struct mt_cpu_weight *gate, const struct mt_cpu_weight *up,
                          const struct mt_cpu_weight *down, const float *x, int n_tok, float *y);

#ifdef __cplusplus
}
#endif

#endif /* MT_CPU_REF_OPS_H */
