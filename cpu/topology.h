/* SPDX-License-Identifier: MIT */
/*
 * topology.h - the machine as hwloc sees it: cores, NUMA nodes, memory, last-level cache, and
 * the one-PU-per-core sets a pinned thread team binds to.
 */
#ifndef MT_CPU_TOPOLOGY_H
#define MT_CPU_TOPOLOGY_H

#include <stdint.h>

#include <hwloc.h>

#include "runtime/base/status.h"

#define MT_CPU_MAX_NODES 16

/* What hwloc says about the machine. */
struct mt_cpu_topo {
    char model[128];                     /* cpuid brand string */
    int cores;                           /* physical cores */
    int threads;                         /* processing units */
    uint64_t mem_bytes;                  /* DRAM the kernel reports (MemTotal) */
    uint64_t l3_bytes;                   /* all L3 caches of the cores used, 0 if unknown */
    int n_nodes;                         /* NUMA nodes with cores (1 on a non-NUMA machine) */
    int node_id[MT_CPU_MAX_NODES];       /* OS index */
    int node_cores[MT_CPU_MAX_NODES];    /* physical cores on the node */
    uint64_t node_mem[MT_CPU_MAX_NODES]; /* bytes of DRAM on the node */
};

/* The machine's cores, NUMA nodes and memory (hwloc). MT_ERR_UNSUPPORTED if hwloc fails. */
mt_status_t mt_cpu_topo_query(struct mt_cpu_topo *topo_out);

/* A loaded hwloc topology (destroy with hwloc_topology_destroy). MT_ERR_UNSUPPORTED. */
mt_status_t mt_cpu_topo_load(hwloc_topology_t *topo_out);

/*
 * One cpuset per physical core of node index `node` (< 0: every node), each reduced to a single
 * PU so the core's SMT siblings stay idle; cores are listed node by node. node_out[i] is the node
 * index of core i. Frees with mt_cpu_core_sets_free. MT_ERR_INVAL (node out of range),
 * MT_ERR_NOMEM.
 */
mt_status_t mt_cpu_core_sets(hwloc_topology_t topo, int node, hwloc_cpuset_t **sets_out,
                             int **node_out, int *n_out);
void mt_cpu_core_sets_free(hwloc_cpuset_t *sets, int n);

#endif /* MT_CPU_TOPOLOGY_H */
