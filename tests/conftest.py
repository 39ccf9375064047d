"""Shared test fixtures: the demo model and llama.cpp's golden outputs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyllama.demo import demo_model_path


def _golden_dir() -> Path:
    # shared/ lies beside the repository's checkout; PYLLAMA_GOLDEN_DIR overrides.
    env = os.environ.get("PYLLAMA_GOLDEN_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "golden"


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    path = _golden_dir()
    if not (path / "README.md").is_file():
        raise RuntimeError(f"llama.cpp golden outputs not found at {path} (set PYLLAMA_GOLDEN_DIR)")
    return path


@pytest.fixture(scope="session")
def demo_model() -> Path:
    """The demo model's .gguf (downloaded once into the cache; fails loudly offline)."""
    return demo_model_path()
