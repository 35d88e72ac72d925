/* SPDX-License-Identifier: MIT */
/*
 * test_synth.c - `moetier synth` checkpoints: they load, they are what they claim, they repeat.
 *
 * Writes tiny checkpoints (a few MB each) into temporary directories and checks that
 * mt_model_open accepts them, that sizes, shards and the index agree with the inventory, that an
 * FP8 weight dequantizes back to the generator's values within FP8 precision with sane
 * power-of-two scales, that the generated tokenizer's merges are consistent, that the same seed
 * gives identical bytes and another seed different ones, and that bad requests fail cleanly.
 * Also the bounds of the overrides, where --shard-size cuts, and the tokenizer files (DeepSeek's
 * renamed for V3.2, the tiny one's merges against an independent trainer, tests/reference).
 */
#include <config.h>

#include "runtime/synth/synth.h"
#include "runtime/synth/synth_tokenizer.h"

#include "cpu/convert.h"
#include "runtime/model/model.h"
#include "runtime/model/safetensors.h"
#include "runtime/base/file_util.h"
#include "runtime/base/status.h"
#include "tests/tap.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXPERT_UP "model.layers.1.mlp.experts.0.up_proj"

static struct mt_synth_options
tiny_opts(const char *dir, uint64_t seed)
{
    struct mt_synth_options o = {0};

    o.out_dir = dir;
    o.preset = "tiny";
    o.layers = -1;
    o.dense_layers = -1;
    o.mtp = -1;
    o.seed = seed;
    return o;
}

static char *
path_in(const char *dir, const char *name)
{
    static char buf[4][4096];
    static int slot;
    char *b = buf[slot++ % 4];

    snprintf(b, sizeof(buf[0]), "%s/%s", dir, name);
    return b;
}

/* Byte-compare two files; -1 when either cannot be read. */
static int
files_equal(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb");
    FILE *fb = fopen(b, "rb");
    int eq = 1;

    if (fa == NULL || fb == NULL) {
        eq = -1;
    } else {
        int ca;
        int cb;
        do {
            ca = getc(fa);
            cb = getc(fb);
            if (ca != cb) {
                eq = 0;
                break;
            }
        } while (ca != EOF);
    }
    if (fa != NULL) {
        fclose(fa);
    }
    if (fb != NULL) {
        fclose(fb);
    }
    return eq;
}

/* Every regular file of dir a equals its namesake in b (and the counts match). */
static bool
dirs_equal(const char *a, const char *b, int *n_files)
{
    DIR *d = opendir(a);
    struct dirent *e;
    bool eq = d != NULL;

    *n_files = 0;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        (*n_files)++;
        if (files_equal(path_in(a, e->d_name), path_in(b, e->d_name)) != 1) {
            tap_diag("%s differs", e->d_name);
            eq = false;
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    return eq;
}

static bool
is_pow2(float s)
{
    int e;

    return s > 0.0f && isfinite(s) && frexpf(s, &e) == 0.5f;
}

static void
test_fp8_encoder(void)
{
    uint64_t key = mt_synth_key(7, "fp8");
    size_t bad = 0;
    float worst = 0.0f;

    /* Every code's value, the midpoints between neighbours and one float either side. */
    for (int c = 0; c < 0x7f; c++) {
        float v = mt_fp8_to_f32((mt_fp8_t)c);
        float next = c < 0x7e ? mt_fp8_to_f32((mt_fp8_t)(c + 1)) : v;
        float mid = 0.5f * (v + next);
        float probes[5] = {v, mid, nextafterf(mid, 0.0f), nextafterf(mid, 1e9f), -mid};

        for (int k = 0; k < 5; k++) {
            if (mt_synth_fp8_encode(probes[k]) != mt_f32_to_fp8(probes[k])) {
                bad++;
                worst = probes[k];
            }
        }
    }
    /* Random values over the whole range and over small magnitudes. */
    for (uint64_t i = 0; i < 2000000; i++) {
        float u = mt_synth_uniform(key, i);
        float x = (i & 1) ? 448.0f * u : ldexpf(u, -(int)(i % 24));
        if (mt_synth_fp8_encode(x) != mt_f32_to_fp8(x)) {
            bad++;
            worst = x;
        }
    }
    tap_ok(bad == 0, "fast e4m3 encoder equals mt_f32_to_fp8 on boundaries and 2M values");
    if (bad != 0) {
        tap_diag("%zu mismatches, e.g. %a", bad, worst);
    }
}

static void
test_generator(void)
{
    uint64_t key = mt_synth_key(1, "model.norm.weight");
    double sum = 0.0;
    float lo = 1.0f;
    float hi = -1.0f;

    for (uint64_t i = 0; i < 100000; i++) {
        float u = mt_synth_uniform(key, i);
        sum += u;
        lo = fminf(lo, u);
        hi = fmaxf(hi, u);
    }
    tap_ok(lo >= -1.0f && hi < 1.0f && lo < -0.999f && hi > 0.999f && fabs(sum / 1e5) < 0.01,
           "generator is uniform on [-1, 1) (min %g max %g mean %g)", lo, hi, sum / 1e5);
    tap_ok(mt_synth_key(1, "a") != mt_synth_key(2, "a") && mt_synth_key(1, "a") !=
           mt_synth_key(1, "b"), "tensor keys depend on seed and name");
}

/* Dequantize an FP8 weight and compare with the generator's values. */
static void
check_fp8_weight(const struct mt_model *m, const char *name, float amp, uint64_t seed)
{
    const struct mt_st_tensor *w = mt_st_set_find(m->set, name);
    char sname[160];
    const struct mt_st_tensor *s;
    uint8_t *q = NULL;
    float *sc = NULL;
    float *got = NULL;
    float *want = NULL;
    size_t rows;
    size_t cols;
    size_t nrb;
    size_t ncb;
    bool scales_ok = true;
    bool range_ok = true;
    float amax = 0.0f;
    float smax = 0.0f;
    uint64_t key = mt_synth_key(seed, name);

    snprintf(sname, sizeof(sname), "%.*s.weight_scale_inv", (int)(strlen(name) - 7), name);
    s = mt_st_set_find(m->set, sname);
    if (!tap_ok(w != NULL && s != NULL && w->dtype == MT_DTYPE_F8_E4M3 && s->dtype == MT_DTYPE_F32,
                "%s is F8_E4M3 with an F32 weight_scale_inv", name)) {
        return;
    }
    rows = (size_t)w->shape[0];
    cols = (size_t)w->shape[1];
    nrb = (rows + 127) / 128;
    ncb = (cols + 127) / 128;
    q = malloc(w->nbytes);
    sc = malloc(s->nbytes);
    got = malloc(rows * cols * sizeof(float));
    want = malloc(rows * cols * sizeof(float));
    if (q == NULL || sc == NULL || got == NULL || want == NULL ||
        mt_st_set_read(m->set, w, q, w->nbytes) != MT_OK ||
        mt_st_set_read(m->set, s, sc, s->nbytes) != MT_OK) {
        tap_ok(false, "%s can be read", name);
        goto out;
    }
    mt_fp8_dequant_block(q, sc, rows, cols, got);
    for (size_t i = 0; i < nrb * ncb; i++) {
        scales_ok = scales_ok && is_pow2(sc[i]);
        smax = fmaxf(smax, sc[i]);
    }
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < cols; c++) {
            size_t i = r * cols + c;
            float sblk = sc[(r / 128) * ncb + c / 128];
            want[i] = amp * mt_synth_uniform(key, i);
            range_ok = range_ok && isfinite(got[i]) && q[i] != 0x7f && q[i] != 0xff;
            amax = fmaxf(amax, fabsf(got[i]));
            /* the block's largest value uses the top half of e4m3's range */
            scales_ok = scales_ok && fabsf(want[i]) <= 448.0f * sblk;
        }
    }
    tap_ok(scales_ok && smax < amp / 200.0f,
           "%s: %zux%zu scales are powers of two with amax/scale <= 448 (max scale %g)", name, nrb,
           ncb, smax);
    tap_ok(range_ok && amax <= amp * 1.0625f && amax >= amp * 0.9f,
           "%s: values finite, max |w| %g within U(-%g, %g) after rounding", name, amax, amp, amp);
    mt_test_allclose(name, got, want, rows * cols, smax / 512.0f, 1.0f / 16.0f);
out:
    free(q);
    free(sc);
    free(got);
    free(want);
}

static void
check_vectors(const struct mt_model *m, uint64_t seed)
{
    const struct mt_st_tensor *n = mt_st_set_find(m->set, "model.layers.0.input_layernorm.weight");
    const struct mt_st_tensor *e = mt_st_set_find(m->set, "model.embed_tokens.weight");
    float *nv = NULL;
    uint16_t *ev = NULL;
    bool ok = n != NULL && e != NULL && n->dtype == MT_DTYPE_F32 && e->dtype == MT_DTYPE_BF16;
    float lo = 1e9f;
    float hi = -1e9f;
    float eamax = 0.0f;

    if (ok) {
        nv = malloc(n->nbytes);
        ev = malloc(e->nbytes);
        ok = nv != NULL && ev != NULL && mt_st_set_read(m->set, n, nv, n->nbytes) == MT_OK &&
             mt_st_set_read(m->set, e, ev, e->nbytes) == MT_OK;
    }
    for (uint64_t i = 0; ok && i < n->nelem; i++) {
        lo = fminf(lo, nv[i]);
        hi = fmaxf(hi, nv[i]);
    }
    for (uint64_t i = 0; ok && i < e->nelem; i++) {
        eamax = fmaxf(eamax, fabsf(mt_bf16_to_f32(ev[i])));
    }
    tap_ok(ok && lo >= 0.95f && hi <= 1.05f && hi - lo > 0.05f,
           "F32 norm weights are 1 +- 0.05 (%g .. %g)", lo, hi);
    tap_ok(ok && eamax <= 0.5f && eamax > 0.45f && isfinite(eamax),
           "BF16 embeddings within U(-0.5, 0.5) (max |e| %g)", eamax);
    if (ok) {
        uint64_t key = mt_synth_key(seed, "model.embed_tokens.weight");
        float *got = malloc(e->nelem * sizeof(float));
        float *want = malloc(e->nelem * sizeof(float));

        for (uint64_t i = 0; got != NULL && want != NULL && i < e->nelem; i++) {
            got[i] = mt_bf16_to_f32(ev[i]);
            want[i] = 0.5f * mt_synth_uniform(key, i);
        }
        if (got != NULL && want != NULL) {
            mt_test_allclose("embeddings vs the generator", got, want, e->nelem, 0.0f, 1.0f / 256);
        }
        free(got);
        free(want);
    }
    free(nv);
    free(ev);
}

static void
check_index(const char *dir, const struct mt_synth_result *res)
{
    json_error_t err;
    json_t *root = json_load_file(path_in(dir, "model.safetensors.index.json"), 0, &err);
    json_t *map = json_object_get(root, "weight_map");
    json_t *total = json_object_get(json_object_get(root, "metadata"), "total_size");
    const char *k;
    json_t *v;
    bool shards_ok = true;

    json_object_foreach(map, k, v) {
        const char *f = json_string_value(v);
        shards_ok = shards_ok && f != NULL &&
                    (strcmp(f, "model-00001-of-000002.safetensors") == 0 ||
                     strcmp(f, "model-00002-of-000002.safetensors") == 0);
    }
    tap_ok(root != NULL && json_is_integer(total) &&
           (uint64_t)json_integer_value(total) == res->bytes &&
           json_object_size(map) == res->n_tensors && shards_ok,
           "index: total_size %llu and %zu tensors mapped to the two shards",
           (unsigned long long)res->bytes, json_object_size(map));
    json_decref(root);
}

/* The generated tokenizer: merges join existing symbols into later ids; special tokens fit. */
static void
check_tokenizer(const char *dir, int vocab_size)
{
    json_error_t err;
    json_t *root = json_load_file(path_in(dir, "tokenizer.json"), 0, &err);
    json_t *model = json_object_get(root, "model");
    json_t *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges");
    json_t *added = json_object_get(root, "added_tokens");
    json_t *pre = json_object_get(json_object_get(root, "pre_tokenizer"), "pretokenizers");
    size_t i;
    json_t *v;
    bool merges_ok = json_is_array(merges) && json_array_size(merges) > 50;
    bool think = false;
    int max_id = -1;

    json_array_foreach(merges, i, v) {
        const char *m = json_string_value(v);
        const char *sp = m != NULL ? strchr(m, ' ') : NULL;
        char a[256];
        char ab[512];
        json_int_t ia;
        json_int_t ib;
        json_int_t iab;

        if (sp == NULL || (size_t)(sp - m) >= sizeof(a) || strchr(sp + 1, ' ') != NULL) {
            merges_ok = false;
            break;
        }
        memcpy(a, m, (size_t)(sp - m));
        a[sp - m] = '\0';
        snprintf(ab, sizeof(ab), "%s%s", a, sp + 1);
        ia = json_integer_value(json_object_get(vocab, a));
        ib = json_integer_value(json_object_get(vocab, sp + 1));
        iab = json_integer_value(json_object_get(vocab, ab));
        if (json_object_get(vocab, a) == NULL || json_object_get(vocab, sp + 1) == NULL ||
            json_object_get(vocab, ab) == NULL || iab <= ia || iab <= ib ||
            iab != (json_int_t)(259 + i)) {
            merges_ok = false;
            tap_diag("bad merge %zu '%s'", i, m);
            break;
        }
    }
    json_array_foreach(added, i, v) {
        int id = (int)json_integer_value(json_object_get(v, "id"));
        const char *c = json_string_value(json_object_get(v, "content"));
        max_id = id > max_id ? id : max_id;
        think = think || (c != NULL && strcmp(c, "<think>") == 0);
    }
    tap_ok(root != NULL && merges_ok && json_object_size(vocab) == 259 + json_array_size(merges),
           "tiny tokenizer: 3 specials + 256 bytes + %zu consistent merges",
           json_array_size(merges));
    tap_ok(think && max_id < vocab_size && json_array_size(pre) == 4 &&
           json_integer_value(json_object_get(json_array_get(added, 0), "id")) == 0,
           "tiny tokenizer: BOS 0, <think> present, ids up to %d < vocab_size %d, 4 pre-tokenizers",
           max_id, vocab_size);
    json_decref(root);
}

static void
test_tiny(const char *tmp)
{
    char a[4096];
    char b[4096];
    char c[4096];
    struct mt_synth_options o;
    struct mt_synth_result res = {0};
    struct mt_synth_result res2 = {0};
    struct mt_model *m = NULL;
    struct mt_model_sizes sz;
    uint64_t sum = 0;
    int n_files = 0;
    float up_amp;
    mt_status_t st;
    bool same;

    snprintf(a, sizeof(a), "%s/tiny-a", tmp);
    snprintf(b, sizeof(b), "%s/tiny-b", tmp);
    snprintf(c, sizeof(c), "%s/nested/tiny-c", tmp);

    o = tiny_opts(a, 1);
    st = mt_synth_write(&o, &res);
    tap_ok(st == MT_OK && res.n_shards == 2 && res.n_tensors > 100,
           "synth tiny fp8: %llu tensors, %llu bytes, %d shards",
           (unsigned long long)res.n_tensors, (unsigned long long)res.bytes, res.n_shards);
    tap_ok(mt_model_open(a, &m) == MT_OK, "mt_model_open accepts the tiny checkpoint");
    if (m == NULL) {
        tap_diag("%s", mt_last_error());
        return;
    }
    tap_ok(m->fp8 && m->has_mtp && m->cfg.num_hidden_layers == 4 &&
           m->cfg.first_k_dense_replace == 1 && m->cfg.n_group > 1 && m->cfg.hidden_size == 256 &&
           !m->layers[0].is_moe && m->layers[1].is_moe && mt_st_set_count(m->set) == res.n_tensors,
           "loaded: fp8, MTP, 4 layers with 1 dense, n_group %d", m->cfg.n_group);
    if (mt_model_sizes_compute(&m->cfg, true, &sz) == MT_OK) {
        for (int r = 0; r < MT_ROLE_COUNT; r++) {
            sum += sz.bytes[r];
        }
        sum += sz.mtp_bytes;
    }
    tap_ok(sum == res.bytes, "bytes written %llu == mt_model_sizes_compute %llu",
           (unsigned long long)res.bytes, (unsigned long long)sum);
    check_index(a, &res);
    /* a routed expert (full blocks) and kv_a (576-like partial row block: 96 rows) */
    up_amp = sqrtf(3.0f / 256.0f);
    check_fp8_weight(m, "model.layers.1.mlp.experts.3.up_proj.weight", up_amp, 1);
    check_fp8_weight(m, "model.layers.2.self_attn.kv_a_proj_with_mqa.weight", up_amp, 1);
    check_vectors(m, 1);
    mt_model_destroy(m);
    m = NULL;
    check_tokenizer(a, 1024);

    /* determinism */
    o = tiny_opts(b, 1);
    st = mt_synth_write(&o, &res2);
    same = st == MT_OK && dirs_equal(a, b, &n_files);
    tap_ok(same && n_files == 6,
           "same seed: all %d files byte-identical", n_files);
    o = tiny_opts(c, 2);
    tap_ok(mt_synth_write(&o, NULL) == MT_OK &&
           files_equal(path_in(a, "model-00001-of-000002.safetensors"),
                       path_in(c, "model-00001-of-000002.safetensors")) == 0 &&
           files_equal(path_in(a, "model-00002-of-000002.safetensors"),
                       path_in(c, "model-00002-of-000002.safetensors")) == 0 &&
           files_equal(path_in(a, "config.json"), path_in(c, "config.json")) == 1,
           "another seed (into a new nested directory): different shards, same config");

    /* a non-empty directory is refused and left alone; --force replaces the checkpoint */
    o = tiny_opts(a, 3);
    mt_log_set_quiet(true);
    tap_ok(mt_synth_write(&o, NULL) == MT_ERR_INVAL && strstr(mt_last_error(), "not empty") &&
           dirs_equal(a, b, &n_files), "synth into a non-empty directory fails, files untouched");
    mt_log_set_quiet(false);
    o.force = true;
    o.seed = 2;
    tap_ok(mt_synth_write(&o, NULL) == MT_OK && dirs_equal(a, c, &n_files),
           "--force rewrites the directory (now equal to the seed-2 checkpoint)");
}

/*
 * mt_synth_config's overrides (synth.h): --layers runs 1 .. MT_SYNTH_MAX_LAYERS, --dense-layers
 * 0 .. the layer count, each layer from the dense count on is MoE; the MTP default is tiny's alone.
 */
static void
test_config(void)
{
    struct mt_synth_options o = tiny_opts("unused", 0);
    struct mt_model_config cfg;
    bool moe_ok = true;

    mt_log_set_quiet(true);
    o.layers = MT_SYNTH_MAX_LAYERS;
    tap_ok(mt_synth_config(&o, &cfg) == MT_OK && cfg.num_hidden_layers == MT_SYNTH_MAX_LAYERS,
           "--layers %d (MT_SYNTH_MAX_LAYERS) is accepted", MT_SYNTH_MAX_LAYERS);
    o.layers = MT_SYNTH_MAX_LAYERS + 1;
    tap_ok(mt_synth_config(&o, &cfg) == MT_ERR_INVAL, "--layers %d is refused",
           MT_SYNTH_MAX_LAYERS + 1);
    o.layers = 0;
    tap_ok(mt_synth_config(&o, &cfg) == MT_ERR_INVAL, "--layers 0 is refused");

    o.layers = 3;
    o.dense_layers = 3;
    memset(&cfg, 0, sizeof(cfg));
    tap_ok(mt_synth_config(&o, &cfg) == MT_OK && cfg.first_k_dense_replace == 3 &&
               !cfg.layer_is_moe[0] && !cfg.layer_is_moe[2],
           "--layers 3 --dense-layers 3: every layer dense");
    o.dense_layers = 0;
    memset(&cfg, 0, sizeof(cfg));
    if (mt_synth_config(&o, &cfg) != MT_OK) {
        moe_ok = false;
    }
    for (int l = 0; l < 3; l++) {
        moe_ok = moe_ok && cfg.layer_is_moe[l];
    }
    tap_ok(moe_ok && cfg.first_k_dense_replace == 0, "--dense-layers 0: every layer MoE");
    o.layers = -1;
    o.dense_layers = 2;
    memset(&cfg, 0, sizeof(cfg));
    tap_ok(mt_synth_config(&o, &cfg) == MT_OK && cfg.num_hidden_layers == 4 &&
               !cfg.layer_is_moe[1] && cfg.layer_is_moe[2] && cfg.layer_is_moe[3],
           "tiny --dense-layers 2: layers 0 and 1 dense, 2 and 3 MoE");
    mt_log_set_quiet(false);

    tap_ok(mt_synth_preset_mtp("tiny") && !mt_synth_preset_mtp("tiny-mla") &&
               !mt_synth_preset_mtp("small") && !mt_synth_preset_mtp("v32-shape") &&
               !mt_synth_preset_mtp(NULL),
           "the MTP layer is tiny's default, not the other presets'");
}

/* A shard read back from its file: tensors in file order, an FP8 weight and its scale one unit. */
struct shard_info {
    uint64_t bytes;
    uint64_t first_unit;
    uint64_t second_unit;
    uint64_t last_unit;
    int n_units;
};

static int
cmp_offset(const void *a, const void *b)
{
    const struct mt_st_tensor *x = *(const struct mt_st_tensor *const *)a;
    const struct mt_st_tensor *y = *(const struct mt_st_tensor *const *)b;

    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* The shards of the checkpoint in dir, at most max of them; false when a scale is apart from its
 * weight or the files cannot be read. */
static bool
read_shards(const char *dir, struct shard_info *sh, int max, int *n_out)
{
    struct mt_st_set *set = NULL;
    const struct mt_st_tensor **ts = NULL;
    bool ok = mt_st_set_open(dir, &set) == MT_OK;
    int nf = ok ? mt_st_set_file_count(set) : 0;
    size_t n = ok ? mt_st_set_count(set) : 0;

    ok = ok && nf <= max && (ts = calloc(n, sizeof(*ts))) != NULL;
    for (int f = 0; ok && f < nf; f++) {
        size_t k = 0;
        uint64_t unit = 0;

        for (size_t i = 0; i < n; i++) {
            if (mt_st_set_tensor(set, i)->file == f) {
                ts[k++] = mt_st_set_tensor(set, i);
            }
        }
        qsort(ts, k, sizeof(*ts), cmp_offset);
        memset(&sh[f], 0, sizeof(sh[f]));
        for (size_t i = 0; i <= k; i++) {
            size_t ln = i < k ? strlen(ts[i]->name) : 0;
            bool scale = ln > 10 && strcmp(ts[i]->name + ln - 10, "_scale_inv") == 0;

            if (scale) {
                /* "X.weight_scale_inv" right after "X.weight" */
                if (i == 0 || strlen(ts[i - 1]->name) != ln - 10 ||
                    strncmp(ts[i - 1]->name, ts[i]->name, ln - 10) != 0) {
                    tap_diag("%s is not in the shard of its weight", ts[i]->name);
                    ok = false;
                }
            } else if (i > 0) { /* the unit before this tensor (or the end) is complete */
                if (sh[f].n_units == 0) {
                    sh[f].first_unit = unit;
                } else if (sh[f].n_units == 1) {
                    sh[f].second_unit = unit;
                }
                sh[f].last_unit = unit;
                sh[f].n_units++;
                unit = 0;
            }
            if (i < k) {
                unit += ts[i]->nbytes;
                sh[f].bytes += ts[i]->nbytes;
            }
        }
    }
    free(ts);
    mt_st_set_destroy(set);
    *n_out = nf;
    return ok;
}

/*
 * --shard-size (synth.h: "most tensor bytes a shard, an FP8 linear and its scale stay together"):
 * each shard is cut just before the unit that would take it past the size, so a shard is full
 * (the next one's first unit would not fit) and at most the size, unless one unit alone exceeds
 * it. Without it, a checkpoint below two default shards comes in two halves.
 */
static void
test_shards(const char *tmp)
{
    static struct shard_info sh[256];
    struct mt_synth_options o;
    struct mt_synth_result res = {0};
    uint64_t most = 256 << 10;
    uint64_t sum = 0;
    int nf = 0;
    bool ok;

    o = tiny_opts(path_in(tmp, "shards"), 3);
    o.shard_bytes = most;
    ok = mt_synth_write(&o, &res) == MT_OK && read_shards(o.out_dir, sh, 256, &nf);
    ok = ok && nf == res.n_shards && nf > 2;
    for (int f = 0; ok && f < nf; f++) {
        sum += sh[f].bytes;
        if (sh[f].n_units == 0 || (sh[f].bytes > most && sh[f].n_units > 1) ||
            (f + 1 < nf && sh[f].bytes + sh[f + 1].first_unit <= most)) {
            tap_diag("shard %d: %llu bytes, %d units, next unit %llu", f,
                     (unsigned long long)sh[f].bytes, sh[f].n_units,
                     (unsigned long long)(f + 1 < nf ? sh[f + 1].first_unit : 0));
            ok = false;
        }
    }
    tap_ok(ok && sum == res.bytes, "--shard-size 256K: %d shards, each full and within the size "
           "(or one unit), scales beside their weights", nf);

    /* a shard that the first two units fill exactly is not cut after the first */
    most = sh[0].first_unit + (sh[0].n_units > 1 ? sh[0].second_unit : sh[1].first_unit);
    o = tiny_opts(path_in(tmp, "shards-exact"), 3);
    o.shard_bytes = most;
    ok = mt_synth_write(&o, &res) == MT_OK && read_shards(o.out_dir, sh, 256, &nf);
    tap_ok(ok && sh[0].bytes == most,
           "--shard-size of exactly the first two tensors' %llu bytes puts both in shard 1 (%llu)",
           (unsigned long long)most, (unsigned long long)sh[0].bytes);

    o = tiny_opts(path_in(tmp, "shards-halves"), 3);
    ok = mt_synth_write(&o, &res) == MT_OK && read_shards(o.out_dir, sh, 256, &nf);
    tap_ok(ok && nf == 2 && sh[0].bytes >= res.bytes / 2 &&
               sh[0].bytes - sh[0].last_unit < res.bytes / 2,
           "default: two halves, the first the shortest run of tensors reaching half (%llu of "
           "%llu)", (unsigned long long)sh[0].bytes, (unsigned long long)res.bytes);
}

/*
 * The tiny tokenizer's merges against tests/reference/tiny_bpe.py, which trains BPE again from
 * synth_tokenizer.c's description (most frequent pair first, ties to the smaller symbols, pairs
 * seen once last): its 341 merges at a 1,024-id vocabulary, one a line, hash as pinned here, are
 * synth's, all of them.
 */
static void
tokenizer_merges_pinned(const char *tmp)
{
    static const char pin[] = "3162203b64af926f10e06b6fe328b23eaa5b8b91ad7ded00bd5d44e562510785";
    struct mt_synth_tokenizer_files f = {0};
    json_t *root = NULL;
    json_t *merges;
    char hex[65] = "";
    FILE *out = fopen(path_in(tmp, "merges.txt"), "w");
    bool ok = out != NULL && mt_synth_tokenizer_train(1024, &f) == MT_OK &&
              (root = json_loads(f.json, 0, NULL)) != NULL;

    merges = json_object_get(json_object_get(root, "model"), "merges");
    ok = ok && json_array_size(merges) == 341;
    for (size_t i = 0; ok && i < 341; i++) {
        ok = json_is_string(json_array_get(merges, i)) &&
             fprintf(out, "%s\n", json_string_value(json_array_get(merges, i))) > 0;
    }
    if (out != NULL) {
        ok = fclose(out) == 0 && ok;
    }
    ok = ok && tap_sha256_file(path_in(tmp, "merges.txt"), hex) && strcmp(hex, pin) == 0;
    tap_ok(ok, "tiny tokenizer: its 341 merges are tiny_bpe.py's (sha256 %s)", hex);
    json_decref(root);
    mt_synth_tokenizer_files_fini(&f);
}

/*
 * The tokenizer files (synth_tokenizer.h): DeepSeek's are copied with V3's placeholder names for
 * ids 128798 and 128799 renamed <think> and </think>, tokenizer_config.json as it is; the tiny
 * tokenizer needs room for its 259 byte and special symbols and 4 added tokens (263).
 */
static void
test_tokenizer_files(const char *tmp)
{
    static const char ph798[] = "\"<\xef\xbd\x9cplace\xe2\x96\x81holder\xe2\x96\x81no\xe2\x96\x81"
                                "798\xef\xbd\x9c>\"";
    static const char ph799[] = "\"<\xef\xbd\x9cplace\xe2\x96\x81holder\xe2\x96\x81no\xe2\x96\x81"
                                "799\xef\xbd\x9c>\"";
    const char *dir = tap_data_path("tokenizer");
    struct mt_synth_tokenizer_files f = {0};
    char path[4096];
    char *src = NULL;
    char *src_cfg = NULL;
    size_t n = 0;
    size_t n_cfg = 0;
    bool ok;

    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    ok = mt_file_read_all(path, "tokenizer", 0, &src, &n) == MT_OK;
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    ok = ok && mt_file_read_all(path, "tokenizer config", 0, &src_cfg, &n_cfg) == MT_OK;
    if (!ok || strstr(src, ph798) == NULL || strstr(src, ph799) == NULL) {
        tap_ok(true, "# SKIP tests/data/tokenizer is not V3's (no placeholders 798 and 799)");
    } else {
        ok = mt_synth_tokenizer_load(dir, &f) == MT_OK;
        tap_ok(ok && strstr(f.json, "\"<think>\"") != NULL &&
                   strstr(f.json, "\"</think>\"") != NULL && strstr(f.json, ph798) == NULL &&
                   strstr(f.json, ph799) == NULL && strlen(f.json) == f.json_len &&
                   f.json_len == n - (strlen(ph798) - 9) - (strlen(ph799) - 10) &&
                   f.config_len == n_cfg && memcmp(f.config, src_cfg, n_cfg) == 0,
               "DeepSeek's tokenizer: placeholders 798/799 renamed <think>/</think>, config as is");
        mt_synth_tokenizer_files_fini(&f);
    }
    free(src);
    free(src_cfg);
    mt_log_set_quiet(true);
    tap_ok(mt_synth_tokenizer_load(path_in(dir, "nonexistent"), &f) == MT_ERR_IO &&
               strstr(mt_last_error(), "nonexistent/tokenizer.json") != NULL &&
               strstr(mt_last_error(), "MT_TOKENIZER_DIR") != NULL && f.json == NULL,
           "a missing tokenizer directory names the file, with the hint: %s", mt_last_error());
    tokenizer_merges_pinned(tmp);
    ok = mt_synth_tokenizer_train(263, &f) == MT_OK && strstr(f.json, "\"id\": 262") != NULL &&
         strstr(f.json, "\"id\": 263") == NULL;
    mt_synth_tokenizer_files_fini(&f);
    tap_ok(ok && mt_synth_tokenizer_train(262, &f) == MT_ERR_INVAL && f.json == NULL,
           "the tiny tokenizer fits vocab_size 263 (ids up to 262, no merges), not 262");
    mt_log_set_quiet(false);
}

static void
test_variants(const char *tmp)
{
    char d[4096];
    char e[4096];
    struct mt_synth_options o;
    struct mt_synth_result res = {0};
    struct mt_model *m = NULL;
    struct mt_model_sizes sz;
    uint64_t sum = 0;

    snprintf(d, sizeof(d), "%s/tiny-bf16", tmp);
    o = tiny_opts(d, 1);
    o.bf16 = true;
    tap_ok(mt_synth_write(&o, &res) == MT_OK && mt_model_open(d, &m) == MT_OK && !m->fp8 &&
           mt_st_set_find(m->set, EXPERT_UP ".weight_scale_inv") == NULL &&
           mt_st_set_find(m->set, EXPERT_UP ".weight")->dtype == MT_DTYPE_BF16,
           "bf16 tiny validates: BF16 linears, no scales");
    if (m != NULL) {
        if (mt_model_sizes_compute(&m->cfg, false, &sz) == MT_OK) {
            for (int r = 0; r < MT_ROLE_COUNT; r++) {
                sum += sz.bytes[r];
            }
            sum += sz.mtp_bytes;
        }
        tap_ok(sum == res.bytes, "bf16 bytes %llu == mt_model_sizes_compute %llu",
               (unsigned long long)res.bytes, (unsigned long long)sum);
        mt_model_destroy(m);
        m = NULL;
    } else {
        tap_diag("%s", mt_last_error());
        tap_ok(false, "bf16 sizes");
    }

    snprintf(e, sizeof(e), "%s/tiny-l3", tmp);
    o = tiny_opts(e, 1);
    o.layers = 3;
    o.dense_layers = 2;
    o.mtp = 0;
    tap_ok(mt_synth_write(&o, &res) == MT_OK && mt_model_open(e, &m) == MT_OK &&
           m->cfg.num_hidden_layers == 3 && m->cfg.first_k_dense_replace == 2 && !m->has_mtp &&
           !m->layers[1].is_moe && m->layers[2].is_moe &&
           mt_st_set_find(m->set, "model.layers.3.eh_proj.weight") == NULL,
           "--layers 3 --dense-layers 2 --no-mtp: 3 layers, 2 dense, no MTP");
    mt_model_destroy(m);

    mt_log_set_quiet(true);
    o = tiny_opts(path_in(tmp, "bad"), 1);
    o.preset = "huge";
    tap_ok(mt_synth_write(&o, NULL) == MT_ERR_INVAL && strstr(mt_last_error(), "huge") != NULL,
           "an unknown preset is refused by name");
    o = tiny_opts(path_in(tmp, "bad"), 1);
    o.layers = 2;
    o.dense_layers = 3;
    tap_ok(mt_synth_write(&o, NULL) == MT_ERR_INVAL, "--dense-layers above --layers is refused");
    o = tiny_opts(path_in(tmp, "a-file"), 1);
    fclose(fopen(o.out_dir, "w"));
    tap_ok(mt_synth_write(&o, NULL) == MT_ERR_INVAL &&
               strstr(mt_last_error(), "not a directory") != NULL,
           "an output path that is a file is refused as an option (MT_ERR_INVAL): %s",
           mt_last_error());
    mt_log_set_quiet(false);
    tap_ok(access(path_in(tmp, "bad"), F_OK) != 0, "refused requests create nothing");
}

/* The free-space check, where the file system is smaller than a 250-layer v32-shape (~2.7 TB). */
static void
test_space(const char *tmp)
{
    struct statvfs vfs;
    struct mt_synth_options o = tiny_opts(path_in(tmp, "huge"), 1);
    mt_status_t st;

    if (statvfs(tmp, &vfs) != 0 || (double)vfs.f_bavail * vfs.f_frsize > 2.0e12) {
        tap_ok(true, "# SKIP file system has more than 2 TB free");
        return;
    }
    o.preset = "v32-shape";
    o.layers = 250;
    mt_log_set_quiet(true);
    st = mt_synth_write(&o, NULL);
    tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "GB free") != NULL &&
           access(path_in(tmp, "huge"), F_OK) != 0,
           "a checkpoint that does not fit is refused up front, nothing left behind");
    /* --force over an existing checkpoint: a refusal must not have removed the old one. */
    o = tiny_opts(path_in(tmp, "keep"), 1);
    st = mt_synth_write(&o, NULL);
    o.preset = "v32-shape";
    o.layers = 250;
    o.force = true;
    st = st == MT_OK ? mt_synth_write(&o, NULL) : st;
    tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "GB free") != NULL &&
               access(path_in(path_in(tmp, "keep"), "model-00001-of-000002.safetensors"), F_OK) ==
                   0 &&
               access(path_in(path_in(tmp, "keep"), "model.safetensors.index.json"), F_OK) == 0,
           "--force with a checkpoint that does not fit leaves the old one in place: %s",
           mt_last_error());
    mt_log_set_quiet(false);
}

/*
 * A write that fails halfway (a 1 MB file size limit stands in for a full disk): an I/O error,
 * and the partial checkpoint removed. The limit is lowered for this call only, then restored.
 * (Not in a forked child: OpenMP's thread pool does not survive fork.)
 */
static void
test_write_failure(const char *tmp)
{
    const char *dir = path_in(tmp, "efbig");
    struct rlimit old;
    struct rlimit rl;
    struct mt_synth_options o = tiny_opts(dir, 1);
    void (*old_handler)(int);
    mt_status_t st = MT_OK;
    bool limited;

    limited = getrlimit(RLIMIT_FSIZE, &old) == 0;
    rl = old;
    rl.rlim_cur = 1 << 20;
    limited = limited && (old.rlim_max == RLIM_INFINITY || old.rlim_max > rl.rlim_cur) &&
              setrlimit(RLIMIT_FSIZE, &rl) == 0;
    if (!limited) {
        tap_ok(true, "# SKIP cannot lower RLIMIT_FSIZE");
        return;
    }
    old_handler = signal(SIGXFSZ, SIG_IGN);
    mt_log_set_quiet(true);
    st = mt_synth_write(&o, NULL);
    mt_log_set_quiet(false);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    tap_ok(st == MT_ERR_IO && access(dir, F_OK) != 0,
           "a write failing halfway returns an I/O error and removes the partial checkpoint");
}

/* The CLI: usage errors exit 2, failures 1, success prints the summary. */
static void
test_cli(const char *tmp)
{
    const char *bdir = getenv("MT_BUILDDIR");
    char cmd[8192];
    int rc;

    if (bdir == NULL) {
        tap_ok(true, "# SKIP MT_BUILDDIR not set");
        tap_ok(true, "# SKIP MT_BUILDDIR not set");
        return;
    }
    snprintf(cmd, sizeof(cmd), "'%s/moetier' synth --preset tiny >/dev/null 2>&1", bdir);
    rc = system(cmd);
    tap_ok(WIFEXITED(rc) && WEXITSTATUS(rc) == 2, "moetier synth without -o exits 2");
    snprintf(cmd, sizeof(cmd),
             "'%s/moetier' synth -q -o '%s/cli' --preset tiny --layers 2 --seed 5 2>/dev/null | "
             "grep -q 'synth: wrote .* tensors, .* in 2 shards'", bdir, tmp);
    rc = system(cmd);
    tap_ok(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "moetier synth -o DIR --preset tiny prints the "
           "summary");
}

/*
 * synth's bytes are pinned: `synth --preset tiny --seed 7` in FP8 and BF16 must hash as recorded
 * here. The FP8 one is the source of the golden set synth-fp8 (its golden.json records the same
 * hashes); a change to the generator must change these hashes and regenerate that golden set in
 * the same commit (tests/reference/README.md).
 */
static void
test_pinned(const char *tmp)
{
    static const struct {
        bool bf16;
        const char *sha[2];
    } pins[] = {
        {false, {"b16493f027a79583f701d688f736b277584d254301c948ecb87fd1d385521223",
                 "3cf1c0c1094907072848ba9965f9dd74aa017af782925813c66e711f7bebbf81"}},
        {true, {"4bf6de460eb4837f55ad81c24dce7f91197bc66321b180391407c7397ee9274a",
                "96bb3fd15b5cc1d961879f17854f0bc351f53ea7a93419a99a891fe6ef094a75"}},
    };

    for (size_t i = 0; i < sizeof(pins) / sizeof(pins[0]); i++) {
        struct mt_synth_options so;
        char dir[1100];
        bool ok;

        snprintf(dir, sizeof(dir), "%s/pinned-%zu", tmp, i);
        memset(&so, 0, sizeof(so));
        so.out_dir = dir;
        so.preset = "tiny";
        so.layers = -1;
        so.dense_layers = -1;
        so.mtp = -1;
        so.seed = 7;
        so.bf16 = pins[i].bf16;
        ok = mt_synth_write(&so, NULL) == MT_OK;
        for (int f = 0; f < 2 && ok; f++) {
            char path[1200];
            char hex[65] = "";
            snprintf(path, sizeof(path), "%s/model-%05d-of-%06d.safetensors", dir, f + 1, 2);
            ok = tap_sha256_file(path, hex) && strcmp(hex, pins[i].sha[f]) == 0;
            if (!ok) {
                tap_diag("%s: sha256 %s, pinned %s", path, hex, pins[i].sha[f]);
            }
        }
        tap_ok(ok, "synth --preset tiny --seed 7 %s writes the pinned bytes",
               pins[i].bf16 ? "--dtype bf16" : "(fp8)");
    }
}

int
main(void)
{
    const char *tmp = tap_tmpdir();

    tap_plan(0);
    test_fp8_encoder();
    test_generator();
    test_config();
    test_tokenizer_files(tmp);
    test_tiny(tmp);
    test_variants(tmp);
    test_shards(tmp);
    test_space(tmp);
    test_write_failure(tmp);
    test_cli(tmp);
    test_pinned(tmp);
    tap_rmtree(tmp);
    return tap_done();
}
