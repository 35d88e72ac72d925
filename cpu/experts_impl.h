/* SPDX-License-Identifier: MIT */
/*
 * experts_impl.h - what each ISA's expert kernels provide to cpu/experts.c (internal).
 */
#ifndef MT_CPU_EXPERTS_IMPL_H
#define MT_CPU_EXPERTS_IMPL_H

#include <stdint.h>

#include "cpu/experts.h"
#include "cpu/ref_ops.h"

/*
 * y[t * ldy + (r - r0)] = W[r, :] . x[t * ldx + :] for r0 <= r < r1, t < m, fp32 accumulation.
 * FP8: [r0, r1) lies inside one 128-row scale block. cols is a multiple of the ISA's vector step
 * (32), checked by the caller (mt_cpu_kernels_fit).
 */
typedef void (*mt_cpu_rows_fn)(const struct mt_cpu_weight *w, int64_t r0, int64_t r1,
                               const float *x, int64_t ldx, int m, float *y, int64_t ldy);

struct mt_cpu_kernels {
    const char *name;
    mt_cpu_rows_fn rows_fp8; /* decode tiles (NULL: the AVX-512 ones) */
    mt_cpu_rows_fn rows_bf16;
    /* prefill, FP8 and BF16, m >= MT_CPU_PREFILL_MIN_M tokens in one call (no 32-token blocks);
     * NULL where the family has none */
    mt_cpu_rows_fn rows_many;
    /* prefill on an input packed once for all threads (NULL where rows_many is): pack_bytes of
     * m tokens, pack of token blocks [b0, b1) (MT_CPU_PACK_TOKENS each; any thread, any order),
     * then rows_packed as rows_many on the packed input */
    size_t (*pack_bytes)(int m, int64_t cols);
    void (*pack)(const float *x, int64_t ldx, int m, int64_t cols, int b0, int b1, void *xp);
    void (*rows_packed)(const struct mt_cpu_weight *w, int64_t r0, int64_t r1, const void *xp,
                        int m, float *y, int64_t ldy);
    /* h[i] = SiLU(g[i]) x u[i] for i < n (NULL: the scalar loop of mt_cpu_silu) */
    void (*swiglu)(const float *g, const float *u, float *h, int64_t n);
};

/* The AVX-512 swiglu (experts_avx512.c), also the amx family's. */
void mt_cpu_swiglu_avx512(const float *g, const float *u, float *h, int64_t n);

/* Tokens per block of a packed input (the AMX tile's 16 token columns), and the blocks of m
 * tokens (in pairs: the kernel's C blocks are 32 tokens wide). */
#define MT_CPU_PACK_TOKENS 16
#define MT_CPU_PACK_BLOCKS(m) (((m) + 31) / 32 * 2)

/*
 * The AMX kernel of cpu/experts_amx_tiles.c (mt_cpu_experts_amx_tiles): pack tokens [n0, n1)
 * (multiples of 16, n1 <= m rounded up to 32) of x[m, cols] into xp (64-byte aligned, the bytes
 * of the other AMX layout); rows [r0, r1) (<= 128) of w on that input, K chunks of kc, the tile
 * configuration loaded by the caller.
 */
void mt_cpu_amx_tiles_pack(const float *x, int64_t ldx, int m, int64_t cols, int n0, int n1,
                           uint16_t *xp);
void mt_cpu_amx_tiles_rows(const struct mt_cpu_weight *w, int64_t r0, int64_t r1,
                           const uint16_t *xp, int m, float *y, int64_t ldy, int64_t kc);

/*
 * The AMX kernel of cpu/experts_amx_small.c for few tokens (m <= mt_cpu_experts_amx_small):
 * whether it takes w (FP8, columns a multiple of 64, AVX512-VBMI), and rows [r0, r1) (one
 * 128-row block) of w on xp as mt_cpu_amx_tiles_pack packs it, the tile configuration loaded by
 * the caller.
 */
bool mt_cpu_amx_small_fits(const struct mt_cpu_weight *w);
void mt_cpu_amx_small_rows(const struct mt_cpu_weight *w, int64_t r0, int64_t r1,
                           const uint16_t *xp, int m, float *y, int64_t ldy);

/* The bf16 bytes of e4m3 magnitudes 0..127 (hi[v] << 8 | lo[v]; 0x7f read as 480), 64-byte
 * aligned tables for VPERMI2B (cpu/experts_dot.c). */
void mt_cpu_e4m3_bf16_lut(const uint8_t **hi, const uint8_t **lo);

/*
 * A kernel's per-thread workspace: bytes (rounded up to 64) aligned to 64, or NULL when memory is
 * short. A NULL is counted, the kernel returns without computing, and the layer fails with
 * MT_ERR_NOMEM (mt_cpu_moe_wait, mt_cpu_expert_run): an abort in a worker thread would end the
 * whole process, a server's too. Free with free().
 */
void *mt_cpu_ws_alloc(size_t bytes);

/* *p holds at least bytes (*cap: what it holds), grown by mt_cpu_ws_alloc where it did not;
 * false (and *p as it was) when memory is short. */
bool mt_cpu_ws_grow(void **p, size_t *cap, size_t bytes);

/*
 * Free the calling thread's workspaces of experts_dot.c, experts_amx.c, experts_amx_tiles.c and
 * experts_amx_small.c.
 * mt_cpu_ws_alloc has them run when a thread that allocated exits (a team's workers end with the
 * team: what they held would be lost).
 */
void mt_cpu_dot_ws_free(void);
void mt_cpu_amx_ws_free(void);
void mt_cpu_amx_tiles_ws_free(void);
void mt_cpu_amx_small_ws_free(void);

/*
 * Bumped at every layer run and expert run: kernels that cache a converted copy of their input
 * per thread (experts_amx.c) key it by this, since a caller may reuse an input buffer.
 */
extern _Atomic uint64_t mt_cpu_experts_gen;

extern const struct mt_cpu_kernels mt_cpu_kernels_scalar;
extern const struct mt_cpu_kernels mt_cpu_kernels_avx2;
extern const struct mt_cpu_kernels mt_cpu_kernels_avx512;
extern const struct mt_cpu_kernels mt_cpu_kernels_amx;
extern const struct mt_cpu_kernels mt_cpu_kernels_dot; /* AVX512-BF16 + VBMI decode */
extern const struct mt_cpu_kernels mt_cpu_kernels_lut; /* AVX512-VBMI table FP8 widening */

#endif /* MT_CPU_EXPERTS_IMPL_H */
