/* SPDX-License-Identifier: MIT */
/*
 * test_cpu_topology.c - the per-core cpusets the thread team pins to (cpu/topology.c), on this
 * machine and on synthetic hwloc topologies (HWLOC_SYNTHETIC): every core exactly once, one PU
 * each, tagged with its NUMA node; nodes that share their cores with an earlier node (hwloc 2
 * gives memory-only nodes, such as a Xeon Max's HBM in flat mode or CXL memory, the cpuset of
 * the cores nearest to them) are not counted again; a team that cannot pin its threads
 * says so; and team sizes, job sizes and barriers as cpu/team.h gives them. And what runs on
 * such teams (cpu/stream.c, cpu/flops.c), checked for what does not depend on timing: the
 * median and p90, the read-ceiling kernel's OR of every word, the STREAM and ceiling results'
 * sizes, bounds and units, and their refusals.
 */
#include <config.h>

#include "cpu/flops.h"
#include "cpu/isa.h"
#include "cpu/stream.h"
#include "cpu/team.h"
#include "cpu/topology.h"
#include "tests/tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* MemTotal of /proc/meminfo in bytes; 0 when it cannot be read. */
static unsigned long long
mem_total_bytes(void)
{
    char line[256];
    unsigned long long kib = 0;
    FILE *f = fopen("/proc/meminfo", "r");

    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "MemTotal: %llu kB", &kib) == 1) {
            break;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kib * 1024;
}

/*
 * The machine summary: cores are cores, not PUs (3 cores of 2 PUs); the memory is the kernel's
 * MemTotal, all of it, not what is free now; nodes keep their OS index (of 4 nodes, two per
 * package, the kept ones are 0 and 2) and their own memory; a machine of 16 nodes (the most
 * mt_cpu_topo holds) has all 16.
 */
static void
check_summary(void)
{
    struct mt_cpu_topo tp;
    unsigned long long total = mem_total_bytes();
    bool ok;

    setenv("HWLOC_SYNTHETIC", "core:3 pu:2", 1);
    ok = mt_cpu_topo_query(&tp) == MT_OK;
    tap_ok(ok && tp.cores == 3 && tp.threads == 6 && tp.n_nodes == 1 && tp.node_cores[0] == 3 &&
               (total == 0 || tp.mem_bytes == total),
           "3 cores of 2 PUs: %d cores, %d threads, %d on the node (want 3, 6, 3); %llu bytes "
           "of memory (MemTotal: %llu)", ok ? tp.cores : -1, ok ? tp.threads : -1,
           ok ? tp.node_cores[0] : -1, ok ? (unsigned long long)tp.mem_bytes : 0ull, total);
    setenv("HWLOC_SYNTHETIC",
           "pack:2 [numa(memory=1073741824)] [numa(memory=2147483648)] core:4 pu:1", 1);
    ok = mt_cpu_topo_query(&tp) == MT_OK;
    tap_ok(ok && tp.n_nodes == 2 && tp.node_id[0] == 0 && tp.node_id[1] == 2 &&
               tp.node_mem[0] == (uint64_t)1 << 30 && tp.node_mem[1] == (uint64_t)1 << 30,
           "two nodes a package: the kept ones are OS nodes %d, %d (want 0, 2), of %llu and %llu "
           "bytes (want 1 GiB each)", ok ? tp.node_id[0] : -1, ok ? tp.node_id[1] : -1,
           ok ? (unsigned long long)tp.node_mem[0] : 0ull,
           ok ? (unsigned long long)tp.node_mem[1] : 0ull);
    unsetenv("HWLOC_SYNTHETIC");
}

/*
 * A machine of 17 nodes with cores, one more than mt_cpu_topo holds: the first 16 are used, and
 * the 17th core left idle is said once a process, however often the topology is looked up.
 */
static void
check_too_many_nodes(void)
{
    char path[4096];
    struct mt_cpu_topo tp;
    int saved;
    int lines;
    bool ok;

    snprintf(path, sizeof(path), "%s/nodes.log", tap_tmpdir());
    saved = tap_stderr_to(path);
    check("pack:17 [numa] core:1 pu:1", 16, 16, 15, 1);
    ok = mt_cpu_topo_query(&tp) == MT_OK;
    tap_stderr_restore(saved);
    unsetenv("HWLOC_SYNTHETIC");
    lines = tap_count_lines(path, "17 NUMA nodes have cores; moetier uses the first 16");
    tap_ok(ok && tp.n_nodes == 16 && lines == 1,
           "17 nodes with cores: the summary has %d (want 16); %d warnings in two look-ups "
           "(want 1)", ok ? tp.n_nodes : -1, lines);
}

/* mt_cpu_median_p90: the middle value (mean of the two middle ones for even n), p90 the value
 * at rank round(0.9 n) capped to the last; input in any order. */
static void
check_median_p90(void)
{
    double odd[15] = {9, 2, 15, 4, 11, 6, 13, 8, 1, 10, 3, 12, 5, 14, 7};
    double even[4] = {4, 1, 3, 2};
    double med = 0.0;
    double p90 = 0.0;
    double med2 = 0.0;
    double p902 = 0.0;

    mt_cpu_median_p90(odd, 15, &med, &p90);
    mt_cpu_median_p90(even, 4, &med2, &p902);
    tap_ok(med == 8.0 && p90 == 15.0 && med2 == 2.5 && p902 == 4.0,
           "median, p90 of 1..15 shuffled: %g, %g (want 8, 15: rank 13.5 rounds to 14); of "
           "4 1 3 2: %g, %g (want 2.5, 4)", med, p90, med2, p902);
}

/* mt_cpu_read_or reads every 64-bit word once, whichever the streams and prefetch: one bit set
 * in any word of 4 KiB shows in the OR (a stream slice, a half of a 128-byte step, left out
 * would miss some). */
static void
check_read_or(void)
{
    enum { LEN = 4096, WORDS = LEN / 8 };
    static const int streams[] = {1, 2, 4, 8};
    uint64_t *buf = aligned_alloc(64, LEN);
    int missed = -1;
    int missed_s = 0;
    int missed_pf = 0;

    if (buf == NULL) {
        tap_ok(false, "read_or: allocate 4 KiB");
        return;
    }
    memset(buf, 0, LEN);
    for (int w = 0; w < WORDS && missed < 0; w++) {
        buf[w] = 1ull << (w % 64);
        for (int si = 0; si < 4 && missed < 0; si++) {
            for (int pf = 0; pf <= 2048 && missed < 0; pf += 2048) {
                if (mt_cpu_read_or(buf, LEN, streams[si], pf) != buf[w]) {
                    missed = w;
                    missed_s = streams[si];
                    missed_pf = pf;
                }
            }
        }
        buf[w] = 0;
    }
    free(buf);
    tap_ok(missed < 0, "read_or sees a bit in every word of 4 KiB, 1-8 streams, prefetch 0 and "
           "2048 (first missed: word %d, %d streams, prefetch %d)", missed, missed_s, missed_pf);
}

/*
 * STREAM and the read ceiling on a synthetic machine of 3 cores (an unbound team of 3): arrays
 * of 197 doubles (1,580 bytes asked: a whole number of doubles is kept) split 66/65/66, so
 * thread slices start unaligned and end with a remainder, and the built-in check (every b[i]
 * read, every a[i] = 1 + 3 * 2) must pass; the rates are the sizes over the medians (read:
 * one array, triad: three). The ceiling keeps whole KiB per thread. Out-of-range repetitions and
 * arrays too small for the team are refused.
 */
static void
check_stream(void)
{
    struct mt_cpu_stream_result sr;
    struct mt_cpu_ceiling_result cr;
    struct mt_cpu_isa isa;
    const char *want_isa;
    mt_status_t st;
    bool ok;

    setenv("HWLOC_SYNTHETIC", "core:3 pu:1", 1);
    mt_log_set_quiet(true); /* a synthetic machine's cores cannot be bound to */
    memset(&sr, 0, sizeof(sr));
    st = mt_cpu_stream_run(-1, 1580, 3, &sr);
    ok = st == MT_OK && sr.threads == 3 && sr.array_bytes == 1576 &&
         sr.read_median_s > 0.0 && sr.read_median_s <= sr.read_p90_s &&
         sr.triad_median_s > 0.0 && sr.triad_median_s <= sr.triad_p90_s &&
         fabs(sr.read_gbps * sr.read_median_s - 1576e-9) < 1e-15 &&
         fabs(sr.triad_gbps * sr.triad_median_s - 3 * 1576e-9) < 1e-15;
    tap_ok(ok, "stream of 197 doubles on 3 threads: %s, %d threads, %zu bytes (want 1576), read "
           "%g GB/s over %g s, triad %g GB/s over %g s (3 arrays)", mt_status_str(st),
           sr.threads, sr.array_bytes, sr.read_gbps, sr.read_median_s, sr.triad_gbps,
           sr.triad_median_s);
    tap_ok(mt_cpu_stream_run(-1, 1580, 2, &sr) == MT_ERR_INVAL &&
               mt_cpu_stream_run(-1, 1580, 1001, &sr) == MT_ERR_INVAL &&
               mt_cpu_stream_run(-1, 3 * 512 - 8, 3, &sr) == MT_ERR_INVAL &&
               mt_cpu_stream_run(-1, 3 * 512, 3, &sr) == MT_OK,
           "stream: 2 and 1001 repetitions, 1,528-byte arrays for 3 threads are refused; 1,536 "
           "run");

    memset(&cr, 0, sizeof(cr));
    st = mt_cpu_read_ceiling(-1, 3 * 66560 + 100, 3, &cr);
    mt_cpu_isa_detect(&isa);
    want_isa = isa.avx512f ? "avx512" : isa.avx2 ? "avx2" : "scalar";
    ok = st == MT_OK && cr.threads == 3 && cr.bytes == 3 * 66560 && cr.median_s > 0.0 &&
         cr.median_s <= cr.p90_s && fabs(cr.gbps * cr.median_s - 3 * 66560e-9) < 1e-15 &&
         cr.isa != NULL && strcmp(cr.isa, want_isa) == 0 &&
         ((cr.prefetch == 0 && (cr.streams == 1 || cr.streams == 2 || cr.streams == 4 ||
                                cr.streams == 8)) ||
          (cr.prefetch == 2048 && (cr.streams == 2 || cr.streams == 4 || cr.streams == 8)));
    tap_ok(ok, "read ceiling of 3 x 65 KiB + 100 bytes: %s, %d threads, %zu bytes (want %d), "
           "%s loads (want %s), %d streams, prefetch %d (one of the variants), %g GB/s over %g s",
           mt_status_str(st), cr.threads, cr.bytes, 3 * 66560, cr.isa ? cr.isa : "-", want_isa,
           cr.streams, cr.prefetch, cr.gbps, cr.median_s);
    tap_ok(mt_cpu_read_ceiling(-1, 3 * 66560, 2, &cr) == MT_ERR_INVAL &&
               mt_cpu_read_ceiling(-1, 3 * 63488, 3, &cr) == MT_ERR_INVAL,
           "read ceiling: 2 repetitions, and 62 KiB a thread, are refused");
    mt_log_set_quiet(false);
    unsetenv("HWLOC_SYNTHETIC");
}

/* The ceiling's default working set: whole 256 MiB steps, at most a quarter of DRAM (or 256
 * MiB where that is less). */
static void
check_ceiling_default(void)
{
    struct mt_cpu_topo tp;
    size_t b = mt_cpu_ceiling_default_bytes();
    bool ok = mt_cpu_topo_query(&tp) == MT_OK;
    size_t cap = ok && tp.mem_bytes > 0 ? (size_t)(tp.mem_bytes / 4) : b;

    tap_ok(ok && b >= ((size_t)256 << 20) && b % ((size_t)256 << 20) == 0 &&
               (b <= cap || b == ((size_t)256 << 20)),
           "the ceiling's default of %zu bytes is whole 256 MiB, at most 1/4 of %llu bytes", b,
           ok ? (unsigned long long)tp.mem_bytes : 0ull);
}

/* The FMA rate, for what does not depend on timing: it is a rate of GFLOP/s (no core does 5
 * TFLOP/s of fp32, none measures below 10 MFLOP/s), and a team larger than the machine is
 * refused, not run. */
static void
check_fma_rate(void)
{
    double g = -1.0;
    double g2 = -1.0;
    mt_status_t st = mt_cpu_fma_gflops_n(1, 0.01, &g);
    mt_status_t st2;

    tap_ok(st == MT_OK && g > 0.01 && g < 5000.0, "fma rate of one core: %s, %g GFLOP/s",
           mt_status_str(st), g);
    mt_log_set_quiet(true);
    st2 = mt_cpu_fma_gflops_n(100000, 0.01, &g2);
    mt_log_set_quiet(false);
    tap_ok(st2 == MT_ERR_INVAL && g2 == -1.0, "fma rate of 100,000 threads: %s (want %s)",
           mt_status_str(st2), mt_status_str(MT_ERR_INVAL));
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
    /* no core level: one set per PU */
    check("pack:2 pu:3", 6, 0, -1, 0);
    /* 16 nodes, MT_CPU_MAX_NODES: every one counted */
    check("pack:16 [numa] core:1 pu:1", 16, 16, 15, 1);
    unsetenv("HWLOC_SYNTHETIC");
    check_too_many_nodes();
    check_unbound_team();
    check_l3_total();
    check_team_sizes();
    check_team_nodes();
    check_binding_restricts();
    check_summary();
    check_median_p90();
    check_read_or();
    check_stream();
    check_ceiling_default();
    check_fma_rate();
    return tap_done();
}
