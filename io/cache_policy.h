/* SPDX-License-Identifier: MIT */
/*
 * cache_policy.h - which cached expert to evict: activation frequency with exponential decay.
 *
 * The one idea: a router's choices are skewed (some experts fire far more often) and drift over a
 * conversation, so neither LRU nor plain LFU fits. Each expert (a key) carries a score that adds 1
 * per activation and halves every half_life activations of the whole cache; the victim is the
 * evictable slot whose expert has the lowest score now. Frequency counts, recency decays it. Keys
 * the plan marks resident are pinned and never chosen.
 *
 * The policy holds no memory and no lock: it ranks keys, the owner (the DRAM slot pool of
 * io/expert_source.c, later the GPU slot pool) holds the slots and calls it under its own lock.
 */
#ifndef MT_IO_CACHE_POLICY_H
#define MT_IO_CACHE_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/base/status.h"

struct mt_cache_policy {
    unsigned n_keys;
    double half_life;  /* activations for a score to halve */
    uint64_t tick;     /* activations so far */
    double *score;     // (n_keys), owned: score at last_tick
    uint64_t *last;    // (n_keys), owned: tick of the last activation
    bool *pinned;      // (n_keys), owned
};

/* Init for n_keys keys (e.g. layers * experts); half_life > 0. MT_ERR_NOMEM, MT_ERR_INVAL. */
mt_status_t mt_cache_policy_init(struct mt_cache_policy *p, unsigned n_keys, double half_life);
void mt_cache_policy_fini(struct mt_cache_policy *p);

/* One activation of key (an acquire): its score grows by 1 and the clock advances. */
void mt_cache_policy_touch(struct mt_cache_policy *p, unsigned key);

/* Score of key now (decayed to the current tick). */
double mt_cache_policy_score(const struct mt_cache_policy *p, unsigned key);

/* Pin or unpin key: a pinned key is never a victim. */
void mt_cache_policy_pin(struct mt_cache_policy *p, unsigned key, bool pinned);
bool mt_cache_policy_is_pinned(const struct mt_cache_policy *p, unsigned key);

/*
 * The slot to evict among n_slots: slot_key[i] is the key held by slot i (-1: empty, chosen
 * first), evictable[i] says whether the owner can give slot i up now (not in use, not loading).
 * Pinned keys are skipped. Among equal scores the first such slot goes, so that the same run
 * evicts the same experts every time. Returns the slot, or -1 when none can be evicted.
 */
int mt_cache_policy_victim(const struct mt_cache_policy *p, const int *slot_key,
                           const bool *evictable, unsigned n_slots);

#endif /* MT_IO_CACHE_POLICY_H */
