"""Sampling parameters and the sampler that picks each next token from the logits.

The chain follows llama.cpp's default order: repetition penalty, top-k, top-p, min-p,
temperature, then a draw from the remaining distribution. Temperature 0 is greedy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. Every field is checked on construction (ValueError naming it)."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    seed: Optional[int] = None

    def __post_init__(self) -> None:
        _check_number("temperature", self.temperature, lo=0.0)
        _check_int("top_k", self.top_k, lo=0)
        _check_number("top_p", self.top_p, lo=0.0, hi=1.0, lo_open=True)
        _check_number("min_p", self.min_p, lo=0.0, hi=1.0)
        _check_number("repeat_penalty", self.repeat_penalty, lo=0.0, lo_open=True)
        _check_int("repeat_last_n", self.repeat_last_n, lo=0)
        if self.seed is not None:
            _check_int("seed", self.seed, lo=0)


def _check_number(name: str, value: object, *, lo: float, hi: float = math.inf, lo_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < lo or (lo_open and value == lo) or value > hi:
        low = f"({lo}" if lo_open else f"[{lo}"
        high = "inf)" if hi == math.inf else f"{hi}]"
        raise ValueError(f"{name} must be in {low}, {high}, got {value!r}")


def _check_int(name: str, value: object, *, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value!r}")


class Sampler:
    """Picks tokens for one generation; seeded, so the same seed gives the same tokens."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self._rng = np.random.default_rng(params.seed)

    def sample(self, logits: np.ndarray, history: Sequence[int]) -> int:
        """The next token, given the last position's logits and the tokens so far."""
        p = self.params
        logits = apply_repeat_penalty(logits, history, p.repeat_penalty, p.repeat_last_n)
        if p.temperature == 0.0:
            return int(np.argmax(logits))
        ids, kept = _top_k(logits, p.top_k)
        ids, kept = _top_p(ids, kept, p.top_p)
        ids, kept = _min_p(ids, kept, p.min_p)
        probs = _softmax(kept / p.temperature)
        return int(ids[self._rng.choice(len(ids), p=probs)])


def apply_repeat_penalty(logits: np.ndarray, history: Sequence[int], penalty: float, last_n: int) -> np.ndarray:
    """llama.cpp's repetition penalty over the last `last_n` tokens: positive logits are divided
    by the penalty, negative ones multiplied, once per distinct token."""
    if penalty == 1.0 or last_n == 0 or not history:
        return logits
    recent = np.unique(np.asarray(history[-last_n:], dtype=np.int64))
    out = logits.copy()
    vals = out[recent]
    out[recent] = np.where(vals > 0, vals / penalty, vals * penalty)
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x))
    return e / e.sum()


def _top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest logits, sorted descending (all of them when k is 0 or >= vocabulary)."""
    if 0 < k < len(logits):
        ids = np.argpartition(logits, -k)[-k:]
    else:
        ids = np.arange(len(logits))
    ids = ids[np.argsort(-logits[ids], kind="stable")]
    return ids, logits[ids].astype(np.float64)


def _top_p(ids: np.ndarray, kept: np.ndarray, top_p: float) -> tuple[np.ndarray, np.ndarray]:
    """The smallest prefix (of descending logits) whose probability mass reaches top_p."""
    if top_p >= 1.0:
        return ids, kept
    cum = np.cumsum(_softmax(kept))
    n = int(np.searchsorted(cum, top_p)) + 1
    return ids[:n], kept[:n]


def _min_p(ids: np.ndarray, kept: np.ndarray, min_p: float) -> tuple[np.ndarray, np.ndarray]:
    """Drop tokens whose probability is below min_p times the top token's."""
    if min_p <= 0.0:
        return ids, kept
    n = int(np.count_nonzero(kept >= kept[0] + math.log(min_p)))
    return ids[: max(n, 1)], kept[: max(n, 1)]
