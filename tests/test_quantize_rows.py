"""Weight quantization in the core (_core.quantize / requantize): bit-exact with llama.cpp's
reference quantizers and with the gguf package's numpy quantizers, threads that do not change
the bytes, and reconstruction errors within bounds derived from each format."""
from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from pyllama import PyllamaError, _core
from quant_blocks import BLOCK_GEOMETRY, T, read_tensors

DATA = Path(__file__).parent / "data"
TYPE_ID = {name: info[0] for name, info in _core.ggml_types().items()}
QUANTIZABLE = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]
# The types the gguf package quantizes itself (gguf.quants.quantize).
GGUF_PACKAGE_TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]


def assert_same_bytes(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert ours.dtype == np.uint8 and ours.shape == ref.shape, f"{what}: {ours.shape} vs {ref.shape}"
    rows = np.flatnonzero((ours != ref).any(axis=-1)) if ours.ndim == 2 else np.flatnonzero(ours != ref)
    assert rows.size == 0, f"{what}: {rows.size} rows differ, first {rows[0]}"


def random_rows(rng: np.random.Generator, n_rows: int, row_len: int) -> dict:
    """Rows of the shapes that stress quantizers: real-model-like, all zero, far below and above
    the fp16 range of the scales, one-signed, sparse and heavy-tailed."""
    def normal():
        return rng.standard_normal((n_rows, row_len))
    sparse = np.where(rng.random((n_rows, row_len)) < 0.03, normal() * 4, 0.0)
    cases = {
        "weights": normal() * 0.02,
        "unit": normal(),
        "zeros": np.zeros((n_rows, row_len)),
        "tiny": normal() * 1e-30,
        "subnormal": normal() * 1e-41,
        "huge": normal() * 1e30,
        "positive": rng.random((n_rows, row_len)),
        "negative": -rng.random((n_rows, row_len)) - 0.5,
        "sparse": sparse,
        "heavy_tailed": normal() * np.exp(rng.uniform(-30, 30, (n_rows, row_len))),
    }
    return {k: v.astype(np.float32) for k, v in cases.items()}


# ---- bit-exactness ----

def test_llama_cpp_reference_rows():
    # Rows and the bytes llama.cpp's ggml_quantize_chunk made of them (tools/make_quant_reference.py),
    # covering every type pyllama writes, K-quants included.
    ref = np.load(DATA / "quant_reference.npz")
    names, x = [str(n) for n in ref["names"]], ref["x"]
    types = [f for f in ref.files if f not in ("names", "x")]
    assert {"Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q8_0", "F16", "BF16"} <= set(types)
    for type_name in types:
        ours = _core.quantize(TYPE_ID[type_name], x)
        for i, name in enumerate(names):
            assert_same_bytes(ours[i], ref[type_name][i], f"{type_name} row {name!r}")


@pytest.mark.parametrize("qtype", GGUF_PACKAGE_TYPES, ids=lambda t: t.name)
def test_random_rows_match_gguf_package(qtype):
    rng = np.random.default_rng(int(qtype))
    for name, x in random_rows(rng, 16, 512).items():
        with np.errstate(all="ignore"):  # the huge rows overflow the fp16 scales to inf
            ref = gguf.quants.quantize(x, qtype).view(np.uint8).reshape(x.shape[0], -1)
        assert_same_bytes(_core.quantize(int(qtype), x), ref, f"{qtype.name} {name}")


@pytest.mark.parametrize("qtype", GGUF_PACKAGE_TYPES, ids=lambda t: t.name)
def test_real_weights_match_gguf_package(qtype, golden_dir):
    for tensor in read_tensors(golden_dir / "tiny-llama-256.F16.gguf")[:12]:
        x = gguf.quants.dequantize(np.asarray(tensor.data), tensor.tensor_type).reshape(-1, int(tensor.shape[0]))
        ref = gguf.quants.quantize(x, qtype).view(np.uint8).reshape(x.shape[0], -1)
        assert_same_bytes(_core.quantize(int(qtype), x), ref, f"{qtype.name} {tensor.name}")


def test_one_row_and_many_rows_agree():
    x = np.random.default_rng(3).standard_normal((5, 256)).astype(np.float32)
    rows = _core.quantize(int(T.Q4_K), x)
    for i in range(5):
        assert np.array_equal(_core.quantize(int(T.Q4_K), x[i]), rows[i])


@pytest.mark.parametrize("qtype", [T.Q4_K, T.Q6_K, T.Q4_0, T.F16], ids=lambda t: t.name)
def test_threads_do_not_change_the_bytes(qtype):
    x = np.random.default_rng(4).standard_normal((300, 512)).astype(np.float32)
    one = _core.quantize(int(qtype), x, 1)
    for n_threads in (2, 3, 7):
        assert np.array_equal(_core.quantize(int(qtype), x, n_threads), one)


@pytest.mark.parametrize("src", [T.F16, T.BF16, T.Q8_0, T.Q4_K, T.F32], ids=lambda t: t.name)
def test_requantize_is_dequantize_then_quantize(src):
    x = np.random.default_rng(5).standard_normal((40, 512)).astype(np.float32)
    src_bytes = _core.quantize(int(src), x)
    floats = _core.dequantize(int(src), src_bytes.reshape(-1), x.size).reshape(x.shape)
    for dst in (T.Q4_K, T.Q8_0, T.F16):
        expected = _core.quantize(int(dst), floats).reshape(-1)
        for n_threads in (1, 2):
            got = _core.requantize(int(src), src_bytes.reshape(-1), int(dst), 512, n_threads)
            assert np.array_equal(got, expected), (src.name, dst.name, n_threads)


# ---- reconstruction error ----
# x is quantized and dequantized; each element's error is checked against a bound derived from
# the quantizer. A value v stored as the fp16 v16 is off by at most fp16_error(v16): half a unit
# in the last place, 2^-11 of it for normal halves and 2^-25 for subnormal ones. SLACK covers
# the float32 rounding of the arithmetic itself.

HALF_EPS = 2.0 ** -11
SLACK = 1 + 1e-5
DISTRIBUTIONS = ["normal", "weights", "uniform", "laplace", "positive"]


def fp16_error(v16: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(v16) * HALF_EPS / (1 - HALF_EPS), 2.0 ** -25)


def halves(raw: np.ndarray, offset: int) -> np.ndarray:
    """The fp16 field at `offset` of every block (rows of block bytes), as float64 [n_blocks, 1]."""
    return raw[:, offset:offset + 2].copy().view(np.float16).astype(np.float64)


def k_scales(raw: np.ndarray) -> tuple:
    """6-bit sub-block scales and mins of Q4_K/Q5_K blocks (blocks.h's unpack_k_scales)."""
    s = raw[:, 4:16].astype(np.int64)
    sc, mn = np.empty((len(raw), 8)), np.empty((len(raw), 8))
    sc[:, :4], mn[:, :4] = s[:, :4] & 63, s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:] & 15) | ((s[:, :4] >> 6) << 4)
    mn[:, 4:] = (s[:, 8:] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc, mn


def round_trip(qtype: T, x: np.ndarray):
    """(x, dequantize(quantize(x))) as float64 [n_blocks, block size], and the blocks' bytes."""
    block_size, type_size = BLOCK_GEOMETRY[qtype]
    raw = _core.quantize(int(qtype), x).reshape(-1)
    y = _core.dequantize(int(qtype), raw, x.size).astype(np.float64)
    return x.reshape(-1, block_size).astype(np.float64), y.reshape(-1, block_size), raw.reshape(-1, type_size)


def check_bound(err: np.ndarray, bound: np.ndarray, what: str) -> None:
    bad = np.argwhere(err > bound * SLACK + 1e-30)
    assert bad.size == 0, (f"{what}: {len(bad)} elements over the bound, first {tuple(bad[0])}: "
                           f"error {err[tuple(bad[0])]!r} > {bound[tuple(bad[0])]!r}")


@pytest.fixture(scope="module")
def data() -> dict:
    rng = np.random.default_rng(11)
    shape = (64, 512)
    return {"normal": rng.standard_normal(shape).astype(np.float32),
            "weights": (rng.standard_normal(shape) * 0.02).astype(np.float32),
            "uniform": rng.uniform(-1, 1, shape).astype(np.float32),
            "laplace": rng.laplace(size=shape).astype(np.float32),
            "positive": rng.uniform(0.1, 1, shape).astype(np.float32)}


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_float_types_round_to_nearest(dist, data):
    # Half a unit in the last place: none for F32, 2^-11 of |x| for F16 (2^-25 when subnormal),
    # 2^-8 for BF16 (float32's exponent range, so never subnormal here).
    for qtype in (T.F32, T.F16, T.BF16):
        xb, y, _ = round_trip(qtype, data[dist])
        bound = {T.F32: 0 * xb, T.F16: np.maximum(np.abs(xb) * HALF_EPS, 2.0 ** -25),
                 T.BF16: np.abs(xb) * 2.0 ** -8}[qtype]
        check_bound(np.abs(xb - y), bound, qtype.name)


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_q8_0_error(dist, data):
    # q = round(x / d) with d = amax / 127 (so |q| <= 127, never clamped): half a step of d,
    # plus |q| <= 127 times the fp16 rounding of d.
    xb, y, raw = round_trip(T.Q8_0, data[dist])
    d16 = np.abs(halves(raw, 0))
    e = fp16_error(d16)
    check_bound(np.abs(xb - y), 0.5 * (d16 + e) + 127 * e, "Q8_0")


@pytest.mark.parametrize("qtype, qmax", [(T.Q4_0, 8), (T.Q5_0, 16)], ids=["Q4_0", "Q5_0"])
@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_q4_0_q5_0_error(qtype, qmax, dist, data):
    # d = max / -qmax maps the largest-magnitude element to -qmax exactly and every element into
    # [-qmax, qmax] steps, rounded half up; quants stop at qmax - 1, so elements beyond
    # qmax - 1/2 steps (on the other side from the max) may be a whole step off, the others at
    # most half a step. Plus |q| <= qmax times the fp16 rounding of d.
    xb, y, raw = round_trip(qtype, data[dist])
    d16 = np.abs(halves(raw, 0))
    e = fp16_error(d16)
    rounding = np.where(np.abs(xb) < (qmax - 0.5) * (d16 - e), 0.5, 1.0)
    check_bound(np.abs(xb - y), rounding * (d16 + e) + qmax * e, qtype.name)


@pytest.mark.parametrize("qtype, qmax", [(T.Q4_1, 15), (T.Q5_1, 31)], ids=["Q4_1", "Q5_1"])
@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_q4_1_q5_1_error(qtype, qmax, dist, data):
    # d = (max - min) / qmax and q = round((x - min) / d) in [0, qmax], never clamped: half a
    # step, plus qmax times the fp16 rounding of d, plus the fp16 rounding of the min.
    xb, y, raw = round_trip(qtype, data[dist])
    d16, m16 = np.abs(halves(raw, 0)), halves(raw, 2)
    e = fp16_error(d16)
    check_bound(np.abs(xb - y), 0.5 * (d16 + e) + qmax * e + fp16_error(m16), qtype.name)


@pytest.mark.parametrize("qtype, nmax", [(T.Q4_K, 15), (T.Q5_K, 31)], ids=["Q4_K", "Q5_K"])
@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_q4_k_q5_k_error(qtype, nmax, dist, data):
    xb, y, raw = round_trip(qtype, data[dist])
    xs, ys = xb.reshape(-1, 8, 32), y.reshape(-1, 8, 32)
    d16, dmin16 = halves(raw, 0)[:, :, None], halves(raw, 2)[:, :, None]
    sc, mn = k_scales(raw)
    step, offset = d16 * sc[:, :, None], dmin16 * mn[:, :, None]  # sub-block: x ~ step * q - offset
    err = np.abs(xs - ys)
    # 1. The final quants are rounded against the stored scales and mins: an element inside its
    #    sub-block's range [-offset, nmax * step - offset] is within half a step.
    outside = np.maximum(-offset - xs, 0) + np.maximum(xs - (nmax * step - offset), 0)
    inside = (outside == 0) & (step > 0)
    check_bound(np.where(inside, err, 0), step / 2, f"{qtype.name} inside")
    assert inside.mean() > 0.8  # the scale search gives up only a few extreme elements
    # 2. Every element: the scale search (make_qkx2_quants) only accepts a (scale, min) whose
    #    squared error weighted by w = av_x + |x| (av_x the sub-block's RMS) is below that of the
    #    plain fit to [min(x_min, 0), x_max], where each element is within half of
    #    s0 = (x_max - min(x_min, 0)) / nmax. As w_i >= av_x and sum(w) <= 64 av_x
    #    (Cauchy-Schwarz), any one element is within 4 s0 of the accepted fit. Storing the fit's
    #    scale and min as 6-bit multiples of D = max_scale / 63 (stored as d16) and its dmin
    #    counterpart moves it by at most nmax (D / 2 + 63 |D - d16|) + (dmin / 2 + 63 |dmin - dmin16|).
    s0 = (xs.max(axis=2, keepdims=True) - np.minimum(xs.min(axis=2, keepdims=True), 0)) / nmax
    e, e_min = fp16_error(d16), fp16_error(dmin16)
    storage = nmax * ((d16 + e) / 2 + 63 * e) + (dmin16 + e_min) / 2 + 63 * e_min
    check_bound(err, 4 * s0 + storage, f"{qtype.name} overall")


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_q6_k_error(dist, data):
    xb, y, raw = round_trip(T.Q6_K, data[dist])
    xs, ys = xb.reshape(-1, 16, 16), y.reshape(-1, 16, 16)
    d16 = np.abs(halves(raw, 208))[:, :, None]
    step = np.abs(d16 * raw[:, 192:208].view(np.int8).astype(np.float64)[:, :, None])
    err = np.abs(xs - ys)
    # 1. Quants q in [-32, 31] are rounded against the stored scales (which may be negative): an
    #    element within 31 steps of zero is within half a step.
    inside = (np.abs(xs) <= 31 * step) & (step > 0)
    check_bound(np.where(inside, err, 0), step / 2, "Q6_K inside")
    assert inside.mean() > 0.8
    # 2. Every element: make_qx_quants keeps a scale s whose x^2-weighted squared error is below
    #    that of its first try, c = amax / 32 with every element within one step |c|, so
    #    x_i^2 (x_i - s l_i)^2 <= 16 amax^2 c^2 and |x_i - s l_i| <= amax^2 / (8 |x_i|). The stored
    #    8-bit scale is within one step of D = max_scale / 128 (half, unless capped at 127) plus
    #    128 times D's fp16 rounding, and |l| <= 32.
    amax = np.abs(xs).max(axis=2, keepdims=True)
    fit = amax ** 2 / (8 * np.maximum(np.abs(xs), 1e-30))
    e = fp16_error(d16)
    check_bound(err, fit + 32 * ((d16 + e) + 128 * e), "Q6_K overall")


# ---- validity check and bad input ----

def test_row_data_is_valid_flags_overflowing_scales():
    x = np.random.default_rng(6).standard_normal((2, 256)).astype(np.float32)
    for qtype in (T.Q4_K, T.Q6_K, T.Q8_0, T.Q4_1, T.F16, T.BF16):
        ok = _core.quantize(int(qtype), x).reshape(-1)
        assert _core.row_data_is_valid(int(qtype), ok, x.size), qtype.name
        # Scales beyond fp16's range (bf16 has float32's, so it takes an inf). Not much beyond:
        # Q6_K's search squares x and gives up on a block whose sums overflow (an all-zero block).
        bad_input = np.where(x > 0, np.float32(np.inf), x) if qtype == T.BF16 else x * np.float32(1e12)
        bad = _core.quantize(int(qtype), bad_input).reshape(-1)
        assert not _core.row_data_is_valid(int(qtype), bad, x.size), qtype.name


def test_bad_arguments():
    x = np.zeros((2, 256), np.float32)
    with pytest.raises(PyllamaError, match="not supported for tensor type Q2_K"):
        _core.quantize(int(T.Q2_K), x)
    with pytest.raises(PyllamaError, match="whole number of Q4_K blocks"):
        _core.quantize(int(T.Q4_K), np.zeros((2, 96), np.float32))
    with pytest.raises(PyllamaError, match="float32"):
        _core.quantize(int(T.Q8_0), x.astype(np.float64))
    with pytest.raises(PyllamaError, match="unknown tensor type id"):
        _core.quantize(99, x)
    with pytest.raises(PyllamaError, match="n_threads must be at least 1"):
        _core.quantize(int(T.Q8_0), x, 0)
    with pytest.raises(PyllamaError, match="not a whole number of F16 rows"):
        _core.requantize(int(T.F16), np.zeros(100, np.uint8), int(T.Q4_K), 256)
    with pytest.raises(PyllamaError, match="dequantization is not supported for tensor type Q3_K"):
        _core.requantize(int(T.Q3_K), np.zeros(110, np.uint8), int(T.Q4_K), 256)
