/* SPDX-License-Identifier: MIT */
/*
 * team.h - a pool of worker threads, one per physical core, each pinned to its core (hwloc).
 *
 * The one idea: a CPU expert kernel is bound by DRAM, and a core streams its best only from a
 * thread that stays on it, with its SMT sibling idle. So the team is our own pthreads, not
 * OpenMP's (whose binding policy would fight ours): thread i binds itself once, at creation, to
 * one PU of core i; cores are ordered node by node, so a thread's NUMA node is known. A job is
 * fn(arg, tid, n) on threads 0..n-1; threads not asked to work, and every thread between jobs,
 * sleep on a condition variable (never spin), so the team can share the machine with the GPU
 * and I/O threads. Where binding is refused the team runs unpinned with one warning.
 */
#ifndef MT_CPU_TEAM_H
#define MT_CPU_TEAM_H

#include <stdbool.h>

#include "runtime/base/status.h"

struct mt_cpu_team;

typedef void (*mt_cpu_team_fn)(void *arg, int tid, int n);

/*
 * A team on NUMA node index `node` (< 0: all nodes) with `threads` threads (<= 0: one per
 * physical core there; more than the cores is MT_ERR_INVAL). MT_ERR_NOMEM, MT_ERR_UNSUPPORTED
 * (hwloc), MT_ERR_INTERNAL (pthread_create).
 */
mt_status_t mt_cpu_team_create(int node, int threads, struct mt_cpu_team **team_out);

/* Join and free the team (NULL-safe). No job may be running. */
void mt_cpu_team_destroy(struct mt_cpu_team *team);

int mt_cpu_team_size(const struct mt_cpu_team *team);

/* True when every thread of the team is pinned to its core (each has tried by the time
 * mt_cpu_team_create returns). */
bool mt_cpu_team_bound(const struct mt_cpu_team *team);

/* NUMA node index (as in mt_cpu_topo) of thread tid. */
int mt_cpu_team_node(const struct mt_cpu_team *team, int tid);

/*
 * Start fn(arg, tid, n) on threads 0..n-1 (n <= 0 or > size: all) and return at once; the other
 * threads keep sleeping. One job at a time: call mt_cpu_team_wait before the next start.
 */
void mt_cpu_team_start(struct mt_cpu_team *team, int n, mt_cpu_team_fn fn, void *arg);

/* Block (sleeping) until the started job has returned on all its threads. */
void mt_cpu_team_wait(struct mt_cpu_team *team);

/* start + wait. */
void mt_cpu_team_run(struct mt_cpu_team *team, int n, mt_cpu_team_fn fn, void *arg);

/* Inside a job: wait until all n threads of the job have arrived (sleeps, no spinning). */
void mt_cpu_team_barrier(struct mt_cpu_team *team);

#endif /* MT_CPU_TEAM_H */
