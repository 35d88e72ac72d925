/* SPDX-License-Identifier: MIT */
/*
 * fuzz_json_prefix.c - libFuzzer target: an arbitrary byte string as a model's answer in JSON
 * mode, read by the recognizer that holds it to JSON (runtime/text/json_prefix.c).
 *
 * The one idea: jansson, an independent parser, is the oracle. What the recognizer calls a whole
 * JSON text, jansson parses (an object when the top level must be one); what jansson parses, the
 * recognizer calls whole or refuses only at one of its bounds (MT_JSON_LIMIT). And the way bytes
 * arrive changes nothing: the text fed in two pieces gets the verdict it gets byte by byte, and a
 * refused piece leaves the state as it was (the constraint tries each token on the real state).
 * A violation traps, so libFuzzer reports it as a crash. Build and run: tests/fuzz/run.sh.
 *
 * The first byte picks the mode (bit 0: object only) and where the text is cut in two (the rest).
 *
 * fuzz-sources: runtime/text/json_prefix.c
 */
#include <config.h>

#include "runtime/text/json_prefix.h"

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    bool object_only = data[0] & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1, cut = len > 0 ? (size_t)(data[0] >> 1) % (len + 1) : 0;

    /* byte by byte: the first refusal and its verdict */
    struct mt_json_prefix p;
    enum mt_json_verdict v = MT_JSON_OK;
    size_t at = len;
    mt_json_prefix_init(&p, object_only);
    for (size_t i = 0; i < len; i++) {
        struct mt_json_prefix before = p;
        if ((v = mt_json_prefix_feed(&p, text + i, 1)) != MT_JSON_OK) {
            if (memcmp(&before, &p, sizeof(p)) != 0) {
                __builtin_trap(); /* a refused byte changed the state */
            }
            at = i;
            break;
        }
    }
    bool whole = at == len && mt_json_prefix_complete(&p);

    /* in two pieces: the same verdict */
    struct mt_json_prefix q;
    mt_json_prefix_init(&q, object_only);
    enum mt_json_verdict v1 = mt_json_prefix_feed(&q, text, cut);
    enum mt_json_verdict v2 = v1 == MT_JSON_OK ? mt_json_prefix_feed(&q, text + cut, len - cut)
                                               : v1;
    bool whole2 = v2 == MT_JSON_OK && mt_json_prefix_complete(&q);
    if (whole2 != whole || (v2 == MT_JSON_OK) != (at == len)) {
        __builtin_trap();
    }

    json_error_t err;
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    bool parsed = j != NULL && (!object_only || json_is_object(j));
    /* jansson's own limit, not JSON's: a key may not hold \u0000 */
    bool key_nul = j == NULL && strstr(err.text, "NUL byte in object key") != NULL;
    json_decref(j);
    if (whole && !parsed && !key_nul) {
        __builtin_trap(); /* we let through what a parser refuses */
    }
    /* jansson stops reading at a raw NUL byte (it parses "1\0x" as 1); JSON has no place for
     * one outside an escape, and we refuse it anywhere */
    bool nul = memchr(text, 0, len) != NULL;
    if (whole && nul) {
        __builtin_trap();
    }
    if (parsed && !nul && !whole && v != MT_JSON_LIMIT) {
        __builtin_trap(); /* we refuse JSON within our bounds */
    }
    return 0;
}
