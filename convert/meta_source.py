"""Meta's original Llama checkpoints: params.json, consolidated.NN.pth and tokenizer.model.

A model too big for one GPU was saved as NN model-parallel shards (fairscale layers): column-
parallel layers (wq, wk, wv, w1, w3, output) are split by output rows, row-parallel ones (wo, w2)
and the parallel embedding by columns; norms are replicated. The shards are joined back as
llama.cpp's legacy converter does. Meta's q/k rows are in the order ggml's RoPE expects
(adjacent pairs rotate together, as Meta's complex-number rotary code does), so unlike Hugging
Face checkpoints they need no permutation.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional

from .._core import PyllamaError
from .jsonfile import read_json_object
from .model_plan import LlamaParams, ModelPlan
from .pth_reader import load_pth
from .spm_vocab import sentencepiece_vocab
from .tensors import ConcatTensor, RawFile, SourceTensor

_LAYER = re.compile(r"layers\.(\d+)\.(.+)\Z")
_LAYER_NAMES = {
    "attention_norm.weight": "attn_norm", "attention.wq.weight": "attn_q", "attention.wk.weight": "attn_k",
    "attention.wv.weight": "attn_v", "attention.wo.weight": "attn_output", "ffn_norm.weight": "ffn_norm",
    "feed_forward.w1.weight": "ffn_gate", "feed_forward.w3.weight": "ffn_up", "feed_forward.w2.weight": "ffn_down",
}
_GLOBAL_NAMES = {"tok_embeddings.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
                 "output.weight": "output.weight"}
_SKIPPED = {"rope.freqs"}  # precomputed RoPE frequencies, which llama.cpp computes itself
# Split by columns (dimension 1) across model-parallel shards; other matrices by rows.
_COLUMN_SPLIT = ("tok_embeddings.weight", ".attention.wo.weight", ".feed_forward.w2.weight")
_SHARD = re.compile(r"consolidated\.(\d+)\.pth\Z")


def is_meta_folder(folder: Path) -> bool:
    return any(_SHARD.match(p.name) for p in folder.iterdir())


def gguf_name(meta_name: str) -> Optional[str]:
    """The GGUF name of a Meta tensor; None for tensors llama.cpp does not keep."""
    if meta_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[meta_name]
    m = _LAYER.match(meta_name)
    if m and m.group(2) in _LAYER_NAMES:
        return f"blk.{int(m.group(1))}.{_LAYER_NAMES[m.group(2)]}.weight"
    if meta_name in _SKIPPED:
        return None
    raise PyllamaError(f"unexpected tensor {meta_name!r} in a Meta Llama checkpoint")


def _shard_paths(folder: Path) -> List[Path]:
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _SHARD.match(p.name)))
    numbers = [n for n, _ in found]
    if numbers != list(range(len(found))):
        raise PyllamaError(f"{folder}: model-parallel shards must be consolidated.00.pth .. "
                           f"consolidated.{len(found) - 1:02d}.pth; found numbers {numbers}")
    return [p for _, p in found]


def _merge(name: str, parts: List[SourceTensor]) -> SourceTensor:
    if len(parts) == 1:
        return parts[0]
    if len(parts[0].shape) == 1:  # replicated in every shard
        for p in parts[1:]:
            if p.shape != parts[0].shape or p.dtype != parts[0].dtype:
                raise PyllamaError(f"{name}: shards disagree: {parts[0].where} is {parts[0].dtype} "
                                   f"{parts[0].shape} but {p.where} is {p.dtype} {p.shape}")
        return parts[0]
    axis = 1 if name.startswith(_COLUMN_SPLIT[0]) or name.endswith(_COLUMN_SPLIT[1:]) else 0
    return ConcatTensor(parts, axis, f"{name} (joined from {len(parts)} shards)")


def _find_tokenizer(folder: Path, tokenizer_model: Optional[Path]) -> Path:
    if tokenizer_model is not None:
        if not tokenizer_model.is_file():
            raise FileNotFoundError(f"tokenizer model not found: {tokenizer_model}")
        return tokenizer_model
    for candidate in (folder / "tokenizer.model", folder.parent / "tokenizer.model"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{folder}: no tokenizer.model in the checkpoint folder or its parent; "
                            "pass tokenizer_model=")


def _context_length(params: dict) -> int:
    """params.json rarely states it: llama.cpp's legacy converter tells the model apart by its
    other settings (CodeLlama: rope_theta 1e6; Llama 2: norm_eps 1e-5; else Llama 1)."""
    if "max_seq_len" in params:
        return params["max_seq_len"]
    if params.get("rope_theta") == 1000000:
        return 16384
    return 4096 if params.get("norm_eps") == 1e-05 else 2048


def open_meta(folder: Path, tokenizer_model: Optional[Path]) -> ModelPlan:
    params_path = folder / "params.json"
    if not params_path.is_file():
        raise FileNotFoundError(f"{folder}: a Meta checkpoint (consolidated.*.pth) without params.json")
    params = read_json_object(params_path)
    for unsupported in ("moe", "use_scaled_rope"):
        if params.get(unsupported):
            raise PyllamaError(f"{params_path}: '{unsupported}' models are not supported")
    files: List[RawFile] = []
    try:
        paths = _shard_paths(folder)
        shards: List[Dict[str, SourceTensor]] = []
        for path in paths:
            raw, shard = load_pth(str(path))
            files.append(raw)
            shards.append(shard)
        for path, shard in zip(paths[1:], shards[1:]):
            if shard.keys() != shards[0].keys():
                diff = sorted(set(shard) ^ set(shards[0]))
                raise PyllamaError(f"{path}: holds different tensors from {paths[0].name} (e.g. {diff[:3]})")
        tensors: Dict[str, SourceTensor] = {}
        for name in shards[0]:
            new_name = gguf_name(name)
            if new_name is not None:
                tensors[new_name] = _merge(name, [s[name] for s in shards])
        llama = _params(params, params_path, tensors)
        vocab = sentencepiece_vocab(_find_tokenizer(folder, tokenizer_model), llama.n_vocab, None)
        return ModelPlan(folder.name, "meta", llama, tensors, vocab, files)
    except BaseException:
        for f in files:
            f.close()
        raise


def _params(params: dict, path: Path, tensors: Dict[str, SourceTensor]) -> LlamaParams:
    def need(key: str):
        if key not in params:
            raise PyllamaError(f"{path}: missing '{key}'")
        return params[key]

    for name in ("token_embd.weight", "blk.0.ffn_gate.weight"):
        if name not in tensors:
            raise PyllamaError(f"{path.parent}: the checkpoint has no tensor for {name}")
    n_embd, n_head = need("dim"), need("n_heads")
    n_vocab = tensors["token_embd.weight"].shape[0]
    declared_vocab = params.get("vocab_size", -1)
    if declared_vocab not in (-1, n_vocab):
        raise PyllamaError(f"{path}: vocab_size {declared_vocab} disagrees with the {n_vocab} token embeddings")
    p = LlamaParams(
        n_vocab=n_vocab, n_ctx=_context_length(params), n_embd=n_embd,
        n_ff=tensors["blk.0.ffn_gate.weight"].shape[0], n_layer=need("n_layers"), n_head=n_head,
        n_head_kv=params.get("n_kv_heads", n_head), head_dim=0, rms_eps=need("norm_eps"),
        rope_theta=params.get("rope_theta"))
    if not (isinstance(n_embd, int) and isinstance(n_head, int) and n_head > 0 and n_embd % n_head == 0):
        raise PyllamaError(f"{path}: dim {n_embd!r} does not split into {n_head!r} heads")
    p.head_dim = n_embd // n_head
    p.validate(str(path))
    return p
