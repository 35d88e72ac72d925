/* SPDX-License-Identifier: MIT */
/*
 * file_util.h - reading a whole file, and loading and saving JSON files, with one set of messages.
 *
 * The text files moetier reads and writes (config.json, tokenizer.json, the safetensors index,
 * plans, traces, hardware profiles) are small enough to handle whole. These helpers do the
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

/*
 * Read all of path into a new NUL-terminated buffer (the NUL is not counted in *len_out), so the
 * text can go to a parser that wants a C string. Works on regular files and on pipes.
 * max_bytes: refuse a larger file (a mistaken path to a checkpoint must not fill memory); 0 means
 * no limit.
 * Returns MT_OK with *data_out owned by the caller (free()); MT_ERR_IO when path cannot be opened
 * or read ("cannot open <what> '<path>'", "cannot read ..."), MT_ERR_FORMAT when it is larger than
 * max_bytes, MT_ERR_NOMEM. The outputs are set only on success.
 */
mt_status_t mt_file_read_all(const char *path, const char *what, size_t max_bytes, char **data_out,
                             size_t *len_out);

/*
 * Read path and parse it as JSON with jansson's decoding flags (0, JSON_REJECT_DUPLICATES, ...).
 * Returns MT_OK with a new reference in *root_out (json_decref() it); the errors of
 * mt_file_read_all, or MT_ERR_FORMAT "<what> '<path>' is not valid JSON: <reason> (line L,
 * column C)".
 */
mt_status_t mt_json_load_file(const char *path, const char *what, size_t flags, json_t **root_out);

/*
 * Load a file that moetier wrote itself: a JSON object tagged "format": format (e.g.
 * "moetier-plan") and "version": version. Returns MT_OK with a new reference in *root_out; the
 * errors of mt_json_load_file, or MT_ERR_FORMAT when the tag is absent or another ("'<path>' is
 * not a moetier <what> ...") or the version is missing, not an integer or another ("<what>
 * '<path>' has version 2, this moetier reads version 1").
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
