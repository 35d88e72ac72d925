/* SPDX-License-Identifier: MIT */
/*
 * test_cpu_experts.c - the SIMD expert kernels (cpu/experts.h) against the scalar path and the
 * fp32 reference mt_cpu_swiglu, for every kernel family this CPU runs, on fresh random inputs
 * (the seed is printed), FP8 e4m3 with 128x128 block scales and BF16, odd token counts, the real
 * V3.2 expert shape (7168 -> 2048 -> 7168), and a whole layer split across a thread team.
 *
 * Tolerance: every path accumulates in fp32 and reads the weights exactly (FP8 and BF16 values
 * are exact in fp32), so paths differ only in summation order and in where the block scale is
 * applied: max |got - want| <= 1e-4 * max |want| + 1e-6 over each output. The amx family's
 * prefill path (m >= MT_CPU_PREFILL_MIN_M) rounds activations and scaled weights to bf16
 * (relative error <= 2^-9 each): 2e-2 * max |want| there. The random FP8 bytes below span every
 * exponent, so a few products dominate each sum and the rounding is not averaged down: the GPU
 * test machine measured up to 6.9e-3 * max |want| (fp8 512x160 m=33) in two runs.
 *
 * Where the CPU has AVX512-VBMI (and BF16), the avx512 and amx families can decode with FP8
 * widened by table lookups (cpu/experts_lut.c) or on bf16 dot products (cpu/experts_dot.c) with
 * x in 3 bf16 terms (exact) or 2 (each product within 2^-16): all, and the default FMA tiles,
 * are checked at 1e-4 (mt_cpu_experts_decode = 3, 2, 1, 0). The AMX prefill runs its tiles
 * kernel (tokens as A, the default; K chunks of 256, 1024 and all of K, with and without
 * prefetch, both loop orders), its blocked kernel (rows as A, K chunks, C kept across them) and its
 * panel kernel. The vector SwiGLU of each family is checked against mt_cpu_silu at 1e-5.
 */
#include <config.h>

#include "cpu/convert.h"
#include "cpu/experts.h"
#include "cpu/experts_impl.h"
#include "runtime/base/rng.h"
#include "runtime/engine/executor_cpu_team.h"
#include "runtime/engine/expert_provider.h"
#include "tests/tap.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REL_TOL 1e-4f
#define REL_TOL_BF16 2e-2f

static struct mt_rng rng;

struct expert {
    struct mt_cpu_weight gate;
    struct mt_cpu_weight up;
    struct mt_cpu_weight down;
    void *mem[6];
};

static float
uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)mt_rng_uniform(&rng);
}

static void
weight_make(struct mt_cpu_weight *w, void **data, void **scale, enum mt_dtype dt, int64_t rows,
            int64_t cols)
{
    size_t n = (size_t)rows * (size_t)cols;

    w->dtype = dt;
    w->rows = rows;
    w->cols = cols;
    w->scale = NULL;
    *scale = NULL;
    if (dt == MT_DTYPE_F8_E4M3) {
        uint8_t *q = malloc(n);
        size_t ns = (size_t)MT_CEIL_DIV(rows, 128) * (size_t)MT_CEIL_DIV(cols, 128);
        float *s = malloc(ns * sizeof(float));

        for (size_t i = 0; i < n; i++) {
            uint8_t b = (uint8_t)mt_rng_below(&rng, 256);

            q[i] = (b & 0x7f) == 0x7f ? 0 : b; /* no NaN; zeros and subnormals included */
        }
        for (size_t i = 0; i < ns; i++) {
            s[i] = uniform(0.5f, 2.0f) / 448.0f / sqrtf((float)cols);
        }
        *data = q;
        *scale = s;
        w->scale = s;
    } else {
        uint16_t *h = malloc(n * sizeof(uint16_t));

        for (size_t i = 0; i < n; i++) {
            h[i] = mt_f32_to_bf16(uniform(-1.0f, 1.0f) / sqrtf((float)cols));
        }
        *data = h;
    }
    w->data = *data;
}

static void
expert_make(struct expert *e, enum mt_dtype dt, int64_t hidden, int64_t inter)
{
    weight_make(&e->gate, &e->mem[0], &e->mem[1], dt, inter, hidden);
    weight_make(&e->up, &e->mem[2], &e->mem[3], dt, inter, hidden);
    weight_make(&e->down, &e->mem[4], &e->mem[5], dt, hidden, inter);
}

static void
expert_free(struct expert *e)
{
    for (int i = 0; i < 6; i++) {
        free(e->mem[i]);
    }
}

static float *
randv(size_t n)
{
    float *v = malloc(n * sizeof(float));

    for (size_t i = 0; i < n; i++) {
        v[i] = uniform(-2.0f, 2.0f);
    }
    return v;
}

/* max |got - want| <= REL_TOL * max |want| + 1e-6; prints the worst error. */
static bool
close_enough_tol(const char *what, const float *got, const float *want, size_t n, float tol)
{
    float amax = 0.0f;
    float emax = 0.0f;
    size_t at = 0;

    for (size_t i = 0; i < n; i++) {
        float e = fabsf(got[i] - want[i]);

        amax = fmaxf(amax, fabsf(want[i]));
        if (!(e <= emax)) { /* NaN counts as the worst */
            emax = isnan(e) ? INFINITY : e;
            at = i;
        }
    }
    return tap_ok(emax <= tol * amax + 1e-6f && amax > 0.0f,
                  "%s: max error %.3g at %zu (got %.6g want %.6g), max |want| %.3g", what, emax, at,
                  got[at], want[at], amax);
}

static bool
close_enough(const char *what, const float *got, const float *want, size_t n)
{
    return close_enough_tol(what, got, want, n, REL_TOL);
}

/* The tolerance of family `level` for m tokens (bf16 operands on the amx prefill paths: the
 * few-token kernel's from MT_CPU_PREFILL_MIN_SMALL tokens for FP8, the tiles kernel's from
 * MT_CPU_PREFILL_MIN_M; the looser one from the first for every dtype) */
static float
tol_of(enum mt_cpu_level level, int m)
{
    return level == MT_CPU_LEVEL_AMX && m >= MT_CPU_PREFILL_MIN_SMALL ? REL_TOL_BF16 : REL_TOL;
}

/* The decode kernel choices of level l (mt_cpu_experts_decode): the bf16 dot ones (3, 2 terms)
 * and the table-widening FMA tiles (1) where usable, the FMA tiles (0); below AVX-512 only 0. */
static int
dots_of(enum mt_cpu_level l, int *dots)
{
    int n = 0;

    for (int kind = 3; kind >= 1 && l >= MT_CPU_LEVEL_AVX512; kind--) {
        if (mt_cpu_experts_decode_usable(kind)) {
            dots[n++] = kind;
        }
    }
    dots[n++] = 0;
    return n;
}

/* One expert: every level against scalar and against mt_cpu_swiglu. */
static void
test_expert(enum mt_dtype dt, int64_t hidden, int64_t inter, int m, enum mt_cpu_level max)
{
    struct expert e;
    float *x = randv((size_t)m * hidden);
    float *ref = malloc((size_t)m * hidden * sizeof(float));
    float *sc = malloc((size_t)m * hidden * sizeof(float));
    float *got = malloc((size_t)m * hidden * sizeof(float));
    const char *dn = dt == MT_DTYPE_F8_E4M3 ? "fp8" : "bf16";
    char what[128];

    expert_make(&e, dt, hidden, inter);
    struct mt_cpu_expert_job job = {&e.gate, &e.up, &e.down, m, x, sc};

    tap_ok(mt_cpu_swiglu(&e.gate, &e.up, &e.down, x, m, ref) == MT_OK, "reference runs");
    tap_ok(mt_cpu_expert_run(MT_CPU_LEVEL_SCALAR, &job) == MT_OK, "scalar runs");
    snprintf(what, sizeof(what), "%s %lldx%lld m=%d scalar vs reference", dn, (long long)hidden,
             (long long)inter, m);
    close_enough(what, sc, ref, (size_t)m * hidden);
    for (int l = MT_CPU_LEVEL_AVX2; l <= (int)max; l++) {
        int dots[4];
        int nd = dots_of((enum mt_cpu_level)l, dots);

        for (int d = 0; d < nd; d++) {
            const char *ln = mt_cpu_level_name((enum mt_cpu_level)l);

            mt_cpu_experts_decode = dots[d];
            job.y = got;
            memset(got, 0xff, (size_t)m * hidden * sizeof(float)); /* NaN until written */
            tap_ok(mt_cpu_expert_run((enum mt_cpu_level)l, &job) == MT_OK, "%s runs", ln);
            snprintf(what, sizeof(what), "%s %lldx%lld m=%d %s dot=%d vs scalar", dn,
                     (long long)hidden, (long long)inter, m, ln, dots[d]);
            close_enough_tol(what, got, sc, (size_t)m * hidden, tol_of((enum mt_cpu_level)l, m));
            snprintf(what, sizeof(what), "%s %lldx%lld m=%d %s dot=%d vs reference", dn,
                     (long long)hidden, (long long)inter, m, ln, dots[d]);
            close_enough_tol(what, got, ref, (size_t)m * hidden, tol_of((enum mt_cpu_level)l, m));
        }
        mt_cpu_experts_decode = 0;
    }
    expert_free(&e);
    free(got);
    free(sc);
    free(ref);
    free(x);
}

/* The class of a value: NaN, -inf, +inf or finite (0), equal whatever the order of a sum. */
static int
value_class(float v)
{
    return isnan(v) ? 3 : isinf(v) ? (v < 0.0f ? 1 : 2) : 0;
}

/*
 * One token whose activation holds an inf: every level and decode kernel gives each output the
 * class (NaN, +-inf, finite) the reference gives it. The bf16 dot kernels (2, 3 terms) split an
 * activation into terms x - bf16(x) apart, and inf - inf made NaN where the reference has inf.
 * The weights are made so that the reference's outputs are all +inf, not NaN: gate's and up's
 * column of the inf 1.0 (every row +inf, silu(+inf) * +inf = +inf), down's weights all 0.5.
 */
static void
test_inf_activation(enum mt_dtype dt, enum mt_cpu_level max)
{
    enum { HID = 256, INT = 128 };
    struct expert e;
    float *x = randv(HID);
    float ref[HID];
    float got[HID];

    expert_make(&e, dt, HID, INT);
    x[5] = INFINITY;
    for (int r = 0; r < INT; r++) {
        for (int c = 0; c < HID; c++) {
            bool one = c == 5;
            if (dt == MT_DTYPE_F8_E4M3) { /* e4m3 1.0 = 0x38, 0.5 = 0x30; scales > 0 */
                uint8_t *g = e.mem[0], *u = e.mem[2];

                g[r * HID + c] = one ? 0x38 : g[r * HID + c];
                u[r * HID + c] = one ? 0x38 : u[r * HID + c];
                ((uint8_t *)e.mem[4])[c * INT + r] = 0x30;
            } else {
                ((uint16_t *)e.mem[0])[r * HID + c] =
                    one ? mt_f32_to_bf16(1.0f) : ((uint16_t *)e.mem[0])[r * HID + c];
                ((uint16_t *)e.mem[2])[r * HID + c] =
                    one ? mt_f32_to_bf16(1.0f) : ((uint16_t *)e.mem[2])[r * HID + c];
                ((uint16_t *)e.mem[4])[c * INT + r] = mt_f32_to_bf16(0.5f);
            }
        }
    }
    struct mt_cpu_expert_job job = {&e.gate, &e.up, &e.down, 1, x, got};
    bool all_inf = mt_cpu_swiglu(&e.gate, &e.up, &e.down, x, 1, ref) == MT_OK;
    for (int i = 0; i < HID; i++) {
        all_inf = all_inf && value_class(ref[i]) == 2;
    }
    tap_ok(all_inf, "the reference gives +inf everywhere (the case the kernels must keep)");
    for (int l = MT_CPU_LEVEL_SCALAR; l <= (int)max; l++) {
        int dots[4];
        int nd = l >= MT_CPU_LEVEL_AVX2 ? dots_of((enum mt_cpu_level)l, dots) : 1;

        dots[0] = l >= MT_CPU_LEVEL_AVX2 ? dots[0] : 0;
        for (int d = 0; d < nd; d++) {
            int differ = 0, at = -1;

            mt_cpu_experts_decode = dots[d];
            bool ran = mt_cpu_expert_run((enum mt_cpu_level)l, &job) == MT_OK;
            for (int i = 0; i < HID; i++) {
                if (value_class(got[i]) != value_class(ref[i])) {
                    at = differ++ == 0 ? i : at;
                }
            }
            tap_ok(ran && differ == 0, "%s %s dot=%d, an inf activation: every output's class "
                   "(NaN, +-inf, finite) the reference's (%d differ; first %d: %g, want %g)",
                   dt == MT_DTYPE_F8_E4M3 ? "fp8" : "bf16",
                   mt_cpu_level_name((enum mt_cpu_level)l), dots[d], differ, at,
                   at >= 0 ? got[at] : 0.0f, at >= 0 ? ref[at] : 0.0f);
        }
        mt_cpu_experts_decode = 0;
    }
    expert_free(&e);
    free(x);
}

/*
 * The AMX prefill kernel of a lone expert run (rows_many) packs x on its own thread and keeps
 * the packed copy while the same input comes back (gate and up share it), keyed by the pointer,
 * the shape and the run (mt_cpu_experts_gen). New values in the same buffer in a new run, and
 * more tokens from the same buffer, must each be packed anew: every result equals the one from
 * a copy of x at another address (packed fresh; same kernel, same data: the same bits).
 */
static void
test_amx_repack(void)
{
    enum { HID = 256, ROWS = 128, M1 = 20, M2 = 45 };
    const struct mt_cpu_kernels *k = &mt_cpu_kernels_amx;
    struct expert e;
    float *x = randv((size_t)M2 * HID);
    float *x2 = malloc((size_t)M2 * HID * sizeof(float));
    float *y = malloc((size_t)M2 * ROWS * sizeof(float));
    float *y2 = malloc((size_t)M2 * ROWS * sizeof(float));

    expert_make(&e, MT_DTYPE_F8_E4M3, HID, ROWS); /* gate: ROWS x HID */
    atomic_fetch_add(&mt_cpu_experts_gen, 1);
    k->rows_many(&e.gate, 0, ROWS, x, HID, M1, y, ROWS);
    for (int i = 0; i < M2 * HID; i++) {
        x[i] = uniform(-2.0f, 2.0f);
    }
    memcpy(x2, x, (size_t)M2 * HID * sizeof(float));
    atomic_fetch_add(&mt_cpu_experts_gen, 1);
    k->rows_many(&e.gate, 0, ROWS, x, HID, M1, y, ROWS);
    k->rows_many(&e.gate, 0, ROWS, x2, HID, M1, y2, ROWS);
    tap_ok(memcmp(y, y2, (size_t)M1 * ROWS * sizeof(float)) == 0,
           "amx prefill: a new run reads new values in the same input buffer (%d tokens, the "
           "same bits as from a copy)", M1);
    k->rows_many(&e.gate, 0, ROWS, x, HID, M1, y, ROWS);
    k->rows_many(&e.gate, 0, ROWS, x, HID, M2, y, ROWS);
    k->rows_many(&e.gate, 0, ROWS, x2, HID, M2, y2, ROWS);
    tap_ok(memcmp(y, y2, (size_t)M2 * ROWS * sizeof(float)) == 0,
           "amx prefill: %d tokens after %d from the same buffer in one run are packed anew (the "
           "same bits as from a copy)", M2, M1);
    expert_free(&e);
    free(y2);
    free(y);
    free(x2);
    free(x);
}

/*
 * The few-token AMX kernel (mt_cpu_experts_amx_small, cpu/experts_amx_small.c) within the AMX
 * tolerance of scalar (test_expert), and that it ran (FP8 with K a multiple of 64 where the CPU
 * has AVX512-VBMI, from MT_CPU_PREFILL_MIN_SMALL tokens) or did not (BF16, other K: the tiles
 * kernel; fewer tokens: the decode tiles).
 */
static void
test_amx_small(enum mt_dtype dt, int64_t hidden, int64_t inter, int m)
{
    int small = mt_cpu_experts_amx_small;
    uint64_t c0 = mt_cpu_experts_amx_small_calls();
    bool want = dt == MT_DTYPE_F8_E4M3 && (hidden % 64 == 0 || inter % 64 == 0) &&
                m >= MT_CPU_PREFILL_MIN_SMALL &&
                mt_cpu_experts_decode_usable(1); /* gate and up read hidden, down inter */

    mt_cpu_experts_amx_small = m;
    test_expert(dt, hidden, inter, m, MT_CPU_LEVEL_AMX);
    mt_cpu_experts_amx_small = small;
    uint64_t n = mt_cpu_experts_amx_small_calls() - c0;
    tap_ok(want ? n > 0 : n == 0, "%s %lldx%lld m=%d: the few-token AMX kernel ran %llu times (%s)",
           dt == MT_DTYPE_F8_E4M3 ? "fp8" : "bf16", (long long)hidden, (long long)inter, m,
           (unsigned long long)n, want ? "expected" : "not expected");
}

/*
 * The vector SwiGLU of each family that has one (h = SiLU(g) x u between the gate/up and down
 * phases) against mt_cpu_silu over the whole range: random g in [-120, 120], where e^-g
 * overflows and underflows, and edge values; a tail shorter than a vector; h in place of g.
 */
static void
test_swiglu(enum mt_cpu_level max)
{
    static const struct mt_cpu_kernels *const fams[3] = {
        &mt_cpu_kernels_avx2, &mt_cpu_kernels_avx512, &mt_cpu_kernels_amx};
    static const float edge[] = {0.0f,  -0.0f,  1e-30f,  -1e-30f,  88.0f, 88.8f, -88.0f, -88.8f,
                                 87.0f, -87.0f, 1000.0f, -1000.0f, 0.5f,  -0.5f, 20.0f,  -20.0f};
    enum { N = 1003 };
    float g[N];
    float u[N];
    float h[N];

    for (int f = 0; f < 3; f++) {
        const struct mt_cpu_kernels *k = fams[f];
        int bad = -1;

        if ((int)max < (int)MT_CPU_LEVEL_AVX2 + f || k->swiglu == NULL) {
            continue;
        }
        for (int i = 0; i < N; i++) {
            g[i] = i < (int)(sizeof(edge) / sizeof(edge[0])) ? edge[i] : uniform(-120.0f, 120.0f);
            u[i] = uniform(-2.0f, 2.0f);
        }
        k->swiglu(g, u, h, N);
        for (int i = 0; i < N && bad < 0; i++) {
            float want = mt_cpu_silu(g[i]) * u[i];

            if (!(fabsf(h[i] - want) <= 1e-5f * fabsf(want) + 1e-30f)) {
                bad = i;
            }
        }
        if (bad >= 0) {
            tap_diag("g %g u %g: got %g want %g", g[bad], u[bad], h[bad],
                     mt_cpu_silu(g[bad]) * u[bad]);
        }
        tap_ok(bad < 0, "%s swiglu vs mt_cpu_silu over [-120, 120] and edge values", k->name);
        memcpy(h, g, sizeof(g));
        k->swiglu(h, u, h, N);
        bad = -1;
        for (int i = 0; i < N && bad < 0; i++) {
            float want = mt_cpu_silu(g[i]) * u[i];

            if (!(fabsf(h[i] - want) <= 1e-5f * fabsf(want) + 1e-30f)) {
                bad = i;
            }
        }
        tap_ok(bad < 0, "%s swiglu in place (h = g)", k->name);
    }
}

/*
 * n experts of dtype dt (hidden x inter), job j with ms[j] random tokens and an output buffer,
 * want[j] its scalar result. Returns whether every scalar run succeeded.
 */
static bool
layer_make(int n, const int *ms, enum mt_dtype dt, int64_t hidden, int64_t inter,
           struct expert *e, struct mt_cpu_expert_job *jobs, float **want)
{
    bool ok = true;

    for (int j = 0; j < n; j++) {
        expert_make(&e[j], dt, hidden, inter);
        jobs[j] = (struct mt_cpu_expert_job){&e[j].gate,
                                             &e[j].up,
                                             &e[j].down,
                                             ms[j],
                                             randv((size_t)ms[j] * hidden),
                                             malloc((size_t)ms[j] * hidden * sizeof(float))};
        want[j] = malloc((size_t)ms[j] * hidden * sizeof(float));
        struct mt_cpu_expert_job s = jobs[j];

        s.y = want[j];
        ok = ok && mt_cpu_expert_run(MT_CPU_LEVEL_SCALAR, &s) == MT_OK;
    }
    return ok;
}

static void
layer_free(int n, struct expert *e, struct mt_cpu_expert_job *jobs, float **want)
{
    for (int j = 0; j < n; j++) {
        expert_free(&e[j]);
        free((void *)jobs[j].x);
        free(jobs[j].y);
        free(want[j]);
    }
}

/* A layer of experts with different token counts on the team, against the scalar path. */
static void
test_layer_shape(struct mt_cpu_team *team, enum mt_cpu_level level, enum mt_dtype dt, int threads,
                 int HID, int INT)
{
    enum { N = 5 };
    /* the largest job not last: the per-thread scratch is sized by the largest of all */
    static const int ms[N] = {1, 3, 8, 37, 2};
    struct expert e[N];
    struct mt_cpu_expert_job jobs[N];
    float *want[N];
    struct mt_cpu_moe *moe;
    bool ok = layer_make(N, ms, dt, HID, INT, e, jobs, want);

    tap_ok(ok && mt_cpu_moe_create(team, level, &moe) == MT_OK, "layer runner created");
    for (int rep = 0; rep < 2; rep++) { /* twice: the runner's workspace is reused */
        if (rep == 1) {
            /* new inputs in the same buffers: no kernel may reuse what it converted of the old */
            for (int j = 0; j < N; j++) {
                float *x = (float *)jobs[j].x;
                struct mt_cpu_expert_job s = jobs[j];

                for (int i = 0; i < ms[j] * HID; i++) {
                    x[i] = uniform(-2.0f, 2.0f);
                }
                s.y = want[j];
                ok = ok && mt_cpu_expert_run(MT_CPU_LEVEL_SCALAR, &s) == MT_OK;
            }
            tap_ok(ok, "scalar reruns on new inputs in the same buffers");
        }
        tap_ok(mt_cpu_moe_run(moe, jobs, N, threads) == MT_OK, "layer runs (%d threads)", threads);
        for (int j = 0; j < N; j++) {
            char what[96];

            snprintf(what, sizeof(what),
                     "layer %s %s dot=%d %dx%d expert %d (m=%d) on %d threads, run %d",
                     dt == MT_DTYPE_F8_E4M3 ? "fp8" : "bf16", mt_cpu_level_name(level),
                     mt_cpu_experts_decode, HID, INT, j, ms[j], threads, rep);
            close_enough_tol(what, jobs[j].y, want[j], (size_t)ms[j] * HID, tol_of(level, ms[j]));
        }
    }
    mt_cpu_moe_destroy(moe);
    layer_free(N, e, jobs, want);
}

static void
test_layer(struct mt_cpu_team *team, enum mt_cpu_level level, enum mt_dtype dt, int threads)
{
    test_layer_shape(team, level, dt, threads, 512, 384);
}

/*
 * A kernel workspace that cannot be allocated fails the layer with MT_ERR_NOMEM (not an abort in
 * a worker thread), and the next run is whole again. Families whose kernels allocate nothing
 * (AVX2, AVX-512 decode), or that grew their workspace earlier, leave the fault unused: those runs
 * must succeed. The scalar kernel allocates on every call.
 */
static void
test_ws_fault(struct mt_cpu_team *team, enum mt_cpu_level level)
{
    enum { N = 2, HID = 256, INT = 128 };
    static const int ms[N] = {3, 40};
    struct expert e[N];
    struct mt_cpu_expert_job jobs[N];
    float *want[N];
    struct mt_cpu_moe *moe;
    mt_status_t st;
    bool used;

    if (!tap_ok(layer_make(N, ms, MT_DTYPE_F8_E4M3, HID, INT, e, jobs, want) &&
                    mt_cpu_moe_create(team, level, &moe) == MT_OK,
                "%s: layer and runner made", mt_cpu_level_name(level))) {
        layer_free(N, e, jobs, want);
        return;
    }
    mt_cpu_experts_ws_fault = 1;
    mt_log_set_quiet(true);
    st = mt_cpu_moe_run(moe, jobs, N, 0);
    mt_log_set_quiet(false);
    used = mt_cpu_experts_ws_fault == 0;
    mt_cpu_experts_ws_fault = 0;
    tap_ok(used ? st == MT_ERR_NOMEM && strstr(mt_last_error(), "workspace") != NULL
                : st == MT_OK && level != MT_CPU_LEVEL_SCALAR,
           "%s: a workspace that cannot be allocated %s", mt_cpu_level_name(level),
           used ? "fails the layer with MT_ERR_NOMEM" : "(none allocated: the layer runs)");
    tap_ok(mt_cpu_moe_run(moe, jobs, N, 0) == MT_OK, "%s: the next layer run succeeds",
           mt_cpu_level_name(level));
    for (int j = 0; j < N; j++) {
        char what[64];

        snprintf(what, sizeof(what), "%s: after the fault, expert %d (m=%d)",
                 mt_cpu_level_name(level), j, ms[j]);
        close_enough_tol(what, jobs[j].y, want[j], (size_t)ms[j] * HID, tol_of(level, ms[j]));
    }
    if (level == MT_CPU_LEVEL_SCALAR) {
        struct mt_cpu_expert_job s = jobs[0];

        mt_cpu_experts_ws_fault = 1;
        mt_log_set_quiet(true);
        st = mt_cpu_expert_run(MT_CPU_LEVEL_SCALAR, &s);
        mt_log_set_quiet(false);
        mt_cpu_experts_ws_fault = 0;
        tap_ok(st == MT_ERR_NOMEM, "scalar: one expert run without its workspace: MT_ERR_NOMEM");
    }
    mt_cpu_moe_destroy(moe);
    layer_free(N, e, jobs, want);
}

/*
 * Jobs the kernels cannot compute are refused before anything starts, each with a message that
 * names the job and the weight: a dtype other than F8_E4M3/BF16/F16/F32 (F8_E5M2 and I32 ran
 * into a worker thread's assertion and aborted the process), a wrong shape, FP8 without scales;
 * jobs without tokens, input, output or weight data; a kernel family this CPU cannot run.
 */
static void
test_bad_jobs(struct mt_cpu_team *team)
{
    struct expert e;
    float x[64];
    float y[64] = {0};
    struct mt_cpu_moe *moe;

    expert_make(&e, MT_DTYPE_BF16, 64, 32);
    memset(x, 0, sizeof(x));
    if (!tap_ok(mt_cpu_moe_create(team, MT_CPU_LEVEL_SCALAR, &moe) == MT_OK, "runner created")) {
        expert_free(&e);
        return;
    }
    static const struct {
        enum mt_dtype dt;
        int64_t rows;
        const char *want;
    } bad[] = {
        {MT_DTYPE_F8_E5M2, 32, "expert job 1: bad up weight: dtype F8_E5M2; the CPU computes"},
        {MT_DTYPE_I32, 32, "expert job 1: bad up weight: dtype I32; the CPU computes"},
        {MT_DTYPE_BF16, 31, "expert job 1: bad up weight: [31, 64]; it must be [32, 64]"},
        {MT_DTYPE_F8_E4M3, 32, "expert job 1: bad up weight: F8_E4M3 without its block scales"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct mt_cpu_weight up = e.up;
        struct mt_cpu_expert_job jobs[2] = {{&e.gate, &e.up, &e.down, 1, x, y},
                                            {&e.gate, &up, &e.down, 1, x, y}};
        mt_status_t st, st1;
        char msg[256];

        up.dtype = bad[i].dt;
        up.rows = bad[i].rows;
        up.scale = NULL;
        mt_log_set_quiet(true);
        st = mt_cpu_moe_run(moe, jobs, 2, 0);
        snprintf(msg, sizeof(msg), "%s", mt_last_error());
        st1 = mt_cpu_expert_run(MT_CPU_LEVEL_SCALAR, &jobs[1]);
        mt_log_set_quiet(false);
        tap_ok(st == MT_ERR_INVAL && strstr(msg, bad[i].want) != NULL && st1 == MT_ERR_INVAL &&
                   strstr(mt_last_error(), "bad up weight") != NULL,
               "an up weight of %s [%lld, 64] is refused by the layer runner and by one expert's "
               "run: %s", mt_dtype_name(bad[i].dt), (long long)bad[i].rows, msg);
    }
    /* a job without tokens, input, output or weight data, or with a down weight of the wrong
     * width: refused the same way, naming the job and what is wrong */
    static const struct {
        int m;
        bool no_x;
        bool no_y;
        bool no_data;
        int64_t down_cols;
        const char *want;
    } bad_job[] = {
        {0, false, false, false, 32, "expert job 1: 0 tokens"},
        {1, true, false, false, 32, "expert job 1: 1 tokens, input missing, output given"},
        {1, false, true, false, 32, "expert job 1: 1 tokens, input given, output missing"},
        {1, false, false, true, 32, "expert job 1: no down weight"},
        {1, false, false, false, 31,
         "expert job 1: bad down weight: [64, 31]; it must be [64, 32]"},
    };
    for (size_t i = 0; i < sizeof(bad_job) / sizeof(bad_job[0]); i++) {
        struct mt_cpu_weight down = e.down;
        struct mt_cpu_expert_job jobs[2] = {
            {&e.gate, &e.up, &e.down, 1, x, y},
            {&e.gate, &e.up, &down, bad_job[i].m, bad_job[i].no_x ? NULL : x,
             bad_job[i].no_y ? NULL : y}};
        mt_status_t st, st1;
        char msg[256];

        down.cols = bad_job[i].down_cols;
        down.data = bad_job[i].no_data ? NULL : down.data;
        mt_log_set_quiet(true);
        st = mt_cpu_moe_run(moe, jobs, 2, 0);
        snprintf(msg, sizeof(msg), "%s", mt_last_error());
        st1 = mt_cpu_expert_run(MT_CPU_LEVEL_SCALAR, &jobs[1]);
        mt_log_set_quiet(false);
        tap_ok(st == MT_ERR_INVAL && strstr(msg, bad_job[i].want) != NULL &&
                   st1 == MT_ERR_INVAL && strstr(mt_last_error(), bad_job[i].want + 13) != NULL,
               "a job the kernels cannot run is refused by the layer runner and by one expert's "
               "run: %s", msg);
    }
    /* a kernel family above what this CPU runs (amx where it has no AMX) is refused */
    if (mt_cpu_level_max() < MT_CPU_LEVEL_AMX) {
        enum mt_cpu_level above = (enum mt_cpu_level)(mt_cpu_level_max() + 1);
        struct mt_cpu_moe *moe2 = NULL;
        struct mt_cpu_expert_job job = {&e.gate, &e.up, &e.down, 1, x, y};
        mt_status_t st, st1;

        mt_log_set_quiet(true);
        st = mt_cpu_moe_create(team, above, &moe2);
        st1 = mt_cpu_expert_run(above, &job);
        mt_log_set_quiet(false);
        tap_ok(st == MT_ERR_UNSUPPORTED && st1 == MT_ERR_UNSUPPORTED,
               "kernel family %s (above this CPU's best) is MT_ERR_UNSUPPORTED for a layer "
               "runner and for one expert's run", mt_cpu_level_name(above));
        mt_cpu_moe_destroy(moe2);
    }
    tap_ok(mt_cpu_moe_run(moe, &(struct mt_cpu_expert_job){&e.gate, &e.up, &e.down, 1, x, y}, 1,
                          0) == MT_OK,
           "the runner still runs a good job after the refusals");
    /* F16 and F32 weights are computed too (the scalar kernel): the same expert's weights in
     * those dtypes (bf16 values are exact in both) give what the BF16 expert gives */
    {
        static uint16_t h[3][64 * 32];
        static float f[3][64 * 32];
        const struct mt_cpu_weight *src[3] = {&e.gate, &e.up, &e.down};
        struct mt_cpu_weight w16[3];
        struct mt_cpu_weight w32[3];
        float yb[64];
        float y16[64];
        float y32[64];
        bool same = true;

        for (int k = 0; k < 3; k++) {
            for (int i = 0; i < 64 * 32; i++) {
                f[k][i] = mt_bf16_to_f32(((const uint16_t *)src[k]->data)[i]);
                h[k][i] = mt_f32_to_f16(f[k][i]);
            }
            w16[k] = *src[k];
            w16[k].dtype = MT_DTYPE_F16;
            w16[k].data = h[k];
            w32[k] = *src[k];
            w32[k].dtype = MT_DTYPE_F32;
            w32[k].data = f[k];
        }
        for (int i = 0; i < 64; i++) {
            x[i] = uniform(-2.0f, 2.0f);
        }
        struct mt_cpu_expert_job jb = {&e.gate, &e.up, &e.down, 1, x, yb};
        struct mt_cpu_expert_job j16 = {&w16[0], &w16[1], &w16[2], 1, x, y16};
        struct mt_cpu_expert_job j32 = {&w32[0], &w32[1], &w32[2], 1, x, y32};
        bool ran = mt_cpu_moe_run(moe, &jb, 1, 0) == MT_OK &&
                   mt_cpu_moe_run(moe, &j16, 1, 0) == MT_OK &&
                   mt_cpu_expert_run(MT_CPU_LEVEL_SCALAR, &j32) == MT_OK;
        for (int i = 0; i < 64 && ran; i++) {
            same = same && fabsf(y16[i] - yb[i]) <= 1e-5f && fabsf(y32[i] - yb[i]) <= 1e-5f;
        }
        tap_ok(ran && same, "F16 weights (a layer) and F32 weights (one expert) run and give the "
               "BF16 expert's output: %s", ran ? (same ? "same" : "differs") : mt_last_error());
        memset(x, 0, sizeof(x));
    }
    tap_ok(mt_cpu_moe_run(moe, NULL, 0, 0) == MT_OK, "a layer of no jobs runs (and reads none)");
    mt_cpu_moe_destroy(moe);
    expert_free(&e);
}

/*
 * Which decode kernels this CPU runs (mt_cpu_experts_decode_usable, against the compiler's
 * cpuid reading); the bf16 dot kernels (cpu/experts_dot.c) where it has them: with 3 terms an
 * activation keeps all 24 bits of fp32. x0 = 1 + 2^-9 + 2^-20 against x1 = -(1 + 2^-9), both
 * weights 1: the exact dot product is 2^-20, which only the third term carries (2 terms give
 * 0). A new run reads its input again though the buffer is the same (the kernel keeps it
 * packed). And an expert whose gate is BF16 and whose up is FP8 (the same input, packed in two
 * orders) matches the scalar path.
 */

/*
 * Whether the kernel lists the CPU flag `name` in /proc/cpuinfo (its names: avx512_bf16, ...):
 * a reading of cpuid independent of cpu/isa.c, and Linux clears a flag whose registers the OS
 * does not save. 1 or 0; -1 where /proc/cpuinfo cannot be read. (The compilers'
 * __builtin_cpu_supports would do, but clang 14 knows neither "f16c" nor "avx512fp16".)
 */
static int
cpu_flag(const char *name)
{
    static char flags[8192];
    static int state; /* 0: not read yet, 1: read, -1: unreadable */

    if (state == 0) {
        FILE *f = fopen("/proc/cpuinfo", "r");
        char line[8192];

        state = -1;
        while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
            if (strncmp(line, "flags", 5) == 0 && strchr(line, ':') != NULL) {
                snprintf(flags, sizeof(flags), " %s", strchr(line, ':') + 1);
                flags[strcspn(flags, "\n")] = ' ';
                state = 1;
                break;
            }
        }
        if (f != NULL) {
            fclose(f);
        }
    }
    if (state < 0) {
        return -1;
    }
    char word[64];
    snprintf(word, sizeof(word), " %s ", name);
    return strstr(flags, word) != NULL;
}

static void
test_dot_kernels(void)
{
    enum { C = 64 };
    float x[C] = {1.0f + 0x1p-9f + 0x1p-20f, -(1.0f + 0x1p-9f)};
    uint16_t wb[C] = {0x3f80, 0x3f80};
    uint8_t w8[C] = {0x38, 0x38};
    float scale = 1.0f;
    struct mt_cpu_weight b = {.dtype = MT_DTYPE_BF16, .rows = 1, .cols = C, .data = wb};
    struct mt_cpu_weight f = {
        .dtype = MT_DTYPE_F8_E4M3, .rows = 1, .cols = C, .data = w8, .scale = &scale};
    float yb = -1.0f;
    float yf = -1.0f;

    bool vbmi = cpu_flag("avx512f") == 1 && cpu_flag("avx512bw") == 1 &&
                cpu_flag("avx512vbmi") == 1;
    tap_ok(mt_cpu_experts_decode_usable(0) &&
               (cpu_flag("avx512f") < 0 || (mt_cpu_experts_decode_usable(1) == vbmi &&
                                            mt_cpu_experts_decode_usable(3) ==
                                                (vbmi && cpu_flag("avx512_bf16") == 1))),
           "decode kernel 0 is usable everywhere; 1 where the CPU has AVX512-VBMI, 2 and 3 "
           "where it has AVX512-BF16 too");
    if (!mt_cpu_experts_decode_usable(3)) {
        tap_ok(true, "bf16 dot kernels # SKIP no AVX512-BF16 and VBMI");
        return;
    }
    mt_cpu_experts_decode = 3;
    mt_cpu_kernels_dot.rows_bf16(&b, 0, 1, x, C, 1, &yb, 1);
    mt_cpu_kernels_dot.rows_fp8(&f, 0, 1, x, C, 1, &yf, 1);
    tap_ok(yb == 0x1p-20f && yf == 0x1p-20f,
           "bf16 dot, 3 terms: all 24 bits of x count (bf16 %a, fp8 %a, want 0x1p-20)",
           (double)yb, (double)yf);
    /* a new run (mt_cpu_experts_gen bumped) on new values in the same buffer reads them */
    x[0] = 3.0f;
    atomic_fetch_add(&mt_cpu_experts_gen, 1);
    mt_cpu_kernels_dot.rows_fp8(&f, 0, 1, x, C, 1, &yf, 1);
    tap_ok(yf == 2.0f - 0x1p-9f, "bf16 dot: a new run reads new values in the same input buffer "
           "(got %a, want %a)", (double)yf, (double)(2.0f - 0x1p-9f));

    struct expert e;
    float *xe = randv(128);
    float want[128];
    float got[128];

    expert_make(&e, MT_DTYPE_BF16, 128, 64);
    free(e.mem[2]); /* up again, as FP8 */
    free(e.mem[3]);
    weight_make(&e.up, &e.mem[2], &e.mem[3], MT_DTYPE_F8_E4M3, 64, 128);
    struct mt_cpu_expert_job job = {&e.gate, &e.up, &e.down, 1, xe, want};

    tap_ok(mt_cpu_expert_run(MT_CPU_LEVEL_SCALAR, &job) == MT_OK, "scalar runs");
    job.y = got;
    tap_ok(mt_cpu_expert_run(MT_CPU_LEVEL_AVX512, &job) == MT_OK, "avx512 runs");
    close_enough("bf16 gate, fp8 up, avx512 dot=3 vs scalar", got, want, 128);
    mt_cpu_experts_decode = 0;
    expert_free(&e);
    free(xe);
}

/* A provider over in-memory experts, counting acquires minus releases. */
struct fake_provider {
    struct expert *e;
    int held;
};

static mt_status_t
fake_acquire(void *self, int layer, int expert, struct mt_expert *out)
{
    struct fake_provider *f = self;

    f->held++;
    *out = (struct mt_expert){f->e[expert].gate, f->e[expert].up, f->e[expert].down};
    return MT_OK;
}

static void
fake_release(void *self, int layer, int expert)
{
    ((struct fake_provider *)self)->held--;
}

static void
fake_destroy(void *self)
{
}

/* The CPU-team executor against the reference executor on the same tasks. */
static void
test_executor(struct mt_cpu_team *team)
{
    enum { N = 3, HID = 256, INT = 128 };
    static const struct mt_expert_provider_ops ops = {
        .name = "fake",
        .acquire = fake_acquire,
        .release = fake_release,
        .destroy = fake_destroy,
    };
    static const int ms[N] = {2, 1, 5};
    struct expert e[N];
    struct fake_provider f = {e, 0};
    struct mt_expert_provider prov = {&ops, &f};
    struct mt_expert_task tasks[N];
    float *want[N];
    struct mt_executor *team_ex = NULL;
    struct mt_executor *ref_ex = NULL;

    for (int j = 0; j < N; j++) {
        expert_make(&e[j], j == 1 ? MT_DTYPE_BF16 : MT_DTYPE_F8_E4M3, HID, INT);
        tasks[j] = (struct mt_expert_task){7, j, ms[j], randv((size_t)ms[j] * HID),
                                           malloc((size_t)ms[j] * HID * sizeof(float))};
        want[j] = malloc((size_t)ms[j] * HID * sizeof(float));
    }
    tap_ok(mt_executor_cpu_team_create(&prov, team, &team_ex) == MT_OK &&
               mt_executor_ref_create(&prov, &ref_ex) == MT_OK,
           "cpu-team and reference executors created");
    for (int j = 0; j < N; j++) {
        struct mt_expert_task t = tasks[j];

        t.y = want[j];
        ref_ex->ops->submit(ref_ex->self, &t, 1);
    }
    tap_ok(ref_ex->ops->wait(ref_ex->self) == MT_OK, "reference executor runs");
    tap_ok(team_ex->ops->submit(team_ex->self, tasks, N) == MT_OK &&
               team_ex->ops->wait(team_ex->self) == MT_OK,
           "cpu-team executor runs (%s)", team_ex->ops->name);
    for (int j = 0; j < N; j++) {
        char what[64];

        snprintf(what, sizeof(what), "cpu-team executor vs reference, expert %d (m=%d)", j, ms[j]);
        close_enough(what, tasks[j].y, want[j], (size_t)ms[j] * HID);
    }
    tap_ok(f.held == 0, "every acquired expert was released (%d held)", f.held);
    mt_executor_destroy(team_ex);
    mt_executor_destroy(ref_ex);
    for (int j = 0; j < N; j++) {
        expert_free(&e[j]);
        free((void *)tasks[j].x);
        free(tasks[j].y);
        free(want[j]);
    }
}

/*
 * mt_cpu_isa_detect against the kernel's reading of cpuid and XCR0 (cpu_flag: Linux lists a
 * unit only where the OS saves its registers too, as cpu/isa.h asks), for each unit the kernel
 * families need; the level names; and MOETIER_ISA: every level up to the best this CPU runs is
 * chosen as asked, every one above it is MT_ERR_UNSUPPORTED. (AMX is left out of the
 * comparison: Linux lists amx_tile before a process has asked for its state.)
 */
static void
test_isa(enum mt_cpu_level max)
{
    static const char *const names[4] = {"scalar", "avx2", "avx512", "amx"};
    struct mt_cpu_isa isa;
    enum mt_cpu_level level;
    bool names_ok = strcmp(mt_cpu_level_name((enum mt_cpu_level)4), "?") == 0;

    mt_cpu_isa_detect(&isa);
    if (cpu_flag("fpu") < 0) {
        tap_ok(true, "mt_cpu_isa_detect against /proc/cpuinfo # SKIP no /proc/cpuinfo flags");
        tap_ok(true, "the best level against /proc/cpuinfo # SKIP no /proc/cpuinfo flags");
    } else {
        tap_ok(isa.avx2 == cpu_flag("avx2") && isa.fma == cpu_flag("fma") &&
                   isa.f16c == cpu_flag("f16c") && isa.avx512f == cpu_flag("avx512f") &&
                   isa.avx512bw == cpu_flag("avx512bw") && isa.avx512vl == cpu_flag("avx512vl") &&
                   isa.avx512_vnni == cpu_flag("avx512_vnni") &&
                   isa.avx512_bf16 == cpu_flag("avx512_bf16") &&
                   isa.avx512_fp16 == cpu_flag("avx512_fp16"),
               "mt_cpu_isa_detect agrees with /proc/cpuinfo: avx2 %d fma %d f16c %d "
               "avx512 f %d bw %d vl %d vnni %d bf16 %d fp16 %d", isa.avx2, isa.fma, isa.f16c,
               isa.avx512f, isa.avx512bw, isa.avx512vl, isa.avx512_vnni, isa.avx512_bf16,
               isa.avx512_fp16);
        bool has2 = cpu_flag("avx2") && cpu_flag("fma") && cpu_flag("f16c");
        bool has512 = has2 && cpu_flag("avx512f") && cpu_flag("avx512bw") &&
                      cpu_flag("avx512vl");
        tap_ok((max < MT_CPU_LEVEL_AVX2 || has2) && (max < MT_CPU_LEVEL_AVX512 || has512) &&
                   (!has2 || max >= MT_CPU_LEVEL_AVX2) &&
                   (!has512 || max >= MT_CPU_LEVEL_AVX512),
               "the best level (%s) is the best whose units the CPU has (AVX2 + FMA + F16C; "
               "AVX-512 F + BW + VL)", mt_cpu_level_name(max));
    }
    for (int l = 0; l < 4; l++) {
        mt_status_t st;

        names_ok = names_ok && strcmp(mt_cpu_level_name((enum mt_cpu_level)l), names[l]) == 0;
        setenv("MOETIER_ISA", names[l], 1);
        level = (enum mt_cpu_level)-1;
        mt_log_set_quiet(true);
        st = mt_cpu_level_select(&level);
        mt_log_set_quiet(false);
        tap_ok(l <= (int)max ? st == MT_OK && level == (enum mt_cpu_level)l
                             : st == MT_ERR_UNSUPPORTED,
               "MOETIER_ISA=%s %s", names[l],
               l <= (int)max ? "selects it" : "is refused (MT_ERR_UNSUPPORTED) on this CPU");
    }
    unsetenv("MOETIER_ISA");
    tap_ok(names_ok, "the level names: scalar, avx2, avx512, amx, and ? beyond");
}

int
main(void)
{
    enum mt_cpu_level max = mt_cpu_level_max();
    enum mt_cpu_level level;
    struct mt_cpu_team *team;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

    mt_rng_init(&rng, seed);
    tap_diag("seed %llu; kernel families up to %s; decode kernels: table widening %s, bf16 dot %s",
             (unsigned long long)seed, mt_cpu_level_name(max),
             mt_cpu_experts_decode_usable(1) ? "usable" : "absent",
             mt_cpu_experts_decode_usable(3) ? "usable (3 and 2 terms)" : "absent");

    /* MOETIER_ISA */
    setenv("MOETIER_ISA", "scalar", 1);
    tap_ok(mt_cpu_level_select(&level) == MT_OK && level == MT_CPU_LEVEL_SCALAR,
           "MOETIER_ISA=scalar selects scalar");
    setenv("MOETIER_ISA", "sse9", 1);
    mt_log_set_quiet(true);
    tap_ok(mt_cpu_level_select(&level) == MT_ERR_INVAL, "MOETIER_ISA=sse9 is refused");
    mt_log_set_quiet(false);
    unsetenv("MOETIER_ISA");
    tap_ok(mt_cpu_level_select(&level) == MT_OK && level == max, "default is the best level");
    test_isa(max);

    for (int d = 0; d < 2; d++) {
        enum mt_dtype dt = d == 0 ? MT_DTYPE_F8_E4M3 : MT_DTYPE_BF16;

        test_expert(dt, 256, 128, 1, max);
        test_expert(dt, 384, 256, 5, max);
        test_expert(dt, 512, 160, 33, max);  /* inter not a multiple of 128; 2 token blocks */
        test_expert(dt, 200, 72, 3, max);    /* columns not a multiple of 32: scalar fallback */
        test_expert(dt, 130, 66, 2, max);    /* ... nor of 4: the scalar kernel's tail columns */
        test_expert(dt, 128, 66, 3, max);    /* rows no multiple of 4: the tiles' last rows */
        test_expert(dt, 7168, 2048, 1, max); /* the real V3.2 expert */
        test_expert(dt, 7168, 2048, 3, max);
        test_expert(dt, 7168, 2048, 37, max); /* prefill: AMX tiles where the CPU has them */
        test_expert(dt, 256, 200, 16, max);   /* the smallest prefill, rows not a multiple of 32 */
        /* prefill over 2 super blocks of 256 tokens (300 = 256 + 44), a K chunk of 288 after
         * one of 512 (hidden 800), rows 128 + 32 */
        test_expert(dt, 800, 160, 300, max);
        /* the golden models' experts (v32-tiny-a 64 -> 32, v32-tiny-b 96 -> 48: down's K of 48
         * is no multiple of 32, synth-fp8 256 -> 64) with enough tokens for the prefill kernels */
        test_expert(dt, 64, 32, 24, max);
        test_expert(dt, 96, 48, 40, max);
        test_expert(dt, 256, 64, 17, max);
    }
    test_swiglu(max);
    test_dot_kernels();
    test_inf_activation(MT_DTYPE_F8_E4M3, max);
    test_inf_activation(MT_DTYPE_BF16, max);
    if (max >= MT_CPU_LEVEL_AMX) {
        /* the other AMX kernels and settings (the default: the tiles kernel, K chunk 512; the
         * few-token kernel, which takes up to 64 tokens by default, off until the end) */
        int kc = mt_cpu_experts_amx_kc;
        int pf = mt_cpu_experts_amx_pf;
        int small = mt_cpu_experts_amx_small;

        mt_cpu_experts_amx_small = 0;

        mt_cpu_experts_amx_kc = 0; /* the tiles kernel over all of K at once */
        test_expert(MT_DTYPE_F8_E4M3, 7168, 2048, 37, max);
        test_expert(MT_DTYPE_BF16, 800, 160, 300, max);
        mt_cpu_experts_amx_kc = 1024; /* a chunk larger than every K here but 7168 */
        mt_cpu_experts_amx_pf = 4096; /* with software prefetch (the default has none) */
        test_expert(MT_DTYPE_F8_E4M3, 800, 160, 300, max);
        mt_cpu_experts_amx_kc = kc;
        mt_cpu_experts_amx_order = 1; /* row blocks outer, with its own prefetch */
        test_expert(MT_DTYPE_F8_E4M3, 7168, 2048, 37, max);
        mt_cpu_experts_amx_pf = pf;
        test_expert(MT_DTYPE_BF16, 800, 160, 300, max);
        mt_cpu_experts_amx_order = 0;
        mt_cpu_experts_amx_tiles = 0; /* rows as A: the blocked kernel, then the panel one */
        mt_cpu_experts_amx_kc = kc;
        test_expert(MT_DTYPE_F8_E4M3, 7168, 2048, 37, max);
        test_expert(MT_DTYPE_F8_E4M3, 256, 200, 16, max);
        test_expert(MT_DTYPE_BF16, 800, 160, 300, max);
        mt_cpu_experts_amx_kc = 0;
        test_expert(MT_DTYPE_F8_E4M3, 7168, 2048, 37, max);
        test_expert(MT_DTYPE_BF16, 800, 160, 300, max);
        mt_cpu_experts_amx_kc = 1024;
        test_expert(MT_DTYPE_F8_E4M3, 800, 160, 300, max);
        mt_cpu_experts_amx_kc = kc;
        mt_cpu_experts_amx_tiles = 1;
        /* token super blocks of 32, 64 and 128 (C in L1 across the K chunks), 300 tokens: a
         * partial last block; the conversion's prefetch (FP8 and BF16, chunks past K's end) */
        for (int sb = 32; sb <= 128; sb *= 2) {
            mt_cpu_experts_amx_super = sb;
            mt_cpu_experts_amx_cvt_pf = sb == 64;
            mt_cpu_experts_amx_pf = sb == 32 ? 4096 : 0; /* next chunk's A tiles prefetched */
            test_expert(MT_DTYPE_F8_E4M3, 7168, 2048, 37, max);
            test_expert(MT_DTYPE_F8_E4M3, 800, 160, 300, max);
            test_expert(MT_DTYPE_BF16, 800, 160, 300, max);
        }
        mt_cpu_experts_amx_super = 256;
        mt_cpu_experts_amx_pf = pf;
        mt_cpu_experts_amx_cvt_pf = 0; /* the conversion without its prefetch (default: with) */
        test_expert(MT_DTYPE_F8_E4M3, 7168, 2048, 37, max);
        test_expert(MT_DTYPE_BF16, 800, 160, 300, max);
        mt_cpu_experts_amx_cvt_pf = 1;
        /* chunks summed by vector adds: 14 chunks of 512 at K 7168; one and a partial one at K
         * 800, into partial C blocks of y (300 tokens, 160 rows); K 160 in one chunk (no add);
         * all of K in one chunk; super blocks of 32 */
        mt_cpu_experts_amx_cadd = 1;
        test_expert(MT_DTYPE_F8_E4M3, 7168, 2048, 37, max);
        test_expert(MT_DTYPE_F8_E4M3, 800, 160, 300, max);
        test_expert(MT_DTYPE_BF16, 800, 160, 300, max);
        mt_cpu_experts_amx_kc = 0;
        test_expert(MT_DTYPE_F8_E4M3, 800, 160, 300, max);
        mt_cpu_experts_amx_kc = kc;
        mt_cpu_experts_amx_super = 32;
        test_expert(MT_DTYPE_F8_E4M3, 800, 160, 300, max);
        mt_cpu_experts_amx_super = 256;
        /* gate and up of 72 rows in two K chunks: the last row block's second tile lies wholly
         * past the rows, and its sum (zero) must not be stored */
        mt_cpu_experts_amx_kc = 64;
        test_expert(MT_DTYPE_F8_E4M3, 128, 72, 45, max);
        mt_cpu_experts_amx_kc = kc;
        mt_cpu_experts_amx_cadd = 0;
        /* K chunk 256 with the conversion prefetch (the default before 512): 28 chunks at K
         * 7168; 3 x 256 + 32 at K 800 */
        mt_cpu_experts_amx_kc = 256;
        test_expert(MT_DTYPE_F8_E4M3, 7168, 2048, 37, max);
        test_expert(MT_DTYPE_F8_E4M3, 800, 160, 300, max);
        test_expert(MT_DTYPE_BF16, 7168, 2048, 37, max);
        mt_cpu_experts_amx_kc = kc;
        /* the few-token kernel (default up to 64 tokens): the real shape; gate and up of 80
         * rows (not a multiple of 32; down's K of 80 takes the scalar path); K of 64 and 192 (a
         * scale block cut short); more than one block of 32 tokens (37, 300: K 832 = 6.5 scale
         * blocks); BF16 and K of 96 (not a multiple of 64) stay on the tiles kernel */
        mt_cpu_experts_amx_small = small;
        test_amx_small(MT_DTYPE_F8_E4M3, 7168, 2048, 32);
        test_amx_small(MT_DTYPE_F8_E4M3, 7168, 2048, 17);
        test_amx_small(MT_DTYPE_F8_E4M3, 128, 80, 16);
        test_amx_small(MT_DTYPE_F8_E4M3, 128, 80, MT_CPU_PREFILL_MIN_SMALL);
        test_amx_small(MT_DTYPE_F8_E4M3, 128, 80, MT_CPU_PREFILL_MIN_SMALL - 1);
        test_amx_small(MT_DTYPE_F8_E4M3, 192, 64, 29);
        test_amx_small(MT_DTYPE_F8_E4M3, 7168, 2048, 37);
        test_amx_small(MT_DTYPE_F8_E4M3, 832, 192, 300);
        test_amx_small(MT_DTYPE_BF16, 7168, 2048, 20);
        test_amx_small(MT_DTYPE_F8_E4M3, 96, 48, 24);
        /* 33-64 tokens in 16-row blocks over 3 or 4 token tiles (72 rows: a block cut short),
           and in blocks of 32 x 32 with mt_cpu_experts_amx_small_wide off */
        test_amx_small(MT_DTYPE_F8_E4M3, 7168, 2048, 64);
        test_amx_small(MT_DTYPE_F8_E4M3, 128, 72, 45);
        mt_cpu_experts_amx_small_wide = 0;
        test_amx_small(MT_DTYPE_F8_E4M3, 7168, 2048, 37);
        mt_cpu_experts_amx_small_wide = 1;
        mt_cpu_experts_amx_small = 0; /* the tiles kernel, whose input amx_rows packs */
        test_amx_repack();
        mt_cpu_experts_amx_small = small;
    }
    if (mt_cpu_team_create(-1, 0, &team) != MT_OK) {
        tap_ok(false, "thread team created");
        return tap_done();
    }
    tap_diag("team of %d threads, %s", mt_cpu_team_size(team),
             mt_cpu_team_bound(team) ? "pinned" : "unpinned");
    for (int l = 0; l <= (int)max; l++) {
        int dots[4];
        int nd = dots_of((enum mt_cpu_level)l, dots);

        for (int d = 0; d < nd; d++) {
            mt_cpu_experts_decode = dots[d];
            test_layer(team, (enum mt_cpu_level)l, MT_DTYPE_F8_E4M3, 0);
            test_layer(team, (enum mt_cpu_level)l, MT_DTYPE_BF16, 0);
        }
        mt_cpu_experts_decode = 0;
    }
    test_layer(team, max, MT_DTYPE_F8_E4M3, 1);
    int kc = mt_cpu_experts_amx_kc;

    mt_cpu_experts_amx_kc = 0;
    test_layer(team, max, MT_DTYPE_F8_E4M3, 0);
    mt_cpu_experts_amx_tiles = 0;
    test_layer(team, max, MT_DTYPE_F8_E4M3, 0);
    mt_cpu_experts_amx_kc = kc;
    test_layer(team, max, MT_DTYPE_F8_E4M3, 0);
    mt_cpu_experts_amx_tiles = 1;
    mt_cpu_experts_prefill_unit = 32; /* prefill units of 32 rows (the default is 128) */
    test_layer(team, max, MT_DTYPE_F8_E4M3, 0);
    mt_cpu_experts_prefill_unit = 128;
    mt_cpu_experts_overlap = 0; /* the barrier between the phases (the default overlaps) */
    test_layer(team, max, MT_DTYPE_F8_E4M3, 0);
    test_layer(team, max, MT_DTYPE_BF16, 3);
    mt_cpu_experts_overlap = 1;
    mt_cpu_experts_dynamic = 0; /* the fixed shares per thread (the default hands out units) */
    test_layer(team, max, MT_DTYPE_F8_E4M3, 0);
    test_layer(team, max, MT_DTYPE_BF16, 3);
    /* rows that are not a multiple of the shares' 4-row grain: the last share ends at the
     * last row (it lost one where rows % 4 == 1) */
    test_layer_shape(team, max, MT_DTYPE_BF16, 0, 129, 65);
    test_layer_shape(team, max, MT_DTYPE_F8_E4M3, 3, 257, 129);
    mt_cpu_experts_dynamic = 1;
    test_layer_shape(team, max, MT_DTYPE_BF16, 0, 129, 65);
    test_layer_shape(team, max, MT_DTYPE_BF16, 0, 64, 32); /* the golden models' experts */
    test_layer_shape(team, max, MT_DTYPE_BF16, 0, 96, 48);
    for (int l = 0; l <= (int)max; l++) {
        test_ws_fault(team, (enum mt_cpu_level)l);
    }
    test_bad_jobs(team);
    test_executor(team);
    mt_cpu_team_destroy(team);
    return tap_done();
}
