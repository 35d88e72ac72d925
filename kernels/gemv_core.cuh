/* SPDX-License-Identifier: MIT */
/*
 * gemv_core.cuh - the FP8 decode GEMV core of moe.cu: one warp computes two 16-row
 * tiles of W x for up to 8 tokens on tensor cores (mma.sync, any sm_80+), reading each weight
 * byte once.
 *
 * Why tensor cores for a memory-bound product: 8 tokens need 8 multiply-adds per weight byte,
 * 36 T/s at the H200's 4.5 TB/s, more than its fp32 CUDA cores do (33 T/s) before any decoding.
 * One mma.sync m16n8k16 multiplies 16 weight rows by 8 tokens over 16 columns, so the work per
 * weight byte is the same for 1 and for 8 tokens (the CUDA-core loop takes 3.4x and 6.7x the
 * time of one token for 4 and 8; bench/results/kernels-h200.md). Only moe.cu uses this core now,
 * for 5..8 tokens and where the one-wave kernel does not fit: gemv.cu has its own tensor-core
 * kernel since 2026-11-30 session 3 (one wave, equal shares, register or cp.async stages; 1.4-3x
 * faster than this core at 2..8 tokens), which moe.cu also uses for 1..4 tokens since session 4
 * (gemv_wave.cuh).
 *
 * The layout tricks, each of which removes a shuffle, a transpose or a barrier:
 * - Column permutation. A dot product does not care which columns meet in which mma slot as long
 *   as A (weights) and B (x) agree. Thread (g = lane / 4, c = lane % 4) loads the 16 bytes of rows
 *   g and g + 8 at columns 16c .. 16c + 15 of a 64-column step; word j of them feeds the step's
 *   mma j, its bytes (0, 2) in the A slots of k = (2c, 2c + 1) and its bytes (1, 3) in those of
 *   (2c + 8, 2c + 9), which are exactly the two half2 that mt_fp8x4_decode makes of a word. The
 *   same thread loads x of token g at the same 16 columns and pairs (x0, x2) and (x1, x3) the
 *   same way: B's layout puts token g in that thread.
 * - Exactness. e4m3 is exact in f16 (times 2^-8, common.cuh). x is split into f16 hi + f16 lo
 *   (x - hi), two mmas with fp32 accumulation: about 22 bits of x, where one f16 (11 bits) misses
 *   the tests' 1e-4 tolerance at 7168 columns. Here (x split in registers) |x| from 65,520
 *   makes the f16 hi half inf and the results inf or NaN: moe.cu computes those outputs again
 *   in fp32 (mt_fp8_row_dot, common.cuh; rare, and slow where it happens). The one-wave kernels
 *   of 1-4 tokens stage x rescaled by a power of two instead (gemv_wave.cuh, mv_stage_checked).
 * - Scales. A 16-row tile starting at a multiple of 16 lies in one 128-row scale block and a
 *   64-column step in one 128-column block: each (tile, step) is one mma accumulator times one
 *   scale.
 * - Bytes in flight. Each thread copies its own bytes (weights, x, scales) with cp.async into a
 *   private slice of shared memory S - 1 steps ahead and waits for its own copies only, so the
 *   loop has no barrier; copies of size 0 zero-fill rows and columns past the end and tokens
 *   past the last, so no stale byte is ever multiplied.
 * - Split-K. The KS warps of a block that share a row group take every KS-th step; their sums
 *   meet in shared memory in a fixed order, so results do not depend on scheduling.
 */
#ifndef MT_KERNELS_GEMV_CORE_CUH
#define MT_KERNELS_GEMV_CORE_CUH

#include "kernels/async_copy.cuh"
#include "kernels/common.cuh"

#define FP8G_THREADS 256
#define FP8G_WARPS (FP8G_THREADS / 32)
#define FP8G_TILES 2 /* 16-row tiles per warp: x is decoded once for both */
#define FP8G_TOK 8   /* tokens: the mma's n */
/* 16-byte slots per thread and stage: 2 rows a tile, 4 of x (16 floats), 1 of scales */
#define FP8G_SLOTS (2 * FP8G_TILES + 4 + 1)

/* One 16-row tile of an FP8 matrix with `ld` columns. An empty tile (rows 0) must still point at
 * readable memory; nothing is read from it. */
struct fp8g_tile {
    const uint8_t *w;   /* row 0 of the tile */
    const float *scale; /* the scale row of the tile's 128-row block */
    int rows;           /* rows that exist, 0..16 */
};

/* The tile of W [rows, cols] (scales S) starting at row rs. */
static __device__ __forceinline__ struct fp8g_tile
fp8g_tile_at(const uint8_t *W, const float *S, int64_t rows, int64_t cols, int64_t rs)
{
    struct fp8g_tile t;
    int64_t left = rows - rs;

    t.rows = left <= 0 ? 0 : (left > 16 ? 16 : (int)left);
    t.w = t.rows > 0 ? W + rs * cols : W;
    t.scale = t.rows > 0 ? S + (rs / 128) * ((cols + 127) / 128) : S;
    return t;
}

/* Bytes of dynamic shared memory for S stages. */
#define FP8G_SMEM(S) ((size_t)(S) * FP8G_SLOTS * FP8G_THREADS * 16)

/* Copy step `step` (columns 64 step ..) of this thread's rows, x and scales into stage `stage`;
 * `live` false copies nothing (a step past this warp's last). */
static __device__ __forceinline__ void
fp8g_issue(uint4 *ring, int stage, const struct fp8g_tile (&t)[FP8G_TILES], int64_t ld,
           int units, const float *xrow, int step, bool live)
{
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int u = step * 4 + (lane & 3); /* this thread's 16-column unit */
    bool uin = u < units;
    uint4 *slot = ring + (size_t)stage * FP8G_SLOTS * FP8G_THREADS + threadIdx.x;

    if (!live) {
        return;
    }
#pragma unroll
    for (int i = 0; i < FP8G_TILES; i++) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            bool v = uin && g + 8 * h < t[i].rows;
            const uint8_t *src = v ? t[i].w + (int64_t)(g + 8 * h) * ld + 16 * (int64_t)u : t[i].w;
            mt_cp_async16(slot + (2 * i + h) * FP8G_THREADS, src, v);
        }
    }
    bool xv = uin && xrow != NULL;
    const float *xs = xv ? xrow + 16 * (int64_t)u : t[0].scale;
#pragma unroll
    for (int q = 0; q < 4; q++) {
        mt_cp_async16(slot + (2 * FP8G_TILES + q) * FP8G_THREADS, xv ? xs + 4 * q : xs, xv);
    }
    float *sd = reinterpret_cast<float *>(slot + (2 * FP8G_TILES + 4) * FP8G_THREADS);
#pragma unroll
    for (int i = 0; i < FP8G_TILES; i++) {
        bool v = t[i].rows > 0;
        mt_cp_async4(sd + i, v ? t[i].scale + step / 2 : t[i].scale, v);
    }
}

/* d += A B on tensor cores: A 16x16 f16 (row), B 16x8 f16 (col), D 16x8 fp32. */
static __device__ __forceinline__ void
fp8g_mma(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
         uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ uint32_t
fp8g_h2bits(__half2 h)
{
    return *reinterpret_cast<uint32_t *>(&h);
}

/* acc[i] += scale_i * (tile i x) over the stage's 64 columns (in units of 2^-8, see common.cuh).
 * acc[i][0..3]: (row g, token 2c), (row g, token 2c + 1), (row g + 8, 2c), (row g + 8, 2c + 1). */
static __device__ __forceinline__ void
fp8g_consume(const uint4 *ring, int stage, float (&acc)[FP8G_TILES][4])
{
    const uint4 *slot = ring + (size_t)stage * FP8G_SLOTS * FP8G_THREADS + threadIdx.x;
    uint32_t bh[4][2];
    uint32_t bl[4][2];

#pragma unroll
    for (int j = 0; j < 4; j++) {
        uint4 q = slot[(2 * FP8G_TILES + j) * FP8G_THREADS];
        float4 x = *reinterpret_cast<float4 *>(&q);
        __half2 h0 = __floats2half2_rn(x.x, x.z);
        __half2 h1 = __floats2half2_rn(x.y, x.w);
        float2 f0 = __half22float2(h0);
        float2 f1 = __half22float2(h1);
        bh[j][0] = fp8g_h2bits(h0);
        bh[j][1] = fp8g_h2bits(h1);
        bl[j][0] = fp8g_h2bits(__floats2half2_rn(x.x - f0.x, x.z - f0.y));
        bl[j][1] = fp8g_h2bits(__floats2half2_rn(x.y - f1.x, x.w - f1.y));
    }
    const float *sc = reinterpret_cast<const float *>(slot + (2 * FP8G_TILES + 4) * FP8G_THREADS);
#pragma unroll
    for (int i = 0; i < FP8G_TILES; i++) {
        uint4 r0 = slot[(2 * i) * FP8G_THREADS];
        uint4 r1 = slot[(2 * i + 1) * FP8G_THREADS];
        const uint32_t *v0 = reinterpret_cast<const uint32_t *>(&r0);
        const uint32_t *v1 = reinterpret_cast<const uint32_t *>(&r1);
        float dh[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        float dl[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            __half2 l0, h0, l1, h1;
            mt_fp8x4_decode(v0[j], &l0, &h0);
            mt_fp8x4_decode(v1[j], &l1, &h1);
            uint32_t a0 = fp8g_h2bits(l0);
            uint32_t a1 = fp8g_h2bits(l1);
            uint32_t a2 = fp8g_h2bits(h0);
            uint32_t a3 = fp8g_h2bits(h1);
            fp8g_mma(dh, a0, a1, a2, a3, bh[j][0], bh[j][1]);
            fp8g_mma(dl, a0, a1, a2, a3, bl[j][0], bl[j][1]);
        }
        float s = sc[i];
#pragma unroll
        for (int e = 0; e < 4; e++) {
            acc[i][e] = fmaf(dh[e] + dl[e], s, acc[i][e]);
        }
    }
}

/*
 * One warp: acc = its tiles times x over the steps ks0, ks0 + ksn, ... of the `units` 16-column
 * units (row stride ld bytes). xrow: this lane's token row (token lane / 4), NULL past the last.
 * ring: the block's dynamic shared memory, FP8G_SMEM(S) bytes.
 */
template <int S>
static __device__ __forceinline__ void
fp8g_warp(uint4 *ring, const struct fp8g_tile (&t)[FP8G_TILES], int64_t ld, int units,
          const float *xrow, int ks0, int ksn, float (&acc)[FP8G_TILES][4])
{
    int nks = (units + 3) / 4;

#pragma unroll
    for (int i = 0; i < FP8G_TILES; i++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            acc[i][e] = 0.0f;
        }
    }
#pragma unroll
    for (int s = 0; s < S - 1; s++) {
        int st = ks0 + s * ksn;
        fp8g_issue(ring, s, t, ld, units, xrow, st, st < nks);
        mt_cp_async_commit();
    }
    int i = 0;
    for (int step = ks0; step < nks; step += ksn, i++) {
        int next = step + (S - 1) * ksn;
        fp8g_issue(ring, (i + S - 1) % S, t, ld, units, xrow, next, next < nks);
        mt_cp_async_commit();
        mt_cp_async_wait<S - 1>(); /* this step's group is complete; S - 1 newer may be in flight */
        fp8g_consume(ring, i % S, acc);
    }
    mt_cp_async_wait<0>();
}

/*
 * Sum acc over the ks warps of each row group (warps w, w + 1, .., w + ks - 1 with w % ks == 0),
 * in that order, through the ring. Every thread of the block must call it. Returns whether this
 * thread holds its row group's totals (the lanes of the group's first warp).
 */
static __device__ __forceinline__ bool
fp8g_block_reduce(uint4 *ring, int ks, float (&acc)[FP8G_TILES][4])
{
    const int n = FP8G_TILES * 4;
    float *red = reinterpret_cast<float *>(ring);
    int w = threadIdx.x / 32;
    int lane = threadIdx.x & 31;

    if (ks == 1) {
        return true;
    }
    __syncthreads(); /* every warp is done with the ring */
#pragma unroll
    for (int i = 0; i < FP8G_TILES; i++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            red[(w * n + i * 4 + e) * 32 + lane] = acc[i][e];
        }
    }
    __syncthreads();
    if (w % ks != 0) {
        return false;
    }
#pragma unroll
    for (int i = 0; i < FP8G_TILES; i++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float s = 0.0f;
            for (int k = 0; k < ks; k++) {
                s += red[((w + k) * n + i * 4 + e) * 32 + lane];
            }
            acc[i][e] = s;
        }
    }
    return true;
}

/* Warps per row group for rows of `units` 16-column units: as many as 8 while each keeps 4 or
 * more steps (a shallower loop never fills the copy pipeline). */
static inline int
fp8g_split(long long units)
{
    long long nks = (units + 3) / 4;
    int ks = FP8G_WARPS;

    while (ks > 1 && nks < 4LL * ks) {
        ks /= 2;
    }
    return ks;
}

/*
 * Let kernel f (a template instance taking FP8G_SMEM(S) bytes) run on the current device: the
 * dynamic shared memory limit and the largest carveout (two blocks a SM need 221 KB on the
 * H200). Once per device and kernel (`done` is the kernel's own mask of devices), to keep host
 * calls off every launch (measured on the H200: no change in kernel time either way).
 */
template <typename F>
static inline void
fp8g_prepare(F *f, size_t smem, unsigned long long *done)
{
    int dev = 0;

    cudaGetDevice(&dev);
    if (dev < 64 && (*done >> dev & 1ULL)) {
        return;
    }
    cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    cudaFuncSetAttribute(f, cudaFuncAttributePreferredSharedMemoryCarveout,
                         cudaSharedmemCarveoutMaxShared);
    if (dev < 64) {
        *done |= 1ULL << dev; /* a race only repeats the idempotent calls */
    }
}

/* Pipeline depth for this device: 3 stages (110.6 KB a block, two blocks per H100/H200 SM) where
 * a block may have that much shared memory, else 2 (73.7 KB: sm_86/sm_89 cards have 99 KB). */
static inline int
fp8g_stages(void)
{
    static int known[64]; /* per device: 0 unknown, else the depth (a race only repeats it) */
    int dev = 0;
    int optin = 0;

    cudaGetDevice(&dev);
    if (dev < 64 && known[dev] != 0) {
        return known[dev];
    }
    cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    int s = (size_t)optin >= FP8G_SMEM(3) ? 3 : 2;
    if (dev < 64) {
        known[dev] = s;
    }
    return s;
}

#endif /* MT_KERNELS_GEMV_CORE_CUH */
