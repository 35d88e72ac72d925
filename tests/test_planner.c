/* SPDX-License-Identifier: MIT */
/*
 * test_planner.c - the placement planner: the optimizer against exhaustive search on small random
 * instances, budgets on random instances, the cost model against a hand formula on V3.2, plans
 * from traces, the shipped what-if profiles, and plan files (round trip, bad and hand-edited
 * files).
 */
#include <config.h>

#include "runtime/model/config.h"
#include "runtime/plan/hwprofile.h"
#include "runtime/model/model.h"
#include "runtime/plan/planner.h"
#include "runtime/plan/planner_int.h"
#include "runtime/base/status.h"
#include "runtime/plan/trace.h"
#include "runtime/base/rng.h"
#include "tests/tap.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deterministic instances on every machine: one fixed seed (seeded in main). */
static struct mt_rng rng;

static double
rnd(void)
{
    return mt_rng_uniform(&rng);
}

static double
rnd_in(double lo, double hi)
{
    return lo + (hi - lo) * rnd();
}

/* A random instance: probabilities skewed (u^2), rates in realistic ranges, budgets of 0..n slots.
 */
static void
random_problem(struct mt_plan_problem *pb, double *prob, int L, int E, bool allow_no_disk)
{
    double bytes = 44e6;

    memset(pb, 0, sizeof(*pb));
    pb->n_layers = L;
    pb->n_experts = E;
    for (int i = 0; i < L * E; i++) {
        double u = rnd();
        prob[i] = u * u;
    }
    pb->prob = prob;
    pb->expert_bytes = bytes;
    pb->expert_flops = 88e6;
    pb->gpu_capacity = floor(rnd_in(0, 4)) * bytes + rnd_in(0, 0.9) * bytes;
    pb->dram_capacity = floor(rnd_in(0, L * E * 0.8)) * bytes + rnd_in(0, 0.9) * bytes;
    pb->rate[MT_SRC_GPU_MEM] = rnd_in(300, 3000) * 1e9;
    pb->rate[MT_SRC_GPU_FLOP] = rnd_in(30, 300) * 1e12;
    pb->rate[MT_SRC_CPU_MEM] = rnd_in(30, 400) * 1e9;
    pb->rate[MT_SRC_CPU_FLOP] = rnd_in(1, 20) * 1e12;
    pb->rate[MT_SRC_PCIE] = rnd_in(5, 60) * 1e9;
    pb->rate[MT_SRC_DISK] = rnd_in(1, 60) * 1e9;
    pb->batch = rnd() < 0.5 ? 1 : (int)rnd_in(2, 600);
    if (allow_no_disk && rnd() < 0.2) {
        pb->rate[MT_SRC_DISK] = 0; /* all experts must then fit GPU + DRAM */
        pb->dram_capacity = (double)(L * E) * bytes;
    }
}

static int
count_tier(const uint8_t *t, size_t n, int tier)
{
    int c = 0;
    for (size_t i = 0; i < n; i++) {
        c += t[i] == tier;
    }
    return c;
}

/*
 * Every improvement pass of the search is needed (issue 8). On 2-layer instances the kicks alone
 * reach the exhaustive optimum, so disabling one pass there changes nothing; on these 8 x 32
 * instances each pass matters. The bounds are the full search's results (+0.01%); leaving out a
 * pass gives, relative to them (measured when they were set):
 *
 *   pass left out                          seed 1001   seed 1003   seed 1008
 *   1. single moves (pass_single)          -           +0.045%     +0.034%
 *   2. swaps in a layer (pass_swap)        +2.2%       +0.18%      -
 *   3. pairs in a layer (pass_pair_in_..)  +4.5%       -           -
 *   4. pairs across layers (pass_pair)     -           +2.0%       +5.2%
 *   kicks (iterate_kicks)                  +17%        +0.10%      +1.5%
 *   second greedy start (cheapest tier)    +2.7%       +0.053%     -
 *
 * ("-": no worse, or better by chance.) A better search may lower a result; the test only
 * refuses a worse one.
 */
static void
sized_problem(struct mt_rng *r, struct mt_plan_problem *pb, double *prob, int L, int E)
{
    double bytes = 44e6;

    memset(pb, 0, sizeof(*pb));
    pb->n_layers = L;
    pb->n_experts = E;
    for (int i = 0; i < L * E; i++) {
        double u = mt_rng_uniform(r);
        prob[i] = u * u;
    }
    pb->prob = prob;
    pb->expert_bytes = bytes;
    pb->expert_flops = 88e6;
#define RND_IN(lo, hi) ((lo) + ((hi) - (lo)) * mt_rng_uniform(r))
    pb->gpu_capacity = floor(RND_IN(0, L * E * 0.3)) * bytes + RND_IN(0, 0.9) * bytes;
    pb->dram_capacity = floor(RND_IN(0, L * E * 0.8)) * bytes + RND_IN(0, 0.9) * bytes;
    pb->rate[MT_SRC_GPU_MEM] = RND_IN(300, 3000) * 1e9;
    pb->rate[MT_SRC_GPU_FLOP] = RND_IN(30, 300) * 1e12;
    pb->rate[MT_SRC_CPU_MEM] = RND_IN(30, 400) * 1e9;
    pb->rate[MT_SRC_CPU_FLOP] = RND_IN(1, 20) * 1e12;
    pb->rate[MT_SRC_PCIE] = RND_IN(5, 60) * 1e9;
    pb->rate[MT_SRC_DISK] = RND_IN(1, 60) * 1e9;
    pb->batch = mt_rng_uniform(r) < 0.5 ? 1 : (int)RND_IN(2, 600);
#undef RND_IN
}

static void
test_passes_needed(void)
{
    static const struct {
        uint64_t seed;
        double bound_s;
    } inst[] = {
        {1001, 0.071520050421530659},
        {1003, 0.0284320107398391},
        {1008, 0.0045410131765816694},
    };
    double prob[8 * 32];
    uint8_t t[8 * 32];

    for (size_t k = 0; k < sizeof(inst) / sizeof(inst[0]); k++) {
        struct mt_plan_problem pb;
        struct mt_rng r;
        double s = 0.0;
        mt_status_t st;

        mt_rng_init(&r, inst[k].seed);
        sized_problem(&r, &pb, prob, 8, 32);
        st = mt_plan_problem_optimize(&pb, false, t, &s);
        tap_ok(st == MT_OK && s <= inst[k].bound_s * (1 + 1e-4),
               "8 x 32 instance (seed %llu): %.9g s <= full-search bound %.9g s",
               (unsigned long long)inst[k].seed, s, inst[k].bound_s);
    }
}

static void
test_exhaustive(void)
{
    double prob[12];
    uint8_t t_opt[12];
    uint8_t t_ex[12];
    struct mt_plan_problem pb;
    double worst = 1.0;
    int n_ok = 0;
    int n_bad = 0;
    const int n_inst = 40;

    for (int k = 0; k < n_inst; k++) {
        int E = 4 + k % 2; /* 2 x 4 and 2 x 5 experts: 4^8 and 4^10 assignments */
        double s_opt;
        double s_ex;
        random_problem(&pb, prob, 2, E, true);
        if (mt_plan_problem_optimize(&pb, false, t_opt, &s_opt) != MT_OK ||
            mt_plan_problem_exhaustive(&pb, t_ex, &s_ex) != MT_OK) {
            n_bad++;
            tap_diag("instance %d failed: %s", k, mt_last_error());
            continue;
        }
        double ratio = s_ex > 0 ? s_opt / s_ex : 1.0;
        worst = MT_MAX(worst, ratio);
        if (ratio <= 1.01) {
            n_ok++;
        } else {
            tap_diag("instance %d (batch %d): planner %.6g s, exhaustive %.6g s, ratio %.4f", k,
                     pb.batch, s_opt, s_ex, ratio);
        }
    }
    tap_ok(n_bad == 0 && n_ok == n_inst,
           "planner within 1%% of exhaustive search on %d random instances (2 layers x 4-5 "
           "experts, 4 tiers; worst ratio %.5f)",
           n_inst, worst);

    /* A hand-checked instance: 1 layer, 2 experts, p = 1 and 0.5, one GPU slot, no DRAM. */
    {
        double p2[2] = {1.0, 0.5};
        memset(&pb, 0, sizeof(pb));
        pb.n_layers = 1;
        pb.n_experts = 2;
        pb.prob = p2;
        pb.expert_bytes = 1e9;
        pb.gpu_capacity = 1e9;
        pb.rate[MT_SRC_GPU_MEM] = 1000e9;
        pb.rate[MT_SRC_CPU_MEM] = 100e9;
        pb.rate[MT_SRC_PCIE] = 25e9;
        pb.rate[MT_SRC_DISK] = 10e9;
        pb.batch = 1;
        double s = 0;
        uint8_t t[2];
        mt_status_t st = mt_plan_problem_optimize(&pb, false, t, &s);
        /* Best: expert 0 on GPU (1 ms), expert 1 on NVMe (0.5 GB / 10 GB/s = 50 ms; its CPU
         * read 5 ms overlaps). */
        tap_ok(st == MT_OK && t[0] == MT_TIER_GPU && t[1] == MT_TIER_NVME && fabs(s - 0.050) < 1e-9,
               "hand instance: hot expert on the GPU, the other streamed: %.6f s", s);
    }
}

/* The sampled decode time against the exact expectation on a tiny instance. */
static void
test_sampling(void)
{
    /* 1 layer, 4 experts, p = 0.5 each (2 per token): GPU, CPU, NVMe, CPU. By symmetry every
     * pair of experts is equally likely, so E[max] is the mean over the 6 pairs. */
    double p4[4] = {0.5, 0.5, 0.5, 0.5};
    uint8_t t4[4] = {MT_TIER_GPU, MT_TIER_DRAM_CPU, MT_TIER_NVME, MT_TIER_DRAM_CPU};
    struct mt_plan_problem pb;
    double got = 0;
    double mean_load = 0;
    double g = 1e9 / 1000e9; /* GPU read of one expert */
    double c = 1e9 / 100e9;  /* CPU read */
    double n = 1e9 / 10e9;   /* disk read (its CPU read, c, overlaps) */
    /* pairs: GC, GN, GC, CN, CC, NC -> max over sources of the pair's sums */
    double want = (MT_MAX(g, c) + MT_MAX(g, MT_MAX(n, c)) + MT_MAX(g, c) + MT_MAX(n, 2 * c) +
                   2 * c + MT_MAX(n, 2 * c)) /
                  6.0;

    memset(&pb, 0, sizeof(pb));
    pb.n_layers = 1;
    pb.n_experts = 4;
    pb.prob = p4;
    pb.expert_bytes = 1e9;
    pb.gpu_capacity = 1e9;
    pb.dram_capacity = 2e9;
    pb.rate[MT_SRC_GPU_MEM] = 1000e9;
    pb.rate[MT_SRC_CPU_MEM] = 100e9;
    pb.rate[MT_SRC_DISK] = 10e9;
    pb.batch = 1;
    mt_status_t st = mt_plan_problem_sample(&pb, t4, 20000, &got);
    st = st == MT_OK ? mt_plan_problem_evaluate(&pb, t4, &mean_load, NULL, NULL) : st;
    tap_ok(st == MT_OK && fabs(got - want) < 0.02 * want,
           "sampled decode step %.5f s matches the exact E[max] %.5f s within 2%%", got, want);
    tap_ok(st == MT_OK && mean_load <= want,
           "the expected-load model (%.5f s) is a lower bound of E[max] (%.5f s)", mean_load, want);
}

/*
 * The sampled paths of mt_plan_problem_sample (planner.h): a layer whose probabilities do not
 * sum to a whole number draws each expert on its own, so one DRAM_CPU expert of p 0.7 (10 ms,
 * plus a 1 ms host wait when used) costs 0.7 x 11 ms on average, as the expected-load model
 * says; a layer of p (0.25, 0.75) picks exactly one expert a token (systematic sampling), the
 * DRAM_CPU one (10 ms + the wait) a quarter of the time, the GPU one (1 ms) otherwise: 3.5 ms.
 * And a layer bound by GPU FLOPs costs its FLOPs at the GPU's rate.
 */
static void
test_sampling_paths(void)
{
    double p1[1] = {0.7};
    uint8_t c1[1] = {MT_TIER_DRAM_CPU};
    double p2[2] = {0.25, 0.75};
    uint8_t cg[2] = {MT_TIER_DRAM_CPU, MT_TIER_GPU};
    double pf[1] = {1.0};
    uint8_t g1[1] = {MT_TIER_GPU};
    struct mt_plan_problem pb;
    double s1 = 0, m1 = 0, s2 = 0, sf = 0;
    mt_status_t st;

    memset(&pb, 0, sizeof(pb));
    pb.n_layers = 1;
    pb.n_experts = 1;
    pb.prob = p1;
    pb.expert_bytes = 1e9;
    pb.gpu_capacity = 1e9;
    pb.dram_capacity = 1e9;
    pb.rate[MT_SRC_GPU_MEM] = 1000e9;
    pb.rate[MT_SRC_CPU_MEM] = 100e9;
    pb.batch = 1;
    pb.host_layer_s = 1e-3;
    st = mt_plan_problem_sample(&pb, c1, 20000, &s1);
    st = st == MT_OK ? mt_plan_problem_evaluate(&pb, c1, &m1, NULL, NULL) : st;
    tap_ok(st == MT_OK && fabs(s1 - 0.7 * 0.011) < 0.03 * 0.7 * 0.011 &&
               fabs(m1 - 0.7 * 0.011) < 1e-12,
           "sampled: an expert of p 0.7 is drawn alone, %.3f ms (0.7 x 11 = 7.7; expected load "
           "%.3f)",
           s1 * 1e3, m1 * 1e3);
    pb.n_experts = 2;
    pb.prob = p2;
    st = mt_plan_problem_sample(&pb, cg, 20000, &s2);
    tap_ok(st == MT_OK && fabs(s2 - 0.0035) < 0.03 * 0.0035,
           "sampled: p 0.25 on the CPU and 0.75 on the GPU pick one a token: %.3f ms (0.25 x 11 "
           "+ 0.75 x 1 = 3.5)",
           s2 * 1e3);
    pb.n_experts = 1;
    pb.prob = pf;
    pb.host_layer_s = 0;
    pb.expert_flops = 1e12;
    pb.rate[MT_SRC_GPU_FLOP] = 100e12;
    st = mt_plan_problem_sample(&pb, g1, 100, &sf);
    tap_ok(st == MT_OK && fabs(sf - 0.010) < 1e-12,
           "sampled: a GPU expert of 1 TFLOP at 100 TFLOPS takes %.3f ms (its 1 GB read: 1 ms)",
           sf * 1e3);
    /* an average over no tokens is no answer: refused, the output untouched */
    sf = -1;
    st = mt_plan_problem_sample(&pb, g1, 0, &sf);
    tap_ok(st == MT_ERR_INVAL && sf == -1, "sampling 0 tokens is refused: %s",
           st == MT_OK ? "accepted" : mt_last_error());

    /* Ten experts of p 0.1 sum to 0.9999999999999999 in doubles, a whole number up to rounding:
       every token picks exactly one (systematic sampling), so each sample costs its 10 ms CPU
       read plus the 10 ms host wait, 20 ms; independent draws would use none in 0.9^10 = 35% of
       the tokens (about 16.5 ms). */
    double p10[10];
    uint8_t c10[10];
    double s10 = 0;

    for (int e = 0; e < 10; e++) {
        p10[e] = 0.1;
        c10[e] = MT_TIER_DRAM_CPU;
    }
    memset(&pb, 0, sizeof(pb));
    pb.n_layers = 1;
    pb.n_experts = 10;
    pb.prob = p10;
    pb.expert_bytes = 1e9;
    pb.dram_capacity = 10e9;
    pb.rate[MT_SRC_CPU_MEM] = 100e9;
    pb.batch = 1;
    pb.host_layer_s = 10e-3;
    st = mt_plan_problem_sample(&pb, c10, 200, &s10);
    tap_ok(st == MT_OK && fabs(s10 - 0.020) < 1e-12,
           "sampled: ten experts of p 0.1 (sum 1 up to rounding) pick one a token: %.3f ms (20)",
           s10 * 1e3);
}

static void
test_budgets(void)
{
    enum { L = 6, E = 24 };
    static double prob[L * E];
    static uint8_t t[L * E];
    struct mt_plan_problem pb;
    int violations = 0;
    int failures = 0;
    int storage_changed = 0;

    for (int k = 0; k < 12; k++) {
        double s;
        random_problem(&pb, prob, L, E, false);
        pb.gpu_capacity = floor(rnd_in(0, 20)) * pb.expert_bytes;
        if (mt_plan_problem_optimize(&pb, false, t, &s) != MT_OK) {
            failures++;
            continue;
        }
        int g = count_tier(t, L * E, MT_TIER_GPU);
        int d = count_tier(t, L * E, MT_TIER_DRAM_CPU) + count_tier(t, L * E, MT_TIER_DRAM_PCIE);
        if (g * pb.expert_bytes > pb.gpu_capacity + 1 ||
            d * pb.expert_bytes > pb.dram_capacity + 1) {
            violations++;
        }
        /* Re-plan the same placement for a prefill batch: storage must not move. */
        uint8_t before[L * E];
        memcpy(before, t, sizeof(before));
        pb.batch = 512;
        if (mt_plan_problem_optimize(&pb, true, t, &s) != MT_OK) {
            failures++;
            continue;
        }
        for (int i = 0; i < L * E; i++) {
            bool gpu_a = before[i] == MT_TIER_GPU;
            bool gpu_b = t[i] == MT_TIER_GPU;
            bool nv_a = before[i] == MT_TIER_NVME;
            bool nv_b = t[i] == MT_TIER_NVME;
            storage_changed += gpu_a != gpu_b || nv_a != nv_b;
        }
    }
    tap_ok(failures == 0 && violations == 0,
           "GPU and DRAM budgets never exceeded on 12 random 6 x 24 instances (%d failures)",
           failures);
    tap_ok(storage_changed == 0, "prefill re-planning keeps every expert's storage tier");

    /* evaluate refuses an over-budget assignment, exhaustive refuses big instances */
    {
        double p4[4] = {0.5, 0.5, 0.5, 0.5};
        uint8_t all_gpu[4] = {0, 0, 0, 0};
        double s;
        memset(&pb, 0, sizeof(pb));
        pb.n_layers = 1;
        pb.n_experts = 4;
        pb.prob = p4;
        pb.expert_bytes = 1e9;
        pb.gpu_capacity = 2e9;
        pb.rate[MT_SRC_GPU_MEM] = 1e12;
        pb.rate[MT_SRC_CPU_MEM] = 1e11;
        pb.batch = 1;
        tap_ok(mt_plan_problem_evaluate(&pb, all_gpu, &s, NULL, NULL) == MT_ERR_INVAL &&
                   strstr(mt_last_error(), "GPU budget") != NULL,
               "evaluate rejects 4 GPU experts in a 2-expert budget: %s", mt_last_error());
        tap_ok(mt_plan_problem_optimize(&pb, false, all_gpu, &s) == MT_ERR_INVAL &&
                   strstr(mt_last_error(), "do not fit") != NULL &&
                   strstr(mt_last_error(), "has no disk") != NULL,
               "no DRAM room and no disk: clear error: %s", mt_last_error());
        /* one expert too many (3 in 2 GPU slots) is refused as clearly as two */
        pb.n_experts = 3;
        tap_ok(mt_plan_problem_optimize(&pb, false, all_gpu, &s) == MT_ERR_INVAL &&
                   strstr(mt_last_error(), "do not fit: 1 of 3") != NULL,
               "one expert without room: clear error: %s", mt_last_error());
    }
    {
        double s;
        random_problem(&pb, prob, 2, 7, false);
        tap_ok(mt_plan_problem_exhaustive(&pb, t, &s) == MT_ERR_INVAL,
               "exhaustive search refuses 14 experts");
        /* (planner.h) "above 12 experts": 13 is one too many */
        random_problem(&pb, prob, 1, 13, false);
        tap_ok(mt_plan_problem_exhaustive(&pb, t, &s) == MT_ERR_INVAL,
               "exhaustive search refuses 13 experts");
        /* "or when nothing is feasible": no GPU or DRAM room, no disk */
        random_problem(&pb, prob, 1, 2, false);
        pb.gpu_capacity = 0;
        pb.dram_capacity = 0;
        pb.rate[MT_SRC_DISK] = 0;
        tap_ok(mt_plan_problem_exhaustive(&pb, t, &s) == MT_ERR_INVAL &&
                   strstr(mt_last_error(), "no feasible") != NULL,
               "exhaustive search without a feasible assignment: %s", mt_last_error());
    }
}

/*
 * What evaluate checks before it prices a placement (planner.h): a DRAM_PCIE expert is stored
 * in DRAM and counts against the DRAM budget like a DRAM_CPU one; a tier code that is not one of
 * the four is impossible; a DRAM_PCIE expert needs a GPU to be computed on, so a PCIe link
 * without GPU memory makes that tier impossible; a batch of 0 tokens is malformed.
 */
static void
test_evaluate_checks(void)
{
    double p2[2] = {0.5, 0.5};
    uint8_t pcie2[2] = {MT_TIER_DRAM_PCIE, MT_TIER_DRAM_PCIE};
    uint8_t none2[2] = {MT_TIER_DRAM_CPU, MT_TIER_COUNT};
    uint8_t cpu2[2] = {MT_TIER_DRAM_CPU, MT_TIER_DRAM_CPU};
    struct mt_plan_problem pb;
    double s = 0;

    memset(&pb, 0, sizeof(pb));
    pb.n_layers = 1;
    pb.n_experts = 2;
    pb.prob = p2;
    pb.expert_bytes = 1e9;
    pb.gpu_capacity = 2e9;
    pb.dram_capacity = 1e9;
    pb.rate[MT_SRC_GPU_MEM] = 1e12;
    pb.rate[MT_SRC_CPU_MEM] = 1e11;
    pb.rate[MT_SRC_PCIE] = 25e9;
    pb.batch = 1;
    tap_ok(mt_plan_problem_evaluate(&pb, pcie2, &s, NULL, NULL) == MT_ERR_INVAL &&
               strstr(mt_last_error(), "DRAM budget") != NULL,
           "evaluate counts DRAM_PCIE experts against the DRAM budget (2 in 1): %s",
           mt_last_error());
    pb.dram_capacity = 2e9;
    tap_ok(mt_plan_problem_evaluate(&pb, none2, &s, NULL, NULL) == MT_ERR_INVAL &&
               strstr(mt_last_error(), "impossible") != NULL,
           "evaluate refuses a tier code past the last tier: %s", mt_last_error());
    pb.rate[MT_SRC_GPU_MEM] = 0;
    pb.gpu_capacity = 0;
    tap_ok(mt_plan_problem_evaluate(&pb, pcie2, &s, NULL, NULL) == MT_ERR_INVAL &&
               strstr(mt_last_error(), "impossible") != NULL,
           "a PCIe link without GPU memory makes DRAM_PCIE impossible: %s", mt_last_error());
    pb.batch = 0;
    tap_ok(mt_plan_problem_evaluate(&pb, cpu2, &s, NULL, NULL) == MT_ERR_INVAL,
           "a batch of 0 tokens is a malformed problem: %s", mt_last_error());
    pb.batch = 1;
    pb.n_layers = 0;
    tap_ok(mt_plan_problem_evaluate(&pb, cpu2, &s, NULL, NULL) == MT_ERR_INVAL &&
               strstr(mt_last_error(), "empty or malformed") != NULL,
           "a problem of no layers is empty: %s", mt_last_error());
    pb.n_layers = 1;
    pb.gpu_capacity = -1e9;
    s = 0;
    mt_status_t st = mt_plan_problem_evaluate(&pb, cpu2, &s, NULL, NULL);
    tap_ok(st == MT_OK && fabs(s - 1e9 / 1e11) < 1e-12 && mt_plan_slots(-1e9, 1e9) == 0,
           "a negative GPU capacity holds no expert and refuses none off the GPU (%.3f ms)",
           s * 1e3);
    /* 0.3 / 0.1 is 2.9999999999999996 in doubles: a budget of exactly 3 experts, written as
       decimals, still holds 3 (the slot count forgives rounding), and 2.999 of them hold 2 */
    tap_ok(mt_plan_slots(0.3, 0.1) == 3 && mt_plan_slots(2.999e9, 1e9) == 2,
           "slots: 0.3 / 0.1 holds %d experts (3), 2.999 GB of 1 GB experts %d (2)",
           mt_plan_slots(0.3, 0.1), mt_plan_slots(2.999e9, 1e9));
    /* and a budget one byte short of two 44 MB (V3.2-sized) experts holds one */
    tap_ok(mt_plan_slots(2 * 44e6 - 1, 44e6) == 1 && mt_plan_slots(2 * 44e6, 44e6) == 2,
           "slots: a byte short of two 44 MB experts holds %d (1), exactly two %d (2)",
           mt_plan_slots(2 * 44e6 - 1, 44e6), mt_plan_slots(2 * 44e6, 44e6));
    /* a probability of 0 is in [0, 1]: an expert no token uses is valid and costs nothing */
    {
        double p01[2] = {0.0, 1.0};

        pb.prob = p01;
        s = 0;
        st = mt_plan_problem_evaluate(&pb, cpu2, &s, NULL, NULL);
        tap_ok(st == MT_OK && fabs(s - 1e9 / 1e11) < 1e-12,
               "an expert of probability 0 is accepted and free: %.3f ms (10, the other's): %s",
               s * 1e3, st == MT_OK ? "ok" : mt_last_error());
        pb.prob = p2;
    }

    /* the GPU budget's edge: 2 GPU experts fit 2 slots, a third is one too many */
    {
        double p3[3] = {0.5, 0.5, 0.5};
        uint8_t gg[3] = {MT_TIER_GPU, MT_TIER_GPU, MT_TIER_DRAM_CPU};
        uint8_t ggg[3] = {MT_TIER_GPU, MT_TIER_GPU, MT_TIER_GPU};
        mt_status_t st2;

        memset(&pb, 0, sizeof(pb));
        pb.n_layers = 1;
        pb.n_experts = 3;
        pb.prob = p3;
        pb.expert_bytes = 1e9;
        pb.gpu_capacity = 2e9;
        pb.dram_capacity = 1e9;
        pb.rate[MT_SRC_GPU_MEM] = 1e12;
        pb.rate[MT_SRC_CPU_MEM] = 1e11;
        pb.batch = 1;
        st = mt_plan_problem_evaluate(&pb, gg, &s, NULL, NULL);
        st2 = mt_plan_problem_evaluate(&pb, ggg, &s, NULL, NULL);
        tap_ok(st == MT_OK && st2 == MT_ERR_INVAL && strstr(mt_last_error(), "GPU budget") != NULL,
               "evaluate takes 2 GPU experts in a 2-expert budget, refuses 3: %s",
               mt_last_error());
    }
}

/*
 * The host wait of a step (planner.h, host_layer_s) is charged with the probability that the
 * step uses an off-GPU expert of the layer: for a step of b tokens each choosing an expert of
 * probability p, 1 - (1 - p)^b. One layer, a GPU expert and a DRAM_CPU one of p 0.5 each: the
 * wait adds 0.5 of host_layer_s to a decode token, 1 - 0.5^4 = 0.9375 of it to a batch of 4.
 */
static void
test_host_wait_batch(void)
{
    double p2[2] = {0.5, 0.5};
    uint8_t t[2] = {MT_TIER_GPU, MT_TIER_DRAM_CPU};
    struct mt_plan_problem pb;
    double add[2] = {0, 0};
    mt_status_t st = MT_OK;

    memset(&pb, 0, sizeof(pb));
    pb.n_layers = 1;
    pb.n_experts = 2;
    pb.prob = p2;
    pb.expert_bytes = 1e9;
    pb.gpu_capacity = 1e9;
    pb.dram_capacity = 1e9;
    pb.rate[MT_SRC_GPU_MEM] = 1e12;
    pb.rate[MT_SRC_CPU_MEM] = 1e11;
    for (int i = 0; i < 2 && st == MT_OK; i++) {
        double s0 = 0, s1 = 0;

        pb.batch = i == 0 ? 1 : 4;
        pb.host_layer_s = 0;
        st = mt_plan_problem_evaluate(&pb, t, &s0, NULL, NULL);
        pb.host_layer_s = 1e-3;
        st = st == MT_OK ? mt_plan_problem_evaluate(&pb, t, &s1, NULL, NULL) : st;
        add[i] = s1 - s0;
    }
    tap_ok(st == MT_OK && fabs(add[0] - 0.5e-3) < 1e-12 && fabs(add[1] - 0.9375e-3) < 1e-12,
           "a 1 ms host wait adds %.4f ms to a token (0.5), %.4f ms to a batch of 4 (1 - 0.5^4)",
           add[0] * 1e3, add[1] * 1e3);

    /* Any expert off the GPU makes the step wait on the host: one streamed from NVMe (the CPU
       computes it) or copied into a GPU slot (the host copies it) as well as a DRAM_CPU one. */
    uint8_t tn[2] = {MT_TIER_GPU, MT_TIER_NVME};
    uint8_t tp[2] = {MT_TIER_GPU, MT_TIER_DRAM_PCIE};
    double addn = 0, addp = 0;

    pb.batch = 1;
    pb.rate[MT_SRC_DISK] = 10e9;
    pb.rate[MT_SRC_PCIE] = 25e9;
    for (int i = 0; i < 2 && st == MT_OK; i++) {
        double s0 = 0, s1 = 0;

        pb.host_layer_s = 0;
        st = mt_plan_problem_evaluate(&pb, i == 0 ? tn : tp, &s0, NULL, NULL);
        pb.host_layer_s = 1e-3;
        st = st == MT_OK ? mt_plan_problem_evaluate(&pb, i == 0 ? tn : tp, &s1, NULL, NULL) : st;
        *(i == 0 ? &addn : &addp) = s1 - s0;
    }
    tap_ok(st == MT_OK && fabs(addn - 0.5e-3) < 1e-12 && fabs(addp - 0.5e-3) < 1e-12,
           "a 1 ms host wait adds %.4f ms (0.5) with the other expert on NVMe, %.4f ms (0.5) "
           "copied over PCIe",
           addn * 1e3, addp * 1e3);

    /* src_s sums each source's load; limit_s the layer's whole time (host wait included) on the
       source that bound it. GPU 0.5 GB / 1 TB/s = 0.5 ms, CPU 0.5 GB / 100 GB/s = 5 ms, the
       layer 5 + 0.5 x 1 = 5.5 ms on the CPU's reads. */
    double src[MT_SRC_COUNT], lim[MT_SRC_COUNT], sl = 0, lim_sum = 0;

    pb.rate[MT_SRC_DISK] = 0;
    pb.rate[MT_SRC_PCIE] = 0;
    st = st == MT_OK ? mt_plan_problem_evaluate(&pb, t, &sl, src, lim) : st;
    for (int s = 0; s < MT_SRC_COUNT; s++) {
        lim_sum += lim[s];
    }
    tap_ok(st == MT_OK && fabs(sl - 5.5e-3) < 1e-12 && fabs(lim[MT_SRC_CPU_MEM] - 5.5e-3) < 1e-12 &&
               fabs(lim_sum - sl) < 1e-15 && fabs(src[MT_SRC_CPU_MEM] - 5e-3) < 1e-12 &&
               fabs(src[MT_SRC_GPU_MEM] - 0.5e-3) < 1e-12,
           "limit_s holds the layer's %.3f ms (5.5, wait included) on the CPU: %.3f ms, in all "
           "%.3f; src_s CPU %.3f ms (5), GPU %.3f ms (0.5)",
           sl * 1e3, lim[MT_SRC_CPU_MEM] * 1e3, lim_sum * 1e3, src[MT_SRC_CPU_MEM] * 1e3,
           src[MT_SRC_GPU_MEM] * 1e3);
}

/*
 * Where prefill computes streamed (NVMe) experts (planner.h, nvme_on_cpu): at a batch > 1 with
 * a PCIe link and a GPU they are copied over the link and computed there, so a machine without
 * a CPU rate can still stream them, and their time is the slowest of disk, link and GPU; with
 * nvme_on_cpu the CPU computes them "when there is one", and without one they stay on the GPU.
 */
static void
test_nvme_prefill(void)
{
    double p1[1] = {1.0};
    uint8_t nv[1] = {MT_TIER_NVME};
    struct mt_plan_problem pb;
    double s_gpu = 0, s_cpu = 0, s_nocpu = 0;
    mt_status_t st;

    memset(&pb, 0, sizeof(pb));
    pb.n_layers = 1;
    pb.n_experts = 1;
    pb.prob = p1;
    pb.expert_bytes = 1e9;
    pb.rate[MT_SRC_GPU_MEM] = 1000e9;
    pb.rate[MT_SRC_PCIE] = 20e9;
    pb.rate[MT_SRC_DISK] = 50e9;
    pb.batch = 512;
    /* no CPU rate: copied over the link (1 GB at 20 GB/s = 50 ms, the disk's 20 ms overlaps) */
    st = mt_plan_problem_evaluate(&pb, nv, &s_gpu, NULL, NULL);
    pb.nvme_on_cpu = true;
    st = st == MT_OK ? mt_plan_problem_evaluate(&pb, nv, &s_nocpu, NULL, NULL) : st;
    /* with a CPU at 10 GB/s: the CPU reads it (100 ms), the link stays idle */
    pb.rate[MT_SRC_CPU_MEM] = 10e9;
    st = st == MT_OK ? mt_plan_problem_evaluate(&pb, nv, &s_cpu, NULL, NULL) : st;
    tap_ok(st == MT_OK && fabs(s_gpu - 0.050) < 1e-12 && fabs(s_nocpu - 0.050) < 1e-12 &&
               fabs(s_cpu - 0.100) < 1e-12,
           "prefill streams an NVMe expert over the link to the GPU without a CPU (%.1f ms; "
           "nvme_on_cpu and no CPU: %.1f), on the CPU with nvme_on_cpu and a CPU (%.1f ms)",
           s_gpu * 1e3, s_nocpu * 1e3, s_cpu * 1e3);
}

/*
 * Re-planning a placement for another phase (keep_storage, planner.h) changes only how DRAM
 * experts are computed: a DRAM_PCIE expert where this phase has no PCIe link becomes DRAM_CPU,
 * a DRAM_CPU one where it has no CPU rate becomes DRAM_PCIE; GPU and NVMe experts stay.
 */
static void
test_keep_storage_modes(void)
{
    double p3[3] = {0.5, 0.5, 0.5};
    uint8_t t[3] = {MT_TIER_GPU, MT_TIER_DRAM_PCIE, MT_TIER_DRAM_PCIE};
    struct mt_plan_problem pb;
    double s = 0;
    mt_status_t st;

    memset(&pb, 0, sizeof(pb));
    pb.n_layers = 1;
    pb.n_experts = 3;
    pb.prob = p3;
    pb.expert_bytes = 1e9;
    pb.gpu_capacity = 1e9;
    pb.dram_capacity = 2e9;
    pb.rate[MT_SRC_GPU_MEM] = 1000e9;
    pb.rate[MT_SRC_CPU_MEM] = 100e9;
    pb.batch = 1;
    st = mt_plan_problem_optimize(&pb, true, t, &s);
    tap_ok(st == MT_OK && t[0] == MT_TIER_GPU && t[1] == MT_TIER_DRAM_CPU &&
               t[2] == MT_TIER_DRAM_CPU && fabs(s - 0.010) < 1e-12,
           "keep_storage without a PCIe link: DRAM_PCIE experts become DRAM_CPU (%c%c%c, %.3f ms)",
           mt_tier_code(t[0]), mt_tier_code(t[1]), mt_tier_code(t[2]), s * 1e3);
    t[1] = MT_TIER_DRAM_CPU;
    t[2] = MT_TIER_DRAM_CPU;
    pb.rate[MT_SRC_CPU_MEM] = 0;
    pb.rate[MT_SRC_PCIE] = 50e9;
    st = mt_plan_problem_optimize(&pb, true, t, &s);
    tap_ok(st == MT_OK && t[0] == MT_TIER_GPU && t[1] == MT_TIER_DRAM_PCIE &&
               t[2] == MT_TIER_DRAM_PCIE && fabs(s - 0.020) < 1e-12,
           "keep_storage without a CPU rate: DRAM_CPU experts become DRAM_PCIE (%c%c%c, %.3f ms)",
           mt_tier_code(t[0]), mt_tier_code(t[1]), mt_tier_code(t[2]), s * 1e3);
    /* storage is fixed: an NVMe expert where this phase has no disk has nowhere to go */
    t[2] = MT_TIER_NVME;
    st = mt_plan_problem_optimize(&pb, true, t, &s);
    tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "cannot use") != NULL,
           "keep_storage refuses an NVMe expert without a disk: %s",
           st == MT_OK ? "accepted" : mt_last_error());
}

/*
 * The greedy start's tie rules, seen where every placement that fills the budgets costs the same
 * (so the search keeps the start): experts of equal heat take the GPU in expert order,
 * interleaving the layers (cmp_order), and a DRAM expert goes to the CPU before a PCIe copy.
 */
static void
test_greedy_ties(void)
{
    double p8[8];
    uint8_t t[8];
    struct mt_plan_problem pb;
    double s = 0;
    mt_status_t st;

    /* 2 layers x 4 experts of p 0.5, 2 GPU slots: a GPU expert (0.5 ms) hides under its layer's
       CPU reads (5 ms each), so any 2 GPU experts give 30 ms; the first of each layer take them */
    for (int i = 0; i < 8; i++) {
        p8[i] = 0.5;
    }
    memset(&pb, 0, sizeof(pb));
    pb.n_layers = 2;
    pb.n_experts = 4;
    pb.prob = p8;
    pb.expert_bytes = 1e9;
    pb.gpu_capacity = 2e9;
    pb.dram_capacity = 8e9;
    pb.rate[MT_SRC_GPU_MEM] = 1000e9;
    pb.rate[MT_SRC_CPU_MEM] = 100e9;
    pb.batch = 1;
    st = mt_plan_problem_optimize(&pb, false, t, &s);
    tap_ok(st == MT_OK && t[0] == MT_TIER_GPU && t[4] == MT_TIER_GPU &&
               count_tier(t, 8, MT_TIER_GPU) == 2 && fabs(s - 0.030) < 1e-12,
           "equal heat: expert 0 of each layer takes a GPU slot (%c%c%c%c %c%c%c%c, %.1f ms)",
           mt_tier_code(t[0]), mt_tier_code(t[1]), mt_tier_code(t[2]), mt_tier_code(t[3]),
           mt_tier_code(t[4]), mt_tier_code(t[5]), mt_tier_code(t[6]), mt_tier_code(t[7]),
           s * 1e3);

    /* 1 GB at 100 GB/s either way (the GPU's read of the copy, 1 us, hides): 10 ms on the CPU
       or over the link; the CPU computes it, no copy */
    memset(&pb, 0, sizeof(pb));
    pb.n_layers = 1;
    pb.n_experts = 1;
    pb.prob = p8;
    pb.expert_bytes = 1e9;
    pb.dram_capacity = 1e9;
    pb.rate[MT_SRC_GPU_MEM] = 1e15;
    pb.rate[MT_SRC_CPU_MEM] = 100e9;
    pb.rate[MT_SRC_PCIE] = 100e9;
    pb.batch = 1;
    p8[0] = 1.0;
    st = mt_plan_problem_optimize(&pb, false, t, &s);
    tap_ok(st == MT_OK && t[0] == MT_TIER_DRAM_CPU && fabs(s - 0.010) < 1e-12,
           "a DRAM expert as fast on the CPU as copied stays on the CPU (%c, %.1f ms)",
           mt_tier_code(t[0]), s * 1e3);
}

/* A what-if profile in code: one GPU, CPU, PCIe, one disk. */
static void
make_profile(struct mt_hwprofile *hw, double hbm, double dram, double pcie, double disk)
{
    mt_hwprofile_init(hw);
    snprintf(hw->source, sizeof(hw->source), "test profile");
    hw->gpu.present = true;
    hw->gpu.count = 1;
    hw->gpu.mem_bytes = (uint64_t)80 << 30;
    hw->gpu.hbm_read_gbps = hbm;
    hw->gpu.bf16_tflops = 100;
    hw->pcie.h2d_gbps = pcie;
    hw->cpu.read_gbps = dram;
    hw->cpu.fma_gflops = 5000;
    hw->cpu.n_nodes = 1;
    hw->n_disks = disk > 0 ? 1 : 0;
    hw->disks[0].best_gbps = disk;
    hw->dram_bytes = (uint64_t)2 << 40;
}

/*
 * The decode prediction is never below the expected-load one (planner.h: decode_ms_mean_load is
 * "a bound"): E[max] over a layer's sources is at least the max of their expected loads, though
 * a finite sample of tokens may come out below it. V3.2 with a few GiB of GPU experts beside
 * DRAM ones, the placements where layers wait on two sources at once, must still predict
 * decode_ms >= decode_ms_mean_load, and decode_tok_s from decode_ms.
 */
static void
test_decode_bound(void)
{
    struct mt_model_config cfg;
    struct mt_model_sizes sz;
    struct mt_hwprofile hw;
    struct mt_plan_budget b;
    const int extra_half_gib[] = {2, 5, 8, 13};
    bool ok = true;
    double worst = HUGE_VAL;
    mt_status_t st;

    mt_config_default_v32(&cfg);
    st = mt_model_sizes_compute(&cfg, cfg.fp8, &sz);
    make_profile(&hw, 1000, 400, 0, 7);
    mt_plan_budget_default(&b);
    b.cpu_mem = (uint64_t)1 << 40;
    for (size_t i = 0; st == MT_OK && i < sizeof(extra_half_gib) / sizeof(extra_half_gib[0]);
         i++) {
        struct mt_plan *plan = NULL;

        b.gpu_mem = sz.gpu_other_bytes + (uint64_t)b.ctx * sz.kv_bytes_per_token +
                    b.gpu_reserve + ((uint64_t)extra_half_gib[i] << 29);
        st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan);
        if (st == MT_OK) {
            /* predicted again at its own rates (planner.h: "sampled as mt_plan_build does"),
               the plan's own decode time */
            struct mt_plan_rates r = {.cpu_eff = plan->budget.cpu_eff,
                                      .gpu_eff = plan->gpu_eff,
                                      .disk_eff = plan->disk_eff,
                                      .host_layer_ms = plan->host_layer_ms};
            double again = 0.0;
            double host = 0.0;

            ok = ok && plan->tier[MT_TIER_GPU].experts > 0 &&
                 plan->tier[MT_TIER_DRAM_CPU].experts > 0 && plan->decode_ms_mean_load > 0 &&
                 plan->decode_ms >= plan->decode_ms_mean_load &&
                 fabs(plan->decode_tok_s * plan->decode_ms - 1e3) < 1e-9 &&
                 mt_plan_repredict_decode(plan, NULL, &r, &again, &host) == MT_OK &&
                 fabs(again * 1e3 - plan->decode_ms) < 1e-9 * plan->decode_ms;
            worst = MT_MIN(worst, plan->decode_ms - plan->decode_ms_mean_load);
        }
        mt_plan_destroy(plan);
    }
    tap_ok(st == MT_OK && ok,
           "GPU + DRAM V3.2 plans at 1 to 6.5 GiB of GPU experts: sampled decode never below the "
           "expected-load bound, also predicted again (least margin %.3g ms)%s%s",
           worst, st == MT_OK ? "" : ": ", st == MT_OK ? "" : mt_last_error());
}

/*
 * Prefill's compute choice is made at the plan's prefill batch (planner.h, "prefill": the compute
 * choice at batch prefill_batch; planner.c, mt_plan_prefill_tiers), down to a batch of 2: V3.2
 * with every expert in DRAM, a CPU that reads 25 GB/s and PCIe at 400, copies some of each
 * layer's DRAM experts to GPU slots in a 2-token step ('P'), as many in every layer (uniform
 * routing); decode computes them all on the CPU ('C'). By hand: each expert is used by a step
 * with the same probability u, and its bytes cross the DRAM bus (25 GB/s) whichever side
 * computes it (test_dram_copy_bus), so the bus takes 256 u x / 25 a layer; the CPU's 256 - k at
 * 25 x 0.6 take (256 - k) u x / 15, the longer side until k = 103 (153 / 15 < 256 / 25 <
 * 154 / 15); past it the layer is no shorter, so 103 experts a layer are copied.
 */
static void
test_prefill_batch_2(void)
{
    struct mt_model_config cfg;
    struct mt_model_sizes sz;
    struct mt_hwprofile hw;
    struct mt_plan_budget b;
    struct mt_plan *plan = NULL;
    int decode_c = 0;
    int prefill_p = 0;
    int in_layer_3 = 0;
    mt_status_t st;

    mt_config_default_v32(&cfg);
    st = mt_model_sizes_compute(&cfg, cfg.fp8, &sz);
    make_profile(&hw, 1000, 25, 400, 7);
    mt_plan_budget_default(&b);
    b.gpu_mem = sz.gpu_other_bytes + (uint64_t)b.ctx * sz.kv_bytes_per_token + b.gpu_reserve;
    b.gpu_reserve_auto = false;
    b.cpu_mem = (uint64_t)1 << 40;
    b.prefill_batch = 2;
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan) : st;
    for (int i = 0; st == MT_OK && i < 61 * 256; i++) {
        decode_c += plan->tiers[i] == MT_TIER_DRAM_CPU;
        prefill_p += plan->prefill_tiers[i] == MT_TIER_DRAM_PCIE;
        in_layer_3 += i / 256 == 3 && plan->prefill_tiers[i] == MT_TIER_DRAM_PCIE;
    }
    tap_ok(st == MT_OK && plan->budget.prefill_batch == 2 && decode_c == 58 * 256 &&
               in_layer_3 == 103 && prefill_p == 58 * in_layer_3,
           "all-DRAM V3.2 at a 2-token prefill batch, CPU 25 GB/s, PCIe 400: decode computes "
           "%d experts on the CPU, prefill copies %d of them to the GPU (%d a layer)%s%s",
           decode_c, prefill_p, in_layer_3, st == MT_OK ? "" : ": ",
           st == MT_OK ? "" : mt_last_error());
    /* a 2-token prompt in 2-token chunks is that prefill step (planner.h,
       mt_plan_predict_prompt: each step's MoE at its own size) */
    double prompt = 0.0;
    mt_status_t sp = st == MT_OK ? mt_plan_predict_prompt(plan, &cfg, &sz, 2, 2, &prompt) : st;
    tap_ok(sp == MT_OK && plan->prefill_ms > 0 &&
               fabs(prompt * 1e3 - plan->prefill_ms) < 1e-9 * plan->prefill_ms,
           "a 2-token prompt is predicted as the plan's 2-token prefill step: %.3f ms (%.3f)",
           prompt * 1e3, st == MT_OK ? plan->prefill_ms : 0.0);
    /* decode copies DRAM experts over the fast link (mt_plan_problem.decode_copies): predicted
       again at its own rates, as mt_plan_build predicted it */
    {
        struct mt_plan_rates r = {.cpu_eff = st == MT_OK ? plan->budget.cpu_eff : 1.0,
                                  .gpu_eff = 1.0,
                                  .disk_eff = 1.0,
                                  .host_layer_ms = 0.0};
        double again = 0.0;
        double host = 0.0;

        sp = st == MT_OK ? mt_plan_repredict_decode(plan, NULL, &r, &again, &host) : st;
        tap_ok(sp == MT_OK && fabs(again * 1e3 - plan->decode_ms) < 1e-9 * plan->decode_ms,
               "with decode copies, predicted again at its own rates: %.3f ms (%.3f)",
               again * 1e3, st == MT_OK ? plan->decode_ms : 0.0);
    }
    mt_plan_destroy(plan);
    plan = NULL;
    /* a 1-token step is a decode batch (engine_gpu_moe.c, mark_device): prefill is decode's */
    b.prefill_batch = 1;
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan) : st;
    /* and its time is decode's under expected loads: one token's always-on arithmetic is
       shorter than reading those weights (prompt_always_s takes the longer), and the MoE step
       is decode's */
    tap_ok(st == MT_OK && plan->budget.prefill_batch == 1 &&
               memcmp(plan->prefill_tiers, plan->tiers, (size_t)61 * 256) == 0 &&
               fabs(plan->prefill_ms - plan->decode_ms_mean_load) <
                   1e-9 * plan->decode_ms_mean_load,
           "the same at a 1-token prefill batch: prefill's tiers are decode's, and its step "
           "%.3f ms decode's under expected loads (%.3f)%s%s",
           st == MT_OK ? plan->prefill_ms : 0.0, st == MT_OK ? plan->decode_ms_mean_load : 0.0,
           st == MT_OK ? "" : ": ", st == MT_OK ? "" : mt_last_error());
    sp = st == MT_OK ? mt_plan_predict_prompt(plan, &cfg, &sz, 1, 1, &prompt) : st;
    tap_ok(sp == MT_OK && fabs(prompt * 1e3 - plan->prefill_ms) < 1e-9 * plan->prefill_ms,
           "and a 1-token prompt as its 1-token step: %.3f ms (%.3f)", prompt * 1e3,
           st == MT_OK ? plan->prefill_ms : 0.0);
    mt_plan_destroy(plan);
}

/*
 * The automatic GPU reserve at its edges (planner.c, auto_gpu_reserve): a --gpu-mem that holds
 * every expert with exactly the default reserve beside them keeps that reserve, and room for
 * every expert (the placement may still compute some on the CPU beside the GPU); where experts
 * are off the GPU anyway, the reserve grows from the 1,024-token chunk's work space to the
 * 2,048-token one's only where the bytes that move off the GPU are at most 1/16 of those off
 * it: not with 16 GiB off (1/16: 1 GiB, less than the difference between the two work spaces),
 * but with 32 GiB off (2 GiB, more). A GPU without a FLOP rate leaves prefill unmodelled;
 * without a GPU and without a DRAM rate nothing can be planned.
 */
static void
test_auto_reserve_edges(void)
{
    struct mt_model_config cfg;
    struct mt_model_sizes sz;
    struct mt_hwprofile hw;
    struct mt_plan_budget b;
    struct mt_plan *plan = NULL;
    uint64_t base;
    uint64_t all;
    uint64_t w1;
    uint64_t w2;
    const uint64_t gib = (uint64_t)1 << 30;
    mt_status_t st;

    mt_config_default_v32(&cfg);
    st = mt_model_sizes_compute(&cfg, cfg.fp8, &sz);
    make_profile(&hw, 1000, 400, 0, 7);
    hw.gpu.mem_bytes = (uint64_t)1 << 40;
    mt_plan_budget_default(&b);
    b.cpu_mem = (uint64_t)1 << 40;
    base = sz.gpu_other_bytes + (uint64_t)b.ctx * sz.kv_bytes_per_token;
    all = (uint64_t)58 * 256 * sz.routed_expert_bytes;
    w1 = mt_plan_gpu_work_bytes(&cfg, 1024, b.ctx, true, sz.routed_expert_slot_bytes, false) +
         MT_PLAN_WORK_SLACK;
    w2 = mt_plan_gpu_work_bytes(&cfg, 2048, b.ctx, true, sz.routed_expert_slot_bytes, false) +
         MT_PLAN_WORK_SLACK;

    b.gpu_mem = base + all + b.gpu_reserve;
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan) : st;
    tap_ok(st == MT_OK && plan->budget.gpu_reserve == b.gpu_reserve && plan->reserve_chunk == 0 &&
               plan->gpu_expert_bytes == all,
           "--gpu-mem of exactly every expert and the default reserve: the reserve stays %.2f "
           "GiB, room for all %d experts%s%s",
           st == MT_OK ? plan->budget.gpu_reserve / (double)gib : 0.0,
           st == MT_OK ? (int)(plan->gpu_expert_bytes / sz.routed_expert_bytes) : 0,
           st == MT_OK ? "" : ": ",
           st == MT_OK ? "" : mt_last_error());
    mt_plan_destroy(plan);
    plan = NULL;
    for (int k = 0; k < 2 && st == MT_OK; k++) {
        uint64_t off = (k == 0 ? 16 : 32) * gib;
        uint64_t want = k == 0 ? w1 : w2;

        b.gpu_mem = base + w1 + all - off; /* off: expert bytes the 1,024 chunk's reserve leaves */
        st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan);
        tap_ok(st == MT_OK && w2 - w1 > gib && w2 - w1 < 2 * gib &&
                   plan->budget.gpu_reserve == want &&
                   plan->reserve_chunk == (k == 0 ? 1024 : 2048),
               "%d GiB of experts off the GPU: the reserve for %d-token chunks (%.2f GiB; the "
               "2,048 chunk's needs %.2f GiB more)%s%s",
               k == 0 ? 16 : 32, st == MT_OK ? plan->reserve_chunk : 0,
               st == MT_OK ? plan->budget.gpu_reserve / (double)gib : 0.0,
               (double)(w2 - w1) / (double)gib, st == MT_OK ? "" : ": ",
               st == MT_OK ? "" : mt_last_error());
        mt_plan_destroy(plan);
        plan = NULL;
    }
    /* room beside the weights and the KV cache of exactly the 1,024-token chunk's work space:
       the reserve is that work space, sized for that chunk; one byte less and not even the
       shortest host chunk fits, so the reserve is all the room and sized for no chunk */
    for (int k = 0; k < 2 && st == MT_OK; k++) {
        b.gpu_mem = base + w1 - (uint64_t)k;
        st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan);
        tap_ok(st == MT_OK && plan->budget.gpu_reserve == b.gpu_mem - base &&
                   plan->reserve_chunk == (k == 0 ? 1024 : 0),
               "room of the 1,024 chunk's work space%s: reserve %.6f GiB (want %.6f), sized for "
               "a %d-token chunk%s%s",
               k == 0 ? "" : " less one byte",
               st == MT_OK ? plan->budget.gpu_reserve / (double)gib : 0.0,
               (b.gpu_mem - base) / (double)gib, st == MT_OK ? plan->reserve_chunk : -1,
               st == MT_OK ? "" : ": ", st == MT_OK ? "" : mt_last_error());
        mt_plan_destroy(plan);
        plan = NULL;
    }
    /* a GPU without a FLOP rate: prefill is not modelled (planner.h: prefill_tok_s and
       prefill_ms 0), and no prompt is predicted */
    make_profile(&hw, 1000, 400, 0, 7);
    hw.gpu.bf16_tflops = 0;
    b.gpu_mem = base + b.gpu_reserve;
    st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan);
    {
        double prompt = -1.0;
        mt_status_t sp =
            st == MT_OK ? mt_plan_predict_prompt(plan, &cfg, &sz, 512, 512, &prompt) : st;

        tap_ok(st == MT_OK && strstr(plan->prefill_not_modelled, "no GPU FLOP rate") != NULL &&
                   plan->prefill_ms == 0 && plan->prefill_tok_s == 0 && sp == MT_OK &&
                   prompt == 0 && plan->decode_ms > 0,
               "a GPU without bf16_tflops: prefill not modelled ('%s'), 0 ms, no prompt "
               "predicted (%g s)",
               st == MT_OK ? plan->prefill_not_modelled : mt_last_error(), prompt);
    }
    mt_plan_destroy(plan);
    plan = NULL;
    make_profile(&hw, 1000, 0, 0, 7);
    hw.gpu.present = false;
    st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan);
    tap_ok(st == MT_ERR_INVAL && plan == NULL &&
               strstr(mt_last_error(), "has neither a GPU nor cpu read_gbps") != NULL,
           "no GPU and no DRAM rate: %s", st == MT_OK ? "planned" : mt_last_error());
    mt_plan_destroy(plan);
    plan = NULL;
    /* no read ceiling and no read row, but per-node reads: DRAM reads at their sum */
    hw.cpu.n_nodes = 2;
    hw.cpu.nodes[0].read_gbps = 150;
    hw.cpu.nodes[1].read_gbps = 250;
    st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan);
    tap_ok(st == MT_OK && plan->dram_gbps == 400,
           "no GPU, DRAM rates per NUMA node only: DRAM reads at their sum, %g GB/s (400)%s%s",
           st == MT_OK ? plan->dram_gbps : 0.0, st == MT_OK ? "" : ": ",
           st == MT_OK ? "" : mt_last_error());
    mt_plan_destroy(plan);
}

/*
 * What a profile's learned section does to a plan (planner_int.h, mt_plan_apply_learned;
 * hwprofile.h: reports 0 is "the section is absent"): with reports >= 1 the plan takes the
 * learned CPU, disk, GPU and prefill efficiencies and the host wait, each efficiency clamped to
 * [0.01, MT_PLAN_LEARNED_EFF_MAX]; with reports 0 it keeps the defaults (efficiency 1, the GPU's
 * prompt efficiency MT_PLAN_GPU_PREFILL_EFF, no wait); without a GPU the wait, the GPU engine's,
 * is not taken.
 */
static void
test_learned_apply(void)
{
    struct mt_model_config cfg;
    struct mt_model_sizes sz;
    struct mt_hwprofile hw;
    struct mt_plan_budget b;
    struct mt_plan *p[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    mt_status_t st;

    mt_config_default_v32(&cfg);
    st = mt_model_sizes_compute(&cfg, cfg.fp8, &sz);
    mt_plan_budget_default(&b);
    b.gpu_mem = sz.gpu_other_bytes + (uint64_t)b.ctx * sz.kv_bytes_per_token + b.gpu_reserve;
    b.cpu_mem = (uint64_t)1 << 40;
    make_profile(&hw, 1000, 400, 25, 7);
    hw.learned.cpu_expert_eff = 0.3;
    hw.learned.disk_eff = 0.5;
    hw.learned.gpu_eff = 0.8;
    hw.learned.cpu_prefill_eff = 0.4;
    hw.learned.gpu_prefill_eff = 0.25;
    hw.learned.host_layer_ms = 0.7;
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &p[0]) : st;
    hw.learned.reports = 3;
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &p[1]) : st;
    hw.learned.reports = 1;
    hw.learned.cpu_expert_eff = 0.001;
    hw.learned.disk_eff = 5;
    hw.learned.gpu_eff = 0.001;
    hw.learned.cpu_prefill_eff = 5;
    hw.learned.gpu_prefill_eff = 0.001;
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &p[2]) : st;
    hw.gpu.present = false;
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &p[3]) : st;
    hw.gpu.present = true;
    hw.learned.reports = 2;
    hw.learned.cpu_expert_eff = 5;
    hw.learned.disk_eff = 0.001;
    hw.learned.gpu_eff = 5;
    hw.learned.cpu_prefill_eff = 0.001;
    hw.learned.gpu_prefill_eff = 5;
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &p[4]) : st;
    b.cpu_eff = 0.5; /* --cpu-eff 0.5: the user's choice beats the learned efficiency */
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &p[5]) : st;
    if (st != MT_OK) {
        tap_ok(false, "plans with learned efficiencies: %s", mt_last_error());
        goto out;
    }
    tap_ok(p[0]->budget.cpu_eff == 0.6 && strstr(p[0]->cpu_eff_source, "learned") == NULL &&
               p[0]->disk_eff == 1 && p[0]->gpu_eff == 1 && p[0]->cpu_prefill_eff == 1 &&
               p[0]->gpu_prefill_eff == MT_PLAN_GPU_PREFILL_EFF && p[0]->host_layer_ms == 0,
           "a learned section of 0 reports is not used: CPU eff %.2f (%s)", p[0]->budget.cpu_eff,
           p[0]->cpu_eff_source);
    tap_ok(p[1]->budget.cpu_eff == 0.3 &&
               strcmp(p[1]->cpu_eff_source, "learned: 3 run reports") == 0 &&
               p[1]->disk_eff == 0.5 && p[1]->gpu_eff == 0.8 && p[1]->cpu_prefill_eff == 0.4 &&
               p[1]->gpu_prefill_eff == 0.25 && p[1]->host_layer_ms == 0.7,
           "3 reports: CPU eff %.2f (%s), disk %.2f, GPU %.2f, prefill CPU %.2f GPU %.2f, wait "
           "%.2f ms",
           p[1]->budget.cpu_eff, p[1]->cpu_eff_source, p[1]->disk_eff, p[1]->gpu_eff,
           p[1]->cpu_prefill_eff, p[1]->gpu_prefill_eff, p[1]->host_layer_ms);
    tap_ok(p[2]->budget.cpu_eff == 0.01 &&
               strcmp(p[2]->cpu_eff_source, "learned: 1 run report") == 0 &&
               p[2]->disk_eff == MT_PLAN_LEARNED_EFF_MAX && p[2]->gpu_eff == 0.01 &&
               p[2]->cpu_prefill_eff == MT_PLAN_LEARNED_EFF_MAX && p[2]->gpu_prefill_eff == 0.01,
           "learned efficiencies are clamped to [0.01, %g]: CPU %.3f, disk %.3f, GPU %.3f, "
           "prefill CPU %.3f GPU %.3f",
           MT_PLAN_LEARNED_EFF_MAX, p[2]->budget.cpu_eff, p[2]->disk_eff, p[2]->gpu_eff,
           p[2]->cpu_prefill_eff, p[2]->gpu_prefill_eff);
    tap_ok(p[4]->budget.cpu_eff == MT_PLAN_LEARNED_EFF_MAX &&
               strcmp(p[4]->cpu_eff_source, "learned: 2 run reports") == 0 &&
               p[4]->disk_eff == 0.01 && p[4]->gpu_eff == MT_PLAN_LEARNED_EFF_MAX &&
               p[4]->cpu_prefill_eff == 0.01 && p[4]->gpu_prefill_eff == MT_PLAN_LEARNED_EFF_MAX,
           "... and from the other side: CPU %.3f, disk %.3f, GPU %.3f, prefill CPU %.3f GPU %.3f",
           p[4]->budget.cpu_eff, p[4]->disk_eff, p[4]->gpu_eff, p[4]->cpu_prefill_eff,
           p[4]->gpu_prefill_eff);
    tap_ok(p[5]->budget.cpu_eff == 0.5 && strcmp(p[5]->cpu_eff_source, "--cpu-eff") == 0 &&
               p[5]->disk_eff == 0.01,
           "--cpu-eff 0.5 is kept over a learned CPU efficiency: %.3f (%s)", p[5]->budget.cpu_eff,
           p[5]->cpu_eff_source);
    tap_ok(p[2]->host_layer_ms == 0.7 && p[3]->host_layer_ms == 0,
           "the learned host wait is taken with a GPU (%.2f ms), not without one (%.2f)",
           p[2]->host_layer_ms, p[3]->host_layer_ms);
    /* and a plan file keeps them */
    char path[512];
    struct mt_plan *back = NULL;
    snprintf(path, sizeof(path), "%s/plan-learned.json", tap_tmpdir());
    st = mt_plan_save(p[1], path);
    st = st == MT_OK ? mt_plan_load(path, &back) : st;
    tap_ok(st == MT_OK && back->budget.cpu_eff == 0.3 && back->disk_eff == 0.5 &&
               back->gpu_eff == 0.8 && back->cpu_prefill_eff == 0.4 &&
               back->gpu_prefill_eff == 0.25 && back->host_layer_ms == 0.7,
           "a plan file keeps the learned efficiencies and wait%s%s", st == MT_OK ? "" : ": ",
           st == MT_OK ? "" : mt_last_error());
    mt_plan_destroy(back);
out:
    for (int i = 0; i < 6; i++) {
        mt_plan_destroy(p[i]);
    }
}

/* patch_first's drop: the value that follows find, up to the next ',' or line end */
#define PATCH_VALUE ((size_t)-1)

/* Replace the first `find` in a file, and the `drop` bytes after it, with `repl` (test plans
 * are small). Whether it did (false: find is not there). */
static bool
patch_first(const char *path, const char *find, size_t drop, const char *repl)
{
    static char buf[1 << 20];
    static char out[(1 << 20) + 64];
    FILE *f;
    char *p;

    if (tap_read_text(path, buf, sizeof(buf)) == 0) {
        return false;
    }
    p = strstr(buf, find);
    if (p != NULL && drop == PATCH_VALUE) {
        drop = strcspn(p + strlen(find), ",\n");
    }
    if (p == NULL || strlen(p + strlen(find)) < drop || strlen(repl) > 64 + strlen(find)) {
        return false;
    }
    snprintf(out, sizeof(out), "%.*s%s%s", (int)(p - buf), buf, repl, p + strlen(find) + drop);
    f = fopen(path, "w");
    if (f == NULL) {
        return false;
    }
    fputs(out, f);
    return fclose(f) == 0;
}

/*
 * A plan file edited by hand: numbers out of range, a placement beyond the plan's own budgets,
 * the version spelled 1.0. plan is the V3.2 plan of test_v32_plans (no GPU room for experts,
 * DRAM for all of them, every expert 'C' in decode; a 256-token prefill copies some, expert 0 of
 * each layer first: 'P'); each case edits a fresh copy of it at path.
 */
static void
test_plan_file_edits(const struct mt_plan *plan, const char *path)
{
    static const struct {
        const char *find;
        size_t drop; /* bytes after find that repl replaces too (PATCH_VALUE: its value) */
        const char *repl;
        const char *find2; /* a second edit (drop 0), or NULL */
        const char *repl2;
        const char *err; /* in the message of the refusal; NULL: the edited plan loads */
    } edits[] = {
        {"\"pcie_gbps\": ", PATCH_VALUE, "\"pcie_gbps\": -3", NULL, NULL,
         "field 'hardware.pcie_gbps' must be a finite number >= 0 (got -3)"},
        {"\"decode_tok_s\": ", PATCH_VALUE, "\"decode_tok_s\": -1", NULL, NULL,
         "field 'prediction.decode_tok_s' must be a finite number >= 0"},
        /* the first tier is the gpu's */
        {"\"bytes_per_token\": ", PATCH_VALUE, "\"bytes_per_token\": -1", NULL, NULL,
         "field 'prediction.tiers.gpu.bytes_per_token' must be a finite number >= 0"},
        {"\"host_layer_ms\": ", PATCH_VALUE, "\"host_layer_ms\": -0.5", NULL, NULL,
         "field 'hardware.host_layer_ms' must be a finite number >= 0"},
        {"\"cpu_eff\": ", PATCH_VALUE, "\"cpu_eff\": -0.6", NULL, NULL,
         "field 'budgets.cpu_eff' must be an efficiency in [0.01, 2]"},
        /* below --cpu-eff's floor: the planner never writes it (times overflow any print) */
        {"\"cpu_eff\": ", PATCH_VALUE, "\"cpu_eff\": 0.001", NULL, NULL,
         "field 'budgets.cpu_eff' must be an efficiency in [0.01, 2] (got 0.001"},
        /* up to the learned maximum: a learned efficiency over the profile's ceiling */
        {"\"cpu_eff\": ", PATCH_VALUE, "\"cpu_eff\": 1.5", NULL, NULL, NULL},
        /* both ends of the range load */
        {"\"cpu_eff\": ", PATCH_VALUE, "\"cpu_eff\": 0.01", NULL, NULL, NULL},
        {"\"cpu_eff\": ", PATCH_VALUE, "\"cpu_eff\": 2", NULL, NULL, NULL},
        /* no KV cache: the planner writes at least one token */
        {"\"ctx\": ", PATCH_VALUE, "\"ctx\": 0", NULL, NULL,
         "field 'budgets.ctx' must be an integer in [1, "},
        /* 'C' experts need the CPU's DRAM rate the cost model computes them at */
        {"\"dram_gbps\": ", PATCH_VALUE, "\"dram_gbps\": 0", NULL, NULL,
         "layer 3 puts expert 0 on 'C' in 'tiers', but field 'hardware.dram_gbps' is 0"},
        /* and prefill's 'P' experts need the PCIe link they are copied over */
        {"\"pcie_gbps\": ", PATCH_VALUE, "\"pcie_gbps\": 0", NULL, NULL,
         "layer 3 puts expert 0 on 'P' in 'prefill', but field 'hardware.pcie_gbps' is 0"},
        {"\"gpu_eff\": ", PATCH_VALUE, "\"gpu_eff\": 0", NULL, NULL,
         "field 'hardware.gpu_eff' must be an efficiency in [0.01, 2] (got 0;"},
        {"\"cpu_prefill_eff\": ", PATCH_VALUE, "\"cpu_prefill_eff\": 2.5", NULL, NULL,
         "field 'hardware.cpu_prefill_eff' must be an efficiency"},
        {"\"gpu_prefill_eff\": ", PATCH_VALUE, "\"gpu_prefill_eff\": -1", NULL, NULL,
         "field 'hardware.gpu_prefill_eff' must be an efficiency in [0.01, 2] (got -1;"},
        /* 0 where it means none: a prediction a hand-made plan does not have */
        {"\"decode_ms_mean_load\": ", PATCH_VALUE, "\"decode_ms_mean_load\": 0", NULL, NULL, NULL},
        /* an optional number left out takes its default */
        {"\"gpu_eff\": 1.0,", 0, "", NULL, NULL, NULL},
        /* JSON tools may rewrite 1 as 1.0: the same version, as in hardware profiles */
        {"\"version\": ", PATCH_VALUE, "\"version\": 1.0", NULL, NULL, NULL},
        {"\"version\": ", PATCH_VALUE, "\"version\": 1.5", NULL, NULL,
         "field 'version' must be an integer"},
        /* budgets and placement: the planner left no GPU room, and DRAM for every expert */
        {"\"gpu_expert_bytes\": ", PATCH_VALUE, "\"gpu_expert_bytes\": 1", NULL, NULL,
         "field 'budgets.gpu_expert_bytes' is 1, more than the 0 bytes gpu_mem_bytes leaves"},
        /* a 9 put before its digits */
        {"\"dram_expert_bytes\": ", 0, "\"dram_expert_bytes\": 9", NULL, NULL,
         "more than the 1095216660480 bytes cpu_mem_bytes leaves after cpu_reserve_bytes"},
        {"\"dram_expert_bytes\": ", PATCH_VALUE, "\"dram_expert_bytes\": 44050944", NULL, NULL,
         "its layers put 14848 experts in DRAM ('C', 'P'), but budgets.dram_expert_bytes "
         "44050944 holds 1 of"},
        {"\"tiers\": \"C", 0, "\"tiers\": \"G", "\"prefill\": \"P", "\"prefill\": \"G",
         "its layers put 1 expert on the GPU ('G'), but budgets.gpu_expert_bytes 0 holds 0"},
        /* a 'P' expert is stored in DRAM too: 14,848 with one of them 'P' overflow a budget of
           14,847 */
        {"\"dram_expert_bytes\": ", PATCH_VALUE, "\"dram_expert_bytes\": 654024365568",
         "\"tiers\": \"C", "\"tiers\": \"P",
         "its layers put 14848 experts in DRAM ('C', 'P'), but budgets.dram_expert_bytes "
         "654024365568 holds 14847 of"},
        /* prefill may not move a DRAM expert to NVMe either */
        {"\"prefill\": \"P", 0, "\"prefill\": \"N", NULL, NULL,
         "layer 3 expert 0 is 'C' in 'tiers' but 'N' in 'prefill'"},
        /* fp8 is a boolean, not a number JSON tools might write for it */
        {"\"fp8\": true", 0, "\"fp8\": 1", NULL, NULL, "field 'model.fp8' must be true or false"},
        /* each layer once */
        {"\"layer\": 4,", 0, "\"layer\": 3,", NULL, NULL, "layer 3 listed twice"},
        /* a key no section knows, in each object of the plan: refused by name (a misspelt
           optional field would otherwise load as its default) */
        {"\"format\": ", 0, "\"bogus\": 1, \"format\": ", NULL, NULL, "unknown key 'bogus'"},
        {"\"expert_bytes\": ", 0, "\"bogus\": 1, \"expert_bytes\": ", NULL, NULL,
         "unknown key 'model.bogus'"},
        {"\"ctx\": ", 0, "\"bogus\": 1, \"ctx\": ", NULL, NULL, "unknown key 'budgets.bogus'"},
        {"\"hbm_gbps\": ", 0, "\"bogus\": 1, \"hbm_gbps\": ", NULL, NULL,
         "unknown key 'hardware.bogus'"},
        {"\"tokens\": ", 0, "\"bogus\": 1, \"tokens\": ", NULL, NULL,
         "unknown key 'activation.bogus'"},
        {"\"decode_tok_s\": ", 0, "\"bogus\": 1, \"decode_tok_s\": ", NULL, NULL,
         "unknown key 'prediction.bogus'"},
        {"\"tiers\": {", 0, "\"tiers\": {\"tpu\": {}, ", NULL, NULL,
         "unknown key 'prediction.tiers.tpu'"},
        /* the first tier is the gpu's */
        {"\"ms_per_token\": ", 0, "\"bogus\": 1, \"ms_per_token\": ", NULL, NULL,
         "unknown key 'prediction.tiers.gpu.bogus'"},
        {"\"layer\": 3,", 0, "\"layer\": 3, \"bogus\": 1,", NULL, NULL,
         "unknown key 'layers[].bogus'"},
        /* a number that is a string, a string that is a number */
        {"\"decode_ms_mean_load\": ", PATCH_VALUE, "\"decode_ms_mean_load\": \"1\"", NULL, NULL,
         "field 'prediction.decode_ms_mean_load' must be a number"},
        {"\"bottleneck\": ", PATCH_VALUE, "\"bottleneck\": 5", NULL, NULL,
         "field 'prediction.bottleneck' must be a string"},
        /* a model field edited without its dims_hash */
        {"\"hidden_size\": ", PATCH_VALUE, "\"hidden_size\": 7169", NULL, NULL,
         "does not match its model fields"},
        /* 'X' is no tier code at all */
        {"\"tiers\": \"C", 0, "\"tiers\": \"X", "\"prefill\": \"P", "\"prefill\": \"X",
         "layer 3 'tiers' has code 'X' for expert 0 (want one of G C P N)"},
        /* a prompt step of no tokens: the planner writes at least one */
        {"\"prefill_batch\": ", PATCH_VALUE, "\"prefill_batch\": 0", NULL, NULL,
         "field 'budgets.prefill_batch' must be an integer in [1, "},
        /* layers are numbered 0 to num_hidden_layers - 1: 61 is one past V3.2's last */
        {"\"layer\": 3,", 0, "\"layer\": 61,", NULL, NULL,
         "field 'layers[].layer' must be an integer in [0, 60]"},
        /* one code per expert: 257 for 256 experts is one too many */
        {"\"tiers\": \"C", 0, "\"tiers\": \"CC", NULL, NULL,
         "layer 3 'tiers' must be a string of 256 tier codes"},
        /* '-' marks a dense layer's slots, not an expert of a MoE layer */
        {"\"tiers\": \"C", 0, "\"tiers\": \"-", "\"prefill\": \"P", "\"prefill\": \"-",
         "layer 3 'tiers' has code '-' for expert 0 (want one of G C P N)"},
    };

    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        const char *what = edits[i].repl[0] != '\0' ? edits[i].repl : edits[i].find;
        struct mt_plan *back = NULL;
        bool patched;
        mt_status_t st;

        patched = mt_plan_save(plan, path) == MT_OK &&
                  patch_first(path, edits[i].find, edits[i].drop, edits[i].repl) &&
                  (edits[i].find2 == NULL || patch_first(path, edits[i].find2, 0, edits[i].repl2));
        st = mt_plan_load(path, &back);
        if (edits[i].err == NULL) {
            tap_ok(patched && st == MT_OK && back != NULL, "plan edited (%s) loads%s%s", what,
                   st == MT_OK ? "" : ": ", st == MT_OK ? "" : mt_last_error());
        } else {
            tap_ok(patched && st == MT_ERR_FORMAT && back == NULL &&
                       strstr(mt_last_error(), edits[i].err) != NULL,
                   "plan edited (%s) is refused: %s", what,
                   st == MT_OK ? "it loaded" : mt_last_error());
        }
        mt_plan_destroy(back);
    }

    /* prefill's 'P' experts are computed on the GPU: a plan edited to hbm_gbps 0 (no GPU), with
       its DRAM budget cut to what all its experts take so that it fits a plan without a GPU
       (check_budgets), is refused for the GPU rate they need */
    {
        char dram[64];
        struct mt_plan *b0 = NULL;
        bool ok;
        mt_status_t s0;

        snprintf(dram, sizeof(dram), "\"dram_expert_bytes\": %" PRIu64,
                 (uint64_t)58 * 256 * plan->expert_bytes);
        ok = mt_plan_save(plan, path) == MT_OK &&
             patch_first(path, "\"dram_expert_bytes\": ", PATCH_VALUE, dram) &&
             patch_first(path, "\"hbm_gbps\": ", PATCH_VALUE, "\"hbm_gbps\": 0");
        s0 = mt_plan_load(path, &b0);
        tap_ok(ok && s0 == MT_ERR_FORMAT && b0 == NULL &&
                   strstr(mt_last_error(), "layer 3 puts expert 0 on 'P' in 'prefill', but field "
                                           "'hardware.hbm_gbps' is 0") != NULL,
               "plan edited to hbm_gbps 0 under prefill's 'P' experts (its DRAM budget fitting a "
               "plan without a GPU) is refused: %s",
               s0 == MT_OK ? "it loaded" : mt_last_error());
        mt_plan_destroy(b0);
    }

    /* a prediction that is not its layers' (a tier's experts, bytes or bytes per token, a
       decode speed off 1 / decode_ms by 0.1%, or one of the two 0 and not the other) loads as
       none: times 0, tiers counted again */
    char speed[64];
    snprintf(speed, sizeof(speed), "\"decode_tok_s\": %.12g", plan->decode_tok_s * 1.001);
    const struct {
        const char *find;
        const char *repl;
    } stale[] = {
        {"\"experts\": ", "\"experts\": 1"},
        {"\"bytes\": ", "\"bytes\": 7"},
        {"\"bytes_per_token\": ", "\"bytes_per_token\": 5"},
        {"\"decode_tok_s\": ", speed},
        {"\"decode_ms\": ", "\"decode_ms\": 0"},
        {"\"decode_tok_s\": ", "\"decode_tok_s\": 0"},
    };
    for (size_t i = 0; i < sizeof(stale) / sizeof(stale[0]); i++) {
        struct mt_plan *b2 = NULL;
        bool ok = mt_plan_save(plan, path) == MT_OK &&
                  patch_first(path, stale[i].find, PATCH_VALUE, stale[i].repl) &&
                  patch_first(path, "\"host_layers_per_token\": ", PATCH_VALUE,
                              "\"host_layers_per_token\": 0.5"); /* so its reset shows */
        mt_status_t st2 = mt_plan_load(path, &b2);
        tap_ok(ok && plan->decode_tok_s > 0 && st2 == MT_OK && b2->decode_tok_s == 0 &&
                   b2->decode_ms == 0 && b2->tier[MT_TIER_GPU].experts == 0 &&
                   b2->tier[MT_TIER_GPU].bytes == 0 && b2->tier[MT_TIER_GPU].bytes_per_token == 0,
               "a plan edited (%s) loads predicting nothing (%g tok/s)", stale[i].repl,
               st2 == MT_OK ? b2->decode_tok_s : -1.0);
        /* every other time too, and it says why prefill is not modelled */
        tap_ok(ok && plan->decode_ms_mean_load > 0 && plan->always_on_ms > 0 &&
                   plan->prefill_tok_s > 0 && plan->prefill_ms > 0 && st2 == MT_OK &&
                   b2->decode_ms_mean_load == 0 && b2->always_on_ms == 0 &&
                   b2->prefill_tok_s == 0 && b2->prefill_ms == 0 &&
                   b2->host_layers_per_token == 0 && strcmp(b2->bottleneck, "not predicted") == 0 &&
                   strstr(b2->prefill_not_modelled, "edited") != NULL,
               "... with no time of any kind, bottleneck '%s', prefill not modelled: '%s'",
               st2 == MT_OK ? b2->bottleneck : "?", st2 == MT_OK ? b2->prefill_not_modelled : "?");
        mt_plan_destroy(b2);
    }

    /* an efficiency left out loads as 1 (planner.h: "optional: 1"); a dims_hash with anything
       after its 16 hex digits is refused */
    struct mt_plan *back = NULL;
    char find[64];
    char repl[72];
    bool patched =
        mt_plan_save(plan, path) == MT_OK && patch_first(path, "\"gpu_eff\": 1.0,", 0, "");
    mt_status_t st = mt_plan_load(path, &back);
    tap_ok(patched && st == MT_OK && back->gpu_eff == 1,
           "a plan without hardware.gpu_eff loads it as 1 (%g)", st == MT_OK ? back->gpu_eff : -1);
    mt_plan_destroy(back);
    back = NULL;
    /* 'layers' must be an array: an object in its place is refused, not read as no layers */
    {
        static char text[1 << 20];
        const char *a;
        const char *z;

        if (mt_plan_save(plan, path) != MT_OK) {
            text[0] = '\0';
        } else {
            tap_read_text(path, text, sizeof(text));
        }
        a = strstr(text, "\"layers\": [");
        z = a != NULL ? strstr(a, "\"prediction\":") : NULL;
        patched = z != NULL &&
                  patch_first(path, "\"layers\": [", (size_t)(z - a) - strlen("\"layers\": ["),
                              "\"layers\": {}, ");
        st = mt_plan_load(path, &back);
        tap_ok(patched && st == MT_ERR_FORMAT && back == NULL &&
                   strstr(mt_last_error(), "'layers' must be an array") != NULL,
               "a plan whose 'layers' is an object is refused: %s",
               st == MT_OK ? "it loaded" : mt_last_error());
        mt_plan_destroy(back);
        back = NULL;
    }
    /* a plan written before the GPU's prompt FLOPs were modelled has no gpu_prefill_eff (the
       last hardware field): it loads as 0 (planner.h), not as an efficiency */
    patched = plan->hbm_gbps > 0 && mt_plan_save(plan, path) == MT_OK &&
              patch_first(path, ",\n  \"gpu_prefill_eff\": ", PATCH_VALUE, "");
    st = mt_plan_load(path, &back);
    tap_ok(patched && st == MT_OK && back->gpu_prefill_eff == 0,
           "a plan without hardware.gpu_prefill_eff loads it as 0 (%g)%s%s",
           st == MT_OK ? back->gpu_prefill_eff : -1, st == MT_OK ? "" : ": ",
           st == MT_OK ? "" : mt_last_error());
    mt_plan_destroy(back);
    back = NULL;
    /* the other optional numbers left out take their defaults: efficiencies 1, waits 0 */
    patched = mt_plan_save(plan, path) == MT_OK &&
              patch_first(path, ",\n  \"disk_eff\": ", PATCH_VALUE, "") &&
              patch_first(path, ",\n  \"cpu_prefill_eff\": ", PATCH_VALUE, "") &&
              patch_first(path, ",\n  \"host_layer_ms\": ", PATCH_VALUE, "") &&
              patch_first(path, ",\n  \"host_layers_per_token\": ", PATCH_VALUE, "");
    st = mt_plan_load(path, &back);
    tap_ok(patched && st == MT_OK && back->disk_eff == 1 && back->cpu_prefill_eff == 1 &&
               back->host_layer_ms == 0 && back->host_layers_per_token == 0,
           "a plan without disk_eff, cpu_prefill_eff, host_layer_ms and host_layers_per_token "
           "loads them as 1, 1, 0, 0 (%g, %g, %g, %g)%s%s",
           st == MT_OK ? back->disk_eff : -1, st == MT_OK ? back->cpu_prefill_eff : -1,
           st == MT_OK ? back->host_layer_ms : -1, st == MT_OK ? back->host_layers_per_token : -1,
           st == MT_OK ? "" : ": ", st == MT_OK ? "" : mt_last_error());
    mt_plan_destroy(back);
    back = NULL;
    /* two fields left out: the message names the first one read, not the last */
    patched = mt_plan_save(plan, path) == MT_OK &&
              patch_first(path, ",\n  \"ctx\": ", PATCH_VALUE, "") &&
              patch_first(path, ",\n  \"kv_bytes\": ", PATCH_VALUE, "");
    st = mt_plan_load(path, &back);
    tap_ok(patched && st == MT_ERR_FORMAT && back == NULL &&
               strstr(mt_last_error(), "missing field 'budgets.ctx'") != NULL,
           "a plan without budgets.ctx and budgets.kv_bytes is refused for the first: %s",
           st == MT_OK ? "it loaded" : mt_last_error());
    mt_plan_destroy(back);
    back = NULL;
    /* a prefill speed of null with an empty reason still says prefill is not modelled */
    patched = mt_plan_save(plan, path) == MT_OK &&
              patch_first(path, "\"prefill_tok_s\": ", PATCH_VALUE,
                          "\"prefill_tok_s\": null, \"prefill_not_modelled\": \"\"");
    st = mt_plan_load(path, &back);
    tap_ok(patched && st == MT_OK && back->prefill_not_modelled[0] != '\0',
           "a plan with prefill_tok_s null and an empty reason loads as not modelled ('%s')",
           st == MT_OK ? back->prefill_not_modelled : mt_last_error());
    mt_plan_destroy(back);
    back = NULL;
    snprintf(find, sizeof(find), "\"dims_hash\": \"%016" PRIx64, plan->dims_hash);
    snprintf(repl, sizeof(repl), "%sZ", find);
    patched = mt_plan_save(plan, path) == MT_OK && patch_first(path, find, 0, repl);
    st = mt_plan_load(path, &back);
    tap_ok(patched && st == MT_ERR_FORMAT && back == NULL &&
               strstr(mt_last_error(), "'model.dims_hash' must be 16 lowercase hex") != NULL,
           "a dims_hash of 16 hex digits and a Z is refused: %s",
           st == MT_OK ? "it loaded" : mt_last_error());
    mt_plan_destroy(back);
    back = NULL;
    /* the right hash in upper case is not the format either (it has letters: a to f) */
    snprintf(repl, sizeof(repl), "\"dims_hash\": \"%016" PRIX64, plan->dims_hash);
    patched = strcmp(find, repl) != 0 && mt_plan_save(plan, path) == MT_OK &&
              patch_first(path, find, 0, repl);
    st = mt_plan_load(path, &back);
    tap_ok(patched && st == MT_ERR_FORMAT && back == NULL &&
               strstr(mt_last_error(), "'model.dims_hash' must be 16 lowercase hex") != NULL,
           "the dims_hash in upper case is refused: %s",
           st == MT_OK ? "it loaded" : mt_last_error());
    mt_plan_destroy(back);
}

/*
 * A GPU whose FLOPs the profile does not give (gpu.bf16_tflops 0: "not modelled", planner.h) is
 * still a GPU: its plan, with experts on it, loads back (plan_file.c check_budgets counts GPU
 * room where hardware.hbm_gbps is not 0).
 */
static void
test_plan_gpu_without_flops(void)
{
    struct mt_model_config cfg;
    struct mt_model_sizes sz;
    struct mt_hwprofile hw;
    struct mt_plan_budget b;
    struct mt_plan *plan = NULL;
    struct mt_plan *back = NULL;
    char path[512];
    mt_status_t st;

    mt_config_default_v32(&cfg);
    st = mt_model_sizes_compute(&cfg, cfg.fp8, &sz);
    mt_plan_budget_default(&b);
    b.gpu_reserve_auto = false;
    b.gpu_mem = sz.gpu_other_bytes + (uint64_t)b.ctx * sz.kv_bytes_per_token + b.gpu_reserve +
                100 * sz.routed_expert_bytes;
    b.cpu_mem = (uint64_t)1 << 40;
    make_profile(&hw, 1000, 100, 25, 7);
    hw.gpu.bf16_tflops = 0;
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan) : st;
    snprintf(path, sizeof(path), "%s/plan-noflops.json", tap_tmpdir());
    st = st == MT_OK ? mt_plan_save(plan, path) : st;
    st = st == MT_OK ? mt_plan_load(path, &back) : st;
    tap_ok(st == MT_OK && plan->gpu_tflops == 0 && plan->tier[MT_TIER_GPU].experts == 100 &&
               back->tier[MT_TIER_GPU].experts == 100,
           "a plan for a GPU without bf16_tflops, 100 experts on it, loads back%s%s",
           st == MT_OK ? "" : ": ", st == MT_OK ? "" : mt_last_error());
    mt_plan_destroy(back);
    mt_plan_destroy(plan);
}

/*
 * A plan that streams every expert (no DRAM for experts) needs the CPU's DRAM rate to compute
 * what it streams in decode (plan_file.c, check_tier_rates): one edited to dram_gbps 0 is
 * refused, naming it.
 */
static void
test_nvme_plan_rates(void)
{
    struct mt_model_config cfg;
    struct mt_model_sizes sz;
    struct mt_hwprofile hw;
    struct mt_plan_budget b;
    struct mt_plan *plan = NULL;
    struct mt_plan *back = NULL;
    char path[512];
    mt_status_t st;

    mt_config_default_v32(&cfg);
    st = mt_model_sizes_compute(&cfg, cfg.fp8, &sz);
    mt_plan_budget_default(&b);
    b.gpu_mem = sz.gpu_other_bytes + (uint64_t)b.ctx * sz.kv_bytes_per_token + b.gpu_reserve;
    b.gpu_reserve_auto = false;
    b.cpu_mem = b.cpu_reserve;
    make_profile(&hw, 1000, 100, 25, 7);
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan) : st;
    if (st == MT_OK) {
        /* each token reads 8 experts a layer from disk: 58 x 8 expert reads at 7 GB/s */
        double want = 58.0 * 8.0 * (double)sz.routed_expert_bytes / 7e9 * 1e3;
        tap_ok(fabs(plan->tier[MT_TIER_NVME].ms_per_token - want) < 1e-9 * want,
               "an all-NVMe plan's disk tier takes %.3f ms a token: 58 x 8 experts at 7 GB/s, "
               "%.3f ms", plan->tier[MT_TIER_NVME].ms_per_token, want);
    }
    snprintf(path, sizeof(path), "%s/plan-nvme.json", tap_tmpdir());
    bool patched = st == MT_OK && plan->tier[MT_TIER_NVME].experts == 58 * 256 &&
                   mt_plan_save(plan, path) == MT_OK &&
                   patch_first(path, "\"dram_gbps\": ", PATCH_VALUE, "\"dram_gbps\": 0");
    st = patched ? mt_plan_load(path, &back) : MT_ERR_INTERNAL;
    tap_ok(patched && st == MT_ERR_FORMAT && back == NULL &&
               strstr(mt_last_error(), "on 'N' in 'tiers', but field 'hardware.dram_gbps' is 0") !=
                   NULL,
           "an all-NVMe plan edited to dram_gbps 0 is refused: %s",
           st == MT_OK ? "it loaded" : mt_last_error());
    mt_plan_destroy(back);
    back = NULL;
    /* and the disk rate it streams them at */
    patched = patched && mt_plan_save(plan, path) == MT_OK &&
              patch_first(path, "\"disk_gbps\": ", PATCH_VALUE, "\"disk_gbps\": 0");
    st = patched ? mt_plan_load(path, &back) : MT_ERR_INTERNAL;
    tap_ok(patched && st == MT_ERR_FORMAT && back == NULL &&
               strstr(mt_last_error(), "on 'N' in 'tiers', but field 'hardware.disk_gbps' is 0") !=
                   NULL,
           "an all-NVMe plan edited to disk_gbps 0 is refused: %s",
           st == MT_OK ? "it loaded" : mt_last_error());
    mt_plan_destroy(back);
    mt_plan_destroy(plan);
}

/*
 * A plan without a GPU for a model whose every layer is MoE (first_k_dense_replace 0) saves and
 * loads back as it was made: the model field 0 (a valid value, planner.h), and no DRAM kept for
 * the GPU engine's prompt buffers (host_work_bytes "0 without a GPU", planner.h).
 */
static void
test_plan_file_cpu_all_moe(void)
{
    struct mt_model_config cfg;
    struct mt_model_sizes sz;
    struct mt_hwprofile hw;
    struct mt_plan_budget b;
    struct mt_plan *plan = NULL;
    struct mt_plan *back = NULL;
    char path[512];
    mt_status_t st;

    mt_config_default_v32(&cfg);
    cfg.first_k_dense_replace = 0;
    st = mt_model_sizes_compute(&cfg, cfg.fp8, &sz);
    make_profile(&hw, 1000, 400, 25, 7);
    hw.gpu.present = false;
    hw.gpu.count = 0;
    mt_plan_budget_default(&b);
    b.cpu_mem = (uint64_t)1 << 40;
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan) : st;
    snprintf(path, sizeof(path), "%s/plan-all-moe.json", tap_tmpdir());
    st = st == MT_OK ? mt_plan_save(plan, path) : st;
    st = st == MT_OK ? mt_plan_load(path, &back) : st;
    st = st == MT_OK ? mt_plan_check_model(back, path, &cfg, sz.routed_expert_bytes) : st;
    /* (no GPU: the file has no gpu_prefill_eff, which loads as 0, though the planner set one) */
    tap_ok(st == MT_OK && plan->host_work_bytes == 0 && back->first_k_dense_replace == 0 &&
               back->host_work_bytes == 0 && memcmp(back->tiers, plan->tiers, 61 * 256) == 0 &&
               plan->gpu_prefill_eff > 0 && back->gpu_prefill_eff == 0,
           "a plan without a GPU for a model with no dense layer loads back: first_k_dense_replace "
           "%d, prompt buffers %" PRIu64 " B, gpu_prefill_eff %g%s%s",
           st == MT_OK ? back->first_k_dense_replace : -1, st == MT_OK ? back->host_work_bytes : 0,
           st == MT_OK ? back->gpu_prefill_eff : -1, st == MT_OK ? "" : ": ",
           st == MT_OK ? "" : mt_last_error());
    mt_plan_destroy(back);
    mt_plan_destroy(plan);
}

/*
 * A plan without a GPU (hardware.hbm_gbps 0) keeps the always-on weights and the KV cache in DRAM
 * too, so what its experts may take is cpu_mem - cpu_reserve - always_on - kv (planner.c,
 * mt_plan_expert_room), and no GPU bytes; its file is checked in that accounting (plan_file.c,
 * check_budgets): a DRAM budget one byte past it, or any GPU budget, is refused.
 */
static void
test_cpu_plan_budgets(void)
{
    struct mt_model_config cfg;
    struct mt_model_sizes sz;
    struct mt_hwprofile hw;
    struct mt_plan_budget b;
    struct mt_plan *plan = NULL;
    struct mt_plan *back = NULL;
    char path[512];
    char repl[64];
    uint64_t room = 0;
    bool ok;
    mt_status_t st;

    mt_config_default_v32(&cfg);
    st = mt_model_sizes_compute(&cfg, cfg.fp8, &sz);
    make_profile(&hw, 1000, 400, 25, 7);
    hw.gpu.present = false;
    hw.gpu.count = 0;
    mt_plan_budget_default(&b);
    b.cpu_mem = (uint64_t)1 << 40;
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan) : st;
    if (st == MT_OK) {
        room = plan->budget.cpu_mem - plan->budget.cpu_reserve - plan->always_on_bytes -
               plan->kv_bytes;
    }
    tap_ok(st == MT_OK && plan->hbm_gbps == 0 && plan->gpu_expert_bytes == 0 &&
               plan->dram_expert_bytes == room && plan->tier[MT_TIER_DRAM_CPU].experts == 58 * 256,
           "a plan without a GPU: no GPU bytes, DRAM for experts after always-on and KV (%.2f "
           "GiB)%s%s",
           room / 1073741824.0, st == MT_OK ? "" : ": ", st == MT_OK ? "" : mt_last_error());
    if (st != MT_OK) {
        goto out;
    }
    /* everything on the CPU: the always-on and routed bytes of a token at DRAM x 0.6; no time
       on tiers it has no rate for; a host wait is the GPU engine's (planner.h: ignored without
       a GPU); a prompt of one prefill batch is predicted as the plan's prefill step */
    {
        double want = (double)(sz.token_bytes_always + sz.token_bytes_routed) / (400e9 * 0.6);
        struct mt_plan_rates r = {.cpu_eff = plan->budget.cpu_eff,
                                  .gpu_eff = 1.0,
                                  .disk_eff = 1.0,
                                  .host_layer_ms = 0.7};
        double again = 0.0;
        double host = 0.0;
        double prompt = 0.0;
        mt_status_t s1 = mt_plan_repredict_decode(plan, NULL, &r, &again, &host);
        mt_status_t s2 = mt_plan_predict_prompt(plan, &cfg, &sz, plan->budget.prefill_batch,
                                                plan->budget.prefill_batch, &prompt);

        tap_ok(fabs(plan->decode_ms / 1e3 - want) < 1e-9 * want &&
                   plan->tier[MT_TIER_GPU].ms_per_token == 0 &&
                   plan->tier[MT_TIER_DRAM_PCIE].ms_per_token == 0 && s1 == MT_OK &&
                   fabs(again * 1e3 - plan->decode_ms) < 1e-9 * plan->decode_ms && s2 == MT_OK &&
                   plan->prefill_ms > 0 &&
                   fabs(prompt * 1e3 - plan->prefill_ms) < 1e-9 * plan->prefill_ms,
               "without a GPU: decode %.3f ms = (always-on + routed) / (DRAM x 0.6) = %.3f ms, "
               "again with a 0.7 ms wait %.3f; a %d-token prompt %.3f ms = prefill %.3f",
               plan->decode_ms, want * 1e3, again * 1e3, plan->budget.prefill_batch,
               prompt * 1e3, plan->prefill_ms);
        r.disk_eff = 0.0;
        tap_ok(mt_plan_repredict_decode(plan, NULL, &r, &again, &host) == MT_ERR_INVAL,
               "predicting again at a disk efficiency of 0 is refused: %s", mt_last_error());
    }
    /* the CPU's products at its AMX BF16 rate where the profile has one, else its FMA rate */
    {
        struct mt_plan *amx = NULL;
        double fma = plan->cpu_gflops;

        hw.cpu.amx_bf16_gflops = 20000;
        st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &amx);
        tap_ok(st == MT_OK && fma == 5000 && amx->cpu_gflops == 20000,
               "CPU FLOPs: %g GFLOPS with FMA only, %g with AMX BF16 too", fma,
               st == MT_OK ? amx->cpu_gflops : 0.0);
        mt_plan_destroy(amx);
        hw.cpu.amx_bf16_gflops = 0;
        st = MT_OK;
    }
    /* a model of MT_MAX_LAYERS layers is planned, one of more refused (small experts) */
    {
        struct mt_model_config big = cfg;
        struct mt_model_sizes bsz;
        struct mt_plan *p256 = NULL;
        struct mt_plan *p257 = NULL;
        mt_status_t s256;
        mt_status_t s257;

        big.num_hidden_layers = MT_MAX_LAYERS;
        big.n_routed_experts = 16;
        big.num_experts_per_tok = 2;
        big.n_group = 1;
        big.topk_group = 1;
        big.num_nextn_predict_layers = 0; /* an MTP layer counts toward the limit */
        s256 = mt_model_sizes_compute(&big, big.fp8, &bsz);
        s256 = s256 == MT_OK ? mt_plan_build(&big, &bsz, &hw, &b, NULL, NULL, &p256) : s256;
        big.num_hidden_layers = MT_MAX_LAYERS + 1;
        s257 = mt_plan_build(&big, &bsz, &hw, &b, NULL, NULL, &p257);
        tap_ok(s256 == MT_OK && p256->n_layers == MT_MAX_LAYERS && s257 == MT_ERR_INVAL &&
                   p257 == NULL,
               "a model of %d layers is planned, one of %d refused%s%s", MT_MAX_LAYERS,
               MT_MAX_LAYERS + 1, s256 == MT_OK ? "" : ": ", s256 == MT_OK ? "" : mt_last_error());
        mt_plan_destroy(p256);
        mt_plan_destroy(p257);
    }
    /* the default prefill batch without a GPU, 512, never past the context */
    {
        struct mt_plan *short_ctx = NULL;
        struct mt_plan_budget bs = b;

        bs.ctx = 256;
        st = mt_plan_build(&cfg, &sz, &hw, &bs, NULL, NULL, &short_ctx);
        tap_ok(st == MT_OK && plan->budget.prefill_batch == 512 &&
                   short_ctx->budget.prefill_batch == 256,
               "without a GPU the prefill batch is 512 (%d), 256 at a 256-token context (%d)",
               plan->budget.prefill_batch, st == MT_OK ? short_ctx->budget.prefill_batch : 0);
        mt_plan_destroy(short_ctx);
        st = MT_OK;
    }
    snprintf(path, sizeof(path), "%s/plan-cpu.json", tap_tmpdir());
    snprintf(repl, sizeof(repl), "\"dram_expert_bytes\": %" PRIu64, room);
    ok = mt_plan_save(plan, path) == MT_OK &&
         patch_first(path, "\"dram_expert_bytes\": ", PATCH_VALUE, repl);
    st = mt_plan_load(path, &back);
    tap_ok(ok && st == MT_OK, "its file with dram_expert_bytes at that room loads%s%s",
           st == MT_OK ? "" : ": ", st == MT_OK ? "" : mt_last_error());
    mt_plan_destroy(back);
    back = NULL;
    snprintf(repl, sizeof(repl), "\"dram_expert_bytes\": %" PRIu64, room + 1);
    ok = mt_plan_save(plan, path) == MT_OK &&
         patch_first(path, "\"dram_expert_bytes\": ", PATCH_VALUE, repl);
    st = mt_plan_load(path, &back);
    tap_ok(ok && st == MT_ERR_FORMAT && back == NULL &&
               strstr(mt_last_error(), "always_on_bytes and kv_bytes (a plan without a GPU)") !=
                   NULL,
           "one byte more is refused: %s", st == MT_OK ? "it loaded" : mt_last_error());
    mt_plan_destroy(back);
    back = NULL;
    ok = mt_plan_save(plan, path) == MT_OK &&
         patch_first(path, "\"gpu_expert_bytes\": ", PATCH_VALUE, "\"gpu_expert_bytes\": 1");
    st = mt_plan_load(path, &back);
    tap_ok(ok && st == MT_ERR_FORMAT && back == NULL &&
               strstr(mt_last_error(), "is 1, more than the 0 bytes of a plan without a GPU") !=
                   NULL,
           "and so is gpu_expert_bytes 1: %s", st == MT_OK ? "it loaded" : mt_last_error());
    mt_plan_destroy(back);
out:
    mt_plan_destroy(plan);
}

/*
 * The CPU expert efficiency: a profile that records a measured cpu.expert_eff (a fraction of its
 * read ceiling) is planned at read ceiling x that efficiency; --cpu-eff (budget.cpu_eff > 0)
 * overrides it; a profile without one gets the 0.6 assumption on its read rate. Each plan is
 * all-DRAM, so its decode time is the formula by hand, and the source is named.
 */
static void
test_cpu_eff_sources(const struct mt_model_config *cfg, const struct mt_model_sizes *sz,
                     const struct mt_plan_budget *b0)
{
    static const struct {
        double ceiling, eff, flag; /* profile read_ceiling_gbps, expert_eff; budget.cpu_eff */
        double want_gbps, want_eff;
        const char *want_source;
    } cases[] = {
        {300, 0.7, 0, 300, 0.7, "measured: profile cpu.expert_eff"},
        {300, 0.8, 0.5, 300, 0.5, "--cpu-eff"},
        {0, 0, 0, 400, 0.6, "assumed"},
        {300, 0, 0, 300, 0.6, "assumed"},
        {0, 0.8, 0, 400, 0.6, "assumed"}, /* an efficiency without its ceiling means nothing */
        /* below --cpu-eff's floor 0.01: raised to it, which a plan file must hold to load */
        {300, 0.001, 0, 300, 0.01, "measured: profile cpu.expert_eff"},
        /* above 1 (a profile made in code; a loaded one holds at most 1): capped at 1 */
        {300, 1.5, 0, 300, 1.0, "measured: profile cpu.expert_eff"},
    };
    struct mt_hwprofile hw;
    struct mt_plan_budget b = *b0;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mt_plan *plan = NULL;
        mt_status_t st;

        make_profile(&hw, 1000, 400, 0, 7);
        hw.cpu.read_ceiling_gbps = cases[i].ceiling;
        hw.cpu.expert_eff = cases[i].eff;
        b.cpu_eff = cases[i].flag;
        st = mt_plan_build(cfg, sz, &hw, &b, NULL, NULL, &plan);
        if (st != MT_OK) {
            tap_ok(false, "cpu efficiency case %zu: %s", i, mt_last_error());
            continue;
        }
        double cpu_rate = cases[i].want_gbps * 1e9 * cases[i].want_eff;
        double want = (double)sz->token_bytes_always / 1000e9 +
                      (double)sz->token_bytes_routed / cpu_rate;
        tap_ok(fabs(plan->decode_ms / 1e3 - want) < 1e-6 * want &&
                   plan->budget.cpu_eff == cases[i].want_eff &&
                   strcmp(plan->cpu_eff_source, cases[i].want_source) == 0,
               "ceiling %g, expert_eff %g, --cpu-eff %g: DRAM %g GB/s (%s) x %g (%s), decode "
               "%.3f ms, by hand %.3f ms",
               cases[i].ceiling, cases[i].eff, cases[i].flag, plan->dram_gbps, plan->dram_source,
               plan->budget.cpu_eff, plan->cpu_eff_source, plan->decode_ms, want * 1e3);
        if (i == 0) {
            /* repredicted with the GPU at half its rate: the always-on weights, read on the
               GPU, take twice as long; the CPU's experts as before */
            struct mt_plan_rates r = {.cpu_eff = cases[i].want_eff, .gpu_eff = 0.5,
                                      .disk_eff = 1.0, .host_layer_ms = 0.0};
            double d = 0.0, h = 0.0;
            double want2 = (double)sz->token_bytes_always / 500e9 +
                           (double)sz->token_bytes_routed / cpu_rate;

            st = mt_plan_repredict_decode(plan, NULL, &r, &d, &h);
            tap_ok(st == MT_OK && fabs(d - want2) < 1e-6 * want2,
                   "repredicted at GPU efficiency 0.5: %.3f ms, by hand %.3f ms", d * 1e3,
                   want2 * 1e3);
        }
        mt_plan_destroy(plan);
    }
}

/*
 * Budgets mt_plan_build refuses (planner.h): a negative prefill batch or context, a --cpu-eff
 * outside [0.01, 1] (0: the profile's), a byte budget a plan file cannot hold (int64), a GPU
 * without hbm_read_gbps, and a GPU budget one byte short of always-on + KV + reserve; each at its
 * boundary, where the budget just passes.
 */
static void
test_budget_refusals(const struct mt_model_config *cfg, const struct mt_model_sizes *sz,
                     const struct mt_plan_budget *b0)
{
    struct mt_hwprofile hw;
    struct mt_plan_budget b;
    struct mt_plan *plan = NULL;
    mt_status_t st;

    make_profile(&hw, 1000, 400, 0, 7);
    static const struct {
        int prefill_batch, ctx;
        double cpu_eff;
        bool ok;
    } cases[] = {
        {-1, 32768, 0, false}, {0, -1, 0, false},    {0, 32768, 1.5, false},
        {0, 32768, 1.0, true}, {0, 32768, 0.01, true}, {0, 32768, 0.005, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        b = *b0;
        b.prefill_batch = cases[i].prefill_batch;
        b.ctx = cases[i].ctx;
        b.cpu_eff = cases[i].cpu_eff;
        plan = NULL;
        st = mt_plan_build(cfg, sz, &hw, &b, NULL, NULL, &plan);
        tap_ok(cases[i].ok ? st == MT_OK && plan != NULL
                           : st == MT_ERR_INVAL && plan == NULL &&
                                 strstr(mt_last_error(), "bad model dims or budget") != NULL,
               "prefill batch %d, ctx %d, --cpu-eff %g: %s", cases[i].prefill_batch, cases[i].ctx,
               cases[i].cpu_eff, cases[i].ok ? "planned" : "refused");
        mt_plan_destroy(plan);
    }

    /* a plan file holds bytes as int64: 2^63 is refused, 2^63 - 1 passes this check */
    b = *b0;
    b.cpu_mem = (uint64_t)INT64_MAX + 1;
    plan = NULL;
    st = mt_plan_build(cfg, sz, &hw, &b, NULL, NULL, &plan);
    tap_ok(st == MT_ERR_INVAL && plan == NULL &&
               strstr(mt_last_error(), "--cpu-mem") != NULL &&
               strstr(mt_last_error(), "more than a plan can hold") != NULL,
           "--cpu-mem of 2^63 bytes: %s", mt_last_error());
    b.cpu_mem = (uint64_t)INT64_MAX;
    st = mt_plan_build(cfg, sz, &hw, &b, NULL, NULL, &plan);
    tap_ok(st == MT_OK || strstr(mt_last_error(), "more than a plan can hold") == NULL,
           "--cpu-mem of 2^63 - 1 bytes is not refused as too big for a plan");
    mt_plan_destroy(plan);

    /* a GPU whose read rate is not known cannot be planned for */
    b = *b0;
    hw.gpu.hbm_read_gbps = 0;
    plan = NULL;
    st = mt_plan_build(cfg, sz, &hw, &b, NULL, NULL, &plan);
    tap_ok(st == MT_ERR_INVAL && plan == NULL &&
               strstr(mt_last_error(), "without hbm_read_gbps") != NULL,
           "a GPU without hbm_read_gbps: %s", mt_last_error());
    hw.gpu.hbm_read_gbps = 1000;

    /* a fixed reserve: always-on + KV + reserve fits exactly, one byte less does not */
    b = *b0;
    b.gpu_reserve_auto = false;
    b.gpu_mem = sz->gpu_other_bytes + (uint64_t)b.ctx * sz->kv_bytes_per_token + b.gpu_reserve;
    plan = NULL;
    st = mt_plan_build(cfg, sz, &hw, &b, NULL, NULL, &plan);
    tap_ok(st == MT_OK && plan->gpu_expert_bytes == 0, "GPU budget just holding always-on + KV");
    mt_plan_destroy(plan);
    b.gpu_mem--;
    plan = NULL;
    st = mt_plan_build(cfg, sz, &hw, &b, NULL, NULL, &plan);
    tap_ok(st == MT_ERR_INVAL && plan == NULL, "GPU budget one byte short: %s", mt_last_error());

    /* planner_int.h: a budget too small for what it holds leaves 0 for experts, not a
       wrapped-around size */
    struct mt_plan small = {0};
    uint64_t g = 1, d = 1;
    small.budget.gpu_mem = 10;
    small.budget.gpu_reserve = 4;
    small.budget.cpu_mem = 10;
    small.budget.cpu_reserve = 4;
    small.always_on_bytes = 20;
    small.kv_bytes = 1;
    mt_plan_expert_room(&small, true, &g, &d);
    tap_ok(g == 0 && d == 6, "expert room with a GPU budget below always-on: %" PRIu64 ", %" PRIu64,
           g, d);
    mt_plan_expert_room(&small, false, &g, &d);
    tap_ok(g == 0 && d == 0, "expert room without a GPU, DRAM below always-on: %" PRIu64 ", %"
           PRIu64, g, d);
}

static void
test_v32_plans(void)
{
    struct mt_model_config cfg;
    struct mt_model_sizes sz;
    struct mt_hwprofile hw;
    struct mt_plan_budget b;
    struct mt_plan *plan = NULL;
    struct mt_plan *back = NULL;
    mt_status_t st;

    mt_config_default_v32(&cfg);
    st = mt_model_sizes_compute(&cfg, cfg.fp8, &sz);
    tap_ok(st == MT_OK && sz.routed_expert_bytes == 44050944ull,
           "V3.2 sizes: one expert is 44,050,944 B (spec 3.5)");
    if (st != MT_OK) {
        return;
    }

    /* Everything in DRAM (1 TiB), no GPU room for experts, no PCIe: the formula by hand. */
    make_profile(&hw, 1000, 400, 0, 7);
    mt_plan_budget_default(&b);
    b.gpu_mem = sz.gpu_other_bytes + (uint64_t)b.ctx * sz.kv_bytes_per_token + b.gpu_reserve;
    b.cpu_mem = (uint64_t)1 << 40;
    st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan);
    if (st == MT_OK) {
        double want =
            (double)sz.token_bytes_always / 1000e9 + (double)sz.token_bytes_routed / (400e9 * 0.6);
        tap_ok(plan->tier[MT_TIER_DRAM_CPU].experts == 58 * 256 &&
                   fabs(plan->decode_ms / 1e3 - want) < 1e-6 * want,
               "all-DRAM V3.2: decode %.3f ms = always-on / HBM + routed / (DRAM x 0.6) = %.3f ms",
               plan->decode_ms, want * 1e3);
        tap_ok(strcmp(plan->bottleneck, "cpu-dram") == 0, "bottleneck is cpu-dram (%s)",
               plan->bottleneck);
    } else {
        tap_ok(false, "all-DRAM V3.2 plan: %s", mt_last_error());
    }
    mt_plan_destroy(plan);
    plan = NULL;
    test_cpu_eff_sources(&cfg, &sz, &b);
    test_budget_refusals(&cfg, &sz, &b);
    /*
     * With PCIe, the expected-load model would send some DRAM experts over PCIe in decode, but a
     * plan keeps none on that tier in decode: the engine copies DRAM_CPU ones where that ends a
     * layer sooner, which at 25 GB/s against the CPU's 400 none does. Prefill computes them where
     * the GPU engine would (mt_plan_prefill_tiers): as many in GPU slots as shortens each layer,
     * some, not all (25 GB/s PCIe against the CPU's 400 GB/s), the same number in every layer
     * (uniform routing); fewer at 256 tokens (8 an expert) than at 4096 (128 each), where the
     * CPU's share of the products is larger.
     */
    make_profile(&hw, 1000, 400, 25, 7);
    int copies_4096 = 0;
    for (int k = 1; k >= 0; k--) { /* 4096, then 256: that plan is used below */
        struct mt_plan_budget bb = b;
        int prefill_p = 0, in_layer_3 = 0;
        bb.prefill_batch = k == 0 ? 256 : 4096;
        st = mt_plan_build(&cfg, &sz, &hw, &bb, NULL, NULL, &plan);
        for (int i = 0; st == MT_OK && i < 61 * 256; i++) {
            prefill_p += plan->prefill_tiers[i] == MT_TIER_DRAM_PCIE;
            in_layer_3 += i / 256 == 3 && plan->prefill_tiers[i] == MT_TIER_DRAM_PCIE;
        }
        bool some = st == MT_OK && prefill_p > 0 &&
                    prefill_p < plan->tier[MT_TIER_DRAM_CPU].experts &&
                    prefill_p == 58 * in_layer_3 && (k == 1 || prefill_p < copies_4096);
        copies_4096 = k == 1 ? prefill_p : copies_4096;
        tap_ok(st == MT_OK && plan->tier[MT_TIER_DRAM_PCIE].experts == 0 && some &&
                   plan->decode_ms >= plan->decode_ms_mean_load * 0.999,
               "DRAM + PCIe: decode computes DRAM experts on the CPU; prefill at %d tokens "
               "copies %d to the GPU; sampled %.2f ms >= expected-load bound %.2f ms",
               bb.prefill_batch, prefill_p, st == MT_OK ? plan->decode_ms : 0,
               st == MT_OK ? plan->decode_ms_mean_load : 0);
        if (k == 1) {
            mt_plan_destroy(plan);
            plan = NULL;
        }
    }

    /* Round trip and model checks. */
    if (plan != NULL) {
        const char *dir = tap_tmpdir();
        char path[600];
        snprintf(path, sizeof(path), "%s/plan.json", dir);
        st = mt_plan_save(plan, path);
        st = st == MT_OK ? mt_plan_load(path, &back) : st;
        tap_ok(st == MT_OK && back != NULL &&
                   memcmp(back->tiers, plan->tiers, (size_t)61 * 256) == 0 &&
                   memcmp(back->prefill_tiers, plan->prefill_tiers, (size_t)61 * 256) == 0 &&
                   back->dims_hash == plan->dims_hash &&
                   back->budget.gpu_mem == plan->budget.gpu_mem &&
                   fabs(back->decode_tok_s - plan->decode_tok_s) < 1e-9 * plan->decode_tok_s &&
                   back->tier[1].experts == plan->tier[1].experts &&
                   strcmp(back->bottleneck, plan->bottleneck) == 0 &&
                   plan->host_work_bytes > 0 && back->host_work_bytes == plan->host_work_bytes,
               "plan file round trip keeps tiers, budgets, identity and prediction (and the "
               "prompt buffers' DRAM)");
        tap_ok(back != NULL &&
                   mt_plan_check_model(back, path, &cfg, sz.routed_expert_bytes) == MT_OK,
               "the plan matches its model");
        {
            /* a plan whose efficiencies are 0 (a struct not from the planner: "unset") is saved
               with them as 1, which loads; 0 would be refused as an efficiency */
            struct mt_plan *b1 = NULL;
            double eff[3] = {plan->gpu_eff, plan->disk_eff, plan->cpu_prefill_eff};
            plan->gpu_eff = plan->disk_eff = plan->cpu_prefill_eff = 0;
            st = mt_plan_save(plan, path);
            st = st == MT_OK ? mt_plan_load(path, &b1) : st;
            tap_ok(st == MT_OK && b1->gpu_eff == 1 && b1->disk_eff == 1 &&
                       b1->cpu_prefill_eff == 1,
                   "a plan with its efficiencies 0 saves them as 1 (%g, %g, %g)%s%s",
                   st == MT_OK ? b1->gpu_eff : -1, st == MT_OK ? b1->disk_eff : -1,
                   st == MT_OK ? b1->cpu_prefill_eff : -1, st == MT_OK ? "" : ": ",
                   st == MT_OK ? "" : mt_last_error());
            mt_plan_destroy(b1);
            plan->gpu_eff = eff[0];
            plan->disk_eff = eff[1];
            plan->cpu_prefill_eff = eff[2];
        }
        {
            struct mt_model_config other = cfg;
            other.num_hidden_layers = 60;
            tap_ok(back != NULL &&
                       mt_plan_check_model(back, path, &other, sz.routed_expert_bytes) ==
                           MT_ERR_FORMAT &&
                       strstr(mt_last_error(), "num_hidden_layers") != NULL,
                   "a plan for another model is rejected: %s", mt_last_error());
            other = cfg;
            other.first_k_dense_replace = 2;
            for (int l = 0; l < 61; l++) {
                other.layer_is_moe[l] = l >= 2;
            }
            tap_ok(back != NULL && mt_plan_check_model(back, path, &other,
                                                       sz.routed_expert_bytes) == MT_ERR_FORMAT,
                   "dense-layer mismatch is rejected: %s", mt_last_error());
            /* the same first_k_dense_replace, but layer 10 dense in the model */
            other = cfg;
            other.layer_is_moe[10] = false;
            tap_ok(back != NULL &&
                       mt_plan_check_model(back, path, &other, sz.routed_expert_bytes) ==
                           MT_ERR_FORMAT &&
                       strstr(mt_last_error(), "layer 10 is MoE in the plan but dense") != NULL,
                   "a layer dense in the model but planned as MoE is rejected: %s",
                   mt_last_error());
            /* and the other way: layer 0, dense in the plan, MoE in the model */
            other = cfg;
            other.layer_is_moe[0] = true;
            tap_ok(back != NULL &&
                       mt_plan_check_model(back, path, &other, sz.routed_expert_bytes) ==
                           MT_ERR_FORMAT &&
                       strstr(mt_last_error(), "layer 0 is dense in the plan but MoE") != NULL,
                   "a layer MoE in the model but planned as dense is rejected: %s",
                   mt_last_error());
            /* each other field of the model's shape is checked and named too */
            static const char *const names[] = {"n_routed_experts", "num_experts_per_tok",
                                                "hidden_size", "moe_intermediate_size",
                                                "first_k_dense_replace"};
            int unnamed = 0;
            for (int k = 0; k < 5; k++) {
                other = cfg;
                int *f = k == 0   ? &other.n_routed_experts
                         : k == 1 ? &other.num_experts_per_tok
                         : k == 2 ? &other.hidden_size
                         : k == 3 ? &other.moe_intermediate_size
                                  : &other.first_k_dense_replace;
                (*f)++;
                if (back == NULL ||
                    mt_plan_check_model(back, path, &other, sz.routed_expert_bytes) !=
                        MT_ERR_FORMAT ||
                    strstr(mt_last_error(), names[k]) == NULL) {
                    tap_diag("%s one more: %s", names[k], mt_last_error());
                    unnamed++;
                }
            }
            tap_ok(unnamed == 0, "a plan whose model differs in any one shape field is rejected "
                   "naming it (%d not)", unnamed);
            /* the same fields, experts of another size (another dtype): another model */
            tap_ok(back != NULL &&
                       mt_plan_check_model(back, path, &cfg, sz.routed_expert_bytes + 1) ==
                           MT_ERR_FORMAT &&
                       strstr(mt_last_error(), "expert_bytes") != NULL,
                   "a plan for experts of another size is rejected: %s", mt_last_error());
        }
        mt_plan_destroy(back);
        back = NULL;

        /* Bad files. */
        snprintf(path, sizeof(path), "%s/none.json", dir);
        tap_ok(mt_plan_load(path, &back) == MT_ERR_IO && back == NULL, "missing plan: %s",
               mt_last_error());
        snprintf(path, sizeof(path), "%s/bad.json", dir);
        FILE *f = fopen(path, "w");
        if (f != NULL) {
            fputs("[1, 2", f);
            fclose(f);
        }
        tap_ok(mt_plan_load(path, &back) == MT_ERR_FORMAT &&
                   strstr(mt_last_error(), "JSON") != NULL,
               "plan that is not JSON: %s", mt_last_error());
        f = fopen(path, "w");
        if (f != NULL) {
            fputs("{\"format\": \"moetier-plan\", \"version\": 9}", f);
            fclose(f);
        }
        tap_ok(mt_plan_load(path, &back) == MT_ERR_FORMAT &&
                   strstr(mt_last_error(), "version 9") != NULL,
               "plan of another version: %s", mt_last_error());
        /* A valid plan with one tier string cut short. */
        snprintf(path, sizeof(path), "%s/plan.json", dir);
        mt_plan_save(plan, path);
        patch_first(path, "\"tiers\": \"", 1, "\"tiers\": \""); /* one code less */
        tap_ok(mt_plan_load(path, &back) == MT_ERR_FORMAT &&
                   strstr(mt_last_error(), "256 tier codes") != NULL,
               "plan with a short tier string: %s", mt_last_error());
        tap_ok(back == NULL, "failed plan loads leave the output untouched");
        /* Prefill may change how a DRAM expert is computed, never where it is stored: decode
         * 'N' (NVMe) against prefill 'C' or 'P' (DRAM) is refused. */
        mt_plan_save(plan, path);
        patch_first(path, "\"tiers\": \"C", 0, "\"tiers\": \"N");
        tap_ok(mt_plan_load(path, &back) == MT_ERR_FORMAT &&
                   strstr(mt_last_error(), "stored") != NULL,
               "plan whose prefill stores an expert elsewhere than decode: %s", mt_last_error());
        mt_plan_destroy(back);
        back = NULL;
        test_plan_file_edits(plan, path);
        tap_rmtree(dir);
    }
    mt_plan_destroy(plan);
    plan = NULL;

    /* GPU budget too small for the always-on weights: a smaller --ctx cannot help there, so
       the message says what they need instead of suggesting one. */
    b.gpu_mem = (uint64_t)16 << 30;
    st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan);
    tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "--gpu-mem 16.00 GiB is too small") &&
               strstr(mt_last_error(), "always-on weights alone need 16.87 GiB") &&
               strstr(mt_last_error(), "smaller --ctx") == NULL && plan == NULL,
           "--gpu-mem below the always-on weights: %s", mt_last_error());
    /* room for the weights and the workspace but not the KV cache: there a smaller --ctx is
       the hint */
    b.gpu_mem = sz.gpu_other_bytes + (uint64_t)b.ctx * sz.kv_bytes_per_token / 2 + b.gpu_reserve;
    st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan);
    tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "try a smaller --ctx") != NULL &&
               plan == NULL,
           "--gpu-mem below always-on + KV: %s", mt_last_error());
    /* at the edges: a budget of exactly the weights holds them, not the workspace (no --ctx
       helps); one of exactly the weights and the workspace lacks only the KV cache */
    b.gpu_mem = sz.gpu_other_bytes;
    st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan);
    tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "before any KV cache") != NULL &&
               strstr(mt_last_error(), "alone") == NULL && plan == NULL,
           "--gpu-mem of exactly the always-on weights: %s", mt_last_error());
    b.gpu_mem = sz.gpu_other_bytes + b.gpu_reserve;
    st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan);
    tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "try a smaller --ctx") != NULL &&
               plan == NULL,
           "--gpu-mem of exactly the always-on weights and the workspace: %s", mt_last_error());
    /* no --gpu-mem given: the budget is the profile's, and a GPU without gpu.mem_bytes (a
       budget of 0) is named as the profile's field, not as "--gpu-mem 0.0 GiB" */
    b.gpu_mem_default = true;
    hw.gpu.mem_bytes = 0;
    b.gpu_mem = 0;
    st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan);
    tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "without gpu.mem_bytes") != NULL &&
               strstr(mt_last_error(), "--gpu-mem 0.0") == NULL && plan == NULL,
           "no --gpu-mem and a profile GPU without memory: %s", mt_last_error());
    hw.gpu.mem_bytes = (uint64_t)16 << 30;
    b.gpu_mem = (uint64_t)15 << 30;
    st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan);
    tap_ok(st == MT_ERR_INVAL &&
               strstr(mt_last_error(), "the default GPU budget 15.00 GiB (no --gpu-mem") != NULL &&
               strstr(mt_last_error(), "gpu.mem_bytes 16.00 GiB") != NULL && plan == NULL,
           "no --gpu-mem and a profile GPU too small: %s", mt_last_error());
    b.gpu_mem_default = false;
    hw.gpu.mem_bytes = (uint64_t)80 << 30;
    b.gpu_mem = sz.gpu_other_bytes + (uint64_t)b.ctx * sz.kv_bytes_per_token + b.gpu_reserve;

    /* DRAM budget below its reserve: refused like the GPU's, not planned with 0 bytes. */
    b.cpu_mem = b.cpu_reserve - 1;
    tap_ok(mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan) == MT_ERR_INVAL &&
               strstr(mt_last_error(), "--cpu-mem") != NULL && plan == NULL,
           "--cpu-mem below --cpu-reserve: %s", mt_last_error());

    /* A disk but no DRAM rate: NVMe experts have nobody to compute them in decode; the message
     * must say so, not claim there is no disk. */
    make_profile(&hw, 1000, 0, 25, 7);
    b.cpu_mem = (uint64_t)100 << 30;
    tap_ok(mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan) == MT_ERR_INVAL &&
               strstr(mt_last_error(), "no disk") == NULL &&
               strstr(mt_last_error(), "read_gbps") != NULL,
           "experts that fit nowhere, with a disk but no DRAM rate: %s", mt_last_error());

    /* No DRAM rate and no disk: the experts off the GPU can only be copied over PCIe in
       decode (DRAM_PCIE), never left to a CPU that has no rate (DRAM_CPU) */
    make_profile(&hw, 1000, 0, 25, 0);
    b.cpu_mem = (uint64_t)1 << 40;
    st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan);
    tap_ok(st == MT_OK && plan->tier[MT_TIER_DRAM_CPU].experts == 0 &&
               plan->tier[MT_TIER_DRAM_PCIE].experts > 0 && isfinite(plan->decode_ms) &&
               plan->decode_ms > 0,
           "a GPU, PCIe and no DRAM rate: %d DRAM experts copied over PCIe, %d on the CPU (%s)",
           st == MT_OK ? plan->tier[MT_TIER_DRAM_PCIE].experts : -1,
           st == MT_OK ? plan->tier[MT_TIER_DRAM_CPU].experts : -1,
           st == MT_OK ? "planned" : mt_last_error());
    mt_plan_destroy(plan);
    plan = NULL;

    /* With a GPU the embedding table takes DRAM, not GPU memory (the GPU engine keeps it on
       the host): 1.85 GB of V3.2's always-on bytes; and so do the engine's prompt buffers for
       its host experts, at the longest chunk the context allows (4,096 at the default 32K:
       4,096 x 8 pairs of two fp32 rows of 7,168 and three 4-byte entries, 1.75 GiB) */
    make_profile(&hw, 1000, 400, 25, 7);
    b.cpu_mem = (uint64_t)1 << 40;
    st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan);
    uint64_t prompt_buffers = (uint64_t)4096 * 8 * (2 * 7168 * 4 + 12);
    tap_ok(st == MT_OK && plan->always_on_bytes == sz.gpu_other_bytes &&
               sz.other_bytes - sz.gpu_other_bytes == sz.bytes[MT_ROLE_EMBED] &&
               plan->host_work_bytes == prompt_buffers &&
               plan->dram_expert_bytes ==
                   b.cpu_mem - b.cpu_reserve - sz.bytes[MT_ROLE_EMBED] - prompt_buffers,
           "with a GPU: always-on on the GPU %.2f GiB, the embedding table's %.2f GiB and the "
           "prompt buffers' %.2f GiB in DRAM",
           st == MT_OK ? plan->always_on_bytes / 1073741824.0 : 0.0,
           sz.bytes[MT_ROLE_EMBED] / 1073741824.0, prompt_buffers / 1073741824.0);
    mt_plan_destroy(plan);
    plan = NULL;

    /* No GPU: the always-on weights and the KV cache both live in DRAM. */
    hw.gpu.present = false;
    st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan);
    tap_ok(st == MT_OK && plan->gpu_expert_bytes == 0 &&
               plan->dram_expert_bytes == b.cpu_mem - b.cpu_reserve - sz.other_bytes -
                                              (uint64_t)b.ctx * sz.kv_bytes_per_token,
           "without a GPU, DRAM for experts = cpu-mem - reserve - always-on - KV (%s)",
           st == MT_OK ? plan->bottleneck : mt_last_error());
    mt_plan_destroy(plan);
    plan = NULL;
    make_profile(&hw, 1000, 400, 25, 7);
    b.cpu_mem = (uint64_t)200 << 30;

    /* A skewed trace: experts 0..7 always chosen. The GPU gets hot experts, decode gets faster. */
    {
        struct mt_trace *tr = NULL;
        struct mt_plan *uni = NULL;
        int ids[8] = {0, 1, 2, 3, 4, 5, 6, 7};
        int hot_gpu = 0;
        int all_gpu = 0;
        struct mt_trace *few = NULL;
        struct mt_plan *from_few = NULL;
        st = mt_trace_create(61, 256, 8, &tr);
        st = st == MT_OK ? mt_trace_create(61, 256, 8, &few) : st;
        for (int l = 3; l < 61 && st == MT_OK; l++) {
            st = mt_trace_record(few, l, ids, 8); /* one token */
        }
        for (int tok = 0; tok < 1024 && st == MT_OK; tok++) {
            for (int l = 3; l < 61 && st == MT_OK; l++) {
                st = mt_trace_record(tr, l, ids, 8);
            }
        }
        b.gpu_mem = sz.gpu_other_bytes + (uint64_t)b.ctx * sz.kv_bytes_per_token + b.gpu_reserve +
                    100 * sz.routed_expert_bytes;
        b.cpu_mem = (uint64_t)200 << 30;
        st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, tr, "skewed", &plan) : st;
        st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &uni) : st;
        if (st == MT_OK) {
            for (int l = 0; l < 61; l++) {
                for (int e = 0; e < 256; e++) {
                    if (plan->tiers[l * 256 + e] == MT_TIER_GPU) {
                        all_gpu++;
                        hot_gpu += e < 8;
                    }
                }
            }
        }
        tap_ok(st == MT_OK && all_gpu > 0 && hot_gpu == all_gpu &&
                   plan->decode_tok_s > 2 * uni->decode_tok_s,
               "with a skewed trace the GPU holds only hot experts (%d of %d) and decode beats "
               "uniform (%.2f vs %.2f tok/s)",
               hot_gpu, all_gpu, plan ? plan->decode_tok_s : 0, uni ? uni->decode_tok_s : 0);
        /* one token says little: its plan stays near the uniform one (the trace prior) */
        st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, few, "one token", &from_few) : st;
        tap_ok(st == MT_OK && from_few->decode_tok_s < 1.5 * uni->decode_tok_s &&
                   from_few->decode_tok_s < plan->decode_tok_s,
               "a one-token trace is weighed against the uniform prior (%.2f tok/s; uniform %.2f, "
               "1024 tokens %.2f)",
               from_few ? from_few->decode_tok_s : 0, uni ? uni->decode_tok_s : 0,
               plan ? plan->decode_tok_s : 0);
        /* the prior is 256 tokens of uniform routing (planner.c activation): a hot expert of the
           1024-token trace is used (1024 + 256 x 8/256) / (1024 + 256) of the tokens, and each
           token still routes to 8 experts in each of the 58 MoE layers, trace or not */
        if (st == MT_OK) {
            double eb = (double)sz.routed_expert_bytes;
            double want_all = 58.0 * 8.0 * eb;
            double want_gpu = all_gpu * (1024.0 + 8.0) / (1024.0 + 256.0) * eb;
            double sum[2] = {0.0, 0.0};
            for (int k = 0; k < MT_TIER_COUNT; k++) {
                sum[0] += plan->tier[k].bytes_per_token;
                sum[1] += from_few->tier[k].bytes_per_token;
            }
            tap_ok(fabs(sum[0] - want_all) < 1e-9 * want_all &&
                       fabs(sum[1] - want_all) < 1e-9 * want_all &&
                       fabs(plan->tier[MT_TIER_GPU].bytes_per_token - want_gpu) < 1e-9 * want_gpu,
                   "a trace's activations are its counts shrunk toward k / E by 256 tokens: %.4g "
                   "and %.4g expert bytes a token (8 x 58 x %.0f = %.4g), the GPU's %.4g (%.4g)",
                   sum[0], sum[1], eb, want_all, plan->tier[MT_TIER_GPU].bytes_per_token,
                   want_gpu);
        } else {
            tap_ok(false, "a trace's activations: %s", mt_last_error());
        }
        mt_plan_destroy(from_few);
        mt_trace_destroy(few);
        mt_plan_destroy(uni);
        mt_plan_destroy(plan);
        plan = NULL;
        /* A trace of another model is refused. */
        struct mt_trace *small = NULL;
        mt_trace_create(61, 128, 8, &small);
        tap_ok(small != NULL &&
                   mt_plan_build(&cfg, &sz, &hw, &b, small, "small", &plan) == MT_ERR_FORMAT &&
                   plan == NULL,
               "trace with other dims is refused: %s", mt_last_error());
        mt_trace_destroy(small);
        mt_trace_destroy(tr);
    }
}

/* Layers of a V3.2 plan with at least one routed expert off the GPU. */
static int
host_layers(const struct mt_plan *plan)
{
    int n = 0;

    for (int l = 0; l < plan->n_layers; l++) {
        bool host = false;
        for (int e = 0; e < plan->n_experts; e++) {
            uint8_t t = plan->tiers[(size_t)l * plan->n_experts + e];
            host = host || (t != MT_TIER_GPU && t != MT_TIER_NONE);
        }
        n += host;
    }
    return n;
}

/*
 * A DRAM -> PCIe expert's copy reads the DRAM bus the CPU experts read (MT_SRC_DRAM_BUS, the raw
 * ceiling): the bus carries both experts' bytes, the CPU's kernels only theirs (at the ceiling x
 * the CPU's efficiency), and a layer takes the longer of the two, not their sum: with a CPU at
 * 0.6 of a 100 GB/s bus the bus binds (80 MB at 100 GB/s), at 0.3 the CPU's kernels do.
 */
static void
test_dram_copy_bus(void)
{
    double prob[2] = {1.0, 1.0};
    uint8_t t[2] = {MT_TIER_DRAM_CPU, MT_TIER_DRAM_PCIE};
    struct mt_plan_problem pb;
    double s0 = 0, s1 = 0, s2 = 0;
    mt_status_t st;

    memset(&pb, 0, sizeof(pb));
    pb.n_layers = 1;
    pb.n_experts = 2;
    pb.prob = prob;
    pb.expert_bytes = 40e6;
    pb.dram_capacity = 2 * 40e6;
    pb.rate[MT_SRC_GPU_MEM] = 1000e9;
    pb.rate[MT_SRC_CPU_MEM] = 60e9; /* 0.6 of a 100 GB/s ceiling */
    pb.rate[MT_SRC_PCIE] = 100e9;
    pb.batch = 1;
    st = mt_plan_problem_evaluate(&pb, t, &s0, NULL, NULL);
    pb.rate[MT_SRC_DRAM_BUS] = 100e9;
    st = st == MT_OK ? mt_plan_problem_evaluate(&pb, t, &s1, NULL, NULL) : st;
    pb.rate[MT_SRC_CPU_MEM] = 30e9;
    st = st == MT_OK ? mt_plan_problem_evaluate(&pb, t, &s2, NULL, NULL) : st;
    tap_ok(st == MT_OK && fabs(s0 - 40e6 / 60e9) < 1e-12 && fabs(s1 - 80e6 / 100e9) < 1e-12 &&
               fabs(s2 - 40e6 / 30e9) < 1e-12,
           "a copied expert loads the DRAM bus too: layer %.3f ms (both experts' bytes at the "
           "ceiling; the CPU's kernels %.3f ms), %.3f ms without the bus; a CPU at 0.3: %.3f ms "
           "(its kernels)",
           s1 * 1e3, 40e6 / 60e9 * 1e3, s0 * 1e3, s2 * 1e3);

    /* A copied expert is computed on the GPU: its GPU read and FLOPs count there. One expert a
       token, 1 GB over a 100 GB/s link (10 ms): 4 TFLOP at 100 TFLOPS bind it at 40 ms; a GPU
       read at 20 GB/s at 50 ms. */
    {
        double p1[1] = {1.0};
        uint8_t pc[1] = {MT_TIER_DRAM_PCIE};
        double sf = 0, sm = 0;

        memset(&pb, 0, sizeof(pb));
        pb.n_layers = 1;
        pb.n_experts = 1;
        pb.prob = p1;
        pb.expert_bytes = 1e9;
        pb.expert_flops = 4e12;
        pb.dram_capacity = 1e9;
        pb.rate[MT_SRC_GPU_MEM] = 1000e9;
        pb.rate[MT_SRC_GPU_FLOP] = 100e12;
        pb.rate[MT_SRC_PCIE] = 100e9;
        pb.batch = 1;
        st = mt_plan_problem_evaluate(&pb, pc, &sf, NULL, NULL);
        pb.expert_flops = 0;
        pb.rate[MT_SRC_GPU_MEM] = 20e9;
        st = st == MT_OK ? mt_plan_problem_evaluate(&pb, pc, &sm, NULL, NULL) : st;
        tap_ok(st == MT_OK && fabs(sf - 0.040) < 1e-12 && fabs(sm - 0.050) < 1e-12,
               "a DRAM_PCIE expert is computed on the GPU: %.1f ms bound by its FLOPs (40), "
               "%.1f ms by its GPU read (50)",
               sf * 1e3, sm * 1e3);
    }
}

/*
 * The CPU's expert runs in prefill (mt_plan_problem.cpu_run_rate, cpu_token_flop_rate): a run
 * costs the expert's bytes at the run rate plus its tokens' FLOPs at the token rate, on the CPU
 * FLOP source, in place of the FLOPs at the FLOP rate; decode (batch 1) keeps the FLOP rate. And
 * mt_plan_build predicts prefill by default at the GPU engine's chunk for the placement
 * (with experts off the GPU the longest of 4,096, 2,048, 1,024 whose work space fits, else
 * MT_PLAN_CHUNK_GPU; no GPU: the latter),
 * takes the profile's measured prefill rates and keeps them through a plan file.
 */
static void
test_cpu_prefill_model(void)
{
    double prob[1] = {8.0 / 256};
    uint8_t t[1] = {MT_TIER_DRAM_CPU};
    struct mt_plan_problem pb;
    double v[MT_SRC_COUNT];
    double u = 1.0 - pow(1.0 - 8.0 / 256, 1024);
    double fl = 1024 * (8.0 / 256) * 88e6;
    double s_flop = 0, s_runs = 0, s_dec0 = 0, s_dec1 = 0;
    mt_status_t st;

    memset(&pb, 0, sizeof(pb));
    pb.n_layers = 1;
    pb.n_experts = 1;
    pb.prob = prob;
    pb.expert_bytes = 44e6;
    pb.expert_flops = 88e6;
    pb.dram_capacity = 44e6;
    pb.rate[MT_SRC_CPU_MEM] = 100e9;
    pb.rate[MT_SRC_CPU_FLOP] = 10e12;
    pb.batch = 1024;
    st = mt_plan_problem_evaluate(&pb, t, &s_flop, NULL, NULL);
    pb.cpu_run_rate = 40e9;
    pb.cpu_token_flop_rate = 5e12;
    st = st == MT_OK ? mt_plan_problem_evaluate(&pb, t, &s_runs, NULL, NULL) : st;
    mt_plan_expert_load(&pb, prob[0], MT_TIER_DRAM_CPU, v);
    tap_ok(st == MT_OK && fabs(s_flop - MT_MAX(u * 44e6 / 100e9, fl / 10e12)) < 1e-15 &&
               fabs(v[MT_SRC_CPU_FLOP] - (u * 44e6 / 40e9 + fl / 5e12)) < 1e-15 &&
               fabs(s_runs - v[MT_SRC_CPU_FLOP]) < 1e-15,
           "prefill on the CPU at 1,024 tokens: %.3f ms with the measured runs (%.3f for the "
           "weights at 40 GB/s + %.3f for the products at 5 TFLOPS), %.3f ms at the FLOP rate",
           s_runs * 1e3, u * 44e6 / 40e9 * 1e3, fl / 5e12 * 1e3, s_flop * 1e3);
    /* at 16 tokens the expert (p 1/32) is used by u16 = 1 - (31/32)^16 = 0.40 of the steps: its
       run (the weights) is paid that often, its products for 16 x p tokens */
    double u16 = 1.0 - pow(1.0 - 8.0 / 256, 16);
    double want16 = u16 * 44e6 / 40e9 + 16 * (8.0 / 256) * 88e6 / 5e12;
    double s16 = 0;
    pb.batch = 16;
    st = mt_plan_problem_evaluate(&pb, t, &s16, NULL, NULL);
    tap_ok(st == MT_OK && fabs(s16 - want16) < 1e-15,
           "prefill on the CPU at 16 tokens pays the run in %.2f of the steps: %.4f ms (by hand "
           "%.4f)",
           u16, s16 * 1e3, want16 * 1e3);
    pb.batch = 1;
    st = mt_plan_problem_evaluate(&pb, t, &s_dec1, NULL, NULL);
    pb.cpu_run_rate = 0;
    pb.cpu_token_flop_rate = 0;
    st = st == MT_OK ? mt_plan_problem_evaluate(&pb, t, &s_dec0, NULL, NULL) : st;
    tap_ok(st == MT_OK && s_dec1 == s_dec0, "decode ignores the prefill rates (%.4f ms)",
           s_dec0 * 1e3);

    struct mt_model_config cfg;
    struct mt_model_sizes sz;
    struct mt_hwprofile hw;
    struct mt_plan_budget b;
    struct mt_plan *plan[3] = {NULL, NULL, NULL};
    struct mt_plan *back = NULL;

    mt_config_default_v32(&cfg);
    st = mt_model_sizes_compute(&cfg, cfg.fp8, &sz);
    make_profile(&hw, 1000, 400, 0, 7);
    mt_plan_budget_default(&b);
    b.gpu_mem = sz.gpu_other_bytes + (uint64_t)b.ctx * sz.kv_bytes_per_token + b.gpu_reserve;
    b.cpu_mem = (uint64_t)1 << 40;
    /* all experts in DRAM under the default 1.5 GiB reserve: the engine's work space for
       1,024-token chunks (~1.4 MB a token at V3.2's shapes) does not fit, so the plan predicts
       the 512 the engine will run, and says how much more the longer chunk needs */
    {
        uint64_t work = mt_plan_gpu_work_bytes(&cfg, MT_PLAN_CHUNK_HOST, b.ctx, true,
                                               sz.routed_expert_slot_bytes, false) +
                        MT_PLAN_WORK_SLACK;
        uint64_t work512 = mt_plan_gpu_work_bytes(&cfg, MT_PLAN_CHUNK_GPU, b.ctx, true,
                                                  sz.routed_expert_slot_bytes, false);
        st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan[0]) : st;
        tap_ok(
            st == MT_OK && plan[0]->tier[MT_TIER_GPU].experts == 0 &&
                plan[0]->budget.prefill_batch == MT_PLAN_CHUNK_GPU &&
                plan[0]->host_chunk_short == work - b.gpu_reserve && work512 < b.gpu_reserve &&
                work > work512 + ((uint64_t)1 << 29),
            "all-DRAM V3.2 filling --gpu-mem to a 1.5 GiB reserve: prefill predicted at %d-token "
            "chunks (the engine's work space: %.2f GiB at 1,024, %.2f at 512; %.2f GiB short)",
            st == MT_OK ? plan[0]->budget.prefill_batch : 0, work / 1073741824.0,
            work512 / 1073741824.0, st == MT_OK ? plan[0]->host_chunk_short / 1073741824.0 : 0.0);
        mt_plan_destroy(plan[0]);
        plan[0] = NULL;
        /* a --prefill-batch the user gave is not the default chunk falling short: nothing to
           report (planner.h host_chunk_short), though the engine's chunk is still 512 */
        {
            struct mt_plan_budget bp = b;
            bp.prefill_batch = 256;
            st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &bp, NULL, NULL, &plan[0]) : st;
            tap_ok(st == MT_OK && plan[0]->budget.prefill_batch == 256 &&
                       plan[0]->engine_chunk == MT_PLAN_CHUNK_GPU &&
                       plan[0]->host_chunk_short == 0,
                   "the same with --prefill-batch 256: prefill at %d tokens, no chunk short "
                   "(%.2f GiB)",
                   st == MT_OK ? plan[0]->budget.prefill_batch : 0,
                   st == MT_OK ? plan[0]->host_chunk_short / 1073741824.0 : -1.0);
            mt_plan_destroy(plan[0]);
            plan[0] = NULL;
        }
        /* with 4 GiB beside the weights and the KV cache, the default reserve grows to the work
           space of the longest chunk that fits it (2,048 tokens; a few GPU experts fewer) and the
           plan gets that chunk; a reserve given on the command line stays */
        uint64_t work2048 = mt_plan_gpu_work_bytes(&cfg, 2048, b.ctx, true,
                                                   sz.routed_expert_slot_bytes, false) +
                            MT_PLAN_WORK_SLACK;
        uint64_t work4096 = mt_plan_gpu_work_bytes(&cfg, 4096, b.ctx, true,
                                                   sz.routed_expert_slot_bytes, false) +
                            MT_PLAN_WORK_SLACK;
        struct mt_plan_budget bb = b;
        bb.gpu_mem += (uint64_t)5 << 29;
        st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &bb, NULL, NULL, &plan[0]) : st;
        bb.gpu_reserve_auto = false;
        st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &bb, NULL, NULL, &plan[1]) : st;
        tap_ok(st == MT_OK && work2048 < ((uint64_t)4 << 30) && work4096 > ((uint64_t)4 << 30) &&
                   plan[0]->budget.gpu_reserve == work2048 &&
                   plan[0]->budget.prefill_batch == 2048 && plan[0]->engine_chunk == 2048 &&
                   plan[0]->host_chunk_short == 0 && plan[1]->budget.gpu_reserve == b.gpu_reserve &&
                   plan[1]->budget.prefill_batch == MT_PLAN_CHUNK_GPU &&
                   plan[1]->host_chunk_short > 0 &&
                   plan[1]->host_chunk_short <= work - b.gpu_reserve &&
                   plan[1]->tier[MT_TIER_GPU].experts > plan[0]->tier[MT_TIER_GPU].experts,
               "4 GiB beside the weights: the default --gpu-reserve grows to the work space of "
               "2,048-token chunks (%.2f GiB; 4,096 would need %.2f: %d GPU experts against %d, "
               "prefill at %d tokens); --gpu-reserve 1.5G stays (%d)",
               st == MT_OK ? plan[0]->budget.gpu_reserve / 1073741824.0 : 0.0,
               work4096 / 1073741824.0, st == MT_OK ? plan[0]->tier[MT_TIER_GPU].experts : 0,
               st == MT_OK ? plan[1]->tier[MT_TIER_GPU].experts : 0,
               st == MT_OK ? plan[0]->budget.prefill_batch : 0,
               st == MT_OK ? plan[1]->budget.prefill_batch : 0);
        for (int i = 0; i < 2; i++) {
            mt_plan_destroy(plan[i]);
            plan[i] = NULL;
        }
        /* --gpu-mem 1 GiB short of every expert: room for 4,096-token chunks, but the experts
           that chunk would move off the GPU are more than 1/16 of the ~2.8 GiB the budget leaves
           off it (1 GiB and the 1,024-token chunk's reserve), so the reserve stays at the
           1,024-token chunk's (the placement itself may leave more on the CPU) */
        bb = b;
        bb.gpu_mem = sz.gpu_other_bytes + (uint64_t)b.ctx * sz.kv_bytes_per_token +
                     (uint64_t)58 * 256 * sz.routed_expert_bytes - ((uint64_t)1 << 30);
        hw.gpu.mem_bytes = (uint64_t)1 << 40;
        st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &bb, NULL, NULL, &plan[0]) : st;
        hw.gpu.mem_bytes = (uint64_t)80 << 30;
        tap_ok(st == MT_OK && plan[0]->reserve_chunk == MT_PLAN_CHUNK_HOST &&
                   plan[0]->budget.gpu_reserve == work,
               "--gpu-mem 1 GiB short of every expert (%d of 14,848 placed on the GPU): the "
               "reserve for %d-token chunks (%.2f GiB), not a longer one's",
               st == MT_OK ? plan[0]->tier[MT_TIER_GPU].experts : 0,
               st == MT_OK ? plan[0]->reserve_chunk : 0,
               st == MT_OK ? plan[0]->budget.gpu_reserve / 1073741824.0 : 0.0);
        mt_plan_destroy(plan[0]);
        plan[0] = NULL;
        /* 8 GiB: the 4,096-token chunk's (MT_PLAN_CHUNK_HOST_MAX); a 2,048-token context caps
           the chunk at 2,048 */
        bb = b;
        bb.gpu_mem += (uint64_t)13 << 29;
        st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &bb, NULL, NULL, &plan[0]) : st;
        bb.ctx = 2048;
        st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &bb, NULL, NULL, &plan[1]) : st;
        tap_ok(st == MT_OK && plan[0]->budget.gpu_reserve == work4096 &&
                   plan[0]->budget.prefill_batch == MT_PLAN_CHUNK_HOST_MAX &&
                   plan[1]->budget.prefill_batch == 2048 &&
                   plan[1]->budget.gpu_reserve ==
                       mt_plan_gpu_work_bytes(&cfg, 2048, 2048, true, sz.routed_expert_slot_bytes,
                                              false) + MT_PLAN_WORK_SLACK,
               "8 GiB beside the weights: %d-token chunks (reserve %.2f GiB); with a 2,048-token "
               "context %d-token ones",
               st == MT_OK ? plan[0]->budget.prefill_batch : 0,
               st == MT_OK ? plan[0]->budget.gpu_reserve / 1073741824.0 : 0.0,
               st == MT_OK ? plan[1]->budget.prefill_batch : 0);
        for (int i = 0; i < 2; i++) {
            mt_plan_destroy(plan[i]);
            plan[i] = NULL;
        }
        /* a context shorter than the all-GPU chunk: the engine's chunk is the context, and
           its prompt buffers are that chunk's (256 x 8 pairs) */
        bb.ctx = 256;
        st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &bb, NULL, NULL, &plan[0]) : st;
        tap_ok(st == MT_OK && plan[0]->budget.prefill_batch == 256 &&
                   plan[0]->engine_chunk == 256 &&
                   plan[0]->host_work_bytes == (uint64_t)256 * 8 * (2 * 7168 * 4 + 12),
               "a 256-token context: prefill predicted at 256-token chunks (%d), as the engine "
               "runs them; prompt buffers %.1f MiB",
               st == MT_OK ? plan[0]->budget.prefill_batch : 0,
               st == MT_OK ? plan[0]->host_work_bytes / 1048576.0 : 0.0);
        mt_plan_destroy(plan[0]);
        plan[0] = NULL;
        /* a context of exactly the all-GPU chunk: no longer chunk to size the reserve for or
           to fall short of, however much room there is (planner.h: reserve_chunk 0, no
           host_chunk_short) */
        bb = b;
        bb.ctx = MT_PLAN_CHUNK_GPU;
        bb.gpu_mem = sz.gpu_other_bytes + (uint64_t)bb.ctx * sz.kv_bytes_per_token +
                     ((uint64_t)4 << 30);
        st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &bb, NULL, NULL, &plan[0]) : st;
        tap_ok(st == MT_OK && plan[0]->reserve_chunk == 0 &&
                   plan[0]->budget.gpu_reserve == b.gpu_reserve &&
                   plan[0]->engine_chunk == MT_PLAN_CHUNK_GPU &&
                   plan[0]->budget.prefill_batch == MT_PLAN_CHUNK_GPU &&
                   plan[0]->host_chunk_short == 0,
               "a %d-token context: the default reserve stays (%.2f GiB, sized for a %d-token "
               "chunk), nothing short",
               MT_PLAN_CHUNK_GPU, st == MT_OK ? plan[0]->budget.gpu_reserve / 1073741824.0 : 0.0,
               st == MT_OK ? plan[0]->reserve_chunk : -1);
        mt_plan_destroy(plan[0]);
        plan[0] = NULL;
        /* ... also where a small --gpu-reserve leaves no room for even that chunk's work space:
           the context, not the work space, keeps the prefill batch at 512 */
        bb.gpu_reserve_auto = false;
        bb.gpu_reserve = (uint64_t)1 << 26;
        bb.gpu_mem = sz.gpu_other_bytes + (uint64_t)bb.ctx * sz.kv_bytes_per_token + bb.gpu_reserve;
        st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &bb, NULL, NULL, &plan[0]) : st;
        tap_ok(st == MT_OK && plan[0]->engine_chunk == MT_PLAN_CHUNK_GPU &&
                   plan[0]->budget.prefill_batch == MT_PLAN_CHUNK_GPU &&
                   plan[0]->host_chunk_short == 0,
               "a %d-token context and a 64 MiB reserve: no longer chunk is short (%.2f GiB)",
               MT_PLAN_CHUNK_GPU,
               st == MT_OK ? plan[0]->host_chunk_short / 1073741824.0 : -1.0);
        mt_plan_destroy(plan[0]);
        plan[0] = NULL;
        /* room beside the weights and the KV cache between the default reserve and the work
           space of MT_PLAN_CHUNK_HOST's chunks: the reserve takes all of it (no GPU experts),
           the closest the GPU comes to the longer chunk */
        uint64_t room = b.gpu_reserve + (work - b.gpu_reserve) / 2;
        bb = b;
        bb.gpu_mem = sz.gpu_other_bytes + (uint64_t)b.ctx * sz.kv_bytes_per_token + room;
        st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &bb, NULL, NULL, &plan[0]) : st;
        tap_ok(st == MT_OK && work - b.gpu_reserve > 2 * sz.routed_expert_bytes &&
                   plan[0]->budget.gpu_reserve == room &&
                   plan[0]->tier[MT_TIER_GPU].experts == 0,
               "room for less than the %d-token chunk's work space: the reserve is all %.2f GiB "
               "of it (%.2f GiB, %d GPU experts)",
               MT_PLAN_CHUNK_HOST, room / 1073741824.0,
               st == MT_OK ? plan[0]->budget.gpu_reserve / 1073741824.0 : 0.0,
               st == MT_OK ? plan[0]->tier[MT_TIER_GPU].experts : -1);
        mt_plan_destroy(plan[0]);
        plan[0] = NULL;
    }
    /* a reserve that holds the longer chunk: without measured runs, then with two sets */
    b.gpu_reserve = (uint64_t)5 << 29;
    b.gpu_mem = sz.gpu_other_bytes + (uint64_t)b.ctx * sz.kv_bytes_per_token + b.gpu_reserve;
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan[0]) : st;
    hw.cpu.expert_prefill_gbps = 40;
    hw.cpu.expert_prefill_gflops = 5000;
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan[1]) : st;
    hw.cpu.expert_prefill_gbps = 20;
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan[2]) : st;
    if (st != MT_OK) {
        tap_ok(false, "all-DRAM V3.2 plans with prefill rates: %s", mt_last_error());
        goto out;
    }
    /* one MoE layer of 256 uniform experts, CPU bound either way; 58 such layers */
    double ue = 1.0 - pow(1.0 - 8.0 / 256, 1024);
    double flt = 1024 * (8.0 / 256) * 2.0 * (double)sz.params[MT_ROLE_ROUTED_EXPERT] / (58.0 * 256);
    double bytes = (double)sz.routed_expert_bytes;
    double layer1 = 256 * (ue * bytes / 40e9 + flt / 5e12);
    double layer2 = 256 * (ue * bytes / 20e9 + flt / 5e12);
    double diff = (plan[2]->prefill_ms - plan[1]->prefill_ms) * 1e-3;
    /* the same without a GPU, at --cpu-eff 1: the always-on work of a 1,024-token batch is the
       longer of reading those weights and 2 FLOPs a weight a row at the CPU's rate (planner.c
       prompt_always_s), beside the MoE layers' CPU runs */
    {
        struct mt_hwprofile h2 = hw;
        struct mt_plan_budget b2 = b;
        struct mt_plan *cpu = NULL;
        static const int roles[] = {MT_ROLE_ATTN,          MT_ROLE_INDEXER, MT_ROLE_DENSE_MLP,
                                    MT_ROLE_SHARED_EXPERT, MT_ROLE_ROUTER,  MT_ROLE_HEAD,
                                    MT_ROLE_NORM};
        double w = 0.0;
        for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
            w += (double)sz.params[roles[i]];
        }
        h2.gpu.present = false;
        h2.cpu.expert_prefill_gbps = 40;
        b2.cpu_eff = 1;
        b2.prefill_batch = 1024;
        st = mt_plan_build(&cfg, &sz, &h2, &b2, NULL, NULL, &cpu);
        double always = fmax((double)sz.token_bytes_always / (h2.cpu.read_gbps * 1e9),
                             2.0 * w * 1024 / (h2.cpu.fma_gflops * 1e9));
        double want = always + 58 * layer1;
        tap_ok(st == MT_OK && fabs(cpu->prefill_ms * 1e-3 - want) < 1e-6 * want,
               "without a GPU a 1,024-token batch takes %.4f s: always-on %.4f s + 58 layers x "
               "%.2f ms = %.4f s",
               st == MT_OK ? cpu->prefill_ms * 1e-3 : 0.0, always, layer1 * 1e3, want);
        mt_plan_destroy(cpu);
    }
    tap_ok(plan[0]->budget.prefill_batch == MT_PLAN_CHUNK_HOST && plan[0]->host_chunk_short == 0 &&
               plan[1]->budget.prefill_batch == MT_PLAN_CHUNK_HOST &&
               plan[1]->cpu_prefill_gbps == 40 && plan[1]->cpu_prefill_gflops == 5000 &&
               plan[0]->cpu_prefill_gbps == 0 && fabs(diff - 58 * (layer2 - layer1)) < 1e-6 * diff,
           "all-DRAM V3.2 with a GPU: prefill predicted at the engine's %d-token chunk; the "
           "runs at 20 GB/s add %.1f ms a chunk to those at 40 (58 layers x %.2f ms)",
           plan[1]->budget.prefill_batch, diff * 1e3, (layer2 - layer1) * 1e3);
    {
        char path[600];
        snprintf(path, sizeof(path), "%s/plan-prefill.json", tap_tmpdir());
        st = mt_plan_save(plan[1], path);
        st = st == MT_OK ? mt_plan_load(path, &back) : st;
        tap_ok(st == MT_OK && back->cpu_prefill_gbps == 40 && back->cpu_prefill_gflops == 5000 &&
                   back->budget.prefill_batch == MT_PLAN_CHUNK_HOST,
               "a plan file keeps the prefill rates and the chunk it predicted at");
    }
    for (int i = 0; i < 3; i++) {
        mt_plan_destroy(plan[i]);
        plan[i] = NULL;
    }
    /* every expert fits the GPU: the engine's 512; no GPU: 512; a given batch stays */
    {
        struct mt_plan_budget bb = b;
        bb.gpu_mem = (uint64_t)2 << 40;
        bb.cpu_mem = bb.cpu_reserve; /* no DRAM or disk for experts (else a few of them */
        hw.n_disks = 0;              /* would help the GPU's reads) */
        hw.gpu.mem_bytes = (uint64_t)2 << 40;
        st = mt_plan_build(&cfg, &sz, &hw, &bb, NULL, NULL, &plan[0]);
        hw.gpu.present = false;
        st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan[1]) : st;
        bb = b;
        bb.prefill_batch = 700;
        hw.gpu.present = true;
        st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &bb, NULL, NULL, &plan[2]) : st;
        tap_ok(st == MT_OK && plan[0]->tier[MT_TIER_GPU].experts == 58 * 256 &&
                   plan[0]->budget.gpu_reserve == b.gpu_reserve &&
                   plan[0]->budget.prefill_batch == MT_PLAN_CHUNK_GPU &&
                   plan[1]->budget.prefill_batch == MT_PLAN_CHUNK_GPU &&
                   plan[2]->budget.prefill_batch == 700,
               "default prefill batch: %d with every expert on the GPU, %d without a GPU; "
               "--prefill-batch 700 stays %d",
               st == MT_OK ? plan[0]->budget.prefill_batch : 0,
               st == MT_OK ? plan[1]->budget.prefill_batch : 0,
               st == MT_OK ? plan[2]->budget.prefill_batch : 0);
    }
out:
    for (int i = 0; i < 3; i++) {
        mt_plan_destroy(plan[i]);
    }
    mt_plan_destroy(back);
}

/*
 * The GPU engine's host wait per MoE layer (host_layer_s): the expected-load model charges it with
 * the probability that a step uses an off-GPU expert of the layer, the sampled model whenever a
 * sampled token does; a learned wait makes mt_plan_build gather a few off-GPU experts into fewer
 * layers; and mt_plan_repredict_decode gives back a plan's own prediction at its own rates.
 */
static void
test_host_wait(void)
{
    double prob[8] = {0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5};
    uint8_t t[8] = {MT_TIER_GPU, MT_TIER_GPU, MT_TIER_GPU, MT_TIER_DRAM_CPU,
                    MT_TIER_GPU, MT_TIER_GPU, MT_TIER_GPU, MT_TIER_GPU};
    uint8_t all_gpu[8];
    struct mt_plan_problem pb;
    double s0, s1, m0, m1, g0, g1;
    mt_status_t st;

    memset(all_gpu, MT_TIER_GPU, sizeof(all_gpu));
    memset(&pb, 0, sizeof(pb));
    pb.n_layers = 2;
    pb.n_experts = 4;
    pb.prob = prob;
    pb.expert_bytes = 44e6;
    pb.expert_flops = 88e6;
    pb.gpu_capacity = 8 * 44e6;
    pb.dram_capacity = 8 * 44e6;
    pb.rate[MT_SRC_GPU_MEM] = 1000e9;
    pb.rate[MT_SRC_CPU_MEM] = 100e9;
    pb.batch = 1;
    st = mt_plan_problem_evaluate(&pb, t, &s0, NULL, NULL);
    st = st == MT_OK ? mt_plan_problem_sample(&pb, t, 2000, &m0) : st;
    st = st == MT_OK ? mt_plan_problem_sample(&pb, all_gpu, 2000, &g0) : st;
    pb.host_layer_s = 1e-3;
    st = st == MT_OK ? mt_plan_problem_evaluate(&pb, t, &s1, NULL, NULL) : st;
    st = st == MT_OK ? mt_plan_problem_sample(&pb, t, 2000, &m1) : st;
    st = st == MT_OK ? mt_plan_problem_sample(&pb, all_gpu, 2000, &g1) : st;
    tap_ok(st == MT_OK && fabs((s1 - s0) - 0.5e-3) < 1e-12,
           "expected load: one off-GPU expert used with p 0.5 adds 0.5 x the wait (%.6f ms)",
           (s1 - s0) * 1e3);
    tap_ok(st == MT_OK && fabs((m1 - m0) / 1e-3 - 0.5) < 0.05 && g1 == g0,
           "sampled: the wait in the tokens that use it (%.3f of them), none when all is on the "
           "GPU", (m1 - m0) / 1e-3);

    struct mt_model_config cfg;
    struct mt_model_sizes sz;
    struct mt_hwprofile hw;
    struct mt_plan_budget b;
    struct mt_plan *spread = NULL;
    struct mt_plan *gathered = NULL;

    mt_config_default_v32(&cfg);
    if (mt_model_sizes_compute(&cfg, cfg.fp8, &sz) != MT_OK) {
        tap_ok(false, "V3.2 sizes: %s", mt_last_error());
        return;
    }
    /* all but 100 experts on the GPU; the rest in DRAM, computed by the CPU */
    make_profile(&hw, 3000, 100, 0, 0);
    hw.gpu.mem_bytes = (uint64_t)1 << 40;
    mt_plan_budget_default(&b);
    b.gpu_mem = sz.gpu_other_bytes + (uint64_t)b.ctx * sz.kv_bytes_per_token + b.gpu_reserve +
                (58 * 256 - 100) * sz.routed_expert_bytes;
    b.cpu_mem = (uint64_t)64 << 30;
    st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &spread);
    hw.learned.reports = 1;
    hw.learned.host_layer_ms = 0.7;
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &gathered) : st;
    if (st != MT_OK) {
        tap_ok(false, "plans with 100 experts off the GPU: %s", mt_last_error());
        mt_plan_destroy(spread);
        return;
    }
    tap_ok(spread->host_layer_ms == 0 && gathered->host_layer_ms == 0.7 &&
               gathered->tier[MT_TIER_GPU].experts >= spread->tier[MT_TIER_GPU].experts &&
               2 * host_layers(gathered) < host_layers(spread) &&
               gathered->host_layers_per_token < spread->host_layers_per_token,
           "a learned wait of 0.7 ms gathers %d off-GPU experts from %d layers into %d (%.2f "
           "waiting layers per token, from %.2f)",
           58 * 256 - gathered->tier[MT_TIER_GPU].experts, host_layers(spread),
           host_layers(gathered), gathered->host_layers_per_token,
           spread->host_layers_per_token);

    /* room on the GPU for every expert: with the wait, none stays on the CPU to help it */
    {
        struct mt_plan *room = NULL;
        struct mt_plan_budget b2 = b;
        b2.gpu_mem += 400 * sz.routed_expert_bytes;
        st = mt_plan_build(&cfg, &sz, &hw, &b2, NULL, NULL, &room);
        tap_ok(st == MT_OK && room->tier[MT_TIER_GPU].experts == 58 * 256 &&
                   host_layers(room) == 0 && room->host_layers_per_token == 0,
               "with GPU room for all experts and a learned wait, all are on the GPU (%d)",
               st == MT_OK ? room->tier[MT_TIER_GPU].experts : -1);
        mt_plan_destroy(room);
    }

    /* predicting a plan again at its own rates gives its own prediction, and the wait adds */
    struct mt_plan_rates r = {.cpu_eff = gathered->budget.cpu_eff,
                              .gpu_eff = gathered->gpu_eff,
                              .disk_eff = gathered->disk_eff,
                              .host_layer_ms = 0.7};
    double d1 = 0, h1 = 0, d0 = 0, h0 = 0;
    st = mt_plan_repredict_decode(gathered, NULL, &r, &d1, &h1);
    r.host_layer_ms = 0;
    st = st == MT_OK ? mt_plan_repredict_decode(gathered, NULL, &r, &d0, &h0) : st;
    tap_ok(st == MT_OK && fabs(d1 * 1e3 - gathered->decode_ms) < 1e-9 * gathered->decode_ms &&
               fabs(h1 - gathered->host_layers_per_token) < 1e-12 && h0 == h1 && d0 < d1,
           "repredicted at its own rates: %.6f ms = the plan's %.6f ms; %.6f without the wait",
           d1 * 1e3, gathered->decode_ms, d0 * 1e3);
    /* the spread plan under the same wait is slower than the gathered one */
    r.host_layer_ms = 0.7;
    st = mt_plan_repredict_decode(spread, NULL, &r, &d0, &h0);
    tap_ok(st == MT_OK && gathered->decode_ms < d0 * 1e3,
           "with the wait, the spread placement predicts %.3f ms, the gathered one %.3f ms",
           d0 * 1e3, gathered->decode_ms);
    /* a prompt of one batch is the plan's prefill step, the learned wait in its layers included */
    {
        double one = 0.0;
        int batch = gathered->budget.prefill_batch;
        st = mt_plan_predict_prompt(gathered, &cfg, &sz, batch, batch, &one);
        tap_ok(st == MT_OK && host_layers(gathered) > 0 && gathered->prefill_ms > 0 &&
                   fabs(one * 1e3 - gathered->prefill_ms) < 1e-9 * gathered->prefill_ms,
               "with a learned wait, a %d-token prompt is predicted as the plan's step: %.6f ms "
               "(%.6f)",
               batch, one * 1e3, gathered->prefill_ms);
    }
    r.host_layer_ms = -0.5;
    tap_ok(mt_plan_repredict_decode(gathered, NULL, &r, &d0, &h0) == MT_ERR_INVAL,
           "a negative wait is refused: %s", mt_last_error());
    r.host_layer_ms = 0.7;
    r.cpu_eff = 0;
    tap_ok(mt_plan_repredict_decode(gathered, NULL, &r, &d0, &h0) == MT_ERR_INVAL,
           "a zero efficiency is refused: %s", mt_last_error());
    mt_plan_destroy(gathered);
    mt_plan_destroy(spread);
}

static void
test_shipped_profiles(void)
{
    static const struct {
        const char *name;
        double gpu_gib;
        double cpu_gib;
    } profs[] = {
        {"rtx4090-pcie4-ddr5x2-gen4.json", 23, 960},
        {"rtx5090-pcie5-ddr5x8-gen5x2.json", 31, 480},
        {"rtx3090-ddr4.json", 23, 480},
    };
    const char *src = getenv("MT_SRCDIR");
    struct mt_model_config cfg;
    struct mt_model_sizes sz;

    mt_config_default_v32(&cfg);
    mt_model_sizes_compute(&cfg, cfg.fp8, &sz);
    for (size_t i = 0; i < sizeof(profs) / sizeof(profs[0]); i++) {
        char path[1024];
        struct mt_hwprofile hw;
        struct mt_plan_budget b;
        struct mt_plan *plan = NULL;
        snprintf(path, sizeof(path), "%s/bench/profiles/%s", src ? src : ".", profs[i].name);
        mt_status_t st = mt_hwprofile_load(path, &hw);
        mt_plan_budget_default(&b);
        b.gpu_mem = (uint64_t)(profs[i].gpu_gib * 1073741824.0);
        b.cpu_mem = (uint64_t)(profs[i].cpu_gib * 1073741824.0);
        st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan) : st;
        tap_ok(st == MT_OK && plan->decode_tok_s > 0.1 && plan->decode_tok_s < 100 &&
                   strncmp(hw.source, "what-if", 7) == 0,
               "shipped profile %s loads and plans V3.2: %.2f tok/s decode (%s)", profs[i].name,
               plan ? plan->decode_tok_s : 0, st == MT_OK ? plan->bottleneck : mt_last_error());
        mt_plan_destroy(plan);
    }
}

/*
 * Prefill's tiers on random problems: in each layer the DRAM_CPU experts it moves to slots are
 * the most likely ones, and the layer's time is the least of any number of them moved (brute
 * force over k).
 */
static void
test_prefill_tiers(void)
{
    enum { L = 4, E = 48 };
    double prob[L * E];
    uint8_t t[L * E];
    int bad = 0, moved = 0, layers = 0;
    struct mt_rng r;

    mt_rng_init(&r, 77);
    for (int it = 0; it < 200; it++) {
        struct mt_plan_problem pb;

        sized_problem(&r, &pb, prob, L, E);
        pb.batch = 16 + (int)mt_rng_below(&r, 2048);
        for (int i = 0; i < L * E; i++) {
            prob[i] *= 8.0 / E * 4.0; /* a few routed experts a token */
            t[i] = mt_rng_uniform(&r) < 0.8 ? MT_TIER_DRAM_CPU : MT_TIER_GPU;
        }
        if (mt_plan_prefill_tiers(&pb, t) != MT_OK) {
            bad++;
            continue;
        }
        for (int l = 0; l < L; l++) {
            const double *p = prob + l * E;
            const uint8_t *tl = t + l * E;
            double row[S_] = {0}, best = INFINITY, v[S_], lo_moved = INFINITY, hi_left = 0.0;

            for (int e = 0; e < E; e++) {
                mt_plan_expert_load(&pb, p[e], tl[e], v);
                for (int s = 0; s < S_; s++) {
                    row[s] += v[s];
                }
                if (tl[e] == MT_TIER_DRAM_PCIE) {
                    moved++;
                    lo_moved = fmin(lo_moved, p[e]);
                } else if (tl[e] == MT_TIER_DRAM_CPU && p[e] > 0.0) {
                    hi_left = fmax(hi_left, p[e]);
                }
            }
            bad += hi_left > lo_moved; /* a likelier candidate stayed on the CPU */
            /* brute force: the layer with its k likeliest candidates moved, every k */
            for (int k = 0; k <= E; k++) {
                uint8_t tk[E];
                double rk[S_] = {0};
                int n = 0;
                for (int e = 0; e < E; e++) {
                    tk[e] = tl[e] == MT_TIER_DRAM_PCIE ? MT_TIER_DRAM_CPU : tl[e];
                }
                for (; n < k; n++) { /* move the likeliest candidate left */
                    int arg = -1;
                    for (int e = 0; e < E; e++) {
                        if (tk[e] == MT_TIER_DRAM_CPU && p[e] > 0.0 &&
                            (arg < 0 || p[e] > p[arg])) {
                            arg = e;
                        }
                    }
                    if (arg < 0) {
                        break;
                    }
                    tk[arg] = MT_TIER_DRAM_PCIE;
                }
                if (n < k) {
                    break;
                }
                for (int e = 0; e < E; e++) {
                    mt_plan_expert_load(&pb, p[e], tk[e], v);
                    for (int s = 0; s < S_; s++) {
                        rk[s] += v[s];
                    }
                }
                best = fmin(best, mt_plan_row_max(rk));
            }
            bad += mt_plan_row_max(row) > best * (1 + 1e-12);
            layers++;
        }
    }
    tap_ok(bad == 0 && moved > 0,
           "prefill tiers: %d random layers as short as the best number of slot experts, the "
           "likeliest ones, none below the floor (%d moved, %d wrong)",
           layers, moved, bad);

    /* a layer bound by its NVMe expert: a slot for its DRAM_CPU expert would not shorten it,
       so that expert stays on the CPU (copied only "as long as that shortens the layer") */
    {
        struct mt_plan_problem pb;
        double p2[2] = {1.0, 0.5};
        uint8_t t2[2] = {MT_TIER_NVME, MT_TIER_DRAM_CPU};

        memset(&pb, 0, sizeof(pb));
        pb.n_layers = 1;
        pb.n_experts = 2;
        pb.prob = p2;
        pb.expert_bytes = 44e6;
        pb.expert_flops = 88e6;
        pb.rate[MT_SRC_GPU_MEM] = 3000e9;
        pb.rate[MT_SRC_GPU_FLOP] = 300e12;
        pb.rate[MT_SRC_CPU_MEM] = 400e9;
        pb.rate[MT_SRC_CPU_FLOP] = 20e12;
        pb.rate[MT_SRC_PCIE] = 60e9;
        pb.rate[MT_SRC_DISK] = 0.1e9; /* 0.44 s for the NVMe expert: the layer's bound */
        pb.rate[MT_SRC_DRAM_BUS] = 400e9;
        pb.batch = 64;
        pb.nvme_on_cpu = true;
        tap_ok(mt_plan_prefill_tiers(&pb, t2) == MT_OK && t2[0] == MT_TIER_NVME &&
                   t2[1] == MT_TIER_DRAM_CPU,
               "prefill tiers: a layer its disk read bounds keeps its DRAM_CPU expert on the "
               "CPU (%c%c)",
               mt_tier_code(t2[0]), mt_tier_code(t2[1]));
    }
}

/*
 * The slot balance: k experts copied so that the device's (n_fixed + k) x dev_s and the CPU's
 * launch wait plus (n_cpu - k) x cpu_s end together; brute force over k is the oracle.
 */
static void
test_slot_balance(void)
{
    static const struct {
        int n_cand, n_fixed, n_cpu;
        double dev, launch, cpu;
        int want;
        const char *what;
    } c[] = {
        {10, 0, 10, 1.0, 0.0, 1.0, 5, "equal costs split the experts"},
        {10, 0, 10, 1.0, 0.0, 3.0, 8, "a 3x slower CPU copies more (8: ends at 8, 7 ends at 9)"},
        {10, 0, 10, 3.0, 0.0, 1.0, 2, "a 3x slower copy copies fewer (2: ends at 8)"},
        {10, 10, 4, 1.0, 0.0, 1.0, 0, "always-copied experts already keep the device busiest"},
        {2, 0, 10, 1.0, 0.0, 10.0, 2, "no more than the candidates"},
        {10, 0, 10, 1.0, 0.5, 1.0, 6, "the launch wait delays the CPU (6 and 7 end at 7: fewer)"},
        {1, 0, 1, 1.0, 0.0, 1.0, 0, "a tie copies nothing"},
        {0, 3, 5, 1.0, 0.0, 1.0, 0, "no candidates"},
        {5, 0, 5, 0.1, 0.2, 1.0, 5, "a launch slower than the copy bounds the device"},
    };

    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        int k = mt_plan_slot_balance(c[i].n_cand, c[i].n_fixed, c[i].n_cpu, c[i].dev, c[i].launch,
                                     c[i].cpu);
        tap_ok(k == c[i].want, "slot balance: %s (k %d, want %d)", c[i].what, k, c[i].want);
    }
    /* random cases against brute force over every k */
    int bad = 0;
    for (int t = 0; t < 2000; t++) {
        int n_cpu = (int)mt_rng_below(&rng, 64);
        int n_cand = (int)mt_rng_below(&rng, (uint64_t)n_cpu + 1);
        int n_fixed = (int)mt_rng_below(&rng, 8);
        double dev = 0.1 + 4.0 * mt_rng_uniform(&rng);
        double launch = 0.2 * mt_rng_uniform(&rng);
        double cpu = 0.1 + 4.0 * mt_rng_uniform(&rng);
        int k = mt_plan_slot_balance(n_cand, n_fixed, n_cpu, dev, launch, cpu);
        double best = INFINITY, got = 0.0;
        for (int j = 0; j <= n_cand; j++) {
            double de = (n_fixed + j) * fmax(dev, launch);
            double ce = (n_fixed + j) * launch + (n_cpu - j) * cpu;
            best = fmin(best, fmax(de, ce));
            got = j == k ? fmax(de, ce) : got;
        }
        bad += k < 0 || k > n_cand || got > best;
    }
    tap_ok(bad == 0, "slot balance: 2000 random cases end as early as the best k (%d worse)", bad);
}

/*
 * Decode's copies of DRAM_CPU experts into GPU slots (mt_plan_problem.decode_copies): one layer
 * of 32 DRAM_CPU experts, 8 a token, 10 ms each on the CPU and 20 ms each over PCIe. A sampled
 * token copies the whole number that ends the layer first: 2 (CPU 60 ms, PCIe 40; 3 would tie
 * at 60), so every sample costs 60 ms where the CPU alone takes 80; the expected load splits the
 * layer's load continuously: a third copied, 53.3 ms, below the sampled time as a bound must be.
 * Without a PCIe rate, or the flag off, nothing changes. And mt_plan_build predicts with it where
 * there is a GPU and a link: an all-DRAM V3.2 plan keeps no DRAM_PCIE expert in decode (one
 * copied whenever used is never faster than one that may be), says how many a token copies, and
 * decodes faster than the same machine without a link.
 */
static void
test_decode_copies(void)
{
    double prob[32];
    uint8_t t[32];
    struct mt_plan_problem pb;
    double s_on = 0, s_off = 0, m_on = 0, m_off = 0, copies = -1, s_nolink = 0;
    mt_status_t st;

    for (int e = 0; e < 32; e++) {
        prob[e] = 8.0 / 32;
        t[e] = MT_TIER_DRAM_CPU;
    }
    memset(&pb, 0, sizeof(pb));
    pb.n_layers = 1;
    pb.n_experts = 32;
    pb.prob = prob;
    pb.expert_bytes = 1e9;
    pb.dram_capacity = 32e9;
    pb.rate[MT_SRC_GPU_MEM] = 1e15;
    pb.rate[MT_SRC_CPU_MEM] = 100e9;
    pb.rate[MT_SRC_PCIE] = 50e9;
    pb.batch = 1;
    st = mt_plan_problem_sample(&pb, t, 500, &s_off);
    st = st == MT_OK ? mt_plan_problem_evaluate(&pb, t, &m_off, NULL, NULL) : st;
    pb.decode_copies = true;
    st = st == MT_OK ? mt_plan_problem_sample_copies(&pb, t, 500, &s_on, &copies) : st;
    st = st == MT_OK ? mt_plan_problem_evaluate(&pb, t, &m_on, NULL, NULL) : st;
    pb.rate[MT_SRC_PCIE] = 0;
    st = st == MT_OK ? mt_plan_problem_sample(&pb, t, 500, &s_nolink) : st;
    tap_ok(st == MT_OK && fabs(s_off - 0.080) < 1e-12 && fabs(m_off - 0.080) < 1e-12 &&
               fabs(s_on - 0.060) < 1e-12 && copies == 2.0 && fabs(m_on - 0.160 / 3) < 1e-12 &&
               fabs(s_nolink - 0.080) < 1e-12,
           "decode copies: a token copies %.1f of its 8 DRAM experts, %.1f ms a layer (the CPU "
           "alone %.1f; expected load %.2f, without copies %.1f); without a link %.1f",
           copies, s_on * 1e3, s_off * 1e3, m_on * 1e3, m_off * 1e3, s_nolink * 1e3);

    /* Every token uses both experts of a layer: a DRAM_CPU one (10 ms on the CPU, 5 ms over
       the link) and an NVMe one whose 10 ms of CPU reads stay. Copying the DRAM expert ends the
       layer at 10 ms, all of it copied (the best split is f = 1, never past it); without the
       copy 20 ms. */
    {
        double p2[2] = {1.0, 1.0};
        uint8_t cn[2] = {MT_TIER_DRAM_CPU, MT_TIER_NVME};
        double m_all = 0, s_all = 0, c_all = -1;

        memset(&pb, 0, sizeof(pb));
        pb.n_layers = 1;
        pb.n_experts = 2;
        pb.prob = p2;
        pb.expert_bytes = 1e9;
        pb.dram_capacity = 1e9;
        pb.rate[MT_SRC_GPU_MEM] = 1e15;
        pb.rate[MT_SRC_CPU_MEM] = 100e9;
        pb.rate[MT_SRC_PCIE] = 200e9;
        pb.rate[MT_SRC_DISK] = 1000e9;
        pb.batch = 1;
        pb.decode_copies = true;
        st = mt_plan_problem_evaluate(&pb, cn, &m_all, NULL, NULL);
        st = st == MT_OK ? mt_plan_problem_sample_copies(&pb, cn, 100, &s_all, &c_all) : st;
        tap_ok(st == MT_OK && fabs(m_all - 0.010) < 1e-12 && fabs(s_all - 0.010) < 1e-12 &&
                   c_all == 1.0,
               "decode copies: a layer ends first with every DRAM expert copied: %.3f ms expected, "
               "%.3f sampled, %.1f copied (without: 20)",
               m_all * 1e3, s_all * 1e3, c_all);
        /* copies are decode's: at a batch of 4 (both experts on the CPU) the flag changes
           nothing */
        double m_b4 = 0, m_b4_off = 0;
        pb.batch = 4;
        pb.nvme_on_cpu = true;
        st = mt_plan_problem_evaluate(&pb, cn, &m_b4, NULL, NULL);
        pb.decode_copies = false;
        st = st == MT_OK ? mt_plan_problem_evaluate(&pb, cn, &m_b4_off, NULL, NULL) : st;
        tap_ok(st == MT_OK && m_b4 == m_b4_off && fabs(m_b4 - 0.020) < 1e-12,
               "decode copies are decode's: a batch of 4 tokens costs %.3f ms with the flag, "
               "%.3f without",
               m_b4 * 1e3, m_b4_off * 1e3);
    }

    struct mt_model_config cfg;
    struct mt_model_sizes sz;
    struct mt_hwprofile hw;
    struct mt_plan_budget b;
    struct mt_plan *plan = NULL;

    mt_config_default_v32(&cfg);
    st = mt_model_sizes_compute(&cfg, cfg.fp8, &sz);
    mt_plan_budget_default(&b);
    b.gpu_mem = sz.gpu_other_bytes + (uint64_t)b.ctx * sz.kv_bytes_per_token + b.gpu_reserve;
    b.cpu_mem = (uint64_t)1 << 40;
    b.gpu_reserve_auto = false;
    b.cpu_eff = 0.5;
    struct mt_plan *nolink = NULL;
    make_profile(&hw, 3000, 50, 25, 7);
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan) : st;
    make_profile(&hw, 3000, 50, 0, 7);
    st = st == MT_OK ? mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &nolink) : st;
    tap_ok(st == MT_OK && plan->tier[MT_TIER_DRAM_CPU].experts == 58 * 256 &&
               plan->tier[MT_TIER_DRAM_PCIE].experts == 0 && plan->decode_copies > 1 &&
               plan->decode_ms < nolink->decode_ms && nolink->decode_copies == 0,
           "all-DRAM V3.2, the CPU at 25 GB/s of a 50 GB/s bus, a 25 GB/s link: every DRAM expert "
           "DRAM_CPU in decode, %.1f of a token's copied, %.1f ms against %.1f without a link",
           st == MT_OK ? plan->decode_copies : 0.0, st == MT_OK ? plan->decode_ms : 0.0,
           st == MT_OK ? nolink->decode_ms : 0.0);
    mt_plan_destroy(nolink);
    mt_plan_destroy(plan);
    plan = NULL;
    /* a CPU at 0.9 of the bus: the search's DRAM_PCIE experts make the bus the layer's limit,
       and an NVMe expert, whose bytes cross it too, never looks cheaper than a DRAM one while
       DRAM has room (a plan of session 37 put 9 of 768 on NVMe when only DRAM's were charged) */
    b.cpu_eff = 0.9;
    make_profile(&hw, 3000, 50, 25, 7);
    st = mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan);
    tap_ok(st == MT_OK && plan->tier[MT_TIER_NVME].experts == 0 &&
               plan->tier[MT_TIER_DRAM_CPU].experts == 58 * 256,
           "a bus-bound all-DRAM plan keeps every expert in DRAM (%d on NVMe), bottleneck %s",
           st == MT_OK ? plan->tier[MT_TIER_NVME].experts : -1,
           st == MT_OK ? plan->bottleneck : "");
    mt_plan_destroy(plan);
}

/*
 * The GPU's prompt arithmetic (gpu_prefill.c): the keys rows see, the FLOPs by hand at V3.2's
 * dimensions, and a plan's prefill from them. A 2-layer V3.2 (one MoE layer) with every expert on
 * the GPU computes a prompt batch in (its always-on FLOPs + pairs x an expert's FLOPs) /
 * (bf16 rate x efficiency / passes); an efficiency learned at half the default halves its
 * prefill; and 8,192 tokens cost more a token than 1,024 (attention and indexer grow with them).
 */
/*
 * mt_plan_host_chunk: the longest of 4,096, 2,048, 1,024 tokens (each at most the context) whose
 * work space and MT_PLAN_WORK_SLACK fit the room, a room of exactly that sum included; none
 * fitting gives 0 and the shortest one's sum. The work spaces come from mt_plan_gpu_work_bytes.
 */
static void
test_host_chunk(void)
{
    struct mt_model_config cfg;
    struct mt_model_sizes sz;
    uint64_t w[3], w1500, got = 0;
    int c[4];

    mt_config_default_v32(&cfg);
    if (mt_model_sizes_compute(&cfg, true, &sz) != MT_OK) {
        tap_bail_out("cannot compute the V3.2 sizes");
    }
    uint64_t slot = sz.routed_expert_slot_bytes;
    for (int i = 0; i < 3; i++) {
        w[i] = mt_plan_gpu_work_bytes(&cfg, 4096 >> i, 8192, true, slot, false) +
               MT_PLAN_WORK_SLACK;
    }
    c[0] = mt_plan_host_chunk(&cfg, 8192, slot, false, w[0], &got);
    bool ok = c[0] == 4096 && got == w[0];
    c[1] = mt_plan_host_chunk(&cfg, 8192, slot, false, w[0] - 1, &got);
    ok = ok && c[1] == 2048 && got == w[1];
    c[2] = mt_plan_host_chunk(&cfg, 8192, slot, false, w[2], &got);
    ok = ok && c[2] == 1024 && got == w[2];
    c[3] = mt_plan_host_chunk(&cfg, 8192, slot, false, w[2] - 1, &got);
    tap_ok(ok && c[3] == 0 && got == w[2],
           "host chunk at 8K context: %d with room for 4,096's work space to the byte, %d one "
           "byte short, %d with 1,024's, %d with less (its %.2f GiB said)",
           c[0], c[1], c[2], c[3], got / 1073741824.0);

    /* a 1,500-position context: 4,096 and 2,048 both become 1,500 */
    w1500 = mt_plan_gpu_work_bytes(&cfg, 1500, 1500, true, slot, false) + MT_PLAN_WORK_SLACK;
    c[0] = mt_plan_host_chunk(&cfg, 1500, slot, false, w1500, &got);
    ok = c[0] == 1500 && got == w1500;
    c[1] = mt_plan_host_chunk(&cfg, 1500, slot, false, w1500 - 1, &got);
    tap_ok(ok && c[1] == 1024 &&
               got == mt_plan_gpu_work_bytes(&cfg, 1024, 1500, true, slot, false) +
                          MT_PLAN_WORK_SLACK,
           "host chunk at a 1,500-position context: %d, then %d one byte short", c[0], c[1]);
}

static void
test_gpu_prompt_model(void)
{
    struct mt_model_config cfg;
    struct mt_model_sizes sz;
    struct mt_hwprofile hw;
    struct mt_plan_budget b;
    double ak, ik;

    mt_plan_prompt_keys(0, 5, 3, &ak, &ik);
    tap_ok(ak == 12 && ik == 15, "rows 0-4, top-k 3: 1+2+3+3+3 = %g attended, %g indexed", ak, ik);
    mt_plan_prompt_keys(10, 2, 3, &ak, &ik);
    tap_ok(ak == 6 && ik == 23, "rows 10-11, top-k 3: %g attended, 11+12 = %g indexed", ak, ik);
    mt_plan_prompt_keys(2, 3, 4, &ak, &ik);
    tap_ok(ak == 11 && ik == 12, "rows 2-4, top-k 4: 3+4+4 = %g attended, %g indexed", ak, ik);
    mt_plan_prompt_keys(0, 4, 0, &ak, &ik);
    tap_ok(ak == 10 && ik == 10, "no top-k: every key attended (%g)", ak);
    mt_plan_prompt_keys(0, 4, 1, &ak, &ik);
    tap_ok(ak == 4 && ik == 10, "rows 0-3, top-k 1: one key each, %g attended, 1+2+3+4 = %g "
           "indexed", ak, ik);

    mt_config_default_v32(&cfg);
    cfg.num_hidden_layers = 2;
    cfg.first_k_dense_replace = 1;
    for (int l = 0; l < 2; l++) {
        cfg.layer_is_moe[l] = l >= 1;
    }
    if (mt_model_sizes_compute(&cfg, cfg.fp8, &sz) != MT_OK) {
        tap_ok(false, "2-layer V3.2 sizes: %s", mt_last_error());
        return;
    }
    double weights = (double)(sz.params[MT_ROLE_ATTN] + sz.params[MT_ROLE_INDEXER] +
                               sz.params[MT_ROLE_DENSE_MLP] + sz.params[MT_ROLE_SHARED_EXPERT] +
                               sz.params[MT_ROLE_ROUTER]);
    /* a key: 128 heads x (512 + 64 + 512) multiply-adds; the indexer's 64 heads x 128 */
    double want = 2 * weights * 3 + 2 * (2 * 128.0 * 1088 * 7 + 2 * 64.0 * 128 * 9) +
                  2 * (double)sz.params[MT_ROLE_HEAD];
    double got = mt_plan_gpu_prompt_flops(&cfg, &sz, 3, 7, 9, 1);
    tap_ok(fabs(got - want) < 1e-9 * want, "3 rows, 7 keys attended, 9 indexed: %.6g FLOPs", got);

    make_profile(&hw, 1000, 0, 0, 0); /* no DRAM rate: every expert on the GPU */
    mt_plan_budget_default(&b);
    b.gpu_mem = (uint64_t)60 << 30;
    b.cpu_mem = (uint64_t)64 << 30;
    b.ctx = 8192;
    double ms[3] = {0}, per_batch[3] = {0};
    const int batch[3] = {1024, 1024, 8192};
    bool all_gpu = true;
    for (int i = 0; i < 3; i++) {
        struct mt_plan *plan = NULL;

        hw.learned.reports = i == 1;
        hw.learned.gpu_prefill_eff = i == 1 ? MT_PLAN_GPU_PREFILL_EFF / 2 : 0;
        b.prefill_batch = batch[i];
        if (mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan) != MT_OK) {
            tap_ok(false, "2-layer V3.2 plan at %d tokens: %s", batch[i], mt_last_error());
            return;
        }
        double eff = i == 1 ? MT_PLAN_GPU_PREFILL_EFF / 2 : MT_PLAN_GPU_PREFILL_EFF;
        mt_plan_prompt_keys(0, batch[i], cfg.index_topk, &ak, &ik);
        per_batch[i] = (mt_plan_gpu_prompt_flops(&cfg, &sz, batch[i], ak, ik, 1) +
                        (double)batch[i] * cfg.num_experts_per_tok * 6.0 * cfg.hidden_size *
                            cfg.moe_intermediate_size) /
                       (100e12 * eff / MT_PLAN_GPU_PASSES) * 1e3;
        ms[i] = plan->prefill_ms;
        all_gpu = all_gpu && plan->tier[MT_TIER_GPU].experts == cfg.n_routed_experts;
        mt_plan_destroy(plan);
    }
    tap_ok(all_gpu && fabs(ms[0] - per_batch[0]) < 1e-6 * per_batch[0] &&
               fabs(ms[2] - per_batch[2]) < 1e-6 * per_batch[2],
           "every expert on the GPU: a prompt batch costs its FLOPs at 100 TFLOPS x %.2f / %d: "
           "%.3f ms (%.3f by hand) at 1,024 tokens, %.3f (%.3f) at 8,192",
           MT_PLAN_GPU_PREFILL_EFF, MT_PLAN_GPU_PASSES, ms[0], per_batch[0], ms[2], per_batch[2]);
    tap_ok(fabs(ms[1] - 2 * ms[0]) < 1e-6 * ms[1],
           "a learned GPU prefill efficiency of half the default doubles it: %.3f ms", ms[1]);
    tap_ok(ms[2] / 8192 > 1.1 * ms[0] / 1024,
           "8,192 tokens cost %.2f us a token, 1,024 %.2f: attention and indexer grow",
           ms[2] / 8.192, ms[0] / 1.024);

    /* a run's prompt (mt_plan_predict_prompt): one chunk is the plan's own prediction; eight
       chunks of 1,024 cost more than eight first chunks (later rows see more keys), and as
       much as one step of 8,192 within 1% (this all-GPU plan is bound by arithmetic, which the
       chunks divide without adding to it: each row's attention at its position either way) */
    struct mt_plan *plan = NULL;
    double one = 0.0, eight = 0.0, odd = 0.0;
    hw.learned.reports = 0;
    hw.learned.gpu_prefill_eff = 0;
    b.prefill_batch = 1024;
    if (mt_plan_build(&cfg, &sz, &hw, &b, NULL, NULL, &plan) != MT_OK ||
        mt_plan_predict_prompt(plan, &cfg, &sz, 1024, 1024, &one) != MT_OK ||
        mt_plan_predict_prompt(plan, &cfg, &sz, 8192, 1024, &eight) != MT_OK ||
        mt_plan_predict_prompt(plan, &cfg, &sz, 1500, 1024, &odd) != MT_OK) {
        tap_ok(false, "a prompt's prediction: %s", mt_last_error());
        mt_plan_destroy(plan);
        return;
    }
    tap_ok(fabs(one - plan->prefill_ms / 1e3) < 1e-9 * one,
           "a prompt of one chunk is predicted as the plan's batch: %.4f s", one);
    /* one row past a chunk is a one-row step (it reads at most k experts a layer and the
       always-on weights once), not another chunk's MoE step */
    double one_more = 0.0;
    mt_status_t st1 = mt_plan_predict_prompt(plan, &cfg, &sz, 1025, 1024, &one_more);
    tap_ok(st1 == MT_OK && one_more > one && one_more - one < 0.25 * one,
           "1,025 tokens in chunks of 1,024: %.4f s, one chunk and a one-row step (%.4f s)",
           one_more, one_more - one);
    tap_ok(eight > 8 * one * 1.05 && fabs(eight - ms[2] / 1e3) < 0.01 * eight && odd > one &&
               odd < 2 * one,
           "8,192 tokens in chunks of 1,024: %.4f s, more than 8 first chunks (%.4f), one step of "
           "8,192 within 1%% (%.4f); 1,500 tokens between one and two chunks (%.4f)", eight,
           8 * one, ms[2] / 1e3, odd);
    /* nothing to predict: no tokens, or no chunk to run them in (planner.h: *seconds 0) */
    double none[2] = {-1.0, -1.0};
    mt_status_t sn[2] = {mt_plan_predict_prompt(plan, &cfg, &sz, 0, 1024, &none[0]),
                         mt_plan_predict_prompt(plan, &cfg, &sz, 100, 0, &none[1])};
    tap_ok(sn[0] == MT_OK && sn[1] == MT_OK && none[0] == 0 && none[1] == 0,
           "no tokens, or chunks of 0 tokens: nothing predicted (%g s, %g s)", none[0], none[1]);
    mt_plan_destroy(plan);
}

int
main(void)
{
    mt_rng_init(&rng, 0x9E3779B97F4A7C15ull);
    tap_plan(0);
    mt_log_set_quiet(true);
    test_exhaustive();
    test_passes_needed();
    test_budgets();
    test_sampling();
    test_sampling_paths();
    test_evaluate_checks();
    test_host_wait_batch();
    test_nvme_prefill();
    test_keep_storage_modes();
    test_greedy_ties();
    test_v32_plans();
    test_decode_bound();
    test_prefill_batch_2();
    test_auto_reserve_edges();
    test_shipped_profiles();
    test_host_wait();
    test_learned_apply();
    test_nvme_plan_rates();
    test_plan_gpu_without_flops();
    test_cpu_plan_budgets();
    test_plan_file_cpu_all_moe();
    test_dram_copy_bus();
    test_cpu_prefill_model();
    test_slot_balance();
    test_prefill_tiers();
    test_decode_copies();
    test_gpu_prompt_model();
    test_host_chunk();
    return tap_done();
}
