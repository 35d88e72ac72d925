/* SPDX-License-Identifier: MIT */
/*
 * half_close.c - an HTTP/1.1 client that half-closes, as `nc -N` and some proxies do: it sends
 * one POST, then shutdown(SHUT_WR) (no more requests, but still reading), and copies everything
 * the server sends to stdout until the server closes. curl cannot do this, so
 * tests/test_serve.sh builds this with the build's compiler.
 *
 * Usage: half_close [-q | -0] PORT PATH BODY [AUTHORIZATION]
 * Exits 0 when the server closed the connection after answering, 1 on any failure (a message on
 * stderr); the reply is never longer than 30 s in coming. -q: close the socket as soon as an
 * interim "100 Continue" has come (a client that gives up after its half-close; the server hears
 * of it only from its next write). -0: send the request as HTTP/1.0, whose half-close is a
 * client closing its connection (no interim response may be sent to it).
 */
#define _POSIX_C_SOURCE 200809L /* a standalone program: no config.h */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int
send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct timeval tv = {.tv_sec = 30};
    char head[1024];
    char buf[16384];
    ssize_t k;
    int fd;

    int quit = argc > 1 && strcmp(argv[1], "-q") == 0;
    int http10 = argc > 1 && strcmp(argv[1], "-0") == 0;
    size_t got = 0;

    argv += quit + http10;
    argc -= quit + http10;
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: half_close [-q | -0] PORT PATH BODY [AUTHORIZATION]\n");
        return 1;
    }
    sa.sin_port = htons((unsigned short)atoi(argv[1]));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        fprintf(stderr, "half_close: cannot connect to 127.0.0.1 port %s: %s\n", argv[1],
                strerror(errno));
        return 1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    snprintf(head, sizeof(head),
             "POST %s HTTP/1.%d\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             "%s%s%sContent-Length: %zu\r\n\r\n",
             argv[2], http10 ? 0 : 1, argc == 5 ? "Authorization: " : "", argc == 5 ? argv[4] : "",
             argc == 5 ? "\r\n" : "", strlen(argv[3]));
    if (send_all(fd, head, strlen(head)) != 0 || send_all(fd, argv[3], strlen(argv[3])) != 0 ||
        shutdown(fd, SHUT_WR) != 0) {
        fprintf(stderr, "half_close: cannot send the request: %s\n", strerror(errno));
        return 1;
    }
    while ((k = recv(fd, buf + (quit ? got : 0), sizeof(buf) - 1 - (quit ? got : 0), 0)) > 0) {
        fwrite(buf + (quit ? got : 0), 1, (size_t)k, stdout);
        if (quit) {
            got += (size_t)k;
            buf[got] = '\0';
            if (strstr(buf, "HTTP/1.1 100") != NULL && strstr(buf, "\r\n\r\n") != NULL) {
                close(fd);
                return 0;
            }
            if (got + 1 >= sizeof(buf)) {
                fprintf(stderr, "half_close: no interim response in the first %zu bytes\n", got);
                return 1;
            }
        }
    }
    if (quit && k == 0) {
        fprintf(stderr, "half_close: the server closed without an interim response\n");
        return 1;
    }
    if (k < 0) {
        fprintf(stderr, "half_close: reading the reply failed: %s\n", strerror(errno));
        return 1;
    }
    close(fd);
    return 0;
}
