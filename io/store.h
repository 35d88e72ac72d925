/* SPDX-License-Identifier: MIT */
/*
 * store.h - the expert store written by `moetier pack`: each routed expert in one extent.
 *
 * The one idea: one expert, one read. An extent holds gate, gate scale, up, up scale, down, down
 * scale, each part starting on a 4 KiB boundary, the extent itself 4 KiB aligned, so one O_DIRECT
 * read (in chunks) fetches the whole expert. Experts are striped over the files given (expert k of
 * the layer-major order goes to file k mod n_files), one file per drive, so n drives read at once.
 *
 * Every file of a store is laid out as
 *   [0, 4096)            header (little-endian, struct mt_io_store_header)
 *   [4096, data_off)     index: one struct mt_io_store_entry per (layer, expert), the same in
 *                        every file, padded to 4 KiB
 *   [data_off, end)      the extents of the experts striped to this file
 * The header carries magic "MTSTORE1", the version, a hash of the model (the caller's:
 * mt_stream_model_hash covers config.json, the tensor table and the first 4 KiB of 256 experts'
 * gate weights), a random id shared by the files of one pack, this file's index and size, and
 * CRC32Cs of itself and of the index; each entry carries the CRC32C of its extent.
 *
 * A pack is written to "<file>.partial" names and renamed only after every byte, the index and the
 * header are on disk (fsync), and the header is written last: a crash or ENOSPC mid-pack leaves no
 * file under the final names and no .partial that opens as a store. Space is reserved up front
 * (posix_fallocate), so a full disk fails at the start, not after an hour.
 */
#ifndef MT_IO_STORE_H
#define MT_IO_STORE_H

#include <stdint.h>

#include "io/expert_source.h"
#include "runtime/base/status.h"

#define MT_IO_STORE_MAGIC "MTSTORE1"
#define MT_IO_STORE_VERSION 1u

struct mt_io_store_header {
    char magic[8];           /* MT_IO_STORE_MAGIC */
    uint32_t version;        /* MT_IO_STORE_VERSION */
    uint32_t header_bytes;   /* 4096 */
    uint64_t model_hash;     /* the caller's hash of the model (see above) */
    uint64_t store_id;       /* random, the same in every file of one pack */
    uint32_t file_index;     /* this file's position in the store */
    uint32_t n_files;
    uint32_t n_layers;
    uint32_t n_experts;      /* per layer */
    uint64_t index_off;      /* 4096 */
    uint64_t index_bytes;    /* n_layers * n_experts * sizeof(struct mt_io_store_entry) */
    uint64_t data_off;       /* first extent, 4 KiB aligned */
    uint64_t file_bytes;     /* exact size of this file */
    uint32_t index_crc;      /* CRC32C of the index bytes */
    uint32_t header_crc;     /* CRC32C of this struct up to this field */
};

struct mt_io_store_entry {
    uint32_t file;                      /* file holding the extent */
    uint32_t crc;                       /* CRC32C of the whole extent (padding included) */
    uint64_t off;                       /* extent offset in its file, 4 KiB aligned */
    uint64_t len;                       /* extent length, 4 KiB multiple; 0: no expert here */
    uint64_t part_off[MT_IO_N_PARTS];   /* part offsets inside the extent, 4 KiB aligned */
    uint64_t part_len[MT_IO_N_PARTS];   /* part lengths in bytes; 0: absent */
};

/* ---- reading -------------------------------------------------------------------------------- */

struct mt_io_store;

/*
 * Open and check a store: every file's header (magic, version, CRC), model_hash, the file count
 * and order, that all files come from one pack, each file's exact size, and the index CRC.
 * MT_ERR_IO (cannot open or read, naming the file), MT_ERR_FORMAT (one message per reason, with a
 * hint: "repack with moetier pack"), MT_ERR_NOMEM.
 */
mt_status_t mt_io_store_open(const char *const *paths, int n_files, uint64_t model_hash,
                             struct mt_io_store **store_out);
void mt_io_store_close(struct mt_io_store *s);

int mt_io_store_layers(const struct mt_io_store *s);
int mt_io_store_experts(const struct mt_io_store *s);
/* The index entry of (layer, expert); valid until close. */
const struct mt_io_store_entry *mt_io_store_entry(const struct mt_io_store *s, int layer,
                                                  int expert);

/* ---- writing -------------------------------------------------------------------------------- */

struct mt_io_store_writer;

/*
 * Lay out a store for n_layers x n_experts experts whose part lengths are
 * part_len[(layer * n_experts + expert) * MT_IO_N_PARTS + part] (an expert with all 0 is absent),
 * create "<path>.partial" for each of paths[0..n_files) and reserve their space. Each path must
 * be absent or a regular file, which finish replaces; a symbolic link to a regular file is
 * followed (the link stays, the file it names is replaced). "<path>.partial" is created anew: a
 * regular file there (a killed pack's) is unlinked first, anything else (a symbolic link) is
 * refused. MT_ERR_INVAL for an empty name, a directory, device, FIFO or socket, or a link to one
 * or to nothing (checked before anything is created), or such a .partial; MT_ERR_IO (create,
 * ENOSPC: the message says how much room is needed where), MT_ERR_NOMEM.
 */
mt_status_t mt_io_store_writer_create(const char *const *paths, int n_files, uint64_t model_hash,
                                      int n_layers, int n_experts, const uint64_t *part_len,
                                      struct mt_io_store_writer **w_out);

/*
 * Write (layer, expert): parts[p] holds part_len bytes (NULL where absent). Composes the extent,
 * computes its CRC32C and writes it. Any order; call once per present expert. Not thread-safe.
 */
mt_status_t mt_io_store_writer_put(struct mt_io_store_writer *w, int layer, int expert,
                                   const void *const *parts);

/* Bytes the store's files will hold in all (for progress). */
uint64_t mt_io_store_writer_total_bytes(const struct mt_io_store_writer *w);

/*
 * Check that every expert was put, write the index and then the headers, fsync, rename every
 * .partial to its final name, fsync the directories. Frees w in all cases; on failure the partial
 * files are removed. The renames are one per file: one that fails after others succeeded leaves
 * files of two packs (the message names those replaced), a store that does not open.
 */
mt_status_t mt_io_store_writer_finish(struct mt_io_store_writer *w);

/* Abandon a pack: close and remove the .partial files. NULL is a no-op. */
void mt_io_store_writer_destroy(struct mt_io_store_writer *w);

#endif /* MT_IO_STORE_H */
