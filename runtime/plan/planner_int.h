/* SPDX-License-Identifier: MIT */
/*
 * planner_int.h - what the planner's three files share (internal to runtime/plan/).
 *
 * planner_cost.c is the cost model: the load vector of an expert in a tier, the time of a
 * placement (expected load, or sampled tokens). planner_search.c finds a placement that makes that
 * time small. planner.c builds a plan for a real model and hardware from both. The helpers below
 * are the cost model's, used by the search too.
 */
#ifndef MT_PLANNER_INT_H
#define MT_PLANNER_INT_H

#include "runtime/plan/planner.h"

#include <stdbool.h>

#define T_ MT_TIER_COUNT
#define S_ MT_SRC_COUNT

/* Whether tier t stores its expert in DRAM (computed by the CPU, or copied over PCIe). */
bool mt_plan_tier_is_dram(int t);

/* Storage class of a tier: 0 GPU, 1 DRAM, 2 NVMe. */
int mt_plan_tier_storage(int t);

/* Whether NVMe experts are computed on the GPU (prefill with PCIe and a GPU), else the CPU. */
bool mt_plan_nvme_on_gpu(const struct mt_plan_problem *pb);

/* Which tiers the problem's rates allow. */
void mt_plan_tiers_feasible(const struct mt_plan_problem *pb, bool ok[T_]);

/* Load vector (seconds per source) of one expert of activation probability p in tier t. */
void mt_plan_expert_load(const struct mt_plan_problem *pb, double p, int t, double v[S_]);

/*
 * Prefill's tiers from decode's, in place: where the GPU engine computes each expert of a step
 * of pb->batch tokens (planner.c). MT_ERR_NOMEM.
 */
mt_status_t mt_plan_prefill_tiers(const struct mt_plan_problem *pb, uint8_t *t);

/* The time of a layer: the largest of its per-source seconds. */
double mt_plan_row_max(const double *row);

/* P(a step uses one of layer l's experts that tl puts off the GPU), at the problem's batch. */
double mt_plan_layer_host_prob(const struct mt_plan_problem *pb, int l, const uint8_t *tl);

/* How many experts of expert_bytes fit in capacity bytes. */
int mt_plan_slots(double capacity, double expert_bytes);

/*
 * The bytes plan's budgets leave for routed experts: the one accounting that mt_plan_build plans
 * with and mt_plan_load checks a plan file against. With a GPU (gpu true), its budget first holds
 * the always-on weights, the KV cache and the workspace, and DRAM keeps its reserve; without one,
 * nothing is left on the GPU, and the always-on weights and the KV cache come out of DRAM too.
 * Reads plan's budget, always_on_bytes and kv_bytes. A budget too small for what it holds first
 * leaves 0 for experts (mt_plan_build refuses such a GPU budget, and DRAM below its reserve).
 * With a GPU, mt_plan_build also takes the embedding table (in host memory on the GPU engine)
 * out of DRAM's room, which a plan file does not record: the load's check is that much looser.
 */
void mt_plan_expert_room(const struct mt_plan *plan, bool gpu, uint64_t *gpu_out,
                         uint64_t *dram_out);

/* Take the profile's learned efficiencies (if any) into plan: cpu_eff, gpu_eff, disk_eff,
 * host_layer_ms. */
void mt_plan_apply_learned(struct mt_plan *plan, const struct mt_hwprofile *hw);

/* MT_ERR_INVAL "planner: empty or malformed problem" or a probability outside [0, 1]. */
mt_status_t mt_plan_problem_check(const struct mt_plan_problem *pb);

#endif /* MT_PLANNER_INT_H */
