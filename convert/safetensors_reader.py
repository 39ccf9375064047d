"""Safetensors files read lazily, without loading a tensor whole.

The ``safetensors`` package opens and validates each file (its numpy API lists the tensors
with their types and shapes), but it cannot hand out BF16 data (numpy has no bfloat16) and
copies whole tensors, so the bytes are read from the ranges in the file's JSON header. That
header is parsed here too, strictly (no duplicate names, ranges inside the file, sizes matching
shapes), and must describe exactly the tensors, types and shapes the package reports.
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, Tuple

from safetensors import safe_open

from .._core import PyllamaError
from .tensors import STORED_DTYPES, RawFile, SourceTensor, StoredTensor, UnreadableTensor, open_and_load

_MAX_HEADER = 100 * 1024 * 1024  # the safetensors format's own limit


def load_safetensors(path: str) -> Tuple[RawFile, Dict[str, SourceTensor]]:
    """The tensors of a .safetensors file, by name, and the open file they read from (the caller
    closes it). Raises PyllamaError if the file is malformed."""
    return open_and_load(path, _load)


def _load(path: str, raw: RawFile) -> Dict[str, SourceTensor]:
    listed = _listed_by_package(path)
    header, data_start = _read_header(path, raw)
    if set(header) != set(listed):
        raise PyllamaError(f"{path}: the header's tensors differ from those the safetensors package lists")
    tensors: Dict[str, SourceTensor] = {}
    for name in sorted(header):  # by name, as the safetensors package orders them
        dtype, shape, (begin, end) = header[name]
        if (dtype, shape) != listed[name]:
            raise PyllamaError(f"{path}: tensor {name}: the header says {dtype} {shape}, the safetensors "
                               f"package {listed[name][0]} {listed[name][1]}")
        where = f"{path}: {name}"
        if dtype not in STORED_DTYPES or not shape:  # other types and scalars: never weights
            tensors[name] = UnreadableTensor(shape, dtype, where)
            continue
        itemsize = STORED_DTYPES[dtype].itemsize
        if end - begin != math.prod(shape) * itemsize:
            raise PyllamaError(f"{where}: {end - begin} bytes for shape {list(shape)} of {dtype}")
        strides = [math.prod(shape[i + 1:]) for i in range(len(shape))]
        tensors[name] = StoredTensor(raw, data_start + begin, end - begin, shape, strides, dtype, where)
    return tensors


def _listed_by_package(path: str) -> Dict[str, Tuple[str, Tuple[int, ...]]]:
    try:
        with safe_open(path, framework="np") as f:
            return {name: (f.get_slice(name).get_dtype(), tuple(f.get_slice(name).get_shape()))
                    for name in f.keys()}
    except Exception as exc:  # safetensors' own errors (SafetensorError, OSError ...)
        raise PyllamaError(f"{path}: not a valid safetensors file: {exc}") from None


def _reject_duplicates(pairs: list) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise PyllamaError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _read_header(path: str, raw: RawFile) -> Tuple[Dict[str, Tuple[str, Tuple[int, ...], Tuple[int, int]]], int]:
    """name -> (dtype, shape, (begin, end) relative to the data), and where the data starts."""
    if raw.size < 8:
        raise PyllamaError(f"{path}: too short for a safetensors file")
    n = int.from_bytes(raw.read(0, 8), "little")
    if n > _MAX_HEADER or 8 + n > raw.size:
        raise PyllamaError(f"{path}: header length {n} is impossible for a file of {raw.size} bytes")
    try:
        header = json.loads(bytes(raw.read(8, n)).decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, PyllamaError) as exc:
        raise PyllamaError(f"{path}: malformed header: {exc}") from None
    if not isinstance(header, dict):
        raise PyllamaError(f"{path}: malformed header: not a JSON object")
    data_size = raw.size - 8 - n
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        ok = (isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
              and isinstance(entry.get("shape"), list) and isinstance(entry.get("data_offsets"), list)
              and len(entry["data_offsets"]) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                      for v in entry["shape"] + entry["data_offsets"]))
        if not ok:
            raise PyllamaError(f"{path}: tensor {name}: malformed header entry {entry!r}")
        begin, end = entry["data_offsets"]
        if not begin <= end <= data_size:
            raise PyllamaError(f"{path}: tensor {name}: data range {begin}..{end} is outside the file's "
                               f"{data_size} data bytes")
        out[name] = (entry["dtype"], tuple(entry["shape"]), (begin, end))
    return out, 8 + n
