/* SPDX-License-Identifier: MIT */
/*
 * launch_times.cu - per-kernel GPU time from CUDA events after each launch (launch_times.h).
 *
 * Events go into a ring of pre-made events with the name and stream of the work before them. A
 * flush waits for the device, then charges each event's time since the previous event of its
 * stream to its name. The last event of every stream stays behind as an anchor (name NULL), so
 * the first launch after a flush is timed too; only a stream's very first launch is not.
 */
#include <config.h>

#include "kernels/launch_times.h"

#include "kernels/cuda_check.cuh"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define LT_RING 8192   /* events between flushes */
#define LT_NAMES 128   /* distinct names; more share the last row */
#define LT_STREAMS 32  /* streams followed at once; more lose their anchors */

struct lt_rec {
    const char *name; /* NULL: an anchor left by the last flush */
    cudaStream_t stream;
};

static pthread_mutex_t lt_lock = PTHREAD_MUTEX_INITIALIZER;
static int lt_state = -1; /* -1 environment not read yet, 0 off, 1 on */
static cudaEvent_t lt_events[LT_RING];
static struct lt_rec lt_recs[LT_RING];
static int lt_n;
static bool lt_made;
static struct mt_gpu_launch_time lt_sums[LT_NAMES];
static int lt_n_sums;

extern "C" void
mt_gpu_launch_times_enable(bool on)
{
    pthread_mutex_lock(&lt_lock);
    lt_state = on ? 1 : 0;
    pthread_mutex_unlock(&lt_lock);
}

extern "C" bool
mt_gpu_launch_times_on(void)
{
    if (lt_state < 0) {
        const char *e = getenv("MT_GPU_KERNEL_TIMES");

        pthread_mutex_lock(&lt_lock);
        if (lt_state < 0) {
            lt_state = e != NULL && strcmp(e, "0") != 0;
        }
        pthread_mutex_unlock(&lt_lock);
    }
    return lt_state > 0;
}

/* The sum of name (the last row when the table is full). Lock held. */
static struct mt_gpu_launch_time *
sum_of(const char *name)
{
    for (int i = 0; i < lt_n_sums; i++) {
        if (strcmp(lt_sums[i].name, name) == 0) {
            return &lt_sums[i];
        }
    }
    if (lt_n_sums == LT_NAMES) {
        lt_sums[LT_NAMES - 1].name = "(other names)";
        return &lt_sums[LT_NAMES - 1];
    }
    lt_sums[lt_n_sums] = (struct mt_gpu_launch_time){name, 0, 0, 0.0};
    return &lt_sums[lt_n_sums++];
}

/* Charge every recorded event and keep each stream's last one as an anchor. Lock held. */
static mt_status_t
flush_locked(void)
{
    cudaStream_t streams[LT_STREAMS];
    int last[LT_STREAMS];
    int n_streams = 0;
    mt_status_t st;

    if (lt_n == 0) {
        return MT_OK;
    }
    if ((st = MT_CUDA(cudaDeviceSynchronize())) != MT_OK) {
        return st;
    }
    for (int i = 0; i < lt_n; i++) {
        int k = 0;

        while (k < n_streams && streams[k] != lt_recs[i].stream) {
            k++;
        }
        if (k == n_streams) {
            if (n_streams == LT_STREAMS) {
                continue; /* too many streams: this one is not followed */
            }
            streams[n_streams] = lt_recs[i].stream;
            last[n_streams++] = -1;
        }
        if (last[k] >= 0 && lt_recs[i].name != NULL) {
            float ms = 0.0f;

            if ((st = MT_CUDA(cudaEventElapsedTime(&ms, lt_events[last[k]], lt_events[i]))) !=
                MT_OK) {
                return st;
            }
            struct mt_gpu_launch_time *s = sum_of(lt_recs[i].name);
            s->timed++;
            s->ms += ms;
        }
        last[k] = i;
    }
    /* the anchors to the front (swapping event handles: every handle stays in the ring once) */
    for (int k = 0; k < n_streams; k++) {
        cudaEvent_t ev = lt_events[k];

        lt_events[k] = lt_events[last[k]];
        lt_events[last[k]] = ev;
        lt_recs[k] = (struct lt_rec){NULL, streams[k]};
        for (int j = k + 1; j < n_streams; j++) {
            if (last[j] == k) {
                last[j] = last[k]; /* the handle of stream j's anchor moved there */
            }
        }
    }
    lt_n = n_streams;
    return MT_OK;
}

extern "C" void
mt_gpu_launch_times_record(const char *name, struct CUstream_st *stream)
{
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;

    if (!mt_gpu_launch_times_on() || name == NULL) {
        return;
    }
    if (cudaStreamIsCapturing(stream, &cap) != cudaSuccess || cap != cudaStreamCaptureStatusNone) {
        (void)cudaGetLastError();
        return; /* a recording into a graph: its replay is timed as one */
    }
    pthread_mutex_lock(&lt_lock);
    if (!lt_made) {
        for (int i = 0; i < LT_RING; i++) {
            if (cudaEventCreate(&lt_events[i]) != cudaSuccess) {
                (void)cudaGetLastError();
                for (int j = 0; j < i; j++) {
                    cudaEventDestroy(lt_events[j]);
                }
                mt_log_warn("MT_GPU_KERNEL_TIMES: cannot create %d CUDA events; kernel times off",
                            LT_RING);
                lt_state = 0;
                pthread_mutex_unlock(&lt_lock);
                return;
            }
        }
        lt_made = true;
    }
    if (lt_n == LT_RING && flush_locked() != MT_OK) {
        mt_log_warn("MT_GPU_KERNEL_TIMES: %s; kernel times off", mt_last_error());
        lt_state = 0;
        pthread_mutex_unlock(&lt_lock);
        return;
    }
    if (lt_n < LT_RING && cudaEventRecord(lt_events[lt_n], stream) == cudaSuccess) {
        lt_recs[lt_n++] = (struct lt_rec){name, stream};
        sum_of(name)->launches++;
    } else {
        (void)cudaGetLastError();
    }
    pthread_mutex_unlock(&lt_lock);
}

extern "C" mt_status_t
mt_gpu_launch_times_flush(void)
{
    pthread_mutex_lock(&lt_lock);
    mt_status_t st = flush_locked();
    pthread_mutex_unlock(&lt_lock);
    return st;
}

static int
by_ms_desc(const void *a, const void *b)
{
    double x = ((const struct mt_gpu_launch_time *)a)->ms;
    double y = ((const struct mt_gpu_launch_time *)b)->ms;

    return (x < y) - (x > y);
}

extern "C" int
mt_gpu_launch_times_get(struct mt_gpu_launch_time *out, int cap)
{
    pthread_mutex_lock(&lt_lock);
    int n = lt_n_sums;
    struct mt_gpu_launch_time all[LT_NAMES];

    memcpy(all, lt_sums, (size_t)n * sizeof(all[0]));
    pthread_mutex_unlock(&lt_lock);
    qsort(all, (size_t)n, sizeof(all[0]), by_ms_desc);
    memcpy(out, all, (size_t)(n < cap ? n : cap) * sizeof(all[0]));
    return n;
}

extern "C" void
mt_gpu_launch_times_reset(void)
{
    pthread_mutex_lock(&lt_lock);
    lt_n = 0;
    lt_n_sums = 0;
    pthread_mutex_unlock(&lt_lock);
}

extern "C" void
mt_gpu_launch_times_print(FILE *f)
{
    struct mt_gpu_launch_time t[LT_NAMES];
    double total = 0.0;
    int n;

    if (mt_gpu_launch_times_flush() != MT_OK) {
        fprintf(f, "kernel times: %s\n", mt_last_error());
    }
    n = mt_gpu_launch_times_get(t, LT_NAMES);
    for (int i = 0; i < n; i++) {
        total += t[i].ms;
    }
    fprintf(f, "kernel times (MT_GPU_KERNEL_TIMES; each from the previous event on its stream, "
               "idle gaps included):\n");
    fprintf(f, "  %-28s %9s %9s %11s %10s %6s\n", "name", "launches", "timed", "ms", "us/launch",
            "share");
    for (int i = 0; i < n; i++) {
        fprintf(f, "  %-28s %9ld %9ld %11.3f %10.2f %5.1f%%\n", t[i].name, t[i].launches,
                t[i].timed, t[i].ms, t[i].timed > 0 ? 1e3 * t[i].ms / (double)t[i].timed : 0.0,
                total > 0 ? 100.0 * t[i].ms / total : 0.0);
    }
    fprintf(f, "  %-28s %9s %9s %11.3f\n", "total", "", "", total);
}
