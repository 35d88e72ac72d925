/* SPDX-License-Identifier: MIT */
/*
 * stream.h - how fast this machine's cores read DRAM: the memory rows of `moetier bench`.
 *
 * The one idea: a CPU expert kernel is bound by the DRAM bandwidth of the NUMA node its weights
 * live on, read by threads pinned to that node's cores (cpu/team.h), each on the slice of memory
 * it touched first (so the kernel places those pages on its node). Two measurements:
 *   - STREAM-like: a read-only sum and the triad a[i] = b[i] + s * c[i] (3 arrays moved, no
 *     write-allocate traffic), plain C loops: what simple code gets (the old figure, kept);
 *   - the read ceiling: the best any kernel gets, with the widest vector loads, several
 *     independent sequential streams per core (1, 2, 4, 8 tried; the best kept) and a working
 *     set far beyond the last-level cache, with and without software prefetch. Plain loops
 *     measure the loop, not the memory: on a 16-core Sapphire Rapids they read 77 GB/s where
 *     vector streams read 142-146. Every CPU expert ratio and every plan divides by the
 *     ceiling.
 * This header re-exports the ISA, topology and compute-rate headers that `moetier bench` uses.
 */
#ifndef MT_CPU_STREAM_H
#define MT_CPU_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu/flops.h"
#include "cpu/isa.h"
#include "cpu/topology.h"
#include "runtime/base/status.h"

/* One memory-bandwidth measurement: per kernel, the median and p90 of `reps` timed runs. */
struct mt_cpu_stream_result {
    int threads;          /* pinned threads used */
    size_t array_bytes;   /* bytes of each array */
    double read_median_s; /* one sweep over one array */
    double read_p90_s;
    double read_gbps; /* array_bytes / read_median_s */
    double triad_median_s;
    double triad_p90_s;
    double triad_gbps; /* 3 * array_bytes / triad_median_s */
    bool bound;        /* threads were pinned and memory placed as asked */
};

/*
 * Read and triad bandwidth of node index `node` (0..n_nodes-1, as in mt_cpu_topo), or of all
 * nodes at once when node < 0: one thread per core of those nodes, pinned; arrays of
 * array_bytes each (0: a default of 4x the L3, at least 256 MiB, at most 2 GiB), first touched
 * by their readers. reps >= 3 timed runs after one warm-up. A failed binding earns one warning
 * and res->bound = false, not an error. MT_ERR_NOMEM; MT_ERR_INVAL, also when the three arrays
 * would take more than 3/4 of the machine's DRAM.
 */
mt_status_t mt_cpu_stream_run(int node, size_t array_bytes, int reps,
                              struct mt_cpu_stream_result *res_out);

/* The read ceiling: the best of its variants. */
struct mt_cpu_ceiling_result {
    int threads;
    size_t bytes;    /* working set, read once per sweep */
    const char *isa; /* "avx512", "avx2" or "scalar" loads */
    int streams;     /* independent streams per thread of the best variant */
    int prefetch;    /* its software prefetch distance in bytes (0: none) */
    double median_s; /* one sweep, best variant */
    double p90_s;
    double gbps; /* bytes / median_s of the best variant */
    bool bound;
};

/* The default working set of the ceiling: max(8 GiB, 16x L3), at most 1/4 of DRAM. */
size_t mt_cpu_ceiling_default_bytes(void);

/*
 * DRAM read ceiling of node index `node` (< 0: all nodes) over `bytes` (0: the default above),
 * reps >= 3 timed sweeps per variant. MT_ERR_NOMEM; MT_ERR_INVAL (too small for the threads, or
 * more than half of DRAM).
 */
mt_status_t mt_cpu_read_ceiling(int node, size_t bytes, int reps,
                                struct mt_cpu_ceiling_result *res_out);

/*
 * OR of every 64-bit word of [p, p + len) read as the ceiling reads (widest loads, `streams`
 * equal sub-slices side by side, software prefetch `prefetch` bytes ahead when > 0): a pure read
 * of given memory, e.g. the expert bytes of a decode step. p 64-byte aligned, len a multiple of
 * 128 x streams.
 */
uint64_t mt_cpu_read_or(const void *p, size_t len, int streams, int prefetch);

/* Median and p90 of t[0..n) (sorts t). */
void mt_cpu_median_p90(double *t, int n, double *median_out, double *p90_out);

#endif /* MT_CPU_STREAM_H */
