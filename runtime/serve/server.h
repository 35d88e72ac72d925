/* SPDX-License-Identifier: MIT */
/*
 * server.h - moetier's OpenAI-compatible HTTP server over one engine.
 *
 * The one idea: one model, one engine, one worker thread. libmicrohttpd parses HTTP and gives
 * each connection a thread; a connection's thread validates its request (openai.h) and puts it
 * in a FIFO queue, and the worker runs the queue one request at a time through a generation
 * session (engine/session.h), which keeps the KV cache of the previous conversation, so a
 * request that extends it only runs its new tokens. A streamed reply goes from the worker to the
 * connection's thread through a byte buffer of server-sent events. A connection whose client
 * hangs up (the socket reports it closed, or a write fails) marks its request gone: a queued one
 * is skipped, a running one stops at its next token and frees the engine.
 *
 * Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models and /v1/models/{id}
 * (these need the API key when one is set: "Authorization: Bearer KEY"), GET /health, GET /metrics (Prometheus
 * text) and GET / (the chat page, built into the binary). Errors are OpenAI's error JSON:
 * 400 bad request, 401 key, 404 route or model, 405 method, 413 body too large, 429 queue full,
 * 500 engine failure, 503 shutting down. A chat reply that ends in V3.2's tool calls block comes
 * back as OpenAI's tool_calls (text/chat.h parses it); a stream holds the block back from its
 * first bytes and sends the calls in one chunk at the end.
 *
 * Threads: mt_serve_create, mt_serve_stop, mt_serve_is_idle and mt_serve_destroy are called
 * from one controlling thread (the command's main). The server blocks no signal itself: the
 * caller blocks SIGINT/SIGTERM before create, so that its threads inherit the mask.
 */
#ifndef MT_SERVE_SERVER_H
#define MT_SERVE_SERVER_H

#include "runtime/base/status.h"
#include "runtime/serve/openai.h"
#include "runtime/text/sampler.h"

#include <stdbool.h>
#include <stdint.h>

struct mt_engine;
struct mt_tokenizer;

#define MT_SERVE_MAX_ALLOW_ORIGINS 8

struct mt_serve_opts {
    const char *host;     /* address or name to bind; "127.0.0.1" by default */
    int port;             /* 0: a free port, see mt_serve_port() */
    const char *api_key;  /* NULL or "": no key needed */
    const char *model_id; /* the name clients use for the model */
    struct mt_serve_limits limits;
    struct mt_sampler_opts sampling; /* what a request does not set: temperature, top_p, top_k */
    bool quiet;                      /* no log line per generation */
    /* while half of the connection slots are open, a connection that sends no whole request
     * within this many seconds of being ready for one is closed (deadline.h); 0: never */
    unsigned request_deadline_s;
    /* a stream with nothing to send for this many seconds (a long prompt's prefill, a tool
     * call held back until it is whole) gets an SSE comment, ": keep-alive", so that proxies
     * and clients with read timeouts (nginx's proxy_read_timeout: 60 s) keep it; 0: never */
    double stream_keepalive_s;
    /* pages of other origins that may call the server from a browser (a reverse proxy's
     * https://chat.example.com; guard.h), borrowed */
    const char *allow_origins[MT_SERVE_MAX_ALLOW_ORIGINS];
    int n_allow_origins;
};

/* 127.0.0.1:8080, no key, model "moetier", default limits, temperature 1 and top_p 0.95, a
 * request deadline of 15 s, a stream's keep-alive comment after 15 s of silence. */
void mt_serve_opts_default(struct mt_serve_opts *opts);

struct mt_serve;

/*
 * Start serving: bind, listen, start the worker. engine and tok are borrowed and must outlive
 * the server; nothing else may use the engine meanwhile. MT_ERR_INVAL for a host that does not
 * resolve, MT_ERR_IO when the address cannot be bound (in use, not ours), MT_ERR_NOMEM.
 */
mt_status_t mt_serve_create(struct mt_engine *engine, struct mt_tokenizer *tok,
                            const struct mt_serve_opts *opts, struct mt_serve **serve_out);

/*
 * Resolve host and bind port there once (then close it), so that `serve` says a host that is
 * not this machine's or a port in use before it spends minutes loading a model; mt_serve_create
 * binds again (another program may take the port in between: it then says so as well).
 * mt_serve_create's messages and codes.
 */
mt_status_t mt_serve_check_address(const char *host, int port);

/* The port listened on (the one picked when opts->port was 0). */
int mt_serve_port(const struct mt_serve *serve);

/* True when the bound address is not a loopback one (others can connect). */
bool mt_serve_is_public(const struct mt_serve *serve);

/*
 * Begin the shutdown: stop accepting connections, answer queued requests 503, let the running
 * request finish (or, with abort_running, stop it at its next token). Returns at once; may be
 * called again (to abort).
 */
void mt_serve_stop(struct mt_serve *serve, bool abort_running);

/*
 * After mt_serve_stop: true once no request runs and every response has been sent. Called
 * (about every 100 ms) after an abort, it also ends, 2 s after it, the responses whose clients
 * stopped reading, which would otherwise hold the shutdown until the connections' idle timeout.
 */
bool mt_serve_is_idle(struct mt_serve *serve);

/* Stop everything and free the server (NULL is a no-op). */
void mt_serve_destroy(struct mt_serve *serve);

#endif /* MT_SERVE_SERVER_H */
