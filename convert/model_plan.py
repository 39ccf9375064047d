"""What a conversion writes: the Llama hyperparameters, the GGUF tensors with their sources,
and the vocabulary; plus the checks every source format shares."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .._core import PyllamaError
from .gguf_writer import Metadata
from .tensors import STORED_DTYPES, RawFile, SourceTensor
from .vocab import Vocabulary

ARCH = "llama"
LAYER_TENSORS = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                 "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")


@dataclass
class LlamaParams:
    n_vocab: int
    n_ctx: int
    n_embd: int
    n_ff: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    rms_eps: float
    rope_theta: Optional[float] = None          # written only when the source states it
    rope_linear_factor: Optional[float] = None  # linear RoPE scaling
    # Llama 3.1-style RoPE scaling: per-frequency divisors, written as the rope_freqs tensor.
    rope_freq_factors: Optional[np.ndarray] = None

    def validate(self, where: str) -> None:
        for name in ("n_vocab", "n_ctx", "n_embd", "n_ff", "n_layer", "n_head", "n_head_kv", "head_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise PyllamaError(f"{where}: {name} must be a positive integer, got {value!r}")
        if self.n_head % self.n_head_kv:
            raise PyllamaError(f"{where}: {self.n_head} attention heads are not a multiple of "
                               f"{self.n_head_kv} key-value heads")
        if self.head_dim % 2:
            raise PyllamaError(f"{where}: head size {self.head_dim} is odd; RoPE rotates pairs")
        if not (isinstance(self.rms_eps, (int, float)) and self.rms_eps > 0):
            raise PyllamaError(f"{where}: RMS norm epsilon must be positive, got {self.rms_eps!r}")
        for name in ("rope_theta", "rope_linear_factor"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise PyllamaError(f"{where}: {name} must be positive, got {value!r}")

    def expected_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """GGUF tensor name -> numpy shape, for every tensor a llama model needs (output optional)."""
        q, kv = self.n_head * self.head_dim, self.n_head_kv * self.head_dim
        per_layer = {"attn_norm": (self.n_embd,), "attn_q": (q, self.n_embd), "attn_k": (kv, self.n_embd),
                     "attn_v": (kv, self.n_embd), "attn_output": (self.n_embd, q), "ffn_norm": (self.n_embd,),
                     "ffn_gate": (self.n_ff, self.n_embd), "ffn_up": (self.n_ff, self.n_embd),
                     "ffn_down": (self.n_embd, self.n_ff)}
        shapes = {"token_embd.weight": (self.n_vocab, self.n_embd), "output_norm.weight": (self.n_embd,),
                  "output.weight": (self.n_vocab, self.n_embd)}
        if self.rope_freq_factors is not None:
            shapes["rope_freqs.weight"] = (self.head_dim // 2,)
        for il in range(self.n_layer):
            shapes.update({f"blk.{il}.{name}.weight": shape for name, shape in per_layer.items()})
        return shapes

    def add_to(self, md: Metadata) -> None:
        md.add_uint32(f"{ARCH}.vocab_size", self.n_vocab)
        md.add_uint32(f"{ARCH}.context_length", self.n_ctx)
        md.add_uint32(f"{ARCH}.embedding_length", self.n_embd)
        md.add_uint32(f"{ARCH}.block_count", self.n_layer)
        md.add_uint32(f"{ARCH}.feed_forward_length", self.n_ff)
        md.add_uint32(f"{ARCH}.rope.dimension_count", self.head_dim)
        md.add_uint32(f"{ARCH}.attention.head_count", self.n_head)
        md.add_uint32(f"{ARCH}.attention.head_count_kv", self.n_head_kv)
        md.add_float32(f"{ARCH}.attention.layer_norm_rms_epsilon", self.rms_eps)
        md.add_uint32(f"{ARCH}.attention.key_length", self.head_dim)
        md.add_uint32(f"{ARCH}.attention.value_length", self.head_dim)
        if self.rope_theta is not None:
            md.add_float32(f"{ARCH}.rope.freq_base", self.rope_theta)
        if self.rope_linear_factor is not None:
            md.add_string(f"{ARCH}.rope.scaling.type", "linear")
            md.add_float32(f"{ARCH}.rope.scaling.factor", self.rope_linear_factor)


@dataclass
class ModelPlan:
    """A checkpoint ready to write: `tensors` maps GGUF names to their sources."""
    name: str
    source_format: str              # "meta" or "hf"
    params: LlamaParams
    tensors: Dict[str, SourceTensor]
    vocab: Vocabulary
    files: List[RawFile] = field(default_factory=list)  # open checkpoint files, closed by close()

    def check(self) -> None:
        """Every tensor the model needs is there with the right shape and a readable type, and
        nothing else is."""
        expected = self.params.expected_shapes()
        for name, shape in expected.items():
            t = self.tensors.get(name)
            if t is None:
                if name == "output.weight":
                    continue  # tied to the token embeddings
                raise PyllamaError(f"the checkpoint has no tensor for {name}")
            if t.shape != shape:
                raise PyllamaError(f"{t.where}: shape {t.shape}, but the model's parameters give "
                                   f"{shape} for {name}")
            if t.dtype not in STORED_DTYPES:
                raise PyllamaError(f"{t.where}: type {t.dtype} cannot be converted (F32, F16 or BF16 expected)")
        extra = sorted(set(self.tensors) - set(expected))
        if extra:
            raise PyllamaError(f"tensors that a llama model does not have: {extra}")

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files.clear()
