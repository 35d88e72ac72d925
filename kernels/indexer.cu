/* SPDX-License-Identifier: MIT */
/*
 * indexer.cu - lightning indexer scores of one query against every cached index key: the exact
 * fp32 mode and DeepSeek's FP8 mode (spec 2.4 step 8). Exact: on tensor cores at V3.2's 64 heads
 * x 128 dims (fp32 operands split into two f16 halves): keys split once into a cache that the
 * tensor cores stream (index_keys_split.cuh; wgmma on H100/H200, mma.sync on the A100) where
 * the GPU has wgmma or 160 KB of shared memory a block, fp32 keys on mma.sync elsewhere (the RTX
 * cards); on CUDA cores for other shapes (the test models'). FP8: on tensor cores, with hardware
 * e4m3 conversion from sm_89.
 *
 * The one idea of the FP8 kernel: 64 heads x 128 dims against N keys is a skinny matrix product
 * (2 GFLOP for 128K keys, 17 MB of keys), so fp32 CUDA cores would need 30 us where the bytes need
 * 4; it runs on tensor cores with mma.sync m16n8k16 (f16 in, f32 accumulate, sm_80 and newer).
 * e4m3 -> f16 is exact (common.cuh), each f16 x f16 product is exact in fp32, so the result is
 * the CPU's up to the order of fp32 additions. Keys are the A operand (16 keys per tile), the
 * query the B operand (8 heads per tile, kept in registers); the k dimension is permuted the same
 * way on both sides so that each lane reads whole 16-byte chunks of a key row.
 */
#include <config.h>

#include "kernels/ops.h"
#include "kernels/async_copy.cuh"
#include "kernels/common.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/index_keys_split.cuh"
#include "kernels/pdl.cuh"

#include <stdlib.h>
#include <string.h>

/* D += A B on tensor cores: A 16 x 16 f16 (row), B 16 x 8 f16 (col), D 16 x 8 fp32 (sm_80+). */
static __device__ __forceinline__ void
mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/*
 * A batch of queries (mt_gpu_index_scores_rows): block row blockIdx.y takes query y, whose keys
 * are the first n_keys0 + y, and writes its scores in row y of out (ld floats a row); the rest
 * of the row gets NaN, so that a top-k over whole rows of ld never picks past a query's keys: the
 * top-k ranks NaN below every number and gives equal ones to the smaller index, so a key of the
 * query's own wins over the padding even where its score is NaN too (-inf padding lost to a NaN
 * score, and a row with fewer than k numbers then attended to later tokens of its chunk).
 * Called first by every block (it waits for the previous kernel: programmatic dependent launch)
 * with the block's row.
 */
static __device__ __forceinline__ void
rows_prologue(float *row, int64_t n_keys, int64_t ld)
{
    mt_pdl_enter();
    for (int64_t i = n_keys + (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < ld;
         i += (int64_t)gridDim.x * blockDim.x) {
        row[i] = __int_as_float(0x7fc00000); /* NaN */
    }
}

#define EXACT_THREADS 128
#define EXACT_MAX_HEADS 64
#define EXACT_MAX_DIM 128
#define EXACT_CHUNK 32 /* dims staged at a time */

/*
 * Exact scores on CUDA cores, register-tiled: a block of 128 threads takes KEYS (32 or 16) keys
 * against all heads (padded to 64 with zero heads, the dims to a multiple of 32 with zeros),
 * thread t the KEYS / 8 keys from (t % 8) KEYS / 8 and the 4 heads from 4 (t / 8): 16 or 8 dot
 * products in registers, each one fmaf chain over the dims in order. q and k pass through shared
 * memory 32 dims at a time, dim-major, so a step is two shared loads for 16 (8) FMAs. Each key's
 * terms w[h] ReLU(scale d) then meet in shared memory and one thread adds them in head order, as
 * mt_cpu_index_scores does. 16 keys a block where 32 would leave SMs idle (short rows, just past
 * index_topk): half the chain a thread. The kernel this replaced gave each key one thread and all
 * 64 x 128 products: 113 us a layer for 2,100 keys on the H200 (17 blocks busy), the decode
 * step's largest kernel past 2,048 positions. At 64 x 128 the tensor-core kernel below runs
 * instead (3.7 times faster at 131,072 keys); this one serves every other shape.
 */
template <int KEYS>
static __global__ void __launch_bounds__(EXACT_THREADS)
index_scores_exact_kernel(const float *__restrict__ q, const float *__restrict__ w, int n_heads,
                          int dim, const float *__restrict__ k, int64_t n_keys0, float scale,
                          float *out, int64_t ld)
{
    constexpr int KPT = KEYS / 8; /* keys a thread */
    /* query blockIdx.y of a batch (rows_prologue) */
    int64_t n_keys = n_keys0 + blockIdx.y;
    q += (int64_t)blockIdx.y * n_heads * dim;
    w += (int64_t)blockIdx.y * n_heads;
    out += (int64_t)blockIdx.y * ld;
    rows_prologue(out, n_keys, ld);
    /* rows padded by 4 floats: 16-byte aligned, the staging stores 4-way at worst */
    __shared__ __align__(16) float qs[EXACT_CHUNK][EXACT_MAX_HEADS + 4];
    __shared__ __align__(16) float ks[EXACT_CHUNK][KEYS + 4];
    __shared__ float term[EXACT_MAX_HEADS][KEYS + 1];
    int t = threadIdx.x;
    int kg = t % 8;
    int hg = t / 8;
    int64_t key0 = (int64_t)blockIdx.x * KEYS;
    float d[KPT][4];

    if (key0 >= n_keys) {
        return; /* a shorter row of the batch */
    }
#pragma unroll
    for (int a = 0; a < KPT; a++) {
#pragma unroll
        for (int b = 0; b < 4; b++) {
            d[a][b] = 0.0f;
        }
    }
    for (int c0 = 0; c0 < dim; c0 += EXACT_CHUNK) {
        __syncthreads(); /* the previous chunk is read */
        for (int i = t; i < EXACT_MAX_HEADS * EXACT_CHUNK; i += EXACT_THREADS) {
            int h = i / EXACT_CHUNK;
            int j = i % EXACT_CHUNK;
            qs[j][h] = h < n_heads && c0 + j < dim ? q[(int64_t)h * dim + c0 + j] : 0.0f;
        }
        for (int i = t; i < KEYS * EXACT_CHUNK; i += EXACT_THREADS) {
            int r = i / EXACT_CHUNK;
            int j = i % EXACT_CHUNK;
            ks[j][r] = key0 + r < n_keys && c0 + j < dim ? k[(key0 + r) * dim + c0 + j] : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int j = 0; j < EXACT_CHUNK; j++) {
            float4 qv = *reinterpret_cast<const float4 *>(&qs[j][4 * hg]);
            float qa[4] = {qv.x, qv.y, qv.z, qv.w};
            float ka[KPT];
            if constexpr (KPT == 4) {
                float4 kv = *reinterpret_cast<const float4 *>(&ks[j][4 * kg]);
                ka[0] = kv.x, ka[1] = kv.y, ka[2] = kv.z, ka[3] = kv.w;
            } else {
                float2 kv = *reinterpret_cast<const float2 *>(&ks[j][2 * kg]);
                ka[0] = kv.x, ka[1] = kv.y;
            }
#pragma unroll
            for (int a = 0; a < KPT; a++) {
#pragma unroll
                for (int b = 0; b < 4; b++) {
                    d[a][b] = fmaf(qa[b], ka[a], d[a][b]);
                }
            }
        }
    }
#pragma unroll
    for (int a = 0; a < KPT; a++) {
#pragma unroll
        for (int b = 0; b < 4; b++) {
            int h = 4 * hg + b;
            float v = d[a][b] * scale;
            term[h][KPT * kg + a] = h < n_heads ? w[h] * (v > 0.0f ? v : 0.0f) : 0.0f;
        }
    }
    __syncthreads();
    if (t < KEYS && key0 + t < n_keys) {
        float acc = 0.0f;
        for (int h = 0; h < n_heads; h++) {
            acc += term[h][t];
        }
        out[key0 + t] = acc;
    }
}

/* ---- exact scores on tensor cores (64 heads x 128 dims) ------------------------------------ */

/*
 * The one idea: fp32 products to fp32 accuracy on f16 tensor cores. Each fp32 operand x, scaled
 * by a power of two s so that its row's largest |x| lies in [2^14, 2^15), is split into hi =
 * f16(x s) and lo = f16(x s - hi), 22 bits of mantissa between them; q.k is then qhi.khi +
 * qhi.klo + qlo.khi (the lo.lo term is ~2^-22 of the product), three mma.sync m16n8k16 with fp32
 * accumulation, the scales undone afterwards (exact: powers of two). Modelled in C against fp64
 * on test_gpu_indexer's random inputs (131,072 keys), the split's error reaches 1.4% of that
 * test's 1e-5 tolerance at worst, less than fp32 accumulation's own 5.2%; a bf16 x 3 split (8 + 8
 * bits) reached 100% of it. Scaling each key and each head keeps every value in f16's normal
 * range, whatever the inputs' magnitudes (f16 alone would overflow past 65504), and makes a
 * key's score independent of its neighbours (equal keys, equal bits: the top-k's ties).
 *
 * 131,072 keys x 64 heads x 128 dims are 2.1 GFLOP (6.4 on the tensor cores) over 67 MB of fp32
 * keys: the bytes, not the products, should set the time, which the CUDA-core kernel above
 * (fp32 FMAs, 112 us) is far from. Layout: each warp owns 16-key tiles (the A operand, keys g
 * and g + 8 of lane (g, t)), loaded straight into registers, the next tile's loads issued
 * before this one's products; the query's fragments (the B operand, 8 heads an n-tile, hi and lo
 * as one 16-byte word a lane) are built once per block into shared memory and read from there
 * per k-step, so the 128 registers they would take stay free for the loads in flight. The k
 * dimension is permuted the same way on both sides (k-step ks, lane t: dims 16 ks + 4 t + 0..3)
 * so that each lane loads whole 16-byte pieces of its keys.
 */
#define XTC_WARPS 8
#define XTC_HEADS 64
#define XTC_DIM 128

/* Lane (g, t)'s first piece of key g + 8 r of tile `tile` (dims 4 t ..; the piece of k-step ks
 * is 4 ks further), and whether that key exists (else key 0's: a mapped address, not read). */
static __device__ __forceinline__ const float4 *
xtc_key(const float *__restrict__ k, int64_t n_keys, int64_t tile, int r, bool *ok)
{
    int lane = threadIdx.x & 31;
    int64_t key = tile * 16 + (lane >> 2) + 8 * r;

    *ok = key < n_keys;
    return reinterpret_cast<const float4 *>(k + (*ok ? key : 0) * XTC_DIM) + (lane & 3);
}

/* Lane (g, t)'s pieces of tile `tile`: key g (v[0..7]) and key g + 8 (v[8..15]), dims 16 ks + 4 t
 * for ks = 0..7; zeros past n_keys. */
static __device__ __forceinline__ void
xtc_load(const float *__restrict__ k, int64_t n_keys, int64_t tile, float4 (&v)[16])
{
#pragma unroll
    for (int r = 0; r < 2; r++) {
        bool ok;
        const float4 *src = xtc_key(k, n_keys, tile, r, &ok);
#pragma unroll
        for (int ks = 0; ks < 8; ks++) {
            v[8 * r + ks] = ok ? __ldcs(src + 4 * ks) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
    }
}

/*
 * The same pieces through a cp.async ring instead of registers (S > 0 below): lane (g, t)'s 16
 * pieces of a tile are slots [i][lane] of a 16 x 32 x 16-byte stage, so the warp's copies of
 * one piece are 512 contiguous bytes of shared memory and each lane reads back only what it
 * copied itself (no barrier). Keys past n_keys are zero-filled.
 */
static __device__ __forceinline__ void
xtc_load_async(uint4 *stage, const float *__restrict__ k, int64_t n_keys, int64_t tile)
{
    int lane = threadIdx.x & 31;

#pragma unroll
    for (int r = 0; r < 2; r++) {
        bool ok;
        const float4 *src = xtc_key(k, n_keys, tile, r, &ok);
#pragma unroll
        for (int ks = 0; ks < 8; ks++) {
            mt_cp_async16(stage + (8 * r + ks) * 32 + lane, src + 4 * ks, ok);
        }
    }
}

static __device__ __forceinline__ void
xtc_read_stage(const uint4 *stage, float4 (&v)[16])
{
    int lane = threadIdx.x & 31;

#pragma unroll
    for (int i = 0; i < 16; i++) {
        uint4 u = stage[i * 32 + lane];
        v[i] = make_float4(__uint_as_float(u.x), __uint_as_float(u.y), __uint_as_float(u.z),
                           __uint_as_float(u.w));
    }
}

#define XTC_STAGE_BYTES (16 * 32 * 16) /* one tile of a warp: 8 KB */
#define XTC_RING 2 /* stages of the ring (xtc_stages) */

/* A tile's keys as A fragments: hi and lo halves per k-step, and each key's inverse scale. */
struct xtc_frag {
    uint32_t hi[8][4];
    uint32_t lo[8][4];
    float u0, u1; /* keys g and g + 8 */
};

/* Scale each key of v into [2^14, 2^15) and split it (a0 key g dims +0,1; a1 key g + 8 dims
 * +0,1; a2, a3 the same at dims +2,3). */
static __device__ __forceinline__ void
xtc_split_tile(const float4 (&v)[16], struct xtc_frag &f)
{
    float m0 = 0.0f;
    float m1 = 0.0f;

#pragma unroll
    for (int ks = 0; ks < 8; ks++) {
        m0 = fmaxf(m0, fmaxf(fmaxf(fabsf(v[ks].x), fabsf(v[ks].y)),
                             fmaxf(fabsf(v[ks].z), fabsf(v[ks].w))));
        m1 = fmaxf(m1, fmaxf(fmaxf(fabsf(v[8 + ks].x), fabsf(v[8 + ks].y)),
                             fmaxf(fabsf(v[8 + ks].z), fabsf(v[8 + ks].w))));
    }
    m0 = fmaxf(m0, __shfl_xor_sync(0xffffffffu, m0, 1));
    m0 = fmaxf(m0, __shfl_xor_sync(0xffffffffu, m0, 2));
    m1 = fmaxf(m1, __shfl_xor_sync(0xffffffffu, m1, 1));
    m1 = fmaxf(m1, __shfl_xor_sync(0xffffffffu, m1, 2));
    float s0, s1;
    xtc_scale(m0, &s0, &f.u0);
    xtc_scale(m1, &s1, &f.u1);
#pragma unroll
    for (int ks = 0; ks < 8; ks++) {
        xtc_split(v[ks].x * s0, v[ks].y * s0, &f.hi[ks][0], &f.lo[ks][0]);
        xtc_split(v[8 + ks].x * s1, v[8 + ks].y * s1, &f.hi[ks][1], &f.lo[ks][1]);
        xtc_split(v[ks].z * s0, v[ks].w * s0, &f.hi[ks][2], &f.lo[ks][2]);
        xtc_split(v[8 + ks].z * s1, v[8 + ks].w * s1, &f.hi[ks][3], &f.lo[ks][3]);
    }
}

/*
 * Thread tid's part of the query (blocks of 256 threads): head h = tid / 4 at dims 32 a .. 32 a
 * + 31 (a = tid % 4), the k-steps 2a and 2a + 1 of that head; the head's power of two from its 4
 * threads' largest |q| (hs[h] = scale / it, hw[h] = w[h]); each of the 8 float4 pieces i (k-step
 * ks = 2a + i / 4, lane t = i % 4: dims 16 ks + 4t ..) split into halves, handed to put(ks, t, h,
 * e) as e = (hi of dims +0, +1; hi of +2, +3; lo of +0, +1; lo of +2, +3).
 */
template <typename Put>
static __device__ __forceinline__ void
xtc_query(const float *__restrict__ q, const float *__restrict__ w, float scale, float *hs,
          float *hw, Put put)
{
    int h = threadIdx.x / 4;
    int a = threadIdx.x % 4;
    const float4 *qr = reinterpret_cast<const float4 *>(q + h * XTC_DIM) + 8 * a;
    float4 x[8];
    float m = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        x[i] = qr[i];
        m = fmaxf(m, fmaxf(fmaxf(fabsf(x[i].x), fabsf(x[i].y)),
                           fmaxf(fabsf(x[i].z), fabsf(x[i].w))));
    }
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
    float s, u;
    xtc_scale(m, &s, &u);
    if (a == 0) {
        hs[h] = u * scale;
        hw[h] = w[h];
    }
#pragma unroll
    for (int i = 0; i < 8; i++) {
        uint4 e;
        xtc_split(x[i].x * s, x[i].y * s, &e.x, &e.z);
        xtc_split(x[i].z * s, x[i].w * s, &e.y, &e.w);
        put(2 * a + i / 4, i % 4, h, e);
    }
}

/* A tile's scores from its products c (c[j][0..1]: key g, heads 8j + 2t, + 1; c[j][2..3]: key
 * g + 8): out[key] = sum_h w[h] ReLU(scale q_h . k). hs: scale / (the head's power of two); u0,
 * u1: keys g and g + 8's inverse powers of two, positive, so they leave the ReLU. */
static __device__ __forceinline__ void
xtc_epilogue(const float (&c)[8][4], float u0, float u1, const float *hs, const float *hw,
             int64_t n_keys, int64_t tile, float *__restrict__ out)
{
    int lane = threadIdx.x & 31;
    int t = lane & 3;
    float r0 = 0.0f;
    float r1 = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        float2 sc = *reinterpret_cast<const float2 *>(hs + 8 * j + 2 * t);
        float2 wt = *reinterpret_cast<const float2 *>(hw + 8 * j + 2 * t);
        r0 += wt.x * fmaxf(c[j][0] * sc.x, 0.0f) + wt.y * fmaxf(c[j][1] * sc.y, 0.0f);
        r1 += wt.x * fmaxf(c[j][2] * sc.x, 0.0f) + wt.y * fmaxf(c[j][3] * sc.y, 0.0f);
    }
    r0 += __shfl_xor_sync(0xffffffffu, r0, 1);
    r0 += __shfl_xor_sync(0xffffffffu, r0, 2);
    r1 += __shfl_xor_sync(0xffffffffu, r1, 1);
    r1 += __shfl_xor_sync(0xffffffffu, r1, 2);
    int64_t key = tile * 16 + (lane >> 2);
    if (t == 0 && key < n_keys) {
        out[key] = r0 * u0;
    }
    if (t == 1 && key + 8 < n_keys) {
        out[key + 8] = r1 * u1;
    }
}

/* The scores of tile `tile` from its fragments, on mma.sync. */
static __device__ __forceinline__ void
xtc_scores(const struct xtc_frag &f, const uint4 (*qf)[8][32], const float *hs, const float *hw,
           int64_t n_keys, int64_t tile, float *__restrict__ out)
{
    int lane = threadIdx.x & 31;
    float c[8][4];

#pragma unroll
    for (int j = 0; j < 8; j++) {
        c[j][0] = c[j][1] = c[j][2] = c[j][3] = 0.0f;
    }
#pragma unroll
    for (int ks = 0; ks < 8; ks++) {
#pragma unroll
        for (int j = 0; j < 8; j++) {
            uint4 b = qf[ks][j][lane]; /* qhi b0, b1; qlo b0, b1 */
            mma_16816(c[j], f.lo[ks], b.x, b.y);
            mma_16816(c[j], f.hi[ks], b.z, b.w);
            mma_16816(c[j], f.hi[ks], b.x, b.y);
        }
    }
    xtc_epilogue(c, f.u0, f.u1, hs, hw, n_keys, tile, out);
}

/*
 * S = 0: once a tile is split, the loads of the warp's next tile go out before its products: one
 * block of 8 warps an SM (220 registers). Measured against 2 blocks an SM at 128 registers, each
 * warp loading then computing: the same within 1 us at 131,072 keys, 3-5 us slower once the
 * first tile's loads moved ahead of the query's fragments (spills).
 * S > 0: each warp copies its tiles S - 1 ahead into a ring of S stages in shared memory
 * (cp.async, async_copy.cuh: no registers held by the copies) and reads a tile back when it is
 * complete; the arithmetic is the same instructions on the same values, so the same bits. Needs
 * 8 S KB a warp of dynamic shared memory beside the query's 32 KB (xtc_stages says where).
 */
template <int S>
static __global__ void __launch_bounds__(XTC_WARPS * 32, 1)
index_scores_exact_tc_kernel(const float *__restrict__ q, const float *__restrict__ w,
                             const float *__restrict__ k, int64_t n_keys0, float scale,
                             float *__restrict__ out, int64_t ld)
{
    extern __shared__ uint4 xtc_ring[]; /* S > 0: [warp][stage][16 pieces][32 lanes] */
    __shared__ uint4 qf[8][8][32]; /* [k-step][n-tile][lane]: qhi b0, b1, qlo b0, b1 (32 KB) */
    __shared__ __align__(8) float hs[XTC_HEADS];
    __shared__ __align__(8) float hw[XTC_HEADS];
    int tid = threadIdx.x;
    int64_t n_keys = n_keys0 + blockIdx.y; /* query blockIdx.y of a batch (rows_prologue) */
    q += (int64_t)blockIdx.y * XTC_HEADS * XTC_DIM;
    w += (int64_t)blockIdx.y * XTC_HEADS;
    out += (int64_t)blockIdx.y * ld;
    rows_prologue(out, n_keys, ld);
    int64_t n_tiles = (n_keys + 15) / 16;
    int64_t stride = (int64_t)gridDim.x * XTC_WARPS;
    int64_t tile = (int64_t)blockIdx.x * XTC_WARPS + tid / 32;

    if ((int64_t)blockIdx.x * XTC_WARPS >= n_tiles) {
        return; /* a shorter row of the batch: no tile for any warp of this block */
    }
    float4 v[16];
    struct xtc_frag f;
    uint4 *ring = xtc_ring + (size_t)(tid / 32) * S * (XTC_STAGE_BYTES / 16);
    if (S == 0 && tile < n_tiles) {
        xtc_load(k, n_keys, tile, v); /* the first tile's loads wait while the query is made */
    }
#pragma unroll
    for (int i = 0; i + 1 < S; i++) { /* the ring's first S - 1 tiles, likewise */
        if (tile + i * stride < n_tiles) {
            xtc_load_async(ring + i * (XTC_STAGE_BYTES / 16), k, n_keys, tile + i * stride);
        }
        mt_cp_async_commit();
    }
    /* the query's fragments: entry (ks, n-tile h / 8, lane 4 (h % 8) + t) of each piece */
    xtc_query(q, w, scale, hs, hw,
              [&](int ks, int t, int h, uint4 e) { qf[ks][h / 8][4 * (h % 8) + t] = e; });
    __syncthreads();
    if constexpr (S == 0) {
        for (; tile < n_tiles; tile += stride) {
            xtc_split_tile(v, f);
            if (tile + stride < n_tiles) {
                xtc_load(k, n_keys, tile + stride, v);
            }
            xtc_scores(f, qf, hs, hw, n_keys, tile, out);
        }
    } else {
        for (int i = 0; tile < n_tiles; tile += stride, i++) {
            int64_t ahead = tile + (int64_t)(S - 1) * stride;
            if (ahead < n_tiles) {
                xtc_load_async(ring + ((i + S - 1) % S) * (XTC_STAGE_BYTES / 16), k, n_keys,
                               ahead);
            }
            mt_cp_async_commit();
            mt_cp_async_wait<S - 1>(); /* this tile's copies are complete */
            xtc_read_stage(ring + (i % S) * (XTC_STAGE_BYTES / 16), v);
            xtc_split_tile(v, f);
            xtc_scores(f, qf, hs, hw, n_keys, tile, out);
        }
        mt_cp_async_wait<0>();
    }
}

/* ---- Hopper's warpgroup MMA (sm_90a): the split key cache's scores -------------------------- */

/*
 * The exact scores at 64 heads x 128 on H100/H200 read keys that were split when they entered
 * the cache (index_keys_split.cuh) and run the products as wgmma m64n64k16 (index_scores_split_
 * kernel below). Compiled only for sm_90a (configure builds sm_90 as sm_90a); xsp_usable asks
 * whether the image loaded on a device has it, and elsewhere the kernel traps rather than leave
 * its output unwritten.
 *
 * The query's B operand (per k-step, hi and lo: 16 k x 64 heads of f16), K-major without
 * swizzle: 8 x 8 core matrices of 128 contiguous bytes (8 heads, 8 k each), core (heads 8 nb..,
 * k 8 kb..) at nb x 256 + kb x 128, so the descriptor's leading (k) offset is 128 bytes and its
 * stride (heads) 256; the keys' A operand is laid out the same way.
 */
#define XWG_B_BYTES (16 * XTC_HEADS * 2)

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define XWG_ON 1
#else
#define XWG_ON 0
#endif

#if XWG_ON
/* Shared-memory descriptor of B for half p (0 hi, 1 lo) and k-step ks of qb (see above). */
static __device__ __forceinline__ uint64_t
xwg_desc(const uint8_t *qb, int p, int ks)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(qb + (p * 8 + ks) * XWG_B_BYTES);

    return (uint64_t)((a & 0x3ffffu) >> 4) | ((uint64_t)(128 >> 4) << 16) |
           ((uint64_t)(256 >> 4) << 32);
}

/* Byte offset in qb of B's (head n, k kk) pair start (kk even) for half p, k-step ks. */
static __device__ __forceinline__ int
xwg_off(int p, int ks, int n, int kk)
{
    return (p * 8 + ks) * XWG_B_BYTES + (n >> 3) * 256 + (kk >> 3) * 128 + (n & 7) * 16 +
           (kk & 7) * 2;
}

/* Keep the compiler from moving reads or writes of the accumulator across wgmma's issue and
 * wait (the asm below names them; the fences do not). */
static __device__ __forceinline__ void
xwg_pin(float (&d)[32])
{
#pragma unroll
    for (int i = 0; i < 32; i++) {
        asm volatile("" : "+f"(d[i])::"memory");
    }
}

#endif

/* ---- exact scores from a cache of pre-split keys (sm_90a) ---------------------------------- */

/*
 * Why the split cache: with fp32 keys a wgmma kernel (session 17, the same products with the
 * keys' A operand from registers) had every warp read its tile back from shared memory and
 * split it (scale, two conversions, a subtraction a pair) before its products, ~600
 * instructions a 16-key tile with 8 warps an SM: latency-bound at 60% of the HBM read. With the
 * keys split when they enter the cache, the scores are a stream of bytes into the tensor cores:
 * 71% (bench/results/kernels-h200.md, session 18), and that fp32 kernel was removed. The same
 * cache serves mma.sync (index_scores_split_tc_kernel below) where the key ring fits.
 */
#define XSP_STAGES 2 /* a warpgroup's ring: 2 x 2 x 33 KB beside the query's 32 KB (3 stages:
                        measured 1-3% slower) */

/* Keys [0, n) of `keys` (fp32 rows of 128) into positions pos0.. of the split cache: a warp a
 * key. */
static __global__ void __launch_bounds__(256)
index_keys_split_kernel(uint8_t *__restrict__ cache, int64_t pos0, const float *__restrict__ keys,
                        int64_t n)
{
    mt_pdl_enter();
    int64_t key = (int64_t)blockIdx.x * 8 + threadIdx.x / 32;

    if (key < n) {
        xsp_store_key(cache, pos0 + key, keys + key * XSP_DIM);
    }
}

#if XWG_ON
static __device__ __forceinline__ uint32_t
xsp_smem(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* Descriptor of a 64 x 16 (or 16 x 64) f16 operand at p in the layout above. */
static __device__ __forceinline__ uint64_t
xsp_desc(const uint8_t *p)
{
    return (uint64_t)((xsp_smem(p) & 0x3ffffu) >> 4) | ((uint64_t)(128 >> 4) << 16) |
           ((uint64_t)(256 >> 4) << 32);
}

/* d += A B, both operands in shared memory. */
static __device__ __forceinline__ void
xsp_mma(float (&d)[32], uint64_t a, uint64_t b)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
                 "%32, %33, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
                   "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
                   "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
                   "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
                   "+f"(d[30]), "+f"(d[31])
                 : "l"(a), "l"(b));
}

/* One copy of a whole group (global -> shared, the bulk copy engine), counted on bar. */
static __device__ __forceinline__ void
xsp_fetch(uint8_t *dst, const uint8_t *src, uint64_t *bar)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(xsp_smem(bar)),
                 "r"(XSP_GROUP_BYTES)
                 : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], "
                 "%2, [%3];\n" ::"r"(xsp_smem(dst)),
                 "l"(src), "r"(XSP_GROUP_BYTES), "r"(xsp_smem(bar))
                 : "memory");
}

/* Wait until bar's phase of this parity has completed (the group's bytes have landed). */
static __device__ __forceinline__ void
xsp_wait(uint64_t *bar, uint32_t parity)
{
    asm volatile("{\n.reg .pred p;\nXSP_WAIT_%=:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
                 "@!p bra XSP_WAIT_%=;\n}\n" ::"r"(xsp_smem(bar)),
                 "r"(parity)
                 : "memory");
}
#endif

/*
 * Scores from the split cache: a warpgroup a group of 64 keys at a time (groups blockIdx.x x 2 +
 * wg, then every gridDim.x x 2-th), each through a ring of XSP_STAGES stages of its own filled by
 * one bulk copy a group (its first thread issues them; an mbarrier a stage counts the bytes in).
 * A group's products are 24 wgmma with both operands in shared memory; once they are done, the
 * warpgroup's stage takes the group XSP_STAGES ahead and the epilogue (xtc_epilogue) writes the
 * scores while it streams in. The first groups, where all their keys were ready before the
 * previous kernel (n_ready), are asked for before the wait for it: at 131,072 keys 20.7 against
 * 20.9 us, at 2,100 3.9 against 4.2, at 8,192 4.1 against 4.7 (session 18, call 8).
 */
static __global__ void __launch_bounds__(XTC_WARPS * 32, 1)
index_scores_split_kernel(const float *__restrict__ q, const float *__restrict__ w,
                          const uint8_t *__restrict__ keys, int64_t n_keys0, int64_t n_ready,
                          float scale, float *__restrict__ out, int64_t ld)
{
#if XWG_ON
    extern __shared__ __align__(128) uint8_t xsp_ring[]; /* [warpgroup][stage][group] */
    __shared__ __align__(128) uint8_t qb[2 * 8 * XWG_B_BYTES]; /* [hi, lo][k-step] (32 KB) */
    __shared__ __align__(8) float hs[XTC_HEADS];
    __shared__ __align__(8) float hw[XTC_HEADS];
    __shared__ __align__(8) uint64_t full[XTC_WARPS / 4][XSP_STAGES];
    int tid = threadIdx.x;
    int wg = tid / 128;
    int wl = (tid / 32) % 4;
    int lane = tid & 31;
    bool first = tid % 128 == 0; /* the warpgroup's copy issuer */
    int64_t n_keys = n_keys0 + blockIdx.y;
    q += (int64_t)blockIdx.y * XTC_HEADS * XTC_DIM;
    w += (int64_t)blockIdx.y * XTC_HEADS;
    out += (int64_t)blockIdx.y * ld;
    int64_t n_big = (n_keys + XSP_KEYS - 1) / XSP_KEYS;
    int64_t stride = (int64_t)gridDim.x * (XTC_WARPS / 4);
    int64_t big = (int64_t)blockIdx.x * (XTC_WARPS / 4) + wg;
    uint8_t *ring = xsp_ring + (size_t)wg * XSP_STAGES * XSP_GROUP_BYTES;
    uint64_t *bar = full[wg];
    /* the first stages' groups, in flight while the query is made; those whose keys were all
     * ready before the previous kernel (n_ready) even before the wait for it */
    auto fetch_first = [&](bool ready) {
        for (int st = 0; st < XSP_STAGES; st++) {
            int64_t b = big + st * stride;
            if (b < n_big && ((b + 1) * XSP_KEYS <= n_ready) == ready) {
                xsp_fetch(ring + st * XSP_GROUP_BYTES, keys + b * XSP_GROUP_BYTES, &bar[st]);
            }
        }
    };
    if (first) {
        for (int st = 0; st < XSP_STAGES; st++) {
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(xsp_smem(&bar[st]))
                         : "memory");
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        fetch_first(true);
    }
    rows_prologue(out, n_keys, ld);
    if ((int64_t)blockIdx.x * (XTC_WARPS / 4) >= n_big) {
        return; /* a shorter row of the batch: no group for this block (none fetched) */
    }
    if (first) {
        fetch_first(false);
    }
    /* the query's halves as B, dims permuted as the keys' (index_keys_split.cuh): dims 4t, 4t +
     * 1 of a k-step at k 2t, 2t + 1, dims 4t + 2, 4t + 3 at k 2t + 8, 2t + 9 */
    xtc_query(q, w, scale, hs, hw, [&](int ks, int t, int h, uint4 e) {
        *reinterpret_cast<uint32_t *>(qb + xwg_off(0, ks, h, 2 * t)) = e.x;
        *reinterpret_cast<uint32_t *>(qb + xwg_off(0, ks, h, 2 * t + 8)) = e.y;
        *reinterpret_cast<uint32_t *>(qb + xwg_off(1, ks, h, 2 * t)) = e.z;
        *reinterpret_cast<uint32_t *>(qb + xwg_off(1, ks, h, 2 * t + 8)) = e.w;
    });
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); /* for wgmma's reads */
    __syncthreads(); /* also: the barriers' init, before anyone waits on them */
    for (int i = 0; big < n_big; i++, big += stride) {
        int st = i % XSP_STAGES;
        const uint8_t *grp = ring + st * XSP_GROUP_BYTES;
        xsp_wait(&bar[st], (uint32_t)(i / XSP_STAGES) & 1);
        const float *u = reinterpret_cast<const float *>(grp + 2 * XSP_HALF_BYTES);
        float u0 = u[16 * wl + (lane >> 2)];
        float u1 = u[16 * wl + (lane >> 2) + 8];
        float d[32];
#pragma unroll
        for (int r = 0; r < 32; r++) {
            d[r] = 0.0f;
        }
        xwg_pin(d);
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int ks = 0; ks < 8; ks++) {
            uint64_t khi = xsp_desc(grp + ks * 2048);
            uint64_t klo = xsp_desc(grp + XSP_HALF_BYTES + ks * 2048);
            xsp_mma(d, klo, xwg_desc(qb, 0, ks));
            xsp_mma(d, khi, xwg_desc(qb, 1, ks));
            xsp_mma(d, khi, xwg_desc(qb, 0, ks));
        }
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        xwg_pin(d);
        /* the whole warpgroup's products (and reads of u) are done: the stage takes the group
         * XSP_STAGES ahead while the scores are written */
        asm volatile("bar.sync %0, 128;\n" ::"r"(1 + wg) : "memory");
        if (first && big + XSP_STAGES * stride < n_big) {
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
            xsp_fetch(ring + st * XSP_GROUP_BYTES, keys + (big + XSP_STAGES * stride) *
                      XSP_GROUP_BYTES, &bar[st]);
        }
        float c[8][4];
#pragma unroll
        for (int j = 0; j < 8; j++) {
#pragma unroll
            for (int r = 0; r < 4; r++) {
                c[j][r] = d[4 * j + r];
            }
        }
        xtc_epilogue(c, u0, u1, hs, hw, n_keys, 4 * big + wl, out);
    }
#else
    (void)q, (void)w, (void)keys, (void)n_keys0, (void)n_ready, (void)scale, (void)out, (void)ld;
    __trap(); /* not built for sm_90a: xsp_usable never picks it */
#endif
}

/* ---- exact scores from the split key cache on mma.sync (A100; H100/H200 with wgmma off) ----- */

/* The chunk of tile tl (16 keys: slot tl % 4 of group tl / 4) for half p, k-step ks: 512 bytes,
 * the four 8 x 8 core matrices of its A fragments (index_keys_split.cuh). */
static __device__ __forceinline__ const uint8_t *
xst_chunk(const uint8_t *keys, int64_t tl, int p, int ks)
{
    return keys + (tl >> 2) * XSP_GROUP_BYTES + p * XSP_HALF_BYTES + ks * 2048 + (tl & 3) * 512;
}

/* Tile tl's scales: keys g and g + 8 of lane (g, t). */
static __device__ __forceinline__ void
xst_scales(const uint8_t *keys, int64_t tl, struct xtc_frag &f)
{
    const float *u = reinterpret_cast<const float *>(keys + (tl >> 2) * XSP_GROUP_BYTES +
                                                     2 * XSP_HALF_BYTES) +
                     (tl & 3) * 16 + ((threadIdx.x & 31) >> 2);

    f.u0 = __ldg(u);
    f.u1 = __ldg(u + 8);
}

/* Tile tl's 16 chunks into a warp's ring stage (16 x 32 x 16 bytes, chunk c = p x 8 + ks at
 * slots [c][0..31]: its 512 bytes in order). */
static __device__ __forceinline__ void
xst_copy(uint4 *stage, const uint8_t *keys, int64_t tl)
{
    int lane = threadIdx.x & 31;

#pragma unroll
    for (int c = 0; c < 16; c++) {
        mt_cp_async16(stage + c * 32 + lane, xst_chunk(keys, tl, c / 8, c % 8) + lane * 16, true);
    }
}

/* The fragments of the tile in a stage, by ldmatrix: lanes 8m .. 8m + 7 address the rows of
 * core matrix m (0: mb 0 kb 0, 1: mb 1 kb 0, 2: mb 0 kb 1, 3: mb 1 kb 1), so register m is
 * fragment a_m. */
static __device__ __forceinline__ void
xst_frags(const uint4 *stage, struct xtc_frag &f)
{
    int lane = threadIdx.x & 31;
    int m = lane >> 3;
    uint32_t base = (uint32_t)__cvta_generic_to_shared(stage) + (m & 1) * 256 + (m >> 1) * 128 +
                    (lane & 7) * 16;

#pragma unroll
    for (int ks = 0; ks < 8; ks++) {
#pragma unroll
        for (int p = 0; p < 2; p++) {
            uint32_t *a = p == 0 ? f.hi[ks] : f.lo[ks];
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                         : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
                         : "r"(base + (p * 8 + ks) * 512));
        }
    }
}

/*
 * The fp32 ring kernel's warps, tiles, query fragments and products (index_scores_exact_tc_
 * kernel<XTC_RING>), with a tile's A fragments read from the split cache instead of made from
 * fp32 keys: each warp copies its tiles one ahead into its ring (cp.async, 8 KB a stage) and
 * reads a tile's fragments back with ldmatrix. No split. Where the ring does not fit (the RTX
 * cards' 99 KB a block) the cache stays fp32 (mt_gpu_index_keys_split): plain 4-byte loads of
 * the fragments into registers took twice as long as fp32 keys in registers on the H200 (62
 * against 30 us at 131,072 keys).
 * Keys of groups entirely below n_ready (ready before the previous kernel) are copied before
 * the wait for it, as the wgmma kernel does.
 */
static __global__ void __launch_bounds__(XTC_WARPS * 32, 1)
index_scores_split_tc_kernel(const float *__restrict__ q, const float *__restrict__ w,
                             const uint8_t *__restrict__ keys, int64_t n_keys0, int64_t n_ready,
                             float scale, float *__restrict__ out, int64_t ld)
{
    extern __shared__ uint4 xtc_ring[]; /* [warp][stage][16 chunks][32 lanes] */
    __shared__ uint4 qf[8][8][32];
    __shared__ __align__(8) float hs[XTC_HEADS];
    __shared__ __align__(8) float hw[XTC_HEADS];
    constexpr int S = XTC_RING;
    int tid = threadIdx.x;
    int64_t n_keys = n_keys0 + blockIdx.y;
    q += (int64_t)blockIdx.y * XTC_HEADS * XTC_DIM;
    w += (int64_t)blockIdx.y * XTC_HEADS;
    out += (int64_t)blockIdx.y * ld;
    int64_t n_tiles = (n_keys + 15) / 16;
    int64_t stride = (int64_t)gridDim.x * XTC_WARPS;
    int64_t tile = (int64_t)blockIdx.x * XTC_WARPS + tid / 32;
    uint4 *ring = xtc_ring + (size_t)(tid / 32) * S * (XTC_STAGE_BYTES / 16);
    static_assert(S == 2, "the ring's first tile below is its S - 1 tiles copied ahead");
    /* the ring's first tile (one group of copies, empty where there is none) */
    bool early = tile < n_tiles && (tile / 4 + 1) * XSP_KEYS <= n_ready;
    if (early) {
        xst_copy(ring, keys, tile);
    }
    rows_prologue(out, n_keys, ld);
    if ((int64_t)blockIdx.x * XTC_WARPS >= n_tiles) {
        return; /* a shorter row of the batch: no tile for any warp of this block */
    }
    if (!early && tile < n_tiles) {
        xst_copy(ring, keys, tile);
    }
    mt_cp_async_commit();
    xtc_query(q, w, scale, hs, hw,
              [&](int ks, int t, int h, uint4 e) { qf[ks][h / 8][4 * (h % 8) + t] = e; });
    __syncthreads();
    struct xtc_frag f;
    for (int i = 0; tile < n_tiles; tile += stride, i++) {
        int64_t ahead = tile + (int64_t)(S - 1) * stride;
        /* the stage the copy below refills was read by every lane's ldmatrix a tile ago: those
         * reads of other lanes' bytes are done before this lane's copy overwrites them */
        __syncwarp();
        if (ahead < n_tiles) {
            xst_copy(ring + ((i + S - 1) % S) * (XTC_STAGE_BYTES / 16), keys, ahead);
        }
        mt_cp_async_commit();
        xst_scales(keys, tile, f);
        mt_cp_async_wait<S - 1>(); /* this thread's copies of this tile are complete */
        __syncwarp();              /* and every lane's: ldmatrix reads them all */
        xst_frags(ring + (i % S) * (XTC_STAGE_BYTES / 16), f);
        xtc_scores(f, qf, hs, hw, n_keys, tile, out);
    }
    mt_cp_async_wait<0>();
}

/* -1: from MT_IDX_EXACT_RING (default on); mt_gpu_index_exact_ring_set overrides. */
static int ring_on = -2;

extern "C" void
mt_gpu_index_exact_ring_set(bool on)
{
    ring_on = on ? 1 : 0;
}

/*
 * Stages of the exact kernel's ring on this device: 2 where 8 warps' rings fit beside the query
 * (128 + 32 KB: H100/H200, A100), else 0 (keys in registers: the RTX cards' 99 KB a block). What
 * fits is found once per device (the kernel's shared-memory attribute set there). Measured on
 * the H200 (bench/results/kernels-h200.md, 2026-12-01 session 15), graph + PDL at 131,072 keys,
 * four calls: 2 stages 27.0-28.7 us against registers 28.8-30.1 (1-10% faster in each call); 3
 * stages (192 KB) 29.0-29.1; 12 warps (192 KB of ring) 29.1-29.3; two tiles a warp sharing each
 * query fragment (6 warps) 35.5.
 */
static int
xtc_stages_fit(void)
{
    static int cached[64]; /* 1 + the stages that fit; 0 not yet known */
    int dev = 0;
    int optin = 0;

    if (ring_on == -2) { /* read here: xtc_stages runs this first */
        const char *e = getenv("MT_IDX_EXACT_RING");
        ring_on = e == NULL || atoi(e) != 0;
    }
    if (cudaGetDevice(&dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    int fit = dev >= 0 && dev < 64 ? cached[dev] - 1 : -1;
    if (fit < 0) {
        int smem = XTC_WARPS * XTC_RING * XTC_STAGE_BYTES;
        size_t fixed = sizeof(uint4) * 8 * 8 * 32 + 2 * sizeof(float) * XTC_HEADS + 1024;
        if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) !=
            cudaSuccess) {
            optin = 0;
        }
        fit = fixed + (size_t)smem <= (size_t)optin &&
                      cudaFuncSetAttribute(index_scores_exact_tc_kernel<XTC_RING>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           smem) == cudaSuccess &&
                      cudaFuncSetAttribute(index_scores_split_tc_kernel,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           smem) == cudaSuccess
                  ? XTC_RING
                  : 0;
        (void)cudaGetLastError(); /* a refusal leaves the register kernel */
        if (dev >= 0 && dev < 64) {
            cached[dev] = fit + 1;
        }
    }
    return fit;
}

/* The stages the fp32 kernel takes: those that fit, unless the ring is switched off. */
static int
xtc_stages(void)
{
    return ring_on == 1 ? xtc_stages_fit() : 0;
}

/* -1: not yet read from MT_IDX_EXACT_TC (default on); mt_gpu_index_exact_tc_set overrides. */
static int exact_tc = -1;

static bool
exact_tc_on(void)
{
    if (exact_tc < 0) {
        const char *e = getenv("MT_IDX_EXACT_TC");
        exact_tc = e == NULL || atoi(e) != 0;
    }
    return exact_tc == 1;
}

extern "C" void
mt_gpu_index_exact_tc_set(bool on)
{
    exact_tc = on ? 1 : 0;
}

/* The tensor-core kernel's grid for n_keys: as many blocks as fit on the device (cached per
 * device), trimmed so that each warp gets the same number of tiles. */
static mt_status_t
xtc_grid(int64_t n_keys, unsigned *blocks)
{
    static int cached[64];
    int dev = 0;
    int fit = 0;
    mt_status_t st;

    if ((st = MT_CUDA(cudaGetDevice(&dev))) != MT_OK) {
        return st;
    }
    if (dev >= 0 && dev < 64) {
        fit = cached[dev];
    }
    if (fit == 0) {
        int sms = 0;
        int per_sm = 0;
        if ((st = MT_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev))) !=
                MT_OK ||
            (st = MT_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                 &per_sm, index_scores_exact_tc_kernel<0>, XTC_WARPS * 32, 0))) != MT_OK) {
            return st;
        }
        fit = MT_MAX(1, sms * per_sm);
        if (dev >= 0 && dev < 64) {
            cached[dev] = fit;
        }
    }
    int64_t tiles = MT_CEIL_DIV(n_keys, (int64_t)16);
    int64_t per_warp = MT_CEIL_DIV(tiles, (int64_t)fit * XTC_WARPS);
    *blocks = (unsigned)MT_CEIL_DIV(tiles, per_warp * XTC_WARPS);
    return MT_OK;
}

/* Rows up to this many keys take 16-key blocks (MT_IDX_EXACT_KEYS=16 or 32 forces one size). */
#define EXACT_SMALL_ROW 8192

extern "C" mt_status_t
mt_gpu_index_scores(const float *q, const float *w, int n_heads, int dim, const float *k,
                    int64_t n_keys, float scale, float *out, struct CUstream_st *stream)
{
    return mt_gpu_index_scores_rows(q, w, n_heads, dim, k, n_keys, 1, scale, out, n_keys,
                                    stream);
}

extern "C" mt_status_t
mt_gpu_index_scores_rows(const float *q, const float *w, int n_heads, int dim, const float *k,
                         int64_t n_keys0, int n_q, float scale, float *out, int64_t ld,
                         struct CUstream_st *stream)
{
    static int force = -1; /* read once; a race only reads it twice */
    int64_t n_keys = n_keys0 + n_q - 1; /* the longest row: the grid's width */

    if (n_heads < 1 || n_heads > EXACT_MAX_HEADS || dim < 4 || dim > EXACT_MAX_DIM ||
        dim % 4 != 0 || n_keys0 < 1 || n_q < 1 || n_q > 65535 || ld < n_keys || q == NULL ||
        w == NULL || k == NULL || out == NULL || (uintptr_t)k % 16 != 0) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu index scores: %d heads x %d dims, %d queries of "
                       "%lld.. keys in rows of %lld", n_heads, dim, n_q, (long long)n_keys0,
                       (long long)ld);
    }
    if (force < 0) {
        const char *e = getenv("MT_IDX_EXACT_KEYS");
        force = e != NULL && (atoi(e) == 16 || atoi(e) == 32) ? atoi(e) : 0;
    }
    if (n_heads == XTC_HEADS && dim == XTC_DIM && exact_tc_on() && (uintptr_t)q % 16 == 0) {
        unsigned blocks = 0;
        mt_status_t st = xtc_grid(n_keys, &blocks);
        if (st != MT_OK) {
            return st;
        }
        int S = xtc_stages();
        size_t smem = (size_t)XTC_WARPS * S * XTC_STAGE_BYTES;
        void (*kernel)(const float *, const float *, const float *, int64_t, float, float *,
                       int64_t) = S == XTC_RING ? index_scores_exact_tc_kernel<XTC_RING>
                                                : index_scores_exact_tc_kernel<0>;
        mt_pdl_launch(kernel, dim3(blocks, (unsigned)n_q), dim3(XTC_WARPS * 32), smem, stream, q,
                      w, k, n_keys0, scale, out, ld);
        return mt_cuda_launched("index_scores (tensor cores)", stream);
    }
    bool small = force != 0 ? force == 16 : n_keys <= EXACT_SMALL_ROW;
    if (small) {
        mt_pdl_launch(index_scores_exact_kernel<16>,
                      dim3((unsigned)MT_CEIL_DIV(n_keys, 16LL), (unsigned)n_q),
                      dim3(EXACT_THREADS), 0, stream, q, w, n_heads, dim, k, n_keys0, scale, out,
                      ld);
    } else {
        mt_pdl_launch(index_scores_exact_kernel<32>,
                      dim3((unsigned)MT_CEIL_DIV(n_keys, 32LL), (unsigned)n_q),
                      dim3(EXACT_THREADS), 0, stream, q, w, n_heads, dim, k, n_keys0, scale, out,
                      ld);
    }
    return mt_cuda_launched("index_scores", stream);
}

/* -1: not yet read from MT_IDX_SPLIT_KEYS (default on); mt_gpu_index_keys_split_set overrides. */
static int split_keys = -1;

extern "C" void
mt_gpu_index_keys_split_set(bool on)
{
    split_keys = on ? 1 : 0;
}

/* -1: not yet read from MT_IDX_EXACT_WGMMA (default on); mt_gpu_index_exact_wgmma_set
 * overrides. */
static int split_wgmma = -1;

extern "C" void
mt_gpu_index_exact_wgmma_set(bool on)
{
    split_wgmma = on ? 1 : 0;
}

/* Whether index_scores_split_kernel runs here: a cc 9.0 device, the image loaded there built for
 * sm_90a, and its two rings' shared memory granted. An image of version 9.0 is not enough:
 * configure also embeds plain compute_90 PTX, which a cc 9.0 device JIT-compiles where it is
 * told to (CUDA_FORCE_PTX_JIT=1) and which holds only the kernel's trap stub; the stub has no
 * static shared memory, the wgmma body's query fragments 32 KB. No stream operation: this may
 * run while a stream is being captured into a graph. */
static bool
xsp_usable(void)
{
    static int cached[64]; /* 1 no, 2 yes; 0 not yet known */
    int dev = 0;

    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
        (void)cudaGetLastError();
        return false;
    }
    if (cached[dev] == 0) {
        int major = 0;
        int minor = 0;
        cudaFuncAttributes fa;
        bool yes = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) ==
                           cudaSuccess &&
                   cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) ==
                           cudaSuccess &&
                   major == 9 && minor == 0 &&
                   cudaFuncGetAttributes(&fa, index_scores_split_kernel) == cudaSuccess &&
                   fa.binaryVersion == 90 && fa.ptxVersion == 90 && fa.sharedSizeBytes > 0 &&
                   cudaFuncSetAttribute(index_scores_split_kernel,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (XTC_WARPS / 4) * XSP_STAGES * XSP_GROUP_BYTES) ==
                       cudaSuccess;
        (void)cudaGetLastError(); /* a refusal leaves the fp32 cache */
        cached[dev] = yes ? 2 : 1;
    }
    return cached[dev] == 2;
}

extern "C" bool
mt_gpu_index_exact_wgmma_active(void)
{
    if (split_wgmma < 0) {
        const char *e = getenv("MT_IDX_EXACT_WGMMA");
        split_wgmma = e == NULL || atoi(e) != 0;
    }
    return split_wgmma == 1 && xsp_usable();
}

extern "C" bool
mt_gpu_index_keys_split(int n_heads, int dim)
{
    if (split_keys < 0) {
        const char *e = getenv("MT_IDX_SPLIT_KEYS");
        split_keys = e == NULL || atoi(e) != 0;
    }
    return split_keys == 1 && n_heads == XTC_HEADS && dim == XTC_DIM && exact_tc_on() &&
           (xsp_usable() || xtc_stages_fit() == XTC_RING);
}

extern "C" size_t
mt_gpu_index_keys_split_bytes(int64_t cap)
{
    return cap < 1 ? 0 : (size_t)MT_CEIL_DIV(cap, (int64_t)XSP_KEYS) * XSP_GROUP_BYTES;
}

extern "C" mt_status_t
mt_gpu_index_keys_split_store(void *cache, int64_t pos0, const float *keys, int64_t n,
                              struct CUstream_st *stream)
{
    if (cache == NULL || keys == NULL || pos0 < 0 || n < 1 || (uintptr_t)keys % 16 != 0 ||
        (uintptr_t)cache % 16 != 0) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu index keys split store: %lld keys at %lld",
                       (long long)n, (long long)pos0);
    }
    mt_pdl_launch(index_keys_split_kernel, dim3((unsigned)MT_CEIL_DIV(n, (int64_t)8)), dim3(256),
                  0, stream, (uint8_t *)cache, pos0, keys, n);
    return mt_cuda_launched("index_keys_split", stream);
}

extern "C" mt_status_t
mt_gpu_index_scores_split(const float *q, const float *w, const void *keys, int64_t n_keys0,
                          int n_q, int64_t n_ready, float scale, float *out, int64_t ld,
                          struct CUstream_st *stream)
{
    int64_t n_keys = n_keys0 + n_q - 1; /* the longest row: the grid's width */

    if (n_keys0 < 1 || n_q < 1 || n_q > 65535 || ld < n_keys || n_ready < 0 ||
        n_ready > n_keys || q == NULL || w == NULL || keys == NULL || out == NULL ||
        (uintptr_t)keys % 16 != 0 || (uintptr_t)q % 16 != 0) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu index scores (split keys): %d queries of %lld.. "
                       "keys (%lld ready) in rows of %lld", n_q, (long long)n_keys0,
                       (long long)n_ready, (long long)ld);
    }
    unsigned blocks = 0;
    mt_status_t st = xtc_grid(n_keys, &blocks);
    if (st != MT_OK) {
        return st;
    }
    if (!mt_gpu_index_exact_wgmma_active()) {
        if (xtc_stages_fit() != XTC_RING) {
            return mt_fail(MT_ERR_UNSUPPORTED, 0, "gpu index scores (split keys): this GPU has "
                           "neither wgmma nor the shared memory for the key ring "
                           "(mt_gpu_index_keys_split says where the split cache is kept)");
        }
        mt_pdl_launch(index_scores_split_tc_kernel, dim3(blocks, (unsigned)n_q),
                      dim3(XTC_WARPS * 32), (size_t)XTC_WARPS * XTC_RING * XTC_STAGE_BYTES,
                      stream, q, w, (const uint8_t *)keys, n_keys0, n_ready, scale, out, ld);
        return mt_cuda_launched("index_scores (split keys, mma.sync)", stream);
    }
    int64_t big = MT_CEIL_DIV(n_keys, (int64_t)XSP_KEYS);
    int64_t per_wg = MT_CEIL_DIV(big, (int64_t)blocks * (XTC_WARPS / 4));
    blocks = (unsigned)MT_CEIL_DIV(big, per_wg * (XTC_WARPS / 4));
    mt_pdl_launch(index_scores_split_kernel, dim3(blocks, (unsigned)n_q), dim3(XTC_WARPS * 32),
                  (size_t)(XTC_WARPS / 4) * XSP_STAGES * XSP_GROUP_BYTES, stream, q, w,
                  (const uint8_t *)keys, n_keys0, n_ready, scale, out, ld);
    return mt_cuda_launched("index_scores (split keys, warpgroup mma)", stream);
}

/* ---- FP8 on tensor cores ------------------------------------------------------------------- */

#define FP8_HEADS 64
#define FP8_DIM 128
#define FP8_WARPS 4                /* 16 heads each */
#define FP8_TILE 64                /* keys per shared-memory tile: 4 m-tiles of 16 */
#define FP8_ROW 192                /* smem bytes per key row: 128 + 64 keeps 16-byte reads of
                                      rows r and r+1 in different banks */
#define FP8_BLOCKS_PER_SM 6

#define FP8_LOADS (FP8_TILE * FP8_DIM / 16 / (FP8_WARPS * 32)) /* 16-byte loads a thread */

/*
 * Row blockIdx.y of a batch of queries (mt_gpu_index_scores_fp8_rows) takes query y (q8 + y 64 x
 * 128, w + y 64), whose keys are the first n_keys + y, and scores them into out + y ld; past them,
 * to ld, the row gets NaN (rows_prologue says why), so that a top-k over whole rows never picks
 * past a query's keys. One query (gridDim.y 1, ld = n_keys): nothing changes. After the wait for
 * the previous kernel.
 */
static __device__ __forceinline__ void
fp8_row_tail(float *row, int64_t n_keys, int64_t ld, int threads)
{
    for (int64_t i = n_keys + (int64_t)blockIdx.x * threads + threadIdx.x; i < ld;
         i += (int64_t)gridDim.x * threads) {
        row[i] = __int_as_float(0x7fc00000); /* NaN */
    }
}

/* This thread's FP8_LOADS 16-byte pieces of the tile of keys key0.. (zeros past n_keys). */
static __device__ __forceinline__ void
load_tile(const uint8_t *__restrict__ k8, int64_t n_keys, int64_t key0, uint4 (&pre)[FP8_LOADS])
{
#pragma unroll
    for (int j = 0; j < FP8_LOADS; j++) {
        int c = threadIdx.x + j * FP8_WARPS * 32;
        int r = c / (FP8_DIM / 16);
        int cc = c % (FP8_DIM / 16);
        pre[j] = make_uint4(0, 0, 0, 0);
        if (key0 + r < n_keys) {
            pre[j] = __ldcs(reinterpret_cast<const uint4 *>(k8 + (key0 + r) * FP8_DIM) + cc);
        }
    }
}

/*
 * k-step ks = 4 * half + i (8 steps over 128 dims) of lane (group g = lane / 4, t = lane % 4)
 * covers the physical dims 64 * half + 16 * t + 4 * i + {0..3}: {0,1} are the fragment's logical
 * k = 2t + {0,1}, {2,3} its k = 8 + 2t + {0,1}. A and B use the same map, so dots are unchanged.
 */
static __global__ void __launch_bounds__(FP8_WARPS * 32)
index_scores_fp8_kernel(const uint8_t *__restrict__ q8, const float *__restrict__ w,
                        const uint8_t *__restrict__ k8, const float *__restrict__ k_scale,
                        int64_t n_keys, float *out, int64_t ld)
{
    q8 += (int64_t)blockIdx.y * FP8_HEADS * FP8_DIM;
    w += (int64_t)blockIdx.y * FP8_HEADS;
    out += (int64_t)blockIdx.y * ld;
    n_keys += blockIdx.y;
    fp8_row_tail(out, n_keys, ld, FP8_WARPS * 32);
    __shared__ __align__(16) uint8_t tile[FP8_TILE * FP8_ROW];
    __shared__ float part[FP8_WARPS][FP8_TILE];
    int warp = threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int t = lane & 3;
    uint32_t qb[2][8][2]; /* [n-tile][k-step][reg] */
    float wl[2][2];       /* head weights of this lane's two C columns per n-tile, * 2^16 */
    int64_t n_tiles = (n_keys + FP8_TILE - 1) / FP8_TILE;

    for (int j = 0; j < 2; j++) {
        int head = warp * 16 + j * 8 + g;
        const uint4 *qr = reinterpret_cast<const uint4 *>(q8 + head * FP8_DIM);
        for (int half = 0; half < 2; half++) {
            uint4 v = __ldg(qr + 4 * half + t);
            uint32_t words[4] = {v.x, v.y, v.z, v.w};
            for (int i = 0; i < 4; i++) {
                qb[j][4 * half + i][0] = mt_fp8x2_to_half2_bits(words[i]);
                qb[j][4 * half + i][1] = mt_fp8x2_to_half2_bits(words[i] >> 16);
            }
        }
        for (int c = 0; c < 2; c++) {
            wl[j][c] = w[warp * 16 + j * 8 + 2 * t + c] *
                       (MT_FP8_DECODE_SCALE * MT_FP8_DECODE_SCALE);
        }
    }
    /* the next tile is loaded into registers while this one is computed from shared memory */
    uint4 pre[FP8_LOADS];
    load_tile(k8, n_keys, (int64_t)blockIdx.x * FP8_TILE, pre);
    for (int64_t tb = blockIdx.x; tb < n_tiles; tb += gridDim.x) {
        int64_t key0 = tb * FP8_TILE;
        __syncthreads(); /* the previous tile is consumed */
#pragma unroll
        for (int j = 0; j < FP8_LOADS; j++) {
            int c = threadIdx.x + j * FP8_WARPS * 32;
            int r = c / (FP8_DIM / 16);
            int cc = c % (FP8_DIM / 16);
            *reinterpret_cast<uint4 *>(tile + r * FP8_ROW + cc * 16) = pre[j];
        }
        __syncthreads();
        if (tb + gridDim.x < n_tiles) {
            load_tile(k8, n_keys, (tb + gridDim.x) * FP8_TILE, pre);
        }
        for (int mt = 0; mt < FP8_TILE / 16; mt++) {
            float c[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
            for (int half = 0; half < 2; half++) {
                uint4 lo = *reinterpret_cast<const uint4 *>(tile + (mt * 16 + g) * FP8_ROW +
                                                            64 * half + 16 * t);
                uint4 hi = *reinterpret_cast<const uint4 *>(tile + (mt * 16 + g + 8) * FP8_ROW +
                                                            64 * half + 16 * t);
                uint32_t lw[4] = {lo.x, lo.y, lo.z, lo.w};
                uint32_t hw[4] = {hi.x, hi.y, hi.z, hi.w};
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    uint32_t a[4];
                    a[0] = mt_fp8x2_to_half2_bits(lw[i]);
                    a[1] = mt_fp8x2_to_half2_bits(hw[i]);
                    a[2] = mt_fp8x2_to_half2_bits(lw[i] >> 16);
                    a[3] = mt_fp8x2_to_half2_bits(hw[i] >> 16);
                    mma_16816(c[0], a, qb[0][4 * half + i][0], qb[0][4 * half + i][1]);
                    mma_16816(c[1], a, qb[1][4 * half + i][0], qb[1][4 * half + i][1]);
                }
            }
            /* c[j][0..1]: key g, heads 2t, 2t+1 of n-tile j; c[j][2..3]: key g + 8 */
            float s0 = 0.0f;
            float s1 = 0.0f;
#pragma unroll
            for (int j = 0; j < 2; j++) {
                s0 += fmaxf(c[j][0], 0.0f) * wl[j][0] + fmaxf(c[j][1], 0.0f) * wl[j][1];
                s1 += fmaxf(c[j][2], 0.0f) * wl[j][0] + fmaxf(c[j][3], 0.0f) * wl[j][1];
            }
            s0 += __shfl_xor_sync(0xffffffffu, s0, 1);
            s0 += __shfl_xor_sync(0xffffffffu, s0, 2);
            s1 += __shfl_xor_sync(0xffffffffu, s1, 1);
            s1 += __shfl_xor_sync(0xffffffffu, s1, 2);
            if (t == 0) {
                part[warp][mt * 16 + g] = s0;
                part[warp][mt * 16 + g + 8] = s1;
            }
        }
        __syncthreads();
        for (int r = threadIdx.x; r < FP8_TILE; r += FP8_WARPS * 32) {
            int64_t key = key0 + r;
            if (key < n_keys) {
                float s = (part[0][r] + part[1][r]) + (part[2][r] + part[3][r]);
                out[key] = s * k_scale[key];
            }
        }
    }
}

/* ---- FP8 scores with hardware e4m3 conversion (sm_89 and newer) ---------------------------- */

/*
 * The same f16 mma as above, organised so that each key byte is converted once: each warp (a
 * block of its own) owns whole 16-key tiles against all 64 heads, the query is converted to f16
 * once into 128 registers a lane, the key tile goes through cvt.rn.f16x2.e4m3x2 (one instruction
 * for two values, exact) straight into the A fragments, and the ReLU-weighted head sum ends in
 * registers with two shuffles. The tiles stream through a private 4-stage cp.async ring (3 tiles,
 * 6 KB, in flight a warp): each lane copies exactly the 16-byte pieces it later reads, so there
 * is no barrier at all. The k map is the f16 kernel's (k-step 4 half + i of lane t: bytes 64 half
 * + 16 t + 4 i + {0..3}).
 *
 * Measured on the H200 (bench/results/kernels-h200.md): 10.9 us for 131072 keys, 36% of HBM read
 * (the f16 kernel above: 20.5 us). mma.sync m16n8k32 e4m3 (FP8 operands straight from the cache)
 * took 13.9-15.6 us; by ncu's instruction counts (SASS not inspected) ptxas expands FP8 mma.sync
 * on Hopper, whose FP8 tensor cores are only in the wgmma path, into conversions and f16 mmas, and
 * so converted the query again for every tile. 6 stages with the first tiles issued before the
 * query conversion took 12.6 us. What limits it now (ncu: 8 warps an SM by 206 registers, issue
 * slots 32% busy, DRAM 27%) is latency per warp, not bytes or tensor throughput.
 *
 * Launched with programmatic dependent launch (pdl.cuh): a warp asks L2 for the lines of its
 * first tiles whose keys the caller says were ready (n_ready: the cache of earlier steps) before
 * it waits for the previous kernel, whose output (this step's query, the newest keys) it reads
 * after. Issuing the ring's first copies themselves before the wait measured slower on the H200
 * (131,072 keys, graph + PDL: 9.6 us against 9.2 for the prefetch; 12.5 against 11.6 isolated).
 */
#define F8M_STAGES 4

static __device__ __forceinline__ uint32_t
f8m_cvt(uint32_t two_bytes)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    uint32_t r;
    uint16_t v = (uint16_t)two_bytes;
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;\n" : "=r"(r) : "h"(v));
    return r;
#else
    (void)two_bytes;
    __trap(); /* never launched: the host checks the PTX version first */
    return 0;
#endif
}

struct f8m_ring {
    uint4 piece[F8M_STAGES][4][32]; /* [stage][key g: 0, 1; key g + 8: 2, 3][lane] */
    float scale[F8M_STAGES][16];
};

/* This lane's pieces of tile `tile` (keys g and g + 8, bytes 16t and 64 + 16t) into `stage`. */
static __device__ __forceinline__ void
f8m_issue(struct f8m_ring &ring, int stage, const uint8_t *__restrict__ k8,
          const float *__restrict__ k_scale, int64_t n_keys, int64_t tile, int64_t n_tiles)
{
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int t = lane & 3;

#pragma unroll
    for (int r = 0; r < 2; r++) {
        int64_t key = tile * 16 + g + 8 * r;
        bool ok = tile < n_tiles && key < n_keys;
        const uint8_t *src = ok ? k8 + key * FP8_DIM + 16 * t : k8;
        mt_cp_async16(&ring.piece[stage][2 * r][lane], src, ok);
        mt_cp_async16(&ring.piece[stage][2 * r + 1][lane], src + (ok ? 64 : 0), ok);
        if (t == 0) {
            mt_cp_async4(&ring.scale[stage][g + 8 * r], ok ? k_scale + key : k_scale, ok);
        }
    }
    mt_cp_async_commit();
}

static __global__ void __launch_bounds__(32)
index_scores_f8mma_kernel(const uint8_t *__restrict__ q8, const float *__restrict__ w,
                          const uint8_t *__restrict__ k8, const float *__restrict__ k_scale,
                          int64_t n_keys, int64_t n_ready, float *__restrict__ out, int64_t ld)
{
    __shared__ struct f8m_ring ring;
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int t = lane & 3;
    int64_t n_warps = gridDim.x;
    int64_t n_tiles = (n_keys + 15) / 16;
    uint32_t qh[8][8][2]; /* [n-tile j: this lane's head 8j + g][k-step][b0, b1] as f16x2 */

    /* the first tiles' key rows (a 128-byte line each) that were ready before the previous
     * kernel are asked of L2 before the wait for it; the query, the head weights and the newest
     * keys are that kernel's output, read after */
    for (int st = 0; st < F8M_STAGES - 1; st++) {
        int64_t key = (blockIdx.x + st * n_warps) * 16 + (lane & 15);
        if (key < n_ready) {
            mt_prefetch_l2(lane < 16 ? (const void *)(k8 + key * FP8_DIM)
                                     : (const void *)(k_scale + key));
        }
    }
    mt_pdl_wait();
    q8 += (int64_t)blockIdx.y * FP8_HEADS * FP8_DIM;
    w += (int64_t)blockIdx.y * FP8_HEADS;
    out += (int64_t)blockIdx.y * ld;
    n_keys += blockIdx.y;
    n_tiles = (n_keys + 15) / 16;
    fp8_row_tail(out, n_keys, ld, 32);
    for (int st = 0; st < F8M_STAGES - 1; st++) {
        f8m_issue(ring, st, k8, k_scale, n_keys, blockIdx.x + st * n_warps, n_tiles);
    }
    mt_pdl_trigger();

#pragma unroll
    for (int j = 0; j < 8; j++) {
        const uint4 *qr = reinterpret_cast<const uint4 *>(q8 + (8 * j + g) * FP8_DIM) + t;
#pragma unroll
        for (int half = 0; half < 2; half++) {
            uint4 v = __ldg(qr + 4 * half);
            uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int i = 0; i < 4; i++) {
                qh[j][4 * half + i][0] = f8m_cvt(words[i]);
                qh[j][4 * half + i][1] = f8m_cvt(words[i] >> 16);
            }
        }
    }
    int stage = 0;
    for (int64_t tile = blockIdx.x; tile < n_tiles; tile += n_warps) {
        f8m_issue(ring, (stage + F8M_STAGES - 1) % F8M_STAGES, k8, k_scale, n_keys,
                  tile + (F8M_STAGES - 1) * n_warps, n_tiles);
        mt_cp_async_wait<F8M_STAGES - 1>();
        /* pieces: key g at 16t (half 0) and 64 + 16t (half 1), then key g + 8 */
        uint4 p[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            p[i] = ring.piece[stage][i][lane];
        }
        float c[8][4];
#pragma unroll
        for (int j = 0; j < 8; j++) {
            c[j][0] = c[j][1] = c[j][2] = c[j][3] = 0.0f;
        }
#pragma unroll
        for (int half = 0; half < 2; half++) {
            uint32_t lw[4] = {p[half].x, p[half].y, p[half].z, p[half].w};
            uint32_t hw[4] = {p[2 + half].x, p[2 + half].y, p[2 + half].z, p[2 + half].w};
#pragma unroll
            for (int i = 0; i < 4; i++) {
                uint32_t a[4];
                a[0] = f8m_cvt(lw[i]);
                a[1] = f8m_cvt(hw[i]);
                a[2] = f8m_cvt(lw[i] >> 16);
                a[3] = f8m_cvt(hw[i] >> 16);
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    mma_16816(c[j], a, qh[j][4 * half + i][0], qh[j][4 * half + i][1]);
                }
            }
        }
        /* c[j][0..1]: key g, heads 8j + 2t, + 1; c[j][2..3]: key g + 8 (weights L1-cached) */
        float s0 = 0.0f;
        float s1 = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            float w0 = __ldg(w + 8 * j + 2 * t);
            float w1 = __ldg(w + 8 * j + 2 * t + 1);
            s0 += fmaxf(c[j][0], 0.0f) * w0 + fmaxf(c[j][1], 0.0f) * w1;
            s1 += fmaxf(c[j][2], 0.0f) * w0 + fmaxf(c[j][3], 0.0f) * w1;
        }
        s0 += __shfl_xor_sync(0xffffffffu, s0, 1);
        s0 += __shfl_xor_sync(0xffffffffu, s0, 2);
        s1 += __shfl_xor_sync(0xffffffffu, s1, 1);
        s1 += __shfl_xor_sync(0xffffffffu, s1, 2);
        /* the key scales are read by lane 4g alone: it copied them, and a lane's cp.async wait
         * covers only its own copies */
        int64_t key = tile * 16 + g;
        if (t == 0 && key < n_keys) {
            out[key] = s0 * ring.scale[stage][g];
        }
        if (t == 0 && key + 8 < n_keys) {
            out[key + 8] = s1 * ring.scale[stage][g + 8];
        }
        stage = (stage + 1) % F8M_STAGES;
    }
    mt_cp_async_wait<0>();
}

/*
 * The FP8-MMA grid size, or -1 where that kernel cannot run: a device older than sm_89, or a
 * build whose code for it is sm_80 PTX (JIT-compiled, so without the FP8 instruction).
 */
static mt_status_t
f8mma_blocks(int *blocks)
{
    static int cached[64];
    int dev = 0;
    mt_status_t st;

    *blocks = 0;
    if ((st = MT_CUDA(cudaGetDevice(&dev))) != MT_OK) {
        return st;
    }
    if (dev < 0 || dev >= 64) {
        return MT_OK;
    }
    if (cached[dev] == 0) {
        struct cudaFuncAttributes fa;
        int major = 0;
        int minor = 0;
        int sms = 0;
        int per_sm = 0;
        /* ~15 warps an SM by registers want 15 x 8.4 KB of rings: ask for the shared carveout */
        if ((st = MT_CUDA(cudaFuncSetAttribute(index_scores_f8mma_kernel,
                                               cudaFuncAttributePreferredSharedMemoryCarveout,
                                               (int)cudaSharedmemCarveoutMaxShared))) != MT_OK ||
            (st = MT_CUDA(cudaFuncGetAttributes(&fa, index_scores_f8mma_kernel))) != MT_OK ||
            (st = MT_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor,
                                                 dev))) != MT_OK ||
            (st = MT_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor,
                                                 dev))) != MT_OK ||
            (st = MT_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev))) !=
                MT_OK ||
            (st = MT_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                 &per_sm, index_scores_f8mma_kernel, 32, 0))) != MT_OK) {
            return st;
        }
        bool ok = major * 10 + minor >= 89 && fa.ptxVersion >= 89 && per_sm > 0;
        cached[dev] = ok ? sms * per_sm : -1;
    }
    /* MT_INDEXER_F16=1 keeps the portable kernel (to test or measure it on new GPUs; read every
     * call, so a test can switch) */
    *blocks = getenv("MT_INDEXER_F16") == NULL ? cached[dev] : -1;
    return MT_OK;
}

/*
 * The FP8 scores of n_rows queries (row y: the first n_keys + y keys, scores at out + y ld, NaN
 * past them to ld) on the sm_89+ kernel where it runs, else on the portable one. One query: its
 * warps as many as fit the GPU; several: the same warps shared out among the rows, so that each
 * converts its query once for many tiles.
 */
static mt_status_t
fp8_scores_launch(const uint8_t *q8, const float *w, const uint8_t *k8, const float *k_scale,
                  int64_t n_keys, int n_rows, int64_t n_ready, float *out, int64_t ld,
                  cudaStream_t stream)
{
    int dev = 0;
    int sms = 0;
    int f8_blocks = 0;
    mt_status_t st;

    if ((st = f8mma_blocks(&f8_blocks)) != MT_OK) {
        return st;
    }
    int64_t longest = n_keys + n_rows - 1;
    if (f8_blocks > 0) {
        /* as many warps as fit, trimmed so that each gets the same number of tiles (a last
         * round with a few warps would run at a fraction of the bandwidth) */
        int64_t tiles = MT_CEIL_DIV(longest, (int64_t)16);
        int64_t per_warp = MT_CEIL_DIV(tiles, (int64_t)MT_MAX(f8_blocks / n_rows, 1));
        unsigned nb = (unsigned)MT_CEIL_DIV(tiles, per_warp);
        mt_pdl_launch(index_scores_f8mma_kernel, dim3(nb, (unsigned)n_rows), dim3(32), 0, stream,
                      q8, w, k8, k_scale, n_keys, n_ready, out, ld);
        return mt_cuda_launched("index_scores_fp8 (fp8 mma)", stream);
    }
    if ((st = MT_CUDA(cudaGetDevice(&dev))) != MT_OK ||
        (st = MT_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev))) !=
            MT_OK) {
        return st;
    }
    int64_t tiles = MT_CEIL_DIV(longest, (int64_t)FP8_TILE);
    int64_t per_row = MT_MAX((int64_t)MT_MAX(sms, 1) * FP8_BLOCKS_PER_SM / n_rows, (int64_t)1);
    unsigned blocks = (unsigned)MT_MIN(tiles, per_row);
    index_scores_fp8_kernel<<<dim3(blocks, (unsigned)n_rows), FP8_WARPS * 32, 0, stream>>>(
        q8, w, k8, k_scale, n_keys, out, ld);
    return mt_cuda_launched("index_scores_fp8", stream);
}

extern "C" mt_status_t
mt_gpu_index_scores_fp8(const uint8_t *q8, const float *w, int n_heads, int dim,
                        const uint8_t *k8, const float *k_scale, int64_t n_keys, int64_t n_ready,
                        float *out, struct CUstream_st *stream)
{
    if (n_heads != FP8_HEADS || dim != FP8_DIM || n_keys < 1 || q8 == NULL || w == NULL ||
        k8 == NULL || k_scale == NULL || out == NULL || ((uintptr_t)q8 | (uintptr_t)k8) % 16 ||
        n_ready < 0 || n_ready > n_keys) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "gpu fp8 index scores: %d heads x %d dims, %lld keys, %lld ready (needs "
                       "64 x 128, 16-byte aligned, 0 <= ready <= keys)",
                       n_heads, dim, (long long)n_keys, (long long)n_ready);
    }
    return fp8_scores_launch(q8, w, k8, k_scale, n_keys, 1, n_ready, out, n_keys, stream);
}

extern "C" mt_status_t
mt_gpu_index_scores_fp8_rows(const uint8_t *q8, const float *w, int n_heads, int dim,
                             const uint8_t *k8, const float *k_scale, int64_t n_keys0, int n_rows,
                             float *out, int64_t ld, struct CUstream_st *stream)
{
    if (n_heads != FP8_HEADS || dim != FP8_DIM || n_keys0 < 1 || n_rows < 1 || n_rows > 65535 ||
        ld < n_keys0 + n_rows - 1 || q8 == NULL || w == NULL || k8 == NULL || k_scale == NULL ||
        out == NULL || ((uintptr_t)q8 | (uintptr_t)k8) % 16) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "gpu fp8 index scores: %d queries of %d heads x %d dims, %lld keys for the "
                       "first, rows of %lld (needs 64 x 128, 1-65,535 queries, rows as long as the "
                       "last query's keys, 16-byte aligned)",
                       n_rows, n_heads, dim, (long long)n_keys0, (long long)ld);
    }
    return fp8_scores_launch(q8, w, k8, k_scale, n_keys0, n_rows, 0, out, ld, stream);
}
