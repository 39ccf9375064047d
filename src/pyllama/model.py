"""Model: load a GGUF file, tokenize, compute logits and generate text."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterator, List, Optional, Sequence, Union

import numpy as np

from . import _core
from ._system import physical_cores
from .sampling import Sampler, SamplingParams
from .stopping import StopStrings
from .tokenizer import Tokenizer

Prompt = Union[str, Sequence[int]]


@dataclass
class Chunk:
    """One step of a generation.

    text: the new text (may be empty while a multi-byte character or a possible stop string
    is incomplete); token_ids: the tokens generated in this step; finish_reason: None until
    the last chunk, then "eos", "length" or "stop".
    """

    text: str
    token_ids: List[int] = field(default_factory=list)
    finish_reason: Optional[str] = None


class Model:
    """A Llama-family model loaded from a GGUF file, with one inference sequence.

    Args:
        path: the .gguf file (memory-mapped; weights are never copied).
        n_ctx: context length in tokens; None means the model's trained context.
        n_threads: threads for the compute core; None means the physical cores available.
        n_batch: prompt tokens processed together as one matrix-matrix step.
        kv_cache_type: "f16" (half the memory, as llama.cpp) or "f32" (exact keys and values).
        tokenizer_model: optional SentencePiece tokenizer.model to use instead of the
            vocabulary stored in the file.
    """

    def __init__(self, path: Union[str, os.PathLike], *, n_ctx: Optional[int] = None,
                 n_threads: Optional[int] = None, n_batch: int = 512, kv_cache_type: str = "f16",
                 tokenizer_model: Optional[Union[str, os.PathLike]] = None) -> None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"model file not found: {path}")
        _check_optional_positive("n_ctx", n_ctx)
        _check_optional_positive("n_threads", n_threads)
        _check_optional_positive("n_batch", n_batch)
        if kv_cache_type not in ("f16", "f32"):
            raise ValueError(f"kv_cache_type must be 'f16' or 'f32', got {kv_cache_type!r}")
        self.path = path
        self._file = _core.GGUFFile(path)
        self._metadata = self._file.metadata  # built once: the vocabulary makes it ~15 ms
        self._model = _core.LlamaModel(self._file)
        trained = self._model.n_ctx_train
        if n_ctx is None:
            n_ctx = trained
        elif n_ctx > trained:
            raise ValueError(f"n_ctx {n_ctx} exceeds the model's trained context of {trained} tokens")
        self._ctx = _core.InferenceContext(self._model, n_ctx, n_threads or physical_cores(), n_batch,
                                           kv_cache_type)
        self.tokenizer = Tokenizer.from_metadata(self._metadata, tokenizer_model=tokenizer_model)
        self._tokens: List[int] = []  # exactly the tokens whose keys/values are in the cache

    # --- facts -------------------------------------------------------------------------
    @property
    def metadata(self) -> dict:
        """The GGUF file's key-values (arrays as numpy arrays or lists of str)."""
        return self._metadata

    @property
    def n_vocab(self) -> int:
        return self._model.n_vocab

    @property
    def n_ctx(self) -> int:
        return self._ctx.n_ctx

    @property
    def n_threads(self) -> int:
        return self._ctx.n_threads

    @property
    def n_batch(self) -> int:
        return self._ctx.n_batch

    @property
    def n_past(self) -> int:
        """Tokens currently held in the KV cache."""
        return self._ctx.n_past

    def __repr__(self) -> str:
        return (f"Model({os.path.basename(self.path)!r}, n_vocab={self.n_vocab}, n_ctx={self.n_ctx}, "
                f"n_threads={self.n_threads})")

    # --- text <-> tokens -----------------------------------------------------------------
    def tokenize(self, text: str, *, add_bos: Optional[bool] = None, special: bool = False) -> List[int]:
        """Token ids of `text`; add_bos None follows the file's metadata; special=True parses
        control tokens written in the text (e.g. "<|im_start|>")."""
        return self.tokenizer.encode(text, add_bos=add_bos, special=special)

    def detokenize(self, ids: Sequence[int]) -> str:
        """The text of token ids (control tokens omitted)."""
        return self.tokenizer.decode(self._checked_ids(ids, "ids"))

    # --- logits ---------------------------------------------------------------------------
    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Logits at every position of `tokens` as a fresh sequence: float32 (len, n_vocab)."""
        self.reset()
        return self.eval(tokens, all_logits=True)

    def eval(self, tokens: Sequence[int], *, all_logits: bool = True) -> np.ndarray:
        """Append tokens to the current sequence (reusing the KV cache) and return the logits
        of the new positions, (len(tokens), n_vocab), or of the last one when all_logits=False."""
        ids = self._checked_ids(tokens, "tokens")
        if not ids:
            raise ValueError("tokens is empty")
        if len(ids) > self.n_ctx - self.n_past:
            raise ValueError(f"{len(ids)} tokens do not fit: the context holds {self.n_past} of "
                             f"n_ctx {self.n_ctx} tokens")
        out = self._ctx.eval(np.asarray(ids, dtype=np.int32), all_logits)
        self._tokens.extend(ids)
        return out

    def reset(self) -> None:
        """Forget the current sequence."""
        self._ctx.truncate(0)
        self._tokens.clear()

    # --- generation -----------------------------------------------------------------------
    def generate(self, prompt: Prompt, *, max_tokens: int = 256, temperature: float = 0.8,
                 top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                 repeat_penalty: float = 1.0, repeat_last_n: int = 64, seed: Optional[int] = None,
                 stop: Union[str, Sequence[str]] = (), special: bool = False) -> Iterator[Chunk]:
        """Generate a continuation of `prompt`, yielding Chunks as text becomes available.

        prompt: text (tokenized with BOS per the file's metadata; special tokens written in it,
        such as "<|im_start|>", are parsed only with special=True) or a list of token ids. Stops at an end-of-generation token
        ("eos"), after max_tokens or when the context is full ("length"), or when the text would
        contain one of `stop` ("stop"; the stop string itself is not returned).
        A prompt that shares a prefix with the previous sequence reuses its KV cache.
        Arguments are validated before this returns (ValueError naming the argument).
        """
        params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                repeat_penalty=repeat_penalty, repeat_last_n=repeat_last_n, seed=seed)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer)) or max_tokens < 0:
            raise ValueError(f"max_tokens must be an integer >= 0, got {max_tokens!r}")
        stops = StopStrings(stop)
        if isinstance(prompt, str):
            prompt_ids = self.tokenize(prompt, special=special)
        else:
            prompt_ids = self._checked_ids(prompt, "prompt")
        if not prompt_ids:
            raise ValueError("prompt is empty: it has no tokens")
        if len(prompt_ids) > self.n_ctx:
            raise ValueError(f"prompt has {len(prompt_ids)} tokens, more than the context of n_ctx "
                             f"{self.n_ctx} tokens")
        return self._generate(prompt_ids, int(max_tokens), Sampler(params), stops)

    def _generate(self, prompt_ids: List[int], max_tokens: int, sampler: Sampler,
                  stops: StopStrings) -> Iterator[Chunk]:
        if max_tokens == 0:
            yield Chunk("", [], "length")
            return
        logits = self._eval_prompt(prompt_ids)
        history = list(prompt_ids)
        stream = self.tokenizer.stream()
        eog = self.tokenizer.eog_ids
        for n_generated in range(1, max_tokens + 1):
            token = sampler.sample(logits, history)
            if token in eog:
                yield Chunk(stops.flush() + stream.flush(), [token], "eos")
                return
            history.append(token)
            text, stopped = stops.push(stream.push(token))
            if stopped:
                yield Chunk(text, [token], "stop")
                return
            if n_generated == max_tokens or self.n_past >= self.n_ctx:
                yield Chunk(text + stops.flush() + stream.flush(), [token], "length")
                return
            yield Chunk(text, [token])
            # Only now run the token through the model: a caller that stops reading above
            # costs nothing more.
            logits = self.eval([token], all_logits=False)

    def _eval_prompt(self, prompt_ids: List[int]) -> np.ndarray:
        """Logits after the prompt, evaluating only what the cache does not already hold."""
        keep = _common_prefix(self._tokens, prompt_ids)
        keep = min(keep, len(prompt_ids) - 1)  # the last prompt token must run to give logits
        self._ctx.truncate(keep)
        del self._tokens[keep:]
        return self.eval(prompt_ids[keep:], all_logits=False)

    def _checked_ids(self, ids: Any, name: str) -> List[int]:
        if isinstance(ids, (str, bytes)):
            raise ValueError(f"{name} must be a sequence of token ids, not {type(ids).__name__}")
        out = []
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.n_vocab:
                raise ValueError(f"{name} contains {i!r}, which is not a token id in [0, {self.n_vocab})")
            out.append(int(i))
        return out


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _check_optional_positive(name: str, value: Optional[int]) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
