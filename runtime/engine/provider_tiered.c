/* SPDX-License-Identifier: MIT */
/*
 * provider_tiered.c - one provider in front of two: experts a plan streams from disk come from
 * the streaming provider, every other expert from the checkpoint provider (kept in DRAM).
 *
 * The one idea: executors ask one provider by (layer, expert) and never learn where the weights
 * came from; the tier table decides, per expert, which provider answers.
 */
#include <config.h>

#include "runtime/engine/expert_provider.h"

#include "runtime/plan/planner.h"

#include <stdlib.h>
#include <string.h>

struct tiered {
    int n_experts;
    uint8_t *tiers;                   /* owned, [n_layers * n_experts] */
    struct mt_expert_provider *dram;  /* borrowed */
    struct mt_expert_provider *nvme;  /* borrowed */
};

static struct mt_expert_provider *
pick(const struct tiered *t, int layer, int expert)
{
    return t->tiers[(size_t)layer * t->n_experts + expert] == MT_TIER_NVME ? t->nvme : t->dram;
}

static void
tiered_prefetch(void *self, int layer, const int *experts, int n)
{
    struct tiered *t = self;

    /* the engine announces only streamed experts; others are in memory already */
    if (t->nvme->ops->prefetch != NULL) {
        t->nvme->ops->prefetch(t->nvme->self, layer, experts, n);
    }
}

static mt_status_t
tiered_acquire(void *self, int layer, int expert, struct mt_expert *out)
{
    struct mt_expert_provider *p = pick(self, layer, expert);

    return p->ops->acquire(p->self, layer, expert, out);
}

static void
tiered_release(void *self, int layer, int expert)
{
    struct mt_expert_provider *p = pick(self, layer, expert);

    p->ops->release(p->self, layer, expert);
}

static int
tiered_capacity(void *self)
{
    struct tiered *t = self;

    return mt_expert_provider_capacity(t->nvme);
}

static void
tiered_destroy(void *self)
{
    struct tiered *t = self;

    free(t->tiers);
    free(t);
}

static const struct mt_expert_provider_ops tiered_ops = {
    .name = "tiered",
    .prefetch = tiered_prefetch,
    .acquire = tiered_acquire,
    .release = tiered_release,
    .capacity = tiered_capacity,
    .destroy = tiered_destroy,
};

mt_status_t
mt_expert_provider_tiered_create(const uint8_t *tiers, int n_layers, int n_experts,
                                 struct mt_expert_provider *dram,
                                 struct mt_expert_provider *nvme,
                                 struct mt_expert_provider **p_out)
{
    size_t n = (size_t)n_layers * (size_t)n_experts;
    struct mt_expert_provider *pv = calloc(1, sizeof(*pv));
    struct tiered *t = calloc(1, sizeof(*t));

    if (pv == NULL || t == NULL || (t->tiers = malloc(n > 0 ? n : 1)) == NULL) {
        free(t);
        free(pv);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the tiered expert provider");
    }
    memcpy(t->tiers, tiers, n);
    t->n_experts = n_experts;
    t->dram = dram;
    t->nvme = nvme;
    pv->ops = &tiered_ops;
    pv->self = t;
    *p_out = pv;
    return MT_OK;
}
