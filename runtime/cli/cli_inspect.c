/* SPDX-License-Identifier: MIT */
/*
 * cli_inspect.c - `moetier inspect`: what a checkpoint is, how big, and what a token costs.
 *
 * The one idea: every number comes from the tensor inventory (runtime/model.c) applied to the
 * config, so `--config-only` sizes the full 671B model from config.json alone, and with a
 * checkpoint the same table is printed, with each tensor's bytes as stored, after the registry
 * checked every tensor against that inventory. Human output uses thousands separators plus GiB;
 * --json prints the same figures under stable keys.
 */
#include <config.h>

#include "runtime/cli/cli.h"
#include "runtime/cli/cli_autoplan.h"
#include "runtime/cli/cli_common.h"
#include "runtime/base/json_text.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/model/config.h"
#include "runtime/model/model.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KV_LONG_CONTEXT 131072 /* "128K" tokens */

static void
usage(FILE *f)
{
    fprintf(
        f,
        "usage: moetier inspect -m DIR | --config FILE [--json] [--config-only] [--gpu-mem SIZE]\n"
        "\n"
        "Print DeepSeek-V3.2's architecture, parameters and bytes per component, the bytes of\n"
        "one routed expert, the weight bytes read per decoded token and the KV-cache bytes per\n"
        "token. Without --config-only the checkpoint in DIR is opened and every tensor is\n"
        "checked (presence, shape, dtype, FP8 scales).\n"
        "\n"
        "options:\n"
        "  -m, --model DIR     checkpoint directory (config.json + safetensors shards)\n"
        "      --config-only   read DIR/config.json only, open no weights\n"
        "      --config FILE   read this config.json alone, in place of -m (implies\n"
        "                      --config-only; not with -m)\n"
        "      --json          print JSON (stable keys) instead of text\n"
        "      --gpu-mem SIZE  also print the longest context whose KV cache fits on a GPU\n"
        "                      of SIZE (e.g. 24G) beside the always-on weights (embedding\n"
        "                      in host memory, 1.5 GiB workspace), for each cache layout of\n"
        "                      the GPU engine (run's --kv-dtype and --indexer)\n"
        "  -h, --help          print this help\n");
}

static const struct mt_cli cli = {"inspect", usage};

/* v with thousands separators: 654068416512 -> "654,068,416,512". */
static const char *
fmt_u64(char *buf, size_t size, uint64_t v)
{
    char digits[32];
    int n = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)v);
    size_t o = 0;

    for (int i = 0; i < n && o + 1 < size; i++) {
        if (i > 0 && (n - i) % 3 == 0 && o + 2 < size) {
            buf[o++] = ',';
        }
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

static double
gib(uint64_t v)
{
    return (double)v / (1024.0 * 1024.0 * 1024.0);
}

struct report {
    const char *model_dir; /* NULL with --config FILE alone */
    const char *config_path;
    const struct mt_model_config *cfg;
    struct mt_model_sizes sz;
    bool fp8;
    const struct mt_model *model; /* NULL with --config-only */
    size_t n_shards;
    size_t n_tensors;
    uint64_t gpu_mem;              /* --gpu-mem, 0 when not asked */
    uint64_t kv_room;              /* of it, bytes left for the KV cache */
    int64_t ctx_fits[2][3];        /* longest context per indexer x latent of the tables below */
    bool ctx_capped[2][3];         /* ... cut to the model's max_position_embeddings */
};

/*
 * The GPU engine's cache layouts whose context length inspect reports (`run --kv-dtype`,
 * `--indexer`): three latent dtypes, each with the exact indexer's keys (the default) and with
 * DeepSeek's FP8 keys. mt_cli_gpu_kv_bytes is what `run` and `plan` budget for the same flags.
 */
static const struct {
    const char *name;
    enum mt_dtype dtype;
} kv_latents[3] = {{"fp32", MT_DTYPE_F32}, {"bf16", MT_DTYPE_BF16}, {"fp8", MT_DTYPE_F8_E4M3}};
static const struct {
    const char *name;
    enum mt_indexer_mode mode;
} kv_indexers[2] = {{"exact", MT_INDEXER_EXACT}, {"fp8", MT_INDEXER_FP8}};

#define GPU_WORKSPACE_BYTES (3ull << 29) /* 1.5 GiB, the planner's default --gpu-reserve */

/* What fits on a GPU of r->gpu_mem: the always-on weights less the embedding, the workspace. */
static void
context_fits(struct report *r)
{
    uint64_t weights = r->sz.other_bytes - r->sz.bytes[MT_ROLE_EMBED];
    uint64_t need = weights + GPU_WORKSPACE_BYTES;
    int64_t positions = r->cfg->max_position_embeddings;

    r->kv_room = r->gpu_mem > need ? r->gpu_mem - need : 0;
    for (int x = 0; x < 2; x++) {
        for (int i = 0; i < 3; i++) {
            uint64_t per = mt_cli_gpu_kv_bytes(r->cfg, kv_latents[i].dtype, true,
                                               kv_indexers[x].mode);
            int64_t n = per > 0 ? (int64_t)(r->kv_room / per) : 0;
            r->ctx_capped[x][i] = n > positions;
            r->ctx_fits[x][i] = n > positions ? positions : n;
        }
    }
}

/* The component table: inspect's rows in print order, with the role they sum. */
static const struct {
    enum mt_tensor_role role;
    const char *label;
} components[] = {
    {MT_ROLE_EMBED, "embedding"},      {MT_ROLE_HEAD, "lm_head"},
    {MT_ROLE_ATTN, "attention (MLA)"}, {MT_ROLE_INDEXER, "indexer (DSA)"},
    {MT_ROLE_DENSE_MLP, "dense MLP"},  {MT_ROLE_SHARED_EXPERT, "shared experts"},
    {MT_ROLE_ROUTER, "routers"},       {MT_ROLE_ROUTED_EXPERT, "routed experts"},
    {MT_ROLE_NORM, "norms"},
};
#define N_COMPONENTS (sizeof(components) / sizeof(components[0]))

static uint64_t
main_params(const struct report *r)
{
    uint64_t p = 0;

    for (int i = 0; i < MT_ROLE_COUNT; i++) {
        p += r->sz.params[i];
    }
    return p;
}

static int
mtp_layers(const struct report *r)
{
    if (r->model != NULL) {
        return r->model->has_mtp ? r->cfg->num_nextn_predict_layers : 0;
    }
    return r->cfg->num_nextn_predict_layers;
}

static uint64_t
total_bytes(const struct report *r)
{
    return r->sz.routed_bytes + r->sz.other_bytes + (mtp_layers(r) > 0 ? r->sz.mtp_bytes : 0);
}

static void
print_text(const struct report *r)
{
    const struct mt_model_config *c = r->cfg;
    char a[40];
    char b[40];
    char d[40];
    int moe = r->sz.n_moe_layers;
    uint64_t tok = r->sz.token_bytes_always + r->sz.token_bytes_routed;
    uint64_t kv_long = r->sz.kv_bytes_per_token * (uint64_t)KV_LONG_CONTEXT;

    printf("DeepSeek-V3.2 (deepseek_v32): %s%s\n", r->model_dir ? r->model_dir : r->config_path,
           r->model == NULL ? " (config only)" : "");
    printf("\narchitecture\n");
    printf("  layers          %d: %d dense + %d MoE", c->num_hidden_layers,
           c->num_hidden_layers - moe, moe);
    if (c->num_nextn_predict_layers > 0) {
        printf(", + %d MTP layer%s%s", c->num_nextn_predict_layers,
               c->num_nextn_predict_layers > 1 ? "s" : "",
               mtp_layers(r) == 0 ? " (absent from the checkpoint)" : "");
    }
    printf("\n  hidden size     %s, vocabulary %s\n", fmt_u64(a, sizeof(a), c->hidden_size),
           fmt_u64(b, sizeof(b), c->vocab_size));
    printf("  attention       MLA, %d heads; q_lora %s, kv_lora %s; qk %d + %d rope, v %d; "
           "softmax scale %.7f\n",
           c->num_attention_heads, fmt_u64(a, sizeof(a), c->q_lora_rank),
           fmt_u64(b, sizeof(b), c->kv_lora_rank), c->qk_nope_head_dim, c->qk_rope_head_dim,
           c->v_head_dim, mt_config_softmax_scale(c));
    printf("  DSA indexer     %d heads x %d, top-k %s\n", c->index_n_heads, c->index_head_dim,
           fmt_u64(a, sizeof(a), c->index_topk));
    printf("  experts         %d routed (%d per token; %d groups, keep %d), %d shared; width %s; "
           "routed scale %g\n",
           c->n_routed_experts, c->num_experts_per_tok, c->n_group, c->topk_group,
           c->n_shared_experts, fmt_u64(a, sizeof(a), c->moe_intermediate_size),
           c->routed_scaling_factor);
    printf("  dense MLP       width %s\n", fmt_u64(a, sizeof(a), c->intermediate_size));
    if (strcmp(c->rope_type, "yarn") == 0) {
        printf("  positions       %s (YaRN x%g of %s, theta %g)\n",
               fmt_u64(a, sizeof(a), c->max_position_embeddings), c->rope_factor,
               fmt_u64(b, sizeof(b), c->rope_original_max_pos), c->rope_theta);
    } else {
        printf("  positions       %s (plain RoPE, theta %g)\n",
               fmt_u64(a, sizeof(a), c->max_position_embeddings), c->rope_theta);
    }
    if (r->fp8) {
        printf(
            "  storage         FP8 e4m3 linears with 128x128 F32 block scales%s%s; other tensors "
            "%s\n",
            c->scale_fmt[0] ? ", " : "", c->scale_fmt, c->torch_dtype);
    } else {
        printf("  storage         %s (no FP8)\n", c->torch_dtype);
    }

    printf("\n%-26s %22s %22s %10s\n", "component", "params", "bytes", "GiB");
    for (size_t i = 0; i < N_COMPONENTS; i++) {
        enum mt_tensor_role role = components[i].role;

        printf("%-26s %22s %22s %10.2f\n", components[i].label,
               fmt_u64(a, sizeof(a), r->sz.params[role]), fmt_u64(b, sizeof(b), r->sz.bytes[role]),
               gib(r->sz.bytes[role]));
    }
    printf("%-26s %22s %22s %10.2f\n", "main model", fmt_u64(a, sizeof(a), main_params(r)),
           fmt_u64(b, sizeof(b), r->sz.routed_bytes + r->sz.other_bytes),
           gib(r->sz.routed_bytes + r->sz.other_bytes));
    if (mtp_layers(r) > 0) {
        printf("%-26s %22s %22s %10.2f\n", "MTP layer", fmt_u64(a, sizeof(a), r->sz.mtp_params),
               fmt_u64(b, sizeof(b), r->sz.mtp_bytes), gib(r->sz.mtp_bytes));
    }
    printf("%-26s %22s %22s %10.2f\n", "total", "", fmt_u64(b, sizeof(b), total_bytes(r)),
           gib(total_bytes(r)));

    printf("\none routed expert          %s B (%.2f MiB)\n",
           fmt_u64(a, sizeof(a), r->sz.routed_expert_bytes),
           (double)r->sz.routed_expert_bytes / (1024.0 * 1024.0));
    printf("routed experts (main)      %s B (%.2f GiB)\n",
           fmt_u64(a, sizeof(a), r->sz.routed_bytes), gib(r->sz.routed_bytes));
    printf("everything else (main)     %s B (%.2f GiB)\n", fmt_u64(a, sizeof(a), r->sz.other_bytes),
           gib(r->sz.other_bytes));
    printf("read per decoded token     %s B (%.2f GiB) = always-on %s + routed %s (%d experts x "
           "%d MoE layers)\n",
           fmt_u64(a, sizeof(a), tok), gib(tok), fmt_u64(b, sizeof(b), r->sz.token_bytes_always),
           fmt_u64(d, sizeof(d), r->sz.token_bytes_routed), c->num_experts_per_tok, moe);
    printf("KV cache per token         %s B (reference: bf16 latent + k_pe, fp8 indexer key + "
           "scale); "
           "128K tokens: %s B (%.2f GiB)\n",
           fmt_u64(a, sizeof(a), r->sz.kv_bytes_per_token), fmt_u64(b, sizeof(b), kv_long),
           gib(kv_long));
    if (r->gpu_mem > 0) {
        printf("context, --gpu-mem %.1fG  KV room %.2f GiB = GPU - always-on %.2f GiB (embedding "
               "in host memory) - workspace 1.5 GiB\n                          ",
               gib(r->gpu_mem), gib(r->kv_room),
               gib(r->sz.other_bytes - r->sz.bytes[MT_ROLE_EMBED]));
        bool capped = false;
        for (int x = 0; x < 2; x++) {
            printf("%s%-24s", x > 0 ? "                           " : " ",
                   x == 0 ? "exact indexer (default):" : "fp8 indexer:");
            for (int i = 0; i < 3; i++) {
                printf(" %s%s%s", fmt_u64(a, sizeof(a), (uint64_t)r->ctx_fits[x][i]),
                       r->ctx_capped[x][i] ? "*" : "", i < 2 ? " /" : " tokens");
                capped |= r->ctx_capped[x][i];
            }
            printf("%s\n", x == 0 ? " (fp32 / bf16 / fp8 latent)" : "");
        }
        if (capped) {
            printf("                           * the model's %s positions (the cache would hold "
                   "more)\n",
                   fmt_u64(a, sizeof(a), (uint64_t)c->max_position_embeddings));
        }
    }
    if (r->model != NULL) {
        printf("checkpoint                 %zu shard%s, %s tensors; validation passed\n",
               r->n_shards, r->n_shards == 1 ? "" : "s", fmt_u64(a, sizeof(a), r->n_tensors));
    }
}

static int
print_json(const struct report *r)
{
    const struct mt_model_config *c = r->cfg;
    json_t *root = json_object();
    json_t *arch = json_object();
    json_t *comp = json_object();
    json_t *tok = json_object();
    json_t *ckpt;
    int rc = 0;

#define SET(obj, key, value) rc |= json_object_set_new((obj), (key), (value))
#define U64(v) json_integer((json_int_t)(v))
    SET(root, "model", r->model_dir ? mt_json_text(r->model_dir) : json_null());
    SET(root, "config", mt_json_text(r->config_path));
    SET(arch, "num_hidden_layers", json_integer(c->num_hidden_layers));
    SET(arch, "dense_layers", json_integer(c->num_hidden_layers - r->sz.n_moe_layers));
    SET(arch, "moe_layers", json_integer(r->sz.n_moe_layers));
    SET(arch, "mtp_layers", json_integer(c->num_nextn_predict_layers));
    SET(arch, "hidden_size", json_integer(c->hidden_size));
    SET(arch, "vocab_size", json_integer(c->vocab_size));
    SET(arch, "num_attention_heads", json_integer(c->num_attention_heads));
    SET(arch, "q_lora_rank", json_integer(c->q_lora_rank));
    SET(arch, "kv_lora_rank", json_integer(c->kv_lora_rank));
    SET(arch, "qk_nope_head_dim", json_integer(c->qk_nope_head_dim));
    SET(arch, "qk_rope_head_dim", json_integer(c->qk_rope_head_dim));
    SET(arch, "v_head_dim", json_integer(c->v_head_dim));
    SET(arch, "softmax_scale", json_real(mt_config_softmax_scale(c)));
    SET(arch, "index_n_heads", json_integer(c->index_n_heads));
    SET(arch, "index_head_dim", json_integer(c->index_head_dim));
    SET(arch, "index_topk", json_integer(c->index_topk));
    SET(arch, "intermediate_size", json_integer(c->intermediate_size));
    SET(arch, "moe_intermediate_size", json_integer(c->moe_intermediate_size));
    SET(arch, "n_routed_experts", json_integer(c->n_routed_experts));
    SET(arch, "n_shared_experts", json_integer(c->n_shared_experts));
    SET(arch, "num_experts_per_tok", json_integer(c->num_experts_per_tok));
    SET(arch, "n_group", json_integer(c->n_group));
    SET(arch, "topk_group", json_integer(c->topk_group));
    SET(arch, "routed_scaling_factor", json_real(c->routed_scaling_factor));
    SET(arch, "max_position_embeddings", json_integer(c->max_position_embeddings));
    SET(arch, "rope_type", json_string(c->rope_type));
    SET(arch, "rope_factor", json_real(c->rope_factor));
    SET(arch, "fp8", json_boolean(r->fp8));
    SET(arch, "torch_dtype", json_string(c->torch_dtype));
    SET(root, "architecture", arch);
    for (int i = 0; i < MT_ROLE_COUNT; i++) {
        json_t *one = json_object();
        /* "mtp" is the whole MTP layer (as mtp_bytes): the per-role sums are the main model's */
        bool mtp = i == MT_ROLE_MTP;
        bool has_mtp = mtp_layers(r) > 0;

        SET(one, "params", U64(mtp ? (has_mtp ? r->sz.mtp_params : 0) : r->sz.params[i]));
        SET(one, "bytes", U64(mtp ? (has_mtp ? r->sz.mtp_bytes : 0) : r->sz.bytes[i]));
        SET(comp, mt_tensor_role_name((enum mt_tensor_role)i), one);
    }
    SET(root, "components", comp);
    SET(root, "main_params", U64(main_params(r)));
    SET(root, "main_bytes", U64(r->sz.routed_bytes + r->sz.other_bytes));
    SET(root, "routed_expert_bytes", U64(r->sz.routed_expert_bytes));
    SET(root, "routed_bytes", U64(r->sz.routed_bytes));
    SET(root, "other_bytes", U64(r->sz.other_bytes));
    SET(root, "mtp_bytes", U64(mtp_layers(r) > 0 ? r->sz.mtp_bytes : 0));
    SET(root, "total_bytes", U64(total_bytes(r)));
    SET(tok, "always_on", U64(r->sz.token_bytes_always));
    SET(tok, "routed", U64(r->sz.token_bytes_routed));
    SET(tok, "total", U64(r->sz.token_bytes_always + r->sz.token_bytes_routed));
    SET(root, "token_bytes", tok);
    SET(root, "kv_bytes_per_token", U64(r->sz.kv_bytes_per_token));
    SET(root, "kv_bytes_128k", U64(r->sz.kv_bytes_per_token * (uint64_t)KV_LONG_CONTEXT));
    SET(root, "kv_layout",
        json_string("reference: bf16 latent + bf16 k_pe + fp8 indexer key + "
                    "fp32 scale"));
    if (r->gpu_mem > 0) {
        json_t *fit = json_object();
        SET(fit, "gpu_mem", U64(r->gpu_mem));
        SET(fit, "kv_room", U64(r->kv_room));
        SET(fit, "max_positions", U64(r->cfg->max_position_embeddings));
        for (int x = 0; x < 2; x++) {
            json_t *by_latent = json_object();
            for (int i = 0; i < 3; i++) {
                SET(by_latent, kv_latents[i].name, U64((uint64_t)r->ctx_fits[x][i]));
            }
            SET(fit, x == 0 ? "exact_indexer" : "fp8_indexer", by_latent);
        }
        SET(root, "context_fits", fit);
    }
    if (r->model != NULL) {
        ckpt = json_object();
        SET(ckpt, "shards", U64(r->n_shards));
        SET(ckpt, "tensors", U64(r->n_tensors));
        SET(ckpt, "fp8", json_boolean(r->model->fp8));
        SET(ckpt, "has_mtp", json_boolean(r->model->has_mtp));
        SET(ckpt, "validated", json_true());
        SET(root, "checkpoint", ckpt);
    } else {
        SET(root, "checkpoint", json_null());
    }
#undef SET
#undef U64
    if (rc != 0 ||
        json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) !=
            0) {
        json_decref(root);
        mt_cli_error(&cli, "cannot write JSON");
        return 1;
    }
    putchar('\n');
    json_decref(root);
    return 0;
}

int
mt_cli_inspect(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'}, {"json", no_argument, NULL, 'j'},
        {"config-only", no_argument, NULL, 'c'}, {"config", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},        {"gpu-mem", required_argument, NULL, 'g'},
        {NULL, 0, NULL, 0},
    };
    uint64_t gpu_mem = 0;
    const char *dir = NULL;
    const char *config_file = NULL;
    bool json = false;
    bool config_only = false;
    struct mt_model_config cfg;
    struct mt_model *model = NULL;
    struct report r;
    char *path = NULL;
    int opt;
    int rc = 1;

    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":m:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'm': dir = optarg; break;
        case 'j': json = true; break;
        case 'c': config_only = true; break;
        case 'C': config_file = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'g':
            if (!mt_cli_parse_size(&cli, "--gpu-mem", "24G", optarg, &gpu_mem)) {
                return 2; /* the parser said why */
            }
            if (gpu_mem == 0) {
                return mt_cli_usage_error(&cli, "--gpu-mem must be more than 0");
            }
            break;
        default: return mt_cli_bad_option(&cli, opt, argv);
        }
    }
    if (optind < argc) {
        return mt_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
    }
    if (config_file != NULL) {
        config_only = true;
    }
    if (dir == NULL && config_file == NULL) {
        return mt_cli_usage_error(&cli, "-m DIR (or --config FILE) is required");
    }
    if ((dir != NULL && dir[0] == '\0') || (config_file != NULL && config_file[0] == '\0')) {
        return mt_cli_usage_error(&cli, "-m and --config need a non-empty path");
    }
    /* both would be one model read and the other named in the output: say which is meant */
    if (dir != NULL && config_file != NULL) {
        return mt_cli_usage_error(&cli, "-m '%s' and --config '%s' both name the model to "
                                  "inspect: give one (-m DIR --config-only reads DIR/config.json)",
                                  dir, config_file);
    }

    memset(&r, 0, sizeof(r));
    r.model_dir = dir;
    if (dir != NULL) {
        size_t len = strlen(dir) + sizeof("/config.json");

        path = malloc(len);
        if (path == NULL) {
            mt_cli_error(&cli, "out of memory");
            return 1;
        }
        snprintf(path, len, "%s/config.json", dir);
    }
    if (config_only) {
        if (config_file == NULL) {
            config_file = path;
        }
        if (mt_config_load(config_file, &cfg) != MT_OK) {
            goto out; /* mt_fail printed the reason */
        }
        r.cfg = &cfg;
        r.fp8 = cfg.fp8;
        r.config_path = config_file;
    } else {
        if (mt_model_open(dir, &model) != MT_OK) {
            goto out;
        }
        r.cfg = &model->cfg;
        r.fp8 = model->fp8;
        r.model = model;
        r.config_path = path;
        r.n_tensors = mt_st_set_count(model->set);
        r.n_shards = (size_t)mt_st_set_file_count(model->set);
    }
    if ((model != NULL ? mt_model_sizes_of(model, &r.sz)
                       : mt_model_sizes_compute(r.cfg, r.fp8, &r.sz)) != MT_OK) {
        goto out;
    }
    r.gpu_mem = gpu_mem;
    if (gpu_mem > 0) {
        context_fits(&r);
    }
    if (json) {
        rc = print_json(&r);
    } else {
        print_text(&r);
        rc = 0;
    }

out:
    mt_model_destroy(model);
    free(path);
    return rc;
}
