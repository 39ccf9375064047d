#!/usr/bin/env python3
"""Quantize synthetic Llama models with llama.cpp and with pyllama, and compare the files byte for
byte (every file type pyllama writes, for shapes that exercise the per-tensor type rule).

A developer tool: it runs llama.cpp's quantizer (llama_model_quantize) through llama-cpp-python,
so it runs with the Python that has llama_cpp, never in tests or CI; the models are written and
quantized by pyllama in a second Python that has pyllama and the gguf package:

    PYTHON_WITH_LLAMA_CPP tools/compare_quantize_with_llama_cpp.py --pyllama-python PYTHON [--work DIR]

Models (random F16 weights, tests/synthetic.py): 32 and 22 layers (7B- and 1.1B-shaped, the
latter with grouped-query attention and with tied embeddings), 80 layers with and without
grouped-query attention (llama.cpp's 70B rule), rows of 64 and of 272 elements (fallback types),
BF16 weights, and eight experts.
"""
from __future__ import annotations

import argparse
import ctypes
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q4_K_S": 14,
              "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18, "BF16": 32}
MODELS = {  # name -> SyntheticConfig arguments
    "L32": "n_layer=32, n_head=8, n_ff=512",
    "L22gqa": "n_layer=22, n_head=8, n_head_kv=2, n_ff=512",
    "L22tied": "n_layer=22, n_head=8, n_head_kv=2, n_ff=512, tied_embeddings=True",
    "L80gqa": "n_layer=80, n_head=8, n_head_kv=2, n_ff=256",
    "L80mha": "n_layer=80, n_head=8, n_ff=256",
    "E64": "n_embd=64, n_layer=8, n_head=4, n_ff=96",
    "E272": "n_embd=272, n_layer=4, n_head=8, n_ff=272",
    "L22bf16": "n_layer=22, n_head=8, n_head_kv=2, n_ff=512, weight_type=T.BF16",
    "MoE8": None,  # 8 layers of 8 experts (3-D expert tensors, a router): WRITE_MOE
}

WRITE_MODEL = """
import sys
sys.path.insert(0, {tests!r})
from gguf import GGMLQuantizationType as T
from synthetic import SyntheticConfig, write_synthetic_model
args = dict(n_vocab=320, n_embd=256, weight_type=T.F16)
args.update(dict({config}))
write_synthetic_model({path!r}, SyntheticConfig(**args))
"""

# A Mixtral-like model; tests/synthetic.py has no experts, so it is written here.
WRITE_MOE = """
import sys
sys.path.insert(0, {tests!r})
import numpy as np
from gguf import GGUFWriter
from synthetic import synthetic_vocab
rng = np.random.default_rng(0)
n_embd, n_ff, n_layer, n_exp, n_vocab, n_head, n_kv = 256, 256, 8, 8, 320, 8, 2
w = GGUFWriter({path!r}, "llama")
w.add_vocab_size(n_vocab); w.add_context_length(128); w.add_embedding_length(n_embd)
w.add_block_count(n_layer); w.add_feed_forward_length(n_ff); w.add_rope_dimension_count(n_embd // n_head)
w.add_head_count(n_head); w.add_head_count_kv(n_kv); w.add_layer_norm_rms_eps(1e-5)
w.add_expert_count(n_exp); w.add_expert_used_count(2); w.add_file_type(1)
tokens, scores, types = synthetic_vocab(n_vocab)
w.add_tokenizer_model("llama"); w.add_token_list(tokens); w.add_token_scores(scores); w.add_token_types(types)
m = lambda *shape: (rng.standard_normal(shape) * 0.05).astype(np.float16)
w.add_tensor("token_embd.weight", m(n_vocab, n_embd))
for i in range(n_layer):
    b = f"blk.{{i}}."
    w.add_tensor(b + "attn_norm.weight", np.ones(n_embd, np.float32))
    w.add_tensor(b + "attn_q.weight", m(n_embd, n_embd))
    w.add_tensor(b + "attn_k.weight", m(n_embd // n_head * n_kv, n_embd))
    w.add_tensor(b + "attn_v.weight", m(n_embd // n_head * n_kv, n_embd))
    w.add_tensor(b + "attn_output.weight", m(n_embd, n_embd))
    w.add_tensor(b + "ffn_norm.weight", np.ones(n_embd, np.float32))
    w.add_tensor(b + "ffn_gate_inp.weight", m(n_exp, n_embd).astype(np.float32))
    w.add_tensor(b + "ffn_gate_exps.weight", m(n_exp, n_ff, n_embd))
    w.add_tensor(b + "ffn_down_exps.weight", m(n_exp, n_embd, n_ff))
    w.add_tensor(b + "ffn_up_exps.weight", m(n_exp, n_ff, n_embd))
w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
w.add_tensor("output.weight", m(n_vocab, n_embd))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
"""


def llama_cpp_quantize(src: Path, dst: Path, file_type: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FILE_TYPES[file_type]
    params.nthread = 2
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)) != 0:
        raise RuntimeError(f"llama.cpp failed to quantize {src} to {file_type}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pyllama-python", required=True, help="a Python with pyllama and the gguf package")
    ap.add_argument("--work", type=Path, default=None, help="folder for the models (default: a temporary one)")
    args = ap.parse_args()

    import llama_cpp

    llama_cpp.llama_backend_init()
    quiet = llama_cpp.llama_log_callback(lambda level, text, user: None)  # kept alive while in use
    llama_cpp.llama_log_set(quiet, ctypes.c_void_p())
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        failures = 0
        for name, config in MODELS.items():
            src = work / f"{name}.gguf"
            template = WRITE_MODEL if config is not None else WRITE_MOE
            code = template.format(tests=str(REPO / "tests"), config=config, path=str(src))
            subprocess.run([args.pyllama_python, "-c", code], check=True)
            for file_type in FILE_TYPES:
                ref, ours = work / f"{name}.{file_type}.llama-cpp.gguf", work / f"{name}.{file_type}.pyllama.gguf"
                llama_cpp_quantize(src, ref, file_type)
                subprocess.run([args.pyllama_python, "-m", "pyllama.cli", "quantize", str(src), str(ours),
                                file_type, "--force", "--threads", "2"], check=True, stderr=subprocess.DEVNULL)
                same = ref.read_bytes() == ours.read_bytes()
                failures += not same
                print(f"{name:8} {file_type:7} {'identical' if same else 'DIFFERENT'}", flush=True)
                ref.unlink()
                ours.unlink()
        print(f"{failures} of {len(MODELS) * len(FILE_TYPES)} files differ")
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
