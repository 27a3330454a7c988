#!/usr/bin/env python3
"""Writes the committed seed corpus under tests/fuzz/corpus/ (run from anywhere; idempotent).

Seeds are tiny on purpose: a few valid safetensors files (every dtype, a KV dump, a compacted
cache) and a few broken ones, plus config files. libFuzzer mutates from here.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I64": 8}


def safetensors(tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape, raw bytes) in data order."""
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        n = 1
        for d in shape:
            n *= d
        assert len(raw) == n * SIZES[dtype]
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def i64(values):
    return struct.pack("<%dq" % len(values), *values)


def kv_dump():
    kv, t, d, q = 1, 3, 2, 2
    tensors = []
    for layer in range(2):
        n = kv * t * d
        tensors.append((f"layers.{layer}.k", "F32", [kv, t, d], f32([0.5 * i for i in range(n)])))
        tensors.append((f"layers.{layer}.v", "F32", [kv, t, d], f32([-0.25 * i for i in range(n)])))
        tensors.append((f"layers.{layer}.q_ref", "F32", [q, 1, d], f32([1.0] * (q * d))))
    meta = {"format": "kvcompact.kv_cache.v1", "n_layers": "2", "n_q_heads": "2",
            "model": "tiny", "tokens": "1,2,3", "rope_theta": "10000"}
    return safetensors(tensors, meta)


def compacted():
    tensors = []
    for layer in range(2):
        tensors.append((f"layers.{layer}.offsets", "I64", [3], i64([0, 1, 2])))
    for layer in range(2):
        tensors.append((f"layers.{layer}.k", "F32", [2, 2], f32([1, 2, 3, 4])))
        tensors.append((f"layers.{layer}.v", "F32", [2, 2], f32([5, 6, 7, 8])))
        tensors.append((f"layers.{layer}.beta", "F32", [2], f32([0.0, -1.5])))
    meta = {"format": "kvcompact.compacted_cache.v1", "n_layers": "2", "n_q_heads": "4",
            "source_tokens": "8", "method": "am", "spec": "{}", "fidelity": "cos=1"}
    return safetensors(tensors, meta)


def every_dtype():
    return safetensors([
        ("a", "F32", [2], f32([1.0, -2.0])),
        ("b", "I64", [1], i64([-7])),
        ("c", "F16", [3], b"\x00\x3c\x00\xc0\x00\x7c"),
        ("d", "BF16", [1, 1], b"\x80\x3f"),
        ("e", "I32", [], struct.pack("<i", 42)),
        ("f", "F32", [0, 4], b""),
    ], {"note": "seed"})


def broken():
    valid = every_dtype()
    overlap = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' \
              b'"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'
    f64 = b'{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}'
    return {
        "truncated.safetensors": valid[:len(valid) - 3],
        "short.safetensors": b"\x10\x00\x00",
        "bad_json.safetensors": struct.pack("<Q", 5) + b'{"a":',
        "overlap.safetensors": struct.pack("<Q", len(overlap)) + overlap + b"\0" * 8,
        "unknown_dtype.safetensors": struct.pack("<Q", len(f64)) + f64 + b"\0" * 8,
    }


def configs():
    return {
        "service.json": json.dumps({"server": {"port": 7070, "host": "::1", "tls": False},
                                    "engine": {"threads": 4, "ratio": 0.1},
                                    "log": {"level": "info"}}, indent=2).encode(),
        "comments.json": b'{\n  // a comment\n  "a": {"b": [1, 2.5, "x", null]} /* end */\n}\n',
        "bad.json": b'{"a": 1,, "b": }',
        "dup.json": b'{"a": 1, "a": 2}',
    }


def write(folder, files):
    path = os.path.join(HERE, "corpus", folder)
    os.makedirs(path, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)


def main():
    seeds = {"every_dtype.safetensors": every_dtype(), "kv_dump.safetensors": kv_dump(),
             "compacted.safetensors": compacted(), "empty.safetensors": safetensors([])}
    seeds.update(broken())
    write("safetensors_fuzz", seeds)
    write("config_fuzz", configs())


if __name__ == "__main__":
    main()
