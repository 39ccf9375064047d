"""Hugging Face Llama checkpoints: config.json, weights (safetensors or pytorch_model.bin, single
or sharded with an index) and tokenizer files.

Hugging Face's conversion of Meta's weights permuted the rows of each q and k projection so that
RoPE could rotate the two halves of a head (rotate_half) instead of adjacent pairs. ggml rotates
adjacent pairs, so llama.cpp permutes those rows back, head by head (k with the key-value head
count); so does this module.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

import numpy as np

from .._core import PyllamaError
from .bpe_vocab import bpe_vocab
from .jsonfile import read_json_object
from .model_plan import LlamaParams, ModelPlan
from .pth_reader import load_pth
from .safetensors_reader import load_safetensors
from .spm_vocab import sentencepiece_vocab
from .tensors import ArrayTensor, RawFile, RowPermutedTensor, SourceTensor
from .vocab import Vocabulary

ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)\Z")
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm", "self_attn.q_proj.weight": "attn_q", "self_attn.k_proj.weight": "attn_k",
    "self_attn.v_proj.weight": "attn_v", "self_attn.o_proj.weight": "attn_output",
    "post_attention_layernorm.weight": "ffn_norm", "mlp.gate_proj.weight": "ffn_gate",
    "mlp.up_proj.weight": "ffn_up", "mlp.down_proj.weight": "ffn_down",
}
_GLOBAL_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                 "lm_head.weight": "output.weight"}
_SKIPPED_SUFFIXES = (".rotary_emb.inv_freq", ".attention.masked_bias", ".attention.bias")
# (index file, weight file names) per weight format, safetensors first as llama.cpp prefers it.
_WEIGHT_FORMATS = (("model.safetensors.index.json", re.compile(r"model(-\d+-of-\d+)?\.safetensors\Z")),
                   ("pytorch_model.bin.index.json", re.compile(r"pytorch_model(-\d+-of-\d+)?\.bin\Z")))


def gguf_name(hf_name: str) -> Optional[str]:
    """The GGUF name of a Hugging Face tensor; None for tensors llama.cpp drops."""
    if hf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[hf_name]
    m = _LAYER.match(hf_name)
    if m and m.group(2) in _LAYER_NAMES:
        return f"blk.{int(m.group(1))}.{_LAYER_NAMES[m.group(2)]}.weight"
    if hf_name.endswith(_SKIPPED_SUFFIXES):
        return None
    raise PyllamaError(f"unexpected tensor {hf_name!r} in a Hugging Face Llama checkpoint")


def rope_row_order(n_rows: int, n_heads: int) -> np.ndarray:
    """GGUF row r of a q/k projection is Hugging Face row order[r]: within each head, the rows
    (first half i, second half i) become the adjacent pair (2i, 2i+1)."""
    return np.arange(n_rows).reshape(n_heads, 2, n_rows // n_heads // 2).swapaxes(1, 2).reshape(-1)


def weight_files(folder: Path) -> Optional[Tuple[List[Path], Optional[Path], Set[str]]]:
    """(weight files, index file or None, tensor names the index lists) of the first weight
    format present, or None if the folder has no weights."""
    for index_name, pattern in _WEIGHT_FORMATS:
        index = folder / index_name
        if index.is_file():
            weight_map = read_json_object(index).get("weight_map")
            if not isinstance(weight_map, dict) or not all(
                    isinstance(f, str) and Path(f).name == f and f not in ("", ".", "..") for f in weight_map.values()):
                raise PyllamaError(f"{index}: 'weight_map' must map tensor names to file names in the folder")
            return [folder / f for f in sorted(set(weight_map.values()))], index, set(weight_map)
        files = sorted(p for p in folder.iterdir() if pattern.match(p.name))
        if files:
            return files, None, set()
    return None


def is_hf_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and weight_files(folder) is not None


def open_hf(folder: Path, tokenizer_model: Optional[Path]) -> ModelPlan:
    config_path = folder / "config.json"
    config = read_json_object(config_path)
    found = weight_files(folder)
    if found is None:
        raise PyllamaError(f"{folder}: no model.safetensors or pytorch_model.bin weights")
    paths, index, indexed_names = found
    files: List[RawFile] = []
    try:
        by_hf_name: Dict[str, SourceTensor] = {}
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: listed in {index} but missing")
            raw, tensors = (load_safetensors if path.suffix == ".safetensors" else load_pth)(str(path))
            files.append(raw)
            for name, tensor in tensors.items():
                if name in by_hf_name:
                    raise PyllamaError(f"{path}: tensor {name} is also in {by_hf_name[name].where}")
                by_hf_name[name] = tensor
        if index is not None and indexed_names != set(by_hf_name):
            missing, extra = sorted(indexed_names - set(by_hf_name)), sorted(set(by_hf_name) - indexed_names)
            raise PyllamaError(f"{index}: the weight files do not hold the tensors it lists "
                               f"(missing: {missing[:5]}, not listed: {extra[:5]})")
        llama = _params(config, config_path)
        tensors = _gguf_tensors(by_hf_name, llama)
        if llama.rope_freq_factors is not None:
            tensors["rope_freqs.weight"] = ArrayTensor(llama.rope_freq_factors, f"{config_path}: llama3 rope scaling")
        if "output.weight" not in tensors and not config.get("tie_word_embeddings", False):
            raise PyllamaError(f"{folder}: no lm_head.weight, and {config_path.name} does not tie the word embeddings")
        vocab = _vocabulary(folder, tokenizer_model, llama.n_vocab)
        return ModelPlan(folder.name, "hf", llama, tensors, vocab, files)
    except BaseException:
        for f in files:
            f.close()
        raise


def _gguf_tensors(by_hf_name: Dict[str, SourceTensor], p: LlamaParams) -> Dict[str, SourceTensor]:
    out: Dict[str, SourceTensor] = {}
    for hf_name, tensor in by_hf_name.items():
        name = gguf_name(hf_name)
        if name is None:
            continue
        heads = p.n_head if name.endswith(".attn_q.weight") else p.n_head_kv if name.endswith(".attn_k.weight") else 0
        if heads:
            if tensor.n_rows != heads * p.head_dim:
                raise PyllamaError(f"{tensor.where}: {tensor.n_rows} rows, but {heads} heads of {p.head_dim} "
                                   f"need {heads * p.head_dim}")
            tensor = RowPermutedTensor(tensor, rope_row_order(tensor.n_rows, heads))
        out[name] = tensor
    return out


def _params(config: Dict[str, Any], path: Path) -> LlamaParams:
    archs = config.get("architectures")
    arch = archs[0] if isinstance(archs, list) and archs else None
    if arch not in ARCHITECTURES:
        raise PyllamaError(f"{path}: architecture {arch!r} is not supported (supported: {', '.join(ARCHITECTURES)})")
    if config.get("hidden_act", "silu") != "silu":
        raise PyllamaError(f"{path}: hidden_act {config['hidden_act']!r} is not supported (llama uses 'silu')")
    for flag in ("attention_bias", "mlp_bias"):
        if config.get(flag):
            raise PyllamaError(f"{path}: {flag} is set; llama models without biases are supported")

    def need(key: str) -> Any:
        if key not in config:
            raise PyllamaError(f"{path}: missing '{key}'")
        return config[key]

    n_head = need("num_attention_heads")
    head_dim = config.get("head_dim")
    p = LlamaParams(
        n_vocab=need("vocab_size"), n_ctx=need("max_position_embeddings"), n_embd=need("hidden_size"),
        n_ff=need("intermediate_size"), n_layer=need("num_hidden_layers"), n_head=n_head,
        n_head_kv=config.get("num_key_value_heads") or n_head, head_dim=0, rms_eps=need("rms_norm_eps"))
    if head_dim is None:
        if not (isinstance(p.n_embd, int) and isinstance(n_head, int) and n_head > 0 and p.n_embd % n_head == 0):
            raise PyllamaError(f"{path}: hidden_size {p.n_embd!r} does not split into {n_head!r} heads")
        head_dim = p.n_embd // n_head
    p.head_dim = head_dim
    llama3 = _read_rope(config, path, p)
    p.validate(str(path))
    if llama3 is not None:
        try:
            p.rope_freq_factors = llama3_rope_factors(
                float(p.rope_theta or 10000.0), p.head_dim, float(llama3.get("factor", 8.0)),
                float(llama3.get("low_freq_factor", 1.0)), float(llama3.get("high_freq_factor", 4.0)),
                float(llama3.get("original_max_position_embeddings", 8192)))
        except (TypeError, ValueError) as exc:
            raise PyllamaError(f"{path}: malformed llama3 rope scaling {llama3!r}: {exc}") from None
    return p


def _read_rope(config: Dict[str, Any], path: Path, p: LlamaParams) -> Optional[Dict[str, Any]]:
    """RoPE base and scaling, from rope_theta and rope_scaling (or the newer rope_parameters);
    returns the settings of a "llama3" scaling, which needs the validated head size."""
    rope = config.get("rope_parameters", config.get("rope_scaling")) or {}
    if not isinstance(rope, dict):
        raise PyllamaError(f"{path}: rope_scaling must be an object")
    p.rope_theta = config.get("rope_theta", rope.get("rope_theta"))
    kind = rope.get("rope_type", rope.get("type"))
    if kind in (None, "default"):
        return None
    if kind == "linear":
        p.rope_linear_factor = rope.get("factor")
        if p.rope_linear_factor is None:
            raise PyllamaError(f"{path}: linear rope scaling without a 'factor'")
        return None
    if kind == "llama3":
        return rope
    raise PyllamaError(f"{path}: rope scaling {kind!r} is not supported (only linear and llama3)")


def llama3_rope_factors(base: float, dim: int, factor: float, low_freq_factor: float, high_freq_factor: float,
                        old_context: float) -> np.ndarray:
    """Llama 3.1's RoPE scaling as llama.cpp stores it: a divisor per frequency (rope_freqs).
    High frequencies (wavelength below old_context / high_freq_factor) keep 1, low ones (above
    old_context / low_freq_factor) get `factor`, and those between blend smoothly.

    The arithmetic is llama.cpp's: PyTorch float32, where `number / tensor` is computed as the
    tensor's reciprocal times the number, and float32 powers are (almost always) the correctly
    rounded ones, i.e. float64 powers rounded."""
    f32 = np.float32
    exponents = (np.arange(0, dim, 2, dtype=f32) / f32(dim)).astype(np.float64)
    freqs = f32(1.0) / (np.float64(base) ** exponents).astype(f32)
    wavelen = (f32(1.0) / freqs) * f32(2 * np.pi)
    smooth = ((f32(1.0) / wavelen) * f32(old_context) - f32(low_freq_factor)) / f32(high_freq_factor - low_freq_factor)
    with np.errstate(divide="ignore", invalid="ignore"):  # unused where the wavelength is out of range
        blended = f32(1.0) / ((f32(1.0) - smooth) / f32(factor) + smooth)
    return np.where(wavelen < f32(old_context / high_freq_factor), f32(1.0),
                    np.where(wavelen > f32(old_context / low_freq_factor), f32(factor), blended)).astype(f32)


def _vocabulary(folder: Path, tokenizer_model: Optional[Path], n_vocab: int) -> Vocabulary:
    spm = tokenizer_model if tokenizer_model is not None else folder / "tokenizer.model"
    if spm.is_file():
        vocab = sentencepiece_vocab(spm, n_vocab, folder)
    elif tokenizer_model is not None:
        raise FileNotFoundError(f"tokenizer model not found: {tokenizer_model}")
    elif (folder / "tokenizer.json").is_file():
        vocab = bpe_vocab(folder, n_vocab)
    else:
        raise FileNotFoundError(f"{folder}: no tokenizer.model or tokenizer.json")
    # llama.cpp's per-model rules for Llama-architecture vocabularies, keyed on their size:
    if n_vocab == 32016:  # CodeLlama: its infill end-of-turn token
        vocab.special_ids.setdefault("eot", 32010)
    if n_vocab == 49152:  # SmolLM / Granite small: no BOS
        vocab.add_special["bos"] = False
    return vocab
