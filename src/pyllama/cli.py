"""The `pyllama` command line."""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional


def _generate(args: argparse.Namespace) -> int:
    from .demo import demo_model_path
    from .model import Model

    path = args.model or demo_model_path()
    prompt = args.prompt if args.prompt is not None else sys.stdin.read()
    model = Model(path, n_ctx=args.n_ctx, n_threads=args.threads)
    for chunk in model.generate(prompt, max_tokens=args.max_tokens, temperature=args.temperature,
                                top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                                repeat_penalty=args.repeat_penalty, seed=args.seed, stop=args.stop,
                                special=args.special):
        sys.stdout.write(chunk.text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from . import convert

    summary = convert(args.src, args.dst, type=args.type, tokenizer_model=args.tokenizer_model,
                      force=args.force, progress=True, n_threads=args.threads)
    print(summary)
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from ._quantize import quantize

    start = time.perf_counter()
    dst = quantize(args.src, args.dst, args.type, n_threads=args.threads, force=args.force, progress=True)
    print(f"{dst}: {args.type.upper()}, {os.path.getsize(dst) / 2**20:.1f} MiB from "
          f"{os.path.getsize(args.src) / 2**20:.1f} MiB in {time.perf_counter() - start:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyllama", description="Run Llama-family GGUF models on the CPU.")
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="continue a prompt")
    gen.add_argument("prompt", nargs="?", help="the prompt (read from standard input if omitted)")
    gen.add_argument("-m", "--model", help="GGUF model file (default: the SmolLM2-135M demo model, "
                                           "downloaded on first use)")
    gen.add_argument("-n", "--max-tokens", type=int, default=256)
    gen.add_argument("--temperature", type=float, default=0.8)
    gen.add_argument("--top-k", type=int, default=40)
    gen.add_argument("--top-p", type=float, default=0.95)
    gen.add_argument("--min-p", type=float, default=0.05)
    gen.add_argument("--repeat-penalty", type=float, default=1.0)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    gen.add_argument("--special", action="store_true",
                     help="parse special tokens written in the prompt, such as <|im_start|>")
    gen.add_argument("-c", "--n-ctx", type=int, default=None, help="context length (default: trained)")
    gen.add_argument("-t", "--threads", type=int, default=None, help="threads (default: physical cores)")
    gen.set_defaults(run=_generate)

    conv = commands.add_parser("convert", help="convert a Meta or Hugging Face Llama checkpoint folder to GGUF")
    conv.add_argument("src", help="checkpoint folder (params.json + consolidated.*.pth, or config.json + weights)")
    conv.add_argument("dst", help="GGUF file to write")
    conv.add_argument("--type", default="Q4_K_M", help="F32, F16, BF16 or a quantized type (default: Q4_K_M)")
    conv.add_argument("--tokenizer-model", help="SentencePiece tokenizer.model to use instead of the folder's")
    conv.add_argument("--force", action="store_true", help="replace DST if it exists")
    conv.add_argument("-t", "--threads", type=int, default=None, help="threads for quantization")
    conv.set_defaults(run=_convert)

    from ._quant_rule import FILE_TYPES

    quant = commands.add_parser("quantize", help="convert a GGUF model's weights to another type, "
                                                 "as llama.cpp's llama-quantize does")
    quant.add_argument("src", help="source GGUF model (F32/F16/BF16 or quantized)")
    quant.add_argument("dst", help="GGUF file to write")
    quant.add_argument("type", nargs="?", default="Q4_K_M", metavar="TYPE",
                       help=f"Q4_K_M (default) or one of: {', '.join(FILE_TYPES)}")
    quant.add_argument("--force", action="store_true", help="replace DST if it exists")
    quant.add_argument("-t", "--threads", type=int, default=None, help="threads (default: physical cores)")
    quant.set_defaults(run=_quantize)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"pyllama: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
