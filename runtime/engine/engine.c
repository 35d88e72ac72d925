/* SPDX-License-Identifier: MIT */
/*
 * engine.c - DeepSeek-V3.2's forward pass on the CPU reference ops: the engine's lifecycle, its
 * work space, and the layer loop.
 *
 * The one idea: the layer loop is a sequence of per-op calls on fp32 activations [n, hidden] for
 * the n tokens appended by one call; state between calls lives only in the KV cache. Attention is
 * attention.c, the MoE step moe.c, the always-on weights weights.c. After every sublayer the
 * output is checked for NaN and Inf, so a corrupt weight fails the call naming its layer instead
 * of turning into plausible tokens (a NaN row is never mistaken for a masked one).
 */
#include <config.h>

#include "runtime/engine/engine_impl.h"

#include "runtime/base/clock.h"
#include "runtime/plan/planner.h"
#include "runtime/plan/trace.h"
#include "runtime/text/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
mt_engine_opts_default(struct mt_engine_opts *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->indexer = MT_INDEXER_EXACT;
    opts->attention = MT_ATTN_SPARSE;
    opts->kv_dtype = MT_DTYPE_F32;
}

/* Bytes of one routed expert's weights and scales (all experts of a model are equal). */
static uint64_t
expert_bytes_of(const struct mt_model *m)
{
    for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
        const struct mt_expert_weights *x = m->layers[l].experts;
        uint64_t b = 0;
        if (!m->layers[l].is_moe || x == NULL) {
            continue;
        }
        const struct mt_weight *w[3] = {&x->gate, &x->up, &x->down};
        for (int i = 0; i < 3; i++) {
            b += w[i]->w != NULL ? w[i]->w->nbytes : 0;
            b += w[i]->scale != NULL ? w[i]->scale->nbytes : 0;
        }
        return b;
    }
    return 0;
}

/*
 * Where each routed expert lives: opts.expert_tiers, else all on the engine's own device (the GPU
 * engine holds every expert, the CPU engine computes every one from DRAM).
 */
static mt_status_t
tiers_init(struct mt_engine *e, const struct mt_model_config *c)
{
    size_t n = (size_t)e->n_layers * (size_t)c->n_routed_experts;
    uint8_t own = e->opts.device == MT_DEVICE_GPU ? MT_TIER_GPU : MT_TIER_DRAM_CPU;

    e->tiers = malloc(n > 0 ? n : 1);
    if (e->tiers == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the engine's expert tiers");
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t t = e->opts.expert_tiers != NULL ? e->opts.expert_tiers[i] : own;
        e->tiers[i] = t < MT_TIER_COUNT ? t : own; /* dense layers: never read */
    }
    return MT_OK;
}

/*
 * The reference executor for every tier, the checkpoint provider unless opts gave one (it keeps
 * every expert but the NVMe ones after its first use: the CPU engine computes GPU-tier experts
 * from DRAM too, and the GPU engine never asks for them; NVMe ones it reads per use unless a
 * streaming provider serves them).
 */
static mt_status_t
experts_init(struct mt_engine *e, const struct mt_model_config *c)
{
    size_t n = (size_t)e->n_layers * (size_t)c->n_routed_experts;
    bool *resident = NULL;
    mt_status_t st;

    if (e->opts.provider != NULL) {
        e->provider = e->opts.provider;
    } else {
        resident = malloc(n > 0 ? n : 1);
        if (resident == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the engine's resident-expert flags");
        }
        for (size_t i = 0; i < n; i++) {
            resident[i] = e->tiers[i] != MT_TIER_NVME;
        }
        st = mt_expert_provider_checkpoint_create(e->model, resident, &e->own_provider);
        free(resident);
        if (st != MT_OK) {
            return st;
        }
        e->provider = e->own_provider;
        if (e->opts.nvme_provider != NULL) {
            st = mt_expert_provider_tiered_create(e->tiers, e->n_layers, c->n_routed_experts,
                                                  e->own_provider, e->opts.nvme_provider,
                                                  &e->tiered);
            if (st != MT_OK) {
                return st;
            }
            e->provider = e->tiered;
        }
    }
    st = mt_executor_ref_create(e->provider, &e->ref_exec);
    if (st != MT_OK) {
        return st;
    }
    for (int t = 0; t < MT_TIER_COUNT; t++) {
        e->exec[t] = e->ref_exec;
    }
    return MT_OK;
}

/* RoPE and softmax constants, as HF computes them */
static void
rope_constants(struct mt_engine *e, const struct mt_model_config *c)
{
    bool yarn = strcmp(c->rope_type, "yarn") == 0;
    struct mt_cpu_rope_params rp = {
        .dim = c->qk_rope_head_dim, .theta = c->rope_theta, .yarn = yarn,
        .factor = c->rope_factor, .original_max_pos = c->rope_original_max_pos,
        .beta_fast = c->rope_beta_fast, .beta_slow = c->rope_beta_slow,
    };
    mt_cpu_rope_freqs(&rp, e->freqs);
    /* HF's YaRN factor on cos/sin (1 for DeepSeek's config) and the mscale^2 softmax scale */
    e->rope_att = (float)mt_config_rope_attn_factor(c);
    e->softmax_scale = (float)mt_config_softmax_scale(c);
}

mt_status_t
mt_engine_create(const struct mt_model *model, const struct mt_engine_opts *opts,
                 struct mt_engine **engine_out)
{
    struct mt_engine *e;
    const struct mt_model_config *c = &model->cfg;
    struct mt_kv_layout kv;
    mt_status_t st;

    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the engine");
    }
    e->model = model;
    e->cfg = *c;
    if (opts != NULL) {
        e->opts = *opts;
    } else {
        mt_engine_opts_default(&e->opts);
    }
    e->n_layers = c->num_hidden_layers;
    e->expert_bytes = expert_bytes_of(model);
    if (c->index_head_dim & (c->index_head_dim - 1)) {
        st = mt_fail(MT_ERR_UNSUPPORTED, 0, "index_head_dim %d is not a power of two (Hadamard)",
                     c->index_head_dim);
        goto out_destroy;
    }
    if (e->opts.device == MT_DEVICE_GPU) {
        e->layers = calloc((size_t)e->n_layers, sizeof(*e->layers));
        e->freqs = malloc((size_t)(c->qk_rope_head_dim / 2 + 1) * sizeof(float));
        if (e->layers == NULL || e->freqs == NULL) {
            st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the engine's layers");
            goto out_destroy;
        }
        rope_constants(e, c);
        /* eng_gpu_create may move GPU experts to DRAM when they do not fit */
        if ((st = tiers_init(e, c)) != MT_OK || (st = eng_gpu_create(e)) != MT_OK ||
            (st = experts_init(e, c)) != MT_OK) {
            goto out_destroy;
        }
        *engine_out = e;
        return MT_OK;
    }
    kv = (struct mt_kv_layout){
        .latent = e->opts.kv_dtype,
        .index_exact = e->opts.indexer == MT_INDEXER_EXACT || e->opts.compare_indexer,
        .index_fp8 = e->opts.indexer == MT_INDEXER_FP8 || e->opts.compare_indexer,
    };
    if ((st = mt_kv_cache_init(&e->kv, c, &kv)) != MT_OK) {
        goto out_destroy;
    }
    if (e->opts.ctx > 0) { /* the context the caller budgeted memory for: the cache stops there */
        e->kv.max_cap = MT_MIN(e->kv.max_cap, e->opts.ctx);
    }
    e->layers = calloc((size_t)e->n_layers, sizeof(*e->layers));
    e->freqs = malloc((size_t)(c->qk_rope_head_dim / 2 + 1) * sizeof(float));
    if (e->layers == NULL || e->freqs == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the engine's layers");
        goto out_destroy;
    }

    rope_constants(e, c);
    if ((st = eng_weights_load(e)) != MT_OK || (st = tiers_init(e, c)) != MT_OK ||
        (st = experts_init(e, c)) != MT_OK) {
        goto out_destroy;
    }
    *engine_out = e;
    return MT_OK;

out_destroy:
    mt_engine_destroy(e);
    return st;
}

void
mt_engine_destroy(struct mt_engine *e)
{
    if (e == NULL) {
        return;
    }
    eng_gpu_destroy(e->gpu, e->n_layers);
    mt_executor_destroy(e->ref_exec);
    mt_expert_provider_destroy(e->tiered);
    mt_expert_provider_destroy(e->own_provider);
    free(e->tiers);
    mt_kv_cache_fini(&e->kv);
    eng_weights_free(e);
    free(e->layers);
    free(e->freqs);
    free(e->work);
    free(e->greedy_logits);
    free(e);
}

void
mt_engine_reset(struct mt_engine *e)
{
    /* a step run ahead (greedy decoding) is dropped; quiet: a reset follows a failure too, which
     * was named when it happened, and a device fault found here fails the next forward */
    mt_log_set_quiet(true);
    (void)eng_gpu_settle(e->gpu);
    mt_log_set_quiet(false);
    e->pos = 0;
}

void
mt_engine_truncate(struct mt_engine *e, int64_t pos)
{
    mt_log_set_quiet(true); /* as in mt_engine_reset */
    (void)eng_gpu_settle(e->gpu);
    mt_log_set_quiet(false);
    if (pos >= 0 && pos < e->pos) {
        e->pos = pos;
    }
}

int64_t
mt_engine_pos(const struct mt_engine *e)
{
    return e->pos;
}

int
mt_engine_vocab(const struct mt_engine *e)
{
    return e->cfg.vocab_size;
}

int64_t
mt_engine_max_pos(const struct mt_engine *e)
{
    int64_t max = e->cfg.max_position_embeddings;

    /* the caches hold --ctx positions (the GPU's from the start, the CPU's as it grows):
     * sessions stop there ("length") and serve refuses longer prompts up front, instead of a
     * forward failing at that position */
    if (e->gpu != NULL) {
        return MT_MIN(max, eng_gpu_ctx(e->gpu));
    }
    return e->opts.ctx > 0 ? MT_MIN(max, e->opts.ctx) : max;
}

int32_t
mt_engine_eos(const struct mt_engine *e)
{
    return e->cfg.eos_token_id;
}

void
mt_engine_indexer_overlap(const struct mt_engine *e, double *overlap_out, int64_t *n_out)
{
    *overlap_out = e->overlap_k > 0 ? e->overlap_sum / e->overlap_k : 1.0;
    *n_out = e->overlap_n;
}

void
mt_engine_set_topk_hook(struct mt_engine *e, mt_engine_topk_hook hook, void *ctx)
{
    e->hook = hook;
    e->hook_ctx = ctx;
}

struct mt_expert_provider *
mt_engine_provider(struct mt_engine *e)
{
    return e->provider;
}

void
mt_engine_set_executor(struct mt_engine *e, enum mt_tier tier, struct mt_executor *ex)
{
    if ((unsigned)tier < MT_TIER_COUNT) {
        e->exec[tier] = ex != NULL ? ex : e->ref_exec;
    }
}

void
mt_engine_set_host_team(struct mt_engine *e, struct mt_cpu_team *team)
{
    e->host_team = team;
}

mt_status_t
mt_engine_preload_experts(struct mt_engine *e, uint64_t *bytes_out)
{
    int E = e->cfg.n_routed_experts;
    int n = e->n_layers * E;
    mt_status_t first = MT_OK;
    uint64_t bytes = 0;
    char msg[1024] = "";

    /* several threads: the provider reads different experts at once (outside its lock) */
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : bytes)
    for (int i = 0; i < n; i++) {
        int l = i / E, x = i % E;
        struct mt_expert w;
        uint8_t t = e->tiers[i];
        if (!e->model->layers[l].is_moe || (t != MT_TIER_DRAM_CPU && t != MT_TIER_DRAM_PCIE)) {
            continue;
        }
        mt_status_t st = e->provider->ops->acquire(e->provider->self, l, x, &w);
        if (st != MT_OK) {
#pragma omp critical
            if (first == MT_OK) {
                first = st;
                snprintf(msg, sizeof(msg), "%s", mt_last_error()); /* this thread's message */
            }
            continue;
        }
        e->provider->ops->release(e->provider->self, l, x);
        bytes += e->expert_bytes;
    }
    if (bytes_out != NULL) {
        *bytes_out = bytes;
    }
    if (first != MT_OK) {
        /* the caller's mt_last_error() is per thread: hand it the message (already logged) */
        mt_log_set_quiet(true);
        mt_fail(first, 0, "%s", msg);
        mt_log_set_quiet(false);
        return first;
    }
    return e->gpu != NULL ? eng_gpu_pin_experts(e, e->gpu) : MT_OK;
}

const uint8_t *
mt_engine_tiers(const struct mt_engine *e)
{
    return e->tiers;
}

uint64_t
mt_engine_device_bytes(const struct mt_engine *e)
{
    return e->gpu != NULL ? eng_gpu_device_bytes(e->gpu) : 0;
}

uint64_t
mt_engine_device_work_bytes(const struct mt_engine *e, int *chunk)
{
    *chunk = 0;
    return e->gpu != NULL ? eng_gpu_work_bytes(e->gpu, chunk) : 0;
}

uint64_t
mt_engine_expert_bytes_held(const struct mt_engine *e)
{
    return e->own_provider != NULL ? mt_expert_provider_checkpoint_bytes(e->own_provider) : 0;
}

/* ---- checks ------------------------------------------------------------------------------ */

/* The checks that need only the model's config (mt_engine_check_prompt_config). */
static mt_status_t
check_tokens_cfg(const struct mt_model_config *cfg, int64_t start, const int32_t *tokens, int n)
{
    if (n <= 0 || tokens == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "empty prompt: give at least one token id");
    }
    if (start + n > cfg->max_position_embeddings) {
        return mt_fail(MT_ERR_INVAL, 0, "sequence of %lld tokens is longer than the model's "
                       "maximum of %d positions (max_position_embeddings)",
                       (long long)(start + n), cfg->max_position_embeddings);
    }
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= cfg->vocab_size) {
            return mt_fail(MT_ERR_INVAL, 0, "token id %d at position %lld is outside the "
                           "vocabulary [0, %d) of config.json's vocab_size: ids given for another "
                           "model, or a tokenizer.json with more tokens than the model has",
                           tokens[i], (long long)(start + i), cfg->vocab_size);
        }
    }
    return MT_OK;
}

mt_status_t
mt_engine_check_prompt_config(const struct mt_model_config *cfg, const int32_t *tokens, int n)
{
    return check_tokens_cfg(cfg, 0, tokens, n);
}

static mt_status_t
check_tokens(const struct mt_engine *e, int64_t start, const int32_t *tokens, int n)
{
    mt_status_t st = check_tokens_cfg(&e->cfg, start, tokens, n);

    if (st != MT_OK) {
        return st;
    }
    if (start + n > mt_engine_max_pos(e)) {
        return mt_fail(MT_ERR_INVAL, 0, "sequence of %lld tokens is longer than the %lld positions "
                       "the KV cache holds (raise --ctx, up to the model's %d)",
                       (long long)(start + n), (long long)mt_engine_max_pos(e),
                       e->cfg.max_position_embeddings);
    }
    return MT_OK;
}

mt_status_t
mt_engine_check_prompt(const struct mt_engine *e, const int32_t *tokens, int n)
{
    return check_tokens(e, 0, tokens, n);
}

/* Blocks of eng_any_not_finite: a fixed trip count, which gcc vectorises under -std=c11 -O2
 * (a loop over a variable count of the same test stays scalar: 3-4x slower, session 12). */
#define FINITE_LANES 64

static inline uint32_t
not_finite_bits(const float *v)
{
    uint32_t b;

    memcpy(&b, v, sizeof(b));
    return (b & 0x7f800000u) == 0x7f800000u; /* every exponent bit set: an infinity or a NaN */
}

bool
eng_any_not_finite(const float *v, size_t n)
{
    uint32_t bad = 0;
    size_t i = 0;

    for (; i + FINITE_LANES <= n; i += FINITE_LANES) {
        for (int j = 0; j < FINITE_LANES; j++) {
            bad |= not_finite_bits(v + i + j);
        }
    }
    for (; i < n; i++) {
        bad |= not_finite_bits(v + i);
    }
    return bad != 0;
}

mt_status_t
eng_check_tensor_finite(const char *name, const float *f, size_t n)
{
    if (!eng_any_not_finite(f, n)) {
        return MT_OK;
    }
    size_t i = 0;
    while (i < n && isfinite(f[i])) {
        i++;
    }
    return mt_fail(MT_ERR_FORMAT, 0, "tensor '%s' holds %g at element %zu: the checkpoint is "
                   "corrupt (download the shard that holds it again)", name, f[i], i);
}

mt_status_t
eng_embed(const struct mt_cpu_weight *embed, const int32_t *tokens, int n, float *out)
{
    size_t D = (size_t)embed->cols;

    for (int t = 0; t < n; t++) {
        mt_cpu_weight_row(embed, tokens[t], out + (size_t)t * D);
        if (eng_any_not_finite(out + (size_t)t * D, D)) {
            return mt_fail(MT_ERR_FORMAT, 0, "the embedding row of token %d is not finite: a "
                           "corrupt model.embed_tokens.weight; check the checkpoint",
                           (int)tokens[t]);
        }
    }
    return MT_OK;
}

/*
 * A sublayer's output must be finite: NaN or Inf here comes from a corrupt weight or scale of
 * this layer (or an overflow), and must fail the call rather than reach the sampler.
 */
mt_status_t
eng_check_finite(const float *v, size_t n, int layer, const char *what)
{
    if (!eng_any_not_finite(v, n)) {
        return MT_OK; /* the usual case, in one vectorised pass; the loop below finds the place */
    }
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            if (layer < 0) {
                return mt_fail(MT_ERR_FORMAT, 0, "the %s output is not finite (%g at %zu): a "
                               "corrupt weight of the head or final norm; check the checkpoint",
                               what, (double)v[i], i);
            }
            return mt_fail(MT_ERR_FORMAT, 0, "layer %d: the %s output is not finite (%g at "
                           "%zu): a corrupt weight of model.layers.%d; check the checkpoint",
                           layer, what, (double)v[i], i, layer);
        }
    }
    return MT_OK;
}

/* ---- work space ------------------------------------------------------------------------- */

/* Hand out the next `bytes` of the buffer at base (64-byte aligned); base NULL only measures. */
static void *
carve(char *base, size_t *off, size_t bytes)
{
    void *p = base != NULL ? base + *off : NULL;

    *off += (bytes + 63) & ~(size_t)63;
    return p;
}

/*
 * Lay out w in base (or, with base NULL, only compute the size). Returns the bytes needed. dense:
 * attention selects every position (not at most index_topk), so a bf16 cache converts that many.
 */
static size_t
work_layout(const struct mt_model_config *c, size_t n, size_t end, bool dense, char *base,
            struct eng_work *w)
{
    size_t D = (size_t)c->hidden_size;
    size_t H = (size_t)c->num_attention_heads;
    size_t IH = (size_t)c->index_n_heads;
    size_t ID = (size_t)c->index_head_dim;
    size_t rope = (size_t)c->qk_rope_head_dim;
    size_t kvl = (size_t)c->kv_lora_rank;
    size_t E = (size_t)c->n_routed_experts;
    size_t K = (size_t)c->num_experts_per_tok;
    size_t f = sizeof(float);
    size_t off = 0;

    w->h = carve(base, &off, n * D * f);
    w->x = carve(base, &off, n * D * f);
    w->y = carve(base, &off, n * D * f);
    w->qa = carve(base, &off, n * (size_t)c->q_lora_rank * f);
    w->q = carve(base, &off, n * H * ((size_t)c->qk_nope_head_dim + rope) * f);
    w->kv = carve(base, &off, n * (kvl + rope) * f);
    w->attn = carve(base, &off, n * H * (size_t)c->v_head_dim * f);
    w->qi = carve(base, &off, n * IH * ID * f);
    w->ki = carve(base, &off, n * ID * f);
    w->wts = carve(base, &off, n * IH * f);
    w->q_lat = carve(base, &off, H * kvl * f);
    w->q_pe = carve(base, &off, H * rope * f);
    w->o_lat = carve(base, &off, H * kvl * f);
    w->scores = carve(base, &off, end * f);
    w->scores2 = carve(base, &off, end * f);
    w->idx = carve(base, &off, end * sizeof(int32_t));
    w->idx2 = carve(base, &off, end * sizeof(int32_t));
    size_t sel = dense ? end : MT_MIN(end, (size_t)c->index_topk);
    w->lat_g = carve(base, &off, sel * kvl * f);
    w->kpe_g = carve(base, &off, sel * rope * f);
    w->iota = carve(base, &off, sel * sizeof(int32_t));
    w->q8 = carve(base, &off, IH * ID);
    w->wq = carve(base, &off, IH * f);
    w->had = carve(base, &off, ID * f);
    w->cos = carve(base, &off, (rope / 2 + 1) * f);
    w->sin = carve(base, &off, (rope / 2 + 1) * f);
    w->logits = carve(base, &off, n * E * f);
    w->ids = carve(base, &off, n * K * sizeof(int32_t));
    w->moe_wts = carve(base, &off, n * K * f);
    struct mt_cpu_router_params rp = {.n_experts = c->n_routed_experts, .n_group = c->n_group};
    w->router_work = carve(base, &off, mt_cpu_router_work_bytes(&rp));
    w->xs = carve(base, &off, n * K * D * f);
    w->ys = carve(base, &off, n * K * D * f);
    w->row_tok = carve(base, &off, n * K * sizeof(int));
    w->pair_row = carve(base, &off, n * K * sizeof(int));
    w->row_w = carve(base, &off, n * K * f);
    w->group_start = carve(base, &off, (E + 1) * sizeof(int));
    w->group_fill = carve(base, &off, E * sizeof(int));
    w->tasks = carve(base, &off, E * sizeof(struct mt_expert_task));
    return off;
}

/* ---- the forward pass -------------------------------------------------------------------- */

static mt_status_t
engine_forward(struct mt_engine *e, const int32_t *tokens, int n, bool all_logits,
               float *logits_out)
{
    const struct mt_model_config *c = &e->cfg;
    int D = c->hidden_size;
    int64_t start = e->pos;
    int64_t end;
    struct eng_work w;
    size_t need;
    float *h;
    float *x;
    float *y;
    mt_status_t st;

    end = start + n;
    if ((st = mt_kv_cache_reserve(&e->kv, end)) != MT_OK) {
        return st;
    }
    bool dense = e->opts.attention == MT_ATTN_DENSE;
    need = work_layout(c, (size_t)n, (size_t)end, dense, NULL, &w);
    if (need > e->work_bytes) {
        free(e->work);
        e->work_bytes = 0;
        e->work = malloc(need);
        if (e->work == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate work space for %d tokens (%zu MiB)",
                           n, need >> 20);
        }
        e->work_bytes = need;
    }
    work_layout(c, (size_t)n, (size_t)end, dense, e->work, &w);
    w.on_gpu = NULL;
    h = w.h;
    x = w.x;
    y = w.y;
    size_t nn = (size_t)n;

    if ((st = eng_embed(&e->embed, tokens, n, h)) != MT_OK) {
        return st;
    }
    for (int l = 0; l < e->n_layers; l++) {
        struct eng_layer *L = &e->layers[l];
        for (int t = 0; t < n; t++) {
            mt_cpu_rmsnorm(h + (int64_t)t * D, L->input_norm, D, (float)c->rms_norm_eps,
                           x + (int64_t)t * D);
        }
        if ((st = eng_attention(e, l, x, n, start, &w, y)) != MT_OK ||
            (st = eng_check_finite(y, nn * D, l, "attention")) != MT_OK) {
            return st;
        }
        for (size_t i = 0; i < nn * D; i++) {
            h[i] += y[i];
        }
        for (int t = 0; t < n; t++) {
            mt_cpu_rmsnorm(h + (int64_t)t * D, L->post_attn_norm, D, (float)c->rms_norm_eps,
                           x + (int64_t)t * D);
        }
        if (L->is_moe) {
            st = eng_moe(e, l, x, n, &w, y);
        } else {
            st = mt_cpu_swiglu(&L->mlp.gate, &L->mlp.up, &L->mlp.down, x, n, y);
        }
        if (st == MT_OK) {
            st = eng_check_finite(y, nn * D, l, L->is_moe ? "MoE" : "MLP");
        }
        if (st != MT_OK) {
            return st;
        }
        for (size_t i = 0; i < nn * D; i++) {
            h[i] += y[i];
        }
    }
    int first = all_logits ? 0 : n - 1;
    for (int t = first; t < n; t++) {
        mt_cpu_rmsnorm(h + (int64_t)t * D, e->final_norm, D, (float)c->rms_norm_eps,
                       x + (int64_t)(t - first) * D);
    }
    if ((st = mt_cpu_linear(&e->head, x, n - first, logits_out)) != MT_OK ||
        (st = eng_check_finite(logits_out, (size_t)(n - first) * (size_t)c->vocab_size, -1,
                           "lm_head")) != MT_OK) {
        return st;
    }
    e->pos = end;
    return MT_OK;
}

/* mt_engine_forward (logits_out) or mt_engine_forward_greedy (next_out, logits_out NULL). */
static mt_status_t
forward_timed(struct mt_engine *e, const int32_t *tokens, int n, bool all_logits,
              float *logits_out, int32_t *next_out)
{
    double t0 = mt_clock_now();
    int64_t start = e->pos;
    mt_status_t st;

    if ((st = check_tokens(e, e->pos, tokens, n)) != MT_OK) {
        return st;
    }
    bool host_pick = next_out != NULL && (e->gpu == NULL || !eng_gpu_device_argmax(e->gpu));
    if (host_pick) { /* the logits, then the sampler's argmax */
        float *lg = e->greedy_logits;
        if (lg == NULL && (lg = e->greedy_logits =
                               malloc((size_t)e->cfg.vocab_size * sizeof(float))) == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the engine's logits");
        }
        st = e->gpu != NULL ? eng_gpu_forward(e, tokens, n, false, lg, NULL)
                            : engine_forward(e, tokens, n, false, lg);
        if (st == MT_OK && (*next_out = mt_sampler_argmax(lg, e->cfg.vocab_size)) < 0) {
            st = mt_fail(MT_ERR_FORMAT, 0, "every logit is NaN"); /* the checks let none by */
        }
    } else if (e->gpu != NULL) {
        st = eng_gpu_forward(e, tokens, n, all_logits, logits_out, next_out);
    } else {
        st = engine_forward(e, tokens, n, all_logits, logits_out);
    }
    if (st == MT_OK) {
        e->stats.forwards++;
        e->stats.tokens += (uint64_t)n;
        e->stats.forward_s += mt_clock_now() - t0;
        double ak, ik;
        mt_plan_prompt_keys(start, n, e->cfg.index_topk, &ak, &ik);
        e->stats.attn_keys += ak;
        e->stats.index_keys += ik;
    }
    return st;
}

mt_status_t
mt_engine_forward(struct mt_engine *e, const int32_t *tokens, int n, bool all_logits,
                  float *logits_out)
{
    return forward_timed(e, tokens, n, all_logits, logits_out, NULL);
}

mt_status_t
mt_engine_forward_greedy(struct mt_engine *e, const int32_t *tokens, int n, int32_t *next_out)
{
    return forward_timed(e, tokens, n, false, NULL, next_out);
}

void
mt_engine_stats_get(struct mt_engine *e, struct mt_engine_stats *out)
{
    if (e->gpu != NULL) {
        eng_gpu_stats_flush(e, e->gpu);
    }
    *out = e->stats;
}

void
mt_engine_stats_reset(struct mt_engine *e)
{
    if (e->gpu != NULL) {
        eng_gpu_stats_flush(e, e->gpu); /* the last layer's device timing belongs to this phase */
    }
    memset(&e->stats, 0, sizeof(e->stats));
}
