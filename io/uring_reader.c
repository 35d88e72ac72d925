/* SPDX-License-Identifier: MIT */
/*
 * uring_reader.c - io_uring O_DIRECT reads of one file (io/uring_reader.h).
 *
 * The slot table, SQEs and the meaning of a result are io/read_slots.c's, shared with the
 * multi-file io_queue; this file adds the one-file policy: opening with O_DIRECT or not, failing
 * (not falling back) when io_uring is missing, turning O_DIRECT off when a filesystem refuses it
 * at read time, and messages that name the file.
 */
#include <config.h>

#include "io/uring_reader.h"

#include "io/read_slots.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

struct mt_io_uring_reader {
    char *path;             /* owned, for messages */
    int fd;                 /* owned */
    bool direct;            /* O_DIRECT in effect */
    bool *issued_direct;    /* (queue depth) slot i's read was last queued with O_DIRECT */
    unsigned flags;         /* as created (the test flags) */
    uint64_t size;          /* file size at open */
    struct mt_io_slots tab; /* the reads in flight over {fd} (file 0) */
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
    r->fd = -1;
    r->flags = flags;
    r->path = strdup(path);
    r->issued_direct = calloc(queue_depth, sizeof(*r->issued_direct));
    if (!mt_io_slots_init(&r->tab, queue_depth, &r->fd, 1, r->path) || r->path == NULL ||
        r->issued_direct == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate reader for '%s'", path);
        goto out_free_reader;
    }
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
    ret = mt_io_slots_ring(&r->tab);
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
    mt_io_slots_fini(&r->tab);
    free(r->issued_direct);
    free(r->path);
    free(r);
    return st;
}

mt_status_t
mt_io_uring_reader_register_buffers(struct mt_io_uring_reader *r, void *const *bufs,
                                    const size_t *lens, unsigned n)
{
    struct iovec *iov;
    int ret;

    MT_ASSERT(r->tab.in_flight == 0);
    iov = calloc(n, sizeof(*iov));
    if (iov == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %u buffer records", n);
    }
    for (unsigned i = 0; i < n; i++) {
        MT_ASSERT((uintptr_t)bufs[i] % MT_IO_ALIGN == 0);
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = lens[i];
    }
    ret = mt_io_slots_register_buffers(&r->tab, iov, n);
    if (ret < 0) {
        return mt_fail(MT_ERR_IO, -ret, "cannot register %u buffers with io_uring for '%s'%s", n,
                       r->path,
                       ret == -ENOMEM ? " (raise RLIMIT_MEMLOCK, e.g. ulimit -l unlimited)" : "");
    }
    return MT_OK;
}

/* Queue slot i's read, remembering whether it goes out with O_DIRECT. */
static mt_status_t
queue(struct mt_io_uring_reader *r, unsigned i)
{
    r->issued_direct[i] = r->direct;
    return mt_io_slots_queue(&r->tab, i);
}

mt_status_t
mt_io_uring_reader_submit(struct mt_io_uring_reader *r, void *buf, uint64_t off, size_t len,
                          uint64_t tag)
{
    unsigned i;
    mt_status_t st;

    if (r->tab.in_flight == r->tab.depth) {
        return mt_fail(MT_ERR_INVAL, 0, "'%s': %u reads already in flight (the queue depth)",
                       r->path, r->tab.depth);
    }
    i = mt_io_slots_take(&r->tab, 0, buf, off, len, tag);
    st = queue(r, i);
    if (st != MT_OK) {
        mt_io_slots_finish(&r->tab, i);
    }
    return st;
}

/*
 * A read failed with EINVAL although O_DIRECT was accepted at open (some FUSE and network
 * filesystems refuse it only at read time): turn O_DIRECT off for the rest of the file's life.
 */
static mt_status_t
drop_direct(struct mt_io_uring_reader *r)
{
    int fl = fcntl(r->fd, F_GETFL);

    if (fl < 0 || fcntl(r->fd, F_SETFL, fl & ~O_DIRECT) != 0) {
        return mt_fail(MT_ERR_IO, errno, "'%s': cannot turn O_DIRECT off", r->path);
    }
    r->direct = false;
    mt_log_warn("'%s': the filesystem refuses O_DIRECT reads; reading through the page cache",
                r->path);
    return MT_OK;
}

mt_status_t
mt_io_uring_reader_wait(struct mt_io_uring_reader *r, struct mt_io_done *done_out)
{
    if (r->tab.in_flight == 0) {
        return mt_fail(MT_ERR_INVAL, 0, "'%s': wait with no read in flight", r->path);
    }
    for (;;) {
        struct mt_io_slot *s;
        enum mt_io_step step;
        unsigned i;
        int res;
        mt_status_t st;

        st = mt_io_slots_next(&r->tab, &i, &res);
        if (st != MT_OK) {
            return st;
        }
        s = &r->tab.slots[i];
        if ((r->flags & MT_IO_READER_TEST_REFUSE_DIRECT_READS) && r->issued_direct[i] && res >= 0) {
            res = -EINVAL;
        }
        /* EINVAL from a read issued with O_DIRECT at an offset a file can have: the filesystem
         * refuses O_DIRECT. The first such read turns it off; the others already in flight are
         * read again buffered too. (Past INT64_MAX the offset is the reason: that read fails.) */
        if (res == -EINVAL && r->issued_direct[i] && s->off <= (uint64_t)INT64_MAX - s->len) {
            st = r->direct ? drop_direct(r) : MT_OK;
            res = -EAGAIN; /* the same read again, buffered */
        }
        step = st == MT_OK ? mt_io_slots_apply(&r->tab, i, res, r->direct) : MT_IO_STEP_FAILED;
        if (step == MT_IO_STEP_FAILED && st == MT_OK) {
            st = mt_fail(MT_ERR_IO, -res, "read of '%s' at offset %llu (%zu bytes) failed", r->path,
                         (unsigned long long)(s->off + s->done), s->len - s->done);
        }
        if (step == MT_IO_STEP_AGAIN) {
            st = queue(r, i);
            if (st == MT_OK) {
                continue;
            }
        }
        /* Finished: complete, at end of file, or failed (done_out->tag still says which). */
        done_out->tag = s->tag;
        done_out->bytes = s->done;
        mt_io_slots_finish(&r->tab, i);
        return st;
    }
}

mt_status_t
mt_io_uring_reader_read(struct mt_io_uring_reader *r, void *buf, uint64_t off, size_t len,
                        size_t *bytes_out)
{
    struct mt_io_done done;
    mt_status_t st;

    MT_ASSERT(r->tab.in_flight == 0);
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
    mt_io_slots_fini(&r->tab); /* waits for the reads in flight: they write into caller memory */
    close(r->fd);
    free(r->issued_direct);
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
    return r->tab.in_flight;
}
