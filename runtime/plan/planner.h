/* SPDX-License-Identifier: MIT */
/*
 * planner.h - the placement planner: where each routed expert lives (GPU, DRAM, NVMe), how it is
 * computed, and the decode / prefill speed that placement predicts.
 *
 * The one idea: a token's time is the always-on GPU time plus, per MoE layer, the slowest of the
 * resources that work concurrently on that layer's experts. Each resource ("source") accumulates
 * load = activation probability x bytes (or FLOPs) / its rate, so a layer costs max over sources
 * of a sum, and the whole token the sum over layers of those maxima. The optimizer starts from a
 * greedy fill (most probable experts first: GPU, then DRAM, then NVMe; bytes are equal for all
 * experts of a model, so probability per byte orders like probability) and improves it by local
 * search: single moves, swaps and pair moves inside a layer, paired moves across layers that keep
 * both memory budgets, and random kicks; tests compare it with exhaustive search on small
 * instances. The decode prediction then averages the true per-layer max over sampled tokens
 * (mt_plan_problem_sample), of which the expected-load time is a lower bound.
 *
 * Expert tiers (one per expert; codes as they appear in plan files):
 *   'G' MT_TIER_GPU        stored in GPU memory, computed on the GPU (HBM read)
 *   'C' MT_TIER_DRAM_CPU   stored in DRAM, computed by the CPU threads (DRAM read)
 *   'P' MT_TIER_DRAM_PCIE  stored in DRAM, copied over PCIe to a GPU slot and computed there
 *   'N' MT_TIER_NVME       streamed from NVMe into pinned DRAM, computed by the CPU (prefill
 *                          on a profile without a CPU rate: copied over PCIe to the GPU)
 *   '-' MT_TIER_NONE       not a routed expert slot (dense layers)
 *
 * Sources (concurrent within a layer): GPU memory reads, GPU FLOPs, CPU DRAM reads, CPU FLOPs,
 * PCIe host-to-device, disk reads. A batch of B tokens needs an expert's weights when at least
 * one token uses it, probability u = 1 - (1 - p)^B (u = p for decode), and its FLOPs B x p times.
 *
 * ---- plan file (JSON, MT_PLAN_VERSION) ------------------------------------------------------
 *   {
 *     "format": "moetier-plan", "version": 1,
 *     "model": { "num_hidden_layers": 61, "n_routed_experts": 256, "num_experts_per_tok": 8,
 *                "hidden_size": 7168, "moe_intermediate_size": 2048, "first_k_dense_replace": 3,
 *                "fp8": true, "expert_bytes": 44050944, "dims_hash": "16 hex digits" },
 *     "budgets": { "gpu_mem_bytes": N, "cpu_mem_bytes": N, "gpu_reserve_bytes": N,
 *                  "cpu_reserve_bytes": N, "ctx": 32768, "prefill_batch": 512, "cpu_eff": 0.6,
 *                  "always_on_bytes": N, "kv_bytes": N,
 *                  "gpu_expert_bytes": N, "dram_expert_bytes": N },   // what was left for experts
 *     "hardware": { "source": "...", "hbm_gbps": x, "gpu_tflops": x, "dram_gbps": x,
 *                   "cpu_gflops": x, "pcie_gbps": x, "disk_gbps": x,   // rates used (before eff)
 *                   "gpu_eff": x, "disk_eff": x,    // learned efficiencies (optional: 1)
 *                   "host_layer_ms": x,             // learned host wait (optional: 0)
 *                   "cpu_prefill_gbps": x, "cpu_prefill_gflops": x,  // CPU expert runs in
 *                                     // prefill, from the profile (optional: 0, not measured)
 *                   "cpu_prefill_eff": x,           // learned, on both (optional: 1)
 *                   "gpu_prefill_eff": x },         // the GPU's prompt FLOPs (optional: 0,
 *                                     // a plan that counted them once at gpu_tflops)
 *     "activation": { "source": "uniform" | "trace: PATH", "tokens": N },
 *     "layers": [ { "layer": 3, "tiers": "GGCCP...N", "prefill": "GGPPP...N" }, ... ],
 *                                     // MoE layers only; one code per expert (table above):
 *                                     // "tiers" for decode, "prefill" the compute choice of the
 *                                     // same placement at batch prefill_batch (storage unchanged)
 *     "prediction": { "decode_tok_s": x, "prefill_tok_s": x, "decode_ms": x,
 *                     "decode_ms_mean_load": x, "always_on_ms": x,
 *                     "prefill_ms_per_batch": x, "bottleneck": "cpu-dram",
 *                     "host_layers_per_token": x,   // (optional: 0)
 *                     "tiers": { "gpu": {"experts": n, "bytes": N, "bytes_per_token": x,
 *                                        "ms_per_token": x}, "dram-cpu": {...},
 *                                "dram-pcie": {...}, "nvme": {...} } }
 *   }
 * A runtime must check "model" against the checkpoint (mt_plan_check_model) before using it.
 */
#ifndef MT_PLANNER_H
#define MT_PLANNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/model/config.h"
#include "runtime/plan/hwprofile.h"
#include "runtime/model/model.h"
#include "runtime/base/status.h"
#include "runtime/plan/trace.h"

#define MT_PLAN_VERSION 1

enum mt_tier {
    MT_TIER_GPU = 0,
    MT_TIER_DRAM_CPU = 1,
    MT_TIER_DRAM_PCIE = 2,
    MT_TIER_NVME = 3,
    MT_TIER_COUNT = 4,
    MT_TIER_NONE = 255,
};

enum mt_plan_source {
    MT_SRC_GPU_MEM = 0,
    MT_SRC_GPU_FLOP = 1,
    MT_SRC_CPU_MEM = 2,
    MT_SRC_CPU_FLOP = 3,
    MT_SRC_PCIE = 4,
    MT_SRC_DISK = 5,
    MT_SRC_DRAM_BUS = 6, /* the DRAM bus, which the CPU experts' reads and the copies share */
    MT_SRC_COUNT = 7,
};

/* 'G', 'C', 'P', 'N', '-' (see above) and back; mt_tier_from_code returns MT_TIER_COUNT if bad. */
char mt_tier_code(enum mt_tier tier);
enum mt_tier mt_tier_from_code(char c);
/* "gpu", "dram-cpu", "dram-pcie", "nvme". */
const char *mt_tier_name(enum mt_tier tier);
/* "gpu-hbm", "gpu-flops", "cpu-dram", "cpu-flops", "pcie", "disk", "dram-bus". */
const char *mt_plan_source_name(enum mt_plan_source src);

/* ---- the optimization problem (model- and hardware-independent numbers) ----------------- */

struct mt_plan_problem {
    int n_layers;              /* MoE layers */
    int n_experts;             /* routed experts per layer */
    const double *prob;        /* borrowed, (n_layers, n_experts): P(token uses expert) */
    double expert_bytes;       /* bytes of one expert (all experts equal) */
    double expert_flops;       /* FLOPs of one token through one expert */
    double gpu_capacity;       /* bytes of GPU memory for experts */
    double dram_capacity;      /* bytes of DRAM for experts */
    /*
     * Bytes/s or FLOP/s, efficiency already applied. A memory, PCIe or disk rate <= 0 makes the
     * tiers that need it impossible; a FLOP rate <= 0 means "not modeled" (free).
     * Two sources share host memory. MT_SRC_CPU_MEM is the CPU experts' kernels streaming their
     * weights (the DRAM read ceiling x the CPU's efficiency); MT_SRC_DRAM_BUS is the bus itself
     * at the raw ceiling, loaded by those reads and by every copy out of DRAM into a GPU slot,
     * so a layer with both costs max(CPU kernels, CPU bytes + copied bytes at the ceiling).
     * On the H200 host since the engine runs the CPU team beside its slot copies (session 31)
     * the CPU experts read at their own rate while copies took 53 GB/s beside them (session 37;
     * the sum stayed under the ~140 GB/s ceiling); session 4's engine copied before the CPU
     * computed, and there the two times added. MT_SRC_DRAM_BUS <= 0: not modelled.
     */
    double rate[MT_SRC_COUNT];
    int batch;                 /* tokens per step: 1 decode, > 1 prefill */
    /*
     * Seconds a step pays, on top of its sources' max, in each MoE layer that computes one of
     * its chosen experts off the GPU: the GPU engine then waits on the host (its executors, its
     * slot copies) and starts the rest of the layer again from an empty stream. Charged with
     * the probability that the step uses such an expert. 0: not modelled (no GPU, or nothing
     * learned). The local search does not see it; mt_plan_build gathers the off-GPU experts
     * into fewer layers where that pays under it.
     */
    double host_layer_s;
    /*
     * Streamed experts are computed by the CPU in prefill too, when there is one: the GPU engine
     * leaves them to its host executors, whose reads hold the provider's slots
     * (engine_gpu_moe.c, mark_device). false: prefill may copy them over PCIe to the GPU.
     */
    bool nvme_on_cpu;
    /*
     * The CPU's expert runs at batch > 1, as the profile measured them (cpu.expert_prefill_*):
     * each run costs the expert's bytes at cpu_run_rate (its weights read and converted for the
     * products once, whatever its tokens) plus its tokens' FLOPs at cpu_token_flop_rate, on
     * MT_SRC_CPU_FLOP in place of the FLOPs at the FLOP rate. At the ~32 tokens an expert gets
     * in a prompt chunk the first term is most of the time, which the FLOP rate alone does not
     * see (run reports on the H200 host measured 0.07-0.16 of such a prediction). 0: not
     * measured (the FLOP rate alone).
     */
    double cpu_run_rate;
    double cpu_token_flop_rate;
    /*
     * Decode as the GPU engine runs it with slots (engine_gpu_moe.c, mark_device): of the
     * DRAM_CPU experts a step uses in a layer, it copies as many into GPU slots (PCIe, then the
     * GPU) as shortens the layer, and the CPU computes the rest. evaluate takes the best split
     * of each layer's expected loads, sample the best whole number of a sampled step's; batch 1
     * only. mt_plan_build sets it for its prediction after the search (which does not see it),
     * and then keeps no DRAM_PCIE expert in decode (an expert copied whenever used is never
     * faster than one that may be); on the H200 machine the copies made decode 1.30-1.37x
     * (hetero-h200.md, session 31). It assumes the engine could page-lock the DRAM experts
     * (else they stay on the CPU, with a warning). false: the CPU computes every DRAM_CPU
     * expert.
     */
    bool decode_copies;
};

/*
 * Seconds of one step (all MoE layers, excluding always-on work) for an assignment tiers
 * (n_layers x n_experts). Optional outputs, MT_SRC_COUNT each: src_s, per source the sum over
 * layers of its load; limit_s, per source the sum of the layer times where it was the slowest.
 * MT_ERR_INVAL if an expert has an impossible tier or a budget is exceeded (message names which).
 */
mt_status_t mt_plan_problem_evaluate(const struct mt_plan_problem *pb, const uint8_t *tiers,
                                     double *seconds_out, double *src_s, double *limit_s);

/*
 * Minimize the step time. With keep_storage false, tiers (n_layers x n_experts) is output only:
 * greedy fill then local search. With keep_storage true, tiers is the starting placement and
 * only the compute choice changes (DRAM_CPU <-> DRAM_PCIE), e.g. to plan prefill on a decode
 * placement. MT_ERR_INVAL when the experts cannot fit (not enough DRAM and no disk), naming
 * how many bytes are missing; MT_ERR_NOMEM.
 */
mt_status_t mt_plan_problem_optimize(const struct mt_plan_problem *pb, bool keep_storage,
                                     uint8_t *tiers, double *seconds_out);

/*
 * Decode (batch 1) seconds of one step averaged over n_samples sampled tokens: each token picks,
 * per layer, a set of experts with inclusion probabilities prob (systematic sampling over a random
 * order when a layer's probabilities sum to an integer k, independent draws otherwise), and the
 * layer costs the max over sources of the chosen experts' loads. The expected-load model of
 * mt_plan_problem_evaluate is max over sources of E[load], a lower bound of this E[max]
 * (Jensen): they differ most when a slow source holds few, rarely chosen experts. Deterministic
 * (fixed seed). MT_ERR_INVAL as evaluate; MT_ERR_NOMEM.
 */
mt_status_t mt_plan_problem_sample(const struct mt_plan_problem *pb, const uint8_t *tiers,
                                   int n_samples, double *seconds_out);

/* mt_plan_problem_sample, and *copies_out: the DRAM_CPU experts a sampled step copies into GPU
 * slots (pb->decode_copies), summed over layers and averaged over the samples. */
mt_status_t mt_plan_problem_sample_copies(const struct mt_plan_problem *pb, const uint8_t *tiers,
                                          int n_samples, double *seconds_out, double *copies_out);

/*
 * The true optimum by enumerating all MT_TIER_COUNT^(n_layers x n_experts) assignments; for
 * tests. MT_ERR_INVAL above 12 experts in total or when nothing is feasible.
 */
mt_status_t mt_plan_problem_exhaustive(const struct mt_plan_problem *pb, uint8_t *tiers_out,
                                       double *seconds_out);

/* ---- plans for a real model ----------------------------------------------------------------- */

struct mt_plan_budget {
    uint64_t gpu_mem;     /* --gpu-mem: GPU memory moetier may use */
    bool gpu_mem_default; /* gpu_mem is the caller's default (the profile's GPU less a margin,
                             or its free memory), not a --gpu-mem the user gave: the planner's
                             messages then blame the profile, not a flag nobody typed */
    uint64_t cpu_mem;     /* --cpu-mem: DRAM moetier may use */
    uint64_t gpu_reserve; /* workspace: activations, cuBLAS, staging slots (default 1.5 GiB) */
    bool gpu_reserve_auto; /* the default (no --gpu-reserve): mt_plan_build raises gpu_reserve
                              to the GPU engine's work space for the longest host prompt chunk
                              that --gpu-mem allows (mt_plan_host_chunk) where some expert will
                              live off the GPU */
    uint64_t cpu_reserve; /* pinned staging ring, OS slack (default 4 GiB) */
    int ctx;              /* context the KV cache must hold (default 32768) */
    int prefill_batch;    /* tokens per prefill step; 0 (the default): the GPU engine's
                             prompt chunk for the plan (MT_PLAN_CHUNK_*), 512 without a GPU */
    double cpu_eff;       /* fraction of the DRAM read rate and FLOPs CPU experts reach;
                             0 (the default): the profile's measured cpu.expert_eff where it
                             records one, else MT_PLAN_CPU_EFF_ASSUMED */
};

/*
 * The GPU engine's prompt chunks (engine_gpu.c takes these): MT_PLAN_CHUNK_GPU tokens where every
 * routed expert is on the GPU; where some live on host executors, the longest of
 * MT_PLAN_CHUNK_HOST_MAX, half of it, ... down to MT_PLAN_CHUNK_HOST whose work space fits the
 * GPU budget (mt_plan_host_chunk; where none does the engine keeps the all-GPU chunk and says
 * so). A chunk reads each host expert once for all its tokens, so the copies and reads a prompt
 * token costs halve with each doubling: on the H200 machine, every expert in DRAM, 2,200 / 3,100
 * / 4,000 tok/s at 1,024 / 2,048 / 4,096 (bench/results/hetero-h200.md, session 36). A plan
 * predicts prefill at the chunk its placement gets unless --prefill-batch says otherwise.
 */
#define MT_PLAN_CHUNK_GPU 512
#define MT_PLAN_CHUNK_HOST 1024
#define MT_PLAN_CHUNK_HOST_MAX 4096

/* What a plan keeps beside a host chunk's work space for the engine's own rounding (its arena's
 * 1 MiB, the caches' alignment: ~1.2 MiB on a 4-layer V3.2-shape model), so that a plan that
 * fills --gpu-mem to the byte still gets the chunk it predicted (session 36 saw one 4.7 MiB
 * short). */
#define MT_PLAN_WORK_SLACK ((uint64_t)32 << 20)

/* The GPU engine's top-k and argmax scratch (kernels/topk.cu, argmax.cu: ~2.1 MiB together) as
 * mt_plan_gpu_work_bytes counts it, rounded up so that the estimate does not follow every change
 * of their layout; test_gpu_hetero checks the estimate is exactly the rest above the engine's. */
#define MT_PLAN_GPU_SMALL_SCRATCH ((uint64_t)9 << 18)

/*
 * The fewest tokens a DRAM_CPU expert needs in one step before the GPU engine copies it into a
 * GPU slot (page-locked experts only) and computes it there while the CPU team computes the rest,
 * in the steps before it has measured what each side costs (mt_plan_slot_balance decides after
 * that): 3/4 of the step's mean tokens an expert (mean = tokens x experts a token / experts), at
 * least MT_PLAN_SLOT_MIN_FLOOR. The best fixed thresholds on the H200 machine (43 GB/s copies,
 * AMX team, bench/results/hetero-h200.md, session 30) were 24-32 at 1,024-token chunks (mean 32)
 * and 12-16 at 512 (mean 16). Once the engine has measured both sides' costs the balance decides
 * among all experts with a token (session 37: a 256-token prompt gives an expert ~8).
 */
#define MT_PLAN_SLOT_MIN_FLOOR 12
static inline double
mt_plan_slot_min_tokens(double mean_tokens)
{
    double t = 0.75 * mean_tokens;
    return t > MT_PLAN_SLOT_MIN_FLOOR ? t : MT_PLAN_SLOT_MIN_FLOOR;
}

/*
 * How many of a step's candidate DRAM_CPU experts (page-locked, with a token; in a prompt chunk
 * before the engine has costs, mt_plan_slot_min_tokens) the GPU engine copies into slots, those
 * with the most tokens first, so that the device and the CPU team finish the layer together. The
 * device copies and computes n_fixed + k experts (n_fixed: the DRAM_PCIE ones, always copied) at
 * dev_s seconds each; the host launches them at launch_s each before the CPU team starts, which
 * then computes n_cpu - k experts (n_cpu: every DRAM_CPU expert with a token) at cpu_s each.
 * Returns the k in 0..n_cand with the earliest end of the later side (the fewest copies on a tie).
 * The engine measures the three costs in the steps before (engine_gpu_moe.c); in prompt chunks the
 * threshold of mt_plan_slot_min_tokens holds until it has them. The planner predicts the prompt's
 * choice (mt_plan_prefill_tiers) and decode's (mt_plan_problem.decode_copies) on the plan's
 * rates.
 */
int mt_plan_slot_balance(int n_cand, int n_fixed, int n_cpu, double dev_s, double launch_s,
                         double cpu_s);

/*
 * The GPU engine's work space (activations, scratch, its GEMM's area, the slots host experts are
 * copied into) for prompt chunks of `chunk` tokens and a context of ctx positions, from the
 * model's dimensions (gpu_work.c; test_gpu_hetero checks it against the engine's own count).
 * host_experts: some routed expert lives off the GPU (slot_bytes: one routed expert as the GPU
 * slot it is copied into holds it, mt_model_sizes.routed_expert_slot_bytes); f32_cache: the
 * latent cache in fp32 (the GEMM's fp32 mode), else BF16.
 */
uint64_t mt_plan_gpu_work_bytes(const struct mt_model_config *c, int chunk, int64_t ctx,
                                bool host_experts, uint64_t slot_bytes, bool f32_cache);

/*
 * The GPU engine's host memory for the routed experts of its longest prompt chunk at a context
 * of ctx (MT_PLAN_CHUNK_HOST_MAX, at most ctx; which chunk it takes depends on the placement):
 * the gathered rows of each (token, expert) pair in and out, fp32, k experts a token of hidden
 * values (1.75 GiB at 4,096 tokens of V3.2), which DRAM must hold beside the experts
 * (gpu_work.c).
 */
uint64_t mt_plan_host_work_bytes(int k, int64_t hidden, int64_t ctx);

/*
 * The prompt chunk the GPU engine takes with routed experts off the GPU and `room` bytes for its
 * work space: the longest of MT_PLAN_CHUNK_HOST_MAX, half of it, ... MT_PLAN_CHUNK_HOST (each at
 * most ctx) whose mt_plan_gpu_work_bytes + MT_PLAN_WORK_SLACK fits, *work that sum; 0 where none
 * fits, *work then the shortest one's.
 */
int mt_plan_host_chunk(const struct mt_model_config *c, int64_t ctx, uint64_t slot_bytes,
                       bool f32_cache, uint64_t room, uint64_t *work);

/*
 * The GPU engine's prompt arithmetic outside routed experts (gpu_prefill.c): each FLOP counted
 * MT_PLAN_GPU_PASSES times (BF16X3: bf16 products of hi and lo halves) at the profile's BF16
 * GEMM rate, times an efficiency, MT_PLAN_GPU_PREFILL_EFF until a run teaches one (the H200's:
 * 0.50-0.54 for a dense 2-layer model from 1,024- to 65,536-token prompts, 0.39 with a MoE
 * layer's routed experts on the GPU too).
 */
#define MT_PLAN_GPU_PASSES 3
#define MT_PLAN_GPU_PREFILL_EFF 0.5

/* The keys of prompt rows at positions [start, start + n): sum of min(position + 1, topk), what
 * MLA attends to (topk <= 0: no cap), and sum of position + 1, what the indexer scores. */
void mt_plan_prompt_keys(int64_t start, int64_t n, int topk, double *attn_keys,
                         double *index_keys);

/* FLOPs of `rows` prompt rows with those key sums outside routed experts, with lm_head on
 * head_rows of them (once a prompt: the engine's logits are the last row's). */
double mt_plan_gpu_prompt_flops(const struct mt_model_config *c, const struct mt_model_sizes *s,
                                double rows, double attn_keys, double index_keys,
                                double head_rows);

/* The CPU expert efficiency a plan assumes when neither --cpu-eff nor the profile gives one. */
#define MT_PLAN_CPU_EFF_ASSUMED 0.6

/* The largest learned efficiency a plan takes (hwprofile.h). */
#define MT_PLAN_LEARNED_EFF_MAX MT_HW_LEARNED_EFF_MAX

/* Fill b with the defaults above; gpu_mem and cpu_mem 0 (the caller must set them). */
void mt_plan_budget_default(struct mt_plan_budget *b);

struct mt_plan_tier_stats {
    int experts;            /* experts in this tier (decode placement) */
    double bytes;           /* their bytes */
    double bytes_per_token; /* expected bytes this tier delivers per decoded token */
    double ms_per_token;    /* those bytes at the tier's source rate (not overlapped) */
};

struct mt_plan {
    /* model identity */
    int n_layers; /* main layers (num_hidden_layers) */
    int n_experts;
    int k;
    int hidden_size;
    int moe_intermediate_size;
    int first_k_dense_replace;
    bool fp8;
    uint64_t expert_bytes;
    uint64_t dims_hash; /* FNV-1a of the fields above */
    /* inputs */
    struct mt_plan_budget budget;
    uint64_t always_on_bytes;   /* weights resident on the GPU outside routed experts */
    uint64_t kv_bytes;          /* KV cache for budget.ctx tokens */
    uint64_t gpu_expert_bytes;  /* GPU memory left for experts */
    uint64_t dram_expert_bytes; /* DRAM left for experts */
    char hw_source[256];
    double hbm_gbps, gpu_tflops, dram_gbps, cpu_gflops, pcie_gbps, disk_gbps;
    double cpu_prefill_gbps, cpu_prefill_gflops; /* mt_plan_problem.cpu_run_rate etc.; 0 */
    double cpu_prefill_eff; /* learned, scales both prefill rates in the cost model; 1: none */
    /* the GPU's prompt FLOPs at gpu_tflops x gpu_prefill_eff / MT_PLAN_GPU_PASSES: learned, else
     * MT_PLAN_GPU_PREFILL_EFF; 0 in a plan file written before it (its prefill counted once) */
    double gpu_prefill_eff;
    /* where budget.cpu_eff (the value used) and dram_gbps came from, for the printout:
     * "--cpu-eff", "measured: profile cpu.expert_eff", "assumed"; "read ceiling", "read" */
    char cpu_eff_source[48];
    char dram_source[24];
    /*
     * Efficiencies learned from run reports (the profile's "learned" section, moetier plan
     * --learn), applied to hbm_gbps and disk_gbps in the cost model; 1 when none was learned
     * (a plan file without them loads as 1).
     */
    double gpu_eff;  /* GPU expert and always-on weight reads over hbm_gbps */
    double disk_eff; /* streamed expert reads over disk_gbps */
    /* the learned per-layer host wait of the GPU engine (mt_plan_problem.host_layer_s), ms; 0
     * when none was learned or the plan has no GPU */
    double host_layer_ms;
    char activation[300]; /* "uniform" or "trace: PATH" */
    uint64_t trace_tokens;
    /* placement, (n_layers, n_experts), MT_TIER_NONE on dense layers; owned */
    uint8_t *tiers;
    uint8_t *prefill_tiers;
    /* prediction */
    double decode_tok_s; /* from decode_ms */
    double prefill_tok_s;
    double decode_ms;           /* per token, always-on included, sampled E[max] per layer */
    double decode_ms_mean_load; /* the same placement under the expected-load model (a bound) */
    double always_on_ms;        /* per decoded token */
    double host_layers_per_token; /* expected MoE layers a decoded token waits on the host in */
    double prefill_ms;          /* per prefill batch */
    /* "" when prefill is modelled; else why not (a compute rate the profile lacks), and then
     * prefill_tok_s and prefill_ms are 0 and the plan file has null for them */
    char prefill_not_modelled[96];
    char bottleneck[32];        /* a source name, or "gpu-always-on" */
    struct mt_plan_tier_stats tier[MT_TIER_COUNT];
    /* where the default prefill batch is MT_PLAN_CHUNK_GPU only because the engine's work space
     * for MT_PLAN_CHUNK_HOST does not fit beside this placement: the GPU memory that chunk would
     * need beyond what the plan leaves free; else 0 (not saved in the plan file) */
    uint64_t host_chunk_short;
    /* the GPU engine's prompt chunk for this placement (what prefill_batch defaults to; 0
     * without a GPU; not saved in the plan file) */
    int engine_chunk;
    /* the host prompt chunk whose work space the default --gpu-reserve grew to, or 0 where it
     * did not grow (not saved in the plan file) */
    int reserve_chunk;
    /* the GPU engine's host buffers for the longest prompt chunk the context allows
     * (mt_plan_host_work_bytes), kept out of the experts' DRAM; 0 without a GPU (not saved in
     * the plan file: its loader computes it again) */
    uint64_t host_work_bytes;
    /* DRAM_CPU experts a decoded token has copied into GPU slots, summed over layers
     * (mt_plan_problem.decode_copies; 0 without a GPU; not saved in the plan file) */
    double decode_copies;
};

/*
 * Plan cfg (sizes from mt_model_sizes_of for an opened checkpoint, else mt_model_sizes_compute
 * with its fp8 flag) on hardware hw
 * within budget. trace may be NULL (uniform k / E); trace_name labels it in the plan. MT_ERR_INVAL
 * when the always-on weights and KV do not fit the GPU budget, the experts do not fit, or the
 * trace's dims differ from the model's (messages give the numbers); MT_ERR_NOMEM.
 */
mt_status_t mt_plan_build(const struct mt_model_config *cfg, const struct mt_model_sizes *sizes,
                          const struct mt_hwprofile *hw, const struct mt_plan_budget *budget,
                          const struct mt_trace *trace, const char *trace_name,
                          struct mt_plan **plan_out);

/* Free a plan; NULL is a no-op. */
void mt_plan_destroy(struct mt_plan *plan);

/* The dims hash a plan for cfg would carry (fp8 and expert_bytes as in mt_model_sizes). */
uint64_t mt_plan_dims_hash(const struct mt_model_config *cfg, bool fp8, uint64_t expert_bytes);

/* The efficiencies and host wait a prediction uses, over a plan's own raw rates. */
struct mt_plan_rates {
    double cpu_eff;       /* over dram_gbps and cpu_gflops */
    double gpu_eff;       /* over hbm_gbps */
    double disk_eff;      /* over disk_gbps */
    double host_layer_ms; /* mt_plan_problem.host_layer_s, ms (ignored for a plan without GPU) */
};

/*
 * Predict plan's decode again (always-on included, sampled as mt_plan_build does) at the rates r
 * and the activation of trace (NULL: uniform k / E): what `moetier plan --learn` compares a run
 * with once it has learned the efficiencies. *host_layers: the expected MoE layers per token that
 * use an expert off the GPU. MT_ERR_INVAL for a non-positive efficiency or a trace of other dims;
 * MT_ERR_NOMEM.
 */
mt_status_t mt_plan_repredict_decode(const struct mt_plan *plan, const struct mt_trace *trace,
                                     const struct mt_plan_rates *r, double *decode_s,
                                     double *host_layers);

/*
 * The time of a prompt of `tokens` tokens from position 0 run in steps of `chunk` tokens (the GPU
 * engine's prompt chunk; the CPU engine takes a prompt in one step) by plan's placement and own
 * rates, under uniform routing: each step's MoE at its own size (the compute choice the GPU engine
 * makes for it, mt_plan_prefill_tiers) and its rows' always-on work at their positions (with a GPU,
 * attention over the keys each row sees). What a run report compares a prompt with, whatever its
 * length; *seconds is 0 where the plan predicts no prefill. MT_ERR_NOMEM.
 */
mt_status_t mt_plan_predict_prompt(const struct mt_plan *plan, const struct mt_model_config *cfg,
                                   const struct mt_model_sizes *sizes, int64_t tokens, int chunk,
                                   double *seconds);

/* ---- plan files (plan_file.c) -------------------------------------------------------------- */

/* Write plan as JSON (format above). MT_ERR_IO naming the path. */
mt_status_t mt_plan_save(const struct mt_plan *plan, const char *path);

/*
 * Read a plan file. MT_ERR_IO when it cannot be opened or read; MT_ERR_FORMAT when it is not
 * JSON, not a moetier plan, another version, or inconsistent (a tier string of the wrong length
 * or with an unknown code, a prefill code that stores an expert elsewhere than its decode code,
 * a negative rate, time, byte count or prediction, an efficiency outside [0.01,
 * MT_PLAN_LEARNED_EFF_MAX], a ctx of 0, expert bytes beyond what its budgets leave, more GPU or
 * DRAM experts than those bytes hold, or a tier whose rate is 0, such as 'C' experts with
 * hardware.dram_gbps 0); the message names the file and the field.
 */
mt_status_t mt_plan_load(const char *path, struct mt_plan **plan_out);

/*
 * Check that a plan was made for this model (layers, experts, k, hidden size, expert width,
 * dense layers, expert bytes). MT_ERR_FORMAT naming the first field that differs and both
 * values; `what` names the plan in the message.
 */
mt_status_t mt_plan_check_model(const struct mt_plan *plan, const char *what,
                                const struct mt_model_config *cfg, uint64_t expert_bytes);

#endif /* MT_PLANNER_H */
