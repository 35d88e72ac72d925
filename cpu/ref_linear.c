/* SPDX-License-Identifier: MIT */
/*
 * ref_linear.c - y = W x for weights stored as FP8 (128x128 block scales), BF16, F16 or F32.
 *
 * The one idea: a weight is never expanded in memory. Each output row is dequantized into a
 * per-thread fp32 buffer and dotted with every input token, so the working set is one row per
 * thread whatever the matrix size; threads split the output rows (OpenMP, static schedule).
 */
#include <config.h>

#include "cpu/ref_ops.h"

#include "cpu/convert.h"

#include <stdbool.h>
#include <stdlib.h>

void
mt_cpu_weight_row(const struct mt_cpu_weight *w, int64_t r, float *out)
{
    int64_t cols = w->cols;

    switch (w->dtype) {
    case MT_DTYPE_F32: {
        const float *src = (const float *)w->data + r * cols;
        for (int64_t j = 0; j < cols; j++) {
            out[j] = src[j];
        }
        break;
    }
    case MT_DTYPE_BF16:
        mt_bf16_to_f32_n((const mt_bf16_t *)w->data + r * cols, out, (size_t)cols);
        break;
    case MT_DTYPE_F16:
        mt_f16_to_f32_n((const mt_f16_t *)w->data + r * cols, out, (size_t)cols);
        break;
    case MT_DTYPE_F8_E4M3: {
        const mt_fp8_t *src = (const mt_fp8_t *)w->data + r * cols;
        int64_t n_cb = MT_CEIL_DIV(cols, MT_CPU_FP8_BLOCK);
        const float *srow = w->scale + (r / MT_CPU_FP8_BLOCK) * n_cb;
        for (int64_t j = 0; j < cols; j++) {
            out[j] = mt_fp8_to_f32(src[j]) * srow[j / MT_CPU_FP8_BLOCK];
        }
        break;
    }
    default:
        /* the loaders admit only the four dtypes above */
        MT_ASSERT(!"weight dtype not computable on the CPU");
    }
}

/* Dot product with 8 partial sums (keeps the loop vectorizable without -ffast-math). */
static float
dot(const float *a, const float *b, int64_t n)
{
    float s[8] = {0};
    int64_t j = 0;

    for (; j + 8 <= n; j += 8) {
        for (int u = 0; u < 8; u++) {
            s[u] += a[j + u] * b[j + u];
        }
    }
    for (; j < n; j++) {
        s[0] += a[j] * b[j];
    }
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

mt_status_t
mt_cpu_linear(const struct mt_cpu_weight *w, const float *x, int n_tok, float *y)
{
    int64_t rows = w->rows;
    int64_t cols = w->cols;
    int failed = 0;
    /* small products run on the calling thread: a parallel region costs more than they do */
    bool par = (double)rows * (double)cols * n_tok >= 16777216.0;

#pragma omp parallel if (par)
    {
        float *row = malloc((size_t)cols * sizeof(float));
        if (row == NULL) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (row == NULL) {
                continue;
            }
            mt_cpu_weight_row(w, r, row);
            for (int t = 0; t < n_tok; t++) {
                y[(int64_t)t * rows + r] = dot(row, x + (int64_t)t * cols, cols);
            }
        }
        free(row);
    }
    if (failed) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a %lld-float row buffer",
                       (long long)cols);
    }
    return MT_OK;
}
