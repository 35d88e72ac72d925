/* SPDX-License-Identifier: MIT */
/*
 * engine_gpu_moe.c - the GPU backend's MoE layer: the router on the device, the (token, expert)
 * pairs grouped on the host exactly as moe.c groups them, and the routed experts run by the
 * grouped FP8 GEMV of kernels/moe.cu (or per expert where the shapes do not fit it), with the
 * shared expert on the same stream.
 */
#include <config.h>

#ifdef MT_HAVE_CUDA

#include "runtime/engine/engine_gpu_impl.h"

#include "runtime/plan/trace.h"

#include <stdlib.h>
#include <string.h>

mt_status_t
eng_gpu_place_experts(struct mt_engine *e, struct eng_gpu *g, int l)
{
    const struct mt_layer_weights *lw = &e->model->layers[l];
    struct g_layer *L = &g->layers[l];
    size_t E = (size_t)e->cfg.n_routed_experts;
    mt_status_t st = MT_OK;

    if (L->experts == NULL) {
        L->experts = calloc(E, sizeof(*L->experts));
        L->xtab = calloc(E, sizeof(*L->xtab));
        if (L->experts == NULL || L->xtab == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the expert tables");
        }
    }
    for (size_t x = 0; x < E && st == MT_OK; x++) {
        struct g_mlp *X = &L->experts[x];
        st = eng_gpu_up_mlp(e, g, &lw->experts[x], X);
        if (X->gate.w.dtype != MT_DTYPE_F8_E4M3 || X->up.w.dtype != MT_DTYPE_F8_E4M3 ||
            X->down.w.dtype != MT_DTYPE_F8_E4M3 || X->gate.w.rows % 16 != 0 ||
            X->gate.w.cols % 16 != 0) {
            g->grouped_moe = false;
        }
        L->xtab[x] = (struct mt_gpu_expert){
            .gate = X->gate.w.data,
            .up = X->up.w.data,
            .down = X->down.w.data,
            .gate_scale = X->gate.w.scale,
            .up_scale = X->up.w.scale,
            .down_scale = X->down.w.scale,
        };
    }
    return st;
}

/* SwiGLU MLP of x [m, hidden] -> out (g->gs and g->us as scratch). */
mt_status_t
eng_gpu_mlp(struct eng_gpu *g, int l, const struct g_mlp *M, const float *x, int m, float *out)
{
    struct CUstream_st *s = g->stream;
    size_t inter = (size_t)M->gate.w.rows;

    GPU_DO(l, "MLP gate", eng_gpu_lin(&M->gate, x, m, g->gs, s));
    GPU_DO(l, "MLP up", eng_gpu_lin(&M->up, x, m, g->us, s));
    GPU_DO(l, "SwiGLU", mt_gpu_swiglu(g->gs, g->us, (size_t)m * inter, g->gs, s));
    GPU_DO(l, "MLP down", eng_gpu_lin(&M->down, g->gs, m, out, s));
    return MT_OK;
}

/* The MoE FFN of layer l (moe.c's order: shared expert, then experts by id, tokens ascending). */
mt_status_t
eng_gpu_moe(struct mt_engine *e, struct eng_gpu *g, int l, int m)
{
    const struct mt_model_config *c = &e->cfg;
    struct g_layer *L = &g->layers[l];
    struct CUstream_st *s = g->stream;
    int E = c->n_routed_experts, K = c->num_experts_per_tok, D = c->hidden_size;
    struct mt_gpu_router_params rp = {
        .n_experts = E,
        .n_group = c->n_group,
        .topk_group = c->topk_group,
        .k = K,
        .norm_topk_prob = c->norm_topk_prob,
        .routed_scaling_factor = (float)c->routed_scaling_factor,
    };
    int np = m * K;
    mt_status_t st;

    GPU_DO(l, "router projection", eng_gpu_lin(&L->router, g->x, m, g->rlog, s));
    GPU_DO(l, "router", mt_gpu_router(g->rlog, L->router_bias, &rp, m, g->ids, g->rw, s));
    GPU_DO(l, "router copy", mt_gpu_copy_async(g->h_ids, g->ids, (size_t)np * 4, 0, s));
    GPU_DO(l, "router copy", mt_gpu_copy_async(g->h_rw, g->rw, (size_t)np * 4, 0, s));
    if ((st = eng_gpu_mlp(g, l, &L->shared, g->x, m, g->y)) != MT_OK) {
        return st;
    }
    GPU_DO(l, "router copy", mt_gpu_stream_sync(s));
    if (e->opts.trace != NULL &&
        (st = mt_trace_record_batch(e->opts.trace, l, (const int *)g->h_ids, m, K)) != MT_OK) {
        return st;
    }
    /* counting sort of the pairs by expert, tokens ascending inside a group (moe.c) */
    memset(g->h_group_start, 0, (size_t)(E + 1) * sizeof(int32_t));
    for (int i = 0; i < np; i++) {
        g->h_group_start[g->h_ids[i] + 1]++;
    }
    for (int x = 0; x < E; x++) {
        g->h_group_start[x + 1] += g->h_group_start[x];
        g->h_count[x] = g->h_group_start[x];
    }
    for (int t = 0; t < m; t++) {
        for (int j = 0; j < K; j++) {
            int x = g->h_ids[t * K + j];
            int row = g->h_count[x]++;
            g->h_pair_tok[row] = t;
            g->h_pair_w[row] = g->h_rw[t * K + j];
        }
    }
    /* the non-empty groups, compacted */
    int n_groups = 0;
    int max_tok = 0;
    for (int x = 0; x < E; x++) {
        int a = g->h_group_start[x], b = g->h_group_start[x + 1];
        if (b > a) {
            g->h_xgroups[n_groups] = L->xtab[x];
            g->h_count[n_groups] = x;       /* the expert of group n_groups */
            g->h_group_start[n_groups] = a; /* safe: n_groups <= x */
            n_groups++;
            max_tok = MT_MAX(max_tok, b - a);
        }
    }
    g->h_group_start[n_groups] = np;
    GPU_DO(l, "expert groups upload",
           mt_gpu_copy_async(g->group_start, g->h_group_start, (size_t)(n_groups + 1) * 4, 1, s));
    GPU_DO(l, "expert groups upload",
           mt_gpu_copy_async(g->pair_tok, g->h_pair_tok, (size_t)np * 4, 1, s));
    GPU_DO(l, "expert groups upload",
           mt_gpu_copy_async(g->pair_w, g->h_pair_w, (size_t)np * 4, 1, s));
    if (g->grouped_moe) {
        GPU_DO(l, "expert groups upload",
               mt_gpu_copy_async(g->xgroups, g->h_xgroups,
                                 (size_t)n_groups * sizeof(struct mt_gpu_expert), 1, s));
        struct mt_gpu_moe_args a = {
            .hidden = D,
            .inter = (int)L->experts[0].gate.w.rows,
            .n_groups = n_groups,
            .n_pairs = np,
            .max_group_tok = max_tok,
            .n_tok = m,
            .experts = g->xgroups,
            .group_start = g->group_start,
            .pair_tok = g->pair_tok,
            .pair_w = g->pair_w,
            .x = g->x,
            .y = g->y,
            .work = g->moe_work,
        };
        GPU_DO(l, "routed experts (grouped GEMV)", mt_gpu_moe_experts(&a, s));
    } else {
        for (int gi = 0; gi < n_groups; gi++) {
            const struct g_mlp *X = &L->experts[g->h_count[gi]];
            int a = g->h_group_start[gi], cnt = g->h_group_start[gi + 1] - a;
            GPU_DO(l, "expert input gather",
                   mt_gpu_gather_rows(g->x, g->pair_tok + a, cnt, D, g->xs, s));
            if ((st = eng_gpu_mlp(g, l, X, g->xs, cnt, g->ys + (size_t)a * D)) != MT_OK) {
                return st;
            }
        }
        GPU_DO(l, "expert weighted sum",
               mt_gpu_scatter_add_rows(g->y, g->ys, g->pair_tok, g->pair_w, np, D, s));
    }
    /* the host arrays are reused by the next layer: wait until the uploads are done */
    GPU_DO(l, "expert groups upload", mt_gpu_stream_sync(s));
    return MT_OK;
}

#endif /* MT_HAVE_CUDA */
