/* SPDX-License-Identifier: MIT */
/*
 * gpu_test.h - what every tests/test_gpu_*.c needs: skip without a device, one device arena for
 * the test's buffers, host<->device copies that bail out on failure, random inputs.
 *
 * A failure of this scaffolding (no memory, a failed copy) is not a test result: it prints
 * "Bail out!" and exits 1, which the TAP driver reports as an ERROR.
 */
#ifndef MT_TESTS_GPU_TEST_H
#define MT_TESTS_GPU_TEST_H

#include "kernels/kernels.h"
#include "kernels/ops.h"
#include "runtime/base/rng.h"
#include "tests/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct mt_gpu_arena *gt_arena;
static struct mt_rng gt_rng;

static __attribute__((unused)) void
gt_bail(const char *what)
{
    printf("Bail out! %s: %s\n", what, mt_last_error());
    fflush(stdout);
    exit(1);
}

/* false (and a TAP skip-all line) when there is no device; else an arena of arena_mib MiB. */
static __attribute__((unused)) bool
gt_init(size_t arena_mib, uint64_t seed)
{
    int n = 0;

    mt_rng_init(&gt_rng, seed);
    if (mt_gpu_device_count(&n) != MT_OK || n == 0) {
        char why[300];
        snprintf(why, sizeof(why), "no CUDA device (%s)", mt_gpu_device_none_reason());
        tap_skip_all(n == 0 && mt_gpu_device_none_reason()[0] == '\0' ? "no CUDA device" : why);
        return false;
    }
    if (mt_gpu_arena_create(0, arena_mib << 20, 0, &gt_arena) != MT_OK) {
        gt_bail("device arena");
    }
    return true;
}

static __attribute__((unused)) void *
gt_alloc(size_t bytes)
{
    void *p = NULL;

    if (mt_gpu_arena_alloc(gt_arena, bytes, "test buffer", &p) != MT_OK) {
        gt_bail("device buffer");
    }
    return p;
}

static __attribute__((unused)) void *
gt_put(const void *host, size_t bytes)
{
    void *p = gt_alloc(bytes);

    if (mt_gpu_copy_to_device(p, host, bytes) != MT_OK) {
        gt_bail("copy to device");
    }
    return p;
}

static __attribute__((unused)) void
gt_get(void *host, const void *dev, size_t bytes)
{
    if (mt_gpu_stream_sync(NULL) != MT_OK || mt_gpu_copy_to_host(host, dev, bytes) != MT_OK) {
        gt_bail("copy to host");
    }
}

/*
 * A buffer with a guard of GT_GUARD floats after its `bytes`, each GT_GUARD_VALUE: a kernel that
 * writes past the end of an output shows there, where it would otherwise go unseen (the next
 * buffer in the arena, or nothing) or race with the right write (gt_guard_hits counts them).
 */
#define GT_GUARD 256
#define GT_GUARD_VALUE 12345.0f

static __attribute__((unused)) void *
gt_alloc_guarded(size_t bytes)
{
    float guard[GT_GUARD];
    void *p = gt_alloc(bytes + sizeof(guard));

    for (int i = 0; i < GT_GUARD; i++) {
        guard[i] = GT_GUARD_VALUE;
    }
    if (mt_gpu_copy_to_device((char *)p + bytes, guard, sizeof(guard)) != MT_OK) {
        gt_bail("copy to device");
    }
    return p;
}

/* gt_alloc_guarded's buffer filled with `bytes` from host. */
static __attribute__((unused)) void *
gt_put_guarded(const void *host, size_t bytes)
{
    void *p = gt_alloc_guarded(bytes);

    if (mt_gpu_copy_to_device(p, host, bytes) != MT_OK) {
        gt_bail("copy to device");
    }
    return p;
}

/* How many of the guard's floats after a gt_alloc_guarded buffer of `bytes` were written. */
static __attribute__((unused)) int
gt_guard_hits(const void *p, size_t bytes)
{
    float guard[GT_GUARD];
    int hits = 0;

    gt_get(guard, (const char *)p + bytes, sizeof(guard));
    for (int i = 0; i < GT_GUARD; i++) {
        hits += guard[i] != GT_GUARD_VALUE; /* (a NaN written counts too) */
    }
    return hits;
}

static __attribute__((unused)) void *
gt_malloc(size_t bytes)
{
    void *p = malloc(bytes > 0 ? bytes : 1);

    if (p == NULL) {
        printf("Bail out! cannot allocate %zu host bytes\n", bytes);
        exit(1);
    }
    return p;
}

/* Uniform in [lo, hi). */
static __attribute__((unused)) float
gt_uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)mt_rng_uniform(&gt_rng);
}

static __attribute__((unused)) void
gt_fill(float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) {
        x[i] = gt_uniform(lo, hi);
    }
}

/* Random e4m3 bytes, never NaN (0x7f, 0xff). */
static __attribute__((unused)) void
gt_fill_fp8(uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t r = mt_rng_next(&gt_rng);
        for (size_t j = 0; j < 8 && i + j < n; j++) {
            uint8_t v = (uint8_t)(r >> (8 * j));
            b[i + j] = (v & 0x7f) == 0x7f ? (uint8_t)(v ^ 1) : v;
        }
    }
}

static __attribute__((unused)) void
gt_fill_bf16(uint16_t *b, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) {
        float f = gt_uniform(lo, hi);
        uint32_t u;
        memcpy(&u, &f, sizeof(u));
        b[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}

#endif /* MT_TESTS_GPU_TEST_H */
