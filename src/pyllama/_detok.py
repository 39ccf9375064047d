"""Token ids back to text, as llama.cpp's ``token_to_piece`` and ``detokenize`` do."""
from __future__ import annotations

import codecs
import re
from typing import Callable

from ._bpe import byte_to_unicode
from ._vocab import (ATTR_BYTE, ATTR_CONTROL, ATTR_NORMAL, ATTR_UNKNOWN, ATTR_USER_DEFINED, Vocab)

# clean_up_tokenization_spaces, byte for byte as llama.cpp's three passes over the joined text.
_SPACE_BEFORE_PUNCT = re.compile(rb" (?=[?!.,])")
_LONE_QUOTE = re.compile(rb" ' ")
_CONTRACTION = re.compile(rb" '(?=[sm]|re|ve)")


def clean_spaces(text: bytes) -> bytes:
    """Remove the spaces llama.cpp removes when the vocabulary sets clean_spaces."""
    text = _SPACE_BEFORE_PUNCT.sub(b"", text)
    text = _LONE_QUOTE.sub(b"'", text)
    return _CONTRACTION.sub(b"'", text)


# Every pattern above starts with a space, spans at most 4 bytes (lookahead included), and the
# passes only delete spaces. So cleaning text in two parts gives the same bytes as cleaning it
# whole when no match can straddle the cut: when the byte before the cut appears in no pattern,
# or the 4 bytes before it hold no space (a match starting earlier would have ended already).
_PATTERN_BYTES = frozenset(b" '?!.,smrve")
_LONGEST_PATTERN = 4


def settled_length(held: bytes) -> int:
    """Length of the longest prefix of ``held`` (which follows a safe cut) whose cleaned bytes
    no continuation can change."""
    for cut in range(len(held), 0, -1):
        if held[cut - 1] not in _PATTERN_BYTES or b" " not in held[max(0, cut - _LONGEST_PATTERN):cut]:
            return cut
    return 0


def token_pieces(vocab: Vocab) -> tuple[list[bytes], list[bool]]:
    """Each token's bytes as llama.cpp renders it with special=True, and whether it is hidden
    (rendered as nothing) when special=False: control and unknown tokens are."""
    bpe = vocab.model == "gpt2"
    to_byte = {c: b for b, c in byte_to_unicode().items()} if bpe else {}
    pieces: list[bytes] = []
    for text, attr in zip(vocab.texts, vocab.attrs):
        if attr & (ATTR_CONTROL | ATTR_UNKNOWN | ATTR_USER_DEFINED):
            pieces.append(text.encode())
        elif attr & ATTR_NORMAL:
            pieces.append(_bpe_decode(text, to_byte) if bpe else text.replace("\u2581", " ").encode())
        elif attr & ATTR_BYTE:
            pieces.append(bytes([int(text[3:5], 16)]))
        else:  # undefined and unused tokens render as nothing
            pieces.append(b"")
    hidden = [bool(a & (ATTR_CONTROL | ATTR_UNKNOWN)) for a in vocab.attrs]
    return pieces, hidden


def _bpe_decode(text: str, to_byte: dict[str, int]) -> bytes:
    try:
        return bytes([to_byte[c] for c in text])
    except KeyError:
        pass
    # llama.cpp's marker for a character outside GPT-2's byte alphabet, kept as it spells it.
    out = bytearray()
    for c in text:
        if c in to_byte:
            out.append(to_byte[c])
        else:
            out += b"[UNK_BYTE_0x" + c.encode().hex().encode() + text.encode() + b"]"
    return bytes(out)


class StreamDecoder:
    """Turns token ids into text one at a time, for printing while generating.

    ``push(id)`` returns only complete UTF-8 characters; bytes of a character split across tokens
    wait for the rest. Where the vocabulary cleans spaces before punctuation, a space (and what
    follows it) waits until the next bytes show whether it stays. The concatenation of everything
    returned, ``flush()`` included, equals ``Tokenizer.decode`` of all the ids pushed.
    """

    def __init__(self, piece: Callable[[int, bool], bytes], clean: bool) -> None:
        """Use ``Tokenizer.stream()``. ``piece(id, first)``: the token's bytes, ``first`` telling
        whether it starts the sequence; ``clean``: whether the vocabulary cleans spaces."""
        self._piece = piece
        self._clean = clean
        self._reset()

    def _reset(self) -> None:
        self._first = True
        self._held = b""  # raw bytes not yet cleaned (vocabularies with clean_spaces only)
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    def push(self, token_id: int) -> str:
        """Add one token id; return the text it completes (possibly empty)."""
        piece = self._piece(token_id, self._first)
        self._first = False
        if not self._clean:
            return self._utf8.decode(piece)
        held = self._held + piece
        cut = settled_length(held)
        self._held = held[cut:]
        return self._utf8.decode(clean_spaces(held[:cut]))

    def flush(self) -> str:
        """End the sequence: return everything still held back, and start afresh."""
        text = self._utf8.decode(clean_spaces(self._held) if self._clean else b"", final=True)
        self._reset()
        return text
