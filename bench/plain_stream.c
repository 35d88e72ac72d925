/* SPDX-License-Identifier: MIT */
/*
 * plain_stream.c - a plain STREAM-like triad (and sum) with OpenMP, written the obvious way, as
 * the yardstick for `moetier bench`'s DRAM numbers (cpu/stream.c). Nothing clever: no pinning
 * of its own (use OMP_PROC_BIND/OMP_PLACES), parallel-for first touch, plain loops.
 *
 *   gcc -O2 -fopenmp bench/plain_stream.c -o plain_stream
 *   OMP_PROC_BIND=close OMP_PLACES=cores ./plain_stream [MiB per array] [reps]
 *
 * Prints the median over reps (after one warm-up) of triad a = b + s*c (3 arrays counted) and of
 * a read-only sum, in GB/s (1e9 bytes/s).
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int
cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double
median(double *t, int n)
{
    qsort(t, n, sizeof(double), cmp);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

int
main(int argc, char **argv)
{
    long mib = argc > 1 ? atol(argv[1]) : 1024;
    int reps = argc > 2 ? atoi(argv[2]) : 20;
    long n = mib * (1L << 20) / (long)sizeof(double);
    double *a = malloc(n * sizeof(double));
    double *b = malloc(n * sizeof(double));
    double *c = malloc(n * sizeof(double));
    double *tt = malloc(reps * sizeof(double));
    double *tr = malloc(reps * sizeof(double));
    double sum = 0.0;

    if (a == NULL || b == NULL || c == NULL || tt == NULL || tr == NULL || reps < 1) {
        fprintf(stderr, "plain_stream: cannot allocate 3 x %ld MiB\n", mib);
        return 1;
    }
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        a[i] = 0.0;
        b[i] = 1.0;
        c[i] = 2.0;
    }
    for (int r = -1; r < reps; r++) {
        double t0 = now();

#pragma omp parallel for schedule(static)
        for (long i = 0; i < n; i++) {
            a[i] = b[i] + 3.0 * c[i];
        }
        if (r >= 0) {
            tt[r] = now() - t0;
        }
    }
    for (int r = -1; r < reps; r++) {
        double t0 = now();
        double s = 0.0;

#pragma omp parallel for schedule(static) reduction(+ : s)
        for (long i = 0; i < n; i++) {
            s += b[i];
        }
        sum += s;
        if (r >= 0) {
            tr[r] = now() - t0;
        }
    }
    if (a[n / 2] != 7.0 || sum != (double)n * (reps + 1)) {
        fprintf(stderr, "plain_stream: wrong results\n");
        return 1;
    }
    printf("plain_stream threads %d array %ld MiB reps %d\n", omp_get_max_threads(), mib, reps);
    printf("plain_stream triad_gbps %.2f\n", 3.0 * n * sizeof(double) / median(tt, reps) * 1e-9);
    printf("plain_stream read_gbps %.2f\n", (double)n * sizeof(double) / median(tr, reps) * 1e-9);
    return 0;
}
