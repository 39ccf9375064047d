"""What a generation hands back: chunks as they are produced, running statistics, and the
Generation iterator itself (cancel from any thread, close, or collect the whole text)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, List, Optional


@dataclass(frozen=True)
class TokenLogprob:
    """A token and its log-probability under the model (natural log, before sampling settings)."""

    id: int
    text: str
    logprob: float


@dataclass(frozen=True)
class GenerationStats:
    """Counts and timings of one generation, up to the chunk that carries them.

    prompt_tokens: tokens in the prompt; cached_tokens: how many of them were already in the KV
    cache from the previous call (not recomputed); generated_tokens: tokens sampled so far;
    prompt_seconds: time to evaluate the rest of the prompt; time_to_first_token: from the
    first request for a chunk to the first sampled token; generation_seconds: from the end of
    the prompt to this chunk.
    """

    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    prompt_seconds: float = 0.0
    time_to_first_token: Optional[float] = None
    generation_seconds: float = 0.0

    @property
    def prompt_tokens_per_second(self) -> Optional[float]:
        """Prompt tokens evaluated (the cached ones excluded) per second."""
        evaluated = self.prompt_tokens - self.cached_tokens
        return evaluated / self.prompt_seconds if evaluated and self.prompt_seconds > 0 else None

    @property
    def generation_tokens_per_second(self) -> Optional[float]:
        return self.generated_tokens / self.generation_seconds if self.generation_seconds > 0 else None


@dataclass
class Chunk:
    """One step of a generation.

    text: the new text (may be empty while a multi-byte character or a possible stop string
    is incomplete); token_ids: the token generated in this step (empty only for a chunk that
    ends the generation without one); logprob: that token's log-probability; top_logprobs:
    the most likely alternatives at this step when logprobs=N was asked for; finish_reason:
    None until the last chunk, then "eos", "length", "stop" or "cancelled"; finish_detail: a
    sentence on why, for "length" and "cancelled"; stats: the running GenerationStats.
    """

    text: str
    token_ids: List[int] = field(default_factory=list)
    finish_reason: Optional[str] = None
    logprob: Optional[float] = None
    top_logprobs: Optional[List[TokenLogprob]] = None
    stats: GenerationStats = field(default_factory=GenerationStats)
    finish_detail: Optional[str] = None


@dataclass
class Completion:
    """A whole generation: its text, tokens, per-token logprobs, how it ended and final stats."""

    text: str
    token_ids: List[int]
    logprobs: List[float]
    top_logprobs: Optional[List[List[TokenLogprob]]]
    finish_reason: str
    stats: GenerationStats
    finish_detail: Optional[str] = None


class Generation(Iterator[Chunk]):
    """The chunks of one generation, produced lazily: no work happens between requests, so
    breaking out of a loop over it stops the work at once. cancel() (from any thread) ends it
    within one token, or one batch of a long prompt; close() ends it without a last chunk.
    The model stays usable either way."""

    def __init__(self, steps: Iterator[Chunk], cancel_event: threading.Event) -> None:
        self._steps = steps
        self._cancel = cancel_event

    def __iter__(self) -> "Generation":
        return self

    def __next__(self) -> Chunk:
        return next(self._steps)

    def cancel(self) -> None:
        """Ask the generation to stop; its next chunk is the last, with finish_reason "cancelled"."""
        self._cancel.set()

    def close(self) -> None:
        """Stop without producing anything more."""
        self._steps.close()  # type: ignore[attr-defined]

    def text(self) -> Completion:
        """Runs the generation to its end and returns everything it produced."""
        parts: List[str] = []
        ids: List[int] = []
        logprobs: List[float] = []
        tops: List[List[TokenLogprob]] = []
        last: Optional[Chunk] = None
        for last in self:
            parts.append(last.text)
            ids.extend(last.token_ids)
            if last.logprob is not None:
                logprobs.append(last.logprob)
            if last.top_logprobs is not None:
                tops.append(last.top_logprobs)
        if last is None or last.finish_reason is None:
            raise RuntimeError("the generation was closed before it finished")
        return Completion("".join(parts), ids, logprobs, tops if last.top_logprobs is not None else None,
                          last.finish_reason, last.stats, last.finish_detail)


class StatsClock:
    """Keeps the running GenerationStats of one generation."""

    def __init__(self, prompt_tokens: int) -> None:
        self._start = time.perf_counter()
        self._prompt_end: Optional[float] = None
        self._first_token: Optional[float] = None
        self._prompt_tokens = prompt_tokens
        self._cached = 0
        self._generated = 0

    def prompt_done(self, cached_tokens: int) -> None:
        self._cached = cached_tokens
        self._prompt_end = time.perf_counter()

    def token_sampled(self) -> None:
        self._generated += 1
        if self._first_token is None:
            self._first_token = time.perf_counter()

    def snapshot(self) -> GenerationStats:
        now = time.perf_counter()
        prompt_end = self._prompt_end if self._prompt_end is not None else now
        return GenerationStats(
            prompt_tokens=self._prompt_tokens, cached_tokens=self._cached, generated_tokens=self._generated,
            prompt_seconds=prompt_end - self._start,
            time_to_first_token=None if self._first_token is None else self._first_token - self._start,
            generation_seconds=now - prompt_end if self._prompt_end is not None else 0.0)
