"""Saving a processed prompt (its tokens and KV cache) to a file and loading it back, so a long
system prompt or document is evaluated once across sessions.

File layout (little-endian): the magic b"PYLLAMA-STATE\\0", a u32 format version, the 32-byte
fingerprint of the model it was made with, the KV cache's element type (u32 ggml id), the token
count n (u64), n int32 token ids, then the cache's bytes for those n positions in the core's
own layout. A state file is untrusted input like any other: every field is checked before it
touches the cache, and a file from another model or another cache type is refused.
"""
from __future__ import annotations

import hashlib
import os
import struct
from typing import List, Tuple

import numpy as np

MAGIC = b"PYLLAMA-STATE\0"
VERSION = 1
_HEAD = struct.Struct("<I32sIQ")  # version, fingerprint, kv type, n tokens


def model_fingerprint(gguf_file, hparams: Tuple[int, ...]) -> bytes:
    """sha256 over the model's shape and tensor table and the first bytes of every tensor: two
    files share a fingerprint only if they hold the same model (for any practical purpose)."""
    h = hashlib.sha256(repr(hparams).encode())
    for t in gguf_file.tensors:
        h.update(f"{t.name}|{t.type}|{t.shape}|{t.nbytes}".encode())
        h.update(bytes(gguf_file.tensor_data(t.name)[:64]))
    return h.digest()


def write_state(path: str, fingerprint: bytes, kv_type: int, tokens: List[int], cache: np.ndarray) -> None:
    """Writes to a temporary name first, so a crash never leaves a truncated state file."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC)
            f.write(_HEAD.pack(VERSION, fingerprint, kv_type, len(tokens)))
            f.write(np.asarray(tokens, dtype="<i4").tobytes())
            f.write(memoryview(cache).cast("B"))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_state(path: str, fingerprint: bytes, kv_type: int, n_ctx: int, n_vocab: int,
               cache_bytes_for) -> Tuple[List[int], np.ndarray]:
    """The tokens and cache bytes of a state file, after checking it belongs to this model and
    cache type and fits this context. cache_bytes_for(n) is the cache size of n positions."""
    with open(path, "rb") as f:
        data = f.read()
    where = f"state file {path}"
    if not data.startswith(MAGIC):
        raise ValueError(f"{where} is not a pyllama state file (bad magic)")
    if len(data) < len(MAGIC) + _HEAD.size:
        raise ValueError(f"{where} is truncated: its header is incomplete")
    version, fp, file_kv_type, n = _HEAD.unpack_from(data, len(MAGIC))
    if version != VERSION:
        raise ValueError(f"{where} has format version {version}; this pyllama reads version {VERSION}")
    if fp != fingerprint:
        raise ValueError(f"{where} was saved with a different model")
    if file_kv_type != kv_type:
        raise ValueError(f"{where} holds a KV cache of ggml type {file_kv_type}; this model's cache is type {kv_type}")
    if not 1 <= n <= n_ctx:
        raise ValueError(f"{where} holds {n} tokens; this context holds 1 to n_ctx={n_ctx}")
    offset = len(MAGIC) + _HEAD.size
    expected = offset + 4 * n + cache_bytes_for(n)
    if len(data) != expected:
        raise ValueError(f"{where} is {len(data)} bytes; {n} tokens need exactly {expected}")
    tokens = np.frombuffer(data, dtype="<i4", count=n, offset=offset)
    if tokens.min() < 0 or tokens.max() >= n_vocab:
        raise ValueError(f"{where} holds token ids outside [0, {n_vocab})")
    cache = np.frombuffer(data, dtype=np.uint8, offset=offset + 4 * n)
    return tokens.tolist(), cache
