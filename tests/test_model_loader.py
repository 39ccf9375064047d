"""The model loader names what is wrong with a GGUF that is valid as a file but not as a model."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGUFValueType
from gguf.gguf_writer import GGUFValue

import pyllama
from gguf_bytes import write_gguf
from synthetic import SyntheticConfig, write_synthetic_model

CFG = SyntheticConfig(n_head=4, n_head_kv=2)


def _set(key, value, vtype):
    def edit(metadata, weights):
        metadata[key] = GGUFValue(value, vtype)
    return edit


def _drop_key(key):
    def edit(metadata, weights):
        del metadata[key]
    return edit


def _drop_tensor(name):
    def edit(metadata, weights):
        del weights[name]
    return edit


def _reshape_tensor(name, shape):
    def edit(metadata, weights):
        weights[name] = np.zeros(shape, dtype=np.float32)
    return edit


BROKEN = {
    "architecture": (_set("general.architecture", "mamba", GGUFValueType.STRING), "mamba"),
    "missing hyper-parameter": (_drop_key("llama.embedding_length"), "llama.embedding_length"),
    "head count not a multiple": (_set("llama.attention.head_count_kv", 3, GGUFValueType.UINT32),
                                  "head_count_kv"),
    "zero heads": (_set("llama.attention.head_count", 0, GGUFValueType.UINT32), "positive"),
    "hyper-parameter of wrong type": (_set("llama.block_count", "two", GGUFValueType.STRING),
                                      "llama.block_count"),
    "odd rope dimensions": (_set("llama.rope.dimension_count", 7, GGUFValueType.UINT32),
                            "llama.rope.dimension_count"),
    "unsupported rope scaling": (_set("llama.rope.scaling.type", "yarn", GGUFValueType.STRING), "yarn"),
    "experts": (_set("llama.expert_count", 8, GGUFValueType.UINT32), "expert"),
    "vocab size disagrees": (_set("llama.vocab_size", 999, GGUFValueType.UINT32), "llama.vocab_size"),
    "more layers than tensors": (_set("llama.block_count", 3, GGUFValueType.UINT32), "blk.2."),
    "missing tensor": (_drop_tensor("blk.1.ffn_up.weight"), "blk.1.ffn_up.weight"),
    "missing output norm": (_drop_tensor("output_norm.weight"), "output_norm.weight"),
    "wrong shape": (_reshape_tensor("blk.0.attn_k.weight", (64, 64)), "blk.0.attn_k.weight"),
    "wrong norm length": (_reshape_tensor("blk.0.attn_norm.weight", (32,)), "expected [64]"),
    "embedding dims swapped": (_reshape_tensor("token_embd.weight", (64, 320)), "token_embd.weight"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_model_raises_naming_the_problem(case, tmp_path):
    edit, expected = BROKEN[case]
    path = write_synthetic_model(tmp_path / "broken.gguf", CFG, edit=edit)
    with pytest.raises(pyllama.PyllamaError, match=expected.replace(".", r"\.").replace("[", r"\[")):
        pyllama.Model(path)


def test_tensor_type_without_kernels_is_named(tmp_path):
    def edit(metadata, weights):  # store one matrix as I8, a type pyllama cannot compute
        weights["blk.0.attn_q.weight"] = np.zeros((64, 64), dtype=np.int8)
    path = write_synthetic_model(tmp_path / "i8.gguf", CFG, edit=edit)
    with pytest.raises(pyllama.PyllamaError, match="blk.0.attn_q.weight.*I8"):
        pyllama.Model(path)


def test_vocabulary_only_file_is_not_a_model(tmp_path):
    path = write_gguf(tmp_path / "vocab.gguf", "llama", lambda w: w.add_context_length(64))
    with pytest.raises(pyllama.PyllamaError, match="missing"):
        pyllama.Model(path)


def test_valid_synthetic_model_loads(tmp_path):
    model = pyllama.Model(write_synthetic_model(tmp_path / "ok.gguf", CFG))
    assert model.n_vocab == CFG.n_vocab and model.n_ctx == CFG.context_length
    assert model.metadata["general.architecture"] == "llama"
