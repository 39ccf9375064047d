"""The vocabulary of a GGUF file, read and checked the way llama.cpp's ``llama_vocab::impl::load`` does.

Everything the encoder and decoder need is decided here, once: token texts, scores and attribute
bits, the special token ids and flags with llama.cpp's defaults, the end-of-generation set, and
the special tokens in the order the partitioner tries them. The metadata dict is untrusted: any
malformed value raises PyllamaError naming its key.
"""
from __future__ import annotations

import numbers
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ._core import PyllamaError
from ._pretok import PreTokenizer, pre_tokenizer_for

# llama.cpp's token attribute bits (llama_token_attr). A token's type in the file gives the
# first bits; load() then adds or replaces some by token text, as below.
ATTR_UNKNOWN = 1 << 0
ATTR_UNUSED = 1 << 1
ATTR_NORMAL = 1 << 2
ATTR_CONTROL = 1 << 3
ATTR_USER_DEFINED = 1 << 4
ATTR_BYTE = 1 << 5
ATTR_LSTRIP = 1 << 7
ATTR_RSTRIP = 1 << 8

# tokenizer.ggml.token_type values (llama_token_type) -> attribute bits; 0 is "undefined".
_TYPE_TO_ATTR = {0: 0, 1: ATTR_NORMAL, 2: ATTR_UNKNOWN, 3: ATTR_CONTROL,
                 4: ATTR_USER_DEFINED, 5: ATTR_UNUSED, 6: ATTR_BYTE}

BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>\Z")

KEY = "tokenizer.ggml."

# Special tokens that llama.cpp finds by text when the file does not name them.
# Order matters only for which key is read last: the deprecated fim keys override the new ones.
_ID_KEYS = ("bos_token_id", "eos_token_id", "eot_token_id", "eom_token_id",
            "fim_pre_token_id", "fim_suf_token_id", "fim_mid_token_id",
            "fim_pad_token_id", "fim_rep_token_id", "fim_sep_token_id")
_DEPRECATED_ID_KEYS = {"prefix_token_id": "fim_pre_token_id", "suffix_token_id": "fim_suf_token_id",
                       "middle_token_id": "fim_mid_token_id"}
_TEXTS_FOR_ID = {
    "eot_token_id": ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                     "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
                     "<end_of_utterance>"),
    "eom_token_id": ("<|eom_id|>",),
    "fim_pre_token_id": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
                         "▁<PRE>", "<|code_prefix|>", "<|prefix|>"),
    "fim_suf_token_id": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
                         "▁<SUF>", "<|code_suffix|>", "<|suffix|>"),
    "fim_mid_token_id": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
                         "▁<MID>", "<|code_middle|>", "<|middle|>"),
    "fim_pad_token_id": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "fim_rep_token_id": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep_token_id": ("<|file_sep|>",),
}
# Tokens that end generation wherever they appear (llama.cpp keys this on text too).
_EOG_TEXTS = frozenset((
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~["))
# gpt-oss: always rendered, so llama.cpp turns them into user-defined tokens.
_FORCED_USER_DEFINED = frozenset(("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"))


@dataclass(frozen=True)
class SpecialToken:
    """A token that the partitioner cuts out of the text before the subword model runs."""
    text: str
    id: int
    control: bool   # control or unknown: only matched when the caller parses special tokens
    lstrip: bool    # swallow whitespace to its left
    rstrip: bool    # swallow whitespace to its right


@dataclass(frozen=True)
class Vocab:
    """A checked vocabulary and llama.cpp's settings for it."""
    model: str                      # "llama" (SentencePiece) or "gpt2" (byte-level BPE)
    texts: list[str]
    scores: np.ndarray              # float32, one per token
    attrs: list[int]                # ATTR_* bits per token, as llama.cpp holds them after load
    token_to_id: dict[str, int]
    merges: list[tuple[str, str]]   # gpt2 only, in rank order, first of duplicates kept
    pre: PreTokenizer | None        # gpt2 only
    bos_id: int | None
    eos_id: int | None
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    clean_spaces: bool
    eog_ids: frozenset[int]
    specials: tuple[SpecialToken, ...]  # longest text first, as llama.cpp tries them

    @property
    def n_vocab(self) -> int:
        return len(self.texts)


def _get(md: Mapping[str, Any], name: str, kind: type, default: Any = None) -> Any:
    """The scalar under tokenizer.ggml.<name> as `kind` (str, int or bool), or `default`."""
    key = KEY + name
    if key not in md:
        return default
    value = md[key]
    is_bool = isinstance(value, (bool, np.bool_))
    if kind is bool and is_bool:
        return bool(value)
    if kind is int and isinstance(value, numbers.Integral) and not is_bool:
        return int(value)
    if kind is str and isinstance(value, str):
        return value
    raise PyllamaError(f"{key}: expected {kind.__name__}, got {type(value).__name__}")


def _string_list(md: Mapping[str, Any], name: str) -> list[str]:
    key = KEY + name
    value = md.get(key)
    if value is None:
        raise PyllamaError(f"{key}: missing from the metadata")
    if not isinstance(value, (list, tuple)):
        raise PyllamaError(f"{key}: expected an array of strings, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise PyllamaError(f"{key}[{i}]: expected a string, got {type(item).__name__}")
    return list(value)


def _numeric_array(md: Mapping[str, Any], name: str, n: int, kinds: str) -> np.ndarray | None:
    """The array under `name` (numpy kinds in `kinds`, e.g. "iu"), checked to hold n elements."""
    key = KEY + name
    if key not in md:
        return None
    value = md[key]
    arr = np.asarray(value) if isinstance(value, (list, tuple)) else value
    if not isinstance(arr, np.ndarray) or arr.ndim != 1 or (arr.size and arr.dtype.kind not in kinds):
        raise PyllamaError(f"{key}: expected a numeric array, got {type(value).__name__}")
    if arr.size != n:
        raise PyllamaError(f"{key}: has {arr.size} elements but tokenizer.ggml.tokens has {n}")
    return arr


def load_vocab(md: Mapping[str, Any]) -> Vocab:
    """Read the tokenizer.ggml.* keys of a GGUF metadata dict (see pyllama._core.GGUFFile)."""
    if not isinstance(md, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(md).__name__}")
    model = _get(md, "model", str)
    if model is None:
        raise PyllamaError(f"{KEY}model: missing from the metadata")

    # Defaults by tokenizer kind, as llama.cpp sets them before reading the optional keys.
    pre: PreTokenizer | None = None
    if model == "llama":
        bos_default, eos_default = 1, 2
        add_bos, add_space_prefix, clean_spaces = True, True, False
    elif model == "gpt2":
        pre = pre_tokenizer_for(_get(md, "pre", str, ""))
        bos_default, eos_default = 11, 11
        add_bos, add_space_prefix, clean_spaces = pre.add_bos, False, pre.clean_spaces
    else:
        raise PyllamaError(f"{KEY}model: unsupported tokenizer {model!r} "
                           "(supported: 'llama' SentencePiece, 'gpt2' byte-level BPE)")
    add_space_prefix = _get(md, "add_space_prefix", bool, add_space_prefix)

    texts, token_to_id = _read_tokens(md)
    n = len(texts)
    scores = _numeric_array(md, "scores", n, "fiu")
    scores = np.zeros(n, np.float32) if scores is None else scores.astype(np.float32)
    attrs = _read_attrs(md, texts)
    merges = _read_merges(md, token_to_id) if model == "gpt2" else []

    ids = _read_special_ids(md, n, bos_default, eos_default)
    add_bos = _get(md, "add_bos_token", bool, add_bos)
    add_eos = _get(md, "add_eos_token", bool, False)
    _find_special_ids_by_text(ids, token_to_id, attrs)
    eog = _end_of_generation_ids(ids, texts, token_to_id, attrs)

    special_ids = [i for i in range(n) if attrs[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)]
    special_ids.sort(key=lambda i: -len(texts[i].encode()))  # stable: ties keep id order
    _set_strip_attrs(md, texts, token_to_id, attrs, special_ids)
    specials = tuple(SpecialToken(texts[i], i, bool(attrs[i] & (ATTR_CONTROL | ATTR_UNKNOWN)),
                                  bool(attrs[i] & ATTR_LSTRIP), bool(attrs[i] & ATTR_RSTRIP))
                     for i in special_ids)

    return Vocab(model=model, texts=texts, scores=scores, attrs=attrs, token_to_id=token_to_id,
                 merges=merges, pre=pre, bos_id=ids["bos_token_id"], eos_id=ids["eos_token_id"],
                 add_bos=add_bos, add_eos=add_eos, add_space_prefix=add_space_prefix,
                 clean_spaces=clean_spaces, eog_ids=frozenset(eog), specials=specials)


def _read_tokens(md: Mapping[str, Any]) -> tuple[list[str], dict[str, int]]:
    texts = _string_list(md, "tokens")
    if not texts:
        raise PyllamaError(f"{KEY}tokens: the vocabulary is empty")
    try:
        "".join(texts).encode()
    except UnicodeEncodeError:
        bad = next(i for i, t in enumerate(texts) if not _is_utf8(t))
        raise PyllamaError(f"{KEY}tokens[{bad}]: not valid UTF-8 text") from None
    # llama.cpp names empty tokens so that they cannot collide with text.
    texts = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(texts)]
    token_to_id: dict[str, int] = {}
    for i, t in enumerate(texts):
        # llama.cpp asserts that texts are unique.
        if token_to_id.setdefault(t, i) != i:
            raise PyllamaError(f"{KEY}tokens: token {i} repeats token {token_to_id[t]} ({t!r})")
    return texts, token_to_id


def _read_attrs(md: Mapping[str, Any], texts: list[str]) -> list[int]:
    """Attribute bits from tokenizer.ggml.token_type (all normal without it)."""
    types = _numeric_array(md, "token_type", len(texts), "iu")
    if types is None:
        return [ATTR_NORMAL] * len(texts)
    bad = np.flatnonzero((types < 0) | (types > 6))
    if bad.size:
        i = int(bad[0])
        raise PyllamaError(f"{KEY}token_type[{i}]: unknown token type {int(types[i])}")
    table = [_TYPE_TO_ATTR[t] for t in range(7)]
    attrs = [table[t] for t in types.tolist()]
    for i, a in enumerate(attrs):
        if a & ATTR_BYTE and not BYTE_TOKEN.match(texts[i]):
            raise PyllamaError(f"{KEY}tokens[{i}]: byte token {texts[i]!r} is not of the form <0xXX>")
    return attrs


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
        return True
    except UnicodeEncodeError:
        return False


def _read_merges(md: Mapping[str, Any], token_to_id: dict[str, int]) -> list[tuple[str, str]]:
    key = KEY + "merges"
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for i, line in enumerate(_string_list(md, "merges")):
        # llama.cpp splits at the first space after the first character.
        cut = line.find(" ", 1)
        pair = (line[:cut], line[cut + 1:])
        if cut < 0 or not pair[1] or pair[0] not in token_to_id or pair[1] not in token_to_id:
            raise PyllamaError(f"{key}[{i}]: {line!r} is not two tokens separated by a space")
        if pair not in seen:  # llama.cpp keeps the rank of the first occurrence
            seen.add(pair)
            merges.append(pair)
    return merges


def _read_special_ids(md: Mapping[str, Any], n: int, bos: int, eos: int) -> dict[str, int | None]:
    ids: dict[str, int | None] = {k: None for k in _ID_KEYS}
    # llama.cpp's built-in defaults are dropped when the vocabulary is too small for them.
    ids["bos_token_id"] = bos if bos < n else None
    ids["eos_token_id"] = eos if eos < n else None
    for name in (*_ID_KEYS, *_DEPRECATED_ID_KEYS):
        value = _get(md, name, int)
        if value is None:
            continue
        if not 0 <= value < n:
            if name in ("bos_token_id", "eos_token_id"):
                raise PyllamaError(f"{KEY}{name}: token id {value} is outside the vocabulary (0..{n - 1})")
            continue  # llama.cpp ignores other out-of-range ids (e.g. a pad id one past the end)
        ids[_DEPRECATED_ID_KEYS.get(name, name)] = value
    return ids


def _find_special_ids_by_text(ids: dict[str, int | None], token_to_id: dict[str, int],
                              attrs: list[int]) -> None:
    # llama.cpp takes the first match in hash order; the lowest id is our deterministic choice.
    for name, candidates in _TEXTS_FOR_ID.items():
        if ids[name] is not None:
            continue
        found = [token_to_id[t] for t in candidates if t in token_to_id]
        if found:
            ids[name] = min(found)
            attrs[ids[name]] |= ATTR_CONTROL


def _end_of_generation_ids(ids: dict[str, int | None], texts: list[str],
                           token_to_id: dict[str, int], attrs: list[int]) -> set[int]:
    eog = {ids[k] for k in ("fim_pad_token_id", "fim_rep_token_id", "fim_sep_token_id")} - {None}
    for t in _EOG_TEXTS & token_to_id.keys():
        eog.add(token_to_id[t])
        attrs[token_to_id[t]] |= ATTR_CONTROL
    for t in _FORCED_USER_DEFINED & token_to_id.keys():
        attrs[token_to_id[t]] = ATTR_USER_DEFINED
    eog |= {ids[k] for k in ("eos_token_id", "eot_token_id", "eom_token_id")} - {None}

    eog_texts = {texts[i]: i for i in eog}
    # o200k_harmony / solar-open: "<|end|>" ends a message, not the generation.
    has_call = "<|call|>" in eog_texts or "<|calls|>" in eog_texts
    if "<|end|>" in eog_texts and has_call and ("<|return|>" in eog_texts or "<|flush|>" in eog_texts):
        end = eog_texts["<|end|>"]
        eog.discard(end)
        attrs[end] = ATTR_USER_DEFINED
    # gemma4 / plamo have an ordinary "</s>".
    if "</s>" in eog_texts and ("<|tool_response>" in eog_texts or "<|plamo:eos|>" in eog_texts):
        s = eog_texts["</s>"]
        eog.discard(s)
        attrs[s] = ATTR_NORMAL
    return eog


def _set_strip_attrs(md: Mapping[str, Any], texts: list[str], token_to_id: dict[str, int],
                     attrs: list[int], special_ids: list[int]) -> None:
    """Per-model whitespace stripping around special tokens, which llama.cpp keys on names."""
    name = md.get("general.name", "")
    name = name.lower() if isinstance(name, str) else ""
    pre = md.get(KEY + "pre", "")
    arch = md.get("general.architecture", "")
    pre = pre if isinstance(pre, str) else ""
    arch = arch if isinstance(arch, str) else ""

    def strip(text: str, bit: int, on: bool) -> None:
        if text in token_to_id:
            i = token_to_id[text]
            attrs[i] = attrs[i] | bit if on else attrs[i] & ~bit

    if any(s in pre for s in ("jina-v2-de", "jina-v2-es", "jina-v2-code")) or \
            any(s in arch for s in ("nomic-bert-moe", "jina-bert-v3")):
        strip("<mask>", ATTR_LSTRIP, True)
    elif "phi-3" in name or "phi3" in name:
        for i in special_ids:
            attrs[i] |= ATTR_RSTRIP
        strip("</s>", ATTR_RSTRIP, True)
        for text in ("<unk>", "<s>", "<|endoftext|>"):
            strip(text, ATTR_RSTRIP, False)
    elif "modern-bert" in name:
        strip("[MASK]", ATTR_LSTRIP, True)
