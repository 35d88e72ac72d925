/* SPDX-License-Identifier: MIT */
/*
 * plain_memcpy.cu - the yardstick for `moetier bench`'s PCIe and copy numbers: a plain loop of
 * synchronous cudaMemcpy calls timed with the wall clock, written the obvious way.
 *
 *   nvcc -O2 bench/plain_memcpy.cu -o plain_memcpy && ./plain_memcpy [MiB] [reps]
 *
 * Prints GB/s (1e9 bytes/s) for pinned host-to-device and device-to-host copies of MiB (default
 * 256) and a device-to-device copy of 1 GiB counted as read + write.
 */
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "plain_memcpy: %s: %s\n", #x, cudaGetErrorString(e_));                 \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static double
now()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

int
main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
    int reps = argc > 2 ? atoi(argv[2]) : 20;
    size_t bytes = mib << 20;
    size_t dbytes = (size_t)1 << 30;
    void *h, *d, *d1, *d2;
    double t0, t;

    CHECK(cudaMallocHost(&h, bytes));
    CHECK(cudaMalloc(&d, bytes));
    CHECK(cudaMalloc(&d1, dbytes));
    CHECK(cudaMalloc(&d2, dbytes));
    CHECK(cudaMemset(d1, 1, dbytes));
    for (size_t i = 0; i < bytes; i++) {
        ((unsigned char *)h)[i] = (unsigned char)i;
    }

    CHECK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice)); /* warm-up */
    t0 = now();
    for (int r = 0; r < reps; r++) {
        CHECK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    }
    t = now() - t0;
    printf("plain_memcpy h2d_gbps %.2f (%zu MiB x %d)\n", (double)bytes * reps / t * 1e-9, mib,
           reps);

    CHECK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
    t0 = now();
    for (int r = 0; r < reps; r++) {
        CHECK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
    }
    t = now() - t0;
    printf("plain_memcpy d2h_gbps %.2f (%zu MiB x %d)\n", (double)bytes * reps / t * 1e-9, mib,
           reps);
    for (size_t i = 0; i < bytes; i += 4099) {
        if (((unsigned char *)h)[i] != (unsigned char)i) {
            fprintf(stderr, "plain_memcpy: round trip changed byte %zu\n", i);
            return 1;
        }
    }

    CHECK(cudaMemcpy(d2, d1, dbytes, cudaMemcpyDeviceToDevice));
    CHECK(cudaDeviceSynchronize());
    t0 = now();
    for (int r = 0; r < reps; r++) {
        CHECK(cudaMemcpy(d2, d1, dbytes, cudaMemcpyDeviceToDevice));
    }
    CHECK(
        cudaDeviceSynchronize()); /* device-to-device cudaMemcpy may return before the copy ends */
    t = now() - t0;
    printf("plain_memcpy d2d_gbps %.2f (1 GiB x %d, read + write)\n",
           2.0 * dbytes * reps / t * 1e-9, reps);
    return 0;
}
