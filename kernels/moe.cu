/* SPDX-License-Identifier: MIT */
/*
 * moe.cu - grouped GEMV for routed experts resident on the GPU: gate and up in one pass with the
 * SwiGLU product, then down, then the routing-weighted sum per token.
 *
 * The one idea: pairs (token, expert) arrive grouped by expert, so each expert's weights are read
 * once for all the tokens routed to it (up to 8: the mma's n), with the FP8 core gemv_core.cuh;
 * up to 4 tokens with at most 4 pairs a group (plain decode, short MTP batches) run on gemv.cu's
 * one-wave kernel instead (gemv_wave.cuh, below; the core stays the fallback). In
 * gate/up a warp's two 16-row tiles are the same 16 rows of gate and of up, so each thread holds g
 * and u of the same (row, token) and forms SiLU(g) * u in registers; only h [pairs, inter] touches
 * memory. The final sum runs over a token's pairs in pair order, so results do not depend on
 * scheduling. A prompt chunk's experts (outputs per pair) go to moe_chunk.cu's small GEMMs unless
 * MT_MOE_CHUNK_GEMM=0 sends them to the older core here, in groups of up to 8.
 */
#include <config.h>

#include "kernels/ops.h"
#include "kernels/cuda_check.cuh"
#include "kernels/pdl.cuh" /* every kernel here: mt_pdl_enter() first */
#include "kernels/gemv_core.cuh"
#include "kernels/gemv_wave.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MOE_SUM_THREADS 256

/*
 * The grid of the two kernels below: a block a (row block, group). With gfast the group is
 * blockIdx.x, so blocks are placed group by group for each row block: a chunk's expert with more
 * pairs than a group holds has consecutive groups, which then read the same weight rows at about
 * the same time and all but the first find them in L2; with row blocks fastest (gfast false) an
 * expert's second group came after all of its first group's rows, and read them from HBM again.
 */
static __device__ __forceinline__ void
moe_block(bool gfast, int &grp, int &rb)
{
    grp = gfast ? blockIdx.x : blockIdx.y;
    rb = gfast ? blockIdx.y : blockIdx.x;
}

/* h[p, r] = SiLU(gate_e[r] . x[tok p]) * (up_e[r] . x[tok p]) for the pairs of group grp;
 * a row group is 16 rows (one tile of gate, one of up). */
template <int S>
static __global__ void __launch_bounds__(FP8G_THREADS, 2)
moe_gate_up_kernel(const struct mt_gpu_expert *experts, const int32_t *group_start,
                   const int32_t *pair_tok, const float *x, int hidden, int inter, float *h,
                   int ks, bool gfast)
{
    mt_pdl_enter();
    extern __shared__ uint4 ring[];
    int grp, rb;
    moe_block(gfast, grp, rb);
    const struct mt_gpu_expert *e = experts + grp;
    int p0 = group_start[grp];
    int np = min(group_start[grp + 1] - p0, FP8G_TOK);
    int w = threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int c = lane & 3;
    int64_t r0 = ((int64_t)rb * (FP8G_WARPS / ks) + w / ks) * 16;
    struct fp8g_tile t[FP8G_TILES] = {
        fp8g_tile_at((const uint8_t *)e->gate, e->gate_scale, inter, hidden, r0),
        fp8g_tile_at((const uint8_t *)e->up, e->up_scale, inter, hidden, r0)};
    float acc[FP8G_TILES][4];

    const float *xrow = g < np ? x + (int64_t)pair_tok[p0 + g] * hidden : NULL;
    fp8g_warp<S>(ring, t, hidden, hidden / 16, xrow, w % ks, ks, acc);
    if (!fp8g_block_reduce(ring, ks, acc)) {
        return;
    }
    bool bad = false;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        int64_t r = r0 + g + 8 * (k >> 1);
        int j = 2 * c + (k & 1);
        if (r < inter && j < np) {
            float gv = acc[0][k] * MT_FP8_DECODE_SCALE;
            float uv = acc[1][k] * MT_FP8_DECODE_SCALE;
            bad = bad || !isfinite(gv) || !isfinite(uv);
            h[(int64_t)(p0 + j) * inter + r] = gv / (1.0f + expf(-gv)) * uv;
        }
    }
    if (bad) { /* rare: x past f16's range (gemv_core.cuh): these rows in fp32 */
#pragma unroll 1
        for (int k = 0; k < 4; k++) {
            int64_t r = r0 + g + 8 * (k >> 1);
            int j = 2 * c + (k & 1);
            if (r < inter && j < np) {
                const float *xj = x + (int64_t)pair_tok[p0 + j] * hidden;
                int64_t so = (r / 128) * ((hidden + 127) / 128);
                float gv = mt_fp8_row_dot((const uint8_t *)e->gate + r * hidden,
                                          e->gate_scale + so, xj, hidden);
                float uv = mt_fp8_row_dot((const uint8_t *)e->up + r * hidden, e->up_scale + so,
                                          xj, hidden);
                h[(int64_t)(p0 + j) * inter + r] = gv / (1.0f + expf(-gv)) * uv;
            }
        }
    }
}

/* yp[p, :] = down_e h[p, :] for the pairs of group grp; a row group is 32 rows. */
template <int S>
static __global__ void __launch_bounds__(FP8G_THREADS, 2)
moe_down_kernel(const struct mt_gpu_expert *experts, const int32_t *group_start, const float *h,
                int hidden, int inter, float *yp, int ks, bool gfast)
{
    mt_pdl_enter();
    extern __shared__ uint4 ring[];
    int grp, rb;
    moe_block(gfast, grp, rb);
    const struct mt_gpu_expert *e = experts + grp;
    int p0 = group_start[grp];
    int np = min(group_start[grp + 1] - p0, FP8G_TOK);
    int w = threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int c = lane & 3;
    int64_t r0 = ((int64_t)rb * (FP8G_WARPS / ks) + w / ks) * (16 * FP8G_TILES);
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
    bool bad = false;
#pragma unroll
    for (int i = 0; i < FP8G_TILES; i++) {
#pragma unroll
        for (int k = 0; k < 4; k++) {
            int64_t r = r0 + 16 * i + g + 8 * (k >> 1);
            int j = 2 * c + (k & 1);
            if (r < hidden && j < np) {
                float v = acc[i][k] * MT_FP8_DECODE_SCALE;
                bad = bad || !isfinite(v);
                yp[(int64_t)(p0 + j) * hidden + r] = v;
            }
        }
    }
    if (bad) { /* rare: h past f16's range (gemv_core.cuh): these rows in fp32 */
#pragma unroll 1
        for (int k = 0; k < 4 * FP8G_TILES; k++) {
            int64_t r = r0 + 16 * (k >> 2) + g + 8 * ((k >> 1) & 1);
            int j = 2 * c + (k & 1);
            if (r < hidden && j < np) {
                const uint8_t *row = (const uint8_t *)e->down + r * inter;
                const float *srow = e->down_scale + (r / 128) * ((inter + 127) / 128);
                yp[(int64_t)(p0 + j) * hidden + r] =
                    mt_fp8_row_dot(row, srow, h + (int64_t)(p0 + j) * inter, inter);
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

/*
 * Up to 4 tokens with up to 4 pairs a group (plain decode; MTP-sized batches): the experts'
 * matrices are one long list of rows, and gemv.cu's one-wave kernel (gemv_wave.cuh) runs them
 * in equal shares of whole tiles, instead of the core above's grid of 16- and 32-row blocks per
 * expert (2-7 waves, each block ramping up on its own). Two row policies:
 *
 * gate/up: tile T (16 rows) = rows r .. r + 7 of gate (the thread's row g) and of up (its row
 * g + 8) of group T / (inter / 8)'s expert, r = 8 (T % (inter / 8)), so one thread ends with g
 * and u of the same row and writes h = SiLU(g) u. Every tile multiplies all the step's tokens
 * (the mma's n has room for 4); a token's result is kept where it has a pair in that group.
 * down: tile T = rows 16 (T % (hidden / 16)) .. + 15 of down of group T / (hidden / 16); B's
 * columns are the group's pairs' h rows, staged for the groups a block spans (MOE_WAVE_XE at
 * most, the host checks).
 * A group without pairs (the device grouping leaves trailing empty slots) loads nothing: its
 * rows count as absent, so the copies are zero fills.
 *
 * The experts' addresses come from the grouping kernel before them, so nothing is loaded before
 * mt_pdl_wait (kWeightsFirst false).
 */
#define MOE_WAVE_TOK 4 /* tokens, and pairs a group: one mma's n */
#define MOE_WAVE_XE 4  /* groups whose h rows a block of the down pass stages */
#define MOE_WAVE_A 4   /* cp.async stages */

/* This block's whole tiles, as rows of the policies' virtual matrix. */
static __device__ __forceinline__ void
moe_wave_share(int64_t tiles, int64_t &rb0, int64_t &rb1)
{
    rb0 = 16 * ((int64_t)blockIdx.x * tiles / gridDim.x);
    rb1 = 16 * ((int64_t)(blockIdx.x + 1) * tiles / gridDim.x);
}

struct moe_wave_gate_up {
    static constexpr bool kWeightsFirst = false;
    const struct mt_gpu_expert *experts;
    const int32_t *group_start;
    const int32_t *pair_tok;
    const float *x; /* [nt, hidden] */
    float *h;       /* [n_pairs, inter] */
    int64_t cols;   /* hidden */
    int nt;         /* tokens, 1..4 */
    int oct;        /* inter / 8: tiles a group */
    int64_t tiles;

    __device__ void share(int64_t &rb0, int64_t &rb1) const
    {
        moe_wave_share(tiles, rb0, rb1);
    }
    __device__ struct mv_rows rows_at(int64_t row, int64_t end, int c, int nkb) const
    {
        int64_t t = row >> 4;
        /* past the end (the fetch cursor's last advance): any group, never read */
        int e = row < end ? (int)(t / oct) : 0;
        int64_t r = 8 * (t % oct) + (row & 7);
        const struct mt_gpu_expert *ex = experts + e;
        struct mv_rows m;

        m.va = row < end && group_start[e + 1] > group_start[e];
        m.vb = m.va;
        m.a = (const uint8_t *)ex->gate + (m.va ? r * cols : 0) + 16 * c;
        m.b = (const uint8_t *)ex->up + (m.va ? r * cols : 0) + 16 * c;
        m.sa = ex->gate_scale + (m.va ? (r >> 7) * nkb : 0);
        m.sb = ex->up_scale + (m.va ? (r >> 7) * nkb : 0);
        return m;
    }
    __device__ float stage(uint4 *xs, int nkb, float scale) const
    {
        return mv_xs_fill(xs, x, cols, nkb, nt, scale);
    }
    __device__ int staged(void) const
    {
        return nt;
    }
    __device__ const uint4 *xs_base(const uint4 *xs, int64_t row, int g, int nkb) const
    {
        return xs + mv_xs_base(min(g >> 1, nt - 1), g & 1, nkb);
    }
    __device__ const float *x_row(int t) const
    {
        return x + (int64_t)t * cols;
    }
    template <int NB>
    __device__ void store(int64_t row, int64_t end, int c, const float (&acc)[NB][2]) const
    {
        if (c >= nt || row >= end) {
            return; /* thread (g, c) holds token c */
        }
        int64_t t = row >> 4;
        int e = (int)(t / oct);
        int64_t r = 8 * (t % oct) + (row & 7);
        float gv = acc[0][0] * MV_DECODE_SCALE;
        float uv = acc[0][1] * MV_DECODE_SCALE;

        for (int p = group_start[e]; p < group_start[e + 1]; p++) {
            if (pair_tok[p] == c) {
                h[(int64_t)p * (8 * oct) + r] = gv / (1.0f + expf(-gv)) * uv;
            }
        }
    }
};

struct moe_wave_down {
    static constexpr bool kWeightsFirst = false;
    const struct mt_gpu_expert *experts;
    const int32_t *group_start;
    const float *h; /* [n_pairs, inter] */
    float *yp;      /* [n_pairs, hidden] */
    int64_t cols;   /* inter */
    int nt;         /* pairs a group at most, 1..4 */
    int per;        /* hidden / 16: tiles a group */
    int64_t tiles;
    int rows_max; /* h rows a block stages at most */

    __device__ void share(int64_t &rb0, int64_t &rb1) const
    {
        moe_wave_share(tiles, rb0, rb1);
    }
    /* the first pair of the first group of this block: row 0 of the staged h */
    __device__ int first_pair(void) const
    {
        int64_t rb0;
        int64_t rb1;
        share(rb0, rb1);
        return group_start[(rb0 >> 4) / per];
    }
    __device__ struct mv_rows rows_at(int64_t row, int64_t end, int c, int nkb) const
    {
        int64_t t = row >> 4;
        int e = row < end ? (int)(t / per) : 0; /* past the end: any group, never read */
        int64_t r = 16 * (t % per) + (row & 15);
        const struct mt_gpu_expert *ex = experts + e;
        bool any = group_start[e + 1] > group_start[e];
        struct mv_rows m;

        m.va = row < end && any;
        m.vb = row + 8 < end && any;
        m.a = (const uint8_t *)ex->down + (m.va ? r * cols : 0) + 16 * c;
        m.b = (const uint8_t *)ex->down + (m.vb ? (r + 8) * cols : 0) + 16 * c;
        m.sa = ex->down_scale + (m.va ? (r >> 7) * nkb : 0);
        m.sb = ex->down_scale + (m.vb ? ((r + 8) >> 7) * nkb : 0);
        return m;
    }
    __device__ float stage(uint4 *xs, int nkb, float scale) const
    {
        int64_t rb0;
        int64_t rb1;
        share(rb0, rb1);
        int e0 = (int)((rb0 >> 4) / per);
        int e1 = rb1 > rb0 ? (int)(((rb1 - 1) >> 4) / per) : e0;
        int p0 = group_start[e0];
        /* the groups' pairs are consecutive: their h rows too */
        return mv_xs_fill(xs, h + (int64_t)p0 * cols, cols, nkb, group_start[e1 + 1] - p0, scale);
    }
    __device__ int staged(void) const
    {
        return rows_max;
    }
    __device__ const uint4 *xs_base(const uint4 *xs, int64_t row, int g, int nkb) const
    {
        int e = (int)((row >> 4) / per);
        int p0 = group_start[e];
        int np = group_start[e + 1] - p0;
        /* B column g: pair g / 2 of the group (any of them past its last: not stored) */
        int k = np > 0 ? p0 - first_pair() + min(g >> 1, np - 1) : 0;
        return xs + mv_xs_base(k, g & 1, nkb);
    }
    __device__ const float *x_row(int t) const
    {
        return h;
    }
    template <int NB>
    __device__ void store(int64_t row, int64_t end, int c, const float (&acc)[NB][2]) const
    {
        int64_t t = row >> 4;
        int e = (int)(t / per);
        int p = group_start[e] + c; /* thread (g, c) holds the group's pair c */

        if (p >= group_start[e + 1]) {
            return;
        }
        int64_t r = 16 * (t % per) + (row & 15);
        float *o = yp + (int64_t)p * (16 * per) + r;
        if (row < end) {
            o[0] = acc[0][0] * MV_DECODE_SCALE;
        }
        if (row + 8 < end) {
            o[8] = acc[0][1] * MV_DECODE_SCALE;
        }
    }
};

/* A: cp.async stages with x staged (0: x from global memory, register stages); W: warps a block
 * (MV_PAIR_WARPS: two blocks an SM, gemv_wave.cuh) */
template <class M, int A, int W = MV_WARPS>
static __global__ void __launch_bounds__(W * 32, W == MV_WARPS ? 1 : 2)
moe_wave_kernel(const M m)
{
    extern __shared__ uint4 xs[];

    mv_wave<1, MV_P, A != 0, 1, A, M, W>(m, xs, 0);
}

/* Dynamic shared memory of at least `bytes` for kernel f on this device (raised, never lowered;
 * a race only repeats the call). */
template <typename F>
static mt_status_t
moe_wave_smem(F *f, size_t bytes, int (&set)[64])
{
    int dev = 0;

    cudaGetDevice(&dev);
    if (dev < 64 && set[dev] >= (int)bytes) {
        return MT_OK;
    }
    mt_status_t st =
        MT_CUDA(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    if (st == MT_OK && dev < 64) {
        set[dev] = (int)bytes;
    }
    return st;
}

/* The one-wave path, or MT_ERR_UNSUPPORTED (nothing launched) where it does not apply: more
 * than 4 tokens or 4 pairs a group, MT_MOE_WAVE=0, shapes off the tile grid or too little
 * shared memory. */
static mt_status_t
moe_wave_launch(const struct mt_gpu_moe_args *a, cudaStream_t s)
{
    static int set_gu[64];
    static int set_gu_pair[64];
    static int set_gu_reg[64];
    static int set_dn[64];
    int dev = 0;
    int n_sm = 0;
    int optin = 0;

    const char *env = getenv("MT_MOE_WAVE"); /* read every call, so a test can take both paths */
    bool wave = env == NULL || strcmp(env, "0") != 0;

    if (!wave || a->n_tok > MOE_WAVE_TOK || a->max_group_tok > MOE_WAVE_TOK || a->inter % 16 != 0 ||
        a->hidden % 16 != 0 || cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) !=
            cudaSuccess) {
        (void)cudaGetLastError();
        return MT_ERR_UNSUPPORTED;
    }
    float *h = (float *)a->work;
    float *yp = h + (size_t)a->n_pairs * a->inter;
    int64_t t1 = (int64_t)a->n_groups * (a->inter / 8);
    int64_t t2 = (int64_t)a->n_groups * (a->hidden / 16);
    /* one block a SM (the ring and the staged x take most of its shared memory) */
    int64_t b1 = t1 < n_sm ? t1 : n_sm;
    int64_t b2 = t2 < n_sm ? t2 : n_sm;
    int xe = (int)((MT_CEIL_DIV(t2, b2) + a->hidden / 16 - 1) / (a->hidden / 16)) + 1;
    xe = xe < a->n_groups ? xe : a->n_groups;
    int rows = xe * a->max_group_tok;
    rows = rows < a->n_pairs ? rows : a->n_pairs;
    size_t room = (size_t)optin - MV_RED_BYTES(MV_WARPS, 1);
    size_t s1 = MV_XS_BYTES(a->n_tok, a->hidden) + MV_RING_BYTES(MOE_WAVE_A);
    size_t s2 = MV_XS_BYTES(rows, a->inter) + MV_RING_BYTES(MOE_WAVE_A);
    if (xe > MOE_WAVE_XE || s2 > room) {
        return MT_ERR_UNSUPPORTED;
    }
    /* gate/up: x staged with the ring where it fits (one token at 7168), as two 8-warp blocks an
     * SM where two fit (as gemv.cu does), else register stages with x read by every warp (4
     * tokens at 7168, as gemv.cu does) */
    size_t s1p = MV_XS_BYTES(a->n_tok, a->hidden) + MV_RING_BYTES_W(MOE_WAVE_A, MV_PAIR_WARPS);
    bool pair1 = mv_two_blocks_on() && s1p <= mv_pair_room();
    bool ring1 = s1 <= room;
    mt_status_t st =
        pair1 ? moe_wave_smem(moe_wave_kernel<moe_wave_gate_up, MOE_WAVE_A, MV_PAIR_WARPS>,
                              mv_pair_room(), set_gu_pair)
        : ring1 ? moe_wave_smem(moe_wave_kernel<moe_wave_gate_up, MOE_WAVE_A>, s1, set_gu)
                : moe_wave_smem(moe_wave_kernel<moe_wave_gate_up, 0>, 0, set_gu_reg);
    if (st == MT_OK) {
        st = moe_wave_smem(moe_wave_kernel<moe_wave_down, MOE_WAVE_A>, s2, set_dn);
    }
    if (st != MT_OK) {
        return st;
    }
    struct moe_wave_gate_up gu;
    gu.experts = a->experts;
    gu.group_start = a->group_start;
    gu.pair_tok = a->pair_tok;
    gu.x = a->x;
    gu.h = h;
    gu.cols = a->hidden;
    gu.nt = a->n_tok;
    gu.oct = a->inter / 8;
    gu.tiles = t1;
    struct moe_wave_down dn;
    dn.experts = a->experts;
    dn.group_start = a->group_start;
    dn.h = h;
    dn.yp = yp;
    dn.cols = a->inter;
    dn.nt = a->max_group_tok;
    dn.per = a->hidden / 16;
    dn.tiles = t2;
    dn.rows_max = rows;
    if (pair1) {
        int64_t bp = t1 < 2 * n_sm ? t1 : 2 * n_sm;
        mt_pdl_launch(moe_wave_kernel<moe_wave_gate_up, MOE_WAVE_A, MV_PAIR_WARPS>,
                      dim3((unsigned)bp), dim3(MV_PAIR_WARPS * 32), s1p, s, gu);
    } else if (ring1) {
        mt_pdl_launch(moe_wave_kernel<moe_wave_gate_up, MOE_WAVE_A>, dim3((unsigned)b1), dim3(MV_T),
                      s1, s, gu);
    } else {
        mt_pdl_launch(moe_wave_kernel<moe_wave_gate_up, 0>, dim3((unsigned)b1), dim3(MV_T), 0, s,
                      gu);
    }
    st = mt_cuda_launched("moe_gate_up", s);
    if (st != MT_OK) {
        return st;
    }
    mt_pdl_launch(moe_wave_kernel<moe_wave_down, MOE_WAVE_A>, dim3((unsigned)b2), dim3(MV_T), s2, s,
                  dn);
    return mt_cuda_launched("moe_down", s);
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
    float *yp = a->y_pairs != NULL ? a->y_pairs : h + (size_t)a->n_pairs * a->inter;
    int ks1 = fp8g_split(a->hidden / 16);
    int ks2 = fp8g_split(a->inter / 16);
    unsigned rb1 = (unsigned)MT_CEIL_DIV(a->inter, (FP8G_WARPS / ks1) * 16);
    unsigned rb2 = (unsigned)MT_CEIL_DIV(a->hidden, (FP8G_WARPS / ks2) * 16 * FP8G_TILES);
    const char *env = getenv("MT_MOE_GROUP_FAST"); /* read every call: tests take both */
    bool gfast = env == NULL || atoi(env) != 0;
    dim3 g1 = gfast ? dim3((unsigned)a->n_groups, rb1) : dim3(rb1, (unsigned)a->n_groups);
    dim3 g2 = gfast ? dim3((unsigned)a->n_groups, rb2) : dim3(rb2, (unsigned)a->n_groups);
    dim3 g3((unsigned)MT_CEIL_DIV(a->hidden, MOE_SUM_THREADS), a->n_tok);
    mt_status_t st;

    static unsigned long long prepared[2];

    st = a->y_pairs == NULL ? moe_wave_launch(a, s) : MT_ERR_UNSUPPORTED;
    if (st != MT_ERR_UNSUPPORTED) {
        if (st != MT_OK) {
            return st;
        }
        mt_pdl_launch(moe_sum_kernel, dim3(g3), dim3(MOE_SUM_THREADS), 0, s, yp, a->pair_tok,
                      a->pair_w, a->n_pairs, a->hidden, a->y);
        return mt_cuda_launched("moe_sum", s);
    }
    fp8g_prepare(moe_gate_up_kernel<S>, FP8G_SMEM(S), &prepared[0]);
    fp8g_prepare(moe_down_kernel<S>, FP8G_SMEM(S), &prepared[1]);
    mt_pdl_launch(moe_gate_up_kernel<S>, dim3(g1), dim3(FP8G_THREADS), FP8G_SMEM(S), s, a->experts,
                  a->group_start, a->pair_tok, a->x, a->hidden, a->inter, h, ks1, gfast);
    st = mt_cuda_launched("moe_gate_up", s);
    if (st != MT_OK) {
        return st;
    }
    mt_pdl_launch(moe_down_kernel<S>, dim3(g2), dim3(FP8G_THREADS), FP8G_SMEM(S), s, a->experts,
                  a->group_start, h, a->hidden, a->inter, yp, ks2, gfast);
    st = mt_cuda_launched("moe_down", s);
    if (st != MT_OK || a->y_pairs != NULL) {
        return st;
    }
    mt_pdl_launch(moe_sum_kernel, dim3(g3), dim3(MOE_SUM_THREADS), 0, s, yp, a->pair_tok, a->pair_w,
                  a->n_pairs, a->hidden, a->y);
    return mt_cuda_launched("moe_sum", s);
}

extern "C" mt_status_t
mt_gpu_moe_experts(const struct mt_gpu_moe_args *a, struct CUstream_st *stream)
{
    if (a->y_pairs != NULL && mt_gpu_moe_chunk_group_max() > MT_GPU_GEMV_MAX_TOK) {
        return mt_gpu_moe_chunk_experts(a, stream); /* a prompt chunk's: moe_chunk.cu */
    }
    if (a->hidden < 16 || a->hidden % 16 != 0 || a->inter < 16 || a->inter % 16 != 0 ||
        a->n_groups < 1 || a->n_pairs < a->n_groups || a->n_tok < 1 || a->max_group_tok < 1 ||
        a->max_group_tok > MT_GPU_GEMV_MAX_TOK || a->experts == NULL || a->group_start == NULL ||
        a->pair_tok == NULL || a->pair_w == NULL || a->x == NULL ||
        (a->y == NULL && a->y_pairs == NULL) || a->work == NULL) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "gpu experts: hidden %d, inter %d, %d groups, %d pairs, %d tokens, at most "
                       "%d tokens a group",
                       a->hidden, a->inter, a->n_groups, a->n_pairs, a->n_tok, a->max_group_tok);
    }
    return fp8g_stages() == 3 ? moe_launch<3>(a, stream) : moe_launch<2>(a, stream);
}
