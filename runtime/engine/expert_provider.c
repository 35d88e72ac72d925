/* SPDX-License-Identifier: MIT */
/*
 * expert_provider.c - the checkpoint provider: routed experts read from the safetensors shards
 * when first asked for.
 *
 * The one idea: one slot per (layer, expert) with a reference count. A resident expert is read
 * once and kept; any other is read on acquire and freed when its last user releases it, so its
 * DRAM is paid only while it computes. Reads happen outside the lock (a slot being read is marked
 * and waited for), so executors on several threads read different experts at once.
 */
#include <config.h>

#include "runtime/engine/expert_provider.h"

#include "cpu/convert.h"
#include "runtime/model/model.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct slot {
    struct mt_expert w;
    void *bufs[6];   /* owned while loaded: gate, up, down data and scales */
    uint64_t bytes;
    int refs;
    bool loaded;
    bool loading;
};

struct ckpt_provider {
    const struct mt_model *model; /* borrowed */
    int n_layers;
    int n_experts;
    bool *resident;               /* owned, [n_layers * n_experts] */
    struct slot *slots;           /* owned, [n_layers * n_experts] */
    pthread_mutex_t lock;
    pthread_cond_t loaded;        /* a slot finished loading */
    uint64_t bytes;               /* held now, under lock */
};

void
mt_expert_provider_destroy(struct mt_expert_provider *p)
{
    if (p != NULL) {
        p->ops->destroy(p->self);
        free(p);
    }
}

int
mt_expert_provider_capacity(const struct mt_expert_provider *p)
{
    return p->ops->capacity != NULL ? p->ops->capacity(p->self) : 0;
}

static void
slot_free(struct slot *s)
{
    for (int i = 0; i < 6; i++) {
        free(s->bufs[i]);
        s->bufs[i] = NULL;
    }
    s->loaded = false;
}

/*
 * A buffer for an expert's weight matrix: 2 MiB aligned and advised to use transparent huge
 * pages when it spans at least one (free() releases it like malloc's). The CPU experts stream
 * these matrices; on 4 KiB pages every 4 KiB costs a TLB miss, and in a VM a miss walks two page
 * tables. The GPU test machine's THP is "madvise" (only advised memory gets huge pages): the DRAM
 * ceiling bench, which advises its arrays, read 75-140 GB/s while the experts in plain malloc
 * memory read 39-45 (hetero-h200.md, session 4). The advice is a hint: refused, pages stay small.
 */
static void *
weight_alloc(size_t bytes)
{
    const size_t huge = (size_t)2 << 20;
    void *p;

    if (bytes < huge) {
        return malloc(bytes > 0 ? bytes : 1);
    }
    size_t n = (bytes + huge - 1) / huge * huge;
    if ((p = aligned_alloc(huge, n)) != NULL) {
        (void)madvise(p, n, MADV_HUGEPAGE);
    }
    return p;
}

/* Read one weight (and its FP8 scales) of an expert into buffers owned by the slot. */
static mt_status_t
read_weight(const struct mt_model *m, const struct mt_weight *mw, struct slot *s, int k,
            struct mt_cpu_weight *out)
{
    const struct mt_st_tensor *t = mw->w;
    mt_status_t st;

    if (t == NULL || t->ndim != 2) {
        return mt_fail(MT_ERR_FORMAT, 0, "routed expert weight '%s' is missing or not 2-D",
                       t != NULL ? t->name : "?");
    }
    if (t->dtype != MT_DTYPE_F8_E4M3 && t->dtype != MT_DTYPE_BF16 && t->dtype != MT_DTYPE_F16 &&
        t->dtype != MT_DTYPE_F32) {
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "tensor '%s': dtype %s is not supported for "
                       "experts", t->name, mt_dtype_name(t->dtype));
    }
    s->bufs[2 * k] = weight_alloc(t->nbytes);
    if (s->bufs[2 * k] == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %llu bytes for tensor '%s'",
                       (unsigned long long)t->nbytes, t->name);
    }
    st = mt_st_set_read(m->set, t, s->bufs[2 * k], t->nbytes);
    if (st != MT_OK) {
        return st;
    }
    s->bytes += t->nbytes;
    *out = (struct mt_cpu_weight){
        .dtype = t->dtype, .data = s->bufs[2 * k], .rows = t->shape[0], .cols = t->shape[1],
    };
    if (t->dtype != MT_DTYPE_F8_E4M3) {
        return MT_OK;
    }
    const struct mt_st_tensor *sc = mw->scale;
    int64_t want = MT_CEIL_DIV(out->rows, MT_CPU_FP8_BLOCK) * MT_CEIL_DIV(out->cols,
                                                                         MT_CPU_FP8_BLOCK);
    if (sc == NULL || sc->dtype != MT_DTYPE_F32 || (int64_t)sc->nelem != want) {
        return mt_fail(MT_ERR_FORMAT, 0, "FP8 tensor '%s' needs %lld F32 block scales",
                       t->name, (long long)want);
    }
    s->bufs[2 * k + 1] = malloc(sc->nbytes);
    if (s->bufs[2 * k + 1] == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the scales of '%s'", t->name);
    }
    st = mt_st_set_read(m->set, sc, s->bufs[2 * k + 1], sc->nbytes);
    if (st == MT_OK) {
        st = mt_fp8_scales_check(s->bufs[2 * k + 1], want, sc->name);
    }
    s->bytes += sc->nbytes;
    out->scale = s->bufs[2 * k + 1];
    return st;
}

static mt_status_t
slot_read(const struct mt_model *m, int layer, int expert, struct slot *s)
{
    const struct mt_expert_weights *ew = &m->layers[layer].experts[expert];
    mt_status_t st;

    s->bytes = 0;
    if ((st = read_weight(m, &ew->gate, s, 0, &s->w.gate)) != MT_OK ||
        (st = read_weight(m, &ew->up, s, 1, &s->w.up)) != MT_OK ||
        (st = read_weight(m, &ew->down, s, 2, &s->w.down)) != MT_OK) {
        slot_free(s);
        return st;
    }
    return MT_OK;
}

/*
 * slot_read, with a read error (MT_ERR_IO: a flaky drive, an NFS hiccup) tried again up to
 * MT_EXPERT_READ_RETRIES times, each retry a warning; a bad file (MT_ERR_FORMAT) fails at once.
 * The final error names the layer and expert beside the reader's message (which names the file).
 */
#define MT_EXPERT_READ_RETRIES 2

static mt_status_t
slot_read_retry(const struct mt_model *m, int layer, int expert, struct slot *s)
{
    mt_status_t st = slot_read(m, layer, expert, s);

    for (int i = 1; st == MT_ERR_IO && i <= MT_EXPERT_READ_RETRIES; i++) {
        mt_log_warn("layer %d expert %d: reading it again (retry %d of %d)", layer, expert, i,
                    MT_EXPERT_READ_RETRIES);
        st = slot_read(m, layer, expert, s);
    }
    if (st == MT_ERR_IO) {
        char msg[512];

        snprintf(msg, sizeof(msg), "%s", mt_last_error());
        return mt_fail(st, 0, "layer %d expert %d: %s (read %d times)", layer, expert, msg,
                       MT_EXPERT_READ_RETRIES + 1);
    }
    return st;
}

static mt_status_t
ckpt_acquire(void *self, int layer, int expert, struct mt_expert *out)
{
    struct ckpt_provider *p = self;
    struct slot *s;
    mt_status_t st;

    if (layer < 0 || layer >= p->n_layers || !p->model->layers[layer].is_moe || expert < 0 ||
        expert >= p->n_experts) {
        return mt_fail(MT_ERR_INVAL, 0, "no routed expert %d in layer %d", expert, layer);
    }
    s = &p->slots[(size_t)layer * p->n_experts + expert];
    pthread_mutex_lock(&p->lock);
    while (s->loading) {
        pthread_cond_wait(&p->loaded, &p->lock);
    }
    if (!s->loaded) {
        s->loading = true;
        pthread_mutex_unlock(&p->lock);
        st = slot_read_retry(p->model, layer, expert, s);
        pthread_mutex_lock(&p->lock);
        s->loading = false;
        pthread_cond_broadcast(&p->loaded);
        if (st != MT_OK) {
            pthread_mutex_unlock(&p->lock);
            return st;
        }
        s->loaded = true;
        p->bytes += s->bytes;
    }
    s->refs++;
    *out = s->w;
    pthread_mutex_unlock(&p->lock);
    return MT_OK;
}

static void
ckpt_release(void *self, int layer, int expert)
{
    struct ckpt_provider *p = self;
    size_t i = (size_t)layer * p->n_experts + expert;
    struct slot *s = &p->slots[i];

    pthread_mutex_lock(&p->lock);
    MT_ASSERT(s->refs > 0);
    if (--s->refs == 0 && !p->resident[i]) {
        p->bytes -= s->bytes;
        slot_free(s);
    }
    pthread_mutex_unlock(&p->lock);
}

static void
ckpt_destroy(void *self)
{
    struct ckpt_provider *p = self;

    if (p->slots != NULL) {
        for (size_t i = 0; i < (size_t)p->n_layers * p->n_experts; i++) {
            slot_free(&p->slots[i]);
        }
    }
    pthread_cond_destroy(&p->loaded);
    pthread_mutex_destroy(&p->lock);
    free(p->slots);
    free(p->resident);
    free(p);
}

static const struct mt_expert_provider_ops ckpt_ops = {
    .name = "checkpoint",
    .prefetch = NULL,
    .acquire = ckpt_acquire,
    .release = ckpt_release,
    .destroy = ckpt_destroy,
};

mt_status_t
mt_expert_provider_checkpoint_create(const struct mt_model *model, const bool *resident,
                                     struct mt_expert_provider **p_out)
{
    size_t n = (size_t)model->cfg.num_hidden_layers * (size_t)model->cfg.n_routed_experts;
    struct mt_expert_provider *pv = calloc(1, sizeof(*pv));
    struct ckpt_provider *p = calloc(1, sizeof(*p));

    if (pv == NULL || p == NULL) {
        free(pv);
        free(p);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the expert provider");
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->loaded, NULL);
    p->model = model;
    p->n_layers = model->cfg.num_hidden_layers;
    p->n_experts = model->cfg.n_routed_experts;
    p->resident = malloc(n > 0 ? n * sizeof(bool) : 1);
    p->slots = calloc(n > 0 ? n : 1, sizeof(*p->slots));
    if (p->resident == NULL || p->slots == NULL) {
        ckpt_destroy(p);
        free(pv);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the slots of %zu experts", n);
    }
    for (size_t i = 0; i < n; i++) {
        p->resident[i] = resident != NULL ? resident[i] : true;
    }
    pv->ops = &ckpt_ops;
    pv->self = p;
    *p_out = pv;
    return MT_OK;
}

uint64_t
mt_expert_provider_checkpoint_bytes(const struct mt_expert_provider *pv)
{
    struct ckpt_provider *p = pv->self;
    uint64_t b;

    if (pv->ops != &ckpt_ops) {
        return 0;
    }
    pthread_mutex_lock(&p->lock);
    b = p->bytes;
    pthread_mutex_unlock(&p->lock);
    return b;
}
