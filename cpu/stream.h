/* SPDX-License-Identifier: MIT */
/*
 * stream.h - how fast this machine's cores read DRAM and do arithmetic: the CPU tier of
 * `moetier bench`.
 *
 * The one idea: a CPU expert kernel is bound by the DRAM bandwidth of the NUMA node its weights
 * live on, read by threads pinned to that node's cores. So we measure exactly that: one OpenMP
 * thread per physical core, each pinned (hwloc) to its core, each working on the slice of the
 * arrays that it touched first (so the kernel places those pages on its node), per node and on
 * all nodes at once. Kernels: a read-only sum (what a GEMV does to its weights) and the STREAM
 * triad a[i] = b[i] + s * c[i], counted as 3 arrays moved (no write-allocate traffic). The
 * compute side is the fp32 FMA rate (AVX-512, else AVX2, else scalar) and the AMX BF16 tile
 * rate where the CPU and kernel allow AMX. ISA flags come from cpuid and XCR0 (the OS must have
 * enabled the register state, not just the CPU have the unit).
 */
#ifndef MT_CPU_STREAM_H
#define MT_CPU_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/base/status.h"

#define MT_CPU_MAX_NODES 16

/* Instruction sets usable here: the CPU has them and the OS saves their registers. */
struct mt_cpu_isa {
    bool avx2;
    bool fma;
    bool avx512f;
    bool avx512bw;
    bool avx512_bf16;
    bool avx512_fp16;
    bool avx512_vnni;
    bool amx_tile;
    bool amx_bf16;
    bool amx_int8;
    bool amx_fp16;
};

/* What hwloc says about the machine. */
struct mt_cpu_topo {
    char model[128];                     /* cpuid brand string */
    int cores;                           /* physical cores */
    int threads;                         /* processing units */
    uint64_t mem_bytes;                  /* DRAM the kernel reports (MemTotal) */
    uint64_t l3_bytes;                   /* largest last-level cache, 0 if unknown */
    int n_nodes;                         /* NUMA nodes with cores (1 on a non-NUMA machine) */
    int node_id[MT_CPU_MAX_NODES];       /* OS index */
    int node_cores[MT_CPU_MAX_NODES];    /* physical cores on the node */
    uint64_t node_mem[MT_CPU_MAX_NODES]; /* bytes of DRAM on the node */
};

/* One memory-bandwidth measurement: per kernel, the median and p90 of `reps` timed runs. */
struct mt_cpu_stream_result {
    int threads;          /* pinned threads used */
    size_t array_bytes;   /* bytes of each array */
    double read_median_s; /* one sweep over one array */
    double read_p90_s;
    double read_gbps; /* array_bytes / read_median_s */
    double triad_median_s;
    double triad_p90_s;
    double triad_gbps; /* 3 * array_bytes / triad_median_s */
    bool bound;        /* threads were pinned and memory placed as asked */
};

/* Detect the usable instruction sets (cpuid + XCR0). Cannot fail. */
void mt_cpu_isa_detect(struct mt_cpu_isa *isa_out);

/* The machine's cores, NUMA nodes and memory (hwloc). MT_ERR_UNSUPPORTED if hwloc fails. */
mt_status_t mt_cpu_topo_query(struct mt_cpu_topo *topo_out);

/*
 * Read and triad bandwidth of node index `node` (0..n_nodes-1, as in mt_cpu_topo), or of all
 * nodes at once when node < 0: one thread per core of those nodes, pinned; arrays of
 * array_bytes each (0: a default of 4x the L3, at least 256 MiB, at most 2 GiB), first touched
 * by their readers. reps >= 3 timed runs after one warm-up. A failed binding earns one warning
 * and res->bound = false, not an error. MT_ERR_NOMEM; MT_ERR_INVAL, also when the three arrays
 * would take more than 3/4 of the machine's DRAM.
 */
mt_status_t mt_cpu_stream_run(int node, size_t array_bytes, int reps,
                              struct mt_cpu_stream_result *res_out);

/*
 * fp32 FMA rate of all cores (one pinned thread each) in GFLOP/s, 2 flops per lane per FMA,
 * with the widest FMA unit that isa allows. Runs about `seconds`.
 */
mt_status_t mt_cpu_fma_gflops(double seconds, double *gflops_out);

/*
 * AMX BF16 tile rate of all cores in GFLOP/s (TDPBF16PS on registers, no memory traffic).
 * MT_ERR_UNSUPPORTED when the CPU lacks AMX-BF16 or the kernel refuses the tile state
 * (arch_prctl ARCH_REQ_XCOMP_PERM).
 */
mt_status_t mt_cpu_amx_bf16_gflops(double seconds, double *gflops_out);

#endif /* MT_CPU_STREAM_H */
