/* SPDX-License-Identifier: MIT */
/*
 * fuzz_tokenizer.c - libFuzzer target: an arbitrary byte string as a tokenizer.json, then as text.
 *
 * The one idea: the input up to its first NUL byte goes through mt_tokenizer_parse(), the same
 * JSON gate and loader every tokenizer.json passes (duplicate keys refused, ids capped, merges,
 * regexes and added tokens checked); the bytes after the NUL (or a fixed sample text) are then
 * encoded with and without special tokens, and every id that comes out must be a token that
 * decodes. (Not necessarily to the same bytes: a file may merge "中" and "Ġ" into a token whose
 * spelling decodes otherwise, as in HF.) A violation traps, so libFuzzer reports it as a crash.
 * Build and run: tests/fuzz/run.sh.
 *
 * fuzz-sources: runtime/text/tokenizer.c runtime/base/file_util.c runtime/base/status.c
 * fuzz-sources: runtime/base/out_file.c runtime/base/json_num.c
 * fuzz-pkg: libpcre2-8
 */
#include <config.h>

#include "runtime/base/status.h"
#include "runtime/text/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Encode text; every id must be a token that decodes. */
static void
roundtrip(struct mt_tokenizer *tok, const char *text, size_t len, bool special)
{
    int32_t *ids = NULL;
    char *back = NULL;
    size_t n = 0;
    size_t blen = 0;

    if (mt_tokenizer_encode(tok, text, len, special, &ids, &n) != MT_OK) {
        return; /* a byte without a token: refused with a message, never dropped */
    }
    if (ids == NULL) {
        __builtin_trap();
    }
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= mt_tokenizer_n_vocab(tok) || ids[i] >= MT_TOKENIZER_MAX_ID) {
            __builtin_trap();
        }
    }
    if (mt_tokenizer_decode(tok, ids, n, &back, &blen) != MT_OK) {
        __builtin_trap();
    }
    free(back);
    free(ids);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char sample[] = "Hello, world! 123 4567 <｜User｜>hi\n\n  \xff\xfe 中文 é";
    const uint8_t *nul = memchr(data, 0, size);
    size_t jlen = nul != NULL ? (size_t)(nul - data) : size;
    struct mt_tokenizer *tok = NULL;

    mt_log_set_quiet(true);
    if (mt_tokenizer_parse((const char *)data, jlen, "fuzz-input", &tok) != MT_OK) {
        if (tok != NULL) {
            __builtin_trap();
        }
        return 0;
    }
    if (nul != NULL) {
        roundtrip(tok, (const char *)nul + 1, size - jlen - 1, false);
        roundtrip(tok, (const char *)nul + 1, size - jlen - 1, true);
    } else {
        roundtrip(tok, sample, sizeof(sample) - 1, false);
        roundtrip(tok, sample, sizeof(sample) - 1, true);
    }
    mt_tokenizer_destroy(tok);
    return 0;
}
