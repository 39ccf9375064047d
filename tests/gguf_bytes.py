"""Build GGUF files for the reader's tests.

``build()`` assembles a file field by field with struct.pack, so a test can break exactly one
field (a count, a length, a type id, an offset) and leave the rest valid.
``write_small_model()`` makes a small valid file with the gguf package's own GGUFWriter, an
independent writer, for the truncation and fuzz tests.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

# GGUF value type ids.
(UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY,
 UINT64, INT64, FLOAT64) = range(13)

# ggml tensor type ids used here, with (block size, bytes per block).
F32, F16, Q8_0 = 0, 1, 8
BLOCK = {F32: (1, 4), F16: (1, 2), Q8_0: (32, 34)}

_SCALAR_FORMAT = {
    UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
    FLOAT32: "<f", BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d",
}


def string(s: str | bytes) -> bytes:
    """A GGUF string: u64 byte count, then the bytes."""
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def value(vtype: int, v) -> bytes:
    """A scalar or string value without its type id."""
    return string(v) if vtype == STRING else struct.pack(_SCALAR_FORMAT[vtype], v)


def kv(key: str | bytes, vtype: int, v) -> bytes:
    """A key-value with a scalar or string value."""
    return string(key) + struct.pack("<I", vtype) + value(vtype, v)


def kv_array(key: str | bytes, elem_type: int, values: Sequence) -> bytes:
    """A key-value holding an array of scalars or strings."""
    return (string(key) + struct.pack("<IIQ", ARRAY, elem_type, len(values))
            + b"".join(value(elem_type, v) for v in values))


def kv_raw(key: str | bytes, type_and_payload: bytes) -> bytes:
    """A key-value whose type id and value bytes are given as is (for malformed values)."""
    return string(key) + type_and_payload


@dataclass
class Tensor:
    name: str | bytes
    ne: Sequence[int]          # ggml order (ne[0] = row length); written as int64 each
    type: int = F32
    data: bytes = b""
    offset: int | None = None  # None: where build() places the data

    @staticmethod
    def f32(name: str, ne: Sequence[int]) -> "Tensor":
        """An F32 tensor whose data matches its shape."""
        n = int(np.prod(ne))
        return Tensor(name, list(ne), F32, np.arange(n, dtype="<f4").tobytes())


def align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def build(kvs: Sequence[bytes], tensors: Sequence[Tensor] = (), *, magic: bytes = b"GGUF",
          version: int = 3, version_format: str = "<I", n_tensors: int | None = None,
          n_kv: int | None = None, alignment: int = 32) -> bytes:
    """A GGUF file. Tensor data is laid out as llama.cpp expects (in order, each padded to
    `alignment`, which must match any general.alignment in `kvs`) unless a Tensor overrides its
    offset; the file ends right after the last tensor's data."""
    out = bytearray(magic + struct.pack(version_format, version))
    out += struct.pack("<QQ", len(tensors) if n_tensors is None else n_tensors,
                       len(kvs) if n_kv is None else n_kv)
    for item in kvs:
        out += item
    placed = []
    next_offset = 0
    for t in tensors:
        placed.append(next_offset)
        out += string(t.name) + struct.pack("<I", len(t.ne))
        out += b"".join(struct.pack("<q", n) for n in t.ne)
        out += struct.pack("<IQ", t.type, next_offset if t.offset is None else t.offset)
        next_offset = align(next_offset + len(t.data), alignment)
    if tensors:
        out += bytes(align(len(out), alignment) - len(out))
        data_start = len(out)
        for t, offset in zip(tensors, placed):
            out += bytes(data_start + offset - len(out)) + t.data
    return bytes(out)


def valid_kvs() -> list[bytes]:
    """A few key-values of every kind."""
    return [
        kv("general.architecture", STRING, "llama"),
        kv("llama.block_count", UINT32, 2),
        kv("llama.rope.freq_base", FLOAT32, 10000.0),
        kv("tokenizer.ggml.add_bos_token", BOOL, True),
        kv_array("tokenizer.ggml.tokens", STRING, ["<unk>", "a", "b"]),
        kv_array("tokenizer.ggml.scores", FLOAT32, [0.0, -1.0, -2.0]),
    ]


def valid_tensors() -> list[Tensor]:
    """Three tensors of three types; the Q8_0 one's 68 bytes need padding after them."""
    return [
        Tensor.f32("token_embd.weight", [4, 3]),
        Tensor("blk.0.attn_q.weight", [32, 2], Q8_0, bytes(range(68))),
        Tensor.f32("output_norm.weight", [8]),
    ]


def write_small_model(path: Path) -> None:
    """A small valid model written by gguf.GGUFWriter: key-values of most value types and
    three tensors. The last tensor's size is a multiple of the alignment, so the file ends
    exactly at the end of its data (no trailing padding)."""
    import gguf

    T = gguf.GGUFValueType
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_uint32("llama.block_count", 1)
    w.add_int64("test.int64", -5)
    w.add_uint64("test.uint64", 2**64 - 1)
    w.add_float64("test.float64", 0.1)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_array("tokenizer.ggml.tokens", ["<unk>", "<s>", "</s>", "hé", "▁x"])
    w.add_array("tokenizer.ggml.scores", [0.0, -1.5, 2.25, -3.0, 4.5])
    w.add_array("tokenizer.ggml.token_type", [2, 3, 3, 1, 1])
    w.add_key_value("test.u16s", [1, 65535], T.ARRAY, sub_type=T.UINT16)
    w.add_key_value("test.bools", [True, False, True], T.ARRAY, sub_type=T.BOOL)
    w.add_tensor("token_embd.weight", np.arange(8, dtype=np.float32).reshape(2, 4))
    q8 = np.arange(2 * 34, dtype=np.uint8).reshape(2, 34)
    w.add_tensor("blk.0.attn_q.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("output_norm.weight", np.linspace(-1, 1, 16, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_gguf(path: Path, arch: str, fill=None) -> Path:
    """A GGUF written by gguf.GGUFWriter for architecture `arch`; fill(writer), when given, adds
    key-values and tensors before the file is written."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch=arch)
    if fill is not None:
        fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)
