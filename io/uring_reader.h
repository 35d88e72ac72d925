/* SPDX-License-Identifier: MIT */
/*
 * uring_reader.h - reading one file with io_uring, O_DIRECT, many reads in flight.
 *
 * The one idea: O_DIRECT moves bytes straight from the drive into our buffer, skipping the page
 * cache (no second copy, no cache eviction of the weights we keep in DRAM), but only for reads
 * whose file offset, length and buffer address are multiples of the block size. We take 4 KiB
 * (MT_IO_ALIGN) as that size everywhere, assert it at submit time (a misaligned read is a bug in
 * the caller, not a runtime condition), and give callers mt_io_range_align() to widen any byte
 * range to the aligned one around it (at most 8 KiB more).
 *
 * Completions follow liburing's contract: a negative cqe->res is -errno and fails that read with
 * strerror; a short positive one means "the rest is still to read" and is resubmitted from where
 * it stopped (except an O_DIRECT one that ends off the 4 KiB grid: only end of file does that);
 * 0 means end of file, and the read completes with the bytes it got. A filesystem
 * that refuses O_DIRECT (tmpfs on older kernels, some FUSE mounts) gets one warning and buffered
 * reads, so the same code runs everywhere; mt_io_uring_reader_is_direct() says which one ran.
 *
 * A reader is used by one thread at a time.
 */
#ifndef MT_IO_URING_READER_H
#define MT_IO_URING_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/base/status.h"

#define MT_IO_ALIGN 4096u /* O_DIRECT alignment of offsets, lengths and buffers */

/* Flags for mt_io_uring_reader_create. */
enum mt_io_reader_flag {
    MT_IO_READER_BUFFERED = 1u << 0, /* do not try O_DIRECT (page-cache reads) */
    /* Tests: act as if the filesystem refused O_DIRECT at open (EINVAL), to exercise the
     * fallback on kernels whose tmpfs accepts it. */
    MT_IO_READER_TEST_REFUSE_DIRECT = 1u << 1,
    /* Tests: O_DIRECT accepted at open, but every read issued with it fails with EINVAL (some
     * FUSE and network filesystems), to exercise the fallback with several reads in flight. */
    MT_IO_READER_TEST_REFUSE_DIRECT_READS = 1u << 2,
};

struct mt_io_uring_reader;

/* One finished read, as returned by mt_io_uring_reader_wait. */
struct mt_io_done {
    uint64_t tag; /* the caller's tag given at submit */
    size_t bytes; /* bytes read: the length asked for, or less only at end of file */
};

/*
 * Open path for reading with queue_depth reads in flight at most (1..4096).
 * Tries O_DIRECT unless MT_IO_READER_BUFFERED; if the filesystem refuses it, warns once and
 * reads buffered. MT_ERR_IO: cannot open, or io_uring setup failed (the message says why, with
 * a hint for RLIMIT_MEMLOCK); MT_ERR_INVAL: bad queue depth; MT_ERR_NOMEM.
 * The reader owns its fd and ring; release with mt_io_uring_reader_destroy.
 */
mt_status_t mt_io_uring_reader_create(const char *path, unsigned queue_depth, unsigned flags,
                                      struct mt_io_uring_reader **reader_out);

/* Close the file and the ring; in-flight reads are waited for first. NULL is a no-op. */
void mt_io_uring_reader_destroy(struct mt_io_uring_reader *r);

/*
 * Register n buffers (each MT_IO_ALIGN aligned) with the kernel, so reads into them skip the
 * per-read page pinning (io_uring_prep_read_fixed). Reads into any other memory still work.
 * Borrowed: the buffers must outlive the reader or the next register call. MT_ERR_IO when the
 * kernel refuses (typically RLIMIT_MEMLOCK; the caller may warn and go on unregistered).
 */
mt_status_t mt_io_uring_reader_register_buffers(struct mt_io_uring_reader *r, void *const *bufs,
                                                const size_t *lens, unsigned n);

/*
 * Queue a read of len bytes at file offset off into buf, tagged tag, and submit it.
 * off, len and buf must be MT_IO_ALIGN aligned (asserted: a violation aborts), len > 0.
 * MT_ERR_INVAL when queue_depth reads are already in flight (wait for one first);
 * MT_ERR_IO when the submission fails. buf is borrowed until the read completes.
 */
mt_status_t mt_io_uring_reader_submit(struct mt_io_uring_reader *r, void *buf, uint64_t off,
                                      size_t len, uint64_t tag);

/*
 * Wait for one submitted read to complete in full (short reads are resubmitted internally) and
 * describe it in *done_out. Completions come in any order. MT_ERR_IO when the read failed (the
 * message names the file, offset and OS reason; done_out->tag still says which read);
 * MT_ERR_INVAL when nothing is in flight.
 */
mt_status_t mt_io_uring_reader_wait(struct mt_io_uring_reader *r, struct mt_io_done *done_out);

/*
 * Read [off, off+len) synchronously (nothing else may be in flight). Same alignment rules as
 * submit. *bytes_out is len, or less at end of file.
 */
mt_status_t mt_io_uring_reader_read(struct mt_io_uring_reader *r, void *buf, uint64_t off,
                                    size_t len, size_t *bytes_out);

/*
 * Read any byte range [off, off+len): reads the MT_IO_ALIGN-aligned range around it into the
 * aligned buffer buf (cap bytes; needs mt_io_range_align's length) and sets *data_out to where
 * byte off landed inside buf. MT_ERR_INVAL if cap is too small, MT_ERR_IO on failure or when the
 * file ends before off+len.
 */
mt_status_t mt_io_uring_reader_read_range(struct mt_io_uring_reader *r, uint64_t off, size_t len,
                                          void *buf, size_t cap, const void **data_out);

/* Widen [off, off+len) to the aligned range [*aoff_out, *aoff_out + *alen_out). Cannot fail. */
void mt_io_range_align(uint64_t off, size_t len, uint64_t *aoff_out, size_t *alen_out);

/* True when reads bypass the page cache (O_DIRECT was accepted). */
bool mt_io_uring_reader_is_direct(const struct mt_io_uring_reader *r);

/* Size of the file in bytes (at open). */
uint64_t mt_io_uring_reader_file_size(const struct mt_io_uring_reader *r);

/* Reads in flight now. */
unsigned mt_io_uring_reader_in_flight(const struct mt_io_uring_reader *r);

#endif /* MT_IO_URING_READER_H */
