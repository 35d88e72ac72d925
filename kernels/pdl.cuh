/* SPDX-License-Identifier: MIT */
/*
 * pdl.cuh - programmatic dependent launch (sm_90+): the next kernel of a stream starts before
 * the previous one has finished, and waits inside itself for the previous one's results.
 *
 * The one idea: a decode step is ~100 kernels in a row, most of them GEMVs that read weights
 * which no kernel writes. Launched plainly, each one starts only after its predecessor's last
 * block has finished and its writes are flushed; its blocks then ramp up and wait a full memory
 * latency for their first weight bytes, while the memory bus idles (5-6 us a launch on the H200,
 * bench/results/kernels-h200.md). Launched with the attribute below, the kernel's blocks are
 * placed as soon as the previous kernel lets them (it calls mt_pdl_trigger) and SMs free up;
 * they issue the loads that do not depend on the previous kernel (weights, scales), then
 * mt_pdl_wait() until the previous grid has completed and its writes are visible, then read
 * their inputs and write their outputs. Measured on the H200 (bench/results/kernels-h200.md,
 * 2026-11-30 session 4): 1-2 us less a GEMV on plain stream launches, 0.1-1.5 us less inside a
 * CUDA graph (which already removes most of the same gap).
 *
 * The rule every kernel launched through mt_pdl_launch must follow: mt_pdl_wait() in every
 * block, before it reads anything an earlier kernel writes and before it writes anything an
 * earlier kernel reads. A kernel that keeps the rule finishes after its predecessor, so the
 * chain of completions stays ordered as with plain launches (a later plain launch, an event or
 * a copy after it sees every earlier kernel done). mt_pdl_trigger() only lets the next kernel be
 * placed; it promises nothing about this kernel's writes. Call it after mt_pdl_wait (as
 * mt_pdl_enter does), never before: then a kernel that starts early finds every kernel but the
 * one just before it complete, which is what the indexer's n_ready (keys ready two kernels
 * back, read before the wait) relies on.
 *
 * Portability: both instructions exist from sm_90; below that they compile to nothing and the
 * host never sets the attribute (mt_gpu_pdl_active: a cc >= 9.0 device running code compiled
 * for sm_90 or later, so an sm_80 build run on a Hopper does not skip a wait it does not have).
 * MT_GPU_PDL=0 in the environment (or mt_gpu_pdl_set(0)) launches everything plainly.
 */
#ifndef MT_KERNELS_PDL_CUH
#define MT_KERNELS_PDL_CUH

#include <cuda_runtime.h>

#include "kernels/ops.h"

/* Wait until the grids this one depends on programmatically have completed and their memory
 * operations are visible; returns at once in a plain launch. */
static __device__ __forceinline__ void
mt_pdl_wait(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

/* Let the next kernel of the stream be launched once every block of this grid has called this
 * (or exited). Called right after mt_pdl_wait, so at most one kernel waits ahead. */
static __device__ __forceinline__ void
mt_pdl_trigger(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

/* Both, for kernels with nothing to do before their inputs are ready. */
static __device__ __forceinline__ void
mt_pdl_enter(void)
{
    mt_pdl_wait();
    mt_pdl_trigger();
}

/* Hint: bring a line of global memory into L2 (for weights needed after mt_pdl_wait). */
static __device__ __forceinline__ void
mt_prefetch_l2(const void *p)
{
    asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p));
}

/*
 * kernel<<<grid, block, smem, s>>>(args...), with programmatic stream serialization where
 * mt_gpu_pdl_active() says so. The kernel must keep the rule above. Errors are left for the
 * caller's mt_cuda_launched (the runtime records them as the last error).
 */
template <typename... KArgs, typename... Args>
static inline void
mt_pdl_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
              Args... args)
{
    if (!mt_gpu_pdl_active()) {
        kernel<<<grid, block, smem, s>>>(args...);
        return;
    }
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute at[1];

    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    (void)cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...);
}

#endif /* MT_KERNELS_PDL_CUH */
