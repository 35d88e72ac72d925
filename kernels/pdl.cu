/* SPDX-License-Identifier: MIT */
/*
 * pdl.cu - the switch of programmatic dependent launch (kernels/pdl.cuh says what it is).
 *
 * The one idea: the attribute is only safe where the kernels that run were compiled with their
 * griddepcontrol.wait, i.e. for sm_90 or later. A build for sm_80 alone runs on a Hopper too
 * (its sm_80 code, or its PTX compiled for sm_90 at load time, both without the wait), so the
 * device's compute capability is not enough: the probe kernel below, compiled with the same
 * flags as every kernel of this library, says which code the device actually runs.
 */
#include <config.h>

#include "kernels/ops.h"
#include "kernels/pdl.cuh"

#include <stdlib.h>
#include <string.h>

static __global__ void
pdl_probe_kernel(void)
{
}

static int pdl_switch = -1; /* -1: MT_GPU_PDL not read yet; then 0 or 1 */

extern "C" void
mt_gpu_pdl_set(bool on)
{
    pdl_switch = on ? 1 : 0;
}

extern "C" bool
mt_gpu_pdl_active(void)
{
    static signed char known[64]; /* per device: 0 unknown, 1 capable, -1 not */
    int dev = 0;

    if (pdl_switch < 0) {
        const char *e = getenv("MT_GPU_PDL");
        pdl_switch = e != NULL && strcmp(e, "0") == 0 ? 0 : 1;
    }
    if (pdl_switch == 0) {
        return false;
    }
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
        (void)cudaGetLastError();
        return false;
    }
    if (known[dev] == 0) { /* a race only repeats the queries */
        int major = 0;
        cudaFuncAttributes fa;
        bool ok =
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
            cudaFuncGetAttributes(&fa, pdl_probe_kernel) == cudaSuccess && major >= 9 &&
            fa.ptxVersion >= 90 && fa.binaryVersion >= 90;
        (void)cudaGetLastError(); /* a failed query means "no", not an error for the next call */
        known[dev] = ok ? 1 : -1;
    }
    return known[dev] > 0;
}
