/* SPDX-License-Identifier: MIT */
/*
 * planner_search.c - the placement planner's optimizer: a placement that makes the cost model's
 * time small within the GPU and DRAM budgets (planner.h explains the model).
 *
 * Changing one expert's tier changes one row of per-layer sums and its max, so moves are
 * evaluated in O(sources). The search keeps the per-layer sums and applies any improving move it
 * finds:
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
 * On random 2-layer instances this matches exhaustive search (tests/test_planner.c), and each of
 * these passes is needed by some test there (see the table in tests/test_planner.c).
 */
#include <config.h>

#include "runtime/plan/planner.h"

#include "runtime/base/rng.h"
#include "runtime/plan/planner_int.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    return mt_plan_row_max(nrow) - mt_plan_row_max(row);
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
    sr->used_d += mt_plan_tier_is_dram(to) - mt_plan_tier_is_dram(from);
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
            sr->used_d += mt_plan_tier_is_dram(t);
        }
    }
}

static double
total_time(const struct search *sr)
{
    double total = 0.0;
    for (int l = 0; l < sr->L; l++) {
        total += mt_plan_row_max(sr->load + (size_t)l * S_);
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
        mt_plan_tier_is_dram(t1) - mt_plan_tier_is_dram(f1) + mt_plan_tier_is_dram(t2) -
            mt_plan_tier_is_dram(f2));
}

static bool
allowed(const struct search *sr, bool keep_storage, int from, int to)
{
    return to != from && sr->ok[to] &&
           (!keep_storage || mt_plan_tier_storage(from) == mt_plan_tier_storage(to));
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
                if (t1 == t2 ||
                    (keep_storage && mt_plan_tier_storage(t1) != mt_plan_tier_storage(t2)) ||
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
                if (!allowed(sr, false, from, to) ||
                    mt_plan_tier_storage(from) == mt_plan_tier_storage(to)) {
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
            if (mt_plan_tier_storage(f1) == mt_plan_tier_storage(t1)) {
                continue;
            }
            for (int f2 = 0; f2 < T_; f2++) {
                for (int t2 = 0; t2 < T_; t2++) {
                    if (mt_plan_tier_storage(f2) == mt_plan_tier_storage(t2)) {
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
                if (b != a && mt_plan_tier_storage(sr->t[b]) == mt_plan_tier_storage(to) &&
                    sr->ok[from]) {
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
                if (sr->ok[t] && fits(sr, t == MT_TIER_GPU, mt_plan_tier_is_dram(t))) {
                    pick = t;
                }
            }
        } else {
            double best = DBL_MAX;
            for (int t = 0; t < T_; t++) {
                if (!sr->ok[t] || !fits(sr, t == MT_TIER_GPU, mt_plan_tier_is_dram(t))) {
                    continue;
                }
                const double *v = vec_of(sr, l, e, t);
                double nrow[S_];
                for (int s = 0; s < S_; s++) {
                    nrow[s] = row[s] + v[s];
                }
                double d = mt_plan_row_max(nrow);
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
        sr->used_d += mt_plan_tier_is_dram(pick);
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

    st = mt_plan_problem_check(pb);
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
    sr.cap_g = mt_plan_slots(pb->gpu_capacity, pb->expert_bytes);
    sr.cap_d = mt_plan_slots(pb->dram_capacity, pb->expert_bytes);
    mt_plan_tiers_feasible(pb, sr.ok);
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
                mt_plan_expert_load(pb, pb->prob[i], t, sr.vec + (i * T_ + t) * S_);
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
                if (tiers[i] < T_ && mt_plan_tier_is_dram(tiers[i])) {
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

/* ---- exhaustive search (tests) --------------------------------------------------------------- */


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

    st = mt_plan_problem_check(pb);
    if (st != MT_OK) {
        return st;
    }
    n = (size_t)pb->n_layers * (size_t)pb->n_experts;
    if (n > 12) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "planner: exhaustive search of %zu experts refused (max 12)", n);
    }
    mt_plan_tiers_feasible(pb, ok);
    cap_g = mt_plan_slots(pb->gpu_capacity, pb->expert_bytes);
    cap_d = mt_plan_slots(pb->dram_capacity, pb->expert_bytes);
    memset(cur, 0, sizeof(cur));
    for (;;) {
        int used_g = 0;
        int used_d = 0;
        bool feasible = true;
        for (size_t i = 0; i < n && feasible; i++) {
            feasible = ok[cur[i]];
            used_g += cur[i] == MT_TIER_GPU;
            used_d += mt_plan_tier_is_dram(cur[i]);
        }
        if (feasible && used_g <= cap_g && used_d <= cap_d) {
            double total = 0.0;
            for (int l = 0; l < pb->n_layers; l++) {
                double row[S_] = {0};
                double v[S_];
                for (int e = 0; e < pb->n_experts; e++) {
                    size_t i = (size_t)l * pb->n_experts + e;
                    mt_plan_expert_load(pb, pb->prob[i], cur[i], v);
                    for (int s = 0; s < S_; s++) {
                        row[s] += v[s];
                    }
                }
                total += mt_plan_row_max(row);
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
