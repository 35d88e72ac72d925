/* SPDX-License-Identifier: MIT */
/*
 * model.h - the tensor inventory of DeepSeek-V3.2, its size model, and the registry that checks a
 * checkpoint against it.
 *
 * The one idea: a config determines every tensor (name, role, shape, storage kind) of spec section
 * 3.2. The same inventory drives three things: `inspect` (it sums sizes per role, so the full
 * 671B model can be sized from config.json alone), `synth` (it writes exactly these tensors) and
 * loading (every expected tensor must exist with the right shape and an allowed dtype).
 */
#ifndef MT_MODEL_H
#define MT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/model/config.h"
#include "runtime/model/safetensors.h"
#include "runtime/base/status.h"

/* What a tensor is for; inspect and the planner account bytes per role. */
enum mt_tensor_role {
    MT_ROLE_EMBED,          /* model.embed_tokens */
    MT_ROLE_HEAD,           /* lm_head */
    MT_ROLE_NORM,           /* input/post-attention layernorms, final norm */
    MT_ROLE_ATTN,           /* MLA projections and their norms */
    MT_ROLE_INDEXER,        /* lightning indexer: wq_b, wk, k_norm, weights_proj */
    MT_ROLE_DENSE_MLP,      /* SwiGLU of the first_k_dense_replace layers */
    MT_ROLE_SHARED_EXPERT,  /* shared experts of MoE layers */
    MT_ROLE_ROUTER,         /* gate weight and e_score_correction_bias */
    MT_ROLE_ROUTED_EXPERT,  /* the 256 routed experts per MoE layer */
    MT_ROLE_MTP,            /* MTP-only extras of layer num_hidden_layers (eh_proj, enorm, ...) */
    MT_ROLE_COUNT
};

/* How a tensor is stored, which decides the dtypes a checkpoint may use for it. */
enum mt_tensor_kind {
    MT_KIND_LINEAR, /* projection [out, in]: F8_E4M3 + weight_scale_inv (FP8), or BF16/F16/F32 */
    MT_KIND_SCALE,  /* F32 [ceil(out/128), ceil(in/128)] weight_scale_inv of the LINEAR before it */
    MT_KIND_VECTOR, /* norm weights, biases: F32 (V3.2), BF16 or F16 */
    MT_KIND_DENSE,  /* never quantized (embeddings, lm_head, router, weights_proj): BF16/F32/F16 */
};

struct mt_tensor_spec {
    char name[112];
    enum mt_tensor_role role;
    enum mt_tensor_kind kind;
    int layer;        /* -1 for embed, head, final norm */
    int expert;       /* routed expert index, -1 otherwise */
    int ndim;         /* 1 or 2 */
    int64_t shape[2];
};

const char *mt_tensor_role_name(enum mt_tensor_role role);

/*
 * Every tensor of a checkpoint for cfg, in the order the official checkpoint lists them per layer.
 * fp8: whether linears are FP8 with scales (each LINEAR is then followed by its SCALE).
 * with_mtp: include the num_nextn_predict_layers MTP layer(s) after the main layers.
 * The caller frees *specs_out with free().
 */
mt_status_t mt_inventory_build(const struct mt_model_config *cfg, bool fp8, bool with_mtp,
                               struct mt_tensor_spec **specs_out, size_t *n_out);

/* Sizes, for inspect and the planner. Bytes assume the checkpoint's storage (see fp8 above). */
struct mt_model_sizes {
    uint64_t params[MT_ROLE_COUNT];   /* elements of weights (scales not counted) */
    uint64_t bytes[MT_ROLE_COUNT];    /* bytes incl. FP8 scales, main model only */
    uint64_t mtp_bytes;               /* all bytes of the MTP layer(s) */
    uint64_t mtp_params;              /* all weight elements of the MTP layer(s), its decoder
                                         layer included (scales not counted); params[] and
                                         bytes[] hold the main model only, so MT_ROLE_MTP's
                                         entries there stay 0: these are its figures */
    uint64_t routed_expert_bytes;     /* one routed expert (gate, up, down + scales) */
    uint64_t routed_expert_slot_bytes; /* the same as a GPU engine's expert slot holds it: each
                                          of its six tensors rounded up to 256 bytes */
    uint64_t routed_bytes;            /* all routed experts of the main model */
    uint64_t other_bytes;             /* main model bytes that are not routed experts */
    uint64_t gpu_other_bytes;         /* of those, what the GPU engine holds on the device: all
                                         but the embedding table, which stays in host memory (a
                                         token reads one row), unless lm_head is that table */
    uint64_t token_bytes_always;      /* weights read per decoded token outside routed experts */
    uint64_t token_bytes_routed;      /* num_experts_per_tok experts in every MoE layer */
    uint64_t kv_bytes_per_token;      /* latent + k_pe (bf16), indexer key + scale; all layers */
    int n_moe_layers;
};

/*
 * Compute sizes for cfg. fp8 as above; non-FP8 LINEAR and DENSE tensors take 2 bytes (bf16)
 * unless cfg->torch_dtype is float32; VECTOR tensors 4 bytes (F32) in FP8 checkpoints.
 */
mt_status_t mt_model_sizes_compute(const struct mt_model_config *cfg, bool fp8,
                                   struct mt_model_sizes *sizes_out);

/* A weight in a checkpoint: the tensor and, for FP8 linears, its block scales. */
struct mt_weight {
    const struct mt_st_tensor *w;     /* borrowed from the model's safetensors set */
    const struct mt_st_tensor *scale; /* NULL unless w is F8_E4M3 */
};

/* One routed or shared expert: SwiGLU gate, up, down. */
struct mt_expert_weights {
    struct mt_weight gate, up, down;
};

struct mt_layer_weights {
    struct mt_weight input_norm, post_attn_norm;
    /* MLA */
    struct mt_weight q_a, q_a_norm, q_b, kv_a, kv_a_norm, kv_b, o;
    /* lightning indexer */
    struct mt_weight idx_wq_b, idx_wk, idx_k_norm, idx_k_norm_bias, idx_weights_proj;
    /* FFN: dense layers use mlp; MoE layers use router, router_bias, shared, experts */
    bool is_moe;
    struct mt_expert_weights mlp;
    struct mt_weight router, router_bias;
    struct mt_expert_weights shared;
    struct mt_expert_weights *experts; /* owned, [n_routed_experts] */
};

/* An opened, validated checkpoint. All tensors borrowed from `set`, valid until destroy. */
struct mt_model {
    char *dir;                          /* owned */
    struct mt_model_config cfg;
    struct mt_st_set *set;              /* owned */
    bool fp8;                           /* linears are F8_E4M3 with scales */
    bool has_mtp;                       /* the MTP layer is present (and was validated) */
    struct mt_weight embed, head, final_norm;
    struct mt_layer_weights *layers;    /* owned, [cfg.num_hidden_layers] */
};

/*
 * Open DIR: config.json, the safetensors files (via the index when present), then check every
 * expected tensor's presence, shape and dtype (and FP8 scale shapes). The MTP layer may be present
 * or absent. Unexpected extra tensors earn one warning. Errors name the file or tensor:
 * MT_ERR_IO, MT_ERR_FORMAT, MT_ERR_NOMEM.
 */
mt_status_t mt_model_open(const char *dir, struct mt_model **model_out);
void mt_model_destroy(struct mt_model *model);

/*
 * The sizes of an opened checkpoint: mt_model_sizes_compute, except that every tensor present
 * counts with its bytes as stored (a non-FP8 checkpoint may differ from the estimate, e.g. with
 * a BF16 e_score_correction_bias); an absent MTP layer stays an estimate.
 */
mt_status_t mt_model_sizes_of(const struct mt_model *model, struct mt_model_sizes *sizes_out);

#endif /* MT_MODEL_H */
