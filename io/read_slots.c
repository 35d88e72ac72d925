/* SPDX-License-Identifier: MIT */
/*
 * read_slots.c - the table of reads in flight on one io_uring (io/read_slots.h).
 */
#include <config.h>

#include "io/read_slots.h"

#include "io/uring_reader.h" /* MT_IO_ALIGN */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool
mt_io_slots_init(struct mt_io_slots *t, unsigned depth, const int *fds, int n_files,
                 const char *name)
{
    memset(t, 0, sizeof(*t));
    t->slots = calloc(depth, sizeof(*t->slots));
    t->depth = depth;
    t->fds = fds;
    t->n_files = n_files;
    t->name = name;
    return t->slots != NULL;
}

int
mt_io_slots_ring(struct mt_io_slots *t)
{
    int ret = io_uring_queue_init(t->depth, &t->ring, 0);

    t->have_ring = ret == 0;
    return ret;
}

bool
mt_io_slots_register_files(struct mt_io_slots *t)
{
    t->fixed_files = io_uring_register_files(&t->ring, t->fds, (unsigned)t->n_files) == 0;
    return t->fixed_files;
}

int
mt_io_slots_register_buffers(struct mt_io_slots *t, struct iovec *iov, unsigned n)
{
    int ret;

    MT_ASSERT(t->have_ring && t->in_flight == 0);
    if (t->n_fixed > 0) {
        io_uring_unregister_buffers(&t->ring);
        free(t->fixed);
        t->fixed = NULL;
        t->n_fixed = 0;
    }
    ret = io_uring_register_buffers(&t->ring, iov, n);
    if (ret < 0) {
        free(iov);
        return ret;
    }
    t->fixed = iov;
    t->n_fixed = n;
    return 0;
}

/* Index of the registered buffer that holds [buf, buf+len), or -1. */
static int
find_fixed(const struct mt_io_slots *t, const void *buf, size_t len)
{
    uintptr_t p = (uintptr_t)buf;

    for (unsigned i = 0; i < t->n_fixed; i++) {
        uintptr_t b = (uintptr_t)t->fixed[i].iov_base;

        if (p >= b && p + len <= b + t->fixed[i].iov_len) {
            return (int)i;
        }
    }
    return -1;
}

unsigned
mt_io_slots_take(struct mt_io_slots *t, int file, void *buf, uint64_t off, size_t len, uint64_t tag)
{
    unsigned i;

    MT_ASSERT(off % MT_IO_ALIGN == 0);
    MT_ASSERT(len % MT_IO_ALIGN == 0 && len > 0 && len <= (1u << 30));
    MT_ASSERT((uintptr_t)buf % MT_IO_ALIGN == 0);
    MT_ASSERT(file >= 0 && file < t->n_files);
    for (i = 0; i < t->depth && t->slots[i].busy; i++) {
    }
    MT_ASSERT(i < t->depth);
    t->slots[i] = (struct mt_io_slot){
        .busy = true,
        .file = file,
        .buf = buf,
        .off = off,
        .len = len,
        .done = 0,
        .tag = tag,
        .fixed = find_fixed(t, buf, len),
    };
    t->in_flight++;
    return i;
}

mt_status_t
mt_io_slots_queue(struct mt_io_slots *t, unsigned i)
{
    struct mt_io_slot *s = &t->slots[i];
    struct io_uring_sqe *sqe;
    char *dst = (char *)s->buf + s->done;
    unsigned nbytes = (unsigned)(s->len - s->done);
    int fd = t->fixed_files ? s->file : t->fds[s->file];
    int ret;

    if (t->dead) {
        return t->name != NULL
                   ? mt_fail(MT_ERR_IO, EIO,
                             "the io_uring of '%s' is out of use after a failed submit", t->name)
                   : mt_fail(MT_ERR_IO, EIO, "the io_uring is out of use after a failed submit");
    }
    sqe = io_uring_get_sqe(&t->ring);
    if (sqe == NULL) {
        /* The ring has depth entries and at most depth reads are queued: cannot happen. */
        return t->name != NULL ? mt_fail(MT_ERR_INTERNAL, 0,
                                         "io_uring submission queue of '%s' is full", t->name)
                               : mt_fail(MT_ERR_INTERNAL, 0, "io_uring submission queue is full");
    }
    if (s->fixed >= 0) {
        io_uring_prep_read_fixed(sqe, fd, dst, nbytes, s->off + s->done, s->fixed);
    } else {
        io_uring_prep_read(sqe, fd, dst, nbytes, s->off + s->done);
    }
    if (t->fixed_files) {
        sqe->flags |= IOSQE_FIXED_FILE;
    }
    io_uring_sqe_set_data64(sqe, i);
    /* liburing has made the SQE visible before entering the kernel: a failed submit leaves it in
     * the ring, to go out with the next one into a buffer the caller then thinks idle. So the
     * transient refusals (memory pressure, a full completion queue, a signal) are retried; what
     * still fails after that means a broken ring, on which nothing is submitted again (dead). */
    ret = io_uring_submit(&t->ring);
    for (int tries = 0; (ret == -EAGAIN || ret == -EBUSY || ret == -EINTR) && tries < 100;
         tries++) {
        if (ret != -EINTR) {
            nanosleep(&(struct timespec){.tv_nsec = 100000}, NULL);
        }
        ret = io_uring_submit(&t->ring);
    }
    if (ret < 0) {
        t->dead = true;
        return t->name != NULL
                   ? mt_fail(MT_ERR_IO, -ret, "io_uring submit for '%s' failed", t->name)
                   : mt_fail(MT_ERR_IO, -ret, "io_uring submit failed");
    }
    return MT_OK;
}

mt_status_t
mt_io_slots_next(struct mt_io_slots *t, unsigned *slot_out, int *res_out)
{
    struct io_uring_cqe *cqe;
    unsigned i;
    int ret;

    do {
        ret = io_uring_wait_cqe(&t->ring, &cqe);
    } while (ret == -EINTR || ret == -EAGAIN);
    if (ret < 0) {
        return t->name != NULL ? mt_fail(MT_ERR_IO, -ret, "io_uring wait for '%s' failed", t->name)
                               : mt_fail(MT_ERR_IO, -ret, "io_uring wait failed");
    }
    i = (unsigned)io_uring_cqe_get_data64(cqe);
    *res_out = cqe->res;
    io_uring_cqe_seen(&t->ring, cqe);
    MT_ASSERT(i < t->depth && t->slots[i].busy);
    *slot_out = i;
    return MT_OK;
}

enum mt_io_step
mt_io_slots_apply(struct mt_io_slots *t, unsigned i, int res, bool direct)
{
    struct mt_io_slot *s = &t->slots[i];

    if (res == -EAGAIN || res == -EINTR) {
        return MT_IO_STEP_AGAIN;
    }
    if (res < 0) {
        return MT_IO_STEP_FAILED;
    }
    s->done += (size_t)res;
    if (res == 0 || s->done == s->len || (direct && s->done % MT_IO_ALIGN != 0)) {
        return MT_IO_STEP_DONE;
    }
    /* Short read: the rest is still to come (liburing examples/io_uring-cp.c). */
    return MT_IO_STEP_AGAIN;
}

void
mt_io_slots_finish(struct mt_io_slots *t, unsigned i)
{
    t->slots[i].busy = false;
    t->in_flight--;
}

void
mt_io_slots_fini(struct mt_io_slots *t)
{
    while (t->have_ring && t->in_flight > 0) {
        struct io_uring_cqe *cqe;
        unsigned i;

        if (io_uring_wait_cqe(&t->ring, &cqe) < 0) {
            break;
        }
        i = (unsigned)io_uring_cqe_get_data64(cqe);
        io_uring_cqe_seen(&t->ring, cqe);
        if (i < t->depth && t->slots[i].busy) {
            mt_io_slots_finish(t, i);
        }
    }
    if (t->have_ring) {
        io_uring_queue_exit(&t->ring);
        t->have_ring = false;
    }
    free(t->fixed);
    free(t->slots);
    t->fixed = NULL;
    t->slots = NULL;
}
