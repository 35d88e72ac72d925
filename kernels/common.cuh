/* SPDX-License-Identifier: MIT */
/*
 * common.cuh - device helpers shared by the kernels: e4m3 and bf16 decoding in registers, the
 * caches' bf16 rounding, warp reductions.
 *
 * The one idea of the e4m3 decoder: an e4m3fn byte b (sign, 4 exponent bits with bias 7, 3
 * mantissa bits) shifted into an fp16 as sign<<15 | (b & 0x7f)<<7 is exactly b * 2^-8 (fp16 has
 * bias 15 and subnormals below 2^-14 cover e4m3's), so four bytes become two half2 with a few
 * integer operations on any sm_80+ GPU; the caller multiplies 2^8 back into the block scale.
 * NaN bytes (0x7f, 0xff) decode to +-480 * 2^-8 instead of NaN.
 */
#ifndef MT_KERNELS_COMMON_CUH
#define MT_KERNELS_COMMON_CUH

#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <stdint.h>

#define MT_FP8_DECODE_SCALE 256.0f /* what mt_fp8x4_decode's values are short of */

/* Four e4m3 bytes of v (byte i = element i) -> lo = (e0, e2), hi = (e1, e3) as half2, * 2^-8. */
static __device__ __forceinline__ void
mt_fp8x4_decode(uint32_t v, __half2 *lo, __half2 *hi)
{
    uint32_t l = ((v << 8) & 0x80008000u) | ((v & 0x007f007fu) << 7);
    uint32_t h = (v & 0x80008000u) | ((v & 0x7f007f00u) >> 1);

    *lo = *reinterpret_cast<__half2 *>(&l);
    *hi = *reinterpret_cast<__half2 *>(&h);
}

/* Four e4m3 bytes of v as fp32 in element order (f[i] = element i * 2^-8, mt_fp8x4_decode). */
static __device__ __forceinline__ void
mt_fp8x4_to_f32(uint32_t v, float *f)
{
    __half2 lo;
    __half2 hi;

    mt_fp8x4_decode(v, &lo, &hi);
    float2 a = __half22float2(lo);
    float2 b = __half22float2(hi);
    f[0] = a.x;
    f[1] = b.x;
    f[2] = a.y;
    f[3] = b.y;
}

/*
 * e4m3 byte j of v -> fp32 with the value * 2^-120, by integer moves alone: the byte's 7 low bits
 * land in the fp32 exponent's low 4 bits and the mantissa's top 3 (bias 127 instead of 7, and an
 * e4m3 subnormal becomes an fp32 subnormal with the same factor). Three integer instructions and
 * no conversion instruction, to share the decoding between pipes with mt_fp8x4_decode. Products
 * with tiny activations may fall into fp32 subnormals; their absolute error (2^-150 * 2^120 of the
 * weight's unit) is far below the sums they join.
 */
template <int J>
static __device__ __forceinline__ float
mt_fp8_to_f32_scaled(uint32_t v)
{
    int32_t t = (int32_t)__byte_perm(v, 0, (J << 12) | 0x0444); /* byte J at bits 24-31 */

    return __uint_as_float((uint32_t)(t >> 4) & 0x87ffffffu);
}

#define MT_FP8_F32_SCALE 0x1p120f /* what mt_fp8_to_f32_scaled's values are short of */

/*
 * One row of an FP8 matrix times x, in fp32 on one thread's CUDA cores: sum over columns k of
 * e4m3 byte row[k] times its 128-column block scale srow[k / 128] times x[k] (cols % 16 == 0,
 * row 16-byte aligned). The slow, plain path of the tensor-core kernels that split x into f16
 * hi + lo as they go (gemv_wave.cuh with x in registers, gemv_core.cuh, moe_chunk.cu): where
 * |x| reaches 65,520 the f16 hi half is inf and their results come out inf or NaN, and only
 * those outputs are computed again here (activations that large are rare; one thread reads the
 * whole row, some hundred microseconds a launch when it happens). Real inf or NaN in x stays.
 */
static __device__ inline float
mt_fp8_row_dot(const uint8_t *row, const float *srow, const float *x, int64_t cols)
{
    float tot = 0.0f;

    for (int64_t k0 = 0; k0 < cols; k0 += 128) {
        int64_t k1 = k0 + 128 < cols ? k0 + 128 : cols;
        float part = 0.0f;

        for (int64_t k = k0; k < k1; k += 16) {
            uint4 v = *reinterpret_cast<const uint4 *>(row + k);
            uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float f[4];
                mt_fp8x4_to_f32(words[j], f);
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    part = fmaf(f[i], x[k + 4 * j + i], part);
                }
            }
        }
        tot = fmaf(part, srow[k0 / 128] * MT_FP8_DECODE_SCALE, tot);
    }
    return tot;
}

/* Two e4m3 bytes (b0 in bits 0-7, b1 in bits 8-15) -> half2 (b0, b1) * 2^-8. */
static __device__ __forceinline__ uint32_t
mt_fp8x2_to_half2_bits(uint32_t v)
{
    uint32_t r = __byte_perm(v, 0, 0x1404); /* b0 -> bits 8-15, b1 -> bits 24-31 */

    return (r & 0x80008000u) | ((r & 0x7f007f00u) >> 1);
}

/* fp32 -> bf16 bits exactly as cpu/convert.h's mt_f32_to_bf16 (round to nearest even, quiet
 * NaN): what the caches store. */
static __device__ __forceinline__ uint16_t
mt_f32_to_bf16_bits(float f)
{
    uint32_t u = __float_as_uint(f);

    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((u >> 16) | 0x40);
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* The two bf16 of word v as floats: low half first. */
static __device__ __forceinline__ float2
mt_bf16x2_decode(uint32_t v)
{
    return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xffff0000u));
}

static __device__ __forceinline__ float
mt_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, o);
    }
    return v;
}

static __device__ __forceinline__ float
mt_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) {
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    }
    return v;
}

/*
 * The power-of-two (ue8m0) scale of a group of values whose largest magnitude is amax, as
 * mt_cpu_act_quant(ue8m0 = true) makes it: amax clamped at 1e-4, amax / 448 rounded up to a
 * power of two (so that x / s is exact and at most 448, e4m3's largest).
 */
static __device__ __forceinline__ float
mt_ue8m0_scale(float amax)
{
    uint32_t u = __float_as_uint(fmaxf(amax, 1e-4f) / 448.0f);

    return ldexpf(1.0f, (int)((u >> 23) & 0xff) - 127 + ((u & 0x7fffff) != 0));
}

/*
 * x / s as an e4m3 byte, clamped to +-448, rounded to nearest even (mt_cpu_act_quant's). NaN
 * stays NaN (0x7f, as mt_f32_to_fp8 writes it): fmaxf would turn it into -448, and so an inf in a
 * group (whose scale is then inf, and inf / inf NaN) into a finite cache value that hides it.
 */
static __device__ __forceinline__ uint8_t
mt_e4m3_of(float x, float s)
{
    float q = x / s;

    if (q != q) {
        return 0x7f;
    }
    q = fminf(fmaxf(q, -448.0f), 448.0f);
    return (uint8_t)__nv_cvt_float_to_fp8(q, __NV_SATFINITE, __NV_E4M3);
}

#endif /* MT_KERNELS_COMMON_CUH */
