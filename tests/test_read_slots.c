/* SPDX-License-Identifier: MIT */
/*
 * test_read_slots.c - the slot table under both io_uring readers (io/read_slots.h): what one
 * result does to a read (a short read continues, a stop off the 4 KiB grid is end of file only
 * under O_DIRECT, 0 is end of file, EAGAIN and EINTR ask again, other errors fail without counting
 * bytes), slot reuse, a refused ring leaves the table ring-less, and on a real ring: registered
 * files, every completion finds its slot, registered buffers are found (up to their edges, never
 * for a buffer lying partly outside; a new registration replaces the old, a refused one returns
 * -errno), a short read goes out again for the rest only, a wait a signal interrupts is waited
 * again, fini waits for reads still in flight, and after a submit that fails for good nothing is
 * submitted again.
 */
#include <config.h>

#include "io/read_slots.h"
#include "io/uring_reader.h" /* MT_IO_ALIGN */
#include "tests/submit_faults.h"
#include "tests/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KB16 (16u << 10)
#define FILE_BYTES (4 * KB16)

/* The result rules, on a ring-less table (io_queue's pread mode runs them the same way). */
static void
test_rules(void)
{
    struct mt_io_slots t;
    int fds[1] = {-1};
    static char buf[2 * KB16] __attribute__((aligned(4096)));
    unsigned a;
    unsigned b;
    bool ok;

    tap_ok(mt_io_slots_init(&t, 2, fds, 1, NULL), "a ring-less table of 2 slots");

    a = mt_io_slots_take(&t, 0, buf, 0, KB16, 7);
    ok = mt_io_slots_apply(&t, a, 8192, true) == MT_IO_STEP_AGAIN && t.slots[a].done == 8192;
    ok = ok && mt_io_slots_apply(&t, a, 8192, true) == MT_IO_STEP_DONE && t.slots[a].done == KB16 &&
         t.slots[a].tag == 7;
    tap_ok(ok, "a short read on the grid continues, the rest completes it");
    mt_io_slots_finish(&t, a);

    a = mt_io_slots_take(&t, 0, buf, 0, KB16, 0);
    ok = mt_io_slots_apply(&t, a, 5000, true) == MT_IO_STEP_DONE && t.slots[a].done == 5000;
    tap_ok(ok, "O_DIRECT: a stop off the 4 KiB grid is end of file");
    mt_io_slots_finish(&t, a);

    /* The grid is MT_IO_ALIGN, not the 512-byte sector: a stop on a sector boundary inside a
     * 4 KiB block is end of file too (reading on from there would fail with EINVAL). */
    a = mt_io_slots_take(&t, 0, buf, 0, KB16, 0);
    ok = mt_io_slots_apply(&t, a, 4096 + 512, true) == MT_IO_STEP_DONE &&
         t.slots[a].done == 4096 + 512;
    tap_ok(ok, "O_DIRECT: a stop on a 512-byte sector off the 4 KiB grid is end of file (done %zu)",
           t.slots[a].done);
    mt_io_slots_finish(&t, a);

    a = mt_io_slots_take(&t, 0, buf, 0, KB16, 0);
    ok = mt_io_slots_apply(&t, a, 5000, false) == MT_IO_STEP_AGAIN;
    ok = ok && mt_io_slots_apply(&t, a, 0, false) == MT_IO_STEP_DONE && t.slots[a].done == 5000;
    tap_ok(ok, "buffered: a stop off the grid continues, and 0 is end of file");
    mt_io_slots_finish(&t, a);

    a = mt_io_slots_take(&t, 0, buf, 0, KB16, 0);
    ok = mt_io_slots_apply(&t, a, 4096, true) == MT_IO_STEP_AGAIN &&
         mt_io_slots_apply(&t, a, -EAGAIN, true) == MT_IO_STEP_AGAIN &&
         mt_io_slots_apply(&t, a, -EINTR, true) == MT_IO_STEP_AGAIN && t.slots[a].done == 4096;
    tap_ok(ok, "EAGAIN and EINTR ask for the same read again, counting nothing");
    ok = mt_io_slots_apply(&t, a, -EIO, true) == MT_IO_STEP_FAILED && t.slots[a].done == 4096 &&
         t.slots[a].busy;
    ok = ok && mt_io_slots_apply(&t, a, -EPERM, false) == MT_IO_STEP_FAILED &&
         t.slots[a].done == 4096;
    tap_ok(ok, "EIO (or EPERM, errno 1) fails the read, keeping how far it got, and the slot "
               "until finish");
    mt_io_slots_finish(&t, a);

    a = mt_io_slots_take(&t, 0, buf, 0, KB16, 1);
    b = mt_io_slots_take(&t, 0, buf + KB16, KB16, KB16, 2);
    ok = a != b && t.in_flight == 2;
    mt_io_slots_finish(&t, a);
    ok = ok && t.in_flight == 1 && mt_io_slots_take(&t, 0, buf, 0, KB16, 3) == a &&
         t.slots[a].done == 0 && t.slots[a].fixed == -1;
    tap_ok(ok, "two reads take two slots; a freed slot is taken again, fresh");
    mt_io_slots_finish(&t, a);
    mt_io_slots_finish(&t, b);
    mt_io_slots_fini(&t);

    /* io_uring_queue_init refuses 0 entries: the table must stay ring-less, so that fini does not
     * tear down a ring that was never set up (and a caller falls back to pread). */
    ok = mt_io_slots_init(&t, 0, fds, 1, NULL);
    ok = ok && mt_io_slots_ring(&t) < 0 && !t.have_ring;
    mt_io_slots_fini(&t);
    tap_ok(ok, "a ring the kernel refuses (0 entries) leaves the table ring-less");
}

/* Queue slot i and wait for it to finish (a short read goes out again); true when it read every
 * byte of [off, off+KB16) of the file into its buffer. Frees the slot. */
static bool
read_whole(struct mt_io_slots *t, unsigned i, const unsigned char *want)
{
    const unsigned char *dst = t->slots[i].buf;
    uint64_t off = t->slots[i].off;
    unsigned got;
    int res;
    bool ok = mt_io_slots_queue(t, i) == MT_OK;

    while (ok) {
        ok = mt_io_slots_next(t, &got, &res) == MT_OK && got == i;
        if (!ok || mt_io_slots_apply(t, i, res, false) != MT_IO_STEP_AGAIN) {
            break;
        }
        ok = mt_io_slots_queue(t, i) == MT_OK;
    }
    ok = ok && res >= 0 && t->slots[i].done == KB16 && memcmp(dst, want + off, KB16) == 0;
    mt_io_slots_finish(t, i);
    return ok;
}

/*
 * The edges of a registered buffer [b, b+len): a read whose buffer lies wholly inside, touching
 * either edge, goes through it; one that starts before b or ends past b+len must not (the kernel
 * refuses a fixed read that leaves its buffer, with EFAULT), yet still reads its bytes. The
 * registration replaces the one before (registered says whether the kernel took that one), and
 * one the kernel refuses comes back as its -errno.
 */
static void
test_fixed_edges(struct mt_io_slots *t, unsigned char *buf, const unsigned char *want,
                 bool registered)
{
    struct iovec *iov = calloc(1, sizeof(*iov));
    unsigned char *b = buf + KB16;
    unsigned lo;
    unsigned hi;
    bool ok;
    int ret;

    iov->iov_base = b; /* [16 KiB, 48 KiB) of buf */
    iov->iov_len = 2 * KB16;
    ret = mt_io_slots_register_buffers(t, iov, 1);
    if (ret < 0) {
        if (registered) {
            tap_ok(false, "a second registration replaces the first: %s", strerror(-ret));
        } else {
            tap_ok(true, "registered buffer edges # SKIP kernel refused: %s", strerror(-ret));
        }
        tap_ok(true, "reads across the edges # SKIP kernel refused");
        tap_ok(true, "a refused registration # SKIP kernel refused");
        return;
    }
    lo = mt_io_slots_take(t, 0, b, KB16, KB16, 0);
    hi = mt_io_slots_take(t, 0, b + KB16, 2 * KB16, KB16, 1);
    ok = t->slots[lo].fixed == 0 && t->slots[hi].fixed == 0;
    memset(buf, 0, 2 * FILE_BYTES);
    ok = read_whole(t, lo, want) && ok;
    ok = read_whole(t, hi, want) && ok;
    tap_ok(ok, "buffers touching either edge of a registered one read through it");

    lo = mt_io_slots_take(t, 0, b - MT_IO_ALIGN, 0, KB16, 0);
    hi = mt_io_slots_take(t, 0, b + KB16 + MT_IO_ALIGN, KB16, KB16, 1);
    ok = t->slots[lo].fixed == -1 && t->slots[hi].fixed == -1;
    memset(buf, 0, 2 * FILE_BYTES);
    ok = read_whole(t, lo, want) && ok;
    ok = read_whole(t, hi, want) && ok;
    tap_ok(ok, "buffers lying partly outside a registered one (either side) still read all bytes");

    iov = calloc(1, sizeof(*iov));
    iov->iov_len = MT_IO_ALIGN; /* at NULL: the kernel answers EFAULT */
    ret = mt_io_slots_register_buffers(t, iov, 1);
    ok = ret < 0;
    memset(buf, 0, 2 * FILE_BYTES);
    ok = read_whole(t, mt_io_slots_take(t, 0, b, 0, KB16, 0), want) && ok;
    tap_ok(ok, "a registration the kernel refuses returns its -errno (%d); reads still work", ret);
}

/* Reads through a real ring: slots by user_data, registered buffers, fini with reads in flight. */
static void
test_ring(const char *path, const unsigned char *want)
{
    struct mt_io_slots t;
    unsigned char *buf = NULL;
    int fds[1];
    bool seen[4] = {false};
    bool ok = true;
    int ret;

    fds[0] = open(path, O_RDONLY | O_CLOEXEC);
    if (fds[0] < 0 || posix_memalign((void **)&buf, MT_IO_ALIGN, 2 * FILE_BYTES) != 0 ||
        !mt_io_slots_init(&t, 4, fds, 1, path)) {
        tap_bail_out("cannot set up the ring test");
    }
    ret = mt_io_slots_ring(&t);
    if (ret < 0) {
        tap_ok(true, "registered file # SKIP io_uring unavailable: %s", strerror(-ret));
        tap_ok(true, "ring reads # SKIP io_uring unavailable");
        tap_ok(true, "registered buffers # SKIP io_uring unavailable");
        tap_ok(true, "registered buffer edges # SKIP io_uring unavailable");
        tap_ok(true, "reads across the edges # SKIP io_uring unavailable");
        tap_ok(true, "fini with reads in flight # SKIP io_uring unavailable");
        mt_io_slots_fini(&t);
        close(fds[0]);
        free(buf);
        return;
    }
    tap_ok(mt_io_slots_register_files(&t) && t.fixed_files,
           "the file registers with the ring (the reads below go by its index)");
    for (unsigned k = 0; k < 4; k++) {
        unsigned i = mt_io_slots_take(&t, 0, buf + k * KB16, (uint64_t)k * KB16, KB16, 100 + k);

        ok = ok && mt_io_slots_queue(&t, i) == MT_OK;
    }
    while (ok && t.in_flight > 0) {
        unsigned i;
        int res;

        ok = mt_io_slots_next(&t, &i, &res) == MT_OK;
        if (ok && mt_io_slots_apply(&t, i, res, false) == MT_IO_STEP_AGAIN) {
            ok = mt_io_slots_queue(&t, i) == MT_OK;
            continue;
        }
        ok = ok && t.slots[i].done == KB16 && t.slots[i].tag >= 100 && !seen[t.slots[i].tag - 100];
        if (ok) {
            seen[t.slots[i].tag - 100] = true;
            mt_io_slots_finish(&t, i);
        }
    }
    tap_ok(ok && seen[0] && seen[1] && seen[2] && seen[3] && memcmp(buf, want, FILE_BYTES) == 0,
           "4 reads in flight: each completion finds its slot, the bytes equal the file");

    {
        struct iovec *iov = calloc(1, sizeof(*iov));

        iov->iov_base = buf;
        iov->iov_len = FILE_BYTES;
        ret = mt_io_slots_register_buffers(&t, iov, 1);
    }
    if (ret == 0) {
        unsigned in = mt_io_slots_take(&t, 0, buf + KB16, 0, KB16, 0);
        unsigned out = mt_io_slots_take(&t, 0, buf + FILE_BYTES, 0, KB16, 1);
        unsigned i;
        int res;

        ok = t.slots[in].fixed == 0 && t.slots[out].fixed == -1;
        mt_io_slots_finish(&t, out);
        memset(buf, 0, FILE_BYTES);
        ok = ok && mt_io_slots_queue(&t, in) == MT_OK && mt_io_slots_next(&t, &i, &res) == MT_OK &&
             i == in && res == (int)KB16 && memcmp(buf + KB16, want, KB16) == 0;
        mt_io_slots_finish(&t, in);
        tap_ok(ok, "a buffer inside the registered one reads through it; one outside does not");
    } else {
        tap_ok(true, "registered buffers # SKIP kernel refused: %s", strerror(-ret));
    }
    test_fixed_edges(&t, buf, want, ret == 0);

    /* Earlier checks have reported their own failures; a read taken but never queued would
     * leave fini waiting for a completion that cannot come. */
    ok = true;
    for (unsigned k = 0; k < 2; k++) {
        unsigned i = mt_io_slots_take(&t, 0, buf + k * KB16, (uint64_t)k * KB16, KB16, k);

        if (mt_io_slots_queue(&t, i) != MT_OK) {
            ok = false;
            mt_io_slots_finish(&t, i);
        }
    }
    mt_io_slots_fini(&t);
    tap_ok(ok && t.in_flight == 0 && t.slots == NULL, "fini waits for the 2 reads in flight");
    close(fds[0]);
    free(buf);
}

/*
 * A short read on a real ring goes out again for the rest only: a pipe holding 8 KiB answers a
 * 16 KiB read with 8 KiB; once 16 KiB more are written, the second read must ask for the missing
 * 8 KiB, finishing the read at 16 KiB and leaving the last 8 KiB in the pipe.
 */
static void
test_short(const unsigned char *want)
{
    struct mt_io_slots t;
    unsigned char *buf = NULL;
    unsigned char rest[8192];
    int fds[2];
    unsigned a;
    unsigned i;
    int res;
    int ret;
    bool ok;

    if (pipe(fds) != 0 || posix_memalign((void **)&buf, MT_IO_ALIGN, 2 * KB16) != 0 ||
        !mt_io_slots_init(&t, 2, fds, 1, NULL)) {
        tap_bail_out("cannot set up the short-read test");
    }
    ret = mt_io_slots_ring(&t);
    if (ret < 0) {
        tap_ok(true, "a short read on a ring # SKIP io_uring unavailable: %s", strerror(-ret));
        mt_io_slots_fini(&t);
    } else {
        memset(buf, 0, 2 * KB16);
        ok = write(fds[1], want, 8192) == 8192;
        a = mt_io_slots_take(&t, 0, buf, 0, KB16, 0);
        ok = ok && mt_io_slots_queue(&t, a) == MT_OK && mt_io_slots_next(&t, &i, &res) == MT_OK &&
             i == a && res == 8192 && mt_io_slots_apply(&t, a, res, false) == MT_IO_STEP_AGAIN;
        ok = ok && write(fds[1], want + 8192, KB16) == (ssize_t)KB16;
        ok = ok && mt_io_slots_queue(&t, a) == MT_OK && mt_io_slots_next(&t, &i, &res) == MT_OK &&
             i == a && mt_io_slots_apply(&t, a, res, false) == MT_IO_STEP_DONE;
        ok = ok && t.slots[a].done == KB16 && memcmp(buf, want, KB16) == 0;
        ok = ok && read(fds[0], rest, sizeof(rest)) == (ssize_t)sizeof(rest) &&
             memcmp(rest, want + KB16, sizeof(rest)) == 0;
        tap_ok(ok, "a short read goes out again for the missing bytes only (done %zu of %u)",
               t.slots[a].done, KB16);
        mt_io_slots_finish(&t, a);
        close(fds[1]); /* a read still in flight on the pipe ends now, at end of file */
        mt_io_slots_fini(&t);
    }
    close(fds[0]);
    if (ret < 0) {
        close(fds[1]);
    }
    free(buf);
}

/*
 * __io_uring_get_cqe (the waiting half of io_uring_wait_cqe) is wrapped at link time, as the
 * submits are (tests/submit_faults.c): while eintr_waits lasts, a wait returns -eintr_errno
 * (EINTR, as when a signal lands, or EAGAIN), after writing the pipe the pending read waits on,
 * so that the wait tried again finds its completion.
 */
struct io_uring_cqe;
int __real___io_uring_get_cqe(struct io_uring *ring, struct io_uring_cqe **cqe_ptr,
                              unsigned submit, unsigned wait_nr, void *sigmask);
int __wrap___io_uring_get_cqe(struct io_uring *ring, struct io_uring_cqe **cqe_ptr,
                              unsigned submit, unsigned wait_nr, void *sigmask);
static int eintr_waits;
static int eintr_errno = EINTR;
static int eintr_fd = -1;
static const unsigned char *eintr_bytes;

int
__wrap___io_uring_get_cqe(struct io_uring *ring, struct io_uring_cqe **cqe_ptr, unsigned submit,
                          unsigned wait_nr, void *sigmask)
{
    if (eintr_waits > 0) {
        eintr_waits--;
        if (write(eintr_fd, eintr_bytes, KB16) != (ssize_t)KB16) {
            return -EIO;
        }
        return -eintr_errno;
    }
    return __real___io_uring_get_cqe(ring, cqe_ptr, submit, wait_nr, sigmask);
}

/* A wait interrupted by a signal (-EINTR), or refused for now (-EAGAIN), is waited again: the
 * read completes, nothing fails. */
static void
test_wait_eintr(const unsigned char *want, int err)
{
    struct mt_io_slots t;
    unsigned char *buf = NULL;
    int fds[2];
    unsigned a;
    unsigned i = 0;
    int res = 0;
    int ret;
    bool ok;

    if (pipe(fds) != 0 || posix_memalign((void **)&buf, MT_IO_ALIGN, KB16) != 0 ||
        !mt_io_slots_init(&t, 2, fds, 1, NULL)) {
        tap_bail_out("cannot set up the interrupted-wait test");
    }
    ret = mt_io_slots_ring(&t);
    if (ret < 0) {
        tap_ok(true, "an interrupted wait (%s) # SKIP io_uring unavailable: %s",
               err == EINTR ? "EINTR" : "EAGAIN", strerror(-ret));
        mt_io_slots_fini(&t);
        close(fds[1]);
    } else {
        memset(buf, 0, KB16);
        a = mt_io_slots_take(&t, 0, buf, 0, KB16, 0);
        ok = mt_io_slots_queue(&t, a) == MT_OK; /* the pipe is empty: the read waits */
        eintr_fd = fds[1];
        eintr_bytes = want;
        eintr_waits = 1;
        eintr_errno = err;
        ok = ok && mt_io_slots_next(&t, &i, &res) == MT_OK && eintr_waits == 0;
        eintr_waits = 0;
        ok = ok && i == a && res == (int)KB16 && memcmp(buf, want, KB16) == 0;
        tap_ok(ok, "a wait that returns %s is waited again, and the read completes",
               err == EINTR ? "EINTR (a signal)" : "EAGAIN");
        mt_io_slots_finish(&t, a);
        close(fds[1]); /* a read still in flight on the pipe ends now, at end of file */
        mt_io_slots_fini(&t);
    }
    close(fds[0]);
    free(buf);
}

/* A submit that fails for good: its SQE is still in the ring, and the next submit would send it
 * into a buffer the caller has taken back, so the table must never submit again. */
static void
test_dead(const char *path, const unsigned char *want)
{
    struct mt_io_slots t;
    unsigned char *buf = NULL;
    int fds[1];
    unsigned a;
    unsigned b;
    unsigned i;
    int res;
    bool ok;

    fds[0] = open(path, O_RDONLY | O_CLOEXEC);
    if (fds[0] < 0 || posix_memalign((void **)&buf, MT_IO_ALIGN, 2 * KB16) != 0 ||
        !mt_io_slots_init(&t, 2, fds, 1, path)) {
        tap_bail_out("cannot set up the failed-submit test");
    }
    res = mt_io_slots_ring(&t);
    if (res < 0) {
        tap_ok(true, "a failed submit # SKIP io_uring unavailable: %s", strerror(-res));
        tap_ok(true, "a read in flight before it # SKIP io_uring unavailable");
        mt_io_slots_fini(&t);
        close(fds[0]);
        free(buf);
        return;
    }
    memset(buf, 0, 2 * KB16);
    a = mt_io_slots_take(&t, 0, buf, 0, KB16, 1);
    ok = mt_io_slots_queue(&t, a) == MT_OK;
    submit_faults_left = 1;
    b = mt_io_slots_take(&t, 0, buf + KB16, KB16, KB16, 2);
    ok = ok && mt_io_slots_queue(&t, b) == MT_ERR_IO;
    mt_io_slots_finish(&t, b); /* the caller takes its buffer back */
    submit_real_count = 0;
    b = mt_io_slots_take(&t, 0, buf + KB16, 2 * KB16, KB16, 3);
    ok = ok && mt_io_slots_queue(&t, b) == MT_ERR_IO && submit_real_count == 0;
    mt_io_slots_finish(&t, b);
    tap_ok(ok,
           "a submit that fails for good fails its read, and the next without submitting "
           "(%d submits after it)",
           submit_real_count);
    ok = mt_io_slots_next(&t, &i, &res) == MT_OK && i == a && res == (int)KB16 &&
         memcmp(buf, want, KB16) == 0;
    mt_io_slots_finish(&t, a);
    tap_ok(ok && t.in_flight == 0, "a read in flight before it completes with its bytes");
    mt_io_slots_fini(&t);
    close(fds[0]);
    free(buf);
}

/* Transient refusals (EAGAIN, EBUSY, EINTR) are submitted again: the read goes out, completes. */
static void
test_transient(const char *path, const unsigned char *want)
{
    static const int errs[] = {EAGAIN, EBUSY, EINTR};
    struct mt_io_slots t;
    unsigned char *buf = NULL;
    int fds[1];
    unsigned a;
    unsigned i;
    int res;
    bool ok = true;

    fds[0] = open(path, O_RDONLY | O_CLOEXEC);
    if (fds[0] < 0 || posix_memalign((void **)&buf, MT_IO_ALIGN, KB16) != 0 ||
        !mt_io_slots_init(&t, 2, fds, 1, path)) {
        tap_bail_out("cannot set up the transient-submit test");
    }
    res = mt_io_slots_ring(&t);
    if (res < 0) {
        tap_ok(true, "transient submit refusals # SKIP io_uring unavailable: %s", strerror(-res));
        mt_io_slots_fini(&t);
        close(fds[0]);
        free(buf);
        return;
    }
    for (size_t e = 0; e < sizeof(errs) / sizeof(errs[0]); e++) {
        memset(buf, 0, KB16);
        submit_faults_errno = errs[e];
        submit_faults_left = 3;
        a = mt_io_slots_take(&t, 0, buf, KB16 * e, KB16, e);
        ok = ok && mt_io_slots_queue(&t, a) == MT_OK && submit_faults_left == 0 &&
             mt_io_slots_next(&t, &i, &res) == MT_OK && i == a && res == (int)KB16 &&
             memcmp(buf, want + KB16 * e, KB16) == 0;
        mt_io_slots_finish(&t, a);
    }
    submit_faults_errno = EIO;
    submit_faults_left = 0;
    tap_ok(ok && t.in_flight == 0 && !t.dead,
           "a submit refused 3 times (EAGAIN, EBUSY, EINTR) is retried and its read completes");
    mt_io_slots_fini(&t);
    close(fds[0]);
    free(buf);
}

int
main(void)
{
    const char *dir = tap_tmpdir();
    char path[512];
    unsigned char *want = malloc(FILE_BYTES);
    int fd;

    tap_plan(22);
    test_rules();

    snprintf(path, sizeof(path), "%s/slots.bin", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    for (size_t i = 0; want != NULL && i < FILE_BYTES; i++) {
        want[i] = (unsigned char)((i * 2654435761u) >> 13);
    }
    if (want == NULL || fd < 0 || write(fd, want, FILE_BYTES) != (ssize_t)FILE_BYTES) {
        tap_bail_out("cannot write the test file");
    }
    close(fd);
    test_ring(path, want);
    test_short(want);
    test_wait_eintr(want, EINTR);
    test_wait_eintr(want, EAGAIN);
    test_dead(path, want);
    test_transient(path, want);

    free(want);
    tap_rmtree(dir);
    return tap_done();
}
