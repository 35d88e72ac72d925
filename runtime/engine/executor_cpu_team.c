/* SPDX-License-Identifier: MIT */
/*
 * executor_cpu_team.c - the CPU-team executor (executor_cpu_team.h).
 */
#include <config.h>

#include "runtime/engine/executor_cpu_team.h"

#include "cpu/experts.h"
#include "runtime/engine/expert_provider.h"

#include <stdlib.h>

struct exec_team {
    struct mt_expert_provider *provider; /* borrowed */
    struct mt_cpu_moe *moe;
    struct mt_expert_task *tasks; /* (n) acquired, released at wait */
    struct mt_expert *w;          /* (n) */
    struct mt_cpu_expert_job *jobs;
    int n;
    int cap;
    mt_status_t failed; /* first failure since the last wait */
};

static void
release_all(struct exec_team *e)
{
    mt_status_t st = mt_cpu_moe_wait(e->moe);

    if (st != MT_OK && e->failed == MT_OK) {
        e->failed = st;
    }
    for (int i = 0; i < e->n; i++) {
        e->provider->ops->release(e->provider->self, e->tasks[i].layer, e->tasks[i].expert);
    }
    e->n = 0;
}

static mt_status_t
team_submit(void *self, const struct mt_expert_task *tasks, int n)
{
    struct exec_team *e = self;
    mt_status_t st = MT_OK;

    release_all(e); /* a second submit before wait: finish the first */
    if (n > e->cap) {
        int cap = MT_MAX(n, 2 * e->cap);
        void *a = realloc(e->tasks, (size_t)cap * sizeof(*e->tasks));

        if (a != NULL) {
            e->tasks = a;
        }
        void *b = realloc(e->w, (size_t)cap * sizeof(*e->w));

        if (b != NULL) {
            e->w = b;
        }
        void *c = realloc(e->jobs, (size_t)cap * sizeof(*e->jobs));

        if (c != NULL) {
            e->jobs = c;
        }
        if (a == NULL || b == NULL || c == NULL) {
            st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %d expert tasks", n);
            goto out;
        }
        e->cap = cap;
    }
    for (int i = 0; i < n; i++) {
        st = e->provider->ops->acquire(e->provider->self, tasks[i].layer, tasks[i].expert,
                                       &e->w[e->n]);
        if (st != MT_OK) {
            goto out;
        }
        e->tasks[e->n] = tasks[i];
        e->jobs[e->n] = (struct mt_cpu_expert_job){&e->w[e->n].gate, &e->w[e->n].up,
                                                   &e->w[e->n].down, tasks[i].m, tasks[i].x,
                                                   tasks[i].y};
        e->n++;
    }
    st = mt_cpu_moe_start(e->moe, e->jobs, e->n, 0);
    if (st != MT_OK) {
        mt_fail(st, 0, "layer %d: the CPU team cannot run its %d experts", tasks[0].layer, n);
    }
out:
    if (st != MT_OK && e->failed == MT_OK) {
        e->failed = st;
    }
    return st;
}

static mt_status_t
team_wait(void *self)
{
    struct exec_team *e = self;
    mt_status_t st;

    release_all(e); /* first: the kernels' own failures (a workspace not allocated) land here */
    st = e->failed;
    e->failed = MT_OK;
    return st;
}

static void
team_destroy(void *self)
{
    struct exec_team *e = self;

    release_all(e);
    mt_cpu_moe_destroy(e->moe);
    free(e->jobs);
    free(e->w);
    free(e->tasks);
    free(e);
}

/* the team's last run ended with its last thread's work (mt_cpu_moe_done_at) */
static double
team_done_at(void *self)
{
    struct exec_team *e = self;

    return mt_cpu_moe_done_at(e->moe);
}

static const struct mt_executor_ops team_ops = {
    .name = "cpu-team",
    .submit = team_submit,
    .wait = team_wait,
    .destroy = team_destroy,
    .done_at = team_done_at,
};

mt_status_t
mt_executor_cpu_team_create(struct mt_expert_provider *provider, struct mt_cpu_team *team,
                            struct mt_executor **ex_out)
{
    struct mt_executor *ex = calloc(1, sizeof(*ex));
    struct exec_team *e = calloc(1, sizeof(*e));
    enum mt_cpu_level level;
    mt_status_t st;

    if (ex == NULL || e == NULL) {
        free(ex);
        free(e);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the CPU-team executor");
    }
    st = mt_cpu_level_select(&level);
    if (st == MT_OK) {
        st = mt_cpu_moe_create(team, level, &e->moe);
    }
    if (st != MT_OK) {
        free(ex);
        free(e);
        return st;
    }
    e->provider = provider;
    ex->ops = &team_ops;
    ex->self = e;
    *ex_out = ex;
    return MT_OK;
}
