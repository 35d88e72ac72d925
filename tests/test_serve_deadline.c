/* SPDX-License-Identifier: MIT */
/*
 * test_serve_deadline.c - the request deadline of moetier serve (runtime/serve/deadline.h) on
 * socket pairs: which connections a sweep shuts down, and when. The sweeps are called with
 * chosen times (no thread), so nothing here waits; test_serve.sh runs it inside the server.
 */
#include <config.h>

#include "runtime/serve/deadline.h"
#include "tests/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define N 4

/* Whether our end of pair p was shut down: the other end then reads end of stream at once. */
static bool
was_cut(const int p[2])
{
    struct pollfd pfd = {.fd = p[1], .events = POLLIN};
    char b;

    return poll(&pfd, 1, 0) == 1 && recv(p[1], &b, 1, MSG_DONTWAIT) == 0;
}

/* A socket pair, or Bail out. */
static void
pair_make(int p[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, p) != 0) {
        tap_bail_out("socketpair failed");
    }
}

/*
 * Keep-alive under a crowd: a connection whose request arrived is never cut, and once its
 * response is done (waiting again) it has the deadline from then for its next request.
 */
static void
test_keepalive_cut(long long S)
{
    struct mt_serve_deadline *d = NULL;
    int p[2];

    if (mt_serve_deadline_create(15, 1, false, &d) != MT_OK) {
        tap_ok(false, "created (15 s, 1 slot)");
        return;
    }
    pair_make(p);
    struct mt_serve_deadline_conn *c = mt_serve_deadline_open(d, p[0]);
    long long t0 = mt_serve_deadline_now_ms();
    mt_serve_deadline_arrived(d, c);
    int n0 = mt_serve_deadline_sweep(d, t0 + 10 * S);
    mt_serve_deadline_waiting(d, c);
    long long tw = mt_serve_deadline_now_ms();
    int n1 = mt_serve_deadline_sweep(d, tw + S);
    tap_ok(n0 == 0 && n1 == 1 && was_cut(p),
           "1 of 1 slot open: answered, then waiting again, it is cut a deadline after its "
           "response (%d, %d)", n0, n1);
    mt_serve_deadline_close(d, c);
    mt_serve_deadline_destroy(d);
    close(p[0]);
    close(p[1]);
}

/*
 * An odd count of slots: the watch starts at more than half of them (4 of 7), as the warning
 * says ("(slots + 1) / 2 or more"), not at 3 (7 / 2 rounded down).
 */
static void
test_odd_slots(long long S)
{
    struct mt_serve_deadline *d = NULL;
    struct mt_serve_deadline_conn *c[4];
    int p[4][2];

    if (mt_serve_deadline_create(15, 7, false, &d) != MT_OK) {
        tap_ok(false, "created (15 s, 7 slots)");
        return;
    }
    for (int i = 0; i < 4; i++) {
        pair_make(p[i]);
    }
    for (int i = 0; i < 3; i++) {
        c[i] = mt_serve_deadline_open(d, p[i][0]);
    }
    long long t = mt_serve_deadline_now_ms();
    int n3 = mt_serve_deadline_sweep(d, t + 10 * S);
    c[3] = mt_serve_deadline_open(d, p[3][0]);
    int n4 = mt_serve_deadline_sweep(d, mt_serve_deadline_now_ms() + 10 * S);
    tap_ok(n3 == 0 && n4 == 4, "7 slots: 3 open are not watched, 4 are (%d, then %d cut)", n3, n4);
    for (int i = 0; i < 4; i++) {
        mt_serve_deadline_close(d, c[i]);
        close(p[i][0]);
        close(p[i][1]);
    }
    mt_serve_deadline_destroy(d);
}

/*
 * A connection libmicrohttpd opened while the list could not grow (NULL) is reported to each
 * call all the same: each does nothing with it. destroy(NULL) does nothing either.
 */
static void
test_null_conn(void)
{
    struct mt_serve_deadline *d = NULL;

    if (mt_serve_deadline_create(15, 1, false, &d) != MT_OK) {
        tap_ok(false, "created (15 s, 1 slot)");
        return;
    }
    mt_serve_deadline_arrived(d, NULL);
    mt_serve_deadline_waiting(d, NULL);
    mt_serve_deadline_close(d, NULL);
    int n = mt_serve_deadline_sweep(d, mt_serve_deadline_now_ms() + 1000000);
    mt_serve_deadline_destroy(d);
    mt_serve_deadline_destroy(NULL);
    tap_ok(n == 0, "a NULL connection is let be by arrived, waiting and close (%d cut)", n);
}

/* How many lines of the captured stderr (path) hold text, so far. */
static int
lines_so_far(const char *path, const char *text)
{
    fflush(stderr);
    return tap_count_lines(path, text);
}

/*
 * The warning about cut connections: at once for the first, then at most one a minute with the
 * count since the start, and the last minute's told when the deadline is destroyed.
 */
static void
test_warnings(long long S)
{
    struct mt_serve_deadline *d = NULL;
    char path[4096];
    int p[3][2];
    int saved;

    snprintf(path, sizeof(path), "%s/stderr", tap_tmpdir());
    if (mt_serve_deadline_create(15, 1, false, &d) != MT_OK) {
        tap_ok(false, "created (15 s, 1 slot)");
        return;
    }
    saved = tap_stderr_to(path);
    mt_log_set_quiet(false);
    for (int i = 0; i < 3; i++) {
        pair_make(p[i]);
    }
    struct mt_serve_deadline_conn *c0 = mt_serve_deadline_open(d, p[0][0]);
    long long t = mt_serve_deadline_now_ms() + S;
    int n_a = mt_serve_deadline_sweep(d, t);
    int w_a = lines_so_far(path, "1 connection closed so far");
    struct mt_serve_deadline_conn *c1 = mt_serve_deadline_open(d, p[1][0]);
    int n_b = mt_serve_deadline_sweep(d, t + 30000); /* half a minute on: cut, not told */
    int w_b = lines_so_far(path, "closed so far");
    int n_c = mt_serve_deadline_sweep(d, t + 60000); /* a minute on: told, with both */
    int w_c = lines_so_far(path, "2 connections closed so far");
    struct mt_serve_deadline_conn *c2 = mt_serve_deadline_open(d, p[2][0]);
    int n_d = mt_serve_deadline_sweep(d, t + 61000);
    int w_d = lines_so_far(path, "closed so far");
    mt_serve_deadline_close(d, c0);
    mt_serve_deadline_close(d, c1);
    mt_serve_deadline_close(d, c2);
    mt_serve_deadline_destroy(d); /* tells the last one */
    int w_e = lines_so_far(path, "3 connections closed so far");
    int w_all = lines_so_far(path, "closed so far");
    /* a cut told at once is not told again when the deadline is destroyed */
    int n_f = 0;
    if (mt_serve_deadline_create(15, 1, false, &d) == MT_OK) {
        c0 = mt_serve_deadline_open(d, p[0][0]);
        n_f = mt_serve_deadline_sweep(d, mt_serve_deadline_now_ms() + S);
        mt_serve_deadline_close(d, c0);
        mt_serve_deadline_destroy(d);
    }
    int w_f = lines_so_far(path, "closed so far");
    mt_log_set_quiet(true);
    tap_stderr_restore(saved);
    tap_ok(n_a == 1 && w_a == 1, "the first cut is told at once (%d cut, %d line)", n_a, w_a);
    tap_ok(n_b == 1 && w_b == 1, "a cut half a minute later is not told yet (%d lines)", w_b);
    tap_ok(n_c == 0 && w_c == 1, "a minute after the first line, one more tells both (%d)", w_c);
    tap_ok(n_d == 1 && w_d == 2, "a cut within that minute is not told at once (%d lines)", w_d);
    tap_ok(w_e == 1 && w_all == 3, "destroy tells the last minute's cut (%d, %d lines)", w_e,
           w_all);
    tap_ok(n_f == 1 && w_f == w_all + 1,
           "a cut told at once is not told again by destroy (%d lines after %d)", w_f, w_all);
    for (int i = 0; i < 3; i++) {
        close(p[i][0]);
        close(p[i][1]);
    }
}

int
main(void)
{
    int pairs[N][2];
    struct mt_serve_deadline *d = NULL;
    struct mt_serve_deadline_conn *c[N];
    const long long S = 15000; /* the deadline, ms */
    mt_status_t st;

    tap_plan(27);
    mt_log_set_quiet(true);
    /* the stamps are CLOCK_MONOTONIC in ms: the sweep's callers (the thread, the server) and the
     * stamps must count alike, and the sweeps below are given times from this clock */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long before = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    long long now = mt_serve_deadline_now_ms();
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long after = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    tap_ok(before <= now && now <= after, "now_ms is CLOCK_MONOTONIC in ms (%lld <= %lld <= %lld)",
           before, now, after);
    for (int i = 0; i < N; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, pairs[i]) != 0) {
            tap_bail_out("socketpair failed");
        }
    }
    tap_ok(mt_serve_deadline_create(0, 8, false, &d) == MT_ERR_INVAL, "a deadline of 0 s refused");
    tap_ok(mt_serve_deadline_create(15, 0, false, &d) == MT_ERR_INVAL, "0 slots refused");

    /* 8 slots: the watch starts at 4 connections open */
    st = mt_serve_deadline_create(15, 8, false, &d);
    tap_ok(st == MT_OK, "created (15 s, 8 slots, no thread)");
    if (st != MT_OK) {
        return tap_done();
    }
    long long t0 = mt_serve_deadline_now_ms();
    for (int i = 0; i < N - 1; i++) {
        c[i] = mt_serve_deadline_open(d, pairs[i][0]);
    }
    long long t1 = mt_serve_deadline_now_ms();
    tap_ok(mt_serve_deadline_sweep(d, t1 + 10 * S) == 0 && !was_cut(pairs[0]),
           "3 of 8 slots open: nobody is cut, however long they wait");

    c[N - 1] = mt_serve_deadline_open(d, pairs[N - 1][0]);
    long long t2 = mt_serve_deadline_now_ms();
    mt_serve_deadline_arrived(d, c[1]); /* 1's request arrived: it is answered, never cut */
    tap_ok(mt_serve_deadline_sweep(d, t0 + S - 1) == 0, "4 of 8 open, none late yet");
    tap_ok(!mt_serve_deadline_cut_pending(d) && !mt_serve_deadline_cut_pending(NULL),
           "nothing cut, nothing pending");

    int n = mt_serve_deadline_sweep(d, t2 + S);
    tap_ok(n == 3, "4 of 8 open: the 3 waiting past the deadline are cut (%d)", n);
    tap_ok(was_cut(pairs[0]) && was_cut(pairs[2]) && was_cut(pairs[3]),
           "their sockets read end of stream");
    char byte;
    tap_ok(recv(pairs[0][0], &byte, 1, MSG_DONTWAIT) == 0 &&
               recv(pairs[2][0], &byte, 1, MSG_DONTWAIT) == 0,
           "our ends read end of stream too (what wakes libmicrohttpd's reading thread)");
    tap_ok(!was_cut(pairs[1]), "the one whose request arrived is not cut");
    tap_ok(mt_serve_deadline_cut_pending(d), "cut connections not yet closed are pending");
    tap_ok(mt_serve_deadline_sweep(d, t2 + 2 * S) == 0, "a cut connection is not cut again");

    /* 1 answered, waits for its next request: its clock starts again from now (20 ms after
       it opened, so a clock that did not restart would be late at t3 + S - 1) */
    usleep(20000);
    long long t3 = mt_serve_deadline_now_ms();
    mt_serve_deadline_waiting(d, c[1]);
    long long t4 = mt_serve_deadline_now_ms();
    tap_ok(mt_serve_deadline_sweep(d, t3 + S - 1) == 0 && !was_cut(pairs[1]),
           "keep-alive: the clock restarts when the response is done");
    /* the others closed: 1 of 8 open, no watch */
    for (int i = 0; i < N; i++) {
        if (i != 1) {
            mt_serve_deadline_close(d, c[i]);
        }
    }
    tap_ok(mt_serve_deadline_sweep(d, t4 + S) == 0 && !was_cut(pairs[1]),
           "after the crowd left (1 of 8 open), a late idle connection keeps its slot");
    tap_ok(!mt_serve_deadline_cut_pending(d), "once the cut ones closed, none is pending");
    mt_serve_deadline_close(d, c[1]);
    mt_serve_deadline_destroy(d);

    /* with the thread: a connection left late is cut by it within a sweep (0.5 s) */
    st = mt_serve_deadline_create(1, 1, true, &d);
    tap_ok(st == MT_OK, "created with its thread (1 s, 1 slot)");
    if (st == MT_OK) {
        int p[2];
        struct pollfd pfd;
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, p) != 0) {
            tap_bail_out("socketpair failed");
        }
        struct mt_serve_deadline_conn *one = mt_serve_deadline_open(d, p[0]);
        pfd.fd = p[1];
        pfd.events = POLLIN;
        int r = poll(&pfd, 1, 10000); /* 10 s: room for a loaded machine */
        char b;
        tap_ok(r == 1 && recv(p[1], &b, 1, MSG_DONTWAIT) == 0,
               "the thread shuts a late connection down (poll %d)", r);
        mt_serve_deadline_close(d, one);
        mt_serve_deadline_destroy(d);
        close(p[0]);
        close(p[1]);
    }
    test_keepalive_cut(S);
    test_odd_slots(S);
    test_null_conn();
    test_warnings(S);
    for (int i = 0; i < N; i++) {
        close(pairs[i][0]);
        close(pairs[i][1]);
    }
    return tap_done();
}
