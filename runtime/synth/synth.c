/* SPDX-License-Identifier: MIT */
/*
 * synth.c - write random DeepSeek-V3.2 checkpoints in the exact HF layout (see synth.h).
 *
 * The one idea: a tensor is a pure function of (seed, name, element index). Elements 2j and 2j+1
 * of the tensor keyed k take 24 bits each of splitmix64's output mixer applied to
 * k + (j + 1) * golden ratio, so any strip of any tensor can be generated on its own: FP8 linears
 * are produced 128 rows at a time (one row of 128x128 blocks, whose amax sets each block's
 * power-of-two scale), everything else in chunks of a few MB, in parallel with OpenMP, and written
 * at once through the streaming safetensors writer.
 * An I/O thread writes one strip while the next is computed. Memory stays at a few tens of MB
 * whatever the size of the checkpoint, and the bytes depend only on the seed and the options (not
 * on the thread count or the order of writing).
 *
 * Scaling, so a forward pass stays finite and informative through every layer: RMSNorm feeds each
 * sub-block a unit-RMS input; every projection is U(-a, a) with a = sqrt(3 / in), which keeps unit
 * RMS; the two projections that write into the residual stream (o_proj, down_proj) are shrunk by
 * 1/sqrt(2 (layers + 1)), so the residual grows to O(1) rather than O(layers); embeddings are
 * U(-0.5, 0.5), the same order as what the layers add (so both matter); lm_head has gain 2 (logits
 * of standard deviation ~2: greedy decoding is not a coin toss between near ties). Norm weights are
 * 1 +- 0.05, biases +- 0.02.
 *
 * Files: config.json first, then the tokenizer files, then the shards, and
 * model.safetensors.index.json last; a failure removes what was written.
 */
#include <config.h>

#include "runtime/synth/synth.h"
#include "runtime/base/clock.h"

#include "cpu/convert.h"
#include "runtime/base/file_util.h"
#include "runtime/model/model.h"
#include "runtime/model/safetensors.h"
#include "runtime/synth/synth_paths.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define SYNTH_GOLDEN 0x9e3779b97f4a7c15ULL
#define SYNTH_BLOCK 128
/* Non-FP8 tensors are generated this many elements at a time. */
#define SYNTH_CHUNK_ELEMS ((size_t)2 << 20)
/* ... in parallel pieces of this many. */
#define SYNTH_PIECE 4096
/* Shards are cut before a tensor that would take one past this size (the published checkpoint's
 * 163 shards average 4.23 GB); a checkpoint smaller than two of them is cut in two halves, so that
 * even tiny exercises multi-shard loading. */
#define SYNTH_SHARD_BYTES 4300000000ULL
#define SYNTH_MAX_FILES 4096

/* ---- the generator --------------------------------------------------------------------------- */

static inline uint64_t
synth_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t
mt_synth_key(uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        h = (h ^ *p) * 0x100000001b3ULL;
    }
    return synth_mix64(h ^ synth_mix64(seed + SYNTH_GOLDEN));
}

/* 24 random bits, centred: exactly representable, in [-1, 1). */
static inline float
synth_bits_to_float_(uint32_t bits24)
{
    return (float)((int32_t)bits24 - (1 << 23)) * 0x1p-23f;
}

/* Elements 2j and 2j + 1 share one 64-bit hash: its top 24 bits and the 24 below them. */
static inline float
synth_uniform_(uint64_t key, uint64_t i)
{
    uint64_t z = synth_mix64(key + ((i >> 1) + 1) * SYNTH_GOLDEN);

    return synth_bits_to_float_((i & 1) ? (uint32_t)(z >> 16) & 0xffffffu : (uint32_t)(z >> 40));
}

float
mt_synth_uniform(uint64_t key, uint64_t i)
{
    return synth_uniform_(key, i);
}

/* dst[k] = mean + amp * U(key, start + k) for k < n, one hash per pair; returns max |dst[k]|. */
static inline float
synth_fill_(uint64_t key, uint64_t start, size_t n, float mean, float amp, float *dst)
{
    float amax = 0.0f;
    size_t k = 0;

    if (n > 0 && (start & 1) != 0) {
        float v = mean + amp * synth_uniform_(key, start);
        dst[k++] = v;
        amax = fabsf(v);
    }
    for (; k + 1 < n; k += 2) {
        uint64_t z = synth_mix64(key + (((start + k) >> 1) + 1) * SYNTH_GOLDEN);
        float v0 = mean + amp * synth_bits_to_float_((uint32_t)(z >> 40));
        float v1 = mean + amp * synth_bits_to_float_((uint32_t)(z >> 16) & 0xffffffu);
        float a0 = fabsf(v0);
        float a1 = fabsf(v1);

        dst[k] = v0;
        dst[k + 1] = v1;
        amax = a0 > amax ? a0 : amax; /* not fmaxf: that is a libm call here */
        amax = a1 > amax ? a1 : amax;
    }
    if (k < n) {
        float v = mean + amp * synth_uniform_(key, start + k);
        float a = fabsf(v);
        dst[k] = v;
        amax = a > amax ? a : amax;
    }
    return amax;
}

/*
 * Round-to-nearest-even e4m3fn of x by integer arithmetic on its bits: for normal results the
 * float's exponent is rebiased (127 -> 7) and its mantissa rounded from 23 to 3 bits, a carry
 * moving into the exponent as it should. Zero, subnormal results, |x| >= 448 and NaN go to
 * mt_f32_to_fp8 (about 20 ns, too slow for 10^10 elements, hence this path).
 */
static inline uint8_t
synth_fp8_(float x)
{
    uint32_t u;
    uint32_t code;
    uint8_t sign;

    memcpy(&u, &x, sizeof(u));
    sign = (uint8_t)((u >> 24) & 0x80u);
    u &= 0x7fffffffu;
    if (u < 0x3c800000u || u >= 0x43e00000u) { /* below 2^-6, or 448 and beyond */
        return mt_f32_to_fp8(x);
    }
    u += 0x7ffffu + ((u >> 20) & 1u);
    code = (u >> 20) - (120u << 3);
    if (code > 0x7eu) {
        code = 0x7eu;
    }
    return (uint8_t)(sign | code);
}

uint8_t
mt_synth_fp8_encode(float x)
{
    return synth_fp8_(x);
}

/* ---- presets --------------------------------------------------------------------------------- */

static void
synth_set_moe_layers_(struct mt_model_config *cfg)
{
    for (int l = 0; l < MT_MAX_LAYERS; l++) {
        cfg->layer_is_moe[l] = l >= cfg->first_k_dense_replace;
    }
}

static void
synth_preset_tiny_(struct mt_model_config *cfg)
{
    cfg->hidden_size = 256;
    cfg->num_hidden_layers = 4;
    cfg->first_k_dense_replace = 1;
    cfg->intermediate_size = 512;
    cfg->moe_intermediate_size = 64;
    cfg->vocab_size = 1024; /* > every id of the generated tokenizer (603) */
    cfg->num_attention_heads = 8;
    cfg->num_key_value_heads = 8;
    cfg->q_lora_rank = 64;
    cfg->kv_lora_rank = 64;
    cfg->qk_nope_head_dim = 32;
    cfg->qk_rope_head_dim = 32;
    cfg->v_head_dim = 32;
    cfg->n_routed_experts = 16;
    cfg->n_shared_experts = 1;
    cfg->num_experts_per_tok = 4;
    cfg->n_group = 4;
    cfg->topk_group = 2;
    cfg->rope_factor = 4.0;
    cfg->rope_original_max_pos = 1024;
    cfg->max_position_embeddings = 4096;
    /*
     * 16 index heads, not fewer: with random weights and only a few heads, many index scores are
     * exactly 0 (every head's ReLU is 0) and top-k then breaks ties arbitrarily, so no two
     * implementations could agree on the selected positions.
     */
    cfg->index_n_heads = 16;
    cfg->index_head_dim = 64;
    cfg->index_topk = 16;
}

static void
synth_preset_small_(struct mt_model_config *cfg)
{
    /* The real vocabulary; everything else about 1/14 of the 671B widths (~310 MB at FP8). */
    cfg->hidden_size = 512;
    cfg->num_hidden_layers = 4;
    cfg->first_k_dense_replace = 1;
    cfg->intermediate_size = 1536;
    cfg->moe_intermediate_size = 128;
    cfg->num_attention_heads = 16;
    cfg->num_key_value_heads = 16;
    cfg->q_lora_rank = 256;
    cfg->kv_lora_rank = 128;
    cfg->qk_nope_head_dim = 64;
    cfg->qk_rope_head_dim = 64;
    cfg->v_head_dim = 64;
    cfg->n_routed_experts = 64;
    cfg->n_shared_experts = 1;
    cfg->num_experts_per_tok = 8;
    cfg->n_group = 8;
    cfg->topk_group = 4;
    cfg->index_n_heads = 16;
    cfg->index_head_dim = 128;
    cfg->index_topk = 256;
}

static bool
synth_preset_known_(const char *preset)
{
    return preset != NULL && (strcmp(preset, "tiny") == 0 || strcmp(preset, "small") == 0 ||
                              strcmp(preset, "v32-shape") == 0);
}

bool
mt_synth_preset_mtp(const char *preset)
{
    /* tiny carries the MTP layer so loaders see it; the bigger ones skip its 0.3 / 14 GB. */
    return preset != NULL && strcmp(preset, "tiny") == 0;
}

mt_status_t
mt_synth_config(const struct mt_synth_options *opt, struct mt_model_config *cfg_out)
{
    struct mt_model_config cfg;
    char what[64];

    if (!synth_preset_known_(opt->preset)) {
        return mt_fail(MT_ERR_INVAL, 0, "unknown synth preset '%s' (expected tiny, small or "
                       "v32-shape)", opt->preset != NULL ? opt->preset : "(none)");
    }
    mt_config_default_v32(&cfg);
    if (strcmp(opt->preset, "tiny") == 0) {
        synth_preset_tiny_(&cfg);
    } else if (strcmp(opt->preset, "small") == 0) {
        synth_preset_small_(&cfg);
    } else {
        cfg.num_hidden_layers = 5;
        cfg.first_k_dense_replace = 1;
    }
    if (opt->layers >= 0) {
        if (opt->layers < 1 || opt->layers + cfg.num_nextn_predict_layers > MT_MAX_LAYERS) {
            return mt_fail(MT_ERR_INVAL, 0, "--layers %d is out of range (1 to %d)", opt->layers,
                           MT_MAX_LAYERS - cfg.num_nextn_predict_layers);
        }
        cfg.num_hidden_layers = opt->layers;
        if (opt->dense_layers < 0 && cfg.first_k_dense_replace > cfg.num_hidden_layers) {
            cfg.first_k_dense_replace = cfg.num_hidden_layers;
        }
    }
    if (opt->dense_layers >= 0) {
        if (opt->dense_layers > cfg.num_hidden_layers) {
            return mt_fail(MT_ERR_INVAL, 0, "--dense-layers %d exceeds the %d layers",
                           opt->dense_layers, cfg.num_hidden_layers);
        }
        cfg.first_k_dense_replace = opt->dense_layers;
    }
    synth_set_moe_layers_(&cfg);
    cfg.fp8 = !opt->bf16;
    cfg.fp8_block[0] = SYNTH_BLOCK;
    cfg.fp8_block[1] = SYNTH_BLOCK;
    /* Our block scales are powers of two, as DeepSeek's ue8m0 ones. */
    snprintf(cfg.scale_fmt, sizeof(cfg.scale_fmt), "%s", opt->bf16 ? "" : "ue8m0");
    snprintf(cfg.torch_dtype, sizeof(cfg.torch_dtype), "bfloat16");
    snprintf(what, sizeof(what), "synth preset '%s'", opt->preset);
    if (mt_config_validate(&cfg, what) != MT_OK) {
        return MT_ERR_INVAL;
    }
    *cfg_out = cfg;
    return MT_OK;
}

/* ---- tensor plan ----------------------------------------------------------------------------- */

struct synth_tensor {
    enum mt_dtype dtype;
    uint64_t nelem;
    uint64_t nbytes;
    int shard;
    float mean;     /* values are mean + amp * U(-1, 1) */
    float amp;
};

/*
 * The I/O thread: one piece in flight. While it copies a strip into the file (and waits for the
 * page cache to drain to disk), the OpenMP team computes the next strip into the other buffer.
 */
struct synth_io {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct mt_st_writer *w;             /* borrowed: the shard being written */
    const void *data;                   /* the queued piece */
    size_t n;
    bool busy;                          /* a piece is queued or being written */
    bool quit;
    mt_status_t st;                     /* the first write failure (logged by the I/O thread) */
};

struct synth_ctx {
    const struct mt_synth_options *opt;
    struct mt_model_config cfg;
    bool with_mtp;
    struct mt_tensor_spec *specs;       /* owned, [n] */
    struct synth_tensor *plan;          /* owned, [n] */
    size_t n;
    int n_shards;
    uint64_t total_bytes;
    /* work buffers (owned) */
    float *strip;                       /* 128 x widest FP8 linear, fp32 */
    uint8_t *out[2];                    /* one strip or chunk, as stored: two, so one is filled
                                         * while the I/O thread writes the other */
    int cur;                            /* the one being filled */
    size_t out_size;
    float *scales;                      /* block scales of the last FP8 linear, for its SCALE */
    size_t scales_n;
    size_t scales_cap;
    /* files written, removed on failure */
    char *files[SYNTH_MAX_FILES];
    int n_files;
    bool made_dir;
    struct synth_io *io;                /* the I/O thread, while shards are written */
    /* progress */
    uint64_t written;
    uint64_t old_bytes; /* --force: the earlier checkpoint's files, to be freed */
    double t_start;
    double t_last;
    bool tty;
};

static bool
synth_ends_with_(const char *s, const char *suffix)
{
    size_t n = strlen(s);
    size_t m = strlen(suffix);

    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The distribution of one tensor (see the file comment). */
static void
synth_law_(const struct synth_ctx *c, const struct mt_tensor_spec *s, struct synth_tensor *t)
{
    double a;

    t->mean = 0.0f;
    if (s->kind == MT_KIND_SCALE) {
        t->amp = 0.0f;
        return;
    }
    if (s->kind == MT_KIND_VECTOR || s->ndim == 1) {
        if (synth_ends_with_(s->name, "bias")) { /* e_score_correction_bias, k_norm.bias */
            t->amp = 0.02f;
        } else {
            t->mean = 1.0f;
            t->amp = 0.05f;
        }
        return;
    }
    a = sqrt(3.0 / (double)s->shape[1]);
    if (strstr(s->name, "embed_tokens") != NULL) {
        a = 0.5;
    } else if (strcmp(s->name, "lm_head.weight") == 0 ||
               strstr(s->name, "shared_head.head") != NULL) {
        a *= 2.0;
    } else if (strstr(s->name, "o_proj") != NULL || strstr(s->name, "down_proj") != NULL) {
        a /= sqrt(2.0 * (c->cfg.num_hidden_layers + 1));
    }
    t->amp = (float)a;
}

static enum mt_dtype
synth_dtype_(const struct synth_ctx *c, const struct mt_tensor_spec *s)
{
    bool fp8 = !c->opt->bf16;

    switch (s->kind) {
    case MT_KIND_LINEAR:
        return fp8 ? MT_DTYPE_F8_E4M3 : MT_DTYPE_BF16;
    case MT_KIND_SCALE:
        return MT_DTYPE_F32;
    case MT_KIND_VECTOR:
        /* V3.2 keeps norms and biases in F32; a save_pretrained BF16 checkpoint has them BF16,
         * except e_score_correction_bias, which transformers keeps F32 (as model.c sizes it). */
        return fp8 || s->role == MT_ROLE_ROUTER ? MT_DTYPE_F32 : MT_DTYPE_BF16;
    case MT_KIND_DENSE:
    default:
        return MT_DTYPE_BF16;
    }
}

/* Cut the tensors into shards, keeping each FP8 linear with its scale. */
static void
synth_assign_shards_(struct synth_ctx *c)
{
    uint64_t cum = 0;
    uint64_t cur = 0;
    int shard = 0;
    bool halves = c->total_bytes < 2 * SYNTH_SHARD_BYTES;

    for (size_t i = 0; i < c->n; i++) {
        uint64_t unit = c->plan[i].nbytes;
        bool paired = i + 1 < c->n && c->specs[i + 1].kind == MT_KIND_SCALE;

        if (paired) {
            unit += c->plan[i + 1].nbytes;
        }
        if (halves) {
            if (shard == 0 && cum > 0 && cum >= c->total_bytes / 2) {
                shard = 1;
            }
        } else if (cur > 0 && cur + unit > SYNTH_SHARD_BYTES) {
            shard++;
            cur = 0;
        }
        c->plan[i].shard = shard;
        if (paired) {
            c->plan[i + 1].shard = shard;
            i++;
        }
        cur += unit;
        cum += unit;
    }
    c->n_shards = shard + 1;
}

static mt_status_t
synth_plan_(struct synth_ctx *c)
{
    size_t max_cols = 0;
    mt_status_t st;

    st = mt_inventory_build(&c->cfg, !c->opt->bf16, c->with_mtp, &c->specs, &c->n);
    if (st != MT_OK) {
        return st;
    }
    c->plan = calloc(c->n, sizeof(*c->plan));
    if (c->plan == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the plan of %zu tensors", c->n);
    }
    c->total_bytes = 0;
    for (size_t i = 0; i < c->n; i++) {
        const struct mt_tensor_spec *s = &c->specs[i];
        struct synth_tensor *t = &c->plan[i];

        t->dtype = synth_dtype_(c, s);
        t->nelem = 1;
        for (int d = 0; d < s->ndim; d++) {
            t->nelem *= (uint64_t)s->shape[d];
        }
        t->nbytes = t->nelem * mt_dtype_size(t->dtype);
        synth_law_(c, s, t);
        c->total_bytes += t->nbytes;
        if (t->dtype == MT_DTYPE_F8_E4M3) {
            if (s->ndim != 2 || i + 1 >= c->n || c->specs[i + 1].kind != MT_KIND_SCALE) {
                return mt_fail(MT_ERR_INTERNAL, 0, "inventory: FP8 tensor '%s' is not a matrix "
                               "followed by its scale", s->name);
            }
            max_cols = MT_MAX(max_cols, (size_t)s->shape[1]);
        }
    }
    synth_assign_shards_(c);

    c->out_size = MT_MAX(SYNTH_BLOCK * max_cols, SYNTH_CHUNK_ELEMS * sizeof(float));
    c->out[0] = malloc(c->out_size);
    c->out[1] = malloc(c->out_size);
    if (max_cols > 0) {
        c->strip = malloc(SYNTH_BLOCK * max_cols * sizeof(float));
    }
    if (c->out[0] == NULL || c->out[1] == NULL || (max_cols > 0 && c->strip == NULL)) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %zu MB of synth buffers",
                       (2 * c->out_size + SYNTH_BLOCK * max_cols * sizeof(float)) >> 20);
    }
    return MT_OK;
}

/* ---- files ----------------------------------------------------------------------------------- */

static mt_status_t
synth_path_(char *buf, size_t size, const char *dir, const char *name)
{
    if ((size_t)snprintf(buf, size, "%s/%s", dir, name) >= size) {
        return mt_fail(MT_ERR_INVAL, 0, "output path '%s/%s' is too long", dir, name);
    }
    return MT_OK;
}

/* Remember a file we are about to create, so a failure can remove it. */
static mt_status_t
synth_track_(struct synth_ctx *c, const char *path)
{
    for (int i = 0; i < c->n_files; i++) {
        if (strcmp(c->files[i], path) == 0) {
            return MT_OK;
        }
    }
    if (c->n_files == SYNTH_MAX_FILES) {
        return mt_fail(MT_ERR_INTERNAL, 0, "synth: more than %d output files", SYNTH_MAX_FILES);
    }
    c->files[c->n_files] = strdup(path);
    if (c->files[c->n_files] == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a path");
    }
    c->n_files++;
    return MT_OK;
}

static void
synth_remove_written_(struct synth_ctx *c)
{
    for (int i = c->n_files - 1; i >= 0; i--) {
        unlink(c->files[i]);
    }
    if (c->made_dir) {
        rmdir(c->opt->out_dir);
    }
}

static bool
synth_is_old_checkpoint_file_(const char *name)
{
    return strcmp(name, "model.safetensors.index.json") == 0 ||
           strcmp(name, "model.safetensors") == 0 ||
           (strncmp(name, "model-", 6) == 0 && strstr(name, "-of-") != NULL &&
            synth_ends_with_(name, ".safetensors"));
}

/*
 * The shards and index of an earlier checkpoint in the output directory: with remove, unlink them
 * (so none can outlive this one); without, add up their sizes in c->old_bytes, the room that
 * removing them will free.
 */
static mt_status_t
synth_old_checkpoint_(struct synth_ctx *c, bool remove)
{
    const char *dir = c->opt->out_dir;
    char buf[4096];
    struct stat sb;
    struct dirent *e;
    mt_status_t st = MT_OK;
    DIR *d;

    d = opendir(dir);
    if (d == NULL) {
        return mt_fail(MT_ERR_IO, errno, "cannot read output directory '%s'", dir);
    }
    c->old_bytes = 0;
    while (st == MT_OK && (e = readdir(d)) != NULL) {
        if (!synth_is_old_checkpoint_file_(e->d_name) ||
            (st = synth_path_(buf, sizeof(buf), dir, e->d_name)) != MT_OK) {
            continue;
        }
        if (!remove) {
            if (lstat(buf, &sb) == 0 && S_ISREG(sb.st_mode)) {
                c->old_bytes += (uint64_t)sb.st_size;
            }
        } else if (unlink(buf) != 0) {
            st = mt_fail(MT_ERR_IO, errno, "cannot remove old checkpoint file '%s'", buf);
        }
    }
    closedir(d);
    return st;
}

/*
 * Create the output directory (and missing parents), or check that it is empty (with force, that
 * it exists; synth_old_checkpoint_ then measures and later removes an earlier checkpoint there).
 */
static mt_status_t
synth_prepare_dir_(struct synth_ctx *c)
{
    const char *dir = c->opt->out_dir;
    struct stat sb;
    char buf[4096];
    DIR *d;
    struct dirent *e;
    bool empty = true;

    if (stat(dir, &sb) != 0) {
        if (errno != ENOENT) {
            return mt_fail(MT_ERR_IO, errno, "cannot access output directory '%s'", dir);
        }
        if (strlen(dir) >= sizeof(buf)) {
            return mt_fail(MT_ERR_INVAL, 0, "output directory '%s' is too long", dir);
        }
        strcpy(buf, dir);
        for (char *p = buf + 1; *p != '\0'; p++) {
            if (*p == '/') {
                *p = '\0';
                if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                    return mt_fail(MT_ERR_IO, errno, "cannot create directory '%s'", buf);
                }
                *p = '/';
            }
        }
        if (mkdir(dir, 0755) != 0) {
            return mt_fail(MT_ERR_IO, errno, "cannot create output directory '%s'", dir);
        }
        c->made_dir = true;
        return MT_OK;
    }
    if (!S_ISDIR(sb.st_mode)) {
        return mt_fail(MT_ERR_INVAL, 0, "output '%s' exists and is not a directory", dir);
    }
    d = opendir(dir);
    if (d == NULL) {
        return mt_fail(MT_ERR_IO, errno, "cannot read output directory '%s'", dir);
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        empty = false;
        break;
    }
    closedir(d);
    if (!empty && !c->opt->force) {
        return mt_fail(MT_ERR_INVAL, 0, "output directory '%s' is not empty (use --force to "
                       "write into it)", dir);
    }
    return empty ? MT_OK : synth_old_checkpoint_(c, false);
}

static mt_status_t
synth_check_space_(struct synth_ctx *c)
{
    struct statvfs vfs;
    uint64_t avail;
    /* Tensors, plus headers (~150 B per tensor), JSON, tokenizer (8 MB) and 64 MB of slack. */
    uint64_t need = c->total_bytes + 150 * (uint64_t)c->n + ((uint64_t)72 << 20);
    /* An earlier checkpoint that --force replaces is removed before writing: its room is free. */

    if (statvfs(c->opt->out_dir, &vfs) != 0) {
        return mt_fail(MT_ERR_IO, errno, "cannot query free space of '%s'", c->opt->out_dir);
    }
    avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize + c->old_bytes;
    if (avail < need) {
        return mt_fail(MT_ERR_IO, 0,
                       "the checkpoint needs %.2f GB but '%s' has %.2f GB free%s (try fewer "
                       "--layers or another directory)",
                       need / 1e9, c->opt->out_dir, avail / 1e9,
                       c->old_bytes > 0 ? " counting the checkpoint it replaces" : "");
    }
    return MT_OK;
}

/* Write n bytes to path (created or truncated), tracking the file. */
static mt_status_t
synth_write_file_(struct synth_ctx *c, const char *path, const void *data, size_t n)
{
    FILE *f;
    mt_status_t st;

    if ((st = synth_track_(c, path)) != MT_OK) {
        return st;
    }
    f = fopen(path, "wb");
    if (f == NULL) {
        return mt_fail(MT_ERR_IO, errno, "cannot create '%s'", path);
    }
    if (n > 0 && fwrite(data, 1, n, f) != n) {
        int err = errno;
        fclose(f);
        return mt_fail(MT_ERR_IO, err, "cannot write '%s'", path);
    }
    if (fclose(f) != 0) {
        return mt_fail(MT_ERR_IO, errno, "cannot write '%s'", path);
    }
    return MT_OK;
}

static mt_status_t
synth_write_json_(struct synth_ctx *c, const char *path, json_t *root, size_t flags)
{
    char *text;
    mt_status_t st;

    text = json_dumps(root, flags);
    if (text == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot serialise '%s'", path);
    }
    st = synth_write_file_(c, path, text, strlen(text));
    free(text);
    return st;
}

/* ---- tokenizers ------------------------------------------------------------------------------ */

/*
 * The tiny preset's tokenizer: DeepSeek's structure (the same normalizer, the same three-regex
 * Split pre-tokenizer and ByteLevel, the same special-token spellings, BOS 0, EOS 1, pad 2, then
 * the 256 byte symbols in GPT-2's order), with merges learned here by plain BPE training on the
 * paragraph below, so they are real, consistent merges: every merge joins two existing symbols into
 * the next id, and a merge's result is always earlier than any merge that uses it.
 */
static const char synth_corpus_[] =
    "The model reads the prompt, then writes one token at a time. Each token goes through every "
    "layer: attention looks back at the tokens that came before, and the experts of the layer "
    "transform what attention found. A router picks the experts for each token; the other experts "
    "are not read at all, which is why the model can be large and still fast. The weights of the "
    "experts live where there is room for them: in the memory of the graphics card, in the main "
    "memory of the machine, or on the drives, from which they are streamed when they are needed. "
    "The planner decides where each expert should live, and the runtime reports the time it "
    "measured against the time the planner predicted. When the two do not agree, one of them is "
    "wrong, and the test tells which one. There is nothing random about the order of these "
    "steps; only the weights of this test model are random, and they are the same for the same "
    "seed. The tokenizer turns the text into numbers and the numbers back into text.\n"
    "int main(int argc, char **argv)\n{\n    for (int i = 0; i < argc; i++) {\n"
    "        printf(\"%s\\n\", argv[i]);\n    }\n    return 0;\n}\n"
    "def forward(self, x):\n    return self.norm(x + self.attention(x))\n"
    "1 2 3 10 20 30 100 200 300 2024 2025 2026 3.14159 0.5 42\n";

#define SYNTH_TOK_MERGES_MAX 480

/* GPT-2's byte-to-symbol map: printable bytes stand for themselves, the rest for U+0100 on. */
static void
synth_byte_symbols_(unsigned cp_out[256], int rank_out[256])
{
    int rank = 0;
    int extra = 0;

    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) ||
                         (b >= 0xae && b <= 0xff);
        if (printable) {
            cp_out[b] = (unsigned)b;
            rank_out[b] = rank++;
        }
    }
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) ||
                         (b >= 0xae && b <= 0xff);
        if (!printable) {
            cp_out[b] = 256u + (unsigned)extra++;
            rank_out[b] = rank++;
        }
    }
}

static size_t
synth_utf8_(unsigned cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

struct synth_word {
    int *ids;
    int len;
    int freq;
};

struct synth_bpe {
    char **sym;          /* [n_sym] owned strings (UTF-8 of byte-level symbols) */
    int n_sym;
    char **merges;       /* [n_merges] owned "a b" */
    int n_merges;
    struct synth_word *words;
    int n_words;
};

static void
synth_bpe_free_(struct synth_bpe *b)
{
    for (int i = 0; i < b->n_sym; i++) {
        free(b->sym[i]);
    }
    for (int i = 0; i < b->n_merges; i++) {
        free(b->merges[i]);
    }
    for (int i = 0; i < b->n_words; i++) {
        free(b->words[i].ids);
    }
    free(b->sym);
    free(b->merges);
    free(b->words);
}

/* Pre-tokenize (roughly as DeepSeek's regex: " ?letters", 1-3 digits, " ?punctuation", space). */
static mt_status_t
synth_bpe_words_(struct synth_bpe *b, const int byte_id[256])
{
    const unsigned char *s = (const unsigned char *)synth_corpus_;
    size_t n = sizeof(synth_corpus_) - 1;
    size_t i = 0;

    b->words = calloc(n, sizeof(*b->words));
    if (b->words == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate tokenizer training words");
    }
    while (i < n) {
        size_t start = i;
        int w;

        if (s[i] == ' ' && i + 1 < n && !isspace(s[i + 1]) && !isdigit(s[i + 1])) {
            i++;
        }
        if (isalpha(s[i])) {
            while (i < n && isalpha(s[i])) {
                i++;
            }
        } else if (isdigit(s[i])) {
            for (int k = 0; k < 3 && i < n && isdigit(s[i]); k++) {
                i++;
            }
        } else if (isspace(s[i])) {
            while (i < n && isspace(s[i])) {
                i++;
            }
        } else {
            while (i < n && !isspace(s[i]) && !isalnum(s[i])) {
                i++;
            }
        }
        for (w = 0; w < b->n_words; w++) {
            bool same = b->words[w].len == (int)(i - start);
            for (int k = 0; same && k < b->words[w].len; k++) {
                same = b->words[w].ids[k] == byte_id[s[start + k]];
            }
            if (same) {
                break;
            }
        }
        if (w < b->n_words) {
            b->words[w].freq++;
            continue;
        }
        b->words[w].ids = malloc((i - start) * sizeof(int));
        if (b->words[w].ids == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate tokenizer training words");
        }
        for (size_t k = start; k < i; k++) {
            b->words[w].ids[k - start] = byte_id[s[k]];
        }
        b->words[w].len = (int)(i - start);
        b->words[w].freq = 1;
        b->n_words++;
    }
    return MT_OK;
}

/* Learn merges: repeatedly join the most frequent adjacent pair (ties: smaller strings first). */
static mt_status_t
synth_bpe_train_(struct synth_bpe *b, int max_merges)
{
    int cap = b->n_sym + max_merges;
    int *count = NULL;

    b->merges = calloc((size_t)max_merges, sizeof(char *));
    b->sym = realloc(b->sym, (size_t)cap * sizeof(char *));
    count = calloc((size_t)cap * (size_t)cap, sizeof(int));
    if (b->merges == NULL || b->sym == NULL || count == NULL) {
        free(count);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate tokenizer training tables");
    }
    while (b->n_merges < max_merges) {
        int best_a = -1;
        int best_b = -1;
        int best = 1; /* a pair must occur twice */
        int id = b->n_sym;
        size_t la;
        size_t lb;

        memset(count, 0, (size_t)cap * (size_t)cap * sizeof(int));
        for (int w = 0; w < b->n_words; w++) {
            for (int k = 0; k + 1 < b->words[w].len; k++) {
                count[b->words[w].ids[k] * cap + b->words[w].ids[k + 1]] += b->words[w].freq;
            }
        }
        for (int w = 0; w < b->n_words; w++) {
            for (int k = 0; k + 1 < b->words[w].len; k++) {
                int x = b->words[w].ids[k];
                int y = b->words[w].ids[k + 1];
                int cnt = count[x * cap + y];
                int cmp;

                if (cnt < best) {
                    continue;
                }
                cmp = best_a < 0 ? -1 : strcmp(b->sym[x], b->sym[best_a]);
                if (cmp == 0) {
                    cmp = strcmp(b->sym[y], b->sym[best_b]);
                }
                if (cnt > best || cmp < 0) {
                    best = cnt;
                    best_a = x;
                    best_b = y;
                }
            }
        }
        if (best_a < 0) {
            break;
        }
        la = strlen(b->sym[best_a]);
        lb = strlen(b->sym[best_b]);
        b->sym[id] = malloc(la + lb + 1);
        b->merges[b->n_merges] = malloc(la + lb + 2);
        if (b->sym[id] == NULL || b->merges[b->n_merges] == NULL) {
            free(b->sym[id]);
            free(count);
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a merge");
        }
        memcpy(b->sym[id], b->sym[best_a], la);
        memcpy(b->sym[id] + la, b->sym[best_b], lb + 1);
        snprintf(b->merges[b->n_merges], la + lb + 2, "%s %s", b->sym[best_a], b->sym[best_b]);
        b->n_sym++;
        b->n_merges++;
        for (int w = 0; w < b->n_words; w++) {
            int *ids = b->words[w].ids;
            int out = 0;

            for (int k = 0; k < b->words[w].len; k++) {
                if (k + 1 < b->words[w].len && ids[k] == best_a && ids[k + 1] == best_b) {
                    ids[out++] = id;
                    k++;
                } else {
                    ids[out++] = ids[k];
                }
            }
            b->words[w].len = out;
        }
    }
    free(count);
    return MT_OK;
}

static json_t *
synth_added_token_(int id, const char *content, bool normalized, bool special)
{
    return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", content,
                     "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", normalized,
                     "special", special);
}

static json_t *
synth_split_(const char *regex)
{
    return json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex", regex,
                     "behavior", "Isolated", "invert", 0);
}

#define SYNTH_BOS "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define SYNTH_EOS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define SYNTH_PAD "<\xef\xbd\x9c\xe2\x96\x81pad\xe2\x96\x81\xef\xbd\x9c>"
#define SYNTH_USER "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define SYNTH_ASSISTANT "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"

/* DeepSeek's three pre-tokenizer regexes, byte for byte. */
static const char synth_re_digits_[] = "\\p{N}{1,3}";
static const char synth_re_cjk_[] =
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+";
static const char synth_re_words_[] =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"
    "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

static json_t *
synth_tiny_tokenizer_json_(const struct synth_bpe *b, int *max_id_out)
{
    static const char *const specials[3] = {SYNTH_BOS, SYNTH_EOS, SYNTH_PAD};
    json_t *root = json_object();
    json_t *added = json_array();
    json_t *vocab = json_object();
    json_t *merges = json_array();
    json_t *pre = json_array();
    json_t *model;
    int next = b->n_sym;
    int rc = 0;

    if (root == NULL || added == NULL || vocab == NULL || merges == NULL || pre == NULL) {
        goto out_fail;
    }
    for (int i = 0; i < 3; i++) {
        rc |= json_array_append_new(added, synth_added_token_(i, specials[i], false, true));
    }
    rc |= json_array_append_new(added, synth_added_token_(next++, SYNTH_USER, true, false));
    rc |= json_array_append_new(added, synth_added_token_(next++, SYNTH_ASSISTANT, true, false));
    rc |= json_array_append_new(added, synth_added_token_(next++, "<think>", false, true));
    rc |= json_array_append_new(added, synth_added_token_(next++, "</think>", false, true));
    for (int i = 0; i < b->n_sym; i++) {
        rc |= json_object_set_new(vocab, i < 3 ? specials[i] : b->sym[i], json_integer(i));
    }
    for (int i = 0; i < b->n_merges; i++) {
        rc |= json_array_append_new(merges, json_string(b->merges[i]));
    }
    rc |= json_array_append_new(pre, synth_split_(synth_re_digits_));
    rc |= json_array_append_new(pre, synth_split_(synth_re_cjk_));
    rc |= json_array_append_new(pre, synth_split_(synth_re_words_));
    rc |= json_array_append_new(pre, json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel",
                                               "add_prefix_space", 0, "trim_offsets", 1,
                                               "use_regex", 0));
    rc |= json_object_set_new(root, "version", json_string("1.0"));
    rc |= json_object_set_new(root, "truncation", json_null());
    rc |= json_object_set_new(root, "padding", json_null());
    rc |= json_object_set_new(root, "added_tokens", added);
    added = NULL;
    rc |= json_object_set_new(root, "normalizer", json_pack("{s:s, s:[]}", "type", "Sequence",
                                                            "normalizers"));
    rc |= json_object_set_new(root, "pre_tokenizer", json_pack("{s:s, s:o}", "type", "Sequence",
                                                               "pretokenizers", pre));
    pre = NULL;
    rc |= json_object_set_new(root, "post_processor",
                              json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel",
                                        "add_prefix_space", 1, "trim_offsets", 0, "use_regex", 1));
    rc |= json_object_set_new(root, "decoder",
                              json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel",
                                        "add_prefix_space", 1, "trim_offsets", 1, "use_regex", 1));
    model = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout",
                      "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0,
                      "byte_fallback", 0, "vocab", vocab, "merges", merges);
    vocab = NULL;
    merges = NULL;
    rc |= json_object_set_new(root, "model", model);
    if (rc != 0 || model == NULL) {
        goto out_fail;
    }
    *max_id_out = next - 1;
    return root;

out_fail:
    json_decref(root);
    json_decref(added);
    json_decref(vocab);
    json_decref(merges);
    json_decref(pre);
    return NULL;
}

static json_t *
synth_tiny_tokenizer_config_(void)
{
    json_t *tok[3];
    static const char *const names[3] = {SYNTH_BOS, SYNTH_EOS, SYNTH_EOS};

    for (int i = 0; i < 3; i++) {
        tok[i] = json_pack("{s:s, s:s, s:b, s:b, s:b, s:b}", "__type", "AddedToken", "content",
                           names[i], "lstrip", 0, "normalized", 1, "rstrip", 0, "single_word", 0);
    }
    return json_pack("{s:b, s:b, s:o?, s:b, s:o?, s:b, s:i, s:o?, s:{}, s:n, s:s}",
                     "add_bos_token", 1, "add_eos_token", 0, "bos_token", tok[0],
                     "clean_up_tokenization_spaces", 0, "eos_token", tok[1], "legacy", 1,
                     "model_max_length", 4096, "pad_token", tok[2], "sp_model_kwargs", "unk_token",
                     "tokenizer_class", "LlamaTokenizerFast");
}

static mt_status_t
synth_write_tiny_tokenizer_(struct synth_ctx *c)
{
    struct synth_bpe b = {0};
    unsigned cp[256];
    int rank[256];
    int byte_id[256];
    char path[4096];
    json_t *root = NULL;
    int max_id = 0;
    int max_merges;
    mt_status_t st;

    synth_byte_symbols_(cp, rank);
    b.sym = calloc(3 + 256, sizeof(char *));
    if (b.sym == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the tokenizer vocabulary");
    }
    b.n_sym = 3;
    for (int i = 0; i < 3; i++) {
        b.sym[i] = strdup(i == 0 ? SYNTH_BOS : i == 1 ? SYNTH_EOS : SYNTH_PAD);
        if (b.sym[i] == NULL) {
            st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the tokenizer vocabulary");
            goto out;
        }
    }
    for (int byte = 0; byte < 256; byte++) {
        char u[3] = {0};

        synth_utf8_(cp[byte], u);
        byte_id[byte] = 3 + rank[byte];
        b.sym[byte_id[byte]] = strdup(u);
        if (b.sym[byte_id[byte]] == NULL) {
            st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the tokenizer vocabulary");
            goto out;
        }
        b.n_sym++;
    }
    /* Merges fill the vocabulary up to vocab_size, less the four added tokens. */
    max_merges = MT_MIN(SYNTH_TOK_MERGES_MAX, c->cfg.vocab_size - b.n_sym - 4);
    if (max_merges < 0) {
        st = mt_fail(MT_ERR_INVAL, 0, "vocab_size %d is too small for a byte-level tokenizer",
                     c->cfg.vocab_size);
        goto out;
    }
    if ((st = synth_bpe_words_(&b, byte_id)) != MT_OK ||
        (st = synth_bpe_train_(&b, max_merges)) != MT_OK) {
        goto out;
    }
    root = synth_tiny_tokenizer_json_(&b, &max_id);
    if (root == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot build tokenizer.json");
        goto out;
    }
    MT_ASSERT(max_id < c->cfg.vocab_size);
    if ((st = synth_path_(path, sizeof(path), c->opt->out_dir, "tokenizer.json")) != MT_OK ||
        (st = synth_write_json_(c, path, root, JSON_INDENT(2))) != MT_OK) {
        goto out;
    }
    json_decref(root);
    root = synth_tiny_tokenizer_config_();
    if (root == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot build tokenizer_config.json");
        goto out;
    }
    if ((st = synth_path_(path, sizeof(path), c->opt->out_dir, "tokenizer_config.json")) != MT_OK) {
        goto out;
    }
    st = synth_write_json_(c, path, root, JSON_INDENT(2));
out:
    json_decref(root);
    synth_bpe_free_(&b);
    return st;
}

static bool
synth_file_exists_(const char *dir, const char *name)
{
    char path[4096];
    struct stat sb;

    return (size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) < sizeof(path) &&
           stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

const char *
mt_synth_tokenizer_dir(const char *opt_dir)
{
    const char *env = getenv("MT_TOKENIZER_DIR");

    if (opt_dir != NULL) {
        return opt_dir;
    }
    if (env != NULL && env[0] != '\0') {
        return env;
    }
    if (synth_file_exists_(MT_SYNTH_SRC_TOKENIZER_DIR, "tokenizer.json")) {
        return MT_SYNTH_SRC_TOKENIZER_DIR;
    }
    return MT_SYNTH_PKGDATA_TOKENIZER_DIR;
}

/* Replace the one occurrence of `from` by `to` (shorter) in place; false if not exactly one. */
static bool
synth_replace_once_(char *data, size_t *n, const char *from, const char *to)
{
    size_t lf = strlen(from);
    size_t lt = strlen(to);
    char *p = memmem(data, *n, from, lf);

    if (p == NULL || lt > lf || memmem(p + lf, *n - (size_t)(p + lf - data), from, lf) != NULL) {
        return false;
    }
    memcpy(p, to, lt);
    memmove(p + lt, p + lf, *n - (size_t)(p + lf - data) + 1);
    *n -= lf - lt;
    return true;
}

/*
 * Copy DeepSeek's tokenizer files. V3.2's tokenizer.json differs from V3's only in naming ids
 * 128798 and 128799 <think> and </think> (tests/data/tokenizer/README.md); when the source still
 * has V3's placeholders there, they are renamed, so the copy is V3.2's.
 */
static mt_status_t
synth_copy_tokenizer_(struct synth_ctx *c)
{
    static const char *const names[2] = {"tokenizer.json", "tokenizer_config.json"};
    const char *src = mt_synth_tokenizer_dir(c->opt->tokenizer_dir);
    char path[4096];
    char *data = NULL;
    size_t n = 0;
    mt_status_t st;

    for (int i = 0; i < 2; i++) {
        if ((st = synth_path_(path, sizeof(path), src, names[i])) != MT_OK) {
            return st;
        }
        /* (checked first so that the likely mistake, no tokenizer directory, gets its hint) */
        if (access(path, R_OK) != 0) {
            return mt_fail(MT_ERR_IO, 0,
                           "cannot open tokenizer file '%s': %s (set MT_TOKENIZER_DIR to a "
                           "directory holding DeepSeek's tokenizer.json)",
                           path, strerror(errno));
        }
        if ((st = mt_file_read_all(path, "tokenizer file", 0, &data, &n)) != MT_OK) {
            return st;
        }
        if (i == 0) {
            /* (a source that is already V3.2's has neither, and is copied as it is) */
            synth_replace_once_(data, &n, "\"<\xef\xbd\x9cplace\xe2\x96\x81holder\xe2\x96\x81"
                                "no\xe2\x96\x81" "798\xef\xbd\x9c>\"", "\"<think>\"");
            synth_replace_once_(data, &n, "\"<\xef\xbd\x9cplace\xe2\x96\x81holder\xe2\x96\x81"
                                "no\xe2\x96\x81" "799\xef\xbd\x9c>\"", "\"</think>\"");
        }
        st = synth_path_(path, sizeof(path), c->opt->out_dir, names[i]);
        if (st == MT_OK) {
            st = synth_write_file_(c, path, data, n);
        }
        free(data);
        if (st != MT_OK) {
            return st;
        }
    }
    return MT_OK;
}

/* ---- tensor data ----------------------------------------------------------------------------- */

static void
synth_progress_(struct synth_ctx *c, int shard, bool final)
{
    double now = mt_clock_now();
    double dt = now - c->t_start;

    if (!c->opt->progress || (!final && now - c->t_last < (c->tty ? 1.0 : 10.0))) {
        return;
    }
    c->t_last = now;
    fprintf(stderr, "%ssynth: %5.1f%%  %.2f / %.2f GB  %.0f MB/s  shard %d/%d%s",
            c->tty ? "\r" : "", c->total_bytes > 0 ? 100.0 * c->written / c->total_bytes : 100.0,
            c->written / 1e9, c->total_bytes / 1e9, dt > 0 ? c->written / dt / 1e6 : 0.0,
            shard + 1, c->n_shards, c->tty && !final ? "" : "\n");
    fflush(stderr);
}

static void *
synth_io_main_(void *arg)
{
    struct synth_io *io = arg;

    pthread_mutex_lock(&io->mu);
    for (;;) {
        struct mt_st_writer *w;
        const void *data;
        size_t n;
        mt_status_t st;

        while (!io->busy && !io->quit) {
            pthread_cond_wait(&io->cv, &io->mu);
        }
        if (!io->busy) {
            break;
        }
        w = io->w;
        data = io->data;
        n = io->n;
        pthread_mutex_unlock(&io->mu);
        st = mt_st_writer_write(w, data, n);
        pthread_mutex_lock(&io->mu);
        if (st != MT_OK && io->st == MT_OK) {
            io->st = st;
        }
        io->busy = false;
        pthread_cond_broadcast(&io->cv);
    }
    pthread_mutex_unlock(&io->mu);
    return NULL;
}

/* Wait until the piece in flight is written; the first write failure so far. */
static mt_status_t
synth_io_drain_(struct synth_io *io)
{
    mt_status_t st;

    pthread_mutex_lock(&io->mu);
    while (io->busy) {
        pthread_cond_wait(&io->cv, &io->mu);
    }
    st = io->st;
    pthread_mutex_unlock(&io->mu);
    return st;
}

static mt_status_t
synth_io_start_(struct synth_ctx *c)
{
    struct synth_io *io = calloc(1, sizeof(*io));
    int ret;

    if (io == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the synth I/O thread");
    }
    pthread_mutex_init(&io->mu, NULL);
    pthread_cond_init(&io->cv, NULL);
    ret = pthread_create(&io->thread, NULL, synth_io_main_, io);
    if (ret != 0) {
        pthread_cond_destroy(&io->cv);
        pthread_mutex_destroy(&io->mu);
        free(io);
        return mt_fail(MT_ERR_NOMEM, ret, "cannot start the synth I/O thread");
    }
    c->io = io;
    return MT_OK;
}

static void
synth_io_stop_(struct synth_ctx *c)
{
    struct synth_io *io = c->io;

    if (io == NULL) {
        return;
    }
    pthread_mutex_lock(&io->mu);
    io->quit = true;
    pthread_cond_broadcast(&io->cv);
    pthread_mutex_unlock(&io->mu);
    pthread_join(io->thread, NULL);
    pthread_cond_destroy(&io->cv);
    pthread_mutex_destroy(&io->mu);
    free(io);
    c->io = NULL;
}

/*
 * Hand the filled buffer c->out[c->cur] (n bytes) to the I/O thread and switch to the other one,
 * which the I/O thread has finished with by then (it holds one piece at most).
 */
static mt_status_t
synth_emit_(struct synth_ctx *c, struct mt_st_writer *w, int shard, size_t n)
{
    struct synth_io *io = c->io;
    mt_status_t st;

    pthread_mutex_lock(&io->mu);
    while (io->busy) {
        pthread_cond_wait(&io->cv, &io->mu);
    }
    st = io->st;
    if (st == MT_OK) {
        io->w = w;
        io->data = c->out[c->cur];
        io->n = n;
        io->busy = true;
        pthread_cond_broadcast(&io->cv);
    }
    pthread_mutex_unlock(&io->mu);
    c->cur ^= 1;
    c->written += n;
    synth_progress_(c, shard, false);
    return st;
}

/* One FP8 linear, a row of 128x128 blocks at a time; its scales are kept for the next tensor. */
static mt_status_t
synth_emit_fp8_(struct synth_ctx *c, struct mt_st_writer *w, size_t i)
{
    const struct mt_tensor_spec *s = &c->specs[i];
    const struct synth_tensor *t = &c->plan[i];
    uint64_t key = mt_synth_key(c->opt->seed, s->name);
    size_t rows = (size_t)s->shape[0];
    size_t cols = (size_t)s->shape[1];
    size_t nrb = MT_CEIL_DIV(rows, SYNTH_BLOCK);
    size_t ncb = MT_CEIL_DIV(cols, SYNTH_BLOCK);
    float amp = t->amp;
    mt_status_t st;

    if (nrb * ncb > c->scales_cap) {
        float *p = realloc(c->scales, nrb * ncb * sizeof(float));
        if (p == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate scales of '%s'", s->name);
        }
        c->scales = p;
        c->scales_cap = nrb * ncb;
    }
    c->scales_n = nrb * ncb;
    for (size_t rb = 0; rb < nrb; rb++) {
        size_t r0 = rb * SYNTH_BLOCK;
        size_t nr = MT_MIN((size_t)SYNTH_BLOCK, rows - r0);
        float *strip = c->strip;
        uint8_t *q = c->out[c->cur];
        float *scales = c->scales + rb * ncb;

#pragma omp parallel for schedule(static)
        for (size_t cb = 0; cb < ncb; cb++) {
            size_t c0 = cb * SYNTH_BLOCK;
            size_t nc = MT_MIN((size_t)SYNTH_BLOCK, cols - c0);
            float amax = 0.0f;
            float scale;
            float inv;
            int e;

            for (size_t r = 0; r < nr; r++) {
                float a = synth_fill_(key, (uint64_t)(r0 + r) * cols + c0, nc, 0.0f, amp,
                                      strip + r * cols + c0);
                amax = a > amax ? a : amax;
            }
            /* The smallest power of two with amax / scale <= 448 (a ue8m0 scale). */
            if (amax > 0.0f) {
                float m = frexpf(amax / MT_FP8_E4M3_MAX, &e);
                scale = ldexpf(1.0f, m == 0.5f ? e - 1 : e);
            } else {
                scale = 1.0f;
            }
            inv = 1.0f / scale;
            scales[cb] = scale;
            for (size_t r = 0; r < nr; r++) {
                const float *src = strip + r * cols + c0;
                uint8_t *dst = q + r * cols + c0;
                for (size_t k = 0; k < nc; k++) {
                    dst[k] = synth_fp8_(src[k] * inv);
                }
            }
        }
        if ((st = synth_emit_(c, w, c->plan[i].shard, nr * cols)) != MT_OK) {
            return st;
        }
    }
    return MT_OK;
}

/* Any other tensor: mean + amp * U, as BF16 or F32, a chunk at a time. */
static mt_status_t
synth_emit_plain_(struct synth_ctx *c, struct mt_st_writer *w, size_t i)
{
    const struct mt_tensor_spec *s = &c->specs[i];
    const struct synth_tensor *t = &c->plan[i];
    uint64_t key = mt_synth_key(c->opt->seed, s->name);
    size_t esize = mt_dtype_size(t->dtype);
    mt_status_t st;

    if (t->dtype != MT_DTYPE_BF16 && t->dtype != MT_DTYPE_F32) {
        return mt_fail(MT_ERR_INTERNAL, 0, "synth: no generator for dtype %s of '%s'",
                       mt_dtype_name(t->dtype), s->name);
    }
    for (uint64_t e0 = 0; e0 < t->nelem; e0 += SYNTH_CHUNK_ELEMS) {
        size_t n = (size_t)MT_MIN((uint64_t)SYNTH_CHUNK_ELEMS, t->nelem - e0);
        float mean = t->mean;
        float amp = t->amp;
        uint8_t *out = c->out[c->cur];

        /* Pieces of SYNTH_PIECE elements; BF16 goes through fp32 on the thread's stack. */
#pragma omp parallel for schedule(static) if (n > 4 * SYNTH_PIECE)
        for (size_t p0 = 0; p0 < n; p0 += SYNTH_PIECE) {
            size_t m = MT_MIN((size_t)SYNTH_PIECE, n - p0);
            float f[SYNTH_PIECE];

            if (t->dtype == MT_DTYPE_F32) {
                synth_fill_(key, e0 + p0, m, mean, amp, (float *)(void *)out + p0);
                continue;
            }
            synth_fill_(key, e0 + p0, m, mean, amp, f);
            for (size_t k = 0; k < m; k++) {
                ((mt_bf16_t *)(void *)out)[p0 + k] = mt_f32_to_bf16(f[k]);
            }
        }
        if ((st = synth_emit_(c, w, t->shard, n * esize)) != MT_OK) {
            return st;
        }
    }
    return MT_OK;
}

static mt_status_t
synth_emit_tensor_(struct synth_ctx *c, struct mt_st_writer *w, size_t i)
{
    const struct mt_tensor_spec *s = &c->specs[i];

    if (c->plan[i].dtype == MT_DTYPE_F8_E4M3) {
        return synth_emit_fp8_(c, w, i);
    }
    if (s->kind == MT_KIND_SCALE) {
        if (i == 0 || c->plan[i - 1].dtype != MT_DTYPE_F8_E4M3 || c->scales_n != c->plan[i].nelem) {
            return mt_fail(MT_ERR_INTERNAL, 0, "synth: scale '%s' does not follow its FP8 weight",
                           s->name);
        }
        /* copied: the next linear's scales overwrite c->scales while this is being written */
        MT_ASSERT(c->plan[i].nbytes <= c->out_size);
        memcpy(c->out[c->cur], c->scales, c->plan[i].nbytes);
        c->scales_n = 0;
        return synth_emit_(c, w, c->plan[i].shard, c->plan[i].nbytes);
    }
    return synth_emit_plain_(c, w, i);
}

static void
synth_shard_name_(char *buf, size_t size, int shard, int n_shards)
{
    /* As the published checkpoint spells them: model-00001-of-000163.safetensors. */
    snprintf(buf, size, "model-%05d-of-%06d.safetensors", shard + 1, n_shards);
}

/* Shard `shard`: tensors [first, end). */
static mt_status_t
synth_write_shard_(struct synth_ctx *c, int shard, size_t first, size_t end)
{
    struct mt_st_writer *w = NULL;
    char name[64];
    char path[4096];
    mt_status_t st;

    synth_shard_name_(name, sizeof(name), shard, c->n_shards);
    if ((st = synth_path_(path, sizeof(path), c->opt->out_dir, name)) != MT_OK ||
        (st = synth_track_(c, path)) != MT_OK || (st = mt_st_writer_create(path, &w)) != MT_OK) {
        return st;
    }
    for (size_t i = first; i < end; i++) {
        const struct mt_tensor_spec *s = &c->specs[i];
        if ((st = mt_st_writer_add(w, s->name, c->plan[i].dtype, s->ndim, s->shape)) != MT_OK) {
            goto out_destroy;
        }
    }
    if ((st = mt_st_writer_meta(w, "format", "pt")) != MT_OK) {
        goto out_destroy;
    }
    for (size_t i = first; i < end; i++) {
        if ((st = synth_emit_tensor_(c, w, i)) != MT_OK) {
            goto out_destroy;
        }
    }
    if ((st = synth_io_drain_(c->io)) != MT_OK) {
        goto out_destroy;
    }
    return mt_st_writer_finish(w);

out_destroy:
    synth_io_drain_(c->io); /* the I/O thread may still be using w */
    mt_st_writer_destroy(w);
    return st;
}

static mt_status_t
synth_write_shards_(struct synth_ctx *c)
{
    size_t first = 0;
    mt_status_t st;

    if ((st = synth_io_start_(c)) != MT_OK) {
        return st;
    }
    for (int shard = 0; shard < c->n_shards && st == MT_OK; shard++) {
        size_t end = first;

        while (end < c->n && c->plan[end].shard == shard) {
            end++;
        }
        st = synth_write_shard_(c, shard, first, end);
        first = end;
    }
    synth_io_stop_(c);
    if (st == MT_OK) {
        synth_progress_(c, c->n_shards - 1, true);
    }
    return st;
}

static mt_status_t
synth_write_index_(struct synth_ctx *c)
{
    json_t *root = NULL;
    json_t *map = json_object();
    char name[64];
    char path[4096];
    int rc = 0;
    mt_status_t st;

    if (map == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot build the safetensors index");
    }
    for (size_t i = 0; i < c->n; i++) {
        synth_shard_name_(name, sizeof(name), c->plan[i].shard, c->n_shards);
        rc |= json_object_set_new(map, c->specs[i].name, json_string(name));
    }
    root = json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)c->total_bytes,
                     "weight_map", map);
    if (rc != 0 || root == NULL) {
        json_decref(root);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot build the safetensors index");
    }
    st = synth_path_(path, sizeof(path), c->opt->out_dir, "model.safetensors.index.json");
    if (st == MT_OK) {
        st = synth_write_json_(c, path, root, JSON_INDENT(2) | JSON_SORT_KEYS);
    }
    json_decref(root);
    return st;
}

static void
synth_ctx_free_(struct synth_ctx *c)
{
    for (int i = 0; i < c->n_files; i++) {
        free(c->files[i]);
    }
    free(c->specs);
    free(c->plan);
    free(c->strip);
    free(c->out[0]);
    free(c->out[1]);
    free(c->scales);
}

mt_status_t
mt_synth_write(const struct mt_synth_options *opt, struct mt_synth_result *res_out)
{
    struct synth_ctx *c;
    char path[4096];
    mt_status_t st;

    if (opt->out_dir == NULL || opt->out_dir[0] == '\0') {
        return mt_fail(MT_ERR_INVAL, 0, "synth: no output directory given");
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate synth state");
    }
    c->opt = opt;
    c->t_start = mt_clock_now();
    c->t_last = c->t_start;
    c->tty = isatty(STDERR_FILENO) != 0;
    c->with_mtp = opt->mtp < 0 ? mt_synth_preset_mtp(opt->preset) : opt->mtp != 0;
    if ((st = mt_synth_config(opt, &c->cfg)) != MT_OK || (st = synth_plan_(c)) != MT_OK) {
        goto out_free;
    }
    if (opt->progress && !opt->dry_run) {
        mt_log_info("synth: preset %s%s, %zu tensors, %.2f GB in %d shard%s -> '%s'", opt->preset,
                    opt->bf16 ? " (bf16)" : "", c->n, c->total_bytes / 1e9, c->n_shards,
                    c->n_shards == 1 ? "" : "s", opt->out_dir);
    }
    if (opt->dry_run) {
        st = MT_OK;
        goto out_result;
    }
    if ((st = synth_prepare_dir_(c)) != MT_OK) {
        goto out_free;
    }
    if ((st = synth_check_space_(c)) != MT_OK ||
        (opt->force && (st = synth_old_checkpoint_(c, true)) != MT_OK)) {
        goto out_remove;
    }
    if ((st = synth_path_(path, sizeof(path), opt->out_dir, "config.json")) != MT_OK ||
        (st = synth_track_(c, path)) != MT_OK || (st = mt_config_save(&c->cfg, path)) != MT_OK) {
        goto out_remove;
    }
    st = strcmp(opt->preset, "tiny") == 0 ? synth_write_tiny_tokenizer_(c)
                                          : synth_copy_tokenizer_(c);
    if (st != MT_OK || (st = synth_write_shards_(c)) != MT_OK ||
        (st = synth_write_index_(c)) != MT_OK) {
        goto out_remove;
    }
out_result:
    if (res_out != NULL) {
        struct stat sb;

        memset(res_out, 0, sizeof(*res_out));
        res_out->n_tensors = c->n;
        res_out->bytes = c->total_bytes;
        res_out->n_shards = c->n_shards;
        for (int i = 0; i < c->n_files; i++) {
            if (stat(c->files[i], &sb) == 0) {
                res_out->file_bytes += (uint64_t)sb.st_size;
            }
        }
        res_out->seconds = mt_clock_now() - c->t_start;
    }
    synth_ctx_free_(c);
    free(c);
    return st;

out_remove:
    synth_remove_written_(c);
out_free:
    synth_ctx_free_(c);
    free(c);
    return st;
}
