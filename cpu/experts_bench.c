/* SPDX-License-Identifier: MIT */
/*
 * experts_bench.c - synthetic expert pool and timed layers (cpu/experts_bench.h).
 */
#include <config.h>

#include "cpu/experts_bench.h"

#include "cpu/convert.h"
#include "cpu/stream.h"
#include "runtime/base/clock.h"
#include "runtime/base/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct mt_cpu_expert_pool {
    struct mt_cpu_team *team;
    enum mt_dtype dtype;
    int n;
    int hidden;
    int inter;
    size_t esz;
    uint8_t *data;           /* n x (gate, up, down) */
    float *scale;            /* n x 3 x (inter/128 x hidden/128) */
    struct mt_cpu_weight *w; /* (3n) */
    int *order;              /* rotation */
    int cursor;
    struct mt_rng rng;
};

struct fill_job {
    struct mt_cpu_expert_pool *p;
    size_t bytes;
};

static void
fill_run(void *arg, int tid, int nt)
{
    struct fill_job *f = arg;
    size_t lo = f->bytes * (size_t)tid / (size_t)nt / 64 * 64;
    size_t hi = tid == nt - 1 ? f->bytes : f->bytes * (size_t)(tid + 1) / (size_t)nt / 64 * 64;
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(tid + 1);

    for (size_t i = lo; i < hi; i += 8) {
        uint64_t v;

        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v = s;
        if (f->p->dtype == MT_DTYPE_F8_E4M3) {
            v &= 0xbebebebebebebebeull; /* never 0x7f / 0xff (NaN) */
        } else {
            v = (v & 0x80ff80ff80ff80ffull) | 0x3c003c003c003c00ull; /* bf16 of |x| < 0.03 */
        }
        memcpy(f->p->data + i, &v, MT_MIN(8, hi - i));
    }
}

mt_status_t
mt_cpu_expert_pool_create(struct mt_cpu_team *team, enum mt_dtype dtype, int n, int hidden,
                          int inter, struct mt_cpu_expert_pool **pool_out)
{
    struct mt_cpu_expert_pool *p = calloc(1, sizeof(*p));
    size_t per = (size_t)hidden * (size_t)inter;
    size_t ns = (size_t)MT_CEIL_DIV(hidden, 128) * (size_t)MT_CEIL_DIV(inter, 128);
    struct fill_job f;

    if (p == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate an expert pool");
    }
    p->team = team;
    p->dtype = dtype;
    p->n = n;
    p->hidden = hidden;
    p->inter = inter;
    p->esz = dtype == MT_DTYPE_F8_E4M3 ? 1 : 2;
    f.bytes = 3 * per * p->esz * (size_t)n;
    p->data = aligned_alloc((size_t)2 << 20, MT_CEIL_DIV(f.bytes, (size_t)2 << 20) << 21);
    p->scale = malloc(3 * ns * (size_t)n * sizeof(float));
    p->w = calloc(3 * (size_t)n, sizeof(*p->w));
    p->order = malloc((size_t)n * sizeof(int));
    if (p->data == NULL || p->scale == NULL || p->w == NULL || p->order == NULL) {
        mt_cpu_expert_pool_destroy(p);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %d experts (%zu bytes)", n, f.bytes);
    }
    (void)madvise(p->data, MT_CEIL_DIV(f.bytes, (size_t)2 << 20) << 21, MADV_HUGEPAGE);
    f.p = p;
    mt_cpu_team_run(team, 0, fill_run, &f);
    mt_rng_init(&p->rng, 12345);
    for (size_t i = 0; i < 3 * ns * (size_t)n; i++) {
        p->scale[i] = (float)(0.5 + mt_rng_uniform(&p->rng)) * 1e-3f;
    }
    for (int e = 0; e < n; e++) {
        for (int m = 0; m < 3; m++) {
            struct mt_cpu_weight *w = &p->w[3 * e + m];

            w->dtype = dtype;
            w->data = p->data + (3 * (size_t)e + (size_t)m) * per * p->esz;
            w->scale =
                dtype == MT_DTYPE_F8_E4M3 ? p->scale + (3 * (size_t)e + (size_t)m) * ns : NULL;
            w->rows = m < 2 ? inter : hidden;
            w->cols = m < 2 ? hidden : inter;
        }
        p->order[e] = e;
    }
    p->cursor = n;
    *pool_out = p;
    return MT_OK;
}

void
mt_cpu_expert_pool_destroy(struct mt_cpu_expert_pool *p)
{
    if (p == NULL) {
        return;
    }
    free(p->order);
    free(p->w);
    free(p->scale);
    free(p->data);
    free(p);
}

double
mt_cpu_expert_pool_expert_bytes(const struct mt_cpu_expert_pool *p)
{
    double ns = (double)MT_CEIL_DIV(p->hidden, 128) * (double)MT_CEIL_DIV(p->inter, 128);

    return 3.0 * (double)p->hidden * p->inter * (double)p->esz +
           (p->dtype == MT_DTYPE_F8_E4M3 ? 3.0 * ns * 4.0 : 0.0);
}

/* The next expert of the rotation (reshuffled when every one has been used). */
static int
next_expert(struct mt_cpu_expert_pool *p)
{
    if (p->cursor >= p->n) {
        for (int i = p->n - 1; i > 0; i--) {
            int j = (int)mt_rng_below(&p->rng, (uint64_t)i + 1);
            int t = p->order[i];

            p->order[i] = p->order[j];
            p->order[j] = t;
        }
        p->cursor = 0;
    }
    return p->order[p->cursor++];
}

/*
 * Tokens of expert j of k whose counts spread like a chunk's around mean (spread) or are all mean
 * (mt_cpu_expert_pool_time_chunk): evenly spaced offsets c (j - (k - 1) / 2), whose standard
 * deviation c sqrt((k^2 - 1) / 12) is sqrt(mean); symmetric, so they sum to k x mean where no
 * count is clipped at 1.
 */
static int
chunk_tokens(int mean, int j, int k, bool spread)
{
    if (!spread || k < 2) {
        return mean;
    }
    double c = sqrt((double)mean) / sqrt(((double)k * k - 1.0) / 12.0);
    long m = mean + lround(c * (j - (k - 1) / 2.0));

    return m < 1 ? 1 : (int)m;
}

static mt_status_t
pool_time(struct mt_cpu_expert_pool *p, struct mt_cpu_moe *moe, int threads, int tokens, int k,
          int per_expert, bool spread, int steps, struct mt_cpu_moe_timing *out)
{
    int max_jobs = per_expert > 0 ? k : tokens * k;
    int max_m = per_expert > 0 ? chunk_tokens(per_expert, k - 1, k, spread) : tokens;
    struct mt_cpu_expert_job *jobs = calloc((size_t)max_jobs, sizeof(*jobs));
    int *ids = calloc((size_t)max_jobs, sizeof(int));
    /* every job its own input, as in a real layer (kernels may cache a converted input) */
    float *x = malloc((size_t)max_jobs * (size_t)max_m * (size_t)p->hidden * sizeof(float));
    float *y = malloc((size_t)max_jobs * (size_t)max_m * (size_t)p->hidden * sizeof(float));
    double *t = calloc((size_t)steps, sizeof(double));
    mt_status_t st = MT_OK;

    if (steps < 1) {
        st = mt_fail(MT_ERR_INVAL, 0, "a timed layer needs at least one step (got %d)", steps);
        goto out;
    }
    if (jobs == NULL || ids == NULL || x == NULL || y == NULL || t == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a timed layer of %d jobs", max_jobs);
        goto out;
    }
    for (size_t i = 0; i < (size_t)max_jobs * (size_t)max_m * (size_t)p->hidden; i++) {
        x[i] = (float)mt_rng_uniform(&p->rng) - 0.5f;
    }
    memset(out, 0, sizeof(*out));
    for (int s = -1; s < steps && st == MT_OK; s++) {
        int n = 0;
        double macs = 0.0;
        long pairs = 0;

        if (per_expert > 0) {
            for (int j = 0; j < k; j++) {
                ids[n] = next_expert(p);
                jobs[n].m = chunk_tokens(per_expert, j, k, spread);
                n++;
            }
        } else {
            /* tokens x k routings; a token's k experts are distinct, tokens may share */
            for (int tok = 0; tok < tokens; tok++) {
                int first = n;

                for (int j = 0; j < k; j++) {
                    int e = next_expert(p);
                    int found = -1;

                    for (int q = 0; q < n; q++) {
                        found = ids[q] == e ? q : found;
                    }
                    if (found >= first) {
                        j--; /* already one of this token's experts: draw again */
                        continue;
                    }
                    if (found >= 0) {
                        jobs[found].m++;
                    } else {
                        ids[n] = e;
                        jobs[n].m = 1;
                        n++;
                    }
                }
            }
        }
        for (int j = 0; j < n && s < 0; j++) { /* the first step: its counts' range */
            out->m_min = j == 0 || jobs[j].m < out->m_min ? jobs[j].m : out->m_min;
            out->m_max = j == 0 || jobs[j].m > out->m_max ? jobs[j].m : out->m_max;
        }
        for (int j = 0; j < n; j++) {
            jobs[j].gate = &p->w[3 * ids[j]];
            jobs[j].up = &p->w[3 * ids[j] + 1];
            jobs[j].down = &p->w[3 * ids[j] + 2];
            jobs[j].x = x + (size_t)j * (size_t)max_m * (size_t)p->hidden;
            jobs[j].y = y + (size_t)j * (size_t)max_m * (size_t)p->hidden;
            macs += 3.0 * p->hidden * (double)p->inter * jobs[j].m;
            pairs += jobs[j].m;
        }
        double t0 = mt_clock_now();

        st = mt_cpu_moe_run(moe, jobs, n, threads);
        if (s >= 0) {
            t[s] = mt_clock_now() - t0;
            out->bytes += n * mt_cpu_expert_pool_expert_bytes(p) / steps;
            out->flops += 2.0 * macs / steps;
            out->pairs = pairs;
        }
    }
    if (st == MT_OK) {
        mt_cpu_median_p90(t, steps, &out->median_s, &out->p90_s);
    }
out:
    free(t);
    free(y);
    free(x);
    free(ids);
    free(jobs);
    return st;
}

mt_status_t
mt_cpu_expert_pool_time(struct mt_cpu_expert_pool *p, struct mt_cpu_moe *moe, int threads,
                        int tokens, int k, int per_expert, int steps, struct mt_cpu_moe_timing *out)
{
    return pool_time(p, moe, threads, tokens, k, per_expert, false, steps, out);
}

mt_status_t
mt_cpu_expert_pool_time_chunk(struct mt_cpu_expert_pool *p, struct mt_cpu_moe *moe, int threads,
                              int k, int mean, int steps, struct mt_cpu_moe_timing *out)
{
    if (mean < 1) {
        return mt_fail(MT_ERR_INVAL, 0, "a timed chunk needs experts of 1 token or more (got %d)",
                       mean);
    }
    return pool_time(p, moe, threads, 0, k, mean, true, steps, out);
}

struct read_job {
    const uint8_t *const *base; /* (k) each expert's gate, up and down, contiguous */
    int k;
    size_t per; /* bytes of one expert's three matrices */
    int streams;
    int prefetch;
    uint64_t sink[256]; /* per thread, so the loads are not dropped */
};

static void
read_run(void *arg, int tid, int nt)
{
    struct read_job *r = arg;
    size_t grain = 128 * (size_t)r->streams;
    size_t total = r->per * (size_t)r->k;
    size_t lo = total * (size_t)tid / (size_t)nt / grain * grain;
    size_t hi = tid == nt - 1 ? total : total * (size_t)(tid + 1) / (size_t)nt / grain * grain;
    uint64_t acc = 0;

    /* [lo, hi) of the experts laid end to end, one piece per expert it crosses */
    for (size_t at = lo; at < hi;) {
        size_t e = at / r->per;
        size_t off = at % r->per;
        size_t len = MT_MIN(hi - at, r->per - off) / grain * grain;

        if (len == 0) {
            break; /* the tail of an expert shorter than a grain: a few bytes, left out */
        }
        acc |= mt_cpu_read_or(r->base[e] + off, len, r->streams, r->prefetch);
        at += len;
    }
    r->sink[tid % 256] = acc;
}

mt_status_t
mt_cpu_expert_pool_read(struct mt_cpu_expert_pool *p, int threads, int k, int streams, int prefetch,
                        int steps, struct mt_cpu_moe_timing *out)
{
    const uint8_t **base = calloc((size_t)k, sizeof(*base));
    double *t = calloc((size_t)steps, sizeof(double));
    struct read_job r;
    mt_status_t st = MT_OK;

    if (steps < 1) {
        st = mt_fail(MT_ERR_INVAL, 0, "a timed read needs at least one step (got %d)", steps);
        goto out;
    }
    if (base == NULL || t == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a timed read of %d experts", k);
        goto out;
    }
    memset(&r, 0, sizeof(r));
    r.base = base;
    r.k = k;
    r.per = 3 * (size_t)p->hidden * (size_t)p->inter * p->esz;
    r.streams = streams;
    r.prefetch = prefetch;
    memset(out, 0, sizeof(*out));
    for (int s = -1; s < steps; s++) {
        for (int j = 0; j < k; j++) {
            base[j] = p->w[3 * next_expert(p)].data; /* gate; up and down follow it */
        }
        double t0 = mt_clock_now();

        mt_cpu_team_run(p->team, threads, read_run, &r);
        if (s >= 0) {
            t[s] = mt_clock_now() - t0;
        }
    }
    out->bytes = (double)r.per * k;
    mt_cpu_median_p90(t, steps, &out->median_s, &out->p90_s);
out:
    free(t);
    free(base);
    return st;
}
