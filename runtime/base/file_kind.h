/* SPDX-License-Identifier: MIT */
/*
 * file_kind.h - what a file that is not a regular one is, in words, for messages such as
 * "store 'x' is a FIFO (named pipe), not a regular file".
 */
#ifndef MT_FILE_KIND_H
#define MT_FILE_KIND_H

#include <sys/stat.h>

/* How a file that is not a regular one is described in "... is <kind>, not a regular file".
 * Inline, in a header of its own: io/ uses it without jansson. */
static inline const char *
mt_file_kind_str(mode_t mode)
{
    return S_ISDIR(mode)                    ? "a directory"
           : S_ISFIFO(mode)                 ? "a FIFO (named pipe)"
           : S_ISSOCK(mode)                 ? "a socket"
           : S_ISCHR(mode) || S_ISBLK(mode) ? "a device"
                                            : "not a plain file";
}

#endif /* MT_FILE_KIND_H */
