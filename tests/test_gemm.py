"""The GEMM over row-interleaved ("repacked") Q4_K/Q6_K weights (src/cpp/quant/repack.h, gemm.h).

The layout is checked against the gguf package's dequantizer by decoding it here from its
specification. Every level's GEMM must reproduce the scalar vec_dot exactly: its integer sums are
exact and each vector lane (one row) then takes the scalar kernel's float steps in its order.
matmul takes the GEMM for the whole tiles of 8 rows and the level's vec_dot for the rest (which
may differ from the scalar one by float summation order, bounded as in test_kernels_isa.py), for
any number of tokens and threads; so a whole model's logits are the same repacked or not, and
the same on every level.
"""
from __future__ import annotations

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from pyllama import _core
from quant_blocks import BLOCK_GEOMETRY, read_tensors, tensor_rows
from test_quant_kernels import U, activations, dequantize_activations, random_weight_row, weight_offsets

LEVELS = _core.available_isas()
TYPES = [T.Q4_K, T.Q6_K]


@pytest.fixture(autouse=True)
def restore_isa():
    before = _core.isa()
    yield
    _core.set_isa(before)


# ---- the layout, decoded from repack.h's description ----

def interleaved(tile_bytes: np.ndarray, r: int) -> np.ndarray:
    """Row r's bytes out of a row-interleaved array: byte 4k + e of row r is at 32k + 4r + e."""
    return tile_bytes.reshape(-1, 8, 4)[:, r, :].reshape(-1)


def dequantize_q4_kx8(tile: np.ndarray, r: int) -> np.ndarray:
    d = tile[0:16].view(np.float16).astype(np.float32)[r]
    dmin = tile[16:32].view(np.float16).astype(np.float32)[r]
    sc = tile[32:96].reshape(8, 8)[:, r].astype(np.float32)
    mins = tile[96:160].reshape(4, 8, 2)[:, r, :].reshape(8).astype(np.float32)
    qs = interleaved(tile[160:1184], r).reshape(4, 32)  # ggml's 32 bytes per 64 elements
    q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.float32)  # element order
    # the gguf package's order of operations: (d * sc) * q - dmin * mn, per sub-block of 32
    return ((d * sc)[:, None] * q.reshape(8, 32) - (dmin * mins)[:, None]).reshape(256)


def dequantize_q6_kx8(tile: np.ndarray, r: int) -> np.ndarray:
    d = tile[0:16].view(np.float16).astype(np.float32)[r]
    sc = tile[16:144].view(np.int8).reshape(8, 8, 2)[:, r, :].reshape(16).astype(np.float32)
    values = []
    for half in range(2):
        base = 144 + 768 * half
        ql = interleaved(tile[base:base + 512], r)        # ggml's 64 ql bytes of this half
        qh = interleaved(tile[base + 512:base + 768], r)  # and its 32 qh bytes
        low = np.concatenate([ql & 15, ql >> 4])          # elements 0..127 of the half
        high = np.concatenate([(qh >> shift) & 3 for shift in (0, 2, 4, 6)])
        values.append((low | (high << 4)).astype(np.int32) - 32)
    q = np.concatenate(values).astype(np.float32)
    return ((d * sc)[:, None] * q.reshape(16, 16)).reshape(256)


TILE_BYTES = {T.Q4_K: 1184, T.Q6_K: 1680}
DEQUANTIZE_TILE = {T.Q4_K: dequantize_q4_kx8, T.Q6_K: dequantize_q6_kx8}


@pytest.mark.parametrize("wtype", TYPES, ids=lambda t: t.name)
def test_layout_decodes_to_the_original_rows(wtype):
    rng = np.random.default_rng(int(wtype))
    n_in, n_rows = 512, 19  # two whole tiles; the last 3 rows are not repacked
    rows = np.stack([random_weight_row(rng, wtype, n_in) for _ in range(n_rows)])
    tiles = _core.repack(int(wtype), rows, n_in)
    nb = n_in // 256
    assert tiles.size == 2 * nb * TILE_BYTES[wtype]
    expected = gguf.quants.dequantize(rows, wtype).reshape(n_rows, n_in)
    for tile in range(2):
        for i in range(nb):
            off = (tile * nb + i) * TILE_BYTES[wtype]
            block = tiles[off:off + TILE_BYTES[wtype]]
            for r in range(8):
                got = DEQUANTIZE_TILE[wtype](block, r)
                np.testing.assert_array_equal(got, expected[8 * tile + r, 256 * i:256 * (i + 1)])


# ---- matmul through the GEMM against vec_dot ----

def scalar_reference(wtype, rows: np.ndarray, x: np.ndarray) -> np.ndarray:
    _core.set_isa("scalar")
    return _core.matmul(int(wtype), rows, x, 1, False)


def tolerance(wtype, rows: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per output, the bound of test_kernels_isa.dot_tolerance: each side within (2 nb + 8) u times
    the magnitude (sum over elements of (|w - offset| + |offset|) |a|) of the exact dot."""
    n_in = x.shape[1]
    w_values = gguf.quants.dequantize(rows, wtype).reshape(rows.shape[0], n_in).astype(np.float64)
    offsets = np.stack([weight_offsets(wtype, row) for row in rows])
    a_values = np.stack([dequantize_activations(T.Q8_K, _core.quantize_activations(int(T.Q8_K), row)) for row in x])
    magnitude = np.abs(a_values) @ (np.abs(w_values - offsets) + np.abs(offsets)).T
    return 2 * (2 * (n_in // 256) + 8) * U * magnitude


def check_matmul(wtype, rows: np.ndarray, x: np.ndarray, what: str, threads=(1, 2, 3)) -> None:
    expected = scalar_reference(wtype, rows, x)
    tol = tolerance(wtype, rows, x)
    tiled = rows.shape[0] // 8 * 8
    for level in LEVELS:
        _core.set_isa(level)
        for n_threads in threads:
            got = _core.matmul(int(wtype), rows, x, n_threads, True)
            where = f"{what}, level {level}, {n_threads} threads"
            np.testing.assert_array_equal(got[:, :tiled], expected[:, :tiled], err_msg=where)
            bad = np.abs(got[:, tiled:].astype(np.float64) - expected[:, tiled:]) > tol[:, tiled:]
            assert not bad.any(), f"{where}, rows after the last tile: {np.argwhere(bad)[:5]}"


@pytest.mark.parametrize("wtype", TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("n_in,n_rows", [(256, 8), (256, 13), (768, 27), (512, 67)])
def test_matmul_random_rows(wtype, n_in, n_rows):
    rng = np.random.default_rng(n_in + n_rows + int(wtype))
    rows = np.stack([random_weight_row(rng, wtype, n_in) for _ in range(n_rows)])
    # 1-7 tokens: one tile at a time (generation); 8 on: two at a time on AVX-512; 130: matmul's
    # chunks of 128 input rows, and a remainder of 2
    for n_tokens in (1, 2, 3, 5, 17, 70, 130):
        x = np.stack([activations(rng, n_in) for _ in range(n_tokens)])
        check_matmul(wtype, rows, x, f"{wtype.name} {n_rows}x{n_in}, {n_tokens} tokens")


@pytest.fixture(scope="module")
def golden_k_tensors(golden_dir):
    tensors = read_tensors(golden_dir / "tiny-llama-256.Q4_K_M.gguf")
    chosen = {}
    for t in tensors:
        if t.tensor_type in TYPES and len(t.shape) == 2 and t.tensor_type not in chosen:
            chosen[t.tensor_type] = t
    assert set(chosen) == set(TYPES)
    return chosen


@pytest.mark.parametrize("wtype", TYPES, ids=lambda t: t.name)
def test_matmul_golden_tensors(wtype, golden_k_tensors):
    t = golden_k_tensors[wtype]
    rows = tensor_rows(t)[:61]  # 7 whole tiles and 5 rows of vec_dot
    rng = np.random.default_rng(7)
    for n_tokens in (1, 5, 64):
        x = np.stack([activations(rng, int(t.shape[0])) for _ in range(n_tokens)])
        check_matmul(wtype, rows, x, f"{t.name}, {n_tokens} tokens", threads=(1, 2))


def test_matmul_rejects_bad_input():
    rows = np.zeros((8, 144), np.uint8)
    with pytest.raises(ValueError, match="whole number of rows"):
        _core.matmul(int(T.Q4_K), np.zeros(1000, np.uint8), np.zeros((1, 256), np.float32), 1, True)
    with pytest.raises(ValueError, match="Q4_K"):
        _core.matmul(int(T.Q4_K), rows, np.zeros((1, 100), np.float32), 1, True)
    with pytest.raises(ValueError, match="repack"):
        _core.matmul(int(T.Q8_0), np.zeros((8, 34), np.uint8), np.zeros((1, 32), np.float32), 1, True)


# ---- a whole model ----

def prompt_logits(model, tokens: np.ndarray) -> np.ndarray:
    ctx = _core.InferenceContext(model, 64, 2, 16, "f32")  # n_batch 16: GEMM for 16 and for 4 tokens
    return ctx.eval(tokens, True)


def test_model_logits_same_with_and_without_repacking(golden_dir):
    path = str(golden_dir / "tiny-llama-256.Q4_K_M.gguf")
    tokens = np.random.default_rng(3).integers(0, 32000, 20).astype(np.int32)
    _core.set_isa("scalar")
    plain = _core.LlamaModel(_core.GGUFFile(path), repack=False)
    assert plain.repacked_matrices == 0
    best = LEVELS[-1]
    _core.set_isa(best)
    repacked = _core.LlamaModel(_core.GGUFFile(path), repack=True)
    n_k = 1 + 7 * repacked.n_layer  # every matrix of this file is Q4_K or Q6_K, in whole tiles
    assert repacked.repacked_matrices == (n_k if best != "scalar" else 0)
    # The repacked layout stays valid whatever level runs after loading. On the scalar level both
    # models run the same scalar attention and norms, and the scalar GEMM computes exactly what
    # the scalar vec_dot computes: the logits are equal bit for bit. On a SIMD level the
    # unrepacked model's vec_dot sums in another float order than the GEMM (which keeps the
    # scalar order), and a last-bit difference can flip one 8-bit activation rounding that then
    # propagates: the bound is the one the other whole-model cross-level checks use.
    for level in LEVELS:
        _core.set_isa(level)
        got, want = prompt_logits(repacked, tokens), prompt_logits(plain, tokens)
        if level == "scalar":
            np.testing.assert_array_equal(got, want)
        else:
            diff = np.abs(got - want)
            assert diff.max() <= 5e-2 and np.sqrt(np.mean(diff ** 2)) <= 5e-3, level


def test_no_repacking_on_the_scalar_level(golden_dir):
    _core.set_isa("scalar")
    model = _core.LlamaModel(_core.GGUFFile(str(golden_dir / "tiny-llama-256.Q4_K_M.gguf")))
    assert model.repacked_matrices == 0
