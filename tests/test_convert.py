"""pyllama.convert on tiny checkpoints written with PyTorch in Meta's and Hugging Face's layouts:
the converted model computes the logits of each format's own modeling code, the float types
round as llama.cpp's converter does, and the vocabularies tokenize as the original tokenizers."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import sentencepiece
import torch
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader
from gguf.quants import quantize as gguf_quantize
from tokenizers import Tokenizer as HFTokenizer

import pyllama
from pyllama.cli import main as cli_main
from checkpoints import (SPM_MODEL, TinyConfig, hf_permute, hf_rope, meta_rope, random_weights,
                         reference_logits, write_hf, write_meta)
from golden import TINY_F16
from hf_tokenizer_files import gguf_vocab, write_smollm_tokenizer
from test_forward import F32_ATOL

TEXTS = ["The height of Mount Fuji is", "  two  spaces, then\nnew lines\n\n", "Ünïcödé — 日本語 🦙 x=3.14",
         "<s> looks special </s>", ""]


def tokens_for(cfg: TinyConfig, n: int = 24) -> list:
    return [1] + np.random.default_rng(cfg.seed).integers(3, cfg.n_vocab, n - 1).tolist()


def converted_logits(path, tokens) -> np.ndarray:
    return pyllama.Model(path, kv_cache_type="f32").logits(tokens)


def tensors_of(path) -> dict:
    """GGUF tensor name -> (ggml type, numpy shape, raw bytes)."""
    return {t.name: (t.tensor_type, tuple(int(n) for n in reversed(t.shape)), bytes(t.data))
            for t in GGUFReader(str(path)).tensors}


def metadata_of(path) -> dict:
    r = GGUFReader(str(path))
    return {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}


# --- logits against each format's own forward pass -------------------------------------------------
def test_meta_two_shards_logits_match_meta_reference(tmp_path):
    cfg = TinyConfig(seed=1)
    weights = random_weights(cfg)
    src = write_meta(tmp_path / "llama-meta", cfg, weights, n_shards=2)
    summary = pyllama.convert(src, tmp_path / "m.gguf", type="F32", progress=False)
    assert summary.source_format == "meta" and summary.type == "F32"
    tokens = tokens_for(cfg)
    expected = reference_logits(weights, cfg, tokens, meta_rope)
    np.testing.assert_allclose(converted_logits(tmp_path / "m.gguf", tokens), expected, rtol=0, atol=F32_ATOL)


HF_VARIANTS = {
    "grouped_query": TinyConfig(seed=2),
    "multi_head": TinyConfig(n_head_kv=4, seed=3),
    "tied_embeddings": TinyConfig(tied=True, seed=4),
    "linear_rope_scaling_and_theta": TinyConfig(rope_linear=4.0, rope_theta=500.0, rms_eps=1e-6, seed=5),
    # A short original context puts this head size's frequencies in all three bands (kept,
    # blended, divided by the factor) at the test's positions.
    "llama3_rope_scaling": TinyConfig(rope_llama3=(8.0, 1.0, 4.0, 64), seed=17),
}


# Each variant in one safetensors file, and the other weight layouts once each.
HF_CASES = [(v, "safetensors") for v in HF_VARIANTS] + [("grouped_query", "sharded"), ("grouped_query", "bin")]


@pytest.mark.parametrize("variant,layout", HF_CASES)
def test_hf_logits_match_hf_reference(tmp_path, variant, layout):
    cfg = HF_VARIANTS[variant]
    weights = random_weights(cfg)
    src = write_hf(tmp_path / "hf", cfg, weights, layout)
    summary = pyllama.convert(src, tmp_path / "h.gguf", type="F32", progress=False)
    assert summary.source_format == "hf"
    tokens = tokens_for(cfg)
    expected = reference_logits(weights, cfg, tokens, hf_rope)
    np.testing.assert_allclose(converted_logits(tmp_path / "h.gguf", tokens), expected, rtol=0, atol=F32_ATOL)


def test_meta_and_hf_layouts_of_the_same_weights_convert_identically(tmp_path):
    """Hugging Face's release of Meta weights permutes q and k; converting both gives one file."""
    cfg = TinyConfig(seed=6)
    meta = random_weights(cfg)
    hf = dict(meta)
    for i in range(cfg.n_layer):
        hf[f"L{i}.q"] = hf_permute(meta[f"L{i}.q"], cfg.n_head)
        hf[f"L{i}.k"] = hf_permute(meta[f"L{i}.k"], cfg.n_head_kv)
    pyllama.convert(write_meta(tmp_path / "meta", cfg, meta), tmp_path / "meta.gguf", type="F32", progress=False)
    pyllama.convert(write_hf(tmp_path / "hf", cfg, hf), tmp_path / "hf.gguf", type="F32", progress=False)
    assert tensors_of(tmp_path / "meta.gguf") == tensors_of(tmp_path / "hf.gguf")


# --- float types ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bf16_checkpoint(tmp_path_factory):
    cfg = TinyConfig(dtype=torch.bfloat16, seed=7)
    weights = random_weights(cfg)
    weights["L0.q"][0, :4] = torch.tensor([70000.0, -1e-7, float("inf"), float("nan")])  # F16 edge cases
    return write_hf(tmp_path_factory.mktemp("bf16") / "hf", cfg, weights), cfg, weights


def _gguf_order(w: torch.Tensor, name: str, cfg: TinyConfig) -> torch.Tensor:
    """A Hugging Face tensor in GGUF row order (q/k un-permuted: the inverse of hf_permute)."""
    heads = cfg.n_head if name == "q" else cfg.n_head_kv if name == "k" else 0
    if not heads:
        return w
    return w.reshape(heads, 2, -1, w.shape[1]).transpose(1, 2).reshape(w.shape)


@pytest.mark.parametrize("out_type", ["F32", "F16", "BF16"])
def test_float_types_round_as_llama_cpp(tmp_path, bf16_checkpoint, out_type):
    src, cfg, weights = bf16_checkpoint
    pyllama.convert(src, tmp_path / "t.gguf", type=out_type, progress=False)
    got = tensors_of(tmp_path / "t.gguf")
    md = metadata_of(tmp_path / "t.gguf")
    assert md["general.file_type"] == {"F32": 0, "F16": 1, "BF16": 32}[out_type]
    ggml = {"F32": Q.F32, "F16": Q.F16, "BF16": Q.BF16}[out_type]
    for role, name in (("L0.q", "blk.0.attn_q.weight"), ("L1.k", "blk.1.attn_k.weight"),
                       ("embed", "token_embd.weight"), ("L0.attn_norm", "blk.0.attn_norm.weight")):
        values = _gguf_order(weights[role], role.split(".")[-1], cfg)
        f32 = values.to(torch.float32).numpy()
        if values.dim() == 1:  # norms stay F32
            assert got[name][0] == Q.F32 and got[name][2] == f32.tobytes()
            continue
        assert got[name][0] == ggml and got[name][1] == tuple(values.shape)
        # llama.cpp: BF16 widened to F32 exactly, then numpy's F16 rounding or gguf's BF16 rounding.
        with np.errstate(over="ignore"):  # 70000 becomes inf in F16, as in llama.cpp
            expected = {"F32": f32, "F16": f32.astype(np.float16), "BF16": gguf_quantize(f32, Q.BF16)}[out_type]
        assert got[name][2] == expected.tobytes(), name


def test_bf16_checkpoint_to_f32_logits_match_reference(tmp_path):
    cfg = TinyConfig(dtype=torch.bfloat16, seed=8)
    weights = random_weights(cfg)
    pyllama.convert(write_hf(tmp_path / "hf", cfg, weights), tmp_path / "t.gguf", type="F32", progress=False)
    tokens = tokens_for(cfg)
    expected = reference_logits(weights, cfg, tokens, hf_rope)
    np.testing.assert_allclose(converted_logits(tmp_path / "t.gguf", tokens), expected, rtol=0, atol=F32_ATOL)


def test_general_and_llama_metadata(tmp_path):
    cfg = TinyConfig(rope_linear=2.0, seed=9)
    src = write_hf(tmp_path / "my-model", cfg, random_weights(cfg))
    pyllama.convert(src, tmp_path / "t.gguf", type="F16", progress=False)
    md = metadata_of(tmp_path / "t.gguf")
    expected = {"general.architecture": "llama", "general.type": "model", "general.name": "my-model",
                "general.quantization_version": 2, "llama.vocab_size": 32000, "llama.context_length": 256,
                "llama.embedding_length": 64, "llama.block_count": 2, "llama.feed_forward_length": 96,
                "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2,
                "llama.rope.dimension_count": 16, "llama.attention.key_length": 16,
                "llama.attention.value_length": 16, "llama.rope.freq_base": 10000.0,
                "llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": 2.0}
    assert {k: md[k] for k in expected} == expected
    assert md["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)


# --- vocabularies ---------------------------------------------------------------------------------
def _same_ids_as_sentencepiece(gguf_path) -> None:
    sp = sentencepiece.SentencePieceProcessor(model_file=str(SPM_MODEL))
    tok = pyllama.Tokenizer.from_gguf(gguf_path)
    for text in TEXTS:
        assert tok.encode(text, add_bos=False) == sp.encode(text), text


def test_meta_sentencepiece_vocab(tmp_path, golden_dir):
    """Same pieces, scores and types as the golden llama.cpp file made from this tokenizer.model;
    the tokenizer.model may also sit in the parent folder (Meta's download layout)."""
    cfg = TinyConfig(seed=10)
    src = write_meta(tmp_path / "llama-2-tiny", cfg, random_weights(cfg), n_shards=1, tokenizer=False)
    shutil.copy(SPM_MODEL, tmp_path / "tokenizer.model")
    pyllama.convert(src, tmp_path / "t.gguf", type="F16", progress=False)
    ours, golden = gguf_vocab(tmp_path / "t.gguf"), gguf_vocab(golden_dir / TINY_F16.model_file)
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.unknown_token_id"):
        assert ours[key] == golden[key], key
    _same_ids_as_sentencepiece(tmp_path / "t.gguf")


def test_hf_sentencepiece_vocab_with_tokenizer_config(tmp_path):
    cfg = TinyConfig(seed=11)
    src = write_hf(tmp_path / "hf", cfg, random_weights(cfg))
    config = json.loads((src / "tokenizer_config.json").read_text())
    config["added_tokens_decoder"] = {"0": {"content": "<unk>", "special": True},
                                      "31999": {"content": "<|im_end|>", "special": False}}
    (src / "tokenizer_config.json").write_text(json.dumps(config))
    pyllama.convert(src, tmp_path / "t.gguf", type="F16", progress=False)
    md = metadata_of(tmp_path / "t.gguf")
    assert md["tokenizer.ggml.add_bos_token"] is True and md["tokenizer.ggml.add_eos_token"] is False
    assert md["tokenizer.chat_template"] == config["chat_template"]
    assert (md["tokenizer.ggml.bos_token_id"], md["tokenizer.ggml.eos_token_id"]) == (1, 2)
    # llama.cpp's rules for added tokens: score -1000; control when special or special-looking.
    assert md["tokenizer.ggml.token_type"][0] == 3 and md["tokenizer.ggml.scores"][0] == -1000.0
    assert md["tokenizer.ggml.tokens"][31999] == "<|im_end|>" and md["tokenizer.ggml.token_type"][31999] == 3
    assert pyllama.Tokenizer.from_gguf(tmp_path / "t.gguf").encode("a<|im_end|>", special=True)[-1] == 31999


def test_explicit_tokenizer_model_and_vocab_padding(tmp_path):
    """A model with more embeddings than pieces gets llama.cpp's unused [PAD<id>] tokens."""
    cfg = TinyConfig(n_vocab=32016, seed=12)
    src = write_hf(tmp_path / "hf", cfg, random_weights(cfg), tokenizer=False)
    pyllama.convert(src, tmp_path / "t.gguf", type="F16", tokenizer_model=SPM_MODEL, progress=False)
    md = metadata_of(tmp_path / "t.gguf")
    assert md["tokenizer.ggml.tokens"][32000:32002] == ["[PAD32000]", "[PAD32001]"]
    assert md["tokenizer.ggml.token_type"][32000] == 5 and md["tokenizer.ggml.scores"][32000] == -10000.0
    assert md["tokenizer.ggml.eot_token_id"] == 32010  # llama.cpp's CodeLlama rule for 32016 tokens
    _same_ids_as_sentencepiece(tmp_path / "t.gguf")


SMOLLM = TinyConfig(n_vocab=49152, dim=16, n_head=2, n_head_kv=1, n_ff=32, seed=13)


@pytest.fixture(scope="module")
def smollm_checkpoint(tmp_path_factory, demo_model):
    """A tiny model with SmolLM2's tokenizer files, and the demo GGUF's vocabulary (llama.cpp's)."""
    folder = tmp_path_factory.mktemp("smollm") / "smollm-tiny"
    write_hf(folder, SMOLLM, random_weights(SMOLLM), tokenizer=False)
    return folder, write_smollm_tokenizer(folder, demo_model)


def test_byte_level_bpe_vocab_as_llama_cpp_writes_it(tmp_path, smollm_checkpoint):
    src, demo = smollm_checkpoint
    pyllama.convert(src, tmp_path / "t.gguf", type="F16", progress=False)
    ours = gguf_vocab(tmp_path / "t.gguf")
    assert ours["tokenizer.ggml.pre"] == "smollm"  # identified by llama.cpp's check hash
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token",
                "tokenizer.ggml.add_space_prefix", "tokenizer.chat_template"):
        assert ours[key] == demo[key], key
    hf = HFTokenizer.from_file(str(src / "tokenizer.json"))
    tok = pyllama.Tokenizer.from_gguf(tmp_path / "t.gguf")
    for text in TEXTS + ["<|im_start|>user\nHi 12345<|im_end|>"]:
        assert tok.encode(text, special=True) == hf.encode(text).ids, text


def test_unrecognised_bpe_pre_tokenizer_is_refused(tmp_path, smollm_checkpoint):
    src = tmp_path / "variant"
    shutil.copytree(smollm_checkpoint[0], src)
    data = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    data["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = True  # " " before the text
    (src / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(pyllama.PyllamaError, match="unrecognised byte-level BPE pre-tokenizer"):
        pyllama.convert(src, tmp_path / "t.gguf", type="F16", progress=False)
    assert not (tmp_path / "t.gguf").exists()


# --- quantized output, API and command line --------------------------------------------------------
def test_quantized_type_is_the_quantized_float_conversion(tmp_path):
    """type="Q4_K_M" = pyllama.quantize of the F32 conversion of an F32 checkpoint; no temporary
    file is left behind."""
    cfg = TinyConfig(dim=256, n_head=4, n_head_kv=2, n_ff=256, seed=14)
    src = write_hf(tmp_path / "hf", cfg, random_weights(cfg))
    out = tmp_path / "out"
    out.mkdir()
    pyllama.convert(src, out / "direct.gguf", type="Q4_K_M", progress=False)
    assert os.listdir(out) == ["direct.gguf"]
    pyllama.convert(src, tmp_path / "f32.gguf", type="F32", progress=False)
    pyllama.quantize(tmp_path / "f32.gguf", tmp_path / "q.gguf", "Q4_K_M")
    assert (out / "direct.gguf").read_bytes() == (tmp_path / "q.gguf").read_bytes()
    pyllama.Model(out / "direct.gguf").logits([1, 2, 3])


@pytest.mark.parametrize("dtype,intermediate_type", [(torch.float16, 1), (torch.bfloat16, 0)])
def test_quantized_type_goes_through_a_temporary_float_file(tmp_path, monkeypatch, dtype, intermediate_type):
    """pyllama.quantize gets an F16 file from an F16 checkpoint, else F32 (BF16 fits exactly), beside
    the destination, and writes a temporary that becomes the destination; nothing else is left."""
    calls = []

    def fake_quantize(src, dst, type, *, n_threads=None, force=False, progress=False):
        calls.append((metadata_of(src)["general.file_type"], os.path.dirname(src), type, n_threads, force))
        with open(dst, "wb") as f:
            f.write(b"quantized")

    monkeypatch.setattr(pyllama, "quantize", fake_quantize, raising=False)
    cfg = TinyConfig(dtype=dtype, seed=16)
    src = write_hf(tmp_path / "hf", cfg, random_weights(cfg))
    out = tmp_path / "out"
    out.mkdir()
    summary = pyllama.convert(src, out / "q.gguf", type="q8_0", n_threads=2, progress=False)
    assert calls == [(intermediate_type, str(out), "Q8_0", 2, True)]
    assert os.listdir(out) == ["q.gguf"] and (out / "q.gguf").read_bytes() == b"quantized"
    assert summary.type == "Q8_0" and summary.output_bytes == len(b"quantized")


def test_cli_convert(tmp_path, capsys):
    cfg = TinyConfig(seed=15)
    src = write_hf(tmp_path / "hf", cfg, random_weights(cfg))
    dst = tmp_path / "cli.gguf"
    assert cli_main(["convert", str(src), str(dst), "--type", "f16"]) == 0
    assert str(dst) in capsys.readouterr().out and metadata_of(dst)["general.file_type"] == 1
    assert cli_main(["convert", str(src), str(dst), "--type", "F32"]) == 1
    assert "exists" in capsys.readouterr().err and metadata_of(dst)["general.file_type"] == 1
    assert cli_main(["convert", str(src), str(dst), "--type", "F32", "--force"]) == 0
    assert metadata_of(dst)["general.file_type"] == 0
