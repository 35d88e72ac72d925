/* SPDX-License-Identifier: MIT */
/* events.cu - CUDA events and pinned host memory (events.h). */
#include "kernels/events.h"

#include "kernels/cuda_check.cuh"

extern "C" mt_status_t
mt_gpu_event_create(struct CUevent_st **ev_out)
{
    cudaEvent_t ev;
    mt_status_t st = MT_CUDA(cudaEventCreate(&ev));

    if (st == MT_OK) {
        *ev_out = ev;
    }
    return st;
}

extern "C" void
mt_gpu_event_destroy(struct CUevent_st *ev)
{
    if (ev != NULL) {
        cudaEventDestroy(ev);
    }
}

extern "C" mt_status_t
mt_gpu_event_record(struct CUevent_st *ev, struct CUstream_st *stream)
{
    return MT_CUDA(cudaEventRecord(ev, stream));
}

extern "C" mt_status_t
mt_gpu_event_mark(struct CUevent_st *ev, struct CUstream_st *stream)
{
    return MT_CUDA(cudaEventRecordWithFlags(ev, stream, cudaEventRecordExternal));
}

extern "C" mt_status_t
mt_gpu_stream_wait(struct CUstream_st *stream, struct CUevent_st *ev)
{
    return MT_CUDA(cudaStreamWaitEvent(stream, ev, 0));
}

extern "C" mt_status_t
mt_gpu_event_sync(struct CUevent_st *ev)
{
    return MT_CUDA(cudaEventSynchronize(ev));
}

extern "C" mt_status_t
mt_gpu_event_ms(struct CUevent_st *from, struct CUevent_st *to, float *ms_out)
{
    return MT_CUDA(cudaEventElapsedTime(ms_out, from, to));
}

extern "C" mt_status_t
mt_gpu_pinned_alloc(size_t bytes, const char *what, void **out)
{
    cudaError_t err = cudaMallocHost(out, bytes > 0 ? bytes : 1);

    if (err != cudaSuccess) {
        (void)cudaGetLastError(); /* clear it: the caller may fall back to a smaller budget */
        *out = NULL;
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %zu bytes of pinned host memory for %s: "
                       "%s", bytes, what, cudaGetErrorString(err));
    }
    return MT_OK;
}

extern "C" void
mt_gpu_pinned_free(void *p)
{
    if (p != NULL) {
        cudaFreeHost(p);
    }
}
