/* SPDX-License-Identifier: MIT */
/*
 * planner.c - a plan for a real model on real hardware (planner.h): budgets, the problem, the
 * decode and prefill placements, and the prediction.
 *
 * The one idea: the optimizer (planner_search.c) works on expected loads (planner_cost.c), but
 * decode really pays E[max] over sampled expert sets. mt_plan_build therefore scores the decode
 * placement by sampling tokens and uses that score to decide how many DRAM experts to copy over
 * PCIe in decode; prefill keeps decode's storage and computes each expert where the GPU engine
 * would (mt_plan_prefill_tiers).
 */
#include <config.h>

#include "runtime/plan/planner.h"

#include "runtime/plan/planner_int.h"
#include "runtime/base/size_text.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    static const char *names[] = {"gpu-hbm", "gpu-flops", "cpu-dram", "cpu-flops",
                                  "pcie",    "disk",      "dram-bus"};
    return (unsigned)src < MT_SRC_COUNT ? names[src] : "?";
}


/* ---- plans for a real model ------------------------------------------------------------------ */

#define MT_PLAN_SAMPLES 500 /* sampled decode tokens per prediction (58 layers each) */

static bool
has_cpu(const struct mt_plan_problem *pb)
{
    return pb->rate[MT_SRC_CPU_MEM] > 0;
}

/*
 * The CPU's DRAM rate and expert efficiency. The efficiency that `moetier bench` measures
 * (cpu.expert_eff) is the FP8 expert kernels' rate over the read ceiling, so the DRAM rate is
 * that ceiling wherever the profile has one (the old read row, a STREAM-like loop, measures the
 * loop more than the memory); --cpu-eff (budget.cpu_eff > 0) overrides the measured value.
 */
static void
plan_cpu_rates(struct mt_plan *plan, const struct mt_hwprofile *hw)
{
    plan->dram_gbps = hw->cpu.read_ceiling_gbps;
    snprintf(plan->dram_source, sizeof(plan->dram_source), "read ceiling");
    if (plan->dram_gbps <= 0) {
        plan->dram_gbps = hw->cpu.read_gbps;
        snprintf(plan->dram_source, sizeof(plan->dram_source), "read");
    }
    if (plan->dram_gbps <= 0) {
        for (int i = 0; i < hw->cpu.n_nodes; i++) {
            plan->dram_gbps += hw->cpu.nodes[i].read_gbps;
        }
    }
    if (plan->budget.cpu_eff > 0) {
        snprintf(plan->cpu_eff_source, sizeof(plan->cpu_eff_source), "--cpu-eff");
    } else if (hw->cpu.expert_eff > 0 && hw->cpu.read_ceiling_gbps > 0) {
        /* a profile holds at most 1 (mt_hwprofile_load); the floor is --cpu-eff's, which a
           plan file's cpu_eff must meet to load again (plan_file.c) */
        plan->budget.cpu_eff = MT_MIN(MT_MAX(hw->cpu.expert_eff, 0.01), 1.0);
        snprintf(plan->cpu_eff_source, sizeof(plan->cpu_eff_source),
                 "measured: profile cpu.expert_eff");
    } else {
        plan->budget.cpu_eff = MT_PLAN_CPU_EFF_ASSUMED;
        snprintf(plan->cpu_eff_source, sizeof(plan->cpu_eff_source), "assumed");
    }
}

void
mt_plan_budget_default(struct mt_plan_budget *b)
{
    memset(b, 0, sizeof(*b));
    b->gpu_reserve = (uint64_t)3 << 29; /* 1.5 GiB */
    b->gpu_reserve_auto = true;
    b->cpu_reserve = (uint64_t)4 << 30;
    b->ctx = 32768;
    b->prefill_batch = 0; /* the GPU engine's chunk for the placement (mt_plan_build) */
    b->cpu_eff = 0; /* from the profile, else MT_PLAN_CPU_EFF_ASSUMED (mt_plan_build) */
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

/*
 * The GPU engine waits on the host in every MoE layer a token routes to an expert off the GPU
 * (pb->host_layer_s), so a handful of off-GPU experts spread over many layers cost a wait in
 * each, where the same experts gathered in one layer cost one. The local search cannot see that
 * (no single move changes whether a layer has host experts), so this pass tries it: the layer
 * least likely to wait moves its off-GPU experts to the GPU, into free GPU room first (the
 * expected-load model likes a few experts on the CPU beside the GPU, but not at a wait each),
 * else in exchange for the least used GPU experts of the other waiting layers (storage per tier
 * unchanged: one GPU expert for one of the same tier); the result is kept while the sampled
 * decode time (paired: the same tokens) drops.
 */
static mt_status_t
gather_host_layers(const struct mt_plan_problem *pb, uint8_t *t, double *sampled_s)
{
    int L = pb->n_layers, E = pb->n_experts;
    size_t n = (size_t)L * E;
    uint8_t *alt = malloc(n);
    mt_status_t st = MT_OK;

    if (alt == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate plan variants");
    }
    for (int round = 0; round < L && st == MT_OK; round++) {
        int c = -1, waiting = 0;
        double hc = 2.0;
        for (int l = 0; l < L; l++) {
            double h = mt_plan_layer_host_prob(pb, l, t + (size_t)l * E);
            if (h > 0) {
                waiting++;
                if (h < hc) {
                    hc = h;
                    c = l;
                }
            }
        }
        int free_g = mt_plan_slots(pb->gpu_capacity, pb->expert_bytes);
        for (size_t i = 0; i < n; i++) {
            free_g -= t[i] == MT_TIER_GPU;
        }
        if (waiting == 0 || (waiting < 2 && free_g <= 0)) {
            break;
        }
        memcpy(alt, t, n);
        bool done = true;
        for (int x = 0; x < E && done; x++) {
            uint8_t tx = alt[(size_t)c * E + x];
            if (tx == MT_TIER_GPU) {
                continue;
            }
            if (free_g > 0) { /* room on the GPU: no exchange needed */
                alt[(size_t)c * E + x] = MT_TIER_GPU;
                free_g--;
                continue;
            }
            /* the least used GPU expert of another layer that waits anyway */
            size_t best = n;
            for (int l = 0; l < L; l++) {
                const uint8_t *tl = alt + (size_t)l * E;
                if (l == c || mt_plan_layer_host_prob(pb, l, t + (size_t)l * E) <= 0) {
                    continue;
                }
                for (int y = 0; y < E; y++) {
                    size_t i = (size_t)l * E + y;
                    if (tl[y] == MT_TIER_GPU && (best == n || pb->prob[i] < pb->prob[best])) {
                        best = i;
                    }
                }
            }
            if (best == n) {
                done = false;
                break;
            }
            alt[best] = tx;
            alt[(size_t)c * E + x] = MT_TIER_GPU;
        }
        double s_alt;
        if (!done || (st = mt_plan_problem_sample(pb, alt, MT_PLAN_SAMPLES, &s_alt)) != MT_OK ||
            s_alt >= *sampled_s) {
            break;
        }
        memcpy(t, alt, n);
        *sampled_s = s_alt;
    }
    free(alt);
    return st;
}

int
mt_plan_slot_balance(int n_cand, int n_fixed, int n_cpu, double dev_s, double launch_s,
                     double cpu_s)
{
    int best = 0;
    double best_end = INFINITY;

    for (int k = 0; k <= n_cand && k <= n_cpu; k++) {
        double n_dev = (double)(n_fixed + k);
        /* the device cannot finish an expert before the host has launched it */
        double dev_end = n_dev * (dev_s > launch_s ? dev_s : launch_s);
        double cpu_end = n_dev * launch_s + (double)(n_cpu - k) * cpu_s;
        double end = dev_end > cpu_end ? dev_end : cpu_end;

        if (end < best_end) {
            best_end = end;
            best = k;
        }
    }
    return best;
}

/* qsort order of (probability, expert) pairs: most likely first, then lower ids */
static int
by_prob_desc(const void *a, const void *b)
{
    const double *x = a, *y = b;

    return x[0] != y[0] ? (x[0] < y[0]) - (x[0] > y[0]) : (x[1] > y[1]) - (x[1] < y[1]);
}

/*
 * The compute choice of a prefill step as the GPU engine makes it (planner_int.h;
 * engine_gpu_moe.c, mark_device): DRAM_PCIE experts are always copied to a GPU slot; of the
 * DRAM_CPU experts, those most likely first go to a slot as long as that shortens the layer (its
 * busiest source: the CPU's against PCIe's and the GPU's), as the engine balances the two sides
 * with the costs it measures (the engine's threshold before it has costs is one layer's choice);
 * NVMe experts stay on the CPU (mt_plan_nvme_on_gpu). An optimizer's choice that the engine does
 * not follow predicted what did not run: at batch 8 the H200 run computed on the CPU what the plan
 * had copied to the GPU, and prefill took twice the prediction.
 */
mt_status_t
mt_plan_prefill_tiers(const struct mt_plan_problem *pb, uint8_t *t)
{
    bool slots = pb->rate[MT_SRC_PCIE] > 0 && pb->rate[MT_SRC_GPU_MEM] > 0;
    double(*cand)[2] = slots ? malloc((size_t)pb->n_experts * sizeof(*cand)) : NULL;

    if (!slots) {
        return MT_OK;
    }
    if (cand == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "planner: cannot allocate the prefill's candidates");
    }
    for (int l = 0; l < pb->n_layers; l++) {
        const double *p = pb->prob + (size_t)l * pb->n_experts;
        uint8_t *tl = t + (size_t)l * pb->n_experts;
        double row[S_] = {0}, v[S_];
        int n = 0;

        for (int e = 0; e < pb->n_experts; e++) {
            mt_plan_expert_load(pb, p[e], tl[e], v);
            for (int s = 0; s < S_; s++) {
                row[s] += v[s];
            }
            if (tl[e] == MT_TIER_DRAM_CPU && p[e] > 0.0) {
                cand[n][0] = p[e];
                cand[n++][1] = e;
            }
        }
        qsort(cand, (size_t)n, sizeof(*cand), by_prob_desc);
        for (int i = 0; i < n; i++) {
            int e = (int)cand[i][1];
            double cpu[S_], gpu[S_], next[S_];

            mt_plan_expert_load(pb, p[e], MT_TIER_DRAM_CPU, cpu);
            mt_plan_expert_load(pb, p[e], MT_TIER_DRAM_PCIE, gpu);
            for (int s = 0; s < S_; s++) {
                next[s] = row[s] - cpu[s] + gpu[s];
            }
            if (mt_plan_row_max(next) >= mt_plan_row_max(row)) {
                break; /* the slots' side is the busier one from here on */
            }
            memcpy(row, next, sizeof(row));
            tl[e] = MT_TIER_DRAM_PCIE;
        }
    }
    free(cand);
    return MT_OK;
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
                      (t[i] == MT_TIER_NVME && mt_plan_nvme_on_gpu(pb));
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

/* a - b, or 0 when b is larger */
static uint64_t
sub_sat(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

void
mt_plan_expert_room(const struct mt_plan *plan, bool gpu, uint64_t *gpu_out, uint64_t *dram_out)
{
    const struct mt_plan_budget *b = &plan->budget;

    if (gpu) {
        *gpu_out = sub_sat(sub_sat(sub_sat(b->gpu_mem, plan->always_on_bytes), plan->kv_bytes),
                           b->gpu_reserve);
        *dram_out = sub_sat(b->cpu_mem, b->cpu_reserve);
    } else {
        /* Without a GPU the always-on weights and the KV cache live in DRAM too. */
        *gpu_out = 0;
        *dram_out = sub_sat(sub_sat(sub_sat(b->cpu_mem, b->cpu_reserve), plan->always_on_bytes),
                            plan->kv_bytes);
    }
}

/* Tokens of uniform routing a trace is weighed against (see activation). */
#define TRACE_PRIOR_TOKENS 256.0

/*
 * How often expert e of layer l is chosen per token: k / E without a trace; with one, the trace's
 * counts shrunk toward k / E as if TRACE_PRIOR_TOKENS more tokens had routed uniformly. Raw
 * frequencies of a short trace give every expert it never saw probability 0, and a plan made from
 * them sends exactly those to disk, where the next prompt finds them (on the H200 a plan from one
 * 96-token prompt ran at 1.13 of its prediction on that prompt and 0.09 on another); a trace of
 * thousands of tokens still decides the placement.
 */
static double
activation(const struct mt_trace *trace, int l, int e, int k, int E)
{
    double uniform = (double)k / E;

    if (trace == NULL) {
        return uniform;
    }
    double n = (double)mt_trace_layer_tokens(trace, l);
    double c = (double)mt_trace_count(trace, l, e);
    return MT_MIN((c + TRACE_PRIOR_TOKENS * uniform) / (n + TRACE_PRIOR_TOKENS), 1.0);
}

/*
 * The GPU workspace a plan keeps free by default. With experts off the GPU the engine's prompt
 * chunks of MT_PLAN_CHUNK_HOST tokens and longer read each of them once for 2-8x the tokens of
 * MT_PLAN_CHUNK_GPU (1.5-2.1x its prefill at 1,024 on the H200, 1.4x and 1.8x more at 2,048 and
 * 4,096: bench/results/hetero-h200.md), but their work space (~1.4 MB a token at V3.2's shapes:
 * 1.7 / 3.1 / 5.9 GiB at a 32K context) is more than the 1.5 GiB default. So where not every
 * expert fits the GPU, the reserve grows to the work space of MT_PLAN_CHUNK_HOST's chunks as far
 * as --gpu-mem allows beside the always-on weights and the KV cache (a few GPU experts fewer
 * change decode by little), and on to a longer chunk's where the experts that moves off the GPU
 * are at most 1/16 of those off it anyway: decode then slows by at most ~6% where the host
 * experts bound it, while prefill gains 1.4-1.8x. On a 24 GB card with the full model (a few
 * dozen of 14,848 experts on the GPU) that is the 2,048-token chunk; where nearly every expert
 * fits the GPU it stays at 1,024. Never below the default; *chunk: the host chunk it was
 * sized for (0: not grown for one). The work space assumes the BF16 cache's GEMM (three planes
 * of x; the fp32 accuracy mode needs one), the safe side.
 */
static uint64_t
auto_gpu_reserve(const struct mt_model_config *cfg, const struct mt_model_sizes *sizes,
                 const struct mt_plan_budget *budget, uint64_t base, int n_moe, int *chunk)
{
    uint64_t r = budget->gpu_reserve;
    uint64_t eb = sizes->routed_expert_bytes, slot = sizes->routed_expert_slot_bytes;
    uint64_t all = (uint64_t)n_moe * (uint64_t)cfg->n_routed_experts * eb;
    uint64_t w_gpu =
        mt_plan_gpu_work_bytes(cfg, MT_PLAN_CHUNK_GPU, budget->ctx, false, slot, false);
    uint64_t w1 = mt_plan_gpu_work_bytes(cfg, (int)MT_MIN((int64_t)MT_PLAN_CHUNK_HOST, budget->ctx),
                                         budget->ctx, true, slot, false) +
                  MT_PLAN_WORK_SLACK;
    uint64_t room = budget->gpu_mem > base ? budget->gpu_mem - base : 0;
    uint64_t w = 0;

    *chunk = 0;
    if (base + all + MT_MAX(r, w_gpu) <= budget->gpu_mem ||
        MT_MIN((int64_t)MT_PLAN_CHUNK_HOST, budget->ctx) <= MT_PLAN_CHUNK_GPU) {
        /* every expert fits (all-GPU chunks, the default reserve holds them), or the context
           is too short for a longer chunk */
        return r;
    }
    if (w1 > room) {
        return MT_MAX(r, room); /* not even the shortest fits: all the room (prefill says so) */
    }
    uint64_t r1 = MT_MAX(r, w1);
    uint64_t on = room > r1 ? room - r1 : 0;  /* expert bytes the GPU holds with r1 */
    uint64_t off = all - MT_MIN(all, on);     /* and those off it */
    *chunk = mt_plan_host_chunk(cfg, budget->ctx, slot, false, MT_MIN(room, r1 + off / 16), &w);
    return MT_MAX(r1, w);
}

/*
 * The always-on part of one prompt step of rows [start, start + rows): the weights read once at
 * the GPU's rate (the CPU's without a GPU) or their arithmetic, whichever is longer. On the GPU
 * engine the arithmetic as it computes it (gpu_prefill.c: attention and indexer over the rows'
 * keys, lm_head once); the CPU engine's is the weights' FLOPs a row (attention not modelled).
 */
static double
prompt_always_s(const struct mt_plan_problem *pb, const struct mt_model_config *cfg,
                const struct mt_model_sizes *sizes, bool gpu, int64_t start, int64_t rows)
{
    static const int roles[] = {MT_ROLE_ATTN,          MT_ROLE_INDEXER, MT_ROLE_DENSE_MLP,
                                MT_ROLE_SHARED_EXPERT, MT_ROLE_ROUTER,  MT_ROLE_HEAD,
                                MT_ROLE_NORM};
    double read_s = (double)sizes->token_bytes_always /
                    (gpu ? pb->rate[MT_SRC_GPU_MEM] : pb->rate[MT_SRC_CPU_MEM]);
    double flop_rate = gpu ? pb->rate[MT_SRC_GPU_FLOP] : pb->rate[MT_SRC_CPU_FLOP];
    double flops = 0.0;

    if (gpu) {
        double ak, ik;

        mt_plan_prompt_keys(start, rows, cfg->index_topk, &ak, &ik);
        flops = mt_plan_gpu_prompt_flops(cfg, sizes, (double)rows, ak, ik, 1);
    } else {
        for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
            flops += 2.0 * (double)sizes->params[roles[i]] * (double)rows;
        }
    }
    return flop_rate > 0 ? MT_MAX(read_s, flops / flop_rate) : read_s;
}

/*
 * The GPU budget cannot hold the always-on weights, the KV cache for budget->ctx tokens and the
 * workspace: say which of them to change. A smaller --ctx only shrinks the KV cache, so where
 * the weights and the workspace's floor (reserve_floor: --gpu-reserve, or the default the
 * automatic reserve starts from) alone exceed the budget, the hint is the GPU memory they need,
 * not a --ctx. A budget the user did not give (budget->gpu_mem_default) is named as the profile's:
 * a profile whose GPU has no gpu.mem_bytes gets a budget of 0, which "--gpu-mem 0.0 GiB is too
 * small" blamed on a flag nobody typed.
 */
static mt_status_t
gpu_budget_fail(const struct mt_plan *plan, const struct mt_hwprofile *hw,
                const struct mt_plan_budget *budget, uint64_t reserve_floor)
{
    const char *prof = hw->file[0] != '\0' ? hw->file : hw->source;
    uint64_t always = plan->always_on_bytes;
    double floor_need = (double)always + (double)reserve_floor + (double)plan->kv_bytes;
    char what[512];

    if (budget->gpu_mem_default && budget->gpu_mem == 0 && hw->gpu.mem_bytes == 0) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "hardware profile '%s' has a GPU without gpu.mem_bytes, so without "
                       "--gpu-mem the GPU budget is 0 (give --gpu-mem SIZE, e.g. 80G, or set "
                       "gpu.mem_bytes in the profile)",
                       prof);
    }
    if (budget->gpu_mem_default) {
        snprintf(what, sizeof(what),
                 "the default GPU budget %s (no --gpu-mem; profile '%.256s' has gpu.mem_bytes "
                 "%s)",
                 mt_size_text(budget->gpu_mem).s, prof, mt_size_text(hw->gpu.mem_bytes).s);
    } else {
        snprintf(what, sizeof(what), "--gpu-mem %s", mt_size_text(budget->gpu_mem).s);
    }
    if (always > budget->gpu_mem) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "%s is too small: the always-on weights alone need %s, so no --ctx makes "
                       "them fit (with the workspace %s and the KV cache for %d tokens %s, give "
                       "--gpu-mem %.0fG or more, or plan with a profile without a GPU)",
                       what, mt_size_text(always).s, mt_size_text(reserve_floor).s, budget->ctx,
                       mt_size_text(plan->kv_bytes).s, ceil(floor_need / 1073741824.0));
    }
    if (always + reserve_floor > budget->gpu_mem) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "%s is too small: the always-on weights %s and the workspace %s need %s "
                       "before any KV cache, so no --ctx makes them fit (give more --gpu-mem, or "
                       "a smaller --gpu-reserve)",
                       what, mt_size_text(always).s, mt_size_text(reserve_floor).s,
                       mt_size_text(always + reserve_floor).s);
    }
    return mt_fail(MT_ERR_INVAL, 0,
                   "%s is too small: always-on weights %s + KV cache for %d tokens %s + "
                   "workspace %s need %s (try a smaller --ctx)",
                   what, mt_size_text(always).s, budget->ctx, mt_size_text(plan->kv_bytes).s,
                   mt_size_text(budget->gpu_reserve).s,
                   mt_size_text(always + plan->kv_bytes + budget->gpu_reserve).s);
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
    mt_status_t st;

    /* cpu_eff: 0 (take the profile's) or --cpu-eff's [0.01, 1], which a plan file must hold to
       load again (plan_file.c) */
    if (L <= 0 || L > MT_MAX_LAYERS || E <= 0 || budget->prefill_batch < 0 ||
        !(budget->cpu_eff == 0 || (budget->cpu_eff >= 0.01 && budget->cpu_eff <= 1)) ||
        budget->ctx < 0) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "planner: bad model dims or budget (prefill batch %d, cpu efficiency %g)",
                       budget->prefill_batch, budget->cpu_eff);
    }
    {
        /* A plan file holds bytes as JSON integers (int64): a budget above that was written
           negative, and the plan it was written into refused on load (--check, run --plan). */
        const struct {
            const char *flag;
            uint64_t v;
        } big[] = {{"--gpu-mem", budget->gpu_mem},
                   {"--cpu-mem", budget->cpu_mem},
                   {"--gpu-reserve", budget->gpu_reserve},
                   {"--cpu-reserve", budget->cpu_reserve}};
        for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
            if (big[i].v > INT64_MAX) {
                return mt_fail(MT_ERR_INVAL, 0,
                               "%s %.1f GiB is more than a plan can hold (below 8 EiB)",
                               big[i].flag, big[i].v / 1073741824.0);
            }
        }
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
    /* on the GPU engine the embedding table stays in host memory: DRAM's, not the GPU's */
    plan->always_on_bytes = hw->gpu.present ? sizes->gpu_other_bytes : sizes->other_bytes;
    plan->kv_bytes = (uint64_t)budget->ctx * sizes->kv_bytes_per_token;
    snprintf(plan->hw_source, sizeof(plan->hw_source), "%s", hw->source);
    snprintf(plan->activation, sizeof(plan->activation), "%s%s", trace ? "trace: " : "uniform",
             trace ? (trace_name ? trace_name : "?") : "");
    plan->trace_tokens = trace ? mt_trace_tokens(trace) : 0;

    plan->hbm_gbps = hw->gpu.present ? hw->gpu.hbm_read_gbps : 0;
    plan->gpu_tflops = hw->gpu.present ? hw->gpu.bf16_tflops : 0;
    plan_cpu_rates(plan, hw);
    plan->cpu_gflops = hw->cpu.amx_bf16_gflops > 0 ? hw->cpu.amx_bf16_gflops : hw->cpu.fma_gflops;
    if (hw->cpu.expert_prefill_gbps > 0 && hw->cpu.expert_prefill_gflops > 0) {
        plan->cpu_prefill_gbps = hw->cpu.expert_prefill_gbps;
        plan->cpu_prefill_gflops = hw->cpu.expert_prefill_gflops;
    }
    plan->pcie_gbps = hw->gpu.present ? hw->pcie.h2d_gbps : 0;
    plan->disk_gbps = mt_hwprofile_disk_total_gbps(hw);
    mt_plan_apply_learned(plan, hw);
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
    uint64_t reserve_floor = budget->gpu_reserve; /* the automatic reserve never goes below */
    if (hw->gpu.present && budget->gpu_reserve_auto) {
        plan->budget.gpu_reserve =
            auto_gpu_reserve(cfg, sizes, budget, plan->always_on_bytes + plan->kv_bytes, n_moe,
                             &plan->reserve_chunk);
        budget = &plan->budget;
    }
    if (hw->gpu.present) {
        double gpu_left = (double)budget->gpu_mem - (double)plan->always_on_bytes -
                          (double)plan->kv_bytes - (double)budget->gpu_reserve;
        if (gpu_left < 0) {
            st = gpu_budget_fail(plan, hw, budget, reserve_floor);
            goto out_destroy;
        }
        if (hw->gpu.mem_bytes > 0 && budget->gpu_mem > hw->gpu.mem_bytes) {
            mt_log_warn("--gpu-mem %s exceeds the profile's GPU memory %s",
                        mt_size_text(budget->gpu_mem).s, mt_size_text(hw->gpu.mem_bytes).s);
        }
    }
    if (hw->dram_bytes > 0 && budget->cpu_mem > hw->dram_bytes) {
        mt_log_warn("--cpu-mem %s exceeds the profile's DRAM %s", mt_size_text(budget->cpu_mem).s,
                    mt_size_text(hw->dram_bytes).s);
    }
    if (budget->cpu_mem < budget->cpu_reserve) {
        st =
            mt_fail(MT_ERR_INVAL, 0,
                    "--cpu-mem %s is too small: it must hold at least --cpu-reserve %s (staging "
                    "ring, OS)",
                    mt_size_text(budget->cpu_mem).s, mt_size_text(budget->cpu_reserve).s);
        goto out_destroy;
    }
    mt_plan_expert_room(plan, hw->gpu.present, &plan->gpu_expert_bytes, &plan->dram_expert_bytes);
    if (hw->gpu.present) {
        /* the GPU engine's embedding table in host memory, and its buffers for the host
           experts of a prompt chunk: the longest chunk the context allows, since which one
           the engine takes depends on the placement still to be made (up to 1.3 GiB more than
           a 1,024-token chunk needs, at V3.2's shapes) */
        uint64_t host = sizes->other_bytes - sizes->gpu_other_bytes;

        plan->host_work_bytes =
            mt_plan_host_work_bytes(cfg->num_experts_per_tok, cfg->hidden_size, budget->ctx);
        host += plan->host_work_bytes;
        plan->dram_expert_bytes =
            plan->dram_expert_bytes > host ? plan->dram_expert_bytes - host : 0;
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
            prob[(size_t)i * E + e] =
                activation(trace, moe[i], e, cfg->num_experts_per_tok, E);
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
    pb.rate[MT_SRC_GPU_MEM] = plan->hbm_gbps * 1e9 * plan->gpu_eff;
    /* the GPU's products as the engine's prompts get them (gpu_prefill.c; in decode its reads
       bound it, and its FLOPs hardly count) */
    pb.rate[MT_SRC_GPU_FLOP] =
        plan->gpu_tflops * 1e12 * plan->gpu_prefill_eff / MT_PLAN_GPU_PASSES;
    pb.rate[MT_SRC_CPU_MEM] = plan->dram_gbps * 1e9 * plan->budget.cpu_eff;
    pb.rate[MT_SRC_CPU_FLOP] = plan->cpu_gflops * 1e9 * plan->budget.cpu_eff;
    pb.rate[MT_SRC_PCIE] = plan->pcie_gbps * 1e9;
    pb.rate[MT_SRC_DISK] = plan->disk_gbps * 1e9 * plan->disk_eff;
    pb.rate[MT_SRC_DRAM_BUS] = plan->dram_gbps * 1e9;
    pb.batch = 1;
    pb.host_layer_s = hw->gpu.present ? plan->host_layer_ms * 1e-3 : 0.0;
    pb.nvme_on_cpu = true;
    pb.cpu_run_rate = plan->cpu_prefill_gbps * 1e9 * plan->cpu_prefill_eff;
    pb.cpu_token_flop_rate = plan->cpu_prefill_gflops * 1e9 * plan->cpu_prefill_eff;

    /* Decode. */
    st = mt_plan_problem_optimize(&pb, false, t, &step_s);
    if (st != MT_OK) {
        goto out_destroy;
    }
    /*
     * The optimizer works on expected loads and without the engine's decode copies; the
     * prediction samples tokens (decode really pays E[max] over the sets of experts they pick)
     * and, with a GPU, copies some of a step's DRAM_CPU experts into the engine's slots where
     * that shortens a layer (mt_plan_problem.decode_copies). Where it can, a DRAM_PCIE expert
     * (copied whenever a token uses it) is a DRAM_CPU one that may only be copied: never
     * faster, in the model or on the H200 machine, where an all-DRAM_CPU placement decoded
     * 87-92 tok/s and the search's 566 DRAM_PCIE experts of 746 58-59 (hetero-h200.md, session
     * 36). Same storage, so those become DRAM_CPU. (A pass that tried moving some DRAM_PCIE
     * experts to the CPU by sampling, for the rarely used ones that stall a layer whenever hit,
     * had nothing left to do after that and is gone.)
     */
    pb.decode_copies = hw->gpu.present;
    if (pb.decode_copies && pb.rate[MT_SRC_PCIE] > 0 && has_cpu(&pb)) {
        for (size_t i = 0; i < (size_t)n_moe * E; i++) {
            t[i] = t[i] == MT_TIER_DRAM_PCIE ? MT_TIER_DRAM_CPU : t[i];
        }
    }
    st = mt_plan_problem_sample(&pb, t, MT_PLAN_SAMPLES, &sampled_s);
    if (st != MT_OK) {
        goto out_destroy;
    }
    if (pb.host_layer_s > 0 && (st = gather_host_layers(&pb, t, &sampled_s)) != MT_OK) {
        goto out_destroy;
    }
    if (pb.decode_copies && (st = mt_plan_problem_sample_copies(&pb, t, MT_PLAN_SAMPLES,
                                                                &sampled_s,
                                                                &plan->decode_copies)) != MT_OK) {
        goto out_destroy;
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
        for (int i = 0; i < n_moe; i++) {
            plan->host_layers_per_token += mt_plan_layer_host_prob(&pb, i, t + (size_t)i * E);
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

    /* Prefill: same storage, computed where the GPU engine computes it at this batch (by
       default the engine's prompt chunk for this placement). */
    if (hw->gpu.present) {
        bool host = false;

        for (size_t i = 0; i < (size_t)n_moe * E && !host; i++) {
            host = t[i] != MT_TIER_GPU;
        }
        /* the engine's chunk never passes its context (engine_gpu.c) */
        plan->engine_chunk = (int)MT_MIN((int64_t)MT_PLAN_CHUNK_GPU, (int64_t)budget->ctx);
        /* (a context shorter than the all-GPU chunk leaves nothing to lengthen) */
        if (host && MT_MIN((int64_t)MT_PLAN_CHUNK_HOST, budget->ctx) > MT_PLAN_CHUNK_GPU) {
            /* the engine takes a longer chunk only where its work space fits beside the
               always-on weights, the KV cache and the GPU experts (engine_gpu.c host_chunk) */
            double used = (double)plan->always_on_bytes + (double)plan->kv_bytes +
                          plan->tier[MT_TIER_GPU].bytes;
            double room = MT_MAX((double)budget->gpu_mem - used, 0.0);
            uint64_t work = 0;
            int chunk = mt_plan_host_chunk(cfg, budget->ctx, sizes->routed_expert_slot_bytes, false,
                                           (uint64_t)room, &work);

            if (chunk > 0) {
                plan->engine_chunk = chunk;
            } else if (plan->budget.prefill_batch == 0) {
                plan->host_chunk_short = (uint64_t)((double)work - room);
            }
        }
    }
    if (plan->budget.prefill_batch == 0) { /* the engine's chunk, never past the context */
        plan->budget.prefill_batch =
            MT_MIN(plan->engine_chunk > 0 ? plan->engine_chunk : MT_PLAN_CHUNK_GPU, budget->ctx);
    }
    pb.batch = plan->budget.prefill_batch;
    if (pb.batch > 1) {
        st = mt_plan_prefill_tiers(&pb, t);
        st = st == MT_OK ? mt_plan_problem_evaluate(&pb, t, &step_s, NULL, NULL) : st;
        if (st != MT_OK) {
            goto out_destroy;
        }
    }
    for (int i = 0; i < n_moe; i++) {
        memcpy(plan->prefill_tiers + (size_t)moe[i] * E, t + (size_t)i * E, (size_t)E);
    }
    {
        double flop_rate = hw->gpu.present ? pb.rate[MT_SRC_GPU_FLOP] : pb.rate[MT_SRC_CPU_FLOP];
        /* a prompt of one batch from position 0 */
        double always_s =
            prompt_always_s(&pb, cfg, sizes, hw->gpu.present, 0, plan->budget.prefill_batch);

        plan->prefill_ms = (always_s + step_s) * 1e3;
        plan->prefill_tok_s = plan->budget.prefill_batch / (always_s + step_s);
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

/*
 * The problem of plan's decode placement at the given efficiencies (its own raw rates), the
 * activation from trace (NULL: uniform k / E); *prob_out (MoE layers x experts) and *t_out are
 * allocated here.
 */
static mt_status_t
replan_problem(const struct mt_plan *plan, const struct mt_trace *trace,
               const struct mt_plan_rates *r, struct mt_plan_problem *pb, double **prob_out,
               uint8_t **t_out)
{
    int L = plan->n_layers, E = plan->n_experts, n_moe = 0;
    double *prob = malloc((size_t)L * E * sizeof(*prob));
    uint8_t *t = malloc((size_t)L * E);
    mt_status_t st;

    if (prob == NULL || t == NULL) {
        free(prob);
        free(t);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a plan's problem");
    }
    if (trace != NULL &&
        (st = mt_trace_check_dims(trace, "trace", L, E, plan->k)) != MT_OK) {
        free(prob);
        free(t);
        return st;
    }
    for (int l = 0; l < L; l++) {
        const uint8_t *tl = plan->tiers + (size_t)l * E;
        if (tl[0] == MT_TIER_NONE) {
            continue;
        }
        for (int e = 0; e < E; e++) {
            double p = activation(trace, l, e, plan->k, E);
            prob[(size_t)n_moe * E + e] = MT_MIN(p, 1.0);
        }
        memcpy(t + (size_t)n_moe * E, tl, (size_t)E);
        n_moe++;
    }
    memset(pb, 0, sizeof(*pb));
    pb->n_layers = n_moe;
    pb->n_experts = E;
    pb->prob = prob;
    pb->expert_bytes = (double)plan->expert_bytes;
    /* gate, up and down: 3 x hidden x intermediate weights, 2 FLOPs each */
    pb->expert_flops = 6.0 * plan->hidden_size * (double)plan->moe_intermediate_size;
    pb->gpu_capacity = (double)plan->gpu_expert_bytes;
    pb->dram_capacity = (double)plan->dram_expert_bytes;
    pb->rate[MT_SRC_GPU_MEM] = plan->hbm_gbps * 1e9 * r->gpu_eff;
    pb->rate[MT_SRC_GPU_FLOP] =
        plan->gpu_tflops * 1e12 *
        (plan->gpu_prefill_eff > 0 ? plan->gpu_prefill_eff : MT_PLAN_GPU_PREFILL_EFF) /
        MT_PLAN_GPU_PASSES; /* as mt_plan_build's */
    pb->rate[MT_SRC_CPU_MEM] = plan->dram_gbps * 1e9 * r->cpu_eff;
    pb->rate[MT_SRC_CPU_FLOP] = plan->cpu_gflops * 1e9 * r->cpu_eff;
    pb->rate[MT_SRC_PCIE] = plan->pcie_gbps * 1e9;
    pb->rate[MT_SRC_DISK] = plan->disk_gbps * 1e9 * r->disk_eff;
    pb->rate[MT_SRC_DRAM_BUS] = plan->dram_gbps * 1e9;
    pb->batch = 1;
    pb->host_layer_s = plan->hbm_gbps > 0 ? r->host_layer_ms * 1e-3 : 0.0;
    pb->nvme_on_cpu = true;
    pb->decode_copies = plan->hbm_gbps > 0; /* as mt_plan_build predicts with a GPU */
    *prob_out = prob;
    *t_out = t;
    return MT_OK;
}

mt_status_t
mt_plan_repredict_decode(const struct mt_plan *plan, const struct mt_trace *trace,
                         const struct mt_plan_rates *r, double *decode_s, double *host_layers)
{
    struct mt_plan_problem pb;
    double *prob = NULL;
    uint8_t *t = NULL;
    double moe_s = 0.0;
    double old_eff = plan->hbm_gbps > 0 ? plan->gpu_eff : plan->budget.cpu_eff;
    double new_eff = plan->hbm_gbps > 0 ? r->gpu_eff : r->cpu_eff;
    mt_status_t st;

    if (!(r->cpu_eff > 0 && r->gpu_eff > 0 && r->disk_eff > 0 && r->host_layer_ms >= 0)) {
        return mt_fail(MT_ERR_INVAL, 0, "planner: efficiencies must be positive to predict");
    }
    if ((st = replan_problem(plan, trace, r, &pb, &prob, &t)) != MT_OK) {
        return st;
    }
    st = mt_plan_problem_sample(&pb, t, MT_PLAN_SAMPLES, &moe_s);
    if (st == MT_OK) {
        double s_mean;
        /* as mt_plan_build: the expected load bounds the sampled time from below */
        st = mt_plan_problem_evaluate(&pb, t, &s_mean, NULL, NULL);
        moe_s = MT_MAX(moe_s, s_mean);
    }
    if (st == MT_OK) {
        /* the always-on weights are read at the GPU's (or a CPU-only plan's CPU's) rate */
        *decode_s = plan->always_on_ms * 1e-3 * (old_eff > 0 ? old_eff : 1.0) / new_eff + moe_s;
        *host_layers = 0.0;
        for (int l = 0; l < pb.n_layers; l++) {
            *host_layers += mt_plan_layer_host_prob(&pb, l, t + (size_t)l * pb.n_experts);
        }
    }
    free(t);
    free(prob);
    return st;
}

mt_status_t
mt_plan_predict_prompt(const struct mt_plan *plan, const struct mt_model_config *cfg,
                       const struct mt_model_sizes *sizes, int64_t tokens, int chunk,
                       double *seconds)
{
    const struct mt_plan_rates r = {
        .cpu_eff = plan->budget.cpu_eff,
        .gpu_eff = plan->gpu_eff > 0 ? plan->gpu_eff : 1.0,
        .disk_eff = plan->disk_eff > 0 ? plan->disk_eff : 1.0,
        .host_layer_ms = plan->host_layer_ms,
    };
    bool gpu = plan->hbm_gbps > 0;
    struct mt_plan_problem pb;
    double *prob = NULL;
    uint8_t *t = NULL;
    uint8_t *tc = NULL;
    mt_status_t st;

    *seconds = 0.0;
    if (tokens <= 0 || chunk <= 0 || plan->prefill_not_modelled[0] != '\0' ||
        !(r.cpu_eff > 0)) {
        return MT_OK; /* nothing to predict, or a plan that could not predict prefill */
    }
    if ((st = replan_problem(plan, NULL, &r, &pb, &prob, &t)) != MT_OK) {
        return st;
    }
    pb.cpu_run_rate = plan->cpu_prefill_gbps * 1e9 * plan->cpu_prefill_eff;
    pb.cpu_token_flop_rate = plan->cpu_prefill_gflops * 1e9 * plan->cpu_prefill_eff;
    if ((tc = malloc((size_t)pb.n_layers * pb.n_experts + 1)) == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a prompt's prediction");
    }
    /* chunk by chunk: the full ones share one MoE step's cost, the last may be shorter */
    double full_s = -1.0;
    for (int64_t c0 = 0; st == MT_OK && c0 < tokens; c0 += chunk) {
        int64_t rows = MT_MIN((int64_t)chunk, tokens - c0);
        double step_s = 0.0;

        if (rows == chunk && full_s >= 0) {
            step_s = full_s;
        } else if (rows > 1) {
            memcpy(tc, t, (size_t)pb.n_layers * pb.n_experts);
            pb.batch = (int)rows;
            st = mt_plan_prefill_tiers(&pb, tc);
            st = st == MT_OK ? mt_plan_problem_evaluate(&pb, tc, &step_s, NULL, NULL) : st;
            full_s = rows == chunk ? step_s : full_s;
        } else {
            pb.batch = 1;
            st = mt_plan_problem_evaluate(&pb, t, &step_s, NULL, NULL);
        }
        *seconds += step_s + prompt_always_s(&pb, cfg, sizes, gpu, c0, rows);
    }
    free(tc);
    free(t);
    free(prob);
    if (st != MT_OK) {
        *seconds = 0.0;
    }
    return st;
}
