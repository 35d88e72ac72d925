#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run test_tokenizer's small tokenizers through HF `tokenizers` and compare the ids.

test_tokenizer.c builds small tokenizer.json files (a byte-level vocab, a few merges, Split
pre-tokenizers, added tokens) and states by hand which ids each text must give. This script checks
those hand-written expectations against HF tokenizers, code no one here wrote:

    MT_TEST_DATA=SRC/tests/data MT_TOKENIZER_CASES=cases.jsonl tests/test_tokenizer  # build tree
    python3 check_small_tokenizers.py cases.jsonl             # where `tokenizers` is installed

Each line of cases.jsonl is {"what", "text_hex", "want", "json"}. Our files leave out fields that
HF requires and we default (ByteLevel's trim_offsets, added tokens' single_word/lstrip/rstrip,
special and normalized); they are filled in with the values we assume: HF's own defaults, and for
normalized, which HF's file format has none for, !special (HF's AddedToken::from). The decoder
is dropped: only encoding is checked. Texts that are not valid UTF-8 are skipped (HF takes str).
Exit status 1 when any case differs.
"""
import json
import sys

import tokenizers


def fill_defaults(node):
    if isinstance(node, dict):
        if node.get("type") == "ByteLevel":
            node.setdefault("trim_offsets", True)
        for v in node.values():
            fill_defaults(v)
    elif isinstance(node, list):
        for v in node:
            fill_defaults(v)


def hf_ids(tokenizer_json, text):
    j = json.loads(tokenizer_json)
    fill_defaults(j)
    j["decoder"] = None
    for added in j.get("added_tokens", []):
        for key in ("single_word", "lstrip", "rstrip", "special"):
            added.setdefault(key, False)
        added.setdefault("normalized", not added["special"])
    tok = tokenizers.Tokenizer.from_str(json.dumps(j))
    return tok.encode(text, add_special_tokens=False).ids


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: check_small_tokenizers.py CASES.jsonl (written by MT_TOKENIZER_CASES)")
    print(f"tokenizers {tokenizers.__version__}")
    agree = differ = skipped = 0
    with open(sys.argv[1], encoding="utf-8") as f:
        for line in f:
            case = json.loads(line)
            try:
                text = bytes.fromhex(case["text_hex"]).decode("utf-8")
            except UnicodeDecodeError:
                skipped += 1
                continue
            try:
                ids = hf_ids(case["json"], text)
            except Exception as e:  # a file HF refuses is a difference too
                print(f"ERROR {case['what']}: {e!r}")
                differ += 1
                continue
            if ids == case["want"]:
                agree += 1
            else:
                differ += 1
                print(f"DIFF {case['what']}: text {text!r} want {case['want']} hf {ids}")
    print(f"agree {agree}, differ {differ}, skipped (not UTF-8) {skipped}")
    if agree + differ == 0:
        sys.exit("no cases: run tests/test_tokenizer with MT_TOKENIZER_CASES set first")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
