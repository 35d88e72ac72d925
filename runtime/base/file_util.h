/* SPDX-License-Identifier: MIT */
/*
 * file_util.h - reading a whole file, and loading and saving JSON files, with one set of messages.
 *
 * The text files moetier reads and writes (config.json, tokenizer.json, the safetensors index,
 * plans, traces, hardware profiles) are small enough to handle whole. The one idea: every input
 * file is opened by mt_file_open_input(), which cannot block on a FIFO and accepts only regular
 * files, and read under a size cap chosen per kind of file. These helpers do the
 * open / read / parse / write steps for every module, so each failure is detected in one place
 * and names the file the same way: `what` is the kind of file as a user would say it ("plan",
 * "hardware profile"), and a message reads "cannot open plan '/tmp/p.json': No such file or
 * directory". Each function calls mt_fail() itself; callers just propagate the status.
 *
 * Thread-safety: none of these keep state; they are safe from any thread.
 */
#ifndef MT_FILE_UTIL_H
#define MT_FILE_UTIL_H

#include "runtime/base/status.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Size caps, one per kind of file moetier reads: each is far above what a real file of that kind
 * holds, so only a wrong path (a checkpoint shard, /dev/zero, a log) trips it, and it trips before
 * any memory is spent. Documented in README.md ("Limits").
 */
#define MT_FILE_MAX_CONFIG ((size_t)1 << 20)            /* config.json: V3.2's is 1.7 KiB */
#define MT_FILE_MAX_TOKENIZER ((size_t)64 << 20)        /* tokenizer.json: V3.2's is 7.5 MiB */
#define MT_FILE_MAX_TOKENIZER_CONFIG ((size_t)16 << 20) /* tokenizer_config.json */
#define MT_FILE_MAX_INDEX ((size_t)64 << 20)            /* model.safetensors.index.json */
#define MT_FILE_MAX_PROFILE ((size_t)16 << 20)          /* hardware profile (bench --json) */
#define MT_FILE_MAX_MOETIER ((size_t)256 << 20)         /* plans and traces moetier wrote */
#define MT_FILE_MAX_DEFAULT ((size_t)256 << 20)         /* any other text file (max_bytes 0) */

/*
 * Open path for reading without ever blocking: O_RDONLY | O_NONBLOCK | O_CLOEXEC (so a FIFO under
 * the name cannot hang the open), then fstat, which must show a regular file, then O_NONBLOCK is
 * cleared again. Every file moetier reads goes through here (stdin is only read where a command
 * documents it). *size_out is the file's size at the fstat.
 * Returns MT_OK with *fd_out owned by the caller (close() it); MT_ERR_IO "cannot open <what>
 * '<path>'", or "<what> '<path>' is a FIFO (named pipe), not a regular file" (a directory, socket
 * or device likewise), with a hint. The outputs are set only on success.
 */
mt_status_t mt_file_open_input(const char *path, const char *what, int *fd_out,
                               uint64_t *size_out);

/*
 * Read all of path into a new NUL-terminated buffer (the NUL is not counted in *len_out), so the
 * text can go to a parser that wants a C string. path must be a regular file (mt_file_open_input).
 * max_bytes: refuse a larger file, checked before anything is allocated (a mistaken path to a
 * checkpoint must not fill memory); one of the MT_FILE_MAX_* caps, 0 meaning MT_FILE_MAX_DEFAULT.
 * Returns MT_OK with *data_out owned by the caller (free()); the errors of mt_file_open_input,
 * MT_ERR_IO "cannot read ...", MT_ERR_FORMAT when it is larger than max_bytes, MT_ERR_NOMEM.
 * The outputs are set only on success.
 */
mt_status_t mt_file_read_all(const char *path, const char *what, size_t max_bytes, char **data_out,
                             size_t *len_out);

/*
 * The one JSON loader for files: mt_file_read_all(path, what, max_bytes), then jansson with
 * JSON_REJECT_DUPLICATES (a key given twice is an error, never "the last one wins").
 * Returns MT_OK with a new reference in *root_out (json_decref() it); the errors of
 * mt_file_read_all, or MT_ERR_FORMAT "<what> '<path>' is not valid JSON: <reason> (line L,
 * column C)".
 */
mt_status_t mt_json_load_file(const char *path, const char *what, size_t max_bytes,
                              json_t **root_out);

/*
 * The same for JSON text already in memory (what names its origin in messages, e.g. "config
 * '/m/config.json'"): the parsers that the fuzz targets drive call this, so files and fuzz inputs
 * pass one gate. Returns MT_OK with a new reference; MT_ERR_FORMAT "<what> is not valid JSON: ...".
 */
mt_status_t mt_json_parse(const char *text, size_t len, const char *what, json_t **root_out);

/*
 * Load a file that moetier wrote itself (at most MT_FILE_MAX_MOETIER bytes, duplicate keys
 * refused): a JSON object tagged "format": format (e.g. "moetier-plan") and "version": version.
 * Returns MT_OK with a new reference in *root_out; the
 * errors of mt_json_load_file, or MT_ERR_FORMAT when the tag is absent or another ("'<path>' is
 * not a moetier <what> ...") or the version is missing, not an integer or another ("<what>
 * '<path>' has version 2, this moetier reads version 1"). An integral real (1.0) is an integer,
 * as everywhere moetier reads one (mt_json_is_int).
 */
mt_status_t mt_json_load_versioned(const char *path, const char *what, const char *format,
                                   int version, json_t **root_out);

/*
 * Write root to path (created or truncated) with jansson's encoding flags (JSON_INDENT(2),
 * JSON_COMPACT, ...), followed by a newline. root stays the caller's. Returns MT_OK; MT_ERR_IO
 * "cannot create <what> '<path>'" or "cannot write <what> '<path>'" (a full disk shows at the
 * close, which is checked too).
 */
mt_status_t mt_json_save_file(const json_t *root, const char *path, const char *what, size_t flags);

#endif /* MT_FILE_UTIL_H */
