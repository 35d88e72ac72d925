/* SPDX-License-Identifier: MIT */
/*
 * ref_indexer.c - the pieces of DeepSeek's lightning indexer: Hadamard rotation, FP8 act_quant
 * with power-of-two (ue8m0) scales, index scores (exact and FP8) and top-k.
 *
 * The one idea: the Hadamard rotation is orthonormal, so in exact arithmetic it changes no score;
 * it exists only to spread outliers before FP8 quantization. The exact mode may skip it (HF does);
 * the FP8 mode applies it to queries and keys alike, then quantizes per head (q) / per token (k).
 */
#include <config.h>

#include "cpu/ref_ops.h"

#include "cpu/convert.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void
mt_cpu_hadamard(float *x, int n)
{
    /* fast Walsh-Hadamard transform in Sylvester order: H[i][j] = (-1)^popcount(i & j) */
    for (int len = 1; len < n; len <<= 1) {
        for (int i = 0; i < n; i += 2 * len) {
            for (int j = i; j < i + len; j++) {
                float a = x[j];
                float b = x[j + len];
                x[j] = a + b;
                x[j + len] = a - b;
            }
        }
    }
    float s = (float)(1.0 / sqrt((double)n));
    for (int i = 0; i < n; i++) {
        x[i] *= s;
    }
}

float
mt_cpu_round_scale_ue8m0(float s)
{
    uint32_t u;
    memcpy(&u, &s, sizeof(u));
    int e = (int)((u >> 23) & 0xff) - 127;
    if ((u & 0x7fffff) != 0) {
        e++;
    }
    return ldexpf(1.0f, e);
}

float
mt_cpu_act_quant(const float *x, int n, bool ue8m0, uint8_t *q_out)
{
    float amax = 0.0f;

    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) {
            amax = a;
        }
    }
    if (amax < 1e-4f) {
        amax = 1e-4f;
    }
    float s = amax / MT_FP8_E4M3_MAX;
    if (ue8m0) {
        s = mt_cpu_round_scale_ue8m0(s);
    }
    for (int i = 0; i < n; i++) {
        float v = x[i] / s;
        v = v > MT_FP8_E4M3_MAX ? MT_FP8_E4M3_MAX : (v < -MT_FP8_E4M3_MAX ? -MT_FP8_E4M3_MAX : v);
        q_out[i] = mt_f32_to_fp8(v);
    }
    return s;
}

void
mt_cpu_index_scores(const float *q, const float *w, int n_heads, int dim, const float *k,
                    int64_t n_keys, float scale, float *out)
{
    for (int64_t s = 0; s < n_keys; s++) {
        const float *ks = k + s * dim;
        float acc = 0.0f;
        for (int h = 0; h < n_heads; h++) {
            const float *qh = q + (int64_t)h * dim;
            float d = 0.0f;
            for (int j = 0; j < dim; j++) {
                d += qh[j] * ks[j];
            }
            d *= scale;
            acc += w[h] * (d > 0.0f ? d : 0.0f);
        }
        out[s] = acc;
    }
}

void
mt_cpu_index_scores_fp8(const uint8_t *q8, const float *w, int n_heads, int dim,
                        const uint8_t *k8, const float *k_scale, int64_t n_keys, float *out)
{
    for (int64_t s = 0; s < n_keys; s++) {
        const uint8_t *ks = k8 + s * dim;
        float acc = 0.0f;
        for (int h = 0; h < n_heads; h++) {
            const uint8_t *qh = q8 + (int64_t)h * dim;
            float d = 0.0f;
            for (int j = 0; j < dim; j++) {
                d += mt_fp8_to_f32(qh[j]) * mt_fp8_to_f32(ks[j]);
            }
            acc += (d > 0.0f ? d : 0.0f) * w[h];
        }
        out[s] = acc * k_scale[s];
    }
}

struct scored {
    float v;
    int32_t i;
};

/* Decreasing score, then increasing index; NaN sorts last. */
static int
scored_cmp(const void *pa, const void *pb)
{
    const struct scored *a = pa;
    const struct scored *b = pb;
    bool an = isnan(a->v);
    bool bn = isnan(b->v);

    if (an != bn) {
        return an ? 1 : -1;
    }
    if (!an && a->v != b->v) {
        return a->v > b->v ? -1 : 1;
    }
    return (a->i > b->i) - (a->i < b->i);
}

mt_status_t
mt_cpu_topk(const float *scores, int64_t n, int64_t k, int32_t *idx_out)
{
    struct scored *s;

    if (k > n || k < 0) {
        return mt_fail(MT_ERR_INVAL, 0, "top-%lld of %lld values", (long long)k, (long long)n);
    }
    s = malloc((size_t)(n > 0 ? n : 1) * sizeof(*s));
    if (s == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate top-k buffer of %lld", (long long)n);
    }
    for (int64_t i = 0; i < n; i++) {
        s[i].v = scores[i];
        s[i].i = (int32_t)i;
    }
    qsort(s, (size_t)n, sizeof(*s), scored_cmp);
    for (int64_t i = 0; i < k; i++) {
        idx_out[i] = s[i].i;
    }
    free(s);
    return MT_OK;
}
