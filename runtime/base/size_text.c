/* SPDX-License-Identifier: MIT */
/*
 * size_text.c - a byte count in words for messages (see size_text.h).
 */
#include <config.h>

#include "runtime/base/size_text.h"

#include <stdio.h>

struct mt_size_text
mt_size_text(uint64_t bytes)
{
    struct mt_size_text r;

    if (bytes >= (1ull << 30)) {
        snprintf(r.s, sizeof(r.s), "%.2f GiB", (double)bytes / 1073741824.0);
    } else if (bytes >= (1ull << 20)) {
        snprintf(r.s, sizeof(r.s), "%.1f MiB", (double)bytes / 1048576.0);
    } else {
        snprintf(r.s, sizeof(r.s), "%.1f KiB", (double)bytes / 1024.0);
    }
    return r;
}
