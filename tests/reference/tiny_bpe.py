#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The tiny preset's BPE merges, trained again here, apart from synth_tokenizer.c.

synth_tokenizer.c documents its training: the fixed paragraph synth_corpus_ is cut into words
(" ?letters", 1 to 3 digits, " ?punctuation", runs of white space), every byte becomes its GPT-2
byte-level symbol, and BPE joins the most frequent adjacent pair (counted over word frequencies;
a pair seen once too, once none is seen more), ties going to the smaller (first, second) symbol
strings, until no pair is left or the merges reach min(480, vocab_size - 263). This script does that from the description,
reading only the paragraph out of the C source, and prints the merge count, the first merges, the
last, and the SHA-256 of the merges one a line ("a b\n" each), which test_synth.c pins:

    python3 tests/reference/tiny_bpe.py runtime/synth/synth_tokenizer.c 1024
"""
import hashlib
import re
import sys


def corpus(c_source):
    text = open(c_source, encoding="utf-8").read()
    body = text[text.index("synth_corpus_[] ="):]
    body = body[:body.index(";\n")]
    raw = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', body))
    return raw.encode("latin-1").decode("unicode_escape").encode("latin-1")


def byte_symbols():
    printable = [b for b in range(256)
                 if 0x21 <= b <= 0x7e or 0xa1 <= b <= 0xac or 0xae <= b <= 0xff]
    cp = {b: b for b in printable}
    extra = 0
    for b in range(256):
        if b not in cp:
            cp[b] = 256 + extra
            extra += 1
    return {b: chr(c).encode("utf-8") for b, c in cp.items()}


def words(s):
    out = {}
    i, n = 0, len(s)
    sp = b" \t\n\r\v\f"
    while i < n:
        start = i
        if s[i:i + 1] == b" " and i + 1 < n and s[i + 1] not in sp and not chr(s[i + 1]).isdigit():
            i += 1
        c = chr(s[i])
        if c.isascii() and c.isalpha():
            while i < n and chr(s[i]).isascii() and chr(s[i]).isalpha():
                i += 1
        elif c.isdigit():
            k = 0
            while k < 3 and i < n and chr(s[i]).isdigit():
                i += 1
                k += 1
        elif s[i] in sp:
            while i < n and s[i] in sp:
                i += 1
        else:
            while i < n and s[i] not in sp and not chr(s[i]).isalnum():
                i += 1
        w = s[start:i]
        out[w] = out.get(w, 0) + 1
    return out


def train(s, vocab_size):
    sym = byte_symbols()
    ws = [[sym[b] for b in w] for w in words(s)]
    freq = list(words(s).values())
    merges = []
    while len(merges) < min(480, vocab_size - 263):
        count = {}
        for w, f in zip(ws, freq):
            for a, b in zip(w, w[1:]):
                count[(a, b)] = count.get((a, b), 0) + f
        best = min((p for p in count if count[p] >= 1), key=lambda p: (-count[p], p), default=None)
        if best is None:
            break
        merges.append(best)
        for j, w in enumerate(ws):
            out, k = [], 0
            while k < len(w):
                if k + 1 < len(w) and (w[k], w[k + 1]) == best:
                    out.append(w[k] + w[k + 1])
                    k += 2
                else:
                    out.append(w[k])
                    k += 1
            ws[j] = out
    return [(a + b" " + b).decode("utf-8") for a, b in merges]


if __name__ == "__main__":
    m = train(corpus(sys.argv[1]), int(sys.argv[2]))
    print(len(m), "merges")
    for i in list(range(8)) + [len(m) - 1]:
        print(i, repr(m[i]))
    print("sha256", hashlib.sha256("".join(x + "\n" for x in m).encode("utf-8")).hexdigest())
