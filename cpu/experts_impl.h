/* SPDX-License-Identifier: MIT */
/*
 * experts_impl.h - what each ISA's expert kernels provide to cpu/experts.c (internal).
 */
#ifndef MT_CPU_EXPERTS_IMPL_H
#define MT_CPU_EXPERTS_IMPL_H

#include <stdint.h>

#include "cpu/experts.h"
#include "cpu/ref_ops.h"

/*
 * y[t * ldy + (r - r0)] = W[r, :] . x[t * ldx + :] for r0 <= r < r1, t < m, fp32 accumulation.
 * FP8: [r0, r1) lies inside one 128-row scale block. cols is a multiple of the ISA's vector step
 * (32), checked by the caller (mt_cpu_kernels_fit).
 */
typedef void (*mt_cpu_rows_fn)(const struct mt_cpu_weight *w, int64_t r0, int64_t r1,
                               const float *x, int64_t ldx, int m, float *y, int64_t ldy);

struct mt_cpu_kernels {
    const char *name;
    mt_cpu_rows_fn rows_fp8;  /* decode tiles (NULL: the AVX-512 ones) */
    mt_cpu_rows_fn rows_bf16;
    /* prefill, FP8 and BF16, m >= MT_CPU_PREFILL_MIN_M tokens in one call (no 32-token blocks);
     * NULL where the family has none */
    mt_cpu_rows_fn rows_many;
};

/*
 * Bumped at every layer run and expert run: kernels that cache a converted copy of their input
 * per thread (experts_amx.c) key it by this, since a caller may reuse an input buffer.
 */
extern _Atomic uint64_t mt_cpu_experts_gen;

extern const struct mt_cpu_kernels mt_cpu_kernels_scalar;
extern const struct mt_cpu_kernels mt_cpu_kernels_avx2;
extern const struct mt_cpu_kernels mt_cpu_kernels_avx512;
extern const struct mt_cpu_kernels mt_cpu_kernels_amx;

#endif /* MT_CPU_EXPERTS_IMPL_H */
