/* SPDX-License-Identifier: MIT */
/*
 * cli_run.c - `moetier run`: generate from a prompt on the GPU engine (when a CUDA device is
 * present) or the CPU engine, the routed experts placed as cli_autoplan.h decides.
 *
 * The prompt is token ids (--prompt-ids 0,5,17; spaces may separate them too, as `moetier
 * tokenize` prints them; @FILE reads them from FILE, @- from stdin) or text (-p TEXT, or -f FILE
 * for a prompt longer than a command line may be, through the model's tokenizer.json, with BOS
 * prepended; special tokens written in the text, such as <｜User｜>, become their ids, so a chat
 * prompt can be written out by hand). The prompt is read and encoded before the model loads, so
 * a bad one fails at once, and on the GPU the caches are sized for it and -n when --ctx is not
 * given. Generated tokens stream to stdout as they come: as text when the model
 * directory has a tokenizer, else as ids; --print-ids prints only the generated ids, on one line,
 * separated by spaces. Prefill and decode speeds go to stderr at the end, then the run report
 * (cli_report.h: per tier experts, bytes and time per token, hit rates, busy fractions, beside
 * the plan's prediction); --json FILE also writes the report as JSON ("-": to stdout, after the
 * generated text).
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

#include "runtime/cli/cli.h"
#include "runtime/cli/cli_common.h"
#include "runtime/cli/cli_report.h"

#include "runtime/engine/engine.h"
#include "runtime/engine/session.h"
#include "runtime/model/model.h"
#include "runtime/text/sampler.h"
#include "runtime/base/out_file.h"
#include "runtime/base/status.h"
#include "runtime/text/tokenizer.h"
#include "runtime/plan/trace.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void
run_usage(FILE *f)
{
    fprintf(f,
            "usage: moetier run -m DIR (--prompt-ids ID,ID,... | -p TEXT | -f FILE) [options]\n\n"
            "Generate tokens from a prompt on the GPU engine (CUDA device 0) or the CPU\n"
            "engine, the routed experts on the GPU, in DRAM or on NVMe.\n\n"
            "  -m, --model DIR          checkpoint directory (config.json, safetensors)\n"
            "      --kv-dtype f32|bf16|fp8  latent cache dtype (default f32 on cpu, bf16 on\n"
            "                           gpu; fp8: DeepSeek's 656-byte layout, for long contexts)\n"
            "      --ctx N              positions the run may reach, which the KV cache and the\n"
            "                           placement are sized for (default 8192, or the prompt\n"
            "                           and -n where they need more)\n"
            "      --debug-sync         gpu: synchronize after every kernel (MT_DEBUG_SYNC=1)\n"
            "      --prompt-ids LIST    prompt as token ids separated by commas or spaces;\n"
            "                           @FILE reads them from FILE, @- from stdin\n"
            "  -p, --prompt TEXT        prompt as text (needs DIR/tokenizer.json; BOS prepended;\n"
            "                           special tokens such as <｜User｜> in TEXT are recognized)\n"
            "  -f, --prompt-file FILE   the prompt's text from FILE (- for stdin), as -p\n"
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
            "      --threads N          threads of the OpenMP ops and of the routed-expert\n"
            "                           team (default: OMP_NUM_THREADS or all CPUs for\n"
            "                           OpenMP, one a physical core for the team)\n"
            "      --experts KIND       who computes routed experts: team (SIMD kernels on pinned\n"
            "                           threads, default) or ref (the fp32 reference)\n"
            "      --trace FILE         record routed expert ids per layer (JSON trace)\n"
            "      --json FILE          write the run report as JSON (- for stdout, after the\n"
            "                           text); moetier plan --learn reads it\n"
            "  -v, --verbose            print the plan in one screen at start\n"
            "  -h, --help               this text\n");
    mt_cli_placement_usage(f);
    fprintf(f, "Generation stops after N tokens or at the model's EOS token.\n");
}

static const struct mt_cli cli = {"run", run_usage};

static mt_status_t
dump_logits(const char *path, const float *logits, int T, int vocab)
{
    int32_t hdr[2] = {T, vocab};
    struct mt_out_file o;
    mt_status_t st;

    /* (written beside the destination and renamed: a failure leaves no truncated dump) */
    if ((st = mt_out_file_open(path, "logits file", &o)) != MT_OK) {
        return st;
    }
    if (fwrite("MTLOGIT1", 1, 8, o.f) != 8 || fwrite(hdr, sizeof(int32_t), 2, o.f) != 2 ||
        fwrite(logits, sizeof(float), (size_t)T * vocab, o.f) != (size_t)T * vocab) {
        int err = errno;

        mt_out_file_abort(&o);
        return mt_fail(MT_ERR_IO, err, "cannot write logits file '%s'", path);
    }
    return mt_out_file_commit(&o);
}

/* Streams generated ids to stdout: as text through the detokenizer, or as ids. */
struct run_printer {
    const struct mt_tokenizer *tok;
    struct mt_detok *detok; /* NULL: print ids */
    long n;                 /* ids printed so far */
    struct mt_cli_report *report; /* told where prefill ends (the first token) */
    bool tty_out; /* stdout is a terminal: drop control characters from the model's text */
    mt_status_t st; /* the stream decoder's failure (no memory), which stopped the run */
};

static bool
print_token(void *ctx, int32_t id)
{
    struct run_printer *pr = ctx;

    if (pr->n == 0) {
        mt_cli_report_prefill_done(pr->report);
    }
    pr->n++;
    if (pr->detok != NULL) {
        const char *text;
        size_t len;
        size_t tl;
        /* ids past the tokenizer's vocabulary (padding rows) print as <id> */
        if (mt_tokenizer_token_bytes(pr->tok, id, &tl) == NULL) {
            printf("<%d>", id);
        } else if ((pr->st = mt_detok_push(pr->detok, id, &text, &len)) == MT_OK) {
            mt_cli_write_model_text(stdout, text, len, pr->tty_out);
        } else {
            return false;
        }
    } else {
        printf(pr->n > 1 ? " %d" : "%d", id);
    }
    fflush(stdout);
    return true;
}

/*
 * Peak resident memory of the process and the routed-expert weights the engine holds now, beside
 * the size of all routed experts: where a plan streams experts from disk, the held bytes stay
 * near zero however many experts ran.
 */
static void
report_memory(const struct mt_cli_engine *e)
{
    struct rusage ru;
    struct mt_model_sizes sz;

    if (getrusage(RUSAGE_SELF, &ru) != 0 || mt_model_sizes_of(e->model, &sz) != MT_OK) {
        return;
    }
    fprintf(stderr, "mt: memory: peak resident %.1f MiB; routed experts held %.1f MiB of %.1f "
            "MiB\n", (double)ru.ru_maxrss / 1024.0,
            (double)mt_engine_expert_bytes_held(e->engine) / (1 << 20),
            (double)sz.routed_bytes / (1 << 20));
}

enum {
    OPT_PROMPT_IDS = 256,
    OPT_PRINT_IDS,
    OPT_DUMP_LOGITS,
    OPT_INDEXER,
    OPT_ATTENTION,
    OPT_TRACE,
    OPT_JSON,
};

int
mt_cli_run(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"prompt-ids", required_argument, NULL, OPT_PROMPT_IDS},
        {"prompt", required_argument, NULL, 'p'},
        {"prompt-file", required_argument, NULL, 'f'},
        {"print-ids", no_argument, NULL, OPT_PRINT_IDS},
        {"dump-logits", required_argument, NULL, OPT_DUMP_LOGITS},
        {"indexer", required_argument, NULL, OPT_INDEXER},
        {"attention", required_argument, NULL, OPT_ATTENTION},
        {"trace", required_argument, NULL, OPT_TRACE},
        {"json", required_argument, NULL, OPT_JSON},
        {"verbose", no_argument, NULL, 'v'},
        MT_CLI_ENGINE_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL;
    const char *prompt_ids = NULL;
    const char *prompt_text = NULL;
    const char *prompt_file = NULL;
    char *input = NULL; /* what --prompt-ids @FILE or -f read */
    size_t text_len = 0;
    const char *dump_path = NULL;
    const char *trace_path = NULL;
    const char *json_path = NULL;
    long n_gen = 32;
    bool print_ids = false;
    struct mt_cli_engine_flags ef;
    int opt;
    int rc;

    mt_cli_engine_flags_init(&ef);
    ef.report = true;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":m:p:f:n:vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'm':
            dir = optarg;
            break;
        case 'p':
            prompt_text = optarg;
            break;
        case 'f':
            prompt_file = optarg;
            break;
        case 'n':
            if (!mt_cli_parse_long(&cli, "token count -n", optarg, 0, INT_MAX, &n_gen)) {
                return 2;
            }
            break;
        case 'v':
            ef.verbose = true;
            break;
        case 'h':
            run_usage(stdout);
            return 0;
        case OPT_PROMPT_IDS:
            prompt_ids = optarg;
            break;
        case OPT_PRINT_IDS:
            print_ids = true;
            break;
        case OPT_DUMP_LOGITS:
            dump_path = optarg;
            break;
        case OPT_INDEXER:
            if (strcmp(optarg, "exact") == 0) {
                ef.engine.indexer = MT_INDEXER_EXACT;
            } else if (strcmp(optarg, "fp8") == 0) {
                ef.engine.indexer = MT_INDEXER_FP8;
            } else {
                mt_cli_error(&cli, "unknown indexer mode '%s' (exact or fp8)", optarg);
                return 2;
            }
            break;
        case OPT_ATTENTION:
            if (strcmp(optarg, "sparse") == 0) {
                ef.engine.attention = MT_ATTN_SPARSE;
            } else if (strcmp(optarg, "dense") == 0) {
                ef.engine.attention = MT_ATTN_DENSE;
            } else {
                mt_cli_error(&cli, "unknown attention mode '%s' (sparse or dense)", optarg);
                return 2;
            }
            break;
        case OPT_TRACE:
            trace_path = optarg;
            break;
        case OPT_JSON:
            json_path = optarg;
            break;
        default:
            /* the shared flags (--temperature, --threads, ...) or a bad option */
            if ((rc = mt_cli_engine_flags_parse(&cli, opt, argv, &ef)) != 0) {
                return rc;
            }
            break;
        }
    }
    if (optind < argc) {
        return mt_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
    }
    if (dir == NULL || (prompt_ids != NULL) + (prompt_text != NULL) + (prompt_file != NULL) != 1) {
        return mt_cli_usage_error(&cli, "need -m DIR and exactly one of --prompt-ids, -p or -f");
    }

    int32_t *prompt = NULL;
    int n_prompt = 0;
    struct mt_cli_engine e = {0};
    struct mt_tokenizer *tok = NULL;
    struct mt_detok detok;
    bool have_detok = false;
    float *logits = NULL;
    mt_status_t st;

    /* the file the prompt comes from, "-" for stdin; NULL: the command line */
    const char *prompt_in = prompt_file;
    rc = 1;
    if (prompt_ids != NULL) {
        size_t n = 0, len = strlen(prompt_ids);
        const char *what = "--prompt-ids";
        if (prompt_ids[0] == '@') {
            prompt_in = prompt_ids + 1;
            if (!mt_cli_read_input(&cli, "prompt ids", prompt_in, &input, &len)) {
                goto out;
            }
            what = prompt_ids;
            prompt_ids = input;
        }
        if (!mt_cli_parse_ids(&cli, what, prompt_ids, len, &prompt, &n)) {
            rc = 2;
            goto out;
        }
        if (n == 0) { /* found here, not after the model has loaded */
            mt_cli_error(&cli, "empty prompt: %s holds no token id", what);
            /* an empty argument is a bad flag value (2), as a malformed one is; an empty
               @FILE is bad input (1), as an empty -f file is */
            rc = prompt_in == NULL ? 2 : 1;
            goto out;
        }
        /* n <= len / 2 + 1: an argument's length, or a file's of at most 256 MiB */
        n_prompt = (int)n;
    } else if (prompt_file != NULL) {
        if (!mt_cli_read_input(&cli, "prompt text", prompt_file, &input, &text_len)) {
            goto out;
        }
        prompt_text = input;
    } else {
        text_len = strlen(prompt_text);
    }
    /* outputs are checked before the generation, not found unwritable after it */
    const char *json_file = json_path != NULL && strcmp(json_path, "-") != 0 ? json_path : NULL;
    if ((dump_path != NULL && !mt_cli_check_output(&cli, "--dump-logits", dump_path)) ||
        (trace_path != NULL && !mt_cli_check_output(&cli, "--trace", trace_path)) ||
        (json_file != NULL && !mt_cli_check_output(&cli, "--json", json_file))) {
        goto out;
    }
    /* no output may be a file of the model or an input, nor two of them the same file */
    if (mt_cli_output_is_model_file(&cli, "--dump-logits", dump_path, dir) ||
        mt_cli_output_is_model_file(&cli, "--trace", trace_path, dir) ||
        mt_cli_output_is_model_file(&cli, "--json", json_file, dir) ||
        mt_cli_outputs_clash(&cli, "--dump-logits", dump_path, "--trace", trace_path) ||
        mt_cli_outputs_clash(&cli, "--dump-logits", dump_path, "--json", json_file) ||
        mt_cli_outputs_clash(&cli, "--trace", trace_path, "--json", json_file)) {
        rc = 2;
        goto out;
    }
    if (prompt_in != NULL && strcmp(prompt_in, "-") == 0) {
        prompt_in = NULL; /* stdin: no file to overwrite */
    }
    for (int i = 0; i < 3; i++) {
        static const char *const flag[] = {"--dump-logits", "--trace", "--json"};
        const char *o = i == 0 ? dump_path : i == 1 ? trace_path : json_file;
        if (mt_cli_output_is_input(&cli, flag[i], o, "--plan", ef.plan_path) ||
            mt_cli_output_is_input(&cli, flag[i], o, "--hw", ef.hw_path) ||
            mt_cli_output_is_input(&cli, flag[i], o, "prompt", prompt_in)) {
            rc = 2;
            goto out;
        }
        /* a store file is an input too: the streamed experts, a pack's hours of copying */
        for (int k = 0; k < ef.n_store; k++) {
            if (mt_cli_output_is_input(&cli, flag[i], o, "--store", ef.store[k])) {
                rc = 2;
                goto out;
            }
        }
    }
    /* the tokenizer is optional with --prompt-ids (ids are printed instead of text) */
    if (prompt_text != NULL || !print_ids) {
        mt_log_set_quiet(prompt_text == NULL);
        st = mt_tokenizer_load(dir, &tok);
        mt_log_set_quiet(false);
        if (st != MT_OK) {
            tok = NULL;
            /* none is fine; one that is there but unreadable is worth a word */
            char tpath[4096];
            snprintf(tpath, sizeof(tpath), "%s/tokenizer.json", dir);
            if (prompt_text != NULL) {
                if (access(dir, F_OK) == 0 && access(tpath, F_OK) != 0) {
                    mt_cli_error(&cli, "the model directory needs its tokenizer.json for a text "
                                 "prompt (-p, -f); --prompt-ids runs without one");
                }
                goto out;
            }
            if (access(tpath, F_OK) == 0) {
                mt_log_warn("%s; ids are printed instead of text", mt_last_error());
            }
        }
    }
    if (prompt_text != NULL) {
        size_t n = 0;
        int32_t bos = mt_tokenizer_bos(tok);
        int32_t *ids = NULL;

        mt_cli_warn_no_bos(tok, dir);
        if (mt_tokenizer_encode(tok, prompt_text, text_len, true, &ids, &n) != MT_OK) {
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
    /* the prompt against the config before the weights load (minutes on the full model); a
     * config that does not load is left to the engine's own message */
    {
        struct mt_model_config cfg;
        if (mt_cli_peek_config(dir, &cfg) &&
            mt_engine_check_prompt_config(&cfg, prompt, n_prompt) != MT_OK) {
            goto out;
        }
    }
    /* the caches hold the whole run unless --ctx says otherwise */
    ef.ctx_need = (int64_t)n_prompt + n_gen;
    if (mt_cli_engine_init(&e, dir, &ef, trace_path != NULL) != MT_OK) {
        goto out;
    }
    if (mt_engine_check_prompt(e.engine, prompt, n_prompt) != MT_OK) {
        goto out;
    }
    int vocab = e.vocab;
    if (dump_path != NULL) {
        size_t n_logits = (size_t)n_prompt * vocab;
        logits = malloc(n_logits * sizeof(float));
        if (logits == NULL) {
            mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %zu logits", n_logits);
            goto out;
        }
    }
    if (tok != NULL && !print_ids) {
        mt_detok_init(&detok, tok);
        have_detok = true;
    }
    struct mt_cli_report report;
    struct run_printer pr = {tok, have_detok ? &detok : NULL, 0, &report, isatty(STDOUT_FILENO),
                             MT_OK};
    struct mt_gen_opts go;
    struct mt_gen_result res;
    mt_gen_opts_default(&go);
    go.max_new = n_gen;
    go.prompt_logits_out = logits;
    /* an automatic plan is compared with its prediction too */
    mt_cli_report_begin(&report, &e, ef.plan_path != NULL ? ef.plan_path : "(automatic)",
                        e.device == MT_DEVICE_GPU);
    if (mt_session_generate(e.session, prompt, (size_t)n_prompt, &go, print_token, &pr, &res) !=
            MT_OK ||
        pr.st != MT_OK) {
        goto out;
    }
    if (have_detok) {
        const char *text;
        size_t len;
        if (mt_detok_flush(&detok, &text, &len) != MT_OK) {
            goto out;
        }
        fwrite(text, 1, len, stdout);
    }
    if (pr.n > 0 || print_ids) {
        printf("\n");
    }
    if (!mt_cli_flush_stdout(&cli)) {
        goto out;
    }
    if (res.stop == MT_STOP_CONTEXT) {
        mt_log_warn("generation stopped after %ld of %ld tokens: the sequence reached the %lld "
                    "positions the engine holds (--ctx, or the model's "
                    "max_position_embeddings)", res.n_generated, n_gen, (long long)mt_engine_max_pos(e.engine));
    }
    fprintf(stderr, "mt: prefill %d tokens in %.3f s (%.2f tok/s); decode %ld tokens in %.3f s "
            "(%.2f tok/s)\n", n_prompt, res.prefill_s, mt_cli_tok_per_s(n_prompt, res.prefill_s),
            res.n_decoded, res.decode_s, mt_cli_tok_per_s((double)res.n_decoded, res.decode_s));
    report_memory(&e);
    mt_cli_engine_report_stream(&e);
    mt_cli_report_end(&report, &res);
    mt_cli_report_print(&report, stderr);
    if (json_path != NULL && mt_cli_report_save_json(&report, json_path) != MT_OK) {
        goto out;
    }
    if (dump_path != NULL && dump_logits(dump_path, logits, n_prompt, vocab) != MT_OK) {
        goto out;
    }
    if (e.trace != NULL && mt_trace_save(e.trace, trace_path) != MT_OK) {
        goto out;
    }
    rc = 0;

out:
    if (have_detok) {
        mt_detok_fini(&detok);
    }
    free(logits);
    mt_tokenizer_destroy(tok);
    mt_cli_engine_fini(&e);
    free(prompt);
    free(input);
    return rc;
}
