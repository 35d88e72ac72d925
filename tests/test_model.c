/* SPDX-License-Identifier: MIT */
/*
 * test_model.c - the tensor inventory, the size model and the checkpoint registry.
 *
 * Acceptance: for DeepSeek-V3.2's own config.json the size model reproduces spec 3.5 to the byte
 * (44,050,944 B per routed expert, 654,068,416,512 B of routed experts, 19,963,965,120 B of the
 * rest) and the inventory has the checkpoint's 92,425 tensors. Then tiny checkpoints written with
 * the safetensors writer: a good one opens (FP8 with MTP, BF16 without); a wrong shape, a wrong
 * dtype, a missing tensor and a fused expert layout each fail naming the tensor.
 */
#include <config.h>

#include "runtime/model/model.h"
#include "tests/tap.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct mt_tensor_spec *
find_spec(const struct mt_tensor_spec *specs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(specs[i].name, name) == 0) {
            return &specs[i];
        }
    }
    return NULL;
}

static bool
spec_is(const struct mt_tensor_spec *s, enum mt_tensor_kind kind, int64_t r, int64_t c)
{
    return s != NULL && s->kind == kind && s->shape[0] == r &&
           (c == 0 ? s->ndim == 1 : (s->ndim == 2 && s->shape[1] == c));
}

static void
test_real_sizes(void)
{
    struct mt_model_config cfg;
    struct mt_model_sizes sz;
    struct mt_tensor_spec *specs = NULL;
    size_t n = 0;
    uint64_t nelem = 0;
    uint64_t bytes = 0;
    uint64_t main_params = 0;
    mt_status_t st;

    st = mt_config_load(tap_data_path("deepseek-v3.2/config.json"), &cfg);
    st = st == MT_OK ? mt_model_sizes_compute(&cfg, true, &sz) : st;
    tap_ok(st == MT_OK, "sizes of the real config computed: %s", mt_last_error());
    if (st != MT_OK) {
        return;
    }
    tap_ok(sz.routed_expert_bytes == 44050944ULL, "one routed expert: %llu B (spec: 44,050,944)",
           (unsigned long long)sz.routed_expert_bytes);
    tap_ok(sz.routed_expert_slot_bytes == sz.routed_expert_bytes,
           "as a GPU slot holds it, the same bytes (each tensor a multiple of 256 bytes)");
    tap_ok(sz.routed_bytes == 654068416512ULL,
           "routed experts, main model: %llu B "
           "(spec: 654,068,416,512)",
           (unsigned long long)sz.routed_bytes);
    tap_ok(sz.other_bytes == 19963965120ULL,
           "everything else, main model: %llu B "
           "(spec: 19,963,965,120)",
           (unsigned long long)sz.other_bytes);
    tap_ok(sz.routed_bytes + sz.other_bytes == 674032381632ULL,
           "main model total 674,032,381,632 B");
    tap_ok(sz.gpu_other_bytes == 18110607040ULL,
           "on the GPU engine's device: all but the embedding table, %llu B (19,963,965,120 - "
           "129,280 x 7,168 x 2)",
           (unsigned long long)sz.gpu_other_bytes);
    tap_ok(sz.mtp_bytes == 15438725568ULL, "MTP layer: %llu B (spec: 15,438,725,568)",
           (unsigned long long)sz.mtp_bytes);
    tap_ok(sz.n_moe_layers == 58, "58 MoE layers");
    tap_ok(sz.bytes[MT_ROLE_EMBED] == 1853358080ULL && sz.bytes[MT_ROLE_HEAD] == 1853358080ULL,
           "embed and lm_head 1,853,358,080 B each (bf16)");
    tap_ok(sz.params[MT_ROLE_INDEXER] == 61ULL * 13959424ULL,
           "indexer 13,959,424 params per layer (wq_b + wk + weights_proj + LN)");
    for (int r = 0; r < MT_ROLE_COUNT; r++) {
        main_params += sz.params[r];
    }
    tap_ok(main_params > 671870000000ULL && main_params < 671890000000ULL,
           "main model weights %llu params (spec: 671.88B)", (unsigned long long)main_params);
    tap_ok(sz.token_bytes_routed == 8ULL * 44050944ULL * 58ULL &&
               sz.token_bytes_always == 19963965120ULL - 1853358080ULL + 7168ULL * 2,
           "per token: %llu always-on (all but the embedding table) + %llu routed",
           (unsigned long long)sz.token_bytes_always, (unsigned long long)sz.token_bytes_routed);
    tap_ok(sz.kv_bytes_per_token == 78324ULL, "KV cache 78,324 B per token (1,284 B x 61 layers)");

    st = mt_inventory_build(&cfg, true, true, &specs, &n);
    tap_ok(st == MT_OK && n == 92425, "inventory with MTP: %zu tensors (checkpoint: 92,425)", n);
    for (size_t i = 0; i < n; i++) {
        uint64_t e = (uint64_t)specs[i].shape[0] * (specs[i].ndim == 2 ? specs[i].shape[1] : 1);
        uint64_t size = specs[i].kind == MT_KIND_LINEAR  ? 1
                        : specs[i].kind == MT_KIND_DENSE ? 2
                                                         : 4;

        nelem += e;
        bytes += e * size;
    }
    tap_ok(nelem == 685396921376ULL && bytes == 689471107200ULL,
           "all tensors: %llu elements, %llu bytes (checkpoint: 685,396,921,376 / 689,471,107,200)",
           (unsigned long long)nelem, (unsigned long long)bytes);
    tap_ok(n > 0 && strcmp(specs[0].name, "model.embed_tokens.weight") == 0 &&
               specs[0].role == MT_ROLE_EMBED,
           "first tensor model.embed_tokens.weight");
    tap_ok(spec_is(find_spec(specs, n, "lm_head.weight"), MT_KIND_DENSE, 129280, 7168) &&
               find_spec(specs, n, "model.lm_head.weight") == NULL,
           "lm_head.weight has no model. prefix, [129280, 7168]");
    tap_ok(spec_is(find_spec(specs, n, "model.layers.0.self_attn.kv_a_proj_with_mqa.weight"),
                   MT_KIND_LINEAR, 576, 7168) &&
               spec_is(find_spec(specs, n,
                                 "model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv"),
                       MT_KIND_SCALE, 5, 56) &&
               spec_is(find_spec(specs, n, "model.layers.60.self_attn.indexer.wk.weight_scale_inv"),
                       MT_KIND_SCALE, 1, 56),
           "partial scale blocks: kv_a [576,7168] -> [5,56], indexer wk -> [1,56]");
    tap_ok(spec_is(find_spec(specs, n, "model.layers.3.mlp.experts.255.down_proj.weight"),
                   MT_KIND_LINEAR, 7168, 2048) &&
               spec_is(
                   find_spec(specs, n, "model.layers.3.mlp.experts.255.down_proj.weight_scale_inv"),
                   MT_KIND_SCALE, 56, 16) &&
               find_spec(specs, n, "model.layers.2.mlp.experts.0.up_proj.weight") == NULL &&
               spec_is(find_spec(specs, n, "model.layers.2.mlp.down_proj.weight"), MT_KIND_LINEAR,
                       7168, 18432),
           "experts one by one from layer 3; layer 2 is dense");
    tap_ok(
        spec_is(find_spec(specs, n, "model.layers.61.eh_proj.weight"), MT_KIND_DENSE, 7168,
                14336) &&
            spec_is(find_spec(specs, n, "model.layers.61.shared_head.head.weight"), MT_KIND_DENSE,
                    129280, 7168) &&
            spec_is(find_spec(specs, n, "model.layers.61.embed_tokens.weight"), MT_KIND_DENSE,
                    129280, 7168) &&
            spec_is(find_spec(specs, n, "model.layers.61.enorm.weight"), MT_KIND_VECTOR, 7168, 0) &&
            spec_is(find_spec(specs, n, "model.layers.61.mlp.gate.e_score_correction_bias"),
                    MT_KIND_VECTOR, 256, 0),
        "MTP extras eh_proj, shared_head.head, embed_tokens, enorm, and its MoE block");
    free(specs);
    st = mt_inventory_build(&cfg, true, false, &specs, &n);
    tap_ok(st == MT_OK && n == 92425 - 1571, "without MTP: %zu tensors (92,425 - 1,571)", n);
    free(specs);
}

/* A V3.2-shaped model small enough to write: spec 5.2's suggested CI shape. */
static void
tiny_config(struct mt_model_config *cfg, bool fp8)
{
    mt_config_default_v32(cfg);
    cfg->hidden_size = 256;
    cfg->num_hidden_layers = 4;
    cfg->first_k_dense_replace = 1;
    cfg->intermediate_size = 512;
    cfg->moe_intermediate_size = 64;
    cfg->vocab_size = 512;
    cfg->num_attention_heads = 8;
    cfg->num_key_value_heads = 8;
    cfg->q_lora_rank = 64;
    cfg->kv_lora_rank = 64;
    cfg->qk_nope_head_dim = 32;
    cfg->qk_rope_head_dim = 32;
    cfg->v_head_dim = 32;
    cfg->n_routed_experts = 8;
    cfg->num_experts_per_tok = 2;
    cfg->n_group = 2;
    cfg->topk_group = 1;
    cfg->index_n_heads = 4;
    cfg->index_head_dim = 64;
    cfg->index_topk = 16;
    cfg->fp8 = fp8;
    if (!fp8) {
        cfg->scale_fmt[0] = '\0';
    }
    for (int l = 0; l < MT_MAX_LAYERS; l++) {
        cfg->layer_is_moe[l] = l >= 1 && l < 4;
    }
}

static void
test_tiny_inventory(void)
{
    struct mt_model_config cfg;
    struct mt_tensor_spec *specs = NULL;
    size_t n = 0;
    mt_status_t st;

    tiny_config(&cfg, true);
    tap_ok(mt_config_validate(&cfg, "tiny") == MT_OK, "the tiny config is valid: %s",
           mt_last_error());
    st = mt_inventory_build(&cfg, true, false, &specs, &n);
    /* 3 globals + dense layer (21 + 6) + 3 MoE layers (21 + 2 + 8 x 6 + 6) */
    tap_ok(st == MT_OK && n == 261, "tiny FP8 inventory: %zu tensors (261)", n);
    tap_ok(spec_is(find_spec(specs, n, "model.layers.1.self_attn.q_b_proj.weight_scale_inv"),
                   MT_KIND_SCALE, 4, 1) &&
               spec_is(find_spec(specs, n, "model.layers.3.mlp.shared_experts.up_proj.weight"),
                       MT_KIND_LINEAR, 64, 256) &&
               spec_is(find_spec(specs, n, "model.layers.0.self_attn.kv_b_proj.weight"),
                       MT_KIND_LINEAR, 8 * 64, 64),
           "tiny shapes: q_b scale [4,1], shared up [64,256], kv_b [512,64]");
    free(specs);
    st = mt_inventory_build(&cfg, false, true, &specs, &n);
    /* no scales: 3 + (14 + 3) + 3 x (14 + 2 + 24 + 3) + MTP (6 + 14 + 29) */
    tap_ok(st == MT_OK && n == 149 + 49, "tiny BF16 inventory with MTP: %zu tensors (198)", n);
    free(specs);
    /* two MTP layers follow the 4 main ones: layers 4 and 5, 49 tensors each */
    cfg.num_nextn_predict_layers = 2;
    st = mt_inventory_build(&cfg, false, true, &specs, &n);
    tap_ok(st == MT_OK && n == 149 + 2 * 49 &&
               find_spec(specs, n, "model.layers.4.eh_proj.weight") != NULL &&
               find_spec(specs, n, "model.layers.5.eh_proj.weight") != NULL &&
               find_spec(specs, n, "model.layers.5.mlp.experts.7.down_proj.weight") != NULL,
           "tiny BF16 inventory with 2 MTP layers: %zu tensors (247), layers 4 and 5", n);
    free(specs);
    cfg.num_nextn_predict_layers = 1;
    cfg.tie_word_embeddings = true;
    st = mt_inventory_build(&cfg, false, false, &specs, &n);
    tap_ok(st == MT_OK && n == 149 - 1 && find_spec(specs, n, "lm_head.weight") == NULL,
           "tied head: %zu tensors (148)", n);
    free(specs);
    specs = NULL;
    /* The FFN kind is the config's per-layer one (mlp_layer_types: dense, sparse, dense, sparse),
       not "first_k_dense_replace and on": layer 2 is dense. */
    tiny_config(&cfg, true);
    cfg.layer_is_moe[2] = false;
    st = mt_inventory_build(&cfg, true, false, &specs, &n);
    /* 3 globals + 2 dense layers (21 + 6) + 2 MoE layers (21 + 2 + 8 x 6 + 6) */
    tap_ok(st == MT_OK && n == 211 &&
               spec_is(find_spec(specs, n, "model.layers.2.mlp.gate_proj.weight"), MT_KIND_LINEAR,
                       512, 256) &&
               find_spec(specs, n, "model.layers.2.mlp.gate.weight") == NULL &&
               find_spec(specs, n, "model.layers.3.mlp.gate.weight") != NULL,
           "dense, sparse, dense, sparse: layer 2 has a dense MLP and no router (%zu tensors, 211)",
           n);
    free(specs);
    specs = NULL;
    /* DeepSeek: the shared experts are one SwiGLU of width moe_intermediate_size x their count */
    tiny_config(&cfg, true);
    cfg.n_shared_experts = 2;
    st = mt_inventory_build(&cfg, true, false, &specs, &n);
    tap_ok(st == MT_OK &&
               spec_is(find_spec(specs, n, "model.layers.1.mlp.shared_experts.gate_proj.weight"),
                       MT_KIND_LINEAR, 128, 256) &&
               spec_is(find_spec(specs, n, "model.layers.1.mlp.shared_experts.down_proj.weight"),
                       MT_KIND_LINEAR, 256, 128),
           "2 shared experts: one SwiGLU of width 2 x 64 (gate [128, 256], down [256, 128])");
    free(specs);
    specs = NULL;
    cfg.n_shared_experts = 1;
    cfg.tie_word_embeddings = true;
    /* No shared expert: refused by the config check, not later as a missing weight. */
    cfg.n_shared_experts = 0;
    mt_log_set_quiet(true);
    st = mt_inventory_build(&cfg, false, false, &specs, &n);
    mt_log_set_quiet(false);
    tap_ok(st == MT_ERR_FORMAT && specs == NULL &&
               strstr(mt_last_error(), "'n_shared_experts' is 0") != NULL,
           "no shared experts is refused up front: %s", mt_last_error());
    free(specs);
}

/* ---- tiny checkpoints ------------------------------------------------------------------------ */

/* mt_model_open(dir) with stderr sent to a file; what was written there goes to log. */
static mt_status_t
open_logged(const char *dir, struct mt_model **m, char *log, size_t size)
{
    const char *tmp = tap_tmpdir();
    char path[512];
    mt_status_t st;
    int saved;

    snprintf(path, sizeof(path), "%s/stderr.txt", tmp);
    saved = tap_stderr_to(path);
    st = mt_model_open(dir, m);
    tap_stderr_restore(saved);
    tap_read_text(path, log, size);
    tap_rmtree(tmp);
    return st;
}

enum damage {
    DAMAGE_NONE, DAMAGE_DROP, DAMAGE_SHAPE, DAMAGE_DTYPE, DAMAGE_FUSE, DAMAGE_EXTRA,
    DAMAGE_AS_BF16, /* the victim stored BF16 */
    DAMAGE_AS_F8,   /* the victim stored F8_E4M3 */
    DAMAGE_AS_2D,   /* the victim, a vector [n], stored [n, 1] */
    DAMAGE_FUSE_W,  /* as FUSE, the fused tensors named with ".weight" */
    DAMAGE_EH0,     /* layer 0 also has the MTP layer's eh_proj */
    DAMAGE_F16,     /* every linear stored F16 (a valid checkpoint) */
    DAMAGE_AS_F16,  /* the victim stored F16 */
    DAMAGE_EH3,     /* layer 3, the last main one, also has the MTP layer's eh_proj */
};

static enum mt_dtype
spec_dtype(const struct mt_tensor_spec *s, bool fp8)
{
    switch (s->kind) {
    case MT_KIND_LINEAR: return fp8 ? MT_DTYPE_F8_E4M3 : MT_DTYPE_BF16;
    case MT_KIND_SCALE: return MT_DTYPE_F32;
    case MT_KIND_VECTOR: return fp8 ? MT_DTYPE_F32 : MT_DTYPE_BF16;
    case MT_KIND_DENSE: return MT_DTYPE_BF16;
    }
    return MT_DTYPE_F32;
}

/*
 * Write config.json + model.safetensors for cfg into dir, with one tensor damaged as asked:
 * dropped, its first dim grown by one, its dtype changed, or (FUSE) layer 1's experts stored the
 * way transformers holds them in memory. EXTRA adds an unknown tensor.
 */
static mt_status_t
write_ckpt(const char *dir, const struct mt_model_config *cfg, bool with_mtp, enum damage damage,
           const char *victim)
{
    static const unsigned char zeros[65536];
    struct mt_tensor_spec *specs = NULL;
    size_t n = 0;
    struct mt_st_writer *w = NULL;
    char path[512];
    uint64_t total = 0;
    mt_status_t st;

    snprintf(path, sizeof(path), "%s/config.json", dir);
    if ((st = mt_config_save(cfg, path)) != MT_OK ||
        (st = mt_inventory_build(cfg, cfg->fp8, with_mtp, &specs, &n)) != MT_OK) {
        free(specs);
        return st;
    }
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    if ((st = mt_st_writer_create(path, &w)) != MT_OK) {
        free(specs);
        return st;
    }
    for (size_t i = 0; i < n && st == MT_OK; i++) {
        struct mt_tensor_spec s = specs[i];
        enum mt_dtype dt = spec_dtype(&s, cfg->fp8);
        bool hit = victim != NULL && strcmp(s.name, victim) == 0;
        uint64_t e;

        if ((hit && damage == DAMAGE_DROP) ||
            ((damage == DAMAGE_FUSE || damage == DAMAGE_FUSE_W) &&
             s.role == MT_ROLE_ROUTED_EXPERT && s.layer == 1)) {
            continue;
        }
        if (hit && damage == DAMAGE_SHAPE) {
            s.shape[0]++;
        }
        if (hit && damage == DAMAGE_DTYPE) {
            dt = s.kind == MT_KIND_LINEAR ? MT_DTYPE_BF16 : MT_DTYPE_I32;
        }
        dt = hit && damage == DAMAGE_AS_BF16 ? MT_DTYPE_BF16 : dt;
        dt = hit && damage == DAMAGE_AS_F8 ? MT_DTYPE_F8_E4M3 : dt;
        dt = hit && damage == DAMAGE_AS_F16 ? MT_DTYPE_F16 : dt;
        dt = damage == DAMAGE_F16 && s.kind == MT_KIND_LINEAR ? MT_DTYPE_F16 : dt;
        if (hit && damage == DAMAGE_AS_2D) {
            s.ndim = 2;
            s.shape[1] = 1;
        }
        e = (uint64_t)s.shape[0] * (s.ndim == 2 ? (uint64_t)s.shape[1] : 1);
        total += e * mt_dtype_size(dt);
        st = mt_st_writer_add(w, s.name, dt, s.ndim, s.shape);
    }
    if (st == MT_OK && (damage == DAMAGE_FUSE || damage == DAMAGE_FUSE_W)) {
        int64_t gu[3] = {cfg->n_routed_experts, 2 * cfg->moe_intermediate_size, cfg->hidden_size};
        int64_t dn[3] = {cfg->n_routed_experts, cfg->hidden_size, cfg->moe_intermediate_size};
        const char *suffix = damage == DAMAGE_FUSE_W ? ".weight" : "";
        char gname[96];
        char dname[96];

        snprintf(gname, sizeof(gname), "model.layers.1.mlp.experts.gate_up_proj%s", suffix);
        snprintf(dname, sizeof(dname), "model.layers.1.mlp.experts.down_proj%s", suffix);
        total += (uint64_t)(gu[0] * gu[1] * gu[2] + dn[0] * dn[1] * dn[2]) * 2;
        st = mt_st_writer_add(w, gname, MT_DTYPE_BF16, 3, gu);
        st = st == MT_OK ? mt_st_writer_add(w, dname, MT_DTYPE_BF16, 3, dn) : st;
    }
    if (st == MT_OK && (damage == DAMAGE_EH0 || damage == DAMAGE_EH3)) {
        int64_t shape[2] = {cfg->hidden_size, 2 * cfg->hidden_size};

        total += (uint64_t)(shape[0] * shape[1]) * 2;
        st = mt_st_writer_add(w,
                              damage == DAMAGE_EH0 ? "model.layers.0.eh_proj.weight"
                                                   : "model.layers.3.eh_proj.weight",
                              MT_DTYPE_BF16, 2, shape);
    }
    if (st == MT_OK && damage == DAMAGE_EXTRA) {
        int64_t shape[1] = {4};

        total += 16;
        st = mt_st_writer_add(w, "model.extra_unknown.weight", MT_DTYPE_F32, 1, shape);
    }
    st = st == MT_OK ? mt_st_writer_meta(w, "format", "pt") : st;
    while (st == MT_OK && total > 0) {
        size_t chunk = total < sizeof(zeros) ? (size_t)total : sizeof(zeros);

        st = mt_st_writer_write(w, zeros, chunk);
        total -= chunk;
    }
    if (st == MT_OK) {
        st = mt_st_writer_finish(w);
    } else {
        mt_st_writer_destroy(w);
    }
    free(specs);
    return st;
}

static void
test_open_good(void)
{
    struct mt_model_config cfg;
    struct mt_model *m = NULL;
    const char *dir = tap_tmpdir();
    char log[1024] = "";
    mt_status_t st;

    tiny_config(&cfg, true);
    st = write_ckpt(dir, &cfg, true, DAMAGE_NONE, NULL);
    tap_ok(st == MT_OK, "tiny FP8 checkpoint with MTP written: %s", mt_last_error());
    st = mt_model_open(dir, &m);
    tap_ok(st == MT_OK, "it opens and validates: %s", mt_last_error());
    if (st == MT_OK) {
        const struct mt_layer_weights *l1 = &m->layers[1];

        tap_ok(m->fp8 && m->has_mtp && mt_st_set_count(m->set) == 261 + 83,
               "FP8, MTP present, 344 tensors (%zu)", mt_st_set_count(m->set));
        tap_ok(m->embed.w != NULL && m->head.w != NULL && m->final_norm.w != NULL &&
                   strcmp(m->head.w->name, "lm_head.weight") == 0 && m->embed.scale == NULL,
               "embed, lm_head, final norm filed");
        tap_ok(!m->layers[0].is_moe && m->layers[0].mlp.down.w != NULL &&
                   m->layers[0].mlp.down.scale != NULL && m->layers[0].experts == NULL,
               "layer 0: dense MLP with scales");
        tap_ok(l1->is_moe && l1->router.w != NULL && l1->router_bias.w != NULL &&
                   l1->shared.gate.scale != NULL && l1->experts != NULL &&
                   l1->experts[7].down.w != NULL &&
                   strcmp(l1->experts[7].down.w->name,
                          "model.layers.1.mlp.experts.7.down_proj.weight") == 0 &&
                   l1->experts[7].down.scale != NULL,
               "layer 1: router, shared expert, expert 7's down_proj and its scale");
        tap_ok(l1->q_a.w != NULL && l1->q_a.scale != NULL && l1->q_a_norm.w != NULL &&
                   l1->kv_a.w->shape[0] == 64 + 32 && l1->idx_weights_proj.w != NULL &&
                   l1->idx_weights_proj.scale == NULL && l1->idx_k_norm_bias.w != NULL &&
                   l1->input_norm.w != NULL && l1->post_attn_norm.w != NULL,
               "attention and indexer tensors filed");
    }
    mt_model_destroy(m);
    tap_rmtree(dir);

    /* BF16 (what transformers' save_pretrained writes), without the MTP layer, with an extra. */
    dir = tap_tmpdir();
    tiny_config(&cfg, false);
    m = NULL;
    st = write_ckpt(dir, &cfg, false, DAMAGE_EXTRA, NULL);
    st = st == MT_OK ? open_logged(dir, &m, log, sizeof(log)) : st;
    tap_ok(st == MT_OK && !m->fp8 && !m->has_mtp && m->layers[2].experts[0].gate.scale == NULL &&
               m->layers[2].experts[0].gate.w->dtype == MT_DTYPE_BF16,
           "BF16 checkpoint without MTP, one unknown extra tensor: opens: %s", mt_last_error());
    tap_ok(st == MT_OK &&
               strstr(log, "1 tensor is not part of DeepSeek-V3.2's inventory, ignored (first: "
                           "'model.extra_unknown.weight')") != NULL,
           "... and one warning names it: %s", log);
    mt_model_destroy(m);
    tap_rmtree(dir);
}

/*
 * Checkpoints that open though they differ from the usual: F16 linears; a config.json with an
 * fp8 quantization_config over BF16 tensors (the tensors decide, with a warning); a tied head
 * (lm_head is the embedding table).
 */
static void
test_open_variants(void)
{
    struct mt_model_config cfg;
    struct mt_model *m = NULL;
    const char *dir = tap_tmpdir();
    char log[1024] = "";
    char path[512];
    mt_status_t st;

    tiny_config(&cfg, false);
    st = write_ckpt(dir, &cfg, false, DAMAGE_F16, NULL);
    st = st == MT_OK ? mt_model_open(dir, &m) : st;
    tap_ok(st == MT_OK && !m->fp8 && m->layers[0].q_a.w->dtype == MT_DTYPE_F16 &&
               m->layers[2].experts[1].down.w->dtype == MT_DTYPE_F16,
           "F16 linears: the checkpoint opens: %s", mt_last_error());
    mt_model_destroy(m);
    m = NULL;
    tap_rmtree(dir);

    dir = tap_tmpdir();
    tiny_config(&cfg, false);
    st = write_ckpt(dir, &cfg, false, DAMAGE_NONE, NULL);
    tiny_config(&cfg, true);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    st = st == MT_OK ? mt_config_save(&cfg, path) : st;
    st = st == MT_OK ? open_logged(dir, &m, log, sizeof(log)) : st;
    tap_ok(st == MT_OK && !m->fp8 && m->layers[0].q_a.scale == NULL,
           "config.json says FP8, the tensors are BF16: opens as BF16 (no scales asked): %s",
           mt_last_error());
    tap_ok(st == MT_OK && strstr(log, "config.json has an fp8 quantization_config but the "
                                      "linears are BF16; going by the tensors") != NULL,
           "... with a warning saying so: %s", log);
    mt_model_destroy(m);
    m = NULL;
    tap_rmtree(dir);

    /* A per-layer FFN pattern (mlp_layer_types dense, sparse, dense, sparse): layer 2 is dense */
    dir = tap_tmpdir();
    tiny_config(&cfg, false);
    cfg.layer_is_moe[2] = false;
    st = write_ckpt(dir, &cfg, false, DAMAGE_NONE, NULL);
    st = st == MT_OK ? mt_model_open(dir, &m) : st;
    tap_ok(st == MT_OK && m->layers[1].is_moe && !m->layers[2].is_moe &&
               m->layers[2].experts == NULL && m->layers[2].mlp.gate.w != NULL &&
               m->layers[3].is_moe,
           "layers dense, sparse, dense, sparse: layer 2 opens as dense: %s",
           st == MT_OK ? "ok" : mt_last_error());
    mt_model_destroy(m);
    m = NULL;
    tap_rmtree(dir);

    /* F16 is one of the dtypes a norm may have */
    dir = tap_tmpdir();
    tiny_config(&cfg, false);
    st = write_ckpt(dir, &cfg, false, DAMAGE_AS_F16, "model.norm.weight");
    st = st == MT_OK ? mt_model_open(dir, &m) : st;
    tap_ok(st == MT_OK && m->final_norm.w->dtype == MT_DTYPE_F16,
           "an F16 final norm: the checkpoint opens: %s", mt_last_error());
    mt_model_destroy(m);
    m = NULL;
    tap_rmtree(dir);

    /* The weights hold the MTP layer but config.json says there is none: it is not used. */
    dir = tap_tmpdir();
    tiny_config(&cfg, false);
    st = write_ckpt(dir, &cfg, true, DAMAGE_NONE, NULL);
    cfg.num_nextn_predict_layers = 0;
    snprintf(path, sizeof(path), "%s/config.json", dir);
    st = st == MT_OK ? mt_config_save(&cfg, path) : st;
    mt_log_set_quiet(true); /* (the MTP tensors are extras, with a warning) */
    st = st == MT_OK ? mt_model_open(dir, &m) : st;
    mt_log_set_quiet(false);
    tap_ok(st == MT_OK && !m->has_mtp,
           "MTP weights but num_nextn_predict_layers 0: opens without the MTP layer: %s",
           st == MT_OK ? "ok" : mt_last_error());
    mt_model_destroy(m);
    m = NULL;
    tap_rmtree(dir);

    dir = tap_tmpdir();
    tiny_config(&cfg, false);
    cfg.tie_word_embeddings = true;
    st = write_ckpt(dir, &cfg, false, DAMAGE_NONE, NULL);
    st = st == MT_OK ? mt_model_open(dir, &m) : st;
    tap_ok(st == MT_OK && m->head.w != NULL && m->head.w == m->embed.w,
           "tied embeddings: lm_head is the embedding table: %s", mt_last_error());
    mt_model_destroy(m);
    tap_rmtree(dir);
}

/*
 * The size model's conventions on the tiny config: parameters do not depend on the storage
 * (scales are no parameters, MTP's neither); with tied embeddings the table is lm_head, so it
 * stays in the GPU's share and a token reads it whole.
 */
static void
test_tiny_sizes(void)
{
    struct mt_model_config cfg;
    struct mt_model_sizes f8;
    struct mt_model_sizes bf;
    struct mt_model_sizes tied;
    bool same = true;

    tiny_config(&cfg, true);
    mt_status_t s1 = mt_model_sizes_compute(&cfg, true, &f8);
    mt_status_t s2 = mt_model_sizes_compute(&cfg, false, &bf);
    for (int r = 0; r < MT_ROLE_COUNT; r++) {
        same = same && f8.params[r] == bf.params[r];
    }
    tap_ok(s1 == MT_OK && s2 == MT_OK && same && f8.mtp_params == bf.mtp_params &&
               f8.mtp_params > 0 && f8.mtp_bytes != bf.mtp_bytes,
           "tiny sizes: FP8 and BF16 count the same parameters per role and in MTP (%llu), "
           "not the same bytes", (unsigned long long)f8.mtp_params);
    /* an expert of 64 x 256: three 16 KiB FP8 matrices, each with 2 fp32 scales (8 bytes, 256
       in a GPU slot); in BF16 three 32 KiB matrices and no scales */
    tap_ok(f8.routed_expert_bytes == 3 * 16384 + 3 * 8 &&
               f8.routed_expert_slot_bytes == 3 * 16384 + 3 * 256 &&
               bf.routed_expert_bytes == 3 * 32768 && bf.routed_expert_slot_bytes == 3 * 32768,
           "tiny sizes: one expert %llu B, %llu B in a GPU slot (FP8); %llu B, %llu B (BF16)",
           (unsigned long long)f8.routed_expert_bytes,
           (unsigned long long)f8.routed_expert_slot_bytes,
           (unsigned long long)bf.routed_expert_bytes,
           (unsigned long long)bf.routed_expert_slot_bytes);
    /* BF16: the router of each of the 3 MoE layers is 8 x 256 BF16 plus an F32 bias of 8 */
    tap_ok(bf.bytes[MT_ROLE_ROUTER] == 3 * (8 * 256 * 2 + 8 * 4) &&
               f8.bytes[MT_ROLE_ROUTER] == 3 * (8 * 256 * 2 + 8 * 4),
           "tiny sizes: routers %llu B in BF16 (e_score_correction_bias stays F32), %llu B in FP8",
           (unsigned long long)bf.bytes[MT_ROLE_ROUTER],
           (unsigned long long)f8.bytes[MT_ROLE_ROUTER]);
    uint64_t embed = bf.bytes[MT_ROLE_EMBED];
    tap_ok(bf.gpu_other_bytes == bf.other_bytes - embed &&
               bf.token_bytes_always == bf.other_bytes - embed + embed / 512,
           "tiny sizes, untied: the table stays off the GPU's share; a token reads one row");
    tiny_config(&cfg, false);
    cfg.tie_word_embeddings = true;
    s1 = mt_model_sizes_compute(&cfg, false, &tied);
    tap_ok(s1 == MT_OK && tied.bytes[MT_ROLE_HEAD] == 0 && tied.bytes[MT_ROLE_EMBED] == embed &&
               tied.gpu_other_bytes == tied.other_bytes &&
               tied.token_bytes_always == tied.other_bytes,
           "tiny sizes, tied: the table is lm_head, in the GPU's share and read whole per token");
}

/* A checkpoint written by transformers 5.17's save_pretrained (tests/reference/make_golden.py). */
static void
test_open_hf(void)
{
    const char *dir = tap_data_path("hf-bf16");
    struct mt_model *m = NULL;
    char probe[512];
    FILE *f;
    mt_status_t st;

    snprintf(probe, sizeof(probe), "%s/model.safetensors", dir);
    f = fopen(probe, "rb");
    if (f == NULL) {
        tap_diag("no %s: the transformers-written checkpoint is not in this tree", probe);
        return;
    }
    fclose(f);
    st = mt_model_open(dir, &m);
    tap_ok(st == MT_OK && !m->fp8 && !m->has_mtp && m->layers[2].is_moe &&
               m->layers[2].experts[15].up.w != NULL && m->layers[1].mlp.gate.w != NULL,
           "transformers 5 save_pretrained BF16 checkpoint (per-expert tensors) validates: %s",
           mt_last_error());
    if (st == MT_OK) {
        struct mt_model_sizes sz;
        uint64_t stored = 0;
        uint64_t sized = 0;

        for (size_t i = 0; i < mt_st_set_count(m->set); i++) {
            stored += mt_st_set_tensor(m->set, i)->nbytes;
        }
        if (mt_model_sizes_of(m, &sz) == MT_OK) {
            sized = sz.routed_bytes + sz.other_bytes;
        }
        tap_ok(sized == stored,
               "its sizes are the bytes stored: %llu == %llu (BF16 e_score_correction_bias)",
               (unsigned long long)sized, (unsigned long long)stored);
    }
    mt_model_destroy(m);
}

static void
expect_fail(bool fp8, enum damage damage, const char *victim, const char *needle, const char *what)
{
    struct mt_model_config cfg;
    struct mt_model *m = NULL;
    const char *dir = tap_tmpdir();
    mt_status_t st;

    tiny_config(&cfg, fp8);
    st = write_ckpt(dir, &cfg, false, damage, victim);
    if (st != MT_OK) {
        tap_ok(false, "%s: writing the checkpoint failed: %s", what, mt_last_error());
        tap_rmtree(dir);
        return;
    }
    st = mt_model_open(dir, &m);
    tap_ok(st == MT_ERR_FORMAT && m == NULL &&
               strstr(mt_last_error(), victim ? victim : needle) != NULL &&
               strstr(mt_last_error(), needle) != NULL,
           "%s: MT_ERR_FORMAT naming the tensor: %s", what, mt_last_error());
    mt_model_destroy(m);
    tap_rmtree(dir);
}

static void
test_open_bad(void)
{
    struct mt_model *m = NULL;
    mt_status_t st;

    mt_log_set_quiet(true);
    expect_fail(true, DAMAGE_DROP, "model.layers.2.mlp.experts.5.up_proj.weight_scale_inv",
                "is missing (expected [1, 2] F32)", "a missing expert scale");
    expect_fail(true, DAMAGE_DROP, "lm_head.weight", "is missing (expected [512, 256]",
                "a missing lm_head");
    expect_fail(true, DAMAGE_SHAPE, "model.layers.0.self_attn.o_proj.weight",
                "has shape [257, 256], expected [256, 256]", "a wrong shape");
    expect_fail(true, DAMAGE_SHAPE, "model.layers.3.self_attn.indexer.wk.weight_scale_inv",
                "has shape [2, 2], expected [1, 2]", "a wrong scale shape");
    expect_fail(true, DAMAGE_DTYPE, "model.layers.1.mlp.experts.3.gate_proj.weight",
                "all must share one storage mode", "a BF16 linear in an FP8 checkpoint");
    expect_fail(false, DAMAGE_DTYPE, "model.norm.weight", "is I32, expected", "an I32 norm");
    expect_fail(false, DAMAGE_FUSE, NULL, "fused", "fused experts (transformers in-memory layout)");
    expect_fail(false, DAMAGE_FUSE_W, NULL, "fused", "fused experts named with .weight");
    expect_fail(true, DAMAGE_AS_BF16, "model.layers.1.self_attn.q_b_proj.weight_scale_inv",
                "is BF16, expected F32", "a BF16 block scale");
    expect_fail(true, DAMAGE_AS_F8, "model.layers.2.mlp.gate.weight", "is F8_E4M3, expected",
                "an FP8 router (a dense tensor)");
    expect_fail(false, DAMAGE_AS_2D, "model.norm.weight", "has shape [256, 1], expected [256]",
                "a norm vector stored [n, 1]");
    expect_fail(false, DAMAGE_EH0, NULL, "layer 0 of the num_hidden_layers 4 main layers is an MTP",
                "layer 0 holding the MTP layer's eh_proj");
    expect_fail(false, DAMAGE_EH3, NULL, "layer 3 of the num_hidden_layers 4 main layers is an MTP",
                "the last main layer holding the MTP layer's eh_proj");
    /* The first linear decides the storage mode; without it config.json's fp8 says what was
       expected, and a missing vector names every dtype a BF16 checkpoint may store it in. */
    expect_fail(true, DAMAGE_DROP, "model.layers.0.self_attn.q_a_proj.weight",
                "is missing (expected [64, 256] F8_E4M3)", "a missing first linear (FP8 config)");
    expect_fail(false, DAMAGE_DROP, "model.norm.weight",
                "is missing (expected [256] F32, BF16 or F16)", "a missing norm (BF16)");
    /* a file where the checkpoint directory should be */
    {
        struct mt_model_config cfg;
        const char *dir = tap_tmpdir();
        char path[512];

        tiny_config(&cfg, false);
        snprintf(path, sizeof(path), "%s/config.json", dir);
        st = mt_config_save(&cfg, path);
        st = st == MT_OK ? mt_model_open(path, &m) : st;
        tap_ok(st == MT_ERR_INVAL && m == NULL && strstr(mt_last_error(), "is a file") != NULL,
               "a file given as the checkpoint: MT_ERR_INVAL: %s", mt_last_error());
        mt_model_destroy(m);
        m = NULL;
        tap_rmtree(dir);
    }
    /* config.json with fewer layers than the weights: an error, not "extra tensors ignored". */
    {
        struct mt_model_config cfg;
        const char *dir = tap_tmpdir();
        char path[512];

        tiny_config(&cfg, false);
        st = write_ckpt(dir, &cfg, false, DAMAGE_NONE, NULL);
        for (int mtp = 0; mtp < 2 && st == MT_OK; mtp++) {
            cfg.num_hidden_layers = 2;
            cfg.num_nextn_predict_layers = mtp;
            snprintf(path, sizeof(path), "%s/config.json", dir);
            st = mt_config_save(&cfg, path);
            st = st == MT_OK ? mt_model_open(dir, &m) : st;
            tap_ok(st == MT_ERR_FORMAT && m == NULL &&
                       strstr(mt_last_error(), "num_hidden_layers 2") != NULL,
                   "config.json says 2 layers (%d MTP), the weights have 4: %s", mtp,
                   mt_last_error());
            mt_model_destroy(m);
            m = NULL;
            st = MT_OK;
        }
        tap_rmtree(dir);
    }
    /* config.json without hidden_size: HF's 7168 shapes what is expected, and the message
     * says where that came from */
    {
        struct mt_model_config cfg;
        const char *dir = tap_tmpdir();
        char path[512];
        json_t *root;

        tiny_config(&cfg, false);
        st = write_ckpt(dir, &cfg, false, DAMAGE_NONE, NULL);
        snprintf(path, sizeof(path), "%s/config.json", dir);
        root = st == MT_OK ? json_load_file(path, 0, NULL) : NULL;
        if (root != NULL && json_object_del(root, "hidden_size") == 0 &&
            json_dump_file(root, path, 0) == 0) {
            st = mt_model_open(dir, &m);
            tap_ok(st == MT_ERR_FORMAT && m == NULL &&
                       strstr(mt_last_error(), "expected [512, 7168]") != NULL &&
                       strstr(mt_last_error(), "config.json leaves out hidden_size") != NULL,
                   "config.json without hidden_size: the shape error says it took HF's "
                   "default: %s",
                   mt_last_error());
            mt_model_destroy(m);
            m = NULL;
        } else {
            tap_ok(false, "config.json without hidden_size: could not write it");
        }
        json_decref(root);
        tap_rmtree(dir);
    }
    st = mt_model_open("/nonexistent/moetier-ckpt", &m);
    tap_ok(st == MT_ERR_IO && m == NULL, "a missing directory: MT_ERR_IO: %s", mt_last_error());
    mt_log_set_quiet(false);
}

/* A config at the edge of every range describes more bytes than 64 bits hold: an error, not wrap.
 */
static void
test_sizes_overflow(void)
{
    struct mt_model_config cfg;
    struct mt_model_sizes sz;
    mt_status_t st;

    mt_config_default_v32(&cfg);
    cfg.hidden_size = 1 << 24;
    cfg.vocab_size = 1 << 24;
    cfg.intermediate_size = 1 << 24;
    cfg.moe_intermediate_size = 1 << 24;
    cfg.n_routed_experts = 4096;
    cfg.num_hidden_layers = 250;
    cfg.fp8 = false;
    strcpy(cfg.torch_dtype, "float32");
    for (int l = 0; l < cfg.num_hidden_layers; l++) {
        cfg.layer_is_moe[l] = l >= cfg.first_k_dense_replace;
    }
    mt_log_set_quiet(true);
    st = mt_model_sizes_compute(&cfg, false, &sz);
    mt_log_set_quiet(false);
    tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "bytes") != NULL,
           "a config of 2^24-wide dims and 4096 experts: MT_ERR_FORMAT, no wrapped sizes: %s",
           st == MT_OK ? "(accepted)" : mt_last_error());
    /*
     * Parameters inside 2^63, bytes not: 16 + 1 (MTP) MoE layers of 257 experts (256 + the
     * shared one) of 3 x 2^24 x 2^24 parameters are 13107 x 2^48 = 3.7e18; in float32 that is
     * 4 x 3.7e18 = 1.5e19 bytes > 2^63 = 9.2e18.
     */
    mt_config_default_v32(&cfg);
    cfg.hidden_size = 1 << 24;
    cfg.moe_intermediate_size = 1 << 24;
    cfg.num_hidden_layers = 19;
    cfg.fp8 = false;
    strcpy(cfg.torch_dtype, "float32");
    for (int l = 0; l < MT_MAX_LAYERS; l++) {
        cfg.layer_is_moe[l] = l >= cfg.first_k_dense_replace && l < cfg.num_hidden_layers;
    }
    mt_log_set_quiet(true);
    st = mt_model_sizes_compute(&cfg, false, &sz);
    mt_log_set_quiet(false);
    tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "2^63 bytes") != NULL,
           "a config whose parameters fit in 2^63 but whose float32 bytes do not: %s",
           st == MT_OK ? "(accepted)" : mt_last_error());
    mt_config_default_v32(&cfg);
    cfg.vocab_size = 1 << 24;
    cfg.fp8 = false;
    strcpy(cfg.torch_dtype, "float32");
    cfg.num_hidden_layers = 250;
    for (int l = 0; l < cfg.num_hidden_layers; l++) {
        cfg.layer_is_moe[l] = l >= cfg.first_k_dense_replace;
    }
    st = mt_model_sizes_compute(&cfg, false, &sz);
    tap_ok(st == MT_OK && sz.bytes[MT_ROLE_EMBED] == (4ULL << 24) * 7168,
           "a 2^24 vocabulary in float32 still sizes (status %d)", (int)st);
}

int
main(void)
{
    tap_plan(0);
    test_real_sizes();
    test_tiny_inventory();
    test_tiny_sizes();
    test_open_good();
    test_open_hf();
    test_open_bad();
    test_open_variants();
    test_sizes_overflow();
    return tap_done();
}
