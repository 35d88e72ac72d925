/* SPDX-License-Identifier: MIT */
/*
 * guard.c - which web pages may talk to moetier serve.
 *
 * Why: by default the server listens on 127.0.0.1 without a key, and any web page the user has
 * open can send requests to 127.0.0.1. Two attacks follow, both reported against other local
 * model servers:
 * - a cross-site request: a page on evil.example POSTs to http://127.0.0.1:8080/v1/... with a
 *   "simple" content type (text/plain), which a browser sends without asking first (no CORS
 *   preflight). The page cannot read the reply, but it spends the machine's time at will.
 * - DNS rebinding: evil.example's name is pointed at 127.0.0.1 after the page loads, so to the
 *   browser the page and the server are one origin, and the page reads every reply.
 *
 * The one idea: a browser names the page in Origin on every cross-origin request and on every
 * POST, and names the host it dialled in Host. So an Origin, where a request has one, must be
 * this server itself (http or https, then exactly the Host header's host and port), and on a
 * loopback address Host must be a loopback name (localhost, 127.0.0.0/8, [::1]), which a
 * rebound name is not. Clients that are not browsers send no Origin and the Host they dialled,
 * and pass. A connection to another of the machine's addresses (--host) may carry any Host: the
 * machine has names we cannot know. Whether a connection came in on a loopback address is the
 * server's to say per connection: one listening on 0.0.0.0 takes 127.0.0.1 too.
 *
 * Behind a reverse proxy the page's origin is the proxy's (https://chat.example.com), and the
 * Host is the proxy's upstream (127.0.0.1:8080) or the public name passed through: serve
 * --allow-origin names such an origin, which then passes both checks.
 */
#include <config.h>

#include "runtime/serve/guard.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

/* "name", "name:port", "[v6]" or "[v6]:port": is the name a loopback one? */
static bool
host_is_loopback(const char *host)
{
    char name[64];
    const char *end;
    size_t n;
    struct in_addr a4;
    struct in6_addr a6;

    if (host[0] == '[') {
        end = strchr(host, ']');
        if (end == NULL || (end[1] != '\0' && end[1] != ':')) {
            return false;
        }
        host++;
    } else {
        end = strchr(host, ':');
        end = end != NULL ? end : host + strlen(host);
    }
    n = (size_t)(end - host);
    if (n == 0 || n >= sizeof(name)) {
        return false;
    }
    memcpy(name, host, n);
    name[n] = '\0';
    if (strcasecmp(name, "localhost") == 0 || strcasecmp(name, "localhost.") == 0) {
        return true;
    }
    if (inet_pton(AF_INET, name, &a4) == 1) {
        return (ntohl(a4.s_addr) >> 24) == 127;
    }
    return inet_pton(AF_INET6, name, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* The host[:port] of an origin "scheme://host[:port]", or NULL when it is not one. */
static const char *
origin_host(const char *origin)
{
    return strncasecmp(origin, "http://", 7) == 0    ? origin + 7
           : strncasecmp(origin, "https://", 8) == 0 ? origin + 8
                                                     : NULL;
}

bool
mt_serve_guard_origin_ok(const char *origin)
{
    const char *h = origin_host(origin);

    return h != NULL && h[0] != '\0' && h[0] != ':' && strpbrk(h, "/?#@ ") == NULL;
}

enum mt_serve_guard
mt_serve_guard_check(const char *host, const char *origin, bool loopback,
                     const char *const *allowed, int n_allowed)
{
    bool host_allowed = false;
    bool origin_allowed = false;

    /* a page served through a proxy (--allow-origin): its origin, and its name as the Host a
     * proxy that passes the Host through sends */
    for (int i = 0; i < n_allowed; i++) {
        const char *ah = origin_host(allowed[i]);

        origin_allowed = origin_allowed || (origin != NULL && strcasecmp(origin, allowed[i]) == 0);
        host_allowed = host_allowed || (host != NULL && ah != NULL && strcasecmp(host, ah) == 0);
    }
    if (loopback && host != NULL && !host_is_loopback(host) && !host_allowed) {
        return MT_SERVE_GUARD_BAD_HOST;
    }
    if (origin == NULL || origin_allowed) {
        return MT_SERVE_GUARD_OK;
    }
    /* "null" (a sandboxed frame, a file: page) and a missing Host cannot be this server */
    const char *rest = origin_host(origin);
    if (rest == NULL || host == NULL || strcasecmp(rest, host) != 0) {
        return MT_SERVE_GUARD_CROSS_ORIGIN;
    }
    return MT_SERVE_GUARD_OK;
}
