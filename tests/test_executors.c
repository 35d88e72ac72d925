/* SPDX-License-Identifier: MIT */
/*
 * test_executors.c - every expert executor against the reference executor, through the
 * cross-backend harness (tests/harness.h), on FP8, BF16 and F32 experts, odd shapes (not
 * multiples of the 128x128 scale blocks), token counts 1..9 and the real V3.2 expert shape.
 *
 * Executors here: the reference itself over dequantized weights (FP8 and BF16 against their
 * exact fp32 values: the reference's dequantization), the CPU-team executor (SIMD kernels), and
 * the harness's own self-test (a dropped task and a 5% error must be caught). Backends add
 * their executor to this file. Beside them, the tiered provider that executors acquire through:
 * each expert from the provider of its tier.
 */
#include <config.h>

#include "cpu/experts.h"
#include "cpu/ref_ops.h"
#include "cpu/team.h"
#include "runtime/base/clock.h"
#include "runtime/engine/executor.h"
#include "runtime/engine/executor_cpu_team.h"
#include "runtime/engine/expert_provider.h"
#include "runtime/plan/planner.h"
#include "tests/harness.h"
#include "tests/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a provider that hands out fp32 copies of another provider's experts ------------------ */

struct deq {
    struct mt_expert_provider *inner; /* borrowed */
    float *bufs[3];                   /* owned: the last acquired expert, dequantized */
};

static bool
deq_weight(const struct mt_cpu_weight *w, float **buf, struct mt_cpu_weight *out)
{
    free(*buf);
    *buf = malloc((size_t)(w->rows * w->cols) * sizeof(float));
    if (*buf == NULL) {
        return false;
    }
    for (int64_t r = 0; r < w->rows; r++) {
        mt_cpu_weight_row(w, r, *buf + r * w->cols);
    }
    *out = (struct mt_cpu_weight){MT_DTYPE_F32, *buf, NULL, w->rows, w->cols};
    return true;
}

static mt_status_t
deq_acquire(void *self, int layer, int expert, struct mt_expert *out)
{
    struct deq *d = self;
    struct mt_expert w;
    mt_status_t st = d->inner->ops->acquire(d->inner->self, layer, expert, &w);

    if (st != MT_OK) {
        return st;
    }
    bool ok = deq_weight(&w.gate, &d->bufs[0], &out->gate) &&
              deq_weight(&w.up, &d->bufs[1], &out->up) &&
              deq_weight(&w.down, &d->bufs[2], &out->down);
    d->inner->ops->release(d->inner->self, layer, expert);
    return ok ? MT_OK : mt_fail(MT_ERR_NOMEM, 0, "cannot dequantize an expert");
}

static void
deq_release(void *self, int layer, int expert)
{
    (void)self;
    (void)layer;
    (void)expert;
}

static void
deq_destroy(void *self)
{
    struct deq *d = self;
    for (int i = 0; i < 3; i++) {
        free(d->bufs[i]);
    }
}

static const struct mt_expert_provider_ops deq_ops = {
    .name = "dequantized", .acquire = deq_acquire, .release = deq_release, .destroy = deq_destroy,
};

/* ---- deliberately wrong executors: the harness must catch them ---------------------------- */

struct wrong {
    struct mt_executor *ref; /* borrowed */
    int mode;                /* 0: drop the last task, 1: outputs 5% too large */
    const struct mt_expert_task *last;
    int n;
};

static mt_status_t
wrong_submit(void *self, const struct mt_expert_task *tasks, int n)
{
    struct wrong *w = self;
    w->last = tasks;
    w->n = n;
    return w->ref->ops->submit(w->ref->self, tasks, w->mode == 0 ? n - 1 : n);
}

static mt_status_t
wrong_wait(void *self)
{
    struct wrong *w = self;
    mt_status_t st = w->ref->ops->wait(w->ref->self);
    for (int i = 0; w->mode == 1 && i < w->n; i++) {
        for (int j = 0; j < w->last[i].m * 64; j++) {
            w->last[i].y[j] *= 1.05f;
        }
    }
    return st;
}

static void
wrong_destroy(void *self)
{
    (void)self;
}

static const struct mt_executor_ops wrong_ops = {"wrong", wrong_submit, wrong_wait, wrong_destroy,
                                                 NULL};

static void
test_dtype(enum mt_dtype dt, int layers, int experts, int hidden, int inter, const int *ms,
           int n_ms)
{
    struct mt_expert_provider *p = NULL;
    struct mt_executor *ex = NULL;
    struct deq d = {0};
    struct mt_expert_provider dp = {&deq_ops, &d};
    char name[128];

    snprintf(name, sizeof(name), "reference on dequantized %s experts %dx%d", mt_dtype_name(dt),
             hidden, inter);
    if (!tap_ok(mt_harness_provider_create(layers, experts, hidden, inter, dt, 11, &p) == MT_OK &&
                    (d.inner = p, mt_executor_ref_create(&dp, &ex) == MT_OK),
                "%s: set up", name)) {
        goto out;
    }
    mt_harness_executor(name, ex, p, layers, experts, hidden, ms, n_ms,
                        mt_harness_tol_for(MT_DTYPE_F32), 7, false);
    tap_ok(mt_harness_provider_outstanding(p) == 0, "%s: every acquire was released", name);
out:
    mt_executor_destroy(ex);
    deq_destroy(&d);
    mt_expert_provider_destroy(p);
}

static void
test_self(void)
{
    struct mt_expert_provider *p = NULL;
    struct mt_executor *ref = NULL;
    struct wrong w = {0};
    struct mt_executor wex = {&wrong_ops, &w};
    int ms[4] = {1, 3, 2, 5};

    if (!tap_ok(mt_harness_provider_create(2, 5, 64, 32, MT_DTYPE_BF16, 3, &p) == MT_OK &&
                    mt_executor_ref_create(p, &ref) == MT_OK,
                "harness self-test: set up")) {
        goto out;
    }
    w.ref = ref;
    w.mode = 0;
    tap_ok(!mt_harness_executor("drops a task", &wex, p, 2, 5, 64, ms, 4,
                                mt_harness_tol_for(MT_DTYPE_F32), 1, true),
           "harness self-test: an executor that drops a task fails");
    w.mode = 1;
    tap_ok(!mt_harness_executor("5% off", &wex, p, 2, 5, 64, ms, 4,
                                mt_harness_tol_for(MT_DTYPE_BF16), 1, true),
           "harness self-test: an executor 5%% off fails at the bf16 tolerance");
    tap_ok(mt_harness_executor("the reference itself", ref, p, 2, 5, 64, ms, 4,
                               mt_harness_tol_for(MT_DTYPE_F32), 1, true),
           "harness self-test: the reference passes against itself");
out:
    mt_executor_destroy(ref);
    mt_expert_provider_destroy(p);
}

/* ---- the tiered provider: each expert from the provider of its tier ----------------------- */

#define REC_LAYERS 3
#define REC_EXPERTS 5

/* A provider that records what it was asked; the weights it hands out point at itself. */
struct rec {
    int cap;                                       /* its capacity op's answer */
    int acquired[REC_LAYERS * REC_EXPERTS];
    int released[REC_LAYERS * REC_EXPERTS];
    int n_prefetch;                                /* prefetch calls */
    int pf_layer;                                  /* the last prefetch's layer and experts */
    int pf_experts[REC_EXPERTS];
    int pf_n;
    mt_status_t acquire_st;                        /* what acquire returns (after counting) */
};

static void
rec_prefetch(void *self, int layer, const int *experts, int n)
{
    struct rec *r = self;

    r->n_prefetch++;
    r->pf_layer = layer;
    r->pf_n = n;
    memcpy(r->pf_experts, experts, (size_t)MT_MIN(n, REC_EXPERTS) * sizeof(*experts));
}

static mt_status_t
rec_acquire(void *self, int layer, int expert, struct mt_expert *out)
{
    struct rec *r = self;

    r->acquired[layer * REC_EXPERTS + expert]++;
    memset(out, 0, sizeof(*out));
    out->gate.data = r;
    return r->acquire_st;
}

static void
rec_release(void *self, int layer, int expert)
{
    struct rec *r = self;

    r->released[layer * REC_EXPERTS + expert]++;
}

static int
rec_capacity(void *self)
{
    return ((struct rec *)self)->cap;
}

static void
rec_destroy(void *self)
{
    (void)self;
}

static const struct mt_expert_provider_ops rec_ops = {
    .name = "recorder", .prefetch = rec_prefetch, .acquire = rec_acquire,
    .release = rec_release, .capacity = rec_capacity, .destroy = rec_destroy,
};

/*
 * expert_provider.h: experts whose tier is MT_TIER_NVME come from nvme, all others from dram,
 * by the tiers given at create (copied). Acquire and release go to the same provider; prefetch
 * (the engine announces streamed experts only) reaches nvme alone; the capacity is nvme's (the
 * slots only streamed experts hold).
 */
static void
test_tiered(void)
{
    static const uint8_t kinds[] = {MT_TIER_NVME, MT_TIER_DRAM_CPU, MT_TIER_NVME, MT_TIER_GPU,
                                    MT_TIER_DRAM_PCIE, MT_TIER_NVME, MT_TIER_NVME};
    uint8_t tiers[REC_LAYERS * REC_EXPERTS];
    struct rec dram = {.cap = 9};
    struct rec nvme = {.cap = 4};
    struct mt_expert_provider dp = {&rec_ops, &dram};
    struct mt_expert_provider np = {&rec_ops, &nvme};
    struct mt_expert_provider *t = NULL;
    int wrong_acquire = 0;
    int wrong_release = 0;
    int n_nvme = 0;

    for (int i = 0; i < REC_LAYERS * REC_EXPERTS; i++) {
        tiers[i] = kinds[i % (int)sizeof(kinds)];
    }
    if (!tap_ok(mt_expert_provider_tiered_create(tiers, REC_LAYERS, REC_EXPERTS, &dp, &np, &t) ==
                    MT_OK,
                "tiered provider: created")) {
        return;
    }
    memset(tiers, MT_TIER_DRAM_CPU, sizeof(tiers)); /* the provider keeps its own copy */
    for (int l = 0; l < REC_LAYERS; l++) {
        for (int x = 0; x < REC_EXPERTS; x++) {
            int i = l * REC_EXPERTS + x;
            bool nv = kinds[i % (int)sizeof(kinds)] == MT_TIER_NVME;
            struct rec *want = nv ? &nvme : &dram;
            struct rec *other = nv ? &dram : &nvme;
            struct mt_expert w;

            n_nvme += nv;
            if (t->ops->acquire(t->self, l, x, &w) != MT_OK || w.gate.data != want ||
                want->acquired[i] != 1 || other->acquired[i] != 0) {
                wrong_acquire++;
            }
            t->ops->release(t->self, l, x);
            if (want->released[i] != 1 || other->released[i] != 0) {
                wrong_release++;
            }
        }
    }
    tap_ok(wrong_acquire == 0,
           "tiered provider: %d NVMe experts come from nvme, the other %d from dram (%d wrong)",
           n_nvme, REC_LAYERS * REC_EXPERTS - n_nvme, wrong_acquire);
    tap_ok(wrong_release == 0,
           "tiered provider: each release goes to the provider that served the acquire (%d wrong)",
           wrong_release);
    int ids[2] = {0, 2};
    t->ops->prefetch(t->self, 1, ids, 2);
    tap_ok(nvme.n_prefetch == 1 && nvme.pf_layer == 1 && nvme.pf_n == 2 &&
               nvme.pf_experts[0] == 0 && nvme.pf_experts[1] == 2 && dram.n_prefetch == 0,
           "tiered provider: a prefetch reaches nvme alone, as given (%d and %d calls)",
           nvme.n_prefetch, dram.n_prefetch);
    tap_ok(mt_expert_provider_capacity(t) == 4,
           "tiered provider: its capacity is nvme's slots (%d; nvme 4, dram 9)",
           mt_expert_provider_capacity(t));
    /* a failed read of a streamed expert is the caller's failure (expert 0 of layer 0: NVMe) */
    struct mt_expert w;
    nvme.acquire_st = MT_ERR_IO;
    mt_status_t st = t->ops->acquire(t->self, 0, 0, &w);
    nvme.acquire_st = MT_OK;
    tap_ok(st == MT_ERR_IO, "tiered provider: a failed acquire from nvme fails its acquire (%s)",
           mt_status_str(st));
    mt_expert_provider_destroy(t);

    /* prefetch is optional (expert_provider.h): an nvme provider without it makes the tiered
       prefetch a no-op, not a call through NULL */
    static const struct mt_expert_provider_ops no_pf_ops = {
        .name = "recorder, no prefetch", .acquire = rec_acquire, .release = rec_release,
        .capacity = rec_capacity, .destroy = rec_destroy,
    };
    struct mt_expert_provider np2 = {&no_pf_ops, &nvme};
    if (tap_ok(mt_expert_provider_tiered_create(kinds, 1, REC_EXPERTS, &dp, &np2, &t) == MT_OK,
               "tiered provider: created over an nvme provider without prefetch")) {
        /* counts from before: the recorder still holds the earlier prefetch */
        int nvme_before = nvme.n_prefetch, dram_before = dram.n_prefetch;
        t->ops->prefetch(t->self, 0, ids, 2);
        tap_ok(nvme.n_prefetch == nvme_before && dram.n_prefetch == dram_before,
               "tiered provider: a prefetch with no nvme prefetch reaches neither provider "
               "(%d and %d new calls)", nvme.n_prefetch - nvme_before,
               dram.n_prefetch - dram_before);
        mt_expert_provider_destroy(t);
    }
}

/* ---- failures: wait() returns the first one, once ------------------------------------------ */

/* A harness provider whose expert 3 cannot be read (MT_ERR_IO) and expert 4 is corrupt
 * (MT_ERR_FORMAT). */
static mt_status_t
broken3_acquire(void *self, int layer, int expert, struct mt_expert *out)
{
    struct mt_expert_provider *inner = self;

    if (expert == 3 || expert == 4) {
        return mt_fail(expert == 3 ? MT_ERR_IO : MT_ERR_FORMAT, 0,
                       "layer %d expert %d: injected failure", layer, expert);
    }
    return inner->ops->acquire(inner->self, layer, expert, out);
}

static void
broken3_release(void *self, int layer, int expert)
{
    struct mt_expert_provider *inner = self;

    inner->ops->release(inner->self, layer, expert);
}

static void
broken3_destroy(void *self)
{
    (void)self;
}

static const struct mt_expert_provider_ops broken3_ops = {
    .name = "broken3", .acquire = broken3_acquire, .release = broken3_release,
    .destroy = broken3_destroy,
};

/*
 * executor.h: wait() "returns the first failure among them", and after a failed submit the
 * engine still calls wait(). Submits that fail, succeed, fail otherwise, then wait: the first
 * failure; the next submit and wait: MT_OK again (a failure is reported once, not forever).
 */
static void
check_failures(const char *name, struct mt_executor *ex, float *x, float *y)
{
    struct mt_expert_task bad = {0, 3, 2, x, y};
    struct mt_expert_task corrupt = {0, 4, 2, x, y};
    struct mt_expert_task good = {1, 2, 2, x, y};

    mt_log_set_quiet(true);
    mt_status_t s1 = ex->ops->submit(ex->self, &bad, 1);
    mt_status_t s2 = ex->ops->submit(ex->self, &good, 1);
    mt_status_t s4 = ex->ops->submit(ex->self, &corrupt, 1);
    mt_status_t sw = ex->ops->wait(ex->self);
    mt_log_set_quiet(false);
    tap_ok(s1 == MT_ERR_IO && s2 == MT_OK && s4 == MT_ERR_FORMAT && sw == MT_ERR_IO,
           "%s: submits failing (IO), good, failing (FORMAT): wait returns the first failure (%s)",
           name, mt_status_str(sw));
    mt_status_t s3 = ex->ops->submit(ex->self, &good, 1);
    mt_status_t sw2 = ex->ops->wait(ex->self);
    tap_ok(s3 == MT_OK && sw2 == MT_OK, "%s: the next submit and wait succeed (%s)", name,
           mt_status_str(sw2));
}

/*
 * A kernel's own failure, seen only when the team finishes (its workspace not allocated: the
 * outputs are not valid), is wait()'s too; the next layer runs. The scalar kernel allocates its
 * workspace on every call, so MOETIER_ISA=scalar makes the fault hit.
 */
static void
check_kernel_failure(struct mt_expert_provider *p, struct mt_cpu_team *team, float *x, float *y)
{
    struct mt_expert_task good = {1, 2, 2, x, y};
    struct mt_executor *ex = NULL;

    char *isa_was = getenv("MOETIER_ISA") != NULL ? strdup(getenv("MOETIER_ISA")) : NULL;
    setenv("MOETIER_ISA", "scalar", 1);
    if (tap_ok(mt_executor_cpu_team_create(p, team, &ex) == MT_OK,
               "kernel failure: a scalar cpu-team executor")) {
        mt_cpu_experts_ws_fault = 1;
        mt_log_set_quiet(true);
        mt_status_t s1 = ex->ops->submit(ex->self, &good, 1);
        mt_status_t sw = ex->ops->wait(ex->self);
        mt_log_set_quiet(false);
        bool used = mt_cpu_experts_ws_fault == 0;
        mt_cpu_experts_ws_fault = 0;
        tap_ok(used && s1 == MT_OK && sw == MT_ERR_NOMEM,
               "kernel failure: a workspace not allocated fails wait() with MT_ERR_NOMEM (%s; "
               "fault used %d)", mt_status_str(sw), used);
        s1 = ex->ops->submit(ex->self, &good, 1);
        sw = ex->ops->wait(ex->self);
        tap_ok(s1 == MT_OK && sw == MT_OK, "kernel failure: the next submit and wait succeed");
    }
    mt_executor_destroy(ex);
    if (isa_was != NULL) { /* as the caller had it */
        setenv("MOETIER_ISA", isa_was, 1);
    } else {
        unsetenv("MOETIER_ISA");
    }
    free(isa_was);
}

static void
test_failures(void)
{
    enum { HID = 256, INT = 128 };
    struct mt_expert_provider *p = NULL;
    struct mt_expert_provider bp = {&broken3_ops, NULL};
    struct mt_cpu_team *team = NULL;
    struct mt_executor *ref = NULL;
    struct mt_executor *tex = NULL;
    float *x = calloc(2 * HID, sizeof(float));
    float *y = calloc(2 * HID, sizeof(float));

    if (tap_ok(x != NULL && y != NULL &&
                   mt_harness_provider_create(2, 5, HID, INT, MT_DTYPE_BF16, 17, &p) == MT_OK &&
                   (bp.self = p, mt_executor_ref_create(&bp, &ref) == MT_OK) &&
                   mt_cpu_team_create(-1, 0, &team) == MT_OK &&
                   mt_executor_cpu_team_create(&bp, team, &tex) == MT_OK,
               "failures: set up")) {
        check_failures("reference", ref, x, y);
        check_failures("cpu-team", tex, x, y);
        check_kernel_failure(&bp, team, x, y);
        tap_ok(mt_harness_provider_outstanding(p) == 0,
               "failures: every acquire was released (%d held)",
               mt_harness_provider_outstanding(p));
    }
    mt_executor_destroy(tex);
    mt_executor_destroy(ref);
    mt_cpu_team_destroy(team);
    mt_expert_provider_destroy(p);
    free(x);
    free(y);
}

/* The CPU-team executor (SIMD kernels on a pinned team) against the reference. */
static void
test_team(enum mt_dtype dt, int hidden, int inter, const int *ms, int n_ms)
{
    struct mt_expert_provider *p = NULL;
    struct mt_cpu_team *team = NULL;
    struct mt_executor *ex = NULL;
    char name[128];

    snprintf(name, sizeof(name), "cpu-team on %s experts %dx%d", mt_dtype_name(dt), hidden,
             inter);
    if (tap_ok(mt_harness_provider_create(2, 5, hidden, inter, dt, 13, &p) == MT_OK &&
                   mt_cpu_team_create(-1, 0, &team) == MT_OK &&
                   mt_executor_cpu_team_create(p, team, &ex) == MT_OK,
               "%s: set up", name)) {
        double t0 = mt_clock_now();
        mt_harness_executor(name, ex, p, 2, 5, hidden, ms, n_ms,
                            mt_harness_tol_for(MT_DTYPE_F32), 5, false);
        double t1 = mt_clock_now(), done = ex->ops->done_at(ex->self);
        tap_ok(mt_harness_provider_outstanding(p) == 0, "%s: every acquire was released", name);
        /* the engine weighs GPU slot copies against this moment (engine_gpu_moe.c) */
        tap_ok(done > t0 && done <= t1,
               "%s: its tasks were done %.6f s after the first submit, "
               "%.6f s before the last wait returned",
               name, done - t0, t1 - done);
    }
    mt_executor_destroy(ex);
    mt_cpu_team_destroy(team);
    mt_expert_provider_destroy(p);
}

int
main(void)
{
    static const int ms_small[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    static const int ms_real[] = {1, 3};

    tap_plan(0);
    test_self();
    test_tiered();
    test_failures();
    test_dtype(MT_DTYPE_F8_E4M3, 2, 5, 200, 72, ms_small, 9);
    test_dtype(MT_DTYPE_BF16, 2, 5, 200, 72, ms_small, 9);
    test_dtype(MT_DTYPE_F32, 2, 5, 136, 40, ms_small, 9);
    /* the real V3.2 expert: 7168 -> 2048 -> 7168, FP8 */
    test_dtype(MT_DTYPE_F8_E4M3, 1, 2, 7168, 2048, ms_real, 2);
    /* the team's exact kernels: fewer tokens than MT_CPU_PREFILL_MIN_SMALL, from which a CPU with
       AMX rounds FP8 experts' activations to bf16 (test_cpu_experts holds that path to its own
       tolerance) */
    test_team(MT_DTYPE_F8_E4M3, 256, 128, ms_small, MT_CPU_PREFILL_MIN_SMALL - 1);
    test_team(MT_DTYPE_BF16, 384, 256, ms_small, 9);
    return tap_done();
}
