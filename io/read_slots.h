/* SPDX-License-Identifier: MIT */
/*
 * read_slots.h - the table of reads in flight on one io_uring, shared by io/uring_reader.c (one
 * file) and io/io_queue.c (many files, with a pread fallback). Internal to io/.
 *
 * The one idea: each read owns a slot of a fixed table of depth slots, and the slot index is the
 * SQE's user_data, so a completion finds its read without a search. A slot stays busy across the
 * resubmissions of a short read and is freed only when the read is finished (every byte asked for
 * is in the buffer, the file ended, or it failed): that is what makes "done" mean done.
 *
 * The table holds the mechanics (slots, registered buffers, SQE preparation, the meaning of one
 * result); each user keeps its policy: which messages name what, whether io_uring may be missing
 * (the table also works ring-less, for io_queue's pread mode), fault injection, and what to do
 * when a filesystem refuses O_DIRECT halfway. Offsets, lengths and buffers are asserted
 * MT_IO_ALIGN-aligned when a read takes its slot.
 */
#ifndef MT_IO_READ_SLOTS_H
#define MT_IO_READ_SLOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <liburing.h>

#include "runtime/base/status.h"

/* One read: [off, off+len) of file into buf, of which done bytes are in. */
struct mt_io_slot {
    bool busy;
    int file;     /* index into the table's fds */
    void *buf;    /* borrowed from the caller until the read is finished */
    uint64_t off; /* file offset of buf[0] */
    size_t len;   /* bytes asked for */
    size_t done;  /* bytes already in buf */
    uint64_t tag; /* the caller's */
    int fixed;    /* index of the registered buffer holding buf, or -1 */
};

struct mt_io_slots {
    const char *name; /* the file named in messages, or NULL (borrowed) */
    const int *fds;   /* borrowed (n_files) */
    int n_files;
    bool have_ring;           /* ring set up (mt_io_slots_ring) */
    bool fixed_files;         /* fds registered: SQEs use their indices */
    struct io_uring ring;     /* owned when have_ring */
    unsigned depth;           /* slots, and ring entries */
    unsigned in_flight;       /* busy slots */
    struct mt_io_slot *slots; // (depth), owned
    struct iovec *fixed;      /* registered buffer ranges, owned (n_fixed) */
    unsigned n_fixed;
    bool dead; /* a submit failed for good: its SQE is still in the ring, so never submit again */
};

/* What one result did to a read (mt_io_slots_apply). */
enum mt_io_step {
    MT_IO_STEP_AGAIN = 0,  /* the rest is still to read: queue the slot again */
    MT_IO_STEP_DONE = 1,   /* complete, or at end of file: done bytes are in */
    MT_IO_STEP_FAILED = 2, /* the result was -errno; done says how far it got */
};

/*
 * An empty table of depth slots over fds[0..n_files) (borrowed; name only for messages), without
 * a ring yet. false when the slots cannot be allocated (the caller names what it was making).
 */
bool mt_io_slots_init(struct mt_io_slots *t, unsigned depth, const int *fds, int n_files,
                      const char *name);

/* Set up the io_uring of depth entries. 0, or the -errno io_uring_queue_init gave. */
int mt_io_slots_ring(struct mt_io_slots *t);

/* Register the fds with the ring so SQEs skip the per-read file lookup; false if refused. */
bool mt_io_slots_register_files(struct mt_io_slots *t);

/*
 * Register iov[0..n) (owned from now on, registered or not) with the ring, replacing any earlier
 * registration, so reads into them skip per-read page pinning. 0, or the kernel's -errno
 * (typically -ENOMEM from RLIMIT_MEMLOCK); reads into unregistered memory work either way.
 * Nothing may be in flight.
 */
int mt_io_slots_register_buffers(struct mt_io_slots *t, struct iovec *iov, unsigned n);

/*
 * Give a read a free slot and count it in flight; returns the slot index. The caller checks
 * in_flight < depth first (with its own message). Alignment is asserted here, so a bad caller
 * fails at its own call site: the O_DIRECT contract.
 */
unsigned mt_io_slots_take(struct mt_io_slots *t, int file, void *buf, uint64_t off, size_t len,
                          uint64_t tag);

/*
 * Prepare an SQE for the not-yet-read remainder of slot i and submit it (ring modes). A submit
 * that fails for good (after retries of the transient refusals) leaves its SQE in the ring, where
 * the next submit would send it into a buffer the caller has freed: the table is dead from then
 * on, and this call and every later one fail (MT_ERR_IO) without submitting; the reads already
 * in flight still complete.
 */
mt_status_t mt_io_slots_queue(struct mt_io_slots *t, unsigned i);

/* Wait for the next completion: its slot and result (bytes, or -errno). */
mt_status_t mt_io_slots_next(struct mt_io_slots *t, unsigned *slot_out, int *res_out);

/*
 * Apply result res (bytes, or -errno, as a CQE or pread gives it) to slot i. -EAGAIN and -EINTR
 * ask for the same read again; other negative results fail it. A short positive result leaves the
 * rest to read, except when direct and the read stopped off the 4 KiB grid: O_DIRECT does that
 * only at end of file (and the rest would be a misaligned read). 0 is end of file.
 * The slot stays busy: the caller frees it with mt_io_slots_finish once it has described it.
 */
enum mt_io_step mt_io_slots_apply(struct mt_io_slots *t, unsigned i, int res, bool direct);

/* Free slot i (finished, or never queued). */
void mt_io_slots_finish(struct mt_io_slots *t, unsigned i);

/* Wait for every read in flight (the kernel may still write into their buffers), then close the
 * ring and free the table. The fds stay open. */
void mt_io_slots_fini(struct mt_io_slots *t);

#endif /* MT_IO_READ_SLOTS_H */
