/* SPDX-License-Identifier: MIT */
/*
 * uring_reader.c - io_uring O_DIRECT reads of one file (io/uring_reader.h).
 *
 * Each submitted read owns one slot of a fixed table (queue_depth slots); the slot index is the
 * SQE's user_data, so a completion finds its read without a search. A slot stays busy across
 * resubmissions of a short read and is freed only when the read is complete or failed: that is
 * what makes "done" mean "every byte asked for is in the buffer".
 */
#include <config.h>

#include "io/uring_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <liburing.h>

struct read_slot {
    bool busy;
    void *buf;    /* borrowed from the caller until completion */
    uint64_t off; /* file offset of buf[0] */
    size_t len;   /* bytes asked for */
    size_t done;  /* bytes already in buf */
    uint64_t tag;
    int fixed; /* index of the registered buffer holding buf, or -1 */
};

struct mt_io_uring_reader {
    char *path;              /* owned, for messages */
    int fd;                  /* owned */
    bool direct;             /* O_DIRECT in effect */
    uint64_t size;           /* file size at open */
    struct io_uring ring;    /* owned */
    unsigned depth;          /* slots */
    unsigned in_flight;      /* busy slots */
    struct read_slot *slots; // (depth), owned
    struct iovec *fixed;     /* registered buffer ranges, owned copy (n_fixed) */
    unsigned n_fixed;
};

void
mt_io_range_align(uint64_t off, size_t len, uint64_t *aoff_out, size_t *alen_out)
{
    uint64_t start = off & ~(uint64_t)(MT_IO_ALIGN - 1);
    uint64_t end = MT_CEIL_DIV(off + len, MT_IO_ALIGN) * MT_IO_ALIGN;

    *aoff_out = start;
    *alen_out = (size_t)(end - start);
}

mt_status_t
mt_io_uring_reader_create(const char *path, unsigned queue_depth, unsigned flags,
                          struct mt_io_uring_reader **reader_out)
{
    struct mt_io_uring_reader *r;
    struct stat sb;
    mt_status_t st;
    int ret;

    if (queue_depth < 1 || queue_depth > 4096) {
        return mt_fail(MT_ERR_INVAL, 0, "queue depth %u for '%s' is out of range 1..4096",
                       queue_depth, path);
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate reader for '%s'", path);
    }
    r->path = strdup(path);
    r->slots = calloc(queue_depth, sizeof(*r->slots));
    if (r->path == NULL || r->slots == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate reader for '%s'", path);
        goto out_free_reader;
    }
    r->depth = queue_depth;
    r->fd = -1;
    if (!(flags & MT_IO_READER_BUFFERED)) {
        if (flags & MT_IO_READER_TEST_REFUSE_DIRECT) {
            errno = EINVAL;
        } else {
            r->fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
        }
        r->direct = r->fd >= 0;
        if (r->fd < 0 && errno == EINVAL) {
            mt_log_warn("'%s': the filesystem refuses O_DIRECT; reading through the page cache",
                        path);
        } else if (r->fd < 0) {
            st = mt_fail(MT_ERR_IO, errno, "cannot open '%s'", path);
            goto out_free_reader;
        }
    }
    if (r->fd < 0) {
        r->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (r->fd < 0) {
            st = mt_fail(MT_ERR_IO, errno, "cannot open '%s'", path);
            goto out_free_reader;
        }
    }
    if (fstat(r->fd, &sb) != 0) {
        st = mt_fail(MT_ERR_IO, errno, "cannot stat '%s'", path);
        goto out_close_fd;
    }
    r->size = (uint64_t)sb.st_size;
    ret = io_uring_queue_init(queue_depth, &r->ring, 0);
    if (ret < 0) {
        st = mt_fail(MT_ERR_IO, -ret, "io_uring setup for '%s' failed%s", path,
                     ret == -ENOMEM ? " (raise RLIMIT_MEMLOCK, e.g. ulimit -l unlimited)" : "");
        goto out_close_fd;
    }
    *reader_out = r;
    return MT_OK;

out_close_fd:
    close(r->fd);
out_free_reader:
    free(r->slots);
    free(r->path);
    free(r);
    return st;
}

/* Queue the not-yet-read remainder of slot i and submit it. */
static mt_status_t
queue_slot(struct mt_io_uring_reader *r, unsigned i)
{
    struct read_slot *s = &r->slots[i];
    struct io_uring_sqe *sqe;
    char *dst = (char *)s->buf + s->done;
    unsigned nbytes = (unsigned)(s->len - s->done);
    int ret;

    sqe = io_uring_get_sqe(&r->ring);
    if (sqe == NULL) {
        /* The ring has depth entries and at most depth reads are queued: cannot happen. */
        return mt_fail(MT_ERR_INTERNAL, 0, "io_uring submission queue of '%s' is full", r->path);
    }
    if (s->fixed >= 0) {
        io_uring_prep_read_fixed(sqe, r->fd, dst, nbytes, s->off + s->done, s->fixed);
    } else {
        io_uring_prep_read(sqe, r->fd, dst, nbytes, s->off + s->done);
    }
    io_uring_sqe_set_data64(sqe, i);
    ret = io_uring_submit(&r->ring);
    if (ret < 0) {
        return mt_fail(MT_ERR_IO, -ret, "io_uring submit for '%s' failed", r->path);
    }
    return MT_OK;
}

mt_status_t
mt_io_uring_reader_register_buffers(struct mt_io_uring_reader *r, void *const *bufs,
                                    const size_t *lens, unsigned n)
{
    struct iovec *iov;
    int ret;

    MT_ASSERT(r->in_flight == 0);
    iov = calloc(n, sizeof(*iov));
    if (iov == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %u buffer records", n);
    }
    for (unsigned i = 0; i < n; i++) {
        MT_ASSERT((uintptr_t)bufs[i] % MT_IO_ALIGN == 0);
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = lens[i];
    }
    if (r->n_fixed > 0) {
        io_uring_unregister_buffers(&r->ring);
        free(r->fixed);
        r->fixed = NULL;
        r->n_fixed = 0;
    }
    ret = io_uring_register_buffers(&r->ring, iov, n);
    if (ret < 0) {
        free(iov);
        return mt_fail(MT_ERR_IO, -ret, "cannot register %u buffers with io_uring for '%s'%s", n,
                       r->path,
                       ret == -ENOMEM ? " (raise RLIMIT_MEMLOCK, e.g. ulimit -l unlimited)" : "");
    }
    r->fixed = iov;
    r->n_fixed = n;
    return MT_OK;
}

/* Index of the registered buffer that holds [buf, buf+len), or -1. */
static int
find_fixed(const struct mt_io_uring_reader *r, const void *buf, size_t len)
{
    uintptr_t p = (uintptr_t)buf;

    for (unsigned i = 0; i < r->n_fixed; i++) {
        uintptr_t b = (uintptr_t)r->fixed[i].iov_base;

        if (p >= b && p + len <= b + r->fixed[i].iov_len) {
            return (int)i;
        }
    }
    return -1;
}

mt_status_t
mt_io_uring_reader_submit(struct mt_io_uring_reader *r, void *buf, uint64_t off, size_t len,
                          uint64_t tag)
{
    unsigned i;
    mt_status_t st;

    /* The O_DIRECT contract, checked here so a bad caller fails at its own call site. */
    MT_ASSERT(off % MT_IO_ALIGN == 0);
    MT_ASSERT(len % MT_IO_ALIGN == 0 && len > 0 && len <= (1u << 30));
    MT_ASSERT((uintptr_t)buf % MT_IO_ALIGN == 0);
    if (r->in_flight == r->depth) {
        return mt_fail(MT_ERR_INVAL, 0, "'%s': %u reads already in flight (the queue depth)",
                       r->path, r->depth);
    }
    for (i = 0; i < r->depth && r->slots[i].busy; i++) {
    }
    MT_ASSERT(i < r->depth);
    r->slots[i] = (struct read_slot){
        .busy = true,
        .buf = buf,
        .off = off,
        .len = len,
        .done = 0,
        .tag = tag,
        .fixed = find_fixed(r, buf, len),
    };
    st = queue_slot(r, i);
    if (st != MT_OK) {
        r->slots[i].busy = false;
        return st;
    }
    r->in_flight++;
    return MT_OK;
}

/* Slot i is finished (complete, at end of file, or failed): free it and describe it. */
static void
finish_slot(struct mt_io_uring_reader *r, unsigned i, struct mt_io_done *done_out)
{
    done_out->tag = r->slots[i].tag;
    done_out->bytes = r->slots[i].done;
    r->slots[i].busy = false;
    r->in_flight--;
}

mt_status_t
mt_io_uring_reader_wait(struct mt_io_uring_reader *r, struct mt_io_done *done_out)
{
    if (r->in_flight == 0) {
        return mt_fail(MT_ERR_INVAL, 0, "'%s': wait with no read in flight", r->path);
    }
    for (;;) {
        struct io_uring_cqe *cqe;
        struct read_slot *s;
        unsigned i;
        int res;
        int ret;
        mt_status_t st;

        ret = io_uring_wait_cqe(&r->ring, &cqe);
        if (ret == -EINTR || ret == -EAGAIN) {
            continue;
        }
        if (ret < 0) {
            return mt_fail(MT_ERR_IO, -ret, "io_uring wait for '%s' failed", r->path);
        }
        i = (unsigned)io_uring_cqe_get_data64(cqe);
        res = cqe->res;
        io_uring_cqe_seen(&r->ring, cqe);
        MT_ASSERT(i < r->depth && r->slots[i].busy);
        s = &r->slots[i];

        if (res == -EINVAL && r->direct) {
            /* Accepted at open, refused at read (some FUSE and network filesystems). */
            int fl = fcntl(r->fd, F_GETFL);

            if (fl < 0 || fcntl(r->fd, F_SETFL, fl & ~O_DIRECT) != 0) {
                st = mt_fail(MT_ERR_IO, errno, "'%s': cannot turn O_DIRECT off", r->path);
                finish_slot(r, i, done_out);
                return st;
            }
            r->direct = false;
            mt_log_warn("'%s': the filesystem refuses O_DIRECT reads; reading through the page "
                        "cache",
                        r->path);
            res = -EAGAIN;
        }
        if (res == -EAGAIN || res == -EINTR) {
            st = queue_slot(r, i);
            if (st != MT_OK) {
                finish_slot(r, i, done_out);
                return st;
            }
            continue;
        }
        if (res < 0) {
            st = mt_fail(MT_ERR_IO, -res, "read of '%s' at offset %llu (%zu bytes) failed", r->path,
                         (unsigned long long)(s->off + s->done), s->len - s->done);
            finish_slot(r, i, done_out);
            return st;
        }
        s->done += (size_t)res;
        /* O_DIRECT stops short of a 4 KiB multiple only at end of file, and the rest would be a
         * misaligned O_DIRECT read (EINVAL on some filesystems): that is end of file too. */
        if (res == 0 || s->done == s->len || (r->direct && s->done % MT_IO_ALIGN != 0)) {
            finish_slot(r, i, done_out); /* complete, or end of file */
            return MT_OK;
        }
        /* Short read: the rest is still to come (liburing examples/io_uring-cp.c). */
        st = queue_slot(r, i);
        if (st != MT_OK) {
            finish_slot(r, i, done_out);
            return st;
        }
    }
}

mt_status_t
mt_io_uring_reader_read(struct mt_io_uring_reader *r, void *buf, uint64_t off, size_t len,
                        size_t *bytes_out)
{
    struct mt_io_done done;
    mt_status_t st;

    MT_ASSERT(r->in_flight == 0);
    st = mt_io_uring_reader_submit(r, buf, off, len, 0);
    if (st == MT_OK) {
        st = mt_io_uring_reader_wait(r, &done);
    }
    if (st == MT_OK) {
        *bytes_out = done.bytes;
    }
    return st;
}

mt_status_t
mt_io_uring_reader_read_range(struct mt_io_uring_reader *r, uint64_t off, size_t len, void *buf,
                              size_t cap, const void **data_out)
{
    uint64_t aoff;
    size_t alen;
    size_t got;
    mt_status_t st;

    mt_io_range_align(off, len, &aoff, &alen);
    if (alen > cap) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "'%s': range of %zu bytes at %llu needs a %zu-byte aligned buffer, got %zu",
                       r->path, len, (unsigned long long)off, alen, cap);
    }
    st = mt_io_uring_reader_read(r, buf, aoff, alen, &got);
    if (st != MT_OK) {
        return st;
    }
    if (aoff + got < off + len) {
        return mt_fail(MT_ERR_IO, 0, "'%s' ends at %llu, before the end of range %llu+%zu", r->path,
                       (unsigned long long)(aoff + got), (unsigned long long)off, len);
    }
    *data_out = (const char *)buf + (off - aoff);
    return MT_OK;
}

void
mt_io_uring_reader_destroy(struct mt_io_uring_reader *r)
{
    if (r == NULL) {
        return;
    }
    /* The kernel may still write into caller buffers: let every read finish first. */
    while (r->in_flight > 0) {
        struct io_uring_cqe *cqe;
        unsigned i;

        if (io_uring_wait_cqe(&r->ring, &cqe) < 0) {
            break;
        }
        i = (unsigned)io_uring_cqe_get_data64(cqe);
        io_uring_cqe_seen(&r->ring, cqe);
        if (i < r->depth && r->slots[i].busy) {
            r->slots[i].busy = false;
            r->in_flight--;
        }
    }
    io_uring_queue_exit(&r->ring);
    close(r->fd);
    free(r->fixed);
    free(r->slots);
    free(r->path);
    free(r);
}

bool
mt_io_uring_reader_is_direct(const struct mt_io_uring_reader *r)
{
    return r->direct;
}

uint64_t
mt_io_uring_reader_file_size(const struct mt_io_uring_reader *r)
{
    return r->size;
}

unsigned
mt_io_uring_reader_in_flight(const struct mt_io_uring_reader *r)
{
    return r->in_flight;
}
