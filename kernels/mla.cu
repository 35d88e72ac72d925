/* SPDX-License-Identifier: MIT */
/*
 * mla.cu - sparse MLA decode in absorbed form: 128 heads of one query token attend to the same
 * [latent 512 | k_pe 64] rows of the selected cache positions (spec 2.6, mt_cpu_mla_absorbed).
 *
 * The one idea: every head reads the same keys and values, so a block takes 16 heads and a split
 * of the positions, stages each chunk of cache rows once in shared memory for all 16 heads, and
 * keeps an online softmax (running max and sum); a second kernel merges the splits
 * (flash-decoding). The cache is BF16 (default) or fp32 (exact mode); all arithmetic is fp32 on
 * CUDA cores, which runs on any sm_80+ GPU; a tensor-core version is the known next step
 * (bench/results/kernels-h200.md gives the gap to the byte floor).
 */
#include <config.h>

#include "kernels/ops.h"
#include "kernels/common.cuh"
#include "kernels/cuda_check.cuh"

#include <math.h>

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

/* One block per head, one thread per latent column: merge the splits' (m, l, o). */
static __global__ void
mla_combine_kernel(const float *o_part, const float *ml_part, int n_splits, int n_heads,
                   float *o_lat)
{
    int h = blockIdx.x;
    int c = threadIdx.x;
    float M = -INFINITY;

    for (int s = 0; s < n_splits; s++) {
        M = fmaxf(M, ml_part[((int64_t)s * n_heads + h) * 2]);
    }
    float num = 0.0f;
    float den = 0.0f;
    if (M != -INFINITY) {
        for (int s = 0; s < n_splits; s++) {
            float m = ml_part[((int64_t)s * n_heads + h) * 2];
            if (m == -INFINITY) {
                continue;
            }
            float e = expf(m - M);
            num += e * o_part[((int64_t)s * n_heads + h) * MLA_RANK + c];
            den += e * ml_part[((int64_t)s * n_heads + h) * 2 + 1];
        }
    }
    o_lat[(int64_t)h * MLA_RANK + c] = den > 0.0f ? num / den : 0.0f;
}

extern "C" size_t
mt_gpu_mla_work_bytes(int n_heads, int n_idx)
{
    size_t splits = (size_t)MT_MAX(MT_CEIL_DIV(n_idx, MLA_SPLIT), 1);

    return splits * (size_t)n_heads * (MLA_RANK + 2) * sizeof(float);
}

template <typename T>
static mt_status_t
mla_launch(const float *q_lat, const float *q_pe, int n_heads, const void *lat, const void *kpe,
           const int32_t *idx, int n_idx, float scale, void *work, float *o_lat, cudaStream_t s)
{
    static bool attr_set = false;
    size_t smem = mla_smem_bytes<T>();
    int splits = MT_MAX(MT_CEIL_DIV(n_idx, MLA_SPLIT), 1);
    float *o_part = (float *)work;
    float *ml_part = o_part + (size_t)splits * n_heads * MLA_RANK;
    mt_status_t st;

    if (!attr_set) {
        st = MT_CUDA(cudaFuncSetAttribute(mla_split_kernel<T>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        if (st != MT_OK) {
            return st;
        }
        attr_set = true;
    }
    dim3 grid(n_heads / MLA_HEADS, splits);
    mla_split_kernel<T><<<grid, MLA_THREADS, smem, s>>>(q_lat, q_pe, (const T *)lat,
                                                         (const T *)kpe, idx, n_idx, scale,
                                                         n_heads, o_part, ml_part);
    st = mt_cuda_launched("mla_split", s);
    if (st != MT_OK) {
        return st;
    }
    mla_combine_kernel<<<n_heads, MLA_RANK, 0, s>>>(o_part, ml_part, splits, n_heads, o_lat);
    return mt_cuda_launched("mla_combine", s);
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
    if (cache_dtype == MT_DTYPE_BF16) {
        return mla_launch<uint16_t>(q_lat, q_pe, n_heads, lat, kpe, idx, n_idx, scale, work,
                                    o_lat, stream);
    }
    return mla_launch<float>(q_lat, q_pe, n_heads, lat, kpe, idx, n_idx, scale, work, o_lat,
                             stream);
}
