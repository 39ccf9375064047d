"""Model: load a GGUF file, tokenize, compute logits, generate and chat."""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import _core, scoring, state
from ._system import available_memory, physical_cores
from .chat import LLAMA2_CHAT_TEMPLATE, Message, render_chat_template
from .generation import Chunk, Completion, Generation, StatsClock, TokenLogprob
from .scoring import Perplexity
from .logits import LogitsHooks, LogitsProcessor, StoppingCriterion, log_softmax, top_logprobs
from .sampling import Sampler, SamplingParams
from .stopping import StopStrings
from .tokenizer import Tokenizer

Prompt = Union[str, Sequence[int]]
logger = logging.getLogger("pyllama")


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
        progress: show a progress bar (tqdm.auto) while the file is read in.
    """

    def __init__(self, path: Union[str, os.PathLike], *, n_ctx: Optional[int] = None,
                 n_threads: Optional[int] = None, n_batch: int = 512, kv_cache_type: str = "f16",
                 tokenizer_model: Optional[Union[str, os.PathLike]] = None, progress: bool = False) -> None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"model file not found: {path}")
        _check_optional_positive("n_ctx", n_ctx)
        _check_optional_positive("n_threads", n_threads)
        _check_optional_positive("n_batch", n_batch)
        if kv_cache_type not in ("f16", "f32"):
            raise ValueError(f"kv_cache_type must be 'f16' or 'f32', got {kv_cache_type!r}")
        t0 = time.perf_counter()
        if progress:
            _read_into_page_cache(path)
        self.path = path
        self._file = _core.GGUFFile(path)
        self._metadata = self._file.metadata  # built once: the vocabulary makes it ~15 ms
        self._model = _core.LlamaModel(self._file)
        trained = self._model.n_ctx_train
        if n_ctx is None:
            n_ctx = trained
        elif n_ctx > trained:
            raise ValueError(f"n_ctx {n_ctx} exceeds the model's trained context of {trained} tokens")
        _check_kv_cache_fits(self._model, n_ctx, kv_cache_type)
        self._ctx = _core.InferenceContext(self._model, n_ctx, n_threads or physical_cores(), n_batch,
                                           kv_cache_type)
        self.tokenizer = Tokenizer.from_metadata(self._metadata, tokenizer_model=tokenizer_model)
        self._tokens: List[int] = []  # exactly the tokens whose keys/values are in the cache
        self._model_fingerprint: Optional[bytes] = None
        logger.info("loaded %r in %.2f s", self, time.perf_counter() - t0)

    # --- lifetime ----------------------------------------------------------------------
    def close(self) -> None:
        """Release the KV cache and the file's mapping now rather than when the object is
        collected. Using a closed model raises ValueError; closing twice is harmless."""
        self._ctx = self._model = self._file = _CLOSED
        self._tokens = []

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

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

    @property
    def n_params(self) -> int:
        """Number of weights in the file."""
        return sum(t.n_elements for t in self._file.tensors)

    @property
    def quantization(self) -> str:
        """The file's type as llama.cpp names it (e.g. "Q4_K_M"), from general.file_type, or the
        type holding most of the weights' bytes when the file does not say."""
        from ._quant_rule import FILE_TYPES
        ftype = self._metadata.get("general.file_type")
        for name, (value, _) in FILE_TYPES.items():
            if value == ftype:
                return name
        by_type: dict = {}
        for t in self._file.tensors:
            by_type[t.type_name] = by_type.get(t.type_name, 0) + t.nbytes
        return max(by_type, key=by_type.get)

    def __repr__(self) -> str:
        if self._model is _CLOSED:
            return f"Model({os.path.basename(self.path)!r}, closed)"
        arch = self._metadata.get("general.architecture", "?")
        return (f"Model({os.path.basename(self.path)!r}, {arch}, {_human_count(self.n_params)} params, "
                f"{self.quantization}, n_ctx={self.n_ctx}, n_threads={self.n_threads})")

    # --- text <-> tokens -----------------------------------------------------------------
    def tokenize(self, text: str, *, add_bos: Optional[bool] = None, special: bool = False) -> List[int]:
        """Token ids of `text`; add_bos None follows the file's metadata; special=True parses
        control tokens written in the text (e.g. "<|im_start|>")."""
        return self.tokenizer.encode(text, add_bos=add_bos, special=special)

    def detokenize(self, ids: Sequence[int]) -> str:
        """The text of token ids (control tokens omitted)."""
        return self.tokenizer.decode(self._checked_ids(ids, "ids"))

    # --- chat -----------------------------------------------------------------------------
    @property
    def chat_template(self) -> str:
        """The file's tokenizer.chat_template, or Llama 2's [INST] format when it has none."""
        template = self._metadata.get("tokenizer.chat_template")
        return template if isinstance(template, str) and template else LLAMA2_CHAT_TEMPLATE

    def apply_chat_template(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> str:
        """The prompt text for OpenAI-style messages ({"role": ..., "content": ...}), rendered
        by the chat template in a Jinja2 sandbox as transformers renders it."""
        tok = self.tokenizer
        bos = tok.decode([tok.bos_id], special=True) if tok.bos_id is not None else ""
        eos = tok.decode([tok.eos_id], special=True) if tok.eos_id is not None else ""
        return render_chat_template(self.chat_template, messages, add_generation_prompt=add_generation_prompt,
                                    bos_token=bos, eos_token=eos)

    def chat_tokens(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> List[int]:
        """Token ids of the chat prompt: control tokens in the rendered text are parsed, and the
        BOS token is added only if the file asks for one and the template did not write it."""
        text = self.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
        ids = self.tokenize(text, add_bos=False, special=True)
        bos = self.tokenizer.bos_id
        if self.tokenizer.add_bos and bos is not None and (not ids or ids[0] != bos):
            ids.insert(0, bos)
        return ids

    def chat(self, messages: Sequence[Message], **kwargs: Any) -> Generation:
        """Generate the assistant's reply to `messages`; keyword arguments as generate().
        A conversation that grows turn by turn only evaluates the new turn (prompt cache)."""
        return self.generate(self.chat_tokens(messages), **kwargs)

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
        return self._eval_ids(ids, all_logits)

    def _eval_ids(self, ids: List[int], all_logits: bool) -> np.ndarray:
        self._sync_cache()
        if len(ids) > self.n_ctx - self.n_past:
            raise ValueError(f"{len(ids)} tokens do not fit: the context holds {self.n_past} of "
                             f"n_ctx {self.n_ctx} tokens")
        out = self._ctx.eval(np.asarray(ids, dtype=np.int32), all_logits)
        self._tokens.extend(ids)
        return out

    def _sync_cache(self) -> None:
        """Drops cache entries _tokens does not know of: a KeyboardInterrupt can land between an
        evaluation and the bookkeeping after it."""
        if self._ctx.n_past != len(self._tokens):
            n = min(self._ctx.n_past, len(self._tokens))
            self._ctx.truncate(n)
            del self._tokens[n:]

    def reset(self) -> None:
        """Forget the current sequence."""
        self._ctx.truncate(0)
        self._tokens.clear()

    # --- generation -----------------------------------------------------------------------
    def generate(self, prompt: Prompt, *, max_tokens: int = 256, temperature: float = 0.8,
                 top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                 repeat_penalty: float = 1.0, repeat_last_n: int = 64, seed: Optional[int] = None,
                 stop: Union[str, Sequence[str]] = (), special: bool = False, logprobs: Optional[int] = None,
                 logit_bias: Optional[Mapping[int, float]] = None,
                 logits_processor: Union[LogitsProcessor, Sequence[LogitsProcessor], None] = None,
                 stopping_criteria: Union[StoppingCriterion, Sequence[StoppingCriterion], None] = None,
                 progress: bool = False) -> Generation:
        """Generate a continuation of `prompt`, as a Generation yielding Chunks as text becomes
        available (`.text()` collects it all; `.cancel()` stops it from any thread).

        prompt: text (tokenized with BOS per the file's metadata; special tokens written in it,
        such as "<|im_start|>", are parsed only with special=True) or a list of token ids.
        Stops at an end-of-generation token ("eos"), after max_tokens or when the context is
        full ("length"), when the text would contain one of `stop` or a stopping criterion
        returns True ("stop"), or on cancel() ("cancelled").
        Every chunk carries its token's logprob under the model; logprobs=N adds the N most
        likely alternatives. logit_bias ({token_id: bias}) and logits_processor
        (f(token_ids, logits) -> logits) change what is sampled, not the reported logprobs.
        progress=True shows a progress bar over a long prompt.
        A prompt that shares a prefix with the previous sequence reuses its KV cache.
        Arguments are validated before this returns (ValueError naming the argument).
        """
        params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                repeat_penalty=repeat_penalty, repeat_last_n=repeat_last_n, seed=seed)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer)) or max_tokens < 0:
            raise ValueError(f"max_tokens must be an integer >= 0, got {max_tokens!r}")
        if logprobs is not None and (isinstance(logprobs, bool) or not isinstance(logprobs, (int, np.integer))
                                     or not 1 <= logprobs <= self.n_vocab):
            raise ValueError(f"logprobs must be None or an integer in [1, {self.n_vocab}], got {logprobs!r}")
        hooks = LogitsHooks(self.n_vocab, logit_bias=logit_bias, logits_processor=logits_processor,
                            stopping_criteria=stopping_criteria)
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
        cancel = threading.Event()
        steps = self._generate(prompt_ids, int(max_tokens), Sampler(params), stops, hooks, logprobs, cancel,
                               progress)
        return Generation(steps, cancel)

    def complete(self, prompt: Prompt, **kwargs: Any) -> Completion:
        """The whole generation at once: text, tokens, logprobs, finish_reason and stats.
        Keyword arguments as generate()."""
        return self.generate(prompt, **kwargs).text()

    def _generate(self, prompt_ids: List[int], max_tokens: int, sampler: Sampler, stops: StopStrings,
                  hooks: LogitsHooks, n_top: Optional[int], cancel: threading.Event,
                  progress: bool) -> Iterator[Chunk]:
        clock = StatsClock(len(prompt_ids))
        if max_tokens == 0:
            yield Chunk("", [], "length", stats=clock.snapshot(), finish_detail="max_tokens is 0")
            return
        logits = self._eval_prompt(prompt_ids, cancel, progress, clock)
        if logits is None:
            yield Chunk("", [], "cancelled", stats=clock.snapshot(), finish_detail="cancelled during the prompt")
            return
        history = list(prompt_ids)
        stream = self.tokenizer.stream()
        eog = self.tokenizer.eog_ids

        def held_back() -> str:  # what the detokenizer and the stop filter still hold, at the end
            return stops.flush() + stream.flush()

        for n_generated in range(1, max_tokens + 1):
            token = sampler.sample(hooks.process(history, logits), history)
            clock.token_sampled()
            logprobs = log_softmax(logits)
            logprob = float(logprobs[token])
            top = None
            if n_top:
                top = [TokenLogprob(i, self.tokenizer.decode([i], special=True), lp)
                       for i, lp in top_logprobs(logprobs, n_top)]

            def chunk(text: str, reason: Optional[str] = None, detail: Optional[str] = None) -> Chunk:
                return Chunk(text, [token], reason, logprob, top, clock.snapshot(), detail)

            if token in eog:
                yield chunk(held_back(), "eos")
                return
            history.append(token)
            text, stopped = stops.push(stream.push(token))
            if stopped:
                yield chunk(text, "stop")
                return
            if hooks.should_stop(history, logits):
                yield chunk(text + held_back(), "stop", "a stopping criterion returned True")
                return
            if n_generated == max_tokens:
                yield chunk(text + held_back(), "length", f"max_tokens={max_tokens} reached")
                return
            if self.n_past >= self.n_ctx:
                detail = f"the context is full: n_ctx={self.n_ctx} tokens"
                logger.warning("generation stopped: %s", detail)
                yield chunk(text + held_back(), "length", detail)
                return
            yield chunk(text)
            # Only now run the token through the model: a caller that stops reading above
            # costs nothing more.
            if cancel.is_set():
                yield Chunk(held_back(), [], "cancelled", stats=clock.snapshot(),
                            finish_detail="cancel() was called")
                return
            logits = self._eval_ids([token], all_logits=False)

    def _eval_prompt(self, prompt_ids: List[int], cancel: threading.Event, progress: bool,
                     clock: StatsClock) -> Optional[np.ndarray]:
        """Logits after the prompt, evaluating only what the cache does not already hold, one
        batch at a time so that cancel() and Ctrl-C take effect between batches. None when
        cancelled (the cache then holds the batches done, which a retry reuses)."""
        self._sync_cache()
        keep = _common_prefix(self._tokens, prompt_ids)
        keep = min(keep, len(prompt_ids) - 1)  # the last prompt token must run to give logits
        self._ctx.truncate(keep)
        del self._tokens[keep:]
        todo = prompt_ids[keep:]
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(todo), unit="tok", desc="prompt")
        try:
            for i in range(0, len(todo), self.n_batch):
                if cancel.is_set():
                    return None
                logits = self._eval_ids(todo[i:i + self.n_batch], all_logits=False)
                if bar is not None:
                    bar.update(min(self.n_batch, len(todo) - i))
        finally:
            if bar is not None:
                bar.close()
        clock.prompt_done(keep)
        return logits

    # --- scoring --------------------------------------------------------------------------
    def perplexity(self, text: str, *, window: int = 512) -> Perplexity:
        """Perplexity of `text` as llama.cpp's perplexity tool computes it: the tokens are cut
        into windows of `window` tokens, each evaluated as a fresh sequence (its first token
        replaced by BOS when the file adds one), and the second half of each window is scored,
        so every scored token has at least window/2 tokens of context. The KV cache is reset."""
        return scoring.perplexity(self, text, window)

    def embed(self, text: Prompt) -> np.ndarray:
        """The embedding of `text` (or of token ids): the last hidden state (after the output
        norm) averaged over the tokens and scaled to unit length, float32 (n_embd,), as
        llama.cpp's mean pooling with Euclidean normalization. Evaluated as a fresh sequence."""
        return scoring.embed(self, text)

    # --- saved states -----------------------------------------------------------------------
    def save_state(self, path: Union[str, os.PathLike]) -> None:
        """Saves the current sequence (its tokens and KV cache) to `path`, so that a later
        session with the same model file can continue from it without re-evaluating it."""
        if not self._tokens:
            raise ValueError("there is no sequence to save: the KV cache is empty")
        self._sync_cache()
        state.write_state(os.fspath(path), self._fingerprint(), self._kv_type_id(), self._tokens,
                          self._ctx.save_state())

    def load_state(self, path: Union[str, os.PathLike]) -> None:
        """Replaces the current sequence with one saved by save_state() from the same model
        file and KV cache type (ValueError otherwise, or for a damaged file)."""
        tokens, cache = state.read_state(os.fspath(path), self._fingerprint(), self._kv_type_id(), self.n_ctx,
                                         self.n_vocab, self._ctx.state_bytes)
        self.reset()
        self._ctx.load_state(len(tokens), cache)
        self._tokens = tokens

    def _fingerprint(self) -> bytes:
        if self._model_fingerprint is None:
            m = self._model
            self._model_fingerprint = state.model_fingerprint(
                self._file, (m.n_vocab, m.n_embd, m.n_layer, m.n_head, m.n_head_kv, m.head_dim, m.n_ff))
        return self._model_fingerprint

    def _kv_type_id(self) -> int:
        return 1 if self._ctx.kv_type == "f16" else 0  # ggml type ids of F16 and F32

    def _checked_ids(self, ids: Any, name: str) -> List[int]:
        try:
            items = iter(ids) if not isinstance(ids, (str, bytes)) else None
        except TypeError:
            items = None
        if items is None:
            raise ValueError(f"{name} must be a sequence of token ids, not {type(ids).__name__}")
        out = []
        for i in items:
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.n_vocab:
                raise ValueError(f"{name} contains {i!r}, which is not a token id in [0, {self.n_vocab})")
            out.append(int(i))
        return out


def _read_into_page_cache(path: str) -> None:
    """Reads the file once with a progress bar, so the mapping that follows finds it in memory."""
    from tqdm.auto import tqdm
    size = os.path.getsize(path)
    buf = bytearray(16 << 20)
    with open(path, "rb", buffering=0) as f, tqdm(total=size, unit="B", unit_scale=True,
                                                  desc=f"loading {os.path.basename(path)}") as bar:
        while (n := f.readinto(buf)):
            bar.update(n)


def _human_count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}" if n < 10 * scale else f"{n / scale:.0f}{unit}"
    return str(n)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class _Closed:
    """Stands in for the core objects of a closed Model, so that any use says so."""

    def __getattr__(self, name: str) -> Any:
        raise ValueError("model is closed")


_CLOSED = _Closed()


def _check_kv_cache_fits(model: Any, n_ctx: int, kv_cache_type: str) -> None:
    """A clear error, before the allocation, when the KV cache cannot fit in the memory the
    machine has available (a file can ask for a context of millions of tokens)."""
    need = n_ctx * model.kv_bytes_per_token * (2 if kv_cache_type == "f32" else 1)
    available = available_memory()
    if available is not None and need > available:
        raise ValueError(f"the KV cache for n_ctx={n_ctx} needs {need / 2**20:.0f} MiB ({kv_cache_type}) but only "
                         f"{available / 2**20:.0f} MiB of memory is available; pass a smaller n_ctx")


def _check_optional_positive(name: str, value: Optional[int]) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
