/* SPDX-License-Identifier: MIT */
/*
 * ref_moe.c - the noaux_tc sigmoid router with group-limited top-k, and the SwiGLU expert.
 *
 * The one idea: the correction bias decides WHICH experts run but never HOW MUCH they count:
 * selection uses sigmoid + bias, the mixing weights use the plain sigmoid, renormalized over the
 * chosen k and multiplied by routed_scaling_factor (spec 2.7, checklist item 5).
 */
#include <config.h>

#include "cpu/ref_ops.h"

#include <math.h>
#include <stdlib.h>

/* Index of the largest v[i] with !taken[i] (smaller index on ties); -1 when none. */
static int
argmax_free(const float *v, const bool *taken, int n)
{
    int best = -1;

    for (int i = 0; i < n; i++) {
        if (taken[i] || isnan(v[i])) {
            continue;
        }
        if (best < 0 || v[i] > v[best]) {
            best = i;
        }
    }
    return best;
}

size_t
mt_cpu_router_work_bytes(const struct mt_cpu_router_params *p)
{
    size_t E = (size_t)p->n_experts;
    size_t G = (size_t)(p->n_group > 0 ? p->n_group : 1);

    return (2 * E + G) * sizeof(float) + (MT_MAX(E, G) + G) * sizeof(bool);
}

void
mt_cpu_router(const float *logits, const float *bias, const struct mt_cpu_router_params *p,
              void *work, int32_t *ids_out, float *w_out)
{
    int E = p->n_experts;
    int G = p->n_group > 0 ? p->n_group : 1;
    int per = E / G;
    float *s = work;          // [E] sigmoid scores
    float *b = s + E;         // [E] biased scores
    float *gs = b + E;        // [G] group scores
    bool *taken = (bool *)(gs + G); // [max(E, G)]
    bool *keep = taken + (E > G ? E : G); // [G]
    double sum = 0.0;

    for (int e = 0; e < E; e++) {
        s[e] = 1.0f / (1.0f + expf(-logits[e]));
        b[e] = s[e] + (bias != NULL ? bias[e] : 0.0f);
    }
    /* group score: the sum of the (up to) 2 largest biased scores of each group */
    for (int g = 0; g < G; g++) {
        float m1 = -INFINITY;
        float m2 = -INFINITY;
        for (int e = g * per; e < (g + 1) * per; e++) {
            if (b[e] > m1) {
                m2 = m1;
                m1 = b[e];
            } else if (b[e] > m2) {
                m2 = b[e];
            }
        }
        gs[g] = per >= 2 ? m1 + m2 : m1;
    }
    for (int g = 0; g < G; g++) {
        taken[g] = false;
    }
    for (int g = 0; g < G; g++) {
        keep[g] = false;
    }
    for (int j = 0; j < p->topk_group && j < G; j++) {
        int g = argmax_free(gs, taken, G);
        if (g < 0) {
            break; /* the other groups' scores are NaN (a corrupt bias): none of them is kept */
        }
        taken[g] = true;
        keep[g] = true;
    }
    for (int e = 0; e < E; e++) {
        taken[e] = !keep[e / per];
    }
    for (int j = 0; j < p->k; j++) {
        int e = argmax_free(b, taken, E);
        for (int f = 0; e < 0 && f < E; f++) {
            /* only NaN scores left (or fewer kept experts than k): any free expert, never twice */
            if (!taken[f]) {
                e = f;
            }
        }
        if (e < 0) {
            e = j % E; /* k > n_experts: impossible for a validated config */
        }
        taken[e] = true;
        ids_out[j] = e;
        w_out[j] = s[e];
        sum += s[e];
    }
    for (int j = 0; j < p->k; j++) {
        float w = w_out[j];
        if (p->norm_topk_prob) {
            w = (float)(w / (sum + 1e-20));
        }
        w_out[j] = w * p->routed_scaling_factor;
    }
}

mt_status_t
mt_cpu_swiglu(const struct mt_cpu_weight *gate, const struct mt_cpu_weight *up,
              const struct mt_cpu_weight *down, const float *x, int n_tok, float *y)
{
    int64_t inter = gate->rows;
    float *g = malloc((size_t)n_tok * (size_t)inter * 2 * sizeof(float));
    mt_status_t st;

    if (g == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate SwiGLU buffer for %d tokens", n_tok);
    }
    float *u = g + (int64_t)n_tok * inter;
    st = mt_cpu_linear(gate, x, n_tok, g);
    if (st == MT_OK) {
        st = mt_cpu_linear(up, x, n_tok, u);
    }
    if (st == MT_OK) {
        for (int64_t i = 0; i < (int64_t)n_tok * inter; i++) {
            g[i] = mt_cpu_silu(g[i]) * u[i];
        }
        st = mt_cpu_linear(down, g, n_tok, y);
    }
    free(g);
    return st;
}
