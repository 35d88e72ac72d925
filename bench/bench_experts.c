/* SPDX-License-Identifier: MIT */
/*
 * bench_experts.c - expert streaming against the raw drive, in the same run.
 *
 * For each queue depth of the sweep: (1) a raw sequential O_DIRECT read of the files that hold
 * the experts (the shards, or the store files), the same threads and chunk size, front to back:
 * the ceiling; (2) the streaming source reading experts in a router-like order (for each token,
 * each MoE layer picks 8 distinct experts of 256 at random; layer l+1's are prefetched while layer
 * l's are acquired), through a small cache so that nearly every acquire reads; with CUDA and a
 * GPU, each acquired expert is also copied to the device from its staging slot, overlapped with
 * the reads of the next ones (H2D rate beside it). Prints GB/s, experts/s, the ratio to raw.
 *
 *   bench/bench_experts -m DIR [--store FILE ...] [--qd 1,4,16] [--threads N] [--chunk SIZE]
 *                       [--bytes SIZE] [--verify] [--no-h2d] [--seed S]
 */
#include <config.h>

#include "io/expert_source.h"
#include "io/io_queue.h"
#include "io/uring_reader.h"
#include "kernels/host_copy.h"
#include "kernels/kernels.h"
#include "runtime/base/clock.h"
#include "runtime/base/rng.h"
#include "runtime/base/status.h"
#include "runtime/engine/provider_stream.h"
#include "runtime/model/model.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MAX_QD 16
#define TOPK 8

struct raw_job {
    const char *const *paths;
    int n_files;
    uint64_t from; /* this thread's byte range in the files laid end to end */
    uint64_t to;
    const uint64_t *sizes;
    unsigned qd;
    size_t chunk;
    uint64_t bytes;
    mt_status_t st;
};

/* One thread: read [from, to) of the concatenated files sequentially, qd chunks in flight. */
static void *
raw_thread(void *arg)
{
    struct raw_job *j = arg;
    int fds[MT_IO_MAX_FILES];
    struct mt_io_queue *q = NULL;
    char *buf;
    uint64_t pos = j->from;
    unsigned next_buf = 0;

    buf = aligned_alloc(MT_IO_ALIGN, (size_t)j->qd * j->chunk);
    for (int f = 0; f < j->n_files; f++) {
        fds[f] = open(j->paths[f], O_RDONLY | O_DIRECT | O_CLOEXEC);
        if (fds[f] < 0) {
            j->st = mt_fail(MT_ERR_IO, errno, "cannot open '%s'", j->paths[f]);
            return NULL;
        }
    }
    {
        void *bp = buf;
        size_t bl = (size_t)j->qd * j->chunk;

        j->st = mt_io_queue_create(j->qd, fds, j->n_files, MT_IO_QUEUE_URING_FIXED, &bp, &bl, 1,
                                   &q);
    }
    while (j->st == MT_OK && (pos < j->to || mt_io_queue_in_flight(q) > 0)) {
        while (pos < j->to && mt_io_queue_in_flight(q) < j->qd) {
            uint64_t base = 0;
            int f = 0;
            uint64_t fo;
            uint64_t len;

            while (pos >= base + j->sizes[f]) {
                base += j->sizes[f++];
            }
            fo = (pos - base) & ~(uint64_t)(MT_IO_ALIGN - 1); /* O_DIRECT: back to the grid */
            len = MT_MIN(j->chunk, j->sizes[f] - fo);
            len = MT_MIN(len, j->to - (base + fo));
            len = MT_CEIL_DIV(len, MT_IO_ALIGN) * MT_IO_ALIGN;
            j->st = mt_io_queue_submit(q, f, buf + (size_t)(next_buf++ % j->qd) * j->chunk, fo,
                                       len, 0);
            pos = base + fo + MT_MIN(len, j->sizes[f] - fo);
            if (j->st != MT_OK) {
                break;
            }
        }
        if (mt_io_queue_in_flight(q) > 0) {
            struct mt_io_queue_done d;

            mt_io_queue_wait(q, &d);
            if (d.err != 0) {
                j->st = mt_fail(MT_ERR_IO, d.err, "raw read of '%s' failed", j->paths[d.file]);
            }
            j->bytes += d.bytes;
        }
    }
    mt_io_queue_destroy(q);
    for (int f = 0; f < j->n_files; f++) {
        close(fds[f]);
    }
    free(buf);
    return NULL;
}

/* Raw sequential read of `bytes` of the files (from the start), threads x qd in flight. */
static mt_status_t
raw_read(const char *const *paths, int n_files, int start_file, uint64_t start_off, uint64_t bytes,
         unsigned threads, unsigned qd, size_t chunk, double *gbps_out)
{
    uint64_t sizes[MT_IO_MAX_FILES];
    uint64_t total = 0;
    struct raw_job jobs[64];
    pthread_t tid[64];
    double t0;
    double dt;
    uint64_t got = 0;
    mt_status_t st = MT_OK;

    for (int f = 0; f < n_files; f++) {
        struct stat sb;

        if (stat(paths[f], &sb) != 0) {
            return mt_fail(MT_ERR_IO, errno, "cannot stat '%s'", paths[f]);
        }
        sizes[f] = (uint64_t)sb.st_size;
        total += sizes[f];
    }
    /* start where the experts start (the same bytes the stream reads, not embeddings) */
    {
        uint64_t start = start_off & ~(uint64_t)(MT_IO_ALIGN - 1);

        for (int f = 0; f < start_file; f++) {
            start += sizes[f];
        }
        bytes = MT_MIN(bytes, total - start);
        total = start;
    }
    t0 = mt_clock_now();
    for (unsigned t = 0; t < threads; t++) {
        /* contiguous shares, each a whole number of chunks: sequential within every thread */
        uint64_t share = MT_CEIL_DIV(MT_CEIL_DIV(bytes, threads), chunk) * chunk;

        jobs[t] = (struct raw_job){.paths = paths, .n_files = n_files, .sizes = sizes,
                                   .from = total + MT_MIN(bytes, t * share),
                                   .to = total + MT_MIN(bytes, (t + 1) * share), .qd = qd,
                                   .chunk = chunk};
        pthread_create(&tid[t], NULL, raw_thread, &jobs[t]);
    }
    for (unsigned t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        got += jobs[t].bytes;
        if (jobs[t].st != MT_OK) {
            st = jobs[t].st;
        }
    }
    dt = mt_clock_now() - t0;
    *gbps_out = got / dt / 1e9;
    return st;
}

struct stream_result {
    double gbps;
    double experts_s;
    double h2d_gbps; /* 0 without CUDA */
    double stall_s;
    double seconds;
    struct mt_io_source_stats s;
};

/* Stream `tokens` router-like tokens through src; copy each expert to the GPU when h2d. */
static mt_status_t
stream(struct mt_io_source *src, const bool *moe, int tokens, uint64_t seed, struct mt_gpu_h2d *h2d,
       struct stream_result *r)
{
    int n_layers = mt_io_source_layers(src);
    int n_exp = mt_io_source_experts(src);
    int (*pick)[TOPK];
    struct mt_rng rng;
    double t0;
    double h2d_ms = 0;
    uint64_t h2d_bytes = 0;
    uint64_t acquired = 0;
    int steps = 0;
    int moe_layers[512] = {0};
    int n_moe = 0;
    mt_status_t st = MT_OK;

    for (int l = 0; l < n_layers; l++) {
        if (moe[l]) {
            moe_layers[n_moe++] = l;
        }
    }
    pick = calloc((size_t)tokens * n_moe + 1, sizeof(*pick));
    if (pick == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the routing");
    }
    mt_rng_init(&rng, seed);
    for (int i = 0; i < tokens * n_moe; i++) {
        for (int k = 0; k < TOPK; k++) {
            bool dup;

            do {
                pick[i][k] = (int)(mt_rng_next(&rng) % (uint64_t)n_exp);
                dup = false;
                for (int j = 0; j < k; j++) {
                    dup |= pick[i][j] == pick[i][k];
                }
            } while (dup);
        }
    }
    steps = tokens * n_moe;
    mt_io_source_stats_reset(src);
    t0 = mt_clock_now();
    mt_io_source_prefetch(src, moe_layers[0], pick[0], TOPK);
    for (int i = 0; i < steps && st == MT_OK; i++) {
        int layer = moe_layers[i % n_moe];

        if (i + 1 < steps) {
            mt_io_source_prefetch(src, moe_layers[(i + 1) % n_moe], pick[i + 1], TOPK);
        }
        for (int k = 0; k < TOPK && st == MT_OK; k++) {
            struct mt_io_expert_view v;

            st = mt_io_source_acquire(src, layer, pick[i][k], &v);
            if (st != MT_OK) {
                break;
            }
            acquired++;
            if (h2d != NULL) {
                for (int p = 0; p < MT_IO_N_PARTS && st == MT_OK; p++) {
                    if (v.len[p] > 0) {
                        st = mt_gpu_h2d_copy(h2d, v.part[p], v.len[p]);
                        h2d_bytes += v.len[p];
                    }
                }
                /* the slot must stay held until its copy is done: sync before release */
                if (st == MT_OK) {
                    double ms;

                    st = mt_gpu_h2d_sync(h2d, &ms);
                    h2d_ms += ms;
                }
            }
            mt_io_source_release(src, layer, pick[i][k]);
        }
    }
    r->seconds = mt_clock_now() - t0;
    mt_io_source_stats(src, &r->s);
    r->gbps = r->s.bytes_read / r->seconds / 1e9;
    r->experts_s = acquired / r->seconds;
    r->h2d_gbps = h2d_ms > 0 ? h2d_bytes / (h2d_ms / 1e3) / 1e9 : 0;
    r->stall_s = r->s.stall_s;
    free(pick);
    return st;
}

static size_t
parse_size(const char *s)
{
    char *end;
    double v = strtod(s, &end);

    switch (*end) {
    case 'K': case 'k': v *= 1024; break;
    case 'M': case 'm': v *= 1024 * 1024; break;
    case 'G': case 'g': v *= 1024.0 * 1024 * 1024; break;
    default: break;
    }
    return (size_t)v;
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'}, {"store", required_argument, NULL, 's'},
        {"qd", required_argument, NULL, 'Q'},    {"threads", required_argument, NULL, 'T'},
        {"chunk", required_argument, NULL, 'C'}, {"bytes", required_argument, NULL, 'B'},
        {"verify", no_argument, NULL, 'V'},      {"no-h2d", no_argument, NULL, 'N'},
        {"seed", required_argument, NULL, 'S'},  {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL;
    const char *stores[MT_IO_MAX_FILES];
    int n_store = 0;
    unsigned qds[MAX_QD] = {1, 2, 4, 8, 16, 32};
    int n_qd = 6;
    unsigned threads = 2;
    size_t chunk = 1u << 20;
    uint64_t bytes = 4ull << 30;
    bool verify = false;
    bool want_h2d = true;
    uint64_t seed = 1;
    struct mt_model *model;
    struct mt_io_expert_desc *descs;
    const char **paths;
    const char *const *raw_paths;
    int n_raw;
    int n_files;
    bool *moe;
    struct mt_gpu_h2d *h2d = NULL;
    int n_dev = 0;
    uint64_t expert_bytes = 0;
    int first_file = MT_IO_MAX_FILES;
    uint64_t first_off = 0;
    int tokens;
    int n_moe = 0;
    struct utsname un;
    char date[64];
    time_t now = time(NULL);
    int c;

    while ((c = getopt_long(argc, argv, "m:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': dir = optarg; break;
        case 's': stores[n_store++] = optarg; break;
        case 'Q': {
            char *s = optarg;

            n_qd = 0;
            while (*s != '\0' && n_qd < MAX_QD) {
                qds[n_qd++] = (unsigned)strtoul(s, &s, 10);
                s += *s == ',';
            }
            break;
        }
        case 'T': threads = (unsigned)atoi(optarg); break;
        case 'C': chunk = parse_size(optarg); break;
        case 'B': bytes = parse_size(optarg); break;
        case 'V': verify = true; break;
        case 'N': want_h2d = false; break;
        case 'S': seed = strtoull(optarg, NULL, 10); break;
        default:
            fprintf(stderr, "usage: bench_experts -m DIR [--store FILE ...] [--qd 1,4,16] "
                            "[--threads N] [--chunk SIZE] [--bytes SIZE] [--verify] [--no-h2d] "
                            "[--seed S]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (dir == NULL || threads < 1 || threads > 64 || chunk < MT_IO_ALIGN) {
        fprintf(stderr, "bench_experts: -m DIR is required (see --help)\n");
        return 2;
    }
    if (mt_model_open(dir, &model) != MT_OK ||
        mt_stream_describe(model, &descs, &paths, &n_files) != MT_OK) {
        return 1;
    }
    moe = calloc((size_t)model->cfg.num_hidden_layers, sizeof(*moe));
    for (int l = 0; l < model->cfg.num_hidden_layers; l++) {
        moe[l] = model->layers[l].is_moe;
        n_moe += moe[l];
    }
    for (int l = 0; l < model->cfg.num_hidden_layers && expert_bytes == 0; l++) {
        for (int p = 0; moe[l] && p < MT_IO_N_PARTS; p++) {
            expert_bytes += descs[l * model->cfg.n_routed_experts].part[p].len;
        }
    }
    /* where the first expert byte lies: the raw read starts there */
    for (int k = 0; k < model->cfg.num_hidden_layers * model->cfg.n_routed_experts; k++) {
        for (int p = 0; p < MT_IO_N_PARTS; p++) {
            const struct mt_io_extent *x = &descs[k].part[p];

            if (x->len > 0 && (x->file < first_file ||
                               (x->file == first_file && x->off < first_off))) {
                first_file = x->file;
                first_off = x->off;
            }
        }
    }
    tokens = (int)MT_MAX(1, bytes / (expert_bytes * TOPK * (uint64_t)n_moe));
    raw_paths = n_store > 0 ? stores : (const char *const *)paths;
    n_raw = n_store > 0 ? n_store : n_files;
    if (want_h2d && mt_gpu_device_count(&n_dev) == MT_OK && n_dev > 0) {
        mt_status_t st = mt_gpu_h2d_create(0, expert_bytes + (1u << 20), &h2d);

        if (st != MT_OK) {
            return 1;
        }
    }
    uname(&un);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M", localtime(&now));
    printf("# bench_experts %s on %s (%s), %s: %d MoE layers, %.1f MB per expert, %d tokens x %d "
           "layers x %d experts (%.2f GB) per run, %u threads, chunk %zu KiB, source: %s%s, H2D: "
           "%s\n",
           date, un.nodename, un.release, dir, n_moe, expert_bytes / 1e6, tokens, n_moe, TOPK,
           (double)tokens * n_moe * TOPK * expert_bytes / 1e9, threads, chunk >> 10,
           n_store > 0 ? "store" : "shards", verify ? " (verify)" : "",
           h2d != NULL ? "on" : "off (no CUDA device)");
    printf("%4s  %-11s  %9s  %9s  %6s  %10s  %7s  %7s  %8s\n", "qd", "mode", "raw_GB/s",
           "strm_GB/s", "ratio", "experts/s", "hit%", "stall_s", "H2D_GB/s");
    for (int i = 0; i < n_qd; i++) {
        struct mt_io_source_options o = {.io_threads = threads, .queue_depth = qds[i],
                                         .chunk_bytes = chunk, .verify = verify};
        struct mt_io_source *src;
        struct stream_result r;
        double raw = 0;
        mt_status_t st;

        if (raw_read(raw_paths, n_raw, n_store > 0 ? 0 : first_file,
                     n_store > 0 ? 0 : first_off, (uint64_t)tokens * n_moe * TOPK * expert_bytes, threads,
                     qds[i], chunk, &raw) != MT_OK) {
            return 1;
        }
        /* two layers' worth of slots (acquired + prefetched) and a few more: nearly every
         * acquire reads, as it would for experts beyond the DRAM budget */
        o.cache_bytes = (2 * TOPK + 4) * (expert_bytes + (64u << 10));
        if (n_store > 0) {
            uint64_t hash;

            st = mt_stream_model_hash(model, &hash);
            if (st == MT_OK) {
                st = mt_io_source_create_store(stores, n_store, hash, &o, &src);
            }
        } else {
            st = mt_io_source_create(paths, n_files, model->cfg.num_hidden_layers,
                                     model->cfg.n_routed_experts, descs, &o, &src);
        }
        if (st == MT_OK && h2d != NULL) {
            void *base;
            size_t len;

            mt_io_source_staging(src, &base, &len);
            st = mt_gpu_host_register(base, len);
        }
        if (st == MT_OK) {
            st = stream(src, moe, tokens, seed + (uint64_t)i, h2d, &r);
        }
        if (st != MT_OK) {
            return 1;
        }
        printf("%4u  %-11s  %9.3f  %9.3f  %5.1f%%  %10.1f  %6.1f%%  %7.2f  %8.2f\n", qds[i],
               mt_io_queue_mode_str(r.s.mode), raw, r.gbps, 100 * r.gbps / raw, r.experts_s,
               100.0 * r.s.hits / MT_MAX(1, r.s.hits + r.s.late_hits + r.s.misses), r.stall_s,
               r.h2d_gbps);
        if (r.s.n_files > 1 && n_store > 1) {
            printf("#       per file:");
            for (int f = 0; f < r.s.n_files; f++) {
                printf("  [%d] %.2f GB, peak %u reads in flight", f, r.s.file_bytes[f] / 1e9,
                       r.s.file_peak_in_flight[f]);
            }
            printf("\n");
        }
        fflush(stdout);
        if (h2d != NULL) {
            void *base;
            size_t len;

            mt_io_source_staging(src, &base, &len);
            mt_gpu_host_unregister(base);
        }
        mt_io_source_destroy(src);
    }
    mt_gpu_h2d_destroy(h2d);
    free(moe);
    free(descs);
    free(paths);
    mt_model_destroy(model);
    return 0;
}
