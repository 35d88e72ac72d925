/* SPDX-License-Identifier: MIT */
/*
 * events.h - CUDA events and pinned host memory for the engine (events.cu): wait for one copy
 * without waiting for the whole stream, time the device's share of a layer, and give the
 * host-device copies of the MoE layer memory the DMA engine can read directly (so a copy queued
 * behind kernels returns at once instead of blocking the host thread).
 * Only for CUDA builds (no stubs), like engine_ops.h.
 */
#ifndef MT_KERNELS_EVENTS_H
#define MT_KERNELS_EVENTS_H

#include <stddef.h>

#include "runtime/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st;
struct CUevent_st;

/* A timing event (cudaEventDefault). MT_ERR_CUDA. */
mt_status_t mt_gpu_event_create(struct CUevent_st **ev_out);
void mt_gpu_event_destroy(struct CUevent_st *ev);
/* Mark the point in stream's order where ev completes. */
mt_status_t mt_gpu_event_record(struct CUevent_st *ev, struct CUstream_st *stream);
/*
 * mt_gpu_event_record that, on a stream being recorded into a CUDA graph (graph.h), becomes a
 * node of the graph recording the event each time the graph runs (for timing inside graphs).
 */
mt_status_t mt_gpu_event_mark(struct CUevent_st *ev, struct CUstream_st *stream);
/* Work queued on stream after this waits for ev's last record (a no-op if never recorded). */
mt_status_t mt_gpu_stream_wait(struct CUstream_st *stream, struct CUevent_st *ev);
/* Block until ev has completed. */
mt_status_t mt_gpu_event_sync(struct CUevent_st *ev);
/* Milliseconds between two completed events. */
mt_status_t mt_gpu_event_ms(struct CUevent_st *from, struct CUevent_st *to, float *ms_out);

/* bytes of page-locked host memory (cudaMallocHost); MT_ERR_NOMEM naming `what`. */
mt_status_t mt_gpu_pinned_alloc(size_t bytes, const char *what, void **out);
void mt_gpu_pinned_free(void *p);

#ifdef __cplusplus
}
#endif

#endif /* MT_KERNELS_EVENTS_H */
