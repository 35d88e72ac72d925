/* SPDX-License-Identifier: MIT */
/*
 * moe_chunk.cu - a prompt chunk's routed experts as small GEMMs on tensor cores: each block reads
 * its share of an expert's weights once for up to 32 (token, expert) pairs, with those pairs' x
 * staged once in shared memory for all its warps.
 *
 * Why: a 512-token chunk gives each of V3.2's 256 experts ~16 pairs. The older core of moe.cu
 * (gemv_core.cuh) takes at most 8 pairs a pass, and each of its warps copies the x of its 8
 * tokens next to every 2 KB of weights it reads, so x crosses L2 as often as the weights do and a
 * pass runs near 2 TB/s wherever its weights come from (9.3 + 5.0 ms a chunk and layer on the
 * H200, ~half of an 8K prefill; bench/results/gpu-engine-h200.md, session 15). Here a block of 8
 * warps stages 32 pairs x 128 columns of x (split into f16 hi and lo) once per step for 128 rows
 * of gate and up (or 256 rows of down), so x is read once per 128 or 256 weight rows instead of
 * once per 32. Measured there (2026-12-01 session 16): gate/up 3.2-3.5 ms, down 1.8-2.0 ms a chunk
 * and layer, the 8K prefill 0.47-0.49 -> 0.33-0.34 s.
 *
 * Work. Block (group, row block): the group's pairs are n-tiles of 8 (the mma's n), and each warp
 * owns two 16-row tiles: in gate/up the same 16 rows of gate and of up (SiLU(g) * u formed in
 * registers, only h [pairs, inter] reaches memory), in down 32 consecutive rows. A step is 128
 * columns, one FP8 scale block: a warp's 8 mma k-steps over it sum into a partial that is scaled
 * and added to the total, as every FP8 kernel here does. Weights go to registers MC_AHEAD steps
 * ahead (no barrier, no shared memory); the next step's x is loaded before this step's products
 * and stored after them, behind one barrier a step.
 *
 * Layout (thread g = lane / 4, c = lane % 4): as gemv_wave.cuh, the thread loads the 16-byte
 * pieces of rows g and g + 8 at columns 16c and 64 + 16c of the step, and word j of a piece feeds
 * the k-step (piece, j), its two decoded f16x2 in the A slots of k (2c, 2c + 1) and (2c + 8,
 * 2c + 9). B takes the same columns of x: the 4 consecutive f16 at 16c + 4j of the staged row of
 * pair 8 nt + g, one 8-byte shared load (paired to match mv_decode's byte order below sm_89).
 * Staged rows are 132 f16 apart (66 words = 2 mod 32), so the 16 lanes of a half warp read 32
 * distinct banks. x's hi and lo halves are two mmas into the same accumulator: about 22 bits of
 * x, as in every GEMV here (one f16 misses the tests' tolerance). Where |x| reaches 65,520 the hi
 * half is inf: the outputs that come out inf or NaN are computed again in fp32 (mc_redo_f32).
 *
 * Results: each output is one thread's sum in a fixed order, so the same bits on every run.
 */
#include <config.h>

#include "kernels/ops.h"
#include "kernels/cuda_check.cuh"
#include "kernels/pdl.cuh" /* every kernel here: mt_pdl_enter() first */
#include "kernels/gemv_core.cuh" /* fp8g_tile */
#include "kernels/gemv_wave.cuh" /* mv_decode, mv_mma */

#include <stdlib.h>
#include <string.h>

#define MC_TOK MT_GPU_MOE_CHUNK_TOK /* pairs a group */
#define MC_NT (MC_TOK / 8)          /* n-tiles */
#define MC_STEP 128                 /* columns a step: one scale block */
#define MC_ROW (MC_STEP + 4)        /* f16 a staged row of x: 66 words */
#define MC_WARPS 8
/* the staging gives each thread 16 columns of one pair: 8 threads a pair's step */
static_assert(MC_WARPS * 32 / 8 == MC_TOK && 8 * 16 == MC_STEP, "x staging covers a group's step");
/* Steps of weights loaded ahead (32 registers a step). 8 warps with 1 or 2 steps ahead and 4
 * warps (two blocks an SM) with 1 or 2 took the same time within the runs' spread (8K prefill
 * 0.326-0.344 s; gate/up 3.15-3.53 ms, down 1.82-1.97 ms a chunk and layer; H200, 2026-12-01
 * session 16): the fewest registers stay. */
#define MC_AHEAD 1

/* Staged x of one step: [hi, lo][pair][column]. */
typedef __half mc_xs_t[2][MC_TOK][MC_ROW];

/* This thread's 8 pieces of step `step` of tiles t (tile i, row g + 8 r, column half h at
 * v[4 i + 2 r + h]); zero past the rows or columns. */
static __device__ __forceinline__ void
mc_load_w(uint4 (&v)[8], const struct fp8g_tile (&t)[2], int64_t ld, int step)
{
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int c = lane & 3;

#pragma unroll
    for (int i = 0; i < 2; i++) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int row = g + 8 * r;
                int64_t col = (int64_t)step * MC_STEP + 64 * h + 16 * c;
                bool ok = row < t[i].rows && col < ld;
                const uint4 *p = reinterpret_cast<const uint4 *>(t[i].w + (ok ? row * ld + col : 0));
                v[4 * i + 2 * r + h] = ok ? __ldg(p) : make_uint4(0, 0, 0, 0);
            }
        }
    }
}

/* This thread's 16 values of x for step `step`: row `row` (NULL: a pair past the group's),
 * columns 16 (tid % 8) ..; zero past the columns. */
static __device__ __forceinline__ void
mc_load_x(float4 (&xr)[4], const float *row, int64_t ld, int step)
{
    int64_t col = (int64_t)step * MC_STEP + (threadIdx.x & 7) * 16;
    bool ok = row != NULL && col < ld;

#pragma unroll
    for (int q = 0; q < 4; q++) {
        xr[q] = ok ? __ldg(reinterpret_cast<const float4 *>(row + col) + q)
                   : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
}

/* The 16 values as f16 hi (x rounded) and lo (x - hi, rounded) into pair tid / 8's staged rows. */
static __device__ __forceinline__ void
mc_store_x(mc_xs_t &xs, const float4 (&xr)[4])
{
    int j = threadIdx.x >> 3;
    int c0 = (threadIdx.x & 7) * 16;

#pragma unroll
    for (int q = 0; q < 4; q++) {
        float4 v = xr[q];
        __half2 h01 = __floats2half2_rn(v.x, v.y);
        __half2 h23 = __floats2half2_rn(v.z, v.w);
        float2 f01 = __half22float2(h01);
        float2 f23 = __half22float2(h23);
        __half2 l01 = __floats2half2_rn(v.x - f01.x, v.y - f01.y);
        __half2 l23 = __floats2half2_rn(v.z - f23.x, v.w - f23.y);

        int c = c0 + 4 * q;

        *reinterpret_cast<uint2 *>(&xs[0][j][c]) = make_uint2(mv_h2bits(h01), mv_h2bits(h23));
        *reinterpret_cast<uint2 *>(&xs[1][j][c]) = make_uint2(mv_h2bits(l01), mv_h2bits(l23));
    }
}

static __device__ __forceinline__ uint32_t
mc_word(const uint4 &q, int j)
{
    return j == 0 ? q.x : j == 1 ? q.y : j == 2 ? q.z : q.w;
}

/* One step: acc[i][nt] += scale(tile i, step) x (the step's products of tile i and n-tile nt),
 * for the n-tiles below nt_live. */
static __device__ __forceinline__ void
mc_step(const uint4 (&v)[8], const mc_xs_t &xs, const struct fp8g_tile (&t)[2], int step,
        int nt_live, float (&acc)[2][MC_NT][4])
{
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int c = lane & 3;
    float part[2][MC_NT][4];

#pragma unroll
    for (int i = 0; i < 2; i++) {
#pragma unroll
        for (int nt = 0; nt < MC_NT; nt++) {
            part[i][nt][0] = part[i][nt][1] = part[i][nt][2] = part[i][nt][3] = 0.0f;
        }
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
#pragma unroll
        for (int j = 0; j < 4; j++) {
            uint32_t a[2][4];
#pragma unroll
            for (int i = 0; i < 2; i++) {
                mv_decode(mc_word(v[4 * i + h], j), a[i][0], a[i][2]);     /* row g */
                mv_decode(mc_word(v[4 * i + 2 + h], j), a[i][1], a[i][3]); /* row g + 8 */
            }
#pragma unroll
            for (int nt = 0; nt < MC_NT; nt++) {
                if (nt >= nt_live) {
                    break;
                }
#pragma unroll
                for (int hl = 0; hl < 2; hl++) {
                    uint2 b = *reinterpret_cast<const uint2 *>(&xs[hl][8 * nt + g][64 * h + 16 * c + 4 * j]);
#if MV_HW_CVT
                    uint32_t b0 = b.x; /* x0, x1 as a holds bytes 0, 1 */
                    uint32_t b1 = b.y; /* x2, x3 */
#else
                    uint32_t b0 = __byte_perm(b.x, b.y, 0x5410); /* x0, x2: bytes 0, 2 */
                    uint32_t b1 = __byte_perm(b.x, b.y, 0x7632); /* x1, x3 */
#endif
#pragma unroll
                    for (int i = 0; i < 2; i++) {
                        mv_mma(part[i][nt], a[i][0], a[i][1], a[i][2], a[i][3], b0, b1);
                    }
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
        float s = t[i].rows > 0 ? __ldg(t[i].scale + step) * MV_DECODE_SCALE : 0.0f;
#pragma unroll
        for (int nt = 0; nt < MC_NT; nt++) {
#pragma unroll
            for (int k = 0; k < 4; k++) {
                acc[i][nt][k] = fmaf(part[i][nt][k], s, acc[i][nt][k]);
            }
        }
    }
}

/*
 * The slow path of moe_chunk_kernel where a result came out inf or NaN (x past f16's range:
 * the staging splits it into f16 hi + lo): this thread's outputs computed again in fp32 on CUDA
 * cores (mt_fp8_row_dot, common.cuh), rows and pairs as the store below takes them. Rare, and
 * slow where it happens (one thread reads each row whole).
 */
template <bool GATE_UP>
static __device__ __forceinline__ void
mc_redo_f32(const struct fp8g_tile (&t)[2], const int32_t *pair_tok, int p0, int np,
            const float *x, int64_t K, int64_t rows, int64_t r0, float *out)
{
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int c = lane & 3;

    for (int nt = 0; nt < MC_NT; nt++) {
        for (int k = 0; k < 4; k++) {
            int j = 8 * nt + 2 * c + (k & 1);
            if (j >= np) {
                continue;
            }
            const float *xj = x + (GATE_UP ? (int64_t)pair_tok[p0 + j] : (int64_t)(p0 + j)) * K;
            float *o = out + (int64_t)(p0 + j) * rows;
            for (int i = 0; i < 2; i++) {
                /* gate/up: row r of both tiles; down: row r of tile i (16 rows on) */
                int64_t rt = g + 8 * (k >> 1);
                int64_t r = r0 + rt + (GATE_UP ? 0 : 16 * i);
                if (r >= rows || rt >= t[i].rows) {
                    continue;
                }
                float v = mt_fp8_row_dot(t[i].w + rt * K, t[i].scale, xj, K);
                if (GATE_UP) {
                    float uv = mt_fp8_row_dot(t[1].w + rt * K, t[1].scale, xj, K);
                    o[r] = v / (1.0f + expf(-v)) * uv;
                    break;
                }
                o[r] = v;
            }
        }
    }
}

/*
 * GATE_UP: h[p, r] = SiLU(gate_e[r] . x[pair_tok[p]]) * (up_e[r] . x[pair_tok[p]]) for the pairs
 * p of group blockIdx.x, rows r of row block blockIdx.y (x [tokens, K], h [pairs, rows]).
 * Otherwise: out[p, r] = down_e[r] . x[p] (x = h [pairs, K], out [pairs, rows]).
 */
template <bool GATE_UP>
static __global__ void __launch_bounds__(MC_WARPS * 32, 1)
moe_chunk_kernel(const struct mt_gpu_expert *experts, const int32_t *group_start,
                 const int32_t *pair_tok, const float *x, int64_t K, int64_t rows, float *out)
{
    mt_pdl_enter();
    __shared__ __align__(16) mc_xs_t xs[2];
    int grp = blockIdx.x;
    int p0 = group_start[grp];
    int np = min(group_start[grp + 1] - p0, MC_TOK);

    if (np <= 0) {
        return; /* an empty group (the device grouping's padding): the whole block */
    }
    int w = threadIdx.x >> 5;
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int c = lane & 3;
    const struct mt_gpu_expert *e = experts + grp;
    struct fp8g_tile t[2];
    int64_t r0;

    if (GATE_UP) {
        r0 = ((int64_t)blockIdx.y * MC_WARPS + w) * 16;
        t[0] = fp8g_tile_at((const uint8_t *)e->gate, e->gate_scale, rows, K, r0);
        t[1] = fp8g_tile_at((const uint8_t *)e->up, e->up_scale, rows, K, r0);
    } else {
        r0 = ((int64_t)blockIdx.y * MC_WARPS + w) * 32;
        t[0] = fp8g_tile_at((const uint8_t *)e->down, e->down_scale, rows, K, r0);
        t[1] = fp8g_tile_at((const uint8_t *)e->down, e->down_scale, rows, K, r0 + 16);
    }
    int jx = threadIdx.x >> 3; /* the pair whose x this thread stages */
    const float *xrow = NULL;
    if (jx < np) {
        xrow = x + (GATE_UP ? (int64_t)pair_tok[p0 + jx] : (int64_t)(p0 + jx)) * K;
    }
    int ns = (int)((K + MC_STEP - 1) / MC_STEP);
    int nt_live = (np + 7) / 8;
    uint4 wv[MC_AHEAD + 1][8];
    float acc[2][MC_NT][4];
    float4 xr[4];

#pragma unroll
    for (int i = 0; i < 2; i++) {
#pragma unroll
        for (int nt = 0; nt < MC_NT; nt++) {
            acc[i][nt][0] = acc[i][nt][1] = acc[i][nt][2] = acc[i][nt][3] = 0.0f;
        }
    }
#pragma unroll
    for (int a = 0; a < MC_AHEAD; a++) {
        if (a < ns) {
            mc_load_w(wv[a], t, K, a);
        }
    }
    mc_load_x(xr, xrow, K, 0);
    mc_store_x(xs[0], xr);
    __syncthreads();
    for (int s0 = 0; s0 < ns; s0 += MC_AHEAD + 1) {
#pragma unroll
        for (int u = 0; u <= MC_AHEAD; u++) {
            int s = s0 + u;
            if (s >= ns) {
                break;
            }
            if (s + MC_AHEAD < ns) { /* into the registers step s - 1 used */
                mc_load_w(wv[(u + MC_AHEAD) % (MC_AHEAD + 1)], t, K, s + MC_AHEAD);
            }
            if (s + 1 < ns) {
                mc_load_x(xr, xrow, K, s + 1);
            }
            mc_step(wv[u], xs[s & 1], t, s, nt_live, acc);
            if (s + 1 < ns) {
                mc_store_x(xs[(s + 1) & 1], xr); /* read by every warp in step s - 1: done */
            }
            __syncthreads();
        }
    }
    bool bad = false;
#pragma unroll
    for (int nt = 0; nt < MC_NT; nt++) {
#pragma unroll
        for (int k = 0; k < 4; k++) {
            int j = 8 * nt + 2 * c + (k & 1);
            int64_t r = r0 + g + 8 * (k >> 1);
            if (j >= np) {
                continue;
            }
            float *o = out + (int64_t)(p0 + j) * rows;
            if (GATE_UP) {
                if (r < rows) {
                    float gv = acc[0][nt][k];
                    bad = bad || !isfinite(gv) || !isfinite(acc[1][nt][k]);
                    o[r] = gv / (1.0f + expf(-gv)) * acc[1][nt][k];
                }
            } else {
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    if (r + 16 * i < rows) {
                        bad = bad || !isfinite(acc[i][nt][k]);
                        o[r + 16 * i] = acc[i][nt][k];
                    }
                }
            }
        }
    }
    if (bad) { /* rare: x past f16's range made a product inf or NaN; this thread's rows in fp32 */
        mc_redo_f32<GATE_UP>(t, pair_tok, p0, np, x, K, rows, r0, out);
    }
}

extern "C" int
mt_gpu_moe_chunk_group_max(void)
{
    const char *env = getenv("MT_MOE_CHUNK_GEMM"); /* read every call: tests take both */

    return env != NULL && strcmp(env, "0") == 0 ? MT_GPU_GEMV_MAX_TOK : MC_TOK;
}

extern "C" mt_status_t
mt_gpu_moe_chunk_experts(const struct mt_gpu_moe_args *a, struct CUstream_st *stream)
{
    cudaStream_t s = (cudaStream_t)stream;

    if (a->y_pairs == NULL || a->max_group_tok < 1 || a->max_group_tok > MC_TOK ||
        a->hidden < 16 || a->hidden % 16 != 0 || a->inter < 16 || a->inter % 16 != 0 ||
        a->n_groups < 1 || a->experts == NULL || a->group_start == NULL ||
        a->pair_tok == NULL || a->x == NULL || a->work == NULL) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "gpu chunk experts: hidden %d, inter %d, %d groups, at most %d pairs a "
                       "group (limit %d), outputs per pair %s",
                       a->hidden, a->inter, a->n_groups, a->max_group_tok, MC_TOK,
                       a->y_pairs != NULL ? "given" : "missing");
    }
    float *h = (float *)a->work;
    unsigned rb1 = (unsigned)MT_CEIL_DIV(a->inter, MC_WARPS * 16);
    unsigned rb2 = (unsigned)MT_CEIL_DIV(a->hidden, MC_WARPS * 32);
    mt_status_t st;

    mt_pdl_launch(moe_chunk_kernel<true>, dim3((unsigned)a->n_groups, rb1), dim3(MC_WARPS * 32), 0,
                  s, a->experts, a->group_start, a->pair_tok, a->x, (int64_t)a->hidden,
                  (int64_t)a->inter, h);
    if ((st = mt_cuda_launched("moe_chunk_gate_up", s)) != MT_OK) {
        return st;
    }
    mt_pdl_launch(moe_chunk_kernel<false>, dim3((unsigned)a->n_groups, rb2), dim3(MC_WARPS * 32),
                  0, s, a->experts, a->group_start, a->pair_tok, (const float *)h,
                  (int64_t)a->inter, (int64_t)a->hidden, a->y_pairs);
    return mt_cuda_launched("moe_chunk_down", s);
}
