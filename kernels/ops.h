/* SPDX-License-Identifier: MIT */
/*
 * ops.h - the decode-path CUDA kernels of DeepSeek-V3.2, behind C entry points: the device arena,
 * GEMV over FP8 (128x128 block scales) and BF16 weights, norms, RoPE, SwiGLU, the router,
 * embedding, the lightning indexer with its exact top-k, sparse MLA in absorbed form, and the
 * grouped GEMV of GPU-resident routed experts.
 *
 * The one idea: every kernel computes what its CPU reference in cpu/ref_ops.h computes, in fp32
 * with weights dequantized in registers, so tests/test_gpu_*.c compare them element by element.
 * All pointers named d_* or documented "device" are device memory; every operation is enqueued on
 * `stream` (NULL: the legacy default stream) and returns before it runs. Entry points validate
 * shapes and alignment and return MT_ERR_INVAL before launching anything; MT_ERR_CUDA when the
 * launch fails (with MT_DEBUG_SYNC=1 the stream is synchronized and asynchronous faults are
 * reported by the kernel's name). Files: arena.cu, gemv.cu, elementwise.cu, router.cu,
 * indexer.cu, topk.cu, mla.cu, moe.cu.
 *
 * Built only when configure found CUDA (MT_HAVE_CUDA); without it every entry point is an inline
 * stub returning MT_ERR_UNSUPPORTED.
 */
#ifndef MT_KERNELS_OPS_H
#define MT_KERNELS_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/base/dtype.h"
#include "runtime/base/status.h"

/* Without CUDA every entry point is a static inline stub (below), declared so here too. */
#ifdef MT_HAVE_CUDA
#define MT_GPU_FN
#else
#define MT_GPU_FN static inline
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* cudaStream_t is `struct CUstream_st *`; C callers need not include the CUDA headers. */
struct CUstream_st;

/* ---- device arena (arena.cu) --------------------------------------------------------------- */

struct mt_gpu_arena;

/*
 * One cudaMalloc of `bytes` on device dev, sub-allocated by mt_gpu_arena_alloc and never grown.
 * MT_ERR_NOMEM when bytes exceeds `budget` (the --gpu-mem limit; 0 = no limit) or the device
 * cannot provide it; the message says how much was asked, the budget and what the device has free.
 */
MT_GPU_FN mt_status_t mt_gpu_arena_create(int dev, size_t bytes, size_t budget,
                                struct mt_gpu_arena **arena_out);

/* Free the arena and everything placed in it. NULL is a no-op. */
MT_GPU_FN void mt_gpu_arena_destroy(struct mt_gpu_arena *arena);

/*
 * Place `bytes` (rounded up to 256) in the arena; *ptr_out is device memory valid until
 * mt_gpu_arena_reset or destroy. `what` names the tensor for the error message. MT_ERR_NOMEM when
 * it does not fit: the message names `what`, the arena's size and use, and the size the arena
 * would need.
 */
MT_GPU_FN mt_status_t mt_gpu_arena_alloc(struct mt_gpu_arena *arena, size_t bytes, const char *what,
                               void **ptr_out);

/* Forget every allocation (the memory stays reserved). */
MT_GPU_FN void mt_gpu_arena_reset(struct mt_gpu_arena *arena);

/* Bytes placed so far (with alignment) and the arena's size. */
MT_GPU_FN size_t mt_gpu_arena_used(const struct mt_gpu_arena *arena);
MT_GPU_FN size_t mt_gpu_arena_size(const struct mt_gpu_arena *arena);

/* Blocking copies host <-> device, and a stream synchronization, for loaders and tests. */
MT_GPU_FN mt_status_t mt_gpu_copy_to_device(void *d_dst, const void *src, size_t bytes);
MT_GPU_FN mt_status_t mt_gpu_copy_to_host(void *dst, const void *d_src, size_t bytes);
MT_GPU_FN mt_status_t mt_gpu_stream_sync(struct CUstream_st *stream);

/* ---- GEMV (gemv.cu) ------------------------------------------------------------------------ */

/* A device matrix W[rows, cols] as stored in the checkpoint: F8_E4M3 with fp32 block scales
 * [ceil(rows/128), ceil(cols/128)] (multipliers, DeepSeek's weight_scale_inv), or BF16. */
struct mt_gpu_weight {
    enum mt_dtype dtype;
    const void *data;   /* device, rows * cols elements, 16-byte aligned */
    const float *scale; /* device, FP8 only */
    int64_t rows;
    int64_t cols;
    bool scale_pow2;    /* FP8: every block scale a power of two (DeepSeek's ue8m0), so each
                           weight times its scale is exact in bf16 (the GEMM's BF16X3 mode
                           then needs no lo half of W) */
};

#define MT_GPU_GEMV_MAX_TOK 8

/*
 * y[t, :] = W x[t, :] for t < n_tok (1..8): x [n_tok, cols], y [n_tok, rows], fp32, device,
 * 16-byte aligned. Each weight byte is read once for all tokens. cols must be a multiple of 16
 * (FP8) or 8 (BF16). FP8 bytes 0x7F/0xFF (NaN) are not supported (checkpoints hold none).
 */
MT_GPU_FN mt_status_t mt_gpu_linear(const struct mt_gpu_weight *w, const float *x, int n_tok,
                                    float *y, struct CUstream_st *stream);

/*
 * y = W (SiLU(gate) * up) for one token, SwiGLU computed while the GEMV stages its input (the
 * same values as mt_gpu_swiglu, one launch fewer): gate and up [cols], 16-byte aligned.
 * MT_ERR_UNSUPPORTED, with nothing launched and no error recorded, where that kernel does not
 * apply (not FP8, a matrix small enough for the CUDA-core loop, too little shared memory,
 * MT_GEMV_SWIGLU=0): the caller then runs mt_gpu_swiglu and mt_gpu_linear.
 */
MT_GPU_FN mt_status_t mt_gpu_linear_swiglu(const struct mt_gpu_weight *w, const float *gate,
                                           const float *up, float *y,
                                           struct CUstream_st *stream);

/* FP8 GEMVs of 1-4 tokens in two 8-warp blocks an SM where their shared memory fits (the
 * default; gemv.cu says why), or always in one 16-warp block (off, or MT_GEMV_TWO_BLOCKS=0 in
 * the environment), for later launches. Results are the same either way to rounding. */
MT_GPU_FN void mt_gpu_gemv_two_blocks_set(bool on);

/* How FP8 GEMVs of 1-4 tokens fetch their weights on devices of compute capability 9.0 and
 * later, for later launches: 1 (the default; 2 the same) by the tensor memory accelerator where
 * the staged x fits beside its ring (gemv.cu says why and where), 0 never (cp.async, as on every
 * other GPU); MT_GEMV_TMA in the environment sets the same. Same results to rounding. */
MT_GPU_FN void mt_gpu_gemv_tma_set(int mode);

/* FP8 GEMV launches that took the TMA ring in this process, and whether the current device can
 * take it at all (a cc >= 9.0 device running sm_90+ code, with the shared memory for its ring);
 * for tests, which say which ring ran. */
MT_GPU_FN unsigned long long mt_gpu_gemv_tma_launches(void);
MT_GPU_FN bool mt_gpu_gemv_tma_usable(void);

/* ---- elementwise and norms (elementwise.cu) ------------------------------------------------ */

/* out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w for n_tok rows of n (out may alias x). */
MT_GPU_FN mt_status_t mt_gpu_rmsnorm(const float *x, const float *w, int n_tok, int n, float eps,
                           float *out, struct CUstream_st *stream);

/* out[t] = (x[t] - mean) / sqrt(var + eps) * w + b (biased variance; b may be NULL). */
MT_GPU_FN mt_status_t mt_gpu_layernorm(const float *x, const float *w, const float *b, int n_tok,
                                       int n, float eps, float *out, struct CUstream_st *stream);

/*
 * RoPE in place on x [n_tok, n_heads, head_stride]: dims [offset, offset + 2*half) of every head
 * rotated by the angles (pos0 + t) * freqs[i] (fp32 product; cos/sin in double, as the CPU
 * reference). Interleaved pairs (2i, 2i+1) for MLA, halves (i, i+half) for the indexer.
 */
MT_GPU_FN mt_status_t mt_gpu_rope_interleaved(float *x, int n_tok, int n_heads, int head_stride,
                                              int offset, const float *freqs, int half,
                                              int64_t pos0, struct CUstream_st *stream);
MT_GPU_FN mt_status_t mt_gpu_rope_half(float *x, int n_tok, int n_heads, int head_stride,
                                       int offset, const float *freqs, int half, int64_t pos0,
                                       struct CUstream_st *stream);

/* out[i] = SiLU(gate[i]) * up[i] for i < n (out may alias either). */
MT_GPU_FN mt_status_t mt_gpu_swiglu(const float *gate, const float *up, size_t n, float *out,
                          struct CUstream_st *stream);

/* y[i] += x[i] for i < n. */
MT_GPU_FN mt_status_t mt_gpu_add(float *y, const float *x, size_t n, struct CUstream_st *stream);

/* out[t, :] = table[ids[t], :] as fp32; table BF16 or F32 [vocab, dim]; ids (device) checked
 * against vocab in the kernel (an id out of range gives a row of NaN). */
MT_GPU_FN mt_status_t mt_gpu_embed(const void *table, enum mt_dtype dtype, int64_t vocab, int dim,
                         const int32_t *ids, int n_tok, float *out, struct CUstream_st *stream);

/* ---- router (router.cu) -------------------------------------------------------------------- */

struct mt_gpu_router_params {
    int n_experts;   /* <= 1024 */
    int n_group;     /* <= 32, divides n_experts */
    int topk_group;
    int k;           /* <= 32 */
    bool norm_topk_prob;
    float routed_scaling_factor;
};

/*
 * The noaux_tc sigmoid router of cpu/ref_moe.c (mt_cpu_router), one token per row: logits
 * [n_tok, n_experts], bias [n_experts] or NULL; ids_out [n_tok, k], w_out [n_tok, k] in
 * decreasing order of the biased score, ties to the smaller id, identical selection rules.
 */
MT_GPU_FN mt_status_t mt_gpu_router(const float *logits, const float *bias,
                          const struct mt_gpu_router_params *p, int n_tok, int32_t *ids_out,
                          float *w_out, struct CUstream_st *stream);

/* ---- lightning indexer (indexer.cu, topk.cu) ---------------------------------------------- */

/*
 * Exact index scores of one query (mt_cpu_index_scores): out[s] = sum_h w[h] *
 * ReLU(scale * q[h] . k[s]) for s < n_keys; q [n_heads, dim], w [n_heads], k [n_keys, dim] fp32.
 * n_heads <= 64, dim <= 128 and a multiple of 4. At V3.2's 64 x 128 on tensor cores, each fp32
 * operand split into two f16 halves (fp32-accurate products; indexer.cu), unless switched off by
 * mt_gpu_index_exact_tc_set(false) or MT_IDX_EXACT_TC=0 in the environment; other shapes on
 * CUDA cores (fp32 FMAs in the CPU's order).
 */
MT_GPU_FN mt_status_t mt_gpu_index_scores(const float *q, const float *w, int n_heads, int dim,
                                const float *k, int64_t n_keys, float scale, float *out,
                                struct CUstream_st *stream);

/*
 * The same for a batch of n_q queries, as a prompt's tokens need them: query y (q + y n_heads
 * dim, w + y n_heads) scores the first n_keys0 + y keys into row y of out (ld >= n_keys0 + n_q - 1
 * floats a row); the rest of each row is set to NaN, so mt_gpu_topk over whole rows of ld takes
 * the same set as over each query's own keys when every query has at least k of them (NaN ranks
 * last and ties go to the smaller index: a query's own keys first, NaN-scored ones too).
 * n_q <= 65535.
 */
MT_GPU_FN mt_status_t mt_gpu_index_scores_rows(const float *q, const float *w, int n_heads, int dim,
                                               const float *k, int64_t n_keys0, int n_q,
                                               float scale, float *out, int64_t ld,
                                               struct CUstream_st *stream);
/* The tensor-core path of mt_gpu_index_scores on (the default) or off, for later launches. */
MT_GPU_FN void mt_gpu_index_exact_tc_set(bool on);
/* That path's keys through a shared-memory ring where it fits (on, the default) or in registers
 * (off, or MT_IDX_EXACT_RING=0), for later launches. The same bits either way. */
MT_GPU_FN void mt_gpu_index_exact_ring_set(bool on);

/*
 * The split index key cache (at 64 heads x 128 dims, where the exact scores run on tensor cores
 * with wgmma or with the key ring's 128 KB of shared memory a block: H100/H200, A100): the exact
 * keys stored already split into the f16 halves the tensor cores take, in groups of 64 keys
 * (index_keys_split.cuh says the layout; 516 bytes a key), so that the scores only stream them
 * (at 131,072 keys on the H200: wgmma 71% of the HBM read, mma.sync 59%, against 54% for fp32
 * keys). mt_gpu_index_keys_split says whether to keep the exact cache in that layout for these
 * shapes (off with mt_gpu_index_keys_split_set(false) or MT_IDX_SPLIT_KEYS=0, or where the
 * tensor-core path is off: then keep fp32 keys and mt_gpu_index_scores); a cache of cap keys
 * takes mt_gpu_index_keys_split_bytes(cap) bytes; mt_gpu_index_keys_split_store writes n fp32
 * keys (rows of 128, 16-byte aligned) at positions pos0..; mt_gpu_index_scores_split is
 * mt_gpu_index_scores_rows (n_q = 1: one query) on it: wgmma on H100/H200 built for sm_90a
 * (off with mt_gpu_index_exact_wgmma_set(false) or MT_IDX_EXACT_WGMMA=0), mma.sync elsewhere.
 * n_ready (0..n_keys0 + n_q - 1): keys [0, n_ready) were in the cache before the stream's
 * previous kernel ran (the cache of earlier steps), so, launched with programmatic dependent
 * launch (pdl.cuh), it starts copying them while that kernel finishes; 0 copies every key
 * after it. mt_gpu_index_exact_wgmma_active says whether it runs on wgmma here now.
 */
MT_GPU_FN bool mt_gpu_index_keys_split(int n_heads, int dim);
MT_GPU_FN void mt_gpu_index_keys_split_set(bool on);
MT_GPU_FN void mt_gpu_index_exact_wgmma_set(bool on);
MT_GPU_FN bool mt_gpu_index_exact_wgmma_active(void);
MT_GPU_FN size_t mt_gpu_index_keys_split_bytes(int64_t cap);
MT_GPU_FN mt_status_t mt_gpu_index_keys_split_store(void *cache, int64_t pos0, const float *keys,
                                                    int64_t n, struct CUstream_st *stream);
MT_GPU_FN mt_status_t mt_gpu_index_scores_split(const float *q, const float *w, const void *keys,
                                                int64_t n_keys0, int n_q, int64_t n_ready,
                                                float scale, float *out, int64_t ld,
                                                struct CUstream_st *stream);

/*
 * FP8 index scores (mt_cpu_index_scores_fp8, DeepGEMM's fp8_mqa_logits): out[s] = k_scale[s] *
 * sum_h ReLU(q8[h] . k8[s]) * w[h]; q8 [64, 128] and k8 [n_keys, 128] e4m3 bytes, w [64] with the
 * q scales folded in. Tensor cores (mma.sync f16 -> f32, sm_80+; on sm_89+ a kernel that converts
 * each byte once in hardware): e4m3 -> f16 is exact and so is each product; only the order of
 * the fp32 sums differs from the CPU. n_heads must be 64 and dim 128 (the V3.2 indexer); q8 and
 * k8 16-byte aligned. n_ready (0..n_keys): the keys [0, n_ready) and their scales were in memory
 * before the stream's previous kernel ran (the cache of earlier steps), so the sm_89+ kernel,
 * launched with programmatic dependent launch (pdl.cuh), starts reading them while that kernel
 * finishes; 0 reads every key after it.
 */
MT_GPU_FN mt_status_t mt_gpu_index_scores_fp8(const uint8_t *q8, const float *w, int n_heads,
                                              int dim, const uint8_t *k8, const float *k_scale,
                                              int64_t n_keys, int64_t n_ready, float *out,
                                              struct CUstream_st *stream);
/*
 * The same for a prompt's queries in one launch: query y (q8 + y 64 x 128 bytes, w + y 64) scores
 * the first n_keys0 + y keys into out + y ld and writes NaN past them to ld (>= n_keys0 + n_rows
 * - 1), so that mt_gpu_topk over whole rows picks only its keys; 1 <= n_rows <= 65,535. Each key's
 * score is the one mt_gpu_index_scores_fp8 gives (the same products in the same order).
 */
MT_GPU_FN mt_status_t mt_gpu_index_scores_fp8_rows(const uint8_t *q8, const float *w, int n_heads,
                                                   int dim, const uint8_t *k8,
                                                   const float *k_scale, int64_t n_keys0,
                                                   int n_rows, float *out, int64_t ld,
                                                   struct CUstream_st *stream);

/*
 * Exact top-k of each of n_rows rows of scores (row r at scores + r * ld, lens[r] values, or n
 * for every row when lens is NULL): the SAME set as mt_cpu_topk. The rule: larger score first;
 * equal scores (with -0.0 == +0.0) go to the smaller index; NaN ranks below every number (NaNs
 * among themselves by index). Radix select on the 64-bit key (ordered float bits, ~index), so
 * there are no ties and the set is exact, never a truncated candidate list. idx_out [n_rows, k]:
 * the chosen indices in no particular order; a row with len <= k returns all its len indices
 * followed by -1. count_out [n_rows] (may be NULL) gets min(len, k). k <= 4096, n < 2^31.
 *
 * scratch: NULL, or device memory of mt_gpu_topk_scratch_bytes() bytes that this call may use
 * (no initial contents needed; calls on one stream may share it). With it, one row (n_rows 1, lens
 * NULL, n > k) is selected by a cooperative grid over many SMs (the decode row), or where n <=
 * 6,144 by one block holding the row in registers; without it, or for several rows, one block
 * a row.
 */
MT_GPU_FN size_t mt_gpu_topk_scratch_bytes(void);
MT_GPU_FN mt_status_t mt_gpu_topk(const float *scores, int64_t ld, int n_rows, int64_t n,
                                  const int32_t *lens, int k, int32_t *idx_out,
                                  int32_t *count_out, void *scratch, struct CUstream_st *stream);

/* ---- sparse MLA decode (mla.cu) ------------------------------------------------------------ */

/*
 * Absorbed MLA of one query token (mt_cpu_mla_absorbed): for each head h, score_s = scale *
 * (q_lat[h] . lat[s] + q_pe[h] . kpe[s]) over the positions s = idx[j] (j < n_idx; idx NULL
 * means the dense causal set 0..n_idx-1), softmax in fp32, o_lat[h] = sum_s p_s lat[s].
 * q_lat [n_heads, 512], q_pe [n_heads, 64], o_lat [n_heads, 512] fp32; the cache lat [*, 512] and
 * kpe [*, 64] are BF16 (default) or F32 (exact mode), cache_dtype says which. n_heads a multiple
 * of 16; kv_rank 512 and rope 64 (V3.2). idx entries < 0 are skipped (padding of a short top-k).
 * work: device scratch of mt_gpu_mla_work_bytes(n_heads, n_idx) bytes. A BF16 cache runs on
 * tensor cores (mma.sync bf16, any sm_80+ GPU; q and the probabilities split into two bf16 each
 * so that the result stays within the fp32 kernel's bounds), an F32 cache on CUDA cores.
 */
MT_GPU_FN size_t mt_gpu_mla_work_bytes(int n_heads, int n_idx);
MT_GPU_FN mt_status_t mt_gpu_mla_decode(const float *q_lat, const float *q_pe, int n_heads,
                                        int kv_rank, int rope, enum mt_dtype cache_dtype,
                                        const void *lat, const void *kpe, const int32_t *idx,
                                        int n_idx, float scale, void *work, float *o_lat,
                                        struct CUstream_st *stream);
/*
 * Whether mt_gpu_mla_decode runs a BF16 cache (16-byte aligned q, at least one position) on a
 * tensor-core kernel on the current device; MT_MLA_CUDA_CORES=1 makes it false. For tests and
 * reports. Where it is true, mt_gpu_mla_prompt runs too.
 */
MT_GPU_FN mt_status_t mt_gpu_mla_tensor_cores(bool *out);

/*
 * mt_gpu_mla_decode for n_rows query tokens of a prompt in one launch, BF16 cache only: row r
 * takes q_lat + r n_heads 512, q_pe + r n_heads 64 and writes o_lat + r n_heads 512. Its
 * positions: with idx, idx[r * ld_idx + j] for j < n_idx (entries < 0 skipped); without, the
 * dense causal set 0 .. n_first + r - 1. One block a row and 16 heads walks all of the row's
 * positions (no splits to merge: many rows fill the GPU), so the work space is none and each row
 * gets what mt_gpu_mla_decode gets with a single split. n_rows <= 65535. Needs
 * mt_gpu_mla_tensor_cores and 16-byte aligned q; MT_ERR_INVAL otherwise.
 */
MT_GPU_FN mt_status_t mt_gpu_mla_prompt(const float *q_lat, const float *q_pe, int n_heads,
                                        int kv_rank, int rope, enum mt_dtype cache_dtype,
                                        const void *lat, const void *kpe, const int32_t *idx,
                                        int64_t ld_idx, int n_idx, int n_first, int n_rows,
                                        float scale, float *o_lat, struct CUstream_st *stream);

/* ---- routed experts resident on the GPU (moe.cu) ------------------------------------------- */

/* One expert's FP8 matrices (device): gate, up [inter, hidden], down [hidden, inter] + scales. */
struct mt_gpu_expert {
    const void *gate;
    const void *up;
    const void *down;
    const float *gate_scale;
    const float *up_scale;
    const float *down_scale;
};

/*
 * Grouped SwiGLU experts for a few tokens: y[t] += sum over pairs p of token t of
 * w[p] * down_e(SiLU(gate_e x[t]) * up_e x[t]), e the expert of p's group. Pairs are grouped by
 * expert: group g is expert experts[g] (a device array of n_groups structs) with the pairs
 * group_start[g] .. group_start[g+1]-1 (device), each pair p naming pair_tok[p] and weighing
 * pair_w[p] (device). Each expert's weights are read once for all its tokens; max_group_tok
 * (1..8; with y_pairs 1..mt_gpu_moe_chunk_group_max()) bounds the pairs of any group, and the
 * caller must keep to it (a larger group's pairs past it are not computed, and not detected).
 * Sums over a token's pairs run in pair order
 * (deterministic). work: mt_gpu_moe_work_bytes(n_pairs, inter, hidden) bytes of device scratch.
 * With y_pairs (device [n_pairs, hidden]) each pair's expert output, unweighted, goes there
 * instead and y is not touched (a prompt chunk's hundreds of tokens: the caller adds them up);
 * work then needs only n_pairs * inter floats.
 */
struct mt_gpu_moe_args {
    int hidden;
    int inter;
    int n_groups;
    int n_pairs;
    int max_group_tok;
    int n_tok;
    const struct mt_gpu_expert *experts; /* device [n_groups] */
    const int32_t *group_start;          /* device [n_groups + 1] */
    const int32_t *pair_tok;             /* device [n_pairs] */
    const float *pair_w;                 /* device [n_pairs] */
    const float *x;                      /* device [n_tok, hidden] */
    float *y;                            /* device [n_tok, hidden], accumulated into */
    void *work;
    float *y_pairs;                      /* NULL, or device [n_pairs, hidden]: see above */
};

MT_GPU_FN size_t mt_gpu_moe_work_bytes(int n_pairs, int inter, int hidden);
MT_GPU_FN mt_status_t mt_gpu_moe_experts(const struct mt_gpu_moe_args *a,
                                         struct CUstream_st *stream);

/*
 * A prompt chunk's experts (y_pairs set) as small GEMMs (moe_chunk.cu): groups of up to
 * MT_GPU_MOE_CHUNK_TOK pairs, each block reading its weights once for all of them.
 * mt_gpu_moe_experts takes this path for every call with y_pairs unless MT_MOE_CHUNK_GEMM=0 is in
 * the environment (the older core, groups of up to MT_GPU_GEMV_MAX_TOK);
 * mt_gpu_moe_chunk_group_max() says which, for the caller that forms the groups. work needs
 * n_pairs * inter floats.
 */
#define MT_GPU_MOE_CHUNK_TOK 32
MT_GPU_FN int mt_gpu_moe_chunk_group_max(void);
MT_GPU_FN mt_status_t mt_gpu_moe_chunk_experts(const struct mt_gpu_moe_args *a,
                                               struct CUstream_st *stream);

/* ---- programmatic dependent launch (pdl.cu, kernels/pdl.cuh) ------------------------------- */

/*
 * Whether GEMVs, experts, norms and the other kernels of gemv.cu, moe.cu, elementwise.cu,
 * router.cu, moe_group.cu and engine_ops.cu launch on the current device with programmatic
 * stream serialization (their weight loads start while the previous kernel finishes): a
 * cc >= 9.0 device running code built for sm_90+, and not switched off by MT_GPU_PDL=0 in the
 * environment or by mt_gpu_pdl_set(false). Results are the same bits either way.
 */
MT_GPU_FN bool mt_gpu_pdl_active(void);
/* Switch programmatic launches on (the default) or off for launches made after the call. */
MT_GPU_FN void mt_gpu_pdl_set(bool on);

#ifndef MT_HAVE_CUDA

static inline mt_status_t
mt_gpu_ops_unsupported_(void)
{
    return mt_fail(MT_ERR_UNSUPPORTED, 0, "moetier was built without CUDA (configure --with-cuda)");
}

static inline mt_status_t
mt_gpu_arena_create(int dev, size_t bytes, size_t budget, struct mt_gpu_arena **arena_out)
{
    (void)dev, (void)bytes, (void)budget, (void)arena_out;
    return mt_gpu_ops_unsupported_();
}

static inline void
mt_gpu_arena_destroy(struct mt_gpu_arena *arena)
{
    (void)arena;
}

static inline mt_status_t
mt_gpu_arena_alloc(struct mt_gpu_arena *arena, size_t bytes, const char *what, void **ptr_out)
{
    (void)arena, (void)bytes, (void)what, (void)ptr_out;
    return mt_gpu_ops_unsupported_();
}

static inline void
mt_gpu_arena_reset(struct mt_gpu_arena *arena)
{
    (void)arena;
}

static inline size_t
mt_gpu_arena_used(const struct mt_gpu_arena *arena)
{
    (void)arena;
    return 0;
}

static inline size_t
mt_gpu_arena_size(const struct mt_gpu_arena *arena)
{
    (void)arena;
    return 0;
}

static inline mt_status_t
mt_gpu_copy_to_device(void *d_dst, const void *src, size_t bytes)
{
    (void)d_dst, (void)src, (void)bytes;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_copy_to_host(void *dst, const void *d_src, size_t bytes)
{
    (void)dst, (void)d_src, (void)bytes;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_stream_sync(struct CUstream_st *stream)
{
    (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_linear(const struct mt_gpu_weight *w, const float *x, int n_tok, float *y,
              struct CUstream_st *stream)
{
    (void)w, (void)x, (void)n_tok, (void)y, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_linear_swiglu(const struct mt_gpu_weight *w, const float *gate, const float *up, float *y,
                     struct CUstream_st *stream)
{
    (void)w, (void)gate, (void)up, (void)y, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline void
mt_gpu_gemv_two_blocks_set(bool on)
{
    (void)on;
}

static inline void
mt_gpu_gemv_tma_set(int mode)
{
    (void)mode;
}

static inline unsigned long long
mt_gpu_gemv_tma_launches(void)
{
    return 0;
}

static inline bool
mt_gpu_gemv_tma_usable(void)
{
    return false;
}

static inline mt_status_t
mt_gpu_rmsnorm(const float *x, const float *w, int n_tok, int n, float eps, float *out,
               struct CUstream_st *stream)
{
    (void)x, (void)w, (void)n_tok, (void)n, (void)eps, (void)out, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_layernorm(const float *x, const float *w, const float *b, int n_tok, int n, float eps,
                 float *out, struct CUstream_st *stream)
{
    (void)x, (void)w, (void)b, (void)n_tok, (void)n, (void)eps, (void)out, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_rope_interleaved(float *x, int n_tok, int n_heads, int head_stride, int offset,
                        const float *freqs, int half, int64_t pos0, struct CUstream_st *stream)
{
    (void)x, (void)n_tok, (void)n_heads, (void)head_stride, (void)offset, (void)freqs;
    (void)half, (void)pos0, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_rope_half(float *x, int n_tok, int n_heads, int head_stride, int offset,
                 const float *freqs, int half, int64_t pos0, struct CUstream_st *stream)
{
    (void)x, (void)n_tok, (void)n_heads, (void)head_stride, (void)offset, (void)freqs;
    (void)half, (void)pos0, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_swiglu(const float *gate, const float *up, size_t n, float *out, struct CUstream_st *stream)
{
    (void)gate, (void)up, (void)n, (void)out, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_add(float *y, const float *x, size_t n, struct CUstream_st *stream)
{
    (void)y, (void)x, (void)n, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_embed(const void *table, enum mt_dtype dtype, int64_t vocab, int dim, const int32_t *ids,
             int n_tok, float *out, struct CUstream_st *stream)
{
    (void)table, (void)dtype, (void)vocab, (void)dim, (void)ids, (void)n_tok, (void)out;
    (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_router(const float *logits, const float *bias, const struct mt_gpu_router_params *p,
              int n_tok, int32_t *ids_out, float *w_out, struct CUstream_st *stream)
{
    (void)logits, (void)bias, (void)p, (void)n_tok, (void)ids_out, (void)w_out, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_index_scores_rows(const float *q, const float *w, int n_heads, int dim, const float *k,
                         int64_t n_keys0, int n_q, float scale, float *out, int64_t ld,
                         struct CUstream_st *stream)
{
    (void)q, (void)w, (void)n_heads, (void)dim, (void)k, (void)n_keys0, (void)n_q, (void)scale;
    (void)out, (void)ld, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_index_scores(const float *q, const float *w, int n_heads, int dim, const float *k,
                    int64_t n_keys, float scale, float *out, struct CUstream_st *stream)
{
    (void)q, (void)w, (void)n_heads, (void)dim, (void)k, (void)n_keys, (void)scale, (void)out;
    (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline void
mt_gpu_index_exact_tc_set(bool on)
{
    (void)on;
}

static inline void
mt_gpu_index_exact_ring_set(bool on)
{
    (void)on;
}

static inline bool
mt_gpu_index_keys_split(int n_heads, int dim)
{
    (void)n_heads, (void)dim;
    return false;
}

static inline void
mt_gpu_index_keys_split_set(bool on)
{
    (void)on;
}

static inline void
mt_gpu_index_exact_wgmma_set(bool on)
{
    (void)on;
}

static inline bool
mt_gpu_index_exact_wgmma_active(void)
{
    return false;
}

static inline size_t
mt_gpu_index_keys_split_bytes(int64_t cap)
{
    (void)cap;
    return 0;
}

static inline mt_status_t
mt_gpu_index_keys_split_store(void *cache, int64_t pos0, const float *keys, int64_t n,
                              struct CUstream_st *stream)
{
    (void)cache, (void)pos0, (void)keys, (void)n, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_index_scores_split(const float *q, const float *w, const void *keys, int64_t n_keys0,
                          int n_q, int64_t n_ready, float scale, float *out, int64_t ld,
                          struct CUstream_st *stream)
{
    (void)q, (void)w, (void)keys, (void)n_keys0, (void)n_q, (void)n_ready, (void)scale;
    (void)out, (void)ld, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_index_scores_fp8(const uint8_t *q8, const float *w, int n_heads, int dim,
                        const uint8_t *k8, const float *k_scale, int64_t n_keys, int64_t n_ready,
                        float *out, struct CUstream_st *stream)
{
    (void)q8, (void)w, (void)n_heads, (void)dim, (void)k8, (void)k_scale, (void)n_keys;
    (void)n_ready, (void)out, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_index_scores_fp8_rows(const uint8_t *q8, const float *w, int n_heads, int dim,
                             const uint8_t *k8, const float *k_scale, int64_t n_keys0, int n_rows,
                             float *out, int64_t ld, struct CUstream_st *stream)
{
    (void)q8, (void)w, (void)n_heads, (void)dim, (void)k8, (void)k_scale, (void)n_keys0;
    (void)n_rows, (void)out, (void)ld, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline size_t
mt_gpu_topk_scratch_bytes(void)
{
    return 0;
}

static inline mt_status_t
mt_gpu_topk(const float *scores, int64_t ld, int n_rows, int64_t n, const int32_t *lens, int k,
            int32_t *idx_out, int32_t *count_out, void *scratch, struct CUstream_st *stream)
{
    (void)scores, (void)ld, (void)n_rows, (void)n, (void)lens, (void)k, (void)idx_out;
    (void)count_out, (void)scratch, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline size_t
mt_gpu_mla_work_bytes(int n_heads, int n_idx)
{
    (void)n_heads, (void)n_idx;
    return 0;
}

static inline mt_status_t
mt_gpu_mla_decode(const float *q_lat, const float *q_pe, int n_heads, int kv_rank, int rope,
                  enum mt_dtype cache_dtype, const void *lat, const void *kpe, const int32_t *idx,
                  int n_idx, float scale, void *work, float *o_lat, struct CUstream_st *stream)
{
    (void)q_lat, (void)q_pe, (void)n_heads, (void)kv_rank, (void)rope, (void)cache_dtype;
    (void)lat, (void)kpe, (void)idx, (void)n_idx, (void)scale, (void)work, (void)o_lat;
    (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_mla_tensor_cores(bool *out)
{
    *out = false;
    return mt_gpu_ops_unsupported_();
}

static inline mt_status_t
mt_gpu_mla_prompt(const float *q_lat, const float *q_pe, int n_heads, int kv_rank, int rope,
                  enum mt_dtype cache_dtype, const void *lat, const void *kpe, const int32_t *idx,
                  int64_t ld_idx, int n_idx, int n_first, int n_rows, float scale, float *o_lat,
                  struct CUstream_st *stream)
{
    (void)q_lat, (void)q_pe, (void)n_heads, (void)kv_rank, (void)rope, (void)cache_dtype;
    (void)lat, (void)kpe, (void)idx, (void)ld_idx, (void)n_idx, (void)n_first, (void)n_rows;
    (void)scale, (void)o_lat, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline size_t
mt_gpu_moe_work_bytes(int n_pairs, int inter, int hidden)
{
    (void)n_pairs, (void)inter, (void)hidden;
    return 0;
}

static inline mt_status_t
mt_gpu_moe_experts(const struct mt_gpu_moe_args *a, struct CUstream_st *stream)
{
    (void)a, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline int
mt_gpu_moe_chunk_group_max(void)
{
    return MT_GPU_GEMV_MAX_TOK;
}

static inline mt_status_t
mt_gpu_moe_chunk_experts(const struct mt_gpu_moe_args *a, struct CUstream_st *stream)
{
    (void)a, (void)stream;
    return mt_gpu_ops_unsupported_();
}

static inline bool
mt_gpu_pdl_active(void)
{
    return false;
}

static inline void
mt_gpu_pdl_set(bool on)
{
    (void)on;
}

#endif /* !MT_HAVE_CUDA */

#ifdef __cplusplus
}
#endif

#endif /* MT_KERNELS_OPS_H */
