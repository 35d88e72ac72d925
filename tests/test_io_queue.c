/* SPDX-License-Identifier: MIT */
/*
 * test_io_queue.c - one I/O thread's queue, driven through its contract (io/io_queue.h): the
 * depth range, each mode it can get here (uring+fixed, uring, pread: asked for, and what
 * mt_io_queue_mode says, falling back when registration or io_uring is refused), reads of two
 * files with known bytes that finish in any order and are told apart by tag, the depth limit, a
 * wait with nothing in flight, end of file (fewer bytes, err 0), and every fault kind:
 * SHORT is finished by resubmission, EIO and EINVAL come back as err, SHORT_ODD is end of file
 * on an O_DIRECT fd but read on from a buffered one, and WAIT fails one wait, keeping the read.
 * A ring the kernel refuses (no fd left for it) falls back to pread. Each fallback is warned
 * once per process.
 * Without io_uring, the uring cases check the fallback to pread and skip the rest.
 */
#include <config.h>

#include "io/io_queue.h"
#include "io/uring_reader.h" /* MT_IO_ALIGN */
#include "tests/submit_faults.h"
#include "tests/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define KB4 4096u
#define KB16 (16u << 10)
#define TAIL 1000u                      /* file 0 ends this far past the 4 KiB grid */
#define FILE0_BYTES (64u * 1024 + TAIL) /* file 0: ends off the grid */
#define FILE1_BYTES (64u * 1024)        /* file 1: ends on it */
#define BUF_BYTES (8 * KB16)            /* the staging memory */
#define DEPTH 4

/* The byte at offset i of file f: differs between the files and between 4 KiB blocks. */
static unsigned char
pat(int f, uint64_t i)
{
    return (unsigned char)(i + (i >> 8) * 31 + (i >> 12) * 7 + (uint64_t)f * 97 + 1);
}

struct env {
    int direct[2];   /* O_DIRECT fds (buffered where the filesystem refuses O_DIRECT) */
    int buffered[2]; /* buffered fds of the same files */
    bool have_direct;
    unsigned char *buf; // (BUF_BYTES), MT_IO_ALIGN aligned
};

/* Whether buf holds bytes [off, off+n) of file f. */
static bool
holds(const unsigned char *buf, int f, uint64_t off, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (buf[i] != pat(f, off + i)) {
            return false;
        }
    }
    return true;
}

/* One read of [off, off+len) of file into buf, tagged tag, submitted and waited for. */
static mt_status_t
one_read(struct mt_io_queue *q, int file, void *buf, uint64_t off, size_t len, uint64_t tag,
         struct mt_io_queue_done *d)
{
    mt_status_t st = mt_io_queue_submit(q, file, buf, off, len, tag);

    memset(d, 0xa5, sizeof(*d));
    return st != MT_OK ? st : mt_io_queue_wait(q, d);
}

/* Whether done d describes a read of file at off, tagged tag, that ended after bytes with err. */
static bool
done_is(const struct mt_io_queue_done *d, uint64_t tag, int file, uint64_t off, size_t bytes,
        int err)
{
    return d->tag == tag && d->file == file && d->bytes == bytes && d->err == err &&
           d->off == off + bytes;
}

/* Whether io_uring works here (a ring of 2 entries), and whether it registers [p, p+len). */
static bool
probe_uring(void *p, size_t len, bool *registers)
{
    struct io_uring ring;
    struct iovec iov = {.iov_base = p, .iov_len = len};

    *registers = false;
    if (io_uring_queue_init(2, &ring, 0) < 0) {
        return false;
    }
    *registers = io_uring_register_buffers(&ring, &iov, 1) == 0;
    io_uring_queue_exit(&ring);
    return true;
}

/* Stderr goes to file path from here (capture_begin) until capture_end, which restores it and
 * returns how many lines of the file contain text. */
static int capture_saved = -1;

static void
capture_begin(const char *path)
{
    capture_saved = tap_stderr_to(path);
}

static int
capture_end(const char *path, const char *text)
{
    tap_stderr_restore(capture_saved);
    return tap_count_lines(path, text);
}

/* The depth range 1..4096, and the names of the modes. */
static void
test_create(const struct env *e)
{
    struct mt_io_queue *q = NULL;
    mt_status_t st;
    bool ok;

    st = mt_io_queue_create(0, e->direct, 2, MT_IO_QUEUE_PREAD, NULL, NULL, 0, &q);
    ok = st == MT_ERR_INVAL && q == NULL;
    st = mt_io_queue_create(4097, e->direct, 2, MT_IO_QUEUE_PREAD, NULL, NULL, 0, &q);
    tap_ok(ok && st == MT_ERR_INVAL && q == NULL, "depths 0 and 4097 are refused: %s",
           mt_last_error());

    ok = mt_io_queue_create(1, e->direct, 2, MT_IO_QUEUE_PREAD, NULL, NULL, 0, &q) == MT_OK;
    ok = ok && q != NULL && mt_io_queue_in_flight(q) == 0;
    mt_io_queue_destroy(q);
    q = NULL;
    ok =
        ok && mt_io_queue_create(4096, e->direct, 2, MT_IO_QUEUE_PREAD, NULL, NULL, 0, &q) == MT_OK;
    tap_ok(ok && q != NULL && mt_io_queue_mode(q) == MT_IO_QUEUE_PREAD,
           "depths 1 and 4096 (the ends of the range) are taken");
    mt_io_queue_destroy(q);
    mt_io_queue_destroy(NULL);

    tap_ok(strcmp(mt_io_queue_mode_str(MT_IO_QUEUE_URING_FIXED), "uring+fixed") == 0 &&
               strcmp(mt_io_queue_mode_str(MT_IO_QUEUE_URING), "uring") == 0 &&
               strcmp(mt_io_queue_mode_str(MT_IO_QUEUE_PREAD), "pread") == 0,
           "the modes are named uring+fixed, uring and pread");
}

/*
 * DEPTH reads of both files, one inside the registered memory and one outside it (staging memory
 * the queue was not told about): the depth limit holds, each finishes once, in any order, found by
 * its tag with its file, offset and bytes; then a wait with nothing in flight is refused.
 */
static void
test_reads(struct mt_io_queue *q, const struct env *e, unsigned char *outside, const char *mode)
{
    static const struct {
        int file;
        uint64_t off;
        size_t len;
        size_t at; /* offset in the staging memory */
    } rd[DEPTH] = {
        {0, 0, KB16, 0},
        {1, KB16, KB16, KB16},
        {0, 48 * 1024, 8192, 2 * KB16},
        {1, KB4, KB4, 3 * KB16},
    };
    struct mt_io_queue_done d;
    unsigned seen = 0;
    bool ok = true;
    bool limit;
    mt_status_t st;

    memset(e->buf, 0, BUF_BYTES);
    memset(outside, 0, KB4);
    for (unsigned k = 0; k < DEPTH; k++) {
        unsigned char *dst = k == DEPTH - 1 ? outside : e->buf + rd[k].at;

        ok = ok && mt_io_queue_submit(q, rd[k].file, dst, rd[k].off, rd[k].len, 100 + k) == MT_OK;
        ok = ok && mt_io_queue_in_flight(q) == k + 1;
    }
    st = mt_io_queue_submit(q, 0, e->buf + 4 * KB16, 0, KB16, 999);
    limit = st == MT_ERR_INVAL && mt_io_queue_in_flight(q) == DEPTH;
    tap_ok(ok && limit, "%s: %d reads are queued, a read past the depth is refused: %s", mode,
           DEPTH, mt_last_error());

    for (unsigned n = 0; n < DEPTH; n++) {
        unsigned k;

        memset(&d, 0xa5, sizeof(d));
        if (mt_io_queue_wait(q, &d) != MT_OK || d.tag < 100 || d.tag >= 100 + DEPTH ||
            (seen & (1u << (d.tag - 100))) != 0) {
            ok = false;
            break;
        }
        k = (unsigned)(d.tag - 100);
        seen |= 1u << k;
        ok =
            ok && done_is(&d, 100 + k, rd[k].file, rd[k].off, rd[k].len, 0) &&
            holds(k == DEPTH - 1 ? outside : e->buf + rd[k].at, rd[k].file, rd[k].off, rd[k].len) &&
            mt_io_queue_in_flight(q) == DEPTH - 1 - n;
    }
    tap_ok(ok && seen == (1u << DEPTH) - 1,
           "%s: each read finishes once, by its tag, with its file, offset and bytes", mode);
    tap_ok(mt_io_queue_wait(q, &d) == MT_ERR_INVAL && mt_io_queue_in_flight(q) == 0,
           "%s: a wait with nothing in flight is refused: %s", mode, mt_last_error());
}

/* End of file, through fds: the read that crosses it, and one wholly past it. */
static void
test_eof(struct mt_io_queue *q, const struct env *e, const char *mode, const char *fdkind)
{
    struct mt_io_queue_done d;
    bool ok;

    memset(e->buf, 0, KB16);
    ok = one_read(q, 0, e->buf, 64 * 1024, KB16, 7, &d) == MT_OK &&
         done_is(&d, 7, 0, 64 * 1024, TAIL, 0) && holds(e->buf, 0, 64 * 1024, TAIL);
    ok = ok && one_read(q, 1, e->buf, 48 * 1024, KB16 + KB4, 8, &d) == MT_OK &&
         done_is(&d, 8, 1, 48 * 1024, KB16, 0) && holds(e->buf, 1, 48 * 1024, KB16);
    tap_ok(ok,
           "%s, %s fds: a read across end of file ends there, err 0, with off at the end "
           "(off the grid: %u bytes; on it: 16 KiB)",
           mode, fdkind, TAIL);
    ok = one_read(q, 0, e->buf, 80 * 1024, KB4, 9, &d) == MT_OK &&
         done_is(&d, 9, 0, 80 * 1024, 0, 0);
    tap_ok(ok && mt_io_queue_in_flight(q) == 0,
           "%s, %s fds: a read past end of file finishes with 0 bytes, err 0", mode, fdkind);
}

/* Every fault kind of mt_io_fault_set on queue q (over the O_DIRECT fds), and qb (buffered). */
static void
test_faults(struct mt_io_queue *q, struct mt_io_queue *qb, const struct env *e, const char *mode)
{
    unsigned char *b = e->buf;
    struct mt_io_queue_done d;
    bool ok;

    /* 16 KiB at 0, fault at 12000: the read returns 8 KiB, its rest [8 KiB, 16 KiB) 4 KiB, and
     * the rest after that [12 KiB, 16 KiB) no longer covers 12000: two faults, all bytes in. */
    memset(b, 0, KB16);
    mt_io_fault_set(MT_IO_FAULT_SHORT, 0, 12000, 3);
    ok = one_read(q, 0, b, 0, KB16, 1, &d) == MT_OK && done_is(&d, 1, 0, 0, KB16, 0) &&
         holds(b, 0, 0, KB16);
    tap_ok(ok && mt_io_fault_fired() == 2,
           "%s: SHORT reads are resubmitted for the rest, which is read whole (%d faults)", mode,
           mt_io_fault_fired());

    /* A short read cannot be shorter than one 4 KiB block: a 4 KiB read comes back whole. */
    mt_io_fault_set(MT_IO_FAULT_SHORT, 1, KB4, 1);
    ok = one_read(q, 1, b, KB4, KB4, 2, &d) == MT_OK && done_is(&d, 2, 1, KB4, KB4, 0) &&
         holds(b, 1, KB4, KB4);
    /* 12 KiB: half is 6 KiB, off the grid; SHORT stays on it (4 KiB), so an O_DIRECT read is
     * not taken for end of file and finishes whole. */
    mt_io_fault_set(MT_IO_FAULT_SHORT, 1, 0, 1);
    ok = ok && one_read(q, 1, b, 0, 3 * KB4, 17, &d) == MT_OK &&
         done_is(&d, 17, 1, 0, 3 * KB4, 0) && holds(b, 1, 0, 3 * KB4) && mt_io_fault_fired() == 1;
    tap_ok(ok,
           "%s: SHORT on a 4 KiB read leaves it whole; on a 12 KiB one it stays on the 4 KiB "
           "grid, and the read finishes whole",
           mode);

    mt_io_fault_set(MT_IO_FAULT_EIO, 0, 2 * KB16 + 100, 1);
    ok = one_read(q, 0, b, 2 * KB16, KB16, 3, &d) == MT_OK && done_is(&d, 3, 0, 2 * KB16, 0, EIO);
    ok = ok && mt_io_fault_fired() == 1 && mt_io_queue_in_flight(q) == 0;
    ok = ok && one_read(q, 0, b, 2 * KB16, KB16, 4, &d) == MT_OK &&
         done_is(&d, 4, 0, 2 * KB16, KB16, 0) && holds(b, 0, 2 * KB16, KB16);
    tap_ok(ok, "%s: EIO fails the read as err EIO (bytes 0, off where it failed), once", mode);

    mt_io_fault_set(MT_IO_FAULT_EINVAL, 1, 0, 2);
    ok = one_read(q, 1, b, 0, KB4, 5, &d) == MT_OK && done_is(&d, 5, 1, 0, 0, EINVAL);
    ok = ok && one_read(q, 1, b, 0, KB16, 6, &d) == MT_OK && done_is(&d, 6, 1, 0, 0, EINVAL);
    ok = ok && one_read(q, 1, b, 0, KB16, 7, &d) == MT_OK && done_is(&d, 7, 1, 0, KB16, 0);
    tap_ok(ok && mt_io_fault_fired() == 2,
           "%s: EINVAL fails the read as err EINVAL, count times (a start at the fault counts)",
           mode);

    /* The range is [off, off+len): the first byte is in, the byte after the end is not; and a
     * fault of one file leaves the other alone. */
    mt_io_fault_set(MT_IO_FAULT_EIO, 0, KB16, 5);
    ok = one_read(q, 0, b, 0, KB16, 8, &d) == MT_OK && done_is(&d, 8, 0, 0, KB16, 0);
    ok = ok && one_read(q, 1, b, KB16, KB4, 9, &d) == MT_OK && done_is(&d, 9, 1, KB16, KB4, 0);
    ok = ok && mt_io_fault_fired() == 0;
    ok = ok && one_read(q, 0, b, KB16, KB4, 10, &d) == MT_OK && done_is(&d, 10, 0, KB16, 0, EIO);
    tap_ok(ok && mt_io_fault_fired() == 1,
           "%s: a fault hits only reads of its file covering its offset", mode);

    mt_io_fault_set(MT_IO_FAULT_EIO, 0, 0, 0);
    ok = one_read(q, 0, b, 0, KB4, 11, &d) == MT_OK && done_is(&d, 11, 0, 0, KB4, 0);
    mt_io_fault_set(MT_IO_FAULT_NONE, 0, 0, 5);
    ok = ok && one_read(q, 0, b, 0, KB4, 12, &d) == MT_OK && done_is(&d, 12, 0, 0, KB4, 0);
    tap_ok(ok && mt_io_fault_fired() == 0, "%s: count 0, or kind NONE, injects nothing", mode);

    /* A read that returns no bytes (past end of file) is no read to fault: it ends at end of
     * file, err 0, and the armed fault stays unspent. */
    mt_io_fault_set(MT_IO_FAULT_EIO, 0, 80 * 1024, 1);
    ok = one_read(q, 0, b, 80 * 1024, KB4, 13, &d) == MT_OK &&
         done_is(&d, 13, 0, 80 * 1024, 0, 0);
    tap_ok(ok && mt_io_fault_fired() == 0,
           "%s: a fault past end of file leaves the 0-byte read alone (err %d, %d faults)", mode,
           d.err, mt_io_fault_fired());
    mt_io_fault_set(MT_IO_FAULT_NONE, 0, 0, 0);

    /* 16 KiB at 0 comes back 8193 bytes (half, made odd). */
    memset(b, 0, KB16);
    if (e->have_direct) {
        mt_io_fault_set(MT_IO_FAULT_SHORT_ODD, 0, 100, 3);
        ok = one_read(q, 0, b, 0, KB16, 13, &d) == MT_OK && done_is(&d, 13, 0, 0, 8193, 0) &&
             holds(b, 0, 0, 8193);
        /* A 4 KiB read is split too: a 4 KiB O_DIRECT read that stops off the grid has ended. */
        mt_io_fault_set(MT_IO_FAULT_SHORT_ODD, 1, 2 * KB4, 1);
        ok = ok && one_read(q, 1, b, 2 * KB4, KB4, 16, &d) == MT_OK && d.bytes > 0 &&
             d.bytes < KB4 && d.bytes % MT_IO_ALIGN != 0 &&
             done_is(&d, 16, 1, 2 * KB4, d.bytes, 0) && holds(b, 1, 2 * KB4, d.bytes);
        tap_ok(ok && mt_io_fault_fired() == 1,
               "%s: SHORT_ODD on an O_DIRECT fd is end of file (16 KiB: 8193 bytes; 4 KiB: %zu), "
               "err 0",
               mode, d.bytes);
    } else {
        tap_ok(true, "%s: SHORT_ODD on an O_DIRECT fd # SKIP the filesystem refuses O_DIRECT",
               mode);
    }
    memset(b, 0, KB16);
    mt_io_fault_set(MT_IO_FAULT_SHORT_ODD, 0, 100, 3);
    ok = one_read(qb, 0, b, 0, KB16, 14, &d) == MT_OK && done_is(&d, 14, 0, 0, KB16, 0) &&
         holds(b, 0, 0, KB16);
    tap_ok(ok && mt_io_fault_fired() == 1,
           "%s: SHORT_ODD on a buffered fd is read on to the end (16 KiB)", mode);

    memset(b, 0, KB16);
    mt_io_fault_set(MT_IO_FAULT_WAIT, 0, 0, 1);
    ok = mt_io_queue_submit(q, 1, b, 0, KB16, 15) == MT_OK;
    ok = ok && mt_io_queue_wait(q, &d) == MT_ERR_IO && mt_io_queue_in_flight(q) == 1;
    ok = ok && mt_io_queue_wait(q, &d) == MT_OK && done_is(&d, 15, 1, 0, KB16, 0) &&
         holds(b, 1, 0, KB16);
    tap_ok(ok && mt_io_fault_fired() == 1,
           "%s: WAIT fails one wait, the read stays queued and the next wait finishes it", mode);
    mt_io_fault_set(MT_IO_FAULT_NONE, 0, 0, 0);
}

/* A read the OS refuses (a directory: EISDIR) finishes with that errno as err, and no bytes. */
static void
test_os_error(const char *dir, enum mt_io_queue_mode want, const char *mode)
{
    int fds[1] = {open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    unsigned char *b = NULL;
    struct mt_io_queue *q = NULL;
    struct mt_io_queue_done d;
    bool ok;

    if (fds[0] < 0 || posix_memalign((void **)&b, MT_IO_ALIGN, KB4) != 0 ||
        mt_io_queue_create(1, fds, 1, want, (void *const[]){b}, (const size_t[]){KB4}, 1, &q) !=
            MT_OK) {
        tap_bail_out("cannot set up the refused-read test");
    }
    ok = one_read(q, 0, b, 0, KB4, 21, &d) == MT_OK && done_is(&d, 21, 0, 0, 0, EISDIR);
    tap_ok(ok && mt_io_queue_in_flight(q) == 0,
           "%s: a read the OS refuses (a directory) finishes with its errno, EISDIR (got %d)", mode,
           d.err);
    mt_io_queue_destroy(q);
    close(fds[0]);
    free(b);
}

/* The mode asked for, what it should be here, and the reads, end of file and faults in it. */
static void
test_mode(const struct env *e, const char *dir, enum mt_io_queue_mode want, bool uring,
          bool registers)
{
    enum mt_io_queue_mode expect = want;
    void *const bufs[1] = {e->buf};
    const size_t lens[1] = {BUF_BYTES};
    struct mt_io_queue *q = NULL;
    struct mt_io_queue *qb = NULL;
    unsigned char *outside = NULL;
    const char *name = mt_io_queue_mode_str(want);

    if (!uring) {
        expect = MT_IO_QUEUE_PREAD;
    } else if (want == MT_IO_QUEUE_URING_FIXED && !registers) {
        expect = MT_IO_QUEUE_URING;
    }
    if (mt_io_queue_create(DEPTH, e->direct, 2, want, bufs, lens, 1, &q) != MT_OK ||
        mt_io_queue_create(2, e->buffered, 2, want, bufs, lens, 1, &qb) != MT_OK ||
        posix_memalign((void **)&outside, MT_IO_ALIGN, KB4) != 0) {
        tap_bail_out("cannot create the queues");
    }
    tap_ok(mt_io_queue_mode(q) == expect && mt_io_queue_mode(qb) == expect,
           "%s asked: the queue runs in %s (got %s)", name, mt_io_queue_mode_str(expect),
           mt_io_queue_mode_str(mt_io_queue_mode(q)));
    if (expect != want) {
        tap_diag("%s: %s unavailable here; checking the fallback only", name, name);
        tap_ok(true, "%s: reads # SKIP %s unavailable", name, name);
    } else {
        test_reads(q, e, outside, name);
        test_eof(q, e, name, e->have_direct ? "O_DIRECT" : "buffered");
        test_eof(qb, e, name, "buffered");
        test_faults(q, qb, e, name);
        test_os_error(dir, want, name);
    }
    mt_io_queue_destroy(qb);
    mt_io_queue_destroy(q);
    free(outside);
}

/*
 * Registration refused (memory the kernel cannot pin: PROT_NONE; warned once per process), and
 * none asked for: both run in plain uring mode. Buffers only count for uring+fixed: uring asked
 * with buffers stays uring.
 */
static void
test_fallbacks(const struct env *e, bool uring, bool registered, const char *log)
{
    size_t len = 2 * KB16;
    void *none = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *const bufs[1] = {none};
    const size_t lens[1] = {len};
    void *const real[1] = {e->buf};
    const size_t real_lens[1] = {BUF_BYTES};
    struct mt_io_queue *q = NULL;
    struct mt_io_queue_done d;
    bool registers;
    bool ok;
    int warned = 0;

    if (!uring || none == MAP_FAILED) {
        tap_ok(true, "uring+fixed falls back to uring # SKIP io_uring unavailable");
        tap_ok(true, "uring with buffers stays uring # SKIP io_uring unavailable");
        if (none != MAP_FAILED) {
            munmap(none, len);
        }
        return;
    }
    probe_uring(none, len, &registers);
    if (registers) {
        tap_ok(true, "uring+fixed on PROT_NONE memory # SKIP the kernel registered it");
    } else {
        /* Twice: the refusal is warned once per process. */
        ok = true;
        capture_begin(log);
        for (int k = 0; k < 2; k++) {
            ok = ok && mt_io_queue_create(2, e->direct, 2, MT_IO_QUEUE_URING_FIXED, bufs, lens, 1,
                                          &q) == MT_OK;
            ok = ok && mt_io_queue_mode(q) == MT_IO_QUEUE_URING;
            ok = ok && one_read(q, 1, e->buf, 0, KB16, 1, &d) == MT_OK &&
                 done_is(&d, 1, 1, 0, KB16, 0) && holds(e->buf, 1, 0, KB16);
            mt_io_queue_destroy(q);
            q = NULL;
        }
        /* the size in KiB: 32 KiB read as 0 MiB when the message gave MiB */
        warned = capture_end(log, "cannot register 32 KiB of staging memory");
        ok = ok && warned == (registered ? 1 : 0); /* 0: warned already, by test_mode */
        ok = ok && mt_io_queue_create(2, e->direct, 2, MT_IO_QUEUE_URING_FIXED, NULL, NULL, 0,
                                      &q) == MT_OK;
        ok = ok && mt_io_queue_mode(q) == MT_IO_QUEUE_URING;
        mt_io_queue_destroy(q);
        q = NULL;
        tap_ok(ok,
               "uring+fixed with memory the kernel will not register (warned once: %d), or "
               "with none, runs (and reads) in uring mode",
               warned);
    }
    ok = mt_io_queue_create(2, e->direct, 2, MT_IO_QUEUE_URING, real, real_lens, 1, &q) == MT_OK &&
         mt_io_queue_mode(q) == MT_IO_QUEUE_URING;
    mt_io_queue_destroy(q);
    tap_ok(ok, "uring asked with staging memory stays uring");
    munmap(none, len);
}

/*
 * io_uring refused at create (no fd left for the ring: RLIMIT_NOFILE): each ring mode asked for
 * falls back to pread, and reads, end of file and errors keep their meaning there.
 */
static void
test_no_ring(const struct env *e, const char *log, bool uring)
{
    static const enum mt_io_queue_mode wants[2] = {MT_IO_QUEUE_URING_FIXED, MT_IO_QUEUE_URING};
    void *const bufs[1] = {e->buf};
    const size_t lens[1] = {BUF_BYTES};
    struct mt_io_queue *q[2] = {NULL, NULL};
    struct mt_io_queue_done d;
    struct rlimit rl;
    struct rlimit low;
    bool ok = true;
    int lowest;
    int warned;

    capture_begin(log);                               /* before the fds run out */
    lowest = open("/dev/null", O_RDONLY | O_CLOEXEC); /* the lowest free fd */
    if (lowest < 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        tap_bail_out("cannot read RLIMIT_NOFILE");
    }
    close(lowest);
    low = rl;
    low.rlim_cur = (rlim_t)lowest;
    if (setrlimit(RLIMIT_NOFILE, &low) != 0) {
        tap_bail_out("cannot lower RLIMIT_NOFILE");
    }
    for (int m = 0; m < 2; m++) {
        ok = ok && mt_io_queue_create(2, e->direct, 2, wants[m], bufs, lens, 1, &q[m]) == MT_OK;
    }
    setrlimit(RLIMIT_NOFILE, &rl);
    /* with the hint for this cause (not the kernel's version) */
    warned = capture_end(log, "raise the open-file limit");
    for (int m = 0; ok && m < 2; m++) {
        memset(e->buf, 0, KB16);
        ok = mt_io_queue_mode(q[m]) == MT_IO_QUEUE_PREAD;
        ok = ok && one_read(q[m], 1, e->buf, KB4, KB16, 1, &d) == MT_OK &&
             done_is(&d, 1, 1, KB4, KB16, 0) && holds(e->buf, 1, KB4, KB16);
        ok = ok && one_read(q[m], 0, e->buf, 64 * 1024, KB16, 2, &d) == MT_OK &&
             done_is(&d, 2, 0, 64 * 1024, TAIL, 0);
    }
    /* once per process: already, where io_uring was missing from the start */
    tap_ok(ok && warned == (uring ? 1 : 0),
           "io_uring refused (no fd for the ring): uring+fixed and uring fall back to pread, "
           "which reads; warned once (%d)",
           warned);
    mt_io_queue_destroy(q[1]);
    mt_io_queue_destroy(q[0]);
}

/*
 * A failed submit: the read is refused and its slot given back (nothing left to wait for); a
 * failed resubmission (the rest of a short read) finishes the read as err EIO with the bytes it
 * had. Each on a queue of its own: a failed submit retires the ring.
 */
static void
test_submit_fails(const struct env *e)
{
    struct mt_io_queue *q = NULL;
    struct mt_io_queue_done d;
    mt_status_t st;
    unsigned left;
    bool ok;

    ok = mt_io_queue_create(2, e->direct, 2, MT_IO_QUEUE_URING, NULL, NULL, 0, &q) == MT_OK &&
         mt_io_queue_mode(q) == MT_IO_QUEUE_URING;
    submit_faults_left = 1;
    st = ok ? mt_io_queue_submit(q, 0, e->buf, 0, KB16, 1) : MT_ERR_INTERNAL;
    submit_faults_left = 0;
    left = ok ? mt_io_queue_in_flight(q) : 99;
    tap_ok(ok && st == MT_ERR_IO && left == 0,
           "a submit that fails is refused (MT_ERR_IO) and holds no slot (%u in flight)", left);
    mt_io_queue_destroy(q); /* a slot still held would make this wait for a read never sent */

    q = NULL;
    memset(&d, 0, sizeof(d));
    ok = mt_io_queue_create(2, e->direct, 2, MT_IO_QUEUE_URING, NULL, NULL, 0, &q) == MT_OK;
    /* the first read returns 8 KiB (SHORT, on the grid): the rest goes out again, and fails */
    mt_io_fault_set(MT_IO_FAULT_SHORT, 0, 0, 1);
    ok = ok && mt_io_queue_submit(q, 0, e->buf, 0, KB16, 2) == MT_OK;
    submit_faults_left = 1;
    ok = ok && mt_io_queue_wait(q, &d) == MT_OK;
    submit_faults_left = 0;
    mt_io_fault_set(MT_IO_FAULT_NONE, 0, 0, 0);
    tap_ok(ok && done_is(&d, 2, 0, 0, KB16 / 2, EIO) && mt_io_queue_in_flight(q) == 0,
           "a resubmission that fails finishes the read as err EIO (err %d, %zu bytes)", d.err,
           d.bytes);
    mt_io_queue_destroy(q);
}

/* Destroy with reads in flight waits for them (their buffers stay valid until it returns). */
static void
test_destroy_busy(const struct env *e)
{
    struct mt_io_queue *q = NULL;
    bool ok;

    ok = mt_io_queue_create(2, e->direct, 2, MT_IO_QUEUE_URING, NULL, NULL, 0, &q) == MT_OK;
    ok = ok && mt_io_queue_submit(q, 0, e->buf, 0, KB16, 1) == MT_OK &&
         mt_io_queue_submit(q, 1, e->buf + KB16, 0, KB16, 2) == MT_OK &&
         mt_io_queue_in_flight(q) == 2;
    mt_io_queue_destroy(q);
    tap_ok(ok, "destroy with 2 reads in flight returns");
}

static void
write_file(const char *path, int f, size_t n)
{
    unsigned char *p = malloc(n);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    for (size_t i = 0; p != NULL && i < n; i++) {
        p[i] = pat(f, i);
    }
    if (p == NULL || fd < 0 || write(fd, p, n) != (ssize_t)n || close(fd) != 0) {
        tap_bail_out("cannot write the test files");
    }
    free(p);
}

int
main(void)
{
    const char *dir = tap_tmpdir();
    static const size_t sizes[2] = {FILE0_BYTES, FILE1_BYTES};
    struct env e = {.have_direct = true};
    char path[512];
    char log[600];
    bool uring;
    bool registers;

    mt_log_set_quiet(true);
    tap_plan(0);
    if (posix_memalign((void **)&e.buf, MT_IO_ALIGN, BUF_BYTES) != 0) {
        tap_bail_out("cannot allocate the staging memory");
    }
    for (int f = 0; f < 2; f++) {
        snprintf(path, sizeof(path), "%s/file%d.bin", dir, f);
        write_file(path, f, sizes[f]);
        e.direct[f] = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
        if (e.direct[f] < 0) {
            e.have_direct = false;
            e.direct[f] = open(path, O_RDONLY | O_CLOEXEC);
        }
        e.buffered[f] = open(path, O_RDONLY | O_CLOEXEC);
        if (e.direct[f] < 0 || e.buffered[f] < 0) {
            tap_bail_out("cannot open the test files");
        }
    }
    if (!e.have_direct) {
        tap_diag("the filesystem under %s refuses O_DIRECT: every fd is buffered", dir);
    }
    uring = probe_uring(e.buf, BUF_BYTES, &registers);
    if (!uring) {
        tap_diag("io_uring is unavailable: the uring cases check the fallback to pread only");
    }

    test_create(&e);
    test_mode(&e, dir, MT_IO_QUEUE_URING_FIXED, uring, registers);
    test_mode(&e, dir, MT_IO_QUEUE_URING, uring, registers);
    test_mode(&e, dir, MT_IO_QUEUE_PREAD, uring, registers);
    snprintf(log, sizeof(log), "%s/stderr.txt", dir);
    test_fallbacks(&e, uring, registers, log);
    test_no_ring(&e, log, uring);
    if (uring) {
        test_destroy_busy(&e);
        test_submit_fails(&e);
    }

    for (int f = 0; f < 2; f++) {
        close(e.direct[f]);
        close(e.buffered[f]);
    }
    free(e.buf);
    tap_rmtree(dir);
    return tap_done();
}
