/* SPDX-License-Identifier: MIT */
/*
 * synth_tokenizer.c - the tokenizer files of a synthetic checkpoint (see synth_tokenizer.h).
 *
 * The one idea: the tiny preset's tokenizer is not made up, it is learned. Plain BPE training on a
 * fixed paragraph (below) joins the most frequent adjacent pair again and again, so every merge
 * joins two existing symbols into the next id and a merge's result is always earlier than any
 * merge that uses it: the same invariants a real tokenizer.json has, which the tokenizer's loader
 * checks. Training is deterministic (ties break on the smaller strings), so synth's output bytes
 * depend only on the vocabulary size.
 */
#include <config.h>

#include "runtime/synth/synth_tokenizer.h"

#include "runtime/base/file_util.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * The tiny preset's tokenizer: DeepSeek's structure (the same normalizer, the same three-regex
 * Split pre-tokenizer and ByteLevel, the same special-token spellings, BOS 0, EOS 1, pad 2, then
 * the 256 byte symbols in GPT-2's order), with merges learned here by plain BPE training on the
 * paragraph below, so they are real, consistent merges: every merge joins two existing symbols into
 * the next id, and a merge's result is always earlier than any merge that uses it.
 */
static const char synth_corpus_[] =
    "The model reads the prompt, then writes one token at a time. Each token goes through every "
    "layer: attention looks back at the tokens that came before, and the experts of the layer "
    "transform what attention found. A router picks the experts for each token; the other experts "
    "are not read at all, which is why the model can be large and still fast. The weights of the "
    "experts live where there is room for them: in the memory of the graphics card, in the main "
    "memory of the machine, or on the drives, from which they are streamed when they are needed. "
    "The planner decides where each expert should live, and the runtime reports the time it "
    "measured against the time the planner predicted. When the two do not agree, one of them is "
    "wrong, and the test tells which one. There is nothing random about the order of these "
    "steps; only the weights of this test model are random, and they are the same for the same "
    "seed. The tokenizer turns the text into numbers and the numbers back into text.\n"
    "int main(int argc, char **argv)\n{\n    for (int i = 0; i < argc; i++) {\n"
    "        printf(\"%s\\n\", argv[i]);\n    }\n    return 0;\n}\n"
    "def forward(self, x):\n    return self.norm(x + self.attention(x))\n"
    "1 2 3 10 20 30 100 200 300 2024 2025 2026 3.14159 0.5 42\n";

#define SYNTH_TOK_MERGES_MAX 480

/* GPT-2's byte-to-symbol map: printable bytes stand for themselves, the rest for U+0100 on. */
static void
synth_byte_symbols_(unsigned cp_out[256], int rank_out[256])
{
    int rank = 0;
    int extra = 0;

    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) ||
                         (b >= 0xae && b <= 0xff);
        if (printable) {
            cp_out[b] = (unsigned)b;
            rank_out[b] = rank++;
        }
    }
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) ||
                         (b >= 0xae && b <= 0xff);
        if (!printable) {
            cp_out[b] = 256u + (unsigned)extra++;
            rank_out[b] = rank++;
        }
    }
}

static size_t
synth_utf8_(unsigned cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

struct synth_word {
    int *ids;
    int len;
    int freq;
};

struct synth_bpe {
    char **sym;          /* [n_sym] owned strings (UTF-8 of byte-level symbols) */
    int n_sym;
    char **merges;       /* [n_merges] owned "a b" */
    int n_merges;
    struct synth_word *words;
    int n_words;
};

static void
synth_bpe_free_(struct synth_bpe *b)
{
    for (int i = 0; i < b->n_sym; i++) {
        free(b->sym[i]);
    }
    for (int i = 0; i < b->n_merges; i++) {
        free(b->merges[i]);
    }
    for (int i = 0; i < b->n_words; i++) {
        free(b->words[i].ids);
    }
    free(b->sym);
    free(b->merges);
    free(b->words);
}

/* Pre-tokenize (roughly as DeepSeek's regex: " ?letters", 1-3 digits, " ?punctuation", space). */
static mt_status_t
synth_bpe_words_(struct synth_bpe *b, const int byte_id[256])
{
    const unsigned char *s = (const unsigned char *)synth_corpus_;
    size_t n = sizeof(synth_corpus_) - 1;
    size_t i = 0;

    b->words = calloc(n, sizeof(*b->words));
    if (b->words == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate tokenizer training words");
    }
    while (i < n) {
        size_t start = i;
        int w;

        if (s[i] == ' ' && i + 1 < n && !isspace(s[i + 1]) && !isdigit(s[i + 1])) {
            i++;
        }
        if (isalpha(s[i])) {
            while (i < n && isalpha(s[i])) {
                i++;
            }
        } else if (isdigit(s[i])) {
            for (int k = 0; k < 3 && i < n && isdigit(s[i]); k++) {
                i++;
            }
        } else if (isspace(s[i])) {
            while (i < n && isspace(s[i])) {
                i++;
            }
        } else {
            while (i < n && !isspace(s[i]) && !isalnum(s[i])) {
                i++;
            }
        }
        for (w = 0; w < b->n_words; w++) {
            bool same = b->words[w].len == (int)(i - start);
            for (int k = 0; same && k < b->words[w].len; k++) {
                same = b->words[w].ids[k] == byte_id[s[start + k]];
            }
            if (same) {
                break;
            }
        }
        if (w < b->n_words) {
            b->words[w].freq++;
            continue;
        }
        b->words[w].ids = malloc((i - start) * sizeof(int));
        if (b->words[w].ids == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate tokenizer training words");
        }
        for (size_t k = start; k < i; k++) {
            b->words[w].ids[k - start] = byte_id[s[k]];
        }
        b->words[w].len = (int)(i - start);
        b->words[w].freq = 1;
        b->n_words++;
    }
    return MT_OK;
}

/* Learn merges: repeatedly join the most frequent adjacent pair (ties: smaller strings first). */
static mt_status_t
synth_bpe_train_(struct synth_bpe *b, int max_merges)
{
    int cap = b->n_sym + max_merges;
    int *count = NULL;
    char **sym = realloc(b->sym, (size_t)cap * sizeof(char *));

    if (sym != NULL) {
        b->sym = sym; /* on failure b->sym still holds the n_sym symbols, for the caller to free */
    }
    b->merges = calloc((size_t)max_merges, sizeof(char *));
    count = calloc((size_t)cap * (size_t)cap, sizeof(int));
    if (b->merges == NULL || sym == NULL || count == NULL) {
        free(count);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate tokenizer training tables");
    }
    while (b->n_merges < max_merges) {
        int best_a = -1;
        int best_b = -1;
        int best = 1; /* the most frequent pair; one seen once too (merges fill the vocabulary) */
        int id = b->n_sym;
        size_t la;
        size_t lb;

        memset(count, 0, (size_t)cap * (size_t)cap * sizeof(int));
        for (int w = 0; w < b->n_words; w++) {
            for (int k = 0; k + 1 < b->words[w].len; k++) {
                count[b->words[w].ids[k] * cap + b->words[w].ids[k + 1]] += b->words[w].freq;
            }
        }
        for (int w = 0; w < b->n_words; w++) {
            for (int k = 0; k + 1 < b->words[w].len; k++) {
                int x = b->words[w].ids[k];
                int y = b->words[w].ids[k + 1];
                int cnt = count[x * cap + y];
                int cmp;

                if (cnt < best) {
                    continue;
                }
                cmp = best_a < 0 ? -1 : strcmp(b->sym[x], b->sym[best_a]);
                if (cmp == 0) {
                    cmp = strcmp(b->sym[y], b->sym[best_b]);
                }
                if (cnt > best || cmp < 0) {
                    best = cnt;
                    best_a = x;
                    best_b = y;
                }
            }
        }
        if (best_a < 0) {
            break;
        }
        la = strlen(b->sym[best_a]);
        lb = strlen(b->sym[best_b]);
        char *joined = malloc(la + lb + 1);
        char *merge = malloc(la + lb + 2);
        if (joined == NULL || merge == NULL) {
            free(joined);
            free(merge);
            free(count);
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a merge");
        }
        b->sym[id] = joined;
        b->merges[b->n_merges] = merge;
        memcpy(b->sym[id], b->sym[best_a], la);
        memcpy(b->sym[id] + la, b->sym[best_b], lb + 1);
        snprintf(b->merges[b->n_merges], la + lb + 2, "%s %s", b->sym[best_a], b->sym[best_b]);
        b->n_sym++;
        b->n_merges++;
        for (int w = 0; w < b->n_words; w++) {
            int *ids = b->words[w].ids;
            int out = 0;

            for (int k = 0; k < b->words[w].len; k++) {
                if (k + 1 < b->words[w].len && ids[k] == best_a && ids[k + 1] == best_b) {
                    ids[out++] = id;
                    k++;
                } else {
                    ids[out++] = ids[k];
                }
            }
            b->words[w].len = out;
        }
    }
    free(count);
    return MT_OK;
}

static json_t *
synth_added_token_(int id, const char *content, bool normalized, bool special)
{
    return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", content,
                     "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", normalized,
                     "special", special);
}

static json_t *
synth_split_(const char *regex)
{
    return json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex", regex,
                     "behavior", "Isolated", "invert", 0);
}

#define SYNTH_BOS "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define SYNTH_EOS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define SYNTH_PAD "<\xef\xbd\x9c\xe2\x96\x81pad\xe2\x96\x81\xef\xbd\x9c>"
#define SYNTH_USER "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define SYNTH_ASSISTANT "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"

/* DeepSeek's three pre-tokenizer regexes, byte for byte. */
static const char synth_re_digits_[] = "\\p{N}{1,3}";
static const char synth_re_cjk_[] =
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+";
static const char synth_re_words_[] =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"
    "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

static json_t *
synth_tiny_tokenizer_json_(const struct synth_bpe *b, int *max_id_out)
{
    static const char *const specials[3] = {SYNTH_BOS, SYNTH_EOS, SYNTH_PAD};
    json_t *root = json_object();
    json_t *added = json_array();
    json_t *vocab = json_object();
    json_t *merges = json_array();
    json_t *pre = json_array();
    json_t *model;
    int next = b->n_sym;
    int rc = 0;

    if (root == NULL || added == NULL || vocab == NULL || merges == NULL || pre == NULL) {
        goto out_fail;
    }
    for (int i = 0; i < 3; i++) {
        rc |= json_array_append_new(added, synth_added_token_(i, specials[i], false, true));
    }
    rc |= json_array_append_new(added, synth_added_token_(next++, SYNTH_USER, true, false));
    rc |= json_array_append_new(added, synth_added_token_(next++, SYNTH_ASSISTANT, true, false));
    rc |= json_array_append_new(added, synth_added_token_(next++, "<think>", false, true));
    rc |= json_array_append_new(added, synth_added_token_(next++, "</think>", false, true));
    for (int i = 0; i < b->n_sym; i++) {
        rc |= json_object_set_new(vocab, i < 3 ? specials[i] : b->sym[i], json_integer(i));
    }
    for (int i = 0; i < b->n_merges; i++) {
        rc |= json_array_append_new(merges, json_string(b->merges[i]));
    }
    rc |= json_array_append_new(pre, synth_split_(synth_re_digits_));
    rc |= json_array_append_new(pre, synth_split_(synth_re_cjk_));
    rc |= json_array_append_new(pre, synth_split_(synth_re_words_));
    rc |= json_array_append_new(pre, json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel",
                                               "add_prefix_space", 0, "trim_offsets", 1,
                                               "use_regex", 0));
    rc |= json_object_set_new(root, "version", json_string("1.0"));
    rc |= json_object_set_new(root, "truncation", json_null());
    rc |= json_object_set_new(root, "padding", json_null());
    rc |= json_object_set_new(root, "added_tokens", added);
    added = NULL;
    rc |= json_object_set_new(root, "normalizer", json_pack("{s:s, s:[]}", "type", "Sequence",
                                                            "normalizers"));
    rc |= json_object_set_new(root, "pre_tokenizer", json_pack("{s:s, s:o}", "type", "Sequence",
                                                               "pretokenizers", pre));
    pre = NULL;
    rc |= json_object_set_new(root, "post_processor",
                              json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel",
                                        "add_prefix_space", 1, "trim_offsets", 0, "use_regex", 1));
    rc |= json_object_set_new(root, "decoder",
                              json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel",
                                        "add_prefix_space", 1, "trim_offsets", 1, "use_regex", 1));
    model = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout",
                      "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0,
                      "byte_fallback", 0, "vocab", vocab, "merges", merges);
    vocab = NULL;
    merges = NULL;
    rc |= json_object_set_new(root, "model", model);
    if (rc != 0 || model == NULL) {
        goto out_fail;
    }
    *max_id_out = next - 1;
    return root;

out_fail:
    json_decref(root);
    json_decref(added);
    json_decref(vocab);
    json_decref(merges);
    json_decref(pre);
    return NULL;
}

static json_t *
synth_tiny_tokenizer_config_(void)
{
    json_t *tok[3];
    static const char *const names[3] = {SYNTH_BOS, SYNTH_EOS, SYNTH_EOS};

    for (int i = 0; i < 3; i++) {
        tok[i] = json_pack("{s:s, s:s, s:b, s:b, s:b, s:b}", "__type", "AddedToken", "content",
                           names[i], "lstrip", 0, "normalized", 1, "rstrip", 0, "single_word", 0);
    }
    return json_pack("{s:b, s:b, s:o?, s:b, s:o?, s:b, s:i, s:o?, s:{}, s:n, s:s}",
                     "add_bos_token", 1, "add_eos_token", 0, "bos_token", tok[0],
                     "clean_up_tokenization_spaces", 0, "eos_token", tok[1], "legacy", 1,
                     "model_max_length", 4096, "pad_token", tok[2], "sp_model_kwargs", "unk_token",
                     "tokenizer_class", "LlamaTokenizerFast");
}

/* Serialise root as synth always has (two-space indent, no trailing newline). */
static mt_status_t
synth_dump_(json_t *root, const char *name, char **text_out, size_t *len_out)
{
    char *text;

    if (root == NULL || (text = json_dumps(root, JSON_INDENT(2))) == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot build %s", name);
    }
    *text_out = text;
    *len_out = strlen(text);
    return MT_OK;
}

mt_status_t
mt_synth_tokenizer_train(int vocab_size, struct mt_synth_tokenizer_files *files_out)
{
    struct mt_synth_tokenizer_files f = {0};
    struct synth_bpe b = {0};
    unsigned cp[256];
    int rank[256];
    int byte_id[256];
    json_t *root = NULL;
    int max_id = 0;
    int max_merges;
    mt_status_t st;

    synth_byte_symbols_(cp, rank);
    b.sym = calloc(3 + 256, sizeof(char *));
    if (b.sym == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the tokenizer vocabulary");
    }
    b.n_sym = 3;
    for (int i = 0; i < 3; i++) {
        b.sym[i] = strdup(i == 0 ? SYNTH_BOS : i == 1 ? SYNTH_EOS : SYNTH_PAD);
        if (b.sym[i] == NULL) {
            st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the tokenizer vocabulary");
            goto out;
        }
    }
    for (int byte = 0; byte < 256; byte++) {
        char u[3] = {0};

        synth_utf8_(cp[byte], u);
        byte_id[byte] = 3 + rank[byte];
        b.sym[byte_id[byte]] = strdup(u);
        if (b.sym[byte_id[byte]] == NULL) {
            st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the tokenizer vocabulary");
            goto out;
        }
        b.n_sym++;
    }
    /* Merges fill the vocabulary up to vocab_size, less the four added tokens. */
    max_merges = MT_MIN(SYNTH_TOK_MERGES_MAX, vocab_size - b.n_sym - 4);
    if (max_merges < 0) {
        st = mt_fail(MT_ERR_INVAL, 0, "vocab_size %d is too small for a byte-level tokenizer",
                     vocab_size);
        goto out;
    }
    if ((st = synth_bpe_words_(&b, byte_id)) != MT_OK ||
        (st = synth_bpe_train_(&b, max_merges)) != MT_OK) {
        goto out;
    }
    root = synth_tiny_tokenizer_json_(&b, &max_id);
    if ((st = synth_dump_(root, "tokenizer.json", &f.json, &f.json_len)) != MT_OK) {
        goto out;
    }
    MT_ASSERT(max_id < vocab_size);
    json_decref(root);
    root = synth_tiny_tokenizer_config_();
    if ((st = synth_dump_(root, "tokenizer_config.json", &f.config, &f.config_len)) != MT_OK) {
        goto out;
    }
    *files_out = f;
    f = (struct mt_synth_tokenizer_files){0};
out:
    mt_synth_tokenizer_files_fini(&f);
    json_decref(root);
    synth_bpe_free_(&b);
    return st;
}

/* Replace the one occurrence of `from` by `to` (shorter) in place; false if not exactly one. */
static bool
synth_replace_once_(char *data, size_t *n, const char *from, const char *to)
{
    size_t lf = strlen(from);
    size_t lt = strlen(to);
    char *p = memmem(data, *n, from, lf);

    if (p == NULL || lt > lf || memmem(p + lf, *n - (size_t)(p + lf - data), from, lf) != NULL) {
        return false;
    }
    memcpy(p, to, lt);
    memmove(p + lt, p + lf, *n - (size_t)(p + lf - data) + 1);
    *n -= lf - lt;
    return true;
}

/*
 * DeepSeek's tokenizer files. V3.2's tokenizer.json differs from V3's only in naming ids
 * 128798 and 128799 <think> and </think> (tests/data/tokenizer/README.md); when the source still
 * has V3's placeholders there, they are renamed, so the copy is V3.2's.
 */
mt_status_t
mt_synth_tokenizer_load(const char *dir, struct mt_synth_tokenizer_files *files_out)
{
    static const char *const names[2] = {"tokenizer.json", "tokenizer_config.json"};
    struct mt_synth_tokenizer_files f = {0};
    char **text[2] = {&f.json, &f.config};
    size_t *len[2] = {&f.json_len, &f.config_len};
    char path[4096];
    mt_status_t st = MT_OK;

    for (int i = 0; i < 2; i++) {
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= sizeof(path)) {
            st = mt_fail(MT_ERR_INVAL, 0, "tokenizer directory '%s' is too long", dir);
            goto out;
        }
        /* (checked first so that the likely mistake, no tokenizer directory, gets its hint) */
        if (access(path, R_OK) != 0) {
            st = mt_fail(MT_ERR_IO, 0,
                         "cannot open tokenizer file '%s': %s (set MT_TOKENIZER_DIR or "
                         "--tokenizer-dir to a directory holding DeepSeek's tokenizer.json)",
                         path, strerror(errno));
            goto out;
        }
        if ((st = mt_file_read_all(path, "tokenizer file", 0, text[i], len[i])) != MT_OK) {
            goto out;
        }
    }
    /* (a source that is already V3.2's has neither, and is copied as it is) */
    synth_replace_once_(f.json, &f.json_len, "\"<\xef\xbd\x9cplace\xe2\x96\x81holder\xe2\x96\x81"
                        "no\xe2\x96\x81" "798\xef\xbd\x9c>\"", "\"<think>\"");
    synth_replace_once_(f.json, &f.json_len, "\"<\xef\xbd\x9cplace\xe2\x96\x81holder\xe2\x96\x81"
                        "no\xe2\x96\x81" "799\xef\xbd\x9c>\"", "\"</think>\"");
    *files_out = f;
    return MT_OK;
out:
    mt_synth_tokenizer_files_fini(&f);
    return st;
}

void
mt_synth_tokenizer_files_fini(struct mt_synth_tokenizer_files *files)
{
    free(files->json);
    free(files->config);
    memset(files, 0, sizeof(*files));
}
