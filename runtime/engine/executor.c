/* SPDX-License-Identifier: MIT */
/*
 * executor.c - the reference executor: each task's expert through the fp32 SwiGLU of cpu/, one
 * after another, inside submit(). Slow and simple on purpose: it is what the others are checked
 * against (tests/test_executors.c).
 */
#include <config.h>

#include "runtime/engine/executor.h"

#include "cpu/ref_ops.h"
#include "runtime/engine/expert_provider.h"

#include <stdlib.h>

struct exec_ref {
    struct mt_expert_provider *provider; /* borrowed */
    mt_status_t failed;                  /* first failure since the last wait */
};

void
mt_executor_destroy(struct mt_executor *ex)
{
    if (ex != NULL) {
        ex->ops->destroy(ex->self);
        free(ex);
    }
}

static mt_status_t
ref_submit(void *self, const struct mt_expert_task *tasks, int n)
{
    struct exec_ref *r = self;
    mt_status_t st = MT_OK;

    for (int i = 0; i < n && st == MT_OK; i++) {
        const struct mt_expert_task *t = &tasks[i];
        struct mt_expert w;
        st = r->provider->ops->acquire(r->provider->self, t->layer, t->expert, &w);
        if (st != MT_OK) {
            break;
        }
        st = mt_cpu_swiglu(&w.gate, &w.up, &w.down, t->x, t->m, t->y);
        r->provider->ops->release(r->provider->self, t->layer, t->expert);
    }
    if (r->failed == MT_OK) {
        r->failed = st;
    }
    return st;
}

static mt_status_t
ref_wait(void *self)
{
    struct exec_ref *r = self;
    mt_status_t st = r->failed;

    r->failed = MT_OK;
    return st;
}

static void
ref_destroy(void *self)
{
    free(self);
}

static const struct mt_executor_ops ref_ops = {
    .name = "cpu-ref",
    .submit = ref_submit,
    .wait = ref_wait,
    .destroy = ref_destroy,
};

mt_status_t
mt_executor_ref_create(struct mt_expert_provider *provider, struct mt_executor **ex_out)
{
    struct mt_executor *ex = calloc(1, sizeof(*ex));
    struct exec_ref *r = calloc(1, sizeof(*r));

    if (ex == NULL || r == NULL) {
        free(ex);
        free(r);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the reference executor");
    }
    r->provider = provider;
    ex->ops = &ref_ops;
    ex->self = r;
    *ex_out = ex;
    return MT_OK;
}
