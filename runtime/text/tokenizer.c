/* SPDX-License-Identifier: MIT */
/*
 * tokenizer.c - byte-level BPE from tokenizer.json, the way HF `tokenizers` runs it.
 *
 * The design point to know: BPE here works on raw bytes, never on the ByteLevel "Ġ"-strings. At
 * load time every vocabulary entry is decoded once through the GPT-2 byte<->char table, so each
 * token id has its bytes, each byte has its one-byte token, and each merge "a b" becomes a pair of
 * ids -> (rank, merged id) in an open-addressing hash map. Encoding a piece is then: bytes -> ids
 * of single bytes -> merge lowest rank first (leftmost on ties, as HF's Word::merge_all with its
 * binary heap) -> ids, with a cache from piece bytes to ids in front (pieces repeat a lot).
 *
 * Pre-tokenization applies the file's steps in order, each to every piece the step before made:
 * Split(regex, behavior, invert) runs a PCRE2 regex (UTF + UCP, JIT) over the piece alone, so a
 * look-ahead like "\s+(?!\S)" sees the end of the piece, as in HF. ByteLevel (use_regex false)
 * only maps bytes, which our byte-level BPE does implicitly. Text that is not valid UTF-8 is cut
 * into valid runs (pre-tokenized normally) and single bad bytes (one piece each), since PCRE2 in
 * UTF mode must never see invalid UTF-8.
 */
#include <config.h>

#include "runtime/text/tokenizer.h"

#include "runtime/base/file_util.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- hash maps --------------------------------------------------------------------------------
 */

static uint64_t
hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
    uint64_t w;

    while (n >= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 32;
    return h | 1; /* 0 marks an empty slot */
}

/* Byte-string keys -> (val, val2). Keys live in one arena; slots store their offsets. */
struct smap_slot {
    uint64_t hash;
    uint32_t key_off, key_len;
    uint32_t val, val2;
};

struct smap {
    struct smap_slot *slots;
    size_t cap, n; /* cap: power of two */
    char *keys;
    size_t keys_len, keys_cap;
};

static void
smap_free(struct smap *m)
{
    free(m->slots);
    free(m->keys);
    memset(m, 0, sizeof(*m));
}

static void
smap_clear(struct smap *m)
{
    if (m->slots != NULL) {
        memset(m->slots, 0, m->cap * sizeof(*m->slots));
    }
    m->n = 0;
    m->keys_len = 0;
}

static struct smap_slot *
smap_find(const struct smap *m, const void *key, size_t len, uint64_t h)
{
    size_t i;

    if (m->cap == 0) {
        return NULL;
    }
    for (i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        struct smap_slot *s = &m->slots[i];
        if (s->hash == 0) {
            return NULL;
        }
        if (s->hash == h && s->key_len == len && memcmp(m->keys + s->key_off, key, len) == 0) {
            return s;
        }
    }
}

static mt_status_t
smap_grow(struct smap *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 1024;
    struct smap_slot *ns = calloc(ncap, sizeof(*ns));

    if (ns == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: cannot grow a hash map to %zu slots", ncap);
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].hash != 0) {
            size_t j = m->slots[i].hash & (ncap - 1);
            while (ns[j].hash != 0) {
                j = (j + 1) & (ncap - 1);
            }
            ns[j] = m->slots[i];
        }
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return MT_OK;
}

/* Insert or overwrite. */
static mt_status_t
smap_put(struct smap *m, const void *key, size_t len, uint64_t h, uint32_t val, uint32_t val2)
{
    struct smap_slot *s = smap_find(m, key, len, h);
    size_t i;

    if (s != NULL) {
        s->val = val;
        s->val2 = val2;
        return MT_OK;
    }
    if ((m->n + 1) * 2 > m->cap && smap_grow(m) != MT_OK) {
        return MT_ERR_NOMEM;
    }
    if (m->keys == NULL || m->keys_len + len > m->keys_cap) { /* even for "": no NULL arena */
        size_t ncap = MT_MAX(m->keys_cap * 2, m->keys_len + len + 4096);
        char *nk = realloc(m->keys, ncap);
        if (nk == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: cannot grow a key arena to %zu bytes",
                           ncap);
        }
        m->keys = nk;
        m->keys_cap = ncap;
    }
    memcpy(m->keys + m->keys_len, key, len);
    for (i = h & (m->cap - 1); m->slots[i].hash != 0; i = (i + 1) & (m->cap - 1)) {
    }
    m->slots[i] = (struct smap_slot){h, (uint32_t)m->keys_len, (uint32_t)len, val, val2};
    m->keys_len += len;
    m->n++;
    return MT_OK;
}

/* (left id, right id) -> (merge rank, merged id); a fixed-size table built once at load. */
struct pair_slot {
    uint64_t key; /* (left << 32 | right) + 1; 0 = empty */
    int32_t rank, merged;
};

static inline uint64_t
pair_hash(uint64_t key)
{
    key *= 0x9e3779b97f4a7c15ull;
    return key ^ (key >> 31);
}

/* ---- the tokenizer ----------------------------------------------------------------------------
 */

enum split_behavior {
    SPLIT_REMOVED,
    SPLIT_ISOLATED,
    SPLIT_MERGED_WITH_PREVIOUS,
    SPLIT_MERGED_WITH_NEXT,
    SPLIT_CONTIGUOUS,
};

struct pretok_step {
    pcre2_code *re; /* NULL for a ByteLevel step without regex */
    char *pattern;  /* owned: the regex as the file writes it, for messages */
    bool jit;       /* JIT compiled: use pcre2_jit_match */
    enum split_behavior behavior;
    bool invert;
    bool prefix_space; /* ByteLevel add_prefix_space: prepend ' ' to a piece lacking one */
};

/*
 * id -> token, by open addressing on the id. The table is sized by the number of entries in the
 * file, never by the largest id: a 19 KB file with one id of 2^24 - 1 costs a few KB, not the
 * gigabytes a dense array indexed by id would.
 */
struct tok_slot {
    int32_t id;   /* -1: empty slot */
    int32_t len;  /* byte length of the token */
    uint32_t off; /* offset of its bytes in tok_bytes */
    bool added;   /* one of the file's added_tokens */
};

/* Added tokens are matched with a byte trie: first child / next sibling lists. */
struct trie_node {
    int32_t child, sibling;
    int32_t token; /* -1: no token ends here */
    unsigned char byte;
};

struct trie {
    struct trie_node *nodes;
    size_t n, cap;
    bool first[256]; /* bytes some token starts with */
};

#define MAX_STEPS 16

struct mt_tokenizer {
    char *path;
    int32_t n_vocab;          /* largest id + 1 (< MT_TOKENIZER_MAX_ID) */
    struct tok_slot *by_id;   /* [by_id_cap] id -> bytes, sized by the ids present */
    size_t by_id_cap;         /* power of two, at least twice the entries */
    char *tok_bytes;
    size_t tok_bytes_len;
    struct smap by_text;  /* token text as in the file (vocab string / added content) -> id */
    struct smap by_bytes; /* vocab token bytes -> id; only built for ignore_merges */
    bool byte_level;      /* the pre_tokenizer has a ByteLevel step */

    int32_t byte_id[256]; /* the one-byte token of each byte, -1 if none */
    struct pair_slot *pairs;
    size_t pairs_cap;
    bool ignore_merges; /* BPE option: a piece that is a whole token is not merged */

    struct pretok_step steps[MAX_STEPS];
    int n_steps;
    pcre2_match_data *md;
    pcre2_match_context *mctx; /* heap limit set, JIT stack assigned (see load_json) */
    pcre2_jit_stack *jit_stack;

    struct trie added_raw;  /* added tokens with normalized = false (matched first) */
    struct trie added_norm; /* normalized = true */

    int32_t bos, eos;

    /* encode scratch; makes encoding single-threaded per tokenizer (see tokenizer.h) */
    struct smap cache; /* piece bytes -> (offset in cache_ids, count) */
    int32_t *cache_ids;
    size_t cache_ids_len, cache_ids_cap;
    int32_t *sym_id, *sym_prev, *sym_next;
    uint64_t *heap;
    size_t sym_cap;
    char *scratch; /* prefix-space copies of pieces */
    size_t scratch_cap;
};

#define CACHE_MAX_PIECE 256
#define JIT_STACK_MAX (256u << 20)
#define CACHE_MAX_IDS (8u << 20)

/*
 * PCRE2 counts backtracking steps and gives up at a match limit: the defence against a catastrophic
 * regex in a hostile tokenizer.json ("(a+)+$" tries 2^n ways on n 'a's and a 'b'). The limit must
 * never stop a real tokenizer. DeepSeek's three Split regexes, measured with PCRE2 10.42 (JIT and
 * interpreter) on 1 MB texts (golden.json's texts, runs of each kind of character), take at most
 * 60 steps per search, except "\s*[\r\n]+": it backtracks once per character of a whitespace run
 * that ends without a newline (1 MiB of spaces: 1,048,586 steps). So the limit is PCRE2's default
 * plus the bytes left in the piece: no text outgrows it, while a catastrophic regex fails within
 * milliseconds (JIT) or a fraction of a second (interpreter). The steps count backtracking, not
 * characters scanned, so a regex that is merely slow (quadratic) is not stopped by it.
 */
#define MATCH_LIMIT_BASE 10000000u

/* GPT-2's byte <-> char table: printable Latin-1 bytes stand for themselves, the other 68 bytes
 * for U+0100 + n in byte order. */
static void
byte_level_table(uint32_t cp_of_byte[256], int byte_of_cp[324])
{
    int n = 0;

    for (int cp = 0; cp < 324; cp++) {
        byte_of_cp[cp] = -1;
    }
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        cp_of_byte[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
        byte_of_cp[cp_of_byte[b]] = b;
    }
}

/* Decode one UTF-8 character of a NUL-free, valid string (jansson guarantees valid UTF-8). */
static uint32_t
utf8_next(const unsigned char **s)
{
    const unsigned char *p = *s;
    uint32_t c = p[0];

    if (c < 0x80) {
        *s = p + 1;
    } else if (c < 0xe0) {
        c = ((c & 0x1f) << 6) | (p[1] & 0x3f);
        *s = p + 2;
    } else if (c < 0xf0) {
        c = ((c & 0x0f) << 12) | ((p[1] & 0x3f) << 6) | (p[2] & 0x3f);
        *s = p + 3;
    } else {
        c = ((c & 0x07) << 18) | ((p[1] & 0x3f) << 12) | ((p[2] & 0x3f) << 6) | (p[3] & 0x3f);
        *s = p + 4;
    }
    return c;
}

/*
 * Length of the valid UTF-8 prefix of s[0..n) (PCRE2's rules: no overlongs, no surrogates, nothing
 * above U+10FFFF).
 */
static size_t
utf8_valid_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0) {
                lo = 0xa0;
            } else if (c == 0xed) {
                hi = 0x9f;
            }
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0) {
                lo = 0x90;
            } else if (c == 0xf4) {
                hi = 0x8f;
            }
        } else {
            return i;
        }
        if (n - i <= need) {
            return i;
        }
        if (s[i + 1] < lo || s[i + 1] > hi) {
            return i;
        }
        for (size_t k = 2; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return i;
            }
        }
        i += need + 1;
    }
    return i;
}

/* ---- loading ----------------------------------------------------------------------------------
 */

static mt_status_t
trie_add(struct trie *t, const char *text, size_t len, int32_t token)
{
    int32_t node = 0;

    if (t->n == 0) {
        t->cap = 256;
        t->nodes = malloc(t->cap * sizeof(*t->nodes));
        if (t->nodes == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory for the added-token trie");
        }
        t->nodes[0] = (struct trie_node){-1, -1, -1, 0};
        t->n = 1;
    }
    t->first[(unsigned char)text[0]] = true;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)text[i];
        int32_t c = t->nodes[node].child;
        while (c >= 0 && t->nodes[c].byte != b) {
            c = t->nodes[c].sibling;
        }
        if (c < 0) {
            if (t->n == t->cap) {
                struct trie_node *nn = realloc(t->nodes, 2 * t->cap * sizeof(*nn));
                if (nn == NULL) {
                    return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory for the trie");
                }
                t->nodes = nn;
                t->cap *= 2;
            }
            c = (int32_t)t->n++;
            t->nodes[c] = (struct trie_node){-1, t->nodes[node].child, -1, b};
            t->nodes[node].child = c;
        }
        node = c;
    }
    t->nodes[node].token = token;
    return MT_OK;
}

static size_t
id_hash(int32_t id)
{
    return (size_t)pair_hash((uint64_t)(uint32_t)id + 1);
}

/* The slot of id, or NULL when no token has it. */
static const struct tok_slot *
tok_find(const struct mt_tokenizer *tok, int32_t id)
{
    size_t j;

    if (id < 0 || tok->by_id_cap == 0) {
        return NULL;
    }
    for (j = id_hash(id) & (tok->by_id_cap - 1);; j = (j + 1) & (tok->by_id_cap - 1)) {
        if (tok->by_id[j].id == id) {
            return &tok->by_id[j];
        }
        if (tok->by_id[j].id < 0) {
            return NULL;
        }
    }
}

/* The slot of id, claimed if new (the table is sized for every entry up front, so never full). */
static struct tok_slot *
tok_claim(struct mt_tokenizer *tok, int32_t id)
{
    size_t j = id_hash(id) & (tok->by_id_cap - 1);

    while (tok->by_id[j].id >= 0 && tok->by_id[j].id != id) {
        j = (j + 1) & (tok->by_id_cap - 1);
    }
    tok->by_id[j].id = id;
    return &tok->by_id[j];
}

static mt_status_t
set_token(struct mt_tokenizer *tok, int32_t id, const char *bytes, size_t len, size_t *bytes_cap)
{
    struct tok_slot *slot;

    if (tok->tok_bytes_len + len > *bytes_cap) {
        size_t ncap = MT_MAX(*bytes_cap * 2, tok->tok_bytes_len + len + 65536);
        char *nb = realloc(tok->tok_bytes, ncap);
        if (nb == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory for token bytes");
        }
        tok->tok_bytes = nb;
        *bytes_cap = ncap;
    }
    if (len > 0) {
        memcpy(tok->tok_bytes + tok->tok_bytes_len, bytes, len);
    }
    slot = tok_claim(tok, id);
    slot->off = (uint32_t)tok->tok_bytes_len;
    slot->len = (int32_t)len;
    tok->tok_bytes_len += len;
    return MT_OK;
}

/*
 * The bytes a token string decodes to, per HF's ByteLevel decoder: every char through the
 * byte table, or, if any char is not in it, the string's own UTF-8 bytes. They go to *buf,
 * grown to hold them (never more than the string's length), and *n is their count.
 */
static mt_status_t
byte_level_decode(const int byte_of_cp[324], const char *s, char **buf, size_t *n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    char *out = realloc(*buf, len + 1);

    if (out == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory");
    }
    *buf = out;
    *n = 0;
    while (*p != 0) {
        uint32_t cp = utf8_next(&p);
        if (cp >= 324 || byte_of_cp[cp] < 0) {
            memcpy(out, s, len);
            *n = len;
            return MT_OK;
        }
        out[(*n)++] = (char)byte_of_cp[cp];
    }
    return MT_OK;
}

static mt_status_t
compile_regex(struct mt_tokenizer *tok, struct pretok_step *st, const char *pat, size_t len,
              bool literal, int index)
{
    int err;
    PCRE2_SIZE off;
    /*
     * PCRE2_LITERAL (a Split {"String"}) admits UTF but not UCP. HF runs the regexes on
     * Oniguruma with Ruby's syntax, where ^ and $ match at every line's start and end:
     * PCRE2_MULTILINE. Its \h is a hex digit where PCRE2's is horizontal space: refused below
     * rather than matched differently (DeepSeek's patterns use neither).
     */
    uint32_t opts = literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE;

    for (size_t i = 0; !literal && i + 1 < len; i++) {
        if (pat[i] == '\\' && (pat[i + 1] == 'h' || pat[i + 1] == 'H')) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "tokenizer '%s': pre_tokenizer step %d: regex uses \\%c at offset %zu, "
                           "which HF's regex engine (Oniguruma) reads as a hex digit class and "
                           "PCRE2 as horizontal space; write [0-9a-fA-F] (or [\\t ]) instead",
                           tok->path, index, pat[i + 1], i);
        }
        i += pat[i] == '\\'; /* an escaped character is not the start of an escape */
    }

    st->re = pcre2_compile((PCRE2_SPTR)pat, len, opts, &err, &off, NULL);
    if (st->re == NULL) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof(msg));
        return mt_fail(MT_ERR_FORMAT, 0,
                       "tokenizer '%s': pre_tokenizer step %d: regex does not compile at offset "
                       "%zu: %s",
                       tok->path, index, (size_t)off, (const char *)msg);
    }
    st->pattern = malloc(len + 1);
    if (st->pattern == NULL) {
        pcre2_code_free(st->re);
        st->re = NULL;
        return mt_fail(MT_ERR_NOMEM, 0, "tokenizer '%s': out of memory for regex %d", tok->path,
                       index);
    }
    memcpy(st->pattern, pat, len);
    st->pattern[len] = '\0';
    st->jit = pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE) == 0;
    return MT_OK;
}

/* GPT-2's split pattern, which HF's ByteLevel pre-tokenizer applies when use_regex is true. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static mt_status_t
add_pretok(struct mt_tokenizer *tok, json_t *pt, int depth)
{
    const char *type;
    mt_status_t st;

    if (json_is_null(pt)) {
        return MT_OK;
    }
    type = json_string_value(json_object_get(pt, "type"));
    if (type == NULL) {
        return mt_fail(MT_ERR_FORMAT, 0, "tokenizer '%s': pre_tokenizer without a \"type\"",
                       tok->path);
    }
    if (depth > 4) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "tokenizer '%s': pre_tokenizer Sequences nested more than 4 deep",
                       tok->path);
    }
    if (strcmp(type, "Sequence") == 0) {
        json_t *arr = json_object_get(pt, "pretokenizers");
        size_t i;
        json_t *v;
        if (!json_is_array(arr)) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "tokenizer '%s': Sequence pre_tokenizer without "
                           "\"pretokenizers\"",
                           tok->path);
        }
        json_array_foreach (arr, i, v) {
            if ((st = add_pretok(tok, v, depth + 1)) != MT_OK) {
                return st;
            }
        }
        return MT_OK;
    }
    if (tok->n_steps == MAX_STEPS) {
        return mt_fail(MT_ERR_FORMAT, 0, "tokenizer '%s': more than %d pre_tokenizer steps",
                       tok->path, MAX_STEPS);
    }
    struct pretok_step *s = &tok->steps[tok->n_steps];
    int index = tok->n_steps;
    memset(s, 0, sizeof(*s));
    s->behavior = SPLIT_ISOLATED;
    if (strcmp(type, "Split") == 0) {
        json_t *pat = json_object_get(pt, "pattern");
        const char *beh = json_string_value(json_object_get(pt, "behavior"));
        json_t *re = json_object_get(pat, "Regex"), *str = json_object_get(pat, "String");
        static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                            "MergedWithNext", "Contiguous"};
        int b;
        for (b = 0; b < 5 && beh != NULL && strcmp(beh, names[b]) != 0; b++) {
        }
        if (beh == NULL || b == 5) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "tokenizer '%s': Split step %d: unknown behavior "
                           "'%s'",
                           tok->path, index, beh ? beh : "(none)");
        }
        s->behavior = (enum split_behavior)b;
        s->invert = json_is_true(json_object_get(pt, "invert"));
        if (json_is_string(re)) {
            st = compile_regex(tok, s, json_string_value(re), json_string_length(re), false, index);
        } else if (json_is_string(str)) {
            st =
                compile_regex(tok, s, json_string_value(str), json_string_length(str), true, index);
        } else {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "tokenizer '%s': Split step %d has no pattern "
                           "{\"Regex\"} or {\"String\"}",
                           tok->path, index);
        }
        if (st != MT_OK) {
            return st;
        }
    } else if (strcmp(type, "ByteLevel") == 0) {
        tok->byte_level = true;
        s->prefix_space = json_is_true(json_object_get(pt, "add_prefix_space"));
        /* HF's default for use_regex is true */
        json_t *ur = json_object_get(pt, "use_regex");
        if (ur == NULL || json_is_true(ur)) {
            if ((st = compile_regex(tok, s, gpt2_pattern, strlen(gpt2_pattern), false, index)) !=
                MT_OK) {
                return st;
            }
        }
    } else {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "tokenizer '%s': pre_tokenizer type '%s' is not "
                       "supported (Split, ByteLevel, Sequence are)",
                       tok->path, type);
    }
    tok->n_steps++;
    return MT_OK;
}

/* Only the identity normalizer is supported: null or a Sequence of nothing. */
static mt_status_t
check_normalizer(struct mt_tokenizer *tok, json_t *n, int depth)
{
    const char *type;
    size_t i;
    json_t *v;

    if (n == NULL || json_is_null(n)) {
        return MT_OK;
    }
    type = json_string_value(json_object_get(n, "type"));
    if (type != NULL && strcmp(type, "Sequence") == 0 && depth < 4) {
        json_array_foreach (json_object_get(n, "normalizers"), i, v) {
            if (check_normalizer(tok, v, depth + 1) != MT_OK) {
                return MT_ERR_FORMAT;
            }
        }
        return MT_OK;
    }
    return mt_fail(MT_ERR_FORMAT, 0, "tokenizer '%s': normalizer '%s' is not supported", tok->path,
                   type ? type : "(no type)");
}

static mt_status_t
check_decoder(struct mt_tokenizer *tok, json_t *d, int depth)
{
    const char *type = json_string_value(json_object_get(d, "type"));
    size_t i;
    json_t *v;

    if (type != NULL && strcmp(type, "ByteLevel") == 0) {
        return MT_OK;
    }
    if (type != NULL && strcmp(type, "Sequence") == 0 && depth < 4) {
        json_array_foreach (json_object_get(d, "decoders"), i, v) {
            if (check_decoder(tok, v, depth + 1) != MT_OK) {
                return MT_ERR_FORMAT;
            }
        }
        return MT_OK;
    }
    return mt_fail(MT_ERR_FORMAT, 0,
                   "tokenizer '%s': decoder '%s' is not supported (ByteLevel "
                   "is)",
                   tok->path, type ? type : "(none)");
}

static mt_status_t
load_merges(struct mt_tokenizer *tok, json_t *vocab, json_t *merges)
{
    size_t n = json_array_size(merges), i;
    json_t *m;
    char buf[1024];

    tok->pairs_cap = 1024;
    while (tok->pairs_cap < 2 * n + 2) {
        tok->pairs_cap *= 2;
    }
    tok->pairs = calloc(tok->pairs_cap, sizeof(*tok->pairs));
    if (tok->pairs == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory for %zu merges", n);
    }
    json_array_foreach (merges, i, m) {
        const char *a, *b;
        size_t la, lb;
        if (json_is_string(m)) {
            /* "a b": exactly one space (byte-level tokens never contain one) */
            const char *s = json_string_value(m), *sp = strchr(s, ' ');
            if (sp == NULL || strchr(sp + 1, ' ') != NULL) {
                return mt_fail(MT_ERR_FORMAT, 0,
                               "tokenizer '%s': merge %zu \"%s\" is not two "
                               "tokens separated by one space",
                               tok->path, i, s);
            }
            a = s;
            la = (size_t)(sp - s);
            b = sp + 1;
            lb = strlen(b);
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            la = strlen(a);
            b = json_string_value(json_array_get(m, 1));
            lb = strlen(b);
        } else {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "tokenizer '%s': merge %zu is neither \"a b\" nor "
                           "[\"a\", \"b\"]",
                           tok->path, i);
        }
        if (la + lb + 1 > sizeof(buf) || la == 0 || lb == 0) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "tokenizer '%s': merge %zu has an empty or too long "
                           "token",
                           tok->path, i);
        }
        memcpy(buf, a, la);
        buf[la] = 0;
        json_t *ja = json_object_get(vocab, buf);
        memcpy(buf, b, lb);
        buf[lb] = 0;
        json_t *jb = json_object_get(vocab, buf);
        memcpy(buf, a, la);
        memcpy(buf + la, b, lb);
        buf[la + lb] = 0;
        json_t *jm = json_object_get(vocab, buf);
        if (!json_is_integer(ja) || !json_is_integer(jb) || !json_is_integer(jm)) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "tokenizer '%s': merge %zu (\"%.*s\" + \"%.*s\"): %s "
                           "is not in the vocabulary",
                           tok->path, i, (int)la, a, (int)lb, b,
                           !json_is_integer(ja)   ? "the left token"
                           : !json_is_integer(jb) ? "the right token"
                                                  : "the merged token");
        }
        uint64_t key =
            ((uint64_t)json_integer_value(ja) << 32 | (uint32_t)json_integer_value(jb)) + 1;
        size_t j = pair_hash(key) & (tok->pairs_cap - 1);
        while (tok->pairs[j].key != 0 && tok->pairs[j].key != key) {
            j = (j + 1) & (tok->pairs_cap - 1);
        }
        /* a repeated pair keeps its last rank, as HF's map built from the merge list does */
        tok->pairs[j] = (struct pair_slot){key, (int32_t)i, (int32_t)json_integer_value(jm)};
    }
    return MT_OK;
}

static int32_t
config_token_id(struct mt_tokenizer *tok, json_t *cfg, const char *key)
{
    json_t *v = json_object_get(cfg, key);

    if (json_is_object(v)) {
        v = json_object_get(v, "content");
    }
    if (!json_is_string(v)) {
        return -1;
    }
    return mt_tokenizer_token_id(tok, json_string_value(v));
}

static mt_status_t
load_json(struct mt_tokenizer *tok, json_t *root, json_t *cfg)
{
    json_t *model, *vocab, *merges, *added, *v;
    const char *key, *type;
    size_t i, bytes_cap = 0;
    int32_t max_id = -1;
    uint32_t cp_of_byte[256];
    int byte_of_cp[324];
    char *buf = NULL;
    mt_status_t st;

    byte_level_table(cp_of_byte, byte_of_cp);
    model = json_object_get(root, "model");
    if (!json_is_object(model)) {
        return mt_fail(MT_ERR_FORMAT, 0, "tokenizer '%s': no \"model\" object", tok->path);
    }
    type = json_string_value(json_object_get(model, "type"));
    if (type != NULL && strcmp(type, "BPE") != 0) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "tokenizer '%s': model type '%s' is not supported (BPE "
                       "is)",
                       tok->path, type);
    }
    vocab = json_object_get(model, "vocab");
    merges = json_object_get(model, "merges");
    if (!json_is_object(vocab) || !json_is_array(merges)) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "tokenizer '%s': BPE model without a \"vocab\" object "
                       "and a \"merges\" array",
                       tok->path);
    }
    if (json_is_string(json_object_get(model, "continuing_subword_prefix")) ||
        json_is_string(json_object_get(model, "end_of_word_suffix")) ||
        json_is_true(json_object_get(model, "byte_fallback"))) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "tokenizer '%s': BPE options continuing_subword_prefix, "
                       "end_of_word_suffix and byte_fallback are not supported",
                       tok->path);
    }
    tok->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    added = json_object_get(root, "added_tokens");
    if (added != NULL && !json_is_array(added)) {
        return mt_fail(MT_ERR_FORMAT, 0, "tokenizer '%s': \"added_tokens\" is not an array",
                       tok->path);
    }

    /* ids: largest of the vocabulary and the added tokens */
    json_object_foreach (vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= MT_TOKENIZER_MAX_ID) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "tokenizer '%s': vocab entry \"%s\" has no valid id (an integer in "
                           "0..%d)",
                           tok->path, key, MT_TOKENIZER_MAX_ID - 1);
        }
        max_id = MT_MAX(max_id, (int32_t)json_integer_value(v));
    }
    json_t *seen = json_object(); /* the added contents met so far */
    if (seen == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory");
    }
    json_array_foreach (added, i, v) {
        json_t *id = json_object_get(v, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= MT_TOKENIZER_MAX_ID ||
            !json_is_string(json_object_get(v, "content")) ||
            json_string_length(json_object_get(v, "content")) == 0) {
            json_decref(seen);
            return mt_fail(MT_ERR_FORMAT, 0,
                           "tokenizer '%s': added token %zu lacks an id (an integer in 0..%d) or "
                           "a content",
                           tok->path, i, MT_TOKENIZER_MAX_ID - 1);
        }
        /* an id counts unless its content is known by then (the vocabulary's, or an earlier
         * added token's: below) */
        const char *content = json_string_value(json_object_get(v, "content"));
        if (json_object_get(vocab, content) == NULL && json_object_get(seen, content) == NULL) {
            max_id = MT_MAX(max_id, (int32_t)json_integer_value(id));
        }
        if (json_object_set_new(seen, content, json_true()) != 0) {
            json_decref(seen);
            return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory");
        }
    }
    json_decref(seen);
    if (max_id < 0) {
        return mt_fail(MT_ERR_FORMAT, 0, "tokenizer '%s': empty vocabulary", tok->path);
    }
    tok->n_vocab = max_id + 1;
    tok->by_id_cap = 64;
    while (tok->by_id_cap < 2 * (json_object_size(vocab) + json_array_size(added))) {
        tok->by_id_cap *= 2;
    }
    tok->by_id = malloc(tok->by_id_cap * sizeof(*tok->by_id));
    if (tok->by_id == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory for %zu tokens",
                       tok->by_id_cap / 2);
    }
    for (size_t k = 0; k < tok->by_id_cap; k++) {
        tok->by_id[k] = (struct tok_slot){.id = -1};
    }
    for (int b = 0; b < 256; b++) {
        tok->byte_id[b] = -1;
    }

    json_object_foreach (vocab, key, v) {
        size_t klen = strlen(key), n;
        int32_t id = (int32_t)json_integer_value(v);
        if ((st = byte_level_decode(byte_of_cp, key, &buf, &n)) != MT_OK) {
            goto out;
        }
        /* two strings of one id would encode as one and decode as the other */
        if (tok_find(tok, id) != NULL) {
            st = mt_fail(MT_ERR_FORMAT, 0, "tokenizer '%s': vocab entry \"%s\" has id %d, which "
                         "another entry has too", tok->path, key, id);
            goto out;
        }
        if ((st = set_token(tok, id, buf, n, &bytes_cap)) != MT_OK ||
            (st = smap_put(&tok->by_text, key, klen, hash_bytes(key, klen), (uint32_t)id, 0)) !=
                MT_OK) {
            goto out;
        }
        if (tok->ignore_merges &&
            (st = smap_put(&tok->by_bytes, buf, n, hash_bytes(buf, n), (uint32_t)id, 0)) != MT_OK) {
            goto out;
        }
        /* the one-byte token of a byte is the vocab entry spelled by its byte-level char */
        const unsigned char *p = (const unsigned char *)key;
        uint32_t cp = key[0] != '\0' ? utf8_next(&p) : UINT32_MAX; /* "" is no byte's token */
        if (cp < 324 && *p == 0 && byte_of_cp[cp] >= 0) {
            tok->byte_id[byte_of_cp[cp]] = id;
        }
    }
    json_array_foreach (added, i, v) {
        const char *content = json_string_value(json_object_get(v, "content"));
        size_t clen = strlen(content), n;
        int32_t id = (int32_t)json_integer_value(json_object_get(v, "id"));
        if (json_is_true(json_object_get(v, "lstrip")) ||
            json_is_true(json_object_get(v, "rstrip")) ||
            json_is_true(json_object_get(v, "single_word"))) {
            st = mt_fail(MT_ERR_FORMAT, 0,
                         "tokenizer '%s': added token \"%s\" uses lstrip, rstrip "
                         "or single_word, which are not supported",
                         tok->path, content);
            goto out;
        }
        /*
         * Content known already keeps its id, as in HF tokenizers: its AddedVocabulary gives an
         * added token the id token_to_id() finds, in the model's vocabulary or among the added
         * tokens listed before it, and only warns that the file expected another; the file's id
         * then names no token.
         */
        int32_t known = mt_tokenizer_token_id(tok, content);
        if (known >= 0) {
            id = known;
        } else if (tok_find(tok, id) != NULL) {
            /* an id of two texts would encode as one and decode as the other (HF would number
             * this token anew, past the others; we keep the file's ids) */
            st = mt_fail(MT_ERR_FORMAT, 0,
                         "tokenizer '%s': added token \"%s\" has id %d, which another has too",
                         tok->path, content, id);
            goto out;
        } else {
            if ((st = byte_level_decode(byte_of_cp, content, &buf, &n)) != MT_OK ||
                (st = set_token(tok, id, buf, n, &bytes_cap)) != MT_OK ||
                (st = smap_put(&tok->by_text, content, clen, hash_bytes(content, clen),
                               (uint32_t)id, 0)) != MT_OK) {
                goto out;
            }
        }
        tok_claim(tok, id)->added = true;
        /*
         * No "normalized": HF refuses the file (the field has no serde default); we take the rule
         * of HF's AddedToken::from, which Python's AddedToken follows too: special ones are not
         * normalized, others are.
         */
        json_t *norm = json_object_get(v, "normalized");
        bool normalized =
            norm != NULL ? json_is_true(norm) : !json_is_true(json_object_get(v, "special"));
        if ((st = trie_add(normalized ? &tok->added_norm : &tok->added_raw, content, clen, id)) !=
            MT_OK) {
            goto out;
        }
    }
    if ((st = load_merges(tok, vocab, merges)) != MT_OK ||
        (st = check_normalizer(tok, json_object_get(root, "normalizer"), 0)) != MT_OK) {
        goto out;
    }
    if ((st = add_pretok(tok, json_object_get(root, "pre_tokenizer"), 0)) != MT_OK) {
        goto out;
    }
    if (!tok->byte_level) {
        st = mt_fail(MT_ERR_FORMAT, 0,
                     "tokenizer '%s': the pre_tokenizer has no ByteLevel step; "
                     "only byte-level BPE is supported",
                     tok->path);
        goto out;
    }
    if ((st = check_decoder(tok, json_object_get(root, "decoder"), 0)) != MT_OK) {
        goto out;
    }
    /*
     * PCRE2's default 32 KiB JIT stack runs out on a pattern whose group repeats a few thousand
     * times, text HF encodes without trouble: give the JIT a stack that grows on demand up to
     * JIT_STACK_MAX, and the interpreter (used where JIT is missing) the same cap on its
     * backtracking memory, where its default is 20 GB. The match limit is set per search
     * (regex_search), as it grows with the text.
     */
    tok->md = pcre2_match_data_create(4, NULL);
    tok->mctx = pcre2_match_context_create(NULL);
    tok->jit_stack = pcre2_jit_stack_create(32 << 10, JIT_STACK_MAX, NULL);
    if (tok->md == NULL || tok->mctx == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory for PCRE2 match data");
        goto out;
    }
    pcre2_set_heap_limit(tok->mctx, JIT_STACK_MAX >> 10); /* in KiB */
    if (tok->jit_stack != NULL) { /* NULL without JIT support: the default stack is used */
        pcre2_jit_stack_assign(tok->mctx, NULL, tok->jit_stack);
    }

    tok->bos = tok->eos = -1;
    if (cfg != NULL) {
        tok->bos = config_token_id(tok, cfg, "bos_token");
        tok->eos = config_token_id(tok, cfg, "eos_token");
    }
    st = MT_OK;
out:
    free(buf);
    return st;
}

/* A new tokenizer from parsed tokenizer.json (root) and tokenizer_config.json (cfg, or NULL). */
static mt_status_t
tokenizer_build(json_t *root, json_t *cfg, const char *path, struct mt_tokenizer **tok_out)
{
    struct mt_tokenizer *tok;
    mt_status_t st;

    tok = calloc(1, sizeof(*tok));
    if (tok == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory");
    }
    tok->path = strdup(path);
    if (tok->path == NULL) {
        mt_tokenizer_destroy(tok);
        return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory");
    }
    if (!json_is_object(root)) {
        st = mt_fail(MT_ERR_FORMAT, 0, "tokenizer '%s': not a JSON object", path);
        goto out_free;
    }
    st = load_json(tok, root, json_is_object(cfg) ? cfg : NULL);
    if (st != MT_OK) {
        goto out_free;
    }
    *tok_out = tok;
    return MT_OK;

out_free:
    mt_tokenizer_destroy(tok);
    return st;
}

mt_status_t
mt_tokenizer_parse(const char *json, size_t len, const char *what, struct mt_tokenizer **tok_out)
{
    json_t *root;
    mt_status_t st;

    st = mt_json_parse(json, len, what, &root);
    if (st != MT_OK) {
        return st;
    }
    st = tokenizer_build(root, NULL, what, tok_out);
    json_decref(root);
    return st;
}

/*
 * BOS when tokenizer_config.json names none: config.json's bos_token_id where it is a token of
 * this vocabulary, else the id of DeepSeek's BOS text, else -1. The chat format and `run -p` both
 * take BOS from here, so they give the same prompt ids. config.json is read best effort and
 * quietly: a bad one is the engine's to report, with its own message. Its failure is no failure
 * of the load, so this thread's mt_last_error() is put back as it was: a stale "cannot open
 * config" would be shown by a caller that prints mt_last_error() after a later failure.
 */
static int32_t
bos_fallback(const struct mt_tokenizer *tok, const char *config_path)
{
    json_t *root = NULL;
    json_t *v;
    size_t len;
    int32_t id = -1;
    char saved[1024]; /* mt_last_error()'s own size: the copy is whole */
    bool was_quiet = mt_log_set_quiet(true);

    snprintf(saved, sizeof(saved), "%s", mt_last_error());

    if (mt_json_load_file(config_path, "config", MT_FILE_MAX_CONFIG, &root) == MT_OK &&
        json_is_integer(v = json_object_get(root, "bos_token_id")) &&
        json_integer_value(v) >= 0 && json_integer_value(v) < tok->n_vocab &&
        mt_tokenizer_token_bytes(tok, (int32_t)json_integer_value(v), &len) != NULL) {
        id = (int32_t)json_integer_value(v);
    }
    mt_fail(MT_OK, 0, "%s", saved); /* still quiet: restores the text, logs nothing */
    mt_log_set_quiet(was_quiet);
    json_decref(root);
    return id >= 0 ? id : mt_tokenizer_token_id(tok, MT_TOKENIZER_BOS_TEXT);
}

mt_status_t
mt_tokenizer_load(const char *dir, struct mt_tokenizer **tok_out)
{
    struct stat sb;
    json_t *root = NULL;
    json_t *cfg = NULL;
    char *cfg_path;
    char *model_cfg_path;
    char *path;
    size_t dl = strlen(dir);
    mt_status_t st;

    path = malloc(dl + 32);
    cfg_path = malloc(dl + 32);
    model_cfg_path = malloc(dl + 32);
    if (path == NULL || cfg_path == NULL || model_cfg_path == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory");
        goto out_free;
    }
    if (stat(dir, &sb) != 0) {
        st = mt_fail(MT_ERR_IO, errno, "cannot open '%s' (a model directory, or a "
                     "tokenizer.json)", dir);
        goto out_free;
    }
    if (S_ISDIR(sb.st_mode)) {
        snprintf(path, dl + 32, "%s/tokenizer.json", dir);
        snprintf(cfg_path, dl + 32, "%s/tokenizer_config.json", dir);
        snprintf(model_cfg_path, dl + 32, "%s/config.json", dir);
    } else {
        const char *slash = strrchr(dir, '/');
        snprintf(path, dl + 32, "%s", dir);
        snprintf(cfg_path, dl + 32, "%.*stokenizer_config.json",
                 slash ? (int)(slash - dir + 1) : 0, dir);
        snprintf(model_cfg_path, dl + 32, "%.*sconfig.json", slash ? (int)(slash - dir + 1) : 0,
                 dir);
    }
    st = mt_json_load_file(path, "tokenizer", MT_FILE_MAX_TOKENIZER, &root);
    if (st != MT_OK) {
        goto out_free;
    }
    /* tokenizer_config.json is optional; one that is there must be readable and valid. */
    if (stat(cfg_path, &sb) == 0 || errno != ENOENT) {
        st = mt_json_load_file(cfg_path, "tokenizer config", MT_FILE_MAX_TOKENIZER_CONFIG, &cfg);
        if (st != MT_OK) {
            goto out_decref;
        }
    }
    st = tokenizer_build(root, cfg, path, tok_out);
    if (st == MT_OK && (*tok_out)->bos < 0) {
        (*tok_out)->bos = bos_fallback(*tok_out, model_cfg_path);
    }

out_decref:
    json_decref(cfg);
    json_decref(root);
out_free:
    free(model_cfg_path);
    free(cfg_path);
    free(path);
    return st;
}

void
mt_tokenizer_destroy(struct mt_tokenizer *tok)
{
    if (tok == NULL) {
        return;
    }
    for (int i = 0; i < tok->n_steps; i++) {
        pcre2_code_free(tok->steps[i].re);
        free(tok->steps[i].pattern);
    }
    pcre2_match_data_free(tok->md);
    pcre2_match_context_free(tok->mctx);
    pcre2_jit_stack_free(tok->jit_stack);
    free(tok->path);
    free(tok->by_id);
    free(tok->tok_bytes);
    smap_free(&tok->by_text);
    smap_free(&tok->by_bytes);
    free(tok->pairs);
    free(tok->added_raw.nodes);
    free(tok->added_norm.nodes);
    smap_free(&tok->cache);
    free(tok->cache_ids);
    free(tok->sym_id);
    free(tok->sym_prev);
    free(tok->sym_next);
    free(tok->heap);
    free(tok->scratch);
    free(tok);
}

/* ---- encoding ---------------------------------------------------------------------------------
 */

struct out_ids {
    int32_t **ids;
    size_t *n, *cap;
};

static mt_status_t
out_reserve(struct out_ids *o, size_t more)
{
    if (*o->n + more > *o->cap) {
        size_t ncap = MT_MAX(*o->cap * 2, *o->n + more + 64);
        int32_t *ni = realloc(*o->ids, ncap * sizeof(*ni));
        if (ni == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory for %zu ids", ncap);
        }
        *o->ids = ni;
        *o->cap = ncap;
    }
    return MT_OK;
}

static inline const struct pair_slot *
pair_find(const struct mt_tokenizer *tok, int32_t a, int32_t b)
{
    uint64_t key = ((uint64_t)a << 32 | (uint32_t)b) + 1;
    size_t j = pair_hash(key) & (tok->pairs_cap - 1);

    for (;;) {
        const struct pair_slot *p = &tok->pairs[j];
        if (p->key == key) {
            return p;
        }
        if (p->key == 0) {
            return NULL;
        }
        j = (j + 1) & (tok->pairs_cap - 1);
    }
}

static void
heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;

    while (i > 0 && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static uint64_t
heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0;

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) {
            break;
        }
        if (c + 1 < *n && h[c + 1] < h[c]) {
            c++;
        }
        if (h[c] >= v) {
            break;
        }
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) {
        h[i] = v;
    }
    return top;
}

static mt_status_t
sym_reserve(struct mt_tokenizer *tok, size_t n)
{
    if (n <= tok->sym_cap) {
        return MT_OK;
    }
    size_t cap = MT_MAX(n, 2 * tok->sym_cap);
    int32_t *a = realloc(tok->sym_id, cap * sizeof(*a));
    if (a != NULL) {
        tok->sym_id = a;
    }
    int32_t *b = realloc(tok->sym_prev, cap * sizeof(*b));
    if (b != NULL) {
        tok->sym_prev = b;
    }
    int32_t *c = realloc(tok->sym_next, cap * sizeof(*c));
    if (c != NULL) {
        tok->sym_next = c;
    }
    uint64_t *h = realloc(tok->heap, 3 * cap * sizeof(*h)); /* pushes - pops <= 2n */
    if (h != NULL) {
        tok->heap = h;
    }
    if (a == NULL || b == NULL || c == NULL || h == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory for a %zu-byte piece", n);
    }
    tok->sym_cap = cap;
    return MT_OK;
}

/*
 * BPE of one piece: single bytes, then the adjacent pair with the lowest merge rank is merged
 * (leftmost first among equal ranks) until no pair has a merge. The heap holds (rank << 32 | left
 * position); an entry whose pair changed since it was pushed is skipped when popped.
 */
static mt_status_t
bpe(struct mt_tokenizer *tok, const unsigned char *b, size_t n, struct out_ids *o)
{
    int32_t *id, *prev, *next;
    uint64_t *heap;
    size_t nh = 0, ns = 0;
    mt_status_t st;

    if (n > INT32_MAX) { /* positions are int32 (and 32 bits of a heap entry) */
        return mt_fail(MT_ERR_INVAL, 0, "tokenizer: a pre-token of %zu bytes is too long", n);
    }
    if ((st = sym_reserve(tok, n)) != MT_OK) {
        return st;
    }
    id = tok->sym_id;
    prev = tok->sym_prev;
    next = tok->sym_next;
    heap = tok->heap;
    for (size_t i = 0; i < n; i++) {
        int32_t t = tok->byte_id[b[i]];
        if (t < 0) {
            /* HF's BPE without an unk token drops such a byte silently: we refuse to lose text */
            return mt_fail(MT_ERR_INVAL, 0,
                           "tokenizer '%s': byte 0x%02x of the text has no token (the vocabulary "
                           "lacks its one-byte entry), so the text cannot be encoded without "
                           "losing it",
                           tok->path, b[i]);
        }
        id[ns] = t;
        prev[ns] = (int32_t)ns - 1;
        next[ns] = (int32_t)ns + 1;
        ns++;
    }
    if (ns == 0) {
        return MT_OK;
    }
    next[ns - 1] = -1;
    for (size_t i = 0; i + 1 < ns; i++) {
        const struct pair_slot *p = pair_find(tok, id[i], id[i + 1]);
        if (p != NULL) {
            heap_push(heap, &nh, (uint64_t)p->rank << 32 | i);
        }
    }
    while (nh > 0) {
        uint64_t top = heap_pop(heap, &nh);
        int32_t pos = (int32_t)(top & 0xffffffffu), r = next[pos];
        const struct pair_slot *p;
        if (id[pos] < 0 || r < 0) {
            continue;
        }
        p = pair_find(tok, id[pos], id[r]);
        if (p == NULL || (uint64_t)p->rank != top >> 32) {
            continue;
        }
        id[pos] = p->merged;
        id[r] = -1;
        next[pos] = next[r];
        if (next[r] >= 0) {
            prev[next[r]] = pos;
        }
        if (prev[pos] >= 0 && (p = pair_find(tok, id[prev[pos]], id[pos])) != NULL) {
            heap_push(heap, &nh, (uint64_t)p->rank << 32 | (uint32_t)prev[pos]);
        }
        if (next[pos] >= 0 && (p = pair_find(tok, id[pos], id[next[pos]])) != NULL) {
            heap_push(heap, &nh, (uint64_t)p->rank << 32 | (uint32_t)pos);
        }
    }
    size_t cnt = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) {
        cnt++;
    }
    if ((st = out_reserve(o, cnt)) != MT_OK) {
        return st;
    }
    for (int32_t i = 0; i >= 0; i = next[i]) {
        (*o->ids)[(*o->n)++] = id[i];
    }
    return MT_OK;
}

/* One pre-token to ids, through the cache. */
static mt_status_t
encode_piece(struct mt_tokenizer *tok, const char *s, size_t n, struct out_ids *o)
{
    uint64_t h;
    struct smap_slot *hit;
    size_t before = *o->n;
    mt_status_t st;

    if (n == 1 && tok->byte_id[(unsigned char)s[0]] >= 0) {
        if ((st = out_reserve(o, 1)) != MT_OK) {
            return st;
        }
        (*o->ids)[(*o->n)++] = tok->byte_id[(unsigned char)s[0]];
        return MT_OK;
    }
    if (n > CACHE_MAX_PIECE) {
        return bpe(tok, (const unsigned char *)s, n, o);
    }
    h = hash_bytes(s, n);
    hit = smap_find(&tok->cache, s, n, h);
    if (hit != NULL) {
        if (hit->val2 == 0) {
            return MT_OK;
        }
        if ((st = out_reserve(o, hit->val2)) != MT_OK) {
            return st;
        }
        memcpy(*o->ids + *o->n, tok->cache_ids + hit->val, hit->val2 * sizeof(int32_t));
        *o->n += hit->val2;
        return MT_OK;
    }
    if (tok->ignore_merges) {
        /* BPE option: a piece that is a whole vocabulary token is that token */
        struct smap_slot *w = smap_find(&tok->by_bytes, s, n, h);
        if (w != NULL) {
            if ((st = out_reserve(o, 1)) != MT_OK) {
                return st;
            }
            (*o->ids)[(*o->n)++] = (int32_t)w->val;
            return MT_OK;
        }
    }
    if ((st = bpe(tok, (const unsigned char *)s, n, o)) != MT_OK) {
        return st;
    }
    size_t cnt = *o->n - before;
    if (cnt == 0) {
        return MT_OK; /* n == 0: nothing to remember (and no array to copy from) */
    }
    if (tok->cache_ids_len + cnt > CACHE_MAX_IDS) {
        smap_clear(&tok->cache);
        tok->cache_ids_len = 0;
    }
    if (tok->cache_ids_len + cnt > tok->cache_ids_cap) {
        size_t ncap = MT_MAX(tok->cache_ids_cap * 2, 65536);
        int32_t *ni = realloc(tok->cache_ids, ncap * sizeof(*ni));
        if (ni == NULL) {
            return MT_OK; /* caching is optional */
        }
        tok->cache_ids = ni;
        tok->cache_ids_cap = ncap;
    }
    memcpy(tok->cache_ids + tok->cache_ids_len, *o->ids + before, cnt * sizeof(int32_t));
    if (smap_put(&tok->cache, s, n, h, (uint32_t)tok->cache_ids_len, (uint32_t)cnt) == MT_OK) {
        tok->cache_ids_len += cnt;
    }
    return MT_OK;
}

/* The position after the UTF-8 character at p of s[0, n) (past its continuation bytes). */
static size_t
past_char(const char *s, size_t n, size_t p)
{
    p++;
    while (p < n && ((unsigned char)s[p] & 0xc0) == 0x80) {
        p++;
    }
    return p;
}

/*
 * Search step k's regex in the piece s[0..n) from pos: *rc_out is PCRE2's answer, a match or
 * PCRE2_ERROR_NOMATCH. A regex that hits a limit (MATCH_LIMIT_BASE) fails the encode with
 * MT_ERR_INVAL naming it, rather than running for hours or splitting the text wrongly.
 */
static mt_status_t
regex_search(struct mt_tokenizer *tok, int k, const char *s, size_t n, size_t pos, int *rc_out)
{
    const struct pretok_step *step = &tok->steps[k];
    uint64_t limit = (uint64_t)MATCH_LIMIT_BASE + (n - pos);
    PCRE2_UCHAR msg[256];
    int rc;

    pcre2_set_match_limit(tok->mctx, limit < UINT32_MAX ? (uint32_t)limit : UINT32_MAX);
    if (step->jit) {
        rc = pcre2_jit_match(step->re, (PCRE2_SPTR)s, n, pos, 0, tok->md, tok->mctx);
    } else {
        rc = pcre2_match(step->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, tok->md, tok->mctx);
    }
    if (rc >= 0 || rc == PCRE2_ERROR_NOMATCH) {
        *rc_out = rc;
        return MT_OK;
    }
    pcre2_get_error_message(rc, msg, sizeof(msg));
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
        rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "tokenizer '%s': pre_tokenizer step %d: regex '%.200s' gave up on a "
                       "%zu-byte piece of the text (%s): it backtracks catastrophically, so the "
                       "tokenizer or the text is pathological (check the Split patterns)",
                       tok->path, k, step->pattern, n, (const char *)msg);
    }
    return mt_fail(MT_ERR_INTERNAL, 0,
                   "tokenizer '%s': pre_tokenizer step %d: regex '%.200s' failed: %s", tok->path, k,
                   step->pattern, (const char *)msg);
}

/* Run pre-tokenizer step k (and the steps after it) over the valid UTF-8 piece s[0..n). */
static mt_status_t
pretok(struct mt_tokenizer *tok, int k, const char *s, size_t n, struct out_ids *o)
{
    const struct pretok_step *step;
    mt_status_t st;

    if (n == 0) {
        return MT_OK;
    }
    if (k == tok->n_steps) {
        return encode_piece(tok, s, n, o);
    }
    step = &tok->steps[k];
    if (step->prefix_space && s[0] != ' ') {
        /* ByteLevel add_prefix_space: the piece gets a leading space */
        char *copy = malloc(n + 1);
        if (copy == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory");
        }
        copy[0] = ' ';
        memcpy(copy + 1, s, n);
        struct pretok_step saved = *step;
        tok->steps[k].prefix_space = false;
        st = pretok(tok, k, copy, n + 1, o);
        tok->steps[k] = saved;
        free(copy);
        return st;
    }
    if (step->re == NULL) {
        return pretok(tok, k + 1, s, n, o);
    }

    /*
     * The piece as a list of (span, is_match) covering it, as HF's find_matches; each span is
     * then emitted according to the behavior. Spans are produced and consumed on the fly:
     * `pend` is a span waiting to learn whether a following match merges into it.
     */
    size_t pos = 0, prev_end = 0, pend_s = 0, pend_e = 0;
    bool have_pend = false, prev_match = false;
    /*
     * HF finds the matches with onig's find_iter, which drops the first empty match that follows
     * a non-empty one ("a*" on "ab" gives (0,1) and (2,2), never (1,1)). An empty match is a span
     * of its own for the merging behaviors, so keeping it would join pieces differently.
     */
    bool skip_empty = false;
    for (;;) {
        size_t ms, me;
        int rc;
        if (pos > n) {
            rc = PCRE2_ERROR_NOMATCH;
        } else if ((st = regex_search(tok, k, s, n, pos, &rc)) != MT_OK) {
            return st;
        }
        if (rc >= 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(tok->md);
            ms = ov[0];
            me = ov[1];
        } else {
            ms = me = n;
        }
        if (rc >= 0 && me == ms && skip_empty) {
            skip_empty = false;
            pos = past_char(s, n, me); /* as for any empty match */
            continue;
        }
        skip_empty = rc >= 0 && me > ms;
        /* spans: the gap [prev_end, ms) (not a match), then the match [ms, me) */
        for (int part = 0; part < 2; part++) {
            size_t a = part == 0 ? prev_end : ms, b = part == 0 ? ms : me;
            bool is_match = part == 1;
            if (part == 0 && a == b) {
                continue;
            }
            if (part == 1 && rc < 0) {
                break;
            }
            is_match ^= step->invert;
            switch (step->behavior) {
            case SPLIT_REMOVED:
                if (!is_match && (st = pretok(tok, k + 1, s + a, b - a, o)) != MT_OK) {
                    return st;
                }
                break;
            case SPLIT_ISOLATED:
                if ((st = pretok(tok, k + 1, s + a, b - a, o)) != MT_OK) {
                    return st;
                }
                break;
            case SPLIT_MERGED_WITH_PREVIOUS:
            case SPLIT_CONTIGUOUS: {
                /* the two differ only in which span joins the pending one: MergedWithPrevious
                 * joins a match that follows a non-match, Contiguous any span continuing a run of
                 * the same is_match */
                bool joins = step->behavior == SPLIT_CONTIGUOUS ? is_match == prev_match
                                                                : is_match && !prev_match;
                if (have_pend && joins) {
                    pend_e = b;
                } else {
                    if (have_pend &&
                        (st = pretok(tok, k + 1, s + pend_s, pend_e - pend_s, o)) != MT_OK) {
                        return st;
                    }
                    pend_s = a;
                    pend_e = b;
                    have_pend = true;
                }
                break;
            }
            case SPLIT_MERGED_WITH_NEXT:
                /* a match that precedes a non-match joins the span after it (HF folds from
                 * the right: a match is held until we see whether a non-match follows) */
                if (have_pend && prev_match && !is_match) {
                    pend_e = b;
                    if ((st = pretok(tok, k + 1, s + pend_s, pend_e - pend_s, o)) != MT_OK) {
                        return st;
                    }
                    have_pend = false;
                } else {
                    if (have_pend &&
                        (st = pretok(tok, k + 1, s + pend_s, pend_e - pend_s, o)) != MT_OK) {
                        return st;
                    }
                    have_pend = false;
                    if (is_match) {
                        pend_s = a;
                        pend_e = b;
                        have_pend = true;
                    } else if ((st = pretok(tok, k + 1, s + a, b - a, o)) != MT_OK) {
                        return st;
                    }
                }
                break;
            }
            prev_match = is_match;
        }
        if (rc < 0) {
            break;
        }
        prev_end = me;
        if (me > ms) {
            pos = me;
        } else {
            pos = past_char(s, n, me); /* empty match: step one character on */
        }
    }
    if (have_pend && (st = pretok(tok, k + 1, s + pend_s, pend_e - pend_s, o)) != MT_OK) {
        return st;
    }
    return MT_OK;
}

/* Text without added tokens: valid UTF-8 runs go through the pre-tokenizer, bad bytes alone. */
static mt_status_t
encode_plain(struct mt_tokenizer *tok, const char *s, size_t n, struct out_ids *o)
{
    mt_status_t st;

    while (n > 0) {
        size_t v = utf8_valid_prefix((const unsigned char *)s, n);
        if (v > 0 && (st = pretok(tok, 0, s, v, o)) != MT_OK) {
            return st;
        }
        s += v;
        n -= v;
        if (n > 0) {
            if ((st = encode_piece(tok, s, 1, o)) != MT_OK) {
                return st;
            }
            s++;
            n--;
        }
    }
    return MT_OK;
}

/* Leftmost-longest added-token match in s[0..n): returns the token and sets *ms, *me. */
static int32_t
trie_find(const struct trie *t, const char *s, size_t n, size_t *ms, size_t *me)
{
    if (t->n == 0) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!t->first[(unsigned char)s[i]]) {
            continue;
        }
        int32_t node = 0, best = -1;
        size_t best_end = 0;
        for (size_t j = i; j < n; j++) {
            int32_t c = t->nodes[node].child;
            while (c >= 0 && t->nodes[c].byte != (unsigned char)s[j]) {
                c = t->nodes[c].sibling;
            }
            if (c < 0) {
                break;
            }
            node = c;
            if (t->nodes[c].token >= 0) {
                best = t->nodes[c].token;
                best_end = j + 1;
            }
        }
        if (best >= 0) {
            *ms = i;
            *me = best_end;
            return best;
        }
    }
    return -1;
}

static mt_status_t
encode_added(struct mt_tokenizer *tok, const struct trie *t, const struct trie *next, const char *s,
             size_t n, struct out_ids *o)
{
    mt_status_t st;

    while (n > 0) {
        size_t ms, me;
        int32_t id = trie_find(t, s, n, &ms, &me);
        size_t gap = id >= 0 ? ms : n;
        if (gap > 0) {
            st = next != NULL ? encode_added(tok, next, NULL, s, gap, o)
                              : encode_plain(tok, s, gap, o);
            if (st != MT_OK) {
                return st;
            }
        }
        if (id < 0) {
            break;
        }
        if ((st = out_reserve(o, 1)) != MT_OK) {
            return st;
        }
        (*o->ids)[(*o->n)++] = id;
        s += me;
        n -= me;
    }
    return MT_OK;
}

mt_status_t
mt_tokenizer_encode_append(struct mt_tokenizer *tok, const char *text, size_t len, bool special,
                           int32_t **ids_out, size_t *n_out, size_t *cap_inout)
{
    struct out_ids o = {ids_out, n_out, cap_inout};

    if (text == NULL && len > 0) {
        return mt_fail(MT_ERR_INVAL, 0, "tokenizer: NULL text");
    }
    if (special) {
        /* HF: non-normalized added tokens on the raw text first, then normalized ones */
        return encode_added(tok, &tok->added_raw, &tok->added_norm, text, len, &o);
    }
    return encode_plain(tok, text, len, &o);
}

mt_status_t
mt_tokenizer_encode(struct mt_tokenizer *tok, const char *text, size_t len, bool special,
                    int32_t **ids_out, size_t *n_out)
{
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    mt_status_t st;

    st = mt_tokenizer_encode_append(tok, text, len, special, &ids, &n, &cap);
    if (st != MT_OK) {
        free(ids);
        return st;
    }
    if (ids == NULL) {
        ids = malloc(sizeof(*ids)); /* a valid pointer even for no ids */
        if (ids == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory");
        }
    }
    *ids_out = ids;
    *n_out = n;
    return MT_OK;
}

/* ---- decoding and lookups ---------------------------------------------------------------------
 */

const char *
mt_tokenizer_token_bytes(const struct mt_tokenizer *tok, int32_t id, size_t *len_out)
{
    const struct tok_slot *slot = tok_find(tok, id);

    if (slot == NULL) {
        return NULL;
    }
    *len_out = (size_t)slot->len;
    return tok->tok_bytes + slot->off;
}

mt_status_t
mt_tokenizer_decode(const struct mt_tokenizer *tok, const int32_t *ids, size_t n, char **text_out,
                    size_t *len_out)
{
    size_t total = 0, len, off = 0;
    char *out;

    for (size_t i = 0; i < n; i++) {
        if (mt_tokenizer_token_bytes(tok, ids[i], &len) == NULL) {
            return mt_fail(MT_ERR_INVAL, 0,
                           "tokenizer: id %d (position %zu) is not a token "
                           "(vocabulary has %d ids)",
                           ids[i], i, tok->n_vocab);
        }
        total += len;
    }
    out = malloc(total + 1);
    if (out == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory for %zu bytes", total);
    }
    for (size_t i = 0; i < n; i++) {
        const char *b = mt_tokenizer_token_bytes(tok, ids[i], &len);
        memcpy(out + off, b, len);
        off += len;
    }
    out[off] = 0;
    *text_out = out;
    *len_out = off;
    return MT_OK;
}

int32_t
mt_tokenizer_token_id(const struct mt_tokenizer *tok, const char *text)
{
    size_t n = strlen(text);
    struct smap_slot *s = smap_find(&tok->by_text, text, n, hash_bytes(text, n));

    return s != NULL ? (int32_t)s->val : -1;
}

bool
mt_tokenizer_is_added(const struct mt_tokenizer *tok, int32_t id)
{
    const struct tok_slot *slot = tok_find(tok, id);

    return slot != NULL && slot->added;
}

int32_t
mt_tokenizer_n_vocab(const struct mt_tokenizer *tok)
{
    return tok->n_vocab;
}

int32_t
mt_tokenizer_bos(const struct mt_tokenizer *tok)
{
    return tok->bos;
}

int32_t
mt_tokenizer_eos(const struct mt_tokenizer *tok)
{
    return tok->eos;
}

/* ---- streaming decoder ------------------------------------------------------------------------
 */

void
mt_detok_init(struct mt_detok *d, const struct mt_tokenizer *tok)
{
    memset(d, 0, sizeof(*d));
    d->tok = tok;
}

void
mt_detok_fini(struct mt_detok *d)
{
    free(d->buf);
    memset(d, 0, sizeof(*d));
}

static mt_status_t
detok_reserve(struct mt_detok *d, size_t n)
{
    if (n + 1 > d->cap) {
        size_t ncap = MT_MAX(2 * d->cap, n + 64);
        char *nb = realloc(d->buf, ncap);
        if (nb == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "tokenizer: out of memory in the stream decoder");
        }
        d->buf = nb;
        d->cap = ncap;
    }
    return MT_OK;
}

/* Length of the UTF-8 sequence a lead byte starts; 0 if the byte cannot start one. */
static size_t
utf8_seq_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xc2 ? 0 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : c < 0xf5 ? 4 : 0;
}

/*
 * How many bytes from s[0] (of n) begin a well-formed UTF-8 sequence: 1 for a byte that cannot
 * start one, else the lead byte and the continuation bytes its sequence allows (the second byte's
 * range excludes overlongs, surrogates and code points past U+10FFFF), up to the first that does
 * not fit. A sequence cut short there is one "maximal subpart" and becomes one U+FFFD, as
 * Unicode recommends and HF's decode, Python and Rust do; not one U+FFFD a byte.
 */
static size_t
utf8_subpart_len(const unsigned char *s, size_t n)
{
    size_t need = utf8_seq_len(s[0]);
    size_t k = 1;

    for (; need >= 2 && k < need && k < n; k++) {
        unsigned char lo = 0x80, hi = 0xbf;

        if (k == 1) {
            lo = s[0] == 0xe0 ? 0xa0 : s[0] == 0xf0 ? 0x90 : 0x80;
            hi = s[0] == 0xed ? 0x9f : s[0] == 0xf4 ? 0x8f : 0xbf;
        }
        if (s[k] < lo || s[k] > hi) {
            break;
        }
    }
    return k;
}

/*
 * Append the pending bytes plus b[0..n) to d->buf as complete characters; an incomplete tail that
 * may still become valid stays pending; each maximal subpart that cannot becomes one U+FFFD.
 */
static mt_status_t
detok_feed(struct mt_detok *d, const unsigned char *b, size_t n, const char **text_out,
           size_t *len_out)
{
    unsigned char *all;
    size_t total = d->n_pending + n, i = 0, out = 0;
    mt_status_t st;

    /* worst case: every byte becomes a 3-byte U+FFFD */
    if ((st = detok_reserve(d, 4 * total + 4)) != MT_OK) {
        return st;
    }
    all = (unsigned char *)d->buf + 3 * total + 4; /* input copy in the buffer's tail */
    memcpy(all, d->pending, d->n_pending);
    memcpy(all + d->n_pending, b, n);
    d->n_pending = 0;
    while (i < total) {
        size_t v = utf8_valid_prefix(all + i, total - i);
        memmove(d->buf + out, all + i, v);
        out += v;
        i += v;
        if (i == total) {
            break;
        }
        /* all[i] starts something invalid or incomplete */
        size_t need = utf8_seq_len(all[i]), rest = total - i;
        size_t part = utf8_subpart_len(all + i, rest);
        if (need > rest && part == rest) {
            /* incomplete at the end, and what there is fits: the next bytes may complete it */
            memcpy(d->pending, all + i, rest);
            d->n_pending = rest;
            break;
        }
        memcpy(d->buf + out, "\xef\xbf\xbd", 3);
        out += 3;
        i += part;
    }
    d->buf[out] = 0;
    *text_out = d->buf;
    *len_out = out;
    return MT_OK;
}

mt_status_t
mt_detok_push(struct mt_detok *d, int32_t id, const char **text_out, size_t *len_out)
{
    size_t n;
    const char *b = mt_tokenizer_token_bytes(d->tok, id, &n);

    if (b == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "tokenizer: id %d is not a token", id);
    }
    return detok_feed(d, (const unsigned char *)b, n, text_out, len_out);
}

mt_status_t
mt_detok_flush(struct mt_detok *d, const char **text_out, size_t *len_out)
{
    size_t out = 0;
    mt_status_t st;

    if ((st = detok_reserve(d, 16)) != MT_OK) {
        return st;
    }
    if (d->n_pending > 0) {
        memcpy(d->buf, "\xef\xbf\xbd", 3);
        out = 3;
    }
    d->n_pending = 0;
    d->buf[out] = 0;
    *text_out = d->buf;
    *len_out = out;
    return MT_OK;
}
