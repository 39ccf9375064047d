"""The synthetic model writer produces the files llama.cpp's converter would, and the reference
behaves as a causal language model on them."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader, GGUFValueType, TokenType

from reference import reference_logits
from synthetic import FILE_TYPES, SyntheticConfig, write_synthetic_model


def scalar(reader, key):
    """(value type, value) of a scalar metadata entry."""
    field = reader.get_field(key)
    value = field.parts[field.data[0]]
    kind = field.types[0]
    return kind, (bytes(value).decode() if kind == GGUFValueType.STRING else value[0].item())


def array(reader, key):
    """The items of an array metadata entry."""
    field = reader.get_field(key)
    if field.types[-1] == GGUFValueType.STRING:
        return [bytes(field.parts[i]).decode() for i in field.data]
    return [field.parts[i][0].item() for i in field.data]


def test_metadata_keys_and_types_as_the_converter_writes_them(tmp_path):
    cfg = SyntheticConfig(n_head=8, n_head_kv=2, rope_freq_base=500.0, rope_scaling_factor=2.0,
                          weight_type=Q.Q8_0, context_length=96)
    reader = GGUFReader(write_synthetic_model(tmp_path / "m.gguf", cfg))
    u32, f32, string = GGUFValueType.UINT32, GGUFValueType.FLOAT32, GGUFValueType.STRING
    expected = {
        "general.architecture": (string, "llama"),
        "llama.vocab_size": (u32, cfg.n_vocab),
        "llama.context_length": (u32, 96),
        "llama.embedding_length": (u32, cfg.n_embd),
        "llama.block_count": (u32, cfg.n_layer),
        "llama.feed_forward_length": (u32, cfg.n_ff),
        "llama.rope.dimension_count": (u32, cfg.n_embd // 8),
        "llama.attention.head_count": (u32, 8),
        "llama.attention.head_count_kv": (u32, 2),
        "llama.rope.freq_base": (f32, 500.0),
        "llama.rope.scaling.type": (string, "linear"),
        "llama.rope.scaling.factor": (f32, 2.0),
        "general.file_type": (u32, 7),  # LLAMA_FTYPE_MOSTLY_Q8_0
        "tokenizer.ggml.model": (string, "llama"),
        "tokenizer.ggml.bos_token_id": (u32, 1),
        "tokenizer.ggml.eos_token_id": (u32, 2),
        "tokenizer.ggml.unknown_token_id": (u32, 0),
    }
    assert {key: scalar(reader, key) for key in expected} == expected
    kind, eps = scalar(reader, "llama.attention.layer_norm_rms_epsilon")
    assert kind == f32 and eps == pytest.approx(cfg.rms_eps)


def test_vocabulary_is_sentencepiece_shaped(tmp_path):
    reader = GGUFReader(write_synthetic_model(tmp_path / "m.gguf", SyntheticConfig(n_vocab=400)))
    tokens = array(reader, "tokenizer.ggml.tokens")
    types = array(reader, "tokenizer.ggml.token_type")
    scores = array(reader, "tokenizer.ggml.scores")
    assert len(tokens) == len(types) == len(scores) == 400 == len(set(tokens))
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert types[:3] == [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    assert tokens[3:259] == [f"<0x{b:02X}>" for b in range(256)]
    assert set(types[3:259]) == {TokenType.BYTE}
    assert set(types[259:]) == {TokenType.NORMAL}
    assert tokens[259] == "\u2581" and "\u2581the" in tokens
    assert all(a > b for a, b in zip(scores[259:], scores[260:]))  # earlier pieces merge first


@pytest.mark.parametrize("weight_type", FILE_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("tied", [False, True])
def test_tensors_in_ggml_order_and_storage_type(weight_type, tied, tmp_path):
    cfg = SyntheticConfig(n_layer=1, n_head_kv=2, tied_embeddings=tied, weight_type=weight_type)
    reader = GGUFReader(write_synthetic_model(tmp_path / "m.gguf", cfg))
    tensors = {t.name: t for t in reader.tensors}
    kv = 2 * cfg.head_dim
    shapes = {  # ggml ne order: the row length first
        "token_embd.weight": [cfg.n_embd, cfg.n_vocab],
        "blk.0.attn_norm.weight": [cfg.n_embd],
        "blk.0.attn_q.weight": [cfg.n_embd, cfg.n_embd],
        "blk.0.attn_k.weight": [cfg.n_embd, kv],
        "blk.0.attn_v.weight": [cfg.n_embd, kv],
        "blk.0.attn_output.weight": [cfg.n_embd, cfg.n_embd],
        "blk.0.ffn_norm.weight": [cfg.n_embd],
        "blk.0.ffn_gate.weight": [cfg.n_embd, cfg.n_ff],
        "blk.0.ffn_up.weight": [cfg.n_embd, cfg.n_ff],
        "blk.0.ffn_down.weight": [cfg.n_ff, cfg.n_embd],
        "output_norm.weight": [cfg.n_embd],
    }
    if not tied:
        shapes["output.weight"] = [cfg.n_embd, cfg.n_vocab]
    assert {name: t.shape.tolist() for name, t in tensors.items()} == shapes
    for name, t in tensors.items():
        assert t.tensor_type == (Q.F32 if len(shapes[name]) == 1 else weight_type), name


def test_reference_is_causal_and_deterministic(tmp_path):
    cfg = SyntheticConfig(n_head=8, n_head_kv=2)
    path = write_synthetic_model(tmp_path / "m.gguf", cfg)
    tokens = [1] + np.random.default_rng(0).integers(3, cfg.n_vocab, 15).tolist()
    full = reference_logits(path, tokens)
    # a position sees only itself and earlier tokens ...
    np.testing.assert_allclose(reference_logits(path, tokens[:6]), full[:6], rtol=0, atol=1e-12)
    # ... and every later position sees a changed token
    changed = reference_logits(path, tokens[:6] + [tokens[6] + 1] + tokens[7:])
    np.testing.assert_array_equal(changed[:6], full[:6])
    assert (np.abs(changed[6:] - full[6:]).max(axis=1) > 1e-3).all()
    # logits are spread like a real model's, not degenerate
    assert 1.0 < full.std() < 4.0
