"""The per-tensor type rule (pyllama._quant_rule) against llama.cpp's llama-quantize decisions.

The expected tables were read off llama.cpp's src/llama-quant.cpp and confirmed by running its
quantizer (llama_model_quantize, commit 0c1e570) on synthetic F16 Llama models with the same
layer counts, attention shapes, row lengths, tied embeddings and experts: the rule depends on
names, row lengths and those hyper-parameters only. (tools/compare_quantize_with_llama_cpp.py
repeats that comparison on whole files.)
"""
from __future__ import annotations

from typing import Dict, List

import pytest

from pyllama._quant_rule import FILE_TYPES, ModelShape, TensorSpec, file_order, plan

KINDS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def llama_tensors(n_layer: int, n_embd: int, n_ff: int, n_kv: int, n_vocab: int = 32000,
                  tied: bool = False, weight_type: str = "F16") -> List[TensorSpec]:
    """A Llama model's tensors in the order convert_hf_to_gguf writes them (ggml shapes)."""
    def t(name, *shape, type_=weight_type):
        return TensorSpec(name, tuple(shape), type_)
    out = [t("token_embd.weight", n_embd, n_vocab)]
    for i in range(n_layer):
        b = f"blk.{i}."
        out += [t(b + "attn_norm.weight", n_embd, type_="F32"), t(b + "attn_q.weight", n_embd, n_embd),
                t(b + "attn_k.weight", n_embd, n_kv), t(b + "attn_v.weight", n_embd, n_kv),
                t(b + "attn_output.weight", n_embd, n_embd), t(b + "ffn_norm.weight", n_embd, type_="F32"),
                t(b + "ffn_gate.weight", n_embd, n_ff), t(b + "ffn_up.weight", n_embd, n_ff),
                t(b + "ffn_down.weight", n_ff, n_embd)]
    out.append(t("output_norm.weight", n_embd, type_="F32"))
    if not tied:
        out.append(t("output.weight", n_embd, n_vocab))
    return out


LLAMA_7B = dict(n_layer=32, n_embd=4096, n_ff=11008, n_kv=4096)            # 32 heads, no GQA
TINYLLAMA_1B = dict(n_layer=22, n_embd=2048, n_ff=5632, n_kv=256)          # 32 heads, 4 KV heads
SHAPES = {32: ModelShape(n_layer=32, n_head=32, n_head_kv=32), 22: ModelShape(n_layer=22, n_head=32, n_head_kv=4)}
TENSORS = {32: llama_tensors(**LLAMA_7B), 22: llama_tensors(**TINYLLAMA_1B)}

# Layers whose attn_v and ffn_down get more bits in Q4_K_M/Q5_K_M (llama.cpp's use_more_bits).
MORE_BITS = {32: {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31},
             22: {0, 1, 4, 7, 10, 13, 16, 19, 20, 21}}

# file type -> (type of most 2-D tensors, output.weight, {kind: (type, {n_layer: layers})}),
# as llama.cpp chose them for both models (norms stay F32 throughout).
EXPECTED = {
    "Q4_K_M": ("Q4_K", "Q6_K", {"attn_v": ("Q6_K", MORE_BITS), "ffn_down": ("Q6_K", MORE_BITS)}),
    "Q5_K_M": ("Q5_K", "Q6_K", {"attn_v": ("Q6_K", MORE_BITS), "ffn_down": ("Q6_K", MORE_BITS)}),
    "Q4_K_S": ("Q4_K", "Q6_K", {"attn_v": ("Q5_K", {32: {0, 1, 2, 3}, 22: {0, 1, 2, 3}}),
                                "ffn_down": ("Q5_K", {32: {0, 1, 2, 3}, 22: {0, 1}})}),
    "Q5_K_S": ("Q5_K", "Q6_K", {}),
    "Q6_K": ("Q6_K", "Q6_K", {}),
    "Q8_0": ("Q8_0", "Q8_0", {}),
    "Q4_0": ("Q4_0", "Q6_K", {}),
    "Q4_1": ("Q4_1", "Q6_K", {}),
    "Q5_0": ("Q5_0", "Q6_K", {}),
    "Q5_1": ("Q5_1", "Q6_K", {}),
    "F16": ("F16", "F16", {}),
    "BF16": ("BF16", "BF16", {}),
    "F32": ("F32", "F32", {}),
}


def expected_table(file_type: str, n_layer: int) -> Dict[str, str]:
    default, output, exceptions = EXPECTED[file_type]
    table = {"token_embd.weight": default, "output.weight": output, "output_norm.weight": "F32"}
    for i in range(n_layer):
        table[f"blk.{i}.attn_norm.weight"] = table[f"blk.{i}.ffn_norm.weight"] = "F32"
        for kind in KINDS:
            special, layers = exceptions.get(kind, (None, {n_layer: set()}))
            table[f"blk.{i}.{kind}.weight"] = special if i in layers[n_layer] else default
    return table


def types_of(file_type: str, tensors, model) -> Dict[str, str]:
    return {spec.name: new_type for spec, new_type in plan(file_type, tensors, model)}


def test_file_types_are_llama_cpp_ftypes():
    # general.file_type values (llama.h's llama_ftype) of the types pyllama writes
    assert FILE_TYPES == {"F32": (0, "F32"), "F16": (1, "F16"), "Q4_0": (2, "Q4_0"), "Q4_1": (3, "Q4_1"),
                          "Q8_0": (7, "Q8_0"), "Q5_0": (8, "Q5_0"), "Q5_1": (9, "Q5_1"),
                          "Q4_K_S": (14, "Q4_K"), "Q4_K_M": (15, "Q4_K"), "Q5_K_S": (16, "Q5_K"),
                          "Q5_K_M": (17, "Q5_K"), "Q6_K": (18, "Q6_K"), "BF16": (32, "BF16")}


@pytest.mark.parametrize("n_layer", [32, 22], ids=["7B-shaped", "1.1B-shaped"])
@pytest.mark.parametrize("file_type", list(EXPECTED))
def test_llama_models(file_type, n_layer):
    got = types_of(file_type, TENSORS[n_layer], SHAPES[n_layer])
    assert got == expected_table(file_type, n_layer)


def test_q4_k_m_more_bits_layers_spelled_out():
    got = types_of("Q4_K_M", TENSORS[22], SHAPES[22])
    q6 = sorted(int(n.split(".")[1]) for n, t in got.items() if t == "Q6_K" and "attn_v" in n)
    assert q6 == [0, 1, 4, 7, 10, 13, 16, 19, 20, 21]
    assert [n for n, t in got.items() if t == "Q6_K" and not n.startswith("blk.")] == ["output.weight"]


def test_output_order_is_llama_quantize_order():
    # Outside-block tensors first, then block by block (numerically: 2 before 10), names in
    # byte order within a group.
    names = [t.name for t in llama_tensors(n_layer=11, n_embd=256, n_ff=512, n_kv=256)]
    ordered = file_order(names)
    assert ordered[:3] == ["output.weight", "output_norm.weight", "token_embd.weight"]
    assert ordered[3:12] == ["blk.0." + s for s in ("attn_k.weight", "attn_norm.weight", "attn_output.weight",
                                                    "attn_q.weight", "attn_v.weight", "ffn_down.weight",
                                                    "ffn_gate.weight", "ffn_norm.weight", "ffn_up.weight")]
    layers = [int(n.split(".")[1]) for n in ordered[3:]]
    assert layers == sorted(layers) and layers[-1] == 10
    assert [spec.name for spec, _ in plan("Q4_K_M", llama_tensors(11, 256, 512, 256), SHAPES[22])] == ordered


def test_tied_embeddings_quantize_token_embd_as_output():
    tensors = llama_tensors(**TINYLLAMA_1B, tied=True)
    for file_type, embd in (("Q4_K_M", "Q6_K"), ("Q4_0", "Q6_K"), ("Q8_0", "Q8_0"), ("F16", "F16")):
        assert types_of(file_type, tensors, SHAPES[22])["token_embd.weight"] == embd, file_type


@pytest.mark.parametrize("n_head_kv, attn_v", [(8, "Q5_K"), (64, "Q4_K")], ids=["70B-GQA", "65B-MHA"])
def test_80_layer_models(n_head_kv, attn_v):
    # llama.cpp's 70B type (80 layers, grouped-query attention) lifts Q4_K attn_v to Q5_K.
    tensors = llama_tensors(n_layer=80, n_embd=8192, n_ff=28672, n_kv=1024)
    got = types_of("Q4_K_M", tensors, ModelShape(n_layer=80, n_head=64, n_head_kv=n_head_kv))
    assert got["blk.10.attn_v.weight"] == attn_v and got["blk.0.attn_v.weight"] == "Q6_K"
    assert got["blk.10.ffn_down.weight"] == "Q4_K" and got["blk.10.attn_q.weight"] == "Q4_K"
    got_s = types_of("Q4_K_S", tensors, ModelShape(n_layer=80, n_head=64, n_head_kv=n_head_kv))
    assert got_s["blk.0.attn_v.weight"] == "Q5_K" and got_s["blk.10.attn_v.weight"] == attn_v


@pytest.mark.parametrize("file_type, expected", [
    # rows of 64 (n_embd) and 96 (n_ff): 256-element blocks fall back to 32-element types
    ("Q4_K_M", {"token_embd.weight": "Q5_0", "output.weight": "Q8_0", "blk.0.attn_v.weight": "Q8_0",
                "blk.0.ffn_down.weight": "Q8_0", "blk.1.attn_v.weight": "Q5_0", "blk.1.ffn_down.weight": "Q5_0",
                "blk.1.attn_q.weight": "Q5_0"}),
    ("Q6_K", {"token_embd.weight": "Q8_0", "output.weight": "Q8_0", "blk.1.attn_q.weight": "Q8_0"}),
    ("Q4_0", {"token_embd.weight": "Q4_0", "output.weight": "Q8_0", "blk.1.attn_q.weight": "Q4_0"}),
])
def test_fallback_for_rows_of_64(file_type, expected):
    got = types_of(file_type, llama_tensors(8, 64, 96, 64, n_vocab=320), ModelShape(8, 4, 4))
    assert {n: got[n] for n in expected} == expected


@pytest.mark.parametrize("file_type", ["Q4_K_M", "Q8_0", "Q4_0"])
def test_rows_not_a_multiple_of_32_stay_f16(file_type):
    got = types_of(file_type, llama_tensors(4, 272, 272, 272, n_vocab=320), ModelShape(4, 8, 8))
    assert {t for n, t in got.items() if "norm" not in n} == {"F16"}


def mixtral_tensors(n_layer: int, n_expert: int = 8) -> List[TensorSpec]:
    out = [TensorSpec("token_embd.weight", (4096, 32000), "F16"), TensorSpec("output.weight", (4096, 32000), "F16")]
    for i in range(n_layer):
        b = f"blk.{i}."
        out += [TensorSpec(b + "attn_v.weight", (4096, 1024), "F16"), TensorSpec(b + "attn_k.weight", (4096, 1024), "F16"),
                TensorSpec(b + "attn_q.weight", (4096, 4096), "F16"),
                TensorSpec(b + "attn_output.weight", (4096, 4096), "F16"),
                TensorSpec(b + "ffn_gate_inp.weight", (4096, n_expert), "F32"),
                TensorSpec(b + "ffn_down_exps.weight", (14336, 4096, n_expert), "F16"),
                TensorSpec(b + "ffn_gate_exps.weight", (4096, 14336, n_expert), "F16"),
                TensorSpec(b + "ffn_up_exps.weight", (4096, 14336, n_expert), "F16")]
    return out


def test_eight_experts():
    got = types_of("Q4_K_M", mixtral_tensors(32), ModelShape(32, 32, 8, n_expert=8))
    assert got["blk.5.attn_v.weight"] == got["blk.5.attn_k.weight"] == "Q8_0"
    assert got["blk.5.attn_output.weight"] == "Q5_K" and got["blk.5.attn_q.weight"] == "Q4_K"
    assert got["blk.5.ffn_gate_inp.weight"] == "F32"  # the router is never quantized
    assert {i for i in range(32) if got[f"blk.{i}.ffn_down_exps.weight"] == "Q6_K"} == MORE_BITS[32]
    assert got["blk.5.ffn_up_exps.weight"] == got["blk.5.ffn_gate_exps.weight"] == "Q4_K"
    q4_0 = types_of("Q4_0", mixtral_tensors(32), ModelShape(32, 32, 8, n_expert=8))
    assert q4_0["blk.5.attn_k.weight"] == "Q8_0" and q4_0["blk.5.attn_output.weight"] == "Q4_0"


def test_expert_tensors_need_a_layer_number():
    tensors = mixtral_tensors(2) + [TensorSpec("extra.ffn_down_exps.weight", (256, 256, 8), "F16")]
    with pytest.raises(ValueError, match="layer"):
        plan("Q4_K_M", tensors, ModelShape(2, 32, 8, n_expert=8))


def test_what_is_never_quantized():
    tensors = [TensorSpec("token_embd.weight", (256, 320), "F16"),
               TensorSpec("blk.0.attn_norm.weight", (256,), "F32"),
               TensorSpec("blk.0.attn_q.weight", (256, 256), "F16"),
               TensorSpec("blk.0.attn_k.weight", (256, 1), "F16"),       # one row: a 1-D tensor to ggml
               TensorSpec("blk.0.ffn_gate_inp.weight", (256, 8), "F16"),
               TensorSpec("blk.0.attn_q.bias", (256, 256), "F16"),       # not a weight
               TensorSpec("rope_freqs.weight", (32,), "F32"),
               TensorSpec("position_embd.weight", (256, 512), "F16")]
    got = types_of("Q4_K_M", tensors, ModelShape(1, 8, 8))
    assert got == {"token_embd.weight": "Q6_K", "blk.0.attn_norm.weight": "F32", "blk.0.attn_q.weight": "Q4_K",
                   "blk.0.attn_k.weight": "F16", "blk.0.ffn_gate_inp.weight": "F16",
                   "blk.0.attn_q.bias": "F16", "rope_freqs.weight": "F32", "position_embd.weight": "F16"}


def test_requantizing_keeps_the_same_decisions():
    # The rule looks at names and shapes, not at the source type.
    q8 = llama_tensors(**TINYLLAMA_1B, weight_type="Q8_0")
    assert types_of("Q4_K_M", q8, SHAPES[22]) == expected_table("Q4_K_M", 22)


def test_unknown_file_type():
    with pytest.raises(ValueError, match="Q4_K_M"):
        plan("Q3_K_M", TENSORS[22], SHAPES[22])
