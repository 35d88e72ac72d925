/* SPDX-License-Identifier: MIT */
/*
 * launch_times.h - where a decode step's GPU time goes, kernel by kernel, without a profiler
 * (launch_times.cu). With MT_GPU_KERNEL_TIMES=1 in the environment (or mt_gpu_launch_times_enable)
 * every launch check (mt_cuda_launched) and every graph launch records a CUDA event after the
 * work it names; the time from the previous event on the same stream to this one is charged to
 * this name. That time is the kernel's run plus any idle gap before it (a host that launched it
 * late), so with MT_GPU_GRAPH=0 a sum far above the graph's time says "launch-bound".
 *
 * The events serialize what programmatic dependent launch would overlap, and a recording into a
 * CUDA graph records nothing (a graph's replay is one entry): for a per-kernel table run with
 * MT_GPU_GRAPH=0 MT_GPU_PDL=0, and compare its total with a plain run's step time.
 * Only for CUDA builds (no stubs), like events.h.
 */
#ifndef MT_KERNELS_LAUNCH_TIMES_H
#define MT_KERNELS_LAUNCH_TIMES_H

#include <stdbool.h>
#include <stdio.h>

#include "runtime/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st;

/* One name's share: launches timed (the first on a stream after a flush is not) and their ms. */
struct mt_gpu_launch_time {
    const char *name; /* the launch check's name (a static string) */
    long launches;
    long timed;
    double ms;
};

/* On or off from now on (the environment's MT_GPU_KERNEL_TIMES is read at the first launch). */
void mt_gpu_launch_times_enable(bool on);
bool mt_gpu_launch_times_on(void);

/* Record one event after the work just queued on stream under name (launch checks call it). */
void mt_gpu_launch_times_record(const char *name, struct CUstream_st *stream);

/*
 * Wait for the recorded events and add their times to the per-name sums. MT_ERR_CUDA (the sums
 * keep what was added before).
 */
mt_status_t mt_gpu_launch_times_flush(void);

/* Up to cap sums, largest time first, after a flush; returns how many there are. */
int mt_gpu_launch_times_get(struct mt_gpu_launch_time *out, int cap);

/* Forget every sum and recorded event. */
void mt_gpu_launch_times_reset(void);

/* Flush, then print the table (name, launches, ms, us a launch, share) to f. */
void mt_gpu_launch_times_print(FILE *f);

#ifdef __cplusplus
}
#endif

#endif /* MT_KERNELS_LAUNCH_TIMES_H */
