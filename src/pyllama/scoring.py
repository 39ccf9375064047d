"""Scoring text with a model: perplexity (as llama.cpp's perplexity tool) and embeddings (as
llama.cpp's mean pooling)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np

from .logits import log_softmax

if TYPE_CHECKING:
    from .model import Model


@dataclass(frozen=True)
class Perplexity:
    """value: exp(mean of nll); nll: the negative log-likelihood (natural log) of every scored
    token, in text order."""

    value: float
    nll: np.ndarray


def perplexity(model: "Model", text: str, window: int) -> Perplexity:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or not 4 <= window <= model.n_ctx:
        raise ValueError(f"window must be an integer in [4, n_ctx={model.n_ctx}], got {window!r}")
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    tokens = model.tokenize(text, add_bos=False)
    n_windows = (len(tokens) - 1) // window
    if n_windows < 1:
        raise ValueError(f"text has {len(tokens)} tokens; perplexity needs more than window={window}")
    bos = model.tokenizer.bos_id if model.tokenizer.add_bos else None
    first = window // 2
    nll = []
    for w in range(n_windows):
        chunk = tokens[w * window:(w + 1) * window]
        if bos is not None:
            chunk[0] = bos
        logprobs = log_softmax(model.logits(chunk)[first:])
        targets = np.asarray(tokens[w * window + first + 1:(w + 1) * window + 1])
        nll.append(-logprobs[np.arange(len(targets)), targets])
    model.reset()
    all_nll = np.concatenate(nll)
    return Perplexity(float(math.exp(all_nll.mean())), all_nll)


def embed(model: "Model", text: Union[str, Sequence[int]]) -> np.ndarray:
    ids = model.tokenize(text) if isinstance(text, str) else model._checked_ids(text, "text")
    if not ids:
        raise ValueError("text is empty: it has no tokens")
    if len(ids) > model.n_ctx:
        raise ValueError(f"text has {len(ids)} tokens, more than n_ctx={model.n_ctx}")
    model.reset()
    hidden = model._ctx.eval_hidden(np.asarray(ids, dtype=np.int32))
    model._tokens.extend(ids)  # the cache now holds them, for a following call to reuse
    mean = hidden.astype(np.float64).mean(axis=0)
    norm = np.linalg.norm(mean)
    return (mean / norm if norm > 0 else mean).astype(np.float32)
