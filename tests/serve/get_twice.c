/* SPDX-License-Identifier: MIT */
/*
 * get_twice.c - two GETs on one keep-alive connection, the second once a file exists: what a
 * client already connected is answered after the server has stopped taking connections (it
 * stops listening at SIGTERM). curl cannot wait between two requests on one connection, so
 * tests/test_serve.sh builds this with the build's compiler.
 *
 * Usage: get_twice PORT PATH TRIGGER
 * Sends `GET PATH` and prints the response, waits (up to 30 s) until the file TRIGGER exists,
 * sends `GET PATH` again on the same connection and prints that response. Exits 0 when both
 * came, 1 otherwise (a message on stderr).
 */
#define _GNU_SOURCE /* strcasestr (http_read.h); a standalone program: no config.h */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "http_read.h" /* http_read_response */

/* One GET of path on fd, its response printed; 0, or -1 with a message. */
static int
get_once(int fd, const char *path, int nth)
{
    char req[512];
    char buf[8192];

    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req) ||
        http_read_response(fd, buf, sizeof(buf)) < 0) {
        fprintf(stderr, "get_twice: GET %d of %s got no response\n", nth, path);
        return -1;
    }
    fputs(buf, stdout);
    fputs("\n", stdout);
    fflush(stdout);
    return 0;
}

int
main(int argc, char **argv)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct timeval tv = {.tv_sec = 30};
    int fd;

    if (argc != 4) {
        fprintf(stderr, "usage: get_twice PORT PATH TRIGGER\n");
        return 1;
    }
    sa.sin_port = htons((unsigned short)atoi(argv[1]));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        fprintf(stderr, "get_twice: cannot connect to 127.0.0.1 port %s\n", argv[1]);
        return 1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (get_once(fd, argv[2], 1) != 0) {
        return 1;
    }
    for (int i = 0; access(argv[3], F_OK) != 0; i++) {
        if (i == 3000) {
            fprintf(stderr, "get_twice: %s did not appear in 30 s\n", argv[3]);
            return 1;
        }
        usleep(10000);
    }
    if (get_once(fd, argv[2], 2) != 0) {
        return 1;
    }
    close(fd);
    return 0;
}
