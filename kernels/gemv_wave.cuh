/* SPDX-License-Identifier: MIT */
/*
 * gemv_wave.cuh - the FP8 decode GEMV core on tensor cores in one wave of equal shares, for
 * gemv.cu's dense matrices and moe.cu's routed experts (a policy says where a block's rows and
 * x come from and where the results go; the loop is the same).
 */
#ifndef MT_KERNELS_GEMV_WAVE_CUH
#define MT_KERNELS_GEMV_WAVE_CUH

#include "kernels/async_copy.cuh"
#include "kernels/common.cuh"
#include "kernels/pdl.cuh"
#include "kernels/tensor_copy.cuh"

#include <stdint.h>

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
 * A block's last tile may hold fewer than 16 rows (54 rows = 3.4 tiles for the 7168-row
 * matrices), so its warps run more (tile, step) units than a share of the whole grid's would
 * (32 against 27.2 a warp at 7168 x 16384); but its bytes are the same as every other block's,
 * and bytes a SM set the time: sharing units over the grid, with the tiles at block boundaries
 * finished by whichever of the two blocks got there second (a piece in global memory, a fence
 * and an atomic count), was built and measured 1-2 us slower at every shape (H200, 2026-11-30
 * session 9: 7168x16384 36.7 against 34.7 us, 32768x512 8.2 / 6.8; bench/results/kernels-h200.md).
 *
 * A step per thread (g = lane / 4, c = lane % 4): rows g and g + 8 of its tile, columns
 * 16c .. 16c + 15 and 64 + 16c .. 64 + 16c + 15: four 16-byte loads, 128 contiguous bytes of a
 * row across the four threads of a quad. Word j of a 16-byte load feeds one mma m16n8k16 (its
 * two f16x2 halves from mv_decode in A's k slots 2c, 2c + 1 and 2c + 8, 2c + 9), so a step is 8
 * mmas and the thread's x values (paired the same way) line up with its own weights.
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
#define MV_XS_BYTES(nt, cols) ((size_t)(nt) * 2 * (((cols) + 127) / 128 * 16 + 4) * 16)
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

/*
 * Weights to A fragments. From sm_89 the hardware converts two e4m3 bytes to an f16x2 in one
 * instruction (exactly: every e4m3 value is an f16), so a 4-byte word is two conversions: lo =
 * (byte 0, byte 1), hi = (byte 2, byte 3), at their true values. Below sm_89, mt_fp8x4_decode's
 * integer moves (7 instructions a word, 45% of the loop's instructions on the H200 by Nsight
 * Compute): lo = (byte 0, byte 2), hi = (byte 1, byte 3), scaled by 2^-8. x's B words pair the
 * same elements (mv_bword0, mv_bword1), and results are multiplied by MV_DECODE_SCALE. The
 * conversion serves the paths with x staged in shared memory (one to four tokens); the 5-8 token
 * path (mv_consume) keeps the integer moves. MT_GEMV_BIT_DECODE=1 at build time keeps them
 * everywhere (for measurements). Measured on the H200 with the lean fetch below (2026-11-30
 * session 8): 0.5-1.5 us less a GEMV of 117-132 MB than the integer moves.
 */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890 && !MT_GEMV_BIT_DECODE
#define MV_HW_CVT 1
#define MV_DECODE_SCALE 1.0f
#else
#define MV_HW_CVT 0
#define MV_DECODE_SCALE MT_FP8_DECODE_SCALE
#endif

static __device__ __forceinline__ void
mv_decode(uint32_t w, uint32_t &lo, uint32_t &hi)
{
#if MV_HW_CVT
    asm("{\n\t.reg .b16 l, h;\n\tmov.b32 {l, h}, %2;\n\t"
        "cvt.rn.f16x2.e4m3x2 %0, l;\n\tcvt.rn.f16x2.e4m3x2 %1, h;\n\t}"
        : "=r"(lo), "=r"(hi)
        : "r"(w));
#else
    __half2 l;
    __half2 h;
    mt_fp8x4_decode(w, &l, &h);
    lo = mv_h2bits(l);
    hi = mv_h2bits(h);
#endif
}

/* (a, b) as f16x2: hi halves where lom is 0, lo halves (value - f16(value)) where lom is 1. */
static __device__ __forceinline__ uint32_t
mv_split(float a, float b, float lom)
{
    __half2 h = __floats2half2_rn(a, b);
    float2 f = __half22float2(h);

    return mv_h2bits(__floats2half2_rn(fmaf(-lom, f.x, a), fmaf(-lom, f.y, b)));
}

/* The B words (b0 for A's lo half, b1 for hi) of four consecutive x values, paired as
 * mv_decode pairs the weight bytes. */
static __device__ __forceinline__ uint32_t
mv_bword0(float4 q, float lom)
{
    return MV_HW_CVT ? mv_split(q.x, q.y, lom) : mv_split(q.x, q.z, lom);
}

static __device__ __forceinline__ uint32_t
mv_bword1(float4 q, float lom)
{
    return MV_HW_CVT ? mv_split(q.z, q.w, lom) : mv_split(q.y, q.w, lom);
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

/* p ? a : b, word by word (one select each) */
static __device__ __forceinline__ uint4
mv_pick(bool p, uint4 a, uint4 b)
{
    return make_uint4(p ? a.x : b.x, p ? a.y : b.y, p ? a.z : b.z, p ? a.w : b.w);
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

/* d += this thread's A of block s of the stage times B (bw: word pairs (b0, b1) of j = 0..3 for
 * half h in bw[h][j]). HW: the weights through mv_decode (MV_HW_CVT's pairing and scale), else
 * through the integer moves on every device (mv_consume's x is paired for those). */
template <int SW, bool HW>
static __device__ __forceinline__ void
mv_block_mma(const struct mv_stage<SW> &st, int s, const uint32_t (&bw)[2][4][2], float (&d)[4])
{
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const uint32_t *wa = reinterpret_cast<const uint32_t *>(&st.v[s][h]);
        const uint32_t *wb = reinterpret_cast<const uint32_t *>(&st.v[s][2 + h]);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            if (HW) {
                uint32_t la, ha, lb, hb;
                mv_decode(wa[j], la, ha);
                mv_decode(wb[j], lb, hb);
                mv_mma(d, la, lb, ha, hb, bw[h][j][0], bw[h][j][1]);
            } else {
                __half2 la, ha, lb, hb;
                mt_fp8x4_decode(wa[j], &la, &ha);
                mt_fp8x4_decode(wb[j], &lb, &hb);
                mv_mma(d, mv_h2bits(la), mv_h2bits(lb), mv_h2bits(ha), mv_h2bits(hb), bw[h][j][0],
                       bw[h][j][1]);
            }
        }
    }
}

/* acc[b][i] += scale * (row g + 8i, step k) . x of token c + 4b, in units of 1 / MV_DECODE_SCALE;
 * x from global memory (xr: this thread's token rows at column 16c), split into hi / lo here.
 * The weights take the integer moves on every device here: with the hardware conversion this
 * register-heavy path (5-8 tokens) spilled on sm_120; the scale makes up the difference. */
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
            const float f = MT_FP8_DECODE_SCALE / MV_DECODE_SCALE; /* 1 or 256, exact */
            mv_block_mma<SW, false>(st, s, bw, d);
            acc[b][0] = fmaf(d[0] + d[1], st.sa[s] * f, acc[b][0]);
            acc[b][1] = fmaf(d[2] + d[3], st.sb[s] * f, acc[b][1]);
        }
    }
}

/*
 * x staged in shared memory (XS): the B fragments of every 128-column block, made once per block
 * instead of once per warp and step (8 loads and 96 conversions a thread and block). Chunk
 * (token t, parity p, block k, q, thread column c) holds the four words (b0, b1 of word
 * j = 2(q & 1), then of j + 1) of half h = q >> 1: the hi halves for p = 0, lo for p = 1. It
 * lies at k * 16 + 4q + c of its (t, p) run, so a thread's four loads of a block differ by
 * constants (64 bytes apart: immediate offsets, no address arithmetic); runs are
 * MV_XS_RUN(nkb) chunks, 4 more than the blocks need, so that parity 1 starts 64 bytes after
 * parity 0 modulo 128 and the 8 chunks that one quarter of a warp loads (the 4 threads c of
 * g = 2t and 2t + 1) fall in 8 different bank groups.
 */
#define MV_XS_RUN(nkb) ((int64_t)(nkb) * 16 + 4)

static __device__ __forceinline__ int64_t
mv_xs_base(int t, int p, int nkb)
{
    return (int64_t)(2 * t + p) * MV_XS_RUN(nkb);
}

#define MV_FILL_UNROLL 4 /* chunk pairs a thread converts at once: their loads overlap */

/* Four x values at x + off, or with up != NULL the SwiGLU of gate x and up (the expression of
 * elementwise.cu's swiglu_kernel, so the same bits). */
static __device__ __forceinline__ float4
mv_x4(const float *x, const float *up, int64_t off)
{
    float4 v = __ldg(reinterpret_cast<const float4 *>(x + off));

    if (up != nullptr) {
        float4 u = __ldg(reinterpret_cast<const float4 *>(up + off));
        v.x = v.x / (1.0f + expf(-v.x)) * u.x;
        v.y = v.y / (1.0f + expf(-v.y)) * u.y;
        v.z = v.z / (1.0f + expf(-v.z)) * u.z;
        v.w = v.w / (1.0f + expf(-v.w)) * u.w;
    }
    return v;
}

/* Stages x times `scale` (a power of two; 1 leaves every bit as it is) and returns the largest
 * magnitude of x (before the scale) that this thread staged, NaN ignored. */
static __device__ __forceinline__ float
mv_xs_fill(uint4 *xs, const float *x, int64_t cols, int nkb, int nt, float scale,
           const float *up = nullptr)
{
    int total = nt * nkb * 16; /* chunk positions; each gives the hi and the lo chunk */
    float mx = 0.0f;

    for (int i0 = threadIdx.x; i0 < total; i0 += MV_FILL_UNROLL * blockDim.x) {
        float4 v[MV_FILL_UNROLL][2];
#pragma unroll
        for (int u = 0; u < MV_FILL_UNROLL; u++) {
            int i = i0 + u * blockDim.x;
            int c = i & 3; /* c fastest: neighbouring threads store neighbouring chunks */
            int q = (i >> 2) & 3;
            int k = (i >> 4) % nkb;
            int t = (i >> 4) / nkb;
#pragma unroll
            for (int jj = 0; jj < 2; jj++) {
                int64_t col = (int64_t)k * 128 + 64 * (q >> 1) + 16 * c + 4 * (2 * (q & 1) + jj);
                v[u][jj] = i < total && col < cols ? mv_x4(x, up, t * cols + col)
                                                    : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                float4 &f = v[u][jj];
                mx = fmaxf(mx, fmaxf(fmaxf(fabsf(f.x), fabsf(f.y)), fmaxf(fabsf(f.z), fabsf(f.w))));
                f = make_float4(f.x * scale, f.y * scale, f.z * scale, f.w * scale);
            }
        }
#pragma unroll
        for (int u = 0; u < MV_FILL_UNROLL; u++) {
            int i = i0 + u * blockDim.x;
            if (i >= total) {
                break;
            }
            int c = i & 3;
            int q = (i >> 2) & 3;
            int k = (i >> 4) % nkb;
            int t = (i >> 4) / nkb;
#pragma unroll
            for (int p = 0; p < 2; p++) {
                float lom = (float)p;
                uint4 b = make_uint4(mv_bword0(v[u][0], lom), mv_bword1(v[u][0], lom),
                                     mv_bword0(v[u][1], lom), mv_bword1(v[u][1], lom));
                xs[mv_xs_base(t, p, nkb) + k * 16 + 4 * q + c] = b;
            }
        }
    }
    return mx;
}

/*
 * x's f16 hi half overflows from |x| = 65,520 (f16's largest finite is 65,504). Activations that
 * large are rare, so the check is folded into the staging (the largest magnitude a thread saw,
 * and the barrier after staging asks whether any thread saw one of 65,504 or more): only then is
 * the block's largest magnitude found and x staged again times 2^-e, e the smallest that brings
 * it below 2^15, and the results are multiplied by 2^e (both exact, barring values below 2^-39
 * of the largest, which f16 cannot hold then). Returns that factor, 1 when nothing was rescaled; x
 * that holds inf stays unscaled (the results show it). stage(xs, nkb, scale) is the policy's
 * mv_xs_fill. Ends with a barrier, as the caller's __syncthreads after staging did. x split in
 * registers (XS false: 5-8 tokens, or x too wide to stage) cannot be rescaled before the loop
 * (each warp sees its own columns only): there the results that come out inf or NaN are
 * computed again in fp32 after it (mv_redo_f32).
 */
template <class M>
static __device__ __forceinline__ float
mv_restage(const M &m, uint4 *xs, int nkb, float mx)
{
    /* the staged x is stale now: its first word holds the block's largest magnitude (no static
     * shared memory, which the callers' shared-memory budgets do not count) */
    unsigned int *big_bits = reinterpret_cast<unsigned int *>(xs);
    if (threadIdx.x == 0) {
        *big_bits = 0u;
    }
    __syncthreads();
    atomicMax(big_bits, __float_as_uint(mx)); /* magnitudes: their bits order as they do */
    __syncthreads();
    float big = __uint_as_float(*big_bits);
    __syncthreads(); /* every thread has read it before the staging below overwrites it */
    if (!isfinite(big)) {
        m.stage(xs, nkb, 1.0f);
        __syncthreads();
        return 1.0f;
    }
    int e = ilogbf(big) - 14;
    m.stage(xs, nkb, ldexpf(1.0f, -e));
    __syncthreads();
    return ldexpf(1.0f, e);
}

/* The staging of the comment above. Its rare path is inlined: out of line (a call in the
 * kernel) every FP8 GEMV shape was 3-9% slower on the H200 (2026-12-02 session 24); inlined,
 * only the fallback kernel with x staged and register stages spills 16 bytes. */
template <class M>
static __device__ __forceinline__ float
mv_stage_checked(const M &m, uint4 *xs, int nkb)
{
    float mx = m.stage(xs, nkb, 1.0f);

    if (!__syncthreads_or(mx >= 65504.0f)) {
        return 1.0f;
    }
    return mv_restage(m, xs, nkb, mx);
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
            uint4 b = xsb[kb * 16 + 4 * q + c];
            bw[q >> 1][2 * (q & 1)][0] = b.x;
            bw[q >> 1][2 * (q & 1)][1] = b.y;
            bw[q >> 1][2 * (q & 1) + 1][0] = b.z;
            bw[q >> 1][2 * (q & 1) + 1][1] = b.w;
        }
        mv_block_mma<SW, MV_HW_CVT>(st, s, bw, d);
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
                y[(int64_t)t * rows + row] = acc[b][0] * MV_DECODE_SCALE;
            }
            if (row + 8 < end) {
                y[(int64_t)t * rows + row + 8] = acc[b][1] * MV_DECODE_SCALE;
            }
        }
    }
}

/*
 * Asynchronous copies (A > 0): instead of P steps in registers, each thread copies its own 64
 * bytes of a step with cp.async (sm_80+) into its private slots of an A-stage ring in shared
 * memory, A - 1 steps ahead, and waits for its own copies only: more bytes in flight than
 * registers allow (ncu, 2026-11-30: with 2 register stages the warps spent half their time
 * waiting for loads), still without a barrier in the loop. Slot (stage, piece, thread) is 16
 * bytes at ((stage * 4 + piece) * MV_WARPS * 32 + thread): a warp's loads of a piece are 512
 * contiguous bytes. The two block scales of a step are plain loads when it is consumed (L1 hits:
 * a 128-row block's scale row serves 8 tiles); copying them through the ring too cost two more
 * copies, two shared loads and their addresses a step.
 */
#define MV_T (MV_WARPS * 32)
#define MV_RING_BYTES_W(A, W) ((size_t)(A) * (W) * 32 * 4 * 16) /* W warps a block */
#define MV_RING_BYTES(A) MV_RING_BYTES_W(A, MV_WARPS)
/* Dynamic shared memory of the TMA ring (TM): A boxes of 16 x 128 SW bytes a warp, and the 128
 * bytes that may align it after the staged x. */
#define MV_TMA_RING_BYTES(A, SW, W) ((size_t)(A) * (W) * 16 * 128 * (SW) + 128)
/* Bytes of mv_wave's static reduction buffer (W warps, NB mmas). */
#define MV_RED_BYTES(W, NB) (sizeof(float) * (W) * 2 * 2 * (NB) * 32)

/* Two blocks of MV_PAIR_WARPS an SM instead of one of MV_WARPS where both blocks' shared memory
 * fits (gemv.cu says why and what it measured): whether that is on (MT_GEMV_TWO_BLOCKS,
 * mt_gpu_gemv_two_blocks_set), and the dynamic shared memory each of the two may have on the
 * current device. Both in gemv.cu. */
#define MV_PAIR_WARPS 8
bool mv_two_blocks_on(void);
size_t mv_pair_room(void);

/* Copy step k of this thread's rows into the ring stage whose first slot is dst. Both rows there
 * and every column (whole: cols % 128 == 0, every V3.2 matrix) is four plain copies; otherwise
 * the pieces past the ends are zero-filled. W: warps a block (the ring's piece stride). */
template <int W>
static __device__ __forceinline__ void
mv_fetch_async(uint4 *dst, const struct mv_rows &r, int64_t cols, bool whole, int c, int k)
{
    constexpr int T = W * 32; /* threads a block: the stride of a piece */
    const uint8_t *pa = r.a + (int64_t)k * 128;
    const uint8_t *pb = r.b + (int64_t)k * 128;

    if (whole && r.va && r.vb) {
        mt_cp_async16(dst, pa, true);
        mt_cp_async16(dst + T, pa + 64, true);
        mt_cp_async16(dst + 2 * T, pb, true);
        mt_cp_async16(dst + 3 * T, pb + 64, true);
        return;
    }
    int64_t col = (int64_t)k * 128 + 16 * c;
    bool c0 = col < cols;
    bool c1 = col + 64 < cols;

    mt_cp_async16(dst, r.va && c0 ? pa : r.a, r.va && c0);
    mt_cp_async16(dst + T, r.va && c1 ? pa + 64 : r.a, r.va && c1);
    mt_cp_async16(dst + 2 * T, r.vb && c0 ? pb : r.b, r.vb && c0);
    mt_cp_async16(dst + 3 * T, r.vb && c1 ? pb + 64 : r.b, r.vb && c1);
}

/* The tensor maps of a matrix for the TMA ring (TM, sm_90+): boxes of 128 SW columns and 16, 8,
 * 4, 2 and 1 rows (a tile cut short by the end of a block's share takes the binary parts of its
 * rows, so no byte of the next block's rows is read). gemv.cu encodes them. */
struct mv_boxes {
    CUtensorMap h[5];
};

/*
 * The slow path of mv_wave with x split in registers (XS false), where a result came out inf
 * or NaN: |x| reached 65,520, past f16's range, which only staging rescales (mv_stage_checked).
 * Every tile of the block is computed again in fp32 on CUDA cores (mt_fp8_row_dot, common.cuh):
 * warp w takes tiles w, w + W, ..., thread (g, c) its rows g and g + 8 (the policy's mv_rows)
 * for tokens c + 4b, and stores them through the policy as the tensor-core loop does, so the
 * results are finite wherever x and the weights are. Some hundred microseconds a launch, only
 * when it happens.
 */
template <int NB, int W, class M>
static __device__ __forceinline__ void
mv_redo_f32(const M &m, int64_t rb0, int64_t rb1, int nkb)
{
    int w = threadIdx.x >> 5;
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int c = lane & 3;

    for (int64_t row = rb0 + 16 * w; row < rb1; row += 16 * W) {
        struct mv_rows r = m.rows_at(row + g, rb1, c, nkb);
        float acc[NB][2];
#pragma unroll
        for (int b = 0; b < NB; b++) {
            const float *x = m.x_row(min(c + 4 * b, m.nt - 1));
            acc[b][0] = r.va ? mt_fp8_row_dot(r.a - 16 * c, r.sa, x, m.cols) / MV_DECODE_SCALE
                             : 0.0f;
            acc[b][1] = r.vb ? mt_fp8_row_dot(r.b - 16 * c, r.sb, x, m.cols) / MV_DECODE_SCALE
                             : 0.0f;
        }
        m.template store<NB>(row + g, rb1, c, acc);
    }
}

/*
 * The body of a one-wave kernel over the rows that policy m describes (mv_dense below; moe.cu
 * has the experts' policies). NB: mmas a block (tokens 1..4 or 5..8); P: steps loaded ahead;
 * XS: x staged in shared memory (NB 1 only; dynamic shared memory of MV_XS_BYTES(nt, cols));
 * SW: 128-column blocks a step; A: stages of the cp.async ring instead of P register stages (0:
 * none; needs XS, SW 1, NB 1; MV_RING_BYTES(A) more dynamic shared memory after the staged x).
 * W: warps a block (MV_WARPS, or 8 where gemv.cu fits two blocks an SM). TM: the ring is filled
 * by the tensor memory accelerator from the boxes bx (sm_90+; dense policies, XS, NB 1, SW 1 or 2:
 * a stage is a box of 16 rows x 128 SW bytes, MV_TMA_RING_BYTES(A, SW, W) after the staged x, which
 * is rounded up to 128 bytes); HINT: those copies evict-first in L2. The caller's kernel is
 * __launch_bounds__(W * 32, ..) and passes its dynamic shared memory.
 *
 * A policy M has: cols, nt (the matrix's columns and the tokens), kWeightsFirst (its weight
 * addresses are known before mt_pdl_wait: the loads of the first steps are issued before it),
 * share(rb0, rb1) (this block's rows, whole tiles where the policy's tiles must not straddle
 * two matrices), rows_at(row, end, c, nkb) (the mv_rows of a thread's rows row, row + 8),
 * stage(xs, nkb) (x staged for this block, staged() rows of x at most), xs_base(xs, row, g,
 * nkb) (thread g's staged x for the tile at row), x_row(t) (token t's x in global memory, for
 * XS false) and store<NB>(row, end, c, acc) (a finished tile's results).
 */
template <int NB, int P, bool XS, int SW, int A, class M, int W = MV_WARPS, bool TM = false,
          bool HINT = false>
static __device__ __forceinline__ void
mv_wave(const M &m, uint4 *xs, int l2ahead, const struct mv_boxes *bx = nullptr)
{
    constexpr int T = W * 32; /* threads a block */
    const int64_t cols = m.cols;
    const int nt = m.nt;
    if (!M::kWeightsFirst) {
        mt_pdl_enter(); /* even the weights' addresses come from an earlier kernel */
    }
    int w = threadIdx.x >> 5;
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int c = lane & 3;
    int64_t rb0;
    int64_t rb1;
    m.share(rb0, rb1);
    int nkb = (int)((cols + 127) / 128);
    int nst = (nkb + SW - 1) / SW; /* steps a tile */
    int64_t units = (rb1 - rb0 + 15) / 16 * nst;
    int64_t a = w * units / W; /* this warp's (tile, step) numbers: a .. e - 1 */
    int64_t e = (w + 1) * units / W;
    int n = (int)(e - a);
    int t0 = (int)(a / nst); /* first tile */

    const float *xr[NB];
#pragma unroll
    for (int b = 0; b < NB; b++) {
        int t = min((g >> 1) + 4 * b, nt - 1); /* columns of absent tokens: any finite x */
        xr[b] = m.x_row(t) + 16 * c;
    }
    /* A warp's pieces of its first (slot 0) and last (slot 1) tile where other warps have the
     * rest: red_at(warp, slot, j) for j < 2 NB. With TM they go to stage 0 of the warp's own
     * ring once its copies have all landed (kept in registers until then), so the ring gets the
     * shared memory a static buffer would take. */
    constexpr int BOX = 16 * 128 * SW; /* TM: bytes of a ring stage */
    float *red;
    if constexpr (TM) {
        /* the ring, 128-byte aligned after x; warp w's at w A BOX. An offset from xs rather
         * than an address made from an integer: the compiler then knows it is shared memory
         * and reads it with shared loads at constant offsets (a generic 64-bit address a load
         * cost ~40 instructions a step; Nsight Compute, 2026-12-02 session 22) */
        uint32_t xs_sa = mt_smem_addr(xs);
        uint32_t xs_end = xs_sa + (uint32_t)(m.staged() * 2 * MV_XS_RUN(nkb) * 16);
        red = reinterpret_cast<float *>(reinterpret_cast<char *>(xs) +
                                        (((xs_end + 127) & ~127u) - xs_sa));
    } else {
        __shared__ float red_s[W * 2 * 2 * NB * 32];
        red = red_s;
    }
    auto red_at = [&](int ww, int slot, int j) -> float & {
        return TM ? red[(size_t)ww * A * BOX / sizeof(float) + (slot * 2 * NB + j) * 32 + lane]
                  : red[((ww * 2 + slot) * 2 * NB + j) * 32 + lane];
    };
    float keep[2][2 * NB] = {}; /* TM: the pieces until the loop ends */
    float lom = (g & 1) ? 1.0f : 0.0f;
    float xmul = 1.0f; /* what x's staging scaled away (mv_stage_checked) */
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
    struct mv_rows fr = m.rows_at(rb0 + 16 * ft + g, rb1, c, nkb);
    auto advance = [&]() {
        if (++fk == nst) {
            fk = 0;
            ft++;
            fr = m.rows_at(rb0 + 16 * ft + g, rb1, c, nkb);
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
                pr = m.rows_at(rb0 + 16 * pt + g, rb1, c, nkb);
            }
        }
    };
    /* x split in registers (XS false): whether a result of this thread came out inf or NaN */
    bool bad = false;
    /* a finished tile's results, times xmul (1: the same bits) */
    auto store = [&](int64_t row, const float (&v)[NB][2]) {
        float o[NB][2];
#pragma unroll
        for (int b = 0; b < NB; b++) {
            o[b][0] = v[b][0] * xmul;
            o[b][1] = v[b][1] * xmul;
            if constexpr (!XS) {
                bad = bad || !isfinite(o[b][0]) || !isfinite(o[b][1]);
            }
        }
        m.template store<NB>(row, rb1, c, o);
    };
    auto step_done = [&](bool last) {
        if (++ck == nst || last) {
            int64_t u0 = (int64_t)ct * nst;
            if (u0 >= a && u0 + nst <= e) {
                store(rb0 + 16 * ct + g, acc);
            } else {
                int slot = ct == t0 ? 0 : 1;
#pragma unroll
                for (int b = 0; b < NB; b++) {
                    if constexpr (TM) { /* constant indices: keep stays in registers */
                        if (slot == 0) {
                            keep[0][2 * b] = acc[b][0];
                            keep[0][2 * b + 1] = acc[b][1];
                        } else {
                            keep[1][2 * b] = acc[b][0];
                            keep[1][2 * b + 1] = acc[b][1];
                        }
                    } else {
                        red_at(w, slot, 2 * b) = acc[b][0];
                        red_at(w, slot, 2 * b + 1) = acc[b][1];
                    }
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
    if constexpr (TM) {
        static_assert(XS && NB == 1 && A >= 2 && (SW == 1 || SW == 2), "TMA ring: see above");
        __shared__ uint64_t bars[W][A]; /* stage s of warp w has landed: bars[w][s] */
        uint8_t *ring = (uint8_t *)red + (size_t)w * A * BOX; /* a stage: a tile's step */
        /* shared addresses for the copy engine and the barriers, made once */
        const uint32_t ring_sa = mt_smem_addr(ring);
        const uint32_t bar_sa = mt_smem_addr(&bars[w][0]); /* stage s's: bar_sa + 8 s */
        if (lane == 0) {
#pragma unroll
            for (int s = 0; s < A; s++) {
                mt_mbar_init(&bars[w][s], 1);
            }
        }
        __syncwarp();
        const uint64_t pol = HINT ? mt_l2_evict_first_policy() : 0;
        /* The scales of the steps copied and not yet consumed, oldest first. A step's scales
         * are loaded when its copy is issued, A - 1 steps before they are used: loaded at the
         * use, an L1 miss put an L2 round trip (long under full HBM load) in every warp's
         * path (H200, 2026-12-02 session 22: 0.5-0.8 us a launch at 18432 x 7168 and 7168 x
         * 18432). */
        float qsa[A - 1][SW];
        float qsb[A - 1][SW];
        /* Copy step (ft, fk) into stage `stage`, load its scales into (sa, sb) and advance the
         * fetch cursor; lane 0 issues everything. The rows of a tile past the share's end stay
         * stale in the stage: they feed only results of rows that are never stored. Columns
         * past the matrix come as zeros. */
        auto fetch = [&](int stage, float(&sa)[SW], float(&sb)[SW]) {
            int64_t row = rb0 + 16 * ft;
            int h = (int)min((int64_t)16, rb1 - row);
            int x0 = fk * 128 * SW;
            uint32_t dst = ring_sa + (uint32_t)(stage * BOX);
            uint32_t bar = bar_sa + 8 * stage;
            __syncwarp(); /* the warp's reads of this stage (step i - 1) are done */
            if (lane == 0) {
                mt_tma_fence_before_refill();
                mt_mbar_arrive_expect_at(bar, (uint32_t)(h * 128 * SW));
                if (h == 16) {
                    mt_tma_load_2d_at(dst, &bx->h[0], x0, (int)row, bar, HINT, pol);
                } else { /* a tile cut short: its rows' binary parts */
                    int off = 0;
                    for (int bit = 3; bit >= 0; bit--) {
                        if ((h >> bit) & 1) {
                            mt_tma_load_2d_at(dst + off * 128 * SW, &bx->h[4 - bit], x0,
                                              (int)(row + off), bar, HINT, pol);
                            off += 1 << bit;
                        }
                    }
                }
            }
#pragma unroll
            for (int s = 0; s < SW; s++) {
                int kb = min(fk * SW + s, nkb - 1);
                sa[s] = __ldg(fr.sa + kb);
                sb[s] = __ldg(fr.sb + kb);
            }
            advance();
        };
#pragma unroll
        for (int i = 0; i < A - 1; i++) {
            if (i < n) {
                fetch(i, qsa[i], qsb[i]);
            }
        }
        if (M::kWeightsFirst) {
            mt_pdl_enter(); /* x is the previous kernel's output: read it after the wait */
        }
        xmul = mv_stage_checked(m, xs, nkb);
        int64_t xt = rb0 + 16 * ct;
        const uint4 *xsb = m.xs_base(xs, xt, g, nkb);
        /* This thread's pieces of a stage: rows g and g + 8 (64 SW pieces apart), pieces
         * 8 s + c (low half) and 8 s + 4 + c (high half) of a row. Odd rows read their high
         * half first, so the 8 threads of a quarter warp read 8 different bank groups; a
         * select a word then puts the halves in place (the mma's k slots must hold the same
         * columns in every row). Reading in order instead (two-way conflicts, no selects) was
         * 0.2-0.6 us slower a launch (H200, 2026-12-02 session 22). */
        const bool sw = g & 1;
        const uint4 *w0 = reinterpret_cast<const uint4 *>(ring) + g * 8 * SW + c + (sw ? 4 : 0);
        const uint4 *w1 = reinterpret_cast<const uint4 *>(ring) + g * 8 * SW + c + (sw ? 0 : 4);
        int sc = 0; /* stage of step i, and its phase's parity */
        uint32_t parity = 0;
        int fs = A - 1; /* stage of step i + A - 1 */
        for (int i = 0; i < n; i++) {
            struct mv_stage<SW> st;
#pragma unroll
            for (int s = 0; s < SW; s++) {
                st.sa[s] = qsa[0][s];
                st.sb[s] = qsb[0][s];
#pragma unroll
                for (int j = 0; j + 1 < A - 1; j++) {
                    qsa[j][s] = qsa[j + 1][s];
                    qsb[j][s] = qsb[j + 1][s];
                }
            }
            if (i + A - 1 < n) {
                fetch(fs, qsa[A - 2], qsb[A - 2]);
            }
            fs = fs + 1 == A ? 0 : fs + 1;
            if (rb0 + 16 * ct != xt) {
                xt = rb0 + 16 * ct;
                xsb = m.xs_base(xs, xt, g, nkb);
            }
            mt_mbar_wait_at(bar_sa + 8 * sc, parity);
            const int so = sc * (BOX / 16);
#pragma unroll
            for (int s = 0; s < SW; s++) {
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    uint4 first = w0[so + r * 64 * SW + 8 * s];
                    uint4 second = w1[so + r * 64 * SW + 8 * s];
                    st.v[s][2 * r] = mv_pick(sw, second, first);
                    st.v[s][2 * r + 1] = mv_pick(sw, first, second);
                }
            }
            mv_consume_xs<SW>(st, xsb, nkb, c, ck, acc[0]);
            step_done(i + 1 == n);
            if (++sc == A) {
                sc = 0;
                parity ^= 1;
            }
        }
        __syncwarp(); /* every copy of this warp has landed and been read: stage 0 is free */
#pragma unroll
        for (int j = 0; j < 2 * NB; j++) {
            red_at(w, 0, j) = keep[0][j];
            red_at(w, 1, j) = keep[1][j];
        }
    } else if constexpr (A > 0) {
        uint4 *ring = xs + (XS ? (int64_t)m.staged() * 2 * MV_XS_RUN(nkb) : 0);
        uint4 *slot = ring + threadIdx.x;
        const bool whole = cols % 128 == 0;
        const float *csa = fr.sa; /* the consumed tile's scale rows */
        const float *csb = fr.sb;
#pragma unroll
        for (int i = 0; i < A - 1; i++) {
            if (i < n) {
                mv_fetch_async<W>(slot + i * 4 * T, fr, cols, whole, c, fk);
                advance();
            }
            mt_cp_async_commit();
        }
        prefetch_ahead(A - 1, l2ahead);
        if (M::kWeightsFirst) {
            mt_pdl_enter(); /* x is the previous kernel's output: read it after the wait */
        }
        /* the first steps' copies are in flight meanwhile. This staging (x's round trip after
         * the wait) costs 1.5-2.4 us of a launch with 7,168-18,432 columns; fewer instructions,
         * less L2 traffic, x asked of L2 early and other splits of the ring's first steps around
         * it did not remove it (H200, bench/results/kernels-h200.md, 2026-12-01 session 19) */
        xmul = mv_stage_checked(m, xs, nkb);
        int64_t xt = rb0 + 16 * ct; /* the tile xsb belongs to */
        const uint4 *xsb = m.xs_base(xs, xt, g, nkb);
        int sc = 0;     /* stage of step i */
        int fs = A - 1; /* stage of step i + A - 1 */
        for (int i = 0; i < n; i++) {
            if (i + A - 1 < n) {
                mv_fetch_async<W>(slot + fs * 4 * T, fr, cols, whole, c, fk);
                advance();
            }
            fs = fs + 1 == A ? 0 : fs + 1;
            mt_cp_async_commit();
            if (rb0 + 16 * ct != xt) {
                xt = rb0 + 16 * ct;
                xsb = m.xs_base(xs, xt, g, nkb);
                struct mv_rows cr = m.rows_at(xt + g, rb1, c, nkb);
                csa = cr.sa;
                csb = cr.sb;
            }
            struct mv_stage<1> st;
            st.sa[0] = __ldg(csa + ck);
            st.sb[0] = __ldg(csb + ck);
            mt_cp_async_wait<A - 1>(); /* step i's group is complete, A - 1 newer in flight */
            const uint4 *src = slot + sc * 4 * T;
#pragma unroll
            for (int q = 0; q < 4; q++) {
                st.v[0][q] = src[q * T];
            }
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
        if (M::kWeightsFirst) {
            mt_pdl_enter(); /* x is the previous kernel's output: read it after the wait */
        }
        const uint4 *xsb = xs;
        int64_t xt = rb0 + 16 * ct; /* the tile xsb belongs to */
        if (XS) { /* the first steps' loads are in flight meanwhile */
            xmul = mv_stage_checked(m, xs, nkb);
            xsb = m.xs_base(xs, xt, g, nkb);
        }
        for (int i0 = 0; i0 < n; i0 += P) {
#pragma unroll
            for (int i = 0; i < P; i++) {
                if (i0 + i < n) {
                    if (XS) {
                        if (rb0 + 16 * ct != xt) {
                            xt = rb0 + 16 * ct;
                            xsb = m.xs_base(xs, xt, g, nkb);
                        }
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
    /* the warp holding the first piece of a shared tile adds the pieces in warp order */
    int tl = (int)((e - 1) / nst);
    int64_t u0 = (int64_t)tl * nst;
    /* not this warp's tile to finish where it is whole (stored) or begun by an earlier warp */
    if (n > 0 && u0 >= a && u0 + nst > e) {
        int slot = tl == t0 ? 0 : 1;
#pragma unroll
        for (int b = 0; b < NB; b++) {
            acc[b][0] = red_at(w, slot, 2 * b);
            acc[b][1] = red_at(w, slot, 2 * b + 1);
        }
        for (int w2 = w + 1; w2 < W; w2++) {
            int64_t a2 = w2 * units / W;
            if (a2 >= u0 + nst) {
                break;
            }
            if ((w2 + 1) * units / W == a2) {
                continue; /* an empty range */
            }
#pragma unroll
            for (int b = 0; b < NB; b++) {
                acc[b][0] += red_at(w2, 0, 2 * b);
                acc[b][1] += red_at(w2, 0, 2 * b + 1);
            }
        }
        store(rb0 + 16 * tl + g, acc);
    }
    if constexpr (!XS) {
        if (__syncthreads_or(bad)) { /* rare: x past f16's range (or not finite) */
            mv_redo_f32<NB, W>(m, rb0, rb1, nkb);
        }
    }
}

/* The dense policy of mv_wave: W [rows, cols] with its block scales, x [nt, cols], y [nt, rows];
 * equal shares to within a row, at any row. */
struct mv_dense {
    static constexpr bool kWeightsFirst = true;
    const uint8_t *W;
    const float *Sc;
    int64_t rows;
    int64_t cols;
    const float *x;
    int nt;
    float *y;
    const float *up; /* NULL, or x is SwiGLU's gate and this its up: W times silu(x) * up (XS) */

    __device__ void share(int64_t &rb0, int64_t &rb1) const
    {
        rb0 = (int64_t)blockIdx.x * rows / gridDim.x;
        rb1 = (int64_t)(blockIdx.x + 1) * rows / gridDim.x;
    }
    __device__ struct mv_rows rows_at(int64_t row, int64_t end, int c, int nkb) const
    {
        return mv_rows_at(W, Sc, cols, nkb, row, end, c);
    }
    __device__ float stage(uint4 *xs, int nkb, float scale) const
    {
        return mv_xs_fill(xs, x, cols, nkb, nt, scale, up);
    }
    __device__ int staged(void) const { return nt; }
    __device__ const uint4 *xs_base(const uint4 *xs, int64_t row, int g, int nkb) const
    {
        return xs + mv_xs_base(min(g >> 1, nt - 1), g & 1, nkb);
    }
    __device__ const float *x_row(int t) const { return x + (int64_t)t * cols; }
    template <int NB>
    __device__ void store(int64_t row, int64_t end, int c, const float (&acc)[NB][2]) const
    {
        mv_store<NB>(y, rows, row, end, nt, c, acc);
    }
};

#endif /* MT_KERNELS_GEMV_WAVE_CUH */
