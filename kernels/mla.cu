/* SPDX-License-Identifier: MIT */
/*
 * mla.cu - sparse MLA decode in absorbed form: 128 heads of one query token attend to the same
 * [latent 512 | k_pe 64] rows of the selected cache positions (spec 2.6, mt_cpu_mla_absorbed);
 * and a prompt chunk's rows, many a launch (mt_gpu_mla_prompt: the small tensor-core kernel on
 * blocks of 32 or 16 heads x 8 warps, mla_block_shape).
 *
 * The one idea: every head reads the same keys and values, so a block takes 16 heads and a split
 * of the positions, stages each chunk of cache rows once in shared memory for all 16 heads, and
 * keeps an online softmax (running max and sum); a second kernel merges the splits
 * (flash-decoding). The cache is BF16 (default) or fp32 (exact mode). The fp32 cache runs on CUDA
 * cores (mla_split_kernel); the BF16 cache on tensor cores (mma.sync, sm_80+), with q and the
 * probabilities split into two bf16 each so that it keeps the fp32 kernel's accuracy: in
 * mla_tc_kernel for rows of more than 1,024 positions where a block may have its ~201 KB of
 * shared memory (sm_90, sm_100), else in mla_tc_small_kernel (~97 KB, any sm_80+; mla_choose).
 * Every kernel here launches with programmatic dependent launch (pdl.cuh), as the kernels
 * around it in a decode step do. bench/results/kernels-h200.md gives them against the floors.
 */
#include <config.h>

#include "kernels/ops.h"
#include "kernels/async_copy.cuh"
#include "kernels/common.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/pdl.cuh" /* the kernels here: mt_pdl_enter() first */

#include <cuda_bf16.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MLA_THREADS 256
#define MLA_HEADS 16       /* heads per block */
#define MLA_RANK 512
#define MLA_ROPE 64
#define MLA_DIM (MLA_RANK + MLA_ROPE)
#define MLA_SPLIT 64       /* positions per block (split) */

/* Positions per shared-memory chunk and the padded row length (odd in 32-bit words). */
template <typename T> struct mla_cfg;
template <> struct mla_cfg<uint16_t> {
    static const int chunk = 32;
    static const int row = MLA_DIM + 2; /* 289 words */
};
template <> struct mla_cfg<float> {
    static const int chunk = 16;
    static const int row = MLA_DIM + 1; /* 577 words */
};

/* Elements c and c + 1 of a shared row. */
static __device__ __forceinline__ float2
load_pair(const uint16_t *p, int c)
{
    return mt_bf16x2_decode(*reinterpret_cast<const uint32_t *>(p + c));
}

static __device__ __forceinline__ float2
load_pair(const float *p, int c)
{
    return make_float2(p[c], p[c + 1]);
}

template <typename T>
static size_t
mla_smem_bytes(void)
{
    return (size_t)MLA_HEADS * MLA_DIM * sizeof(float) +
           (size_t)mla_cfg<T>::chunk * mla_cfg<T>::row * sizeof(T) +
           (size_t)MLA_HEADS * mla_cfg<T>::chunk * sizeof(float) + 3 * MLA_HEADS * sizeof(float);
}

template <typename T>
static __global__ void __launch_bounds__(MLA_THREADS)
mla_split_kernel(const float *__restrict__ q_lat, const float *__restrict__ q_pe,
                 const T *__restrict__ lat, const T *__restrict__ kpe, const int32_t *idx,
                 int n_idx, float scale, int n_heads, float *o_part, float *ml_part)
{
    mt_pdl_enter();
    const int CH = mla_cfg<T>::chunk;
    const int ROW = mla_cfg<T>::row;
    extern __shared__ __align__(16) unsigned char smem[];
    float *qs = (float *)smem;                          /* [16][576] */
    T *kv = (T *)(qs + MLA_HEADS * MLA_DIM);            /* [CH][ROW] */
    float *ps = (float *)(kv + CH * ROW);               /* [16][CH] */
    float *m_s = ps + MLA_HEADS * CH;                   /* running max per head */
    float *l_s = m_s + MLA_HEADS;                       /* running sum per head */
    float *a_s = l_s + MLA_HEADS;                       /* rescale of this chunk */
    int t = threadIdx.x;
    int h0 = blockIdx.x * MLA_HEADS;
    int split = blockIdx.y;
    int p_begin = split * MLA_SPLIT;
    int p_end = min(p_begin + MLA_SPLIT, n_idx);
    float o[MLA_HEADS][2];

    for (int i = t; i < MLA_HEADS * MLA_DIM; i += MLA_THREADS) {
        int h = i / MLA_DIM;
        int c = i % MLA_DIM;
        qs[i] = c < MLA_RANK ? q_lat[(int64_t)(h0 + h) * MLA_RANK + c]
                             : q_pe[(int64_t)(h0 + h) * MLA_ROPE + c - MLA_RANK];
    }
    if (t < MLA_HEADS) {
        m_s[t] = -INFINITY;
        l_s[t] = 0.0f;
    }
#pragma unroll
    for (int h = 0; h < MLA_HEADS; h++) {
        o[h][0] = 0.0f;
        o[h][1] = 0.0f;
    }
    for (int base = p_begin; base < p_end; base += CH) {
        __syncthreads(); /* previous chunk consumed; q and state visible */
        /* stage the chunk: CH rows of [lat | kpe], 32-bit words */
        const int WPR = MLA_DIM * (int)sizeof(T) / 4; /* words per row */
        for (int i = t; i < CH * WPR; i += MLA_THREADS) {
            int s = i / WPR;
            int wd = i % WPR;
            int j = base + s;
            int pos = j < p_end ? (idx != NULL ? idx[j] : j) : -1;
            uint32_t v = 0;
            if (pos >= 0) {
                int lat_words = MLA_RANK * (int)sizeof(T) / 4;
                v = wd < lat_words
                        ? reinterpret_cast<const uint32_t *>(lat + (int64_t)pos * MLA_RANK)[wd]
                        : reinterpret_cast<const uint32_t *>(kpe + (int64_t)pos * MLA_ROPE)
                              [wd - lat_words];
            }
            reinterpret_cast<uint32_t *>(kv + s * ROW)[wd] = v;
        }
        __syncthreads();
        /* scores */
        for (int i = t; i < MLA_HEADS * CH; i += MLA_THREADS) {
            int h = i / CH;
            int s = i % CH;
            int j = base + s;
            bool valid = j < p_end && (idx == NULL || idx[j] >= 0);
            float d = 0.0f;
            if (valid) {
                const float *qh = qs + h * MLA_DIM;
                const T *kr = kv + s * ROW;
                for (int c = 0; c < MLA_DIM; c += 2) {
                    float2 k2 = load_pair(kr, c);
                    d = fmaf(qh[c], k2.x, d);
                    d = fmaf(qh[c + 1], k2.y, d);
                }
            }
            ps[h * CH + s] = valid ? d * scale : -INFINITY;
        }
        __syncthreads();
        /* online softmax: warp w owns heads 2w, 2w + 1 */
        {
            int warp = t / 32;
            int lane = t & 31;
            for (int hh = 0; hh < 2; hh++) {
                int h = 2 * warp + hh;
                float v = lane < CH ? ps[h * CH + lane] : -INFINITY;
                float cmax = mt_warp_max(v);
                float m_old = m_s[h];
                float m_new = fmaxf(m_old, cmax);
                float p = m_new == -INFINITY ? 0.0f : expf(v - m_new);
                float sum = mt_warp_sum(lane < CH ? p : 0.0f);
                if (lane < CH) {
                    ps[h * CH + lane] = p;
                }
                /* every lane has read m_old before lane 0 rewrites it: the shuffles above do
                 * not order shared-memory accesses (compute-sanitizer's racecheck flags it) */
                __syncwarp();
                if (lane == 0) {
                    float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
                    a_s[h] = alpha;
                    l_s[h] = l_s[h] * alpha + sum;
                    m_s[h] = m_new;
                }
            }
        }
        __syncthreads();
        /* o[h][2t..2t+1] = o * alpha + sum_s p[h][s] lat[s][2t..2t+1] */
#pragma unroll
        for (int h = 0; h < MLA_HEADS; h++) {
            o[h][0] *= a_s[h];
            o[h][1] *= a_s[h];
        }
        for (int s = 0; s < CH; s++) {
            float2 v = load_pair(kv + s * ROW, 2 * t);
#pragma unroll
            for (int h = 0; h < MLA_HEADS; h++) {
                float p = ps[h * CH + s];
                o[h][0] = fmaf(p, v.x, o[h][0]);
                o[h][1] = fmaf(p, v.y, o[h][1]);
            }
        }
    }
    __syncthreads();
#pragma unroll
    for (int h = 0; h < MLA_HEADS; h++) {
        float *dst = o_part + ((int64_t)split * n_heads + h0 + h) * MLA_RANK;
        *reinterpret_cast<float2 *>(dst + 2 * t) = make_float2(o[h][0], o[h][1]);
    }
    if (t < MLA_HEADS) {
        ml_part[((int64_t)split * n_heads + h0 + t) * 2] = m_s[t];
        ml_part[((int64_t)split * n_heads + h0 + t) * 2 + 1] = l_s[t];
    }
}

/* The max (is_max) or the sum of v over the block; red: one float a warp of shared memory. */
static __device__ __forceinline__ float
mla_block_reduce(float v, bool is_max, float *red)
{
    int lane = threadIdx.x & 31;
    int warp = threadIdx.x >> 5;
    float r = is_max ? -INFINITY : 0.0f;

    v = is_max ? mt_warp_max(v) : mt_warp_sum(v);
    __syncthreads(); /* red may still be read by an earlier call */
    if (lane == 0) {
        red[warp] = v;
    }
    __syncthreads();
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) {
        r = is_max ? fmaxf(r, red[i]) : r + red[i];
    }
    return r;
}

/*
 * One block per head, one thread per latent column (MLA_RANK threads): merge the splits' (m, l,
 * o). The split statistics are read by all threads at once (a thread a split) and the weights
 * e^(m - M) go through shared memory, so the loop over o_part has no load waiting on another: a
 * version that walked the splits one dependent load at a time took 10 us of the 22 us of the
 * tensor-core MLA (ncu, session 4). Up to 32 splits (2,048 positions at 64 a split: every
 * sparse row), one warp reads the statistics and reduces them with shuffles while every thread
 * has its o_part values already in flight, so the whole merge waits for memory about once.
 */
#define MLA_COMBINE_FAST 32

static __global__ void __launch_bounds__(MLA_RANK)
mla_combine_kernel(const float *o_part, const float *ml_part, int n_splits, int n_heads,
                   float *o_lat)
{
    mt_pdl_enter();
    __shared__ float wgt[MLA_RANK];
    __shared__ float red[MLA_RANK / 32];
    int h = blockIdx.x;
    int c = threadIdx.x;

    if (n_splits <= MLA_COMBINE_FAST) {
        float ov[MLA_COMBINE_FAST];
#pragma unroll
        for (int s = 0; s < MLA_COMBINE_FAST; s++) {
            ov[s] = s < n_splits ? o_part[((int64_t)s * n_heads + h) * MLA_RANK + c] : 0.0f;
        }
        if (c < 32) {
            bool in = c < n_splits;
            float m = in ? ml_part[((int64_t)c * n_heads + h) * 2] : -INFINITY;
            float l = in ? ml_part[((int64_t)c * n_heads + h) * 2 + 1] : 0.0f;
            float M = mt_warp_max(m);
            float e = m == -INFINITY ? 0.0f : expf(m - M);
            float den = mt_warp_sum(e * l);
            wgt[c] = e;
            if (c == 0) {
                red[0] = M == -INFINITY ? 0.0f : den; /* no position at all: zeros, as the CPU */
            }
        }
        __syncthreads();
        float den = red[0];
        float num = 0.0f;
#pragma unroll
        for (int s = 0; s < MLA_COMBINE_FAST; s++) {
            if (s < n_splits) {
                num += wgt[s] * ov[s];
            }
        }
        o_lat[(int64_t)h * MLA_RANK + c] = den > 0.0f ? num / den : 0.0f;
        return;
    }
    float mx = -INFINITY;

    for (int s = c; s < n_splits; s += MLA_RANK) {
        mx = fmaxf(mx, ml_part[((int64_t)s * n_heads + h) * 2]);
    }
    float M = mla_block_reduce(mx, true, red);
    if (M == -INFINITY) { /* no position at all: zeros, as the CPU */
        o_lat[(int64_t)h * MLA_RANK + c] = 0.0f;
        return;
    }
    float dp = 0.0f;
    for (int s = c; s < n_splits; s += MLA_RANK) {
        float m = ml_part[((int64_t)s * n_heads + h) * 2];
        dp += m == -INFINITY ? 0.0f : expf(m - M) * ml_part[((int64_t)s * n_heads + h) * 2 + 1];
    }
    float den = mla_block_reduce(dp, false, red);
    float num = 0.0f;
    for (int base = 0; base < n_splits; base += MLA_RANK) {
        int s = base + c;
        float m = s < n_splits ? ml_part[((int64_t)s * n_heads + h) * 2] : -INFINITY;
        wgt[c] = m == -INFINITY ? 0.0f : expf(m - M);
        __syncthreads();
        int cnt = min(MLA_RANK, n_splits - base);
        const float *op = o_part + ((int64_t)base * n_heads + h) * MLA_RANK + c;
#pragma unroll 8
        for (int i = 0; i < cnt; i++) {
            num += wgt[i] * op[(int64_t)i * n_heads * MLA_RANK];
        }
        __syncthreads(); /* wgt is rewritten by the next tile */
    }
    o_lat[(int64_t)h * MLA_RANK + c] = den > 0.0f ? num / den : 0.0f;
}

/* ---- BF16 cache on tensor cores ------------------------------------------------------------ */

/*
 * The kernel above does 0.57 GFLOP on CUDA cores with a shared-memory load for every two FMAs
 * (62 us for 128 heads x 2048 positions, ~100x the byte floor). Here both products run as
 * mma.sync m16n8k16 (bf16 in, fp32 accumulate, sm_80+): a block takes 16 heads (the M of the
 * MMA) and a split of 128 positions in two chunks of 64, staged with cp.async into shared memory
 * once for the 16 heads. Two groups of 4 warps take one chunk each, at the same time:
 *   scores: S[16 heads x 64 positions] = Q . K^T over 576 dims; warp w takes positions 16w..+15.
 *   softmax: as above (warp w: heads 4w..4w+3), P written back as bf16.
 *   values: O[16 x 512] = P . V; warp w owns the columns 128w..+127 (64 accumulators a lane).
 * then the second group's (m, l, O) is merged into the first's through shared memory, and the
 * splits by mla_combine_kernel as before.
 * Exactness: the cache values are bf16 already, so only the fp32 operands need care. q and P are
 * each split into two bf16 (hi = bf16(x), lo = bf16(x - hi): x - hi - lo is below 2^-17 |x|) and
 * both halves go through the MMA, so the products are those of fp32 inputs to ~2^-17 and the sums
 * are fp32; the test's bound (1e-4 relative, as for the kernel above) holds with a wide margin.
 */
#define TC_GROUP 4                     /* warps a chunk */
#define TC_THREADS (2 * TC_GROUP * 32) /* two chunks at once */
#define TC_CHUNK 64                    /* positions a chunk: 16 a warp in the scores */
#define TC_SPLIT (2 * TC_CHUNK)        /* positions a block */
#define TC_ROWB (MLA_DIM * 2 + 16)     /* bytes a staged row: 73 16-byte units (odd: ldmatrix
                                          rows fall in distinct banks) */
#define TC_PROWB ((TC_CHUNK + 8) * 2)  /* bytes a row of P (bf16): 9 16-byte units */

struct tc_smem {
    uint8_t kv[2][TC_CHUNK * TC_ROWB]; /* [lat 512 | k_pe 64] bf16 rows, a chunk a group */
    uint8_t q[2][MLA_HEADS * TC_ROWB]; /* hi, lo */
    uint8_t p[2][2][MLA_HEADS * TC_PROWB]; /* [group][hi, lo] */
    float s[2][MLA_HEADS][TC_CHUNK + 4];
    float m[2][MLA_HEADS];
    float l[2][MLA_HEADS];
    int pos[2][TC_CHUNK]; /* the cache row of each staged position, -1: none */
};

/* The second group's O, handed to the first in the space of its consumed chunk. */
static_assert(MLA_HEADS * MLA_RANK * sizeof(float) <= TC_CHUNK * TC_ROWB, "merge buffer");

static __device__ __forceinline__ void
tc_ldsm4(uint32_t (&r)[4], const void *p)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

static __device__ __forceinline__ void
tc_ldsm4_t(uint32_t (&r)[4], const void *p)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

static __device__ __forceinline__ void
tc_mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* x as bf16 hi + lo (round to nearest even both times). */
static __device__ __forceinline__ void
tc_split(float x, __nv_bfloat16 *hi, __nv_bfloat16 *lo)
{
    *hi = __float2bfloat16_rn(x);
    *lo = __float2bfloat16_rn(x - __bfloat162float(*hi));
}

/*
 * O += P V for this warp's 16 NJ columns of O from col0 (n-tile j: columns col0 + 8j + 2t, + 1;
 * heads g in o[j][0..1], g + 8 in o[j][2..3]): P [16 heads x 16 KS positions] as bf16 hi and lo
 * rows of prowb bytes, V the chunk's latent rows in kv (rows of TC_ROWB bytes), read transposed.
 */
template <int KS, int NJ = 8>
static __device__ __forceinline__ void
tc_pv(float (&o)[2 * NJ][4], const uint8_t *p_hi, const uint8_t *p_lo, int prowb,
      const uint8_t *kv, int col0, int lane)
{
    /* ldmatrix row addresses: A (16 rows x 16 k): rows lane % 16, k + 8 (lane / 16); B from [k][n]
     * rows, transposed: k ((lane / 8) % 2) * 8 + lane % 8, n + 8 (lane / 16) */
    int a_row = lane & 15;
    int a_k = 8 * (lane >> 4);
    int bv_k = 8 * ((lane >> 3) & 1) + (lane & 7);
    int bv_n = 8 * (lane >> 4);

#pragma unroll
    for (int ks = 0; ks < KS; ks++) {
        uint32_t ph[4];
        uint32_t pl[4];
        tc_ldsm4(ph, p_hi + a_row * prowb + (16 * ks + a_k) * 2);
        tc_ldsm4(pl, p_lo + a_row * prowb + (16 * ks + a_k) * 2);
#pragma unroll
        for (int jj = 0; jj < NJ; jj++) {
            uint32_t b[4];
            tc_ldsm4_t(b, kv + (16 * ks + bv_k) * TC_ROWB + (col0 + 16 * jj + bv_n) * 2);
            tc_mma(o[2 * jj], ph, b[0], b[1]);
            tc_mma(o[2 * jj], pl, b[0], b[1]);
            tc_mma(o[2 * jj + 1], ph, b[2], b[3]);
            tc_mma(o[2 * jj + 1], pl, b[2], b[3]);
        }
    }
}

/*
 * Stage this group's chunk (rows from sm.pos[grp], zeros where it is -1); gt is the thread's
 * index in its group. The positions are read once into shared memory first: a copy loop that
 * read idx itself waited for L2 on every iteration (the copies are volatile asm, nothing was
 * hoisted).
 */
static __device__ __forceinline__ void
tc_stage(struct tc_smem &sm, int grp, int gt, const uint16_t *__restrict__ lat,
         const uint16_t *__restrict__ kpe)
{
    const int PIECES = MLA_DIM * 2 / 16; /* 72: 64 of the latent, 8 of k_pe */
    for (int i = gt; i < TC_CHUNK * PIECES; i += TC_GROUP * 32) {
        int s = i / PIECES;
        int pc = i % PIECES;
        int pos = sm.pos[grp][s];
        const uint16_t *src = pc < 64 ? lat + (int64_t)MT_MAX(pos, 0) * MLA_RANK + 8 * pc
                                      : kpe + (int64_t)MT_MAX(pos, 0) * MLA_ROPE + 8 * (pc - 64);
        mt_cp_async16(sm.kv[grp] + s * TC_ROWB + 16 * pc, src, pos >= 0);
    }
    mt_cp_async_commit();
}

static __global__ void __launch_bounds__(TC_THREADS)
mla_tc_kernel(const float *__restrict__ q_lat, const float *__restrict__ q_pe,
              const uint16_t *__restrict__ lat, const uint16_t *__restrict__ kpe,
              const int32_t *idx, int n_idx, float scale, int n_heads, float *o_part,
              float *ml_part)
{
    mt_pdl_enter();
    extern __shared__ __align__(16) unsigned char tc_raw[];
    struct tc_smem &sm = *reinterpret_cast<struct tc_smem *>(tc_raw);
    int grp = threadIdx.x / (TC_GROUP * 32);
    int gt = threadIdx.x % (TC_GROUP * 32);
    int warp = gt / 32; /* within the group */
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int t = lane & 3;
    int h0 = blockIdx.x * MLA_HEADS;
    int split = blockIdx.y;
    int p_begin = split * TC_SPLIT;
    int p_end = min(p_begin + TC_SPLIT, n_idx);

    if (threadIdx.x < TC_SPLIT) {
        int j = p_begin + threadIdx.x;
        sm.pos[threadIdx.x / TC_CHUNK][threadIdx.x % TC_CHUNK] =
            j < p_end ? (idx != NULL ? idx[j] : j) : -1;
    }
    if (threadIdx.x < 2 * MLA_HEADS) {
        sm.m[threadIdx.x / MLA_HEADS][threadIdx.x % MLA_HEADS] = -INFINITY;
        sm.l[threadIdx.x / MLA_HEADS][threadIdx.x % MLA_HEADS] = 0.0f;
    }
    __syncthreads();
    tc_stage(sm, grp, gt, lat, kpe);
    /* q: 9 float4 loads a thread, all in flight before the first is used */
    const int Q4 = MLA_HEADS * MLA_DIM / 4 / TC_THREADS;
    float4 qv[Q4];
#pragma unroll
    for (int it = 0; it < Q4; it++) {
        int i4 = threadIdx.x + it * TC_THREADS;
        int h = i4 / (MLA_DIM / 4);
        int c = 4 * (i4 % (MLA_DIM / 4));
        qv[it] = c < MLA_RANK ? __ldg(reinterpret_cast<const float4 *>(
                                    q_lat + (int64_t)(h0 + h) * MLA_RANK + c))
                              : __ldg(reinterpret_cast<const float4 *>(
                                    q_pe + (int64_t)(h0 + h) * MLA_ROPE + c - MLA_RANK));
    }
#pragma unroll
    for (int it = 0; it < Q4; it++) {
        int i4 = threadIdx.x + it * TC_THREADS;
        int h = i4 / (MLA_DIM / 4);
        int c = 4 * (i4 % (MLA_DIM / 4));
        float x[4] = {qv[it].x, qv[it].y, qv[it].z, qv[it].w};
#pragma unroll
        for (int e = 0; e < 4; e++) {
            __nv_bfloat16 hi;
            __nv_bfloat16 lo;
            tc_split(x[e], &hi, &lo);
            reinterpret_cast<__nv_bfloat16 *>(sm.q[0] + h * TC_ROWB)[c + e] = hi;
            reinterpret_cast<__nv_bfloat16 *>(sm.q[1] + h * TC_ROWB)[c + e] = lo;
        }
    }
    /* ldmatrix row addresses of this lane: A (16 rows x 16 k): rows lane % 16, k + 8 (lane / 16);
     * B from [n][k] rows (scores): n (lane / 16) * 8 + lane % 8, k + 8 ((lane / 8) % 2); the
     * values' in tc_pv */
    int a_row = lane & 15;
    int a_k = 8 * (lane >> 4);
    int bs_n = 8 * (lane >> 4) + (lane & 7);
    int bs_k = 8 * ((lane >> 3) & 1);
    const uint8_t *kv = sm.kv[grp];

    mt_cp_async_wait<0>();
    __syncthreads(); /* both chunks and q are visible */

    /* scores of positions 16 warp + 8 jn + ... against the 16 heads: [n-tile][hi, lo][k-step
     * parity], 8 independent chains of 18 MMAs */
    float acc[2][2][2][4] = {};
#pragma unroll 4
    for (int ks = 0; ks < MLA_DIM / 16; ks++) {
        uint32_t ah[4];
        uint32_t al[4];
        uint32_t b[4];
        int par = ks & 1;
        tc_ldsm4(ah, sm.q[0] + a_row * TC_ROWB + (16 * ks + a_k) * 2);
        tc_ldsm4(al, sm.q[1] + a_row * TC_ROWB + (16 * ks + a_k) * 2);
        tc_ldsm4(b, kv + (16 * warp + bs_n) * TC_ROWB + (16 * ks + bs_k) * 2);
        tc_mma(acc[0][0][par], ah, b[0], b[1]);
        tc_mma(acc[0][1][par], al, b[0], b[1]);
        tc_mma(acc[1][0][par], ah, b[2], b[3]);
        tc_mma(acc[1][1][par], al, b[2], b[3]);
    }
#pragma unroll
    for (int jn = 0; jn < 2; jn++) {
#pragma unroll
        for (int r = 0; r < 4; r++) {
            float v = (acc[jn][0][0][r] + acc[jn][0][1][r]) + (acc[jn][1][0][r] + acc[jn][1][1][r]);
            int h = g + 8 * (r >> 1);
            int s = 16 * warp + 8 * jn + 2 * t + (r & 1);
            sm.s[grp][h][s] = sm.pos[grp][s] >= 0 ? v * scale : -INFINITY;
        }
    }
    __syncthreads();
    /* softmax of the chunk: warp w owns heads 4w..4w+3, a lane positions lane and lane + 32 */
#pragma unroll
    for (int hh = 0; hh < 4; hh++) {
        int h = 4 * warp + hh;
        float v0 = sm.s[grp][h][lane];
        float v1 = sm.s[grp][h][lane + 32];
        float mx = mt_warp_max(fmaxf(v0, v1));
        float p0 = mx == -INFINITY ? 0.0f : expf(v0 - mx);
        float p1 = mx == -INFINITY ? 0.0f : expf(v1 - mx);
        float sum = mt_warp_sum(p0 + p1);
        __nv_bfloat16 hi;
        __nv_bfloat16 lo;
        tc_split(p0, &hi, &lo);
        reinterpret_cast<__nv_bfloat16 *>(sm.p[grp][0] + h * TC_PROWB)[lane] = hi;
        reinterpret_cast<__nv_bfloat16 *>(sm.p[grp][1] + h * TC_PROWB)[lane] = lo;
        tc_split(p1, &hi, &lo);
        reinterpret_cast<__nv_bfloat16 *>(sm.p[grp][0] + h * TC_PROWB)[lane + 32] = hi;
        reinterpret_cast<__nv_bfloat16 *>(sm.p[grp][1] + h * TC_PROWB)[lane + 32] = lo;
        if (lane == 0) {
            sm.m[grp][h] = mx;
            sm.l[grp][h] = sum;
        }
    }
    __syncthreads();
    float o[16][4] = {}; /* n-tile j: columns 128 warp + 8j + 2t, + 1; heads g (0, 1), g + 8 */
    tc_pv<TC_CHUNK / 16>(o, sm.p[grp][0], sm.p[grp][1], TC_PROWB, kv, 128 * warp, lane);
    /* merge: each group's O scaled to the common max, the second's through shared memory */
    float m0a = sm.m[0][g];
    float m0b = sm.m[0][g + 8];
    float m1a = sm.m[1][g];
    float m1b = sm.m[1][g + 8];
    float ma = fmaxf(m0a, m1a);
    float mb = fmaxf(m0b, m1b);
    float ea = sm.m[grp][g] == -INFINITY ? 0.0f : expf(sm.m[grp][g] - ma);
    float eb = sm.m[grp][g + 8] == -INFINITY ? 0.0f : expf(sm.m[grp][g + 8] - mb);
    __syncthreads(); /* every warp is done with both chunks */
    float *o1 = reinterpret_cast<float *>(sm.kv[1]); /* [16][512] */
    if (grp == 1) {
#pragma unroll
        for (int j = 0; j < 16; j++) {
            int col = 128 * warp + 8 * j + 2 * t;
            *reinterpret_cast<float2 *>(o1 + g * MLA_RANK + col) =
                make_float2(o[j][0] * ea, o[j][1] * ea);
            *reinterpret_cast<float2 *>(o1 + (g + 8) * MLA_RANK + col) =
                make_float2(o[j][2] * eb, o[j][3] * eb);
        }
    }
    __syncthreads();
    if (grp == 0) {
#pragma unroll
        for (int j = 0; j < 16; j++) {
            int col = 128 * warp + 8 * j + 2 * t;
            float2 u = *reinterpret_cast<const float2 *>(o1 + g * MLA_RANK + col);
            float2 v = *reinterpret_cast<const float2 *>(o1 + (g + 8) * MLA_RANK + col);
            float *d0 = o_part + ((int64_t)split * n_heads + h0 + g) * MLA_RANK + col;
            float *d1 = o_part + ((int64_t)split * n_heads + h0 + g + 8) * MLA_RANK + col;
            *reinterpret_cast<float2 *>(d0) = make_float2(o[j][0] * ea + u.x, o[j][1] * ea + u.y);
            *reinterpret_cast<float2 *>(d1) = make_float2(o[j][2] * eb + v.x, o[j][3] * eb + v.y);
        }
    }
    if (threadIdx.x < MLA_HEADS) {
        int h = threadIdx.x;
        float m = fmaxf(sm.m[0][h], sm.m[1][h]);
        float l = 0.0f;
        for (int c = 0; c < 2; c++) {
            l += sm.m[c][h] == -INFINITY ? 0.0f : sm.l[c][h] * expf(sm.m[c][h] - m);
        }
        ml_part[((int64_t)split * n_heads + h0 + h) * 2] = m;
        ml_part[((int64_t)split * n_heads + h0 + h) * 2 + 1] = l;
    }
}

/* ---- BF16 cache on tensor cores in less shared memory ------------------------------------- */

/*
 * The kernel above needs ~201 KB of shared memory a block, which only sm_90 and sm_100 give:
 * sm_80 (163 KB) and the RTX cards, sm_86/89/120 (99 KB), ran a BF16 cache on the CUDA-core
 * kernel, 3x slower on the H200. This one keeps the same products and exactness (q and P split
 * into bf16 hi + lo, fp32 sums) in 87-120 KB. On its first block shape, 16 heads x 4 warps
 * (mla_tc_small_kernel's comment says how 8 warps a tile and two tiles a block share the work):
 *   - one group of 4 warps walks its split's positions in chunks of 32 (double-buffered with
 *     cp.async: the next chunk is staged while this one is used) with an online softmax: the
 *     running max m and sum l per head, O rescaled by exp(m_old - m_new) before each chunk's
 *     values are added (flash-decoding within the block, mla_combine_kernel across blocks);
 *   - q is not staged: warp w holds the A fragments (hi and lo) of its own 9 of the scores' 36
 *     k-steps in registers for the whole kernel, computes partial scores of all 32 positions over
 *     them, and the 4 partials meet in shared memory, added in warp order before the softmax;
 *   - values as above: warp w owns O's columns 128w..+127 for the 16 heads.
 * Positions a block: 64, 128 or 256 (2, 4 or 8 chunks), the fewest that keep the grid to one
 * wave, so that short rows still fill the GPU and long ones do not multiply the splits to merge.
 */
#define TS_CHUNK 32                         /* positions a chunk */
#define TS_MAX_CHUNKS 8                     /* chunks a block at most */
#define TS_KSTEPS (MLA_DIM / 16 / 4)        /* 9: the scores' k-steps a warp of a 4-warp tile */
#define TS_PROWB ((TS_CHUNK + 8) * 2)       /* bytes a row of P: 5 16-byte units (odd) */
#define TS_SROW (TS_CHUNK + 8)              /* floats a row of partial scores: 8 banks apart,
                                               so a half-warp's float2 stores to 4 rows hit
                                               each of the 32 banks once */

/* HT 16-head tiles a block, KW warps a tile (mla_block_shape) */
template <int HT, int KW> struct ts_smem {
    uint8_t kv[2][TS_CHUNK * TC_ROWB];       /* [lat 512 | k_pe 64] bf16 rows, two chunks */
    float s[KW][HT * MLA_HEADS][TS_SROW];    /* each k-part's partial scores of the chunk */
    uint8_t p[2][HT * MLA_HEADS * TS_PROWB]; /* P of the chunk: hi, lo */
    float m[HT * MLA_HEADS];                 /* running max */
    float l[HT * MLA_HEADS];                 /* running sum */
    float alpha[HT * MLA_HEADS];             /* this chunk's rescale of O */
    int pos[TS_MAX_CHUNKS * TS_CHUNK];       /* the cache row of each position, -1: none */
};

/* Stage the chunk whose positions are at sm.pos + pb into buffer b (zeros where one is -1). */
template <int HT, int KW>
static __device__ __forceinline__ void
ts_stage(struct ts_smem<HT, KW> &sm, int b, int pb, const uint16_t *__restrict__ lat,
         const uint16_t *__restrict__ kpe)
{
    const int PIECES = MLA_DIM * 2 / 16; /* 72: 64 of the latent, 8 of k_pe */
    for (int i = threadIdx.x; i < TS_CHUNK * PIECES; i += HT * KW * 32) {
        int s = i / PIECES;
        int pc = i % PIECES;
        int pos = sm.pos[pb + s];
        const uint16_t *src = pc < 64 ? lat + (int64_t)MT_MAX(pos, 0) * MLA_RANK + 8 * pc
                                      : kpe + (int64_t)MT_MAX(pos, 0) * MLA_ROPE + 8 * (pc - 64);
        mt_cp_async16(sm.kv[b] + s * TC_ROWB + 16 * pc, src, pos >= 0);
    }
    mt_cp_async_commit();
}

/* (x, y) as a bf16x2 hi and the bf16x2 of what hi misses (lo), x in the low half. */
static __device__ __forceinline__ void
ts_split2(float x, float y, uint32_t &hi, uint32_t &lo)
{
    __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    __nv_bfloat162 l = __floats2bfloat162_rn(x - __low2float(h), y - __high2float(h));

    hi = *reinterpret_cast<uint32_t *>(&h);
    lo = *reinterpret_cast<uint32_t *>(&l);
}

/*
 * PROMPT: a prompt's rows (mt_gpu_mla_prompt), one a blockIdx.z, each block walking all of its
 * row's positions (any number of chunks) and writing o_lat itself (o / l: what the merge makes of
 * a single split); the positions are then kept two chunks at a time (slot c % 2 of sm.pos), the
 * one after next loaded into a register a chunk ahead so that no warp waits for it. ld_idx and
 * n_first as mt_gpu_mla_prompt's; o_part is o_lat there and ml_part unused.
 *
 * HT 16-head tiles a block share each staged chunk, KW warps a tile (mla_block_shape: decode
 * 16 x 8, a prompt's rows 32 x 8 where they fit): warp w takes head tile w / KW; its k-part
 * kq = w % KW computes partial scores over k-steps 9 kq..+8 (KW = 4) or over the latent's
 * 4 kq..+3 and, for kq < 4, the rope's 32 + kq (KW = 8), and O's columns 512 / KW kq..+(512 /
 * KW - 1). Why 8 warps a tile: the kernel waits on latencies, not on L2 (Nsight Compute on the
 * H200 at 1 x 4: 8 warps an SM, tensor pipe 25%, L2 37%), and with half the query and O a warp
 * (128 registers) twice the warps fit an SM; two tiles a block halve the bytes staged a head.
 */
template <bool PROMPT, int HT, int KW>
static __global__ void __launch_bounds__(HT * KW * 32, KW == 8 && HT == 1 ? 2 : 1)
mla_tc_small_kernel(const float *__restrict__ q_lat, const float *__restrict__ q_pe,
                    const uint16_t *__restrict__ lat, const uint16_t *__restrict__ kpe,
                    const int32_t *idx, int n_idx, float scale, int n_heads, int chunks,
                    float *o_part, float *ml_part, int64_t ld_idx, int n_first)
{
    mt_pdl_enter();
    extern __shared__ __align__(16) unsigned char ts_raw[];
    struct ts_smem<HT, KW> &sm = *reinterpret_cast<struct ts_smem<HT, KW> *>(ts_raw);
    const int HEADS = HT * MLA_HEADS;        /* a block's */
    const int THREADS = HT * KW * 32;
    const int KSW = KW == 4 ? TS_KSTEPS : 5; /* k-steps a warp at most */
    const int NT = MLA_RANK / KW / 8;        /* O's n-tiles (8 columns) a warp */
    const int HPW = MLA_HEADS / KW;          /* heads a warp in the softmax */
    int warp = threadIdx.x >> 5;
    int kq = warp % KW; /* the scores' k-part and O's column part of this warp */
    int ht = warp / KW; /* its head tile: heads 16 ht .. 16 ht + 15 of the block's */
    int col0 = MLA_RANK / KW * kq; /* its first column of O */
    /* the k-step of this warp's i-th (KW = 8: the rope's last four to warps 0-3) */
    auto kstep = [&](int i) { return KW == 4 ? TS_KSTEPS * kq + i : i < 4 ? 4 * kq + i : 32 + kq; };
    bool last_step = KW == 4 || kq < 4; /* whether it has KSW of them */
    int lane = threadIdx.x & 31;
    int g = lane >> 2;
    int t = lane & 3;
    int h0 = blockIdx.x * HEADS;
    int hw = h0 + MLA_HEADS * ht; /* this warp's first head */
    int split = blockIdx.y;
    int p_begin = split * chunks * TS_CHUNK;
    int p_end = min(p_begin + chunks * TS_CHUNK, n_idx);

    if constexpr (PROMPT) {
        int64_t r = blockIdx.z;
        q_lat += r * n_heads * MLA_RANK;
        q_pe += r * n_heads * MLA_ROPE;
        o_part += r * n_heads * MLA_RANK;
        if (idx != NULL) {
            idx += r * ld_idx;
        } else {
            n_idx = n_first + (int)r;
        }
        p_begin = 0;
        p_end = n_idx;
    }
    int n_ch = (p_end - p_begin + TS_CHUNK - 1) / TS_CHUNK;
    /* position j of the block's (j < p_end - p_begin), -1 past the end */
    auto pos_of = [&](int j) { return j < p_end - p_begin ? (idx != NULL ? idx[p_begin + j]
                                                                         : p_begin + j)
                                                          : -1; };
    /* where chunk c's positions are in sm.pos */
    auto slot = [](int c) { return PROMPT ? (c & 1) * TS_CHUNK : c * TS_CHUNK; };
    int ahead = -1; /* PROMPT, threads < TS_CHUNK: a position of chunk 2, then of the next */

    for (int i = threadIdx.x; i < (PROMPT ? min(n_ch, 2) : n_ch) * TS_CHUNK; i += THREADS) {
        sm.pos[i] = pos_of(i);
    }
    if (PROMPT && threadIdx.x < TS_CHUNK) {
        ahead = pos_of(2 * TS_CHUNK + threadIdx.x);
    }
    if (threadIdx.x < HEADS) {
        sm.m[threadIdx.x] = -INFINITY;
        sm.l[threadIdx.x] = 0.0f;
    }
    __syncthreads();
    ts_stage(sm, 0, slot(0), lat, kpe);

    /* A fragments of this warp's k-steps: a0 (head g, k 2t, 2t + 1), a1 (head g + 8), a2 and
     * a3 the same at k + 8; read while the first chunk is in flight */
    uint32_t qh[KSW][4];
    uint32_t ql[KSW][4];
#pragma unroll
    for (int i = 0; i < KSW; i++) {
#pragma unroll
        for (int r = 0; r < 4; r++) {
            int h = hw + g + 8 * (r & 1);
            /* a warp without a fifth k-step loads step 0's there (never used) */
            int col = 16 * (i < KSW - 1 || last_step ? kstep(i) : 0) + 2 * t + 8 * (r >> 1);
            const float *src = col < MLA_RANK ? q_lat + (int64_t)h * MLA_RANK + col
                                              : q_pe + (int64_t)h * MLA_ROPE + col - MLA_RANK;
            float2 v = __ldg(reinterpret_cast<const float2 *>(src));
            ts_split2(v.x, v.y, qh[i][r], ql[i][r]);
        }
    }
    /* ldmatrix row addresses of the scores' B, as in mla_tc_kernel */
    int bs_n = 8 * (lane >> 4) + (lane & 7);
    int bs_k = 8 * ((lane >> 3) & 1);
    float o[NT][4] = {}; /* n-tile j: columns col0 + 8j + 2t, + 1; heads g (0, 1), g + 8 */

    for (int c = 0; c < n_ch; c++) {
        const uint8_t *kv = sm.kv[c & 1];
        mt_cp_async_wait<0>();
        __syncthreads(); /* chunk c is visible; every warp is done with chunk c - 1 */
        if (c + 1 < n_ch) {
            ts_stage(sm, (c + 1) & 1, slot(c + 1), lat, kpe);
        }
        /* partial scores: 32 positions (n-tiles of 8) x 16 heads over this warp's k-steps;
         * hi and lo into one accumulator: a second set made the 8-warp tiles spill (this and the
         * float2 stores below: 1.02-1.05x, bench/results/kernels-h200.md session 34) */
        float acc[4][4] = {};
#pragma unroll
        for (int i = 0; i < KSW; i++) {
            if (i == KSW - 1 && !last_step) {
                break;
            }
            int ks = kstep(i);
#pragma unroll
            for (int half = 0; half < 2; half++) {
                uint32_t b[4];
                tc_ldsm4(b, kv + (16 * half + bs_n) * TC_ROWB + (16 * ks + bs_k) * 2);
                tc_mma(acc[2 * half], qh[i], b[0], b[1]);
                tc_mma(acc[2 * half], ql[i], b[0], b[1]);
                tc_mma(acc[2 * half + 1], qh[i], b[2], b[3]);
                tc_mma(acc[2 * half + 1], ql[i], b[2], b[3]);
            }
        }
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
#pragma unroll
            for (int rh = 0; rh < 2; rh++) { /* heads g and g + 8: positions 2t, 2t + 1 */
                float *dst = &sm.s[kq][MLA_HEADS * ht + g + 8 * rh][8 * nt + 2 * t];
                float2 v = make_float2(acc[nt][2 * rh], acc[nt][2 * rh + 1]);
                *reinterpret_cast<float2 *>(dst) = v;
            }
        }
        __syncthreads();
        /* online softmax: warp w owns the block's heads HPW w..+(HPW - 1), a lane one position */
#pragma unroll
        for (int hh = 0; hh < HPW; hh++) {
            int h = HPW * warp + hh;
            float v = (sm.s[0][h][lane] + sm.s[1][h][lane]) + (sm.s[2][h][lane] + sm.s[3][h][lane]);
            if constexpr (KW == 8) {
                v += (sm.s[4][h][lane] + sm.s[5][h][lane]) + (sm.s[6][h][lane] + sm.s[7][h][lane]);
            }
            v = sm.pos[slot(c) + lane] >= 0 ? v * scale : -INFINITY;
            float m_old = sm.m[h];
            float mx = fmaxf(m_old, mt_warp_max(v));
            float pv = mx == -INFINITY ? 0.0f : expf(v - mx);
            float sum = mt_warp_sum(pv);
            __nv_bfloat16 hi;
            __nv_bfloat16 lo;
            tc_split(pv, &hi, &lo);
            reinterpret_cast<__nv_bfloat16 *>(sm.p[0] + h * TS_PROWB)[lane] = hi;
            reinterpret_cast<__nv_bfloat16 *>(sm.p[1] + h * TS_PROWB)[lane] = lo;
            __syncwarp(); /* every lane has read m_old before lane 0 rewrites it (as in
                           * mla_split_kernel: the shuffles do not order shared memory) */
            if (lane == 0) {
                float a = m_old == -INFINITY ? 0.0f : expf(m_old - mx);
                sm.alpha[h] = a;
                sm.l[h] = sm.l[h] * a + sum;
                sm.m[h] = mx;
            }
        }
        __syncthreads();
        if (PROMPT && threadIdx.x < TS_CHUNK && c + 2 < n_ch) {
            /* chunk c's slot is free now: chunk c + 2's positions, staged after the next barrier */
            sm.pos[slot(c) + threadIdx.x] = ahead;
            ahead = pos_of((c + 3) * TS_CHUNK + threadIdx.x);
        }
        float ag = sm.alpha[MLA_HEADS * ht + g];
        float ag8 = sm.alpha[MLA_HEADS * ht + g + 8];
#pragma unroll
        for (int j = 0; j < NT; j++) {
            o[j][0] *= ag;
            o[j][1] *= ag;
            o[j][2] *= ag8;
            o[j][3] *= ag8;
        }
        tc_pv<TS_CHUNK / 16, NT / 2>(o, sm.p[0] + MLA_HEADS * ht * TS_PROWB,
                                     sm.p[1] + MLA_HEADS * ht * TS_PROWB, TS_PROWB, kv, col0,
                                     lane);
    }
    if constexpr (PROMPT) { /* o / l, as the merge divides a single split's (l: last barrier) */
        float la = sm.l[MLA_HEADS * ht + g];
        float lb = sm.l[MLA_HEADS * ht + g + 8];
#pragma unroll
        for (int j = 0; j < NT; j++) {
            int col = col0 + 8 * j + 2 * t;
            float *d0 = o_part + (int64_t)(hw + g) * MLA_RANK + col;
            float *d1 = o_part + (int64_t)(hw + g + 8) * MLA_RANK + col;
            *reinterpret_cast<float2 *>(d0) = la > 0.0f ? make_float2(o[j][0] / la, o[j][1] / la)
                                                        : make_float2(0.0f, 0.0f);
            *reinterpret_cast<float2 *>(d1) = lb > 0.0f ? make_float2(o[j][2] / lb, o[j][3] / lb)
                                                        : make_float2(0.0f, 0.0f);
        }
    } else {
#pragma unroll
        for (int j = 0; j < NT; j++) {
            int col = col0 + 8 * j + 2 * t;
            float *d0 = o_part + ((int64_t)split * n_heads + hw + g) * MLA_RANK + col;
            float *d1 = o_part + ((int64_t)split * n_heads + hw + g + 8) * MLA_RANK + col;
            *reinterpret_cast<float2 *>(d0) = make_float2(o[j][0], o[j][1]);
            *reinterpret_cast<float2 *>(d1) = make_float2(o[j][2], o[j][3]);
        }
        if (threadIdx.x < HEADS) { /* m and l of the last chunk: visible since its barrier */
            ml_part[((int64_t)split * n_heads + h0 + threadIdx.x) * 2] = sm.m[threadIdx.x];
            ml_part[((int64_t)split * n_heads + h0 + threadIdx.x) * 2 + 1] = sm.l[threadIdx.x];
        }
    }
}

/* Splits of one chunk (TS_CHUNK positions) that the small tensor-core kernel may use on rows of
 * up to this many chunks (mla_tc_small_launch); longer rows take splits of MLA_SPLIT or more. */
#define TS_ONE_CHUNK_MAX 16 /* H200: 128 and 512 positions 9.2 / 10.4 us against 12.0 / 12.5 with
                               two chunks a block; 1,024 positions 14.6 against 13.4 */

extern "C" size_t
mt_gpu_mla_work_bytes(int n_heads, int n_idx)
{
    size_t splits = (size_t)MT_MAX(MT_CEIL_DIV(n_idx, MLA_SPLIT), 1);
    splits = MT_MAX(splits, (size_t)MT_MIN(MT_CEIL_DIV(n_idx, TS_CHUNK), TS_ONE_CHUNK_MAX));

    return splits * (size_t)n_heads * (MLA_RANK + 2) * sizeof(float);
}

/* The second launch of every MLA kernel: merge its splits' (m, l, o) into o_lat. */
static mt_status_t
mla_merge(const float *o_part, const float *ml_part, int splits, int n_heads, float *o_lat,
          cudaStream_t s)
{
    mt_pdl_launch(mla_combine_kernel, dim3(n_heads), dim3(MLA_RANK), 0, s, o_part, ml_part, splits,
                  n_heads, o_lat);
    return mt_cuda_launched("mla_combine", s);
}

template <typename T>
static mt_status_t
mla_launch(const float *q_lat, const float *q_pe, int n_heads, const void *lat, const void *kpe,
           const int32_t *idx, int n_idx, float scale, void *work, float *o_lat, cudaStream_t s)
{
    static bool attr_set[64];
    size_t smem = mla_smem_bytes<T>();
    int splits = MT_MAX(MT_CEIL_DIV(n_idx, MLA_SPLIT), 1);
    float *o_part = (float *)work;
    float *ml_part = o_part + (size_t)splits * n_heads * MLA_RANK;
    mt_status_t st;

    st = mt_smem_optin_once((const void *)mla_split_kernel<T>, (int)smem, attr_set);
    if (st != MT_OK) {
        return st;
    }
    dim3 grid(n_heads / MLA_HEADS, splits);
    mt_pdl_launch(mla_split_kernel<T>, grid, dim3(MLA_THREADS), smem, s, q_lat, q_pe,
                  (const T *)lat, (const T *)kpe, idx, n_idx, scale, n_heads, o_part, ml_part);
    st = mt_cuda_launched("mla_split", s);
    if (st != MT_OK) {
        return st;
    }
    return mla_merge(o_part, ml_part, splits, n_heads, o_lat, s);
}

/* The kernels a BF16 cache may run on. */
enum mla_kernel { MLA_CUDA_CORES, MLA_TC_SMALL, MLA_TC };

/*
 * Rows of at most this many positions take the small tensor-core kernel even where the large one
 * fits: measured on the H200 (2026-11-30 session 11, graph + PDL, us, large / small): 128
 * positions 13.6 / 12.0, 512 13.8 / 12.4, 1,024 14.2 / 13.3, 1,536 15.0 / 16.8, 2,048 15.6 /
 * 17.9 (bench/results/kernels-h200.md).
 */
#define MLA_SMALL_MAX_POS 1024

/* The dynamic shared memory a block may have on the current device (asked once a device). */
static mt_status_t
mla_smem_optin(int *out)
{
    static int known[64]; /* 0: not asked yet */
    int dev = 0;
    mt_status_t st = MT_CUDA(cudaGetDevice(&dev));

    *out = 0;
    if (st != MT_OK || dev < 0 || dev >= 64) {
        return st;
    }
    if (known[dev] == 0) {
        int v = 0;
        st = MT_CUDA(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
        if (st != MT_OK) {
            return st;
        }
        known[dev] = v > 0 ? v : -1;
    }
    *out = known[dev];
    return MT_OK;
}

/*
 * Which kernel a BF16 cache of n_idx positions runs on here: mla_tc_kernel where a block may have
 * its ~201 KB of shared memory (sm_90, sm_100) and the row is longer than MLA_SMALL_MAX_POS, else
 * mla_tc_small_kernel (87-120 KB by block: any sm_80+), else (a GPU with less) the CUDA-core
 * kernel; the tensor-core kernels also need 16-byte aligned q. MT_MLA_CUDA_CORES=1 keeps the
 * CUDA-core kernel; MT_MLA_TC_SMALL=1 the small tensor-core kernel and MT_MLA_TC_SMALL=0 the
 * large one wherever it fits (to compare them; read every call, so a test can switch).
 */
static mt_status_t
mla_choose(const float *q_lat, const float *q_pe, int n_idx, enum mla_kernel *out)
{
    int optin = 0;
    mt_status_t st;

    const char *env = getenv("MT_MLA_CUDA_CORES");
    const char *small = getenv("MT_MLA_TC_SMALL");

    *out = MLA_CUDA_CORES;
    if ((env != NULL && strcmp(env, "0") != 0) || ((uintptr_t)q_lat | (uintptr_t)q_pe) % 16 != 0) {
        return MT_OK;
    }
    if ((st = mla_smem_optin(&optin)) != MT_OK) {
        return st;
    }
    bool small_wanted = small != NULL ? strcmp(small, "0") != 0 : n_idx <= MLA_SMALL_MAX_POS;
    if (optin >= (int)sizeof(struct tc_smem) && !small_wanted) {
        *out = MLA_TC;
    } else if (optin >= (int)sizeof(struct ts_smem<1, 4>)) {
        *out = MLA_TC_SMALL;
    }
    return MT_OK;
}

/* The tensor-core kernel for a BF16 cache (mla_choose: MLA_TC). */
static mt_status_t
mla_tc_launch(const float *q_lat, const float *q_pe, int n_heads, const uint16_t *lat,
              const uint16_t *kpe, const int32_t *idx, int n_idx, float scale, void *work,
              float *o_lat, cudaStream_t s)
{
    static bool attr_set[64];
    int smem = (int)sizeof(struct tc_smem);
    int splits = MT_MAX(MT_CEIL_DIV(n_idx, TC_SPLIT), 1); /* <= the work's MLA_SPLIT count */
    float *o_part = (float *)work;
    float *ml_part = o_part + (size_t)splits * n_heads * MLA_RANK;
    mt_status_t st;

    if ((st = mt_smem_optin_once((const void *)mla_tc_kernel, smem, attr_set)) != MT_OK) {
        return st;
    }
    dim3 grid(n_heads / MLA_HEADS, splits);
    mt_pdl_launch(mla_tc_kernel, grid, dim3(TC_THREADS), (size_t)smem, s, q_lat, q_pe, lat, kpe,
                  idx, n_idx, scale, n_heads, o_part, ml_part);
    st = mt_cuda_launched("mla_tc", s);
    if (st != MT_OK) {
        return st;
    }
    return mla_merge(o_part, ml_part, splits, n_heads, o_lat, s);
}

/*
 * The small tensor-core kernel (mla_choose: MLA_TC_SMALL) on blocks of HT 16-head tiles x KW warps
 * (mla_block_shape): 1, 2, 4 or 8 chunks a block, the fewest whose grid fits in one wave of the
 * blocks this device holds at once (one chunk only on rows of up to TS_ONE_CHUNK_MAX chunks, which
 * the work space holds). A block's chunks run one after another, so on a short row fewer chunks a
 * block are a shorter chain of latencies. MT_MLA_TS_ONE_CHUNK=0: two chunks a block at least (as
 * before, for measurements).
 */
template <int HT, int KW>
static mt_status_t
mla_tc_small_launch(const float *q_lat, const float *q_pe, int n_heads, const uint16_t *lat,
                    const uint16_t *kpe, const int32_t *idx, int n_idx, float scale, void *work,
                    float *o_lat, cudaStream_t s)
{
    static bool attr_set[64];
    static int resident[64]; /* blocks the device holds at once; 0 not asked yet */
    const int threads = HT * KW * 32;
    int smem = (int)sizeof(struct ts_smem<HT, KW>);
    int dev = 0;
    mt_status_t st;

    if ((st = mt_smem_optin_once((const void *)mla_tc_small_kernel<false, HT, KW>, smem,
                                 attr_set)) != MT_OK ||
        (st = MT_CUDA(cudaGetDevice(&dev))) != MT_OK) {
        return st;
    }
    if (dev < 0 || dev >= 64 || resident[dev] == 0) {
        int per_sm = 0;
        int n_sm = 0;
        if ((st = MT_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                 &per_sm, mla_tc_small_kernel<false, HT, KW>, threads, smem))) != MT_OK ||
            (st = MT_CUDA(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev))) !=
                MT_OK) {
            return st;
        }
        if (dev >= 0 && dev < 64) {
            resident[dev] = MT_MAX(per_sm * n_sm, 1);
        }
    }
    long long wave = dev >= 0 && dev < 64 ? resident[dev] : 1;
    int groups = n_heads / (HT * MLA_HEADS);
    static int one_chunk = -1;
    if (one_chunk < 0) {
        const char *ev = getenv("MT_MLA_TS_ONE_CHUNK");
        one_chunk = ev == NULL || strcmp(ev, "0") != 0;
    }
    /* the work holds ceil(n_idx / MLA_SPLIT) splits, and one a chunk up to TS_ONE_CHUNK_MAX */
    int chunks = one_chunk && MT_CEIL_DIV(n_idx, TS_CHUNK) <= TS_ONE_CHUNK_MAX ? 1 : 2;
    while (chunks < TS_MAX_CHUNKS &&
           (long long)groups * MT_CEIL_DIV(n_idx, chunks * TS_CHUNK) > wave) {
        chunks *= 2;
    }
    int splits = MT_MAX(MT_CEIL_DIV(n_idx, chunks * TS_CHUNK), 1);
    float *o_part = (float *)work;
    float *ml_part = o_part + (size_t)splits * n_heads * MLA_RANK;

    mt_pdl_launch(mla_tc_small_kernel<false, HT, KW>, dim3(groups, splits), dim3(threads),
                  (size_t)smem, s, q_lat, q_pe, lat, kpe, idx, n_idx, scale, n_heads, chunks,
                  o_part, ml_part, (int64_t)0, 0);
    st = mt_cuda_launched("mla_tc_small", s);
    if (st != MT_OK) {
        return st;
    }
    return mla_merge(o_part, ml_part, splits, n_heads, o_lat, s);
}

/* The blocks the small tensor-core kernel may run on: heads a block x warps a 16-head tile. */
enum mla_block { MLA_BLOCK_16X4, MLA_BLOCK_16X8, MLA_BLOCK_32X8 };

/*
 * The block for the small kernel: `widest` where it fits, else narrower: 32 heads x 8 warps
 * where its ~120 KB of shared memory fit (sm_80, sm_90, sm_100) and the heads are a multiple of
 * 32, else 16 x 8 (~97 KB: every sm_80+ GPU), else 16 x 4 (~87 KB). A prompt's rows take 32 x 8
 * (measured on the H200, bench_kernels --mla-prompt, 128 rows x 2,048 of 65,536 positions: 0.79 /
 * 0.88 / 0.97 ms for 32 x 8 / 16 x 8 / 16 x 4); decode MLA_DECODE_BLOCK. The environment
 * variable env_name (MT_MLA_PROMPT_BLOCK, MT_MLA_DECODE_BLOCK) = 16x4, 16x8 or 32x8 asks for
 * one instead, taken where it fits (read every call, so a test can switch; other values: ignored).
 */
static mt_status_t
mla_block_shape(int n_heads, enum mla_block widest, const char *env_name, enum mla_block *out)
{
    int optin = 0;
    mt_status_t st = mla_smem_optin(&optin);
    const char *env = getenv(env_name);
    enum mla_block want = widest;

    if (env != NULL) {
        want = strcmp(env, "16x4") == 0   ? MLA_BLOCK_16X4
               : strcmp(env, "16x8") == 0 ? MLA_BLOCK_16X8
               : strcmp(env, "32x8") == 0 ? MLA_BLOCK_32X8
                                          : widest;
    }
    *out = MLA_BLOCK_16X4;
    if (st != MT_OK) {
        return st;
    }
    if (want == MLA_BLOCK_32X8 && n_heads % (2 * MLA_HEADS) == 0 &&
        optin >= (int)sizeof(struct ts_smem<2, 8>)) {
        *out = MLA_BLOCK_32X8;
    } else if (want != MLA_BLOCK_16X4 && optin >= (int)sizeof(struct ts_smem<1, 8>)) {
        *out = MLA_BLOCK_16X8;
    }
    return MT_OK;
}

/*
 * Decode's block on the small kernel (mla_block_shape): 16 heads x 8 warps. Measured on the H200
 * (bench_kernels --dsa, small kernel forced, graph + PDL, us at 2,048 / 1,024 / 128 positions):
 * 16 x 4 17.9 / 13.2 / 9.2, 16 x 8 17.3 / 12.1 / 8.6, 32 x 8 17.2 / 15.0 / 11.5 (one row's 4
 * blocks of 32 heads leave most SMs idle on short rows).
 */
#define MLA_DECODE_BLOCK MLA_BLOCK_16X8

extern "C" mt_status_t
mt_gpu_mla_tensor_cores(bool *out)
{
    static const float aligned[4] __attribute__((aligned(16))) = {0};
    enum mla_kernel k = MLA_CUDA_CORES;
    mt_status_t st = mla_choose(aligned, aligned, 1, &k);

    *out = k != MLA_CUDA_CORES;
    return st;
}

extern "C" mt_status_t
mt_gpu_mla_decode(const float *q_lat, const float *q_pe, int n_heads, int kv_rank, int rope,
                  enum mt_dtype cache_dtype, const void *lat, const void *kpe, const int32_t *idx,
                  int n_idx, float scale, void *work, float *o_lat, struct CUstream_st *stream)
{
    if (kv_rank != MLA_RANK || rope != MLA_ROPE || n_heads < MLA_HEADS ||
        n_heads % MLA_HEADS != 0 || n_idx < 0 ||
        (cache_dtype != MT_DTYPE_BF16 && cache_dtype != MT_DTYPE_F32) || q_lat == NULL ||
        q_pe == NULL || o_lat == NULL || work == NULL ||
        (n_idx > 0 && (lat == NULL || kpe == NULL)) ||
        ((uintptr_t)lat | (uintptr_t)kpe) % 16 != 0) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "gpu mla decode: %d heads, rank %d + rope %d, %s cache, %d positions "
                       "(needs 512 + 64, heads a multiple of 16, aligned cache)",
                       n_heads, kv_rank, rope, mt_dtype_name(cache_dtype), n_idx);
    }
    enum mla_kernel k = MLA_CUDA_CORES;
    mt_status_t st = cache_dtype == MT_DTYPE_BF16 ? mla_choose(q_lat, q_pe, n_idx, &k) : MT_OK;
    if (st != MT_OK) {
        return st;
    }
    /* no positions: the CUDA-core kernel, which never reads the cache */
    if (k == MLA_TC && n_idx > 0) {
        return mla_tc_launch(q_lat, q_pe, n_heads, (const uint16_t *)lat, (const uint16_t *)kpe,
                             idx, n_idx, scale, work, o_lat, stream);
    }
    if (k == MLA_TC_SMALL && n_idx > 0) {
        const uint16_t *l16 = (const uint16_t *)lat;
        const uint16_t *k16 = (const uint16_t *)kpe;
        enum mla_block block = MLA_BLOCK_16X4;

        if ((st = mla_block_shape(n_heads, MLA_DECODE_BLOCK, "MT_MLA_DECODE_BLOCK", &block)) !=
            MT_OK) {
            return st;
        }
        switch (block) {
        case MLA_BLOCK_16X8:
            return mla_tc_small_launch<1, 8>(q_lat, q_pe, n_heads, l16, k16, idx, n_idx, scale,
                                             work, o_lat, stream);
        case MLA_BLOCK_32X8:
            return mla_tc_small_launch<2, 8>(q_lat, q_pe, n_heads, l16, k16, idx, n_idx, scale,
                                             work, o_lat, stream);
        default:
            return mla_tc_small_launch<1, 4>(q_lat, q_pe, n_heads, l16, k16, idx, n_idx, scale,
                                             work, o_lat, stream);
        }
    }
    if (cache_dtype == MT_DTYPE_BF16) {
        return mla_launch<uint16_t>(q_lat, q_pe, n_heads, lat, kpe, idx, n_idx, scale, work,
                                    o_lat, stream);
    }
    return mla_launch<float>(q_lat, q_pe, n_heads, lat, kpe, idx, n_idx, scale, work, o_lat,
                             stream);
}

/* A prompt's rows on the small tensor-core kernel, HT head tiles of KW warps a block. */
template <int HT, int KW>
static mt_status_t
mla_prompt_launch(const float *q_lat, const float *q_pe, int n_heads, const uint16_t *lat,
                  const uint16_t *kpe, const int32_t *idx, int64_t ld_idx, int n_idx,
                  int n_first, int n_rows, float scale, float *o_lat, cudaStream_t s)
{
    static bool attr_set[64];
    int smem = (int)sizeof(struct ts_smem<HT, KW>);
    mt_status_t st = mt_smem_optin_once((const void *)mla_tc_small_kernel<true, HT, KW>, smem,
                                        attr_set);

    if (st != MT_OK) {
        return st;
    }
    mt_pdl_launch(mla_tc_small_kernel<true, HT, KW>,
                  dim3(n_heads / (HT * MLA_HEADS), 1, n_rows), dim3(HT * KW * 32), (size_t)smem,
                  s, q_lat, q_pe, lat, kpe, idx, n_idx, scale, n_heads, 0, o_lat, (float *)NULL,
                  ld_idx, n_first);
    return mt_cuda_launched("mla_prompt", s);
}

extern "C" mt_status_t
mt_gpu_mla_prompt(const float *q_lat, const float *q_pe, int n_heads, int kv_rank, int rope,
                  enum mt_dtype cache_dtype, const void *lat, const void *kpe, const int32_t *idx,
                  int64_t ld_idx, int n_idx, int n_first, int n_rows, float scale, float *o_lat,
                  struct CUstream_st *stream)
{
    bool tc = false;
    enum mla_block block = MLA_BLOCK_16X4;
    mt_status_t st;

    if (kv_rank != MLA_RANK || rope != MLA_ROPE || n_heads < MLA_HEADS ||
        n_heads % MLA_HEADS != 0 || n_rows < 0 || n_rows > 65535 ||
        cache_dtype != MT_DTYPE_BF16 || q_lat == NULL || q_pe == NULL || o_lat == NULL ||
        lat == NULL || kpe == NULL || (idx != NULL && (n_idx < 1 || ld_idx < n_idx)) ||
        (idx == NULL && n_first < 1) || ((uintptr_t)q_lat | (uintptr_t)q_pe) % 16 != 0 ||
        ((uintptr_t)lat | (uintptr_t)kpe) % 16 != 0) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "gpu mla prompt: %d rows, %d heads, rank %d + rope %d, %s cache, %s %d "
                       "positions (needs 512 + 64, heads a multiple of 16, a BF16 aligned cache, "
                       "aligned q)",
                       n_rows, n_heads, kv_rank, rope, mt_dtype_name(cache_dtype),
                       idx != NULL ? "selections of" : "dense rows from", idx ? n_idx : n_first);
    }
    if ((st = mt_gpu_mla_tensor_cores(&tc)) != MT_OK) {
        return st;
    }
    if (!tc) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu mla prompt: no tensor-core MLA kernel on this device "
                       "(mt_gpu_mla_tensor_cores)");
    }
    if (n_rows == 0) {
        return MT_OK;
    }
    if ((st = mla_block_shape(n_heads, MLA_BLOCK_32X8, "MT_MLA_PROMPT_BLOCK", &block)) != MT_OK) {
        return st;
    }
    const uint16_t *l16 = (const uint16_t *)lat;
    const uint16_t *k16 = (const uint16_t *)kpe;
    switch (block) {
    case MLA_BLOCK_16X8:
        return mla_prompt_launch<1, 8>(q_lat, q_pe, n_heads, l16, k16, idx, ld_idx, n_idx, n_first,
                                       n_rows, scale, o_lat, stream);
    case MLA_BLOCK_32X8:
        return mla_prompt_launch<2, 8>(q_lat, q_pe, n_heads, l16, k16, idx, ld_idx, n_idx, n_first,
                                       n_rows, scale, o_lat, stream);
    default:
        return mla_prompt_launch<1, 4>(q_lat, q_pe, n_heads, l16, k16, idx, ld_idx, n_idx, n_first,
                                       n_rows, scale, o_lat, stream);
    }
}
