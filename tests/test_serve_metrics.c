/* SPDX-License-Identifier: MIT */
/*
 * test_serve_metrics.c - the counters behind GET /metrics (runtime/serve/metrics.h) as plain
 * functions: paths bucketed into the known routes, requests counted by route and status,
 * generations added up into token and second totals with the last request's speeds, and the
 * Prometheus text that carries them, whole however long it grows.
 */
#include <config.h>

#include "runtime/serve/metrics.h"
#include "tests/tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of the sample line "name value" (name with its labels) in text; NAN when absent. */
static double
sample(const char *text, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = text; *p != '\0';) {
        if (strncmp(p, name, n) == 0 && p[n] == ' ') {
            return strtod(p + n + 1, NULL);
        }
        const char *eol = strchr(p, '\n');
        if (eol == NULL) {
            break;
        }
        p = eol + 1;
    }
    return NAN;
}

/* The exposition text of m with queued and busy; aborts the test when it cannot be made. */
static char *
text_of(struct mt_serve_metrics *m, int queued, bool busy)
{
    char *text = NULL;

    if (mt_serve_metrics_text(m, queued, busy, &text) != MT_OK || text == NULL) {
        tap_bail_out("mt_serve_metrics_text failed");
    }
    return text;
}

static void
check_routes(void)
{
    static const struct {
        const char *path;
        enum mt_serve_route want;
    } cases[] = {
        {"/v1/chat/completions", MT_SERVE_ROUTE_CHAT},
        {"/v1/completions", MT_SERVE_ROUTE_COMPLETIONS},
        {"/v1/models", MT_SERVE_ROUTE_MODELS},
        {"/v1/models/tiny", MT_SERVE_ROUTE_MODEL},
        {"/v1/models/deepseek-ai/DeepSeek-V3.2", MT_SERVE_ROUTE_MODEL}, /* an id with '/' */
        {"/health", MT_SERVE_ROUTE_HEALTH},
        {"/metrics", MT_SERVE_ROUTE_METRICS},
        {"/", MT_SERVE_ROUTE_PAGE},
        {"/v1/models/", MT_SERVE_ROUTE_OTHER}, /* no id */
        {"/v1/chat/completions/x", MT_SERVE_ROUTE_OTHER},
        {"/healthz", MT_SERVE_ROUTE_OTHER},
        {"/v1/model", MT_SERVE_ROUTE_OTHER},
        {"other", MT_SERVE_ROUTE_OTHER},
        {"", MT_SERVE_ROUTE_OTHER},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum mt_serve_route got = mt_serve_route_of(cases[i].path);
        tap_ok(got == cases[i].want, "route of '%s': %s (want %s)", cases[i].path,
               mt_serve_route_path(got), mt_serve_route_path(cases[i].want));
    }
    tap_ok(strcmp(mt_serve_route_path(MT_SERVE_ROUTE_MODEL), "/v1/models/{id}") == 0 &&
               strcmp(mt_serve_route_path(MT_SERVE_ROUTE_OTHER), "other") == 0 &&
               strcmp(mt_serve_route_path(MT_SERVE_ROUTE_COUNT), "other") == 0,
           "route paths: /v1/models/{id}, other, and other for a value past the routes");
}

#define CHAT_REQUESTS "moetier_requests_total{path=\"/v1/chat/completions\","

static void
check_requests(void)
{
    struct mt_serve_metrics m;
    char *text;

    mt_serve_metrics_init(&m);
    for (int i = 0; i < 3; i++) {
        mt_serve_metrics_count_request(&m, MT_SERVE_ROUTE_CHAT, 200);
    }
    mt_serve_metrics_count_request(&m, MT_SERVE_ROUTE_CHAT, 429);
    mt_serve_metrics_count_request(&m, MT_SERVE_ROUTE_HEALTH, 200);
    mt_serve_metrics_count_request(&m, MT_SERVE_ROUTE_CHAT, 200);
    text = text_of(&m, 0, false);
    tap_ok(sample(text, CHAT_REQUESTS "code=\"200\"}") == 4 &&
               sample(text, CHAT_REQUESTS "code=\"429\"}") == 1 &&
               sample(text, "moetier_requests_total{path=\"/health\",code=\"200\"}") == 1 &&
               strstr(text, "path=\"/v1/completions\"") == NULL &&
               strstr(text, "code=\"0\"") == NULL,
           "requests by path and status: chat 200 4, chat 429 1, health 200 1, nothing else");
    free(text);
    mt_serve_metrics_fini(&m);

    /* every one of the 12 codes a route keeps, and a 13th (not kept) touches no other route */
    mt_serve_metrics_init(&m);
    for (int code = 400; code < 413; code++) {
        mt_serve_metrics_count_request(&m, MT_SERVE_ROUTE_CHAT, code);
    }
    text = text_of(&m, 0, false);
    int kept = 0;
    for (int code = 400; code < 400 + MT_SERVE_METRICS_CODES; code++) {
        char name[96];
        snprintf(name, sizeof(name), CHAT_REQUESTS "code=\"%d\"}", code);
        kept += sample(text, name) == 1;
    }
    tap_ok(kept == MT_SERVE_METRICS_CODES && strstr(text, "path=\"/v1/completions\"") == NULL,
           "%d distinct codes on one route: all %d counted, none spills into the next route",
           MT_SERVE_METRICS_CODES + 1, MT_SERVE_METRICS_CODES);
    free(text);
    mt_serve_metrics_fini(&m);
}

static void
check_generations(void)
{
    struct mt_serve_metrics m;
    char *text;
    /* 100 prompt ids of which 40 cached: 60 run in 0.5 s (120 tok/s); 20 generated, 19 fed
     * back in 0.25 s (76 tok/s) */
    struct mt_gen_result a = {.n_prompt = 100, .n_reused = 40, .n_generated = 20,
                              .n_decoded = 19, .prefill_s = 0.5, .decode_s = 0.25};
    /* then 30 ids of which 10 cached: 20 run in 0.1 s (200 tok/s); 8 generated, 8 fed back in
     * 0.5 s (16 tok/s); its client left */
    struct mt_gen_result b = {.n_prompt = 30, .n_reused = 10, .n_generated = 8, .n_decoded = 8,
                              .prefill_s = 0.1, .decode_s = 0.5};
    /* then a prompt wholly cached (no prefill time) and one id sampled (a moment's decode
     * time), none fed back */
    struct mt_gen_result c = {.n_prompt = 30, .n_reused = 30, .n_generated = 1, .n_decoded = 0,
                              .prefill_s = 0.0, .decode_s = 0.002};

    mt_serve_metrics_init(&m);
    mt_serve_metrics_count_generation(&m, &a, false);
    text = text_of(&m, 0, false);
    tap_ok(fabs(sample(text, "moetier_prefill_tokens_per_second") - 120.0) < 1e-3 &&
               fabs(sample(text, "moetier_decode_tokens_per_second") - 76.0) < 1e-3,
           "speeds of the request: prefill 60 uncached ids / 0.5 s = 120, decode 19 fed back / "
           "0.25 s = 76 (%g, %g)", sample(text, "moetier_prefill_tokens_per_second"),
           sample(text, "moetier_decode_tokens_per_second"));
    free(text);
    mt_serve_metrics_count_generation(&m, &b, true);
    text = text_of(&m, 0, false);
    tap_ok(sample(text, "moetier_prompt_tokens_total") == 130 &&
               sample(text, "moetier_prompt_tokens_reused_total") == 50 &&
               sample(text, "moetier_prefill_tokens_total") == 80 &&
               sample(text, "moetier_generated_tokens_total") == 28 &&
               sample(text, "moetier_decoded_tokens_total") == 27 &&
               fabs(sample(text, "moetier_prefill_seconds_total") - 0.6) < 1e-6 &&
               fabs(sample(text, "moetier_decode_seconds_total") - 0.75) < 1e-6,
           "totals of two generations: prompt 130, reused 50, prefill 80, generated 28, decoded "
           "27, 0.6 s prefill, 0.75 s decode");
    tap_ok(fabs(sample(text, "moetier_prefill_tokens_per_second") - 200.0) < 1e-3 &&
               fabs(sample(text, "moetier_decode_tokens_per_second") - 16.0) < 1e-3,
           "the speeds are the last request's: prefill 200, decode 16 (%g, %g)",
           sample(text, "moetier_prefill_tokens_per_second"),
           sample(text, "moetier_decode_tokens_per_second"));
    tap_ok(sample(text, "moetier_client_disconnects_total") == 1,
           "one of the two generations lost its client: disconnects 1");
    free(text);
    /* a request that measured no speed (nothing to prefill, nothing fed back) leaves the gauges
     * at the last measured ones: never a division by zero, nor a 0 that reads as a stall */
    mt_serve_metrics_count_generation(&m, &c, false);
    text = text_of(&m, 0, false);
    tap_ok(fabs(sample(text, "moetier_prefill_tokens_per_second") - 200.0) < 1e-3 &&
               fabs(sample(text, "moetier_decode_tokens_per_second") - 16.0) < 1e-3 &&
               sample(text, "moetier_client_disconnects_total") == 1 &&
               sample(text, "moetier_prefill_tokens_total") == 80,
           "a wholly cached prompt with nothing fed back: the speeds stay 200 and 16 (%g, %g)",
           sample(text, "moetier_prefill_tokens_per_second"),
           sample(text, "moetier_decode_tokens_per_second"));
    free(text);
    mt_serve_metrics_fini(&m);
}

static void
check_text(void)
{
    struct mt_serve_metrics m;
    char *text;

    mt_serve_metrics_init(&m);
    text = text_of(&m, 3, true);
    tap_ok(sample(text, "moetier_queue_length") == 3 && sample(text, "moetier_busy") == 1 &&
               strstr(text, "# TYPE moetier_queue_length gauge\n") != NULL &&
               strstr(text, "# TYPE moetier_busy gauge\n") != NULL &&
               strstr(text, "# TYPE moetier_requests_total counter\n") != NULL,
           "gauges queued 3 and busy 1, typed as gauges; requests_total a counter");
    free(text);
    text = text_of(&m, 0, false);
    tap_ok(sample(text, "moetier_queue_length") == 0 && sample(text, "moetier_busy") == 0,
           "idle: queued 0, busy 0");
    free(text);
    mt_serve_metrics_fini(&m);

    /* texts of every length around the first 4096 bytes (the first L of every route's codes,
     * counters of 1 to 19 digits): each is whole, its lines where they belong */
    bool whole = true;
    size_t shortest = SIZE_MAX, longest = 0;
    int all = MT_SERVE_ROUTE_COUNT * MT_SERVE_METRICS_CODES;
    for (int n_lines = 1; n_lines <= all && whole; n_lines++) {
        for (int d1 = 1; d1 <= 19 && whole; d1++) {
            for (int d2 = 1; d2 <= 19 && whole; d2++) {
                unsigned long long v1 = 1, v2 = 1;
                for (int k = 1; k < d1; k++) {
                    v1 *= 10;
                }
                for (int k = 1; k < d2; k++) {
                    v2 *= 10;
                }
                mt_serve_metrics_init(&m);
                for (int i = 0; i < n_lines; i++) {
                    enum mt_serve_route r = (enum mt_serve_route)(i / MT_SERVE_METRICS_CODES);
                    mt_serve_metrics_count_request(&m, r, 200 + i % MT_SERVE_METRICS_CODES);
                }
                struct mt_gen_result g = {.n_prompt = (size_t)v1, .n_generated = (long)v2};
                mt_serve_metrics_count_generation(&m, &g, false);
                text = text_of(&m, 7, true);
                size_t len = strlen(text);
                const char *tail = "\nmoetier_busy 1\n";
                char last[96];
                enum mt_serve_route last_r =
                    (enum mt_serve_route)((n_lines - 1) / MT_SERVE_METRICS_CODES);
                snprintf(last, sizeof(last), "moetier_requests_total{path=\"%s\",code=\"%d\"}",
                         mt_serve_route_path(last_r), 200 + (n_lines - 1) % MT_SERVE_METRICS_CODES);
                shortest = len < shortest ? len : shortest;
                longest = len > longest ? len : longest;
                whole = len > strlen(tail) && strcmp(text + len - strlen(tail), tail) == 0 &&
                        sample(text, "moetier_prompt_tokens_total") == (double)v1 &&
                        sample(text, "moetier_prefill_tokens_total") == (double)v1 &&
                        sample(text, "moetier_generated_tokens_total") == (double)v2 &&
                        sample(text, "moetier_queue_length") == 7 && sample(text, last) == 1;
                if (!whole) {
                    tap_diag("%d request lines, counters of %d and %d digits: %zu bytes, "
                             "ending '%s'", n_lines, d1, d2, len,
                             tap_one_line(text + (len > 60 ? len - 60 : 0), len > 60 ? 60 : len));
                }
                free(text);
                mt_serve_metrics_fini(&m);
            }
        }
    }
    tap_ok(whole && shortest < 4096 && longest > 4096,
           "texts of %zu to %zu bytes are whole at every length", shortest, longest);
}

int
main(void)
{
    tap_plan(0);
    check_routes();
    check_requests();
    check_generations();
    check_text();
    return tap_done();
}
