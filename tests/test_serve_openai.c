/* SPDX-License-Identifier: MIT */
/*
 * test_serve_openai.c - the OpenAI JSON mapping of moetier serve (runtime/serve/openai.h) as
 * plain functions: requests parsed into messages, sampling and limits; each kind of bad request
 * refused with its status and field; responses and stream chunks in OpenAI's shape; stop strings
 * found and partial matches held back.
 */
#include <config.h>

#include "runtime/serve/openai.h"
#include "runtime/text/tokenizer.h"
#include "tests/tap.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static struct mt_serve_limits lim;
static struct mt_sampler_opts defaults;

static mt_status_t
parse(enum mt_serve_api api, const char *body, struct mt_serve_request *r,
      struct mt_serve_error *e)
{
    memset(e, 0, sizeof(*e));
    return mt_serve_request_parse(api, body, strlen(body), "m", &lim, &defaults, r, e);
}

/* body must be refused with status http and param (NULL: any). */
static void
refused(const char *body, int http, const char *param, const char *what)
{
    struct mt_serve_request r;
    struct mt_serve_error e;
    mt_status_t st = parse(MT_SERVE_API_CHAT, body, &r, &e);

    tap_ok(st != MT_OK && e.http == http && (param == NULL || strcmp(e.param, param) == 0) &&
               e.message[0] != '\0',
           "%s: %d, param '%s' (%s)", what, e.http, e.param, e.message);
}

/* An answer fed to mt_serve_answer_advance `step` bytes at a time, as tokens bring it: what was
 * streamed, where the answer ended, whether a stop string ended it, whether a calls block began. */
struct fed {
    char streamed[1024];
    size_t end;
    bool stopped;
    bool block;
};

static struct fed
feed(const struct mt_serve_request *req, const char *answer, size_t step)
{
    struct fed f = {.streamed = "", .end = 0, .stopped = false, .block = false};
    size_t len = strlen(answer), have = 0, sent = 0, o = 0, emit_to;

    while (have < len && !f.stopped) {
        have = have + step < len ? have + step : len;
        f.stopped = mt_serve_answer_advance(req, answer, have, sent, &f.block, &emit_to, &f.end);
        memcpy(f.streamed + o, answer + sent, emit_to - sent);
        o += emit_to - sent;
        sent = emit_to;
    }
    f.streamed[o] = 0;
    return f;
}

/* body must parse (api); the request is left in *r for the caller to check and fini. */
static bool
parsed(enum mt_serve_api api, const char *body, struct mt_serve_request *r, const char *what)
{
    struct mt_serve_error e;
    mt_status_t st = parse(api, body, r, &e);

    if (st != MT_OK) {
        tap_ok(false, "%s: parses (%s)", what, e.message);
    }
    return st == MT_OK;
}

/*
 * Each request field's type, bound and default, where a wrong one is a 4xx naming the field
 * (openai.h: every bad input gets its own 4xx), and fields read only for some roles.
 */
static void
test_request_fields(void)
{
    struct mt_serve_request r;

#define QF "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], "
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", "
            "\"content\": \"a\", \"reasoning_content\": 5}]}",
            400, "messages[1].reasoning_content", "an assistant's reasoning_content not a string");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", "
            "\"content\": \"a\", \"tool_calls\": {\"id\": \"x\"}}]}",
            400, "messages[1].tool_calls", "an assistant's tool_calls not an array");
    /* reasoning_content and tool_calls are an assistant's: on a user message they are not read */
    if (parsed(MT_SERVE_API_CHAT,
               "{\"messages\": [{\"role\": \"user\", \"content\": \"q\", \"reasoning_content\": "
               "\"r\", \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", "
               "\"arguments\": \"{}\"}}]}]}",
               &r, "a user message with reasoning_content and tool_calls")) {
        tap_ok(r.msgs[0].reasoning == NULL && r.msgs[0].n_tool_calls == 0 &&
                   r.msgs[0].tool_calls == NULL,
               "a user message's reasoning_content and tool_calls are not taken");
        mt_serve_request_fini(&r);
    }
    refused(QF "\"tools\": [{\"type\": \"retrieval\", \"function\": {\"name\": \"f\"}}]}", 400,
            "tools", "a tool of a type other than function");
    refused(QF "\"tools\": [{\"type\": \"function\", \"function\": {\"description\": \"d\"}}]}",
            400, "tools", "a tool function without a name");
    refused(QF "\"model\": 5}", 400, "model", "model not a string");
    refused(QF "\"max_tokens\": 0}", 400, "max_tokens", "a chat's max_tokens 0");
    refused(QF "\"max_completion_tokens\": 0}", 400, "max_completion_tokens",
            "a chat's max_completion_tokens 0");
    refused(QF "\"thinking\": {\"type\": \"auto\"}}", 400, "thinking",
            "thinking of a type other than enabled or disabled");
    if (parsed(MT_SERVE_API_CHAT, QF "\"thinking\": {\"type\": \"enabled\"}}", &r,
               "thinking enabled")) {
        tap_ok(r.thinking, "thinking {\"type\": \"enabled\"} turns thinking mode on");
        mt_serve_request_fini(&r);
    }
    if (parsed(MT_SERVE_API_CHAT,
               QF "\"return_token_ids\": true, \"stream\": true, "
                  "\"stream_options\": {\"include_usage\": true}}",
               &r, "return_token_ids and include_usage")) {
        tap_ok(r.return_token_ids && r.stream && r.include_usage,
               "return_token_ids and stream_options.include_usage are read");
        mt_serve_request_fini(&r);
    }
    if (parsed(MT_SERVE_API_CHAT, QF "\"n\": 2}", &r, "no penalties")) {
        tap_ok(r.presence_penalty == 0.0f && r.frequency_penalty == 0.0f && r.n_bias == 0 &&
                   !r.return_token_ids && !r.include_usage,
               "penalties left out are 0; no logit_bias, token ids or usage chunk");
        mt_serve_request_fini(&r);
    }
    if (parsed(MT_SERVE_API_CHAT, QF "\"presence_penalty\": 1.5}", &r, "presence_penalty only")) {
        tap_ok(r.presence_penalty == 1.5f && r.frequency_penalty == 0.0f,
               "presence_penalty given, frequency_penalty left out: %g and %g",
               r.presence_penalty, r.frequency_penalty);
        mt_serve_request_fini(&r);
    }
    if (parsed(MT_SERVE_API_CHAT, QF "\"logit_bias\": {\"5\": 100, \"6\": -100}}", &r,
               "logit_bias at its bounds")) {
        tap_ok(r.n_bias == 2 && r.bias[0].bias == 100.0f && r.bias[1].bias == -100.0f,
               "logit_bias 100 and -100 (OpenAI's bounds) are accepted");
        mt_serve_request_fini(&r);
    }
    {
        /* MT_SERVE_MAX_BIAS tokens are accepted, one more is refused */
        size_t cap = 64 + (MT_SERVE_MAX_BIAS + 1) * 12;
        char *body = malloc(cap);
        size_t at = (size_t)snprintf(body, cap, QF "\"logit_bias\": {");
        for (int k = 0; k < MT_SERVE_MAX_BIAS; k++) {
            at += (size_t)snprintf(body + at, cap - at, "%s\"%d\": 1", k ? ", " : "", k);
        }
        snprintf(body + at, cap - at, "}}");
        if (parsed(MT_SERVE_API_CHAT, body, &r, "a logit_bias of MT_SERVE_MAX_BIAS tokens")) {
            tap_ok(r.n_bias == MT_SERVE_MAX_BIAS, "a logit_bias of %d tokens is accepted",
                   MT_SERVE_MAX_BIAS);
            mt_serve_request_fini(&r);
        }
        snprintf(body + at, cap - at, ", \"%d\": 1}}", MT_SERVE_MAX_BIAS);
        refused(body, 400, "logit_bias", "a logit_bias of MT_SERVE_MAX_BIAS + 1 tokens");
        free(body);
    }
    /* strict must be a boolean; without it, a keyword that only limits values (minimum) is left
     * to the model and the answer still held to the schema; with it, that keyword is refused */
#define RF "\"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"s\", "
#define MINSCHEMA "\"schema\": {\"type\": \"object\", \"properties\": {\"n\": {\"type\": " \
                  "\"integer\", \"minimum\": 0}}}"
    refused(QF RF "\"strict\": \"yes\", " MINSCHEMA "}}}", 400, "response_format",
            "json_schema strict not a boolean");
    refused(QF RF "\"strict\": true, " MINSCHEMA "}}}", 400, "response_format",
            "json_schema, strict, with minimum (a limit not held)");
    if (parsed(MT_SERVE_API_CHAT, QF RF MINSCHEMA "}}}", &r, "json_schema with minimum")) {
        tap_ok(r.json_object && r.held != NULL,
               "json_schema, not strict, with minimum: the answer is held to the schema");
        mt_serve_request_fini(&r);
    }
    /* strict null is strict left out (a client's default), not a strict that is not boolean */
    if (parsed(MT_SERVE_API_CHAT, QF RF "\"strict\": null, " MINSCHEMA "}}}", &r,
               "json_schema with strict null")) {
        tap_ok(r.json_object && r.held != NULL,
               "json_schema with strict null: as without strict, minimum left to the model");
        mt_serve_request_fini(&r);
    }
#undef MINSCHEMA
#undef RF

    /* each refusal names the field at fault, down to the message or the kwargs object */
    refused("{\"messages\": [5]}", 400, "messages[0]", "a message that is not an object");
    refused(QF "\"chat_template_kwargs\": 5}", 400, "chat_template_kwargs",
            "chat_template_kwargs not an object");
    refused(QF "\"chat_template_kwargs\": {\"enable_thinking\": \"yes\"}}", 400,
            "chat_template_kwargs", "chat_template_kwargs.enable_thinking not a boolean");
    refused(QF "\"max_completion_tokens\": 99999}", 400, "max_completion_tokens",
            "max_completion_tokens past the server's limit");
    /* a call with no name or no arguments has nothing to render into the prompt */
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", "
            "\"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]}]}",
            400, "messages[1].tool_calls", "a tool call without arguments");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", "
            "\"tool_calls\": [{\"type\": \"function\", \"function\": {\"arguments\": \"{}\"}}]}]}",
            400, "messages[1].tool_calls", "a tool call without a name");
    /* a NUL would cut the string this server reads in C: the model's name, any stop string */
    refused(QF "\"model\": \"m\\u0000x\"}", 400, "model", "a model name with a NUL after 'm'");
    refused(QF "\"stop\": [\"ok\", \"a\\u0000b\"]}", 400, "stop",
            "a stop string with a NUL in an array");
    /* each range at its edge, both sides */
    refused(QF "\"top_p\": 1.5}", 400, "top_p", "top_p 1.5");
    refused(QF "\"presence_penalty\": -2.01}", 400, "presence_penalty", "presence_penalty -2.01");
    refused(QF "\"frequency_penalty\": 2.01}", 400, "frequency_penalty",
            "frequency_penalty 2.01");

    /* calls of several assistant messages each keep their own slots in one array (three
     * messages: main() sets max_messages to 3) */
    if (parsed(MT_SERVE_API_CHAT,
               "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": "
               "\"assistant\", \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": "
               "\"f\", \"arguments\": \"1\"}}, {\"type\": \"function\", \"function\": {\"name\": "
               "\"g\", \"arguments\": \"2\"}}]}, {\"role\": \"assistant\", \"tool_calls\": "
               "[{\"type\": \"function\", \"function\": {\"name\": \"h\", \"arguments\": "
               "\"3\"}}]}]}",
               &r, "two assistant messages with three calls")) {
        const struct mt_chat_msg *a = &r.msgs[1];
        const struct mt_chat_msg *b = &r.msgs[2];
        bool names = a->n_tool_calls == 2 && b->n_tool_calls == 1 && a->tool_calls[0].name &&
                     a->tool_calls[1].name && b->tool_calls[0].name &&
                     strcmp(a->tool_calls[0].name, "f") == 0 &&
                     strcmp(a->tool_calls[1].name, "g") == 0 &&
                     strcmp(b->tool_calls[0].name, "h") == 0 &&
                     strcmp(b->tool_calls[0].arguments, "3") == 0;
        tap_ok(names, "calls f, g in one message and h in a later one are each kept (%zu, %zu)",
               a->n_tool_calls, b->n_tool_calls);
        mt_serve_request_fini(&r);
    }
    /* json_object is told by any message, not only the first */
    if (parsed(MT_SERVE_API_CHAT,
               "{\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, {\"role\": "
               "\"user\", \"content\": \"answer in JSON\"}], \"response_format\": {\"type\": "
               "\"json_object\"}}",
               &r, "json_object said in the second message")) {
        tap_ok(r.json_object, "json_object when only the second message says JSON");
        mt_serve_request_fini(&r);
    }
    /* tools are told in the system prompt: the first message's, whatever follows it */
    if (parsed(MT_SERVE_API_CHAT,
               "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": "
               "\"user\", \"content\": \"q\"}], \"tools\": [{\"type\": \"function\", "
               "\"function\": {\"name\": \"f\"}}]}",
               &r, "tools with a system message and a user message")) {
        tap_ok(r.msgs[0].tools != NULL && r.msgs[1].tools == NULL,
               "tools go with the first of two messages, not the last");
        mt_serve_request_fini(&r);
    }
    {
        struct mt_serve_error e;
        mt_status_t st = parse(MT_SERVE_API_COMPLETION, "{}", &r, &e);
        tap_ok(st != MT_OK && e.http == 400 && strcmp(e.param, "prompt") == 0 &&
                   strstr(e.message, "missing") != NULL,
               "a completion without a prompt: 400, says it is missing (%s)", e.message);
        /* a field with only its default honoured says so, not that a range was missed */
        st = parse(MT_SERVE_API_CHAT, QF "\"best_of\": 2}", &r, &e);
        tap_ok(st != MT_OK && strcmp(e.message, "'best_of' is not supported (only its default)")
                   == 0, "best_of 2: the message says it is not supported (%s)", e.message);
    }
#undef QF
}

/* Stop strings at the edges: a match that ends the text, and a hold-back of several stops. */
static void
test_stop_edges(void)
{
    const char *end[] = {"END"};
    const char *two[] = {"END", "Nx"};
    size_t safe = 99;
    size_t hit = mt_serve_stop_find(end, 1, "abEND", 5, &safe);

    tap_ok(hit == 2 && safe == 2, "a stop string that ends the text is a complete match (hit %zu, "
           "safe %zu)", hit, safe);
    hit = mt_serve_stop_find(two, 2, "abcEN", 5, &safe);
    tap_ok(hit == 6 && safe == 3, "two stop strings may begin at the tail: the earlier start is "
           "held back (hit %zu, safe %zu)", hit, safe);

    /* with tools, a stop string that is not yet whole is held back too, byte by byte */
    struct mt_serve_request q;
    memset(&q, 0, sizeof(q));
    q.api = MT_SERVE_API_CHAT;
    q.tools = (char *)"[]";
    q.stop[0] = "STOP";
    q.n_stop = 1;
    size_t sent = 0;
    size_t emit_to = 0;
    size_t stop_end = 0;
    bool block = false;
    bool ok = true;
    const char *answer = "Hi. STOP";
    for (size_t have = 1; have <= strlen(answer); have++) {
        bool stopped = mt_serve_answer_advance(&q, answer, have, sent, &block, &emit_to,
                                               &stop_end);
        ok = ok && emit_to <= 4 && stopped == (have == strlen(answer));
        sent = emit_to;
    }
    tap_ok(ok && sent == 4 && stop_end == 4 && !block,
           "tools and a stop string fed a byte at a time: no byte of the stop string streams "
           "(sent %zu, end %zu)", sent, stop_end);

    /* a stop string in the token that ends the answer: what is before it can no longer grow
     * into a calls block, so its last "\n\n" streams with the rest */
    struct fed f = feed(&q, "Hi\n\nSTOP", 8);
    tap_ok(strcmp(f.streamed, "Hi\n\n") == 0 && f.stopped && !f.block && f.end == 4,
           "a stop string right after \\n\\n: the \\n\\n streams (streamed %zu bytes, end %zu)",
           strlen(f.streamed), f.end);
    /* a calls block that begins inside what may still grow into a stop string: the stop
     * string's first byte, before the block, stays held too */
    q.stop[0] = "x\n\n<｜DSML｜function_callsY";
    f = feed(&q, "ax\n\n<｜DSML｜function_calls", 64);
    tap_ok(strcmp(f.streamed, "a") == 0 && f.block && !f.stopped,
           "a block start inside a partial stop string: only what is before both streams ('%s')",
           f.streamed);
    /* tools are a chat's: a completion never holds text back for a calls block */
    q.api = MT_SERVE_API_COMPLETION;
    tap_ok(!mt_serve_may_call_tools(&q), "a completion request may not call tools");
}

/* Error messages are valid UTF-8 whatever bytes they quote: each bad byte becomes '?'. */
static void
test_error_utf8(void)
{
    static const struct {
        const char *what;
        const char *in;
        const char *want;
    } cases[] = {
        {"U+1F600, a 4-byte character", "\xF0\x9F\x98\x80 ok", "\xF0\x9F\x98\x80 ok"},
        {"an overlong '/'", "a\xC0\xAF", "a??"},
        {"a UTF-16 surrogate (U+D800)", "\xED\xA0\x80", "???"},
        {"a code point past U+10FFFF", "\xF4\x90\x80\x80", "????"},
        {"U+00E9, a 2-byte character", "\xC3\xA9", "\xC3\xA9"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct mt_serve_error e;
        mt_serve_error_set(&e, 400, "invalid_request_error", NULL, NULL, "%s", cases[k].in);
        char *js = mt_serve_error_json(&e);
        json_t *v = js != NULL ? json_loads(js, 0, NULL) : NULL;
        const char *m = json_string_value(json_object_get(json_object_get(v, "error"),
                                                          "message"));
        tap_ok(m != NULL && strcmp(m, cases[k].want) == 0,
               "an error message quoting %s goes out as '%s' (%s)", cases[k].what,
               cases[k].want, js ? js : "NULL");
        json_decref(v);
        free(js);
    }
}

/* A chunk event's JSON object (after "data: "), NULL when it is not one. */
static json_t *
event_json(char *ev)
{
    json_t *v = ev != NULL && strncmp(ev, "data: ", 6) == 0 ? json_loads(ev + 6, 0, NULL) : NULL;
    free(ev);
    return v;
}

/*
 * Response JSON: text before tool calls, logprobs null when not asked for, token ids where
 * return_token_ids puts them (one prompt: beside the usage; several: in each choice), and a
 * stream's first and last chunks as OpenAI writes them.
 */
static void
test_responses(void)
{
    struct mt_serve_request r;
    struct mt_serve_origin o = {"cmpl-9", 5, "m", 0};
    static const struct mt_chat_tool_call call = {.name = "f", .arguments = "{}"};
    static const int32_t pids[] = {1, 2, 3};
    static const int32_t ids[] = {7, 8};
    json_t *v;

    if (parsed(MT_SERVE_API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], "
               "\"return_token_ids\": true}", &r, "a chat with return_token_ids")) {
        struct mt_serve_reply rep = {.content = "Let me check.", .content_len = 13,
                                     .finish = "tool_calls", .tool_calls = &call,
                                     .n_tool_calls = 1, .prompt_ids = pids, .n_prompt_ids = 3,
                                     .ids = ids, .n_ids = 2};
        char *js = mt_serve_reply_json(&r, &o, &rep);
        v = js != NULL ? json_loads(js, 0, NULL) : NULL;
        json_t *ch = json_array_get(json_object_get(v, "choices"), 0);
        json_t *msg = json_object_get(ch, "message");
        json_t *tid = json_object_get(ch, "token_ids");
        json_t *pid = json_object_get(v, "prompt_token_ids");
        tap_ok(json_is_string(json_object_get(msg, "content")) &&
                   strcmp(json_string_value(json_object_get(msg, "content")), "Let me check.") ==
                       0 &&
                   json_array_size(json_object_get(msg, "tool_calls")) == 1,
               "text before tool calls is the message's content (%s)", js ? js : "NULL");
        tap_ok(json_is_null(json_object_get(ch, "logprobs")),
               "logprobs not asked for: null (%s)", js ? js : "NULL");
        tap_ok(json_array_size(tid) == 2 && json_integer_value(json_array_get(tid, 1)) == 8 &&
                   json_array_size(pid) == 3 &&
                   json_integer_value(json_array_get(pid, 2)) == 3 &&
                   json_object_get(ch, "prompt_token_ids") == NULL,
               "return_token_ids, one prompt: token_ids in the choice, prompt_token_ids beside "
               "the usage (%s)", js ? js : "NULL");
        json_decref(v);
        free(js);
        v = event_json(mt_serve_usage_event(&r, &o, &rep));
        tap_ok(json_array_size(json_object_get(v, "prompt_token_ids")) == 3 &&
                   json_array_size(json_object_get(v, "token_ids")) == 2 &&
                   json_array_size(json_object_get(v, "choices")) == 0 &&
                   json_integer_value(json_object_get(json_object_get(v, "usage"),
                                                      "total_tokens")) == 0,
               "a usage chunk with return_token_ids carries both id lists");
        json_decref(v);

        /* a chat stream: the first chunk says the role with content "", the last is empty */
        v = event_json(mt_serve_chunk_event(&r, &o, "", 0, false, true, NULL, NULL));
        json_t *d = json_object_get(json_array_get(json_object_get(v, "choices"), 0), "delta");
        tap_ok(json_object_size(d) == 2 &&
                   strcmp(json_string_value(json_object_get(d, "role")), "assistant") == 0 &&
                   strcmp(json_string_value(json_object_get(d, "content")), "") == 0,
               "a stream's first chunk: delta {role: assistant, content: \"\"}");
        json_decref(v);
        v = event_json(mt_serve_chunk_event(&r, &o, "", 0, false, false, NULL, "stop"));
        json_t *c0 = json_array_get(json_object_get(v, "choices"), 0);
        d = json_object_get(c0, "delta");
        tap_ok(json_is_object(d) && json_object_size(d) == 0 &&
                   strcmp(json_string_value(json_object_get(c0, "finish_reason")), "stop") == 0,
               "a stream's last chunk: an empty delta and the finish_reason");
        json_decref(v);
        /* a choice that ends in its first chunk: the role, and no content "" to add up */
        v = event_json(mt_serve_chunk_event(&r, &o, "", 0, false, true, NULL, "length"));
        d = json_object_get(json_array_get(json_object_get(v, "choices"), 0), "delta");
        tap_ok(json_object_size(d) == 1 && json_object_get(d, "role") != NULL,
               "a first chunk that also finishes: delta {role} only (%zu keys)",
               json_object_size(d));
        json_decref(v);
        /* a client adds deltas up by tool_calls[i].index: each call says its own */
        static const struct mt_chat_tool_call two_calls[2] = {{.name = "f", .arguments = "{}"},
                                                              {.name = "g", .arguments = "[]"}};
        v = event_json(mt_serve_tool_calls_event(&r, &o, two_calls, 2));
        d = json_object_get(json_array_get(json_object_get(v, "choices"), 0), "delta");
        json_t *tc0 = json_array_get(json_object_get(d, "tool_calls"), 0);
        json_t *tc1 = json_array_get(json_object_get(d, "tool_calls"), 1);
        tap_ok(json_is_integer(json_object_get(tc0, "index")) &&
                   json_is_integer(json_object_get(tc1, "index")) &&
                   json_integer_value(json_object_get(tc0, "index")) == 0 &&
                   json_integer_value(json_object_get(tc1, "index")) == 1,
               "a stream's two tool calls carry index 0 and 1");
        json_decref(v);
        mt_serve_request_fini(&r);
    }
    if (parsed(MT_SERVE_API_COMPLETION, "{\"prompt\": \"a\", \"return_token_ids\": true}", &r,
               "one prompt with return_token_ids")) {
        struct mt_serve_reply rep = {.content = "x", .content_len = 1, .finish = "stop",
                                     .prompt_ids = pids, .n_prompt_ids = 3, .ids = ids,
                                     .n_ids = 2};
        char *js = mt_serve_reply_json(&r, &o, &rep);
        v = js != NULL ? json_loads(js, 0, NULL) : NULL;
        json_t *ch = json_array_get(json_object_get(v, "choices"), 0);
        tap_ok(json_array_size(json_object_get(v, "prompt_token_ids")) == 3 &&
                   json_object_get(ch, "prompt_token_ids") == NULL &&
                   json_array_size(json_object_get(ch, "token_ids")) == 2,
               "return_token_ids, a completion of one prompt: prompt_token_ids beside the usage, "
               "token_ids in the choice (%s)", js ? js : "NULL");
        json_decref(v);
        free(js);
        mt_serve_request_fini(&r);
    }
    if (parsed(MT_SERVE_API_COMPLETION, "{\"prompt\": [\"a\", \"b\"], \"return_token_ids\": true}",
               &r, "two prompts with return_token_ids")) {
        static const int32_t p2[] = {4};
        struct mt_serve_reply two[2] = {
            {.content = "x", .content_len = 1, .finish = "stop", .prompt_ids = pids,
             .n_prompt_ids = 3, .ids = ids, .n_ids = 2},
            {.content = "y", .content_len = 1, .finish = "stop", .prompt_ids = p2,
             .n_prompt_ids = 1, .ids = ids, .n_ids = 1},
        };
        char *js = mt_serve_replies_json(&r, &o, two, 2);
        v = js != NULL ? json_loads(js, 0, NULL) : NULL;
        json_t *c1 = json_array_get(json_object_get(v, "choices"), 1);
        tap_ok(strcmp(json_string_value(json_object_get(v, "object")), "text_completion") == 0,
               "a completion's reply is a text_completion");
        json_t *ch = event_json(mt_serve_chunk_event(&r, &o, "x", 1, false, false, NULL, NULL));
        tap_ok(strcmp(json_string_value(json_object_get(ch, "object")), "text_completion") == 0 &&
                   strcmp(json_string_value(json_object_get(json_array_get(
                              json_object_get(ch, "choices"), 0), "text")), "x") == 0,
               "a completion's stream chunk is a text_completion with the text");
        json_decref(ch);
        json_t *p = json_object_get(c1, "prompt_token_ids");
        tap_ok(json_array_size(p) == 1 && json_integer_value(json_array_get(p, 0)) == 4 &&
                   json_array_size(json_object_get(json_array_get(json_object_get(v, "choices"),
                                                                  0), "prompt_token_ids")) == 3 &&
                   json_object_get(v, "prompt_token_ids") == NULL,
               "return_token_ids, two prompts: each choice has its own prompt ids (%s)",
               js ? js : "NULL");
        json_decref(v);
        free(js);
        mt_serve_request_fini(&r);
    }
}

/*
 * A completion's logprobs (openai.h): the tokens' text, -inf written -9999.0, the prompt's
 * first token under echo (NaN: no log-probability) null with a null top, and text_offset
 * counting from the given offset by each token's bytes. The ids are the DeepSeek vocabulary's
 * (tests/data/tokenizer/tokenizer.json): "He" 3158, "llo" 61547, "a" 67.
 */
static void
test_completion_logprobs(void)
{
    struct mt_tokenizer *tok = NULL;
    struct mt_serve_request r;
    struct mt_serve_origin o = {"cmpl-3", 5, "m", 0};
    struct mt_logprob v[2];

    if (mt_tokenizer_load(tap_data_path("tokenizer"), &tok) != MT_OK) {
        tap_bail_out("cannot load tests/data/tokenizer");
    }
    memset(v, 0, sizeof(v));
    v[0].id = 3158;
    v[0].logprob = NAN;
    v[1].id = 61547;
    v[1].logprob = -INFINITY;
    v[1].n_top = 2;
    v[1].top_id[0] = 67;
    v[1].top_logprob[0] = -0.5f;
    v[1].top_id[1] = 3158;
    v[1].top_logprob[1] = -2.0f;
    if (parsed(MT_SERVE_API_COMPLETION, "{\"prompt\": \"p\", \"logprobs\": 2, \"echo\": true}", &r,
               "a completion with logprobs")) {
        struct mt_serve_reply rep = {.content = "Hello", .content_len = 5, .finish = "length",
                                     .logprobs = {.tok = tok, .v = v, .n = 2, .text_offset = 10}};
        char *js = mt_serve_reply_json(&r, &o, &rep);
        json_t *root = js != NULL ? json_loads(js, 0, NULL) : NULL;
        json_t *lp = json_object_get(json_array_get(json_object_get(root, "choices"), 0),
                                     "logprobs");
        json_t *tokens = json_object_get(lp, "tokens");
        json_t *lps = json_object_get(lp, "token_logprobs");
        json_t *tops = json_object_get(lp, "top_logprobs");
        json_t *offs = json_object_get(lp, "text_offset");
        tap_ok(json_array_size(tokens) == 2 &&
                   strcmp(json_string_value(json_array_get(tokens, 0)), "He") == 0 &&
                   strcmp(json_string_value(json_array_get(tokens, 1)), "llo") == 0,
               "completion logprobs: the tokens' text (%s)", js ? js : "NULL");
        tap_ok(json_is_null(json_array_get(lps, 0)) && json_is_null(json_array_get(tops, 0)) &&
                   json_real_value(json_array_get(lps, 1)) == -9999.0,
               "the echoed first token has null logprob and top; -inf is written -9999.0");
        tap_ok(json_real_value(json_object_get(json_array_get(tops, 1), "a")) == -0.5,
               "top_logprobs: an object of text to log-probability");
        tap_ok(json_object_size(json_array_get(tops, 1)) == 2 &&
                   json_real_value(json_object_get(json_array_get(tops, 1), "He")) == -2.0,
               "top_logprobs: every one of the token's two tops, \"He\" -2 the second");
        tap_ok(json_array_size(offs) == 2 && json_integer_value(json_array_get(offs, 0)) == 10 &&
                   json_integer_value(json_array_get(offs, 1)) == 12,
               "text_offset: from the given offset, each token's start (10, 12)");
        json_decref(root);
        free(js);
        mt_serve_request_fini(&r);
    }
    /* a chat's: {token, logprob, bytes, top_logprobs} each, refusal null; "Ã©" (619) is the
     * bytes of U+00E9, "Ã" (130) the byte 0xC3 alone (no whole character: U+FFFD, bytes exact),
     * 129000 a padding row of the embedding (no token: "" and no bytes) */
    memset(v, 0, sizeof(v));
    v[0].id = 619;
    v[0].logprob = -0.25f;
    v[0].n_top = 2;
    v[0].top_id[0] = 130;
    v[0].top_logprob[0] = -1.5f;
    v[0].top_id[1] = 67;
    v[0].top_logprob[1] = -2.5f;
    v[1].id = 129000;
    v[1].logprob = -3.0f;
    if (parsed(MT_SERVE_API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], "
               "\"logprobs\": true, \"top_logprobs\": 2}", &r, "a chat with logprobs")) {
        struct mt_serve_reply rep = {.content = "\xC3\xA9", .content_len = 2, .finish = "length",
                                     .logprobs = {.tok = tok, .v = v, .n = 2}};
        char *js = mt_serve_reply_json(&r, &o, &rep);
        json_t *root = js != NULL ? json_loads(js, 0, NULL) : NULL;
        json_t *lp = json_object_get(json_array_get(json_object_get(root, "choices"), 0),
                                     "logprobs");
        json_t *e0 = json_array_get(json_object_get(lp, "content"), 0);
        json_t *e1 = json_array_get(json_object_get(lp, "content"), 1);
        json_t *t0 = json_array_get(json_object_get(e0, "top_logprobs"), 0);
        json_t *b0 = json_object_get(e0, "bytes");
        json_t *tb = json_object_get(t0, "bytes");
        tap_ok(json_object_get(lp, "refusal") != NULL && json_is_null(json_object_get(lp,
                                                                                      "refusal")) &&
                   strcmp(json_string_value(json_object_get(e0, "token")), "\xC3\xA9") == 0 &&
                   json_real_value(json_object_get(e0, "logprob")) == -0.25 &&
                   json_array_size(b0) == 2 && json_integer_value(json_array_get(b0, 0)) == 195 &&
                   json_integer_value(json_array_get(b0, 1)) == 169,
               "chat logprobs: token, logprob, its bytes, refusal null (%s)", js ? js : "NULL");
        tap_ok(strcmp(json_string_value(json_object_get(t0, "token")), "\xEF\xBF\xBD") == 0 &&
                   json_real_value(json_object_get(t0, "logprob")) == -1.5 &&
                   json_array_size(tb) == 1 && json_integer_value(json_array_get(tb, 0)) == 195,
               "a top token of one byte 0xC3: text U+FFFD, bytes [195], its own logprob");
        json_t *t1 = json_array_get(json_object_get(e0, "top_logprobs"), 1);
        tap_ok(json_array_size(json_object_get(e0, "top_logprobs")) == 2 &&
                   json_is_string(json_object_get(t1, "token")) &&
                   strcmp(json_string_value(json_object_get(t1, "token")), "a") == 0 &&
                   json_real_value(json_object_get(t1, "logprob")) == -2.5,
               "chat top_logprobs: both of the token's two tops, \"a\" -2.5 the second");
        tap_ok(strcmp(json_string_value(json_object_get(e1, "token")), "") == 0 &&
                   json_array_size(json_object_get(e1, "bytes")) == 0,
               "an id of no token (a padding row): empty text and no bytes");
        json_decref(root);
        free(js);
        /* asked for, none to give (max_tokens reached at once): the reply's list is empty, a
         * chunk that brings no token has none */
        rep.logprobs.n = 0;
        js = mt_serve_reply_json(&r, &o, &rep);
        root = js != NULL ? json_loads(js, 0, NULL) : NULL;
        lp = json_object_get(json_array_get(json_object_get(root, "choices"), 0), "logprobs");
        tap_ok(json_is_array(json_object_get(lp, "content")) &&
                   json_array_size(json_object_get(lp, "content")) == 0,
               "logprobs of a reply of no token: content [] (%s)", js ? js : "NULL");
        json_decref(root);
        free(js);
        root = event_json(mt_serve_chunk_event(&r, &o, "", 0, false, false, &rep.logprobs,
                                               "length"));
        tap_ok(json_is_null(json_object_get(json_array_get(json_object_get(root, "choices"), 0),
                                            "logprobs")),
               "a chunk that brings no token: logprobs null");
        json_decref(root);
        mt_serve_request_fini(&r);
    }
    mt_tokenizer_destroy(tok);
}

int
main(void)
{
    struct mt_serve_request r;
    struct mt_serve_error e;
    mt_status_t st;

    tap_plan(0);
    mt_serve_limits_default(&lim);
    lim.max_messages = 3;
    mt_sampler_opts_default(&defaults);
    defaults.temperature = 1.0f;

    st =
        parse(MT_SERVE_API_CHAT,
              "{\"model\": \"m\", \"messages\": [{\"role\": \"system\", \"content\": \"be brief\"},"
              "{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"},"
              "{\"type\": \"text\", \"text\": \"b\"}]}], \"temperature\": 0, \"top_p\": 0.5,"
              "\"seed\": 7, \"max_tokens\": 9, \"stop\": [\"x\", \"\"], \"stream\": true,"
              "\"chat_template_kwargs\": {\"thinking\": true}, \"unknown\": 1}",
              &r, &e);
    tap_ok(st == MT_OK, "a full chat request parses (%s)", e.message);
    if (st == MT_OK) {
        tap_ok(r.n_msgs == 2 && r.msgs[0].role == MT_CHAT_SYSTEM &&
                   strcmp(r.msgs[1].content, "ab") == 0,
               "messages: roles, and text parts joined");
        tap_ok(r.sampler.temperature == 0 && r.sampler.top_p == 0.5f && r.seeded &&
                   r.sampler.seed == 7 && r.max_tokens == 9,
               "sampling fields and max_tokens");
        tap_ok(r.n_stop == 1 && strcmp(r.stop[0], "x") == 0 && r.stream && r.thinking,
               "stop strings (empty ones dropped), stream, thinking");
        mt_serve_request_fini(&r);
    }
    st = parse(MT_SERVE_API_CHAT,
               "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"tools\": [{\"type\":"
               " \"function\", \"function\": {\"name\": \"f\"}}], \"thinking\": {\"type\": "
               "\"disabled\"}}",
               &r, &e);
    tap_ok(st == MT_OK && r.n_msgs == 1 && r.msgs[0].role == MT_CHAT_USER &&
               r.msgs[0].tools != NULL && !r.thinking &&
               r.max_tokens == lim.default_max_tokens && r.sampler.temperature == 1.0f,
           "tools go with the first message (no message added); defaults fill what is left out");
    if (st == MT_OK) {
        struct mt_serve_origin o = {"chatcmpl-1", 5, "m", 0};
        struct mt_serve_reply rep = {.content = "hi", .content_len = 2, .finish = "stop",
                                     .prompt_tokens = 4, .cached_tokens = 1,
                                     .completion_tokens = 2};
        char *js = mt_serve_reply_json(&r, &o, &rep);
        json_t *v = js != NULL ? json_loads(js, 0, NULL) : NULL;
        tap_ok(
            v != NULL &&
                strcmp(json_string_value(json_object_get(v, "object")), "chat.completion") == 0 &&
                json_integer_value(json_object_get(json_object_get(v, "usage"), "total_tokens")) ==
                    6,
            "a reply is a chat.completion with usage (%s)", js ? js : "NULL");
        tap_ok(json_integer_value(json_object_get(json_object_get(json_object_get(v, "usage"),
                                                                  "prompt_tokens_details"),
                                                  "cached_tokens")) == 1,
               "the usage's prompt_tokens_details.cached_tokens is the reply's (1)");
        json_decref(v);
        free(js);
        char *ev = mt_serve_chunk_event(&r, &o, "yo", 2, true, false, NULL, NULL);
        tap_ok(ev != NULL && strncmp(ev, "data: {", 7) == 0 &&
                   strstr(ev, "\"reasoning_content\":\"yo\"") != NULL &&
                   strcmp(ev + strlen(ev) - 2, "\n\n") == 0,
               "a reasoning chunk is one event with reasoning_content");
        free(ev);

        /* a reply that ended in tool calls, as OpenAI writes one; its message sent back in
         * the next request renders the calls as the model wrote them */
        static const char model_text[] =
            "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
            "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
            "<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n"
            "</｜DSML｜invoke>\n</｜DSML｜function_calls>";
        struct mt_chat_parsed_calls pc;
        st = mt_chat_parse_tool_calls(model_text, strlen(model_text), &pc);
        if (tap_ok(st == MT_OK && pc.n == 1, "the model's calls parse (%zu)", pc.n)) {
            struct mt_serve_reply trep = {.content = "", .content_len = 0,
                                          .finish = "tool_calls", .tool_calls = pc.calls,
                                          .n_tool_calls = pc.n};
            js = mt_serve_reply_json(&r, &o, &trep);
            v = js != NULL ? json_loads(js, 0, NULL) : NULL;
            json_t *ch = json_array_get(json_object_get(v, "choices"), 0);
            json_t *msg = json_object_get(ch, "message");
            json_t *tc = json_array_get(json_object_get(msg, "tool_calls"), 0);
            json_t *fn = json_object_get(tc, "function");
            tap_ok(json_is_null(json_object_get(msg, "content")) &&
                       strcmp(json_string_value(json_object_get(ch, "finish_reason")),
                              "tool_calls") == 0 &&
                       strcmp(json_string_value(json_object_get(tc, "id")),
                              "call_chatcmpl-1_0") == 0 &&
                       strcmp(json_string_value(json_object_get(tc, "type")), "function") == 0 &&
                       strcmp(json_string_value(json_object_get(fn, "name")), "get_weather") ==
                           0 &&
                       strcmp(json_string_value(json_object_get(fn, "arguments")),
                              "{\"city\": \"Paris\", \"days\": 3}") == 0 &&
                       json_object_get(tc, "index") == NULL,
                   "tool calls in a reply: content null, id, type, name, arguments as JSON "
                   "text, finish_reason tool_calls (%s)", js != NULL ? js : "NULL");
            char *m = json_dumps(msg, JSON_COMPACT);
            char body[2048];
            snprintf(body, sizeof(body),
                     "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, %s, "
                     "{\"role\": \"tool\", \"tool_call_id\": \"call_chatcmpl-1_0\", "
                     "\"content\": \"sunny\"}]}",
                     m != NULL ? m : "null");
            struct mt_serve_request r2;
            char *text = NULL;
            st = parse(MT_SERVE_API_CHAT, body, &r2, &e);
            if (st == MT_OK) {
                st = mt_chat_render(r2.msgs, r2.n_msgs, false, &text);
                mt_serve_request_fini(&r2);
            }
            tap_ok(st == MT_OK && text != NULL &&
                       strstr(text, "</think>\n\n<｜DSML｜function_calls>") != NULL &&
                       strstr(text, model_text) != NULL,
                   "sent back, the reply's message renders the calls the model wrote (%s)",
                   st == MT_OK ? "ok" : e.message);
            free(text);
            free(m);
            json_decref(v);
            free(js);
            ev = mt_serve_tool_calls_event(&r, &o, pc.calls, pc.n);
            json_t *ej = ev != NULL && strncmp(ev, "data: ", 6) == 0
                             ? json_loads(ev + 6, 0, NULL)
                             : NULL;
            json_t *d = json_object_get(json_array_get(json_object_get(ej, "choices"), 0),
                                        "delta");
            json_t *dt = json_array_get(json_object_get(d, "tool_calls"), 0);
            tap_ok(dt != NULL && json_integer_value(json_object_get(dt, "index")) == 0 &&
                       json_object_get(dt, "id") != NULL &&
                       strcmp(json_string_value(json_object_get(
                                  json_object_get(dt, "function"), "arguments")),
                              "{\"city\": \"Paris\", \"days\": 3}") == 0 &&
                       strcmp(json_string_value(json_object_get(ej, "object")),
                              "chat.completion.chunk") == 0,
                   "a stream's tool calls: one chunk, delta.tool_calls with index and the whole "
                   "function (%s)", ev != NULL ? ev : "NULL");
            json_decref(ej);
            free(ev);

            /* n = 2: the choices in order with their indexes, the usage adding up their
             * tokens, tool-call ids unique across choices, chunks that say their choice */
            struct mt_serve_reply two[2] = {trep, rep};
            two[0].prompt_tokens = 7;
            two[0].completion_tokens = 3;
            two[1].completion_tokens = 5;
            two[1].tool_calls = pc.calls;
            two[1].n_tool_calls = pc.n;
            js = mt_serve_replies_json(&r, &o, two, 2);
            v = js != NULL ? json_loads(js, 0, NULL) : NULL;
            json_t *chs = json_object_get(v, "choices");
            json_t *u = json_object_get(v, "usage");
            const char *id0 = json_string_value(json_object_get(json_array_get(json_object_get(
                json_object_get(json_array_get(chs, 0), "message"), "tool_calls"), 0), "id"));
            const char *id1 = json_string_value(json_object_get(json_array_get(json_object_get(
                json_object_get(json_array_get(chs, 1), "message"), "tool_calls"), 0), "id"));
            tap_ok(json_array_size(chs) == 2 &&
                       json_integer_value(json_object_get(json_array_get(chs, 0), "index")) == 0 &&
                       json_integer_value(json_object_get(json_array_get(chs, 1), "index")) == 1 &&
                       json_integer_value(json_object_get(u, "completion_tokens")) == 8 &&
                       json_integer_value(json_object_get(u, "prompt_tokens")) == 7 &&
                       id0 != NULL && id1 != NULL && strcmp(id0, "call_chatcmpl-1_0") == 0 &&
                       strcmp(id1, "call_chatcmpl-1_1_0") == 0,
                   "n = 2: two choices, indexes 0 and 1, 3 + 5 completion tokens, call ids %s "
                   "and %s (%s)", id0 ? id0 : "-", id1 ? id1 : "-", js ? js : "NULL");
            json_decref(v);
            free(js);
            struct mt_serve_origin o1 = o;
            o1.index = 1;
            ev = mt_serve_chunk_event(&r, &o1, "x", 1, false, false, NULL, NULL);
            tap_ok(ev != NULL && strstr(ev, "\"index\":1") != NULL,
                   "a chunk of the second choice says index 1 (%s)", ev ? ev : "NULL");
            free(ev);
            mt_chat_parsed_calls_fini(&pc);
        }
        mt_serve_request_fini(&r);
    }
    /* the chat encoder's errors name a message by its index: the client's, also with tools */
    st = parse(MT_SERVE_API_CHAT,
               "{\"messages\": [{\"role\": \"tool\", \"content\": \"42\"}, {\"role\": \"user\", "
               "\"content\": \"q\"}], \"tools\": [{\"type\": \"function\", \"function\": "
               "{\"name\": \"f\"}}]}",
               &r, &e);
    if (tap_ok(st == MT_OK, "a tool result first, with tools, parses (%s)", e.message)) {
        char *text = NULL;
        mt_log_set_quiet(true);
        st = mt_chat_render(r.msgs, r.n_msgs, false, &text);
        mt_log_set_quiet(false);
        tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "message 0 ") != NULL,
               "... and the encoder's error names the client's messages[0]: %s", mt_last_error());
        free(text);
        mt_serve_request_fini(&r);
    }
    /* arguments are JSON text for the client: an integer past int64 in them reaches the prompt */
    st = parse(MT_SERVE_API_CHAT,
               "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": "
               "\"assistant\", \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": "
               "\"f\", \"arguments\": \"{\\\"id\\\": 123456789012345678901234567890}\"}}]}]}",
               &r, &e);
    if (tap_ok(st == MT_OK, "a tool call with an integer past int64 parses (%s)", e.message)) {
        char *text = NULL;
        st = mt_chat_render(r.msgs, r.n_msgs, false, &text);
        tap_ok(st == MT_OK &&
                   strstr(text, "\"id\" string=\"false\">123456789012345678901234567890<") != NULL,
               "... and its digits reach the prompt (%s)", st == MT_OK ? "ok" : mt_last_error());
        free(text);
        mt_serve_request_fini(&r);
    }
    st = parse(MT_SERVE_API_COMPLETION, "{\"prompt\": [\"abc\"], \"max_tokens\": 0}", &r, &e);
    tap_ok(st == MT_OK && r.n_prompts == 1 && r.prompts[0].len == 3 && r.max_tokens == 0,
           "a completion prompt may be an array of one string");
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    static const char *const id_prompts[] = {"[0, 7, 2147483647]", "[[0, 7, 2147483647]]"};
    for (int k = 0; k < 2; k++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"prompt\": %s, \"echo\": true}", id_prompts[k]);
        st = parse(MT_SERVE_API_COMPLETION, body, &r, &e);
        const struct mt_serve_prompt *p = st == MT_OK ? &r.prompts[0] : NULL;
        tap_ok(st == MT_OK && r.n_prompts == 1 && p->text == NULL && p->n_ids == 3 &&
                   p->ids[0] == 0 && p->ids[1] == 7 && p->ids[2] == INT32_MAX && r.echo,
               "a completion prompt of token ids: %s, echo (%s)", id_prompts[k], e.message);
        if (st == MT_OK) {
            mt_serve_request_fini(&r);
        }
    }
    /* several prompts, each with n choices */
    st = parse(MT_SERVE_API_COMPLETION, "{\"prompt\": [\"ab\", \"\", \"cde\"], \"n\": 2}", &r, &e);
    tap_ok(st == MT_OK && r.n_prompts == 3 && r.prompts[0].len == 2 && r.prompts[1].len == 0 &&
               r.prompts[2].len == 3 && strcmp(r.prompts[2].text, "cde") == 0 && r.n == 2,
           "three prompts as strings, n = 2 (%s)", e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    st = parse(MT_SERVE_API_COMPLETION, "{\"prompt\": [[1, 2], [3]]}", &r, &e);
    tap_ok(st == MT_OK && r.n_prompts == 2 && r.prompts[0].n_ids == 2 && r.prompts[1].n_ids == 1 &&
               r.prompts[1].ids[0] == 3 && r.prompts[0].text == NULL,
           "two prompts of token ids (%s)", e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    {
        char body[512] = "{\"prompt\": [";
        for (int k = 0; k <= MT_SERVE_MAX_PROMPTS; k++) {
            strcat(body, k > 0 ? ", \"p\"" : "\"p\"");
        }
        strcat(body, "]}");
        st = parse(MT_SERVE_API_COMPLETION, body, &r, &e);
        tap_ok(st != MT_OK && e.http == 400 && strcmp(e.param, "prompt") == 0,
               "%d prompts: 400 (%s)", MT_SERVE_MAX_PROMPTS + 1, e.message);
    }
    st = parse(MT_SERVE_API_COMPLETION, "{\"prompt\": [\"a\", \"b\", \"c\", \"d\", \"e\"], "
               "\"n\": 16}", &r, &e);
    tap_ok(st != MT_OK && e.http == 400 && strcmp(e.param, "n") == 0,
           "5 prompts with n = 16 (80 choices): 400 (%s)", e.message);
    static const char *const bad_prompts[] = {
        "[]", "[[]]", "[1, -2]", "[1, 2147483648]", "[1, 2.5]", "[1, \"a\"]", "[\"a\", [1]]",
        "[[1], \"b\"]", "[[1], [2, -1]]", "[[1], []]", "[\"a\", 5]", "{}", "5", "[[\"a\"]]",
    };
    for (size_t k = 0; k < sizeof(bad_prompts) / sizeof(bad_prompts[0]); k++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"prompt\": %s}", bad_prompts[k]);
        st = parse(MT_SERVE_API_COMPLETION, body, &r, &e);
        tap_ok(st != MT_OK && e.http == 400 && strcmp(e.param, "prompt") == 0,
               "a completion prompt %s: 400 (%s)", bad_prompts[k], e.message);
    }
    st = parse(MT_SERVE_API_COMPLETION, "{\"prompt\": \"p\", \"echo\": 1}", &r, &e);
    tap_ok(st != MT_OK && e.http == 400 && strcmp(e.param, "echo") == 0,
           "echo not a boolean: 400 (%s)", e.message);

    refused("{\"messages\": [", 400, "", "malformed JSON");
    refused("[1]", 400, "", "a body that is not an object");
    refused("{\"messages\": []}", 400, "messages", "no messages");
    refused("{\"messages\": [{\"role\": \"user\"}]}", 400, "messages[0].content",
            "a user message without content");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", 400, "messages[0].content",
            "content of the wrong type");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", 400,
            "messages[0].content", "an image part");
    refused("{\"model\": \"other\", \"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}",
            404, "model", "another model");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"temperature\": 3}", 400,
            "temperature", "temperature out of range");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"max_tokens\": 1e9}", 400,
            "max_tokens", "max_tokens not an integer");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"max_tokens\": 99999}",
            400, "max_tokens", "max_tokens over the limit");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"n\": 17}", 400, "n",
            "n = 17");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"n\": 0}", 400, "n",
            "n = 0");
    st = parse(MT_SERVE_API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], "
               "\"n\": 16}", &r, &e);
    tap_ok(st == MT_OK && r.n == 16, "n = 16 is accepted (%s)", e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    /* fields that cannot be honoured: refused unless at their defaults, which clients send */
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"best_of\": 3}", 400,
            "best_of", "best_of = 3");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"top_logprobs\": 2}",
            400, "top_logprobs", "top_logprobs = 2 without logprobs");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"logprobs\": 1}",
            400, "logprobs", "a chat's logprobs that is not a boolean");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"logprobs\": true, "
            "\"top_logprobs\": 21}",
            400, "top_logprobs", "top_logprobs = 21");
    {
        static const struct {
            enum mt_serve_api api;
            const char *body;
            int want;
        } lp[] = {
            {MT_SERVE_API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}", -1},
            {MT_SERVE_API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], "
                                "\"logprobs\": false, \"top_logprobs\": 0}", -1},
            {MT_SERVE_API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], "
                                "\"logprobs\": true}", 0},
            {MT_SERVE_API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], "
                                "\"logprobs\": true, \"top_logprobs\": 20}", 20},
            {MT_SERVE_API_COMPLETION, "{\"prompt\": \"p\"}", -1},
            {MT_SERVE_API_COMPLETION, "{\"prompt\": \"p\", \"logprobs\": null}", -1},
            {MT_SERVE_API_COMPLETION, "{\"prompt\": \"p\", \"logprobs\": 0}", 0},
            {MT_SERVE_API_COMPLETION, "{\"prompt\": \"p\", \"logprobs\": 5}", 5},
            {MT_SERVE_API_COMPLETION, "{\"prompt\": \"p\", \"logprobs\": 6}", -2},
            {MT_SERVE_API_COMPLETION, "{\"prompt\": \"p\", \"logprobs\": true}", -2},
            {MT_SERVE_API_COMPLETION, "{\"prompt\": \"p\", \"logprobs\": 1, \"top_logprobs\": 1}",
             -2},
        };
        for (size_t i = 0; i < sizeof(lp) / sizeof(lp[0]); i++) {
            st = parse(lp[i].api, lp[i].body, &r, &e);
            if (lp[i].want == -2) {
                tap_ok(st != MT_OK && e.http == 400, "refused: %s (%s)", lp[i].body, e.message);
                continue;
            }
            tap_ok(st == MT_OK && r.logprobs == lp[i].want, "%s: logprobs %d (%s)", lp[i].body,
                   st == MT_OK ? r.logprobs : -9, e.message);
            if (st == MT_OK) {
                mt_serve_request_fini(&r);
            }
        }
    }
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], "
            "\"presence_penalty\": 2.5}",
            400, "presence_penalty", "presence_penalty = 2.5");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], "
            "\"frequency_penalty\": -2.01}",
            400, "frequency_penalty", "frequency_penalty = -2.01");
    static const char *const bad_bias[] = {
        "[]", "5", "{\"x\": 1}", "{\"-1\": 1}", "{\"1.5\": 1}", "{\"\": 1}",
        "{\"2147483648\": 1}", "{\"12345678901\": 1}", "{\"7\": 101}", "{\"7\": \"1\"}",
        "{\"7\": null}", "{\"7\": 1, \"07\": 2}",
    };
    for (size_t k = 0; k < sizeof(bad_bias) / sizeof(bad_bias[0]); k++) {
        char body[160];
        snprintf(body, sizeof(body), "{\"messages\": [{\"role\": \"user\", \"content\": "
                 "\"q\"}], \"logit_bias\": %s}", bad_bias[k]);
        refused(body, 400, "logit_bias", bad_bias[k]);
    }
    st = parse(MT_SERVE_API_CHAT,
               "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], "
               "\"presence_penalty\": 1.5, \"frequency_penalty\": -2, "
               "\"logit_bias\": {\"11\": 5, \"0\": -100, \"2147483647\": 0.25}}",
               &r, &e);
    tap_ok(st == MT_OK && r.presence_penalty == 1.5f && r.frequency_penalty == -2.0f &&
               r.n_bias == 3 && r.bias[0].id == 11 && r.bias[0].bias == 5.0f &&
               r.bias[1].id == 0 && r.bias[1].bias == -100.0f && r.bias[2].id == INT32_MAX &&
               r.bias[2].bias == 0.25f,
           "penalties and a logit_bias of three tokens, in order (%s)", e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    st = parse(MT_SERVE_API_CHAT,
               "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"best_of\": 1, "
               "\"top_logprobs\": 0, \"presence_penalty\": 0, \"frequency_penalty\": 0.0, "
               "\"logit_bias\": {}}",
               &r, &e);
    tap_ok(st == MT_OK, "those fields at their defaults are accepted (%s)", e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"stop\": [1]}", 400,
            "stop", "a stop that is not a string");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"stream\": \"yes\"}", 400,
            "stream", "stream not a boolean");
    refused("{\"messages\": [{\"role\": \"u\", \"content\": \"q\"}, {\"role\": \"user\", "
            "\"content\": \"q\"}, {\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"user\", "
            "\"content\": \"q\"}]}",
            400, "messages", "more messages than the limit");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"messages\": []}", 400,
            "", "a duplicated key");
    st = parse(MT_SERVE_API_CHAT, "42", &r, &e);
    tap_ok(st != MT_OK && e.http == 400 && strstr(e.message, "must be a JSON object") != NULL,
           "a number for a body: not an object, though valid JSON (%s)", e.message);
#define Q "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], "
    refused(Q "\"max_tokens\": -1}", 400, "max_tokens", "max_tokens = -1");
    refused(Q "\"max_completion_tokens\": 3, \"max_tokens\": \"x\"}", 400, "max_tokens",
            "a bad max_tokens beside max_completion_tokens");
#define TOOLS "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}, " \
              "{\"type\": \"function\", \"function\": {\"name\": \"get-weather_2\"}}]"
    refused(Q "\"tool_choice\": \"required\"}", 400, "tool_choice",
            "tool_choice required without tools");
    refused(Q "\"tool_choice\": \"required\", \"tools\": []}", 400, "tool_choice",
            "tool_choice required with no tools");
    refused(Q "\"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"g\"}}, "
            TOOLS "}", 400, "tool_choice", "tool_choice naming a function not in tools");
    refused(Q "\"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"f\"}}}",
            400, "tool_choice", "tool_choice naming a function without tools");
    refused(Q "\"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"a\\\"b\"}},"
            " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"a\\\"b\"}}]}",
            400, "tool_choice", "tool_choice naming a function with a quote in its name");
    refused(Q "\"tool_choice\": {\"type\": \"function\", \"function\": {}}, " TOOLS "}", 400,
            "tool_choice", "tool_choice as an object without a name");
    refused(Q "\"tool_choice\": {\"type\": \"x\", \"function\": {\"name\": \"f\"}}, " TOOLS
            "}", 400, "tool_choice", "tool_choice of a type other than function");
    refused(Q "\"tool_choice\": \"any\", " TOOLS "}", 400, "tool_choice",
            "tool_choice an unknown string");
    refused(Q "\"tool_choice\": 12345}", 400, "tool_choice", "tool_choice a number");
    st = parse(MT_SERVE_API_CHAT, Q "\"tool_choice\": \"required\", " TOOLS "}", &r, &e);
    tap_ok(st == MT_OK && r.force_call && r.forced_tool == NULL && r.tools != NULL,
           "tool_choice required: a call is forced, any of the tools (%s)", e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    st = parse(MT_SERVE_API_CHAT,
               Q "\"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": "
                 "\"get-weather_2\"}}, " TOOLS "}",
               &r, &e);
    tap_ok(st == MT_OK && r.force_call && r.forced_tool != NULL &&
               strcmp(r.forced_tool, "get-weather_2") == 0 && r.tools != NULL,
           "tool_choice naming a function: that call is forced (%s)", e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    st = parse(MT_SERVE_API_CHAT, Q "\"tool_choice\": \"auto\", " TOOLS "}", &r, &e);
    tap_ok(st == MT_OK && !r.force_call && r.tools != NULL,
           "tool_choice auto: nothing is forced (%s)", e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
#undef TOOLS
    refused(Q "\"response_format\": {\"type\": \"json_object\"}}", 400, "messages",
            "json_object when no message says json");
    refused(Q "\"response_format\": {\"type\": \"json_schema\", \"json_schema\": "
              "{\"name\": \"s\", \"schema\": {}, \"strict\": true}}}", 400, "response_format",
            "json_schema, strict, with a schema {} (no object schema at the root)");
    refused(Q "\"response_format\": {\"type\": \"json_schema\", \"json_schema\": "
              "{\"name\": \"s\", \"strict\": true, \"schema\": {\"type\": \"object\", "
              "\"allOf\": []}}}}", 400, "response_format",
            "json_schema, strict, with allOf (not held: refused, not weakened)");
    st = parse(MT_SERVE_API_CHAT, Q "\"response_format\": {\"type\": \"json_schema\", "
               "\"json_schema\": {\"name\": \"s\", \"schema\": {\"type\": \"object\", "
               "\"allOf\": []}}}}", &r, &e);
    tap_ok(st == MT_OK && r.json_object && r.held == NULL && r.schema != NULL,
           "... not strict: accepted, the answer held to an object only (%s)", e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    refused(Q "\"response_format\": {\"type\": \"json_schema\", \"json_schema\": "
              "{\"name\": \"s\", \"schema\": {\"type\": \"array\"}}}}", 400, "response_format",
            "json_schema whose type is not object");
    refused(Q "\"response_format\": {\"type\": \"json_schema\", \"json_schema\": "
              "{\"schema\": {}}}}", 400, "response_format", "json_schema without a name");
    refused(Q "\"response_format\": {\"type\": \"json_schema\", \"json_schema\": "
              "{\"name\": \"a b\", \"schema\": {}}}}", 400, "response_format",
            "json_schema with a name that is not [A-Za-z0-9_-]");
    refused(Q "\"response_format\": {\"type\": \"json_schema\", \"json_schema\": "
              "{\"name\": \"s\"}}}", 400, "response_format", "json_schema without a schema");
    st = parse(MT_SERVE_API_COMPLETION, "{\"prompt\": \"p\", \"response_format\": {\"type\": "
               "\"json_schema\", \"json_schema\": {\"name\": \"s\", \"schema\": {}}}}", &r, &e);
    tap_ok(st != MT_OK && e.http == 400 && strcmp(e.param, "response_format") == 0,
           "json_schema on a completion: 400 (%s)", e.message);
    st = parse(MT_SERVE_API_CHAT,
               "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"response_format\": "
               "{\"type\": \"json_schema\", \"json_schema\": {\"name\": \"person\", \"strict\": "
               "false, \"schema\": {\"type\": \"object\", \"properties\": {\"age\": {\"type\": "
               "\"integer\"}}}}}}", &r, &e);
    if (tap_ok(st == MT_OK && r.json_object && r.schema != NULL && r.held != NULL &&
                   r.msgs[0].response_format == r.schema,
               "json_schema, strict false, no message says json: held to the schema, which goes "
               "on the first message (%s)", e.message)) {
        char *text = NULL;
        st = mt_chat_render(r.msgs, r.n_msgs, false, &text);
        tap_ok(st == MT_OK &&
                   strstr(text, "<｜begin▁of▁sentence｜>\n\n## Response Format:\n\nYou MUST "
                                "strictly adhere to the following schema to reply:\n"
                                "{\"type\": \"object\", \"properties\": {\"age\": "
                                "{\"type\": \"integer\"}}}<｜User｜>q") != NULL,
               "... rendered as V3.2's template writes a response format (%s)",
               st == MT_OK ? text : mt_last_error());
        free(text);
        mt_serve_request_fini(&r);
    }
    refused(Q "\"response_format\": {\"type\": \"yaml\"}}", 400, "response_format",
            "an unknown response_format type");
#define JQ "{\"messages\": [{\"role\": \"system\", \"content\": \"Reply in JSON.\"}, " \
           "{\"role\": \"user\", \"content\": \"q\"}], " \
           "\"response_format\": {\"type\": \"json_object\"}"
    refused(JQ ", \"tool_choice\": \"required\", \"tools\": [{\"type\": \"function\", "
               "\"function\": {\"name\": \"f\"}}]}", 400, "response_format",
            "json_object with a forced tool call");
    refused(JQ ", \"ignore_eos\": true}", 400, "ignore_eos", "json_object with ignore_eos");
    st = parse(MT_SERVE_API_CHAT, JQ "}", &r, &e);
    tap_ok(st == MT_OK && r.json_object, "json_object when a message says JSON (any case): "
           "the answer is held to JSON (%s)", e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    st = parse(MT_SERVE_API_CHAT, Q "\"n\": 1}", &r, &e);
    tap_ok(st == MT_OK && !r.json_object, "no response_format: free text (%s)", e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
#undef JQ
    refused(Q "\"response_format\": \"text\"}", 400, "response_format",
            "a response_format that is not an object");
    refused(Q "\"parallel_tool_calls\": \"x\"}", 400, "parallel_tool_calls",
            "parallel_tool_calls not a boolean");
    refused(Q "\"user\": 5}", 400, "user", "user not a string");
    st = parse(MT_SERVE_API_CHAT,
               Q "\"max_tokens\": 9, \"max_completion_tokens\": 3, \"tool_choice\": \"auto\", "
                 "\"response_format\": {\"type\": \"text\"}, \"parallel_tool_calls\": false, "
                 "\"user\": \"u\", \"tools\": [{\"type\": \"function\", \"function\": "
                 "{\"name\": \"f\"}}]}",
               &r, &e);
    tap_ok(st == MT_OK && r.max_tokens == 3 && r.tools != NULL,
           "max_completion_tokens wins over max_tokens; tool_choice auto tells the tools (%s)",
           e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    refused(Q "\"tool_choice\": \"none\", \"tools\": [1]}", 400, "tools",
            "tool_choice none with a malformed tools array");
    st = parse(MT_SERVE_API_CHAT, Q "\"max_tokens\": 99999, \"max_completion_tokens\": 5}", &r,
               &e);
    tap_ok(st == MT_OK && r.max_tokens == 5,
           "max_tokens over the limit beside a max_completion_tokens within it: that one counts "
           "(%s)", e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    st = parse(MT_SERVE_API_CHAT,
               Q "\"tool_choice\": \"none\", \"tools\": [{\"type\": \"function\", "
                 "\"function\": {\"name\": \"f\"}}]}",
               &r, &e);
    tap_ok(st == MT_OK && r.tools == NULL && r.msgs[0].tools == NULL,
           "tool_choice none: the tools are not told (%s)", e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    /* bounds are inclusive where OpenAI's are: each edge value is accepted, the next refused */
    st = parse(MT_SERVE_API_CHAT,
               Q "\"temperature\": 2, \"top_p\": 1, \"top_k\": -1, \"max_tokens\": 4096}", &r,
               &e);
    tap_ok(st == MT_OK && r.sampler.temperature == 2.0f && r.sampler.top_p == 1.0f &&
               r.sampler.top_k == -1 && r.max_tokens == lim.max_tokens,
           "temperature 2, top_p 1, top_k -1 (off) and max_tokens at the server's limit are "
           "accepted (%s)", e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    refused(Q "\"best_of\": 2}", 400, "best_of", "best_of 2 (only its default, 1, is taken)");
    refused(Q "\"stream_options\": true}", 400, "stream_options",
            "stream_options that is not an object");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", "
            "\"text\": \"x\"}]}]}",
            400, "messages[0].content", "a content part of a type other than text");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": "
            "\"assistant\", \"tool_calls\": [{\"type\": \"function\", \"function\": "
            "{\"name\": \"f\\u0000g\", \"arguments\": \"{}\"}}]}]}",
            400, "messages[1].tool_calls", "a tool call name holding a NUL byte");
    refused(Q "\"top_p\": 0}", 400, "top_p", "top_p 0 (no token left to sample)");
    refused(Q "\"top_k\": -2}", 400, "top_k", "top_k -2");
    st = parse(MT_SERVE_API_CHAT, Q "\"top_k\": -9223372036854775807}", &r, &e);
    tap_ok(st != MT_OK && e.http == 400 && strcmp(e.param, "top_k") == 0 &&
               strstr(e.message, "-1 or 0 (no limit)") != NULL &&
               strstr(e.message, "not -9223372036854775807") != NULL,
           "top_k -(2^63 - 1): 400, the message says what k may be and repeats it (%s)",
           e.message);
    /* top_k past MT_SERVE_MAX_TOP_K (any k past the vocabulary keeps every token) is taken as
     * it, up to a client's 2^63 - 1 for "no limit"; k below it is kept as sent */
    static const struct {
        const char *k;
        int want;
    } ks[] = {{"1073741823", MT_SERVE_MAX_TOP_K - 1},
              {"1073741824", MT_SERVE_MAX_TOP_K},
              {"1073741825", MT_SERVE_MAX_TOP_K},
              {"2147483647", MT_SERVE_MAX_TOP_K},
              {"9223372036854775807", MT_SERVE_MAX_TOP_K}};
    for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
        char body[128];

        snprintf(body, sizeof(body), Q "\"top_k\": %s}", ks[i].k);
        st = parse(MT_SERVE_API_CHAT, body, &r, &e);
        tap_ok(st == MT_OK && r.sampler.top_k == ks[i].want, "top_k %s is taken as %d (%s)",
               ks[i].k, st == MT_OK ? r.sampler.top_k : 0, e.message);
        if (st == MT_OK) {
            mt_serve_request_fini(&r);
        }
    }
    refused(Q "\"max_tokens\": 4097}", 400, "max_tokens", "max_tokens one past the limit");
    st = parse(MT_SERVE_API_CHAT,
               "{\"messages\": [{\"role\": \"developer\", \"content\": \"d\"}, {\"role\": "
               "\"user\", \"content\": \"q\"}], \"tools\": [], "
               "\"chat_template_kwargs\": {\"enable_thinking\": true}, \"stop\": \"\"}",
               &r, &e);
    tap_ok(st == MT_OK && r.msgs[0].role == MT_CHAT_SYSTEM && r.tools == NULL &&
               r.msgs[0].tools == NULL && r.thinking && r.n_stop == 0,
           "developer is a system message; tools [] tells no tools; enable_thinking; stop \"\" "
           "is no stop (%s)", e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    st = parse(MT_SERVE_API_CHAT, Q "\"stop\": [\"a\", \"b\", \"c\", \"d\"]}", &r, &e);
    tap_ok(st == MT_OK && r.n_stop == MT_SERVE_MAX_STOP, "%d stop strings are accepted (%s)",
           MT_SERVE_MAX_STOP, e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    refused(Q "\"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", 400, "stop", "5 stop strings");
    {
        /* OpenAI's rule for a function name: 1 to 64 of [A-Za-z0-9_-] */
        char body[512], name[66];
        memset(name, 'f', 64);
        name[64] = '\0';
        snprintf(body, sizeof(body),
                 Q "\"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"%s\"}}, "
                   "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"%s\"}}]}",
                 name, name);
        st = parse(MT_SERVE_API_CHAT, body, &r, &e);
        tap_ok(st == MT_OK && r.force_call && r.forced_tool != NULL &&
                   strlen(r.forced_tool) == 64,
               "tool_choice naming a function of 64 characters forces it (%s)", e.message);
        if (st == MT_OK) {
            mt_serve_request_fini(&r);
        }
        strcpy(name + 64, "f");
        snprintf(body, sizeof(body),
                 Q "\"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"%s\"}}, "
                   "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"%s\"}}]}",
                 name, name);
        refused(body, 400, "tool_choice", "tool_choice naming a function of 65 characters");
    }
    /* json_object: the word "json" anywhere in a message, even last or after a NUL byte */
    st = parse(MT_SERVE_API_CHAT,
               "{\"messages\": [{\"role\": \"user\", \"content\": \"answer in json\"}], "
               "\"response_format\": {\"type\": \"json_object\"}}",
               &r, &e);
    tap_ok(st == MT_OK && r.json_object, "json_object when a message ends with 'json' (%s)",
           e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    st = parse(MT_SERVE_API_CHAT,
               "{\"messages\": [{\"role\": \"user\", \"content\": \"a\\u0000 JSON\"}], "
               "\"response_format\": {\"type\": \"json_object\"}}",
               &r, &e);
    tap_ok(st == MT_OK && r.json_object, "json_object when 'JSON' follows a NUL byte (%s)",
           e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"json\"}], \"stop\": \"}\", "
            "\"response_format\": {\"type\": \"json_object\"}}",
            400, "stop", "json_object with a stop string");
    st = parse(MT_SERVE_API_COMPLETION,
               "{\"prompt\": \"p\", \"response_format\": {\"type\": \"json_object\"}}", &r, &e);
    tap_ok(st == MT_OK && r.json_object,
           "json_object for a completion, which has no messages to say 'json' (%s)", e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    {
        /* MT_SERVE_MAX_PROMPTS prompts, and MT_SERVE_MAX_CHOICES = prompts x n, are allowed */
        char body[1024] = "{\"prompt\": [";
        for (int k = 0; k < MT_SERVE_MAX_PROMPTS; k++) {
            strcat(body, k ? ", \"p\"" : "\"p\"");
        }
        strcat(body, "]}");
        st = parse(MT_SERVE_API_COMPLETION, body, &r, &e);
        tap_ok(st == MT_OK && r.n_prompts == MT_SERVE_MAX_PROMPTS, "%d prompts are accepted (%s)",
               MT_SERVE_MAX_PROMPTS, e.message);
        if (st == MT_OK) {
            mt_serve_request_fini(&r);
        }
        strcpy(body + strlen(body) - 2, ", \"p\"]}");
        st = parse(MT_SERVE_API_COMPLETION, body, &r, &e);
        tap_ok(st != MT_OK && e.http == 400 && strcmp(e.param, "prompt") == 0,
               "%d prompts are refused (%s)", MT_SERVE_MAX_PROMPTS + 1, e.message);
        st = parse(MT_SERVE_API_COMPLETION,
                   "{\"prompt\": [\"a\", \"b\", \"c\", \"d\"], \"n\": 16}", &r, &e);
        tap_ok(st == MT_OK && r.n == 16 && r.n_prompts == 4,
               "4 prompts with n = 16: %d choices, accepted (%s)", MT_SERVE_MAX_CHOICES,
               e.message);
        if (st == MT_OK) {
            mt_serve_request_fini(&r);
        }
        st = parse(MT_SERVE_API_COMPLETION,
                   "{\"prompt\": [\"a\", \"b\", \"c\", \"d\", \"e\"], \"n\": 13}", &r, &e);
        tap_ok(st != MT_OK && e.http == 400 && strcmp(e.param, "n") == 0,
               "5 prompts with n = 13: 65 choices, refused (%s)", e.message);
    }
#undef Q
    st = parse(MT_SERVE_API_COMPLETION, "{\"prompt\": \"p\", \"suffix\": \"s\"}", &r, &e);
    tap_ok(st != MT_OK && e.http == 400 && strcmp(e.param, "suffix") == 0,
           "a completion's suffix is refused: %d, '%s' (%s)", e.http, e.param, e.message);
    st = parse(MT_SERVE_API_COMPLETION, "{\"prompt\": \"p\", \"suffix\": \"\"}", &r, &e);
    tap_ok(st == MT_OK, "an empty suffix is accepted (%s)", e.message);
    if (st == MT_OK) {
        mt_serve_request_fini(&r);
    }
    st = parse(MT_SERVE_API_COMPLETION, "{\"prompt\": \"p\", \"suffix\": 5}", &r, &e);
    tap_ok(st != MT_OK && e.http == 400 && strcmp(e.param, "suffix") == 0,
           "a suffix that is not a string is refused too: %d, '%s' (%s)", e.http, e.param,
           e.message);

    /*
     * A reply holding a NUL byte goes out as "\u0000" and must come back in the next request
     * whole: message text carries its length. Strings read as C strings refuse a NUL, which
     * would cut them short.
     */
    {
        struct mt_serve_origin o = {"chatcmpl-2", 5, "m", 0};
        struct mt_serve_reply rep = {.content = "a\0b",
                                     .content_len = 3,
                                     .reasoning = "r\0",
                                     .reasoning_len = 2,
                                     .finish = "stop"};
        char body[512];
        char *js = NULL;
        json_t *v = NULL;
        json_t *msg = NULL;
        char *m = NULL;
        st = parse(MT_SERVE_API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}",
                   &r, &e);
        if (st == MT_OK) {
            js = mt_serve_reply_json(&r, &o, &rep);
            mt_serve_request_fini(&r);
        }
        v = js != NULL ? json_loads(js, JSON_ALLOW_NUL, NULL) : NULL;
        msg = json_object_get(json_array_get(json_object_get(v, "choices"), 0), "message");
        json_object_set_new(msg, "role", json_string("assistant"));
        m = json_dumps(msg, JSON_COMPACT);
        snprintf(body, sizeof(body),
                 "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", "
                 "\"text\": \"q\\u0000\"}, {\"type\": \"text\", \"text\": \"r\"}]}, %s]}",
                 m != NULL ? m : "null");
        st = parse(MT_SERVE_API_CHAT, body, &r, &e);
        tap_ok(st == MT_OK && r.n_msgs == 2 && r.msgs[0].content_len == 3 &&
                   memcmp(r.msgs[0].content, "q\0r", 3) == 0 && r.msgs[1].content_len == 3 &&
                   memcmp(r.msgs[1].content, "a\0b", 3) == 0 && r.msgs[1].reasoning_len == 2 &&
                   memcmp(r.msgs[1].reasoning, "r\0", 2) == 0,
               "a reply with a NUL byte comes back whole in the next request (%s): %s",
               st == MT_OK ? "ok" : e.message, m != NULL ? m : "NULL");
        if (st == MT_OK) {
            mt_serve_request_fini(&r);
        }
        free(m);
        json_decref(v);
        free(js);
    }
    refused("{\"messages\": [{\"role\": \"user\\u0000\", \"content\": \"q\"}]}", 400,
            "messages[0].role", "a role with a NUL");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"stop\": \"a\\u0000b\"}",
            400, "stop", "a stop string with a NUL");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", "
            "\"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", "
            "\"arguments\": \"{}\\u0000x\"}}]}]}",
            400, "messages[1].tool_calls", "tool call arguments with a NUL");

    mt_serve_error_set(&e, 401, "invalid_request_error", "invalid_api_key", NULL, "no \"key\"");
    char *ej = mt_serve_error_json(&e);
    tap_ok(ej != NULL && strcmp(ej, "{\"error\":{\"message\":\"no \\\"key\\\"\",\"type\":"
                                    "\"invalid_request_error\",\"param\":null,\"code\":"
                                    "\"invalid_api_key\"}}") == 0,
           "an error is OpenAI's error object (%s)", ej ? ej : "NULL");
    free(ej);

    const char *stops[] = {"END", "xy"};
    size_t safe;
    size_t hit = mt_serve_stop_find(stops, 2, "abcEN", 5, &safe);
    tap_ok(hit == 6 && safe == 3, "a partial stop string is held back (hit %zu, safe %zu)", hit,
           safe);
    hit = mt_serve_stop_find(stops, 2, "abENDxy", 7, &safe);
    tap_ok(hit == 2 && safe == 2, "the earliest complete stop string wins (hit %zu)", hit);
    hit = mt_serve_stop_find(stops, 0, "abc", 3, &safe);
    tap_ok(hit == 4 && safe == 3, "no stop strings: all is safe");
    /* the stream's hold-back: stop strings and a tool-calls block (server.c job_add_content) */
    {
#define CALLS "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n\n</｜DSML｜invoke>\n" \
              "</｜DSML｜function_calls>"
        struct mt_serve_request q;
        struct fed f;
        memset(&q, 0, sizeof(q));
        q.api = MT_SERVE_API_CHAT;
        q.tools = (char *)"[]";
        f = feed(&q, "Hi." CALLS, 3);
        tap_ok(strcmp(f.streamed, "Hi.") == 0 && f.block && !f.stopped &&
                   f.end == strlen("Hi." CALLS),
               "tools: the text before a calls block streams, the block (and its \\n\\n) is "
               "held: '%s'", f.streamed);
        f = feed(&q, "a\nb\n\nc\n", 1);
        tap_ok(strcmp(f.streamed, "a\nb\n\nc") == 0 && !f.block,
               "tools: newlines that begin no block stream once the next byte shows it; a last "
               "\\n waits for the end");
        q.stop[0] = "\nObservation:";
        q.n_stop = 1;
        f = feed(&q, "Hi." CALLS "\nObservation: sunny", 2);
        tap_ok(strcmp(f.streamed, "Hi.") == 0 && f.block && f.stopped &&
                   f.end == strlen("Hi." CALLS),
               "tools and a stop string after the block: the block stays held, whole, for the "
               "calls (not streamed as text too): '%s'", f.streamed);
        q.stop[0] = "invoke";
        f = feed(&q, "Hi." CALLS, 5);
        tap_ok(strcmp(f.streamed, "Hi.") == 0 && f.block && f.stopped &&
                   f.end == strlen("Hi.\n\n<｜DSML｜function_calls>\n<｜DSML｜"),
               "a stop string inside the block: the answer ends there, the cut block held for "
               "the caller (who sends it as text)");
        q.stop[0] = "STOP";
        f = feed(&q, "Hi. STOP" CALLS, 4);
        tap_ok(strcmp(f.streamed, "Hi. ") == 0 && !f.block && f.stopped && f.end == 4,
               "a stop string before the block: as without tools");
        q.n_stop = 0;
        q.tools = NULL;
        f = feed(&q, "Hi." CALLS, 3);
        tap_ok(strcmp(f.streamed, "Hi." CALLS) == 0 && !f.block,
               "without tools the block is text, streamed as it comes");
#undef CALLS
    }
    test_request_fields();
    test_stop_edges();
    test_error_utf8();
    test_responses();
    test_completion_logprobs();
    return tap_done();
}
