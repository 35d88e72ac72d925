/* SPDX-License-Identifier: MIT */
/*
 * attention.c - one layer's MLA with DeepSeek Sparse Attention, on the CPU reference ops.
 *
 * The one idea: each query attends to the positions chosen for it (all s <= t, or the lightning
 * indexer's top-k), sorted ascending, so a selection of "everything" is bit-identical to dense
 * attention. Attention runs in absorbed form: the query is taken into the 512-wide latent space
 * through kv_b's key half, attends over cached latents + rope keys, and comes back through kv_b's
 * value half. Numerics follow HF transformers in float32 (tests/reference/HF_NOTES.md): q_a and
 * kv_a layernorm eps fixed at 1e-6, YaRN attention factor on cos/sin. The FP8 indexer mode follows
 * DeepSeek's inference code instead (HF has no FP8 indexer).
 */
#include <config.h>

#include "runtime/engine/engine_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int
cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a;
    int32_t y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/*
 * The indexer for query t (absolute position pos): fills w->idx with the selected positions
 * (sorted ascending) and returns how many. Keys 0..pos are in the cache already.
 */
static mt_status_t
indexer_select(struct mt_engine *e, int l, int t, int64_t pos, struct eng_work *w, int *k_out)
{
    const struct mt_model_config *c = &e->cfg;
    const struct mt_kv_layer *KV = &e->kv.layer[l];
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
        mt_cpu_index_scores(qi, wts, IH, ID, KV->ikey, n_keys, iscale,
                            fp8 ? w->scores2 : w->scores);
    }
    if (fp8) {
        /* DeepSeek: Hadamard, act_quant per head, weights * q_scale * ID^-0.5, fp8 scores */
        for (int h = 0; h < IH; h++) {
            memcpy(w->had, qi + (int64_t)h * ID, (size_t)ID * sizeof(float));
            mt_cpu_hadamard(w->had, ID);
            float qs = mt_cpu_act_quant(w->had, ID, true, w->q8 + (int64_t)h * ID);
            w->wq[h] = wts[h] * qs * iscale;
        }
        mt_cpu_index_scores_fp8(w->q8, w->wq, IH, ID, KV->ikey8, KV->ikscale, n_keys, w->scores);
    }
    /* finite queries, keys and weights (eng_attention checked them) can still overflow here */
    if ((st = eng_check_finite(w->scores, (size_t)n_keys, l, "indexer")) != MT_OK ||
        (fp8 && e->opts.compare_indexer &&
         (st = eng_check_finite(w->scores2, (size_t)n_keys, l, "indexer")) != MT_OK)) {
        return st;
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
mt_status_t
eng_attention(struct mt_engine *e, int l, const float *x, int n, int64_t start, struct eng_work *w,
          float *out)
{
    const struct mt_model_config *c = &e->cfg;
    struct eng_layer *L = &e->layers[l];
    struct mt_kv_layer *KV = &e->kv.layer[l];
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
        mt_cpu_rmsnorm(kv, L->kv_a_norm, kvl, 1e-6f, kv);
        mt_kv_cache_put_latent(&e->kv, l, pos, kv);
        memcpy(KV->kpe + pos * rope, kv + kvl, (size_t)rope * sizeof(float));
        mt_cpu_rope_interleaved(KV->kpe + pos * rope, w->cos, w->sin, half);
        for (int h = 0; h < H; h++) {
            mt_cpu_rope_interleaved(w->q + ((int64_t)t * H + h) * qk + nope, w->cos, w->sin, half);
        }
        if (!sparse) {
            continue;
        }
        /* indexer: k = LayerNorm(wk x), rotate-half RoPE on the first `rope` dims of q and k */
        float *ki = w->ki + (int64_t)t * ID;
        mt_cpu_layernorm(ki, L->idx_norm_w, L->idx_norm_b, ID, 1e-6f, ki);
        mt_cpu_rope_half(ki, w->cos, w->sin, half);
        if (KV->ikey != NULL) {
            memcpy(KV->ikey + pos * ID, ki, (size_t)ID * sizeof(float));
        }
        for (int h = 0; h < IH; h++) {
            mt_cpu_rope_half(w->qi + ((int64_t)t * IH + h) * ID, w->cos, w->sin, half);
        }
        float *wt = w->wts + (int64_t)t * IH;
        float ws = (float)(1.0 / sqrt((double)IH));
        for (int h = 0; h < IH; h++) {
            wt[h] *= ws;
        }
        if (KV->ikey8 != NULL) {
            memcpy(w->had, ki, (size_t)ID * sizeof(float));
            mt_cpu_hadamard(w->had, ID);
            KV->ikscale[pos] = mt_cpu_act_quant(w->had, ID, true, KV->ikey8 + pos * ID);
        }
    }

    /*
     * The indexer's queries, keys and head weights are checked as a sublayer's output is: a NaN
     * from a corrupt indexer weight would fail nothing later (its ReLU turns a NaN dot product
     * into 0, top-k sorts a NaN score last, attention over the positions picked stays finite):
     * it would only change the selection, silently.
     */
    if (sparse && ((st = eng_check_finite(w->qi, (size_t)n * IH * ID, l, "indexer")) != MT_OK ||
                   (st = eng_check_finite(w->ki, (size_t)n * ID, l, "indexer")) != MT_OK ||
                   (st = eng_check_finite(w->wts, (size_t)n * IH, l, "indexer")) != MT_OK)) {
        return st;
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
        const float *lat;
        const float *kpe;
        const int32_t *sel;
        mt_kv_cache_rows(&e->kv, l, w->idx, k, w->lat_g, w->kpe_g, w->iota, &lat, &kpe, &sel);
        if ((st = mt_cpu_mla_absorbed(w->q_lat, w->q_pe, H, kvl, rope, lat, kpe, sel, k,
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

