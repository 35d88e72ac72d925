/* SPDX-License-Identifier: MIT */
/*
 * ref_norm.c - RMSNorm, LayerNorm (with bias, for the indexer's k_norm) and softmax, in fp32.
 *
 * Sums of squares are accumulated in double: the reference should not be the least accurate
 * thing in a comparison.
 */
#include <config.h>

#include "cpu/ref_ops.h"

#include <math.h>

void
mt_cpu_rmsnorm(const float *x, const float *w, int n, float eps, float *out)
{
    double ss = 0.0;

    for (int i = 0; i < n; i++) {
        ss += (double)x[i] * x[i];
    }
    float r = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) {
        out[i] = x[i] * r * w[i];
    }
}

void
mt_cpu_layernorm(const float *x, const float *w, const float *b, int n, float eps, float *out)
{
    double mean = 0.0;
    double var = 0.0;

    for (int i = 0; i < n; i++) {
        mean += x[i];
    }
    mean /= n;
    for (int i = 0; i < n; i++) {
        double d = x[i] - mean;
        var += d * d;
    }
    var /= n;
    float r = (float)(1.0 / sqrt(var + eps));
    for (int i = 0; i < n; i++) {
        out[i] = (float)(x[i] - mean) * r * w[i] + (b != NULL ? b[i] : 0.0f);
    }
}

void
mt_cpu_softmax(float *x, int n)
{
    float m = -INFINITY;
    double sum = 0.0;

    for (int i = 0; i < n; i++) {
        if (isnan(x[i])) {
            /* a NaN score is corruption, not a mask: the whole row becomes NaN, as in torch */
            for (int j = 0; j < n; j++) {
                x[j] = NAN;
            }
            return;
        }
        if (x[i] > m) {
            m = x[i];
        }
    }
    if (m == -INFINITY) {
        for (int i = 0; i < n; i++) {
            x[i] = 0.0f;
        }
        return;
    }
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) {
        x[i] *= inv;
    }
}
