"""Tiny random Llama checkpoints written with PyTorch the way Meta and Hugging Face ship them,
for testing the converter, and a float64 numpy forward pass computed from their own tensors.

Meta layout (params.json + consolidated.NN.pth): fairscale model-parallel shards, column-parallel
layers split by rows, row-parallel ones and the embedding by columns, norms replicated; RoPE on
adjacent pairs as complex numbers (Meta's apply_rotary_emb).
Hugging Face layout (config.json + model.safetensors / pytorch_model.bin): one state dict, maybe
sharded by whole tensors with an index; RoPE with rotate_half on the two halves of each head.
The reference forward pass follows each format's own modeling code, so it knows nothing of GGUF.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch

DATA = Path(__file__).parent / "data"
SPM_MODEL = DATA / "mistral-tokenizer.model.v1"  # 32000 pieces, Llama 2 style


@dataclass(frozen=True)
class TinyConfig:
    n_vocab: int = 32000
    dim: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 96
    rms_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_linear: Optional[float] = None   # Hugging Face linear rope scaling factor
    # Hugging Face "llama3" rope scaling: (factor, low_freq_factor, high_freq_factor,
    # original_max_position_embeddings)
    rope_llama3: Optional[Tuple[float, float, float, int]] = None
    tied: bool = False                    # Hugging Face: no lm_head, tie_word_embeddings
    dtype: torch.dtype = torch.float32
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head


# --- weights ------------------------------------------------------------------------------------
META_LAYER = {"attn_norm": "attention_norm.weight", "q": "attention.wq.weight", "k": "attention.wk.weight",
              "v": "attention.wv.weight", "o": "attention.wo.weight", "ffn_norm": "ffn_norm.weight",
              "gate": "feed_forward.w1.weight", "up": "feed_forward.w3.weight", "down": "feed_forward.w2.weight"}
META_GLOBAL = {"embed": "tok_embeddings.weight", "norm": "norm.weight", "output": "output.weight"}
HF_LAYER = {"attn_norm": "input_layernorm.weight", "q": "self_attn.q_proj.weight", "k": "self_attn.k_proj.weight",
            "v": "self_attn.v_proj.weight", "o": "self_attn.o_proj.weight",
            "ffn_norm": "post_attention_layernorm.weight", "gate": "mlp.gate_proj.weight",
            "up": "mlp.up_proj.weight", "down": "mlp.down_proj.weight"}
HF_GLOBAL = {"embed": "model.embed_tokens.weight", "norm": "model.norm.weight", "output": "lm_head.weight"}


def random_weights(cfg: TinyConfig) -> Dict[str, torch.Tensor]:
    """Role -> tensor ("embed", "norm", "output", "L{i}.q" ...), with real-model-like scales."""
    g = torch.Generator().manual_seed(cfg.seed)

    def matrix(rows: int, cols: int) -> torch.Tensor:
        return torch.randn(rows, cols, generator=g) / cols ** 0.5

    def norm() -> torch.Tensor:
        return 1.0 + 0.1 * torch.randn(cfg.dim, generator=g)

    q, kv = cfg.n_head * cfg.head_dim, cfg.n_head_kv * cfg.head_dim
    w = {"embed": torch.randn(cfg.n_vocab, cfg.dim, generator=g) * 2 / cfg.dim ** 0.5, "norm": norm(),
         "output": torch.randn(cfg.n_vocab, cfg.dim, generator=g) * 2 / cfg.dim ** 0.5}
    for i in range(cfg.n_layer):
        w.update({f"L{i}.attn_norm": norm(), f"L{i}.q": matrix(q, cfg.dim), f"L{i}.k": matrix(kv, cfg.dim),
                  f"L{i}.v": matrix(kv, cfg.dim), f"L{i}.o": matrix(cfg.dim, q), f"L{i}.ffn_norm": norm(),
                  f"L{i}.gate": matrix(cfg.n_ff, cfg.dim), f"L{i}.up": matrix(cfg.n_ff, cfg.dim),
                  f"L{i}.down": matrix(cfg.dim, cfg.n_ff)})
    if cfg.tied:
        del w["output"]
    return {k: v.to(cfg.dtype) for k, v in w.items()}


def named(weights: Dict[str, torch.Tensor], layer_names: dict, global_names: dict,
          layer_prefix: str) -> Dict[str, torch.Tensor]:
    out = {}
    for role, t in weights.items():
        if role.startswith("L"):
            i, part = role[1:].split(".")
            out[f"{layer_prefix}{i}.{layer_names[part]}"] = t
        else:
            out[global_names[role]] = t
    return out


def hf_permute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Hugging Face's convert_llama_weights_to_hf permutation of a Meta q/k projection."""
    rows, cols = w.shape
    return w.view(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


# --- writers ------------------------------------------------------------------------------------
def write_meta(folder: Path, cfg: TinyConfig, weights: Dict[str, torch.Tensor], n_shards: int = 2,
               tokenizer: bool = True) -> Path:
    """params.json, consolidated.00.pth .. and tokenizer.model (Llama 2 style)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = named(weights, META_LAYER, META_GLOBAL, "layers.")
    shards = [{} for _ in range(n_shards)]
    for name, t in state.items():
        if t.dim() == 1:
            parts = [t] * n_shards
        elif name == "tok_embeddings.weight" or name.endswith((".attention.wo.weight", ".feed_forward.w2.weight")):
            parts = torch.chunk(t, n_shards, dim=1)
        else:
            parts = torch.chunk(t, n_shards, dim=0)
        for shard, part in zip(shards, parts):
            shard[name] = part.clone()  # its own storage, as each GPU saved its slice
    shards[0]["rope.freqs"] = torch.ones(cfg.head_dim // 2)  # old Meta checkpoints carry this
    shards[1 % n_shards]["rope.freqs"] = torch.ones(cfg.head_dim // 2)
    for i, shard in enumerate(shards):
        torch.save(shard, folder / f"consolidated.{i:02d}.pth")
    params = {"dim": cfg.dim, "multiple_of": 32, "n_heads": cfg.n_head, "n_kv_heads": cfg.n_head_kv,
              "n_layers": cfg.n_layer, "norm_eps": cfg.rms_eps, "vocab_size": -1, "rope_theta": cfg.rope_theta}
    (folder / "params.json").write_text(json.dumps(params))
    if tokenizer:
        shutil.copy(SPM_MODEL, folder / "tokenizer.model")
    return folder


def hf_config(cfg: TinyConfig, **extra) -> dict:
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": cfg.n_vocab,
              "hidden_size": cfg.dim, "intermediate_size": cfg.n_ff, "num_hidden_layers": cfg.n_layer,
              "num_attention_heads": cfg.n_head, "num_key_value_heads": cfg.n_head_kv,
              "max_position_embeddings": 256, "rms_norm_eps": cfg.rms_eps, "rope_theta": cfg.rope_theta,
              "hidden_act": "silu", "tie_word_embeddings": cfg.tied, "bos_token_id": 1, "eos_token_id": 2,
              "torch_dtype": str(cfg.dtype).replace("torch.", "")}
    if cfg.rope_linear is not None:
        config["rope_scaling"] = {"type": "linear", "factor": cfg.rope_linear}
    if cfg.rope_llama3 is not None:
        factor, low, high, original = cfg.rope_llama3
        config["rope_scaling"] = {"rope_type": "llama3", "factor": factor, "low_freq_factor": low,
                                  "high_freq_factor": high, "original_max_position_embeddings": original}
    config.update(extra)
    return config


def write_hf(folder: Path, cfg: TinyConfig, weights: Dict[str, torch.Tensor], layout: str = "safetensors",
             tokenizer: bool = True) -> Path:
    """config.json, weights ("safetensors", "sharded" with an index, or "bin") and
    tokenizer.model + tokenizer_config.json. `weights` are in Hugging Face's q/k layout."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in named(weights, HF_LAYER, HF_GLOBAL, "model.layers.").items()}
    if layout == "safetensors":
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    elif layout == "sharded":
        names = sorted(state)
        halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
                  "model-00002-of-00002.safetensors": names[len(names) // 2:]}
        for file, part in halves.items():
            save_file({n: state[n] for n in part}, str(folder / file), metadata={"format": "pt"})
        weight_map = {n: f for f, part in halves.items() for n in part}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    elif layout == "bin":
        torch.save(state, folder / "pytorch_model.bin")
    else:
        raise ValueError(layout)
    (folder / "config.json").write_text(json.dumps(hf_config(cfg)))
    if tokenizer:
        shutil.copy(SPM_MODEL, folder / "tokenizer.model")
        (folder / "tokenizer_config.json").write_text(json.dumps({
            "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
            "unk_token": "<unk>", "chat_template": "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}",
        }))
    return folder


# --- reference forward pass ------------------------------------------------------------------
def _rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def meta_rope(x: np.ndarray, pos: np.ndarray, cfg: TinyConfig) -> np.ndarray:
    """Meta's apply_rotary_emb: pairs (2i, 2i+1) as complex numbers times e^(i pos theta_i)."""
    hd = x.shape[-1]
    freqs = 1.0 / cfg.rope_theta ** (np.arange(0, hd, 2)[: hd // 2] / hd)
    rot = np.exp(1j * np.outer(pos, freqs))[:, None, :]
    xc = (x[..., 0::2] + 1j * x[..., 1::2]) * rot
    return np.stack([xc.real, xc.imag], axis=-1).reshape(x.shape)


def _llama3_inv_freq(inv_freq: np.ndarray, cfg: TinyConfig) -> np.ndarray:
    """transformers' _compute_llama3_parameters."""
    factor, low, high, original = cfg.rope_llama3
    wavelen = 2 * np.pi / inv_freq
    scaled = np.where(wavelen > original / low, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < original / high) & ~(wavelen > original / low)
    return np.where(medium, smoothed, scaled)


def hf_rope(x: np.ndarray, pos: np.ndarray, cfg: TinyConfig) -> np.ndarray:
    """Hugging Face's LlamaRotaryEmbedding + apply_rotary_pos_emb (rotate_half)."""
    hd = x.shape[-1]
    inv_freq = 1.0 / cfg.rope_theta ** (np.arange(0, hd, 2) / hd)
    if cfg.rope_llama3 is not None:
        inv_freq = _llama3_inv_freq(inv_freq, cfg)
    angles = np.outer(pos / (cfg.rope_linear or 1.0), inv_freq)
    emb = np.concatenate([angles, angles], axis=-1)
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    rotate_half = np.concatenate([-x[..., hd // 2:], x[..., : hd // 2]], axis=-1)
    return x * cos + rotate_half * sin


def reference_logits(weights: Dict[str, torch.Tensor], cfg: TinyConfig, tokens, rope) -> np.ndarray:
    """float64 logits of the checkpoint's own weights (roles as random_weights names them)."""
    w = {k: v.to(torch.float64).numpy() for k, v in weights.items()}
    n, hd = len(tokens), cfg.head_dim
    pos = np.arange(n, dtype=np.float64)
    x = w["embed"][np.asarray(tokens)]
    group = cfg.n_head // cfg.n_head_kv
    for i in range(cfg.n_layer):
        h = _rms_norm(x, w[f"L{i}.attn_norm"], cfg.rms_eps)
        q = rope((h @ w[f"L{i}.q"].T).reshape(n, cfg.n_head, hd), pos, cfg)
        k = rope((h @ w[f"L{i}.k"].T).reshape(n, cfg.n_head_kv, hd), pos, cfg)
        v = (h @ w[f"L{i}.v"].T).reshape(n, cfg.n_head_kv, hd)
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd)
        scores = np.where(np.tril(np.ones((n, n), bool)), scores, -np.inf)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        x = x + np.einsum("hqk,khd->qhd", p, v).reshape(n, -1) @ w[f"L{i}.o"].T
        h = _rms_norm(x, w[f"L{i}.ffn_norm"], cfg.rms_eps)
        gate = h @ w[f"L{i}.gate"].T
        x = x + (gate / (1 + np.exp(-gate)) * (h @ w[f"L{i}.up"].T)) @ w[f"L{i}.down"].T
    return _rms_norm(x, w["norm"], cfg.rms_eps) @ w.get("output", w["embed"]).T
