/* SPDX-License-Identifier: MIT */
/* mem_available.c - MemAvailable of /proc/meminfo. */
#include <config.h>

#include "runtime/base/mem_available.h"

#include <stdio.h>
#include <stdlib.h>

uint64_t
mt_mem_available(void)
{
    char line[256];
    unsigned long long kib = 0;
    const char *fake = getenv("MT_MEM_AVAILABLE");
    FILE *f;

    if (fake != NULL && *fake != '\0') {
        return strtoull(fake, NULL, 10);
    }
    f = fopen("/proc/meminfo", "re");
    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
            break;
        }
    }
    fclose(f);
    return (uint64_t)kib * 1024;
}
