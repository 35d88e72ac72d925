/* SPDX-License-Identifier: MIT */
/*
 * latent_fp8.cu - MLA's latent cache in DeepSeek's FP8 layout (spec 2.10): each token's 512
 * normed latent values as e4m3 in groups of 128, one power-of-two (ue8m0) fp32 scale a group,
 * 528 bytes a token and layer against 1,024 in BF16, so a long context fits a small card.
 *
 * The one idea: the attention kernels stay as they are (they read BF16 latent rows), and only
 * the rows a launch can read are widened into a BF16 scratch of the context's length at their
 * own positions: a prompt chunk's whole prefix before its attention, a decode token's selected
 * positions before its sparse MLA. e4m3 times a power of two is exact in BF16, so the scratch
 * holds exactly what the cache means, and the CPU reference (kv_cache.c) stores the same values.
 *
 * A row: bytes 0..kvl-1 the e4m3 values, then ceil(kvl / 128) fp32 scales (kvl % 4 == 0).
 */
#include <config.h>

#include "kernels/ops.h"
#include "kernels/common.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/pdl.cuh"

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#define LF8_GROUP 128
#define LF8_THREADS 256

/* Bytes of one token's row. */
static __host__ __device__ __forceinline__ int64_t
lf8_row_bytes(int kvl)
{
    return (int64_t)kvl + 4 * ((kvl + LF8_GROUP - 1) / LF8_GROUP);
}

/*
 * One warp a (token, group): mt_cpu_act_quant(x, n, ue8m0 = true) of its at most 128 values,
 * 4 a lane: amax (exact in any order), clamped at 1e-4; s = amax / 448 rounded up to a power of
 * two; q = e4m3(clamp(x / s, +-448)), rounded to nearest even.
 */
static __global__ void __launch_bounds__(LF8_THREADS)
latent_fp8_store_kernel(const float *__restrict__ lat, int n_tok, int kvl, uint8_t *dst)
{
    mt_pdl_enter();
    int groups = (kvl + LF8_GROUP - 1) / LF8_GROUP;
    int64_t wg = (int64_t)blockIdx.x * (LF8_THREADS / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;

    if (wg >= (int64_t)n_tok * groups) {
        return; /* the whole warp */
    }
    int64_t t = wg / groups;
    int g = (int)(wg % groups);
    int n = min(LF8_GROUP, kvl - g * LF8_GROUP);
    const float *x = lat + t * kvl + g * LF8_GROUP;
    float v[4];
    float amax = 0.0f;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        int i = lane * 4 + k;
        v[k] = i < n ? x[i] : 0.0f;
        amax = fmaxf(amax, fabsf(v[k]));
    }
    float s = mt_ue8m0_scale(mt_warp_max(amax));
    uint8_t *row = dst + t * lf8_row_bytes(kvl);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        int i = lane * 4 + k;
        if (i < n) {
            row[g * LF8_GROUP + i] = mt_e4m3_of(v[k], s);
        }
    }
    if (lane == 0) {
        reinterpret_cast<float *>(row + kvl)[g] = s;
    }
}

/* One block a row: row r = idx[i] (or i) of the cache widened into BF16 row r of dst. */
static __global__ void __launch_bounds__(LF8_THREADS)
latent_fp8_expand_kernel(const uint8_t *__restrict__ src, int kvl, const int32_t *idx,
                         uint16_t *dst)
{
    mt_pdl_enter();
    int64_t r = idx != NULL ? idx[blockIdx.x] : (int64_t)blockIdx.x;
    const uint8_t *row = src + r * lf8_row_bytes(kvl);
    const float *scale = reinterpret_cast<const float *>(row + kvl);

    for (int i = threadIdx.x; i < kvl; i += LF8_THREADS) {
        __half_raw h = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)row[i], __NV_E4M3);
        __nv_bfloat16 b = __float2bfloat16_rn(__half2float(__half(h)) * scale[i / LF8_GROUP]);
        dst[r * kvl + i] = *reinterpret_cast<uint16_t *>(&b);
    }
}

extern "C" int64_t
mt_gpu_latent_fp8_row_bytes(int kvl)
{
    return lf8_row_bytes(kvl);
}

extern "C" mt_status_t
mt_gpu_latent_fp8_store(const float *lat, int n_tok, int kvl, uint8_t *dst,
                        struct CUstream_st *stream)
{
    if (lat == NULL || dst == NULL || n_tok < 1 || kvl < 4 || kvl % 4 != 0) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu fp8 latent store: %d tokens of %d (needs a width "
                       "that is a multiple of 4)", n_tok, kvl);
    }
    int64_t warps = (int64_t)n_tok * ((kvl + LF8_GROUP - 1) / LF8_GROUP);
    mt_pdl_launch(latent_fp8_store_kernel,
                  dim3((unsigned)MT_CEIL_DIV(warps, (int64_t)(LF8_THREADS / 32))),
                  dim3(LF8_THREADS), 0, stream, lat, n_tok, kvl, dst);
    return mt_cuda_launched("latent_fp8_store", stream);
}

extern "C" mt_status_t
mt_gpu_latent_fp8_expand(const uint8_t *src, int kvl, const int32_t *idx, int64_t n_rows,
                         uint16_t *dst, struct CUstream_st *stream)
{
    if (src == NULL || dst == NULL || n_rows < 1 || n_rows > INT32_MAX || kvl < 4 ||
        kvl % 4 != 0) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu fp8 latent expand: %lld rows of %d",
                       (long long)n_rows, kvl);
    }
    mt_pdl_launch(latent_fp8_expand_kernel, dim3((unsigned)n_rows), dim3(LF8_THREADS), 0, stream,
                  src, kvl, idx, dst);
    return mt_cuda_launched("latent_fp8_expand", stream);
}
