/* SPDX-License-Identifier: MIT */
/*
 * test_disk_bench.c - io/disk_bench on a temporary directory, linked with io/ and the base
 * library alone (issue 8: a leaf links without the rest of runtime/).
 *
 * A small test file is written, read at two points and leaves nothing behind; a test file larger
 * than the file system, or one that would eat into the margin kept free, is refused before a
 * byte is written, with a --disk-size hint; a path that is neither a file nor a directory is
 * refused by name. Each point reads its pass (gbps x seconds, in 1e9 bytes per second), blocks
 * outer and qds inner; pass 0 reads the whole file, a pass below a block one block; the test file
 * has exactly the size asked; a regular file is read as it is; callbacks may be NULL; a file
 * smaller than a block, no queue depth and a missing path are refused, as is a test file name
 * taken already (that file left alone); the margin is 5% below 20 GiB of file system and 1 GiB
 * above.
 */
#include <config.h>

#include "io/disk_bench.h"

#include "runtime/base/status.h"
#include "tests/tap.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static int n_points;
static int n_written;

/* What the callbacks saw: the test file's real size and O_DIRECT, and every point. */
static uint64_t written_size;
static bool written_direct;
static struct mt_io_disk_point seen[8];
static int n_seen;

/* Size of the open, unlinked test file (found through /proc/self/fd), or 0. */
static uint64_t
test_file_size(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    uint64_t size = 0;

    while (d != NULL && (e = readdir(d)) != NULL) {
        char link[300];
        char target[600];
        struct stat sb;
        ssize_t n;

        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        n = readlink(link, target, sizeof(target) - 1);
        if (n > 0) {
            target[n] = '\0';
            if (strstr(target, "moetier-bench-") != NULL && stat(link, &sb) == 0) {
                size = (uint64_t)sb.st_size;
            }
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    return size;
}

static void
on_written(void *ctx, uint64_t bytes, double seconds, bool direct)
{
    (void)ctx;
    (void)seconds;
    n_written += bytes == (8u << 20);
    written_size = test_file_size();
    written_direct = direct;
}

static void
on_point(void *ctx, const struct mt_io_disk_point *pt)
{
    (void)ctx;
    n_points += pt->gbps > 0 && pt->seconds > 0 && pt->block_bytes == (1u << 20);
    if (n_seen < 8) {
        seen[n_seen++] = *pt;
    }
}

/* Bytes point i read: gbps is 1e9 bytes per second over the whole pass. */
static double
point_bytes(int i)
{
    return seen[i].gbps * 1e9 * seen[i].seconds;
}

/* Whether point i is (qd, block), read bytes (within 0.1%) and says direct. */
static bool
point_is(int i, int qd, uint64_t block, uint64_t bytes, bool direct)
{
    double b = point_bytes(i);

    return i < n_seen && seen[i].qd == qd && seen[i].block_bytes == block && b > bytes * 0.999 &&
           b < bytes * 1.001 && seen[i].direct == direct;
}

/* Whether the file system under dir accepts O_DIRECT (a probe file, removed). */
static bool
accepts_direct(const char *dir)
{
    char path[600];
    int fd;

    snprintf(path, sizeof(path), "%s/probe", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_DIRECT, 0600);
    if (fd >= 0) {
        close(fd);
    }
    unlink(path);
    return fd >= 0;
}

static bool
dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool empty = d != NULL;

    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            empty = false;
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    return empty;
}

int
main(void)
{
    const char *tmp = tap_tmpdir();
    static const int qds[2] = {1, 4};
    static const uint64_t blocks[1] = {1u << 20};
    struct mt_io_disk_bench_opts o = {8u << 20, 4u << 20, qds, 2, blocks, 1};
    struct mt_io_disk_bench_cb cb = {on_written, on_point, NULL};
    const struct mt_io_disk_bench_cb no_cb = {NULL, NULL, NULL};
    struct statvfs vfs;
    uint64_t total;
    uint64_t avail;
    uint64_t margin;
    mt_status_t st;
    bool direct;

    tap_plan(0);
    direct = accepts_direct(tmp);
    st = mt_io_disk_bench_run(tmp, &o, &cb);
    tap_ok(st == MT_OK && n_written == 1 && n_points == 2,
           "8 MiB test file written once, read at qd 1 and 4 (%d points)", n_points);
    tap_ok(dir_is_empty(tmp), "the test file is gone afterwards");
    tap_ok(n_seen == 2 && point_is(0, 1, 1u << 20, 4u << 20, direct) &&
               point_is(1, 4, 1u << 20, 4u << 20, direct) && written_direct == direct,
           "each point reads the 4 MiB pass (gbps x seconds: %.0f, %.0f bytes), O_DIRECT %s",
           n_seen > 0 ? point_bytes(0) : 0.0, n_seen > 1 ? point_bytes(1) : 0.0,
           direct ? "accepted" : "refused");

    /* Blocks outer, qds inner; a file size that is no multiple of the write chunk is written
     * exactly; pass 0 reads the whole file; a pass below a block still reads one block. */
    {
        static const uint64_t two[2] = {1u << 20, 2u << 20};
        struct mt_io_disk_bench_opts o2 = {(9u << 20) + 4096, 0, qds, 2, two, 2};
        struct mt_io_disk_bench_opts o3 = {8u << 20, 256u << 10, qds, 1, blocks, 1};

        n_seen = 0;
        written_size = 0;
        st = mt_io_disk_bench_run(tmp, &o2, &cb);
        tap_ok(st == MT_OK && written_size == o2.file_bytes,
               "a 9 MiB + 4 KiB test file is written to exactly that size (%llu)",
               (unsigned long long)written_size);
        tap_ok(st == MT_OK && n_seen == 4 && point_is(0, 1, 1u << 20, 9u << 20, direct) &&
                   point_is(1, 4, 1u << 20, 9u << 20, direct) &&
                   point_is(2, 1, 2u << 20, 8u << 20, direct) &&
                   point_is(3, 4, 2u << 20, 8u << 20, direct),
               "blocks outer, qds inner; pass 0 reads the file's whole blocks (9 MiB of 1 MiB, "
               "8 MiB of 2 MiB)");
        n_seen = 0;
        st = mt_io_disk_bench_run(tmp, &o3, &cb);
        tap_ok(st == MT_OK && n_seen == 1 && point_is(0, 1, 1u << 20, 1u << 20, direct),
               "a 256 KiB pass of 1 MiB blocks reads one block");
        n_seen = 0;
        o3.pass_bytes = 2u << 20;
        o3.qds = qds + 1; /* qd 4, more than the pass's 2 reads */
        st = mt_io_disk_bench_run(tmp, &o3, &cb);
        tap_ok(st == MT_OK && n_seen == 1 && point_is(0, 4, 1u << 20, 2u << 20, direct),
               "qd 4 on a pass of 2 blocks reads 2 blocks, no more");
        o3.qds = qds;
        o3.pass_bytes = 256u << 10;
        st = mt_io_disk_bench_run(tmp, &o3, NULL);
        tap_ok(st == MT_OK && mt_io_disk_bench_run(tmp, &o3, &no_cb) == MT_OK && dir_is_empty(tmp),
               "no callbacks, or NULL ones, are allowed");
    }

    if (statvfs(tmp, &vfs) != 0) {
        tap_skip_all("statvfs failed");
    }
    total = (uint64_t)vfs.f_blocks * vfs.f_frsize;
    avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    margin = mt_io_disk_bench_margin(total);
    tap_ok(margin > 0 && margin <= ((uint64_t)1 << 30) && margin <= total / 20,
           "margin %.2f GiB: 1 GiB or 5%% of a small file system", margin / 1073741824.0);
    tap_ok(mt_io_disk_bench_margin((uint64_t)10 << 30) == (uint64_t)512 << 20 &&
               mt_io_disk_bench_margin((uint64_t)20 << 30) == (uint64_t)1 << 30 &&
               mt_io_disk_bench_margin((uint64_t)1 << 40) == (uint64_t)1 << 30,
           "margin of 10 GiB: 512 MiB (5%%); of 20 GiB and 1 TiB: 1 GiB");

    mt_log_set_quiet(true);
    o.file_bytes = (total / 4096 + 1) * 4096;
    n_written = 0;
    st = mt_io_disk_bench_run(tmp, &o, &cb);
    tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "does not fit") != NULL &&
               n_written == 0 && dir_is_empty(tmp),
           "a test file larger than the file system is refused before writing: %s",
           mt_last_error());
    o.file_bytes = (avail - margin / 2) / 4096 * 4096;
    st = mt_io_disk_bench_check_space(tmp, o.file_bytes);
    tap_ok(
        st == MT_ERR_INVAL && strstr(mt_last_error(), "kept free") != NULL &&
            (avail < margin + (128u << 20) || strstr(mt_last_error(), "try --disk-size") != NULL),
        "a test file that fits only inside the margin is refused, with a --disk-size hint "
        "where more than 64 MiB would fit: %s",
        mt_last_error());
    o.file_bytes = 8u << 20;
    st = mt_io_disk_bench_run("/dev/null", &o, &cb);
    tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "'/dev/null' is neither") != NULL,
           "a character device is refused by name: %s", mt_last_error());

    /* A regular file is read as it is (nothing written); one smaller than a block is refused. */
    {
        static const uint64_t big[1] = {16u << 20};
        struct mt_io_disk_bench_opts of = {0, 1u << 20, qds, 1, blocks, 1};
        struct mt_io_disk_bench_opts obig = {0, 0, qds, 1, big, 1};
        struct mt_io_disk_bench_opts none = {8u << 20, 0, qds, 0, blocks, 1};
        char path[600];
        char *data = calloc(1, 3u << 20);
        int fd;

        snprintf(path, sizeof(path), "%s/given.bin", tmp);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (data == NULL || fd < 0 || write(fd, data, 3u << 20) != (ssize_t)(3u << 20)) {
            tap_bail_out("cannot write a file to read");
        }
        close(fd);
        n_written = 0;
        n_seen = 0;
        st = mt_io_disk_bench_run(path, &of, &cb);
        tap_ok(st == MT_OK && n_written == 0 && n_seen == 1 &&
                   point_is(0, 1, 1u << 20, 1u << 20, direct),
               "a regular file is read as it is, nothing written");
        st = mt_io_disk_bench_run(path, &obig, &cb);
        tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "smaller than one") != NULL,
               "a file smaller than one block is refused: %s", mt_last_error());
        st = mt_io_disk_bench_run(tmp, &none, &cb);
        tap_ok(st == MT_ERR_INVAL, "no queue depth is refused: %s", mt_last_error());
        /* The test file's name taken already: refused, and that file is not ours to touch. */
        snprintf(path, sizeof(path), "%s/moetier-bench-%d.tmp", tmp, (int)getpid());
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || write(fd, "keep", 4) != 4 || close(fd) != 0) {
            tap_bail_out("cannot write a file in the test file's way");
        }
        n_written = 0;
        st = mt_io_disk_bench_run(tmp, &o, &cb);
        {
            struct stat sb;

            tap_ok(st == MT_ERR_IO && n_written == 0 && stat(path, &sb) == 0 && sb.st_size == 4,
                   "a test file name taken already is refused and left as it was: %s",
                   mt_last_error());
        }
        unlink(path);
        snprintf(path, sizeof(path), "%s/missing", tmp);
        st = mt_io_disk_bench_run(path, &o, &cb);
        tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "missing") != NULL,
               "a missing path is refused by name: %s", mt_last_error());
        st = mt_io_disk_bench_check_space(path, 4096);
        tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "cannot query free space") != NULL,
               "the free space of a missing directory cannot be queried: %s", mt_last_error());
        free(data);
    }
    mt_log_set_quiet(false);
    tap_rmtree(tmp);
    return tap_done();
}
