/* SPDX-License-Identifier: MIT */
/*
 * cli_bench.c - `moetier bench`: measure this machine's memory tiers and write a hardware
 * profile (runtime/hwprofile.h) for the placement planner.
 *
 * The one idea: measure each tier the way the runtime will use it, in one run, and keep the
 * numbers in one table: GPU HBM read and copy (kernels/bench.cu), pinned PCIe copies per size
 * and both ways at once, DRAM read/triad per NUMA node with pinned threads (cpu/stream.c), the
 * CPU's FMA and AMX rates, and O_DIRECT reads through io_uring (io/disk_bench.c) per disk,
 * queue depth and block size. Each part can run alone (--only); progress goes to stderr, the
 * table (STYLE.md bench format) to stdout. A machine without a GPU skips gpu and pcie with a
 * note. Numbers are medians over repetitions; GB/s is 1e9 bytes per second.
 */
#include <config.h>

#include "runtime/cli/cli.h"
#include "runtime/cli/cli_common.h"
#include "runtime/cli/cli_autoplan.h"
#include "runtime/base/clock.h"

#include "cpu/experts_bench.h"
#include "cpu/stream.h"
#include "io/disk_bench.h"
#include "io/uring_reader.h"
#include "kernels/kernels.h"
#include "runtime/plan/hwprofile.h"
#include "runtime/base/status.h"
#include "runtime/plan/svg.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum part {
    PART_GPU = 1u << 0,
    PART_PCIE = 1u << 1,
    PART_DRAM = 1u << 2,
    PART_CPU = 1u << 3,
    PART_DISK = 1u << 4,
    PART_ALL = 0x1f,
};

#define MAX_ROWS 640 /* 3 gpu + 15 pcie + 34 dram + 2 cpu + 16 disks x 32 points */
#define MAX_QD 8
#define MAX_BLOCKS 4

struct bench_opts {
    unsigned parts;
    const char *disks[MT_HWPROFILE_MAX_DISKS];
    int n_disks;
    uint64_t disk_size; /* test file written in a directory given to --disk */
    uint64_t disk_pass; /* bytes read per (qd, block) point; 0 = min(file, 1 GiB) */
    int qds[MAX_QD];
    int n_qd;
    uint64_t blocks[MAX_BLOCKS];
    int n_blocks;
    uint64_t dram_bytes; /* per stream array; 0 = automatic */
    int device;
    bool quick;
    bool csv;
    const char *json;
    const char *svg;
};

/* One line of the final table. */
struct row {
    char tier[8]; /* gpu, pcie, dram, cpu, disk */
    char kernel[32];
    char shape[72];
    char peak_group[80]; /* rows of one group share a 100% */
    double median_ms;
    double p90_ms;
    double gbps;
    double tflops;
    int reps; /* the median's repetitions where not the bench's own (0), ONE_PASS for one pass */
};

#define ONE_PASS (-1)

struct bench {
    struct bench_opts o;
    struct mt_hwprofile *prof; /* owned */
    struct row rows[MAX_ROWS];
    int n_rows;
    int reps;
    char gpu_note[160]; /* why gpu/pcie were skipped, or the driver */
};

/* ---- helpers ------------------------------------------------------------------------------ */

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: moetier bench [options]\n"
            "Measure this machine's memory tiers; print a table, optionally write a profile.\n\n"
            "  --only LIST       parts to run, comma separated: gpu,pcie,dram,cpu,disk\n"
            "                    (default: all; disk needs --disk; cpu also measures\n"
            "                    the DRAM read ceiling its expert rows are a share of)\n"
            "  --disk PATH       a file to read, or a directory to write a test file in\n"
            "                    (removed afterwards); repeat for several drives\n"
            "  --disk-size SIZE  test file size in a directory (default 4G)\n"
            "  --disk-pass SIZE  bytes read per queue depth and block size (default: the\n"
            "                    file, at most 1G)\n"
            "  --disk-qd LIST    queue depths (default 1,4,16,64)\n"
            "  --disk-block LIST block sizes, multiples of 4K (default 1M,4M)\n"
            "  --dram-size SIZE  bytes per stream array (default 4x all L3, 256M..2G;\n"
            "                    --quick: 2x all L3, 16M at least); not the read\n"
            "                    ceiling's, which always outgrows the L3s\n"
            "  --device N        CUDA device (default 0)\n"
            "  --quick           small sizes, few repetitions (a smoke test, not a measurement)\n"
            "  --json FILE       write the hardware profile (for moetier plan --hw)\n"
            "  --svg FILE        draw the tiers as a bar chart (GB/s, log scale)\n"
            "  --csv             print the table as CSV\n"
            "  -h, --help        this text\n"
            "SIZE takes K, M, G, T suffixes (powers of 1024).\n");
}

static const struct mt_cli cli = {"bench", usage};

static void
fmt_bytes(char *buf, size_t cap, uint64_t b)
{
    if (b >= (1ull << 30) && b % (1ull << 30) == 0) {
        snprintf(buf, cap, "%" PRIu64 " GiB", b >> 30);
    } else if (b >= (1ull << 20) && b % (1ull << 20) == 0) {
        snprintf(buf, cap, "%" PRIu64 " MiB", b >> 20);
    } else if (b >= 1024 && b % 1024 == 0) {
        snprintf(buf, cap, "%" PRIu64 " KiB", b >> 10);
    } else {
        snprintf(buf, cap, "%" PRIu64 " B", b);
    }
}

static struct row *
add_row(struct bench *b, const char *tier, const char *kernel, const char *shape,
        const char *peak_group)
{
    struct row *r;

    MT_ASSERT(b->n_rows < MAX_ROWS);
    r = &b->rows[b->n_rows++];
    memset(r, 0, sizeof(*r));
    snprintf(r->tier, sizeof(r->tier), "%s", tier);
    snprintf(r->kernel, sizeof(r->kernel), "%s", kernel);
    snprintf(r->shape, sizeof(r->shape), "%s", shape);
    snprintf(r->peak_group, sizeof(r->peak_group), "%s", peak_group);
    return r;
}

static void
add_gpu_row(struct bench *b, const char *tier, const char *kernel, const char *shape,
            const char *group, const struct mt_gpu_bench_timing *t)
{
    struct row *r = add_row(b, tier, kernel, shape, group);

    r->median_ms = t->median_ms;
    r->p90_ms = t->p90_ms;
    r->gbps = t->gbps;
    r->tflops = t->tflops;
}

/* ---- gpu and pcie ------------------------------------------------------------------------- */

/* 1 if a device is usable, 0 if none (with the reason in b->gpu_note). */
static int
gpu_present(struct bench *b)
{
    struct mt_gpu_info info;
    int n = 0;

    mt_status_t st = mt_gpu_device_count(&n);
    if (n <= b->o.device) {
#ifdef MT_HAVE_CUDA
        snprintf(b->gpu_note, sizeof(b->gpu_note), "no CUDA device %d (%s): gpu and pcie skipped",
                 b->o.device, st != MT_OK ? mt_last_error() : mt_gpu_device_none_reason());
#else
        (void)st;
        snprintf(b->gpu_note, sizeof(b->gpu_note), "built without CUDA: gpu and pcie skipped");
#endif
        return 0;
    }
    if (mt_gpu_device_info(b->o.device, &info) != MT_OK) {
        snprintf(b->gpu_note, sizeof(b->gpu_note), "CUDA device %d cannot be queried: skipped",
                 b->o.device);
        return 0;
    }
    b->prof->gpu.present = true;
    b->prof->gpu.count = n;
    snprintf(b->prof->gpu.name, sizeof(b->prof->gpu.name), "%.127s", info.name);
    b->prof->gpu.mem_bytes = info.total_mem;
    b->prof->gpu.sm_count = info.multiprocessors;
    snprintf(b->gpu_note, sizeof(b->gpu_note), "%.100s, %.0f GiB, sm_%d%d, driver %d.%d", info.name,
             (double)info.total_mem / (1ull << 30), info.sm_major, info.sm_minor,
             info.driver_version / 1000, info.driver_version % 1000 / 10);
    return 1;
}

static mt_status_t
run_gpu(struct bench *b)
{
    struct mt_gpu_bench_timing t = {0};
    size_t read_bytes = b->o.quick ? (size_t)256 << 20 : (size_t)4 << 30;
    size_t copy_bytes = b->o.quick ? (size_t)256 << 20 : (size_t)1 << 30;
    int n_gemm = b->o.quick ? 2048 : 8192;
    char shape[64];
    mt_status_t st;

    fprintf(stderr, "bench: gpu: self-check (read kernel sum, D2D/D2H/H2D bytes)...\n");
    st = mt_gpu_bench_selftest(b->o.device);
    if (st != MT_OK) {
        return st;
    }
    fprintf(stderr, "bench: gpu: self-check ok\n");
    fmt_bytes(shape, sizeof(shape), read_bytes);
    fprintf(stderr, "bench: gpu: HBM read of %s...\n", shape);
    st = mt_gpu_bench_hbm_read(b->o.device, read_bytes, b->reps, &t);
    if (st != MT_OK) {
        return st;
    }
    add_gpu_row(b, "gpu", "hbm_read", shape, "gpu_hbm", &t);
    b->prof->gpu.hbm_read_gbps = t.gbps;
    fprintf(stderr, "bench: gpu: HBM read %.0f GB/s\n", t.gbps);

    fmt_bytes(shape, sizeof(shape), copy_bytes);
    st = mt_gpu_bench_d2d_copy(b->o.device, copy_bytes, b->reps, &t);
    if (st != MT_OK) {
        return st;
    }
    strncat(shape, " (r+w)", sizeof(shape) - strlen(shape) - 1);
    add_gpu_row(b, "gpu", "d2d_copy", shape, "gpu_hbm", &t);
    b->prof->gpu.copy_gbps = t.gbps;
    fprintf(stderr, "bench: gpu: device-to-device copy %.0f GB/s (read + write)\n", t.gbps);

    st = mt_gpu_bench_bf16_gemm(b->o.device, n_gemm, b->o.quick ? 3 : 10, &t);
    if (st != MT_OK) {
        return st;
    }
    snprintf(shape, sizeof(shape), "%dx%dx%d bf16", n_gemm, n_gemm, n_gemm);
    add_gpu_row(b, "gpu", "gemm_bf16", shape, "", &t);
    b->rows[b->n_rows - 1].gbps = 0; /* a compute rate: no GB/s column */
    b->rows[b->n_rows - 1].reps = b->o.quick ? 3 : 10;
    b->prof->gpu.bf16_tflops = t.tflops;
    fprintf(stderr, "bench: gpu: bf16 GEMM %.0f TFLOP/s\n", t.tflops);
    return MT_OK;
}

static mt_status_t
run_pcie(struct bench *b)
{
    static const size_t full[] = {64u << 10, 256u << 10, 1u << 20,  4u << 20,
                                  16u << 20, 64u << 20,  256u << 20};
    static const size_t quick[] = {64u << 10, 1u << 20, 16u << 20};
    const size_t *sizes = b->o.quick ? quick : full;
    int n = b->o.quick ? 3 : 7;
    struct mt_gpu_bench_timing t[7] = {{0}};
    struct mt_hw_pcie *p = &b->prof->pcie;
    char shape[64];
    mt_status_t st;

    for (int dir = 0; dir < 2; dir++) {
        const char *name = dir == 0 ? "h2d_pinned" : "d2h_pinned";

        fprintf(stderr, "bench: pcie: %s at %d sizes...\n", name, n);
        st = mt_gpu_bench_pcie(b->o.device, dir == 0 ? MT_GPU_COPY_H2D : MT_GPU_COPY_D2H, sizes, n,
                               b->reps, t);
        if (st != MT_OK) {
            return st;
        }
        for (int k = 0; k < n; k++) {
            struct mt_hw_curve_point *curve = dir == 0 ? p->h2d_curve : p->d2h_curve;

            fmt_bytes(shape, sizeof(shape), sizes[k]);
            add_gpu_row(b, "pcie", name, shape, name, &t[k]);
            curve[k] = (struct mt_hw_curve_point){sizes[k], t[k].gbps};
        }
        if (dir == 0) {
            p->n_h2d = n;
            p->h2d_gbps = t[n - 1].gbps;
        } else {
            p->n_d2h = n;
            p->d2h_gbps = t[n - 1].gbps;
        }
        fprintf(stderr, "bench: pcie: %s %.1f GB/s at %s\n", name, t[n - 1].gbps, shape);
    }
    p->large_bytes = sizes[n - 1];
    st = mt_gpu_bench_pcie_bidir(b->o.device, sizes[n - 1], b->reps, t);
    if (st != MT_OK) {
        return st;
    }
    fmt_bytes(shape, sizeof(shape), sizes[n - 1]);
    strncat(shape, " each way", sizeof(shape) - strlen(shape) - 1);
    add_gpu_row(b, "pcie", "bidir_pinned", shape, "", t);
    p->bidir_gbps = t[0].gbps;
    fprintf(stderr, "bench: pcie: both directions at once %.1f GB/s in total\n", t[0].gbps);
    return MT_OK;
}

/* ---- dram and cpu ------------------------------------------------------------------------- */

static void
add_stream_rows(struct bench *b, const char *where, const struct mt_cpu_stream_result *r)
{
    char shape[72];
    char size[32];
    struct row *row;

    fmt_bytes(size, sizeof(size), r->array_bytes);
    snprintf(shape, sizeof(shape), "%s, %d thr, %s%s", where, r->threads, size,
             r->bound ? "" : " unpinned");
    row = add_row(b, "dram", "read", shape, "dram_read");
    row->median_ms = r->read_median_s * 1e3;
    row->p90_ms = r->read_p90_s * 1e3;
    row->gbps = r->read_gbps;
    snprintf(shape, sizeof(shape), "%s, %d thr, 3x%s%s", where, r->threads, size,
             r->bound ? "" : " unpinned");
    row = add_row(b, "dram", "triad", shape, "dram_triad");
    row->median_ms = r->triad_median_s * 1e3;
    row->p90_ms = r->triad_p90_s * 1e3;
    row->gbps = r->triad_gbps;
    fprintf(stderr, "bench: dram: %s (%d threads): read %.1f GB/s, triad %.1f GB/s\n", where,
            r->threads, r->read_gbps, r->triad_gbps);
}

/*
 * The read ceiling: the best read bandwidth any kernel gets (vector loads, several streams per
 * core, a working set far beyond the LLC), beside the STREAM-like figure above. Its working set
 * does not follow --dram-size (the stream arrays' size): the planner takes the ceiling as the
 * DRAM's rate, and --dram-size 8M made it the cache's (47.6 GB/s where 512M read 20.0).
 */
static mt_status_t
run_ceiling(struct bench *b)
{
    struct mt_cpu_ceiling_result c;
    uint64_t size = 0; /* mt_cpu_ceiling_default_bytes: 16x the L3s, 8 GiB at least */
    char shape[72];
    char sz[32];
    struct row *row;
    mt_status_t st;

    if (b->o.quick) {
        /* even a quick look must miss the last-level cache (300 MiB on some servers), or it
           measures the cache: plans made from a quick profile would trust it */
        struct mt_cpu_topo tp;
        uint64_t l3 = mt_cpu_topo_query(&tp) == MT_OK ? tp.l3_bytes : 0;
        size = MT_MAX((uint64_t)256 << 20, 4 * l3);
    }
    fprintf(stderr, "bench: dram: read ceiling, all nodes...\n");
    st = mt_cpu_read_ceiling(-1, size, MT_MIN(b->reps, 5), &c);
    if (st != MT_OK) {
        return st;
    }
    fmt_bytes(sz, sizeof(sz), c.bytes);
    snprintf(shape, sizeof(shape), "%s x%d streams, %d thr, %s%s", c.isa, c.streams, c.threads,
             sz, c.bound ? "" : " unpinned");
    row = add_row(b, "dram", "read_ceiling", shape, "dram_read_ceiling");
    row->reps = MT_MIN(b->reps, 5);
    row->median_ms = c.median_s * 1e3;
    row->p90_ms = c.p90_s * 1e3;
    row->gbps = c.gbps;
    b->prof->cpu.read_ceiling_gbps = c.gbps;
    fprintf(stderr, "bench: dram: read ceiling %.1f GB/s (%s loads, %d streams per thread)\n",
            c.gbps, c.isa, c.streams);
    return MT_OK;
}

static mt_status_t
run_dram(struct bench *b)
{
    struct mt_cpu_topo tp;
    struct mt_cpu_stream_result r;
    struct mt_hw_cpu *cpu = &b->prof->cpu;
    uint64_t size = b->o.dram_bytes; /* 0: mt_cpu_stream_run's default, 4x the L3s */
    char where[32];
    char sz[32];
    char l3[32];
    mt_status_t st;

    st = mt_cpu_topo_query(&tp);
    if (st != MT_OK) {
        return st;
    }
    if (size == 0 && b->o.quick) {
        /* small, but each array past the L3s (a fixed 16 MiB read a 32 MiB L3 and called it
           DRAM) */
        size = MT_MAX((uint64_t)16 << 20, 2 * tp.l3_bytes);
        size = MT_CEIL_DIV(size, MT_IO_ALIGN) * MT_IO_ALIGN;
    }
    int threads = tp.cores > 0 ? tp.cores : tp.threads; /* the team: a thread a core */
    if (size != 0 && size < (uint64_t)threads * 512) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "bench: --dram-size %" PRIu64 " bytes is too small for %d threads: a "
                       "stream array needs at least %d bytes (512 a thread; try --dram-size "
                       "512M, or leave it out)",
                       size, threads, threads * 512);
    }
    if (size != 0 && size <= tp.l3_bytes) {
        fmt_bytes(sz, sizeof(sz), size);
        fmt_bytes(l3, sizeof(l3), tp.l3_bytes);
        mt_log_warn("bench: stream arrays of %s fit in the %s of L3 cache: the dram read and "
                    "triad rows measure the cache (give --dram-size above %s, or leave it out)",
                    sz, l3, l3);
    }
    cpu->n_nodes = MT_MIN(tp.n_nodes, MT_HWPROFILE_MAX_NODES);
    for (int i = 0; i < cpu->n_nodes; i++) {
        snprintf(where, sizeof(where), "node %d", tp.node_id[i]);
        fprintf(stderr, "bench: dram: %s...\n", where);
        st = mt_cpu_stream_run(i, size, b->reps, &r);
        if (st != MT_OK) {
            return st;
        }
        add_stream_rows(b, where, &r);
        cpu->nodes[i] = (struct mt_hw_numa_node){
            .id = tp.node_id[i],
            .cores = tp.node_cores[i],
            .mem_bytes = tp.node_mem[i],
            .read_gbps = r.read_gbps,
            .triad_gbps = r.triad_gbps,
        };
    }
    if (cpu->n_nodes > 1) {
        fprintf(stderr, "bench: dram: all nodes at once...\n");
        st = mt_cpu_stream_run(-1, size, b->reps, &r);
        if (st != MT_OK) {
            return st;
        }
        add_stream_rows(b, "all nodes", &r);
    }
    cpu->read_gbps = r.read_gbps;
    cpu->triad_gbps = r.triad_gbps;
    return run_ceiling(b);
}

/*
 * The CPU expert kernels in prefill, for the planner's prompt-chunk prediction: 8 experts of
 * the rotation with PREFILL_FEW and PREFILL_MANY tokens each on average, spread as a chunk's
 * experts' counts are (mt_cpu_expert_pool_time_chunk: 23-41 around 32; MT_BENCH_PREFILL_EXACT=1,
 * for measurements: exactly that many, as before session 39), the time of a step fitted as
 * t(m) = fixed + m x per_token. The spread matters since session 39's few-token kernel: 8
 * experts of exactly 32 tokens read 57 GB/s on the GPU test machine where the CPU team read
 * 41-44 in an engine's 1,024-token chunks (nearly half of whose experts get 33-64 tokens: the
 * kernel's slower 16-row blocks), and the plan followed the 32s. fixed is what each expert run
 * pays whatever its tokens (its weights read from DRAM and converted for the products),
 * per_token the products: the profile keeps them as rates (cpu.expert_prefill_gbps, _gflops).
 * A prompt chunk of 1,024 tokens gives an expert ~32 of them (8 of 256 experts a token), where
 * the fixed part is most of the time (on the GPU test machine's Xeon, AMX: 2.8 TFLOP/s at 32
 * tokens, 6.2 at 2,048; bench/results/cpu-experts.md). Without AMX the FMA kernels are bound by the products from 32
 * tokens on, and the line through the two points crosses zero (2 AVX-512 cores: 218.6 ms at 32
 * tokens, 1,774.8 at 256); there the fixed part is the weights read at the decode kernels' rate
 * (mt_hw_fit_expert_prefill), which the profile recorded nothing for before (plans then took the
 * FMA peak for the products, 2.6x the kernels' 101 GFLOP/s there). A fit that comes out without
 * a positive rate for either part (noise on a busy machine) is not recorded.
 */
#define PREFILL_FEW 32
#define PREFILL_MANY 256
#define PREFILL_MANY_QUICK 128 /* --quick: 2 AVX-512 cores take ~1.8 s a step of 256 */

static mt_status_t
run_cpu_experts_prefill(struct bench *b, struct mt_cpu_expert_pool *pool, struct mt_cpu_moe *moe,
                        enum mt_cpu_level level, int threads, double decode_gbps)
{
    const int tokens[2] = {PREFILL_FEW, b->o.quick ? PREFILL_MANY_QUICK : PREFILL_MANY};
    const char *ev = getenv("MT_BENCH_PREFILL_EXACT");
    bool exact = ev != NULL && strcmp(ev, "1") == 0;
    double sec[2];
    double bytes = 0.0, flops_per_token = 0.0;

    for (int i = 0; i < 2; i++) {
        struct mt_cpu_moe_timing t;
        struct row *row;
        char shape[72];
        mt_status_t st;

        fprintf(stderr, "bench: cpu: FP8 experts in prefill, 8 x %d tokens%s...\n", tokens[i],
                exact ? "" : " on average");
        st = exact ? mt_cpu_expert_pool_time(pool, moe, 0, 0, 8, tokens[i], b->o.quick ? 2 : 5, &t)
                   : mt_cpu_expert_pool_time_chunk(pool, moe, 0, 8, tokens[i], b->o.quick ? 2 : 5,
                                                   &t);
        if (st != MT_OK) {
            return st;
        }
        snprintf(shape, sizeof(shape), "fp8 %s, 8 x 7168x2048x3 x %d tok (%d-%d), %d thr",
                 mt_cpu_level_name(level), tokens[i], t.m_min, t.m_max, threads);
        row = add_row(b, "cpu", "experts_prefill", shape, "");
        row->reps = b->o.quick ? 2 : 5;
        row->median_ms = t.median_s * 1e3;
        row->p90_ms = t.p90_s * 1e3;
        row->gbps = t.bytes / t.median_s * 1e-9;
        row->tflops = t.flops / t.median_s * 1e-12;
        sec[i] = t.median_s;
        bytes = t.bytes;
        flops_per_token = t.flops / ((double)t.pairs / 8.0); /* 8 experts a token */
    }
    double per_token = (sec[1] - sec[0]) / (tokens[1] - tokens[0]);
    double fixed = sec[0] - tokens[0] * per_token;
    struct mt_hw_cpu *cpu = &b->prof->cpu;

    if (mt_hw_fit_expert_prefill(sec[0], tokens[0], sec[1], tokens[1], bytes,
                                 flops_per_token, decode_gbps, &cpu->expert_prefill_gbps,
                                 &cpu->expert_prefill_gflops)) {
        fprintf(stderr, "bench: cpu: experts in prefill: each run %.1f GB/s of its weights, "
                "then %.0f GFLOP/s of products%s\n", cpu->expert_prefill_gbps,
                cpu->expert_prefill_gflops,
                fixed > 0 ? "" : " (bound by the products from 32 tokens: the weights' "
                                 "read taken at the decode kernels' rate)");
    } else {
        mt_log_warn("bench: the CPU experts' prefill timings do not fit a fixed + per-token "
                    "cost (%.2f ms at %d tokens, %.2f at %d: a busy machine?); the profile "
                    "records no prefill rates and plans use the FLOP rate", sec[0] * 1e3,
                    tokens[0], sec[1] * 1e3, tokens[1]);
    }
    return MT_OK;
}

/*
 * The CPU expert kernels' efficiency: one token's 8 routed experts at V3.2 shape in FP8, rotating
 * through a pool well beyond the LLC, as a fraction of the read ceiling (what `moetier plan`
 * uses instead of its --cpu-eff assumption).
 */
static mt_status_t
run_cpu_experts(struct bench *b)
{
    struct mt_cpu_team *team;
    struct mt_cpu_moe *moe = NULL;
    struct mt_cpu_expert_pool *pool = NULL;
    struct mt_cpu_moe_timing t;
    struct mt_cpu_topo tp;
    enum mt_cpu_level level;
    double per = 3.0 * 7168 * 2048;
    int n;
    struct row *row;
    char shape[72];
    mt_status_t st;

    st = mt_cpu_topo_query(&tp);
    if (st == MT_OK) {
        st = mt_cpu_level_select(&level);
    }
    if (st != MT_OK) {
        return st;
    }
    /* 64 experts (2.8 GB), at most 1/4 of DRAM; --quick: twice the LLC and a step more (16 at
       least), so each step's 8 still come from DRAM (every expert once before any repeats) */
    n = (int)MT_MIN(64.0, (double)tp.mem_bytes / 4 / per);
    if (b->o.quick) {
        n = MT_MIN(n, MT_MAX(16, (int)(2.0 * (double)tp.l3_bytes / per) + 9));
    }
    n = MT_MAX(n, 8);
    fprintf(stderr, "bench: cpu: FP8 experts (%s kernels), 8 of %d per step...\n",
            mt_cpu_level_name(level), n);
    st = mt_cpu_team_create(-1, 0, &team);
    if (st != MT_OK) {
        return st;
    }
    st = mt_cpu_moe_create(team, level, &moe);
    if (st == MT_OK) {
        st = mt_cpu_expert_pool_create(team, MT_DTYPE_F8_E4M3, n, 7168, 2048, &pool);
    }
    if (st == MT_OK) {
        st = mt_cpu_expert_pool_time(pool, moe, 0, 1, 8, 0, b->o.quick ? 4 : 10, &t);
    }
    if (st == MT_OK) {
        snprintf(shape, sizeof(shape), "fp8 %s, 8 x 7168x2048x3, %d thr",
                 mt_cpu_level_name(level), mt_cpu_team_size(team));
        row = add_row(b, "cpu", "experts_decode", shape, "");
        row->reps = b->o.quick ? 4 : 10;
        row->median_ms = t.median_s * 1e3;
        row->p90_ms = t.p90_s * 1e3;
        row->gbps = t.bytes / t.median_s * 1e-9;
        b->prof->cpu.expert_eff = MT_MIN(1.0, row->gbps / b->prof->cpu.read_ceiling_gbps);
        fprintf(stderr, "bench: cpu: experts %.1f GB/s, %.0f%% of the read ceiling\n", row->gbps,
                100.0 * b->prof->cpu.expert_eff);
    }
    if (st == MT_OK) {
        st = run_cpu_experts_prefill(b, pool, moe, level, mt_cpu_team_size(team),
                                     t.bytes / t.median_s * 1e-9);
    }
    mt_cpu_expert_pool_destroy(pool);
    mt_cpu_moe_destroy(moe);
    mt_cpu_team_destroy(team);
    return st;
}

static mt_status_t
run_cpu(struct bench *b)
{
    struct mt_cpu_isa isa;
    double seconds = b->o.quick ? 0.05 : 0.5;
    double gflops = 0.0;
    struct row *row;
    char shape[72];
    mt_status_t st;

    mt_cpu_isa_detect(&isa);
    fprintf(stderr, "bench: cpu: fp32 FMA rate on %d cores...\n", b->prof->cpu.cores);
    st = mt_cpu_fma_gflops(seconds, &gflops);
    if (st != MT_OK) {
        return st;
    }
    snprintf(shape, sizeof(shape), "fp32 %s, %d cores",
             isa.avx512f           ? "avx512"
             : isa.avx2 && isa.fma ? "avx2"
                                   : "scalar",
             b->prof->cpu.cores);
    row = add_row(b, "cpu", "fma", shape, "");
    row->tflops = gflops * 1e-3;
    b->prof->cpu.fma_gflops = gflops;
    fprintf(stderr, "bench: cpu: FMA %.0f GFLOP/s\n", gflops);
    if (isa.amx_bf16) {
        fprintf(stderr, "bench: cpu: AMX BF16 tile rate...\n");
        st = mt_cpu_amx_bf16_gflops(seconds, &gflops);
        if (st == MT_OK) {
            snprintf(shape, sizeof(shape), "bf16 tiles, %d cores", b->prof->cpu.cores);
            row = add_row(b, "cpu", "amx_bf16", shape, "");
            row->tflops = gflops * 1e-3;
            b->prof->cpu.amx_bf16_gflops = gflops;
            fprintf(stderr, "bench: cpu: AMX BF16 %.0f GFLOP/s\n", gflops);
        } else {
            mt_log_warn("AMX present but not usable: %s; skipped", mt_last_error());
        }
    } else {
        fprintf(stderr, "bench: cpu: no AMX-BF16 on this CPU: skipped\n");
    }
    /* the experts' efficiency is a share of the DRAM read ceiling: --only cpu measures the
       ceiling too (it skipped the experts without a word) */
    if (b->prof->cpu.read_ceiling_gbps == 0) {
        fprintf(stderr, "bench: cpu: the experts are timed against the DRAM read ceiling: "
                        "measuring it first\n");
        st = run_ceiling(b);
        if (st != MT_OK) {
            return st;
        }
    }
    return run_cpu_experts(b); /* --quick too: the automatic plan's profile needs them */
}

/* ---- disks -------------------------------------------------------------------------------- */

/* Progress from io/disk_bench: one table row and one stderr line per point. */
struct disk_ctx {
    struct bench *b;
    const char *path;
    struct mt_hw_disk *disk;
};

static void
disk_file_written(void *ctx, uint64_t bytes, double seconds, bool direct)
{
    (void)ctx;
    fprintf(stderr, "bench: disk: wrote %.2f GiB test file in %.1f s%s\n",
            (double)bytes / (1ull << 30), seconds, direct ? "" : " (buffered)");
}

static void
disk_point_done(void *ctx, const struct mt_io_disk_point *pt)
{
    struct disk_ctx *d = ctx;
    struct mt_hw_disk *disk = d->disk;
    char shape[72];
    char bs[24];
    char group[80];
    struct row *row;

    fmt_bytes(bs, sizeof(bs), pt->block_bytes);
    snprintf(shape, sizeof(shape), "%s qd%d %s%s", d->path, pt->qd, bs,
             pt->direct ? "" : " buffered");
    snprintf(group, sizeof(group), "disk:%s", d->path);
    row = add_row(d->b, "disk", "odirect_read", shape, group);
    row->reps = ONE_PASS;
    row->median_ms = pt->seconds * 1e3; /* one pass: the whole pass's time */
    row->p90_ms = pt->seconds * 1e3;
    row->gbps = pt->gbps;
    mt_log_line("bench: disk: %s qd %d block %s: %.2f GB/s%s", d->path, pt->qd, bs, pt->gbps,
                pt->direct ? "" : " (buffered: the filesystem refused O_DIRECT)");
    if (disk->n_points < MT_HWPROFILE_MAX_POINTS) {
        disk->points[disk->n_points++] = (struct mt_hw_disk_point){
            .qd = pt->qd, .block_bytes = pt->block_bytes, .gbps = pt->gbps};
    }
    if (pt->gbps > disk->best_gbps) {
        disk->best_gbps = pt->gbps;
        disk->best_qd = pt->qd;
        disk->best_block_bytes = pt->block_bytes;
    }
}

static mt_status_t
run_disk(struct bench *b)
{
    struct mt_io_disk_bench_opts o = {
        .file_bytes = b->o.disk_size,
        .pass_bytes = b->o.disk_pass,
        .qds = b->o.qds,
        .n_qd = b->o.n_qd,
        .blocks = b->o.blocks,
        .n_blocks = b->o.n_blocks,
    };

    for (int i = 0; i < b->o.n_disks; i++) {
        struct disk_ctx d = {b, b->o.disks[i], &b->prof->disks[i]};
        struct mt_io_disk_bench_cb cb = {disk_file_written, disk_point_done, &d};
        mt_status_t st;

        mt_log_line("bench: disk: %s...", b->o.disks[i]);
        snprintf(d.disk->path, sizeof(d.disk->path), "%s", b->o.disks[i]);
        st = mt_io_disk_bench_run(b->o.disks[i], &o, &cb);
        if (st != MT_OK) {
            return st;
        }
        b->prof->n_disks = i + 1;
    }
    return MT_OK;
}

/* ---- output ------------------------------------------------------------------------------- */

/*
 * What the header says of the medians: the bench's repetitions, then each kernel timed another
 * way ("median of 20 reps" was said of disk rows that are one pass, and of the read ceiling's 5).
 */
static void
reps_note(const struct bench *b, char *buf, size_t cap)
{
    size_t len = (size_t)snprintf(buf, cap, "median of %d reps", b->reps);

    for (int i = 0; i < b->n_rows && len < cap; i++) {
        const struct row *r = &b->rows[i];
        bool seen = false;

        for (int k = 0; k < i; k++) {
            seen = seen || strcmp(b->rows[k].kernel, r->kernel) == 0;
        }
        if (r->reps == 0 || r->reps == b->reps || seen) {
            continue;
        }
        if (r->reps == ONE_PASS) {
            len += (size_t)snprintf(buf + len, cap - len, ", %s: one pass a point", r->kernel);
        } else {
            len += (size_t)snprintf(buf + len, cap - len, ", %s: %d", r->kernel, r->reps);
        }
    }
}

/* s as one CSV field: quoted, with its quotes doubled (RFC 4180), so a --disk path with a comma
 * or a quote stays one field. */
static void
print_csv_field(const char *s)
{
    putchar('"');
    for (; *s != '\0'; s++) {
        if (*s == '"') {
            putchar('"');
        }
        putchar(*s);
    }
    putchar('"');
}

static void
print_table(struct bench *b)
{
    const struct mt_hwprofile *p = b->prof;
    char reps[256];

    reps_note(b, reps, sizeof(reps));
    printf("# moetier bench %s | %s | %s | %s, %d cores, %d NUMA node%s, %.0f GiB | %s | "
           "%s%s\n",
           PACKAGE_VERSION, p->host, p->date, p->cpu.model, p->cpu.cores, p->cpu.n_nodes,
           p->cpu.n_nodes == 1 ? "" : "s", (double)p->dram_bytes / (1ull << 30),
           b->gpu_note[0] ? b->gpu_note : "gpu not probed", reps,
           b->o.quick ? " (--quick: not a measurement)" : "");
    if (b->o.csv) {
        printf("tier,kernel,shape,median_ms,p90_ms,GB/s,TFLOP/s,%%peak\n");
    } else {
        printf("%-5s %-13s %-38s %10s %10s %9s %8s %6s\n", "tier", "kernel", "shape", "median_ms",
               "p90_ms", "GB/s", "TFLOP/s", "%peak");
    }
    for (int i = 0; i < b->n_rows; i++) {
        const struct row *r = &b->rows[i];
        double peak = 0.0;
        int in_group = 0;
        char gbps[24] = "-";
        char tflops[24] = "-";
        char pct[16] = "-";
        char med[24] = "-";
        char p90[24] = "-";

        for (int k = 0; k < b->n_rows; k++) {
            if (r->peak_group[0] && strcmp(b->rows[k].peak_group, r->peak_group) == 0) {
                peak = MT_MAX(peak, b->rows[k].gbps);
                in_group++;
            }
        }
        if (r->gbps > 0) {
            snprintf(gbps, sizeof(gbps), "%.2f", r->gbps);
        }
        if (r->tflops > 0) {
            snprintf(tflops, sizeof(tflops), "%.2f", r->tflops);
        }
        if (in_group > 1 && peak > 0) {
            snprintf(pct, sizeof(pct), "%.0f", 100.0 * r->gbps / peak);
        }
        if (r->median_ms > 0) {
            snprintf(med, sizeof(med), "%.4f", r->median_ms);
            snprintf(p90, sizeof(p90), "%.4f", r->p90_ms);
        }
        if (b->o.csv) {
            printf("%s,%s,", r->tier, r->kernel);
            print_csv_field(r->shape);
            printf(",%s,%s,%s,%s,%s\n", med, p90, gbps, tflops, pct);
        } else {
            printf("%-5s %-13s %-38s %10s %10s %9s %8s %6s\n", r->tier, r->kernel, r->shape, med,
                   p90, gbps, tflops, pct);
        }
    }
    if (!b->o.csv) {
        printf("# GB/s = 1e9 bytes/s; d2d_copy counts read + write; bidir counts both "
               "directions; triad counts 3 arrays; %%peak = share of the best in its group\n");
    }
}

static mt_status_t
write_svg(struct bench *b)
{
    const struct mt_hwprofile *p = b->prof;
    struct mt_svg_bar bars[64];
    char labels[64][96];
    char subtitle[320];
    char title[200];
    int n = 0;

#define BAR(grp, val, ...)                                                                         \
    do {                                                                                           \
        if (n < 64) {                                                                              \
            snprintf(labels[n], sizeof(labels[n]), __VA_ARGS__);                                   \
            bars[n] = (struct mt_svg_bar){labels[n], (grp), (val)};                                \
            n++;                                                                                   \
        }                                                                                          \
    } while (0)

    if (p->gpu.hbm_read_gbps > 0) {
        BAR("gpu", p->gpu.hbm_read_gbps, "GPU HBM read");
        BAR("gpu", p->gpu.copy_gbps, "GPU copy (read+write)");
    }
    if (p->pcie.h2d_gbps > 0) {
        char size[24];

        fmt_bytes(size, sizeof(size), p->pcie.large_bytes);
        BAR("pcie", p->pcie.h2d_gbps, "PCIe host to GPU (%s)", size);
        BAR("pcie", p->pcie.d2h_gbps, "PCIe GPU to host (%s)", size);
        BAR("pcie", p->pcie.bidir_gbps, "PCIe both ways at once");
        BAR("pcie", p->pcie.h2d_curve[0].gbps, "PCIe host to GPU (64 KiB)");
    }
    for (int i = 0; i < p->cpu.n_nodes; i++) {
        BAR("dram", p->cpu.nodes[i].read_gbps, "DRAM read, node %d", p->cpu.nodes[i].id);
        BAR("dram", p->cpu.nodes[i].triad_gbps, "DRAM triad, node %d", p->cpu.nodes[i].id);
    }
    if (p->cpu.read_ceiling_gbps > 0) {
        BAR("dram", p->cpu.read_ceiling_gbps, "DRAM read ceiling (vector, all nodes)");
    }
    if (p->cpu.n_nodes > 1) {
        BAR("dram", p->cpu.read_gbps, "DRAM read, all nodes");
        BAR("dram", p->cpu.triad_gbps, "DRAM triad, all nodes");
    }
    for (int i = 0; i < p->n_disks; i++) {
        char bs[24];

        fmt_bytes(bs, sizeof(bs), p->disks[i].best_block_bytes);
        BAR("disk", p->disks[i].best_gbps, "disk %.24s, qd%d %s", p->disks[i].path,
            p->disks[i].best_qd, bs);
    }
#undef BAR
    if (n == 0) {
        mt_log_warn("no bandwidth measured: no chart written to '%s'", b->o.svg);
        return MT_OK;
    }
    snprintf(title, sizeof(title), "Memory tiers of %s (moetier bench)", p->host);
    snprintf(subtitle, sizeof(subtitle), "%s%s%s | %d cores | %s",
             p->gpu.present ? p->gpu.name : "", p->gpu.present ? " | " : "", p->cpu.model,
             p->cpu.cores, p->date);
    return mt_svg_bars_write(b->o.svg, title, subtitle, "GB/s (1e9 bytes per second)", bars, n);
}

/* ---- options and main --------------------------------------------------------------------- */

static bool
parse_parts(const char *s, unsigned *out)
{
    char buf[128];
    char *save = NULL;
    unsigned parts = 0;

    if ((size_t)snprintf(buf, sizeof(buf), "%s", s) >= sizeof(buf)) {
        mt_cli_error(&cli, "--only '%.40s...' is too long (gpu, pcie, dram, cpu, disk)", s);
        return false;
    }
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (strcmp(tok, "gpu") == 0) {
            parts |= PART_GPU;
        } else if (strcmp(tok, "pcie") == 0) {
            parts |= PART_PCIE;
        } else if (strcmp(tok, "dram") == 0) {
            parts |= PART_DRAM;
        } else if (strcmp(tok, "cpu") == 0) {
            parts |= PART_CPU;
        } else if (strcmp(tok, "disk") == 0) {
            parts |= PART_DISK;
        } else {
            mt_cli_error(&cli, "unknown part '%s' (gpu, pcie, dram, cpu, disk)", tok);
            return false;
        }
    }
    if (parts == 0) {
        mt_cli_error(&cli, "--only wants at least one part (gpu, pcie, dram, cpu, disk)");
        return false;
    }
    *out = parts;
    return true;
}

/* A size in whole 4 KiB units: O_DIRECT reads and the stream arrays need the alignment. */
static bool
parse_aligned_size(const char *flag, const char *s, uint64_t *out)
{
    if (!mt_cli_parse_size(&cli, flag, "4G, 512M", s, out)) {
        return false;
    }
    if (*out == 0 || *out % MT_IO_ALIGN != 0) {
        mt_cli_error(&cli, "%s must be a positive multiple of 4 KiB, got '%s'", flag, s);
        return false;
    }
    return true;
}

/*
 * --disk-qd "1,4,16" -> queue depths, or --disk-block "1M,4M" -> block sizes (multiples of 4 KiB,
 * at most 1 GiB), at most cap of them. Prints what is wrong.
 */
static bool
parse_list(const char *flag, const char *s, int *qds, uint64_t *blocks, int cap, int *n_out)
{
    char buf[128];
    char *save = NULL;
    int n = 0;

    if ((size_t)snprintf(buf, sizeof(buf), "%s", s) >= sizeof(buf)) {
        mt_cli_error(&cli, "%s '%.40s...' is too long: at most %d values", flag, s, cap);
        return false;
    }
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (n == cap) {
            n = 0;
            break;
        }
        if (blocks == NULL) {
            if (!mt_cli_parse_int(&cli, flag, tok, 1, 4096, &qds[n])) {
                return false;
            }
        } else {
            if (!mt_cli_parse_size(&cli, flag, "1M", tok, &blocks[n])) {
                return false;
            }
            if (blocks[n] == 0 || blocks[n] % MT_IO_ALIGN != 0 || blocks[n] > (1u << 30)) {
                n = 0;
                break;
            }
        }
        n++;
    }
    if (n == 0) {
        if (blocks == NULL) {
            mt_cli_error(&cli, "%s wants up to %d depths in 1..4096, e.g. 1,4,16,64", flag, cap);
        } else {
            mt_cli_error(&cli, "%s wants up to %d sizes, multiples of 4K up to 1G, e.g. 1M,4M",
                         flag, cap);
        }
        return false;
    }
    *n_out = n;
    return true;
}

/*
 * A --disk path as the disk part will take it: a directory (for a test file) or a regular file
 * of at least one block of each --disk-block. Prints what is wrong. The block sizes are final
 * here: --disk-block may come after --disk.
 */
static bool
check_disk_path(const char *path, const uint64_t *blocks, int n_blocks)
{
    struct stat sb;

    if (stat(path, &sb) != 0) {
        mt_cli_error(&cli,
                     "cannot use --disk '%s': %s (give an existing file, or a directory "
                     "to write a test file in)",
                     path, strerror(errno));
        return false;
    }
    if (S_ISDIR(sb.st_mode)) {
        return true;
    }
    if (!S_ISREG(sb.st_mode)) {
        mt_cli_error(&cli,
                     "--disk '%s' is neither a file nor a directory (give a file on the "
                     "disk to measure, or a directory to write a test file in)",
                     path);
        return false;
    }
    for (int i = 0; i < n_blocks; i++) {
        if ((uint64_t)sb.st_size < blocks[i]) {
            mt_cli_error(&cli,
                         "--disk '%s' (%" PRIu64 " bytes) is smaller than one %" PRIu64
                         "-byte block (give a larger file, a directory, or --disk-block a "
                         "smaller size)",
                         path, (uint64_t)sb.st_size, blocks[i]);
            return false;
        }
    }
    return true;
}

static int
parse_opts(int argc, char **argv, struct bench_opts *o)
{
    enum {
        OPT_ONLY = 256,
        OPT_DISK,
        OPT_DISK_SIZE,
        OPT_DISK_PASS,
        OPT_QD,
        OPT_BLOCK,
        OPT_DRAM_SIZE,
        OPT_DEVICE,
        OPT_QUICK,
        OPT_JSON,
        OPT_SVG,
        OPT_CSV
    };
    static const struct option longopts[] = {
        {"only", required_argument, NULL, OPT_ONLY},
        {"disk", required_argument, NULL, OPT_DISK},
        {"disk-size", required_argument, NULL, OPT_DISK_SIZE},
        {"disk-pass", required_argument, NULL, OPT_DISK_PASS},
        {"disk-qd", required_argument, NULL, OPT_QD},
        {"disk-block", required_argument, NULL, OPT_BLOCK},
        {"dram-size", required_argument, NULL, OPT_DRAM_SIZE},
        {"device", required_argument, NULL, OPT_DEVICE},
        {"quick", no_argument, NULL, OPT_QUICK},
        {"json", required_argument, NULL, OPT_JSON},
        {"svg", required_argument, NULL, OPT_SVG},
        {"csv", no_argument, NULL, OPT_CSV},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool size_given = false;
    int c;

    memset(o, 0, sizeof(*o));
    o->parts = PART_ALL;
    o->disk_size = 4ull << 30;
    o->qds[0] = 1, o->qds[1] = 4, o->qds[2] = 16, o->qds[3] = 64;
    o->n_qd = 4;
    o->blocks[0] = 1u << 20, o->blocks[1] = 4u << 20;
    o->n_blocks = 2;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_ONLY:
            if (!parse_parts(optarg, &o->parts)) {
                return 2;
            }
            break;
        case OPT_DISK:
            if (o->n_disks == MT_HWPROFILE_MAX_DISKS) {
                mt_cli_error(&cli, "at most %d --disk paths", MT_HWPROFILE_MAX_DISKS);
                return 2;
            }
            o->disks[o->n_disks++] = optarg;
            break;
        case OPT_DISK_SIZE:
            if (!parse_aligned_size("--disk-size", optarg, &o->disk_size)) {
                return 2;
            }
            size_given = true;
            break;
        case OPT_DISK_PASS:
            if (!parse_aligned_size("--disk-pass", optarg, &o->disk_pass)) {
                return 2;
            }
            break;
        case OPT_DRAM_SIZE:
            if (!parse_aligned_size("--dram-size", optarg, &o->dram_bytes)) {
                return 2;
            }
            break;
        case OPT_QD:
            if (!parse_list("--disk-qd", optarg, o->qds, NULL, MAX_QD, &o->n_qd)) {
                return 2;
            }
            break;
        case OPT_BLOCK:
            if (!parse_list("--disk-block", optarg, NULL, o->blocks, MAX_BLOCKS, &o->n_blocks)) {
                return 2;
            }
            break;
        case OPT_DEVICE:
            if (!mt_cli_parse_int(&cli, "--device", optarg, 0, INT_MAX, &o->device)) {
                return 2;
            }
            break;
        case OPT_QUICK:
            o->quick = true;
            break;
        case OPT_JSON:
            o->json = optarg;
            break;
        case OPT_SVG:
            o->svg = optarg;
            break;
        case OPT_CSV:
            o->csv = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return mt_cli_bad_option(&cli, c, argv);
        }
    }
    if (optind < argc) {
        return mt_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
    }
    /* the disk part measures the disks named (a whole bench without one skips it) */
    if ((o->parts & PART_DISK) && o->parts != PART_ALL && o->n_disks == 0) {
        return mt_cli_usage_error(&cli, "--only disk needs --disk PATH (a file or directory on "
                                        "the disk to measure)");
    }
    /* An output over an input (a disk test file) or over the other output would destroy it. */
    if (mt_cli_outputs_clash(&cli, "--json", o->json, "--svg", o->svg)) {
        return 2;
    }
    for (int i = 0; i < o->n_disks; i++) {
        if (mt_cli_output_is_input(&cli, "--json", o->json, "--disk", o->disks[i]) ||
            mt_cli_output_is_input(&cli, "--svg", o->svg, "--disk", o->disks[i])) {
            return 2;
        }
    }
    /* each --disk now, not after the dram and cpu parts have run for minutes */
    for (int i = 0; i < o->n_disks && (o->parts & PART_DISK); i++) {
        if (!check_disk_path(o->disks[i], o->blocks, o->n_blocks)) {
            return 1;
        }
    }
    /* checked now, not found unwritable after the whole measurement */
    if ((o->json != NULL && !mt_cli_check_output(&cli, "--json", o->json)) ||
        (o->svg != NULL && !mt_cli_check_output(&cli, "--svg", o->svg))) {
        return 1;
    }
    /* flags that would change nothing are said to, not dropped without a word */
    if (o->n_disks > 0 && !(o->parts & PART_DISK)) {
        mt_log_warn("bench: --disk is not used: --only has no disk part (add disk to --only)");
    }
    if (size_given && (o->parts & PART_DISK)) {
        bool any_dir = false;
        struct stat sb;

        for (int i = 0; i < o->n_disks; i++) {
            any_dir = any_dir || (stat(o->disks[i], &sb) == 0 && S_ISDIR(sb.st_mode));
        }
        if (!any_dir) {
            mt_log_warn("bench: --disk-size is not used: it sizes the test file written in a "
                        "--disk directory, and no --disk is one (a file is read as it is)");
        }
    }
    if (o->quick && !size_given) {
        o->disk_size = 64u << 20;
    }
    for (int i = 0; i < o->n_blocks; i++) {
        if (o->disk_size < o->blocks[i]) {
            if (!size_given) {
                o->disk_size = o->blocks[i]; /* --quick with large blocks */
                continue;
            }
            mt_cli_error(&cli,
                         "--disk-size %" PRIu64 " KiB is smaller than the --disk-block %" PRIu64
                         " KiB: the test file must hold at least one block",
                         o->disk_size >> 10, o->blocks[i] >> 10);
            return 2;
        }
    }
    return -1;
}

/* The profile's identity, capacities and ISA flags: cheap, so always in the profile. */
static void
profile_begin(struct bench *b)
{
    struct mt_cpu_topo tp;
    struct mt_cpu_isa isa;
    struct tm tm;
    time_t now = time(NULL);

    b->reps = b->o.quick ? 3 : 20;
    mt_hwprofile_init(b->prof);
    snprintf(b->prof->source, sizeof(b->prof->source), "moetier bench %s%s", PACKAGE_VERSION,
             b->o.quick ? " --quick" : "");
    gethostname(b->prof->host, sizeof(b->prof->host) - 1);
    gmtime_r(&now, &tm);
    strftime(b->prof->date, sizeof(b->prof->date), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (mt_cpu_topo_query(&tp) == MT_OK) {
        snprintf(b->prof->cpu.model, sizeof(b->prof->cpu.model), "%s", tp.model);
        b->prof->cpu.cores = tp.cores;
        b->prof->cpu.threads = tp.threads;
        b->prof->cpu.n_nodes = MT_MIN(tp.n_nodes, MT_HWPROFILE_MAX_NODES);
        b->prof->dram_bytes = tp.mem_bytes;
        for (int i = 0; i < b->prof->cpu.n_nodes; i++) {
            b->prof->cpu.nodes[i].id = tp.node_id[i];
            b->prof->cpu.nodes[i].cores = tp.node_cores[i];
            b->prof->cpu.nodes[i].mem_bytes = tp.node_mem[i];
        }
    }
    mt_cpu_isa_detect(&isa);
    b->prof->cpu.isa =
        (isa.avx2 ? MT_HW_ISA_AVX2 : 0) | (isa.fma ? MT_HW_ISA_FMA : 0) |
        (isa.avx512f ? MT_HW_ISA_AVX512F : 0) | (isa.avx512bw ? MT_HW_ISA_AVX512BW : 0) |
        (isa.avx512_bf16 ? MT_HW_ISA_AVX512_BF16 : 0) |
        (isa.avx512_fp16 ? MT_HW_ISA_AVX512_FP16 : 0) |
        (isa.avx512_vnni ? MT_HW_ISA_AVX512_VNNI : 0) | (isa.amx_tile ? MT_HW_ISA_AMX_TILE : 0) |
        (isa.amx_bf16 ? MT_HW_ISA_AMX_BF16 : 0) | (isa.amx_int8 ? MT_HW_ISA_AMX_INT8 : 0) |
        (isa.amx_fp16 ? MT_HW_ISA_AMX_FP16 : 0);
}

/* Every part b->o asks for, in order; the first failure stops them (its message is logged). */
static mt_status_t
run_parts(struct bench *b)
{
    bool have_gpu = false;
    mt_status_t st = MT_OK;

    if (b->o.parts & (PART_GPU | PART_PCIE)) {
        have_gpu = gpu_present(b);
        if (!have_gpu && (b->o.parts & ~(PART_GPU | PART_PCIE)) == 0) {
            /* nothing asked for can run: a profile of zeros would only mislead a plan */
            return mt_fail(MT_ERR_UNSUPPORTED, 0,
                           "bench: --only %s needs a GPU: %s",
                           b->o.parts == PART_GPU    ? "gpu"
                           : b->o.parts == PART_PCIE ? "pcie"
                                                     : "gpu,pcie",
                           b->gpu_note);
        }
        if (!have_gpu) {
            fprintf(stderr, "bench: note: %s\n", b->gpu_note);
        }
    }
    if (have_gpu && (b->o.parts & PART_GPU)) {
        st = run_gpu(b);
    }
    if (st == MT_OK && have_gpu && (b->o.parts & PART_PCIE)) {
        st = run_pcie(b);
    }
    if (st == MT_OK && (b->o.parts & PART_DRAM)) {
        st = run_dram(b);
    }
    if (st == MT_OK && (b->o.parts & PART_CPU)) {
        st = run_cpu(b);
    }
    if (st == MT_OK && (b->o.parts & PART_DISK)) {
        st = run_disk(b);
    }
    return st;
}

mt_status_t
mt_cli_bench_quick_profile(const char *disk, const char *spare_dir, struct mt_hwprofile *out,
                           bool *disk_failed)
{
    struct bench *b;
    struct stat sb;
    mt_status_t st;

    *disk_failed = false;

    b = calloc(1, sizeof(*b));
    if (b == NULL || (b->prof = calloc(1, sizeof(*b->prof))) == NULL) {
        free(b);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the quick benchmark");
    }
    /* `moetier bench --quick --disk DISK`, but the disk measured at one point (qd 16, 1 MiB
       blocks) instead of its grid of 4 queue depths x 2 block sizes: the planner takes only
       the best rate */
    b->o.parts = PART_ALL & ~PART_DISK; /* the disk on its own, below */
    b->o.quick = true;
    b->o.disk_size = 64u << 20;
    b->o.disk_pass = 64u << 20;
    b->o.qds[0] = 16, b->o.n_qd = 1;
    b->o.blocks[0] = 1u << 20, b->o.n_blocks = 1;
    /* A file shorter than the pass (a small model's first shard: 3.7 MB is ~4 reads, which
       gave 0.2-2.3 GB/s, cached and then used for full models' plans; under 1 MiB it failed the
       profile with a hint to a flag run and plan lack) says little about the disk: a test file
       in spare_dir (the cache's directory) is measured instead, or no disk at all */
    if (disk != NULL && stat(disk, &sb) == 0 && S_ISREG(sb.st_mode) &&
        (uint64_t)sb.st_size < b->o.disk_pass) {
        if (spare_dir != NULL) {
            fprintf(stderr,
                    "mt: '%s' is too small to time the disk (%" PRIu64 " bytes, under "
                    "%" PRIu64 "): measuring a test file in '%s' instead\n",
                    disk, (uint64_t)sb.st_size, b->o.disk_pass, spare_dir);
        } else {
            mt_log_warn("'%s' is too small to time the disk (%" PRIu64 " bytes, under %" PRIu64
                        ") and there is no cache directory for a test file: the profile has "
                        "no disk rate, and plans stream no experts (give --hw PROFILE from "
                        "moetier bench --disk DIR)",
                        disk, (uint64_t)sb.st_size, b->o.disk_pass);
        }
        disk = spare_dir;
    }
    profile_begin(b);
    st = run_parts(b);
    /* The disk last, and on its own: a test file that cannot be written (a full or read-only
       cache directory) or a disk that cannot be read costs the profile its disk rate, not the
       run that asked for it; the caller does not cache such a profile */
    if (st == MT_OK && disk != NULL) {
        b->o.disks[b->o.n_disks++] = disk;
        mt_log_set_quiet(true);
        mt_status_t disk_st = run_disk(b);
        mt_log_set_quiet(false);
        if (disk_st != MT_OK) {
            mt_log_warn("the disk could not be timed: %s; this profile has no disk rate, so "
                        "plans stream no experts (give --hw PROFILE from moetier bench --disk "
                        "DIR)", mt_last_error());
            b->prof->n_disks = 0;
            *disk_failed = true;
        }
    }
    if (st == MT_OK) {
        *out = *b->prof;
    }
    free(b->prof);
    free(b);
    return st;
}

int
mt_cli_bench(int argc, char **argv)
{
    struct bench *b;
    mt_status_t st = MT_OK;
    int rc;

    b = calloc(1, sizeof(*b));
    if (b == NULL || (b->prof = calloc(1, sizeof(*b->prof))) == NULL) {
        mt_cli_error(&cli, "out of memory");
        free(b);
        return 1;
    }
    rc = parse_opts(argc, argv, &b->o);
    if (rc >= 0) {
        goto out_free;
    }
    rc = 1;
    profile_begin(b);
    st = run_parts(b);
    if (st != MT_OK) {
        mt_cli_error(&cli, "stopped by the error above; no profile written");
        goto out_free;
    }
    print_table(b);
    if (b->o.json != NULL && mt_hwprofile_save(b->prof, b->o.json) != MT_OK) {
        goto out_free;
    }
    if (b->o.svg != NULL && write_svg(b) != MT_OK) {
        goto out_free;
    }
    rc = 0;

out_free:
    free(b->prof);
    free(b);
    return rc;
}
