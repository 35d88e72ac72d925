/* SPDX-License-Identifier: MIT */
/*
 * cli_synth.c - `moetier synth`: write a random checkpoint in the exact HF layout (synth.h).
 *
 * All the work is in mt_synth_write(); this file parses flags, prints the size up front and the
 * summary line at the end. SIGINT and SIGTERM only set a flag that mt_synth_write reads between
 * strips; it then removes its staging directory (a checkpoint can be 50 GB) and fails, and synth
 * ends by the same signal (the shell reports 128 + its number).
 */
#include <config.h>

#include "runtime/cli/cli.h"
#include "runtime/cli/cli_common.h"

#include "runtime/base/status.h"
#include "runtime/synth/synth.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
synth_usage(FILE *f)
{
    fprintf(f,
            "usage: moetier synth -o DIR --preset tiny|tiny-mla|small|v32-shape [options]\n\n"
            "Write a random DeepSeek-V3.2 checkpoint with the published tensor names, shapes,\n"
            "dtypes, shards, index, config.json and tokenizer files.\n\n"
            "  -o, --output DIR       directory to create (must be empty unless --force)\n"
            "  -p, --preset NAME      tiny (hidden 256, 4 layers, own tokenizer, 7 MB),\n"
            "                         tiny-mla (tiny with V3.2's attention and indexer shapes,\n"
            "                         2 layers),\n"
            "                         small (hidden 512, 4 layers, real vocabulary, ~310 MB),\n"
            "                         v32-shape (671B dimensions, 5 layers, ~50 GB)\n"
            "      --layers N         main layers (default: the preset's)\n"
            "      --dense-layers K   leading dense-MLP layers, first_k_dense_replace (default 1)\n"
            "      --dtype fp8|bf16   fp8: e4m3 + 128x128 scales as published (default);\n"
            "                         bf16: BF16 linears, no scales\n"
            "      --seed S           random seed (default 0); same seed, same bytes\n"
            "      --mtp, --no-mtp    write the MTP layer (default: tiny yes, others no)\n"
            "      --tokenizer-dir D  DeepSeek's tokenizer.json + tokenizer_config.json for\n"
            "                         small and v32-shape (default: $MT_TOKENIZER_DIR, else the\n"
            "                         source tree's tests/data/tokenizer, else the installed\n"
            "                         copy)\n"
            "      --shard-size SIZE  most tensor bytes a shard (default 4.3 GB as DeepSeek's;\n"
            "                         a smaller model gets two shards); e.g. 5G as\n"
            "                         save_pretrained writes, or small to test many shards\n"
            "  -f, --force            write into a non-empty directory (replaces a checkpoint)\n"
            "  -n, --dry-run          print what would be written, write nothing\n"
            "  -q, --quiet            no progress on stderr\n");
}

static const struct mt_cli cli = {"synth", synth_usage};

/* The signal that asked synth to stop, 0 while none has (mt_synth_options.stop). */
static volatile sig_atomic_t stop_signal;

static void
on_stop_signal(int sig)
{
    stop_signal = sig;
}

int
mt_cli_synth(int argc, char **argv)
{
    enum {
        OPT_LAYERS = 256,
        OPT_DENSE,
        OPT_DTYPE,
        OPT_SEED,
        OPT_MTP,
        OPT_NO_MTP,
        OPT_TOKDIR,
        OPT_SHARD
    };
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'},
        {"preset", required_argument, NULL, 'p'},
        {"layers", required_argument, NULL, OPT_LAYERS},
        {"dense-layers", required_argument, NULL, OPT_DENSE},
        {"dtype", required_argument, NULL, OPT_DTYPE},
        {"seed", required_argument, NULL, OPT_SEED},
        {"mtp", no_argument, NULL, OPT_MTP},
        {"no-mtp", no_argument, NULL, OPT_NO_MTP},
        {"tokenizer-dir", required_argument, NULL, OPT_TOKDIR},
        {"shard-size", required_argument, NULL, OPT_SHARD},
        {"force", no_argument, NULL, 'f'},
        {"quiet", no_argument, NULL, 'q'},
        {"dry-run", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct mt_synth_options opt = {0};
    struct mt_synth_result res;
    bool quiet = false;
    int c;

    opt.layers = -1;
    opt.dense_layers = -1;
    opt.mtp = -1;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":o:p:fnqh", longopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            opt.out_dir = optarg;
            break;
        case 'p':
            opt.preset = optarg;
            break;
        case OPT_LAYERS:
            /* the real limit, so that 0 and 100000 get the same range in their messages */
            if (!mt_cli_parse_int(&cli, "--layers", optarg, 1, MT_SYNTH_MAX_LAYERS,
                                  &opt.layers)) {
                return 2;
            }
            break;
        case OPT_DENSE:
            if (!mt_cli_parse_int(&cli, "--dense-layers", optarg, 0, 100000, &opt.dense_layers)) {
                return 2;
            }
            break;
        case OPT_DTYPE:
            if (strcmp(optarg, "fp8") == 0) {
                opt.bf16 = false;
            } else if (strcmp(optarg, "bf16") == 0) {
                opt.bf16 = true;
            } else {
                mt_cli_error(&cli, "--dtype is fp8 or bf16, not '%s'", optarg);
                return 2;
            }
            break;
        case OPT_SEED:
            if (!mt_cli_parse_u64(&cli, "--seed", optarg, &opt.seed)) {
                return 2;
            }
            break;
        case OPT_MTP:
            opt.mtp = 1;
            break;
        case OPT_NO_MTP:
            opt.mtp = 0;
            break;
        case OPT_TOKDIR:
            opt.tokenizer_dir = optarg;
            break;
        case OPT_SHARD:
            if (!mt_cli_parse_size(&cli, "--shard-size", "5G", optarg, &opt.shard_bytes)) {
                return 2;
            }
            if (opt.shard_bytes < 4096) {
                mt_cli_error(&cli, "--shard-size must be at least 4K, got '%s'", optarg);
                return 2;
            }
            break;
        case 'f':
            opt.force = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'n':
            opt.dry_run = true;
            break;
        case 'h':
            synth_usage(stdout);
            return 0;
        default:
            return mt_cli_bad_option(&cli, c, argv);
        }
    }
    if (optind < argc) {
        return mt_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
    }
    if (opt.out_dir == NULL || opt.preset == NULL) {
        return mt_cli_usage_error(&cli, "-o DIR and --preset are required");
    }
    if (opt.out_dir[0] == '\0') {
        return mt_cli_usage_error(&cli, "-o needs a directory name (got an empty one)");
    }
    /* the preset and its overrides are the command line's to get right: exit 2, as for a flag */
    struct mt_model_config cfg;
    if (mt_synth_config(&opt, &cfg) != MT_OK) {
        return 2; /* mt_fail has printed the reason */
    }
    opt.progress = !quiet;
    /* SA_RESTART: the writes in flight finish; the flag is read before the next strip.
     * SA_RESETHAND: a second signal (a write stuck on a network file system) ends synth at once,
     * leaving the staging directory for the next --force to remove */
    struct sigaction sa = {.sa_handler = on_stop_signal, .sa_flags = SA_RESTART | SA_RESETHAND};
    struct sigaction old_int;
    struct sigaction old_term;
    mt_status_t st;

    sigemptyset(&sa.sa_mask);
    stop_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    opt.stop = &stop_signal;
    st = mt_synth_write(&opt, &res);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (st != MT_OK && stop_signal != 0) {
        /* cleaned up: now end as the signal would have, so that a shell loop running synth
         * stops at the Ctrl-C too (a plain exit(130) tells it synth handled the signal) */
        signal(stop_signal, SIG_DFL);
        raise(stop_signal);
        return 128 + stop_signal;
    }
    if (st != MT_OK) {
        return 1; /* mt_fail has printed the reason */
    }
    if (opt.dry_run) {
        printf("synth: would write %llu tensors, %llu bytes (%.2f GiB) in %d shard%s to '%s'\n",
               (unsigned long long)res.n_tensors, (unsigned long long)res.bytes,
               res.bytes / 1073741824.0, res.n_shards, res.n_shards == 1 ? "" : "s", opt.out_dir);
        return 0;
    }
    printf("synth: wrote %llu tensors, %llu bytes (%.2f GiB) in %d shard%s to '%s' in %.1f s "
           "(%.0f MB/s)\n",
           (unsigned long long)res.n_tensors, (unsigned long long)res.bytes,
           res.bytes / 1073741824.0, res.n_shards, res.n_shards == 1 ? "" : "s", opt.out_dir,
           res.seconds, res.seconds > 0 ? res.file_bytes / res.seconds / 1e6 : 0.0);
    return 0;
}
