/* SPDX-License-Identifier: MIT */
/*
 * test_expert_pool.c - the timed layers of cpu/experts_bench.h that `moetier bench` fits the
 * profile's CPU prefill rates from: per step, how many tokens each expert gets and what the
 * step counts (pairs, flops, bytes). A chunk's counts (mt_cpu_expert_pool_time_chunk) must
 * spread around their mean as a prompt chunk's do and keep that mean; the plain per-expert mode
 * gives every expert the same count. Small experts (256 x 128 FP8) on a 2-thread team: seconds.
 */
#include <config.h>

#include "cpu/experts_bench.h"
#include "cpu/isa.h"
#include "cpu/team.h"
#include "runtime/base/status.h"
#include "tests/tap.h"

#include <math.h>

#define HIDDEN 256
#define INTER 128

/* The counts a chunk of k experts at mean m must have: evenly spaced, deviation sqrt(m). */
static void
check_chunk(struct mt_cpu_expert_pool *pool, struct mt_cpu_moe *moe, int k, int mean,
            int want_min, int want_max)
{
    struct mt_cpu_moe_timing t;
    mt_status_t st = mt_cpu_expert_pool_time_chunk(pool, moe, 0, k, mean, 2, &t);
    double macs = 3.0 * HIDDEN * INTER * (double)k * mean;

    tap_ok(st == MT_OK && t.m_min == want_min && t.m_max == want_max && t.pairs == (long)k * mean,
           "chunk of %d experts at a mean of %d: counts %d-%d (want %d-%d), %ld pairs (want %d)",
           k, mean, t.m_min, t.m_max, want_min, want_max, t.pairs, k * mean);
    tap_ok(st == MT_OK && fabs(t.flops - 2.0 * macs) < 1e-6 * macs && t.median_s > 0 &&
               t.bytes == k * mt_cpu_expert_pool_expert_bytes(pool),
           "chunk of %d at %d: flops %.0f (want %.0f), bytes of %d experts, a time", k, mean,
           t.flops, 2.0 * macs, k);
}

int
main(void)
{
    struct mt_cpu_team *team = NULL;
    struct mt_cpu_moe *moe = NULL;
    struct mt_cpu_expert_pool *pool = NULL;
    struct mt_cpu_moe_timing t;

    tap_plan(0);
    if (!tap_ok(mt_cpu_team_create(-1, 2, &team) == MT_OK &&
                    mt_cpu_moe_create(team, mt_cpu_level_max(), &moe) == MT_OK &&
                    mt_cpu_expert_pool_create(team, MT_DTYPE_F8_E4M3, 12, HIDDEN, INTER, &pool) ==
                        MT_OK,
                "a team, a layer runner and 12 experts of %dx%d", HIDDEN, INTER)) {
        return tap_done();
    }
    /* 8 experts at 32: offsets 2.47 x (j - 3.5) rounded: -9 -6 -4 -1 1 4 6 9 */
    check_chunk(pool, moe, 8, 32, 23, 41);
    /* at 128: deviation 11.3, offsets 4.94 x (j - 3.5): -17 -12 -7 -2 2 7 12 17 */
    check_chunk(pool, moe, 8, 128, 111, 145);
    /* one expert has nothing to spread */
    check_chunk(pool, moe, 1, 32, 32, 32);
    mt_status_t st = mt_cpu_expert_pool_time(pool, moe, 0, 0, 8, 32, 2, &t);
    tap_ok(st == MT_OK && t.m_min == 32 && t.m_max == 32 && t.pairs == 256,
           "8 experts of exactly 32 tokens: counts %d-%d, %ld pairs", t.m_min, t.m_max, t.pairs);
    st = mt_cpu_expert_pool_time(pool, moe, 0, 5, 8, 0, 2, &t);
    tap_ok(st == MT_OK && t.pairs == 40 && t.m_min >= 1 && t.m_max <= 5,
           "5 decode tokens x 8 experts: %ld pairs, %d-%d tokens an expert", t.pairs, t.m_min,
           t.m_max);
    mt_log_set_quiet(true);
    st = mt_cpu_expert_pool_time_chunk(pool, moe, 0, 8, 0, 2, &t);
    mt_log_set_quiet(false);
    tap_ok(st == MT_ERR_INVAL, "a chunk of 0 tokens an expert is refused");
    mt_cpu_expert_pool_destroy(pool);
    mt_cpu_moe_destroy(moe);
    mt_cpu_team_destroy(team);
    return tap_done();
}
