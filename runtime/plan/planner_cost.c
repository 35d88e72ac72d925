/* SPDX-License-Identifier: MIT */
/*
 * planner_cost.c - the placement planner's cost model (planner.h explains it).
 *
 * The one idea: every (expert, tier) pair has a fixed load vector over the sources (GPU memory,
 * GPU FLOPs, CPU memory, CPU FLOPs, PCIe, disk): the seconds that source spends on that expert
 * per step, its activation probability times its bytes (or FLOPs) over the source's rate. The
 * sources work concurrently, so a layer costs the max of the summed vectors of its experts, and a
 * step the sum over layers. That is the expected-load model the search minimizes; decode really
 * pays E[max] over the sets of experts tokens pick, which mt_plan_problem_sample estimates by
 * drawing tokens (the expected load only bounds it from below).
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

bool
mt_plan_tier_is_dram(int t)
{
    return t == MT_TIER_DRAM_CPU || t == MT_TIER_DRAM_PCIE;
}

/*
 * What real runs taught the profile (hwprofile.h, struct mt_hw_learned) replaces the planner's
 * assumptions: a learned CPU efficiency beats the bench's kernel measurement and the 0.6 guess
 * (but not --cpu-eff, which the user chose), and the learned disk and GPU efficiencies scale
 * those rates, which the cost model otherwise takes at face value (efficiency 1). A learned
 * efficiency may exceed 1 (up to MT_PLAN_LEARNED_EFF_MAX): it is a ratio to the ceiling the
 * same profile measured, and a quick ceiling is often beaten by the real kernels (the CPU's
 * expert reads beat a 1.2 GB read sweep by 19% on the H200 box); capping it at 1 made the
 * planner believe the CPU slower than it was. The learned host wait per layer applies only
 * where there is a GPU (it is the GPU engine's). The plan keeps
 * the raw rates and the efficiencies apart, so a report of a run of this plan measures against
 * the same raw rates and learning again does not compound. The GPU's prompt efficiency starts
 * at MT_PLAN_GPU_PREFILL_EFF (measured on the H200), not 1: its FLOP rate is a GEMM's peak,
 * which the engine's many kernels of a prompt never all reach.
 */
void
mt_plan_apply_learned(struct mt_plan *plan, const struct mt_hwprofile *hw)
{
    const struct mt_hw_learned *l = &hw->learned;

    plan->gpu_eff = 1.0;
    plan->disk_eff = 1.0;
    plan->cpu_prefill_eff = 1.0;
    plan->gpu_prefill_eff = MT_PLAN_GPU_PREFILL_EFF;
    plan->host_layer_ms = 0.0;
    if (l->reports <= 0) {
        return;
    }
    if (l->cpu_expert_eff > 0 && strcmp(plan->cpu_eff_source, "--cpu-eff") != 0) {
        plan->budget.cpu_eff = MT_MIN(MT_MAX(l->cpu_expert_eff, 0.01), MT_PLAN_LEARNED_EFF_MAX);
        snprintf(plan->cpu_eff_source, sizeof(plan->cpu_eff_source), "learned: %d run report%s",
                 l->reports, l->reports == 1 ? "" : "s");
    }
    if (l->disk_eff > 0) {
        plan->disk_eff = MT_MIN(MT_MAX(l->disk_eff, 0.01), MT_PLAN_LEARNED_EFF_MAX);
    }
    if (l->gpu_eff > 0) {
        plan->gpu_eff = MT_MIN(MT_MAX(l->gpu_eff, 0.01), MT_PLAN_LEARNED_EFF_MAX);
    }
    if (l->cpu_prefill_eff > 0) {
        plan->cpu_prefill_eff = MT_MIN(MT_MAX(l->cpu_prefill_eff, 0.01), MT_PLAN_LEARNED_EFF_MAX);
    }
    if (l->gpu_prefill_eff > 0) {
        plan->gpu_prefill_eff = MT_MIN(MT_MAX(l->gpu_prefill_eff, 0.01), MT_PLAN_LEARNED_EFF_MAX);
    }
    if (l->host_layer_ms > 0 && hw->gpu.present) {
        plan->host_layer_ms = l->host_layer_ms;
    }
}

/* Storage class of a tier: 0 GPU, 1 DRAM, 2 NVMe. */
int
mt_plan_tier_storage(int t)
{
    return t == MT_TIER_GPU ? 0 : mt_plan_tier_is_dram(t) ? 1 : 2;
}

/*
 * Where NVMe experts are computed: on the GPU (via PCIe) in prefill when it can, else the CPU;
 * with nvme_on_cpu (the GPU engine) always by the CPU when there is one.
 */
bool
mt_plan_nvme_on_gpu(const struct mt_plan_problem *pb)
{
    return pb->batch > 1 && pb->rate[MT_SRC_PCIE] > 0 && pb->rate[MT_SRC_GPU_MEM] > 0 &&
           !(pb->nvme_on_cpu && pb->rate[MT_SRC_CPU_MEM] > 0);
}

void
mt_plan_tiers_feasible(const struct mt_plan_problem *pb, bool ok[T_])
{
    const double *r = pb->rate;

    ok[MT_TIER_GPU] = r[MT_SRC_GPU_MEM] > 0;
    ok[MT_TIER_DRAM_CPU] = r[MT_SRC_CPU_MEM] > 0;
    ok[MT_TIER_DRAM_PCIE] = r[MT_SRC_PCIE] > 0 && r[MT_SRC_GPU_MEM] > 0;
    ok[MT_TIER_NVME] = r[MT_SRC_DISK] > 0 && (mt_plan_nvme_on_gpu(pb) || r[MT_SRC_CPU_MEM] > 0);
}

static void
add_load(double *v, int s, double amount, const double *rate)
{
    if (rate[s] > 0) {
        v[s] += amount / rate[s];
    }
}

/*
 * The CPU computing an expert of a step: its FLOPs fl at the FLOP rate, or at batch > 1 where the
 * profile measured the prefill kernels, each run's fixed cost (the u of steps that touch the
 * expert read and convert its weights once) plus its tokens' products (mt_plan_problem).
 */
static void
add_cpu_compute(const struct mt_plan_problem *pb, double u, double fl, double v[S_])
{
    if (pb->batch > 1 && pb->cpu_run_rate > 0 && pb->cpu_token_flop_rate > 0) {
        v[MT_SRC_CPU_FLOP] +=
            u * pb->expert_bytes / pb->cpu_run_rate + fl / pb->cpu_token_flop_rate;
        return;
    }
    add_load(v, MT_SRC_CPU_FLOP, fl, pb->rate);
}

/* Load vector (seconds per source) of one expert of activation probability p in tier t. */
void
mt_plan_expert_load(const struct mt_plan_problem *pb, double p, int t, double v[S_])
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
        add_load(v, MT_SRC_DRAM_BUS, mem, r);
        add_cpu_compute(pb, u, fl, v);
        break;
    case MT_TIER_DRAM_PCIE:
        add_load(v, MT_SRC_PCIE, mem, r);
        add_load(v, MT_SRC_DRAM_BUS, mem, r); /* the copy reads the DRAM bus too */
        gpu_compute = true;
        break;
    case MT_TIER_NVME:
        add_load(v, MT_SRC_DISK, mem, r);
        /* its bytes land in host memory and are read from there, by the CPU or a copy: on the
           bus like a DRAM expert's (else a search whose layers the bus binds would put experts
           on NVMe for the bus they seem to spare) */
        add_load(v, MT_SRC_DRAM_BUS, mem, r);
        if (mt_plan_nvme_on_gpu(pb)) {
            add_load(v, MT_SRC_PCIE, mem, r);
            gpu_compute = true;
        } else {
            add_load(v, MT_SRC_CPU_MEM, mem, r);
            add_cpu_compute(pb, u, fl, v);
        }
        break;
    }
    if (gpu_compute) {
        add_load(v, MT_SRC_GPU_MEM, mem, r);
        add_load(v, MT_SRC_GPU_FLOP, fl, r);
    }
}

double
mt_plan_row_max(const double *row)
{
    double m = row[0];
    for (int s = 1; s < S_; s++) {
        m = MT_MAX(m, row[s]);
    }
    return m;
}

int
mt_plan_slots(double capacity, double expert_bytes)
{
    double n;

    if (capacity <= 0 || expert_bytes <= 0) {
        return 0;
    }
    n = floor(capacity / expert_bytes + 1e-9);
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

mt_status_t
mt_plan_problem_check(const struct mt_plan_problem *pb)
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

/*
 * The probability that a step uses at least one expert of layer l (tiers tl) off the GPU: one
 * minus the product over those experts of the chance it is not used (independent draws: exact
 * enough for the few experts a plan leaves off a GPU layer, and for full layers it is ~1).
 */
double
mt_plan_layer_host_prob(const struct mt_plan_problem *pb, int l, const uint8_t *tl)
{
    double none = 1.0;

    for (int e = 0; e < pb->n_experts; e++) {
        double p = MT_MIN(pb->prob[(size_t)l * pb->n_experts + e], 1.0);
        if (tl[e] != MT_TIER_GPU) {
            none *= pb->batch <= 1 ? 1.0 - p : pow(1.0 - p, pb->batch);
        }
    }
    return 1.0 - none;
}

static void
add_row(double *row, const double *v)
{
    for (int s = 0; s < S_; s++) {
        row[s] += v[s];
    }
}

/* Whether pb models decode's copies of DRAM_CPU experts into GPU slots (a PCIe link to copy
 * over; batch 1). */
static bool
decode_copies(const struct mt_plan_problem *pb)
{
    return pb->decode_copies && pb->batch == 1 && pb->rate[MT_SRC_PCIE] > 0;
}

static double
split_max(const double *row, const double *cpu, const double *dev, double f)
{
    double m = 0.0;

    for (int s = 0; s < S_; s++) {
        m = MT_MAX(m, row[s] + (1.0 - f) * cpu[s] + f * dev[s]);
    }
    return m;
}

/*
 * The share f in [0, 1] of the DRAM_CPU experts' loads (cpu) that goes to GPU slots instead (dev)
 * with the smallest max over sources of row + (1 - f) cpu + f dev. Each source is a line in f, so
 * the max is convex and piecewise linear: its minimum lies at 0, 1 or where two lines cross.
 */
static double
best_split(const double *row, const double *cpu, const double *dev)
{
    double best_f = 0.0, best = split_max(row, cpu, dev, 0.0);

    if (split_max(row, cpu, dev, 1.0) < best) {
        best_f = 1.0;
        best = split_max(row, cpu, dev, 1.0);
    }
    for (int a = 0; a < S_; a++) {
        for (int b = a + 1; b < S_; b++) {
            double da = dev[a] - cpu[a], db = dev[b] - cpu[b];
            double f = da != db ? (row[b] + cpu[b] - row[a] - cpu[a]) / (da - db) : -1.0;

            if (f > 0.0 && f < 1.0 && split_max(row, cpu, dev, f) < best) {
                best_f = f;
                best = split_max(row, cpu, dev, f);
            }
        }
    }
    return best_f;
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

    st = mt_plan_problem_check(pb);
    if (st != MT_OK) {
        return st;
    }
    mt_plan_tiers_feasible(pb, ok);
    if (src_s != NULL) {
        memset(src_s, 0, S_ * sizeof(*src_s));
    }
    if (limit_s != NULL) {
        memset(limit_s, 0, S_ * sizeof(*limit_s));
    }
    bool copies = decode_copies(pb);
    for (int l = 0; l < pb->n_layers; l++) {
        double row[S_] = {0};
        double cpu[S_] = {0}; /* the DRAM_CPU experts' loads where decode copies some */
        double dev[S_] = {0}; /* the same experts copied into GPU slots */
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
            used_d += mt_plan_tier_is_dram(t);
            mt_plan_expert_load(pb, pb->prob[i], t, v);
            if (copies && t == MT_TIER_DRAM_CPU) {
                add_row(cpu, v);
                mt_plan_expert_load(pb, pb->prob[i], MT_TIER_DRAM_PCIE, v);
                add_row(dev, v);
                continue;
            }
            add_row(row, v);
        }
        if (copies) {
            double f = best_split(row, cpu, dev);
            for (int s = 0; s < S_; s++) {
                row[s] += (1.0 - f) * cpu[s] + f * dev[s];
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
        if (pb->host_layer_s > 0) {
            worst += pb->host_layer_s *
                     mt_plan_layer_host_prob(pb, l, tiers + (size_t)l * pb->n_experts);
        }
        if (limit_s != NULL) {
            limit_s[arg] += worst;
        }
        total += worst;
    }
    if (used_g > mt_plan_slots(pb->gpu_capacity, pb->expert_bytes)) {
        return mt_fail(MT_ERR_INVAL, 0, "planner: %d GPU experts exceed the GPU budget of %d",
                       used_g, mt_plan_slots(pb->gpu_capacity, pb->expert_bytes));
    }
    if (used_d > mt_plan_slots(pb->dram_capacity, pb->expert_bytes)) {
        return mt_fail(MT_ERR_INVAL, 0, "planner: %d DRAM experts exceed the DRAM budget of %d",
                       used_d, mt_plan_slots(pb->dram_capacity, pb->expert_bytes));
    }
    *seconds_out = total;
    return MT_OK;
}


/* ---- sampled tokens ------------------------------------------------------------------------- */

mt_status_t
mt_plan_problem_sample(const struct mt_plan_problem *pb, const uint8_t *tiers, int n_samples,
                       double *seconds_out)
{
    return mt_plan_problem_sample_copies(pb, tiers, n_samples, seconds_out, NULL);
}

/* Add one chosen expert's use v to row, or count it in *n_cpu where decode copies DRAM_CPU
 * experts (layer_with_copies places those). */
static void
pick(double *row, int *n_cpu, bool copies, uint8_t tier, const double *v)
{
    if (copies && tier == MT_TIER_DRAM_CPU) {
        (*n_cpu)++;
    } else {
        add_row(row, v);
    }
}

/*
 * A sampled step's layer: row (its experts off the DRAM_CPU tier), plus n_cpu DRAM_CPU experts,
 * each cpu1 on the CPU or dev1 copied into a GPU slot; the whole number k of copies with the
 * smallest max over sources (the engine's mt_plan_slot_balance, on the plan's rates).
 */
static double
layer_with_copies(const double *row, int n_cpu, const double *cpu1, const double *dev1, int *k_out)
{
    double best = INFINITY;

    *k_out = 0;
    for (int k = 0; k <= n_cpu; k++) {
        double m = 0.0;

        for (int s = 0; s < S_; s++) {
            m = MT_MAX(m, row[s] + (double)(n_cpu - k) * cpu1[s] + (double)k * dev1[s]);
        }
        if (m < best) {
            best = m;
            *k_out = k;
        }
    }
    return best;
}

mt_status_t
mt_plan_problem_sample_copies(const struct mt_plan_problem *pb, const uint8_t *tiers,
                              int n_samples, double *seconds_out, double *copies_out)
{
    struct mt_plan_problem one;
    double check;
    double *use = NULL; /* (L, E, S_) load of one use of each expert */
    int *perm = NULL;
    struct mt_rng rs;

    mt_rng_init(&rs, 0x9E3779B97F4A7C15ull);
    double total = 0.0, copied = 0.0;
    double cpu1[S_]; /* one use of a DRAM_CPU expert on the CPU (all experts are one size) */
    double dev1[S_]; /* the same copied into a GPU slot */
    bool copies = decode_copies(pb);
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
        mt_plan_expert_load(&one, 1.0, tiers[i], use + i * S_);
    }
    mt_plan_expert_load(&one, 1.0, MT_TIER_DRAM_CPU, cpu1);
    mt_plan_expert_load(&one, 1.0, MT_TIER_DRAM_PCIE, dev1);
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
        const uint8_t *tl = tiers + (size_t)l * E;
        for (int n = 0; n < n_samples; n++) {
            double row[S_] = {0};
            int n_cpu = 0, n_copied = 0;
            bool host = false;
            if (systematic && uniform) {
                /* Equal probabilities: a uniformly random k-subset (partial Fisher-Yates). */
                for (int i = 0; i < k; i++) {
                    int j = i + (int)mt_rng_below(&rs, (uint64_t)(E - i));
                    int tmp = perm[i];
                    perm[i] = perm[j];
                    perm[j] = tmp;
                    pick(row, &n_cpu, copies, tl[perm[i]], ul + (size_t)perm[i] * S_);
                    host = host || tl[perm[i]] != MT_TIER_GPU;
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
                        pick(row, &n_cpu, copies, tl[perm[i]], ul + (size_t)perm[i] * S_);
                        host = host || tl[perm[i]] != MT_TIER_GPU;
                        next += 1.0;
                    }
                }
            } else {
                for (int e = 0; e < E; e++) {
                    double u = mt_rng_uniform(&rs);
                    if (u < pl[e]) {
                        pick(row, &n_cpu, copies, tl[e], ul + (size_t)e * S_);
                        host = host || tl[e] != MT_TIER_GPU;
                    }
                }
            }
            layer_total += (n_cpu > 0 ? layer_with_copies(row, n_cpu, cpu1, dev1, &n_copied)
                                      : mt_plan_row_max(row)) +
                           (host ? pb->host_layer_s : 0.0);
            copied += n_copied;
        }
        total += layer_total / n_samples;
    }
    *seconds_out = total;
    if (copies_out != NULL) {
        *copies_out = copied / n_samples;
    }
out_free:
    free(perm);
    free(use);
    return st;
}
