"""Lazy tensors: what a checkpoint holds, read a few rows at a time.

A checkpoint tensor is never loaded whole. The converter asks each tensor for a range of rows
(along the first dimension), gets them as float32, converts and writes them, and lets them go, so
memory stays at one chunk whatever the model's size. Reads are plain positioned file reads
rather than a memory map: mapped pages that have been read count towards the process's resident
memory until they are unmapped, which would make a conversion look as big as the model.

The kinds:
- ``StoredTensor``: elements at some place in a file (a .pth storage or a safetensors range),
  with shape and strides in elements, checked against the bytes actually there;
- ``ConcatTensor``: model-parallel shards put back together along one dimension;
- ``RowPermutedTensor``: the rows of another tensor in a different order (the q/k un-permutation);
- ``ArrayTensor``: values the converter computes (llama.cpp's generated rope_freqs);
- ``UnreadableTensor``: a tensor of a type the converter does not read, refused if needed.
"""
from __future__ import annotations

import math
import os
from typing import Callable, Dict, Sequence, Tuple

import numpy as np

from .._core import PyllamaError

# Stored element types the converter reads, as numpy types of the same size (BF16 has no numpy
# type: its bits are read as uint16 and widened by hand).
STORED_DTYPES: Dict[str, np.dtype] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
}


def to_float32(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Stored elements as float32, exactly (every F16 and BF16 value is a float32 value)."""
    if dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32, copy=False)


class RawFile:
    """A checkpoint file opened for positioned reads; every read is checked to be complete."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._f = open(path, "rb", buffering=0)
        self.size = os.fstat(self._f.fileno()).st_size

    def read(self, offset: int, size: int) -> bytearray:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise PyllamaError(f"{self.path}: read of {size} bytes at offset {offset} runs past the end "
                               f"of the file ({self.size} bytes)")
        buf = bytearray(size)
        view, done = memoryview(buf), 0
        self._f.seek(offset)
        while done < size:
            n = self._f.readinto(view[done:])
            if not n:
                raise PyllamaError(f"{self.path}: file ended while reading (truncated while converting?)")
            done += n
        return buf

    def close(self) -> None:
        self._f.close()


def open_and_load(path: str, load: Callable[[str, RawFile], Dict[str, "SourceTensor"]]
                  ) -> Tuple[RawFile, Dict[str, "SourceTensor"]]:
    """(the opened file, load(path, file)): the tensors of a checkpoint file and the file they read
    from, which the caller closes; closed here if load fails."""
    raw = RawFile(path)
    try:
        return raw, load(path, raw)
    except BaseException:
        raw.close()
        raise


class SourceTensor:
    """A tensor of a checkpoint: its shape, stored type, and its rows on demand as float32."""

    shape: Tuple[int, ...]
    dtype: str      # "F32", "F16" or "BF16"
    where: str      # "file: tensor name", for messages

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def n_rows(self) -> int:
        return self.shape[0] if self.shape else 1

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1 (along the first dimension) as float32, shape (stop-start, *shape[1:])."""
        raise NotImplementedError

    def __setstate__(self, state: object) -> None:
        # Tensors are built by the checkpoint readers only; a pickle may not set their fields.
        raise TypeError("tensor fields cannot be restored from a pickle")


class UnreadableTensor(SourceTensor):
    """A tensor of a type the converter does not read (integers, float64, float8 ...). Harmless
    while unused; the converter refuses it if the model needs it."""

    def __init__(self, shape: Sequence[int], dtype: str, where: str) -> None:
        self.shape, self.dtype, self.where = tuple(shape), dtype, where

    def rows(self, start: int, stop: int) -> np.ndarray:
        raise PyllamaError(f"{self.where}: a {self.dtype} tensor of shape {self.shape} cannot be converted")


class StoredTensor(SourceTensor):
    """Elements in a file: element (i0, i1, ...) is at byte
    ``base + (i0*strides[0] + i1*strides[1] + ...) * itemsize``. The constructor checks that
    every element lies inside ``limit`` bytes from ``base``, so no read can leave its storage."""

    def __init__(self, file: RawFile, base: int, limit: int, shape: Sequence[int],
                 strides: Sequence[int], dtype: str, where: str) -> None:
        self.file, self.base, self.dtype, self.where = file, base, dtype, where
        self.shape, self.strides = tuple(int(n) for n in shape), tuple(int(s) for s in strides)
        self._np_dtype = STORED_DTYPES[dtype]
        if len(self.shape) != len(self.strides):
            raise PyllamaError(f"{where}: shape {self.shape} and strides {self.strides} differ in length")
        if not self.shape:
            raise PyllamaError(f"{where}: a scalar, not a weight tensor")
        if any(n < 0 for n in self.shape) or any(s < 0 for s in self.strides):
            raise PyllamaError(f"{where}: negative size or stride in shape {self.shape}, strides {self.strides}")
        # Weights never overlap themselves (a stride-0 broadcast would make a small storage look
        # huge), so a tensor needs at least as many stored elements as it has.
        capacity = limit // self._np_dtype.itemsize
        if self.n_elements and max(self._span(0, self.n_rows), self.n_elements) > capacity:
            raise PyllamaError(f"{where}: shape {self.shape} with strides {self.strides} needs more than the "
                               f"{capacity} elements its storage holds")
        row_major = [math.prod(self.shape[i + 1:]) for i in range(len(self.shape))]
        self._row_major = all(s == r for n, s, r in zip(self.shape, self.strides, row_major) if n > 1)
        self._whole = None  # a non-row-major tensor (a saved transposed view), read once and cut

    def _span(self, start: int, stop: int) -> int:
        """Elements from the first element of row `start` to the last of row `stop-1`, inclusive."""
        inner = sum((n - 1) * s for n, s in zip(self.shape[1:], self.strides[1:]))
        return (stop - 1 - start) * self.strides[0] + inner + 1

    def rows(self, start: int, stop: int) -> np.ndarray:
        if not self._row_major:
            # Any block of its rows spans nearly all its storage: read that once, not per chunk.
            if self._whole is None:
                self._whole = self._read(0, self.n_rows)
            out = self._whole[start:stop]
            if stop >= self.n_rows:
                self._whole = None
            return out
        return self._read(start, stop)

    def _read(self, start: int, stop: int) -> np.ndarray:
        out_shape = (stop - start,) + self.shape[1:]
        if math.prod(out_shape) == 0:
            return np.zeros(out_shape, np.float32)
        itemsize = self._np_dtype.itemsize
        buf = self.file.read(self.base + start * self.strides[0] * itemsize, self._span(start, stop) * itemsize)
        # numpy re-checks that the strided view stays inside the buffer just read.
        raw = np.ndarray(out_shape, self._np_dtype, buffer=buf, strides=tuple(s * itemsize for s in self.strides))
        return to_float32(raw, self.dtype)


class ConcatTensor(SourceTensor):
    """Shards of one tensor joined along `axis` (0: rows, 1: columns), as Meta's model-parallel
    checkpoints split them. The shards must agree on every other dimension and on type."""

    def __init__(self, parts: Sequence[SourceTensor], axis: int, where: str) -> None:
        first = parts[0]
        for p in parts[1:]:
            same_rest = (len(p.shape) == len(first.shape)
                         and all(a == b for d, (a, b) in enumerate(zip(p.shape, first.shape)) if d != axis))
            if not same_rest:
                raise PyllamaError(f"{where}: shards disagree in shape: {first.where} is {first.shape} but "
                                   f"{p.where} is {p.shape} (they may differ only in dimension {axis})")
            if p.dtype != first.dtype:
                raise PyllamaError(f"{where}: shards disagree in type: {first.where} is {first.dtype} but "
                                   f"{p.where} is {p.dtype}")
        if axis >= len(first.shape):
            raise PyllamaError(f"{where}: cannot join {len(first.shape)}-D shards along dimension {axis}")
        self.parts, self.axis, self.where, self.dtype = list(parts), axis, where, first.dtype
        shape = list(first.shape)
        shape[axis] = sum(p.shape[axis] for p in parts)
        self.shape = tuple(shape)
        self._row_starts = np.cumsum([0] + [p.shape[0] for p in parts])

    def rows(self, start: int, stop: int) -> np.ndarray:
        if self.axis == 1:
            return np.concatenate([p.rows(start, stop) for p in self.parts], axis=1)
        pieces = []
        for p, begin in zip(self.parts, self._row_starts[:-1].tolist()):
            lo, hi = max(start, begin), min(stop, begin + p.shape[0])
            if lo < hi:
                pieces.append(p.rows(lo - begin, hi - begin))
        return np.concatenate(pieces, axis=0) if len(pieces) != 1 else pieces[0]


class RowPermutedTensor(SourceTensor):
    """Row i is row perm[i] of `source`. Reads the smallest block of source rows covering the
    requested ones, so a chunk of whole attention heads reads exactly those heads."""

    def __init__(self, source: SourceTensor, perm: np.ndarray) -> None:
        if sorted(perm.tolist()) != list(range(source.n_rows)):
            raise ValueError("not a permutation of the source rows")
        self.source, self.perm = source, perm
        self.shape, self.dtype, self.where = source.shape, source.dtype, source.where

    def rows(self, start: int, stop: int) -> np.ndarray:
        idx = self.perm[start:stop]
        if idx.size == 0:
            return self.source.rows(0, 0)
        lo, hi = int(idx.min()), int(idx.max()) + 1
        return self.source.rows(lo, hi)[idx - lo]


class ArrayTensor(SourceTensor):
    """A tensor the converter computes itself (llama.cpp's generated rope_freqs), held in memory."""

    def __init__(self, values: np.ndarray, where: str) -> None:
        self.values = np.ascontiguousarray(values, dtype=np.float32)
        self.shape, self.dtype, self.where = self.values.shape, "F32", where

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.values[start:stop]
