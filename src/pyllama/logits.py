"""Caller hooks on the logits of each step (logit_bias, logits processors, stopping criteria)
and the log-probabilities reported with each token."""
from __future__ import annotations

import math
from typing import Callable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

# processor(token_ids so far, logits of the next position) -> new logits (same shape)
LogitsProcessor = Callable[[np.ndarray, np.ndarray], np.ndarray]
# criterion(token_ids so far, logits of the last position) -> True to stop after this token
StoppingCriterion = Callable[[np.ndarray, np.ndarray], bool]


def _as_list(value, name: str) -> list:
    if value is None:
        return []
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for i, f in enumerate(items):
        if not callable(f):
            raise ValueError(f"{name}[{i}] must be callable, got {type(f).__name__}")
    return items


class LogitsHooks:
    """logit_bias, then the processors in order; then the stopping criteria after each token.
    With none given, logits pass through untouched (greedy and seeded sampling stay exact)."""

    def __init__(self, n_vocab: int, *, logit_bias: Optional[Mapping[int, float]] = None,
                 logits_processor: Union[LogitsProcessor, Sequence[LogitsProcessor], None] = None,
                 stopping_criteria: Union[StoppingCriterion, Sequence[StoppingCriterion], None] = None) -> None:
        self._n_vocab = n_vocab
        self._bias_ids, self._bias_values = self._checked_bias(logit_bias or {})
        self._processors = _as_list(logits_processor, "logits_processor")
        self._criteria = _as_list(stopping_criteria, "stopping_criteria")

    def _checked_bias(self, bias: Mapping[int, float]) -> Tuple[np.ndarray, np.ndarray]:
        if not isinstance(bias, Mapping):
            raise ValueError(f"logit_bias must be a dict {{token_id: bias}}, got {type(bias).__name__}")
        ids, values = [], []
        for k, v in bias.items():
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < self._n_vocab:
                raise ValueError(f"logit_bias key {k!r} is not a token id in [0, {self._n_vocab})")
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or math.isnan(v) or v == math.inf:
                raise ValueError(f"logit_bias[{k}] must be a finite number or -inf, got {v!r}")
            ids.append(int(k))
            values.append(float(v))
        return np.asarray(ids, dtype=np.int64), np.asarray(values, dtype=np.float32)

    def process(self, history: Sequence[int], logits: np.ndarray) -> np.ndarray:
        if not len(self._bias_ids) and not self._processors:
            return logits
        out = logits.copy()
        out[self._bias_ids] += self._bias_values
        ids = np.asarray(history, dtype=np.int64)
        for i, f in enumerate(self._processors):
            out = f(ids, out)
            if not isinstance(out, np.ndarray) or out.shape != logits.shape or out.dtype.kind != "f":
                raise ValueError(f"logits_processor[{i}] must return a float array of shape {logits.shape}, "
                                 f"got {type(out).__name__} {getattr(out, 'shape', '')}")
        if np.isnan(out).any() or not np.isfinite(out).any() or np.max(out) == math.inf:
            raise ValueError("logit_bias/logits_processor left no token to sample (all -inf, NaN or +inf)")
        return out

    def should_stop(self, history: Sequence[int], logits: np.ndarray) -> bool:
        if not self._criteria:
            return False
        ids = np.asarray(history, dtype=np.int64)
        return any(bool(f(ids, logits)) for f in self._criteria)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis, in float64 (one row or a batch of rows)."""
    x = logits.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def top_logprobs(logprobs: np.ndarray, n: int) -> List[Tuple[int, float]]:
    """The n most likely tokens of one row of log-probabilities, most likely first."""
    n = min(n, len(logprobs))
    ids = np.argpartition(-logprobs, n - 1)[:n]
    ids = ids[np.argsort(-logprobs[ids], kind="stable")]
    return [(int(i), float(logprobs[i])) for i in ids]
