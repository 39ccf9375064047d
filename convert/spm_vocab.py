"""A SentencePiece tokenizer.model as a GGUF "llama" vocabulary, the way llama.cpp's converter
builds it: every piece with its score and type; ids the model has but the tokenizer lacks become
unused "[PAD<id>]" tokens; in a Hugging Face folder, tokens from added_tokens.json and
tokenizer_config.json's added_tokens_decoder replace or extend pieces (score -1000, control if
special or special-looking, else user-defined)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import sentencepiece

from .._core import PyllamaError
from .hf_special import SpecialTokens, read_add_prefix_space
from .jsonfile import read_optional_object
from .vocab import BYTE, CONTROL, NORMAL, UNKNOWN, UNUSED, USER_DEFINED, Vocabulary, looks_special


def load_sentencepiece(path: Path) -> sentencepiece.SentencePieceProcessor:
    sp = sentencepiece.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(path.read_bytes())
    except RuntimeError as exc:
        raise PyllamaError(f"{path}: not a SentencePiece model ({exc}); a Llama 3 tokenizer.model (tiktoken) is "
                           "not supported: convert the Hugging Face release, which has a tokenizer.json") from None
    return sp


def sentencepiece_vocab(path: Path, vocab_size: int, hf_folder: Optional[Path]) -> Vocabulary:
    """The vocabulary of `vocab_size` tokens (the model's embedding rows) from tokenizer.model at
    `path`; `hf_folder` is the Hugging Face folder whose tokenizer files amend it, if any."""
    sp = load_sentencepiece(path)
    n_pieces = sp.vocab_size()
    if n_pieces > vocab_size:
        raise PyllamaError(f"{path}: has {n_pieces} pieces, more than the model's {vocab_size} token embeddings")
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    scores = [-10000.0] * vocab_size
    types = [UNUSED] * vocab_size
    for i in range(n_pieces):
        tokens[i], scores[i] = sp.IdToPiece(i), sp.GetScore(i)
        if sp.IsUnknown(i):
            types[i] = UNKNOWN
        elif sp.IsControl(i):
            types[i] = CONTROL
        elif sp.IsUnused(i):
            types[i] = UNUSED
        elif sp.IsByte(i):
            types[i] = BYTE
        else:
            types[i] = NORMAL
    vocab = Vocabulary(model="llama", pre="default", tokens=tokens, types=types, scores=scores)
    if hf_folder is None:
        # A Meta checkpoint: the ids the tokenizer itself names (llama.cpp's defaults for Llama).
        for kind, token_id in (("bos", sp.bos_id()), ("eos", sp.eos_id()), ("unk", sp.unk_id())):
            if 0 <= token_id < vocab_size:
                vocab.special_ids[kind] = token_id
        return vocab
    _apply_hf_added_tokens(vocab, hf_folder)
    special = SpecialTokens(hf_folder, n_vocab=vocab_size)
    vocab.special_ids, vocab.add_special, vocab.chat_template = special.ids, special.add, special.chat_template
    vocab.add_space_prefix = read_add_prefix_space(hf_folder)
    return vocab


def _apply_hf_added_tokens(vocab: Vocabulary, folder: Path) -> None:
    assert vocab.scores is not None
    n = len(vocab.tokens)
    added = read_optional_object(folder / "added_tokens.json") or {}
    for text, token_id in added.items():
        if not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
            raise PyllamaError(f"{folder / 'added_tokens.json'}: token {text!r} has id {token_id!r}")
        if token_id < n:
            vocab.tokens[token_id], vocab.scores[token_id], vocab.types[token_id] = text, -1000.0, USER_DEFINED
    config = read_optional_object(folder / "tokenizer_config.json") or {}
    decoder = config.get("added_tokens_decoder") or {}
    if not isinstance(decoder, dict):
        raise PyllamaError(f"{folder / 'tokenizer_config.json'}: added_tokens_decoder is not an object")
    for key, entry in decoder.items():
        try:
            token_id = int(key)
        except ValueError:
            token_id = -1
        if token_id < 0 or not isinstance(entry, dict) or not isinstance(entry.get("content"), str):
            raise PyllamaError(f"{folder / 'tokenizer_config.json'}: malformed added_tokens_decoder entry {key!r}")
        if token_id >= n:
            continue
        text = entry["content"]
        if entry.get("special") or looks_special(text):
            vocab.types[token_id] = CONTROL
        else:
            text = text.replace("\u2581", " ")  # user-defined tokens are matched in raw text
            vocab.types[token_id] = USER_DEFINED
        vocab.tokens[token_id], vocab.scores[token_id] = text, -1000.0
