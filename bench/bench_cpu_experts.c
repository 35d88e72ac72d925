/* SPDX-License-Identifier: MIT */
/*
 * bench_cpu_experts.c - CPU routed experts against this machine's own ceilings, measured in the
 * same run: the DRAM read ceiling (cpu/stream.h) for decode, the FMA and AMX rates
 * (cpu/flops.h) for prefill. Real V3.2 expert shape (7168 -> 2048 -> 7168); the weights rotate
 * through a pool of up to 256 experts (one layer) so nothing is served from the LLC.
 *
 *   bench_cpu_experts [--experts N] [--steps N] [--quick] [--decode 0|1|2|3] [--only LETTERS]
 *                     [--rounds N] [--amx DIGITS]   ((e): rounds, and which settings: "035")
 *
 * The ceiling every decode ratio divides by is the best of several ways to read, all measured
 * in this run: mt_cpu_read_ceiling (1-8 streams per thread, with and without software
 * prefetch, 8 GiB), and pure loads over the very expert bytes of decode steps (8 experts of
 * the rotation, FP8 and BF16) with the team the kernels use; the read ceiling and the FP8 step
 * read are measured again at the end, and the summary divides by the best of all of them.
 *
 * Prints markdown tables: (a) decode, 1/2/4/8 tokens x 8 experts, FP8 and BF16: GB/s of expert
 * weights and the ratio to the ceiling; (b) prefill, 32/256/2048 tokens per expert, FP8:
 * TFLOP/s and the ratios to the FMA and AMX rates; (c) decode FP8, 1 token, on 1..all cores;
 * (d) decode FP8, 1 and 8 tokens, at software prefetch distances 0-16 KiB per row stream or
 * the next tile; (e) AMX prefill, 8 experts x 2048 tokens, in rounds: settings of the tiles
 * kernel (K chunk, prefetch, units, token super block, conversion prefetch); (f)
 * decode kernels (FMA tiles with FP8 widened by bit moves or tables, bf16 dot products with 3 or 2
 * terms: mt_cpu_experts_decode, --decode picks the one of (a)-(e)) and row sharing (units or fixed
 * shares); (g) the team's round trip (start, one barrier, wait) with no work; (h) decode FP8, 1
 * token x 8 experts, interleaved with the step read (read, kernels, read, kernels, ... read),
 * with overlapping phases and with the phase barrier, each kernel rate against the mean of the
 * two reads beside it, since both move from minute to minute on a shared host; (i) AMX prefill
 * of one expert on 1, 2, 4, 8, all threads against the AMX rate of as many threads; (j) AMX
 * blocks (2 x 2; 1 x 2, single and double-buffered) with their tile loads from L1 or L2
 * against the rate without loads; (k) AMX prefill of 16-128 tokens an expert, the few-token
 * kernel against the tiles kernel. --only runs the
 * named sections (e.g. "behij"; the ceilings always).
 * MOETIER_ISA picks the kernel family.
 */
#include <config.h>

#include "cpu/experts_bench.h"
#include "cpu/stream.h"
#include "runtime/base/clock.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HIDDEN 7168
#define INTER 2048

static int
fail(const char *what)
{
    fprintf(stderr, "bench_cpu_experts: %s: %s\n", what, mt_last_error());
    return 1;
}

/* GB/s of a pure read of 8 experts' bytes per step (the decode step's own read ceiling). */
static double
step_read(struct mt_cpu_expert_pool *pool, int streams, int prefetch, int steps)
{
    struct mt_cpu_moe_timing t;

    if (mt_cpu_expert_pool_read(pool, 0, 8, streams, prefetch, steps, &t) != MT_OK) {
        return 0.0;
    }
    return t.bytes / t.median_s * 1e-9;
}

/* The best of the step reads of both pools with a few stream/prefetch settings; prints them. */
static double
step_read_best(struct mt_cpu_expert_pool *const *pool, int steps)
{
    static const int cfg[3][2] = {{2, 0}, {4, 2048}, {8, 0}};
    double best = 0.0;

    for (int d = 0; d < 2; d++) {
        for (int c = 0; c < 3; c++) {
            double g = step_read(pool[d], cfg[c][0], cfg[c][1], steps);

            printf("%s%s x%d%s %.1f", d + c == 0 ? "" : ", ", d == 0 ? "fp8" : "bf16", cfg[c][0],
                   cfg[c][1] ? " pf" : "", g);
            best = MT_MAX(best, g);
        }
    }
    return best;
}

static const char *
decode_name(int kind)
{
    static const char *const names[] = {"fma tiles", "fma tiles, table widening",
                                        "bf16 dot, 2 terms", "bf16 dot, 3 terms"};

    return names[kind >= 0 && kind <= 3 ? kind : 0];
}

/* The best fp8 step read of pool (3 stream/prefetch settings), printed nowhere. */
static double
step_read_fp8(struct mt_cpu_expert_pool *pool, int steps)
{
    static const int cfg[3][2] = {{2, 0}, {4, 2048}, {8, 0}};
    double best = 0.0;

    for (int c = 0; c < 3; c++) {
        best = MT_MAX(best, step_read(pool, cfg[c][0], cfg[c][1], steps));
    }
    return best;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x > y) - (x < y);
}

/* The median of n sorted values (the mean of the middle two for even n). */
static double
mid(const double *v, int n)
{
    return n % 2 != 0 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/*
 * (h): rounds of (step read, then each decode setting, overlapping phases on and off) and a
 * last read; each kernel rate against the mean of the reads before and after its round. Prints
 * the rounds and the spread of the ratios per setting.
 */
enum { NH = 2 };

static int
interleaved(struct mt_cpu_expert_pool *pool, struct mt_cpu_moe *moe, int rounds, int steps)
{
    static const char *const hname[NH] = {"overlapping phases (default)", "phase barrier"};
    double rd[rounds + 1];
    double kr[NH][rounds];
    double ratio[NH][rounds];
    int overlap = mt_cpu_experts_overlap;

    printf("\n## (h) decode fp8, 1 token x 8 experts, interleaved with the step read\n\n");
    printf("| round | read before | overlap GB/s | barrier GB/s | read after | overlap of their "
           "mean | barrier | overlap: layer ms, wake us, tail us | barrier: same |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    rd[0] = step_read_fp8(pool, steps);
    for (int i = 0; i < rounds; i++) {
        struct mt_cpu_moe_spread sp[NH];

        for (int v = 0; v < NH; v++) {
            int h = (v + i) % NH; /* alternate which goes first */
            struct mt_cpu_moe_timing t;

            mt_cpu_experts_overlap = h == 0;
            mt_cpu_moe_spread(moe, &sp[h]); /* reset the counts */
            if (mt_cpu_expert_pool_time(pool, moe, 0, 1, 8, 0, steps, &t) != MT_OK) {
                mt_cpu_experts_overlap = overlap;
                return 1;
            }
            mt_cpu_moe_spread(moe, &sp[h]); /* the timed steps and the warm-up one */
            kr[h][i] = t.bytes / t.median_s * 1e-9;
        }
        rd[i + 1] = step_read_fp8(pool, steps);
        for (int h = 0; h < NH; h++) {
            ratio[h][i] = kr[h][i] / (0.5 * (rd[i] + rd[i + 1]));
        }
        printf("| %d | %.1f | %.1f | %.1f | %.1f | %.1f%% | %.1f%% | %.2f, %.0f, %.0f | %.2f, "
               "%.0f, %.0f |\n",
               i + 1, rd[i], kr[0][i], kr[1][i], rd[i + 1], 100.0 * ratio[0][i],
               100.0 * ratio[1][i], sp[0].total_s * 1e3, sp[0].start_lag_s * 1e6,
               sp[0].idle_end_s * 1e6, sp[1].total_s * 1e3, sp[1].start_lag_s * 1e6,
               sp[1].idle_end_s * 1e6);
    }
    mt_cpu_experts_overlap = overlap;
    qsort(rd, (size_t)rounds + 1, sizeof(double), cmp_double);
    printf("\nreads %.1f-%.1f GB/s (median %.1f)\n\n", rd[0], rd[rounds], mid(rd, rounds + 1));
    for (int h = 0; h < NH; h++) {
        int met = 0;

        for (int i = 0; i < rounds; i++) {
            met += ratio[h][i] >= 0.85;
        }
        qsort(ratio[h], (size_t)rounds, sizeof(double), cmp_double);
        qsort(kr[h], (size_t)rounds, sizeof(double), cmp_double);
        printf("**interleaved, %s**: ratio median %.1f%% (min %.1f%%, max %.1f%%), %d of %d "
               "rounds >= 85%%; kernel %.1f-%.1f GB/s (median %.1f)\n",
               hname[h], 100.0 * mid(ratio[h], rounds), 100.0 * ratio[h][0],
               100.0 * ratio[h][rounds - 1], met, rounds, kr[h][0], kr[h][rounds - 1],
               mid(kr[h], rounds));
    }
    return 0;
}

/*
 * (j): the 2 x 2 block of TDPBF16PS with its 4 tile loads per 4 products, operands from L1
 * (16 KiB regions) or with the B tiles from L2 (1 MiB), all threads, against the rate without
 * loads measured just before: the ceiling of a prefill kernel's inner loop, apart from its
 * conversion, packing and C traffic; and a 1 x 2 block reloading the same tile registers or
 * double-buffered (do loads overlap products when they write other registers?).
 */
static int
amx_loop_ceilings(void)
{
    /* shape, A region, B region */
    static const size_t reg[][3] = {{0, 16 << 10, 16 << 10}, {0, 16 << 10, 64 << 10},
                                    {0, 16 << 10, 1 << 20},  {0, 1 << 20, 1 << 20},
                                    {1, 16 << 10, 16 << 10}, {2, 16 << 10, 16 << 10},
                                    {3, 16 << 10, 16 << 10}, {4, 16 << 10, 16 << 10},
                                    {4, 16 << 10, 64 << 10}, {1, 16 << 10, 64 << 10},
                                    {2, 16 << 10, 64 << 10}, {3, 16 << 10, 64 << 10}};
    static const char *const shape[5] = {"2 x 2", "1 x 2", "1 x 2, double-buffered",
                                         "2 x 2, loads interleaved", "2 x 2's loads alone"};
    double none;

    printf("\n## (j) AMX blocks with their tile loads, all threads\n\n");
    printf("| block | A region | B region | TFLOP/s | of the rate without loads |\n"
           "|---|---|---|---|---|\n");
    if (mt_cpu_amx_bf16_gflops(0.2, &none) != MT_OK) {
        return 1;
    }
    for (size_t i = 0; i < sizeof(reg) / sizeof(reg[0]); i++) {
        double g;

        if (mt_cpu_amx_bf16_loads_gflops_n(0, (int)reg[i][0], reg[i][1], reg[i][2], 0.2, &g) !=
            MT_OK) {
            return 1;
        }
        printf("| %s | %zu KiB | %zu KiB | %.2f | %.1f%% |\n", shape[reg[i][0]], reg[i][1] >> 10,
               reg[i][2] >> 10, g * 1e-3, 100.0 * g / none);
    }
    printf("(no loads: %.2f TFLOP/s)\n", none * 1e-3);
    return 0;
}

/*
 * The AMX prefill settings (e) compares, all the tiles kernel: K chunk, prefetch of the weight
 * tile stream, prefill unit rows, token super block, prefetch in the weight conversion.
 */
enum { NA = 6 };
static const int acfg[NA][6] = {{256, 0, 128, 256, 1, 0}, {256, 0, 128, 256, 0, 0},
                                {256, 0, 128, 256, 1, 1}, {512, 0, 128, 256, 1, 0},
                                {512, 0, 128, 256, 1, 1}, {512, 4096, 128, 256, 1, 0}};
static bool amx_pick[NA] = {true, true, true, true, true, true}; /* --amx picks some */

static void
amx_set(int i)
{
    mt_cpu_experts_amx_tiles = 1;
    mt_cpu_experts_amx_order = 0;
    mt_cpu_experts_amx_kc = acfg[i][0];
    mt_cpu_experts_amx_pf = acfg[i][1];
    mt_cpu_experts_prefill_unit = acfg[i][2];
    mt_cpu_experts_amx_super = acfg[i][3];
    mt_cpu_experts_amx_cvt_pf = acfg[i][4];
    mt_cpu_experts_amx_cadd = acfg[i][5];
}

static void
amx_name(int i, char *what, size_t n)
{
    snprintf(what, n, "tiles, K chunk %d, prefetch %d, units %d, super %d%s%s", acfg[i][0],
             acfg[i][1], acfg[i][2], acfg[i][3], acfg[i][4] ? ", conversion prefetch" : "",
             acfg[i][5] ? ", C by vector adds" : "");
}

/*
 * (e): rounds of (the AMX rate, then one timed 8 x 2048-token layer of each setting, in an
 * order rotated every round); each layer against the AMX rate of its round, and per setting the
 * median, min and max over the rounds: the host's own speed moves by 10-20% from minute to
 * minute, more than the settings differ, so one timing each says little.
 */
static int
amx_rounds(struct mt_cpu_expert_pool *pool, struct mt_cpu_moe *moe, int rounds)
{
    double r[NA][rounds];
    double tf[NA][rounds];
    double rate[rounds];
    int tiles = mt_cpu_experts_amx_tiles;
    int kc = mt_cpu_experts_amx_kc;
    int pf = mt_cpu_experts_amx_pf;
    int order = mt_cpu_experts_amx_order;
    int unit = mt_cpu_experts_prefill_unit;
    int super = mt_cpu_experts_amx_super;
    int cvt_pf = mt_cpu_experts_amx_cvt_pf;
    int cadd = mt_cpu_experts_amx_cadd;
    double tail[NA][rounds];

    printf("\n## (e) prefill fp8, 8 experts x 2048 tokens: AMX settings, %d rounds\n\n", rounds);
    for (int k = 0; k < rounds; k++) {
        if (mt_cpu_amx_bf16_gflops(0.2, &rate[k]) != MT_OK) {
            return 1;
        }
        for (int j = 0; j < NA; j++) {
            int i = (j + k) % NA;

            if (!amx_pick[i]) {
                continue;
            }
            struct mt_cpu_moe_timing t;

            struct mt_cpu_moe_spread sp;

            amx_set(i);
            mt_cpu_moe_spread(moe, &sp); /* reset the counts */
            if (mt_cpu_expert_pool_time(pool, moe, 0, 0, 8, 2048, 1, &t) != MT_OK) {
                return 1;
            }
            mt_cpu_moe_spread(moe, &sp); /* the warm-up layer and the timed one */
            tail[i][k] = sp.total_s > 0 ? sp.idle_end_s / sp.total_s : 0.0;
            tf[i][k] = t.flops / t.median_s * 1e-12;
            r[i][k] = tf[i][k] / (rate[k] * 1e-3);
        }
    }
    mt_cpu_experts_amx_tiles = tiles;
    mt_cpu_experts_amx_kc = kc;
    mt_cpu_experts_amx_pf = pf;
    mt_cpu_experts_amx_order = order;
    mt_cpu_experts_prefill_unit = unit;
    mt_cpu_experts_amx_super = super;
    mt_cpu_experts_amx_cvt_pf = cvt_pf;
    mt_cpu_experts_amx_cadd = cadd;
    printf("AMX BF16 rate per round (TFLOP/s):");
    for (int k = 0; k < rounds; k++) {
        printf(" %.2f", rate[k] * 1e-3);
    }
    printf("\n\n| setting | TFLOP/s per round | of the round's AMX rate: median | min | max | "
           "tail: mean idle of a thread at the end, of the layer, median |\n");
    printf("|---|---|---|---|---|---|\n");
    for (int i = 0; i < NA; i++) {
        if (!amx_pick[i]) {
            continue;
        }
        char what[112];
        char list[128] = "";

        amx_name(i, what, sizeof(what));
        for (int k = 0; k < rounds; k++) {
            size_t at = strlen(list);

            snprintf(list + at, sizeof(list) - at, "%s%.2f", k ? " " : "", tf[i][k]);
        }
        qsort(r[i], (size_t)rounds, sizeof(double), cmp_double);
        qsort(tail[i], (size_t)rounds, sizeof(double), cmp_double);
        printf("| %s | %s | **%.1f%%** | %.1f%% | %.1f%% | %.1f%% |\n", what, list,
               100.0 * mid(r[i], rounds), 100.0 * r[i][0], 100.0 * r[i][rounds - 1],
               100.0 * mid(tail[i], rounds));
    }
    return 0;
}

/*
 * (i): one expert x 2048 tokens (default settings) on 1, 2, 4, 8, all threads, each against the
 * AMX rate of as many threads measured just before: a kernel that holds its share of the rate
 * on one core but not on all is limited by what the cores share, not by its loop.
 */
static int
amx_scaling(struct mt_cpu_expert_pool *pool, struct mt_cpu_moe *moe, int nt)
{
    printf("\n## (i) prefill fp8, 1 expert x 2048 tokens, per thread count (default settings)\n\n");
    printf("| threads | TFLOP/s | AMX rate of as many threads | of it |\n|---|---|---|---|\n");
    for (int n = 1; n <= nt; n = n < nt && n * 2 > nt ? nt : n * 2) {
        struct mt_cpu_moe_timing t;
        double rate;

        if (mt_cpu_amx_bf16_gflops_n(n, 0.2, &rate) != MT_OK ||
            mt_cpu_expert_pool_time(pool, moe, n, 0, 1, 2048, 1, &t) != MT_OK) {
            return 1;
        }
        double tf = t.flops / t.median_s * 1e-12;

        printf("| %d | %.3f | %.3f | %.1f%% |\n", n, tf, rate * 1e-3, 100.0 * tf / (rate * 1e-3));
        if (n == nt) {
            break;
        }
    }
    return 0;
}

/*
 * (k): AMX prefill with the few tokens an expert gets in a prompt chunk (8 experts x m tokens):
 * the few-token kernel (cpu/experts_amx_small.c, mt_cpu_experts_amx_small) against the tiles
 * kernel (a call's rows converted into an L2-sized buffer first), and at 33-64 tokens the
 * few-token kernel's blocks of 32 x 32 too (mt_cpu_experts_amx_small_wide 0: rows widened again
 * for each 32 tokens), alternating in rotated order, in rounds; GB/s of FP8 weights read
 * (against the read ceiling of this run) and TFLOP/s.
 */
static int
amx_small(struct mt_cpu_expert_pool *pool, struct mt_cpu_moe *moe, int rounds, double ceil_gbps)
{
    static const int ms[] = {16, 24, 32, 40, 48, 64, 128};
    static const char *const names[3] = {"few-token", "tiles", "few-token, 32 x 32"};
    int small = mt_cpu_experts_amx_small, wide = mt_cpu_experts_amx_small_wide;

    printf("\n## (k) prefill fp8, 8 experts x m tokens: few-token kernel against the tiles "
           "kernel, %d rounds\n\n| tokens/expert | kernel | GB/s per round | median GB/s | of "
           "read ceiling | TFLOP/s (median) |\n|---|---|---|---|---|---|\n", rounds);
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
        int nv = ms[i] > 32 && ms[i] <= 64 ? 3 : 2;
        double g[3][rounds];
        double tf[3][rounds];

        for (int k = 0; k < rounds; k++) {
            for (int j = 0; j < nv; j++) {
                int v = (j + k) % nv; /* 0: few-token, 1: tiles, 2: few-token in 32 x 32 */
                struct mt_cpu_moe_timing t;

                mt_cpu_experts_amx_small = v == 1 ? 0 : ms[i];
                mt_cpu_experts_amx_small_wide = v == 2 ? 0 : wide;
                if (mt_cpu_expert_pool_time(pool, moe, 0, 0, 8, ms[i], 3, &t) != MT_OK) {
                    mt_cpu_experts_amx_small = small;
                    mt_cpu_experts_amx_small_wide = wide;
                    return 1;
                }
                g[v][k] = t.bytes / t.median_s * 1e-9;
                tf[v][k] = t.flops / t.median_s * 1e-12;
            }
        }
        for (int v = 0; v < nv; v++) {
            double gs[rounds], ts[rounds];

            printf("| %d | %s |", ms[i], names[v]);
            for (int k = 0; k < rounds; k++) {
                printf(" %.1f", g[v][k]);
                gs[k] = g[v][k];
                ts[k] = tf[v][k];
            }
            qsort(gs, (size_t)rounds, sizeof(double), cmp_double);
            qsort(ts, (size_t)rounds, sizeof(double), cmp_double);
            double gm = mid(gs, rounds), tm = mid(ts, rounds);
            printf(" | %.1f | %.1f%% | %.3f |\n", gm, 100.0 * gm / ceil_gbps, tm);
        }
    }
    mt_cpu_experts_amx_small = small;
    mt_cpu_experts_amx_small_wide = wide;
    return 0;
}

static void
empty_job(void *arg, int tid, int nt)
{
    mt_cpu_team_barrier(arg);
    (void)tid;
    (void)nt;
}

/* A whole number in [lo, hi] for flag `name`, else a message and false. */
static bool
count_arg(const char *name, const char *text, int lo, int hi, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "bench_cpu_experts: bad %s '%s' (a whole number from %d to %d)\n", name,
                text, lo, hi);
        return false;
    }
    *out = (int)v;
    return true;
}

int
main(int argc, char **argv)
{
    int n_experts = 256;
    int steps = 20;
    bool quick = false;
    int amx_n_rounds = 4;
    const char *only = "abcdefghijk";
    struct mt_cpu_topo tp;
    struct mt_cpu_ceiling_result ceil;
    struct mt_cpu_team *team;
    struct mt_cpu_moe *moe;
    struct mt_cpu_expert_pool *pool[2] = {NULL, NULL};
    enum mt_cpu_level level;
    double fma = 0.0;
    double amx = 0.0;
    char date[32];
    time_t now = time(NULL);

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--experts") == 0 && i + 1 < argc) {
            if (!count_arg("--experts", argv[++i], 1, 1 << 20, &n_experts)) {
                return 2;
            }
        } else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
            if (!count_arg("--steps", argv[++i], 1, 1 << 20, &steps)) {
                return 2;
            }
        } else if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            if (!count_arg("--rounds", argv[++i], 1, 1 << 20, &amx_n_rounds)) {
                return 2;
            }
        } else if (strcmp(argv[i], "--amx") == 0 && i + 1 < argc) {
            /* the settings of (e) to run, as digits: "035" */
            const char *pick = argv[++i];

            for (int a = 0; a < NA; a++) {
                amx_pick[a] = strchr(pick, '0' + a) != NULL;
            }
        } else if (strcmp(argv[i], "--decode") == 0 && i + 1 < argc) {
            /* the default decode kernel of (a)-(e) */
            if (!count_arg("--decode", argv[++i], 0, 3, &mt_cpu_experts_decode)) {
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench_cpu_experts [--experts N] [--steps N] [--quick] "
                            "[--decode 0|1|2|3] [--only LETTERS] [--rounds N] [--amx DIGITS]\n");
            return 2;
        }
    }
    int dot_default = mt_cpu_experts_decode;

    if (mt_cpu_topo_query(&tp) != MT_OK || mt_cpu_level_select(&level) != MT_OK) {
        return fail("setup");
    }
    {
        /* FP8 and BF16 pools together in at most 60% of DRAM */
        double per = 3.0 * HIDDEN * INTER * 3.0; /* fp8 + bf16 bytes per expert */
        int fit = (int)(0.6 * (double)tp.mem_bytes / per);

        if (quick) {
            n_experts = MT_MIN(n_experts, 12);
        }
        n_experts = MT_MAX(8, MT_MIN(n_experts, fit));
    }
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    printf("# bench_cpu_experts | %s | %s, %d cores, %d NUMA node(s), L3 %.0f MiB, %.0f GiB | "
           "kernels %s (decode: %s) | %d experts per pool | %d steps\n\n",
           date, tp.model, tp.cores, tp.n_nodes, (double)tp.l3_bytes / (1 << 20),
           (double)tp.mem_bytes / (1u << 30), mt_cpu_level_name(level),
           level >= MT_CPU_LEVEL_AVX512 && mt_cpu_experts_decode_usable(mt_cpu_experts_decode)
               ? decode_name(mt_cpu_experts_decode)
               : decode_name(0),
           n_experts, steps);

    if (mt_cpu_read_ceiling(-1, quick ? (size_t)64 << 20 : 0, 5, &ceil) != MT_OK) {
        return fail("read ceiling");
    }
    if (mt_cpu_fma_gflops(quick ? 0.05 : 0.3, &fma) != MT_OK) {
        return fail("fma rate");
    }
    if (mt_cpu_amx_bf16_gflops(quick ? 0.05 : 0.3, &amx) != MT_OK) {
        amx = 0.0;
    }
    printf("ceilings: DRAM read %.1f GB/s (%s loads, %d streams/thread, prefetch %d, %d threads, "
           "%.1f GiB%s); fp32 FMA %.2f TFLOP/s; AMX BF16 %s%.2f TFLOP/s\n\n",
           ceil.gbps, ceil.isa, ceil.streams, ceil.prefetch, ceil.threads,
           (double)ceil.bytes / (1u << 30), ceil.bound ? "" : ", unpinned", fma * 1e-3,
           amx > 0 ? "" : "(absent) ", amx * 1e-3);

    if (mt_cpu_team_create(-1, 0, &team) != MT_OK ||
        mt_cpu_moe_create(team, level, &moe) != MT_OK) {
        return fail("team");
    }
    for (int d = 0; d < 2; d++) {
        if (mt_cpu_expert_pool_create(team, d == 0 ? MT_DTYPE_F8_E4M3 : MT_DTYPE_BF16, n_experts,
                                      HIDDEN, INTER, &pool[d]) != MT_OK) {
            return fail("expert pool");
        }
    }
    printf("decode step read (pure loads over 8 experts' bytes per step, GB/s): ");
    double step_ceil = step_read_best(pool, steps);
    double best = MT_MAX(ceil.gbps, step_ceil);
    double fp8_1 = 0.0;

    printf(
        "\n\n**ceiling of the ratios below: %.1f GB/s** (the best of the read ceiling %.1f and the "
        "step reads %.1f)\n\n",
        best, ceil.gbps, step_ceil);
    ceil.gbps = best;
    if (strchr(only, 'h') != NULL && interleaved(pool[0], moe, 7, steps) != 0) {
        return fail("interleaved decode");
    }
    if (strchr(only, 'a') != NULL) {
        printf("\n## (a) decode: tokens x 8 routed experts, %d threads\n\n",
               mt_cpu_team_size(team));
        printf("| dtype | tokens | experts/step | MB/step | median ms | p90 ms | GB/s | of "
               "ceiling |\n");
        printf("|---|---|---|---|---|---|---|---|\n");
    }
    for (int d = 0; d < 2 && strchr(only, 'a') != NULL; d++) {
        for (int tok = 1; tok <= 8; tok *= 2) {
            struct mt_cpu_moe_timing t;

            if (mt_cpu_expert_pool_time(pool[d], moe, 0, tok, 8, 0, steps, &t) != MT_OK) {
                return fail("decode");
            }
            if (d == 0 && tok == 1) {
                fp8_1 = t.bytes / t.median_s * 1e-9;
            }
            printf("| %s | %d | %.1f | %.0f | %.3f | %.3f | %.1f | %.1f%% |\n",
                   d == 0 ? "fp8" : "bf16", tok, t.bytes / mt_cpu_expert_pool_expert_bytes(pool[d]),
                   t.bytes * 1e-6, t.median_s * 1e3, t.p90_s * 1e3, t.bytes / t.median_s * 1e-9,
                   100.0 * t.bytes / t.median_s * 1e-9 / ceil.gbps);
        }
    }
    if (strchr(only, 'b') != NULL) {
        printf("\n## (b) prefill: 8 experts x m tokens each, fp8, %d threads\n\n",
               mt_cpu_team_size(team));
        printf("| tokens/expert | median ms | TFLOP/s | of FMA rate | of AMX rate |\n");
        printf("|---|---|---|---|---|\n");
    }
    for (int m = 32; m <= 2048 && strchr(only, 'b') != NULL; m *= 8) {
        struct mt_cpu_moe_timing t;
        int k = quick && m == 2048 ? 1 : 8;
        int st_n = m >= 2048 ? MT_MAX(1, MT_MIN(steps, 3)) : MT_MIN(steps, 5);

        if (quick && m == 2048) {
            continue;
        }
        if (mt_cpu_expert_pool_time(pool[0], moe, 0, 0, k, m, st_n, &t) != MT_OK) {
            return fail("prefill");
        }
        double tf = t.flops / t.median_s * 1e-12;

        char of_amx[16] = "-";

        if (amx > 0) {
            snprintf(of_amx, sizeof(of_amx), "%.1f%%", 100.0 * tf / (amx * 1e-3));
        }
        printf("| %d | %.1f | %.3f | %.1f%% | %s |\n", m, t.median_s * 1e3, tf,
               100.0 * tf / (fma * 1e-3), of_amx);
    }
    if (strchr(only, 'c') != NULL) {
        printf("\n## (c) per-core scaling: decode fp8, 1 token x 8 experts\n\n");
        printf("| threads | GB/s | GB/s per thread | of ceiling |\n|---|---|---|---|\n");
    }
    for (int n = 1; n <= mt_cpu_team_size(team) && strchr(only, 'c') != NULL; n++) {
        struct mt_cpu_moe_timing t;

        if (mt_cpu_team_size(team) > 16 && n % 4 != 0 && n != 1) {
            continue;
        }
        if (mt_cpu_expert_pool_time(pool[0], moe, n, 1, 8, 0, MT_MIN(steps, 8), &t) != MT_OK) {
            return fail("scaling");
        }
        double g = t.bytes / t.median_s * 1e-9;

        printf("| %d | %.1f | %.2f | %.1f%% |\n", n, g, g / n, 100.0 * g / ceil.gbps);
    }
    if (strchr(only, 'd') != NULL) {
        printf("\n## (d) decode fp8: software prefetch (FMA tiles), %d threads\n\n",
               mt_cpu_team_size(team));
        printf("| prefetch | tokens | median ms | GB/s | of ceiling |\n|---|---|---|---|---|\n");
    }
    int pf_default = mt_cpu_experts_prefetch;
    int mode_default = mt_cpu_experts_prefetch_mode;
    /* (mode, distance): per row stream 0-16 KiB ahead, or the next tile into L1 / L2 */
    static const int pfs[7][2] = {{0, 0},     {0, 1024}, {0, 4096}, {0, 8192},
                                  {0, 16384}, {1, 0},    {2, 0}};

    for (int i = 0; i < 7 && strchr(only, 'd') != NULL; i++) {
        for (int tok = 1; tok <= 8; tok *= 8) {
            struct mt_cpu_moe_timing t;

            mt_cpu_experts_prefetch_mode = pfs[i][0];
            mt_cpu_experts_prefetch = pfs[i][1];
            if (mt_cpu_expert_pool_time(pool[0], moe, 0, tok, 8, 0, steps, &t) != MT_OK) {
                return fail("prefetch");
            }
            double g = t.bytes / t.median_s * 1e-9;
            char what[48];

            if (pfs[i][0] == 0) {
                snprintf(what, sizeof(what), "rows, %d bytes ahead", pfs[i][1]);
            } else {
                snprintf(what, sizeof(what), "next tile into %s", pfs[i][0] == 1 ? "L1" : "L2");
            }
            printf("| %s | %d | %.3f | %.1f | %.1f%% |\n", what, tok, t.median_s * 1e3, g,
                   100.0 * g / ceil.gbps);
        }
    }
    mt_cpu_experts_prefetch = pf_default;
    mt_cpu_experts_prefetch_mode = mode_default;
    if (strchr(only, 'e') != NULL && level == MT_CPU_LEVEL_AMX && amx > 0 &&
        amx_rounds(pool[0], moe, amx_n_rounds) != 0) {
        return fail("amx kernels");
    }
    if (strchr(only, 'j') != NULL && level == MT_CPU_LEVEL_AMX && amx > 0 &&
        amx_loop_ceilings() != 0) {
        return fail("amx loop ceilings");
    }
    if (strchr(only, 'i') != NULL && level == MT_CPU_LEVEL_AMX && amx > 0 &&
        amx_scaling(pool[0], moe, mt_cpu_team_size(team)) != 0) {
        return fail("amx scaling");
    }
    if (strchr(only, 'k') != NULL && level == MT_CPU_LEVEL_AMX &&
        amx_small(pool[0], moe, amx_n_rounds, ceil.gbps) != 0) {
        return fail("amx small m");
    }

    if (strchr(only, 'f') != NULL) {
        printf("\n## (f) decode kernels and row sharing, %d threads\n\n", mt_cpu_team_size(team));
        printf("| kernel | sharing | dtype | tokens | median ms | GB/s | of ceiling |\n");
        printf("|---|---|---|---|---|---|---|\n");
    }
    /* (dot, dynamic): the FMA tiles with units and with fixed shares, the bf16 dot kernels */
    static const int kcfg[5][2] = {{0, 1}, {0, 0}, {1, 1}, {3, 1}, {2, 1}};

    for (int i = 0; i < 5 && strchr(only, 'f') != NULL; i++) {
        int dot = kcfg[i][0];
        int dyn = kcfg[i][1];

        if (dot != 0 && (!mt_cpu_experts_decode_usable(dot) || level < MT_CPU_LEVEL_AVX512)) {
            continue;
        }
        for (int d = 0; d < 2; d++) {
            for (int tok = 1; tok <= 8; tok *= 8) {
                struct mt_cpu_moe_timing t;

                mt_cpu_experts_decode = dot;
                mt_cpu_experts_dynamic = dyn;
                if (mt_cpu_expert_pool_time(pool[d], moe, 0, tok, 8, 0, steps, &t) != MT_OK) {
                    return fail("kernels");
                }
                double g = t.bytes / t.median_s * 1e-9;

                printf("| %s | %s | %s | %d | %.3f | %.1f | %.1f%% |\n", decode_name(dot),
                       dyn ? "units" : "fixed shares", d == 0 ? "fp8" : "bf16", tok,
                       t.median_s * 1e3, g, 100.0 * g / ceil.gbps);
            }
        }
    }
    mt_cpu_experts_decode = dot_default;
    mt_cpu_experts_dynamic = 1;

    if (strchr(only, 'g') != NULL) {
        printf("\n## (g) team round trip with no work (start, one barrier, wait)\n\n");
        enum { REPS = 200 };
        double tt[REPS];

        for (int r = -20; r < REPS; r++) {
            double t0 = mt_clock_now();

            mt_cpu_team_run(team, 0, empty_job, team);
            if (r >= 0) {
                tt[r] = mt_clock_now() - t0;
            }
        }
        double med;
        double p90;

        mt_cpu_median_p90(tt, REPS, &med, &p90);
        printf("%d threads: median %.1f us, p90 %.1f us\n", mt_cpu_team_size(team), med * 1e6,
               p90 * 1e6);
    }

    if (strchr(only, 'a') == NULL) {
        double amx2 = 0.0;

        if (amx > 0 && mt_cpu_amx_bf16_gflops(0.3, &amx2) == MT_OK) {
            printf("\nAMX BF16 again, at the end: %.2f TFLOP/s (%.2f at the start)\n", amx2 * 1e-3,
                   amx * 1e-3);
        }
    } else {
        struct mt_cpu_ceiling_result c2;

        printf("\n## ceilings again, at the end\n\n");

        if (mt_cpu_read_ceiling(-1, quick ? (size_t)64 << 20 : 0, 5, &c2) != MT_OK) {
            return fail("read ceiling");
        }
        printf("read ceiling %.1f GB/s (%s, %d streams/thread, prefetch %d); decode step read: ",
               c2.gbps, c2.isa, c2.streams, c2.prefetch);
        double s2 = step_read_best(pool, steps);
        double best2 = MT_MAX(best, MT_MAX(c2.gbps, s2));
        double amx2 = 0.0;

        if (amx > 0 && mt_cpu_amx_bf16_gflops(0.3, &amx2) == MT_OK) {
            printf("\nAMX BF16 again: %.2f TFLOP/s (%.2f at the start)", amx2 * 1e-3, amx * 1e-3);
        }
        printf("\n\n**summary**: fp8 decode, 1 token x 8 experts: %.1f GB/s = %.1f%% of the "
               "ceiling used above (%.1f), %.1f%% of the best read of the whole run (%.1f)\n",
               fp8_1, 100.0 * fp8_1 / best, best, 100.0 * fp8_1 / best2, best2);
    }
    mt_cpu_expert_pool_destroy(pool[1]);
    mt_cpu_expert_pool_destroy(pool[0]);
    mt_cpu_moe_destroy(moe);
    mt_cpu_team_destroy(team);
    return 0;
}
