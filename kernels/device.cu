/* SPDX-License-Identifier: MIT */
/*
 * device.cu - finding and describing CUDA devices, and the shared launch check.
 */
#include <config.h>

#include "kernels/kernels.h"
#include "kernels/cuda_check.cuh"
#include "kernels/launch_times.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Why the last mt_gpu_device_count found no device ("" when it found some). */
static char no_device_reason[256];

extern "C" const char *
mt_gpu_device_none_reason(void)
{
    return no_device_reason;
}

extern "C" mt_status_t
mt_gpu_device_count(int *count_out)
{
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);

    *count_out = 0;
    no_device_reason[0] = '\0';
    /* No driver or no device is a normal state on build machines: 0 devices, with the reason
     * kept for whoever wants to say why. Anything else is a real failure, reported as such. */
    if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) {
        cudaGetLastError();
        snprintf(no_device_reason, sizeof(no_device_reason), "%s", cudaGetErrorString(err));
        return MT_OK;
    }
    if (err != cudaSuccess) {
        cudaGetLastError();
        snprintf(no_device_reason, sizeof(no_device_reason), "%s", cudaGetErrorString(err));
        return mt_fail(MT_ERR_CUDA, 0, "cannot count CUDA devices: %s", cudaGetErrorString(err));
    }
    if (n == 0) {
        snprintf(no_device_reason, sizeof(no_device_reason), "the driver reports no device");
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
    info.l2_bytes = (size_t)p.l2CacheSize;
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

/* -1: not yet known (MT_DEBUG_SYNC decides at the first launch); 0 or 1 */
static int debug_sync = -1;

extern "C" void
mt_gpu_debug_sync_set(bool on)
{
    __atomic_store_n(&debug_sync, on ? 1 : 0, __ATOMIC_RELAXED);
}

mt_status_t
mt_cuda_launched(const char *kernel, cudaStream_t stream)
{
    cudaError_t err = cudaGetLastError();

    if (err != cudaSuccess) {
        return mt_fail(MT_ERR_CUDA, 0, "kernel %s failed to launch: %s", kernel,
                       cudaGetErrorString(err));
    }
    int sync = __atomic_load_n(&debug_sync, __ATOMIC_RELAXED);
    if (sync < 0) {
        const char *e = getenv("MT_DEBUG_SYNC");
#ifdef MT_DEBUG_SYNC_DEFAULT
        sync = e == NULL || strcmp(e, "0") != 0;
#else
        sync = e != NULL && strcmp(e, "0") != 0;
#endif
        int unknown = -1; /* a setter's answer, if one came meanwhile, wins */
        if (!__atomic_compare_exchange_n(&debug_sync, &unknown, sync, false, __ATOMIC_RELAXED,
                                         __ATOMIC_RELAXED)) {
            sync = unknown;
        }
    }
    if (sync) {
        err = cudaStreamSynchronize(stream);
        if (err != cudaSuccess) {
            return mt_fail(MT_ERR_CUDA, 0, "kernel %s failed: %s", kernel, cudaGetErrorString(err));
        }
    }
    mt_gpu_launch_times_record(kernel, stream); /* MT_GPU_KERNEL_TIMES=1 only */
    return MT_OK;
}
