"""Attention over the KV cache (src/cpp/attention.cpp and the simd/ kernels), outside a model.

The scalar level is checked against a float64 numpy reference; every SIMD level against the scalar
level, over grouped-query shapes (1, 4 and 8 query heads per key/value head), odd lengths (partial
key blocks, partial tiles, batches that start mid-sequence), both cache types and 1 to 3 threads
(which changes how the keys are split into ranges and merged).
"""
from __future__ import annotations

import numpy as np
import pytest

from pyllama import PyllamaError, _core

LEVELS = _core.available_isas()
SIMD_LEVELS = [level for level in LEVELS if level != "scalar"]

# (new tokens, positions in the cache including them)
LENGTHS = [(1, 1), (1, 300), (5, 37), (37, 37), (70, 613)]


@pytest.fixture(autouse=True)
def restore_isa():
    before = _core.isa()
    yield
    _core.set_isa(before)


def random_qkv(n, n_keys, n_head, n_head_kv, head_dim, seed):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, n_head * head_dim)).astype(np.float32)
    k = rng.standard_normal((n_keys, n_head_kv * head_dim)).astype(np.float32)
    v = rng.standard_normal((n_keys, n_head_kv * head_dim)).astype(np.float32)
    return q, k, v


def reference_attention(q, k, v, n_head, n_head_kv, kv_type):
    """float64 causal attention of the last len(q) positions; the cache rounds k and v to its type."""
    if kv_type == "f16":
        k, v = k.astype(np.float16), v.astype(np.float16)
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    n, n_keys = q.shape[0], k.shape[0]
    hd = q.shape[1] // n_head
    group = n_head // n_head_kv
    out = np.empty_like(q)
    for t in range(n):
        visible = n_keys - n + t + 1
        for h in range(n_head):
            kh = k[:visible, (h // group) * hd:(h // group + 1) * hd]
            vh = v[:visible, (h // group) * hd:(h // group + 1) * hd]
            s = kh @ q[t, h * hd:(h + 1) * hd] / np.sqrt(hd)
            p = np.exp(s - s.max())
            out[t, h * hd:(h + 1) * hd] = p @ vh / p.sum()
    return out


def run(level, q, k, v, n_head, n_head_kv, kv_type, n_threads, n_batch=512):
    _core.set_isa(level)
    return _core.attention(q, k, v, n_head, n_head_kv, kv_type, n_threads, n_batch)


@pytest.mark.parametrize("kv_type", ["f32", "f16"])
@pytest.mark.parametrize("group", [1, 4, 8])
@pytest.mark.parametrize("n,n_keys", LENGTHS)
def test_scalar_matches_float64_reference(n, n_keys, group, kv_type):
    n_head_kv, hd = 2, 64
    q, k, v = random_qkv(n, n_keys, group * n_head_kv, n_head_kv, hd, seed=n * 1000 + n_keys)
    expected = reference_attention(q, k, v, group * n_head_kv, n_head_kv, kv_type)
    for n_threads in (1, 2):
        got = run("scalar", q, k, v, group * n_head_kv, n_head_kv, kv_type, n_threads)
        # float32 scores and sums over a few hundred keys: ~1e-6; a wrong mask, row or head is ~0.1
        np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("kv_type", ["f32", "f16"])
@pytest.mark.parametrize("group", [1, 4, 8])
@pytest.mark.parametrize("n,n_keys", LENGTHS)
def test_simd_level_matches_scalar(level, n, n_keys, group, kv_type):
    n_head_kv, hd = 2, 64
    q, k, v = random_qkv(n, n_keys, group * n_head_kv, n_head_kv, hd, seed=n * 1000 + n_keys + group)
    expected = run("scalar", q, k, v, group * n_head_kv, n_head_kv, kv_type, 1)
    for n_threads in (1, 2, 3):
        got = run(level, q, k, v, group * n_head_kv, n_head_kv, kv_type, n_threads)
        # Both sum over dimensions and over keys in the same order; they differ by FMA, the order
        # of merging key ranges and the SIMD exp (a few ulp): measured below 1e-6.
        np.testing.assert_allclose(got, expected, rtol=0, atol=5e-6)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("head_dim", [8, 40, 72, 128])
def test_head_dims_past_whole_registers(level, head_dim):
    # 8: less than one AVX-512 register; 40 and 72: whole registers plus a tail on AVX-512 (and
    # on AVX2 for 72 = 2 * 32 + 8); 128: several register tiles per row.
    n, n_keys, n_head, n_head_kv = 9, 50, 6, 2
    q, k, v = random_qkv(n, n_keys, n_head, n_head_kv, head_dim, seed=head_dim)
    q *= 8 / np.sqrt(head_dim)  # keep the scores' spread as with head_dim 64
    expected = reference_attention(q, k, v, n_head, n_head_kv, "f16")
    for n_threads in (1, 2):
        got = run(level, q, k, v, n_head, n_head_kv, "f16", n_threads)
        np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("n_batch", [1, 3, 7])
def test_small_query_tiles(level, n_batch):
    # n_batch below a full tile: tiles of fewer tokens than the group allows, a ragged last tile.
    n, n_keys, n_head, n_head_kv = 20, 45, 12, 3
    q, k, v = random_qkv(n, n_keys, n_head, n_head_kv, 64, seed=n_batch)
    expected = reference_attention(q, k, v, n_head, n_head_kv, "f32")
    got = run(level, q, k, v, n_head, n_head_kv, "f32", 2, n_batch=n_batch)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize("level", LEVELS)
def test_long_context_key_ranges_merge(level):
    # One token over 3000 positions with several threads: its keys are split into ranges that
    # are merged; the same result as one thread going through them all.
    q, k, v = random_qkv(1, 3000, 32, 4, 64, seed=7)
    one = run(level, q, k, v, 32, 4, "f16", 1)
    for n_threads in (2, 3):
        np.testing.assert_allclose(run(level, q, k, v, 32, 4, "f16", n_threads), one, rtol=0, atol=2e-6)
    np.testing.assert_allclose(one, reference_attention(q, k, v, 32, 4, "f16"), rtol=0, atol=2e-5)


@pytest.mark.parametrize("level", LEVELS)
def test_large_scores_do_not_overflow(level):
    # Scores in the hundreds: the running maximum keeps every exponential finite.
    q, k, v = random_qkv(4, 200, 8, 2, 64, seed=3)
    q *= 40
    got = run(level, q, k, v, 8, 2, "f32", 2)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, reference_attention(q, k, v, 8, 2, "f32"), rtol=0, atol=1e-4)


def test_rejects_bad_shapes():
    q, k, v = random_qkv(2, 10, 4, 2, 16, seed=0)
    with pytest.raises(PyllamaError):
        _core.attention(q, k, v, 3, 2, "f32", 1, 512)  # 4 * 16 columns are not 3 heads
    with pytest.raises(PyllamaError):
        _core.attention(q, k, v, 4, 3, "f32", 1, 512)  # 4 query heads cannot share 3 kv heads
    with pytest.raises(PyllamaError):
        _core.attention(q, k[:1], v[:1], 4, 2, "f32", 1, 512)  # fewer positions than queries
    with pytest.raises(PyllamaError):
        _core.attention(q, k, v, 4, 2, "q8_0", 1, 512)


@pytest.mark.parametrize("level", LEVELS)
def test_silu_mul(level):
    rng = np.random.default_rng(1)
    # every length up to two AVX-512 registers (tails), and values out to where exp over/underflows
    for n in list(range(1, 34)) + [1000]:
        gate = (rng.standard_normal(n) * 6).astype(np.float32)
        gate[: n // 10] = rng.choice([-200.0, -90.0, -87.0, 0.0, 88.0, 90.0], n // 10)
        up = rng.standard_normal(n).astype(np.float32)
        _core.set_isa(level)
        got = _core.silu_mul(gate, up)
        g = gate.astype(np.float64)
        expected = g / (1 + np.exp(-g)) * up
        # the SIMD exp is within a few ulp of exp; silu then adds two roundings
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-30)
