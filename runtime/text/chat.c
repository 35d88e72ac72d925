/* SPDX-License-Identifier: MIT */
/*
 * chat.c - the V3.2 prompt format, rule for rule as encoding/encoding_dsv32.py writes it.
 *
 * Checked against encoding_dsv32.py as shipped in the HF repo deepseek-ai/DeepSeek-V3.2
 * (encoding/), read through verbatim copies in public repositories (vLLM's
 * deepseek_v32_encoding.py "copy from .../DeepSeek-V3.2/blob/main/encoding/encoding_dsv32.py",
 * and others that agree line for line on render_message). The rules, by function:
 *   encode_messages: the prompt starts with bos_token (add_default_bos_token=True, no context),
 *     then render_message(i) for each message in order; drop_thinking (default True) removes
 *     reasoning_content from assistant turns before the last user turn, which render_message
 *     would not show anyway (it shows reasoning only after the last user turn).
 *   find_last_user_index: the last message whose role is "user" (or "developer"), -1 if none.
 *   render_message, "system": the content as is (system_msg_template "{content}"), then, with
 *     tools, "\n\n" + render_tools(tools) (TOOLS_SYSTEM_TEMPLATE).
 *   "user": "<｜User｜>{content}<｜Assistant｜>" then thinking_start_token "<think>" if this is the
 *     last user message and thinking_mode == "thinking", else thinking_end_token "</think>".
 *   "tool": the k-th tool message after an assistant turn with tool_calls (k counted from 1)
 *     writes "\n\n<function_results>" when k == 1, then "\n<result>{content}</result>", and when
 *     k == len(tool_calls) "\n</function_results>" + "\n\n" + ("<think>" if index >= last user
 *     index and thinking mode, else "</think>").
 *   "assistant": "{reasoning}{content}{tool_calls}<｜end▁of▁sentence｜>", where reasoning is
 *     reasoning_content + "</think>" only in thinking mode after the last user message (and then
 *     reasoning or tool calls are required), tool_calls is "\n\n<｜DSML｜function_calls>\n" +
 *     invokes joined by "\n" + "\n</｜DSML｜function_calls>", an invoke is
 *     "<｜DSML｜invoke name=\"{name}\">\n" + parameters joined by "\n" + "\n</｜DSML｜invoke>", and
 *     a parameter is "<｜DSML｜parameter name=\"{key}\" string=\"true|false\">{value}
 *     </｜DSML｜parameter>" (no space before "</"): strings as is, other values as json.dumps
 *     (ensure_ascii=False) of them (encode_arguments_to_dsml).
 *   A system message's response_format (a schema) follows its tools: "\n\n" +
 *     RESPONSE_FORMAT_TEMPLATE, "## Response Format:\n\nYou MUST strictly adhere to the following
 *     schema to reply:\n{schema}", the schema as json.dumps writes it.
 * The "developer" role is not implemented.
 */
#include <config.h>

#include "runtime/text/chat.h"

#include <jansson.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char bos_text[] = MT_TOKENIZER_BOS_TEXT;
static const char eos_text[] = "<｜end▁of▁sentence｜>";
static const char user_text[] = "<｜User｜>";
static const char assistant_text[] = "<｜Assistant｜>";
static const char think_text[] = "<think>";
static const char unthink_text[] = "</think>";
static const char dsml[] = "｜DSML｜";

/* TOOLS_SYSTEM_TEMPLATE of encoding_dsv32.py, cut where it names "<think>" and "</think>" */
static const char tools_head[] =
    "## Tools\n\n"
    "You have access to a set of tools you can use to answer the user's question.\n"
    "You can invoke functions by writing a \"<｜DSML｜function_calls>\" block like the following "
    "as part of your reply to the user:\n"
    "<｜DSML｜function_calls>\n"
    "<｜DSML｜invoke name=\"$FUNCTION_NAME\">\n"
    "<｜DSML｜parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE"
    "</｜DSML｜parameter>\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "<｜DSML｜invoke name=\"$FUNCTION_NAME2\">\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "</｜DSML｜function_calls>\n\n"
    "String and scalar parameters should be specified as is without any escaping or quotes, "
    "while lists and objects should use JSON format. The \"string\" attribute should be set to "
    "\"true\" for string type parameters and \"false\" for other types (numbers, booleans, "
    "arrays, objects).\n\n"
    "If the thinking_mode is enabled, then after function results you should strongly consider "
    "outputting a thinking block. Here is an example:\n\n"
    "<｜DSML｜function_calls>\n"
    "...\n"
    "</｜DSML｜function_calls>\n\n"
    "<function_results>\n"
    "...\n"
    "</function_results>\n\n";
static const char tools_mid[] = "...thinking about results";
static const char tools_tail[] = "\n\nHere are the functions available in JSONSchema format:\n"
                                 "<functions>\n";
static const char tools_end[] = "\n</functions>\n";

/* ---- Python-compatible JSON text ------------------------------------------------------------- */

struct sbuf {
    char *s;
    size_t n, cap;
    bool oom;
};

static void
sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t ncap = MT_MAX(2 * b->cap, b->n + n + 256);
        char *ns = realloc(b->s, ncap);
        if (ns == NULL) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = ncap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void
sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* repr(float): the shortest digits that read back the same; fixed notation for 1e-4 <= |x| < 1e16
 */
static void
py_float(struct sbuf *b, double x)
{
    char e[40], out[64], digits[20];
    int p, exp10, nd = 0;
    size_t o = 0;

    if (isnan(x)) {
        sb_str(b, "NaN");
        return;
    }
    if (isinf(x)) {
        sb_str(b, x < 0 ? "-Infinity" : "Infinity");
        return;
    }
    for (p = 1; p <= 17; p++) {
        snprintf(e, sizeof(e), "%.*e", p - 1, x);
        if (strtod(e, NULL) == x) {
            break;
        }
    }
    /* e is [-]d[.ddd]e[+-]XX */
    const char *q = e;
    if (*q == '-') {
        out[o++] = '-';
        q++;
    }
    for (; *q != 'e'; q++) {
        if (*q != '.') {
            digits[nd++] = *q;
        }
    }
    exp10 = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') {
        nd--;
    }
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int k = 0; k < -exp10 - 1; k++) {
                out[o++] = '0';
            }
            for (int k = 0; k < nd; k++) {
                out[o++] = digits[k];
            }
        } else {
            for (int k = 0; k <= exp10; k++) {
                out[o++] = k < nd ? digits[k] : '0';
            }
            out[o++] = '.';
            if (nd > exp10 + 1) {
                for (int k = exp10 + 1; k < nd; k++) {
                    out[o++] = digits[k];
                }
            } else {
                out[o++] = '0';
            }
        }
        out[o] = 0;
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (int k = 1; k < nd; k++) {
                out[o++] = digits[k];
            }
        }
        snprintf(out + o, sizeof(out) - o, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    }
    sb_str(b, out);
}

static void
py_string(struct sbuf *b, const char *s, size_t n)
{
    sb_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        switch (c) {
        case '"':
            sb_add(b, "\\\"", 2);
            break;
        case '\\':
            sb_add(b, "\\\\", 2);
            break;
        case '\n':
            sb_add(b, "\\n", 2);
            break;
        case '\r':
            sb_add(b, "\\r", 2);
            break;
        case '\t':
            sb_add(b, "\\t", 2);
            break;
        case '\b':
            sb_add(b, "\\b", 2);
            break;
        case '\f':
            sb_add(b, "\\f", 2);
            break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                sb_add(b, esc, 6);
            } else {
                sb_add(b, (const char *)&s[i], 1);
            }
        }
    }
    sb_add(b, "\"", 1);
}

/*
 * Python's json reads an integer of any size (123456789012345678901234567890, a uint64 such as
 * 18446744073709551615) and json.dumps writes its digits back; jansson refuses one past int64.
 * So JSON the model's own text came from (tool-call arguments) is loaded with py_load, where every
 * number is a real and none below 1e308 is refused, and py_json writes each number from its literal
 * in the text instead: an integer as Python's int prints it, anything else as repr(float). Walking
 * the tree in insertion order meets the numbers in the order of the text as long as no key is given
 * twice, which py_load refuses (as the server refuses it in a request body).
 */
struct py_src {
    const char *text; /* the JSON text the tree was loaded from */
    size_t pos;       /* where the next number literal is looked for */
};

static json_t *
py_load(const char *text, size_t flags, json_error_t *jerr)
{
    return json_loads(
        text, flags | JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, jerr);
}

/* The next number literal of the text outside strings; *len_out bytes. NULL if none is left. */
static const char *
py_next_number(struct py_src *src, size_t *len_out)
{
    const char *s = src->text;
    size_t i = src->pos;
    bool in_string = false;

    for (; s[i] != '\0'; i++) {
        if (in_string) {
            if (s[i] == '\\') {
                i++; /* the escaped character (valid JSON: never the NUL at the end) */
            } else if (s[i] == '"') {
                in_string = false;
            }
        } else if (s[i] == '"') {
            in_string = true;
        } else if (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) {
            size_t start = i;
            while (s[i] != '\0' && strchr("+-.0123456789eE", s[i]) != NULL) {
                i++;
            }
            src->pos = i;
            *len_out = i - start;
            return s + start;
        }
    }
    src->pos = i;
    return NULL;
}

/* The number v (a real, loaded by py_load) as json.dumps writes it, from its literal. */
static void
py_number_text(struct sbuf *b, struct py_src *src, const json_t *v)
{
    size_t n = 0;
    const char *lit = py_next_number(src, &n);
    bool integer = true;

    /* jansson made the real from this very literal (strtod): anything else is a walk out of step */
    MT_ASSERT(lit != NULL && strtod(lit, NULL) == json_real_value(v));
    for (size_t k = 0; k < n; k++) {
        integer &= lit[k] != '.' && lit[k] != 'e' && lit[k] != 'E';
    }
    if (!integer) {
        py_float(b, json_real_value(v));
    } else if (n == 2 && lit[0] == '-' && lit[1] == '0') {
        sb_add(b, "0", 1); /* int("-0") is 0 */
    } else {
        sb_add(b, lit, n); /* JSON allows no leading zeros: the digits are Python's already */
    }
}

/* v as json.dumps(v, ensure_ascii=False) writes it; numbers from src's text when src != NULL. */
static void
py_json(struct sbuf *b, const json_t *v, struct py_src *src)
{
    const char *key;
    json_t *item;
    size_t i;
    char num[32];
    bool first = true;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        sb_add(b, "{", 1);
        json_object_foreach ((json_t *)v, key, item) {
            if (!first) {
                sb_add(b, ", ", 2);
            }
            first = false;
            py_string(b, key, strlen(key));
            sb_add(b, ": ", 2);
            py_json(b, item, src);
        }
        sb_add(b, "}", 1);
        break;
    case JSON_ARRAY:
        sb_add(b, "[", 1);
        json_array_foreach (v, i, item) {
            if (i > 0) {
                sb_add(b, ", ", 2);
            }
            py_json(b, item, src);
        }
        sb_add(b, "]", 1);
        break;
    case JSON_STRING:
        py_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        sb_str(b, num);
        break;
    case JSON_REAL:
        if (src != NULL) {
            py_number_text(b, src, v);
        } else {
            py_float(b, json_real_value(v));
        }
        break;
    case JSON_TRUE:
        sb_str(b, "true");
        break;
    case JSON_FALSE:
        sb_str(b, "false");
        break;
    case JSON_NULL:
        sb_str(b, "null");
        break;
    }
}

mt_status_t
mt_chat_json_py(const char *json, char **json_out)
{
    json_error_t jerr;
    json_t *v = py_load(json, JSON_DECODE_ANY, &jerr);
    struct py_src src = {json, 0};
    struct sbuf b = {0};

    if (v == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "chat: not JSON (%s)", jerr.text);
    }
    py_json(&b, v, &src);
    json_decref(v);
    if (b.oom || b.s == NULL) {
        free(b.s);
        return mt_fail(MT_ERR_NOMEM, 0, "chat: out of memory");
    }
    *json_out = b.s;
    return MT_OK;
}

/* ---- the prompt builder -----------------------------------------------------------------------
 */

/*
 * Text goes to `run` until a marker that is an added token ends it: then the run is encoded
 * (special tokens off) and the marker's id appended. With tok == NULL only the prompt text is
 * built.
 */
struct builder {
    struct mt_tokenizer *tok;
    struct sbuf text; /* the whole prompt text */
    struct sbuf run;  /* text since the last marker token */
    int32_t *ids;
    size_t n, cap;
    mt_status_t st;
};

static void
put_text(struct builder *b, const char *s, size_t n)
{
    sb_add(&b->text, s, n);
    if (b->tok != NULL) {
        sb_add(&b->run, s, n);
    }
}

static void
put_str(struct builder *b, const char *s)
{
    put_text(b, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

/* The byte length of a message's content or reasoning (len 0: up to its NUL). */
static size_t
msg_len(const char *s, size_t len)
{
    return s == NULL ? 0 : len > 0 ? len : strlen(s);
}

/* A message's content or reasoning, all len bytes of it even past a NUL. */
static void
put_msg_text(struct builder *b, const char *s, size_t len)
{
    put_text(b, s != NULL ? s : "", msg_len(s, len));
}

static void
flush_run(struct builder *b)
{
    if (b->st == MT_OK && b->tok != NULL && b->run.n > 0) {
        b->st =
            mt_tokenizer_encode_append(b->tok, b->run.s, b->run.n, false, &b->ids, &b->n, &b->cap);
    }
    b->run.n = 0;
}

/* The marker m as the token id: the text before it is encoded first, as its own run. */
static void
put_marker_id(struct builder *b, const char *m, int32_t id)
{
    sb_str(&b->text, m);
    flush_run(b);
    if (b->st != MT_OK) {
        return;
    }
    if (b->n == b->cap) {
        size_t ncap = b->cap ? 2 * b->cap : 256;
        int32_t *ni = realloc(b->ids, ncap * sizeof(*ni));
        if (ni == NULL) {
            b->st = mt_fail(MT_ERR_NOMEM, 0, "chat: out of memory");
            return;
        }
        b->ids = ni;
        b->cap = ncap;
    }
    b->ids[b->n++] = id;
}

static void
put_marker(struct builder *b, const char *m)
{
    int32_t id = b->tok != NULL ? mt_tokenizer_token_id(b->tok, m) : -1;

    if (id < 0 || !mt_tokenizer_is_added(b->tok, id)) {
        put_str(b, m); /* not a token of this tokenizer: text, as HF would read the prompt */
        return;
    }
    put_marker_id(b, m, id);
}

/*
 * bos_token: in ids the tokenizer's BOS (mt_tokenizer_bos, found by the rule `run -p` follows
 * too, so the two give the same ids), none where it has none; the rendered text always shows it.
 */
static void
put_bos(struct builder *b)
{
    int32_t id = b->tok != NULL ? mt_tokenizer_bos(b->tok) : -1;

    if (id >= 0) {
        put_marker_id(b, bos_text, id);
    } else {
        sb_str(&b->text, bos_text);
    }
}

/* encode_arguments_to_dsml + tool_call_template for one call */
static mt_status_t
put_tool_call(struct builder *b, size_t msg, const struct mt_chat_tool_call *tc)
{
    json_error_t jerr;
    struct py_src src = {tc->arguments != NULL ? tc->arguments : "{}", 0};
    json_t *args = py_load(src.text, 0, &jerr);
    json_t *v;
    const char *key;
    bool first = true;

    if (args == NULL) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "chat: message %zu: tool call '%s': arguments are not valid JSON: %s", msg,
                       tc->name ? tc->name : "", jerr.text);
    }
    if (!json_is_object(args)) {
        json_decref(args);
        return mt_fail(MT_ERR_INVAL, 0,
                       "chat: message %zu: tool call '%s': arguments are not a JSON object", msg,
                       tc->name ? tc->name : "");
    }
    put_str(b, "<");
    put_str(b, dsml);
    put_str(b, "invoke name=\"");
    put_str(b, tc->name);
    put_str(b, "\">\n");
    json_object_foreach (args, key, v) {
        if (!first) {
            put_str(b, "\n");
        }
        first = false;
        put_str(b, "<");
        put_str(b, dsml);
        put_str(b, "parameter name=\"");
        put_str(b, key);
        put_str(b, json_is_string(v) ? "\" string=\"true\">" : "\" string=\"false\">");
        if (json_is_string(v)) {
            put_text(b, json_string_value(v), json_string_length(v));
        } else {
            struct sbuf j = {0};
            py_json(&j, v, &src);
            put_text(b, j.s != NULL ? j.s : "", j.n);
            b->text.oom |= j.oom;
            free(j.s);
        }
        put_str(b, "</");
        put_str(b, dsml);
        put_str(b, "parameter>");
    }
    put_str(b, "\n</");
    put_str(b, dsml);
    put_str(b, "invoke>");
    json_decref(args);
    return MT_OK;
}

/* render_tools: the template with each tool's "function" object as json.dumps writes it */
static mt_status_t
put_tools(struct builder *b, size_t msg, const char *tools)
{
    json_error_t jerr;
    json_t *arr = json_loads(tools, JSON_ALLOW_NUL, &jerr), *t;
    size_t i;

    if (!json_is_array(arr)) {
        json_decref(arr);
        return mt_fail(MT_ERR_INVAL, 0, "chat: message %zu: tools are not a JSON array", msg);
    }
    put_str(b, tools_head);
    put_marker(b, think_text);
    put_str(b, tools_mid);
    put_marker(b, unthink_text);
    put_str(b, tools_tail);
    json_array_foreach (arr, i, t) {
        json_t *fn = json_object_get(t, "function");
        struct sbuf j = {0};
        if (fn == NULL) {
            json_decref(arr);
            return mt_fail(MT_ERR_INVAL, 0, "chat: message %zu: tool %zu has no \"function\"", msg,
                           i);
        }
        if (i > 0) {
            put_str(b, "\n");
        }
        py_json(&j, fn, NULL); /* numbers from values: a request's tools passed jansson */
        put_text(b, j.s != NULL ? j.s : "", j.n);
        b->text.oom |= j.oom;
        free(j.s);
    }
    put_str(b, tools_end);
    json_decref(arr);
    return MT_OK;
}

/* RESPONSE_FORMAT_TEMPLATE with the schema as json.dumps writes it */
static mt_status_t
put_response_format(struct builder *b, size_t msg, const char *schema)
{
    json_error_t jerr;
    json_t *v = json_loads(schema, JSON_DECODE_ANY, &jerr);
    struct sbuf j = {0};

    if (v == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "chat: message %zu: the response format is not JSON (%s)",
                       msg, jerr.text);
    }
    put_str(b, "## Response Format:\n\nYou MUST strictly adhere to the following schema to "
               "reply:\n");
    py_json(&j, v, NULL); /* numbers from values: a request's schema passed jansson */
    put_text(b, j.s != NULL ? j.s : "", j.n);
    b->text.oom |= j.oom;
    free(j.s);
    json_decref(v);
    return MT_OK;
}

/* What a system prompt carries after its content: the tools, then the response format. */
static mt_status_t
put_system_extras(struct builder *b, size_t msg, const struct mt_chat_msg *m)
{
    mt_status_t st;

    if (m->tools != NULL) {
        put_str(b, "\n\n");
        if ((st = put_tools(b, msg, m->tools)) != MT_OK) {
            return st;
        }
    }
    if (m->response_format != NULL) {
        put_str(b, "\n\n");
        if ((st = put_response_format(b, msg, m->response_format)) != MT_OK) {
            return st;
        }
    }
    return MT_OK;
}

static mt_status_t
build(struct builder *b, const struct mt_chat_msg *msgs, size_t n, bool thinking)
{
    long last_user = -1;
    mt_status_t st;

    for (size_t i = 0; i < n; i++) {
        if (msgs[i].role == MT_CHAT_USER) {
            last_user = (long)i;
        }
    }
    put_bos(b);
    if (n > 0 && msgs[0].role != MT_CHAT_SYSTEM &&
        (msgs[0].tools != NULL || msgs[0].response_format != NULL)) {
        /* the empty system prompt that carries them, as a system message {content: ""} */
        if ((st = put_system_extras(b, 0, &msgs[0])) != MT_OK) {
            return st;
        }
    }
    for (size_t i = 0; i < n && b->st == MT_OK; i++) {
        const struct mt_chat_msg *m = &msgs[i];
        switch (m->role) {
        case MT_CHAT_SYSTEM:
            put_msg_text(b, m->content, m->content_len);
            if ((st = put_system_extras(b, i, m)) != MT_OK) {
                return st;
            }
            break;
        case MT_CHAT_USER:
            put_marker(b, user_text);
            put_msg_text(b, m->content, m->content_len);
            put_marker(b, assistant_text);
            put_marker(b, (long)i == last_user && thinking ? think_text : unthink_text);
            break;
        case MT_CHAT_TOOL: {
            long a = (long)i - 1;
            while (a >= 0 && msgs[a].role == MT_CHAT_TOOL) {
                a--;
            }
            size_t order = i - (size_t)a;
            if (a < 0 || msgs[a].role != MT_CHAT_ASSISTANT || msgs[a].n_tool_calls == 0) {
                return mt_fail(MT_ERR_INVAL, 0,
                               "chat: message %zu is a tool result but no "
                               "assistant tool call precedes it",
                               i);
            }
            if (msgs[a].n_tool_calls < order) {
                return mt_fail(MT_ERR_INVAL, 0,
                               "chat: message %zu is tool result %zu of assistant message %ld, "
                               "which made %zu tool call%s (send one result a call)",
                               i, order, a, msgs[a].n_tool_calls,
                               msgs[a].n_tool_calls == 1 ? "" : "s");
            }
            if (order == 1) {
                put_str(b, "\n\n<function_results>");
            }
            put_str(b, "\n<result>");
            put_msg_text(b, m->content, m->content_len);
            put_str(b, "</result>");
            if (order == msgs[a].n_tool_calls) {
                put_str(b, "\n</function_results>");
                put_str(b, "\n\n");
                put_marker(b, (long)i >= last_user && thinking ? think_text : unthink_text);
            }
            break;
        }
        case MT_CHAT_ASSISTANT:
            if (thinking && (long)i > last_user) {
                if (msg_len(m->reasoning, m->reasoning_len) == 0 && m->n_tool_calls == 0) {
                    return mt_fail(MT_ERR_INVAL, 0,
                                   "chat: message %zu: an assistant turn after "
                                   "the last user turn needs reasoning or tool calls in thinking "
                                   "mode",
                                   i);
                }
                put_msg_text(b, m->reasoning, m->reasoning_len);
                put_marker(b, unthink_text);
            }
            put_msg_text(b, m->content, m->content_len);
            if (m->n_tool_calls > 0) {
                put_str(b, "\n\n<");
                put_str(b, dsml);
                put_str(b, "function_calls>\n");
                for (size_t k = 0; k < m->n_tool_calls; k++) {
                    if (k > 0) {
                        put_str(b, "\n");
                    }
                    if ((st = put_tool_call(b, i, &m->tool_calls[k])) != MT_OK) {
                        return st;
                    }
                }
                put_str(b, "\n</");
                put_str(b, dsml);
                put_str(b, "function_calls>");
            }
            put_marker(b, eos_text);
            break;
        default:
            return mt_fail(MT_ERR_INVAL, 0, "chat: message %zu has an unknown role %d", i,
                           (int)m->role);
        }
    }
    flush_run(b);
    if (b->st == MT_OK && (b->text.oom || b->run.oom)) {
        b->st = mt_fail(MT_ERR_NOMEM, 0, "chat: out of memory");
    }
    return b->st;
}

mt_status_t
mt_chat_encode(struct mt_tokenizer *tok, const struct mt_chat_msg *msgs, size_t n, bool thinking,
               int32_t **ids_out, size_t *n_out)
{
    struct builder b = {.tok = tok};
    mt_status_t st;

    if (tok == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "chat: no tokenizer");
    }
    st = build(&b, msgs, n, thinking);
    free(b.text.s);
    free(b.run.s);
    if (st != MT_OK) {
        free(b.ids);
        return st;
    }
    if (b.ids == NULL && (b.ids = malloc(sizeof(*b.ids))) == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "chat: out of memory");
    }
    *ids_out = b.ids;
    *n_out = b.n;
    return MT_OK;
}

mt_status_t
mt_chat_render(const struct mt_chat_msg *msgs, size_t n, bool thinking, char **text_out)
{
    struct builder b = {0};
    mt_status_t st = build(&b, msgs, n, thinking);

    free(b.run.s);
    if (st != MT_OK) {
        free(b.text.s);
        return st;
    }
    *text_out = b.text.s;
    return MT_OK;
}
