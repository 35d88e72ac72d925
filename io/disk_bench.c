/* SPDX-License-Identifier: MIT */
/*
 * disk_bench.c - O_DIRECT read bandwidth of a disk per queue depth and block size (disk_bench.h).
 *
 * Moved here from the bench command so that io/ holds every disk path and the CLI only prints.
 */
#include <config.h>

#include "io/disk_bench.h"

#include "io/uring_reader.h"
#include "runtime/base/clock.h"
#include "runtime/base/mem_available.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define DISK_BENCH_MARGIN ((uint64_t)1 << 30)
#define WRITE_CHUNK ((size_t)16 << 20) /* bytes per write of the test file, a multiple of 4 KiB */

uint64_t
mt_io_disk_bench_margin(uint64_t fs_bytes)
{
    return MT_MIN(DISK_BENCH_MARGIN, fs_bytes / 20);
}

mt_status_t
mt_io_disk_bench_check_space(const char *dir, uint64_t file_bytes)
{
    struct statvfs vfs;
    uint64_t avail;
    uint64_t margin;

    if (statvfs(dir, &vfs) != 0) {
        return mt_fail(MT_ERR_IO, errno, "cannot query free space of '%s'", dir);
    }
    avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    margin = mt_io_disk_bench_margin((uint64_t)vfs.f_blocks * (uint64_t)vfs.f_frsize);
    if (avail >= margin && file_bytes <= avail - margin) {
        return MT_OK;
    }
    if (avail > margin + ((uint64_t)64 << 20)) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "a disk test file of %.2f GiB does not fit in '%s': %.2f GiB free, %.2f "
                       "GiB kept free (try --disk-size %" PRIu64 "M)",
                       file_bytes / 1073741824.0, dir, avail / 1073741824.0,
                       margin / 1073741824.0, (avail - margin) >> 20);
    }
    return mt_fail(MT_ERR_INVAL, 0,
                   "a disk test file of %.2f GiB does not fit in '%s': %.2f GiB free, %.2f GiB "
                   "kept free (give --disk a directory on another file system)",
                   file_bytes / 1073741824.0, dir, avail / 1073741824.0, margin / 1073741824.0);
}

/*
 * Create a test file at path, remove its name at once and write `size` bytes of a non-zero
 * pattern, bypassing the page cache where the filesystem allows, so the reads that follow are
 * cold. The file lives on through the returned descriptor *fd_out only: however the process ends
 * (error, Ctrl-C, kill), nothing is left behind. A name that exists already is refused, never
 * removed: it is not ours.
 */
static mt_status_t
write_test_file(const char *path, uint64_t size, void *buf, size_t buf_bytes,
                const struct mt_io_disk_bench_cb *cb, int *fd_out)
{
    double t0 = mt_clock_now();
    bool direct = true;
    uint64_t done = 0;
    mt_status_t st = MT_OK;
    int fd;

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EINVAL) {
        direct = false;
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        return mt_fail(MT_ERR_IO, errno, "cannot create disk test file '%s'", path);
    }
    if (unlink(path) != 0) {
        mt_log_warn("cannot remove the name of disk test file '%s': %s", path, strerror(errno));
    }
    /* one chunk of the buffer is filled and written over and over: the rest of it is for the
       reads' slots, and touching it all made 8 MiB of test file take 1 GiB of memory */
    buf_bytes = MT_MIN(buf_bytes, WRITE_CHUNK);
    for (size_t i = 0; i < buf_bytes / 8; i++) {
        ((uint64_t *)buf)[i] = (i + 1) * 0x9e3779b97f4a7c15ull;
    }
    while (done < size) {
        size_t n = (size_t)MT_MIN((uint64_t)buf_bytes, size - done);
        ssize_t w = pwrite(fd, buf, n, (off_t)done);

        if (w <= 0) {
            st = mt_fail(MT_ERR_IO, w < 0 ? errno : ENOSPC,
                         "cannot write disk test file '%s' at %" PRIu64 " (need %" PRIu64
                         " bytes free; try --disk-size)",
                         path, done, size);
            break;
        }
        ((uint64_t *)buf)[0]++; /* every block differs */
        done += (uint64_t)w;
    }
    if (st == MT_OK && fsync(fd) != 0) {
        st = mt_fail(MT_ERR_IO, errno, "cannot sync disk test file '%s'", path);
    }
    if (st == MT_OK && !direct) {
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    }
    if (st != MT_OK) {
        close(fd);
        return st;
    }
    if (cb->file_written != NULL) {
        cb->file_written(cb->ctx, size, mt_clock_now() - t0, direct);
    }
    *fd_out = fd;
    return MT_OK;
}

/* Reads of `block` bytes one point makes in a file of `size` bytes: `pass` bytes, at most the
 * file's whole blocks, at least one. */
static uint64_t
reads_per_pass(uint64_t size, uint64_t block, uint64_t pass)
{
    return MT_MAX((uint64_t)1, MT_MIN(pass, size / block * block) / block);
}

/*
 * The read buffer every point shares: a slot of `block` bytes per read in flight, and no more
 * reads are in flight than the pass has (8 MiB at qd 256 of 4 MiB blocks are 2 reads, not the
 * 1 GiB that qd x block took). 0 where a block is larger than the file (disk_point refuses it).
 */
static uint64_t
read_buffer_bytes(const struct mt_io_disk_bench_opts *o, uint64_t size, uint64_t pass)
{
    uint64_t most = 0;

    for (int b = 0; b < o->n_blocks; b++) {
        for (int q = 0; q < o->n_qd && size >= o->blocks[b]; q++) {
            uint64_t slots = MT_MIN((uint64_t)o->qds[q], reads_per_pass(size, o->blocks[b], pass));

            most = MT_MAX(most, slots * o->blocks[b]);
        }
    }
    return most;
}

/* Read `pass` bytes of path in `block` pieces with qd in flight, starting at *cursor (wraps
 * within the file's whole blocks, and advances so the next point reads other bytes). */
static mt_status_t
disk_point(const char *path, int qd, uint64_t block, uint64_t pass, char *buf, uint64_t *cursor,
           double *gbps_out, double *seconds_out, bool *direct_out)
{
    struct mt_io_uring_reader *r;
    struct mt_io_done done;
    uint64_t size;
    uint64_t n_file_blocks;
    uint64_t n_blocks;
    uint64_t next = 0;
    uint64_t got = 0;
    double t0;
    double el;
    mt_status_t st;

    st = mt_io_uring_reader_create(path, (unsigned)qd, 0, &r);
    if (st != MT_OK) {
        return st;
    }
    size = mt_io_uring_reader_file_size(r);
    n_file_blocks = size / block;
    if (n_file_blocks == 0) {
        st =
            mt_fail(MT_ERR_INVAL, 0,
                    "disk file '%s' (%" PRIu64 " bytes) is smaller than one %" PRIu64 "-byte block "
                    "(give a larger file, or --disk-block a smaller size)",
                    path, size, block);
        goto out_reader;
    }
    n_blocks = reads_per_pass(size, block, pass);
    {
        /* Registered buffers skip per-read page pinning; not worth failing over. Only the
           slots a pass can fill are there (point_slots). */
        void *bufs[1] = {buf};
        size_t lens[1] = {(size_t)MT_MIN((uint64_t)qd, n_blocks) * block};

        if (mt_io_uring_reader_register_buffers(r, bufs, lens, 1) != MT_OK) {
            mt_log_warn("'%s': reading without registered buffers", path);
        }
    }
    t0 = mt_clock_now();
    /* Slot k owns buf[k * block]; a finished slot is refilled with the next block at once. */
    for (uint64_t slot = 0; slot < (uint64_t)qd && next < n_blocks; slot++, next++) {
        st = mt_io_uring_reader_submit(
            r, buf + slot * block, ((*cursor + next) % n_file_blocks) * block, (size_t)block, slot);
        if (st != MT_OK) {
            goto out_reader;
        }
    }
    while (mt_io_uring_reader_in_flight(r) > 0) {
        st = mt_io_uring_reader_wait(r, &done);
        if (st != MT_OK) {
            goto out_reader;
        }
        got += done.bytes;
        if (next < n_blocks) {
            st = mt_io_uring_reader_submit(r, buf + done.tag * block,
                                           ((*cursor + next) % n_file_blocks) * block,
                                           (size_t)block, done.tag);
            if (st != MT_OK) {
                goto out_reader;
            }
            next++;
        }
    }
    el = mt_clock_now() - t0;
    *cursor = (*cursor + n_blocks) % n_file_blocks;
    *gbps_out = (double)got / el * 1e-9;
    *seconds_out = el;
    *direct_out = mt_io_uring_reader_is_direct(r);

out_reader:
    mt_io_uring_reader_destroy(r);
    return st;
}

mt_status_t
mt_io_disk_bench_run(const char *path, const struct mt_io_disk_bench_opts *o,
                     const struct mt_io_disk_bench_cb *cb)
{
    static const struct mt_io_disk_bench_cb no_cb = {NULL, NULL, NULL};
    uint64_t pass = o->pass_bytes != 0 ? o->pass_bytes : (uint64_t)1 << 30;
    uint64_t max_block = 0;
    uint64_t buf_bytes;
    uint64_t avail;
    uint64_t cursor = 0;
    int max_qd = 0;
    char file[4096];
    int test_fd = -1;
    char *buf = NULL;
    struct stat sb;
    mt_status_t st = MT_OK;

    cb = cb != NULL ? cb : &no_cb;
    for (int i = 0; i < o->n_blocks; i++) {
        max_block = MT_MAX(max_block, o->blocks[i]);
    }
    for (int i = 0; i < o->n_qd; i++) {
        max_qd = MT_MAX(max_qd, o->qds[i]);
    }
    if (max_block == 0 || max_qd <= 0) {
        return mt_fail(MT_ERR_INVAL, 0, "disk benchmark of '%s': no queue depth or block size",
                       path);
    }
    if (stat(path, &sb) != 0) {
        return mt_fail(MT_ERR_IO, errno, "cannot use disk path '%s'", path);
    }
    if (S_ISDIR(sb.st_mode)) {
        if ((st = mt_io_disk_bench_check_space(path, o->file_bytes)) != MT_OK) {
            return st;
        }
    } else if (!S_ISREG(sb.st_mode)) {
        return mt_fail(MT_ERR_INVAL, 0, "disk path '%s' is neither a file nor a directory", path);
    }
    /* the file's size is known before it is written: what the read slots need follows */
    buf_bytes =
        read_buffer_bytes(o, S_ISDIR(sb.st_mode) ? o->file_bytes : (uint64_t)sb.st_size, pass);
    buf_bytes = MT_MAX(buf_bytes, MT_MIN(max_block, (uint64_t)WRITE_CHUNK));
    avail = mt_mem_available();
    if (avail > 0 && buf_bytes > avail) {
        return mt_fail(MT_ERR_NOMEM, 0,
                       "disk benchmark of '%s': reads in flight need %.2f GiB of buffers (queue "
                       "depth x block size), more than the %.2f GiB of memory available (lower "
                       "--disk-qd or --disk-block)",
                       path, buf_bytes / 1073741824.0, avail / 1073741824.0);
    }
    if (posix_memalign((void **)&buf, MT_IO_ALIGN, (size_t)buf_bytes) != 0) {
        return mt_fail(MT_ERR_NOMEM, 0,
                       "cannot allocate %" PRIu64 " bytes of read buffers for '%s' (lower "
                       "--disk-qd or --disk-block)",
                       buf_bytes, path);
    }
    if (S_ISDIR(sb.st_mode)) {
        if ((size_t)snprintf(file, sizeof(file), "%s/moetier-bench-%d.tmp", path,
                             (int)getpid()) >= sizeof(file)) {
            st = mt_fail(MT_ERR_INVAL, 0, "disk path '%s' is too long", path);
            goto out_free;
        }
        st = write_test_file(file, o->file_bytes, buf, (size_t)buf_bytes, cb, &test_fd);
        if (st != MT_OK) {
            goto out_free;
        }
        /* The file has no name any more; the readers open it through our descriptor. */
        snprintf(file, sizeof(file), "/proc/self/fd/%d", test_fd);
    } else {
        snprintf(file, sizeof(file), "%s", path);
    }
    for (int bi = 0; bi < o->n_blocks; bi++) {
        for (int qi = 0; qi < o->n_qd; qi++) {
            struct mt_io_disk_point pt = {.qd = o->qds[qi], .block_bytes = o->blocks[bi]};

            st = disk_point(file, pt.qd, pt.block_bytes, pass, buf, &cursor, &pt.gbps,
                            &pt.seconds, &pt.direct);
            if (st != MT_OK) {
                goto out_free;
            }
            if (cb->point != NULL) {
                cb->point(cb->ctx, &pt);
            }
        }
    }

out_free:
    if (test_fd >= 0) {
        close(test_fd);
    }
    free(buf);
    return st;
}
