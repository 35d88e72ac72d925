/* SPDX-License-Identifier: MIT */
/*
 * provider_stream.c - the streaming expert provider (runtime/engine/provider_stream.h): struct
 * mt_model -> io/ extents on the way in, io/ slot pointers -> struct mt_expert on the way out.
 */
#include <config.h>

#include "runtime/engine/provider_stream.h"

#include "kernels/host_copy.h"
#include "kernels/kernels.h"
#include "runtime/model/model.h"
#include "runtime/model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct stream_provider {
    const struct mt_model *model; /* borrowed */
    struct mt_io_source *src;     /* owned */
    void *registered;             /* staging base page-locked for the GPU, or NULL */
};

static struct mt_io_extent
extent_of(const struct mt_st_tensor *t)
{
    if (t == NULL) {
        return (struct mt_io_extent){0};
    }
    return (struct mt_io_extent){.file = t->file, .off = t->offset, .len = t->nbytes};
}

mt_status_t
mt_stream_describe(const struct mt_model *model, struct mt_io_expert_desc **descs_out,
                   const char ***paths_out, int *n_files_out)
{
    const struct mt_model_config *cfg = &model->cfg;
    int n_files = mt_st_set_file_count(model->set);
    struct mt_io_expert_desc *descs;
    const char **paths;

    descs = calloc((size_t)cfg->num_hidden_layers * cfg->n_routed_experts, sizeof(*descs));
    paths = calloc((size_t)n_files, sizeof(*paths));
    if (descs == NULL || paths == NULL) {
        free(descs);
        free(paths);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate expert extents for '%s'", model->dir);
    }
    for (int f = 0; f < n_files; f++) {
        paths[f] = mt_st_set_file_path(model->set, f);
    }
    for (int l = 0; l < cfg->num_hidden_layers; l++) {
        const struct mt_layer_weights *lw = &model->layers[l];

        if (!lw->is_moe || lw->experts == NULL) {
            continue;
        }
        for (int e = 0; e < cfg->n_routed_experts; e++) {
            const struct mt_expert_weights *x = &lw->experts[e];
            struct mt_io_expert_desc *d = &descs[(size_t)l * cfg->n_routed_experts + e];

            d->part[MT_IO_PART_GATE] = extent_of(x->gate.w);
            d->part[MT_IO_PART_GATE_SCALE] = extent_of(x->gate.scale);
            d->part[MT_IO_PART_UP] = extent_of(x->up.w);
            d->part[MT_IO_PART_UP_SCALE] = extent_of(x->up.scale);
            d->part[MT_IO_PART_DOWN] = extent_of(x->down.w);
            d->part[MT_IO_PART_DOWN_SCALE] = extent_of(x->down.scale);
        }
    }
    *descs_out = descs;
    *paths_out = paths;
    *n_files_out = n_files;
    return MT_OK;
}

/* FNV-1a, 64 bits: a fingerprint, not a defence against forgery. */
static uint64_t
fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++) {
        h = (h ^ b[i]) * 0x100000001b3ull;
    }
    return h;
}

/*
 * The first 4 KiB of this many routed experts' gate weights (evenly over the MoE layers and
 * experts) join the hash: a store packed from another checkpoint of the same shape (another seed,
 * a fine-tune) has the same config.json and tensor table, and its experts would be mixed into
 * this model's forward pass without a word. About 1 MB read once per open.
 */
#define HASH_SAMPLES 256
#define HASH_SAMPLE_BYTES 4096

static mt_status_t
hash_expert_samples(const struct mt_model *model, uint64_t *h)
{
    const struct mt_model_config *cfg = &model->cfg;
    int E = cfg->n_routed_experts;
    int moe_layers[MT_MAX_LAYERS];
    int n_moe = 0;
    unsigned char buf[HASH_SAMPLE_BYTES];

    for (int l = 0; l < cfg->num_hidden_layers && l < MT_MAX_LAYERS; l++) {
        if (model->layers[l].is_moe) {
            moe_layers[n_moe++] = l;
        }
    }
    int64_t n_keys = (int64_t)n_moe * E;
    for (int i = 0; i < HASH_SAMPLES && n_keys > 0; i++) {
        int64_t k = n_keys * i / HASH_SAMPLES;
        const struct mt_st_tensor *t = model->layers[moe_layers[k / E]].experts[k % E].gate.w;
        const char *path = mt_st_set_file_path(model->set, t->file);
        size_t want = t->nbytes < sizeof(buf) ? (size_t)t->nbytes : sizeof(buf);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t got = fd >= 0 ? pread(fd, buf, want, (off_t)t->offset) : -1;
        int err = errno;

        if (fd >= 0) {
            close(fd);
        }
        if (got != (ssize_t)want) {
            return mt_fail(MT_ERR_IO, got < 0 ? err : EIO,
                           "cannot read '%s' (tensor '%s') for the model hash", path, t->name);
        }
        *h = fnv1a(*h, buf, want);
    }
    return MT_OK;
}

mt_status_t
mt_stream_model_hash(const struct mt_model *model, uint64_t *hash_out)
{
    uint64_t h = 0xcbf29ce484222325ull;
    char path[4096];
    char buf[65536];
    size_t n;
    FILE *f;

    snprintf(path, sizeof(path), "%s/config.json", model->dir);
    f = fopen(path, "rb");
    if (f == NULL) {
        return mt_fail(MT_ERR_IO, errno, "cannot read '%s' for the model hash", path);
    }
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        h = fnv1a(h, buf, n);
    }
    fclose(f);
    for (size_t i = 0; i < mt_st_set_count(model->set); i++) {
        const struct mt_st_tensor *t = mt_st_set_tensor(model->set, i);
        int32_t dt = (int32_t)t->dtype;

        h = fnv1a(h, t->name, strlen(t->name) + 1);
        h = fnv1a(h, &dt, sizeof(dt));
        h = fnv1a(h, t->shape, (size_t)t->ndim * sizeof(t->shape[0]));
    }
    mt_status_t st = hash_expert_samples(model, &h);
    if (st != MT_OK) {
        return st;
    }
    *hash_out = h;
    return MT_OK;
}

static struct mt_cpu_weight
weight_of(const struct mt_weight *w, const void *data, const void *scale)
{
    return (struct mt_cpu_weight){
        .dtype = w->w->dtype,
        .data = data,
        .scale = scale,
        .rows = w->w->shape[0],
        .cols = w->w->shape[1],
    };
}

static mt_status_t
stream_acquire(void *self, int layer, int expert, struct mt_expert *out)
{
    struct stream_provider *sp = self;
    const struct mt_expert_weights *x;
    struct mt_io_expert_view v;
    mt_status_t st;

    st = mt_io_source_acquire(sp->src, layer, expert, &v);
    if (st != MT_OK) {
        return st;
    }
    x = &sp->model->layers[layer].experts[expert];
    out->gate = weight_of(&x->gate, v.part[MT_IO_PART_GATE], v.part[MT_IO_PART_GATE_SCALE]);
    out->up = weight_of(&x->up, v.part[MT_IO_PART_UP], v.part[MT_IO_PART_UP_SCALE]);
    out->down = weight_of(&x->down, v.part[MT_IO_PART_DOWN], v.part[MT_IO_PART_DOWN_SCALE]);
    return MT_OK;
}

static void
stream_release(void *self, int layer, int expert)
{
    struct stream_provider *sp = self;

    mt_io_source_release(sp->src, layer, expert);
}

static void
stream_prefetch(void *self, int layer, const int *experts, int n)
{
    struct stream_provider *sp = self;

    mt_io_source_prefetch(sp->src, layer, experts, n);
}

/* Every slot can hold one expert at a time. */
static int
stream_capacity(void *self)
{
    struct stream_provider *sp = self;
    struct mt_io_source_stats st;

    mt_io_source_stats(sp->src, &st);
    return (int)st.n_slots;
}

static void
stream_destroy(void *self)
{
    struct stream_provider *sp = self;

    if (sp->registered != NULL) {
        mt_gpu_host_unregister(sp->registered);
    }
    mt_io_source_destroy(sp->src);
    free(sp);
}

static const struct mt_expert_provider_ops stream_ops = {
    .name = "stream",
    .prefetch = stream_prefetch,
    .acquire = stream_acquire,
    .release = stream_release,
    .capacity = stream_capacity,
    .destroy = stream_destroy,
};

/* Page-lock the staging region for the GPU when there is one; a warning when that fails. */
static void
register_for_gpu(struct stream_provider *sp)
{
    int n_dev = 0;
    void *base;
    size_t bytes;

    if (mt_gpu_device_count(&n_dev) != MT_OK || n_dev == 0) {
        return;
    }
    mt_io_source_staging(sp->src, &base, &bytes);
    if (mt_gpu_host_register(base, bytes) == MT_OK) {
        sp->registered = base;
    } else {
        mt_log_warn("copies of streamed experts to the GPU will bounce through pageable memory "
                    "(cudaHostRegister of %zu MiB failed; raise RLIMIT_MEMLOCK, e.g. ulimit -l "
                    "unlimited)",
                    bytes >> 20);
    }
}

/*
 * A store's hash says which model it was packed for, but a store whose index was edited (its
 * CRCs made again) could still give a part fewer bytes than the model's tensor has, and the
 * kernels read rows x cols bytes from it: check every part's length against the model's before
 * any read.
 */
static mt_status_t
check_store_parts(const struct mt_model *model, const struct mt_io_source *src,
                  const char *store_path)
{
    const struct mt_model_config *cfg = &model->cfg;
    struct mt_io_expert_desc *descs;
    const char **paths;
    int n_files;
    mt_status_t st;

    if (mt_io_source_layers(src) != cfg->num_hidden_layers ||
        mt_io_source_experts(src) != cfg->n_routed_experts) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "store '%s' holds %d layers x %d experts, the model %d x %d; repack with "
                       "moetier pack",
                       store_path, mt_io_source_layers(src), mt_io_source_experts(src),
                       cfg->num_hidden_layers, cfg->n_routed_experts);
    }
    st = mt_stream_describe(model, &descs, &paths, &n_files);
    if (st != MT_OK) {
        return st;
    }
    for (int l = 0; l < cfg->num_hidden_layers && st == MT_OK; l++) {
        for (int e = 0; e < cfg->n_routed_experts && st == MT_OK; e++) {
            const struct mt_io_expert_desc *d = &descs[(size_t)l * cfg->n_routed_experts + e];

            for (int p = 0; p < MT_IO_N_PARTS && st == MT_OK; p++) {
                uint64_t got = mt_io_source_part_len(src, l, e, p);

                if (got != d->part[p].len) {
                    st = mt_fail(MT_ERR_FORMAT, 0,
                                 "store '%s': layer %d expert %d part %d holds %llu bytes where "
                                 "the model's tensor has %llu; repack with moetier pack",
                                 store_path, l, e, p, (unsigned long long)got,
                                 (unsigned long long)d->part[p].len);
                }
            }
        }
    }
    free(descs);
    free(paths);
    return st;
}

mt_status_t
mt_expert_provider_stream_create(const struct mt_model *model,
                                 const struct mt_io_source_options *opt,
                                 const char *const *store_paths, int n_store,
                                 struct mt_expert_provider **p_out)
{
    struct stream_provider *sp;
    struct mt_expert_provider *p;
    mt_status_t st;

    sp = calloc(1, sizeof(*sp));
    p = calloc(1, sizeof(*p));
    if (sp == NULL || p == NULL) {
        free(sp);
        free(p);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the streaming provider");
    }
    sp->model = model;
    if (n_store > 0) {
        uint64_t hash;

        st = mt_stream_model_hash(model, &hash);
        if (st == MT_OK) {
            st = mt_io_source_create_store(store_paths, n_store, hash, opt, &sp->src);
        }
        if (st == MT_OK && (st = check_store_parts(model, sp->src, store_paths[0])) != MT_OK) {
            mt_io_source_destroy(sp->src);
        }
    } else {
        struct mt_io_expert_desc *descs;
        const char **paths;
        int n_files;

        st = mt_stream_describe(model, &descs, &paths, &n_files);
        if (st == MT_OK) {
            st = mt_io_source_create(paths, n_files, model->cfg.num_hidden_layers,
                                     model->cfg.n_routed_experts, descs, opt, &sp->src);
            free(descs);
            free(paths);
        }
    }
    if (st != MT_OK) {
        free(sp);
        free(p);
        return st;
    }
    register_for_gpu(sp);
    p->ops = &stream_ops;
    p->self = sp;
    *p_out = p;
    return MT_OK;
}

struct mt_io_source *
mt_expert_provider_stream_source(struct mt_expert_provider *p)
{
    return ((struct stream_provider *)p->self)->src;
}
