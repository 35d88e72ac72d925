/* SPDX-License-Identifier: MIT */
/*
 * safetensors.h - reading (and writing) HF safetensors checkpoints, one file or many shards.
 *
 * A safetensors file is: 8 bytes little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F8_E4M3", "shape": [r, c], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {...}}, then the data; offsets are relative to the end of the header. A sharded
 * checkpoint has model.safetensors.index.json with {"weight_map": {name: "shard file"}}.
 *
 * The one idea: nothing in a file is trusted. Every offset, size, dtype and shape is checked
 * against the file size and against each other (no overlaps, nothing past the end, size ==
 * product(shape) * dtype size) before any tensor is read. Tensors are read by name with pread
 * into caller memory; whole files are never mapped, because the real checkpoint is 690 GB.
 */
#ifndef MT_SAFETENSORS_H
#define MT_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/base/dtype.h"
#include "runtime/base/status.h"

#define MT_ST_MAX_DIMS 8


/* A shape for messages: "[4, 8]", "[]" for a 0-d tensor, cut to fit size bytes. Returns buf. */
const char *mt_st_shape_str(const int64_t *shape, int ndim, char *buf, size_t size);

/* One tensor as described by a header. All fields validated. */
struct mt_st_tensor {
    char *name;                       /* owned by the file/set */
    enum mt_dtype dtype;
    int ndim;
    int64_t shape[MT_ST_MAX_DIMS];
    uint64_t nelem;
    uint64_t offset;                  /* absolute byte offset in its file */
    uint64_t nbytes;
    int file;                         /* index of its shard in the set */
};

/* A checkpoint: one or more safetensors files (opaque). */
struct mt_st_set;

/*
 * Open a checkpoint directory: model.safetensors.index.json if present (every shard it names must
 * exist and hold exactly the tensors the index maps to it), else every *.safetensors file in the
 * directory (names must be unique across files). Headers of all shards are parsed and validated.
 * A path to a regular file is opened as by mt_st_set_open_file. One fd per shard stays open.
 * Returns MT_ERR_IO (missing/unreadable), MT_ERR_FORMAT (malformed), MT_ERR_NOMEM.
 */
mt_status_t mt_st_set_open(const char *dir, struct mt_st_set **set_out);

/* Open a single .safetensors file as a set of one. */
mt_status_t mt_st_set_open_file(const char *path, struct mt_st_set **set_out);

/* Close all files and free everything. NULL is a no-op. */
void mt_st_set_destroy(struct mt_st_set *set);

/* Number of tensors, and tensor i (0 <= i < count), in a stable order (sorted by name). */
size_t mt_st_set_count(const struct mt_st_set *set);
const struct mt_st_tensor *mt_st_set_tensor(const struct mt_st_set *set, size_t i);

/* Look a tensor up by name (binary search); NULL when absent. */
const struct mt_st_tensor *mt_st_set_find(const struct mt_st_set *set, const char *name);

/* Number of files in the set (a file may hold no tensor). */
int mt_st_set_file_count(const struct mt_st_set *set);

/* Path of shard i, for messages. */
const char *mt_st_set_file_path(const struct mt_st_set *set, int file);

/*
 * Read a tensor's raw bytes (little-endian, as stored) into dst, which holds dst_size >= t->nbytes
 * bytes. Thread-safe (pread). MT_ERR_IO on a short or failed read, naming tensor and file.
 */
mt_status_t mt_st_set_read(const struct mt_st_set *set, const struct mt_st_tensor *t, void *dst,
                           size_t dst_size);

/*
 * mt_st_set_read for a tensor read a second time (to check its values): the same bytes, but the
 * progress hook below does not count them, since they are not more of the model loaded.
 */
mt_status_t mt_st_set_reread(const struct mt_st_set *set, const struct mt_st_tensor *t, void *dst,
                             size_t dst_size);

/*
 * A read-progress hook: fn(ctx, nbytes) after every successful mt_st_set_read of a tensor of
 * nbytes bytes, so a tool can draw a progress bar while an engine loads its weights without the
 * engine knowing (every engine reads tensors through mt_st_set_read). The hook may run on several
 * threads at once (reads are thread-safe), so fn must be too, and cheap: it runs inside the read.
 * Reads that do not go through the set (the streamed experts of io/) are not counted. NULL fn
 * removes the hook. Set it before reads start and remove it after they end: the pointer itself is
 * not synchronized.
 */
typedef void (*mt_st_progress_fn)(void *ctx, uint64_t nbytes);
void mt_st_set_set_progress(struct mt_st_set *set, mt_st_progress_fn fn, void *ctx);

/*
 * Parse and validate one header (the JSON text, len bytes, not NUL-terminated) for a file whose
 * data section has data_size bytes and starts at data_start. `what` names the file in messages.
 * Appends the tensors to *tensors and *n (realloc'd; caller frees names and array with
 * mt_st_tensors_destroy). Exposed for the fuzz target and tests.
 */
mt_status_t mt_st_header_parse(const char *json, size_t len, uint64_t data_start,
                               uint64_t data_size, const char *what, int file,
                               struct mt_st_tensor **tensors, size_t *n);
void mt_st_tensors_destroy(struct mt_st_tensor *tensors, size_t n);

/*
 * Parse a whole safetensors file image held in memory (len bytes: the 8-byte length, the header,
 * the data), with the same checks as a file on disk: the length must fit in len and be <= 100 MB,
 * then mt_st_header_parse with the data section that follows. Offsets in the tensors are relative
 * to buf; file is 0. Appends to *tensors and *n like mt_st_header_parse. Used by the fuzz target.
 */
mt_status_t mt_st_image_parse(const void *buf, size_t len, const char *what,
                              struct mt_st_tensor **tensors, size_t *n);

/* ---- writing --------------------------------------------------------------------------------- */

/*
 * A streaming writer: declare every tensor (name, dtype, shape) first, then write their bytes in
 * declaration order, in as many pieces as wanted. The header is written when the first data byte
 * arrives, so memory stays bounded whatever the file size. Offsets are laid out in declaration
 * order with no padding; the header is padded with spaces to a multiple of 8 bytes, as HF does.
 * The file is built as "<path>.partial" and renamed to path by mt_st_writer_finish, so a failed
 * or abandoned writer never leaves a file under the final name. Errors name the file: MT_ERR_IO
 * (create, write, ENOSPC), MT_ERR_INVAL (misuse: duplicate name, bytes beyond or short of the
 * declared total), MT_ERR_NOMEM. After a failed write every later call returns that status.
 */
struct mt_st_writer;

mt_status_t mt_st_writer_create(const char *path, struct mt_st_writer **w_out);
/* Declare a tensor. Must come before any mt_st_writer_write. */
mt_status_t mt_st_writer_add(struct mt_st_writer *w, const char *name, enum mt_dtype dt, int ndim,
                             const int64_t *shape);
/* Add a "__metadata__" string entry (e.g. "format": "pt"). */
mt_status_t mt_st_writer_meta(struct mt_st_writer *w, const char *key, const char *value);
/* Append n bytes of tensor data (continuing the current tensor, then the next). */
mt_status_t mt_st_writer_write(struct mt_st_writer *w, const void *data, size_t n);
/* Check that every declared byte was written, flush and close. Frees w in all cases. */
mt_status_t mt_st_writer_finish(struct mt_st_writer *w);
/* Abandon: close and unlink the partial file. NULL is a no-op. */
void mt_st_writer_destroy(struct mt_st_writer *w);

#endif /* MT_SAFETENSORS_H */
