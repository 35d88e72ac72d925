/* SPDX-License-Identifier: MIT */
/*
 * model.c - DeepSeek-V3.2's tensor inventory, its size model, and the checkpoint registry.
 *
 * The one idea: one function, emit_model(), walks the architecture and names every tensor of spec
 * section 3.2 with its role, storage kind and shape. Everything else is a callback on that walk:
 * mt_inventory_build() collects the specs, mt_model_sizes_compute() sums bytes without allocating
 * anything (the 671B model is sized from config.json alone), and mt_model_open() checks each
 * expected tensor against the safetensors set and files it into struct mt_model. So the names the
 * registry checks, the sizes inspect prints and the tensors synth writes cannot drift apart.
 *
 * Names are the HF checkpoint's: `model.` prefix except `lm_head.weight`; routed experts one by one
 * (`model.layers.L.mlp.experts.E.gate_proj.weight`); an FP8 linear is followed by its
 * `weight_scale_inv` [ceil(out/128), ceil(in/128)]. transformers 5 keeps the experts fused in
 * memory (mlp.experts.gate_up_proj) but save_pretrained reverts its conversion mapping
 * (deepseek_v32 uses the qwen2_moe one), so the files it writes are per expert too; a fused file is
 * recognized and rejected with a message saying so.
 */
#include <config.h>

#include "runtime/model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Where a tensor goes in struct mt_model / mt_layer_weights (internal to the walk). */
enum slot {
    SLOT_NONE, /* validated, not filed (MTP-only extras and the MTP block) */
    SLOT_EMBED,
    SLOT_HEAD,
    SLOT_FINAL_NORM,
    SLOT_INPUT_NORM,
    SLOT_POST_NORM,
    SLOT_Q_A,
    SLOT_Q_A_NORM,
    SLOT_Q_B,
    SLOT_KV_A,
    SLOT_KV_A_NORM,
    SLOT_KV_B,
    SLOT_O,
    SLOT_IDX_WQ_B,
    SLOT_IDX_WK,
    SLOT_IDX_K_NORM,
    SLOT_IDX_K_NORM_BIAS,
    SLOT_IDX_WEIGHTS_PROJ,
    SLOT_MLP_GATE,
    SLOT_MLP_UP,
    SLOT_MLP_DOWN,
    SLOT_ROUTER,
    SLOT_ROUTER_BIAS,
    SLOT_SHARED_GATE,
    SLOT_SHARED_UP,
    SLOT_SHARED_DOWN,
    SLOT_EXPERT_GATE,
    SLOT_EXPERT_UP,
    SLOT_EXPERT_DOWN,
};

struct walk {
    const struct mt_model_config *cfg;
    bool fp8;
    bool with_mtp;
    /* Called once per tensor; a non-OK status stops the walk. */
    mt_status_t (*fn)(struct walk *w, const struct mt_tensor_spec *spec, enum slot slot);
    void *ctx;
};

const char *
mt_tensor_role_name(enum mt_tensor_role role)
{
    switch (role) {
    case MT_ROLE_EMBED: return "embed";
    case MT_ROLE_HEAD: return "head";
    case MT_ROLE_NORM: return "norm";
    case MT_ROLE_ATTN: return "attn";
    case MT_ROLE_INDEXER: return "indexer";
    case MT_ROLE_DENSE_MLP: return "dense_mlp";
    case MT_ROLE_SHARED_EXPERT: return "shared_expert";
    case MT_ROLE_ROUTER: return "router";
    case MT_ROLE_ROUTED_EXPERT: return "routed_expert";
    case MT_ROLE_MTP: return "mtp";
    case MT_ROLE_COUNT: break;
    }
    return "unknown";
}

/* ---- the walk -------------------------------------------------------------------------------- */

static mt_status_t
emit(struct walk *w, enum mt_tensor_role role, enum mt_tensor_kind kind, int layer, int expert,
     enum slot slot, int64_t rows, int64_t cols, const char *name)
{
    struct mt_tensor_spec s;

    memset(&s, 0, sizeof(s));
    MT_ASSERT(strlen(name) < sizeof(s.name));
    strcpy(s.name, name);
    s.role = role;
    s.kind = kind;
    s.layer = layer;
    s.expert = expert;
    s.ndim = cols > 0 ? 2 : 1;
    s.shape[0] = rows;
    s.shape[1] = cols > 0 ? cols : 0;
    return w->fn(w, &s, slot);
}

/* A projection [out, in]; in an FP8 checkpoint its block scales follow it. */
static mt_status_t
emit_linear(struct walk *w, enum mt_tensor_role role, int layer, int expert, enum slot slot,
            int64_t out, int64_t in, const char *prefix, const char *what)
{
    char name[160];
    int64_t br;
    int64_t bc;
    mt_status_t st;

    snprintf(name, sizeof(name), "%s%s.weight", prefix, what);
    if ((st = emit(w, role, MT_KIND_LINEAR, layer, expert, slot, out, in, name)) != MT_OK ||
        !w->fp8) {
        return st;
    }
    /* A config without quantization_config may leave fp8_block unset: DeepSeek's 128 x 128. */
    br = w->cfg->fp8 && w->cfg->fp8_block[0] > 0 ? w->cfg->fp8_block[0] : 128;
    bc = w->cfg->fp8 && w->cfg->fp8_block[1] > 0 ? w->cfg->fp8_block[1] : 128;
    snprintf(name, sizeof(name), "%s%s.weight_scale_inv", prefix, what);
    return emit(w, role, MT_KIND_SCALE, layer, expert, slot, MT_CEIL_DIV(out, br),
                MT_CEIL_DIV(in, bc), name);
}

static mt_status_t
emit_named(struct walk *w, enum mt_tensor_role role, enum mt_tensor_kind kind, int layer,
           enum slot slot, int64_t rows, int64_t cols, const char *prefix, const char *what)
{
    char name[160];

    snprintf(name, sizeof(name), "%s%s", prefix, what);
    return emit(w, role, kind, layer, -1, slot, rows, cols, name);
}

/* SwiGLU gate/up [width, hidden] and down [hidden, width] under prefix (".mlp." etc.). */
static mt_status_t
emit_swiglu(struct walk *w, enum mt_tensor_role role, int layer, int expert, enum slot first,
            int64_t width, const char *prefix)
{
    int64_t hidden = w->cfg->hidden_size;
    mt_status_t st;

    if ((st = emit_linear(w, role, layer, expert, first, width, hidden, prefix, "gate_proj")) !=
            MT_OK ||
        (st = emit_linear(w, role, layer, expert, first + 1, width, hidden, prefix, "up_proj")) !=
            MT_OK) {
        return st;
    }
    return emit_linear(w, role, layer, expert, first + 2, hidden, width, prefix, "down_proj");
}

/* One decoder block (spec 2.2): norms, MLA + indexer, then dense MLP or MoE. */
static mt_status_t
emit_block(struct walk *w, int l)
{
    const struct mt_model_config *c = w->cfg;
    int64_t hidden = c->hidden_size;
    int64_t heads = c->num_attention_heads;
    int64_t qk = mt_config_qk_head_dim(c);
    char p[32];
    char pa[48];
    char pe[80];
    mt_status_t st;

    snprintf(p, sizeof(p), "model.layers.%d.", l);
    snprintf(pa, sizeof(pa), "%sself_attn.", p);
    if ((st = emit_named(w, MT_ROLE_NORM, MT_KIND_VECTOR, l, SLOT_INPUT_NORM, hidden, 0, p,
                         "input_layernorm.weight")) != MT_OK ||
        (st = emit_linear(w, MT_ROLE_ATTN, l, -1, SLOT_Q_A, c->q_lora_rank, hidden, pa,
                          "q_a_proj")) != MT_OK ||
        (st = emit_named(w, MT_ROLE_ATTN, MT_KIND_VECTOR, l, SLOT_Q_A_NORM, c->q_lora_rank, 0, pa,
                         "q_a_layernorm.weight")) != MT_OK ||
        (st = emit_linear(w, MT_ROLE_ATTN, l, -1, SLOT_Q_B, heads * qk, c->q_lora_rank, pa,
                          "q_b_proj")) != MT_OK ||
        (st = emit_linear(w, MT_ROLE_ATTN, l, -1, SLOT_KV_A,
                          (int64_t)c->kv_lora_rank + c->qk_rope_head_dim, hidden, pa,
                          "kv_a_proj_with_mqa")) != MT_OK ||
        (st = emit_named(w, MT_ROLE_ATTN, MT_KIND_VECTOR, l, SLOT_KV_A_NORM, c->kv_lora_rank, 0, pa,
                         "kv_a_layernorm.weight")) != MT_OK ||
        (st = emit_linear(w, MT_ROLE_ATTN, l, -1, SLOT_KV_B,
                          heads * ((int64_t)c->qk_nope_head_dim + c->v_head_dim), c->kv_lora_rank,
                          pa, "kv_b_proj")) != MT_OK ||
        (st = emit_linear(w, MT_ROLE_ATTN, l, -1, SLOT_O, hidden, heads * c->v_head_dim, pa,
                          "o_proj")) != MT_OK) {
        return st;
    }
    snprintf(pe, sizeof(pe), "%sindexer.", pa);
    if ((st = emit_linear(w, MT_ROLE_INDEXER, l, -1, SLOT_IDX_WQ_B,
                          (int64_t)c->index_n_heads * c->index_head_dim, c->q_lora_rank, pe,
                          "wq_b")) != MT_OK ||
        (st = emit_linear(w, MT_ROLE_INDEXER, l, -1, SLOT_IDX_WK, c->index_head_dim, hidden, pe,
                          "wk")) != MT_OK ||
        (st = emit_named(w, MT_ROLE_INDEXER, MT_KIND_VECTOR, l, SLOT_IDX_K_NORM, c->index_head_dim,
                         0, pe, "k_norm.weight")) != MT_OK ||
        (st = emit_named(w, MT_ROLE_INDEXER, MT_KIND_VECTOR, l, SLOT_IDX_K_NORM_BIAS,
                         c->index_head_dim, 0, pe, "k_norm.bias")) != MT_OK ||
        (st = emit_named(w, MT_ROLE_INDEXER, MT_KIND_DENSE, l, SLOT_IDX_WEIGHTS_PROJ,
                         c->index_n_heads, hidden, pe, "weights_proj.weight")) != MT_OK ||
        (st = emit_named(w, MT_ROLE_NORM, MT_KIND_VECTOR, l, SLOT_POST_NORM, hidden, 0, p,
                         "post_attention_layernorm.weight")) != MT_OK) {
        return st;
    }

    snprintf(pa, sizeof(pa), "%smlp.", p);
    if (!mt_config_layer_is_moe(c, l)) {
        return emit_swiglu(w, MT_ROLE_DENSE_MLP, l, -1, SLOT_MLP_GATE, c->intermediate_size, pa);
    }
    if ((st = emit_named(w, MT_ROLE_ROUTER, MT_KIND_DENSE, l, SLOT_ROUTER, c->n_routed_experts,
                         hidden, pa, "gate.weight")) != MT_OK ||
        (st = emit_named(w, MT_ROLE_ROUTER, MT_KIND_VECTOR, l, SLOT_ROUTER_BIAS,
                         c->n_routed_experts, 0, pa, "gate.e_score_correction_bias")) != MT_OK) {
        return st;
    }
    for (int e = 0; e < c->n_routed_experts; e++) {
        snprintf(pe, sizeof(pe), "%sexperts.%d.", pa, e);
        if ((st = emit_swiglu(w, MT_ROLE_ROUTED_EXPERT, l, e, SLOT_EXPERT_GATE,
                              c->moe_intermediate_size, pe)) != MT_OK) {
            return st;
        }
    }
    if (c->n_shared_experts == 0) {
        return MT_OK;
    }
    /* DeepSeek: one SwiGLU of width moe_intermediate_size * n_shared_experts. */
    snprintf(pe, sizeof(pe), "%sshared_experts.", pa);
    return emit_swiglu(w, MT_ROLE_SHARED_EXPERT, l, -1, SLOT_SHARED_GATE,
                       (int64_t)c->moe_intermediate_size * c->n_shared_experts, pe);
}

/* An MTP layer (spec 2.9): its own embedding copy and input norms, a full block, its own head. */
static mt_status_t
emit_mtp(struct walk *w, int l)
{
    const struct mt_model_config *c = w->cfg;
    int64_t hidden = c->hidden_size;
    char p[32];
    mt_status_t st;

    snprintf(p, sizeof(p), "model.layers.%d.", l);
    if ((st = emit_named(w, MT_ROLE_MTP, MT_KIND_DENSE, l, SLOT_NONE, c->vocab_size, hidden, p,
                         "embed_tokens.weight")) != MT_OK ||
        (st = emit_named(w, MT_ROLE_MTP, MT_KIND_VECTOR, l, SLOT_NONE, hidden, 0, p,
                         "enorm.weight")) != MT_OK ||
        (st = emit_named(w, MT_ROLE_MTP, MT_KIND_VECTOR, l, SLOT_NONE, hidden, 0, p,
                         "hnorm.weight")) != MT_OK ||
        (st = emit_named(w, MT_ROLE_MTP, MT_KIND_DENSE, l, SLOT_NONE, hidden, 2 * hidden, p,
                         "eh_proj.weight")) != MT_OK ||
        (st = emit_block(w, l)) != MT_OK ||
        (st = emit_named(w, MT_ROLE_MTP, MT_KIND_VECTOR, l, SLOT_NONE, hidden, 0, p,
                         "shared_head.norm.weight")) != MT_OK) {
        return st;
    }
    return emit_named(w, MT_ROLE_MTP, MT_KIND_DENSE, l, SLOT_NONE, c->vocab_size, hidden, p,
                      "shared_head.head.weight");
}

/* The whole checkpoint: embedding, main blocks, final norm, lm_head, then the MTP layer(s). */
static mt_status_t
emit_model(struct walk *w)
{
    const struct mt_model_config *c = w->cfg;
    mt_status_t st;

    if ((st = emit(w, MT_ROLE_EMBED, MT_KIND_DENSE, -1, -1, SLOT_EMBED, c->vocab_size,
                   c->hidden_size, "model.embed_tokens.weight")) != MT_OK) {
        return st;
    }
    for (int l = 0; l < c->num_hidden_layers; l++) {
        if ((st = emit_block(w, l)) != MT_OK) {
            return st;
        }
    }
    if ((st = emit(w, MT_ROLE_NORM, MT_KIND_VECTOR, -1, -1, SLOT_FINAL_NORM, c->hidden_size, 0,
                   "model.norm.weight")) != MT_OK) {
        return st;
    }
    if (!c->tie_word_embeddings &&
        (st = emit(w, MT_ROLE_HEAD, MT_KIND_DENSE, -1, -1, SLOT_HEAD, c->vocab_size, c->hidden_size,
                   "lm_head.weight")) != MT_OK) {
        return st;
    }
    for (int i = 0; w->with_mtp && i < c->num_nextn_predict_layers; i++) {
        if ((st = emit_mtp(w, c->num_hidden_layers + i)) != MT_OK) {
            return st;
        }
    }
    return MT_OK;
}

/* ---- inventory ------------------------------------------------------------------------------- */

struct collect {
    struct mt_tensor_spec *specs;
    size_t n;
    size_t cap;
};

static mt_status_t
collect_fn(struct walk *w, const struct mt_tensor_spec *spec, enum slot slot)
{
    struct collect *c = w->ctx;

    if (c->n == c->cap) {
        size_t cap = c->cap == 0 ? 1024 : c->cap * 2;
        struct mt_tensor_spec *grown = realloc(c->specs, cap * sizeof(*grown));

        if (grown == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a tensor inventory of %zu entries",
                           cap);
        }
        c->specs = grown;
        c->cap = cap;
    }
    c->specs[c->n++] = *spec;
    return MT_OK;
}

mt_status_t
mt_inventory_build(const struct mt_model_config *cfg, bool fp8, bool with_mtp,
                   struct mt_tensor_spec **specs_out, size_t *n_out)
{
    struct collect c = {NULL, 0, 0};
    struct walk w = {cfg, fp8, with_mtp, collect_fn, &c};
    mt_status_t st;

    if ((st = mt_config_validate(cfg, "model config")) != MT_OK) {
        return st;
    }
    st = emit_model(&w);
    if (st != MT_OK) {
        free(c.specs);
        return st;
    }
    *specs_out = c.specs;
    *n_out = c.n;
    return MT_OK;
}

/* ---- sizes ----------------------------------------------------------------------------------- */

/* Bytes per element of a non-FP8 tensor: the config's torch_dtype. */
static uint64_t
plain_elem_size(const struct mt_model_config *cfg)
{
    return strcmp(cfg->torch_dtype, "float32") == 0 ? 4 : 2;
}

/*
 * Storage of a spec. FP8 checkpoints (spec 3.2): linears 1 byte, scales and vectors F32, dense
 * tensors in torch_dtype (BF16). Non-FP8 checkpoints are an estimate: everything in torch_dtype
 * except e_score_correction_bias, which transformers keeps F32.
 */
static uint64_t
spec_elem_size(const struct mt_model_config *cfg, bool fp8, const struct mt_tensor_spec *s)
{
    switch (s->kind) {
    case MT_KIND_LINEAR: return fp8 ? 1 : plain_elem_size(cfg);
    case MT_KIND_SCALE: return 4;
    case MT_KIND_VECTOR: return (fp8 || s->role == MT_ROLE_ROUTER) ? 4 : plain_elem_size(cfg);
    case MT_KIND_DENSE: return plain_elem_size(cfg);
    }
    return 0;
}

static uint64_t
spec_nelem(const struct mt_tensor_spec *s)
{
    return (uint64_t)s->shape[0] * (uint64_t)(s->ndim == 2 ? s->shape[1] : 1);
}

struct sizes_ctx {
    struct mt_model_sizes *sz;
    const struct mt_st_set *set; /* NULL, or the checkpoint whose stored bytes count */
    int first_moe_layer;
    uint64_t all_params; /* every tensor, MTP included: bounds every sum inspect prints */
    uint64_t all_bytes;
};

/*
 * Every figure is a sum of parts of all_params or all_bytes (routed per token is at most all
 * routed experts), so keeping these two within INT64_MAX (JSON integers are signed) keeps every
 * figure exact. A single spec cannot overflow: config.c bounds each dimension by 2^24.
 */
#define MT_SIZES_MAX ((uint64_t)INT64_MAX)

static mt_status_t
sizes_fn(struct walk *w, const struct mt_tensor_spec *s, enum slot slot)
{
    struct sizes_ctx *c = w->ctx;
    const struct mt_model_config *cfg = w->cfg;
    const struct mt_st_tensor *t = c->set != NULL ? mt_st_set_find(c->set, s->name) : NULL;
    uint64_t nelem = spec_nelem(s);
    uint64_t bytes = t != NULL ? t->nbytes : nelem * spec_elem_size(cfg, w->fp8, s);

    if (nelem > MT_SIZES_MAX - c->all_params || bytes > MT_SIZES_MAX - c->all_bytes) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "model config: %d layers of hidden size %d with %d experts of width %d "
                       "describe more than 2^63 bytes or parameters; not a real model",
                       cfg->num_hidden_layers, cfg->hidden_size, cfg->n_routed_experts,
                       cfg->moe_intermediate_size);
    }
    c->all_params += nelem;
    c->all_bytes += bytes;
    if (s->layer >= cfg->num_hidden_layers) {
        /* the whole MTP layer, its attention and experts too: kept out of the main model's
           per-role sums, which the planner and the main totals read */
        c->sz->mtp_bytes += bytes;
        c->sz->mtp_params += s->kind != MT_KIND_SCALE ? nelem : 0;
        return MT_OK;
    }
    if (s->kind != MT_KIND_SCALE) {
        c->sz->params[s->role] += nelem;
    }
    c->sz->bytes[s->role] += bytes;
    if (s->role == MT_ROLE_ROUTED_EXPERT && s->expert == 0 && s->layer == c->first_moe_layer) {
        c->sz->routed_expert_bytes += bytes;
        c->sz->routed_expert_slot_bytes += (bytes + 255) & ~(uint64_t)255;
    }
    return MT_OK;
}

static mt_status_t
sizes_compute(const struct mt_model_config *cfg, bool fp8, const struct mt_st_set *set,
              struct mt_model_sizes *sizes_out)
{
    struct mt_model_sizes sz;
    struct sizes_ctx c = {&sz, set, -1, 0, 0};
    struct walk w = {cfg, fp8, true, sizes_fn, &c};
    uint64_t main_bytes = 0;
    uint64_t kv_layer;
    mt_status_t st;

    if ((st = mt_config_validate(cfg, "model config")) != MT_OK) {
        return st;
    }
    memset(&sz, 0, sizeof(sz));
    for (int l = 0; l < cfg->num_hidden_layers; l++) {
        if (mt_config_layer_is_moe(cfg, l)) {
            if (c.first_moe_layer < 0) {
                c.first_moe_layer = l;
            }
            sz.n_moe_layers++;
        }
    }
    if ((st = emit_model(&w)) != MT_OK) {
        return st;
    }
    for (int r = 0; r < MT_ROLE_COUNT; r++) {
        main_bytes += sz.bytes[r];
    }
    sz.routed_bytes = sz.bytes[MT_ROLE_ROUTED_EXPERT];
    sz.other_bytes = main_bytes - sz.routed_bytes;
    sz.gpu_other_bytes = sz.other_bytes - (cfg->tie_word_embeddings ? 0 : sz.bytes[MT_ROLE_EMBED]);

    /*
     * Weight bytes read per decoded token at batch 1. Convention: every non-routed weight of the
     * main model is read once per token (attention incl. indexer, dense MLPs, shared experts,
     * routers, norms, lm_head), except the embedding table, of which one row is read. With tied
     * embeddings the table is lm_head and is read whole. Routed: num_experts_per_tok experts in
     * every MoE layer. MTP (speculative decoding) is not counted. Real config: 18,110,621,376 +
     * 20,439,638,016 B = 38.55 GB (spec 2.12).
     */
    if (cfg->tie_word_embeddings) {
        sz.token_bytes_always = sz.other_bytes;
    } else {
        sz.token_bytes_always = sz.other_bytes - sz.bytes[MT_ROLE_EMBED] +
                                sz.bytes[MT_ROLE_EMBED] / (uint64_t)cfg->vocab_size;
    }
    sz.token_bytes_routed =
        (uint64_t)cfg->num_experts_per_tok * sz.routed_expert_bytes * (uint64_t)sz.n_moe_layers;

    /*
     * KV cache per token, reference-demo layout of spec 2.10, main layers only: the MLA latent and
     * the roped k_pe in bf16, plus the indexer key in FP8 with one fp32 scale. Real config:
     * 1,024 + 128 + 128 + 4 = 1,284 B per layer, 78,324 B per token. (FlashMLA's fp8 layout would
     * be 788 B per layer.)
     */
    kv_layer = 2 * ((uint64_t)cfg->kv_lora_rank + cfg->qk_rope_head_dim) +
               (uint64_t)cfg->index_head_dim + 4;
    sz.kv_bytes_per_token = kv_layer * (uint64_t)cfg->num_hidden_layers;
    *sizes_out = sz;
    return MT_OK;
}

mt_status_t
mt_model_sizes_compute(const struct mt_model_config *cfg, bool fp8,
                       struct mt_model_sizes *sizes_out)
{
    return sizes_compute(cfg, fp8, NULL, sizes_out);
}

mt_status_t
mt_model_sizes_of(const struct mt_model *model, struct mt_model_sizes *sizes_out)
{
    return sizes_compute(&model->cfg, model->fp8, model->set, sizes_out);
}

/* ---- the registry ---------------------------------------------------------------------------- */

struct open_ctx {
    struct mt_model *m;
    enum mt_dtype linear_dt;  /* the one dtype of every linear of this checkpoint */
    const char *linear_probe; /* the tensor that decided it */
};

/* The dtypes a kind may have in this checkpoint, for checks and for messages. */
static bool
dtype_allowed(const struct open_ctx *c, enum mt_tensor_kind kind, enum mt_dtype dt)
{
    switch (kind) {
    case MT_KIND_LINEAR: return dt == c->linear_dt;
    case MT_KIND_SCALE: return dt == MT_DTYPE_F32;
    case MT_KIND_VECTOR:
    case MT_KIND_DENSE: return dt == MT_DTYPE_F32 || dt == MT_DTYPE_BF16 || dt == MT_DTYPE_F16;
    }
    return false;
}

static const char *
dtype_expect_str(const struct open_ctx *c, enum mt_tensor_kind kind)
{
    switch (kind) {
    case MT_KIND_LINEAR: return mt_dtype_name(c->linear_dt);
    case MT_KIND_SCALE: return "F32";
    case MT_KIND_VECTOR: return c->m->fp8 ? "F32" : "F32, BF16 or F16";
    case MT_KIND_DENSE: return "BF16, F32 or F16";
    }
    return "?";
}

/* A transformers in-memory (fused) expert layout instead of the per-expert files. */
static bool
has_fused_experts(const struct mt_model *m, int layer)
{
    char name[160];

    snprintf(name, sizeof(name), "model.layers.%d.mlp.experts.gate_up_proj", layer);
    if (mt_st_set_find(m->set, name) != NULL) {
        return true;
    }
    snprintf(name, sizeof(name), "model.layers.%d.mlp.experts.gate_up_proj.weight", layer);
    return mt_st_set_find(m->set, name) != NULL;
}

static struct mt_weight *
slot_weight(struct mt_model *m, const struct mt_tensor_spec *s, enum slot slot)
{
    struct mt_layer_weights *lw;

    switch (slot) {
    case SLOT_NONE: return NULL;
    case SLOT_EMBED: return &m->embed;
    case SLOT_HEAD: return &m->head;
    case SLOT_FINAL_NORM: return &m->final_norm;
    default: break;
    }
    if (s->layer < 0 || s->layer >= m->cfg.num_hidden_layers) {
        return NULL; /* the MTP block: validated, not filed */
    }
    lw = &m->layers[s->layer];
    switch (slot) {
    case SLOT_INPUT_NORM: return &lw->input_norm;
    case SLOT_POST_NORM: return &lw->post_attn_norm;
    case SLOT_Q_A: return &lw->q_a;
    case SLOT_Q_A_NORM: return &lw->q_a_norm;
    case SLOT_Q_B: return &lw->q_b;
    case SLOT_KV_A: return &lw->kv_a;
    case SLOT_KV_A_NORM: return &lw->kv_a_norm;
    case SLOT_KV_B: return &lw->kv_b;
    case SLOT_O: return &lw->o;
    case SLOT_IDX_WQ_B: return &lw->idx_wq_b;
    case SLOT_IDX_WK: return &lw->idx_wk;
    case SLOT_IDX_K_NORM: return &lw->idx_k_norm;
    case SLOT_IDX_K_NORM_BIAS: return &lw->idx_k_norm_bias;
    case SLOT_IDX_WEIGHTS_PROJ: return &lw->idx_weights_proj;
    case SLOT_MLP_GATE: return &lw->mlp.gate;
    case SLOT_MLP_UP: return &lw->mlp.up;
    case SLOT_MLP_DOWN: return &lw->mlp.down;
    case SLOT_ROUTER: return &lw->router;
    case SLOT_ROUTER_BIAS: return &lw->router_bias;
    case SLOT_SHARED_GATE: return &lw->shared.gate;
    case SLOT_SHARED_UP: return &lw->shared.up;
    case SLOT_SHARED_DOWN: return &lw->shared.down;
    case SLOT_EXPERT_GATE: return &lw->experts[s->expert].gate;
    case SLOT_EXPERT_UP: return &lw->experts[s->expert].up;
    case SLOT_EXPERT_DOWN: return &lw->experts[s->expert].down;
    default: return NULL;
    }
}

/*
 * Three %s for the end of a message about a tensor that does not fit the config: where
 * config.json left out integer fields, they are named, since HF's defaults (the full 671B
 * model's sizes) then shaped what was expected.
 */
#define DEFAULTS_HINT(cfg)                                                                     \
    (cfg)->defaulted[0] != '\0' ? "; config.json leaves out " : "", (cfg)->defaulted,          \
        (cfg)->defaulted[0] != '\0' ? ", which took HF's defaults (the 671B model's)" : ""

static mt_status_t
check_fn(struct walk *w, const struct mt_tensor_spec *s, enum slot slot)
{
    struct open_ctx *c = w->ctx;
    struct mt_model *m = c->m;
    const struct mt_st_tensor *t = mt_st_set_find(m->set, s->name);
    struct mt_weight *wt;
    char want[64];
    char got[64];
    bool shape_ok;

    mt_st_shape_str(s->shape, s->ndim, want, sizeof(want));
    if (t == NULL) {
        if (s->role == MT_ROLE_ROUTED_EXPERT && has_fused_experts(m, s->layer)) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "checkpoint '%s': layer %d stores its routed experts fused "
                           "(mlp.experts.gate_up_proj, transformers' in-memory layout); moetier "
                           "reads one tensor per expert ('%s'): re-save with save_pretrained",
                           m->dir, s->layer, s->name);
        }
        return mt_fail(MT_ERR_FORMAT, 0,
                       "checkpoint '%s': tensor '%s' is missing (expected %s %s)%s%s%s", m->dir,
                       s->name, want, dtype_expect_str(c, s->kind), DEFAULTS_HINT(&m->cfg));
    }
    shape_ok = t->ndim == s->ndim;
    for (int i = 0; shape_ok && i < s->ndim; i++) {
        shape_ok = t->shape[i] == s->shape[i];
    }
    if (!shape_ok) {
        mt_st_shape_str(t->shape, t->ndim, got, sizeof(got));
        return mt_fail(MT_ERR_FORMAT, 0,
                       "checkpoint '%s': tensor '%s' has shape %s, expected %s%s%s%s", m->dir,
                       s->name, got, want, DEFAULTS_HINT(&m->cfg));
    }
    if (!dtype_allowed(c, s->kind, t->dtype)) {
        if (s->kind == MT_KIND_LINEAR) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "checkpoint '%s': tensor '%s' is %s, but the linears of this checkpoint "
                           "are %s (as '%s'); all must share one storage mode",
                           m->dir, s->name, mt_dtype_name(t->dtype), mt_dtype_name(c->linear_dt),
                           c->linear_probe);
        }
        return mt_fail(MT_ERR_FORMAT, 0, "checkpoint '%s': tensor '%s' is %s, expected %s", m->dir,
                       s->name, mt_dtype_name(t->dtype), dtype_expect_str(c, s->kind));
    }
    wt = slot_weight(m, s, slot);
    if (wt != NULL) {
        if (s->kind == MT_KIND_SCALE) {
            wt->scale = t;
        } else {
            wt->w = t;
        }
    }
    return MT_OK;
}

static int
cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* One warning for the tensors the inventory does not know (a checkpoint may carry extras). */
static mt_status_t
warn_extras(const struct mt_model *m, const struct mt_tensor_spec *specs, size_t n_specs)
{
    size_t count = mt_st_set_count(m->set);
    const char **names;
    const char *first = NULL;
    size_t extra = 0;

    names = malloc((n_specs > 0 ? n_specs : 1) * sizeof(*names));
    if (names == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "checkpoint '%s': cannot allocate the name table", m->dir);
    }
    for (size_t i = 0; i < n_specs; i++) {
        names[i] = specs[i].name;
    }
    qsort(names, n_specs, sizeof(*names), cmp_str_ptr);
    for (size_t i = 0; i < count; i++) {
        const char *name = mt_st_set_tensor(m->set, i)->name;

        if (bsearch(&name, names, n_specs, sizeof(*names), cmp_str_ptr) == NULL) {
            extra++;
            if (first == NULL) {
                first = name;
            }
        }
    }
    if (extra > 0) {
        mt_log_warn("checkpoint '%s': %zu tensor%s not part of DeepSeek-V3.2's inventory, ignored "
                    "(first: '%s')",
                    m->dir, extra, extra == 1 ? " is" : "s are", first);
    }
    free(names);
    return MT_OK;
}

/* Whether any tensor of layer `layer` exists (the MTP layer is optional). */
static bool
layer_present(const struct mt_st_set *set, int layer)
{
    char prefix[64];
    size_t n = mt_st_set_count(set);
    size_t len;

    len = (size_t)snprintf(prefix, sizeof(prefix), "model.layers.%d.", layer);
    for (size_t i = 0; i < n; i++) {
        if (strncmp(mt_st_set_tensor(set, i)->name, prefix, len) == 0) {
            return true;
        }
    }
    return false;
}

mt_status_t
mt_model_open(const char *dir, struct mt_model **model_out)
{
    struct mt_model *m;
    struct open_ctx c;
    struct walk w;
    struct mt_tensor_spec *specs = NULL;
    size_t n_specs = 0;
    const struct mt_st_tensor *probe;
    char *path = NULL;
    size_t path_len;
    mt_status_t st;

    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate checkpoint '%s'", dir);
    }
    m->dir = strdup(dir);
    path_len = strlen(dir) + sizeof("/config.json");
    path = malloc(path_len);
    if (m->dir == NULL || path == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate checkpoint '%s'", dir);
        goto out_destroy;
    }
    struct stat sb;
    if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        st = mt_fail(MT_ERR_INVAL, 0, "checkpoint '%s' is a file, not a directory (give the "
                     "directory that holds config.json and the shards)", dir);
        goto out_destroy;
    }
    snprintf(path, path_len, "%s/config.json", dir);
    if ((st = mt_config_load(path, &m->cfg)) != MT_OK ||
        (st = mt_st_set_open(dir, &m->set)) != MT_OK) {
        goto out_destroy;
    }

    /*
     * The layer after the main ones is the MTP layer (it alone has eh_proj) or absent. A decoder
     * layer there means config.json has fewer layers than the weights, which must not pass as
     * "extra tensors, ignored".
     */
    {
        char eh[64];
        int n = m->cfg.num_hidden_layers;

        snprintf(eh, sizeof(eh), "model.layers.%d.eh_proj.weight", n);
        if (layer_present(m->set, n) && mt_st_set_find(m->set, eh) == NULL) {
            st = mt_fail(MT_ERR_FORMAT, 0,
                         "checkpoint '%s': config.json has num_hidden_layers %d, but the weights "
                         "have a decoder layer %d (not the MTP layer: no '%s'); config and weights "
                         "do not match",
                         dir, n, n, eh);
            goto out_destroy;
        }
        /* and the other way round: an MTP layer among the main ones (a num_hidden_layers that
         * counts it) would run as a decoder layer and give garbage */
        for (int l = 0; l < n; l++) {
            snprintf(eh, sizeof(eh), "model.layers.%d.eh_proj.weight", l);
            if (mt_st_set_find(m->set, eh) != NULL) {
                st = mt_fail(MT_ERR_FORMAT, 0,
                             "checkpoint '%s': layer %d of the num_hidden_layers %d main layers "
                             "is an MTP layer ('%s'); config.json's num_hidden_layers seems to "
                             "count the MTP layers (DeepSeek-V3.2: 61)",
                             dir, l, n, eh);
                goto out_destroy;
            }
        }
    }

    /* One storage mode for all linears, decided by the first one (layer 0's q_a_proj). */
    memset(&c, 0, sizeof(c));
    c.m = m;
    c.linear_probe = "model.layers.0.self_attn.q_a_proj.weight";
    probe = mt_st_set_find(m->set, c.linear_probe);
    m->fp8 = probe != NULL ? probe->dtype == MT_DTYPE_F8_E4M3 : m->cfg.fp8;
    c.linear_dt = probe != NULL ? probe->dtype : (m->fp8 ? MT_DTYPE_F8_E4M3 : MT_DTYPE_BF16);
    if (probe != NULL && !m->fp8 && c.linear_dt != MT_DTYPE_BF16 && c.linear_dt != MT_DTYPE_F16 &&
        c.linear_dt != MT_DTYPE_F32) {
        st = mt_fail(MT_ERR_FORMAT, 0,
                     "checkpoint '%s': tensor '%s' is %s; linears must be F8_E4M3 (with "
                     "weight_scale_inv), BF16, F16 or F32",
                     dir, c.linear_probe, mt_dtype_name(c.linear_dt));
        goto out_destroy;
    }
    if (probe != NULL && m->fp8 != m->cfg.fp8) {
        mt_log_warn("checkpoint '%s': config.json %s quantization_config but the linears are %s; "
                    "going by the tensors",
                    dir, m->cfg.fp8 ? "has an fp8" : "has no", mt_dtype_name(c.linear_dt));
    }
    m->has_mtp =
        m->cfg.num_nextn_predict_layers > 0 && layer_present(m->set, m->cfg.num_hidden_layers);

    m->layers = calloc((size_t)m->cfg.num_hidden_layers, sizeof(*m->layers));
    if (m->layers == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "checkpoint '%s': cannot allocate the layer table", dir);
        goto out_destroy;
    }
    for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
        m->layers[l].is_moe = mt_config_layer_is_moe(&m->cfg, l);
        if (!m->layers[l].is_moe) {
            continue;
        }
        m->layers[l].experts =
            calloc((size_t)m->cfg.n_routed_experts, sizeof(*m->layers[l].experts));
        if (m->layers[l].experts == NULL) {
            st =
                mt_fail(MT_ERR_NOMEM, 0, "checkpoint '%s': cannot allocate the expert tables", dir);
            goto out_destroy;
        }
    }

    w.cfg = &m->cfg;
    w.fp8 = m->fp8;
    w.with_mtp = m->has_mtp;
    w.fn = check_fn;
    w.ctx = &c;
    if ((st = emit_model(&w)) != MT_OK ||
        (st = mt_inventory_build(&m->cfg, m->fp8, m->has_mtp, &specs, &n_specs)) != MT_OK ||
        (st = warn_extras(m, specs, n_specs)) != MT_OK) {
        goto out_destroy;
    }
    if (m->cfg.tie_word_embeddings) {
        m->head = m->embed;
    }
    free(specs);
    free(path);
    *model_out = m;
    return MT_OK;

out_destroy:
    free(specs);
    free(path);
    mt_model_destroy(m);
    return st;
}

void
mt_model_destroy(struct mt_model *model)
{
    if (model == NULL) {
        return;
    }
    if (model->layers != NULL) {
        for (int l = 0; l < model->cfg.num_hidden_layers; l++) {
            free(model->layers[l].experts);
        }
        free(model->layers);
    }
    mt_st_set_destroy(model->set);
    free(model->dir);
    free(model);
}
