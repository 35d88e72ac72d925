/* SPDX-License-Identifier: MIT */
/*
 * kv_cache.h - what a sequence leaves behind per layer: MLA's latent and roped k_pe, and the
 * lightning indexer's keys.
 *
 * The one idea: MLA caches one 512-wide latent and one 64-wide rope key per token and layer, not
 * per head, so the cache of V3.2 is small (the layout decides how small: fp32 for the reference,
 * bf16 for the fast paths, DeepSeek's 656-byte FP8 layout for long contexts on small cards); the
 * indexer keeps one 128-wide key per token and layer beside it (fp32 exact, or FP8 with a per-token
 * scale). Every entry depends only on the tokens before it, so dropping the tail (truncate) leaves
 * a valid cache of the prefix.
 *
 * The host cache (this file) stores the latent in fp32 or bf16; the sizes functions cover every
 * layout, for the planner's and inspect's "longest context that fits".
 */
#ifndef MT_KV_CACHE_H
#define MT_KV_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/base/dtype.h"
#include "runtime/base/status.h"
#include "runtime/model/config.h"

struct mt_kv_layout {
    /*
     * Latent + k_pe rows: F32 (the reference), BF16 (fast-path default), or F8_E4M3 (DeepSeek's
     * layout: 512 e4m3 + 4 fp32 scales + 64 bf16 = 656 bytes a token and layer).
     */
    enum mt_dtype latent;
    bool index_exact; /* fp32 index keys (the exact indexer mode) */
    bool index_fp8;   /* e4m3 index keys after the Hadamard + one fp32 scale (DeepSeek's mode) */
};

/* Bytes of cache one token takes in one layer under layout. */
uint64_t mt_kv_bytes_per_token_layer(const struct mt_model_config *cfg,
                                     const struct mt_kv_layout *layout);

/* One layer's rows; pointers owned by the cache, valid until the next reserve. */
struct mt_kv_layer {
    void *lat;        // [cap, kv_lora] in layout.latent (F32 or BF16)
    float *kpe;       // [cap, rope]
    float *ikey;      // [cap, index_head_dim]  exact index keys, or NULL
    uint8_t *ikey8;   // [cap, index_head_dim]  FP8 index keys after the Hadamard, or NULL
    float *ikscale;   // [cap]                  their scales, or NULL
};

struct mt_kv_cache {
    struct mt_kv_layout layout;
    int n_layers;
    int kv_lora;
    int rope;
    int index_dim;
    int64_t cap;               /* positions each layer has room for */
    int64_t max_cap;           /* max_position_embeddings: doubling stops there */
    struct mt_kv_layer *layer; /* owned, [n_layers] */
};

/*
 * An empty cache for cfg (nothing allocated until reserve). The host cache holds F32 or BF16
 * latents: MT_ERR_UNSUPPORTED for another layout, MT_ERR_NOMEM.
 */
mt_status_t mt_kv_cache_init(struct mt_kv_cache *cache, const struct mt_model_config *cfg,
                             const struct mt_kv_layout *layout);
void mt_kv_cache_fini(struct mt_kv_cache *cache);

/*
 * Room for at least `need` positions (grows by doubling, keeping the rows, but never past the
 * model's max_position_embeddings when need is within it). MT_ERR_NOMEM.
 */
mt_status_t mt_kv_cache_reserve(struct mt_kv_cache *cache, int64_t need);

/* Store a normalized latent row of position pos (converted to the layout's dtype; FP8: the
 * values its e4m3 bytes and scales hold, in bf16). */
void mt_kv_cache_put_latent(struct mt_kv_cache *cache, int layer, int64_t pos, const float *lat);

/*
 * fp32 views of the latent and k_pe rows of positions idx[0..n), for attention. An fp32 cache
 * gives its own arrays and idx itself; a bf16 cache converts the rows into lat_scratch
 * [n, kv_lora] and kpe_scratch [n, rope] and gives *idx_out = iota_scratch = 0..n-1 (an FP8
 * one likewise: its values are kept in bf16).
 */
void mt_kv_cache_rows(const struct mt_kv_cache *cache, int layer, const int32_t *idx, int n,
                      float *lat_scratch, float *kpe_scratch, int32_t *iota_scratch,
                      const float **lat_out, const float **kpe_out, const int32_t **idx_out);

#endif /* MT_KV_CACHE_H */
