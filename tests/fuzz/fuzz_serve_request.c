/* SPDX-License-Identifier: MIT */
/*
 * fuzz_serve_request.c - libFuzzer target: an arbitrary byte string as the body of a request to
 * moetier serve (POST /v1/chat/completions or /v1/completions), which any local client, or a
 * web page, can send.
 *
 * The one idea: the body goes through mt_serve_request_parse exactly as the server hands it over
 * (the first byte picks the API), and what it accepts must be what the worker may run: at least one
 * message or a prompt (text or token ids), max_tokens, n, penalties and biases within their limits,
 * at most 4 stop strings, none empty, logprobs within their bounds, a forced tool call naming one
 * of the tools in characters that cannot break the calls block; a chat renders in the prompt format
 * (the chat encoder's own checks may still refuse it, as the server then answers 400); an error has
 * a status and a message and its JSON body builds. The same bytes, split at their first NUL into a
 * Host and an Origin header, go through the browser guard (runtime/serve/guard.c). A violation
 * traps. Build and run: tests/fuzz/run.sh serve_request.
 *
 * fuzz-sources: runtime/serve/openai.c runtime/serve/guard.c runtime/text/chat.c
 * fuzz-sources: runtime/text/chat_parse.c runtime/text/logprob.c runtime/base/json_text.c
 * fuzz-sources: runtime/text/tokenizer.c runtime/text/sampler.c runtime/base/status.c
 * fuzz-sources: runtime/base/json_num.c runtime/base/json_kind.c runtime/base/rng.c
 * fuzz-sources: runtime/base/file_util.c
 * fuzz-sources: runtime/base/out_file.c runtime/text/json_schema.c runtime/text/json_prefix.c
 * fuzz-pkg: libpcre2-8
 */
#include <config.h>

#include "runtime/serve/guard.h"
#include "runtime/serve/openai.h"
#include "runtime/base/status.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
guard(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 2);

    if (s == NULL) {
        return;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    s[size + 1] = '\0';
    const char *host = s;
    const char *origin = s + strlen(s) + 1; /* "" when there was no NUL */
    /* the first string, taken by --allow-origin where it is a valid origin, allows itself */
    const char *allowed[1] = {host};
    int n_allowed = mt_serve_guard_origin_ok(host) ? 1 : 0;
    enum mt_serve_guard g = mt_serve_guard_check(host, origin[0] != '\0' ? origin : NULL, true,
                                                 allowed, n_allowed);

    if (g != MT_SERVE_GUARD_OK && g != MT_SERVE_GUARD_BAD_HOST &&
        g != MT_SERVE_GUARD_CROSS_ORIGIN) {
        __builtin_trap();
    }
    free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mt_serve_limits lim;
    struct mt_sampler_opts defaults;
    struct mt_serve_request r;
    struct mt_serve_error e;
    enum mt_serve_api api;

    mt_log_set_quiet(true);
    guard(data, size);
    if (size == 0) {
        return 0;
    }
    mt_serve_limits_default(&lim);
    mt_sampler_opts_default(&defaults);
    api = (data[0] & 1) != 0 ? MT_SERVE_API_COMPLETION : MT_SERVE_API_CHAT;
    memset(&e, 0, sizeof(e));
    if (mt_serve_request_parse(api, (const char *)data + 1, size - 1, "m", &lim, &defaults, &r,
                               &e) != MT_OK) {
        char *body = mt_serve_error_json(&e);

        if (e.http < 400 || e.http > 599 || e.message[0] == '\0' || body == NULL) {
            __builtin_trap();
        }
        free(body);
        return 0;
    }
    if (r.max_tokens < 0 || r.max_tokens > lim.max_tokens || r.n_stop < 0 ||
        r.n_stop > MT_SERVE_MAX_STOP || r.n < 1 || r.n > MT_SERVE_MAX_N ||
        !(r.presence_penalty >= -2 && r.presence_penalty <= 2) ||
        !(r.frequency_penalty >= -2 && r.frequency_penalty <= 2) || r.n_bias < 0 ||
        r.n_bias > MT_SERVE_MAX_BIAS || (r.n_bias > 0) != (r.bias != NULL)) {
        __builtin_trap();
    }
    for (int i = 0; i < r.n_bias; i++) {
        if (r.bias[i].id < 0 || !(r.bias[i].bias >= -100 && r.bias[i].bias <= 100)) {
            __builtin_trap();
        }
    }
    for (int i = 0; i < r.n_stop; i++) {
        if (r.stop[i] == NULL || r.stop[i][0] == '\0') {
            __builtin_trap();
        }
    }
    if (api == MT_SERVE_API_CHAT) {
        char *text = NULL;

        if (r.n_msgs == 0 || r.n_msgs > lim.max_messages || r.msgs == NULL) {
            __builtin_trap();
        }
        if (mt_chat_render(r.msgs, r.n_msgs, r.thinking, &text) == MT_OK && text == NULL) {
            __builtin_trap();
        }
        free(text);
        /* a forced call names one of the tools, in characters that cannot break the block */
        if ((r.force_call && r.tools == NULL) || (r.forced_tool != NULL && !r.force_call) ||
            (r.forced_tool != NULL &&
             (strstr(r.tools, r.forced_tool) == NULL || strpbrk(r.forced_tool, "\"<>") != NULL)) ||
            r.logprobs < -1 || r.logprobs > MT_LOGPROB_MAX_TOP) {
            __builtin_trap();
        }
        /* a compiled schema goes with its text in the prompt and JSON mode, and renders */
        if ((r.held != NULL && (r.schema == NULL || !r.json_object)) ||
            (r.schema != NULL && r.msgs[0].response_format != r.schema)) {
            __builtin_trap();
        }
    } else {
        /* each prompt is text or ids, never both nor an empty id list; prompts x n bounded */
        if (r.n_prompts < 1 || r.n_prompts > MT_SERVE_MAX_PROMPTS || r.logprobs < -1 ||
            r.logprobs > 5 ||
            (r.n_prompts > 1 && (size_t)r.n * r.n_prompts > MT_SERVE_MAX_CHOICES)) {
            __builtin_trap();
        }
        for (size_t i = 0; i < r.n_prompts; i++) {
            const struct mt_serve_prompt *p = &r.prompts[i];
            if ((p->text == NULL) == (p->ids == NULL) || (p->ids != NULL && p->n_ids == 0)) {
                __builtin_trap();
            }
        }
    }
    mt_serve_request_fini(&r);
    return 0;
}
