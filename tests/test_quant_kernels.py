"""Activation quantizers and the vec_dot kernels.

The quantizers must produce llama.cpp's bytes (quantize_row_*_ref); where the gguf package has the
same quantizer we compare with it byte for byte. Each vec_dot must equal, up to float rounding, the
exact (float64) dot product of the dequantized weight row and the dequantized activation row.
"""
from __future__ import annotations

import gguf
import numpy as np
import pytest

from pyllama import PyllamaError, _core
from quant_blocks import (BLOCK_GEOMETRY, QUANT_BYTES_OF_TYPES_WITH_MIN, T, random_blocks, read_tensors,
                          tensor_rows)

# llama.cpp's activation type for each weight type (vec_dot_type in ggml-cpu.c).
ACT_TYPE = {
    T.F32: T.F32, T.F16: T.F16, T.BF16: T.BF16,
    T.Q4_0: T.Q8_0, T.Q4_1: T.Q8_1, T.Q5_0: T.Q8_0, T.Q5_1: T.Q8_1, T.Q8_0: T.Q8_0,
    T.Q4_K: T.Q8_K, T.Q5_K: T.Q8_K, T.Q6_K: T.Q8_K,
}
U = 2.0 ** -24  # unit roundoff of float32


def activations(rng: np.random.Generator, n: int) -> np.ndarray:
    """Activation-like floats: mostly normal, a few outliers, some all-zero 32-blocks."""
    x = rng.standard_normal(n).astype(np.float32)
    x[rng.random(n) < 0.01] *= 30
    if n >= 128:
        x[64:96] = 0
    return x


# ---- activation quantization ----

def q8_blocks(raw: np.ndarray, header: int) -> tuple[np.ndarray, np.ndarray]:
    blocks = raw.reshape(-1, header + 32)
    return blocks[:, :header], blocks[:, header:].view(np.int8)


def test_q8_0_matches_gguf():
    x = activations(np.random.default_rng(1), 32 * 500)
    # A block with scale exactly 1 and exact .5 ties, which llama.cpp's roundf rounds away from zero.
    x[:32] = np.concatenate([[127.0], np.arange(-15, 16) + 0.5]).astype(np.float32)
    ours = _core.quantize_activations(int(T.Q8_0), x)
    assert np.array_equal(ours, gguf.quants.quantize(x, T.Q8_0).reshape(-1))


def test_q8_1_is_q8_0_plus_scaled_sum():
    x = activations(np.random.default_rng(2), 32 * 300)
    ours = _core.quantize_activations(int(T.Q8_1), x)
    assert ours.size == 300 * 36
    header, qs = q8_blocks(ours, 4)
    ref_header, ref_qs = q8_blocks(gguf.quants.quantize(x, T.Q8_0).reshape(-1), 2)
    assert np.array_equal(qs, ref_qs)
    assert np.array_equal(header[:, :2], ref_header)
    s = header[:, 2:].copy().view(np.float16).ravel()
    # quantize_row_q8_1_ref: s = fp16((float)sum * d), in float32 with d = amax / 127 before its
    # own rounding to fp16
    d = np.abs(x).reshape(-1, 32).max(axis=1) / np.float32(127)
    assert d.dtype == np.float32
    expected_s = (qs.astype(np.int32).sum(axis=1).astype(np.float32) * d).astype(np.float16)
    assert np.array_equal(s.view(np.uint16), expected_s.view(np.uint16))


def unpack_q8_k(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    blocks = raw.reshape(-1, 292)
    d = blocks[:, :4].copy().view(np.float32).ravel()
    qs = blocks[:, 4:260].view(np.int8)
    bsums = blocks[:, 260:].copy().view(np.int16)
    return d, qs, bsums


def test_q8_k_roundtrip_and_layout():
    x = activations(np.random.default_rng(3), 256 * 200)
    x[256:512] = 0
    # A block with iscale exactly 1 and exact .5 ties, which ggml's nearest_int rounds to even.
    x[:256] = np.concatenate([[-127.0], (np.arange(255) % 200 - 100) + 0.5]).astype(np.float32)
    d, qs, bsums = unpack_q8_k(_core.quantize_activations(int(T.Q8_K), x))
    blocks = x.reshape(-1, 256)
    # Each element is within half a step (plus float rounding of the scale) of its input.
    err = np.abs(d[:, None].astype(np.float64) * qs - blocks)
    assert np.all(err <= np.abs(d)[:, None] * (0.5 + 1e-5))
    # The largest-magnitude element (first on ties) maps to exactly -127; ties round to even.
    imax = np.abs(blocks).argmax(axis=1)
    nonzero = np.abs(blocks).max(axis=1) > 0
    assert np.all(qs[nonzero, imax[nonzero]] == -127)
    with np.errstate(divide="ignore", invalid="ignore"):  # the all-zero blocks
        iscale = np.float32(-127) / blocks[np.arange(len(blocks)), imax]
        ref_q = np.minimum(np.rint(iscale[:, None] * blocks), 127)
        assert np.array_equal(qs[nonzero], ref_q[nonzero].astype(np.int8))
        assert np.array_equal(d[nonzero], (np.float32(1) / iscale)[nonzero])
    assert np.all(qs[~nonzero] == 0) and np.all(d[~nonzero] == 0) and not nonzero[1]
    assert np.array_equal(bsums, qs.reshape(-1, 16, 16).astype(np.int32).sum(axis=2))


def test_float_activation_types():
    x = activations(np.random.default_rng(4), 1000)
    x[:4] = [np.nan, np.inf, -0.0, 1e-30]
    f32 = _core.quantize_activations(int(T.F32), x)
    assert np.array_equal(f32, x.view(np.uint8))
    f16 = _core.quantize_activations(int(T.F16), x)
    assert np.array_equal(f16.view(np.uint16), x.astype(np.float16).view(np.uint16))
    bf16 = _core.quantize_activations(int(T.BF16), x)
    assert np.array_equal(bf16, gguf.quants.quantize(x, T.BF16).reshape(-1))


def test_quantize_activations_rejects_bad_input():
    with pytest.raises(PyllamaError, match="Q4_0"):
        _core.quantize_activations(int(T.Q4_0), np.zeros(32, np.float32))  # a weight type
    with pytest.raises(PyllamaError, match="Q8_K"):
        _core.quantize_activations(int(T.Q8_K), np.zeros(32, np.float32))  # not a whole block
    with pytest.raises(PyllamaError, match="float32"):
        _core.quantize_activations(int(T.Q8_0), np.zeros(32, np.float64))


# ---- vec_dot against an exact dot of the dequantized rows ----

def dequantize_activations(act_type: T, raw: np.ndarray) -> np.ndarray:
    """The activation row's values, exactly (float64)."""
    if act_type == T.Q8_K:
        d, qs, _ = unpack_q8_k(raw)
        return (d[:, None].astype(np.float64) * qs).ravel()
    if act_type == T.Q8_1:
        header, qs = q8_blocks(raw, 4)
        d = header[:, :2].copy().view(np.float16).astype(np.float64)
        return (d * qs).ravel()
    return gguf.quants.dequantize(raw, act_type).astype(np.float64).ravel()


def q8_1_sum_correction(w_offsets: np.ndarray, act_raw: np.ndarray) -> float:
    """What the kernel adds beyond the exact dot: Q4_1/Q5_1 weights take the activations' block sums
    from Q8_1's s, which is d * sum(qs) rounded to fp16."""
    header, qs = q8_blocks(act_raw, 4)
    d = header[:, :2].copy().view(np.float16).astype(np.float64).ravel()
    s = header[:, 2:].copy().view(np.float16).astype(np.float64).ravel()
    m = w_offsets.reshape(-1, 32)[:, 0]
    return float(np.sum(m * (s - d * qs.astype(np.int64).sum(axis=1))))


def weight_offsets(wtype: T, w: np.ndarray) -> np.ndarray:
    """Per-element offsets (min terms) of a weight row: its dequantization with all quants zeroed."""
    quants = QUANT_BYTES_OF_TYPES_WITH_MIN.get(wtype)
    if quants is None:
        return np.zeros(w.size // BLOCK_GEOMETRY[wtype][1] * BLOCK_GEOMETRY[wtype][0])
    blocks = w.reshape(-1, BLOCK_GEOMETRY[wtype][1]).copy()
    blocks[:, quants] = 0
    return gguf.quants.dequantize(blocks.reshape(-1), wtype).astype(np.float64).ravel()


def check_vec_dot(wtype: T, w: np.ndarray, x: np.ndarray, what: str) -> None:
    act_type = ACT_TYPE[wtype]
    n = x.size
    act = _core.quantize_activations(int(act_type), x)
    w_values = gguf.quants.dequantize(w, wtype).astype(np.float64).ravel()
    a_values = dequantize_activations(act_type, act)
    offsets = weight_offsets(wtype, w)
    expected = float(np.dot(w_values, a_values))
    if act_type == T.Q8_1:
        expected += q8_1_sum_correction(offsets, act)
    # Error bound. Within a block the kernel is exact integer arithmetic; each block's float value
    # (scales multiplied together, times the integer sums, minus the min term) carries a few
    # roundings relative to the magnitudes of its scale and min parts, and the per-block values are
    # then summed: at most `chain` further roundings, each relative to a partial sum bounded by
    # `magnitude`. dequantize()'s own float32 rounding of the weights adds a few more. Scale parts
    # are bounded by |w| + |offset|, min parts by |offset|, hence the magnitude below; 12 covers the
    # per-block and dequantization roundings. Float rows are summed in independent partial sums
    # (at least 16 of them in any of our kernels), so a chain is at most n / 16 plus the reduction.
    magnitude = float(np.sum((np.abs(w_values) + 2 * np.abs(offsets)) * np.abs(a_values)))
    block_size = BLOCK_GEOMETRY[wtype][0]
    chain = n // 16 + 16 if block_size == 1 else n // block_size
    tol = (chain + 12) * U * magnitude
    got = _core.vec_dot(int(wtype), w, x)
    assert isinstance(got, float)
    assert abs(got - expected) <= tol, f"{what}: {got} vs {expected} (tol {tol}, magnitude {magnitude})"


def moderate_halves(rng, size):
    """Scales over a realistic range (2^-14 .. 2^0), both signs, including zeros."""
    h = (rng.integers(1, 16, size=size, dtype=np.uint16) << 10) | rng.integers(0, 1024, size=size, dtype=np.uint16)
    h |= rng.integers(0, 2, size=size, dtype=np.uint16) << 15
    h[rng.random(size) < 0.03] = 0
    return h


def random_weight_row(rng, wtype: T, n: int) -> np.ndarray:
    block_size, _ = BLOCK_GEOMETRY[wtype]
    if block_size > 1:
        return random_blocks(rng, wtype, n // block_size, half_source=moderate_halves)
    values = (rng.standard_normal(n) * 0.05).astype(np.float32)
    if wtype == T.BF16:
        return gguf.quants.quantize(values, T.BF16).reshape(-1)
    return values.astype(np.float16 if wtype == T.F16 else np.float32).view(np.uint8)


@pytest.mark.parametrize("wtype", list(ACT_TYPE), ids=lambda t: t.name)
def test_vec_dot_random_rows(wtype):
    rng = np.random.default_rng(50 + int(wtype))
    block_size = BLOCK_GEOMETRY[wtype][0]  # the activation type's block size is the same
    lengths = [1, 7, 130] if block_size > 1 else [1, 31, 32, 33, 1000, 4099]
    for n in (k * block_size for k in lengths):
        for trial in range(3):
            check_vec_dot(wtype, random_weight_row(rng, wtype, n), activations(rng, n), f"n={n} #{trial}")


@pytest.fixture(scope="module")
def real_rows(demo_model, golden_dir):
    """(weight type, row bytes, label): rows of the first tensor of each type in the real models,
    plus real F16 rows quantized by the gguf package to the types no model here uses."""
    rows = []
    for path in (demo_model, golden_dir / "tiny-llama-256.Q4_K_M.gguf", golden_dir / "tiny-llama-256.F16.gguf"):
        seen = set()
        for tensor in read_tensors(path):  # the first tensor of each type
            if tensor.tensor_type in seen:
                continue
            seen.add(tensor.tensor_type)
            matrix = tensor_rows(tensor)
            for r in sorted({0, matrix.shape[0] // 2, matrix.shape[0] - 1}):
                rows.append((tensor.tensor_type, matrix[r], f"{path.name}:{tensor.name}[{r}]"))
    # Types no model here uses: real F16 weights quantized by the gguf package.
    f16_rows = [row for qtype, row, _ in rows if qtype == T.F16][:3]
    for qtype in (T.Q4_0, T.Q5_0, T.Q5_1, T.BF16):
        for i, row in enumerate(f16_rows):
            values = row.view(np.float16).astype(np.float32)
            rows.append((qtype, gguf.quants.quantize(values, qtype).reshape(-1).view(np.uint8),
                         f"F16 row {i} requantized"))
    return rows


def test_vec_dot_real_rows(real_rows):
    types = {qtype for qtype, _, _ in real_rows}
    assert types == set(ACT_TYPE) - {T.Q5_K}  # no Q5_K source here; random rows cover it
    rng = np.random.default_rng(9)
    for wtype, row, label in real_rows:
        block_size, type_size = BLOCK_GEOMETRY[wtype]
        n = row.size // type_size * block_size
        check_vec_dot(wtype, row, activations(rng, n), label)


def test_vec_dot_rejects_bad_input():
    x = np.ones(256, np.float32)
    with pytest.raises(PyllamaError, match="Q2_K"):
        _core.vec_dot(int(T.Q2_K), np.zeros(84, np.uint8), x)
    with pytest.raises(PyllamaError, match="Q4_K"):
        _core.vec_dot(int(T.Q4_K), np.zeros(143, np.uint8), x)
    with pytest.raises(PyllamaError, match="Q4_K"):
        _core.vec_dot(int(T.Q4_K), np.zeros(72, np.uint8), x[:128])
    with pytest.raises(PyllamaError, match="1-D"):
        _core.vec_dot(int(T.F32), np.zeros(1024, np.uint8), x.reshape(16, 16))
