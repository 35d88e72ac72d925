/* SPDX-License-Identifier: MIT */
/*
 * router.cu - the noaux_tc sigmoid router (spec 2.7) on the GPU, one warp per token.
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
 * The same router for groups of 32 experts (V3.2: 256 in 8) and k <= 16, with every score in
 * registers: lane l holds expert 32 i + l of each group i, so a group's top-2 is a butterfly over
 * the warp, the group choice is a few compares every lane makes alike, and each of the k picks is
 * one pass over the lane's G values and a butterfly, where router_kernel loops over shared memory
 * (one lane 32 steps a group; 16 us a token on the H200 by Nsight Compute, as long as a 30 MB
 * GEMV). Same choices, ties and NaN as the CPU: a pick is the largest (b, then smaller e) among
 * the kept groups' free non-NaN scores; with none left, the first free expert of a kept group.
 */
#define ROUTER_FAST_G 8
#define ROUTER_FAST_K 16

/* (value, index, score) a is better than b: larger value, then smaller index; NaN never. */
static __device__ __forceinline__ bool
pick_better(float av, int ai, float bv, int bi)
{
    return ai >= 0 && (bi < 0 || av > bv || (av == bv && ai < bi));
}

static __global__ void
router_fast_kernel(const float *__restrict__ logits, const float *__restrict__ bias, int n_tok,
                   int G, int topk_group, int k, bool norm, float scale, int32_t *ids_out,
                   float *w_out)
{
    mt_pdl_enter();
    int lane = threadIdx.x & 31;
    int tok = blockIdx.x * ROUTER_WARPS + (int)(threadIdx.x / 32);
    float s[ROUTER_FAST_G];
    float b[ROUTER_FAST_G];
    float gs[ROUTER_FAST_G];
    bool keep[ROUTER_FAST_G];
    unsigned chosen = 0; /* bit i: this lane's expert of group i is taken */

    if (tok >= n_tok) {
        return;
    }
    const float *lg = logits + (int64_t)tok * G * 32;
#pragma unroll
    for (int i = 0; i < ROUTER_FAST_G; i++) {
        s[i] = 0.0f;
        b[i] = 0.0f;
        gs[i] = 0.0f;
        if (i < G) {
            int e = 32 * i + lane;
            s[i] = 1.0f / (1.0f + expf(-lg[e]));
            b[i] = s[i] + (bias != NULL ? bias[e] : 0.0f);
            /* the group's two largest non-NaN scores (duplicates count), as the CPU's loop */
            float m1 = isnan(b[i]) ? -INFINITY : b[i];
            float m2 = -INFINITY;
            for (int o = 16; o > 0; o >>= 1) {
                float o1 = __shfl_xor_sync(0xffffffffu, m1, o);
                float o2 = __shfl_xor_sync(0xffffffffu, m2, o);
                m2 = fmaxf(fminf(m1, o1), fmaxf(m2, o2));
                m1 = fmaxf(m1, o1);
            }
            gs[i] = m1 + m2;
        }
    }
    /* group i is kept when fewer than topk_group non-NaN groups beat it (value, then index) */
#pragma unroll
    for (int i = 0; i < ROUTER_FAST_G; i++) {
        int rank = 0;
#pragma unroll
        for (int j = 0; j < ROUTER_FAST_G; j++) {
            rank += j < G && i < G && !isnan(gs[j]) && (gs[j] > gs[i] || (gs[j] == gs[i] && j < i));
        }
        keep[i] = i < G && !isnan(gs[i]) && rank < topk_group;
    }
    double dsum = 0.0; /* lane 0's sum of the chosen sigmoid scores, in double as the CPU */
    float wk[ROUTER_FAST_K];
#pragma unroll
    for (int j = 0; j < ROUTER_FAST_K; j++) {
        if (j >= k) {
            break;
        }
        float bv = 0.0f;
        int be = -1;
        float bs = 0.0f;
        int fe = -1; /* the first free expert of a kept group, for when no score is left */
#pragma unroll
        for (int i = 0; i < ROUTER_FAST_G; i++) {
            int e = 32 * i + lane;
            bool free = i < G && keep[i] && !(chosen >> i & 1u);
            if (free && !isnan(b[i]) && pick_better(b[i], e, bv, be)) {
                bv = b[i];
                be = e;
                bs = s[i];
            }
            if (free && fe < 0) {
                fe = e;
            }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oe = __shfl_xor_sync(0xffffffffu, be, o);
            float os = __shfl_xor_sync(0xffffffffu, bs, o);
            int of = __shfl_xor_sync(0xffffffffu, fe, o);
            if (pick_better(ov, oe, bv, be)) {
                bv = ov;
                be = oe;
                bs = os;
            }
            fe = fe < 0 || (of >= 0 && of < fe) ? of : fe;
        }
        int e = be;
        if (e < 0) {
            e = fe >= 0 ? fe : j % (32 * G);
#pragma unroll
            for (int i = 0; i < ROUTER_FAST_G; i++) { /* its sigmoid score, from its lane */
                float si = __shfl_sync(0xffffffffu, s[i], e & 31);
                bs = i == e / 32 ? si : bs;
            }
        }
        if ((e & 31) == lane && e / 32 < G) {
            chosen |= 1u << (e / 32);
        }
        wk[j] = bs;
        if (lane == 0) {
            ids_out[(int64_t)tok * k + j] = e;
            dsum += bs;
        }
    }
    if (lane == 0) {
#pragma unroll
        for (int j = 0; j < ROUTER_FAST_K; j++) {
            if (j >= k) {
                break;
            }
            float w = wk[j];
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
    dim3 grid((unsigned)MT_CEIL_DIV(n_tok, ROUTER_WARPS));
    if (p->n_experts == 32 * G && G <= ROUTER_FAST_G && p->k <= ROUTER_FAST_K) {
        mt_pdl_launch(router_fast_kernel, grid, dim3(ROUTER_WARPS * 32), 0, stream, logits, bias,
                      n_tok, G, p->topk_group, p->k, p->norm_topk_prob, p->routed_scaling_factor,
                      ids_out, w_out);
        return mt_cuda_launched("router", stream);
    }
    mt_pdl_launch(router_kernel, grid, dim3(ROUTER_WARPS * 32), 0, stream, logits, bias, n_tok,
                  p->n_experts, G, p->topk_group, p->k, p->norm_topk_prob,
                  p->routed_scaling_factor, ids_out, w_out);
    return mt_cuda_launched("router", stream);
}
