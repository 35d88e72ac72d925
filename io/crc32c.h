/* SPDX-License-Identifier: MIT */
/*
 * crc32c.h - CRC32C (Castagnoli), the checksum of each extent of an expert store.
 *
 * The one idea: CRC32C because x86 computes it in hardware (SSE4.2 crc32 instruction, ~8 bytes
 * per cycle per core), so checking every expert read at NVMe speed costs little CPU; a table
 * (slice-by-8) does it where that instruction is absent. Both give the same values
 * (crc32c("123456789") == 0xe3069283).
 */
#ifndef MT_IO_CRC32C_H
#define MT_IO_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue crc over n bytes of p; start with crc 0. Thread-safe. */
uint32_t mt_crc32c(uint32_t crc, const void *p, size_t n);

#endif /* MT_IO_CRC32C_H */
