/* SPDX-License-Identifier: MIT */
/*
 * test_gpu_moe.c - grouped SwiGLU experts on the GPU against the CPU reference:
 * y[t] = x0[t] + sum_j w[t, j] * mt_cpu_swiglu(expert ids[t, j], x[t]), at the V3.2 expert shape
 * (2048 x 7168) and odd ones, with 1 to 8 tokens and experts shared between tokens; and a prompt
 * chunk's way (pairs_mode): up to 40 tokens, each expert's pairs in groups of up to 32 (the chunk
 * GEMM of moe_chunk.cu) or 8 (the older core, MT_MOE_CHUNK_GEMM=0), every pair's output left in
 * y_pairs (y untouched) and summed here.
 */
#include <config.h>

#include "cpu/ref_ops.h"
#include "tests/gpu_test.h"

#include <math.h>
#include <stdlib.h>

#define MAX_E 16
#define MAX_TOK 40
#define MAX_PAIRS (MAX_TOK * 8) /* top-8 a token; padding makes up to one group a pair */

/* Appended to the checks' names: the gate/up kernel's shape where it is not the default. */
static const char *moe_variant = "";
/* Groups of up to mt_gpu_moe_chunk_group_max() pairs, outputs per pair into y_pairs (a prompt
 * chunk's use). */
static bool pairs_mode;
/* x times this (1, or a power of two past f16's 65,504: the staging's rescaling must keep the
 * products exact) */
static float x_scale = 1.0f;

static void
check_moe_pad(int hidden, int inter, int n_exp, int n_tok, int k, bool pad)
{
    size_t wsz = (size_t)inter * hidden;
    size_t ssz = (size_t)MT_CEIL_DIV(inter, 128) * MT_CEIL_DIV(hidden, 128);
    uint8_t *w[MAX_E][3];
    float *sc[MAX_E][3];
    struct mt_gpu_expert host_exp[MAX_E];
    float *x = gt_malloc((size_t)n_tok * hidden * sizeof(float));
    float *y0 = gt_malloc((size_t)n_tok * hidden * sizeof(float));
    float *want = gt_malloc((size_t)n_tok * hidden * sizeof(float));
    float *got = gt_malloc((size_t)n_tok * hidden * sizeof(float));
    float *tmp = gt_malloc((size_t)hidden * sizeof(float));
    int32_t ids[MAX_TOK][8];
    float rw[MAX_TOK][8];
    int32_t group_start[MAX_PAIRS + 1];
    int32_t pair_tok[MAX_PAIRS];
    float pair_w[MAX_PAIRS];
    struct mt_gpu_expert group_exp[MAX_PAIRS];
    int n_groups = 0;
    int n_pairs = 0;
    int max_group = 0;
    char name[240];

    if (n_tok > (pairs_mode ? MAX_TOK : 8) || k > 8 || n_exp > MAX_E) {
        gt_bail("check_moe: at most 8 tokens (40 in pairs mode), top-8, 16 experts");
    }
    int cap = pairs_mode ? mt_gpu_moe_chunk_group_max() : MAX_PAIRS; /* pairs a group */
    mt_gpu_arena_reset(gt_arena);
    for (int e = 0; e < n_exp; e++) {
        for (int m = 0; m < 3; m++) {
            w[e][m] = gt_malloc(wsz);
            sc[e][m] = gt_malloc(ssz * sizeof(float));
            gt_fill_fp8(w[e][m], wsz);
            for (size_t i = 0; i < ssz; i++) {
                sc[e][m][i] = gt_uniform(0.5f, 1.5f) / 448.0f;
            }
        }
        host_exp[e].gate = gt_put(w[e][0], wsz);
        host_exp[e].up = gt_put(w[e][1], wsz);
        host_exp[e].down = gt_put(w[e][2], wsz);
        host_exp[e].gate_scale = gt_put(sc[e][0], ssz * sizeof(float));
        host_exp[e].up_scale = gt_put(sc[e][1], ssz * sizeof(float));
        host_exp[e].down_scale = gt_put(sc[e][2], ssz * sizeof(float));
    }
    gt_fill(x, (size_t)n_tok * hidden, -1.0f, 1.0f);
    for (size_t i = 0; i < (size_t)n_tok * hidden; i++) {
        x[i] *= x_scale;
    }
    gt_fill(y0, (size_t)n_tok * hidden, -1.0f, 1.0f);
    memcpy(want, y0, (size_t)n_tok * hidden * sizeof(float));
    /* routing: k distinct experts per token, random weights */
    for (int t = 0; t < n_tok; t++) {
        for (int j = 0; j < k; j++) {
            bool again;
            do {
                ids[t][j] = (int32_t)mt_rng_below(&gt_rng, (uint64_t)n_exp);
                again = false;
                for (int i = 0; i < j; i++) {
                    again = again || ids[t][i] == ids[t][j];
                }
            } while (again);
            rw[t][j] = gt_uniform(0.1f, 1.0f);
        }
    }
    /* CPU: y[t] += w * expert(x[t]) in expert order (the GPU sums a token's pairs in pair order,
     * which is expert order, so the sums match up to rounding inside each expert) */
    for (int e = 0; e < n_exp; e++) {
        int in_group = 0;
        for (int t = 0; t < n_tok; t++) {
            for (int j = 0; j < k; j++) {
                if (ids[t][j] != e) {
                    continue;
                }
                if (in_group++ % cap == 0) {
                    group_start[n_groups] = n_pairs;
                    group_exp[n_groups++] = host_exp[e];
                }
                pair_tok[n_pairs] = t;
                pair_w[n_pairs++] = rw[t][j];
                struct mt_cpu_weight g = {MT_DTYPE_F8_E4M3, w[e][0], sc[e][0], inter, hidden};
                struct mt_cpu_weight u = {MT_DTYPE_F8_E4M3, w[e][1], sc[e][1], inter, hidden};
                struct mt_cpu_weight d = {MT_DTYPE_F8_E4M3, w[e][2], sc[e][2], hidden, inter};
                if (mt_cpu_swiglu(&g, &u, &d, x + (size_t)t * hidden, 1, tmp) != MT_OK) {
                    gt_bail("cpu swiglu");
                }
                for (int i = 0; i < hidden; i++) {
                    want[(size_t)t * hidden + i] += rw[t][j] * tmp[i];
                }
            }
        }
        max_group = MT_MAX(max_group, MT_MIN(in_group, cap));
    }
    group_start[n_groups] = n_pairs;
    /* pad: empty groups after the last up to one a pair, as the device grouping leaves them
     * (with a valid expert) */
    while (pad && n_groups < n_pairs) {
        group_exp[n_groups] = host_exp[0];
        group_start[++n_groups] = n_pairs;
    }

    struct mt_gpu_moe_args a = {
        .hidden = hidden,
        .inter = inter,
        .n_groups = n_groups,
        .n_pairs = n_pairs,
        .max_group_tok = max_group,
        .n_tok = n_tok,
        .experts = gt_put(group_exp, (size_t)n_groups * sizeof(group_exp[0])),
        .group_start = gt_put(group_start, (size_t)(n_groups + 1) * sizeof(int32_t)),
        .pair_tok = gt_put(pair_tok, (size_t)n_pairs * sizeof(int32_t)),
        .pair_w = gt_put(pair_w, (size_t)n_pairs * sizeof(float)),
        .x = gt_put(x, (size_t)n_tok * hidden * sizeof(float)),
        .y = gt_put(y0, (size_t)n_tok * hidden * sizeof(float)),
        .work = gt_alloc(pairs_mode ? (size_t)n_pairs * inter * sizeof(float)
                                    : mt_gpu_moe_work_bytes(n_pairs, inter, hidden)),
        .y_pairs = pairs_mode ? gt_alloc((size_t)n_pairs * hidden * sizeof(float)) : NULL,
    };
    mt_status_t st = mt_gpu_moe_experts(&a, NULL);
    snprintf(name, sizeof(name),
             "experts %d x %d, %d tokens x top-%d of %d (%d groups%s, <= %d a group)%s%s%s", inter,
             hidden, n_tok, k, n_exp, n_groups, pad ? " with empty ones" : "", max_group,
             x_scale != 1.0f ? ", x up to 2^16" : "",
             getenv("MT_MOE_WAVE") != NULL ? " on the older core (MT_MOE_WAVE=0)" : "",
             !pairs_mode                              ? moe_variant
             : cap > MT_GPU_GEMV_MAX_TOK ? ", outputs per pair (chunk GEMM)"
                                         : ", outputs per pair (older core)");
    if (st != MT_OK) {
        tap_ok(false, "%s: launch failed: %s", name, mt_last_error());
    } else if (pairs_mode) {
        /* y untouched; y0 + each token's pairs in pair order, as the engine's scatter adds */
        float *yp = gt_malloc((size_t)n_pairs * hidden * sizeof(float));
        gt_get(got, a.y, (size_t)n_tok * hidden * sizeof(float));
        gt_get(yp, a.y_pairs, (size_t)n_pairs * hidden * sizeof(float));
        tap_ok(memcmp(got, y0, (size_t)n_tok * hidden * sizeof(float)) == 0,
               "%s: y untouched", name);
        for (int p = 0; p < n_pairs; p++) {
            for (int i = 0; i < hidden; i++) {
                got[(size_t)pair_tok[p] * hidden + i] += pair_w[p] * yp[(size_t)p * hidden + i];
            }
        }
        free(yp);
    } else {
        gt_get(got, a.y, (size_t)n_tok * hidden * sizeof(float));
    }
    if (st == MT_OK) {
        /* the outputs are small sums of large terms (random FP8 spans 2^-9..448), so fp32
         * rounding in gate/up is amplified through down: judge by the normalized squared error
         * (ggml's NMSE) instead of per element; a wrong expert, scale or token gives ~1;
         * the H200 measured 7e-13 */
        double se = 0.0;
        double sw = 0.0;
        for (size_t i = 0; i < (size_t)n_tok * hidden; i++) {
            double d = (double)got[i] - want[i];
            se += d * d;
            sw += (double)want[i] * want[i];
        }
        tap_ok(sw > 0.0 && se / sw < 1e-9, "%s: NMSE %.3g < 1e-9", name,
               sw > 0.0 ? se / sw : 1.0);
    }
    /* the same launch with programmatic dependent launch off and on (kernels/pdl.cuh): the
     * kernels wait for their inputs either way, so the bits are the same */
    size_t yb = (size_t)n_tok * hidden * sizeof(float);
    float *got2 = gt_malloc(yb);
    bool same = st == MT_OK && !pairs_mode;
    for (int p = 0; same && p < 2; p++) {
        mt_gpu_pdl_set(p == 1);
        same = mt_gpu_copy_to_device(a.y, y0, yb) == MT_OK && mt_gpu_moe_experts(&a, NULL) == MT_OK;
        if (same) {
            gt_get(p == 0 ? got : got2, a.y, yb);
        }
    }
    mt_gpu_pdl_set(true);
    if (!pairs_mode) {
        tap_ok(same && memcmp(got, got2, yb) == 0, "%s: the same bits with and without PDL%s",
               name, mt_gpu_pdl_active() ? "" : " (no PDL on this device)");
    }
    free(got2);
    /* the older core's grid with row blocks first instead of groups (MT_MOE_GROUP_FAST=0): each
       block computes the same values either way, so the same bits (where that core runs: more
       than 4 tokens, a chunk's groups with MT_MOE_CHUNK_GEMM=0, or MT_MOE_WAVE=0) */
    if (st == MT_OK && (pairs_mode ? cap <= MT_GPU_GEMV_MAX_TOK
                                   : n_tok > 4 || getenv("MT_MOE_WAVE") != NULL)) {
        float *out = pairs_mode ? a.y_pairs : a.y;
        size_t ob = pairs_mode ? (size_t)n_pairs * hidden * sizeof(float) : yb;
        float *r1 = gt_malloc(ob);
        float *r2 = gt_malloc(ob);
        bool ok = mt_gpu_copy_to_device(a.y, y0, yb) == MT_OK &&
                  mt_gpu_moe_experts(&a, NULL) == MT_OK;
        if (ok) {
            gt_get(r1, out, ob);
        }
        setenv("MT_MOE_GROUP_FAST", "0", 1);
        ok = ok && mt_gpu_copy_to_device(a.y, y0, yb) == MT_OK &&
             mt_gpu_moe_experts(&a, NULL) == MT_OK;
        unsetenv("MT_MOE_GROUP_FAST");
        if (ok) {
            gt_get(r2, out, ob);
        }
        tap_ok(ok && memcmp(r1, r2, ob) == 0, "%s: the same bits with the grid's row blocks first",
               name);
        free(r2);
        free(r1);
    }
    for (int e = 0; e < n_exp; e++) {
        for (int m = 0; m < 3; m++) {
            free(sc[e][m]);
            free(w[e][m]);
        }
    }
    free(tmp);
    free(got);
    free(want);
    free(y0);
    free(x);
}

static void
check_moe(int hidden, int inter, int n_exp, int n_tok, int k)
{
    check_moe_pad(hidden, inter, n_exp, n_tok, k, false);
}

int
main(void)
{
    if (!gt_init(2048, 6)) {
        return tap_done();
    }
    check_moe(7168, 2048, 8, 1, 8);  /* one decode token, 8 experts */
    check_moe(7168, 2048, 12, 4, 8); /* MTP-sized batch: experts shared */
    check_moe(7168, 2048, 3, 8, 2);  /* 8 tokens on 3 experts: groups of up to 8 */
    check_moe(272, 144, 5, 3, 2);    /* odd sizes, partial scale blocks */
    check_moe(272, 144, 2, 8, 2);    /* every token on both experts: groups of exactly 8 */
    check_moe(1040, 400, 4, 7, 3);   /* rows past the last 16-row tile in gate/up and down */
    /* one token (the one-wave kernels of moe.cu): odd sizes, partial scale blocks, few tiles */
    check_moe(272, 144, 5, 1, 2);
    check_moe(1040, 400, 4, 1, 3);
    check_moe(2048, 512, 6, 1, 6);
    check_moe(16, 16, 3, 1, 3); /* one tile an expert: a block spans several experts */
    check_moe_pad(2048, 512, 10, 3, 4, true); /* empty groups at the end load nothing */
    check_moe_pad(272, 144, 6, 4, 3, true);
    check_moe_pad(7168, 2048, 16, 2, 8, true); /* decode of 2 tokens as the engine groups it */
    /* 3 and 4 tokens at V3.2's width: x no longer fits beside the gate/up kernel's ring (not on
       the H200 either), so they run its register-stage instance, which no case above reaches */
    check_moe(7168, 2048, 8, 3, 8);
    check_moe_pad(7168, 2048, 16, 4, 8, true);
    /* x and the SwiGLU output h beyond f16's range (|x| up to 2^16, |h| ~ 2^40): the one-wave
     * kernels stage both rescaled by a power of two (gemv_wave.cuh, mv_stage_checked); where x
     * is split in registers (3-4 tokens' gate/up at 7168, 5-8 tokens on the older core) the
     * results that come out inf or NaN are computed again in fp32 */
    x_scale = 65536.0f;
    check_moe(7168, 2048, 8, 1, 8);
    check_moe(272, 144, 5, 3, 2);
    check_moe_pad(7168, 2048, 16, 2, 8, true);
    check_moe(7168, 2048, 8, 3, 8);
    check_moe(7168, 2048, 3, 8, 2);
    check_moe(1040, 400, 4, 7, 3);
    x_scale = 1.0f;
    /* 1..4 tokens on the older core: the fallback where the one-wave kernel does not fit (too
       little shared memory, shapes off its tile grid) */
    setenv("MT_MOE_WAVE", "0", 1);
    check_moe(7168, 2048, 8, 1, 8);
    check_moe(1040, 400, 4, 1, 3);
    check_moe_pad(7168, 2048, 16, 2, 8, true);
    check_moe(272, 144, 5, 3, 2);
    unsetenv("MT_MOE_WAVE");
    /* one token's gate/up in one 16-warp block an SM where the default takes two 8-warp blocks
       (kernels/gemv.cu; without the shared memory for two, both runs take the 16-warp kernel) */
    mt_gpu_gemv_two_blocks_set(false);
    moe_variant = ", one 16-warp block an SM";
    check_moe(7168, 2048, 8, 1, 8);
    check_moe(1040, 400, 4, 1, 3);
    check_moe(16, 16, 3, 1, 3);
    check_moe_pad(7168, 2048, 16, 2, 8, true);
    mt_gpu_gemv_two_blocks_set(true);
    moe_variant = "";
    /* a prompt chunk's experts, outputs per pair (the engine's chunks): groups of up to 32 pairs
       on the chunk GEMM, then of up to 8 on the older core */
    pairs_mode = true;
    check_moe(7168, 2048, 6, 12, 4);  /* ~8 pairs an expert at V3.2's shape */
    check_moe(7168, 2048, 6, 40, 4);  /* ~27 pairs an expert: four n-tiles, some partial */
    check_moe(7168, 2048, 2, 40, 2);  /* 40 pairs an expert: a full group of 32 and one of 8 */
    check_moe(272, 144, 3, 40, 2);    /* odd sizes: partial steps, tiles and row blocks */
    check_moe(272, 144, 2, 40, 2);    /* the same with groups of 32 and 8 */
    check_moe(1040, 400, 5, 33, 1);   /* single pairs and small groups */
    check_moe(16, 16, 3, 17, 3);      /* one tile and one partial step an expert */
    check_moe_pad(1040, 400, 4, 9, 3, true); /* empty groups at the end compute nothing */
    /* x and h past f16's range: the results that come out inf or NaN in fp32 again */
    x_scale = 65536.0f;
    check_moe(7168, 2048, 6, 40, 4);
    check_moe(272, 144, 3, 40, 2);
    x_scale = 1.0f;
    setenv("MT_MOE_CHUNK_GEMM", "0", 1);
    check_moe(7168, 2048, 6, 12, 4);
    check_moe(272, 144, 3, 40, 2); /* ~27 pairs an expert: full groups of 8 and a partial one */
    check_moe_pad(1040, 400, 4, 9, 3, true);
    x_scale = 65536.0f;
    check_moe(7168, 2048, 6, 12, 4);
    x_scale = 1.0f;
    unsetenv("MT_MOE_CHUNK_GEMM");
    pairs_mode = false;
    mt_gpu_arena_destroy(gt_arena);
    return tap_done();
}
