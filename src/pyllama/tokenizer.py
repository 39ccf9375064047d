"""pyllama's tokenizer: built from a GGUF file's metadata alone, it gives exactly llama.cpp's
token ids and text.

Two kinds of vocabulary are supported, as tokenizer.ggml.model names them:
- "llama": SentencePiece (Llama 1/2, Mistral ...), encoded with the sentencepiece library;
- "gpt2": byte-level BPE (Llama 3, SmolLM ...), encoded with Hugging Face's tokenizers library,
  pre-tokenized as llama.cpp does for the file's tokenizer.ggml.pre.
Special tokens in the text are cut out first by one shared partitioner (see _special.py).
"""
from __future__ import annotations

import errno
import operator
import os
from typing import Any, Iterable, Mapping, Union

from . import _core
from ._bpe import BpeModel
from ._detok import StreamDecoder, clean_spaces, token_pieces
from ._special import partition
from ._spm import SpmModel
from ._vocab import Vocab, load_vocab

__all__ = ["Tokenizer", "StreamDecoder"]

PathLike = Union[str, "os.PathLike[str]"]


class Tokenizer:
    """Text <-> token ids for one GGUF vocabulary, matching llama.cpp id for id."""

    def __init__(self, vocab: Vocab, model: Union[SpmModel, BpeModel]) -> None:
        """Use :meth:`from_gguf` or :meth:`from_metadata`."""
        self._vocab = vocab
        self._model = model
        self._pieces, self._hidden = token_pieces(vocab)

    @classmethod
    def from_gguf(cls, path: PathLike, *, tokenizer_model: PathLike | None = None) -> "Tokenizer":
        """The tokenizer of a .gguf file (see :meth:`from_metadata` for ``tokenizer_model``).

        Raises FileNotFoundError if there is no such file, PyllamaError if the file or its
        vocabulary is malformed.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return cls.from_metadata(_core.GGUFFile(path).metadata, tokenizer_model=tokenizer_model)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], *,
                      tokenizer_model: PathLike | None = None) -> "Tokenizer":
        """The tokenizer described by a GGUF metadata dict (as ``pyllama._core.GGUFFile.metadata``
        gives it: strings as str, numeric arrays as numpy arrays, string arrays as lists).

        ``tokenizer_model``: for a SentencePiece vocabulary, the path of the original
        tokenizer.model to encode with instead of a model built from the metadata; its pieces
        must be the GGUF's tokens. Raises PyllamaError naming the key of anything malformed.
        """
        vocab = load_vocab(metadata)
        if vocab.model == "llama":
            model: Union[SpmModel, BpeModel] = SpmModel(vocab, tokenizer_model)
        elif tokenizer_model is not None:
            raise ValueError("tokenizer_model= applies only to SentencePiece ('llama') vocabularies")
        else:
            model = BpeModel(vocab)
        return cls(vocab, model)

    @property
    def n_vocab(self) -> int:
        """Number of tokens in the vocabulary."""
        return self._vocab.n_vocab

    @property
    def bos_id(self) -> int | None:
        """The beginning-of-sequence token, or None if the vocabulary has none."""
        return self._vocab.bos_id

    @property
    def eos_id(self) -> int | None:
        """The end-of-sequence token, or None if the vocabulary has none."""
        return self._vocab.eos_id

    @property
    def add_bos(self) -> bool:
        """Whether encode() adds BOS by default (tokenizer.ggml.add_bos_token, else llama.cpp's default)."""
        return self._vocab.add_bos

    @property
    def add_eos(self) -> bool:
        """Whether encode() adds EOS by default (tokenizer.ggml.add_eos_token, default False)."""
        return self._vocab.add_eos

    @property
    def eog_ids(self) -> frozenset[int]:
        """Tokens that end generation, as llama.cpp computes them (EOS, end-of-turn tokens ...)."""
        return self._vocab.eog_ids

    def encode(self, text: str, *, add_bos: bool | None = None, add_eos: bool | None = None,
               special: bool = False) -> list[int]:
        """Token ids of ``text``.

        add_bos / add_eos: prepend BOS / append EOS; None follows the vocabulary's settings.
        special: recognise control tokens written in the text (e.g. "<|im_start|>") as those
        tokens; otherwise they are encoded as plain text. User-defined tokens are always recognised.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        text.encode()  # UnicodeEncodeError (a ValueError) for lone surrogates, before any work
        vocab = self._vocab
        ids: list[int] = []
        if vocab.add_bos if add_bos is None else add_bos:
            ids.append(self._required(vocab.bos_id, "BOS"))
        # SentencePiece: a fragment starting the text or following a special token gets a space.
        prev_special = True
        for fragment in partition(text, vocab.specials, special):
            if isinstance(fragment, int):
                ids.append(fragment)
                prev_special = True
            elif vocab.model == "llama":
                prefix = " " if vocab.add_space_prefix and prev_special else ""
                ids += self._model.encode((prefix + fragment).replace(" ", "\u2581"))
                prev_special = False
            else:
                ids += self._model.encode(fragment)
        if vocab.add_eos if add_eos is None else add_eos:
            ids.append(self._required(vocab.eos_id, "EOS"))
        return ids

    def decode(self, ids: Iterable[int], *, special: bool = False) -> str:
        """Text of a sequence of token ids, as llama.cpp's detokenize gives it.

        special: render control tokens (BOS, "<|im_end|>" ...) as their text; otherwise they are
        left out. Bytes that are not valid UTF-8 become U+FFFD.
        """
        data = b"".join(self._piece(i, special, strip_space=(n == 0)) for n, i in enumerate(ids))
        if self._vocab.clean_spaces:
            data = clean_spaces(data)
        return data.decode("utf-8", "replace")

    def token_bytes(self, token_id: int, *, special: bool = False) -> bytes:
        """The bytes a token adds when it continues text (llama.cpp's token_to_piece): no leading
        space is stripped, and a control token gives b"" unless ``special``."""
        return self._piece(token_id, special, strip_space=False)

    def stream(self, *, special: bool = False) -> StreamDecoder:
        """A decoder for ids arriving one at a time (see :class:`StreamDecoder`)."""
        return StreamDecoder(lambda i, first: self._piece(i, special, strip_space=first),
                             self._vocab.clean_spaces)

    def _piece(self, token_id: int, special: bool, strip_space: bool) -> bytes:
        i = self._check_id(token_id)
        if self._hidden[i] and not special:
            return b""
        piece = self._pieces[i]
        # llama.cpp drops the space a SentencePiece vocabulary put before the first word.
        if strip_space and self._vocab.add_space_prefix and piece[:1] == b" ":
            piece = piece[1:]
        return piece

    def _check_id(self, token_id: Any) -> int:
        if isinstance(token_id, bool):
            raise ValueError(f"token id {token_id!r} is not an integer")
        try:
            i = operator.index(token_id)
        except TypeError:
            raise ValueError(f"token id {token_id!r} is not an integer") from None
        if not 0 <= i < self._vocab.n_vocab:
            raise ValueError(f"token id {i} is outside the vocabulary (0..{self._vocab.n_vocab - 1})")
        return i

    @staticmethod
    def _required(token_id: int | None, name: str) -> int:
        if token_id is None:
            raise ValueError(f"the vocabulary has no {name} token")
        return token_id

    def __repr__(self) -> str:
        return f"<Tokenizer {self._vocab.model} n_vocab={self.n_vocab}>"
