/* SPDX-License-Identifier: MIT */
/*
 * isa.c - instruction-set detection from cpuid and XCR0, AMX permission, kernel level choice
 * (cpu/isa.h).
 */
#include <config.h>

#include "cpu/isa.h"
#include "runtime/base/status.h"

#include <cpuid.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023 /* Linux arch_prctl: ask for the AMX tile state */
#define XFEATURE_XTILEDATA 18

static uint64_t
read_xcr0(void)
{
    uint32_t lo;
    uint32_t hi;

    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

void
mt_cpu_isa_detect(struct mt_cpu_isa *isa_out)
{
    unsigned a;
    unsigned b;
    unsigned c;
    unsigned d;
    unsigned max_leaf;
    bool osxsave;
    bool os_avx = false;
    bool os_avx512 = false;
    bool os_amx = false;
    struct mt_cpu_isa isa;

    memset(&isa, 0, sizeof(isa));
    max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 7 || !__get_cpuid(1, &a, &b, &c, &d)) {
        *isa_out = isa;
        return;
    }
    osxsave = (c >> 27) & 1;
    if (osxsave) {
        uint64_t xcr0 = read_xcr0();

        os_avx = (xcr0 & 0x6) == 0x6;                   /* SSE + AVX state */
        os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;    /* opmask, ZMM_Hi256, Hi16_ZMM */
        os_amx = (xcr0 & (3ull << 17)) == (3ull << 17); /* XTILECFG, XTILEDATA */
    }
    isa.fma = os_avx && ((c >> 12) & 1);
    isa.f16c = os_avx && ((c >> 29) & 1);
    __cpuid_count(7, 0, a, b, c, d);
    isa.avx2 = os_avx && ((b >> 5) & 1);
    isa.avx512f = os_avx512 && ((b >> 16) & 1);
    isa.avx512bw = os_avx512 && ((b >> 30) & 1);
    isa.avx512vl = os_avx512 && ((b >> 31) & 1);
    isa.avx512_vnni = os_avx512 && ((c >> 11) & 1);
    isa.avx512_fp16 = os_avx512 && ((d >> 23) & 1);
    isa.amx_bf16 = os_amx && ((d >> 22) & 1);
    isa.amx_tile = os_amx && ((d >> 24) & 1);
    isa.amx_int8 = os_amx && ((d >> 25) & 1);
    __cpuid_count(7, 1, a, b, c, d);
    isa.avx512_bf16 = os_avx512 && ((a >> 5) & 1);
    isa.amx_fp16 = os_amx && ((a >> 21) & 1);
    *isa_out = isa;
}

void
mt_cpu_brand(char *out, size_t cap)
{
    unsigned regs[12];
    char *s;

    snprintf(out, cap, "unknown CPU");
    if (__get_cpuid_max(0x80000000, NULL) < 0x80000004) {
        return;
    }
    for (unsigned i = 0; i < 3; i++) {
        __get_cpuid(0x80000002 + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2],
                    &regs[4 * i + 3]);
    }
    s = (char *)regs;
    s[47] = '\0';
    while (*s == ' ') {
        s++;
    }
    snprintf(out, cap, "%s", s);
}

bool
mt_cpu_amx_enable(void)
{
    struct mt_cpu_isa isa;

    mt_cpu_isa_detect(&isa);
    if (!isa.amx_tile || !isa.amx_bf16) {
        errno = ENOTSUP;
        return false;
    }
    /* The tile state is off until the process asks (Linux 5.16+); the grant is process-wide. */
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

static const char *const level_names[] = {"scalar", "avx2", "avx512", "amx"};

const char *
mt_cpu_level_name(enum mt_cpu_level level)
{
    return (unsigned)level < 4 ? level_names[level] : "?";
}

enum mt_cpu_level
mt_cpu_level_max(void)
{
    struct mt_cpu_isa isa;

    mt_cpu_isa_detect(&isa);
    /* every unit the level's kernels are compiled for (their #pragma GCC target lines): a VM
     * that hides one of them gets the level below, not an illegal instruction */
    if (isa.avx512f && isa.avx512bw && isa.avx512vl && isa.f16c && isa.fma) {
        if (isa.amx_tile && isa.amx_bf16 && isa.avx512_bf16 && mt_cpu_amx_enable()) {
            return MT_CPU_LEVEL_AMX;
        }
        return MT_CPU_LEVEL_AVX512;
    }
    if (isa.avx2 && isa.fma && isa.f16c) {
        return MT_CPU_LEVEL_AVX2;
    }
    return MT_CPU_LEVEL_SCALAR;
}

/* "scalar, avx2, avx512": the names of the levels up to max, for a hint (a static string). */
static const char *
levels_up_to(enum mt_cpu_level max)
{
    static const char *const lists[] = {"scalar", "scalar, avx2", "scalar, avx2, avx512",
                                        "scalar, avx2, avx512, amx"};

    return lists[(unsigned)max < 4 ? max : 0];
}

mt_status_t
mt_cpu_level_select(enum mt_cpu_level *level_out)
{
    const char *want = getenv("MOETIER_ISA");
    enum mt_cpu_level max = mt_cpu_level_max();

    if (want == NULL || want[0] == '\0') {
        *level_out = max;
        return MT_OK;
    }
    for (int l = 0; l < 4; l++) {
        if (strcmp(want, level_names[l]) != 0) {
            continue;
        }
        if (l > (int)max) {
            return mt_fail(MT_ERR_UNSUPPORTED, 0,
                           "the environment variable MOETIER_ISA=%s asks for kernels this CPU "
                           "cannot run (it runs at most %s): unset MOETIER_ISA, or set it to "
                           "one of %s", want, level_names[max], levels_up_to(max));
        }
        *level_out = (enum mt_cpu_level)l;
        return MT_OK;
    }
    return mt_fail(MT_ERR_INVAL, 0,
                   "the environment variable MOETIER_ISA='%s' names no kernel family: unset it "
                   "(the best this CPU runs is chosen), or set it to one of %s", want,
                   levels_up_to(max));
}
