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


def test_valid_seeds_are_accepted_not_just_refused_cleanly():
    from pyllama import _core
    from pyllama.convert.pth_reader import load_pth
    from pyllama.convert.safetensors_reader import load_safetensors
    from pyllama.tokenizer import Tokenizer
    for load, name in ((load_pth, "pth/state_dict.pth"), (load_safetensors, "safetensors/weights.safetensors")):
        raw, tensors = load(str(FUZZ / "corpus" / name))
        raw.close()
        assert len(tensors) == 3
    for name in ("tiny_q8", "tiny_f32_2layers", "tiny_tied_rope"):
        _core.LlamaModel(_core.GGUFFile(str(FUZZ / "corpus" / "loader" / f"{name}.gguf")))
    for name in ("synthetic_spm", "smollm2_vocab", "tinyllama_spm_vocab"):
        assert checks.check_tokenizer(_core.GGUFFile(str(FUZZ / "corpus" / "tokenizer" / f"{name}.gguf")).metadata)
