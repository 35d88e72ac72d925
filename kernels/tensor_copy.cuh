/* SPDX-License-Identifier: MIT */
/*
 * tensor_copy.cuh - the tensor memory accelerator (TMA, sm_90+): one instruction copies a 2-D
 * box of a matrix (here up to 16 rows x 256 bytes) from global into shared memory, and the
 * hardware counts the bytes that have landed on an mbarrier in shared memory. Against cp.async
 * (async_copy.cuh: four 16-byte copies a thread for a GEMV's 2 KB step) a warp issues one
 * instruction a step from one lane, and the copy engine streams the matrix at a higher rate
 * (H200, bench/results/kernels-h200.md, 2026-12-01 session 20: a launch that only streams a
 * 132 MB matrix in the GEMV's order, 16 warps a block each with its own ring, got 86-89% of the
 * 4 GiB HBM read with 16x128-byte boxes and 95% with 16x256, against 76-80% with cp.async).
 *
 * The box's shape and the matrix's address, sizes and row stride live in a 128-byte
 * CUtensorMap that the host encodes (cuTensorMapEncodeTiled) and passes as a __grid_constant__
 * kernel parameter. Parts of a box outside the matrix are written as zeros and counted as
 * landed, so the ends of rows and columns need no branch.
 *
 * The ring protocol (one warp, A stages, each with its mbarrier of one arrival): lane 0 arrives
 * with the stage's expected bytes, the copies are issued, and every lane waits on the stage's
 * phase parity ((step / A) & 1) before reading it. Before a stage is refilled, the warp's reads
 * of it must be ordered before the copy engine's writes (a different "proxy"): __syncwarp, then
 * mt_tma_fence_before_refill by the issuing lane.
 *
 * Everything here compiles to nothing below sm_90; the host only launches kernels that use it
 * on devices and images of compute capability 9.0 or later.
 */
#ifndef MT_KERNELS_TENSOR_COPY_CUH
#define MT_KERNELS_TENSOR_COPY_CUH

#include <cuda.h> /* CUtensorMap (a type only: the driver entry point is found at run time) */
#include <stdint.h>

static __device__ __forceinline__ uint32_t
mt_smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* Set up an mbarrier that completes a phase after `arrivals` arrivals and their bytes; then make
 * that visible to the copy engine. */
static __device__ __forceinline__ void
mt_mbar_init(uint64_t *bar, int arrivals)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(mt_smem_addr(bar)),
                 "r"(arrivals)
                 : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

/* Arrive on the mbarrier at shared address bar and announce `bytes` more that copies will land in
 * this phase. */
static __device__ __forceinline__ void
mt_mbar_arrive_expect_at(uint32_t bar, uint32_t bytes)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
                 : "memory");
#endif
}

/* Wait until the phase of parity `parity` of the mbarrier at shared address bar has completed. */
static __device__ __forceinline__ void
mt_mbar_wait_at(uint32_t bar, uint32_t parity)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    uint32_t done = 0;

    do {
        asm volatile("{\n\t.reg .pred p;\n\t"
                     "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
                     "selp.u32 %0, 1, 0, p;\n\t}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
    } while (!done);
#endif
}

/* Order this thread's (and, after __syncwarp, its warp's) earlier shared-memory accesses before
 * the copy engine's next writes. */
static __device__ __forceinline__ void
mt_tma_fence_before_refill(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

/* Copy the box of map whose first element is (column x, row y) to shared address dst (128-byte
 * aligned), counting its bytes on the mbarrier at shared address bar; with `hint`, the box's
 * lines go to L2 under cache policy pol (mt_l2_evict_first_policy). */
static __device__ __forceinline__ void
mt_tma_load_2d_at(uint32_t dst, const CUtensorMap *map, int x, int y, uint32_t bar,
                  bool hint = false, uint64_t pol = 0)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (hint) {
        asm volatile(
            "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
            ".L2::cache_hint [%0], [%1, {%2, %3}], [%4], %5;\n" ::"r"(dst),
            "l"(map), "r"(x), "r"(y), "r"(bar), "l"(pol)
            : "memory");
    } else {
        asm volatile(
            "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
            " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
            "l"(map), "r"(x), "r"(y), "r"(bar)
            : "memory");
    }
#endif
}

/* An L2 cache policy that evicts the lines it is given first (weights read once a token), so that
 * what a kernel reads again (x, the scales, the next kernel's input) stays in L2. */
static __device__ __forceinline__ uint64_t
mt_l2_evict_first_policy(void)
{
    uint64_t p = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(p));
#endif
    return p;
}

#endif /* MT_KERNELS_TENSOR_COPY_CUH */
