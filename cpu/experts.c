/* SPDX-License-Identifier: MIT */
/*
 * experts.c - the scalar expert kernel, run-time kernel choice, and a MoE layer split across a
 * thread team in two phases (cpu/experts.h).
 */
#include <config.h>

#include "cpu/experts.h"

#include "cpu/experts_impl.h"
#include "cpu/stream.h"
#include "runtime/base/clock.h"
#include "runtime/base/dtype.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Atomic uint64_t mt_cpu_experts_gen;
_Atomic int mt_cpu_experts_ws_fault;
int mt_cpu_experts_prefetch = 8192;
int mt_cpu_experts_prefetch_mode = 0;
int mt_cpu_experts_amx_panel = 64;
int mt_cpu_experts_amx_kc = 512;
int mt_cpu_experts_amx_tiles = 1;
int mt_cpu_experts_amx_pf = 0;
int mt_cpu_experts_amx_order = 0;
int mt_cpu_experts_amx_super = 256;
int mt_cpu_experts_amx_cvt_pf = 1;
int mt_cpu_experts_amx_cadd = 0;
int mt_cpu_experts_amx_small = 64;
int mt_cpu_experts_prefill_min_small = MT_CPU_PREFILL_MIN_SMALL;
int mt_cpu_experts_amx_small_wide = 1;
int mt_cpu_experts_amx_small_wrap = 1;
int mt_cpu_experts_prefill_unit = 128;
int mt_cpu_experts_decode = 0;
int mt_cpu_experts_dynamic = 1;
int mt_cpu_experts_overlap = 1;

/* Workspaces that could not be allocated, and the size of the last one (mt_cpu_ws_alloc). */
static _Atomic uint64_t ws_failures;
static _Atomic size_t ws_failed_bytes;

/*
 * The workspaces live in thread-local variables (one per kernel file), so they must be freed by
 * the thread that holds them, when it exits: a key whose destructor frees them, set (to any
 * non-NULL value) by a thread's first allocation.
 */
static pthread_key_t ws_key;
static pthread_once_t ws_key_once = PTHREAD_ONCE_INIT;
static bool ws_key_made;

static void
ws_thread_exit(void *unused)
{
    (void)unused;
    mt_cpu_dot_ws_free();
    mt_cpu_amx_ws_free();
    mt_cpu_amx_tiles_ws_free();
    mt_cpu_amx_small_ws_free();
}

static void
ws_key_make(void)
{
    ws_key_made = pthread_key_create(&ws_key, ws_thread_exit) == 0;
}

void *
mt_cpu_ws_alloc(size_t bytes)
{
    int fault = atomic_load(&mt_cpu_experts_ws_fault);
    void *p = NULL;

    pthread_once(&ws_key_once, ws_key_make);
    if (ws_key_made && pthread_getspecific(ws_key) == NULL) {
        (void)pthread_setspecific(ws_key, &ws_key); /* failure only leaks, as before */
    }

    while (fault > 0 &&
           !atomic_compare_exchange_weak(&mt_cpu_experts_ws_fault, &fault, fault - 1)) {
    }
    if (fault <= 0) {
        p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    }
    if (p == NULL) {
        atomic_store(&ws_failed_bytes, bytes);
        atomic_fetch_add(&ws_failures, 1);
    }
    return p;
}

bool
mt_cpu_ws_grow(void **p, size_t *cap, size_t bytes)
{
    void *q;

    if (bytes <= *cap) {
        return true;
    }
    q = mt_cpu_ws_alloc(bytes);
    if (q == NULL) {
        return false;
    }
    free(*p);
    *p = q;
    *cap = bytes;
    return true;
}

/*
 * MT_ERR_NOMEM when a kernel went without its workspace since the count was `since`. The count is
 * process-wide: a layer that runs beside a failing one fails too, which is what memory that
 * short calls for anyway.
 */
static mt_status_t
ws_check(uint64_t since, const char *what)
{
    if (atomic_load(&ws_failures) == since) {
        return MT_OK;
    }
    return mt_fail(MT_ERR_NOMEM, 0,
                   "%s: a CPU expert kernel cannot allocate its workspace (%zu bytes); free "
                   "memory, or give the experts less with --cpu-mem",
                   what, atomic_load(&ws_failed_bytes));
}

bool
mt_cpu_experts_decode_usable(int kind)
{
    static int usable = -1; /* bit 0: VBMI, bit 1: BF16 too; cpuid once (a VM traps it) */
    int u = __atomic_load_n(&usable, __ATOMIC_RELAXED);

    if (u < 0) {
        struct mt_cpu_isa isa;

        mt_cpu_isa_detect(&isa);
        u = 0;
        if (isa.avx512f && isa.avx512bw && __builtin_cpu_supports("avx512vbmi")) {
            u = 1 | (isa.avx512_bf16 ? 2 : 0);
        }
        __atomic_store_n(&usable, u, __ATOMIC_RELAXED);
    }
    return kind == 0 || (kind == 1 && (u & 1) != 0) || ((kind == 2 || kind == 3) && (u & 2) != 0);
}

/* ---- scalar: the reference of the SIMD kernels ---------------------------------------------- */

/* Each row dequantized as the fp32 reference does (cpu/ref_linear.c), then dotted per token. */
static void
scalar_rows(const struct mt_cpu_weight *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
            int m, float *y, int64_t ldy)
{
    int64_t cols = w->cols;
    float *row = mt_cpu_ws_alloc((size_t)cols * sizeof(float));

    if (row == NULL) {
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        mt_cpu_weight_row(w, r, row);
        for (int t = 0; t < m; t++) {
            const float *xt = x + t * ldx;
            float s[4] = {0, 0, 0, 0};
            int64_t c = 0;

            for (; c + 4 <= cols; c += 4) {
                for (int u = 0; u < 4; u++) {
                    s[u] += row[c + u] * xt[c + u];
                }
            }
            for (; c < cols; c++) {
                s[0] += row[c] * xt[c];
            }
            y[t * ldy + (r - r0)] = (s[0] + s[1]) + (s[2] + s[3]);
        }
    }
    free(row);
}

const struct mt_cpu_kernels mt_cpu_kernels_scalar = {
    .name = "scalar",
    .rows_fp8 = scalar_rows,
    .rows_bf16 = scalar_rows,
};

static const struct mt_cpu_kernels *
kernels_of(enum mt_cpu_level level)
{
    switch (level) {
    case MT_CPU_LEVEL_AVX2:
        return &mt_cpu_kernels_avx2;
    case MT_CPU_LEVEL_AVX512:
        return &mt_cpu_kernels_avx512;
    case MT_CPU_LEVEL_AMX:
        return &mt_cpu_kernels_amx;
    default:
        return &mt_cpu_kernels_scalar;
    }
}

static bool
rows_simd(const struct mt_cpu_weight *w)
{
    return w->cols % 32 == 0 && (w->dtype == MT_DTYPE_F8_E4M3 || w->dtype == MT_DTYPE_BF16);
}

/* True where rows_run takes family k's prefill kernel for m tokens of w. */
static bool
rows_many(const struct mt_cpu_kernels *k, const struct mt_cpu_weight *w, int m)
{
    if (!rows_simd(w) || k->rows_many == NULL) {
        return false; /* the AMX family only: mt_cpu_amx_small_fits is built for its CPUs */
    }
    return m >= (mt_cpu_amx_small_fits(w) && m <= mt_cpu_experts_amx_small
                     ? mt_cpu_experts_prefill_min_small
                     : MT_CPU_PREFILL_MIN_M);
}

/*
 * Rows [r0, r1) of w for m tokens with family k: the prefill kernel for many tokens where the
 * family has one (whole FP8 128-row blocks, all tokens in one call), else the decode tiles (cut
 * at FP8 128-row scale blocks and in token blocks of 32, so a block of x stays in L2 while the
 * rows' weights stream past); the scalar kernel where dtype or shape fit no SIMD kernel.
 * xp: x packed by k->pack for the prefill kernel, or NULL (the kernel packs its own copy).
 */
static void
rows_run(const struct mt_cpu_kernels *k, const struct mt_cpu_weight *w, int64_t r0, int64_t r1,
         const float *x, const void *xp, int m, float *y, int64_t ldy)
{
    bool simd = rows_simd(w);
    bool many = rows_many(k, w, m);
    mt_cpu_rows_fn fn = scalar_rows;

    if (simd && !many) {
        const struct mt_cpu_kernels *d = k->rows_fp8 != NULL ? k : &mt_cpu_kernels_avx512;

        /* the AVX-512 families' other decode kernels, where asked for and the CPU has them */
        if ((k == &mt_cpu_kernels_avx512 || k == &mt_cpu_kernels_amx) &&
            mt_cpu_experts_decode_usable(mt_cpu_experts_decode)) {
            if (mt_cpu_experts_decode == 1) {
                d = &mt_cpu_kernels_lut;
            } else if (mt_cpu_experts_decode >= 2 && w->cols % 64 == 0) {
                d = &mt_cpu_kernels_dot;
            }
        }

        fn = w->dtype == MT_DTYPE_F8_E4M3 ? d->rows_fp8 : d->rows_bf16;
    }
    for (int64_t a = r0; a < r1;) {
        int64_t b = MT_MIN(r1, (a / MT_CPU_FP8_BLOCK + 1) * MT_CPU_FP8_BLOCK);

        if (many && xp != NULL) {
            k->rows_packed(w, a, b, xp, m, y + (a - r0), ldy);
            a = b;
            continue;
        }
        if (many) {
            k->rows_many(w, a, b, x, w->cols, m, y + (a - r0), ldy);
            a = b;
            continue;
        }
        for (int t = 0; t < m; t += 32) {
            fn(w, a, b, x + (int64_t)t * w->cols, w->cols, MT_MIN(32, m - t),
               y + (int64_t)t * ldy + (a - r0), ldy);
        }
        a = b;
    }
}

/* h = SiLU(g) x u over n floats with family k's vector loop where it has one (h may be g). */
static void
swiglu(const struct mt_cpu_kernels *k, const float *g, const float *u, float *h, int64_t n)
{
    if (k->swiglu != NULL) {
        k->swiglu(g, u, h, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        h[i] = mt_cpu_silu(g[i]) * u[i];
    }
}

/* ---- a layer on the team -------------------------------------------------------------------- */

#define SPREAD_RUNS 64 /* runs mt_cpu_moe_spread keeps (the last ones) */
#define ROW_GRAIN 4
#define UNIT_ROWS 32     /* decode rows per unit of dynamic scheduling: 229-458 KB of FP8 */
#define ROW_COST_FIXED 4 /* a row costs m + 4: its bytes matter even for one token */

struct mt_cpu_moe {
    struct mt_cpu_team *team; /* borrowed */
    enum mt_cpu_level level;
    const struct mt_cpu_kernels *k;
    struct mt_cpu_expert_job *jobs; /* (n) copied */
    int n;
    int cap;
    int64_t *h_off; /* (n) offset of job j's h in h */
    float *h;       /* sum m_j x inter */
    size_t h_cap;
    float *tmp; /* per thread: 2 x 128 x max m */
    size_t tmp_cap;
    uint8_t *xp; /* prefill jobs' inputs packed by k->pack: x, then h (phase 2) */
    size_t xp_cap;
    int64_t *xp_off; /* (n) job j's packed input in xp; -1: not packed */
    size_t xp_off_cap;
    bool packs;        /* some job's input is packed this run */
    int64_t *unit_pre; /* [2][n + 1] units of jobs before j, phase 1 then 2 */
    size_t unit_pre_cap;
    _Atomic int64_t next_unit[2]; /* next unit to hand out, per phase */
    _Atomic int64_t *done1;       /* (n) phase-1 units of job j finished (overlap) */
    size_t done1_cap;
    bool dynamic;     /* mt_cpu_experts_dynamic when the run started */
    bool overlap;     /* phases overlap per job (mt_cpu_experts_overlap) */
    int prefill_unit; /* mt_cpu_experts_prefill_unit when the run started */
    double t_start;   /* mt_clock_now() at the start call */
    double t_done;    /* the last waited run's end (mt_cpu_moe_done_at) */
    uint64_t ws_failures0; /* ws_failures at the start call */
    double *t_thread; /* [2 x team size]: each thread's first and last moment of work */
    double spread[3][SPREAD_RUNS]; /* total, lag, idle of the runs since mt_cpu_moe_spread */
    int spread_n;
    int max_m;
    int64_t hidden;
    int64_t inter;
    int threads;
    bool started;
};

/* Rows of job j (of `rows` each) before cost position pos; jobs before j cover pre[j]. */
static int64_t
row_at(const struct mt_cpu_moe *moe, const int64_t *pre, int j, int64_t rows, int64_t pos)
{
    int64_t c = moe->jobs[j].m + ROW_COST_FIXED;
    int64_t r;

    if (pos <= pre[j]) {
        return 0;
    }
    if (pos >= pre[j] + rows * c) {
        return rows; /* the job's end: all of it, also where rows is not a multiple of the grain */
    }
    r = (pos - pre[j] + c * ROW_GRAIN / 2) / (c * ROW_GRAIN) * ROW_GRAIN;
    return MT_MIN(r, rows);
}

/* Rows of one unit of dynamic scheduling for job j (a divisor of 128). */
static int64_t
unit_rows(const struct mt_cpu_moe *moe, int j)
{
    return moe->xp_off[j] >= 0 || moe->jobs[j].m >= MT_CPU_PREFILL_MIN_M ? moe->prefill_unit
                                                                         : UNIT_ROWS;
}

/* Rows [r0, r1) of job j in phase 1 (gate, up, h) or 2 (down) on thread tid. */
static void
job_rows(struct mt_cpu_moe *moe, int tid, int j, int64_t r0, int64_t r1, int phase)
{
    const struct mt_cpu_expert_job *job = &moe->jobs[j];
    const void *xp = moe->xp_off[j] >= 0 ? moe->xp + moe->xp_off[j] : NULL;
    float *h = moe->h + moe->h_off[j];
    float *g = moe->tmp + (size_t)tid * 2 * 128 * (size_t)moe->max_m;
    float *u = g + 128 * (size_t)moe->max_m;

    if (phase == 2) {
        rows_run(moe->k, job->down, r0, r1, h, xp, job->m, job->y + r0, moe->hidden);
        return;
    }
    /* gate and up for the same rows, 128 rows at a time, then h for those rows */
    for (int64_t a = r0; a < r1;) {
        int64_t b = MT_MIN(r1, (a / 128 + 1) * 128);
        int64_t len = b - a;

        rows_run(moe->k, job->gate, a, b, job->x, xp, job->m, g, len);
        rows_run(moe->k, job->up, a, b, job->x, xp, job->m, u, len);
        for (int t = 0; t < job->m; t++) {
            swiglu(moe->k, g + t * len, u + t * len, h + t * moe->inter + a, len);
        }
        a = b;
    }
}

/* Thread tid's share [pos_lo, pos_hi) of the total cost, visited as (job, row range). */
static void
share_visit(struct mt_cpu_moe *moe, int tid, int nt, int64_t rows, int phase)
{
    int64_t pre[moe->n + 1];

    pre[0] = 0;
    for (int j = 0; j < moe->n; j++) {
        pre[j + 1] = pre[j] + rows * (moe->jobs[j].m + ROW_COST_FIXED);
    }
    int64_t lo = pre[moe->n] * tid / nt;
    int64_t hi = pre[moe->n] * (tid + 1) / nt;

    for (int j = 0; j < moe->n; j++) {
        int64_t r0 = row_at(moe, pre, j, rows, lo);
        int64_t r1 = row_at(moe, pre, j, rows, hi);

        if (r0 < r1) {
            job_rows(moe, tid, j, r0, r1, phase);
        }
    }
}

/*
 * Phase 2 of job j reads all of job j's h: with overlapping phases, wait until every phase-1
 * unit of job j is done. All phase-1 units were handed out before any thread got here, and their
 * threads wait on nothing, so this ends; units go out in job order, so it rarely waits at all
 * (only for the last experts, where the barrier would have waited too). The acquire pairs with
 * the release after each unit: that unit's h rows are visible once its count is.
 */
static void
wait_phase1(struct mt_cpu_moe *moe, int j)
{
    const int64_t *pre = moe->unit_pre;
    int64_t want = pre[j + 1] - pre[j];

    /* a wait of at most one unit: ~0.1 ms in decode, where yielding the core is enough; a
     * prefill unit can take milliseconds, so after a while sleep instead of spinning on a core
     * that the GPU's and the I/O's threads may need */
    for (int spins = 0; atomic_load_explicit(&moe->done1[j], memory_order_acquire) < want;
         spins++) {
        if (spins < 256) {
            sched_yield();
        } else {
            nanosleep(&(struct timespec){.tv_nsec = 20000}, NULL);
        }
    }
}

/*
 * The same work handed out in units (job, UNIT_ROWS rows; 128 for prefill jobs, whose kernel
 * works on 64-row panels) from one counter per phase, in job and row order: a thread that
 * finishes early takes the next unit instead of waiting at the barrier for a slow one (a core
 * of a shared machine, or one whose memory answers later). Adjacent units are adjacent rows, so
 * each unit is still one sequential stretch of weights.
 */
static void
unit_visit(struct mt_cpu_moe *moe, int tid, int64_t rows, int phase)
{
    const int64_t *pre = moe->unit_pre + (size_t)(phase - 1) * (size_t)(moe->n + 1);
    int j = 0;
    int ready = -1; /* jobs <= ready have their phase 1 complete (phase 2, overlap) */

    for (;;) {
        int64_t u = atomic_fetch_add_explicit(&moe->next_unit[phase - 1], 1, memory_order_relaxed);

        if (u >= pre[moe->n]) {
            break;
        }
        while (u >= pre[j + 1]) { /* units come in increasing order to each thread */
            j++;
        }
        int64_t ur = unit_rows(moe, j);
        int64_t r0 = (u - pre[j]) * ur;

        if (phase == 2 && moe->overlap && j > ready) {
            wait_phase1(moe, j);
            ready = j;
        }
        job_rows(moe, tid, j, r0, MT_MIN(rows, r0 + ur), phase);
        if (phase == 1 && moe->overlap) {
            atomic_fetch_add_explicit(&moe->done1[j], 1, memory_order_release);
        }
    }
}

/*
 * Thread tid's share of packing the prefill jobs' inputs (x for phase 1, h for phase 2): the
 * token blocks of all those jobs cut evenly, so a 2048-token input is packed once by the team,
 * not once per thread that computes rows of its expert.
 */
static void
pack_share(struct mt_cpu_moe *moe, int tid, int nt, int phase)
{
    int64_t total = 0;
    int64_t at = 0;

    for (int j = 0; j < moe->n; j++) {
        total += moe->xp_off[j] >= 0 ? MT_CPU_PACK_BLOCKS(moe->jobs[j].m) : 0;
    }
    int64_t lo = total * tid / nt;
    int64_t hi = total * (tid + 1) / nt;

    for (int j = 0; j < moe->n && at < hi; j++) {
        const struct mt_cpu_expert_job *job = &moe->jobs[j];
        int64_t nb = moe->xp_off[j] >= 0 ? MT_CPU_PACK_BLOCKS(job->m) : 0;
        int64_t b0 = MT_MAX(lo, at) - at;
        int64_t b1 = MT_MIN(hi, at + nb) - at;
        int64_t cols = phase == 1 ? moe->hidden : moe->inter;
        const float *x = phase == 1 ? job->x : moe->h + moe->h_off[j];

        if (b0 < b1) {
            moe->k->pack(x, cols, job->m, cols, (int)b0, (int)b1, moe->xp + moe->xp_off[j]);
        }
        at += nb;
    }
}

static void
moe_job_run(void *arg, int tid, int nt)
{
    struct mt_cpu_moe *moe = arg;

    moe->t_thread[2 * tid] = mt_clock_now();
    if (moe->packs) {
        pack_share(moe, tid, nt, 1);
        mt_cpu_team_barrier(moe->team);
    }
    if (moe->dynamic) {
        unit_visit(moe, tid, moe->inter, 1);
    } else {
        share_visit(moe, tid, nt, moe->inter, 1);
    }
    if (!moe->overlap) {
        mt_cpu_team_barrier(moe->team);
    }
    if (moe->packs) {
        pack_share(moe, tid, nt, 2); /* h of every job is complete after the barrier */
        mt_cpu_team_barrier(moe->team);
    }
    if (moe->dynamic) {
        unit_visit(moe, tid, moe->hidden, 2);
    } else {
        share_visit(moe, tid, nt, moe->hidden, 2);
    }
    moe->t_thread[2 * tid + 1] = mt_clock_now();
}

mt_status_t
mt_cpu_moe_create(struct mt_cpu_team *team, enum mt_cpu_level level, struct mt_cpu_moe **moe_out)
{
    struct mt_cpu_moe *moe;

    if (level > mt_cpu_level_max()) {
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "kernel family %s does not run on this CPU",
                       mt_cpu_level_name(level));
    }
    moe = calloc(1, sizeof(*moe));
    if (moe == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a MoE layer runner");
    }
    moe->team = team;
    moe->level = level;
    moe->k = kernels_of(level);
    const char *ev = getenv("MT_CPU_AMX_SMALL"); /* measurements: mt_cpu_experts_amx_small */
    if (ev != NULL) {
        mt_cpu_experts_amx_small = atoi(ev);
    }
    ev = getenv("MT_CPU_AMX_SMALL_WIDE"); /* measurements: mt_cpu_experts_amx_small_wide */
    if (ev != NULL) {
        mt_cpu_experts_amx_small_wide = atoi(ev);
    }
    ev = getenv("MT_CPU_AMX_SMALL_WRAP"); /* measurements: mt_cpu_experts_amx_small_wrap */
    if (ev != NULL) {
        mt_cpu_experts_amx_small_wrap = atoi(ev);
    }
    ev = getenv("MT_CPU_PREFILL_MIN"); /* measurements: mt_cpu_experts_prefill_min_small */
    if (ev != NULL && atoi(ev) >= 1) {
        mt_cpu_experts_prefill_min_small = atoi(ev);
    }
    moe->t_thread = calloc(2 * (size_t)mt_cpu_team_size(team), sizeof(double));
    if (moe->t_thread == NULL) {
        free(moe);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a MoE layer runner");
    }
    *moe_out = moe;
    return MT_OK;
}

void
mt_cpu_moe_destroy(struct mt_cpu_moe *moe)
{
    if (moe == NULL) {
        return;
    }
    if (moe->started) {
        mt_cpu_moe_wait(moe);
    }
    free(moe->unit_pre);
    free(moe->done1);
    free(moe->t_thread);
    free(moe->xp_off);
    free(moe->xp);
    free(moe->tmp);
    free(moe->h);
    free(moe->h_off);
    free(moe->jobs);
    free(moe);
}

/* Grow *p to at least want elements of size esz. */
static bool
grow(void **p, size_t *cap, size_t want, size_t esz)
{
    void *q;

    if (want <= *cap) {
        return true;
    }
    q = realloc(*p, want * esz);
    if (q == NULL) {
        return false;
    }
    *p = q;
    *cap = want;
    return true;
}

/*
 * Check job j (gate and up [inter, hidden], down [hidden, inter], in a dtype the kernels compute:
 * the checkpoint loaders admit only those, but a library caller may pass any): MT_ERR_INVAL
 * naming the job, the weight and what is wrong, so that nothing reaches a kernel that cannot
 * compute it (a worker thread would stop the process on it).
 */
static mt_status_t
job_check(const struct mt_cpu_expert_job *job, int j, int64_t inter, int64_t hidden)
{
    const struct mt_cpu_weight *ws[3] = {job->gate, job->up, job->down};
    static const char *const names[3] = {"gate", "up", "down"};

    if (job->m < 1 || job->x == NULL || job->y == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "expert job %d: %d tokens, input %s, output %s", j,
                       job->m, job->x != NULL ? "given" : "missing",
                       job->y != NULL ? "given" : "missing");
    }
    for (int i = 0; i < 3; i++) {
        const struct mt_cpu_weight *w = ws[i];
        int64_t rows = i < 2 ? inter : hidden;
        int64_t cols = i < 2 ? hidden : inter;
        bool computable = w != NULL && (w->dtype == MT_DTYPE_F8_E4M3 ||
                                        w->dtype == MT_DTYPE_BF16 || w->dtype == MT_DTYPE_F16 ||
                                        w->dtype == MT_DTYPE_F32);

        if (w == NULL || w->data == NULL) {
            return mt_fail(MT_ERR_INVAL, 0, "expert job %d: no %s weight", j, names[i]);
        }
        if (w->rows != rows || w->cols != cols) {
            return mt_fail(MT_ERR_INVAL, 0,
                           "expert job %d: bad %s weight: [%lld, %lld]; it must be [%lld, %lld]",
                           j, names[i], (long long)w->rows, (long long)w->cols, (long long)rows,
                           (long long)cols);
        }
        if (!computable) {
            return mt_fail(MT_ERR_INVAL, 0,
                           "expert job %d: bad %s weight: dtype %s; the CPU computes F8_E4M3, "
                           "BF16, F16 or F32", j, names[i], mt_dtype_name(w->dtype));
        }
        if (w->dtype == MT_DTYPE_F8_E4M3 && w->scale == NULL) {
            return mt_fail(MT_ERR_INVAL, 0, "expert job %d: bad %s weight: F8_E4M3 without its "
                           "block scales", j, names[i]);
        }
    }
    return MT_OK;
}

mt_status_t
mt_cpu_moe_start(struct mt_cpu_moe *moe, const struct mt_cpu_expert_job *jobs, int n, int threads)
{
    size_t cap_jobs = (size_t)moe->cap;
    size_t h_total = 0;
    int nt = threads <= 0 || threads > mt_cpu_team_size(moe->team) ? mt_cpu_team_size(moe->team)
                                                                   : threads;

    MT_ASSERT(!moe->started);
    if (n <= 0) {
        moe->n = 0;
        return MT_OK;
    }
    if (jobs[0].gate == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "expert job 0: no gate weight");
    }
    moe->hidden = jobs[0].gate->cols;
    moe->inter = jobs[0].gate->rows;
    moe->max_m = 1;
    for (int j = 0; j < n; j++) {
        mt_status_t st = job_check(&jobs[j], j, moe->inter, moe->hidden);

        if (st != MT_OK) {
            return st;
        }
        moe->max_m = MT_MAX(moe->max_m, jobs[j].m);
        h_total += (size_t)jobs[j].m * (size_t)moe->inter;
    }
    if (!grow((void **)&moe->jobs, &cap_jobs, (size_t)n, sizeof(*moe->jobs)) ||
        !grow((void **)&moe->h_off, &(size_t){(size_t)moe->cap}, (size_t)n, sizeof(*moe->h_off))) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %d expert jobs", n);
    }
    moe->cap = (int)cap_jobs;
    if (!grow((void **)&moe->h, &moe->h_cap, h_total, sizeof(float)) ||
        !grow((void **)&moe->tmp, &moe->tmp_cap,
              (size_t)mt_cpu_team_size(moe->team) * 2 * 128 * (size_t)moe->max_m, sizeof(float))) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the MoE workspace (%zu floats)", h_total);
    }
    /* prefill jobs whose gate, up and down all take the packed kernel share one packed input */
    size_t xp_total = 0;

    if (!grow((void **)&moe->xp_off, &moe->xp_off_cap, (size_t)n, sizeof(*moe->xp_off))) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %d expert jobs", n);
    }
    moe->packs = false;
    for (int j = 0; j < n; j++) {
        moe->xp_off[j] = -1;
        if (moe->k->rows_packed != NULL && rows_many(moe->k, jobs[j].gate, jobs[j].m) &&
            rows_many(moe->k, jobs[j].up, jobs[j].m) &&
            rows_many(moe->k, jobs[j].down, jobs[j].m)) {
            size_t b = MT_MAX(moe->k->pack_bytes(jobs[j].m, moe->hidden),
                              moe->k->pack_bytes(jobs[j].m, moe->inter));

            moe->xp_off[j] = (int64_t)xp_total;
            xp_total += (b + 63) / 64 * 64;
            moe->packs = true;
        }
    }
    if (xp_total > moe->xp_cap) {
        void *q = aligned_alloc(64, xp_total);

        if (q == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %zu bytes of packed prefill inputs",
                           xp_total);
        }
        free(moe->xp);
        moe->xp = q;
        moe->xp_cap = xp_total;
    }
    if (!grow((void **)&moe->unit_pre, &moe->unit_pre_cap, 2 * (size_t)(n + 1),
              sizeof(*moe->unit_pre))) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %d expert jobs", n);
    }
    h_total = 0;
    for (int j = 0; j < n; j++) {
        moe->jobs[j] = jobs[j];
        moe->h_off[j] = (int64_t)h_total;
        h_total += (size_t)jobs[j].m * (size_t)moe->inter;
    }
    moe->n = n;
    moe->prefill_unit = mt_cpu_experts_prefill_unit == 32 || mt_cpu_experts_prefill_unit == 64
                            ? mt_cpu_experts_prefill_unit
                            : 128;
    for (int p = 0; p < 2; p++) {
        int64_t *pre = moe->unit_pre + (size_t)p * (size_t)(n + 1);
        int64_t rows = p == 0 ? moe->inter : moe->hidden;

        pre[0] = 0;
        for (int j = 0; j < n; j++) {
            pre[j + 1] = pre[j] + MT_CEIL_DIV(rows, unit_rows(moe, j));
        }
        atomic_store_explicit(&moe->next_unit[p], 0, memory_order_relaxed);
    }
    moe->dynamic = mt_cpu_experts_dynamic != 0;
    /* the packed path packs h of all jobs between the phases: it keeps the barrier */
    moe->overlap = moe->dynamic && !moe->packs && mt_cpu_experts_overlap != 0;
    if (moe->overlap) {
        if (!grow((void **)&moe->done1, &moe->done1_cap, (size_t)n, sizeof(*moe->done1))) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %d expert jobs", n);
        }
        for (int j = 0; j < n; j++) {
            atomic_init(&moe->done1[j], 0);
        }
    }
    moe->threads = nt;
    moe->started = true;
    moe->ws_failures0 = atomic_load(&ws_failures);
    atomic_fetch_add(&mt_cpu_experts_gen, 1);
    moe->t_start = mt_clock_now();
    mt_cpu_team_start(moe->team, nt, moe_job_run, moe);
    return MT_OK;
}

mt_status_t
mt_cpu_moe_wait(struct mt_cpu_moe *moe)
{
    mt_status_t st = MT_OK;

    if (moe->started) {
        double end = moe->t_start;
        double lag = 0.0;
        double idle = 0.0;

        mt_cpu_team_wait(moe->team);
        moe->started = false;
        if (moe->n == 0) {
            return MT_OK;
        }
        st = ws_check(moe->ws_failures0, "a MoE layer on the CPU");
        for (int t = 0; t < moe->threads; t++) {
            end = MT_MAX(end, moe->t_thread[2 * t + 1]);
        }
        for (int t = 0; t < moe->threads; t++) {
            lag += moe->t_thread[2 * t] - moe->t_start;
            idle += end - moe->t_thread[2 * t + 1];
        }
        int at = moe->spread_n++ % SPREAD_RUNS;

        moe->spread[0][at] = end - moe->t_start;
        moe->spread[1][at] = lag / moe->threads;
        moe->spread[2][at] = idle / moe->threads;
        moe->t_done = end;
    }
    return st;
}

double
mt_cpu_moe_done_at(const struct mt_cpu_moe *moe)
{
    return moe->t_done;
}

void
mt_cpu_moe_spread(struct mt_cpu_moe *moe, struct mt_cpu_moe_spread *out)
{
    int n = MT_MIN(moe->spread_n, SPREAD_RUNS);
    double med[3] = {0.0, 0.0, 0.0};

    for (int i = 0; i < 3 && n > 0; i++) {
        double p90;
        mt_cpu_median_p90(moe->spread[i], n, &med[i], &p90);
    }
    out->runs = moe->spread_n;
    out->total_s = med[0];
    out->start_lag_s = med[1];
    out->idle_end_s = med[2];
    moe->spread_n = 0;
}

mt_status_t
mt_cpu_moe_run(struct mt_cpu_moe *moe, const struct mt_cpu_expert_job *jobs, int n, int threads)
{
    mt_status_t st = mt_cpu_moe_start(moe, jobs, n, threads);
    mt_status_t st_wait = mt_cpu_moe_wait(moe);

    return st != MT_OK ? st : st_wait;
}

mt_status_t
mt_cpu_expert_run(enum mt_cpu_level level, const struct mt_cpu_expert_job *job)
{
    const struct mt_cpu_kernels *k = kernels_of(level);
    int64_t inter;
    int64_t hidden;
    float *g;
    float *u;
    mt_status_t st;

    if (level > mt_cpu_level_max()) {
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "kernel family %s does not run on this CPU",
                       mt_cpu_level_name(level));
    }
    if (job->gate == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "expert job 0: no gate weight");
    }
    inter = job->gate->rows; /* the shapes of gate; job_check compares up and down with them */
    hidden = job->gate->cols;
    if ((st = job_check(job, 0, inter, hidden)) != MT_OK) {
        return st;
    }
    g = malloc((size_t)job->m * (size_t)inter * 2 * sizeof(float));
    if (g == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate an expert buffer for %d tokens", job->m);
    }
    u = g + (size_t)job->m * (size_t)inter;
    uint64_t failures0 = atomic_load(&ws_failures);
    atomic_fetch_add(&mt_cpu_experts_gen, 1);
    rows_run(k, job->gate, 0, inter, job->x, NULL, job->m, g, inter);
    rows_run(k, job->up, 0, inter, job->x, NULL, job->m, u, inter);
    swiglu(k, g, u, g, (int64_t)job->m * inter);
    rows_run(k, job->down, 0, hidden, g, NULL, job->m, job->y, hidden);
    free(g);
    return ws_check(failures0, "an expert on the CPU");
}
