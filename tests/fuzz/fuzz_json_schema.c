/* SPDX-License-Identifier: MIT */
/*
 * fuzz_json_schema.c - libFuzzer target: an arbitrary schema (a client's response_format) and an
 * arbitrary reply, read by the reader that holds a reply to the schema
 * (runtime/text/json_schema.c).
 *
 * The one idea: a separate validator (tests/json_validate.c) is the oracle. Whatever schema
 * compiles, a reply the reader calls whole is JSON to jansson and an instance of the schema to
 * the validator. And the way bytes arrive changes nothing: a refused byte leaves the state as it
 * was, and the reply fed in two pieces gets the verdict it gets byte by byte. A violation traps,
 * so libFuzzer reports it as a crash. Build and run: tests/fuzz/run.sh.
 *
 * Input: the schema's JSON text, a NUL byte, the reply (the first byte of the reply also picks
 * where it is cut in two, and whether the compile is lenient).
 *
 * fuzz-sources: runtime/text/json_schema.c runtime/text/json_prefix.c runtime/base/status.c
 * fuzz-sources: tests/json_validate.c
 */
#include <config.h>

#include "runtime/base/status.h"
#include "runtime/text/json_schema.h"
#include "tests/json_validate.h"

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* the used part of a state (what mt_json_schema_state_copy copies) */
static bool
same_state(const struct mt_json_schema_state *a, const struct mt_json_schema_state *b)
{
    return memcmp(a, b, offsetof(struct mt_json_schema_state, frames)) == 0 &&
           memcmp(a->frames, b->frames, a->depth * sizeof(a->frames[0])) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    if (nul == NULL || nul + 1 == data + size) {
        return 0;
    }
    size_t schema_len = (size_t)(nul - data);
    const char *text = (const char *)nul + 1;
    size_t len = size - schema_len - 1;
    bool lenient = (uint8_t)text[0] & 1;
    size_t cut = ((uint8_t)text[0] >> 1) % (len + 1);

    json_error_t err;
    json_t *schema = json_loadb((const char *)data, schema_len, 0, &err);
    struct mt_json_schema *s = NULL;
    mt_log_set_quiet(true);
    mt_status_t st = schema != NULL ? mt_json_schema_compile(schema, lenient, &s) : MT_ERR_INVAL;
    mt_log_set_quiet(false);
    if (st != MT_OK) {
        json_decref(schema);
        return 0;
    }

    struct mt_json_schema_state a, before;
    size_t at = len;
    mt_json_schema_start(&a);
    for (size_t i = 0; i < len; i++) {
        mt_json_schema_state_copy(&before, &a);
        if (mt_json_schema_feed(s, &a, text + i, 1) != MT_JSON_OK) {
            if (!same_state(&before, &a)) {
                __builtin_trap(); /* a refused byte changed the state */
            }
            at = i;
            break;
        }
    }
    bool whole = at == len && mt_json_schema_complete(&a);

    struct mt_json_schema_state b;
    mt_json_schema_start(&b);
    enum mt_json_verdict v1 = mt_json_schema_feed(s, &b, text, cut);
    enum mt_json_verdict v2 = v1 == MT_JSON_OK ? mt_json_schema_feed(s, &b, text + cut, len - cut)
                                               : v1;
    if ((v2 == MT_JSON_OK) != (at == len) ||
        (v2 == MT_JSON_OK && mt_json_schema_complete(&b) != whole)) {
        __builtin_trap(); /* two pieces read otherwise than byte by byte */
    }

    if (whole) {
        json_t *x = json_loadb(text, len, JSON_ALLOW_NUL, &err);
        /* jansson's own limit, not JSON's: a key may not hold \u0000 */
        bool key_nul = x == NULL && strstr(err.text, "NUL byte in object key") != NULL;
        if ((x == NULL && !key_nul) || (x != NULL && !json_validate(x, schema, schema))) {
            __builtin_trap(); /* we let through what is no instance */
        }
        json_decref(x);
    }
    mt_json_schema_destroy(s);
    json_decref(schema);
    return 0;
}
