/* SPDX-License-Identifier: MIT */
/*
 * amx_config.h - the one AMX tile configuration every AMX loop here uses (cpu/experts_amx.c,
 * cpu/flops.c): palette 1, all 8 tiles 16 rows x 64 bytes (16 x 16 fp32 C, 16 x 32 bf16 A and B).
 * Only for code compiled for amx-tile, on a thread that may use AMX (cpu/isa.c asks the kernel).
 */
#ifndef MT_CPU_AMX_CONFIG_H
#define MT_CPU_AMX_CONFIG_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* The 64-byte operand of LDTILECFG. */
struct mt_amx_tilecfg {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

/* Load the configuration: 8 tiles of 16 rows x 64 bytes; the caller ends with _tile_release(). */
__attribute__((target("amx-tile"))) static inline void
mt_amx_load_tiles_16x64(void)
{
    struct mt_amx_tilecfg cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.palette_id = 1;
    for (int i = 0; i < 8; i++) {
        cfg.colsb[i] = 64;
        cfg.rows[i] = 16;
    }
    _tile_loadconfig(&cfg);
}

#endif /* MT_CPU_AMX_CONFIG_H */
