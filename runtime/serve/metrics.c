/* SPDX-License-Identifier: MIT */
/*
 * metrics.c - counters and their Prometheus text (metrics.h).
 */
#include <config.h>

#include "runtime/serve/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const route_paths[MT_SERVE_ROUTE_COUNT] = {
    [MT_SERVE_ROUTE_CHAT] = "/v1/chat/completions",
    [MT_SERVE_ROUTE_COMPLETIONS] = "/v1/completions",
    [MT_SERVE_ROUTE_MODELS] = "/v1/models",
    [MT_SERVE_ROUTE_MODEL] = "/v1/models/{id}",
    [MT_SERVE_ROUTE_HEALTH] = "/health",
    [MT_SERVE_ROUTE_METRICS] = "/metrics",
    [MT_SERVE_ROUTE_PAGE] = "/",
    [MT_SERVE_ROUTE_OTHER] = "other",
};

const char *
mt_serve_route_path(enum mt_serve_route r)
{
    return r < MT_SERVE_ROUTE_COUNT ? route_paths[r] : "other";
}

enum mt_serve_route
mt_serve_route_of(const char *path)
{
    static const char model[] = "/v1/models/";

    if (strncmp(path, model, sizeof(model) - 1) == 0 && path[sizeof(model) - 1] != '\0') {
        return MT_SERVE_ROUTE_MODEL; /* the id may hold '/' ("org/name", --model-name) */
    }
    for (int r = 0; r < MT_SERVE_ROUTE_OTHER; r++) {
        if (strcmp(path, route_paths[r]) == 0) {
            return (enum mt_serve_route)r;
        }
    }
    return MT_SERVE_ROUTE_OTHER;
}

void
mt_serve_metrics_init(struct mt_serve_metrics *m)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
}

void
mt_serve_metrics_fini(struct mt_serve_metrics *m)
{
    pthread_mutex_destroy(&m->lock);
}

void
mt_serve_metrics_count_request(struct mt_serve_metrics *m, enum mt_serve_route route, int code)
{
    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < MT_SERVE_METRICS_CODES; i++) {
        if (m->requests[route][i].code == code || m->requests[route][i].code == 0) {
            m->requests[route][i].code = code;
            m->requests[route][i].n++;
            break;
        }
    }
    pthread_mutex_unlock(&m->lock);
}

void
mt_serve_metrics_count_generation(struct mt_serve_metrics *m, const struct mt_gen_result *r,
                                  bool client_gone)
{
    size_t fed = r->n_prompt - r->n_reused;

    pthread_mutex_lock(&m->lock);
    m->prompt_tokens += r->n_prompt;
    m->reused_tokens += r->n_reused;
    m->prefill_tokens += fed;
    m->decoded_tokens += (unsigned long long)r->n_decoded;
    m->generated_tokens += (unsigned long long)r->n_generated;
    m->prefill_s += r->prefill_s;
    m->decode_s += r->decode_s;
    if (r->prefill_s > 0) {
        m->last_prefill_tok_s = (double)fed / r->prefill_s;
    }
    if (r->decode_s > 0 && r->n_decoded > 0) {
        m->last_decode_tok_s = (double)r->n_decoded / r->decode_s;
    }
    if (client_gone) {
        m->disconnects++;
    }
    pthread_mutex_unlock(&m->lock);
}

/* A growing text buffer; a failed append leaves ok false. */
struct text {
    char *s;
    size_t n;
    size_t cap;
    bool ok;
};

static void
put_(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int k;

    if (!t->ok) {
        return;
    }
    for (;;) {
        va_start(ap, fmt);
        k = vsnprintf(t->s + t->n, t->cap - t->n, fmt, ap);
        va_end(ap);
        if (k < 0) {
            t->ok = false;
            return;
        }
        if ((size_t)k < t->cap - t->n) {
            t->n += (size_t)k;
            return;
        }
        size_t cap = 2 * t->cap + (size_t)k;
        char *s = realloc(t->s, cap);
        if (s == NULL) {
            t->ok = false;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
}

static void
metric_(struct text *t, const char *name, const char *type, const char *help)
{
    put_(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

mt_status_t
mt_serve_metrics_text(struct mt_serve_metrics *m, int queued, bool busy, char **text_out)
{
    struct text t = {.s = malloc(4096), .cap = 4096, .ok = true};

    if (t.s == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the metrics text");
    }
    t.s[0] = '\0';
    pthread_mutex_lock(&m->lock);
    metric_(&t, "moetier_requests_total", "counter", "HTTP requests answered, by path and status");
    for (int r = 0; r < MT_SERVE_ROUTE_COUNT; r++) {
        for (int i = 0; i < MT_SERVE_METRICS_CODES && m->requests[r][i].code != 0; i++) {
            put_(&t, "moetier_requests_total{path=\"%s\",code=\"%d\"} %llu\n", route_paths[r],
                 m->requests[r][i].code, m->requests[r][i].n);
        }
    }
    metric_(&t, "moetier_prompt_tokens_total", "counter", "prompt tokens of all generations");
    put_(&t, "moetier_prompt_tokens_total %llu\n", m->prompt_tokens);
    metric_(&t, "moetier_prompt_tokens_reused_total", "counter",
            "prompt tokens found in the KV cache (not run again)");
    put_(&t, "moetier_prompt_tokens_reused_total %llu\n", m->reused_tokens);
    metric_(&t, "moetier_prefill_tokens_total", "counter", "prompt tokens run through the model");
    put_(&t, "moetier_prefill_tokens_total %llu\n", m->prefill_tokens);
    metric_(&t, "moetier_generated_tokens_total", "counter", "tokens generated");
    put_(&t, "moetier_generated_tokens_total %llu\n", m->generated_tokens);
    metric_(&t, "moetier_decoded_tokens_total", "counter", "generated tokens fed back");
    put_(&t, "moetier_decoded_tokens_total %llu\n", m->decoded_tokens);
    metric_(&t, "moetier_prefill_seconds_total", "counter", "seconds spent in prefill");
    put_(&t, "moetier_prefill_seconds_total %.6f\n", m->prefill_s);
    metric_(&t, "moetier_decode_seconds_total", "counter", "seconds spent decoding");
    put_(&t, "moetier_decode_seconds_total %.6f\n", m->decode_s);
    metric_(&t, "moetier_prefill_tokens_per_second", "gauge", "prefill speed of the last request");
    put_(&t, "moetier_prefill_tokens_per_second %.3f\n", m->last_prefill_tok_s);
    metric_(&t, "moetier_decode_tokens_per_second", "gauge", "decode speed of the last request");
    put_(&t, "moetier_decode_tokens_per_second %.3f\n", m->last_decode_tok_s);
    metric_(&t, "moetier_client_disconnects_total", "counter",
            "generations stopped because the client went away");
    put_(&t, "moetier_client_disconnects_total %llu\n", m->disconnects);
    pthread_mutex_unlock(&m->lock);
    metric_(&t, "moetier_queue_length", "gauge", "requests waiting for the engine");
    put_(&t, "moetier_queue_length %d\n", queued);
    metric_(&t, "moetier_busy", "gauge", "1 while a generation runs (one at a time)");
    put_(&t, "moetier_busy %d\n", busy ? 1 : 0);
    if (!t.ok) {
        free(t.s);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the metrics text");
    }
    *text_out = t.s;
    return MT_OK;
}
