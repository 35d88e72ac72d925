/* SPDX-License-Identifier: MIT */
/*
 * experts.h - routed experts on the CPU at DRAM speed: SwiGLU experts with FP8 e4m3 (128x128
 * block scales) or BF16 weights, a whole MoE layer's experts per call, split across a pinned
 * thread team (cpu/team.h).
 *
 * The one idea: decoding is bound by bytes of expert weights read per token, so every weight
 * byte is read from DRAM once, by one core, and converted to fp32 in registers (never expanded in
 * memory). A layer is two phases with one team barrier between: (1) the rows of every expert's
 * gate and up matrices are handed out in units of 32 rows (128 for prefill) as threads get free
 * (or cut into one fixed share per thread: mt_cpu_experts_dynamic), and a thread computes gate
 * and up for its rows together and keeps h = SiLU(gate x) * up x; (2) the rows of every down
 * matrix likewise, y = down h. Prefill inputs are first packed once by the whole team. Threads
 * the job does not use sleep.
 *
 * Kernel families (cpu/isa.h): scalar (plain C, the reference of the others), AVX2 + FMA + F16C,
 * AVX-512 F + BW (other decode kernels where the CPU has VBMI or BF16 too:
 * mt_cpu_experts_decode), and amx: the AVX-512 kernels below MT_CPU_PREFILL_MIN_M tokens per
 * expert, AMX-BF16 tiles from there (cpu/experts_amx_tiles.c, cpu/experts_amx.c: activations
 * and scaled weights rounded to bf16, so that path is within 2e-2 x max |y| of the others, not
 * 1e-4), with the vector SwiGLU of the avx2 and avx512 families between the phases; chosen at
 * run time (MOETIER_ISA forces one). F32 and F16 weights, and shapes whose columns are not a
 * multiple of 32, take the scalar path.
 */
#ifndef MT_CPU_EXPERTS_H
#define MT_CPU_EXPERTS_H

#include "cpu/isa.h"
#include "cpu/ref_ops.h"
#include "cpu/team.h"
#include "runtime/base/status.h"

/*
 * Tokens per expert from which the amx family computes it on AMX tiles (prefill): from
 * MT_CPU_PREFILL_MIN_SMALL where the few-token kernel takes it (FP8: cpu/experts_amx_small.c),
 * else from MT_CPU_PREFILL_MIN_M. Below, the decode tiles convert each weight again for every 4
 * tokens: at 9-15 tokens that costs more than the few-token kernel's one widening of each row
 * (~1 ms an expert at V3.2's shape whatever the tokens), at 8 it still costs less (62 GB/s of
 * FP8 against ~38, bench/results/cpu-experts.md). On the GPU test machine the engine's
 * 512-token chunks of an all-DRAM plan (16 tokens an expert on average, half of them below 16)
 * ran 1.7-1.9x faster with the few-token kernel from 8 tokens than from 16 (session 29).
 */
#define MT_CPU_PREFILL_MIN_M 16
#define MT_CPU_PREFILL_MIN_SMALL 9

/*
 * Software prefetch distance of the decode kernels on each weight row stream, in bytes (0: none;
 * default 8192, the best of 0-8 KiB on the GPU test machine). A tuning knob for benchmarks; set
 * it while no layer runs.
 */
extern int mt_cpu_experts_prefetch;

/*
 * How the FMA decode tiles prefetch: 0 (default) each row stream mt_cpu_experts_prefetch bytes
 * ahead; 1 the next tile's rows, spread evenly over the current tile (one sequential stream,
 * one tile ahead) into L1, 2 the same into L2. Likewise a knob.
 */
extern int mt_cpu_experts_prefetch_mode;

/*
 * Decode kernels of the avx512 and amx families: 0 (default) the FMA tiles of
 * cpu/experts_tile.h, FP8 widened by bit moves and VCVTPH2PS; 1 the same tiles, FP8 widened by
 * table lookups (AVX512-VBMI, cpu/experts_lut.c); 3 and 2 bf16 dot products (AVX512-BF16 and
 * VBMI, cpu/experts_dot.c) with each activation carried as 3 bf16 terms (all 24 bits of fp32)
 * or 2 (16 bits). On the GPU test machine (Sapphire Rapids) 1-3 were all slower: FP8, 1 token
 * x 8 experts, 77 GB/s (1), 60-66 (3) and 70-87 (2) against 84-101 for 0 in the same runs
 * (bench/results/cpu-experts.md). 0, 1 and 3 are exact to 1e-4 of the output; 2 carries 16
 * significant bits of each activation (an error of up to 2^-16 of it), so where an output's
 * products cancel it can be off by more than 1e-4 of itself (2e-3 was seen). An inf weight gives NaN on 2 and 3 (its
 * products with the terms of opposite sign; the reference gives inf): either way not finite.
 * Likewise a knob; a kernel the CPU lacks units for is not used (the FMA tiles run).
 */
extern int mt_cpu_experts_decode;

/*
 * How a layer's rows are shared by the team: 1 (default) units of 32 rows (128 for prefill)
 * taken from one counter per phase as threads get free, 0 one fixed share per thread (by rows x
 * tokens). Likewise a knob.
 */
extern int mt_cpu_experts_dynamic;

/*
 * With units (mt_cpu_experts_dynamic) and no packed prefill input: 1 (default) a thread done
 * with phase 1 (gate, up) starts phase 2 (down) of the experts whose phase 1 is complete
 * instead of waiting at a barrier for the last unit of all experts; 0 the barrier. Likewise a
 * knob.
 */
extern int mt_cpu_experts_overlap;

/*
 * Rows per unit of prefill jobs (m >= MT_CPU_PREFILL_MIN_M) in that scheduling: 128 (default),
 * 64 or 32 (smaller units even out the end of a phase, at the price of more passes over each
 * input). Likewise a knob.
 */
extern int mt_cpu_experts_prefill_unit;

/* True where this CPU runs decode kernel `kind` of mt_cpu_experts_decode (0: always). */
bool mt_cpu_experts_decode_usable(int kind);

/*
 * AMX prefill: K chunk (columns, a multiple of 32; default 512) of the tiles kernel and of the
 * blocked kernel, whose C blocks are kept in a buffer across chunks (cpu/experts_amx_tiles.c,
 * cpu/experts_amx.c; 512 halves the C loads and stores a product against 256: ahead in 9 of 13
 * rounds on the GPU test machine's Xeon, +1-4% in the means, bench/results/cpu-experts.md);
 * 0: all of K at once (for rows as A: the panel kernel, on weight panels of
 * mt_cpu_experts_amx_panel rows, 64 or 128, default 64). Knobs for benchmarks; set them while
 * no layer runs.
 */
extern int mt_cpu_experts_amx_kc;
extern int mt_cpu_experts_amx_panel;

/*
 * AMX prefill orientation: 1 (default) tokens as the A operand, both operands packed in tile
 * order, C stored straight into y (cpu/experts_amx_tiles.c; K chunks of mt_cpu_experts_amx_kc,
 * all of K where it is 0); 0 rows as the A operand (the blocked and panel kernels of
 * cpu/experts_amx.c). mt_cpu_experts_amx_pf: software prefetch of the tiles kernel, bytes ahead
 * on its weight tile stream (0: none); mt_cpu_experts_amx_order: its loop order, 0 (default)
 * tokens outer and row blocks inner in each K chunk, 1 the other way round. Knobs for
 * benchmarks; set them while no layer runs.
 */
extern int mt_cpu_experts_amx_tiles;
extern int mt_cpu_experts_amx_pf;
extern int mt_cpu_experts_amx_order;

/*
 * The tiles kernel's super block of tokens (32, 64, 128 or 256: how many tokens' C blocks wait
 * between K chunks, see cpu/experts_amx_tiles.c; default 256) and whether its weight
 * conversion prefetches each row's next K chunk into L2 (mt_cpu_experts_amx_cvt_pf, 0 or 1;
 * default 1: 5.6-5.8 TFLOP/s against 4.7-5.7 without, in the same rounds on the GPU test
 * machine). Knobs for benchmarks; set them while no layer runs.
 */
extern int mt_cpu_experts_amx_super;
extern int mt_cpu_experts_amx_cvt_pf;

/*
 * 1: the tiles kernel starts every K chunk's C block from zero tiles and adds it to the sum with
 * vector adds (4 tile stores per block and chunk instead of 4 loads and 4 stores); 0: C tiles
 * loaded and stored between chunks (default: not faster on the GPU test machine). Likewise a
 * knob.
 */
extern int mt_cpu_experts_amx_cadd;

/*
 * Up to this many tokens (default 64; 0: never) an FP8 expert's AMX prefill takes the few-token
 * kernel (cpu/experts_amx_small.c: weight rows widened by a table, the block scale on the
 * tokens) where the CPU has AVX512-VBMI and K is a multiple of 64. Measured on the GPU test
 * machine's Xeon (8 experts x m tokens, bench_cpu_experts (k), session 39): 1.8x the tiles
 * kernel at 16-32 tokens, 1.4-1.6x at 40-64 (16-row blocks over all the tokens), slower at 128.
 * A knob for benchmarks and tests; set it while no layer runs (the environment's
 * MT_CPU_AMX_SMALL=n sets it when a layer runner is created). mt_cpu_experts_amx_small_calls: the row calls that kernel ran (tests).
 */
extern int mt_cpu_experts_amx_small;
uint64_t mt_cpu_experts_amx_small_calls(void);
/*
 * Tokens per expert from which the few-token AMX kernel takes an FP8 expert (default
 * MT_CPU_PREFILL_MIN_SMALL); fewer take the decode tiles. A knob for measurements
 * (MT_CPU_PREFILL_MIN=n when a layer runner is created).
 */
extern int mt_cpu_experts_prefill_min_small;
/*
 * 1 (default): 33-64 tokens take that kernel's 16-row blocks over all their tokens (each row
 * widened once); 0: blocks of 32 x 32 (rows widened again for each 32 tokens). A knob for
 * benchmarks and tests, like the one above (MT_CPU_AMX_SMALL_WIDE=n).
 */
extern int mt_cpu_experts_amx_small_wide;
/*
 * 1 (default): that kernel's prefetch runs on past a row's end into the same row of the next
 * block, the order in which it reads the weights; 0: it stops at the row's end (as before
 * session 39). A knob for measurements (MT_CPU_AMX_SMALL_WRAP=n).
 */
extern int mt_cpu_experts_amx_small_wrap;

/* Tests: the next that many kernel workspace allocations fail (as when memory is short). */
extern _Atomic int mt_cpu_experts_ws_fault;

/* One expert's work: m tokens routed to it. */
struct mt_cpu_expert_job {
    const struct mt_cpu_weight *gate; /* [inter, hidden] */
    const struct mt_cpu_weight *up;   /* [inter, hidden] */
    const struct mt_cpu_weight *down; /* [hidden, inter] */
    int m;                            /* tokens, >= 1 */
    const float *x;                   // [m, hidden]
    float *y;                         // [m, hidden], the SwiGLU output before the router weight
};

struct mt_cpu_moe;

/*
 * A layer runner over team (borrowed) with kernel family `level` (mt_cpu_level_select gives the
 * usual one; a level above mt_cpu_level_max() is MT_ERR_UNSUPPORTED). MT_ERR_NOMEM.
 */
mt_status_t mt_cpu_moe_create(struct mt_cpu_team *team, enum mt_cpu_level level,
                              struct mt_cpu_moe **moe_out);
void mt_cpu_moe_destroy(struct mt_cpu_moe *moe);

/*
 * Compute jobs[0..n) on the first `threads` threads of the team (<= 0: all) and return at once
 * (jobs and everything they point to stay valid until mt_cpu_moe_wait). All jobs must share
 * hidden and inter sizes. MT_ERR_INVAL (shapes, dtypes), MT_ERR_NOMEM; nothing started then.
 */
mt_status_t mt_cpu_moe_start(struct mt_cpu_moe *moe, const struct mt_cpu_expert_job *jobs, int n,
                             int threads);
/* MT_ERR_NOMEM when a kernel could not allocate its workspace (the outputs are then not valid). */
mt_status_t mt_cpu_moe_wait(struct mt_cpu_moe *moe);

/* The mt_clock_now() moment the last waited run's last thread ended its work (0: none yet). */
double mt_cpu_moe_done_at(const struct mt_cpu_moe *moe);

/* start + wait. */
mt_status_t mt_cpu_moe_run(struct mt_cpu_moe *moe, const struct mt_cpu_expert_job *jobs, int n,
                           int threads);

/*
 * Where the runs' time went besides the kernels, for benchmarks: per run, from the start call
 * to the last thread's end (total_s); the mean over the run's threads of the wait from the start
 * call to the thread's first instruction of work (start_lag_s: waking the team) and of the idle
 * from the thread's end to the last thread's (idle_end_s: the tail). Medians over the runs since
 * the last call (the last 64 of them), which starts a new count (runs == 0: none finished).
 */
struct mt_cpu_moe_spread {
    int runs;
    double total_s;
    double start_lag_s;
    double idle_end_s;
};
void mt_cpu_moe_spread(struct mt_cpu_moe *moe, struct mt_cpu_moe_spread *out);

/* One expert on the calling thread with kernel family `level` (tests, reference runs).
 * MT_ERR_INVAL (shapes, dtypes), MT_ERR_NOMEM. */
mt_status_t mt_cpu_expert_run(enum mt_cpu_level level, const struct mt_cpu_expert_job *job);

#endif /* MT_CPU_EXPERTS_H */
