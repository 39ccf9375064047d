"""The sampler: each stage of the chain, reproducibility, and argument checks."""
import math

import numpy as np
import pytest

from pyllama.sampling import Sampler, SamplingParams, apply_repeat_penalty


def _logits(n=1000, seed=0):
    return np.random.default_rng(seed).normal(0, 3, n).astype(np.float32)


def _draws(params, logits, n=300):
    s = Sampler(params)
    return [s.sample(logits, []) for _ in range(n)]


def test_greedy_is_argmax():
    logits = _logits()
    assert Sampler(SamplingParams(temperature=0)).sample(logits, []) == int(np.argmax(logits))


def test_top_k_1_is_argmax_at_any_temperature():
    logits = _logits()
    assert set(_draws(SamplingParams(temperature=5.0, top_k=1, top_p=1.0, min_p=0.0), logits)) == {
        int(np.argmax(logits))}


def test_top_k_limits_the_candidates():
    logits = _logits()
    top5 = set(np.argsort(-logits)[:5].tolist())
    draws = set(_draws(SamplingParams(temperature=10.0, top_k=5, top_p=1.0, min_p=0.0), logits, 2000))
    assert draws <= top5 and len(draws) == 5


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    draws = set(_draws(SamplingParams(temperature=1.0, top_k=0, top_p=0.8, min_p=0.0), logits, 2000))
    assert draws == {0, 1}  # 0.5 + 0.3 reaches 0.8


def test_min_p_drops_unlikely_tokens():
    logits = np.log(np.array([0.4, 0.35, 0.2, 0.05], dtype=np.float32))
    draws = set(_draws(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.4), logits, 2000))
    assert draws == {0, 1, 2}  # threshold 0.4 * 0.4 = 0.16 keeps 0.2, drops 0.05


def test_min_p_threshold_is_relative_to_top():
    logits = np.log(np.array([0.4, 0.35, 0.2, 0.05], dtype=np.float32))
    draws = set(_draws(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.6), logits, 2000))
    assert draws == {0, 1}  # 0.35 >= 0.24, 0.2 < 0.24


def test_distribution_follows_temperature_scaled_softmax():
    logits = np.array([2.0, 1.0, 0.0], dtype=np.float32)
    draws = np.bincount(_draws(SamplingParams(temperature=2.0, top_k=0, top_p=1.0, min_p=0.0), logits, 20000),
                        minlength=3) / 20000
    expected = np.exp(logits / 2.0) / np.exp(logits / 2.0).sum()
    assert np.allclose(draws, expected, atol=0.02)


def test_seed_makes_sampling_reproducible():
    logits = _logits()
    p = SamplingParams(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=1234)
    assert _draws(p, logits, 50) == _draws(p, logits, 50)
    other = SamplingParams(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=4321)
    assert _draws(p, logits, 50) != _draws(other, logits, 50)


def test_repeat_penalty_divides_positive_and_multiplies_negative_logits():
    logits = np.array([2.0, -2.0, 1.0, 3.0], dtype=np.float32)
    out = apply_repeat_penalty(logits, [0, 1, 1, 3], penalty=2.0, last_n=3)
    # the window is the last 3 tokens: 1, 1, 3 -> token 0 is not penalized
    assert out.tolist() == [2.0, -4.0, 1.0, 1.5]
    assert logits.tolist() == [2.0, -2.0, 1.0, 3.0]  # input untouched


def test_repeat_penalty_changes_greedy_choice():
    logits = np.array([3.0, 2.0], dtype=np.float32)
    s = Sampler(SamplingParams(temperature=0, repeat_penalty=2.0))
    assert s.sample(logits, [0]) == 1


@pytest.mark.parametrize("field,value", [
    ("temperature", -0.1), ("temperature", math.nan), ("top_p", 0.0), ("top_p", 1.01),
    ("min_p", -0.1), ("min_p", 1.5), ("top_k", -1), ("top_k", 2.5), ("repeat_penalty", 0.0),
    ("repeat_last_n", -1), ("seed", -5), ("seed", "x"), ("temperature", "hot"),
])
def test_bad_parameters_raise_value_error_naming_them(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{field: value})
