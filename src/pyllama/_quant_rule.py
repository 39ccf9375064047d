"""Which type llama-quantize gives each tensor, and in which order it writes them.

A port of llama.cpp's src/llama-quant.cpp (llama_tensor_get_type and its helpers) for Llama
models quantized with default parameters and no importance matrix: the output file types below,
no overrides, no pruning. Pure bookkeeping on names and shapes; no tensor data is read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

# Output file types pyllama can write: name -> (llama_ftype value recorded in general.file_type,
# the ggml type most tensors get). These are the llama_ftype values whose rule only ever picks
# types pyllama's quantizer produces.
FILE_TYPES: Dict[str, Tuple[int, str]] = {
    "F32": (0, "F32"),
    "F16": (1, "F16"),
    "Q4_0": (2, "Q4_0"),
    "Q4_1": (3, "Q4_1"),
    "Q8_0": (7, "Q8_0"),
    "Q5_0": (8, "Q5_0"),
    "Q5_1": (9, "Q5_1"),
    "Q4_K_S": (14, "Q4_K"),
    "Q4_K_M": (15, "Q4_K"),
    "Q5_K_S": (16, "Q5_K"),
    "Q5_K_M": (17, "Q5_K"),
    "Q6_K": (18, "Q6_K"),
    "BF16": (32, "BF16"),
}

# Elements per block of the types the rule reasons about (ggml_blck_size).
_BLOCK_SIZE = {"F32": 1, "F16": 1, "BF16": 1, "Q4_0": 32, "Q4_1": 32, "Q5_0": 32, "Q5_1": 32,
               "Q8_0": 32, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256}
_FLOAT_TYPES = ("F32", "F16", "BF16")

# Where the rule falls back to when a row is not a whole number of blocks (tensor_type_fallback).
_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}

# Substrings of names llama.cpp never quantizes (tensor_allows_quantization; the name checks
# that do not depend on the architecture).
_NEVER_QUANTIZED = (
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
    "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
    "indexer.q_proj.weight", "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
    "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight",
    "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight",
    "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.",
    "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
)
_NEVER_QUANTIZED_NAMES = ("position_embd.weight", "token_types.weight")

# sscanf(name, "blk.%d.", &layer): "blk." then an integer after optional C white space.
_LAYER = re.compile(r"blk\.[ \t\n\v\f\r]*([+-]?[0-9]+)")


@dataclass(frozen=True)
class TensorSpec:
    """What the rule sees of a tensor: its name, ggml-order shape and current ggml type name."""
    name: str
    shape: Tuple[int, ...]
    type: str


@dataclass(frozen=True)
class ModelShape:
    """The hyper-parameters the rule depends on (llama.block_count, attention.head_count,
    attention.head_count_kv and expert_count)."""
    n_layer: int
    n_head: int
    n_head_kv: int
    n_expert: int = 0

    @property
    def is_70b(self) -> bool:
        # llama.cpp's LLM_TYPE_70B for a Llama model: 80 layers with grouped-query attention.
        return self.n_expert != 8 and self.n_layer == 80 and self.n_head != self.n_head_kv


def layer_of(name: str) -> int:
    """The block number in "blk.N...." names, -1 for tensors outside the blocks."""
    m = _LAYER.match(name)
    return int(m.group(1)) if m else -1


def file_order(names: Sequence[str]) -> List[str]:
    """The order llama-quantize writes tensors in (its weights_map): tensors outside the blocks
    first, then block by block, by name (byte order) within each group."""
    return sorted(names, key=lambda n: (layer_of(n), n.encode()))


def n_dims(shape: Sequence[int]) -> int:
    """ggml_n_dims: dimensions up to the last one larger than 1 (at least 1)."""
    for d in range(len(shape) - 1, 0, -1):
        if shape[d] > 1:
            return d + 1
    return 1


def allows_quantization(t: TensorSpec) -> bool:
    """tensor_allows_quantization: 2-D and 3-D weights, except norms and small special tensors."""
    return (n_dims(t.shape) >= 2 and t.name.endswith("weight")
            and not any(s in t.name for s in _NEVER_QUANTIZED)
            and t.name not in _NEVER_QUANTIZED_NAMES)


def _category(name: str) -> str:
    """tensor_get_category: the first matching category, in llama.cpp's order."""
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for needle, cat in (("attn_qkv.weight", "attn_v"), ("attn_kv_b.weight", "attn_v"),
                        ("attn_v.weight", "attn_v"), ("attn_k.weight", "attn_k"),
                        ("attn_q.weight", "attn_q"), ("attn_output.weight", "attn_output"),
                        ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"), ("ffn_down", "ffn_down")):
        if needle in name:  # attn_qkv and attn_kv_b are handled as attn_v everywhere below
            return cat
    return "other"


def _use_more_bits(i_layer: int, n_layer: int) -> bool:
    # First and last eighth of the layers, and every third layer in between.
    return i_layer < n_layer // 8 or i_layer >= 7 * n_layer // 8 or (i_layer - n_layer // 8) % 3 == 2


class _Rule:
    """llama_tensor_get_type for one file: it counts attn_v and ffn tensors as it goes, so the
    tensors must be presented in file order."""

    def __init__(self, file_type: str, tensors: Sequence[TensorSpec], model: ModelShape):
        self.ftype = file_type
        self.default = FILE_TYPES[file_type][1]
        self.model = model
        self.tied_embeddings = not any(t.name == "output.weight" for t in tensors)
        self.n_attention_wv = sum(_category(t.name) == "attn_v" for t in tensors)
        self.counters = {"attn_v": 0, "ffn_down": 0, "ffn_gate": 0, "ffn_up": 0}

    def layer(self, category: str, name: str) -> Tuple[int, int]:
        """(i_layer, n_layer) of an ffn tensor: its rank among its kind, or with experts (whose
        tensors need not come in layer order) the number in its name."""
        n_layer = self.model.n_layer
        if self.model.n_expert <= 1:
            return self.counters[category], n_layer
        m = _LAYER.match(name)
        if not m:
            raise ValueError(f"failed to determine the layer of tensor {name}")
        i_layer = int(m.group(1))
        if not 0 <= i_layer < n_layer:
            raise ValueError(f"bad layer {i_layer} for tensor {name}: must be in [0, {n_layer})")
        return i_layer, n_layer

    def mixture_type(self, t: TensorSpec) -> str:
        """llama_tensor_get_type_impl for the file types in FILE_TYPES."""
        ftype, new_type, model = self.ftype, self.default, self.model
        cat = _category(t.name)
        if cat == "output" or (self.tied_embeddings and cat == "token_embd"):
            if t.shape[0] % _BLOCK_SIZE[new_type]:
                return "Q8_0"
            return new_type if new_type == "Q8_0" else "Q6_K"
        if cat == "attn_v":
            i = self.counters["attn_v"]
            if ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, self.n_attention_wv):
                new_type = "Q6_K"
            elif ftype == "Q4_K_S" and i < 4:
                new_type = "Q5_K"
            if model.is_70b and new_type == "Q4_K":
                new_type = "Q5_K"  # attn_v is 8x smaller than attn_q there: more bits are cheap
            if model.n_expert == 8:
                new_type = "Q8_0"
            self.counters["attn_v"] += 1
        elif cat == "attn_k":
            if model.n_expert == 8:
                new_type = "Q8_0"
        elif cat == "ffn_down":
            i_layer, n_layer = self.layer(cat, t.name)
            if ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i_layer, n_layer):
                new_type = "Q6_K"
            elif ftype == "Q4_K_S" and i_layer < n_layer // 8:
                new_type = "Q5_K"
            self.counters[cat] += 1
        elif cat == "attn_output":
            if model.n_expert == 8 and ftype in ("Q4_K_S", "Q4_K_M"):
                new_type = "Q5_K"
        elif cat in ("ffn_gate", "ffn_up"):
            self.layer(cat, t.name)  # only checks the name with experts: no rule for these types
            self.counters[cat] += 1
        return new_type

    def tensor_type(self, t: TensorSpec) -> str:
        """llama_tensor_get_type: the type tensor t is written with."""
        if not allows_quantization(t):
            return t.type
        if self.default in _FLOAT_TYPES:
            return self.default
        new_type = self.mixture_type(t)
        # tensor_type_fallback: rows that are not whole blocks of the chosen type
        if t.shape[0] % _BLOCK_SIZE[new_type]:
            new_type = _FALLBACK.get(new_type, new_type)
            if t.shape[0] % _BLOCK_SIZE[new_type]:
                new_type = "F16"
        return new_type


def plan(file_type: str, tensors: Sequence[TensorSpec], model: ModelShape) -> List[Tuple[TensorSpec, str]]:
    """The tensors in llama-quantize's output order, each with the type it gets in a
    `file_type` file (a key of FILE_TYPES)."""
    if file_type not in FILE_TYPES:
        raise ValueError(f"unknown file type {file_type!r}; valid: {', '.join(FILE_TYPES)}")
    by_name = {t.name: t for t in tensors}
    ordered = [by_name[n] for n in file_order(list(by_name))]
    rule = _Rule(file_type, ordered, model)
    return [(t, rule.tensor_type(t)) for t in ordered]
