/* SPDX-License-Identifier: MIT */
/*
 * cublas_check.cuh - cuBLAS's and cuBLASLt's status codes as mt_status_t, as cuda_check.cuh does
 * for the CUDA runtime: `st = mt_cublas_status(cublasCreate(&h), "cuBLAS", "handle creation");`.
 */
#ifndef MT_KERNELS_CUBLAS_CHECK_CUH
#define MT_KERNELS_CUBLAS_CHECK_CUH

#include <cublas_api.h>

#include "kernels/cublas_lazy.h"
#include "runtime/base/status.h"

static inline mt_status_t
mt_cublas_status(cublasStatus_t s, const char *lib, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS) {
        return MT_OK;
    }
    const char *load = s == CUBLAS_STATUS_NOT_INITIALIZED ? mt_cublas_load_error() : NULL;
    if (load != NULL) { /* the library itself is missing (kernels/cublas_lazy.c) */
        return mt_fail(MT_ERR_CUDA, 0, "%s %s failed: %s", lib, what, load);
    }
    return mt_fail(MT_ERR_CUDA, 0, "%s %s failed: %s (%d)", lib, what, cublasGetStatusString(s),
                   (int)s);
}

#endif /* MT_KERNELS_CUBLAS_CHECK_CUH */
