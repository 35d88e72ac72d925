/* SPDX-License-Identifier: MIT */
/*
 * stream.c - DRAM read/triad bandwidth per NUMA node, and the read ceiling (cpu/stream.h).
 *
 * Every measurement is one job on a pinned team (cpu/team.h): each thread first-touches its own
 * slice, and all timed runs happen between team barriers. Thread 0 reads the clock between two
 * barriers, so a time covers the slowest thread: bandwidth is what all cores achieve together.
 */
#include <config.h>

#include "cpu/stream.h"

#include "cpu/team.h"
#include "runtime/base/clock.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x > y) - (x < y);
}

void
mt_cpu_median_p90(double *t, int n, double *median_out, double *p90_out)
{
    qsort(t, (size_t)n, sizeof(*t), cmp_double);
    *median_out = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    *p90_out = t[MT_MIN(n - 1, (int)(0.9 * n + 0.5))];
}

/* ---- STREAM-like: plain loops --------------------------------------------------------------- */

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

/*
 * b[i] = i mod 13, so the read check can tell which elements a kernel summed: 13 is coprime to
 * read_slice's step of 16, so no two of its lanes see the same values on every pass (with all
 * b[i] equal, a kernel reading one vector twice and another not at all summed the same).
 */
#define STREAM_B_PERIOD 13

static double
stream_b_value(size_t i)
{
    return (double)(i % STREAM_B_PERIOD);
}

/* The sum of b[0..n): whole periods of 0 + 1 + ... + 12, then the partial one. Exact in double
 * (below 2^53 for any array that fits in memory). */
static double
stream_b_sum(size_t n)
{
    size_t r = n % STREAM_B_PERIOD;

    return (double)(n / STREAM_B_PERIOD) * (STREAM_B_PERIOD * (STREAM_B_PERIOD - 1) / 2) +
           (double)(r > 0 ? r * (r - 1) / 2 : 0);
}

struct stream_job {
    struct mt_cpu_team *team;
    double *a;
    double *b;
    double *c;
    size_t n;
    int reps;
    double *t_read;                     /* (reps) */
    double *t_triad;                    /* (reps) */
    double sink[MT_CPU_MAX_NODES * 64]; /* per thread, padded; summed after */
};

static void
stream_job_run(void *arg, int t, int nt)
{
    struct stream_job *j = arg;
    size_t lo = j->n * (size_t)t / (size_t)nt;
    size_t hi = j->n * (size_t)(t + 1) / (size_t)nt;
    double t0 = 0.0;
    double sink = 0.0;

    /* First touch by the pinned reader puts each page on that reader's node. */
    for (size_t i = lo; i < hi; i++) {
        j->a[i] = 0.0;
        j->b[i] = stream_b_value(i);
        j->c[i] = 2.0;
    }
    for (int r = -1; r < j->reps; r++) { /* r = -1: warm-up */
        mt_cpu_team_barrier(j->team);
        if (t == 0) {
            t0 = mt_clock_now();
        }
        sink += read_slice(j->b, lo, hi);
        mt_cpu_team_barrier(j->team);
        if (t == 0 && r >= 0) {
            j->t_read[r] = mt_clock_now() - t0;
        }
    }
    for (int r = -1; r < j->reps; r++) {
        mt_cpu_team_barrier(j->team);
        if (t == 0) {
            t0 = mt_clock_now();
        }
        triad_slice(j->a, j->b, j->c, 3.0, lo, hi);
        mt_cpu_team_barrier(j->team);
        if (t == 0 && r >= 0) {
            j->t_triad[r] = mt_clock_now() - t0;
        }
    }
    j->sink[t] = sink + j->a[lo];
}

mt_status_t
mt_cpu_stream_run(int node, size_t array_bytes, int reps, struct mt_cpu_stream_result *res_out)
{
    struct mt_cpu_stream_result res;
    struct mt_cpu_team *team;
    struct stream_job *j;
    double sink = 0.0;
    double expect;
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
    st = mt_cpu_team_create(node, 0, &team);
    if (st != MT_OK) {
        return st;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a stream job");
        goto out_team;
    }
    j->team = team;
    j->reps = reps;
    j->n = array_bytes / sizeof(double);
    if (j->n < (size_t)mt_cpu_team_size(team) * 64) {
        st = mt_fail(MT_ERR_INVAL, 0,
                     "stream arrays of %zu bytes are too small for %d threads: each array needs "
                     "at least %zu bytes (512 a thread)",
                     array_bytes, mt_cpu_team_size(team), (size_t)mt_cpu_team_size(team) * 512);
        goto out_free;
    }
    j->a = aligned_alloc(4096, MT_CEIL_DIV(j->n * sizeof(double), 4096) * 4096);
    j->b = aligned_alloc(4096, MT_CEIL_DIV(j->n * sizeof(double), 4096) * 4096);
    j->c = aligned_alloc(4096, MT_CEIL_DIV(j->n * sizeof(double), 4096) * 4096);
    j->t_read = calloc((size_t)reps, sizeof(double));
    j->t_triad = calloc((size_t)reps, sizeof(double));
    if (j->a == NULL || j->b == NULL || j->c == NULL || j->t_read == NULL || j->t_triad == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate 3 stream arrays of %zu bytes", array_bytes);
        goto out_free;
    }
    mt_cpu_team_run(team, 0, stream_job_run, j);
    /* The reads cover b once a pass, and each thread adds its a[lo] = b[lo] + 3 * 2: every
     * partial sum is a whole number, so the total is exact whatever the order of the adds. */
    expect = stream_b_sum(j->n) * (reps + 1);
    for (int t = 0; t < mt_cpu_team_size(team); t++) {
        size_t lo = j->n * (size_t)t / (size_t)mt_cpu_team_size(team);

        sink += j->sink[t];
        expect += stream_b_value(lo) + 6.0;
    }
    if (sink != expect) {
        st = mt_fail(MT_ERR_INTERNAL, 0,
                     "stream check failed: the kernels summed %.1f, want %.1f (a broken kernel)",
                     sink, expect);
        goto out_free;
    }
    memset(&res, 0, sizeof(res));
    res.threads = mt_cpu_team_size(team);
    res.array_bytes = j->n * sizeof(double);
    res.bound = mt_cpu_team_bound(team);
    mt_cpu_median_p90(j->t_read, reps, &res.read_median_s, &res.read_p90_s);
    mt_cpu_median_p90(j->t_triad, reps, &res.triad_median_s, &res.triad_p90_s);
    res.read_gbps = (double)res.array_bytes / res.read_median_s * 1e-9;
    res.triad_gbps = 3.0 * (double)res.array_bytes / res.triad_median_s * 1e-9;
    *res_out = res;
    st = MT_OK;

out_free:
    free(j->t_triad);
    free(j->t_read);
    free(j->c);
    free(j->b);
    free(j->a);
    free(j);
out_team:
    mt_cpu_team_destroy(team);
    return st;
}

/* ---- the read ceiling: vector loads, several streams per core ------------------------------ */

/*
 * OR of every 64-byte line of S equal sub-slices of [p, p + len), read side by side: S
 * independent sequential streams keep more hardware prefetchers and line-fill buffers busy than
 * one. OR (latency 1) so no dependency chain limits the loads. len is a multiple of 128 * S.
 */
#define CEIL_READ(NAME, TARGET, VEC, LOAD, OR, ZERO, FOLD)                                         \
    TARGET static uint64_t NAME(const uint8_t *p, size_t len, int S, int pf)                       \
    {                                                                                              \
        size_t per = len / (size_t)S;                                                              \
        VEC acc0 = ZERO;                                                                           \
        VEC acc1 = ZERO;                                                                           \
        for (size_t off = 0; off < per; off += 128) {                                              \
            for (int s = 0; s < S; s++) {                                                          \
                const uint8_t *q = p + (size_t)s * per + off;                                      \
                if (pf > 0) {                                                                      \
                    _mm_prefetch((const char *)q + pf, _MM_HINT_T0);                               \
                    _mm_prefetch((const char *)q + pf + 64, _MM_HINT_T0);                          \
                }                                                                                  \
                acc0 = OR(acc0, LOAD(q));                                                          \
                acc1 = OR(acc1, LOAD(q + 64));                                                     \
                if (sizeof(VEC) == 32) {                                                           \
                    acc0 = OR(acc0, LOAD(q + 32));                                                 \
                    acc1 = OR(acc1, LOAD(q + 96));                                                 \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        return FOLD(OR(acc0, acc1));                                                               \
    }

#define LOAD512(q) _mm512_load_si512((const void *)(q))
#define OR512(a, b) _mm512_or_si512(a, b)
#define FOLD512(v) ((uint64_t)_mm512_reduce_or_epi64(v))
CEIL_READ(ceil_read_avx512, __attribute__((target("avx512f"))), __m512i, LOAD512, OR512,
          _mm512_setzero_si512(), FOLD512)

#define LOAD256(q) _mm256_load_si256((const __m256i *)(q))
#define OR256(a, b) _mm256_or_si256(a, b)
__attribute__((target("avx2"))) static uint64_t
fold256(__m256i v)
{
    return (uint64_t)(_mm256_extract_epi64(v, 0) | _mm256_extract_epi64(v, 1) |
                      _mm256_extract_epi64(v, 2) | _mm256_extract_epi64(v, 3));
}
CEIL_READ(ceil_read_avx2, __attribute__((target("avx2"))), __m256i, LOAD256, OR256,
          _mm256_setzero_si256(), fold256)

typedef uint64_t mt_v8u __attribute__((vector_size(64)));
#define LOADG(q) (*(const mt_v8u *)(q))
#define ORG(a, b) ((a) | (b))
static uint64_t
foldg(mt_v8u v)
{
    return v[0] | v[1] | v[2] | v[3] | v[4] | v[5] | v[6] | v[7];
}
CEIL_READ(ceil_read_generic, , mt_v8u, LOADG, ORG, ((mt_v8u){0}), foldg)

/*
 * The variants, best kept: 1-8 streams per thread on the hardware prefetchers alone, and 2-8
 * with software prefetch 2 KiB ahead on each stream (which the expert kernels also use: on the
 * GPU test machine one variant alone read 102-153 GB/s in different runs, so the ceiling takes
 * the best of several ways to read).
 */
#define CEIL_VARIANTS 7
static const int ceil_streams[CEIL_VARIANTS] = {1, 2, 4, 8, 2, 4, 8};
static const int ceil_prefetch[CEIL_VARIANTS] = {0, 0, 0, 0, 2048, 2048, 2048};

typedef uint64_t (*ceil_read_fn)(const uint8_t *, size_t, int, int);

static ceil_read_fn
ceil_read_best(const char **isa_out)
{
    struct mt_cpu_isa isa;

    mt_cpu_isa_detect(&isa);
    if (isa.avx512f) {
        *isa_out = "avx512";
        return ceil_read_avx512;
    }
    if (isa.avx2) {
        *isa_out = "avx2";
        return ceil_read_avx2;
    }
    *isa_out = "scalar";
    return ceil_read_generic;
}

uint64_t
mt_cpu_read_or(const void *p, size_t len, int streams, int prefetch)
{
    static ceil_read_fn fn; /* cpuid once: it may trap to the hypervisor */
    const char *isa;
    ceil_read_fn f = __atomic_load_n(&fn, __ATOMIC_RELAXED);

    if (f == NULL) {
        f = ceil_read_best(&isa);
        __atomic_store_n(&fn, f, __ATOMIC_RELAXED);
    }
    return f(p, len, streams, prefetch);
}

struct ceil_job {
    struct mt_cpu_team *team;
    uint8_t *buf;
    size_t bytes;
    size_t chunk; /* bytes per thread, a multiple of 128 * 8 */
    int reps;
    ceil_read_fn read;
    double *t; /* [CEIL_VARIANTS][reps] */
    int bad;   /* a thread read something else than the pattern */
};

static void
ceil_job_run(void *arg, int tid, int n)
{
    struct ceil_job *j = arg;
    uint8_t *p = j->buf + (size_t)tid * j->chunk;
    double t0 = 0.0;

    memset(p, 0x5a, j->chunk); /* first touch: the page lands on this thread's node */
    for (int v = 0; v < CEIL_VARIANTS; v++) {
        for (int r = -1; r < j->reps; r++) {
            uint64_t got;

            mt_cpu_team_barrier(j->team);
            if (tid == 0) {
                t0 = mt_clock_now();
            }
            got = j->read(p, j->chunk, ceil_streams[v], ceil_prefetch[v]);
            mt_cpu_team_barrier(j->team);
            if (tid == 0 && r >= 0) {
                j->t[v * j->reps + r] = mt_clock_now() - t0;
            }
            if (got != 0x5a5a5a5a5a5a5a5aull) {
                __atomic_store_n(&j->bad, 1, __ATOMIC_RELAXED);
            }
        }
    }
    (void)n;
}

size_t
mt_cpu_ceiling_default_bytes(void)
{
    struct mt_cpu_topo tp;
    size_t bytes = (size_t)8 << 30;

    if (mt_cpu_topo_query(&tp) != MT_OK) {
        return (size_t)1 << 30;
    }
    bytes = MT_MAX(bytes, 16 * (size_t)tp.l3_bytes);
    if (tp.mem_bytes > 0) {
        bytes = MT_MIN(bytes, (size_t)(tp.mem_bytes / 4));
    }
    return MT_MAX(bytes / ((size_t)256 << 20), 1) * ((size_t)256 << 20);
}

mt_status_t
mt_cpu_read_ceiling(int node, size_t bytes, int reps, struct mt_cpu_ceiling_result *res_out)
{
    struct mt_cpu_ceiling_result res;
    struct mt_cpu_team *team;
    struct mt_cpu_topo tp;
    struct ceil_job j;
    size_t alloc;
    mt_status_t st;

    if (reps < 3 || reps > 1000) {
        return mt_fail(MT_ERR_INVAL, 0, "ceiling repetitions %d out of range 3..1000", reps);
    }
    st = mt_cpu_topo_query(&tp);
    if (st != MT_OK) {
        return st;
    }
    if (bytes == 0) {
        bytes = mt_cpu_ceiling_default_bytes();
    }
    if (tp.mem_bytes > 0 && bytes > tp.mem_bytes / 2) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "a read-ceiling working set of %zu bytes would take more than half of "
                       "the %llu bytes of DRAM",
                       bytes, (unsigned long long)tp.mem_bytes);
    }
    st = mt_cpu_team_create(node, 0, &team);
    if (st != MT_OK) {
        return st;
    }
    memset(&j, 0, sizeof(j));
    j.team = team;
    j.reps = reps;
    j.chunk = bytes / (size_t)mt_cpu_team_size(team) / 1024 * 1024;
    if (j.chunk < 64 * 1024) {
        st = mt_fail(MT_ERR_INVAL, 0,
                     "a read-ceiling working set of %zu bytes is too small for %d threads: it "
                     "needs at least %zu bytes (64 KiB a thread)",
                     bytes, mt_cpu_team_size(team), (size_t)mt_cpu_team_size(team) * 65536);
        goto out_team;
    }
    j.bytes = j.chunk * (size_t)mt_cpu_team_size(team);
    alloc = MT_CEIL_DIV(j.bytes, (size_t)2 << 20) * ((size_t)2 << 20);
    j.buf = aligned_alloc((size_t)2 << 20, alloc);
    j.t = calloc((size_t)CEIL_VARIANTS * (size_t)reps, sizeof(double));
    if (j.buf == NULL || j.t == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a %zu-byte read-ceiling buffer", j.bytes);
        goto out_free;
    }
    (void)madvise(j.buf, alloc, MADV_HUGEPAGE); /* fewer TLB misses; a hint only */
    memset(&res, 0, sizeof(res));
    j.read = ceil_read_best(&res.isa);
    mt_cpu_team_run(team, 0, ceil_job_run, &j);
    if (j.bad) {
        st = mt_fail(MT_ERR_INTERNAL, 0, "read-ceiling check failed: a thread read a wrong value");
        goto out_free;
    }
    res.threads = mt_cpu_team_size(team);
    res.bytes = j.bytes;
    res.bound = mt_cpu_team_bound(team);
    for (int v = 0; v < CEIL_VARIANTS; v++) {
        double med;
        double p90;

        mt_cpu_median_p90(j.t + v * reps, reps, &med, &p90);
        if (res.median_s == 0.0 || med < res.median_s) {
            res.median_s = med;
            res.p90_s = p90;
            res.streams = ceil_streams[v];
            res.prefetch = ceil_prefetch[v];
        }
    }
    res.gbps = (double)res.bytes / res.median_s * 1e-9;
    *res_out = res;
    st = MT_OK;

out_free:
    free(j.t);
    free(j.buf);
out_team:
    mt_cpu_team_destroy(team);
    return st;
}
