"""Dequantization must equal the gguf package's numpy dequantizers bit for bit."""
from __future__ import annotations

import gguf
import numpy as np
import pytest

from pyllama import PyllamaError, _core
from quant_blocks import BLOCK_GEOMETRY, QUANTIZED_TYPES, T, random_blocks, read_tensors, tensor_bytes


def assert_bit_exact(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    # Compare bit patterns, so NaN payloads and the sign of zero count too.
    assert ours.dtype == np.float32 and ours.shape == ref.shape, what
    mismatches = np.flatnonzero(ours.view(np.uint32) != ref.view(np.uint32))
    assert mismatches.size == 0, (
        f"{what}: {mismatches.size} elements differ, first at {mismatches[0]}: "
        f"{ours[mismatches[0]]!r} vs {ref[mismatches[0]]!r}")


def check_against_gguf(qtype: T, raw: np.ndarray, what: str) -> None:
    block_size, type_size = BLOCK_GEOMETRY[qtype]
    n = raw.size // type_size * block_size
    ref = gguf.quants.dequantize(raw, qtype).reshape(-1)
    assert_bit_exact(_core.dequantize(int(qtype), raw, n), ref, what)


@pytest.mark.parametrize("model", ["demo", "tiny-llama-256.Q4_K_M.gguf", "tiny-llama-256.F16.gguf"])
def test_every_tensor_of_real_models(model, demo_model, golden_dir):
    path = demo_model if model == "demo" else golden_dir / model
    tensors = read_tensors(path)
    seen = set()
    for tensor in tensors:
        seen.add(tensor.tensor_type)
        check_against_gguf(tensor.tensor_type, tensor_bytes(tensor), f"{path.name}:{tensor.name}")
    expected_types = {"demo": {T.Q4_1, T.Q8_0, T.F32},
                      "tiny-llama-256.Q4_K_M.gguf": {T.Q4_K, T.Q6_K, T.F32},
                      "tiny-llama-256.F16.gguf": {T.F16, T.F32}}[model]
    assert expected_types <= seen


@pytest.mark.parametrize("qtype", QUANTIZED_TYPES, ids=lambda t: t.name)
def test_random_blocks(qtype):
    rng = np.random.default_rng(1000 + int(qtype))
    raw = random_blocks(rng, qtype, 4000)
    check_against_gguf(qtype, raw, f"random {qtype.name} blocks")


@pytest.mark.parametrize("qtype", [T.F32, T.F16, T.BF16], ids=lambda t: t.name)
def test_random_float_bits(qtype):
    # Every bit pattern is fair game here, NaNs and infinities included.
    rng = np.random.default_rng(7 + int(qtype))
    raw = rng.integers(0, 256, size=40000 * BLOCK_GEOMETRY[qtype][1], dtype=np.uint8)
    check_against_gguf(qtype, raw, f"random {qtype.name} values")


def test_every_half_converts_exactly():
    halves = np.arange(65536, dtype=np.uint16)
    ours = _core.dequantize(int(T.F16), halves.view(np.uint8), 65536)
    assert_bit_exact(ours, halves.view(np.float16).astype(np.float32), "all fp16 values")


def test_accepts_bytes_and_empty_rows():
    rng = np.random.default_rng(3)
    raw = random_blocks(rng, T.Q8_0, 3)
    assert np.array_equal(_core.dequantize(int(T.Q8_0), raw.tobytes(), 96),
                          _core.dequantize(int(T.Q8_0), raw, 96))
    assert _core.dequantize(int(T.Q4_K), b"", 0).shape == (0,)


def test_bad_arguments_raise_pyllama_error():
    raw = np.zeros(34, dtype=np.uint8)
    with pytest.raises(PyllamaError, match="34"):
        _core.dequantize(int(T.Q8_0), raw, 64)  # two blocks need 68 bytes
    with pytest.raises(PyllamaError, match="Q8_0"):
        _core.dequantize(int(T.Q8_0), raw, 31)  # not a whole block
    with pytest.raises(PyllamaError, match="Q8_0"):
        _core.dequantize(int(T.Q8_0), raw, -32)
    with pytest.raises(PyllamaError, match="Q2_K"):
        _core.dequantize(int(T.Q2_K), np.zeros(84, dtype=np.uint8), 256)
    with pytest.raises(PyllamaError, match="99"):
        _core.dequantize(99, raw, 32)
    with pytest.raises(PyllamaError, match="uint8"):
        _core.dequantize(int(T.F32), np.zeros(4, dtype=np.float32), 4)
    with pytest.raises(PyllamaError, match="contiguous"):
        _core.dequantize(int(T.Q8_0), np.zeros(68, dtype=np.uint8)[::2], 32)
