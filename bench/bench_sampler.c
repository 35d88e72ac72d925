/* SPDX-License-Identifier: MIT */
/*
 * bench_sampler.c - microseconds per mt_sampler_sample call on DeepSeek's 129,280-token
 * vocabulary, against the sampler it replaced (a scalar argmax; a full qsort of every candidate),
 * copied here as the reference.
 *
 *   bench_sampler [--iters N]      (default 50 timed calls per case, after 5 warm-up calls)
 *
 * Logit shapes: "peaked" (300 tokens 10-14 above a spread of N(0, 1)-like noise, so that a few
 * hundred tokens carry most of the mass, as after a confident step), "wide" (N(0, 3)-like, the
 * nucleus in the thousands) and "flat" (uniform in [0, 0.01): the nucleus is 95% of the vocabulary,
 * the worst case of the partial sort). Each case first checks that both pick the same tokens for
 * the same seed, then times; the table gives median and p90 and the nucleus size (the tokens
 * top-p keeps).
 */
#include <config.h>

#include "runtime/base/clock.h"
#include "runtime/base/rng.h"
#include "runtime/text/sampler.h"
#include "tests/sampler_ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VOCAB 129280
#define WARMUP 5
#define CHECKS 20

/* Where timed results go, so that the compiler cannot drop a call whose result is unused. */
static volatile int32_t sink;

/* ---- logits and timing -------------------------------------------------------------------- */

enum shape { SHAPE_PEAKED, SHAPE_WIDE, SHAPE_FLAT };

static const char *const shape_name[] = {"peaked", "wide", "flat"};

static void
fill_logits(float *x, int n, enum shape shape, uint64_t seed)
{
    struct mt_rng g;

    mt_rng_init(&g, seed);
    for (int i = 0; i < n; i++) {
        double noise = 0.0;
        for (int j = 0; j < 3; j++) {
            noise += mt_rng_uniform(&g);
        }
        noise = 2.0 * (noise - 1.5); /* mean 0, sd 1 */
        switch (shape) {
        case SHAPE_PEAKED:
            x[i] = (float)noise;
            break;
        case SHAPE_WIDE:
            x[i] = (float)(3.0 * noise);
            break;
        case SHAPE_FLAT:
            x[i] = (float)(0.01 * mt_rng_uniform(&g));
            break;
        }
    }
    if (shape == SHAPE_PEAKED) {
        for (int k = 0; k < 300; k++) {
            x[mt_rng_below(&g, (uint64_t)n)] = (float)(10.0 + 4.0 * mt_rng_uniform(&g));
        }
    }
}

static int
cmp_double(const void *pa, const void *pb)
{
    double a = *(const double *)pa;
    double b = *(const double *)pb;

    return (a > b) - (a < b);
}

struct timing {
    double median_us;
    double p90_us;
};

static struct timing
summarize(double *us, int n)
{
    struct timing t;

    qsort(us, (size_t)n, sizeof(*us), cmp_double);
    t.median_us = n % 2 ? us[n / 2] : 0.5 * (us[n / 2 - 1] + us[n / 2]);
    t.p90_us = us[(int)ceil(0.9 * n) - 1];
    return t;
}

struct bench_case {
    enum shape shape;
    float temperature;
    float top_p;
    int top_k;
};

struct buffers {
    float *logits;      // (VOCAB)
    struct ref_cand *c; // (VOCAB)
    double *p;          // (VOCAB)
    double *us;         // (iters)
};

/* One table row; false when the new sampler picks another token than the reference. */
static bool
run_case(const struct bench_case *bc, struct buffers *b, int iters)
{
    struct mt_sampler_opts o;
    struct mt_sampler *s = NULL;
    struct mt_rng rng;
    int kept = 0;
    int32_t want;
    int32_t got;

    mt_sampler_opts_default(&o);
    o.temperature = bc->temperature;
    o.top_p = bc->top_p;
    o.top_k = bc->top_k;
    o.seed = 1234;
    fill_logits(b->logits, VOCAB, bc->shape, 99);
    if (mt_sampler_create(&o, VOCAB, &s) != MT_OK) {
        fprintf(stderr, "bench_sampler: cannot create the sampler\n");
        return false;
    }
    mt_rng_init(&rng, o.seed);
    for (int i = 0; i < CHECKS; i++) {
        want = ref_sample(&o, &rng, b->logits, VOCAB, b->c, b->p, &kept);
        if (mt_sampler_sample(s, b->logits, &got) != MT_OK || got != want) {
            fprintf(stderr, "bench_sampler: %s logits, draw %d: token %d, reference %d\n",
                    shape_name[bc->shape], i, got, want);
            mt_sampler_destroy(s);
            return false;
        }
    }

    for (int i = -WARMUP; i < iters; i++) {
        double t0 = mt_clock_now();
        sink = ref_sample(&o, &rng, b->logits, VOCAB, b->c, b->p, &kept);
        if (i >= 0) {
            b->us[i] = 1e6 * (mt_clock_now() - t0);
        }
    }
    struct timing old = summarize(b->us, iters);
    for (int i = -WARMUP; i < iters; i++) {
        double t0 = mt_clock_now();
        mt_sampler_sample(s, b->logits, &got);
        sink = got;
        if (i >= 0) {
            b->us[i] = 1e6 * (mt_clock_now() - t0);
        }
    }
    struct timing new = summarize(b->us, iters);
    mt_sampler_destroy(s);

    char mode[48];
    if (bc->temperature <= 0.0f) {
        snprintf(mode, sizeof(mode), "greedy");
    } else {
        snprintf(mode, sizeof(mode), "T %g top-p %g top-k %d", (double)bc->temperature,
                 (double)bc->top_p, bc->top_k);
    }
    printf("%-26s %-7s %7d %11.1f %9.1f %11.1f %9.1f %8.1fx\n", mode, shape_name[bc->shape], kept,
           old.median_us, old.p90_us, new.median_us, new.p90_us, old.median_us / new.median_us);
    return true;
}

static void
print_header(int iters)
{
    char cpu[128] = "unknown CPU";
    char line[256];
    FILE *f = fopen("/proc/cpuinfo", "r");

    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
            snprintf(cpu, sizeof(cpu), "%s", colon + 2);
            cpu[strcspn(cpu, "\n")] = 0;
            break;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    printf("# bench_sampler | %s | vocab %d, float32 logits | %d timed calls per case after %d "
           "warm-up | us per call\n",
           cpu, VOCAB, iters, WARMUP);
    printf("%-26s %-7s %7s %11s %9s %11s %9s %9s\n", "mode", "logits", "nucleus", "old_median",
           "old_p90", "new_median", "new_p90", "speedup");
}

int
main(int argc, char **argv)
{
    static const struct bench_case cases[] = {
        {SHAPE_PEAKED, 0.0f, 1.0f, 0},   {SHAPE_FLAT, 0.0f, 1.0f, 0},
        {SHAPE_PEAKED, 1.0f, 0.95f, 0},  {SHAPE_WIDE, 1.0f, 0.95f, 0},
        {SHAPE_FLAT, 1.0f, 0.95f, 0},    {SHAPE_PEAKED, 1.0f, 1.0f, 0},
        {SHAPE_PEAKED, 0.7f, 0.95f, 50},
    };
    struct buffers b;
    int iters = 50;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
            iters = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: bench_sampler [--iters N]   (default 50)\n");
            return 2;
        }
    }
    if (iters < 1) {
        fprintf(stderr, "bench_sampler: --iters must be at least 1\n");
        return 2;
    }
    b.logits = malloc(VOCAB * sizeof(*b.logits));
    b.c = malloc(VOCAB * sizeof(*b.c));
    b.p = malloc(VOCAB * sizeof(*b.p));
    b.us = malloc((size_t)iters * sizeof(*b.us));
    if (b.logits == NULL || b.c == NULL || b.p == NULL || b.us == NULL) {
        fprintf(stderr, "bench_sampler: cannot allocate buffers for %d tokens\n", VOCAB);
        return 1;
    }
    print_header(iters);
    int rc = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (!run_case(&cases[i], &b, iters)) {
            rc = 1;
        }
    }
    free(b.logits);
    free(b.c);
    free(b.p);
    free(b.us);
    return rc;
}
