/* SPDX-License-Identifier: MIT */
/*
 * device.cu - finding and describing CUDA devices, and the shared launch check.
 */
#include <config.h>

#include "kernels/kernels.h"
#include "kernels/cuda_check.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" mt_status_t
mt_gpu_device_count(int *count_out)
{
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);

    /* No driver or no device is a normal state on build machines, not an error. */
    if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) {
        cudaGetLastError();
        *count_out = 0;
        return MT_OK;
    }
    if (err != cudaSuccess) {
        cudaGetLastError();
        *count_out = 0;
        return MT_OK;
    }
    *count_out = n;
    return MT_OK;
}

extern "C" mt_status_t
mt_gpu_device_info(int dev, struct mt_gpu_info *info_out)
{
    struct cudaDeviceProp p;
    struct mt_gpu_info info;
    mt_status_t st;

    memset(&info, 0, sizeof(info));
    st = MT_CUDA(cudaGetDeviceProperties(&p, dev));
    if (st != MT_OK) {
        return st;
    }
    snprintf(info.name, sizeof(info.name), "%s", p.name);
    info.sm_major = p.major;
    info.sm_minor = p.minor;
    info.multiprocessors = p.multiProcessorCount;
    info.total_mem = p.totalGlobalMem;
    st = MT_CUDA(cudaSetDevice(dev));
    if (st != MT_OK) {
        return st;
    }
    st = MT_CUDA(cudaMemGetInfo(&info.free_mem, &info.total_mem));
    if (st != MT_OK) {
        return st;
    }
    cudaDriverGetVersion(&info.driver_version);
    cudaRuntimeGetVersion(&info.runtime_version);
    *info_out = info;
    return MT_OK;
}

mt_status_t
mt_cuda_launched(const char *kernel, cudaStream_t stream)
{
    static int debug_sync = -1;
    cudaError_t err = cudaGetLastError();

    if (err != cudaSuccess) {
        return mt_fail(MT_ERR_CUDA, 0, "kernel %s failed to launch: %s", kernel,
                       cudaGetErrorString(err));
    }
    if (debug_sync < 0) {
        const char *e = getenv("MT_DEBUG_SYNC");
#ifdef MT_DEBUG_SYNC_DEFAULT
        debug_sync = e == NULL || strcmp(e, "0") != 0;
#else
        debug_sync = e != NULL && strcmp(e, "0") != 0;
#endif
    }
    if (debug_sync) {
        err = cudaStreamSynchronize(stream);
        if (err != cudaSuccess) {
            return mt_fail(MT_ERR_CUDA, 0, "kernel %s failed: %s", kernel, cudaGetErrorString(err));
        }
    }
    return MT_OK;
}
