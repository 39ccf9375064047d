"""pyllama against llama.cpp's golden outputs: the same prompt tokens, logits within the
tolerances justified in golden.py, and the same greedy continuations."""
from __future__ import annotations

import pytest

import pyllama
from golden import (CASES, SMOLLM2, TINY_F16, TINY_Q4_K_M, assert_matches_golden, load_golden, model_path,
                    safe_greedy_prefix)
from reference import reference_logits

N_CTX = 64  # room for every prompt and its continuation; a small KV cache keeps the demo model light


@pytest.fixture(scope="session")
def open_case(golden_dir, demo_model):
    """case -> (pyllama.Model, GoldenRun, model path); each model is loaded once per session."""
    models = {}

    def open_(case):
        path = model_path(case, golden_dir, demo_model)
        if case not in models:
            models[case] = pyllama.Model(str(path), n_ctx=N_CTX)
        return models[case], load_golden(case, golden_dir), path
    return open_


def greedy(model, prompt_tokens, max_tokens):
    """Token ids, text and finish reason of a temperature-0 generation."""
    chunks = list(model.generate(prompt_tokens, max_tokens=max_tokens, temperature=0.0, seed=0))
    ids = [t for chunk in chunks for t in chunk.token_ids]
    return ids, "".join(chunk.text for chunk in chunks), chunks[-1].finish_reason


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.json_name)
def test_prompt_tokenizes_like_llama_cpp(case, open_case):
    model, golden, _ = open_case(case)
    # add_special in the golden file means "add BOS if the model's metadata says so" (add_bos=None)
    add_bos = None if golden.add_special else False
    tokens = model.tokenize(golden.prompt, add_bos=add_bos, special=golden.parse_special)
    assert tokens == golden.prompt_tokens


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.json_name)
def test_prompt_logits_match_golden(case, open_case):
    model, golden, _ = open_case(case)
    assert_matches_golden(model.logits(golden.prompt_tokens), golden.prompt_logits, case)


def test_smollm2_answers_paris(open_case):
    # Every greedy choice of this answer has a top-2 gap of at least 1.59 in the reference,
    # above SMOLLM2.gap_tol (test_reference.py checks the reference makes all of them).
    model, golden, _ = open_case(SMOLLM2)
    ids, text, finish = greedy(model, golden.prompt_tokens, len(golden.greedy_tokens) + 8)
    assert finish == "eos"  # the golden answer ends with the end-of-turn token...
    assert ids == golden.greedy_tokens  # ...which the last chunk reports
    assert "Paris" in text


@pytest.mark.parametrize("case", [TINY_F16, TINY_Q4_K_M], ids=lambda c: c.json_name)
def test_tiny_llama_greedy_follows_golden_while_choices_are_clear(case, open_case):
    # Random weights give near-ties: compare the greedy tokens only up to the first step whose
    # top-2 gap (in the reference, along llama.cpp's continuation) is within case.gap_tol.
    model, golden, path = open_case(case)
    n_prompt = len(golden.prompt_tokens)
    choosing = reference_logits(path, golden.prompt_tokens + golden.greedy_tokens)[n_prompt - 1:-1]
    n_safe = safe_greedy_prefix(choosing, case)
    assert n_safe >= 3  # 11 for F16, 4 for Q4_K_M with the stored golden files
    ids, _, _ = greedy(model, golden.prompt_tokens, len(golden.greedy_tokens))
    assert ids[:n_safe] == golden.greedy_tokens[:n_safe]
