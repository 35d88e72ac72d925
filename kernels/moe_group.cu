/* SPDX-License-Identifier: MIT */
/*
 * moe_group.cu - the router's (token, expert) pairs grouped by expert on the device, in the
 * layout the grouped expert GEMV of moe.cu takes, so a decode step whose routed experts all live
 * on the GPU never waits for the host between the router and the experts.
 *
 * The one idea: a decode step has at most MT_GPU_GEMV_MAX_TOK * k pairs (64 for V3.2), so one
 * block sorts them by brute force: each thread owns one pair and counts, over all pairs, the
 * ones that sort before it. The order is exactly moe.c's (eng_moe_group): groups by increasing
 * expert id, inside a group the pairs in (token, slot) order, so the grouped GEMV sums a
 * token's experts in the same order as the host grouping did and the results do not change.
 * The kernel cannot know how many distinct experts there are before it runs, while the GEMV's
 * grid is set on the host: it fills all n_pairs group slots, the trailing ones empty (start ==
 * end == n_pairs) with a valid expert, so the GEMV computes nothing for them. With one token
 * (plain decode) the k experts are distinct and no slot is empty.
 */
#include <config.h>

#include "kernels/engine_ops.h"
#include "kernels/cuda_check.cuh"
#include "kernels/pdl.cuh" /* every kernel here: mt_pdl_enter() first */

#define MOE_GROUP_MAX 1024 /* pairs one block sorts */

static __global__ void
moe_group_kernel(const int32_t *ids, const float *w, int n_pairs, int k,
                 const struct mt_gpu_expert *table, int n_experts, struct mt_gpu_expert *experts,
                 int32_t *group_start, int32_t *pair_tok, float *pair_w)
{
    mt_pdl_enter();
    __shared__ int32_t sid[MOE_GROUP_MAX];
    __shared__ unsigned char first[MOE_GROUP_MAX]; /* pair i is its expert's first pair */
    int i = threadIdx.x;

    if (i < n_pairs) {
        int x = ids[i];
        sid[i] = x >= 0 && x < n_experts ? x : 0; /* the router never gives one out of range */
    }
    __syncthreads();
    if (i < n_pairs) {
        bool f = true;
        for (int j = 0; j < i; j++) {
            f = f && sid[j] != sid[i];
        }
        first[i] = f;
    }
    __syncthreads();
    if (i >= n_pairs) {
        return;
    }
    int me = sid[i];
    int before = 0;   /* pairs of smaller experts: where my expert's group starts */
    int same = 0;     /* pairs of my expert before me */
    int groups = 0;   /* distinct experts smaller than mine: my group's index */
    int distinct = 0; /* distinct experts in all */
    for (int j = 0; j < n_pairs; j++) {
        int o = sid[j];
        before += o < me;
        same += o == me && j < i;
        groups += first[j] && o < me;
        distinct += first[j];
    }
    int row = before + same;
    pair_tok[row] = i / k;
    pair_w[row] = w[i];
    if (same == 0) {
        experts[groups] = table[me];
        group_start[groups] = before;
    }
    if (i == 0) {
        for (int g = distinct; g <= n_pairs; g++) {
            group_start[g] = n_pairs;
            if (g < n_pairs) {
                experts[g] = table[me];
            }
        }
    }
}

extern "C" mt_status_t
mt_gpu_moe_group(const int32_t *ids, const float *w, int n_tok, int k,
                 const struct mt_gpu_expert *table, int n_experts, struct mt_gpu_expert *experts,
                 int32_t *group_start, int32_t *pair_tok, float *pair_w, struct CUstream_st *stream)
{
    int n = n_tok * k;

    if (n_tok < 1 || k < 1 || n > MOE_GROUP_MAX || n_experts < 1 || ids == NULL || w == NULL ||
        table == NULL || experts == NULL || group_start == NULL || pair_tok == NULL ||
        pair_w == NULL) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "gpu expert grouping: %d tokens x top-%d (at most %d "
                       "pairs), %d experts",
                       n_tok, k, MOE_GROUP_MAX, n_experts);
    }
    unsigned threads = (unsigned)((n + 31) / 32 * 32);
    mt_pdl_launch(moe_group_kernel, dim3(1), dim3(threads), 0, stream, ids, w, n, k, table,
                  n_experts, experts, group_start, pair_tok, pair_w);
    return mt_cuda_launched("moe_group", stream);
}
