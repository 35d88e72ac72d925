/* SPDX-License-Identifier: MIT */
/*
 * cuda_check.cuh - turning cudaError_t into mt_status_t at the boundary, and launch checks.
 *
 * A call site reads `st = MT_CUDA(cudaMalloc(&p, n));`: on failure the stringified call, file,
 * line and CUDA's reason go to mt_fail(). Every launcher ends `return mt_cuda_launched("name", s);`,
 * which checks cudaGetLastError() and, with MT_DEBUG_SYNC=1 in the environment, synchronizes that
 * one stream so an asynchronous fault is blamed on the right kernel.
 */
#ifndef MT_KERNELS_CUDA_CHECK_CUH
#define MT_KERNELS_CUDA_CHECK_CUH

#include <cuda_runtime.h>

#include "runtime/base/status.h"

static inline mt_status_t
mt_cuda_status(cudaError_t err, const char *expr, const char *file, int line)
{
    if (err == cudaSuccess) {
        return MT_OK;
    }
    return mt_fail(MT_ERR_CUDA, 0, "%s failed at %s:%d: %s", expr, file, line,
                   cudaGetErrorString(err));
}

#define MT_CUDA(expr) mt_cuda_status((expr), #expr, __FILE__, __LINE__)

mt_status_t mt_cuda_launched(const char *kernel, cudaStream_t stream);

/*
 * Raise kernel f's dynamic shared memory limit to `bytes` on the current device, once per device
 * (set[dev], one array per kernel: the attribute is a device's, so a second GPU needs its own
 * call; a race only repeats the call).
 */
static inline mt_status_t
mt_smem_optin_once(const void *f, int bytes, bool (&set)[64])
{
    int dev = 0;
    mt_status_t st = MT_CUDA(cudaGetDevice(&dev));

    if (st != MT_OK || (dev >= 0 && dev < 64 && set[dev])) {
        return st;
    }
    st = MT_CUDA(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    if (st == MT_OK && dev >= 0 && dev < 64) {
        set[dev] = true;
    }
    return st;
}

#endif /* MT_KERNELS_CUDA_CHECK_CUH */
