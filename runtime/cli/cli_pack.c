/* SPDX-License-Identifier: MIT */
/*
 * cli_pack.c - `moetier pack`: copy a checkpoint's routed experts into an expert store
 * (io/store.h), each expert in one 4 KiB-aligned extent with its CRC32C, striped over the files
 * given (one per drive).
 *
 * Experts are read with the streaming source itself (O_DIRECT, many reads in flight, a window of
 * prefetches ahead of the writer), so packing runs at the drive's speed, and written by the store
 * writer, which builds .partial files and renames them only when complete.
 *
 * SIGINT and SIGTERM only set a flag, read between experts: the .partial files (preallocated at
 * full size, hundreds of GiB for a large model) are then removed, the old store files are left
 * as they were, and pack ends by the same signal (the shell reports 128 + its number), as synth
 * does. Once the files are being renamed, the pack finishes instead.
 *
 * A test hook: MT_PACK_THROTTLE_MS=N sleeps N ms after each expert, so that a test can signal a
 * pack of a small model (a fraction of a second) while it copies.
 */
#include <config.h>

#include "runtime/cli/cli.h"
#include "runtime/cli/cli_common.h"

#include "io/expert_source.h"
#include "io/store.h"
#include "runtime/base/clock.h"
#include "runtime/base/out_file.h"
#include "runtime/base/status.h"
#include "runtime/engine/provider_stream.h"
#include "runtime/model/model.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PACK_MAX_OUT MT_IO_MAX_FILES

static void
pack_usage(FILE *f)
{
    fprintf(f,
            "usage: moetier pack -m DIR -o FILE [-o FILE ...] [options]\n\n"
            "Copy the routed experts of checkpoint DIR into an expert store: each expert's\n"
            "weights and scales in one 4 KiB-aligned extent with a CRC32C, experts striped over\n"
            "the files given (put each on its own drive). Read it with --store FILE... (same\n"
            "files, same order). The checkpoint itself is not changed and is still needed.\n\n"
            "  -m, --model DIR        checkpoint directory\n"
            "  -o, --output FILE      a store file; repeat for striping (up to %d)\n"
            "      --threads N        I/O threads reading the checkpoint (default 2)\n"
            "      --queue-depth N    reads in flight per thread (default 16)\n"
            "      --verify           read every expert twice from the checkpoint, then read the\n"
            "                         finished store back and check every CRC\n"
            "  -q, --quiet            no progress on stderr\n",
            PACK_MAX_OUT);
}

static const struct mt_cli cli = {"pack", pack_usage};

/* The signal that asked pack to stop, 0 while none has. */
static volatile sig_atomic_t stop_signal;

static void
on_stop_signal(int sig)
{
    stop_signal = sig;
}

/* Read every extent of the finished store, checking CRCs. */
static mt_status_t
verify_store(const char *const *out, int n_out, uint64_t hash, const struct mt_model *model,
             const struct mt_io_source_options *io)
{
    struct mt_io_source_options o = *io;
    struct mt_io_source *src;
    mt_status_t st;

    o.verify = true;
    o.cache_bytes = 0;
    st = mt_io_source_create_store(out, n_out, hash, &o, &src);
    if (st != MT_OK) {
        return st;
    }
    for (int l = 0; l < model->cfg.num_hidden_layers && st == MT_OK && stop_signal == 0; l++) {
        if (!model->layers[l].is_moe) {
            continue;
        }
        for (int e = 0; e < model->cfg.n_routed_experts && st == MT_OK && stop_signal == 0;
             e++) {
            st = mt_io_source_wait(src, l, e);
        }
    }
    mt_io_source_destroy(src);
    return st;
}

int
mt_cli_pack(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"output", required_argument, NULL, 'o'},
        {"threads", required_argument, NULL, 'T'},
        {"queue-depth", required_argument, NULL, 'Q'},
        {"verify", no_argument, NULL, 'V'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL;
    const char *out[PACK_MAX_OUT];
    int n_out = 0;
    struct mt_io_source_options io = {0};
    bool quiet = false;
    struct mt_model *model = NULL;
    struct mt_io_expert_desc *descs = NULL;
    const char **paths = NULL;
    int n_files;
    uint64_t *lens = NULL;
    uint64_t hash;
    struct mt_io_source *src = NULL;
    struct mt_io_store_writer *w = NULL;
    uint64_t total;
    uint64_t done_bytes = 0;
    int n_layers;
    int n_experts;
    int *order = NULL;
    int n_order = 0;
    int window;
    double t0;
    double last = 0;
    bool renamed = false; /* the store's files are in place */
    const char *hook = getenv("MT_PACK_THROTTLE_MS");
    long throttle_ms = hook != NULL ? strtol(hook, NULL, 10) : 0;
    /* SA_RESTART: the reads and writes in flight finish; the flag is read before the next
     * expert. SA_RESETHAND: a second signal ends pack at once (leaving the .partial files) */
    struct sigaction sa = {.sa_handler = on_stop_signal, .sa_flags = SA_RESTART | SA_RESETHAND};
    struct sigaction old_int;
    struct sigaction old_term;
    mt_status_t st;
    int c;
    int v;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:o:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            dir = optarg;
            break;
        case 'o':
            if (n_out == PACK_MAX_OUT) {
                return mt_cli_usage_error(&cli, "at most %d output files", PACK_MAX_OUT);
            }
            out[n_out++] = optarg;
            break;
        case 'T':
            if (!mt_cli_parse_int(&cli, "--threads", optarg, 1, 64, &v)) {
                return 2;
            }
            io.io_threads = (unsigned)v;
            break;
        case 'Q':
            if (!mt_cli_parse_int(&cli, "--queue-depth", optarg, 1, 4096, &v)) {
                return 2;
            }
            io.queue_depth = (unsigned)v;
            break;
        case 'V':
            io.verify = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'h':
            pack_usage(stdout);
            return 0;
        default:
            return mt_cli_bad_option(&cli, c, argv);
        }
    }
    if (optind < argc) {
        return mt_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
    }
    if (dir == NULL || n_out == 0) {
        return mt_cli_usage_error(&cli, "-m DIR and at least one -o FILE are required");
    }
    for (int i = 0; i < n_out; i++) {
        if (out[i][0] == '\0') {
            return mt_cli_usage_error(&cli, "-o needs a file name (got an empty one)");
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(out[i], out[j]) == 0 || mt_path_is_same_file(out[i], out[j])) {
                return mt_cli_usage_error(&cli, "output '%s' given twice ('%s')", out[i],
                                          out[j]);
            }
        }
        /* the store is written beside the checkpoint, never over it */
        if (mt_cli_output_is_model_file(&cli, "-o", out[i], dir)) {
            return 2;
        }
    }
    /*
     * Checked before the model is opened, not found at the rename after every expert is copied:
     * a missing or read-only directory, or a directory named as the file. What else the name may
     * not be (a device, a FIFO: rename would replace them) the store writer refuses before it
     * creates anything.
     */
    for (int i = 0; i < n_out; i++) {
        if (!mt_cli_check_output(&cli, "-o", out[i])) {
            return 1;
        }
    }
    sigemptyset(&sa.sa_mask);
    stop_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    st = mt_model_open(dir, &model);
    if (st == MT_OK) {
        st = mt_stream_model_hash(model, &hash);
    }
    if (st == MT_OK) {
        st = mt_stream_describe(model, &descs, &paths, &n_files);
    }
    if (st != MT_OK) {
        goto out;
    }
    n_layers = model->cfg.num_hidden_layers;
    n_experts = model->cfg.n_routed_experts;
    lens = calloc((size_t)n_layers * n_experts * MT_IO_N_PARTS, sizeof(*lens));
    order = calloc((size_t)n_layers * n_experts, sizeof(*order));
    if (lens == NULL || order == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the expert table");
        goto out;
    }
    for (int k = 0; k < n_layers * n_experts; k++) {
        bool present = false;

        for (int p = 0; p < MT_IO_N_PARTS; p++) {
            lens[(size_t)k * MT_IO_N_PARTS + p] = descs[k].part[p].len;
            present |= descs[k].part[p].len > 0;
        }
        if (present) {
            order[n_order++] = k;
        }
    }
    if (n_order == 0) {
        /* said of the model, not of a shard (the reader would name the first shard it has) */
        st = mt_fail(MT_ERR_INVAL, 0,
                     "model '%s' has no MoE layer (its config.json makes all %d layers dense), "
                     "so no routed expert to pack; run it as it is, without --store",
                     dir, n_layers);
        goto out;
    }
    /* Enough slots for the reads in flight plus the one being written: 64 experts or 2 GiB. */
    st = mt_io_source_create(paths, n_files, n_layers, n_experts, descs, &io, &src);
    if (st == MT_OK) {
        uint64_t slot = mt_io_source_slot_bytes(src);

        mt_io_source_destroy(src);
        src = NULL;
        io.cache_bytes = MT_MAX(4, MT_MIN(64, (2ull << 30) / slot)) * slot;
        st = mt_io_source_create(paths, n_files, n_layers, n_experts, descs, &io, &src);
    }
    if (st == MT_OK) {
        st = mt_io_store_writer_create(out, n_out, hash, n_layers, n_experts, lens, &w);
    }
    if (st != MT_OK) {
        goto out;
    }
    {
        struct mt_io_source_stats s;

        mt_io_source_stats(src, &s);
        window = (int)s.n_slots - 2;
    }
    total = mt_io_store_writer_total_bytes(w);
    if (!quiet) {
        fprintf(stderr, "pack: %d experts, %.2f GB into %d file%s\n", n_order, total / 1e9, n_out,
                n_out > 1 ? "s" : "");
    }
    t0 = mt_clock_now();
    for (int i = 0; i < n_order && st == MT_OK && stop_signal == 0; i++) {
        struct mt_io_expert_view view;
        int k = order[i];

        /* keep a window of reads in flight ahead of the writer */
        for (int j = i + 1; j <= i + window && j < n_order; j++) {
            int kj = order[j];
            int e = kj % n_experts;

            mt_io_source_prefetch(src, kj / n_experts, &e, 1);
        }
        st = mt_io_source_acquire(src, k / n_experts, k % n_experts, &view);
        if (st != MT_OK) {
            break;
        }
        st = mt_io_store_writer_put(w, k / n_experts, k % n_experts, view.part);
        mt_io_source_release(src, k / n_experts, k % n_experts);
        if (throttle_ms > 0) {
            struct timespec ts = {throttle_ms / 1000, throttle_ms % 1000 * 1000000L};

            nanosleep(&ts, NULL); /* cut short by a signal: the flag is read next */
        }
        for (int p = 0; p < MT_IO_N_PARTS; p++) {
            done_bytes += view.len[p];
        }
        if (!quiet && (mt_clock_now() - last > 1.0 || i + 1 == n_order)) {
            double dt = mt_clock_now() - t0;

            last = mt_clock_now();
            fprintf(stderr, "pack: %5.1f%%  %d / %d experts  %.2f GB  %.0f MB/s\n",
                    100.0 * (i + 1) / n_order, i + 1, n_order, done_bytes / 1e9,
                    dt > 0 ? done_bytes / dt / 1e6 : 0.0);
        }
    }
    mt_io_source_destroy(src);
    src = NULL;
    if (st == MT_OK && stop_signal == 0) {
        st = mt_io_store_writer_finish(w);
        w = NULL;
        renamed = st == MT_OK;
    }
    if (st == MT_OK && io.verify) {
        if (!quiet) {
            fprintf(stderr, "pack: reading the store back, checking every CRC32C\n");
        }
        st = verify_store(out, n_out, hash, model, &io);
    }
    if (st == MT_OK && stop_signal == 0 && !quiet) {
        double dt = mt_clock_now() - t0;

        fprintf(stderr, "pack: wrote %d experts (%.2f GB) to %d file%s in %.1f s (%.0f MB/s)\n",
                n_order, total / 1e9, n_out, n_out > 1 ? "s" : "", dt, total / dt / 1e6);
    }

out:
    mt_io_store_writer_destroy(w);
    mt_io_source_destroy(src);
    free(order);
    free(lens);
    free(descs);
    free(paths);
    mt_model_destroy(model);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (stop_signal != 0) {
        /* the writer is destroyed, so the .partial files are gone: now end as the signal
         * would have, so that a shell loop running pack stops at the Ctrl-C too */
        mt_cli_error(&cli, "%s", !renamed ? "interrupted: the partial store files are removed, "
                                            "any old store files left as they were"
                                 : io.verify ? "interrupted after the store was written: it is "
                                               "complete, but not read back"
                                             : "interrupted after the store was written: it is "
                                               "complete");
        signal(stop_signal, SIG_DFL);
        raise(stop_signal);
        return 128 + stop_signal;
    }
    return st == MT_OK ? 0 : 1;
}
