/* SPDX-License-Identifier: MIT */
/*
 * arena.cu - the device arena: one cudaMalloc sized at start-up, handed out by bumping a pointer.
 *
 * The one idea: device memory is reserved once, against the user's --gpu-mem budget, so a model
 * that does not fit fails at start-up with one message saying how much it needs, never in the
 * middle of a token with a bare "out of memory".
 */
#include <config.h>

#include "kernels/ops.h"
#include "kernels/cuda_check.cuh"

#include <stdlib.h>

#define ARENA_ALIGN 256

struct mt_gpu_arena {
    int dev;
    char *base; /* owned: the one cudaMalloc */
    size_t size;
    size_t used;
};

static double
mib(size_t b)
{
    return (double)b / (1024.0 * 1024.0);
}

extern "C" mt_status_t
mt_gpu_arena_create(int dev, size_t bytes, size_t budget, struct mt_gpu_arena **arena_out)
{
    struct mt_gpu_arena *a;
    size_t free_b = 0;
    size_t total_b = 0;
    cudaError_t err;
    mt_status_t st;

    if (budget != 0 && bytes > budget) {
        return mt_fail(MT_ERR_NOMEM, 0,
                       "device arena needs %.1f MiB but the GPU memory budget is %.1f MiB "
                       "(raise --gpu-mem or place less on the GPU)",
                       mib(bytes), mib(budget));
    }
    a = (struct mt_gpu_arena *)calloc(1, sizeof(*a));
    if (a == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the device arena descriptor");
    }
    st = MT_CUDA(cudaSetDevice(dev));
    if (st != MT_OK) {
        goto out_free;
    }
    err = cudaMalloc(&a->base, bytes > 0 ? bytes : ARENA_ALIGN);
    if (err != cudaSuccess) {
        cudaGetLastError();
        cudaMemGetInfo(&free_b, &total_b);
        st = mt_fail(MT_ERR_NOMEM, 0,
                     "cannot allocate a %.1f MiB device arena on GPU %d: %s (%.1f of %.1f MiB "
                     "free; lower --gpu-mem or place less on the GPU)",
                     mib(bytes), dev, cudaGetErrorString(err), mib(free_b), mib(total_b));
        goto out_free;
    }
    a->dev = dev;
    a->size = bytes;
    *arena_out = a;
    return MT_OK;

out_free:
    free(a);
    return st;
}

extern "C" void
mt_gpu_arena_destroy(struct mt_gpu_arena *arena)
{
    if (arena == NULL) {
        return;
    }
    cudaFree(arena->base);
    free(arena);
}

extern "C" mt_status_t
mt_gpu_arena_alloc(struct mt_gpu_arena *arena, size_t bytes, const char *what, void **ptr_out)
{
    size_t need = MT_CEIL_DIV(bytes, (size_t)ARENA_ALIGN) * ARENA_ALIGN;

    if (need < bytes || need > arena->size - arena->used) {
        return mt_fail(MT_ERR_NOMEM, 0,
                       "device arena full: '%s' needs %.1f MiB, %.1f of %.1f MiB are used; the "
                       "arena would need at least %.1f MiB (raise --gpu-mem)",
                       what, mib(bytes), mib(arena->used), mib(arena->size),
                       mib(arena->used + need));
    }
    *ptr_out = arena->base + arena->used;
    arena->used += need;
    return MT_OK;
}

extern "C" void
mt_gpu_arena_reset(struct mt_gpu_arena *arena)
{
    arena->used = 0;
}

extern "C" size_t
mt_gpu_arena_used(const struct mt_gpu_arena *arena)
{
    return arena->used;
}

extern "C" size_t
mt_gpu_arena_size(const struct mt_gpu_arena *arena)
{
    return arena->size;
}

extern "C" mt_status_t
mt_gpu_copy_to_device(void *d_dst, const void *src, size_t bytes)
{
    return MT_CUDA(cudaMemcpy(d_dst, src, bytes, cudaMemcpyHostToDevice));
}

extern "C" mt_status_t
mt_gpu_copy_to_host(void *dst, const void *d_src, size_t bytes)
{
    return MT_CUDA(cudaMemcpy(dst, d_src, bytes, cudaMemcpyDeviceToHost));
}

extern "C" mt_status_t
mt_gpu_stream_sync(struct CUstream_st *stream)
{
    return MT_CUDA(cudaStreamSynchronize(stream));
}
