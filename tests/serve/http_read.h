/* SPDX-License-Identifier: MIT */
/*
 * http_read.h - read one HTTP/1.1 response off a socket, for the small clients that
 * tests/test_serve.sh builds (idle_gets.c, get_twice.c). Header-only, static functions: each
 * client is one .c file compiled on its own, with no library to link.
 *
 * The including file defines _GNU_SOURCE before its first #include (strcasestr).
 */
#ifndef MT_TESTS_SERVE_HTTP_READ_H
#define MT_TESTS_SERVE_HTTP_READ_H

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Read one response (headers, then Content-Length bytes of body) from fd into buf, which it
 * leaves NUL-terminated; returns its length, or -1 on a closed or failed connection or headers
 * longer than cap - 1 bytes. A body that does not fit is cut at cap - 1 bytes. */
static ssize_t
http_read_response(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    char *end = NULL;

    while (end == NULL) {
        ssize_t k = recv(fd, buf + got, cap - 1 - got, 0);
        if (k <= 0) {
            return -1;
        }
        got += (size_t)k;
        buf[got] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end == NULL && got + 1 >= cap) {
            return -1;
        }
    }
    char save = end[2];
    end[2] = '\0'; /* search the headers only */
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    end[2] = save;
    size_t want = (size_t)(end + 4 - buf) + (cl != NULL ? strtoul(cl + 17, NULL, 10) : 0);
    while (got < want && got + 1 < cap) {
        ssize_t k = recv(fd, buf + got, cap - 1 - got, 0);
        if (k <= 0) {
            return -1;
        }
        got += (size_t)k;
        buf[got] = '\0';
    }
    return (ssize_t)got;
}

#endif /* MT_TESTS_SERVE_HTTP_READ_H */
