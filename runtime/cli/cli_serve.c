/* SPDX-License-Identifier: MIT */
/*
 * cli_serve.c - `moetier serve`: the OpenAI-compatible HTTP server (runtime/serve/server.h) on
 * one model, until Ctrl-C or SIGTERM.
 *
 * The one idea: the main thread only waits for signals. SIGINT and SIGTERM are blocked before
 * any thread starts (so none of the server's threads takes them) and taken with sigwait(): the
 * first stops accepting and lets the running request finish, a second one stops that request
 * too; then the server is freed and the command exits 0. Before the server listens (the quick
 * hardware benchmark, the weights' load: minutes for a full checkpoint) a watcher thread takes
 * them instead and ends the process by the signal, as `run` ends then.
 *
 * Exit status: 0 after a signal once listening (one before ends the process by that signal), 1
 * when the model cannot be loaded or the address cannot be bound, 2 usage error.
 */
#include <config.h>

#include "runtime/cli/cli.h"
#include "runtime/cli/cli_common.h"
#include "runtime/serve/guard.h"
#include "runtime/serve/server.h"
#include "runtime/base/status.h"
#include "runtime/text/tokenizer.h"

#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * The start-up watcher: SIGINT and SIGTERM are blocked in every thread (see above), so during a
 * start-up of minutes nothing would take them. It waits for them until `started`; one that
 * comes before kills the process by its own default action (an unblocked raise in this thread),
 * one that comes just after is handed to the main thread in `sig`.
 */
struct startup_watch {
    const sigset_t *sigs;
    atomic_bool started;
    int sig;
};

static void *
startup_watch(void *arg)
{
    struct startup_watch *w = arg;

    while (!atomic_load(&w->started)) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000 * 1000};
        int sig = sigtimedwait(w->sigs, NULL, &ts);

        if (sig <= 0) {
            continue;
        }
        if (atomic_load(&w->started)) {
            w->sig = sig;
            break;
        }
        fprintf(stderr, "moetier serve: %s while starting\n",
                sig == SIGINT ? "interrupted" : "terminated");
        signal(sig, SIG_DFL);
        pthread_sigmask(SIG_UNBLOCK, w->sigs, NULL);
        raise(sig);
    }
    return NULL;
}

static void
serve_usage(FILE *f)
{
    fprintf(f,
            "usage: moetier serve -m DIR [options]\n\n"
            "Serve the model over HTTP with OpenAI's API (CPU or GPU engine), and a chat page\n"
            "at /. One model, one engine: requests wait in a queue and run one at a time.\n\n"
            "  -m, --model DIR          checkpoint directory (config.json, safetensors,\n"
            "                           tokenizer.json)\n"
            "      --host ADDR          address to listen on (default 127.0.0.1; one that is not\n"
            "                           loopback lets other machines in, with a warning)\n"
            "      --port N             port (default 8080; 0 picks a free one, printed)\n"
            "      --api-key KEY        require \"Authorization: Bearer KEY\" on /v1 requests\n"
            "      --allow-origin URL   let the page of URL (http[s]://host[:port]) call the\n"
            "                           server from a browser: a reverse proxy's; pages of\n"
            "                           other sites are refused (repeatable, up to 8)\n"
            "      --model-name NAME    the model's name in the API (default: DIR's last part)\n"
            "      --max-tokens N       most tokens a choice may generate (default 4096); a\n"
            "                           request without max_tokens gets 512 (N if smaller)\n"
            "      --max-body SIZE      largest request body (default 1M)\n"
            "      --max-messages N     most messages in a chat request (default 256)\n"
            "      --queue N            most requests waiting (default 64; more get 429)\n"
            "      --request-deadline S while half of the --queue + 64 connections are open,\n"
            "                           one that sends no whole request within S seconds of\n"
            "                           opening or of its last answer is closed (default 15,\n"
            "                           at most 3600; 0: never)\n"
            "      --stream-keepalive S a stream with nothing to send for S seconds (a long\n"
            "                           prompt, a tool call held back until whole) gets an\n"
            "                           SSE comment line, which clients skip, so proxies\n"
            "                           with read timeouts keep it (default 15; 0: never)\n"
            "      --temperature T      for requests that give none (default 1)\n"
            "      --top-p P            for requests that give none (default 0.95)\n"
            "      --top-k K            for requests that give none (default 0 = all)\n"
            "      --seed S             accepted for symmetry; requests bring their own seed\n"
            "      --kv-dtype f32|bf16|fp8  latent cache dtype (default f32 on cpu, bf16 on\n"
            "                           gpu; fp8: DeepSeek's 656-byte layout, for long contexts)\n"
            "      --ctx N              positions a request may reach, which the KV cache and\n"
            "                           the placement are sized for (default 8192)\n"
            "      --debug-sync         gpu: synchronize after every kernel (MT_DEBUG_SYNC=1)\n"
            "      --threads N          threads of the OpenMP ops and of the routed-expert\n"
            "                           team (default: OMP_NUM_THREADS or all CPUs for\n"
            "                           OpenMP, one a physical core for the team)\n"
            "      --experts KIND       who computes routed experts: team (SIMD kernels on pinned\n"
            "                           threads, default) or ref (the fp32 reference)\n"
            "  -q, --quiet              no log line per request (nor where the experts went)\n"
            "  -v, --verbose            print the plan in one screen at start\n"
            "  -h, --help               this text\n");
    mt_cli_placement_usage(f);
    fprintf(f,
            "Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models\n"
            "(and /v1/models/ID), GET /health, GET /metrics (Prometheus), GET / (chat page).\n"
            "Ctrl-C or SIGTERM finishes the running request and exits; a second one stops it\n"
            "(answered 503).\n");
}

static const struct mt_cli cli = {"serve", serve_usage};

enum {
    OPT_HOST = 256,
    OPT_PORT,
    OPT_API_KEY,
    OPT_ALLOW_ORIGIN,
    OPT_MODEL_NAME,
    OPT_MAX_TOKENS,
    OPT_MAX_BODY,
    OPT_MAX_MESSAGES,
    OPT_QUEUE,
    OPT_REQUEST_DEADLINE,
    OPT_STREAM_KEEPALIVE,
};

/* The last part of a directory path ("/models/v32/" -> "v32"), malloc'ed. */
static char *
dir_name(const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') {
        n--;
    }
    size_t b = n;
    while (b > 0 && dir[b - 1] != '/') {
        b--;
    }
    if (b == n) {
        return strdup("moetier");
    }
    return strndup(dir + b, n - b);
}

int
mt_cli_serve(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"api-key", required_argument, NULL, OPT_API_KEY},
        {"allow-origin", required_argument, NULL, OPT_ALLOW_ORIGIN},
        {"model-name", required_argument, NULL, OPT_MODEL_NAME},
        {"max-tokens", required_argument, NULL, OPT_MAX_TOKENS},
        {"max-body", required_argument, NULL, OPT_MAX_BODY},
        {"max-messages", required_argument, NULL, OPT_MAX_MESSAGES},
        {"queue", required_argument, NULL, OPT_QUEUE},
        {"request-deadline", required_argument, NULL, OPT_REQUEST_DEADLINE},
        {"stream-keepalive", required_argument, NULL, OPT_STREAM_KEEPALIVE},
        MT_CLI_ENGINE_LONGOPTS,
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct mt_serve_opts so;
    struct mt_cli_engine_flags ef;
    const char *dir = NULL;
    const char *model_name = NULL;
    long v;
    uint64_t size;
    int opt;
    int rc;

    mt_serve_opts_default(&so);
    mt_cli_engine_flags_init(&ef);
    ef.sampler = so.sampling; /* temperature 1, top_p 0.95 unless told */
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":m:qvh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'm':
            dir = optarg;
            break;
        case 'q':
            so.quiet = true;
            break;
        case 'v':
            ef.verbose = true;
            break;
        case 'h':
            serve_usage(stdout);
            return 0;
        case OPT_HOST:
            if (optarg[0] == '\0') {
                return mt_cli_usage_error(&cli, "bad --host '' (an address or a name)");
            }
            so.host = optarg;
            break;
        case OPT_PORT:
            if (!mt_cli_parse_long(&cli, "--port", optarg, 0, 65535, &v)) {
                return 2;
            }
            so.port = (int)v;
            break;
        case OPT_API_KEY:
            if (optarg[0] == '\0') {
                return mt_cli_usage_error(&cli, "bad --api-key '' (an empty key protects nothing)");
            }
            so.api_key = optarg;
            break;
        case OPT_ALLOW_ORIGIN:
            if (!mt_serve_guard_origin_ok(optarg)) {
                return mt_cli_usage_error(&cli, "bad --allow-origin '%s' (an origin: http:// or "
                                          "https://, a host and an optional port, e.g. "
                                          "https://chat.example.com)", optarg);
            }
            if (so.n_allow_origins == MT_SERVE_MAX_ALLOW_ORIGINS) {
                return mt_cli_usage_error(&cli, "more than %d --allow-origin",
                                          MT_SERVE_MAX_ALLOW_ORIGINS);
            }
            so.allow_origins[so.n_allow_origins++] = optarg;
            break;
        case OPT_MODEL_NAME:
            if (optarg[0] == '\0') {
                return mt_cli_usage_error(&cli, "bad --model-name ''");
            }
            model_name = optarg;
            break;
        case OPT_MAX_TOKENS:
            if (!mt_cli_parse_long(&cli, "--max-tokens", optarg, 1, INT_MAX, &v)) {
                return 2;
            }
            so.limits.max_tokens = v;
            break;
        case OPT_MAX_BODY:
            if (!mt_cli_parse_size(&cli, "--max-body", "1M", optarg, &size)) {
                return 2;
            }
            if (size < 64 || size > (1ull << 30)) {
                return mt_cli_usage_error(&cli, "bad --max-body '%s' (must be in 64..1G)",
                                          optarg);
            }
            so.limits.max_body = (size_t)size;
            break;
        case OPT_MAX_MESSAGES:
            if (!mt_cli_parse_long(&cli, "--max-messages", optarg, 1, 1 << 20, &v)) {
                return 2;
            }
            so.limits.max_messages = (size_t)v;
            break;
        case OPT_QUEUE:
            if (!mt_cli_parse_long(&cli, "--queue", optarg, 0, 4096, &v)) {
                return 2;
            }
            so.limits.max_queue = (int)v;
            break;
        case OPT_REQUEST_DEADLINE:
            if (!mt_cli_parse_long(&cli, "--request-deadline", optarg, 0, 3600, &v)) {
                return 2;
            }
            so.request_deadline_s = (unsigned)v;
            break;
        case OPT_STREAM_KEEPALIVE:
            if (!mt_cli_parse_double(&cli, "--stream-keepalive", optarg,
                                     &so.stream_keepalive_s)) {
                return 2;
            }
            /* fractions are for tests (below 0.01 s a silent stream would be all keep-alives);
             * past an hour no proxy waits anyway */
            if (!(so.stream_keepalive_s == 0.0 ||
                  (so.stream_keepalive_s >= 0.01 && so.stream_keepalive_s <= 3600.0))) {
                mt_cli_error(&cli, "--stream-keepalive must be 0 (never) or 0.01 to 3600 "
                             "seconds, got '%s'", optarg);
                return 2;
            }
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
    if (dir == NULL) {
        return mt_cli_usage_error(&cli, "need -m DIR");
    }
    so.sampling = ef.sampler;
    if (so.limits.default_max_tokens > so.limits.max_tokens) {
        so.limits.default_max_tokens = so.limits.max_tokens;
    }

    struct mt_cli_engine e = {0};
    struct mt_tokenizer *tok = NULL;
    struct mt_serve *serve = NULL;
    char *name = NULL;
    sigset_t sigs;
    sigset_t old_sigs;
    struct sigaction old_pipe;
    struct sigaction ign = {.sa_handler = SIG_IGN};
    struct startup_watch watch = {.sigs = &sigs};
    pthread_t watcher;
    bool watching;
    int sig = 0;

    /* before any thread: the server's threads inherit the mask, so only sigwait sees these */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, &old_sigs);
    sigaction(SIGPIPE, &ign, &old_pipe); /* a client gone mid-write is an error, not a death */
    watching = pthread_create(&watcher, NULL, startup_watch, &watch) == 0;

    rc = 1;
    name = model_name != NULL ? strdup(model_name) : dir_name(dir);
    if (name == NULL) {
        mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the model name");
        goto out;
    }
    so.model_id = name;
    ef.report = !so.quiet;
    if (mt_serve_check_address(so.host, so.port) != MT_OK) { /* before minutes of loading */
        goto out;
    }
    if (mt_cli_engine_init(&e, dir, &ef, false) != MT_OK) {
        goto out;
    }
    if (mt_tokenizer_load(dir, &tok) != MT_OK) {
        mt_cli_error(&cli, "the model directory needs its tokenizer.json");
        goto out;
    }
    mt_cli_warn_no_bos(tok, dir);
    if (mt_serve_create(e.engine, tok, &so, &serve) != MT_OK) {
        goto out;
    }
    if (mt_serve_is_public(serve)) {
        mt_log_warn("listening on %s, which other machines can reach: anyone who can connect can "
                    "use the model%s", so.host,
                    so.api_key == NULL ? " (--api-key requires a key)" : "");
    }
    bool v6 = strchr(so.host, ':') != NULL;
    mt_log_line("moetier serve: listening on http://%s%s%s:%d/ (model %s; one request at a time, "
                "up to %d waiting%s)",
                v6 ? "[" : "", so.host, v6 ? "]" : "", mt_serve_port(serve), name,
                so.limits.max_queue, so.api_key != NULL ? "; API key required" : "");
    fflush(stderr);

    if (watching) {
        atomic_store(&watch.started, true);
        pthread_join(watcher, NULL);
        watching = false;
        sig = watch.sig;
    }
    while (sig == 0 && sigwait(&sigs, &sig) != 0) {
    }
    fprintf(stderr, "moetier serve: %s: finishing the running request (again to stop it now)\n",
            sig == SIGINT ? "interrupted" : "terminated");
    mt_serve_stop(serve, false);
    while (!mt_serve_is_idle(serve)) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
        if (sigtimedwait(&sigs, NULL, &ts) > 0) {
            fprintf(stderr, "moetier serve: stopping the running request\n");
            mt_serve_stop(serve, true);
        }
    }
    fprintf(stderr, "moetier serve: stopped\n");
    rc = 0;

out:
    if (watching) { /* start-up failed: the watcher ends without a signal */
        atomic_store(&watch.started, true);
        pthread_join(watcher, NULL);
    }
    mt_serve_destroy(serve);
    mt_tokenizer_destroy(tok);
    mt_cli_engine_fini(&e);
    free(name);
    sigaction(SIGPIPE, &old_pipe, NULL);
    pthread_sigmask(SIG_SETMASK, &old_sigs, NULL);
    return rc;
}
