/* SPDX-License-Identifier: MIT */
/*
 * experts_bench.h - a pool of synthetic V3.2-shaped experts and timed MoE layers over it, shared
 * by `moetier bench` (the measured expert efficiency of the profile) and bench/bench_cpu_experts.
 *
 * The one idea: the pool holds many more expert bytes than the last-level cache, and each step
 * takes the next experts of a shuffled order (every expert once before any repeats), so every
 * weight byte of a step comes from DRAM, as in decoding a real model.
 */
#ifndef MT_CPU_EXPERTS_BENCH_H
#define MT_CPU_EXPERTS_BENCH_H

#include "cpu/experts.h"
#include "runtime/base/dtype.h"

struct mt_cpu_expert_pool;

/*
 * n experts of [inter, hidden] gate/up and [hidden, inter] down in dtype (F8_E4M3 with random
 * block scales, or BF16), filled with random values by the team's threads (first touch).
 * MT_ERR_NOMEM.
 */
mt_status_t mt_cpu_expert_pool_create(struct mt_cpu_team *team, enum mt_dtype dtype, int n,
                                      int hidden, int inter, struct mt_cpu_expert_pool **pool_out);
void mt_cpu_expert_pool_destroy(struct mt_cpu_expert_pool *pool);

/* Bytes of one expert's weights (scales included). */
double mt_cpu_expert_pool_expert_bytes(const struct mt_cpu_expert_pool *pool);

/* A timed run: median and p90 of `steps` layers, bytes and flops of one step. */
struct mt_cpu_moe_timing {
    double median_s;
    double p90_s;
    double bytes; /* expert weight bytes of one step */
    double flops; /* 2 x MACs of one step */
    long pairs;   /* (token, expert) pairs of one step */
    int m_min;    /* the fewest and most tokens an expert got in a step */
    int m_max;
};

/*
 * `steps` timed layers (after one warm-up) on the first `threads` threads (<= 0: all): each step
 * routes `tokens` tokens to `k` distinct experts each (drawn from the pool's rotation); when
 * per_expert > 0 instead, `k` experts get per_expert tokens each (prefill). MT_ERR_NOMEM.
 */
mt_status_t mt_cpu_expert_pool_time(struct mt_cpu_expert_pool *pool, struct mt_cpu_moe *moe,
                                    int threads, int tokens, int k, int per_expert, int steps,
                                    struct mt_cpu_moe_timing *out);

/*
 * The same with per_expert = mean, but the k experts' token counts spread as a prompt chunk's do
 * around their mean: with uniform routing an expert's count is binomial, standard deviation
 * ~sqrt(mean), so the counts are k values evenly spaced about the mean with that deviation (8
 * experts at a mean of 32: 23, 26, 28, 31, 33, 36, 38 and 41 tokens), each at least 1.
 * Why: the kernels' time is not linear in the tokens (the few-token AMX kernel takes 32 rows
 * up to 32 tokens and 16 rows from 33), so a chunk whose experts get 32 tokens on average runs
 * slower than 8 experts of exactly 32 (bench/results/cpu-experts.md, session 39).
 */
mt_status_t mt_cpu_expert_pool_time_chunk(struct mt_cpu_expert_pool *pool, struct mt_cpu_moe *moe,
                                          int threads, int k, int mean, int steps,
                                          struct mt_cpu_moe_timing *out);

/*
 * The read ceiling of a decode step itself: `steps` timed steps (after one warm-up) in which the
 * first `threads` threads of the pool's team (<= 0: all) read the weights of k experts of the
 * rotation with pure vector loads (mt_cpu_read_or, `streams` per thread, software prefetch
 * `prefetch` bytes ahead), each thread a contiguous share of them, timed from start to wait as
 * mt_cpu_expert_pool_time times a layer. out->flops is 0. MT_ERR_NOMEM.
 */
mt_status_t mt_cpu_expert_pool_read(struct mt_cpu_expert_pool *pool, int threads, int k,
                                    int streams, int prefetch, int steps,
                                    struct mt_cpu_moe_timing *out);

#endif /* MT_CPU_EXPERTS_BENCH_H */
