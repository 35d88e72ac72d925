/* SPDX-License-Identifier: MIT */
/*
 * test_uring_reader.c - the io_uring reader returns exactly what pread returns: aligned reads
 * with many in flight, the short last block, any unaligned range, registered buffers, forced
 * buffered reads, a filesystem that refuses O_DIRECT (tmpfs where the kernel does), a file that
 * shrinks while open; and it reports bad arguments and missing files with a status, not a crash,
 * as it does what the kernel refuses (a ring, a read, a buffer registration). The queue depth
 * range is checked at both ends, and a read_range buffer of exactly the size it needs is taken.
 */
#include <config.h>

#include "io/uring_reader.h"
#include "tests/submit_faults.h"
#include "tests/tap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define FILE_BYTES ((3u << 20) + 1234u) /* not a multiple of 4 KiB: the last block is short */
#define BLOCK (64u << 10)

static unsigned char *want; /* the file's bytes, read back with pread */

/* Write FILE_BYTES of a position-dependent pattern to path and read it back into `want`. */
static bool
make_file(const char *path)
{
    unsigned char *data = malloc(FILE_BYTES);
    int fd;
    bool ok;

    if (data == NULL) {
        return false;
    }
    for (size_t i = 0; i < FILE_BYTES; i++) {
        data[i] = (unsigned char)((i * 2654435761u) >> 13);
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ok = fd >= 0 && write(fd, data, FILE_BYTES) == (ssize_t)FILE_BYTES;
    if (fd >= 0) {
        close(fd);
    }
    fd = open(path, O_RDONLY);
    if (want == NULL) {
        want = malloc(FILE_BYTES);
    }
    ok = ok && fd >= 0 && want != NULL && pread(fd, want, FILE_BYTES, 0) == (ssize_t)FILE_BYTES;
    ok = ok && memcmp(want, data, FILE_BYTES) == 0;
    if (fd >= 0) {
        close(fd);
    }
    free(data);
    return ok;
}

/* Read the whole file in BLOCK pieces with up to `depth` in flight; compare with `want`. */
static bool
read_all(struct mt_io_uring_reader *r, unsigned char *buf, unsigned depth)
{
    uint64_t n_blocks = MT_CEIL_DIV(FILE_BYTES, BLOCK);
    uint64_t next = 0;
    uint64_t total = 0;
    struct mt_io_done done;

    memset(buf, 0, n_blocks * BLOCK);
    while (next < n_blocks || mt_io_uring_reader_in_flight(r) > 0) {
        while (next < n_blocks && mt_io_uring_reader_in_flight(r) < depth) {
            if (mt_io_uring_reader_submit(r, buf + next * BLOCK, next * BLOCK, BLOCK, next) !=
                MT_OK) {
                return false;
            }
            next++;
        }
        if (mt_io_uring_reader_wait(r, &done) != MT_OK) {
            return false;
        }
        total += done.bytes;
        if (done.bytes != BLOCK && done.tag != n_blocks - 1) {
            tap_diag("block %llu came back with %zu bytes", (unsigned long long)done.tag,
                     done.bytes);
            return false;
        }
    }
    if (total != FILE_BYTES || memcmp(buf, want, FILE_BYTES) != 0) {
        tap_diag("read %llu bytes, want %u, or contents differ", (unsigned long long)total,
                 FILE_BYTES);
        return false;
    }
    return true;
}

/* Unaligned ranges through read_range, each against pread's bytes. */
static bool
read_ranges(struct mt_io_uring_reader *r, unsigned char *buf, size_t cap)
{
    static const struct {
        uint64_t off;
        size_t len;
    } ranges[] = {
        {0, 1},
        {1, 4095},
        {4095, 2},
        {4096, 4096},
        {12345, 67890},
        {100000, 1 << 20},
        {FILE_BYTES - 1, 1},
        {FILE_BYTES - 5000, 5000},
        {777, FILE_BYTES - 777},
    };

    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        const void *data = NULL;
        mt_status_t st =
            mt_io_uring_reader_read_range(r, ranges[i].off, ranges[i].len, buf, cap, &data);

        if (st != MT_OK || memcmp(data, want + ranges[i].off, ranges[i].len) != 0) {
            tap_diag("range %llu+%zu: %s", (unsigned long long)ranges[i].off, ranges[i].len,
                     st != MT_OK ? mt_last_error() : "contents differ");
            return false;
        }
    }
    return true;
}

/* Whether this kernel's filesystem at dir accepts O_DIRECT opens. */
static bool
accepts_direct(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECT);

    if (fd < 0) {
        return false;
    }
    close(fd);
    return true;
}

/*
 * Whether the open fd on path (the reader's own: the test holds none) has O_DIRECT set, from
 * /proc/self/fdinfo: 1 yes, 0 no, -1 when no such fd is found.
 */
static int
fd_is_direct(const char *path)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int found = -1;

    while (d != NULL && found < 0 && (de = readdir(d)) != NULL) {
        char link[600];
        char target[600];
        char line[128];
        unsigned flags;
        ssize_t n;
        FILE *f;

        snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
        n = readlink(link, target, sizeof(target) - 1);
        if (n < 0 || (size_t)n != strlen(path) || memcmp(target, path, (size_t)n) != 0) {
            continue;
        }
        snprintf(link, sizeof(link), "/proc/self/fdinfo/%s", de->d_name);
        f = fopen(link, "r");
        while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
            if (sscanf(line, "flags: %o", &flags) == 1) {
                found = (flags & O_DIRECT) != 0;
            }
        }
        if (f != NULL) {
            fclose(f);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    return found;
}

/*
 * O_DIRECT refused only when reading, with 4 reads in flight: the first turns it off (one
 * warning, and the fd itself no longer has O_DIRECT: reads go through the page cache), and the
 * other three, issued with it, are read again buffered.
 */
static void
test_refuse_direct_reads(const char *dir, const char *path, unsigned char *buf, size_t cap)
{
    struct mt_io_uring_reader *r = NULL;
    char log[512];
    mt_status_t st;
    bool direct;
    bool ok;
    int before = -1;
    int after = -1;
    int warned;
    int saved;

    snprintf(log, sizeof(log), "%s/stderr.txt", dir);
    st = mt_io_uring_reader_create(path, 4, MT_IO_READER_TEST_REFUSE_DIRECT_READS, &r);
    direct = st == MT_OK && mt_io_uring_reader_is_direct(r);
    if (st == MT_OK) {
        before = fd_is_direct(path);
    }
    saved = tap_stderr_to(log);
    ok = st == MT_OK && read_all(r, buf, 4) && !mt_io_uring_reader_is_direct(r) &&
         read_ranges(r, buf, cap);
    tap_stderr_restore(saved);
    if (st == MT_OK) {
        after = fd_is_direct(path);
    }
    tap_ok(ok,
           "O_DIRECT refused at read time (it was %s at open): every read in flight read "
           "again buffered, equal to pread",
           direct ? "accepted" : "refused");
    warned = tap_count_lines(log, "refuses O_DIRECT");
    if (direct) {
        tap_ok(warned == 1 && before == 1 && after == 0,
               "the refusal is warned once (%d), and turns O_DIRECT off on the fd (%d, then %d)",
               warned, before, after);
    } else {
        tap_ok(true, "O_DIRECT turned off at read time # SKIP O_DIRECT refused at open");
    }
    mt_io_uring_reader_destroy(r);
}

/*
 * Failures the kernel reports, with the reason in the message: a ring it cannot set up (no fd
 * left for it: RLIMIT_NOFILE) fails create, without the RLIMIT_MEMLOCK hint that only ENOMEM
 * earns; a read it refuses (an offset past the largest file position: EINVAL) fails, and on a
 * buffered reader is not taken for an O_DIRECT refusal and retried.
 */
static void
test_kernel_refusals(const char *path, unsigned char *buf)
{
    struct mt_io_uring_reader *r = NULL;
    struct mt_io_done done;
    struct rlimit rl;
    struct rlimit low;
    mt_status_t st;
    int lowest = open("/dev/null", O_RDONLY | O_CLOEXEC); /* the lowest free fd */

    /* The lowest free fd goes to the file; the ring would need the next one. */
    if (lowest < 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        tap_bail_out("cannot read RLIMIT_NOFILE");
    }
    close(lowest);
    low = rl;
    low.rlim_cur = (rlim_t)lowest + 1;
    if (setrlimit(RLIMIT_NOFILE, &low) != 0) {
        tap_bail_out("cannot lower RLIMIT_NOFILE");
    }
    st = mt_io_uring_reader_create(path, 4, 0, &r);
    setrlimit(RLIMIT_NOFILE, &rl);
    tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "io_uring setup") != NULL &&
               strstr(mt_last_error(), strerror(EMFILE)) != NULL &&
               strstr(mt_last_error(), "RLIMIT_MEMLOCK") == NULL,
           "a ring without an fd left fails create: %s", mt_last_error());
    if (st == MT_OK) {
        mt_io_uring_reader_destroy(r);
        r = NULL;
    }

    st = mt_io_uring_reader_create(path, 2, MT_IO_READER_BUFFERED, &r);
    memset(&done, 0, sizeof(done));
    st = st == MT_OK ? mt_io_uring_reader_submit(r, buf, 1ull << 63, MT_IO_ALIGN, 5) : st;
    st = st == MT_OK ? mt_io_uring_reader_wait(r, &done) : st;
    tap_ok(st == MT_ERR_IO && done.tag == 5 && mt_io_uring_reader_in_flight(r) == 0 &&
               strstr(mt_last_error(), strerror(EINVAL)) != NULL,
           "a read the kernel refuses with EINVAL (offset 2^63) fails: %s", mt_last_error());
    mt_io_uring_reader_destroy(r);
}

/* A submit that fails is refused and gives its slot back: nothing is left to wait for. */
static void
test_submit_fails(const char *path, unsigned char *buf)
{
    struct mt_io_uring_reader *r = NULL;
    mt_status_t st;
    unsigned left = 99;

    st = mt_io_uring_reader_create(path, 2, 0, &r);
    if (st == MT_OK) {
        submit_faults_left = 1;
        st = mt_io_uring_reader_submit(r, buf, 0, MT_IO_ALIGN, 1);
        submit_faults_left = 0;
        left = mt_io_uring_reader_in_flight(r);
    }
    tap_ok(st == MT_ERR_IO && left == 0 && strstr(mt_last_error(), "submit") != NULL,
           "a submit that fails is refused and holds no slot (%u in flight): %s", left,
           mt_last_error());
    mt_io_uring_reader_destroy(r); /* a slot still held would wait for a read never sent */
}

/*
 * A buffered read may stop short anywhere, not only at end of file: a pipe (reached by path)
 * that holds 5000 bytes when the read goes out gives those; the rest, written after, is read on.
 */
static void
test_buffered_short(unsigned char *buf)
{
    struct mt_io_uring_reader *r = NULL;
    struct mt_io_done done = {0};
    char path[64];
    mt_status_t st;
    int fds[2];
    bool ok;

    if (pipe(fds) != 0) {
        tap_bail_out("cannot make a pipe");
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[0]);
    st = mt_io_uring_reader_create(path, 2, MT_IO_READER_BUFFERED, &r);
    ok = st == MT_OK && write(fds[1], want, 5000) == 5000 &&
         mt_io_uring_reader_submit(r, buf, 0, 4 * MT_IO_ALIGN, 3) == MT_OK &&
         write(fds[1], want + 5000, 4 * MT_IO_ALIGN - 5000) == 4 * MT_IO_ALIGN - 5000 &&
         mt_io_uring_reader_wait(r, &done) == MT_OK;
    tap_ok(ok && done.tag == 3 && done.bytes == 4 * MT_IO_ALIGN &&
               memcmp(buf, want, 4 * MT_IO_ALIGN) == 0,
           "buffered: a read that stops off the 4 KiB grid short of its end is read on (%zu "
           "bytes): %s",
           done.bytes, st == MT_OK ? "ok" : mt_last_error());
    close(fds[1]); /* a read still in flight on the pipe ends now, at end of file */
    mt_io_uring_reader_destroy(r);
    close(fds[0]);
}

/* Whether the kernel registers [p, p+len) with a ring of its own (false without io_uring). */
static bool
kernel_registers(void *p, size_t len)
{
    struct iovec iov = {.iov_base = p, .iov_len = len};
    struct io_uring ring;
    bool ok;

    if (io_uring_queue_init(2, &ring, 0) < 0) {
        return false;
    }
    ok = io_uring_register_buffers(&ring, &iov, 1) == 0;
    io_uring_queue_exit(&ring);
    return ok;
}

/* Registering memory the kernel will not pin (PROT_NONE) fails with MT_ERR_IO; reads go on. */
static void
test_register_refused(const char *path, unsigned char *buf)
{
    size_t len = 2 * MT_IO_ALIGN;
    void *none = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct mt_io_uring_reader *r = NULL;
    size_t got = 0;
    bool ok;

    if (none == MAP_FAILED) {
        tap_bail_out("cannot map PROT_NONE memory");
    }
    if (kernel_registers(none, len)) {
        tap_ok(true, "a refused registration # SKIP the kernel registers PROT_NONE memory");
    } else {
        ok = mt_io_uring_reader_create(path, 2, 0, &r) == MT_OK;
        ok = ok && mt_io_uring_reader_register_buffers(r, &none, &len, 1) == MT_ERR_IO;
        ok = ok && mt_io_uring_reader_read(r, buf, 0, MT_IO_ALIGN, &got) == MT_OK &&
             got == MT_IO_ALIGN && memcmp(buf, want, MT_IO_ALIGN) == 0;
        tap_ok(ok, "a registration the kernel refuses fails with MT_ERR_IO, and reads go on");
        mt_io_uring_reader_destroy(r);
    }
    munmap(none, len);
}

int
main(void)
{
    const char *dir = tap_tmpdir();
    char path[512];
    char shm_path[512];
    size_t cap = MT_CEIL_DIV(FILE_BYTES, BLOCK) * BLOCK + 2 * MT_IO_ALIGN;
    unsigned char *buf = NULL;
    struct mt_io_uring_reader *r = NULL;
    struct mt_io_done done;
    const void *data;
    uint64_t aoff;
    size_t alen;
    size_t got;
    mt_status_t st;
    bool ok;
    bool direct;
    char log[600];
    int saved;
    int warned;

    mt_log_set_quiet(true);
    snprintf(path, sizeof(path), "%s/data.bin", dir);
    if (posix_memalign((void **)&buf, MT_IO_ALIGN, cap) != 0 || !make_file(path)) {
        tap_diag("cannot write the test file under %s", dir);
        return 1;
    }

    st = mt_io_uring_reader_create(path, 8, 0, &r);
    if (st == MT_ERR_IO && strstr(mt_last_error(), "io_uring setup") != NULL) {
        /* Containers often forbid io_uring (seccomp): nothing to test here. */
        printf("# %s\n", mt_last_error());
        tap_skip_all("io_uring is not available here");
        free(buf);
        free(want);
        tap_rmtree(dir);
        return 0;
    }
    tap_plan(31);

    mt_io_range_align(4095, 2, &aoff, &alen);
    ok = aoff == 0 && alen == 8192;
    mt_io_range_align(8192, 4096, &aoff, &alen);
    ok = ok && aoff == 8192 && alen == 4096;
    mt_io_range_align(5000, 0, &aoff, &alen);
    tap_ok(ok && aoff == 4096 && alen == 4096, "range_align widens to 4 KiB bounds");

    tap_ok(st == MT_OK, "create a reader with queue depth 8");
    if (st != MT_OK) {
        tap_diag("%s", mt_last_error());
        return tap_done();
    }
    tap_diag("O_DIRECT on %s: %s", dir, mt_io_uring_reader_is_direct(r) ? "yes" : "no");
    tap_ok(mt_io_uring_reader_file_size(r) == FILE_BYTES, "file size at open");
    tap_ok(read_all(r, buf, 1), "queue depth 1: every block equals pread");
    tap_ok(read_all(r, buf, 8), "queue depth 8: every block equals pread, any completion order");
    st = mt_io_uring_reader_read(r, buf, FILE_BYTES & ~(MT_IO_ALIGN - 1), MT_IO_ALIGN, &got);
    tap_ok(st == MT_OK && got == (FILE_BYTES % MT_IO_ALIGN) &&
               memcmp(buf, want + (FILE_BYTES & ~(MT_IO_ALIGN - 1)), got) == 0,
           "the last block comes back short (%zu bytes) and exact", got);
    st = mt_io_uring_reader_read(r, buf, 64u << 20, MT_IO_ALIGN, &got);
    tap_ok(st == MT_OK && got == 0, "a read past the end gives 0 bytes");
    tap_ok(read_ranges(r, buf, cap), "unaligned ranges through read_range equal pread");
    st = mt_io_uring_reader_read_range(r, 4095, 2, buf, 4096, &data);
    tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "8192-byte") != NULL,
           "read_range names the buffer size it needs: %s", mt_last_error());
    st = mt_io_uring_reader_read_range(r, 4095, 2, buf, 8192, &data);
    tap_ok(st == MT_OK && data == buf + 4095 && memcmp(data, want + 4095, 2) == 0,
           "read_range takes a buffer of exactly the size it needs (8192 bytes for 4095+2)");
    st = mt_io_uring_reader_read_range(r, FILE_BYTES - 10, 20, buf, cap, &data);
    tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "ends at") != NULL,
           "a range past the end of the file fails: %s", mt_last_error());
    st = mt_io_uring_reader_wait(r, &done);
    tap_ok(st == MT_ERR_INVAL, "wait with nothing in flight is refused");

    {
        void *bufs[1] = {buf};
        size_t lens[1] = {cap};

        st = mt_io_uring_reader_register_buffers(r, bufs, lens, 1);
        if (st == MT_OK) {
            tap_ok(read_all(r, buf, 8) && read_ranges(r, buf, cap),
                   "registered buffer: reads equal pread");
        } else if (kernel_registers(buf, cap)) {
            tap_ok(false, "registered buffer: refused, yet the kernel registers it: %s",
                   mt_last_error());
        } else {
            tap_ok(true, "registered buffer # SKIP kernel refused: %s", mt_last_error());
        }
    }
    /* EINVAL at an offset no file can have is the offset's fault, not O_DIRECT's: it fails
     * and O_DIRECT stays on. */
    if (mt_io_uring_reader_is_direct(r)) {
        st = mt_io_uring_reader_read(r, buf, 1ull << 63, MT_IO_ALIGN, &got);
        tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), strerror(EINVAL)) != NULL &&
                   mt_io_uring_reader_is_direct(r) && read_all(r, buf, 4),
               "an O_DIRECT read at offset 2^63 fails and keeps O_DIRECT: %s", mt_last_error());
    } else {
        tap_ok(true, "an O_DIRECT read at offset 2^63 # SKIP no O_DIRECT on %s", dir);
    }
    mt_io_uring_reader_destroy(r);
    r = NULL;

    /* Queue full: depth 2 takes two reads, the third is refused; destroy waits for them. */
    st = mt_io_uring_reader_create(path, 2, 0, &r);
    ok = st == MT_OK && mt_io_uring_reader_submit(r, buf, 0, BLOCK, 0) == MT_OK &&
         mt_io_uring_reader_submit(r, buf + BLOCK, BLOCK, BLOCK, 1) == MT_OK;
    tap_ok(ok && mt_io_uring_reader_submit(r, buf + 2 * BLOCK, 2 * BLOCK, BLOCK, 2) == MT_ERR_INVAL,
           "a submit beyond the queue depth is refused");
    mt_io_uring_reader_destroy(r);
    r = NULL;

    st = mt_io_uring_reader_create(path, 4, MT_IO_READER_BUFFERED, &r);
    tap_ok(st == MT_OK && !mt_io_uring_reader_is_direct(r) && read_all(r, buf, 4) &&
               read_ranges(r, buf, cap),
           "forced buffered reads equal pread");
    mt_io_uring_reader_destroy(r);
    r = NULL;

    /* tmpfs: refuses O_DIRECT on older kernels (the fallback path), accepts it on newer. */
    snprintf(shm_path, sizeof(shm_path), "/dev/shm/mt_test_uring_%d.bin", (int)getpid());
    if (make_file(shm_path)) {
        bool direct_ok = accepts_direct(shm_path);

        st = mt_io_uring_reader_create(shm_path, 4, 0, &r);
        tap_ok(st == MT_OK && mt_io_uring_reader_is_direct(r) == direct_ok && read_all(r, buf, 4) &&
                   read_ranges(r, buf, cap),
               "tmpfs (O_DIRECT %s): reads equal pread",
               direct_ok ? "accepted" : "refused, buffered fallback");
        mt_io_uring_reader_destroy(r);
        r = NULL;
        unlink(shm_path);
    } else {
        tap_ok(true, "tmpfs fallback # SKIP no writable /dev/shm");
    }

    /* The same fallback wherever tmpfs accepts O_DIRECT: the open is made to fail with EINVAL. */
    st = mt_io_uring_reader_create(path, 4, MT_IO_READER_TEST_REFUSE_DIRECT, &r);
    tap_ok(st == MT_OK && !mt_io_uring_reader_is_direct(r) && read_all(r, buf, 4) &&
               read_ranges(r, buf, cap),
           "O_DIRECT refused at open: buffered fallback reads equal pread");
    mt_io_uring_reader_destroy(r);
    r = NULL;

    test_refuse_direct_reads(dir, path, buf, cap);
    test_kernel_refusals(path, buf);
    test_register_refused(path, buf);
    test_submit_fails(path, buf);
    test_buffered_short(buf);

    /* The file shrinks after open (size says 3 MiB): reads stop at the new end, no hang. */
    st = mt_io_uring_reader_create(path, 4, 0, &r);
    direct = st == MT_OK && mt_io_uring_reader_is_direct(r);
    ok = st == MT_OK && truncate(path, BLOCK + 100) == 0;
    for (unsigned i = 0; ok && i < 3; i++) {
        ok = mt_io_uring_reader_submit(r, buf + (size_t)i * BLOCK, (uint64_t)i * BLOCK, BLOCK, i) ==
             MT_OK;
    }
    got = 0;
    while (ok && mt_io_uring_reader_in_flight(r) > 0) {
        ok = mt_io_uring_reader_wait(r, &done) == MT_OK && done.bytes == (done.tag == 0   ? BLOCK
                                                                          : done.tag == 1 ? 100
                                                                                          : 0);
        got += done.bytes;
    }
    tap_ok(ok && got == BLOCK + 100 && memcmp(buf, want, BLOCK + 100) == 0 &&
               mt_io_uring_reader_file_size(r) == FILE_BYTES &&
               mt_io_uring_reader_is_direct(r) == direct,
           "a file cut short after open: reads end at its new end (%zu bytes), O_DIRECT kept", got);
    mt_io_uring_reader_destroy(r);
    r = NULL;

    /* only EINVAL from the O_DIRECT open means the filesystem refuses O_DIRECT: a missing file
     * fails as missing, with no word of a fallback to the page cache */
    snprintf(log, sizeof(log), "%s/stderr-missing.txt", dir);
    saved = tap_stderr_to(log);
    st = mt_io_uring_reader_create("/nonexistent/x.bin", 4, 0, &r);
    tap_stderr_restore(saved);
    warned = tap_count_lines(log, "refuses O_DIRECT");
    tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "/nonexistent/x.bin") != NULL &&
               strstr(mt_last_error(), "No such file") != NULL && warned == 0,
           "a missing file (%d warnings of O_DIRECT refused): %s", warned, mt_last_error());
    st = mt_io_uring_reader_create(path, 0, 0, &r);
    tap_ok(st == MT_ERR_INVAL, "queue depth 0 is refused");
    st = mt_io_uring_reader_create(path, 5000, 0, &r);
    tap_ok(st == MT_ERR_INVAL, "queue depth 5000 is refused");
    st = mt_io_uring_reader_create(path, 4097, 0, &r);
    ok = st == MT_ERR_INVAL;
    st = mt_io_uring_reader_create(path, 4096, 0, &r);
    tap_ok(ok && st == MT_OK, "queue depth 4097 is refused, 4096 (the range's end) taken");
    mt_io_uring_reader_destroy(st == MT_OK ? r : NULL);
    r = NULL;
    mt_io_uring_reader_destroy(NULL);
    tap_ok(true, "destroy(NULL) is a no-op");

    free(buf);
    free(want);
    tap_rmtree(dir);
    return tap_done();
}
