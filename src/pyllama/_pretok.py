"""Byte-level BPE pre-tokenizers: llama.cpp's table keyed by tokenizer.ggml.pre.

llama.cpp splits text with a list of regexes applied one after another: each regex cuts every
piece left by the previous one into its matches and the text between them. Its hand-written
matchers for the GPT-2 and Llama-3 patterns behave as the regexes below do; tests check the
splits against llama.cpp's for every code point of planes 0-3 and 14.
"""
from __future__ import annotations

from dataclasses import dataclass

from ._core import PyllamaError

# GPT-2's pattern. llama.cpp's copy lacks the final "|\s+"; the text it leaves unmatched becomes a
# piece of its own anyway, so the split is the same.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# Llama 3 (tiktoken cl100k-style); the case-insensitive group is spelled out as llama.cpp does.
_LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
           r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# Qwen2: Llama 3 with single digits.
_QWEN2 = _LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")


@dataclass(frozen=True)
class PreTokenizer:
    """How llama.cpp pre-tokenizes and post-processes one family of byte-level BPE vocabularies."""
    regexes: tuple[str, ...]
    ignore_merges: bool = False  # a whole pre-token that is in the vocabulary is used as is
    add_bos: bool = False        # default of tokenizer.ggml.add_bos_token
    clean_spaces: bool = True    # decode removes spaces before punctuation (clean_up_tokenization_spaces)


# llama.cpp's Unicode tables predate three Balinese punctuation marks that the regex engine of
# `tokenizers` knows (U+1B4E, U+1B4F, U+1B7F); for llama.cpp they are not \p{P}.
_PUNCT = r"[\p{P}\$\+<=>\^~\|&&[^\x{1B4E}\x{1B4F}\x{1B7F}]]+"
_DEFAULT = PreTokenizer((_PUNCT, _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"))
_GPT2_KIND = PreTokenizer((_GPT2,))
_STARCODER = PreTokenizer((r"\p{N}", _GPT2))
_LLAMA3_KIND = PreTokenizer((_LLAMA3,), ignore_merges=True, add_bos=True)


def _table() -> dict[str, PreTokenizer]:
    kinds: dict[PreTokenizer, tuple[str, ...]] = {
        _DEFAULT: ("default",),
        _LLAMA3_KIND: ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                       "midm-2.0", "lfm2", "jina-v5-nano"),
        PreTokenizer((_LLAMA3,)): ("dbrx", "smaug-bpe"),
        _GPT2_KIND: ("gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
                     "a.x-4.0", "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe",
                     "mpt", "olmo", "jais", "exaone4"),
        PreTokenizer((_GPT2,), clean_spaces=False): ("trillion", "granite-docling"),
        _STARCODER: ("starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2"),
        PreTokenizer((r"\p{N}", _GPT2), clean_spaces=False): ("smollm", "command-r"),
        PreTokenizer((_QWEN2,)): ("stablelm2", "megrez"),
        PreTokenizer((_QWEN2,), clean_spaces=False): ("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2",
                                                      "hunyuan", "solar-open"),
    }
    return {name: kind for kind, names in kinds.items() for name in names}


_BY_NAME = _table()


def pre_tokenizer_for(name: str) -> PreTokenizer:
    """The pre-tokenizer llama.cpp uses for a tokenizer.ggml.pre value ('' means 'default')."""
    kind = _BY_NAME.get(name or "default")
    if kind is None:
        raise PyllamaError(f"tokenizer.ggml.pre: unsupported pre-tokenizer {name!r} "
                           f"(supported: {', '.join(sorted(_BY_NAME))})")
    return kind
