/* SPDX-License-Identifier: MIT */
/*
 * cli_tokenize.c - `moetier tokenize`: text on stdin -> ids on stdout, or ids -> text (--decode).
 *
 * The whole of stdin is one text (a trailing newline is part of it, as `echo` gives it). Ids go
 * out on one line separated by spaces; with --decode, ids (any whitespace between them) come in
 * and the exact bytes they stand for go out, with no newline added. Commas may separate ids too,
 * so a --prompt-ids list decodes as it is.
 */
#include <config.h>

#include "runtime/cli/cli.h"
#include "runtime/cli/cli_common.h"
#include "runtime/text/tokenizer.h"

#include <getopt.h>
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
            "  --decode         read ids (separated by whitespace or commas) and print their text\n"
            "                   (special tokens' text included: --special changes nothing there)\n"
            "  -h, --help       this help\n");
}

static const struct mt_cli cli = {"tokenize", usage};

static int
decode_stdin(struct mt_tokenizer *tok, const char *in, size_t in_len)
{
    int32_t *ids = NULL;
    size_t n = 0, len;
    char *text = NULL;
    int rc = 1;

    if (!mt_cli_parse_ids(&cli, "the input", in, in_len, &ids, &n)) {
        return 1;
    }
    if (mt_tokenizer_decode(tok, ids, n, &text, &len) == MT_OK) {
        fwrite(text, 1, len, stdout);
        rc = mt_cli_flush_stdout(&cli) ? 0 : 1;
    }
    free(text);
    free(ids);
    return rc;
}

int
mt_cli_tokenize(int argc, char **argv)
{
    enum { OPT_SPECIAL = 256, OPT_DECODE };
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"special", no_argument, NULL, OPT_SPECIAL},
        {"decode", no_argument, NULL, OPT_DECODE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL;
    bool special = false, decode = false;
    struct mt_tokenizer *tok = NULL;
    char *in = NULL;
    size_t len = 0;
    int rc = 1;
    int opt;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":m:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'm':
            dir = optarg;
            break;
        case OPT_SPECIAL:
            special = true;
            break;
        case OPT_DECODE:
            decode = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return mt_cli_bad_option(&cli, opt, argv);
        }
    }
    if (optind < argc) {
        return mt_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
    }
    if (dir == NULL) {
        return mt_cli_usage_error(&cli, "-m DIR is required");
    }
    if (mt_tokenizer_load(dir, &tok) != MT_OK) {
        return 1;
    }
    if (!mt_cli_read_input(&cli, decode ? "ids" : "text", "-", &in, &len)) {
        goto out;
    }
    if (decode) {
        rc = decode_stdin(tok, in, len);
    } else {
        int32_t *ids = NULL;
        size_t n = 0;
        if (mt_tokenizer_encode(tok, in, len, special, &ids, &n) == MT_OK) {
            for (size_t i = 0; i < n; i++) {
                printf(i ? " %d" : "%d", ids[i]);
            }
            printf("\n");
            rc = mt_cli_flush_stdout(&cli) ? 0 : 1;
        }
        free(ids);
    }
out:
    free(in);
    mt_tokenizer_destroy(tok);
    return rc;
}
