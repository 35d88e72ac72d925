/* SPDX-License-Identifier: MIT */
/*
 * kernels.h - the C entry points of moetier's CUDA kernels.
 *
 * Built only when configure found CUDA (MT_HAVE_CUDA). Without it every entry point below is an
 * inline stub returning MT_ERR_UNSUPPORTED, so callers need no #ifdef: they ask
 * mt_gpu_device_count() and take the CPU path when it reports no device.
 */
#ifndef MT_KERNELS_H
#define MT_KERNELS_H

#include <stddef.h>

#include "runtime/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct mt_gpu_info {
    char name[256];
    size_t total_mem;    /* bytes of device memory */
    size_t free_mem;     /* bytes free now */
    int sm_major;        /* compute capability */
    int sm_minor;
    int multiprocessors;
    int driver_version;  /* e.g. 13000 for 13.0 */
    int runtime_version;
};

#ifdef MT_HAVE_CUDA

/*
 * Number of usable CUDA devices in *count_out. A machine without a driver or a GPU is not an
 * error: it gives 0 and MT_OK.
 */
mt_status_t mt_gpu_device_count(int *count_out);

/* Properties of device dev. MT_ERR_CUDA when the device cannot be queried. */
mt_status_t mt_gpu_device_info(int dev, struct mt_gpu_info *info_out);

#else /* !MT_HAVE_CUDA */

static inline mt_status_t
mt_gpu_device_count(int *count_out)
{
    *count_out = 0;
    return MT_OK;
}

static inline mt_status_t
mt_gpu_device_info(int dev, struct mt_gpu_info *info_out)
{
    (void)dev;
    (void)info_out;
    return mt_fail(MT_ERR_UNSUPPORTED, 0, "moetier was built without CUDA (configure --with-cuda)");
}

#endif /* MT_HAVE_CUDA */

#ifdef __cplusplus
}
#endif

#endif /* MT_KERNELS_H */
