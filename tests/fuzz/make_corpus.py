#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# make_corpus.py - writes the seed corpora of tests/fuzz, one directory per target under corpus/:
# safetensors/ (small valid and invalid images), config/ (DeepSeek-V3.2's config.json in both
# layouts, a tiny one, some broken ones), tokenizer/ (a small byte-level BPE tokenizer.json, alone
# and followed by a NUL and a text to encode, and broken variants).
# Run from anywhere: python3 tests/fuzz/make_corpus.py; the output is committed.
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "safetensors")
DATA = os.path.join(HERE, "..", "data")


def image(header, data=b"", hlen=None, pad=True):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    n = len(h) if hlen is None else hlen
    return struct.pack("<Q", n) + h + data


def t(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


def all_dtypes():
    """One element of each remaining dtype, packed back to back (the tensors tile the data)."""
    out, off = {}, 0
    for name, size in [("F8_E5M2", 1), ("F16", 2), ("F64", 8), ("I8", 1), ("I16", 2), ("I32", 4),
                       ("U8", 1), ("U32", 4), ("U64", 8)]:
        out[name] = t(name, [1], off, off + size)
        off += size
    return out


SEEDS = {
    "valid-f32-2d": image({"__metadata__": {"format": "pt"}, "w": t("F32", [2, 3], 0, 24)},
                          bytes(range(24))),
    "valid-mixed": image({"a": t("BF16", [5], 0, 10), "b": t("I64", [], 10, 18),
                          "c": t("F8_E4M3", [2, 2], 18, 22), "d": t("BOOL", [0, 4], 22, 22),
                          "e": t("U16", [1, 1, 1], 22, 24)}, bytes(24)),
    "valid-empty": image({}),
    "valid-all-dtypes": image(all_dtypes(), bytes(31)),
    "bad-short": b"\x05\x00\x00\x00\x00",
    "bad-hlen-past-end": image({"w": t("F32", [1], 0, 4)}, bytes(4), hlen=1 << 40),
    "bad-not-json": image(b"{this is not json}"),
    "bad-overlap": image({"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)}, bytes(12)),
    "bad-out-of-range": image({"a": t("F32", [2], 8, 16)}, bytes(8)),
    "bad-shape-mismatch": image({"x.weight": t("F32", [4, 8], 0, 96)}, bytes(128)),
    "bad-dtype": image({"a": t("F4", [2], 0, 1)}, bytes(1)),
    "bad-negative-shape": image({"a": t("F32", [-1], 0, 4)}, bytes(4)),
    "bad-duplicate": image(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                           b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', bytes(2)),
    "bad-overflow": image({"a": t("F64", [4294967296, 4294967296, 16], 0, 8)}, bytes(8)),
    "bad-metadata": image({"__metadata__": {"format": 1}}),
}



def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


real = json.load(open(os.path.join(DATA, "deepseek-v3.2", "config.json")))
tiny = dict(real, num_hidden_layers=2, hidden_size=64, intermediate_size=128,
            moe_intermediate_size=32, n_routed_experts=8, n_group=2, topk_group=1,
            num_experts_per_tok=2, first_k_dense_replace=1, q_lora_rank=32, kv_lora_rank=16,
            qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, num_attention_heads=2,
            num_key_value_heads=2, index_n_heads=2, index_head_dim=16, vocab_size=300)
CONFIG_SEEDS = {
    "valid-v32": compact(real),
    "valid-transformers5": compact(json.load(open(os.path.join(DATA, "configs",
                                                                "transformers5-v3.2.json")))),
    "valid-tiny": compact(tiny),
    "bad-shared-zero": compact(dict(tiny, n_shared_experts=0)),
    "bad-index-head-dim": compact(dict(tiny, index_head_dim=24)),
    "bad-duplicate": b'{"hidden_size":64,"hidden_size":65}',
    "bad-not-json": b'{"hidden_size": 7168,',
}


def byte_level_vocab():
    """The 256 one-byte tokens in GPT-2's byte-level spelling, ids 0..255."""
    printable = [b for b in range(256) if 0x21 <= b <= 0x7e or 0xa1 <= b <= 0xac or b >= 0xae]
    vocab, n = {}, 0
    for b in range(256):
        cp = b if b in printable else 256 + n
        n += b not in printable
        vocab[chr(cp)] = b
    return vocab


vocab = byte_level_vocab()
merges = [["h", "e"], ["l", "l"], ["he", "ll"], ["\u0120", "w"], ["o", "r"]]
for a, b in merges:
    vocab.setdefault(a + b, len(vocab))
SPLIT = {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}| ?\\p{L}+|\\s+(?!\\S)|\\s+|."},
         "behavior": "Isolated", "invert": False}
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
              "use_regex": False}
tok = {
    "version": "1.0",
    "added_tokens": [{"id": 300, "content": "<|User|>", "special": True, "normalized": False},
                     {"id": 301, "content": "<|eos|>", "special": True, "normalized": False}],
    "normalizer": {"type": "Sequence", "normalizers": []},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [SPLIT, BYTE_LEVEL]},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": vocab, "merges": [" ".join(m) for m in merges]},
}
TOKENIZER_SEEDS = {
    "valid-small": compact(tok),
    "valid-small-text": compact(tok) + b"\0hello world 12345 <|User|>\xff\n",
    "valid-array-merges": compact(dict(tok, model=dict(tok["model"], merges=merges))),
    "bad-big-id": compact(dict(tok, added_tokens=[{"id": 1 << 24, "content": "<x>"}])),
    "bad-merge": compact(dict(tok, model=dict(tok["model"], merges=["h e l"]))),
    "bad-duplicate": b'{"model":{},"model":{}}',
}

for sub, seeds in (("safetensors", SEEDS), ("config", CONFIG_SEEDS),
                   ("tokenizer", TOKENIZER_SEEDS)):
    out = os.path.join(HERE, "corpus", sub)
    os.makedirs(out, exist_ok=True)
    for name, blob in sorted(seeds.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(blob)
    print("wrote %d seeds to %s" % (len(seeds), out))
