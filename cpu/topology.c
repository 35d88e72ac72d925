/* SPDX-License-Identifier: MIT */
/*
 * topology.c - hwloc queries: the machine summary `moetier bench` prints, and the per-core
 * cpusets the thread team pins to (cpu/topology.h).
 */
#include <config.h>

#include "cpu/topology.h"

#include "cpu/isa.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * Keep only the cores this process may run on (taskset, numactl --physcpubind, a cgroup's
 * cpuset): every count and core set below then comes from them, so a team never pins a thread
 * to a core the user kept it off, and the profile's cores are those the runtime will use.
 * hwloc's HWLOC_TOPOLOGY_FLAG_RESTRICT_TO_CPUBINDING does the same but needs
 * HWLOC_TOPOLOGY_FLAG_IS_THISSYSTEM, which would apply this machine's binding to a synthetic
 * topology (HWLOC_SYNTHETIC, the tests' machines, some with HWLOC_THISSYSTEM=1 to try binding)
 * too; so the binding is read after the load, and only for a topology discovered from this
 * machine. The process binding is the union of its threads' bindings: a team already pinned
 * inside the mask does not narrow it. Failing to read it keeps the whole machine, as before.
 */
static void
restrict_to_binding(hwloc_topology_t topo)
{
    const char *backend = hwloc_obj_get_info_by_name(hwloc_get_root_obj(topo), "Backend");
    hwloc_bitmap_t set;

    if (!hwloc_topology_is_thissystem(topo) ||
        (backend != NULL && strcmp(backend, "Synthetic") == 0) ||
        (set = hwloc_bitmap_alloc()) == NULL) {
        return;
    }
    if (hwloc_get_cpubind(topo, set, HWLOC_CPUBIND_PROCESS) == 0 &&
        hwloc_bitmap_intersects(set, hwloc_topology_get_topology_cpuset(topo)) &&
        !hwloc_bitmap_isincluded(hwloc_topology_get_topology_cpuset(topo), set) &&
        hwloc_topology_restrict(topo, set, 0) != 0) {
        mt_log_warn("hwloc cannot restrict the topology to this process's CPUs: %s; the "
                    "thread team may use cores outside them",
                    strerror(errno));
    }
    hwloc_bitmap_free(set);
}

mt_status_t
mt_cpu_topo_load(hwloc_topology_t *topo_out)
{
    hwloc_topology_t topo;

    if (hwloc_topology_init(&topo) != 0) {
        return mt_fail(MT_ERR_UNSUPPORTED, errno, "hwloc cannot initialize a topology");
    }
    if (hwloc_topology_load(topo) != 0) {
        hwloc_topology_destroy(topo);
        return mt_fail(MT_ERR_UNSUPPORTED, errno, "hwloc cannot load this machine's topology");
    }
    restrict_to_binding(topo);
    *topo_out = topo;
    return MT_OK;
}

/*
 * NUMA nodes that have cores of their own, in OS order. In hwloc 2 a node without cores (CXL or
 * PMEM memory, a Xeon Max's HBM in flat mode) carries the cpuset of the cores nearest to it,
 * which the node of their DRAM, listed earlier, already has: such a node is left out, so that no
 * core is counted (and given a thread) twice. A core that two kept nodes list belongs to the
 * first (own_cores). Nodes past cap are left out with their cores, with one warning a process
 * (every team and summary looks the topology up again).
 */
static int
nodes_with_cores(hwloc_topology_t topo, hwloc_obj_t *nodes, int cap)
{
    static atomic_bool warned;
    int n = 0;
    int dropped = 0;
    int total = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
    hwloc_bitmap_t taken = hwloc_bitmap_alloc();

    if (taken == NULL) {
        return 0; /* the callers then treat the machine as one node */
    }
    for (int i = 0; i < total; i++) {
        hwloc_obj_t node = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, i);

        if (node->cpuset != NULL && !hwloc_bitmap_iszero(node->cpuset) &&
            !hwloc_bitmap_isincluded(node->cpuset, taken)) {
            if (n < cap) {
                nodes[n++] = node;
            } else {
                dropped++;
            }
            hwloc_bitmap_or(taken, taken, node->cpuset);
        }
    }
    hwloc_bitmap_free(taken);
    if (dropped > 0 && !atomic_exchange(&warned, true)) {
        mt_log_warn("%d NUMA nodes have cores; moetier uses the first %d and leaves the cores of "
                    "the other %d idle (MT_CPU_MAX_NODES in cpu/topology.h)",
                    n + dropped, n, dropped);
    }
    return n;
}

/* The PUs of nodes[i] that none of nodes[0 .. i - 1] has; NULL when out of memory. */
static hwloc_bitmap_t
own_cores(hwloc_obj_t *nodes, int i)
{
    hwloc_bitmap_t own = hwloc_bitmap_dup(nodes[i]->cpuset);

    for (int j = 0; own != NULL && j < i; j++) {
        hwloc_bitmap_andnot(own, own, nodes[j]->cpuset);
    }
    return own;
}

void
mt_cpu_core_sets_free(hwloc_cpuset_t *sets, int n)
{
    for (int i = 0; sets != NULL && i < n; i++) {
        hwloc_bitmap_free(sets[i]);
    }
    free(sets);
}

/* Append one single-PU set per core inside `within` to sets[*n...] (room for cap), tagging them
 * with node. */
static mt_status_t
add_cores(hwloc_topology_t topo, hwloc_const_cpuset_t within, int node, hwloc_cpuset_t *sets,
          int *nodes, int *n, int cap)
{
    hwloc_obj_type_t type = HWLOC_OBJ_CORE;
    int count = hwloc_get_nbobjs_inside_cpuset_by_type(topo, within, HWLOC_OBJ_CORE);

    if (count <= 0) {
        type = HWLOC_OBJ_PU;
        count = hwloc_get_nbobjs_inside_cpuset_by_type(topo, within, HWLOC_OBJ_PU);
    }
    for (int i = 0; i < count; i++) {
        hwloc_obj_t core = hwloc_get_obj_inside_cpuset_by_type(topo, within, type, i);
        hwloc_cpuset_t set;

        if (*n >= cap) {
            return mt_fail(MT_ERR_INTERNAL, 0, "hwloc lists more cores than the %d PUs it counts",
                           cap);
        }
        set = hwloc_bitmap_dup(core->cpuset);
        if (set == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a cpuset");
        }
        hwloc_bitmap_singlify(set); /* one PU: its hyperthread sibling stays idle */
        sets[*n] = set;
        nodes[*n] = node;
        (*n)++;
    }
    return MT_OK;
}

mt_status_t
mt_cpu_core_sets(hwloc_topology_t topo, int node, hwloc_cpuset_t **sets_out, int **node_out,
                 int *n_out)
{
    hwloc_obj_t nodes[MT_CPU_MAX_NODES];
    int n_nodes = nodes_with_cores(topo, nodes, MT_CPU_MAX_NODES);
    int cap = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    hwloc_cpuset_t *sets;
    int *node_of;
    int n = 0;
    mt_status_t st = MT_OK;

    if (node >= MT_MAX(n_nodes, 1)) {
        return mt_fail(MT_ERR_INVAL, 0, "NUMA node index %d out of range (this machine has %d)",
                       node, n_nodes);
    }
    sets = calloc((size_t)MT_MAX(cap, 1), sizeof(*sets));
    node_of = calloc((size_t)MT_MAX(cap, 1), sizeof(*node_of));
    if (sets == NULL || node_of == NULL) {
        free(sets);
        free(node_of);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %d cpusets", cap);
    }
    if (n_nodes == 0) {
        st = add_cores(topo, hwloc_topology_get_topology_cpuset(topo), 0, sets, node_of, &n, cap);
    }
    for (int i = 0; i < n_nodes && st == MT_OK; i++) {
        if (node < 0 || node == i) {
            hwloc_bitmap_t own = own_cores(nodes, i);

            st = own == NULL ? mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a cpuset")
                             : add_cores(topo, own, i, sets, node_of, &n, cap);
            hwloc_bitmap_free(own);
        }
    }
    if (st != MT_OK) {
        mt_cpu_core_sets_free(sets, n);
        free(node_of);
        return st;
    }
    *sets_out = sets;
    *node_out = node_of;
    *n_out = n;
    return MT_OK;
}

mt_status_t
mt_cpu_topo_query(struct mt_cpu_topo *topo_out)
{
    hwloc_topology_t topo;
    hwloc_obj_t nodes[MT_CPU_MAX_NODES];
    struct mt_cpu_topo tp;
    mt_status_t st;
    int n_caches;

    st = mt_cpu_topo_load(&topo);
    if (st != MT_OK) {
        return st;
    }
    memset(&tp, 0, sizeof(tp));
    mt_cpu_brand(tp.model, sizeof(tp.model));
    tp.cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    tp.threads = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    /* The kernel's MemTotal, not hwloc's sum over nodes: in VMs whose memory is plugged as it
     * is used, the per-node counts start far below what the machine has. */
    tp.mem_bytes = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGE_SIZE);
    /* Every L3 instance, summed: a working set meant to miss the last-level cache must outgrow
     * all of them together, since the team's threads spread it over all (a multi-CCD EPYC has
     * 12 L3s of 32 MiB: the largest one alone sized the quick read ceiling at 256 MiB, which
     * the 384 MiB of L3 hold whole). The topology holds only the caches of the cores this
     * process may use (restrict_to_binding). */
    n_caches = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_L3CACHE);
    for (int i = 0; i < n_caches; i++) {
        hwloc_obj_t l3 = hwloc_get_obj_by_type(topo, HWLOC_OBJ_L3CACHE, i);

        tp.l3_bytes += l3->attr->cache.size;
    }
    tp.n_nodes = nodes_with_cores(topo, nodes, MT_CPU_MAX_NODES);
    for (int i = 0; i < tp.n_nodes; i++) {
        hwloc_bitmap_t own = own_cores(nodes, i);

        tp.node_id[i] = (int)nodes[i]->os_index;
        tp.node_cores[i] = own == NULL ? 0
                                       : hwloc_get_nbobjs_inside_cpuset_by_type(topo, own,
                                                                                HWLOC_OBJ_CORE);
        tp.node_mem[i] = nodes[i]->attr->numanode.local_memory;
        hwloc_bitmap_free(own);
    }
    if (tp.n_nodes == 0) {
        tp.n_nodes = 1;
        tp.node_cores[0] = tp.cores;
    }
    if (tp.n_nodes == 1) {
        tp.node_mem[0] = tp.mem_bytes;
    }
    hwloc_topology_destroy(topo);
    *topo_out = tp;
    return MT_OK;
}
