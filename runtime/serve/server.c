/* SPDX-License-Identifier: MIT */
/*
 * server.c - the HTTP side of moetier serve (server.h): routes, the request queue, the worker
 * that generates, and the hand-over of streamed events to the connections.
 *
 * Locking: one mutex (serve->lock) guards the queue, every job's state and output buffer, and
 * the counters of live jobs; each job has a condition variable its connection waits on, the
 * worker waits on serve->work. The worker never holds the lock while the engine runs.
 *
 * Hang-ups: a client whose connection is reset or closed has gone, and its request is dropped or
 * its generation stopped. A FIN alone is not that: a client may half-close (shutdown(SHUT_WR))
 * after its request and still read its reply; job_client_gone_locked tells the two apart.
 */
#include <config.h>

#include "runtime/serve/server.h"
#include "runtime/serve/metrics.h"
#include "runtime/serve/openai.h"
#include "runtime/serve/deadline.h"
#include "runtime/serve/guard.h"
#include "runtime/base/clock.h"
#include "runtime/base/status.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/session.h"
#include "runtime/text/chat.h"
#include "runtime/text/json_constraint.h"
#include "runtime/text/tokenizer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The chat page (runtime/serve/chat_page.html, made into a C array at build time). */
extern const char mt_serve_chat_page[];
extern const size_t mt_serve_chat_page_len;

enum job_state {
    JOB_QUEUED,  /* waiting for the worker */
    JOB_RUNNING, /* prompt accepted, generating: a stream's 200 may go out */
    JOB_DONE,    /* finished, failed or refused; err.http != 0 when refused before running */
};

/* A growing byte buffer. */
struct bytes {
    char *p;
    size_t n;
    size_t cap;
};

static bool
bytes_put(struct bytes *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) {
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            return false;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n > 0) { /* s may be NULL when n is 0 (a decoder that has nothing yet) */
        memcpy(b->p + b->n, s, n);
    }
    b->n += n;
    b->p[b->n] = '\0';
    return true;
}

/* s[0..n) before what b holds. */
static bool
bytes_prepend(struct bytes *b, const char *s, size_t n)
{
    size_t had = b->n;

    if (!bytes_put(b, s, n)) {
        return false;
    }
    memmove(b->p + n, b->p, had);
    memcpy(b->p, s, n);
    return true;
}

/* A finished choice's answer, kept for the response while the next one runs (n > 1). */
struct kept_choice {
    struct bytes content;
    size_t content_end;          /* the text before its tool calls (all of it without) */
    struct bytes reasoning;
    struct mt_chat_parsed_calls calls;
    bool has_calls;
    struct mt_logprob *lps;
    size_t n_lps;
    int32_t *ids;
    size_t n_ids;
    const char *finish;
    long n_generated;
};

/* One request, shared by its connection's thread and the worker (refs: 2 until one lets go). */
struct job {
    struct mt_serve *serve;
    int refs;
    struct mt_serve_request req; /* owned */
    char id[40];                 /* "chatcmpl-17": 17 is its place in the queue order */
    unsigned long long seq;
    long long created;
    enum job_state state;
    bool gone;                   /* the client hung up, or (cut) its stream could not go on */
    bool cut;                    /* a stream event lost for want of memory (job_send) */
    int fd;                      /* the connection's socket, to notice a hang-up */
    bool http11;                 /* the request is HTTP/1.1: it may be sent a 1xx (peer_probe) */
    double probed_at;            /* mt_clock_now() of the last peer_probe, 0 for none */
    pthread_cond_t cond;         /* state changed or output grew */
    struct mt_serve_error err;   /* refused or failed: the status and message */
    struct bytes out;            /* stream: events not yet taken by the connection */
    size_t out_off;              /* ... of which out.p[0..out_off) are taken */
    double sse_sent_at;          /* stream: mt_clock_now() when its last bytes were taken */
    char *result;                /* not streamed: the response body (owned) */
    /* worker-only while generating */
    struct mt_detok detok;
    bool in_reasoning;
    struct bytes content;        /* the answer so far */
    size_t content_sent;         /* content.p[0..content_sent) has been streamed */
    struct bytes reasoning;
    bool stopped_by_string;
    bool tool_block;             /* the answer reached mt_chat_tool_calls_start: held back */
    char *forced;                /* tool_choice forces a call: its start (owned), or NULL */
    int32_t *forced_ids;         /* ... as ids (owned) */
    size_t n_forced;
    bool forced_after_think;     /* ... they follow the reasoning (thinking mode) */
    bool forced_fed;             /* ... they were fed: the answer begins with them */
    bool stop_at_think;          /* the forced call follows the reasoning: stop at </think> */
    bool think_ended;            /* ... and it came */
    struct mt_chat_parsed_calls calls; /* the tool calls that ended the answer */
    /* logprobs: each answer token's, and where its text ends in content (a stream sends it
     * with the chunk that holds that text) */
    struct mt_logprob *lps;
    size_t *lp_end;
    size_t n_lps;
    size_t cap_lps;
    size_t lp_sent;              /* lps[0..lp_sent) went out in chunks */
    size_t lp_sent_bytes;        /* ... their tokens' bytes: a completion's text_offset */
    const int32_t *prompt;       /* the prompt's ids (job_run's) */
    size_t n_prompt;
    int32_t *ids;                /* generated ids (return_token_ids) */
    long n_sampled;              /* ids generated so far */
    size_t n_ids;
    size_t cap_ids;
    bool failed;                 /* a fault while generating (job_nomem): the choice fails */
    bool aborted;                /* the server's abort (a second Ctrl-C, mt_serve_stop with
                                  * abort_running) cut the reply: a 503, never a "stop" */
    int choice;                  /* the choice being generated (of n_choices) */
    int n_choices;               /* req.n for each prompt */
    struct kept_choice *kept;    /* owned, [n_choices]: the finished choices */
    struct job *next;            /* queue link */
};

struct mt_serve {
    struct mt_serve_opts opts;
    char *model_id;              /* owned copy */
    char *api_key;               /* owned copy or NULL */
    struct mt_engine *engine;    /* borrowed */
    struct mt_tokenizer *tok;    /* borrowed */
    struct mt_session *session;  /* owned; used by the worker only */
    struct mt_json_constraint *json; /* owned: response_format json_object (worker only) */
    struct mt_gen_constraint json_rule; /* ... as the session's hook */
    int32_t stop_ids[1];
    int n_stop_ids;
    int32_t think_end;           /* "</think>", or -1 */
    long think_after;            /* tests: the nth reasoning id counts as </think> (0: never) */
    int32_t bos;
    struct MHD_Daemon *mhd;      /* owned */
    struct mt_serve_deadline *deadline; /* owned; NULL: no request deadline */
    int port;
    bool public_addr;
    pthread_t worker;
    bool have_worker;
    pthread_mutex_t lock;
    pthread_cond_t work;         /* the queue grew, or stopping */
    struct job *head;            /* the queue, oldest first */
    struct job *tail;
    int n_queued;
    int n_jobs;                  /* jobs not yet freed */
    int n_replying;              /* generation requests whose response MHD has not finished */
    bool busy;                   /* the worker runs a job */
    bool stopping;
    bool abort_running;
    double aborted_at;           /* mt_clock_now() of the abort, 0 before */
    struct conn *replying;       /* the connections counted in n_replying */
    unsigned long long next_seq;
    long long started;
    struct mt_serve_metrics metrics;
};

/* Per connection: the request body as it arrives. */
struct conn {
    enum mt_serve_route route;
    bool http11;                 /* HTTP/1.1, not 1.0 */
    struct bytes body;
    bool too_big;
    bool no_memory; /* the body could not be kept: the rest is dropped, the answer a 500 */
    bool replying; /* counted in n_replying until request_completed: a reply (the job already
                    * freed) may still be on its way out when the server is asked to stop */
    /* while replying: in serve->replying (for an abort to end a reply nobody reads) */
    int fd;
    bool shut;                   /* ... and shut down by it */
    struct conn *prev;
    struct conn *next;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static long long
unix_now(void)
{
    return (long long)time(NULL);
}

static void
deadline_in(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_nsec += (ms % 1000) * 1000000L;
    ts->tv_sec += ms / 1000 + ts->tv_nsec / 1000000000L;
    ts->tv_nsec %= 1000000000L;
}

/* What a connection's thread can tell of its client without reading from the socket. */
enum peer_state {
    PEER_HERE,
    PEER_SENT_FIN, /* half-closed (shutdown(SHUT_WR), still reading) or closed: the same on the
                    * wire until something is sent to it (peer_probe) */
    PEER_GONE,     /* reset, or shut in both directions */
};

static enum peer_state
peer_state(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};

    if (fd < 0 || poll(&p, 1, 0) <= 0) {
        return PEER_HERE;
    }
    if ((p.revents & (POLLHUP | POLLERR)) != 0) {
        return PEER_GONE;
    }
    return (p.revents & POLLRDHUP) != 0 ? PEER_SENT_FIN : PEER_HERE;
}

/*
 * Tell a half-closed client from a closed one, before any response went out: send an interim
 * "100 Continue", which an HTTP/1.1 client must accept before the final response even when it
 * did not ask for one (RFC 9110, section 15.2). A half-closed client reads it and waits on; a
 * closed socket answers it with a reset, which peer_state() then sees as PEER_GONE. False when
 * it cannot be sent (a reset came already): the client is gone.
 */
static bool
peer_probe(int fd)
{
    static const char probe[] = "HTTP/1.1 100 Continue\r\n\r\n";

    /* Written past MHD, which is safe here: the connection is plain TCP, and while our handler
     * runs MHD writes nothing to it. The send does not wait; a probe that does not go out whole
     * (a send buffer full of an earlier reply the client has not read) counts as gone. */
    return send(fd, probe, sizeof(probe) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) ==
           (ssize_t)sizeof(probe) - 1;
}

/* The generating routes take POST (and a body); the others GET or HEAD. */
static bool
route_takes_post(enum mt_serve_route route)
{
    return route == MT_SERVE_ROUTE_CHAT || route == MT_SERVE_ROUTE_COMPLETIONS;
}

static int
conn_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci != NULL ? ci->connect_fd : -1;
}

/*
 * Keep-alive after a GET. An idle connection holds a connection thread and one of the --queue + 64
 * slots that the server accepts, so a crowd of clients polling /health could leave none for a
 * generation request. After a GET a connection may idle GET_IDLE_S seconds (a request on it gets
 * the whole SERVE_IDLE_S again), and while half of the slots are taken the response closes it at
 * once. GET_IDLE_S is longer than the 5 s after which common HTTP clients (httpx under the
 * OpenAI SDK) drop an idle pooled connection themselves, so a request they send on one does not
 * meet the server closing it; the Keep-Alive header tells clients that read it (Node's undici).
 * The connection count is read without MHD's lock: a moment old at worst, which errs toward
 * closing.
 */
#define SERVE_IDLE_S 120u
#define GET_IDLE_S 10u
#define GET_KEEP_ALIVE "timeout=10" /* GET_IDLE_S, as the Keep-Alive header says it */

static void
get_keep_alive(struct mt_serve *s, struct MHD_Connection *c, struct MHD_Response *r)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_DAEMON);
    const union MHD_DaemonInfo *di =
        ci != NULL ? MHD_get_daemon_info(ci->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS) : NULL;

    if (di == NULL || 2 * (size_t)di->num_connections >= (size_t)s->opts.limits.max_queue + 64) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    } else {
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, GET_IDLE_S);
        MHD_add_response_header(r, "Keep-Alive", GET_KEEP_ALIVE);
    }
}

/*
 * The answer when the server has no memory to build one: a constant body, so that it needs no
 * allocation of ours. Only where MHD cannot allocate its response record either is the
 * connection dropped. Connection: close, as an early answer may come before the request's body.
 */
static const char nomem_body[] = "{\"error\":{\"message\":\"the server ran out of memory for this "
                                 "request\",\"type\":\"server_error\",\"param\":null,"
                                 "\"code\":\"out_of_memory\"}}";

static enum MHD_Result
respond_nomem(struct mt_serve *s, struct MHD_Connection *c, enum mt_serve_route route)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        sizeof(nomem_body) - 1, (void *)nomem_body, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret;

    if (r == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    ret = MHD_queue_response(c, 500, r);
    MHD_destroy_response(r);
    mt_serve_metrics_count_request(&s->metrics, route, 500);
    return ret;
}

/*
 * Send body (malloc'ed, taken) with status and content type; counts the request. early: sent
 * from the request's headers, before its end, after which MHD closes the connection (so no
 * Keep-Alive is offered).
 */
static enum MHD_Result
respond_at(struct mt_serve *s, struct MHD_Connection *c, enum mt_serve_route route, int status,
           const char *type, char *body, bool early)
{
    struct MHD_Response *r;
    enum MHD_Result ret;

    if (body == NULL) {
        return respond_nomem(s, c, route);
    }
    r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == 405) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW,
                                route_takes_post(route) ? "POST" : "GET, HEAD");
    }
    if (status == 401) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    }
    if (early) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    } else if (!route_takes_post(route)) {
        get_keep_alive(s, c, r);
    }
    ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    mt_serve_metrics_count_request(&s->metrics, route, status);
    return ret;
}

static enum MHD_Result
respond(struct mt_serve *s, struct MHD_Connection *c, enum mt_serve_route route, int status,
        const char *type, char *body)
{
    return respond_at(s, c, route, status, type, body, false);
}

static enum MHD_Result
respond_error(struct mt_serve *s, struct MHD_Connection *c, enum mt_serve_route route,
              const struct mt_serve_error *e)
{
    return respond(s, c, route, e->http, "application/json", mt_serve_error_json(e));
}

/* An error answered from the request's headers (respond_at's early). */
static enum MHD_Result
respond_early_error(struct mt_serve *s, struct MHD_Connection *c, enum mt_serve_route route,
                    const struct mt_serve_error *e)
{
    return respond_at(s, c, route, e->http, "application/json", mt_serve_error_json(e), true);
}

/* The request deadline's record of connection c (deadline.h), NULL where there is none. */
static struct mt_serve_deadline_conn *
conn_deadline(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

/* MHD_OPTION_NOTIFY_CONNECTION: the request deadline learns of each connection's start and
 * end; MHD calls the end before it closes the socket. */
static void
notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                  enum MHD_ConnectionNotificationCode code)
{
    struct mt_serve *s = cls;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        *socket_context = mt_serve_deadline_open(s->deadline, conn_fd(c));
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        mt_serve_deadline_close(s->deadline, *socket_context);
        *socket_context = NULL;
    }
}

static bool addr_is_loopback(const struct sockaddr *sa);

/* Whether connection c came in on a loopback address: always where the server listens on one;
 * on 0.0.0.0 or :: it takes loopback connections too, which a rebound page's are. */
static bool
conn_is_loopback(const struct mt_serve *s, struct MHD_Connection *c)
{
    struct sockaddr_storage local;
    socklen_t len = sizeof(local);
    int fd = conn_fd(c);

    if (!s->public_addr) {
        return true;
    }
    return fd >= 0 && getsockname(fd, (struct sockaddr *)&local, &len) == 0 &&
           addr_is_loopback((const struct sockaddr *)&local);
}

/* Host and Origin against this server (guard.c): true, with e set, where they fail. */
static bool
origin_refused(const struct mt_serve *s, struct MHD_Connection *c, struct mt_serve_error *e)
{
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ORIGIN);

    switch (mt_serve_guard_check(host, origin, conn_is_loopback(s, c), s->opts.allow_origins,
                                 s->opts.n_allow_origins)) {
    case MT_SERVE_GUARD_BAD_HOST:
        mt_serve_error_set(e, 403, "invalid_request_error", "host_not_allowed", NULL,
                           "Host '%.100s' is not a name of this machine's loopback address, "
                           "where this request came in (a page whose name was pointed at "
                           "127.0.0.1?); use http://127.0.0.1:%d/ or http://localhost:%d/ (a "
                           "reverse proxy's name: serve --allow-origin)",
                           host, s->port, s->port);
        return true;
    case MT_SERVE_GUARD_CROSS_ORIGIN:
        mt_serve_error_set(e, 403, "invalid_request_error", "cross_origin", NULL,
                           "requests from the page '%.100s' are refused: only this server's "
                           "own page (Origin = http://%.100s) may call it from a browser (a "
                           "reverse proxy's page: serve --allow-origin)",
                           origin, host != NULL ? host : "HOST");
        return true;
    default:
        return false;
    }
}

/*
 * libmicrohttpd's messages, written as its own logger writes them (control bytes escaped),
 * except two. The request deadline counts its cuts in a warning of its own, so MHD's line for a
 * request cut off while it is read is not repeated for each while one is pending. And the one
 * that follows a connection we drop on purpose because its client hung up while the request
 * waited or ran (serve_generate's MHD_NO): MHD reports that as "Application reported internal
 * error" from the same connection's thread (a stream's end, sse_read, as "application error
 * generating response"), and the line on every client that gave up read as a fault. The
 * flag is the thread's own (one thread a connection), so no other connection's message is
 * lost.
 */
static __thread bool dropping_gone_client;

/*
 * While mt_serve_create starts MHD, its messages go here instead of the log (the thread's own,
 * as MHD reports a failed start from the caller's thread): a port in use then reads as one
 * message of ours, not also MHD's "Failed to bind to port 0" (the port it was not given, as the
 * address carries it).
 */
static __thread char *mhd_start_msg;
#define MHD_START_MSG_MAX 200

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct mt_serve *s = cls;
    char line[1024];

    vsnprintf(line, sizeof(line), fmt, ap); /* MHD passes its text as an argument of "%s" */
    if (mhd_start_msg != NULL) {
        size_t n = strcspn(line, "\r\n");
        snprintf(mhd_start_msg, MHD_START_MSG_MAX, "%.*s", (int)n, line); /* keeps the last */
        return;
    }
    if (dropping_gone_client &&
        (strstr(line, "Application reported internal error") != NULL ||
         strstr(line, "application error generating response") != NULL)) { /* (a stream's) */
        dropping_gone_client = false;
        return;
    }
    /* a connection the request deadline shut down: its warning counts them all (MHD 0.9.75's
     * words for a request cut off while it is read) */
    if ((strstr(line, "closed by remote side with incomplete request") != NULL ||
         strstr(line, "disconnected when reading request") != NULL ||
         strstr(line, "closed when reading request") != NULL) &&
        mt_serve_deadline_cut_pending(s->deadline)) {
        return;
    }
    mt_log_text(line);
}

/* ---- jobs --------------------------------------------------------------------------------- */

static void
job_free(struct job *j)
{
    for (int i = 0; j->kept != NULL && i < j->n_choices; i++) { /* (before req is cleared) */
        free(j->kept[i].content.p);
        free(j->kept[i].reasoning.p);
        mt_chat_parsed_calls_fini(&j->kept[i].calls);
        free(j->kept[i].lps);
        free(j->kept[i].ids);
    }
    free(j->kept);
    mt_serve_request_fini(&j->req);
    pthread_cond_destroy(&j->cond);
    free(j->out.p);
    free(j->result);
    free(j->content.p);
    free(j->reasoning.p);
    free(j->ids);
    free(j->forced);
    free(j->forced_ids);
    free(j->lps);
    free(j->lp_end);
    mt_chat_parsed_calls_fini(&j->calls);
    free(j);
}

/* Drop one reference; called with s->lock held. */
static void
job_release_locked(struct job *j)
{
    struct mt_serve *s = j->serve;

    if (--j->refs == 0) {
        job_free(j);
        s->n_jobs--;
    }
}

/* Mark j done (with err when err->http != 0) and wake its connection; s->lock held. */
static void
job_finish_locked(struct job *j)
{
    j->state = JOB_DONE;
    pthread_cond_broadcast(&j->cond);
}

/* Take j, still queued, out of the queue (its client left before the worker reached it), so
 * that it no longer holds a place that live clients are refused for; the worker's reference is
 * dropped with it. s->lock held. */
static void
job_unqueue_locked(struct mt_serve *s, struct job *j)
{
    struct job *prev = NULL;
    struct job *q = s->head;

    while (q != NULL && q != j) {
        prev = q;
        q = q->next;
    }
    if (q == NULL) {
        return; /* the worker has it */
    }
    if (prev != NULL) {
        prev->next = j->next;
    } else {
        s->head = j->next;
    }
    if (s->tail == j) {
        s->tail = prev;
    }
    s->n_queued--;
    job_finish_locked(j);
    job_release_locked(j);
}

/*
 * Queue an event (malloc'ed text, taken; NULL when it could not be built) for a streamed job's
 * connection. Without memory for an event the stream cannot stay whole: it is cut (the client
 * sees a broken transfer, never a stream that silently misses a piece) and the job fails.
 */
static void
job_send(struct job *j, char *event)
{
    struct mt_serve *s = j->serve;
    bool lost = false;

    pthread_mutex_lock(&s->lock);
    if (!j->gone) {
        /* compact what the connection has taken, so a long stream does not grow the buffer */
        if (j->out_off > 0 && j->out_off == j->out.n) {
            j->out.n = 0;
            j->out_off = 0;
        }
        lost = event == NULL || !bytes_put(&j->out, event, strlen(event));
        if (lost) {
            j->gone = true; /* sse_read ends the transfer with an error */
            j->cut = true;  /* or, before its 200 went out, the request is answered a 500 */
        }
        pthread_cond_broadcast(&j->cond);
    }
    pthread_mutex_unlock(&s->lock);
    if (lost && !j->failed) {
        j->failed = true;
        mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the stream's next event");
        /* also after the choice's log line (its last events): the log says the stream was cut */
        mt_log_warn("serve: %s: stream cut: no memory for its next event", j->id);
    }
    free(event);
}

static struct mt_serve_origin
job_origin(const struct job *j)
{
    struct mt_serve_origin o = {.id = j->id, .created = j->created, .model = j->serve->model_id,
                                .index = j->choice};
    return o;
}

/* Bytes of token id's text (0 for an id of no token). */
static size_t
token_len(const struct mt_tokenizer *tok, int32_t id)
{
    size_t n = 0;
    return mt_tokenizer_token_bytes(tok, id, &n) != NULL ? n : 0;
}

/*
 * logprobs: the answer tokens' not yet streamed whose text ends by content offset upto
 * (SIZE_MAX: all), into *lp and marked sent. NULL when the request did not ask for them.
 */
static const struct mt_serve_logprobs *
job_take_logprobs(struct job *j, size_t upto, struct mt_serve_logprobs *lp)
{
    size_t to = j->lp_sent;

    if (j->req.logprobs < 0) {
        return NULL;
    }
    while (to < j->n_lps && j->lp_end[to] <= upto) {
        to++;
    }
    *lp = (struct mt_serve_logprobs){j->serve->tok, j->lps != NULL ? j->lps + j->lp_sent : NULL,
                                     to - j->lp_sent, j->lp_sent_bytes};
    for (; j->lp_sent < to; j->lp_sent++) {
        j->lp_sent_bytes += token_len(j->serve->tok, j->lps[j->lp_sent].id);
    }
    return lp;
}

/*
 * Stream text of the answer or the reasoning, when the request streams. Answer text lies in
 * j->content; its chunk carries the log-probabilities of the tokens it completes.
 */
static void
job_emit(struct job *j, const char *text, size_t len, bool reasoning)
{
    if (j->req.stream && len > 0) {
        struct mt_serve_origin o = job_origin(j);
        struct mt_serve_logprobs lp;
        const struct mt_serve_logprobs *lpp =
            reasoning ? NULL : job_take_logprobs(j, (size_t)(text - j->content.p) + len, &lp);
        job_send(j, mt_serve_chunk_event(&j->req, &o, text, len, reasoning, false, lpp, NULL));
    }
}

/* A failed allocation while generating: the message for the 500 (mt_last_error), and false
 * to stop the generation. */
static bool
job_nomem(struct job *j, const char *what)
{
    j->failed = true;
    mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %s", what);
    return false;
}

/* Room for one more log-probability entry. False, and the job failed, when out of memory. */
static bool
job_room_for_logprob(struct job *j)
{
    if (j->n_lps == j->cap_lps) {
        size_t cap = j->cap_lps ? 2 * j->cap_lps : 64;
        struct mt_logprob *v = realloc(j->lps, cap * sizeof(*v));
        if (v != NULL) {
            j->lps = v;
        }
        size_t *e = v != NULL ? realloc(j->lp_end, cap * sizeof(*e)) : NULL;
        if (e == NULL) {
            return job_nomem(j, "the log-probabilities");
        }
        j->lp_end = e;
        j->cap_lps = cap;
    }
    return true;
}

/*
 * logprobs: the log-probability of token id (and the most likely ones at its place) from the
 * logits it was picked from (NULL: none, the prompt's first); its text ends at content offset
 * end. False, and the job failed, when out of memory.
 */
static bool
job_add_logprob(struct job *j, const float *logits, int32_t id, size_t end)
{
    struct mt_serve *s = j->serve;

    if (!job_room_for_logprob(j)) {
        return false;
    }
    if (logits == NULL) { /* the prompt's first token: nothing came before it */
        j->lps[j->n_lps] = (struct mt_logprob){.id = id, .logprob = NAN};
    } else if (mt_logprob_step(logits, mt_engine_vocab(s->engine), id, j->req.logprobs,
                               &j->lps[j->n_lps]) != MT_OK) {
        j->failed = true; /* every logit NaN or -inf: the sampler refused them first */
        return false;
    }
    j->lp_end[j->n_lps++] = end;
    return true;
}

/*
 * New answer text: add it, look for stop strings, and stream what can no longer be part of one.
 * Where the model may call tools, text from the start of a calls block on (or what may grow into
 * one) is held back too: the block goes out as tool_calls at the end (job_run), or, if it does
 * not parse, as text. Returns false when a stop string ended the answer (cut before it).
 */
static bool
job_add_content(struct job *j, const char *text, size_t len)
{
    size_t emit_to, end;
    bool stopped;

    if (!bytes_put(&j->content, text, len)) {
        return job_nomem(j, "the answer");
    }
    stopped = mt_serve_answer_advance(&j->req, j->content.p, j->content.n, j->content_sent,
                                      &j->tool_block, &emit_to, &end);
    job_emit(j, j->content.p + j->content_sent, emit_to - j->content_sent, false);
    j->content_sent = emit_to;
    if (stopped) {
        /* the answer ends before the stop string (a held calls block stays, for job_run) */
        j->content.n = end;
        j->content.p[j->content.n] = '\0';
        j->stopped_by_string = true;
        return false;
    }
    return true;
}

/* One more id of the reply (return_token_ids). */
static bool
ids_put(struct job *j, int32_t id)
{
    if (j->n_ids == j->cap_ids) {
        size_t cap = j->cap_ids ? 2 * j->cap_ids : 64;
        int32_t *p = realloc(j->ids, cap * sizeof(*p));
        if (p == NULL) {
            return false;
        }
        j->ids = p;
        j->cap_ids = cap;
    }
    j->ids[j->n_ids++] = id;
    return true;
}

/* response_format json_object: the session's grammar hook (mt_gen_constraint). */
static size_t
json_mask(void *ctx, float *logits)
{
    return mt_json_constraint_mask(ctx, logits);
}

static void
json_accept(void *ctx, int32_t id)
{
    mt_json_constraint_accept(ctx, id);
}

/*
 * Whether the running job may go on: false once its client has gone, or once the server aborts
 * (then j->aborted: the reply was cut, which must not read as a finished one).
 */
static bool
job_go_on(struct job *j)
{
    struct mt_serve *s = j->serve;

    pthread_mutex_lock(&s->lock);
    bool gone = j->gone;
    j->aborted = j->aborted || (!gone && s->abort_running);
    pthread_mutex_unlock(&s->lock);
    return !gone && !j->aborted;
}

/* mt_session_cancel_fn: between pieces of a long prompt, whether to stop (a client that left
 * while its prompt ran frees the engine then, not only once the whole prompt has run). */
static bool
job_cancelled(void *ctx)
{
    return !job_go_on(ctx);
}

/* mt_session_token_fn: one generated id of the running job. */
static bool
on_token(void *ctx, int32_t id)
{
    struct job *j = ctx;
    struct mt_serve *s = j->serve;
    const char *text = NULL;
    size_t len = 0;
    size_t tl;
    bool go_on = true;

    if (j->req.return_token_ids && !ids_put(j, id)) {
        return job_nomem(j, "the reply's ids");
    }
    j->n_sampled++;
    if (j->in_reasoning && (id == s->think_end || j->n_sampled == s->think_after)) {
        if (mt_detok_flush(&j->detok, &text, &len) != MT_OK) {
            return job_nomem(j, "the reasoning's text");
        }
        if (len > 0) {
            if (!bytes_put(&j->reasoning, text, len)) {
                return job_nomem(j, "the reasoning");
            }
            job_emit(j, text, len, true);
        }
        j->in_reasoning = false;
        if (j->req.json_object) {
            mt_json_constraint_begin(s->json); /* the answer is held to JSON from here */
        }
        if (j->stop_at_think) {
            /* job_run feeds </think> and the forced call's start, then generates on */
            if (j->req.return_token_ids) {
                j->ids[j->n_ids - 1] = s->think_end;
            }
            j->think_ended = true;
            go_on = false;
        }
    } else {
        /* ids that are no token (padding rows of the embedding) add no text; nor, yet, one that
         * ends inside a character */
        bool is_token = mt_tokenizer_token_bytes(s->tok, id, &tl) != NULL;
        if (is_token && mt_detok_push(&j->detok, id, &text, &len) != MT_OK) {
            return job_nomem(j, "the reply's text");
        }
        bool has_text = is_token && len > 0;
        /* the session keeps every step's logits (want_logits), so they are there */
        const float *logits = mt_session_logits(s->session);
        size_t end = j->content.n + (has_text ? len : 0);
        if (!j->in_reasoning && j->req.logprobs >= 0 && !job_add_logprob(j, logits, id, end)) {
            return false;
        }
        if (has_text && j->in_reasoning) {
            if (!bytes_put(&j->reasoning, text, len)) {
                return job_nomem(j, "the reasoning");
            }
            job_emit(j, text, len, true);
        } else if (has_text) {
            go_on = job_add_content(j, text, len);
        }
    }
    return go_on && job_go_on(j);
}

/*
 * tool_choice "required" or a named function: the forced call's start (mt_chat_forced_call_text)
 * as text and ids. Without reasoning first, its ids end the prompt[0..*n) (which grows); in
 * thinking mode the first generate stops at </think> (on_token) and job_generate_forced feeds
 * </think> and them. False when out of memory.
 */
static bool
job_encode_forced(struct job *j, int32_t **prompt, size_t *n)
{
    struct mt_serve *s = j->serve;

    j->forced = mt_chat_forced_call_text(j->req.forced_tool);
    if (j->forced == NULL || mt_tokenizer_encode(s->tok, j->forced, strlen(j->forced), false,
                                                 &j->forced_ids, &j->n_forced) != MT_OK) {
        return false;
    }
    j->forced_after_think = j->req.thinking && s->think_end >= 0;
    if (j->forced_after_think) {
        return true;
    }
    int32_t *p = realloc(*prompt, (*n + j->n_forced) * sizeof(*p));
    if (p == NULL) {
        return false;
    }
    memcpy(p + *n, j->forced_ids, j->n_forced * sizeof(*p));
    *prompt = p;
    *n += j->n_forced;
    return true;
}

/* Whether a prompt of n ids leaves room to generate in the context; a 400
 * context_length_exceeded (where: its place in a list of prompts) otherwise. */
static bool
job_prompt_fits(struct job *j, const char *where, size_t n)
{
    int64_t max_pos = mt_engine_max_pos(j->serve->engine);

    if ((int64_t)MT_MIN(n, (size_t)INT64_MAX) < max_pos) {
        return true;
    }
    mt_serve_error_set(&j->err, 400, "invalid_request_error", "context_length_exceeded",
                       j->req.api == MT_SERVE_API_CHAT ? "messages" : "prompt",
                       "%sthe prompt is %zu tokens; it must be shorter than this model's "
                       "context of %lld tokens (room to generate)", where, n,
                       (long long)max_pos);
    return false;
}

/*
 * Prompt `which` of a request as ids (malloc'ed): the chat's messages, or a completion's
 * prompts[which]. Errors are the client's: 400 with the reason.
 */
static bool
job_encode(struct job *j, size_t which, int32_t **ids_out, size_t *n_out)
{
    struct mt_serve *s = j->serve;
    const struct mt_serve_prompt *p = j->req.api == MT_SERVE_API_CHAT ? NULL
                                      : &j->req.prompts[which];
    char where[40] = "";
    mt_status_t st;

    if (j->req.api != MT_SERVE_API_CHAT && j->req.n_prompts > 1) {
        snprintf(where, sizeof(where), "prompt[%zu]: ", which);
    }
    /* ids too many for the context: that first, as for text, before they are checked one by
     * one */
    if (p != NULL && p->ids != NULL && !job_prompt_fits(j, where, p->n_ids)) {
        return false;
    }
    mt_log_set_quiet(true);
    if (p == NULL) {
        st = mt_chat_encode(s->tok, j->req.msgs, j->req.n_msgs, j->req.thinking, ids_out, n_out);
        if (st == MT_OK && j->req.force_call && !job_encode_forced(j, ids_out, n_out)) {
            free(*ids_out);
            st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the forced tool call");
        }
    } else if (p->ids != NULL) {
        /* token ids run as given; one outside the vocabulary is the client's error */
        size_t bytes = p->n_ids * sizeof(**ids_out);
        *ids_out = malloc(bytes);
        *n_out = p->n_ids;
        st = *ids_out == NULL ? mt_fail(MT_ERR_NOMEM, 0, "cannot copy the prompt's ids")
             : *n_out > INT32_MAX
                 ? mt_fail(MT_ERR_INVAL, 0, "a prompt of %zu token ids is too long", *n_out)
                 : mt_engine_check_prompt(s->engine, p->ids, (int)*n_out);
        if (st == MT_OK) {
            memcpy(*ids_out, p->ids, bytes);
        } else {
            free(*ids_out);
        }
    } else {
        int32_t *ids = NULL;
        size_t n = 0;
        size_t cap = 0;
        if (s->bos >= 0) {
            ids = malloc(64 * sizeof(*ids));
            cap = ids != NULL ? 64 : 0;
            if (ids != NULL) {
                ids[n++] = s->bos;
            }
        }
        st = ids == NULL && s->bos >= 0
                 ? MT_ERR_NOMEM
                 : mt_tokenizer_encode_append(s->tok, p->text, p->len, true, &ids, &n, &cap);
        if (st == MT_OK && n == 0) {
            st = mt_fail(MT_ERR_INVAL, 0, "the prompt is empty and the model has no BOS token");
        }
        if (st == MT_OK) {
            *ids_out = ids;
            *n_out = n;
        } else {
            free(ids);
        }
    }
    mt_log_set_quiet(false);
    if (st != MT_OK) {
        mt_serve_error_set(&j->err, st == MT_ERR_NOMEM ? 500 : 400,
                           st == MT_ERR_NOMEM ? "server_error" : "invalid_request_error", NULL,
                           p == NULL ? "messages" : "prompt", "%s%s", where, mt_last_error());
        return false;
    }
    if (!job_prompt_fits(j, where, *n_out)) {
        free(*ids_out);
        return false;
    }
    return true;
}

static const char *
finish_reason(const struct job *j, const struct mt_gen_result *r)
{
    if (j->stopped_by_string || r->stop == MT_STOP_EOS || r->stop == MT_STOP_CALLER) {
        return "stop";
    }
    return "length";
}

/*
 * echo: the prompt's text begins the answer, taken as sent (a stream sends it in one chunk,
 * job_send_echo), so stop strings look only at what the model writes. False: out of memory.
 */
static bool
job_echo_text(struct job *j, const int32_t *prompt, size_t n)
{
    struct mt_detok d;
    const char *text;
    size_t len;
    bool ok = true;

    mt_detok_init(&d, j->serve->tok);
    for (size_t i = 0; ok && i < n; i++) {
        size_t tl;
        if (mt_tokenizer_token_bytes(j->serve->tok, prompt[i], &tl) == NULL) {
            continue; /* a padding id has no text */
        }
        ok = mt_detok_push(&d, prompt[i], &text, &len) == MT_OK &&
             bytes_put(&j->content, text, len);
    }
    ok = ok && mt_detok_flush(&d, &text, &len) == MT_OK && bytes_put(&j->content, text, len);
    mt_detok_fini(&d);
    j->content_sent = j->content.n;
    return ok;
}

/* echo, streamed: the prompt's text, with its tokens' log-probabilities when asked for. */
static void
job_send_echo(struct job *j)
{
    struct mt_serve_origin o = job_origin(j);
    struct mt_serve_logprobs lp;

    if (j->req.stream) {
        job_send(j, mt_serve_chunk_event(&j->req, &o, j->content.p != NULL ? j->content.p : "",
                                         j->content.n, false, false,
                                         job_take_logprobs(j, SIZE_MAX, &lp), NULL));
    }
}

/*
 * mt_session_prompt_fn (echo with logprobs): the prompt's tokens' log-probabilities, each from
 * the row of the position before it; when the prompt has run, the echo goes out.
 */
static bool
on_prompt_logits(void *ctx, size_t from, size_t n, const float *rows)
{
    struct job *j = ctx;
    struct mt_serve *s = j->serve;
    size_t vocab = (size_t)mt_engine_vocab(s->engine);

    if (from == 0 && !job_add_logprob(j, NULL, j->prompt[0], 0)) {
        return false;
    }
    for (size_t r = 0; r < n && from + r + 1 < j->n_prompt; r++) {
        if (!job_add_logprob(j, rows + r * vocab, j->prompt[from + r + 1], 0)) {
            return false;
        }
    }
    if (from + n == j->n_prompt) {
        job_send_echo(j);
    }
    return job_go_on(j);
}

/*
 * Thinking mode with a forced call: the reasoning ended (on_token stopped at </think>). Feed
 * </think> and the call's start after what the session holds, and generate the rest of the
 * answer within what max_tokens leaves; *res adds up both parts. Nothing runs when the client
 * has gone or when they would pass the context (the answer then ends there, "length").
 */
static mt_status_t
job_generate_forced(struct job *j, struct mt_gen_opts *go, struct mt_gen_result *res)
{
    struct mt_serve *s = j->serve;
    size_t n_hist, n;
    const int32_t *hist = mt_session_history(s->session, &n_hist);
    struct mt_gen_result more = {0};
    int32_t *p;
    mt_status_t st;

    bool go_on = job_go_on(j);
    n = n_hist + 1 + j->n_forced;
    if (!go_on || (int64_t)n >= mt_engine_max_pos(s->engine)) {
        res->stop = go_on ? MT_STOP_CONTEXT : MT_STOP_CALLER;
        return MT_OK;
    }
    p = malloc(n * sizeof(*p));
    if (p == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the forced tool call's prompt");
    }
    memcpy(p, hist, n_hist * sizeof(*p));
    p[n_hist] = s->think_end;
    memcpy(p + n_hist + 1, j->forced_ids, j->n_forced * sizeof(*p));
    for (size_t i = 0; j->req.return_token_ids && i < j->n_forced; i++) {
        if (!ids_put(j, j->forced_ids[i])) {
            free(p);
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the reply's ids");
        }
    }
    j->stop_at_think = false;
    j->forced_fed = true;
    go->max_new = j->req.max_tokens - res->n_generated;
    st = mt_session_generate(s->session, p, n, go, on_token, j, &more);
    free(p);
    res->n_generated += more.n_generated;
    res->n_decoded += more.n_decoded;
    res->stop = more.stop;
    res->prefill_s += more.prefill_s;
    res->decode_s += more.decode_s;
    return st;
}

/*
 * Before each choice: its answer starts empty (the previous one's was kept), and a forced call
 * opens it again.
 */
static void
job_choice_reset(struct job *j)
{
    struct mt_serve *s = j->serve;

    j->content.n = 0;
    j->content_sent = 0;
    j->reasoning.n = 0;
    j->stopped_by_string = false;
    j->tool_block = j->forced != NULL; /* inside the block from its start: nothing streams */
    j->forced_fed = j->forced != NULL && !j->forced_after_think;
    j->stop_at_think = j->forced != NULL && j->forced_after_think;
    j->think_ended = false;
    mt_chat_parsed_calls_fini(&j->calls);
    j->n_lps = 0;
    j->lp_sent = 0;
    j->lp_sent_bytes = 0;
    j->n_ids = 0;
    j->n_sampled = 0;
    j->failed = false;
    j->in_reasoning = j->req.api == MT_SERVE_API_CHAT && j->req.thinking && s->think_end >= 0;
}

/* The choice's answer, moved into k (j's buffers start over). */
static void
job_keep_choice(struct job *j, struct kept_choice *k, size_t content_end, bool calls,
                const char *finish, long n_generated)
{
    *k = (struct kept_choice){
        .content = j->content, .content_end = content_end, .reasoning = j->reasoning,
        .calls = j->calls, .has_calls = calls, .lps = j->lps, .n_lps = j->n_lps, .ids = j->ids,
        .n_ids = j->n_ids, .finish = finish, .n_generated = n_generated};
    memset(&j->content, 0, sizeof(j->content));
    memset(&j->reasoning, 0, sizeof(j->reasoning));
    memset(&j->calls, 0, sizeof(j->calls));
    j->lps = NULL;
    j->cap_lps = 0;
    free(j->lp_end);
    j->lp_end = NULL;
    j->ids = NULL;
    j->cap_ids = 0;
}

/*
 * Echo with logprobs, after a prompt's first choice: its prompt entries are this choice's too.
 * Copy them (and stream the echo) instead of running the whole prompt again, so that the
 * prompt's cache is reused. False when there is nothing to copy (the first choice).
 */
static bool
job_echo_copy(struct job *j, size_t n_prompt)
{
    int i = j->choice % j->req.n;
    const struct kept_choice *first = &j->kept[j->choice - i];

    if (i == 0 || first->n_lps < n_prompt) {
        return false;
    }
    for (size_t k = 0; k < n_prompt; k++) {
        if (!job_room_for_logprob(j)) {
            return true; /* the job failed: job_choice reports it */
        }
        j->lps[j->n_lps] = first->lps[k];
        j->lp_end[j->n_lps++] = 0;
    }
    job_send_echo(j);
    return true;
}

/*
 * One choice of a job: generate (in thinking mode with a forced call, in two parts), then what
 * the decoder and the stop-string matcher still hold, the tool calls, and in a stream the
 * choice's last chunks. The answer goes into *k; *res says what the engine did.
 */
static mt_status_t
job_choice(struct job *j, const int32_t *prompt, size_t n_prompt, struct mt_gen_result *res,
           struct kept_choice *k)
{
    struct mt_serve *s = j->serve;
    struct mt_serve_origin o = job_origin(j);
    struct mt_gen_opts go;
    mt_status_t st;

    job_choice_reset(j);
    if (j->req.echo && !job_echo_text(j, prompt, n_prompt)) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the echo");
    }
    mt_detok_init(&j->detok, s->tok);
    if (j->req.stream) {
        job_send(j, mt_serve_chunk_event(&j->req, &o, "", 0, false,
                                         j->req.api == MT_SERVE_API_CHAT, NULL, NULL));
    }
    if (j->req.echo && j->req.logprobs < 0) {
        job_send_echo(j); /* else when the prompt has run, with its log-probabilities */
    }

    mt_gen_opts_default(&go);
    go.max_new = j->req.max_tokens;
    go.stop_ids = s->stop_ids;
    go.n_stop_ids = j->req.ignore_eos ? 0 : s->n_stop_ids;
    go.ignore_eos = j->req.ignore_eos;
    go.want_logits = j->req.logprobs >= 0;
    go.presence_penalty = j->req.presence_penalty;
    go.frequency_penalty = j->req.frequency_penalty;
    go.bias = j->req.bias;
    go.n_bias = j->req.n_bias;
    go.cancelled = job_cancelled;
    if (j->req.echo && j->req.logprobs >= 0 && !job_echo_copy(j, n_prompt)) {
        go.on_prompt_logits = on_prompt_logits; /* the whole prompt runs */
    }
    if (j->req.json_object) { /* in thinking mode, free until the reasoning ends (on_token) */
        mt_json_constraint_reset(s->json, !j->in_reasoning, j->req.held);
        go.constraint = &s->json_rule;
    }
    st = mt_session_generate(s->session, prompt, n_prompt, &go, on_token, j, res);
    if (st == MT_OK && j->think_ended && !j->failed) {
        st = job_generate_forced(j, &go, res);
    }

    /* what the decoder and the stop-string matcher still hold */
    const char *text;
    size_t len;
    if (mt_detok_flush(&j->detok, &text, &len) != MT_OK) {
        job_nomem(j, "the reply's text");
    } else if (len > 0) {
        if (j->in_reasoning) {
            if (bytes_put(&j->reasoning, text, len)) {
                job_emit(j, text, len, true);
            } else {
                job_nomem(j, "the reasoning");
            }
        } else if (!j->stopped_by_string) {
            job_add_content(j, text, len);
        }
    }
    mt_detok_fini(&j->detok);
    if (st == MT_OK && j->failed) {
        st = MT_ERR_NOMEM; /* mt_last_error says what (job_nomem): the reply is a 500 */
    }
    /* the forced call's start, fed to the model, begins its answer */
    if (j->forced_fed && !bytes_prepend(&j->content, j->forced, strlen(j->forced))) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the answer");
    }
    for (size_t i = 0; j->forced_fed && i < j->n_lps; i++) {
        j->lp_end[i] += strlen(j->forced); /* the tokens' text moved with it */
    }
    /* the tool calls that end the answer; a block that does not parse is sent as text */
    bool calls = false;
    if (st == MT_OK && mt_serve_may_call_tools(&j->req) && j->tool_block) {
        mt_log_set_quiet(true);
        calls = mt_chat_parse_tool_calls(j->content.p != NULL ? j->content.p : "", j->content.n,
                                         &j->calls) == MT_OK &&
                j->calls.n > 0;
        mt_log_set_quiet(false);
        if (!calls && !s->opts.quiet) {
            mt_log_info("serve: %s: the reply's tool calls do not follow V3.2's format (cut "
                        "short?); sent as text", j->id);
        }
    }
    size_t content_end = calls ? j->calls.content_len : j->content.n;
    if (j->content_sent < content_end) {
        job_emit(j, j->content.p + j->content_sent, content_end - j->content_sent, false);
        j->content_sent = content_end;
    }
    const char *finish = calls ? "tool_calls" : finish_reason(j, res);

    pthread_mutex_lock(&s->lock);
    bool gone = j->gone;
    pthread_mutex_unlock(&s->lock);
    mt_serve_metrics_count_generation(&s->metrics, res, gone);
    if (!s->opts.quiet) {
        char which[96] = "";
        if (j->n_choices > j->req.n) {
            snprintf(which, sizeof(which), " (prompt %d of %d, choice %d of %d)",
                     j->choice / j->req.n + 1, j->n_choices / j->req.n,
                     j->choice % j->req.n + 1, j->req.n);
        } else if (j->req.n > 1) {
            snprintf(which, sizeof(which), " (choice %d of %d)", j->choice + 1, j->req.n);
        }
        mt_log_info("serve: %s %s%s: %zu prompt tokens (%zu cached), %ld generated, %s%s", j->id,
                    j->req.api == MT_SERVE_API_CHAT ? "chat" : "completion", which,
                    res->n_prompt, res->n_reused, res->n_generated,
                    st != MT_OK ? "failed" : gone ? "client gone"
                                           : j->aborted ? "aborted (shutting down)" : finish,
                    j->req.stream ? ", streamed" : "");
    }
    if (j->req.stream && st == MT_OK && !j->aborted) { /* (job_run reports an abort) */
        struct mt_serve_logprobs lp;
        if (calls) {
            job_send(j, mt_serve_tool_calls_event(&j->req, &o, j->calls.calls, j->calls.n));
        }
        job_send(j, mt_serve_chunk_event(&j->req, &o, "", 0, false, false,
                                         job_take_logprobs(j, SIZE_MAX, &lp), finish));
    }
    job_keep_choice(j, k, content_end, calls, finish, res->n_generated);
    return st;
}

/* The response of a kept choice (with the request's usage: job_run fills it). */
static struct mt_serve_reply
kept_reply(const struct job *j, const struct kept_choice *k)
{
    struct mt_serve_reply r = {
        .content = k->content.p != NULL ? k->content.p : "",
        .content_len = k->content_end,
        .reasoning = j->req.api == MT_SERVE_API_CHAT && j->req.thinking
                         ? (k->reasoning.p != NULL ? k->reasoning.p : "")
                         : NULL,
        .reasoning_len = k->reasoning.n,
        .finish = k->finish,
        .tool_calls = k->calls.calls,
        .n_tool_calls = k->has_calls ? k->calls.n : 0,
        .completion_tokens = k->n_generated,
        .ids = k->ids,
        .n_ids = k->n_ids,
        .logprobs = {j->req.logprobs >= 0 ? j->serve->tok : NULL, k->lps, k->n_lps, 0},
    };
    return r;
}

/*
 * Run one job on the worker: encode its prompts (all first, so that a bad one is a 400 before
 * anything runs), then each prompt's n choices one after another (each reuses the prompt's
 * cache; choice i of a prompt samples with seed + i), then the response.
 */
static void
job_run(struct mt_serve *s, struct job *j)
{
    size_t n_prompts = j->req.api == MT_SERVE_API_CHAT ? 1 : j->req.n_prompts;
    int32_t **prompts = calloc(n_prompts, sizeof(*prompts));
    size_t *lens = calloc(n_prompts, sizeof(*lens));
    struct mt_gen_result res = {0};
    struct mt_sampler_opts so = j->req.sampler;
    struct mt_serve_reply *replies = NULL;
    mt_status_t st = MT_OK;
    size_t n_reused = 0;
    size_t prompt_tokens = 0;
    long generated = 0;

    if (prompts == NULL || lens == NULL) {
        mt_serve_error_set(&j->err, 500, "server_error", NULL, NULL, "out of memory");
        goto out_free;
    }
    for (size_t p = 0; p < n_prompts; p++) {
        int32_t *ids;
        if (!job_encode(j, p, &ids, &lens[p])) { /* freed its ids */
            goto out_free;
        }
        prompts[p] = ids;
        prompt_tokens += lens[p];
    }
    if (!j->req.seeded) {
        so.seed = (uint64_t)(mt_clock_now() * 1e9) ^ (j->seq * 0x9e3779b97f4a7c15ull);
    }
    for (int i = 0; i < j->req.n_bias; i++) {
        if (j->req.bias[i].id >= mt_engine_vocab(s->engine)) {
            mt_serve_error_set(&j->err, 400, "invalid_request_error", NULL, "logit_bias",
                               "'logit_bias' names token id %d, outside the vocabulary [0, %d)",
                               (int)j->req.bias[i].id, mt_engine_vocab(s->engine));
            goto out_free;
        }
    }
    j->n_choices = (int)n_prompts * j->req.n;
    j->kept = calloc((size_t)j->n_choices, sizeof(*j->kept));
    replies = calloc((size_t)j->n_choices, sizeof(*replies));
    if (j->kept == NULL || replies == NULL) {
        mt_serve_error_set(&j->err, 500, "server_error", NULL, NULL, "out of memory");
        goto out_free;
    }
    pthread_mutex_lock(&s->lock);
    j->state = JOB_RUNNING;
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&s->lock);

    int done = 0;
    for (; done < j->n_choices && st == MT_OK; done++) {
        size_t p = (size_t)(done / j->req.n);
        int i = done % j->req.n;
        struct mt_sampler_opts si = so;
        si.seed += (uint64_t)i;
        if (done > 0 && !job_go_on(j)) {
            break;
        }
        mt_log_set_quiet(true);
        st = mt_session_set_sampler(s->session, &si);
        mt_log_set_quiet(false);
        if (st != MT_OK && done == 0) { /* nothing went out yet: a plain 400, or 500 */
            if (st == MT_ERR_NOMEM) {
                mt_serve_error_set(&j->err, 500, "server_error", NULL, NULL, "%s",
                                   mt_last_error());
            } else {
                mt_serve_error_set(&j->err, 400, "invalid_request_error", NULL, NULL, "%s",
                                   mt_last_error());
            }
            goto out_free;
        }
        j->choice = done;
        j->prompt = prompts[p];
        j->n_prompt = lens[p];
        if (st == MT_OK) {
            st = job_choice(j, prompts[p], lens[p], &res, &j->kept[done]);
        }
        n_reused += i == 0 ? res.n_reused : 0;
        generated += res.n_generated;
    }
    for (int i = 0; i < done; i++) {
        replies[i] = kept_reply(j, &j->kept[i]);
        replies[i].prompt_ids = prompts[i / j->req.n];
        replies[i].n_prompt_ids = lens[i / j->req.n];
    }
    /* the usage: each prompt once (with what its first run reused), every choice's tokens */
    replies[0].prompt_tokens = prompt_tokens;
    replies[0].cached_tokens = n_reused;

    struct mt_serve_origin o = job_origin(j);
    o.index = 0;
    if (st != MT_OK) {
        mt_serve_error_set(&j->err, 500, "server_error", NULL, NULL, "generation failed: %s",
                           mt_last_error());
    } else if (j->aborted) {
        /* cut short by the server, not ended by the model: never a 200 that reads whole */
        mt_serve_error_set(&j->err, 503, "server_error", "shutting_down", NULL,
                           "the server is shutting down: the generation was stopped after %ld "
                           "tokens", generated);
    }
    if (j->req.stream) {
        if (j->err.http != 0) {
            job_send(j, mt_serve_error_event(&j->err));
        } else if (j->req.include_usage) {
            /* several choices: which ids are whose is in no chunk of a stream's usage; none are
             * sent */
            struct mt_serve_request rq = j->req;
            struct mt_serve_reply total = replies[0];
            total.completion_tokens = generated;
            rq.return_token_ids = rq.return_token_ids && j->n_choices == 1;
            job_send(j, mt_serve_usage_event(&rq, &o, &total));
        }
        job_send(j, strdup("data: [DONE]\n\n"));
        j->err.http = 0; /* the 200 went out already */
    } else if (j->err.http == 0) {
        char *body = mt_serve_replies_json(&j->req, &o, replies, (size_t)done);
        pthread_mutex_lock(&s->lock);
        j->result = body;
        pthread_mutex_unlock(&s->lock);
        if (body == NULL) {
            mt_serve_error_set(&j->err, 500, "server_error", NULL, NULL, "out of memory");
        }
    }

out_free:
    free(replies);
    for (size_t p = 0; prompts != NULL && p < n_prompts; p++) {
        free(prompts[p]);
    }
    free(prompts);
    free(lens);
    pthread_mutex_lock(&s->lock);
    job_finish_locked(j);
    pthread_mutex_unlock(&s->lock);
}

static void *
worker_main(void *arg)
{
    struct mt_serve *s = arg;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->head == NULL && !s->stopping) {
            pthread_cond_wait(&s->work, &s->lock);
        }
        struct job *j = s->head;
        if (j == NULL) {
            break; /* stopping, and nothing waits */
        }
        s->head = j->next;
        if (s->head == NULL) {
            s->tail = NULL;
        }
        s->n_queued--;
        if (!j->gone) {
            s->busy = true;
            pthread_mutex_unlock(&s->lock);
            job_run(s, j);
            pthread_mutex_lock(&s->lock);
            s->busy = false;
        } else {
            job_finish_locked(j);
        }
        job_release_locked(j);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- connections -------------------------------------------------------------------------- */

/* Seconds between two peer_probe of a client that sent FIN: a closed client behind a relay that
 * passes the FIN on (docker-proxy, ssh -L, socat), or one that closes after reading a probe,
 * resets only when something more reaches it */
#define PROBE_EVERY_S 1.0

/*
 * Whether j's client has gone, as seen while nothing has been sent to it yet: a reset is gone; a
 * FIN is probed (peer_probe) about once a second, as a half-closed client still wants its reply
 * and a closed one resets at the next probe. HTTP/1.0 clients must not get a 1xx, so for them a
 * FIN is gone. s->lock held.
 */
static bool
job_client_gone_locked(struct job *j)
{
    double now;

    switch (peer_state(j->fd)) {
    case PEER_GONE:
        return true;
    case PEER_SENT_FIN:
        if (!j->http11) {
            return true;
        }
        now = mt_clock_now();
        if (j->probed_at > 0.0 && now - j->probed_at < PROBE_EVERY_S) {
            return false; /* half-closed, until a reset shows it closed */
        }
        j->probed_at = now;
        return !peer_probe(j->fd);
    default:
        return false;
    }
}

/*
 * Wait, on a connection's thread, until j leaves state `from`, or its client hangs up (then j is
 * marked gone). s->lock held.
 */
static void
job_wait_locked(struct job *j, enum job_state from)
{
    struct mt_serve *s = j->serve;
    struct timespec ts;

    while (j->state == from && !j->gone) {
        deadline_in(&ts, 100);
        pthread_cond_timedwait(&j->cond, &s->lock, &ts);
        if (j->state == from && job_client_gone_locked(j)) {
            j->gone = true;
        }
    }
}

/*
 * An SSE comment line, which every SSE client skips (the openai libraries, browsers'
 * EventSource, the chat page): sent on a stream that had nothing to send for
 * opts.stream_keepalive_s, it keeps a proxy or client with a read timeout from closing the
 * stream through a long prefill or a tool call held back until it is whole.
 */
static const char sse_keepalive[] = ": keep-alive\n\n";

/* The stream's content reader: events as the worker makes them, and keep-alives between. */
static ssize_t
sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct job *j = cls;
    struct mt_serve *s = j->serve;
    double every = s->opts.stream_keepalive_s;
    struct timespec ts;
    ssize_t n;

    (void)pos;
    pthread_mutex_lock(&s->lock);
    while (j->out_off == j->out.n && j->state != JOB_DONE && !j->gone) {
        /* events go into out whole (job_send), so out_off == out.n is between two events */
        double now = mt_clock_now();
        if (every > 0.0 && now - j->sse_sent_at >= every && max >= sizeof(sse_keepalive) - 1) {
            memcpy(buf, sse_keepalive, sizeof(sse_keepalive) - 1);
            j->sse_sent_at = now;
            pthread_mutex_unlock(&s->lock);
            return (ssize_t)(sizeof(sse_keepalive) - 1);
        }
        /* every 100 ms, or each keep-alive interval when that is shorter (tests) */
        deadline_in(&ts, every > 0.0 && every < 0.1 ? (long)(every * 1000.0) : 100);
        pthread_cond_timedwait(&j->cond, &s->lock, &ts);
        /* a FIN alone is no hang-up (a half-closed client reads on); a closed client resets
         * the connection when the next event reaches it, and MHD's failed write ends the
         * stream (sse_free). While no event comes (a long prompt runs), a keep-alive comment
         * about once a second is that next event, so that the prompt stops between its
         * pieces (job_cancelled) soon after the client left; not with keep-alives off. */
        if (j->out_off == j->out.n && j->state != JOB_DONE) {
            enum peer_state ps = peer_state(j->fd);
            if (ps == PEER_GONE) {
                j->gone = true;
            } else if (ps == PEER_SENT_FIN && every > 0.0 &&
                       mt_clock_now() - j->probed_at >= PROBE_EVERY_S) {
                j->probed_at = mt_clock_now();
                j->sse_sent_at = 0.0; /* the comment goes out at the loop's top */
            }
        }
    }
    if (j->out_off < j->out.n) {
        n = (ssize_t)MT_MIN(max, j->out.n - j->out_off);
        memcpy(buf, j->out.p + j->out_off, (size_t)n);
        j->out_off += (size_t)n;
        j->sse_sent_at = mt_clock_now();
    } else {
        n = j->gone ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
        dropping_gone_client = j->gone && !j->cut; /* mhd_log: a client gone is no fault */
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* The stream is over (sent, or the connection closed): let go of the job. */
static void
sse_free(void *cls)
{
    struct job *j = cls;
    struct mt_serve *s = j->serve;

    pthread_mutex_lock(&s->lock);
    if (j->state != JOB_DONE || j->out_off < j->out.n) {
        j->gone = true; /* closed before the end: stop generating */
    }
    job_release_locked(j);
    pthread_mutex_unlock(&s->lock);
}

/* What content_length_visit has seen of a request's Content-Length headers. */
struct content_length_seen {
    const char *first; /* the first one's value, which MHD frames the body by */
    const char *other; /* the first value that differs from it, or NULL */
};

/* MHD_KeyValueIterator over a request's headers: notes its Content-Length values. */
static enum MHD_Result
content_length_visit(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct content_length_seen *seen = cls;

    (void)kind;
    if (key == NULL || value == NULL || strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) != 0) {
        return MHD_YES;
    }
    if (seen->first == NULL) {
        seen->first = value;
    } else if (seen->other == NULL && strcmp(value, seen->first) != 0) {
        seen->other = value;
    }
    return MHD_YES;
}

/*
 * Two Content-Length headers that differ leave a request's end in doubt: MHD reads the body by
 * the first and takes what follows as the next request, while a proxy in front may have gone by
 * the last, so the two would read different requests from the one stream (request smuggling).
 * RFC 9112 (section 6.3) makes such framing an unrecoverable error: a 400, then the connection
 * is closed (an early response closes it), before a byte of the body is taken. Repeats of one
 * value are the one length (RFC 9110, section 8.6), as MHD reads them.
 */
static bool
content_length_conflicts(struct MHD_Connection *c, struct mt_serve_error *e)
{
    struct content_length_seen seen = {NULL, NULL};

    MHD_get_connection_values(c, MHD_HEADER_KIND, content_length_visit, &seen);
    if (seen.other == NULL) {
        return false;
    }
    mt_serve_error_set(e, 400, "invalid_request_error", NULL, NULL,
                       "conflicting Content-Length headers ('%.20s' and '%.20s'): where the "
                       "request ends is unclear",
                       seen.first, seen.other);
    return true;
}

static bool
key_ok(const struct mt_serve *s, struct MHD_Connection *c)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    size_t kl;
    size_t hl;
    unsigned char diff = 0;

    if (s->api_key == NULL) {
        return true;
    }
    /* the scheme's name is case-insensitive (RFC 9110, section 11.1) */
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        return false;
    }
    h += 7;
    kl = strlen(s->api_key);
    hl = strlen(h);
    /* compare in time independent of where they differ */
    for (size_t i = 0; i < kl; i++) {
        diff |= (unsigned char)(s->api_key[i] ^ (i < hl ? h[i] : 0));
    }
    return diff == 0 && hl == kl;
}

static enum MHD_Result
refuse_key(struct mt_serve *s, struct MHD_Connection *c, enum mt_serve_route route)
{
    struct mt_serve_error e;
    bool given = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                             MHD_HTTP_HEADER_AUTHORIZATION) != NULL;

    mt_serve_error_set(&e, 401, "invalid_request_error", "invalid_api_key", NULL,
                       given ? "incorrect API key provided"
                             : "this server needs an API key (Authorization: Bearer KEY)");
    return respond_error(s, c, route, &e);
}

static enum MHD_Result
serve_get(struct mt_serve *s, struct MHD_Connection *c, enum mt_serve_route route,
          const char *url)
{
    char *text = NULL;
    struct MHD_Response *r;
    enum MHD_Result ret;

    switch (route) {
    case MT_SERVE_ROUTE_PAGE:
        r = MHD_create_response_from_buffer(mt_serve_chat_page_len, (void *)mt_serve_chat_page,
                                            MHD_RESPMEM_PERSISTENT);
        if (r == NULL) {
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
        get_keep_alive(s, c, r);
        ret = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        mt_serve_metrics_count_request(&s->metrics, route, 200);
        return ret;
    case MT_SERVE_ROUTE_HEALTH: {
        pthread_mutex_lock(&s->lock);
        json_t *h = json_pack("{s:s,s:s,s:b,s:i,s:i,s:i,s:s,s:I}", "status",
                              s->stopping ? "stopping" : "ok", "model", s->model_id, "busy",
                              s->busy, "queued", s->n_queued, "max_queue",
                              s->opts.limits.max_queue, "concurrency", 1, "scheduling",
                              "one generation at a time; requests wait in arrival order",
                              "uptime_s", (json_int_t)(unix_now() - s->started));
        pthread_mutex_unlock(&s->lock);
        if (h != NULL) {
            text = json_dumps(h, JSON_COMPACT);
            json_decref(h);
        }
        return respond(s, c, route, s->stopping ? 503 : 200, "application/json", text);
    }
    case MT_SERVE_ROUTE_METRICS: {
        pthread_mutex_lock(&s->lock);
        int queued = s->n_queued;
        bool busy = s->busy;
        pthread_mutex_unlock(&s->lock);
        if (mt_serve_metrics_text(&s->metrics, queued, busy, &text) != MT_OK) {
            return respond_nomem(s, c, route);
        }
        return respond(s, c, route, 200, "text/plain; version=0.0.4; charset=utf-8", text);
    }
    case MT_SERVE_ROUTE_MODELS:
        if (!key_ok(s, c)) {
            return refuse_key(s, c, route);
        }
        return respond(s, c, route, 200, "application/json",
                       mt_serve_models_json(s->model_id, s->started));
    case MT_SERVE_ROUTE_MODEL: {
        const char *id = url + strlen("/v1/models/"); /* (mt_serve_route_of) */
        struct mt_serve_error e;
        if (!key_ok(s, c)) {
            return refuse_key(s, c, route);
        }
        if (strcmp(id, s->model_id) == 0) {
            return respond(s, c, route, 200, "application/json",
                           mt_serve_model_json(s->model_id, s->started));
        }
        mt_serve_error_set(&e, 404, "invalid_request_error", "model_not_found", "model",
                           "the model '%.100s' does not exist; this server has '%.100s'", id,
                           s->model_id);
        return respond_error(s, c, route, &e);
    }
    default:
        return MHD_NO;
    }
}

/* A whole POST body has come: parse, queue, wait, answer. */
static enum MHD_Result
serve_generate(struct mt_serve *s, struct MHD_Connection *c, struct conn *cn)
{
    enum mt_serve_route route = cn->route;
    struct mt_serve_error e;
    struct job *j;
    enum MHD_Result ret;

    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return respond_nomem(s, c, route);
    }
    if (mt_serve_request_parse(route == MT_SERVE_ROUTE_CHAT ? MT_SERVE_API_CHAT
                                                            : MT_SERVE_API_COMPLETION,
                               cn->body.p != NULL ? cn->body.p : "", cn->body.n, s->model_id,
                               &s->opts.limits, &s->opts.sampling, &j->req, &e) != MT_OK) {
        free(j);
        return respond_error(s, c, route, &e);
    }
    j->serve = s;
    j->refs = 2;
    j->fd = conn_fd(c);
    j->http11 = cn->http11;
    j->created = unix_now();
    pthread_cond_init(&j->cond, NULL);

    pthread_mutex_lock(&s->lock);
    /* waiting behind the running request (or behind one the worker has not taken yet) */
    if (s->stopping || s->n_queued + (s->busy ? 1 : 0) > s->opts.limits.max_queue) {
        bool stopping = s->stopping;
        int max_queue = s->opts.limits.max_queue;
        pthread_mutex_unlock(&s->lock);
        if (stopping) {
            mt_serve_error_set(&e, 503, "server_error", "shutting_down", NULL,
                               "the server is shutting down");
        } else {
            mt_serve_error_set(&e, 429, "rate_limit_error", "queue_full", NULL,
                               "the queue is full (%d waiting, the server's --queue); retry "
                               "later", max_queue);
        }
        j->refs = 0;
        job_free(j);
        return respond_error(s, c, route, &e);
    }
    j->seq = ++s->next_seq;
    snprintf(j->id, sizeof(j->id), "%s-%llu",
             route == MT_SERVE_ROUTE_CHAT ? "chatcmpl" : "cmpl", j->seq);
    if (s->tail != NULL) {
        s->tail->next = j;
    } else {
        s->head = j;
    }
    s->tail = j;
    s->n_queued++;
    s->n_jobs++;
    pthread_cond_signal(&s->work);

    job_wait_locked(j, JOB_QUEUED);
    if (j->gone && j->state == JOB_QUEUED) {
        job_unqueue_locked(s, j);
    }
    /* A stream whose prompt was accepted: the 200 and the events go out (sse_free lets go of j).
     * The worker may have finished it already (a short reply) before this thread woke: its
     * events then wait in j->out, and err.http is 0 as for every stream that started. */
    if (j->req.stream && !j->gone &&
        (j->state == JOB_RUNNING || (j->state == JOB_DONE && j->err.http == 0))) {
        j->sse_sent_at = mt_clock_now(); /* the headers go out now: silence counts from here */
        pthread_mutex_unlock(&s->lock);
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, j, sse_free);
        if (r == NULL) {
            sse_free(j);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        ret = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        mt_serve_metrics_count_request(&s->metrics, route, 200);
        return ret;
    }
    job_wait_locked(j, JOB_RUNNING);
    if (j->gone) {
        bool cut = j->cut;
        job_release_locked(j);
        pthread_mutex_unlock(&s->lock);
        if (cut) {
            return respond_nomem(s, c, route);
        }
        dropping_gone_client = true; /* mhd_log: no "internal error" for it */
        return MHD_NO;               /* nobody to answer */
    }
    char *body = j->result;
    j->result = NULL;
    e = j->err;
    job_release_locked(j);
    pthread_mutex_unlock(&s->lock);
    if (e.http != 0) {
        free(body);
        return respond_error(s, c, route, &e);
    }
    return respond(s, c, route, 200, "application/json", body);
}

static enum MHD_Result
access_handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
               const char *version, const char *upload_data, size_t *upload_data_size,
               void **con_cls)
{
    struct mt_serve *s = cls;
    struct conn *cn = *con_cls;
    struct mt_serve_error e;

    if (cn == NULL) {
        /* the headers: route, Host and Origin, method, key and declared size are checked
         * before any body */
        cn = calloc(1, sizeof(*cn));
        if (cn == NULL) {
            return respond_nomem(s, c, mt_serve_route_of(url));
        }
        *con_cls = cn;
        /* a request after a GET on this connection: its idle time is the whole again */
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, SERVE_IDLE_S);
        cn->route = mt_serve_route_of(url);
        cn->http11 = strcmp(version, MHD_HTTP_VERSION_1_1) == 0;
        bool is_post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
        bool is_get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
                      strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
        bool wants_post = route_takes_post(cn->route);
        if (content_length_conflicts(c, &e)) {
            return respond_early_error(s, c, cn->route, &e);
        }
        if (cn->route == MT_SERVE_ROUTE_OTHER) {
            mt_serve_error_set(&e, 404, "invalid_request_error", "not_found", NULL,
                               "no route %.16s %.200s (see GET /health, /v1/models, "
                               "POST /v1/chat/completions, /v1/completions)", method, url);
            return respond_early_error(s, c, cn->route, &e);
        }
        if (origin_refused(s, c, &e)) {
            return respond_early_error(s, c, cn->route, &e);
        }
        if ((wants_post && !is_post) || (!wants_post && !is_get)) {
            mt_serve_error_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL,
                               "%.200s takes %s, not %.16s", url, wants_post ? "POST" : "GET",
                               method);
            return respond_early_error(s, c, cn->route, &e);
        }
        if (!wants_post) {
            /* a body on a GET means nothing here, and it would be read without a limit */
            const char *len = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                          MHD_HTTP_HEADER_CONTENT_LENGTH);
            if ((len != NULL && strtoull(len, NULL, 10) > 0) ||
                MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                            MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL) {
                mt_serve_error_set(&e, 400, "invalid_request_error", "body_not_allowed", NULL,
                                   "%.16s %.200s takes no request body", method, url);
                return respond_early_error(s, c, cn->route, &e);
            }
            /* answered at the request's end: MHD closes the connection after a response
             * queued with the headers (an "early" one), which would end every keep-alive */
            return MHD_YES;
        }
        if (!key_ok(s, c)) {
            return refuse_key(s, c, cn->route);
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && strtoull(cl, NULL, 10) > s->opts.limits.max_body) {
            cn->too_big = true;
            goto too_big;
        }
        return MHD_YES; /* the body comes next */
    }
    if (*upload_data_size > 0) {
        /* after either failure the rest is read and dropped, to answer with a 413 or a 500 */
        if (!cn->no_memory && !cn->too_big) {
            if (cn->body.n + *upload_data_size <= s->opts.limits.max_body) {
                cn->no_memory = !bytes_put(&cn->body, upload_data, *upload_data_size);
            } else {
                cn->too_big = true;
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    /* the request has arrived whole: no deadline while it waits and runs */
    mt_serve_deadline_arrived(s->deadline, conn_deadline(c));
    if (!route_takes_post(cn->route)) {
        return serve_get(s, c, cn->route, url);
    }
    if (cn->no_memory) {
        return respond_nomem(s, c, cn->route);
    }
    if (!cn->too_big) {
        cn->fd = conn_fd(c);
        pthread_mutex_lock(&s->lock);
        s->n_replying++;
        cn->next = s->replying;
        if (s->replying != NULL) {
            s->replying->prev = cn;
        }
        s->replying = cn;
        pthread_mutex_unlock(&s->lock);
        cn->replying = true;
        return serve_generate(s, c, cn);
    }
too_big:
    mt_serve_error_set(&e, 413, "invalid_request_error", "request_too_large", NULL,
                       "the request body is larger than this server's limit of %zu bytes",
                       s->opts.limits.max_body);
    return respond_error(s, c, cn->route, &e);
}

static void
request_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                  enum MHD_RequestTerminationCode toe)
{
    struct mt_serve *s = cls;
    struct conn *cn = *con_cls;

    (void)toe;
    /* the connection waits for its next request (keep-alive): the deadline's clock again */
    mt_serve_deadline_waiting(s->deadline, conn_deadline(c));
    if (cn != NULL) {
        if (cn->replying) {
            pthread_mutex_lock(&s->lock);
            s->n_replying--;
            if (cn->prev != NULL) {
                cn->prev->next = cn->next;
            } else {
                s->replying = cn->next;
            }
            if (cn->next != NULL) {
                cn->next->prev = cn->prev;
            }
            pthread_mutex_unlock(&s->lock);
        }
        free(cn->body.p);
        free(cn);
        *con_cls = NULL;
    }
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

void
mt_serve_opts_default(struct mt_serve_opts *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->host = "127.0.0.1";
    opts->port = 8080;
    opts->model_id = "moetier";
    mt_serve_limits_default(&opts->limits);
    mt_sampler_opts_default(&opts->sampling);
    opts->sampling.temperature = 1.0f;
    opts->sampling.top_p = 0.95f;
    opts->request_deadline_s = 15;
    opts->stream_keepalive_s = 15.0;
}

/*
 * MHD's unescaping of a path, except that one holding "%00" stays escaped: decoded, its NUL
 * would end the C string the routes compare, and "/v1/models%00junk" would pass as "/v1/models".
 * Left escaped it matches no route (404).
 */
static size_t
unescape_no_nul(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    for (const char *p = strchr(s, '%'); p != NULL; p = strchr(p + 1, '%')) {
        if (p[1] == '0' && p[2] == '0') {
            return strlen(s);
        }
    }
    return MHD_http_unescape(s);
}

static bool
addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        /* on a dual-stack "::", 127.0.0.1 arrives as ::ffff:127.0.0.1 */
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
               (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127);
    }
    return false;
}

/* host:port as getaddrinfo gives it for a server (*ai_out freed by the caller), or the message
 * of a host that does not resolve. */
static mt_status_t
resolve_listen(const char *host, int port, struct addrinfo **ai_out)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    char port_text[16];
    int ret;

    snprintf(port_text, sizeof(port_text), "%d", port);
    ret = getaddrinfo(host, port_text, &hints, ai_out);
    if (ret != 0) {
        return mt_fail(MT_ERR_INVAL, 0, "cannot resolve --host '%s': %s (give an address of "
                       "this machine: 127.0.0.1 for it alone, 0.0.0.0 or :: for every interface)",
                       host, gai_strerror(ret));
    }
    return MT_OK;
}

/* The message of a listen on host:port that failed with errno err (0: detail says why). */
static mt_status_t
listen_failed(const char *host, int port, int err, const char *detail)
{
    return mt_fail(MT_ERR_IO, 0, "cannot listen on %s port %d: %s%s", host, port,
                   err != 0 ? strerror(err) : detail,
                   err == EADDRINUSE ? " (another program listens there: pick another --port, "
                                       "or --port 0 for a free one)"
                   : err == EADDRNOTAVAIL ? " (--host must be an address of this machine: "
                                            "127.0.0.1 for it alone, 0.0.0.0 or :: for every "
                                            "interface)"
                                          : "");
}

mt_status_t
mt_serve_check_address(const char *host, int port)
{
    struct addrinfo *ai = NULL;
    mt_status_t st = resolve_listen(host, port, &ai);
    int one = 1, zero = 0;
    int fd;

    if (st != MT_OK) {
        return st;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        st = listen_failed(host, port, errno, NULL);
        freeaddrinfo(ai);
        return st;
    }
    /* as libmicrohttpd will bind it: address reuse on, and "::" taking IPv4 too */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        st = listen_failed(host, port, errno, NULL);
    }
    close(fd);
    freeaddrinfo(ai);
    return st;
}

mt_status_t
mt_serve_create(struct mt_engine *engine, struct mt_tokenizer *tok,
                const struct mt_serve_opts *opts, struct mt_serve **serve_out)
{
    struct mt_serve *s;
    struct addrinfo *ai = NULL;
    mt_status_t st;
    int ret;

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the server");
    }
    s->opts = *opts;
    s->engine = engine;
    s->tok = tok;
    s->started = unix_now();
    s->model_id = strdup(opts->model_id);
    s->api_key = opts->api_key != NULL && opts->api_key[0] != '\0' ? strdup(opts->api_key) : NULL;
    if (s->model_id == NULL || (opts->api_key != NULL && opts->api_key[0] != '\0' &&
                                s->api_key == NULL)) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the server");
        goto out_free;
    }
    s->opts.model_id = s->model_id;
    s->opts.api_key = s->api_key;
    s->bos = mt_tokenizer_bos(tok);
    s->think_end = mt_tokenizer_token_id(tok, "</think>");
    /* a test hook, as MT_CHAT_SIGINT_AFTER: a random test model never writes </think> itself */
    const char *hook = getenv("MT_SERVE_THINK_AFTER");
    s->think_after = hook != NULL ? strtol(hook, NULL, 10) : 0;
    int32_t eos = mt_tokenizer_eos(tok);
    if (eos >= 0) {
        s->stop_ids[s->n_stop_ids++] = eos;
    }
    mt_serve_metrics_init(&s->metrics);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->work, NULL);

    st = mt_session_create(engine, &opts->sampling, &s->session);
    if (st != MT_OK) {
        goto out_fini;
    }
    st = mt_json_constraint_create(tok, mt_engine_vocab(engine), s->stop_ids, s->n_stop_ids,
                                   &s->json);
    if (st != MT_OK) {
        goto out_session;
    }
    s->json_rule = (struct mt_gen_constraint){s->json, json_mask, json_accept};
    if (opts->request_deadline_s > 0 &&
        (st = mt_serve_deadline_create(opts->request_deadline_s, opts->limits.max_queue + 64,
                                       true, &s->deadline)) != MT_OK) {
        goto out_session;
    }
    if ((st = resolve_listen(opts->host, opts->port, &ai)) != MT_OK) {
        goto out_session;
    }
    s->public_addr = !addr_is_loopback(ai->ai_addr);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) {
        /* "::" takes IPv4 connections too, as "0.0.0.0" means "every address" (they arrive as
         * ::ffff:a.b.c.d, which addr_is_loopback knows); a named IPv6 address only its own */
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ai->ai_addr;
        flags |= IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
    }
    /* the logger first: MHD uses its own for the options before it */
    char start_msg[MHD_START_MSG_MAX] = "";
    mhd_start_msg = start_msg;
    s->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, access_handler, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED, request_completed, s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(opts->limits.max_queue + 64),
        MHD_OPTION_CONNECTION_TIMEOUT, SERVE_IDLE_S, MHD_OPTION_LISTEN_BACKLOG_SIZE, 128u,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape_no_nul, NULL, MHD_OPTION_NOTIFY_CONNECTION,
        s->deadline != NULL ? notify_connection : NULL, s, MHD_OPTION_END);
    int err = errno;
    mhd_start_msg = NULL;
    freeaddrinfo(ai);
    if (s->mhd == NULL) {
        st = listen_failed(opts->host, opts->port, err,
                           start_msg[0] != '\0' ? start_msg : "libmicrohttpd could not start");
        goto out_session;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di != NULL ? di->port : opts->port;
    ret = pthread_create(&s->worker, NULL, worker_main, s);
    if (ret != 0) {
        st = mt_fail(MT_ERR_NOMEM, ret, "cannot start the server's worker thread");
        goto out_stop;
    }
    s->have_worker = true;
    *serve_out = s;
    return MT_OK;

out_stop:
    MHD_stop_daemon(s->mhd);
out_session:
    mt_serve_deadline_destroy(s->deadline); /* after MHD, which reports every close first */
    mt_json_constraint_destroy(s->json);
    mt_session_destroy(s->session);
out_fini:
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->lock);
    mt_serve_metrics_fini(&s->metrics);
out_free:
    free(s->api_key);
    free(s->model_id);
    free(s);
    return st;
}

int
mt_serve_port(const struct mt_serve *serve)
{
    return serve->port;
}

bool
mt_serve_is_public(const struct mt_serve *serve)
{
    return serve->public_addr;
}

void
mt_serve_stop(struct mt_serve *s, bool abort_running)
{
    pthread_mutex_lock(&s->lock);
    bool first = !s->stopping;
    s->stopping = true;
    s->abort_running = s->abort_running || abort_running;
    if (s->abort_running && s->aborted_at == 0.0) {
        s->aborted_at = mt_clock_now();
    }
    /* the waiting requests are answered 503 (their connections see err and state done) */
    while (s->head != NULL) {
        struct job *j = s->head;
        s->head = j->next;
        s->n_queued--;
        mt_serve_error_set(&j->err, 503, "server_error", "shutting_down", NULL,
                           "the server is shutting down");
        job_finish_locked(j);
        job_release_locked(j);
    }
    s->tail = NULL;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->lock);
    if (first) {
        MHD_socket fd = MHD_quiesce_daemon(s->mhd);
        if (fd != MHD_INVALID_SOCKET) {
            close(fd);
        }
    }
}

/*
 * After an abort, seconds the replies get to go out once no request runs. A reply stays behind
 * only where its client stopped reading: MHD then waits for the socket to take more, up to its
 * idle timeout (SERVE_IDLE_S), and no callback of ours runs meanwhile that could end it. So
 * such a connection is shut down, which fails MHD's wait and closes it.
 */
#define ABORT_GRACE_S 2.0

bool
mt_serve_is_idle(struct mt_serve *s)
{
    pthread_mutex_lock(&s->lock);
    if (s->abort_running && !s->busy && s->head == NULL &&
        mt_clock_now() - s->aborted_at >= ABORT_GRACE_S) {
        for (struct conn *cn = s->replying; cn != NULL; cn = cn->next) {
            if (!cn->shut && cn->fd >= 0) {
                /* the connection's socket is MHD's, and still open: request_completed takes
                 * it off the list before MHD closes it */
                shutdown(cn->fd, SHUT_RDWR);
                cn->shut = true;
            }
        }
    }
    bool idle = !s->busy && s->n_jobs == 0 && s->head == NULL && s->n_replying == 0;
    pthread_mutex_unlock(&s->lock);
    return idle;
}

void
mt_serve_destroy(struct mt_serve *s)
{
    if (s == NULL) {
        return;
    }
    mt_serve_stop(s, true);
    if (s->have_worker) {
        pthread_join(s->worker, NULL);
    }
    MHD_stop_daemon(s->mhd);
    mt_serve_deadline_destroy(s->deadline);
    mt_json_constraint_destroy(s->json);
    mt_session_destroy(s->session);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->lock);
    mt_serve_metrics_fini(&s->metrics);
    free(s->api_key);
    free(s->model_id);
    free(s);
}
