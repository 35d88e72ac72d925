#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# make_corpus.py - writes the seed corpus of tests/fuzz (small valid and invalid safetensors
# images). Run from anywhere: python3 tests/fuzz/make_corpus.py; the output is committed.
import json
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def image(header, data=b"", hlen=None, pad=True):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    n = len(h) if hlen is None else hlen
    return struct.pack("<Q", n) + h + data


def t(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


SEEDS = {
    "valid-f32-2d": image({"__metadata__": {"format": "pt"}, "w": t("F32", [2, 3], 0, 24)},
                          bytes(range(24))),
    "valid-mixed": image({"a": t("BF16", [5], 0, 10), "b": t("I64", [], 10, 18),
                          "c": t("F8_E4M3", [2, 2], 18, 22), "d": t("BOOL", [0, 4], 22, 22),
                          "e": t("U16", [1, 1, 1], 22, 24)}, bytes(24)),
    "valid-empty": image({}),
    "valid-all-dtypes": image({name: t(name, [1], i * 8, i * 8 + size) for i, (name, size) in
                               enumerate([("F8_E5M2", 1), ("F16", 2), ("F64", 8), ("I8", 1),
                                          ("I16", 2), ("I32", 4), ("U8", 1), ("U32", 4),
                                          ("U64", 8)])}, bytes(72)),
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

os.makedirs(OUT, exist_ok=True)
for name, blob in sorted(SEEDS.items()):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(blob)
print("wrote %d seeds to %s" % (len(SEEDS), OUT))
