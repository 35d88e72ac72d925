/* SPDX-License-Identifier: MIT */
/*
 * router.cu - the noaux_tc sigmoid router (spec 2.7) on the GPU: one block a token for groups of
 * 32 experts (V3.2's shape), one warp a token for any other shape.
 *
 * The one idea: the correction bias decides WHICH experts run, never HOW MUCH (cpu/ref_moe.c);
 * and the selection must be the CPU's exactly, ties included, so every argmax here is the CPU's
 * argmax_free: the largest value not taken and not NaN, the smaller index on ties, found by a
 * warp reduction instead of a loop.
 */
#include <config.h>

#include "kernels/ops.h"
#include "kernels/cuda_check.cuh"
#include "kernels/pdl.cuh" /* every kernel here: mt_pdl_enter() first */

#include <math.h>

#define ROUTER_MAX_EXPERTS 1024
#define ROUTER_MAX_GROUPS 32
#define ROUTER_WARPS 4 /* tokens per block */

/* The CPU's argmax_free over v[n] in shared memory, computed by one warp: -1 when none. */
static __device__ int
warp_argmax_free(const float *v, const bool *taken, int n)
{
    int lane = threadIdx.x & 31;
    int best = -1;
    float bv = 0.0f;

    for (int i = lane; i < n; i += 32) {
        if (!taken[i] && !isnan(v[i]) && (best < 0 || v[i] > bv)) {
            best = i;
            bv = v[i];
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        int ob = __shfl_xor_sync(0xffffffffu, best, o);
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        if (ob >= 0 && (best < 0 || ov > bv || (ov == bv && ob < best))) {
            best = ob;
            bv = ov;
        }
    }
    return best;
}

static __global__ void
router_kernel(const float *__restrict__ logits, const float *__restrict__ bias, int n_tok, int E,
              int G, int topk_group, int k, bool norm, float scale, int32_t *ids_out,
              float *w_out)
{
    mt_pdl_enter();
    __shared__ float s_all[ROUTER_WARPS][ROUTER_MAX_EXPERTS];
    __shared__ float b_all[ROUTER_WARPS][ROUTER_MAX_EXPERTS];
    __shared__ bool taken_all[ROUTER_WARPS][ROUTER_MAX_EXPERTS];
    __shared__ float gs_all[ROUTER_WARPS][ROUTER_MAX_GROUPS];
    __shared__ bool keep_all[ROUTER_WARPS][ROUTER_MAX_GROUPS];
    int warp = threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    int tok = blockIdx.x * ROUTER_WARPS + warp;
    int per = E / G;

    if (tok >= n_tok) {
        return; /* whole warps only: no block-wide barrier below */
    }
    float *s = s_all[warp];
    float *b = b_all[warp];
    bool *taken = taken_all[warp];
    float *gs = gs_all[warp];
    bool *keep = keep_all[warp];
    const float *lg = logits + (int64_t)tok * E;

    for (int e = lane; e < E; e += 32) {
        s[e] = 1.0f / (1.0f + expf(-lg[e]));
        b[e] = s[e] + (bias != NULL ? bias[e] : 0.0f);
    }
    __syncwarp();
    /* group score: the (up to) 2 largest biased scores, in the CPU's order and NaN behaviour */
    if (lane < G) {
        float m1 = -INFINITY;
        float m2 = -INFINITY;
        for (int e = lane * per; e < (lane + 1) * per; e++) {
            if (b[e] > m1) {
                m2 = m1;
                m1 = b[e];
            } else if (b[e] > m2) {
                m2 = b[e];
            }
        }
        gs[lane] = per >= 2 ? m1 + m2 : m1;
        taken[lane] = false;
        keep[lane] = false;
    }
    __syncwarp();
    for (int j = 0; j < topk_group && j < G; j++) {
        int g = warp_argmax_free(gs, taken, G);
        __syncwarp();
        if (lane == 0 && g >= 0) {
            taken[g] = true;
            keep[g] = true;
        }
        __syncwarp();
    }
    for (int e = lane; e < E; e += 32) {
        taken[e] = !keep[e / per];
    }
    __syncwarp();
    double dsum = 0.0; /* lane 0's sum of the chosen sigmoid scores, in double as the CPU */
    for (int j = 0; j < k; j++) {
        int e = warp_argmax_free(b, taken, E);
        if (e < 0) {
            /* only NaN scores left: the first free expert, as the CPU */
            for (int f = 0; f < E; f++) {
                if (!taken[f]) {
                    e = f;
                    break;
                }
            }
            if (e < 0) {
                e = j % E;
            }
        }
        __syncwarp();
        if (lane == 0) {
            taken[e] = true;
            ids_out[(int64_t)tok * k + j] = e;
            w_out[(int64_t)tok * k + j] = s[e];
            dsum += s[e];
        }
        __syncwarp();
    }
    if (lane == 0) {
        for (int j = 0; j < k; j++) {
            float w = w_out[(int64_t)tok * k + j];
            if (norm) {
                w = (float)(w / (dsum + 1e-20));
            }
            w_out[(int64_t)tok * k + j] = w * scale;
        }
    }
}

/*
 * The same router for groups of 32 experts (V3.2: 256 in 8), k <= 16 and at least k experts in
 * the kept groups, as one block a token with a thread an expert (warp i = group i). Instead of k
 * picks one after another, every candidate finds its own place: a pick's order is larger biased
 * score, then smaller expert, so a kept non-NaN expert's place is the number of kept non-NaN
 * experts before it in that order, and the kept NaN experts follow in expert order (the CPU's
 * "first free expert of a kept group" once the scores run out). Places below k are the picks.
 * Why: picking k times in one warp (router_kernel's shared-memory loops, then a version with the
 * scores in registers and a butterfly a pick) is a chain of ~3,500 dependent instructions: 16-18
 * us a token on the H200 (Nsight Compute, 1.98 GHz), on the critical path of every MoE layer.
 * Same choices, ties and NaN as the CPU (test_gpu_ops).
 */
#define ROUTER_RANK_G 8
#define ROUTER_RANK_K 16

static __global__ void __launch_bounds__(32 * ROUTER_RANK_G)
router_rank_kernel(const float *__restrict__ logits, const float *__restrict__ bias, int G,
                   int topk_group, int k, bool norm, float scale, int32_t *ids_out,
                   float *w_out)
{
    __shared__ float b_sh[32 * ROUTER_RANK_G];   /* biased scores, NaN where not a candidate */
    __shared__ float s_sh[32 * ROUTER_RANK_G];   /* sigmoid scores */
    __shared__ float gs_sh[ROUTER_RANK_G];       /* group scores */
    __shared__ float w_sh[ROUTER_RANK_K];        /* the picks' sigmoid scores, in pick order */
    __shared__ int kept_sh[ROUTER_RANK_G];       /* the kept groups, in group order */
    __shared__ int n_kept_sh;
    mt_pdl_enter();
    int e = threadIdx.x;
    int grp = e / 32;
    int E = 32 * G;
    int tok = blockIdx.x;
    float sg = 1.0f / (1.0f + expf(-logits[(int64_t)tok * E + e]));
    float b = sg + (bias != NULL ? bias[e] : 0.0f);

    /* the group's two largest non-NaN scores (duplicates count), as the CPU's loop */
    float m1 = isnan(b) ? -INFINITY : b;
    float m2 = -INFINITY;
    for (int o = 16; o > 0; o >>= 1) {
        float o1 = __shfl_xor_sync(0xffffffffu, m1, o);
        float o2 = __shfl_xor_sync(0xffffffffu, m2, o);
        m2 = fmaxf(fminf(m1, o1), fmaxf(m2, o2));
        m1 = fmaxf(m1, o1);
    }
    if ((e & 31) == 0) {
        gs_sh[grp] = m1 + m2;
    }
    __syncthreads();
    /* group g (lane g of warp 0) is kept when fewer than topk_group non-NaN groups beat it
     * (value, then index); the kept ones listed in group order */
    if (e < 32) {
        bool kg = false;
        if (e < G) {
            float v = gs_sh[e];
            int rank = 0;
            for (int h = 0; h < G; h++) {
                rank += !isnan(gs_sh[h]) && (gs_sh[h] > v || (gs_sh[h] == v && h < e));
            }
            kg = !isnan(v) && rank < topk_group;
        }
        unsigned kb = __ballot_sync(0xffffffffu, kg);
        if (kg) {
            kept_sh[__popc(kb & ((1u << e) - 1u))] = e;
        }
        if (e == 0) {
            n_kept_sh = __popc(kb);
        }
    }
    __syncthreads();
    int n_kept = n_kept_sh;
    bool kept = false;
    for (int i = 0; i < n_kept; i++) {
        kept |= kept_sh[i] == grp;
    }
    bool valid = kept && !isnan(b);
    b_sh[e] = valid ? b : NAN;
    s_sh[e] = sg;
    int n_valid = __syncthreads_count(valid);
    /* this expert's place among the picks: before it, the valid experts that beat it (or, for a
     * kept NaN expert, every valid one and the kept NaN experts of smaller index) */
    int place = valid ? 0 : n_valid;
    for (int i = 0; i < n_kept; i++) {
        const float *bg = b_sh + 32 * kept_sh[i];
        int e0 = 32 * kept_sh[i];
#pragma unroll 8
        for (int j = 0; j < 32; j++) {
            float v = bg[j];
            place += valid ? (v > b || (v == b && e0 + j < e)) : (isnan(v) && e0 + j < e);
        }
    }
    if (kept && place < k) {
        ids_out[(int64_t)tok * k + place] = e;
        w_sh[place] = sg;
    }
    __syncthreads();
    if (e == 0) {
        /* NaN group scores can keep fewer groups than topk_group, and their experts may run out
         * before k: then the CPU takes expert j % E for pick j */
        for (int j = 32 * n_kept; j < k; j++) {
            ids_out[(int64_t)tok * k + j] = j % E;
            w_sh[j] = s_sh[j % E];
        }
        /* the sum of the picks' scores, in pick order and in double, as the CPU */
        double dsum = 0.0;
        for (int j = 0; j < k; j++) {
            dsum += w_sh[j];
        }
        for (int j = 0; j < k; j++) {
            float w = w_sh[j];
            if (norm) {
                w = (float)(w / (dsum + 1e-20));
            }
            w_out[(int64_t)tok * k + j] = w * scale;
        }
    }
}

extern "C" mt_status_t
mt_gpu_router(const float *logits, const float *bias, const struct mt_gpu_router_params *p,
              int n_tok, int32_t *ids_out, float *w_out, struct CUstream_st *stream)
{
    int G = p->n_group > 0 ? p->n_group : 1;

    if (n_tok < 1 || p->n_experts < 1 || p->n_experts > ROUTER_MAX_EXPERTS ||
        G > ROUTER_MAX_GROUPS || p->n_experts % G != 0 || p->k < 1 || p->k > p->n_experts ||
        logits == NULL || ids_out == NULL || w_out == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu router: %d experts in %d groups, top-%d, %d tokens",
                       p->n_experts, G, p->k, n_tok);
    }
    /* the rank kernel needs k picks inside the kept groups (32 each): else the CPU's last resort
     * (any expert, j % E) may come into play, which only the warp kernel follows */
    if (p->n_experts == 32 * G && G <= ROUTER_RANK_G && p->k <= ROUTER_RANK_K &&
        32 * MT_MIN(p->topk_group, G) >= p->k) {
        mt_pdl_launch(router_rank_kernel, dim3((unsigned)n_tok), dim3(32 * G), 0, stream, logits,
                      bias, G, p->topk_group, p->k, p->norm_topk_prob, p->routed_scaling_factor,
                      ids_out, w_out);
        return mt_cuda_launched("router", stream);
    }
    dim3 grid((unsigned)MT_CEIL_DIV(n_tok, ROUTER_WARPS));
    mt_pdl_launch(router_kernel, grid, dim3(ROUTER_WARPS * 32), 0, stream, logits, bias, n_tok,
                  p->n_experts, G, p->topk_group, p->k, p->norm_topk_prob,
                  p->routed_scaling_factor, ids_out, w_out);
    return mt_cuda_launched("router", stream);
}
