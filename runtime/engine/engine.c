/* SPDX-License-Identifier: MIT */
/*
 * engine.c - DeepSeek-V3.2's forward pass on the CPU reference ops, with a growing KV cache.
 *
 * The one idea: the layer loop is a sequence of per-op calls on fp32 activations [n, hidden] for
 * the n tokens appended by one call; state between calls lives only in the per-layer cache
 * (normalized latent, roped k_pe, indexer keys). Each query attends to the positions chosen for
 * it (all s <= t, or the indexer's top-k), sorted ascending, so a selection of "everything" is
 * bit-identical to dense attention.
 *
 * Numerics follow HF transformers' DeepseekV32ForCausalLM in float32 (tests/reference/
 * HF_NOTES.md): q_a/kv_a layernorm eps fixed at 1e-6, YaRN attention factor on cos/sin, router
 * normalization + 1e-20. The FP8 indexer mode follows DeepSeek's inference code instead (HF has
 * no FP8 indexer).
 */
#include <config.h>

#include "runtime/engine/engine.h"

#include "cpu/convert.h"
#include "cpu/ref_ops.h"
#include "runtime/plan/trace.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One SwiGLU MLP (routed expert, shared expert or dense FFN). */
struct eng_mlp {
    struct mt_cpu_weight gate, up, down;
};

struct eng_layer {
    /* weights (data owned by the engine's buffer list) */
    float *input_norm;      // [hidden]
    float *post_attn_norm;  // [hidden]
    struct mt_cpu_weight q_a, q_b, kv_a, o;
    float *q_a_norm;        // [q_lora]
    float *kv_a_norm;       // [kv_lora]
    float *kv_b;            // [H * (nope + v), kv_lora], dequantized once (absorption)
    struct mt_cpu_weight idx_wq_b, idx_wk, idx_wproj;
    float *idx_norm_w;      // [index_head_dim]
    float *idx_norm_b;      // [index_head_dim]
    bool is_moe;
    struct eng_mlp mlp;     // dense layers
    struct mt_cpu_weight router;
    float *router_bias;     // [n_experts] or NULL
    struct eng_mlp shared;
    struct eng_mlp *experts; // owned, [n_experts]
    /* cache, capacity e->cap positions */
    float *lat;             // [cap, kv_lora]   owned
    float *kpe;             // [cap, rope]      owned
    float *ikey;            // [cap, idx_dim]   owned, exact index keys (no Hadamard)
    uint8_t *ikey8;         // [cap, idx_dim]   owned, FP8 keys after Hadamard
    float *ikscale;         // [cap]            owned
};

struct mt_engine {
    const struct mt_model *model; /* borrowed */
    struct mt_model_config cfg;
    struct mt_engine_opts opts;
    void **bufs;                  /* owned: every weight buffer */
    size_t n_bufs;
    size_t cap_bufs;
    struct mt_cpu_weight embed, head;
    float *final_norm;
    struct eng_layer *layers;     /* owned, [n_layers] */
    int n_layers;
    float *freqs;                 /* owned, [rope / 2] */
    float rope_att;               /* HF attention_factor on cos and sin */
    float softmax_scale;
    int64_t pos;
    int64_t cap;
    double overlap_sum;
    double overlap_k;
    int64_t overlap_n;
    mt_engine_topk_hook hook;
    void *hook_ctx;
    mt_engine_expert_fn expert_fn; /* routed experts go through this (mt_engine_expert_cpu) */
    void *expert_ctx;
    void *work;                   /* owned: the forward pass's work space, grown on demand */
    size_t work_bytes;
};

void
mt_engine_opts_default(struct mt_engine_opts *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->indexer = MT_INDEXER_EXACT;
    opts->attention = MT_ATTN_SPARSE;
}

/* ---- loading ----------------------------------------------------------------------------- */

static mt_status_t
keep_buf(struct mt_engine *e, void *p)
{
    if (e->n_bufs == e->cap_bufs) {
        size_t cap = e->cap_bufs ? 2 * e->cap_bufs : 64;
        void **nb = realloc(e->bufs, cap * sizeof(*nb));
        if (nb == NULL) {
            free(p);
            return mt_fail(MT_ERR_NOMEM, 0, "cannot grow the engine's buffer list");
        }
        e->bufs = nb;
        e->cap_bufs = cap;
    }
    e->bufs[e->n_bufs++] = p;
    return MT_OK;
}

/* Read a tensor's raw bytes into a new buffer kept by the engine. */
static mt_status_t
read_raw(struct mt_engine *e, const struct mt_st_tensor *t, void **out)
{
    void *p = malloc(t->nbytes > 0 ? t->nbytes : 1);
    mt_status_t st;

    if (p == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %llu bytes for tensor '%s'",
                       (unsigned long long)t->nbytes, t->name);
    }
    st = mt_st_set_read(e->model->set, t, p, t->nbytes);
    if (st != MT_OK) {
        free(p);
        return st;
    }
    st = keep_buf(e, p);
    if (st != MT_OK) {
        return st;
    }
    *out = p;
    return MT_OK;
}

/* A tensor of any float dtype, converted to a new fp32 array of t->nelem values. */
static mt_status_t
load_f32(struct mt_engine *e, const struct mt_st_tensor *t, float **out)
{
    float *f;
    void *raw;
    mt_status_t st;

    if (t == NULL) {
        return mt_fail(MT_ERR_INTERNAL, 0, "engine: a required tensor is missing from the model");
    }
    if (t->dtype == MT_DTYPE_F32) {
        st = read_raw(e, t, &raw);
        if (st == MT_OK) {
            *out = raw;
        }
        return st;
    }
    if (t->dtype != MT_DTYPE_BF16 && t->dtype != MT_DTYPE_F16 && t->dtype != MT_DTYPE_F8_E4M3) {
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "tensor '%s': dtype %s is not supported by the CPU "
                       "engine", t->name, mt_dtype_name(t->dtype));
    }
    raw = malloc(t->nbytes > 0 ? t->nbytes : 1);
    f = malloc((size_t)t->nelem * sizeof(float) + 1);
    if (raw == NULL || f == NULL) {
        free(raw);
        free(f);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate tensor '%s'", t->name);
    }
    st = mt_st_set_read(e->model->set, t, raw, t->nbytes);
    if (st == MT_OK) {
        if (t->dtype == MT_DTYPE_BF16) {
            mt_bf16_to_f32_n(raw, f, (size_t)t->nelem);
        } else if (t->dtype == MT_DTYPE_F16) {
            mt_f16_to_f32_n(raw, f, (size_t)t->nelem);
        } else {
            mt_fp8_to_f32_n(raw, f, (size_t)t->nelem);
        }
    }
    free(raw);
    if (st != MT_OK) {
        free(f);
        return st;
    }
    st = keep_buf(e, f);
    if (st == MT_OK) {
        *out = f;
    }
    return st;
}

/* A 2-D linear weight, kept in its stored dtype (FP8 with its scales as fp32). */
static mt_status_t
load_linear(struct mt_engine *e, const struct mt_weight *mw, struct mt_cpu_weight *out)
{
    const struct mt_st_tensor *t = mw->w;
    void *raw;
    mt_status_t st;

    if (t == NULL) {
        return mt_fail(MT_ERR_INTERNAL, 0, "engine: a required weight is missing from the model");
    }
    if (t->ndim != 2) {
        return mt_fail(MT_ERR_FORMAT, 0, "tensor '%s': expected 2 dimensions, found %d", t->name,
                       t->ndim);
    }
    memset(out, 0, sizeof(*out));
    out->rows = t->shape[0];
    out->cols = t->shape[1];
    out->dtype = t->dtype;
    switch (t->dtype) {
    case MT_DTYPE_F32:
    case MT_DTYPE_BF16:
    case MT_DTYPE_F16:
    case MT_DTYPE_F8_E4M3:
        break;
    default:
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "tensor '%s': dtype %s is not supported by the CPU "
                       "engine", t->name, mt_dtype_name(t->dtype));
    }
    st = read_raw(e, t, &raw);
    if (st != MT_OK) {
        return st;
    }
    out->data = raw;
    if (out->dtype == MT_DTYPE_F8_E4M3) {
        float *s;
        int64_t want = MT_CEIL_DIV(out->rows, MT_CPU_FP8_BLOCK) *
                       MT_CEIL_DIV(out->cols, MT_CPU_FP8_BLOCK);
        if (mw->scale == NULL) {
            return mt_fail(MT_ERR_FORMAT, 0, "FP8 tensor '%s' has no weight_scale_inv", t->name);
        }
        if ((int64_t)mw->scale->nelem != want) {
            return mt_fail(MT_ERR_FORMAT, 0, "scale of '%s' has %llu values, expected %lld",
                           t->name, (unsigned long long)mw->scale->nelem, (long long)want);
        }
        st = load_f32(e, mw->scale, &s);
        if (st != MT_OK) {
            return st;
        }
        out->scale = s;
    }
    return MT_OK;
}

static mt_status_t
load_mlp(struct mt_engine *e, const struct mt_expert_weights *w, struct eng_mlp *out)
{
    mt_status_t st = load_linear(e, &w->gate, &out->gate);
    if (st == MT_OK) {
        st = load_linear(e, &w->up, &out->up);
    }
    if (st == MT_OK) {
        st = load_linear(e, &w->down, &out->down);
    }
    return st;
}

/* kv_b dequantized to fp32 [rows, cols]: the absorbed attention reads it per head. */
static mt_status_t
load_dense_f32(struct mt_engine *e, const struct mt_weight *mw, float **out)
{
    struct mt_cpu_weight w;
    float *f;
    mt_status_t st = load_linear(e, mw, &w);

    if (st != MT_OK) {
        return st;
    }
    f = malloc((size_t)(w.rows * w.cols) * sizeof(float) + 1);
    if (f == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate dequantized '%s'", mw->w->name);
    }
    for (int64_t r = 0; r < w.rows; r++) {
        mt_cpu_weight_row(&w, r, f + r * w.cols);
    }
    st = keep_buf(e, f);
    if (st == MT_OK) {
        *out = f;
    }
    return st;
}

static mt_status_t
load_layer(struct mt_engine *e, int l)
{
    const struct mt_layer_weights *lw = &e->model->layers[l];
    struct eng_layer *L = &e->layers[l];
    mt_status_t st;

    L->is_moe = lw->is_moe;
    if ((st = load_f32(e, lw->input_norm.w, &L->input_norm)) != MT_OK ||
        (st = load_f32(e, lw->post_attn_norm.w, &L->post_attn_norm)) != MT_OK ||
        (st = load_linear(e, &lw->q_a, &L->q_a)) != MT_OK ||
        (st = load_f32(e, lw->q_a_norm.w, &L->q_a_norm)) != MT_OK ||
        (st = load_linear(e, &lw->q_b, &L->q_b)) != MT_OK ||
        (st = load_linear(e, &lw->kv_a, &L->kv_a)) != MT_OK ||
        (st = load_f32(e, lw->kv_a_norm.w, &L->kv_a_norm)) != MT_OK ||
        (st = load_dense_f32(e, &lw->kv_b, &L->kv_b)) != MT_OK ||
        (st = load_linear(e, &lw->o, &L->o)) != MT_OK ||
        (st = load_linear(e, &lw->idx_wq_b, &L->idx_wq_b)) != MT_OK ||
        (st = load_linear(e, &lw->idx_wk, &L->idx_wk)) != MT_OK ||
        (st = load_f32(e, lw->idx_k_norm.w, &L->idx_norm_w)) != MT_OK ||
        (st = load_f32(e, lw->idx_k_norm_bias.w, &L->idx_norm_b)) != MT_OK ||
        (st = load_linear(e, &lw->idx_weights_proj, &L->idx_wproj)) != MT_OK) {
        return st;
    }
    if (!lw->is_moe) {
        return load_mlp(e, &lw->mlp, &L->mlp);
    }
    if ((st = load_linear(e, &lw->router, &L->router)) != MT_OK ||
        (st = load_mlp(e, &lw->shared, &L->shared)) != MT_OK) {
        return st;
    }
    if (lw->router_bias.w != NULL && (st = load_f32(e, lw->router_bias.w, &L->router_bias)) !=
        MT_OK) {
        return st;
    }
    L->experts = calloc((size_t)e->cfg.n_routed_experts, sizeof(*L->experts));
    if (L->experts == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the experts of layer %d", l);
    }
    for (int x = 0; x < e->cfg.n_routed_experts; x++) {
        if ((st = load_mlp(e, &lw->experts[x], &L->experts[x])) != MT_OK) {
            return st;
        }
    }
    return MT_OK;
}

mt_status_t
mt_engine_create(const struct mt_model *model, const struct mt_engine_opts *opts,
                 struct mt_engine **engine_out)
{
    struct mt_engine *e;
    const struct mt_model_config *c = &model->cfg;
    mt_status_t st;

    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the engine");
    }
    e->model = model;
    e->cfg = *c;
    e->expert_fn = mt_engine_expert_cpu;
    e->expert_ctx = e;
    if (opts != NULL) {
        e->opts = *opts;
    } else {
        mt_engine_opts_default(&e->opts);
    }
    e->n_layers = c->num_hidden_layers;
    if (c->index_head_dim & (c->index_head_dim - 1)) {
        st = mt_fail(MT_ERR_UNSUPPORTED, 0, "index_head_dim %d is not a power of two (Hadamard)",
                     c->index_head_dim);
        goto out_destroy;
    }
    e->layers = calloc((size_t)e->n_layers, sizeof(*e->layers));
    e->freqs = malloc((size_t)(c->qk_rope_head_dim / 2 + 1) * sizeof(float));
    if (e->layers == NULL || e->freqs == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the engine's layers");
        goto out_destroy;
    }

    /* RoPE and softmax constants, as HF computes them */
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

    if ((st = load_linear(e, &model->embed, &e->embed)) != MT_OK) {
        goto out_destroy;
    }
    if ((st = load_linear(e, model->head.w != NULL ? &model->head : &model->embed, &e->head)) !=
        MT_OK) {
        goto out_destroy;
    }
    if ((st = load_f32(e, model->final_norm.w, &e->final_norm)) != MT_OK) {
        goto out_destroy;
    }
    for (int l = 0; l < e->n_layers; l++) {
        if ((st = load_layer(e, l)) != MT_OK) {
            goto out_destroy;
        }
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
    if (e->layers != NULL) {
        for (int l = 0; l < e->n_layers; l++) {
            struct eng_layer *L = &e->layers[l];
            free(L->experts);
            free(L->lat);
            free(L->kpe);
            free(L->ikey);
            free(L->ikey8);
            free(L->ikscale);
        }
    }
    for (size_t i = 0; i < e->n_bufs; i++) {
        free(e->bufs[i]);
    }
    free(e->bufs);
    free(e->layers);
    free(e->freqs);
    free(e->work);
    free(e);
}

void
mt_engine_reset(struct mt_engine *e)
{
    e->pos = 0;
}

void
mt_engine_truncate(struct mt_engine *e, int64_t pos)
{
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
    return e->cfg.max_position_embeddings;
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

/* ---- cache ------------------------------------------------------------------------------- */

static mt_status_t
grow(void **p, size_t bytes)
{
    void *n = realloc(*p, bytes > 0 ? bytes : 1);
    if (n == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot grow the KV cache to %zu bytes", bytes);
    }
    *p = n;
    return MT_OK;
}

static mt_status_t
cache_reserve(struct mt_engine *e, int64_t need)
{
    const struct mt_model_config *c = &e->cfg;
    int64_t cap = e->cap > 0 ? e->cap : 64;
    mt_status_t st = MT_OK;

    if (need <= e->cap) {
        return MT_OK;
    }
    while (cap < need) {
        cap *= 2;
    }
    for (int l = 0; l < e->n_layers && st == MT_OK; l++) {
        struct eng_layer *L = &e->layers[l];
        size_t n = (size_t)cap;
        if ((st = grow((void **)&L->lat, n * c->kv_lora_rank * sizeof(float))) != MT_OK ||
            (st = grow((void **)&L->kpe, n * c->qk_rope_head_dim * sizeof(float))) != MT_OK ||
            (st = grow((void **)&L->ikey, n * c->index_head_dim * sizeof(float))) != MT_OK ||
            (st = grow((void **)&L->ikey8, n * c->index_head_dim)) != MT_OK ||
            (st = grow((void **)&L->ikscale, n * sizeof(float))) != MT_OK) {
            break;
        }
    }
    if (st == MT_OK) {
        e->cap = cap;
    }
    return st;
}

/* ---- checks ------------------------------------------------------------------------------ */

static mt_status_t
check_tokens(const struct mt_engine *e, int64_t start, const int32_t *tokens, int n)
{
    if (n <= 0 || tokens == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "empty prompt: give at least one token id");
    }
    if (start + n > e->cfg.max_position_embeddings) {
        return mt_fail(MT_ERR_INVAL, 0, "sequence of %lld tokens is longer than the model's "
                       "maximum of %d positions (max_position_embeddings)",
                       (long long)(start + n), e->cfg.max_position_embeddings);
    }
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= e->cfg.vocab_size) {
            return mt_fail(MT_ERR_INVAL, 0, "token id %d at position %lld is outside the "
                           "vocabulary [0, %d)", tokens[i], (long long)(start + i),
                           e->cfg.vocab_size);
        }
    }
    return MT_OK;
}

mt_status_t
mt_engine_check_prompt(const struct mt_engine *e, const int32_t *tokens, int n)
{
    return check_tokens(e, 0, tokens, n);
}

/* ---- one layer: attention ---------------------------------------------------------------- */

static int
cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a;
    int32_t y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Work space of one forward call, sized for n tokens and `end` cached positions. */
/*
 * The forward pass's work arrays, for n tokens ending at sequence position end. They are carved out
 * of one buffer that the engine keeps and grows (work_layout), so decoding a token allocates
 * nothing.
 */
struct eng_work {
    float *h, *x, *y;               // [n, hidden]: residual stream, normed input, sublayer output
    float *qa, *q, *kv, *attn;      // [n, q_lora], [n, H*qk], [n, kv_lora+rope], [n, H*v]
    float *qi, *ki, *wts;           // [n, IH*ID], [n, ID], [n, IH]
    float *q_lat, *q_pe, *o_lat;    // [H, kv_lora], [H, rope], [H, kv_lora]
    float *scores, *scores2;        // [end]
    int32_t *idx, *idx2;            // [end]
    uint8_t *q8;                    // [IH*ID]
    float *wq;                      // [IH]
    float *cos, *sin;               // [rope/2]
    /* MoE */
    float *logits;                  // [n, E] router logits
    int32_t *ids;                   // [n, K] chosen experts
    float *moe_wts;                 // [n, K] their weights
    float *xs, *ys;                 // [n, hidden] inputs gathered for one expert, its outputs
    int *tok;                       // [n] which token each gathered row came from
    float *tw;                      // [n] and its weight for this expert
};

/* Hand out the next `bytes` of the buffer at base (64-byte aligned); base NULL only measures. */
static void *
carve(char *base, size_t *off, size_t bytes)
{
    void *p = base != NULL ? base + *off : NULL;

    *off += (bytes + 63) & ~(size_t)63;
    return p;
}

/* Lay out w in base (or, with base NULL, only compute the size). Returns the bytes needed. */
static size_t
work_layout(const struct mt_model_config *c, size_t n, size_t end, char *base, struct eng_work *w)
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
    w->q8 = carve(base, &off, IH * ID);
    w->wq = carve(base, &off, IH * f);
    w->cos = carve(base, &off, (rope / 2 + 1) * f);
    w->sin = carve(base, &off, (rope / 2 + 1) * f);
    w->logits = carve(base, &off, n * E * f);
    w->ids = carve(base, &off, n * K * sizeof(int32_t));
    w->moe_wts = carve(base, &off, n * K * f);
    w->xs = carve(base, &off, n * D * f); /* a token picks an expert at most once: n rows */
    w->ys = carve(base, &off, n * D * f);
    w->tok = carve(base, &off, n * sizeof(int));
    w->tw = carve(base, &off, n * f);
    return off;
}

/*
 * The indexer for query t (absolute position pos): fills w->idx with the selected positions
 * (sorted ascending) and returns how many. Keys 0..pos are in the cache already.
 */
static mt_status_t
indexer_select(struct mt_engine *e, int l, int t, int64_t pos, struct eng_work *w, int *k_out)
{
    const struct mt_model_config *c = &e->cfg;
    struct eng_layer *L = &e->layers[l];
    int IH = c->index_n_heads;
    int ID = c->index_head_dim;
    int64_t n_keys = pos + 1;
    int64_t k = MT_MIN((int64_t)c->index_topk, n_keys);
    const float *qi = w->qi + (int64_t)t * IH * ID;
    const float *wts = w->wts + (int64_t)t * IH;
    float iscale = (float)(1.0 / sqrt((double)ID));
    mt_status_t st;

    if (e->opts.attention == MT_ATTN_DENSE || k == n_keys) {
        /* every position is selected: no scoring needed (and none can differ) */
        for (int64_t s = 0; s < n_keys; s++) {
            w->idx[s] = (int32_t)s;
        }
        *k_out = (int)n_keys;
        return MT_OK;
    }
    bool fp8 = e->opts.indexer == MT_INDEXER_FP8;
    if (!fp8 || e->opts.compare_indexer) {
        mt_cpu_index_scores(qi, wts, IH, ID, L->ikey, n_keys, iscale, fp8 ? w->scores2 : w->scores);
    }
    if (fp8) {
        /* DeepSeek: Hadamard, act_quant per head, weights * q_scale * ID^-0.5, fp8 scores */
        float tmp[ID];
        for (int h = 0; h < IH; h++) {
            memcpy(tmp, qi + (int64_t)h * ID, sizeof(tmp));
            mt_cpu_hadamard(tmp, ID);
            float qs = mt_cpu_act_quant(tmp, ID, true, w->q8 + (int64_t)h * ID);
            w->wq[h] = wts[h] * qs * iscale;
        }
        mt_cpu_index_scores_fp8(w->q8, w->wq, IH, ID, L->ikey8, L->ikscale, n_keys, w->scores);
    }
    if ((st = mt_cpu_topk(w->scores, n_keys, k, w->idx)) != MT_OK) {
        return st;
    }
    if (fp8 && e->opts.compare_indexer) {
        if ((st = mt_cpu_topk(w->scores2, n_keys, k, w->idx2)) != MT_OK) {
            return st;
        }
        qsort(w->idx2, (size_t)k, sizeof(int32_t), cmp_i32);
        qsort(w->idx, (size_t)k, sizeof(int32_t), cmp_i32);
        int64_t common = 0;
        for (int64_t i = 0, j = 0; i < k && j < k;) {
            if (w->idx[i] == w->idx2[j]) {
                common++, i++, j++;
            } else if (w->idx[i] < w->idx2[j]) {
                i++;
            } else {
                j++;
            }
        }
        e->overlap_sum += (double)common;
        e->overlap_k += (double)k;
        e->overlap_n++;
    }
    qsort(w->idx, (size_t)k, sizeof(int32_t), cmp_i32);
    *k_out = (int)k;
    return MT_OK;
}

/* MLA + DSA for n tokens at positions start..start+n-1: out[n, hidden] (spec 2.3-2.6). */
static mt_status_t
attention(struct mt_engine *e, int l, const float *x, int n, int64_t start, struct eng_work *w,
          float *out)
{
    const struct mt_model_config *c = &e->cfg;
    struct eng_layer *L = &e->layers[l];
    int H = c->num_attention_heads;
    int nope = c->qk_nope_head_dim;
    int rope = c->qk_rope_head_dim;
    int qk = nope + rope;
    int vd = c->v_head_dim;
    int kvl = c->kv_lora_rank;
    int ql = c->q_lora_rank;
    int IH = c->index_n_heads;
    int ID = c->index_head_dim;
    int half = rope / 2;
    bool sparse = e->opts.attention == MT_ATTN_SPARSE;
    bool fp8 = e->opts.indexer == MT_INDEXER_FP8;
    mt_status_t st;

    /* projections: qr = q_a_norm(q_a x) (shared with the indexer), q = q_b qr, kv = kv_a x */
    if ((st = mt_cpu_linear(&L->q_a, x, n, w->qa)) != MT_OK) {
        return st;
    }
    for (int t = 0; t < n; t++) {
        mt_cpu_rmsnorm(w->qa + (int64_t)t * ql, L->q_a_norm, ql, 1e-6f, w->qa + (int64_t)t * ql);
    }
    if ((st = mt_cpu_linear(&L->q_b, w->qa, n, w->q)) != MT_OK ||
        (st = mt_cpu_linear(&L->kv_a, x, n, w->kv)) != MT_OK) {
        return st;
    }
    if (sparse) {
        if ((st = mt_cpu_linear(&L->idx_wq_b, w->qa, n, w->qi)) != MT_OK ||
            (st = mt_cpu_linear(&L->idx_wk, x, n, w->ki)) != MT_OK ||
            (st = mt_cpu_linear(&L->idx_wproj, x, n, w->wts)) != MT_OK) {
            return st;
        }
    }

    /* per token: RoPE, cache writes (latent, k_pe, index key) */
    for (int t = 0; t < n; t++) {
        int64_t pos = start + t;
        float *kv = w->kv + (int64_t)t * (kvl + rope);
        mt_cpu_rope_cossin(e->freqs, half, pos, w->cos, w->sin);
        for (int i = 0; i < half; i++) {
            w->cos[i] *= e->rope_att;
            w->sin[i] *= e->rope_att;
        }
        mt_cpu_rmsnorm(kv, L->kv_a_norm, kvl, 1e-6f, L->lat + pos * kvl);
        memcpy(L->kpe + pos * rope, kv + kvl, (size_t)rope * sizeof(float));
        mt_cpu_rope_interleaved(L->kpe + pos * rope, w->cos, w->sin, half);
        for (int h = 0; h < H; h++) {
            mt_cpu_rope_interleaved(w->q + ((int64_t)t * H + h) * qk + nope, w->cos, w->sin, half);
        }
        if (!sparse) {
            continue;
        }
        /* indexer: k = LayerNorm(wk x), rotate-half RoPE on the first `rope` dims of q and k */
        float *ki = L->ikey + pos * ID;
        mt_cpu_layernorm(w->ki + (int64_t)t * ID, L->idx_norm_w, L->idx_norm_b, ID, 1e-6f, ki);
        mt_cpu_rope_half(ki, w->cos, w->sin, half);
        for (int h = 0; h < IH; h++) {
            mt_cpu_rope_half(w->qi + ((int64_t)t * IH + h) * ID, w->cos, w->sin, half);
        }
        float *wt = w->wts + (int64_t)t * IH;
        float ws = (float)(1.0 / sqrt((double)IH));
        for (int h = 0; h < IH; h++) {
            wt[h] *= ws;
        }
        if (fp8 || e->opts.compare_indexer) {
            float tmp[ID];
            memcpy(tmp, ki, sizeof(tmp));
            mt_cpu_hadamard(tmp, ID);
            L->ikscale[pos] = mt_cpu_act_quant(tmp, ID, true, L->ikey8 + pos * ID);
        }
    }

    /* per token: select positions, absorbed attention, W_UV */
    for (int t = 0; t < n; t++) {
        int64_t pos = start + t;
        int k;
        if ((st = indexer_select(e, l, t, pos, w, &k)) != MT_OK) {
            return st;
        }
        if (e->hook != NULL) {
            e->hook(e->hook_ctx, l, pos, w->idx, k);
        }
        for (int h = 0; h < H; h++) {
            const float *qh = w->q + ((int64_t)t * H + h) * qk;
            float *qlat = w->q_lat + (int64_t)h * kvl;
            /* q_lat[c] = sum_d q_nope[d] W_UK[h][d][c] */
            memset(qlat, 0, (size_t)kvl * sizeof(float));
            for (int d = 0; d < nope; d++) {
                const float *row = L->kv_b + ((int64_t)h * (nope + vd) + d) * kvl;
                float qd = qh[d];
                for (int i = 0; i < kvl; i++) {
                    qlat[i] += qd * row[i];
                }
            }
            memcpy(w->q_pe + (int64_t)h * rope, qh + nope, (size_t)rope * sizeof(float));
        }
        if ((st = mt_cpu_mla_absorbed(w->q_lat, w->q_pe, H, kvl, rope, L->lat, L->kpe, w->idx, k,
                                      e->softmax_scale, w->o_lat)) != MT_OK) {
            return st;
        }
        for (int h = 0; h < H; h++) {
            const float *ol = w->o_lat + (int64_t)h * kvl;
            float *o = w->attn + ((int64_t)t * H + h) * vd;
            for (int j = 0; j < vd; j++) {
                const float *row = L->kv_b + ((int64_t)h * (nope + vd) + nope + j) * kvl;
                double a = 0.0;
                for (int i = 0; i < kvl; i++) {
                    a += (double)row[i] * ol[i];
                }
                o[j] = (float)a;
            }
        }
    }
    return mt_cpu_linear(&L->o, w->attn, n, out);
}

/* ---- one layer: FFN ---------------------------------------------------------------------- */

mt_status_t
mt_engine_expert_cpu(void *engine, int layer, int expert, const float *x, int m, float *y)
{
    struct mt_engine *e = engine;

    if (layer < 0 || layer >= e->n_layers || !e->layers[layer].is_moe || expert < 0 ||
        expert >= e->cfg.n_routed_experts) {
        return mt_fail(MT_ERR_INVAL, 0, "no routed expert %d in layer %d", expert, layer);
    }
    const struct eng_mlp *ex = &e->layers[layer].experts[expert];
    return mt_cpu_swiglu(&ex->gate, &ex->up, &ex->down, x, m, y);
}

void
mt_engine_set_expert_fn(struct mt_engine *e, mt_engine_expert_fn fn, void *ctx)
{
    e->expert_fn = fn != NULL ? fn : mt_engine_expert_cpu;
    e->expert_ctx = fn != NULL ? ctx : e;
}

/*
 * THE expert entry point: routed expert `x_id` of layer l on m tokens, x [m, hidden] ->
 * y [m, hidden]. A placement plan routes this call (GPU, CPU team, NVMe stream) through
 * mt_engine_set_expert_fn.
 */
static mt_status_t
engine_expert_run(struct mt_engine *e, int l, int x_id, const float *x, int m, float *y)
{
    return e->expert_fn(e->expert_ctx, l, x_id, x, m, y);
}

static mt_status_t
moe(struct mt_engine *e, int l, const float *x, int n, struct eng_work *w, float *out)
{
    const struct mt_model_config *c = &e->cfg;
    struct eng_layer *L = &e->layers[l];
    int E = c->n_routed_experts;
    int K = c->num_experts_per_tok;
    int D = c->hidden_size;
    struct mt_cpu_router_params rp = {
        .n_experts = E, .n_group = c->n_group, .topk_group = c->topk_group, .k = K,
        .norm_topk_prob = c->norm_topk_prob,
        .routed_scaling_factor = (float)c->routed_scaling_factor,
    };
    float *logits = w->logits;
    int32_t *ids = w->ids;
    float *wts = w->moe_wts;
    float *xs = w->xs;
    float *ys = w->ys;
    int *tok = w->tok;
    float *tw = w->tw;
    mt_status_t st;

    /* router in fp32 (bf16 weight upcast), then the noaux_tc selection per token */
    if ((st = mt_cpu_linear(&L->router, x, n, logits)) != MT_OK) {
        return st;
    }
    for (int t = 0; t < n; t++) {
        mt_cpu_router(logits + (int64_t)t * E, L->router_bias, &rp, ids + (int64_t)t * K,
                      wts + (int64_t)t * K);
    }
    /* TRACE POINT: the router's expert ids of this layer, ids[t * K + j], are known here */
    if (e->opts.trace != NULL) {
        if ((st = mt_trace_record_batch(e->opts.trace, l, (const int *)ids, n, K)) != MT_OK) {
            return st;
        }
    }
    /* shared expert(s) first, then each routed expert on the tokens that chose it */
    if ((st = mt_cpu_swiglu(&L->shared.gate, &L->shared.up, &L->shared.down, x, n, out)) != MT_OK) {
        return st;
    }
    for (int x_id = 0; x_id < E; x_id++) {
        int m = 0;
        for (int t = 0; t < n; t++) {
            for (int j = 0; j < K; j++) {
                if (ids[(int64_t)t * K + j] == x_id) {
                    tok[m] = t;
                    tw[m] = wts[(int64_t)t * K + j];
                    memcpy(xs + (int64_t)m * D, x + (int64_t)t * D, (size_t)D * sizeof(float));
                    m++;
                }
            }
        }
        if (m == 0) {
            continue;
        }
        if ((st = engine_expert_run(e, l, x_id, xs, m, ys)) != MT_OK) {
            return st;
        }
        for (int i = 0; i < m; i++) {
            float *o = out + (int64_t)tok[i] * D;
            const float *yv = ys + (int64_t)i * D;
            for (int d = 0; d < D; d++) {
                o[d] += tw[i] * yv[d];
            }
        }
    }
    return MT_OK;
}

/* ---- the forward pass -------------------------------------------------------------------- */

mt_status_t
mt_engine_forward(struct mt_engine *e, const int32_t *tokens, int n, bool all_logits,
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

    if ((st = check_tokens(e, start, tokens, n)) != MT_OK) {
        return st;
    }
    end = start + n;
    if ((st = cache_reserve(e, end)) != MT_OK) {
        return st;
    }
    need = work_layout(c, (size_t)n, (size_t)end, NULL, &w);
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
    work_layout(c, (size_t)n, (size_t)end, e->work, &w);
    h = w.h;
    x = w.x;
    y = w.y;
    size_t nn = (size_t)n;

    for (int t = 0; t < n; t++) {
        mt_cpu_weight_row(&e->embed, tokens[t], h + (int64_t)t * D);
    }
    for (int l = 0; l < e->n_layers; l++) {
        struct eng_layer *L = &e->layers[l];
        for (int t = 0; t < n; t++) {
            mt_cpu_rmsnorm(h + (int64_t)t * D, L->input_norm, D, (float)c->rms_norm_eps,
                           x + (int64_t)t * D);
        }
        if ((st = attention(e, l, x, n, start, &w, y)) != MT_OK) {
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
            st = moe(e, l, x, n, &w, y);
        } else {
            st = mt_cpu_swiglu(&L->mlp.gate, &L->mlp.up, &L->mlp.down, x, n, y);
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
    if ((st = mt_cpu_linear(&e->head, x, n - first, logits_out)) != MT_OK) {
        return st;
    }
    e->pos = end;
    return MT_OK;
}
