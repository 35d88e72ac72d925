/* SPDX-License-Identifier: MIT */
/*
 * team.c - the pinned worker pool (cpu/team.h): one mutex, three condition variables (job
 * posted, job done, barrier), a generation counter per job and per barrier round.
 */
#include <config.h>

#include "cpu/team.h"

#include "cpu/topology.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct worker {
    struct mt_cpu_team *team;
    int tid;
    pthread_t thread;
};

struct mt_cpu_team {
    hwloc_topology_t topo; /* owned */
    hwloc_cpuset_t *sets;  /* (n) one PU of each core, owned */
    int *node_of;          /* (n) NUMA node index of each thread */
    int n;                 /* threads */
    struct worker *workers;
    int started; /* threads created (for unwinding) */

    pthread_mutex_t lock;
    pthread_cond_t posted; /* a new job (or quit) */
    pthread_cond_t done;   /* running dropped to 0 */
    pthread_cond_t turn;   /* a barrier round completed */
    unsigned job_gen;      /* bumped per job */
    mt_cpu_team_fn fn;
    void *arg;
    int job_n;   /* threads in the current job */
    int running; /* threads of the job not yet returned */
    bool quit;
    int bar_count;    /* arrived at the current barrier round */
    unsigned bar_gen; /* bumped when a round completes */
    bool bound;
    bool warned;
    int bind_tried; /* threads that have tried to bind (mt_cpu_team_create waits for all) */
};

static void
bind_self(struct mt_cpu_team *t, int tid)
{
    bool ok = hwloc_set_cpubind(t->topo, t->sets[tid], HWLOC_CPUBIND_THREAD) == 0;
    int err = errno;

    pthread_mutex_lock(&t->lock);
    if (!ok) {
        t->bound = false;
        if (!t->warned) {
            mt_log_warn("cannot bind thread %d to its core: %s; the team runs unpinned", tid,
                        strerror(err));
            t->warned = true;
        }
    }
    t->bind_tried++;
    pthread_cond_broadcast(&t->done); /* mt_cpu_team_create waits for every thread's try */
    pthread_mutex_unlock(&t->lock);
}

static void *
worker_main(void *p)
{
    struct worker *w = p;
    struct mt_cpu_team *t = w->team;
    unsigned seen = 0;

    bind_self(t, w->tid);
    pthread_mutex_lock(&t->lock);
    for (;;) {
        while (!t->quit && (t->job_gen == seen || w->tid >= t->job_n)) {
            seen = t->job_gen; /* a job not for this thread counts as seen */
            pthread_cond_wait(&t->posted, &t->lock);
        }
        if (t->quit) {
            break;
        }
        seen = t->job_gen;
        mt_cpu_team_fn fn = t->fn;
        void *arg = t->arg;
        int n = t->job_n;

        pthread_mutex_unlock(&t->lock);
        fn(arg, w->tid, n);
        pthread_mutex_lock(&t->lock);
        if (--t->running == 0) {
            pthread_cond_broadcast(&t->done);
        }
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

void
mt_cpu_team_destroy(struct mt_cpu_team *t)
{
    if (t == NULL) {
        return;
    }
    pthread_mutex_lock(&t->lock);
    t->quit = true;
    pthread_cond_broadcast(&t->posted);
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < t->started; i++) {
        pthread_join(t->workers[i].thread, NULL);
    }
    pthread_cond_destroy(&t->turn);
    pthread_cond_destroy(&t->done);
    pthread_cond_destroy(&t->posted);
    pthread_mutex_destroy(&t->lock);
    free(t->workers);
    free(t->node_of);
    mt_cpu_core_sets_free(t->sets, t->n);
    hwloc_topology_destroy(t->topo);
    free(t);
}

mt_status_t
mt_cpu_team_create(int node, int threads, struct mt_cpu_team **team_out)
{
    struct mt_cpu_team *t = calloc(1, sizeof(*t));
    int cores;
    mt_status_t st;

    if (t == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a thread team");
    }
    st = mt_cpu_topo_load(&t->topo);
    if (st != MT_OK) {
        free(t);
        return st;
    }
    st = mt_cpu_core_sets(t->topo, node, &t->sets, &t->node_of, &cores);
    if (st != MT_OK) {
        hwloc_topology_destroy(t->topo);
        free(t);
        return st;
    }
    t->n = cores;
    if (cores < 1) {
        st = mt_fail(MT_ERR_UNSUPPORTED, 0, "hwloc finds no cores to run a thread team on");
        goto out_sets;
    }
    if (threads > cores) {
        st = mt_fail(MT_ERR_INVAL, 0, "%d threads asked for but there are %d cores", threads,
                     cores);
        goto out_sets;
    }
    if (threads > 0) {
        t->n = threads; /* the first `threads` cores, node by node */
    }
    t->workers = calloc((size_t)t->n, sizeof(*t->workers));
    if (t->workers == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %d workers", t->n);
        goto out_sets;
    }
    /* the sets of cores beyond t->n are not used: free them now so destroy frees t->n */
    for (int i = t->n; i < cores; i++) {
        hwloc_bitmap_free(t->sets[i]);
    }
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->posted, NULL);
    pthread_cond_init(&t->done, NULL);
    pthread_cond_init(&t->turn, NULL);
    t->bound = true;
    for (int i = 0; i < t->n; i++) {
        t->workers[i] = (struct worker){.team = t, .tid = i};
        int err = pthread_create(&t->workers[i].thread, NULL, worker_main, &t->workers[i]);

        if (err != 0) {
            mt_cpu_team_destroy(t);
            return mt_fail(MT_ERR_INTERNAL, err, "cannot start worker thread %d", i);
        }
        t->started = i + 1;
    }
    /* every thread has tried to bind before the team is handed out: mt_cpu_team_bound then
     * answers for all of them, and `bound` no longer changes */
    pthread_mutex_lock(&t->lock);
    while (t->bind_tried < t->n) {
        pthread_cond_wait(&t->done, &t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    *team_out = t;
    return MT_OK;

out_sets:
    mt_cpu_core_sets_free(t->sets, cores);
    free(t->node_of);
    hwloc_topology_destroy(t->topo);
    free(t);
    return st;
}

int
mt_cpu_team_size(const struct mt_cpu_team *t)
{
    return t->n;
}

bool
mt_cpu_team_bound(const struct mt_cpu_team *t)
{
    return t->bound;
}

int
mt_cpu_team_node(const struct mt_cpu_team *t, int tid)
{
    return t->node_of[tid];
}

void
mt_cpu_team_start(struct mt_cpu_team *t, int n, mt_cpu_team_fn fn, void *arg)
{
    pthread_mutex_lock(&t->lock);
    MT_ASSERT(t->running == 0);
    t->fn = fn;
    t->arg = arg;
    t->job_n = n <= 0 || n > t->n ? t->n : n;
    t->running = t->job_n;
    t->bar_count = 0;
    t->job_gen++;
    pthread_cond_broadcast(&t->posted);
    pthread_mutex_unlock(&t->lock);
}

void
mt_cpu_team_wait(struct mt_cpu_team *t)
{
    pthread_mutex_lock(&t->lock);
    while (t->running > 0) {
        pthread_cond_wait(&t->done, &t->lock);
    }
    pthread_mutex_unlock(&t->lock);
}

void
mt_cpu_team_run(struct mt_cpu_team *t, int n, mt_cpu_team_fn fn, void *arg)
{
    mt_cpu_team_start(t, n, fn, arg);
    mt_cpu_team_wait(t);
}

void
mt_cpu_team_barrier(struct mt_cpu_team *t)
{
    pthread_mutex_lock(&t->lock);
    unsigned gen = t->bar_gen;

    if (++t->bar_count == t->job_n) {
        t->bar_count = 0;
        t->bar_gen++;
        pthread_cond_broadcast(&t->turn);
    } else {
        while (gen == t->bar_gen) {
            pthread_cond_wait(&t->turn, &t->lock);
        }
    }
    pthread_mutex_unlock(&t->lock);
}
