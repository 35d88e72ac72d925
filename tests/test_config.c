/* SPDX-License-Identifier: MIT */
/*
 * test_config.c - config.json parsing: DeepSeek's published file gives exactly the values of spec
 * 1.1, the layout transformers 5 writes parses to the same struct, every impossible or mistyped
 * config is MT_ERR_FORMAT naming file and field, and mt_config_save round-trips.
 */
#include <config.h>

#include "runtime/model/config.h"
#include "tests/tap.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Name of the first field where a and b differ, or NULL when equal. */
/* clang-format off */
static const char *
cfg_diff(const struct mt_model_config *a, const struct mt_model_config *b)
{
#define CMP(f)                                                                                     \
    if (a->f != b->f)                                                                              \
        return #f;
#define CMPS(f)                                                                                    \
    if (strcmp(a->f, b->f) != 0)                                                                   \
        return #f;
    CMP(hidden_size) CMP(num_hidden_layers) CMP(first_k_dense_replace) CMP(moe_layer_freq)
    CMP(intermediate_size) CMP(moe_intermediate_size) CMP(vocab_size) CMP(num_attention_heads)
    CMP(num_key_value_heads) CMP(q_lora_rank) CMP(kv_lora_rank) CMP(qk_nope_head_dim)
    CMP(qk_rope_head_dim) CMP(v_head_dim) CMP(n_routed_experts) CMP(n_shared_experts)
    CMP(num_experts_per_tok) CMP(n_group) CMP(topk_group) CMPS(topk_method) CMPS(scoring_func)
    CMP(norm_topk_prob) CMP(routed_scaling_factor) CMPS(hidden_act) CMP(rms_norm_eps)
    CMP(rope_theta) CMPS(rope_type) CMP(rope_factor) CMP(rope_original_max_pos)
    CMP(rope_beta_fast) CMP(rope_beta_slow) CMP(rope_mscale) CMP(rope_mscale_all_dim)
    CMP(max_position_embeddings) CMP(index_n_heads) CMP(index_head_dim) CMP(index_topk)
    CMP(num_nextn_predict_layers) CMP(fp8) CMP(fp8_block[0]) CMP(fp8_block[1]) CMPS(scale_fmt)
    CMPS(torch_dtype) CMP(attention_bias) CMP(tie_word_embeddings) CMP(bos_token_id)
    CMP(eos_token_id)
    for (int l = 0; l < MT_MAX_LAYERS; l++) {
        if (a->layer_is_moe[l] != b->layer_is_moe[l]) {
            return "layer_is_moe";
        }
    }
#undef CMP
#undef CMPS
    return NULL;
}
/* clang-format on */

static mt_status_t
parse_str(const char *text, struct mt_model_config *cfg)
{
    return mt_config_parse(text, strlen(text), "inline.json", cfg);
}

/* parse_str with stderr sent to a file; what was written there goes to log. */
static mt_status_t
parse_logged(const char *text, struct mt_model_config *cfg, char *log, size_t size)
{
    const char *tmp = tap_tmpdir();
    char path[512];
    mt_status_t st;
    int saved;

    snprintf(path, sizeof(path), "%s/stderr.txt", tmp);
    saved = tap_stderr_to(path);
    st = parse_str(text, cfg);
    tap_stderr_restore(saved);
    tap_read_text(path, log, size);
    tap_rmtree(tmp);
    return st;
}

/* Each bad file and the field its message must name (tests/data/configs/make-configs.py). */
static const struct {
    const char *file;
    const char *field;
} bad_configs[] = {
    {"bad-n-group.json", "'n_group'"},
    {"bad-topk-group.json", "'topk_group'"},
    {"bad-experts-per-tok.json", "'num_experts_per_tok'"},
    {"bad-rope-odd.json", "'qk_rope_head_dim'"},
    {"bad-index-head-dim.json", "'index_head_dim'"},
    {"bad-index-head-dim-pow2.json", "'index_head_dim' is 96, not a power of two"},
    {"bad-shared-experts-zero.json", "'n_shared_experts' is 0"},
    {"bad-q-lora-null.json", "'q_lora_rank'"},
    {"bad-kv-lora-zero.json", "'kv_lora_rank'"},
    {"bad-first-k.json", "'first_k_dense_replace'"},
    {"bad-layers.json", "'num_hidden_layers'"},
    {"bad-scoring.json", "'scoring_func'"},
    {"bad-topk-method.json", "'topk_method'"},
    {"bad-rope-factor.json", "'rope_scaling.factor'"},
    {"bad-type-string.json", "'hidden_size' must be an integer"},
    {"bad-type-bool.json", "'norm_topk_prob' must be true or false"},
    {"bad-type-rope.json", "'rope_scaling' must be an object"},
    {"bad-type-float.json", "'vocab_size' must be an integer"},
    {"bad-negative.json", "'hidden_size'"},
    {"bad-quant.json", "'quantization_config.quant_method'"},
    {"bad-block.json", "'quantization_config.weight_block_size'"},
    {"bad-dtype.json", "'torch_dtype'"},
    {"bad-model-type.json", "'model_type'"},
    {"bad-mlp-layer-types.json", "'mlp_layer_types' has 60 entries"},
    {"bad-mlp-layer-value.json", "'mlp_layer_types[5]'"},
    {"bad-rope-params-type.json", "'rope_parameters.factor' must be a number"},
    {"bad-json.json", "not valid JSON"},
};

/* Inline configs one step past a bound, and the phrase their message must hold. */
static const struct {
    const char *json;
    const char *phrase;
} bad_inline[] = {
    {"{\"hidden_size\": 2147483648}", "'hidden_size' is 2147483648, which does not fit in an int"},
    {"{\"bos_token_id\": -2147483649}",
     "'bos_token_id' is -2147483649, which does not fit in an int"},
    {"{\"eos_token_id\": []}", "'eos_token_id' is an empty list"},
    /* topk_method holds 31 characters and the NUL */
    {"{\"topk_method\": \"noaux_tc_xxxxxxxxxxxxxxxxxxxxxxx\"}", "'topk_method' is too long"},
    {"{\"quantization_config\": {\"quant_method\": \"fp8\", \"fmt\": \"e5m2\"}}",
     "'quantization_config.fmt' is 'e5m2'"},
    {"{\"quantization_config\": {\"quant_method\": \"fp8\", "
     "\"weight_block_size\": [128, 128, 128]}}",
     "'quantization_config.weight_block_size' must be a list of two integers"},
    /* -2^32 + 128 must not pass as 128 once cut to an int */
    {"{\"quantization_config\": {\"quant_method\": \"fp8\", "
     "\"weight_block_size\": [-4294967168, 128]}}",
     "'quantization_config.weight_block_size' is [-1, 128]"},
    {"{\"num_hidden_layers\": 4, "
     "\"mlp_layer_types\": [\"dense\", \"sparse\", \"sparse\", \"sparse\", \"sparse\"]}",
     "'mlp_layer_types' has 5 entries but num_hidden_layers is 4"},
    {"{\"n_shared_experts\": 65}", "'n_shared_experts' is 65, outside 0..64"},
    {"{\"num_nextn_predict_layers\": 9}", "'num_nextn_predict_layers' is 9, outside 0..8"},
    {"{\"q_lora_rank\": null}", "'q_lora_rank' is 0; V3.2 needs a q latent"},
    {"{\"num_hidden_layers\": 256, \"num_nextn_predict_layers\": 1}",
     "256 main + 1 MTP layers exceed 256"},
    {"{\"n_routed_experts\": 257}", "257 n_routed_experts do not split into 8 groups"},
    {"{\"qk_rope_head_dim\": 66, \"index_head_dim\": 64}",
     "'index_head_dim' is 64, smaller than qk_rope_head_dim 66"},
    {"{\"rms_norm_eps\": 1}", "'rms_norm_eps' is 1; it must be in (0, 1)"},
    {"{\"rms_norm_eps\": 0}", "'rms_norm_eps' is 0; it must be in (0, 1)"},
    {"{\"routed_scaling_factor\": 0}", "'routed_scaling_factor' is 0"},
    {"{\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, "
     "\"original_max_position_embeddings\": 4096, \"beta_fast\": 1, \"beta_slow\": 1}}",
     "'rope_scaling.beta_fast' is 1; it must exceed beta_slow 1"},
    {"{\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, "
     "\"original_max_position_embeddings\": 4096, \"beta_fast\": 32, \"beta_slow\": 0}}",
     "'rope_scaling.beta_fast' is 32; it must exceed beta_slow 0"},
    {"{\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, "
     "\"original_max_position_embeddings\": 4096, \"mscale\": 1, \"mscale_all_dim\": -1}}",
     "'rope_scaling.mscale' / 'mscale_all_dim' must be >= 0"},
    {"{\"rope_scaling\": {\"type\": \"default\", \"factor\": 2}}",
     "'rope_scaling.factor' is 2, which needs rope_type 'yarn'"},
    {"{\"quantization_config\": {\"quant_method\": \"fp8\", \"weight_block_size\": [128, 64]}}",
     "'quantization_config.weight_block_size' is [128, 64]"},
    {"{\"vocab_size\": 1000, \"bos_token_id\": 1000}", "'bos_token_id' is 1000, outside"},
    {"{\"vocab_size\": 1000, \"eos_token_id\": 1000}", "'eos_token_id' is 1000, outside"},
    {"{\"eos_token_id\": -1}", "'eos_token_id' is -1, outside"},
    {"{\"bos_token_id\": -1}", "'bos_token_id' is -1, outside"},
    {"{\"attention_bias\": true}", "'attention_bias' is true"},
    {"{\"quantization_config\": {\"quant_method\": \"fp8\", \"scale_fmt\": \"e8m0\"}}",
     "'quantization_config.scale_fmt' 'e8m0' is unknown"},
    {"{\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, "
     "\"original_max_position_embeddings\": 4096, \"mscale\": -1, \"mscale_all_dim\": 1}}",
     "'rope_scaling.mscale' / 'mscale_all_dim' must be >= 0"},
    /* equal mscales keep the cos/sin factor at 1, but the softmax scale is inf */
    {"{\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, "
     "\"original_max_position_embeddings\": 4096, \"mscale\": 1e300, \"mscale_all_dim\": 1e300}}",
     "make the softmax scale inf or the RoPE attention factor 1 unusable"},
    {"{\"hidden_size\": 1e30}", "'hidden_size' must be an integer, not a number too large"},
    {"{\"hidden_size\": 2.5}", "'hidden_size' must be an integer, not a number with a fraction"},
    {"{\"num_hidden_layers\": 4, \"mlp_layer_types\": \"dense\"}",
     "'mlp_layer_types' must be a list, not a string"},
    {"{\"hidden_act\": \"gelu\"}", "'hidden_act' 'gelu' is not supported"},
    {"{\"bos_token_id\": \"0\"}", "'bos_token_id' must be an integer, not a string"},
    /* 31 characters fit topk_method: refused as unknown, not as too long */
    {"{\"topk_method\": \"noaux_tc_xxxxxxxxxxxxxxxxxxxxxx\"}",
     "'topk_method' 'noaux_tc_xxxxxxxxxxxxxxxxxxxxxx' is unknown"},
    {"{\"hidden_size\": -2147483649}",
     "'hidden_size' is -2147483649, which does not fit in an int"},
    {"{\"eos_token_id\": [\"1\"]}", "'eos_token_id' must hold integers, not a string"},
    {"{\"eos_token_id\": [1.5]}",
     "'eos_token_id' must hold integers, not a number with a fraction"},
    {"{\"bos_token_id\": 0.5}", "'bos_token_id' must be an integer, not a number with a fraction"},
    {"{\"quantization_config\": {\"fmt\": \"e4m3\"}}",
     "'quantization_config.quant_method' is '(absent)'"},
    {"{\"quantization_config\": {\"quant_method\": \"fp8\", "
     "\"weight_block_size\": [\"128\", 128]}}",
     "'quantization_config.weight_block_size' must be a list of two integers"},
};

static void
test_real(void)
{
    struct mt_model_config cfg;
    struct mt_model_config want;
    mt_status_t st;
    const char *d;

    st = mt_config_load(tap_data_path("deepseek-v3.2/config.json"), &cfg);
    tap_ok(st == MT_OK && cfg.defaulted[0] == '\0',
           "DeepSeek-V3.2's config.json parses, every integer field given ('%s'): %s",
           cfg.defaulted, mt_last_error());
    tap_ok(cfg.hidden_size == 7168 && cfg.num_hidden_layers == 61 &&
               cfg.first_k_dense_replace == 3 && cfg.intermediate_size == 18432 &&
               cfg.moe_intermediate_size == 2048 && cfg.vocab_size == 129280,
           "sizes: hidden 7168, 61 layers, 3 dense, 18432/2048, vocab 129280");
    tap_ok(cfg.num_attention_heads == 128 && cfg.q_lora_rank == 1536 && cfg.kv_lora_rank == 512 &&
               cfg.qk_nope_head_dim == 128 && cfg.qk_rope_head_dim == 64 && cfg.v_head_dim == 128,
           "MLA: 128 heads, q_lora 1536, kv_lora 512, 128+64, v 128");
    tap_ok(cfg.n_routed_experts == 256 && cfg.n_shared_experts == 1 &&
               cfg.num_experts_per_tok == 8 && cfg.n_group == 8 && cfg.topk_group == 4 &&
               strcmp(cfg.topk_method, "noaux_tc") == 0 &&
               strcmp(cfg.scoring_func, "sigmoid") == 0 && cfg.norm_topk_prob &&
               cfg.routed_scaling_factor == 2.5,
           "MoE: 256 routed + 1 shared, top-8 of 4/8 groups, noaux_tc sigmoid, x2.5");
    tap_ok(strcmp(cfg.rope_type, "yarn") == 0 && cfg.rope_factor == 40.0 &&
               cfg.rope_original_max_pos == 4096 && cfg.rope_beta_fast == 32.0 &&
               cfg.rope_beta_slow == 1.0 && cfg.rope_mscale == 1.0 &&
               cfg.rope_mscale_all_dim == 1.0 && cfg.rope_theta == 10000.0 &&
               cfg.max_position_embeddings == 163840,
           "RoPE: yarn x40 of 4096, beta 32/1, mscale 1/1, theta 10000, 163840 positions");
    tap_ok(cfg.index_n_heads == 64 && cfg.index_head_dim == 128 && cfg.index_topk == 2048 &&
               cfg.num_nextn_predict_layers == 1 && cfg.rms_norm_eps == 1e-6,
           "DSA 64x128 top-2048, 1 MTP layer, eps 1e-6");
    tap_ok(cfg.fp8 && cfg.fp8_block[0] == 128 && cfg.fp8_block[1] == 128 &&
               strcmp(cfg.scale_fmt, "ue8m0") == 0 && strcmp(cfg.torch_dtype, "bfloat16") == 0 &&
               !cfg.attention_bias && !cfg.tie_word_embeddings && cfg.bos_token_id == 0 &&
               cfg.eos_token_id == 1,
           "storage: fp8 [128,128] ue8m0, bfloat16, untied, bos 0 eos 1");
    tap_ok(!mt_config_layer_is_moe(&cfg, 0) && !mt_config_layer_is_moe(&cfg, 2) &&
               mt_config_layer_is_moe(&cfg, 3) && mt_config_layer_is_moe(&cfg, 60) &&
               mt_config_layer_is_moe(&cfg, 61) && !mt_config_layer_is_moe(&cfg, 62),
           "layers 0-2 dense, 3-60 MoE, MTP layer 61 MoE, 62 does not exist");
    mt_config_default_v32(&want);
    d = cfg_diff(&cfg, &want);
    tap_ok(d == NULL, "the file equals mt_config_default_v32 (first difference: %s)",
           d ? d : "none");
    tap_ok(fabs(mt_config_softmax_scale(&cfg) - 0.1352338) < 5e-8,
           "softmax scale %.9f = 0.1352338 (spec 1.3)", mt_config_softmax_scale(&cfg));
    tap_ok(fabs(mt_config_index_score_scale(&cfg) - 0.01104854) < 5e-9 &&
               mt_config_rope_attn_factor(&cfg) == 1.0 && mt_config_qk_head_dim(&cfg) == 192,
           "indexer scale 0.01104854, cos/sin factor 1, qk head 192");
}

static void
test_transformers5(void)
{
    struct mt_model_config real;
    struct mt_model_config t5;
    mt_status_t st;
    const char *d;

    mt_config_load(tap_data_path("deepseek-v3.2/config.json"), &real);
    st = mt_config_load(tap_data_path("configs/transformers5-v3.2.json"), &t5);
    tap_ok(st == MT_OK,
           "transformers 5 layout (rope_parameters, mlp_layer_types, dtype) parses: %s",
           mt_last_error());
    d = cfg_diff(&t5, &real);
    tap_ok(st == MT_OK && d == NULL, "... to the same struct (first difference: %s)",
           d ? d : "none");
}

static void
test_defaults(void)
{
    struct mt_model_config cfg;
    mt_status_t st;

    st = parse_str("{\"model_type\": \"deepseek_v32\"}", &cfg);
    tap_ok(st == MT_OK && cfg.hidden_size == 7168 && cfg.num_hidden_layers == 61 &&
               cfg.n_group == 8 && cfg.topk_group == 4 && cfg.index_topk == 2048 &&
               cfg.q_lora_rank == 1536 && !mt_config_layer_is_moe(&cfg, 2) &&
               mt_config_layer_is_moe(&cfg, 3),
           "an empty config takes DeepseekV32Config's 671B defaults");
    tap_ok(st == MT_OK && !cfg.fp8 && cfg.num_nextn_predict_layers == 0 &&
               strcmp(cfg.rope_type, "default") == 0 && cfg.rope_factor == 1.0,
           "... with no FP8, no MTP layer, plain RoPE");
    tap_ok(st == MT_OK && strstr(cfg.defaulted, "hidden_size, ") == cfg.defaulted &&
               strstr(cfg.defaulted, "vocab_size") != NULL &&
               strstr(cfg.defaulted, "q_lora_rank") != NULL &&
               strstr(cfg.defaulted, "num_hidden_layers") != NULL,
           "... and it says which fields it left out: %s", cfg.defaulted);
    st = parse_str("{\"hidden_size\": 256, \"q_lora_rank\": 64}", &cfg);
    tap_ok(st == MT_OK && strstr(cfg.defaulted, "hidden_size") == NULL &&
               strstr(cfg.defaulted, "q_lora_rank") == NULL &&
               strstr(cfg.defaulted, "vocab_size") != NULL,
           "fields given are not among them: %s", cfg.defaulted);
    st = parse_str("{\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, "
                   "\"original_max_position_embeddings\": 4096}}",
                   &cfg);
    tap_ok(st == MT_OK && cfg.rope_mscale == 0.0 && cfg.rope_mscale_all_dim == 0.0 &&
               fabs(mt_config_softmax_scale(&cfg) - 1.0 / sqrt(192.0)) < 1e-12 &&
               fabs(mt_config_rope_attn_factor(&cfg) - (0.1 * log(40.0) + 1.0)) < 1e-12,
           "yarn without mscale keys: no softmax correction, cos/sin factor 0.1 ln 40 + 1 (HF)");
    st = parse_str("{\"mlp_layer_types\": [\"dense\", \"sparse\", \"dense\", \"sparse\"], "
                   "\"num_hidden_layers\": 4, \"eos_token_id\": [1, 2]}",
                   &cfg);
    tap_ok(st == MT_OK && !cfg.layer_is_moe[0] && cfg.layer_is_moe[1] && !cfg.layer_is_moe[2] &&
               cfg.layer_is_moe[3] && cfg.first_k_dense_replace == 1 && cfg.eos_token_id == 1,
           "mlp_layer_types sets each layer; first_k_dense_replace follows it; eos list");
    /* mlp_layer_types wins over a first_k_dense_replace it contradicts, with a warning; an
       absent first_k_dense_replace contradicts nothing */
    {
        char log[512];

        st = parse_logged("{\"mlp_layer_types\": [\"dense\", \"sparse\", \"sparse\", \"sparse\"], "
                          "\"num_hidden_layers\": 4, \"first_k_dense_replace\": 2}",
                          &cfg, log, sizeof(log));
        tap_ok(st == MT_OK && cfg.first_k_dense_replace == 1 &&
                   strstr(log, "mlp_layer_types starts with 1 dense layers but "
                               "first_k_dense_replace is 2; mlp_layer_types wins") != NULL,
               "mlp_layer_types contradicting first_k_dense_replace: it wins, with a warning: %s",
               log);
        st = parse_logged("{\"mlp_layer_types\": [\"dense\", \"sparse\", \"sparse\", \"sparse\"], "
                          "\"num_hidden_layers\": 4}",
                          &cfg, log, sizeof(log));
        tap_ok(st == MT_OK && cfg.first_k_dense_replace == 1 && log[0] == '\0',
               "mlp_layer_types without first_k_dense_replace: no warning ('%s')", log);
    }
    /* modeling_deepseek: MoE where layer >= first_k_dense_replace, layer % moe_layer_freq == 0 */
    st = parse_str("{\"moe_layer_freq\": 2}", &cfg);
    tap_ok(st == MT_OK && !mt_config_layer_is_moe(&cfg, 2) && !mt_config_layer_is_moe(&cfg, 3) &&
               mt_config_layer_is_moe(&cfg, 4) && !mt_config_layer_is_moe(&cfg, 59) &&
               mt_config_layer_is_moe(&cfg, 60),
           "moe_layer_freq 2: of the layers from 3 on, only the even ones are MoE: %s",
           st == MT_OK ? "ok" : mt_last_error());
    /* HF's yarn: original_max_position_embeddings absent means max_position_embeddings */
    st = parse_str("{\"max_position_embeddings\": 8192, "
                   "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}}",
                   &cfg);
    tap_ok(st == MT_OK && cfg.rope_original_max_pos == 8192,
           "yarn without original_max_position_embeddings takes max_position_embeddings (%d): %s",
           cfg.rope_original_max_pos, st == MT_OK ? "ok" : mt_last_error());
    /* HF _compute_yarn_parameters: mscale_all_dim alone scales softmax, cos/sin get mscale(s) */
    st = parse_str("{\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, "
                   "\"original_max_position_embeddings\": 4096, \"mscale_all_dim\": 1}}",
                   &cfg);
    tap_ok(st == MT_OK &&
               fabs(mt_config_rope_attn_factor(&cfg) - (0.1 * log(40.0) + 1.0)) < 1e-12 &&
               fabs(mt_config_softmax_scale(&cfg) -
                    pow(0.1 * log(40.0) + 1.0, 2) / sqrt(192.0)) < 1e-12,
           "yarn with mscale_all_dim only: cos/sin factor 0.1 ln 40 + 1, softmax scale times its "
           "square");
    /* The edges that are allowed: yarn's factor 1, FP8 without scale_fmt, ids up to vocab - 1. */
    st = parse_str("{\"vocab_size\": 1000, \"bos_token_id\": 999, \"eos_token_id\": 999, "
                   "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 1}, "
                   "\"quantization_config\": {\"quant_method\": \"fp8\"}}",
                   &cfg);
    tap_ok(st == MT_OK && cfg.fp8 && cfg.scale_fmt[0] == '\0' && cfg.rope_factor == 1.0 &&
               cfg.bos_token_id == 999,
           "yarn factor 1, FP8 with no scale_fmt, bos/eos vocab_size - 1 are accepted: %s",
           st == MT_OK ? "ok" : mt_last_error());
    /* a config whose writer gives every number as a real: 2.0 is the id 2, as for sizes */
    st = parse_str("{\"vocab_size\": 1000.0, \"bos_token_id\": 0.0, \"eos_token_id\": [1.0, "
                   "2.0]}",
                   &cfg);
    tap_ok(st == MT_OK && cfg.vocab_size == 1000 && cfg.bos_token_id == 0 && cfg.eos_token_id == 1,
           "bos_token_id 0.0 and eos_token_id [1.0, 2.0] are the ids 0 and 1: %s",
           st == MT_OK ? "ok" : mt_last_error());
    st = parse_str("{\"eos_token_id\": 2.0}", &cfg);
    tap_ok(st == MT_OK && cfg.eos_token_id == 2, "eos_token_id 2.0 is the id 2: %s",
           st == MT_OK ? "ok" : mt_last_error());
    /* JSON null is "absent": the default, and named as left out */
    st = parse_str("{\"hidden_size\": null, \"vocab_size\": 1000}", &cfg);
    tap_ok(st == MT_OK && cfg.hidden_size == 7168 && strstr(cfg.defaulted, "hidden_size") != NULL &&
               strstr(cfg.defaulted, "vocab_size") == NULL,
           "a null hidden_size takes the default 7168 and is named as left out: %s",
           st == MT_OK ? cfg.defaulted : mt_last_error());
    /* an int field holds up to INT_MAX */
    st = parse_str("{\"max_position_embeddings\": 2147483647, \"index_topk\": 2147483647}", &cfg);
    tap_ok(st == MT_OK && cfg.max_position_embeddings == INT_MAX && cfg.index_topk == INT_MAX,
           "max_position_embeddings and index_topk of 2147483647 (INT_MAX) are accepted: %s",
           st == MT_OK ? "ok" : mt_last_error());
    /* the relations' edges that are allowed: no MoE layer, every group kept and every expert of
       them routed (4 x 8 = 32), an indexer head no wider than the rope part */
    st = parse_str("{\"num_hidden_layers\": 4, \"first_k_dense_replace\": 4, \"n_group\": 8, "
                   "\"topk_group\": 8, \"n_routed_experts\": 32, \"num_experts_per_tok\": 32, "
                   "\"index_head_dim\": 64, \"qk_rope_head_dim\": 64}",
                   &cfg);
    tap_ok(st == MT_OK && !mt_config_layer_is_moe(&cfg, 3) && cfg.topk_group == 8 &&
               cfg.num_experts_per_tok == 32 && cfg.index_head_dim == 64,
           "first_k_dense_replace = num_hidden_layers, topk_group = n_group, "
           "num_experts_per_tok = all kept experts, index_head_dim = qk_rope_head_dim: %s",
           st == MT_OK ? "ok" : mt_last_error());
    /* the low ends that are allowed: every layer MoE, an indexer keeping a single token */
    st = parse_str("{\"first_k_dense_replace\": 0, \"index_topk\": 1}", &cfg);
    tap_ok(st == MT_OK && cfg.first_k_dense_replace == 0 && mt_config_layer_is_moe(&cfg, 0) &&
               cfg.index_topk == 1,
           "first_k_dense_replace 0 (layer 0 is MoE) and index_topk 1 are accepted: %s",
           st == MT_OK ? "ok" : mt_last_error());
    /* every layer dense: no MoE layer, first_k_dense_replace is all of them */
    st = parse_str("{\"mlp_layer_types\": [\"dense\", \"dense\"], \"num_hidden_layers\": 2}", &cfg);
    tap_ok(st == MT_OK && cfg.first_k_dense_replace == 2 && !mt_config_layer_is_moe(&cfg, 1),
           "mlp_layer_types all dense: first_k_dense_replace 2 of 2 layers: %s",
           st == MT_OK ? "ok" : mt_last_error());
    /* rope_parameters carries rope_theta, and wins over the top-level one */
    st = parse_str("{\"rope_theta\": 10000, "
                   "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 50000}}",
                   &cfg);
    tap_ok(st == MT_OK && cfg.rope_theta == 50000.0,
           "rope_parameters.rope_theta 50000 wins over rope_theta 10000 (%g): %s", cfg.rope_theta,
           st == MT_OK ? "ok" : mt_last_error());
    /* transformers 5 spells torch_dtype "dtype" */
    st = parse_str("{\"dtype\": \"float32\"}", &cfg);
    tap_ok(st == MT_OK && strcmp(cfg.torch_dtype, "float32") == 0,
           "transformers 5's \"dtype\": \"float32\" sets torch_dtype (%s): %s", cfg.torch_dtype,
           st == MT_OK ? "ok" : mt_last_error());
    /* issue 9 (14): tools that write every number as a double write 256 as 256.0 */
    st = parse_str("{\"hidden_size\": 256.0, \"num_hidden_layers\": 4e0}", &cfg);
    tap_ok(st == MT_OK && cfg.hidden_size == 256 && cfg.num_hidden_layers == 4,
           "an integral real (256.0, 4e0) is the integer it spells: %s",
           st == MT_OK ? "ok" : mt_last_error());
}

static void
test_bad(void)
{
    struct mt_model_config cfg;
    char rel[128];
    mt_status_t st;

    mt_log_set_quiet(true);
    for (size_t i = 0; i < sizeof(bad_configs) / sizeof(bad_configs[0]); i++) {
        snprintf(rel, sizeof(rel), "configs/%s", bad_configs[i].file);
        st = mt_config_load(tap_data_path(rel), &cfg);
        tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), bad_configs[i].field) != NULL &&
                   strstr(mt_last_error(), bad_configs[i].file) != NULL,
               "%s: MT_ERR_FORMAT naming file and %s: %s", bad_configs[i].file,
               bad_configs[i].field, mt_last_error());
    }
    st = mt_config_load(tap_data_path("configs/no-such-config.json"), &cfg);
    tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "no-such-config.json") != NULL,
           "missing file: MT_ERR_IO naming it: %s", mt_last_error());
    st = parse_str("[1, 2]", &cfg);
    tap_ok(st == MT_ERR_FORMAT, "a JSON array is not a config: %s", mt_last_error());
    st = parse_str("{\"n_routed_experts\": 8, \"n_group\": 8, \"topk_group\": 4, "
                   "\"num_experts_per_tok\": 2}",
                   &cfg);
    tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "'n_group'") != NULL,
           "one expert per group cannot be scored by noaux_tc: %s", mt_last_error());
    st = parse_str("{\"indexer_rope_interleave\": true}", &cfg);
    tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "indexer_rope_interleave") != NULL,
           "GLM-5's interleaved indexer RoPE is refused: %s", mt_last_error());
    st = parse_str("{\"hidden_size\": 99999999999}", &cfg);
    tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "'hidden_size'") != NULL,
           "an integer beyond int: %s", mt_last_error());
    st = parse_str("{\"rope_parameters\": {\"rope_type\": \"yarn\", \"type\": \"linear\", "
                   "\"factor\": 4}}",
                   &cfg);
    tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "rope_type") != NULL,
           "contradicting rope_type and type: %s", mt_last_error());
    st = parse_str("{\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, "
                   "\"original_max_position_embeddings\": 4096, \"mscale\": 1, "
                   "\"mscale_all_dim\": 1e300}}",
                   &cfg);
    tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "mscale_all_dim") != NULL,
           "an mscale_all_dim whose softmax scale overflows to inf: %s", mt_last_error());
    /* finite as doubles, not as the floats the engines use them as (or ln(theta) = 0) */
    st = parse_str("{\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, "
                   "\"original_max_position_embeddings\": 4096, \"mscale\": 1e100, "
                   "\"mscale_all_dim\": 1}}",
                   &cfg);
    tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "mscale") != NULL,
           "an mscale whose RoPE attention factor is inf as a float: %s", mt_last_error());
    st = parse_str("{\"routed_scaling_factor\": 1e39}", &cfg);
    tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "'routed_scaling_factor'") != NULL,
           "a routed_scaling_factor past float's range: %s", mt_last_error());
    st = parse_str("{\"rope_theta\": 1}", &cfg);
    tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "'rope_theta'") != NULL,
           "rope_theta 1 (YaRN divides by its log): %s", mt_last_error());
    /* Each check at its edge: the first value past a bound, and what the message must say. */
    for (size_t i = 0; i < sizeof(bad_inline) / sizeof(bad_inline[0]); i++) {
        st = parse_str(bad_inline[i].json, &cfg);
        tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), bad_inline[i].phrase) != NULL,
               "%s: %s", bad_inline[i].json, mt_last_error());
    }
    /* What JSON cannot spell reaches mt_config_validate from code: inf, and a 0 yarn length. */
    {
        struct mt_model_config c;

        mt_config_default_v32(&c);
        c.rope_theta = INFINITY;
        st = mt_config_validate(&c, "v");
        tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "'rope_theta' is inf") != NULL,
               "validate: rope_theta inf: %s", mt_last_error());
        mt_config_default_v32(&c);
        c.rope_factor = INFINITY;
        st = mt_config_validate(&c, "v");
        tap_ok(st == MT_ERR_FORMAT &&
                   strstr(mt_last_error(), "'rope_scaling.factor' is inf") != NULL,
               "validate: yarn factor inf: %s", mt_last_error());
        mt_config_default_v32(&c);
        c.num_hidden_layers = MT_MAX_LAYERS + 1;
        c.num_nextn_predict_layers = 0;
        st = mt_config_validate(&c, "v");
        tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "'num_hidden_layers' is 257") != NULL,
               "validate: num_hidden_layers 257: %s", mt_last_error());
        mt_config_default_v32(&c);
        c.rope_original_max_pos = 0;
        st = mt_config_validate(&c, "v");
        tap_ok(st == MT_ERR_FORMAT &&
                   strstr(mt_last_error(), "original_max_position_embeddings' is 0") != NULL,
               "validate: yarn original_max_position_embeddings 0: %s", mt_last_error());
    }
    mt_log_set_quiet(false);
}

static void
test_save(void)
{
    struct mt_model_config cfg;
    struct mt_model_config back;
    const char *dir = tap_tmpdir();
    char path[512];
    mt_status_t st;
    const char *d;

    snprintf(path, sizeof(path), "%s/config.json", dir);
    mt_config_default_v32(&cfg);
    st = mt_config_save(&cfg, path);
    tap_ok(st == MT_OK, "mt_config_save writes %s", path);
    st = mt_config_load(path, &back);
    d = cfg_diff(&cfg, &back);
    tap_ok(st == MT_OK && d == NULL, "the V3.2 config round-trips (first difference: %s)",
           d ? d : "none");
    {
        char text[8192];
        size_t got = 0;
        FILE *f = fopen(path, "rb");

        if (f != NULL) {
            got = fread(text, 1, sizeof(text) - 1, f);
            fclose(f);
        }
        text[got] = '\0';
        /* DeepSeek's own layout: the MoE pattern said by first_k_dense_replace alone */
        tap_ok(got > 0 && strstr(text, "\"first_k_dense_replace\": 3") != NULL &&
                   strstr(text, "mlp_layer_types") == NULL,
               "... written in DeepSeek's layout, without mlp_layer_types");
    }

    /* A pattern first_k_dense_replace cannot express is written as mlp_layer_types. */
    cfg.num_hidden_layers = 5;
    cfg.first_k_dense_replace = 1;
    cfg.num_nextn_predict_layers = 0;
    cfg.fp8 = false;
    cfg.scale_fmt[0] = '\0';
    cfg.rms_norm_eps = 1.0 / 3.0;
    memset(cfg.layer_is_moe, 0, sizeof(cfg.layer_is_moe));
    cfg.layer_is_moe[1] = cfg.layer_is_moe[2] = cfg.layer_is_moe[4] = true;
    st = mt_config_save(&cfg, path);
    st = st == MT_OK ? mt_config_load(path, &back) : st;
    d = cfg_diff(&cfg, &back);
    tap_ok(st == MT_OK && d == NULL,
           "a custom MoE pattern, no FP8, an eps of 1/3 round-trip (first difference: %s)",
           d ? d : "none");
    /* An integral value too large for an int64 JSON integer is still written as a number. */
    cfg.rope_theta = 1e20;
    st = mt_config_save(&cfg, path);
    st = st == MT_OK ? mt_config_load(path, &back) : st;
    tap_ok(st == MT_OK && back.rope_theta == 1e20, "rope_theta 1e20 round-trips (read %g): %s",
           back.rope_theta, st == MT_OK ? "ok" : mt_last_error());
    mt_log_set_quiet(true);
    st = mt_config_save(&cfg, "/nonexistent-moetier-dir/config.json");
    tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "/nonexistent-moetier-dir") != NULL,
           "saving into a missing directory: MT_ERR_IO: %s", mt_last_error());
    mt_log_set_quiet(false);
    tap_rmtree(dir);
}

int
main(void)
{
    tap_plan(0);
    test_real();
    test_transformers5();
    test_defaults();
    test_bad();
    test_save();
    return tap_done();
}
