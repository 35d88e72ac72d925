/* SPDX-License-Identifier: MIT */
/*
 * config.h - DeepSeek-V3.2's config.json as a validated C struct.
 *
 * Reads both the file DeepSeek publishes (rope_scaling, first_k_dense_replace, torch_dtype) and the
 * one transformers 5 writes (rope_parameters, mlp_layer_types, dtype). Absent fields take HF's
 * defaults. Validation rejects what the model cannot be (experts not divisible by n_group,
 * topk_group > n_group, head dims that do not fit, ...) with a message naming file and field.
 */
#ifndef MT_CONFIG_H
#define MT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/base/status.h"

#define MT_MAX_LAYERS 256
#define MT_CFG_MAX_EXPERTS 4096 /* routed experts, and experts a token, at most */

struct mt_model_config {
    /* sizes */
    int hidden_size;              /* 7168 */
    int num_hidden_layers;        /* 61 (main model; MTP layers come after) */
    int first_k_dense_replace;    /* 3 */
    int moe_layer_freq;           /* 1 */
    int intermediate_size;        /* 18432, dense MLP */
    int moe_intermediate_size;    /* 2048, per expert */
    int vocab_size;               /* 129280 */
    int num_attention_heads;      /* 128 */
    int num_key_value_heads;      /* unused by MLA */
    int q_lora_rank;              /* 1536 */
    int kv_lora_rank;             /* 512 */
    int qk_nope_head_dim;         /* 128 */
    int qk_rope_head_dim;         /* 64 */
    int v_head_dim;               /* 128 */
    /* MoE */
    int n_routed_experts;         /* 256 */
    int n_shared_experts;         /* 1 */
    int num_experts_per_tok;      /* 8 */
    int n_group;                  /* 8 */
    int topk_group;               /* 4 */
    char topk_method[32];         /* "noaux_tc" */
    char scoring_func[32];        /* "sigmoid" */
    bool norm_topk_prob;          /* true */
    double routed_scaling_factor; /* 2.5 */
    char hidden_act[32];          /* "silu" */
    bool layer_is_moe[MT_MAX_LAYERS]; /* per main layer, from mlp_layer_types or first_k_dense */
    /* norms and positions */
    double rms_norm_eps;          /* 1e-6 */
    double rope_theta;            /* 10000 */
    char rope_type[32];           /* "yarn" or "default" */
    double rope_factor;           /* 40 */
    int rope_original_max_pos;    /* 4096 */
    double rope_beta_fast;        /* 32 */
    double rope_beta_slow;        /* 1 */
    double rope_mscale;           /* 1.0 (0 when config.json does not give it) */
    double rope_mscale_all_dim;   /* 1.0 (0 when absent: no softmax-scale correction) */
    int max_position_embeddings;  /* 163840 */
    /* DSA lightning indexer */
    int index_n_heads;            /* 64 */
    int index_head_dim;           /* 128 */
    int index_topk;               /* 2048 */
    /* MTP */
    int num_nextn_predict_layers; /* 1 */
    /* storage */
    bool fp8;                     /* quantization_config with quant_method fp8 */
    int fp8_block[2];             /* weight_block_size, [128, 128] */
    char scale_fmt[16];           /* "ue8m0" or "" */
    char torch_dtype[16];         /* dtype of non-FP8 tensors: "bfloat16", "float32" */
    bool attention_bias;          /* false */
    bool tie_word_embeddings;     /* false */
    int bos_token_id;             /* 0 */
    int eos_token_id;             /* 1 */
    /* the integer fields config.json leaves out, which took HF's defaults ("hidden_size,
     * vocab_size"; "" when it gives them all): messages about tensors that do not fit name them */
    char defaulted[400];
};

/* Fill cfg with the DeepSeek-V3.2 671B values of spec section 1.1. */
void mt_config_default_v32(struct mt_model_config *cfg);

/*
 * Parse config.json text (len bytes). `what` names the file in messages. Absent fields keep
 * HF's DeepseekV32Config defaults. Calls mt_config_validate. MT_ERR_FORMAT on bad JSON, a field of
 * the wrong type, or an impossible value.
 */
mt_status_t mt_config_parse(const char *text, size_t len, const char *what,
                            struct mt_model_config *cfg_out);

/* Read and parse a config.json file. MT_ERR_IO when it cannot be read. */
mt_status_t mt_config_load(const char *path, struct mt_model_config *cfg_out);

/* Check every field and every relation between fields; MT_ERR_FORMAT naming the field. */
mt_status_t mt_config_validate(const struct mt_model_config *cfg, const char *what);

/*
 * Write cfg as a config.json in DeepSeek's published layout (with quantization_config when fp8),
 * to path. MT_ERR_IO on failure.
 */
mt_status_t mt_config_save(const struct mt_model_config *cfg, const char *path);

/* Derived constants (spec 1.3). */
int mt_config_qk_head_dim(const struct mt_model_config *cfg);   /* nope + rope */
double mt_config_softmax_scale(const struct mt_model_config *cfg); /* 192^-0.5 * mscale^2 */
/*
 * Whether a layer's FFN is MoE. 0 <= layer < num_hidden_layers: layer_is_moe[]; the MTP layers
 * that follow (num_hidden_layers .. + num_nextn_predict_layers - 1) follow DeepSeek's rule (MoE).
 */
bool mt_config_layer_is_moe(const struct mt_model_config *cfg, int layer);
/*
 * YaRN attention factor multiplied into cos/sin (HF _compute_yarn_parameters): 1 for the real
 * config (mscale = mscale_all_dim = 1); 0.1 ln(factor) + 1 when mscale/mscale_all_dim are absent
 * (stored as 0 by mt_config_parse); 1 for rope_type "default".
 */
double mt_config_rope_attn_factor(const struct mt_model_config *cfg);
/* Indexer score multiplier index_n_heads^-0.5 * index_head_dim^-0.5 (0.01104854, spec 1.3). */
double mt_config_index_score_scale(const struct mt_model_config *cfg);

#endif /* MT_CONFIG_H */
