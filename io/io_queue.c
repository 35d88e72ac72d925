/* SPDX-License-Identifier: MIT */
/*
 * io_queue.c - one thread's reads over many files (io/io_queue.h).
 *
 * Each read owns a slot of a fixed table; the slot index is the SQE's user_data, so a completion
 * finds its read without a search, and a slot stays busy across the resubmissions of a short read:
 * "done" means every byte asked for is in the buffer (or the file ended, or it failed).
 */
#include <config.h>

#include "io/io_queue.h"

#include "io/uring_reader.h" /* MT_IO_ALIGN */

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

#include <liburing.h>

struct queue_slot {
    bool busy;
    bool queued;  /* pread mode: waiting for mt_io_queue_wait to run it */
    int file;
    void *buf;    /* borrowed until completion */
    uint64_t off; /* file offset of buf[0] */
    size_t len;
    size_t done;
    uint64_t tag;
    int fixed;    /* registered buffer index holding buf, or -1 */
};

struct mt_io_queue {
    enum mt_io_queue_mode mode;
    bool have_ring;
    bool fixed_files;        /* fds registered: SQEs use indices */
    struct io_uring ring;    /* owned when have_ring */
    const int *fds;          /* borrowed (n_files) */
    int n_files;
    unsigned depth;
    unsigned in_flight;
    struct queue_slot *slots; // (depth), owned
    struct iovec *bufs;      /* registered regions, owned copy (n_bufs) */
    unsigned n_bufs;
};

const char *
mt_io_queue_mode_str(enum mt_io_queue_mode m)
{
    switch (m) {
    case MT_IO_QUEUE_URING_FIXED:
        return "uring+fixed";
    case MT_IO_QUEUE_URING:
        return "uring";
    case MT_IO_QUEUE_PREAD:
        return "pread";
    }
    return "?";
}

/* ---- fault injection ------------------------------------------------------------------------ */

static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static enum mt_io_fault_kind fault_kind;
static int fault_file;
static uint64_t fault_off;
static int fault_left;
static int fault_fired;
static atomic_bool fault_armed;

void
mt_io_fault_set(enum mt_io_fault_kind kind, int file, uint64_t off, int count)
{
    pthread_mutex_lock(&fault_lock);
    fault_kind = kind;
    fault_file = file;
    fault_off = off;
    fault_left = kind == MT_IO_FAULT_NONE ? 0 : count;
    fault_fired = 0;
    atomic_store(&fault_armed, fault_left > 0);
    pthread_mutex_unlock(&fault_lock);
}

int
mt_io_fault_fired(void)
{
    int n;

    pthread_mutex_lock(&fault_lock);
    n = fault_fired;
    pthread_mutex_unlock(&fault_lock);
    return n;
}

/* The result res of a read of [off, off+len) of file, after any injected fault. */
static int
fault_apply(int file, uint64_t off, size_t len, int res)
{
    if (!atomic_load_explicit(&fault_armed, memory_order_relaxed) || res <= 0) {
        return res;
    }
    pthread_mutex_lock(&fault_lock);
    if (fault_left > 0 && file == fault_file && fault_off >= off && fault_off < off + len) {
        if (fault_kind == MT_IO_FAULT_EIO) {
            res = -EIO;
        } else if (res > (int)MT_IO_ALIGN) {
            /* Half of it, on the 4 KiB grid: a short O_DIRECT read that is not end of file. */
            res = (int)(((size_t)res / 2) & ~(size_t)(MT_IO_ALIGN - 1));
        }
        fault_left--;
        fault_fired++;
        if (fault_left == 0) {
            atomic_store(&fault_armed, false);
        }
    }
    pthread_mutex_unlock(&fault_lock);
    return res;
}

/* ---- setup ---------------------------------------------------------------------------------- */

static atomic_bool warned_register;
static atomic_bool warned_uring;

static void
warn_register_once(int err, const struct iovec *bufs, unsigned n)
{
    struct rlimit rl;
    size_t bytes = 0;
    char lim[64] = "unknown";

    if (atomic_exchange(&warned_register, true)) {
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        bytes += bufs[i].iov_len;
    }
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
        if (rl.rlim_cur == RLIM_INFINITY) {
            snprintf(lim, sizeof(lim), "unlimited");
        } else {
            snprintf(lim, sizeof(lim), "%llu KiB", (unsigned long long)rl.rlim_cur / 1024);
        }
    }
    mt_log_warn("cannot register %zu MiB of staging memory with io_uring: %s (RLIMIT_MEMLOCK is "
                "%s; raise it, e.g. ulimit -l unlimited); reading into unregistered buffers",
                bytes >> 20, strerror(err), lim);
}

mt_status_t
mt_io_queue_create(unsigned depth, const int *fds, int n_files, enum mt_io_queue_mode want,
                   void *const *bufs, const size_t *lens, unsigned n_bufs,
                   struct mt_io_queue **q_out)
{
    struct mt_io_queue *q;
    int ret;

    if (depth < 1 || depth > 4096) {
        return mt_fail(MT_ERR_INVAL, 0, "queue depth %u is out of range 1..4096", depth);
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate an I/O queue");
    }
    q->slots = calloc(depth, sizeof(*q->slots));
    q->bufs = calloc(n_bufs > 0 ? n_bufs : 1, sizeof(*q->bufs));
    if (q->slots == NULL || q->bufs == NULL) {
        free(q->slots);
        free(q->bufs);
        free(q);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate an I/O queue of depth %u", depth);
    }
    q->fds = fds;
    q->n_files = n_files;
    q->depth = depth;
    for (unsigned i = 0; i < n_bufs; i++) {
        MT_ASSERT((uintptr_t)bufs[i] % MT_IO_ALIGN == 0 && lens[i] <= (1u << 30));
        q->bufs[i].iov_base = bufs[i];
        q->bufs[i].iov_len = lens[i];
    }
    q->mode = MT_IO_QUEUE_PREAD;
    if (want != MT_IO_QUEUE_PREAD) {
        ret = io_uring_queue_init(depth, &q->ring, 0);
        if (ret < 0) {
            if (!atomic_exchange(&warned_uring, true)) {
                mt_log_warn("io_uring is unavailable: %s (kernel 5.6 or newer, and "
                            "/proc/sys/kernel/io_uring_disabled 0, are needed); reading with "
                            "pread",
                            strerror(-ret));
            }
        } else {
            q->have_ring = true;
            q->mode = MT_IO_QUEUE_URING;
        }
    }
    if (q->have_ring && n_files > 0) {
        q->fixed_files = io_uring_register_files(&q->ring, fds, (unsigned)n_files) == 0;
    }
    if (q->have_ring && want == MT_IO_QUEUE_URING_FIXED && n_bufs > 0) {
        ret = io_uring_register_buffers(&q->ring, q->bufs, n_bufs);
        if (ret == 0) {
            q->n_bufs = n_bufs;
            q->mode = MT_IO_QUEUE_URING_FIXED;
        } else {
            warn_register_once(-ret, q->bufs, n_bufs);
        }
    }
    *q_out = q;
    return MT_OK;
}

enum mt_io_queue_mode
mt_io_queue_mode(const struct mt_io_queue *q)
{
    return q->mode;
}

unsigned
mt_io_queue_in_flight(const struct mt_io_queue *q)
{
    return q->in_flight;
}

/* Index of the registered region holding [buf, buf+len), or -1. */
static int
find_fixed(const struct mt_io_queue *q, const void *buf, size_t len)
{
    uintptr_t p = (uintptr_t)buf;

    for (unsigned i = 0; i < q->n_bufs; i++) {
        uintptr_t b = (uintptr_t)q->bufs[i].iov_base;

        if (p >= b && p + len <= b + q->bufs[i].iov_len) {
            return (int)i;
        }
    }
    return -1;
}

/* Queue the not-yet-read remainder of slot i (io_uring modes). */
static mt_status_t
queue_slot(struct mt_io_queue *q, unsigned i)
{
    struct queue_slot *s = &q->slots[i];
    struct io_uring_sqe *sqe;
    char *dst = (char *)s->buf + s->done;
    unsigned nbytes = (unsigned)(s->len - s->done);
    int fd = q->fixed_files ? s->file : q->fds[s->file];
    int ret;

    sqe = io_uring_get_sqe(&q->ring);
    if (sqe == NULL) {
        /* depth entries, at most depth reads queued: cannot happen */
        return mt_fail(MT_ERR_INTERNAL, 0, "io_uring submission queue is full");
    }
    if (s->fixed >= 0) {
        io_uring_prep_read_fixed(sqe, fd, dst, nbytes, s->off + s->done, s->fixed);
    } else {
        io_uring_prep_read(sqe, fd, dst, nbytes, s->off + s->done);
    }
    if (q->fixed_files) {
        sqe->flags |= IOSQE_FIXED_FILE;
    }
    io_uring_sqe_set_data64(sqe, i);
    ret = io_uring_submit(&q->ring);
    if (ret < 0) {
        return mt_fail(MT_ERR_IO, -ret, "io_uring submit failed");
    }
    return MT_OK;
}

mt_status_t
mt_io_queue_submit(struct mt_io_queue *q, int file, void *buf, uint64_t off, size_t len,
                   uint64_t tag)
{
    unsigned i;
    mt_status_t st;

    /* The O_DIRECT contract, checked here so a bad caller fails at its own call site. */
    MT_ASSERT(off % MT_IO_ALIGN == 0);
    MT_ASSERT(len % MT_IO_ALIGN == 0 && len > 0 && len <= (1u << 30));
    MT_ASSERT((uintptr_t)buf % MT_IO_ALIGN == 0);
    MT_ASSERT(file >= 0 && file < q->n_files);
    if (q->in_flight == q->depth) {
        return mt_fail(MT_ERR_INVAL, 0, "%u reads already in flight (the queue depth)", q->depth);
    }
    for (i = 0; i < q->depth && q->slots[i].busy; i++) {
    }
    MT_ASSERT(i < q->depth);
    q->slots[i] = (struct queue_slot){
        .busy = true,
        .file = file,
        .buf = buf,
        .off = off,
        .len = len,
        .tag = tag,
        .fixed = find_fixed(q, buf, len),
    };
    if (q->mode == MT_IO_QUEUE_PREAD) {
        q->slots[i].queued = true;
    } else {
        st = queue_slot(q, i);
        if (st != MT_OK) {
            q->slots[i].busy = false;
            return st;
        }
    }
    q->in_flight++;
    return MT_OK;
}

static void
finish_slot(struct mt_io_queue *q, unsigned i, int err, struct mt_io_queue_done *done_out)
{
    struct queue_slot *s = &q->slots[i];

    done_out->tag = s->tag;
    done_out->bytes = s->done;
    done_out->err = err;
    done_out->file = s->file;
    done_out->off = s->off + s->done;
    s->busy = false;
    s->queued = false;
    q->in_flight--;
}

/* Apply one result res to slot i. Returns true when the read is finished (done_out filled). */
static bool
complete_part(struct mt_io_queue *q, unsigned i, int res, struct mt_io_queue_done *done_out)
{
    struct queue_slot *s = &q->slots[i];

    res = fault_apply(s->file, s->off + s->done, s->len - s->done, res);
    if (res == -EAGAIN || res == -EINTR) {
        return false; /* resubmit as is */
    }
    if (res < 0) {
        finish_slot(q, i, -res, done_out);
        return true;
    }
    s->done += (size_t)res;
    /* O_DIRECT stops off the 4 KiB grid only at end of file */
    if (res == 0 || s->done == s->len || s->done % MT_IO_ALIGN != 0) {
        finish_slot(q, i, 0, done_out);
        return true;
    }
    return false; /* short read: the rest is still to come */
}

static mt_status_t
wait_pread(struct mt_io_queue *q, struct mt_io_queue_done *done_out)
{
    unsigned i;

    for (i = 0; i < q->depth && !(q->slots[i].busy && q->slots[i].queued); i++) {
    }
    MT_ASSERT(i < q->depth);
    for (;;) {
        struct queue_slot *s = &q->slots[i];
        ssize_t n = pread(q->fds[s->file], (char *)s->buf + s->done, s->len - s->done,
                          (off_t)(s->off + s->done));

        if (complete_part(q, i, n < 0 ? -errno : (int)n, done_out)) {
            return MT_OK;
        }
    }
}

mt_status_t
mt_io_queue_wait(struct mt_io_queue *q, struct mt_io_queue_done *done_out)
{
    if (q->in_flight == 0) {
        return mt_fail(MT_ERR_INVAL, 0, "wait with no read in flight");
    }
    if (q->mode == MT_IO_QUEUE_PREAD) {
        return wait_pread(q, done_out);
    }
    for (;;) {
        struct io_uring_cqe *cqe;
        unsigned i;
        int res;
        int ret;

        ret = io_uring_wait_cqe(&q->ring, &cqe);
        if (ret == -EINTR || ret == -EAGAIN) {
            continue;
        }
        if (ret < 0) {
            return mt_fail(MT_ERR_IO, -ret, "io_uring wait failed");
        }
        i = (unsigned)io_uring_cqe_get_data64(cqe);
        res = cqe->res;
        io_uring_cqe_seen(&q->ring, cqe);
        MT_ASSERT(i < q->depth && q->slots[i].busy);
        if (complete_part(q, i, res, done_out)) {
            return MT_OK;
        }
        if (queue_slot(q, i) != MT_OK) {
            finish_slot(q, i, EIO, done_out);
            return MT_OK;
        }
    }
}

void
mt_io_queue_destroy(struct mt_io_queue *q)
{
    if (q == NULL) {
        return;
    }
    /* The kernel may still write into staging memory: let every read finish first. */
    while (q->have_ring && q->in_flight > 0) {
        struct io_uring_cqe *cqe;
        unsigned i;

        if (io_uring_wait_cqe(&q->ring, &cqe) < 0) {
            break;
        }
        i = (unsigned)io_uring_cqe_get_data64(cqe);
        io_uring_cqe_seen(&q->ring, cqe);
        if (i < q->depth && q->slots[i].busy) {
            q->slots[i].busy = false;
            q->in_flight--;
        }
    }
    if (q->have_ring) {
        io_uring_queue_exit(&q->ring);
    }
    free(q->bufs);
    free(q->slots);
    free(q);
}
