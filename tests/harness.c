/* SPDX-License-Identifier: MIT */
/* harness.c - random experts in memory, and executors compared with the reference. */
#include <config.h>

#include "tests/harness.h"

#include "cpu/convert.h"
#include "runtime/base/rng.h"
#include "tests/tap.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mt_harness_tol
mt_harness_tol_for(enum mt_dtype act)
{
    switch (act) {
    case MT_DTYPE_F8_E4M3:
        return (struct mt_harness_tol){1e-3, 6e-2}; /* e4m3 activations: 3 mantissa bits */
    case MT_DTYPE_BF16:
        return (struct mt_harness_tol){1e-4, 1e-2}; /* bf16 activations: 8 bits */
    default:
        return (struct mt_harness_tol){1e-6, 1e-4}; /* fp32: summation order only */
    }
}

bool
mt_harness_check(const char *what, const float *got, const float *want, int rows, int cols,
                 struct mt_harness_tol tol, bool quiet)
{
    double worst = 0.0;
    int worst_row = 0;
    bool ok = true;

    for (int r = 0; r < rows; r++) {
        double mx = 0.0;
        double md = 0.0;
        for (int j = 0; j < cols; j++) {
            double w = want[(size_t)r * cols + j];
            double d = fabs((double)got[(size_t)r * cols + j] - w);
            mx = fmax(mx, fabs(w));
            md = isnan(d) ? INFINITY : fmax(md, d);
        }
        double lim = tol.atol + tol.rtol * mx;
        if (!(md <= lim)) {
            ok = false;
        }
        if (md / (lim > 0 ? lim : 1) > worst) {
            worst = md / (lim > 0 ? lim : 1);
            worst_row = r;
        }
    }
    if (!quiet) {
        tap_ok(ok, "%s: %d rows within atol %.0e + rtol %.0e x max|ref| (worst row %d at %.2f "
               "of its limit)", what, rows, tol.atol, tol.rtol, worst_row, worst);
    }
    return ok;
}

/* ---- the in-memory provider ------------------------------------------------------------- */

struct hprov {
    int n_layers;
    int n_experts;
    struct mt_expert *experts; /* owned, [n_layers * n_experts] */
    void **bufs;               /* owned */
    size_t n_bufs;
    atomic_int outstanding;
};

static void *
hprov_keep(struct hprov *h, size_t bytes)
{
    void *p = malloc(bytes > 0 ? bytes : 1);
    if (p != NULL) {
        h->bufs[h->n_bufs++] = p;
    }
    return p;
}

/* A random [rows, cols] matrix of values about +-0.1 in dtype. */
static bool
random_weight(struct hprov *h, int64_t rows, int64_t cols, enum mt_dtype dt, struct mt_rng *rng,
              struct mt_cpu_weight *w)
{
    size_t n = (size_t)(rows * cols);

    *w = (struct mt_cpu_weight){.dtype = dt, .rows = rows, .cols = cols};
    w->data = hprov_keep(h, n * mt_dtype_size(dt));
    if (w->data == NULL) {
        return false;
    }
    if (dt == MT_DTYPE_F8_E4M3) {
        int64_t nb = MT_CEIL_DIV(rows, 128) * MT_CEIL_DIV(cols, 128);
        float *sc = hprov_keep(h, (size_t)nb * sizeof(float));
        if (sc == NULL) {
            return false;
        }
        for (int64_t b = 0; b < nb; b++) {
            sc[b] = (float)(0.5 + mt_rng_uniform(rng)) * (0.1f / 448.0f);
        }
        for (size_t i = 0; i < n; i++) {
            ((mt_fp8_t *)w->data)[i] = mt_f32_to_fp8((float)(mt_rng_uniform(rng) * 2 - 1) * 448);
        }
        w->scale = sc;
    } else {
        for (size_t i = 0; i < n; i++) {
            float v = (float)(mt_rng_uniform(rng) * 2 - 1) * 0.1f;
            if (dt == MT_DTYPE_BF16) {
                ((mt_bf16_t *)w->data)[i] = mt_f32_to_bf16(v);
            } else {
                ((float *)w->data)[i] = v;
            }
        }
    }
    return true;
}

static mt_status_t
hprov_acquire(void *self, int layer, int expert, struct mt_expert *out)
{
    struct hprov *h = self;

    if (layer < 0 || layer >= h->n_layers || expert < 0 || expert >= h->n_experts) {
        return mt_fail(MT_ERR_INVAL, 0, "no expert %d in layer %d", expert, layer);
    }
    *out = h->experts[(size_t)layer * h->n_experts + expert];
    atomic_fetch_add(&h->outstanding, 1);
    return MT_OK;
}

static void
hprov_release(void *self, int layer, int expert)
{
    struct hprov *h = self;

    (void)layer;
    (void)expert;
    atomic_fetch_sub(&h->outstanding, 1);
}

static void
hprov_destroy(void *self)
{
    struct hprov *h = self;

    for (size_t i = 0; i < h->n_bufs; i++) {
        free(h->bufs[i]);
    }
    free(h->bufs);
    free(h->experts);
    free(h);
}

static const struct mt_expert_provider_ops hprov_ops = {
    .name = "harness",
    .acquire = hprov_acquire,
    .release = hprov_release,
    .destroy = hprov_destroy,
};

mt_status_t
mt_harness_provider_create(int n_layers, int n_experts, int hidden, int inter,
                           enum mt_dtype dtype, uint64_t seed, struct mt_expert_provider **p_out)
{
    size_t n = (size_t)n_layers * (size_t)n_experts;
    struct mt_expert_provider *pv = calloc(1, sizeof(*pv));
    struct hprov *h = calloc(1, sizeof(*h));
    struct mt_rng rng;
    bool ok = pv != NULL && h != NULL;

    mt_rng_init(&rng, seed);
    if (ok) {
        h->n_layers = n_layers;
        h->n_experts = n_experts;
        h->experts = calloc(n, sizeof(*h->experts));
        h->bufs = calloc(6 * n, sizeof(*h->bufs));
        ok = h->experts != NULL && h->bufs != NULL;
    }
    for (size_t i = 0; i < n && ok; i++) {
        struct mt_expert *x = &h->experts[i];
        ok = random_weight(h, inter, hidden, dtype, &rng, &x->gate) &&
             random_weight(h, inter, hidden, dtype, &rng, &x->up) &&
             random_weight(h, hidden, inter, dtype, &rng, &x->down);
    }
    if (!ok) {
        if (h != NULL) {
            hprov_destroy(h);
        }
        free(pv);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the harness's experts");
    }
    pv->ops = &hprov_ops;
    pv->self = h;
    *p_out = pv;
    return MT_OK;
}

int
mt_harness_provider_outstanding(const struct mt_expert_provider *p)
{
    struct hprov *h = p->self;

    return atomic_load(&h->outstanding);
}

/* ---- executors against the reference ---------------------------------------------------- */

/* Submit tasks to ex and wait; the status. */
static mt_status_t
run_tasks(struct mt_executor *ex, const struct mt_expert_task *tasks, int n)
{
    mt_status_t st = ex->ops->submit(ex->self, tasks, n);
    mt_status_t sw = ex->ops->wait(ex->self);

    return st != MT_OK ? st : sw;
}

bool
mt_harness_executor(const char *name, struct mt_executor *ex, struct mt_expert_provider *p,
                    int n_layers, int n_experts, int hidden, const int *ms, int n_ms,
                    struct mt_harness_tol tol, uint64_t seed, bool quiet)
{
    size_t rows = 0;
    struct mt_expert_task *tasks = calloc((size_t)n_ms, sizeof(*tasks));
    struct mt_executor *ref = NULL;
    struct mt_rng rng;
    float *x = NULL;
    float *y = NULL;
    float *y_ref = NULL;
    bool ok = tasks != NULL;

    for (int i = 0; i < n_ms; i++) {
        rows += (size_t)ms[i];
    }
    if (ok) {
        x = malloc(rows * (size_t)hidden * sizeof(float));
        y = malloc(rows * (size_t)hidden * sizeof(float));
        y_ref = malloc(rows * (size_t)hidden * sizeof(float));
        ok = x != NULL && y != NULL && y_ref != NULL &&
             mt_executor_ref_create(p, &ref) == MT_OK;
    }
    mt_rng_init(&rng, seed);
    for (size_t i = 0; ok && i < rows * (size_t)hidden; i++) {
        x[i] = (float)(mt_rng_uniform(&rng) * 2 - 1);
        y[i] = NAN; /* an executor that skips a row must not pass by luck */
    }
    size_t off = 0;
    for (int i = 0; ok && i < n_ms; i++) {
        tasks[i] = (struct mt_expert_task){
            .layer = i % n_layers, .expert = (7 * i + 3) % n_experts, .m = ms[i],
            .x = x + off * hidden, .y = y_ref + off * hidden,
        };
        off += (size_t)ms[i];
    }
    ok = ok && run_tasks(ref, tasks, n_ms) == MT_OK;
    for (int i = 0; ok && i < n_ms; i++) {
        tasks[i].y = y + (tasks[i].x - x);
    }
    bool ran = ok && run_tasks(ex, tasks, n_ms) == MT_OK;
    bool close = ran && mt_harness_check(name, y, y_ref, (int)rows, hidden, tol, true);
    if (!quiet) {
        char what[256];
        snprintf(what, sizeof(what), "%s vs the reference executor, %d tasks, %zu rows", name,
                 n_ms, rows);
        if (ran) {
            mt_harness_check(what, y, y_ref, (int)rows, hidden, tol, false);
        } else {
            tap_ok(false, "%s: did not run: %s", what, mt_last_error());
        }
    }
    ok = close;
    mt_executor_destroy(ref);
    free(y_ref);
    free(y);
    free(x);
    free(tasks);
    return ok;
}
