/* SPDX-License-Identifier: MIT */
/*
 * index_keys_split.cuh - the exact indexer's fp32 numbers split into two f16 halves for the
 * tensor cores, and the split key cache that stores keys that way (H100/H200).
 *
 * The split: a row (a key, or a query head) is scaled by the power of two that brings its largest
 * |x| into [2^14, 2^15), then each element becomes hi = f16(x) and lo = f16(x - hi); the products
 * hi*hi + hi*lo + lo*hi of two rows, exact in fp32 on the tensor cores, give the fp32 dot product
 * to ~2^-22 relative (indexer.cu).
 *
 * The split key cache (mt_gpu_index_keys_split, ops.h): keys stored already split, so that the
 * scores only move them into the tensor cores (indexer.cu: wgmma on H100/H200 straight from the
 * bulk copies in shared memory; mma.sync elsewhere, fragments by ldmatrix or plain loads) with
 * no arithmetic on them; the split is done once, when a key enters the cache (one key a token
 * and layer: the attention prologue or index_keys_split_kernel). Layout: groups of 64 keys,
 * XSP_GROUP_BYTES each: the hi halves (16 KB), the lo halves (16 KB), then the 64 keys' inverse
 * powers of two (fp32). A half is 8 k-steps of 16 dims, each the 64 x 16 f16 A operand of one
 * wgmma in the K-major layout without swizzle: 8 x 8 core matrices of 128 contiguous bytes (8
 * keys, 8 k each), core (keys 8 mb.., k 8 kb..) at mb x 256 + kb x 128; so a 16-key tile (mb
 * 2j, 2j + 1) of a k-step is 512 contiguous bytes, mma.sync's four A fragments. Within a k-step
 * the dims are permuted as the fp32 kernels' fragments take them: k 2t, 2t + 1 hold dims 4t,
 * 4t + 1 and k 2t + 8, 2t + 9 dims 4t + 2, 4t + 3 (t < 4), so every kernel builds the query's
 * operand the same way from float4 pieces. 516 bytes a key, against 512 for fp32.
 */
#ifndef MT_KERNELS_INDEX_KEYS_SPLIT_CUH
#define MT_KERNELS_INDEX_KEYS_SPLIT_CUH

#include <cuda_fp16.h>
#include <stdint.h>

#define XSP_DIM 128
#define XSP_KEYS 64
#define XSP_HALF_BYTES (XSP_KEYS * XSP_DIM * 2)
#define XSP_GROUP_BYTES (2 * XSP_HALF_BYTES + XSP_KEYS * 4)

/* The power of two that brings a row whose largest |x| is m into [2^14, 2^15) (1 for m = 0
 * or tiny m: exponents clamped so that both it and its inverse are normal floats), and the
 * inverse. */
static __device__ __forceinline__ void
xtc_scale(float m, float *s, float *u)
{
    int e = (int)((__float_as_uint(m) >> 23) & 0xffu);

    e = min(max(e, 15), 254);
    *s = __uint_as_float((uint32_t)(268 - e) << 23); /* 2^(141 - e) */
    *u = __uint_as_float((uint32_t)(e - 14) << 23);  /* 2^(e - 141) */
}

/* hi, lo halves of (x0, x1) (already scaled), packed as f16x2 words. */
static __device__ __forceinline__ void
xtc_split(float x0, float x1, uint32_t *hi, uint32_t *lo)
{
    __half2 h = __floats2half2_rn(x0, x1);
    float2 b = __half22float2(h);
    __half2 l = __floats2half2_rn(x0 - b.x, x1 - b.y);

    *hi = *reinterpret_cast<uint32_t *>(&h);
    *lo = *reinterpret_cast<uint32_t *>(&l);
}

/* Byte offset of key r's (r < 64) k-slots kk, kk + 1 (kk even) of k-step ks in a half of its
 * group. */
static __device__ __forceinline__ int
xsp_off(int r, int ks, int kk)
{
    return ks * 2048 + (r >> 3) * 256 + (kk >> 3) * 128 + (r & 7) * 16 + (kk & 7) * 2;
}

/* Key (128 floats) into position pos of the split cache; called by all 32 lanes of a warp, lane
 * l taking dims 4l .. 4l + 3 (key 16-byte aligned). */
static __device__ __forceinline__ void
xsp_store_key(uint8_t *__restrict__ cache, int64_t pos, const float *__restrict__ key)
{
    int l = threadIdx.x & 31;
    float4 x = reinterpret_cast<const float4 *>(key)[l];
    float m = fmaxf(fmaxf(fabsf(x.x), fabsf(x.y)), fmaxf(fabsf(x.z), fabsf(x.w)));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    }
    float s, u;
    xtc_scale(m, &s, &u);
    uint2 hi, lo;
    xtc_split(x.x * s, x.y * s, &hi.x, &lo.x);
    xtc_split(x.z * s, x.w * s, &hi.y, &lo.y);
    int r = (int)(pos % XSP_KEYS);
    int ks = l / 4;
    int t = l % 4;
    uint8_t *g = cache + (pos / XSP_KEYS) * XSP_GROUP_BYTES;
    /* dims 4l, 4l + 1 (= 16 ks + 4t ..) at k 2t, 2t + 1; dims 4l + 2, 4l + 3 at k 2t + 8, 2t + 9 */
    *reinterpret_cast<uint32_t *>(g + xsp_off(r, ks, 2 * t)) = hi.x;
    *reinterpret_cast<uint32_t *>(g + xsp_off(r, ks, 2 * t + 8)) = hi.y;
    *reinterpret_cast<uint32_t *>(g + XSP_HALF_BYTES + xsp_off(r, ks, 2 * t)) = lo.x;
    *reinterpret_cast<uint32_t *>(g + XSP_HALF_BYTES + xsp_off(r, ks, 2 * t + 8)) = lo.y;
    if (l == 0) {
        reinterpret_cast<float *>(g + 2 * XSP_HALF_BYTES)[r] = u;
    }
}

#endif /* MT_KERNELS_INDEX_KEYS_SPLIT_CUH */
