/* SPDX-License-Identifier: MIT */
/*
 * flops.c - fp32 FMA and AMX BF16 peak rates of all cores at once (cpu/flops.h).
 */
#include <config.h>

#include "cpu/flops.h"

#include "cpu/amx_config.h"

#include "cpu/isa.h"
#include "cpu/team.h"
#include "runtime/base/clock.h"

#include <errno.h>
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Each FMA loop keeps enough independent accumulators to cover the FMA latency on 2 ports. */
#define FMA_ACC 16

__attribute__((target("avx512f"))) static float
fma_loop_avx512(long iters)
{
    __m512 acc[FMA_ACC];
    __m512 m = _mm512_set1_ps(0.9999999f);
    __m512 add = _mm512_set1_ps(1e-7f);
    __m512 sum = _mm512_setzero_ps();

    for (int k = 0; k < FMA_ACC; k++) {
        acc[k] = _mm512_set1_ps((float)k);
    }
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
        for (int k = 0; k < FMA_ACC; k++) {
            acc[k] = _mm512_fmadd_ps(acc[k], m, add);
        }
    }
    for (int k = 0; k < FMA_ACC; k++) {
        sum = _mm512_add_ps(sum, acc[k]);
    }
    return _mm512_reduce_add_ps(sum);
}

#define FMA_ACC_AVX2 12

__attribute__((target("avx2,fma"))) static float
fma_loop_avx2(long iters)
{
    __m256 acc[FMA_ACC_AVX2];
    __m256 m = _mm256_set1_ps(0.9999999f);
    __m256 add = _mm256_set1_ps(1e-7f);
    float out[8];
    float s = 0.0f;

    for (int k = 0; k < FMA_ACC_AVX2; k++) {
        acc[k] = _mm256_set1_ps((float)k);
    }
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int k = 0; k < FMA_ACC_AVX2; k++) {
            acc[k] = _mm256_fmadd_ps(acc[k], m, add);
        }
    }
    for (int k = 1; k < FMA_ACC_AVX2; k++) {
        acc[0] = _mm256_add_ps(acc[0], acc[k]);
    }
    _mm256_storeu_ps(out, acc[0]);
    for (int i = 0; i < 8; i++) {
        s += out[i];
    }
    return s;
}

static float
fma_loop_scalar(long iters)
{
    float acc[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    float s = 0.0f;

    for (long it = 0; it < iters; it++) {
        for (int k = 0; k < 8; k++) {
            acc[k] = acc[k] * 0.9999999f + 1e-7f;
        }
    }
    for (int k = 0; k < 8; k++) {
        s += acc[k];
    }
    return s;
}

/* The widest FMA loop this CPU runs, and its flops per iteration. */
static float (*fma_pick(double *flops_per_iter_out))(long)
{
    struct mt_cpu_isa isa;

    mt_cpu_isa_detect(&isa);
    if (isa.avx512f) {
        *flops_per_iter_out = FMA_ACC * 16 * 2;
        return fma_loop_avx512;
    }
    if (isa.avx2 && isa.fma) {
        *flops_per_iter_out = FMA_ACC_AVX2 * 8 * 2;
        return fma_loop_avx2;
    }
    *flops_per_iter_out = 8 * 2;
    return fma_loop_scalar;
}

struct rate_job {
    struct mt_cpu_team *team;
    float (*loop)(long);
    long iters;
    double t0;
    double el;
    float sink[1024];
};

static void
rate_job_run(void *arg, int t, int n)
{
    struct rate_job *j = arg;
    float v = j->loop(j->iters / 16 + 1); /* warm-up: clocks settle at their vector frequency */

    mt_cpu_team_barrier(j->team);
    if (t == 0) {
        j->t0 = mt_clock_now();
    }
    v += j->loop(j->iters);
    mt_cpu_team_barrier(j->team);
    if (t == 0) {
        j->el = mt_clock_now() - j->t0;
    }
    j->sink[t % 1024] += v;
    (void)n;
}

/* Calibrate loop(iters) on one thread for ~20 ms, scale to `seconds`. */
static void
calibrate_one(struct mt_cpu_team *team, float (*loop)(long), double seconds, long *iters_out)
{
    (void)team;
    long iters = 1 << 16;
    double el;
    volatile float sink = 0.0f;

    for (;;) {
        double t0 = mt_clock_now();

        sink += loop(iters);
        el = mt_clock_now() - t0;
        if (el > 0.02 || iters > (1L << 40)) {
            break;
        }
        iters *= 4;
    }
    (void)sink;
    *iters_out = (long)((double)iters * seconds / el) + 1;
}

/*
 * Run loop(iters) on `threads` pinned cores at once for about `seconds`; the rate counts
 * flops_per_iter per iteration per thread. Calibrated on one thread first.
 */
static mt_status_t
rate_all_cores(int threads, float (*loop)(long), double flops_per_iter, double seconds,
               double *gflops_out)
{
    struct mt_cpu_team *team;
    struct rate_job *j;
    mt_status_t st;

    st = mt_cpu_team_create(-1, threads, &team);
    if (st != MT_OK) {
        return st;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        mt_cpu_team_destroy(team);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a rate job");
    }
    j->team = team;
    j->loop = loop;
    calibrate_one(team, loop, seconds, &j->iters);
    mt_cpu_team_run(team, 0, rate_job_run, j);
    *gflops_out = flops_per_iter * (double)j->iters * mt_cpu_team_size(team) / j->el * 1e-9;
    free(j);
    mt_cpu_team_destroy(team);
    return MT_OK;
}

mt_status_t
mt_cpu_fma_gflops_n(int threads, double seconds, double *gflops_out)
{
    double flops_per_iter;
    float (*loop)(long) = fma_pick(&flops_per_iter);

    return rate_all_cores(threads, loop, flops_per_iter, seconds, gflops_out);
}

mt_status_t
mt_cpu_fma_gflops(double seconds, double *gflops_out)
{
    return mt_cpu_fma_gflops_n(0, seconds, gflops_out);
}

/* The AMX palette-1 configuration: 8 tiles of 16 rows x 64 bytes. */
/* C tiles 0-3 (16x16 fp32) += A tiles 4-5 (16x32 bf16) * B tiles 6-7: 4 x 16384 flops/iter. */
__attribute__((target("amx-tile,amx-bf16"))) static float
amx_loop(long iters)
{
    static const uint16_t zeros[512] __attribute__((aligned(64)));
    float out[256] __attribute__((aligned(64)));

    mt_amx_load_tiles_16x64();
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, zeros, 64);
    _tile_loadd(5, zeros, 64);
    _tile_loadd(6, zeros, 64);
    _tile_loadd(7, zeros, 64);
    for (long it = 0; it < iters; it++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, out, 64);
    _tile_release();
    return out[0];
}

mt_status_t
mt_cpu_amx_bf16_gflops_n(int threads, double seconds, double *gflops_out)
{
    struct mt_cpu_isa isa;

    mt_cpu_isa_detect(&isa);
    if (!isa.amx_tile || !isa.amx_bf16) {
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "this CPU (or its OS) has no AMX-BF16");
    }
    if (!mt_cpu_amx_enable()) {
        return mt_fail(MT_ERR_UNSUPPORTED, errno, "the kernel refuses the AMX tile state");
    }
    return rate_all_cores(threads, amx_loop, 4.0 * 16 * 16 * 32 * 2, seconds, gflops_out);
}

mt_status_t
mt_cpu_amx_bf16_gflops(double seconds, double *gflops_out)
{
    return mt_cpu_amx_bf16_gflops_n(0, seconds, gflops_out);
}

/*
 * The loop above with the tile loads a prefill kernel needs: per 4 TDPBF16PS, in amx_shape 0
 * (the 2 x 2 block) 2 A tiles from a region of amx_a_bytes and 2 B tiles from one of
 * amx_b_bytes, each walked 2 KiB a step and wrapped (one buffer shared by all threads, read
 * only: every core caches its own copy). The region sizes pick where the loads come from (16
 * KiB: L1; 1 MiB: L2), so the rate tells what the block costs by itself, apart from any
 * kernel's other work. Shapes 1 and 2: a 1 x 2 block (3 loads per 2 products) reloading the
 * same 3 tile registers every step, or alternating between two sets of them, so the next
 * step's loads have registers no product still reads: if 2 beats 1, loads wait only on the
 * registers (no renaming) and double buffering hides them. Shape 3: the 2 x 2 block with each
 * load just before its first product (products start after 2 loads, not 4); shape 4: its 4
 * loads alone (the rate then counts the products they would feed): if 4 is about as fast as the
 * no-load rate and 0 half of it, loads and products take turns rather than overlap. Set before
 * the run (the loop's signature has room for no more).
 */
static const uint16_t *amx_buf;
static size_t amx_a_bytes;
static size_t amx_b_bytes;
static int amx_shape;

__attribute__((target("amx-tile,amx-bf16"))) static float
amx_loop_loads(long iters)
{
    float out[256] __attribute__((aligned(64)));
    const char *a = (const char *)amx_buf;
    const char *b = a + amx_a_bytes;
    size_t ao = 0;
    size_t bo = 0;

    mt_amx_load_tiles_16x64();
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    if (amx_shape == 2) { /* the first X set of the double-buffered 1 x 2 block */
        _tile_loadd(4, a, 64);
        _tile_loadd(6, b, 64);
        _tile_loadd(7, b + 1024, 64);
    }
    for (long it = 0; it < iters; it++) {
        if (amx_shape == 0) { /* 2 x 2: C 0-3, A 4-5, B 6-7 */
            _tile_loadd(4, a + ao, 64);
            _tile_loadd(5, a + ao + 1024, 64);
            _tile_loadd(6, b + bo, 64);
            _tile_loadd(7, b + bo + 1024, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        } else if (amx_shape == 1) { /* 1 x 2, two steps: C 0-1, A 4, B 6-7 reloaded */
            _tile_loadd(4, a + ao, 64);
            _tile_loadd(6, b + bo, 64);
            _tile_loadd(7, b + bo + 1024, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_loadd(4, a + ao + 1024, 64);
            _tile_loadd(6, b + bo + 512, 64);
            _tile_loadd(7, b + bo + 1536, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
        } else if (amx_shape == 3) { /* 2 x 2, each load just before its first product */
            _tile_loadd(4, a + ao, 64);
            _tile_loadd(6, b + bo, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_loadd(7, b + bo + 1024, 64);
            _tile_dpbf16ps(1, 4, 7);
            _tile_loadd(5, a + ao + 1024, 64);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        } else if (amx_shape == 4) { /* the 2 x 2 block's 4 loads alone, no products */
            _tile_loadd(4, a + ao, 64);
            _tile_loadd(5, a + ao + 1024, 64);
            _tile_loadd(6, b + bo, 64);
            _tile_loadd(7, b + bo + 1024, 64);
        } else { /* 1 x 2 double-buffered: the Y set (A 5, B 2-3) loads while X computes */
            _tile_loadd(5, a + ao + 1024, 64);
            _tile_loadd(2, b + bo + 512, 64);
            _tile_loadd(3, b + bo + 1536, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_loadd(4, a + ao, 64);
            _tile_loadd(6, b + bo, 64);
            _tile_loadd(7, b + bo + 1024, 64);
            _tile_dpbf16ps(0, 5, 2);
            _tile_dpbf16ps(1, 5, 3);
        }
        ao = ao + 2048 >= amx_a_bytes ? 0 : ao + 2048;
        bo = bo + 2048 >= amx_b_bytes ? 0 : bo + 2048;
    }
    _tile_stored(0, out, 64);
    _tile_release();
    return out[0];
}

mt_status_t
mt_cpu_amx_bf16_loads_gflops_n(int threads, int shape, size_t a_bytes, size_t b_bytes,
                               double seconds, double *gflops_out)
{
    struct mt_cpu_isa isa;
    mt_status_t st;
    uint16_t *buf;

    mt_cpu_isa_detect(&isa);
    if (!isa.amx_tile || !isa.amx_bf16) {
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "this CPU (or its OS) has no AMX-BF16");
    }
    if (!mt_cpu_amx_enable()) {
        return mt_fail(MT_ERR_UNSUPPORTED, errno, "the kernel refuses the AMX tile state");
    }
    a_bytes = MT_MAX(a_bytes / 2048, 1) * 2048;
    b_bytes = MT_MAX(b_bytes / 2048, 1) * 2048;
    /* + 1 KiB: the 1 x 2 shapes read B tiles at bo + 1536, up to 512 bytes past b_bytes */
    size_t total = a_bytes + b_bytes + 1024;
    buf = aligned_alloc(64, total);
    if (buf == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %zu bytes of tiles", total);
    }
    memset(buf, 0, total); /* bf16 zeros; the tile unit's speed ignores values */
    amx_buf = buf;
    amx_a_bytes = a_bytes;
    amx_b_bytes = b_bytes;
    amx_shape = shape;
    st = rate_all_cores(threads, amx_loop_loads, 4.0 * 16 * 16 * 32 * 2, seconds, gflops_out);
    amx_buf = NULL;
    free(buf);
    return st;
}
