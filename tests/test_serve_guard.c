/* SPDX-License-Identifier: MIT */
/*
 * test_serve_guard.c - which requests moetier serve takes by their Host and Origin headers
 * (runtime/serve/guard.h): its own page and clients that are not browsers pass; another site's
 * page and a name pointed at 127.0.0.1 (DNS rebinding) are refused.
 */
#include <config.h>

#include "runtime/serve/guard.h"
#include "tests/tap.h"

#include <stdio.h>
#include <string.h>

static const char *proxy[] = {"https://chat.example.com", "http://box.lan:3000"};
static int n_proxy; /* how many of proxy[] are allowed (--allow-origin) */

static void
check(const char *host, const char *origin, bool loopback, enum mt_serve_guard want,
      const char *what)
{
    enum mt_serve_guard got = mt_serve_guard_check(host, origin, loopback, proxy, n_proxy);

    tap_ok(got == want, "%s: Host %s, Origin %s, %s: %d (want %d)", what,
           host != NULL ? host : "(none)", origin != NULL ? origin : "(none)",
           loopback ? "loopback" : "public", (int)got, (int)want);
}

int
main(void)
{
    const enum mt_serve_guard ok = MT_SERVE_GUARD_OK, bad_host = MT_SERVE_GUARD_BAD_HOST,
                              cross = MT_SERVE_GUARD_CROSS_ORIGIN;

    tap_plan(0);
    /* clients that are not browsers: no Origin */
    check("127.0.0.1:8080", NULL, true, ok, "curl");
    check("localhost:8080", NULL, true, ok, "a client dialling localhost");
    check("LocalHost", NULL, true, ok, "localhost, any case, no port");
    check("127.1.2.3:80", NULL, true, ok, "anywhere in 127.0.0.0/8");
    check("[::1]:8080", NULL, true, ok, "IPv6 loopback");
    check(NULL, NULL, true, ok, "HTTP/1.0 without Host");
    /* the server's own chat page */
    check("127.0.0.1:8080", "http://127.0.0.1:8080", true, ok, "its own page");
    check("localhost:8080", "http://localhost:8080", true, ok, "its own page at localhost");
    check("[::1]:8080", "http://[::1]:8080", true, ok, "its own page over IPv6");
    check("box.lan:8080", "https://box.lan:8080", false, ok, "its page through TLS, public");
    /* another site's page */
    check("127.0.0.1:8080", "http://evil.example", true, cross, "a cross-site POST");
    check("127.0.0.1:8080", "http://127.0.0.1:3000", true, cross, "another port's page");
    check("127.0.0.1:8080", "http://127.0.0.1:80801", true, cross, "a longer port");
    check("127.0.0.1:8080", "null", true, cross, "a sandboxed frame or a file: page");
    check("127.0.0.1:8080", "", true, cross, "an empty Origin");
    check(NULL, "http://127.0.0.1:8080", true, cross, "an Origin without a Host");
    check("box.lan:8080", "http://evil.example", false, cross, "a cross-site POST, public");
    /* DNS rebinding: the page's own name pointed at 127.0.0.1 */
    check("evil.example:8080", "http://evil.example:8080", true, bad_host, "a rebound name");
    check("evil.example:8080", NULL, true, bad_host, "a rebound name, GET without Origin");
    check("127.0.0.1.evil.example", NULL, true, bad_host, "a name that starts like 127.0.0.1");
    check("localhost.evil.example:8080", NULL, true, bad_host, "a name that starts like localhost");
    check("[::1", NULL, true, bad_host, "an unclosed IPv6 bracket");
    check("[::1]x", NULL, true, bad_host, "junk after the bracket");
    check(":8080", NULL, true, bad_host, "no name");
    /* a name longer than the 63 bytes host_is_loopback copies is refused, not copied past it */
    char long_host[300];
    memset(long_host, 'a', sizeof(long_host));
    snprintf(long_host + 250, sizeof(long_host) - 250, ".example:8080");
    check(long_host, NULL, true, bad_host, "a 263-byte name");
    check("[0000:0000:0000:0000:0000:0000:0000:0001]:8080", NULL, true, ok,
          "IPv6 loopback written out in full (39 bytes)");
    check("box.lan:8080", NULL, false, ok, "any name on a public address");
    /* loopback is localhost (and its fully qualified "localhost."), 127.0.0.0/8 and ::1 only */
    check("localhost.:8080", NULL, true, ok, "the fully qualified localhost.");
    check("10.0.0.1:8080", NULL, true, bad_host, "a private address that is not loopback");
    check("1.2.3.4:8080", NULL, true, bad_host, "an address below 127.0.0.0/8");
    check("[::2]:8080", NULL, true, bad_host, "an IPv6 address that is not ::1");
    check("[::1]", NULL, true, ok, "IPv6 loopback without a port");
    check("128.0.0.1:8080", NULL, true, bad_host, "an address above 127.0.0.0/8");
    /* scheme and host compare in any case, as browsers and RFC 3986 have them */
    check("127.0.0.1:8080", "HTTP://127.0.0.1:8080", true, ok, "its own page, scheme in capitals");
    check("LOCALHOST:8080", "http://localhost:8080", true, ok, "its own page, Host in capitals");
    /* behind a reverse proxy: refused until --allow-origin names the proxy's page */
    check("127.0.0.1:8080", "https://chat.example.com", true, cross, "a proxy's page, not allowed");
    check("chat.example.com", "https://chat.example.com", true, bad_host,
          "a proxy passing its Host, not allowed");
    n_proxy = 2;
    check("127.0.0.1:8080", "https://chat.example.com", true, ok, "a proxy's page, allowed");
    check("chat.example.com", "https://chat.example.com", true, ok,
          "a proxy passing its Host, allowed");
    check("CHAT.example.com", "HTTPS://chat.EXAMPLE.com", true, ok, "... in any case");
    check("127.0.0.1:8080", "HTTPS://CHAT.example.com", true, ok,
          "an allowed origin in other case, Host the proxy's upstream");
    check("box.lan:3000", "http://box.lan:3000", true, ok, "an allowed origin with a port");
    check("127.0.0.1:8080", "https://chat.example.com:444", true, cross, "another port of it");
    check("127.0.0.1:8080", "http://chat.example.com", true, cross, "another scheme of it");
    check("evil.example:8080", "http://evil.example:8080", true, bad_host,
          "a rebound name, with origins allowed");
    check("chat.example", NULL, true, bad_host, "a Host that is a prefix of an allowed name");
    check(NULL, NULL, true, ok, "HTTP/1.0 without Host, with origins allowed");
    check("127.0.0.1:8080", "https://chat.example.co", true, cross,
          "an Origin that is a prefix of an allowed one");
    /* what --allow-origin takes */
    static const struct {
        const char *s;
        bool ok;
    } forms[] = {{"https://chat.example.com", true}, {"http://127.0.0.1:3000", true},
                 {"http://[::1]:8080", true},        {"chat.example.com", false},
                 {"https://", false},                {"https://a/b", false},
                 {"https://a?x", false},             {"https://u@a", false},
                 {"ftp://a", false},                 {"https://:80", false},
                 {"https://a b", false},             {"https://a#x", false},
                 {"HTTPS://A.example", true}};
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        tap_ok(mt_serve_guard_origin_ok(forms[i].s) == forms[i].ok, "--allow-origin '%s': %s",
               forms[i].s, forms[i].ok ? "taken" : "refused");
    }
    return tap_done();
}
