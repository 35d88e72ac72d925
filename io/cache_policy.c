/* SPDX-License-Identifier: MIT */
/*
 * cache_policy.c - decayed-frequency eviction (io/cache_policy.h). Scores decay lazily: a key's
 * score is stored as of its last activation and brought to the current tick when read.
 */
#include <config.h>

#include "io/cache_policy.h"

#include <math.h>
#include <stdlib.h>

mt_status_t
mt_cache_policy_init(struct mt_cache_policy *p, unsigned n_keys, double half_life)
{
    if (n_keys == 0 || !(half_life > 0)) {
        return mt_fail(MT_ERR_INVAL, 0, "cache policy needs keys and a positive half life");
    }
    p->n_keys = n_keys;
    p->half_life = half_life;
    p->tick = 0;
    p->score = calloc(n_keys, sizeof(*p->score));
    p->last = calloc(n_keys, sizeof(*p->last));
    p->pinned = calloc(n_keys, sizeof(*p->pinned));
    if (p->score == NULL || p->last == NULL || p->pinned == NULL) {
        mt_cache_policy_fini(p);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the cache policy for %u keys", n_keys);
    }
    return MT_OK;
}

void
mt_cache_policy_fini(struct mt_cache_policy *p)
{
    free(p->score);
    free(p->last);
    free(p->pinned);
    p->score = NULL;
    p->last = NULL;
    p->pinned = NULL;
}

double
mt_cache_policy_score(const struct mt_cache_policy *p, unsigned key)
{
    double age = (double)(p->tick - p->last[key]);

    return p->score[key] * exp2(-age / p->half_life);
}

void
mt_cache_policy_touch(struct mt_cache_policy *p, unsigned key)
{
    MT_ASSERT(key < p->n_keys);
    p->score[key] = mt_cache_policy_score(p, key) + 1.0;
    p->last[key] = p->tick;
    p->tick++;
}

void
mt_cache_policy_pin(struct mt_cache_policy *p, unsigned key, bool pinned)
{
    MT_ASSERT(key < p->n_keys);
    p->pinned[key] = pinned;
}

bool
mt_cache_policy_is_pinned(const struct mt_cache_policy *p, unsigned key)
{
    return p->pinned[key];
}

int
mt_cache_policy_victim(const struct mt_cache_policy *p, const int *slot_key, const bool *evictable,
                       unsigned n_slots)
{
    int best = -1;
    double best_score = 0;

    for (unsigned i = 0; i < n_slots; i++) {
        double s;

        if (!evictable[i]) {
            continue;
        }
        if (slot_key[i] < 0) {
            return (int)i;
        }
        if (p->pinned[slot_key[i]]) {
            continue;
        }
        s = mt_cache_policy_score(p, (unsigned)slot_key[i]);
        if (best < 0 || s < best_score) {
            best = (int)i;
            best_score = s;
        }
    }
    return best;
}
