#!/usr/bin/env python3
"""Write tests/data/quant_reference.npz: rows of floats and the bytes llama.cpp's weight
quantizers make of them, for the types pyllama.quantize writes.

A developer tool: it loads the ggml library of llama-cpp-python and calls ggml_quantize_chunk
(without an importance matrix, as llama-quantize does by default), so it runs with the Python
that has llama_cpp, never in tests or CI:

    PYTHON_WITH_LLAMA_CPP tools/make_quant_reference.py

The rows cover what the reference quantizers treat specially: all-zero blocks, magnitudes far
below and above the fp16 range of the scales, sub-blocks under ggml's GROUP_MAX_EPS, constant,
one-signed and sparse blocks, exact integers and rounding ties. NaN and infinities are left out:
llama-quantize refuses tensors that produce them.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import llama_cpp
import numpy as np

ROW = 512  # two K-quant super-blocks, sixteen 32-element blocks
TYPES = {"F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8,
         "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "BF16": 30}
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "quant_reference.npz"


def cases(rng: np.random.Generator) -> dict:
    n = lambda: rng.standard_normal(ROW)  # noqa: E731
    spiky = np.zeros(ROW)
    spiky[rng.choice(ROW, 12, replace=False)] = rng.standard_normal(12) * 3
    ties = np.tile(np.arange(-8, 8) + 0.5 * (np.arange(16) % 2), ROW // 16)
    mixed = n()
    mixed[32:64] = 0.0            # a zero sub-block
    mixed[300] = 1e4              # one outlier
    mixed[400:416] = n()[:16] * 1e-17  # a 16-element group under GROUP_MAX_EPS
    return {
        "normal": n(),
        "weights": n() * 0.02,
        "zeros": np.zeros(ROW),
        "tiny": n() * 1e-30,
        "subnormal": n() * 1e-41,
        "near_eps": n() * 1e-15,
        "huge": n() * 1e30,
        "fp16_edge": n() * 2e6,
        "constant_pos": np.full(ROW, 0.5),
        "constant_neg": np.full(ROW, -3.0),
        "positive": rng.random(ROW),
        "negative": -rng.random(ROW) - 1.0,
        "sparse": spiky,
        "integers_and_ties": ties,
        "heavy_tailed": n() * np.exp(rng.uniform(-20, 20, ROW)),
        "mixed": mixed,
    }


def main() -> None:
    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    quantize_chunk = lib.ggml_quantize_chunk
    quantize_chunk.restype = ctypes.c_size_t
    quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                               ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    rows = cases(np.random.default_rng(20240611))
    names = list(rows)
    x = np.stack([rows[k] for k in names]).astype(np.float32)
    out = {"names": np.array(names), "x": x}
    for type_name, type_id in TYPES.items():
        buf = np.zeros(x.size * 4, dtype=np.uint8)  # more than any of these types takes
        size = quantize_chunk(type_id, x.ctypes.data, buf.ctypes.data, 0, x.shape[0], ROW, None)
        out[type_name] = buf[:size].reshape(x.shape[0], -1)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
