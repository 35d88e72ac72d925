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
 * model.safetensors.index.json last, all into a staging directory that is renamed into place only
 * when complete (see "files" below); a failure removes what was written and nothing else. So does
 * a SIGINT or SIGTERM: the caller's handler only sets opt->stop, which is read between strips, and
 * the stop then takes the failure path (a signal handler itself can do no such cleanup safely).
 */
#include <config.h>

#include "runtime/synth/synth.h"
#include "runtime/base/clock.h"

#include "cpu/convert.h"
#include "runtime/base/file_util.h"
#include "runtime/model/model.h"
#include "runtime/model/safetensors.h"
#include "runtime/synth/synth_paths.h"
#include "runtime/synth/synth_tokenizer.h"

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
#include <sys/file.h>
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

/*
 * tiny with V3.2's attention shapes (16 heads, latent 512, rope 64, nope 128, v 128): the GPU
 * engine's V3.2-shape MLA kernels run on it (a decode step's and a prompt's) while the rest stays
 * tiny, so tests can hold them to the CPU engine on a whole model. 2 layers, ~10 MB.
 */
static void
synth_preset_tiny_mla_(struct mt_model_config *cfg)
{
    synth_preset_tiny_(cfg);
    cfg->num_hidden_layers = 2;
    cfg->num_attention_heads = 16;
    cfg->num_key_value_heads = 16;
    cfg->q_lora_rank = 128;
    cfg->kv_lora_rank = 512;
    cfg->qk_nope_head_dim = 128;
    cfg->qk_rope_head_dim = 64;
    cfg->v_head_dim = 128;
    cfg->index_n_heads = 64; /* and V3.2's indexer: its tensor-core and split-key paths */
    cfg->index_head_dim = 128;
}

static bool
synth_preset_known_(const char *preset)
{
    return preset != NULL && (strcmp(preset, "tiny") == 0 || strcmp(preset, "tiny-mla") == 0 ||
                              strcmp(preset, "small") == 0 || strcmp(preset, "v32-shape") == 0);
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
        return mt_fail(MT_ERR_INVAL, 0, "unknown synth preset '%s' (expected tiny, tiny-mla, "
                       "small or v32-shape)", opt->preset != NULL ? opt->preset : "(none)");
    }
    mt_config_default_v32(&cfg);
    if (strcmp(opt->preset, "tiny") == 0) {
        synth_preset_tiny_(&cfg);
    } else if (strcmp(opt->preset, "tiny-mla") == 0) {
        synth_preset_tiny_mla_(&cfg);
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
    /* files written into the staging directory (names), removed on failure */
    char *files[SYNTH_MAX_FILES];
    int n_files;
    bool made_dir;
    int dir_fd;                         /* owned: the locked output directory, or -1 */
    char stage[4096];                   /* the staging directory, "" when none */
    struct mt_synth_tokenizer_files tok; /* owned: the tokenizer files to write */
    uint64_t file_bytes;                /* all files moved into place */
    struct synth_io *io;                /* the I/O thread, while shards are written */
    /* progress */
    uint64_t written;
    uint64_t old_bytes; /* --force: the earlier checkpoint's shards and index */
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
    uint64_t most = c->opt->shard_bytes > 0 ? c->opt->shard_bytes : SYNTH_SHARD_BYTES;
    /* a model smaller than two default shards gets two halves (so every test model has more
       than one shard); a --shard-size given is followed as asked */
    bool halves = c->opt->shard_bytes == 0 && c->total_bytes < 2 * SYNTH_SHARD_BYTES;

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
        } else if (cur > 0 && cur + unit > most) {
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

/*
 * How synth never loses a file: every input (the preset, the tokenizer files, the free space) is
 * checked before the output directory is touched; the directory is locked (flock on the directory
 * itself, so a second synth into it fails at once instead of racing the first); the new files are
 * written into a staging directory inside it (.synth-XXXXXX, same file system); and only when all
 * of them are complete are they renamed into place, after which the files of an earlier
 * checkpoint that the new one does not replace are removed. A failure before that point removes
 * the staging directory and nothing else. Only SIGKILL or a crash can leave a staging directory
 * behind; --force removes those (whoever made them is gone: it would hold the lock).
 */

static mt_status_t
synth_path_(char *buf, size_t size, const char *dir, const char *name)
{
    if ((size_t)snprintf(buf, size, "%s/%s", dir, name) >= size) {
        return mt_fail(MT_ERR_INVAL, 0, "output path '%s/%s' is too long", dir, name);
    }
    return MT_OK;
}

/* Remember a file we are about to create in the staging directory (name without directory). */
static mt_status_t
synth_track_(struct synth_ctx *c, const char *name)
{
    for (int i = 0; i < c->n_files; i++) {
        if (strcmp(c->files[i], name) == 0) {
            return MT_OK;
        }
    }
    if (c->n_files == SYNTH_MAX_FILES) {
        return mt_fail(MT_ERR_INTERNAL, 0, "synth: more than %d output files", SYNTH_MAX_FILES);
    }
    c->files[c->n_files] = strdup(name);
    if (c->files[c->n_files] == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a path");
    }
    c->n_files++;
    return MT_OK;
}

/* The staged path of a new file, tracked for removal on failure. */
static mt_status_t
synth_stage_path_(struct synth_ctx *c, const char *name, char *buf, size_t size)
{
    mt_status_t st = synth_path_(buf, size, c->stage, name);

    return st == MT_OK ? synth_track_(c, name) : st;
}

/* Undo: the staged files and the staging directory, and the output directory if we made it. */
static void
synth_remove_staged_(struct synth_ctx *c)
{
    char path[4096];

    if (c->stage[0] != '\0') {
        for (int i = c->n_files - 1; i >= 0; i--) {
            if (synth_path_(path, sizeof(path), c->stage, c->files[i]) == MT_OK) {
                unlink(path);
            }
        }
        rmdir(c->stage);
        c->stage[0] = '\0';
    }
    /* (only while we hold the lock: nobody else can have written into it) */
    if (c->made_dir && c->dir_fd >= 0) {
        rmdir(c->opt->out_dir);
    }
}

/* A stop asked for by a signal (opt->stop): a failure, which the caller's unwinding cleans up. */
static mt_status_t
synth_check_stop_(const struct synth_ctx *c)
{
    if (c->opt->stop == NULL || *c->opt->stop == 0) {
        return MT_OK;
    }
    return mt_fail(MT_ERR_IO, 0,
                   "synth into '%s' interrupted: its partial output is removed, the directory "
                   "left as it was",
                   c->opt->out_dir);
}

/* Whether name is one synth_make_stage_ makes: ".synth-" and mkdtemp's six letters or digits. */
static bool
synth_is_stage_name_(const char *name)
{
    if (strncmp(name, ".synth-", 7) != 0 || strlen(name) != 13) {
        return false;
    }
    for (const char *p = name + 7; *p != '\0'; p++) {
        if (!isalnum((unsigned char)*p)) {
            return false;
        }
    }
    return true;
}

/*
 * --force: remove the staging directories a killed synth left in the output directory (called
 * with the lock held, so no running synth owns one). Only their files are removed, not any
 * subdirectory (synth makes none); one that cannot be removed earns a warning, not a failure.
 */
static void
synth_remove_stale_stages_(struct synth_ctx *c)
{
    const char *dir = c->opt->out_dir;
    char path[4096];
    struct stat sb;
    struct dirent *e;
    DIR *d;

    d = opendir(dir);
    if (d == NULL) {
        return; /* synth_lock_dir_ reads it next, and reports why it cannot */
    }
    while ((e = readdir(d)) != NULL) {
        struct dirent *f;
        DIR *sd;

        if (!synth_is_stage_name_(e->d_name) ||
            synth_path_(path, sizeof(path), dir, e->d_name) != MT_OK ||
            lstat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            continue;
        }
        sd = opendir(path);
        while (sd != NULL && (f = readdir(sd)) != NULL) {
            if (strcmp(f->d_name, ".") != 0 && strcmp(f->d_name, "..") != 0) {
                unlinkat(dirfd(sd), f->d_name, 0);
            }
        }
        if (sd != NULL) {
            closedir(sd);
        }
        if (rmdir(path) != 0) {
            mt_log_warn("cannot remove '%s', left by an interrupted synth: %s (remove it by hand)",
                        path, strerror(errno));
        } else if (c->opt->progress) {
            mt_log_info("synth: removed '%s', left by an interrupted synth", path);
        }
    }
    closedir(d);
}

static bool
synth_is_old_checkpoint_file_(const char *name)
{
    return strcmp(name, "model.safetensors.index.json") == 0 ||
           strcmp(name, "model.safetensors") == 0 ||
           (strncmp(name, "model-", 6) == 0 && strstr(name, "-of-") != NULL &&
            synth_ends_with_(name, ".safetensors"));
}

static bool
synth_is_new_file_(const struct synth_ctx *c, const char *name)
{
    for (int i = 0; i < c->n_files; i++) {
        if (strcmp(c->files[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * The shards and index of an earlier checkpoint in the output directory: with remove, unlink those
 * the new checkpoint did not replace (so none can outlive it); without, add up their sizes in
 * c->old_bytes.
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
        } else if (!synth_is_new_file_(c, e->d_name) && unlink(buf) != 0) {
            st = mt_fail(MT_ERR_IO, errno, "cannot remove old checkpoint file '%s'", buf);
        }
    }
    closedir(d);
    return st;
}

/* Create the output directory and any missing parents; an existing one is fine. */
static mt_status_t
synth_make_dir_(struct synth_ctx *c)
{
    const char *dir = c->opt->out_dir;
    struct stat sb;
    char buf[4096];

    if (stat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode)) {
            return mt_fail(MT_ERR_INVAL, 0, "output '%s' exists and is not a directory", dir);
        }
        return MT_OK;
    }
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
    if (mkdir(dir, 0755) == 0) {
        c->made_dir = true;
    } else if (errno !=
               EEXIST) { /* (EEXIST: another process made it meanwhile; the lock decides) */
        return mt_fail(MT_ERR_IO, errno, "cannot create output directory '%s'", dir);
    }
    return MT_OK;
}

/*
 * Lock the output directory against a concurrent synth (flock on the directory itself, so no lock
 * file is left behind), then check that it is empty (with force, measure an earlier checkpoint).
 */
static mt_status_t
synth_lock_dir_(struct synth_ctx *c)
{
    const char *dir = c->opt->out_dir;
    struct stat by_fd;
    struct stat by_path;
    struct dirent *e;
    bool empty = true;
    int fd;
    DIR *d;

    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return mt_fail(MT_ERR_IO, errno, "cannot open output directory '%s'", dir);
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;

        close(fd);
        if (err == EWOULDBLOCK) {
            return mt_fail(MT_ERR_IO, 0, "output directory '%s' is in use by another moetier "
                           "synth (wait for it to finish, or write elsewhere)", dir);
        }
        return mt_fail(MT_ERR_IO, err, "cannot lock output directory '%s'", dir);
    }
    c->dir_fd = fd;
    /* The path must still name the directory we locked (another run may have removed it). */
    if (fstat(fd, &by_fd) != 0 || stat(dir, &by_path) != 0 || by_fd.st_dev != by_path.st_dev ||
        by_fd.st_ino != by_path.st_ino) {
        return mt_fail(MT_ERR_IO, 0, "output directory '%s' was removed or replaced while "
                       "synth was starting (try again)", dir);
    }
    if (c->opt->force) {
        synth_remove_stale_stages_(c);
    }
    d = opendir(dir);
    if (d == NULL) {
        return mt_fail(MT_ERR_IO, errno, "cannot read output directory '%s'", dir);
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            empty = false;
            break;
        }
    }
    closedir(d);
    if (!empty && !c->opt->force) {
        return mt_fail(MT_ERR_INVAL, 0, "output directory '%s' is not empty (use --force to "
                       "write into it)", dir);
    }
    return empty ? MT_OK : synth_old_checkpoint_(c, false);
}

/* The new checkpoint is written before the old one is removed: it needs room of its own. */
static mt_status_t
synth_check_space_(struct synth_ctx *c)
{
    struct statvfs vfs;
    uint64_t avail;
    /* Tensors, plus headers (~150 B per tensor), JSON, tokenizer (8 MB) and 64 MB of slack. */
    uint64_t need = c->total_bytes + 150 * (uint64_t)c->n + ((uint64_t)72 << 20);

    if (statvfs(c->opt->out_dir, &vfs) != 0) {
        return mt_fail(MT_ERR_IO, errno, "cannot query free space of '%s'", c->opt->out_dir);
    }
    avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    if (avail < need && avail + c->old_bytes >= need) {
        return mt_fail(MT_ERR_IO, 0,
                       "the checkpoint needs %.2f GB but '%s' has %.2f GB free; the checkpoint "
                       "there (%.2f GB) is kept until the new one is complete (remove it first, "
                       "or write elsewhere)",
                       need / 1e9, c->opt->out_dir, avail / 1e9, c->old_bytes / 1e9);
    }
    if (avail < need) {
        return mt_fail(MT_ERR_IO, 0,
                       "the checkpoint needs %.2f GB but '%s' has %.2f GB free (try fewer "
                       "--layers or another directory)",
                       need / 1e9, c->opt->out_dir, avail / 1e9);
    }
    return MT_OK;
}

static mt_status_t
synth_make_stage_(struct synth_ctx *c)
{
    mt_status_t st = synth_path_(c->stage, sizeof(c->stage), c->opt->out_dir, ".synth-XXXXXX");

    if (st != MT_OK) {
        c->stage[0] = '\0';
        return st;
    }
    if (mkdtemp(c->stage) == NULL) {
        st = mt_fail(MT_ERR_IO, errno, "cannot create a staging directory in '%s'",
                     c->opt->out_dir);
        c->stage[0] = '\0';
    }
    return st;
}

/*
 * Move the staged files into the output directory: everything but the index, then remove the
 * files of an earlier checkpoint that were not replaced, then the index (which names the shards)
 * last. Adds up the bytes written in c->file_bytes.
 */
static mt_status_t
synth_commit_(struct synth_ctx *c)
{
    static const char index_name[] = "model.safetensors.index.json";
    char from[4096];
    char to[4096];
    struct stat sb;
    mt_status_t st;

    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < c->n_files; i++) {
            if ((strcmp(c->files[i], index_name) == 0) != (pass == 1)) {
                continue;
            }
            if ((st = synth_path_(from, sizeof(from), c->stage, c->files[i])) != MT_OK ||
                (st = synth_path_(to, sizeof(to), c->opt->out_dir, c->files[i])) != MT_OK) {
                return st;
            }
            if (stat(from, &sb) == 0) {
                c->file_bytes += (uint64_t)sb.st_size;
            }
            if (rename(from, to) != 0) {
                return mt_fail(MT_ERR_IO, errno, "cannot move '%s' to '%s'", from, to);
            }
        }
        if (pass == 0 && c->opt->force && (st = synth_old_checkpoint_(c, true)) != MT_OK) {
            return st;
        }
    }
    rmdir(c->stage);
    c->stage[0] = '\0';
    return MT_OK;
}

/* Write n bytes to the staged file `name`. */
static mt_status_t
synth_write_file_(struct synth_ctx *c, const char *name, const void *data, size_t n)
{
    char path[4096];
    FILE *f;
    mt_status_t st;

    if ((st = synth_stage_path_(c, name, path, sizeof(path))) != MT_OK) {
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
synth_write_json_(struct synth_ctx *c, const char *name, json_t *root, size_t flags)
{
    char *text;
    mt_status_t st;

    text = json_dumps(root, flags);
    if (text == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot serialise '%s'", name);
    }
    st = synth_write_file_(c, name, text, strlen(text));
    free(text);
    return st;
}

/* ---- tokenizer files ------------------------------------------------------------------------- */

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
    return st != MT_OK ? st : synth_check_stop_(c);
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
    if ((st = synth_stage_path_(c, name, path, sizeof(path))) != MT_OK ||
        (st = mt_st_writer_create(path, &w)) != MT_OK) {
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
    st = synth_write_json_(c, "model.safetensors.index.json", root,
                           JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    return st;
}

static void
synth_ctx_free_(struct synth_ctx *c)
{
    for (int i = 0; i < c->n_files; i++) {
        free(c->files[i]);
    }
    if (c->dir_fd >= 0) {
        close(c->dir_fd); /* (releases the lock) */
    }
    mt_synth_tokenizer_files_fini(&c->tok);
    free(c->specs);
    free(c->plan);
    free(c->strip);
    free(c->out[0]);
    free(c->out[1]);
    free(c->scales);
}

/* Every input, checked before the output directory is touched: the tokenizer files, in memory. */
static mt_status_t
synth_read_inputs_(struct synth_ctx *c)
{
    if (strcmp(c->opt->preset, "tiny") == 0 || strcmp(c->opt->preset, "tiny-mla") == 0) {
        return mt_synth_tokenizer_train(c->cfg.vocab_size, &c->tok);
    }
    return mt_synth_tokenizer_load(mt_synth_tokenizer_dir(c->opt->tokenizer_dir), &c->tok);
}

/* config.json, the tokenizer files, the shards, the index: all into the staging directory. */
static mt_status_t
synth_write_staged_(struct synth_ctx *c)
{
    char path[4096];
    mt_status_t st;

    if ((st = synth_stage_path_(c, "config.json", path, sizeof(path))) != MT_OK ||
        (st = mt_config_save(&c->cfg, path)) != MT_OK ||
        (st = synth_write_file_(c, "tokenizer.json", c->tok.json, c->tok.json_len)) != MT_OK ||
        (st = synth_write_file_(c, "tokenizer_config.json", c->tok.config,
                                c->tok.config_len)) != MT_OK ||
        (st = synth_write_shards_(c)) != MT_OK) {
        return st;
    }
    return synth_write_index_(c);
}

mt_status_t
mt_synth_write(const struct mt_synth_options *opt, struct mt_synth_result *res_out)
{
    struct synth_ctx *c;
    mt_status_t st;

    if (opt->out_dir == NULL || opt->out_dir[0] == '\0') {
        return mt_fail(MT_ERR_INVAL, 0, "synth: no output directory given");
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate synth state");
    }
    c->opt = opt;
    c->dir_fd = -1;
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
    if ((st = synth_read_inputs_(c)) != MT_OK || (st = synth_make_dir_(c)) != MT_OK) {
        goto out_free;
    }
    /* a stop is honoured up to the first rename: after it, finishing is what leaves no mess */
    if ((st = synth_lock_dir_(c)) != MT_OK || (st = synth_check_space_(c)) != MT_OK ||
        (st = synth_check_stop_(c)) != MT_OK || (st = synth_make_stage_(c)) != MT_OK ||
        (st = synth_write_staged_(c)) != MT_OK || (st = synth_check_stop_(c)) != MT_OK ||
        (st = synth_commit_(c)) != MT_OK) {
        goto out_remove;
    }
out_result:
    if (res_out != NULL) {
        memset(res_out, 0, sizeof(*res_out));
        res_out->n_tensors = c->n;
        res_out->bytes = c->total_bytes;
        res_out->n_shards = c->n_shards;
        res_out->file_bytes = c->file_bytes;
        res_out->seconds = mt_clock_now() - c->t_start;
    }
    synth_ctx_free_(c);
    free(c);
    return st;

out_remove:
    synth_remove_staged_(c);
out_free:
    synth_ctx_free_(c);
    free(c);
    return st;
}
