/* SPDX-License-Identifier: MIT */
/*
 * ref_rope.c - YaRN frequencies and the two RoPE layouts of DeepSeek-V3.2.
 *
 * The one idea: MLA and the indexer share one frequency table but pair dimensions differently.
 * MLA rotates interleaved pairs (x[2i], x[2i+1]); the indexer rotates halves (x[i], x[i+dim/2])
 * (spec 2.4 step 4, checklist item 1). Mixing them up still gives plausible numbers, so the
 * tests check both against the formula.
 */
#include <config.h>

#include "cpu/ref_ops.h"

#include <math.h>

/* The dimension index whose wavelength makes n_rot rotations over the original context. */
static double
correction_dim(double n_rot, int dim, double theta, int orig)
{
    return (dim * log(orig / (n_rot * 2.0 * M_PI))) / (2.0 * log(theta));
}

void
mt_cpu_rope_freqs(const struct mt_cpu_rope_params *p, float *freqs)
{
    int half = p->dim / 2;
    double low = 0.0;
    double high = 0.0;

    if (p->yarn) {
        low = floor(correction_dim(p->beta_fast, p->dim, p->theta, p->original_max_pos));
        high = ceil(correction_dim(p->beta_slow, p->dim, p->theta, p->original_max_pos));
        if (low < 0.0) {
            low = 0.0;
        }
        if (high > p->dim - 1) {
            high = p->dim - 1;
        }
        if (low == high) {
            high += 0.001;
        }
    }
    for (int i = 0; i < half; i++) {
        /* HF: 1 / theta^(arange(0, dim, 2) / dim), computed in fp32 from an fp32 exponent */
        double f = 1.0 / pow(p->theta, (double)(2 * i) / p->dim);
        if (p->yarn) {
            double ramp = (i - low) / (high - low);
            ramp = ramp < 0.0 ? 0.0 : (ramp > 1.0 ? 1.0 : ramp);
            /* extrapolation weight is 1 - ramp: low dims keep f, high dims get f / factor */
            f = f / p->factor * ramp + f * (1.0 - ramp);
        }
        freqs[i] = (float)f;
    }
}

void
mt_cpu_rope_cossin(const float *freqs, int half, int64_t pos, float *cos_out, float *sin_out)
{
    for (int i = 0; i < half; i++) {
        float angle = (float)pos * freqs[i];
        cos_out[i] = (float)cos((double)angle);
        sin_out[i] = (float)sin((double)angle);
    }
}

void
mt_cpu_rope_interleaved(float *x, const float *cos, const float *sin, int half)
{
    for (int i = 0; i < half; i++) {
        float a = x[2 * i];
        float b = x[2 * i + 1];
        x[2 * i] = a * cos[i] - b * sin[i];
        x[2 * i + 1] = b * cos[i] + a * sin[i];
    }
}

void
mt_cpu_rope_half(float *x, const float *cos, const float *sin, int half)
{
    for (int i = 0; i < half; i++) {
        float a = x[i];
        float b = x[i + half];
        x[i] = a * cos[i] - b * sin[i];
        x[i + half] = b * cos[i] + a * sin[i];
    }
}
