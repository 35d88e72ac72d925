/* SPDX-License-Identifier: MIT */
/*
 * topk.cu - exact top-k of long score rows (the indexer's 2048 of up to 160K), one block a row.
 *
 * The one idea: rank by a 64-bit key with no ties, (ordered float bits) << 32 | ~index, so
 * "larger score, then smaller index" (mt_cpu_topk's rule) is just "larger key", and a radix
 * select on 11-bit digits finds the exact k-th key: a histogram of the current digit among the
 * elements that share the digits already decided, the bin where the count from the top crosses
 * k, everything above it emitted, the bin itself refined by the next digit. The pass that emits
 * level l also builds level l+1's histogram and, once the refined bin fits, copies its elements
 * into shared memory, so random scores cost 2-3 reads of the row; exact ties add passes on the
 * index digits (over shared memory once the tied set fits), never a wrong or truncated set.
 * NaN sorts below -inf and -0.0 equals +0.0, as in the CPU's comparison.
 *
 * That kernel (one block a row) serves several rows at once (prefill) and rows given by lens. One
 * decode row with a scratch buffer instead goes to the grid kernel below, which spreads the same
 * radix select over many SMs: one block took 96-139 us for 2048 of 131072 on the H200, bound by
 * the instructions per element on its one SM, against a 20 us target. Such a row of at most
 * 6,144 keys goes to a third kernel (topk_short_kernel, last section), held in one block's
 * registers.
 */
#include <config.h>

#include "kernels/ops.h"
#include "kernels/cuda_check.cuh"
#include "kernels/pdl.cuh"

#include <cooperative_groups.h>
#include <stdlib.h>

namespace cg = cooperative_groups;

#define TOPK_THREADS 1024
#define TOPK_BINS 2048   /* 11-bit digits: levels at bits 53, 42, 31, 20, 9 and the last 9 */
#define TOPK_LEVELS 6
#define TOPK_CAP 5120    /* candidates kept in shared memory (two buffers of 8-byte keys) */
#define TOPK_MAX_K 4096
#define TOPK_PREFETCH 16 /* row elements each thread loads before using any (latency hiding) */

struct topk_shared {
    unsigned hist[2][TOPK_BINS];
    unsigned long long buf[2][TOPK_CAP];
    unsigned warp_tot[TOPK_THREADS / 32];
    unsigned n_buf[2];
    unsigned n_out;
    unsigned bin;
    unsigned above;
    unsigned cnt;
};

static __device__ __forceinline__ unsigned long long
topk_key(float v, uint32_t idx)
{
    uint32_t u = __float_as_uint(v);
    uint32_t o;

    if (v != v) {
        o = 0; /* NaN: below every number */
    } else if (v == 0.0f) {
        o = 0x80000000u; /* -0.0 == +0.0 */
    } else {
        o = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    }
    return ((unsigned long long)o << 32) | (uint32_t)~idx;
}

static __device__ __forceinline__ int
level_shift(int l)
{
    return l < TOPK_LEVELS - 1 ? 53 - 11 * l : 0;
}

static __device__ __forceinline__ unsigned
digit(unsigned long long key, int l)
{
    return (unsigned)(key >> level_shift(l)) & (l < TOPK_LEVELS - 1 ? 0x7ffu : 0x1ffu);
}

/* Histogram add of d for the lanes with `valid`, one atomic when the warp agrees on d. */
static __device__ __forceinline__ void
hist_add(unsigned *h, bool valid, unsigned d)
{
    unsigned vm = __ballot_sync(0xffffffffu, valid);

    if (vm == 0) {
        return;
    }
    int leader = __ffs(vm) - 1;
    unsigned d0 = __shfl_sync(0xffffffffu, d, leader);
    if (__all_sync(0xffffffffu, !valid || d == d0)) {
        if ((int)(threadIdx.x & 31) == leader) {
            atomicAdd(&h[d0], __popc(vm));
        }
    } else if (valid) {
        atomicAdd(&h[d], 1u);
    }
}

/* Warp-aggregated slot in a shared counter for the lanes with `want`. */
static __device__ __forceinline__ unsigned
warp_slot(unsigned *counter, bool want)
{
    unsigned m = __ballot_sync(0xffffffffu, want);
    unsigned lane = threadIdx.x & 31;
    unsigned base = 0;

    if (m == 0) {
        return 0;
    }
    int leader = __ffs(m) - 1;
    if ((int)lane == leader) {
        base = atomicAdd(counter, __popc(m));
    }
    base = __shfl_sync(0xffffffffu, base, leader);
    return base + __popc(m & ((1u << lane) - 1u));
}

/* Find the bin where the count from the top reaches need: sets sh->bin, above, cnt. */
static __device__ void
find_bin(struct topk_shared *sh, const unsigned *h, unsigned need)
{
    int t = threadIdx.x;
    int lane = t & 31;
    int warp = t / 32;
    unsigned hi = h[TOPK_BINS - 1 - 2 * t]; /* thread 0 holds the top two bins */
    unsigned lo = h[TOPK_BINS - 2 - 2 * t];
    unsigned local = hi + lo;
    unsigned incl = local;

    for (int o = 1; o < 32; o <<= 1) {
        unsigned v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) {
            incl += v;
        }
    }
    if (lane == 31) {
        sh->warp_tot[warp] = incl;
    }
    __syncthreads();
    if (warp == 0) {
        unsigned v = sh->warp_tot[lane];
        unsigned s = v;
        for (int o = 1; o < 32; o <<= 1) {
            unsigned u = __shfl_up_sync(0xffffffffu, s, o);
            if (lane >= o) {
                s += u;
            }
        }
        sh->warp_tot[lane] = s - v; /* exclusive */
    }
    __syncthreads();
    incl += sh->warp_tot[warp];
    unsigned excl = incl - local;
    if (excl < need && need <= incl) {
        if (excl + hi >= need) {
            sh->bin = TOPK_BINS - 1 - 2 * t;
            sh->above = excl;
            sh->cnt = hi;
        } else {
            sh->bin = TOPK_BINS - 2 - 2 * t;
            sh->above = excl + hi;
            sh->cnt = lo;
        }
    }
    __syncthreads();
}

/*
 * One pass of level l over the elements that match the decided prefix: emit keys whose digit is
 * above `bin` (and the bin itself when `final`); otherwise, for digit == bin, add the next digit
 * to hnext and append the key to `next` when it is not NULL.
 */
static __device__ __forceinline__ void
visit(struct topk_shared *sh, unsigned long long key, bool valid, int l, unsigned bin, bool final,
      unsigned *hnext, unsigned long long *next, unsigned *n_next, int32_t *out)
{
    unsigned d = valid ? digit(key, l) : 0;
    bool emit = valid && (d > bin || (final && d == bin));
    bool keep = valid && !final && d == bin;
    unsigned slot = warp_slot(&sh->n_out, emit);

    if (emit) {
        out[slot] = (int32_t)~(uint32_t)key;
    }
    if (!final) {
        hist_add(hnext, keep, keep ? digit(key, l + 1) : 0);
        if (next != NULL) {
            unsigned p = warp_slot(n_next, keep);
            if (keep) {
                next[p] = key;
            }
        }
    }
}

static __global__ void __launch_bounds__(TOPK_THREADS)
topk_kernel(const float *__restrict__ scores, int64_t ld, int64_t n, const int32_t *lens, int k,
            int32_t *idx_out, int32_t *count_out)
{
    extern __shared__ __align__(16) unsigned char smem[];
    struct topk_shared *sh = (struct topk_shared *)smem;
    const float *row = scores + (int64_t)blockIdx.x * ld;
    int32_t *out = idx_out + (int64_t)blockIdx.x * k;
    int64_t len = lens != NULL ? lens[blockIdx.x] : n;
    int t = threadIdx.x;
    int lane = t & 31;
    int64_t warp_base = (int64_t)(t / 32) * 32;

    if (len < 0) {
        len = 0;
    }
    if (len <= k) {
        for (int i = t; i < k; i += TOPK_THREADS) {
            out[i] = i < len ? i : -1;
        }
        if (count_out != NULL && t == 0) {
            count_out[blockIdx.x] = (int32_t)len;
        }
        return;
    }
    for (int i = t; i < 2 * TOPK_BINS; i += TOPK_THREADS) {
        (&sh->hist[0][0])[i] = 0;
    }
    if (t == 0) {
        sh->n_out = 0;
        sh->n_buf[0] = 0;
        sh->n_buf[1] = 0;
    }
    __syncthreads();
    /* level 0 histogram over the row; each warp takes 32 x TOPK_PREFETCH elements at a time,
     * all loads issued before the first is used (one load in flight per thread measured ~7x
     * slower: the pass is bound by L2 latency, not bandwidth) */
    for (int64_t b = warp_base * TOPK_PREFETCH; b < len; b += TOPK_THREADS * TOPK_PREFETCH) {
        float v[TOPK_PREFETCH];
#pragma unroll
        for (int j = 0; j < TOPK_PREFETCH; j++) {
            int64_t i = b + j * 32 + lane;
            v[j] = i < len ? row[i] : 0.0f;
        }
#pragma unroll
        for (int j = 0; j < TOPK_PREFETCH; j++) {
            int64_t i = b + j * 32 + lane;
            bool valid = i < len;
            unsigned long long key = topk_key(v[j], (uint32_t)i);
            hist_add(sh->hist[0], valid, digit(key, 0));
        }
    }
    __syncthreads();

    unsigned need = (unsigned)k;
    unsigned long long pfx = 0;  /* decided high digits */
    unsigned long long pmask = 0;
    int src = -1;                /* -1: the row in global memory; else sh->buf[src] */
    for (int l = 0; l < TOPK_LEVELS; l++) {
        unsigned *hcur = sh->hist[l & 1];
        unsigned *hnext = sh->hist[(l + 1) & 1];
        find_bin(sh, hcur, need);
        unsigned bin = sh->bin;
        need -= sh->above;
        bool final = sh->cnt == need || l == TOPK_LEVELS - 1;
        int dst = src < 0 ? 0 : 1 - src;
        bool to_buf = !final && sh->cnt <= TOPK_CAP;
        unsigned long long *next = to_buf ? sh->buf[dst] : NULL;
        unsigned *n_next = &sh->n_buf[dst];
        __syncthreads(); /* everyone has read bin/above/cnt and hcur */
        for (int i = t; i < TOPK_BINS; i += TOPK_THREADS) {
            hnext[i] = 0;
        }
        if (t == 0) {
            *n_next = 0;
        }
        __syncthreads();
        if (src < 0) {
            for (int64_t b = warp_base * TOPK_PREFETCH; b < len;
                 b += TOPK_THREADS * TOPK_PREFETCH) {
                float v[TOPK_PREFETCH];
#pragma unroll
                for (int j = 0; j < TOPK_PREFETCH; j++) {
                    int64_t i = b + j * 32 + lane;
                    v[j] = i < len ? row[i] : 0.0f;
                }
#pragma unroll
                for (int j = 0; j < TOPK_PREFETCH; j++) {
                    int64_t i = b + j * 32 + lane;
                    unsigned long long key = topk_key(v[j], (uint32_t)i);
                    bool valid = i < len && (key & pmask) == pfx;
                    visit(sh, key, valid, l, bin, final, hnext, next, n_next, out);
                }
            }
        } else {
            unsigned nb = sh->n_buf[src];
            for (unsigned b = (unsigned)warp_base; b < nb; b += TOPK_THREADS) {
                unsigned i = b + lane;
                bool valid = i < nb;
                unsigned long long key = valid ? sh->buf[src][i] : 0;
                visit(sh, key, valid, l, bin, final, hnext, next, n_next, out);
            }
        }
        __syncthreads();
        if (final) {
            break;
        }
        unsigned long long m = (unsigned long long)(l < TOPK_LEVELS - 1 ? 0x7ffu : 0x1ffu)
                               << level_shift(l);
        pfx |= (unsigned long long)bin << level_shift(l);
        pmask |= m;
        if (to_buf) {
            src = dst;
        }
    }
    /* n_out == k by construction; pad defensively so a broken invariant is visible as -1 */
    for (unsigned i = sh->n_out + t; i < (unsigned)k; i += TOPK_THREADS) {
        out[i] = -1;
    }
    if (count_out != NULL && t == 0) {
        count_out[blockIdx.x] = (int32_t)MT_MIN(sh->n_out, (unsigned)k);
    }
}


/* ---- one row over the whole GPU ------------------------------------------------------------ */

/*
 * The decode case (one row of up to 160K scores) is too short for one SM to finish in 20 us, so
 * here a cooperative grid shares the row: block b owns the contiguous slice [b * per, (b+1) *
 * per) and keeps its keys in registers. A key is now just the 32 ordered float bits (the index
 * tie-break is handled at the end), refined in three digits of 11, 11 and 10 bits: every block
 * histograms the digit of its keys that match the decided prefix in shared memory, adds the
 * non-empty bins to a global histogram, and after a grid barrier every block reads the same
 * global histogram and so decides the same bin. The work per pass is a few keys per thread, so
 * the cost is the barriers, not the bytes. Keys above the final prefix take slots from a global
 * counter; keys equal to a fully decided threshold are ranked by index across blocks (a prefix
 * over the blocks' counts), so the smallest indices win exactly as in mt_cpu_topk.
 */
#define GT_THREADS 512
#define GT_EPT 8                        /* keys a thread holds in registers */
#define GT_TILE (GT_THREADS * GT_EPT)   /* keys a block holds; more are re-read each pass */
#define GT_BINS 2048
#define GT_MAX_BLOCKS 256 /* 1M keys in registers; longer rows re-read slices */

#define GT_GROUP 32                     /* level-0 bins a group total covers */
#define GT_GROUPS (GT_BINS / GT_GROUP)

/* What each call clears at its start (used only after the first barrier). */
struct topk_clear {
    unsigned hist[2][GT_BINS]; /* levels 1 and 2, summed with atomics */
    unsigned eq[GT_MAX_BLOCKS];
    unsigned n_out;
};

struct topk_scratch {
    struct topk_clear c;
    /* level 0 needs no clearing: each block writes its own counts, and group totals so that
     * finding the bin reads 64 + 32 values a block instead of 2048 */
    unsigned grp[GT_MAX_BLOCKS][GT_GROUPS];
    unsigned part[GT_MAX_BLOCKS][GT_BINS];
};

static __device__ __forceinline__ uint32_t
ordered_bits(float v)
{
    return (uint32_t)(topk_key(v, 0) >> 32);
}

/* level l: 11 bits at 21, 11 at 10, 10 at 0 */
static __device__ __forceinline__ int
gt_shift(int l)
{
    return l == 0 ? 21 : l == 1 ? 10 : 0;
}

static __device__ __forceinline__ int
gt_bins(int l)
{
    return l < 2 ? 2048 : 1024;
}

/* Shared histogram add with one atomic per distinct digit of the warp's valid lanes. */
static __device__ __forceinline__ void
hist_add_match(unsigned *h, bool valid, unsigned d)
{
    unsigned active = __ballot_sync(0xffffffffu, valid);

    if (valid) {
        unsigned peers = __match_any_sync(active, d);
        if ((int)(threadIdx.x & 31) == __ffs(peers) - 1) {
            atomicAdd(&h[d], (unsigned)__popc(peers));
        }
    }
}

/* Exclusive prefix sum over the block (in thread order); *total gets the sum. */
static __device__ unsigned
block_excl_scan(unsigned v, unsigned *warp_tot, unsigned *total)
{
    int lane = threadIdx.x & 31;
    int warp = threadIdx.x / 32;
    unsigned incl = v;

    for (int o = 1; o < 32; o <<= 1) {
        unsigned u = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) {
            incl += u;
        }
    }
    __syncthreads(); /* warp_tot's previous use is over */
    if (lane == 31) {
        warp_tot[warp] = incl;
    }
    __syncthreads();
    unsigned before = 0;
    unsigned all = 0;
    for (int w = 0; w < GT_THREADS / 32; w++) {
        unsigned x = warp_tot[w];
        before += w < warp ? x : 0;
        all += x;
    }
    *total = all;
    return before + incl - v;
}

/* This thread's keys of sub-tile s: registers for s == 0, else re-read (from L2). */
static __device__ __forceinline__ void
gt_keys(const float *__restrict__ row, int64_t lo, int64_t hi, int s, const uint32_t (&kc)[GT_EPT],
        uint32_t (&kk)[GT_EPT])
{
#pragma unroll
    for (int j = 0; j < GT_EPT; j++) {
        if (s == 0) {
            kk[j] = kc[j];
        } else {
            int64_t i = lo + (int64_t)s * GT_TILE + j * GT_THREADS + threadIdx.x;
            kk[j] = i < hi ? ordered_bits(row[i]) : 0;
        }
    }
}

/*
 * Level 0: this block's counts (hist, shared) and group totals go to its own rows of the scratch;
 * after the barrier every block sums the group totals, finds the group where the count from the
 * top reaches need, then sums that group's 32 bins. Sets *bin, *above (keys in higher bins), *cnt.
 */
static __device__ void
level0_find(struct topk_scratch *ws, const unsigned *hist, unsigned *gsum, unsigned *bsum,
            unsigned *warp_tot, unsigned need, unsigned *bin, unsigned *above, unsigned *cnt,
            cg::grid_group &grid)
{
    int t = threadIdx.x;
    int nblk = (int)gridDim.x;

    for (int i = t; i < GT_BINS; i += GT_THREADS) {
        ws->part[blockIdx.x][i] = hist[i];
    }
    if (t < GT_GROUPS) {
        unsigned sum = 0;
        for (int b = 0; b < GT_GROUP; b++) {
            sum += hist[t * GT_GROUP + ((b + t) & (GT_GROUP - 1))]; /* lanes on distinct banks */
        }
        ws->grp[blockIdx.x][t] = sum;
    }
    grid.sync();
    unsigned v = 0;
#pragma unroll 4 /* the loads in flight together, not one L2 round trip each */
    for (int b = t / GT_GROUPS; b < nblk; b += GT_THREADS / GT_GROUPS) {
        v += __ldcg(&ws->grp[b][t % GT_GROUPS]);
    }
    if (v != 0) {
        atomicAdd(&gsum[t % GT_GROUPS], v);
    }
    __syncthreads();
    unsigned local = t < GT_GROUPS ? gsum[GT_GROUPS - 1 - t] : 0; /* thread 0: the top group */
    unsigned total;
    unsigned excl = block_excl_scan(local, warp_tot, &total);
    if (t < GT_GROUPS && excl < need && need <= excl + local) {
        *bin = (unsigned)(GT_GROUPS - 1 - t); /* the group, for now */
        *above = excl;
    }
    __syncthreads();
    unsigned grp = *bin;
    unsigned above_grp = *above;
    v = 0;
#pragma unroll 4
    for (int b = t / GT_GROUP; b < nblk; b += GT_THREADS / GT_GROUP) {
        v += __ldcg(&ws->part[b][grp * GT_GROUP + t % GT_GROUP]);
    }
    if (v != 0) {
        atomicAdd(&bsum[t % GT_GROUP], v);
    }
    __syncthreads();
    local = t < GT_GROUP ? bsum[GT_GROUP - 1 - t] : 0;
    excl = above_grp + block_excl_scan(local, warp_tot, &total);
    if (t < GT_GROUP && excl < need && need <= excl + local) {
        *bin = grp * GT_GROUP + (GT_GROUP - 1 - t);
        *above = excl;
        *cnt = local;
    }
    __syncthreads();
}

/* Levels 1 and 2: this block's counts added to the global histogram h, the barrier, the bin. */
static __device__ void
level_find(unsigned *h, int nb, const unsigned *hist, unsigned *warp_tot, unsigned need,
           unsigned *bin, unsigned *above, unsigned *cnt, cg::grid_group &grid)
{
    int t = threadIdx.x;

    for (int i = t; i < nb; i += GT_THREADS) {
        if (hist[i] != 0) {
            atomicAdd(&h[i], hist[i]);
        }
    }
    grid.sync();
    /* every block finds the same bin: thread t sums bins from the top in groups of nb/512 */
    int per_t = nb / GT_THREADS; /* 4 or 2 */
    int top = nb - 1 - t * per_t;
    unsigned hv[4];
    unsigned local = 0;
#pragma unroll
    for (int b = 0; b < 4; b++) {
        hv[b] = b < per_t ? __ldcg(&h[top - b]) : 0;
        local += hv[b];
    }
    unsigned total;
    unsigned excl = block_excl_scan(local, warp_tot, &total);
    if (excl < need && need <= excl + local) {
        unsigned acc = excl;
#pragma unroll
        for (int b = 0; b < 4; b++) {
            unsigned c = hv[b];
            if (b < per_t && acc + c >= need) {
                *bin = (unsigned)(top - b);
                *above = acc;
                *cnt = c;
                break;
            }
            acc += c;
        }
    }
    __syncthreads();
}

static __global__ void __launch_bounds__(GT_THREADS, 2)
topk_grid_kernel(const float *__restrict__ row, int64_t n, int k, int64_t per,
                 int32_t *__restrict__ out, int32_t *count_out, struct topk_scratch *ws, int stop)
{
    cg::grid_group grid = cg::this_grid();
    __shared__ unsigned hist[GT_BINS];
    __shared__ unsigned warp_tot[GT_THREADS / 32];
    __shared__ unsigned s_bin, s_above, s_cnt, s_base;
    int t = threadIdx.x;
    int64_t lo = (int64_t)blockIdx.x * per;
    int64_t hi = MT_MIN(lo + per, n);
    int n_sub = (int)(per / GT_TILE);
    uint32_t kc[GT_EPT];
    uint32_t kk[GT_EPT];

    __shared__ unsigned gsum[GT_GROUPS], bsum[GT_GROUP];

    /* the counters are cleared here (the barrier before their first use orders it) */
    for (int i = blockIdx.x * GT_THREADS + t; i < (int)(sizeof(ws->c) / 4);
         i += gridDim.x * GT_THREADS) {
        reinterpret_cast<unsigned *>(&ws->c)[i] = 0;
    }
    if (t < GT_GROUPS) {
        gsum[t] = 0;
    }
    if (t < GT_GROUP) {
        bsum[t] = 0;
    }
#pragma unroll
    for (int j = 0; j < GT_EPT; j++) {
        int64_t i = lo + j * GT_THREADS + t;
        kc[j] = i < hi ? ordered_bits(row[i]) : 0;
    }

    if (stop == 0) { /* measurement probe (MT_TOPK_STOP): launch and the row's loads only */
        uint32_t x = 0;
#pragma unroll
        for (int j = 0; j < GT_EPT; j++) {
            x ^= kc[j];
        }
        if (x == 0x9e3779b9u) {
            out[0] = -2;
        }
        return;
    }
    unsigned need = (unsigned)k;
    uint32_t pfx = 0;
    uint32_t pmask = 0;
    bool exact = false; /* the bin holds exactly the keys still needed */
    for (int l = 0; l < 3; l++) {
        int nb = gt_bins(l);
        int sh = gt_shift(l);
        for (int i = t; i < nb; i += GT_THREADS) {
            hist[i] = 0;
        }
        __syncthreads();
        for (int s = 0; s < n_sub; s++) {
            gt_keys(row, lo, hi, s, kc, kk);
#pragma unroll
            for (int j = 0; j < GT_EPT; j++) {
                int64_t i = lo + (int64_t)s * GT_TILE + j * GT_THREADS + t;
                bool valid = i < hi && (kk[j] & pmask) == pfx;
                hist_add_match(hist, valid, (kk[j] >> sh) & (unsigned)(nb - 1));
            }
        }
        __syncthreads();
        if (l == 0) {
            level0_find(ws, hist, gsum, bsum, warp_tot, need, &s_bin, &s_above, &s_cnt, grid);
            if (stop == 1) {
                return;
            }
        } else {
            level_find(ws->c.hist[l - 1], nb, hist, warp_tot, need, &s_bin, &s_above, &s_cnt,
                       grid);
        }
        __syncthreads();
        need -= s_above;
        pfx |= s_bin << sh;
        pmask |= (unsigned)(nb - 1) << sh;
        exact = s_cnt == need;
        if (exact || stop == 2 + l) {
            break;
        }
    }

    if (stop < 5) {
        return; /* a probe: the levels up to stop - 2 only */
    }
    /* keys with a larger prefix (and the whole bin when exact) take slots from a counter */
    for (int s = 0; s < n_sub; s++) {
        gt_keys(row, lo, hi, s, kc, kk);
        unsigned c = 0;
#pragma unroll
        for (int j = 0; j < GT_EPT; j++) {
            int64_t i = lo + (int64_t)s * GT_TILE + j * GT_THREADS + t;
            uint32_t p = kk[j] & pmask;
            c += (i < hi && (p > pfx || (exact && p == pfx))) ? 1u : 0u;
        }
        unsigned total;
        unsigned pos = block_excl_scan(c, warp_tot, &total);
        if (t == 0 && total > 0) {
            s_base = atomicAdd(&ws->c.n_out, total);
        }
        __syncthreads();
        pos += s_base;
#pragma unroll
        for (int j = 0; j < GT_EPT; j++) {
            int64_t i = lo + (int64_t)s * GT_TILE + j * GT_THREADS + t;
            uint32_t p = kk[j] & pmask;
            if (i < hi && (p > pfx || (exact && p == pfx))) {
                out[pos++] = (int32_t)i;
            }
        }
        __syncthreads(); /* s_base is read by all before the next sub-tile sets it */
    }
    if (!exact) {
        /* ties at the full 32-bit threshold: the `need` smallest indices among them, ranked by
         * the counts of the blocks before this one (blocks own increasing index ranges) */
        unsigned mine = 0;
        for (int s = 0; s < n_sub; s++) {
            gt_keys(row, lo, hi, s, kc, kk);
#pragma unroll
            for (int j = 0; j < GT_EPT; j++) {
                int64_t i = lo + (int64_t)s * GT_TILE + j * GT_THREADS + t;
                mine += (i < hi && kk[j] == pfx) ? 1u : 0u;
            }
        }
        unsigned total;
        block_excl_scan(mine, warp_tot, &total);
        if (t == 0) {
            ws->c.eq[blockIdx.x] = total;
        }
        grid.sync();
        unsigned before = 0;
        for (unsigned b = (unsigned)t; b < blockIdx.x; b += GT_THREADS) {
            before += __ldcg(&ws->c.eq[b]);
        }
        unsigned rank;
        block_excl_scan(before, warp_tot, &rank);
        /* rank: ties in the blocks before this one; walk this block's in index order */
        for (int s = 0; s < n_sub && rank < need; s++) {
            gt_keys(row, lo, hi, s, kc, kk);
#pragma unroll
            for (int j = 0; j < GT_EPT; j++) {
                int64_t i = lo + (int64_t)s * GT_TILE + j * GT_THREADS + t;
                bool tie = i < hi && kk[j] == pfx;
                unsigned cnt;
                unsigned r = rank + block_excl_scan(tie ? 1u : 0u, warp_tot, &cnt);
                if (tie && r < need) {
                    out[(unsigned)k - need + r] = (int32_t)i;
                }
                rank += cnt;
            }
        }
    }
    if (count_out != NULL && blockIdx.x == 0 && t == 0) {
        count_out[0] = k;
    }
}

/* How many blocks of the grid kernel fit on the device at once (cached per device). */
static mt_status_t
grid_capacity(int *out)
{
    static int cap[64];
    int dev = 0;

    *out = 0;
    mt_status_t st = MT_CUDA(cudaGetDevice(&dev));
    if (st != MT_OK) {
        return st;
    }
    if (dev < 0 || dev >= 64) {
        return MT_OK;
    }
    if (cap[dev] == 0) {
        int coop = 0;
        int sms = 0;
        int per_sm = 0;
        if ((st = MT_CUDA(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev))) !=
                MT_OK ||
            (st = MT_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev))) !=
                MT_OK ||
            (st = MT_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                 &per_sm, topk_grid_kernel, GT_THREADS, 0))) != MT_OK) {
            return st;
        }
        cap[dev] = coop ? MT_MIN(sms * per_sm, GT_MAX_BLOCKS) : -1;
    }
    *out = cap[dev];
    return MT_OK;
}

/* ---- one short row: radix select in registers -------------------------------------------- */

/*
 * The one idea: a decode row just past index_topk (2,049 to 6,144 keys: contexts up to 6K)
 * fits in one block's registers, 6 keys a thread, so the radix select needs no second read of
 * the row, no shared-memory candidate buffers and no grid: per 8-bit digit from the top, a
 * 256-bin histogram of the keys that share the digits decided so far (warp-aggregated atomics:
 * keys of similar scores share their leading digits), one warp finds the bin where the count
 * from the top reaches k, and the select ends as soon as that bin holds exactly the keys still
 * needed (two or three digits for distinct scores; the index's digits settle exact ties). The
 * set is then every key whose decided digits are >= the prefix, written in thread order.
 * Measured on the H200 (bench/results/kernels-h200.md, session 10), top-2048: of 2,100 6.3 us
 * against 11.5-12.2 for the grid kernel (its cooperative launch and grid-wide synchronisations
 * for a row that fills few blocks; the one-block kernel: 13.5 us), of 4,096 5.4-8.2 against
 * 13.7, of 6,144 7.5-10.1 against 13.4-13.8. Longer rows stay on the grid kernel: with 12 keys
 * a thread this one took 12.7-14.1 us at 8,192 and 15.5-17.6 at 12,288, where the grid kernel
 * takes 12.4-13.7. A bitonic sort of the row in shared memory took 39 us at 2,100.
 */
#define SHORT_THREADS 1024
#define SHORT_EPT 6                           /* keys a thread */
#define SHORT_MAX (SHORT_THREADS * SHORT_EPT) /* 6,144 */

static __global__ void __launch_bounds__(SHORT_THREADS)
topk_short_kernel(const float *__restrict__ scores, int n, int k, int32_t *__restrict__ idx_out,
                  int32_t *__restrict__ count_out)
{
    __shared__ unsigned hist[256];
    __shared__ unsigned warp_tot[SHORT_THREADS / 32];
    __shared__ unsigned sel_bin;
    __shared__ unsigned sel_above;
    int tid = threadIdx.x;
    int lane = tid & 31;
    int warp = tid / 32;
    unsigned long long key[SHORT_EPT]; /* 0: no key (every real key's low word ~i is >= 2^31) */

    mt_pdl_enter();
#pragma unroll
    for (int j = 0; j < SHORT_EPT; j++) {
        int i = tid + j * SHORT_THREADS;
        key[j] = i < n ? topk_key(scores[i], (uint32_t)i) : 0ull;
    }
    unsigned long long prefix = 0;
    unsigned long long mask = 0;
    unsigned need = (unsigned)k; /* keys still to take from the bins not yet decided */
    for (int shift = 56; shift >= 0; shift -= 8) {
        if (tid < 256) {
            hist[tid] = 0;
        }
        __syncthreads();
#pragma unroll
        for (int j = 0; j < SHORT_EPT; j++) {
            bool in = key[j] != 0 && (key[j] & mask) == prefix;
            unsigned d = (unsigned)(key[j] >> shift) & 0xffu;
            unsigned act = __ballot_sync(0xffffffffu, in);
            if (act == 0) {
                continue; /* past the row's end, or no candidate left here: most after digit 1 */
            }
            if (in) {
                unsigned peers = __match_any_sync(act, d);
                if (lane == __ffs(peers) - 1) {
                    atomicAdd(&hist[d], (unsigned)__popc(peers));
                }
            }
        }
        __syncthreads();
        if (warp == 0) {
            /* lane l: bins 255 - 8l down to 248 - 8l; counts from the top bin down */
            unsigned c[8];
            unsigned sum = 0;
#pragma unroll
            for (int q = 0; q < 8; q++) {
                c[q] = hist[255 - 8 * lane - q];
                sum += c[q];
            }
            unsigned incl = sum;
            for (int o = 1; o < 32; o <<= 1) {
                unsigned u = __shfl_up_sync(0xffffffffu, incl, o);
                incl += lane >= o ? u : 0;
            }
            unsigned acc = incl - sum;
            if (acc < need && need <= incl) {
                for (int q = 0; q < 8; q++) {
                    if (acc + c[q] >= need) {
                        sel_bin = 255 - 8 * lane - q;
                        sel_above = acc;
                        break;
                    }
                    acc += c[q];
                }
            }
        }
        __syncthreads();
        unsigned b = sel_bin;
        need -= sel_above;
        prefix |= (unsigned long long)b << shift;
        mask |= 0xffull << shift;
        if (hist[b] == need) {
            break; /* the whole bin is taken: the set is decided (the same for every thread) */
        }
        __syncthreads(); /* hist[b] read by all before the next digit clears it */
    }
    /* the set: every key whose decided digits are >= the prefix; offsets by a block scan */
    unsigned mine = 0;
#pragma unroll
    for (int j = 0; j < SHORT_EPT; j++) {
        mine += key[j] != 0 && (key[j] & mask) >= prefix;
    }
    unsigned incl = mine;
    for (int o = 1; o < 32; o <<= 1) {
        unsigned u = __shfl_up_sync(0xffffffffu, incl, o);
        incl += lane >= o ? u : 0;
    }
    if (lane == 31) {
        warp_tot[warp] = incl;
    }
    __syncthreads();
    unsigned off = incl - mine;
    for (int w = 0; w < warp; w++) {
        off += warp_tot[w];
    }
#pragma unroll
    for (int j = 0; j < SHORT_EPT; j++) {
        if (key[j] != 0 && (key[j] & mask) >= prefix) {
            idx_out[off++] = (int32_t)~(uint32_t)key[j];
        }
    }
    if (tid == 0 && count_out != NULL) {
        count_out[0] = k;
    }
}

extern "C" size_t
mt_gpu_topk_scratch_bytes(void)
{
    return sizeof(struct topk_scratch);
}

extern "C" mt_status_t
mt_gpu_topk(const float *scores, int64_t ld, int n_rows, int64_t n, const int32_t *lens, int k,
            int32_t *idx_out, int32_t *count_out, void *scratch, struct CUstream_st *stream)
{
    static bool attr_set[64];
    size_t smem = sizeof(struct topk_shared);
    mt_status_t st;

    if (n_rows < 1 || n < 0 || n >= INT32_MAX || k < 1 || k > TOPK_MAX_K ||
        (n_rows > 1 && ld < n) || scores == NULL || idx_out == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu top-k: top-%d of %d rows of %lld (stride %lld)", k,
                       n_rows, (long long)n, (long long)ld);
    }
    static int short_on = -1; /* MT_TOPK_SHORT=0: short rows to the grid kernel (to measure) */
    if (short_on < 0) {
        const char *e = getenv("MT_TOPK_SHORT");
        short_on = e == NULL || atoi(e) != 0;
    }
    if (scratch != NULL && n_rows == 1 && lens == NULL && n > k && n <= SHORT_MAX && short_on) {
        mt_pdl_launch(topk_short_kernel, dim3(1), dim3(SHORT_THREADS), 0, stream, scores, (int)n,
                      k, idx_out, count_out);
        return mt_cuda_launched("topk (short row)", stream);
    }
    if (scratch != NULL && n_rows == 1 && lens == NULL && n > k) {
        int cap = 0;
        if ((st = grid_capacity(&cap)) != MT_OK) {
            return st;
        }
        if (cap > 0) {
            /* as few blocks as hold the row in registers; more keys a block past capacity */
            int64_t blocks = MT_MIN(MT_CEIL_DIV(n, (int64_t)GT_TILE), (int64_t)cap);
            int64_t per = MT_CEIL_DIV(MT_CEIL_DIV(n, blocks), (int64_t)GT_TILE) * GT_TILE;
            blocks = MT_CEIL_DIV(n, per);
            struct topk_scratch *ws = (struct topk_scratch *)scratch;
            /* MT_TOPK_STOP=s (measurement only: the result is incomplete) ends the kernel
             * after stage s: 0 the loads, 1 or 2 level 0, 3 level 1, 4 level 2 */
            static int stop = -1;
            if (stop < 0) {
                const char *e = getenv("MT_TOPK_STOP");
                stop = e != NULL ? atoi(e) : 5;
            }
            void *args[] = {(void *)&scores,  (void *)&n,         (void *)&k,
                            (void *)&per,     (void *)&idx_out,   (void *)&count_out,
                            (void *)&ws,      (void *)&stop};
            st = MT_CUDA(cudaLaunchCooperativeKernel((const void *)topk_grid_kernel,
                                                     (unsigned)blocks, GT_THREADS, args, 0,
                                                     stream));
            if (st != MT_OK) {
                return st;
            }
            return mt_cuda_launched("topk (grid)", stream);
        }
    }
    if ((st = mt_smem_optin_once((const void *)topk_kernel, (int)smem, attr_set)) != MT_OK) {
        return st;
    }
    topk_kernel<<<n_rows, TOPK_THREADS, smem, stream>>>(scores, ld, n, lens, k, idx_out,
                                                         count_out);
    return mt_cuda_launched("topk", stream);
}
