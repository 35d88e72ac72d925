/* SPDX-License-Identifier: MIT */
/*
 * test_cpu_topology.c - the per-core cpusets the thread team pins to (cpu/topology.c), on this
 * machine and on synthetic hwloc topologies (HWLOC_SYNTHETIC): every core exactly once, one PU
 * each, tagged with its NUMA node; nodes that share their cores with an earlier node (hwloc 2
 * gives memory-only nodes, such as a Xeon Max's HBM in flat mode or CXL memory, the cpuset of
 * the cores nearest to them) are not counted again; a team that cannot pin its threads
 * says so; and team sizes, job sizes and barriers as cpu/team.h gives them.
 */
#include <config.h>

#include "cpu/team.h"
#include "cpu/topology.h"
#include "tests/tap.h"

#include <stdio.h>
#include <stdlib.h>

/*
 * Load the topology that `synthetic` describes (NULL: this machine) and check the core sets of
 * all nodes and of `node`: want_cores sets in all, pairwise disjoint, single PUs, node tags
 * non-decreasing; want_nodes nodes with cores, want_on_node cores on `node`.
 */
static void
check(const char *synthetic, int want_cores, int want_nodes, int node, int want_on_node)
{
    hwloc_topology_t topo;
    hwloc_cpuset_t *sets = NULL;
    int *node_of = NULL;
    int n = 0;
    const char *name = synthetic != NULL ? synthetic : "this machine";

    if (synthetic != NULL) {
        setenv("HWLOC_SYNTHETIC", synthetic, 1);
    } else {
        unsetenv("HWLOC_SYNTHETIC");
    }
    if (mt_cpu_topo_load(&topo) != MT_OK) {
        tap_ok(false, "%s: hwloc loads it (%s)", name, mt_last_error());
        return;
    }
    if (want_cores < 0) {
        want_cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
        want_cores = want_cores > 0 ? want_cores : hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    }
    if (mt_cpu_core_sets(topo, -1, &sets, &node_of, &n) != MT_OK) {
        tap_ok(false, "%s: core sets: %s", name, mt_last_error());
        hwloc_topology_destroy(topo);
        return;
    }
    bool single = true;
    bool disjoint = true;
    bool ordered = true;
    int max_node = -1;
    for (int i = 0; i < n; i++) {
        single = single && hwloc_bitmap_weight(sets[i]) == 1;
        for (int j = 0; j < i; j++) {
            disjoint = disjoint && !hwloc_bitmap_intersects(sets[i], sets[j]);
        }
        ordered = ordered && (i == 0 || node_of[i] >= node_of[i - 1]);
        max_node = node_of[i] > max_node ? node_of[i] : max_node;
    }
    tap_ok(n == want_cores && single && disjoint && ordered,
           "%s: %d core sets (want %d), one PU each (%s), no core twice (%s), by node (%s)", name,
           n, want_cores, single ? "yes" : "no", disjoint ? "yes" : "no", ordered ? "yes" : "no");
    if (want_nodes > 0) {
        tap_ok(max_node + 1 == want_nodes, "%s: %d nodes with cores (want %d)", name,
               max_node + 1, want_nodes);
    }
    mt_cpu_core_sets_free(sets, n);
    free(node_of);
    if (node >= 0) {
        sets = NULL;
        node_of = NULL;
        n = 0;
        bool ok = mt_cpu_core_sets(topo, node, &sets, &node_of, &n) == MT_OK;
        bool tagged = true;
        for (int i = 0; ok && i < n; i++) {
            tagged = tagged && node_of[i] == node;
        }
        tap_ok(ok && n == want_on_node && tagged, "%s: node %d alone: %d cores (want %d), all its",
               name, node, n, want_on_node);
        mt_cpu_core_sets_free(sets, n);
        free(node_of);
        tap_ok(mt_cpu_core_sets(topo, want_nodes, &sets, &node_of, &n) == MT_ERR_INVAL,
               "%s: node %d (past the last) is refused", name, want_nodes);
    }
    hwloc_topology_destroy(topo);

    if (synthetic != NULL && want_nodes > 0) {
        struct mt_cpu_topo tp;
        int sum = 0;
        bool ok = mt_cpu_topo_query(&tp) == MT_OK;
        for (int i = 0; ok && i < tp.n_nodes; i++) {
            sum += tp.node_cores[i];
        }
        tap_ok(ok && tp.n_nodes == want_nodes && sum == want_cores,
               "%s: the machine summary: %d nodes, %d cores on them (want %d, %d)", name,
               ok ? tp.n_nodes : -1, sum, want_nodes, want_cores);
    }
}

static void
count_call(void *arg, int tid, int n)
{
    (void)tid;
    (void)n;
    __atomic_fetch_add((int *)arg, 1, __ATOMIC_RELAXED);
}

/*
 * A team whose cores cannot be bound to (a synthetic machine's PUs 600 and 601, past this
 * one's): mt_cpu_team_bound says so as soon as mt_cpu_team_create returns (it used to read the
 * flag before the threads had tried), and the team still runs, unpinned.
 */
static void
check_unbound_team(void)
{
    struct mt_cpu_team *team = NULL;
    int calls = 0;

    setenv("HWLOC_SYNTHETIC", "pack:2 [numa] core:600 pu:1", 1);
    setenv("HWLOC_THISSYSTEM", "1", 1); /* bind as if it were this machine: it fails */
    if (mt_cpu_team_create(1, 2, &team) != MT_OK) {
        tap_ok(false, "a team on a synthetic machine's node 1: %s", mt_last_error());
    } else {
        bool bound = mt_cpu_team_bound(team);

        mt_cpu_team_run(team, 0, count_call, &calls);
        tap_ok(!bound && calls == 2,
               "a team that cannot bind says so when created (%s) and runs unpinned (%d of 2 "
               "threads)", bound ? "bound" : "unbound", calls);
        mt_cpu_team_destroy(team);
    }
    unsetenv("HWLOC_THISSYSTEM");
    unsetenv("HWLOC_SYNTHETIC");
}

/*
 * The last-level cache a working set must outgrow is every L3 together (a multi-CCD EPYC's 12
 * of 32 MiB), not the largest one: the summary used to say 32 MiB for 8 of them.
 */
static void
check_l3_total(void)
{
    struct mt_cpu_topo tp;
    bool ok;

    setenv("HWLOC_SYNTHETIC", "pack:1 l3:8(size=33554432) core:2 pu:1", 1);
    ok = mt_cpu_topo_query(&tp) == MT_OK;
    tap_ok(ok && tp.l3_bytes == (uint64_t)256 << 20,
           "8 L3s of 32 MiB: the summary's L3 is %llu MiB (want their total, 256)",
           ok ? (unsigned long long)(tp.l3_bytes >> 20) : 0ull);
    unsetenv("HWLOC_SYNTHETIC");
}

struct team_probe {
    struct mt_cpu_team *team;
    int calls;   /* fn calls */
    int arrived; /* calls that reached the first barrier */
    int bad;     /* a call that saw another n, or passed a barrier before all arrived */
    int want_n;
};

static void
probe_call(void *arg, int tid, int n)
{
    struct team_probe *p = arg;

    if (n != p->want_n || tid < 0 || tid >= n) {
        __atomic_fetch_add(&p->bad, 1, __ATOMIC_RELAXED);
    }
    __atomic_fetch_add(&p->calls, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&p->arrived, 1, __ATOMIC_SEQ_CST);
    mt_cpu_team_barrier(p->team);
    if (__atomic_load_n(&p->arrived, __ATOMIC_SEQ_CST) != n) {
        __atomic_fetch_add(&p->bad, 1, __ATOMIC_RELAXED);
    }
    mt_cpu_team_barrier(p->team); /* a second round on the same barrier */
}

/*
 * Team sizes and jobs as team.h says, on a synthetic machine of 3 cores: threads <= 0 gives
 * one per core, 1..3 that many, 4 is MT_ERR_INVAL; a job of n threads calls fn on threads
 * 0..n-1 with that n (n <= 0 or above the size: all), and its barriers wait for those n only.
 */
static void
check_team_sizes(void)
{
    static const struct {
        int threads;
        int size;
    } sizes[] = {{0, 3}, {-1, 3}, {1, 1}, {2, 2}, {3, 3}};
    static const int jobs[][2] = {{0, 3}, {-2, 3}, {1, 1}, {2, 2}, {3, 3}, {7, 3}};
    struct mt_cpu_team *team = NULL;
    bool ok = true;

    setenv("HWLOC_SYNTHETIC", "core:3 pu:2", 1);
    mt_log_set_quiet(true); /* a synthetic machine's cores cannot be bound to: one warning */
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        team = NULL;
        ok = ok && mt_cpu_team_create(-1, sizes[i].threads, &team) == MT_OK &&
             mt_cpu_team_size(team) == sizes[i].size;
        mt_cpu_team_destroy(team);
    }
    tap_ok(ok, "3 cores: a team of 0 (one per core), -1, 1, 2, 3 threads has 3, 3, 1, 2, 3");
    team = NULL;
    tap_ok(mt_cpu_team_create(-1, 4, &team) == MT_ERR_INVAL && team == NULL,
           "3 cores: a team of 4 threads is MT_ERR_INVAL");
    ok = mt_cpu_team_create(-1, 0, &team) == MT_OK;
    mt_log_set_quiet(false);
    for (size_t i = 0; ok && i < sizeof(jobs) / sizeof(jobs[0]); i++) {
        struct team_probe p = {team, 0, 0, 0, jobs[i][1]};

        mt_cpu_team_run(team, jobs[i][0], probe_call, &p);
        ok = p.calls == jobs[i][1] && p.bad == 0;
        if (!ok) {
            tap_diag("job of n %d: %d calls (want %d), %d bad", jobs[i][0], p.calls, jobs[i][1],
                     p.bad);
        }
    }
    tap_ok(ok, "a team of 3 runs jobs of n 0, -2, 1, 2, 3, 7 on 3, 3, 1, 2, 3, 3 threads, each "
           "seeing that n, its barriers waiting for exactly those");
    mt_cpu_team_destroy(team);
    unsetenv("HWLOC_SYNTHETIC");
}

/*
 * The team's threads know their NUMA node (cores are listed node by node: 2 nodes of 2 cores
 * give 0, 0, 1, 1); and the summary of a one-node machine gives that node all of the memory
 * (the kernel's MemTotal), as for the machine.
 */
static void
check_team_nodes(void)
{
    struct mt_cpu_team *team = NULL;
    struct mt_cpu_topo tp;
    bool ok;

    setenv("HWLOC_SYNTHETIC", "pack:2 [numa] core:2 pu:1", 1);
    mt_log_set_quiet(true);
    ok = mt_cpu_team_create(-1, 0, &team) == MT_OK;
    mt_log_set_quiet(false);
    tap_ok(ok && mt_cpu_team_size(team) == 4 && mt_cpu_team_node(team, 0) == 0 &&
               mt_cpu_team_node(team, 1) == 0 && mt_cpu_team_node(team, 2) == 1 &&
               mt_cpu_team_node(team, 3) == 1,
           "2 nodes of 2 cores: the team's threads are on nodes 0, 0, 1, 1");
    mt_cpu_team_destroy(team);
    setenv("HWLOC_SYNTHETIC", "core:3 pu:2", 1);
    ok = mt_cpu_topo_query(&tp) == MT_OK;
    tap_ok(ok && tp.n_nodes == 1 && tp.node_mem[0] == tp.mem_bytes && tp.mem_bytes > 0,
           "one node: the summary gives it the machine's memory (%llu of %llu bytes)",
           ok ? (unsigned long long)tp.node_mem[0] : 0ull,
           ok ? (unsigned long long)tp.mem_bytes : 0ull);
    unsetenv("HWLOC_SYNTHETIC");
}

/*
 * A process kept to one PU (taskset) gets one core set, that PU's: the team never pins a
 * thread to a core the user kept it off. Needs a machine of two cores or more.
 */
static void
check_binding_restricts(void)
{
    hwloc_topology_t topo;
    hwloc_topology_t bound;
    hwloc_bitmap_t saved = hwloc_bitmap_alloc();
    hwloc_cpuset_t *sets = NULL;
    int *node_of = NULL;
    int n = 0;
    bool ok;

    unsetenv("HWLOC_SYNTHETIC");
    if (saved == NULL || mt_cpu_topo_load(&topo) != MT_OK) {
        tap_ok(false, "this machine's topology loads");
        hwloc_bitmap_free(saved);
        return;
    }
    if (hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE) < 2 ||
        hwloc_get_cpubind(topo, saved, HWLOC_CPUBIND_PROCESS) != 0) {
        tap_ok(true, "a process kept to one PU gets one core set # SKIP one core, or no "
               "binding here");
        hwloc_topology_destroy(topo);
        hwloc_bitmap_free(saved);
        return;
    }
    hwloc_const_cpuset_t one = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PU, 0)->cpuset;

    ok = hwloc_set_cpubind(topo, one, HWLOC_CPUBIND_PROCESS) == 0;
    if (ok && mt_cpu_topo_load(&bound) == MT_OK) {
        ok = mt_cpu_core_sets(bound, -1, &sets, &node_of, &n) == MT_OK && n == 1 &&
             hwloc_bitmap_isequal(sets[0], one);
        mt_cpu_core_sets_free(sets, n);
        free(node_of);
        hwloc_topology_destroy(bound);
    } else {
        ok = false;
    }
    (void)hwloc_set_cpubind(topo, saved, HWLOC_CPUBIND_PROCESS);
    hwloc_topology_destroy(topo);
    hwloc_bitmap_free(saved);
    tap_ok(ok, "a process kept to one PU gets one core set, that PU's (%d sets)", n);
}

int
main(void)
{
    tap_plan(0);
    check(NULL, -1, 0, -1, 0);
    check("pack:2 [numa] core:4 pu:2", 8, 2, 1, 4);
    /* two nodes on each package (DRAM and HBM, say): each core once, on the first */
    check("pack:2 [numa] [numa] core:4 pu:1", 8, 2, 1, 4);
    check("pack:2 [numa] [numa] core:4 pu:2", 8, 2, 0, 4);
    /* a node for the whole machine beside the packages' own (CXL memory, say): which of them
     * keep the cores depends on the order hwloc lists them in; each core still once */
    check("[numa] pack:2 [numa] core:4 pu:1", 8, 0, -1, 0);
    check("core:3 pu:2", 3, 0, -1, 0); /* no NUMA level in the description */
    unsetenv("HWLOC_SYNTHETIC");
    check_unbound_team();
    check_l3_total();
    check_team_sizes();
    check_team_nodes();
    check_binding_restricts();
    return tap_done();
}
