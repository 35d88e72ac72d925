/* SPDX-License-Identifier: MIT */
/*
 * test_engine.c - the CPU reference engine against HF transformers' golden logits, and against
 * itself (prefill vs decode, chunked prefill, sparse vs dense, FP8 vs exact indexer), plus the
 * errors a caller can trigger.
 *
 * Golden sets: every directory under $MT_TEST_DATA/golden/ (layout in tests/reference/README.md:
 * config.json + safetensors, golden.json listing sequences {ids, prompt, greedy, logits_file,
 * rows, cols}, logits_<i>.f32 = float32 LE [rows, cols] logits of HF at every position of ids).
 * Self-consistency runs on a `moetier synth --preset tiny` checkpoint written to a temp dir.
 *
 * Tolerance (from the brief): per position, max|diff| / max|logit| <= 1e-3.
 */
#include <config.h>

#include "cpu/convert.h"
#include "cpu/experts.h"
#include "cpu/isa.h"
#include "cpu/ref_ops.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/executor.h"
#include "runtime/engine/executor_cpu_team.h"
#include "runtime/engine/expert_provider.h"
#include "runtime/model/model.h"
#include "runtime/model/safetensors.h"
#include "runtime/text/sampler.h"
#include "runtime/synth/synth.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/engine/session.h"
#include "tests/golden.h"
#include "tests/tap.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REL_TOL 1e-3

static mt_status_t
make_engine(const struct mt_model *m, enum mt_indexer_mode ix, enum mt_attn_mode at, bool cmp,
            struct mt_engine **e_out)
{
    struct mt_engine_opts o;
    mt_engine_opts_default(&o);
    o.indexer = ix;
    o.attention = at;
    o.compare_indexer = cmp;
    return mt_engine_create(m, &o, e_out);
}

/* ---- golden sets --------------------------------------------------------------------------- */

/* Compares each selection of a prefill with HF's (indexer_topk.json: [layer][row] -> sorted s). */
struct sel_cmp {
    json_t *layers; /* borrowed: "selected" of one sequence */
    int rows;
    int mismatches;
};

static void
sel_hook(void *ctx, int layer, int64_t pos, const int32_t *idx, int k)
{
    struct sel_cmp *c = ctx;
    json_t *row = json_array_get(json_array_get(c->layers, (size_t)layer), (size_t)pos);

    c->rows++;
    if (row == NULL || (int)json_array_size(row) != k) {
        c->mismatches++;
        return;
    }
    for (int i = 0; i < k; i++) { /* both sorted ascending */
        if (json_integer_value(json_array_get(row, (size_t)i)) != idx[i]) {
            c->mismatches++;
            return;
        }
    }
}

static void
golden_one(const char *dir, const char *name)
{
    char path[2200];
    json_error_t jerr;
    json_t *root = NULL;
    json_t *topk_root = NULL;
    const char *model_dir = dir;
    const char *synth_dir = NULL;
    struct mt_model *m = NULL;
    struct mt_engine *ex = NULL;
    struct mt_engine *f8 = NULL;
    struct mt_engine *dn = NULL;

    if (!golden_open(dir, name, &root, &model_dir, &synth_dir)) {
        goto out;
    }
    if (!tap_ok(mt_model_open(model_dir, &m) == MT_OK, "golden %s: checkpoint opens", name) ||
        !tap_ok(make_engine(m, MT_INDEXER_EXACT, MT_ATTN_SPARSE, false, &ex) == MT_OK &&
                    make_engine(m, MT_INDEXER_FP8, MT_ATTN_SPARSE, true, &f8) == MT_OK &&
                    make_engine(m, MT_INDEXER_EXACT, MT_ATTN_DENSE, false, &dn) == MT_OK,
                "golden %s: engines build", name)) {
        goto out;
    }
    snprintf(path, sizeof(path), "%s/indexer_topk.json", dir);
    topk_root = json_load_file(path, 0, &jerr);
    json_t *topk_seqs = json_object_get(topk_root, "sequences");
    json_t *seqs = json_object_get(root, "sequences");
    size_t si;
    json_t *seq;
    json_array_foreach(seqs, si, seq) {
        int n_ids, n_prompt, n_greedy;
        int32_t *ids = golden_json_ids(json_object_get(seq, "ids"), &n_ids);
        int32_t *prompt = golden_json_ids(json_object_get(seq, "prompt"), &n_prompt);
        int32_t *want_g = golden_json_ids(json_object_get(seq, "greedy"), &n_greedy);
        int rows = (int)json_integer_value(json_object_get(seq, "rows"));
        int cols = (int)json_integer_value(json_object_get(seq, "cols"));
        const char *lf = json_string_value(json_object_get(seq, "logits_file"));
        float *want = NULL;
        float *got = NULL;
        int32_t *gg = NULL;

        snprintf(path, sizeof(path), "%s/%s", dir, lf != NULL ? lf : "?");
        want = golden_read_f32(path, (size_t)rows * cols);
        /* two halves: the sparse-vs-dense check below fills up to 2 * rows rows */
        got = malloc((size_t)(rows > 0 ? 2 * rows : 1) * (cols > 0 ? cols : 1) * sizeof(float));
        gg = malloc((size_t)(n_greedy > 0 ? n_greedy : 1) * sizeof(int32_t));
        if (!tap_ok(ids && prompt && want_g && want && got && gg && rows == n_ids &&
                        cols == mt_engine_vocab(ex),
                    "golden %s seq %zu: data readable (%d x %d)", name, si, rows, cols)) {
            goto next;
        }
        mt_engine_reset(ex);
        int wr;
        struct sel_cmp sc = {
            json_object_get(json_array_get(topk_seqs, si), "selected"), 0, 0};
        mt_engine_set_topk_hook(ex, sel_hook, &sc);
        bool ran = mt_engine_forward(ex, ids, n_ids, true, got) == MT_OK;
        mt_engine_set_topk_hook(ex, NULL, NULL);
        tap_ok(ran && sc.layers != NULL && sc.rows == n_ids * m->cfg.num_hidden_layers &&
                   sc.mismatches == 0,
               "golden %s seq %zu: indexer selections equal HF's in all %d (layer, position) "
               "rows (%d differ)", name, si, sc.rows, sc.mismatches);
        double rel = ran ? golden_worst_row_rel(got, want, rows, cols, &wr) : INFINITY;
        tap_ok(ran && rel <= REL_TOL,
               "golden %s seq %zu: logits at all %d positions within %.0e (worst %.2e at %d)",
               name, si, rows, REL_TOL, rel, wr);
        /* the cached decode path: prefill the prompt, then feed ids one at a time */
        mt_engine_reset(ex);
        bool dec = n_prompt > 0 && n_prompt <= n_ids &&
                   mt_engine_forward(ex, ids, n_prompt, true, got) == MT_OK;
        for (int t = n_prompt; t < n_ids && dec; t++) {
            dec = mt_engine_forward(ex, &ids[t], 1, false, got + (size_t)t * cols) == MT_OK;
        }
        rel = dec ? golden_worst_row_rel(got, want, rows, cols, &wr) : INFINITY;
        tap_ok(dec && rel <= REL_TOL, "golden %s seq %zu: prefill %d + decode %d matches HF "
               "(worst %.2e)", name, si, n_prompt, n_ids - n_prompt, rel);
        /* sparse == dense while positions <= index_topk */
        int tk = MT_MIN(m->cfg.index_topk, n_ids);
        mt_engine_reset(ex);
        mt_engine_reset(dn);
        bool sd = mt_engine_forward(ex, ids, tk, true, got) == MT_OK &&
                  mt_engine_forward(dn, ids, tk, true, got + (size_t)tk * cols) == MT_OK;
        rel = sd ? golden_worst_row_rel(got, got + (size_t)tk * cols, tk, cols, &wr) : INFINITY;
        tap_ok(sd && rel == 0.0, "golden %s seq %zu: sparse equals dense on a %d-token prompt "
               "(index_topk)", name, si, tk);
        bool g_ok = golden_greedy(ex, prompt, n_prompt, n_greedy, gg);
        int first_bad = -1;
        for (int i = 0; i < n_greedy && g_ok; i++) {
            if (gg[i] != want_g[i] && first_bad < 0) {
                first_bad = i;
            }
        }
        tap_ok(g_ok && first_bad < 0, "golden %s seq %zu: %d greedy tokens identical to HF "
               "(first difference at %d)", name, si, n_greedy, first_bad);
        /* the engine's own pick (mt_engine_forward_greedy), as a greedy session decodes */
        g_ok = golden_greedy_engine(ex, prompt, n_prompt, n_greedy, gg);
        first_bad = -1;
        for (int i = 0; i < n_greedy && g_ok; i++) {
            if (gg[i] != want_g[i] && first_bad < 0) {
                first_bad = i;
            }
        }
        tap_ok(g_ok && first_bad < 0, "golden %s seq %zu: %d greedy tokens of "
               "mt_engine_forward_greedy identical to HF (first difference at %d)", name, si,
               n_greedy, first_bad);
        /* the same with the routed experts on the CPU team's SIMD kernels */
        struct mt_cpu_team *team = NULL;
        struct mt_executor *tex = NULL;
        g_ok = mt_cpu_team_create(-1, 0, &team) == MT_OK &&
               mt_executor_cpu_team_create(mt_engine_provider(ex), team, &tex) == MT_OK;
        if (g_ok) {
            mt_engine_set_executor(ex, MT_TIER_DRAM_CPU, tex);
            g_ok = golden_greedy(ex, prompt, n_prompt, n_greedy, gg);
            mt_engine_set_executor(ex, MT_TIER_DRAM_CPU, NULL);
        }
        first_bad = -1;
        for (int i = 0; i < n_greedy && g_ok; i++) {
            if (gg[i] != want_g[i] && first_bad < 0) {
                first_bad = i;
            }
        }
        tap_ok(g_ok && first_bad < 0, "golden %s seq %zu: %d greedy tokens identical to HF with "
               "the CPU-team expert kernels (first difference at %d)", name, si, n_greedy,
               first_bad);
        mt_executor_destroy(tex);
        mt_cpu_team_destroy(team);
        /* FP8 indexer mode on the same prompt: selection overlap with exact scoring */
        mt_engine_reset(f8);
        tap_ok(mt_engine_forward(f8, ids, n_ids, true, got) == MT_OK,
               "golden %s seq %zu: FP8 indexer mode runs", name, si);
    next:
        free(ids);
        free(prompt);
        free(want_g);
        free(want);
        free(got);
        free(gg);
    }
    double ov;
    int64_t nsel;
    mt_engine_indexer_overlap(f8, &ov, &nsel);
    tap_diag("golden %s: FP8 vs exact indexer top-k overlap %.4f over %lld selections", name, ov,
             (long long)nsel);
    if (nsel > 0) {
        tap_ok(ov >= 0.95, "golden %s: FP8 indexer top-k sets overlap exact ones >= 95%% "
               "(%.2f%%)", name, 100.0 * ov);
    } else {
        tap_diag("golden %s: no sequence passes index_topk, no FP8 top-k overlap to measure",
                 name);
    }
out:
    mt_engine_destroy(ex);
    mt_engine_destroy(f8);
    mt_engine_destroy(dn);
    mt_model_destroy(m);
    json_decref(topk_root);
    json_decref(root);
    if (synth_dir != NULL) {
        tap_rmtree(synth_dir);
    }
}

static int
golden_all(void)
{
    const char *base = tap_data_path("golden");
    DIR *d = opendir(base);
    struct dirent *de;
    int n = 0;
    char *names[64];

    if (d == NULL) {
        return 0;
    }
    while ((de = readdir(d)) != NULL && n < 64) {
        char p[2200];
        if (de->d_name[0] == '.') {
            continue;
        }
        snprintf(p, sizeof(p), "%s/%s/golden.json", base, de->d_name);
        FILE *f = fopen(p, "r");
        if (f != NULL) {
            fclose(f);
            names[n++] = strdup(de->d_name);
        }
    }
    closedir(d);
    for (int i = 0; i < n; i++) { /* sorted, for a stable TAP order */
        for (int j = i + 1; j < n; j++) {
            if (strcmp(names[j], names[i]) < 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        char dir[1400];
        snprintf(dir, sizeof(dir), "%s/%s", base, names[i]);
        golden_one(dir, names[i]);
        free(names[i]);
    }
    return n;
}

/* ---- self-consistency on a synthetic tiny checkpoint ---------------------------------------- */

/* An executor that counts what it is given and defers to the reference executor. */
struct expert_count {
    struct mt_executor *inner;
    int submits;
    int calls;
    int tokens;
};

static mt_status_t
count_submit(void *self, const struct mt_expert_task *tasks, int n)
{
    struct expert_count *c = self;
    c->submits++;
    for (int i = 0; i < n; i++) {
        c->calls++;
        c->tokens += tasks[i].m;
    }
    return c->inner->ops->submit(c->inner->self, tasks, n);
}

static mt_status_t
count_wait(void *self)
{
    struct expert_count *c = self;
    return c->inner->ops->wait(c->inner->self);
}

static void
count_destroy(void *self)
{
    (void)self;
}

static const struct mt_executor_ops count_ops = {"counting", count_submit, count_wait,
                                                 count_destroy, NULL};

struct topk_log {
    int max_k;
    int n_sel;   /* selections with k < positions */
};

static void
topk_hook(void *ctx, int layer, int64_t pos, const int32_t *idx, int k)
{
    struct topk_log *lg = ctx;
    if (k > lg->max_k) {
        lg->max_k = k;
    }
    if (k < pos + 1) {
        lg->n_sel++;
    }
}

/*
 * A provider whose acquire fails on every thread but the one that made it, and there waits
 * (up to 10 s) until another thread has failed: mt_engine_preload_experts then meets its first
 * failure on a worker thread for sure (with OMP_NUM_THREADS >= 2, as make check sets).
 */
struct off_main {
    pthread_t main;
    pthread_mutex_t lock;
    pthread_cond_t failed_cv;
    bool failed;
};

static mt_status_t
off_main_acquire(void *self, int layer, int expert, struct mt_expert *out)
{
    struct off_main *p = self;

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&p->lock);
    if (!pthread_equal(pthread_self(), p->main)) {
        p->failed = true;
        pthread_cond_broadcast(&p->failed_cv);
        pthread_mutex_unlock(&p->lock);
        return mt_fail(MT_ERR_IO, 0, "layer %d expert %d: injected on a worker", layer, expert);
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    while (!p->failed && pthread_cond_timedwait(&p->failed_cv, &p->lock, &until) == 0) {
    }
    pthread_mutex_unlock(&p->lock);
    return MT_OK;
}

static void
off_main_release(void *self, int layer, int expert)
{
    (void)self, (void)layer, (void)expert;
}

static void
off_main_destroy(void *self)
{
    (void)self;
}

static const struct mt_expert_provider_ops off_main_ops = {
    .name = "fails-off-main",
    .acquire = off_main_acquire,
    .release = off_main_release,
    .destroy = off_main_destroy,
};

/*
 * mt_engine_preload_experts (OpenMP threads): every DRAM expert read and kept, none of the NVMe
 * ones; a failure on a worker thread reaches the caller's mt_last_error().
 */
static void
preload(const struct mt_model *m, uint8_t *tiers)
{
    size_t n_tiers = (size_t)m->cfg.num_hidden_layers * (size_t)m->cfg.n_routed_experts;
    struct mt_engine_opts o;
    struct mt_engine *e = NULL;
    uint64_t bytes = 0;
    int n_dram = 0;

    for (size_t i = 0; i < n_tiers; i++) {
        tiers[i] = i % 2 == 0 ? MT_TIER_DRAM_CPU : MT_TIER_NVME;
        n_dram += m->layers[i / (size_t)m->cfg.n_routed_experts].is_moe && i % 2 == 0;
    }
    mt_engine_opts_default(&o);
    o.expert_tiers = tiers;
    bool ok = mt_engine_create(m, &o, &e) == MT_OK &&
              mt_engine_preload_experts(e, &bytes) == MT_OK;
    tap_ok(ok && n_dram > 0 && bytes % (uint64_t)n_dram == 0 &&
               mt_engine_expert_bytes_held(e) == bytes,
           "tiny: preload reads the %d DRAM experts of a half-NVMe plan and keeps them (%llu "
           "bytes read, %llu held)", n_dram, (unsigned long long)bytes,
           ok ? (unsigned long long)mt_engine_expert_bytes_held(e) : 0ull);
    mt_engine_destroy(e);

    /* tiers DRAM_CPU, DRAM_PCIE, NVMe, GPU in turn: the first two are read, each at the size one
     * expert has when all of them are (every expert in DRAM) */
    uint64_t all = 0;
    uint64_t mixed = 0;
    int n_moe = 0;
    n_dram = 0;
    for (size_t i = 0; i < n_tiers; i++) {
        bool moe = m->layers[i / (size_t)m->cfg.n_routed_experts].is_moe;
        tiers[i] = MT_TIER_DRAM_CPU;
        n_moe += moe;
    }
    e = NULL;
    ok = mt_engine_create(m, &o, &e) == MT_OK && mt_engine_preload_experts(e, &all) == MT_OK;
    mt_engine_destroy(e);
    static const uint8_t cycle[4] = {MT_TIER_DRAM_CPU, MT_TIER_DRAM_PCIE, MT_TIER_NVME,
                                     MT_TIER_GPU};
    for (size_t i = 0; i < n_tiers; i++) {
        tiers[i] = cycle[i % 4];
        n_dram += m->layers[i / (size_t)m->cfg.n_routed_experts].is_moe && i % 4 < 2;
    }
    e = NULL;
    ok = ok && mt_engine_create(m, &o, &e) == MT_OK &&
         mt_engine_preload_experts(e, &mixed) == MT_OK;
    tap_ok(ok && n_moe > 0 && all % (uint64_t)n_moe == 0 &&
               mixed == all / (uint64_t)n_moe * (uint64_t)n_dram &&
               mt_engine_expert_bytes_held(e) == mixed,
           "tiny: preload reads the %d DRAM_CPU and DRAM_PCIE experts of a four-tier plan, not "
           "the NVMe or GPU ones (%llu bytes; %llu for all %d)", n_dram,
           (unsigned long long)mixed, (unsigned long long)all, n_moe);
    mt_engine_destroy(e);

#ifdef _OPENMP
    int threads = omp_get_max_threads();
#else
    int threads = 1;
#endif
    if (threads < 2) {
        tap_ok(true, "tiny: a preload failure on a worker thread # SKIP one OpenMP thread");
        return;
    }
    struct off_main om = {.main = pthread_self()};
    struct mt_expert_provider prov = {&off_main_ops, &om};
    pthread_mutex_init(&om.lock, NULL);
    pthread_cond_init(&om.failed_cv, NULL);
    o.provider = &prov;
    e = NULL;
    ok = mt_engine_create(m, &o, &e) == MT_OK;
    mt_log_set_quiet(true);
    mt_fail(MT_ERR_INTERNAL, 0, "sentinel");
    mt_status_t st = ok ? mt_engine_preload_experts(e, NULL) : MT_OK;
    mt_log_set_quiet(false);
    tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "injected on a worker") != NULL,
           "tiny: a preload read that fails on a worker thread fails the call with its message "
           "on the caller's thread ('%s')", mt_last_error());
    mt_engine_destroy(e);
    pthread_cond_destroy(&om.failed_cv);
    pthread_mutex_destroy(&om.lock);
}

/* A provider that counts its acquires and defers to another (for opts.nvme_provider). */
struct acq_count {
    struct mt_expert_provider *inner;
    const uint8_t *tiers; /* the engine's plan: an acquire of a non-NVMe expert is counted apart */
    int n_experts;
    int acquires;
    int off_tier;
};

static mt_status_t
acq_count_acquire(void *self, int layer, int expert, struct mt_expert *out)
{
    struct acq_count *c = self;

#pragma omp critical(acq_count)
    {
        c->acquires++;
        c->off_tier += c->tiers[(size_t)layer * (size_t)c->n_experts + (size_t)expert] !=
                       MT_TIER_NVME;
    }
    return c->inner->ops->acquire(c->inner->self, layer, expert, out);
}

static void
acq_count_release(void *self, int layer, int expert)
{
    struct acq_count *c = self;
    c->inner->ops->release(c->inner->self, layer, expert);
}

static void
acq_count_destroy(void *self)
{
    (void)self;
}

static const struct mt_expert_provider_ops acq_count_ops = {
    .name = "counting",
    .acquire = acq_count_acquire,
    .release = acq_count_release,
    .destroy = acq_count_destroy,
};

/*
 * opts.nvme_provider: with half the experts on NVMe, the NVMe ones (and only they) come from it,
 * the others from the checkpoint; the logits do not change.
 */
static void
nvme_provider(const struct mt_model *m, uint8_t *tiers, const int32_t *ids, int n,
              const float *want)
{
    size_t n_tiers = (size_t)m->cfg.num_hidden_layers * (size_t)m->cfg.n_routed_experts;
    struct acq_count ac = {.tiers = tiers, .n_experts = m->cfg.n_routed_experts};
    struct mt_expert_provider prov = {&acq_count_ops, &ac};
    struct mt_engine_opts o;
    struct mt_engine *e = NULL;
    int V = m->cfg.vocab_size;
    float *got = malloc((size_t)n * (size_t)V * sizeof(float));
    int wr;

    for (size_t i = 0; i < n_tiers; i++) {
        tiers[i] = i % 2 == 0 ? MT_TIER_DRAM_CPU : MT_TIER_NVME;
    }
    mt_engine_opts_default(&o);
    o.expert_tiers = tiers;
    o.nvme_provider = &prov;
    bool ok = got != NULL && mt_expert_provider_checkpoint_create(m, NULL, &ac.inner) == MT_OK &&
              mt_engine_create(m, &o, &e) == MT_OK &&
              mt_engine_forward(e, ids, n, true, got) == MT_OK;
    double rel = ok ? golden_worst_row_rel(got, want, n, V, &wr) : INFINITY;
    tap_ok(ok && rel == 0.0 && ac.acquires > 0 && ac.off_tier == 0,
           "tiny: a half-NVMe plan with an NVMe provider: %d acquires there, %d of them for a "
           "non-NVMe expert; same logits (worst %.2e)", ac.acquires, ac.off_tier, rel);
    mt_engine_destroy(e);
    mt_expert_provider_destroy(ac.inner);
    free(got);
}

/*
 * The checkpoint provider with a plan's tiers: experts on NVMe are read when a token needs them
 * and freed after, experts in DRAM are kept; the logits do not change.
 */
static void
expert_residency(const struct mt_model *m, const int32_t *ids, int n, const float *want)
{
    size_t n_tiers = (size_t)m->cfg.num_hidden_layers * (size_t)m->cfg.n_routed_experts;
    uint8_t *tiers = malloc(n_tiers);
    struct mt_engine_opts o;
    struct mt_engine *nv = NULL;
    struct mt_engine *dr = NULL;
    int V = m->cfg.vocab_size;
    float *got = malloc((size_t)n * (size_t)V * sizeof(float));
    bool ok = tiers != NULL && got != NULL;
    int wr;

    if (ok) {
        memset(tiers, MT_TIER_NVME, n_tiers);
        mt_engine_opts_default(&o);
        o.expert_tiers = tiers;
        ok = mt_engine_create(m, &o, &nv) == MT_OK && mt_engine_create(m, NULL, &dr) == MT_OK;
    }
    ok = ok && mt_engine_forward(nv, ids, n, true, got) == MT_OK;
    double rel = ok ? golden_worst_row_rel(got, want, n, V, &wr) : INFINITY;
    tap_ok(ok && rel == 0.0 && mt_engine_expert_bytes_held(nv) == 0,
           "tiny: every expert on NVMe (checkpoint provider): same logits, nothing held after the "
           "forward (%llu bytes)", ok ? (unsigned long long)mt_engine_expert_bytes_held(nv) : 0ull);
    ok = ok && mt_engine_forward(dr, ids, n, true, got) == MT_OK;
    tap_ok(ok && mt_engine_expert_bytes_held(dr) > 0,
           "tiny: experts in DRAM stay loaded after their first use (%llu bytes held)",
           ok ? (unsigned long long)mt_engine_expert_bytes_held(dr) : 0ull);
    /* a plan's GPU tier on the CPU engine: computed from DRAM, so kept like DRAM experts */
    struct mt_engine *gp = NULL;
    uint64_t held_dr = ok ? mt_engine_expert_bytes_held(dr) : 0;
    if (ok) {
        memset(tiers, MT_TIER_GPU, n_tiers);
        ok = mt_engine_create(m, &o, &gp) == MT_OK &&
             mt_engine_forward(gp, ids, n, true, got) == MT_OK;
    }
    rel = ok ? golden_worst_row_rel(got, want, n, V, &wr) : INFINITY;
    tap_ok(ok && rel == 0.0 && mt_engine_expert_bytes_held(gp) == held_dr,
           "tiny: GPU-tier experts on the CPU engine stay loaded like DRAM ones (%llu bytes held, "
           "%llu in DRAM)", ok ? (unsigned long long)mt_engine_expert_bytes_held(gp) : 0ull,
           (unsigned long long)held_dr);
    mt_engine_destroy(gp);
    mt_engine_destroy(nv);
    mt_engine_destroy(dr);
    if (tiers != NULL) {
        nvme_provider(m, tiers, ids, n, want);
        preload(m, tiers);
    }
    free(got);
    free(tiers);
}

/*
 * The API's edges on the tiny checkpoint: truncate's no-ops, the prompt-length limits at their
 * exact bound, a forward that would pass --ctx from a later position, the indexer diagnostics
 * with nothing compared, the counters, and an index_head_dim the Hadamard cannot take.
 */
static void
api_edges(struct mt_model *m, const int32_t *ids, int n, const float *full)
{
    struct mt_engine_opts o;
    struct mt_engine *e = NULL;
    struct mt_engine *c16 = NULL;
    struct mt_engine_stats s;
    int V = m->cfg.vocab_size;
    int topk = m->cfg.index_topk;
    int64_t maxp = m->cfg.max_position_embeddings;
    int32_t *lng = calloc((size_t)maxp + 1, sizeof(int32_t));
    float *got = malloc((size_t)n * (size_t)V * sizeof(float));
    double ov = -1.0;
    int64_t nsel = -1;
    int wr;

    mt_engine_opts_default(&o);
    if (!tap_ok(lng != NULL && got != NULL && n > 20 && mt_engine_create(m, &o, &e) == MT_OK,
                "api edges: an engine on the tiny checkpoint")) {
        goto out;
    }

    /* truncate forgets only positions it has: at or above the position, or negative, no-op */
    bool ok = mt_engine_forward(e, ids, 10, true, got) == MT_OK;
    mt_engine_truncate(e, 10);
    bool same = mt_engine_pos(e) == 10;
    mt_engine_truncate(e, 15);
    bool above = mt_engine_pos(e) == 10;
    mt_engine_truncate(e, -1);
    bool neg = mt_engine_pos(e) == 10;
    ok = ok && same && above && neg &&
         mt_engine_forward(e, ids + 10, n - 10, true, got + (size_t)10 * V) == MT_OK;
    double rel = ok ? golden_worst_row_rel(got, full, n, V, &wr) : INFINITY;
    tap_ok(ok && rel <= REL_TOL, "api edges: truncate to the position (%d), above it (%d) or to -1 "
           "(%d) changes nothing; the rest then equals one prefill (worst %.2e)", same, above, neg,
           rel);

    /* the model's positions are a limit, not one past it */
    mt_log_set_quiet(true);
    tap_ok(mt_engine_check_prompt_config(&m->cfg, lng, (int)maxp) == MT_OK &&
               mt_engine_check_prompt(e, lng, (int)maxp) == MT_OK &&
               mt_engine_check_prompt_config(&m->cfg, lng, (int)maxp + 1) == MT_ERR_INVAL,
           "api edges: a prompt of max_position_embeddings (%lld) ids passes the checks, one more "
           "does not", (long long)maxp);

    /* --ctx 16 counts the positions already held: 10, then 7 more is one too many */
    o.ctx = 16;
    ok = mt_engine_create(m, &o, &c16) == MT_OK && mt_engine_max_pos(c16) == 16 &&
         mt_engine_forward(c16, ids, 10, false, got) == MT_OK;
    mt_status_t st7 = ok ? mt_engine_forward(c16, ids + 10, 7, false, got) : MT_ERR_INTERNAL;
    bool kept = ok && mt_engine_pos(c16) == 10;
    ok = ok && st7 == MT_ERR_INVAL && kept &&
         mt_engine_forward(c16, ids + 10, 6, false, got) == MT_OK && mt_engine_pos(c16) == 16 &&
         mt_engine_forward(c16, ids + 16, 1, false, got) == MT_ERR_INVAL &&
         mt_engine_pos(c16) == 16;
    tap_ok(ok, "api edges: ctx 16: 10 positions, then 7 more fail with MT_ERR_INVAL (%s, position "
           "kept: %d), 6 more fill it, one more fails", mt_status_str(st7), kept);
    mt_log_set_quiet(false);

    /* no FP8 comparison ran: the documented 1.0 over 0 selections */
    mt_engine_indexer_overlap(e, &ov, &nsel);
    tap_ok(ov == 1.0 && nsel == 0, "api edges: indexer overlap of an exact engine is 1.0 over 0 "
           "selections (%.3f, %lld)", ov, (long long)nsel);

    /* counters: 2 forwards of 20 + 1 positions; keys min(p + 1, topk) and p + 1 for p in 0..20 */
    double ak = 0.0;
    double ik = 0.0;
    for (int p = 0; p <= 20; p++) {
        ak += p + 1 < topk ? p + 1 : topk;
        ik += p + 1;
    }
    mt_engine_reset(e);
    mt_engine_stats_reset(e);
    ok = mt_engine_forward(e, ids, 20, false, got) == MT_OK &&
         mt_engine_forward(e, ids + 20, 1, false, got) == MT_OK;
    mt_engine_stats_get(e, &s);
    tap_ok(ok && s.forwards == 2 && s.tokens == 21 && s.attn_keys == ak && s.index_keys == ik,
           "api edges: stats of a 20-token prefill and one step: %llu forwards, %llu tokens, "
           "%.0f attention keys (want %.0f), %.0f index keys (want %.0f)",
           (unsigned long long)s.forwards, (unsigned long long)s.tokens, s.attn_keys, ak,
           s.index_keys, ik);

    /* index_head_dim must be a power of two (the FP8 indexer's Hadamard) */
    struct mt_engine *odd = NULL;
    int id = m->cfg.index_head_dim;
    m->cfg.index_head_dim = id + id / 2;
    mt_log_set_quiet(true);
    mt_status_t st = mt_engine_create(m, NULL, &odd);
    mt_log_set_quiet(false);
    m->cfg.index_head_dim = id;
    tap_ok(st == MT_ERR_UNSUPPORTED && strstr(mt_last_error(), "power of two") != NULL,
           "api edges: index_head_dim %d: MT_ERR_UNSUPPORTED, '%s'", id + id / 2,
           mt_last_error());
    if (st == MT_OK) {
        mt_engine_destroy(odd);
    }

    /* a CPU expert kernel that cannot allocate its workspace fails the forward pass (its
     * outputs are not valid: never logits made of them); after a reset the engine runs on.
     * The scalar kernel allocates on every call. */
    struct mt_cpu_team *team = NULL;
    struct mt_executor *tex = NULL;
    char *isa_was = getenv("MOETIER_ISA") != NULL ? strdup(getenv("MOETIER_ISA")) : NULL;
    setenv("MOETIER_ISA", "scalar", 1);
    mt_engine_reset(e);
    ok = mt_cpu_team_create(-1, 0, &team) == MT_OK &&
         mt_executor_cpu_team_create(mt_engine_provider(e), team, &tex) == MT_OK;
    if (ok) {
        mt_engine_set_executor(e, MT_TIER_DRAM_CPU, tex);
        mt_cpu_experts_ws_fault = 1;
        mt_log_set_quiet(true);
        st = mt_engine_forward(e, ids, n, true, got);
        mt_log_set_quiet(false);
        bool used = mt_cpu_experts_ws_fault == 0;
        mt_cpu_experts_ws_fault = 0;
        mt_engine_reset(e);
        ok = used && st == MT_ERR_NOMEM && mt_engine_forward(e, ids, n, true, got) == MT_OK;
        rel = ok ? golden_worst_row_rel(got, full, n, V, &wr) : INFINITY;
        mt_engine_set_executor(e, MT_TIER_DRAM_CPU, NULL);
    }
    tap_ok(ok && rel <= REL_TOL, "api edges: a CPU-team kernel without its workspace fails the "
           "forward with MT_ERR_NOMEM (%s); after a reset it runs (worst %.2e)",
           mt_status_str(st), rel);
    mt_executor_destroy(tex);
    mt_cpu_team_destroy(team);
    if (isa_was != NULL) { /* as the caller had it */
        setenv("MOETIER_ISA", isa_was, 1);
    } else {
        unsetenv("MOETIER_ISA");
    }
    free(isa_was);
out:
    free(lng);
    free(got);
    mt_engine_destroy(e);
    mt_engine_destroy(c16);
}

/* The bytes of expert (l, x) as the shards hold them: its three weights and their scales. */
static uint64_t
expert_nbytes(const struct mt_model *m, int l, int x)
{
    const struct mt_expert_weights *w = &m->layers[l].experts[x];
    const struct mt_weight *ws[3] = {&w->gate, &w->up, &w->down};
    uint64_t b = 0;

    for (int i = 0; i < 3; i++) {
        b += ws[i]->w->nbytes + (ws[i]->scale != NULL ? ws[i]->scale->nbytes : 0);
    }
    return b;
}

/* Does the acquired weight w hold the shards' bytes of mw? */
static bool
same_as_shards(const struct mt_model *m, const struct mt_cpu_weight *w, const struct mt_weight *mw)
{
    void *buf = malloc(mw->w->nbytes);
    bool ok = buf != NULL && mt_st_set_read(m->set, mw->w, buf, mw->w->nbytes) == MT_OK &&
              memcmp(buf, w->data, mw->w->nbytes) == 0;

    free(buf);
    return ok;
}

/*
 * The checkpoint provider's contract (expert_provider.h) on the tiny checkpoint: with resident
 * NULL every expert stays after its first use, read once (the bytes it holds are the expert's, not
 * twice them); a non-resident expert acquired twice stays readable until its last release and is
 * freed then; an expert that does not exist is an error, not a read.
 */
static void
checkpoint_provider(const struct mt_model *m)
{
    int L = m->cfg.num_hidden_layers;
    int E = m->cfg.n_routed_experts;
    size_t n = (size_t)L * (size_t)E;
    bool *none = calloc(n > 0 ? n : 1, sizeof(*none));
    struct mt_expert_provider *all = NULL;
    struct mt_expert_provider *few = NULL;
    struct mt_expert w1;
    struct mt_expert w2;
    int l = 0;
    int x = E - 1;

    while (l < L && !m->layers[l].is_moe) {
        l++;
    }
    if (!tap_ok(none != NULL && l < L &&
                    mt_expert_provider_checkpoint_create(m, NULL, &all) == MT_OK &&
                    mt_expert_provider_checkpoint_create(m, none, &few) == MT_OK,
                "checkpoint provider: created, resident NULL and none (first MoE layer %d)", l)) {
        goto out;
    }
    uint64_t want = expert_nbytes(m, l, x);
    bool ok = all->ops->acquire(all->self, l, x, &w1) == MT_OK;
    if (ok) {
        all->ops->release(all->self, l, x);
    }
    ok = ok && all->ops->acquire(all->self, l, x, &w2) == MT_OK;
    if (ok) {
        all->ops->release(all->self, l, x);
    }
    tap_ok(ok && mt_expert_provider_checkpoint_bytes(all) == want,
           "checkpoint provider, resident NULL: an expert acquired and released twice stays, held "
           "once (%llu bytes, the expert has %llu)",
           (unsigned long long)mt_expert_provider_checkpoint_bytes(all), (unsigned long long)want);

    ok = few->ops->acquire(few->self, l, x, &w1) == MT_OK;
    ok = ok && few->ops->acquire(few->self, l, x, &w2) == MT_OK;
    if (ok) {
        few->ops->release(few->self, l, x);
    }
    const struct mt_expert_weights *ew = &m->layers[l].experts[x];
    tap_ok(ok && mt_expert_provider_checkpoint_bytes(few) == want &&
               same_as_shards(m, &w1.gate, &ew->gate) && same_as_shards(m, &w1.up, &ew->up) &&
               same_as_shards(m, &w1.down, &ew->down),
           "checkpoint provider, nothing resident: acquired twice, released once, the expert is "
           "still held (%llu bytes) and still the shards' bytes",
           (unsigned long long)mt_expert_provider_checkpoint_bytes(few));
    if (ok) {
        few->ops->release(few->self, l, x);
    }
    tap_ok(ok && mt_expert_provider_checkpoint_bytes(few) == 0,
           "checkpoint provider, nothing resident: freed at its last release (%llu bytes held)",
           (unsigned long long)mt_expert_provider_checkpoint_bytes(few));
    /* freed means read afresh next time: once more the expert's bytes, counted once */
    ok = ok && few->ops->acquire(few->self, l, x, &w1) == MT_OK;
    tap_ok(ok && mt_expert_provider_checkpoint_bytes(few) == want &&
               same_as_shards(m, &w1.gate, &ew->gate) && same_as_shards(m, &w1.up, &ew->up) &&
               same_as_shards(m, &w1.down, &ew->down),
           "checkpoint provider, nothing resident: acquired again after it was freed, read again "
           "(%llu bytes held, the expert has %llu)",
           (unsigned long long)mt_expert_provider_checkpoint_bytes(few), (unsigned long long)want);
    if (ok) {
        few->ops->release(few->self, l, x);
    }

    int bad[][2] = {{-1, 0}, {L, 0}, {l, -1}, {l, E}, {0, 0}};
    int n_bad = L > 0 && !m->layers[0].is_moe ? 5 : 4; /* layer 0 when dense */
    int refused = 0;
    mt_log_set_quiet(true);
    for (int i = 0; i < n_bad; i++) {
        refused += all->ops->acquire(all->self, bad[i][0], bad[i][1], &w1) == MT_ERR_INVAL;
    }
    mt_log_set_quiet(false);
    tap_ok(refused == n_bad,
           "checkpoint provider: layer -1 and %d, expert -1 and %d%s are MT_ERR_INVAL (%d of %d)",
           L, E, n_bad == 5 ? ", a dense layer's expert" : "", refused, n_bad);
out:
    mt_expert_provider_destroy(few);
    mt_expert_provider_destroy(all);
    free(none);
}

/* checkpoint_threads: what each thread is given and what it counts */
struct ckpt_thread {
    const struct mt_model *m;
    struct mt_expert_provider *p;   /* nothing resident: every last release frees */
    struct mt_expert_provider *ref; /* everything resident: the bytes to compare with */
    pthread_barrier_t *step;        /* NULL: run free */
    int rounds;
    int acquired;
    int wrong; /* views whose bytes are not the expert's, or failed acquires */
};

static bool
same_expert(const struct mt_model *m, int l, int x, const struct mt_expert *a,
            const struct mt_expert *b)
{
    const struct mt_expert_weights *ew = &m->layers[l].experts[x];

    return memcmp(a->gate.data, b->gate.data, ew->gate.w->nbytes) == 0 &&
           memcmp(a->up.data, b->up.data, ew->up.w->nbytes) == 0 &&
           memcmp(a->down.data, b->down.data, ew->down.w->nbytes) == 0;
}

static void *
ckpt_thread_run(void *arg)
{
    struct ckpt_thread *t = arg;
    const struct mt_model *m = t->m;

    for (int r = 0; r < t->rounds; r++) {
        for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
            for (int x = 0; x < m->cfg.n_routed_experts && m->layers[l].is_moe; x++) {
                struct mt_expert w, want;
                if (t->step != NULL) {
                    pthread_barrier_wait(t->step); /* all threads ask for (l, x) at once */
                }
                bool ok = t->p->ops->acquire(t->p->self, l, x, &w) == MT_OK;
                bool same = false;
                if (ok && t->ref->ops->acquire(t->ref->self, l, x, &want) == MT_OK) {
                    same = same_expert(m, l, x, &w, &want);
                    t->ref->ops->release(t->ref->self, l, x);
                }
                t->wrong += !same;
                t->acquired += ok;
                if (t->step != NULL) {
                    pthread_barrier_wait(t->step); /* all hold it: the last release frees it */
                }
                if (ok) {
                    t->p->ops->release(t->p->self, l, x);
                }
            }
        }
    }
    return NULL;
}

/*
 * The checkpoint provider from four threads at once, nothing resident: in lockstep (each expert
 * asked for by all four at the same moment: one reads it, the others wait for that read, and
 * all four must be woken by its end; freed after the four release it, read again next round),
 * then running free (acquires racing releases that free the expert and reads that start
 * again). Every view holds the expert's bytes; nothing is held at the end. A lost wake-up
 * shows as a hang, which the test's time limit ends.
 */
static void
checkpoint_threads(const struct mt_model *m)
{
    enum { THREADS = 4 };
    size_t n = (size_t)m->cfg.num_hidden_layers * (size_t)m->cfg.n_routed_experts;
    bool *none = calloc(n > 0 ? n : 1, sizeof(*none));
    struct mt_expert_provider *p = NULL;
    struct mt_expert_provider *ref = NULL;
    pthread_barrier_t step;
    struct ckpt_thread t[THREADS];
    pthread_t th[THREADS];

    if (!tap_ok(none != NULL && mt_expert_provider_checkpoint_create(m, none, &p) == MT_OK &&
                    mt_expert_provider_checkpoint_create(m, NULL, &ref) == MT_OK &&
                    pthread_barrier_init(&step, NULL, THREADS) == 0,
                "checkpoint provider from %d threads: created", THREADS)) {
        goto out;
    }
    for (int free_run = 0; free_run < 2; free_run++) {
        int started = 0, acquired = 0, wrong = 0;

        for (int i = 0; i < THREADS; i++) {
            t[i] = (struct ckpt_thread){.m = m, .p = p, .ref = ref,
                                        .step = free_run ? NULL : &step,
                                        .rounds = free_run ? 50 : 10};
        }
        for (int i = 0; i < THREADS; i++) {
            started += pthread_create(&th[i], NULL, ckpt_thread_run, &t[i]) == 0;
        }
        if (started < THREADS) {
            tap_bail_out("checkpoint provider from threads: could not start its threads");
        }
        for (int i = 0; i < THREADS; i++) {
            pthread_join(th[i], NULL);
            acquired += t[i].acquired;
            wrong += t[i].wrong;
        }
        tap_ok(acquired > 0 && wrong == 0 && mt_expert_provider_checkpoint_bytes(p) == 0,
               "checkpoint provider, nothing resident, %d threads %s: %d acquires, %d of them "
               "failed or not the expert's bytes; %llu bytes held after", THREADS,
               free_run ? "running free" : "in lockstep", acquired, wrong,
               (unsigned long long)mt_expert_provider_checkpoint_bytes(p));
    }
    pthread_barrier_destroy(&step);
out:
    mt_expert_provider_destroy(ref);
    mt_expert_provider_destroy(p);
    free(none);
}

/*
 * The checkpoint provider when a shard cannot be read (cut short after the model opened: a
 * drive gone bad): the acquire fails with MT_ERR_IO naming the layer and expert and the reads
 * tried; nothing is held after it, and the next acquire of that expert is read afresh and fails
 * again (the slot is neither left loaded nor locked). A copy of the tiny checkpoint of its own.
 */
static void
checkpoint_read_error(void)
{
    const char *dir = tap_tmpdir();
    struct mt_model *m = NULL;
    struct mt_expert_provider *p = NULL;
    struct mt_expert w;
    char want[64];
    char msg[512] = "";
    int l = 0;

    if (!tap_ok(dir != NULL && golden_synth_tiny(dir, 5) == MT_OK &&
                    mt_model_open(dir, &m) == MT_OK,
                "read error: a tiny checkpoint of its own opens")) {
        goto out;
    }
    while (l < m->cfg.num_hidden_layers && !m->layers[l].is_moe) {
        l++;
    }
    int x = m->cfg.n_routed_experts - 1;
    const struct mt_st_tensor *t = m->layers[l].experts[x].gate.w;
    bool *none = calloc((size_t)m->cfg.num_hidden_layers * m->cfg.n_routed_experts, 1);
    bool ok = none != NULL && mt_expert_provider_checkpoint_create(m, none, &p) == MT_OK &&
              truncate(mt_st_set_file_path(m->set, t->file), (off_t)t->offset + 1) == 0;
    free(none);
    mt_status_t st[2] = {MT_OK, MT_OK};
    /* the first acquire's stderr goes to a file: its retry warnings say how often it read */
    char log[700];
    int retries = 0;

    snprintf(log, sizeof(log), "%s/stderr.txt", dir);
    if (ok) {
        int saved = tap_stderr_to(log);
        st[0] = p->ops->acquire(p->self, l, x, &w);
        snprintf(msg, sizeof(msg), "%s", mt_last_error());
        tap_stderr_restore(saved);
        retries = tap_count_lines(log, "reading it again");
    }
    tap_ok(ok && retries == 2, "checkpoint provider, a shard cut short: read again twice (%d "
           "retry warnings)", retries);
    bool was_quiet = mt_log_set_quiet(true);
    if (ok) {
        st[1] = p->ops->acquire(p->self, l, x, &w);
    }
    mt_log_set_quiet(was_quiet);
    snprintf(want, sizeof(want), "layer %d expert %d: ", l, x);
    tap_ok(ok && st[0] == MT_ERR_IO && strstr(msg, want) != NULL &&
               strstr(msg, "(read 3 times)") != NULL,
           "checkpoint provider, a shard cut short: MT_ERR_IO naming layer %d expert %d and the "
           "3 reads: %s", l, x, msg);
    tap_ok(ok && st[1] == MT_ERR_IO && mt_expert_provider_checkpoint_bytes(p) == 0,
           "checkpoint provider, a shard cut short: nothing held (%llu bytes), the next acquire "
           "reads again and fails again (status %d)",
           p != NULL ? (unsigned long long)mt_expert_provider_checkpoint_bytes(p) : 0ull, st[1]);
out:
    mt_expert_provider_destroy(p);
    mt_model_destroy(m);
    if (dir != NULL) {
        tap_rmtree(dir);
    }
}

/*
 * A provider in front of the checkpoint provider that watches the engine: which experts it
 * announces (prefetch) and acquires, and how many streamed (NVMe-tier) experts are held at once
 * against its capacity.
 */
struct watch {
    struct mt_expert_provider *inner; /* borrowed */
    const uint8_t *tiers;             /* borrowed, [n_layers * E] */
    int E;
    int cap;
    pthread_mutex_t lock;
    int *announced; /* [n_layers * E] prefetch mentions */
    int *acquired;  /* [n_layers * E] */
    int held;       /* streamed experts held now */
    int max_held;
};

static bool
watch_nvme(const struct watch *w, int layer, int expert)
{
    return w->tiers[(size_t)layer * w->E + expert] == MT_TIER_NVME;
}

static void
watch_prefetch(void *self, int layer, const int *experts, int n)
{
    struct watch *w = self;

    pthread_mutex_lock(&w->lock);
    for (int i = 0; i < n; i++) {
        w->announced[(size_t)layer * w->E + experts[i]]++;
    }
    pthread_mutex_unlock(&w->lock);
}

static mt_status_t
watch_acquire(void *self, int layer, int expert, struct mt_expert *out)
{
    struct watch *w = self;
    mt_status_t st = w->inner->ops->acquire(w->inner->self, layer, expert, out);

    pthread_mutex_lock(&w->lock);
    w->acquired[(size_t)layer * w->E + expert] += st == MT_OK;
    if (st == MT_OK && watch_nvme(w, layer, expert)) {
        w->held++;
        w->max_held = w->held > w->max_held ? w->held : w->max_held;
    }
    pthread_mutex_unlock(&w->lock);
    return st;
}

static void
watch_release(void *self, int layer, int expert)
{
    struct watch *w = self;

    pthread_mutex_lock(&w->lock);
    w->held -= watch_nvme(w, layer, expert);
    pthread_mutex_unlock(&w->lock);
    w->inner->ops->release(w->inner->self, layer, expert);
}

static int
watch_capacity(void *self)
{
    return ((struct watch *)self)->cap;
}

static void
watch_destroy(void *self)
{
    (void)self;
}

static const struct mt_expert_provider_ops watch_ops = {
    .name = "watch", .prefetch = watch_prefetch, .acquire = watch_acquire,
    .release = watch_release, .capacity = watch_capacity, .destroy = watch_destroy,
};

/*
 * A plan with a third of the experts on NVMe, computed by the CPU team (which acquires a whole
 * submit before releasing any): the engine announces to the provider exactly the streamed
 * experts a layer's tokens need, once each time (moe.c: "Layer l's NVMe experts that have tokens"),
 * none in memory and none without tokens; and it never holds more streamed experts at once than
 * the provider's capacity (expert_provider.h: callers go in waves of at most that many).
 */
static void
streamed_experts(const struct mt_model *m, const int32_t *ids, int n, const float *want)
{
    int E = m->cfg.n_routed_experts;
    size_t n_keys = (size_t)m->cfg.num_hidden_layers * (size_t)E;
    int V = m->cfg.vocab_size;
    uint8_t *tiers = malloc(n_keys);
    float *got = malloc((size_t)n * (size_t)V * sizeof(float));
    struct watch w = {.E = E, .cap = 2, .tiers = tiers};
    struct mt_expert_provider prov = {&watch_ops, &w};
    struct mt_cpu_team *team = NULL;
    struct mt_executor *tex = NULL;
    struct mt_engine *e = NULL;
    struct mt_engine_opts o;
    int wrong = 0;
    int n_streamed = 0;
    int wr;

    pthread_mutex_init(&w.lock, NULL);
    w.announced = calloc(n_keys, sizeof(int));
    w.acquired = calloc(n_keys, sizeof(int));
    bool ok = tiers != NULL && got != NULL && w.announced != NULL && w.acquired != NULL &&
              mt_expert_provider_checkpoint_create(m, NULL, &w.inner) == MT_OK;
    if (ok) {
        for (size_t i = 0; i < n_keys; i++) {
            tiers[i] = i % 3 == 1 ? MT_TIER_NVME : MT_TIER_DRAM_CPU;
        }
        mt_engine_opts_default(&o);
        o.expert_tiers = tiers;
        o.provider = &prov;
        ok = mt_engine_create(m, &o, &e) == MT_OK && mt_cpu_team_create(-1, 0, &team) == MT_OK &&
             mt_executor_cpu_team_create(&prov, team, &tex) == MT_OK;
    }
    if (ok) {
        mt_engine_set_executor(e, MT_TIER_DRAM_CPU, tex);
        mt_engine_set_executor(e, MT_TIER_NVME, tex);
        ok = mt_engine_forward(e, ids, n, true, got) == MT_OK;
        mt_engine_set_executor(e, MT_TIER_DRAM_CPU, NULL);
        mt_engine_set_executor(e, MT_TIER_NVME, NULL);
    }
    double rel = ok ? golden_worst_row_rel(got, want, n, V, &wr) : INFINITY;
    /* the amx family rounds prefill activations and weights to bf16: within 2e-2 of the others
     * (cpu/experts.h), not 1e-3 */
    enum mt_cpu_level lvl = MT_CPU_LEVEL_SCALAR;
    double tol = mt_cpu_level_select(&lvl) == MT_OK && lvl == MT_CPU_LEVEL_AMX ? 2e-2 : REL_TOL;
    tap_ok(ok && rel <= tol, "tiny: a third of the experts streamed, on the CPU team (%s): the "
           "logits of the reference (worst %.2e, tolerance %.0e)", mt_cpu_level_name(lvl), rel,
           tol);
    tap_ok(ok && w.max_held > 0 && w.max_held <= w.cap,
           "tiny: at most the provider's capacity of streamed experts held at once (%d of %d)",
           w.max_held, w.cap);
    /* two tokens, where most streamed experts have none: only those with tokens are announced */
    int unused = 0;
    if (ok) {
        memset(w.announced, 0, n_keys * sizeof(int));
        memset(w.acquired, 0, n_keys * sizeof(int));
        mt_engine_reset(e);
        mt_engine_set_executor(e, MT_TIER_DRAM_CPU, tex);
        mt_engine_set_executor(e, MT_TIER_NVME, tex);
        ok = mt_engine_forward(e, ids, 2, true, got) == MT_OK;
        mt_engine_set_executor(e, MT_TIER_DRAM_CPU, NULL);
        mt_engine_set_executor(e, MT_TIER_NVME, NULL);
    }
    for (size_t i = 0; ok && i < n_keys; i++) {
        bool nvme = tiers[i] == MT_TIER_NVME && m->layers[i / (size_t)E].is_moe;

        n_streamed += nvme && w.acquired[i] > 0;
        unused += nvme && w.acquired[i] == 0;
        wrong += w.announced[i] != (nvme ? w.acquired[i] : 0);
    }
    tap_ok(ok && n_streamed > 0 && unused > 0 && wrong == 0,
           "tiny, 2 tokens: the %d streamed experts they need are announced, not the %d without "
           "tokens, nor any in DRAM (%d experts wrong)", n_streamed, unused, wrong);
    mt_engine_destroy(e);
    mt_executor_destroy(tex);
    mt_cpu_team_destroy(team);
    mt_expert_provider_destroy(w.inner);
    pthread_mutex_destroy(&w.lock);
    free(w.announced);
    free(w.acquired);
    free(got);
    free(tiers);
}

static void
synthetic(void)
{
    const char *dir = tap_tmpdir();
    struct mt_model *m = NULL;
    struct mt_engine *e = NULL;
    struct mt_engine *dn = NULL;
    struct mt_engine *f8 = NULL;
    enum { T = 40 };
    int32_t ids[T];
    float *full = NULL;
    float *part = NULL;
    int V;
    int wr;

    if (!tap_ok(golden_synth_tiny(dir, 5) == MT_OK, "synth tiny checkpoint written") ||
        !tap_ok(mt_model_open(dir, &m) == MT_OK, "synth tiny checkpoint opens") ||
        !tap_ok(make_engine(m, MT_INDEXER_EXACT, MT_ATTN_SPARSE, false, &e) == MT_OK &&
                    make_engine(m, MT_INDEXER_EXACT, MT_ATTN_DENSE, false, &dn) == MT_OK &&
                    make_engine(m, MT_INDEXER_FP8, MT_ATTN_SPARSE, true, &f8) == MT_OK,
                "engines build on the tiny checkpoint")) {
        goto out;
    }
    int topk = m->cfg.index_topk;
    V = mt_engine_vocab(e);
    for (int i = 0; i < T; i++) {
        ids[i] = (int32_t)((i * 37 + 11) % V);
    }
    full = malloc((size_t)T * V * sizeof(float));
    part = malloc((size_t)T * V * sizeof(float));

    /* one long prefill */
    struct topk_log tl = {0, 0};
    mt_engine_set_topk_hook(e, topk_hook, &tl);
    bool ok = mt_engine_forward(e, ids, T, true, full) == MT_OK;
    mt_engine_set_topk_hook(e, NULL, NULL);
    bool finite = ok;
    for (size_t i = 0; i < (size_t)T * V && finite; i++) {
        finite = isfinite(full[i]);
    }
    tap_ok(finite, "tiny: prefill of %d tokens gives finite logits", T);
    tap_ok(ok && tl.max_k == topk && tl.n_sel > 0 && mt_engine_pos(e) == T,
           "tiny: sparse path selects top-%d (max k %d, %d real selections)", topk, tl.max_k,
           tl.n_sel);

    /* prefill 25 then decode one at a time */
    mt_engine_reset(e);
    ok = mt_engine_forward(e, ids, 25, true, part) == MT_OK;
    for (int t = 25; t < T && ok; t++) {
        ok = mt_engine_forward(e, &ids[t], 1, false, part + (size_t)t * V) == MT_OK;
    }
    double rel = ok ? golden_worst_row_rel(part, full, T, V, &wr) : INFINITY;
    tap_ok(ok && rel <= REL_TOL, "tiny: prefill 25 + decode 15 equals one prefill (worst %.2e)",
           rel);

    /* chunked prefill 7 + 1 + 20 + 12 */
    mt_engine_reset(e);
    int cuts[] = {0, 7, 8, 28, T};
    ok = true;
    for (int c = 0; c < 4 && ok; c++) {
        ok = mt_engine_forward(e, ids + cuts[c], cuts[c + 1] - cuts[c], true,
                               part + (size_t)cuts[c] * V) == MT_OK;
    }
    rel = ok ? golden_worst_row_rel(part, full, T, V, &wr) : INFINITY;
    tap_ok(ok && rel <= REL_TOL, "tiny: chunked prefill (7, 1, 20, 12) equals whole prefill "
           "(worst %.2e)", rel);

    /* truncate: feed other tokens after position 20, cut back to 20, feed the real ones */
    mt_engine_reset(e);
    int32_t other[20];
    for (int i = 0; i < 20; i++) {
        other[i] = (int32_t)((i * 53 + 3) % V);
    }
    ok = mt_engine_forward(e, ids, 20, true, part) == MT_OK &&
         mt_engine_forward(e, other, 20, false, part + (size_t)20 * V) == MT_OK;
    mt_engine_truncate(e, 20);
    ok = ok && mt_engine_pos(e) == 20 &&
         mt_engine_forward(e, ids + 20, T - 20, true, part + (size_t)20 * V) == MT_OK;
    rel = ok ? golden_worst_row_rel(part, full, T, V, &wr) : INFINITY;
    tap_ok(ok && rel <= REL_TOL, "tiny: truncate to 20 then feeding the rest equals whole "
           "prefill (worst %.2e)", rel);

    /* sparse == dense while prompts are no longer than index_topk; differs after */
    ok = mt_engine_forward(dn, ids, T, true, part) == MT_OK;
    rel = ok ? golden_worst_row_rel(part, full, topk, V, &wr) : INFINITY;
    tap_ok(ok && rel == 0.0, "tiny: sparse equals dense on the first %d positions (worst %.2e)",
           topk, rel);
    double later = ok ? golden_worst_row_rel(part + (size_t)topk * V, full + (size_t)topk * V,
                                             T - topk, V, &wr)
                      : 0.0;
    tap_ok(later > 0.0, "tiny: sparse differs from dense once positions pass index_topk "
           "(%.2e)", later);

    /* FP8 indexer mode */
    ok = mt_engine_forward(f8, ids, T, true, part) == MT_OK;
    double ov;
    int64_t nsel;
    mt_engine_indexer_overlap(f8, &ov, &nsel);
    tap_diag("tiny: FP8 vs exact indexer top-k overlap %.4f over %lld selections", ov,
             (long long)nsel);
    tap_ok(ok && nsel > 0 && ov >= 0.95, "tiny: FP8 indexer top-k overlap >= 95%% (%.2f%%)",
           100.0 * ov);

    expert_residency(m, ids, T, full);
    checkpoint_provider(m);
    checkpoint_threads(m);
    checkpoint_read_error();
    streamed_experts(m, ids, T, full);

    /* routed experts go through the executor of their tier, one submit per layer */
    struct expert_count ec = {0};
    struct mt_executor cex = {&count_ops, &ec};
    int n_moe = 0;
    for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
        n_moe += m->cfg.layer_is_moe[l];
    }
    ok = mt_executor_ref_create(mt_engine_provider(e), &ec.inner) == MT_OK;
    mt_engine_reset(e);
    mt_engine_set_executor(e, MT_TIER_DRAM_CPU, &cex);
    ok = ok && mt_engine_forward(e, ids, T, true, part) == MT_OK;
    mt_engine_set_executor(e, MT_TIER_DRAM_CPU, NULL);
    mt_executor_destroy(ec.inner);
    rel = ok ? golden_worst_row_rel(part, full, T, V, &wr) : INFINITY;
    tap_ok(ok && rel == 0.0 && ec.tokens == T * n_moe * m->cfg.num_experts_per_tok &&
               ec.submits == n_moe,
           "tiny: every routed expert runs through its tier's executor (%d submits, %d tasks, %d "
           "token-expert pairs = %d x %d MoE layers x top-%d), same logits", ec.submits,
           ec.calls, ec.tokens, T, n_moe, m->cfg.num_experts_per_tok);

    /* greedy decode is deterministic */
    int32_t g1[8], g2[8];
    tap_ok(golden_greedy(e, ids, 10, 8, g1) && golden_greedy(e, ids, 10, 8, g2) &&
               memcmp(g1, g2, sizeof(g1)) == 0,
           "tiny: greedy generation is reproducible");

    /* errors through the API */
    mt_log_set_quiet(true);
    mt_engine_reset(e);
    int32_t bad = V;
    tap_ok(mt_engine_forward(e, ids, 0, false, part) == MT_ERR_INVAL &&
               strstr(mt_last_error(), "empty prompt") != NULL,
           "empty prompt: MT_ERR_INVAL, '%s'", mt_last_error());
    tap_ok(mt_engine_forward(e, &bad, 1, false, part) == MT_ERR_INVAL &&
               strstr(mt_last_error(), "outside the vocabulary") != NULL,
           "out-of-range id: MT_ERR_INVAL, '%s'", mt_last_error());
    int64_t maxp = mt_engine_max_pos(e);
    int32_t *lng = calloc((size_t)maxp + 1, sizeof(int32_t));
    tap_ok(lng != NULL && mt_engine_check_prompt(e, lng, (int)maxp + 1) == MT_ERR_INVAL &&
               mt_engine_forward(e, lng, (int)maxp + 1, false, part) == MT_ERR_INVAL &&
               strstr(mt_last_error(), "longer than the model") != NULL && mt_engine_pos(e) == 0,
           "too-long prompt (%lld tokens): MT_ERR_INVAL, '%s'", (long long)maxp + 1,
           mt_last_error());
    int32_t neg = -3;
    tap_ok(mt_engine_check_prompt(e, &neg, 1) == MT_ERR_INVAL, "negative id: MT_ERR_INVAL");
    free(lng);
    mt_log_set_quiet(false);

    api_edges(m, ids, T, full);

out:
    free(full);
    free(part);
    mt_engine_destroy(e);
    mt_engine_destroy(dn);
    mt_engine_destroy(f8);
    mt_model_destroy(m);
    tap_rmtree(dir);
}

/* The session tests' setup: a tiny checkpoint (seed), one engine and a greedy session on it. */
struct session_fixture {
    const char *dir;
    struct mt_model *m;
    struct mt_engine *e;
    struct mt_session *s;
};

static bool
fixture_open(struct session_fixture *f, uint64_t seed, const char *what)
{
    struct mt_sampler_opts sp;

    *f = (struct session_fixture){.dir = tap_tmpdir()};
    mt_sampler_opts_default(&sp);
    return tap_ok(golden_synth_tiny(f->dir, seed) == MT_OK &&
                      mt_model_open(f->dir, &f->m) == MT_OK &&
                      mt_engine_create(f->m, NULL, &f->e) == MT_OK &&
                      mt_session_create(f->e, &sp, &f->s) == MT_OK,
                  "%s: builds on the tiny checkpoint", what);
}

static void
fixture_close(struct session_fixture *f)
{
    mt_session_destroy(f->s);
    mt_engine_destroy(f->e);
    mt_model_destroy(f->m);
    tap_rmtree(f->dir);
}

static bool
stop_after_two(void *ctx, int32_t id)
{
    int *n = ctx;

    (void)id;
    return ++*n < 2;
}

/*
 * The session's bookkeeping: a failed prefill reports no decode time; a caller's stop leaves the
 * last id out of the history (it was not fed), so the history matches the engine's position.
 */
static void
session_books(void)
{
    struct session_fixture f;
    struct mt_gen_opts go;
    struct mt_gen_result r;
    int32_t prompt[4] = {3, 9, 27, 81};
    int32_t bad[2] = {3, -1};
    size_t nh = 0;
    int calls = 0;

    mt_gen_opts_default(&go);
    go.max_new = 5;
    if (!fixture_open(&f, 9, "session")) {
        goto out;
    }
    mt_log_set_quiet(true);
    mt_status_t st = mt_session_generate(f.s, bad, 2, &go, NULL, NULL, &r);
    mt_log_set_quiet(false);
    tap_ok(st == MT_ERR_INVAL && r.decode_s == 0.0 && r.n_generated == 0,
           "session: a bad prompt fails with no decode time (decode_s %g)", r.decode_s);
    go.ignore_eos = true;
    st = mt_session_generate(f.s, prompt, 4, &go, stop_after_two, &calls, &r);
    mt_session_history(f.s, &nh);
    tap_ok(st == MT_OK && r.stop == MT_STOP_CALLER && r.n_generated == 2 && r.n_decoded == 1 &&
               nh == 5 && mt_engine_pos(f.e) == 5,
           "session: a caller's stop after 2 ids feeds 1; history %zu = engine position %lld",
           nh, (long long)mt_engine_pos(f.e));
out:
    fixture_close(&f);
}

/* What the logits callbacks below saw. */
struct seen_logits {
    struct mt_session *s;
    int vocab;
    float *rows;          /* on_prompt_logits: every row, in place */
    size_t pieces[8][2];  /* from, n of each call */
    int n_pieces;
    int stop_at_piece;    /* say stop after this call (-1: never) */
    int with_logits;      /* token callbacks that had the logits, */
    int argmax_ok;        /* ... and whose id was their argmax */
    int calls;
};

static bool
keep_rows(void *ctx, size_t from, size_t n, const float *rows)
{
    struct seen_logits *v = ctx;

    if (v->n_pieces < 8) {
        v->pieces[v->n_pieces][0] = from;
        v->pieces[v->n_pieces][1] = n;
    }
    memcpy(v->rows + from * (size_t)v->vocab, rows, n * (size_t)v->vocab * sizeof(*rows));
    return v->n_pieces++ != v->stop_at_piece;
}

static bool
check_step_logits(void *ctx, int32_t id)
{
    struct seen_logits *v = ctx;
    const float *l = mt_session_logits(v->s);

    v->calls++;
    if (l != NULL) {
        v->with_logits++;
        v->argmax_ok += mt_sampler_argmax(l, v->vocab) == id;
    }
    return true;
}

/*
 * The session's logits for a caller: a prompt's rows handed over in pieces equal the rows of the
 * whole prompt run at once; a stop from that callback ends before the first sample with nothing
 * kept; want_logits gives every step's logits to a greedy session (whose id is their argmax), and
 * without it a greedy step after the first has none.
 */
static void
session_logits(void)
{
    struct session_fixture f;
    struct mt_gen_opts go;
    struct mt_gen_result r;
    enum { N = 300 };
    int32_t prompt[N];
    float *whole = NULL;
    struct seen_logits v = {.stop_at_piece = -1};
    size_t nh = 1;

    for (int i = 0; i < N; i++) {
        prompt[i] = (int32_t)(3 + (i * 37) % 200);
    }
    if (!fixture_open(&f, 5, "session logits")) {
        goto out;
    }
    v.s = f.s;
    v.vocab = mt_engine_vocab(f.e);
    whole = malloc((size_t)N * v.vocab * sizeof(*whole));
    v.rows = malloc((size_t)N * v.vocab * sizeof(*v.rows));
    if (whole == NULL || v.rows == NULL) {
        tap_ok(false, "session logits: memory");
        goto out;
    }
    mt_gen_opts_default(&go);
    go.max_new = 0;
    go.prompt_logits_out = whole;
    mt_status_t st = mt_session_generate(f.s, prompt, N, &go, NULL, NULL, &r);
    go.prompt_logits_out = NULL;
    go.on_prompt_logits = keep_rows;
    mt_status_t st2 = mt_session_generate(f.s, prompt, N, &go, NULL, &v, &r);
    double worst = 0;
    for (size_t i = 0; i < (size_t)N * v.vocab; i++) {
        double d = fabs((double)v.rows[i] - whole[i]) / (1e-3 + fabs((double)whole[i]));
        worst = d > worst ? d : worst;
    }
    tap_ok(st == MT_OK && st2 == MT_OK && r.n_reused == 0 && v.n_pieces == 3 &&
               v.pieces[0][0] == 0 && v.pieces[0][1] == MT_SESSION_PROMPT_PIECE &&
               v.pieces[1][0] == MT_SESSION_PROMPT_PIECE &&
               v.pieces[2][0] + v.pieces[2][1] == N && worst < 1e-4,
           "session logits: %d positions in %d pieces (the last %zu..%zu), each row as the whole "
           "prompt's (worst relative difference %.2g), nothing reused",
           N, v.n_pieces, v.pieces[2][0], v.pieces[2][0] + v.pieces[2][1], worst);

    v.n_pieces = 0;
    v.stop_at_piece = 1;
    go.max_new = 4;
    st = mt_session_generate(f.s, prompt, N, &go, check_step_logits, &v, &r);
    mt_session_history(f.s, &nh);
    tap_ok(st == MT_OK && r.stop == MT_STOP_CALLER && r.n_generated == 0 && v.calls == 0 &&
               v.n_pieces == 2 && nh == 0,
           "session logits: a stop after the second piece ends before any sample, history %zu",
           nh);

    go.on_prompt_logits = NULL;
    go.want_logits = true;
    go.ignore_eos = true;
    st = mt_session_generate(f.s, prompt, 40, &go, check_step_logits, &v, &r);
    tap_ok(st == MT_OK && v.calls == 4 && v.with_logits == 4 && v.argmax_ok == 4,
           "session logits: want_logits, greedy: every step's logits, the id their argmax (%d/%d)",
           v.argmax_ok, v.calls);
    v.calls = v.with_logits = v.argmax_ok = 0;
    go.want_logits = false;
    st = mt_session_generate(f.s, prompt, 30, &go, check_step_logits, &v, &r);
    tap_ok(st == MT_OK && v.calls == 4 && v.with_logits == 1 && v.argmax_ok == 1,
           "session logits: without it a greedy session has them only for the first step (%d)",
           v.with_logits);
out:
    free(whole);
    free(v.rows);
    fixture_close(&f);
}

/* What penalized_step saw: the ids so far, and whether each pick followed the rule. */
struct penalized {
    struct mt_session *s;
    int vocab;
    const struct mt_gen_opts *go;
    int32_t counts[1024];
    int steps;
    int ok;
};

/* The id must be the argmax of the model's logits with the penalties of the ids before it and
 * the biases applied (greedy). */
static bool
penalized_step(void *ctx, int32_t id)
{
    struct penalized *p = ctx;
    const float *l = mt_session_logits(p->s);
    int32_t best = -1;
    float best_v = -INFINITY;

    for (int32_t i = 0; l != NULL && i < p->vocab && i < 1024; i++) {
        float v = l[i];
        if (p->counts[i] > 0) {
            v -= p->go->presence_penalty + p->go->frequency_penalty * (float)p->counts[i];
        }
        for (int b = 0; b < p->go->n_bias; b++) {
            v += p->go->bias[b].id == i ? p->go->bias[b].bias : 0.0f;
        }
        if (v > best_v) {
            best_v = v;
            best = i;
        }
    }
    p->ok += best == id;
    p->steps++;
    if (id >= 0 && id < 1024) {
        p->counts[id]++;
    }
    return true;
}

/*
 * Penalties and logit_bias: each greedy pick is the argmax of the model's logits less
 * presence_penalty for every id already generated and frequency_penalty per time, plus the
 * biases; the callback still sees the model's own logits; a bias on an id outside the
 * vocabulary is refused before anything runs.
 */
static void
session_penalties(void)
{
    struct session_fixture f;
    struct mt_gen_opts go;
    struct mt_gen_result r;
    int32_t prompt[6] = {3, 9, 27, 81, 7, 7};
    struct mt_logit_bias bias[2] = {{5, -100.0f}, {11, 3.0f}};
    struct penalized p = {0};

    if (!fixture_open(&f, 7, "penalties")) {
        goto out;
    }
    if (!tap_ok(mt_engine_vocab(f.e) <= 1024, "penalties: the vocabulary fits the test (%d ids)",
                mt_engine_vocab(f.e))) {
        goto out;
    }
    mt_gen_opts_default(&go);
    go.max_new = 24;
    go.ignore_eos = true;
    go.presence_penalty = 1.5f;
    go.frequency_penalty = 0.75f;
    go.bias = bias;
    go.n_bias = 2;
    p.s = f.s;
    p.vocab = mt_engine_vocab(f.e);
    p.go = &go;
    mt_status_t st = mt_session_generate(f.s, prompt, 6, &go, penalized_step, &p, &r);
    int32_t distinct = 0;
    for (int i = 0; i < 1024; i++) {
        distinct += p.counts[i] > 0;
    }
    tap_ok(st == MT_OK && p.steps == 24 && p.ok == 24 && p.counts[5] == 0,
           "penalties: 24 greedy picks, each the argmax of the logits with presence 1.5, "
           "frequency 0.75 and the biases (%d of %d; %d distinct ids; id 5 banned)",
           p.ok, p.steps, (int)distinct);
    memset(&p.counts, 0, sizeof(p.counts));
    p.steps = p.ok = 0;
    go.presence_penalty = go.frequency_penalty = 0.0f;
    bias[1].bias = 100.0f;
    st = mt_session_generate(f.s, prompt, 6, &go, penalized_step, &p, &r);
    tap_ok(st == MT_OK && p.counts[11] == 24, "a bias of 100 on id 11: every pick is 11 (%d)",
           (int)p.counts[11]);
    /* frequency alone, in two replies: each counts its own ids from zero */
    go.frequency_penalty = 2.0f;
    go.n_bias = 0;
    int good = 0;
    for (int k = 0; k < 2; k++) {
        memset(&p.counts, 0, sizeof(p.counts));
        p.steps = p.ok = 0;
        st = mt_session_generate(f.s, prompt, 6, &go, penalized_step, &p, &r);
        good += st == MT_OK && p.steps == 24 && p.ok == 24;
    }
    tap_ok(good == 2,
           "frequency 2.0 alone, two replies: each pick the argmax less 2.0 per time the reply "
           "generated it (%d of 2 replies)",
           good);
    /* one bias alone */
    go.frequency_penalty = 0.0f;
    go.n_bias = 1;
    bias[0].id = 11;
    bias[0].bias = 100.0f;
    memset(&p.counts, 0, sizeof(p.counts));
    st = mt_session_generate(f.s, prompt, 6, &go, penalized_step, &p, &r);
    tap_ok(st == MT_OK && p.counts[11] == 24,
           "a single bias of 100 on id 11: every pick is 11 (%d)", (int)p.counts[11]);
    bias[0].id = p.vocab;
    mt_log_set_quiet(true);
    st = mt_session_generate(f.s, prompt, 6, &go, penalized_step, &p, &r);
    mt_log_set_quiet(false);
    tap_ok(st == MT_ERR_INVAL && r.n_generated == 0 && r.prefill_s == 0.0,
           "a bias on an id outside the vocabulary: MT_ERR_INVAL before the prompt runs (%s)",
           mt_last_error());
out:
    fixture_close(&f);
}

/* Each id a reply gives, in order (up to 64). */
struct collected {
    int32_t ids[64];
    int n;
};

static bool
collect_id(void *ctx, int32_t id)
{
    struct collected *c = ctx;

    if (c->n < 64) {
        c->ids[c->n] = id;
    }
    c->n++;
    return true;
}

/* on_prompt_logits and on_token share one ctx: keep_rows's first, collect_id's after it */
struct rows_and_ids {
    struct seen_logits v;
    struct collected c;
};

static bool
collect_after_rows(void *ctx, int32_t id)
{
    return collect_id(&((struct rows_and_ids *)ctx)->c, id);
}

/*
 * How a reply ends, and what the cache keeps: a prompt the cache already holds whole runs its
 * last id again (same reply, n - 1 reused); the last id of a reply is not fed (max_new 5: 4
 * decoded, the history n + 4); max_new 0 samples nothing; EOS ends a reply unless ignore_eos
 * (a bias makes it the greedy pick); a context of 16 positions stops a 4-id prompt after 13 ids
 * ("context", the last one not fed); a reply's first id after on_prompt_logits pieces is the
 * argmax of the prompt's last row.
 */
static void
session_ends(void)
{
    struct session_fixture f;
    struct mt_gen_opts go;
    struct mt_gen_result r, r2;
    struct collected a = {0}, b = {0};
    enum { N = 300 };
    int32_t prompt[N];
    float *whole = NULL;
    struct rows_and_ids x = {.v = {.stop_at_piece = -1}};
    struct seen_logits *v = &x.v;
    struct mt_engine_opts eo;
    struct mt_engine *small = NULL;
    struct mt_session *ss = NULL;
    struct mt_sampler_opts sp;
    size_t nh = 0;

    for (int i = 0; i < N; i++) {
        prompt[i] = (int32_t)(5 + (i * 53) % 190);
    }
    if (!fixture_open(&f, 11, "session ends")) {
        goto out;
    }
    mt_gen_opts_default(&go);
    go.max_new = 5;
    go.ignore_eos = true;
    mt_status_t st = mt_session_generate(f.s, prompt, 6, &go, collect_id, &a, &r);
    mt_session_history(f.s, &nh);
    bool fed = st == MT_OK && r.n_generated == 5 && r.n_decoded == 4 && nh == 10 &&
               mt_engine_pos(f.e) == 10 && r.stop == MT_STOP_LENGTH;
    mt_status_t st2 = mt_session_generate(f.s, prompt, 6, &go, collect_id, &b, &r2);
    tap_ok(fed && st2 == MT_OK && r2.n_reused == 5 && a.n == 5 && b.n == 5 &&
               memcmp(a.ids, b.ids, sizeof(int32_t) * 5) == 0,
           "session ends: max_new 5 feeds 4 (history %zu); the same prompt again reuses %zu of 6 "
           "and gives the same 5 ids", nh, r2.n_reused);

    b.n = 0;
    go.max_new = 0;
    st = mt_session_generate(f.s, prompt, 6, &go, collect_id, &b, &r);
    tap_ok(st == MT_OK && b.n == 0 && r.n_generated == 0 && r.stop == MT_STOP_LENGTH,
           "session ends: max_new 0 samples nothing");

    struct mt_logit_bias to_eos = {mt_engine_eos(f.e), 1000.0f};
    go.max_new = 3;
    go.bias = &to_eos;
    go.n_bias = 1;
    go.ignore_eos = false;
    b.n = 0;
    st = mt_session_generate(f.s, prompt, 6, &go, collect_id, &b, &r);
    bool eos_stops = st == MT_OK && r.stop == MT_STOP_EOS && r.n_generated == 0 && b.n == 0;
    go.ignore_eos = true;
    st = mt_session_generate(f.s, prompt, 6, &go, collect_id, &b, &r);
    tap_ok(eos_stops && st == MT_OK && r.stop == MT_STOP_LENGTH && b.n == 3 &&
               b.ids[0] == to_eos.id && b.ids[2] == to_eos.id,
           "session ends: EOS as the pick ends the reply at once; with ignore_eos it is given "
           "(%d ids)", b.n);
    go.n_bias = 0;

    /* frequency counts each repeat: id 11 pushed 6 up, then 2 down per time it was given */
    struct mt_logit_bias push = {11, 6.0f};
    struct penalized p = {.s = f.s, .vocab = mt_engine_vocab(f.e), .go = &go};
    go.bias = &push;
    go.n_bias = 1;
    go.frequency_penalty = 2.0f;
    go.max_new = 24;
    st = mt_session_generate(f.s, prompt, 6, &go, penalized_step, &p, &r);
    tap_ok(st == MT_OK && p.vocab <= 1024 && p.steps == 24 && p.ok == 24 && p.counts[11] >= 2,
           "session ends: frequency 2 per repeat against a bias of 6: every pick the argmax of "
           "the penalized logits (%d of %d; id 11 given %d times)", p.ok, p.steps,
           (int)p.counts[11]);
    go.n_bias = 0;
    go.frequency_penalty = 0.0f;

    mt_engine_opts_default(&eo);
    eo.ctx = 16;
    mt_sampler_opts_default(&sp);
    b.n = 0;
    go.max_new = 40;
    if (mt_engine_create(f.m, &eo, &small) == MT_OK &&
        mt_session_create(small, &sp, &ss) == MT_OK) {
        st = mt_session_generate(ss, prompt, 4, &go, collect_id, &b, &r);
        mt_session_history(ss, &nh);
        tap_ok(st == MT_OK && r.stop == MT_STOP_CONTEXT && r.n_generated == 13 &&
                   r.n_decoded == 12 && nh == 16 && mt_engine_pos(small) == 16,
               "session ends: --ctx 16 stops a 4-id prompt after %ld ids (%s), history %zu",
               r.n_generated, mt_stop_reason_name(r.stop), nh);
    } else {
        tap_ok(false, "session ends: an engine with ctx 16");
    }

    v->s = f.s;
    v->vocab = mt_engine_vocab(f.e);
    whole = malloc((size_t)N * v->vocab * sizeof(*whole));
    v->rows = malloc((size_t)N * v->vocab * sizeof(*v->rows));
    if (whole == NULL || v->rows == NULL) {
        tap_ok(false, "session ends: memory");
        goto out;
    }
    go.max_new = 1;
    go.prompt_logits_out = whole;
    b.n = 0;
    st = mt_session_generate(f.s, prompt, N, &go, collect_id, &b, &r);
    go.prompt_logits_out = NULL;
    go.on_prompt_logits = keep_rows;
    st2 = mt_session_generate(f.s, prompt, N, &go, collect_after_rows, &x, &r);
    int32_t last = mt_sampler_argmax(whole + (size_t)(N - 1) * v->vocab, v->vocab);
    tap_ok(st == MT_OK && st2 == MT_OK && v->n_pieces == 3 && x.c.n == 1 && b.n == 1 &&
               x.c.ids[0] == last && b.ids[0] == last,
           "session ends: after a prompt in %d pieces the first id is the last row's argmax "
           "(%d, %d, want %d)", v->n_pieces, (int)x.c.ids[0], (int)b.ids[0], (int)last);
out:
    free(whole);
    free(v->rows);
    mt_session_destroy(ss);
    mt_engine_destroy(small);
    fixture_close(&f);
}

/* A cancel check for session_cancel: ids collected first (collect_id takes the same ctx) */
struct cancel_check {
    struct collected c;
    int calls;
    int stop_at; /* say cancel at this call (0: never) */
};

static bool
cancel_at(void *ctx)
{
    struct cancel_check *k = ctx;

    return ++k->calls == k->stop_at;
}

/*
 * A prompt of 1,100 ids with a cancel check runs in pieces of MT_SESSION_CANCEL_PIECE, asked
 * before each (3 times); a cancel at the second ends the reply before any sample with nothing
 * kept; one that never cancels gives the reply of a run without it.
 */
static void
session_cancel(void)
{
    struct session_fixture f;
    struct mt_gen_opts go;
    struct mt_gen_result r;
    struct collected plain = {0};
    struct cancel_check never = {.stop_at = 0}, second = {.stop_at = 2};
    enum { N = 1100 };
    static int32_t prompt[N];
    size_t nh = 1;

    for (int i = 0; i < N; i++) {
        prompt[i] = (int32_t)(4 + (i * 29) % 180);
    }
    if (!fixture_open(&f, 13, "session cancel")) {
        goto out;
    }
    mt_gen_opts_default(&go);
    go.max_new = 3;
    go.ignore_eos = true;
    mt_status_t st = mt_session_generate(f.s, prompt, N, &go, collect_id, &plain, &r);
    go.cancelled = cancel_at;
    mt_session_reset(f.s); /* the whole prompt runs again, not only its last id */
    mt_status_t st2 = mt_session_generate(f.s, prompt, N, &go, collect_id, &second, &r);
    mt_session_history(f.s, &nh);
    tap_ok(st == MT_OK && st2 == MT_OK && r.stop == MT_STOP_CALLER && r.n_generated == 0 &&
               second.calls == 2 && second.c.n == 0 && nh == 0,
           "session cancel: a cancel at the second piece ends before any sample (%d checks), "
           "history %zu", second.calls, nh);
    mt_session_reset(f.s);
    mt_status_t st3 = mt_session_generate(f.s, prompt, N, &go, collect_id, &never, &r);
    tap_ok(st3 == MT_OK && r.stop == MT_STOP_LENGTH && never.calls == 3 && never.c.n == 3 &&
               plain.n == 3 && memcmp(never.c.ids, plain.ids, 3 * sizeof(int32_t)) == 0,
           "session cancel: %d ids in %d pieces when never cancelled, the same reply as without "
           "the check", N, never.calls);
out:
    fixture_close(&f);
}

/* A grammar for session_constraint: ids 20 and 21 in turn, then the stop id 2 after five. */
struct alternate {
    int accepted;
    int bad_accepts;     /* accept told an id mask did not leave */
    bool allow_nothing;
    int vocab;
};

static size_t
alternate_mask(void *ctx, float *logits)
{
    struct alternate *a = ctx;
    int32_t want = a->accepted == 5 ? 2 : 20 + a->accepted % 2;
    for (int i = 0; i < a->vocab; i++) {
        if (i != want || a->allow_nothing) {
            logits[i] = -INFINITY;
        }
    }
    return a->allow_nothing ? 0 : 1;
}

static void
alternate_accept(void *ctx, int32_t id)
{
    struct alternate *a = ctx;
    a->bad_accepts += id != 20 + a->accepted % 2;
    a->accepted++;
}

struct constrained {
    struct mt_session *s;
    int32_t ids[16];
    int n;
    int model_logits; /* steps whose mt_session_logits were the model's, not the masked copy */
};

static bool
constrained_step(void *ctx, int32_t id)
{
    struct constrained *c = ctx;
    const float *l = mt_session_logits(c->s);
    c->model_logits += l != NULL && l[21 - id % 2] > -INFINITY;
    if (c->n < 16) {
        c->ids[c->n++] = id;
    }
    return true;
}

/* A constraint decides what the sampler may pick, greedy or not, and where the reply ends. */
static void
session_constraint(void)
{
    struct session_fixture f;
    struct mt_gen_opts go;
    struct mt_gen_result r;
    int32_t prompt[4] = {3, 9, 27, 81}, stop = 2;
    struct alternate a = {0};
    struct mt_gen_constraint gc = {&a, alternate_mask, alternate_accept};
    struct constrained c = {0};

    if (!fixture_open(&f, 9, "constraint")) {
        goto out;
    }
    if (!tap_ok(mt_engine_vocab(f.e) >= 64, "constraint: the vocabulary fits the test (%d ids)",
                mt_engine_vocab(f.e))) {
        goto out;
    }
    mt_gen_opts_default(&go);
    go.max_new = 12;
    go.stop_ids = &stop;
    go.n_stop_ids = 1;
    go.constraint = &gc;
    c.s = f.s;
    a.vocab = mt_engine_vocab(f.e);
    mt_status_t st = mt_session_generate(f.s, prompt, 4, &go, constrained_step, &c, &r);
    bool order = c.n == 5;
    for (int i = 0; i < c.n; i++) {
        order = order && c.ids[i] == 20 + i % 2;
    }
    tap_ok(st == MT_OK && order && r.stop == MT_STOP_EOS && r.n_generated == 5 &&
           a.accepted == 5 && a.bad_accepts == 0 && c.model_logits == 5,
           "constraint: greedy picks 20, 21, 20, 21, 20 as it allows, each accepted, then its "
           "stop id ends the reply; the callback sees the model's logits (%d ids, stop %s)",
           c.n, mt_stop_reason_name(r.stop));
    a = (struct alternate){.allow_nothing = true, .vocab = mt_engine_vocab(f.e)};
    mt_log_set_quiet(true);
    st = mt_session_generate(f.s, prompt, 4, &go, constrained_step, &c, &r);
    mt_log_set_quiet(false);
    size_t nh = 1;
    mt_session_history(f.s, &nh);
    tap_ok(st == MT_ERR_INVAL && r.n_generated == 0 && strstr(mt_last_error(), "grammar") != NULL &&
               nh == 0 && mt_engine_pos(f.e) == 0,
           "a constraint that leaves no id: MT_ERR_INVAL (%s); the cache is reset (history %zu)",
           mt_last_error(), nh);
out:
    fixture_close(&f);
}

/* The KV cache doubles as it grows, but never past max_position_embeddings. */
static void
kv_growth(void)
{
    struct mt_model_config cfg;
    struct mt_kv_layout lay = {.latent = MT_DTYPE_F32, .index_exact = true};
    struct mt_kv_cache kv;

    memset(&cfg, 0, sizeof(cfg));
    cfg.num_hidden_layers = 2;
    cfg.kv_lora_rank = 16;
    cfg.qk_rope_head_dim = 8;
    cfg.index_head_dim = 16;
    cfg.max_position_embeddings = 100;
    bool ok = mt_kv_cache_init(&kv, &cfg, &lay) == MT_OK;
    ok = ok && mt_kv_cache_reserve(&kv, 10) == MT_OK && kv.cap == 64;
    ok = ok && mt_kv_cache_reserve(&kv, 65) == MT_OK && kv.cap == 100;
    tap_ok(ok, "KV cache: 64 positions first, then the context's 100 rather than 128 (cap %lld)",
           (long long)kv.cap);
    mt_kv_cache_fini(&kv);
    /* exactly 64 takes the first 64; past the model's positions the cache still holds `need` */
    ok = mt_kv_cache_init(&kv, &cfg, &lay) == MT_OK && mt_kv_cache_reserve(&kv, 64) == MT_OK &&
         kv.cap == 64 && mt_kv_cache_reserve(&kv, 150) == MT_OK && kv.cap >= 150;
    tap_ok(ok, "KV cache: 64 positions hold a need of 64; a need of 150 beyond the context's 100 "
           "gets room for 150 (cap %lld)", (long long)kv.cap);
    mt_kv_cache_fini(&kv);
    /* a need of the whole context is the context, not the next doubling (128) */
    ok = mt_kv_cache_init(&kv, &cfg, &lay) == MT_OK && mt_kv_cache_reserve(&kv, 100) == MT_OK &&
         kv.cap == 100;
    tap_ok(ok, "KV cache: a need of the context's 100 positions gets 100 (cap %lld)",
           (long long)kv.cap);
    mt_kv_cache_fini(&kv);
}

/*
 * Cache sizes a token and layer of V3.2 (kv_cache.h, and the planner's figures): latent 512 and
 * rope key 64 in fp32 (2,304 B), bf16 (1,152 B) or DeepSeek's FP8 row (656 B), plus the index
 * key: 128 fp32 values (512 B) or 128 e4m3 and one fp32 scale (132 B).
 */
static void
kv_sizes(void)
{
    struct mt_model_config cfg;
    static const struct {
        struct mt_kv_layout lay;
        uint64_t want;
    } cases[] = {
        {{MT_DTYPE_F32, true, false}, 2304 + 512}, {{MT_DTYPE_BF16, false, true}, 1152 + 132},
        {{MT_DTYPE_BF16, true, false}, 1152 + 512}, {{MT_DTYPE_F8_E4M3, false, true}, 656 + 132},
        {{MT_DTYPE_F8_E4M3, false, false}, 656},   {{MT_DTYPE_F32, true, true}, 2304 + 644},
    };
    /* a latent of 200 (not a multiple of 128): FP8 keeps 2 scales, for 128 values and for 72 */
    static const struct mt_kv_layout fp8 = {MT_DTYPE_F8_E4M3, false, false};
    int bad = 0;

    memset(&cfg, 0, sizeof(cfg));
    cfg.num_hidden_layers = 61;
    cfg.kv_lora_rank = 512;
    cfg.qk_rope_head_dim = 64;
    cfg.index_head_dim = 128;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t got = mt_kv_bytes_per_token_layer(&cfg, &cases[i].lay);
        if (got != cases[i].want) {
            tap_diag("layout %zu: %llu bytes, want %llu", i, (unsigned long long)got,
                     (unsigned long long)cases[i].want);
            bad++;
        }
    }
    tap_ok(bad == 0, "KV cache sizes of V3.2: 2,816 / 1,284 / 1,664 / 788 / 656 / 2,948 B a token "
           "and layer (%d wrong)", bad);
    cfg.kv_lora_rank = 200;
    uint64_t got = mt_kv_bytes_per_token_layer(&cfg, &fp8);
    tap_ok(got == 200 + 2 * 4 + 2 * 64, "KV cache, FP8 latent of 200: %llu B a token and layer "
           "(336: 200 e4m3, 2 fp32 scales, 64 bf16 rope)", (unsigned long long)got);
}

/*
 * A bf16 KV cache: a latent row reads back as its bf16 rounding (not FP8's), rows gathered in
 * the order asked for, with *idx_out = 0..n-1 into the scratch; the rope keys of those rows are
 * gathered into their scratch alike, whole and in fp32.
 */
static void
kv_bf16_rows(void)
{
    struct mt_model_config cfg;
    struct mt_kv_layout lay = {.latent = MT_DTYPE_BF16, .index_exact = true};
    struct mt_kv_cache kv;
    enum { KVL = 200, ROPE = 8 };
    float lat[2][KVL], lat_s[2 * KVL], kpe_s[2 * ROPE];
    int32_t idx[2] = {3, 1}, iota[2] = {-1, -1};
    const float *lo, *ko;
    const int32_t *io;
    int bad = 0, bad_kpe = 0;

    memset(&cfg, 0, sizeof(cfg));
    cfg.num_hidden_layers = 1;
    cfg.kv_lora_rank = KVL;
    cfg.qk_rope_head_dim = ROPE;
    cfg.index_head_dim = 16;
    cfg.max_position_embeddings = 100;
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < KVL; i++) {
            lat[r][i] = sinf(0.37f * (float)i + (float)r) * (i < 128 ? 3.0f : 0.01f);
        }
    }
    bool ok = mt_kv_cache_init(&kv, &cfg, &lay) == MT_OK && mt_kv_cache_reserve(&kv, 4) == MT_OK;
    if (ok) {
        mt_kv_cache_put_latent(&kv, 0, 3, lat[0]);
        mt_kv_cache_put_latent(&kv, 0, 1, lat[1]);
        /* position p's rope key: 100 p + i, not a bf16 value past i = 0 (kept fp32) */
        for (int p = 0; p < 4; p++) {
            for (int i = 0; i < ROPE; i++) {
                kv.layer[0].kpe[p * ROPE + i] = 100.0f * (float)p + (float)i + 0.001f;
            }
        }
        mt_kv_cache_rows(&kv, 0, idx, 2, lat_s, kpe_s, iota, &lo, &ko, &io);
        ok = io == iota && io[0] == 0 && io[1] == 1 && ko == kpe_s;
        for (int r = 0; r < 2 && ok; r++) {
            for (int i = 0; i < KVL; i++) {
                bad += lo[r * KVL + i] != mt_bf16_to_f32(mt_f32_to_bf16(lat[r][i]));
            }
            for (int i = 0; i < ROPE; i++) {
                bad_kpe += ko[r * ROPE + i] != 100.0f * (float)idx[r] + (float)i + 0.001f;
            }
        }
    }
    tap_ok(ok && bad == 0, "KV cache, bf16 latents: rows 3 and 1 read back as their bf16 "
           "rounding, in that order, indexed 0 and 1 (%d of %d differ)", bad, 2 * KVL);
    tap_ok(ok && bad_kpe == 0, "KV cache, bf16 latents: the rope keys of rows 3 and 1 are "
           "gathered into the scratch, in that order (%d of %d differ)", bad_kpe, 2 * ROPE);
    mt_kv_cache_fini(&kv);
    struct mt_kv_layout f16 = {.latent = MT_DTYPE_F16};
    mt_log_set_quiet(true);
    tap_ok(mt_kv_cache_init(&kv, &cfg, &f16) == MT_ERR_UNSUPPORTED,
           "KV cache: an F16 latent layout is MT_ERR_UNSUPPORTED");
    mt_log_set_quiet(false);
    mt_kv_cache_fini(&kv);
}

/*
 * DeepSeek's FP8 latent layout on the host: what a row reads back is mt_cpu_act_quant's e4m3 x
 * scale per 128 values (ue8m0), here 200 wide (a last group of 72), the values the GPU's FP8
 * cache widens to; not the latent itself (a cache that kept it would fail). The last group is
 * its 72 values alone: large values just past the row must not set its scale.
 */
static void
kv_fp8(void)
{
    struct mt_model_config cfg;
    struct mt_kv_layout lay = {.latent = MT_DTYPE_F8_E4M3, .index_exact = true};
    struct mt_kv_cache kv;
    enum { KVL = 200, ROPE = 8 };
    float lat[KVL + 128], lat_s[KVL], kpe_s[ROPE], want;
    int32_t idx = 3, iota;
    uint8_t q[128];
    const float *lo, *ko;
    const int32_t *io;
    int bad = 0, moved = 0;

    memset(&cfg, 0, sizeof(cfg));
    cfg.num_hidden_layers = 1;
    cfg.kv_lora_rank = KVL;
    cfg.qk_rope_head_dim = ROPE;
    cfg.index_head_dim = 16;
    cfg.max_position_embeddings = 100;
    for (int i = 0; i < KVL; i++) {
        lat[i] = sinf(0.37f * (float)i) * (i < 128 ? 3.0f : 0.01f);
    }
    for (int i = KVL; i < KVL + 128; i++) { /* not the row's: a group of 128 there would be off */
        lat[i] = 1000.0f;
    }
    bool ok = mt_kv_cache_init(&kv, &cfg, &lay) == MT_OK && mt_kv_cache_reserve(&kv, 4) == MT_OK;
    if (ok) {
        mt_kv_cache_put_latent(&kv, 0, idx, lat);
        memset(kv.layer[0].kpe, 0, sizeof(float) * ROPE * 4);
        mt_kv_cache_rows(&kv, 0, &idx, 1, lat_s, kpe_s, &iota, &lo, &ko, &io);
        for (int g = 0; g < KVL; g += 128) {
            int n = KVL - g < 128 ? KVL - g : 128;
            float sc = mt_cpu_act_quant(lat + g, n, true, q);
            for (int i = 0; i < n; i++) {
                want = mt_fp8_to_f32((mt_fp8_t)q[i]) * sc;
                bad += lo[g + i] != want;
                moved += lo[g + i] != lat[g + i];
            }
        }
    }
    tap_ok(ok && bad == 0 && moved > 0,
           "KV cache, FP8 latents: a row reads back e4m3 x scale "
           "per 128 values (%d of %d differ; %d moved off the latent)",
           bad, KVL, moved);
    mt_kv_cache_fini(&kv);
}

/*
 * A bf16 KV cache under dense attention: every position is attended, more than index_topk, so
 * the bf16 rows are converted for all of them (the work space must have room for that many). The
 * logits stay close to the fp32 cache's, in one prefill and in prefill + decode.
 */
static void
kv_bf16_dense(void)
{
    const char *dir = tap_tmpdir();
    struct mt_model *m = NULL;
    struct mt_engine *f32 = NULL;
    struct mt_engine *b16 = NULL;
    struct mt_engine_opts o;
    enum { T = 40, P = 10 };
    int32_t ids[T];
    float *want = NULL;
    float *got = NULL;
    int V;
    int wr = -1;

    mt_engine_opts_default(&o);
    o.attention = MT_ATTN_DENSE;
    if (!tap_ok(golden_synth_tiny(dir, 7) == MT_OK && mt_model_open(dir, &m) == MT_OK &&
                    mt_engine_create(m, &o, &f32) == MT_OK &&
                    (o.kv_dtype = MT_DTYPE_BF16, mt_engine_create(m, &o, &b16) == MT_OK),
                "bf16 KV, dense attention: engines build on the tiny checkpoint")) {
        goto out;
    }
    V = mt_engine_vocab(f32);
    for (int i = 0; i < T; i++) {
        ids[i] = (int32_t)((i * 53 + 5) % V);
    }
    want = malloc((size_t)T * V * sizeof(float));
    got = malloc((size_t)T * V * sizeof(float));
    bool ok = want != NULL && got != NULL && T > m->cfg.index_topk &&
              mt_engine_forward(f32, ids, T, true, want) == MT_OK &&
              mt_engine_forward(b16, ids, T, true, got) == MT_OK;
    double rel = ok ? golden_worst_row_rel(got, want, T, V, &wr) : INFINITY;
    tap_ok(ok && rel <= 2e-2, "bf16 KV, dense attention: %d-token prefill (index_topk %d) within "
           "2e-2 of the fp32 cache (worst %.2e at %d)", T, m->cfg.index_topk, rel, wr);
    mt_engine_reset(b16);
    ok = ok && mt_engine_forward(b16, ids, P, true, got) == MT_OK;
    for (int t = P; t < T && ok; t++) {
        ok = mt_engine_forward(b16, &ids[t], 1, false, got + (size_t)t * V) == MT_OK;
    }
    rel = ok ? golden_worst_row_rel(got, want, T, V, &wr) : INFINITY;
    tap_ok(ok && rel <= 2e-2, "bf16 KV, dense attention: prefill %d + decode %d within 2e-2 of "
           "the fp32 cache (worst %.2e at %d)", P, T - P, rel, wr);
out:
    free(want);
    free(got);
    mt_engine_destroy(f32);
    mt_engine_destroy(b16);
    mt_model_destroy(m);
    tap_rmtree(dir);
}

/* The selections of layer 0, one row of up to MAX_SEL positions per query position. */
enum { SEL_T = 40, MAX_SEL = 64 };
struct sel_log {
    int k[SEL_T];
    int32_t idx[SEL_T][MAX_SEL];
};

static void
sel_log_hook(void *ctx, int layer, int64_t pos, const int32_t *idx, int k)
{
    struct sel_log *lg = ctx;

    if (layer == 0 && pos >= 0 && pos < SEL_T && k <= MAX_SEL) {
        lg->k[pos] = k;
        memcpy(lg->idx[pos], idx, (size_t)k * sizeof(int32_t));
    }
}

/*
 * mt_engine_indexer_overlap against the sets themselves: on a one-layer model the FP8 engine and
 * the exact one select from the same keys, so the overlap the comparing engine reports must be
 * sum |FP8 set & exact set| / sum k over the queries that select (k < positions), as taken from
 * the top-k hook of an FP8 engine and of an exact one.
 */
static void
indexer_overlap(void)
{
    const char *dir = tap_tmpdir();
    struct mt_synth_options so;
    struct mt_model *m = NULL;
    struct mt_engine *ex = NULL;
    struct mt_engine *f8 = NULL;
    struct mt_engine *cmp = NULL;
    struct sel_log *a = calloc(2, sizeof(*a));
    int32_t ids[SEL_T];
    float *lg = NULL;
    double ov = -1.0;
    int64_t nsel = -1;

    memset(&so, 0, sizeof(so));
    so.out_dir = dir;
    so.preset = "tiny";
    so.layers = 1;
    so.dense_layers = -1;
    so.mtp = 0;
    so.seed = 11;
    so.force = true;
    if (!tap_ok(a != NULL && mt_synth_write(&so, NULL) == MT_OK &&
                    mt_model_open(dir, &m) == MT_OK &&
                    make_engine(m, MT_INDEXER_EXACT, MT_ATTN_SPARSE, false, &ex) == MT_OK &&
                    make_engine(m, MT_INDEXER_FP8, MT_ATTN_SPARSE, false, &f8) == MT_OK &&
                    make_engine(m, MT_INDEXER_FP8, MT_ATTN_SPARSE, true, &cmp) == MT_OK &&
                    m->cfg.index_topk < SEL_T && m->cfg.index_topk <= MAX_SEL &&
                    (lg = malloc((size_t)m->cfg.vocab_size * sizeof(float))) != NULL,
                "indexer overlap: one-layer tiny checkpoint and engines")) {
        goto out;
    }
    for (int i = 0; i < SEL_T; i++) {
        ids[i] = (int32_t)((i * 29 + 7) % m->cfg.vocab_size);
    }
    mt_engine_set_topk_hook(ex, sel_log_hook, &a[0]);
    mt_engine_set_topk_hook(f8, sel_log_hook, &a[1]);
    bool ok = mt_engine_forward(ex, ids, SEL_T, false, lg) == MT_OK &&
              mt_engine_forward(f8, ids, SEL_T, false, lg) == MT_OK &&
              mt_engine_forward(cmp, ids, SEL_T, false, lg) == MT_OK;
    mt_engine_indexer_overlap(cmp, &ov, &nsel);
    int64_t common = 0;
    int64_t sum_k = 0;
    int64_t n_sel = 0;
    for (int p = 0; p < SEL_T && ok; p++) {
        int want_k = p + 1 < m->cfg.index_topk ? p + 1 : m->cfg.index_topk;
        ok = a[0].k[p] == want_k && a[1].k[p] == want_k;
        if (!ok || a[0].k[p] == p + 1) {
            continue; /* every position: nothing selected */
        }
        for (int i = 0; i < a[0].k[p]; i++) {
            for (int j = 0; j < a[1].k[p]; j++) {
                common += a[0].idx[p][i] == a[1].idx[p][j];
            }
        }
        sum_k += a[0].k[p];
        n_sel++;
    }
    double want = sum_k > 0 ? (double)common / (double)sum_k : 1.0;
    tap_ok(ok && n_sel > 0 && nsel == n_sel && fabs(ov - want) <= 1e-12,
           "indexer overlap: %.4f over %lld selections, as the hooks' sets give (%.4f over %lld: "
           "%lld of %lld positions in common)", ov, (long long)nsel, want, (long long)n_sel,
           (long long)common, (long long)sum_k);

    /* the hook names absolute positions: prefill 30 + 10 steps select as one prefill did */
    struct sel_log *b = &a[1];
    int same = 0;
    memset(b, 0, sizeof(*b));
    mt_engine_set_topk_hook(f8, NULL, NULL);
    mt_engine_reset(ex);
    mt_engine_set_topk_hook(ex, sel_log_hook, b);
    ok = mt_engine_forward(ex, ids, 30, false, lg) == MT_OK;
    for (int p = 30; p < SEL_T && ok; p++) {
        ok = mt_engine_forward(ex, ids + p, 1, false, lg) == MT_OK;
    }
    for (int p = 0; p < SEL_T && ok; p++) {
        same += b->k[p] == a[0].k[p] &&
                memcmp(b->idx[p], a[0].idx[p], (size_t)b->k[p] * sizeof(int32_t)) == 0;
    }
    tap_ok(ok && same == SEL_T, "indexer overlap: prefill 30 + 10 steps: the hook sees the "
           "positions and sets of one prefill (%d of %d)", same, SEL_T);
out:
    free(lg);
    free(a);
    mt_engine_destroy(ex);
    mt_engine_destroy(f8);
    mt_engine_destroy(cmp);
    mt_model_destroy(m);
    tap_rmtree(dir);
}

/*
 * Overwrite the first float of tensor `name` in dir's checkpoint with v (the last one if last);
 * a name with "%d" stands for every routed expert (so that whichever expert a token picks is
 * corrupt).
 */
static bool
poke_f32_at(const char *dir, const char *name, bool last, float v)
{
    struct mt_model *m = NULL;
    bool ok = true;
    int n = strstr(name, "%d") != NULL ? -1 : 1;

    if (mt_model_open(dir, &m) != MT_OK) {
        return false;
    }
    if (n < 0) {
        n = m->cfg.n_routed_experts;
    }
    for (int i = 0; i < n && ok; i++) {
        char tn[256];
        snprintf(tn, sizeof(tn), name, i);
        const struct mt_st_tensor *t = mt_st_set_find(m->set, tn);
        ok = t != NULL && t->dtype == MT_DTYPE_F32;
        if (ok) {
            FILE *f = fopen(mt_st_set_file_path(m->set, t->file), "r+b");
            long at = (long)t->offset + (last ? 4 * ((long)t->nelem - 1) : 0);
            ok = f != NULL && fseek(f, at, SEEK_SET) == 0 &&
                 fwrite(&v, 4, 1, f) == 1;
            ok = f != NULL && fclose(f) == 0 && ok;
        }
    }
    mt_model_destroy(m);
    return ok;
}

static bool
poke_f32(const char *dir, const char *name, float v)
{
    return poke_f32_at(dir, name, false, v);
}

/* Forward tokens 1..n (n <= 32) on dir's checkpoint; the status, with the message in *msg. */
static mt_status_t
forward_status(const char *dir, int n, const char **msg)
{
    struct mt_model *m = NULL;
    struct mt_engine *e = NULL;
    int32_t ids[32];
    float *lg = NULL;
    mt_status_t st;

    for (int i = 0; i < n; i++) {
        ids[i] = i + 1;
    }

    mt_log_set_quiet(true);
    st = mt_model_open(dir, &m);
    if (st == MT_OK) {
        st = make_engine(m, MT_INDEXER_EXACT, MT_ATTN_SPARSE, false, &e);
    }
    if (st == MT_OK) {
        lg = malloc((size_t)mt_engine_vocab(e) * sizeof(float));
        st = lg == NULL ? MT_ERR_NOMEM : mt_engine_forward(e, ids, n, false, lg);
    }
    mt_log_set_quiet(false);
    *msg = mt_last_error();
    free(lg);
    mt_engine_destroy(e);
    mt_model_destroy(m);
    return st;
}

/*
 * Corrupt weights never become plausible logits: a NaN, +Inf or 1e38 block scale, or a NaN in a
 * norm or in the router's correction bias, fails the call with MT_ERR_FORMAT naming the tensor
 * or the layer.
 */
static void
corrupt_weights(void)
{
    static const struct {
        const char *tensor;
        float value;
        const char *want; /* in the message */
    } cases[] = {
        {"model.layers.0.self_attn.q_a_proj.weight_scale_inv", NAN,
         "model.layers.0.self_attn.q_a_proj.weight_scale_inv"},
        {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv", INFINITY,
         "kv_a_proj_with_mqa.weight_scale_inv"},
        {"model.layers.0.mlp.down_proj.weight_scale_inv", 1e38f, "mlp.down_proj.weight_scale_inv"},
        {"model.layers.1.mlp.experts.%d.up_proj.weight_scale_inv", NAN, "up_proj.weight_scale_inv"},
        /* the attention's first check on the way: the indexer's queries, keys and weights */
        {"model.layers.0.input_layernorm.weight", NAN, "layer 0: the indexer output"},
        {"model.layers.1.post_attention_layernorm.weight", NAN, "layer 1: the MoE output"},
        /* the one that changes no output's finiteness, only the router's choice: at load */
        {"model.layers.1.mlp.gate.e_score_correction_bias", NAN,
         "model.layers.1.mlp.gate.e_score_correction_bias"},
    };
    const char *msg;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *dir = tap_tmpdir();
        bool made = golden_synth_tiny(dir, 5) == MT_OK &&
                    poke_f32(dir, cases[i].tensor, cases[i].value);
        mt_status_t st = made ? forward_status(dir, 6, &msg) : MT_ERR_INTERNAL;
        tap_ok(made && st == MT_ERR_FORMAT && strstr(msg, cases[i].want) != NULL &&
                   (i != 3 || strstr(msg, "model.layers.1.mlp.experts.") != NULL),
               "%g in '%s' fails the forward pass naming it: '%s'", (double)cases[i].value,
               cases[i].tensor, made ? msg : "(could not corrupt the checkpoint)");
        tap_rmtree(dir);
    }

    /* the checks at load read every value, the last one too: of a weight's block scales and of
       the router's correction bias */
    static const char *const last[] = {"model.layers.0.self_attn.q_b_proj.weight_scale_inv",
                                       "model.layers.1.mlp.gate.e_score_correction_bias"};
    for (size_t i = 0; i < sizeof(last) / sizeof(last[0]); i++) {
        const char *dir = tap_tmpdir();
        bool made = golden_synth_tiny(dir, 5) == MT_OK && poke_f32_at(dir, last[i], true, NAN);
        mt_status_t st = made ? forward_status(dir, 6, &msg) : MT_ERR_INTERNAL;
        msg = st != MT_OK ? msg : "(it ran)"; /* not the last test's message */
        tap_ok(made && st == MT_ERR_FORMAT && strstr(msg, last[i]) != NULL,
               "NaN in the last value of '%s' fails the forward pass naming it: '%s'", last[i],
               made ? msg : "(could not corrupt the checkpoint)");
        tap_rmtree(dir);
    }
}

/*
 * A corrupt indexer weight (a NaN key norm, or a head's weights +inf) fails the forward pass
 * naming the layer and the indexer. Nothing after the indexer would: its ReLU turns a NaN dot
 * product into 0, top-k sorts a NaN score last and attention over the rest stays finite, a
 * silently different selection. The prompt is longer than the tiny model's index_topk 16, so
 * the indexer selects.
 */
static void
corrupt_indexer(void)
{
    static const char *const tensors[] = {"model.layers.1.self_attn.indexer.k_norm.weight",
                                          "model.layers.1.self_attn.indexer.weights_proj.weight"};
    const char *msg;

    for (size_t i = 0; i < sizeof(tensors) / sizeof(tensors[0]); i++) {
        const char *dir = tap_tmpdir();
        bool made = golden_synth_tiny(dir, 5) == MT_OK &&
                    (i == 0 ? poke_f32(dir, tensors[i], NAN)
                            : golden_poison_row(dir, tensors[i], 0));
        mt_status_t st = made ? forward_status(dir, 20, &msg) : MT_ERR_INTERNAL;
        msg = st != MT_OK ? msg : "(it ran)"; /* not the last test's message */
        tap_ok(made && st == MT_ERR_FORMAT && strstr(msg, "layer 1: the indexer output") != NULL,
               "%s in '%s' fails a 20-token forward pass naming layer and indexer: '%s'",
               i == 0 ? "NaN" : "+inf (row 0)", tensors[i],
               made ? msg : "(could not corrupt the checkpoint)");
        tap_rmtree(dir);
    }

    /* the last head's weights +inf and one token: the one value not finite is the last one the
     * check reads (after its 64-wide blocks: the tiny model has 16 heads) */
    const char *dir = tap_tmpdir();
    const char *wp = tensors[1];
    struct mt_model *m = NULL;
    int last = -1;
    if (golden_synth_tiny(dir, 5) == MT_OK && mt_model_open(dir, &m) == MT_OK) {
        last = m->cfg.index_n_heads - 1;
    }
    mt_model_destroy(m);
    bool made = last >= 0 && golden_poison_row(dir, wp, last);
    mt_status_t st = made ? forward_status(dir, 1, &msg) : MT_ERR_INTERNAL;
    msg = st != MT_OK ? msg : "(it ran)";
    tap_ok(made && st == MT_ERR_FORMAT && strstr(msg, "layer 1: the indexer output") != NULL,
           "+inf (row %d, the last head) in '%s' fails a 1-token forward pass: '%s'", last, wp,
           made ? msg : "(could not corrupt the checkpoint)");
    tap_rmtree(dir);
}

/*
 * A corrupt weight that only a decode step meets (token 5's embedding row +inf): the prompt runs,
 * the step fed that token fails with MT_ERR_FORMAT naming the table and the token
 * (test_gpu_engine has the GPU engine's twin).
 */
static void
poisoned_step(void)
{
    const char *dir = tap_tmpdir();
    struct mt_model *m = NULL;
    struct mt_engine *e = NULL;
    int32_t prompt[4] = {1, 2, 3, 4};
    int32_t bad = 5;
    float *lg = NULL;
    mt_status_t st0 = MT_ERR_INTERNAL;
    mt_status_t st1 = MT_ERR_INTERNAL;
    const char *msg = "(not run)";
    bool made = golden_synth_tiny(dir, 5) == MT_OK &&
                golden_poison_row(dir, "model.embed_tokens.weight", bad);

    if (made && mt_model_open(dir, &m) == MT_OK &&
        make_engine(m, MT_INDEXER_EXACT, MT_ATTN_SPARSE, false, &e) == MT_OK &&
        (lg = malloc((size_t)mt_engine_vocab(e) * sizeof(float))) != NULL) {
        mt_log_set_quiet(true);
        st0 = mt_engine_forward(e, prompt, 4, false, lg);
        st1 = mt_engine_forward(e, &bad, 1, false, lg);
        mt_log_set_quiet(false);
        msg = mt_last_error();
    }
    tap_ok(made, "checkpoint with token %d's embedding row +inf written", bad);
    tap_ok(st0 == MT_OK, "a prompt without that token runs");
    tap_ok(st1 == MT_ERR_FORMAT && strstr(msg, "model.embed_tokens.weight") != NULL &&
               strstr(msg, "token 5") != NULL,
           "the step fed that token fails with MT_ERR_FORMAT naming both: '%s'", msg);
    free(lg);
    mt_engine_destroy(e);
    mt_model_destroy(m);
    tap_rmtree(dir);
}

/* Copy file name from directory src to directory dst. */
static bool
copy_file(const char *src, const char *dst, const char *name)
{
    char a[1100], b[1100];

    snprintf(a, sizeof(a), "%s/%s", src, name);
    snprintf(b, sizeof(b), "%s/%s", dst, name);
    return tap_copy_file(a, b, 0);
}

/* dst: src's checkpoint with every BF16 tensor stored as F16 (F32 ones as they are). */
static bool
write_f16_copy(const char *src, const char *dst)
{
    struct mt_st_set *set = NULL;
    struct mt_st_writer *w = NULL;
    char path[1100];
    bool ok = copy_file(src, dst, "config.json") && mt_st_set_open(src, &set) == MT_OK;

    snprintf(path, sizeof(path), "%s/model.safetensors", dst);
    ok = ok && mt_st_writer_create(path, &w) == MT_OK;
    size_t n = ok ? mt_st_set_count(set) : 0;
    for (size_t i = 0; i < n && ok; i++) {
        const struct mt_st_tensor *t = mt_st_set_tensor(set, i);
        enum mt_dtype dt = t->dtype == MT_DTYPE_BF16 ? MT_DTYPE_F16 : t->dtype;
        ok = mt_st_writer_add(w, t->name, dt, t->ndim, t->shape) == MT_OK;
    }
    for (size_t i = 0; i < n && ok; i++) {
        const struct mt_st_tensor *t = mt_st_set_tensor(set, i);
        uint8_t *raw = malloc(t->nbytes > 0 ? t->nbytes : 1);
        ok = raw != NULL && mt_st_set_read(set, t, raw, t->nbytes) == MT_OK;
        if (ok && t->dtype == MT_DTYPE_BF16) { /* in place: both 2 bytes a value */
            mt_bf16_t *b = (mt_bf16_t *)raw;
            mt_f16_t *h = (mt_f16_t *)raw;
            for (uint64_t j = 0; j < t->nelem; j++) {
                h[j] = mt_f32_to_f16(mt_bf16_to_f32(b[j]));
            }
        }
        ok = ok && mt_st_writer_write(w, raw, t->nbytes) == MT_OK;
        free(raw);
    }
    if (ok) {
        ok = mt_st_writer_finish(w) == MT_OK;
    } else {
        mt_st_writer_destroy(w);
    }
    mt_st_set_destroy(set);
    return ok;
}

/*
 * An F16 checkpoint (HF's tiny model with its BF16 tensors as F16: linears, norms, biases) runs,
 * and its logits stay close to the BF16 one's: F16 holds these BF16 values but for the smallest
 * weights (subnormal in F16). No other checkpoint here is F16.
 */
static void
f16_weights(void)
{
    const char *src = tap_data_path("golden/v32-tiny-a");
    const char *dir = tap_tmpdir();
    struct mt_model *mb = NULL;
    struct mt_model *mh = NULL;
    struct mt_engine *eb = NULL;
    struct mt_engine *eh = NULL;
    enum { T = 6 };
    int32_t ids[T];
    float *want = NULL;
    float *got = NULL;
    mt_status_t st = MT_ERR_INTERNAL;
    int wr = -1;
    double rel = INFINITY;

    bool made = write_f16_copy(src, dir);
    mt_log_set_quiet(true);
    if (made && mt_model_open(src, &mb) == MT_OK && mt_model_open(dir, &mh) == MT_OK &&
        make_engine(mb, MT_INDEXER_EXACT, MT_ATTN_SPARSE, false, &eb) == MT_OK &&
        (st = make_engine(mh, MT_INDEXER_EXACT, MT_ATTN_SPARSE, false, &eh)) == MT_OK) {
        int V = mt_engine_vocab(eb);
        for (int i = 0; i < T; i++) {
            ids[i] = (int32_t)((i * 37 + 3) % V);
        }
        want = malloc((size_t)T * V * sizeof(float));
        got = malloc((size_t)T * V * sizeof(float));
        if (want != NULL && got != NULL && mt_engine_forward(eb, ids, T, true, want) == MT_OK &&
            (st = mt_engine_forward(eh, ids, T, true, got)) == MT_OK) {
            rel = golden_worst_row_rel(got, want, T, V, &wr);
        }
    }
    mt_log_set_quiet(false);
    tap_ok(made && st == MT_OK && rel <= 1e-3,
           "F16 checkpoint: loads and runs (%s), logits within 1e-3 of the BF16 one's "
           "(worst %.2e at %d)", st == MT_OK ? "ok" : mt_last_error(), rel, wr);
    free(want);
    free(got);
    mt_engine_destroy(eb);
    mt_engine_destroy(eh);
    mt_model_destroy(mb);
    mt_model_destroy(mh);
    tap_rmtree(dir);
}

/*
 * A read error while the engine loads its weights (the shard cut short after the model opened:
 * pread comes back short) fails mt_engine_create with MT_ERR_IO naming the tensor, never builds
 * an engine over garbage: for a linear kept as stored (the embedding, the first read) and for a
 * norm converted to fp32 (HF's tiny model has BF16 norms; the final norm is the file's last
 * tensor and the third read).
 */
static void
weights_read_error(void)
{
    static const char *const cut_at[] = {"model.embed_tokens.weight", "model.norm.weight"};
    const char *src = tap_data_path("golden/v32-tiny-a");

    for (size_t i = 0; i < sizeof(cut_at) / sizeof(cut_at[0]); i++) {
        const char *dir = tap_tmpdir();
        struct mt_model *m = NULL;
        struct mt_engine *e = NULL;
        const struct mt_st_tensor *t = NULL;
        mt_status_t st = MT_ERR_INTERNAL;
        bool cut = copy_file(src, dir, "config.json") &&
                   copy_file(src, dir, "model.safetensors") && mt_model_open(dir, &m) == MT_OK &&
                   (t = mt_st_set_find(m->set, cut_at[i])) != NULL &&
                   truncate(mt_st_set_file_path(m->set, t->file), (off_t)t->offset) == 0;
        if (cut) {
            mt_log_set_quiet(true);
            st = make_engine(m, MT_INDEXER_EXACT, MT_ATTN_SPARSE, false, &e);
            mt_log_set_quiet(false);
        }
        tap_ok(cut && st == MT_ERR_IO && strstr(mt_last_error(), cut_at[i]) != NULL,
               "the shard cut short at '%s' after the model opened: the engine fails with "
               "MT_ERR_IO naming it (%s: %s)", cut_at[i], mt_status_str(st),
               cut ? mt_last_error() : "(could not cut the checkpoint)");
        mt_engine_destroy(e);
        mt_model_destroy(m);
        tap_rmtree(dir);
    }
}

int
main(void)
{
    tap_plan(0);
    synthetic();
    kv_bf16_dense();
    kv_growth();
    kv_sizes();
    kv_bf16_rows();
    kv_fp8();
    f16_weights();
    weights_read_error();
    indexer_overlap();
    session_books();
    session_logits();
    session_penalties();
    session_ends();
    session_cancel();
    session_constraint();
    corrupt_weights();
    corrupt_indexer();
    poisoned_step();
    int n = golden_all();
    if (n < 3) {
        char why[1200];
        snprintf(why, sizeof(why), "%d golden sets under %s, expected v32-tiny-a, v32-tiny-b and "
                 "synth-fp8 (tests/reference/README.md)", n, tap_data_path("golden"));
        tap_bail_out(why);
    }
    return tap_done();
}
