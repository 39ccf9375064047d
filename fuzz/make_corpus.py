"""Writes the fuzz targets' seed corpora under fuzz/corpus/<target>/ (run once; the files are
committed). Real files give their vocabularies (key-values without the tensors); small models
are made with tests/synthetic.py and tests/gguf_bytes.py; and one hand-made file per known bug class of GGUF
loaders (llama.cpp PR 18674 tensor sizes that wrap, PR 26690 tokenizer arrays of a narrower
element type, PR 26318 padding that wraps, issue 19003 unchecked string lengths, out-of-range
byte tokens) so every campaign starts next to them.

    python fuzz/make_corpus.py DEMO_MODEL GOLDEN_DIR
"""
from __future__ import annotations

import io
import struct
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import gguf_bytes as gb  # noqa: E402
from gguf import GGMLQuantizationType  # noqa: E402
from synthetic import SyntheticConfig, write_synthetic_model  # noqa: E402

CORPUS = ROOT / "fuzz" / "corpus"
Q8 = GGMLQuantizationType.Q8_0


def vocabulary_only(path: Path) -> bytes:
    """The file's key-values (vocabulary included) as a GGUF without tensors."""
    import gguf
    r = gguf.GGUFReader(path)
    fields = [f for f in r.fields.values() if not f.name.startswith("GGUF.")]
    last = max(fields, key=lambda f: f.offset)
    end = last.offset + sum(p.nbytes for p in last.parts)
    start = min(f.offset for f in fields)
    with open(path, "rb") as fh:
        data = fh.read(end)
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(fields)) + data[start:end]


def tiny_model_kvs(n_layer: int = 1, n_embd: int = 32, n_head: int = 2, n_ff: int = 32,
                   extra: tuple = ()) -> list:
    return [
        gb.kv("general.architecture", gb.STRING, "llama"),
        gb.kv("llama.context_length", gb.UINT32, 64),
        gb.kv("llama.embedding_length", gb.UINT32, n_embd),
        gb.kv("llama.block_count", gb.UINT64 if n_layer >> 32 else gb.UINT32, n_layer),
        gb.kv("llama.feed_forward_length", gb.UINT32, n_ff),
        gb.kv("llama.attention.head_count", gb.UINT32, n_head),
        gb.kv("llama.attention.head_count_kv", gb.UINT32, n_head),
        gb.kv("llama.attention.layer_norm_rms_epsilon", gb.FLOAT32, 1e-5),
        *extra,
    ]


def tiny_model_tensors(n_vocab: int = 4, n_layer: int = 1, n_embd: int = 32, n_ff: int = 32,
                       q8: bool = True) -> list:
    """A vocabulary-less Llama model: F32 norms and embedding, Q8_0 (or F32) matrices."""
    def mat(name: str, n_in: int, n_out: int) -> gb.Tensor:
        if not q8:
            return gb.Tensor.f32(name, [n_in, n_out])
        block = struct.pack("<e", 0.01) + bytes(range(32))
        return gb.Tensor(name, [n_in, n_out], gb.Q8_0, block * (n_in // 32 * n_out))
    ts = [gb.Tensor.f32("token_embd.weight", [n_embd, n_vocab]), gb.Tensor.f32("output_norm.weight", [n_embd])]
    for i in range(n_layer):
        p = f"blk.{i}."
        ts += [gb.Tensor.f32(p + "attn_norm.weight", [n_embd]), mat(p + "attn_q.weight", n_embd, n_embd),
               mat(p + "attn_k.weight", n_embd, n_embd), mat(p + "attn_v.weight", n_embd, n_embd),
               mat(p + "attn_output.weight", n_embd, n_embd), gb.Tensor.f32(p + "ffn_norm.weight", [n_embd]),
               mat(p + "ffn_gate.weight", n_embd, n_ff), mat(p + "ffn_up.weight", n_embd, n_ff),
               mat(p + "ffn_down.weight", n_ff, n_embd)]
    return ts


def vocab_kvs(tokens, types, scores=None, model="llama", types_elem=gb.INT32, scores_elem=gb.FLOAT32) -> list:
    out = [gb.kv("tokenizer.ggml.model", gb.STRING, model), gb.kv_array("tokenizer.ggml.tokens", gb.STRING, tokens),
           gb.kv_array("tokenizer.ggml.token_type", types_elem, types)]
    if scores is not None:
        out.append(gb.kv_array("tokenizer.ggml.scores", scores_elem, scores))
    return out


def bug_classes() -> dict:
    """name -> bytes: one hand-made file per bug class."""
    ok_tokens = ["<unk>", "<s>", "</s>", "<0x41>", "\u2581a"]
    ok_types = [2, 3, 3, 6, 1]
    return {
        # PR 18674: element count fits int64 but the byte size wraps uint64 (F32: 2^62 * 4).
        "size_wraps.gguf": gb.build([], [gb.Tensor("t", [1 << 31, 1 << 31], gb.F32, b"")]),
        "elements_wrap.gguf": gb.build([], [gb.Tensor("t", [1 << 32, 1 << 32, 4], gb.F32, b"")]),
        # PR 26690: token types as UINT8 / scores as UINT8 / tokens as INT32 instead of STRING.
        "narrow_token_type.gguf": gb.build(vocab_kvs(ok_tokens, [2, 3, 3, 6, 1], types_elem=gb.UINT8)),
        "narrow_scores.gguf": gb.build(vocab_kvs(ok_tokens, ok_types, [0, 1, 2, 3, 4], scores_elem=gb.UINT8)),
        "tokens_not_strings.gguf": gb.build([gb.kv("tokenizer.ggml.model", gb.STRING, "llama"),
                                             gb.kv_array("tokenizer.ggml.tokens", gb.INT32, [1, 2, 3])]),
        "short_token_type.gguf": gb.build(vocab_kvs(ok_tokens, [2, 3])),
        # PR 26318: an alignment near 2^32 makes the padding computation wrap in 32 bits.
        "padding_wraps.gguf": gb.build([gb.kv("general.alignment", gb.UINT32, 1 << 31)],
                                       [gb.Tensor.f32("t", [8])], alignment=1 << 31)[:4096],
        "alignment_not_pow2.gguf": gb.build([gb.kv("general.alignment", gb.UINT32, 0xFFFFFFFF)],
                                            [gb.Tensor.f32("t", [8])], alignment=32),
        # Issue 19003: string lengths (key, value, array element) far beyond the file.
        "key_length_huge.gguf": gb.build([gb.kv_raw(b"", b"")])[:24] + struct.pack("<Q", 1 << 62) + b"abc",
        "string_length_huge.gguf": gb.build([gb.kv_raw("general.name", struct.pack("<IQ", gb.STRING, 2**64 - 1))]),
        "array_length_huge.gguf": gb.build([gb.kv_raw("a", struct.pack("<IIQ", gb.ARRAY, gb.STRING, 2**63))]),
        # Out-of-range byte tokens: BYTE-typed pieces that are not <0x00>..<0xFF>.
        "byte_token_out_of_range.gguf": gb.build(vocab_kvs(["<unk>", "<s>", "</s>", "<0x100>", "<0xZZ>"],
                                                           [2, 3, 3, 6, 6], [0.0] * 5)),
        "byte_token_gpt2.gguf": gb.build(vocab_kvs(["a", "b", "\u0100\u0100"], [1, 6, 1], model="gpt2")
                                         + [gb.kv_array("tokenizer.ggml.merges", gb.STRING, ["a b", "x"])]),
        # Loader: hyper-parameters that disagree with the tensors, or would allocate before checking.
        "block_count_huge.gguf": gb.build(tiny_model_kvs(n_layer=1 << 40), tiny_model_tensors()),
        "block_count_more_than_tensors.gguf": gb.build(tiny_model_kvs(n_layer=3), tiny_model_tensors()),
        "head_dim_overflow.gguf": gb.build(tiny_model_kvs(extra=(gb.kv("llama.attention.key_length", gb.UINT64, 1 << 40),)),
                                           tiny_model_tensors()),
        "embd_disagrees.gguf": gb.build(tiny_model_kvs(n_embd=64, n_head=2), tiny_model_tensors()),
        "missing_tensor.gguf": gb.build(tiny_model_kvs(), tiny_model_tensors()[:-1]),
        "vocab_size_disagrees.gguf": gb.build(tiny_model_kvs(extra=(gb.kv("llama.vocab_size", gb.UINT32, 5),)),
                                              tiny_model_tensors()),
    }


def pth_seed(weights: dict) -> bytes:
    import torch
    buf = io.BytesIO()
    torch.save(weights, buf)
    return buf.getvalue()


def main(demo: Path, golden: Path) -> None:
    for d in ("gguf", "loader", "tokenizer", "pth", "safetensors"):
        (CORPUS / d).mkdir(parents=True, exist_ok=True)
    gguf_dir, loader_dir, tok_dir = CORPUS / "gguf", CORPUS / "loader", CORPUS / "tokenizer"

    # Real vocabularies: the files' key-values without the tensors.
    (tok_dir / "smollm2_vocab.gguf").write_bytes(vocabulary_only(demo))
    (tok_dir / "tinyllama_spm_vocab.gguf").write_bytes(vocabulary_only(golden / "tiny-llama-256.Q4_K_M.gguf"))

    # Small whole models.
    (loader_dir / "tiny_q8.gguf").write_bytes(gb.build(tiny_model_kvs(), tiny_model_tensors()))
    (loader_dir / "tiny_f32_2layers.gguf").write_bytes(
        gb.build(tiny_model_kvs(n_layer=2, n_embd=8, n_ff=16), tiny_model_tensors(n_layer=2, n_embd=8, n_ff=16, q8=False)))
    (loader_dir / "tiny_tied_rope.gguf").write_bytes(gb.build(
        tiny_model_kvs(extra=(gb.kv("llama.rope.dimension_count", gb.UINT32, 8),
                              gb.kv("llama.rope.scaling.type", gb.STRING, "linear"),
                              gb.kv("llama.rope.scaling.factor", gb.FLOAT32, 2.0))),
        tiny_model_tensors() + [gb.Tensor.f32("rope_freqs.weight", [4]), gb.Tensor.f32("output.weight", [32, 4])]))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SyntheticConfig(n_vocab=262, n_embd=32, n_layer=1, n_head=2, n_ff=32, weight_type=Q8)
        model = write_synthetic_model(Path(tmp) / "m.gguf", cfg)
        (tok_dir / "synthetic_spm.gguf").write_bytes(model.read_bytes())
        small = Path(tmp) / "small.gguf"
        gb.write_small_model(small)
        (gguf_dir / "small_model.gguf").write_bytes(small.read_bytes())
    (gguf_dir / "valid_kinds.gguf").write_bytes(gb.build(gb.valid_kvs(), gb.valid_tensors()))
    (gguf_dir / "tiny_q8.gguf").write_bytes((loader_dir / "tiny_q8.gguf").read_bytes())
    for name, data in bug_classes().items():
        target = tok_dir if name.startswith(("narrow", "tokens", "short", "byte")) else loader_dir if name.startswith(
            ("block", "head", "embd", "missing", "vocab")) else gguf_dir
        (target / name).write_bytes(data)

    # Checkpoints: torch.save'd state dicts and safetensors files, tiny.
    import torch
    from safetensors.torch import save as st_save
    w = {"tok_embeddings.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4),
         "norm.weight": torch.ones(4, dtype=torch.float16),
         "layers.0.attention.wq.weight": torch.zeros(4, 4, dtype=torch.bfloat16)}
    (CORPUS / "pth" / "state_dict.pth").write_bytes(pth_seed(w))
    (CORPUS / "pth" / "shared_storage.pth").write_bytes(pth_seed({"a": w["tok_embeddings.weight"],
                                                                  "b": w["tok_embeddings.weight"][1:]}))
    (CORPUS / "pth" / "int_buffer.pth").write_bytes(pth_seed({"x": torch.arange(3), "s": torch.tensor(1.0)}))
    (CORPUS / "safetensors" / "weights.safetensors").write_bytes(st_save(w, metadata={"format": "pt"}))
    (CORPUS / "safetensors" / "scalar_and_int.safetensors").write_bytes(
        st_save({"i": torch.arange(5), "s": torch.tensor(2.0)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
