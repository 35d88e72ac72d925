/* SPDX-License-Identifier: MIT */
/*
 * moe.cu - grouped GEMV for routed experts resident on the GPU: gate and up in one pass with the
 * SwiGLU product, then down, then the routing-weighted sum per token.
 *
 * The one idea: pairs (token, expert) arrive grouped by expert, so each expert's weights are read
 * once for all the tokens routed to it, with the same inner loop as every other GEMV
 * (gemv_core.cuh); the gate and up rows of one intermediate unit are the two rows a thread group
 * owns, so SiLU(g) * u is formed in registers and only h [pairs, inter] touches memory. The final
 * sum runs over a token's pairs in pair order, so results do not depend on scheduling.
 */
#include <config.h>

#include "kernels/ops.h"
#include "kernels/cuda_check.cuh"
#include "kernels/gemv_core.cuh"

#include <math.h>

#define MOE_SUM_THREADS 256

/* h[p, r] = SiLU(gate_e[r] . x[tok p]) * (up_e[r] . x[tok p]) for the pairs of group blockIdx.y. */
template <int NT>
static __global__ void
moe_gate_up_kernel(const struct mt_gpu_expert *experts, const int32_t *group_start,
                   const int32_t *pair_tok, const float *x, int hidden, int inter, float *h, int T)
{
    const struct mt_gpu_expert *e = experts + blockIdx.y;
    int p0 = group_start[blockIdx.y];
    int np = min(group_start[blockIdx.y + 1] - p0, NT);
    int lane = threadIdx.x % T;
    int64_t r = (int64_t)blockIdx.x * (GEMV_THREADS / T) + threadIdx.x / T;
    int64_t n_cb = (hidden + 127) / 128;
    bool valid = r < inter;
    const uint4 *wrow[2] = {
        valid ? reinterpret_cast<const uint4 *>((const uint8_t *)e->gate + r * hidden) : NULL,
        valid ? reinterpret_cast<const uint4 *>((const uint8_t *)e->up + r * hidden) : NULL};
    const float *srow[2] = {e->gate_scale + (r / 128) * n_cb, e->up_scale + (r / 128) * n_cb};
    const float4 *xr[NT];
    float acc[2][NT];

#pragma unroll
    for (int j = 0; j < NT; j++) {
        int tok = j < np ? pair_tok[p0 + j] : pair_tok[p0];
        xr[j] = reinterpret_cast<const float4 *>(x + (int64_t)tok * hidden);
        acc[0][j] = 0.0f;
        acc[1][j] = 0.0f;
    }
    gemv_group_dot<true, NT, 2>(wrow, srow, hidden / 16, xr, np, lane, T, acc);
    gemv_group_reduce<NT, 2>(acc, lane, T);
    if (lane != 0 || !valid) {
        return;
    }
#pragma unroll
    for (int j = 0; j < NT; j++) {
        if (j < np) {
            float g = acc[0][j];
            h[(int64_t)(p0 + j) * inter + r] = g / (1.0f + expf(-g)) * acc[1][j];
        }
    }
}

/* yp[p, :] = down_e h[p, :] for the pairs of group blockIdx.y. */
template <int NT>
static __global__ void
moe_down_kernel(const struct mt_gpu_expert *experts, const int32_t *group_start, const float *h,
                int hidden, int inter, float *yp, int T)
{
    const int R = GEMV_ROWS;
    const struct mt_gpu_expert *e = experts + blockIdx.y;
    int p0 = group_start[blockIdx.y];
    int np = min(group_start[blockIdx.y + 1] - p0, NT);
    int lane = threadIdx.x % T;
    int64_t r0 = ((int64_t)blockIdx.x * (GEMV_THREADS / T) + threadIdx.x / T) * R;
    int64_t n_cb = (inter + 127) / 128;
    const uint4 *wrow[R];
    const float *srow[R];
    const float4 *xr[NT];
    float acc[R][NT];

#pragma unroll
    for (int i = 0; i < R; i++) {
        int64_t r = r0 + i;
        wrow[i] = r < hidden ? reinterpret_cast<const uint4 *>((const uint8_t *)e->down + r * inter)
                             : NULL;
        srow[i] = e->down_scale + (r / 128) * n_cb;
#pragma unroll
        for (int j = 0; j < NT; j++) {
            acc[i][j] = 0.0f;
        }
    }
#pragma unroll
    for (int j = 0; j < NT; j++) {
        xr[j] = reinterpret_cast<const float4 *>(h + (int64_t)(p0 + (j < np ? j : 0)) * inter);
    }
    gemv_group_dot<true, NT, R>(wrow, srow, inter / 16, xr, np, lane, T, acc);
    gemv_group_reduce<NT, R>(acc, lane, T);
    if (lane != 0) {
        return;
    }
#pragma unroll
    for (int i = 0; i < R; i++) {
        if (r0 + i < hidden) {
#pragma unroll
            for (int j = 0; j < NT; j++) {
                if (j < np) {
                    yp[(int64_t)(p0 + j) * hidden + r0 + i] = acc[i][j];
                }
            }
        }
    }
}

/* y[t, c] += sum over pairs p of token t, in pair order, of w[p] * yp[p, c]. */
static __global__ void
moe_sum_kernel(const float *yp, const int32_t *pair_tok, const float *pair_w, int n_pairs,
               int hidden, float *y)
{
    int c = blockIdx.x * MOE_SUM_THREADS + threadIdx.x;
    int t = blockIdx.y;

    if (c >= hidden) {
        return;
    }
    float s = 0.0f;
    for (int p = 0; p < n_pairs; p++) {
        if (pair_tok[p] == t) {
            s = fmaf(pair_w[p], yp[(int64_t)p * hidden + c], s);
        }
    }
    y[(int64_t)t * hidden + c] += s;
}

extern "C" size_t
mt_gpu_moe_work_bytes(int n_pairs, int inter, int hidden)
{
    return (size_t)n_pairs * ((size_t)inter + hidden) * sizeof(float) + 256;
}

static int
sm_count(void)
{
    int dev = 0;
    int n = 0;

    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    return n > 0 ? n : 1;
}

template <int NT>
static mt_status_t
moe_launch(const struct mt_gpu_moe_args *a, cudaStream_t s)
{
    float *h = (float *)a->work;
    float *yp = h + (size_t)a->n_pairs * a->inter;
    int sms = sm_count();
    /* gate/up: one intermediate row per thread group; down: GEMV_ROWS rows per group */
    int T1 = gemv_group_threads(a->hidden / 16, (long long)a->inter * a->n_groups * GEMV_ROWS,
                                sms);
    int T2 = gemv_group_threads(a->inter / 16, (long long)a->hidden * a->n_groups, sms);
    dim3 g1((unsigned)MT_CEIL_DIV(a->inter, GEMV_THREADS / T1), a->n_groups);
    dim3 g2((unsigned)MT_CEIL_DIV(a->hidden, (GEMV_THREADS / T2) * GEMV_ROWS), a->n_groups);
    dim3 g3((unsigned)MT_CEIL_DIV(a->hidden, MOE_SUM_THREADS), a->n_tok);
    mt_status_t st;

    moe_gate_up_kernel<NT><<<g1, GEMV_THREADS, 0, s>>>(a->experts, a->group_start, a->pair_tok,
                                                         a->x, a->hidden, a->inter, h, T1);
    st = mt_cuda_launched("moe_gate_up", s);
    if (st != MT_OK) {
        return st;
    }
    moe_down_kernel<NT><<<g2, GEMV_THREADS, 0, s>>>(a->experts, a->group_start, h, a->hidden,
                                                      a->inter, yp, T2);
    st = mt_cuda_launched("moe_down", s);
    if (st != MT_OK) {
        return st;
    }
    moe_sum_kernel<<<g3, MOE_SUM_THREADS, 0, s>>>(yp, a->pair_tok, a->pair_w, a->n_pairs,
                                                   a->hidden, a->y);
    return mt_cuda_launched("moe_sum", s);
}

extern "C" mt_status_t
mt_gpu_moe_experts(const struct mt_gpu_moe_args *a, struct CUstream_st *stream)
{
    if (a->hidden < 16 || a->hidden % 16 != 0 || a->inter < 16 || a->inter % 16 != 0 ||
        a->n_groups < 1 || a->n_pairs < a->n_groups || a->n_tok < 1 || a->max_group_tok < 1 ||
        a->max_group_tok > MT_GPU_GEMV_MAX_TOK || a->experts == NULL || a->group_start == NULL ||
        a->pair_tok == NULL || a->pair_w == NULL || a->x == NULL || a->y == NULL ||
        a->work == NULL) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "gpu experts: hidden %d, inter %d, %d groups, %d pairs, %d tokens, at most "
                       "%d tokens a group",
                       a->hidden, a->inter, a->n_groups, a->n_pairs, a->n_tok, a->max_group_tok);
    }
    switch (a->max_group_tok) {
    case 1: return moe_launch<1>(a, stream);
    case 2: return moe_launch<2>(a, stream);
    case 3: return moe_launch<3>(a, stream);
    case 4: return moe_launch<4>(a, stream);
    default: return moe_launch<8>(a, stream);
    }
}
