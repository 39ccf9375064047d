"""The memory-bandwidth ceiling of generation.

Generating one token reads every weight matrix once (the token embedding table only one row of,
unless the output layer is tied to it) plus the KV cache filled so far. Dividing those bytes by
the machine's read bandwidth, measured here with bench/read_bandwidth.cpp, gives the fastest
generation the memory allows; bench.py reports generation speed as a fraction of it.

    python bench/bandwidth.py [MODEL.gguf] [--threads 1 2]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

PROBE_SOURCE = Path(__file__).with_name("read_bandwidth.cpp")


def read_bandwidth_gbps(n_threads: int, mib: int = 2048, passes: int = 9) -> float | None:
    """Median read bandwidth in GB/s with n_threads threads, or None without a C++ compiler."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "read_bandwidth"
        subprocess.run([cxx, "-O3", "-march=native", "-pthread", str(PROBE_SOURCE), "-o", str(exe)], check=True)
        out = subprocess.run([str(exe), str(n_threads), str(mib), str(passes)], check=True,
                             capture_output=True, text=True)
    return float(out.stdout)


def bytes_per_token(model_path: str) -> int:
    """Weight bytes read to generate one token (the KV cache of a short prompt is negligible)."""
    from pyllama import _core
    f = _core.GGUFFile(str(model_path))
    total = 0
    tied = f.find_tensor("output.weight") is None
    for t in f.tensors:
        if t.name == "token_embd.weight" and not tied:
            total += t.nbytes // t.shape[1]  # one row
        else:
            total += t.nbytes
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    per_token = bytes_per_token(args.model) if args.model else None
    for n in args.threads:
        gbps = read_bandwidth_gbps(n)
        line = f"threads {n}: read bandwidth {gbps:.1f} GB/s"
        if per_token:
            line += f"; {per_token / 1e6:.0f} MB per token -> at most {gbps * 1e9 / per_token:.1f} tokens/s"
        print(line)


if __name__ == "__main__":
    main()
