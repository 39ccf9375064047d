"""Every fuzz seed and crash reproducer, run once through the readers it was made for (the
regression half of fuzz/: seconds, no clang). Each file must be read or refused with a clean
ValueError/PyllamaError; fuzz/checks.py says what is done with each."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
sys.path.insert(0, str(FUZZ))
import checks  # noqa: E402

BY_SUFFIX = {".gguf": checks.check_gguf, ".pth": checks.check_pth, ".safetensors": checks.check_safetensors}
CORPUS = sorted((FUZZ / "corpus").glob("*/*"))
CRASHES = sorted((FUZZ / "crashes").iterdir())


def test_every_target_has_a_corpus_and_every_file_a_reader():
    assert {p.parent.name for p in CORPUS} == set(checks.CHECKS)
    assert all(p.suffix in BY_SUFFIX for p in CORPUS + CRASHES)


@pytest.mark.parametrize("path", CORPUS + CRASHES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_file_is_read_or_refused_cleanly(path):
    BY_SUFFIX[path.suffix](str(path))
