/* SPDX-License-Identifier: MIT */
/*
 * test_chat_parse.c - a reply's tool calls parsed back (runtime/text/chat_parse.c): replies
 * rendered by chat.c's encoder parse back to the calls they were made from (names, arguments as
 * JSON, the arguments' text as json.dumps writes it), and every way a block can break the format
 * (cut short anywhere, text after it, a key twice, a value that is not JSON) keeps the reply text.
 */
#include <config.h>

#include "runtime/text/chat.h"
#include "tests/tap.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char eos[] = "<｜end▁of▁sentence｜>";
static const char reply_start[] = "<｜Assistant｜></think>";

/* The reply part of a rendered conversation whose last message is the assistant's: after the
 * last "<｜Assistant｜></think>", before its end of sentence (malloc'ed). */
static char *
render_reply(const struct mt_chat_msg *msgs, size_t n)
{
    char *text = NULL, *from = NULL, *p;

    if (mt_chat_render(msgs, n, false, &text) != MT_OK) {
        return NULL;
    }
    for (p = strstr(text, reply_start); p != NULL; p = strstr(p + 1, reply_start)) {
        from = p + strlen(reply_start);
    }
    char *end = from != NULL ? strstr(from, eos) : NULL;
    char *r = end != NULL ? strndup(from, (size_t)(end - from)) : NULL;
    free(text);
    return r;
}

static bool
json_same(const char *a, const char *b)
{
    json_t *x = json_loads(a, 0, NULL), *y = json_loads(b, 0, NULL);
    bool same = x != NULL && y != NULL && json_equal(x, y);
    json_decref(x);
    json_decref(y);
    return same;
}

/* Whether text (len bytes) is refused: MT_ERR_FORMAT and nothing held. */
static bool
refused(const char *text, size_t len)
{
    struct mt_chat_parsed_calls p;
    mt_status_t st = mt_chat_parse_tool_calls(text, len, &p);
    bool r = st == MT_ERR_FORMAT && p.n == 0 && p.calls == NULL;
    if (st == MT_OK) {
        mt_chat_parsed_calls_fini(&p);
    }
    return r;
}

int
main(void)
{
    static const char weather_args[] =
        "{\"city\": \"Paris <3\\n</x>\", \"days\": 3, \"opts\": {\"unit\": \"C\", \"x\": [1.5, "
        "null]}, \"tags\": [\"a\", \"b\"], \"ok\": true, \"none\": null, \"w\": \"été\"}";
    struct mt_chat_tool_call calls[3] = {
        {"get_weather", weather_args},
        {"now", "{}"},
        {"search", "{\"q\": \"a \\\" string=\\\"true\\\">b\"}"},
    };
    struct mt_chat_msg msgs[2] = {
        {.role = MT_CHAT_USER, .content = "Weather in Paris?"},
        {.role = MT_CHAT_ASSISTANT, .content = "Let me look.", .tool_calls = calls,
         .n_tool_calls = 3},
    };
    struct mt_chat_parsed_calls p;
    char *reply;
    mt_status_t st;

    tap_plan(34);
    mt_log_set_quiet(true);

    st = mt_chat_parse_tool_calls("Hello there", 11, &p);
    tap_ok(st == MT_OK && p.n == 0 && p.content_len == 11, "a reply without calls: all text");

    reply = render_reply(msgs, 2);
    tap_ok(reply != NULL, "a reply with three calls rendered by chat.c (%zu bytes)",
           reply != NULL ? strlen(reply) : 0);
    if (reply == NULL) {
        return tap_done();
    }
    st = mt_chat_parse_tool_calls(reply, strlen(reply), &p);
    tap_ok(st == MT_OK && p.n == 3, "three calls parsed back (%zu)", p.n);
    tap_ok(st == MT_OK && p.content_len == strlen("Let me look.") &&
               memcmp(reply, "Let me look.", p.content_len) == 0,
           "the content is the text before the block");
    bool names = st == MT_OK && p.n == 3;
    bool args = names;
    for (size_t i = 0; names && i < 3; i++) {
        names = strcmp(p.calls[i].name, calls[i].name) == 0;
        args = args && json_same(p.calls[i].arguments, calls[i].arguments);
    }
    tap_ok(names, "the names, in order");
    tap_ok(args, "the arguments, as JSON: strings with '<', newlines and UTF-8; numbers, objects, "
                 "arrays, true, null; a call without any");
    tap_ok(st == MT_OK && p.n == 3 && strcmp(p.calls[0].arguments, weather_args) == 0,
           "the arguments' text as json.dumps writes it: %s", p.n == 3 ? p.calls[0].arguments : "");
    if (st == MT_OK) {
        mt_chat_parsed_calls_fini(&p);
    }

    /* cut anywhere inside the block (a reply stopped by max_tokens): never a call (a cut
     * before the whole start marker is text without a block) */
    size_t start = strlen("Let me look.") + strlen(mt_chat_tool_calls_start);
    bool all_refused = true;
    for (size_t n = start; n < strlen(reply) && all_refused; n++) {
        all_refused = refused(reply, n);
        if (!all_refused) {
            tap_diag("cut at %zu of %zu was taken", n, strlen(reply));
        }
    }
    tap_ok(all_refused, "every cut of the block inside it is refused (%zu cuts)",
           strlen(reply) - start);

    /* text after the block */
    size_t rl = strlen(reply);
    char *after = malloc(rl + 8);
    memcpy(after, reply, rl);
    memcpy(after + rl, "\nmore", 6);
    tap_ok(refused(after, rl + 5), "text after the block: refused");
    free(after);

    /* calls only, no content */
    msgs[1].content = NULL;
    msgs[1].n_tool_calls = 1;
    free(reply);
    reply = render_reply(msgs, 2);
    st = reply != NULL ? mt_chat_parse_tool_calls(reply, strlen(reply), &p) : MT_ERR_INVAL;
    tap_ok(st == MT_OK && p.n == 1 && p.content_len == 0, "calls without content: content empty");
    if (st == MT_OK) {
        mt_chat_parsed_calls_fini(&p);
    }
    free(reply);

#define BLOCK(body) "ok\n\n<｜DSML｜function_calls>\n" body "\n</｜DSML｜function_calls>"
#define INVOKE(params) "<｜DSML｜invoke name=\"f\">\n" params "\n</｜DSML｜invoke>"
#define PARAM(head, v) "<｜DSML｜parameter name=\"" head ">" v "</｜DSML｜parameter>"
    static const char twice[] = BLOCK(INVOKE(PARAM("k\" string=\"true\"", "1") "\n" PARAM(
        "k\" string=\"true\"", "2")));
    static const char not_json[] = BLOCK(INVOKE(PARAM("k\" string=\"false\"", "{oops")));
    static const char twice_inside[] = BLOCK(INVOKE(PARAM("k\" string=\"false\"",
                                                         "{\"a\": 1, \"a\": 2}")));
    tap_ok(refused(twice_inside, strlen(twice_inside)),
           "a key twice inside a JSON value: refused (found by fuzz_tool_calls)");
    static const char bad_kind[] = BLOCK(INVOKE(PARAM("k\" string=\"maybe\"", "1")));
    static const char empty[] = "ok\n\n<｜DSML｜function_calls>\n</｜DSML｜function_calls>";
    static const char good[] = BLOCK(INVOKE(PARAM("k\" string=\"false\"", " [1, 2] ")));
    tap_ok(refused(twice, strlen(twice)), "a key given twice: refused");
    tap_ok(refused(not_json, strlen(not_json)),
           "a string=\"false\" value that is not JSON: refused");
    tap_ok(refused(bad_kind, strlen(bad_kind)), "string=\"maybe\": refused");
    tap_ok(refused(empty, strlen(empty)), "a block with no call: refused");
    st = mt_chat_parse_tool_calls(good, strlen(good), &p);
    tap_ok(st == MT_OK && p.n == 1 && strcmp(p.calls[0].arguments, "{\"k\":  [1, 2] }") == 0,
           "a JSON value is pasted as the model wrote it (as DeepSeek's parser does): %s",
           st == MT_OK && p.n == 1 ? p.calls[0].arguments : "");
    if (st == MT_OK) {
        mt_chat_parsed_calls_fini(&p);
    }
    static const char big_int[] = BLOCK(INVOKE(PARAM("id\" string=\"false\"",
                                                     "12345678901234567890123")));
    st = mt_chat_parse_tool_calls(big_int, strlen(big_int), &p);
    tap_ok(st == MT_OK && p.n == 1 &&
               strcmp(p.calls[0].arguments, "{\"id\": 12345678901234567890123}") == 0,
           "an integer past int64 is JSON too, kept digit for digit: %s",
           st == MT_OK && p.n == 1 ? p.calls[0].arguments : mt_last_error());
    if (st == MT_OK) {
        mt_chat_parsed_calls_fini(&p);
    }
    /* NUL bytes (found by fuzz_tool_calls): in a key, or in a value pasted as JSON text */
    static const char nul_value[] = BLOCK(INVOKE(PARAM("k\" string=\"false\"", "3\0")));
    static const char nul_key[] = BLOCK(INVOKE(PARAM("k\0\" string=\"true\"", "3")));
    tap_ok(refused(nul_value, sizeof(nul_value) - 1) && refused(nul_key, sizeof(nul_key) - 1),
           "a NUL byte in a key or in a JSON value: refused");

    /* each rule of the format broken once, everything else as the encoder writes it */
#define ONE PARAM("k\" string=\"true\"", "1")
    static const char no_newline_head[] = "ok\n\n<｜DSML｜function_calls>" INVOKE(ONE)
        "\n</｜DSML｜function_calls>";
    static const char junk_between[] = BLOCK(INVOKE(ONE "x\n" PARAM("b\" string=\"true\"", "2")));
    static const char nul_name[] = BLOCK("<｜DSML｜invoke name=\"f\0g\">\n" ONE "\n</｜DSML｜invoke>");
    static const char empty_name[] = BLOCK("<｜DSML｜invoke name=\"\">\n" ONE "\n</｜DSML｜invoke>");
    static const char space_not_newline[] = BLOCK("<｜DSML｜invoke name=\"f\"> " ONE
                                                  "\n</｜DSML｜invoke>");
    static const char no_quote_end[] = BLOCK("<｜DSML｜invoke name=\"f\"x>\n" ONE
                                             "\n</｜DSML｜invoke>");
    static const char bad_utf8_name[] = BLOCK("<｜DSML｜invoke name=\"\xff\">\n" ONE
                                              "\n</｜DSML｜invoke>");
    static const char no_lt[] = BLOCK(INVOKE("<｜DSML｜parameter name=\"k\" string=\"true\">1"
                                             "/｜DSML｜parameter>"));
    /* each marker byte counts: ">" then anything but "\n", or name= without its quote, is not
     * the format (a check of fewer bytes would take these and read the key or name after it) */
    static const char space_after_head[] = "ok\n\n<｜DSML｜function_calls> " INVOKE(ONE)
        "\n</｜DSML｜function_calls>";
    static const char name_no_quote[] = BLOCK("<｜DSML｜invoke name=xf\">\n" ONE
                                              "\n</｜DSML｜invoke>");
    static const char key_no_quote[] = BLOCK(INVOKE("<｜DSML｜parameter name=xk\" string=\"true\">1"
                                                    "</｜DSML｜parameter>"));
    static const struct {
        const char *text;
        size_t len;
        const char *why;
    } broken[] = {
        {no_newline_head, sizeof(no_newline_head) - 1, "no newline after the block's head"},
        {junk_between, sizeof(junk_between) - 1, "text between two parameters"},
        {nul_name, sizeof(nul_name) - 1, "a NUL byte in a name"},
        {empty_name, sizeof(empty_name) - 1, "an empty name"},
        {space_not_newline, sizeof(space_not_newline) - 1, "a space, not a newline, after name"},
        {no_quote_end, sizeof(no_quote_end) - 1, "a name head not ending in \">"},
        {bad_utf8_name, sizeof(bad_utf8_name) - 1, "a name that is not UTF-8"},
        {no_lt, sizeof(no_lt) - 1, "a value not closed by '<'"},
        {space_after_head, sizeof(space_after_head) - 1, "a space, not a newline, after '>'"},
        {name_no_quote, sizeof(name_no_quote) - 1, "name=f\" without its opening quote"},
        {key_no_quote, sizeof(key_no_quote) - 1, "a parameter's name=k\" without its quote"},
    };
    for (size_t k = 0; k < sizeof(broken) / sizeof(broken[0]); k++) {
        tap_ok(refused(broken[k].text, broken[k].len), "%s: refused", broken[k].why);
    }
    /* the first `" string="` ends the key, even when the value holds the other kind */
    static const char other_kind[] = BLOCK(INVOKE(PARAM("k\" string=\"true\"",
                                                        "x\" string=\"false\">1")));
    st = mt_chat_parse_tool_calls(other_kind, strlen(other_kind), &p);
    tap_ok(st == MT_OK && p.n == 1 &&
               strcmp(p.calls[0].arguments, "{\"k\": \"x\\\" string=\\\"false\\\">1\"}") == 0,
           "the first kind ends the key: %s", st == MT_OK && p.n == 1 ? p.calls[0].arguments : "");
    if (st == MT_OK) {
        mt_chat_parsed_calls_fini(&p);
    }
    /* ... and the other way round: a JSON value holding the string kind's marker is not JSON,
     * so the block is refused (read from the later marker, the key would swallow the value) */
    static const char true_after_false[] = BLOCK(INVOKE(PARAM("k\" string=\"false\"",
                                                              "1\" string=\"true\">2")));
    tap_ok(refused(true_after_false, strlen(true_after_false)),
           "the first kind ends the key, string=\"false\" first: its value is not JSON, refused");
    /* the invoke's head may start with any whitespace (\s in DeepSeek's regex) */
    static const char tab_head[] = BLOCK("<｜DSML｜invoke\t\r\nname=\"f\">\n" ONE
                                         "\n</｜DSML｜invoke>");
    st = mt_chat_parse_tool_calls(tab_head, strlen(tab_head), &p);
    tap_ok(st == MT_OK && p.n == 1 && strcmp(p.calls[0].name, "f") == 0,
           "a tab, CR and newline before name=: the call f");
    if (st == MT_OK) {
        mt_chat_parsed_calls_fini(&p);
    }
    static const char empty_value[] = BLOCK(INVOKE(PARAM("k\" string=\"true\"", "")));
    st = mt_chat_parse_tool_calls(empty_value, strlen(empty_value), &p);
    tap_ok(st == MT_OK && p.n == 1 && strcmp(p.calls[0].arguments, "{\"k\": \"\"}") == 0,
           "an empty string value: %s", st == MT_OK && p.n == 1 ? p.calls[0].arguments : "");
    if (st == MT_OK) {
        mt_chat_parsed_calls_fini(&p);
    }
    tap_ok(strcmp(mt_chat_tool_calls_start, "\n\n<｜DSML｜function_calls") == 0,
           "the start marker a stream holds back");
    return tap_done();
}
