"""Time and peak memory of quantizing a GGUF: pyllama against llama.cpp, alternating runs.

    python bench/quantize_bench.py SRC.F16.gguf [--type Q4_K_M] [--threads 1 2] [--reps 2]
        [--llama-cpp-python PYTHON]

Each run is a fresh process (peak RSS is the child's own, from wait4). llama.cpp's side runs
llama_model_quantize through llama-cpp-python under the interpreter given by --llama-cpp-python
(it is never a dependency of pyllama); without it only pyllama is measured. Outputs go next to
the source and are deleted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

LLAMA_FTYPES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q6_K": 18, "Q4_K_S": 14,
                "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17}

LLAMA_CPP_SCRIPT = """
import ctypes, sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype, p.nthread = int(sys.argv[3]), int(sys.argv[4])
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))
"""


def run(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS MiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.read().decode(errors='replace')[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("--type", default="Q4_K_M", choices=LLAMA_FTYPES)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--llama-cpp-python", help="a Python interpreter that can import llama_cpp")
    args = ap.parse_args()

    out = args.src.with_suffix(f".bench-{args.type}.gguf")
    print(f"{args.src.name} ({args.src.stat().st_size / 2**30:.2f} GiB) -> {args.type}; medians of {args.reps}")
    for n in args.threads:
        sides = {"pyllama": [sys.executable, "-m", "pyllama.cli", "quantize", str(args.src), str(out),
                             args.type, "--force", "--threads", str(n)]}
        if args.llama_cpp_python:
            sides["llama.cpp"] = [args.llama_cpp_python, "-c", LLAMA_CPP_SCRIPT, str(args.src), str(out),
                                  str(LLAMA_FTYPES[args.type]), str(n)]
        results = {name: [] for name in sides}
        for _ in range(args.reps):
            for name, cmd in sides.items():  # alternate, so both see the same machine load
                results[name].append(run(cmd))
                out.unlink(missing_ok=True)
        med = {name: [statistics.median(r[i] for r in runs) for i in range(3)] for name, runs in results.items()}
        for name, (wall, cpu, rss) in med.items():
            line = f"threads {n}  {name:9s} wall {wall:7.1f} s  cpu {cpu:7.1f} s  peak RSS {rss:7.0f} MiB"
            if name != "pyllama":
                line += f"   (pyllama/llama.cpp wall {med['pyllama'][0] / wall:.2f}x)"
            print(line, flush=True)


if __name__ == "__main__":
    main()
