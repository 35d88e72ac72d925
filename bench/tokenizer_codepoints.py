#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Which Unicode code points our tokenizer encodes unlike HF `tokenizers`.

The pre-tokenizer's regexes split text by Unicode class (letters, numbers, marks, punctuation);
ours are PCRE2's, HF's are Oniguruma's, and the two libraries may know different Unicode
versions: a character one of them does not know yet is split differently where it sits beside
letters or digits. This measures how many code points that touches.

usage: tokenizer_codepoints.py make CORPUS
       tokenizer_codepoints.py compare DIR CORPUS IDS

make writes one document per Unicode scalar value but NUL (the corpus separator), in the format
of `bench_tokenizer --make-corpus` (documents separated by NUL bytes): the code point c between
two letters, between two digits and alone, "a{c}b 1{c}2 {c}". Encode it with
`bench_tokenizer -m DIR --corpus CORPUS --ids IDS --passes 1`; compare then encodes every
document with HF tokenizers (DIR/tokenizer.json) and prints how many differ, by general category
(Python's unicodedata, whose Unicode version it prints) and by the 4,096-code-point ranges that
hold the most. Exit status 0 either way: differences are the measurement, not an error.
"""
import collections
import os
import sys
import unicodedata

CONTEXT = "a{c}b 1{c}2 {c}"


def code_points():
    return [c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF]


def make(corpus):
    docs = [CONTEXT.format(c=chr(c)) for c in code_points()]
    with open(corpus, "wb") as f:
        f.write(b"\0".join(d.encode("utf-8") for d in docs))
    print(f"# {corpus}: {len(docs)} documents, one a code point ({CONTEXT!r})")


def compare(model_dir, corpus, ids_file):
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    import tokenizers

    docs = open(corpus, "rb").read().decode("utf-8").split("\0")
    ours = open(ids_file).read().split("\n")
    cps = code_points()
    if len(docs) != len(cps) or len(ours) < len(docs):
        sys.exit(f"tokenizer_codepoints: {corpus} has {len(docs)} documents and {ids_file} "
                 f"{len(ours)} lines, want {len(cps)} each (remake both)")
    tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    theirs = tok.encode_batch(docs, add_special_tokens=False)
    by_cat, by_range, examples = collections.Counter(), collections.Counter(), []
    for cp, mine, hf in zip(cps, ours, theirs):
        if list(map(int, mine.split())) != hf.ids:
            cat = unicodedata.category(chr(cp))
            by_cat[cat] += 1
            by_range[cp >> 12] += 1
            if len(examples) < 8:
                examples.append(f"U+{cp:04X} ({cat}): moetier {mine} hf {' '.join(map(str, hf.ids))}")
    bad = sum(by_cat.values())
    print(f"# HF tokenizers {tokenizers.__version__}; Python's unicodedata "
          f"{unicodedata.unidata_version}; context {CONTEXT!r}")
    print(f"# {bad} of {len(cps)} code points encode differently")
    for cat, n in by_cat.most_common():
        print(f"category {cat}: {n}")
    for r, n in by_range.most_common(12):
        print(f"range U+{r << 12:04X}-U+{(r << 12) + 0xFFF:04X}: {n}")
    for e in examples:
        print(f"# e.g. {e}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "compare":
        compare(*sys.argv[2:])
    else:
        sys.exit(__doc__.split("\n\n")[2])


if __name__ == "__main__":
    main()
