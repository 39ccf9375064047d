"""Prompt-processing and generation speed of a GGUF model, in tokens per second.

    python bench/bench.py MODEL.gguf [--threads 1 2] [--pp 512] [--tg 128] [--reps 3]

pp: prompt tokens / time to process them (one fresh sequence, n_batch at a time).
tg: generated tokens / time to generate them after a short prompt, one token per step (prompt
excluded). Both as llama-bench defines them. Medians over --reps runs. When llama-cpp-python is
importable, the same file runs through llama.cpp in the same process, alternating with pyllama,
and the ratios are printed. With no model given, the demo model is used.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PyllamaRunner:
    name = "pyllama"

    def __init__(self, path: str, n_threads: int, n_ctx: int, n_batch: int) -> None:
        import pyllama
        self.model = pyllama.Model(path, n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch)
        self.n_vocab = self.model.n_vocab

    def prompt(self, tokens: list[int]) -> None:
        self.model.reset()
        self.model.eval(tokens, all_logits=False)

    def step(self, token: int) -> None:
        self.model.eval([token], all_logits=False)


class LlamaCppRunner:
    name = "llama.cpp"

    def __init__(self, path: str, n_threads: int, n_ctx: int, n_batch: int) -> None:
        import llama_cpp
        self.llm = llama_cpp.Llama(path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                                   n_batch=n_batch, n_ubatch=n_batch, verbose=False)
        self.n_vocab = self.llm.n_vocab()

    def prompt(self, tokens: list[int]) -> None:
        self.llm.reset()
        self.llm.eval(tokens)

    def step(self, token: int) -> None:
        self.llm.eval([token])


def measure(runner, tokens_pp: list[int], tokens_tg: list[int]) -> tuple[float, float]:
    t0 = time.perf_counter()
    runner.prompt(tokens_pp)
    pp = len(tokens_pp) / (time.perf_counter() - t0)
    runner.prompt(tokens_tg[:8])
    t0 = time.perf_counter()
    for tok in tokens_tg[8:]:
        runner.step(tok)
    tg = (len(tokens_tg) - 8) / (time.perf_counter() - t0)
    return pp, tg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--pp", type=int, default=512)
    ap.add_argument("--tg", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n-batch", type=int, default=512)
    ap.add_argument("--no-llama-cpp", action="store_true", help="skip the llama.cpp comparison")
    args = ap.parse_args()
    if args.model is None:
        from pyllama.demo import demo_model_path
        args.model = str(demo_model_path())

    kinds = [PyllamaRunner]
    if not args.no_llama_cpp:
        try:
            import llama_cpp  # noqa: F401
            kinds.append(LlamaCppRunner)
        except ImportError:
            pass

    n_ctx = args.pp + args.tg + 16
    print(f"model {args.model}\npp{args.pp} tg{args.tg}, medians of {args.reps} runs, tokens/s")
    for n_threads in args.threads:
        rss0 = rss_mib()
        runners = [k(args.model, n_threads, n_ctx, args.n_batch) for k in kinds]
        print(f"threads {n_threads}: RSS after loading {rss_mib() - rss0:.0f} MiB")
        rng = np.random.default_rng(0)
        vocab = min(r.n_vocab for r in runners)
        tokens_pp = rng.integers(100, vocab, args.pp).tolist()
        tokens_tg = rng.integers(100, vocab, args.tg + 8).tolist()
        results = {r.name: ([], []) for r in runners}
        for runner in runners:  # warm-up: page cache, first-touch allocations
            measure(runner, tokens_pp[:32], tokens_tg[:16])
        for _ in range(args.reps):
            for runner in runners:  # alternate, so both see the same machine load
                pp, tg = measure(runner, tokens_pp, tokens_tg)
                results[runner.name][0].append(pp)
                results[runner.name][1].append(tg)
        med = {name: (statistics.median(pp), statistics.median(tg)) for name, (pp, tg) in results.items()}
        for name, (pp, tg) in med.items():
            line = f"  {name:10s} pp {pp:8.2f}   tg {tg:8.2f}"
            if name != "pyllama" and "pyllama" in med:
                line += f"   (pyllama/{name}: pp {med['pyllama'][0] / pp:.2f}x, tg {med['pyllama'][1] / tg:.2f}x)"
            print(line)
        print(f"  RSS after runs {rss_mib() - rss0:.0f} MiB")
        del runners


if __name__ == "__main__":
    main()
