/* SPDX-License-Identifier: MIT */
/*
 * ref_attention.c - MLA attention in absorbed (MQA, 576/512) form over a selected set of cached
 * positions (spec 2.3 and 2.6).
 *
 * The one idea: after absorbing W_UK into the query, every head attends to the same single key
 * [latent | k_pe] and the same value (the latent); only the set of positions differs between
 * dense attention (all s <= t) and DSA (the indexer's top-k). The caller passes that set.
 */
#include <config.h>

#include "cpu/ref_ops.h"

#include <stdlib.h>
#include <string.h>

mt_status_t
mt_cpu_mla_absorbed(const float *q_lat, const float *q_pe, int n_heads, int kv_rank, int rope,
                    const float *lat, const float *kpe, const int32_t *idx, int n_idx, float scale,
                    float *o_lat)
{
    float *p = malloc((size_t)(n_idx > 0 ? n_idx : 1) * sizeof(float));

    if (p == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %d attention scores", n_idx);
    }
    for (int h = 0; h < n_heads; h++) {
        const float *ql = q_lat + (int64_t)h * kv_rank;
        const float *qp = q_pe + (int64_t)h * rope;
        float *o = o_lat + (int64_t)h * kv_rank;

        for (int j = 0; j < n_idx; j++) {
            const float *c = lat + (int64_t)idx[j] * kv_rank;
            const float *kp = kpe + (int64_t)idx[j] * rope;
            double d = 0.0;
            for (int i = 0; i < kv_rank; i++) {
                d += (double)ql[i] * c[i];
            }
            for (int i = 0; i < rope; i++) {
                d += (double)qp[i] * kp[i];
            }
            p[j] = (float)d * scale;
        }
        mt_cpu_softmax(p, n_idx);
        memset(o, 0, (size_t)kv_rank * sizeof(float));
        for (int j = 0; j < n_idx; j++) {
            const float *c = lat + (int64_t)idx[j] * kv_rank;
            for (int i = 0; i < kv_rank; i++) {
                o[i] += p[j] * c[i];
            }
        }
    }
    free(p);
    return MT_OK;
}
