/* SPDX-License-Identifier: MIT */
/*
 * flops.h - how fast this machine's cores compute: the fp32 FMA rate with the widest FMA unit,
 * and the AMX BF16 tile rate, every core at once, one pinned thread each (cpu/team.h). Peak
 * rates on registers, no memory traffic: the denominators of the prefill kernels' efficiency.
 */
#ifndef MT_CPU_FLOPS_H
#define MT_CPU_FLOPS_H

#include "runtime/base/status.h"

#include <stddef.h>

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

/*
 * TDPBF16PS with the tile loads a prefill kernel needs: shape 0 the 2 x 2 block (4 loads per 4
 * products), 1 a 1 x 2 block (3 loads per 2), 2 the 1 x 2 block double-buffered (its next
 * loads into other tile registers than the products read), 3 the 2 x 2 block with each load
 * just before its first product, 4 the 2 x 2 block's loads alone; the A tiles walk a region of
 * a_bytes, the B tiles one of b_bytes (16 KiB stays in L1, 1 MiB in L2): the rate a prefill
 * kernel's inner loop can reach with its operands there. Same units and errors.
 */
mt_status_t mt_cpu_amx_bf16_loads_gflops_n(int threads, int shape, size_t a_bytes, size_t b_bytes,
                                           double seconds, double *gflops_out);

#endif /* MT_CPU_FLOPS_H */
