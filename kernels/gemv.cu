/* SPDX-License-Identifier: MIT */
/*
 * gemv.cu - y = W x for 1 to 8 tokens, W in FP8 e4m3 with 128x128 fp32 block scales or in BF16.
 *
 * The one idea: decode reads every weight once per token batch, so the kernel is a streaming
 * read at HBM bandwidth with the arithmetic hidden under it. FP8 runs on tensor cores (mma.sync,
 * any sm_80+), whose cost per weight byte is small and does not grow with the tokens, in one
 * wave of warps with equal shares (below); measured on the H200 it reaches 56-75% of the 4 GiB
 * HBM read on the >= 16 MB matrices, 0.84-0.99 of what a pure read of the same size gets in the
 * same harness (bench/results/kernels-h200.md, session 8: such a read itself reaches only 55% at
 * 16.8 MB and 85% from ~117 MB). On sm_90+ the weights are copied by the tensor memory
 * accelerator instead of cp.async: 64-83% of the HBM read at the V3.2 shapes of 16.8-132 MB
 * (session 22).
 * BF16 (the lm_head), and one FP8 token of a matrix below 14 MiB, use a CUDA-core loop: a
 * block of 256 threads is split into groups of T threads, each group owns 2 adjacent rows (x is
 * reused from registers), T chosen per shape so that every SM has work; BF16 streams at 93-94%
 * of HBM read that way. The tensor-core kernel lives in gemv_wave.cuh, shared with moe.cu's
 * routed experts; every kernel here launches with programmatic dependent launch where the device
 * has it (pdl.cuh).
 */
#include <config.h>

#include "kernels/ops.h"
#include "kernels/cuda_check.cuh"
#include "kernels/common.cuh"
#include "kernels/gemv_wave.cuh"
#include "kernels/pdl.cuh"

#include <algorithm>
#include <cudaTypedefs.h> /* PFN_cuTensorMapEncodeTiled */
#include <stdlib.h>
#include <string.h>

/* ---- FP8: tensor cores, every SM the same share (gemv_wave.cuh) ------------------------------ */

/*
 * Two blocks an SM. Per-block timestamps of a chain of launches on the H200 (2026-11-30 session
 * 11, bench/results/kernels-h200.md) show where a GEMV loses against the HBM read: the 132
 * blocks of an 18432x7168 launch end over 6-7 us although their bytes are equal, and the next
 * launch's blocks pass their wait ~1 us after the last one ends and finish staging x 1-3 us
 * later. The same 16 warps an SM as two blocks of 8 (each with its own barriers, x staging and
 * half the rows) is a little faster in bench_kernels (graph + PDL, two rounds each): 18432x7168
 * 39.5-39.6 against 40.2-40.3 us, 24576x1536 11.9-12.0 / 12.2, 32768x512 6.3 / 6.6-6.7 (the
 * decode step did not move measurably). It needs two blocks' shared memory on one SM (a ring of
 * 4 stages is 64 KB a block, so x staged for one token up to ~11,000 columns on an H100/H200);
 * wider matrices, and GPUs with less shared memory an SM (sm_86/89/120), keep one 16-warp block.
 */
template <int NB, int P, bool XS, int SW, int A, int W>
static __global__ void __launch_bounds__(W * 32, W == MV_WARPS ? 1 : 2)
gemv_fp8_kernel(const struct mv_dense m, int l2ahead)
{
    extern __shared__ uint4 xs[];

    mv_wave<NB, P, XS, SW, A, mv_dense, W>(m, xs, l2ahead);
}

/* One token of an FP8 matrix below 14 MiB stays on the CUDA-core loop below. Measured on the
 * H200 (2026-11-30 session 8, graph + PDL, us): 1536x7168 7.2 here against 7.9 on tensor cores,
 * 2048x7168 7.5 / 8.4, 576x7168 4.5 / 6.4, 8192x1536 6.5 / 6.6; from 14 MiB the lean tensor-core
 * loop wins: 7168x2048 8.7 / 7.0, 2240x7168 (the engine's q_a + wk + kv_a) 10.5 / 8.6. */
#define GEMV_FP8_SMALL_MB 14

/* Knobs for measurements, read once: MT_GEMV_XS=0 (x split in registers by every warp instead of
 * staged), MT_GEMV_ASYNC=0 (register stages instead of either ring), MT_GEMV_TMA=0 (never the
 * TMA ring: the cp.async ring of every sm_80+ GPU; mt_gpu_gemv_tma_set), MT_GEMV_TMA_HINT=0 (the
 * TMA ring's weights without the L2 evict-first policy), MT_GEMV_L2AHEAD=n
 * (steps a warp of the cp.async ring asks L2 for before its wait; 0 none), MT_GEMV_SMALL_MB=n
 * (one token of an FP8 matrix below n MiB takes the CUDA-core loop). */
static int
gemv_env(const char *name, int lo, int hi, int dflt)
{
    const char *e = getenv(name);
    int v = e != NULL ? atoi(e) : dflt;

    return v >= lo && v <= hi ? v : dflt;
}

struct mv_knobs {
    int read;
    int xs;
    int async;
    int l2ahead;
    int small_mb;
    int tma;
    int tma_hint;
};

static struct mv_knobs
gemv_knobs(void)
{
    static struct mv_knobs k; /* read 0: not yet (a race only reads them twice) */

    if (k.read == 0) {
        struct mv_knobs v = {1, gemv_env("MT_GEMV_XS", 0, 1, 1),
                             gemv_env("MT_GEMV_ASYNC", 0, 1, MV_ASYNC),
                             gemv_env("MT_GEMV_L2AHEAD", 0, 64, MV_L2AHEAD),
                             gemv_env("MT_GEMV_SMALL_MB", 0, 1024, GEMV_FP8_SMALL_MB),
                             gemv_env("MT_GEMV_TMA", 0, 2, 1),
                             gemv_env("MT_GEMV_TMA_HINT", 0, 1, 1)};
        k = v;
    }
    return k;
}

/* A device attribute of the current device, queried once per device (fallback if the query
 * fails or gives 0); a race between threads only repeats the query. */
static int
device_attr_cached(int (&known)[64], cudaDeviceAttr attr, int fallback)
{
    int dev = 0;
    int n = 0;

    if (cudaGetDevice(&dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return fallback;
    }
    if (dev < 64 && known[dev] > 0) {
        return known[dev];
    }
    if (cudaDeviceGetAttribute(&n, attr, dev) != cudaSuccess) {
        (void)cudaGetLastError(); /* the launch after it reports a real device problem */
        n = 0;
    }
    n = n > 0 ? n : fallback;
    if (dev < 64) {
        known[dev] = n;
    }
    return n;
}

static int
sm_count(void)
{
    static int known[64];

    return device_attr_cached(known, cudaDevAttrMultiProcessorCount, 1);
}

/* Dynamic shared memory each of two MV_PAIR_WARPS blocks may have on one SM of this device. */
size_t
mv_pair_room(void)
{
    static int per_sm_known[64];
    static int reserved_known[64];
    int per_sm = device_attr_cached(per_sm_known, cudaDevAttrMaxSharedMemoryPerMultiprocessor,
                                    48 << 10);
    /* 1 KB a block on sm_80..sm_120; the fallback keeps a failed query on the safe side */
    int reserved = device_attr_cached(reserved_known, cudaDevAttrReservedSharedMemoryPerBlock,
                                      1 << 10);
    long long room = per_sm / 2 - reserved - (long long)MV_RED_BYTES(MV_PAIR_WARPS, 1);

    return room > 0 ? (size_t)room : 0;
}

/* -1: not yet read from MT_GEMV_TWO_BLOCKS (default on); mt_gpu_gemv_two_blocks_set overrides. */
static int two_blocks = -1;

extern "C" void
mt_gpu_gemv_two_blocks_set(bool on)
{
    two_blocks = on ? 1 : 0;
}

bool
mv_two_blocks_on(void)
{
    if (two_blocks < 0) {
        const char *e = getenv("MT_GEMV_TWO_BLOCKS");
        two_blocks = e == NULL || atoi(e) != 0;
    }
    return two_blocks == 1;
}

/* Largest dynamic shared memory a block of this device may have. */
static int
smem_optin(void)
{
    static int known[64];

    return device_attr_cached(known, cudaDevAttrMaxSharedMemoryPerBlockOptin, 48 << 10);
}

/* Blocks: one wave (blocks a SM, once per device, times the SMs), but at least 8 rows each.
 * W = MV_PAIR_WARPS: the kernel may take mv_pair_room() bytes, so that two blocks share an SM. */
template <int NB, int P, bool XS, int SW, int A, int W = MV_WARPS>
static mt_status_t
gemv_fp8_launch(const struct mt_gpu_weight *w, const float *x, int n_tok, float *y,
                cudaStream_t s, const float *up = nullptr)
{
    static int occ[64]; /* blocks a SM per device; 0 unknown (a race only repeats the query) */
    size_t smem = (XS ? MV_XS_BYTES(n_tok, w->cols) : 0) + MV_RING_BYTES_W(A, W);
    int dev = 0;

    cudaGetDevice(&dev);
    int bps = dev < 64 ? occ[dev] : 0;
    if (bps == 0) {
        /* the static reduction buffer counts against the same limit */
        int dyn = W == MV_WARPS ? smem_optin() - (int)MV_RED_BYTES(W, NB) : (int)mv_pair_room();
        mt_status_t st = MT_OK;
        if (XS) {
            st = MT_CUDA(cudaFuncSetAttribute(gemv_fp8_kernel<NB, P, XS, SW, A, W>,
                                              cudaFuncAttributeMaxDynamicSharedMemorySize, dyn));
        }
        if (st == MT_OK) {
            st = MT_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                &bps, gemv_fp8_kernel<NB, P, XS, SW, A, W>, W * 32, XS ? dyn : 0));
        }
        if (st != MT_OK) {
            return st; /* named by MT_CUDA: the call, CUDA's reason */
        }
        bps = bps > 0 ? bps : 1;
        if (dev < 64) {
            occ[dev] = bps;
        }
    }
    long long blocks = (long long)bps * sm_count();
    blocks = std::min(blocks, MT_CEIL_DIV(w->rows, 8LL));
    struct mv_dense m = {(const uint8_t *)w->data, w->scale, w->rows, w->cols, x, n_tok, y, up};
    mt_pdl_launch(gemv_fp8_kernel<NB, P, XS, SW, A, W>, dim3((unsigned)blocks), dim3(W * 32), smem,
                  s, m, gemv_knobs().l2ahead);
    return mt_cuda_launched("gemv_fp8", s);
}

/* ---- Hopper and later: the ring filled by the tensor memory accelerator ---------------------- */

/*
 * The same wave, but each warp's ring stages are filled by one TMA box copy a step
 * (tensor_copy.cuh) instead of four cp.async a thread, and a step is 256 columns (two scale
 * blocks: half the copies again). sm_90+ only: below, the kernel body is empty and the host
 * never launches it. Measured on the H200 (2026-12-01 session 20, graph + PDL, us a launch;
 * bench/results/kernels-h200.md) against the cp.async ring: 7168x16384 32.7 / 34.6, 18432x7168
 * 36.0 / 39.8, 7168x18432 38.2 / 41.1, but 24576x1536 12.3 / 11.9 and 2240x7168 9.5 / 8.8: it
 * then paid from 64 MiB only. Since its loop lost a third of its instructions (2026-12-02
 * session 22: shared loads at constant offsets, scales loaded a step ahead) it is faster at
 * every size measured (two rounds: 2048x7168 7.5 / 8.5, 2240x7168 8.5 / 8.8, 7168x2048 6.1 /
 * 6.7, 32768x512 5.7-5.8 / 6.4, 24576x1536 11.3-11.4 / 11.8-11.9, 18432x7168 34.3-34.5 /
 * 39.9-41.1) and takes every FP8 GEMV of 1-4 tokens on sm_90+ whose staged x fits beside it
 * (on an H100/H200: one token up to 25,216 columns, 2 up to 12,544, 3 up to 8,320, 4 up to
 * 6,272; wider ones take the cp.async ring). Three stages of 256 columns
 * (sessions 20 and 22), three to six of 128, and blocks of 8 or 12 warps were slower at every
 * size but one; so were blocks sized to leave half the SM to the next launch's block (with the
 * PDL trigger after each warp's last copy, so that block fills its ring during this one's tail),
 * at all but two sizes (session 23). Without products or x the same launches read only 70%
 * (16.8 MB), 77.5% (37.7 MB) and 86-88% (117-132 MB) of the 4 GiB read: the structure's own
 * ceiling (bench/results/kernels-h200.md, session 23). A block's rows streamed as one contiguous
 * run by 64-96 KB bulk copies read 73-77 / 83-87 / 87-93% with nothing computed, but a GEMV
 * built on it (products from whole rows, session 24, branch `bulk`) was 1.4-2x slower.
 */
#define GEMV_TMA_SW 2     /* 128-column blocks a step: boxes of 16 rows x 256 bytes */
#define GEMV_TMA_STAGES 2 /* ring stages a warp */

/* HINT: the boxes' lines go to L2 with an evict-first policy, so that x and the scales, which
 * every block reads, are not pushed out of L2 by weights read once (the default; measured on the
 * H200, session 21: 0.1-0.6 us less a launch at every shape) */
template <bool HINT>
static __global__ void __launch_bounds__(MV_WARPS * 32, 1)
gemv_fp8_tma_kernel(const struct mv_dense m, const __grid_constant__ struct mv_boxes bx,
                    int l2ahead)
{
    extern __shared__ uint4 xs[];

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    mv_wave<1, MV_P, true, GEMV_TMA_SW, GEMV_TMA_STAGES, mv_dense, MV_WARPS, true, HINT>(
        m, xs, l2ahead, &bx);
#endif
}

/* cuTensorMapEncodeTiled from the driver, found once at run time (no link against libcuda);
 * NULL where the driver does not have it. */
static PFN_cuTensorMapEncodeTiled_v12000
tma_encoder(void)
{
    static int state; /* 0 not yet, 1 found, -1 absent (a race only repeats the lookup) */
    static PFN_cuTensorMapEncodeTiled_v12000 fn;

    if (state == 0) {
        cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
        void *p = NULL;
#if CUDART_VERSION >= 12050 /* the by-version lookup, and the only one CUDA 13 has */
        cudaError_t err = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000,
                                                           cudaEnableDefault, &q);
#else
        cudaError_t err = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &p, cudaEnableDefault,
                                                  &q);
#endif
        if (err != cudaSuccess || q != cudaDriverEntryPointSuccess || p == NULL) {
            (void)cudaGetLastError();
            state = -1;
            return NULL;
        }
        fn = (PFN_cuTensorMapEncodeTiled_v12000)p;
        state = 1;
    }
    return state == 1 ? fn : NULL;
}

/* The five boxes of w (mv_boxes); false if the driver refuses one. Encoding is host arithmetic
 * (no device call), so it is done at every launch rather than kept per weight. */
static bool
tma_boxes(const struct mt_gpu_weight *w, struct mv_boxes *bx)
{
    PFN_cuTensorMapEncodeTiled_v12000 encode = tma_encoder();
    static const int heights[5] = {16, 8, 4, 2, 1};

    if (encode == NULL) {
        return false;
    }
    for (int k = 0; k < 5; k++) {
        cuuint64_t dim[2] = {(cuuint64_t)w->cols, (cuuint64_t)w->rows};
        cuuint64_t stride[1] = {(cuuint64_t)w->cols}; /* bytes between rows */
        cuuint32_t box[2] = {128 * GEMV_TMA_SW, (cuuint32_t)heights[k]};
        cuuint32_t step[2] = {1, 1};
        if (encode(&bx->h[k], CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, (void *)w->data, dim, stride,
                   box, step, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                   CU_TENSOR_MAP_L2_PROMOTION_NONE,
                   CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS) {
            return false;
        }
    }
    return true;
}

/* Whether gemv_fp8_tma_kernel may run on the current device (cc >= 9.0 and an image of 9.0 or
 * later: an sm_80 build run on a Hopper has the empty body) with `smem` bytes of dynamic shared
 * memory (the attribute is raised once per device to all it may have). */
static bool
tma_kernel_ok(size_t smem)
{
    static int room[64]; /* dynamic bytes allowed per device; 0 unknown, -1 unusable */
    int dev = 0;

    if (cudaGetDevice(&dev) != cudaSuccess || dev >= 64) {
        (void)cudaGetLastError();
        return false;
    }
    if (room[dev] == 0) {
        /* both variants take the same resources; their attribute is raised together */
        int major = 0;
        struct cudaFuncAttributes fa;
        int r = -1;
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) ==
                cudaSuccess &&
            major >= 9) {
            /* both instantiations take the room of the one with more static memory */
            const void *k[2] = {(const void *)gemv_fp8_tma_kernel<true>,
                                (const void *)gemv_fp8_tma_kernel<false>};
            int dyn = smem_optin();
            bool ok = true;
            for (int i = 0; i < 2 && ok; i++) {
                ok = cudaFuncGetAttributes(&fa, k[i]) == cudaSuccess && fa.binaryVersion >= 90 &&
                     fa.ptxVersion >= 90;
                dyn = ok ? std::min(dyn, smem_optin() - (int)fa.sharedSizeBytes) : dyn;
            }
            for (int i = 0; i < 2 && ok && dyn > 0; i++) {
                ok = cudaFuncSetAttribute(k[i], cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          dyn) == cudaSuccess;
            }
            if (ok && dyn > 0) {
                r = dyn;
            }
        }
        if (r < 0) {
            (void)cudaGetLastError(); /* a refusal is an answer, not an error to report later */
        }
        room[dev] = r;
    }
    return room[dev] > 0 && smem <= (size_t)room[dev];
}

/* 0 off, 1 (default) or 2 on where the device takes it; -1: MT_GEMV_TMA decides */
static int tma_mode = -1;
static unsigned long long tma_launches;

extern "C" void
mt_gpu_gemv_tma_set(int mode)
{
    tma_mode = mode;
}

extern "C" unsigned long long
mt_gpu_gemv_tma_launches(void)
{
    return __atomic_load_n(&tma_launches, __ATOMIC_RELAXED);
}

extern "C" bool
mt_gpu_gemv_tma_usable(void)
{
    return tma_kernel_ok(MV_XS_BYTES(1, 128) +
                         MV_TMA_RING_BYTES(GEMV_TMA_STAGES, GEMV_TMA_SW, MV_WARPS));
}

/* 1-4 tokens of an FP8 matrix on the TMA ring, or MT_ERR_UNSUPPORTED with nothing launched (off
 * (MT_GEMV_TMA=0), not a Hopper-class device or image, a shape or shared memory it does not
 * take: the caller then takes the cp.async ring). */
static mt_status_t
gemv_fp8_tma(const struct mt_gpu_weight *w, const float *x, const float *up, int n_tok, float *y,
             cudaStream_t s)
{
    int mode = tma_mode >= 0 ? tma_mode : gemv_knobs().tma;
    size_t smem = MV_XS_BYTES(n_tok, w->cols) +
                  MV_TMA_RING_BYTES(GEMV_TMA_STAGES, GEMV_TMA_SW, MV_WARPS);
    struct mv_boxes bx;

    if (mode == 0 || w->rows > INT32_MAX || w->cols > INT32_MAX || w->cols % 16 != 0 ||
        (uintptr_t)w->data % 16 != 0 || !tma_kernel_ok(smem) || !tma_boxes(w, &bx)) {
        return MT_ERR_UNSUPPORTED;
    }
    long long blocks = std::min((long long)sm_count(), MT_CEIL_DIV(w->rows, 8LL));
    struct mv_dense m = {(const uint8_t *)w->data, w->scale, w->rows, w->cols, x, n_tok, y, up};
    mt_pdl_launch(gemv_knobs().tma_hint ? gemv_fp8_tma_kernel<true> : gemv_fp8_tma_kernel<false>,
                  dim3((unsigned)blocks), dim3(MV_WARPS * 32), smem, s, m, bx,
                  gemv_knobs().l2ahead);
    __atomic_fetch_add(&tma_launches, 1, __ATOMIC_RELAXED);
    return mt_cuda_launched("gemv_fp8_tma", s);
}

/* ---- CUDA cores: BF16, and FP8 for one token below GEMV_FP8_SMALL_MB ----------------------- */

#define GEMV_THREADS 256
#define GEMV_ROWS 2   /* R: rows per thread group (x is reused across them) */
/* 16-byte loads per row in flight per thread (4 for FP8 measured 48-50% of HBM read on the H200
 * against 55% with 2: more registers, fewer resident warps) */
#define GEMV_UNROLL 2

/*
 * Accumulate acc[i][t] += W[row i, :] . x[t, :] over this thread's units (16 weights for FP8, 8 for
 * BF16) lane, lane + T, ... of `units`. wrow[i] NULL means row i does not exist. srow[i]: the
 * FP8 scale row of row i's block row (unused for BF16). x[t] rows are 16-byte aligned fp32.
 */
template <bool FP8, int NT, int R>
static __device__ __forceinline__ void
gemv_group_dot(const uint4 *const (&wrow)[R], const float *const (&srow)[R], int units,
               const float4 *const (&x)[NT], int nt, int lane, int T, float (&acc)[R][NT])
{
    for (int u0 = lane; u0 < units; u0 += T * GEMV_UNROLL) {
        uint4 w[GEMV_UNROLL][R];

#pragma unroll
        for (int k = 0; k < GEMV_UNROLL; k++) {
            int u = u0 + k * T;
#pragma unroll
            for (int i = 0; i < R; i++) {
                w[k][i] = (u < units && wrow[i] != NULL) ? __ldcs(wrow[i] + u)
                                                         : make_uint4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int k = 0; k < GEMV_UNROLL; k++) {
            int u = u0 + k * T;
            if (u >= units) {
                break;
            }
            if (FP8) {
                /* words 0-1 through half2 (conversion pipe), words 2-3 through integer moves
                 * (mt_fp8_to_f32_scaled): the two decoders share the work between pipes */
                float wh[R][8];
                float wi[R][8];
                float sc[R];
#pragma unroll
                for (int i = 0; i < R; i++) {
                    const uint32_t *v = reinterpret_cast<const uint32_t *>(&w[k][i]);
                    sc[i] = wrow[i] != NULL ? __ldg(srow[i] + (u >> 3)) : 0.0f;
#pragma unroll
                    for (int j = 0; j < 2; j++) {
                        mt_fp8x4_to_f32(v[j], &wh[i][4 * j]);
                        wi[i][4 * j + 0] = mt_fp8_to_f32_scaled<0>(v[2 + j]);
                        wi[i][4 * j + 1] = mt_fp8_to_f32_scaled<1>(v[2 + j]);
                        wi[i][4 * j + 2] = mt_fp8_to_f32_scaled<2>(v[2 + j]);
                        wi[i][4 * j + 3] = mt_fp8_to_f32_scaled<3>(v[2 + j]);
                    }
                }
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    if (t >= nt) {
                        break;
                    }
                    float xf[16];
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        float4 q = __ldg(x[t] + 4 * u + j);
                        xf[4 * j + 0] = q.x;
                        xf[4 * j + 1] = q.y;
                        xf[4 * j + 2] = q.z;
                        xf[4 * j + 3] = q.w;
                    }
#pragma unroll
                    for (int i = 0; i < R; i++) {
                        float ph = 0.0f;
                        float pi = 0.0f;
#pragma unroll
                        for (int j = 0; j < 8; j++) {
                            ph = fmaf(wh[i][j], xf[j], ph);
                            pi = fmaf(wi[i][j], xf[8 + j], pi);
                        }
                        float p = fmaf(ph, MT_FP8_DECODE_SCALE, pi * MT_FP8_F32_SCALE);
                        acc[i][t] = fmaf(p, sc[i], acc[i][t]);
                    }
                }
            } else {
                float wf[R][8];
#pragma unroll
                for (int i = 0; i < R; i++) {
                    const uint32_t *v = reinterpret_cast<const uint32_t *>(&w[k][i]);
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        float2 f = mt_bf16x2_decode(v[j]);
                        wf[i][2 * j] = f.x;
                        wf[i][2 * j + 1] = f.y;
                    }
                }
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    if (t >= nt) {
                        break;
                    }
                    float4 q0 = __ldg(x[t] + 2 * u);
                    float4 q1 = __ldg(x[t] + 2 * u + 1);
                    float xf[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
#pragma unroll
                    for (int i = 0; i < R; i++) {
#pragma unroll
                        for (int j = 0; j < 8; j++) {
                            acc[i][t] = fmaf(wf[i][j], xf[j], acc[i][t]);
                        }
                    }
                }
            }
        }
    }
}

/*
 * Sum acc over the T threads of each group of the block (GEMV_THREADS threads, groups of T
 * consecutive threads, T a power of two >= 32). Every thread of the block must call it. On
 * return, thread `lane == 0` of each group holds the group's totals in acc.
 */
template <int NT, int R>
static __device__ __forceinline__ void
gemv_group_reduce(float (&acc)[R][NT], int lane, int T)
{
    __shared__ float red[GEMV_THREADS / 32][R * NT];
    int warp = threadIdx.x / 32;

#pragma unroll
    for (int i = 0; i < R; i++) {
#pragma unroll
        for (int t = 0; t < NT; t++) {
            acc[i][t] = mt_warp_sum(acc[i][t]);
        }
    }
    if (T == 32) {
        return;
    }
    if ((threadIdx.x & 31) == 0) {
#pragma unroll
        for (int i = 0; i < R; i++) {
#pragma unroll
            for (int t = 0; t < NT; t++) {
                red[warp][i * NT + t] = acc[i][t];
            }
        }
    }
    __syncthreads();
    if (lane == 0) {
#pragma unroll
        for (int i = 0; i < R; i++) {
#pragma unroll
            for (int t = 0; t < NT; t++) {
                float s = 0.0f;
                for (int wi = 0; wi < T / 32; wi++) {
                    s += red[warp + wi][i * NT + t];
                }
                acc[i][t] = s;
            }
        }
    }
}

/* Threads per row group for rows of `units` 16-byte units: enough units per thread to keep
 * loads in flight, but more threads per row when there are too few rows to fill the GPU. */
static int
gemv_group_threads(long long units, long long rows_total, int n_sm)
{
    int T = 32;

    while (T < GEMV_THREADS && (long long)T * 4 <= units) {
        T *= 2;
    }
    while (T < GEMV_THREADS && (long long)T * 2 <= units &&
           MT_CEIL_DIV(rows_total, (long long)(GEMV_THREADS / T) * GEMV_ROWS) < 2LL * n_sm) {
        T *= 2;
    }
    return T;
}


template <bool FP8, int NT>
static __global__ void
gemv_kernel(const uint8_t *__restrict__ W, const float *__restrict__ S, int64_t rows, int64_t cols,
            const float *__restrict__ x, float *__restrict__ y, int T, bool l2)
{
    const int R = GEMV_ROWS;
    int groups = GEMV_THREADS / T;
    int lane = threadIdx.x % T;
    int64_t r0 = ((int64_t)blockIdx.x * groups + threadIdx.x / T) * R;
    int64_t row_bytes = cols * (FP8 ? 1 : 2);
    int64_t n_cb = (cols + 127) / 128;
    int units = (int)(cols / (FP8 ? 16 : 8));
    const uint4 *wrow[R];
    const float *srow[R];
    const float4 *xr[NT];
    float acc[R][NT];

#pragma unroll
    for (int i = 0; i < R; i++) {
        int64_t r = r0 + i;
        wrow[i] = r < rows ? reinterpret_cast<const uint4 *>(W + r * row_bytes) : NULL;
        srow[i] = FP8 ? S + (r / 128) * n_cb : NULL;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            acc[i][t] = 0.0f;
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        xr[t] = reinterpret_cast<const float4 *>(x + t * cols);
    }
    /* this thread's first weight loads, asked of L2 before the wait (pdl.cuh; MT_GEMV_L2AHEAD) */
#pragma unroll
    for (int i = 0; l2 && i < R; i++) {
#pragma unroll
        for (int k = 0; k < GEMV_UNROLL; k++) {
            int u = lane + k * T;
            if (wrow[i] != NULL && u < units) {
                mt_prefetch_l2(wrow[i] + u);
            }
        }
    }
    mt_pdl_enter();
    gemv_group_dot<FP8, NT, R>(wrow, srow, units, xr, NT, lane, T, acc);
    gemv_group_reduce<NT, R>(acc, lane, T);
    if (lane != 0) {
        return;
    }
#pragma unroll
    for (int i = 0; i < R; i++) {
        if (r0 + i < rows) {
#pragma unroll
            for (int t = 0; t < NT; t++) {
                y[t * rows + r0 + i] = acc[i][t];
            }
        }
    }
}

template <bool FP8, int NT>
static mt_status_t
gemv_launch(const struct mt_gpu_weight *w, const float *x, float *y, cudaStream_t s)
{
    long long units = w->cols / (FP8 ? 16 : 8);
    int T = gemv_group_threads(units, w->rows, sm_count());
    long long rows_per_block = (long long)(GEMV_THREADS / T) * GEMV_ROWS;
    unsigned blocks = (unsigned)MT_CEIL_DIV(w->rows, rows_per_block);

    mt_pdl_launch(gemv_kernel<FP8, NT>, dim3(blocks), dim3(GEMV_THREADS), 0, s,
                  (const uint8_t *)w->data, w->scale, w->rows, w->cols, x, y, T,
                  gemv_knobs().l2ahead > 0);
    return mt_cuda_launched(FP8 ? "gemv_fp8" : "gemv_bf16", s);
}

template <bool FP8>
static mt_status_t
gemv_dispatch(const struct mt_gpu_weight *w, const float *x, int n_tok, float *y, cudaStream_t s)
{
    switch (n_tok) {
    case 1: return gemv_launch<FP8, 1>(w, x, y, s);
    case 2: return gemv_launch<FP8, 2>(w, x, y, s);
    case 3: return gemv_launch<FP8, 3>(w, x, y, s);
    case 4: return gemv_launch<FP8, 4>(w, x, y, s);
    case 5: return gemv_launch<FP8, 5>(w, x, y, s);
    case 6: return gemv_launch<FP8, 6>(w, x, y, s);
    case 7: return gemv_launch<FP8, 7>(w, x, y, s);
    default: return gemv_launch<FP8, 8>(w, x, y, s);
    }
}

/* The ring kernel for 1-4 tokens of an FP8 matrix (x staged, up as in mv_dense), or
 * MT_ERR_UNSUPPORTED with nothing launched where the knobs or the shared memory rule it out. */
static mt_status_t
gemv_fp8_ring(const struct mt_gpu_weight *w, const float *x, const float *up, int n_tok, float *y,
              cudaStream_t s)
{
    struct mv_knobs k = gemv_knobs();
    size_t xs = MV_XS_BYTES(n_tok, w->cols);
    size_t room = (size_t)smem_optin() - MV_RED_BYTES(MV_WARPS, 1);

    if (k.xs && k.async) {
        mt_status_t st = gemv_fp8_tma(w, x, up, n_tok, y, s);
        if (st != MT_ERR_UNSUPPORTED) {
            return st;
        }
    }
    if (k.xs && k.async && mv_two_blocks_on() &&
        xs + MV_RING_BYTES_W(4, MV_PAIR_WARPS) <= mv_pair_room()) {
        return gemv_fp8_launch<1, MV_P, true, 1, 4, MV_PAIR_WARPS>(w, x, n_tok, y, s, up);
    }
    if (k.xs && k.async && xs + MV_RING_BYTES(4) <= room) {
        return gemv_fp8_launch<1, MV_P, true, 1, 4>(w, x, n_tok, y, s, up);
    }
    if (k.xs && k.async && xs + MV_RING_BYTES(3) <= room) {
        return gemv_fp8_launch<1, MV_P, true, 1, 3>(w, x, n_tok, y, s, up);
    }
    return MT_ERR_UNSUPPORTED;
}

extern "C" mt_status_t
mt_gpu_linear_swiglu(const struct mt_gpu_weight *w, const float *gate, const float *up, float *y,
                     struct CUstream_st *stream)
{
    const char *env = getenv("MT_GEMV_SWIGLU"); /* read every call: a test takes both paths */

    if ((env != NULL && strcmp(env, "0") == 0) || w->dtype != MT_DTYPE_F8_E4M3 ||
        w->rows < 1 || w->cols < 1 || w->cols % 16 != 0 || w->data == NULL ||
        w->scale == NULL || gate == NULL || up == NULL || y == NULL ||
        ((uintptr_t)w->data | (uintptr_t)gate | (uintptr_t)up) % 16 != 0 ||
        w->rows * w->cols < ((int64_t)gemv_knobs().small_mb << 20)) {
        return MT_ERR_UNSUPPORTED;
    }
    return gemv_fp8_ring(w, gate, up, 1, y, stream);
}

extern "C" mt_status_t
mt_gpu_linear(const struct mt_gpu_weight *w, const float *x, int n_tok, float *y,
              struct CUstream_st *stream)
{
    bool fp8 = w->dtype == MT_DTYPE_F8_E4M3;

    if (!fp8 && w->dtype != MT_DTYPE_BF16) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu linear: weight dtype %s is not F8_E4M3 or BF16",
                       mt_dtype_name(w->dtype));
    }
    if (n_tok < 1 || n_tok > MT_GPU_GEMV_MAX_TOK || w->rows < 1 || w->cols < 1 ||
        w->cols % (fp8 ? 16 : 8) != 0 || w->rows > INT32_MAX * 2LL ||
        w->cols / 16 > INT32_MAX) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu linear: %lld x %lld %s weight with %d tokens",
                       (long long)w->rows, (long long)w->cols, mt_dtype_name(w->dtype), n_tok);
    }
    if (w->data == NULL || x == NULL || y == NULL || (fp8 && w->scale == NULL) ||
        ((uintptr_t)w->data | (uintptr_t)x) % 16 != 0) {
        return mt_fail(MT_ERR_INVAL, 0, "gpu linear: NULL or not 16-byte aligned operand");
    }
    if (!fp8) {
        return gemv_dispatch<false>(w, x, n_tok, y, stream);
    }
    struct mv_knobs k = gemv_knobs();
    if (n_tok == 1 && w->rows * w->cols < ((int64_t)k.small_mb << 20)) {
        return gemv_launch<true, 1>(w, x, y, stream);
    }
    if (n_tok > 4) {
        return gemv_fp8_launch<2, MV_P, false, MV_SW, 0>(w, x, n_tok, y, stream);
    }
    mt_status_t st = gemv_fp8_ring(w, x, nullptr, n_tok, y, stream);
    if (st != MT_ERR_UNSUPPORTED) {
        return st;
    }
    size_t xs = MV_XS_BYTES(n_tok, w->cols);
    size_t room = (size_t)smem_optin() - MV_RED_BYTES(MV_WARPS, 1);
    if (k.xs && xs <= std::min((size_t)MV_XS_MAX, room)) {
        return gemv_fp8_launch<1, MV_P, true, MV_SW, 0>(w, x, n_tok, y, stream);
    }
    return gemv_fp8_launch<1, MV_P, false, MV_SW, 0>(w, x, n_tok, y, stream);
}
