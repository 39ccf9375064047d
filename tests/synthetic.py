"""Small random Llama models written as GGUF files, for testing the forward pass on every variant.

The files look like what llama.cpp's convert_hf_to_gguf.py writes for a Llama model with a
SentencePiece tokenizer: the same metadata keys and value types, tensors named and shaped in
ggml order, 1-D norm weights in F32 and the 2-D weights in the chosen storage type, and a small
but complete SentencePiece-style vocabulary (<unk>, <s>, </s>, 256 byte tokens, "▁word" pieces)
so a tokenizer can load it. Weights are random with real-model-like scales (projections
N(0, 1/fan_in), norms near 1), so attention is neither uniform nor one-hot and logits are spread
over a few units; llama.cpp loads these files.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, RopeScalingType, TokenType
from gguf.constants import GGML_QUANT_SIZES, GGML_QUANT_VERSION
from gguf.quants import quantize

ARCH = "llama"
SPACE = "\u2581"  # "▁", SentencePiece's word-boundary mark

# Storage types the gguf package can write, and the general.file_type llama.cpp records for each.
FILE_TYPES = {
    GGMLQuantizationType.F32: LlamaFileType.ALL_F32,
    GGMLQuantizationType.F16: LlamaFileType.MOSTLY_F16,
    GGMLQuantizationType.BF16: LlamaFileType.MOSTLY_BF16,
    GGMLQuantizationType.Q4_0: LlamaFileType.MOSTLY_Q4_0,
    GGMLQuantizationType.Q4_1: LlamaFileType.MOSTLY_Q4_1,
    GGMLQuantizationType.Q5_0: LlamaFileType.MOSTLY_Q5_0,
    GGMLQuantizationType.Q5_1: LlamaFileType.MOSTLY_Q5_1,
    GGMLQuantizationType.Q8_0: LlamaFileType.MOSTLY_Q8_0,
}

# Words whose pieces (every prefix of "▁word") follow the letters in the vocabulary, so plain
# English text tokenizes into whole words when n_vocab leaves room for them.
WORDS = ("the", "of", "and", "to", "in", "is", "it", "that", "was", "for", "on", "with", "as",
         "height", "mount", "fuji", "hello", "world", "capital", "france", "paris", "once",
         "upon", "time", "there", "story", "a", "an", "be", "this", "by", "at", "or", "from")
N_SPECIAL = 3   # <unk>=0, <s>=1, </s>=2
N_BYTES = 256   # <0x00> .. <0xFF>, ids 3 .. 258


@dataclass(frozen=True)
class SyntheticConfig:
    n_vocab: int = 320
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: Optional[int] = None           # None: same as n_head (plain multi-head attention)
    n_ff: int = 96
    tied_embeddings: bool = False             # True: no output.weight, logits use token_embd.weight
    rope_freq_base: float = 10000.0
    rope_scaling_factor: Optional[float] = None  # linear scaling: positions are divided by it
    weight_type: GGMLQuantizationType = GGMLQuantizationType.F32  # of every 2-D tensor
    context_length: int = 128
    rms_eps: float = 1e-5
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_head_kv is None else self.n_head_kv

    def validate(self) -> None:
        if self.weight_type not in FILE_TYPES:
            raise ValueError(f"gguf cannot write weights of type {self.weight_type.name}")
        if self.n_embd % self.n_head or (self.head_dim % 2):
            raise ValueError("n_embd must split into n_head heads of even size")
        if self.n_head % self.kv_heads:
            raise ValueError("n_head must be a multiple of n_head_kv")
        block = GGML_QUANT_SIZES[self.weight_type][0]
        if self.n_embd % block or self.n_ff % block:
            raise ValueError(f"{self.weight_type.name} rows need n_embd and n_ff divisible by {block}")
        if self.n_vocab <= N_SPECIAL + N_BYTES:
            raise ValueError(f"n_vocab must exceed {N_SPECIAL + N_BYTES} (specials and byte tokens)")


def _word_pieces() -> Iterator[str]:
    """Vocabulary pieces in decreasing priority, without end: the lone "▁", the letters a-z
    alone and after "▁", every longer prefix of "▁word" for the WORDS (so SentencePiece merges
    can build each word), then generated letter pairs, triples, ..."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    yield SPACE
    for letter in letters:
        yield letter
        yield SPACE + letter
    for word in WORDS:
        for end in range(3, len(word) + 2):
            yield (SPACE + word)[:end]
    for length in itertools.count(2):
        for chars in itertools.product(letters, repeat=length):
            yield "".join(chars)


def synthetic_vocab(n_vocab: int) -> Tuple[List[str], List[float], List[int]]:
    """Tokens, scores and token types as llama.cpp's converter writes a SentencePiece vocab:
    <unk> (UNKNOWN), <s> and </s> (CONTROL) and the byte pieces (BYTE) score 0; the normal
    pieces score -1, -2, ... in id order (earlier pieces merge first)."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(N_BYTES)]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * N_BYTES
    scores = [0.0] * len(tokens)
    seen = set(tokens)
    for piece in _word_pieces():
        if len(tokens) == n_vocab:
            break
        if piece in seen:
            continue
        seen.add(piece)
        tokens.append(piece)
        types.append(TokenType.NORMAL)
        scores.append(-float(len(tokens) - N_SPECIAL - N_BYTES))
    return tokens, scores, [int(t) for t in types]


def _random_weights(cfg: SyntheticConfig) -> dict:
    """Tensor name -> float32 values in numpy order (a ggml tensor ne=[cols, rows] is (rows, cols))."""
    rng = np.random.default_rng(cfg.seed)

    def matrix(rows: int, cols: int) -> np.ndarray:  # a projection reading `cols` inputs
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm() -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(cfg.n_embd)).astype(np.float32)

    # Embeddings (also the output projection when tied) give logits of standard deviation ~2.
    embedding_scale = 2.0 / np.sqrt(cfg.n_embd)
    n_q, n_kv = cfg.n_head * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    weights = {"token_embd.weight":
               (rng.standard_normal((cfg.n_vocab, cfg.n_embd)) * embedding_scale).astype(np.float32)}
    for il in range(cfg.n_layer):
        weights.update({
            f"blk.{il}.attn_norm.weight": norm(),
            f"blk.{il}.attn_q.weight": matrix(n_q, cfg.n_embd),
            f"blk.{il}.attn_k.weight": matrix(n_kv, cfg.n_embd),
            f"blk.{il}.attn_v.weight": matrix(n_kv, cfg.n_embd),
            f"blk.{il}.attn_output.weight": matrix(cfg.n_embd, n_q),
            f"blk.{il}.ffn_norm.weight": norm(),
            f"blk.{il}.ffn_gate.weight": matrix(cfg.n_ff, cfg.n_embd),
            f"blk.{il}.ffn_up.weight": matrix(cfg.n_ff, cfg.n_embd),
            f"blk.{il}.ffn_down.weight": matrix(cfg.n_embd, cfg.n_ff),
        })
    weights["output_norm.weight"] = norm()
    if not cfg.tied_embeddings:
        weights["output.weight"] = (rng.standard_normal((cfg.n_vocab, cfg.n_embd))
                                    * embedding_scale).astype(np.float32)
    return weights


def _add_metadata(writer: GGUFWriter, cfg: SyntheticConfig) -> None:
    writer.add_name(f"synthetic-llama-{cfg.n_embd}x{cfg.n_layer}")
    writer.add_vocab_size(cfg.n_vocab)
    writer.add_context_length(cfg.context_length)
    writer.add_embedding_length(cfg.n_embd)
    writer.add_block_count(cfg.n_layer)
    writer.add_feed_forward_length(cfg.n_ff)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_head_count(cfg.n_head)
    writer.add_head_count_kv(cfg.kv_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_eps)
    writer.add_rope_freq_base(cfg.rope_freq_base)
    if cfg.rope_scaling_factor is not None:
        writer.add_rope_scaling_type(RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(cfg.rope_scaling_factor)
    writer.add_file_type(FILE_TYPES[cfg.weight_type])
    writer.add_quantization_version(GGML_QUANT_VERSION)

    tokens, scores, types = synthetic_vocab(cfg.n_vocab)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)


def write_synthetic_model(path, cfg: SyntheticConfig = SyntheticConfig(), *,
                          edit: Optional[Callable[[dict, dict], None]] = None) -> Path:
    """Write a random Llama model described by `cfg` to `path` (a .gguf file) and return the path.

    edit(metadata, weights), when given, may change the file before it is written (to make broken
    models): metadata maps key -> gguf GGUFValue, weights maps tensor name -> float32 values.
    """
    cfg.validate()
    path = Path(path)
    writer = GGUFWriter(str(path), ARCH)
    _add_metadata(writer, cfg)
    weights = _random_weights(cfg)
    if edit is not None:
        edit(writer.kv_data[0], weights)
    for name, values in weights.items():
        if values.ndim == 1 or cfg.weight_type == GGMLQuantizationType.F32:
            writer.add_tensor(name, values)
        elif cfg.weight_type == GGMLQuantizationType.F16:
            writer.add_tensor(name, values.astype(np.float16))
        else:  # BF16 and the block quantizations: raw bytes the writer stores as that type
            writer.add_tensor(name, quantize(values, cfg.weight_type), raw_dtype=cfg.weight_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
