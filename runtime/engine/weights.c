/* SPDX-License-Identifier: MIT */
/*
 * weights.c - reading the always-on weights: everything a token uses in every layer (attention,
 * indexer, norms, the dense and shared MLPs, the router) plus the embedding, final norm and head.
 *
 * The one idea: weights stay in the checkpoint's dtype (FP8 e4m3 with fp32 block scales, BF16,
 * ...) and the ops dequantize as they read; only norms and biases become fp32 arrays, and kv_b is
 * dequantized once because absorbed attention reads it per head. Routed experts are not here:
 * the expert provider hands them out when a token needs them.
 */
#include <config.h>

#include "runtime/engine/engine_impl.h"

#include "cpu/convert.h"

#include <stdlib.h>
#include <string.h>

/* ---- reading tensors
 * ----------------------------------------------------------------------------- */

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
        st = mt_fp8_scales_check(s, want, mw->scale->name);
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
    if (lw->router_bias.w != NULL &&
        (st = load_f32(e, lw->router_bias.w, &L->router_bias)) == MT_OK) {
        st = eng_check_tensor_finite(lw->router_bias.w->name, L->router_bias,
                                     (size_t)lw->router_bias.w->nelem);
    }
    return st;
}

mt_status_t
eng_weights_load(struct mt_engine *e)
{
    const struct mt_model *model = e->model;
    mt_status_t st;

    if ((st = load_linear(e, &model->embed, &e->embed)) != MT_OK) {
        return st;
    }
    if ((st = load_linear(e, model->head.w != NULL ? &model->head : &model->embed, &e->head)) !=
        MT_OK) {
        return st;
    }
    if ((st = load_f32(e, model->final_norm.w, &e->final_norm)) != MT_OK) {
        return st;
    }
    for (int l = 0; l < e->n_layers; l++) {
        if ((st = load_layer(e, l)) != MT_OK) {
            return st;
        }
    }
    return MT_OK;
}

void
eng_weights_free(struct mt_engine *e)
{
    for (size_t i = 0; i < e->n_bufs; i++) {
        free(e->bufs[i]);
    }
    free(e->bufs);
    e->bufs = NULL;
    e->n_bufs = 0;
}
