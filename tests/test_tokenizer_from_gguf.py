"""Tokenizer.from_gguf reads the vocabulary with the core's GGUF reader, from model files and from
vocabulary-only files alike, and gives llama.cpp's ids."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import pyllama
from gguf_bytes import write_gguf

GOLDEN = Path(__file__).parent / "data" / "tokenizer_golden"


def _golden_cases(name):
    return json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))["cases"]


def _check_against_golden(tok, name):
    for case in _golden_cases(name):
        # "bos" in the golden modes is llama.cpp's add_special: BOS as the vocabulary says (None)
        assert tok.encode(case["text"], add_bos=None, special=True) == case["ids"]["bos+special"], case["text"]
        assert tok.encode(case["text"], add_bos=False, special=False) == case["ids"]["plain"], case["text"]


def test_from_gguf_on_the_demo_model(demo_model):
    _check_against_golden(pyllama.Tokenizer.from_gguf(demo_model), "smollm")


def test_from_gguf_on_a_sentencepiece_model(golden_dir):
    _check_against_golden(pyllama.Tokenizer.from_gguf(golden_dir / "tiny-llama-256.F16.gguf"), "tiny-llama-spm")


def test_from_gguf_on_a_vocabulary_only_file(demo_model, tmp_path):
    md = pyllama._core.GGUFFile(str(demo_model)).metadata

    def fill(w):
        w.add_tokenizer_model(md["tokenizer.ggml.model"])
        w.add_tokenizer_pre(md["tokenizer.ggml.pre"])
        w.add_token_list(md["tokenizer.ggml.tokens"])
        w.add_token_types(md["tokenizer.ggml.token_type"].tolist())
        w.add_token_merges(md["tokenizer.ggml.merges"])
        w.add_bos_token_id(md["tokenizer.ggml.bos_token_id"])
        w.add_eos_token_id(md["tokenizer.ggml.eos_token_id"])
        w.add_add_bos_token(md["tokenizer.ggml.add_bos_token"])
    path = write_gguf(tmp_path / "vocab-only.gguf", "llama", fill)
    assert pyllama._core.GGUFFile(str(path)).tensors == []
    _check_against_golden(pyllama.Tokenizer.from_gguf(path), "smollm")


def test_from_gguf_of_a_file_without_vocabulary_names_the_missing_key(tmp_path):
    path = write_gguf(tmp_path / "empty.gguf", "llama")
    with pytest.raises(pyllama.PyllamaError, match="tokenizer.ggml"):
        pyllama.Tokenizer.from_gguf(path)
