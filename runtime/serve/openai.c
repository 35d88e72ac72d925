/* SPDX-License-Identifier: MIT */
/*
 * openai.c - OpenAI's request and response JSON (openai.h). Each field is checked for its type
 * and range where it is read, and the first problem becomes the request's one error.
 */
#include <config.h>

#include "runtime/serve/openai.h"
#include "runtime/text/json_schema.h"

#include "runtime/base/json_kind.h"
#include "runtime/base/json_text.h"
#include "runtime/text/tokenizer.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
mt_serve_limits_default(struct mt_serve_limits *lim)
{
    lim->max_body = 1 << 20;
    lim->max_messages = 256;
    lim->max_tokens = 4096;
    lim->default_max_tokens = 512;
    lim->max_queue = 64;
}

/*
 * Replace with '?', in place, every byte of s that does not begin a valid UTF-8 character:
 * what a message gets where it quotes a client's bytes (a percent-decoded URL) or where a
 * precision or the buffer's size cut a character. jansson refuses such a string, and the
 * message would go out as null.
 */
static void
utf8_sanitize(char *s)
{
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000}; /* no overlong forms */
    unsigned char *p = (unsigned char *)s;

    while (*p != 0) {
        int n = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
        uint32_t cp = *p & (0x7f >> n);
        bool ok = n > 0;

        for (int k = 1; ok && k < n; k++) {
            ok = (p[k] & 0xc0) == 0x80; /* a NUL is not a continuation: never read past it */
            cp = cp << 6 | (p[k] & 0x3f);
        }
        ok = ok && (n == 1 || (cp >= least[n] && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff)));
        if (ok) {
            p += n;
        } else {
            *p++ = '?';
        }
    }
}

void
mt_serve_error_set(struct mt_serve_error *e, int http, const char *type, const char *code,
                   const char *param, const char *fmt, ...)
{
    va_list ap;

    e->http = http;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof(e->param), "%s", param != NULL ? param : "");
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    utf8_sanitize(e->message);
}

/* json_dumps of obj (stolen), NULL when out of memory. */
static char *
dump_(json_t *obj)
{
    char *s = NULL;

    if (obj != NULL) {
        s = json_dumps(obj, JSON_COMPACT);
        json_decref(obj);
    }
    return s;
}

/* A string value; invalid UTF-8 (never from our own text) becomes null rather than failing. */
static json_t *
str_(const char *s, size_t len)
{
    json_t *v = json_stringn(s != NULL ? s : "", s != NULL ? len : 0);
    return v != NULL ? v : json_null();
}

static json_t *
error_obj_(const struct mt_serve_error *e)
{
    return json_pack("{s:{s:o,s:s,s:o,s:o}}", "error", "message",
                     str_(e->message, strlen(e->message)), "type", e->type, "param",
                     e->param[0] != '\0' ? json_string(e->param) : json_null(), "code",
                     e->code != NULL ? json_string(e->code) : json_null());
}

char *
mt_serve_error_json(const struct mt_serve_error *e)
{
    return dump_(error_obj_(e));
}

/* "data: JSON\n\n" for obj (stolen). */
static char *
event_(json_t *obj)
{
    char *js = dump_(obj);
    char *ev;
    size_t n;

    if (js == NULL) {
        return NULL;
    }
    n = strlen(js);
    ev = malloc(n + 9);
    if (ev != NULL) {
        memcpy(ev, "data: ", 6);
        memcpy(ev + 6, js, n);
        memcpy(ev + 6 + n, "\n\n", 3);
    }
    free(js);
    return ev;
}

char *
mt_serve_error_event(const struct mt_serve_error *e)
{
    return event_(error_obj_(e));
}

/* ---- request parsing ------------------------------------------------------------------------ */

#define BAD(e, param, ...)                                                                         \
    mt_serve_error_set((e), 400, "invalid_request_error", NULL, (param), __VA_ARGS__)

/*
 * The body is parsed with JSON_ALLOW_NUL: a reply may hold a NUL byte, which goes out as
 * "\u0000" and comes back in the next request's messages. Message text carries its length; a
 * string this server reads as a C string (a role, a tool call, a stop string, the model) would
 * be cut short at a NUL, so there one is refused, naming param.
 */
static bool
no_nul_(const json_t *s, const char *param, struct mt_serve_error *e)
{
    if (strlen(json_string_value(s)) == json_string_length(s)) {
        return true;
    }
    BAD(e, param, "'%s' must not hold a NUL character (\\u0000)", param);
    return false;
}

/* obj[key] when present and not null, else NULL. */
static json_t *
field_(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static bool
get_bool_(json_t *obj, const char *key, bool *out, struct mt_serve_error *e)
{
    json_t *v = field_(obj, key);

    if (v == NULL) {
        return true;
    }
    if (!json_is_boolean(v)) {
        BAD(e, key, "'%s' must be a boolean, not %s", key, mt_json_kind(v));
        return false;
    }
    *out = json_is_true(v);
    return true;
}

/* A number in [lo, hi]; *present_out tells whether it was given. */
static bool
get_real_(json_t *obj, const char *key, double lo, double hi, double *out, bool *present_out,
          struct mt_serve_error *e)
{
    json_t *v = field_(obj, key);

    *present_out = false;
    if (v == NULL) {
        return true;
    }
    if (!json_is_number(v)) {
        BAD(e, key, "'%s' must be a number, not %s", key, mt_json_kind(v));
        return false;
    }
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) {
        BAD(e, key, "'%s' must be between %g and %g, not %g", key, lo, hi, x);
        return false;
    }
    *out = x;
    *present_out = true;
    return true;
}

static bool
get_int_(json_t *obj, const char *key, long long lo, long long hi, long long *out,
         bool *present_out, struct mt_serve_error *e)
{
    json_t *v = field_(obj, key);

    *present_out = false;
    if (v == NULL) {
        return true;
    }
    if (!json_is_integer(v)) {
        BAD(e, key, "'%s' must be an integer, not %s", key, mt_json_kind(v));
        return false;
    }
    long long x = json_integer_value(v);
    if (x < lo || x > hi) {
        BAD(e, key, "'%s' must be between %lld and %lld, not %lld", key, lo, hi, x);
        return false;
    }
    *out = x;
    *present_out = true;
    return true;
}

/*
 * A message's content: a string, or an array of {"type": "text", "text": ...} parts, which are
 * joined and stored back into the message as one string (so that it lives in the tree).
 */
static bool
get_content_(json_t *msg, size_t i, const char **out, size_t *len_out, struct mt_serve_error *e)
{
    json_t *c = field_(msg, "content");
    char param[64];

    snprintf(param, sizeof(param), "messages[%zu].content", i);
    *out = NULL;
    *len_out = 0;
    if (c == NULL) {
        return true;
    }
    if (json_is_string(c)) {
        *out = json_string_value(c);
        *len_out = json_string_length(c);
        return true;
    }
    if (!json_is_array(c)) {
        BAD(e, param, "'%s' must be a string or an array of text parts, not %s", param,
            mt_json_kind(c));
        return false;
    }
    size_t total = 0;
    size_t k;
    json_t *part;
    json_array_foreach(c, k, part) {
        json_t *type = json_object_get(part, "type");
        json_t *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) ||
            strcmp(json_string_value(type), "text") != 0 || !json_is_string(text)) {
            BAD(e, param, "'%s[%zu]' must be a text part {\"type\": \"text\", \"text\": ...}; "
                "only text content is supported", param, k);
            return false;
        }
        total += json_string_length(text);
    }
    char *joined = malloc(total + 1);
    if (joined == NULL) {
        mt_serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    size_t at = 0;
    json_array_foreach(c, k, part) {
        json_t *text = json_object_get(part, "text");
        memcpy(joined + at, json_string_value(text), json_string_length(text));
        at += json_string_length(text);
    }
    json_t *s = json_stringn_nocheck(joined, at);
    free(joined);
    if (s == NULL || json_object_set_new(msg, "content", s) != 0) {
        mt_serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    *out = json_string_value(s);
    *len_out = at;
    return true;
}

static bool
parse_messages_(struct mt_serve_request *r, json_t *msgs, const struct mt_serve_limits *lim,
                struct mt_serve_error *e)
{
    size_t n = json_array_size(msgs);
    size_t n_calls = 0;
    size_t i;
    json_t *m;

    if (n == 0) {
        BAD(e, "messages", "'messages' must hold at least one message");
        return false;
    }
    if (n > lim->max_messages) {
        BAD(e, "messages", "too many messages: %zu (this server takes at most %zu)", n,
            lim->max_messages);
        return false;
    }
    json_array_foreach(msgs, i, m) {
        json_t *tc = field_(m, "tool_calls");
        if (json_is_array(tc)) {
            n_calls += json_array_size(tc);
        }
    }
    r->msgs = calloc(n, sizeof(*r->msgs));
    r->calls = calloc(n_calls ? n_calls : 1, sizeof(*r->calls));
    if (r->msgs == NULL || r->calls == NULL) {
        mt_serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    n_calls = 0;
    json_array_foreach(msgs, i, m) {
        struct mt_chat_msg *cm = &r->msgs[r->n_msgs];
        char param[64];
        if (!json_is_object(m)) {
            snprintf(param, sizeof(param), "messages[%zu]", i);
            BAD(e, param, "'%s' must be an object, not %s", param, mt_json_kind(m));
            return false;
        }
        snprintf(param, sizeof(param), "messages[%zu].role", i);
        json_t *role = json_object_get(m, "role");
        if (!json_is_string(role)) {
            BAD(e, param, "'%s' must be a string (system, developer, user, assistant or tool)",
                param);
            return false;
        }
        if (!no_nul_(role, param, e)) {
            return false;
        }
        const char *rs = json_string_value(role);
        /*
         * "developer" is OpenAI's name for the system prompt of its newer models, and what its
         * clients send as one: a system message here. DeepSeek's encoder has a role of that
         * name too, but another one (a user turn that carries its own tools, the text after
         * "# The user's message is: "); an OpenAI client does not mean that.
         */
        if (strcmp(rs, "system") == 0 || strcmp(rs, "developer") == 0) {
            cm->role = MT_CHAT_SYSTEM;
        } else if (strcmp(rs, "user") == 0) {
            cm->role = MT_CHAT_USER;
        } else if (strcmp(rs, "assistant") == 0) {
            cm->role = MT_CHAT_ASSISTANT;
        } else if (strcmp(rs, "tool") == 0) {
            cm->role = MT_CHAT_TOOL;
        } else {
            BAD(e, param,
                "unknown role '%.40s' in %s (system, developer, user, assistant or tool)", rs,
                param);
            return false;
        }
        if (!get_content_(m, i, &cm->content, &cm->content_len, e)) {
            return false;
        }
        if (cm->content == NULL && cm->role != MT_CHAT_ASSISTANT) {
            snprintf(param, sizeof(param), "messages[%zu].content", i);
            BAD(e, param, "'%s' is missing", param);
            return false;
        }
        json_t *rc = field_(m, "reasoning_content");
        if (rc != NULL && cm->role == MT_CHAT_ASSISTANT) {
            if (!json_is_string(rc)) {
                snprintf(param, sizeof(param), "messages[%zu].reasoning_content", i);
                BAD(e, param, "'%s' must be a string, not %s", param, mt_json_kind(rc));
                return false;
            }
            cm->reasoning = json_string_value(rc);
            cm->reasoning_len = json_string_length(rc);
        }
        json_t *tc = field_(m, "tool_calls");
        if (tc != NULL && cm->role == MT_CHAT_ASSISTANT) {
            size_t k;
            json_t *call;
            snprintf(param, sizeof(param), "messages[%zu].tool_calls", i);
            if (!json_is_array(tc)) {
                BAD(e, param, "'%s' must be an array, not %s", param, mt_json_kind(tc));
                return false;
            }
            cm->tool_calls = &r->calls[n_calls];
            json_array_foreach(tc, k, call) {
                json_t *fn = json_object_get(call, "function");
                json_t *name = json_object_get(fn, "name");
                json_t *args = json_object_get(fn, "arguments");
                if (!json_is_string(name) || !json_is_string(args)) {
                    BAD(e, param, "'%s[%zu]' must be {\"type\": \"function\", \"function\": "
                        "{\"name\": STRING, \"arguments\": STRING}}", param, k);
                    return false;
                }
                if (!no_nul_(name, param, e) || !no_nul_(args, param, e)) {
                    return false;
                }
                r->calls[n_calls].name = json_string_value(name);
                r->calls[n_calls].arguments = json_string_value(args);
                n_calls++;
                cm->n_tool_calls++;
            }
        }
        r->n_msgs++;
    }
    return true;
}

/* tools: an array of {"type": "function", "function": {...}}, told to the model in the system
 * prompt: the first message's when it is one, else an empty one the chat encoder puts before
 * it. No message is added, so the encoder's errors name the indexes of the client's messages. */
static bool
parse_tools_(struct mt_serve_request *r, json_t *tools, struct mt_serve_error *e)
{
    size_t k;
    json_t *t;

    if (!json_is_array(tools)) {
        BAD(e, "tools", "'tools' must be an array, not %s", mt_json_kind(tools));
        return false;
    }
    if (json_array_size(tools) == 0) {
        return true;
    }
    json_array_foreach(tools, k, t) {
        const char *type = json_string_value(json_object_get(t, "type"));
        if (type == NULL || strcmp(type, "function") != 0 ||
            !json_is_object(json_object_get(t, "function")) ||
            !json_is_string(json_object_get(json_object_get(t, "function"), "name"))) {
            BAD(e, "tools", "'tools[%zu]' must be {\"type\": \"function\", \"function\": "
                "{\"name\": ..., ...}}", k);
            return false;
        }
    }
    r->tools = json_dumps(tools, JSON_COMPACT);
    if (r->tools == NULL) {
        mt_serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    r->msgs[0].tools = r->tools; /* parse_messages_ took at least one */
    return true;
}

/*
 * One prompt of token ids: an array of integers, each an id (the engine checks the vocabulary).
 * where names it in messages ("prompt", "prompt[2]").
 */
static bool
parse_prompt_ids_(struct mt_serve_prompt *p, json_t *a, const char *where,
                  struct mt_serve_error *e)
{
    size_t k;
    json_t *id;

    if (json_array_size(a) == 0) {
        BAD(e, "prompt", "'%s' is an empty array of token ids", where);
        return false;
    }
    p->ids = malloc(json_array_size(a) * sizeof(*p->ids));
    if (p->ids == NULL) {
        mt_serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    json_array_foreach(a, k, id) {
        json_int_t x = json_integer_value(id);
        if (!json_is_integer(id) || x < 0 || x > INT32_MAX) {
            BAD(e, "prompt", "'%s[%zu]' must be a token id: an integer from 0 to %d", where, k,
                INT32_MAX);
            return false;
        }
        p->ids[k] = (int32_t)x;
    }
    p->n_ids = json_array_size(a);
    return true;
}

/* One prompt: text, or token ids. */
static bool
parse_one_prompt_(struct mt_serve_prompt *p, json_t *v, const char *where,
                  struct mt_serve_error *e)
{
    if (json_is_string(v)) {
        p->text = json_string_value(v);
        p->len = json_string_length(v);
        return true;
    }
    if (json_is_array(v) && (json_array_size(v) == 0 || json_is_integer(json_array_get(v, 0)))) {
        return parse_prompt_ids_(p, v, where, e);
    }
    BAD(e, "prompt", "'%s' must be a string or an array of token ids", where);
    return false;
}

/*
 * A completion's prompt, as OpenAI's API takes it: a string, an array of token ids (run as
 * given: no BOS added), or an array of several of either (up to MT_SERVE_MAX_PROMPTS, all of
 * one kind), each prompt getting n choices.
 */
static bool
parse_prompt_(struct mt_serve_request *r, json_t *v, struct mt_serve_error *e)
{
    json_t *first = json_array_get(v, 0);
    bool several = json_is_array(v) && (json_is_string(first) || json_is_array(first));
    size_t n = several ? json_array_size(v) : 1;

    if (v == NULL) {
        BAD(e, "prompt", "'prompt' is missing");
        return false;
    }
    if (n > MT_SERVE_MAX_PROMPTS) {
        BAD(e, "prompt", "'prompt' holds %zu prompts; at most %d", n, MT_SERVE_MAX_PROMPTS);
        return false;
    }
    r->prompts = calloc(n, sizeof(*r->prompts));
    if (r->prompts == NULL) {
        mt_serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    r->n_prompts = n;
    if (!several) {
        if (!json_is_string(v) && !json_is_array(v)) {
            BAD(e, "prompt", "'prompt' must be a string, an array of token ids, or an array of "
                "several of either");
            return false;
        }
        return parse_one_prompt_(&r->prompts[0], v, "prompt", e);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *one = json_array_get(v, i);
        char where[32];
        snprintf(where, sizeof(where), "prompt[%zu]", i);
        if (json_is_string(one) != json_is_string(first)) {
            BAD(e, "prompt", "'%s' is not of the kind of 'prompt[0]': the prompts are all "
                "strings or all arrays of token ids", where);
            return false;
        }
        if (!parse_one_prompt_(&r->prompts[i], one, where, e)) {
            return false;
        }
    }
    return true;
}

/*
 * logit_bias: {"TOKEN_ID": BIAS, ...}, ids as decimal strings, each bias -100 to 100 (OpenAI's
 * bounds: -100 bans the token, 100 all but forces it), at most MT_SERVE_MAX_BIAS of them. The
 * ids are checked against the vocabulary when the request runs.
 */
static bool
parse_logit_bias_(struct mt_serve_request *r, json_t *bias, struct mt_serve_error *e)
{
    const char *key;
    json_t *v;
    int i = 0;

    if (bias == NULL || (json_is_object(bias) && json_object_size(bias) == 0)) {
        return true;
    }
    if (!json_is_object(bias)) {
        BAD(e, "logit_bias", "'logit_bias' must be an object of token ids and biases, not %s",
            mt_json_kind(bias));
        return false;
    }
    if (json_object_size(bias) > MT_SERVE_MAX_BIAS) {
        BAD(e, "logit_bias", "'logit_bias' has %zu tokens; at most %d", json_object_size(bias),
            MT_SERVE_MAX_BIAS);
        return false;
    }
    r->bias = malloc(json_object_size(bias) * sizeof(*r->bias));
    if (r->bias == NULL) {
        mt_serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    json_object_foreach(bias, key, v) {
        size_t digits = strspn(key, "0123456789");
        long long id = digits >= 1 && digits <= 10 && key[digits] == '\0' ? atoll(key) : -1;
        if (id < 0 || id > INT32_MAX) {
            BAD(e, "logit_bias",
                "'logit_bias' key '%.40s' is not a token id (decimal digits, at most %d)", key,
                INT32_MAX);
            return false;
        }
        if (!json_is_number(v) || json_number_value(v) < -100 || json_number_value(v) > 100) {
            BAD(e, "logit_bias", "'logit_bias[\"%s\"]' must be a number from -100 to 100", key);
            return false;
        }
        for (int k = 0; k < i; k++) { /* "7" and "07" are one token: which bias is meant? */
            if (r->bias[k].id == (int32_t)id) {
                BAD(e, "logit_bias", "'logit_bias' names token %lld twice (key '%.40s' and one "
                    "before it)", id, key);
                return false;
            }
        }
        r->bias[i].id = (int32_t)id;
        r->bias[i].bias = (float)json_number_value(v);
        i++;
    }
    r->n_bias = i;
    return true;
}

/*
 * logprobs. Chat: "logprobs": true, and "top_logprobs": how many of the most likely tokens to
 * list at each place (0 to 20; it needs logprobs). Completion: "logprobs" is that count itself
 * (0 to 5, OpenAI's bounds). Null, false or absent: none.
 */
static bool
parse_logprobs_(struct mt_serve_request *r, json_t *root, struct mt_serve_error *e)
{
    bool on = false;
    long long v;
    bool have;

    r->logprobs = -1;
    if (r->api == MT_SERVE_API_COMPLETION) {
        if (!get_int_(root, "logprobs", 0, 5, &v, &have, e)) {
            return false;
        }
        r->logprobs = have ? (int)v : -1;
        return true;
    }
    if (!get_bool_(root, "logprobs", &on, e) ||
        !get_int_(root, "top_logprobs", 0, MT_LOGPROB_MAX_TOP, &v, &have, e)) {
        return false;
    }
    if (have && v > 0 && !on) {
        BAD(e, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
        return false;
    }
    r->logprobs = on ? (have ? (int)v : 0) : -1;
    return true;
}

/* A tool name that can be written into a forced call: OpenAI's rule for names, [A-Za-z0-9_-]
 * and 1 to 64 of them (so no quote or marker reaches the model's text). */
static bool
plain_tool_name_(const char *s)
{
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
    return n >= 1 && n <= 64 && s[n] == '\0';
}

/*
 * tool_choice, after tools: "auto" (the default: the model is told the tools and calls one if it
 * wants), "none" (it is not told them, so it answers in text), "required" (it must call one) or
 * {"type": "function", "function": {"name": NAME}} (it must call NAME, one of the tools). The
 * last two are forced: the server writes the start of the calls block (and of NAME's call) for
 * the model (mt_chat_forced_call_text), after its reasoning in thinking mode. What follows is
 * still the model's: a block it breaks comes back as text.
 */
static bool
parse_tool_choice_(struct mt_serve_request *r, json_t *root, bool *tools_told,
                   struct mt_serve_error *e)
{
    json_t *v = field_(root, "tool_choice");
    const char *s = json_string_value(v);
    json_t *tools = field_(root, "tools");
    size_t n_tools = json_is_array(tools) ? json_array_size(tools) : 0;

    *tools_told = true;
    if (v == NULL || (s != NULL && strcmp(s, "auto") == 0)) {
        return true;
    }
    if (s != NULL && strcmp(s, "none") == 0) {
        *tools_told = false;
        return true;
    }
    if (s != NULL && strcmp(s, "required") == 0) {
        if (n_tools == 0) {
            BAD(e, "tool_choice", "'tool_choice' \"required\" needs 'tools' to choose from");
            return false;
        }
        r->force_call = true;
        return true;
    }
    if (json_is_object(v)) {
        json_t *type = json_object_get(v, "type");
        json_t *name = json_object_get(json_object_get(v, "function"), "name");
        const char *want = json_string_value(name);
        size_t k;
        json_t *t;
        if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0 ||
            want == NULL) {
            BAD(e, "tool_choice", "'tool_choice' as an object must be {\"type\": \"function\", "
                "\"function\": {\"name\": NAME}}");
            return false;
        }
        if (!plain_tool_name_(want)) {
            BAD(e, "tool_choice", "'tool_choice' names the function '%.64s', which is not 1 to "
                "64 of the characters a-z, A-Z, 0-9, _ and -", want);
            return false;
        }
        json_array_foreach(tools, k, t) {
            const char *have = json_string_value(json_object_get(json_object_get(t, "function"),
                                                                 "name"));
            if (have != NULL && strcmp(have, want) == 0) {
                r->force_call = true;
                r->forced_tool = want;
                return true;
            }
        }
        BAD(e, "tool_choice", "'tool_choice' names the function '%s', which is not one of "
            "'tools'", want);
        return false;
    }
    BAD(e, "tool_choice", "'tool_choice' must be \"auto\", \"none\", \"required\" or "
        "{\"type\": \"function\", \"function\": {\"name\": NAME}}");
    return false;
}

/* The word "json", in any case, in len bytes of text (which may hold NUL bytes). */
static bool
says_json_(const char *text, size_t len)
{
    for (size_t i = 0; text != NULL && i + 4 <= len; i++) {
        if ((text[i] | 0x20) == 'j' && (text[i + 1] | 0x20) == 's' &&
            (text[i + 2] | 0x20) == 'o' && (text[i + 3] | 0x20) == 'n') {
            return true;
        }
    }
    return false;
}

/*
 * response_format json_schema (chat): {"type": "json_schema", "json_schema": {"name": NAME,
 * "schema": {...}, "strict": BOOL, "description": ...}}. The schema goes into the system prompt
 * as V3.2's template writes a response format (chat.c), so the model reads it as it was trained
 * to, and the reply is held to it token by token (text/json_schema.h). With strict true a schema
 * outside what is held is a 400 naming what; without, what only limits values (minimum,
 * pattern, ...) is left to the model, and a schema of another shape holds the reply to an object
 * only.
 */
static bool
parse_json_schema_(struct mt_serve_request *r, json_t *v, struct mt_serve_error *e)
{
    json_t *js = json_object_get(v, "json_schema");
    json_t *schema = json_object_get(js, "schema");
    json_t *strict = json_object_get(js, "strict");
    const char *name = json_string_value(json_object_get(js, "name"));

    if (r->api != MT_SERVE_API_CHAT) {
        BAD(e, "response_format", "'response_format' of type \"json_schema\" needs a chat: the "
            "schema goes into the system prompt (here, \"json_object\" or \"text\")");
        return false;
    }
    if (!json_is_object(js) || name == NULL || !plain_tool_name_(name) ||
        !json_is_object(schema)) {
        BAD(e, "response_format", "'response_format' json_schema must be {\"type\": "
            "\"json_schema\", \"json_schema\": {\"name\": NAME, \"schema\": {...}}}, NAME of "
            "1 to 64 of [A-Za-z0-9_-]");
        return false;
    }
    if (strict != NULL && !json_is_boolean(strict) && !json_is_null(strict)) {
        BAD(e, "response_format", "'response_format.json_schema.strict' must be a boolean");
        return false;
    }
    mt_log_set_quiet(true);
    mt_status_t st = mt_json_schema_compile(schema, !json_is_true(strict), &r->held);
    mt_log_set_quiet(false);
    if (st == MT_ERR_NOMEM) {
        mt_serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    if (st != MT_OK && json_is_true(strict)) {
        BAD(e, "response_format", "'response_format.json_schema' is strict, and its %s "
            "(with strict false, what cannot be held is left to the model)", mt_last_error());
        return false;
    }
    const char *type = json_string_value(json_object_get(schema, "type"));
    if (st != MT_OK && type != NULL && strcmp(type, "object") != 0) {
        BAD(e, "response_format", "'response_format.json_schema.schema' has type \"%.40s\"; "
            "a reply is a JSON object, so the schema's type must be \"object\"", type);
        return false;
    }
    r->schema = json_dumps(schema, JSON_COMPACT);
    if (r->schema == NULL) {
        mt_serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    r->msgs[0].response_format = r->schema; /* a system message first, or an empty one */
    return true;
}

/*
 * response_format, both APIs: {"type": "text"} (the default), {"type": "json_object"}: the reply
 * is constrained to one JSON object (text/json_constraint.h); or, for a chat, "json_schema":
 * parse_json_schema_. As OpenAI, json_object needs a chat that says "json" in some message,
 * since a model not told to write JSON may fill max_tokens with whitespace. A forced tool call
 * cannot be JSON, ignore_eos would run past the object's end, and a stop string could end the
 * reply inside the object.
 */
static bool
parse_response_format_(struct mt_serve_request *r, json_t *root, struct mt_serve_error *e)
{
    json_t *v = field_(root, "response_format");
    const char *type = json_string_value(json_object_get(v, "type"));

    if (v == NULL) {
        return true;
    }
    if (!json_is_object(v) || type == NULL) {
        BAD(e, "response_format", "'response_format' must be {\"type\": \"text\"}, "
            "{\"type\": \"json_object\"} or {\"type\": \"json_schema\", ...}");
        return false;
    }
    if (strcmp(type, "text") == 0) {
        return true;
    }
    bool schema = strcmp(type, "json_schema") == 0;
    if (!schema && strcmp(type, "json_object") != 0) {
        BAD(e, "response_format", "'response_format' of type \"%.40s\" is not supported "
            "(\"text\", \"json_object\" or \"json_schema\")", type);
        return false;
    }
    if (r->force_call) {
        BAD(e, "response_format", "'response_format' %s and a 'tool_choice' that forces a call "
            "cannot both hold: a reply is either a JSON object or a tool call", type);
        return false;
    }
    if (r->ignore_eos) {
        BAD(e, "ignore_eos", "'ignore_eos' and 'response_format' %s cannot both hold: a JSON "
            "reply ends where its object closes", type);
        return false;
    }
    if (r->n_stop > 0) { /* (parse_stop_ ran first) */
        BAD(e, "stop", "'stop' and 'response_format' %s cannot both hold: a stop string would "
            "cut the JSON reply before its object closes, and a reply that ends \"stop\" "
            "must parse", type);
        return false;
    }
    if (schema) {
        if (!parse_json_schema_(r, v, e)) {
            return false;
        }
    } else {
        bool told = r->api != MT_SERVE_API_CHAT;
        for (size_t i = 0; !told && i < r->n_msgs; i++) {
            const struct mt_chat_msg *m = &r->msgs[i];
            size_t len = m->content_len > 0 ? m->content_len
                         : m->content != NULL ? strlen(m->content) : 0;
            told = says_json_(m->content, len);
        }
        if (!told) {
            BAD(e, "messages", "'messages' must contain the word 'json' in some form to use "
                "'response_format' of type 'json_object' (a model not asked for JSON may write "
                "only whitespace)");
            return false;
        }
    }
    r->json_object = true;
    return true;
}

/* Fields that change nothing here (one choice, no users) but must have their type, as with
 * OpenAI's server: parallel_tool_calls a boolean, user a string. */
static bool
check_unused_fields_(json_t *root, struct mt_serve_error *e)
{
    json_t *v = field_(root, "user");
    bool flag;

    if (!get_bool_(root, "parallel_tool_calls", &flag, e)) {
        return false;
    }
    if (v != NULL && !json_is_string(v)) {
        BAD(e, "user", "'user' must be a string, not %s", mt_json_kind(v));
        return false;
    }
    return true;
}

/* thinking mode: chat_template_kwargs.{thinking,enable_thinking} or thinking.type */
static bool
parse_thinking_(struct mt_serve_request *r, json_t *root, struct mt_serve_error *e)
{
    json_t *kw = field_(root, "chat_template_kwargs");
    json_t *th = field_(root, "thinking");

    if (kw != NULL) {
        if (!json_is_object(kw)) {
            BAD(e, "chat_template_kwargs", "'chat_template_kwargs' must be an object, not %s",
                mt_json_kind(kw));
            return false;
        }
        if (!get_bool_(kw, "thinking", &r->thinking, e) ||
            !get_bool_(kw, "enable_thinking", &r->thinking, e)) {
            snprintf(e->param, sizeof(e->param), "chat_template_kwargs");
            return false;
        }
    }
    if (th != NULL) {
        json_t *type = json_object_get(th, "type");
        if (!json_is_object(th) || !json_is_string(type) ||
            (strcmp(json_string_value(type), "enabled") != 0 &&
             strcmp(json_string_value(type), "disabled") != 0)) {
            BAD(e, "thinking", "'thinking' must be {\"type\": \"enabled\"} or "
                "{\"type\": \"disabled\"}");
            return false;
        }
        r->thinking = strcmp(json_string_value(type), "enabled") == 0;
    }
    return true;
}

static bool
parse_stop_(struct mt_serve_request *r, json_t *root, struct mt_serve_error *e)
{
    json_t *stop = field_(root, "stop");
    size_t k;
    json_t *s;

    if (stop == NULL) {
        return true;
    }
    if (json_is_string(stop)) {
        if (!no_nul_(stop, "stop", e)) {
            return false;
        }
        if (json_string_length(stop) > 0) {
            r->stop[r->n_stop++] = json_string_value(stop);
        }
        return true;
    }
    if (!json_is_array(stop) || json_array_size(stop) > MT_SERVE_MAX_STOP) {
        BAD(e, "stop", "'stop' must be a string or an array of at most %d strings",
            MT_SERVE_MAX_STOP);
        return false;
    }
    json_array_foreach(stop, k, s) {
        if (!json_is_string(s)) {
            BAD(e, "stop", "'stop[%zu]' must be a string, not %s", k, mt_json_kind(s));
            return false;
        }
        if (!no_nul_(s, "stop", e)) {
            return false;
        }
        if (json_string_length(s) > 0) {
            r->stop[r->n_stop++] = json_string_value(s);
        }
    }
    return true;
}

static bool
parse_sampling_(struct mt_serve_request *r, json_t *root, const struct mt_serve_limits *lim,
                struct mt_serve_error *e)
{
    double x = 0;
    long long v = 0;
    bool have;

    if (!get_real_(root, "temperature", 0, 2, &x, &have, e)) {
        return false;
    }
    if (have) {
        r->sampler.temperature = (float)x;
    }
    if (!get_real_(root, "top_p", 0, 1, &x, &have, e)) {
        return false;
    }
    if (have) {
        if ((float)x <= 0) { /* what the sampler gets: 1e-50 is 0 in a float */
            BAD(e, "top_p", "'top_p' must be greater than 0");
            return false;
        }
        r->sampler.top_p = (float)x;
    }
    if (!get_int_(root, "top_k", INT64_MIN, INT64_MAX, &v, &have, e)) {
        return false;
    }
    if (have && v < -1) {
        BAD(e, "top_k", "'top_k' must be -1 or 0 (no limit) or a number of tokens, not %lld", v);
        return false;
    }
    if (have) { /* a client's INT_MAX or 2^63 - 1 for "no limit" is a k past the vocabulary */
        r->sampler.top_k = (int)(v < MT_SERVE_MAX_TOP_K ? v : MT_SERVE_MAX_TOP_K);
    }
    if (!get_int_(root, "seed", INT64_MIN, INT64_MAX, &v, &have, e)) {
        return false;
    }
    if (have) {
        r->sampler.seed = (uint64_t)v;
        r->seeded = true;
    }
    /* max_tokens, or its newer name, which wins where a client sends both: each must be a
     * count, and the one that counts within the server's limit */
    r->max_tokens = lim->default_max_tokens;
    static const char *const mt_keys[] = {"max_tokens", "max_completion_tokens"};
    const char *winner = NULL;
    for (int k = 0; k < 2; k++) {
        if (!get_int_(root, mt_keys[k], 0, INT64_MAX, &v, &have, e)) {
            return false;
        }
        if (have) {
            r->max_tokens = (long)v;
            winner = mt_keys[k];
        }
    }
    /* as OpenAI's chat: a reply of no tokens is a request's mistake. A completion may ask for
     * 0: with echo it scores the prompt (logprobs), without it runs the prompt into the cache
     * for the next request */
    if (winner != NULL && r->max_tokens == 0 && r->api == MT_SERVE_API_CHAT) {
        BAD(e, winner, "'%s' must be at least 1 (a chat reply of 0 tokens is empty)", winner);
        return false;
    }
    if (winner != NULL && r->max_tokens > lim->max_tokens) {
        BAD(e, winner, "'%s' is %ld; this server generates at most %ld tokens a choice", winner,
            r->max_tokens, lim->max_tokens);
        return false;
    }
    /* n choices run one after another (the engine holds one sequence): each reuses the
     * prompt's cache and may generate max_tokens */
    if (!get_int_(root, "n", 1, MT_SERVE_MAX_N, &v, &have, e)) {
        return false;
    }
    r->n = have ? (int)v : 1;
    if (r->n_prompts > 1 && (size_t)r->n * r->n_prompts > MT_SERVE_MAX_CHOICES) {
        BAD(e, "n", "'n' = %d for each of %zu prompts is %zu choices; at most %d", r->n,
            r->n_prompts, (size_t)r->n * r->n_prompts, MT_SERVE_MAX_CHOICES);
        return false;
    }
    if (!parse_logprobs_(r, root, e)) {
        return false;
    }
    if (!get_real_(root, "presence_penalty", -2, 2, &x, &have, e)) {
        return false;
    }
    r->presence_penalty = have ? (float)x : 0.0f;
    if (!get_real_(root, "frequency_penalty", -2, 2, &x, &have, e)) {
        return false;
    }
    r->frequency_penalty = have ? (float)x : 0.0f;
    if (!parse_logit_bias_(r, field_(root, "logit_bias"), e)) {
        return false;
    }
    /* OpenAI fields this server cannot honour: their defaults pass (clients send them), any
     * other value is refused rather than silently ignored */
    if (!get_int_(root, "best_of", 1, 1, &v, &have, e) ||
        (r->api == MT_SERVE_API_COMPLETION &&
         !get_int_(root, "top_logprobs", 0, 0, &v, &have, e))) {
        snprintf(e->message, sizeof(e->message), "'%s' is not supported (only its default)",
                 e->param);
        return false;
    }
    return true;
}

mt_status_t
mt_serve_request_parse(enum mt_serve_api api, const char *body, size_t len, const char *model_id,
                       const struct mt_serve_limits *lim, const struct mt_sampler_opts *defaults,
                       struct mt_serve_request *req_out, struct mt_serve_error *e)
{
    struct mt_serve_request r = {.api = api, .sampler = *defaults, .n = 1, .logprobs = -1};
    json_error_t jerr;
    json_t *v;

    /* any JSON value decodes, so that 42 is refused as "not an object", not as bad JSON */
    r.root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY,
                        &jerr);
    if (r.root == NULL) {
        BAD(e, NULL, "the body is not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
            jerr.column);
        return MT_ERR_INVAL;
    }
    if (!json_is_object(r.root)) {
        BAD(e, NULL, "the body must be a JSON object, not %s", mt_json_kind(r.root));
        goto out_fail;
    }
    v = field_(r.root, "model");
    if (v != NULL && !json_is_string(v)) {
        BAD(e, "model", "'model' must be a string, not %s", mt_json_kind(v));
        goto out_fail;
    }
    if (v != NULL && !no_nul_(v, "model", e)) {
        goto out_fail;
    }
    if (v != NULL && strcmp(json_string_value(v), model_id) != 0) {
        mt_serve_error_set(e, 404, "invalid_request_error", "model_not_found", "model",
                           "the model '%.100s' does not exist; this server has '%.100s'",
                           json_string_value(v), model_id);
        goto out_fail;
    }
    if (api == MT_SERVE_API_CHAT) {
        v = field_(r.root, "messages");
        if (!json_is_array(v)) {
            BAD(e, "messages", v == NULL ? "'messages' is missing"
                                         : "'messages' must be an array of messages");
            goto out_fail;
        }
        if (!parse_messages_(&r, v, lim, e)) {
            goto out_fail;
        }
        bool tools_told = true;
        v = field_(r.root, "tools");
        if (v != NULL && !parse_tools_(&r, v, e)) {
            goto out_fail;
        }
        if (!parse_tool_choice_(&r, r.root, &tools_told, e)) {
            goto out_fail;
        }
        if (!tools_told) { /* checked all the same: a malformed array is refused either way */
            free(r.tools);
            r.tools = NULL;
            r.msgs[0].tools = NULL;
        }
        if (!parse_thinking_(&r, r.root, e)) {
            goto out_fail;
        }
    } else {
        if (!parse_prompt_(&r, field_(r.root, "prompt"), e) ||
            !get_bool_(r.root, "echo", &r.echo, e)) {
            goto out_fail;
        }
        json_t *suffix = field_(r.root, "suffix");
        if (suffix != NULL && !(json_is_string(suffix) && json_string_length(suffix) == 0)) {
            BAD(e, "suffix", "'suffix' is not supported (text is only appended to the prompt)");
            goto out_fail;
        }
    }
    if (!get_bool_(r.root, "stream", &r.stream, e) ||
        !get_bool_(r.root, "return_token_ids", &r.return_token_ids, e) ||
        !get_bool_(r.root, "ignore_eos", &r.ignore_eos, e)) {
        goto out_fail;
    }
    v = field_(r.root, "stream_options");
    if (v != NULL) {
        if (!json_is_object(v) || !get_bool_(v, "include_usage", &r.include_usage, e)) {
            BAD(e, "stream_options", "'stream_options' must be {\"include_usage\": BOOLEAN}");
            goto out_fail;
        }
    }
    if (!parse_stop_(&r, r.root, e) || !parse_sampling_(&r, r.root, lim, e) ||
        !parse_response_format_(&r, r.root, e) || !check_unused_fields_(r.root, e)) {
        goto out_fail;
    }
    *req_out = r;
    return MT_OK;

out_fail:
    mt_serve_request_fini(&r);
    return e->http >= 500 ? MT_ERR_NOMEM : MT_ERR_INVAL;
}

void
mt_serve_request_fini(struct mt_serve_request *req)
{
    free(req->msgs);
    free(req->calls);
    free(req->tools);
    free(req->schema);
    mt_json_schema_destroy(req->held);
    for (size_t i = 0; req->prompts != NULL && i < req->n_prompts; i++) {
        free(req->prompts[i].ids);
    }
    free(req->prompts);
    free(req->bias);
    json_decref(req->root);
    memset(req, 0, sizeof(*req));
}

/* ---- responses ------------------------------------------------------------------------------ */

static json_t *
ids_(const int32_t *ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++) {
        json_array_append_new(a, json_integer(ids[i]));
    }
    return a;
}

static json_t *
usage_(const struct mt_serve_reply *r)
{
    return json_pack("{s:I,s:I,s:I,s:{s:I}}", "prompt_tokens", (json_int_t)r->prompt_tokens,
                     "completion_tokens", (json_int_t)r->completion_tokens, "total_tokens",
                     (json_int_t)(r->prompt_tokens + (size_t)r->completion_tokens),
                     "prompt_tokens_details", "cached_tokens", (json_int_t)r->cached_tokens);
}

static bool
is_chat_(const struct mt_serve_request *req)
{
    return req->api == MT_SERVE_API_CHAT;
}

/* A log-probability as JSON: -inf (an impossible token) as -9999.0, as OpenAI writes it; NaN
 * (none: the prompt's first token under echo) as null. */
static json_t *
logprob_(float lp)
{
    return lp != lp ? json_null() : json_real(lp > -9999.0f ? (double)lp : -9999.0);
}

/* One token's text (U+FFFD for each byte of no whole character) and, for chat, its bytes. */
static json_t *
token_text_(const struct mt_tokenizer *tok, int32_t id, json_t **bytes_out)
{
    size_t n = 0;
    const char *b = mt_tokenizer_token_bytes(tok, id, &n);

    if (b == NULL) { /* an id of no token (a padding row of the embedding): no text */
        b = "";
        n = 0;
    }
    if (bytes_out != NULL) {
        *bytes_out = json_array();
        for (size_t i = 0; *bytes_out != NULL && i < n; i++) {
            json_array_append_new(*bytes_out, json_integer((unsigned char)b[i]));
        }
    }
    return mt_json_text_bytes(b, n, "\xEF\xBF\xBD");
}

/* {"token", "logprob", "bytes"} of a chat entry (top_logprobs added by the caller). */
static json_t *
chat_token_(const struct mt_tokenizer *tok, int32_t id, float lp)
{
    json_t *bytes = NULL;
    json_t *text = token_text_(tok, id, &bytes);

    return json_pack("{s:o,s:o,s:o}", "token", text, "logprob", logprob_(lp), "bytes", bytes);
}

/*
 * The logprobs of a choice: chat {"content": [entries], "refusal": null}; completion {"tokens",
 * "token_logprobs", "top_logprobs" (one object a token: text -> log-probability), "text_offset"}.
 * null when lp is NULL or holds no token (a chunk that brings none).
 */
static json_t *
logprobs_json_(const struct mt_serve_request *req, const struct mt_serve_logprobs *lp,
               bool empty_ok)
{
    if (lp == NULL || lp->tok == NULL || (lp->n == 0 && !empty_ok)) {
        return json_null();
    }
    if (is_chat_(req)) {
        json_t *content = json_array();
        for (size_t i = 0; content != NULL && i < lp->n; i++) {
            const struct mt_logprob *t = &lp->v[i];
            json_t *e = chat_token_(lp->tok, t->id, t->logprob);
            json_t *top = json_array();
            for (int k = 0; top != NULL && k < t->n_top; k++) {
                json_array_append_new(top, chat_token_(lp->tok, t->top_id[k], t->top_logprob[k]));
            }
            if (e == NULL || top == NULL || json_object_set_new(e, "top_logprobs", top) != 0 ||
                json_array_append_new(content, e) != 0) {
                json_decref(content);
                return NULL;
            }
        }
        return json_pack("{s:o,s:n}", "content", content, "refusal");
    }
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array();
    json_t *offsets = json_array();
    size_t at = lp->text_offset;
    for (size_t i = 0; i < lp->n && tokens && lps && tops && offsets; i++) {
        const struct mt_logprob *t = &lp->v[i];
        size_t len = 0;
        bool first = t->logprob != t->logprob; /* the prompt's first token: no top either */
        json_t *top = first ? json_null() : json_object();
        mt_tokenizer_token_bytes(lp->tok, t->id, &len);
        json_array_append_new(tokens, token_text_(lp->tok, t->id, NULL));
        json_array_append_new(lps, logprob_(t->logprob));
        json_array_append_new(offsets, json_integer((json_int_t)at));
        for (int k = 0; json_is_object(top) && k < t->n_top; k++) {
            json_t *text = token_text_(lp->tok, t->top_id[k], NULL);
            if (text != NULL) {
                json_object_set_new(top, json_string_value(text), logprob_(t->top_logprob[k]));
            }
            json_decref(text);
        }
        json_array_append_new(tops, top);
        at += len;
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs", lps,
                     "top_logprobs", tops, "text_offset", offsets);
}

/*
 * OpenAI's tool_calls array: {"id", "type": "function", "function": {"name", "arguments"}} a call,
 * with "index" in a stream's delta. The id is the request's and the call's number: a client
 * gives it back in its tool message, which V3.2's prompt does not need (results go by order).
 */
static json_t *
tool_calls_(const struct mt_serve_origin *o, const struct mt_chat_tool_call *calls, size_t n,
            bool with_index)
{
    json_t *a = json_array();

    for (size_t i = 0; a != NULL && i < n; i++) {
        char id[112];
        if (o->index > 0) { /* n > 1: the choice's number too, so that ids stay unique */
            snprintf(id, sizeof(id), "call_%.64s_%d_%zu", o->id, o->index, i);
        } else {
            snprintf(id, sizeof(id), "call_%.64s_%zu", o->id, i);
        }
        json_t *c = json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id, "type", "function", "function",
                              "name", calls[i].name, "arguments", calls[i].arguments);
        if (c != NULL && with_index) {
            json_object_set_new(c, "index", json_integer((json_int_t)i));
        }
        if (c == NULL || json_array_append_new(a, c) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* One choice of a finished reply, with its index. */
static json_t *
choice_json_(const struct mt_serve_request *req, const struct mt_serve_origin *o,
             const struct mt_serve_reply *r)
{
    json_t *choice;

    if (is_chat_(req)) {
        /* with tool calls and no text before them, content is null (as OpenAI's) */
        json_t *msg = json_pack("{s:s,s:o}", "role", "assistant", "content",
                                r->n_tool_calls > 0 && r->content_len == 0
                                    ? json_null()
                                    : str_(r->content, r->content_len));
        if (msg != NULL && r->reasoning != NULL) {
            json_object_set_new(msg, "reasoning_content", str_(r->reasoning, r->reasoning_len));
        }
        if (msg != NULL && r->n_tool_calls > 0) {
            json_object_set_new(msg, "tool_calls",
                                tool_calls_(o, r->tool_calls, r->n_tool_calls, false));
        }
        choice = json_pack("{s:i,s:o,s:o,s:s}", "index", o->index, "message", msg, "logprobs",
                           logprobs_json_(req, &r->logprobs, true), "finish_reason", r->finish);
    } else {
        choice = json_pack("{s:i,s:o,s:o,s:s}", "index", o->index, "text",
                           str_(r->content, r->content_len), "logprobs",
                           logprobs_json_(req, &r->logprobs, true), "finish_reason", r->finish);
    }
    if (choice != NULL && req->return_token_ids) {
        json_object_set_new(choice, "token_ids", ids_(r->ids, r->n_ids));
    }
    return choice;
}

char *
mt_serve_reply_json(const struct mt_serve_request *req, const struct mt_serve_origin *o,
                    const struct mt_serve_reply *r)
{
    return mt_serve_replies_json(req, o, r, 1);
}

char *
mt_serve_replies_json(const struct mt_serve_request *req, const struct mt_serve_origin *o,
                      const struct mt_serve_reply *r, size_t n)
{
    struct mt_serve_reply total = r[0];
    json_t *choices = json_array();

    for (size_t i = 0; choices != NULL && i < n; i++) {
        struct mt_serve_origin oi = *o;
        oi.index = (int)i;
        json_t *c = choice_json_(req, &oi, &r[i]);
        if (c != NULL && req->return_token_ids && req->n_prompts > 1) { /* each its own */
            json_object_set_new(c, "prompt_token_ids", ids_(r[i].prompt_ids, r[i].n_prompt_ids));
        }
        if (json_array_append_new(choices, c) != 0) {
            json_decref(choices);
            choices = NULL;
        }
        total.completion_tokens += i > 0 ? r[i].completion_tokens : 0;
    }
    json_t *obj = json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", o->id, "object",
                            is_chat_(req) ? "chat.completion" : "text_completion", "created",
                            (json_int_t)o->created, "model", o->model, "choices", choices,
                            "usage", usage_(&total));
    if (obj != NULL && req->return_token_ids && req->n_prompts <= 1) {
        json_object_set_new(obj, "prompt_token_ids", ids_(r->prompt_ids, r->n_prompt_ids));
    }
    return dump_(obj);
}

char *
mt_serve_chunk_event(const struct mt_serve_request *req, const struct mt_serve_origin *o,
                     const char *text, size_t len, bool reasoning, bool role,
                     const struct mt_serve_logprobs *lp, const char *finish)
{
    json_t *choice;

    if (is_chat_(req)) {
        json_t *delta = json_object();
        if (delta != NULL && role) {
            json_object_set_new(delta, "role", json_string("assistant"));
        }
        if (delta != NULL && (len > 0 || (role && finish == NULL))) {
            json_object_set_new(delta, reasoning ? "reasoning_content" : "content",
                                str_(text, len));
        }
        choice = json_pack("{s:i,s:o,s:o,s:o}", "index", o->index, "delta", delta, "logprobs",
                           logprobs_json_(req, lp, false), "finish_reason",
                           finish != NULL ? json_string(finish) : json_null());
    } else {
        choice = json_pack("{s:i,s:o,s:o,s:o}", "index", o->index, "text", str_(text, len),
                           "logprobs",
                           logprobs_json_(req, lp, false), "finish_reason",
                           finish != NULL ? json_string(finish) : json_null());
    }
    return event_(json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", o->id, "object",
                            is_chat_(req) ? "chat.completion.chunk" : "text_completion",
                            "created", (json_int_t)o->created, "model", o->model, "choices",
                            choice));
}

char *
mt_serve_tool_calls_event(const struct mt_serve_request *req, const struct mt_serve_origin *o,
                          const struct mt_chat_tool_call *calls, size_t n)
{
    json_t *choice = json_pack("{s:i,s:{s:o},s:n,s:n}", "index", o->index, "delta", "tool_calls",
                               tool_calls_(o, calls, n, true), "logprobs", "finish_reason");

    return event_(json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", o->id, "object",
                            is_chat_(req) ? "chat.completion.chunk" : "text_completion",
                            "created", (json_int_t)o->created, "model", o->model, "choices",
                            choice));
}

char *
mt_serve_usage_event(const struct mt_serve_request *req, const struct mt_serve_origin *o,
                     const struct mt_serve_reply *r)
{
    json_t *obj = json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", o->id, "object",
                            is_chat_(req) ? "chat.completion.chunk" : "text_completion",
                            "created", (json_int_t)o->created, "model", o->model, "choices",
                            "usage", usage_(r));
    if (obj != NULL && req->return_token_ids) {
        json_object_set_new(obj, "prompt_token_ids", ids_(r->prompt_ids, r->n_prompt_ids));
        json_object_set_new(obj, "token_ids", ids_(r->ids, r->n_ids));
    }
    return event_(obj);
}

static json_t *
model_obj_(const char *model_id, long long created)
{
    return json_pack("{s:s,s:s,s:I,s:s}", "id", model_id, "object", "model", "created",
                     (json_int_t)created, "owned_by", "moetier");
}

char *
mt_serve_models_json(const char *model_id, long long created)
{
    return dump_(json_pack("{s:s,s:[o]}", "object", "list", "data",
                           model_obj_(model_id, created)));
}

char *
mt_serve_model_json(const char *model_id, long long created)
{
    return dump_(model_obj_(model_id, created));
}

/* ---- stop strings --------------------------------------------------------------------------- */

size_t
mt_serve_stop_find(const char *const *stops, int n, const char *text, size_t len,
                   size_t *safe_out)
{
    size_t best = len + 1;
    size_t safe = len;

    for (int k = 0; k < n; k++) {
        size_t sl = strlen(stops[k]);
        for (size_t p = 0; p < len && p < best; p++) {
            size_t avail = len - p;
            size_t cmp = avail < sl ? avail : sl;
            if (memcmp(text + p, stops[k], cmp) != 0) {
                continue;
            }
            if (avail >= sl) {
                best = p; /* a complete match */
            } else if (p < safe) {
                safe = p; /* text[p..] may grow into a match */
            }
            break;
        }
    }
    if (best <= len) {
        safe = best;
    }
    *safe_out = safe;
    return best;
}

bool
mt_serve_may_call_tools(const struct mt_serve_request *req)
{
    return req->api == MT_SERVE_API_CHAT && req->tools != NULL;
}

bool
mt_serve_answer_advance(const struct mt_serve_request *req, const char *text, size_t len,
                        size_t sent, bool *tool_block, size_t *emit_to, size_t *end)
{
    const char *start = mt_chat_tool_calls_start;
    const char *rest = text + sent;
    size_t n = len - sent, safe, tsafe;
    size_t hit = mt_serve_stop_find(req->stop, req->n_stop, rest, n, &safe);
    bool stopped = hit <= n;

    if (stopped) {
        n = hit; /* the answer ends before the stop string: only a whole block start counts */
        safe = hit;
    }
    if (!*tool_block && mt_serve_may_call_tools(req)) {
        size_t at = mt_serve_stop_find(&start, 1, rest, n, &tsafe);
        if (at <= n) {
            *tool_block = true;
            safe = at < safe ? at : safe;
        } else if (!stopped) {
            safe = tsafe < safe ? tsafe : safe; /* may still grow into a block start */
        }
    } else if (*tool_block) {
        safe = 0;
    }
    *emit_to = sent + safe;
    *end = sent + n;
    return stopped;
}
