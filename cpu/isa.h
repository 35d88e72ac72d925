/* SPDX-License-Identifier: MIT */
/*
 * isa.h - which instruction sets this process may use, and which kernel family runs.
 *
 * The one idea: a unit counts only when the CPU has it AND the OS saves its registers (XCR0),
 * and, for AMX, when the kernel has granted this process the tile state (arch_prctl). The binary
 * is built for plain x86-64; the wider kernels are compiled per file with `#pragma GCC target`
 * and chosen here at run time, so one build runs on any x86-64.
 */
#ifndef MT_CPU_ISA_H
#define MT_CPU_ISA_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/base/status.h"

/* Instruction sets usable here: the CPU has them and the OS saves their registers. */
struct mt_cpu_isa {
    bool avx2;
    bool fma;
    bool f16c;
    bool avx512f;
    bool avx512bw;
    bool avx512vl;
    bool avx512_bf16;
    bool avx512_fp16;
    bool avx512_vnni;
    bool amx_tile;
    bool amx_bf16;
    bool amx_int8;
    bool amx_fp16;
};

/* Detect the usable instruction sets (cpuid + XCR0). Cannot fail. */
void mt_cpu_isa_detect(struct mt_cpu_isa *isa_out);

/* The cpuid brand string, leading blanks removed ("unknown CPU" when absent). */
void mt_cpu_brand(char *out, size_t cap);

/*
 * Ask the kernel for the AMX tile state (Linux 5.16+, process-wide, idempotent). False when the
 * CPU lacks AMX-BF16 or the kernel refuses; errno is kept from arch_prctl.
 */
bool mt_cpu_amx_enable(void);

/* Kernel families of the expert kernels, slowest first; each needs the ones below it. */
enum mt_cpu_level {
    MT_CPU_LEVEL_SCALAR = 0, /* plain C: the reference of the others */
    MT_CPU_LEVEL_AVX2,       /* AVX2 + FMA + F16C */
    MT_CPU_LEVEL_AVX512,     /* AVX-512 F + BW (+ BF16 where present) */
    MT_CPU_LEVEL_AMX,        /* AVX512 + AMX-BF16 tiles for prefill */
};

/* "scalar", "avx2", "avx512", "amx". */
const char *mt_cpu_level_name(enum mt_cpu_level level);

/* The best level this CPU (and OS) runs. */
enum mt_cpu_level mt_cpu_level_max(void);

/*
 * The level the kernels use: MOETIER_ISA=scalar|avx2|avx512|amx when set (MT_ERR_INVAL for an
 * unknown name, MT_ERR_UNSUPPORTED when this CPU cannot run it), else mt_cpu_level_max().
 */
mt_status_t mt_cpu_level_select(enum mt_cpu_level *level_out);

#endif /* MT_CPU_ISA_H */
