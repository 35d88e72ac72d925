/* SPDX-License-Identifier: MIT */
/*
 * cli_run.c - `moetier run`: generate from a prompt with the CPU reference engine.
 *
 * The prompt is token ids (--prompt-ids 0,5,17) or text (-p, through the model's tokenizer.json,
 * with BOS prepended). Generated tokens stream to stdout as they come: as text when the model
 * directory has a tokenizer, else as ids; --print-ids prints only the generated ids, on one line,
 * separated by spaces. Prefill and decode speeds go to stderr at the end.
 *
 * --dump-logits FILE writes the logits of every prompt position (little-endian):
 *     bytes 0..7    magic "MTLOGIT1"
 *     bytes 8..11   int32 T      (prompt tokens)
 *     bytes 12..15  int32 vocab
 *     then          float32 [T, vocab], row t = logits after prompt token t
 *
 * Exit status: 0 success, 1 failure (bad prompt, model error), 2 usage error.
 */
#include <config.h>

#include "runtime/cli.h"

#include "runtime/engine.h"
#include "runtime/model.h"
#include "runtime/sampler.h"
#include "runtime/status.h"
#include "runtime/tokenizer.h"
#include "runtime/trace.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void
run_usage(FILE *f)
{
    fprintf(f,
            "usage: moetier run -m DIR (--prompt-ids ID,ID,... | -p TEXT) [options]\n\n"
            "Generate tokens from a prompt with the CPU reference engine (fp32).\n\n"
            "  -m, --model DIR          checkpoint directory (config.json, safetensors)\n"
            "      --device cpu         where to run (only cpu so far; default cpu)\n"
            "      --prompt-ids LIST    prompt as comma-separated token ids\n"
            "  -p, --prompt TEXT        prompt as text (needs DIR/tokenizer.json; BOS prepended)\n"
            "  -n N                     tokens to generate (default 32; 0 = prefill only)\n"
            "      --temperature T      0 = greedy (default 0)\n"
            "      --top-p P            nucleus sampling mass in (0, 1] (default 1)\n"
            "      --top-k K            keep the K most likely tokens (default 0 = all)\n"
            "      --seed S             sampling seed (default 0)\n"
            "      --print-ids          print only the generated ids, one line, on stdout\n"
            "      --dump-logits FILE   write every prompt position's logits: \"MTLOGIT1\",\n"
            "                           int32 T, int32 vocab, float32 [T, vocab] (little-endian)\n"
            "      --indexer MODE       exact (fp32 scores, default) or fp8 (DeepSeek's FP8 path)\n"
            "      --attention MODE     sparse (DSA top-k, default) or dense (all positions)\n"
            "      --threads N          OpenMP threads (default: OMP_NUM_THREADS or all cores)\n"
            "      --trace FILE         record routed expert ids per layer (JSON trace)\n"
            "  -h, --help               this text\n"
            "Generation stops after N tokens or at the model's EOS token.\n");
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Parse "0,5,17": *ids_out malloc'ed. Returns false (with a message) on bad syntax. */
static bool
parse_ids(const char *s, int32_t **ids_out, int *n_out)
{
    int cap = 16;
    int n = 0;
    int32_t *ids = malloc((size_t)cap * sizeof(*ids));
    const char *p = s;

    if (ids == NULL) {
        return false;
    }
    while (*p != '\0') {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno != 0 || v < INT32_MIN || v > INT32_MAX ||
            (*end != ',' && *end != '\0')) {
            fprintf(stderr, "moetier run: bad token id list '%s' (expected e.g. 0,5,17)\n", s);
            free(ids);
            return false;
        }
        if (n == cap) {
            cap *= 2;
            int32_t *ni = realloc(ids, (size_t)cap * sizeof(*ids));
            if (ni == NULL) {
                free(ids);
                return false;
            }
            ids = ni;
        }
        ids[n++] = (int32_t)v;
        p = *end == ',' ? end + 1 : end;
    }
    *ids_out = ids;
    *n_out = n;
    return true;
}

static bool
parse_long(const char *s, const char *what, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi) {
        fprintf(stderr, "moetier run: bad %s '%s'\n", what, s);
        return false;
    }
    *out = v;
    return true;
}

static bool
parse_float(const char *s, const char *what, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (end == s || *end != '\0' || errno != 0) {
        fprintf(stderr, "moetier run: bad %s '%s'\n", what, s);
        return false;
    }
    *out = v;
    return true;
}

static mt_status_t
dump_logits(const char *path, const float *logits, int T, int vocab)
{
    FILE *f = fopen(path, "wb");
    int32_t hdr[2] = {T, vocab};
    mt_status_t st = MT_OK;

    if (f == NULL) {
        return mt_fail(MT_ERR_IO, errno, "cannot create logits file '%s'", path);
    }
    if (fwrite("MTLOGIT1", 1, 8, f) != 8 || fwrite(hdr, sizeof(int32_t), 2, f) != 2 ||
        fwrite(logits, sizeof(float), (size_t)T * vocab, f) != (size_t)T * vocab) {
        st = mt_fail(MT_ERR_IO, errno, "cannot write logits file '%s'", path);
    }
    if (fclose(f) != 0 && st == MT_OK) {
        st = mt_fail(MT_ERR_IO, errno, "cannot write logits file '%s'", path);
    }
    return st;
}

enum {
    OPT_DEVICE = 256,
    OPT_PROMPT_IDS,
    OPT_TEMPERATURE,
    OPT_TOP_P,
    OPT_TOP_K,
    OPT_SEED,
    OPT_PRINT_IDS,
    OPT_DUMP_LOGITS,
    OPT_INDEXER,
    OPT_ATTENTION,
    OPT_THREADS,
    OPT_TRACE,
};

int
mt_cli_run(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"device", required_argument, NULL, OPT_DEVICE},
        {"prompt-ids", required_argument, NULL, OPT_PROMPT_IDS},
        {"prompt", required_argument, NULL, 'p'},
        {"temperature", required_argument, NULL, OPT_TEMPERATURE},
        {"top-p", required_argument, NULL, OPT_TOP_P},
        {"top-k", required_argument, NULL, OPT_TOP_K},
        {"seed", required_argument, NULL, OPT_SEED},
        {"print-ids", no_argument, NULL, OPT_PRINT_IDS},
        {"dump-logits", required_argument, NULL, OPT_DUMP_LOGITS},
        {"indexer", required_argument, NULL, OPT_INDEXER},
        {"attention", required_argument, NULL, OPT_ATTENTION},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"trace", required_argument, NULL, OPT_TRACE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL;
    const char *prompt_ids = NULL;
    const char *prompt_text = NULL;
    const char *dump_path = NULL;
    const char *trace_path = NULL;
    long n_gen = 32;
    long v;
    bool print_ids = false;
    struct mt_sampler_opts so;
    struct mt_engine_opts eo;
    int opt;

    mt_sampler_opts_default(&so);
    mt_engine_opts_default(&eo);
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":m:p:n:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'm':
            dir = optarg;
            break;
        case 'p':
            prompt_text = optarg;
            break;
        case 'n':
            if (!parse_long(optarg, "token count -n", 0, INT_MAX, &n_gen)) {
                return 2;
            }
            break;
        case 'h':
            run_usage(stdout);
            return 0;
        case OPT_DEVICE:
            if (strcmp(optarg, "cpu") == 0) {
                break;
            }
            if (strcmp(optarg, "gpu") == 0 || strcmp(optarg, "cuda") == 0) {
                fprintf(stderr, "moetier run: device '%s' is not available yet (use --device "
                        "cpu)\n", optarg);
                return 1;
            }
            fprintf(stderr, "moetier run: unknown device '%s' (cpu)\n", optarg);
            run_usage(stderr);
            return 2;
        case OPT_PROMPT_IDS:
            prompt_ids = optarg;
            break;
        case OPT_TEMPERATURE:
            if (!parse_float(optarg, "temperature", &so.temperature) || so.temperature < 0.0f) {
                fprintf(stderr, "moetier run: temperature must be >= 0\n");
                return 2;
            }
            break;
        case OPT_TOP_P:
            if (!parse_float(optarg, "top-p", &so.top_p) ||
                !(so.top_p > 0.0f && so.top_p <= 1.0f)) {
                fprintf(stderr, "moetier run: top-p must be in (0, 1]\n");
                return 2;
            }
            break;
        case OPT_TOP_K:
            if (!parse_long(optarg, "top-k", 0, INT_MAX, &v)) {
                return 2;
            }
            so.top_k = (int)v;
            break;
        case OPT_SEED: {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(optarg, &end, 10);
            if (end == optarg || *end != '\0' || errno != 0 || optarg[0] == '-') {
                fprintf(stderr, "moetier run: bad seed '%s'\n", optarg);
                return 2;
            }
            so.seed = s;
            break;
        }
        case OPT_PRINT_IDS:
            print_ids = true;
            break;
        case OPT_DUMP_LOGITS:
            dump_path = optarg;
            break;
        case OPT_INDEXER:
            if (strcmp(optarg, "exact") == 0) {
                eo.indexer = MT_INDEXER_EXACT;
            } else if (strcmp(optarg, "fp8") == 0) {
                eo.indexer = MT_INDEXER_FP8;
            } else {
                fprintf(stderr, "moetier run: unknown indexer mode '%s' (exact or fp8)\n", optarg);
                return 2;
            }
            break;
        case OPT_ATTENTION:
            if (strcmp(optarg, "sparse") == 0) {
                eo.attention = MT_ATTN_SPARSE;
            } else if (strcmp(optarg, "dense") == 0) {
                eo.attention = MT_ATTN_DENSE;
            } else {
                fprintf(stderr, "moetier run: unknown attention mode '%s' (sparse or dense)\n",
                        optarg);
                return 2;
            }
            break;
        case OPT_THREADS:
            if (!parse_long(optarg, "thread count", 1, 4096, &v)) {
                return 2;
            }
            omp_set_num_threads((int)v);
            break;
        case OPT_TRACE:
            trace_path = optarg;
            break;
        case ':':
            fprintf(stderr, "moetier run: option '%s' needs a value\n", argv[optind - 1]);
            run_usage(stderr);
            return 2;
        default:
            fprintf(stderr, "moetier run: unknown option '%s'\n", argv[optind - 1]);
            run_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "moetier run: unexpected argument '%s'\n", argv[optind]);
        run_usage(stderr);
        return 2;
    }
    if (dir == NULL || (prompt_ids == NULL) == (prompt_text == NULL)) {
        fprintf(stderr, "moetier run: need -m DIR and exactly one of --prompt-ids or -p\n");
        run_usage(stderr);
        return 2;
    }

    int rc = 1;
    int32_t *prompt = NULL;
    int n_prompt = 0;
    struct mt_model *model = NULL;
    struct mt_engine *engine = NULL;
    struct mt_sampler *sampler = NULL;
    struct mt_tokenizer *tok = NULL;
    struct mt_trace *trace = NULL;
    struct mt_detok detok;
    bool have_detok = false;
    float *logits = NULL;
    mt_status_t st;

    if (prompt_ids != NULL && !parse_ids(prompt_ids, &prompt, &n_prompt)) {
        return 2;
    }
    if (mt_model_open(dir, &model) != MT_OK) {
        goto out;
    }
    /* the tokenizer is optional with --prompt-ids (ids are printed instead of text) */
    if (prompt_text != NULL || !print_ids) {
        mt_log_set_quiet(prompt_text == NULL);
        st = mt_tokenizer_load(dir, &tok);
        mt_log_set_quiet(false);
        if (st != MT_OK) {
            tok = NULL;
            if (prompt_text != NULL) {
                goto out;
            }
        }
    }
    if (prompt_text != NULL) {
        size_t n = 0;
        int32_t bos = mt_tokenizer_bos(tok);
        int32_t *ids = NULL;
        if (mt_tokenizer_encode(tok, prompt_text, strlen(prompt_text), true, &ids, &n) != MT_OK) {
            goto out;
        }
        prompt = malloc((n + 1) * sizeof(*prompt));
        if (prompt == NULL) {
            free(ids);
            mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the prompt");
            goto out;
        }
        if (bos >= 0 && (n == 0 || ids[0] != bos)) {
            prompt[n_prompt++] = bos;
        }
        for (size_t i = 0; i < n; i++) {
            prompt[n_prompt++] = ids[i];
        }
        free(ids);
    }
    if (trace_path != NULL) {
        if (mt_trace_create(model->cfg.num_hidden_layers, model->cfg.n_routed_experts,
                            model->cfg.num_experts_per_tok, &trace) != MT_OK) {
            goto out;
        }
        eo.trace = trace;
    }
    if (mt_engine_create(model, &eo, &engine) != MT_OK) {
        goto out;
    }
    if (mt_engine_check_prompt(engine, prompt, n_prompt) != MT_OK) {
        goto out;
    }
    int vocab = mt_engine_vocab(engine);
    if (mt_sampler_create(&so, vocab, &sampler) != MT_OK) {
        goto out;
    }
    size_t n_logits = (size_t)(dump_path != NULL ? n_prompt : 1) * vocab;
    logits = malloc(n_logits * sizeof(float));
    if (logits == NULL) {
        mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %zu logits", n_logits);
        goto out;
    }

    double t0 = now_s();
    if (mt_engine_forward(engine, prompt, n_prompt, dump_path != NULL, logits) != MT_OK) {
        goto out;
    }
    double t_prefill = now_s() - t0;
    if (dump_path != NULL) {
        if (dump_logits(dump_path, logits, n_prompt, vocab) != MT_OK) {
            goto out;
        }
        memmove(logits, logits + (size_t)(n_prompt - 1) * vocab, (size_t)vocab * sizeof(float));
    }

    if (tok != NULL && !print_ids) {
        mt_detok_init(&detok, tok);
        have_detok = true;
    }
    int eos = model->cfg.eos_token_id;
    long n_done = 0;
    double t1 = now_s();
    int n_decoded = 0;
    while (n_done < n_gen) {
        int32_t next;
        if (mt_sampler_sample(sampler, logits, &next) != MT_OK) {
            goto out;
        }
        n_done++;
        if (have_detok) {
            const char *text;
            size_t len;
            size_t tl;
            /* ids past the tokenizer's vocabulary (padding rows) print as <id> */
            if (mt_tokenizer_token_bytes(tok, next, &tl) != NULL &&
                mt_detok_push(&detok, next, &text, &len) == MT_OK) {
                fwrite(text, 1, len, stdout);
            } else {
                printf("<%d>", next);
            }
        } else {
            printf(n_done > 1 ? " %d" : "%d", next);
        }
        fflush(stdout);
        if (next == eos || n_done == n_gen || mt_engine_pos(engine) >= mt_engine_max_pos(engine)) {
            break;
        }
        if (mt_engine_forward(engine, &next, 1, false, logits) != MT_OK) {
            goto out;
        }
        n_decoded++;
    }
    double t_decode = now_s() - t1;
    if (have_detok) {
        const char *text;
        size_t len;
        if (mt_detok_flush(&detok, &text, &len) == MT_OK) {
            fwrite(text, 1, len, stdout);
        }
    }
    if (n_done > 0 || print_ids) {
        printf("\n");
    }
    fflush(stdout);
    fprintf(stderr, "mt: prefill %d tokens in %.3f s (%.2f tok/s); decode %d tokens in %.3f s "
            "(%.2f tok/s)\n", n_prompt, t_prefill, n_prompt / (t_prefill > 0 ? t_prefill : 1e-9),
            n_decoded, t_decode, n_decoded > 0 ? n_decoded / (t_decode > 0 ? t_decode : 1e-9) :
            0.0);
    if (trace != NULL && mt_trace_save(trace, trace_path) != MT_OK) {
        goto out;
    }
    rc = 0;

out:
    if (have_detok) {
        mt_detok_free(&detok);
    }
    free(logits);
    mt_sampler_destroy(sampler);
    mt_engine_destroy(engine);
    mt_trace_destroy(trace);
    mt_tokenizer_free(tok);
    mt_model_destroy(model);
    free(prompt);
    return rc;
}
