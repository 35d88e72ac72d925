/* SPDX-License-Identifier: MIT */
/*
 * host_copy.h - the GPU side of expert streaming: page-lock the io/ staging region for the GPU,
 * and copy experts from it to device memory on a stream of their own.
 *
 * The one idea: the staging region is ordinary mmap'd memory that io_uring already reads into;
 * cudaHostRegister makes that same memory DMA-able by the GPU, so an expert goes drive -> staging
 * -> GPU with no copy on the host. (Never the other way round: io_uring on cudaHostAlloc memory
 * is not supported.) io/ must not depend on kernels/, so the engine calls these with the region
 * that mt_io_source_staging() reports. Without CUDA every entry point is a stub returning
 * MT_ERR_UNSUPPORTED.
 */
#ifndef MT_KERNELS_HOST_COPY_H
#define MT_KERNELS_HOST_COPY_H

#include <stddef.h>

#include "runtime/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct mt_gpu_h2d;

#ifdef MT_HAVE_CUDA

/* cudaHostRegister(base, bytes) on the current device. MT_ERR_CUDA with CUDA's reason. */
mt_status_t mt_gpu_host_register(void *base, size_t bytes);
/*
 * Tests: refuse the next n page-lockings (mt_gpu_host_register and _mapped; 0: none), as a memory
 * lock limit or too little free RAM would. Call it on the thread that creates the engines and
 * providers (they page-lock on that thread).
 */
void mt_gpu_host_register_refuse(int n);
/* The same, mapped: kernels read it over the bus at *dev_out (zero-copy). */
mt_status_t mt_gpu_host_register_mapped(void *base, size_t bytes, void **dev_out);
/* Undo mt_gpu_host_register or _mapped (warns on failure, never fails). */
void mt_gpu_host_unregister(void *base);

/*
 * A copier to device dev: a stream, two device buffers of cap bytes each (copies alternate
 * between them, so one expert's copy overlaps the next one's read) and timing events.
 * MT_ERR_CUDA, MT_ERR_NOMEM.
 */
mt_status_t mt_gpu_h2d_create(int dev, size_t cap, struct mt_gpu_h2d **h_out);
void mt_gpu_h2d_destroy(struct mt_gpu_h2d *h);
/* Queue a copy of n <= cap bytes from host src (pinned) to the next device buffer. */
mt_status_t mt_gpu_h2d_copy(struct mt_gpu_h2d *h, const void *src, size_t n);
/* Wait for every queued copy; *ms_out is the GPU time they took since the last sync. */
mt_status_t mt_gpu_h2d_sync(struct mt_gpu_h2d *h, double *ms_out);

#else

static inline mt_status_t
mt_gpu_host_register(void *base, size_t bytes)
{
    (void)base, (void)bytes;
    return mt_fail(MT_ERR_UNSUPPORTED, 0, "moetier was built without CUDA (configure --with-cuda)");
}

static inline void
mt_gpu_host_unregister(void *base)
{
    (void)base;
}

static inline void
mt_gpu_host_register_refuse(int n)
{
    (void)n;
}

static inline mt_status_t
mt_gpu_h2d_create(int dev, size_t cap, struct mt_gpu_h2d **h_out)
{
    (void)dev, (void)cap, (void)h_out;
    return mt_fail(MT_ERR_UNSUPPORTED, 0, "moetier was built without CUDA (configure --with-cuda)");
}

static inline void
mt_gpu_h2d_destroy(struct mt_gpu_h2d *h)
{
    (void)h;
}

static inline mt_status_t
mt_gpu_h2d_copy(struct mt_gpu_h2d *h, const void *src, size_t n)
{
    (void)h, (void)src, (void)n;
    return MT_ERR_UNSUPPORTED;
}

static inline mt_status_t
mt_gpu_h2d_sync(struct mt_gpu_h2d *h, double *ms_out)
{
    (void)h, (void)ms_out;
    return MT_ERR_UNSUPPORTED;
}

#endif

#ifdef __cplusplus
}
#endif

#endif /* MT_KERNELS_HOST_COPY_H */
