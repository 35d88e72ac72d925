/* SPDX-License-Identifier: MIT */
/*
 * engine_gpu_moe.c - the GPU backend's MoE layer, for any placement of the routed experts: the
 * device computes the experts a plan puts on the GPU, host executors (a CPU team; the streaming
 * provider behind it for NVMe experts) compute the others, at the same time.
 *
 * One layer, in stream order and on the host:
 *
 *   device: router -> ids, weights --copy--> host (pinned)   [event ev_ids]
 *           (the layer's input x --copy--> host, when it has host experts)
 *           (layer l+1's router on this x: a guess of its experts, when l+1 streams any)
 *           shared expert -> y
 *   host:   wait for ev_ids only (the shared expert keeps running); group the pairs by expert
 *           exactly as moe.c does; launch the device's experts: GPU-tier ones by the grouped
 *           GEMV, and DRAM experts copied into one of two GPU slots (tier DRAM_PCIE always,
 *           page-locked DRAM_CPU ones with >= slot_min_tok tokens); then submit the others to
 *           their executors (streamed ones as a wave after the DRAM ones: the CPU computes
 *           while the disk reads); then announce the guessed experts of layer l+1 (their reads
 *           start behind this layer's, which submit has waited for). Where the submit cannot
 *           wait (nothing streamed, no slots: eng_gpu_moe's host_first) the host experts are
 *           submitted first, so the CPU team works while the host launches the device experts
 *   both:   the GPU computes its experts while the CPU team computes its own
 *   host:   wait for the executors; sum their outputs in moe.c's fixed order into a pinned
 *           buffer; upload it and add it to y. No stream sync at the end (only when slot
 *           experts must be released): the next layer's ev_ids orders the reused buffers.
 *
 * The guess: layer l+1's router applied to layer l's input x. The residual stream changes little
 * from one layer to the next, so the guess is usually right for most of the 8 experts; wrong
 * guesses cost disk bandwidth, so they are read only while most recent ones were right
 * (guess_pays; mt_engine_stats counts guesses and hits). DRAM and GPU experts need no prefetch.
 * The sum order differs from the CPU engine's (device experts are summed on the device, host
 * experts on the host, then added), within the GPU path's tolerance.
 *
 * A layer whose routed experts all live on the GPU (dev_moe: the all-GPU plan) does not wait for
 * the host on a decode batch (<= MT_GPU_GEMV_MAX_TOK tokens): the router's pairs are grouped on
 * the device (kernels/moe_group.cu, in moe.c's order) and the grouped GEMV reads them there, so a
 * decode step has no sync before its logits and can be replayed as a CUDA graph (engine_gpu.c).
 * The choices still reach the host, by an asynchronous copy read after the step's sync, for the
 * statistics and the trace. MT_GPU_DEVICE_MOE=0 routes through the host as before (measurements).
 */
#include <config.h>

#ifdef MT_HAVE_CUDA

#include "runtime/engine/engine_gpu_impl.h"

#include "kernels/host_copy.h"
#include "runtime/base/clock.h"
#include "runtime/plan/planner.h"
#include "runtime/plan/trace.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint8_t
tier_of(const struct mt_engine *e, int l, int x)
{
    return e->tiers[(size_t)l * e->cfg.n_routed_experts + x];
}

mt_status_t
eng_gpu_place_experts(struct mt_engine *e, struct eng_gpu *g, int l)
{
    const struct mt_layer_weights *lw = &e->model->layers[l];
    struct g_layer *L = &g->layers[l];
    size_t E = (size_t)e->cfg.n_routed_experts;
    mt_status_t st = MT_OK;

    if (L->experts == NULL) {
        L->experts = calloc(E, sizeof(*L->experts));
        L->xtab = calloc(E, sizeof(*L->xtab));
        if (L->experts == NULL || L->xtab == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the expert tables");
        }
    }
    L->n_gpu = L->n_host = L->n_nvme = 0;
    for (size_t x = 0; x < E && st == MT_OK; x++) {
        struct g_mlp *X = &L->experts[x];
        uint8_t tier = tier_of(e, l, (int)x);
        if (tier != MT_TIER_GPU) {
            memset(X, 0, sizeof(*X));
            memset(&L->xtab[x], 0, sizeof(L->xtab[x]));
            L->n_host++;
            L->n_nvme += tier == MT_TIER_NVME;
            continue;
        }
        L->n_gpu++;
        st = eng_gpu_up_mlp(e, g, &lw->experts[x], false, X);
        if (X->gate.w.dtype != MT_DTYPE_F8_E4M3 || X->up.w.dtype != MT_DTYPE_F8_E4M3 ||
            X->down.w.dtype != MT_DTYPE_F8_E4M3 || X->gate.w.rows % 16 != 0 ||
            X->gate.w.cols % 16 != 0) {
            g->grouped_moe = false;
        }
        L->xtab[x] = (struct mt_gpu_expert){
            .gate = X->gate.w.data,
            .up = X->up.w.data,
            .down = X->down.w.data,
            .gate_scale = X->gate.w.scale,
            .up_scale = X->up.w.scale,
            .down_scale = X->down.w.scale,
        };
    }
    return st;
}

mt_status_t
eng_gpu_fit_experts(struct mt_engine *e, struct eng_gpu *g, size_t over, int *moved_out)
{
    int E = e->cfg.n_routed_experts;
    size_t per = e->expert_bytes > 0 ? e->expert_bytes : 1;
    size_t freed = 0;
    int moved = 0;

    (void)g;
    /* the last layers' highest ids first: a plan file lists no priorities, so any order is as
       good, and this one is easy to state */
    for (int l = e->n_layers - 1; l >= 0 && freed < over; l--) {
        for (int x = E - 1; x >= 0 && freed < over && e->model->layers[l].is_moe; x--) {
            if (tier_of(e, l, x) == MT_TIER_GPU) {
                e->tiers[(size_t)l * E + x] = MT_TIER_DRAM_CPU;
                freed += per;
                moved++;
            }
        }
    }
    *moved_out = moved;
    return moved > 0 ? MT_OK : MT_ERR_NOMEM;
}

/*
 * The layout of one GPU slot: the first MoE layer's expert 0 stands for all (every routed expert
 * of a model has the same shapes and dtypes). slot_ok when the device GEMV takes them as they are
 * (FP8 with 16-column rows and fp32 block scales, or BF16 with 8-column rows).
 */
static void
slot_layout(const struct mt_engine *e, struct eng_gpu *g)
{
    const struct mt_expert_weights *x = NULL;
    size_t off = 0;

    g->slot_ok = false;
    g->slot_bytes = 0;
    for (int l = 0; l < e->n_layers && x == NULL; l++) {
        x = e->model->layers[l].is_moe ? e->model->layers[l].experts : NULL;
    }
    if (x == NULL) {
        return;
    }
    const struct mt_weight *w[3] = {&x->gate, &x->up, &x->down};
    bool ok = true;
    for (int k = 0; k < 3; k++) {
        const struct mt_st_tensor *t = w[k]->w;
        bool fp8 = t->dtype == MT_DTYPE_F8_E4M3 && t->shape[1] % 16 == 0 && w[k]->scale != NULL;
        bool bf16 = t->dtype == MT_DTYPE_BF16 && t->shape[1] % 8 == 0;
        ok = ok && t->ndim == 2 && (fp8 || bf16);
        g->slot_off[k] = off;
        off += (t->nbytes + 255) & ~(size_t)255;
    }
    for (int k = 0; k < 3; k++) {
        const struct mt_st_tensor *sc = w[k]->scale;
        g->slot_off[3 + k] = off;
        off += sc != NULL ? ((size_t)sc->nelem * sizeof(float) + 255) & ~(size_t)255 : 0;
    }
    g->slot_ok = ok;
    g->slot_bytes = off;
}

mt_status_t
eng_gpu_moe_alloc(struct mt_engine *e, struct eng_gpu *g)
{
    const struct mt_model_config *c = &e->cfg;
    size_t f = sizeof(float), D = (size_t)c->hidden_size;
    size_t E = (size_t)c->n_routed_experts, K = (size_t)c->num_experts_per_tok;
    size_t T = (size_t)g->chunk; /* tokens per forward chunk */
    bool host = false;
    mt_status_t st;

    for (size_t i = 0; i < (size_t)e->n_layers * E && !host; i++) {
        host = e->model->layers[i / E].is_moe && e->tiers[i] != MT_TIER_GPU;
    }
    for (int l = 0; l < e->n_layers; l++) {
        struct g_layer *L = &g->layers[l];
        L->xtab_dev = NULL;
        if (L->is_moe && (st = eng_gpu_alloc(g, E * sizeof(struct mt_gpu_expert), "expert table",
                                             (void **)&L->xtab_dev)) != MT_OK) {
            return st;
        }
    }
    if ((st = eng_gpu_alloc(g, T * D * f, "work", (void **)&g->d_host_sum)) != MT_OK ||
        (st = eng_gpu_alloc(g, T * E * f, "work", (void **)&g->glog)) != MT_OK ||
        (st = eng_gpu_alloc(g, T * K * sizeof(int32_t), "work", (void **)&g->gids)) != MT_OK ||
        (st = eng_gpu_alloc(g, T * K * f, "work", (void **)&g->grw)) != MT_OK) {
        return st;
    }
    /* two slots where some expert lives off the GPU: one is copied into (on the copy stream)
       while the other's products run */
    slot_layout(e, g);
    g->slot[0] = g->slot[1] = NULL;
    for (int k = 0; k < 2 && host && g->slot_ok; k++) {
        if ((st = eng_gpu_alloc(g, g->slot_bytes, "expert slots", &g->slot[k])) != MT_OK) {
            return st;
        }
    }
    return MT_OK;
}

/*
 * Which layers route on the device (dev_moe, the file comment), their expert tables uploaded, and
 * the host side of their choices: a pinned copy per layer, an event pair per layer for the GPU
 * tier's time.
 */
static mt_status_t
dev_moe_init(struct mt_engine *e, struct eng_gpu *g)
{
    size_t E = (size_t)e->cfg.n_routed_experts, K = (size_t)e->cfg.num_experts_per_tok;
    const char *ev = getenv("MT_GPU_DEVICE_MOE");
    bool on = (ev == NULL || strcmp(ev, "0") != 0) && g->grouped_moe && TOK * K <= 1024;
    mt_status_t st;

    g->all_dev_moe = true;
    /* two sets: the graph slots' steps may be in flight together (engine_gpu_impl.h, bs) */
    g->ids_m = calloc(2 * (size_t)e->n_layers, sizeof(int));
    g->ev_dev = calloc(4 * (size_t)e->n_layers, sizeof(*g->ev_dev));
    if (g->ids_m == NULL || g->ev_dev == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the GPU engine's MoE host buffers");
    }
    g->n_ev_layers = e->n_layers;
    if ((st = mt_gpu_pinned_alloc(2 * (size_t)e->n_layers * TOK * K * sizeof(int32_t),
                                  "the router's choices", (void **)&g->h_ids_all)) != MT_OK) {
        return st;
    }
    for (int l = 0; l < e->n_layers; l++) {
        struct g_layer *L = &g->layers[l];
        int nl = L->next_moe;
        bool guess = !e->opts.no_prefetch && nl >= 0 && g->layers[nl].n_nvme > 0;
        L->dev_moe = on && L->is_moe && L->n_host == 0 && !guess;
        g->all_dev_moe = g->all_dev_moe && (L->dev_moe || !L->is_moe);
    }
    /* a trace takes each token's layers in order: with host-routed layers between, the device
       ones (recorded after the step) would come out of order, so all route on the host */
    for (int l = 0; l < e->n_layers && e->opts.trace != NULL && !g->all_dev_moe; l++) {
        g->layers[l].dev_moe = false;
    }
    for (int l = 0; l < e->n_layers; l++) {
        struct g_layer *L = &g->layers[l];
        if (!L->dev_moe) {
            continue;
        }
        if ((st = mt_gpu_copy_to_device(L->xtab_dev, L->xtab, E * sizeof(*L->xtab))) != MT_OK) {
            return st;
        }
        for (int set = 0; set < 2; set++) {
            struct CUevent_st **ev = &g->ev_dev[2 * (set * e->n_layers + l)];
            if ((st = mt_gpu_event_create(&ev[0])) != MT_OK ||
                (st = mt_gpu_event_create(&ev[1])) != MT_OK) {
                return st;
            }
        }
    }
    return MT_OK;
}

mt_status_t
eng_gpu_moe_init(struct mt_engine *e, struct eng_gpu *g)
{
    const struct mt_model_config *c = &e->cfg;
    size_t E = (size_t)c->n_routed_experts, K = (size_t)c->num_experts_per_tok;
    size_t T = (size_t)g->chunk; /* tokens per forward chunk */
    size_t D = (size_t)c->hidden_size, np = T * K;
    struct eng_work *w = &g->hw;
    mt_status_t st;

    g->guess_layer = -1;
    for (int l = e->n_layers - 1, next = -1; l >= 0; l--) {
        g->layers[l].next_moe = next;
        if (g->layers[l].is_moe) {
            next = l;
        }
    }
    w->row_tok = malloc(np * sizeof(int));
    w->pair_row = malloc(np * sizeof(int));
    w->row_w = malloc(np * sizeof(float));
    w->group_start = malloc((E + 1) * sizeof(int));
    w->group_fill = malloc((E + 1) * sizeof(int));
    w->tasks = malloc(E * sizeof(*w->tasks));
    w->xs = malloc(np * D * sizeof(float));
    w->ys = malloc(np * D * sizeof(float));
    g->guessed = calloc(E, 1);
    g->on_gpu = calloc(E, 1);
    g->n_rows = calloc(E, sizeof(int32_t));
    g->slot_x = calloc(E, sizeof(int));
    g->bal_order = calloc(E, sizeof(int64_t));
    w->on_gpu = g->on_gpu;
    const char *mt = getenv("MT_GPU_SLOT_MIN_TOKENS");
    g->slot_min_tok = e->opts.gpu_slot_min_tokens > 0 ? e->opts.gpu_slot_min_tokens
                      : mt != NULL && atoi(mt) > 0    ? atoi(mt)
                                                      : 0; /* the balance (mark_device) */
    /* the fewest tokens of a prompt chunk's copy candidate once the balance has costs: 1 (any);
     * MT_GPU_SLOT_FLOOR=12 is the rule before session 37, for measurements */
    const char *fl = getenv("MT_GPU_SLOT_FLOOR");
    g->slot_floor = fl != NULL && atoi(fl) > 0 ? atoi(fl) : 1;
    const char *tr = getenv("MT_GPU_SLOT_TRACE");
    g->bal_trace = tr != NULL && strcmp(tr, "0") != 0;
    if (w->row_tok == NULL || w->pair_row == NULL || w->row_w == NULL || w->group_start == NULL ||
        w->group_fill == NULL || w->tasks == NULL || w->xs == NULL || w->ys == NULL ||
        g->guessed == NULL || g->on_gpu == NULL || g->n_rows == NULL || g->slot_x == NULL ||
        g->bal_order == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the GPU engine's MoE host buffers");
    }
    /* pinned: the copies from the device return at once, the shared expert is queued meanwhile */
    if ((st = mt_gpu_pinned_alloc(np * sizeof(int32_t), "the router's choices",
                                  (void **)&w->ids)) != MT_OK ||
        (st = mt_gpu_pinned_alloc(np * sizeof(float), "the router's weights",
                                  (void **)&w->moe_wts)) != MT_OK ||
        (st = mt_gpu_pinned_alloc(T * D * sizeof(float), "the MoE layer's input",
                                  (void **)&g->h_x)) != MT_OK ||
        (st = mt_gpu_pinned_alloc(T * D * sizeof(float), "the host experts' sum",
                                  (void **)&g->h_out)) != MT_OK ||
        (st = mt_gpu_pinned_alloc(np * sizeof(int32_t), "the guessed experts",
                                  (void **)&g->h_gids)) != MT_OK ||
        (st = mt_gpu_event_create(&g->ev_ids)) != MT_OK ||
        (st = mt_gpu_event_create(&g->ev_x0)) != MT_OK ||
        (st = mt_gpu_event_create(&g->ev_x1)) != MT_OK) {
        return st;
    }
    const char *ss = getenv("MT_GPU_SLOT_STREAM");
    if (ss == NULL || strcmp(ss, "0") != 0) {
        for (int k = 0; k < 2; k++) {
            if ((st = mt_gpu_event_create(&g->slot_filled[k])) != MT_OK ||
                (st = mt_gpu_event_create(&g->slot_free[k])) != MT_OK) {
                return st;
            }
        }
        if ((st = mt_gpu_stream_create(&g->copy_stream)) != MT_OK) {
            return st;
        }
    }
    return dev_moe_init(e, g);
}

void
eng_gpu_moe_fini(struct eng_gpu *g)
{
    struct eng_work *w = &g->hw;

    mt_gpu_pinned_free(w->ids);
    mt_gpu_pinned_free(w->moe_wts);
    free(w->row_tok);
    free(w->pair_row);
    free(w->row_w);
    free(w->group_start);
    free(w->group_fill);
    free(w->tasks);
    free(w->xs);
    free(w->ys);
    free(g->guessed);
    free(g->on_gpu);
    free(g->n_rows);
    free(g->slot_x);
    free(g->bal_order);
    for (int i = 0; i < g->n_pinned; i++) {
        mt_log_set_quiet(true); /* after a device fault every one fails: the fault was named */
        mt_gpu_host_unregister(g->pinned[i]);
        mt_log_set_quiet(false);
    }
    free(g->pinned);
    free(g->dram_pinned);
    mt_gpu_pinned_free(g->h_x);
    mt_gpu_pinned_free(g->h_out);
    mt_gpu_pinned_free(g->h_gids);
    mt_gpu_event_destroy(g->ev_ids);
    mt_gpu_event_destroy(g->ev_x0);
    mt_gpu_event_destroy(g->ev_x1);
    mt_gpu_stream_destroy(g->copy_stream);
    for (int k = 0; k < 2; k++) {
        mt_gpu_event_destroy(g->slot_filled[k]);
        mt_gpu_event_destroy(g->slot_free[k]);
    }
    mt_gpu_pinned_free(g->h_ids_all);
    for (int i = 0; g->ev_dev != NULL && i < 4 * g->n_ev_layers; i++) {
        mt_gpu_event_destroy(g->ev_dev[i]);
    }
    free(g->ev_dev);
    free(g->ids_m);
}

/* SwiGLU MLP of x [m, hidden] -> out (g->gs and g->us as scratch). */
mt_status_t
eng_gpu_mlp(struct eng_gpu *g, int l, const struct g_mlp *M, const float *x, int m, float *out)
{
    struct CUstream_st *s = g->stream;
    size_t inter = (size_t)M->gate.w.rows;

    if (g->fuse && m == 1 && M->gate_up.w.data != NULL) {
        /* one token: gate and up in one GEMV of their stacked weight, SwiGLU inside down's */
        GPU_DO(l, "MLP gate and up", eng_gpu_lin(&M->gate_up, x, 1, g->stk, s));
        mt_log_set_quiet(true); /* one message for a failure: GPU_DO's, naming the layer */
        mt_status_t st = mt_gpu_linear_swiglu(&M->down.w, g->stk, g->stk + M->up_off, out, s);
        mt_log_set_quiet(false);
        if (st != MT_ERR_UNSUPPORTED) {
            GPU_DO(l, "MLP down (SwiGLU fused)", st);
            return MT_OK;
        }
        GPU_DO(l, "SwiGLU", mt_gpu_swiglu(g->stk, g->stk + M->up_off, inter, g->gs, s));
    } else {
        GPU_DO(l, "MLP gate", eng_gpu_lin(&M->gate, x, m, g->gs, s));
        GPU_DO(l, "MLP up", eng_gpu_lin(&M->up, x, m, g->us, s));
        GPU_DO(l, "SwiGLU", mt_gpu_swiglu(g->gs, g->us, (size_t)m * inter, g->gs, s));
    }
    GPU_DO(l, "MLP down", eng_gpu_lin(&M->down, g->gs, m, out, s));
    return MT_OK;
}

/* Layer nl's router on x [m, hidden]: its experts guessed, copied to g->h_gids. */
static mt_status_t
guess_next(struct mt_engine *e, struct eng_gpu *g, int l, int nl, int m,
           const struct mt_gpu_router_params *rp)
{
    struct g_layer *N = &g->layers[nl];
    struct CUstream_st *s = g->stream;
    size_t np = (size_t)m * (size_t)e->cfg.num_experts_per_tok;

    GPU_DO(l, "next layer's router (prefetch guess)", eng_gpu_lin(&N->router, g->x, m, g->glog, s));
    GPU_DO(l, "next layer's router (prefetch guess)",
           mt_gpu_router(g->glog, N->router_bias, rp, m, g->gids, g->grw, s));
    GPU_DO(l, "prefetch guess copy", mt_gpu_copy_async(g->h_gids, g->gids, np * 4, 0, s));
    return MT_OK;
}

/*
 * Whether the guesses are worth reading: a wrong guess reads an expert nobody uses, and when the
 * disk is what the step waits for (a plan that streams), that read delays the needed ones. On
 * the H200's v32-shape model (random weights: the residual stream moves more from layer to
 * layer than a trained model's) 37% of the guessed streamed experts were used, and the disk read
 * 1.2x the bytes the routing needed (hetero-h200.md, session 4). So the guesses are still made
 * and counted, but announced to the provider only while at least half of the recent ones were
 * right (GUESS_MIN_HITS); the first GUESS_WARMUP are always announced, and the counts decay
 * (halved every GUESS_WINDOW) so a workload whose guesses improve gets them back.
 */
#define GUESS_WARMUP 16
#define GUESS_WINDOW 64
#define GUESS_MIN_HITS 0.5

static bool
guess_pays(const struct eng_gpu *g)
{
    return g->guess_n < GUESS_WARMUP || g->guess_hit >= GUESS_MIN_HITS * g->guess_n;
}

/* The guessed experts of layer nl that stream from disk: counted, announced to the provider
   while the guesses pay (guess_pays). */
static void
prefetch_guess(struct mt_engine *e, struct eng_gpu *g, int nl, int m)
{
    int E = e->cfg.n_routed_experts, K = e->cfg.num_experts_per_tok;
    int *list = g->hw.group_fill; /* scratch: free between submit and the next layer */
    int n = 0;

    memset(g->guessed, 0, (size_t)E);
    for (int i = 0; i < m * K; i++) {
        int x = g->h_gids[i];
        if (x >= 0 && x < E && !g->guessed[x]) {
            g->guessed[x] = 1;
            if (tier_of(e, nl, x) == MT_TIER_NVME) {
                list[n++] = x;
            }
        }
    }
    g->guess_layer = nl;
    if (n > 0 && e->provider->ops->prefetch != NULL && guess_pays(g)) {
        e->provider->ops->prefetch(e->provider->self, nl, list, n);
    }
}

/* Hits of the guess made for layer l: its streamed experts the router really chose. */
static void
count_guess(struct mt_engine *e, struct eng_gpu *g, int l)
{
    const struct eng_work *w = &g->hw;
    int E = e->cfg.n_routed_experts;

    if (g->guess_layer != l) {
        return;
    }
    for (int x = 0; x < E; x++) {
        if (tier_of(e, l, x) != MT_TIER_NVME) {
            continue;
        }
        bool used = w->group_start[x + 1] > w->group_start[x];
        e->stats.prefetch_guessed += g->guessed[x];
        e->stats.prefetch_hits += g->guessed[x] && used;
        g->guess_n += g->guessed[x];
        g->guess_hit += g->guessed[x] && used;
    }
    if (g->guess_n >= GUESS_WINDOW) {
        g->guess_n /= 2;
        g->guess_hit /= 2;
    }
    g->guess_layer = -1;
}

/*
 * Copy expert x of layer l (acquired: *w) into GPU slot k; *M its device view. On the copy
 * stream, after the products that last read slot k; the compute stream waits for it before
 * its own products (device_experts).
 */
static mt_status_t
slot_fill(struct mt_engine *e, struct eng_gpu *g, int l, int k, const struct mt_expert *w,
          struct g_mlp *M)
{
    const struct mt_cpu_weight *cw[3] = {&w->gate, &w->up, &w->down};
    struct gw *dw[3] = {&M->gate, &M->up, &M->down};
    struct CUstream_st *s = g->copy_stream != NULL ? g->copy_stream : g->stream;
    char *base = g->slot[k];

    if (g->copy_stream != NULL) {
        GPU_DO(l, "expert copy to a GPU slot", mt_gpu_stream_wait(s, g->slot_free[k]));
    }
    memset(M, 0, sizeof(*M)); /* gate and up not stacked (gate_up.w.data NULL) */
    for (int i = 0; i < 3; i++) {
        const struct mt_cpu_weight *c = cw[i];
        size_t bytes = (size_t)(c->rows * c->cols) * mt_dtype_size(c->dtype);
        dw[i]->w = (struct mt_gpu_weight){
            .dtype = c->dtype, .data = base + g->slot_off[i], .rows = c->rows, .cols = c->cols};
        dw[i]->gemm = g->gemm; /* more than MT_GPU_GEMV_MAX_TOK rows: the GEMM's context */
        GPU_DO(l, "expert copy to a GPU slot",
               mt_gpu_copy_async(base + g->slot_off[i], c->data, bytes, 1, s));
        if (c->dtype == MT_DTYPE_F8_E4M3) {
            size_t nb = (size_t)((c->rows + MT_CPU_FP8_BLOCK - 1) / MT_CPU_FP8_BLOCK *
                                 ((c->cols + MT_CPU_FP8_BLOCK - 1) / MT_CPU_FP8_BLOCK));
            dw[i]->w.scale = (const float *)(base + g->slot_off[3 + i]);
            GPU_DO(
                l, "expert copy to a GPU slot",
                mt_gpu_copy_async(base + g->slot_off[3 + i], c->scale, nb * sizeof(float), 1, s));
        }
    }
    if (g->copy_stream != NULL) {
        GPU_DO(l, "expert copy to a GPU slot", mt_gpu_event_record(g->slot_filled[k], s));
    }
    (void)e;
    return MT_OK;
}

/*
 * The device's experts of layer l: its GPU-tier groups and this step's slot experts, their
 * (token, weight) pairs compacted into the h_* arrays and uploaded; GPU-tier groups by the grouped
 * GEMV (decode batches; a chunk's by the chunk GEMM in groups of up to 32 pairs, or one MLP per
 * expert with MT_GPU_CHUNK_MOE=0), slot experts one MLP each after their copy. Slot
 * experts stay acquired until the stream is synchronized (*held_out of them, in g->slot_x).
 */
static mt_status_t
device_experts(struct mt_engine *e, struct eng_gpu *g, int l, int m, int *held_out)
{
    const struct mt_model_config *c = &e->cfg;
    const struct eng_work *w = &g->hw;
    struct g_layer *L = &g->layers[l];
    struct CUstream_st *s = g->stream;
    int E = c->n_routed_experts, D = c->hidden_size;
    int n_groups = 0, n_dev = 0, np = 0, np_dev = 0, max_tok = 0;
    mt_status_t st;

    *held_out = 0;
    /* a chunk's GPU-tier experts through the grouped kernel too, in groups of up to span pairs
       (the chunk GEMM's limit, or the older core's TOK) with every pair's output left in ys,
       added up with the slot experts' below */
    bool chunk_grouped = m > TOK && g->grouped_moe && g->chunk_moe;
    int chunk_span = mt_gpu_moe_chunk_group_max();
    /* GPU-tier groups first (the grouped kernel takes them), then the slot experts */
    for (int pass = 0; pass < 2; pass++) {
        for (int x = 0; x < E; x++) {
            int a = w->group_start[x], b = w->group_start[x + 1];
            bool resident = tier_of(e, l, x) == MT_TIER_GPU;
            if (b == a || !g->on_gpu[x] || resident != (pass == 0)) {
                continue;
            }
            int span = pass == 0 && chunk_grouped ? chunk_span : b - a; /* pairs a group */
            for (int a1 = a; a1 < b; a1 += span) {
                int b1 = MT_MIN(b, a1 + span);
                g->h_xgroups[n_groups] = L->xtab[x];
                g->h_count[n_groups] = x; /* the expert of group n_groups */
                g->h_group_start[n_groups] = np;
                for (int r = a1; r < b1; r++, np++) {
                    g->h_pair_tok[np] = w->row_tok[r];
                    g->h_pair_w[np] = w->row_w[r];
                }
                max_tok = pass == 0 ? MT_MAX(max_tok, b1 - a1) : max_tok;
                n_groups++;
            }
        }
        if (pass == 0) {
            n_dev = n_groups;
            np_dev = np;
        }
    }
    g->h_group_start[n_groups] = np;
    if (n_groups == 0) {
        return MT_OK;
    }
    GPU_DO(l, "routed experts (device)", mt_gpu_event_record(g->ev_x0, s));
    GPU_DO(l, "expert groups upload",
           mt_gpu_copy_async(g->group_start, g->h_group_start, (size_t)(n_groups + 1) * 4, 1, s));
    GPU_DO(l, "expert groups upload",
           mt_gpu_copy_async(g->pair_tok, g->h_pair_tok, (size_t)np * 4, 1, s));
    GPU_DO(l, "expert groups upload",
           mt_gpu_copy_async(g->pair_w, g->h_pair_w, (size_t)np * 4, 1, s));
    int first_loop = 0; /* the first group the per-expert loop computes */
    int summed = 0;     /* the first group whose pairs still need adding into y */
    if (n_dev > 0 && g->grouped_moe && (m <= TOK || chunk_grouped)) {
        GPU_DO(l, "expert groups upload",
               mt_gpu_copy_async(g->xgroups, g->h_xgroups,
                                 (size_t)n_dev * sizeof(struct mt_gpu_expert), 1, s));
        struct mt_gpu_moe_args a = {
            .hidden = D,
            .inter = c->moe_intermediate_size,
            .n_groups = n_dev,
            .n_pairs = np_dev,
            .max_group_tok = max_tok,
            .n_tok = m,
            .experts = g->xgroups,
            .group_start = g->group_start,
            .pair_tok = g->pair_tok,
            .pair_w = g->pair_w,
            .x = g->x,
            .y = g->y,
            .work = g->moe_work,
            .y_pairs = chunk_grouped ? g->ys : NULL,
        };
        GPU_DO(l, "routed experts (grouped GEMV)", mt_gpu_moe_experts(&a, s));
        first_loop = n_dev;
        summed = chunk_grouped ? 0 : n_dev;
    }
    for (int gi = first_loop; gi < n_groups; gi++) {
        int x = g->h_count[gi];
        int a = g->h_group_start[gi], cnt = g->h_group_start[gi + 1] - a;
        const struct g_mlp *X = &L->experts[x];
        struct g_mlp S;
        int k = -1; /* the slot this expert is copied into, if one */
        if (gi >= n_dev) {
            struct mt_expert hw;
            k = *held_out % 2;
            if ((st = e->provider->ops->acquire(e->provider->self, l, x, &hw)) != MT_OK) {
                return st;
            }
            g->slot_x[(*held_out)++] = x;
            if ((st = slot_fill(e, g, l, k, &hw, &S)) != MT_OK) {
                return st;
            }
            X = &S;
            e->stats.slot_copies++;
        }
        GPU_DO(l, "expert input gather",
               mt_gpu_gather_rows(g->x, g->pair_tok + a, cnt, D, g->xs, s));
        bool slot = k >= 0 && g->copy_stream != NULL;
        if (slot) {
            GPU_DO(l, "expert copy to a GPU slot", mt_gpu_stream_wait(s, g->slot_filled[k]));
        }
        if ((st = eng_gpu_mlp(g, l, X, g->xs, cnt, g->ys + (size_t)a * D)) != MT_OK) {
            return st;
        }
        if (slot) { /* slot k may take the next copy once these products have read it */
            GPU_DO(l, "expert copy to a GPU slot", mt_gpu_event_record(g->slot_free[k], s));
        }
    }
    int a0 = g->h_group_start[summed];
    if (np > a0) {
        /* each token's pairs from a0 on, in pair order (at most K: one a routed expert) */
        int K = c->num_experts_per_tok;
        for (int i = 0; i < m * K; i++) {
            g->h_tok_pairs[i] = -1;
        }
        for (int p = a0; p < np; p++) {
            int t = g->h_pair_tok[p], j = 0;
            while (j < K && g->h_tok_pairs[t * K + j] >= 0) {
                j++;
            }
            if (j == K) {
                return eng_gpu_fail(mt_fail(MT_ERR_INTERNAL, 0, "token %d has more than %d "
                                            "expert pairs", t, K),
                                    l, "expert weighted sum");
            }
            g->h_tok_pairs[t * K + j] = p - a0;
        }
        GPU_DO(l, "expert weighted sum",
               mt_gpu_copy_async(g->tok_pairs, g->h_tok_pairs, (size_t)m * K * 4, 1, s));
        GPU_DO(l, "expert weighted sum",
               mt_gpu_scatter_add_rows(g->y, g->ys + (size_t)a0 * D, g->tok_pairs, K,
                                       g->pair_w + a0, m, D, s));
    }
    GPU_DO(l, "routed experts (device)", mt_gpu_event_record(g->ev_x1, s));
    g->x_timing = true;
    return MT_OK;
}

/*
 * Page-lock the DRAM experts' buffers, so their copies into GPU slots run at the link's rate:
 * from pageable memory the driver stages every copy through a bounce buffer of its own, 7.1 GB/s
 * against 43 GB/s page-locked on the H200 machine, which made a prompt 3.6x slower where
 * DRAM_CPU experts went to the slots (bench/results/hetero-h200.md, session 30). Tier DRAM_PCIE
 * experts are always copied; tier DRAM_CPU ones only in long prompt chunks, and only where this
 * succeeded (g->dram_pinned): where it fails (a lock limit, too little RAM), the CPU computes them,
 * one warning says so; DRAM_PCIE experts it could not lock are copied from pageable memory all
 * the same, with a warning of their own. MT_GPU_PIN_DRAM=0 locks only the DRAM_PCIE experts
 * (the CPU keeps the others).
 */
mt_status_t
eng_gpu_pin_experts(struct mt_engine *e, struct eng_gpu *g)
{
    int E = e->cfg.n_routed_experts;
    int n = 0, n_cpu = 0, failed_cpu = 0, n_pcie = 0, failed_pcie = 0;
    const char *pd = getenv("MT_GPU_PIN_DRAM");
    bool pin_cpu = pd == NULL || strcmp(pd, "0") != 0;
    double t0 = mt_clock_now(), bytes = 0.0;

    if (g->slot[0] == NULL || g->pinned != NULL) { /* no slots, or pinned by an earlier call */
        return MT_OK;
    }
    for (int i = 0; i < e->n_layers * E; i++) {
        uint8_t t = e->tiers[i];
        n += e->model->layers[i / E].is_moe &&
             (t == MT_TIER_DRAM_PCIE || (pin_cpu && t == MT_TIER_DRAM_CPU));
    }
    if (n == 0) {
        return MT_OK;
    }
    g->pinned = calloc((size_t)n * 6, sizeof(void *));
    g->dram_pinned = calloc((size_t)e->n_layers * (size_t)E, 1);
    if (g->pinned == NULL || g->dram_pinned == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the list of page-locked experts");
    }
    /* the provider keeps these (resident) experts: their buffers stay where they are */
    for (int i = 0; i < e->n_layers * E; i++) {
        struct mt_expert w;
        int l = i / E, x = i % E;
        uint8_t t = e->tiers[i];
        bool all = true;

        if (!e->model->layers[l].is_moe ||
            !(t == MT_TIER_DRAM_PCIE || (pin_cpu && t == MT_TIER_DRAM_CPU)) ||
            e->provider->ops->acquire(e->provider->self, l, x, &w) != MT_OK) {
            continue;
        }
        const struct mt_cpu_weight *cw[3] = {&w.gate, &w.up, &w.down};
        for (int k = 0; k < 3; k++) {
            void *p[2] = {(void *)cw[k]->data, (void *)cw[k]->scale};
            size_t b[2] = {(size_t)(cw[k]->rows * cw[k]->cols) * mt_dtype_size(cw[k]->dtype), 0};
            if (cw[k]->scale != NULL) {
                b[1] = (size_t)((cw[k]->rows + 127) / 128 * ((cw[k]->cols + 127) / 128)) * 4;
            }
            for (int j = 0; j < 2; j++) {
                if (p[j] == NULL) {
                    continue;
                }
                mt_log_set_quiet(true);
                if (mt_gpu_host_register(p[j], b[j]) == MT_OK) {
                    g->pinned[g->n_pinned++] = p[j];
                    bytes += (double)b[j];
                } else {
                    all = false;
                }
                mt_log_set_quiet(false);
            }
        }
        e->provider->ops->release(e->provider->self, l, x);
        g->dram_pinned[i] = all;
        n_cpu += t == MT_TIER_DRAM_CPU;
        failed_cpu += t == MT_TIER_DRAM_CPU && !all;
        n_pcie += t == MT_TIER_DRAM_PCIE;
        failed_pcie += t == MT_TIER_DRAM_PCIE && !all;
    }
    mt_log_info("page-locked %.2f GiB of DRAM experts for copies into GPU slots in %.1f s",
                bytes / (1u << 30), mt_clock_now() - t0);
    if (failed_cpu > 0) {
        mt_log_warn("could not page-lock %d of %d DRAM experts (cudaHostRegister refused: a "
                    "memory lock limit, or too little free RAM); the CPU computes them in long "
                    "prompts too, since a copy from pageable memory runs at a fraction of the "
                    "link's rate",
                    failed_cpu, n_cpu);
    }
    if (failed_pcie > 0) {
        mt_log_warn("could not page-lock %d of %d experts the plan copies over PCIe "
                    "(cudaHostRegister refused: a memory lock limit, or too little free RAM); "
                    "their copies bounce through pageable memory at a fraction of the link's "
                    "rate",
                    failed_pcie, n_pcie);
    }
    return MT_OK;
}

void
eng_gpu_stats_flush(struct mt_engine *e, struct eng_gpu *g)
{
    float ms = 0.0f;

    if (g->x_timing && mt_gpu_event_sync(g->ev_x1) == MT_OK &&
        mt_gpu_event_ms(g->ev_x0, g->ev_x1, &ms) == MT_OK) {
        e->stats.tier_s[MT_TIER_GPU] += ms * 1e-3;
    }
    g->x_timing = false;
}

/* qsort order of g->bal_order: most tokens first (the key's high bits), then lower ids */
static int
by_key_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x < y) - (x > y);
}

/*
 * Which of layer l's experts the device computes this step (g->on_gpu): its GPU-tier ones, and
 * where there are slots, DRAM experts of tier DRAM_PCIE and some page-locked ones of tier
 * DRAM_CPU: the GPU copies and computes those with the most tokens while the CPU team computes
 * the rest. Which DRAM_CPU ones: those with at least slot_min_tok tokens where that is set
 * (MT_GPU_SLOT_MIN_TOKENS); else the k with the most tokens of mt_plan_slot_balance, from what an
 * expert cost each side in earlier steps of the same kind (decode batch or prompt chunk), among
 * all with a token (a short prompt's chunk gives an expert a few tokens, and copying some still
 * shortens the layer where the link is fast: session 37). Before a prompt chunk has costs, those
 * with mt_plan_slot_min_tokens of the step's mean, at least MT_PLAN_SLOT_MIN_FLOOR; a decode batch
 * takes the device's cost from prompt chunks, else copies one expert once to measure it. The
 * measured balance follows the machine: a slower CPU team or a faster link copies more
 * (bench/results/hetero-h200.md, session 31).
 * NVMe experts stay on the host executors: their reads hold provider slots the executors share.
 */
static void
mark_device(const struct mt_engine *e, struct eng_gpu *g, int l, int m)
{
    const struct eng_work *w = &g->hw;
    int E = e->cfg.n_routed_experts, K = e->cfg.num_experts_per_tok;
    bool slots = g->slot[0] != NULL;
    int min_tok = g->slot_min_tok > 0
                      ? g->slot_min_tok
                      : (int)ceil(mt_plan_slot_min_tokens((double)m * (double)K / (double)E));
    int kind = m > TOK; /* 0: a decode batch, 1: a prompt chunk */
    /* a copy costs the device about as much in decode as in a prompt (the bytes dominate) */
    double dev = g->bal_dev_s[kind] > 0.0 ? g->bal_dev_s[kind] : g->bal_dev_s[1];
    double launch = g->bal_dev_s[kind] > 0.0 ? g->bal_launch_s[kind] : g->bal_launch_s[1];
    bool balance = g->slot_min_tok == 0 && dev > 0.0 && g->bal_cpu_s[kind] > 0.0;
    /* with measured costs any expert with a token is a candidate (the balance decides), before
     * them a prompt chunk's threshold, at least MT_PLAN_SLOT_MIN_FLOOR */
    int floor_tok = g->slot_min_tok > 0     ? g->slot_min_tok
                    : kind == 0             ? 1
                    : balance               ? g->slot_floor
                                            : MT_PLAN_SLOT_MIN_FLOOR;

    memset(g->n_rows, 0, (size_t)E * sizeof(int32_t));
    for (int i = 0; i < m * K; i++) {
        g->n_rows[w->ids[i]]++;
    }
    g->bal_kind = kind;
    g->bal_cand = g->bal_fixed = g->bal_cpu = g->bal_k = 0;
    for (int x = 0; x < E; x++) {
        uint8_t t = tier_of(e, l, x);
        bool pinned = g->dram_pinned != NULL && g->dram_pinned[(size_t)l * (size_t)E + x];

        g->on_gpu[x] = t == MT_TIER_GPU || (slots && t == MT_TIER_DRAM_PCIE);
        g->bal_fixed += slots && t == MT_TIER_DRAM_PCIE && g->n_rows[x] > 0;
        g->bal_cpu += t == MT_TIER_DRAM_CPU && g->n_rows[x] > 0;
        if (slots && t == MT_TIER_DRAM_CPU && pinned && g->n_rows[x] >= floor_tok) {
            g->bal_order[g->bal_cand++] = (int64_t)g->n_rows[x] << 32 | (int64_t)(E - 1 - x);
        }
    }
    if (g->bal_cand == 0) {
        return;
    }
    qsort(g->bal_order, (size_t)g->bal_cand, sizeof(int64_t), by_key_desc);
    int k = 0;
    if (balance) {
        k = mt_plan_slot_balance(g->bal_cand, g->bal_fixed, g->bal_cpu, dev, launch,
                                 g->bal_cpu_s[kind]);
    } else if (kind == 1 || g->slot_min_tok > 0) {
        while (k < g->bal_cand && (int)(g->bal_order[k] >> 32) >= min_tok) {
            k++;
        }
    } else if (g->bal_cpu_s[0] > 0.0 && g->bal_fixed == 0) {
        k = 1; /* a decode batch without the device's cost: one copy measures it */
    }
    for (int i = 0; i < k; i++) {
        g->on_gpu[E - 1 - (int)(g->bal_order[i] & 0xffffffff)] = 1;
    }
    g->bal_k = k;
    if (g->bal_trace) {
        mt_log_info("slots: layer %d, %d tokens: %d of %d candidates copied (%s; the %d-token "
                    "one last), %d DRAM_PCIE, %d on the CPU; an expert %.3f ms device, %.3f ms "
                    "launch, %.3f ms CPU",
                    l, m, k, g->bal_cand,
                    balance                       ? "balance"
                    : kind || g->slot_min_tok > 0 ? "threshold"
                    : k > 0                       ? "a probe"
                                                  : "no costs yet",
                    k > 0 ? (int)(g->bal_order[k - 1] >> 32) : 0, g->bal_fixed, g->bal_cpu - k,
                    dev * 1e3, launch * 1e3, g->bal_cpu_s[kind] * 1e3);
    }
}

/*
 * When the host executors' tasks of this step were done: the latest of their own clocks where
 * each keeps one (the CPU team's last thread), else now (wait has returned).
 */
static double
host_done_at(struct mt_executor **used, int n_used, double t_start)
{
    double now = mt_clock_now(), end = t_start;

    for (int i = 0; i < n_used; i++) {
        double t = used[i]->ops->done_at != NULL ? used[i]->ops->done_at(used[i]->self) : 0.0;

        if (t < t_start || t > now) { /* none, or an earlier step's */
            return now;
        }
        end = MT_MAX(end, t);
    }
    return end;
}

/*
 * After a step that had candidates for the slots: what an expert cost each side, from the
 * device's events around its experts (ev_x0..ev_x1, read after the stream sync), the host's
 * launch time (none where the CPU team was submitted first) and the CPU team's time from its
 * submit to its end (host_done_at); the estimates move halfway to each measurement. The CPU
 * side's time includes any NVMe experts the host computes, spread over the DRAM ones.
 */
static void
balance_update(struct eng_gpu *g, double t_dev0, double t_sub, double t_cpu_end, bool synced,
               bool host_first)
{
    int n_dev = g->bal_fixed + g->bal_k, n_cpu = g->bal_cpu - g->bal_k, kind = g->bal_kind;
    float ms = 0.0f;

    if (g->bal_cand == 0 || g->slot_min_tok > 0) {
        return;
    }
    if (n_dev > 0 && synced && g->x_timing && mt_gpu_event_ms(g->ev_x0, g->ev_x1, &ms) == MT_OK) {
        double dev = ms * 1e-3 / n_dev, launch = host_first ? 0.0 : (t_sub - t_dev0) / n_dev;
        bool first = g->bal_dev_s[kind] <= 0.0;

        g->bal_dev_s[kind] = first ? dev : 0.5 * (g->bal_dev_s[kind] + dev);
        g->bal_launch_s[kind] = first ? launch : 0.5 * (g->bal_launch_s[kind] + launch);
    }
    if (n_cpu > 0) {
        double cpu = (t_cpu_end - (host_first ? t_dev0 : t_sub)) / n_cpu;

        g->bal_cpu_s[kind] = g->bal_cpu_s[kind] > 0.0 ? 0.5 * (g->bal_cpu_s[kind] + cpu) : cpu;
    }
}

/*
 * Layer l's MoE on a decode batch (m <= TOK) without the host: router, grouping on the device,
 * shared expert, grouped GEMV (the file comment). The choices are copied to buffer set g->bs of
 * h_ids_all for eng_gpu_moe_flush; ids_m is set by the caller of a recorded step when it
 * launches it.
 */
static mt_status_t
moe_on_device(struct mt_engine *e, struct eng_gpu *g, int l, int m,
              const struct mt_gpu_router_params *rp)
{
    const struct mt_model_config *c = &e->cfg;
    struct g_layer *L = &g->layers[l];
    struct CUstream_st *s = g->stream;
    int K = c->num_experts_per_tok, np = m * K;
    struct mt_gpu_moe_args a = {
        .hidden = c->hidden_size,
        .inter = c->moe_intermediate_size,
        .n_groups = np, /* an upper bound: the slots after the last expert's are empty */
        .n_pairs = np,
        .max_group_tok = m,
        .n_tok = m,
        .experts = g->xgroups,
        .group_start = g->group_start,
        .pair_tok = g->pair_tok,
        .pair_w = g->pair_w,
        .x = g->x,
        .y = g->y,
        .work = g->moe_work,
    };

    GPU_DO(l, "router projection", eng_gpu_lin(&L->router, g->x, m, g->rlog, s));
    GPU_DO(l, "router", mt_gpu_router(g->rlog, L->router_bias, rp, m, g->ids, g->rw, s));
    size_t sl = (size_t)g->bs * (size_t)e->n_layers + (size_t)l; /* this set's layer l */
    GPU_DO(l, "router copy", mt_gpu_copy_async(g->h_ids_all + sl * TOK * K, g->ids,
                                               (size_t)np * sizeof(int32_t), 0, s));
    GPU_DO(l, "expert grouping (device)",
           mt_gpu_moe_group(g->ids, g->rw, m, K, L->xtab_dev, c->n_routed_experts, g->xgroups,
                            g->group_start, g->pair_tok, g->pair_w, s));
    mt_status_t st = eng_gpu_mlp(g, l, &L->shared, g->x, m, g->y);
    if (st != MT_OK) {
        return st;
    }
    /* the GPU tier's time: in a recorded step, event nodes that record each time it runs */
    mt_status_t (*mark)(struct CUevent_st *, struct CUstream_st *) =
        g->capturing ? mt_gpu_event_mark : mt_gpu_event_record;
    GPU_DO(l, "routed experts (device)", mark(g->ev_dev[2 * sl], s));
    GPU_DO(l, "routed experts (grouped GEMV)", mt_gpu_moe_experts(&a, s));
    GPU_DO(l, "routed experts (device)", mark(g->ev_dev[2 * sl + 1], s));
    if (!g->capturing) {
        g->ids_m[sl] = m;
    }
    return MT_OK;
}

mt_status_t
eng_gpu_moe_flush(struct mt_engine *e, struct eng_gpu *g, int set)
{
    struct eng_work *w = &g->hw;
    int E = e->cfg.n_routed_experts, K = e->cfg.num_experts_per_tok;
    mt_status_t st = MT_OK;

    for (int l = 0; l < e->n_layers; l++) {
        size_t sl = (size_t)set * (size_t)e->n_layers + (size_t)l;
        int m = g->ids_m[sl];
        const int32_t *ids = g->h_ids_all + sl * TOK * K;
        float ms = 0.0f;
        if (m == 0) {
            continue;
        }
        g->ids_m[sl] = 0;
        if (mt_gpu_event_ms(g->ev_dev[2 * sl], g->ev_dev[2 * sl + 1], &ms) == MT_OK) {
            e->stats.tier_s[MT_TIER_GPU] += ms * 1e-3;
        }
        /* eng_moe_count reads the groups' sizes: group_start from the counts */
        memset(w->group_start, 0, (size_t)(E + 1) * sizeof(int));
        for (int i = 0; i < m * K; i++) {
            if ((unsigned)ids[i] < (unsigned)E) { /* device-written: never index blindly */
                w->group_start[ids[i] + 1]++;
            }
        }
        for (int x = 0; x < E; x++) {
            w->group_start[x + 1] += w->group_start[x];
        }
        eng_moe_count(e, l, w);
        if (st == MT_OK && e->opts.trace != NULL) {
            st = mt_trace_record_batch(e->opts.trace, l, (const int *)ids, m, K);
        }
    }
    return st;
}

/* The MoE FFN of layer l on g->x [m, hidden] -> g->y (the file comment). */
mt_status_t
eng_gpu_moe(struct mt_engine *e, struct eng_gpu *g, int l, int m)
{
    const struct mt_model_config *c = &e->cfg;
    struct g_layer *L = &g->layers[l];
    struct eng_work *w = &g->hw;
    struct CUstream_st *s = g->stream;
    int K = c->num_experts_per_tok, D = c->hidden_size;
    struct mt_gpu_router_params rp = {
        .n_experts = c->n_routed_experts,
        .n_group = c->n_group,
        .topk_group = c->topk_group,
        .k = K,
        .norm_topk_prob = c->norm_topk_prob,
        .routed_scaling_factor = (float)c->routed_scaling_factor,
    };
    size_t np = (size_t)m * (size_t)K;
    int nl = L->next_moe;
    bool host = L->n_host > 0;
    bool guess = !e->opts.no_prefetch && nl >= 0 && g->layers[nl].n_nvme > 0;
    struct mt_executor *used[MT_TIER_COUNT + 1];
    int n_used = 0;
    double t0 = mt_clock_now();
    mt_status_t st, st_wait;

    if (L->dev_moe && m <= TOK) {
        st = moe_on_device(e, g, l, m, &rp);
        e->stats.moe_s += g->capturing ? 0.0 : mt_clock_now() - t0;
        return st;
    }
    GPU_DO(l, "router projection", eng_gpu_lin(&L->router, g->x, m, g->rlog, s));
    GPU_DO(l, "router", mt_gpu_router(g->rlog, L->router_bias, &rp, m, g->ids, g->rw, s));
    GPU_DO(l, "router copy", mt_gpu_copy_async(w->ids, g->ids, np * 4, 0, s));
    GPU_DO(l, "router copy", mt_gpu_copy_async(w->moe_wts, g->rw, np * 4, 0, s));
    if (host) {
        GPU_DO(l, "MoE input copy",
               mt_gpu_copy_async(g->h_x, g->x, (size_t)m * D * sizeof(float), 0, s));
    }
    if (guess && (st = guess_next(e, g, l, nl, m, &rp)) != MT_OK) {
        return st;
    }
    GPU_DO(l, "router copy", mt_gpu_event_record(g->ev_ids, s));
    if ((st = eng_gpu_mlp(g, l, &L->shared, g->x, m, g->y)) != MT_OK) {
        return st;
    }
    GPU_DO(l, "router copy", mt_gpu_event_sync(g->ev_ids));
    eng_gpu_stats_flush(e, g);
    if (e->opts.trace != NULL &&
        (st = mt_trace_record_batch(e->opts.trace, l, (const int *)w->ids, m, K)) != MT_OK) {
        return st;
    }
    mark_device(e, g, l, m);
    eng_moe_group(e, l, g->h_x, m, w);
    eng_moe_count(e, l, w);
    count_guess(e, g, l);
    /*
     * Which side starts first. The device's experts, where the host experts' submit may wait:
     * on the disk (it acquires the streamed experts) or for its own earlier waves (a provider
     * with streaming slots takes the tasks in waves of its capacity, each waited for, and
     * device_experts' acquires of slot experts share those slots); they then run while the host
     * waits. Else the CPU team's work, since device_experts keeps the host busy launching: in
     * prefill one gather and MLP per expert, ~5 ms a layer of a 65-token batch on the H200,
     * which delayed the CPU experts' start by as much and made an all-GPU plan's prefill
     * 0.67-0.71 of its prediction (2026-11-30); with ~200 slot experts a 1,024-token chunk the
     * launches block on the full launch queue, ~0.75 ms an expert, and the CPU team started
     * 150 ms late (2026-12-03, bench/results/hetero-h200.md).
     */
    bool host_first = host && L->n_nvme == 0 && mt_expert_provider_capacity(e->provider) == 0;
    int held = 0;
    double t_submit = mt_clock_now(), t_sub = t_submit;
    st = host_first ? eng_moe_submit(e, l, w, used, &n_used) : MT_OK;
    st = st == MT_OK ? device_experts(e, g, l, m, &held) : st;
    if (st == MT_OK && host && !host_first) {
        t_sub = mt_clock_now();
        st = eng_moe_submit(e, l, w, used, &n_used);
    }
    /*
     * The guess for the next layer only now, when this layer's streamed experts have arrived
     * (submit acquired them): a speculative read that shares the disk with a needed one delays
     * it (measured: bench/results/hetero-h200.md, run 2).
     */
    if (guess) {
        prefetch_guess(e, g, nl, m);
    }
    st_wait = eng_moe_wait(e, used, n_used, t_submit);
    st = st != MT_OK ? st : st_wait;
    double t_cpu_end = host_done_at(used, n_used, host_first ? t_submit : t_sub);
    if (held > 0 || st != MT_OK) {
        /* the slot copies read the experts' host memory: done before they are released. The
           compute stream waits for every copy whose products were launched; where a launch
           failed, a copy on the copy stream may have none after it, so that stream too */
        mt_log_set_quiet(true); /* eng_gpu_fail names it below */
        mt_status_t ss = mt_gpu_stream_sync(s);
        if (g->copy_stream != NULL) {
            mt_status_t sc = mt_gpu_stream_sync(g->copy_stream);
            ss = ss != MT_OK ? ss : sc;
        }
        mt_log_set_quiet(false);
        for (int i = 0; i < held; i++) {
            e->provider->ops->release(e->provider->self, l, g->slot_x[i]);
        }
        if (st == MT_OK && ss != MT_OK) {
            return eng_gpu_fail(ss, l, "expert copies to GPU slots");
        }
    }
    if (st != MT_OK) {
        return st;
    }
    balance_update(g, t_submit, t_sub, t_cpu_end, held > 0, host_first);
    if (n_used > 0) {
        eng_moe_sum(e, l, w, g->h_out, m, true); /* the team clears the rows it adds into */
        GPU_DO(l, "host experts' sum upload",
               mt_gpu_copy_async(g->d_host_sum, g->h_out, (size_t)m * D * sizeof(float), 1, s));
        GPU_DO(l, "host experts' sum", mt_gpu_add(g->y, g->d_host_sum, (size_t)m * D, s));
    }
    /*
     * No stream sync here: the host runs ahead into the next layer's launches. h_out (pinned)
     * is written again only after the next MoE layer's ev_ids, which the stream reaches after
     * its copy. The expert groups' arrays (h_pair_*, h_group_start: plain malloc) are copied
     * through the driver's staging buffer, which the copy call fills before it returns, and
     * may make that call wait for the stream: pinning them would let the host run further
     * ahead (not measured yet).
     */
    e->stats.moe_s += mt_clock_now() - t0;
    return MT_OK;
}

#else /* !MT_HAVE_CUDA */

#include "runtime/engine/engine_impl.h"

mt_status_t
eng_gpu_pin_experts(struct mt_engine *e, struct eng_gpu *g)
{
    (void)e, (void)g;
    return MT_OK;
}

void
eng_gpu_stats_flush(struct mt_engine *e, struct eng_gpu *g)
{
    (void)e, (void)g;
}

#endif /* MT_HAVE_CUDA */
