/* SPDX-License-Identifier: MIT */
/*
 * idle_gets.c - a crowd of idle keep-alive clients: it opens N connections one after another,
 * sends one `GET /health` on each and reads the answer, keeps the connections the server left
 * open, and prints "kept K closed C" (C: answers with "Connection: close"). Then it holds them
 * for HOLD seconds and prints "open O after HOLD s" (how many the server had not closed by then).
 * tests/test_serve.sh runs it in the background and sends a generation request meanwhile.
 *
 * Usage: idle_gets PORT N HOLD
 * Exits 0 when every GET was answered 200, 1 otherwise (a message on stderr).
 */
#define _GNU_SOURCE /* strcasestr, here and in http_read.h; a standalone program: no config.h */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "http_read.h" /* http_read_response */

#define MAX_CONNS 256

int
main(int argc, char **argv)
{
    static const char req[] = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct timeval tv = {.tv_sec = 10};
    int fds[MAX_CONNS];
    int kept = 0;
    int closed = 0;
    char buf[8192];

    if (argc != 4) {
        fprintf(stderr, "usage: idle_gets PORT N HOLD\n");
        return 1;
    }
    int n = atoi(argv[2]);
    int hold = atoi(argv[3]);
    if (n < 1 || n > MAX_CONNS || hold < 0) {
        fprintf(stderr, "idle_gets: N must be 1..%d and HOLD >= 0\n", MAX_CONNS);
        return 1;
    }
    sa.sin_port = htons((unsigned short)atoi(argv[1]));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 || /* connect too */
            connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
            send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(req) - 1)) {
            fprintf(stderr, "idle_gets: connection %d: cannot send the request\n", i + 1);
            return 1;
        }
        if (http_read_response(fd, buf, sizeof(buf)) < 0 || strncmp(buf, "HTTP/1.1 200", 12) != 0) {
            fprintf(stderr, "idle_gets: connection %d: no 200 answer\n", i + 1);
            return 1;
        }
        char *body = strstr(buf, "\r\n\r\n");
        body[2] = '\0'; /* the headers only */
        if (strcasestr(buf, "\r\nConnection: close") != NULL) {
            close(fd);
            closed++;
        } else {
            fds[kept++] = fd;
        }
    }
    printf("kept %d closed %d\n", kept, closed);
    fflush(stdout);
    sleep((unsigned)hold);
    int still_open = 0;
    for (int i = 0; i < kept; i++) {
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        /* closed by the server: readable, and the read ends (0) or fails (a reset) */
        if (!(poll(&p, 1, 0) == 1 && recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT) <= 0)) {
            still_open++;
        }
        close(fds[i]);
    }
    printf("open %d after %d s\n", still_open, hold);
    return 0;
}
