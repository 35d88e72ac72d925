/* SPDX-License-Identifier: MIT */
/*
 * mem_available.h - how much host memory this machine can give without swapping: MemAvailable of
 * /proc/meminfo (the kernel's estimate, page cache that can be dropped included), the number the
 * planner's default --cpu-mem, the expert cache's check and the disk benchmark's buffers use.
 */
#ifndef MT_MEM_AVAILABLE_H
#define MT_MEM_AVAILABLE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* MemAvailable in bytes; 0 when /proc/meminfo cannot be read or lacks it (callers then skip their
 * check). MT_MEM_AVAILABLE=bytes stands in for it (tests of what a machine with little free
 * memory is told). */
uint64_t mt_mem_available(void);

#ifdef __cplusplus
}
#endif

#endif /* MT_MEM_AVAILABLE_H */
