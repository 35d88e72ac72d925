/* SPDX-License-Identifier: MIT */
/*
 * config.c - parse, validate and write DeepSeek-V3.2's config.json.
 *
 * Two spellings of the same model reach us. DeepSeek publishes `rope_scaling` + `rope_theta`,
 * `first_k_dense_replace` and `torch_dtype` (transformers 4.44 layout). transformers 5 writes
 * `rope_parameters` (one dict that also holds rope_theta), `mlp_layer_types` ("dense"/"sparse" per
 * layer) and `dtype`. Both parse to the same struct. The one idea: a field that is present must
 * have the right JSON type (a string where an integer belongs is an error, never a silent default),
 * a field that is absent or null takes the default of HF's DeepseekV32Config, and every relation
 * the forward pass relies on is checked here once, so later code can trust the struct.
 *
 * Defaults for absent fields follow transformers' DeepseekV32Config (the 671B values), except for
 * the keys HF does not model: num_nextn_predict_layers (absent = 0, no MTP layer), topk_method
 * "noaux_tc", scoring_func "sigmoid", moe_layer_freq 1. Without rope_scaling/rope_parameters the
 * RoPE is plain ("default", factor 1). rope_mscale / rope_mscale_all_dim absent are stored as 0,
 * meaning "not given": HF then skips the softmax-scale correction and applies yarn's default
 * attention factor to cos/sin (see mt_config_rope_attn_factor).
 */
#include <config.h>

#include "runtime/model/config.h"

#include "runtime/base/file_util.h"
#include "runtime/base/json_num.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds that keep every shape product far inside int64 and inventories bounded. */
#define MT_CFG_MAX_DIM (1 << 24)

void
mt_config_default_v32(struct mt_model_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->hidden_size = 7168;
    cfg->num_hidden_layers = 61;
    cfg->first_k_dense_replace = 3;
    cfg->moe_layer_freq = 1;
    cfg->intermediate_size = 18432;
    cfg->moe_intermediate_size = 2048;
    cfg->vocab_size = 129280;
    cfg->num_attention_heads = 128;
    cfg->num_key_value_heads = 128;
    cfg->q_lora_rank = 1536;
    cfg->kv_lora_rank = 512;
    cfg->qk_nope_head_dim = 128;
    cfg->qk_rope_head_dim = 64;
    cfg->v_head_dim = 128;
    cfg->n_routed_experts = 256;
    cfg->n_shared_experts = 1;
    cfg->num_experts_per_tok = 8;
    cfg->n_group = 8;
    cfg->topk_group = 4;
    strcpy(cfg->topk_method, "noaux_tc");
    strcpy(cfg->scoring_func, "sigmoid");
    cfg->norm_topk_prob = true;
    cfg->routed_scaling_factor = 2.5;
    strcpy(cfg->hidden_act, "silu");
    cfg->rms_norm_eps = 1e-6;
    cfg->rope_theta = 10000.0;
    strcpy(cfg->rope_type, "yarn");
    cfg->rope_factor = 40.0;
    cfg->rope_original_max_pos = 4096;
    cfg->rope_beta_fast = 32.0;
    cfg->rope_beta_slow = 1.0;
    cfg->rope_mscale = 1.0;
    cfg->rope_mscale_all_dim = 1.0;
    cfg->max_position_embeddings = 163840;
    cfg->index_n_heads = 64;
    cfg->index_head_dim = 128;
    cfg->index_topk = 2048;
    cfg->num_nextn_predict_layers = 1;
    cfg->fp8 = true;
    cfg->fp8_block[0] = 128;
    cfg->fp8_block[1] = 128;
    strcpy(cfg->scale_fmt, "ue8m0");
    strcpy(cfg->torch_dtype, "bfloat16");
    cfg->attention_bias = false;
    cfg->tie_word_embeddings = false;
    cfg->bos_token_id = 0;
    cfg->eos_token_id = 1;
    for (int l = 0; l < cfg->num_hidden_layers; l++) {
        cfg->layer_is_moe[l] = l >= cfg->first_k_dense_replace;
    }
}

/* What an absent field means: HF's DeepseekV32Config defaults (see the file comment). */
static void
config_default_hf(struct mt_model_config *cfg)
{
    mt_config_default_v32(cfg);
    strcpy(cfg->rope_type, "default");
    cfg->rope_factor = 1.0;
    cfg->rope_original_max_pos = 0; /* yarn without it: max_position_embeddings (HF) */
    cfg->rope_mscale = 0.0;
    cfg->rope_mscale_all_dim = 0.0;
    cfg->num_nextn_predict_layers = 0;
    cfg->fp8 = false;
    cfg->scale_fmt[0] = '\0';
}

/* ---- typed field readers --------------------------------------------------------------------- */

static const char *
json_type_str(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL:
        return json_real_value(v) == floor(json_real_value(v)) ? "a number too large for an integer"
                                                               : "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "something else";
}

/* The value of key in obj, or NULL when absent or JSON null (both mean "take the default"). */
static json_t *
field(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    return (v == NULL || json_is_null(v)) ? NULL : v;
}

static mt_status_t
read_int(json_t *obj, const char *key, const char *what, const char *ctx, int *out, bool *seen)
{
    json_t *v = field(obj, key);
    long long x;

    if (seen != NULL) {
        *seen = v != NULL;
    }
    if (v == NULL) {
        return MT_OK;
    }
    /* (256.0 is the integer 256: see runtime/base/json_num.h) */
    if (!mt_json_is_int(v, &x)) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s: field '%s%s' must be an integer, not %s", what, ctx,
                       key, json_type_str(v));
    }
    if (x < INT_MIN || x > INT_MAX) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s: field '%s%s' is %lld, which does not fit in an int",
                       what, ctx, key, (long long)x);
    }
    *out = (int)x;
    return MT_OK;
}

static mt_status_t
read_double(json_t *obj, const char *key, const char *what, const char *ctx, double *out)
{
    json_t *v = field(obj, key);

    if (v == NULL) {
        return MT_OK;
    }
    if (!json_is_number(v)) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s: field '%s%s' must be a number, not %s", what, ctx,
                       key, json_type_str(v));
    }
    *out = json_number_value(v);
    return MT_OK;
}

static mt_status_t
read_bool(json_t *obj, const char *key, const char *what, bool *out)
{
    json_t *v = field(obj, key);

    if (v == NULL) {
        return MT_OK;
    }
    if (!json_is_boolean(v)) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s: field '%s' must be true or false, not %s", what, key,
                       json_type_str(v));
    }
    *out = json_is_true(v);
    return MT_OK;
}

static mt_status_t
read_str(json_t *obj, const char *key, const char *what, const char *ctx, char *out, size_t size,
         bool *seen)
{
    json_t *v = field(obj, key);
    const char *s;

    if (seen != NULL) {
        *seen = v != NULL;
    }
    if (v == NULL) {
        return MT_OK;
    }
    if (!json_is_string(v)) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s: field '%s%s' must be a string, not %s", what, ctx,
                       key, json_type_str(v));
    }
    s = json_string_value(v);
    if (strlen(s) >= size) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s: field '%s%s' is too long ('%.40s...')", what, ctx,
                       key, s);
    }
    strcpy(out, s);
    return MT_OK;
}

/* The integer fields of the top level, in file order of DeepSeek's config.json. */
struct int_field {
    const char *key;
    size_t offset;
};

/* clang-format off */
#define INT_FIELD(name) {#name, offsetof(struct mt_model_config, name)}
static const struct int_field int_fields[] = {
    INT_FIELD(hidden_size),
    INT_FIELD(index_head_dim),
    INT_FIELD(index_n_heads),
    INT_FIELD(index_topk),
    INT_FIELD(intermediate_size),
    INT_FIELD(kv_lora_rank),
    INT_FIELD(max_position_embeddings),
    INT_FIELD(moe_intermediate_size),
    INT_FIELD(moe_layer_freq),
    INT_FIELD(n_group),
    INT_FIELD(n_routed_experts),
    INT_FIELD(n_shared_experts),
    INT_FIELD(num_attention_heads),
    INT_FIELD(num_experts_per_tok),
    INT_FIELD(num_key_value_heads),
    INT_FIELD(num_nextn_predict_layers),
    INT_FIELD(qk_nope_head_dim),
    INT_FIELD(qk_rope_head_dim),
    INT_FIELD(topk_group),
    INT_FIELD(v_head_dim),
    INT_FIELD(vocab_size),
};
#undef INT_FIELD
/* clang-format on */

/* Remember that config.json left out the size key (cfg->defaulted, for later messages). */
static void
note_default(struct mt_model_config *cfg, const char *key)
{
    size_t n = strlen(cfg->defaulted);

    snprintf(cfg->defaulted + n, sizeof(cfg->defaulted) - n, "%s%s", n > 0 ? ", " : "", key);
}

/* bos/eos: an integer, or (eos, transformers) a list of integers of which the first counts. */
static mt_status_t
read_token_id(json_t *root, const char *key, const char *what, int *out)
{
    json_t *v = field(root, key);
    long long x;

    if (v == NULL) {
        return MT_OK;
    }
    if (json_is_array(v)) {
        if (json_array_size(v) == 0) {
            return mt_fail(MT_ERR_FORMAT, 0, "%s: field '%s' is an empty list", what, key);
        }
        v = json_array_get(v, 0);
        if (!mt_json_is_int(v, &x)) {
            return mt_fail(MT_ERR_FORMAT, 0, "%s: field '%s' must hold integers, not %s", what, key,
                           json_type_str(v));
        }
    } else if (!mt_json_is_int(v, &x)) { /* 2.0 is the id 2, as read_int takes it */
        return mt_fail(MT_ERR_FORMAT, 0, "%s: field '%s' must be an integer, not %s", what, key,
                       json_type_str(v));
    }
    if (x < INT_MIN || x > INT_MAX) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s: field '%s' is %lld, which does not fit in an int",
                       what, key, x);
    }
    *out = (int)x;
    return MT_OK;
}

/*
 * rope_scaling (DeepSeek) or rope_parameters (transformers 5; it also carries rope_theta). `ctx`
 * is the dict's name with a dot, for messages.
 */
static mt_status_t
read_rope(json_t *rope, const char *what, const char *ctx, struct mt_model_config *cfg)
{
    char type_a[32] = "";
    char type_b[32] = "";
    bool seen_a;
    bool seen_b;
    bool seen_orig;
    mt_status_t st;

    if (!json_is_object(rope)) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s: field '%.*s' must be an object, not %s", what,
                       (int)strlen(ctx) - 1, ctx, json_type_str(rope));
    }
    if ((st = read_str(rope, "rope_type", what, ctx, type_a, sizeof(type_a), &seen_a)) != MT_OK ||
        (st = read_str(rope, "type", what, ctx, type_b, sizeof(type_b), &seen_b)) != MT_OK) {
        return st;
    }
    if (seen_a && seen_b && strcmp(type_a, type_b) != 0) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s: field '%srope_type' is '%s' but '%stype' is '%s'",
                       what, ctx, type_a, ctx, type_b);
    }
    if (seen_a || seen_b) {
        strcpy(cfg->rope_type, seen_a ? type_a : type_b);
    }
    if ((st = read_double(rope, "factor", what, ctx, &cfg->rope_factor)) != MT_OK ||
        (st = read_int(rope, "original_max_position_embeddings", what, ctx,
                       &cfg->rope_original_max_pos, &seen_orig)) != MT_OK ||
        (st = read_double(rope, "beta_fast", what, ctx, &cfg->rope_beta_fast)) != MT_OK ||
        (st = read_double(rope, "beta_slow", what, ctx, &cfg->rope_beta_slow)) != MT_OK ||
        (st = read_double(rope, "mscale", what, ctx, &cfg->rope_mscale)) != MT_OK ||
        (st = read_double(rope, "mscale_all_dim", what, ctx, &cfg->rope_mscale_all_dim)) != MT_OK ||
        (st = read_double(rope, "rope_theta", what, ctx, &cfg->rope_theta)) != MT_OK) {
        return st;
    }
    return MT_OK;
}

static mt_status_t
read_quant(json_t *q, const char *what, struct mt_model_config *cfg)
{
    char method[32] = "";
    char fmt[32] = "";
    bool seen;
    json_t *bs;
    mt_status_t st;

    if (!json_is_object(q)) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'quantization_config' must be an object, not %s", what,
                       json_type_str(q));
    }
    if ((st = read_str(q, "quant_method", what, "quantization_config.", method, sizeof(method),
                       &seen)) != MT_OK) {
        return st;
    }
    if (!seen || strcmp(method, "fp8") != 0) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'quantization_config.quant_method' is '%s'; only 'fp8' "
                       "(DeepSeek's e4m3 with 128x128 block scales) is supported",
                       what, seen ? method : "(absent)");
    }
    cfg->fp8 = true;
    if ((st = read_str(q, "fmt", what, "quantization_config.", fmt, sizeof(fmt), &seen)) != MT_OK) {
        return st;
    }
    if (seen && strcmp(fmt, "e4m3") != 0) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'quantization_config.fmt' is '%s'; only 'e4m3' is supported",
                       what, fmt);
    }
    if ((st = read_str(q, "scale_fmt", what, "quantization_config.", cfg->scale_fmt,
                       sizeof(cfg->scale_fmt), NULL)) != MT_OK) {
        return st;
    }
    bs = field(q, "weight_block_size");
    if (bs != NULL) {
        if (!json_is_array(bs) || json_array_size(bs) != 2 ||
            !json_is_integer(json_array_get(bs, 0)) || !json_is_integer(json_array_get(bs, 1))) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "%s: field 'quantization_config.weight_block_size' must be a list of "
                           "two integers",
                           what);
        }
        for (int i = 0; i < 2; i++) {
            json_int_t x = json_integer_value(json_array_get(bs, i));

            cfg->fp8_block[i] = (x < 0 || x > INT_MAX) ? -1 : (int)x;
        }
    }
    return MT_OK;
}

/* mlp_layer_types: one "dense" or "sparse" per main layer (transformers 5). */
static mt_status_t
read_layer_types(json_t *types, const char *what, struct mt_model_config *cfg)
{
    size_t n;

    if (!json_is_array(types)) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s: field 'mlp_layer_types' must be a list, not %s", what,
                       json_type_str(types));
    }
    n = json_array_size(types);
    if (n != (size_t)cfg->num_hidden_layers) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'mlp_layer_types' has %zu entries but num_hidden_layers is %d",
                       what, n, cfg->num_hidden_layers);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(types, i);
        const char *s = json_is_string(v) ? json_string_value(v) : NULL;

        if (s != NULL && strcmp(s, "dense") == 0) {
            cfg->layer_is_moe[i] = false;
        } else if (s != NULL && strcmp(s, "sparse") == 0) {
            cfg->layer_is_moe[i] = true;
        } else {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "%s: field 'mlp_layer_types[%zu]' must be \"dense\" or \"sparse\"", what,
                           i);
        }
    }
    return MT_OK;
}

/* The MoE pattern DeepSeek's own fields describe (modeling_deepseek: l >= k and l % freq == 0). */
static bool
layer_is_moe_by_rule(const struct mt_model_config *cfg, int layer)
{
    return cfg->n_routed_experts > 0 && layer >= cfg->first_k_dense_replace &&
           cfg->moe_layer_freq > 0 && layer % cfg->moe_layer_freq == 0;
}

mt_status_t
mt_config_parse(const char *text, size_t len, const char *what, struct mt_model_config *cfg_out)
{
    struct mt_model_config cfg;
    json_error_t jerr;
    json_t *root;
    json_t *v;
    char model_type[64] = "";
    bool seen_first_k;
    bool interleave = false;
    mt_status_t st = MT_OK;

    config_default_hf(&cfg);
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s: not valid JSON: line %d column %d: %s", what,
                       jerr.line, jerr.column, jerr.text);
    }
    if (!json_is_object(root)) {
        st = mt_fail(MT_ERR_FORMAT, 0, "%s: a config must be a JSON object, not %s", what,
                     json_type_str(root));
        goto out_decref;
    }

    if ((st = read_str(root, "model_type", what, "", model_type, sizeof(model_type), NULL)) !=
        MT_OK) {
        goto out_decref;
    }
    if (model_type[0] != '\0' && strcmp(model_type, "deepseek_v32") != 0) {
        st = mt_fail(MT_ERR_FORMAT, 0,
                     "%s: field 'model_type' is '%s'; moetier runs 'deepseek_v32' (DeepSeek-V3.2)",
                     what, model_type);
        goto out_decref;
    }
    for (size_t i = 0; i < sizeof(int_fields) / sizeof(int_fields[0]); i++) {
        bool seen;
        if ((st = read_int(root, int_fields[i].key, what, "",
                           (int *)((char *)&cfg + int_fields[i].offset), &seen)) != MT_OK) {
            goto out_decref;
        }
        if (!seen) {
            note_default(&cfg, int_fields[i].key);
        }
    }
    /* q_lora_rank: null means "no q latent" (V2-Lite style), which V3.2's indexer cannot run. */
    bool seen_q, seen_layers;
    v = json_object_get(root, "q_lora_rank");
    if (v != NULL && json_is_null(v)) {
        cfg.q_lora_rank = 0;
    } else if ((st = read_int(root, "q_lora_rank", what, "", &cfg.q_lora_rank, &seen_q)) !=
               MT_OK) {
        goto out_decref;
    } else if (!seen_q) {
        note_default(&cfg, "q_lora_rank");
    }
    if ((st = read_int(root, "num_hidden_layers", what, "", &cfg.num_hidden_layers,
                       &seen_layers)) != MT_OK) {
        goto out_decref;
    }
    if (!seen_layers) {
        note_default(&cfg, "num_hidden_layers");
    }
    if ((st = read_int(root, "first_k_dense_replace", what, "", &cfg.first_k_dense_replace,
                       &seen_first_k)) != MT_OK ||
        (st = read_token_id(root, "bos_token_id", what, &cfg.bos_token_id)) != MT_OK ||
        (st = read_token_id(root, "eos_token_id", what, &cfg.eos_token_id)) != MT_OK ||
        (st = read_double(root, "routed_scaling_factor", what, "", &cfg.routed_scaling_factor)) !=
            MT_OK ||
        (st = read_double(root, "rms_norm_eps", what, "", &cfg.rms_norm_eps)) != MT_OK ||
        (st = read_double(root, "rope_theta", what, "", &cfg.rope_theta)) != MT_OK ||
        (st = read_bool(root, "norm_topk_prob", what, &cfg.norm_topk_prob)) != MT_OK ||
        (st = read_bool(root, "attention_bias", what, &cfg.attention_bias)) != MT_OK ||
        (st = read_bool(root, "tie_word_embeddings", what, &cfg.tie_word_embeddings)) != MT_OK ||
        (st = read_bool(root, "indexer_rope_interleave", what, &interleave)) != MT_OK ||
        (st = read_str(root, "topk_method", what, "", cfg.topk_method, sizeof(cfg.topk_method),
                       NULL)) != MT_OK ||
        (st = read_str(root, "scoring_func", what, "", cfg.scoring_func, sizeof(cfg.scoring_func),
                       NULL)) != MT_OK ||
        (st = read_str(root, "hidden_act", what, "", cfg.hidden_act, sizeof(cfg.hidden_act),
                       NULL)) != MT_OK ||
        (st = read_str(root, "torch_dtype", what, "", cfg.torch_dtype, sizeof(cfg.torch_dtype),
                       NULL)) != MT_OK ||
        (st = read_str(root, "dtype", what, "", cfg.torch_dtype, sizeof(cfg.torch_dtype), NULL)) !=
            MT_OK) {
        goto out_decref;
    }
    if (interleave) {
        st = mt_fail(
            MT_ERR_FORMAT, 0,
            "%s: field 'indexer_rope_interleave' is true (a GLM-5 variant); DeepSeek-V3.2's "
            "indexer RoPE is not interleaved",
            what);
        goto out_decref;
    }
    /* rope_parameters (transformers 5) supersedes rope_scaling + rope_theta when both exist. */
    if ((v = field(root, "rope_parameters")) != NULL) {
        st = read_rope(v, what, "rope_parameters.", &cfg);
    } else if ((v = field(root, "rope_scaling")) != NULL) {
        st = read_rope(v, what, "rope_scaling.", &cfg);
    }
    if (st != MT_OK) {
        goto out_decref;
    }
    if (strcmp(cfg.rope_type, "yarn") == 0 && cfg.rope_original_max_pos == 0) {
        cfg.rope_original_max_pos = cfg.max_position_embeddings;
    }
    if ((v = field(root, "quantization_config")) != NULL &&
        (st = read_quant(v, what, &cfg)) != MT_OK) {
        goto out_decref;
    }

    /* The per-layer FFN kind: mlp_layer_types when given, else DeepSeek's rule. */
    if (cfg.num_hidden_layers <= 0 || cfg.num_hidden_layers > MT_MAX_LAYERS) {
        st = mt_fail(MT_ERR_FORMAT, 0, "%s: field 'num_hidden_layers' is %d, outside 1..%d", what,
                     cfg.num_hidden_layers, MT_MAX_LAYERS);
        goto out_decref;
    }
    memset(cfg.layer_is_moe, 0, sizeof(cfg.layer_is_moe));
    if ((v = field(root, "mlp_layer_types")) != NULL) {
        int k = 0;

        if ((st = read_layer_types(v, what, &cfg)) != MT_OK) {
            goto out_decref;
        }
        while (k < cfg.num_hidden_layers && !cfg.layer_is_moe[k]) {
            k++;
        }
        if (seen_first_k && k != cfg.first_k_dense_replace) {
            mt_log_warn("%s: mlp_layer_types starts with %d dense layers but "
                        "first_k_dense_replace is %d; mlp_layer_types wins",
                        what, k, cfg.first_k_dense_replace);
        }
        cfg.first_k_dense_replace = k;
    } else {
        for (int l = 0; l < cfg.num_hidden_layers; l++) {
            cfg.layer_is_moe[l] = layer_is_moe_by_rule(&cfg, l);
        }
    }

    if ((st = mt_config_validate(&cfg, what)) != MT_OK) {
        goto out_decref;
    }
    *cfg_out = cfg;

out_decref:
    json_decref(root);
    return st;
}

mt_status_t
mt_config_load(const char *path, struct mt_model_config *cfg_out)
{
    char *text;
    char *what;
    size_t len;
    size_t what_len = strlen(path) + sizeof("config ''");
    mt_status_t st;

    st = mt_file_read_all(path, "config", MT_FILE_MAX_CONFIG, &text, &len);
    if (st != MT_OK) {
        return st;
    }
    /* Messages then read "config '/m/config.json': field ...", as the read errors do. */
    what = malloc(what_len);
    if (what == NULL) {
        free(text);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate config '%s'", path);
    }
    snprintf(what, what_len, "config '%s'", path);
    st = mt_config_parse(text, len, what, cfg_out);
    free(what);
    free(text);
    return st;
}

/* ---- validation ------------------------------------------------------------------------------ */

static mt_status_t
check_range(const char *what, const char *name, int value, int lo, int hi)
{
    if (value < lo || value > hi) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s: field '%s' is %d, outside %d..%d", what, name, value,
                       lo, hi);
    }
    return MT_OK;
}

mt_status_t
mt_config_validate(const struct mt_model_config *cfg, const char *what)
{
    static const char *const dtypes[] = {"bfloat16", "float16", "float32"};
    const struct {
        const char *name;
        int value;
        int lo;
        int hi;
    } ranges[] = {
        {"num_hidden_layers", cfg->num_hidden_layers, 1, MT_MAX_LAYERS},
        {"hidden_size", cfg->hidden_size, 1, MT_CFG_MAX_DIM},
        {"intermediate_size", cfg->intermediate_size, 1, MT_CFG_MAX_DIM},
        {"moe_intermediate_size", cfg->moe_intermediate_size, 1, MT_CFG_MAX_DIM},
        {"vocab_size", cfg->vocab_size, 1, MT_CFG_MAX_DIM},
        {"num_attention_heads", cfg->num_attention_heads, 1, 65536},
        {"num_key_value_heads", cfg->num_key_value_heads, 1, 65536},
        {"q_lora_rank", cfg->q_lora_rank, 1, MT_CFG_MAX_DIM},
        {"kv_lora_rank", cfg->kv_lora_rank, 1, MT_CFG_MAX_DIM},
        {"qk_nope_head_dim", cfg->qk_nope_head_dim, 1, 65536},
        {"qk_rope_head_dim", cfg->qk_rope_head_dim, 2, 65536},
        {"v_head_dim", cfg->v_head_dim, 1, 65536},
        {"n_routed_experts", cfg->n_routed_experts, 1, MT_CFG_MAX_EXPERTS},
        {"n_shared_experts", cfg->n_shared_experts, 0, 64}, /* 0: the message below */
        {"num_experts_per_tok", cfg->num_experts_per_tok, 1, MT_CFG_MAX_EXPERTS},
        {"n_group", cfg->n_group, 1, MT_CFG_MAX_EXPERTS},
        {"topk_group", cfg->topk_group, 1, MT_CFG_MAX_EXPERTS},
        {"first_k_dense_replace", cfg->first_k_dense_replace, 0, MT_MAX_LAYERS},
        {"moe_layer_freq", cfg->moe_layer_freq, 1, MT_MAX_LAYERS},
        {"max_position_embeddings", cfg->max_position_embeddings, 1, INT_MAX},
        {"index_n_heads", cfg->index_n_heads, 1, 65536},
        {"index_head_dim", cfg->index_head_dim, 1, 65536},
        {"index_topk", cfg->index_topk, 1, INT_MAX},
        {"num_nextn_predict_layers", cfg->num_nextn_predict_layers, 0, 8},
    };
    int per_group;
    double scale;
    double attn;
    bool dtype_ok = false;
    mt_status_t st;

    if (cfg->q_lora_rank <= 0) {
        return mt_fail(
            MT_ERR_FORMAT, 0,
            "%s: field 'q_lora_rank' is %d; V3.2 needs a q latent (its indexer reads it)", what,
            cfg->q_lora_rank);
    }
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        if ((st = check_range(what, ranges[i].name, ranges[i].value, ranges[i].lo, ranges[i].hi)) !=
            MT_OK) {
            return st;
        }
    }
    if (cfg->n_shared_experts == 0) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'n_shared_experts' is 0; every DeepSeek-V3.2 MoE layer adds a "
                       "shared expert (V3.2 has 1), and moetier's engine needs it",
                       what);
    }
    if (cfg->num_hidden_layers + cfg->num_nextn_predict_layers > MT_MAX_LAYERS) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'num_nextn_predict_layers': %d main + %d MTP layers exceed %d",
                       what, cfg->num_hidden_layers, cfg->num_nextn_predict_layers, MT_MAX_LAYERS);
    }
    if (cfg->first_k_dense_replace > cfg->num_hidden_layers) {
        return mt_fail(
            MT_ERR_FORMAT, 0,
            "%s: field 'first_k_dense_replace' is %d, more than the %d num_hidden_layers", what,
            cfg->first_k_dense_replace, cfg->num_hidden_layers);
    }
    /* MoE routing: experts split evenly into groups, enough experts in the kept groups. */
    if (cfg->n_routed_experts % cfg->n_group != 0) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'n_group': %d n_routed_experts do not split into %d groups", what,
                       cfg->n_routed_experts, cfg->n_group);
    }
    if (cfg->topk_group > cfg->n_group) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'topk_group' is %d, more than the %d groups (n_group)", what,
                       cfg->topk_group, cfg->n_group);
    }
    per_group = cfg->n_routed_experts / cfg->n_group;
    if (cfg->num_experts_per_tok > cfg->topk_group * per_group) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'num_experts_per_tok' is %d, more than the %d experts of the "
                       "%d kept groups (topk_group; %d experts per group)",
                       what, cfg->num_experts_per_tok, cfg->topk_group * per_group, cfg->topk_group,
                       per_group);
    }
    if (strcmp(cfg->topk_method, "noaux_tc") != 0) {
        bool known = strcmp(cfg->topk_method, "greedy") == 0 ||
                     strcmp(cfg->topk_method, "group_limited_greedy") == 0;

        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'topk_method' '%s' is %s (V3.2 uses 'noaux_tc')", what,
                       cfg->topk_method, known ? "not supported" : "unknown");
    }
    /* noaux_tc scores a group by the sum of its two best experts. */
    if (per_group < 2) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'n_group': noaux_tc needs at least 2 experts per group, have %d "
                       "(%d n_routed_experts in %d groups)",
                       what, per_group, cfg->n_routed_experts, cfg->n_group);
    }
    if (strcmp(cfg->scoring_func, "sigmoid") != 0) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'scoring_func' '%s' is %s (V3.2 uses 'sigmoid')", what,
                       cfg->scoring_func,
                       strcmp(cfg->scoring_func, "softmax") == 0 ? "not supported" : "unknown");
    }
    if (strcmp(cfg->hidden_act, "silu") != 0) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'hidden_act' '%s' is not supported (only 'silu')", what,
                       cfg->hidden_act);
    }
    /* the engines use it as a float: 1e39 is finite here and inf there */
    if (!((float)cfg->routed_scaling_factor > 0.0f &&
          isfinite((float)cfg->routed_scaling_factor))) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'routed_scaling_factor' is %g; it must be > 0 and a finite float",
                       what, cfg->routed_scaling_factor);
    }
    /* Attention and indexer shapes. */
    if (cfg->qk_rope_head_dim % 2 != 0) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'qk_rope_head_dim' is %d; it must be even (RoPE rotates pairs)",
                       what, cfg->qk_rope_head_dim);
    }
    if (cfg->index_head_dim < cfg->qk_rope_head_dim) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'index_head_dim' is %d, smaller than qk_rope_head_dim %d (the "
                       "indexer ropes its first qk_rope_head_dim dims)",
                       what, cfg->index_head_dim, cfg->qk_rope_head_dim);
    }
    if ((cfg->index_head_dim & (cfg->index_head_dim - 1)) != 0) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'index_head_dim' is %d, not a power of two (the indexer applies "
                       "a Hadamard transform of that size; V3.2 uses 128)",
                       what, cfg->index_head_dim);
    }
    if (cfg->attention_bias) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'attention_bias' is true; DeepSeek-V3.2 has no attention biases",
                       what);
    }
    if (!(cfg->rms_norm_eps > 0.0 && cfg->rms_norm_eps < 1.0)) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s: field 'rms_norm_eps' is %g; it must be in (0, 1)",
                       what, cfg->rms_norm_eps);
    }
    /* RoPE. */
    /* > 1: YaRN divides by ln(theta) (every released model has 10,000 or more) */
    if (!(cfg->rope_theta > 1.0 && isfinite(cfg->rope_theta))) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s: field 'rope_theta' is %g; it must be > 1", what,
                       cfg->rope_theta);
    }
    if (strcmp(cfg->rope_type, "yarn") == 0) {
        if (!(cfg->rope_factor >= 1.0 && isfinite(cfg->rope_factor))) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "%s: field 'rope_scaling.factor' is %g; it must be >= 1", what,
                           cfg->rope_factor);
        }
        if (cfg->rope_original_max_pos <= 0) {
            return mt_fail(
                MT_ERR_FORMAT, 0,
                "%s: field 'rope_scaling.original_max_position_embeddings' is %d; it must "
                "be > 0",
                what, cfg->rope_original_max_pos);
        }
        if (!(cfg->rope_beta_slow > 0.0 && cfg->rope_beta_fast > cfg->rope_beta_slow &&
              isfinite(cfg->rope_beta_fast))) {
            return mt_fail(
                MT_ERR_FORMAT, 0,
                "%s: field 'rope_scaling.beta_fast' is %g; it must exceed beta_slow %g > 0", what,
                cfg->rope_beta_fast, cfg->rope_beta_slow);
        }
        if (!(cfg->rope_mscale >= 0.0 && cfg->rope_mscale_all_dim >= 0.0 &&
              isfinite(cfg->rope_mscale) && isfinite(cfg->rope_mscale_all_dim))) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "%s: field 'rope_scaling.mscale' / 'mscale_all_dim' must be >= 0", what);
        }
        /* Finite inputs can still overflow: 0.1 * 1e300 * ln(factor), squared, is inf; and the
         * engines use both as floats. */
        scale = mt_config_softmax_scale(cfg);
        attn = mt_config_rope_attn_factor(cfg);
        if (!(isfinite((float)scale) && (float)scale > 0.0f && isfinite((float)attn) &&
              (float)attn > 0.0f)) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "%s: field 'rope_scaling.mscale' / 'mscale_all_dim' (%g, %g) make the "
                           "softmax scale %g or the RoPE attention factor %g unusable",
                           what, cfg->rope_mscale, cfg->rope_mscale_all_dim, scale, attn);
        }
    } else if (strcmp(cfg->rope_type, "default") == 0) {
        if (cfg->rope_factor != 1.0) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "%s: field 'rope_scaling.factor' is %g, which needs rope_type 'yarn'",
                           what, cfg->rope_factor);
        }
    } else {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'rope_scaling.type' '%s' is not supported ('yarn' or 'default')",
                       what, cfg->rope_type);
    }
    /* Storage. */
    for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++) {
        dtype_ok = dtype_ok || strcmp(cfg->torch_dtype, dtypes[i]) == 0;
    }
    if (!dtype_ok) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "%s: field 'torch_dtype' '%s' is not one of bfloat16, float16, float32",
                       what, cfg->torch_dtype);
    }
    if (cfg->fp8) {
        if (cfg->fp8_block[0] != 128 || cfg->fp8_block[1] != 128) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "%s: field 'quantization_config.weight_block_size' is [%d, %d]; only "
                           "[128, 128] is supported",
                           what, cfg->fp8_block[0], cfg->fp8_block[1]);
        }
        if (cfg->scale_fmt[0] != '\0' && strcmp(cfg->scale_fmt, "ue8m0") != 0) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "%s: field 'quantization_config.scale_fmt' '%s' is unknown (expected "
                           "'ue8m0' or none)",
                           what, cfg->scale_fmt);
        }
    }
    if (cfg->bos_token_id < 0 || cfg->bos_token_id >= cfg->vocab_size) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s: field 'bos_token_id' is %d, outside the vocabulary",
                       what, cfg->bos_token_id);
    }
    if (cfg->eos_token_id < 0 || cfg->eos_token_id >= cfg->vocab_size) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s: field 'eos_token_id' is %d, outside the vocabulary",
                       what, cfg->eos_token_id);
    }
    return MT_OK;
}

/* ---- writing --------------------------------------------------------------------------------- */

static int
set_new(json_t *obj, const char *key, json_t *v)
{
    return v == NULL ? -1 : json_object_set_new(obj, key, v);
}

/* DeepSeek writes integral RoPE numbers as integers ("factor": 40); so do we. */
static json_t *
json_number_as_written(double x)
{
    if (x == floor(x) && fabs(x) < 1e15) {
        return json_integer((json_int_t)x);
    }
    return json_real(x);
}

/* A real whose shortest %.15g text reads back exactly (so 1e-06 prints as 1e-06). */
static bool
prints_exactly(double x)
{
    char buf[64];

    snprintf(buf, sizeof(buf), "%.15g", x);
    return strtod(buf, NULL) == x;
}

mt_status_t
mt_config_save(const struct mt_model_config *cfg, const char *path)
{
    json_t *root = json_object();
    json_t *rope = NULL;
    json_t *quant = NULL;
    json_t *arch = NULL;
    bool rule_ok = true;
    double reals[] = {cfg->routed_scaling_factor, cfg->rms_norm_eps,       cfg->rope_theta,
                      cfg->rope_factor,           cfg->rope_beta_fast,     cfg->rope_beta_slow,
                      cfg->rope_mscale,           cfg->rope_mscale_all_dim};
    int precision = 15;
    int rc = 0;
    mt_status_t st;

    if (root == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "writing config '%s'", path);
    }
    for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
        if (!prints_exactly(reals[i])) {
            precision = 17;
        }
    }
    arch = json_array();
    rc |= json_array_append_new(arch, json_string("DeepseekV32ForCausalLM"));
    rc |= set_new(root, "architectures", arch);
    rc |= set_new(root, "attention_bias", json_boolean(cfg->attention_bias));
    rc |= set_new(root, "attention_dropout", json_real(0.0));
    rc |= set_new(root, "bos_token_id", json_integer(cfg->bos_token_id));
    rc |= set_new(root, "eos_token_id", json_integer(cfg->eos_token_id));
    rc |= set_new(root, "ep_size", json_integer(1));
    rc |= set_new(root, "hidden_act", json_string(cfg->hidden_act));
    rc |= set_new(root, "initializer_range", json_real(0.02));
    rc |= set_new(root, "model_type", json_string("deepseek_v32"));
    for (size_t i = 0; i < sizeof(int_fields) / sizeof(int_fields[0]); i++) {
        rc |= set_new(root, int_fields[i].key,
                      json_integer(*(const int *)((const char *)cfg + int_fields[i].offset)));
    }
    rc |= set_new(root, "num_hidden_layers", json_integer(cfg->num_hidden_layers));
    rc |= set_new(root, "first_k_dense_replace", json_integer(cfg->first_k_dense_replace));
    rc |= set_new(root, "q_lora_rank", json_integer(cfg->q_lora_rank));
    rc |= set_new(root, "norm_topk_prob", json_boolean(cfg->norm_topk_prob));
    rc |= set_new(root, "rms_norm_eps", json_real(cfg->rms_norm_eps));
    rc |= set_new(root, "rope_theta", json_number_as_written(cfg->rope_theta));
    rc |= set_new(root, "routed_scaling_factor", json_real(cfg->routed_scaling_factor));
    rc |= set_new(root, "scoring_func", json_string(cfg->scoring_func));
    rc |= set_new(root, "tie_word_embeddings", json_boolean(cfg->tie_word_embeddings));
    rc |= set_new(root, "topk_method", json_string(cfg->topk_method));
    rc |= set_new(root, "torch_dtype", json_string(cfg->torch_dtype));
    rc |= set_new(root, "use_cache", json_true());
    if (strcmp(cfg->rope_type, "default") == 0) {
        rc |= set_new(root, "rope_scaling", json_null());
    } else {
        rope = json_object();
        rc |= set_new(rope, "beta_fast", json_number_as_written(cfg->rope_beta_fast));
        rc |= set_new(rope, "beta_slow", json_number_as_written(cfg->rope_beta_slow));
        rc |= set_new(rope, "factor", json_number_as_written(cfg->rope_factor));
        /* 0 means "absent" (see the file comment): leave the key out so it reads back the same. */
        if (cfg->rope_mscale != 0.0) {
            rc |= set_new(rope, "mscale", json_real(cfg->rope_mscale));
        }
        if (cfg->rope_mscale_all_dim != 0.0) {
            rc |= set_new(rope, "mscale_all_dim", json_real(cfg->rope_mscale_all_dim));
        }
        rc |= set_new(rope, "original_max_position_embeddings",
                      json_integer(cfg->rope_original_max_pos));
        rc |= set_new(rope, "type", json_string(cfg->rope_type));
        rc |= set_new(root, "rope_scaling", rope);
    }
    if (cfg->fp8) {
        json_t *bs = json_array();

        quant = json_object();
        rc |= json_array_append_new(bs, json_integer(cfg->fp8_block[0]));
        rc |= json_array_append_new(bs, json_integer(cfg->fp8_block[1]));
        rc |= set_new(quant, "activation_scheme", json_string("dynamic"));
        rc |= set_new(quant, "fmt", json_string("e4m3"));
        rc |= set_new(quant, "quant_method", json_string("fp8"));
        if (cfg->scale_fmt[0] != '\0') {
            rc |= set_new(quant, "scale_fmt", json_string(cfg->scale_fmt));
        }
        rc |= set_new(quant, "weight_block_size", bs);
        rc |= set_new(root, "quantization_config", quant);
    }
    /* DeepSeek's layout has no mlp_layer_types; write it only when the rule cannot say it. */
    for (int l = 0; l < cfg->num_hidden_layers && l < MT_MAX_LAYERS; l++) {
        rule_ok = rule_ok && cfg->layer_is_moe[l] == layer_is_moe_by_rule(cfg, l);
    }
    if (!rule_ok) {
        json_t *types = json_array();

        for (int l = 0; l < cfg->num_hidden_layers && l < MT_MAX_LAYERS; l++) {
            rc |= json_array_append_new(types,
                                        json_string(cfg->layer_is_moe[l] ? "sparse" : "dense"));
        }
        rc |= set_new(root, "mlp_layer_types", types);
    }
    if (rc != 0) {
        json_decref(root);
        return mt_fail(MT_ERR_NOMEM, 0, "writing config '%s'", path);
    }
    st = mt_json_save_file(root, path, "config",
                           JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(precision));
    json_decref(root);
    return st;
}

/* ---- derived constants ----------------------------------------------------------------------- */

int
mt_config_qk_head_dim(const struct mt_model_config *cfg)
{
    return cfg->qk_nope_head_dim + cfg->qk_rope_head_dim;
}

/* YaRN's magnitude correction: 0.1 * m * ln(s) + 1 for s > 1, else 1. */
static double
yarn_mscale(double factor, double m)
{
    return factor <= 1.0 ? 1.0 : 0.1 * m * log(factor) + 1.0;
}

double
mt_config_softmax_scale(const struct mt_model_config *cfg)
{
    double scale = 1.0 / sqrt((double)mt_config_qk_head_dim(cfg));

    /* HF DeepseekV3Attention and DeepSeek's demo: scale *= mscale(factor, mscale_all_dim)^2. */
    if (strcmp(cfg->rope_type, "yarn") == 0 && cfg->rope_mscale_all_dim != 0.0) {
        double m = yarn_mscale(cfg->rope_factor, cfg->rope_mscale_all_dim);

        scale *= m * m;
    }
    return scale;
}

double
mt_config_rope_attn_factor(const struct mt_model_config *cfg)
{
    if (strcmp(cfg->rope_type, "yarn") != 0) {
        return 1.0;
    }
    /* HF _compute_yarn_parameters: a ratio when both are given, else mscale(factor, 1). */
    if (cfg->rope_mscale != 0.0 && cfg->rope_mscale_all_dim != 0.0) {
        return yarn_mscale(cfg->rope_factor, cfg->rope_mscale) /
               yarn_mscale(cfg->rope_factor, cfg->rope_mscale_all_dim);
    }
    return yarn_mscale(cfg->rope_factor, 1.0);
}

double
mt_config_index_score_scale(const struct mt_model_config *cfg)
{
    return 1.0 / sqrt((double)cfg->index_n_heads) / sqrt((double)cfg->index_head_dim);
}

bool
mt_config_layer_is_moe(const struct mt_model_config *cfg, int layer)
{
    if (layer < 0) {
        return false;
    }
    if (layer < cfg->num_hidden_layers) {
        return layer < MT_MAX_LAYERS && cfg->layer_is_moe[layer];
    }
    /* MTP layers follow the main ones; DeepSeek's MTP block is an MoE block. */
    if (layer < cfg->num_hidden_layers + cfg->num_nextn_predict_layers) {
        return layer_is_moe_by_rule(cfg, layer);
    }
    return false;
}
