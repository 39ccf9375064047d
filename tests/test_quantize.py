"""pyllama.quantize and `pyllama quantize`: llama.cpp's Q4_K_M golden file reproduced byte for
byte, metadata kept, already-quantized sources, quantized models that still run, and bad input
that leaves nothing behind."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import gguf
import numpy as np
import pytest

import pyllama
from pyllama import PyllamaError, _core
from pyllama import _quantize
from pyllama.cli import build_parser, main
from golden import TINY_Q4_K_M, assert_matches_golden, load_golden
from quant_blocks import T, tensor_bytes
from synthetic import SyntheticConfig, write_synthetic_model

F16_MODEL = "tiny-llama-256.F16.gguf"
Q4_K_M_MODEL = "tiny-llama-256.Q4_K_M.gguf"


def reader_types(path: Path) -> dict:
    return {t.name: t.tensor_type for t in gguf.GGUFReader(path).tensors}


def write_gguf(path: Path, arch: str, tensors: dict, alignment: int = 32, extra: Optional[dict] = None) -> Path:
    """A minimal model file: a few hyper-parameters, `extra` key-values and raw tensors
    {name: (type, array)}."""
    w = gguf.GGUFWriter(str(path), arch)
    if alignment != 32:
        w.add_custom_alignment(alignment)
    for key, value in (extra or {}).items():
        if isinstance(value, list):
            w.add_array(key, value)
        else:
            w.add_bool(key, value)
    w.add_block_count(1)
    w.add_head_count(4)
    for name, (qtype, data) in tensors.items():
        w.add_tensor(name, data, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def assert_same_file(ours: Path, ref: Path) -> None:
    """Byte-identical, or a message naming the first tensor or metadata field that differs."""
    a, b = ours.read_bytes(), ref.read_bytes()
    if a == b:
        return
    ra, rb = gguf.GGUFReader(ours), gguf.GGUFReader(ref)
    assert list(ra.fields) == list(rb.fields), "metadata keys differ"
    for ta, tb in zip(ra.tensors, rb.tensors):
        assert (ta.name, ta.tensor_type) == (tb.name, tb.tensor_type), "tensor order or types differ"
        assert np.array_equal(tensor_bytes(ta), tensor_bytes(tb)), f"tensor {ta.name} differs"
    first = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y) if len(a) == len(b) else min(len(a), len(b))
    pytest.fail(f"files differ (sizes {len(a)} and {len(b)}) from byte {first}")


@pytest.fixture(scope="module")
def tiny_q4_k_m(golden_dir, tmp_path_factory) -> Path:
    """The golden F16 model quantized by pyllama to Q4_K_M."""
    out = tmp_path_factory.mktemp("quant") / "tiny.Q4_K_M.gguf"
    assert pyllama.quantize(golden_dir / F16_MODEL, out, n_threads=2) == out
    return out


def test_golden_q4_k_m_reproduced_byte_for_byte(tiny_q4_k_m, golden_dir):
    # llama-quantize's output: same per-tensor types, bytes, tensor order, metadata and layout.
    assert_same_file(tiny_q4_k_m, golden_dir / Q4_K_M_MODEL)


def test_single_thread_and_small_slabs_give_the_same_file(golden_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(_quantize, "SLAB_ELEMENTS", 3000)  # many slabs per tensor, partial last ones
    out = pyllama.quantize(golden_dir / F16_MODEL, tmp_path / "q.gguf", "Q4_K_M", n_threads=1)
    assert_same_file(out, golden_dir / Q4_K_M_MODEL)


def test_metadata_copied_with_new_file_type(tiny_q4_k_m, golden_dir):
    src, out = _core.GGUFFile(golden_dir / F16_MODEL), _core.GGUFFile(tiny_q4_k_m)
    src_meta, out_meta = src.metadata, out.metadata
    # llama.cpp sets these two last, in this order, whatever the source had
    assert list(out_meta) == [k for k in src_meta if k != "general.file_type"] + [
        "general.quantization_version", "general.file_type"]
    assert out_meta["general.file_type"] == 15 and out_meta["general.quantization_version"] == 2
    for key, value in src_meta.items():
        if key != "general.file_type":
            assert np.array_equal(out_meta[key], value) if isinstance(value, np.ndarray) else out_meta[key] == value


def test_quantized_model_matches_llama_cpp_and_stays_close_to_f16(tiny_q4_k_m, golden_dir):
    golden = load_golden(TINY_Q4_K_M, golden_dir)
    quantized = pyllama.Model(str(tiny_q4_k_m), n_ctx=32)
    logits = quantized.logits(golden.prompt_tokens).astype(np.float64)
    assert_matches_golden(logits, golden.prompt_logits, TINY_Q4_K_M)
    # Against the F16 model: llama.cpp's own F16 and Q4_K_M logits for this prompt differ by up
    # to 0.51 (rms 0.10, per-position correlation >= 0.993); allow 1.5x that.
    f16 = pyllama.Model(str(golden_dir / F16_MODEL), n_ctx=32).logits(golden.prompt_tokens).astype(np.float64)
    diff = np.abs(logits - f16)
    assert diff.max() < 0.8 and np.sqrt(np.mean(diff ** 2)) < 0.15
    assert min(np.corrcoef(a, b)[0, 1] for a, b in zip(logits, f16)) > 0.99
    chunks = list(quantized.generate(golden.prompt_tokens, max_tokens=4, temperature=0.0))
    assert sum(len(c.token_ids) for c in chunks) == 4


def test_requantizing_to_the_same_type_copies_the_file(tiny_q4_k_m, tmp_path):
    # Every tensor already has its target type, and the two keys llama.cpp sets are already last.
    out = pyllama.quantize(tiny_q4_k_m, tmp_path / "again.gguf", "q4_k_m")
    assert out.read_bytes() == tiny_q4_k_m.read_bytes()


def test_requantizing_a_quantized_file(golden_dir, tmp_path):
    src = golden_dir / Q4_K_M_MODEL
    out = pyllama.quantize(src, tmp_path / "q8.gguf", "Q8_0", n_threads=2)
    source = _core.GGUFFile(src)
    meta = _core.GGUFFile(out).metadata
    assert meta["general.file_type"] == 7
    assert meta["tokenizer.ggml.tokens"] == source.metadata["tokenizer.ggml.tokens"]
    types = reader_types(out)
    assert {types[n] for n in types if "norm" not in n} == {T.Q8_0}
    # each tensor is the source's dequantized values, quantized again
    for t in gguf.GGUFReader(out).tensors:
        if "norm" in t.name:
            continue
        info = source.find_tensor(t.name)
        floats = _core.dequantize(info.type, source.tensor_data(t.name), info.n_elements)
        expected = _core.quantize(int(T.Q8_0), floats.reshape(-1, info.shape[0]))
        assert np.array_equal(tensor_bytes(t), expected.reshape(-1)), t.name
    # and it still runs, close to llama.cpp's Q4_K_M logits it came from
    golden = load_golden(TINY_Q4_K_M, golden_dir)
    logits = pyllama.Model(str(out), n_ctx=32).logits(golden.prompt_tokens)
    assert_matches_golden(logits, golden.prompt_logits, TINY_Q4_K_M)


def test_demo_model_requantized_still_answers(demo_model, tmp_path):
    # Q4_1/Q8_0 weights with 576-element rows (not whole 256-blocks) to Q8_0; metadata including
    # the BPE merges survives, and the model still answers the golden question.
    out = pyllama.quantize(demo_model, tmp_path / "demo.Q8_0.gguf", "Q8_0", n_threads=2)
    src_meta, out_meta = _core.GGUFFile(demo_model).metadata, _core.GGUFFile(out).metadata
    assert out_meta["tokenizer.ggml.merges"] == src_meta["tokenizer.ggml.merges"]
    assert out_meta["general.file_type"] == 7
    model = pyllama.Model(str(out), n_ctx=64)
    prompt = ("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    text = "".join(c.text for c in model.generate(model.tokenize(prompt, special=True), max_tokens=12,
                                                   temperature=0.0))
    assert "Paris" in text


@pytest.mark.parametrize("file_type", ["F16", "BF16", "F32", "Q4_0", "Q5_K_M", "Q6_K"])
def test_other_file_types(file_type, tmp_path):
    cfg = SyntheticConfig(n_vocab=320, n_embd=256, n_layer=2, n_head=4, n_ff=512, weight_type=T.F16)
    src = write_synthetic_model(tmp_path / "src.gguf", cfg)
    out = pyllama.quantize(src, tmp_path / "out.gguf", file_type, n_threads=1)
    types = reader_types(out)
    assert types["blk.0.attn_norm.weight"] == T.F32
    default = {"F16": T.F16, "BF16": T.BF16, "F32": T.F32, "Q4_0": T.Q4_0, "Q5_K_M": T.Q5_K, "Q6_K": T.Q6_K}[file_type]
    assert types["blk.1.attn_q.weight"] == default
    assert _core.GGUFFile(out).metadata["general.file_type"] == _quantize.FILE_TYPES[file_type][0]
    pyllama.Model(str(out), n_ctx=16).logits([1, 5, 9])  # loads and runs


def test_custom_alignment_is_kept(tmp_path):
    # llama.cpp keeps general.alignment but always pads to 32 (a broken file for other values);
    # pyllama lays the output out with the alignment it declares.
    rng = np.random.default_rng(0)
    tensors = {"token_embd.weight": (T.F16, rng.standard_normal((10, 256)).astype(np.float16)),
               "blk.0.attn_norm.weight": (T.F32, np.ones(256, np.float32)),
               "blk.0.attn_q.weight": (T.F16, rng.standard_normal((3, 256)).astype(np.float16))}
    src = write_gguf(tmp_path / "src.gguf", "llama", tensors, alignment=64)
    assert _core.GGUFFile(src).alignment == 64
    out = _core.GGUFFile(pyllama.quantize(src, tmp_path / "out.gguf", "Q4_K_M"))
    assert out.alignment == 64 and out.data_offset % 64 == 0
    assert [(t.name, t.type_name, t.offset % 64) for t in out.tensors] == [
        ("token_embd.weight", "Q6_K", 0), ("blk.0.attn_norm.weight", "F32", 0), ("blk.0.attn_q.weight", "Q4_K", 0)]


def test_bool_values_are_written_as_llama_cpp_reads_them(tmp_path):
    # llama.cpp reads a BOOL byte as "non-zero" and writes 0 or 1; every other entry is copied.
    tensors = {"blk.0.attn_q.weight": (T.F16, np.ones((2, 256), np.float16))}
    src = write_gguf(tmp_path / "src.gguf", "llama", tensors, extra={"test.flag": True, "test.flags": [True, False, True]})
    raw = bytearray(src.read_bytes())
    flag_at = raw.index(b"test.flag\x07\x00\x00\x00") + len("test.flag") + 4
    flags_at = raw.index(b"test.flags\x09\x00\x00\x00\x07\x00\x00\x00\x03" + bytes(7)) + len("test.flags") + 16
    raw[flag_at] = 0x02
    raw[flags_at:flags_at + 3] = b"\x05\x00\xff"
    src.write_bytes(bytes(raw))
    out = pyllama.quantize(src, tmp_path / "out.gguf", "Q8_0").read_bytes()
    assert b"test.flag\x07\x00\x00\x00\x01" in out
    assert b"test.flags\x09\x00\x00\x00\x07\x00\x00\x00\x03" + bytes(7) + b"\x01\x00\x01" in out


# ---- errors ----

def test_unknown_type_lists_valid_ones(golden_dir, tmp_path):
    with pytest.raises(ValueError, match="Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, BF16") as e:
        pyllama.quantize(golden_dir / F16_MODEL, tmp_path / "x.gguf", "Q3_K_M")
    assert not isinstance(e.value, PyllamaError)
    assert not (tmp_path / "x.gguf").exists()


def test_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError):
        pyllama.quantize(tmp_path / "missing.gguf", tmp_path / "x.gguf")
    with pytest.raises(FileNotFoundError):
        pyllama.quantize(tmp_path, tmp_path / "x.gguf")  # a folder is not a model


def test_existing_destination_needs_force(golden_dir, tmp_path):
    dst = tmp_path / "taken.gguf"
    dst.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        pyllama.quantize(golden_dir / F16_MODEL, dst, "Q8_0")
    assert dst.read_bytes() == b"keep me"
    pyllama.quantize(golden_dir / F16_MODEL, dst, "Q8_0", force=True)
    assert _core.GGUFFile(dst).metadata["general.file_type"] == 7


def test_bad_thread_count(golden_dir, tmp_path):
    with pytest.raises(ValueError, match="n_threads"):
        pyllama.quantize(golden_dir / F16_MODEL, tmp_path / "x.gguf", n_threads=0)


def temp_files(folder: Path) -> list:
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize("force", [False, True])
def test_failure_midway_leaves_no_file(golden_dir, tmp_path, monkeypatch, force):
    dst = tmp_path / "out.gguf"
    if force:
        dst.write_bytes(b"old")
    real = _quantize._write_tensor
    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) == 5:
            raise OSError("disk full (simulated)")
        real(*args)
    monkeypatch.setattr(_quantize, "_write_tensor", failing)
    with pytest.raises(OSError, match="simulated"):
        pyllama.quantize(golden_dir / F16_MODEL, dst, force=force)
    assert len(calls) == 5
    assert temp_files(tmp_path) == []
    assert dst.read_bytes() == b"old" if force else not dst.exists()


def test_interrupt_leaves_no_file(golden_dir, tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(_quantize, "_write_tensor", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pyllama.quantize(golden_dir / F16_MODEL, tmp_path / "out.gguf")
    assert list(tmp_path.iterdir()) == []


def test_non_finite_weights_are_refused(tmp_path):
    # llama-quantize refuses them too (ggml_validate_row_data on the quantized rows).
    def edit(metadata, weights):
        weights["blk.0.ffn_up.weight"][3, 7] = np.inf
    cfg = SyntheticConfig(n_vocab=320, n_embd=256, n_layer=1, n_head=4, n_ff=256, weight_type=T.F16)
    src = write_synthetic_model(tmp_path / "src.gguf", cfg, edit=edit)
    with pytest.raises(PyllamaError, match="blk.0.ffn_up.weight"):
        pyllama.quantize(src, tmp_path / "out.gguf", "Q4_K_M")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.gguf"]


def test_source_type_that_cannot_be_converted(tmp_path):
    # Q2_K weights pyllama cannot dequantize, to be converted to Q4_K: refused before writing.
    q2k = np.zeros((4, 84), np.uint8)  # 4 rows of one 256-element Q2_K block
    src = write_gguf(tmp_path / "src.gguf", "llama", {"blk.0.attn_q.weight": (T.Q2_K, q2k)})
    with pytest.raises(PyllamaError, match="'blk.0.attn_q.weight' is Q2_K"):
        pyllama.quantize(src, tmp_path / "out.gguf", "Q4_K_M")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.gguf"]
    # kept as is when it needs no conversion (a 1-D tensor is never quantized)
    src = write_gguf(tmp_path / "src1d.gguf", "llama", {"blk.0.attn_q.weight": (T.Q2_K, q2k.reshape(-1))})
    out = pyllama.quantize(src, tmp_path / "out1d.gguf", "Q4_K_M")
    assert reader_types(out) == {"blk.0.attn_q.weight": T.Q2_K}


def test_other_architectures_are_refused(tmp_path):
    src = write_gguf(tmp_path / "src.gguf", "gpt2", {"token_embd.weight": (T.F32, np.zeros((4, 32), np.float32))})
    with pytest.raises(PyllamaError, match="architecture 'gpt2'"):
        pyllama.quantize(src, tmp_path / "out.gguf")


# ---- command line ----

def test_cli_quantize(golden_dir, tmp_path, capsys):
    dst = tmp_path / "cli.gguf"
    assert main(["quantize", str(golden_dir / F16_MODEL), str(dst), "Q8_0", "--threads", "1"]) == 0
    out = capsys.readouterr()
    assert "100%" in out.err and "blk.3.ffn_up.weight" in out.err  # the progress bar reached the end
    assert f"{dst}: Q8_0" in out.out and " MiB from " in out.out  # the summary: type, sizes, time
    assert _core.GGUFFile(dst).metadata["general.file_type"] == 7
    assert main(["quantize", str(golden_dir / F16_MODEL), str(dst)]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["quantize", str(golden_dir / F16_MODEL), str(dst), "--force", "-t", "2"]) == 0
    assert _core.GGUFFile(dst).metadata["general.file_type"] == 15  # Q4_K_M by default
    assert main(["quantize", str(golden_dir / F16_MODEL), str(dst), "Q9_Z", "--force"]) == 1
    assert "valid types" in capsys.readouterr().err


def test_cli_generate_still_there():
    args = build_parser().parse_args(["generate", "Hello", "-n", "3"])
    assert args.prompt == "Hello" and args.max_tokens == 3
