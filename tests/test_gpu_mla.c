/* SPDX-License-Identifier: MIT */
/*
 * test_gpu_mla.c - sparse MLA decode (absorbed form) against mt_cpu_mla_absorbed: the DSA case
 * (2048 selected positions of a longer cache, 128 heads), dense causal rows shorter than
 * index_topk, a row of one, an empty row, padding (-1) in the selection; BF16 and fp32 caches;
 * the BF16 cache on both its kernels (tensor cores where the device has the shared memory, and the
 * small tensor-core kernel of GPUs with less shared memory a block and of rows of up to 1,024
 * positions, forced by MT_MLA_TC_SMALL=1 where the large one fits, on each of its blocks
 * (MT_MLA_DECODE_BLOCK), the large one forced at short rows by MT_MLA_TC_SMALL=0, and the
 * CUDA-core one, forced by MT_MLA_CUDA_CORES=1); and a prompt's rows in one launch
 * (mt_gpu_mla_prompt: dense and selected rows, long and short).
 */
#include <config.h>

#include "cpu/ref_ops.h"
#include "tests/gpu_test.h"

#include <math.h>
#include <stdlib.h>

#define RANK 512
#define ROPE 64
#define SCALE 0.1352338f

static float
bf16_round(float f, uint16_t *out)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t h = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    uint32_t v = (uint32_t)h << 16;
    *out = h;
    memcpy(&f, &v, 4);
    return f;
}

/*
 * Non-zero: check_mla's scores all far below zero (about -130: latent values in [0.25, 1.25],
 * latent queries near -2.5), where exp(score) underflows in fp32, so a softmax whose running
 * max starts at 0 instead of -inf divides 0 by 0; the softmax itself is as well conditioned as
 * ever (its spread is a few units).
 */
static bool far_scores;

/* Whether a BF16 cache runs on the tensor-core kernel now (mt_gpu_mla_tensor_cores). */
static bool
tensor_cores(void)
{
    bool tc = false;

    return mt_gpu_mla_tensor_cores(&tc) == MT_OK && tc;
}

/* n_sel < 0: dense causal over -n_sel positions (idx NULL); pad 1: every 7th selected is -1,
 * 2: every one (no position at all: zeros), 3: selections 256..511 (whole splits of every
 * kernel with no position, between splits with some) */
static void
check_mla(enum mt_dtype cdt, int n_heads, int n_cache, int n_sel, int pad)
{
    bool dense = n_sel < 0;
    int n_idx = dense ? -n_sel : n_sel;
    float *ql = gt_malloc((size_t)n_heads * RANK * sizeof(float));
    float *qp = gt_malloc((size_t)n_heads * ROPE * sizeof(float));
    float *lat = gt_malloc((size_t)n_cache * RANK * sizeof(float));
    float *kpe = gt_malloc((size_t)n_cache * ROPE * sizeof(float));
    uint16_t *lat16 = gt_malloc((size_t)n_cache * RANK * sizeof(uint16_t));
    uint16_t *kpe16 = gt_malloc((size_t)n_cache * ROPE * sizeof(uint16_t));
    int32_t *idx = gt_malloc((size_t)(n_idx + 1) * sizeof(int32_t));
    int32_t *cpu_idx = gt_malloc((size_t)(n_idx + 1) * sizeof(int32_t));
    float *want = gt_malloc((size_t)n_heads * RANK * sizeof(float));
    float *got = gt_malloc((size_t)n_heads * RANK * sizeof(float));
    int n_cpu = 0;
    char name[256];

    gt_fill(ql, (size_t)n_heads * RANK, -0.3f, 0.3f);
    gt_fill(qp, (size_t)n_heads * ROPE, -1.0f, 1.0f);
    gt_fill(lat, (size_t)n_cache * RANK, -1.0f, 1.0f);
    gt_fill(kpe, (size_t)n_cache * ROPE, -1.0f, 1.0f);
    for (size_t i = 0; far_scores && i < (size_t)n_heads * RANK; i++) {
        ql[i] -= 2.5f;
    }
    for (size_t i = 0; far_scores && i < (size_t)n_cache * RANK; i++) {
        lat[i] = 0.75f + 0.5f * lat[i];
    }
    if (cdt == MT_DTYPE_BF16) {
        /* the reference sees exactly the cached bf16 values */
        for (size_t i = 0; i < (size_t)n_cache * RANK; i++) {
            lat[i] = bf16_round(lat[i], &lat16[i]);
        }
        for (size_t i = 0; i < (size_t)n_cache * ROPE; i++) {
            kpe[i] = bf16_round(kpe[i], &kpe16[i]);
        }
    }
    /* a selection: distinct positions of the cache (a random walk), some -1 when padding */
    for (int j = 0; j < n_idx; j++) {
        idx[j] = dense ? j : (int32_t)(((int64_t)j * n_cache) / n_idx +
                                       mt_rng_below(&gt_rng, (uint64_t)MT_MAX(n_cache / n_idx, 1)));
        if (pad == 2 || (pad == 1 && j % 7 == 3) || (pad == 3 && j >= 256 && j < 512)) {
            idx[j] = -1;
        }
        if (idx[j] >= 0) {
            cpu_idx[n_cpu++] = idx[j];
        }
    }
    if (mt_cpu_mla_absorbed(ql, qp, n_heads, RANK, ROPE, lat, kpe, cpu_idx, n_cpu, SCALE, want) !=
        MT_OK) {
        gt_bail("cpu mla");
    }
    mt_gpu_arena_reset(gt_arena);
    bool b16 = cdt == MT_DTYPE_BF16;
    float *d_ql = gt_put(ql, (size_t)n_heads * RANK * sizeof(float));
    float *d_qp = gt_put(qp, (size_t)n_heads * ROPE * sizeof(float));
    void *d_lat = b16 ? gt_put(lat16, (size_t)n_cache * RANK * 2)
                      : gt_put(lat, (size_t)n_cache * RANK * 4);
    void *d_kpe = b16 ? gt_put(kpe16, (size_t)n_cache * ROPE * 2)
                      : gt_put(kpe, (size_t)n_cache * ROPE * 4);
    int32_t *d_idx = dense ? NULL : gt_put(idx, (size_t)(n_idx + 1) * sizeof(int32_t));
    /* the work area as mt_gpu_mla_work_bytes sizes it, guarded: more splits than it sized show */
    size_t wbytes = mt_gpu_mla_work_bytes(n_heads, n_idx);
    void *work = gt_alloc_guarded(wbytes);
    float *d_o = gt_alloc((size_t)n_heads * RANK * sizeof(float));
    mt_status_t st = mt_gpu_mla_decode(d_ql, d_qp, n_heads, RANK, ROPE, cdt, d_lat, d_kpe, d_idx,
                                       n_idx, SCALE, work, d_o, NULL);
    const char *block = getenv("MT_MLA_DECODE_BLOCK");
    snprintf(name, sizeof(name), "MLA decode, %s cache, %d heads, %s %d of %d positions%s%s%s%s%s",
             b16 ? "bf16" : "fp32", n_heads, dense ? "dense" : "sparse", n_idx, n_cache,
             pad == 2   ? " all -1"
             : pad == 3 ? " with empty splits"
             : pad      ? " with -1 padding"
                        : "",
             far_scores ? ", scores near -130" : "", block != NULL ? ", block " : "",
             block != NULL ? block : "",
             !b16                          ? ""
             : !tensor_cores() || n_idx == 0 ? " (CUDA-core kernel)"
             : getenv("MT_MLA_TC_SMALL") == NULL ? " (tensor-core kernel)"
             : strcmp(getenv("MT_MLA_TC_SMALL"), "0") != 0 ? " (small tensor-core kernel)"
                                                           : " (large tensor-core kernel)");
    int past = st == MT_OK ? gt_guard_hits(work, wbytes) : 0;
    if (st != MT_OK) {
        tap_ok(false, "%s: launch failed: %s", name, mt_last_error());
    } else if (past > 0) {
        tap_ok(false, "%s: %d floats written past the work area of %zu bytes", name, past,
               wbytes);
    } else {
        gt_get(got, d_o, (size_t)n_heads * RANK * sizeof(float));
        mt_test_allclose(name, got, want, (size_t)n_heads * RANK, 2e-6f, 1e-4f);
    }
    free(got);
    free(want);
    free(cpu_idx);
    free(idx);
    free(kpe16);
    free(lat16);
    free(kpe);
    free(lat);
    free(qp);
    free(ql);
}

/*
 * A prompt's rows in one launch (mt_gpu_mla_prompt), BF16 cache, against the CPU row by row:
 * n_sel > 0: row r selects n_sel positions of its own (ld_idx n_sel + 3, every 5th row padded
 * with -1 at every 7th entry); n_sel <= 0: dense rows, row r over positions 0 .. n_first + r - 1.
 */
static void
check_prompt(int n_heads, int n_cache, int n_rows, int n_sel, int n_first)
{
    bool dense = n_sel <= 0;
    int64_t ld = dense ? 0 : n_sel + 3;
    size_t nq = (size_t)n_rows * n_heads;
    float *ql = gt_malloc(nq * RANK * sizeof(float));
    float *qp = gt_malloc(nq * ROPE * sizeof(float));
    float *lat = gt_malloc((size_t)n_cache * RANK * sizeof(float));
    float *kpe = gt_malloc((size_t)n_cache * ROPE * sizeof(float));
    uint16_t *lat16 = gt_malloc((size_t)n_cache * RANK * sizeof(uint16_t));
    uint16_t *kpe16 = gt_malloc((size_t)n_cache * ROPE * sizeof(uint16_t));
    int n_max = dense ? n_first + n_rows : n_sel;
    int32_t *idx = gt_malloc((size_t)MT_MAX(n_rows * ld, 1) * sizeof(int32_t));
    int32_t *cpu_idx = gt_malloc((size_t)n_max * sizeof(int32_t));
    float *want = gt_malloc(nq * RANK * sizeof(float));
    float *got = gt_malloc(nq * RANK * sizeof(float));
    char name[256];

    gt_fill(ql, nq * RANK, -0.3f, 0.3f);
    gt_fill(qp, nq * ROPE, -1.0f, 1.0f);
    gt_fill(lat, (size_t)n_cache * RANK, -1.0f, 1.0f);
    gt_fill(kpe, (size_t)n_cache * ROPE, -1.0f, 1.0f);
    for (size_t i = 0; i < (size_t)n_cache * RANK; i++) {
        lat[i] = bf16_round(lat[i], &lat16[i]);
    }
    for (size_t i = 0; i < (size_t)n_cache * ROPE; i++) {
        kpe[i] = bf16_round(kpe[i], &kpe16[i]);
    }
    for (int r = 0; r < n_rows; r++) {
        int n_cpu = 0;
        int n = dense ? n_first + r : n_sel;
        for (int j = 0; j < n; j++) {
            int32_t p = j;
            if (!dense) {
                p = (int32_t)(((int64_t)j * n_cache) / n_sel +
                              mt_rng_below(&gt_rng, (uint64_t)MT_MAX(n_cache / n_sel, 1)));
                p = r % 5 == 2 && j % 7 == 3 ? -1 : p;
                idx[r * ld + j] = p;
            }
            if (p >= 0) {
                cpu_idx[n_cpu++] = p;
            }
        }
        if (mt_cpu_mla_absorbed(ql + (size_t)r * n_heads * RANK, qp + (size_t)r * n_heads * ROPE,
                                n_heads, RANK, ROPE, lat, kpe, cpu_idx, n_cpu, SCALE,
                                want + (size_t)r * n_heads * RANK) != MT_OK) {
            gt_bail("cpu mla");
        }
    }
    mt_gpu_arena_reset(gt_arena);
    float *d_ql = gt_put(ql, nq * RANK * sizeof(float));
    float *d_qp = gt_put(qp, nq * ROPE * sizeof(float));
    void *d_lat = gt_put(lat16, (size_t)n_cache * RANK * 2);
    void *d_kpe = gt_put(kpe16, (size_t)n_cache * ROPE * 2);
    int32_t *d_idx = dense ? NULL : gt_put(idx, (size_t)n_rows * ld * sizeof(int32_t));
    float *d_o = gt_alloc(nq * RANK * sizeof(float));
    mt_status_t st = mt_gpu_mla_prompt(d_ql, d_qp, n_heads, RANK, ROPE, MT_DTYPE_BF16, d_lat,
                                       d_kpe, d_idx, ld, n_sel, n_first, n_rows, SCALE, d_o, NULL);
    const char *block = getenv("MT_MLA_PROMPT_BLOCK");
    char how[64];
    snprintf(how, sizeof(how), "%s%s", block ? " on blocks " : "", block ? block : "");
    if (dense) {
        snprintf(name, sizeof(name), "MLA prompt rows%s, bf16 cache, %d heads, %d dense rows of "
                 "%d to %d positions", how, n_heads, n_rows, n_first, n_first + n_rows - 1);
    } else {
        snprintf(name, sizeof(name), "MLA prompt rows%s, bf16 cache, %d heads, %d rows of %d "
                 "selected of %d positions, some padded", how, n_heads, n_rows, n_sel, n_cache);
    }
    if (st != MT_OK) {
        tap_ok(false, "%s: launch failed: %s", name, mt_last_error());
    } else {
        gt_get(got, d_o, nq * RANK * sizeof(float));
        /* P goes through the products as bf16 hi + lo, ~2^-17 of sum p |lat| <= 1 a value: with
           a few positions whose latents cancel, a few 1e-6 absolute (measured 3.7e-6 at 2) */
        mt_test_allclose(name, got, want, nq * RANK, 1e-5f, 1e-4f);
    }
    free(got);
    free(want);
    free(cpu_idx);
    free(idx);
    free(kpe16);
    free(lat16);
    free(kpe);
    free(lat);
    free(qp);
    free(ql);
}

/*
 * The kernel a BF16 cache gets: tensor cores on every sm_80+ GPU (the large kernel for rows of
 * more than 1,024 positions where a block may have its ~201 KB, sm_90 and sm_100; the small one,
 * ~87-97 KB, otherwise), the CUDA-core kernel under MT_MLA_CUDA_CORES=1, so that the checks below
 * test the kernel they name.
 */
static void
check_kernel_choice(bool forced_off)
{
    struct mt_gpu_info info;
    bool want;

    if (mt_gpu_device_info(0, &info) != MT_OK) {
        tap_ok(false, "device info: %s", mt_last_error());
        return;
    }
    want = !forced_off && info.sm_major >= 8;
    tap_ok(tensor_cores() == want, "sm_%d%d%s: a BF16 cache runs on the %s kernel", info.sm_major,
           info.sm_minor, forced_off ? " with MT_MLA_CUDA_CORES=1" : "",
           want ? "tensor-core" : "CUDA-core");
}

int
main(void)
{
    if (!gt_init(1024, 5)) {
        return tap_done();
    }
    check_kernel_choice(false);
    check_mla(MT_DTYPE_BF16, 128, 9000, 2048, false);
    check_mla(MT_DTYPE_F32, 128, 9000, 2048, false);
    check_mla(MT_DTYPE_BF16, 128, 3000, 2048, true);
    check_mla(MT_DTYPE_BF16, 128, 3000, 2048, 3);
    check_mla(MT_DTYPE_F32, 128, 3000, 2048, 3);
    far_scores = true; /* on each kernel: the default ones at long and short rows, fp32 */
    check_mla(MT_DTYPE_BF16, 128, 3000, 2048, true);
    check_mla(MT_DTYPE_BF16, 64, 100000, 100, true);
    check_mla(MT_DTYPE_F32, 128, 3000, 2048, true);
    far_scores = false;
    check_mla(MT_DTYPE_BF16, 128, 1500, -1500, false); /* dense causal, fewer than index_topk */
    check_mla(MT_DTYPE_F32, 16, 77, -77, false);
    check_mla(MT_DTYPE_BF16, 32, 1, -1, false);
    check_mla(MT_DTYPE_F32, 128, 10, 0, false);        /* no positions: zeros */
    check_mla(MT_DTYPE_BF16, 64, 100000, 100, false);
    /* more splits than the merge's one-warp path takes (64 of 128 positions on the large
       kernel; the small one below makes 32 of 256) */
    check_mla(MT_DTYPE_BF16, 128, 100000, 8191, false);
    check_mla(MT_DTYPE_F32, 128, 100000, 4000, false);
    /* 4,000 positions all -1: more splits than the merge's one-warp path, none with a position */
    check_mla(MT_DTYPE_F32, 128, 10000, 4000, 2);
    check_mla(MT_DTYPE_BF16, 128, 10000, 4000, 2);
    /* 40,000 positions: 625 splits, more than the merge's slow path takes in one pass of its
       512 threads, so wgt is refilled while a slow warp may still read the pass before */
    check_mla(MT_DTYPE_F32, 16, 50000, 40000, false);
    /* the small tensor-core kernel (what sm_80/86/89/120 run), forced where the large one fits:
       one split of one chunk, splits of 2 and 8 chunks, a last chunk cut short, padding, a
       row of one, many heads with few positions */
    setenv("MT_MLA_TC_SMALL", "1", 1);
    check_kernel_choice(false);
    check_mla(MT_DTYPE_BF16, 128, 9000, 2048, false);
    check_mla(MT_DTYPE_BF16, 128, 3000, 2048, true);
    check_mla(MT_DTYPE_BF16, 128, 1500, -1500, false);
    check_mla(MT_DTYPE_BF16, 128, 100000, 8191, false);
    check_mla(MT_DTYPE_BF16, 16, 77, -77, false);
    check_mla(MT_DTYPE_BF16, 32, 1, -1, false);
    check_mla(MT_DTYPE_BF16, 64, 100000, 100, true);
    check_mla(MT_DTYPE_BF16, 128, 3000, 2048, 3);
    far_scores = true;
    check_mla(MT_DTYPE_BF16, 128, 3000, 2048, true);
    far_scores = false;
    /* 1,000 positions: past TS_ONE_CHUNK_MAX chunks, so two chunks a split (the work area holds
       16 splits) */
    check_mla(MT_DTYPE_BF16, 128, 3000, 1000, true);
    /* and on the other blocks forced (MT_MLA_DECODE_BLOCK; 16 heads x 8 warps is the default):
       16 x 4, 32 x 8 (16 x 8 where the heads are not a multiple of 32) */
    static const char *const wide[] = {"16x4", "32x8"};
    for (int k = 0; k < 2; k++) {
        setenv("MT_MLA_DECODE_BLOCK", wide[k], 1);
        check_mla(MT_DTYPE_BF16, 128, 9000, 2048, false);
        check_mla(MT_DTYPE_BF16, 128, 3000, 2048, true);
        check_mla(MT_DTYPE_BF16, 128, 100000, 8191, false);
        check_mla(MT_DTYPE_BF16, 16, 77, -77, false);
        check_mla(MT_DTYPE_BF16, 96, 1, -1, false);
        check_mla(MT_DTYPE_BF16, 64, 100000, 100, true);
    }
    unsetenv("MT_MLA_DECODE_BLOCK");
    /* the large one at rows that default to the small one (sm_90/sm_100; elsewhere the small
       kernel again) */
    setenv("MT_MLA_TC_SMALL", "0", 1);
    check_mla(MT_DTYPE_BF16, 128, 3000, 1000, true);
    check_mla(MT_DTYPE_BF16, 16, 77, -77, false);
    check_mla(MT_DTYPE_BF16, 32, 1, -1, false);
    check_mla(MT_DTYPE_BF16, 64, 100000, 100, false);
    unsetenv("MT_MLA_TC_SMALL");
    /* the BF16 cache's CUDA-core kernel: what a GPU with less shared memory still would run,
       forced here */
    setenv("MT_MLA_CUDA_CORES", "1", 1);
    check_kernel_choice(true);
    check_mla(MT_DTYPE_BF16, 128, 9000, 2048, false);
    check_mla(MT_DTYPE_BF16, 128, 3000, 2048, true);
    check_mla(MT_DTYPE_BF16, 32, 1, -1, false);
    far_scores = true;
    check_mla(MT_DTYPE_BF16, 128, 3000, 2048, true);
    far_scores = false;
    unsetenv("MT_MLA_CUDA_CORES");
    /* a prompt's rows in one launch (where the tensor-core kernels run): dense rows across
       chunk ends (1 .. 40 positions) and long ones (63-64 chunks), selected rows of V3.2's
       2,048 and of 3,000 (94 chunks, the last cut short), few heads; on the blocks mla.cu
       picks (32 heads x 8 warps where they fit, else 16 x 8: 16 heads here), then on 16 x 4
       and 16 x 8 forced */
    if (tensor_cores()) {
        check_prompt(128, 100, 40, 0, 1);
        check_prompt(128, 2100, 4, 0, 2014);
        check_prompt(128, 9000, 6, 2048, 0);
        check_prompt(16, 100000, 3, 3000, 0);
        check_prompt(32, 500, 11, 33, 0);
        setenv("MT_MLA_PROMPT_BLOCK", "16x4", 1);
        check_prompt(128, 100, 40, 0, 1);
        check_prompt(128, 9000, 6, 2048, 0);
        check_prompt(32, 500, 11, 33, 0);
        setenv("MT_MLA_PROMPT_BLOCK", "16x8", 1);
        check_prompt(128, 100, 40, 0, 1);
        check_prompt(128, 2100, 4, 0, 2014);
        check_prompt(64, 100000, 3, 3000, 0);
        check_prompt(96, 500, 11, 33, 0);
        unsetenv("MT_MLA_PROMPT_BLOCK");
        tap_ok(mt_gpu_mla_prompt(gt_alloc(16), gt_alloc(16), 128, RANK, ROPE, MT_DTYPE_F32,
                                 gt_alloc(16), gt_alloc(16), NULL, 0, 0, 1, 1, SCALE,
                                 gt_alloc(16), NULL) == MT_ERR_INVAL,
               "MLA prompt rows refuse an fp32 cache: %s", mt_last_error());
    }
    /* no positions with a BF16 cache and no cache at all: nothing to read (the tensor-core
       kernel would stage from NULL; the CUDA-core kernel takes it) */
    {
        float *o = memset(gt_malloc(128 * 512 * sizeof(float)), 0, 128 * 512 * sizeof(float));
        float *d_ql = gt_put(o, 128 * 512 * sizeof(float));
        float *d_qp = gt_put(o, 128 * 64 * sizeof(float));
        float *d_o = gt_alloc(128 * 512 * sizeof(float));
        void *work = gt_alloc(mt_gpu_mla_work_bytes(128, 0));
        bool zeros = true;

        mt_status_t st = mt_gpu_mla_decode(d_ql, d_qp, 128, 512, 64, MT_DTYPE_BF16, NULL, NULL,
                                           NULL, 0, 0.1f, work, d_o, NULL);
        if (st == MT_OK) {
            gt_get(o, d_o, 128 * 512 * sizeof(float));
            for (int i = 0; i < 128 * 512; i++) {
                zeros = zeros && o[i] == 0.0f;
            }
        }
        tap_ok(st == MT_OK && zeros, "BF16 cache, no positions, no cache: zeros (%s)",
               st == MT_OK ? "ran" : mt_last_error());
        free(o);
    }
    mt_gpu_arena_destroy(gt_arena);
    return tap_done();
}
