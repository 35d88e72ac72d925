/* SPDX-License-Identifier: MIT */
/*
 * metrics.h - the server's counters, served by GET /metrics in Prometheus' text format.
 *
 * The one idea: counters only grow and are kept as totals (requests by path and status, tokens,
 * seconds), so a scraper derives rates itself; the two speeds (prefill and decode tok/s) are
 * also given as gauges of the last request, and as totals of tokens over seconds. Any thread may
 * count (a mutex guards the totals); paths are bucketed into the known routes, so a client
 * cannot grow the label set.
 */
#ifndef MT_SERVE_METRICS_H
#define MT_SERVE_METRICS_H

#include "runtime/base/status.h"
#include "runtime/engine/session.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

/* The routes whose requests are counted apart; every other path is "other". */
enum mt_serve_route {
    MT_SERVE_ROUTE_CHAT,
    MT_SERVE_ROUTE_COMPLETIONS,
    MT_SERVE_ROUTE_MODELS,
    MT_SERVE_ROUTE_MODEL, /* /v1/models/{id} */
    MT_SERVE_ROUTE_HEALTH,
    MT_SERVE_ROUTE_METRICS,
    MT_SERVE_ROUTE_PAGE,
    MT_SERVE_ROUTE_OTHER,
    MT_SERVE_ROUTE_COUNT,
};

/* The path of a route ("/v1/chat/completions", ..., "other"). */
const char *mt_serve_route_path(enum mt_serve_route r);

/* The route of a request path. */
enum mt_serve_route mt_serve_route_of(const char *path);

#define MT_SERVE_METRICS_CODES 12 /* distinct status codes counted per route */

struct mt_serve_metrics {
    pthread_mutex_t lock;
    struct {
        int code;
        unsigned long long n;
    } requests[MT_SERVE_ROUTE_COUNT][MT_SERVE_METRICS_CODES];
    unsigned long long prompt_tokens;   /* prompt ids of generations */
    unsigned long long reused_tokens;   /* of them, found in the KV cache */
    unsigned long long prefill_tokens;  /* of them, run through the model */
    unsigned long long decoded_tokens;  /* ids fed back while generating */
    unsigned long long generated_tokens;
    double prefill_s;
    double decode_s;
    double last_prefill_tok_s;
    double last_decode_tok_s;
    unsigned long long disconnects;     /* generations stopped because the client left */
};

void mt_serve_metrics_init(struct mt_serve_metrics *m);
void mt_serve_metrics_fini(struct mt_serve_metrics *m);

/* One response sent with this status code. */
void mt_serve_metrics_count_request(struct mt_serve_metrics *m, enum mt_serve_route route,
                                    int code);

/* One generation done (whatever its end); client_gone when its client disconnected. */
void mt_serve_metrics_count_generation(struct mt_serve_metrics *m, const struct mt_gen_result *r,
                                       bool client_gone);

/*
 * The exposition text (malloc'ed, NUL-ended in *text_out), with the gauges queued (requests
 * waiting) and busy (a generation running). MT_ERR_NOMEM.
 */
mt_status_t mt_serve_metrics_text(struct mt_serve_metrics *m, int queued, bool busy,
                                  char **text_out);

#endif /* MT_SERVE_METRICS_H */
