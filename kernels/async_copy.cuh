/* SPDX-License-Identifier: MIT */
/*
 * async_copy.cuh - cp.async (sm_80+): a thread copies global memory into shared memory without
 * holding registers for it, so it can keep several steps of weights in flight while it computes on
 * an earlier one. The GEMV, expert and indexer kernels each run a private ring of stages on it:
 * copy step i + S - 1, commit it as one group, wait until at most S - 1 groups are pending (step i
 * is then complete), compute step i.
 *
 * A copy with valid false reads nothing and writes zeros (the "src-size" operand is 0): the tails
 * of rows and rings past the end need no branch around the copy. src must still be a mapped
 * address, so callers pass a base pointer of the operand there.
 */
#ifndef MT_KERNELS_ASYNC_COPY_CUH
#define MT_KERNELS_ASYNC_COPY_CUH

/* 16 bytes, through L2 only (.cg: streamed weights and keys are read once). */
static __device__ __forceinline__ void
mt_cp_async16(void *dst_shared, const void *src, bool valid)
{
    unsigned d = (unsigned)__cvta_generic_to_shared(dst_shared);

    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}

/* 4 bytes (.ca: block scales, shared by the rows of a block, may stay in L1). */
static __device__ __forceinline__ void
mt_cp_async4(void *dst_shared, const void *src, bool valid)
{
    unsigned d = (unsigned)__cvta_generic_to_shared(dst_shared);

    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src),
                 "r"(valid ? 4 : 0)
                 : "memory");
}

/* The copies issued since the last commit become one group. */
static __device__ __forceinline__ void
mt_cp_async_commit(void)
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/* Wait until at most N of this thread's groups are pending. */
template <int N>
static __device__ __forceinline__ void
mt_cp_async_wait(void)
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

#endif /* MT_KERNELS_ASYNC_COPY_CUH */
