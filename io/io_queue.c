/* SPDX-License-Identifier: MIT */
/*
 * io_queue.c - one thread's reads over many files (io/io_queue.h).
 *
 * The slot table, SQEs and the meaning of a result are io/read_slots.c's, shared with the
 * one-file uring_reader; this file adds the queue's policy: the fallbacks from registered buffers
 * to plain ones to pread (each warned once per process), fault injection, and failures handed
 * back as data (done->err) for the caller to name the expert.
 */
#include <config.h>

#include "io/io_queue.h"

#include "io/read_slots.h"

#include "io/uring_reader.h" /* MT_IO_ALIGN */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

struct mt_io_queue {
    enum mt_io_queue_mode mode;
    struct mt_io_slots tab; /* the reads in flight; ring-less in pread mode */
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
    if (fault_left > 0 && fault_kind != MT_IO_FAULT_WAIT && file == fault_file &&
        fault_off >= off && fault_off < off + len) {
        if (fault_kind == MT_IO_FAULT_EIO) {
            res = -EIO;
        } else if (fault_kind == MT_IO_FAULT_EINVAL) {
            res = -EINVAL;
        } else if (fault_kind == MT_IO_FAULT_SHORT_ODD && res > 1) {
            res = res / 2 | 1; /* about half, off the grid */
        } else if (fault_kind == MT_IO_FAULT_SHORT && res > (int)MT_IO_ALIGN) {
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

/* Whether MT_IO_FAULT_WAIT fails this wait. */
static bool
fault_wait(void)
{
    bool hit = false;

    if (!atomic_load_explicit(&fault_armed, memory_order_relaxed)) {
        return false;
    }
    pthread_mutex_lock(&fault_lock);
    if (fault_left > 0 && fault_kind == MT_IO_FAULT_WAIT) {
        hit = true;
        fault_fired++;
        if (--fault_left == 0) {
            atomic_store(&fault_armed, false);
        }
    }
    pthread_mutex_unlock(&fault_lock);
    return hit;
}

/* ---- setup ---------------------------------------------------------------------------------- */

static atomic_bool warned_register;
static atomic_bool warned_uring;

static void
warn_register_once(int err, const size_t *lens, unsigned n)
{
    struct rlimit rl;
    size_t bytes = 0;
    char lim[64] = "unknown";

    if (atomic_exchange(&warned_register, true)) {
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        bytes += lens[i];
    }
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
        if (rl.rlim_cur == RLIM_INFINITY) {
            snprintf(lim, sizeof(lim), "unlimited");
        } else {
            snprintf(lim, sizeof(lim), "%llu KiB", (unsigned long long)rl.rlim_cur / 1024);
        }
    }
    mt_log_warn("cannot register %zu KiB of staging memory with io_uring: %s (RLIMIT_MEMLOCK is "
                "%s; raise it, e.g. ulimit -l unlimited); reading into unregistered buffers",
                bytes >> 10, strerror(err), lim);
}

/* What would let io_uring start, by the error its setup gave. */
static const char *
uring_hint(int err)
{
    switch (err) {
    case EMFILE:
    case ENFILE:
        return "the ring needs a file descriptor: raise the open-file limit, e.g. ulimit -n";
    case ENOMEM:
        return "the ring's memory is locked: raise RLIMIT_MEMLOCK, e.g. ulimit -l unlimited";
    default:
        return "kernel 5.6 or newer, and /proc/sys/kernel/io_uring_disabled 0, are needed";
    }
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
    if (!mt_io_slots_init(&q->tab, depth, fds, n_files, NULL)) {
        free(q);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate an I/O queue of depth %u", depth);
    }
    for (unsigned i = 0; i < n_bufs; i++) {
        MT_ASSERT((uintptr_t)bufs[i] % MT_IO_ALIGN == 0 && lens[i] <= (1u << 30));
    }
    q->mode = MT_IO_QUEUE_PREAD;
    if (want != MT_IO_QUEUE_PREAD) {
        ret = mt_io_slots_ring(&q->tab);
        if (ret < 0) {
            if (!atomic_exchange(&warned_uring, true)) {
                mt_log_warn("io_uring is unavailable: %s (%s); reading with pread",
                            strerror(-ret), uring_hint(-ret));
            }
        } else {
            q->mode = MT_IO_QUEUE_URING;
        }
    }
    if (q->tab.have_ring && n_files > 0) {
        mt_io_slots_register_files(&q->tab);
    }
    if (q->tab.have_ring && want == MT_IO_QUEUE_URING_FIXED && n_bufs > 0) {
        struct iovec *iov = calloc(n_bufs, sizeof(*iov));

        if (iov == NULL) {
            mt_io_queue_destroy(q);
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate an I/O queue of depth %u", depth);
        }
        for (unsigned i = 0; i < n_bufs; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = lens[i];
        }
        ret = mt_io_slots_register_buffers(&q->tab, iov, n_bufs);
        if (ret == 0) {
            q->mode = MT_IO_QUEUE_URING_FIXED;
        } else {
            warn_register_once(-ret, lens, n_bufs);
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
    return q->tab.in_flight;
}

mt_status_t
mt_io_queue_submit(struct mt_io_queue *q, int file, void *buf, uint64_t off, size_t len,
                   uint64_t tag)
{
    unsigned i;
    mt_status_t st;

    if (q->tab.in_flight == q->tab.depth) {
        return mt_fail(MT_ERR_INVAL, 0, "%u reads already in flight (the queue depth)",
                       q->tab.depth);
    }
    i = mt_io_slots_take(&q->tab, file, buf, off, len, tag);
    if (q->mode == MT_IO_QUEUE_PREAD) {
        return MT_OK; /* read in the next mt_io_queue_wait */
    }
    st = mt_io_slots_queue(&q->tab, i);
    if (st != MT_OK) {
        mt_io_slots_finish(&q->tab, i);
    }
    return st;
}

/*
 * The next result of a read in flight, as (slot, bytes or -errno): a completion from the ring, or
 * in pread mode the first waiting read, run now (it stays first until it is finished).
 */
static mt_status_t
next_result(struct mt_io_queue *q, unsigned *slot_out, int *res_out)
{
    struct mt_io_slot *s;
    ssize_t n;
    unsigned i;

    if (q->mode != MT_IO_QUEUE_PREAD) {
        return mt_io_slots_next(&q->tab, slot_out, res_out);
    }
    for (i = 0; i < q->tab.depth && !q->tab.slots[i].busy; i++) {
    }
    MT_ASSERT(i < q->tab.depth);
    s = &q->tab.slots[i];
    n = pread(q->tab.fds[s->file], (char *)s->buf + s->done, s->len - s->done,
              (off_t)(s->off + s->done));
    *slot_out = i;
    *res_out = n < 0 ? -errno : (int)n;
    return MT_OK;
}

/*
 * Whether a read that has just returned res bytes of slot s and stopped off the 4 KiB grid has
 * reached the end of its file. On an O_DIRECT fd nothing else stops a read there (and a read
 * from an off-grid offset would fail with EINVAL); a buffered fd (opened so, or turned so by the
 * expert source's fallback for filesystems that refuse O_DIRECT at read time) may return short
 * anywhere, and the rest is read on. The flag is looked up only for such a stop.
 */
static bool
stop_is_end(const struct mt_io_queue *q, const struct mt_io_slot *s, int res)
{
    size_t at = s->done + (size_t)(res > 0 ? res : 0);
    int fl;

    if (res <= 0 || at >= s->len || at % MT_IO_ALIGN == 0) {
        return true; /* mt_io_slots_apply decides by res and len alone */
    }
    fl = fcntl(q->tab.fds[s->file], F_GETFL);
    return fl < 0 || (fl & O_DIRECT) != 0;
}

mt_status_t
mt_io_queue_wait(struct mt_io_queue *q, struct mt_io_queue_done *done_out)
{
    if (q->tab.in_flight == 0) {
        return mt_fail(MT_ERR_INVAL, 0, "wait with no read in flight");
    }
    if (fault_wait()) {
        return mt_fail(MT_ERR_IO, EBADFD, "io_uring wait failed (injected by a test)");
    }
    for (;;) {
        struct mt_io_slot *s;
        enum mt_io_step step;
        unsigned i;
        int res;
        int err = 0;
        mt_status_t st;

        st = next_result(q, &i, &res);
        if (st != MT_OK) {
            return st;
        }
        s = &q->tab.slots[i];
        res = fault_apply(s->file, s->off + s->done, s->len - s->done, res);
        step = mt_io_slots_apply(&q->tab, i, res, stop_is_end(q, s, res));
        if (step == MT_IO_STEP_AGAIN) {
            if (q->mode == MT_IO_QUEUE_PREAD || mt_io_slots_queue(&q->tab, i) == MT_OK) {
                continue;
            }
            err = EIO; /* the resubmission failed (mt_fail said why) */
        } else if (step == MT_IO_STEP_FAILED) {
            err = -res;
        }
        /* Finished: complete, at end of file, or failed; the caller names the expert. */
        done_out->tag = s->tag;
        done_out->bytes = s->done;
        done_out->err = err;
        done_out->file = s->file;
        done_out->off = s->off + s->done;
        mt_io_slots_finish(&q->tab, i);
        return MT_OK;
    }
}

void
mt_io_queue_destroy(struct mt_io_queue *q)
{
    if (q == NULL) {
        return;
    }
    mt_io_slots_fini(&q->tab); /* waits for the reads in flight: they write into staging memory */
    free(q);
}
