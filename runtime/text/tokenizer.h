/* SPDX-License-Identifier: MIT */
/*
 * tokenizer.h - the model's byte-level BPE tokenizer, loaded from its tokenizer.json.
 *
 * Encoding follows the HF `tokenizers` pipeline exactly as the file describes it:
 *   1. added tokens (only when `special` is true): the text is cut at every added token, leftmost
 *      longest match first, as HF's AddedVocabulary does (non-normalized tokens, then normalized);
 *   2. normalizer (DeepSeek's is an empty Sequence; others are refused with a clear error);
 *   3. pre-tokenizer: a Sequence of Split steps (PCRE2 regexes with Unicode properties, each with
 *      its "behavior" and "invert") and one ByteLevel step, each step refining the pieces of the
 *      step before;
 *   4. BPE on each piece's bytes, merges applied lowest rank first (leftmost on ties).
 * With special == false no added token is recognized: "<｜User｜>" in user text is plain text. (HF
 * `tokenizers` always matches added tokens; `special == true` gives its exact behaviour.)
 *
 * Decoding maps each token back to its bytes (ByteLevel decoder). mt_tokenizer_decode() returns the
 * raw bytes, so decode(encode(x)) == x for any byte string, even invalid UTF-8 (HF would show
 * U+FFFD there). The streaming decoder (struct mt_detok) is for printing generated tokens one at a
 * time: it holds back an incomplete UTF-8 sequence until the bytes that finish it arrive, and
 * replaces bytes that can never form a character by U+FFFD, so it never prints half a character.
 *
 * A loaded tokenizer is immutable except for its encode scratch (the piece cache, PCRE2's match
 * data and JIT stack), which is guarded by nothing: use one tokenizer per thread for concurrent
 * encoding (decoding is thread-safe).
 */
#ifndef MT_TOKENIZER_H
#define MT_TOKENIZER_H

#include "runtime/base/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mt_tokenizer;

/*
 * Token ids must be below 2^24 (16.7M; DeepSeek-V3.2 uses 129,280): a larger id in tokenizer.json
 * is refused at load. Memory follows the number of tokens in the file, not the largest id.
 */
#define MT_TOKENIZER_MAX_ID (1 << 24)

/*
 * Load DIR/tokenizer.json (DIR may also name the file itself) and, when it exists, the
 * tokenizer_config.json beside it (for BOS/EOS). Both are read by mt_json_load_file (regular files
 * only, size caps, duplicate keys refused). On failure returns MT_ERR_IO or MT_ERR_FORMAT with a
 * message naming the file and the first problem (no model, a bad merge, an id out of range, a
 * regex that does not compile, ...); *tok_out is set only on success. On success this thread's
 * mt_last_error() is left as it was (the quiet config.json probe leaves nothing behind).
 * An added token whose content is known already (model.vocab's, or an added token listed before
 * it) keeps that id, as HF tokenizers does (it warns "was expected to have ID"); the id the
 * file gives it then names no token.
 * Otherwise the file's ids are kept (HF numbers added tokens on from the vocabulary instead;
 * DeepSeek's files agree with that), and an added token with an id that another token already
 * has is MT_ERR_FORMAT: that id would encode as one text and decode as the other.
 * Fields HF requires in an added token but that a file may leave out here: single_word, lstrip
 * and rstrip (false), special (false) and normalized (!special, as HF's AddedToken::from).
 */
mt_status_t mt_tokenizer_load(const char *dir, struct mt_tokenizer **tok_out);

/*
 * The same from tokenizer.json text in memory, without a tokenizer_config.json (BOS/EOS -1); what
 * names the text in messages. The fuzz target drives this.
 */
mt_status_t mt_tokenizer_parse(const char *json, size_t len, const char *what,
                               struct mt_tokenizer **tok_out);
void mt_tokenizer_destroy(struct mt_tokenizer *tok);

/*
 * Encode len bytes of text (need not be NUL-terminated, need not be valid UTF-8: bytes that are not
 * UTF-8 are encoded one by one). *ids_out is malloc'ed (free() it); *n_out is its length. With
 * special, added tokens (<｜User｜>, ...) written in the text become their ids. A byte for which
 * the vocabulary has no one-byte token is MT_ERR_INVAL naming the byte (HF would drop it silently).
 * A Split regex that backtracks catastrophically on the text (a hostile tokenizer.json) stops at
 * PCRE2's match limit and is MT_ERR_INVAL naming the regex; real tokenizers never reach it.
 */
mt_status_t mt_tokenizer_encode(struct mt_tokenizer *tok, const char *text, size_t len,
                                bool special, int32_t **ids_out, size_t *n_out);

/* Like mt_tokenizer_encode but appends to a caller's growing array (*ids_out, *n_out, *cap_inout).
 */
mt_status_t mt_tokenizer_encode_append(struct mt_tokenizer *tok, const char *text, size_t len,
                                       bool special, int32_t **ids_out, size_t *n_out,
                                       size_t *cap_inout);

/*
 * Decode n ids to bytes: *text_out is malloc'ed and NUL-terminated, *len_out excludes the NUL.
 * An id that is not a token gives MT_ERR_INVAL.
 */
mt_status_t mt_tokenizer_decode(const struct mt_tokenizer *tok, const int32_t *ids, size_t n,
                                char **text_out, size_t *len_out);

/* The id of the token whose text is `text` (added tokens first, then the vocabulary); -1 if none.
 */
int32_t mt_tokenizer_token_id(const struct mt_tokenizer *tok, const char *text);

/* The bytes one token decodes to (not NUL-terminated); NULL if id is not a token. */
const char *mt_tokenizer_token_bytes(const struct mt_tokenizer *tok, int32_t id, size_t *len_out);

/* True if id is one of the file's added tokens (special or not). */
bool mt_tokenizer_is_added(const struct mt_tokenizer *tok, int32_t id);

/* One more than the largest token id. */
int32_t mt_tokenizer_n_vocab(const struct mt_tokenizer *tok);

/* DeepSeek's BOS text, the chat format's bos_token. */
#define MT_TOKENIZER_BOS_TEXT "<｜begin▁of▁sentence｜>"

/*
 * BOS/EOS ids: read from tokenizer_config.json beside tokenizer.json ("bos_token"/"eos_token",
 * as a string or as {"content": ...}) and looked up by text; -1 when not known. Where that gives
 * no BOS, mt_tokenizer_load() takes config.json's bos_token_id (beside tokenizer.json, if it
 * names a token of the vocabulary), else the id of MT_TOKENIZER_BOS_TEXT. One rule for every
 * prompt: `run -p`, `chat` and the server all start with this BOS (none when -1).
 */
int32_t mt_tokenizer_bos(const struct mt_tokenizer *tok);
int32_t mt_tokenizer_eos(const struct mt_tokenizer *tok);

/* ---- streaming decoder ---------------------------------------------------------------------- */

struct mt_detok {
    const struct mt_tokenizer *tok;
    unsigned char pending[4]; /* start of a UTF-8 sequence still waiting for its last bytes */
    size_t n_pending;
    char *buf; /* output of the last push/flush, NUL-terminated */
    size_t cap;
};

void mt_detok_init(struct mt_detok *d, const struct mt_tokenizer *tok);
void mt_detok_fini(struct mt_detok *d);

/*
 * Feed one generated id; *text_out (valid until the next call) receives the complete characters now
 * printable, *len_out bytes (may be 0). An id that is not a token gives MT_ERR_INVAL.
 */
mt_status_t mt_detok_push(struct mt_detok *d, int32_t id, const char **text_out, size_t *len_out);

/* End of stream: whatever is still held back comes out as U+FFFD. */
mt_status_t mt_detok_flush(struct mt_detok *d, const char **text_out, size_t *len_out);

#endif /* MT_TOKENIZER_H */
