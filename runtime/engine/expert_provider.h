/* SPDX-License-Identifier: MIT */
/*
 * expert_provider.h - where routed experts' weights come from, addressed by (layer, expert).
 *
 * The one idea: the engine never holds the 14,848 routed experts of V3.2 itself. An executor asks
 * the provider for an expert when a token needs it (acquire), uses the weights in place, and gives
 * them back (release); what stays in memory between uses is the provider's business (a plan's
 * resident set, a cache with a budget, nothing at all). prefetch() lets a provider start reads for
 * experts that will be acquired soon, so the disk works while the GPU and the CPU compute.
 *
 * Implementations: the checkpoint provider here (plain reads from the safetensors shards, DRAM-
 * resident experts kept after their first use, the others freed on release), and the streaming
 * provider over io/ (io_uring, pinned staging, caches).
 */
#ifndef MT_EXPERT_PROVIDER_H
#define MT_EXPERT_PROVIDER_H

#include <stdbool.h>
#include <stdint.h>

#include "cpu/ref_ops.h"
#include "runtime/base/status.h"

struct mt_model;

/* One routed expert's weights in host memory, in the checkpoint's dtype, as the kernels use them.
 */
struct mt_expert {
    struct mt_cpu_weight gate; /* [moe_inter, hidden] */
    struct mt_cpu_weight up;   /* [moe_inter, hidden] */
    struct mt_cpu_weight down; /* [hidden, moe_inter] */
};

struct mt_expert_provider_ops {
    const char *name;
    /*
     * Start fetching experts[0..n) of layer (optional: NULL means acquire does all the work). A
     * hint: it never fails the step; errors surface at acquire.
     */
    void (*prefetch)(void *self, int layer, const int *experts, int n);
    /*
     * Make (layer, expert) available and fill *out; its pointers stay valid until the matching
     * release. Thread-safe: executors on several threads acquire at once. Errors name the layer,
     * the expert and the file: MT_ERR_IO, MT_ERR_FORMAT (a corrupt weight), MT_ERR_NOMEM.
     */
    mt_status_t (*acquire)(void *self, int layer, int expert, struct mt_expert *out);
    void (*release)(void *self, int layer, int expert);
    /*
     * How many experts may be held (acquired, not yet released) at once; 0: no limit. Optional
     * (NULL: no limit). A caller that acquires a whole layer before releasing any (the CPU-team
     * executor does) must go in waves of at most this many, or it would wait for itself.
     */
    int (*capacity)(void *self);
    void (*destroy)(void *self);
};

struct mt_expert_provider {
    const struct mt_expert_provider_ops *ops;
    void *self;
};

/* Destroy p (NULL-safe); frees the struct too. */
void mt_expert_provider_destroy(struct mt_expert_provider *p);

/* p's capacity op, 0 (no limit) when it has none. */
int mt_expert_provider_capacity(const struct mt_expert_provider *p);

/*
 * The checkpoint provider: reads each expert's six tensors (gate, up, down and their FP8 scales)
 * from model's shards when first acquired. Experts with resident[layer * n_experts + e] true (or
 * all, when resident is NULL) stay in memory after their first use; the others are read on every
 * acquire and freed on release, so a plan that keeps them on disk pays no DRAM for them. Scales
 * are checked for NaN, Inf and non-positive values when read (MT_ERR_FORMAT naming the tensor).
 * model is borrowed; resident is copied. MT_ERR_NOMEM.
 */
mt_status_t mt_expert_provider_checkpoint_create(const struct mt_model *model,
                                                 const bool *resident,
                                                 struct mt_expert_provider **p_out);

/* Bytes the checkpoint provider holds now (resident experts loaded so far plus those acquired). */
uint64_t mt_expert_provider_checkpoint_bytes(const struct mt_expert_provider *p);

/*
 * One provider in front of two (provider_tiered.c): experts whose tiers[layer * n_experts + e]
 * is MT_TIER_NVME come from nvme, all others from dram. tiers is copied; dram and nvme are
 * borrowed and must outlive it. MT_ERR_NOMEM.
 */
mt_status_t mt_expert_provider_tiered_create(const uint8_t *tiers, int n_layers, int n_experts,
                                             struct mt_expert_provider *dram,
                                             struct mt_expert_provider *nvme,
                                             struct mt_expert_provider **p_out);

#endif /* MT_EXPERT_PROVIDER_H */
