"""pyllama's GGUF reader (_core.GGUFFile) against the gguf package's reader, and on broken files."""
from __future__ import annotations

import os
import random
import struct
import time
from pathlib import Path

import gguf
import numpy as np
import pytest

import gguf_bytes as gb
from gguf_bytes import Tensor, build, kv, kv_array, kv_raw
from pyllama import PyllamaError
from pyllama._core import GGUFFile

VT = gguf.GGUFValueType


# --- agreement with gguf.GGUFReader -------------------------------------------------------

def expected_value(field: gguf.ReaderField):
    """What GGUFFile.metadata should hold for a field of gguf.GGUFReader."""
    vtype = field.types[0]
    if vtype == VT.ARRAY:
        elem = VT(int(field.parts[3][0]))  # parts: key length, key, type, element type, count, ...
        if elem == VT.STRING:
            return field.contents()
        np_type = gguf.GGUFReader.gguf_scalar_to_np[elem]
        parts = [field.parts[i] for i in field.data]
        return np.concatenate(parts) if parts else np.array([], dtype=np_type)
    if vtype == VT.STRING:
        return field.contents()
    scalar = field.parts[-1][0]
    if vtype == VT.BOOL:
        return bool(scalar)
    if vtype in (VT.FLOAT32, VT.FLOAT64):
        return float(scalar)
    return int(scalar)


def assert_same_value(key: str, ours, expected) -> None:
    if isinstance(expected, np.ndarray):
        assert isinstance(ours, np.ndarray), key
        assert ours.dtype == expected.dtype, key
        assert np.array_equal(ours, expected), key
    else:
        assert type(ours) is type(expected), key  # int stays int, bool stays bool
        assert ours == expected, key


def assert_matches_gguf_reader(path: Path) -> None:
    ours = GGUFFile(path)
    ref = gguf.GGUFReader(path)

    assert ours.version == int(ref.fields["GGUF.version"].parts[0][0])
    assert ours.alignment == ref.alignment
    assert ours.file_size == os.path.getsize(path)
    if ref.tensors:  # without tensors llama.cpp (and we) put no padding before the data section
        assert ours.data_offset == ref.data_offset

    fields = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    metadata = ours.metadata
    assert list(metadata) == list(fields)  # same keys, same order
    for key, field in fields.items():
        assert_same_value(key, metadata[key], expected_value(field))

    assert [t.name for t in ours.tensors] == [t.name for t in ref.tensors]
    for t, r in zip(ours.tensors, ref.tensors):
        assert t.shape == tuple(int(n) for n in r.shape), t.name
        assert t.type == int(r.tensor_type), t.name
        assert t.type_name == r.tensor_type.name, t.name
        assert t.nbytes == r.n_bytes, t.name
        assert t.offset == r.data_offset - ref.data_offset, t.name
        assert ours.find_tensor(t.name).offset == t.offset
        data = ours.tensor_data(t.name)
        assert data.dtype == np.uint8 and data.shape == (t.nbytes,)
        assert np.array_equal(data, np.ascontiguousarray(r.data).reshape(-1).view(np.uint8)), t.name


@pytest.fixture(params=["demo", "tiny-llama-256.F16.gguf", "tiny-llama-256.Q4_K_M.gguf"])
def real_model(request) -> Path:
    if request.param == "demo":
        return request.getfixturevalue("demo_model")
    return request.getfixturevalue("golden_dir") / request.param


def test_real_models_match_gguf_reader(real_model):
    assert_matches_gguf_reader(real_model)


def test_small_models_match_gguf_reader(tmp_path):
    written = tmp_path / "writer.gguf"
    gb.write_small_model(written)
    assert_matches_gguf_reader(written)
    built = tmp_path / "built.gguf"
    built.write_bytes(build(gb.valid_kvs(), gb.valid_tensors()))
    assert_matches_gguf_reader(built)


def test_file_properties_and_lookup(demo_model):
    f = GGUFFile(str(demo_model))  # str and os.PathLike both work
    assert f.path == str(demo_model)
    assert f.version == 3
    assert f.data_offset % f.alignment == 0
    assert f.find_tensor("no.such.tensor") is None
    t = f.find_tensor("token_embd.weight")
    assert t.shape == (576, 49152) and t.n_elements == 576 * 49152
    with pytest.raises(PyllamaError, match="no.such.tensor"):
        f.tensor_data("no.such.tensor")


def test_tensor_data_is_a_read_only_view_that_keeps_the_file_alive(tmp_path):
    path = tmp_path / "small.gguf"
    gb.write_small_model(path)
    f = GGUFFile(path)
    data = f.tensor_data("output_norm.weight")
    assert not data.flags.writeable and not data.flags.owndata
    with pytest.raises(ValueError):
        data[0] = 1
    del f  # the view's base holds the file and its mapping
    expected = np.linspace(-1, 1, 16, dtype=np.float32)
    assert np.array_equal(data.view(np.float32), expected)


def test_metadata_dict_is_fast(demo_model):
    f = GGUFFile(demo_model)
    f.metadata  # warm-up (first numpy calls)
    best = min(_timed(lambda: f.metadata) for _ in range(3))
    assert best < 0.1, f"building the metadata dict of a 49152-token vocabulary took {best:.3f} s"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_typed_getters(tmp_path):
    path = tmp_path / "small.gguf"
    gb.write_small_model(path)
    f = GGUFFile(path)
    assert f.get_uint("llama.block_count") == 1
    assert f.get_u32("llama.block_count") == 1
    assert f.get_int("test.int64") == -5
    assert f.get_uint("test.uint64") == 2**64 - 1
    assert f.get_float("test.float64") == 0.1
    assert f.get_float("llama.attention.layer_norm_rms_epsilon") == float(np.float32(1e-5))
    assert f.get_bool("tokenizer.ggml.add_bos_token") is True
    assert f.get_string("general.architecture") == "llama"
    assert f.get_uint("absent.key") is None and f.get_string("absent.key") is None

    with pytest.raises(PyllamaError, match=r"test\.int64.*INT64 -5.*non-negative"):
        f.get_uint("test.int64")
    with pytest.raises(PyllamaError, match=r"test\.uint64.*too large for uint32"):
        f.get_u32("test.uint64")
    with pytest.raises(PyllamaError, match=r"test\.uint64.*too large for int64"):
        f.get_int("test.uint64")
    with pytest.raises(PyllamaError, match=r"general\.architecture.*STRING.*integer"):
        f.get_uint("general.architecture")
    with pytest.raises(PyllamaError, match=r"llama\.block_count.*UINT32.*FLOAT"):
        f.get_float("llama.block_count")
    with pytest.raises(PyllamaError, match=r"tokenizer\.ggml\.tokens.*ARRAY of STRING.*expected STRING"):
        f.get_string("tokenizer.ggml.tokens")
    with pytest.raises(PyllamaError, match=r"test\.float64.*BOOL"):
        f.get_bool("test.float64")


# --- files without tensors ----------------------------------------------------------------

def _vocab_only_writer(path: Path) -> gguf.GGUFWriter:
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>", "▁hello"])
    w.add_token_scores([0.0, 0.0, 0.0, -1.25])
    w.add_token_types([2, 3, 3, 1])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    return w


def test_vocabulary_only_file_loads(tmp_path):
    padded = tmp_path / "vocab_padded.gguf"  # GGUFWriter pads the (empty) data section
    w = _vocab_only_writer(padded)
    w.write_tensors_to_file()
    w.close()
    assert_matches_gguf_reader(padded)

    bare = tmp_path / "vocab_bare.gguf"  # ends right after the key-values
    _vocab_only_writer(bare).close()
    f = GGUFFile(bare)
    assert f.tensors == []
    assert f.data_offset == f.file_size
    assert f.metadata["tokenizer.ggml.tokens"] == ["<unk>", "<s>", "</s>", "▁hello"]
    assert f.metadata["tokenizer.ggml.scores"].tolist() == [0.0, 0.0, 0.0, -1.25]


# --- broken files -------------------------------------------------------------------------

def _one_tensor(t: Tensor, kvs=None, **kw) -> bytes:
    return build(gb.valid_kvs() if kvs is None else kvs, [t], **kw)


def _kvs_plus(*extra: bytes) -> list[bytes]:
    return gb.valid_kvs() + list(extra)


def _truncated_valid_file() -> bytes:
    return build(gb.valid_kvs(), gb.valid_tensors())[:-1]


# (id, file bytes, regex the message must match). Every message also names the file.
BAD_FILES = [
    ("empty", b"", "empty"),
    ("truncated-header", b"GGUF\x03\x00", "file ends inside the version"),
    ("bad-magic", build(gb.valid_kvs(), magic=b"GGML"), "magic"),
    ("version-1", build(gb.valid_kvs(), version=1), "version 1"),
    ("version-4", build(gb.valid_kvs(), version=4), "version 4"),
    ("version-0", build(gb.valid_kvs(), version=0), "version 0"),
    ("big-endian", build(gb.valid_kvs(), version_format=">I"), "big-endian"),
    ("n-tensors-huge", build(gb.valid_kvs(), n_tensors=2**63), "tensors"),
    ("n-tensors-max", build(gb.valid_kvs(), n_tensors=2**64 - 1), "tensors"),
    ("n-kv-huge", build(gb.valid_kvs(), n_kv=2**64 - 1), "key-values"),
    ("n-kv-one-too-many", build(gb.valid_kvs(), n_kv=len(gb.valid_kvs()) + 1), "file ends"),
    ("string-past-eof", build(_kvs_plus(kv_raw("s", struct.pack("<IQ", gb.STRING, 1000) + b"abc"))),
     r"value of key 's' has length 1000"),
    ("string-length-near-2**64",
     build(_kvs_plus(kv_raw("s", struct.pack("<IQ", gb.STRING, 2**64 - 2) + b"abc"))), "length"),
    ("key-length-near-2**64", build([struct.pack("<Q", 2**64 - 1) + b"key" + bytes(16)]), "length"),
    ("empty-key", build([kv("", gb.UINT32, 1)]), "empty name"),
    ("array-count-overflows", build(_kvs_plus(
        kv_raw("a", struct.pack("<IIQ", gb.ARRAY, gb.UINT64, 2**61 + 1) + bytes(16)))), "elements"),
    ("array-count-past-eof", build(_kvs_plus(
        kv_raw("a", struct.pack("<IIQ", gb.ARRAY, gb.UINT32, 2**29) + bytes(16)))),
     r"key 'a' claims 536870912 elements"),
    ("string-array-count-past-eof", build(_kvs_plus(
        kv_raw("a", struct.pack("<IIQ", gb.ARRAY, gb.STRING, 1000) + gb.string("x")))), "elements"),
    ("string-array-element-past-eof", build(_kvs_plus(
        kv_raw("a", struct.pack("<IIQ", gb.ARRAY, gb.STRING, 2) + gb.string("x")
               + struct.pack("<Q", 500)))), r"element 1 of key 'a'"),
    ("nested-array", build(_kvs_plus(
        kv_raw("a", struct.pack("<IIQ", gb.ARRAY, gb.ARRAY, 1) + struct.pack("<IQ", gb.UINT8, 1) + b"\x01"))),
     "array of arrays"),
    ("unknown-value-type", build(_kvs_plus(kv_raw("k", struct.pack("<II", 13, 0)))),
     r"key 'k' has unknown value type id 13"),
    ("unknown-array-element-type", build(_kvs_plus(kv_raw("k", struct.pack("<IIQ", gb.ARRAY, 99, 0)))),
     "unknown value type id 99"),
    ("duplicate-key", build(_kvs_plus(kv("llama.block_count", gb.UINT32, 3))), "duplicate key 'llama.block_count'"),
    ("alignment-zero", _one_tensor(Tensor.f32("t", [8]), _kvs_plus(kv("general.alignment", gb.UINT32, 0))),
     "power of two"),
    ("alignment-three", _one_tensor(Tensor.f32("t", [8]), _kvs_plus(kv("general.alignment", gb.UINT32, 3))),
     "power of two"),
    ("alignment-uint64", _one_tensor(Tensor.f32("t", [8]), _kvs_plus(kv("general.alignment", gb.UINT64, 32))),
     r"general\.alignment' is UINT64.*expected UINT32"),
    ("alignment-string", build(_kvs_plus(kv("general.alignment", gb.STRING, "32"))), "expected UINT32"),
    ("unknown-tensor-type", _one_tensor(Tensor("t", [8], 99, bytes(32))), r"tensor 't' has unknown ggml type id 99"),
    ("removed-tensor-type", _one_tensor(Tensor("t", [32], 4, bytes(20))), "unknown ggml type id 4"),
    ("n-dims-0", _one_tensor(Tensor("t", [], gb.F32, bytes(4))), "0 dimensions"),
    ("n-dims-5", _one_tensor(Tensor("t", [1, 1, 1, 1, 1], gb.F32, bytes(4))), "5 dimensions"),
    ("negative-ne", _one_tensor(Tensor("t", [8, -1], gb.F32, bytes(32))), "negative size -1"),
    ("ne-product-overflows", _one_tensor(Tensor("t", [2**32, 2**32], gb.F32)), "int64"),
    ("nbytes-overflows", _one_tensor(Tensor("t", [2**62 + 4], gb.F32)), "size in bytes"),
    ("row-not-multiple-of-block", _one_tensor(Tensor("t", [33, 1], gb.Q8_0, bytes(34))), "block size 32"),
    ("misaligned-offset", build(gb.valid_kvs(), [Tensor.f32("a", [8]), Tensor("b", [8], gb.F32, bytes(32), offset=40)]),
     r"tensor 'b' data offset 40 is not a multiple of the alignment 32"),
    ("out-of-order-offset", build(gb.valid_kvs(), [Tensor.f32("a", [8]), Tensor("b", [8], gb.F32, bytes(32), offset=0)]),
     "order"),
    ("offset-past-eof", _one_tensor(Tensor("t", [8], gb.F32, bytes(32), offset=2**64 - 32)), "offset"),
    ("data-past-eof", _truncated_valid_file(), r"tensor 'output_norm.weight' data .* extends past the end"),
    ("size-past-eof", _one_tensor(Tensor("t", [1024, 1024], gb.F32, bytes(64))), "extends past the end"),
    ("data-section-past-eof", build(gb.valid_kvs(), [Tensor("t", [0], gb.F32)])[:-1], "data section"),
    ("duplicate-tensor", build(gb.valid_kvs(), [Tensor.f32("t", [8]), Tensor.f32("t", [8])]),
     "duplicate tensor name 't'"),
    ("tensor-name-64-bytes", _one_tensor(Tensor.f32("x" * 64, [8])), "64 bytes long"),
    ("tensor-name-huge", _one_tensor(Tensor.f32("x" * 5000, [8])), "5000 bytes long"),
    ("empty-tensor-name", _one_tensor(Tensor.f32("", [8])), "empty name"),
    ("nul-in-tensor-name", _one_tensor(Tensor.f32(b"a\0b", [8])), "NUL"),
    ("control-chars-in-tensor-name", build(gb.valid_kvs(), [Tensor.f32(b"t\x01\x7f", [8])] * 2),
     r"duplicate tensor name 't\\x01\\x7f'"),  # shown escaped
    ("non-utf8-tensor-name", _one_tensor(Tensor.f32(b"w\xc3(", [8])), r"name 'w\\xc3\(' is not valid UTF-8"),
]


@pytest.mark.parametrize("data,pattern", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_file_is_rejected(tmp_path, data, pattern):
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(PyllamaError, match=pattern) as err:
        GGUFFile(path)
    assert isinstance(err.value, ValueError)
    assert str(path) in str(err.value)


def test_bad_file_cases_are_otherwise_valid(tmp_path):
    """The broken files above differ from valid ones only where they mean to: these near
    neighbours load."""
    cases = {
        "name-63": _one_tensor(Tensor.f32("x" * 63, [8])),
        "alignment-64": _one_tensor(Tensor.f32("t", [8]), _kvs_plus(kv("general.alignment", gb.UINT32, 64)),
                                    alignment=64),
        "zero-sized": build(gb.valid_kvs(), [Tensor("e", [0, 4], gb.Q8_0), Tensor.f32("t", [8])]),
        "four-dims": _one_tensor(Tensor.f32("t", [2, 1, 3, 2])),
        "empty-arrays": build(_kvs_plus(kv_array("a", gb.STRING, []), kv_array("b", gb.INT16, []))),
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(data)
        f = GGUFFile(path)
        for t in f.tensors:
            assert f.tensor_data(t.name).nbytes == t.nbytes, name
    f = GGUFFile(tmp_path / "alignment-64.gguf")
    assert f.alignment == 64 and f.data_offset % 64 == 0
    f = GGUFFile(tmp_path / "empty-arrays.gguf")
    assert f.metadata["a"] == [] and f.metadata["b"].dtype == np.int16 and f.metadata["b"].size == 0


@pytest.mark.parametrize("name", [
    "é", "€", "😀", "\u07ff", "\u0800", "\ud7ff", "\ue000", "\uffff", "\U00010000", "\U0010ffff",  # valid
    b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf",   # overlong
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80",        # surrogate, too big
    b"\x80", b"\xbf", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xe2\x28\xa1", b"\xff",  # malformed
], ids=repr)
def test_tensor_names_must_be_utf8_as_python_decodes_it(tmp_path, name):
    raw = name.encode("utf-8", "surrogatepass") if isinstance(name, str) else name
    path = tmp_path / "name.gguf"
    path.write_bytes(_one_tensor(Tensor.f32(b"w." + raw, [8])))
    try:
        expected = (b"w." + raw).decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(PyllamaError, match="not valid UTF-8"):
            GGUFFile(path)
    else:
        assert [t.name for t in GGUFFile(path).tensors] == [expected]


def test_directory_and_missing_path(tmp_path):
    with pytest.raises(PyllamaError, match="Is a directory") as err:
        GGUFFile(tmp_path)
    assert str(tmp_path) in str(err.value)
    missing = tmp_path / "missing.gguf"
    with pytest.raises(PyllamaError, match="No such file") as err:
        GGUFFile(missing)
    assert str(missing) in str(err.value)


def test_invalid_utf8_in_metadata(tmp_path):
    cases = [
        (kv("s", gb.STRING, b"ok\xff"), r"key 's' is not valid UTF-8"),
        (kv_array("tokens", gb.STRING, [b"a", b"\xc3"]), r"element 1 of key 'tokens' is not valid UTF-8"),
        (kv(b"bad\xfekey", gb.UINT8, 1), r"name of key-value 6 is not valid UTF-8"),
    ]
    for item, pattern in cases:
        path = tmp_path / "utf8.gguf"
        path.write_bytes(build(_kvs_plus(item)))
        f = GGUFFile(path)  # the C++ reader keeps raw bytes; the Python view insists on UTF-8
        with pytest.raises(PyllamaError, match=pattern):
            f.metadata


# --- truncation and mutation --------------------------------------------------------------

@pytest.fixture
def small_model(tmp_path) -> bytes:
    path = tmp_path / "small.gguf"
    gb.write_small_model(path)
    return path.read_bytes()


def test_every_truncation_is_rejected(tmp_path, small_model):
    full = tmp_path / "full.gguf"
    full.write_bytes(small_model)
    f = GGUFFile(full)
    last = f.tensors[-1]
    assert f.data_offset + last.offset + last.nbytes == len(small_model)  # no trailing padding

    path = tmp_path / "prefix.gguf"
    for n in range(len(small_model)):
        path.write_bytes(small_model[:n])
        with pytest.raises(PyllamaError):
            GGUFFile(path)


INTERESTING = [0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 31, 33, 63, 64, 255, 2**31, 2**32 - 1, 2**32,
               2**62, 2**63 - 1, 2**63, 2**64 - 32, 2**64 - 1]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:  # a few random bytes
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 1:  # one bit
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    else:  # a boundary value written over a 4- or 8-byte field-sized span
        width = 8 if kind == 2 else 4
        i = rng.randrange(len(b) - width)
        v = rng.choice(INTERESTING) % (2 ** (8 * width))
        b[i:i + width] = v.to_bytes(width, "little")
    return bytes(b)


def test_mutated_files_load_or_raise(tmp_path, small_model):
    rng = random.Random(20240531)
    path = tmp_path / "mutant.gguf"
    loaded = 0
    for _ in range(3000):
        data = _mutate(rng, small_model)
        if rng.random() < 0.25:  # sometimes two faults at once
            data = _mutate(rng, data)
        path.write_bytes(data)
        try:
            f = GGUFFile(path)
        except PyllamaError:
            continue
        loaded += 1
        assert f.file_size == len(data)
        for t in f.tensors:
            start = f.data_offset + t.offset
            assert start + t.nbytes <= len(data), t.name
            view = f.tensor_data(t.name)
            assert view.nbytes == t.nbytes and view.tobytes() == data[start:start + t.nbytes]
        try:
            f.metadata
        except PyllamaError as e:  # a mutated string may no longer be UTF-8
            assert "UTF-8" in str(e)
    assert loaded > 0  # mutations of tensor data and values keep a file valid
