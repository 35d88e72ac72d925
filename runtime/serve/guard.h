/* SPDX-License-Identifier: MIT */
/*
 * guard.h - which web pages may talk to moetier serve: a request's Host and Origin headers
 * checked against the server itself (guard.c says why).
 */
#ifndef MT_SERVE_GUARD_H
#define MT_SERVE_GUARD_H

#include <stdbool.h>

enum mt_serve_guard {
    MT_SERVE_GUARD_OK,
    MT_SERVE_GUARD_BAD_HOST,     /* on a loopback address, a Host that is no loopback name */
    MT_SERVE_GUARD_CROSS_ORIGIN, /* an Origin that is not this server's */
};

/*
 * host and origin: the request's headers, NULL where absent; loopback: the connection came in on
 * a loopback address; allowed[n_allowed]: origins to trust besides the server's own (serve
 * --allow-origin, each "http[s]://host[:port]"), whose host[:port] is then a good Host too. A
 * request without an Origin (every client that is not a browser) passes the Origin check; one
 * without a Host (HTTP/1.0) passes the Host check.
 */
enum mt_serve_guard mt_serve_guard_check(const char *host, const char *origin, bool loopback,
                                         const char *const *allowed, int n_allowed);

/* Whether s is an origin as --allow-origin takes it: http:// or https://, a host, an optional
 * port, nothing after (no path). */
bool mt_serve_guard_origin_ok(const char *s);

#endif
