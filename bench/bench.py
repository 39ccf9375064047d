"""Prompt-processing and generation speed of a GGUF model, in tokens per second.

    python bench/bench.py MODEL.gguf [--threads 1 2] [--pp 512] [--tg 128] [--reps 3] [--depth 0] [--bandwidth]

pp: prompt tokens / time to process them (n_batch at a time).
tg: generated tokens / time to generate them after a short prompt, one token per step (prompt
excluded). Both as llama-bench defines them, --depth as its -d: that many tokens are already in the
context (processed once, untimed) before each pp or tg run. Medians over --reps runs. When llama-cpp-python is
importable, the same file runs through llama.cpp in the same process, alternating with pyllama,
and the ratios are printed. With no model given, the demo model is used.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bandwidth import bytes_per_token, read_bandwidth_gbps


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

    def reset(self) -> None:
        self.model.reset()

    def eval(self, tokens: list[int]) -> None:
        self.model.eval(tokens, all_logits=False)

    def truncate(self, n: int) -> None:
        self.model._ctx.truncate(n)  # the KV cache keeps positions [0, n)
        del self.model._tokens[n:]


class LlamaCppRunner:
    name = "llama.cpp"

    def __init__(self, path: str, n_threads: int, n_ctx: int, n_batch: int) -> None:
        import llama_cpp
        self.llm = llama_cpp.Llama(path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                                   n_batch=n_batch, n_ubatch=n_batch, verbose=False)
        self.n_vocab = self.llm.n_vocab()

    def reset(self) -> None:
        self.llm.reset()

    def eval(self, tokens: list[int]) -> None:
        self.llm.eval(tokens)

    def truncate(self, n: int) -> None:
        self.llm.n_tokens = n  # its next eval drops the KV cache past n


def measure(runner, depth: int, tokens_pp: list[int], tokens_tg: list[int]) -> tuple[float, float]:
    """pp and tg tokens/s with `depth` tokens already in the context (runner filled to depth)."""
    t0 = time.perf_counter()
    runner.eval(tokens_pp)
    pp = len(tokens_pp) / (time.perf_counter() - t0)
    runner.truncate(depth)
    runner.eval(tokens_tg[:8])
    t0 = time.perf_counter()
    for tok in tokens_tg[8:]:
        runner.eval([tok])
    tg = (len(tokens_tg) - 8) / (time.perf_counter() - t0)
    runner.truncate(depth)
    return pp, tg


def fill(runner, tokens_depth: list[int]) -> None:
    runner.reset()
    if tokens_depth:
        runner.eval(tokens_depth)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--pp", type=int, default=512)
    ap.add_argument("--tg", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--depth", type=int, default=0, help="tokens already in the context before pp and tg")
    ap.add_argument("--n-batch", type=int, default=512)
    ap.add_argument("--no-llama-cpp", action="store_true", help="skip the llama.cpp comparison")
    ap.add_argument("--bandwidth", action="store_true",
                    help="measure the read bandwidth (bench/bandwidth.py) and report tg as a fraction of its ceiling")
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

    n_ctx = args.depth + max(args.pp, args.tg + 8)
    depth = f" at depth {args.depth}" if args.depth else ""
    print(f"model {args.model}\npp{args.pp} tg{args.tg}{depth}, medians of {args.reps} runs, tokens/s")
    for n_threads in args.threads:
        ceiling = None
        if args.bandwidth:
            import pyllama
            gbps = read_bandwidth_gbps(n_threads)
            kv = pyllama.Model(args.model, n_ctx=16)._model.kv_bytes_per_token  # F16 cache, as both use
            per_token = bytes_per_token(args.model) + args.depth * kv
            ceiling = gbps * 1e9 / per_token
            print(f"threads {n_threads}: read bandwidth {gbps:.1f} GB/s, {per_token / 1e6:.0f} MB read per "
                  f"generated token: at most {ceiling:.1f} tokens/s")
        rss0 = rss_mib()
        runners = [k(args.model, n_threads, n_ctx, args.n_batch) for k in kinds]
        print(f"threads {n_threads}: RSS after loading {rss_mib() - rss0:.0f} MiB")
        rng = np.random.default_rng(0)
        vocab = min(r.n_vocab for r in runners)
        tokens_depth = rng.integers(100, vocab, args.depth).tolist()
        tokens_pp = rng.integers(100, vocab, args.pp).tolist()
        tokens_tg = rng.integers(100, vocab, args.tg + 8).tolist()
        results = {r.name: ([], []) for r in runners}
        for runner in runners:  # fill the context; warm-up: page cache, first-touch allocations
            fill(runner, tokens_depth)
            measure(runner, args.depth, tokens_pp[:32], tokens_tg[:16])
        for _ in range(args.reps):
            for runner in runners:  # alternate, so both see the same machine load
                pp, tg = measure(runner, args.depth, tokens_pp, tokens_tg)
                results[runner.name][0].append(pp)
                results[runner.name][1].append(tg)
        med = {name: (statistics.median(pp), statistics.median(tg)) for name, (pp, tg) in results.items()}
        for name, (pp, tg) in med.items():
            line = f"  {name:10s} pp {pp:8.2f}   tg {tg:8.2f}"
            if name != "pyllama" and "pyllama" in med:
                line += f"   (pyllama/{name}: pp {med['pyllama'][0] / pp:.2f}x, tg {med['pyllama'][1] / tg:.2f}x)"
            if ceiling:
                line += f"   tg at {tg / ceiling:.0%} of the bandwidth ceiling"
            print(line)
        print(f"  RSS after runs {rss_mib() - rss0:.0f} MiB")
        del runners


if __name__ == "__main__":
    main()
