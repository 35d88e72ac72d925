/* SPDX-License-Identifier: MIT */
/*
 * out_file.h - output files that appear whole or not at all, and never over one of the inputs.
 *
 * The one idea: a file moetier writes (a plan, a hardware profile, a trace, a chart) is written to
 * a temporary file beside its destination (same directory, so same file system) and renamed over
 * the destination only once every byte is written and the file is closed. A full disk, a crash
 * or a failed write leaves the old file as it was, never a truncated one. An output that is
 * not a regular file (/dev/stdout, a FIFO, /dev/null) cannot be replaced by rename; it is written
 * in place. A symbolic link is followed, so the link stays and its target is replaced.
 *
 * Thread-safety: an mt_out_file belongs to one thread. mt_out_file_open reads the umask (to give
 * the new file the mode fopen would), which briefly changes it: do not open output files from two
 * threads at once.
 */
#ifndef MT_OUT_FILE_H
#define MT_OUT_FILE_H

#include "runtime/base/status.h"

#include <stdbool.h>
#include <stdio.h>

/* One output being written. Embedded; open -> write to f -> commit, or abort. */
struct mt_out_file {
    FILE *f;            /* write here; NULL once committed or aborted */
    char *path;         /* owned: the destination, as given */
    char *target;       /* owned: where the rename goes (the link's target for a symlink) */
    char *tmp;          /* owned: the temporary file, NULL when writing in place */
    const char *what;   /* borrowed: the kind of file, for messages ("plan") */
};

/*
 * Start writing `what` (a plan, a chart ...) to path. MT_ERR_IO "cannot create <what> '<path>'"
 * with the OS reason (a missing or read-only directory), MT_ERR_NOMEM. On error o is zeroed and
 * needs no abort.
 */
mt_status_t mt_out_file_open(const char *path, const char *what, struct mt_out_file *o);

/*
 * Finish: flush, check every earlier write, close, and rename over the destination. On any
 * failure the temporary file is removed, the destination is left as it was, and MT_ERR_IO
 * "cannot write <what> '<path>'" names the reason. Either way o is finished.
 */
mt_status_t mt_out_file_commit(struct mt_out_file *o);

/* Give up: close and remove the temporary file; the destination is untouched. No-op when done. */
void mt_out_file_abort(struct mt_out_file *o);

/*
 * Whether path a names the same file as path b: when both exist, the same device and inode (so
 * links and different spellings count); otherwise the same last component in the same directory
 * (so two outputs not yet written compare too). False when either is NULL.
 */
bool mt_path_is_same_file(const char *a, const char *b);

#endif /* MT_OUT_FILE_H */
