/* SPDX-License-Identifier: MIT */
/*
 * chat_parse.c - the tool calls at the end of a V3.2 reply, parsed back into names and JSON
 * arguments: the inverse of the assistant turn chat.c renders.
 *
 * The rules are parse_tool_calls and parse_message_from_completion_text of DeepSeek's
 * encoding_dsv32.py (the reply without its end-of-sentence token):
 *   - the content ends where "\n\n<｜DSML｜function_calls" begins; then ">\n";
 *   - each call: "<｜DSML｜invoke", then text that is optional whitespace, name="NAME" and ">\n";
 *     then its parameters, each "<｜DSML｜parameter" + ` name="KEY" string="true|false">VALUE<`
 *     + "/｜DSML｜parameter" + ">\n" (the first `" string="` ends the key, the last "<" the
 *     value), then "</｜DSML｜invoke", and ">\n" before the next call or the block's end;
 *   - the block ends with "</｜DSML｜function_calls>" and nothing may follow it;
 *   - the arguments are the JSON object {"KEY": VALUE, ...} in the order given, with ", " and
 *     ": " as json.dumps writes them: a string="true" value as a JSON string, a string="false"
 *     value as the JSON text the model wrote (decode_dsml_to_arguments), a key given twice
 *     refused (also inside a value: chat.c refuses such arguments when a client sends them back).
 * Where DeepSeek's code pastes a string="false" value in unchecked, this checks that it is one
 * JSON value, so that a client always gets arguments it can parse; a reply that breaks any rule
 * is no tool call at all, and the caller keeps it as text.
 */
#include <config.h>

#include "runtime/text/chat.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char mt_chat_tool_calls_start[] = "\n\n<｜DSML｜function_calls";

#define DSML "｜DSML｜"

struct cursor {
    const char *s;
    size_t len;
    size_t at;
};

/*
 * _read_until_stop: from c->at, the earliest of stops[0..n); the text before it is
 * [*from, *to), and c->at moves past it. Returns its index, or -1 (the text runs to the end).
 */
static int
read_until(struct cursor *c, const char *const *stops, int n, size_t *from, size_t *to)
{
    size_t best = c->len;
    int which = -1;

    for (int k = 0; k < n; k++) {
        const char *p = memmem(c->s + c->at, c->len - c->at, stops[k], strlen(stops[k]));
        if (p != NULL && (size_t)(p - c->s) < best) {
            best = (size_t)(p - c->s);
            which = k;
        }
    }
    *from = c->at;
    *to = best;
    c->at = which >= 0 ? best + strlen(stops[which]) : c->len;
    return which;
}

static bool
is_text(const struct cursor *c, size_t from, size_t to, const char *want)
{
    return to - from == strlen(want) && memcmp(c->s + from, want, to - from) == 0;
}

/* A bounded string as a malloc'ed C string; NULL on no memory or an inner NUL byte. */
static char *
dup_text(const char *s, size_t n)
{
    if (memchr(s, 0, n) != NULL) {
        return NULL;
    }
    return strndup(s, n);
}

static bool
is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/*
 * The invoke's head: optional whitespace, name="NAME", ">\n", then whitespace. (DeepSeek's regex
 * takes none after ">\n", so it refuses the call without parameters that its own encoder writes,
 * name="f">\n\n</｜DSML｜invoke>; this takes it.)
 */
static char *
parse_name(const char *s, size_t n)
{
    size_t i = 0, end = n;

    while (i < n && is_space(s[i])) {
        i++;
    }
    while (end > i && is_space(s[end - 1])) {
        end--;
    }
    if (end == n || s[end] != '\n' || end - i < 9 || memcmp(s + i, "name=\"", 6) != 0 ||
        memcmp(s + end - 2, "\">", 2) != 0) {
        return NULL;
    }
    char *name = dup_text(s + i + 6, end - 2 - (i + 6));
    json_t *utf8 = name != NULL ? json_string(name) : NULL; /* NULL: not UTF-8 */
    if (utf8 == NULL) {
        free(name);
        return NULL;
    }
    json_decref(utf8);
    return name;
}

/*
 * One parameter's text s[0..n) (between "<｜DSML｜parameter" and "/｜DSML｜parameter") appended to
 * the arguments' JSON text *out (*out_len bytes so far, "{" first); seen holds the keys so far.
 */
static bool
parse_param(const char *s, size_t n, json_t *seen, char **out, size_t *out_len)
{
    static const char *const kinds[2] = {"\" string=\"true\">", "\" string=\"false\">"};
    const char *split = NULL;
    bool is_string = false;

    if (n < 8 || memcmp(s, " name=\"", 7) != 0 || s[n - 1] != '<') {
        return false;
    }
    for (int k = 0; k < 2; k++) { /* the first of either ends the key */
        const char *p = memmem(s + 7, n - 7, kinds[k], strlen(kinds[k]));
        if (p != NULL && (split == NULL || p < split)) {
            split = p;
            is_string = k == 0;
        }
    }
    if (split == NULL || memchr(s + 7, 0, (size_t)(split - (s + 7))) != NULL) {
        return false; /* (a key with a NUL byte: JSON parsers refuse it in a key) */
    }
    const char *value = split + strlen(is_string ? kinds[0] : kinds[1]);
    if (value > s + n - 1) {
        return false;
    }
    size_t value_len = (size_t)(s + n - 1 - value);
    json_t *key = json_stringn(s + 7, (size_t)(split - (s + 7)));
    /* A JSON value is pasted as the model wrote it: one with a NUL byte would end the
     * arguments' C string; integers past int64 are JSON too (jansson takes them as reals, the
     * text stays as is); a key twice in an object is refused, as chat.c refuses it when a client
     * sends the calls back. */
    size_t flags = JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES;
    json_t *v = is_string                              ? json_stringn(value, value_len)
                : memchr(value, 0, value_len) == NULL ? json_loadb(value, value_len, flags, NULL)
                                                       : NULL;
    bool ok = key != NULL && v != NULL && json_object_get(seen, json_string_value(key)) == NULL &&
              json_object_set(seen, json_string_value(key), json_true()) == 0;
    char *k_text = ok ? json_dumps(key, JSON_ENCODE_ANY) : NULL;
    char *v_text = ok && is_string ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
    if (ok && k_text != NULL && (v_text != NULL || !is_string)) {
        /* the value as the model wrote it where it is JSON already, as json.dumps would paste */
        const char *vt = is_string ? v_text : value;
        size_t vl = is_string ? strlen(v_text) : value_len;
        size_t add = (*out_len > 1 ? 2 : 0) + strlen(k_text) + 2 + vl;
        char *grown = realloc(*out, *out_len + add + 2);
        if (grown != NULL) {
            char *w = grown + *out_len;
            if (*out_len > 1) {
                memcpy(w, ", ", 2);
                w += 2;
            }
            memcpy(w, k_text, strlen(k_text));
            w += strlen(k_text);
            memcpy(w, ": ", 2);
            w += 2;
            memcpy(w, vt, vl);
            *out = grown;
            *out_len += add;
        } else {
            ok = false;
        }
    } else {
        ok = false;
    }
    free(k_text);
    free(v_text);
    json_decref(key);
    json_decref(v);
    return ok;
}

void
mt_chat_parsed_calls_fini(struct mt_chat_parsed_calls *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free((char *)p->calls[i].name);
        free((char *)p->calls[i].arguments);
    }
    free(p->calls);
    p->calls = NULL;
    p->n = 0;
}

/* Add one call (name and arguments taken). */
static bool
add_call(struct mt_chat_parsed_calls *p, char *name, char *args)
{
    struct mt_chat_tool_call *grown = realloc(p->calls, (p->n + 1) * sizeof(*grown));

    if (grown == NULL) {
        return false;
    }
    p->calls = grown;
    p->calls[p->n].name = name;
    p->calls[p->n].arguments = args;
    p->n++;
    return true;
}

/* The calls block from c->at (just past the start marker); false where a rule is broken. */
static bool
parse_block(struct cursor *c, struct mt_chat_parsed_calls *p)
{
    static const char *const after_call[2] = {"<" DSML "invoke", "</" DSML "function_calls>"};
    static const char *const in_call[2] = {"<" DSML "parameter", "</" DSML "invoke"};
    static const char *const param_end[1] = {"/" DSML "parameter"};
    size_t from, to;

    for (;;) {
        int stop = read_until(c, after_call, 2, &from, &to);
        if (stop < 0 || !is_text(c, from, to, ">\n")) {
            return false;
        }
        if (stop == 1) {
            return c->at == c->len && p->n > 0; /* nothing after the block */
        }
        stop = read_until(c, in_call, 2, &from, &to);
        char *name = stop >= 0 ? parse_name(c->s + from, to - from) : NULL;
        char *args = name != NULL ? malloc(3) : NULL; /* "{", later "}" and its NUL */
        size_t args_len = 1;
        json_t *seen = json_object();
        bool ok = name != NULL && args != NULL && seen != NULL;
        if (args != NULL) {
            args[0] = '{';
        }
        while (ok && stop == 0) {
            ok = read_until(c, param_end, 1, &from, &to) == 0 &&
                 parse_param(c->s + from, to - from, seen, &args, &args_len);
            if (ok) {
                stop = read_until(c, in_call, 2, &from, &to);
                ok = stop >= 0 && is_text(c, from, to, ">\n");
            }
        }
        json_decref(seen);
        if (ok) {
            args[args_len] = '}';
            args[args_len + 1] = '\0';
            ok = add_call(p, name, args);
        }
        if (!ok) {
            free(name);
            free(args);
            return false;
        }
    }
}

mt_status_t
mt_chat_parse_tool_calls(const char *text, size_t len, struct mt_chat_parsed_calls *out)
{
    struct cursor c = {text, len, 0};
    /* (memmem of an empty reply, which may be NULL, is undefined: nothing to find in it) */
    const char *start = len > 0 ? memmem(text, len, mt_chat_tool_calls_start,
                                         strlen(mt_chat_tool_calls_start))
                                : NULL;

    memset(out, 0, sizeof(*out));
    out->content_len = len;
    if (start == NULL) {
        return MT_OK;
    }
    c.at = (size_t)(start - text) + strlen(mt_chat_tool_calls_start);
    if (!parse_block(&c, out)) {
        mt_chat_parsed_calls_fini(out);
        return mt_fail(MT_ERR_FORMAT, 0, "the reply's tool calls do not follow V3.2's format");
    }
    out->content_len = (size_t)(start - text);
    return MT_OK;
}

char *
mt_chat_forced_call_text(const char *name)
{
    static const char block[] = "\n\n<" DSML "function_calls>\n";
    static const char invoke[] = "<" DSML "invoke name=\"";
    size_t n = strlen(block) + (name != NULL ? strlen(invoke) + strlen(name) + 3 : 0);
    char *text = malloc(n + 1);

    if (text != NULL) {
        snprintf(text, n + 1, "%s%s%s%s", block, name != NULL ? invoke : "",
                 name != NULL ? name : "", name != NULL ? "\">\n" : "");
    }
    return text;
}
