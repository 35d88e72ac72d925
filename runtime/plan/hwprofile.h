/* SPDX-License-Identifier: MIT */
/*
 * hwprofile.h - a machine's memory tiers as numbers: what `moetier bench` measures and what the
 * placement planner reads.
 *
 * One idea: every bandwidth is decimal GB/s (1e9 bytes per second) of payload moved, every
 * capacity is bytes, and 0 means "unknown / not measured / absent". A profile measured by
 * `moetier bench --json` and a hand-written what-if file for a machine one does not have (a 4090
 * with 2x Xeon, say) are the same format: the planner must not care which it got, except to
 * print `source`. Absent JSON keys load as 0, so a what-if file names only what it knows.
 *
 * The JSON (version 1) mirrors the structs below key for key:
 *   { "version": 1, "source": "...", "host": "...", "date": "2026-11-28T14:00:00Z",
 *     "dram_bytes": N,
 *     "gpu":  { "present": true, "name": "...", "count": 1, "mem_bytes": N, "sm_count": N,
 *               "hbm_read_gbps": x, "copy_gbps": x, "bf16_tflops": x },
 *     "pcie": { "h2d_gbps": x, "d2h_gbps": x, "bidir_gbps": x, "large_bytes": N,
 *               "h2d_curve": [[bytes, gbps], ...], "d2h_curve": [[bytes, gbps], ...] },
 *     "cpu":  { "model": "...", "cores": N, "threads": N, "numa_nodes": N,
 *               "read_gbps": x, "triad_gbps": x, "fma_gflops": x, "amx_bf16_gflops": x,
 *               "read_ceiling_gbps": x, "expert_eff": x,   (both optional: 0 when absent)
 *               "expert_prefill_gbps": x, "expert_prefill_gflops": x,   (optional, likewise)
 *               "isa": ["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", ...],
 *               "nodes": [ { "id": 0, "cores": N, "mem_bytes": N,
 *                            "read_gbps": x, "triad_gbps": x }, ... ] },
 *     "disks": [ { "path": "/nvme0", "best_gbps": x, "best_qd": N, "best_block_bytes": N,
 *                  "points": [ { "qd": 1, "block_bytes": 1048576, "gbps": x }, ... ] }, ... ],
 *     "learned": { "reports": N, "cpu_expert_eff": x, "disk_eff": x, "gpu_eff": x,
 *                  "cpu_prefill_eff": x, "gpu_prefill_eff": x, "host_layer_ms": x,
 *                  "from": "report.json" } }
 *                  (optional: struct mt_hw_learned)
 * Loading rejects a missing or different "version", unknown keys (typos in what-if files), wrong
 * types, negative numbers, numbers above 1e9 (no rate is near it), rates and efficiencies
 * between 0 (not measured) and MT_HW_RATE_MIN, a cpu.expert_eff above 1, learned efficiencies
 * above MT_HW_LEARNED_EFF_MAX, a "learned" section with values but no "reports", and a disk
 * whose best_gbps is not its best point's, with one message naming the file and the key. A
 * "gpu" object
 * without "present" is present when any of its other fields is non-zero (or the name non-empty).
 */
#ifndef MT_HWPROFILE_H
#define MT_HWPROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/base/status.h"

#define MT_HWPROFILE_VERSION 1
#define MT_HWPROFILE_MAX_NODES 16 /* NUMA nodes */
#define MT_HWPROFILE_MAX_DISKS 16
#define MT_HWPROFILE_MAX_CURVE 16  /* transfer-size points per PCIe direction */
#define MT_HWPROFILE_MAX_POINTS 32 /* (queue depth, block size) points per disk */

/* CPU instruction-set flags (cpu.isa); JSON spells them as the lowercase names in comments. */
enum mt_hw_isa {
    MT_HW_ISA_AVX2 = 1u << 0,        /* "avx2" */
    MT_HW_ISA_FMA = 1u << 1,         /* "fma" */
    MT_HW_ISA_AVX512F = 1u << 2,     /* "avx512f" */
    MT_HW_ISA_AVX512BW = 1u << 3,    /* "avx512bw" */
    MT_HW_ISA_AVX512_BF16 = 1u << 4, /* "avx512_bf16" */
    MT_HW_ISA_AVX512_FP16 = 1u << 5, /* "avx512_fp16" */
    MT_HW_ISA_AVX512_VNNI = 1u << 6, /* "avx512_vnni" */
    MT_HW_ISA_AMX_TILE = 1u << 7,    /* "amx_tile" */
    MT_HW_ISA_AMX_BF16 = 1u << 8,    /* "amx_bf16" */
    MT_HW_ISA_AMX_INT8 = 1u << 9,    /* "amx_int8" */
    MT_HW_ISA_AMX_FP16 = 1u << 10,   /* "amx_fp16" */
};

/* One point of a bandwidth-versus-transfer-size curve. */
struct mt_hw_curve_point {
    uint64_t bytes; /* one transfer's size */
    double gbps;
};

/* The GPU experts and always-on weights live on (device 0). */
struct mt_hw_gpu {
    bool present;         /* false: no GPU (CPU-only machine); the rest is 0 */
    char name[128];       /* "NVIDIA H200" */
    int count;            /* identical GPUs on the host (the numbers below are for one) */
    uint64_t mem_bytes;   /* device memory of one GPU */
    int sm_count;         /* streaming multiprocessors */
    double hbm_read_gbps; /* streaming read of a buffer much larger than L2 */
    double copy_gbps;     /* device-to-device cudaMemcpy, bytes read + bytes written per second */
    double bf16_tflops;   /* dense BF16 GEMM rate (cuBLAS), 0 if not measured */
};

/* The host<->GPU link, pinned host memory, cudaMemcpyAsync. */
struct mt_hw_pcie {
    double h2d_gbps;      /* host to device at large_bytes */
    double d2h_gbps;      /* device to host at large_bytes */
    double bidir_gbps;    /* both directions at once on two streams, sum of the two */
    uint64_t large_bytes; /* transfer size the three numbers above were taken at */
    int n_h2d;            /* points used in h2d_curve, ascending bytes */
    struct mt_hw_curve_point h2d_curve[MT_HWPROFILE_MAX_CURVE];
    int n_d2h;
    struct mt_hw_curve_point d2h_curve[MT_HWPROFILE_MAX_CURVE];
};

/* One NUMA node: its cores reading their local memory. */
struct mt_hw_numa_node {
    int id;             /* OS index of the node */
    int cores;          /* physical cores on the node */
    uint64_t mem_bytes; /* DRAM attached to the node */
    double read_gbps;   /* read-only sweep, one pinned thread per core of this node */
    double triad_gbps;  /* a[i] = b[i] + s * c[i], counted as 3 arrays moved (no write-allocate) */
};

struct mt_hw_cpu {
    char model[128]; /* "Intel(R) Xeon(R) Platinum 8480+" */
    int cores;       /* physical cores, all sockets */
    int threads;     /* hardware threads (PUs) */
    int n_nodes;     /* NUMA nodes used below (1 on a non-NUMA machine) */
    struct mt_hw_numa_node nodes[MT_HWPROFILE_MAX_NODES];
    double read_gbps;       /* all nodes at once, each thread on its own node's memory */
    double read_ceiling_gbps; /* best read any kernel gets: vector loads, several streams per
                               * core, working set far beyond the LLC; 0 if not measured */
    double expert_eff;      /* CPU expert kernels (decode, FP8) as a fraction of
                             * read_ceiling_gbps; 0 if not measured */
    /*
     * The CPU expert kernels in prefill (FP8, V3.2 shape), fitted to two batch sizes as a time
     * per expert run of bytes / gbps (reading and converting its weights once) plus FLOPs /
     * gflops (the products of its tokens): at the few tokens an expert gets in a prompt chunk
     * the first term dominates, which a FLOP rate alone misses by 6-14x. 0 if not measured.
     */
    double expert_prefill_gbps;
    double expert_prefill_gflops;
    double triad_gbps;      /* likewise for triad */
    double fma_gflops;      /* fp32 FMA rate of all cores (2 flops per FMA lane) */
    double amx_bf16_gflops; /* AMX BF16 tile rate of all cores, 0 if absent */
    unsigned isa;           /* MT_HW_ISA_* bits */
};

/* One (queue depth, block size) O_DIRECT read measurement through io_uring. */
struct mt_hw_disk_point {
    int qd;               /* reads in flight */
    uint64_t block_bytes; /* size of each read */
    double gbps;
};

/* A drive (or the filesystem a path is on) that experts may be streamed from. */
struct mt_hw_disk {
    char path[256];   /* path benchmarked (the directory or file given to --disk) */
    double best_gbps; /* best of the points */
    int best_qd;      /* where the best was reached */
    uint64_t best_block_bytes;
    int n_points;
    struct mt_hw_disk_point points[MT_HWPROFILE_MAX_POINTS];
};

/*
 * What real runs measured (moetier plan --learn REPORT.json, from moetier run --json): each an
 * efficiency over one of the rates above as the plan used them, replacing the planner's
 * assumption for that source. 0: not learned. Absent from a profile that never learned
 * (older profiles load unchanged, and a profile without it is written without it).
 */
/* The largest learned efficiency a profile holds: a ratio to the ceiling the same profile
 * measured, which the real kernels may beat (a quick read sweep is not the machine's best). */
#define MT_HW_LEARNED_EFF_MAX 2.0
/* The smallest non-zero rate (GB/s, GFLOP/s, TFLOPS) or efficiency a profile holds: 1 KB/s.
 * 0 stays "not measured"; below this a plan divides by next to nothing (1e-300 GB/s planned
 * "0.00 tok/s" at a 300-digit ms/token). */
#define MT_HW_RATE_MIN 1e-6

struct mt_hw_learned {
    int reports;           /* run reports the numbers below average; 0: the section is absent */
    double cpu_expert_eff; /* CPU expert weight reads over the DRAM rate (like cpu.expert_eff) */
    double disk_eff;       /* streamed expert reads over the disks' best_gbps sum */
    double gpu_eff;        /* GPU weight reads (experts and always-on) over hbm_read_gbps */
    double cpu_prefill_eff; /* the CPU's expert runs in prefill: the time cpu.expert_prefill_*
                             * gives them over the time they took (both rates scale by it) */
    double gpu_prefill_eff; /* the GPU engine's prompt FLOPs (planner.h mt_plan_gpu_prompt_flops,
                             * MT_PLAN_GPU_PASSES each) a second over gpu.bf16_tflops */
    double host_layer_ms;  /* the GPU engine's extra time per MoE layer that waits on the host
                            * (mt_plan_problem.host_layer_s): decode time measured less the
                            * plan's own prediction at the learned rates, per such layer */
    char from[256];        /* the last report learned from */
};

struct mt_hwprofile {
    int version;         /* MT_HWPROFILE_VERSION */
    char source[256];    /* "moetier bench 0.1.0" or "what-if: RTX 4090 + 2x Xeon 8480" */
    char host[128];      /* hostname where measured ("" for what-if) */
    char date[32];       /* ISO 8601 UTC of the measurement ("" for what-if) */
    uint64_t dram_bytes; /* total host DRAM */
    struct mt_hw_gpu gpu;
    struct mt_hw_pcie pcie;
    struct mt_hw_cpu cpu;
    int n_disks;
    struct mt_hw_disk disks[MT_HWPROFILE_MAX_DISKS];
    struct mt_hw_learned learned;
    char file[512];      /* not in the JSON: the file it was loaded from, "" when made in memory;
                          * messages about the profile name this (source is free text) */
};

/* Zero *p and set version = MT_HWPROFILE_VERSION. Cannot fail. */
void mt_hwprofile_init(struct mt_hwprofile *p);

/*
 * Write p as JSON (format above) to path, replacing it.
 * MT_ERR_IO when the file cannot be written, MT_ERR_INVAL when p->version is not current.
 */
mt_status_t mt_hwprofile_save(const struct mt_hwprofile *p, const char *path);

/*
 * Read a profile from path into *p_out (set only on success; p_out->file is path).
 * MT_ERR_IO: cannot open/read. MT_ERR_FORMAT: not JSON, no "version", another version, an unknown
 * key, a wrong type, a negative number or one above 1e9; the message names the file and the key.
 */
mt_status_t mt_hwprofile_load(const char *path, struct mt_hwprofile *p_out);

/* Same, from JSON text (NUL-terminated); `what` names the text in messages. */
mt_status_t mt_hwprofile_parse(const char *text, const char *what, struct mt_hwprofile *p_out);

/* ---- the profile cache: one measured profile per host, reused by run/chat/serve/plan ------- */

/*
 * The directory moetier caches measured profiles in: $MOETIER_CACHE_DIR, else
 * $XDG_CACHE_HOME/moetier, else $HOME/.cache/moetier (empty variables count as unset). Written
 * into buf (size bytes). MT_ERR_INVAL when none of the three is set or the path does not fit,
 * with a hint to set MOETIER_CACHE_DIR. Creates nothing.
 */
mt_status_t mt_hwprofile_cache_dir(char *buf, size_t size);

/* mt_hwprofile_cache_dir, then create it (mode 0755, as mkdir -p). MT_ERR_IO naming it. */
mt_status_t mt_hwprofile_cache_dir_make(char *buf, size_t size);

/*
 * The cached profile of this host: <cache dir>/profile-<hostname>.json (a hostname with a '/'
 * or none at all becomes "localhost"). Errors as mt_hwprofile_cache_dir.
 */
mt_status_t mt_hwprofile_cache_path(char *buf, size_t size);

/*
 * Save p at path (as mt_hwprofile_save: written whole or not at all), first creating the
 * directories on the way to it (mode 0755, as mkdir -p). MT_ERR_IO naming the directory that
 * cannot be created, or the file.
 */
mt_status_t mt_hwprofile_cache_save(const struct mt_hwprofile *p, const char *path);

/* Sum of best_gbps over all disks: what striping experts over every drive could give. */
double mt_hwprofile_disk_total_gbps(const struct mt_hwprofile *p);

/* Name of one MT_HW_ISA_* bit ("avx512f"), NULL for an unknown bit. */
const char *mt_hw_isa_name(unsigned bit);

/*
 * The CPU's expert runs in prefill (cpu.expert_prefill_gbps and _gflops) from one step of
 * experts timed at m1 < m2 tokens each (s1, s2 seconds; `bytes` the step's weights, `flops` its
 * products a token): fixed + m x per-token through both points, the fixed part as the weights'
 * GB/s, the per-token part as GFLOP/s. Where the smaller batch is already bound by the products
 * (the line crosses zero: a CPU without AMX, whose FMA kernels spend as long a token at 32 tokens
 * as at 256), the fixed part is the weights read at the decode kernels' rate (decode_gbps, 0:
 * none) and the products the rest of the larger batch. false where no positive pair comes out
 * (noise on a busy machine, or no decode rate for the products-bound case).
 */
bool mt_hw_fit_expert_prefill(double s1, int m1, double s2, int m2, double bytes, double flops,
                              double decode_gbps, double *gbps, double *gflops);

#endif /* MT_HWPROFILE_H */
