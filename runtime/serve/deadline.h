/* SPDX-License-Identifier: MIT */
/*
 * deadline.h - while the server is crowded, a connection must deliver a whole request (headers
 * and body) within a deadline of becoming ready for one, or its socket is shut down
 * (deadline.c says why).
 *
 * The server tells it of each connection's life: opened, its request arrived whole, it waits for
 * the next request (after a response, on keep-alive), closed. A thread of its own sweeps the
 * connections twice a second; mt_serve_deadline_sweep is that pass, for tests.
 */
#ifndef MT_SERVE_DEADLINE_H
#define MT_SERVE_DEADLINE_H

#include "runtime/base/status.h"

#include <stdbool.h>

struct mt_serve_deadline;
struct mt_serve_deadline_conn;

/*
 * seconds: the deadline (> 0); slots: how many connections the server takes at once. The watch
 * applies while at least half of the slots are open, so an idle keep-alive connection of a quiet
 * server keeps its longer idle time. With thread false nothing sweeps but the caller.
 */
mt_status_t mt_serve_deadline_create(unsigned seconds, int slots, bool thread,
                                     struct mt_serve_deadline **out);

/* Stops the sweeping thread and frees d; every connection must have been closed. NULL is fine. */
void mt_serve_deadline_destroy(struct mt_serve_deadline *d);

/* A connection on socket fd opened, ready for its first request; NULL where no memory is left
 * (that one is then not watched; the calls below accept NULL). */
struct mt_serve_deadline_conn *mt_serve_deadline_open(struct mt_serve_deadline *d, int fd);

/* Its request arrived whole: no deadline while it is answered, however long that takes. */
void mt_serve_deadline_arrived(struct mt_serve_deadline *d, struct mt_serve_deadline_conn *c);

/* Its response is done and it waits for the next request: the clock starts again. */
void mt_serve_deadline_waiting(struct mt_serve_deadline *d, struct mt_serve_deadline_conn *c);

/* It closed (call before its socket is closed, so that no sweep touches a reused number). */
void mt_serve_deadline_close(struct mt_serve_deadline *d, struct mt_serve_deadline_conn *c);

/* Whether a connection it shut down has not closed yet: libmicrohttpd then logs that a client
 * closed a request half-sent, a line a cut connection need not add to the summary's. */
bool mt_serve_deadline_cut_pending(struct mt_serve_deadline *d);

/* The monotonic clock the stamps are taken on, in milliseconds. */
long long mt_serve_deadline_now_ms(void);

/* One sweep as of now_ms: shuts down each late connection (once); returns how many it did. */
int mt_serve_deadline_sweep(struct mt_serve_deadline *d, long long now_ms);

#endif
