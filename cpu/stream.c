/* SPDX-License-Identifier: MIT */
/*
 * stream.c - DRAM read/triad bandwidth per NUMA node, FMA and AMX rates (cpu/stream.h).
 *
 * Every measurement runs inside ONE OpenMP parallel region: each thread pins itself to its core
 * at the top, first-touches its own slice, and then all timed runs happen between barriers. With
 * one region there is no question whether the runtime kept the same OS thread on the same core
 * from one region to the next. Thread 0 reads the clock between two barriers, so a time covers
 * the slowest thread: bandwidth is what all cores achieve together.
 */
#include <config.h>

#include "cpu/stream.h"
#include "runtime/base/clock.h"

#include <cpuid.h>
#include <errno.h>
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <hwloc.h>
#include <omp.h>

#define ARCH_REQ_XCOMP_PERM 0x1023 /* Linux arch_prctl: ask for the AMX tile state */
#define XFEATURE_XTILEDATA 18

/* ---- ISA detection ------------------------------------------------------------------------- */

static uint64_t
read_xcr0(void)
{
    uint32_t lo;
    uint32_t hi;

    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

void
mt_cpu_isa_detect(struct mt_cpu_isa *isa_out)
{
    unsigned a;
    unsigned b;
    unsigned c;
    unsigned d;
    unsigned max_leaf;
    bool osxsave;
    bool os_avx = false;
    bool os_avx512 = false;
    bool os_amx = false;
    struct mt_cpu_isa isa;

    memset(&isa, 0, sizeof(isa));
    max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 7 || !__get_cpuid(1, &a, &b, &c, &d)) {
        *isa_out = isa;
        return;
    }
    osxsave = (c >> 27) & 1;
    if (osxsave) {
        uint64_t xcr0 = read_xcr0();

        os_avx = (xcr0 & 0x6) == 0x6;                   /* SSE + AVX state */
        os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;    /* opmask, ZMM_Hi256, Hi16_ZMM */
        os_amx = (xcr0 & (3ull << 17)) == (3ull << 17); /* XTILECFG, XTILEDATA */
    }
    isa.fma = os_avx && ((c >> 12) & 1);
    __cpuid_count(7, 0, a, b, c, d);
    isa.avx2 = os_avx && ((b >> 5) & 1);
    isa.avx512f = os_avx512 && ((b >> 16) & 1);
    isa.avx512bw = os_avx512 && ((b >> 30) & 1);
    isa.avx512_vnni = os_avx512 && ((c >> 11) & 1);
    isa.avx512_fp16 = os_avx512 && ((d >> 23) & 1);
    isa.amx_bf16 = os_amx && ((d >> 22) & 1);
    isa.amx_tile = os_amx && ((d >> 24) & 1);
    isa.amx_int8 = os_amx && ((d >> 25) & 1);
    __cpuid_count(7, 1, a, b, c, d);
    isa.avx512_bf16 = os_avx512 && ((a >> 5) & 1);
    isa.amx_fp16 = os_amx && ((a >> 21) & 1);
    *isa_out = isa;
}

static void
cpu_brand(char *out, size_t cap)
{
    unsigned regs[12];
    char *s;

    snprintf(out, cap, "unknown CPU");
    if (__get_cpuid_max(0x80000000, NULL) < 0x80000004) {
        return;
    }
    for (unsigned i = 0; i < 3; i++) {
        __get_cpuid(0x80000002 + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2],
                    &regs[4 * i + 3]);
    }
    s = (char *)regs;
    s[47] = '\0';
    while (*s == ' ') {
        s++;
    }
    snprintf(out, cap, "%s", s);
}

/* ---- topology and pinning ----------------------------------------------------------------- */

struct team {
    hwloc_topology_t topo; /* owned */
    int n;                 /* threads = cores used */
    hwloc_cpuset_t *sets;  /* (n) one PU of each core, owned */
    bool bound;            /* every thread pinned so far */
};

static mt_status_t
topo_load(hwloc_topology_t *topo_out)
{
    hwloc_topology_t topo;

    if (hwloc_topology_init(&topo) != 0) {
        return mt_fail(MT_ERR_UNSUPPORTED, errno, "hwloc cannot initialize a topology");
    }
    if (hwloc_topology_load(topo) != 0) {
        hwloc_topology_destroy(topo);
        return mt_fail(MT_ERR_UNSUPPORTED, errno, "hwloc cannot load this machine's topology");
    }
    *topo_out = topo;
    return MT_OK;
}

/* NUMA nodes that have cores, in OS order (memory-only nodes such as CXL are left out). */
static int
nodes_with_cores(hwloc_topology_t topo, hwloc_obj_t *nodes, int cap)
{
    int n = 0;
    int total = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);

    for (int i = 0; i < total && n < cap; i++) {
        hwloc_obj_t node = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, i);

        if (node->cpuset != NULL && !hwloc_bitmap_iszero(node->cpuset)) {
            nodes[n++] = node;
        }
    }
    return n;
}

static void
team_fini(struct team *t)
{
    for (int i = 0; i < t->n; i++) {
        hwloc_bitmap_free(t->sets[i]);
    }
    free(t->sets);
    hwloc_topology_destroy(t->topo);
}

/* One thread per physical core of node index `node` (< 0: every core). */
static mt_status_t
team_init(struct team *t, int node)
{
    hwloc_obj_t nodes[MT_CPU_MAX_NODES];
    hwloc_const_cpuset_t within;
    int n_nodes;
    int n_cores;
    mt_status_t st;

    memset(t, 0, sizeof(*t));
    st = topo_load(&t->topo);
    if (st != MT_OK) {
        return st;
    }
    n_nodes = nodes_with_cores(t->topo, nodes, MT_CPU_MAX_NODES);
    if (node >= n_nodes) {
        hwloc_topology_destroy(t->topo);
        return mt_fail(MT_ERR_INVAL, 0, "NUMA node index %d out of range (this machine has %d)",
                       node, n_nodes);
    }
    within = node < 0 || n_nodes == 0 ? hwloc_topology_get_topology_cpuset(t->topo)
                                      : nodes[node]->cpuset;
    n_cores = hwloc_get_nbobjs_inside_cpuset_by_type(t->topo, within, HWLOC_OBJ_CORE);
    if (n_cores <= 0) {
        n_cores = hwloc_get_nbobjs_inside_cpuset_by_type(t->topo, within, HWLOC_OBJ_PU);
    }
    t->sets = calloc((size_t)MT_MAX(n_cores, 1), sizeof(*t->sets));
    if (t->sets == NULL) {
        hwloc_topology_destroy(t->topo);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %d cpusets", n_cores);
    }
    for (int i = 0; i < n_cores; i++) {
        hwloc_obj_t core = hwloc_get_obj_inside_cpuset_by_type(t->topo, within, HWLOC_OBJ_CORE, i);

        if (core == NULL) {
            core = hwloc_get_obj_inside_cpuset_by_type(t->topo, within, HWLOC_OBJ_PU, i);
        }
        t->sets[i] = hwloc_bitmap_dup(core->cpuset);
        if (t->sets[i] == NULL) {
            t->n = i;
            team_fini(t);
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a cpuset");
        }
        hwloc_bitmap_singlify(t->sets[i]); /* one PU: its hyperthread sibling stays idle */
        t->n = i + 1;
    }
    t->bound = true;
    return MT_OK;
}

/* Called by thread i of the team at the top of the parallel region. */
static void
team_bind(struct team *t, int i)
{
    if (hwloc_set_cpubind(t->topo, t->sets[i], HWLOC_CPUBIND_THREAD) != 0) {
        int err = errno;

#pragma omp critical(mt_cpu_bind_warn)
        {
            if (t->bound) {
                mt_log_warn("cannot bind thread %d to its core: %s; continuing unbound", i,
                            strerror(err));
            }
            t->bound = false;
        }
    }
}

mt_status_t
mt_cpu_topo_query(struct mt_cpu_topo *topo_out)
{
    hwloc_topology_t topo;
    hwloc_obj_t nodes[MT_CPU_MAX_NODES];
    struct mt_cpu_topo tp;
    mt_status_t st;
    int n_caches;

    st = topo_load(&topo);
    if (st != MT_OK) {
        return st;
    }
    memset(&tp, 0, sizeof(tp));
    cpu_brand(tp.model, sizeof(tp.model));
    tp.cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    tp.threads = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    /* The kernel's MemTotal, not hwloc's sum over nodes: in VMs whose memory is plugged as it
     * is used, the per-node counts start far below what the machine has. */
    tp.mem_bytes = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGE_SIZE);
    n_caches = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_L3CACHE);
    for (int i = 0; i < n_caches; i++) {
        hwloc_obj_t l3 = hwloc_get_obj_by_type(topo, HWLOC_OBJ_L3CACHE, i);

        tp.l3_bytes = MT_MAX(tp.l3_bytes, l3->attr->cache.size);
    }
    tp.n_nodes = nodes_with_cores(topo, nodes, MT_CPU_MAX_NODES);
    for (int i = 0; i < tp.n_nodes; i++) {
        tp.node_id[i] = (int)nodes[i]->os_index;
        tp.node_cores[i] =
            hwloc_get_nbobjs_inside_cpuset_by_type(topo, nodes[i]->cpuset, HWLOC_OBJ_CORE);
        tp.node_mem[i] = nodes[i]->attr->numanode.local_memory;
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

/* ---- DRAM bandwidth ----------------------------------------------------------------------- */

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Median and p90 of n times (sorts them). */
static void
median_p90(double *t, int n, double *median_out, double *p90_out)
{
    qsort(t, (size_t)n, sizeof(*t), cmp_double);
    *median_out = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    *p90_out = t[MT_MIN(n - 1, (int)(0.9 * n + 0.5))];
}

/* Four independent 4-wide accumulators: one chain of adds would cap a core at one vector add
 * per add latency, well below what a core can pull from DRAM. b + lo must be 8-byte aligned. */
typedef double mt_v4d __attribute__((vector_size(32), aligned(8)));

static double
read_slice(const double *b, size_t lo, size_t hi)
{
    mt_v4d acc0 = {0, 0, 0, 0};
    mt_v4d acc1 = acc0;
    mt_v4d acc2 = acc0;
    mt_v4d acc3 = acc0;
    mt_v4d sum;
    size_t i = lo;
    double s = 0.0;

    for (; i + 16 <= hi; i += 16) {
        const mt_v4d *p = (const mt_v4d *)(b + i);

        acc0 += p[0];
        acc1 += p[1];
        acc2 += p[2];
        acc3 += p[3];
    }
    sum = (acc0 + acc1) + (acc2 + acc3);
    s = sum[0] + sum[1] + sum[2] + sum[3];
    for (; i < hi; i++) {
        s += b[i];
    }
    return s;
}

static void
triad_slice(double *a, const double *b, const double *c, double scalar, size_t lo, size_t hi)
{
#pragma omp simd
    for (size_t i = lo; i < hi; i++) {
        a[i] = b[i] + scalar * c[i];
    }
}

mt_status_t
mt_cpu_stream_run(int node, size_t array_bytes, int reps, struct mt_cpu_stream_result *res_out)
{
    struct mt_cpu_stream_result res;
    struct team team;
    double *a = NULL;
    double *b = NULL;
    double *c = NULL;
    double *t_read = NULL;
    double *t_triad = NULL;
    double sink = 0.0;
    size_t n;
    mt_status_t st;

    if (reps < 3 || reps > 1000) {
        return mt_fail(MT_ERR_INVAL, 0, "stream repetitions %d out of range 3..1000", reps);
    }
    {
        struct mt_cpu_topo tp;

        st = mt_cpu_topo_query(&tp);
        if (st != MT_OK) {
            return st;
        }
        if (array_bytes == 0) {
            array_bytes = MT_MIN(MT_MAX(4 * tp.l3_bytes, (size_t)256 << 20), (size_t)2 << 30);
        }
        /* Overcommit lets each array allocate; touching them all would wake the OOM killer. */
        if (tp.mem_bytes > 0 && array_bytes > tp.mem_bytes / 4) {
            return mt_fail(MT_ERR_INVAL, 0,
                           "3 stream arrays of %zu bytes would take more than 3/4 of the %llu "
                           "bytes of DRAM",
                           array_bytes, (unsigned long long)tp.mem_bytes);
        }
    }
    st = team_init(&team, node);
    if (st != MT_OK) {
        return st;
    }
    n = array_bytes / sizeof(double);
    if (n < (size_t)team.n * 64) {
        st = mt_fail(MT_ERR_INVAL, 0, "stream arrays of %zu bytes are too small for %d threads",
                     array_bytes, team.n);
        goto out_team;
    }
    a = aligned_alloc(4096, MT_CEIL_DIV(n * sizeof(double), 4096) * 4096);
    b = aligned_alloc(4096, MT_CEIL_DIV(n * sizeof(double), 4096) * 4096);
    c = aligned_alloc(4096, MT_CEIL_DIV(n * sizeof(double), 4096) * 4096);
    t_read = calloc((size_t)reps, sizeof(double));
    t_triad = calloc((size_t)reps, sizeof(double));
    if (a == NULL || b == NULL || c == NULL || t_read == NULL || t_triad == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate 3 stream arrays of %zu bytes", array_bytes);
        goto out_free;
    }

#pragma omp parallel num_threads(team.n) reduction(+ : sink)
    {
        int t = omp_get_thread_num();
        int nt = omp_get_num_threads();
        size_t lo = n * (size_t)t / (size_t)nt;
        size_t hi = n * (size_t)(t + 1) / (size_t)nt;
        double t0 = 0.0;

        team_bind(&team, t);
        /* First touch by the pinned reader puts each page on that reader's node. */
        for (size_t i = lo; i < hi; i++) {
            a[i] = 0.0;
            b[i] = 1.0;
            c[i] = 2.0;
        }
        for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
#pragma omp barrier
            if (t == 0) {
                t0 = mt_clock_now();
            }
            sink += read_slice(b, lo, hi);
#pragma omp barrier
            if (t == 0 && r >= 0) {
                t_read[r] = mt_clock_now() - t0;
            }
        }
        for (int r = -1; r < reps; r++) {
#pragma omp barrier
            if (t == 0) {
                t0 = mt_clock_now();
            }
            triad_slice(a, b, c, 3.0, lo, hi);
#pragma omp barrier
            if (t == 0 && r >= 0) {
                t_triad[r] = mt_clock_now() - t0;
            }
        }
        sink += a[lo];
    }
    if (sink != (double)n * (reps + 1) + 7.0 * team.n) {
        /* Every b[i] is 1 and every a[lo] is 7: a wrong sum means a broken kernel. */
        st = mt_fail(MT_ERR_INTERNAL, 0, "stream check failed: sum %.1f", sink);
        goto out_free;
    }
    memset(&res, 0, sizeof(res));
    res.threads = team.n;
    res.array_bytes = n * sizeof(double);
    res.bound = team.bound;
    median_p90(t_read, reps, &res.read_median_s, &res.read_p90_s);
    median_p90(t_triad, reps, &res.triad_median_s, &res.triad_p90_s);
    res.read_gbps = (double)res.array_bytes / res.read_median_s * 1e-9;
    res.triad_gbps = 3.0 * (double)res.array_bytes / res.triad_median_s * 1e-9;
    *res_out = res;
    st = MT_OK;

out_free:
    free(t_triad);
    free(t_read);
    free(c);
    free(b);
    free(a);
out_team:
    team_fini(&team);
    return st;
}

/* ---- compute rates ------------------------------------------------------------------------ */

/* Each FMA loop keeps enough independent accumulators to cover the FMA latency on 2 ports. */
#define FMA_ACC 16

__attribute__((target("avx512f"))) static float
fma_loop_avx512(long iters)
{
    __m512 acc[FMA_ACC];
    __m512 m = _mm512_set1_ps(0.9999999f);
    __m512 add = _mm512_set1_ps(1e-7f);
    __m512 sum = _mm512_setzero_ps();

    for (int k = 0; k < FMA_ACC; k++) {
        acc[k] = _mm512_set1_ps((float)k);
    }
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
        for (int k = 0; k < FMA_ACC; k++) {
            acc[k] = _mm512_fmadd_ps(acc[k], m, add);
        }
    }
    for (int k = 0; k < FMA_ACC; k++) {
        sum = _mm512_add_ps(sum, acc[k]);
    }
    return _mm512_reduce_add_ps(sum);
}

#define FMA_ACC_AVX2 12

__attribute__((target("avx2,fma"))) static float
fma_loop_avx2(long iters)
{
    __m256 acc[FMA_ACC_AVX2];
    __m256 m = _mm256_set1_ps(0.9999999f);
    __m256 add = _mm256_set1_ps(1e-7f);
    float out[8];
    float s = 0.0f;

    for (int k = 0; k < FMA_ACC_AVX2; k++) {
        acc[k] = _mm256_set1_ps((float)k);
    }
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int k = 0; k < FMA_ACC_AVX2; k++) {
            acc[k] = _mm256_fmadd_ps(acc[k], m, add);
        }
    }
    for (int k = 1; k < FMA_ACC_AVX2; k++) {
        acc[0] = _mm256_add_ps(acc[0], acc[k]);
    }
    _mm256_storeu_ps(out, acc[0]);
    for (int i = 0; i < 8; i++) {
        s += out[i];
    }
    return s;
}

static float
fma_loop_scalar(long iters)
{
    float acc[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    float s = 0.0f;

    for (long it = 0; it < iters; it++) {
        for (int k = 0; k < 8; k++) {
            acc[k] = acc[k] * 0.9999999f + 1e-7f;
        }
    }
    for (int k = 0; k < 8; k++) {
        s += acc[k];
    }
    return s;
}

/* The widest FMA loop this CPU runs, and its flops per iteration. */
static float (*fma_pick(double *flops_per_iter_out))(long)
{
    struct mt_cpu_isa isa;

    mt_cpu_isa_detect(&isa);
    if (isa.avx512f) {
        *flops_per_iter_out = FMA_ACC * 16 * 2;
        return fma_loop_avx512;
    }
    if (isa.avx2 && isa.fma) {
        *flops_per_iter_out = FMA_ACC_AVX2 * 8 * 2;
        return fma_loop_avx2;
    }
    *flops_per_iter_out = 8 * 2;
    return fma_loop_scalar;
}

/*
 * Run loop(iters) on every core at once (pinned) for about `seconds`; the rate counts
 * flops_per_iter per iteration per thread. Calibrated on one thread first.
 */
static mt_status_t
rate_all_cores(float (*loop)(long), double flops_per_iter, double seconds, double *gflops_out)
{
    struct team team;
    long iters = 1 << 16;
    double t0;
    double el;
    volatile float sink = 0.0f;
    mt_status_t st;

    st = team_init(&team, -1);
    if (st != MT_OK) {
        return st;
    }
    for (;;) { /* calibrate: grow until one run takes 20 ms */
        t0 = mt_clock_now();
        sink += loop(iters);
        el = mt_clock_now() - t0;
        if (el > 0.02 || iters > (1L << 40)) {
            break;
        }
        iters *= 4;
    }
    iters = (long)((double)iters * seconds / el) + 1;
#pragma omp parallel num_threads(team.n)
    {
        int t = omp_get_thread_num();
        float v;

        team_bind(&team, t);
        v = loop(iters / 16 + 1); /* warm-up: clocks settle at their vector frequency */
#pragma omp barrier
#pragma omp master
        t0 = mt_clock_now();
        v += loop(iters);
#pragma omp barrier
#pragma omp master
        el = mt_clock_now() - t0;
#pragma omp atomic
        sink += v;
    }
    *gflops_out = flops_per_iter * (double)iters * team.n / el * 1e-9;
    team_fini(&team);
    (void)sink;
    return MT_OK;
}

mt_status_t
mt_cpu_fma_gflops(double seconds, double *gflops_out)
{
    double flops_per_iter;
    float (*loop)(long) = fma_pick(&flops_per_iter);

    return rate_all_cores(loop, flops_per_iter, seconds, gflops_out);
}

/* The AMX palette-1 configuration: 8 tiles of 16 rows x 64 bytes. */
struct amx_tilecfg {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

/* C tiles 0-3 (16x16 fp32) += A tiles 4-5 (16x32 bf16) * B tiles 6-7: 4 x 16384 flops/iter. */
__attribute__((target("amx-tile,amx-bf16"))) static float
amx_loop(long iters)
{
    static const uint16_t zeros[512] __attribute__((aligned(64)));
    struct amx_tilecfg cfg;
    float out[256] __attribute__((aligned(64)));

    memset(&cfg, 0, sizeof(cfg));
    cfg.palette_id = 1;
    for (int i = 0; i < 8; i++) {
        cfg.colsb[i] = 64;
        cfg.rows[i] = 16;
    }
    _tile_loadconfig(&cfg);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, zeros, 64);
    _tile_loadd(5, zeros, 64);
    _tile_loadd(6, zeros, 64);
    _tile_loadd(7, zeros, 64);
    for (long it = 0; it < iters; it++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, out, 64);
    _tile_release();
    return out[0];
}

mt_status_t
mt_cpu_amx_bf16_gflops(double seconds, double *gflops_out)
{
    struct mt_cpu_isa isa;

    mt_cpu_isa_detect(&isa);
    if (!isa.amx_tile || !isa.amx_bf16) {
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "this CPU (or its OS) has no AMX-BF16");
    }
    /* The tile state is off until the process asks (Linux 5.16+); the grant is process-wide. */
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
        return mt_fail(MT_ERR_UNSUPPORTED, errno, "the kernel refuses the AMX tile state");
    }
    return rate_all_cores(amx_loop, 4.0 * 16 * 16 * 32 * 2, seconds, gflops_out);
}
