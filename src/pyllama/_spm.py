"""SentencePiece vocabularies (tokenizer.ggml.model "llama"): llama.cpp's merge, run by the
sentencepiece library on a model built from the GGUF vocabulary.

llama.cpp does not run SentencePiece itself. It starts from the UTF-8 characters of a fragment
(spaces already turned into U+2581), repeatedly merges the adjacent pair whose concatenation is
the highest-scoring token (leftmost first on ties), and spells any leftover character not in the
vocabulary as <0xXX> byte tokens. SentencePiece's BPE model does exactly this over its "normal"
pieces, so the model built here marks every token normal (llama.cpp lets control, unknown,
user-defined and unused tokens take part in merges too), except the <0xXX> byte tokens, which
SentencePiece needs as byte pieces for its byte fallback. The normalizer is the identity and adds
no prefix: the caller escapes spaces and adds llama.cpp's prefix space itself.
"""
from __future__ import annotations

import os
from typing import Union

import sentencepiece

from . import _protobuf as pb
from ._core import PyllamaError
from ._vocab import Vocab

# ModelProto.SentencePiece.Type and TrainerSpec.ModelType values.
_NORMAL, _UNKNOWN, _BYTE = 1, 2, 6
_BPE = 2

# NormalizerSpec: name "identity", no dummy prefix, no whitespace cleanup, no escaping.
_NORMALIZER = (pb.bytes_field(1, b"identity") + pb.varint_field(3, 0) + pb.varint_field(4, 0)
               + pb.varint_field(5, 0))


def byte_piece(b: int) -> str:
    """llama.cpp's (and SentencePiece's) text of the byte token for byte b."""
    return f"<0x{b:02X}>"


class SpmModel:
    """Encodes escaped text fragments to token ids exactly as llama.cpp's SPM tokenizer does."""

    def __init__(self, vocab: Vocab, model_file: Union[str, os.PathLike, None] = None) -> None:
        self._n_vocab = vocab.n_vocab
        # Ids past the vocabulary stand for byte pieces the vocabulary lacks: id -> byte.
        self._missing_bytes: dict[int, int] = {}
        self._sp = sentencepiece.SentencePieceProcessor()
        try:
            if model_file is None:
                proto, self._missing_bytes = _model_from_vocab(vocab)
                self._sp.LoadFromSerializedProto(proto)
            else:
                self._sp.LoadFromSerializedProto(_model_from_file(model_file))
        except RuntimeError as exc:  # sentencepiece's report of a model it cannot load
            where = "tokenizer.ggml.tokens" if model_file is None else os.fspath(model_file)
            raise PyllamaError(f"{where}: sentencepiece rejected the model: {exc}") from None
        if model_file is not None:
            _check_model_matches(self._sp, vocab, model_file)

    def encode(self, text: str) -> list[int]:
        """Ids of one text fragment whose spaces are already escaped as U+2581."""
        ids = self._sp.encode(text)
        if self._missing_bytes and max(ids, default=0) >= self._n_vocab:
            # llama.cpp fails here too (it would fall back to a one-byte token, but a character
            # that has one never needs spelling out in bytes).
            byte = self._missing_bytes[next(i for i in ids if i >= self._n_vocab)]
            raise PyllamaError(f"tokenizer.ggml.tokens: cannot encode byte 0x{byte:02X}: the vocabulary "
                               f"has no {byte_piece(byte)} token")
        return ids


def _model_from_vocab(vocab: Vocab) -> tuple[bytes, dict[int, int]]:
    """The serialized ModelProto for a GGUF vocabulary, and the ids it adds for missing bytes."""
    byte_texts = {byte_piece(b) for b in range(256)}
    pieces = [(text, score, _BYTE if text in byte_texts else _NORMAL)
              for text, score in zip(vocab.texts, vocab.scores.tolist())]
    missing_bytes: dict[int, int] = {}
    for b in range(256):
        if byte_piece(b) not in vocab.token_to_id:
            missing_bytes[len(pieces)] = b
            pieces.append((byte_piece(b), 0.0, _BYTE))
    # SentencePiece needs an unknown piece; ours has a text that is not a token, so no merge
    # can produce it.
    unk = "<pyllama:unk>"
    while unk in vocab.token_to_id:
        unk += "_"
    unk_id = len(pieces)
    pieces.append((unk, 0.0, _UNKNOWN))

    body = b"".join(
        pb.bytes_field(1, pb.bytes_field(1, text.encode()) + pb.float_field(2, score) + pb.varint_field(3, kind))
        for text, score, kind in pieces)
    trainer = (pb.varint_field(3, _BPE) + pb.varint_field(4, len(pieces)) + pb.varint_field(35, 1)
               + pb.varint_field(40, unk_id) + pb.varint_field(41, -1) + pb.varint_field(42, -1)
               + pb.varint_field(43, -1))
    return body + pb.bytes_field(2, trainer) + pb.bytes_field(3, _NORMALIZER), missing_bytes


def _model_from_file(path: Union[str, os.PathLike]) -> bytes:
    """A tokenizer.model's bytes, with its normalizer replaced by ours; PyllamaError unless it is
    a byte-fallback BPE model (what llama.cpp's algorithm matches)."""
    with open(path, "rb") as f:
        data = f.read()
    model_type, byte_fallback = 1, False  # proto defaults: UNIGRAM, no byte fallback
    try:
        for number, _, value in pb.fields(data):
            if number == 2 and isinstance(value, bytes):
                for sub, _, v in pb.fields(value):
                    if sub == 3:
                        model_type = v
                    elif sub == 35:
                        byte_fallback = bool(v)
    except ValueError as exc:
        raise PyllamaError(f"{os.fspath(path)}: not a SentencePiece model ({exc})") from None
    if model_type != _BPE or not byte_fallback:
        raise PyllamaError(f"{os.fspath(path)}: not a byte-fallback BPE SentencePiece model, "
                           "which is what llama.cpp's tokenizer reproduces")
    # A repeated embedded message merges into the first: these fields override the file's.
    return data + pb.bytes_field(3, _NORMALIZER + pb.bytes_field(2, b""))


def _check_model_matches(sp: sentencepiece.SentencePieceProcessor, vocab: Vocab,
                         path: Union[str, os.PathLike]) -> None:
    where = os.fspath(path)
    if sp.get_piece_size() != vocab.n_vocab:
        raise PyllamaError(f"{where}: has {sp.get_piece_size()} pieces but tokenizer.ggml.tokens "
                           f"has {vocab.n_vocab}")
    for i, text in enumerate(vocab.texts):
        if sp.id_to_piece(i) != text:
            raise PyllamaError(f"{where}: piece {i} is {sp.id_to_piece(i)!r} but tokenizer.ggml.tokens "
                               f"has {text!r}")
    for b in range(256):
        if not sp.is_byte(sp.piece_to_id(byte_piece(b))):
            raise PyllamaError(f"{where}: has no byte piece {byte_piece(b)}")
