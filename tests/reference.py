"""A plain numpy float64 forward pass of a Llama GGUF model: the yardstick for pyllama's logits.

Written for reading, not speed. It follows llama.cpp's graph for architecture "llama"
(src/models/llama.cpp) on the weights exactly as the GGUF stores them:

    x = token_embd[tokens]
    per layer:  x += attn_output @ attention(rope(attn_q @ n), rope(attn_k @ n), attn_v @ n)
                     where n = rms_norm(x) * attn_norm
                x += ffn_down @ (silu(ffn_gate @ n) * (ffn_up @ n))   where n = rms_norm(x) * ffn_norm
    logits = output @ (rms_norm(x) * output_norm)        (output falls back to token_embd: tied)

Weights are dequantized with the gguf package (llama.cpp's own numpy dequantizers) and computed
on in float64, so the only approximation left is float64 rounding. llama.cpp itself rounds the
activations (to F16 for F16 weights, to 8 bits for quantized ones) and keeps the KV cache in F16;
tests compare against this reference with tolerances that account for that.

Features llama.cpp would apply but this reference does not implement (fused QKV, biases, experts,
rope frequency factors, YaRN and other rope scaling types) make it refuse the file rather than
compute something else.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize

ARCH = "llama"
LAYER_TENSORS = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                 "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")  # blk.N.<name>.weight


@dataclass(frozen=True)
class LlamaParams:
    """The hyperparameters of the forward pass, read from the GGUF metadata as llama.cpp reads them."""
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_rot: int             # leading dimensions of each head that RoPE rotates
    rms_eps: float
    rope_base: float       # theta_i = pos * rope_freq_scale * rope_base ** (-2i / n_rot)
    rope_freq_scale: float  # 1 / linear scaling factor


@dataclass(frozen=True)
class ReferenceModel:
    params: LlamaParams
    # Tensor name -> dequantized values as float32 (exactly the values llama.cpp's dequantizers
    # produce), in numpy order: a GGUF tensor with ne=[cols, rows] is an array (rows, cols).
    weights: dict


def _field(reader: GGUFReader, key: str, default=None):
    """A scalar metadata value (int, float, bool or str); `default` when absent, KeyError if no default."""
    field = reader.get_field(key)
    if field is None:
        if default is None:
            raise KeyError(f"GGUF metadata key {key!r} is missing")
        return default
    if len(field.types) != 1:
        raise ValueError(f"GGUF metadata key {key!r} is not a scalar")
    value = field.parts[field.data[0]]
    if field.types[0] == GGUFValueType.STRING:
        return bytes(value).decode("utf-8")
    return value[0].item()


def read_params(reader: GGUFReader, n_vocab: int) -> LlamaParams:
    arch = _field(reader, "general.architecture")
    if arch != ARCH:
        raise ValueError(f"reference supports architecture {ARCH!r}, file is {arch!r}")
    if _field(reader, f"{ARCH}.expert_count", 0) != 0:
        raise NotImplementedError("reference has no mixture-of-experts layers")
    n_embd = _field(reader, f"{ARCH}.embedding_length")
    n_head = _field(reader, f"{ARCH}.attention.head_count")
    head_dim = n_embd // n_head
    n_rot = _field(reader, f"{ARCH}.rope.dimension_count", head_dim)

    # llama.cpp: scaling type defaults to "linear"; the factor (new key, else the old one) is
    # applied unless the type is "none"; freq_scale = 1/factor, a factor of 0 meaning none.
    scaling = _field(reader, f"{ARCH}.rope.scaling.type", "linear")
    factor = (_field(reader, f"{ARCH}.rope.scaling.factor", 0.0)
              or _field(reader, f"{ARCH}.rope.scale_linear", 0.0))
    if scaling not in ("none", "linear"):
        raise NotImplementedError(f"reference implements no rope scaling type {scaling!r}")
    freq_scale = 1.0 if scaling == "none" or factor == 0.0 else 1.0 / factor

    return LlamaParams(
        n_vocab=n_vocab,
        n_embd=n_embd,
        n_layer=_field(reader, f"{ARCH}.block_count"),
        n_head=n_head,
        n_head_kv=_field(reader, f"{ARCH}.attention.head_count_kv", n_head),
        head_dim=head_dim,
        n_rot=n_rot,
        rms_eps=_field(reader, f"{ARCH}.attention.layer_norm_rms_epsilon"),
        rope_base=_field(reader, f"{ARCH}.rope.freq_base", 10000.0),
        rope_freq_scale=freq_scale,
    )


def _load_weights(reader: GGUFReader) -> dict:
    weights = {}
    for tensor in reader.tensors:
        values = dequantize(tensor.data, tensor.tensor_type)
        shape = tuple(int(n) for n in reversed(tensor.shape))  # ggml ne order -> numpy order
        weights[tensor.name] = np.array(values, dtype=np.float32).reshape(shape)
    unsupported = [name for name in weights
                   if name.startswith("rope_freqs") or ".attn_qkv." in name or name.endswith(".bias")]
    if unsupported:
        raise NotImplementedError(f"reference does not implement tensors {unsupported}")
    return weights


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, size: int) -> ReferenceModel:
    del mtime_ns, size  # part of the cache key only: a rewritten file is loaded afresh
    reader = GGUFReader(path)
    weights = _load_weights(reader)
    n_vocab = weights["token_embd.weight"].shape[0]
    return ReferenceModel(read_params(reader, n_vocab), weights)


def load_reference_model(path: os.PathLike | str) -> ReferenceModel:
    """Parameters and dequantized weights of a GGUF file, cached per file for the test session."""
    path = Path(path).resolve()
    stat = path.stat()
    return _load_cached(str(path), stat.st_mtime_ns, stat.st_size)


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """x / sqrt(mean(x^2) + eps) * weight, over the last axis (ggml_rms_norm then ggml_mul)."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rope(x: np.ndarray, positions: np.ndarray, p: LlamaParams) -> np.ndarray:
    """ggml's "normal" RoPE on x of shape (n_tokens, n_heads, head_dim).

    Adjacent pairs (x[2i], x[2i+1]) of the first n_rot dimensions rotate by
    theta = pos * freq_scale * base^(-2i/n_rot); the remaining dimensions pass through.
    """
    i = np.arange(p.n_rot // 2, dtype=np.float64)
    inv_freq = p.rope_base ** (-2.0 * i / p.n_rot)
    theta = (positions.astype(np.float64) * p.rope_freq_scale)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]  # broadcast over heads
    x0, x1 = x[..., 0:p.n_rot:2], x[..., 1:p.n_rot:2]
    out = x.copy()
    out[..., 0:p.n_rot:2] = x0 * cos - x1 * sin
    out[..., 1:p.n_rot:2] = x0 * sin + x1 * cos
    return out


def causal_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, p: LlamaParams) -> np.ndarray:
    """Softmax(q k^T / sqrt(head_dim)) v per head, each position seeing itself and earlier ones.

    q is (n, n_head, head_dim), k and v (n, n_head_kv, head_dim); query head h reads key/value
    head h // (n_head / n_head_kv) (grouped-query attention). Returns (n, n_head * head_dim).
    """
    n = q.shape[0]
    group = p.n_head // p.n_head_kv
    k = np.repeat(k, group, axis=1)  # kv head j serves query heads j*group .. j*group+group-1
    v = np.repeat(v, group, axis=1)
    scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(p.head_dim)
    scores = np.where(np.tril(np.ones((n, n), dtype=bool)), scores, -np.inf)
    scores -= scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)
    return np.einsum("hqk,khd->qhd", probs, v).reshape(n, p.n_head * p.head_dim)


def _matmul(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """x (n, in) times a GGUF weight stored (out, in): y = x W^T, computed in float64."""
    return x @ weight.astype(np.float64).T


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def hidden_states(model: ReferenceModel, tokens: Sequence[int]) -> np.ndarray:
    """The last hidden states (after the output norm), (len(tokens), n_embd), for tokens at
    positions 0, 1, ... of a fresh sequence."""
    p, w = model.params, model.weights
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.ndim != 1 or len(tokens) == 0:
        raise ValueError("tokens must be a non-empty sequence of ids")
    if tokens.min() < 0 or tokens.max() >= p.n_vocab:
        raise ValueError(f"token id out of range [0, {p.n_vocab})")
    n = len(tokens)
    positions = np.arange(n)

    x = w["token_embd.weight"][tokens].astype(np.float64)
    for il in range(p.n_layer):
        blk = {name: w[f"blk.{il}.{name}.weight"] for name in LAYER_TENSORS}
        h = rms_norm(x, blk["attn_norm"], p.rms_eps)
        q = _matmul(h, blk["attn_q"]).reshape(n, p.n_head, p.head_dim)
        k = _matmul(h, blk["attn_k"]).reshape(n, p.n_head_kv, p.head_dim)
        v = _matmul(h, blk["attn_v"]).reshape(n, p.n_head_kv, p.head_dim)
        attn = causal_attention(rope(q, positions, p), rope(k, positions, p), v, p)
        x = x + _matmul(attn, blk["attn_output"])

        h = rms_norm(x, blk["ffn_norm"], p.rms_eps)
        x = x + _matmul(silu(_matmul(h, blk["ffn_gate"])) * _matmul(h, blk["ffn_up"]), blk["ffn_down"])

    return rms_norm(x, w["output_norm.weight"], p.rms_eps)


def forward(model: ReferenceModel, tokens: Sequence[int]) -> np.ndarray:
    """Logits (len(tokens), n_vocab) for tokens at positions 0, 1, ... of a fresh sequence."""
    w = model.weights
    return _matmul(hidden_states(model, tokens), w.get("output.weight", w["token_embd.weight"]))


def reference_logits(path: os.PathLike | str, tokens: Sequence[int]) -> np.ndarray:
    """float64 logits (len(tokens), n_vocab) of the GGUF model at `path` for a fresh sequence."""
    return forward(load_reference_model(path), tokens)
