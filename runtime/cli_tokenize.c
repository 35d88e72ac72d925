/* SPDX-License-Identifier: MIT */
/*
 * cli_tokenize.c - `moetier tokenize`: text on stdin -> ids on stdout, or ids -> text (--decode).
 *
 * The whole of stdin is one text (a trailing newline is part of it, as `echo` gives it). Ids go
 * out on one line separated by spaces; with --decode, ids (any whitespace between them) come in
 * and the exact bytes they stand for go out, with no newline added.
 */
#include <config.h>

#include "runtime/cli.h"
#include "runtime/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: moetier tokenize -m DIR [--special] [--decode]\n\n"
            "Encode the text on stdin with DIR/tokenizer.json and print the token ids on one\n"
            "line, separated by spaces.\n\n"
            "options:\n"
            "  -m, --model DIR  model directory holding tokenizer.json (or the file itself)\n"
            "  --special        recognize special tokens written in the text (<｜User｜>, ...);\n"
            "                   default: all text is plain text\n"
            "  --decode         read ids (separated by whitespace) and print their text\n"
            "  -h, --help       this help\n");
}

static char *
read_all(FILE *f, size_t *len_p)
{
    size_t cap = 1 << 16, len = 0, got;
    char *buf = malloc(cap);

    if (buf == NULL) {
        return NULL;
    }
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    buf[len] = 0;
    *len_p = len;
    return buf;
}

static int
decode_stdin(struct mt_tokenizer *tok, const char *in)
{
    int32_t *ids = NULL;
    size_t n = 0, cap = 0, len;
    char *text = NULL, *end;
    const char *p = in;
    int rc = 1;

    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',') {
            p++;
        }
        if (*p == 0) {
            break;
        }
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno != 0 || v < INT32_MIN || v > INT32_MAX) {
            fprintf(stderr, "moetier tokenize: '%.*s' is not a token id\n",
                    (int)MT_MIN(strcspn(p, " \t\r\n,"), 20), p);
            goto out;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            int32_t *ni = realloc(ids, cap * sizeof(*ni));
            if (ni == NULL) {
                fprintf(stderr, "moetier tokenize: out of memory\n");
                goto out;
            }
            ids = ni;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    if (mt_tokenizer_decode(tok, ids, n, &text, &len) != MT_OK) {
        goto out;
    }
    fwrite(text, 1, len, stdout);
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    free(text);
    free(ids);
    return rc;
}

int
mt_cli_tokenize(int argc, char **argv)
{
    const char *dir = NULL;
    bool special = false, decode = false;
    struct mt_tokenizer *tok = NULL;
    char *in = NULL;
    size_t len = 0;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if ((strcmp(argv[i], "-m") == 0 || strcmp(argv[i], "--model") == 0) &&
                   i + 1 < argc) {
            dir = argv[++i];
        } else if (strncmp(argv[i], "--model=", 8) == 0) {
            dir = argv[i] + 8;
        } else if (strcmp(argv[i], "--special") == 0) {
            special = true;
        } else if (strcmp(argv[i], "--decode") == 0) {
            decode = true;
        } else {
            fprintf(stderr, "moetier tokenize: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (dir == NULL) {
        fprintf(stderr, "moetier tokenize: -m DIR is required\n");
        usage(stderr);
        return 2;
    }
    if (mt_tokenizer_load(dir, &tok) != MT_OK) {
        return 1;
    }
    in = read_all(stdin, &len);
    if (in == NULL) {
        fprintf(stderr, "moetier tokenize: cannot read stdin\n");
        goto out;
    }
    if (decode) {
        rc = decode_stdin(tok, in);
    } else {
        int32_t *ids = NULL;
        size_t n = 0;
        if (mt_tokenizer_encode(tok, in, len, special, &ids, &n) == MT_OK) {
            for (size_t i = 0; i < n; i++) {
                printf(i ? " %d" : "%d", ids[i]);
            }
            printf("\n");
            rc = fflush(stdout) == 0 ? 0 : 1;
        }
        free(ids);
    }
out:
    free(in);
    mt_tokenizer_free(tok);
    return rc;
}
