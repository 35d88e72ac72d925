/* SPDX-License-Identifier: MIT */
/*
 * deadline.c - a deadline for a whole request while the server is crowded.
 *
 * Why: the server takes --queue + 64 connections at once, each with a thread of libmicrohttpd,
 * and that library's only clock is an idle timeout that every received byte restarts. A client
 * that opens all those connections and sends each a header byte every minute (a "slowloris"), or
 * a body byte at a time, holds every slot for ever: no other client gets in, and libmicrohttpd
 * 0.9 has no deadline for a request's headers. Here, once half of the slots are open, a
 * connection that has not delivered a whole request within the deadline of becoming ready for
 * one (opened, or done with its previous response) has its socket shut down; its own thread then
 * reads the end of the stream and closes it as if the client had. A request that arrived is never
 * cut, however long it waits in the queue or generates, and a quiet server keeps its idle
 * keep-alive connections for their whole idle time (a crowded one closes them too, once idle
 * for the deadline: the next request's clock runs from the end of the previous answer).
 *
 * The sockets are libmicrohttpd's: shutdown() ends the stream without closing the descriptor, and
 * a connection leaves the list (under the lock the sweep holds) before libmicrohttpd closes it, so
 * a sweep never touches a number the system has given to another file.
 */
#include <config.h>

#include "runtime/serve/deadline.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#define SWEEP_MS 500 /* the thread's pass; a late connection is cut within half a second */
#define LOG_EVERY_MS 60000LL /* at most one line a minute, however many are cut */

struct mt_serve_deadline_conn {
    int fd;
    bool waiting;    /* no whole request yet since `since` */
    bool cut;        /* shut down already */
    long long since; /* ms: when it became ready for a request */
    struct mt_serve_deadline_conn *prev, *next;
};

struct mt_serve_deadline {
    long long limit_ms;
    int slots;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* stopping */
    struct mt_serve_deadline_conn *head;
    int n_open;
    int n_cut_open;      /* shut down, not yet closed */
    long long n_cut;     /* shut down since the start */
    int n_cut_unlogged;  /* ... of which not yet in a warning */
    long long logged_at; /* ms of the last warning, 0: never */
    bool stopping;
    bool have_thread;
    pthread_t thread;
};

/* The warning, at most once a minute: how many were cut since the start. */
static void
log_cuts(const struct mt_serve_deadline *d, long long total)
{
    mt_log_warn("serve: %lld connection%s closed so far that sent no whole request within %lld s "
                "while %d or more of the %d connection slots were open (slow or stalled clients)",
                total, total == 1 ? "" : "s", d->limit_ms / 1000, (d->slots + 1) / 2, d->slots);
}

long long
mt_serve_deadline_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *
sweeper_main(void *arg)
{
    struct mt_serve_deadline *d = arg;

    pthread_mutex_lock(&d->lock);
    while (!d->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += SWEEP_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        if (pthread_cond_timedwait(&d->wake, &d->lock, &until) == ETIMEDOUT && !d->stopping) {
            pthread_mutex_unlock(&d->lock);
            mt_serve_deadline_sweep(d, mt_serve_deadline_now_ms());
            pthread_mutex_lock(&d->lock);
        }
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

mt_status_t
mt_serve_deadline_create(unsigned seconds, int slots, bool thread, struct mt_serve_deadline **out)
{
    struct mt_serve_deadline *d;
    pthread_condattr_t ca;
    int ret;

    if (seconds == 0 || slots <= 0) {
        return mt_fail(MT_ERR_INVAL, 0, "request deadline: %u s over %d slots", seconds, slots);
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the request deadline");
    }
    d->limit_ms = (long long)seconds * 1000;
    d->slots = slots;
    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the timed wait on the stamps' clock */
    pthread_cond_init(&d->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (thread) {
        ret = pthread_create(&d->thread, NULL, sweeper_main, d);
        if (ret != 0) {
            mt_serve_deadline_destroy(d);
            return mt_fail(MT_ERR_NOMEM, ret, "cannot start the request deadline's thread");
        }
        d->have_thread = true;
    }
    *out = d;
    return MT_OK;
}

void
mt_serve_deadline_destroy(struct mt_serve_deadline *d)
{
    if (d == NULL) {
        return;
    }
    if (d->have_thread) {
        pthread_mutex_lock(&d->lock);
        d->stopping = true;
        pthread_cond_signal(&d->wake);
        pthread_mutex_unlock(&d->lock);
        pthread_join(d->thread, NULL);
    }
    if (d->n_cut_unlogged > 0) { /* the last minute's, not yet told */
        log_cuts(d, d->n_cut);
    }
    /* a connection libmicrohttpd did not report closed (it reports every one) is only freed */
    while (d->head != NULL) {
        struct mt_serve_deadline_conn *c = d->head;
        d->head = c->next;
        free(c);
    }
    pthread_cond_destroy(&d->wake);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

struct mt_serve_deadline_conn *
mt_serve_deadline_open(struct mt_serve_deadline *d, int fd)
{
    struct mt_serve_deadline_conn *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    c->fd = fd;
    c->waiting = true;
    c->since = mt_serve_deadline_now_ms();
    pthread_mutex_lock(&d->lock);
    c->next = d->head;
    if (d->head != NULL) {
        d->head->prev = c;
    }
    d->head = c;
    d->n_open++;
    pthread_mutex_unlock(&d->lock);
    return c;
}

void
mt_serve_deadline_arrived(struct mt_serve_deadline *d, struct mt_serve_deadline_conn *c)
{
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&d->lock);
    c->waiting = false;
    pthread_mutex_unlock(&d->lock);
}

void
mt_serve_deadline_waiting(struct mt_serve_deadline *d, struct mt_serve_deadline_conn *c)
{
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&d->lock);
    c->waiting = true;
    c->since = mt_serve_deadline_now_ms();
    pthread_mutex_unlock(&d->lock);
}

void
mt_serve_deadline_close(struct mt_serve_deadline *d, struct mt_serve_deadline_conn *c)
{
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&d->lock);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        d->head = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    d->n_open--;
    d->n_cut_open -= c->cut;
    pthread_mutex_unlock(&d->lock);
    free(c);
}

bool
mt_serve_deadline_cut_pending(struct mt_serve_deadline *d)
{
    bool pending;

    if (d == NULL) {
        return false;
    }
    pthread_mutex_lock(&d->lock);
    pending = d->n_cut_open > 0;
    pthread_mutex_unlock(&d->lock);
    return pending;
}

int
mt_serve_deadline_sweep(struct mt_serve_deadline *d, long long now_ms)
{
    int n_cut = 0;
    bool tell = false;

    pthread_mutex_lock(&d->lock);
    if (2 * d->n_open >= d->slots) {
        for (struct mt_serve_deadline_conn *c = d->head; c != NULL; c = c->next) {
            if (c->waiting && !c->cut && now_ms - c->since >= d->limit_ms) {
                shutdown(c->fd, SHUT_RDWR);
                c->cut = true;
                n_cut++;
                d->n_cut_open++;
            }
        }
    }
    d->n_cut += n_cut;
    d->n_cut_unlogged += n_cut;
    if (d->n_cut_unlogged > 0 && (d->logged_at == 0 || now_ms - d->logged_at >= LOG_EVERY_MS)) {
        tell = true;
        d->n_cut_unlogged = 0;
        d->logged_at = now_ms;
    }
    long long total = d->n_cut;
    pthread_mutex_unlock(&d->lock);
    if (tell) {
        log_cuts(d, total);
    }
    return n_cut;
}
