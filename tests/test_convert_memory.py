"""Conversion streams: peak memory grows by a few chunks, not by the size of the model.

The checkpoint (about 230 MB of F32 tensors, in two model-parallel Meta shards so the shard
joining is measured too, or one Hugging Face safetensors file with its q/k permutation) is
converted to F16 in a fresh Python process, whose peak resident set size (ru_maxrss) is read
before and after. Reads are plain file reads, so the page cache does not count.

Linux carries a process's peak RSS across fork and exec into the child's ru_maxrss, so a child of
the test process (which holds the weights it just wrote) would report the test's peak. The
measuring process is therefore started by a small launcher process, whose own peak is tiny.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from checkpoints import TinyConfig, random_weights, write_hf, write_meta
from sanitizer import measures_memory

BIG = TinyConfig(n_vocab=32000, dim=768, n_layer=2, n_head=12, n_head_kv=4, n_ff=2048, seed=30)
# The converter holds about four 4 MiB chunks at a time (read, float32, permuted or joined,
# encoded), plus the vocabulary; 40 MB is under a fifth of the tensors.
MAX_GROWTH = 40e6

MEASURE = """
import json, resource, sys, time
import pyllama
from pyllama.convert import converter  # everything imported before the baseline
import safetensors, sentencepiece, tokenizers
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.monotonic()
summary = pyllama.convert(sys.argv[1], sys.argv[2], type="F16", progress=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "after": after, "seconds": time.monotonic() - start,
                  "source_bytes": summary.source_bytes, "output_bytes": summary.output_bytes}))
"""


@measures_memory
@pytest.mark.parametrize("fmt", ["meta", "hf"])
def test_peak_memory_stays_far_below_the_model_size(tmp_path, fmt):
    weights = random_weights(BIG)
    tensor_bytes = sum(t.numel() * t.element_size() for t in weights.values())
    assert tensor_bytes > 200e6
    if fmt == "meta":
        src = write_meta(tmp_path / "big", BIG, weights, n_shards=2)
    else:
        src = write_hf(tmp_path / "big", BIG, weights)
    del weights
    launcher = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
    out = subprocess.run([sys.executable, "-c", launcher, sys.executable, "-c", MEASURE, str(src),
                          str(tmp_path / "big.gguf")], capture_output=True, text=True, check=True)
    m = json.loads(out.stdout)
    growth = m["after"] - m["before"]
    print(f"{fmt}: {tensor_bytes / 1e6:.0f} MB of tensors -> {m['output_bytes'] / 1e6:.0f} MB F16 in "
          f"{m['seconds']:.2f} s; peak RSS {m['before'] / 1e6:.0f} -> {m['after'] / 1e6:.0f} MB "
          f"(+{growth / 1e6:.1f} MB)")
    assert growth < MAX_GROWTH
