/* SPDX-License-Identifier: MIT */
/*
 * disk_bench.h - how fast a disk serves expert-sized O_DIRECT reads through io_uring.
 *
 * The one idea: measure a disk the way the runtime will read experts from it, cold. Given a
 * directory, a test file is written there (after checking that it fits with a margin to spare,
 * so a benchmark can never fill a file system), its name is removed at once so nothing outlives
 * the process however it ends, and it is read back with O_DIRECT at every (queue depth, block
 * size) point. Given a regular file (a raw device's image, a checkpoint shard), that file is
 * read as it is. Each point reads fresh bytes: a cursor walks on through the file.
 *
 * Depends on runtime/base only (status, clock) and io/uring_reader. Progress goes to callbacks;
 * this module prints nothing but its warnings and errors (mt_fail, mt_log_warn).
 */
#ifndef MT_IO_DISK_BENCH_H
#define MT_IO_DISK_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/base/status.h"

/* What to measure. qds and blocks are borrowed for the call. */
struct mt_io_disk_bench_opts {
    uint64_t file_bytes;      /* size of the test file written into a directory */
    uint64_t pass_bytes;      /* bytes read per point; 0 means 1 GiB (or the whole file) */
    const int *qds;           /* queue depths, [n_qd] */
    int n_qd;
    const uint64_t *blocks;   /* block sizes, multiples of 4 KiB, [n_blocks] */
    int n_blocks;
};

/* One measured point. */
struct mt_io_disk_point {
    int qd;
    uint64_t block_bytes;
    double gbps;              /* 1e9 bytes per second */
    double seconds;           /* the whole pass */
    bool direct;              /* false: the file system refused O_DIRECT (buffered reads) */
};

/* Progress callbacks; either may be NULL. */
struct mt_io_disk_bench_cb {
    void (*file_written)(void *ctx, uint64_t bytes, double seconds, bool direct);
    void (*point)(void *ctx, const struct mt_io_disk_point *pt);
    void *ctx;
};

/*
 * The room kept free on a file system holding a test file: 1 GiB, or 5% of the file system when
 * that is less (small test file systems).
 */
uint64_t mt_io_disk_bench_margin(uint64_t fs_bytes);

/*
 * Check that a test file of file_bytes fits in directory dir with the margin to spare.
 * MT_ERR_IO "cannot query free space of '<dir>'"; MT_ERR_INVAL "a disk test file of X GiB does
 * not fit in '<dir>': Y GiB free, Z GiB kept free (try --disk-size N)".
 */
mt_status_t mt_io_disk_bench_check_space(const char *dir, uint64_t file_bytes);

/*
 * Measure path (a directory: write a test file there first; a regular file: read it) at every
 * (block, qd) point of o, blocks outer, calling cb->point for each. MT_ERR_INVAL for a path that
 * is neither, a file smaller than one block, a test file that does not fit; MT_ERR_IO for
 * creation, write and read failures (the test file's name, if it exists already, is never
 * removed: it is not ours); MT_ERR_NOMEM.
 */
mt_status_t mt_io_disk_bench_run(const char *path, const struct mt_io_disk_bench_opts *o,
                                 const struct mt_io_disk_bench_cb *cb);

#endif /* MT_IO_DISK_BENCH_H */
