"""The bytes of a GGUF v3 header as llama.cpp's GGUF writer (ggml/src/gguf.cpp) lays them out.

header:  "GGUF", version (u32), tensor count (u64), key-value count (u64)
         key-value entries (key as u64 length + bytes, value type u32, value)
         tensor infos (name, n_dims u32, n_dims x i64 dimensions, ggml type u32, data offset u64)
         zeros up to a multiple of the alignment
data:    each tensor's bytes followed by zeros up to a multiple of the alignment
"""
from __future__ import annotations

import struct
from typing import Sequence

GGUF_VERSION = 3  # what llama.cpp writes, whatever version it read
DEFAULT_ALIGNMENT = 32
_UINT32 = 4  # GGUF value type id


def padding(n: int, alignment: int) -> int:
    """Zero bytes that follow n bytes to reach a multiple of the alignment."""
    return -n % alignment


def _string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def uint32_entry(key: str, value: int) -> bytes:
    """A key-value entry holding a UINT32."""
    return _string(key) + struct.pack("<II", _UINT32, value)


def tensor_info(name: str, shape: Sequence[int], type_id: int, offset: int) -> bytes:
    """A tensor info: shape in ggml order (ne[0] first), offset within the data section."""
    return (_string(name) + struct.pack("<I", len(shape)) + struct.pack(f"<{len(shape)}q", *shape)
            + struct.pack("<IQ", type_id, offset))


def header(kv_entries: Sequence[bytes], tensor_infos: Sequence[bytes], alignment: int) -> bytes:
    """Everything before the tensor data, padding included."""
    head = b"".join([b"GGUF", struct.pack("<IQQ", GGUF_VERSION, len(tensor_infos), len(kv_entries)),
                     *kv_entries, *tensor_infos])
    return head + bytes(padding(len(head), alignment))
