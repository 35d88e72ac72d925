/* SPDX-License-Identifier: MIT */
/*
 * moe.cu - grouped GEMV for routed experts resident on the GPU: gate and up in one pass with the
 * SwiGLU product, then down, then the routing-weighted sum per token.
 *
 * The one idea: pairs (token, expert) arrive grouped by expert, so each expert's weights are read
 * once for all the tokens routed to it (up to 8: the mma's n), with the FP8 core of every other
 * GEMV (gemv_core.cuh). In gate/up a warp's two 16-row tiles are the same 16 rows of gate and of
 * up, so each thread holds g and u of the same (row, token) and forms SiLU(g) * u in registers;
 * only h [pairs, inter] touches memory. The final sum runs over a token's pairs in pair order, so
 * results do not depend on scheduling.
 */
#include <config.h>

#include "kernels/ops.h"
#include "kernels/cuda_check.cuh"
#include "kernels/pdl.cuh" /* every kernel here: mt_pdl_enter() first */
#include "kernels/gemv_core.cuh"

#include <math.h>

#define MOE_SUM_THREADS 256

/* h[p, r] = SiLU(gate_e[r] . x[tok p]) * (up_e[r] . x[tok p]) for the pairs of group blockIdx.y;
 * a row group is 16 rows (one tile of gate, one of up). */
template <int S>
static __global__ void __launch_bounds__(FP8G_THREADS, 2)
moe_gate_up_kernel(const struct mt_gpu_expert *experts, const int32_t *group_start,
                   const int32_t *pair_tok, const float *x, int hidden, int inter, float *h,
                   int ks)
{
    mt_pdl_enter();
    extern __shared__ uint4 ring[];
    const struct mt_gpu_expert *e = experts + blockIdx.y;
    int p0 = group_start[blockIdx.y];
    int np = min(group_start[blockIdx.y + 1] - p0, FP8G_TOK);
    int w = threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int c = lane & 3;
    int64_t r0 = ((int64_t)blockIdx.x * (FP8G_WARPS / ks) + w / ks) * 16;
    struct fp8g_tile t[FP8G_TILES] = {
        fp8g_tile_at((const uint8_t *)e->gate, e->gate_scale, inter, hidden, r0),
        fp8g_tile_at((const uint8_t *)e->up, e->up_scale, inter, hidden, r0)};
    float acc[FP8G_TILES][4];

    const float *xrow = g < np ? x + (int64_t)pair_tok[p0 + g] * hidden : NULL;
    fp8g_warp<S>(ring, t, hidden, hidden / 16, xrow, w % ks, ks, acc);
    if (!fp8g_block_reduce(ring, ks, acc)) {
        return;
    }
#pragma unroll
    for (int k = 0; k < 4; k++) {
        int64_t r = r0 + g + 8 * (k >> 1);
        int j = 2 * c + (k & 1);
        if (r < inter && j < np) {
            float gv = acc[0][k] * MT_FP8_DECODE_SCALE;
            float uv = acc[1][k] * MT_FP8_DECODE_SCALE;
            h[(int64_t)(p0 + j) * inter + r] = gv / (1.0f + expf(-gv)) * uv;
        }
    }
}

/* yp[p, :] = down_e h[p, :] for the pairs of group blockIdx.y; a row group is 32 rows. */
template <int S>
static __global__ void __launch_bounds__(FP8G_THREADS, 2)
moe_down_kernel(const struct mt_gpu_expert *experts, const int32_t *group_start, const float *h,
                int hidden, int inter, float *yp, int ks)
{
    mt_pdl_enter();
    extern __shared__ uint4 ring[];
    const struct mt_gpu_expert *e = experts + blockIdx.y;
    int p0 = group_start[blockIdx.y];
    int np = min(group_start[blockIdx.y + 1] - p0, FP8G_TOK);
    int w = threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int c = lane & 3;
    int64_t r0 = ((int64_t)blockIdx.x * (FP8G_WARPS / ks) + w / ks) * (16 * FP8G_TILES);
    struct fp8g_tile t[FP8G_TILES];
    float acc[FP8G_TILES][4];

#pragma unroll
    for (int i = 0; i < FP8G_TILES; i++) {
        t[i] = fp8g_tile_at((const uint8_t *)e->down, e->down_scale, hidden, inter, r0 + 16 * i);
    }
    const float *xrow = g < np ? h + (int64_t)(p0 + g) * inter : NULL;
    fp8g_warp<S>(ring, t, inter, inter / 16, xrow, w % ks, ks, acc);
    if (!fp8g_block_reduce(ring, ks, acc)) {
        return;
    }
#pragma unroll
    for (int i = 0; i < FP8G_TILES; i++) {
#pragma unroll
        for (int k = 0; k < 4; k++) {
            int64_t r = r0 + 16 * i + g + 8 * (k >> 1);
            int j = 2 * c + (k & 1);
            if (r < hidden && j < np) {
                yp[(int64_t)(p0 + j) * hidden + r] = acc[i][k] * MT_FP8_DECODE_SCALE;
            }
        }
    }
}

/* y[t, c] += sum over pairs p of token t, in pair order, of w[p] * yp[p, c]. */
static __global__ void
moe_sum_kernel(const float *yp, const int32_t *pair_tok, const float *pair_w, int n_pairs,
               int hidden, float *y)
{
    mt_pdl_enter();
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

template <int S>
static mt_status_t
moe_launch(const struct mt_gpu_moe_args *a, cudaStream_t s)
{
    float *h = (float *)a->work;
    float *yp = h + (size_t)a->n_pairs * a->inter;
    int ks1 = fp8g_split(a->hidden / 16);
    int ks2 = fp8g_split(a->inter / 16);
    dim3 g1((unsigned)MT_CEIL_DIV(a->inter, (FP8G_WARPS / ks1) * 16), a->n_groups);
    dim3 g2((unsigned)MT_CEIL_DIV(a->hidden, (FP8G_WARPS / ks2) * 16 * FP8G_TILES), a->n_groups);
    dim3 g3((unsigned)MT_CEIL_DIV(a->hidden, MOE_SUM_THREADS), a->n_tok);
    mt_status_t st;

    static unsigned long long prepared[2];

    fp8g_prepare(moe_gate_up_kernel<S>, FP8G_SMEM(S), &prepared[0]);
    fp8g_prepare(moe_down_kernel<S>, FP8G_SMEM(S), &prepared[1]);
    mt_pdl_launch(moe_gate_up_kernel<S>, dim3(g1), dim3(FP8G_THREADS), FP8G_SMEM(S), s, a->experts,
                  a->group_start, a->pair_tok, a->x, a->hidden, a->inter, h, ks1);
    st = mt_cuda_launched("moe_gate_up", s);
    if (st != MT_OK) {
        return st;
    }
    mt_pdl_launch(moe_down_kernel<S>, dim3(g2), dim3(FP8G_THREADS), FP8G_SMEM(S), s, a->experts,
                  a->group_start, h, a->hidden, a->inter, yp, ks2);
    st = mt_cuda_launched("moe_down", s);
    if (st != MT_OK) {
        return st;
    }
    mt_pdl_launch(moe_sum_kernel, dim3(g3), dim3(MOE_SUM_THREADS), 0, s, yp, a->pair_tok, a->pair_w,
                  a->n_pairs, a->hidden, a->y);
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
    return fp8g_stages() == 3 ? moe_launch<3>(a, stream) : moe_launch<2>(a, stream);
}
