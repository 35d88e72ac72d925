/* SPDX-License-Identifier: MIT */
/*
 * expert_source.h - routed experts read from NVMe into pinned DRAM slots, by (layer, expert).
 *
 * The one idea: an expert is six byte ranges (gate, up, down weights and their FP8 scales) in one
 * or more files, either in the checkpoint's safetensors shards as downloaded (no second copy) or
 * in one extent of an expert store (io/store.h). The source reads the 4 KiB-aligned ranges around
 * them with O_DIRECT into a slot of one mmap'd staging region, in chunks, many in flight, from a
 * few I/O threads (one io_uring each, registered files and buffers), and hands out pointers INTO
 * the slot: the kernels use the weights in place, with no copy on the host. The slots are also
 * the DRAM expert cache: a byte budget, eviction by decayed activation frequency
 * (io/cache_policy.h), pinning of what the plan keeps resident, prefetch with a wait per expert.
 *
 * This module knows nothing of models: the caller (runtime/engine/provider_stream.c) describes
 * each expert as plain extents. Reading errors name the layer, the expert, the file and the OS
 * reason, and a failed read is never handed on as data. A read that fails (an OS error, a file
 * that ends inside the expert, a CRC or second-read mismatch under verify) is read again, up to
 * MT_IO_READ_RETRIES times, each retry logged as a warning: a transient fault (a flaky cable, a
 * page the drive remapped) costs a read, a lasting one fails the acquire with the last message.
 * An io_uring that fails to report completions (a broken ring, not a failed read) ends all
 * reading: every later acquire fails at once with that reason.
 *
 * Fault injection for tests: MT_IO_FAULT="L:E" makes every read of layer L expert E fail with
 * EIO, and "L:E:N" only its first N reads; "L:*" and "L:*:N" pick the first expert of layer L
 * that is read (read at create; the message says it was injected).
 *
 * Thread-safety: every function may be called from any thread at once, except create/destroy.
 */
#ifndef MT_IO_EXPERT_SOURCE_H
#define MT_IO_EXPERT_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/io_queue.h"
#include "runtime/base/status.h"

/* The six parts of a routed expert, in this order everywhere (extents, views, store index). */
enum mt_io_part {
    MT_IO_PART_GATE = 0,
    MT_IO_PART_GATE_SCALE = 1,
    MT_IO_PART_UP = 2,
    MT_IO_PART_UP_SCALE = 3,
    MT_IO_PART_DOWN = 4,
    MT_IO_PART_DOWN_SCALE = 5,
    MT_IO_N_PARTS = 6,
};

#define MT_IO_READ_RETRIES 2 /* a failed expert read is tried this many more times */
/* files of a checkpoint or a store: V3.2 has 163 shards, a BF16 copy that save_pretrained
 * writes in 5 GB shards ~270 */
#define MT_IO_MAX_FILES 1024

/* A byte range of a file; len 0 means absent (BF16 checkpoints have no scales). */
struct mt_io_extent {
    int file;     /* index into the paths given at create */
    uint64_t off; /* absolute byte offset, any alignment */
    uint64_t len;
};

/* Where one expert's parts lie. A layer without routed experts has every len 0. */
struct mt_io_expert_desc {
    struct mt_io_extent part[MT_IO_N_PARTS];
};

/* An expert in its slot: valid from acquire until the matching release. */
struct mt_io_expert_view {
    const void *part[MT_IO_N_PARTS]; /* NULL for an absent part */
    uint64_t len[MT_IO_N_PARTS];
};

struct mt_io_source_options {
    unsigned io_threads;     /* I/O threads, one ring each (0: 2) */
    unsigned queue_depth;    /* reads in flight per thread (0: 16) */
    size_t chunk_bytes;      /* largest single read, a 4 KiB multiple (0: 1 MiB) */
    uint64_t cache_bytes;    /* DRAM slot budget; at least one slot (0: 4 slots) */
    unsigned max_slots;      /* the experts that will ever be read: no more slots (0: all) */
    enum mt_io_queue_mode mode; /* best mode to try (0: uring+fixed); $MT_IO_MODE overrides */
    bool verify; /* checkpoint: read twice, compare (a store's CRC32C is always checked) */
    bool buffered;           /* no O_DIRECT (page-cache reads) */
};

struct mt_io_source_stats {
    uint64_t hits;             /* acquires that found the expert ready */
    uint64_t late_hits;        /* acquires that found it still loading (a prefetch in flight) */
    uint64_t misses;           /* acquires that had to start the read (or a failed one again) */
    uint64_t prefetches;       /* reads started by prefetch */
    uint64_t prefetch_dropped; /* prefetch hints dropped: every slot in use */
    uint64_t evictions;
    uint64_t experts_read;
    uint64_t bytes_read;       /* bytes that came from the files (aligned ranges) */
    uint64_t read_errors;      /* expert reads that failed (each retry counts) */
    uint64_t verify_failures;  /* CRC or second-read mismatches (each retry counts) */
    uint64_t retries;          /* failed reads started again (at most MT_IO_READ_RETRIES each) */
    double stall_s;            /* time acquire and wait spent waiting for reads */
    double io_busy_s;          /* wall time with at least one expert being read */
    double gbps;               /* bytes_read / io_busy_s, 1e9 bytes per second */
    uint64_t budget_bytes;     /* the cache budget asked for */
    uint64_t slot_bytes;       /* bytes of one slot */
    unsigned n_slots;
    uint64_t peak_used_bytes;  /* most bytes of slots holding or loading an expert at once */
    unsigned pinned;           /* experts pinned now */
    enum mt_io_queue_mode mode;
    int n_files;
    uint64_t file_bytes[MT_IO_MAX_FILES];       /* bytes read from each file */
    unsigned file_peak_in_flight[MT_IO_MAX_FILES]; /* most reads in flight at once per file */
};

struct mt_io_source;

/*
 * A source over a checkpoint's files paths[0..n_files) with descs[layer * n_experts + expert]
 * (copied). Opens every file (O_DIRECT unless opt->buffered; a filesystem that refuses it earns
 * one warning and buffered reads), maps the staging region (the budget rounded down to whole
 * slots, at least one) and starts the I/O threads. MT_ERR_IO (open, mmap: the message says
 * which file), MT_ERR_INVAL (descs out of range, budget below one slot), MT_ERR_NOMEM.
 */
mt_status_t mt_io_source_create(const char *const *paths, int n_files, int n_layers,
                                int n_experts, const struct mt_io_expert_desc *descs,
                                const struct mt_io_source_options *opt,
                                struct mt_io_source **src_out);

/*
 * A source over an expert store (io/store.h) made by `moetier pack` for the model whose hash is
 * model_hash: every file's header, index and size are checked first (MT_ERR_FORMAT naming the
 * file and the reason: another model, truncated, interrupted pack, files missing or mixed).
 * Every extent's CRC32C is checked on every read.
 */
mt_status_t mt_io_source_create_store(const char *const *paths, int n_files, uint64_t model_hash,
                                      const struct mt_io_source_options *opt,
                                      struct mt_io_source **src_out);

/* Stop the threads (waiting for reads in flight), unmap, close. No expert may be held. NULL ok. */
void mt_io_source_destroy(struct mt_io_source *src);

/*
 * Start reading experts[0..n) of layer into free or evictable slots (a hint: an expert already
 * cached or loading is skipped; when no slot can be given up the hint is dropped and counted).
 */
void mt_io_source_prefetch(struct mt_io_source *src, int layer, const int *experts, int n);

/*
 * Wait until (layer, expert) is in a slot, reading it first when it is not, and fill *view_out.
 * The slot is held (never evicted) until mt_io_source_release. Blocks while every slot is held
 * by others. Counts one activation for the eviction policy. A failed read is retried (see
 * above); then MT_ERR_IO (read failed: layer, expert, file, offset, strerror), MT_ERR_FORMAT
 * (CRC or second-read mismatch under verify), MT_ERR_INVAL (no such expert). On error nothing
 * is held, and the next acquire of that expert reads it afresh.
 */
mt_status_t mt_io_source_acquire(struct mt_io_source *src, int layer, int expert,
                                 struct mt_io_expert_view *view_out);

/* Give back a slot taken by acquire. */
void mt_io_source_release(struct mt_io_source *src, int layer, int expert);

/*
 * Wait for (layer, expert) to be loaded (starting the read when it is neither cached nor
 * loading), without holding it: the wait of a prefetch. Same errors as acquire.
 */
mt_status_t mt_io_source_wait(struct mt_io_source *src, int layer, int expert);

/*
 * Pin (layer, expert): read it now and never evict it (the plan's resident set), or unpin it.
 * MT_ERR_NOMEM when pinning would leave fewer than two slots for streaming; read errors as
 * acquire.
 */
mt_status_t mt_io_source_pin(struct mt_io_source *src, int layer, int expert, bool pin);

/* Counters so far. */
void mt_io_source_stats(struct mt_io_source *src, struct mt_io_source_stats *out);
void mt_io_source_stats_reset(struct mt_io_source *src);

/*
 * The staging region (all slots), for cudaHostRegister by the engine through kernels/ (io/ does
 * not depend on kernels/). Valid until destroy.
 */
void mt_io_source_staging(const struct mt_io_source *src, void **base_out, size_t *bytes_out);

/* Bytes of one slot: the largest expert, its aligned ranges laid end to end. */
uint64_t mt_io_source_slot_bytes(const struct mt_io_source *src);

/* Layers and experts per layer the source addresses. */
int mt_io_source_layers(const struct mt_io_source *src);
int mt_io_source_experts(const struct mt_io_source *src);
/* Bytes of part `part` of (layer, expert) as the source reads it: 0 for an absent part, an
 * absent expert or indices out of range (what a caller checks a store against its model with). */
uint64_t mt_io_source_part_len(const struct mt_io_source *src, int layer, int expert, int part);

#endif /* MT_IO_EXPERT_SOURCE_H */
