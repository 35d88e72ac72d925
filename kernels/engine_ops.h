/* SPDX-License-Identifier: MIT */
/*
 * engine_ops.h - the GPU engine's glue kernels (engine_ops.cu): what a forward pass needs beside
 * ops.h's tuned kernels, at any model shape. Same conventions as ops.h: device pointers, enqueued
 * on `stream`, MT_ERR_INVAL before any launch for bad arguments, MT_ERR_CUDA for a failed launch.
 * Only for CUDA builds (no stubs): runtime/engine/engine_gpu.c includes it under MT_HAVE_CUDA.
 */
#ifndef MT_KERNELS_ENGINE_OPS_H
#define MT_KERNELS_ENGINE_OPS_H

#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[t] = W x[t] for an F32 W [rows, cols] (one warp per row; small weights: routers, tests). */
mt_status_t mt_gpu_linear_f32(const float *w, int64_t rows, int64_t cols, const float *x,
                              int n_tok, float *y, struct CUstream_st *stream);

/*
 * Absorbed MLA through kv_b ([H * (nope + vd), kvl] in its checkpoint dtype: FP8 with block
 * scales, BF16, or F32) for n_tok (1..8) tokens, each weight read once for all of them:
 * q [n, H, nope + rope] -> q_lat [n, H, kvl] (the nope part through the key half) and
 * q_pe [n, H, rope] (copied). Larger batches: mt_gpu_gemm_absorb_q (gemm.h).
 */
mt_status_t mt_gpu_mla_absorb_q(const float *q, const struct mt_gpu_weight *kvb, int n_tok,
                                int n_heads, int nope, int vd, int rope, float *q_lat,
                                float *q_pe, struct CUstream_st *stream);

/* out[t][h * vd + j] = kv_b[h * (nope + vd) + nope + j] . o_lat[t][h] (the value half). */
mt_status_t mt_gpu_mla_absorb_v(const float *o_lat, const struct mt_gpu_weight *kvb, int n_tok,
                                int n_heads, int nope, int vd, float *out,
                                struct CUstream_st *stream);

/* FP8 kv_b with kvl % 128 == 0 and nope <= 512 (V3.2) takes streaming kernels for both products
 * unless this is off (default on; MT_GPU_ABSORB=0 in the environment turns it off): for tests and
 * benchmarks. mt_gpu_absorb_fast() says which is in force. */
bool mt_gpu_absorb_fast(void);
void mt_gpu_absorb_fast_set(bool on);

/*
 * mt_cpu_mla_absorbed at any shape: one block per head; lat [*, kv_rank] F32 or BF16, kpe
 * [*, rope] fp32, idx NULL for the dense set 0..n_idx-1 (entries < 0 skipped); work: device
 * [n_heads, n_idx] floats.
 */
mt_status_t mt_gpu_mla_decode_any(const float *q_lat, const float *q_pe, int n_heads, int kv_rank,
                                  int rope, enum mt_dtype lat_dtype, const void *lat,
                                  const float *kpe, const int32_t *idx, int n_idx, float scale,
                                  float *work, float *o_lat, struct CUstream_st *stream);

/*
 * kv [n_tok, kvl + rope] (kv_a's output) -> lat_t [n_tok, kvl] = RMSNorm(latent part) * norm_w and
 * the same rows into lat_cache (F32 or BF16, from its first row on: the caller passes the row of
 * position pos0); kpe_t [n_tok, rope] = the rope part rotated at positions pos0.. (interleaved
 * pairs, freqs [rope / 2]) times rope_att, and into kpe_cache. Exactly mt_gpu_rows_convert +
 * mt_gpu_rmsnorm + mt_gpu_rows_convert and mt_gpu_rows_convert + mt_gpu_rope_interleaved +
 * mt_gpu_scale_cols + mt_gpu_rows_convert, in one launch (elementwise.cu). q_a [n_tok, q_rank]
 * (NULL: none), the query's down projection, is RMS-normed in place by the same launch (eps,
 * q_a_norm_w): exactly mt_gpu_rmsnorm.
 */
mt_status_t mt_gpu_mla_kv_epilogue(const float *kv, const float *norm_w, int n_tok, int kvl,
                                   int rope, float eps, const float *freqs, int64_t pos0,
                                   float rope_att, float *lat_t, void *lat_cache,
                                   enum mt_dtype lat_dtype, float *kpe_t, void *kpe_cache,
                                   enum mt_dtype kpe_dtype, float *q_a, const float *q_a_norm_w,
                                   int q_rank, struct CUstream_st *stream);

/*
 * What the attention does to q, the index key, the index queries and the head weights between
 * their projections and their use, for n_tok tokens at positions pos0.. (freqs [half]):
 *   q [n_tok, n_heads, qk]: dims nope .. nope + 2 half rotated (interleaved pairs), times rope_att;
 *   ki [n_tok, id] (NULL: no indexer, the rest is ignored): LayerNorm(k_w, k_b, eps) in place,
 *   then its first 2 half dims rotated (rotate-half pairs) times rope_att, then copied into
 *   key_cache [n_tok, id] fp32 from its first row on (the exact indexer's; NULL: none), or
 *   stored at positions pos0.. of key_split, a split key cache (index_keys_split.cuh; id 128;
 *   NULL: none);
 *   qi [n_tok, ih, id]: each head's first 2 half dims rotated likewise;
 *   wts [n_tok, ih] *= wts_scale
 *   (qi and wts both NULL: the indexer's key only, where no token scores keys).
 * Exactly mt_gpu_rope_interleaved (+ mt_gpu_scale_cols), mt_gpu_layernorm + mt_gpu_rope_half (+
 * factor) + mt_gpu_rows_convert, mt_gpu_rope_half (+ factor) and mt_gpu_scale_cols: the same bits,
 * in one launch instead of six to nine (elementwise.cu).
 */
struct mt_gpu_attn_prologue {
    int n_tok;
    int64_t pos0;
    const float *freqs;
    int half;
    float rope_att;
    float *q;
    int n_heads, qk, nope;
    float *ki;
    const float *k_w, *k_b; /* k_b may be NULL */
    int id;
    float eps;
    float *key_cache;
    void *key_split;
    float *qi;
    int ih;
    float *wts;
    float wts_scale;
};
mt_status_t mt_gpu_attn_prologue(const struct mt_gpu_attn_prologue *a,
                                 struct CUstream_st *stream);

/* dst[r * dst_ld + c] = src[r * src_ld + c] as F32 or BF16 (mt_f32_to_bf16's rounding). */
mt_status_t mt_gpu_rows_convert(void *dst, enum mt_dtype dst_dtype, int64_t dst_ld,
                                const float *src, int64_t src_ld, int n_rows, int dim,
                                struct CUstream_st *stream);

/* x[r * ld + offset + i] *= s for r < n_rows, i < len. */
mt_status_t mt_gpu_scale_cols(float *x, int n_rows, int64_t ld, int offset, int len, float s,
                              struct CUstream_st *stream);

/* dst[i] = src[rows[i]] for i < n rows of dim floats (rows: device). */
mt_status_t mt_gpu_gather_rows(const float *src, const int32_t *rows, int n, int dim, float *dst,
                               struct CUstream_st *stream);

/* y[t] += w[p] * ys[p] for t < n_tok and the pairs p = lists[t k + j], j = 0, 1, ... in that
 * order up to the first negative (lists [n_tok, k], w: device). Each token's sum is its own
 * thread's: a token's pairs listed in pair order give the bits of walking all pairs in order. */
mt_status_t mt_gpu_scatter_add_rows(float *y, const float *ys, const int32_t *lists, int k,
                                    const float *w, int n_tok, int dim,
                                    struct CUstream_st *stream);

#define MT_GPU_HADAMARD_MAX 128

/*
 * DeepSeek's FP8 indexer quantization of n_vec vectors of dim (a power of two <= 128), as
 * mt_cpu_hadamard + mt_cpu_act_quant(ue8m0): q8 [n_vec, dim] e4m3, scale_out[v] = the scale, or
 * w_in[v] * scale * w_mul when w_in is given (the query's head weights with the scales folded in).
 */
mt_status_t mt_gpu_hadamard_quant(const float *x, int n_vec, int dim, uint8_t *q8,
                                  float *scale_out, const float *w_in, float w_mul,
                                  struct CUstream_st *stream);

/* mt_cpu_index_scores_fp8 at any head count and width (one thread per key). */
mt_status_t mt_gpu_index_scores_fp8_any(const uint8_t *q8, const float *w, int n_heads, int dim,
                                        const uint8_t *k8, const float *k_scale, int64_t n_keys,
                                        float *out, struct CUstream_st *stream);

/*
 * h[t] += y[t], then out[t] = RMSNorm(h[t]) * w for n_tok rows of n (out != h): a residual add
 * and the norm after it in one launch, bit for bit mt_gpu_add then mt_gpu_rmsnorm.
 */
mt_status_t mt_gpu_add_rmsnorm(float *h, const float *y, const float *w, int n_tok, int n,
                               float eps, float *out, struct CUstream_st *stream);
/*
 * The router's pairs grouped by expert on the device (moe_group.cu), for mt_gpu_moe_experts:
 * ids, w [n_tok * k] (mt_gpu_router's output), table [n_experts] the layer's experts (device).
 * Writes n_tok * k group slots: experts[g], group_start[g] (n_tok * k + 1 entries), pairs in
 * pair_tok / pair_w; groups by increasing expert id, pairs in (token, slot) order (moe.c's
 * order), the slots after the last group empty. At most 1024 pairs.
 */
mt_status_t mt_gpu_moe_group(const int32_t *ids, const float *w, int n_tok, int k,
                             const struct mt_gpu_expert *table, int n_experts,
                             struct mt_gpu_expert *experts, int32_t *group_start,
                             int32_t *pair_tok, float *pair_w, struct CUstream_st *stream);

/*
 * Greedy sampling (argmax.cu): out->id = the id of x[0..n)'s largest finite value, the smallest
 * id among equal ones (mt_sampler_argmax's rule, so the same id as the host's greedy sampler);
 * out->bad = the first id whose value is not finite (-1: none) with that value. x device memory;
 * out device or pinned host memory (the GPU engine has it written straight into a pinned
 * buffer). work: mt_gpu_argmax_work_bytes() of device memory, 16-byte aligned, zeroed once by
 * mt_gpu_argmax_work_init before its first use (each launch leaves it so); one launch at a
 * time may use it.
 */
struct mt_gpu_argmax_out {
    int32_t id;
    int32_t bad;
    float value;     /* x[id] */
    float bad_value; /* x[bad] */
};
size_t mt_gpu_argmax_work_bytes(void);
mt_status_t mt_gpu_argmax_work_init(void *work, struct CUstream_st *stream);
mt_status_t mt_gpu_argmax(const float *x, int n, void *work, struct mt_gpu_argmax_out *out,
                          struct CUstream_st *stream);

/*
 * MLA's latent cache in DeepSeek's FP8 layout (latent_fp8.cu): a row per token, kvl e4m3 bytes
 * then one power-of-two fp32 scale per 128 values (kvl % 4 == 0). store: n_tok fp32 rows of lat
 * quantized into dst's rows (mt_cpu_act_quant with ue8m0, per 128). expand: rows idx[0..n_rows)
 * (or 0..n_rows-1 where idx is NULL) widened into the same rows of the BF16 [*, kvl] dst, exact.
 */
int64_t mt_gpu_latent_fp8_row_bytes(int kvl);
mt_status_t mt_gpu_latent_fp8_store(const float *lat, int n_tok, int kvl, uint8_t *dst,
                                    struct CUstream_st *stream);
mt_status_t mt_gpu_latent_fp8_expand(const uint8_t *src, int kvl, const int32_t *idx,
                                     int64_t n_rows, uint16_t *dst, struct CUstream_st *stream);

/* cudaMemcpyAsync host -> device (to_device) or device -> host on stream. */
mt_status_t mt_gpu_copy_async(void *dst, const void *src, size_t bytes, int to_device,
                              struct CUstream_st *stream);
mt_status_t mt_gpu_stream_create(struct CUstream_st **stream_out);
void mt_gpu_stream_destroy(struct CUstream_st *stream);

/* What device dev has free and in all. */
mt_status_t mt_gpu_mem_free(int dev, size_t *free_out, size_t *total_out);

#ifdef __cplusplus
}
#endif

#endif /* MT_KERNELS_ENGINE_OPS_H */
