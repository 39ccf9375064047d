"""A Hugging Face byte-level BPE tokenizer.json as a GGUF "gpt2" vocabulary, the way llama.cpp's
converter builds it from the tokenizer (here Hugging Face's ``tokenizers`` library rather than
``transformers``, which wraps the same tokenizer):

- tokens by id up to the model's vocab_size; ids without a token become unused "[PAD<id>]";
  added tokens are control tokens when special (or special-looking), else user-defined;
- the merges in rank order (a space inside a merge part written as U+0120, as GPT-2 spells it);
- tokenizer.ggml.pre: which pre-tokenizer llama.cpp must use, identified by hashing the ids of
  a check text (see bpe_pre_hashes.py). An unknown hash is an error, as in llama.cpp: guessing
  would give a model that tokenizes differently from the original.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, List

from tokenizers import Tokenizer

from .._core import PyllamaError
from .bpe_pre_hashes import CHECK_TEXT, PRE_BY_HASH
from .hf_special import SpecialTokens, read_add_prefix_space
from .jsonfile import read_json_object
from .vocab import CONTROL, NORMAL, UNUSED, USER_DEFINED, Vocabulary, looks_special


def is_byte_level_bpe(tokenizer_json: Dict[str, Any]) -> bool:
    model = tokenizer_json.get("model")
    decoder = tokenizer_json.get("decoder")
    return (isinstance(model, dict) and model.get("type") == "BPE" and not model.get("byte_fallback", False)
            and isinstance(decoder, dict) and decoder.get("type") == "ByteLevel")


def identify_pre_tokenizer(tokenizer: Tokenizer, path: Path) -> str:
    """llama.cpp's tokenizer.ggml.pre for this tokenizer; PyllamaError if it is not one it knows."""
    ids = tokenizer.encode(CHECK_TEXT).ids  # with the special tokens encoding adds, as llama.cpp
    digest = hashlib.sha256(str(ids).encode()).hexdigest()
    pre = PRE_BY_HASH.get(digest)
    if pre is None:
        raise PyllamaError(f"{path}: unrecognised byte-level BPE pre-tokenizer (check hash {digest}): llama.cpp "
                           "identifies Llama 3 ('llama-bpe'), SmolLM ('smollm') and others by this hash, and "
                           "this tokenizer matches none pyllama supports")
    return pre


def bpe_vocab(folder: Path, vocab_size: int) -> Vocabulary:
    path = folder / "tokenizer.json"
    data = read_json_object(path)
    if not is_byte_level_bpe(data):
        raise PyllamaError(f"{path}: not a byte-level BPE tokenizer (a SentencePiece-style tokenizer.json needs "
                           "its tokenizer.model beside it)")
    try:
        tokenizer = Tokenizer.from_str(path.read_text(encoding="utf-8"))
    except Exception as exc:  # the tokenizers library's own parse errors
        raise PyllamaError(f"{path}: the tokenizers library cannot load it: {exc}") from None
    ids_by_text = tokenizer.get_vocab(with_added_tokens=True)
    if ids_by_text and max(ids_by_text.values()) >= vocab_size:
        raise PyllamaError(f"{path}: has token id {max(ids_by_text.values())}, beyond the model's {vocab_size} "
                           "token embeddings")
    text_by_id = {i: t for t, i in ids_by_text.items()}
    added = tokenizer.get_added_tokens_decoder()
    added_texts = {t.content for t in added.values()}
    tokens: List[str] = []
    types: List[int] = []
    for i in range(vocab_size):
        text = text_by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
            continue
        if text in added_texts and i in added:
            token = added[i]
            if not token.normalized:
                # llama.cpp expects added tokens pre-normalized: round-trip through the tokenizer.
                text = tokenizer.decode(tokenizer.encode(text, add_special_tokens=False).ids,
                                        skip_special_tokens=False)
            if token.special or looks_special(text):
                types.append(CONTROL)
            else:
                text = text.replace("\u2581", " ")
                types.append(USER_DEFINED)
        else:
            types.append(NORMAL)
        tokens.append(text)
    special = SpecialTokens(folder, n_vocab=None)
    return Vocabulary(model="gpt2", pre=identify_pre_tokenizer(tokenizer, path), tokens=tokens, types=types,
                      merges=_merges(data, path), special_ids=special.ids, add_special=special.add,
                      chat_template=special.chat_template, add_space_prefix=read_add_prefix_space(folder))


def _merges(data: Dict[str, Any], path: Path) -> List[str]:
    merges = data["model"].get("merges") or []
    out = []
    for m in merges:
        if isinstance(m, str):
            out.append(m)
        elif isinstance(m, list) and len(m) == 2 and all(isinstance(p, str) for p in m):
            # Since transformers 4.45 merges are pairs, so a part may contain a space.
            out.append(" ".join(p.replace(" ", "\u0120") for p in m))
        else:
            raise PyllamaError(f"{path}: malformed merge {m!r}")
    return out
