/* SPDX-License-Identifier: MIT */
/*
 * test_gpu_device.c - the device self-test, device queries, the device arena's budget and its
 * messages, and entry points refusing bad shapes before they launch anything.
 */
#include <config.h>

#include "tests/gpu_test.h"

#include <string.h>

int
main(void)
{
    struct mt_gpu_info info;
    struct mt_gpu_arena *a = NULL;
    void *p = NULL;
    void *q = NULL;
    mt_status_t st;

    if (!gt_init(16, 1)) {
        return tap_done();
    }
    tap_ok(mt_gpu_bench_selftest(0) == MT_OK,
           "device self-test: read kernel sum and D2D, D2H, H2D copies match the host");
    st = mt_gpu_device_info(0, &info);
    tap_ok(st == MT_OK && info.total_mem > 0 && info.sm_major >= 8 && info.multiprocessors > 0,
           "device 0: %s, sm_%d%d, %d SMs, %zu MiB", info.name, info.sm_major, info.sm_minor,
           info.multiprocessors, info.total_mem >> 20);
    tap_ok(mt_gpu_device_none_reason()[0] == '\0', "a found device leaves no 'none' reason");

    mt_log_set_quiet(true);
    st = mt_gpu_arena_create(0, 64u << 20, 32u << 20, &a);
    tap_ok(st == MT_ERR_NOMEM && strstr(mt_last_error(), "64.0 MiB") != NULL &&
               strstr(mt_last_error(), "32.0 MiB") != NULL,
           "an arena over the budget is refused, naming both sizes: %s", mt_last_error());
    st = mt_gpu_arena_create(0, 1u << 20, 32u << 20, &a);
    tap_ok(st == MT_OK, "a 1 MiB arena under a 32 MiB budget is created");
    if (st == MT_OK) {
        st = mt_gpu_arena_alloc(a, 1000, "first", &p);
        tap_ok(st == MT_OK && (uintptr_t)p % 256 == 0 && mt_gpu_arena_used(a) == 1024,
               "a 1000-byte allocation is 256-aligned and uses 1024 bytes");
        st = mt_gpu_arena_alloc(a, 2u << 20, "kv cache", &q);
        tap_ok(st == MT_ERR_NOMEM && strstr(mt_last_error(), "'kv cache'") != NULL &&
                   strstr(mt_last_error(), "would need at least 2.0 MiB") != NULL,
               "an allocation that does not fit names the tensor and the size needed: %s",
               mt_last_error());
        mt_gpu_arena_reset(a);
        tap_ok(mt_gpu_arena_used(a) == 0 && mt_gpu_arena_size(a) == (1u << 20),
               "reset empties the arena and keeps its size");
    }
    mt_gpu_arena_destroy(a);
    mt_gpu_arena_destroy(NULL);

    /* bad shapes are refused before any launch */
    struct mt_gpu_weight w = {MT_DTYPE_F8_E4M3, gt_alloc(4096), (const float *)gt_alloc(256), 16,
                              100, false};
    float *x = gt_alloc(4096);
    tap_ok(mt_gpu_linear(&w, x, 1, x, NULL) == MT_ERR_INVAL,
           "FP8 linear with 100 columns (not a multiple of 16) is MT_ERR_INVAL");
    w.cols = 128;
    tap_ok(mt_gpu_linear(&w, x, 9, x, NULL) == MT_ERR_INVAL,
           "linear with 9 tokens is MT_ERR_INVAL");
    tap_ok(mt_gpu_index_scores_fp8((const uint8_t *)x, x, 32, 128, (const uint8_t *)x, x, 10, 0, x,
                                   NULL) == MT_ERR_INVAL,
           "FP8 index scores with 32 heads is MT_ERR_INVAL");
    tap_ok(mt_gpu_topk(x, 100, 1, 100, NULL, 5000, (int32_t *)x, NULL, NULL, NULL) == MT_ERR_INVAL,
           "top-5000 (over the 4096 limit) is MT_ERR_INVAL");
    tap_ok(mt_gpu_mla_decode(x, x, 20, 512, 64, MT_DTYPE_BF16, x, x, NULL, 1, 1.0f, x, x, NULL) ==
               MT_ERR_INVAL,
           "MLA decode with 20 heads (not a multiple of 16) is MT_ERR_INVAL");
    mt_log_set_quiet(false);
    tap_ok(mt_gpu_stream_sync(NULL) == MT_OK, "nothing was launched by the refused calls");
    mt_gpu_arena_destroy(gt_arena);
    return tap_done();
}
