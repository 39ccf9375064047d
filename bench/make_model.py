"""Write a Llama-shaped GGUF with random weights, for speed measurements (weights' values do not
change the speed). F16 (or F32) is written here, streaming one tensor at a time so a 7B-shaped
file needs little memory; quantize it with `pyllama quantize`.

    python bench/make_model.py tinyllama-1.1b /tmp/tinyllama.F16.gguf
    python bench/make_model.py llama2-7b /tmp/llama2-7b.F16.gguf
    python bench/make_model.py tinyllama-1.1b /tmp/tinyllama-4k.F16.gguf --n-ctx 4096

The vocabulary is the Llama-2-kind SentencePiece model in tests/data, so the files tokenize.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import sentencepiece as spm
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType

SHAPES = {  # n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx
    "tinyllama-1.1b": (2048, 22, 32, 4, 5632, 2048),
    "llama2-7b": (4096, 32, 32, 32, 11008, 4096),
}
TOKENIZER = Path(__file__).resolve().parents[1] / "tests" / "data" / "mistral-tokenizer.model.v1"


def tensor_shapes(n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab):
    """(name, numpy shape) in llama.cpp's order; numpy shape (rows, row length)."""
    kv = n_embd // n_head * n_head_kv
    yield "token_embd.weight", (n_vocab, n_embd)
    for i in range(n_layer):
        yield f"blk.{i}.attn_norm.weight", (n_embd,)
        yield f"blk.{i}.attn_q.weight", (n_embd, n_embd)
        yield f"blk.{i}.attn_k.weight", (kv, n_embd)
        yield f"blk.{i}.attn_v.weight", (kv, n_embd)
        yield f"blk.{i}.attn_output.weight", (n_embd, n_embd)
        yield f"blk.{i}.ffn_norm.weight", (n_embd,)
        yield f"blk.{i}.ffn_gate.weight", (n_ff, n_embd)
        yield f"blk.{i}.ffn_up.weight", (n_ff, n_embd)
        yield f"blk.{i}.ffn_down.weight", (n_embd, n_ff)
    yield "output_norm.weight", (n_embd,)
    yield "output.weight", (n_vocab, n_embd)


def add_vocabulary(w: GGUFWriter) -> int:
    sp = spm.SentencePieceProcessor(model_file=str(TOKENIZER))
    n = sp.get_piece_size()
    types = [2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 1 for i in range(n)]
    w.add_tokenizer_model("llama")
    w.add_token_list([sp.id_to_piece(i) for i in range(n)])
    w.add_token_scores([sp.get_score(i) for i in range(n)])
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shape", choices=SHAPES)
    ap.add_argument("out", type=Path)
    ap.add_argument("--type", choices=["F16", "F32"], default="F16")
    ap.add_argument("--n-ctx", type=int, help="trained context to declare (default: the shape's own); "
                    "a longer one lets attention be measured at long context on a small model")
    args = ap.parse_args()
    n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx = SHAPES[args.shape]
    n_ctx = args.n_ctx or n_ctx
    dtype = np.float16 if args.type == "F16" else np.float32

    w = GGUFWriter(str(args.out), "llama")
    w.add_name(f"random {args.shape}")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(LlamaFileType.MOSTLY_F16 if args.type == "F16" else LlamaFileType.ALL_F32)
    n_vocab = add_vocabulary(w)

    shapes = list(tensor_shapes(n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab))
    for name, shape in shapes:  # norms stay F32, as llama.cpp's converter writes them
        t = np.float32 if len(shape) == 1 else dtype
        w.add_tensor_info(name, shape, np.dtype(t), int(np.prod(shape)) * np.dtype(t).itemsize,
                          raw_dtype=GGMLQuantizationType.F32 if t == np.float32 else GGMLQuantizationType.F16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(0)
    for name, shape in shapes:
        if len(shape) == 1:
            w.write_tensor_data(np.ones(shape, dtype=np.float32))
        else:
            w.write_tensor_data((rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(dtype))
    w.close()
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**30:.2f} GiB)")


if __name__ == "__main__":
    main()
