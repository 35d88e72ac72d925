/* SPDX-License-Identifier: MIT */
/*
 * test_disk_bench.c - io/disk_bench on a temporary directory, linked with io/ and the base
 * library alone (issue 8: a leaf links without the rest of runtime/).
 *
 * A small test file is written, read at two points and leaves nothing behind; a test file larger
 * than the file system, or one that would eat into the margin kept free, is refused before a
 * byte is written, with a --disk-size hint; a path that is neither a file nor a directory is
 * refused by name.
 */
#include <config.h>

#include "io/disk_bench.h"

#include "runtime/base/status.h"
#include "tests/tap.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

static int n_points;
static int n_written;

static void
on_written(void *ctx, uint64_t bytes, double seconds, bool direct)
{
    (void)ctx;
    (void)seconds;
    (void)direct;
    n_written += bytes == (8u << 20);
}

static void
on_point(void *ctx, const struct mt_io_disk_point *pt)
{
    (void)ctx;
    n_points += pt->gbps > 0 && pt->seconds > 0 && pt->block_bytes == (1u << 20);
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
    struct statvfs vfs;
    uint64_t total;
    uint64_t avail;
    uint64_t margin;
    mt_status_t st;

    tap_plan(6);
    st = mt_io_disk_bench_run(tmp, &o, &cb);
    tap_ok(st == MT_OK && n_written == 1 && n_points == 2,
           "8 MiB test file written once, read at qd 1 and 4 (%d points)", n_points);
    tap_ok(dir_is_empty(tmp), "the test file is gone afterwards");

    if (statvfs(tmp, &vfs) != 0) {
        tap_skip_all("statvfs failed");
    }
    total = (uint64_t)vfs.f_blocks * vfs.f_frsize;
    avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    margin = mt_io_disk_bench_margin(total);
    tap_ok(margin > 0 && margin <= ((uint64_t)1 << 30) && margin <= total / 20,
           "margin %.2f GiB: 1 GiB or 5%% of a small file system", margin / 1073741824.0);

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
    tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "kept free") != NULL,
           "a test file that fits only inside the margin is refused: %s", mt_last_error());
    o.file_bytes = 8u << 20;
    st = mt_io_disk_bench_run("/dev/null", &o, &cb);
    tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "'/dev/null' is neither") != NULL,
           "a character device is refused by name: %s", mt_last_error());
    mt_log_set_quiet(false);
    tap_rmtree(tmp);
    return tap_done();
}
