/* SPDX-License-Identifier: MIT */
/*
 * kernels.h - the C entry points of moetier's CUDA kernels.
 *
 * Built only when configure found CUDA (MT_HAVE_CUDA). Without it every entry point below is an
 * inline stub returning MT_ERR_UNSUPPORTED, so callers need no #ifdef: they ask
 * mt_gpu_device_count() and take the CPU path when it reports no device.
 */
#ifndef MT_KERNELS_H
#define MT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct mt_gpu_info {
    char name[256];
    size_t total_mem;    /* bytes of device memory */
    size_t free_mem;     /* bytes free now */
    int sm_major;        /* compute capability */
    int sm_minor;
    int multiprocessors;
    int driver_version;  /* e.g. 13000 for 13.0 */
    int runtime_version;
    size_t l2_bytes;     /* L2 cache size */
};

/* One bandwidth benchmark (kernels/bench.cu): median and p90 of the timed repetitions. */
struct mt_gpu_bench_timing {
    double median_ms; /* one repetition (one transfer, for batched copies) */
    double p90_ms;
    double gbps;      /* bytes moved / median: see each function for what "moved" counts */
    double tflops;    /* GEMM only */
};

enum mt_gpu_copy_dir {
    MT_GPU_COPY_H2D = 0, /* pinned host memory to device */
    MT_GPU_COPY_D2H = 1,
};

#ifdef MT_HAVE_CUDA

/*
 * Number of usable CUDA devices in *count_out. A machine without a driver or a GPU is not an
 * error: it gives 0 and MT_OK, and mt_gpu_device_none_reason() says which it was. Any other
 * failure of the CUDA runtime (a driver/runtime mismatch, devices busy or unavailable, a failed
 * initialization) gives 0 and MT_ERR_CUDA with CUDA's reason in the message.
 */
mt_status_t mt_gpu_device_count(int *count_out);

/* Why the last mt_gpu_device_count() found no device ("" when it found some). Static string. */
const char *mt_gpu_device_none_reason(void);

/* Properties of device dev. MT_ERR_CUDA when the device cannot be queried. */
mt_status_t mt_gpu_device_info(int dev, struct mt_gpu_info *info_out);

/* Synchronize the stream after every kernel launch that follows (on) and report a kernel's
 * failure under its own name, or not (off). Until called, MT_DEBUG_SYNC=1 in the environment
 * decides (read at the first launch). For --debug-sync. */
void mt_gpu_debug_sync_set(bool on);

/*
 * Bandwidth benchmarks of device dev (kernels/bench.cu), each one warm-up + reps timed runs with
 * CUDA events on its own stream. MT_ERR_INVAL for bad sizes, MT_ERR_NOMEM/MT_ERR_CUDA otherwise.
 *  - selftest: the read kernel's sum and D2D, D2H, H2D copies (64 KiB, 4 MiB) checked against
 *    the host; MT_ERR_INTERNAL on a mismatch. Run it before trusting any timing.
 *  - hbm_read: a kernel reading `bytes` (16-byte loads); gbps counts bytes read.
 *  - d2d_copy: cudaMemcpyAsync device to device; gbps counts bytes read + bytes written.
 *  - pcie: pinned copies in one direction at each of n_sizes sizes (out has n_sizes entries);
 *    small sizes are timed in batches of back-to-back copies; gbps per transfer.
 *  - pcie_bidir: H2D and D2H of `bytes` at once on two streams; gbps counts both directions.
 *  - bf16_gemm: cuBLAS n x n x n BF16 GEMM, fp32 accumulation, random data; tflops = 2n^3/t.
 */
mt_status_t mt_gpu_bench_selftest(int dev);
mt_status_t mt_gpu_bench_hbm_read(int dev, size_t bytes, int reps,
                                  struct mt_gpu_bench_timing *out);
mt_status_t mt_gpu_bench_d2d_copy(int dev, size_t bytes, int reps,
                                  struct mt_gpu_bench_timing *out);
mt_status_t mt_gpu_bench_pcie(int dev, enum mt_gpu_copy_dir dir, const size_t *sizes,
                              int n_sizes, int reps, struct mt_gpu_bench_timing *out);
mt_status_t mt_gpu_bench_pcie_bidir(int dev, size_t bytes, int reps,
                                    struct mt_gpu_bench_timing *out);
mt_status_t mt_gpu_bench_bf16_gemm(int dev, int n, int reps, struct mt_gpu_bench_timing *out);

struct CUstream_st;

/* One launch of hbm_read's kernel over `bytes` (a multiple of 16) of device memory p on stream s,
 * with blocks_per_sm blocks of 512 threads an SM, adding the words into *sum: for bench_kernels,
 * which times it the way it times a GEMV (over copies, in a graph). */
mt_status_t mt_gpu_read_launch(const void *p, size_t bytes, int blocks_per_sm,
                               unsigned long long *sum, struct CUstream_st *s);
/* The same reads in a GEMV's order (one block a SM, each warp a range of 2 KB units of rb rows
 * of a [rows, row_bytes] matrix; rb 16 is the GEMV's step, 4 and 1 touch fewer DRAM rows a
 * unit); row_bytes a multiple of 2048. */
mt_status_t mt_gpu_read_rows_launch(const void *p, int64_t rows, int64_t row_bytes, int rb,
                                    unsigned long long *sum, struct CUstream_st *s);

#else /* !MT_HAVE_CUDA */

static inline mt_status_t
mt_gpu_device_count(int *count_out)
{
    *count_out = 0;
    return MT_OK;
}

static inline const char *
mt_gpu_device_none_reason(void)
{
    return "moetier was built without CUDA";
}

static inline void
mt_gpu_debug_sync_set(bool on)
{
    (void)on;
}

static inline mt_status_t
mt_gpu_device_info(int dev, struct mt_gpu_info *info_out)
{
    (void)dev;
    (void)info_out;
    return mt_fail(MT_ERR_UNSUPPORTED, 0, "moetier was built without CUDA (configure --with-cuda)");
}

static inline mt_status_t
mt_gpu_bench_unsupported_(void)
{
    return mt_fail(MT_ERR_UNSUPPORTED, 0, "moetier was built without CUDA (configure --with-cuda)");
}

static inline mt_status_t
mt_gpu_bench_selftest(int dev)
{
    (void)dev;
    return mt_gpu_bench_unsupported_();
}

static inline mt_status_t
mt_gpu_bench_hbm_read(int dev, size_t bytes, int reps, struct mt_gpu_bench_timing *out)
{
    (void)dev, (void)bytes, (void)reps, (void)out;
    return mt_gpu_bench_unsupported_();
}

static inline mt_status_t
mt_gpu_bench_d2d_copy(int dev, size_t bytes, int reps, struct mt_gpu_bench_timing *out)
{
    (void)dev, (void)bytes, (void)reps, (void)out;
    return mt_gpu_bench_unsupported_();
}

static inline mt_status_t
mt_gpu_bench_pcie(int dev, enum mt_gpu_copy_dir dir, const size_t *sizes, int n_sizes, int reps,
                  struct mt_gpu_bench_timing *out)
{
    (void)dev, (void)dir, (void)sizes, (void)n_sizes, (void)reps, (void)out;
    return mt_gpu_bench_unsupported_();
}

static inline mt_status_t
mt_gpu_bench_pcie_bidir(int dev, size_t bytes, int reps, struct mt_gpu_bench_timing *out)
{
    (void)dev, (void)bytes, (void)reps, (void)out;
    return mt_gpu_bench_unsupported_();
}

static inline mt_status_t
mt_gpu_bench_bf16_gemm(int dev, int n, int reps, struct mt_gpu_bench_timing *out)
{
    (void)dev, (void)n, (void)reps, (void)out;
    return mt_gpu_bench_unsupported_();
}

#endif /* MT_HAVE_CUDA */

#ifdef __cplusplus
}
#endif

#endif /* MT_KERNELS_H */
