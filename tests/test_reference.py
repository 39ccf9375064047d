"""The float64 reference forward pass agrees with llama.cpp: on its golden logits (within the
tolerances justified in golden.py) and on the greedy continuations llama.cpp chose."""
from __future__ import annotations

import numpy as np
import pytest

from golden import CASES, assert_matches_golden, load_golden, model_path, safe_greedy_prefix
from reference import reference_logits


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.json_name)
def test_reference_matches_golden_prompt_logits(case, golden_dir, demo_model):
    golden = load_golden(case, golden_dir)
    logits = reference_logits(model_path(case, golden_dir, demo_model), golden.prompt_tokens)
    assert_matches_golden(logits, golden.prompt_logits, case)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.json_name)
def test_reference_follows_golden_greedy_continuation(case, golden_dir, demo_model):
    # Feeding llama.cpp's greedy tokens back, the reference's argmax at each step where the
    # choice is clear must be the token llama.cpp chose.
    golden = load_golden(case, golden_dir)
    sequence = golden.prompt_tokens + golden.greedy_tokens
    logits = reference_logits(model_path(case, golden_dir, demo_model), sequence)
    choosing = logits[len(golden.prompt_tokens) - 1:-1]  # row i picks greedy token i
    n_safe = safe_greedy_prefix(choosing, case)
    assert n_safe >= 1
    np.testing.assert_array_equal(np.argmax(choosing[:n_safe], axis=-1), golden.greedy_tokens[:n_safe])
