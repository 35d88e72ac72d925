/* SPDX-License-Identifier: MIT */
/*
 * flops.h - how fast this machine's cores compute: the fp32 FMA rate with the widest FMA unit,
 * and the AMX BF16 tile rate, every core at once, one pinned thread each (cpu/team.h). Peak
 * rates on registers, no memory traffic: the denominators of the prefill kernels' efficiency.
 */
#ifndef MT_CPU_FLOPS_H
#define MT_CPU_FLOPS_H

#include "runtime/base/status.h"

/*
 * fp32 FMA rate of `threads` cores (<= 0: all), one pinned thread each, in GFLOP/s, 2 flops
 * per lane per FMA, with the widest FMA unit this CPU has. Runs about `seconds`.
 */
mt_status_t mt_cpu_fma_gflops_n(int threads, double seconds, double *gflops_out);
mt_status_t mt_cpu_fma_gflops(double seconds, double *gflops_out);

/*
 * AMX BF16 tile rate of `threads` cores (<= 0: all) in GFLOP/s (TDPBF16PS on registers).
 * MT_ERR_UNSUPPORTED when the CPU lacks AMX-BF16 or the kernel refuses the tile state
 * (arch_prctl ARCH_REQ_XCOMP_PERM).
 */
mt_status_t mt_cpu_amx_bf16_gflops_n(int threads, double seconds, double *gflops_out);
mt_status_t mt_cpu_amx_bf16_gflops(double seconds, double *gflops_out);

#endif /* MT_CPU_FLOPS_H */
