/* SPDX-License-Identifier: MIT */
/*
 * planner.c - the placement planner's cost model and optimizer (planner.h explains both).
 *
 * Every (expert, tier) pair has a fixed load vector over the sources: the seconds that source
 * spends on that expert per step. A layer costs the max of the summed vectors of its experts,
 * so changing one expert's tier changes one row of sums and its max: moves are evaluated in
 * O(sources). The search keeps the per-layer sums and applies any improving move it finds:
 *   1. move one expert to another tier (if the budget of the new tier has room);
 *   2. swap the tiers of two experts of one layer (budget-neutral);
 *   3. move two experts of one layer to any tiers that fit the budgets together;
 *   4. move one expert in layer a and one in layer b together (e.g. GPU<->DRAM across layers),
 *      when the pair keeps both budgets although one move alone might not.
 * Experts of a layer with equal tier and probability are interchangeable, so passes 2 and 3 look
 * at one representative pair per class pair (uniform activation: a handful per layer). Two greedy
 * starts (probability order; cheapest tier per expert) are each improved, then kicked: a few
 * random experts are moved, the search reruns, and the result is kept when better (iterated local
 * search, with a work budget that gives small problems hundreds of kicks and the full model two).
 * On random 2-layer instances this matches exhaustive search (tests/test_planner.c).
 *
 * The optimizer minimizes the expected-load model. mt_plan_build then scores the decode placement
 * by sampling tokens (E[max] per layer, which the expected load only bounds from below) and uses
 * that score to decide how many DRAM experts to copy over PCIe in decode.
 */
#include <config.h>

#include "runtime/plan/planner.h"

#include "runtime/base/rng.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_ MT_TIER_COUNT
#define S_ MT_SRC_COUNT

char
mt_tier_code(enum mt_tier tier)
{
    static const char codes[] = "GCPN";
    return (unsigned)tier < MT_TIER_COUNT ? codes[tier] : '-';
}

enum mt_tier
mt_tier_from_code(char c)
{
    switch (c) {
    case 'G':
        return MT_TIER_GPU;
    case 'C':
        return MT_TIER_DRAM_CPU;
    case 'P':
        return MT_TIER_DRAM_PCIE;
    case 'N':
        return MT_TIER_NVME;
    case '-':
        return MT_TIER_NONE;
    default:
        return MT_TIER_COUNT;
    }
}

const char *
mt_tier_name(enum mt_tier tier)
{
    static const char *names[] = {"gpu", "dram-cpu", "dram-pcie", "nvme"};
    return (unsigned)tier < MT_TIER_COUNT ? names[tier] : "none";
}

const char *
mt_plan_source_name(enum mt_plan_source src)
{
    static const char *names[] = {"gpu-hbm", "gpu-flops", "cpu-dram", "cpu-flops", "pcie", "disk"};
    return (unsigned)src < MT_SRC_COUNT ? names[src] : "?";
}

/* ---- cost model ------------------------------------------------------------------------------ */

static bool
is_dram(int t)
{
    return t == MT_TIER_DRAM_CPU || t == MT_TIER_DRAM_PCIE;
}

/* Storage class of a tier: 0 GPU, 1 DRAM, 2 NVMe. */
static int
storage_of(int t)
{
    return t == MT_TIER_GPU ? 0 : is_dram(t) ? 1 : 2;
}

/* Where NVMe experts are computed: on the GPU (via PCIe) in prefill when it can, else the CPU. */
static bool
nvme_on_gpu(const struct mt_plan_problem *pb)
{
    return pb->batch > 1 && pb->rate[MT_SRC_PCIE] > 0 && pb->rate[MT_SRC_GPU_MEM] > 0;
}

static void
tier_feasible(const struct mt_plan_problem *pb, bool ok[T_])
{
    const double *r = pb->rate;

    ok[MT_TIER_GPU] = r[MT_SRC_GPU_MEM] > 0;
    ok[MT_TIER_DRAM_CPU] = r[MT_SRC_CPU_MEM] > 0;
    ok[MT_TIER_DRAM_PCIE] = r[MT_SRC_PCIE] > 0 && r[MT_SRC_GPU_MEM] > 0;
    ok[MT_TIER_NVME] = r[MT_SRC_DISK] > 0 && (nvme_on_gpu(pb) || r[MT_SRC_CPU_MEM] > 0);
}

static void
add_load(double *v, int s, double amount, const double *rate)
{
    if (rate[s] > 0) {
        v[s] += amount / rate[s];
    }
}

/* Load vector (seconds per source) of one expert of activation probability p in tier t. */
static void
expert_load(const struct mt_plan_problem *pb, double p, int t, double v[S_])
{
    double u = pb->batch <= 1 ? p : 1.0 - pow(1.0 - MT_MIN(p, 1.0), pb->batch);
    double mem = u * pb->expert_bytes;
    double fl = (pb->batch <= 1 ? 1 : pb->batch) * p * pb->expert_flops;
    const double *r = pb->rate;
    bool gpu_compute = false;

    for (int s = 0; s < S_; s++) {
        v[s] = 0.0;
    }
    switch (t) {
    case MT_TIER_GPU:
        gpu_compute = true;
        break;
    case MT_TIER_DRAM_CPU:
        add_load(v, MT_SRC_CPU_MEM, mem, r);
        add_load(v, MT_SRC_CPU_FLOP, fl, r);
        break;
    case MT_TIER_DRAM_PCIE:
        add_load(v, MT_SRC_PCIE, mem, r);
        gpu_compute = true;
        break;
    case MT_TIER_NVME:
        add_load(v, MT_SRC_DISK, mem, r);
        if (nvme_on_gpu(pb)) {
            add_load(v, MT_SRC_PCIE, mem, r);
            gpu_compute = true;
        } else {
            add_load(v, MT_SRC_CPU_MEM, mem, r);
            add_load(v, MT_SRC_CPU_FLOP, fl, r);
        }
        break;
    }
    if (gpu_compute) {
        add_load(v, MT_SRC_GPU_MEM, mem, r);
        add_load(v, MT_SRC_GPU_FLOP, fl, r);
    }
}

static int
slots_of(double capacity, double expert_bytes)
{
    double n;

    if (capacity <= 0 || expert_bytes <= 0) {
        return 0;
    }
    n = floor(capacity / expert_bytes + 1e-9);
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

static mt_status_t
check_problem(const struct mt_plan_problem *pb)
{
    if (pb == NULL || pb->prob == NULL || pb->n_layers <= 0 || pb->n_experts <= 0 ||
        !(pb->expert_bytes > 0) || pb->batch < 1) {
        return mt_fail(MT_ERR_INVAL, 0, "planner: empty or malformed problem");
    }
    for (size_t i = 0; i < (size_t)pb->n_layers * (size_t)pb->n_experts; i++) {
        if (!(pb->prob[i] >= 0.0 && pb->prob[i] <= 1.0)) {
            return mt_fail(MT_ERR_INVAL, 0, "planner: activation probability %g is not in [0, 1]",
                           pb->prob[i]);
        }
    }
    return MT_OK;
}

mt_status_t
mt_plan_problem_evaluate(const struct mt_plan_problem *pb, const uint8_t *tiers,
                         double *seconds_out, double *src_s, double *limit_s)
{
    bool ok[T_];
    int used_g = 0;
    int used_d = 0;
    double total = 0.0;
    mt_status_t st;

    st = check_problem(pb);
    if (st != MT_OK) {
        return st;
    }
    tier_feasible(pb, ok);
    if (src_s != NULL) {
        memset(src_s, 0, S_ * sizeof(*src_s));
    }
    if (limit_s != NULL) {
        memset(limit_s, 0, S_ * sizeof(*limit_s));
    }
    for (int l = 0; l < pb->n_layers; l++) {
        double row[S_] = {0};
        double v[S_];
        double worst = 0.0;
        int arg = 0;

        for (int e = 0; e < pb->n_experts; e++) {
            size_t i = (size_t)l * (size_t)pb->n_experts + (size_t)e;
            int t = tiers[i];
            if (t >= T_ || !ok[t]) {
                return mt_fail(MT_ERR_INVAL, 0,
                               "planner: expert %d of layer %d has tier %d, impossible here", e, l,
                               t);
            }
            used_g += t == MT_TIER_GPU;
            used_d += is_dram(t);
            expert_load(pb, pb->prob[i], t, v);
            for (int s = 0; s < S_; s++) {
                row[s] += v[s];
            }
        }
        for (int s = 0; s < S_; s++) {
            if (row[s] > worst) {
                worst = row[s];
                arg = s;
            }
            if (src_s != NULL) {
                src_s[s] += row[s];
            }
        }
        if (limit_s != NULL) {
            limit_s[arg] += worst;
        }
        total += worst;
    }
    if (used_g > slots_of(pb->gpu_capacity, pb->expert_bytes)) {
        return mt_fail(MT_ERR_INVAL, 0, "planner: %d GPU experts exceed the GPU budget of %d",
                       used_g, slots_of(pb->gpu_capacity, pb->expert_bytes));
    }
    if (used_d > slots_of(pb->dram_capacity, pb->expert_bytes)) {
        return mt_fail(MT_ERR_INVAL, 0, "planner: %d DRAM experts exceed the DRAM budget of %d",
                       used_d, slots_of(pb->dram_capacity, pb->expert_bytes));
    }
    *seconds_out = total;
    return MT_OK;
}

/* ---- local search ---------------------------------------------------------------------------- */

struct class_item {
    int t;
    double p;
    int e;
};

struct search {
    const struct mt_plan_problem *pb;
    int L;
    int E;
    bool ok[T_];
    int cap_g;
    int cap_d;
    int used_g;
    int used_d;
    double *vec;              /* owned, (L, E, T_, S_) load vectors */
    double *load;             /* owned, (L, S_) current sums */
    uint8_t *t;               /* borrowed, (L, E) current tiers */
    struct class_item *items; /* owned, (E) scratch of class_ranks */
    int *rank;                /* owned, (E) */
    int *cls;                 /* owned, (E) */
};

static const double *
vec_of(const struct search *sr, int l, int e, int t)
{
    return sr->vec + (((size_t)l * (size_t)sr->E + (size_t)e) * T_ + (size_t)t) * S_;
}

static double
row_max(const double *row)
{
    double m = row[0];
    for (int s = 1; s < S_; s++) {
        m = MT_MAX(m, row[s]);
    }
    return m;
}

/* Change in layer l's time if expert e moves to tier `to` (and, if e2 >= 0, e2 to `to2`). */
static double
move_delta(const struct search *sr, int l, int e, int to, int e2, int to2)
{
    const double *row = sr->load + (size_t)l * S_;
    double nrow[S_];
    const double *a = vec_of(sr, l, e, sr->t[(size_t)l * sr->E + e]);
    const double *b = vec_of(sr, l, e, to);

    for (int s = 0; s < S_; s++) {
        nrow[s] = row[s] - a[s] + b[s];
    }
    if (e2 >= 0) {
        const double *c = vec_of(sr, l, e2, sr->t[(size_t)l * sr->E + e2]);
        const double *d = vec_of(sr, l, e2, to2);
        for (int s = 0; s < S_; s++) {
            nrow[s] += d[s] - c[s];
        }
    }
    return row_max(nrow) - row_max(row);
}

static void
apply_move(struct search *sr, int l, int e, int to)
{
    size_t i = (size_t)l * sr->E + e;
    int from = sr->t[i];
    const double *a = vec_of(sr, l, e, from);
    const double *b = vec_of(sr, l, e, to);
    double *row = sr->load + (size_t)l * S_;

    for (int s = 0; s < S_; s++) {
        row[s] += b[s] - a[s];
    }
    sr->used_g += (to == MT_TIER_GPU) - (from == MT_TIER_GPU);
    sr->used_d += is_dram(to) - is_dram(from);
    sr->t[i] = (uint8_t)to;
}

static void
recompute_loads(struct search *sr)
{
    memset(sr->load, 0, (size_t)sr->L * S_ * sizeof(double));
    sr->used_g = 0;
    sr->used_d = 0;
    for (int l = 0; l < sr->L; l++) {
        for (int e = 0; e < sr->E; e++) {
            int t = sr->t[(size_t)l * sr->E + e];
            const double *v = vec_of(sr, l, e, t);
            for (int s = 0; s < S_; s++) {
                sr->load[(size_t)l * S_ + s] += v[s];
            }
            sr->used_g += t == MT_TIER_GPU;
            sr->used_d += is_dram(t);
        }
    }
}

static double
total_time(const struct search *sr)
{
    double total = 0.0;
    for (int l = 0; l < sr->L; l++) {
        total += row_max(sr->load + (size_t)l * S_);
    }
    return total;
}

static bool
fits(const struct search *sr, int dg, int dd)
{
    return sr->used_g + dg <= sr->cap_g && sr->used_d + dd <= sr->cap_d;
}

/* Whether one expert moving f1 -> t1 and another f2 -> t2 fit together; one move: f2 == t2. */
static bool
moves_fit(const struct search *sr, int f1, int t1, int f2, int t2)
{
    return fits(
        sr, (t1 == MT_TIER_GPU) - (f1 == MT_TIER_GPU) + (t2 == MT_TIER_GPU) - (f2 == MT_TIER_GPU),
        is_dram(t1) - is_dram(f1) + is_dram(t2) - is_dram(f2));
}

static bool
allowed(const struct search *sr, bool keep_storage, int from, int to)
{
    return to != from && sr->ok[to] && (!keep_storage || storage_of(from) == storage_of(to));
}

/* Pass 1: single moves. Returns the number applied. */
static int
pass_single(struct search *sr, bool keep_storage, double eps)
{
    int applied = 0;

    for (int l = 0; l < sr->L; l++) {
        for (int e = 0; e < sr->E; e++) {
            int from = sr->t[(size_t)l * sr->E + e];
            int best = -1;
            double best_d = -eps;
            for (int to = 0; to < T_; to++) {
                if (!allowed(sr, keep_storage, from, to) || !moves_fit(sr, from, to, 0, 0)) {
                    continue;
                }
                double d = move_delta(sr, l, e, to, -1, 0);
                if (d < best_d) {
                    best_d = d;
                    best = to;
                }
            }
            if (best >= 0) {
                apply_move(sr, l, e, best);
                applied++;
            }
        }
    }
    return applied;
}

static int
cmp_class(const void *a, const void *b)
{
    const struct class_item *x = a;
    const struct class_item *y = b;

    if (x->t != y->t) {
        return x->t - y->t;
    }
    if (x->p != y->p) {
        return x->p < y->p ? -1 : 1;
    }
    return x->e - y->e;
}

/*
 * Experts of layer l with the same tier and probability are interchangeable, so pair moves need
 * only the first two of each class: rank[e] = position of e within its class (0, 1, ...), and
 * cls[e] = an id shared by the class. Turns the L x E^2 pair passes into a few evaluations per
 * layer when activation is uniform (no trace).
 */
static void
class_ranks(const struct search *sr, int l, struct class_item *items, int *rank, int *cls)
{
    const uint8_t *tl = sr->t + (size_t)l * sr->E;
    const double *pl = sr->pb->prob + (size_t)l * sr->E;

    for (int e = 0; e < sr->E; e++) {
        items[e].t = tl[e];
        items[e].p = pl[e];
        items[e].e = e;
    }
    qsort(items, (size_t)sr->E, sizeof(*items), cmp_class);
    for (int i = 0; i < sr->E; i++) {
        bool same = i > 0 && items[i].t == items[i - 1].t && items[i].p == items[i - 1].p;
        int e = items[i].e;
        rank[e] = same ? rank[items[i - 1].e] + 1 : 0;
        cls[e] = same ? cls[items[i - 1].e] : i;
    }
}

/* Whether the pair (e1, e2) represents its class pair (see class_ranks). */
static bool
pair_rep(const int *rank, const int *cls, int e1, int e2)
{
    if (cls[e1] == cls[e2]) {
        return (rank[e1] == 0 && rank[e2] == 1) || (rank[e1] == 1 && rank[e2] == 0);
    }
    return rank[e1] == 0 && rank[e2] == 0;
}

/* Pass 2: swap the tiers of two experts of one layer. */
static int
pass_swap(struct search *sr, bool keep_storage, double eps)
{
    int applied = 0;

    for (int l = 0; l < sr->L; l++) {
        uint8_t *tl = sr->t + (size_t)l * sr->E;
        class_ranks(sr, l, sr->items, sr->rank, sr->cls);
        for (int e1 = 0; e1 < sr->E; e1++) {
            if (sr->rank[e1] > 1) {
                continue;
            }
            for (int e2 = e1 + 1; e2 < sr->E; e2++) {
                int t1 = tl[e1];
                int t2 = tl[e2];
                if (t1 == t2 || (keep_storage && storage_of(t1) != storage_of(t2)) ||
                    !pair_rep(sr->rank, sr->cls, e1, e2)) {
                    continue;
                }
                if (move_delta(sr, l, e1, t2, e2, t1) < -eps) {
                    apply_move(sr, l, e1, t2);
                    apply_move(sr, l, e2, t1);
                    applied++;
                }
            }
        }
    }
    return applied;
}

/* Pass 2b: move two experts of one layer at once, to any tiers that fit the budgets together. */
static int
pass_pair_in_layer(struct search *sr, bool keep_storage, double eps)
{
    int applied = 0;

    for (int l = 0; l < sr->L; l++) {
        uint8_t *tl = sr->t + (size_t)l * sr->E;
        class_ranks(sr, l, sr->items, sr->rank, sr->cls);
        for (int e1 = 0; e1 < sr->E; e1++) {
            if (sr->rank[e1] > 1) {
                continue;
            }
            for (int e2 = e1 + 1; e2 < sr->E; e2++) {
                if (!pair_rep(sr->rank, sr->cls, e1, e2)) {
                    continue;
                }
                int f1 = tl[e1];
                int f2 = tl[e2];
                int b1 = -1;
                int b2 = -1;
                double best = -eps;
                for (int t1 = 0; t1 < T_; t1++) {
                    if (!allowed(sr, keep_storage, f1, t1)) {
                        continue;
                    }
                    for (int t2 = 0; t2 < T_; t2++) {
                        if (!allowed(sr, keep_storage, f2, t2)) {
                            continue;
                        }
                        if (!moves_fit(sr, f1, t1, f2, t2)) {
                            continue;
                        }
                        double d = move_delta(sr, l, e1, t1, e2, t2);
                        if (d < best) {
                            best = d;
                            b1 = t1;
                            b2 = t2;
                        }
                    }
                }
                if (b1 >= 0) {
                    apply_move(sr, l, e1, b1);
                    apply_move(sr, l, e2, b2);
                    applied++;
                }
            }
        }
    }
    return applied;
}

/* Best single move of each type (from, to) in each layer, for pass 3. */
struct best_move {
    double d;
    int e;
};

/*
 * Pass 3: one move in layer a plus one in layer b != a, applied together when the pair fits the
 * budgets and their summed gain beats eps. Applies the best such pair; returns 1 or 0.
 */
static int
pass_pair(struct search *sr, double eps, struct best_move *bm)
{
    /* bm: (L, T_, T_) best move from tier f to tier g in layer l. */
    double best = -eps;
    int bl1 = -1;
    int bl2 = -1;
    int bf1 = 0;
    int bt1 = 0;
    int bf2 = 0;
    int bt2 = 0;

    for (size_t i = 0; i < (size_t)sr->L * T_ * T_; i++) {
        bm[i].d = DBL_MAX;
        bm[i].e = -1;
    }
    for (int l = 0; l < sr->L; l++) {
        for (int e = 0; e < sr->E; e++) {
            int from = sr->t[(size_t)l * sr->E + e];
            for (int to = 0; to < T_; to++) {
                if (!allowed(sr, false, from, to) || storage_of(from) == storage_of(to)) {
                    continue;
                }
                double d = move_delta(sr, l, e, to, -1, 0);
                struct best_move *b = &bm[((size_t)l * T_ + from) * T_ + to];
                if (d < b->d) {
                    b->d = d;
                    b->e = e;
                }
            }
        }
    }
    for (int f1 = 0; f1 < T_; f1++) {
        for (int t1 = 0; t1 < T_; t1++) {
            if (storage_of(f1) == storage_of(t1)) {
                continue;
            }
            for (int f2 = 0; f2 < T_; f2++) {
                for (int t2 = 0; t2 < T_; t2++) {
                    if (storage_of(f2) == storage_of(t2)) {
                        continue;
                    }
                    if (!moves_fit(sr, f1, t1, f2, t2)) {
                        continue;
                    }
                    /* Best over layer pairs l1 != l2: O(L^2) but L is at most a few hundred. */
                    for (int l1 = 0; l1 < sr->L; l1++) {
                        const struct best_move *m1 = &bm[((size_t)l1 * T_ + f1) * T_ + t1];
                        if (m1->e < 0) {
                            continue;
                        }
                        for (int l2 = 0; l2 < sr->L; l2++) {
                            const struct best_move *m2 = &bm[((size_t)l2 * T_ + f2) * T_ + t2];
                            if (l2 == l1 || m2->e < 0) {
                                continue;
                            }
                            if (m1->d + m2->d < best) {
                                best = m1->d + m2->d;
                                bl1 = l1;
                                bl2 = l2;
                                bf1 = f1;
                                bt1 = t1;
                                bf2 = f2;
                                bt2 = t2;
                            }
                        }
                    }
                }
            }
        }
    }
    if (bl1 < 0) {
        return 0;
    }
    apply_move(sr, bl1, bm[((size_t)bl1 * T_ + bf1) * T_ + bt1].e, bt1);
    apply_move(sr, bl2, bm[((size_t)bl2 * T_ + bf2) * T_ + bt2].e, bt2);
    return 1;
}

static void
local_search(struct search *sr, bool keep_storage, struct best_move *bm)
{
    /* Relative threshold: moves must gain more than rounding noise, so the loop terminates. */
    for (int round = 0; round < 1000000; round++) {
        double eps = 1e-12 * (total_time(sr) + 1e-30);
        int n = pass_single(sr, keep_storage, eps);
        n += pass_swap(sr, keep_storage, eps);
        if (n == 0) {
            n += pass_pair_in_layer(sr, keep_storage, eps);
        }
        if (n == 0 && !keep_storage) {
            n += pass_pair(sr, eps, bm);
        }
        if (n == 0) {
            break;
        }
        if (round % 64 == 63) {
            recompute_loads(sr); /* drop accumulated rounding */
        }
    }
    recompute_loads(sr);
}

/*
 * Iterated local search: from the local optimum in sr->t, kick a few random experts to random
 * tiers (swapping with an expert of the target storage when the budget is full), search again,
 * keep the result when it is better. `kicks` bounds the work; scratch has room for L x E tiers.
 */
static void
iterate_kicks(struct search *sr, bool keep_storage, struct best_move *bm, int kicks,
              uint8_t *scratch)
{
    size_t n = (size_t)sr->L * sr->E;
    struct mt_rng rs; /* deterministic: the same inputs always give the same plan */

    mt_rng_init(&rs, 0x2545F4914F6CDD1Dull);
    double best = total_time(sr);

    memcpy(scratch, sr->t, n);
    for (int k = 0; k < kicks; k++) {
        int m = 1 + (int)mt_rng_below(&rs, (uint64_t)3);
        for (int j = 0; j < m; j++) {
            size_t a = (size_t)mt_rng_below(&rs, n);
            int to = (int)mt_rng_below(&rs, (uint64_t)T_);
            int from = sr->t[a];
            if (!allowed(sr, keep_storage, from, to)) {
                continue;
            }
            if (moves_fit(sr, from, to, 0, 0)) {
                apply_move(sr, (int)(a / sr->E), (int)(a % sr->E), to);
                continue;
            }
            /* Budget full: swap with a random expert stored where `to` stores. */
            size_t start = (size_t)mt_rng_below(&rs, n);
            for (size_t i = 0; i < n; i++) {
                size_t b = (start + i) % n;
                if (b != a && storage_of(sr->t[b]) == storage_of(to) && sr->ok[from]) {
                    apply_move(sr, (int)(a / sr->E), (int)(a % sr->E), to);
                    apply_move(sr, (int)(b / sr->E), (int)(b % sr->E), from);
                    break;
                }
            }
        }
        local_search(sr, keep_storage, bm);
        double tt = total_time(sr);
        if (tt < best * (1 - 1e-12)) {
            best = tt;
            memcpy(scratch, sr->t, n);
        } else {
            memcpy(sr->t, scratch, n);
            recompute_loads(sr);
        }
    }
}

struct order_item {
    double p;
    int l;
    int e;
};

static int
cmp_order(const void *a, const void *b)
{
    const struct order_item *x = a;
    const struct order_item *y = b;

    if (x->p != y->p) {
        return x->p > y->p ? -1 : 1;
    }
    if (x->e != y->e) {
        return x->e < y->e ? -1 : 1; /* ties interleave layers */
    }
    return (x->l > y->l) - (x->l < y->l);
}

/*
 * Greedy start. mode 0: most probable experts first to the GPU, then DRAM (CPU compute), then NVMe.
 * mode 1: each expert, in the same order, to the tier that raises its layer's time least.
 * Returns the number of experts that found no tier (0 = feasible).
 */
static size_t
greedy(struct search *sr, const struct order_item *order, int mode)
{
    size_t missing = 0;
    size_t n = (size_t)sr->L * sr->E;

    /* Start "unplaced": zero loads, then place one by one. */
    memset(sr->load, 0, (size_t)sr->L * S_ * sizeof(double));
    sr->used_g = 0;
    sr->used_d = 0;
    for (size_t i = 0; i < n; i++) {
        int l = order[i].l;
        int e = order[i].e;
        double *row = sr->load + (size_t)l * S_;
        int pick = -1;

        if (mode == 0) {
            static const int pref[T_] = {MT_TIER_GPU, MT_TIER_DRAM_CPU, MT_TIER_DRAM_PCIE,
                                         MT_TIER_NVME};
            for (int j = 0; j < T_ && pick < 0; j++) {
                int t = pref[j];
                if (sr->ok[t] && fits(sr, t == MT_TIER_GPU, is_dram(t))) {
                    pick = t;
                }
            }
        } else {
            double best = DBL_MAX;
            for (int t = 0; t < T_; t++) {
                if (!sr->ok[t] || !fits(sr, t == MT_TIER_GPU, is_dram(t))) {
                    continue;
                }
                const double *v = vec_of(sr, l, e, t);
                double nrow[S_];
                for (int s = 0; s < S_; s++) {
                    nrow[s] = row[s] + v[s];
                }
                double d = row_max(nrow);
                if (d < best) {
                    best = d;
                    pick = t;
                }
            }
        }
        if (pick < 0) {
            missing++;
            pick = MT_TIER_NVME;
        }
        const double *v = vec_of(sr, l, e, pick);
        for (int s = 0; s < S_; s++) {
            row[s] += v[s];
        }
        sr->used_g += pick == MT_TIER_GPU;
        sr->used_d += is_dram(pick);
        sr->t[(size_t)l * sr->E + e] = (uint8_t)pick;
    }
    return missing;
}

mt_status_t
mt_plan_problem_optimize(const struct mt_plan_problem *pb, bool keep_storage, uint8_t *tiers,
                         double *seconds_out)
{
    struct search sr = {0};
    struct order_item *order = NULL;
    struct best_move *bm = NULL;
    uint8_t *alt = NULL;
    uint8_t *scratch = NULL;
    size_t n;
    mt_status_t st;
    double best = DBL_MAX;
    double work;
    int kicks;

    st = check_problem(pb);
    if (st != MT_OK) {
        return st;
    }
    n = (size_t)pb->n_layers * (size_t)pb->n_experts;
    /* Kicks: many on small problems (where they find the optimum), a few on the full model, where
     * one local search pass costs about L x E^2 move evaluations. */
    work = (double)n * (double)pb->n_experts * 16.0;
    kicks = (int)MT_MIN(400.0, MT_MAX(2.0, 4e6 / work));
    sr.pb = pb;
    sr.L = pb->n_layers;
    sr.E = pb->n_experts;
    sr.cap_g = slots_of(pb->gpu_capacity, pb->expert_bytes);
    sr.cap_d = slots_of(pb->dram_capacity, pb->expert_bytes);
    tier_feasible(pb, sr.ok);
    if (!sr.ok[MT_TIER_GPU]) {
        sr.cap_g = 0;
    }
    sr.vec = malloc(n * T_ * S_ * sizeof(double));
    sr.load = malloc((size_t)sr.L * S_ * sizeof(double));
    order = malloc(n * sizeof(*order));
    bm = malloc((size_t)sr.L * T_ * T_ * sizeof(*bm));
    alt = malloc(n);
    scratch = malloc(n);
    sr.items = malloc((size_t)sr.E * sizeof(*sr.items));
    sr.rank = malloc((size_t)sr.E * sizeof(*sr.rank));
    sr.cls = malloc((size_t)sr.E * sizeof(*sr.cls));
    if (sr.vec == NULL || sr.load == NULL || order == NULL || bm == NULL || alt == NULL ||
        scratch == NULL || sr.items == NULL || sr.rank == NULL || sr.cls == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate planner state for %zu experts", n);
        goto out_free;
    }
    for (int l = 0; l < sr.L; l++) {
        for (int e = 0; e < sr.E; e++) {
            size_t i = (size_t)l * sr.E + e;
            for (int t = 0; t < T_; t++) {
                expert_load(pb, pb->prob[i], t, sr.vec + (i * T_ + t) * S_);
            }
            order[i].p = pb->prob[i];
            order[i].l = l;
            order[i].e = e;
        }
    }

    if (keep_storage) {
        sr.t = tiers;
        for (size_t i = 0; i < n; i++) {
            if (tiers[i] >= T_ || !sr.ok[tiers[i]]) {
                /* Storage is fixed; pick a feasible compute mode for DRAM experts. */
                if (tiers[i] < T_ && is_dram(tiers[i])) {
                    tiers[i] = sr.ok[MT_TIER_DRAM_CPU] ? MT_TIER_DRAM_CPU : MT_TIER_DRAM_PCIE;
                }
                if (tiers[i] >= T_ || !sr.ok[tiers[i]]) {
                    st =
                        mt_fail(MT_ERR_INVAL, 0,
                                "planner: placement has an expert in a tier this phase cannot use");
                    goto out_free;
                }
            }
        }
        recompute_loads(&sr);
        local_search(&sr, true, bm);
        iterate_kicks(&sr, true, bm, kicks, scratch);
        best = total_time(&sr);
    } else {
        qsort(order, n, sizeof(*order), cmp_order);
        for (int mode = 0; mode < 2; mode++) {
            uint8_t *dst = mode == 0 ? tiers : alt;
            size_t missing;
            sr.t = dst;
            missing = greedy(&sr, order, mode);
            if (missing > 0) {
                st = mt_fail(MT_ERR_INVAL, 0,
                             "experts do not fit: %zu of %zu experts (%.1f GB) have no room in GPU "
                             "or DRAM, and %s",
                             missing, n, (double)missing * pb->expert_bytes / 1e9,
                             pb->rate[MT_SRC_DISK] <= 0
                                 ? "the profile has no disk to stream them from"
                                 : "streamed from disk they need the CPU to compute them, but the "
                                   "profile has no cpu read_gbps");
                goto out_free;
            }
            local_search(&sr, false, bm);
            iterate_kicks(&sr, false, bm, kicks, scratch);
            double tt = total_time(&sr);
            if (mode == 1 && tt < best) {
                memcpy(tiers, alt, n);
            }
            best = MT_MIN(best, tt);
        }
    }
    /* The answer is re-evaluated from scratch: it checks budgets and removes drift. */
    st = mt_plan_problem_evaluate(pb, tiers, &best, NULL, NULL);
    if (st != MT_OK) {
        goto out_free;
    }
    *seconds_out = best;
out_free:
    free(sr.cls);
    free(sr.rank);
    free(sr.items);
    free(scratch);
    free(alt);
    free(bm);
    free(order);
    free(sr.load);
    free(sr.vec);
    return st;
}

static void
add_row(double *row, const double *v)
{
    for (int s = 0; s < S_; s++) {
        row[s] += v[s];
    }
}

mt_status_t
mt_plan_problem_sample(const struct mt_plan_problem *pb, const uint8_t *tiers, int n_samples,
                       double *seconds_out)
{
    struct mt_plan_problem one;
    double check;
    double *use = NULL; /* (L, E, S_) load of one use of each expert */
    int *perm = NULL;
    struct mt_rng rs;

    mt_rng_init(&rs, 0x9E3779B97F4A7C15ull);
    double total = 0.0;
    int L;
    int E;
    mt_status_t st;

    st = mt_plan_problem_evaluate(pb, tiers, &check, NULL, NULL);
    if (st != MT_OK) {
        return st;
    }
    if (n_samples < 1) {
        return mt_fail(MT_ERR_INVAL, 0, "planner: %d samples requested", n_samples);
    }
    L = pb->n_layers;
    E = pb->n_experts;
    one = *pb;
    one.batch = 1;
    use = malloc((size_t)L * E * S_ * sizeof(*use));
    perm = malloc((size_t)E * sizeof(*perm));
    if (use == NULL || perm == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate planner sampling state");
        goto out_free;
    }
    for (size_t i = 0; i < (size_t)L * E; i++) {
        expert_load(&one, 1.0, tiers[i], use + i * S_);
    }
    for (int l = 0; l < L; l++) {
        const double *pl = pb->prob + (size_t)l * E;
        const double *ul = use + (size_t)l * E * S_;
        double sum = 0.0;
        bool uniform = true;
        for (int e = 0; e < E; e++) {
            sum += pl[e];
            uniform = uniform && pl[e] == pl[0];
        }
        int k = (int)floor(sum + 0.5);
        bool systematic = k >= 1 && fabs(sum - k) < 1e-6 * MT_MAX(1.0, sum);
        double layer_total = 0.0;
        for (int e = 0; e < E; e++) {
            perm[e] = e;
        }
        for (int n = 0; n < n_samples; n++) {
            double row[S_] = {0};
            if (systematic && uniform) {
                /* Equal probabilities: a uniformly random k-subset (partial Fisher-Yates). */
                for (int i = 0; i < k; i++) {
                    int j = i + (int)mt_rng_below(&rs, (uint64_t)(E - i));
                    int tmp = perm[i];
                    perm[i] = perm[j];
                    perm[j] = tmp;
                    add_row(row, ul + (size_t)perm[i] * S_);
                }
            } else if (systematic) {
                /* Madow's systematic sampling over a random order: expert e is picked with
                 * probability pl[e] exactly, and k experts are picked in all. */
                for (int e = E - 1; e > 0; e--) {
                    int j = (int)mt_rng_below(&rs, (uint64_t)(e + 1));
                    int tmp = perm[e];
                    perm[e] = perm[j];
                    perm[j] = tmp;
                }
                double next = mt_rng_uniform(&rs);
                double acc = 0.0;
                for (int i = 0; i < E; i++) {
                    acc += pl[perm[i]];
                    if (acc > next) {
                        add_row(row, ul + (size_t)perm[i] * S_);
                        next += 1.0;
                    }
                }
            } else {
                for (int e = 0; e < E; e++) {
                    double u = mt_rng_uniform(&rs);
                    if (u < pl[e]) {
                        add_row(row, ul + (size_t)e * S_);
                    }
                }
            }
            layer_total += row_max(row);
        }
        total += layer_total / n_samples;
    }
    *seconds_out = total;
out_free:
    free(perm);
    free(use);
    return st;
}

mt_status_t
mt_plan_problem_exhaustive(const struct mt_plan_problem *pb, uint8_t *tiers_out,
                           double *seconds_out)
{
    size_t n;
    uint8_t cur[12];
    uint8_t best_t[12];
    double best = DBL_MAX;
    bool ok[T_];
    int cap_g;
    int cap_d;
    mt_status_t st;

    st = check_problem(pb);
    if (st != MT_OK) {
        return st;
    }
    n = (size_t)pb->n_layers * (size_t)pb->n_experts;
    if (n > 12) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "planner: exhaustive search of %zu experts refused (max 12)", n);
    }
    tier_feasible(pb, ok);
    cap_g = slots_of(pb->gpu_capacity, pb->expert_bytes);
    cap_d = slots_of(pb->dram_capacity, pb->expert_bytes);
    memset(cur, 0, sizeof(cur));
    for (;;) {
        int used_g = 0;
        int used_d = 0;
        bool feasible = true;
        for (size_t i = 0; i < n && feasible; i++) {
            feasible = ok[cur[i]];
            used_g += cur[i] == MT_TIER_GPU;
            used_d += is_dram(cur[i]);
        }
        if (feasible && used_g <= cap_g && used_d <= cap_d) {
            double total = 0.0;
            for (int l = 0; l < pb->n_layers; l++) {
                double row[S_] = {0};
                double v[S_];
                for (int e = 0; e < pb->n_experts; e++) {
                    size_t i = (size_t)l * pb->n_experts + e;
                    expert_load(pb, pb->prob[i], cur[i], v);
                    for (int s = 0; s < S_; s++) {
                        row[s] += v[s];
                    }
                }
                total += row_max(row);
            }
            if (total < best) {
                best = total;
                memcpy(best_t, cur, n);
            }
        }
        /* next assignment (odometer) */
        size_t i = 0;
        while (i < n && cur[i] == T_ - 1) {
            cur[i] = 0;
            i++;
        }
        if (i == n) {
            break;
        }
        cur[i]++;
    }
    if (best == DBL_MAX) {
        return mt_fail(MT_ERR_INVAL, 0, "planner: no feasible assignment");
    }
    memcpy(tiers_out, best_t, n);
    *seconds_out = best;
    return MT_OK;
}

/* ---- plans for a real model ------------------------------------------------------------------ */

#define MT_PLAN_SAMPLES 500 /* sampled decode tokens per prediction (58 layers each) */

static bool
has_cpu(const struct mt_plan_problem *pb)
{
    return pb->rate[MT_SRC_CPU_MEM] > 0;
}

void
mt_plan_budget_default(struct mt_plan_budget *b)
{
    memset(b, 0, sizeof(*b));
    b->gpu_reserve = (uint64_t)3 << 29; /* 1.5 GiB */
    b->cpu_reserve = (uint64_t)4 << 30;
    b->ctx = 32768;
    b->prefill_batch = 512;
    b->cpu_eff = 0.6;
}

void
mt_plan_destroy(struct mt_plan *plan)
{
    if (plan == NULL) {
        return;
    }
    free(plan->prefill_tiers);
    free(plan->tiers);
    free(plan);
}

static uint64_t
fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

uint64_t
mt_plan_dims_hash(const struct mt_model_config *cfg, bool fp8, uint64_t expert_bytes)
{
    char buf[256];
    int n;

    n = snprintf(buf, sizeof(buf), "L%d E%d k%d h%d m%d d%d f%d b%llu", cfg->num_hidden_layers,
                 cfg->n_routed_experts, cfg->num_experts_per_tok, cfg->hidden_size,
                 cfg->moe_intermediate_size, cfg->first_k_dense_replace, fp8 ? 1 : 0,
                 (unsigned long long)expert_bytes);
    return fnv1a(14695981039346656037ull, buf, (size_t)n);
}

struct prob_index {
    double p;
    int e;
};

static int
cmp_prob_desc(const void *a, const void *b)
{
    const struct prob_index *x = a;
    const struct prob_index *y = b;

    if (x->p != y->p) {
        return x->p > y->p ? -1 : 1;
    }
    return x->e - y->e;
}

/*
 * Decode placement t has DRAM experts sent over PCIe. Score by sampling the variants where a
 * fraction (0, 1/4, 1/2, 3/4) of each layer's PCIe experts, most probable first, are computed by
 * the CPU instead, and keep the best (t and *sampled_s updated). Storage never changes. All
 * variants see the same sampled tokens (fixed seed), so the comparison is paired.
 */
static mt_status_t
prune_decode_pcie(const struct mt_plan_problem *pb, uint8_t *t, double *sampled_s)
{
    static const double keep[] = {0.75, 0.5, 0.25, 0.0};
    size_t n = (size_t)pb->n_layers * pb->n_experts;
    uint8_t *alt = malloc(n);
    uint8_t *best = malloc(n);
    struct prob_index *pi = malloc((size_t)pb->n_experts * sizeof(*pi));
    mt_status_t st = MT_OK;

    if (alt == NULL || best == NULL || pi == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate plan variants");
        goto out_free;
    }
    st = mt_plan_problem_sample(pb, t, MT_PLAN_SAMPLES, sampled_s);
    memcpy(best, t, n);
    for (size_t v = 0; v < sizeof(keep) / sizeof(keep[0]) && st == MT_OK; v++) {
        double s_v;
        memcpy(alt, t, n);
        for (int l = 0; l < pb->n_layers; l++) {
            uint8_t *al = alt + (size_t)l * pb->n_experts;
            int np = 0;
            for (int e = 0; e < pb->n_experts; e++) {
                if (al[e] == MT_TIER_DRAM_PCIE) {
                    pi[np].p = pb->prob[(size_t)l * pb->n_experts + e];
                    pi[np].e = e;
                    np++;
                }
            }
            qsort(pi, (size_t)np, sizeof(*pi), cmp_prob_desc);
            int convert = np - (int)floor(keep[v] * np + 0.5);
            for (int i = 0; i < convert; i++) {
                al[pi[i].e] = MT_TIER_DRAM_CPU;
            }
        }
        st = mt_plan_problem_sample(pb, alt, MT_PLAN_SAMPLES, &s_v);
        if (st == MT_OK && s_v < *sampled_s) {
            *sampled_s = s_v;
            memcpy(best, alt, n);
        }
    }
    if (st == MT_OK) {
        memcpy(t, best, n);
    }
out_free:
    free(pi);
    free(best);
    free(alt);
    return st;
}

/*
 * Prefill is compute-bound: a placement whose compute runs where the profile has no FLOP rate
 * (a what-if file without cpu fma_gflops, a GPU without bf16_tflops) would be predicted as if
 * that compute were free. Say why it is not modelled instead (why[0] = '\0' when it is).
 */
static void
prefill_unmodelled(const struct mt_plan_problem *pb, const uint8_t *t, size_t n,
                   double always_flop_rate, bool gpu_present, char *why, size_t size)
{
    bool cpu = !gpu_present;
    bool gpu = gpu_present;

    for (size_t i = 0; i < n; i++) {
        bool on_gpu = t[i] == MT_TIER_GPU || t[i] == MT_TIER_DRAM_PCIE ||
                      (t[i] == MT_TIER_NVME && nvme_on_gpu(pb));
        gpu = gpu || on_gpu;
        cpu = cpu || !on_gpu;
    }
    why[0] = '\0';
    if (gpu && (pb->rate[MT_SRC_GPU_FLOP] <= 0 || (gpu_present && always_flop_rate <= 0))) {
        snprintf(why, size, "the profile has no GPU FLOP rate (gpu bf16_tflops)");
    } else if (cpu && (pb->rate[MT_SRC_CPU_FLOP] <= 0 || (!gpu_present && always_flop_rate <= 0))) {
        snprintf(why, size, "the profile has no CPU FLOP rate (cpu fma_gflops or amx_bf16_gflops)");
    }
}

mt_status_t
mt_plan_build(const struct mt_model_config *cfg, const struct mt_model_sizes *sizes,
              const struct mt_hwprofile *hw, const struct mt_plan_budget *budget,
              const struct mt_trace *trace, const char *trace_name, struct mt_plan **plan_out)
{
    struct mt_plan *plan;
    struct mt_plan_problem pb;
    int moe[MT_MAX_LAYERS];
    int n_moe = 0;
    int L = cfg->num_hidden_layers;
    int E = cfg->n_routed_experts;
    double *prob = NULL;
    uint8_t *t = NULL;
    double step_s;
    double sampled_s = 0.0;
    double src_s[S_];
    double limit_s[S_];
    double gpu_left;
    double always_flops = 0.0;
    uint64_t always_params = 0;
    mt_status_t st;

    if (L <= 0 || L > MT_MAX_LAYERS || E <= 0 || budget->prefill_batch < 1 ||
        !(budget->cpu_eff > 0 && budget->cpu_eff <= 1) || budget->ctx < 0) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "planner: bad model dims or budget (prefill batch %d, cpu efficiency %g)",
                       budget->prefill_batch, budget->cpu_eff);
    }
    if (trace != NULL) {
        st = mt_trace_check_dims(trace, trace_name ? trace_name : "trace", L, E,
                                 cfg->num_experts_per_tok);
        if (st != MT_OK) {
            return st;
        }
    }
    for (int l = 0; l < L; l++) {
        if (mt_config_layer_is_moe(cfg, l)) {
            moe[n_moe++] = l;
        }
    }
    if (n_moe == 0) {
        return mt_fail(MT_ERR_INVAL, 0, "planner: the model has no MoE layer, nothing to place");
    }
    plan = calloc(1, sizeof(*plan));
    if (plan == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate plan");
    }
    plan->n_layers = L;
    plan->n_experts = E;
    plan->k = cfg->num_experts_per_tok;
    plan->hidden_size = cfg->hidden_size;
    plan->moe_intermediate_size = cfg->moe_intermediate_size;
    plan->first_k_dense_replace = cfg->first_k_dense_replace;
    plan->fp8 = cfg->fp8;
    plan->expert_bytes = sizes->routed_expert_bytes;
    plan->dims_hash = mt_plan_dims_hash(cfg, plan->fp8, plan->expert_bytes);
    plan->budget = *budget;
    plan->always_on_bytes = sizes->other_bytes;
    plan->kv_bytes = (uint64_t)budget->ctx * sizes->kv_bytes_per_token;
    snprintf(plan->hw_source, sizeof(plan->hw_source), "%s", hw->source);
    snprintf(plan->activation, sizeof(plan->activation), "%s%s", trace ? "trace: " : "uniform",
             trace ? (trace_name ? trace_name : "?") : "");
    plan->trace_tokens = trace ? mt_trace_tokens(trace) : 0;

    plan->hbm_gbps = hw->gpu.present ? hw->gpu.hbm_read_gbps : 0;
    plan->gpu_tflops = hw->gpu.present ? hw->gpu.bf16_tflops : 0;
    plan->dram_gbps = hw->cpu.read_gbps;
    if (plan->dram_gbps <= 0) {
        for (int i = 0; i < hw->cpu.n_nodes; i++) {
            plan->dram_gbps += hw->cpu.nodes[i].read_gbps;
        }
    }
    plan->cpu_gflops = hw->cpu.amx_bf16_gflops > 0 ? hw->cpu.amx_bf16_gflops : hw->cpu.fma_gflops;
    plan->pcie_gbps = hw->gpu.present ? hw->pcie.h2d_gbps : 0;
    plan->disk_gbps = mt_hwprofile_disk_total_gbps(hw);
    if (hw->gpu.present && plan->hbm_gbps <= 0) {
        st = mt_fail(MT_ERR_INVAL, 0, "hardware profile '%s' has a GPU without hbm_read_gbps",
                     hw->file[0] != '\0' ? hw->file : hw->source);
        goto out_destroy;
    }
    if (!hw->gpu.present && plan->dram_gbps <= 0) {
        st = mt_fail(MT_ERR_INVAL, 0, "hardware profile '%s' has neither a GPU nor cpu read_gbps",
                     hw->file[0] != '\0' ? hw->file : hw->source);
        goto out_destroy;
    }

    /* Budgets: the GPU first holds the always-on weights, the KV cache and a workspace. */
    if (hw->gpu.present) {
        gpu_left = (double)budget->gpu_mem - (double)plan->always_on_bytes -
                   (double)plan->kv_bytes - (double)budget->gpu_reserve;
        if (gpu_left < 0) {
            st = mt_fail(MT_ERR_INVAL, 0,
                         "--gpu-mem %.1f GiB is too small: always-on weights %.1f GiB + KV cache "
                         "for %d tokens %.1f GiB + workspace %.1f GiB need %.1f GiB (try a "
                         "smaller --ctx)",
                         budget->gpu_mem / 1073741824.0, plan->always_on_bytes / 1073741824.0,
                         budget->ctx, plan->kv_bytes / 1073741824.0,
                         budget->gpu_reserve / 1073741824.0,
                         -gpu_left / 1073741824.0 + budget->gpu_mem / 1073741824.0);
            goto out_destroy;
        }
        if (hw->gpu.mem_bytes > 0 && budget->gpu_mem > hw->gpu.mem_bytes) {
            mt_log_warn("--gpu-mem %.1f GiB exceeds the profile's GPU memory %.1f GiB",
                        budget->gpu_mem / 1073741824.0, hw->gpu.mem_bytes / 1073741824.0);
        }
    } else {
        gpu_left = 0;
    }
    if (hw->dram_bytes > 0 && budget->cpu_mem > hw->dram_bytes) {
        mt_log_warn("--cpu-mem %.1f GiB exceeds the profile's DRAM %.1f GiB",
                    budget->cpu_mem / 1073741824.0, hw->dram_bytes / 1073741824.0);
    }
    if (budget->cpu_mem < budget->cpu_reserve) {
        st =
            mt_fail(MT_ERR_INVAL, 0,
                    "--cpu-mem %.1f GiB is too small: it must hold at least --cpu-reserve %.1f GiB "
                    "(staging ring, OS)",
                    budget->cpu_mem / 1073741824.0, budget->cpu_reserve / 1073741824.0);
        goto out_destroy;
    }
    plan->gpu_expert_bytes = (uint64_t)gpu_left;
    plan->dram_expert_bytes = budget->cpu_mem - budget->cpu_reserve;
    if (!hw->gpu.present) {
        /* Without a GPU the always-on weights and the KV cache live in DRAM too. */
        uint64_t dram_always = plan->always_on_bytes + plan->kv_bytes;
        plan->dram_expert_bytes =
            plan->dram_expert_bytes > dram_always ? plan->dram_expert_bytes - dram_always : 0;
    }

    plan->tiers = malloc((size_t)L * E);
    plan->prefill_tiers = malloc((size_t)L * E);
    prob = malloc((size_t)n_moe * E * sizeof(*prob));
    t = malloc((size_t)n_moe * E);
    if (plan->tiers == NULL || plan->prefill_tiers == NULL || prob == NULL || t == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate plan of %d x %d experts", L, E);
        goto out_destroy;
    }
    memset(plan->tiers, MT_TIER_NONE, (size_t)L * E);
    memset(plan->prefill_tiers, MT_TIER_NONE, (size_t)L * E);
    for (int i = 0; i < n_moe; i++) {
        for (int e = 0; e < E; e++) {
            prob[(size_t)i * E + e] = trace ? mt_trace_probability(trace, moe[i], e)
                                            : (double)cfg->num_experts_per_tok / E;
            prob[(size_t)i * E + e] = MT_MIN(prob[(size_t)i * E + e], 1.0);
        }
    }

    memset(&pb, 0, sizeof(pb));
    pb.n_layers = n_moe;
    pb.n_experts = E;
    pb.prob = prob;
    pb.expert_bytes = (double)sizes->routed_expert_bytes;
    pb.expert_flops = 2.0 * (double)sizes->params[MT_ROLE_ROUTED_EXPERT] / ((double)n_moe * E);
    pb.gpu_capacity = (double)plan->gpu_expert_bytes;
    pb.dram_capacity = (double)plan->dram_expert_bytes;
    pb.rate[MT_SRC_GPU_MEM] = plan->hbm_gbps * 1e9;
    pb.rate[MT_SRC_GPU_FLOP] = plan->gpu_tflops * 1e12;
    pb.rate[MT_SRC_CPU_MEM] = plan->dram_gbps * 1e9 * budget->cpu_eff;
    pb.rate[MT_SRC_CPU_FLOP] = plan->cpu_gflops * 1e9 * budget->cpu_eff;
    pb.rate[MT_SRC_PCIE] = plan->pcie_gbps * 1e9;
    pb.rate[MT_SRC_DISK] = plan->disk_gbps * 1e9;
    pb.batch = 1;

    /* Decode. */
    st = mt_plan_problem_optimize(&pb, false, t, &step_s);
    if (st != MT_OK) {
        goto out_destroy;
    }
    /*
     * The optimizer works on expected loads; decode really pays E[max] over sampled expert sets.
     * A slow source with few rarely chosen experts (typically DRAM -> PCIe at batch 1) looks
     * free in expectation but stalls the layer whenever it is hit, so variants with some or all
     * of those experts computed by the CPU instead are also scored by sampling (prune_decode_pcie)
     * and the best one kept.
     */
    st = mt_plan_problem_sample(&pb, t, MT_PLAN_SAMPLES, &sampled_s);
    if (st != MT_OK) {
        goto out_destroy;
    }
    if (has_cpu(&pb) && memchr(t, MT_TIER_DRAM_PCIE, (size_t)n_moe * E) != NULL) {
        st = prune_decode_pcie(&pb, t, &sampled_s);
        if (st != MT_OK) {
            goto out_destroy;
        }
    }
    st = mt_plan_problem_evaluate(&pb, t, &step_s, src_s, limit_s);
    if (st != MT_OK) {
        goto out_destroy;
    }
    /* The expected-load time is a true lower bound; sampling noise may dip below it. */
    sampled_s = MT_MAX(sampled_s, step_s);
    for (int i = 0; i < n_moe; i++) {
        memcpy(plan->tiers + (size_t)moe[i] * E, t + (size_t)i * E, (size_t)E);
    }
    {
        double always_rate = hw->gpu.present ? pb.rate[MT_SRC_GPU_MEM] : pb.rate[MT_SRC_CPU_MEM];
        double always_s = (double)sizes->token_bytes_always / always_rate;
        double worst = always_s;
        static const int tier_src[T_] = {MT_SRC_GPU_MEM, MT_SRC_CPU_MEM, MT_SRC_PCIE, MT_SRC_DISK};

        plan->always_on_ms = always_s * 1e3;
        plan->decode_ms = (always_s + sampled_s) * 1e3;
        plan->decode_ms_mean_load = (always_s + step_s) * 1e3;
        plan->decode_tok_s = 1.0 / (always_s + sampled_s);
        snprintf(plan->bottleneck, sizeof(plan->bottleneck), "%s",
                 hw->gpu.present ? "gpu-always-on" : "cpu-always-on");
        for (int s = 0; s < S_; s++) {
            if (limit_s[s] > worst) {
                worst = limit_s[s];
                snprintf(plan->bottleneck, sizeof(plan->bottleneck), "%s",
                         mt_plan_source_name((enum mt_plan_source)s));
            }
        }
        for (int i = 0; i < n_moe * E; i++) {
            struct mt_plan_tier_stats *ts = &plan->tier[t[i]];
            ts->experts++;
            ts->bytes += pb.expert_bytes;
            ts->bytes_per_token += prob[i] * pb.expert_bytes;
        }
        for (int k = 0; k < T_; k++) {
            double r = pb.rate[tier_src[k]];
            plan->tier[k].ms_per_token = r > 0 ? plan->tier[k].bytes_per_token / r * 1e3 : 0;
        }
    }

    /* Prefill: same storage, compute choices re-optimized for a batch. */
    pb.batch = budget->prefill_batch;
    if (pb.batch > 1) {
        st = mt_plan_problem_optimize(&pb, true, t, &step_s);
        if (st != MT_OK) {
            goto out_destroy;
        }
    }
    for (int i = 0; i < n_moe; i++) {
        memcpy(plan->prefill_tiers + (size_t)moe[i] * E, t + (size_t)i * E, (size_t)E);
    }
    {
        static const int roles[] = {MT_ROLE_ATTN,          MT_ROLE_INDEXER, MT_ROLE_DENSE_MLP,
                                    MT_ROLE_SHARED_EXPERT, MT_ROLE_ROUTER,  MT_ROLE_HEAD,
                                    MT_ROLE_NORM};
        double always_rate = hw->gpu.present ? pb.rate[MT_SRC_GPU_MEM] : pb.rate[MT_SRC_CPU_MEM];
        double flop_rate = hw->gpu.present ? pb.rate[MT_SRC_GPU_FLOP] : pb.rate[MT_SRC_CPU_FLOP];
        double always_s;

        for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
            always_params += sizes->params[roles[i]];
        }
        always_flops = 2.0 * (double)always_params * budget->prefill_batch;
        always_s = (double)sizes->token_bytes_always / always_rate;
        if (flop_rate > 0) {
            always_s = MT_MAX(always_s, always_flops / flop_rate);
        }
        plan->prefill_ms = (always_s + step_s) * 1e3;
        plan->prefill_tok_s = budget->prefill_batch / (always_s + step_s);
        prefill_unmodelled(&pb, t, (size_t)n_moe * E, flop_rate, hw->gpu.present,
                           plan->prefill_not_modelled, sizeof(plan->prefill_not_modelled));
        if (plan->prefill_not_modelled[0] != '\0') {
            plan->prefill_ms = 0.0;
            plan->prefill_tok_s = 0.0;
        }
    }
    free(t);
    free(prob);
    *plan_out = plan;
    return MT_OK;

out_destroy:
    free(t);
    free(prob);
    mt_plan_destroy(plan);
    return st;
}
