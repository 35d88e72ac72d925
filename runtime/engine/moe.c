/* SPDX-License-Identifier: MIT */
/*
 * moe.c - one MoE layer: router -> token groups per expert -> executors -> weighted sum.
 *
 * The one idea: the step never computes a routed expert itself. It sorts the (token, expert)
 * pairs into one contiguous group per expert (a counting sort, tokens ascending inside a group),
 * tells the provider which streamed experts will be needed, submits every group to the executor
 * of its expert's tier, computes the shared expert while they run, waits for all of them, and
 * only then adds the outputs in a fixed order: shared expert first, then experts by ascending
 * id, tokens ascending. That order does not depend on who computed what, so every placement of
 * the experts gives bit-identical sums for bit-identical expert outputs.
 *
 * The router follows spec 2.7: the correction bias decides WHICH experts run but never HOW MUCH.
 */
#include <config.h>

#include "runtime/engine/engine_impl.h"

#include "cpu/team.h"
#include "runtime/base/clock.h"
#include "runtime/plan/trace.h"

#include <string.h>

/*
 * The copies into the groups and the weighted sum run on the host team (mt_engine_set_host_team)
 * instead of the engine thread alone from ENG_MOE_TEAM_BYTES of copied inputs a step: a prompt
 * chunk of 1,024 tokens moves 235 MB each way at V3.2's width (8 pairs of 28 KB a token), which
 * one thread did in 0.07-0.15 s a layer while the team waited; on the team 8-10x less, prefill
 * 1.2-1.4x faster (the H200 host, bench/results/hetero-h200.md session 28). Waking 16 threads
 * costs more than a decode step's few pairs (8 tokens of V3.2: 1.8 MB) or a tiny model's.
 */

/* A copy or sum job on the host team: tokens [n x tid / nt, n x (tid + 1) / nt) each. */
struct pair_job {
    const struct mt_engine *e;
    const struct eng_work *w;
    const float *x; /* gather: the tokens' inputs */
    float *out;     /* sum: the tokens' outputs */
    int n;
    bool zero; /* sum: out starts from zero (each thread clears its own tokens' rows) */
};

/* The tokens [*t0, *t1) of thread tid of nt in a job. */
static void
job_tokens(const struct pair_job *job, int tid, int nt, int *t0, int *t1)
{
    *t0 = (int)((int64_t)job->n * tid / nt);
    *t1 = (int)((int64_t)job->n * (tid + 1) / nt);
}

/* Run fn over the step's tokens: on the host team where there is one and the step is large. */
static void
pair_run(const struct mt_engine *e, int n, mt_cpu_team_fn fn, struct pair_job *job)
{
    size_t bytes = (size_t)n * (size_t)e->cfg.num_experts_per_tok *
                   (size_t)e->cfg.hidden_size * sizeof(float);

    if (e->host_team != NULL && bytes >= ENG_MOE_TEAM_BYTES) {
        mt_cpu_team_run(e->host_team, 0, fn, job);
    } else {
        fn(job, 0, 1);
    }
}

/* On the GPU engine, the device computes the experts w->on_gpu marks: never submitted here. */
static bool
on_device(const struct eng_work *w, int x_id)
{
    return w->on_gpu != NULL && w->on_gpu[x_id];
}

/* The inputs of a job's tokens into their grouped rows (w->pair_row), but those of the experts
 * the device computes. */
static void
gather_part(void *arg, int tid, int nt)
{
    const struct pair_job *job = arg;
    const struct eng_work *w = job->w;
    int K = job->e->cfg.num_experts_per_tok;
    size_t D = (size_t)job->e->cfg.hidden_size;
    int t0, t1;

    job_tokens(job, tid, nt, &t0, &t1);
    for (int t = t0; t < t1; t++) {
        for (int j = 0; j < K; j++) {
            size_t i = (size_t)t * K + j;
            if (!on_device(w, w->ids[i])) {
                memcpy(w->xs + (size_t)w->pair_row[i] * D, job->x + (size_t)t * D,
                       D * sizeof(float));
            }
        }
    }
}

/*
 * Group the n*K (token, expert) pairs by expert into w->xs (see the file comment). On the GPU
 * engine the rows of the experts the device computes (w->on_gpu) are not copied: it has them.
 */
void
eng_moe_group(struct mt_engine *e, int l, const float *x, int n, struct eng_work *w)
{
    int E = e->cfg.n_routed_experts;
    int K = e->cfg.num_experts_per_tok;
    struct pair_job job = {e, w, x, NULL, n, false};
    double t0 = mt_clock_now();

    (void)l;
    memset(w->group_start, 0, (size_t)(E + 1) * sizeof(int));
    for (int i = 0; i < n * K; i++) {
        w->group_start[w->ids[i] + 1]++;
    }
    for (int x_id = 0; x_id < E; x_id++) {
        w->group_start[x_id + 1] += w->group_start[x_id];
        w->group_fill[x_id] = w->group_start[x_id];
    }
    for (int t = 0; t < n; t++) {
        for (int j = 0; j < K; j++) {
            size_t i = (size_t)t * K + j;
            int row = w->group_fill[w->ids[i]]++;
            w->row_tok[row] = t;
            w->row_w[row] = w->moe_wts[i];
            w->pair_row[i] = row;
        }
    }
    pair_run(e, n, gather_part, &job);
    e->stats.moe_host_s += mt_clock_now() - t0;
}

/* The executor that runs expert x_id of layer l. */
static struct mt_executor *
executor_of(const struct mt_engine *e, int l, int x_id)
{
    uint8_t tier = e->tiers[(size_t)l * e->cfg.n_routed_experts + x_id];

    return e->exec[tier < MT_TIER_COUNT ? tier : MT_TIER_DRAM_CPU];
}

/* Layer l's NVMe experts that have tokens announced to the provider, so their reads start. */
void
eng_moe_prefetch(struct mt_engine *e, int l, struct eng_work *w)
{
    int E = e->cfg.n_routed_experts;
    int n_nvme = 0;

    /* their ids reuse group_fill as scratch */
    for (int x_id = 0; x_id < E; x_id++) {
        if (w->group_start[x_id + 1] > w->group_start[x_id] &&
            e->tiers[(size_t)l * E + x_id] == MT_TIER_NVME) {
            w->group_fill[n_nvme++] = x_id;
        }
    }
    if (n_nvme > 0 && e->provider->ops->prefetch != NULL) {
        e->provider->ops->prefetch(e->provider->self, l, w->group_fill, n_nvme);
    }
}

/*
 * Submit the groups of layer l: tasks of one executor together, the NVMe experts announced to
 * the provider first so their reads overlap everything else. used[] lists the executors that
 * got work (each once), *n_used_out how many. Where the provider can hold only `cap` streamed
 * experts at once (its slots), an executor gets its tasks in waves of at most cap streamed ones
 * (experts in DRAM hold no slot), each waited for before the next (time the report counts as
 * MoE wait): an executor that acquires a whole submit before releasing would otherwise wait for
 * itself. The last wave is waited for by the caller, after the shared expert.
 */
mt_status_t
eng_moe_submit(struct mt_engine *e, int l, struct eng_work *w, struct mt_executor **used,
               int *n_used_out)
{
    int E = e->cfg.n_routed_experts;
    size_t D = (size_t)e->cfg.hidden_size;
    int n_used = 0;
    int cap = mt_expert_provider_capacity(e->provider);
    mt_status_t st = MT_OK;

    /* the streamed experts first (a prefetch of what is on its way already costs nothing) */
    eng_moe_prefetch(e, l, w);
    /* one submit per executor, with all of its tasks of this layer */
    for (int x_id = 0; x_id < E && st == MT_OK; x_id++) {
        struct mt_executor *ex = executor_of(e, l, x_id);
        bool seen = false;
        int n_tasks = 0;
        int n_streamed = 0; /* of them, streamed experts: only those hold the provider's slots */

        if (w->group_start[x_id + 1] == w->group_start[x_id] || on_device(w, x_id)) {
            continue;
        }
        for (int i = 0; i < n_used; i++) {
            seen = seen || used[i] == ex;
        }
        if (seen) {
            continue;
        }
        /*
         * Its experts in memory first, then the streamed ones as a wave of their own: the CPU
         * computes the first while the disk reads the second (prefetched above); in one submit
         * every acquire would wait for the reads before any computing began.
         */
        for (int pass = 0; pass < 2 && st == MT_OK; pass++) {
            for (int y_id = x_id; y_id < E; y_id++) {
                int start = w->group_start[y_id];
                int m = w->group_start[y_id + 1] - start;
                bool nvme = e->tiers[(size_t)l * E + y_id] == MT_TIER_NVME;
                /* without a placement every expert may come from the provider's slots */
                bool holds_slot = nvme || e->opts.expert_tiers == NULL;
                if (m == 0 || executor_of(e, l, y_id) != ex || on_device(w, y_id) ||
                    nvme != (pass == 1)) {
                    continue;
                }
                bool first_nvme = nvme && (pass == 1) && n_tasks > 0 &&
                                  e->tiers[(size_t)l * E + w->tasks[n_tasks - 1].expert] !=
                                      MT_TIER_NVME;
                if ((cap > 0 && n_streamed == cap && holds_slot) || first_nvme) {
                    double t_wave = mt_clock_now();
                    mt_status_t sw;
                    st = ex->ops->submit(ex->self, w->tasks, n_tasks);
                    sw = ex->ops->wait(ex->self);
                    st = st != MT_OK ? st : sw;
                    /* the engine waited for experts here too: the report's MoE wait says so */
                    e->stats.moe_wait_s += mt_clock_now() - t_wave;
                    n_tasks = 0;
                    n_streamed = 0;
                    if (st != MT_OK) {
                        break;
                    }
                }
                n_streamed += holds_slot;
                w->tasks[n_tasks++] = (struct mt_expert_task){
                    .layer = l, .expert = y_id, .m = m,
                    .x = w->xs + (size_t)start * D, .y = w->ys + (size_t)start * D,
                };
            }
        }
        used[n_used++] = ex;
        if (st == MT_OK) {
            st = ex->ops->submit(ex->self, w->tasks, n_tasks);
        }
    }
    *n_used_out = n_used;
    return st;
}

void
eng_moe_count(struct mt_engine *e, int l, const struct eng_work *w)
{
    int E = e->cfg.n_routed_experts;

    for (int x_id = 0; x_id < E; x_id++) {
        int rows = w->group_start[x_id + 1] - w->group_start[x_id];
        uint8_t tier = e->tiers[(size_t)l * E + x_id];
        /* a DRAM expert the GPU engine copies into a slot (a chunk gave it enough tokens) is
           computed as the PCIe tier's are: counted there, so dram-cpu is what the CPU ran */
        if (tier == MT_TIER_DRAM_CPU && on_device(w, x_id)) {
            tier = MT_TIER_DRAM_PCIE;
        }
        if (rows > 0 && tier < MT_TIER_COUNT) {
            e->stats.expert_runs[tier]++;
            e->stats.expert_pairs[tier] += (uint64_t)rows;
            e->stats.expert_bytes[tier] += e->expert_bytes;
        }
    }
}

mt_status_t
eng_moe_wait(struct mt_engine *e, struct mt_executor **used, int n_used, double t_submit)
{
    double t_wait = mt_clock_now();
    mt_status_t st = MT_OK;

    for (int i = 0; i < n_used; i++) {
        mt_status_t st_wait = used[i]->ops->wait(used[i]->self);
        if (st == MT_OK) {
            st = st_wait;
        }
        /* charged to the first host tier it serves (DRAM, PCIe, NVMe, then GPU) */
        static const enum mt_tier order[] = {MT_TIER_DRAM_CPU, MT_TIER_DRAM_PCIE, MT_TIER_NVME,
                                             MT_TIER_GPU};
        for (int k = 0; k < MT_TIER_COUNT; k++) {
            if (e->exec[order[k]] == used[i]) {
                e->stats.tier_s[order[k]] += mt_clock_now() - t_submit;
                break;
            }
        }
    }
    e->stats.moe_wait_s += mt_clock_now() - t_wait;
    return st;
}

/*
 * A token's outputs in the order of the file comment: its experts by ascending id (the K pairs
 * of a token are distinct experts, sorted here), so the sum has the same bits whichever thread
 * adds which tokens.
 */
static void
sum_part(void *arg, int tid, int nt)
{
    const struct pair_job *job = arg;
    const struct eng_work *w = job->w;
    int K = job->e->cfg.num_experts_per_tok;
    size_t D = (size_t)job->e->cfg.hidden_size;
    int order[MT_CFG_MAX_EXPERTS]; /* the config's bound on num_experts_per_tok */
    int t0, t1;

    job_tokens(job, tid, nt, &t0, &t1);
    for (int t = t0; t < t1; t++) {
        const int32_t *ids = w->ids + (size_t)t * K;
        float *o = job->out + (size_t)t * D;

        if (job->zero) {
            memset(o, 0, D * sizeof(float));
        }

        for (int j = 0; j < K; j++) { /* insertion sort: K is 8 in V3.2 */
            int k = j;
            for (; k > 0 && ids[order[k - 1]] > ids[j]; k--) {
                order[k] = order[k - 1];
            }
            order[k] = j;
        }
        for (int j = 0; j < K; j++) {
            size_t i = (size_t)t * K + order[j];
            if (on_device(w, ids[order[j]])) {
                continue;
            }
            int row = w->pair_row[i];
            const float *yv = w->ys + (size_t)row * D;
            float rw = w->row_w[row];
            for (size_t d = 0; d < D; d++) {
                o[d] += rw * yv[d];
            }
        }
    }
}

void
eng_moe_sum(struct mt_engine *e, int l, const struct eng_work *w, float *out, int n, bool zero)
{
    struct pair_job job = {e, w, NULL, out, n, zero};
    double t0 = mt_clock_now();

    (void)l;
    pair_run(e, n, sum_part, &job);
    e->stats.moe_host_s += mt_clock_now() - t0;
}

mt_status_t
eng_moe(struct mt_engine *e, int l, const float *x, int n, struct eng_work *w, float *out)
{
    const struct mt_model_config *c = &e->cfg;
    struct eng_layer *L = &e->layers[l];
    int E = c->n_routed_experts;
    int K = c->num_experts_per_tok;
    struct mt_cpu_router_params rp = {
        .n_experts = E, .n_group = c->n_group, .topk_group = c->topk_group, .k = K,
        .norm_topk_prob = c->norm_topk_prob,
        .routed_scaling_factor = (float)c->routed_scaling_factor,
    };
    struct mt_executor *used[MT_TIER_COUNT + 1];
    int n_used = 0;
    double t0 = mt_clock_now();
    mt_status_t st;
    mt_status_t st_wait;

    /* router in fp32 (bf16 weight upcast), then the noaux_tc selection per token */
    if ((st = mt_cpu_linear(&L->router, x, n, w->logits)) != MT_OK) {
        return st;
    }
    for (int t = 0; t < n; t++) {
        mt_cpu_router(w->logits + (size_t)t * E, L->router_bias, &rp, w->router_work,
                      w->ids + (size_t)t * K,
                      w->moe_wts + (size_t)t * K);
    }
    /* TRACE POINT: the router's expert ids of this layer, ids[t * K + j], are known here */
    if (e->opts.trace != NULL) {
        st = mt_trace_record_batch(e->opts.trace, l, (const int *)w->ids, n, K);
        if (st != MT_OK) {
            return st;
        }
    }
    eng_moe_group(e, l, x, n, w);
    eng_moe_count(e, l, w);
    double t_submit = mt_clock_now();
    st = eng_moe_submit(e, l, w, used, &n_used);
    /* the shared expert on this thread while the executors work */
    if (st == MT_OK) {
        st = mt_cpu_swiglu(&L->shared.gate, &L->shared.up, &L->shared.down, x, n, out);
    }
    st_wait = eng_moe_wait(e, used, n_used, t_submit);
    if (st == MT_OK) {
        st = st_wait;
    }
    if (st != MT_OK) {
        return st;
    }
    /* the weighted sum, in the fixed order of the file comment */
    eng_moe_sum(e, l, w, out, n, false);
    e->stats.moe_s += mt_clock_now() - t0;
    return MT_OK;
}
