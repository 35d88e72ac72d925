/* SPDX-License-Identifier: MIT */
/*
 * experts_impl.h - what each ISA's expert kernels provide to cpu/experts.c (internal).
 */
#ifndef MT_CPU_EXPERTS_IMPL_H
#define MT_CPU_EXPERTS_IMPL_H

#include <stdint.h>

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
    mt_cpu_rows_fn rows_fp8;
    mt_cpu_rows_fn rows_bf16;
};

extern const struct mt_cpu_kernels mt_cpu_kernels_scalar;
extern const struct mt_cpu_kernels mt_cpu_kernels_avx2;
extern const struct mt_cpu_kernels mt_cpu_kernels_avx512;

#endif /* MT_CPU_EXPERTS_IMPL_H */
