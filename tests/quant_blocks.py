"""Helpers shared by the quantization tests: raw tensor bytes from GGUF files and random blocks."""
from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

T = gguf.GGMLQuantizationType

# The block types pyllama dequantizes, with their byte geometry as pyllama (and current ggml)
# lays them out: {type: (elements per block, bytes per block)}.
BLOCK_GEOMETRY = {
    T.F32: (1, 4), T.F16: (1, 2), T.BF16: (1, 2),
    T.Q4_0: (32, 18), T.Q4_1: (32, 20), T.Q5_0: (32, 22), T.Q5_1: (32, 24), T.Q8_0: (32, 34),
    T.Q4_K: (256, 144), T.Q5_K: (256, 176), T.Q6_K: (256, 210),
}
QUANTIZED_TYPES = [t for t, (bs, _) in BLOCK_GEOMETRY.items() if bs > 1]

# Byte offsets of the fp16 scale fields (d, and m / dmin where present) inside each block.
HALF_FIELDS = {
    T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q5_1: (0, 2), T.Q8_0: (0,),
    T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,),
}

# Byte ranges of the quants of the types with a min (x = scale * q - offset): zeroing them
# leaves a block whose dequantized values are exactly its offsets.
QUANT_BYTES_OF_TYPES_WITH_MIN = {
    T.Q4_1: slice(4, 20), T.Q5_1: slice(4, 24), T.Q4_K: slice(16, 144), T.Q5_K: slice(16, 176),
}


def tensor_bytes(tensor: gguf.ReaderTensor) -> np.ndarray:
    """The raw bytes of a tensor read by gguf.GGUFReader, as a flat uint8 array."""
    return np.ascontiguousarray(tensor.data).view(np.uint8).reshape(-1)


def tensor_rows(tensor: gguf.ReaderTensor) -> np.ndarray:
    """The raw bytes of a tensor as a [rows, bytes per row] uint8 array."""
    n_per_row = int(tensor.shape[0])
    block_size, type_size = BLOCK_GEOMETRY[tensor.tensor_type]
    return tensor_bytes(tensor).reshape(-1, n_per_row // block_size * type_size)


def read_tensors(path: Path) -> list[gguf.ReaderTensor]:
    return list(gguf.GGUFReader(path).tensors)


def random_finite_halves(rng: np.random.Generator, size: int) -> np.ndarray:
    """fp16 bit patterns of every finite magnitude: zeros, subnormals and normals, both signs."""
    exponent = rng.integers(0, 31, size=size, dtype=np.uint16)  # 31 would be inf/nan
    mantissa = rng.integers(0, 1024, size=size, dtype=np.uint16)
    sign = rng.integers(0, 2, size=size, dtype=np.uint16) << 15
    halves = sign | (exponent << 10) | mantissa
    halves[rng.random(size) < 0.05] &= 0x8000  # some exact zeros, +0 and -0
    return halves


def random_blocks(rng: np.random.Generator, qtype: T, n_blocks: int,
                  half_source=random_finite_halves) -> np.ndarray:
    """n_blocks random blocks of qtype as flat bytes; fp16 scale fields get halves from half_source."""
    _, type_size = BLOCK_GEOMETRY[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for offset in HALF_FIELDS.get(qtype, ()):
        blocks[:, offset:offset + 2] = half_source(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(-1)
