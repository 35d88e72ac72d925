/* SPDX-License-Identifier: MIT */
/*
 * openai.h - OpenAI's API as JSON: request bodies in, response bodies, stream chunks and errors
 * out. No sockets and no engine here, so all of it is tested as plain functions.
 *
 * The one idea: a request is validated completely when it is parsed, before it waits in the
 * queue, so every bad input gets its own 4xx with a message that names the field, and the worker
 * only ever sees requests it can run. A parsed request keeps the jansson tree it came from: its
 * strings (message contents, stop strings, the prompt) point into that tree and live as long as
 * the request.
 *
 * Mapped fields. Chat (/v1/chat/completions): model, messages (roles system, user, assistant, tool;
 * content as a string or an array of text parts; an assistant's reasoning_content and tool_calls),
 * tools and tool_choice ("auto"; "none": the tools are not told; "required" or a named function:
 * the server opens the call for the model), logprobs and top_logprobs, thinking mode
 * (chat_template_kwargs.thinking or .enable_thinking, or thinking.type "enabled" / "disabled", as
 * vLLM, SGLang and DeepSeek's API spell it), temperature, top_p, top_k, seed, max_tokens (or
 * max_completion_tokens), stop (a string or up to 4), n (up to 16), presence_penalty,
 * frequency_penalty, logit_bias, response_format ("text", "json_object": the answer is held to
 * one JSON object; "json_schema": to an instance of the schema, which also goes into the system
 * prompt as V3.2's template writes it), stream, stream_options.include_usage, and our
 * return_token_ids (the prompt and reply ids in the response, to compare with `moetier run`).
 * Completions (/v1/completions): prompt (a string, token ids, or an array of up to
 * MT_SERVE_MAX_PROMPTS of either, each with n choices) instead of messages, echo, and logprobs as
 * a count; a text prompt is encoded as `moetier run -p` does (BOS, special tokens recognized),
 * token ids run as given. Unknown fields are ignored, as OpenAI's server does;
 * fields we cannot honour are refused unless they hold their defaults (best_of > 1, a
 * strict json_schema beyond what is held, a completion's suffix). Message text (content,
 * reasoning_content) and the prompt may hold NUL bytes ("\u0000": a model's reply can, and the
 * client sends it back); other strings may not.
 */
#ifndef MT_SERVE_OPENAI_H
#define MT_SERVE_OPENAI_H

#include "runtime/base/status.h"
#include "runtime/text/chat.h"
#include "runtime/text/logprob.h"
#include "runtime/text/sampler.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mt_json_schema;
struct mt_tokenizer;

#define MT_SERVE_MAX_STOP 4 /* OpenAI's limit on stop strings */
#define MT_SERVE_MAX_N 16   /* choices a request may ask for (n) */
#define MT_SERVE_MAX_PROMPTS 64 /* prompts one completion request may hold */
#define MT_SERVE_MAX_CHOICES 64 /* prompts x n */
#define MT_SERVE_MAX_BIAS 1024 /* tokens a logit_bias may name */
/* where top_k is cut: any k at or above the vocabulary keeps every token, as -1 and 0 do, so a
 * larger k (a client's INT_MAX for "no limit") is taken as this one, which keeps it an int */
#define MT_SERVE_MAX_TOP_K (1 << 30)

/* What one request may ask for; each bound is refused with a 4xx naming it. */
struct mt_serve_limits {
    size_t max_body;         /* bytes of a request body (413 beyond) */
    size_t max_messages;     /* messages of a chat request */
    long max_tokens;         /* the largest max_tokens a request may ask for */
    long default_max_tokens; /* max_tokens when a request gives none */
    int max_queue;           /* requests waiting behind the running one (429 beyond) */
};

/* 1 MiB, 256 messages, 4096 tokens (512 by default), 64 waiting. */
void mt_serve_limits_default(struct mt_serve_limits *lim);

/* An error as OpenAI reports it: {"error": {"message", "type", "param", "code"}}. */
struct mt_serve_error {
    int http;         /* 400, 401, 404, 405, 413, 429, 500, 503 */
    const char *type; /* "invalid_request_error", "authentication_error", "server_error", ... */
    const char *code; /* NULL, or "model_not_found", "invalid_api_key", ... */
    char param[64];   /* the offending field, "" when none */
    char message[512];
};

/* Fill e; a NULL code or param writes JSON null. */
void mt_serve_error_set(struct mt_serve_error *e, int http, const char *type, const char *code,
                        const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* The error's JSON body (malloc'ed, NUL-ended), NULL only when out of memory. */
char *mt_serve_error_json(const struct mt_serve_error *e);

enum mt_serve_api {
    MT_SERVE_API_CHAT,       /* /v1/chat/completions */
    MT_SERVE_API_COMPLETION, /* /v1/completions */
};

/* A completion's prompt: text, or token ids run as given. */
struct mt_serve_prompt {
    const char *text;   /* into the request's tree, or NULL */
    size_t len;
    int32_t *ids;       /* owned, or NULL */
    size_t n_ids;
};

struct mt_serve_request {
    enum mt_serve_api api;
    json_t *root;                           /* owned: the body; strings below point into it */
    struct mt_chat_msg *msgs;               /* owned, [n_msgs] (chat) */
    size_t n_msgs;
    struct mt_chat_tool_call *calls;        /* owned: every message's tool calls, in one array */
    char *tools;                            /* owned: the tools array as JSON text, or NULL */
    char *schema;                           /* owned: response_format json_schema's schema as
                                               JSON text (in the system prompt), or NULL */
    struct mt_json_schema *held;            /* owned: ... compiled, to hold the answer to it;
                                               NULL: held to an object only */
    bool force_call;                        /* tool_choice "required" or a named function */
    const char *forced_tool;                /* ... the named one, or NULL (any of the tools) */
    struct mt_serve_prompt *prompts;        /* completion: owned, [n_prompts], each with n
                                               choices (choice p * n + i: prompt p's i-th) */
    size_t n_prompts;
    bool echo;                              /* completion: the prompt begins the text (and its
                                               tokens the logprobs) */
    bool thinking;                          /* chat: V3.2's thinking mode */
    bool json_object;                       /* response_format json_object or json_schema:
                                               the answer is held to one JSON object */
    bool stream;                            /* answer as server-sent events */
    bool include_usage;                     /* stream: a last chunk with the usage */
    bool return_token_ids;                  /* prompt_token_ids and token_ids in the answer */
    bool ignore_eos;                        /* generate past end-of-text (as vLLM's ignore_eos) */
    int n;                                  /* choices, generated one after another */
    float presence_penalty;                 /* OpenAI's penalties, -2 to 2 (session.h) */
    float frequency_penalty;
    struct mt_logit_bias *bias;             /* owned: logit_bias, [n_bias] */
    int n_bias;
    int logprobs;                           /* -1: none; else each answer token's log-probability
                                               with this many most likely tokens (chat:
                                               top_logprobs; completion: logprobs) */
    long max_tokens;                        /* tokens to generate at most */
    struct mt_sampler_opts sampler;         /* temperature, top_p, top_k, seed */
    bool seeded;                            /* seed given (else the server picks one) */
    const char *stop[MT_SERVE_MAX_STOP];    /* stop strings, none empty */
    int n_stop;
};

/*
 * Parse and validate a request body of len bytes for api. model_id is the one model served: a
 * request naming another gets 404 model_not_found (an absent model means this one). Sampling
 * fields the request leaves out come from defaults. On success *req_out owns what it holds
 * (mt_serve_request_fini). On failure returns MT_ERR_INVAL (or MT_ERR_NOMEM) with *err_out filled
 * and nothing held; nothing is logged, since a client's mistake is not the server's.
 */
mt_status_t mt_serve_request_parse(enum mt_serve_api api, const char *body, size_t len,
                                   const char *model_id, const struct mt_serve_limits *lim,
                                   const struct mt_sampler_opts *defaults,
                                   struct mt_serve_request *req_out,
                                   struct mt_serve_error *err_out);
void mt_serve_request_fini(struct mt_serve_request *req);

/* ---- responses -------------------------------------------------------------------------- */

/* Where a response comes from: the request's id ("chatcmpl-7"), time and model, and the choice
 * (of n) a stream's chunk belongs to. */
struct mt_serve_origin {
    const char *id;
    long long created; /* Unix seconds */
    const char *model;
    int index;         /* the choice, from 0 */
};

/*
 * Log-probabilities of some of a reply's tokens (in order), with the tokenizer for their text.
 * Chat gives each as {"token", "logprob", "bytes", "top_logprobs"} under logprobs.content; a
 * completion as the lists tokens, token_logprobs, top_logprobs and text_offset (bytes: v[0]'s
 * text begins text_offset bytes into the answer). A log-probability of -inf is written -9999.0,
 * as OpenAI does (JSON has no infinity); in a token's text each byte that is no whole UTF-8
 * character shows as U+FFFD (chat's bytes are exact).
 */
struct mt_serve_logprobs {
    const struct mt_tokenizer *tok;
    const struct mt_logprob *v;
    size_t n;
    size_t text_offset;
};

/* A finished reply, for a non-streamed response. */
struct mt_serve_reply {
    const char *content; /* the answer (the completion's text), valid UTF-8 */
    size_t content_len;
    const char *reasoning; /* thinking mode: the reasoning, else NULL */
    size_t reasoning_len;
    const char *finish;   /* "stop", "length" or "tool_calls" */
    /* chat: the tool calls that ended the reply (content is then the text before them) */
    const struct mt_chat_tool_call *tool_calls;
    size_t n_tool_calls;
    size_t prompt_tokens; /* usage */
    size_t cached_tokens; /* of them, reused from the KV cache */
    long completion_tokens;
    const int32_t *prompt_ids; /* return_token_ids: the prompt and reply ids */
    size_t n_prompt_ids;
    const int32_t *ids;
    size_t n_ids;
    struct mt_serve_logprobs logprobs; /* the answer's tokens (tok NULL: not asked for) */
};

/* The chat.completion or text_completion object of a reply (malloc'ed JSON text). */
char *mt_serve_reply_json(const struct mt_serve_request *req, const struct mt_serve_origin *o,
                          const struct mt_serve_reply *r);

/* The same with n choices (n > 1), one a reply: choice i from r[i], the usage from r[0] with
 * every choice's completion tokens added up. With several prompts, return_token_ids puts each
 * choice's prompt ids in the choice (r[i]'s), not beside the usage. */
char *mt_serve_replies_json(const struct mt_serve_request *req, const struct mt_serve_origin *o,
                            const struct mt_serve_reply *r, size_t n);

/*
 * One streamed chunk as a whole server-sent event ("data: {...}\n\n", malloc'ed): text (len
 * bytes, may be 0) as the answer or, with reasoning, as reasoning_content; role adds the
 * assistant role (the first chunk of a chat stream); lp (NULL or none: null) the log-probabilities
 * of the tokens the chunk brings; finish (NULL while going on) ends the choice. Chat chunks are
 * chat.completion.chunk objects, completion chunks text_completion.
 */
char *mt_serve_chunk_event(const struct mt_serve_request *req, const struct mt_serve_origin *o,
                           const char *text, size_t len, bool reasoning, bool role,
                           const struct mt_serve_logprobs *lp, const char *finish);

/*
 * A chat stream's tool calls, all in one chunk: delta.tool_calls[i] with its index, id, type and
 * the whole function (name and arguments), as a client that adds deltas up expects them.
 */
char *mt_serve_tool_calls_event(const struct mt_serve_request *req,
                                const struct mt_serve_origin *o,
                                const struct mt_chat_tool_call *calls, size_t n);

/* The last chunk of a stream with include_usage: no choices, the usage (and token ids). */
char *mt_serve_usage_event(const struct mt_serve_request *req, const struct mt_serve_origin *o,
                           const struct mt_serve_reply *r);

/* An error inside a stream, after the 200 has gone out: "data: {"error": ...}\n\n". */
char *mt_serve_error_event(const struct mt_serve_error *e);

/* GET /v1/models: a list of the one model. */
char *mt_serve_models_json(const char *model_id, long long created);

/* GET /v1/models/{id} (OpenAI clients' models.retrieve): the model object. */
char *mt_serve_model_json(const char *model_id, long long created);

/* ---- stop strings ------------------------------------------------------------------------- */

/*
 * Look for the stop strings stops[0..n) in text[0..len). Returns the offset of the earliest
 * complete match, or len + 1 when there is none; then *safe_out is how much of text can be sent
 * now: the text before the earliest place where a stop string might begin and be completed by
 * text still to come (that tail is held back). With n == 0 everything is safe.
 */
size_t mt_serve_stop_find(const char *const *stops, int n, const char *text, size_t len,
                          size_t *safe_out);

/* Whether a request's answer may end in tool calls: a chat request that told the model tools. */
bool mt_serve_may_call_tools(const struct mt_serve_request *req);

/*
 * The answer so far, text[0..len), of which text[0..sent) has been streamed: *emit_to (>= sent)
 * is how far it may be streamed now. Text that may still be part of a stop string is held back,
 * and, where the model may call tools, everything from the start of a tool-calls block on
 * (mt_chat_tool_calls_start, or what may grow into it), which *tool_block then records (it stays
 * set: pass it back each call). Returns true when a stop string ended the answer: *end is then
 * where (the text after it is dropped; a block the stop string cut stays held, for the caller to
 * parse or send as text), else *end == len.
 */
bool mt_serve_answer_advance(const struct mt_serve_request *req, const char *text, size_t len,
                             size_t sent, bool *tool_block, size_t *emit_to, size_t *end);

#endif /* MT_SERVE_OPENAI_H */
