/* SPDX-License-Identifier: MIT */
/*
 * engine_gpu_attn.c - one layer's attention in the GPU backend: MLA in absorbed form with
 * DeepSeek Sparse Attention's lightning indexer, in attention.c's order of operations, for a
 * decode step (up to MT_GPU_GEMV_MAX_TOK tokens: GEMVs and one query's kernels) or a prompt
 * chunk (GEMMs; the exact indexer's scores and top-k many rows a launch, the FP8 indexer's a
 * row a launch; sparse MLA many rows a launch either way).
 *
 * The projections and norms (q_a -> q_b, kv_a -> the latent cache, the indexer's q, k and head
 * weights) run first; the queries are absorbed through kv_b's key half; then each token's
 * positions are selected (dense causal where a row has no more keys than index_topk) and
 * attended to in the 512 + 64 latent space; the outputs go back through kv_b's value half and
 * o_proj into g->y.
 */
#include <config.h>

#ifdef MT_HAVE_CUDA

#include "runtime/engine/engine_gpu_impl.h"

#include <math.h>
#include <stdlib.h>

static int
cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a;
    int32_t y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* RoPE's attention factor on cos and sin (1 for DeepSeek's config) = a scale after rotation. */
#define ROPE_ATT(l, what, x, rows, ld, off)                                                       \
    do {                                                                                          \
        if (e->rope_att != 1.0f) {                                                                \
            GPU_DO(l, what, mt_gpu_scale_cols((x), (rows), (ld), (off), rope, e->rope_att, s));   \
        }                                                                                         \
    } while (0)

/* MLA + DSA of layer l for m tokens at start.. : g->y [m, hidden] (attention.c). */
mt_status_t
eng_gpu_attention(struct mt_engine *e, struct eng_gpu *g, int l, int m, int64_t start)
{
    const struct mt_model_config *c = &e->cfg;
    struct g_layer *L = &g->layers[l];
    struct CUstream_st *s = g->stream;
    int H = c->num_attention_heads, nope = c->qk_nope_head_dim, rope = c->qk_rope_head_dim;
    int qk = nope + rope, vd = c->v_head_dim, kvl = c->kv_lora_rank, ql = c->q_lora_rank;
    int IH = c->index_n_heads, ID = c->index_head_dim, half = rope / 2;
    bool sparse = e->opts.attention == MT_ATTN_SPARSE;
    bool fp8 = e->opts.indexer == MT_INDEXER_FP8;
    size_t lsz = mt_dtype_size(g->lat_dtype), ksz = mt_dtype_size(g->kpe_dtype);

    float *qa = g->qa, *ki = g->ki, *kv = g->kv;

    if (g->fuse && m == 1 && L->xproj.w.data != NULL) {
        /* one token: q_a, wk and kv_a in one GEMV of the stacked weight (wk's output is made
           also where the indexer does not run: 1 MB of 16) */
        GPU_DO(l, "q_a, wk and kv_a projections", eng_gpu_lin(&L->xproj, g->x, 1, g->stk, s));
        qa = g->stk + L->xproj_off[0];
        ki = g->stk + L->xproj_off[1];
        kv = g->stk + L->xproj_off[2];
    } else {
        GPU_DO(l, "q_a projection", eng_gpu_lin(&L->q_a, g->x, m, qa, s));
        GPU_DO(l, "kv_a projection", eng_gpu_lin(&L->kv_a, g->x, m, kv, s));
        if (sparse) {
            GPU_DO(l, "indexer wk", eng_gpu_lin(&L->idx_wk, g->x, m, ki, s));
        }
    }
    if (g->fuse) {
        /* latent: normed into the cache; k_pe: roped into the cache; and q_a's norm, all three
           from the projections just made, in one launch (the same numbers as the kernels of the
           unfused path below) */
        GPU_DO(l, "q_a norm, latent and k_pe into the caches",
               mt_gpu_mla_kv_epilogue(kv, L->kv_a_norm, m, kvl, rope, 1e-6f, g->freqs, start,
                                      e->rope_att, g->lat_t,
                                      (char *)L->lat + (size_t)start * kvl * lsz, g->lat_dtype,
                                      g->kpe_t, (char *)L->kpe + (size_t)start * rope * ksz,
                                      g->kpe_dtype, qa, L->q_a_norm, ql, s));
    } else {
        GPU_DO(l, "q_a norm", mt_gpu_rmsnorm(qa, L->q_a_norm, m, ql, 1e-6f, qa, s));
    }
    /* the FP8 cache: the normed latent (g->lat_t, both paths) quantized into it; the BF16 rows
       just written to g->lat16 are replaced by their FP8 values before anything reads them */
    if (g->lat_fp8 && g->fuse) {
        GPU_DO(l, "latent cache write (fp8)",
               mt_gpu_latent_fp8_store(g->lat_t, m, kvl,
                                       L->lat8 + start * mt_gpu_latent_fp8_row_bytes(kvl), s));
    }
    /* the indexer's queries and head weights only where a token has more keys than it keeps
       (top-k of n_keys <= index_topk is every key): up to 2,048 positions they are not read,
       13.5 MB a layer of V3.2; its key is, for the tokens after */
    bool iq = sparse && start + m > (int64_t)c->index_topk;
    float *qi = g->qi; /* the indexer's queries [m, IH * ID] */
    if (iq && g->fuse && g->stack_q && m == 1 && L->qproj.w.data != NULL) {
        /* one token: q and the indexer's queries in one GEMV of the stacked weight, into g->q
           (sized for both): q where it always is, the queries right after it */
        GPU_DO(l, "q_b and indexer wq_b projections", eng_gpu_lin(&L->qproj, qa, 1, g->q, s));
        qi = g->q + L->qproj_off[1];
    } else {
        GPU_DO(l, "q_b projection", eng_gpu_lin(&L->q_b, qa, m, g->q, s));
        if (iq) {
            GPU_DO(l, "indexer wq_b", eng_gpu_lin(&L->idx_wq_b, qa, m, qi, s));
        }
    }
    if (iq) {
        GPU_DO(l, "indexer weights_proj", eng_gpu_lin(&L->idx_wproj, g->x, m, g->wts, s));
    }
    /* unfused: the latent normed into the cache, k_pe roped into the cache, step by step */
    if (!g->fuse) {
        GPU_DO(l, "latent split", mt_gpu_rows_convert(g->lat_t, MT_DTYPE_F32, kvl, kv,
                                                      kvl + rope, m, kvl, s));
        GPU_DO(l, "kv_a norm",
               mt_gpu_rmsnorm(g->lat_t, L->kv_a_norm, m, kvl, 1e-6f, g->lat_t, s));
        GPU_DO(l, "latent cache write",
               g->lat_fp8
                   ? mt_gpu_latent_fp8_store(g->lat_t, m, kvl,
                                             L->lat8 + start * mt_gpu_latent_fp8_row_bytes(kvl), s)
                   : mt_gpu_rows_convert((char *)L->lat + (size_t)start * kvl * lsz, g->lat_dtype,
                                         kvl, g->lat_t, kvl, m, kvl, s));
        GPU_DO(l, "k_pe split", mt_gpu_rows_convert(g->kpe_t, MT_DTYPE_F32, rope, kv + kvl,
                                                    kvl + rope, m, rope, s));
        GPU_DO(l, "k_pe rope", mt_gpu_rope_interleaved(g->kpe_t, m, 1, rope, 0, g->freqs, half,
                                                       start, s));
        ROPE_ATT(l, "k_pe rope factor", g->kpe_t, m, rope, 0);
        GPU_DO(l, "k_pe cache write",
               mt_gpu_rows_convert((char *)L->kpe + (size_t)start * rope * ksz, g->kpe_dtype,
                                   rope, g->kpe_t, rope, m, rope, s));
    }
    if (g->fuse) {
        /* q's rotation, and the indexer's key (norm, rotation, exact cache), queries and head
           weights, in one launch (the same bits as the kernels below) */
        struct mt_gpu_attn_prologue ap = {
            .n_tok = m, .pos0 = start, .freqs = g->freqs, .half = half, .rope_att = e->rope_att,
            .q = g->q, .n_heads = H, .qk = qk, .nope = nope,
            .ki = sparse ? ki : NULL, .k_w = L->idx_norm_w, .k_b = L->idx_norm_b, .id = ID,
            .eps = 1e-6f,
            .key_cache = L->ikey != NULL && !g->ikey_split ? (float *)L->ikey + (size_t)start * ID
                                                           : NULL,
            .key_split = g->ikey_split ? L->ikey : NULL,
            .qi = iq ? qi : NULL, .ih = IH, .wts = iq ? g->wts : NULL,
            .wts_scale = (float)(1.0 / sqrt((double)IH))};
        GPU_DO(l, "q rope and the indexer's key, queries and weights",
               mt_gpu_attn_prologue(&ap, s));
        if (sparse && L->ikey8 != NULL) {
            GPU_DO(l, "index key fp8 quantization",
                   mt_gpu_hadamard_quant(ki, m, ID, L->ikey8 + (size_t)start * ID,
                                         L->ikscale + start, NULL, 0.0f, s));
        }
    } else {
        GPU_DO(l, "q rope",
               mt_gpu_rope_interleaved(g->q, m, H, qk, nope, g->freqs, half, start, s));
        ROPE_ATT(l, "q rope factor", g->q, m * H, qk, nope);
    }
    if (sparse && !g->fuse) {
        GPU_DO(l, "indexer k norm", mt_gpu_layernorm(ki, L->idx_norm_w, L->idx_norm_b, m, ID,
                                                     1e-6f, ki, s));
        GPU_DO(l, "indexer k rope", mt_gpu_rope_half(ki, m, 1, ID, 0, g->freqs, half, start,
                                                     s));
        ROPE_ATT(l, "indexer k rope factor", ki, m, ID, 0);
        if (iq) {
            GPU_DO(l, "indexer q rope", mt_gpu_rope_half(qi, m, IH, ID, 0, g->freqs, half,
                                                         start, s));
            ROPE_ATT(l, "indexer q rope factor", qi, m * IH, ID, 0);
            GPU_DO(l, "indexer weights scale",
                   mt_gpu_scale_cols(g->wts, m, IH, 0, IH, (float)(1.0 / sqrt((double)IH)), s));
        }
        if (L->ikey != NULL && g->ikey_split) {
            GPU_DO(l, "index key cache write", mt_gpu_index_keys_split_store(L->ikey, start, ki,
                                                                             m, s));
        } else if (L->ikey != NULL) {
            GPU_DO(l, "index key cache write",
                   mt_gpu_rows_convert((float *)L->ikey + (size_t)start * ID, MT_DTYPE_F32, ID,
                                       ki, ID, m, ID, s));
        }
        if (L->ikey8 != NULL) {
            GPU_DO(l, "index key fp8 quantization",
                   mt_gpu_hadamard_quant(ki, m, ID, L->ikey8 + (size_t)start * ID,
                                         L->ikscale + start, NULL, 0.0f, s));
        }
    }
    /* the queries absorbed through kv_b's key half, all m tokens at once */
    if (m > TOK) {
        GPU_DO(l, "query absorption", mt_gpu_gemm_absorb_q(g->gemm, &L->kvb.w, g->q, m, H, nope,
                                                           vd, rope, g->q_lat, g->q_pe, s));
    } else {
        GPU_DO(l, "query absorption", mt_gpu_mla_absorb_q(g->q, &L->kvb.w, m, H, nope, vd, rope,
                                                          g->q_lat, g->q_pe, s));
    }
    float iscale = (float)(1.0 / sqrt((double)ID));
    /*
     * A prompt chunk: the queries whose keys outnumber index_topk (from t0 on) are scored and
     * selected score_rows at a time, one launch each for the scores and the top-k (rows of ld =
     * start + m, the tail of each NaN), and for the FP8 indexer one for the queries'
     * quantization, instead of two or three launches a token. The FP8 indexer at other shapes
     * than V3.2's 64 x 128 (the tiny test models) keeps a token at a time.
     */
    int64_t topk = c->index_topk;
    int t0 = (int)MT_MAX(0, MT_MIN((int64_t)m, topk - start)); /* first token with a real top-k */
    bool batched = sparse && (!fp8 || (IH == 64 && ID == 128)) && m > TOK && g->batch_index &&
                   t0 < m;
    int64_t ld = start + m;
    int b0 = t0, b1 = t0; /* the batch whose selections g->idx holds: tokens b0..b1-1 */
    /*
     * Sparse MLA of a prompt chunk (BF16 cache, tensor cores): the dense rows (fewer keys than
     * index_topk: tokens before t0) in one launch, each batch of selected rows in one launch
     * after its top-k, instead of a launch and a merge a token. Rows selected a token at a time
     * (the FP8 indexer, MT_GPU_BATCH_INDEX=0) keep their selections side by side in g->idx and
     * go the same way score_rows at a time (p0: the first of the rows pending, pn of them).
     */
    bool prompt_mla = g->prompt_mla && m > TOK;
    int t_dense = sparse ? t0 : m;
    int p0 = 0, pn = 0;
    if (g->lat_fp8 && prompt_mla) { /* the FP8 cache: every position this chunk's rows read */
        GPU_DO(l, "latent rows widened (fp8)",
               mt_gpu_latent_fp8_expand(L->lat8, kvl, NULL, start + m, g->lat16, s));
    }
    if (prompt_mla && t_dense > 0) {
        GPU_DO(l, "sparse MLA (prompt rows)",
               mt_gpu_mla_prompt(g->q_lat, g->q_pe, H, kvl, rope, g->lat_dtype, L->lat, L->kpe,
                                 NULL, 0, 0, (int)start + 1, t_dense, e->softmax_scale, g->o_lat,
                                 s));
    }
    for (int t = 0; t < m; t++) {
        int64_t pos = start + t;
        int64_t n_keys = pos + 1;
        int64_t k = MT_MIN((int64_t)c->index_topk, n_keys);
        const int32_t *sel = NULL;
        int n_idx = (int)n_keys;

        if (batched && t >= t0) {
            if (t >= b1) {
                b0 = t;
                b1 = MT_MIN(m, t + g->score_rows);
                const float *qb = qi + (size_t)b0 * IH * ID, *wb = g->wts + (size_t)b0 * IH;
                if (fp8) {
                    GPU_DO(l, "index query fp8 quantization (prompt rows)",
                           mt_gpu_hadamard_quant(qb, (b1 - b0) * IH, ID, g->q8, g->wq, wb, iscale,
                                                 s));
                    GPU_DO(l, "fp8 index scores (prompt rows)",
                           mt_gpu_index_scores_fp8_rows(g->q8, g->wq, IH, ID, L->ikey8,
                                                        L->ikscale, n_keys, b1 - b0, g->scores,
                                                        ld, s));
                } else {
                    GPU_DO(l, "index scores (prompt rows)",
                           g->ikey_split
                               ? mt_gpu_index_scores_split(qb, wb, L->ikey, n_keys, b1 - b0,
                                                           start, iscale, g->scores, ld, s)
                               : mt_gpu_index_scores_rows(qb, wb, IH, ID, L->ikey, n_keys,
                                                          b1 - b0, iscale, g->scores, ld, s));
                }
                GPU_DO(l, "indexer top-k (prompt rows)",
                       mt_gpu_topk(g->scores, ld, b1 - b0, ld, NULL, (int)topk, g->idx, NULL,
                                   NULL, s));
                if (prompt_mla) {
                    GPU_DO(l, "sparse MLA (prompt rows)",
                           mt_gpu_mla_prompt(g->q_lat + (size_t)b0 * H * kvl,
                                             g->q_pe + (size_t)b0 * H * rope, H, kvl, rope,
                                             g->lat_dtype, L->lat, L->kpe, g->idx, topk,
                                             (int)topk, 0, b1 - b0, e->softmax_scale,
                                             g->o_lat + (size_t)b0 * H * kvl, s));
                }
            }
            sel = g->idx + (size_t)(t - b0) * (size_t)topk;
            n_idx = (int)topk;
        } else if (sparse && k < n_keys) {
            const float *qt = qi + (size_t)t * IH * ID;
            const float *wt = g->wts + (size_t)t * IH;
            if (!fp8) {
                GPU_DO(l, "index scores",
                       g->ikey_split ? mt_gpu_index_scores_split(qt, wt, L->ikey, n_keys, 1,
                                                                 start, iscale, g->scores,
                                                                 n_keys, s)
                                     : mt_gpu_index_scores(qt, wt, IH, ID, L->ikey, n_keys,
                                                           iscale, g->scores, s));
            } else {
                GPU_DO(l, "index query fp8 quantization",
                       mt_gpu_hadamard_quant(qt, IH, ID, g->q8, g->wq, wt, iscale, s));
                if (IH == 64 && ID == 128) {
                    GPU_DO(l, "fp8 index scores",
                           mt_gpu_index_scores_fp8(g->q8, g->wq, IH, ID, L->ikey8, L->ikscale,
                                                   n_keys, start, g->scores, s));
                } else {
                    GPU_DO(l, "fp8 index scores",
                           mt_gpu_index_scores_fp8_any(g->q8, g->wq, IH, ID, L->ikey8,
                                                       L->ikscale, n_keys, g->scores, s));
                }
            }
            int32_t *dst = g->idx;
            if (prompt_mla) { /* k == index_topk here: rows side by side */
                p0 = pn == 0 ? t : p0;
                dst = g->idx + (size_t)pn * (size_t)topk;
            }
            GPU_DO(l, "indexer top-k", mt_gpu_topk(g->scores, n_keys, 1, n_keys, NULL, (int)k,
                                                   dst, NULL, g->topk_work, s));
            sel = dst;
            n_idx = (int)k;
            if (prompt_mla && (++pn == g->score_rows || t == m - 1)) {
                GPU_DO(l, "sparse MLA (prompt rows)",
                       mt_gpu_mla_prompt(g->q_lat + (size_t)p0 * H * kvl,
                                         g->q_pe + (size_t)p0 * H * rope, H, kvl, rope,
                                         g->lat_dtype, L->lat, L->kpe, g->idx, topk, (int)topk,
                                         0, pn, e->softmax_scale,
                                         g->o_lat + (size_t)p0 * H * kvl, s));
                pn = 0;
            }
        }
        if (e->hook != NULL) {
            if (sel != NULL) {
                GPU_DO(l, "top-k copy", mt_gpu_copy_async(g->h_idx, sel, (size_t)n_idx * 4, 0, s));
                GPU_DO(l, "top-k copy", mt_gpu_stream_sync(s));
                qsort(g->h_idx, (size_t)n_idx, sizeof(int32_t), cmp_i32);
            } else {
                for (int i = 0; i < n_idx; i++) {
                    g->h_idx[i] = i;
                }
            }
            e->hook(e->hook_ctx, l, pos, g->h_idx, n_idx);
        }
        const float *q_lat = g->q_lat + (size_t)t * H * kvl;
        const float *q_pe = g->q_pe + (size_t)t * H * rope;
        float *o_lat = g->o_lat + (size_t)t * H * kvl;
        if (prompt_mla && (t < t_dense || sel != NULL)) {
            continue; /* its row ran (or runs) in a launch of many */
        }
        if (g->lat_fp8) { /* the positions this token reads (sel, or the first n_idx) */
            GPU_DO(l, "latent rows widened (fp8)",
                   mt_gpu_latent_fp8_expand(L->lat8, kvl, sel, n_idx, g->lat16, s));
        }
        if (g->fast_mla) {
            GPU_DO(l, "sparse MLA", mt_gpu_mla_decode(q_lat, q_pe, H, kvl, rope, g->lat_dtype,
                                                      L->lat, L->kpe, sel, n_idx,
                                                      e->softmax_scale, g->mla_work, o_lat, s));
        } else {
            GPU_DO(l, "sparse MLA", mt_gpu_mla_decode_any(q_lat, q_pe, H, kvl, rope,
                                                          g->lat_dtype, L->lat, L->kpe, sel,
                                                          n_idx, e->softmax_scale, g->mla_work,
                                                          o_lat, s));
        }
    }
    /* the outputs through kv_b's value half, all m tokens at once */
    if (m > TOK) {
        GPU_DO(l, "value absorption", mt_gpu_gemm_absorb_v(g->gemm, &L->kvb.w, g->o_lat, m, H,
                                                           nope, vd, g->attn, s));
    } else {
        GPU_DO(l, "value absorption", mt_gpu_mla_absorb_v(g->o_lat, &L->kvb.w, m, H, nope, vd,
                                                          g->attn, s));
    }
    GPU_DO(l, "o_proj", eng_gpu_lin(&L->o, g->attn, m, g->y, s));
    return MT_OK;
}

#endif /* MT_HAVE_CUDA */
