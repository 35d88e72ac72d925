/* SPDX-License-Identifier: MIT */
/*
 * gemv.cu - y = W x for 1 to 8 tokens, W in FP8 e4m3 with 128x128 fp32 block scales or in BF16.
 *
 * The one idea: decode reads every weight once per token batch, so the kernel is a streaming
 * read at HBM bandwidth with the arithmetic hidden under it. FP8 runs on tensor cores (mma.sync,
 * any sm_80+), whose cost per weight byte is small and does not grow with the tokens, in one
 * wave of warps with equal shares (below); measured on the H200 it reaches 58-65% of HBM read
 * on the large matrices, not yet the 85% of issue 10 (bench/results/kernels-h200.md says what
 * was tried). BF16 (the lm_head), and one FP8 token of a matrix below 16 MB, use a CUDA-core
 * loop: a block of 256 threads is split into groups of T threads, each group owns 2 adjacent
 * rows (x is reused from registers), T chosen per shape so that every SM has work; BF16 streams
 * at 93-94% of HBM read that way. moe.cu keeps its own FP8 core (gemv_core.cuh).
 */
#include <config.h>

#include "kernels/ops.h"
#include "kernels/cuda_check.cuh"
#include "kernels/async_copy.cuh"
#include "kernels/common.cuh"
#include "kernels/pdl.cuh"

#include <algorithm>
#include <stdlib.h>

/* ---- FP8: tensor cores, every SM the same share ---------------------------------------------- */

/*
 * Work. The grid is one wave (blocks a SM from the occupancy calculator, times the SMs) and
 * block b takes rows [b rows / blocks, (b + 1) rows / blocks): equal shares to within a row, at
 * any row (a block's 16-row tiles need not start on a multiple of 16; every row has its own
 * scale row). Inside a block the (tile, step) pairs, a step being 128 columns of one scale
 * block, are numbered tile by tile and the MV_WARPS warps take equal contiguous ranges of them
 * (within one step of each other). A tile that a warp covers whole goes straight to y; the
 * pieces of a tile shared by consecutive warps meet in shared memory after one barrier and are
 * added in warp order, so results do not depend on scheduling. Why so strict: a warp's rate is
 * bounded by its bytes in flight, so the warp or SM with one share too many sets the time, and
 * a launch in 2.2 waves of whole-row blocks (the previous core) idles most SMs in the last one.
 * What is not balanced yet: a block's last tile may hold fewer than 16 rows (54 rows = 3.4
 * tiles for the 7168-row matrices), and its steps cost as much issue time as full ones.
 *
 * A step per thread (g = lane / 4, c = lane % 4): rows g and g + 8 of its tile, columns
 * 16c .. 16c + 15 and 64 + 16c .. 64 + 16c + 15: four 16-byte loads, 128 contiguous bytes of a
 * row across the four threads of a quad. Word j of a 16-byte load feeds one mma m16n8k16 (bytes
 * 0 and 2 in A's k slots 2c, 2c + 1, bytes 1 and 3 in 2c + 8, 2c + 9: the two half2 of
 * mt_fp8x4_decode), so a step is 8 mmas and the thread's x values line up with its own weights.
 * The next steps are loaded ahead, across tile ends, without a barrier in the loop: into P
 * register stages (P x 64 bytes a thread), or where shared memory allows into a cp.async ring
 * of A stages (below).
 *
 * B holds x split into f16 hi and lo (x - hi): column n = 2t + h of the mma is token t's hi (h 0)
 * or lo (h 1) half, so one mma serves 4 tokens, exact to about 22 bits of x (a single f16 misses
 * the tests' tolerance); 5..8 tokens take a second mma (NB = 2). Thread (g, c) supplies column g
 * of B and receives columns 2c (hi) and 2c + 1 (lo) of D: token c (+ 4 for the second mma).
 */

#define MV_WARPS 16 /* warps a block */
/* shared memory of the staged x: 2 parities x nkb steps x 16 chunks a token, plus padding */
#define MV_XS_BYTES(nt, cols) ((size_t)(nt) * 2 * (((cols) + 127) / 128 * 16 + 2) * 16)
#define MV_XS_MAX (96 << 10) /* staged only below this (sm_86/89 blocks get 99 KB) */
/* Register stages: 2 steps of 1 scale block ahead (measured 2026-11-30 on the H200: 3 steps, or
 * steps of 2 blocks, spill registers and ran 0-10% slower) */
#define MV_P 2
#define MV_SW 1
#define MV_ASYNC 1 /* the cp.async ring where it fits */
/* Steps a warp asks L2 for in its prologue, before mt_pdl_wait (2 KB a warp and step). None:
 * 8 made every shape 0.5-2.5 us slower, isolated or chained (H200, 2026-11-30 06:01) */
#define MV_L2AHEAD 0

static __device__ __forceinline__ uint32_t
mv_h2bits(__half2 h)
{
    return *reinterpret_cast<uint32_t *>(&h);
}

/* (a, b) as f16x2: hi halves where lom is 0, lo halves (value - f16(value)) where lom is 1. */
static __device__ __forceinline__ uint32_t
mv_split(float a, float b, float lom)
{
    __half2 h = __floats2half2_rn(a, b);
    float2 f = __half22float2(h);

    return mv_h2bits(__floats2half2_rn(fmaf(-lom, f.x, a), fmaf(-lom, f.y, b)));
}

/* d += A B on tensor cores: A 16x16 f16 (row), B 16x8 f16 (col), D 16x8 fp32. */
static __device__ __forceinline__ void
mv_mma(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
       uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* One thread's two rows (g and g + 8) of a tile: where the loads of the next steps come from. */
struct mv_rows {
    const uint8_t *a; /* row g at column 16c (W itself when the row does not exist) */
    const uint8_t *b; /* row g + 8 */
    const float *sa;  /* the scale row of row g's 128-row block */
    const float *sb;
    bool va;
    bool vb;
};

static __device__ __forceinline__ struct mv_rows
mv_rows_at(const uint8_t *W, const float *Sc, int64_t cols, int nkb, int64_t row, int64_t end,
           int c)
{
    struct mv_rows r;

    r.va = row < end;
    r.vb = row + 8 < end;
    r.a = W + (r.va ? row * cols : 0) + 16 * c;
    r.b = W + (r.vb ? (row + 8) * cols : 0) + 16 * c;
    r.sa = Sc + (r.va ? (row >> 7) * nkb : 0);
    r.sb = Sc + (r.vb ? ((row + 8) >> 7) * nkb : 0);
    return r;
}

/* One loaded step: SW 128-column blocks, each four 16-byte pieces (row g low and high half, row
 * g + 8 low and high half) and the two rows' scales. */
template <int SW>
struct mv_stage {
    uint4 v[SW][4];
    float sa[SW];
    float sb[SW];
};

/* Load step k (columns 128 SW k ..) of this thread's rows. */
template <int SW>
static __device__ __forceinline__ void
mv_fetch(const struct mv_rows &r, int64_t cols, int nkb, int c, int k, struct mv_stage<SW> &st)
{
    const uint4 z = make_uint4(0, 0, 0, 0);

#pragma unroll
    for (int s = 0; s < SW; s++) {
        int kb = k * SW + s;
        int64_t col = (int64_t)kb * 128 + 16 * c;
        bool c0 = col < cols;
        bool c1 = col + 64 < cols;
        const uint4 *pa = reinterpret_cast<const uint4 *>(r.a + (int64_t)kb * 128);
        const uint4 *pb = reinterpret_cast<const uint4 *>(r.b + (int64_t)kb * 128);

        st.v[s][0] = r.va && c0 ? __ldcs(pa) : z;
        st.v[s][1] = r.va && c1 ? __ldcs(pa + 4) : z;
        st.v[s][2] = r.vb && c0 ? __ldcs(pb) : z;
        st.v[s][3] = r.vb && c1 ? __ldcs(pb + 4) : z;
        int ks = min(kb, nkb - 1); /* a block past the end has zero weights; any scale */
        st.sa[s] = __ldg(r.sa + ks);
        st.sb[s] = __ldg(r.sb + ks);
    }
}

/* d += this thread's A of block s of the stage times B (bq: word pairs (b0, b1) of j = 0..3 for
 * half h in bq[2h + j / 2], word 2 (j % 2)). */
template <int SW>
static __device__ __forceinline__ void
mv_block_mma(const struct mv_stage<SW> &st, int s, const uint32_t (&bw)[2][4][2], float (&d)[4])
{
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const uint32_t *wa = reinterpret_cast<const uint32_t *>(&st.v[s][h]);
        const uint32_t *wb = reinterpret_cast<const uint32_t *>(&st.v[s][2 + h]);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            __half2 la, ha, lb, hb;
            mt_fp8x4_decode(wa[j], &la, &ha);
            mt_fp8x4_decode(wb[j], &lb, &hb);
            mv_mma(d, mv_h2bits(la), mv_h2bits(lb), mv_h2bits(ha), mv_h2bits(hb), bw[h][j][0],
                   bw[h][j][1]);
        }
    }
}

/* acc[b][i] += scale * (row g + 8i, step k) . x of token c + 4b, in units of 2^-8; x from
 * global memory (xr: this thread's token rows at column 16c), split into hi / lo here. */
template <int NB, int SW>
static __device__ __forceinline__ void
mv_consume(const struct mv_stage<SW> &st, int64_t cols, int c, int k,
           const float *const (&xr)[NB], float lom, float (&acc)[NB][2])
{
#pragma unroll
    for (int s = 0; s < SW; s++) {
        int64_t kc = (int64_t)(k * SW + s) * 128;
        bool cv[2] = {kc + 16 * c < cols, kc + 16 * c + 64 < cols};
#pragma unroll
        for (int b = 0; b < NB; b++) {
            uint32_t bw[2][4][2];
            float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const float4 *p = reinterpret_cast<const float4 *>(xr[b] + kc + 64 * h);
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    float4 q = cv[h] ? __ldg(p + j) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                    bw[h][j][0] = mv_split(q.x, q.z, lom);
                    bw[h][j][1] = mv_split(q.y, q.w, lom);
                }
            }
            mv_block_mma<SW>(st, s, bw, d);
            acc[b][0] = fmaf(d[0] + d[1], st.sa[s], acc[b][0]);
            acc[b][1] = fmaf(d[2] + d[3], st.sb[s], acc[b][1]);
        }
    }
}

/*
 * x staged in shared memory (XS): the B fragments of every 128-column block, made once per block
 * instead of once per warp and step (8 loads and 96 conversions a thread and block). Chunk
 * (token t, parity p, block k, thread column c, q) holds the four words (b0, b1 of word
 * j = 2(q & 1), then of j + 1) of half h = q >> 1: the hi halves for p = 0, lo for p = 1. A
 * thread reads its four chunks of a block as four 16-byte loads; q is swizzled by c and parity 1
 * starts 2 chunks later, so the 8 chunks that one load of a warp touches for one token fall in 8
 * different bank groups.
 */
static __device__ __forceinline__ int64_t
mv_xs_base(int t, int p, int nkb)
{
    return ((int64_t)(2 * t + p) * nkb * 16) + 2 * (2 * t + p);
}

#define MV_FILL_UNROLL 4 /* chunk pairs a thread converts at once: their loads overlap */

static __device__ __forceinline__ void
mv_xs_fill(uint4 *xs, const float *x, int64_t cols, int nkb, int nt)
{
    int total = nt * nkb * 16; /* chunk positions; each gives the hi and the lo chunk */

    for (int i0 = threadIdx.x; i0 < total; i0 += MV_FILL_UNROLL * blockDim.x) {
        float4 v[MV_FILL_UNROLL][2];
#pragma unroll
        for (int u = 0; u < MV_FILL_UNROLL; u++) {
            int i = i0 + u * blockDim.x;
            int q = i & 3;
            int c = (i >> 2) & 3;
            int k = (i >> 4) % nkb;
            int t = (i >> 4) / nkb;
#pragma unroll
            for (int jj = 0; jj < 2; jj++) {
                int64_t col = (int64_t)k * 128 + 64 * (q >> 1) + 16 * c + 4 * (2 * (q & 1) + jj);
                v[u][jj] = i < total && col < cols
                               ? __ldg(reinterpret_cast<const float4 *>(x + t * cols + col))
                               : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            }
        }
#pragma unroll
        for (int u = 0; u < MV_FILL_UNROLL; u++) {
            int i = i0 + u * blockDim.x;
            if (i >= total) {
                break;
            }
            int q = i & 3;
            int c = (i >> 2) & 3;
            int k = (i >> 4) % nkb;
            int t = (i >> 4) / nkb;
#pragma unroll
            for (int p = 0; p < 2; p++) {
                float lom = (float)p;
                uint4 b = make_uint4(mv_split(v[u][0].x, v[u][0].z, lom),
                                     mv_split(v[u][0].y, v[u][0].w, lom),
                                     mv_split(v[u][1].x, v[u][1].z, lom),
                                     mv_split(v[u][1].y, v[u][1].w, lom));
                xs[mv_xs_base(t, p, nkb) + (k * 4 + c) * 4 + (q ^ (c >> 1))] = b;
            }
        }
    }
}

/* mv_consume with x from the staged fragments: xsb = this thread's token and parity base. */
template <int SW>
static __device__ __forceinline__ void
mv_consume_xs(const struct mv_stage<SW> &st, const uint4 *xsb, int nkb, int c, int k,
              float (&acc)[2])
{
#pragma unroll
    for (int s = 0; s < SW; s++) {
        int kb = min(k * SW + s, nkb - 1); /* past the end: zero weights, any x */
        uint32_t bw[2][4][2];
        float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int q = 0; q < 4; q++) {
            uint4 b = xsb[(int64_t)kb * 16 + c * 4 + (q ^ (c >> 1))];
            bw[q >> 1][2 * (q & 1)][0] = b.x;
            bw[q >> 1][2 * (q & 1)][1] = b.y;
            bw[q >> 1][2 * (q & 1) + 1][0] = b.z;
            bw[q >> 1][2 * (q & 1) + 1][1] = b.w;
        }
        mv_block_mma<SW>(st, s, bw, d);
        acc[0] = fmaf(d[0] + d[1], st.sa[s], acc[0]);
        acc[1] = fmaf(d[2] + d[3], st.sb[s], acc[1]);
    }
}

/* y of this thread's rows (g, g + 8 of the tile at `row`) and tokens (c, c + 4). */
template <int NB>
static __device__ __forceinline__ void
mv_store(float *y, int64_t rows, int64_t row, int64_t end, int nt, int c,
         const float (&acc)[NB][2])
{
#pragma unroll
    for (int b = 0; b < NB; b++) {
        int t = c + 4 * b;
        if (t < nt) {
            if (row < end) {
                y[(int64_t)t * rows + row] = acc[b][0] * MT_FP8_DECODE_SCALE;
            }
            if (row + 8 < end) {
                y[(int64_t)t * rows + row + 8] = acc[b][1] * MT_FP8_DECODE_SCALE;
            }
        }
    }
}

/*
 * Asynchronous copies (A > 0): instead of P steps in registers, each thread copies its own 64
 * bytes and two scales of a step with cp.async (sm_80+) into its private slots of an A-stage
 * ring in shared memory, A - 1 steps ahead, and waits for its own copies only: more bytes in
 * flight than registers allow (ncu, 2026-11-30: with 2 register stages the warps spent half
 * their time waiting for loads), still without a barrier in the loop. Slot (stage, piece,
 * thread) is 16 bytes at ((stage * 4 + piece) * MV_WARPS * 32 + thread): a warp's loads of a
 * piece are 512 contiguous bytes.
 */
#define MV_T (MV_WARPS * 32)
#define MV_RING_BYTES(A) ((size_t)(A) * MV_T * (4 * 16 + 2 * 4))

/* Copy step k of this thread's rows into ring stage `stage` (zero-filled past the ends). */
static __device__ __forceinline__ void
mv_fetch_async(uint4 *ring, float *rs, int stage, const struct mv_rows &r, int64_t cols, int nkb,
               int c, int k)
{
    int64_t col = (int64_t)k * 128 + 16 * c;
    bool c0 = col < cols;
    bool c1 = col + 64 < cols;
    const uint8_t *pa = r.a + (int64_t)k * 128;
    const uint8_t *pb = r.b + (int64_t)k * 128;
    uint4 *dst = ring + (size_t)stage * 4 * MV_T + threadIdx.x;
    float *sd = rs + (size_t)stage * 2 * MV_T + threadIdx.x;
    int ks = min(k, nkb - 1);

    mt_cp_async16(dst, r.va && c0 ? pa : r.a, r.va && c0);
    mt_cp_async16(dst + MV_T, r.va && c1 ? pa + 64 : r.a, r.va && c1);
    mt_cp_async16(dst + 2 * MV_T, r.vb && c0 ? pb : r.b, r.vb && c0);
    mt_cp_async16(dst + 3 * MV_T, r.vb && c1 ? pb + 64 : r.b, r.vb && c1);
    mt_cp_async4(sd, r.sa + ks, true);
    mt_cp_async4(sd + MV_T, r.sb + ks, true);
}

static __device__ __forceinline__ void
mv_ring_read(const uint4 *ring, const float *rs, int stage, struct mv_stage<1> &st)
{
    const uint4 *src = ring + (size_t)stage * 4 * MV_T + threadIdx.x;
    const float *sd = rs + (size_t)stage * 2 * MV_T + threadIdx.x;

#pragma unroll
    for (int q = 0; q < 4; q++) {
        st.v[0][q] = src[q * MV_T];
    }
    st.sa[0] = sd[0];
    st.sb[0] = sd[MV_T];
}

/* NB: mmas a block (tokens 1..4 or 5..8); P: steps loaded ahead; XS: x staged in shared memory
 * (NB 1 only; dynamic shared memory of MV_XS_BYTES(nt, cols)); SW: 128-column blocks a step;
 * A: stages of the cp.async ring instead of P register stages (0: none; needs XS, SW 1, NB 1;
 * MV_RING_BYTES(A) more dynamic shared memory after the staged x). */
template <int NB, int P, bool XS, int SW, int A>
static __global__ void __launch_bounds__(MV_WARPS * 32, 1)
gemv_fp8_kernel(const uint8_t *__restrict__ W, const float *__restrict__ Sc, int64_t rows,
                int64_t cols, const float *__restrict__ x, int nt, float *__restrict__ y,
                int l2ahead)
{
    __shared__ float red[MV_WARPS][2][2 * NB][32]; /* a warp's first and last tile, if shared */
    extern __shared__ uint4 xs[];
    int w = threadIdx.x >> 5;
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int c = lane & 3;
    int64_t rb0 = (int64_t)blockIdx.x * rows / gridDim.x;
    int64_t rb1 = (int64_t)(blockIdx.x + 1) * rows / gridDim.x;
    int nkb = (int)((cols + 127) / 128);
    int nst = (nkb + SW - 1) / SW; /* steps a tile */
    int64_t units = (rb1 - rb0 + 15) / 16 * nst;
    int64_t a = w * units / MV_WARPS; /* this warp's (tile, step) numbers: a .. e - 1 */
    int64_t e = (w + 1) * units / MV_WARPS;
    int n = (int)(e - a);
    int t0 = (int)(a / nst); /* first tile */

    const float *xr[NB];
#pragma unroll
    for (int b = 0; b < NB; b++) {
        int t = min((g >> 1) + 4 * b, nt - 1); /* columns of absent tokens: any finite x */
        xr[b] = x + (int64_t)t * cols + 16 * c;
    }
    float lom = (g & 1) ? 1.0f : 0.0f;
    float acc[NB][2];
#pragma unroll
    for (int b = 0; b < NB; b++) {
        acc[b][0] = 0.0f;
        acc[b][1] = 0.0f;
    }

    /* fetch cursor (ft, fk) runs ahead of the consume cursor (ct, ck) */
    int ft = t0;
    int fk = (int)(a - (int64_t)t0 * nst);
    int ct = ft;
    int ck = fk;
    struct mv_rows fr = mv_rows_at(W, Sc, cols, nkb, rb0 + 16 * ft + g, rb1, c);
    auto advance = [&]() {
        if (++fk == nst) {
            fk = 0;
            ft++;
            fr = mv_rows_at(W, Sc, cols, nkb, rb0 + 16 * ft + g, rb1, c);
        }
    };
    /* after each step: a tile ends, or this warp's range does: store it or leave the piece */
    /* L2 prefetch of the `ahead` steps after the fetch cursor (the lines of rows g and g + 8,
     * one thread of a quad each): weights no kernel writes, so they may be requested before
     * mt_pdl_wait, while the previous kernel finishes (a hint; the loads come later) */
    auto prefetch_ahead = [&](int done, int ahead) {
        int pt = ft;
        int pk = fk;
        struct mv_rows pr = fr;
        for (int i = done; i < min(n, done + ahead); i++) {
            if (c == 0) {
                if (pr.va) {
                    mt_prefetch_l2(pr.a + (int64_t)pk * 128);
                }
                if (pr.vb) {
                    mt_prefetch_l2(pr.b + (int64_t)pk * 128);
                }
            }
            if (++pk == nst) {
                pk = 0;
                pt++;
                pr = mv_rows_at(W, Sc, cols, nkb, rb0 + 16 * pt + g, rb1, c);
            }
        }
    };
    auto step_done = [&](bool last) {
        if (++ck == nst || last) {
            int64_t u0 = (int64_t)ct * nst;
            if (u0 >= a && u0 + nst <= e) {
                mv_store<NB>(y, rows, rb0 + 16 * ct + g, rb1, nt, c, acc);
            } else {
                int slot = ct == t0 ? 0 : 1;
#pragma unroll
                for (int b = 0; b < NB; b++) {
                    red[w][slot][2 * b][lane] = acc[b][0];
                    red[w][slot][2 * b + 1][lane] = acc[b][1];
                }
            }
#pragma unroll
            for (int b = 0; b < NB; b++) {
                acc[b][0] = 0.0f;
                acc[b][1] = 0.0f;
            }
            ck = 0;
            ct++;
        }
    };
    if constexpr (A > 0) {
        uint4 *ring = xs + (XS ? (int64_t)nt * 2 * (nkb * 16 + 2) : 0);
        float *rs = reinterpret_cast<float *>(ring + (size_t)A * 4 * MV_T);
#pragma unroll
        for (int i = 0; i < A - 1; i++) {
            if (i < n) {
                mv_fetch_async(ring, rs, i, fr, cols, nkb, c, fk);
                advance();
            }
            mt_cp_async_commit();
        }
        prefetch_ahead(A - 1, l2ahead);
        mt_pdl_enter(); /* x is the previous kernel's output: read it after the wait */
        mv_xs_fill(xs, x, cols, nkb, nt); /* the first steps' copies are in flight meanwhile */
        __syncthreads();
        const uint4 *xsb = xs + mv_xs_base(min(g >> 1, nt - 1), g & 1, nkb);
        int sc = 0; /* stage of step i */
        for (int i = 0; i < n; i++) {
            if (i + A - 1 < n) {
                mv_fetch_async(ring, rs, (sc + A - 1) % A, fr, cols, nkb, c, fk);
                advance();
            }
            mt_cp_async_commit();
            mt_cp_async_wait<A - 1>(); /* step i's group is complete; A - 1 newer may be in flight */
            struct mv_stage<1> st;
            mv_ring_read(ring, rs, sc, st);
            mv_consume_xs<1>(st, xsb, nkb, c, ck, acc[0]);
            step_done(i + 1 == n);
            sc = sc + 1 == A ? 0 : sc + 1;
        }
        mt_cp_async_wait<0>();
    } else {
        struct mv_stage<SW> st[P];

#pragma unroll
        for (int i = 0; i < P; i++) {
            if (i < n) {
                mv_fetch<SW>(fr, cols, nkb, c, fk, st[i]);
                advance();
            }
        }
        prefetch_ahead(P, l2ahead);
        mt_pdl_enter(); /* x is the previous kernel's output: read it after the wait */
        const uint4 *xsb = xs;
        if (XS) { /* the first steps' loads are in flight meanwhile */
            mv_xs_fill(xs, x, cols, nkb, nt);
            __syncthreads();
            xsb = xs + mv_xs_base(min(g >> 1, nt - 1), g & 1, nkb);
        }
        for (int i0 = 0; i0 < n; i0 += P) {
#pragma unroll
            for (int i = 0; i < P; i++) {
                if (i0 + i < n) {
                    if (XS) {
                        mv_consume_xs<SW>(st[i], xsb, nkb, c, ck, acc[0]);
                    } else {
                        mv_consume<NB, SW>(st[i], cols, c, ck, xr, lom, acc);
                    }
                    if (i0 + i + P < n) {
                        mv_fetch<SW>(fr, cols, nkb, c, fk, st[i]);
                        advance();
                    }
                    step_done(i0 + i + 1 == n);
                }
            }
        }
    }
    __syncthreads();
    if (n == 0) {
        return;
    }
    /* the warp holding the first piece of a shared tile adds the pieces in warp order */
    int tl = (int)((e - 1) / nst);
    int64_t u0 = (int64_t)tl * nst;
    if (u0 < a || u0 + nst <= e) {
        return; /* not this warp's tile to finish: whole (stored) or begun by an earlier warp */
    }
    int slot = tl == t0 ? 0 : 1;
#pragma unroll
    for (int b = 0; b < NB; b++) {
        acc[b][0] = red[w][slot][2 * b][lane];
        acc[b][1] = red[w][slot][2 * b + 1][lane];
    }
    for (int w2 = w + 1; w2 < MV_WARPS; w2++) {
        int64_t a2 = w2 * units / MV_WARPS;
        if (a2 >= u0 + nst) {
            break;
        }
        if ((w2 + 1) * units / MV_WARPS == a2) {
            continue; /* an empty range */
        }
#pragma unroll
        for (int b = 0; b < NB; b++) {
            acc[b][0] += red[w2][0][2 * b][lane];
            acc[b][1] += red[w2][0][2 * b + 1][lane];
        }
    }
    mv_store<NB>(y, rows, rb0 + 16 * tl + g, rb1, nt, c, acc);
}

/* Knobs for measurements, read once: MT_GEMV_XS=0 (x split in registers by every warp instead of
 * staged), MT_GEMV_ASYNC=0 (register stages instead of the cp.async ring), MT_GEMV_L2AHEAD=n
 * (steps a warp asks L2 for before its wait, beyond those it loads; 0 none). */
static int
gemv_env(const char *name, int lo, int hi, int dflt)
{
    const char *e = getenv(name);
    int v = e != NULL ? atoi(e) : dflt;

    return v >= lo && v <= hi ? v : dflt;
}

struct mv_knobs {
    int read;
    int xs;
    int async;
    int l2ahead;
};

static struct mv_knobs
gemv_knobs(void)
{
    static struct mv_knobs k; /* read 0: not yet (a race only reads them twice) */

    if (k.read == 0) {
        struct mv_knobs v = {1, gemv_env("MT_GEMV_XS", 0, 1, 1),
                             gemv_env("MT_GEMV_ASYNC", 0, 1, MV_ASYNC),
                             gemv_env("MT_GEMV_L2AHEAD", 0, 64, MV_L2AHEAD)};
        k = v;
    }
    return k;
}

/* A device attribute of the current device, queried once per device (fallback if the query
 * fails or gives 0); a race between threads only repeats the query. */
static int
device_attr_cached(int (&known)[64], cudaDeviceAttr attr, int fallback)
{
    int dev = 0;
    int n = 0;

    if (cudaGetDevice(&dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return fallback;
    }
    if (dev < 64 && known[dev] > 0) {
        return known[dev];
    }
    if (cudaDeviceGetAttribute(&n, attr, dev) != cudaSuccess) {
        (void)cudaGetLastError(); /* the launch after it reports a real device problem */
        n = 0;
    }
    n = n > 0 ? n : fallback;
    if (dev < 64) {
        known[dev] = n;
    }
    return n;
}

static int
sm_count(void)
{
    static int known[64];

    return device_attr_cached(known, cudaDevAttrMultiProcessorCount, 1);
}

/* Largest dynamic shared memory a block of this device may have. */
static int
smem_optin(void)
{
    static int known[64];

    return device_attr_cached(known, cudaDevAttrMaxSharedMemoryPerBlockOptin, 48 << 10);
}

/* Blocks: one wave (blocks a SM, once per device, times the SMs), but at least 8 rows each. */
template <int NB, int P, bool XS, int SW, int A>
static mt_status_t
gemv_fp8_launch(const struct mt_gpu_weight *w, const float *x, int n_tok, float *y,
                cudaStream_t s)
{
    static int occ[64]; /* blocks a SM per device; 0 unknown (a race only repeats the query) */
    size_t smem = (XS ? MV_XS_BYTES(n_tok, w->cols) : 0) + MV_RING_BYTES(A);
    int dev = 0;

    cudaGetDevice(&dev);
    int bps = dev < 64 ? occ[dev] : 0;
    if (bps == 0) {
        /* the static reduction buffer counts against the same limit */
        int dyn = smem_optin() - (int)sizeof(float) * MV_WARPS * 2 * 2 * NB * 32;
        mt_status_t st = MT_OK;
        if (XS) {
            st = MT_CUDA(cudaFuncSetAttribute(gemv_fp8_kernel<NB, P, XS, SW, A>,
                                              cudaFuncAttributeMaxDynamicSharedMemorySize, dyn));
        }
        if (st == MT_OK) {
            st = MT_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                &bps, gemv_fp8_kernel<NB, P, XS, SW, A>, MV_WARPS * 32, XS ? dyn : 0));
        }
        if (st != MT_OK) {
            return st; /* named by MT_CUDA: the call, CUDA's reason */
        }
        bps = bps > 0 ? bps : 1;
        if (dev < 64) {
            occ[dev] = bps;
        }
    }
    long long blocks = (long long)bps * sm_count();
    blocks = std::min(blocks, MT_CEIL_DIV(w->rows, 8LL));
    mt_pdl_launch(gemv_fp8_kernel<NB, P, XS, SW, A>, dim3((unsigned)blocks), dim3(MV_WARPS * 32),
                  smem, s, (const uint8_t *)w->data, w->scale, w->rows, w->cols, x, n_tok, y,
                  gemv_knobs().l2ahead);
    return mt_cuda_launched("gemv_fp8", s);
}

/* ---- CUDA cores: BF16, and FP8 for one token below 16 MB ----------------------------------- */

/* One token of a small FP8 matrix stays on this loop: the tensor-core kernel above needs 9-12 us
 * for 4-14 MB matrices against 5.7-9.6 us here (2026-11-30 session 3: its warps cover only 2-4
 * steps, each waiting a full memory latency). */
#define GEMV_FP8_SMALL_BYTES (16LL << 20)

#define GEMV_THREADS 256
#define GEMV_ROWS 2   /* R: rows per thread group (x is reused across them) */
/* 16-byte loads per row in flight per thread (4 for FP8 measured 48-50% of HBM read on the H200
 * against 55% with 2: more registers, fewer resident warps) */
#define GEMV_UNROLL 2

/*
 * Accumulate acc[i][t] += W[row i, :] . x[t, :] over this thread's units (16 weights for FP8, 8 for
 * BF16) lane, lane + T, ... of `units`. wrow[i] NULL means row i does not exist. srow[i]: the
 * FP8 scale row of row i's block row (unused for BF16). x[t] rows are 16-byte aligned fp32.
 */
template <bool FP8, int NT, int R>
static __device__ __forceinline__ void
gemv_group_dot(const uint4 *const (&wrow)[R], const float *const (&srow)[R], int units,
               const float4 *const (&x)[NT], int nt, int lane, int T, float (&acc)[R][NT])
{
    for (int u0 = lane; u0 < units; u0 += T * GEMV_UNROLL) {
        uint4 w[GEMV_UNROLL][R];

#pragma unroll
        for (int k = 0; k < GEMV_UNROLL; k++) {
            int u = u0 + k * T;
#pragma unroll
            for (int i = 0; i < R; i++) {
                w[k][i] = (u < units && wrow[i] != NULL) ? __ldcs(wrow[i] + u)
                                                         : make_uint4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int k = 0; k < GEMV_UNROLL; k++) {
            int u = u0 + k * T;
            if (u >= units) {
                break;
            }
            if (FP8) {
                /* words 0-1 through half2 (conversion pipe), words 2-3 through integer moves
                 * (mt_fp8_to_f32_scaled): the two decoders share the work between pipes */
                float wh[R][8];
                float wi[R][8];
                float sc[R];
#pragma unroll
                for (int i = 0; i < R; i++) {
                    const uint32_t *v = reinterpret_cast<const uint32_t *>(&w[k][i]);
                    sc[i] = wrow[i] != NULL ? __ldg(srow[i] + (u >> 3)) : 0.0f;
#pragma unroll
                    for (int j = 0; j < 2; j++) {
                        __half2 lo;
                        __half2 hi;
                        mt_fp8x4_decode(v[j], &lo, &hi);
                        float2 a = __half22float2(lo);
                        float2 b = __half22float2(hi);
                        wh[i][4 * j + 0] = a.x;
                        wh[i][4 * j + 1] = b.x;
                        wh[i][4 * j + 2] = a.y;
                        wh[i][4 * j + 3] = b.y;
                        wi[i][4 * j + 0] = mt_fp8_to_f32_scaled<0>(v[2 + j]);
                        wi[i][4 * j + 1] = mt_fp8_to_f32_scaled<1>(v[2 + j]);
                        wi[i][4 * j + 2] = mt_fp8_to_f32_scaled<2>(v[2 + j]);
                        wi[i][4 * j + 3] = mt_fp8_to_f32_scaled<3>(v[2 + j]);
                    }
                }
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    if (t >= nt) {
                        break;
                    }
                    float xf[16];
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        float4 q = __ldg(x[t] + 4 * u + j);
                        xf[4 * j + 0] = q.x;
                        xf[4 * j + 1] = q.y;
                        xf[4 * j + 2] = q.z;
                        xf[4 * j + 3] = q.w;
                    }
#pragma unroll
                    for (int i = 0; i < R; i++) {
                        float ph = 0.0f;
                        float pi = 0.0f;
#pragma unroll
                        for (int j = 0; j < 8; j++) {
                            ph = fmaf(wh[i][j], xf[j], ph);
                            pi = fmaf(wi[i][j], xf[8 + j], pi);
                        }
                        float p = fmaf(ph, MT_FP8_DECODE_SCALE, pi * MT_FP8_F32_SCALE);
                        acc[i][t] = fmaf(p, sc[i], acc[i][t]);
                    }
                }
            } else {
                float wf[R][8];
#pragma unroll
                for (int i = 0; i < R; i++) {
                    const uint32_t *v = reinterpret_cast<const uint32_t *>(&w[k][i]);
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        float2 f = mt_bf16x2_decode(v[j]);
                        wf[i][2 * j] = f.x;
                        wf[i][2 * j + 1] = f.y;
                    }
                }
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    if (t >= nt) {
                        break;
                    }
                    float4 q0 = __ldg(x[t] + 2 * u);
                    float4 q1 = __ldg(x[t] + 2 * u + 1);
                    float xf[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
#pragma unroll
                    for (int i = 0; i < R; i++) {
#pragma unroll
                        for (int j = 0; j < 8; j++) {
                            acc[i][t] = fmaf(wf[i][j], xf[j], acc[i][t]);
                        }
                    }
                }
            }
        }
    }
}

/*
 * Sum acc over the T threads of each group of the block (GEMV_THREADS threads, groups of T
 * consecutive threads, T a power of two >= 32). Every thread of the block must call it. On
 * return, thread `lane == 0` of each group holds the group's totals in acc.
 */
template <int NT, int R>
static __device__ __forceinline__ void
gemv_group_reduce(float (&acc)[R][NT], int lane, int T)
{
    __shared__ float red[GEMV_THREADS / 32][R * NT];
    int warp = threadIdx.x / 32;

#pragma unroll
    for (int i = 0; i < R; i++) {
#pragma unroll
        for (int t = 0; t < NT; t++) {
            acc[i][t] = mt_warp_sum(acc[i][t]);
        }
    }
    if (T == 32) {
        return;
    }
    if ((threadIdx.x & 31) == 0) {
#pragma unroll
        for (int i = 0; i < R; i++) {
#pragma unroll
            for (int t = 0; t < NT; t++) {
                red[warp][i * NT + t] = acc[i][t];
            }
        }
    }
    __syncthreads();
    if (lane == 0) {
#pragma unroll
        for (int i = 0; i < R; i++) {
#pragma unroll
            for (int t = 0; t < NT; t++) {
                float s = 0.0f;
                for (int wi = 0; wi < T / 32; wi++) {
                    s += red[warp + wi][i * NT + t];
                }
                acc[i][t] = s;
            }
        }
    }
}

/* Threads per row group for rows of `units` 16-byte units: enough units per thread to keep
 * loads in flight, but more threads per row when there are too few rows to fill the GPU. */
static int
gemv_group_threads(long long units, long long rows_total, int n_sm)
{
    int T = 32;

    while (T < GEMV_THREADS && (long long)T * 4 <= units) {
        T *= 2;
    }
    while (T < GEMV_THREADS && (long long)T * 2 <= units &&
           MT_CEIL_DIV(rows_total, (long long)(GEMV_THREADS / T) * GEMV_ROWS) < 2LL * n_sm) {
        T *= 2;
    }
    return T;
}


template <bool FP8, int NT>
static __global__ void
gemv_kernel(const uint8_t *__restrict__ W, const float *__restrict__ S, int64_t rows, int64_t cols,
            const float *__restrict__ x, float *__restrict__ y, int T, bool l2)
{
    const int R = GEMV_ROWS;
    int groups = GEMV_THREADS / T;
    int lane = threadIdx.x % T;
    int64_t r0 = ((int64_t)blockIdx.x * groups + threadIdx.x / T) * R;
    int64_t row_bytes = cols * (FP8 ? 1 : 2);
    int64_t n_cb = (cols + 127) / 128;
    int units = (int)(cols / (FP8 ? 16 : 8));
    const uint4 *wrow[R];
    const float *srow[R];
    const float4 *xr[NT];
    float acc[R][NT];

#pragma unroll
    for (int i = 0; i < R; i++) {
        int64_t r = r0 + i;
        wrow[i] = r < rows ? reinterpret_cast<const uint4 *>(W + r * row_bytes) : NULL;
        srow[i] = FP8 ? S + (r / 128) * n_cb : NULL;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            acc[i][t] = 0.0f;
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        xr[t] = reinterpret_cast<const float4 *>(x + t * cols);
    }
    /* this thread's first weight loads, asked of L2 before the wait (pdl.cuh; MT_GEMV_L2AHEAD) */
#pragma unroll
    for (int i = 0; l2 && i < R; i++) {
#pragma unroll
        for (int k = 0; k < GEMV_UNROLL; k++) {
            int u = lane + k * T;
            if (wrow[i] != NULL && u < units) {
                mt_prefetch_l2(wrow[i] + u);
            }
        }
    }
    mt_pdl_enter();
    gemv_group_dot<FP8, NT, R>(wrow, srow, units, xr, NT, lane, T, acc);
    gemv_group_reduce<NT, R>(acc, lane, T);
    if (lane != 0) {
        return;
    }
#pragma unroll
    for (int i = 0; i < R; i++) {
        if (r0 + i < rows) {
#pragma unroll
            for (int t = 0; t < NT; t++) {
                y[t * rows + r0 + i] = acc[i][t];
            }
        }
    }
}

template <bool FP8, int NT>
static mt_status_t
gemv_launch(const struct mt_gpu_weight *w, const float *x, float *y, cudaStream_t s)
{
    long long units = w->cols / (FP8 ? 16 : 8);
    int T = gemv_group_threads(units, w->rows, sm_count());
    long long rows_per_block = (long long)(GEMV_THREADS / T) * GEMV_ROWS;
    unsigned blocks = (unsigned)MT_CEIL_DIV(w->rows, rows_per_block);

    mt_pdl_launch(gemv_kernel<FP8, NT>, dim3(blocks), dim3(GEMV_THREADS), 0, s,
                  (const uint8_t *)w->data, w->scale, w->rows, w->cols, x, y, T,
                  gemv_knobs().l2ahead > 0);
    return mt_cuda_launched(FP8 ? "gemv_fp8" : "gemv_bf16", s);
}

template <bool FP8>
static mt_status_t
gemv_dispatch(const struct mt_gpu_weight *w, const float *x, int n_tok, float *y, cudaStream_t s)
{
    switch (n_tok) {
    case 1: return gemv_launch<FP8, 1>(w, x, y, s);
    case 2: return gemv_launch<FP8, 2>(w, x, y, s);
    case 3: return gemv_launch<FP8, 3>(w, x, y, s);
    case 4: return gemv_launch<FP8, 4>(w, x, y, s);
    case 5: return gemv_launch<FP8, 5>(w, x, y, s);
    case 6: return gemv_launch<FP8, 6>(w, x, y, s);
    case 7: return gemv_launch<FP8, 7>(w, x, y, s);
    default: return gemv_launch<FP8, 8>(w, x, y, s);
    }
}

extern "C" mt_status_t
mt_gpu_linear(const struct mt_gpu_weight *w, const float *x, int n_tok, float *y,
              struct CUstream_st *stream)
{
    bool fp8 = w->dtype == MT_DTYPE_F8_E4M3;

    if (!fp8 && w->dtype != MT_DTYPE_BF16) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu linear: weight dtype %s is not F8_E4M3 or BF16",
                       mt_dtype_name(w->dtype));
    }
    if (n_tok < 1 || n_tok > MT_GPU_GEMV_MAX_TOK || w->rows < 1 || w->cols < 1 ||
        w->cols % (fp8 ? 16 : 8) != 0 || w->rows > INT32_MAX * 2LL ||
        w->cols / 16 > INT32_MAX) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu linear: %lld x %lld %s weight with %d tokens",
                       (long long)w->rows, (long long)w->cols, mt_dtype_name(w->dtype), n_tok);
    }
    if (w->data == NULL || x == NULL || y == NULL || (fp8 && w->scale == NULL) ||
        ((uintptr_t)w->data | (uintptr_t)x) % 16 != 0) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu linear: NULL or not 16-byte aligned operand");
    }
    if (!fp8) {
        return gemv_dispatch<false>(w, x, n_tok, y, stream);
    }
    if (n_tok == 1 && w->rows * w->cols < GEMV_FP8_SMALL_BYTES) {
        return gemv_launch<true, 1>(w, x, y, stream);
    }
    struct mv_knobs k = gemv_knobs();
    if (n_tok > 4) {
        return gemv_fp8_launch<2, MV_P, false, MV_SW, 0>(w, x, n_tok, y, stream);
    }
    size_t xs = MV_XS_BYTES(n_tok, w->cols);
    size_t room = (size_t)smem_optin() - sizeof(float) * MV_WARPS * 2 * 2 * 32;
    if (k.xs && k.async && xs + MV_RING_BYTES(4) <= room) {
        return gemv_fp8_launch<1, MV_P, true, 1, 4>(w, x, n_tok, y, stream);
    }
    if (k.xs && k.async && xs + MV_RING_BYTES(3) <= room) {
        return gemv_fp8_launch<1, MV_P, true, 1, 3>(w, x, n_tok, y, stream);
    }
    if (k.xs && xs <= std::min((size_t)MV_XS_MAX, room)) {
        return gemv_fp8_launch<1, MV_P, true, MV_SW, 0>(w, x, n_tok, y, stream);
    }
    return gemv_fp8_launch<1, MV_P, false, MV_SW, 0>(w, x, n_tok, y, stream);
}
