"""A small streaming GGUF (version 3) writer.

Layout, as ggml's gguf.cpp reads it (all little-endian):
    "GGUF", version u32, tensor count u64, key-value count u64,
    key-values: key (u64 length + UTF-8), value type u32, value,
    tensor infos: name, dimension count u32, sizes u64 each (ggml order: fastest-varying
        first, i.e. numpy's shape reversed), tensor type u32, data offset u64,
    padding to the alignment (32), then each tensor's data, each padded to the alignment.
Everything but the tensor data is known before the first byte of data is written, so the
header goes out first and the data follows tensor by tensor, chunk by chunk.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Dict, Iterable, Sequence, Tuple

import numpy as np

ALIGNMENT = 32
GGUF_VERSION = 3

# GGUF value types.
UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9
_SCALAR_FORMATS = {UINT32: "<I", INT32: "<i", FLOAT32: "<f", BOOL: "<?"}
_ARRAY_DTYPES = {UINT32: "<u4", INT32: "<i4", FLOAT32: "<f4"}

# ggml tensor types written by the converter, and their element sizes.
GGML_F32, GGML_F16, GGML_BF16 = 0, 1, 30
GGML_TYPE_SIZES = {GGML_F32: 4, GGML_F16: 2, GGML_BF16: 2}


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


class Metadata:
    """GGUF key-values in the order they are first set; setting a key again replaces its value
    in place (as llama.cpp's writer does when a later rule overrides an earlier one)."""

    def __init__(self) -> None:
        self._items: Dict[str, bytes] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add_scalar(self, key: str, value_type: int, value) -> None:
        self._items[key] = struct.pack("<I", value_type) + struct.pack(_SCALAR_FORMATS[value_type], value)

    def add_uint32(self, key: str, value: int) -> None:
        self.add_scalar(key, UINT32, value)

    def add_float32(self, key: str, value: float) -> None:
        self.add_scalar(key, FLOAT32, value)

    def add_bool(self, key: str, value: bool) -> None:
        self.add_scalar(key, BOOL, value)

    def add_string(self, key: str, value: str) -> None:
        self._items[key] = struct.pack("<I", STRING) + _string(value)

    def add_array(self, key: str, element_type: int, values: Sequence) -> None:
        head = struct.pack("<IIQ", ARRAY, element_type, len(values))
        if element_type == STRING:
            body = b"".join(_string(v) for v in values)
        else:
            body = np.asarray(values, dtype=_ARRAY_DTYPES[element_type]).tobytes()
        self._items[key] = head + body

    def encode(self) -> bytes:
        return b"".join(_string(key) + value for key, value in self._items.items())


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: Tuple[int, ...]  # numpy order: rows first
    ggml_type: int

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * GGML_TYPE_SIZES[self.ggml_type]


def _padding(n: int) -> int:
    return -n % ALIGNMENT


class GGUFStreamWriter:
    """Writes the header at construction, then each tensor's data, in the order of `tensors`,
    from chunks of bytes whose total must be exactly the tensor's size."""

    def __init__(self, file: BinaryIO, metadata: Metadata, tensors: Sequence[TensorInfo], target: str) -> None:
        self._file, self._target = file, target  # an unbuffered file; what it becomes, for messages
        self._tensors = list(tensors)
        self._next = 0
        parts = [b"GGUF", struct.pack("<IQQ", GGUF_VERSION, len(self._tensors), len(metadata)), metadata.encode()]
        offset = 0
        for t in self._tensors:
            dims = tuple(reversed(t.shape))
            parts.append(_string(t.name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, t.ggml_type, offset))
            offset += t.nbytes + _padding(t.nbytes)
        header = b"".join(parts)
        self.total_bytes = len(header) + _padding(len(header)) + offset
        self._write(header + bytes(_padding(len(header))))

    def _write(self, data) -> None:
        view = memoryview(data).cast("B")
        while view:
            try:
                n = self._file.write(view)
            except OSError as exc:  # e.g. the disk is full
                raise OSError(exc.errno, f"cannot write {self._target}: {exc.strerror or exc}") from exc
            view = view[n:]

    def write_tensor(self, chunks: Iterable[np.ndarray]) -> None:
        """The next tensor's data: arrays whose raw bytes, concatenated, are the tensor."""
        info = self._tensors[self._next]
        written = 0
        for chunk in chunks:
            data = np.ascontiguousarray(chunk).view(np.uint8).reshape(-1)
            written += data.nbytes
            if written > info.nbytes:
                break
            self._write(data)
        if written != info.nbytes:
            raise AssertionError(f"tensor {info.name}: produced {written} bytes, expected {info.nbytes}")
        self._write(bytes(_padding(info.nbytes)))
        self._next += 1

    def finish(self) -> None:
        if self._next != len(self._tensors):
            raise AssertionError(f"only {self._next} of {len(self._tensors)} tensors were written")
