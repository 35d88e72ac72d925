/* SPDX-License-Identifier: MIT */
/*
 * io_queue.h - one I/O thread's queue of O_DIRECT reads over a table of files: an io_uring with
 * registered files and buffers, or what is left when the machine refuses those.
 *
 * The one idea: the expert source runs one queue per I/O thread (no lock on the hot path), and
 * every queue degrades the same way, each step announced once per process with its fix:
 *   io_uring + registered buffers   (fastest: no page pinning per read)
 *   -> io_uring, plain buffers      (RLIMIT_MEMLOCK refused the registration: ulimit -l)
 *   -> pread from the thread        (io_uring unavailable: old kernel, seccomp, io_uring_disabled)
 * The contract of a read does not change with the mode: a negative cqe->res is -errno, a short
 * one is resubmitted from where it stopped, and only end of file (a 0 result, or an O_DIRECT
 * result off the 4 KiB grid) completes a read with fewer bytes than asked. Offsets, lengths and
 * buffers are asserted MT_IO_ALIGN-aligned at submit.
 *
 * Fault injection (compiled in, off by default): mt_io_fault_set() turns the completions of reads
 * covering one file offset into short reads or EIO, so tests prove that short reads are finished
 * and errors are never handed on as data.
 *
 * A queue is used by one thread at a time; the fault settings are process-wide and thread-safe.
 */
#ifndef MT_IO_IO_QUEUE_H
#define MT_IO_IO_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/base/status.h"

enum mt_io_queue_mode {
    MT_IO_QUEUE_URING_FIXED = 0, /* io_uring, registered buffers and files */
    MT_IO_QUEUE_URING = 1,       /* io_uring, unregistered buffers */
    MT_IO_QUEUE_PREAD = 2,       /* synchronous pread in the calling thread */
};

/* Name of a mode for messages and benchmark tables ("uring+fixed", "uring", "pread"). */
const char *mt_io_queue_mode_str(enum mt_io_queue_mode m);

struct mt_io_queue;

/* One finished read, from mt_io_queue_wait. */
struct mt_io_queue_done {
    uint64_t tag;  /* the caller's tag */
    size_t bytes;  /* bytes in the buffer: the length asked for, less only at end of file */
    int err;       /* 0, or the errno that failed the read (bytes then says how far it got) */
    int file;      /* file index of the read */
    uint64_t off;  /* file offset where the failure happened (off + bytes done), for messages */
};

/*
 * A queue of depth reads in flight (1..4096) over fds[0..n_files) (borrowed: they must stay open
 * until destroy; paths only for messages). want is the best mode to try; the queue falls back as
 * described above and warns once per process for each fallback. bufs/lens describe the staging
 * memory to register (n_bufs regions, each MT_IO_ALIGN aligned and at most 1 GiB; may be 0).
 * MT_ERR_INVAL (depth), MT_ERR_NOMEM.
 */
mt_status_t mt_io_queue_create(unsigned depth, const int *fds, int n_files,
                               enum mt_io_queue_mode want, void *const *bufs, const size_t *lens,
                               unsigned n_bufs, struct mt_io_queue **q_out);

/* Wait for every read in flight, then close the ring. NULL is a no-op. The fds stay open. */
void mt_io_queue_destroy(struct mt_io_queue *q);

/* The mode the queue runs in. */
enum mt_io_queue_mode mt_io_queue_mode(const struct mt_io_queue *q);

/*
 * Queue a read of len bytes of file at off into buf (all MT_IO_ALIGN aligned, asserted;
 * 0 < len <= 1 GiB), tagged tag. With io_uring it is submitted at once; in pread mode it runs in
 * the next mt_io_queue_wait. MT_ERR_INVAL when depth reads are in flight already.
 * buf is borrowed until its read completes.
 */
mt_status_t mt_io_queue_submit(struct mt_io_queue *q, int file, void *buf, uint64_t off,
                               size_t len, uint64_t tag);

/*
 * Wait for one read to finish (in any order) and describe it in *done_out: complete, at end of
 * file, or failed with done_out->err. Returns MT_OK in all three cases (the caller names the
 * expert in the message); MT_ERR_INVAL when nothing is in flight.
 */
mt_status_t mt_io_queue_wait(struct mt_io_queue *q, struct mt_io_queue_done *done_out);

/* Reads in flight now. */
unsigned mt_io_queue_in_flight(const struct mt_io_queue *q);

/* ---- fault injection (tests) ---------------------------------------------------------------- */

enum mt_io_fault_kind {
    MT_IO_FAULT_NONE = 0,
    MT_IO_FAULT_SHORT = 1, /* the completion returns only part (a 4 KiB multiple) of the bytes */
    MT_IO_FAULT_EIO = 2,   /* the completion returns -EIO */
    MT_IO_FAULT_EINVAL = 3, /* -EINVAL: a filesystem that refuses O_DIRECT only at read time */
    MT_IO_FAULT_WAIT = 4,   /* mt_io_queue_wait fails as on a broken ring (the read stays queued) */
    MT_IO_FAULT_SHORT_ODD = 5, /* part of the bytes, ending off the 4 KiB grid: on an O_DIRECT fd
                                * only end of file does that; a buffered read may at any point */
};

/*
 * From now on, the next count completions of reads of file index file whose range covers byte
 * off get kind (MT_IO_FAULT_WAIT: the next count waits of any queue, file and off unused).
 * MT_IO_FAULT_NONE (or count 0) turns injection off. Thread-safe.
 */
void mt_io_fault_set(enum mt_io_fault_kind kind, int file, uint64_t off, int count);

/* How many faults were injected since the last mt_io_fault_set. */
int mt_io_fault_fired(void);

#endif /* MT_IO_IO_QUEUE_H */
