#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""HF `tokenizers` on the corpus of bench_tokenizer, single-threaded: the reference numbers.

usage: tokenizer_hf.py DIR CORPUS [--ids OUT] [--passes N] [--compare IDS]

Reads CORPUS (documents separated by NUL bytes, written by `bench_tokenizer --make-corpus`),
encodes each document with Tokenizer.from_file(DIR/tokenizer.json).encode(doc,
add_special_tokens=False) -- the call golden.json was made with -- pass 1 cold, then N-1 warm
passes, and prints the same columns as bench_tokenizer. --ids writes pass 1's ids, one line per
document, in the format bench_tokenizer writes; --compare IDS reads bench_tokenizer's ids file
and reports every document whose ids differ (exit status 1 if any).
"""
import os

# one thread: set before tokenizers is imported
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import tokenizers  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("corpus")
    ap.add_argument("--ids")
    ap.add_argument("--passes", type=int, default=4)
    ap.add_argument("--compare")
    a = ap.parse_args()

    raw = open(a.corpus, "rb").read()
    docs = [d.decode("utf-8") for d in raw.split(b"\0")]
    t0 = time.perf_counter()
    tok = tokenizers.Tokenizer.from_file(os.path.join(a.dir, "tokenizer.json"))
    t_load = time.perf_counter() - t0

    times, n_tokens, first = [], 0, None
    for p in range(max(1, a.passes)):
        t0 = time.perf_counter()
        out = [tok.encode(d, add_special_tokens=False).ids for d in docs]
        times.append(time.perf_counter() - t0)
        n_tokens = sum(len(x) for x in out)
        if p == 0:
            first = out
    if a.ids:
        with open(a.ids, "w") as f:
            for ids in first:
                f.write(" ".join(map(str, ids)) + "\n")
    mb = len(raw) / 1e6
    print(f"# HF tokenizers {tokenizers.__version__}: {a.dir}, corpus {a.corpus} "
          f"({len(docs)} documents, {mb:.2f} MB, {n_tokens} tokens), load {t_load:.3f} s")
    print(f"{'tool':<10} {'pass':<12} {'MB':>8} {'seconds':>10} {'MB/s':>10} {'tok/s':>12}")
    print(f"{'hf':<10} {'cold':<12} {mb:8.2f} {times[0]:10.3f} {mb / times[0]:10.2f} "
          f"{n_tokens / times[0]:12.0f}")
    if len(times) > 1:
        w = sorted(times[1:])
        med = w[(len(w) - 1) // 2]
        print(f"{'hf':<10} {'warm-median':<12} {mb:8.2f} {med:10.3f} {mb / med:10.2f} "
              f"{n_tokens / med:12.0f}")
    if a.compare:
        theirs = open(a.compare).read().split("\n")
        bad = 0
        for i, ids in enumerate(first):
            got = theirs[i].split() if i < len(theirs) else None
            if got is None or list(map(int, got)) != ids:
                bad += 1
                if bad <= 5:
                    common = min(len(ids), len(got or []))
                    k = next((j for j in range(common) if int(got[j]) != ids[j]), common)
                    print(f"# MISMATCH doc {i} at id {k}: moetier {got[k:k + 8] if got else None} "
                          f"hf {ids[k:k + 8]} text {docs[i][:80]!r}")
        print(f"# compare: {len(first) - bad} of {len(first)} documents have identical ids "
              f"({n_tokens} tokens)")
        if bad:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
