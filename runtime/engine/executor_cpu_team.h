/* SPDX-License-Identifier: MIT */
/*
 * executor_cpu_team.h - the CPU-team executor: a layer's routed experts computed by the SIMD
 * expert kernels (cpu/experts.h) across a pinned thread team (cpu/team.h).
 *
 * submit() acquires every task's expert from the provider and starts the layer on the team,
 * then returns, so the caller (the GPU executor, the disk) works meanwhile; wait() joins the team
 * and releases the experts. Checked against the reference executor by tests/test_cpu_experts.c.
 */
#ifndef MT_EXECUTOR_CPU_TEAM_H
#define MT_EXECUTOR_CPU_TEAM_H

#include "cpu/team.h"
#include "runtime/engine/executor.h"

/*
 * provider and team are borrowed and must outlive the executor. The kernel family is
 * mt_cpu_level_select()'s (MOETIER_ISA). MT_ERR_NOMEM, MT_ERR_INVAL/UNSUPPORTED (MOETIER_ISA).
 */
mt_status_t mt_executor_cpu_team_create(struct mt_expert_provider *provider,
                                        struct mt_cpu_team *team, struct mt_executor **ex_out);

#endif /* MT_EXECUTOR_CPU_TEAM_H */
