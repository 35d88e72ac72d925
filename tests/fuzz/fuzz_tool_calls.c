/* SPDX-License-Identifier: MIT */
/*
 * fuzz_tool_calls.c - libFuzzer target: an arbitrary byte string as a model's reply, whose tool
 * calls moetier serve parses back into OpenAI's tool_calls.
 *
 * The one idea: what mt_chat_parse_tool_calls() accepts is what a client gets, so it must hold:
 * the content ends where the calls block starts, every name is a non-empty string, and every
 * arguments text is one JSON object. And rendered
 * again by chat.c (the next turn's prompt, as a client sends the calls back), the calls parse to
 * the same names and JSON-equal arguments, unless a string holds a DSML marker or a parameter's
 * head (the format has no escapes for those) or a NUL byte. A violation traps, so libFuzzer
 * reports it as a crash. Build and run: tests/fuzz/run.sh.
 *
 * fuzz-sources: runtime/text/chat_parse.c runtime/text/chat.c runtime/text/tokenizer.c
 * fuzz-sources: runtime/base/file_util.c runtime/base/status.c runtime/base/out_file.c
 * fuzz-sources: runtime/base/json_num.c
 * fuzz-pkg: libpcre2-8
 */
#include <config.h>

#include "runtime/base/status.h"
#include "runtime/text/chat.h"

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* arguments as a client reads them: NUL bytes in strings and integers past int64 are JSON */
#define LOAD_FLAGS (JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL)

static const char eos[] = "<｜end▁of▁sentence｜>";

/* Whether s (a call's name or arguments text) is outside what the format can carry back. */
static bool
unescapable(const char *s)
{
    return strstr(s, "｜DSML｜") != NULL || strstr(s, "string=") != NULL ||
           strstr(s, "\\u0000") != NULL;
}

/* The calls of p rendered as the next turn's assistant message, then parsed again. */
static void
round_trip(const struct mt_chat_parsed_calls *p)
{
    struct mt_chat_msg msgs[2] = {
        {.role = MT_CHAT_USER, .content = "q"},
        {.role = MT_CHAT_ASSISTANT, .tool_calls = p->calls, .n_tool_calls = p->n},
    };
    struct mt_chat_parsed_calls again;
    char *text = NULL;

    for (size_t i = 0; i < p->n; i++) {
        if (unescapable(p->calls[i].name) || unescapable(p->calls[i].arguments)) {
            return;
        }
    }
    char *prefix = NULL;
    if (mt_chat_render(msgs, 1, false, &prefix) != MT_OK ||
        mt_chat_render(msgs, 2, false, &text) != MT_OK) {
        __builtin_trap(); /* arguments the parser made must render */
    }
    /* the reply: after the user turn's text, before the end of sentence (found by length, as
     * a value may hold any marker's text) */
    size_t pl = strlen(prefix), tl = strlen(text), el = strlen(eos);
    if (tl < pl + el || memcmp(text, prefix, pl) != 0 || memcmp(text + tl - el, eos, el) != 0 ||
        mt_chat_parse_tool_calls(text + pl, tl - pl - el, &again) != MT_OK || again.n != p->n ||
        again.content_len != 0) {
        __builtin_trap();
    }
    free(prefix);
    for (size_t i = 0; i < p->n; i++) {
        json_t *a = json_loads(p->calls[i].arguments, LOAD_FLAGS, NULL);
        json_t *b = json_loads(again.calls[i].arguments, LOAD_FLAGS, NULL);
        if (strcmp(p->calls[i].name, again.calls[i].name) != 0 || !json_equal(a, b)) {
            __builtin_trap();
        }
        json_decref(a);
        json_decref(b);
    }
    mt_chat_parsed_calls_fini(&again);
    free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *start = mt_chat_tool_calls_start;
    struct mt_chat_parsed_calls p;

    mt_log_set_quiet(true);
    if (mt_chat_parse_tool_calls(text, size, &p) != MT_OK) {
        return 0;
    }
    if (p.n == 0) {
        if (p.content_len != size || p.calls != NULL) {
            __builtin_trap();
        }
        return 0;
    }
    if (p.content_len + strlen(start) > size ||
        memcmp(text + p.content_len, start, strlen(start)) != 0 ||
        memmem(text, p.content_len, start, strlen(start)) != NULL) {
        __builtin_trap(); /* the content ends at the first start marker */
    }
    for (size_t i = 0; i < p.n; i++) {
        json_t *args = json_loads(p.calls[i].arguments, LOAD_FLAGS, NULL);
        if (p.calls[i].name[0] == '\0' || !json_is_object(args)) {
            __builtin_trap();
        }
        json_decref(args);
    }
    if (memchr(text, 0, size) == NULL) {
        round_trip(&p);
    }
    mt_chat_parsed_calls_fini(&p);
    return 0;
}
