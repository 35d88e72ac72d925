/* SPDX-License-Identifier: MIT */
/*
 * kv_cache.c - the host KV cache (fp32 or bf16 latents) and the cache sizes of every layout.
 *
 * DeepSeek's FP8 latent layout is kept here as the values it holds, not its bytes: each latent
 * goes through e4m3 with one power-of-two scale a 128 values (mt_cpu_act_quant, ue8m0) and is
 * stored in bf16, which holds those values exactly. So the CPU reference computes what the GPU
 * engine's FP8 cache (kernels/latent_fp8.cu) means, as HF's demo simulates it.
 */
#include <config.h>

#include "runtime/engine/kv_cache.h"

#include "cpu/convert.h"
#include "cpu/ref_ops.h"

#include <stdlib.h>
#include <string.h>

uint64_t
mt_kv_bytes_per_token_layer(const struct mt_model_config *cfg, const struct mt_kv_layout *layout)
{
    uint64_t kvl = (uint64_t)cfg->kv_lora_rank;
    uint64_t rope = (uint64_t)cfg->qk_rope_head_dim;
    uint64_t id = (uint64_t)cfg->index_head_dim;
    uint64_t b;

    switch (layout->latent) {
    case MT_DTYPE_F8_E4M3:
        /* e4m3 latent, one fp32 scale per 128 values, bf16 rope key */
        b = kvl + 4 * MT_CEIL_DIV(kvl, 128) + 2 * rope;
        break;
    case MT_DTYPE_BF16:
        b = 2 * (kvl + rope);
        break;
    default:
        b = 4 * (kvl + rope);
        break;
    }
    if (layout->index_exact) {
        b += 4 * id;
    }
    if (layout->index_fp8) {
        b += id + 4;
    }
    return b;
}

mt_status_t
mt_kv_cache_init(struct mt_kv_cache *c, const struct mt_model_config *cfg,
                 const struct mt_kv_layout *layout)
{
    memset(c, 0, sizeof(*c));
    if (layout->latent != MT_DTYPE_F32 && layout->latent != MT_DTYPE_BF16 &&
        layout->latent != MT_DTYPE_F8_E4M3) {
        return mt_fail(MT_ERR_UNSUPPORTED, 0,
                       "the host KV cache keeps latents in F32, BF16 or "
                       "FP8, not %s",
                       mt_dtype_name(layout->latent));
    }
    c->layout = *layout;
    c->n_layers = cfg->num_hidden_layers;
    c->kv_lora = cfg->kv_lora_rank;
    c->rope = cfg->qk_rope_head_dim;
    c->index_dim = cfg->index_head_dim;
    c->max_cap = cfg->max_position_embeddings;
    c->layer = calloc((size_t)c->n_layers, sizeof(*c->layer));
    if (c->layer == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the KV cache's %d layers", c->n_layers);
    }
    return MT_OK;
}

void
mt_kv_cache_fini(struct mt_kv_cache *c)
{
    if (c->layer != NULL) {
        for (int l = 0; l < c->n_layers; l++) {
            free(c->layer[l].lat);
            free(c->layer[l].kpe);
            free(c->layer[l].ikey);
            free(c->layer[l].ikey8);
            free(c->layer[l].ikscale);
        }
    }
    free(c->layer);
    memset(c, 0, sizeof(*c));
}

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

mt_status_t
mt_kv_cache_reserve(struct mt_kv_cache *c, int64_t need)
{
    int64_t cap = c->cap > 0 ? c->cap : 64;
    size_t lat_size = c->layout.latent == MT_DTYPE_F32 ? 4 : 2; /* FP8: its values in bf16 */
    mt_status_t st = MT_OK;

    if (need <= c->cap) {
        return MT_OK;
    }
    while (cap < need) {
        cap *= 2;
    }
    if (cap > c->max_cap && need <= c->max_cap) {
        cap = c->max_cap; /* 163,840 positions, not 262,144: 17 GB less cache for V3.2 */
    }
    for (int l = 0; l < c->n_layers && st == MT_OK; l++) {
        struct mt_kv_layer *L = &c->layer[l];
        size_t n = (size_t)cap;
        st = grow(&L->lat, n * (size_t)c->kv_lora * lat_size);
        if (st == MT_OK) {
            st = grow((void **)&L->kpe, n * (size_t)c->rope * sizeof(float));
        }
        if (st == MT_OK && c->layout.index_exact) {
            st = grow((void **)&L->ikey, n * (size_t)c->index_dim * sizeof(float));
        }
        if (st == MT_OK && c->layout.index_fp8) {
            st = grow((void **)&L->ikey8, n * (size_t)c->index_dim);
            if (st == MT_OK) {
                st = grow((void **)&L->ikscale, n * sizeof(float));
            }
        }
    }
    if (st == MT_OK) {
        c->cap = cap;
    }
    return st;
}

void
mt_kv_cache_put_latent(struct mt_kv_cache *c, int layer, int64_t pos, const float *lat)
{
    size_t kvl = (size_t)c->kv_lora;

    if (c->layout.latent == MT_DTYPE_F8_E4M3) {
        mt_bf16_t *dst = (mt_bf16_t *)c->layer[layer].lat + (size_t)pos * kvl;
        uint8_t q[128];
        for (size_t g = 0; g < kvl; g += 128) {
            int n = (int)MT_MIN((size_t)128, kvl - g);
            float s = mt_cpu_act_quant(lat + g, n, true, q);
            for (int i = 0; i < n; i++) { /* e4m3 times a power of two: exact in bf16 */
                dst[g + i] = mt_f32_to_bf16(mt_fp8_to_f32((mt_fp8_t)q[i]) * s);
            }
        }
    } else if (c->layout.latent == MT_DTYPE_BF16) {
        mt_bf16_t *dst = (mt_bf16_t *)c->layer[layer].lat + (size_t)pos * kvl;
        for (size_t i = 0; i < kvl; i++) {
            dst[i] = mt_f32_to_bf16(lat[i]);
        }
    } else {
        memcpy((float *)c->layer[layer].lat + (size_t)pos * kvl, lat, kvl * sizeof(float));
    }
}

void
mt_kv_cache_rows(const struct mt_kv_cache *c, int layer, const int32_t *idx, int n,
                 float *lat_scratch, float *kpe_scratch, int32_t *iota_scratch,
                 const float **lat_out, const float **kpe_out, const int32_t **idx_out)
{
    const struct mt_kv_layer *L = &c->layer[layer];
    size_t kvl = (size_t)c->kv_lora;
    size_t rope = (size_t)c->rope;

    if (c->layout.latent == MT_DTYPE_F32) {
        *lat_out = L->lat;
        *kpe_out = L->kpe;
        *idx_out = idx;
        return;
    }
    for (int j = 0; j < n; j++) {
        mt_bf16_to_f32_n((const mt_bf16_t *)L->lat + (size_t)idx[j] * kvl,
                         lat_scratch + (size_t)j * kvl, kvl);
        memcpy(kpe_scratch + (size_t)j * rope, L->kpe + (size_t)idx[j] * rope,
               rope * sizeof(float));
        iota_scratch[j] = j;
    }
    *lat_out = lat_scratch;
    *kpe_out = kpe_scratch;
    *idx_out = iota_scratch;
}
